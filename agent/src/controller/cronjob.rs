//! CronJob: a Job at every scheduled time, as kube-controller-manager's CronJob controller makes
//! them.
//!
//! The Job of a scheduled time is named `<cronjob>-<minutes since the epoch>`, so two leaders
//! planning the same time make the same name and the store keeps one. After downtime only the
//! most recent missed time runs (and none older than `startingDeadlineSeconds`), with a warning
//! past 100 missed. `concurrencyPolicy` Forbid waits for the running Job, Replace deletes it
//! first; finished Jobs beyond the history limits are deleted, oldest first.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::{Action, EventKind, Made, about, is_terminating, key_of, owner_ref, status_update};
use crate::manifest::Manifest;
use crate::manifest::cron::Schedule;
use crate::manifest::lifecycle::{job_finished, name};

/// The annotation that carries a Job's scheduled time, in the CronJob's zone.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// What one plan asks, and when the CronJob wants planning again.
#[derive(Debug, Default)]
pub struct Planned {
    pub actions: Vec<Action>,
    /// The next scheduled time.
    pub wake: Option<Timestamp>,
    /// The warnings among `actions` that are given once: the runner records them in [`Said`]
    /// once their write has landed.
    pub said: Vec<SaidKey>,
}

/// Warnings already given, so that a level-triggered pass does not repeat them: one per
/// CronJob, scheduled time and reason.
pub type Said = BTreeSet<SaidKey>;

