//! The scheduler: places pods that have no node. A pure function of (pods, nodes); the
//! controller runner writes its bindings.
//!
//! Filters: node Ready, not cordoned, nodeSelector and required node affinity,
//! taints/tolerations, requested CPU, memory and pod count within allocatable, host ports free,
//! hard topology spread. Scores: preferred node affinity, soft topology spread, spread of one
//! owner's pods over zones and nodes, least allocated (see [`place`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::manifest::lifecycle::{
    controller_of, is_terminating, key_of, labels, name, namespace, node_ready, pod_finished,
    pod_node, tolerates_taints,
};
use crate::manifest::quantity::{parse_milli, parse_units};
use crate::manifest::selector::Selector;
use crate::store::Key;

pub mod affinity;

/// What the scheduler decided for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Bind {
        pod: Key,
        node: String,
    },
    /// No node fits; `message` says why, as Kubernetes does
    /// (`0/3 nodes are available: 3 Insufficient memory.`).
    Unschedulable {
        pod: Key,
        message: String,
    },
}

/// What a pod asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    pub cpu_milli: i64,
    pub memory: i64,
}

fn quantity(q: Option<&Quantity>, parse: fn(&str) -> Result<i64, String>) -> i64 {
    q.and_then(|q| parse(&q.0).ok()).unwrap_or(0)
}

fn container_request(c: &Container) -> Request {
    let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    Request {
        cpu_milli: quantity(r.and_then(|r| r.get("cpu")), parse_milli),
        memory: quantity(r.and_then(|r| r.get("memory")), parse_units),
    }
}

/// Sums the containers' requests (init containers: the largest, as Kubernetes does).
pub fn pod_request(pod: &Pod) -> Request {
    let Some(spec) = pod.spec.as_ref() else {
        return Request::default();
    };
    let apps = spec
        .containers
        .iter()
        .map(container_request)
        .fold(Request::default(), |acc, r| Request {
            cpu_milli: acc.cpu_milli + r.cpu_milli,
            memory: acc.memory + r.memory,
        });
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(container_request)
        .fold(Request::default(), |acc, r| Request {
            cpu_milli: acc.cpu_milli.max(r.cpu_milli),
            memory: acc.memory.max(r.memory),
        });
    Request {
        cpu_milli: apps.cpu_milli.max(init.cpu_milli),
        memory: apps.memory.max(init.memory),
    }
}

#[derive(Debug, Clone)]
struct NodeState<'a> {
    node: &'a Node,
    name: String,
    labels: BTreeMap<String, String>,
    /// Ready and not cordoned, or why not.
    unfit: Option<&'static str>,
    alloc: Request,
    max_pods: i64,
    used: Request,
    pods: i64,
    host_ports: BTreeSet<(i32, String)>,
    owners: BTreeMap<String, i64>,
}

impl NodeState<'_> {
    fn take(&mut self, p: &Pod, req: Request, owner: Option<&str>) {
        self.used.cpu_milli += req.cpu_milli;
        self.used.memory += req.memory;
        self.pods += 1;
        self.host_ports.extend(host_ports(p));
        if let Some(o) = owner {
            *self.owners.entry(o.to_string()).or_default() += 1;
        }
    }
}

fn owner_uid(p: &Pod) -> Option<&str> {
    controller_of(&p.metadata).map(|r| r.uid.as_str())
}

fn host_ports(p: &Pod) -> Vec<(i32, String)> {
    p.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|port| {
            Some((
                port.host_port?,
                port.protocol.clone().unwrap_or_else(|| "TCP".into()),
            ))
        })
        .collect()
}

/// A pod's `topologySpreadConstraints`, parsed.
struct Spread {
    key: String,
    max_skew: i64,
    hard: bool,
    selector: Selector,
}

fn spread_constraints(spec: &PodSpec) -> Vec<Spread> {
    spec.topology_spread_constraints
        .iter()
        .flatten()
        .filter_map(|c| {
            Some(Spread {
                key: c.topology_key.clone(),
                max_skew: i64::from(c.max_skew).max(1),
                hard: c.when_unsatisfiable == "DoNotSchedule",
                selector: Selector::from_label_selector(c.label_selector.as_ref()?).ok()?,
            })
        })
        .collect()
}

