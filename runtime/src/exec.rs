//! Exec: run a command inside a running container, as `kubectl exec` and exec probes do.
//!
//! `SHIM --root ROOT --id ID --exec -- CMD ARGS...` is a short-lived helper started by
//! [`Runtime::exec_command`]. Being a fresh single-threaded process, it can do what a
//! multi-threaded agent cannot: it joins the container init's cgroups, enters its IPC, UTS,
//! network, PID and mount namespaces (`setns`), forks once more (a process only enters a PID
//! namespace through its children), and the child takes the container's identity before it
//! executes the command: working dir, groups, gid, uid, the default capability set,
//! `no_new_privs` and the container's seccomp profile. stdin, stdout and stderr are the
//! helper's own, so the caller reads the command's output from pipes (or gives it a
//! terminal, which becomes the command's controlling terminal in a session of its own); the helper exits with
//! the command's code (128 + signal when killed), 126 when the command cannot run and 127 when
//! it is not found, as shells do.
//!
//! libcontainer has a tenant builder for this, but it runs inside the caller's process and
//! did not work from the agent (see docs/DECISIONS.md).

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use crate::RuntimeError;
use crate::container::{ContainerStatus, Runtime};
use crate::shim::{ShimRequest, Started};
use crate::spec::{DEFAULT_CAPABILITIES, oci_spec};

/// What an exec printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The command's exit code (128 + signal when killed); `None` when it timed out.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Runtime {
    /// The helper command that runs `args` inside running container `id`; the caller sets
    /// stdio and runs it (so an async caller can use it as a `tokio::process::Command`). The
    /// helper leads its own process group: killing the group stops the command too.
    pub fn exec_command(&self, id: &str, args: &[String]) -> Result<Command, RuntimeError> {
        let (exe, prefix) = self.shim_program(id)?;
        if args.is_empty() {
            return Err(RuntimeError::ExecFailed {
                id: id.to_string(),
                message: "no command given".into(),
            });
        }
        match self.status(id)? {
            ContainerStatus::Running { .. } => {}
            other => {
                return Err(RuntimeError::ExecFailed {
                    id: id.to_string(),
                    message: format!("the container is not running ({other:?})"),
                });
            }
        }
        let mut cmd = Command::new(exe);
        cmd.args(prefix)
            .arg("--root")
            .arg(self.root())
            .arg("--id")
            .arg(id)
            .arg("--exec")
            .arg("--")
            .args(args);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        Ok(cmd)
    }

    /// Runs `args` in container `id` and collects its output; after `timeout` the command is
    /// killed and `code` is `None`.
    pub fn exec(
        &self,
        id: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let mut cmd = self.exec_command(id, args)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let failed = |e: std::io::Error| RuntimeError::ExecFailed {
            id: id.to_string(),
            message: e.to_string(),
        };
        let mut child = cmd.spawn().map_err(failed)?;
        let readers: Vec<_> = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .map(|r| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                buf
            })
        })
        .collect();
        let start = Instant::now();
        let code = loop {
            if let Some(st) = child.try_wait().map_err(failed)? {
                break Some(exit_code(st));
            }
            if start.elapsed() > timeout {
                stop_helper(&mut child);
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut out = readers.into_iter().map(|h| h.join().unwrap_or_default());
        Ok(ExecOutput {
            code,
            stdout: out.next().unwrap_or_default(),
            stderr: out.next().unwrap_or_default(),
        })
    }
}

