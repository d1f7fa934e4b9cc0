//! This node's `Node` object: capacity, allocatable, conditions, addresses, version.

use serde_json::{Value, json};

/// What the host has, read from /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostResources {
    pub cpus: u64,
    pub memory_bytes: u64,
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
        }
    }
}

/// `MemTotal:  24575880 kB` -> bytes.
pub fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Memory kept back from pods for the system and the agent, as kubelet's reservations do.
const RESERVED_MEMORY: u64 = 256 << 20;
/// The most pods a node takes (kubelet's default).
pub const MAX_PODS: u64 = 110;

/// The Node object for this host as of `now`.
pub fn node_object(name: &str, address: &str, res: HostResources, now: &str) -> Value {
    let alloc_mem = res.memory_bytes.saturating_sub(RESERVED_MEMORY);
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
                {"type": "MemoryPressure", "status": "False", "reason": "AgentHasSufficientMemory", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "DiskPressure", "status": "False", "reason": "AgentHasNoDiskPressure", "lastHeartbeatTime": now, "lastTransitionTime": now},
            ],
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "kubeletVersion": format!("flotilla-{}", env!("CARGO_PKG_VERSION")),
                "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH,
                "containerRuntimeVersion": "flotilla-runtime",
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            },
            "t",
        );
        assert_eq!(n["status"]["capacity"]["memory"], "1048576Ki");
        assert_eq!(n["status"]["allocatable"]["memory"], "786432Ki");
        assert_eq!(n["status"]["allocatable"]["cpu"], "4");
    }
}
