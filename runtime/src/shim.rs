//! The shim: one small process per container that holds its stdio, writes its logs and records
//! its exit, so that stopping, crashing or upgrading the agent never stops a container or loses
//! its output.
//!
//! # How the agent and a shim find each other
//! Only through files in the container's bundle dir, `ROOT/containers/<id>/`:
//! ```text
//! request.json  written by the agent: the ContainerSpec, the image layers, the log config
//! shim.json     written by the shim once the container runs: shim pid, container pid, start
//! exit.json     written by the shim when the container ends: code, signal, OOM kill, end
//! ```
//! `Runtime::start` writes `request.json`, then runs `SHIM --root ROOT --id ID` with a pipe
//! as fd 3. The shim forks and the first process exits at once (so the shim is not the agent's
//! child and outlives it), starts a new session, creates the container through libcontainer
//! (its init is the shim's child, so the shim can wait for it), answers `ok PID` or `err MESSAGE`
//! on fd 3, and closes it. After that the agent and the shim share nothing but the files: a new
//! agent re-adopts running containers by reading `shim.json` and `exit.json`.

use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::container::{Runtime, Stdio, wait};
use crate::logs::{LogConfig, LogWriter, pump};
use crate::spec::ContainerSpec;

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

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes a file whole or not at all.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
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
    // One malloc arena: the shim's threads only copy bytes, and per-thread arenas would cost
    // each container megabytes.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let bundle = root.join("containers").join(id);
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
    let log = match LogWriter::open(req.log.clone()) {
        Ok(l) => Arc::new(Mutex::new(l)),
        Err(e) => {
            let _ = writeln!(answer, "err opening log {}: {e}", req.log.path.display());
            return 1;
        }
    };
    let (out_r, out_w) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(answer, "err pipe: {e}");
            return 1;
        }
    };
    let (err_r, err_w) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => {
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
    let stdio = Stdio {
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
    let _ = writeln!(answer, "ok {pid}");
    drop(answer);
    // From here on nothing is inherited from the agent: stdio goes nowhere.
    let devnull = fs::File::open("/dev/null").ok();
    if let Some(n) = &devnull {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(n.as_raw_fd(), fd);
        }
    }

    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for (r, stream) in [(out_r, "stdout"), (err_r, "stderr")] {
        let log = log.clone();
        let tx = done_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("shim-{stream}"))
            .stack_size(128 * 1024)
            .spawn(move || {
                pump(fs::File::from(r), stream, log);
                let _ = tx.send(());
            });
        if spawned.is_err() {
            return 1;
        }
    }
    // What starting the container allocated is not needed any more.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's free lists.
    unsafe {
        libc::malloc_trim(0);
    }
    let exit = wait(pid);
    // Give the log pumps a moment to drain what the container wrote last.
    for _ in 0..2 {
        let _ = done_rx.recv_timeout(Duration::from_secs(2));
    }
    let record = match exit {
        Ok(e) => ExitRecord {
            code: e.code,
            signal: e.signal,
            oom_killed: crate::cgroups::oom_kills(&req.spec.cgroup_path) > 0,
            started_at_ms: started.started_at_ms,
            finished_at_ms: now_ms(),
        },
        Err(_) => ExitRecord {
            code: 255,
            signal: None,
            oom_killed: false,
            started_at_ms: started.started_at_ms,
            finished_at_ms: now_ms(),
        },
    };
    let _ = write_atomic(
        &bundle.join("exit.json"),
        &serde_json::to_vec(&record).expect("serialises"),
    );
    0
}