/// Stops an exec helper and its command: SIGTERM makes the helper kill and reap the command;
/// SIGKILL to the whole group if it does not end within two seconds.
pub fn stop_helper(child: &mut std::process::Child) {
    let pid = Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

/// The exec helper (see the module docs). Must run before the process has any other thread.
pub fn exec_main(root: &Path, id: &str, args: &[String]) -> i32 {
    match enter(root, id) {
        Ok(ctx) => run(ctx, args),
        Err(msg) => {
            let _ = writeln!(std::io::stderr(), "exec in {id}: {msg}");
            126
        }
    }
}

/// What the helper learns about the container before it enters it.
struct Context {
    spec: crate::spec::ContainerSpec,
    seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
}

/// Joins the container's cgroups and namespaces.
fn enter(root: &Path, id: &str) -> Result<Context, String> {
    let bundle = root.join("containers").join(id);
    let req: ShimRequest = read_json(&bundle.join("request.json"))?;
    let started: Started = read_json(&bundle.join("shim.json"))?;
    let pid = started.pid;
    let proc_dir = format!("/proc/{pid}");
    // Open every namespace first: once in the container's mount namespace, /proc is its own.
    let mut ns = Vec::new();
    for (name, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let p = format!("{proc_dir}/ns/{name}");
        let f = fs::File::open(&p).map_err(|e| format!("opening {p}: {e} (is it running?)"))?;
        ns.push((name, flag, f));
    }
    let cgroups = fs::read_to_string(format!("{proc_dir}/cgroup"))
        .map_err(|e| format!("reading {proc_dir}/cgroup: {e}"))?;
    for dir in cgroup_dirs(&cgroups, crate::cgroups::layout()) {
        let procs = dir.join("cgroup.procs");
        fs::write(&procs, std::process::id().to_string())
            .map_err(|e| format!("joining {}: {e}", procs.display()))?;
    }
    let seccomp = oci_spec(&req.spec, Path::new("/"))["linux"]["seccomp"].clone();
    let seccomp = if seccomp.is_null() {
        None
    } else {
        Some(serde_json::from_value(seccomp).map_err(|e| format!("seccomp profile: {e}"))?)
    };
    for (name, flag, f) in &ns {
        nix::sched::setns(f.as_fd(), *flag).map_err(|e| format!("entering the {name} ns: {e}"))?;
    }
    Ok(Context {
        spec: req.spec,
        seccomp,
    })
}

/// The cgroup directories a process listed in `/proc/PID/cgroup` is in. On v1 (and hybrid
/// hosts, where containers live in the v1 hierarchies) one per controller hierarchy; on v2 the
/// one unified directory.
fn cgroup_dirs(proc_cgroup: &str, layout: crate::cgroups::Layout) -> Vec<std::path::PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    proc_cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let rel = path.trim_start_matches('/');
            match (layout, controllers) {
                (crate::cgroups::Layout::V2, "") => Some(base.join(rel)),
                (crate::cgroups::Layout::V1, "") | (crate::cgroups::Layout::V2, _) => None,
                (crate::cgroups::Layout::V1, c) => {
                    let mount = c.strip_prefix("name=").unwrap_or(c);
                    Some(base.join(mount).join(rel))
                }
            }
        })
        .filter(|d| d.is_dir())
        .collect()
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T, String> {
    let b = fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    serde_json::from_slice(&b).map_err(|e| format!("parsing {}: {e}", p.display()))
}

/// Forks into the container's PID namespace, becomes the container's user and runs `args`.
fn run(ctx: Context, args: &[String]) -> i32 {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
    let stop = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];
    let mut mask = SigSet::empty();
    for s in stop {
        mask.add(s);
    }
    // Hold the stop signals until the handler knows whom to kill.
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None);
    // SAFETY: the helper is single-threaded (it runs before anything starts a thread).
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { child }) => {
            COMMAND.store(child.as_raw(), std::sync::atomic::Ordering::SeqCst);
            for s in stop {
                // SAFETY: the handler only calls kill(2), which is async-signal-safe.
                let _ = unsafe { nix::sys::signal::signal(s, SigHandler::Handler(kill_command)) };
            }
            let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&mask), None);
            match crate::container::wait(child.as_raw()) {
                Ok(e) => e.code,
                Err(_) => 255,
            }
        }
        Ok(ForkResult::Child) => {
            let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&mask), None);
            // SAFETY: isatty only looks at fd 0.
            if unsafe { libc::isatty(0) } == 1 {
                // On a terminal (`exec -t`): a session of its own with the terminal as its
                // controlling one, so ^C and job control reach it; its group is its own too.
                let _ = nix::unistd::setsid();
                // SAFETY: TIOCSCTTY on fd 0, which is the terminal.
                unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
            } else {
                // Its own process group, so that stopping it stops what it started too.
                let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            }
            let code = match become_container(&ctx).and_then(|()| execute(&ctx, args)) {
                Ok(never) => match never {},
                Err((code, msg)) => {
                    let _ = writeln!(std::io::stderr(), "exec: {msg}");
                    code
                }
            };
            // SAFETY: leaving the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "exec: fork: {e}");
            126
        }
    }
}

