//! Container lifecycle through youki's libcontainer: create, start, signal, wait, delete.
//!
//! ```text
//! ROOT/state/<id>/       libcontainer's state (status, pid, cgroup)
//! ROOT/containers/<id>/  the bundle: config.json, and the overlay (upper, work, rootfs)
//! ```
//! A create that fails leaves nothing behind: libcontainer's state, the cgroup, the overlay
//! mount and the bundle are all removed before the error is returned.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::RuntimeError;
use crate::error::IoContext;
use crate::logs::{Follower, LogConfig, Record, read_tail};
use crate::rootfs::{mount_overlay, unmount_overlay};
use crate::shim::{ExitRecord, ShimRequest, Started, write_atomic};
use crate::spec::{ContainerSpec, oci_spec};

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or 128 + signal as shells report it.
    pub code: i32,
    pub signal: Option<i32>,
}

/// Where a container's stdin comes from (`/dev/null` when `None`) and its stdout and stderr go.
pub struct Stdio {
    pub stdin: Option<File>,
    pub stdout: File,
    pub stderr: File,
}

impl Stdio {
    /// Appends both streams to files (created if missing).
    pub fn files(stdout: &Path, stderr: &Path) -> Result<Stdio, RuntimeError> {
        let open = |p: &Path| {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(p)
                .at("opening log", p)
        };
        Ok(Stdio {
            stdin: None,
            stdout: open(stdout)?,
            stderr: open(stderr)?,
        })
    }
}

/// The containers of one node.
pub struct Runtime {
    root: PathBuf,
    /// The shim program and the arguments before `--root ROOT --id ID` (for the agent: its own
    /// binary and `shim`).
    shim: Option<(PathBuf, Vec<String>)>,
}

/// What a container is doing, as its shim's files say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerStatus {
    /// The shim has not reported yet.
    Starting,
    Running {
        pid: i32,
        started_at_ms: u64,
    },
    Exited(ExitRecord),
    /// Neither running nor with an exit record: its shim died (a host crash, a kill -9 of the
    /// shim itself).
    Lost,
}

