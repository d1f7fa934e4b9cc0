//! `flotilla`: parse arguments, set up logging and the TLS provider, dispatch.

use clap::Parser;

fn main() {
    let cli = flotilla::cli::Cli::parse();
    // The shim forks, so it must run before any thread exists (no async runtime, no logging).
    if let flotilla::cli::Command::Shim(a) = &cli.command {
        if a.exec {
            std::process::exit(flotilla_runtime::exec::exec_main(
                &a.root, &a.id, &a.command,
            ));
        }
        std::process::exit(flotilla_runtime::shim::shim_main(&a.root, &a.id));
    }
    // A CLI command whose reader goes away (`flotilla get pods | head -1`) ends quietly, as
    // Unix tools do, instead of panicking on a broken pipe. The agent keeps Rust's default
    // (a closed peer is an error to handle, not a reason to die).
    if !matches!(cli.command, flotilla::cli::Command::Agent(_)) {
        // SAFETY: setting a signal's disposition before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // One crypto provider for every TLS user in the process (API server, CLI client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // libcontainer's cgroup code warns about every v1 controller the host lacks, each time.
    let default_level = if matches!(cli.command, flotilla::cli::Command::Agent(_)) {
        "info,libcgroups=error,libcontainer=warn"
    } else {
        "warn,libcgroups=error"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(match &cli.command {
            flotilla::cli::Command::Agent(a) => a.worker_threads.into(),
            _ => 1,
        })
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    let code = match rt.block_on(flotilla::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    drop(rt);
    std::process::exit(code);
}
