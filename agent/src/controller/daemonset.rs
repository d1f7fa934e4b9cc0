//! DaemonSet: one pod on every node that matches the pod template's nodeSelector, including
//! nodes that join later; pods leave nodes that go or stop matching; template changes roll out
//! node by node within maxUnavailable.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    Action, POD_TEMPLATE_HASH, is_terminating, key_of, pod_finished, pod_from_template, pod_ready,
    resolve_int_or_percent, status_update, template_hash,
};
use crate::manifest::lifecycle::{label, name, pod_node, tolerates_taints};

/// Whether the DaemonSet's pods belong on `node`.
pub fn node_matches(ds: &DaemonSet, node: &Node) -> bool {
    let spec = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let Some(spec) = spec else { return false };
    crate::scheduler::affinity::required_matches(
        spec,
        node.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
        name(&node.metadata),
    ) && tolerates_taints(spec.tolerations.as_deref().unwrap_or_default(), node)
}

/// Plans one DaemonSet against the nodes and the pods it owns (from an
/// [`super::OwnerIndex`]).
pub fn plan(ds: &DaemonSet, nodes: &[Node], owned: &[&Pod], now: &Time) -> Vec<Action> {
    if is_terminating(&ds.metadata) {
        return vec![];
    }
    let spec = ds.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    // Available: Ready for minReadySeconds (what the unavailable budget counts).
    let available = |p: &Pod| crate::manifest::lifecycle::pod_available(p, min_ready, now);
    let hash = template_hash(&spec.template);
    let ds_name = name(&ds.metadata);
    let mine: Vec<&Pod> = owned
        .iter()
        .copied()
        .filter(|p| !is_terminating(&p.metadata))
        .collect();
    let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for p in &mine {
        by_node
            .entry(pod_node(p).unwrap_or(""))
            .or_default()
            .push(p);
    }
    let wanted: Vec<&Node> = nodes.iter().filter(|n| node_matches(ds, n)).collect();
    let wanted_names: Vec<&str> = wanted.iter().map(|n| name(&n.metadata)).collect();
    let mut actions = Vec::new();
    // Pods on nodes that are gone or no longer match, and finished pods, go.
    for (node, ps) in &by_node {
        for p in ps {
            if !wanted_names.contains(node) || pod_finished(p) {
                actions.push(Action::Delete(key_of(*p)));
            }
        }
    }
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref());
    let max_unavailable = resolve_int_or_percent(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        wanted.len() as i64,
        false,
    )
    .max(1);
    let mut unavailable = 0i64;
    let mut outdated = Vec::new();
    let (mut current, mut ready, mut updated, mut avail) = (0, 0, 0, 0);
    for node in &wanted_names {
        let live: Vec<&&Pod> = by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter(|p| !pod_finished(p))
            .collect();
        match live.as_slice() {
            [] => {
                let mut pod = pod_from_template(
                    ds,
                    Some(&spec.template),
                    ds_name,
                    &[(POD_TEMPLATE_HASH, &hash)],
                );
                pod.spec.get_or_insert_with(Default::default).node_name = Some((*node).into());
                actions.push(Action::Create(pod.into()));
                unavailable += 1;
            }
            [first, extra @ ..] => {
                for p in extra {
                    actions.push(Action::Delete(key_of(**p)));
                }
                current += 1;
                if pod_ready(first) {
                    ready += 1;
                }
                if available(first) {
                    avail += 1;
                } else {
                    unavailable += 1;
                }
                if label(&first.metadata, POD_TEMPLATE_HASH) == Some(hash.as_str()) {
                    updated += 1;
                } else {
                    outdated.push(**first);
                }
            }
        }
    }
    let on_delete = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete");
    if !on_delete {
        // Replace outdated pods, not-ready ones first, while the unavailable budget lasts.
        outdated.sort_by_key(|p| available(p));
        for p in outdated {
            if !available(p) {
                actions.push(Action::Delete(key_of(p)));
            } else if unavailable < max_unavailable {
                actions.push(Action::Delete(key_of(p)));
                unavailable += 1;
            }
        }
    }
    let misscheduled: usize = by_node
        .iter()
        .filter(|(n, _)| !wanted_names.contains(n))
        .map(|(_, ps)| ps.len())
        .sum();
    let status = DaemonSetStatus {
        desired_number_scheduled: wanted.len() as i32,
        current_number_scheduled: current,
        number_misscheduled: misscheduled as i32,
        number_ready: ready,
        number_available: Some(avail),
        number_unavailable: Some((wanted.len() as i32 - avail).max(0)),
        updated_number_scheduled: Some(updated),
        observed_generation: ds.metadata.generation,
        ..Default::default()
    };
    actions.extend(status_update(ds, ds.status.as_ref(), status));
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::OwnerIndex;
    use crate::manifest::lifecycle::decode;
    use serde_json::{Value, json};

    fn ds(selector: Value) -> DaemonSet {
        decode(json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "d", "uid": "ds1", "generation": 1},
               "spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                        "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"nodeSelector": selector, "containers": [{"name": "c", "image": "x"}]}}}})).unwrap()
    }

    fn node(name: &str, labels: Value) -> Node {
        decode(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})).unwrap()
    }

    fn plan_with(ds: &DaemonSet, nodes: &[Node], pods: &[Pod]) -> Vec<Action> {
        plan(
            ds,
            nodes,
            OwnerIndex::new(pods).of(&ds.metadata),
            &crate::manifest::events::now(),
        )
    }

    fn created_on(a: &[Action]) -> Vec<String> {
        a.iter()
            .filter_map(|a| {
                if let Action::Create(p) = a {
                    Some(p.encode()["spec"]["nodeName"].as_str().unwrap().to_string())
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn a_pod_is_available_after_min_ready_seconds() {
        let mut d = ds(json!({}));
        d.spec.as_mut().unwrap().min_ready_seconds = Some(3600);
        let hash = template_hash(&d.spec.as_ref().unwrap().template);
        let now = crate::manifest::events::now();
        let pod: Pod = decode(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent-x", "namespace": "d", "labels": {POD_TEMPLATE_HASH: hash}, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "ds1", "controller": true}]},
            "spec": {"nodeName": "a", "containers": []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}})).unwrap();
        let a = plan_with(&d, &[node("a", json!({}))], &[pod]);
        let Some(Action::Status(s)) = a.last() else {
            panic!("{a:?}")
        };
        assert_eq!(s["status"]["numberReady"], 1);
        assert_eq!(
            s["status"]["numberAvailable"], 0,
            "ready for less than an hour"
        );
        assert_eq!(s["status"]["numberUnavailable"], 1);
    }

    #[test]
    fn one_pod_per_matching_node() {
        let nodes = vec![
            node("a", json!({"disk": "ssd"})),
            node("b", json!({})),
            node("c", json!({"disk": "ssd"})),
        ];
        assert_eq!(
            created_on(&plan_with(&ds(json!({"disk": "ssd"})), &nodes, &[])),
            vec!["a", "c"]
        );
        assert_eq!(
            created_on(&plan_with(&ds(json!({})), &nodes, &[])),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn pods_leave_nodes_that_stop_matching() {
        let d = ds(json!({"disk": "ssd"}));
        let hash = template_hash(&d.spec.as_ref().unwrap().template);
        let pod: Pod = decode(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent-x", "namespace": "d", "labels": {POD_TEMPLATE_HASH: hash}, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "ds1", "controller": true}]}, "spec": {"nodeName": "a", "containers": []}})).unwrap();
        let a = plan_with(&d, &[node("a", json!({}))], &[pod]);
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Delete(k) if k.name == "agent-x"))
        );
    }

    #[test]
    fn tainted_nodes_need_a_toleration() {
        let tainted: Node = decode(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "t", "labels": {}}, "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}})).unwrap();
        let mut d = ds(json!({}));
        assert!(!node_matches(&d, &tainted));
        d.spec.as_mut().unwrap().template.spec.as_mut().unwrap().tolerations = Some(serde_json::from_value(json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])).unwrap());
        assert!(node_matches(&d, &tainted));
    }
}
