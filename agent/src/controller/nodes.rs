//! The node lifecycle, run by the leader: a node gossip no longer hears is marked Ready
//! `Unknown` in the store; once it has been silent for the grace period its
//! controller-owned pods are deleted, so their controllers make replacements that the
//! scheduler puts on Ready nodes. A node that comes back finds its pods gone from the store
//! and stops them: beyond the grace window no more copies run than were asked for.
//! DaemonSet pods stay (their node is their reason to exist), as do bare pods.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint};
use k8s_openapi::jiff::Timestamp;

use super::{Action, EventKind, about, is_terminating, key_of, status_update};
use crate::manifest::lifecycle::{controller_of, items, name, pod_node, tolerates};

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

/// Pods on nodes with `NoExecute` taints, as Kubernetes' taint manager evicts them: at once
/// when a taint is not tolerated, `tolerationSeconds` after the leader first saw it when every
/// taint is (the shortest such toleration counts), never when they are tolerated without a
/// limit. `since` remembers, per pod uid, when this leader first saw it tolerating for a while
/// (in memory, as the taint manager's timers; a new leader starts counting afresh).
pub fn taint_evictions(
    nodes: &[Node],
    pods: &[Pod],
    since: &mut BTreeMap<String, Timestamp>,
    now: Timestamp,
) -> Vec<(ObjectReference, Vec<Action>)> {
    let mut out = Vec::new();
    let mut waiting = BTreeMap::new();
    for node in nodes {
        let taints: Vec<&Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .into_iter()
            .flatten()
            .filter(|t| t.effect == "NoExecute")
            .collect();
        if taints.is_empty() {
            continue;
        }
        for p in pods
            .iter()
            .filter(|p| pod_node(p) == Some(name(&node.metadata)) && !is_terminating(&p.metadata))
        {
            let tolerations = p
                .spec
                .as_ref()
                .map(|s| items(&s.tolerations))
                .unwrap_or_default();
            // As Kubernetes' taint manager: for each taint the first toleration that matches
            // it; a taint without one evicts at once; else the shortest tolerationSeconds among
            // them (none: forever).
            let mut untolerated = false;
            let mut used = Vec::new();
            for t in &taints {
                match tolerations.iter().find(|tol| tolerates(tol, t)) {
                    Some(tol) => used.push(tol),
                    None => untolerated = true,
                }
            }
            // A DaemonSet's pod on a node whose taint it does not tolerate is its controller's
            // to remove (the node no longer runs it), not deleted twice.
            let daemon = controller_of(&p.metadata).is_some_and(|r| r.kind == "DaemonSet");
            if untolerated && daemon {
                continue;
            }
            let stay = used.iter().filter_map(|t| t.toleration_seconds).min();
            let forever = stay.is_none();
            let stay = stay.map(|s| s.max(0));
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let evict = if untolerated {
                true
            } else if forever {
                false
            } else {
                let from = *since.get(&uid).unwrap_or(&now);
                waiting.insert(uid.clone(), from);
                from.as_second() + stay.unwrap_or(0) <= now.as_second()
            };
            if evict {
                let ns = p.metadata.namespace.as_deref().unwrap_or("default");
                out.push((
                    about(p),
                    vec![
                        Action::Event {
                            about: about(p),
                            kind: EventKind::Normal,
                            reason: "TaintManagerEviction".into(),
                            message: format!("Marking for deletion Pod {ns}/{}", name(&p.metadata)),
                        },
                        Action::Delete(key_of(p)),
                    ],
                ));
            }
        }
    }
    *since = waiting;
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
    fn no_execute_taints_evict_what_does_not_tolerate_them_and_the_rest_in_their_time() {
        let mut tainted = node("a", "True");
        tainted.spec = serde_json::from_value(json!({"taints": [
            {"key": "maintenance", "value": "yes", "effect": "NoExecute"},
            {"key": "gpu", "effect": "NoSchedule"}]}))
        .unwrap();
        let tolerating = |name: &str, secs: Option<i64>| {
            let mut p = pod(name, "a", None);
            p.metadata.uid = Some(format!("uid-{name}"));
            p.spec.as_mut().unwrap().tolerations = Some(
                serde_json::from_value(json!([{"key": "maintenance", "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": secs}]))
                .unwrap(),
            );
            p
        };
        let mut plain = pod("plain", "a", Some("ReplicaSet"));
        plain.metadata.uid = Some("uid-plain".into());
        let pods = [
            plain,
            tolerating("brief", Some(30)),
            tolerating("always", None),
            pod("elsewhere", "b", None),
        ];
        let nodes = [tainted, node("b", "True")];
        let t0: Timestamp = "2026-12-04T10:00:00Z".parse().unwrap();
        let mut since = BTreeMap::new();
        let now = taint_evictions(&nodes, &pods, &mut since, t0);
        assert_eq!(deleted(&now), ["plain"], "not tolerated: at once");
        let later = taint_evictions(&nodes, &pods[1..], &mut since, t0 + Duration::from_secs(29));
        assert!(deleted(&later).is_empty(), "within its 30 s");
        let late = taint_evictions(&nodes, &pods[1..], &mut since, t0 + Duration::from_secs(30));
        assert_eq!(deleted(&late), ["brief"], "after its tolerationSeconds");
        // The first toleration that matches a taint is the one that counts, as Kubernetes'.
        let mut both = tolerating("both", Some(30));
        both.spec
            .as_mut()
            .unwrap()
            .tolerations
            .as_mut()
            .unwrap()
            .push(serde_json::from_value(json!({"operator": "Exists"})).unwrap());
        let mut fresh = BTreeMap::new();
        assert!(taint_evictions(&nodes, std::slice::from_ref(&both), &mut fresh, t0).is_empty());
        let gone = taint_evictions(&nodes, &[both], &mut fresh, t0 + Duration::from_secs(30));
        assert_eq!(deleted(&gone), ["both"]);
        // The taint removed: nothing goes, and the timers are forgotten.
        let calm = [node("a", "True"), node("b", "True")];
        assert!(taint_evictions(&calm, &pods, &mut since, t0).is_empty());
        assert!(since.is_empty());
    }

    #[test]
    fn nothing_to_do_for_heard_nodes_or_an_already_marked_one_with_no_pods() {
        let nodes = [node("a", "Unknown"), node("b", "True")];
        assert!(plan(&nodes, &[], &BTreeMap::new(), Duration::ZERO).is_empty());
        let silent = BTreeMap::from([("a".to_string(), Duration::from_secs(60))]);
        assert!(plan(&nodes, &[], &silent, Duration::from_secs(30)).is_empty());
    }
}
