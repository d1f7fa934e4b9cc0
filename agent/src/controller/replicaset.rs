//! ReplicaSet: keep `spec.replicas` pods from the template running. A ReplicationController
//! (the older core kind, with a map for a selector) is planned as the ReplicaSet it converts
//! to, as kube-controller-manager does, its pods owned by the ReplicationController.

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    Pod, ReplicationController, ReplicationControllerCondition, ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

use super::{
    Action, Made, is_terminating, key_of, pod_finished, pod_from_template, pod_ready, status_update,
};
use crate::manifest::lifecycle::{pod_available, pod_node, pod_phase};
use crate::store::Key;

/// Most pods one pass creates for one ReplicaSet (Kubernetes' slow-start burst is similar).
const BURST: usize = 500;

/// Plans one ReplicaSet at `now` against the pods it owns (from an [`super::OwnerIndex`]).
pub fn plan(rs: &ReplicaSet, mine: &[&Pod], now: &Time) -> Vec<Action> {
    if is_terminating(&rs.metadata) {
        return vec![];
    }
    let mut actions = Vec::new();
    // Pods that ended (evicted, node lost) do not count and are cleaned up.
    for p in mine
        .iter()
        .filter(|p| pod_finished(p) && !is_terminating(&p.metadata))
    {
        actions.push(Action::Delete(key_of(*p)));
    }
    let mut active: Vec<&Pod> = mine
        .iter()
        .copied()
        .filter(|p| !pod_finished(p) && !is_terminating(&p.metadata))
        .collect();
    let spec = rs.spec.as_ref();
    let want = spec.and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
    let name = rs.metadata.name.as_deref().unwrap_or("");
    if active.len() < want {
        let template = spec.and_then(|s| s.template.as_ref());
        for _ in 0..(want - active.len()).min(BURST) {
            actions.push(Action::Create(Made::from(pod_from_template(
                rs,
                template,
                name,
                &[],
            ))));
        }
    } else if active.len() > want {
        active.sort_by_key(|p| deletion_rank(p));
        for p in active.iter().take(active.len() - want) {
            actions.push(Action::Delete(key_of(*p)));
        }
    }
    // Status counts the pods that remain after this plan's deletions, so that a Deployment
    // reading it never sees availability that is already being taken away.
    let deleted: Vec<&Key> = actions
        .iter()
        .filter_map(|a| {
            if let Action::Delete(k) = a {
                Some(k)
            } else {
                None
            }
        })
        .collect();
    let remaining: Vec<&&Pod> = active
        .iter()
        .filter(|p| !deleted.contains(&&key_of(**p)))
        .collect();
    let count = remaining.len() as i32;
    let ready = remaining.iter().filter(|p| pod_ready(p)).count() as i32;
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let avail = remaining
        .iter()
        .filter(|p| pod_available(p, min_ready, now))
        .count() as i32;
    let status = ReplicaSetStatus {
        replicas: count,
        fully_labeled_replicas: Some(count),
        ready_replicas: Some(ready),
        available_replicas: Some(avail),
        observed_generation: rs.metadata.generation,
        ..Default::default()
    };
    actions.extend(status_update(rs, rs.status.as_ref(), status));
    actions
}

