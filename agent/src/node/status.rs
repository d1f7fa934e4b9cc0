//! This node's `Node` object: capacity, allocatable, conditions, addresses, version.

use serde_json::{Value, json};

/// What the host has, read from /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostResources {
    pub cpus: u64,
    pub memory_bytes: u64,
    /// `MemAvailable` (0 when unknown).
    pub memory_available: u64,
    /// Free space of the data dir's filesystem, in percent (100 when unknown).
    pub disk_free_percent: u64,
}

impl HostResources {
    pub fn read() -> HostResources {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        HostResources {
            cpus,
            memory_bytes: parse_meminfo_total(&meminfo).unwrap_or(0),
            memory_available: meminfo_field(&meminfo, "MemAvailable:").unwrap_or(0),
            disk_free_percent: 100,
        }
    }

    /// Also reads how full the filesystem holding `dir` is.
    pub fn read_with_disk(dir: &std::path::Path) -> HostResources {
        let mut r = HostResources::read();
        if let Ok(st) = nix::sys::statvfs::statvfs(dir)
            && st.blocks() > 0
        {
            // fsblkcnt_t is 32 bits on some 32-bit targets (armv7 Pi OS).
            #[allow(clippy::unnecessary_cast)]
            let (free, all) = (st.blocks_available() as u64, st.blocks() as u64);
            r.disk_free_percent = free * 100 / all;
        }
        r
    }
}

fn meminfo_field(meminfo: &str, field: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `MemTotal:  24575880 kB` -> bytes.
pub fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    meminfo_field(meminfo, "MemTotal:")
}

/// The kubelet's default hard eviction thresholds: under 100 MiB of memory available, or under
/// 10% of the node's filesystem free, the node reports pressure.
pub const MEMORY_PRESSURE_BELOW: u64 = 100 << 20;
pub const DISK_PRESSURE_BELOW_PERCENT: u64 = 10;

/// Carries each condition's `lastTransitionTime` over from `prev` while its status holds.
/// A Node as seen by a node that has not heard from it by gossip: Ready becomes Unknown, as
/// Kubernetes shows a node whose kubelet stopped posting status.
pub fn unreachable_view(mut node: Value) -> Value {
    if let Some(conds) = node["status"]["conditions"].as_array_mut() {
        for c in conds.iter_mut().filter(|c| c["type"] == "Ready") {
            c["status"] = Value::from("Unknown");
            c["reason"] = Value::from("NodeUnreachable");
            c["message"] = Value::from("no member of the cluster hears this node's gossip");
        }
    }
    node
}

pub fn keep_transitions(mut fresh: Value, prev: &Value) -> Value {
    if let Some(cs) = fresh["status"]["conditions"].as_array_mut() {
        for c in cs {
            let before = prev["status"]["conditions"].as_array().and_then(|p| {
                p.iter()
                    .find(|o| o["type"] == c["type"] && o["status"] == c["status"])
            });
            if let Some(t) = before.and_then(|b| b.get("lastTransitionTime")) {
                c["lastTransitionTime"] = t.clone();
            }
        }
    }
    fresh
}

/// Whether a fresh status says something the stored one does not (heartbeat times aside).
/// Liveness travels by gossip, so an unchanged status is written only now and then (as the
/// kubelet reports an unchanged status every 5 minutes and renews a Lease for liveness).
pub fn status_changed(fresh: &Value, prev: &Value) -> bool {
    let strip = |v: &Value| {
        let mut s = v["status"].clone();
        if let Some(cs) = s["conditions"].as_array_mut() {
            for c in cs {
                if let Some(m) = c.as_object_mut() {
                    m.remove("lastHeartbeatTime");
                }
            }
        }
        s
    };
    strip(fresh) != strip(prev)
}

/// Memory kept back from pods for the system and the agent, as kubelet's reservations do.
const RESERVED_MEMORY: u64 = 256 << 20;
/// The most pods a node takes (kubelet's default).
pub const MAX_PODS: u64 = 110;

/// One line of a file under /proc, /sys or /etc, trimmed ("" when it cannot be read).
fn read_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

/// The distribution's name, as `/etc/os-release` gives it (`PRETTY_NAME`).
fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// `status.nodeInfo` as the kubelet reports it (`kubectl get nodes -o wide` shows the OS image,
/// kernel and runtime; Kubernetes' schema requires every field). Read once: none of it changes
/// while the agent runs.
fn system_info() -> Value {
    static INFO: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    INFO.get_or_init(|| {
        let version = format!("flotilla-{}", env!("CARGO_PKG_VERSION"));
        let machine_id = read_line("/etc/machine-id");
        let product_uuid = read_line("/sys/class/dmi/id/product_uuid");
        json!({
            "architecture": std::env::consts::ARCH,
            "bootID": read_line("/proc/sys/kernel/random/boot_id"),
            "containerRuntimeVersion": "flotilla-runtime",
            "kernelVersion": read_line("/proc/sys/kernel/osrelease"),
            "kubeProxyVersion": version,
            "kubeletVersion": version,
            "machineID": machine_id,
            "operatingSystem": "linux",
            "osImage": os_image(),
            "systemUUID": if product_uuid.is_empty() { machine_id.clone() } else { product_uuid },
        })
    })
    .clone()
}