/// How long a start may take before its shim has said who it is (`shim.pid`): the agent
/// makes the bundle, writes `request.json` and runs the shim at once, so only an agent that
/// died in between leaves a bundle without one.
const SPAWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// The status of a bundle whose shim has not written `shim.json` yet: starting while its shim
/// lives (or, before the shim has written its pid, for [`SPAWN_GRACE`]), lost once it is gone.
fn starting(bundle: &Path, alive: impl Fn(i32) -> bool) -> ContainerStatus {
    if let Some(pid) = fs::read_to_string(bundle.join("shim.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
    {
        return if alive(pid) {
            ContainerStatus::Starting
        } else {
            ContainerStatus::Lost
        };
    }
    // The bundle dir itself: it exists a moment before request.json does, and its time
    // changes as files appear in it.
    let young = fs::metadata(bundle)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().unwrap_or_default() < SPAWN_GRACE);
    if young {
        ContainerStatus::Starting
    } else {
        ContainerStatus::Lost
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.')
}

impl Runtime {
    pub fn open(root: &Path) -> Result<Runtime, RuntimeError> {
        for d in ["state", "containers"] {
            fs::create_dir_all(root.join(d)).at("creating", &root.join(d))?;
        }
        Ok(Runtime {
            root: root.to_owned(),
            shim: None,
        })
    }

    /// Sets the shim program that [`Runtime::start`] runs.
    pub fn with_shim(mut self, exe: PathBuf, args: Vec<String>) -> Runtime {
        self.shim = Some((exe, args));
        self
    }

    /// The shim program and its leading arguments.
    pub(crate) fn shim_program(&self, id: &str) -> Result<(PathBuf, Vec<String>), RuntimeError> {
        self.shim.clone().ok_or_else(|| RuntimeError::ShimFailed {
            id: id.to_string(),
            message: "no shim program configured".into(),
        })
    }

    /// The directory the runtime keeps its containers and sandboxes in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts a container under its own shim (see [`crate::shim`]); returns its pid. The
    /// container keeps running, and its logs keep being written, whatever happens to the caller.
    pub fn start(
        &self,
        spec: &ContainerSpec,
        layers: &[PathBuf],
        log: LogConfig,
    ) -> Result<i32, RuntimeError> {
        let (exe, prefix) = self.shim_program(&spec.id)?;
        if !valid_id(&spec.id) {
            return Err(RuntimeError::BadContainerId {
                id: spec.id.clone(),
            });
        }
        let bundle = self.bundle(&spec.id);
        if self.state(&spec.id).exists() || bundle.exists() {
            return Err(RuntimeError::ContainerExists {
                id: spec.id.clone(),
            });
        }
        // Written here, before any shim runs, so that shims starting together do not each
        // write their own copy.
        if let Err(e) = crate::shim::pump_program(&self.root) {
            tracing::warn!(container = %spec.id, error = %e, "cannot write the pump program: shims will pump in-process");
        }
        fs::create_dir_all(&bundle).at("creating", &bundle)?;
        let req = ShimRequest {
            spec: spec.clone(),
            layers: layers.to_vec(),
            log,
        };
        let rp = bundle.join("request.json");
        write_atomic(&rp, &serde_json::to_vec_pretty(&req).expect("serialises"))
            .at("writing", &rp)?;
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| RuntimeError::io("making a pipe for", &bundle, std::io::Error::from(e)))?;
        let write_fd = write.as_raw_fd();
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(&prefix)
            .arg("--root")
            .arg(&self.root)
            .arg("--id")
            .arg(&spec.id);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: between fork and exec only dup2, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(write_fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawned = cmd.spawn();
        drop(write);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_dir_all(&bundle);
                return Err(RuntimeError::ShimFailed {
                    id: spec.id.clone(),
                    message: format!("running {}: {e}", exe.display()),
                });
            }
        };
        // The first shim process exits as soon as it has forked the one that stays.
        let _ = child.wait();
        let mut answer = String::new();
        let _ = std::io::Read::read_to_string(&mut File::from(read), &mut answer);
        match answer.trim().split_once(' ') {
            Some(("ok", pid)) => pid.parse().map_err(|_| RuntimeError::ShimFailed {
                id: spec.id.clone(),
                message: format!("bad answer {answer:?}"),
            }),
            other => {
                let message = match other {
                    Some(("err", m)) => m.to_string(),
                    _ => format!("the shim ended without an answer ({answer:?})"),
                };
                self.cleanup(&spec.id, &spec.cgroup_path);
                Err(RuntimeError::ShimFailed {
                    id: spec.id.clone(),
                    message,
                })
            }
        }
    }

    /// The ids of every container on this node (running or not).
    pub fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let d = self.root.join("containers");
        let mut ids: Vec<String> = fs::read_dir(&d)
            .at("reading", &d)?
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// What a container is doing, from its shim's files.
    pub fn status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let bundle = self.bundle(id);
        if !bundle.exists() {
            return Err(RuntimeError::ContainerNotFound { id: id.to_string() });
        }
        let exit = || -> Result<Option<ExitRecord>, RuntimeError> {
            match fs::read(bundle.join("exit.json")) {
                Ok(b) => {
                    serde_json::from_slice(&b)
                        .map(Some)
                        .map_err(|source| RuntimeError::Json {
                            what: format!("{id}/exit.json"),
                            source,
                        })
                }
                Err(_) => Ok(None),
            }
        };
        if let Some(rec) = exit()? {
            return Ok(ContainerStatus::Exited(rec));
        }
        let alive = |pid: i32| nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok();
        let Ok(b) = fs::read(bundle.join("shim.json")) else {
            return Ok(starting(&bundle, alive));
        };
        let s: Started = serde_json::from_slice(&b).map_err(|source| RuntimeError::Json {
            what: format!("{id}/shim.json"),
            source,
        })?;
        if alive(s.pid) || alive(s.shim_pid) {
            // While the shim lives the container runs, or its exit is being recorded.
            return Ok(ContainerStatus::Running {
                pid: s.pid,
                started_at_ms: s.started_at_ms,
            });
        }
        Ok(exit()?
            .map(ContainerStatus::Exited)
            .unwrap_or(ContainerStatus::Lost))
    }

    /// Waits (polling) until a started container has an exit record, up to `timeout`.
    pub fn wait_exit(
        &self,
        id: &str,
        timeout: std::time::Duration,
    ) -> Result<Option<ExitRecord>, RuntimeError> {
        let start = std::time::Instant::now();
        loop {
            if let ContainerStatus::Exited(r) = self.status(id)? {
                return Ok(Some(r));
            }
            if start.elapsed() > timeout {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Stops a container under its shim as kubelet does: SIGTERM, then SIGKILL once `grace`
    /// has passed. Returns its exit record (`None` if the shim never recorded one).
    pub fn stop(
        &self,
        id: &str,
        grace: std::time::Duration,
    ) -> Result<Option<ExitRecord>, RuntimeError> {
        if let ContainerStatus::Exited(r) = self.status(id)? {
            return Ok(Some(r));
        }
        // A container that is already gone cannot take signals; that is fine here.
        let _ = self.kill(id, libc::SIGTERM);
        if let Some(r) = self.wait_exit(id, grace)? {
            return Ok(Some(r));
        }
        let _ = self.kill(id, libc::SIGKILL);
        self.wait_exit(id, std::time::Duration::from_secs(10))
    }

    /// The image layers the containers on this node are made of (an image removal keeps them).
    pub fn layers_in_use(&self) -> std::collections::BTreeSet<PathBuf> {
        self.list()
            .unwrap_or_default()
            .iter()
            .filter_map(|id| fs::read(self.bundle(id).join("request.json")).ok())
            .filter_map(|b| serde_json::from_slice::<ShimRequest>(&b).ok())
            .flat_map(|r| r.layers)
            .collect()
    }

    /// Where a container's shim writes its log, and how many rotated files it keeps.
    pub fn log_config(&self, id: &str) -> Result<LogConfig, RuntimeError> {
        let rp = self.bundle(id).join("request.json");
        let b =
            fs::read(&rp).map_err(|_| RuntimeError::ContainerNotFound { id: id.to_string() })?;
        let req: ShimRequest = serde_json::from_slice(&b).map_err(|source| RuntimeError::Json {
            what: rp.display().to_string(),
            source,
        })?;
        Ok(req.log)
    }

    /// The log records of a container (the last `tail` when given).
    pub fn logs(&self, id: &str, tail: Option<usize>) -> Result<Vec<Record>, RuntimeError> {
        let log = self.log_config(id)?;
        read_tail(&log.path, log.keep, tail).at("reading logs of", &log.path)
    }

    /// Follows a container's log from now on (`logs -f`): poll the follower for new records.
    pub fn follow_logs(&self, id: &str) -> Result<Follower, RuntimeError> {
        let log = self.log_config(id)?;
        Follower::from_end(&log.path, log.keep).at("following logs of", &log.path)
    }

    /// When the container's bundle last changed (a file of its shim written), in Unix
    /// milliseconds, 0 when unknown: for a [`ContainerStatus::Lost`] container, about when it
    /// was lost.
    pub fn changed_at_ms(&self, id: &str) -> u64 {
        fs::metadata(self.bundle(id))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// The socket that feeds a running container's stdin, when its spec asked for one
    /// (`stdin: true`): what a client writes to it reaches the container's stdin.
    pub fn attach_socket(&self, id: &str) -> Option<PathBuf> {
        let p = self.bundle(id).join(crate::pump::ATTACH_SOCKET);
        p.exists().then_some(p)
    }

    fn bundle(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    fn state(&self, id: &str) -> PathBuf {
        self.root.join("state").join(id)
    }

    /// Creates and starts a container on the given image layers; returns its init's pid, a
    /// child of this process (use [`Runtime::start`] for a container under its own shim).
    pub fn run(
        &self,
        spec: &ContainerSpec,
        layers: &[PathBuf],
        stdio: Stdio,
    ) -> Result<i32, RuntimeError> {
        if self.bundle(&spec.id).exists() {
            return Err(RuntimeError::ContainerExists {
                id: spec.id.clone(),
            });
        }
        self.run_in_bundle(spec, layers, stdio)
    }

    /// [`Runtime::run`] for a bundle dir that may already hold the shim's request.
    pub(crate) fn run_in_bundle(
        &self,
        spec: &ContainerSpec,
        layers: &[PathBuf],
        stdio: Stdio,
    ) -> Result<i32, RuntimeError> {
        if !valid_id(&spec.id) {
            return Err(RuntimeError::BadContainerId {
                id: spec.id.clone(),
            });
        }
        if self.state(&spec.id).exists() {
            return Err(RuntimeError::ContainerExists {
                id: spec.id.clone(),
            });
        }
        let result = self.run_inner(spec, layers, stdio);
        if result.is_err() {
            self.cleanup(&spec.id, &spec.cgroup_path);
        }
        result
    }

    fn run_inner(
        &self,
        spec: &ContainerSpec,
        layers: &[PathBuf],
        stdio: Stdio,
    ) -> Result<i32, RuntimeError> {
        let bundle = self.bundle(&spec.id);
        fs::create_dir_all(&bundle).at("creating", &bundle)?;
        // The overlay is mounted writable: the runtime creates mount points (/proc, /dev, ...)
        // in it, then remounts it read-only itself when `root.readonly` asks (as runc does).
        let rootfs = mount_overlay(layers, &bundle, false)?;
        let config = oci_spec(spec, &rootfs);
        let cfg_path = bundle.join("config.json");
        fs::write(
            &cfg_path,
            serde_json::to_vec_pretty(&config).expect("json serialises"),
        )
        .at("writing", &cfg_path)?;
        let lc = |source| RuntimeError::Container {
            id: spec.id.clone(),
            source: Box::new(source),
        };
        let stdin = match stdio.stdin {
            Some(f) => f,
            None => File::open("/dev/null").at("opening", Path::new("/dev/null"))?,
        };
        let mut container = ContainerBuilder::new(spec.id.clone(), SyscallType::Linux)
            .with_root_path(self.root.join("state"))
            .map_err(lc)?
            .with_stdin(stdin)
            .with_stdout(stdio.stdout)
            .with_stderr(stdio.stderr)
            .as_init(&bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(lc)?;
        container.start().map_err(lc)?;
        container
            .pid()
            .map(|p| p.as_raw())
            .ok_or_else(|| RuntimeError::NoPid {
                id: spec.id.clone(),
            })
    }

    /// Sends a signal to every process of the container.
    pub fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        let lc = |source| RuntimeError::Container {
            id: id.to_string(),
            source: Box::new(source),
        };
        let mut c = Container::load(self.state(id)).map_err(lc)?;
        let sig = Signal::try_from(signal).map_err(|_| RuntimeError::BadSignal { signal })?;
        c.kill(sig, true).map_err(lc)
    }

    /// Deletes a container (killing it if it still runs): its processes, cgroup, state, mount and
    /// bundle.
    pub fn delete(&self, id: &str, cgroup_path: &str) -> Result<(), RuntimeError> {
        if self.state(id).exists() {
            let lc = |source| RuntimeError::Container {
                id: id.to_string(),
                source: Box::new(source),
            };
            let mut c = Container::load(self.state(id)).map_err(lc)?;
            if let Err(e) = c.delete(true) {
                tracing::warn!(container = id, error = %e, "libcontainer delete failed; cleaning up by hand");
            }
        }
        self.cleanup(id, cgroup_path);
        if self.bundle(id).exists() || self.state(id).exists() {
            return Err(RuntimeError::io(
                "removing",
                self.bundle(id),
                std::io::Error::other("container files remain"),
            ));
        }
        Ok(())
    }

    /// Best-effort removal of everything a container may have left.
    fn cleanup(&self, id: &str, cgroup_path: &str) {
        if self.state(id).join("state.json").exists()
            && let Ok(mut c) = Container::load(self.state(id))
        {
            let _ = c.delete(true);
        }
        let _ = fs::remove_dir_all(self.state(id));
        let _ = unmount_overlay(&self.bundle(id), true);
        if !cgroup_path.is_empty() {
            crate::cgroups::thaw_and_kill(cgroup_path);
        }
        crate::cgroups::remove(cgroup_path);
    }
}

/// Waits for a child process (a container's init started by [`Runtime::run`]).
pub fn wait(pid: i32) -> Result<Exit, RuntimeError> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Exit { code, signal: None }),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Ok(Exit {
                    code: 128 + sig as i32,
                    signal: Some(sig as i32),
                });
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(RuntimeError::io(
                    "waiting for",
                    format!("pid {pid}"),
                    std::io::Error::from(e),
                ));
            }
        }
    }
}
