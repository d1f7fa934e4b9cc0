use super::*;
use crate::manifest::lifecycle::decode;
use serde_json::{Value, json};

fn cronjob(extra: Value) -> CronJob {
    let mut v = json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "tick", "namespace": "d", "uid": "c1", "resourceVersion": "5",
                     "creationTimestamp": "2026-12-04T10:00:30Z"},
        "spec": {"schedule": "*/1 * * * *", "timeZone": "UTC", "concurrencyPolicy": "Allow",
                 "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                 "jobTemplate": {"metadata": {"labels": {"team": "a"}},
                     "spec": {"template": {"spec": {"restartPolicy": "Never",
                         "containers": [{"name": "c", "image": "busybox"}]}}}}}});
    json_patch::merge(&mut v, &extra);
    decode(v).unwrap()
}

fn job(n: &str, uid: &str, state: &str, start: &str) -> Job {
    let cond = match state {
        "Complete" | "Failed" => json!([{"type": state, "status": "True"}]),
        _ => json!([]),
    };
    decode(json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": n, "namespace": "d", "uid": uid,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "tick", "uid": "c1", "controller": true}]},
        "status": {"startTime": start, "completionTime": start, "conditions": cond}}))
    .unwrap()
}

fn t(s: &str) -> Time {
    Time(s.parse().unwrap())
}

/// Plans as the runner does: the warnings given are remembered (as if their write landed).
fn run(cj: &CronJob, jobs: &[Job], now: &str, said: &mut Said) -> Planned {
    let mine: Vec<&Job> = jobs.iter().collect();
    let p = plan(cj, &mine, &|_| false, &t(now), said);
    said.extend(p.said.iter().cloned());
    p
}

fn created(p: &Planned) -> Vec<Job> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Create(Made::Job(j)) => Some((**j).clone()),
            _ => None,
        })
        .collect()
}

fn status(p: &Planned) -> Option<Value> {
    p.actions.iter().find_map(|a| match a {
        Action::Status(s) => Some(s["status"].clone()),
        _ => None,
    })
}

fn events(p: &Planned) -> Vec<String> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Event { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn deleted(p: &Planned) -> Vec<String> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteInForeground(k) => Some(k.name.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_job_at_each_scheduled_minute_named_by_it() {
    let cj = cronjob(json!({}));
    let mut said = Said::new();
    let p = run(&cj, &[], "2026-12-04T10:00:59Z", &mut said);
    assert!(created(&p).is_empty(), "nothing before the first minute");
    assert_eq!(p.wake, Some("2026-12-04T10:01:00Z".parse().unwrap()));
    let p = run(&cj, &[], "2026-12-04T10:01:00.2Z", &mut said);
    let jobs = created(&p);
    assert_eq!(jobs.len(), 1);
    let j = &jobs[0];
    // 2026-12-04T10:01:00Z is 29,939,641 minutes after the epoch.
    assert_eq!(j.metadata.name.as_deref(), Some("tick-29939641"));
    assert_eq!(j.metadata.owner_references.as_ref().unwrap()[0].uid, "c1");
    assert_eq!(
        j.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP],
        "2026-12-04T10:01:00Z"
    );
    assert_eq!(j.metadata.labels.as_ref().unwrap()["team"], "a");
    let spec = j.spec.as_ref().unwrap();
    assert_eq!(spec.completions, Some(1), "a Job's defaults");
    assert!(spec.selector.is_some());
    assert_eq!(
        status(&p).unwrap()["lastScheduleTime"],
        "2026-12-04T10:01:00Z"
    );
    assert_eq!(p.wake, Some("2026-12-04T10:02:00Z".parse().unwrap()));
}

#[test]
fn a_job_made_by_an_earlier_leader_is_not_made_again() {
    let cj = cronjob(json!({}));
    let made = job("tick-29939641", "j1", "Running", "2026-12-04T10:01:00Z");
    let p = run(&cj, &[made], "2026-12-04T10:01:03Z", &mut Said::new());
    assert!(created(&p).is_empty());
    let s = status(&p).unwrap();
    assert_eq!(s["lastScheduleTime"], "2026-12-04T10:01:00Z");
    assert_eq!(s["active"][0]["name"], "tick-29939641");
    // A Job of that name that is not this CronJob's: a warning, once, and nothing made.
    let mut said = Said::new();
    let mine: Vec<&Job> = vec![];
    let taken = |n: &str| n == "tick-29939641";
    let p = plan(&cj, &mine, &taken, &t("2026-12-04T10:01:03Z"), &said);
    assert!(created(&p).is_empty());
    assert_eq!(events(&p), ["FailedCreate"]);
    let again = plan(&cj, &mine, &taken, &t("2026-12-04T10:01:08Z"), &said);
    assert_eq!(
        events(&again),
        ["FailedCreate"],
        "not said until its write has landed"
    );
    said.extend(p.said);
    let p = plan(&cj, &mine, &taken, &t("2026-12-04T10:01:08Z"), &said);
    assert!(events(&p).is_empty(), "said once");
}

#[test]
fn after_downtime_only_the_latest_missed_time_runs() {
    let cj = cronjob(json!({"status": {"lastScheduleTime": "2026-12-04T08:00:00Z"}}));
    let mut said = Said::new();
    let p = run(&cj, &[], "2026-12-04T10:05:10Z", &mut said);
    let jobs = created(&p);
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP],
        "2026-12-04T10:05:00Z"
    );
    assert_eq!(events(&p), ["TooManyMissedTimes"], "125 missed");
    // Within a starting deadline of 30 s, 10:05:00 is still on time at 10:05:10 ...
    let cj = cronjob(json!({"spec": {"startingDeadlineSeconds": 30},
        "status": {"lastScheduleTime": "2026-12-04T08:00:00Z"}}));
    let p = run(&cj, &[], "2026-12-04T10:05:10Z", &mut Said::new());
    assert_eq!(created(&p).len(), 1);
    assert!(
        events(&p).is_empty(),
        "older times are past the deadline, not missed"
    );
    // ... and at 10:05:40 it is too late: nothing runs until 10:06.
    let p = run(&cj, &[], "2026-12-04T10:05:40Z", &mut Said::new());
    assert!(created(&p).is_empty());
    assert_eq!(p.wake, Some("2026-12-04T10:06:00Z".parse().unwrap()));
}