/// Which pods go first when scaling down: unscheduled, then pending, then not ready, then the
/// newest (as Kubernetes' ActivePods ordering).
fn deletion_rank(
    p: &Pod,
) -> (
    u8,
    u8,
    u8,
    std::cmp::Reverse<Option<k8s_openapi::jiff::Timestamp>>,
    String,
) {
    (
        u8::from(pod_node(p).is_some()),
        u8::from(!matches!(pod_phase(p), "Pending" | "")),
        u8::from(pod_ready(p)),
        std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

/// The ReplicaSet a ReplicationController is (same metadata, its selector as matchLabels).
fn as_replica_set(rc: &ReplicationController) -> ReplicaSet {
    let spec = rc.spec.clone().unwrap_or_default();
    let status = rc.status.clone().map(|s| ReplicaSetStatus {
        replicas: s.replicas,
        fully_labeled_replicas: s.fully_labeled_replicas,
        ready_replicas: s.ready_replicas,
        available_replicas: s.available_replicas,
        observed_generation: s.observed_generation,
        conditions: None,
    });
    ReplicaSet {
        metadata: rc.metadata.clone(),
        spec: Some(ReplicaSetSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            selector: LabelSelector {
                match_labels: spec.selector,
                ..Default::default()
            },
            template: spec.template,
        }),
        // Conditions are the ReplicationController's own; they do not take part.
        status,
    }
}

/// Plans one ReplicationController against the pods it owns: the ReplicaSet plan, with the
/// pods it makes owned by the ReplicationController and the status written to it.
pub fn plan_rc(rc: &ReplicationController, mine: &[&Pod], now: &Time) -> Vec<Action> {
    let conditions: Option<Vec<ReplicationControllerCondition>> =
        rc.status.as_ref().and_then(|s| s.conditions.clone());
    plan(&as_replica_set(rc), mine, now)
        .into_iter()
        .map(|a| match a {
            Action::Create(Made::Pod(mut p)) => {
                for r in p.metadata.owner_references.iter_mut().flatten() {
                    r.api_version = ReplicationController::API_VERSION.into();
                    r.kind = ReplicationController::KIND.into();
                }
                Action::Create(Made::Pod(p))
            }
            Action::Status(mut v) => {
                v["apiVersion"] = ReplicationController::API_VERSION.into();
                v["kind"] = ReplicationController::KIND.into();
                if let Ok(mut st) =
                    serde_json::from_value::<ReplicationControllerStatus>(v["status"].take())
                {
                    st.conditions = conditions.clone();
                    v["status"] = serde_json::to_value(st).unwrap_or_default();
                }
                Action::Status(v)
            }
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::OwnerIndex;
    use crate::manifest::lifecycle::decode;
    use serde_json::json;

    pub fn rs(replicas: i64) -> ReplicaSet {
        decode(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-abc", "namespace": "d", "uid": "rs1", "generation": 1},
               "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}})).unwrap()
    }

    fn pod(name: &str, ready: bool, node: Option<&str>) -> Pod {
        let cond = if ready { "True" } else { "False" };
        decode(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "d", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "rs1", "controller": true}], "creationTimestamp": format!("2026-01-01T00:00:0{}Z", &name[name.len()-1..])},
               "spec": {"nodeName": node, "containers": []}, "status": {"phase": if node.is_some() { "Running" } else { "Pending" }, "conditions": [{"type": "Ready", "status": cond}]}})).unwrap()
    }

    fn now() -> Time {
        Time("2026-01-01T00:10:00Z".parse().unwrap())
    }

    /// The planner as the runner calls it: with the pods the set owns.
    fn plan_with(rs: &ReplicaSet, pods: &[Pod]) -> Vec<Action> {
        plan(rs, OwnerIndex::new(pods).of(&rs.metadata), &now())
    }

    fn creates(a: &[Action]) -> usize {
        a.iter().filter(|a| matches!(a, Action::Create(_))).count()
    }

    #[test]
    fn a_replication_controller_is_planned_as_its_replica_set() {
        let rc: ReplicationController = decode(json!({"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "web-abc", "namespace": "d", "uid": "rs1", "generation": 1},
            "spec": {"replicas": 2, "selector": {"app": "web"},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}))
        .unwrap();
        let running = [pod("web-abc-1", true, Some("n"))];
        let a = plan_rc(&rc, OwnerIndex::new(&running).of(&rc.metadata), &now());
        assert_eq!(creates(&a), 1);
        let Some(Action::Create(p)) = a.first() else {
            panic!("{a:?}")
        };
        let owner = &p.encode()["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "ReplicationController");
        assert_eq!(owner["apiVersion"], "v1");
        let Some(Action::Status(s)) = a.last() else {
            panic!("{a:?}")
        };
        assert_eq!(s["kind"], "ReplicationController");
        assert_eq!(s["status"]["replicas"], 1);
        assert_eq!(s["status"]["readyReplicas"], 1);
        // Converged: nothing to do, no status written again.
        let mut done = rc.clone();
        done.status = serde_json::from_value(s["status"].clone()).unwrap();
        done.spec.as_mut().unwrap().replicas = Some(1);
        assert!(plan_rc(&done, OwnerIndex::new(&running).of(&done.metadata), &now()).is_empty());
    }

    #[test]
    fn pods_count_as_available_once_ready_for_min_ready_seconds() {
        let mut set = rs(2);
        set.spec.as_mut().unwrap().min_ready_seconds = Some(30);
        let ready_since = |name: &str, at: &str| {
            let mut p = pod(name, true, Some("n"));
            p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
                Some(Time(at.parse().unwrap()));
            p
        };
        let pods = [
            ready_since("web-abc-1", "2026-01-01T00:09:00Z"),
            ready_since("web-abc-2", "2026-01-01T00:09:45Z"),
        ];
        let a = plan_with(&set, &pods);
        let Some(Action::Status(s)) = a.last() else {
            panic!("{a:?}")
        };
        assert_eq!(s["status"]["readyReplicas"], 2);
        assert_eq!(
            s["status"]["availableReplicas"], 1,
            "one ready for 15 s only"
        );
    }

    #[test]
    fn creates_missing_pods_from_the_template() {
        let a = plan_with(&rs(3), &[pod("web-abc-1", true, Some("n"))]);
        assert_eq!(creates(&a), 2);
        let Some(Action::Create(p)) = a.first() else {
            panic!("{a:?}")
        };
        let p = p.encode();
        assert_eq!(p["metadata"]["generateName"], "web-abc-");
        assert_eq!(p["metadata"]["labels"]["app"], "web");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "rs1");
    }

    #[test]
    fn scales_down_unscheduled_and_unready_first() {
        let pods = vec![
            pod("web-abc-1", true, Some("n")),
            pod("web-abc-2", false, Some("n")),
            pod("web-abc-3", false, None),
        ];
        let a = plan_with(&rs(1), &pods);
        let deleted: Vec<&str> = a
            .iter()
            .filter_map(|a| {
                if let Action::Delete(k) = a {
                    Some(k.name.as_str())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(deleted, vec!["web-abc-3", "web-abc-2"]);
    }

    #[test]
    fn steady_state_plans_nothing() {
        let mut r = rs(1);
        let pods = vec![pod("web-abc-1", true, Some("n"))];
        let a = plan_with(&r, &pods);
        let Some(Action::Status(s)) = a.last() else {
            panic!()
        };
        r.status = serde_json::from_value(s["status"].clone()).unwrap();
        assert_eq!(
            plan_with(&r, &pods),
            vec![],
            "idempotent once the status is written"
        );
    }
}
