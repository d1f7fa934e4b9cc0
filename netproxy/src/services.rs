//! The service proxy: a table of services and their ready endpoints becomes one nftables table,
//! `inet flotilla`, laid out as kube-proxy's nftables mode lays out its own.
//!
//! - One verdict map from `ClusterIP . protocol . port` to the service port's chain, and one from
//!   `protocol . NodePort`, so a packet costs one map lookup however many services there are.
//! - A service port's chain picks an endpoint with `numgen random mod N` over an anonymous
//!   verdict map; with ClientIP affinity it first sends a client seen recently (a dynamic set per
//!   endpoint with the affinity timeout) to the same endpoint.
//! - An endpoint's chain DNATs to the pod, and marks for masquerade a pod reaching itself
//!   through its service (hairpin), so the reply comes back through the node.
//! - Traffic from outside the pod network to a ClusterIP, and all NodePort traffic, is marked
//!   for masquerade; pods' traffic leaving the node is masqueraded behind the node's address.
//! - A service port with no ready endpoint is in a second pair of maps whose verdict rejects new
//!   connections at once (a TCP reset, or ICMP port unreachable for UDP and SCTP: the client
//!   sees "connection refused").
//!
//! Every sync is one `nft -f -` transaction, so the kernel never holds half a ruleset. The first
//! sync (and any after a failure) deletes and rebuilds the whole table, removing whatever stale
//! rules a previous run left; later syncs only touch the chains and map elements that changed.
//! The proxy owns the one table and never touches another.
//!
//! [`render`] and [`transaction`] are pure functions of data; [`ServiceProxy`] runs `nft`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::NetError;
use crate::podnet::Cidr;

/// The table's name in the `inet` family.
pub const TABLE: &str = "flotilla";
/// The packet mark bit asking for masquerade, as kube-proxy's.
const MASQ_MARK: u32 = 0x4000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Protocol, String> {
        match s {
            "TCP" | "tcp" => Ok(Protocol::Tcp),
            "UDP" | "udp" => Ok(Protocol::Udp),
            "SCTP" | "sctp" => Ok(Protocol::Sctp),
            _ => Err(format!("{s:?} is not TCP, UDP or SCTP")),
        }
    }
}

/// A ready backend of one service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// One port of a service, with the endpoints that serve it (target ports resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name, or its number when it has none.
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
    pub endpoints: Vec<Endpoint>,
}

/// A service with a ClusterIP (headless services have no rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    /// ClientIP session affinity: how long a client sticks to its endpoint, in seconds.
    pub affinity_timeout: Option<u32>,
    pub ports: Vec<ServicePort>,
}

/// What the proxy needs to know about the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Every pod address in the cluster: traffic to a ClusterIP from outside it is masqueraded.
    pub cluster_cidr: Cidr,
    /// This node's pods and their bridge: their traffic leaving the node (not to another pod)
    /// is masqueraded behind the node's address.
    pub egress: Option<(Cidr, String)>,
}

/// The objects the table holds beyond its fixed skeleton: what a sync compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Service, external and endpoint chains, with their rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Affinity sets and their timeout in seconds.
    pub sets: BTreeMap<String, u32>,
    /// `service-ips` elements: key -> verdict.
    pub service_ips: BTreeMap<String, String>,
    pub service_nodeports: BTreeMap<String, String>,
    /// Keys of service ports with no endpoint.
    pub no_endpoint_ips: BTreeSet<String>,
    pub no_endpoint_nodeports: BTreeSet<String>,
}

impl Ruleset {
    /// How many endpoint chains (one per service port and endpoint) the ruleset has.
    pub fn endpoint_chains(&self) -> usize {
        self.chains.keys().filter(|c| c.starts_with("sep/")).count()
    }
}

fn port_id(s: &Service, p: &ServicePort) -> String {
    format!(
        "{}/{}/{}/{}",
        s.namespace,
        s.name,
        p.protocol.as_str(),
        p.name
    )
}

