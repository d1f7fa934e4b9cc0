//! Job: run pods until `completions` succeed, `parallelism` at a time (for an Indexed Job, one
//! pod per index until each has succeeded), giving up after `backoffLimit` counted failures
//! (`podFailurePolicy` may ignore a failure or fail the Job at once) or `activeDeadlineSeconds`
//! of running; `suspend` stops its pods until it is resumed; a finished Job with
//! `ttlSecondsAfterFinished` is deleted (in the foreground, its pods first) that long after.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, PodFailurePolicy};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::{
    Action, Made, about, is_terminating, key_of, pod_finished, pod_from_template, pod_ready,
    status_update,
};
use crate::manifest::lifecycle::{items, pod_phase};

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

/// When the Job's plan next changes with nothing else changing: its active deadline while it
/// runs, its TTL once it has finished (so the runner wakes then, not at its next resync).
pub fn wake_at(job: &Job) -> Option<Timestamp> {
    let spec = job.spec.as_ref()?;
    let at = |from: Option<Timestamp>, secs: i64| {
        from.and_then(|f| Timestamp::from_second(f.as_second().saturating_add(secs)).ok())
    };
    if has_condition(job, "Complete") || has_condition(job, "Failed") {
        at(
            finished_at(job),
            i64::from(spec.ttl_seconds_after_finished?),
        )
    } else {
        let start = job.status.as_ref()?.start_time.as_ref().map(|t| t.0);
        at(start, spec.active_deadline_seconds?)
    }
}

/// Whether `secs` seconds have passed from `from` at `now`.
fn passed(from: Option<Timestamp>, secs: i64, now: &Time) -> bool {
    from.is_some_and(|f| f.as_second().saturating_add(secs) <= now.0.as_second())
}

/// The annotation (and label) that gives an Indexed Job's pod its index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// The index of an Indexed Job's pod.
fn index_of(p: &Pod) -> Option<i32> {
    p.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX)?
        .parse()
        .ok()
}

/// Indexes as Kubernetes writes `completedIndexes`: `0-2,5`.
pub fn intervals(ix: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in ix {
        run = match run {
            Some((a, b)) if i == b + 1 => Some((a, i)),
            Some((a, b)) => {
                out.push(if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                });
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some((a, b)) = run {
        out.push(if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        });
    }
    out.join(",")
}

/// What a failed pod counts for under the Job's `podFailurePolicy` (Count without one).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Count,
    Ignore,
    /// The Job fails, with Kubernetes' message.
    FailJob(String),
}

/// The first rule of the policy that a failed pod matches, as the Job controller reads it.
fn verdict(policy: Option<&PodFailurePolicy>, p: &Pod) -> Verdict {
    let Some(policy) = policy else {
        return Verdict::Count;
    };
    let ns = p.metadata.namespace.as_deref().unwrap_or("");
    let pod = p.metadata.name.as_deref().unwrap_or("");
    let st = p.status.clone().unwrap_or_default();
    for (i, rule) in policy.rules.iter().enumerate() {
        let why = if let Some(codes) = &rule.on_exit_codes {
            items(&st.init_container_statuses)
                .iter()
                .chain(items(&st.container_statuses))
                .filter(|c| codes.container_name.as_ref().is_none_or(|n| *n == c.name))
                .find_map(|c| {
                    let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
                    let listed = codes.values.contains(&code);
                    let hit = code != 0
                        && match codes.operator.as_str() {
                            "In" => listed,
                            _ => !listed,
                        };
                    hit.then(|| {
                        format!(
                            "Container {} for pod {ns}/{pod} failed with exit code {code} matching {} rule at index {i}",
                            c.name, rule.action
                        )
                    })
                })
        } else {
            rule.on_pod_conditions.iter().flatten().find_map(|want| {
                items(&st.conditions)
                    .iter()
                    .any(|c| c.type_ == want.type_ && c.status == want.status)
                    .then(|| {
                        format!(
                            "Pod {ns}/{pod} has condition {} matching {} rule at index {i}",
                            want.type_, rule.action
                        )
                    })
            })
        };
        if let Some(why) = why {
            return match rule.action.as_str() {
                "FailJob" => Verdict::FailJob(why),
                "Ignore" => Verdict::Ignore,
                _ => Verdict::Count,
            };
        }
    }
    Verdict::Count
}

/// Sets a condition in a Job's list, keeping its transition time while its status holds.
fn set_condition(list: &mut Vec<JobCondition>, mut c: JobCondition) {
    match list.iter_mut().find(|x| x.type_ == c.type_) {
        Some(x) => {
            if x.status == c.status {
                c.last_transition_time = x.last_transition_time.clone();
            }
            *x = c;
        }
        None => list.push(c),
    }
}

