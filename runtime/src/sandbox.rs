//! Pod sandboxes: the network, IPC and UTS namespaces a pod's containers share, held open by
//! bind mounts of their namespace files (as `ip netns` does), so no pause process is needed.
//!
//! ```text
//! ROOT/sandboxes/<id>/net   the pod's network namespace (netproxy wires it up)
//! ROOT/sandboxes/<id>/ipc
//! ROOT/sandboxes/<id>/uts   with the pod's hostname set
//! ```
//! The namespaces are made in a short-lived thread of this process (`unshare` changes only the
//! calling thread's namespaces), which sets the hostname, brings `lo` up and bind-mounts the
//! namespace files before it ends.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

use crate::RuntimeError;
use crate::error::IoContext;

/// A pod's shared namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub dir: PathBuf,
}

impl Sandbox {
    pub fn net(&self) -> PathBuf {
        self.dir.join("net")
    }
    pub fn ipc(&self) -> PathBuf {
        self.dir.join("ipc")
    }
    pub fn uts(&self) -> PathBuf {
        self.dir.join("uts")
    }
}

const KINDS: [&str; 3] = ["net", "ipc", "uts"];

/// Makes the sandbox `id` under `root` with `hostname`. On failure nothing is left.
pub fn create(root: &Path, id: &str, hostname: &str) -> Result<Sandbox, RuntimeError> {
    let dir = root.join("sandboxes").join(id);
    if dir.exists() {
        return Err(RuntimeError::ContainerExists {
            id: format!("sandbox {id}"),
        });
    }
    fs::create_dir_all(&dir).at("creating", &dir)?;
    for k in KINDS {
        fs::File::create(dir.join(k)).at("creating", &dir.join(k))?;
    }
    let d = dir.clone();
    let host = hostname.to_string();
    let made = std::thread::spawn(move || -> Result<(), String> {
        unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
            .map_err(|e| format!("unshare: {e}"))?;
        nix::unistd::sethostname(&host).map_err(|e| format!("sethostname {host:?}: {e}"))?;
        loopback_up().map_err(|e| format!("bringing lo up: {e}"))?;
        let tid = nix::unistd::gettid();
        for k in KINDS {
            let src = format!("/proc/self/task/{tid}/ns/{k}");
            mount(
                Some(src.as_str()),
                &d.join(k),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("bind-mounting {src}: {e}"))?;
        }
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err("the sandbox thread panicked".into()));
    let sb = Sandbox { dir };
    if let Err(message) = made {
        let _ = remove(&sb);
        return Err(RuntimeError::Sandbox {
            id: id.to_string(),
            message,
        });
    }
    Ok(sb)
}

/// Brings the loopback interface of the current thread's network namespace up.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket and ioctl calls on a zeroed ifreq naming "lo"; the fd is closed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        let name = CString::new("lo").expect("static name");
        for (i, b) in name.as_bytes_with_nul().iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let r = if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        libc::close(fd);
        r
    }
}

/// Unmounts and removes a sandbox (its namespaces end when no container uses them).
pub fn remove(sb: &Sandbox) -> Result<(), RuntimeError> {
    for k in KINDS {
        let p = sb.dir.join(k);
        if crate::rootfs::is_mounted(&p) {
            umount2(&p, MntFlags::MNT_DETACH).map_err(|source| RuntimeError::Unmount {
                target: p.clone(),
                source,
            })?;
        }
    }
    if sb.dir.exists() {
        fs::remove_dir_all(&sb.dir).at("removing", &sb.dir)?;
    }
    Ok(())
}