/// The Node object for this host as of `now`.
pub fn node_object(name: &str, address: &str, res: HostResources, now: &str) -> Value {
    let alloc_mem = res.memory_bytes.saturating_sub(RESERVED_MEMORY);
    let mem_pressure = res.memory_available > 0 && res.memory_available < MEMORY_PRESSURE_BELOW;
    let disk_pressure = res.disk_free_percent < DISK_PRESSURE_BELOW_PERCENT;
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH,
                "node-role.kubernetes.io/control-plane": "true",
            },
        },
        "spec": {},
        "status": {
            "capacity": {
                "cpu": res.cpus.to_string(),
                "memory": format!("{}Ki", res.memory_bytes / 1024),
                "pods": MAX_PODS.to_string(),
            },
            "allocatable": {
                "cpu": res.cpus.to_string(),
                "memory": format!("{}Ki", alloc_mem / 1024),
                "pods": MAX_PODS.to_string(),
            },
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "AgentReady", "message": "flotilla agent is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now},
                if mem_pressure {
                    json!({"type": "MemoryPressure", "status": "True", "reason": "AgentHasInsufficientMemory", "message": format!("{} MiB of memory available", res.memory_available >> 20), "lastHeartbeatTime": now, "lastTransitionTime": now})
                } else {
                    json!({"type": "MemoryPressure", "status": "False", "reason": "AgentHasSufficientMemory", "lastHeartbeatTime": now, "lastTransitionTime": now})
                },
                if disk_pressure {
                    json!({"type": "DiskPressure", "status": "True", "reason": "AgentHasDiskPressure", "message": format!("{}% of the data dir's filesystem free", res.disk_free_percent), "lastHeartbeatTime": now, "lastTransitionTime": now})
                } else {
                    json!({"type": "DiskPressure", "status": "False", "reason": "AgentHasNoDiskPressure", "lastHeartbeatTime": now, "lastTransitionTime": now})
                },
            ],
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": system_info(),
        },
    })
}

/// A host of 2 CPUs and 4 GiB, half of it free, for tests.
#[cfg(test)]
fn test_host() -> HostResources {
    HostResources {
        cpus: 2,
        memory_bytes: 4 << 30,
        memory_available: 2 << 30,
        disk_free_percent: 50,
    }
}

#[cfg(test)]
mod heartbeat_tests {
    use super::*;

    #[test]
    fn only_a_real_change_is_a_change() {
        let res = test_host();
        let a = node_object("n", "10.0.0.1", res, "2026-01-01T00:00:00Z");
        let b = keep_transitions(
            node_object("n", "10.0.0.1", res, "2026-01-01T00:00:10Z"),
            &a,
        );
        assert!(!status_changed(&b, &a));
        let low = HostResources {
            disk_free_percent: 1,
            ..res
        };
        let c = keep_transitions(
            node_object("n", "10.0.0.1", low, "2026-01-01T00:00:20Z"),
            &a,
        );
        assert!(status_changed(&c, &a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_object_is_a_kubernetes_node_with_the_hosts_system_info() {
        let res = test_host();
        let v = node_object("n1", "10.0.0.1", res, "2026-01-01T00:00:00Z");
        let n: k8s_openapi::api::core::v1::Node =
            crate::manifest::lifecycle::decode(v).expect("every required field is there");
        let info = n.status.unwrap().node_info.unwrap();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(info.kernel_version, kernel.trim());
        assert_eq!(info.operating_system, "linux");
        assert!(!info.os_image.is_empty());
        assert_eq!(info.boot_id.len(), 36, "a uuid: {}", info.boot_id);
    }

    #[test]
    fn meminfo_total() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       2048 kB\nMemFree: 1 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(parse_meminfo_total("nothing"), None);
    }

    #[test]
    fn allocatable_keeps_a_reserve() {
        let n = node_object(
            "n1",
            "10.0.0.1",
            HostResources {
                cpus: 4,
                memory_bytes: 1 << 30,
                memory_available: 50 << 20,
                disk_free_percent: 50,
            },
            "t",
        );
        let cond = |t: &str| {
            n["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()["status"]
                .clone()
        };
        assert_eq!(cond("MemoryPressure"), "True");
        assert_eq!(cond("DiskPressure"), "False");
        let later = keep_transitions(
            node_object(
                "n1",
                "10.0.0.1",
                HostResources {
                    cpus: 4,
                    memory_bytes: 1 << 30,
                    memory_available: 50 << 20,
                    disk_free_percent: 5,
                },
                "t2",
            ),
            &n,
        );
        let since = |v: &Value, t: &str| {
            v["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()["lastTransitionTime"]
                .clone()
        };
        assert_eq!(since(&later, "MemoryPressure"), "t", "unchanged: kept");
        assert_eq!(since(&later, "DiskPressure"), "t2", "changed: now");
        assert_eq!(n["status"]["capacity"]["memory"], "1048576Ki");
        assert_eq!(n["status"]["allocatable"]["memory"], "786432Ki");
        assert_eq!(n["status"]["allocatable"]["cpu"], "4");
    }
}
