//! The service proxy: a table of services and their ready endpoints becomes one nftables table,
//! `inet flotilla`, in the spirit of kube-proxy's nftables mode, with fewer chains:
//!
//! - One verdict map from `ClusterIP . protocol . port` to a chain, and one from
//!   `protocol . NodePort`, so a packet costs one map lookup however many services there are.
//! - The chain is `pick-PROTO-N`, shared by every service port of that protocol with N ready
//!   endpoints: it DNATs to the endpoint found in the `endpoints-PROTO` map under
//!   `ClusterIP . port . (numgen random mod N)`. An endpoint change only rewrites elements.
//! - A service with ClientIP affinity has its own chain and a chain per endpoint instead: a
//!   dynamic set per endpoint (with the affinity timeout) sends a client seen recently back to
//!   the same endpoint.
//! - A pod reaching itself through its service (hairpin) is masqueraded so the reply comes back
//!   through the node; traffic from outside the pod network to a ClusterIP, and all NodePort
//!   traffic, is masqueraded; pods' traffic leaving the node is masqueraded behind the node.
//! - A service port with no ready endpoint is in a second pair of maps whose verdict rejects new
//!   connections at once (a TCP reset, or ICMP port unreachable for UDP and SCTP: the client
//!   sees "connection refused").
//!
//! Every sync is one `nft -f -` transaction, so the kernel never holds half a ruleset. The first
//! sync (and any after a failure) deletes and rebuilds the whole table, removing whatever stale
//! rules a previous run left; later syncs only touch the chains and elements that changed.
//! The proxy owns the one table and never touches another.
//!
//! [`render`] and [`transaction`] are pure functions of data; [`ServiceProxy`] runs `nft`.

use std::collections::{BTreeMap, HashMap, HashSet};
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
    /// Chains made on demand (`pick-N`, `nodeport-pick-N`, and the chains of services with
    /// ClientIP affinity), with their rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Affinity sets and their timeout in seconds.
    pub sets: BTreeMap<String, u32>,
    /// Elements of the skeleton's maps and sets: name -> key -> value (empty for a set).
    pub elements: BTreeMap<String, BTreeMap<String, String>>,
}

impl Ruleset {
    fn put(&mut self, map: &str, key: String, value: String) {
        self.elements
            .entry(map.to_string())
            .or_default()
            .insert(key, value);
    }

    /// The elements of one of the skeleton's maps or sets.
    pub fn elements_of(&self, map: &str) -> BTreeMap<String, String> {
        self.elements.get(map).cloned().unwrap_or_default()
    }
}

const PROTOCOLS: [&str; 3] = ["tcp", "udp", "sctp"];

