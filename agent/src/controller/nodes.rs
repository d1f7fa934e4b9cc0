//! The node lifecycle, run by the leader: a node gossip no longer hears is marked Ready
//! `Unknown` in the store; once it has been silent for the grace period its
//! controller-owned pods are deleted, so their controllers make replacements that the
//! scheduler puts on Ready nodes. A node that comes back finds its pods gone from the store
//! and stops them: beyond the grace window no more copies run than were asked for.
//! DaemonSet pods stay (their node is their reason to exist), as do bare pods.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};

use super::{Action, EventKind, about, is_terminating, key_of, status_update};
use crate::manifest::lifecycle::{controller_of, name, pod_node};

/// What to do about the nodes in `silent` (name -> how long gossip has not heard it).
/// Returns `(object, actions)` pairs (the object named by [`about`]), each committed as one
/// write.
pub fn plan(
    nodes: &[Node],
    pods: &[Pod],
    silent: &BTreeMap<String, Duration>,
    grace: Duration,
) -> Vec<(ObjectReference, Vec<Action>)> {
    let mut out = Vec::new();
    for node in nodes {
        let node_name = name(&node.metadata);
        let Some(&for_how_long) = silent.get(node_name) else {
            continue;
        };
        let mut status = node.status.clone().unwrap_or_default();
        for c in status
            .conditions
            .iter_mut()
            .flatten()
            .filter(|c| c.type_ == "Ready")
        {
            if c.status != "Unknown" {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("the node stopped answering gossip".into());
            }
        }
        let mut actions: Vec<Action> = status_update(node, node.status.as_ref(), status)
            .into_iter()
            .collect();
        if for_how_long >= grace {
            for p in pods.iter().filter(|p| {
                pod_node(p) == Some(node_name) && !is_terminating(&p.metadata) && evictable(p)
            }) {
                actions.push(Action::Event {
                    about: about(p),
                    kind: EventKind::Warning,
                    reason: "NodeLost".into(),
                    message: format!(
                        "node {node_name} unreachable for {}s (grace {}s): deleting the pod so its controller replaces it",
                        for_how_long.as_secs(),
                        grace.as_secs()
                    ),
                });
                actions.push(Action::Delete(key_of(p)));
            }
        }
        if !actions.is_empty() {
            out.push((about(node), actions));
        }
    }
    out
}

/// A pod some controller other than a DaemonSet owns.
fn evictable(p: &Pod) -> bool {
    controller_of(&p.metadata).is_some_and(|r| r.kind != "DaemonSet")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::lifecycle::decode;
    use serde_json::{Value, json};

    fn node(name: &str, ready: &str) -> Node {
        decode(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}}),
        )
        .unwrap()
    }

    fn pod(name: &str, node: &str, owner: Option<&str>) -> Pod {
        let refs = owner
            .map(|k| json!([{"apiVersion": "apps/v1", "kind": k, "name": "o", "uid": "u", "controller": true}]))
            .unwrap_or(Value::Null);
        decode(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "ownerReferences": refs},
            "spec": {"nodeName": node, "containers": []}}))
        .unwrap()
    }

    fn deleted(plan: &[(ObjectReference, Vec<Action>)]) -> Vec<String> {
        plan.iter()
            .flat_map(|(_, a)| a)
            .filter_map(|a| match a {
                Action::Delete(k) => Some(k.name.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_silent_node_is_marked_unknown_and_after_the_grace_its_owned_pods_go() {
        let nodes = [node("a", "True"), node("b", "True")];
        let pods = [
            pod("rs-1", "a", Some("ReplicaSet")),
            pod("ds-1", "a", Some("DaemonSet")),
            pod("bare", "a", None),
            pod("rs-2", "b", Some("ReplicaSet")),
        ];
        let grace = Duration::from_secs(30);
        let early = plan(
            &nodes,
            &pods,
            &BTreeMap::from([("a".to_string(), Duration::from_secs(5))]),
            grace,
        );
        assert_eq!(early.len(), 1);
        match &early[0].1[..] {
            [Action::Status(n)] => {
                assert_eq!(n["status"]["conditions"][0]["status"], "Unknown")
            }
            other => panic!("{other:?}"),
        }
        assert!(deleted(&early).is_empty());
        let late = plan(
            &nodes,
            &pods,
            &BTreeMap::from([("a".to_string(), Duration::from_secs(31))]),
            grace,
        );
        assert_eq!(deleted(&late), ["rs-1"]);
    }

    #[test]
    fn nothing_to_do_for_heard_nodes_or_an_already_marked_one_with_no_pods() {
        let nodes = [node("a", "Unknown"), node("b", "True")];
        assert!(plan(&nodes, &[], &BTreeMap::new(), Duration::ZERO).is_empty());
        let silent = BTreeMap::from([("a".to_string(), Duration::from_secs(60))]);
        assert!(plan(&nodes, &[], &silent, Duration::from_secs(30)).is_empty());
    }
}