/// The rules for `services`: a pure function.
pub fn render(cfg: &ProxyConfig, services: &[Service]) -> Ruleset {
    let mut r = Ruleset::default();
    for s in services {
        for p in &s.ports {
            let id = port_id(s, p);
            let svc_chain = format!("svc/{id}");
            let key = format!("{} . {} . {}", s.cluster_ip, p.protocol.as_str(), p.port);
            let np_key = p
                .node_port
                .map(|np| format!("{} . {np}", p.protocol.as_str()));
            let mut eps = p.endpoints.clone();
            eps.sort();
            eps.dedup();
            if eps.is_empty() {
                r.no_endpoint_ips.insert(key);
                if let Some(k) = np_key {
                    r.no_endpoint_nodeports.insert(k);
                }
                continue;
            }
            let mut rules = vec![format!(
                "ip daddr {} ip saddr != {} jump mark-for-masquerade",
                s.cluster_ip, cfg.cluster_cidr
            )];
            let mut picks = Vec::new();
            for (i, ep) in eps.iter().enumerate() {
                let sep = format!("sep/{id}/{}/{}", ep.ip, ep.port);
                let mut sep_rules = vec![format!("ip saddr {} jump mark-for-masquerade", ep.ip)];
                if let Some(t) = s.affinity_timeout {
                    let set = format!("aff/{id}/{}/{}/{t}", ep.ip, ep.port);
                    rules.push(format!("ip saddr @{set} goto {sep}"));
                    sep_rules.push(format!("update @{set} {{ ip saddr }}"));
                    r.sets.insert(set, t);
                }
                sep_rules.push(format!(
                    "meta l4proto {} dnat ip to {}:{}",
                    p.protocol.as_str(),
                    ep.ip,
                    ep.port
                ));
                r.chains.insert(sep.clone(), sep_rules);
                picks.push(format!("{i} : goto {sep}"));
            }
            rules.push(format!(
                "numgen random mod {} vmap {{ {} }}",
                eps.len(),
                picks.join(", ")
            ));
            r.chains.insert(svc_chain.clone(), rules);
            r.service_ips.insert(key, format!("goto {svc_chain}"));
            if let Some(k) = np_key {
                let ext = format!("ext/{id}");
                r.chains.insert(
                    ext.clone(),
                    vec![
                        "jump mark-for-masquerade".to_string(),
                        format!("goto {svc_chain}"),
                    ],
                );
                r.service_nodeports.insert(k, format!("goto {ext}"));
            }
        }
    }
    r
}

const MAPS: [(&str, &str); 4] = [
    (
        "service-ips",
        "ipv4_addr . inet_proto . inet_service : verdict",
    ),
    ("service-nodeports", "inet_proto . inet_service : verdict"),
    (
        "no-endpoint-services",
        "ipv4_addr . inet_proto . inet_service : verdict",
    ),
    (
        "no-endpoint-nodeports",
        "inet_proto . inet_service : verdict",
    ),
];

