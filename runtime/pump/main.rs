//! `flotilla-pump`: what a shim becomes once its container runs (see `src/pump.rs`, the whole of
//! its code). The runtime's build script compiles this file with `rustc` alone, statically, and
//! the runtime carries the result.

#[path = "../src/pump.rs"]
mod pump;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match pump::Job::from_args(&args) {
        Ok(job) => std::process::exit(pump::run(&job)),
        Err(e) => {
            eprintln!("flotilla-pump: {e}");
            std::process::exit(2);
        }
    }
}