/// One warning given: the CronJob's uid, the scheduled time (seconds) and the reason.
pub type SaidKey = (String, i64, &'static str);

/// The Job name for the time `t`.
pub fn job_name(cronjob: &str, t: Timestamp) -> String {
    format!("{cronjob}-{}", t.as_second().div_euclid(60))
}

/// A reference to a Job as `status.active` lists it.
fn job_ref(j: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: j.metadata.name.clone(),
        namespace: j.metadata.namespace.clone(),
        uid: j.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The time a Job started, for ordering its history.
fn started(j: &Job) -> (Option<Timestamp>, &str) {
    (
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(j.metadata.creation_timestamp.as_ref())
            .map(|t| t.0),
        name(&j.metadata),
    )
}

/// The Job for scheduled time `t`, made from the CronJob's template with the defaults a Job
/// gets when it is created.
pub fn job_for(cj: &CronJob, sched: &Schedule, t: Timestamp) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    // A Job takes its template's labels and annotations, as Kubernetes makes it.
    let from = template.metadata.unwrap_or_default();
    let mut meta = ObjectMeta {
        name: Some(job_name(name(&cj.metadata), t)),
        namespace: cj.metadata.namespace.clone(),
        labels: from.labels,
        annotations: from.annotations,
        owner_references: Some(vec![owner_ref(cj)]),
        ..Default::default()
    };
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(SCHEDULED_TIMESTAMP.into(), sched.local_rfc3339(t));
    let mut m = Manifest::Job(Job {
        metadata: meta,
        spec: template.spec,
        status: None,
    });
    crate::manifest::defaults::apply(&mut m);
    match m {
        Manifest::Job(j) => j,
        _ => unreachable!("defaults keep the kind"),
    }
}

fn event(cj: &CronJob, kind: EventKind, reason: &str, message: String) -> Action {
    Action::Event {
        about: about(cj),
        kind,
        reason: reason.into(),
        message,
    }
}

/// Plans one CronJob at `now` against the Jobs it controls (`mine`); `taken` says whether a Job
/// of that name exists in its namespace at all.
pub fn plan(
    cj: &CronJob,
    mine: &[&Job],
    taken: &dyn Fn(&str) -> bool,
    now: &Time,
    said: &Said,
) -> Planned {
    let mut out = Planned::default();
    let Some(spec) = cj.spec.as_ref() else {
        return out;
    };
    if is_terminating(&cj.metadata) {
        return out;
    }
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    // A warning given once per CronJob, scheduled time (`at`, seconds) and reason.
    let mut new_said: Vec<SaidKey> = Vec::new();
    let mut once = |actions: &mut Vec<Action>,
                    at: i64,
                    kind: EventKind,
                    reason: &'static str,
                    message: String| {
        let k = (uid.clone(), at, reason);
        if !said.contains(&k) {
            new_said.push(k);
            actions.push(event(cj, kind, reason, message));
        }
    };
    let old = cj.status.clone().unwrap_or_default();
    let was_active = |j: &Job| {
        old.active
            .iter()
            .flatten()
            .any(|r| r.uid.is_some() && r.uid == j.metadata.uid)
    };
    let mut active: Vec<&Job> = Vec::new();
    let mut last_successful = old.last_successful_time.clone();
    let (mut complete, mut failed) = (Vec::new(), Vec::new());
    for j in mine.iter().copied() {
        match job_finished(j) {
            None if !is_terminating(&j.metadata) => active.push(j),
            None => {}
            Some(how) => {
                if was_active(j) {
                    out.actions.push(event(
                        cj,
                        EventKind::Normal,
                        "SawCompletedJob",
                        format!("Saw completed job: {}, condition: {how}", name(&j.metadata)),
                    ));
                }
                if is_terminating(&j.metadata) {
                    continue;
                }
                if how == "Complete" {
                    let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                    if done.as_ref().map(|t| t.0) > last_successful.as_ref().map(|t| t.0) {
                        last_successful = done;
                    }
                    complete.push(j);
                } else {
                    failed.push(j);
                }
            }
        }
    }

    let mut last_schedule = old.last_schedule_time.clone();
    let mut replaced: Vec<&Job> = Vec::new();
    if spec.suspend != Some(true) {
        match Schedule::new(&spec.schedule, spec.time_zone.as_deref()) {
            Err(e) => {
                once(
                    &mut out.actions,
                    0,
                    EventKind::Warning,
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {e}", spec.schedule),
                );
            }
            Ok(sched) => {
                let created = cj
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(now.0, |t| t.0);
                let mut earliest = last_schedule.as_ref().map_or(created, |t| t.0);
                let deadline = spec.starting_deadline_seconds;
                if let Some(d) = deadline {
                    let limit = Timestamp::from_second(now.0.as_second() - d).unwrap_or(now.0);
                    earliest = earliest.max(limit);
                }
                let missed = sched.missed(earliest, now.0);
                out.wake = sched.next_after(now.0);
                if let Some(t) = missed.most_recent {
                    if missed.count > 100 {
                        once(
                            &mut out.actions,
                            t.as_second(),
                            EventKind::Warning,
                            "TooManyMissedTimes",
                            "too many missed start times. Set or decrease \
                             .spec.startingDeadlineSeconds or check clock skew"
                                .into(),
                        );
                    }
                    let name_t = job_name(name(&cj.metadata), t);
                    let too_late = deadline.is_some_and(|d| t.as_second() + d < now.0.as_second());
                    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
                    if mine.iter().any(|j| name(&j.metadata) == name_t) {
                        // Made already, perhaps by a leader before this one.
                        if last_schedule.as_ref().map(|l| l.0) < Some(t) {
                            last_schedule = Some(Time(t));
                        }
                    } else if too_late {
                        once(
                            &mut out.actions,
                            t.as_second(),
                            EventKind::Warning,
                            "MissSchedule",
                            format!(
                                "Missed scheduled time to start a job: {}",
                                t.strftime("%a, %d %b %Y %H:%M:%S +0000")
                            ),
                        );
                    } else if taken(&name_t) {
                        once(
                            &mut out.actions,
                            t.as_second(),
                            EventKind::Warning,
                            "FailedCreate",
                            format!("Error creating job: jobs.batch \"{name_t}\" already exists"),
                        );
                    } else if policy == "Forbid" && !active.is_empty() {
                        once(
                            &mut out.actions,
                            t.as_second(),
                            EventKind::Normal,
                            "JobAlreadyActive",
                            "Not starting job because prior execution is running and \
                                 concurrency policy is Forbid"
                                .into(),
                        );
                    } else {
                        if policy == "Replace" {
                            replaced = std::mem::take(&mut active);
                        }
                        out.actions
                            .push(Action::Create(Made::from(job_for(cj, &sched, t))));
                        last_schedule = Some(Time(t));
                    }
                }
            }
        }
    }
    // Replaced Jobs and the history beyond its limits go in the foreground (their pods first).
    let mut going: Vec<&Job> = replaced;
    for (mut list, keep) in [
        (complete, spec.successful_jobs_history_limit.unwrap_or(3)),
        (failed, spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        list.sort_by_key(|j| started(j));
        let extra = list.len().saturating_sub(keep.max(0) as usize);
        going.extend(list.into_iter().take(extra));
    }
    out.actions
        .extend(going.iter().map(|j| Action::DeleteInForeground(key_of(*j))));
    let mut refs: Vec<ObjectReference> = active.iter().map(|j| job_ref(j)).collect();
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    let status = CronJobStatus {
        active: (!refs.is_empty()).then_some(refs),
        last_schedule_time: last_schedule,
        last_successful_time: last_successful,
    };
    // (an absent status reads as the empty one: a new CronJob writes none until it schedules)
    out.actions.extend(status_update(cj, Some(&old), status));
    out.said = new_said;
    out
}

#[cfg(test)]
#[path = "cronjob/tests.rs"]
mod tests;