/// The fixed part of the table: base chains hooked into the kernel, helper chains and maps.
fn skeleton(cfg: &ProxyConfig, out: &mut String) {
    let t = format!("inet {TABLE}");
    for (name, ty) in MAPS {
        let _ = writeln!(out, "add map {t} {name} {{ type {ty} ; }}");
    }
    let base = [
        ("nat-prerouting", "nat", "prerouting", "dstnat"),
        ("nat-output", "nat", "output", "-100"),
        ("nat-postrouting", "nat", "postrouting", "srcnat"),
        ("filter-input", "filter", "input", "-110"),
        ("filter-forward", "filter", "forward", "-110"),
        ("filter-output", "filter", "output", "-110"),
    ];
    for (name, ty, hook, prio) in base {
        let _ = writeln!(
            out,
            "add chain {t} {name} {{ type {ty} hook {hook} priority {prio} ; policy accept ; }}"
        );
    }
    let masq = format!("0x{MASQ_MARK:x}");
    let mut rules: Vec<(&str, String)> = vec![
        (
            "services",
            "ip daddr . meta l4proto . th dport vmap @service-ips".into(),
        ),
        (
            "services",
            "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"
                .into(),
        ),
        (
            "endpoints-check",
            "ip daddr . meta l4proto . th dport vmap @no-endpoint-services".into(),
        ),
        (
            "endpoints-check",
            "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports"
                .into(),
        ),
        // A TCP reset is not rate-limited as ICMP errors are (per client, about one a
        // second), so a client retrying a service with no endpoint is refused every time.
        ("reject-chain", "meta l4proto tcp reject with tcp reset".into()),
        ("reject-chain", "reject".into()),
        (
            "mark-for-masquerade",
            format!("meta mark set meta mark | {masq}"),
        ),
        ("masquerading", format!("meta mark & {masq} == 0 return")),
        ("masquerading", format!("meta mark set meta mark ^ {masq}")),
        ("masquerading", "masquerade fully-random".into()),
        ("nat-prerouting", "jump services".into()),
        ("nat-output", "jump services".into()),
        ("nat-postrouting", "jump masquerading".into()),
        ("filter-input", "ct state new jump endpoints-check".into()),
        ("filter-forward", "ct state new jump endpoints-check".into()),
        ("filter-output", "ct state new jump endpoints-check".into()),
    ];
    if let Some((cidr, bridge)) = &cfg.egress {
        rules.push((
            "nat-postrouting",
            format!(
                "ip saddr {cidr} ip daddr != {} oifname != \"{bridge}\" masquerade",
                cfg.cluster_cidr
            ),
        ));
    }
    for c in [
        "services",
        "endpoints-check",
        "reject-chain",
        "mark-for-masquerade",
        "masquerading",
    ] {
        let _ = writeln!(out, "add chain {t} {c}");
    }
    for (c, rule) in rules {
        let _ = writeln!(out, "add rule {t} {c} {rule}");
    }
}

/// The `nft -f` script that takes the table from `prev` (unknown when `None`: rebuild it all)
/// to `next`. A pure function; order matters inside the transaction: new chains and sets
/// exist before anything jumps to them, and old ones are emptied before they are deleted.
pub fn transaction(cfg: &ProxyConfig, prev: Option<&Ruleset>, next: &Ruleset) -> String {
    let t = format!("inet {TABLE}");
    let mut out = String::new();
    let empty = Ruleset::default();
    let prev = match prev {
        Some(p) => p,
        None => {
            let _ = writeln!(out, "add table {t}");
            let _ = writeln!(out, "delete table {t}");
            let _ = writeln!(out, "add table {t}");
            skeleton(cfg, &mut out);
            &empty
        }
    };
    for (set, timeout) in &next.sets {
        if !prev.sets.contains_key(set) {
            let _ = writeln!(
                out,
                "add set {t} {set} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"
            );
        }
    }
    for c in next.chains.keys() {
        if !prev.chains.contains_key(c) {
            let _ = writeln!(out, "add chain {t} {c}");
        }
    }
    for (c, rules) in &next.chains {
        match prev.chains.get(c) {
            Some(old) if old == rules => continue,
            Some(_) => {
                let _ = writeln!(out, "flush chain {t} {c}");
            }
            None => {}
        }
        for r in rules {
            let _ = writeln!(out, "add rule {t} {c} {r}");
        }
    }
    type Elements<'a> = &'a BTreeMap<String, String>;
    let maps: [(&str, Elements, Elements); 2] = [
        ("service-ips", &prev.service_ips, &next.service_ips),
        (
            "service-nodeports",
            &prev.service_nodeports,
            &next.service_nodeports,
        ),
    ];
    for (map, old, new) in maps {
        for (k, v) in old {
            if new.get(k) != Some(v) {
                let _ = writeln!(out, "delete element {t} {map} {{ {k} }}");
            }
        }
        for (k, v) in new {
            if old.get(k) != Some(v) {
                let _ = writeln!(out, "add element {t} {map} {{ {k} : {v} }}");
            }
        }
    }
    let sets: [(&str, &BTreeSet<String>, &BTreeSet<String>); 2] = [
        (
            "no-endpoint-services",
            &prev.no_endpoint_ips,
            &next.no_endpoint_ips,
        ),
        (
            "no-endpoint-nodeports",
            &prev.no_endpoint_nodeports,
            &next.no_endpoint_nodeports,
        ),
    ];
    for (map, old, new) in sets {
        for k in old.difference(new) {
            let _ = writeln!(out, "delete element {t} {map} {{ {k} }}");
        }
        for k in new.difference(old) {
            let _ = writeln!(out, "add element {t} {map} {{ {k} : goto reject-chain }}");
        }
    }
    let gone: Vec<&String> = prev
        .chains
        .keys()
        .filter(|c| !next.chains.contains_key(*c))
        .collect();
    for c in &gone {
        let _ = writeln!(out, "flush chain {t} {c}");
    }
    for c in &gone {
        let _ = writeln!(out, "delete chain {t} {c}");
    }
    for set in prev.sets.keys() {
        if !next.sets.contains_key(set) {
            let _ = writeln!(out, "delete set {t} {set}");
        }
    }
    out
}