/// For one constraint: how many matching pods of the namespace each domain (value of the
/// topology key, among the nodes the pod may go to) holds, and the smallest count.
fn domain_counts(
    c: &Spread,
    ns: &str,
    eligible: &[bool],
    states: &[NodeState],
    placed: &[(usize, &Pod)],
) -> (BTreeMap<String, i64>, i64) {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for (i, s) in states.iter().enumerate() {
        if eligible[i]
            && let Some(d) = s.labels.get(&c.key)
        {
            counts.entry(d.clone()).or_default();
        }
    }
    for (i, p) in placed {
        let pns = match namespace(&p.metadata) {
            "" => "default",
            n => n,
        };
        if pns == ns
            && let Some(d) = states[*i].labels.get(&c.key)
            && let Some(n) = counts.get_mut(d)
            && c.selector.matches(labels(&p.metadata))
        {
            *n += 1;
        }
    }
    let min = counts.values().copied().min().unwrap_or(0);
    (counts, min)
}

/// Places every pod in `pods` that has no node yet, given all pods (for current usage) and the
/// nodes. Pods are taken in the order given.
///
/// Filters, in Kubernetes' order and words: readiness, cordon, `nodeSelector` and required node
/// affinity, taints, pod count, CPU, memory, host ports, then hard topology spread. Among the
/// nodes left, lower is better, compared in turn: preferred node affinity (more weight first),
/// soft topology spread, the owner's pods in the node's zone, the owner's pods on the node, the
/// most loaded resource share once the pod is on it, and the name. Usage is updated as pods are
/// placed, so one pass never overcommits.
pub fn place(pods: &[Pod], nodes: &[Node]) -> Vec<Decision> {
    let mut states: Vec<NodeState> = nodes
        .iter()
        .map(|n| {
            let a = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
            NodeState {
                node: n,
                name: name(&n.metadata).to_string(),
                labels: labels(&n.metadata).clone(),
                unfit: if !node_ready(n) {
                    Some("node(s) were not ready")
                } else if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
                    Some("node(s) were unschedulable")
                } else {
                    None
                },
                alloc: Request {
                    cpu_milli: quantity(a.and_then(|a| a.get("cpu")), parse_milli),
                    memory: quantity(a.and_then(|a| a.get("memory")), parse_units),
                },
                max_pods: a
                    .and_then(|a| a.get("pods"))
                    .and_then(|q| q.0.parse().ok())
                    .unwrap_or(110),
                used: Request::default(),
                pods: 0,
                host_ports: BTreeSet::new(),
                owners: BTreeMap::new(),
            }
        })
        .collect();
    // Ties go to the first name.
    states.sort_by(|a, b| a.name.cmp(&b.name));
    let index: BTreeMap<String, usize> = states
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), i))
        .collect();
    // The pods on each node (kept only for topology spread constraints) and, per zone, how many
    // pods of each owner it runs.
    let mut placed: Vec<(usize, &Pod)> = Vec::new();
    let mut zone_owners: BTreeMap<(String, String), i64> = BTreeMap::new();
    let any_spread = pods.iter().any(|p| {
        p.spec
            .as_ref()
            .is_some_and(|s| s.topology_spread_constraints.is_some())
    });
    for p in pods.iter().filter(|p| !pod_finished(p)) {
        let Some(&i) = pod_node(p).and_then(|n| index.get(n)) else {
            continue;
        };
        let owner = owner_uid(p);
        states[i].take(p, pod_request(p), owner);
        if let (Some(o), Some(z)) = (owner, states[i].labels.get(affinity::ZONE)) {
            *zone_owners.entry((z.clone(), o.to_string())).or_default() += 1;
        }
        if any_spread {
            placed.push((i, p));
        }
    }
    let mut out = Vec::new();
    let mut eligible = vec![false; states.len()];
    let no_spec = PodSpec::default();
    for p in pods
        .iter()
        .filter(|p| pod_node(p).is_none() && !is_terminating(&p.metadata) && !pod_finished(p))
    {
        if name(&p.metadata).is_empty() {
            continue;
        }
        let key = key_of(p);
        let spec = p.spec.as_ref().unwrap_or(&no_spec);
        let req = pod_request(p);
        let owner = owner_uid(p);
        let ports = host_ports(p);
        let spreads = spread_constraints(spec);
        let tolerations = spec.tolerations.as_deref().unwrap_or_default();
        let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (i, s) in states.iter().enumerate() {
            eligible[i] = affinity::required_matches(spec, &s.labels, &s.name);
        }
        let counts: Vec<(BTreeMap<String, i64>, i64)> = spreads
            .iter()
            .map(|c| domain_counts(c, &key.namespace, &eligible, &states, &placed))
            .collect();
        let mut best: Option<(usize, [i64; 5])> = None;
        for (i, s) in states.iter().enumerate() {
            let mut soft_spread = 0;
            let why = if let Some(w) = s.unfit {
                Some(w)
            } else if !eligible[i] {
                Some("node(s) didn't match Pod's node affinity/selector")
            } else if !tolerates_taints(tolerations, s.node) {
                Some("node(s) had untolerated taint")
            } else if s.pods + 1 > s.max_pods {
                Some("Too many pods")
            } else if s.used.cpu_milli + req.cpu_milli > s.alloc.cpu_milli {
                Some("Insufficient cpu")
            } else if s.used.memory + req.memory > s.alloc.memory {
                Some("Insufficient memory")
            } else if ports.iter().any(|hp| s.host_ports.contains(hp)) {
                Some("node(s) didn't have free ports for the requested pod ports")
            } else {
                let mut why = None;
                for (c, (domains, min)) in spreads.iter().zip(&counts) {
                    match s.labels.get(&c.key).and_then(|d| domains.get(d)) {
                        None if c.hard => {
                            why = Some(
                                "node(s) didn't match pod topology spread constraints (missing required label)",
                            );
                        }
                        None => soft_spread += i64::from(u16::MAX),
                        Some(n) if c.hard && n + 1 - min > c.max_skew => {
                            why = Some("node(s) didn't match pod topology spread constraints");
                        }
                        Some(n) => soft_spread += n,
                    }
                }
                why
            };
            if let Some(w) = why {
                *reasons.entry(w).or_default() += 1;
                continue;
            }
            let share = |used: i64, alloc: i64| if alloc > 0 { used * 1000 / alloc } else { 0 };
            let load = share(s.used.cpu_milli + req.cpu_milli, s.alloc.cpu_milli)
                .max(share(s.used.memory + req.memory, s.alloc.memory))
                .max(share(s.pods + 1, s.max_pods));
            let in_zone = match (owner, s.labels.get(affinity::ZONE)) {
                (Some(o), Some(z)) => zone_owners
                    .get(&(z.clone(), o.to_string()))
                    .copied()
                    .unwrap_or(0),
                _ => 0,
            };
            let on_node = owner.and_then(|o| s.owners.get(o).copied()).unwrap_or(0);
            let score = [
                -affinity::preferred_weight(spec, &s.labels, &s.name),
                soft_spread,
                in_zone,
                on_node,
                load,
            ];
            if best.as_ref().is_none_or(|(_, b)| score < *b) {
                best = Some((i, score));
            }
        }
        match best {
            Some((i, _)) => {
                let s = &mut states[i];
                s.take(p, req, owner);
                if let (Some(o), Some(z)) = (owner, s.labels.get(affinity::ZONE)) {
                    *zone_owners.entry((z.clone(), o.to_string())).or_default() += 1;
                }
                if any_spread {
                    placed.push((i, p));
                }
                out.push(Decision::Bind {
                    pod: key,
                    node: s.name.clone(),
                });
            }
            None => {
                let detail: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                let message = if nodes.is_empty() {
                    "0/0 nodes are available: no nodes registered.".to_string()
                } else {
                    format!(
                        "0/{} nodes are available: {}.",
                        nodes.len(),
                        detail.join(", ")
                    )
                };
                out.push(Decision::Unschedulable { pod: key, message });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
