//! The shim: one small process per container that holds its stdio, writes its logs and records
//! its exit, so that stopping, crashing or upgrading the agent never stops a container or loses
//! its output.
//!
//! # How the agent and a shim find each other
//! Only through files in the container's bundle dir, `ROOT/containers/<id>/`:
//! ```text
//! request.json  written by the agent: the ContainerSpec, the image layers, the log config
//! shim.pid      written by the shim as it begins: its pid, while the container is made
//! shim.json     written by the shim once the container runs: shim pid, container pid, start
//! exit.json     written by the shim when the container ends: code, signal, OOM kill, end
//! ```
//! `Runtime::start` writes `request.json`, then runs `SHIM --root ROOT --id ID` with a pipe
//! as fd 3. The shim forks and the first process exits at once (so the shim is not the agent's
//! child and outlives it), starts a new session, creates the container through libcontainer
//! (its init is the shim's child, so the shim can wait for it), answers `ok PID` or `err MESSAGE`
//! on fd 3, and closes it. Then it becomes the pump ([`crate::pump`]): it executes
//! `ROOT/bin/flotilla-pump-HASH`, a small program carried inside the runtime and written out
//! on first use, keeping its pid, so the container stays its child. After that the agent and
//! the shim share nothing but the files: a new agent re-adopts running containers by reading
//! `shim.json` and `exit.json`.

use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use serde::{Deserialize, Serialize};

use crate::container::{Runtime, Stdio};
use crate::logs::LogConfig;
use crate::pump::Job;
use crate::spec::ContainerSpec;

pub use crate::pump::now_ms;
pub(crate) use crate::pump::write_atomic;

/// The pump program, built from `src/pump.rs` by the build script.
static PUMP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/flotilla-pump"));

/// What the agent asks a shim to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimRequest {
    pub spec: ContainerSpec,
    pub layers: Vec<PathBuf>,
    pub log: LogConfig,
}

/// `shim.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    pub shim_pid: i32,
    pub pid: i32,
    /// Unix time in milliseconds.
    pub started_at_ms: u64,
}

/// `exit.json`: how the container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    pub code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// Unix time in milliseconds when it started (0 when unknown).
    #[serde(default)]
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
}

