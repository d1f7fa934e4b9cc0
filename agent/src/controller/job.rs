//! Job: run pods until `completions` succeed, `parallelism` at a time, giving up after
//! `backoffLimit` failures or `activeDeadlineSeconds` of running; a finished Job with
//! `ttlSecondsAfterFinished` is deleted (in the foreground, its pods first) that long after.

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::{
    Action, Made, about, is_terminating, key_of, pod_finished, pod_from_template, pod_ready,
    status_update,
};
use crate::manifest::lifecycle::pod_phase;

fn has_condition(job: &Job, t: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
}

/// When a finished Job finished: its finished condition's transition, else its completion.
fn finished_at(job: &Job) -> Option<Timestamp> {
    let st = job.status.as_ref()?;
    st.conditions
        .iter()
        .flatten()
        .find(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .or(st.completion_time.as_ref())
        .map(|t| t.0)
}

/// Whether `secs` seconds have passed from `from` at `now`.
fn passed(from: Option<Timestamp>, secs: i64, now: &Time) -> bool {
    from.is_some_and(|f| f.as_second().saturating_add(secs) <= now.0.as_second())
}

/// Plans one Job at time `now` against the pods it owns (from an [`super::OwnerIndex`]).
pub fn plan(job: &Job, mine: &[&Pod], now: &Time) -> Vec<Action> {
    if is_terminating(&job.metadata) {
        return vec![];
    }
    let count = |phase: &str| mine.iter().filter(|p| pod_phase(p) == phase).count() as i32;
    let (succeeded, failed) = (count("Succeeded"), count("Failed"));
    let active: Vec<&Pod> = mine
        .iter()
        .copied()
        .filter(|p| !pod_finished(p) && !is_terminating(&p.metadata))
        .collect();
    let spec = job.spec.as_ref();
    let completions = spec.and_then(|s| s.completions).unwrap_or(0).max(0);
    let parallelism = spec.and_then(|s| s.parallelism).unwrap_or(0).max(0);
    let backoff = spec.and_then(|s| s.backoff_limit).unwrap_or(0);
    let mut actions = Vec::new();
    let old = job.status.clone().unwrap_or_default();
    let mut status = JobStatus {
        start_time: Some(old.start_time.clone().unwrap_or_else(|| now.clone())),
        active: Some(active.len() as i32),
        ready: Some(active.iter().filter(|p| pod_ready(p)).count() as i32),
        succeeded: Some(succeeded),
        failed: Some(failed),
        ..Default::default()
    };
    let condition = |type_: &str, reason: Option<&str>, message: Option<&str>| JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: reason.map(Into::into),
        message: message.map(Into::into),
        last_transition_time: Some(now.clone()),
        ..Default::default()
    };
    let finished = has_condition(job, "Complete") || has_condition(job, "Failed");
    if finished {
        status.conditions = old.conditions.clone();
        status.completion_time = old.completion_time.clone();
        if has_condition(job, "Failed") {
            actions.extend(active.iter().map(|p| Action::Delete(key_of(*p))));
        }
        if let Some(ttl) = spec.and_then(|s| s.ttl_seconds_after_finished)
            && passed(finished_at(job), i64::from(ttl), now)
        {
            return vec![Action::DeleteInForeground(key_of(job))];
        }
    } else if succeeded >= completions {
        status.completion_time = Some(now.clone());
        status.conditions = Some(vec![condition("Complete", None, None)]);
        actions.push(Action::Event {
            about: about(job),
            kind: super::EventKind::Normal,
            reason: "Completed".into(),
            message: "Job completed".into(),
        });
    } else if failed > backoff {
        let message = "Job has reached the specified backoff limit";
        status.conditions = Some(vec![condition(
            "Failed",
            Some("BackoffLimitExceeded"),
            Some(message),
        )]);
        actions.push(Action::Event {
            about: about(job),
            kind: super::EventKind::Warning,
            reason: "BackoffLimitExceeded".into(),
            message: message.into(),
        });
        actions.extend(active.iter().map(|p| Action::Delete(key_of(*p))));
    } else if let Some(deadline) = spec.and_then(|s| s.active_deadline_seconds)
        && passed(status.start_time.as_ref().map(|t| t.0), deadline, now)
    {
        let message = "Job was active longer than specified deadline";
        status.conditions = Some(vec![condition(
            "Failed",
            Some("DeadlineExceeded"),
            Some(message),
        )]);
        actions.push(Action::Event {
            about: about(job),
            kind: super::EventKind::Warning,
            reason: "DeadlineExceeded".into(),
            message: message.into(),
        });
        actions.extend(active.iter().map(|p| Action::Delete(key_of(*p))));
    } else {
        let want = parallelism.min(completions - succeeded).max(0) as usize;
        let name = job.metadata.name.as_deref().unwrap_or("");
        let template = spec.map(|s| &s.template);
        for _ in active.len()..want {
            actions.push(Action::Create(Made::from(pod_from_template(
                job,
                template,
                name,
                &[],
            ))));
        }
    }
    actions.extend(status_update(job, job.status.as_ref(), status));
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::OwnerIndex;
    use crate::manifest::lifecycle::decode;
    use serde_json::{Value, json};

    fn job(completions: i64, parallelism: i64, backoff: i64) -> Job {
        decode(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "d", "uid": "j1"},
               "spec": {"completions": completions, "parallelism": parallelism, "backoffLimit": backoff,
                        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}})).unwrap()
    }

    fn pod(n: u32, phase: &str) -> Pod {
        decode(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("pi-{n}"), "namespace": "d", "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": "j1", "controller": true}]}, "status": {"phase": phase}})).unwrap()
    }

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn plan_with(job: &Job, pods: &[Pod], now: &str) -> Vec<Action> {
        plan(job, OwnerIndex::new(pods).of(&job.metadata), &t(now))
    }

    const T1: &str = "2026-12-01T10:00:00Z";
    const T2: &str = "2026-12-01T10:00:05Z";

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
        assert_eq!(creates(&plan_with(&job(5, 2, 6), &[], T1)), 2);
        let pods = vec![
            pod(1, "Succeeded"),
            pod(2, "Succeeded"),
            pod(3, "Succeeded"),
            pod(4, "Running"),
        ];
        assert_eq!(
            creates(&plan_with(&job(5, 2, 6), &pods, T1)),
            1,
            "one more to reach 5 with one running"
        );
    }

    #[test]
    fn completes_once_enough_succeed() {
        let a = plan_with(
            &job(2, 1, 6),
            &[pod(1, "Succeeded"), pod(2, "Succeeded")],
            T1,
        );
        let s = status(&a);
        assert_eq!(s["conditions"][0]["type"], "Complete");
        assert_eq!(s["completionTime"], T1);
        assert_eq!(creates(&a), 0);
        let mut done = job(2, 1, 6);
        done.status = serde_json::from_value(s).unwrap();
        assert!(
            plan_with(&done, &[pod(1, "Succeeded"), pod(2, "Succeeded")], T2).is_empty(),
            "stable after completion"
        );
    }

    #[test]
    fn fails_past_its_active_deadline() {
        let mut j = job(3, 1, 6);
        j.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
        j.status = Some(JobStatus {
            start_time: Some(t(T1)),
            ..Default::default()
        });
        let running = [pod(1, "Running")];
        let a = plan_with(&j, &running, "2026-12-01T10:00:29Z");
        assert!(status(&a)["conditions"].is_null(), "still in time");
        let a = plan_with(&j, &running, "2026-12-01T10:00:30Z");
        let s = status(&a);
        assert_eq!(s["conditions"][0]["type"], "Failed");
        assert_eq!(s["conditions"][0]["reason"], "DeadlineExceeded");
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Delete(k) if k.name == "pi-1")),
            "its pods are stopped"
        );
        assert_eq!(creates(&a), 0);
    }

    #[test]
    fn a_finished_job_goes_its_ttl_after() {
        let mut j = job(1, 1, 6);
        j.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(10);
        let done = [pod(1, "Succeeded")];
        let s = status(&plan_with(&j, &done, T1));
        j.status = serde_json::from_value(s).unwrap();
        assert!(plan_with(&j, &done, "2026-12-01T10:00:09Z").is_empty());
        assert_eq!(
            plan_with(&j, &done, "2026-12-01T10:00:10Z"),
            [Action::DeleteInForeground(key_of(&j))]
        );
    }

    #[test]
    fn fails_after_backoff_limit() {
        let pods = vec![pod(1, "Failed"), pod(2, "Failed"), pod(3, "Running")];
        let a = plan_with(&job(1, 1, 1), &pods, T1);
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
