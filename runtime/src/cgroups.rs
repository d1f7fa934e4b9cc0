//! Reading and cleaning up cgroups, on v1 (these hosts: one hierarchy per controller) and v2
//! (Raspberry Pi OS and current distros: one unified hierarchy).

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    V1,
    V2,
}

pub fn layout() -> Layout {
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        Layout::V2
    } else {
        Layout::V1
    }
}

/// The directory of `path` (e.g. `/flotilla/pod/web`) under a controller (`memory`, `pids`);
/// on v2 every controller shares one directory.
pub fn dir(controller: &str, path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    match layout() {
        Layout::V2 => Path::new(ROOT).join(rel),
        Layout::V1 => Path::new(ROOT).join(controller).join(rel),
    }
}

/// The memory limit in bytes, or `None` when unlimited or unreadable.
pub fn memory_limit(path: &str) -> Option<u64> {
    let (file, unlimited) = match layout() {
        Layout::V2 => ("memory.max", "max"),
        Layout::V1 => ("memory.limit_in_bytes", "9223372036854771712"),
    };
    let v = fs::read_to_string(dir("memory", path).join(file)).ok()?;
    let v = v.trim();
    if v == unlimited { None } else { v.parse().ok() }
}

/// The pids limit, or `None` when unlimited.
pub fn pids_limit(path: &str) -> Option<u64> {
    fs::read_to_string(dir("pids", path).join("pids.max"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How many times the kernel's OOM killer killed a process of this cgroup.
pub fn oom_kills(path: &str) -> u64 {
    fs::read_to_string(oom_file(path))
        .map(|t| crate::pump::oom_kill_count(&t))
        .unwrap_or(0)
}

/// The file holding the `oom_kill` counter of the cgroup at `path`.
pub fn oom_file(path: &str) -> PathBuf {
    match layout() {
        Layout::V2 => dir("memory", path).join("memory.events"),
        Layout::V1 => dir("memory", path).join("memory.oom_control"),
    }
}

/// Limits for a parent cgroup (a pod's): memory in bytes, CPU as a CFS quota over a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParentLimits {
    pub memory_bytes: Option<i64>,
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: Option<u64>,
}

/// Makes the parent cgroup `path` (a pod's, whose containers' cgroups go below it) with
/// `limits`, on v1 under the memory and cpu controllers, on v2 in the unified hierarchy with
/// those controllers enabled for its children. Idempotent.
pub fn ensure_parent(path: &str, limits: &ParentLimits) -> Result<(), crate::RuntimeError> {
    use crate::error::IoContext;
    let write = |file: PathBuf, value: String| -> Result<(), crate::RuntimeError> {
        fs::write(&file, value).at("writing", &file)
    };
    match layout() {
        Layout::V1 => {
            let mem = dir("memory", path);
            fs::create_dir_all(&mem).at("creating", &mem)?;
            if let Some(m) = limits.memory_bytes {
                write(mem.join("memory.limit_in_bytes"), m.to_string())?;
            }
            let cpu = dir("cpu", path);
            fs::create_dir_all(&cpu).at("creating", &cpu)?;
            if let (Some(q), Some(p)) = (limits.cpu_quota_us, limits.cpu_period_us) {
                write(cpu.join("cpu.cfs_period_us"), p.to_string())?;
                write(cpu.join("cpu.cfs_quota_us"), q.to_string())?;
            }
        }
        Layout::V2 => {
            // Every level from the root down delegates memory, cpu and pids to its children.
            let mut at = PathBuf::from(ROOT);
            for part in path.trim_start_matches('/').split('/') {
                let _ = fs::write(at.join("cgroup.subtree_control"), "+memory +cpu +pids");
                at = at.join(part);
                fs::create_dir_all(&at).at("creating", &at)?;
            }
            let _ = fs::write(at.join("cgroup.subtree_control"), "+memory +cpu +pids");
            if let Some(m) = limits.memory_bytes {
                write(at.join("memory.max"), m.to_string())?;
            }
            if let (Some(q), Some(p)) = (limits.cpu_quota_us, limits.cpu_period_us) {
                write(at.join("cpu.max"), format!("{q} {p}"))?;
            }
        }
    }
    Ok(())
}

/// The CFS quota and period of `path`, if it has a quota.
pub fn cpu_quota(path: &str) -> Option<(i64, u64)> {
    match layout() {
        Layout::V2 => {
            let v = fs::read_to_string(dir("cpu", path).join("cpu.max")).ok()?;
            let (q, p) = v.trim().split_once(' ')?;
            Some((q.parse().ok()?, p.parse().ok()?))
        }
        Layout::V1 => {
            let q: i64 = fs::read_to_string(dir("cpu", path).join("cpu.cfs_quota_us"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let p = read_u64(dir("cpu", path).join("cpu.cfs_period_us"))?;
            (q > 0).then_some((q, p))
        }
    }
}

/// Removes the cgroup directory of `path` under every controller (best effort: a cgroup with
/// processes in it cannot be removed).
pub fn remove(path: &str) {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    let dirs: Vec<PathBuf> = match layout() {
        Layout::V2 => vec![Path::new(ROOT).join(rel)],
        Layout::V1 => fs::read_dir(ROOT)
            .map(|rd| rd.flatten().map(|e| e.path().join(rel)).collect())
            .unwrap_or_default(),
    };
    for d in dirs {
        if d.is_dir() {
            let _ = fs::remove_dir(&d);
        }
    }
}

/// Thaws the cgroup at `path` and SIGKILLs every process left in it, waiting up to a second
/// for them to go, so that it can be removed. libcontainer's kill freezes a container's
/// cgroup, signals it and thaws it; an agent killed in between leaves the cgroup frozen, and
/// its processes can then neither die nor be removed.
pub fn thaw_and_kill(path: &str) {
    let (freeze, thawed) = match layout() {
        Layout::V1 => (dir("freezer", path).join("freezer.state"), "THAWED"),
        Layout::V2 => (dir("", path).join("cgroup.freeze"), "0"),
    };
    if freeze.exists() {
        let _ = fs::write(&freeze, thawed);
    }
    let procs = dir("pids", path).join("cgroup.procs");
    let pids = || -> Vec<i32> {
        fs::read_to_string(&procs)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let left = pids();
        if left.is_empty() || std::time::Instant::now() > deadline {
            return;
        }
        for pid in left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// What a cgroup has used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time of all its processes, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory charged now, in bytes.
    pub memory_bytes: u64,
    /// The working set: memory charged less the page cache the kernel may take back at once
    /// (inactive file pages), as cAdvisor and the kubelet count it, and `kubectl top` shows.
    pub working_set_bytes: u64,
    /// Processes and threads now.
    pub pids: u64,
}

fn read_u64(p: PathBuf) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Reads the CPU time, memory and pids of `path` (zero for what a controller does not show).
pub fn usage(path: &str) -> Usage {
    let cpu_ns = match layout() {
        // cpu.stat's usage_usec is in microseconds.
        Layout::V2 => fs::read_to_string(dir("cpu", path).join("cpu.stat"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("usage_usec ")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                })
            })
            .map(|us| us * 1000)
            .unwrap_or(0),
        Layout::V1 => read_u64(dir("cpuacct", path).join("cpuacct.usage")).unwrap_or(0),
    };
    let memory_bytes = match layout() {
        Layout::V2 => read_u64(dir("memory", path).join("memory.current")),
        Layout::V1 => read_u64(dir("memory", path).join("memory.usage_in_bytes")),
    }
    .unwrap_or(0);
    let inactive_file = fs::read_to_string(dir("memory", path).join("memory.stat"))
        .ok()
        .and_then(|s| {
            let key = match layout() {
                Layout::V2 => "inactive_file ",
                // v1: the hierarchy's figure, children included, as memory.usage_in_bytes is.
                Layout::V1 => "total_inactive_file ",
            };
            stat_field(&s, key)
        })
        .unwrap_or(0);
    let pids = read_u64(dir("pids", path).join("pids.current")).unwrap_or(0);
    Usage {
        cpu_ns,
        memory_bytes,
        working_set_bytes: memory_bytes.saturating_sub(inactive_file),
        pids,
    }
}

/// A `key value` line's value of a cgroup's stat file.
fn stat_field(stat: &str, key: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway cgroup (freezer and pids) holding one `sleep`; thawed, emptied and removed
    /// on drop, also when the test fails.
    struct Frozen {
        path: String,
        child: std::process::Child,
    }

    impl Frozen {
        fn dirs(&self) -> Vec<PathBuf> {
            match layout() {
                Layout::V1 => vec![dir("freezer", &self.path), dir("pids", &self.path)],
                Layout::V2 => vec![dir("", &self.path)],
            }
        }
    }

    impl Drop for Frozen {
        fn drop(&mut self) {
            let _ = fs::write(dir("freezer", &self.path).join("freezer.state"), "THAWED");
            let _ = fs::write(dir("", &self.path).join("cgroup.freeze"), "0");
            let _ = self.child.kill();
            let _ = self.child.wait();
            remove(&self.path);
            remove("/flotilla-test");
        }
    }

    #[test]
    fn a_frozen_cgroup_is_thawed_emptied_and_removable() {
        let path = format!("/flotilla-test/frozen-{}", std::process::id());
        let child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep");
        let mut g = Frozen { path, child };
        for d in g.dirs() {
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("cgroup.procs"), g.child.id().to_string()).unwrap();
        }
        match layout() {
            Layout::V1 => fs::write(dir("freezer", &g.path).join("freezer.state"), "FROZEN"),
            Layout::V2 => fs::write(dir("", &g.path).join("cgroup.freeze"), "1"),
        }
        .unwrap();

        thaw_and_kill(&g.path);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let status = loop {
            if let Some(s) = g.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the frozen process is still alive"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(!status.success(), "killed, not exited: {status}");
        remove(&g.path);
        for d in g.dirs() {
            assert!(!d.exists(), "{} remains", d.display());
        }
    }
}