#[test]
fn forbid_waits_and_replace_deletes_the_running_job() {
    let running = job("tick-29939640", "j0", "Running", "2026-12-04T10:00:00Z");
    let forbid = cronjob(json!({"spec": {"concurrencyPolicy": "Forbid"},
        "status": {"lastScheduleTime": "2026-12-04T10:00:00Z"}}));
    let mut said = Said::new();
    let p = run(
        &forbid,
        std::slice::from_ref(&running),
        "2026-12-04T10:01:01Z",
        &mut said,
    );
    assert!(created(&p).is_empty());
    assert_eq!(events(&p), ["JobAlreadyActive"]);
    let p = run(
        &forbid,
        std::slice::from_ref(&running),
        "2026-12-04T10:01:06Z",
        &mut said,
    );
    assert!(events(&p).is_empty(), "said once per scheduled time");
    // Once it has finished, the time it waited for runs.
    let done = job("tick-29939640", "j0", "Complete", "2026-12-04T10:00:00Z");
    let p = run(&forbid, &[done], "2026-12-04T10:01:30Z", &mut said);
    assert_eq!(created(&p).len(), 1);

    let replace = cronjob(json!({"spec": {"concurrencyPolicy": "Replace"},
        "status": {"lastScheduleTime": "2026-12-04T10:00:00Z"}}));
    let p = run(
        &replace,
        std::slice::from_ref(&running),
        "2026-12-04T10:01:01Z",
        &mut Said::new(),
    );
    assert_eq!(created(&p).len(), 1);
    assert_eq!(deleted(&p), ["tick-29939640"]);
    assert_eq!(
        status(&p).unwrap()["active"],
        Value::Null,
        "the replaced Job is not active"
    );

    let allow = cronjob(json!({"status": {"lastScheduleTime": "2026-12-04T10:00:00Z"}}));
    let p = run(&allow, &[running], "2026-12-04T10:01:01Z", &mut Said::new());
    assert_eq!(created(&p).len(), 1, "Allow runs beside it");
    assert!(deleted(&p).is_empty());
}

#[test]
fn finished_jobs_beyond_the_history_limits_go_oldest_first() {
    let cj = cronjob(json!({"spec": {"suspend": true},
        "status": {"active": [{"kind": "Job", "name": "tick-5", "uid": "u5"}]}}));
    let jobs: Vec<Job> = (1..=5)
        .map(|i| {
            job(
                &format!("tick-{i}"),
                &format!("u{i}"),
                "Complete",
                &format!("2026-12-04T10:0{i}:00Z"),
            )
        })
        .chain((6..=7).map(|i| {
            job(
                &format!("tick-{i}"),
                &format!("u{i}"),
                "Failed",
                &format!("2026-12-04T10:0{i}:00Z"),
            )
        }))
        .collect();
    let p = run(&cj, &jobs, "2026-12-04T10:09:00Z", &mut Said::new());
    assert!(created(&p).is_empty(), "suspended");
    assert_eq!(deleted(&p), ["tick-1", "tick-2", "tick-6"]);
    assert_eq!(
        events(&p),
        ["SawCompletedJob"],
        "tick-5 left the active list"
    );
    let s = status(&p).unwrap();
    assert_eq!(s["lastSuccessfulTime"], "2026-12-04T10:05:00Z");
    assert_eq!(s["active"], Value::Null);
}

#[test]
fn a_converged_cronjob_plans_nothing() {
    let cj = cronjob(
        json!({"status": {"lastScheduleTime": "2026-12-04T10:01:00Z",
        "active": [{"apiVersion": "batch/v1", "kind": "Job", "name": "tick-29939641", "namespace": "d", "uid": "j1"}]}}),
    );
    let made = job("tick-29939641", "j1", "Running", "2026-12-04T10:01:00Z");
    let p = run(&cj, &[made], "2026-12-04T10:01:30Z", &mut Said::new());
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    let fresh = cronjob(json!({}));
    let p = run(&fresh, &[], "2026-12-04T10:00:40Z", &mut Said::new());
    assert!(
        p.actions.is_empty(),
        "no status write for an empty status: {:?}",
        p.actions
    );
}

#[test]
fn the_scheduled_time_is_read_in_the_cronjobs_zone() {
    let cj = cronjob(
        json!({"spec": {"schedule": "30 9 * * *", "timeZone": "Europe/Berlin"},
        "metadata": {"creationTimestamp": "2026-12-04T07:00:00Z"}}),
    );
    let p = run(&cj, &[], "2026-12-04T08:30:05Z", &mut Said::new());
    let jobs = created(&p);
    assert_eq!(
        jobs[0].metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP],
        "2026-12-04T09:30:00+01:00"
    );
    assert_eq!(p.wake, Some("2026-12-05T08:30:00Z".parse().unwrap()));
}