/// What one sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    /// The table was rebuilt from nothing.
    pub full: bool,
    /// Commands in the transaction (0: nothing changed, `nft` not run).
    pub commands: usize,
}

/// Keeps the kernel's `inet flotilla` table equal to a table of services.
pub struct ServiceProxy {
    cfg: ProxyConfig,
    netns: Option<PathBuf>,
    applied: Option<Ruleset>,
}

impl ServiceProxy {
    /// A proxy for the network namespace at `netns` (the caller's own when `None`). Nothing is
    /// changed until the first [`sync`](Self::sync), which rebuilds the table.
    pub fn new(cfg: ProxyConfig, netns: Option<&Path>) -> ServiceProxy {
        ServiceProxy {
            cfg,
            netns: netns.map(Path::to_owned),
            applied: None,
        }
    }

    /// Makes the table match `services` in one transaction. On failure the next sync rebuilds
    /// the table from nothing, so a failed sync never leaves the proxy believing a wrong state.
    pub fn sync(&mut self, services: &[Service]) -> Result<SyncReport, NetError> {
        let next = render(&self.cfg, services);
        let full = self.applied.is_none();
        let script = transaction(&self.cfg, self.applied.as_ref(), &next);
        let commands = script.lines().count();
        if commands > 0 {
            self.applied = None;
            nft(self.netns.as_deref(), &script)?;
        }
        self.applied = Some(next);
        Ok(SyncReport { full, commands })
    }

    /// Forces the next sync to rebuild the table (a periodic full resync).
    pub fn invalidate(&mut self) {
        self.applied = None;
    }

    /// Deletes the table, if there is one.
    pub fn remove(&mut self) -> Result<(), NetError> {
        self.applied = None;
        nft(
            self.netns.as_deref(),
            &format!("add table inet {TABLE}\ndelete table inet {TABLE}\n"),
        )
    }
}

/// Runs `nft -f -` with `script` on its standard input, inside the namespace at `netns`.
pub fn nft(netns: Option<&Path>, script: &str) -> Result<(), NetError> {
    let mut cmd = Command::new("nft");
    cmd.args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let ns = match netns {
        Some(p) => Some(std::fs::File::open(p).map_err(|e| NetError::Io {
            what: format!("opening {}", p.display()),
            source: e,
        })?),
        None => None,
    };
    if let Some(f) = &ns {
        let fd = f.as_raw_fd();
        // SAFETY: setns(2) is async-signal-safe; the child only calls it before exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|e| NetError::Io {
        what: "running nft (is the nftables package installed?)".into(),
        source: e,
    })?;
    let mut stdin = child.stdin.take().expect("piped");
    let write = stdin.write_all(script.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| NetError::Io {
        what: "waiting for nft".into(),
        source: e,
    })?;
    write.map_err(|e| NetError::Io {
        what: "writing the ruleset to nft".into(),
        source: e,
    })?;
    if !out.status.success() {
        return Err(NetError::Nft {
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