/// The skeleton's maps and sets, with their declarations. The endpoint maps are one per
/// protocol (`tcp dport`, not `th dport`): Debian's nft 1.0.6 cannot add a rule against a map
/// whose key mixes `meta l4proto` and `th dport` once that map is in the kernel.
fn maps() -> Vec<(String, String)> {
    let mut m: Vec<(String, String)> = [
        (
            "service-ips",
            "type ipv4_addr . inet_proto . inet_service : verdict",
        ),
        (
            "service-nodeports",
            "type inet_proto . inet_service : verdict",
        ),
        (
            "no-endpoint-services",
            "type ipv4_addr . inet_proto . inet_service : verdict",
        ),
        (
            "no-endpoint-nodeports",
            "type inet_proto . inet_service : verdict",
        ),
        // endpoint . endpoint: a pod reaching itself through a service.
        ("hairpin", "type ipv4_addr . ipv4_addr"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    for p in PROTOCOLS {
        // ClusterIP . port . pick -> endpoint address . port
        m.push((
            format!("endpoints-{p}"),
            format!("typeof ip daddr . {p} dport . numgen random mod 2 : ip daddr . {p} dport"),
        ));
        // NodePort . pick -> endpoint address . port
        m.push((
            format!("nodeport-endpoints-{p}"),
            format!("typeof {p} dport . numgen random mod 2 : ip daddr . {p} dport"),
        ));
    }
    m
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
///
/// A service port with N endpoints is N elements of the `endpoints-PROTO` map and one verdict
/// `goto pick-PROTO-N`; that chain is shared by every service with N endpoints and picks with
/// `numgen random mod N`. So an endpoint change only touches map elements, and the number of
/// chains stays small whatever the number of services: `nft` reads every chain of the table
/// before each transaction, and that read, not the kernel's commit, is what grows with chains.
/// Services with ClientIP affinity keep a chain per service and per endpoint (the affinity
/// sets need them).
pub fn render(cfg: &ProxyConfig, services: &[Service]) -> Ruleset {
    let mut r = Ruleset::default();
    let masq_outside = format!("ip saddr != {} jump mark-for-masquerade", cfg.cluster_cidr);
    for s in services {
        for p in &s.ports {
            let id = port_id(s, p);
            let proto = p.protocol.as_str();
            let key = format!("{} . {proto} . {}", s.cluster_ip, p.port);
            let np_key = p.node_port.map(|np| format!("{proto} . {np}"));
            let mut eps = p.endpoints.clone();
            eps.sort();
            eps.dedup();
            if eps.is_empty() {
                r.put("no-endpoint-services", key, String::new());
                if let Some(k) = np_key {
                    r.put("no-endpoint-nodeports", k, String::new());
                }
                continue;
            }
            for ep in &eps {
                r.put("hairpin", format!("{} . {}", ep.ip, ep.ip), String::new());
            }
            if let Some(t) = s.affinity_timeout {
                let svc_chain = format!("svc/{id}");
                let mut rules = vec![masq_outside.clone()];
                let mut picks = Vec::new();
                for (i, ep) in eps.iter().enumerate() {
                    let sep = format!("sep/{id}/{}/{}", ep.ip, ep.port);
                    let set = format!("aff/{id}/{}/{}/{t}", ep.ip, ep.port);
                    rules.push(format!("ip saddr @{set} goto {sep}"));
                    r.chains.insert(
                        sep.clone(),
                        vec![
                            format!("update @{set} {{ ip saddr }}"),
                            format!("meta l4proto {proto} dnat ip to {}:{}", ep.ip, ep.port),
                        ],
                    );
                    r.sets.insert(set, t);
                    picks.push(format!("{i} : goto {sep}"));
                }
                rules.push(format!(
                    "numgen random mod {} vmap {{ {} }}",
                    eps.len(),
                    picks.join(", ")
                ));
                r.chains.insert(svc_chain.clone(), rules);
                r.put("service-ips", key, format!("goto {svc_chain}"));
                if let Some(k) = np_key {
                    let ext = format!("ext/{id}");
                    r.chains.insert(
                        ext.clone(),
                        vec![
                            "jump mark-for-masquerade".to_string(),
                            format!("goto {svc_chain}"),
                        ],
                    );
                    r.put("service-nodeports", k, format!("goto {ext}"));
                }
                continue;
            }
            let n = eps.len();
            let pick = format!("pick-{proto}-{n}");
            r.chains.insert(
                pick.clone(),
                vec![
                    masq_outside.clone(),
                    format!("meta l4proto {proto} dnat ip to ip daddr . {proto} dport . numgen random mod {n} map @endpoints-{proto}"),
                ],
            );
            for (i, ep) in eps.iter().enumerate() {
                r.put(
                    &format!("endpoints-{proto}"),
                    format!("{} . {} . {i}", s.cluster_ip, p.port),
                    format!("{} . {}", ep.ip, ep.port),
                );
            }
            r.put("service-ips", key, format!("goto {pick}"));
            if let (Some(k), Some(np)) = (np_key, p.node_port) {
                let np_pick = format!("nodeport-pick-{proto}-{n}");
                r.chains.insert(
                    np_pick.clone(),
                    vec![
                        "jump mark-for-masquerade".to_string(),
                        format!("meta l4proto {proto} dnat ip to {proto} dport . numgen random mod {n} map @nodeport-endpoints-{proto}"),
                    ],
                );
                for (i, ep) in eps.iter().enumerate() {
                    r.put(
                        &format!("nodeport-endpoints-{proto}"),
                        format!("{np} . {i}"),
                        format!("{} . {}", ep.ip, ep.port),
                    );
                }
                r.put("service-nodeports", k, format!("goto {np_pick}"));
            }
        }
    }
    r
}

/// The fixed part of the table: base chains hooked into the kernel, helper chains and maps.
fn skeleton(cfg: &ProxyConfig, out: &mut String) {
    let t = format!("inet {TABLE}");
    for (name, ty) in maps() {
        let kind = if ty.contains(':') { "map" } else { "set" };
        let _ = writeln!(out, "add {kind} {t} {name} {{ {ty} ; }}");
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
        // Hairpin: the reply must come back through the node to be un-NATed.
        (
            "nat-postrouting",
            "ct status dnat ip saddr . ip daddr @hairpin masquerade".into(),
        ),
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
    let none = BTreeMap::new();
    let maps = maps();
    // Removals first, then additions: a key whose value changes is deleted and added again.
    for (map, _) in &maps {
        let (old, new) = (
            prev.elements.get(map).unwrap_or(&none),
            next.elements.get(map).unwrap_or(&none),
        );
        let gone: Vec<&String> = old
            .iter()
            .filter(|(k, v)| new.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        if !gone.is_empty() {
            let keys: Vec<&str> = gone.iter().map(|k| k.as_str()).collect();
            let _ = writeln!(out, "delete element {t} {map} {{ {} }}", keys.join(", "));
        }
    }
    for (map, ty) in &maps {
        let (old, new) = (
            prev.elements.get(map).unwrap_or(&none),
            next.elements.get(map).unwrap_or(&none),
        );
        let reject = map.starts_with("no-endpoint");
        let added: Vec<String> = new
            .iter()
            .filter(|(k, v)| old.get(*k) != Some(*v))
            .map(|(k, v)| match (reject, ty.contains(':')) {
                (true, _) => format!("{k} : goto reject-chain"),
                (false, true) => format!("{k} : {v}"),
                (false, false) => k.clone(),
            })
            .collect();
        if !added.is_empty() {
            let _ = writeln!(out, "add element {t} {map} {{ {} }}", added.join(", "));
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

/// What is in the kernel, by object, with how many services use each (a `pick-` chain or a
/// hairpin element is shared), so that a sync only looks at the services that changed.
#[derive(Debug, Default)]
struct Counted {
    chains: HashMap<String, (Vec<String>, usize)>,
    sets: HashMap<String, (u32, usize)>,
    elements: HashMap<(String, String), (String, usize)>,
}

/// The objects of a ruleset, by identity.
#[derive(Default)]
struct Ids {
    chains: HashSet<String>,
    sets: HashSet<String>,
    elements: HashSet<(String, String)>,
}

impl Ids {
    fn add(&mut self, r: &Ruleset) {
        self.chains.extend(r.chains.keys().cloned());
        self.sets.extend(r.sets.keys().cloned());
        for (map, els) in &r.elements {
            for k in els.keys() {
                self.elements.insert((map.clone(), k.clone()));
            }
        }
    }
}

impl Counted {
    fn add(&mut self, r: &Ruleset) {
        for (c, rules) in &r.chains {
            self.chains.entry(c.clone()).or_insert((rules.clone(), 0)).1 += 1;
        }
        for (set, t) in &r.sets {
            self.sets.entry(set.clone()).or_insert((*t, 0)).1 += 1;
        }
        for (map, els) in &r.elements {
            for (k, v) in els {
                self.elements
                    .entry((map.clone(), k.clone()))
                    .or_insert((v.clone(), 0))
                    .1 += 1;
            }
        }
    }

    fn sub(&mut self, r: &Ruleset) {
        fn dec<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, (V, usize)>, k: K) {
            if let Some(e) = m.get_mut(&k) {
                e.1 -= 1;
                if e.1 == 0 {
                    m.remove(&k);
                }
            }
        }
        for c in r.chains.keys() {
            dec(&mut self.chains, c.clone());
        }
        for set in r.sets.keys() {
            dec(&mut self.sets, set.clone());
        }
        for (map, els) in &r.elements {
            for k in els.keys() {
                dec(&mut self.elements, (map.clone(), k.clone()));
            }
        }
    }

    /// The objects among `ids` that are present, as a ruleset.
    fn snapshot(&self, ids: &Ids) -> Ruleset {
        let mut r = Ruleset::default();
        for c in &ids.chains {
            if let Some((rules, _)) = self.chains.get(c) {
                r.chains.insert(c.clone(), rules.clone());
            }
        }
        for set in &ids.sets {
            if let Some((t, _)) = self.sets.get(set) {
                r.sets.insert(set.clone(), *t);
            }
        }
        for id in &ids.elements {
            if let Some((v, _)) = self.elements.get(id) {
                r.put(&id.0, id.1.clone(), v.clone());
            }
        }
        r
    }
}

/// The services last applied (in the order given), each with its own rendering, and the
/// kernel's objects counted.
#[derive(Debug, Default)]
struct Applied {
    services: Vec<(Service, Ruleset)>,
    counted: Counted,
}

/// What a sync will do: the transaction, whether it rebuilds the table, the state it leaves,
/// and the UDP endpoints it takes out of every service (their flows are forgotten after).
struct Plan {
    script: String,
    full: bool,
    next: Applied,
    gone_udp: Vec<Endpoint>,
}

/// Keeps the kernel's `inet flotilla` table equal to a table of services.
pub struct ServiceProxy {
    cfg: ProxyConfig,
    netns: Option<PathBuf>,
    applied: Option<Applied>,
    /// libnftables in-process (see [`crate::nftlib`]); `None`: the `nft` program.
    lib: Option<crate::nftlib::NftLib>,
}

impl ServiceProxy {
    /// A proxy for the network namespace at `netns` (the caller's own when `None`). Nothing is
    /// changed until the first [`sync`](Self::sync), which rebuilds the table.
    pub fn new(cfg: ProxyConfig, netns: Option<&Path>) -> ServiceProxy {
        let lib = crate::nftlib::NftLib::open(netns)
            .inspect_err(|e| tracing::info!(error = %e, "nftables through the nft program"))
            .ok();
        ServiceProxy {
            cfg,
            netns: netns.map(Path::to_owned),
            applied: None,
            lib,
        }
    }

    /// Runs every transaction through the `nft` program rather than libnftables (to compare
    /// the two, and to test the path taken on machines without the library).
    pub fn with_nft_program(mut self) -> ServiceProxy {
        self.lib = None;
        self
    }

    /// Whether transactions go through libnftables in this process.
    pub fn in_process(&self) -> bool {
        self.lib.is_some()
    }

    fn run(&self, script: &str) -> Result<(), NetError> {
        match &self.lib {
            Some(lib) => lib.run(script),
            None => nft(self.netns.as_deref(), script),
        }
    }

    /// The transaction that takes the table to `services` (one entry per namespace and name),
    /// and the state it leaves. Only services that differ from the last sync are rendered and
    /// compared, so a one-endpoint change costs the same with 10 services or 5,000.
    fn plan(&mut self, services: &[Service]) -> Plan {
        let mut next = Applied {
            services: Vec::with_capacity(services.len()),
            counted: Counted::default(),
        };
        let Some(mut prev) = self.applied.take() else {
            for s in services {
                let r = render(&self.cfg, std::slice::from_ref(s));
                next.counted.add(&r);
                next.services.push((s.clone(), r));
            }
            let all = render(&self.cfg, services);
            return Plan {
                script: transaction(&self.cfg, None, &all),
                full: true,
                next,
                gone_udp: Vec::new(),
            };
        };
        // The caller usually lists services in the same order every time: match them by
        // position, and only fall back to an index by name when the order moved.
        let mut slots: Vec<Option<(Service, Ruleset)>> = std::mem::take(&mut prev.services)
            .into_iter()
            .map(Some)
            .collect();
        let mut index: Option<HashMap<(String, String), usize>> = None;
        let (mut old, mut new) = (Vec::new(), Vec::new());
        for (i, s) in services.iter().enumerate() {
            let in_place = slots
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|(p, _)| p.namespace == s.namespace && p.name == s.name);
            let j = if in_place {
                Some(i)
            } else {
                let idx = index.get_or_insert_with(|| {
                    slots
                        .iter()
                        .enumerate()
                        .filter_map(|(j, x)| {
                            x.as_ref()
                                .map(|(p, _)| ((p.namespace.clone(), p.name.clone()), j))
                        })
                        .collect()
                });
                idx.get(&(s.namespace.clone(), s.name.clone())).copied()
            };
            match j.and_then(|j| slots[j].take()) {
                Some((was, r)) if was == *s => next.services.push((was, r)),
                stale => {
                    if let Some((_, r)) = stale {
                        old.push(r);
                    }
                    let r = render(&self.cfg, std::slice::from_ref(s));
                    new.push(r.clone());
                    next.services.push((s.clone(), r));
                }
            }
        }
        old.extend(slots.into_iter().flatten().map(|(_, r)| r));
        let mut ids = Ids::default();
        for r in old.iter().chain(&new) {
            ids.add(r);
        }
        let before = prev.counted.snapshot(&ids);
        for r in &old {
            prev.counted.sub(r);
        }
        for r in &new {
            prev.counted.add(r);
        }
        let after = prev.counted.snapshot(&ids);
        next.counted = prev.counted;
        Plan {
            script: transaction(&self.cfg, Some(&before), &after),
            full: false,
            next,
            gone_udp: gone_udp_endpoints(&before, &after),
        }
    }

    /// Makes the table match `services` in one transaction. On failure the next sync rebuilds
    /// the table from nothing, so a failed sync never leaves the proxy believing a wrong state.
    pub fn sync(&mut self, services: &[Service]) -> Result<SyncReport, NetError> {
        let Plan {
            script,
            full,
            next,
            gone_udp,
        } = self.plan(services);
        let commands = script.lines().count();
        if commands > 0 {
            self.run(&script)?;
        }
        // A UDP flow keeps its conntrack entry (and so its old endpoint) as long as packets
        // keep coming; forget the flows to endpoints that left, as kube-proxy does.
        for ep in &gone_udp {
            forget_udp_flows(self.netns.as_deref(), *ep);
        }
        self.applied = Some(next);
        Ok(SyncReport { full, commands })
    }

    /// Whether the table the last sync left is still there (its base chain exists). Someone's
    /// `nft flush ruleset` (Debian's `systemctl restart nftables` does one) removes it; then
    /// this returns false and the next sync rebuilds it whole.
    pub fn intact(&mut self) -> bool {
        if self.applied.is_none() {
            return true;
        }
        let there = self
            .run(&format!("list chain inet {TABLE} nat-prerouting\n"))
            .is_ok();
        if !there {
            self.applied = None;
        }
        there
    }

    /// Forces the next sync to rebuild the table (a periodic full resync).
    pub fn invalidate(&mut self) {
        self.applied = None;
    }

    /// Deletes the table, if there is one.
    pub fn remove(&mut self) -> Result<(), NetError> {
        self.applied = None;
        self.run(&format!(
            "add table inet {TABLE}\ndelete table inet {TABLE}\n"
        ))
    }
}

/// The UDP endpoints (address . port values of the UDP endpoint maps) in `before` and in no
/// UDP endpoint map of `after`.
fn gone_udp_endpoints(before: &Ruleset, after: &Ruleset) -> Vec<Endpoint> {
    let values = |r: &Ruleset| -> HashSet<String> {
        ["endpoints-udp", "nodeport-endpoints-udp"]
            .iter()
            .flat_map(|m| r.elements_of(m).into_values())
            .collect()
    };
    let (was, is) = (values(before), values(after));
    let mut gone: Vec<Endpoint> = was
        .difference(&is)
        .filter_map(|v| {
            let (ip, port) = v.split_once(" . ")?;
            Some(Endpoint {
                ip: ip.parse().ok()?,
                port: port.parse().ok()?,
            })
        })
        .collect();
    gone.sort();
    gone
}

/// Deletes the UDP conntrack entries whose replies come from `ep` (flows DNATed to it), with
/// the `conntrack` tool, inside the namespace at `netns`. Best effort: no entry is fine.
fn forget_udp_flows(netns: Option<&Path>, ep: Endpoint) {
    let mut cmd = Command::new("conntrack");
    cmd.args(["-D", "-p", "udp", "--reply-src"])
        .arg(ep.ip.to_string())
        .arg("--reply-port-src")
        .arg(ep.port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let ns = netns.and_then(|p| std::fs::File::open(p).ok());
    if let Some(f) = &ns {
        enter_before_exec(&mut cmd, f);
    }
    if let Err(e) = cmd.status() {
        tracing::warn!(error = %e, "cannot run conntrack to forget UDP flows");
    }
}

/// Makes `cmd`'s child enter the network namespace `ns` before it runs (the file must stay
/// open until the child is spawned).
fn enter_before_exec(cmd: &mut Command, ns: &std::fs::File) {
    let fd = ns.as_raw_fd();
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
        enter_before_exec(&mut cmd, f);
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
