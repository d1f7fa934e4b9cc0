//! The scheduler: places pods that have no node. A pure function of (pods, nodes); the
//! controller runner writes its bindings.
//!
//! Filters: node Ready, not cordoned, nodeSelector, taints/tolerations, requested CPU, memory
//! and pod count within allocatable, host ports free. Score: least allocated, then fewest pods of
//! the same owner (spread). Usage is updated as pods are placed, so one pass never overcommits.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::controller::daemonset::tolerates_taints;
use crate::controller::{is_terminating, pod_finished};
use crate::manifest::quantity::{parse_milli, parse_units};
use crate::selector::{Selector, string_map};
use crate::store::Key;

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

/// Sums the containers' requests (init containers: the largest, as Kubernetes does).
pub fn pod_request(pod: &Value) -> Request {
    let sum = |list: &Value| {
        list.as_array()
            .into_iter()
            .flatten()
            .fold(Request::default(), |acc, c| {
                let r = &c["resources"]["requests"];
                Request {
                    cpu_milli: acc.cpu_milli
                        + r["cpu"]
                            .as_str()
                            .and_then(|q| parse_milli(q).ok())
                            .unwrap_or(0),
                    memory: acc.memory
                        + r["memory"]
                            .as_str()
                            .and_then(|q| parse_units(q).ok())
                            .unwrap_or(0),
                }
            })
    };
    let apps = sum(&pod["spec"]["containers"]);
    let init = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .fold(Request::default(), |acc, c| {
            let r = sum(&Value::Array(vec![c.clone()]));
            Request {
                cpu_milli: acc.cpu_milli.max(r.cpu_milli),
                memory: acc.memory.max(r.memory),
            }
        });
    Request {
        cpu_milli: apps.cpu_milli.max(init.cpu_milli),
        memory: apps.memory.max(init.memory),
    }
}

#[derive(Debug, Clone)]
struct NodeState<'a> {
    node: &'a Value,
    name: String,
    alloc: Request,
    max_pods: i64,
    used: Request,
    pods: i64,
    host_ports: BTreeSet<(i64, String)>,
    owners: BTreeMap<String, i64>,
}

fn node_ready(n: &Value) -> bool {
    n["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn owner_uid(p: &Value) -> Option<String> {
    p["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)?["uid"]
        .as_str()
        .map(String::from)
}

fn host_ports(p: &Value) -> Vec<(i64, String)> {
    p["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .filter_map(|port| {
            Some((
                port["hostPort"].as_i64()?,
                port["protocol"].as_str().unwrap_or("TCP").to_string(),
            ))
        })
        .collect()
}

/// Places every pod in `pods` that has no node yet, given all pods (for current usage) and the
/// nodes. Pods are taken in the order given.
pub fn place(pods: &[Value], nodes: &[Value]) -> Vec<Decision> {
    let mut states: Vec<NodeState> = nodes
        .iter()
        .map(|n| {
            let a = &n["status"]["allocatable"];
            NodeState {
                node: n,
                name: n["metadata"]["name"].as_str().unwrap_or("").to_string(),
                alloc: Request {
                    cpu_milli: a["cpu"]
                        .as_str()
                        .and_then(|q| parse_milli(q).ok())
                        .unwrap_or(0),
                    memory: a["memory"]
                        .as_str()
                        .and_then(|q| parse_units(q).ok())
                        .unwrap_or(0),
                },
                max_pods: a["pods"]
                    .as_str()
                    .and_then(|q| q.parse().ok())
                    .unwrap_or(110),
                used: Request::default(),
                pods: 0,
                host_ports: BTreeSet::new(),
                owners: BTreeMap::new(),
            }
        })
        .collect();
    for p in pods.iter().filter(|p| !pod_finished(p)) {
        let Some(node) = p["spec"]["nodeName"].as_str() else {
            continue;
        };
        if let Some(s) = states.iter_mut().find(|s| s.name == node) {
            let r = pod_request(p);
            s.used.cpu_milli += r.cpu_milli;
            s.used.memory += r.memory;
            s.pods += 1;
            s.host_ports.extend(host_ports(p));
            if let Some(o) = owner_uid(p) {
                *s.owners.entry(o).or_default() += 1;
            }
        }
    }
    let mut out = Vec::new();
    for p in pods.iter().filter(|p| {
        p["spec"]["nodeName"].as_str().is_none() && !is_terminating(p) && !pod_finished(p)
    }) {
        let Ok(key) = Key::of(p) else { continue };
        let req = pod_request(p);
        let sel = Selector::from_map(&string_map(&p["spec"]["nodeSelector"]));
        let ports = host_ports(p);
        let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut best: Option<(usize, (i64, i64, String))> = None;
        for (i, s) in states.iter().enumerate() {
            let why = if !node_ready(s.node) {
                Some("node(s) were not ready")
            } else if s.node["spec"]["unschedulable"] == true {
                Some("node(s) were unschedulable")
            } else if !sel.matches(&string_map(&s.node["metadata"]["labels"])) {
                Some("node(s) didn't match Pod's node affinity/selector")
            } else if !tolerates_taints(&p["spec"]["tolerations"], s.node) {
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
                None
            };
            if let Some(w) = why {
                *reasons.entry(w).or_default() += 1;
                continue;
            }
            // Lower is better: most loaded resource share (per mille), same-owner pods, name.
            let share = |used: i64, alloc: i64| if alloc > 0 { used * 1000 / alloc } else { 0 };
            let load = share(s.used.cpu_milli + req.cpu_milli, s.alloc.cpu_milli)
                .max(share(s.used.memory + req.memory, s.alloc.memory))
                .max(share(s.pods + 1, s.max_pods));
            let spread = owner_uid(p)
                .and_then(|o| s.owners.get(&o).copied())
                .unwrap_or(0);
            let score = (spread, load, s.name.clone());
            if best.as_ref().is_none_or(|(_, b)| score < *b) {
                best = Some((i, score));
            }
        }
        match best {
            Some((i, _)) => {
                let s = &mut states[i];
                s.used.cpu_milli += req.cpu_milli;
                s.used.memory += req.memory;
                s.pods += 1;
                s.host_ports.extend(ports);
                if let Some(o) = owner_uid(p) {
                    *s.owners.entry(o).or_default() += 1;
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
