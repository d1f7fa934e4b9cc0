//! DaemonSet: one pod on every node that matches the pod template's nodeSelector, including
//! nodes that join later; pods leave nodes that go or stop matching; template changes roll out
//! node by node within maxUnavailable.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{
    Action, POD_TEMPLATE_HASH, is_terminating, owned_by, pod_finished, pod_from_template,
    pod_ready, resolve_int_or_percent, status_update, template_hash,
};
use crate::manifest::lifecycle::tolerates_taints;
use crate::manifest::selector::string_map;
use crate::store::Key;

/// Whether the DaemonSet's pods belong on `node`.
pub fn node_matches(ds: &Value, node: &Value) -> bool {
    crate::scheduler::affinity::required_matches(
        &ds["spec"]["template"]["spec"],
        &string_map(&node["metadata"]["labels"]),
        node["metadata"]["name"].as_str().unwrap_or(""),
    ) && tolerates_taints(&ds["spec"]["template"]["spec"]["tolerations"], node)
}

/// Plans one DaemonSet against the nodes and the pods of its namespace.
pub fn plan(ds: &Value, nodes: &[Value], pods: &[Value]) -> Vec<Action> {
    if is_terminating(ds) {
        return vec![];
    }
    let hash = template_hash(&ds["spec"]["template"]);
    let name = ds["metadata"]["name"].as_str().unwrap_or("");
    let mine: Vec<&Value> = pods
        .iter()
        .filter(|p| owned_by(p, ds) && !is_terminating(p))
        .collect();
    let mut by_node: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for p in &mine {
        by_node
            .entry(p["spec"]["nodeName"].as_str().unwrap_or(""))
            .or_default()
            .push(p);
    }
    let wanted: Vec<&Value> = nodes.iter().filter(|n| node_matches(ds, n)).collect();
    let wanted_names: Vec<&str> = wanted
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .collect();
    let mut actions = Vec::new();
    let delete = |actions: &mut Vec<Action>, p: &Value| {
        if let Ok(k) = Key::of(p) {
            actions.push(Action::Delete(k));
        }
    };
    // Pods on nodes that are gone or no longer match, and finished pods, go.
    for (node, ps) in &by_node {
        for p in ps {
            if !wanted_names.contains(node) || pod_finished(p) {
                delete(&mut actions, p);
            }
        }
    }
    let max_unavailable = resolve_int_or_percent(
        &ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        wanted.len() as i64,
        false,
    )
    .max(1);
    let mut unavailable = 0i64;
    let mut outdated = Vec::new();
    let (mut current, mut ready, mut updated) = (0, 0, 0);
    for node in &wanted_names {
        let live: Vec<&&Value> = by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter(|p| !pod_finished(p))
            .collect();
        match live.as_slice() {
            [] => {
                let mut pod = pod_from_template(
                    ds,
                    &ds["spec"]["template"],
                    name,
                    &[(POD_TEMPLATE_HASH, &hash)],
                );
                pod["spec"]["nodeName"] = Value::from(*node);
                actions.push(Action::Create(pod));
                unavailable += 1;
            }
            [first, extra @ ..] => {
                for p in extra {
                    delete(&mut actions, p);
                }
                current += 1;
                if pod_ready(first) {
                    ready += 1;
                } else {
                    unavailable += 1;
                }
                if first["metadata"]["labels"][POD_TEMPLATE_HASH] == hash.as_str() {
                    updated += 1;
                } else {
                    outdated.push(**first);
                }
            }
        }
    }
    let on_delete = ds["spec"]["updateStrategy"]["type"] == "OnDelete";
    if !on_delete {
        // Replace outdated pods, not-ready ones first, while the unavailable budget lasts.
        outdated.sort_by_key(|p| pod_ready(p));
        for p in outdated {
            if !pod_ready(p) {
                delete(&mut actions, p);
            } else if unavailable < max_unavailable {
                delete(&mut actions, p);
                unavailable += 1;
            }
        }
    }
    let status = json!({
        "desiredNumberScheduled": wanted.len(),
        "currentNumberScheduled": current,
        "numberMisscheduled": by_node.iter().filter(|(n, _)| !wanted_names.contains(n)).map(|(_, ps)| ps.len()).sum::<usize>(),
        "numberReady": ready,
        "numberAvailable": ready,
        "numberUnavailable": (wanted.len() as i64 - ready).max(0),
        "updatedNumberScheduled": updated,
        "observedGeneration": ds["metadata"]["generation"],
    });
    actions.extend(status_update(ds, status));
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(selector: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "d", "uid": "ds1", "generation": 1},
               "spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                        "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"nodeSelector": selector, "containers": [{"name": "c", "image": "x"}]}}}})
    }

    fn node(name: &str, labels: Value) -> Value {
        json!({"kind": "Node", "metadata": {"name": name, "labels": labels}})
    }

    fn created_on(a: &[Action]) -> Vec<String> {
        a.iter()
            .filter_map(|a| {
                if let Action::Create(p) = a {
                    Some(p["spec"]["nodeName"].as_str().unwrap().to_string())
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn one_pod_per_matching_node() {
        let nodes = vec![
            node("a", json!({"disk": "ssd"})),
            node("b", json!({})),
            node("c", json!({"disk": "ssd"})),
        ];
        assert_eq!(
            created_on(&plan(&ds(json!({"disk": "ssd"})), &nodes, &[])),
            vec!["a", "c"]
        );
        assert_eq!(
            created_on(&plan(&ds(json!({})), &nodes, &[])),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn pods_leave_nodes_that_stop_matching() {
        let d = ds(json!({"disk": "ssd"}));
        let hash = template_hash(&d["spec"]["template"]);
        let pod = json!({"kind": "Pod", "metadata": {"name": "agent-x", "namespace": "d", "labels": {POD_TEMPLATE_HASH: hash}, "ownerReferences": [{"uid": "ds1", "controller": true}]}, "spec": {"nodeName": "a"}});
        let a = plan(&d, &[node("a", json!({}))], &[pod]);
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Delete(k) if k.name == "agent-x"))
        );
    }

    #[test]
    fn tainted_nodes_need_a_toleration() {
        let tainted = json!({"kind": "Node", "metadata": {"name": "t", "labels": {}}, "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}});
        let mut d = ds(json!({}));
        assert!(!node_matches(&d, &tainted));
        d["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
        assert!(node_matches(&d, &tainted));
    }
}
