//! Container lifecycle through youki's libcontainer: create, start, signal, wait, delete.
//!
//! ```text
//! ROOT/state/<id>/       libcontainer's state (status, pid, cgroup)
//! ROOT/containers/<id>/  the bundle: config.json, and the overlay (upper, work, rootfs)
//! ```
//! A create that fails leaves nothing behind: libcontainer's state, the cgroup, the overlay
//! mount and the bundle are all removed before the error is returned.

use std::fs::{self, File};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::RuntimeError;
use crate::error::IoContext;
use crate::rootfs::{mount_overlay, unmount_overlay};
use crate::spec::{ContainerSpec, oci_spec};

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or 128 + signal as shells report it.
    pub code: i32,
    pub signal: Option<i32>,
}

/// Where a container's stdout and stderr go.
pub struct Stdio {
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
            stdout: open(stdout)?,
            stderr: open(stderr)?,
        })
    }
}

/// The containers of one node.
pub struct Runtime {
    root: PathBuf,
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
        })
    }

    fn bundle(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    fn state(&self, id: &str) -> PathBuf {
        self.root.join("state").join(id)
    }

    /// Creates and starts a container on the given image layers; returns its init's pid, a
    /// child of this process.
    pub fn run(
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
        if self.state(&spec.id).exists() || self.bundle(&spec.id).exists() {
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
        let devnull = File::open("/dev/null").at("opening", Path::new("/dev/null"))?;
        let mut container = ContainerBuilder::new(spec.id.clone(), SyscallType::Linux)
            .with_root_path(self.root.join("state"))
            .map_err(lc)?
            .with_stdin(devnull)
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
        if let Ok(mut c) = Container::load(self.state(id)) {
            let _ = c.delete(true);
        }
        let _ = fs::remove_dir_all(self.state(id));
        let _ = unmount_overlay(&self.bundle(id), true);
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
