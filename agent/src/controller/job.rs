//! Job: run pods until `completions` succeed, `parallelism` at a time, giving up after
//! `backoffLimit` failures.

use serde_json::{Value, json};

use super::{
    Action, is_terminating, owned_by, pod_finished, pod_from_template, pod_ready, status_update,
};
use crate::store::Key;

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn has_condition(job: &Value, t: &str) -> bool {
    job["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == "True"))
}

/// Plans one Job at time `now` (RFC 3339) against the pods of its namespace.
pub fn plan(job: &Value, pods: &[Value], now: &str) -> Vec<Action> {
    if is_terminating(job) {
        return vec![];
    }
    let mine: Vec<&Value> = pods.iter().filter(|p| owned_by(p, job)).collect();
    let succeeded = mine
        .iter()
        .filter(|p| p["status"]["phase"] == "Succeeded")
        .count() as i64;
    let failed = mine
        .iter()
        .filter(|p| p["status"]["phase"] == "Failed")
        .count() as i64;
    let active: Vec<&Value> = mine
        .iter()
        .copied()
        .filter(|p| !pod_finished(p) && !is_terminating(p))
        .collect();
    let completions = i(&job["spec"]["completions"]).max(0);
    let parallelism = i(&job["spec"]["parallelism"]).max(0);
    let backoff = i(&job["spec"]["backoffLimit"]);
    let mut actions = Vec::new();
    let old = &job["status"];
    let mut status = json!({
        "startTime": old["startTime"].as_str().unwrap_or(now),
        "active": active.len(),
        "ready": active.iter().filter(|p| pod_ready(p)).count(),
        "succeeded": succeeded,
        "failed": failed,
    });
    let finished = has_condition(job, "Complete") || has_condition(job, "Failed");
    if finished {
        status["conditions"] = old["conditions"].clone();
        status["completionTime"] = old["completionTime"].clone();
        if has_condition(job, "Failed") {
            for p in &active {
                if let Ok(k) = Key::of(p) {
                    actions.push(Action::Delete(k));
                }
            }
        }
    } else if succeeded >= completions {
        status["completionTime"] = Value::from(now);
        status["conditions"] =
            json!([{"type": "Complete", "status": "True", "lastTransitionTime": now}]);
        actions.push(Action::Event {
            about: job.clone(),
            kind: super::EventKind::Normal,
            reason: "Completed".into(),
            message: "Job completed".into(),
        });
    } else if failed > backoff {
        status["conditions"] = json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit", "lastTransitionTime": now}]);
        actions.push(Action::Event {
            about: job.clone(),
            kind: super::EventKind::Warning,
            reason: "BackoffLimitExceeded".into(),
            message: "Job has reached the specified backoff limit".into(),
        });
        for p in &active {
            if let Ok(k) = Key::of(p) {
                actions.push(Action::Delete(k));
            }
        }
    } else {
        let want = parallelism.min(completions - succeeded) as usize;
        let name = job["metadata"]["name"].as_str().unwrap_or("");
        for _ in active.len()..want {
            actions.push(Action::Create(pod_from_template(
                job,
                &job["spec"]["template"],
                name,
                &[],
            )));
        }
    }
    let status = crate::manifest::strip_empty(status);
    actions.extend(status_update(job, status));
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(completions: i64, parallelism: i64, backoff: i64) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "d", "uid": "j1"},
               "spec": {"completions": completions, "parallelism": parallelism, "backoffLimit": backoff,
                        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}})
    }

    fn pod(n: u32, phase: &str) -> Value {
        json!({"kind": "Pod", "metadata": {"name": format!("pi-{n}"), "namespace": "d", "ownerReferences": [{"uid": "j1", "controller": true}]}, "status": {"phase": phase}})
    }

    fn creates(a: &[Action]) -> usize {
        a.iter().filter(|a| matches!(a, Action::Create(_))).count()
    }

    fn status(a: &[Action]) -> Value {
        a.iter()
            .find_map(|a| {
                if let Action::Status(j) = a {
                    Some(j["status"].clone())
                } else {
                    None
                }
            })
            .unwrap()
    }

    #[test]
    fn runs_parallelism_pods_up_to_completions() {
        assert_eq!(creates(&plan(&job(5, 2, 6), &[], "t")), 2);
        let pods = vec![
            pod(1, "Succeeded"),
            pod(2, "Succeeded"),
            pod(3, "Succeeded"),
            pod(4, "Running"),
        ];
        assert_eq!(
            creates(&plan(&job(5, 2, 6), &pods, "t")),
            1,
            "one more to reach 5 with one running"
        );
    }

    #[test]
    fn completes_once_enough_succeed() {
        let a = plan(
            &job(2, 1, 6),
            &[pod(1, "Succeeded"), pod(2, "Succeeded")],
            "t1",
        );
        let s = status(&a);
        assert_eq!(s["conditions"][0]["type"], "Complete");
        assert_eq!(s["completionTime"], "t1");
        assert_eq!(creates(&a), 0);
        let mut done = job(2, 1, 6);
        done["status"] = s;
        assert!(
            plan(&done, &[pod(1, "Succeeded"), pod(2, "Succeeded")], "t2").is_empty(),
            "stable after completion"
        );
    }

    #[test]
    fn fails_after_backoff_limit() {
        let pods = vec![pod(1, "Failed"), pod(2, "Failed"), pod(3, "Running")];
        let a = plan(&job(1, 1, 1), &pods, "t");
        assert_eq!(
            status(&a)["conditions"][0]["reason"],
            "BackoffLimitExceeded"
        );
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Delete(k) if k.name == "pi-3")),
            "active pods are stopped"
        );
        assert_eq!(creates(&a), 0);
    }
}
