//! ReplicaSet: keep `spec.replicas` pods from the template running.

use serde_json::{Value, json};

use super::{
    Action, is_terminating, owned_by, pod_finished, pod_from_template, pod_ready, status_update,
};
use crate::store::Key;

/// Most pods one pass creates for one ReplicaSet (Kubernetes' slow-start burst is similar).
const BURST: usize = 500;

/// Plans one ReplicaSet against the pods of its namespace.
pub fn plan(rs: &Value, pods: &[Value]) -> Vec<Action> {
    if is_terminating(rs) {
        return vec![];
    }
    let mut actions = Vec::new();
    let mine: Vec<&Value> = pods.iter().filter(|p| owned_by(p, rs)).collect();
    // Pods that ended (evicted, node lost) do not count and are cleaned up.
    for p in mine
        .iter()
        .filter(|p| pod_finished(p) && !is_terminating(p))
    {
        if let Ok(k) = Key::of(p) {
            actions.push(Action::Delete(k));
        }
    }
    let mut active: Vec<&Value> = mine
        .iter()
        .copied()
        .filter(|p| !pod_finished(p) && !is_terminating(p))
        .collect();
    let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    let name = rs["metadata"]["name"].as_str().unwrap_or("");
    if active.len() < want {
        for _ in 0..(want - active.len()).min(BURST) {
            actions.push(Action::Create(pod_from_template(
                rs,
                &rs["spec"]["template"],
                name,
                &[],
            )));
        }
    } else if active.len() > want {
        active.sort_by_key(|p| deletion_rank(p));
        for p in active.iter().take(active.len() - want) {
            if let Ok(k) = Key::of(p) {
                actions.push(Action::Delete(k));
            }
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
    let remaining: Vec<&&Value> = active
        .iter()
        .filter(|p| Key::of(p).map_or(true, |k| !deleted.contains(&&k)))
        .collect();
    let count = remaining.len() as i64;
    let ready = remaining.iter().filter(|p| pod_ready(p)).count() as i64;
    let status = json!({
        "replicas": count,
        "fullyLabeledReplicas": count,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": rs["metadata"]["generation"],
    });
    actions.extend(status_update(rs, status));
    actions
}

/// Which pods go first when scaling down: unscheduled, then pending, then not ready, then the
/// newest (as Kubernetes' ActivePods ordering).
fn deletion_rank(p: &Value) -> (u8, u8, u8, std::cmp::Reverse<String>, String) {
    (
        u8::from(p["spec"]["nodeName"].as_str().is_some()),
        u8::from(p["status"]["phase"] != "Pending" && !p["status"]["phase"].is_null()),
        u8::from(pod_ready(p)),
        std::cmp::Reverse(
            p["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        ),
        p["metadata"]["name"].as_str().unwrap_or("").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn rs(replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-abc", "namespace": "d", "uid": "rs1", "generation": 1},
               "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    }

    fn pod(name: &str, ready: bool, node: Option<&str>) -> Value {
        let cond = if ready { "True" } else { "False" };
        json!({"kind": "Pod", "metadata": {"name": name, "namespace": "d", "ownerReferences": [{"uid": "rs1", "controller": true}], "creationTimestamp": format!("2026-01-01T00:00:0{}Z", &name[name.len()-1..])},
               "spec": {"nodeName": node}, "status": {"phase": if node.is_some() { "Running" } else { "Pending" }, "conditions": [{"type": "Ready", "status": cond}]}})
    }

    fn creates(a: &[Action]) -> usize {
        a.iter().filter(|a| matches!(a, Action::Create(_))).count()
    }

    #[test]
    fn creates_missing_pods_from_the_template() {
        let a = plan(&rs(3), &[pod("web-abc-1", true, Some("n"))]);
        assert_eq!(creates(&a), 2);
        let Some(Action::Create(p)) = a.first() else {
            panic!("{a:?}")
        };
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
        let a = plan(&rs(1), &pods);
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
        let a = plan(&r, &pods);
        let Some(Action::Status(s)) = a.last() else {
            panic!()
        };
        r["status"] = s["status"].clone();
        assert_eq!(
            plan(&r, &pods),
            vec![],
            "idempotent once the status is written"
        );
    }
}