/// An Indexed Job's pod for index `i`: named `<job>-<i>-…`, with the index as annotation,
/// label, `JOB_COMPLETION_INDEX` and hostname.
fn indexed_pod(job: &Job, template: Option<&PodTemplateSpec>, name: &str, i: i32) -> Pod {
    let index = i.to_string();
    let mut pod = pod_from_template(
        job,
        template,
        &format!("{name}-{i}"),
        &[(COMPLETION_INDEX, &index)],
    );
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(COMPLETION_INDEX.into(), index);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(format!("{name}-{i}"));
    let env = EnvVar {
        name: "JOB_COMPLETION_INDEX".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        let vars = c.env.get_or_insert_with(Vec::new);
        if !vars.iter().any(|v| v.name == env.name) {
            vars.push(env.clone());
        }
    }
    pod
}

/// Plans one Job at time `now` against the pods it owns (from an [`super::OwnerIndex`]).
pub fn plan(job: &Job, mine: &[&Pod], now: &Time) -> Vec<Action> {
    if is_terminating(&job.metadata) {
        return vec![];
    }
    let spec = job.spec.as_ref();
    let completions = spec.and_then(|s| s.completions).unwrap_or(0).max(0);
    let parallelism = spec.and_then(|s| s.parallelism).unwrap_or(0).max(0);
    let backoff = spec.and_then(|s| s.backoff_limit).unwrap_or(0);
    let indexed = spec.and_then(|s| s.completion_mode.as_deref()) == Some("Indexed");
    let suspended = spec.and_then(|s| s.suspend) == Some(true);
    let name = job.metadata.name.as_deref().unwrap_or("");
    let template = spec.map(|s| &s.template);

    let mut failed_pods: Vec<&Pod> = mine
        .iter()
        .copied()
        .filter(|p| pod_phase(p) == "Failed")
        .collect();
    failed_pods.sort_by_key(|p| p.metadata.name.clone());
    let policy = spec.and_then(|s| s.pod_failure_policy.as_ref());
    let mut failed = 0;
    let mut fail_job = None;
    for p in &failed_pods {
        match verdict(policy, p) {
            Verdict::Ignore => {}
            Verdict::Count => failed += 1,
            Verdict::FailJob(why) => {
                failed += 1;
                fail_job.get_or_insert(why);
            }
        }
    }
    let done: Vec<&Pod> = mine
        .iter()
        .copied()
        .filter(|p| pod_phase(p) == "Succeeded")
        .collect();
    let completed: BTreeSet<i32> = done
        .iter()
        .filter_map(|p| index_of(p))
        .filter(|i| (0..completions).contains(i))
        .collect();
    let succeeded = if indexed {
        completed.len() as i32
    } else {
        done.len() as i32
    };
    let active: Vec<&Pod> = mine
        .iter()
        .copied()
        .filter(|p| !pod_finished(p) && !is_terminating(&p.metadata))
        .collect();
    let mut actions = Vec::new();
    let old = job.status.clone().unwrap_or_default();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let finished = has_condition(job, "Complete") || has_condition(job, "Failed");
    let was_suspended = conditions
        .iter()
        .any(|c| c.type_ == "Suspended" && c.status == "True");
    // A running Job starts now; a resumed one starts again (its deadline counts afresh); a
    // suspended or finished one keeps the start it had.
    let start_time = if finished || suspended {
        old.start_time.clone()
    } else if was_suspended {
        Some(now.clone())
    } else {
        Some(old.start_time.clone().unwrap_or_else(|| now.clone()))
    };
    let mut status = JobStatus {
        start_time,
        active: Some(active.len() as i32),
        ready: Some(active.iter().filter(|p| pod_ready(p)).count() as i32),
        succeeded: Some(succeeded),
        failed: Some(failed),
        completed_indexes: (indexed && !completed.is_empty()).then(|| intervals(&completed)),
        ..Default::default()
    };
    let condition =
        |type_: &str, state: bool, reason: Option<&str>, message: Option<&str>| JobCondition {
            type_: type_.into(),
            status: if state { "True" } else { "False" }.into(),
            reason: reason.map(Into::into),
            message: message.map(Into::into),
            last_transition_time: Some(now.clone()),
            last_probe_time: Some(now.clone()),
        };
    let event = |kind, reason: &str, message: &str| Action::Event {
        about: about(job),
        kind,
        reason: reason.into(),
        message: message.into(),
    };
    let fail = |actions: &mut Vec<Action>,
                conditions: &mut Vec<JobCondition>,
                reason: &str,
                message: &str| {
        set_condition(
            conditions,
            condition("Failed", true, Some(reason), Some(message)),
        );
        actions.push(event(super::EventKind::Warning, reason, message));
        actions.extend(active.iter().map(|p| Action::Delete(key_of(*p))));
    };
    if finished {
        status.completion_time = old.completion_time.clone();
        // A finished Job runs nothing more (an Indexed Job's spare pod, a late replacement).
        actions.extend(active.iter().map(|p| Action::Delete(key_of(*p))));
        if let Some(ttl) = spec.and_then(|s| s.ttl_seconds_after_finished)
            && passed(finished_at(job), i64::from(ttl), now)
        {
            return vec![Action::DeleteInForeground(key_of(job))];
        }
    } else if succeeded >= completions {
        actions.extend(active.iter().map(|p| Action::Delete(key_of(*p))));
        status.completion_time = Some(now.clone());
        set_condition(&mut conditions, condition("Complete", true, None, None));
        actions.push(event(
            super::EventKind::Normal,
            "Completed",
            "Job completed",
        ));
    } else if let Some(why) = fail_job {
        fail(&mut actions, &mut conditions, "PodFailurePolicy", &why);
    } else if failed > backoff {
        fail(
            &mut actions,
            &mut conditions,
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        );
    } else if suspended {
        // Its pods go; its deadline counts again from when it resumes.
        actions.extend(active.iter().map(|p| Action::Delete(key_of(*p))));
        status.active = Some(0);
        status.ready = Some(0);
        if !was_suspended {
            set_condition(
                &mut conditions,
                condition(
                    "Suspended",
                    true,
                    Some("JobSuspended"),
                    Some("Job suspended"),
                ),
            );
            actions.push(event(
                super::EventKind::Normal,
                "Suspended",
                "Job suspended",
            ));
        }
    } else if let Some(deadline) = spec.and_then(|s| s.active_deadline_seconds)
        && passed(status.start_time.as_ref().map(|t| t.0), deadline, now)
    {
        fail(
            &mut actions,
            &mut conditions,
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        );
    } else {
        if was_suspended {
            set_condition(
                &mut conditions,
                condition("Suspended", false, Some("JobResumed"), Some("Job resumed")),
            );
            actions.push(event(super::EventKind::Normal, "Resumed", "Job resumed"));
        }
        if indexed {
            // One active pod per index not yet complete; extras go.
            let mut running: BTreeSet<i32> = BTreeSet::new();
            let mut by_name = active.clone();
            by_name.sort_by_key(|p| p.metadata.name.clone());
            for p in by_name {
                match index_of(p) {
                    Some(i)
                        if (0..completions).contains(&i)
                            && !completed.contains(&i)
                            && running.insert(i) => {}
                    _ => actions.push(Action::Delete(key_of(p))),
                }
            }
            let room = (parallelism as usize).saturating_sub(running.len());
            let missing =
                (0..completions).filter(|i| !completed.contains(i) && !running.contains(i));
            for i in missing.take(room) {
                actions.push(Action::Create(Made::from(indexed_pod(
                    job, template, name, i,
                ))));
            }
        } else {
            let want = parallelism.min(completions - succeeded).max(0) as usize;
            for _ in active.len()..want {
                actions.push(Action::Create(Made::from(pod_from_template(
                    job,
                    template,
                    name,
                    &[],
                ))));
            }
        }
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
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
    fn the_runner_is_woken_at_a_deadline_and_a_ttl() {
        let mut j = job(1, 1, 6);
        assert_eq!(wake_at(&j), None);
        j.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
        j.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(10);
        j.status = serde_json::from_value(json!({"startTime": T1})).unwrap();
        assert_eq!(wake_at(&j), Some("2026-12-01T10:00:30Z".parse().unwrap()));
        j.status = serde_json::from_value(json!({"startTime": T1,
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": T2}]}))
        .unwrap();
        assert_eq!(wake_at(&j), Some("2026-12-01T10:00:15Z".parse().unwrap()));
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

    fn with(mut j: Job, extra: Value) -> Job {
        let mut v = serde_json::to_value(&j).unwrap();
        json_patch::merge(&mut v, &extra);
        j = serde_json::from_value(v).unwrap();
        j
    }

    fn indexed_pod(i: i32, phase: &str) -> Pod {
        let mut p = pod(i as u32, phase);
        p.metadata.annotations = Some([(COMPLETION_INDEX.to_string(), i.to_string())].into());
        p
    }

    fn made(a: &[Action]) -> Vec<Pod> {
        a.iter()
            .filter_map(|a| match a {
                Action::Create(Made::Pod(p)) => Some((**p).clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_indexed_job_runs_one_pod_per_index_until_each_succeeds() {
        let j = with(job(4, 2, 6), json!({"spec": {"completionMode": "Indexed"}}));
        let pods = made(&plan_with(&j, &[], T1));
        assert_eq!(pods.len(), 2);
        let p = &pods[1];
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-1-"));
        assert_eq!(
            p.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX],
            "1"
        );
        assert_eq!(p.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX], "1");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-1"));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, "JOB_COMPLETION_INDEX");
        // 0 and 2 done, 1 running: index 3 next; a second pod for index 1 goes.
        let pods = [
            indexed_pod(0, "Succeeded"),
            indexed_pod(2, "Succeeded"),
            indexed_pod(1, "Running"),
        ];
        let mut dup = indexed_pod(1, "Running");
        dup.metadata.name = Some("pi-1-dup".into());
        let mut all = pods.to_vec();
        all.push(dup);
        let a = plan_with(&j, &all, T1);
        let next = made(&a);
        assert_eq!(next.len(), 1);
        assert_eq!(
            next[0].metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX],
            "3"
        );
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Delete(k) if k.name == "pi-1-dup"))
        );
        let s = status(&a);
        assert_eq!(s["completedIndexes"], "0,2");
        assert_eq!(s["succeeded"], 2);
        assert_eq!(intervals(&[0, 1, 2, 4, 6, 7].into()), "0-2,4,6-7");
    }

    #[test]
    fn a_job_that_reaches_its_completions_stops_what_still_runs() {
        let j = with(job(2, 3, 6), json!({"spec": {"completionMode": "Indexed"}}));
        let mut spare = indexed_pod(1, "Running");
        spare.metadata.name = Some("pi-1-spare".into());
        let pods = [
            indexed_pod(0, "Succeeded"),
            indexed_pod(1, "Succeeded"),
            spare,
        ];
        let a = plan_with(&j, &pods, T1);
        assert_eq!(status(&a)["conditions"][0]["type"], "Complete");
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Delete(k) if k.name == "pi-1-spare"))
        );
    }

    #[test]
    fn a_suspended_job_stops_its_pods_and_resumes() {
        let mut j = with(job(3, 1, 6), json!({"spec": {"suspend": true}}));
        let running = [pod(1, "Running")];
        let a = plan_with(&j, &running, T1);
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Delete(k) if k.name == "pi-1"))
        );
        assert_eq!(creates(&a), 0);
        let s = status(&a);
        assert_eq!(s["conditions"][0]["type"], "Suspended");
        assert_eq!(s["conditions"][0]["reason"], "JobSuspended");
        assert!(
            s["startTime"].is_null(),
            "its deadline counts from the resume"
        );
        j.status = serde_json::from_value(s).unwrap();
        assert!(
            plan_with(&j, &[], T2)
                .iter()
                .all(|a| !matches!(a, Action::Event { .. })),
            "suspended once"
        );
        j.spec.as_mut().unwrap().suspend = Some(false);
        let a = plan_with(&j, &[], T2);
        assert_eq!(creates(&a), 1);
        let s = status(&a);
        assert_eq!(s["conditions"][0]["status"], "False");
        assert_eq!(s["conditions"][0]["reason"], "JobResumed");
        assert_eq!(s["startTime"], T2);
    }

    fn failed_with(n: u32, code: i32) -> Pod {
        let mut p = pod(n, "Failed");
        p.status = serde_json::from_value(json!({"phase": "Failed", "containerStatuses": [{"name": "c", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code}}}]})).unwrap();
        p
    }

    #[test]
    fn a_pod_failure_policy_ignores_or_fails_by_exit_code() {
        let j = with(
            job(1, 1, 0),
            json!({"spec": {"podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [137]}}]}}}),
        );
        // A kill (137) is ignored: not counted against backoffLimit 0, and replaced.
        let a = plan_with(&j, &[failed_with(1, 137)], T1);
        assert_eq!(status(&a)["failed"], 0);
        assert_eq!(creates(&a), 1);
        // Exit 1 counts: past backoffLimit 0.
        let a = plan_with(&j, &[failed_with(1, 1)], T1);
        assert_eq!(
            status(&a)["conditions"][0]["reason"],
            "BackoffLimitExceeded"
        );
        // Exit 42 fails the Job at once, saying which rule.
        let a = plan_with(&j, &[failed_with(1, 42)], T1);
        let c = &status(&a)["conditions"][0];
        assert_eq!(c["reason"], "PodFailurePolicy");
        assert_eq!(
            c["message"],
            "Container c for pod d/pi-1 failed with exit code 42 matching FailJob rule at index 0"
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
