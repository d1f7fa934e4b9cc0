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

/// What a cgroup has used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time of all its processes, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory charged now, in bytes.
    pub memory_bytes: u64,
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
    let pids = read_u64(dir("pids", path).join("pids.current")).unwrap_or(0);
    Usage {
        cpu_ns,
        memory_bytes,
        pids,
    }
}
