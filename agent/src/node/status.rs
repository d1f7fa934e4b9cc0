//! This node's `Node` object: capacity, allocatable, conditions, addresses, version.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

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

pub(crate) fn meminfo_field(meminfo: &str, field: &str) -> Option<u64> {
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

/// A Node as seen by a node that has not heard from it by gossip: Ready becomes Unknown, as
/// Kubernetes shows a node whose kubelet stopped posting status.
pub fn unreachable_view(node: &mut Node) {
    let conditions = node.status.as_mut().and_then(|s| s.conditions.as_mut());
    for c in conditions
        .into_iter()
        .flatten()
        .filter(|c| c.type_ == "Ready")
    {
        c.status = "Unknown".into();
        c.reason = Some("NodeUnreachable".into());
        c.message = Some("no member of the cluster hears this node's gossip".into());
    }
}

/// Carries each condition's `lastTransitionTime` over from `prev` while its status holds.
pub fn keep_transitions(mut fresh: Node, prev: &Node) -> Node {
    let before = prev.status.as_ref().and_then(|s| s.conditions.as_ref());
    let conds = fresh.status.as_mut().and_then(|s| s.conditions.as_mut());
    for c in conds.into_iter().flatten() {
        let was = before
            .into_iter()
            .flatten()
            .find(|o| o.type_ == c.type_ && o.status == c.status);
        if let Some(t) = was.and_then(|b| b.last_transition_time.clone()) {
            c.last_transition_time = Some(t);
        }
    }
    fresh
}

/// Whether a fresh status says something the stored one does not (heartbeat times aside).
/// Liveness travels by gossip, so an unchanged status is written only now and then (as the
/// kubelet reports an unchanged status every 5 minutes and renews a Lease for liveness).
pub fn status_changed(fresh: &Node, prev: &Node) -> bool {
    let strip = |n: &Node| {
        let mut s = n.status.clone().unwrap_or_default();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
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
fn system_info() -> NodeSystemInfo {
    static INFO: std::sync::OnceLock<NodeSystemInfo> = std::sync::OnceLock::new();
    INFO.get_or_init(|| {
        let version = format!("flotilla-{}", env!("CARGO_PKG_VERSION"));
        let machine_id = read_line("/etc/machine-id");
        let product_uuid = read_line("/sys/class/dmi/id/product_uuid");
        NodeSystemInfo {
            architecture: std::env::consts::ARCH.into(),
            boot_id: read_line("/proc/sys/kernel/random/boot_id"),
            container_runtime_version: "flotilla-runtime".into(),
            kernel_version: read_line("/proc/sys/kernel/osrelease"),
            kube_proxy_version: version.clone(),
            kubelet_version: version,
            operating_system: "linux".into(),
            os_image: os_image(),
            system_uuid: if product_uuid.is_empty() {
                machine_id.clone()
            } else {
                product_uuid
            },
            machine_id,
        }
    })
    .clone()
}

/// One of the node's conditions, as of `now`.
fn condition(
    kind: &str,
    on: bool,
    reason: &str,
    message: Option<String>,
    now: &Time,
) -> NodeCondition {
    NodeCondition {
        type_: kind.into(),
        status: if on { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message,
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// The Node object for this host as of `now` (RFC 3339; the current time if it does not read).
pub fn node_object(name: &str, address: &str, res: HostResources, now: &str) -> Node {
    let now = Time(now.parse().unwrap_or_else(|_| {
        k8s_openapi::jiff::Timestamp::from_second(chrono::Utc::now().timestamp())
            .unwrap_or_default()
    }));
    let alloc_mem = res.memory_bytes.saturating_sub(RESERVED_MEMORY);
    let mem_pressure = res.memory_available > 0 && res.memory_available < MEMORY_PRESSURE_BELOW;
    let disk_pressure = res.disk_free_percent < DISK_PRESSURE_BELOW_PERCENT;
    let resources = |memory: u64| -> BTreeMap<String, Quantity> {
        BTreeMap::from([
            ("cpu".into(), Quantity(res.cpus.to_string())),
            ("memory".into(), Quantity(format!("{}Ki", memory / 1024))),
            ("pods".into(), Quantity(MAX_PODS.to_string())),
        ])
    };
    let labels = [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", std::env::consts::ARCH),
        ("node-role.kubernetes.io/control-plane", "true"),
    ];
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            capacity: Some(resources(res.memory_bytes)),
            allocatable: Some(resources(alloc_mem)),
            conditions: Some(vec![
                condition(
                    "Ready",
                    true,
                    "AgentReady",
                    Some("flotilla agent is posting ready status".into()),
                    &now,
                ),
                if mem_pressure {
                    condition(
                        "MemoryPressure",
                        true,
                        "AgentHasInsufficientMemory",
                        Some(format!(
                            "{} MiB of memory available",
                            res.memory_available >> 20
                        )),
                        &now,
                    )
                } else {
                    condition(
                        "MemoryPressure",
                        false,
                        "AgentHasSufficientMemory",
                        None,
                        &now,
                    )
                },
                if disk_pressure {
                    condition(
                        "DiskPressure",
                        true,
                        "AgentHasDiskPressure",
                        Some(format!(
                            "{}% of the data dir's filesystem free",
                            res.disk_free_percent
                        )),
                        &now,
                    )
                } else {
                    condition("DiskPressure", false, "AgentHasNoDiskPressure", None, &now)
                },
            ]),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: address.into(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: name.into(),
                },
            ]),
            node_info: Some(system_info()),
            ..Default::default()
        }),
    }
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
    use serde_json::Value;

    #[test]
    fn the_node_object_is_a_kubernetes_node_with_the_hosts_system_info() {
        let res = test_host();
        let v = serde_json::to_value(node_object("n1", "10.0.0.1", res, "2026-01-01T00:00:00Z"))
            .unwrap();
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
        let first = node_object(
            "n1",
            "10.0.0.1",
            HostResources {
                cpus: 4,
                memory_bytes: 1 << 30,
                memory_available: 50 << 20,
                disk_free_percent: 50,
            },
            "2026-01-01T00:00:00Z",
        );
        let n = serde_json::to_value(&first).unwrap();
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
                "2026-01-01T00:00:10Z",
            ),
            &first,
        );
        let later = serde_json::to_value(&later).unwrap();
        let since = |v: &Value, t: &str| {
            v["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()["lastTransitionTime"]
                .clone()
        };
        assert_eq!(
            since(&later, "MemoryPressure"),
            "2026-01-01T00:00:00Z",
            "unchanged: kept"
        );
        assert_eq!(
            since(&later, "DiskPressure"),
            "2026-01-01T00:00:10Z",
            "changed: now"
        );
        assert_eq!(n["status"]["capacity"]["memory"], "1048576Ki");
        assert_eq!(n["status"]["allocatable"]["memory"], "786432Ki");
        assert_eq!(n["status"]["allocatable"]["cpu"], "4");
    }
}