/// The command the helper runs (its pid in the helper's namespace), for the signal handler.
static COMMAND: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Stopping the helper stops the command's process group; the helper then reaps the command
/// (inside the container nothing might: its init need not reap orphans) and exits.
extern "C" fn kill_command(_: libc::c_int) {
    let pid = COMMAND.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

fn become_container(ctx: &Context) -> Result<(), (i32, String)> {
    let s = &ctx.spec;
    let fail = |what: &str, e: &dyn std::fmt::Display| (126, format!("{what}: {e}"));
    if nix::unistd::chdir(s.cwd.as_str()).is_err() {
        let _ = nix::unistd::chdir("/");
    }
    let groups: Vec<Gid> = s
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(|e| fail("setgroups", &e))?;
    nix::unistd::setgid(Gid::from_raw(s.gid)).map_err(|e| fail("setgid", &e))?;
    nix::unistd::setuid(Uid::from_raw(s.uid)).map_err(|e| fail("setuid", &e))?;
    let keep: caps::CapsHashSet = DEFAULT_CAPABILITIES
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    for c in caps::runtime::thread_all_supported() {
        if !keep.contains(&c) {
            caps::drop(None, caps::CapSet::Bounding, c).map_err(|e| fail("dropping caps", &e))?;
        }
    }
    if s.uid == 0 {
        for set in [
            caps::CapSet::Effective,
            caps::CapSet::Permitted,
            caps::CapSet::Inheritable,
        ] {
            let mine = caps::read(None, set).map_err(|e| fail("reading caps", &e))?;
            caps::set(None, set, &mine.intersection(&keep).cloned().collect())
                .map_err(|e| fail("setting caps", &e))?;
        }
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(fail("no_new_privs", &std::io::Error::last_os_error()));
    }
    if let Some(sc) = &ctx.seccomp {
        libcontainer::seccomp::initialize_seccomp(sc).map_err(|e| fail("seccomp", &e))?;
    }
    Ok(())
}

/// Finds `args[0]` on the container's PATH and executes it with the container's env.
fn execute(ctx: &Context, args: &[String]) -> Result<std::convert::Infallible, (i32, String)> {
    let cstr = |s: &str| CString::new(s).map_err(|_| (126, format!("{s:?} holds a NUL byte")));
    let argv: Vec<CString> = args.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?;
    let envp: Vec<CString> = ctx
        .spec
        .env
        .iter()
        .map(|e| cstr(e))
        .collect::<Result<_, _>>()?;
    let path = ctx
        .spec
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let candidates: Vec<String> = if args[0].contains('/') {
        vec![args[0].clone()]
    } else {
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{d}/{}", args[0]))
            .collect()
    };
    let mut last = nix::errno::Errno::ENOENT;
    for c in candidates {
        let prog = cstr(&c)?;
        match nix::unistd::execve(&prog, &argv, &envp) {
            Ok(never) => match never {},
            Err(e) => {
                if e != nix::errno::Errno::ENOENT {
                    last = e;
                }
            }
        }
    }
    let code = if last == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    };
    Err((code, format!("{}: {}", args[0], last.desc())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::Layout;

    #[test]
    fn cgroup_dirs_follow_the_layout() {
        let v1 = "12:pids:/nonexistent-flotilla/x\n0::/user.slice\n";
        // Directories that do not exist are skipped: none of these do.
        assert!(cgroup_dirs(v1, Layout::V1).is_empty());
        let real = fs::read_to_string("/proc/self/cgroup").unwrap();
        let dirs = cgroup_dirs(&real, crate::cgroups::layout());
        assert!(!dirs.is_empty(), "this process's own cgroups: {real}");
        assert!(dirs.iter().all(|d| d.starts_with("/sys/fs/cgroup")));
    }
}