/// The pump program on disk, `ROOT/bin/flotilla-pump-HASH`, written on first use. Every shim
/// of a runtime executes the same file, so its pages are shared.
pub fn pump_program(root: &Path) -> std::io::Result<PathBuf> {
    let hash = env!("FLOTILLA_PUMP_HASH");
    let path = root.join("bin").join(format!("flotilla-pump-{hash}"));
    if fs::metadata(&path).is_ok_and(|m| m.len() == PUMP.len() as u64) {
        return Ok(path);
    }
    fs::create_dir_all(root.join("bin"))?;
    // A name of its own for every writer, threads of one process included: a shared one
    // lets one writer truncate the file another is about to rename into place.
    static WRITERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = root
        .join("bin")
        .join(format!(".flotilla-pump-{hash}.{}.{n}", std::process::id()));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(PUMP)?;
    f.set_permissions(fs::Permissions::from_mode(0o755))?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The shim process: `SHIM --root ROOT --id ID`, with the answer pipe on fd 3. Returns the
/// process exit code.
pub fn shim_main(root: &Path, id: &str) -> i32 {
    // SAFETY: fd 3 is the answer pipe the runtime passed us; we are its only owner.
    let answer = unsafe { OwnedFd::from_raw_fd(3) };
    let mut answer = fs::File::from(answer);
    // Leave the agent's process tree: the first process exits, the second carries on.
    // SAFETY: this process has one thread here, so fork is safe.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            let _ = writeln!(answer, "err fork: {e}");
            return 1;
        }
    }
    let _ = nix::unistd::setsid();
    let bundle = root.join("containers").join(id);
    // Who is starting the container, until shim.json says it runs: a start whose shim died
    // (with its agent, or a power cut) then reads as lost rather than starting for ever.
    // Whole or not at all (a reader must never see it empty): written aside, then renamed.
    let pid_tmp = bundle.join("shim.pid.tmp");
    if fs::write(&pid_tmp, std::process::id().to_string()).is_ok() {
        let _ = fs::rename(&pid_tmp, bundle.join("shim.pid"));
    }
    // One malloc arena: the shim's threads only copy bytes, and per-thread arenas would cost
    // each container megabytes.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let req: ShimRequest = match fs::read(bundle.join("request.json"))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(answer, "err reading request.json: {e}");
            return 1;
        }
    };
    // The pump writes the log; opening it here first makes a bad path the agent's error.
    if let Err(e) = req.log.open() {
        let _ = writeln!(answer, "err opening log {}: {e}", req.log.path.display());
        return 1;
    }
    // Close-on-exec everywhere: only the read ends, handed over below, reach the pump.
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC);
    let ((out_r, out_w), (err_r, err_w)) = match (pipe(), pipe()) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => {
            let _ = writeln!(answer, "err pipe: {e}");
            return 1;
        }
    };
    let rt = match Runtime::open(root) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(answer, "err {e}");
            return 1;
        }
    };
    // `stdin: true`: a pipe whose write end the pump keeps open for the container's life.
    let (stdin, stdin_w) = if req.spec.stdin {
        match pipe() {
            Ok((r, w)) => (Some(fs::File::from(r)), Some(w)),
            Err(e) => {
                let _ = writeln!(answer, "err pipe: {e}");
                return 1;
            }
        }
    } else {
        (None, None)
    };
    let stdio = Stdio {
        stdin,
        stdout: fs::File::from(out_w),
        stderr: fs::File::from(err_w),
    };
    let pid = match rt.run_in_bundle(&req.spec, &req.layers, stdio) {
        Ok(pid) => pid,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            let _ = writeln!(answer, "err {msg}");
            return 1;
        }
    };
    let started = Started {
        shim_pid: std::process::id() as i32,
        pid,
        started_at_ms: now_ms(),
    };
    let _ = write_atomic(
        &bundle.join("shim.json"),
        &serde_json::to_vec(&started).expect("serialises"),
    );
    // The socket that feeds stdin is bound before the answer, so an attach right after the
    // start finds it; the pump serves it.
    let attach = stdin_w.as_ref().and_then(|_| {
        let path = bundle.join(crate::pump::ATTACH_SOCKET);
        let _ = fs::remove_file(&path);
        std::os::unix::net::UnixListener::bind(&path).ok()
    });
    let _ = writeln!(answer, "ok {pid}");
    drop(answer);
    // From here on nothing is inherited from the agent: stdio goes nowhere.
    let devnull = fs::File::open("/dev/null").ok();
    if let Some(n) = &devnull {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(n.as_raw_fd(), fd);
        }
    }

    let job = Job {
        root: root.to_path_buf(),
        id: id.to_string(),
        out_fd: out_r.into_raw_fd(),
        err_fd: err_r.into_raw_fd(),
        in_fd: stdin_w.map_or(-1, IntoRawFd::into_raw_fd),
        attach_fd: attach.map_or(-1, IntoRawFd::into_raw_fd),
        pid,
        started_at_ms: started.started_at_ms,
        oom_file: crate::cgroups::oom_file(&req.spec.cgroup_path),
        log: req.log.path.clone(),
        max_bytes: req.log.max_bytes,
        keep: req.log.keep,
    };
    for fd in [job.out_fd, job.err_fd, job.in_fd, job.attach_fd]
        .into_iter()
        .filter(|fd| *fd >= 0)
    {
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()));
    }
    if let Ok(exe) = pump_program(root) {
        // Returns only if the pump could not be executed (a noexec data dir, say).
        let _ = std::process::Command::new(exe).args(job.to_args()).exec();
    }
    crate::pump::run(&job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pumps_exit_record_reads_as_the_runtimes() {
        let json = crate::pump::exit_json(137, Some(9), true, 1_000, 2_000);
        let read: ExitRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(
            read,
            ExitRecord {
                code: 137,
                signal: Some(9),
                oom_killed: true,
                started_at_ms: 1_000,
                finished_at_ms: 2_000,
            }
        );
        let json = crate::pump::exit_json(0, None, false, 0, 5);
        let read: ExitRecord = serde_json::from_str(&json).unwrap();
        assert_eq!((read.code, read.signal, read.oom_killed), (0, None, false));
    }
}
