//! The container spec the runtime takes (plain Rust, no manifests) and the OCI runtime spec
//! (`config.json`) made from it: Docker's default capabilities, no_new_privs, masked and
//! read-only /proc paths, a default seccomp profile, cgroup limits and shared namespaces.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// What one container is: everything the runtime needs, nothing about manifests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerSpec {
    /// Unique on the node; names the state dir and the cgroup leaf.
    pub id: String,
    /// The full argv (entrypoint and command already resolved).
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: Option<String>,
    pub read_only_rootfs: bool,
    pub mounts: Vec<BindMount>,
    pub resources: Resources,
    /// Cgroup path below the hierarchy root, e.g. `/flotilla/pod-UID/web`.
    pub cgroup_path: String,
    /// Namespaces to join (a pod sandbox's); `None` makes a new one.
    pub network_ns: Option<PathBuf>,
    pub ipc_ns: Option<PathBuf>,
    pub uts_ns: Option<PathBuf>,
    /// Keep the container's stdin open (a pipe its shim holds, fed by whoever attaches to
    /// `attach.sock` in its bundle), as Kubernetes' `stdin: true`; otherwise it reads
    /// `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
}

/// A host path (or volume dir) bound into the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// Cgroup limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    pub memory_bytes: Option<i64>,
    /// Relative CPU weight (cgroup v1 shares; converted for v2 by libcgroups).
    pub cpu_shares: Option<u64>,
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: Option<u64>,
    pub pids: Option<i64>,
}

impl ContainerSpec {
    /// A spec with sensible defaults: root, `/`, new namespaces, no limits.
    pub fn new(id: &str, args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            id: id.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            hostname: None,
            read_only_rootfs: false,
            mounts: vec![],
            resources: Resources::default(),
            cgroup_path: format!("/flotilla/{id}"),
            network_ns: None,
            ipc_ns: None,
            uts_ns: None,
            stdin: false,
        }
    }
}

/// Docker's default capability set: no NET_ADMIN, SYS_ADMIN, SYS_MODULE, ...
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from the container (Docker's list).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Syscalls the default seccomp profile refuses with EPERM; everything else is allowed. These
/// are the kernel-wide ones Docker's profile also blocks for containers without extra
/// capabilities (module loading, kexec, reboot, keyrings, bpf, namespace and mount changes).
pub const DENIED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_settime",
    "delete_module",
    "finit_module",
    "init_module",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "open_by_handle_at",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount2",
    "unshare",
    "userfaultfd",
];

fn ns(kind: &str, path: &Option<PathBuf>) -> Value {
    match path {
        Some(p) => json!({"type": kind, "path": p}),
        None => json!({"type": kind}),
    }
}

/// The OCI runtime spec for `c`, with its root at `rootfs`. Pure: tested on its own.
pub fn oci_spec(c: &ContainerSpec, rootfs: &Path) -> Value {
    let caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    for m in &c.mounts {
        let mut opts = vec!["rbind", "rprivate"];
        if m.read_only {
            opts.push("ro");
        }
        mounts.push(json!({"destination": m.destination, "type": "bind", "source": m.source, "options": opts}));
    }
    let r = &c.resources;
    let mut resources = json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"},
        ],
    });
    if let Some(m) = r.memory_bytes {
        resources["memory"] = json!({"limit": m});
    }
    let mut cpu = json!({});
    if let Some(s) = r.cpu_shares {
        cpu["shares"] = json!(s);
    }
    if let Some(q) = r.cpu_quota_us {
        cpu["quota"] = json!(q);
        cpu["period"] = json!(r.cpu_period_us.unwrap_or(100_000));
    }
    if cpu.as_object().is_some_and(|o| !o.is_empty()) {
        resources["cpu"] = cpu;
    }
    if let Some(p) = r.pids {
        resources["pids"] = json!({"limit": p});
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": c.uid, "gid": c.gid, "additionalGids": c.additional_gids},
            "args": c.args,
            "env": c.env,
            "cwd": c.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []},
            // No rlimits: containers inherit the agent's. Raising a hard limit needs
            // CAP_SYS_RESOURCE, which an agent in a restricted sandbox may not have.
            "noNewPrivileges": true,
        },
        "root": {"path": rootfs, "readonly": c.read_only_rootfs},
        "hostname": c.hostname.clone().unwrap_or_else(|| c.id.clone()),
        "mounts": mounts,
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "mount"},
                ns("network", &c.network_ns),
                ns("ipc", &c.ipc_ns),
                ns("uts", &c.uts_ns),
            ],
            "cgroupsPath": c.cgroup_path,
            "resources": resources,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "seccomp": {
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
                "syscalls": [{"names": DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_carries_the_container_settings() {
        let mut c = ContainerSpec::new("web", &["httpd", "-f"]);
        c.uid = 33;
        c.gid = 33;
        c.read_only_rootfs = true;
        c.resources = Resources {
            memory_bytes: Some(64 << 20),
            cpu_quota_us: Some(50_000),
            pids: Some(64),
            ..Default::default()
        };
        c.network_ns = Some("/run/netns/pod".into());
        c.mounts.push(BindMount {
            source: "/data/cfg".into(),
            destination: "/etc/cfg".into(),
            read_only: true,
        });
        let s = oci_spec(&c, Path::new("/r/rootfs"));
        assert_eq!(s["process"]["args"], json!(["httpd", "-f"]));
        assert_eq!(s["process"]["user"]["uid"], 33);
        assert_eq!(s["process"]["noNewPrivileges"], true);
        assert_eq!(s["root"]["readonly"], true);
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["linux"]["resources"]["cpu"]["period"], 100_000);
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], 64);
        assert_eq!(s["linux"]["cgroupsPath"], "/flotilla/web");
        let nss = s["linux"]["namespaces"].as_array().unwrap();
        assert!(nss.contains(&json!({"type": "network", "path": "/run/netns/pod"})));
        assert!(nss.contains(&json!({"type": "ipc"})));
        let caps = s["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert!(!caps.contains(&json!("CAP_NET_ADMIN")) && !caps.contains(&json!("CAP_SYS_ADMIN")));
        assert!(
            s["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .contains(&json!("/proc/kcore"))
        );
        let last = s["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            last,
            json!({"destination": "/etc/cfg", "type": "bind", "source": "/data/cfg", "options": ["rbind", "rprivate", "ro"]})
        );
        // It is a valid OCI runtime spec.
        let parsed: Result<oci_spec::runtime::Spec, _> = serde_json::from_value(s);
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
