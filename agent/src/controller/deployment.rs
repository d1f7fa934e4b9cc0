//! Deployment: ReplicaSets per pod template, rolling updates within maxSurge/maxUnavailable,
//! Recreate, revision history, pause, and the rollout progress `rollout status` prints.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::{
    Action, Made, POD_TEMPLATE_HASH, is_terminating, key_of, owned_by, resolve_int_or_percent,
    status_update, template_hash,
};
use crate::manifest::lifecycle::{annotation, label};

/// The annotation holding a ReplicaSet's revision number within its Deployment.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// A ReplicaSet's revision within its Deployment (0 when it has none).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION_ANNOTATION)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn replicas(rs: &ReplicaSet) -> i64 {
    i64::from(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
}

fn status_replicas(rs: &ReplicaSet) -> i64 {
    rs.status.as_ref().map_or(0, |s| i64::from(s.replicas))
}

fn status_of(
    rs: &ReplicaSet,
    f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>,
) -> i64 {
    rs.status.as_ref().and_then(f).map_or(0, i64::from)
}

/// Available pods a ReplicaSet will keep: its status may not yet show a scale-down that its
/// spec already asks for, so never count more than `spec.replicas`.
fn available(rs: &ReplicaSet) -> i64 {
    status_of(rs, |s| s.available_replicas).min(replicas(rs))
}

fn with_replicas(rs: &ReplicaSet, n: i64) -> ReplicaSet {
    let mut r = rs.clone();
    r.spec.get_or_insert_with(Default::default).replicas = Some(n as i32);
    r
}

fn scaled(rs: &ReplicaSet, n: i64) -> Action {
    Action::Update(with_replicas(rs, n).into())
}

/// A Deployment's desired replicas (Kubernetes' default 1).
pub fn desired_replicas(dep: &Deployment) -> i64 {
    i64::from(dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
}

/// maxSurge and maxUnavailable as numbers for `desired` replicas.
pub fn surge_and_unavailable(dep: &Deployment, desired: i64) -> (i64, i64) {
    let ru = dep
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = resolve_int_or_percent(ru.and_then(|r| r.max_surge.as_ref()), desired, true);
    let mut unavailable =
        resolve_int_or_percent(ru.and_then(|r| r.max_unavailable.as_ref()), desired, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(desired))
}

/// The ReplicaSet a Deployment makes for its current template.
fn new_replica_set(dep: &Deployment, hash: &str, rev: i64, replicas: i64) -> ReplicaSet {
    let spec = dep.spec.clone().unwrap_or_default();
    let name = format!("{}-{hash}", dep.metadata.name.as_deref().unwrap_or(""));
    let mut template = spec.template;
    template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    let mut selector = spec.selector;
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    let mut annotations = BTreeMap::from([(REVISION_ANNOTATION.to_string(), rev.to_string())]);
    if let Some(c) = annotation(&dep.metadata, CHANGE_CAUSE) {
        annotations.insert(CHANGE_CAUSE.into(), c.into());
    }
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: dep.metadata.namespace.clone(),
            labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
            annotations: Some(annotations),
            owner_references: Some(vec![super::owner_ref(dep)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas as i32),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

/// Plans one Deployment against the ReplicaSets it owns (from an [`super::OwnerIndex`]).
pub fn plan(dep: &Deployment, rss: &[&ReplicaSet], now: &Time) -> Vec<Action> {
    if is_terminating(&dep.metadata) {
        return vec![];
    }
    let spec = dep.spec.as_ref();
    let desired = desired_replicas(dep).max(0);
    let owned: Vec<&ReplicaSet> = rss
        .iter()
        .copied()
        .filter(|r| owned_by(&r.metadata, &dep.metadata) && !is_terminating(&r.metadata))
        .collect();
    let hash = template_hash(&spec.map(|s| s.template.clone()).unwrap_or_default());
    let new_rs = owned
        .iter()
        .copied()
        .find(|r| label(&r.metadata, POD_TEMPLATE_HASH) == Some(hash.as_str()));
    let mut olds: Vec<&ReplicaSet> = owned
        .iter()
        .copied()
        .filter(|r| !new_rs.is_some_and(|n| std::ptr::eq(n, *r)))
        .collect();
    olds.sort_by_key(|r| revision(r));
    let max_rev = owned.iter().map(|r| revision(r)).max().unwrap_or(0);
    let paused = spec.and_then(|s| s.paused) == Some(true);
    let recreate = spec
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate");
    let (surge, unavailable) = surge_and_unavailable(dep, desired);
    let mut actions = Vec::new();

    if !paused {
        let total: i64 = owned.iter().map(|r| replicas(r)).sum();
        match new_rs {
            None => {
                let old_total: i64 = olds.iter().map(|r| replicas(r) + status_replicas(r)).sum();
                let start = if recreate {
                    if old_total > 0 { 0 } else { desired }
                } else {
                    (desired + surge - total).clamp(0, desired)
                };
                actions.push(Action::Create(Made::from(new_replica_set(
                    dep,
                    &hash,
                    max_rev + 1,
                    start,
                ))));
            }
            Some(new) => {
                // Every change to the new ReplicaSet goes into one update: two updates of one
                // object in one write would conflict with each other.
                let mut updated = new.clone();
                if revision(new) < max_rev {
                    // Rolling back to an older template makes it the newest revision.
                    updated
                        .metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(REVISION_ANNOTATION.into(), (max_rev + 1).to_string());
                }
                if recreate {
                    for o in olds.iter().filter(|o| replicas(o) > 0) {
                        actions.push(scaled(o, 0));
                    }
                    let old_pods: i64 = olds.iter().map(|o| status_replicas(o)).sum();
                    let olds_down = olds.iter().all(|o| replicas(o) == 0) && old_pods == 0;
                    if olds_down {
                        updated = with_replicas(&updated, desired);
                    }
                } else {
                    let target =
                        rolling(&mut actions, new, &olds, desired, surge, unavailable, total);
                    updated = with_replicas(&updated, target);
                }
                if updated != *new {
                    actions.push(Action::Update(updated.into()));
                }
            }
        }
    }

    // Keep revisionHistoryLimit old ReplicaSets that are fully scaled down.
    let limit = spec
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let idle: Vec<&&ReplicaSet> = olds
        .iter()
        .filter(|o| replicas(o) == 0 && status_replicas(o) == 0)
        .collect();
    if idle.len() > limit {
        for o in idle.iter().take(idle.len() - limit) {
            actions.push(Action::Delete(key_of(**o)));
        }
    }

    let status = status(dep, new_rs, &owned, desired, unavailable, now);
    actions.extend(status_update(dep, dep.status.as_ref(), status));
    actions
}

/// One step of a rolling update, computed from the current state as Kubernetes does: scale old
/// ReplicaSets down while at least `desired - maxUnavailable` pods stay available (pushed as
/// actions), and return the new ReplicaSet's replicas within maxSurge.
fn rolling(
    actions: &mut Vec<Action>,
    new: &ReplicaSet,
    olds: &[&ReplicaSet],
    desired: i64,
    surge: i64,
    unavailable: i64,
    total: i64,
) -> i64 {
    let new_replicas = replicas(new);
    let target = if new_replicas > desired {
        desired
    } else {
        let room = desired + surge - total;
        if new_replicas < desired && room > 0 {
            new_replicas + room.min(desired - new_replicas)
        } else {
            new_replicas
        }
    };
    let min_available = desired - unavailable;
    // First remove old pods that are not available anyway, within what keeps the total sane.
    let new_unavailable = (new_replicas - available(new)).max(0);
    let mut budget = total - min_available - new_unavailable;
    let mut after: Vec<(i64, &ReplicaSet)> = olds.iter().map(|o| (replicas(o), *o)).collect();
    for (n, o) in after.iter_mut() {
        if budget <= 0 {
            break;
        }
        let unhealthy = (*n - available(o)).max(0);
        let cut = unhealthy.min(budget);
        if cut > 0 {
            *n -= cut;
            budget -= cut;
        }
    }
    // Then scale down healthy old pods while availability stays above the minimum.
    let all_available: i64 = available(new) + olds.iter().map(|o| available(o)).sum::<i64>();
    let mut room = all_available - min_available;
    for (n, o) in after.iter_mut() {
        if room <= 0 {
            break;
        }
        let cut = (*n).min(room).min(available(o));
        *n -= cut;
        room -= cut;
    }
    for (n, o) in after {
        if n != replicas(o) {
            actions.push(scaled(o, n));
        }
    }
    target
}

fn condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        ..Default::default()
    }
}

/// A condition with its times: the transition kept while its status holds, the update kept
/// while nothing about it changed (for Progressing, while the rollout made no progress).
fn stamped(
    mut c: DeploymentCondition,
    old: Option<&DeploymentCondition>,
    progressed: bool,
    now: &Time,
) -> DeploymentCondition {
    let same_status = old.is_some_and(|o| o.status == c.status);
    let same = old.is_some_and(|o| same_status && o.reason == c.reason && o.message == c.message);
    // (a condition written before conditions had times gets them now)
    c.last_transition_time = if same_status {
        old.and_then(|o| o.last_transition_time.clone())
            .or_else(|| Some(now.clone()))
    } else {
        Some(now.clone())
    };
    c.last_update_time = if same && !(c.type_ == "Progressing" && progressed) {
        old.and_then(|o| o.last_update_time.clone())
            .or_else(|| Some(now.clone()))
    } else {
        Some(now.clone())
    };
    c
}

fn status(
    dep: &Deployment,
    new_rs: Option<&ReplicaSet>,
    owned: &[&ReplicaSet],
    desired: i64,
    unavailable: i64,
    now: &Time,
) -> DeploymentStatus {
    let sum = |f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>| {
        owned.iter().map(|r| status_of(r, f)).sum::<i64>()
    };
    let available = sum(|s| s.available_replicas);
    let updated = new_rs.map_or(0, status_replicas);
    let total: i64 = owned.iter().map(|r| status_replicas(r)).sum();
    let complete =
        new_rs.is_some() && updated == desired && total == desired && available >= desired;
    let min_ok = available >= desired - unavailable;
    let new_name = new_rs
        .and_then(|r| r.metadata.name.as_deref())
        .unwrap_or("");
    let paused = dep.spec.as_ref().and_then(|s| s.paused) == Some(true);
    let progressing = if paused {
        condition(
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
        )
    } else if complete {
        condition(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet {new_name:?} has successfully progressed."),
        )
    } else {
        condition(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet {new_name:?} is progressing."),
        )
    };
    let available_cond = if min_ok {
        condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
        )
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
        )
    };
    let old = dep.status.clone().unwrap_or_default();
    let old_cond = |t: &str| old.conditions.iter().flatten().find(|c| c.type_ == t);
    let counts = (
        Some(total as i32),
        Some(updated as i32),
        Some(sum(|s| s.ready_replicas) as i32),
        Some(available as i32),
    );
    // Progress as Kubernetes counts it: more pods updated, ready or available, fewer old ones,
    // or a new generation; a pod losing readiness is not progress.
    let up = |old: Option<i32>, new: Option<i32>| new.unwrap_or(0) > old.unwrap_or(0);
    let old_pods =
        |replicas: Option<i32>, updated: Option<i32>| replicas.unwrap_or(0) - updated.unwrap_or(0);
    let progressed = up(old.updated_replicas, counts.1)
        || up(old.ready_replicas, counts.2)
        || up(old.available_replicas, counts.3)
        || old_pods(counts.0, counts.1) < old_pods(old.replicas, old.updated_replicas)
        || old.observed_generation != dep.metadata.generation;
    // No progress for progressDeadlineSeconds: Kubernetes' ProgressDeadlineExceeded (kept until
    // the rollout moves again).
    let mut progressing = progressing;
    let exceeded = "ProgressDeadlineExceeded";
    if !paused && !complete && !progressed {
        let deadline = dep
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .unwrap_or(600);
        let stuck_since = old_cond("Progressing")
            .and_then(|c| c.last_update_time.as_ref())
            .map(|t| t.0.as_second());
        let already =
            old_cond("Progressing").is_some_and(|c| c.reason.as_deref() == Some(exceeded));
        if already || stuck_since.is_some_and(|t| t + i64::from(deadline) < now.0.as_second()) {
            progressing = condition(
                "Progressing",
                "False",
                exceeded,
                format!("ReplicaSet {new_name:?} has timed out progressing."),
            );
        }
    }
    let available_cond = stamped(available_cond, old_cond("Available"), progressed, now);
    let progressing = stamped(progressing, old_cond("Progressing"), progressed, now);
    DeploymentStatus {
        observed_generation: dep.metadata.generation,
        replicas: counts.0,
        updated_replicas: counts.1,
        ready_replicas: counts.2,
        available_replicas: counts.3,
        unavailable_replicas: Some((desired - available).max(0) as i32),
        conditions: Some(vec![available_cond, progressing]),
        ..Default::default()
    }
}

/// Whether a rollout is done, and the line `rollout status` prints (kubectl's wording).
pub fn rollout_progress(dep: &Deployment) -> (bool, String) {
    let name = dep.metadata.name.as_deref().unwrap_or("");
    let st = dep.status.clone().unwrap_or_default();
    let want = desired_replicas(dep);
    if st.observed_generation.unwrap_or(0) < dep.metadata.generation.unwrap_or(0) {
        return (
            false,
            "Waiting for deployment spec update to be observed...".into(),
        );
    }
    let n = |v: Option<i32>| i64::from(v.unwrap_or(0));
    let (updated, replicas, available) = (
        n(st.updated_replicas),
        n(st.replicas),
        n(st.available_replicas),
    );
    if updated < want {
        return (
            false,
            format!(
                "Waiting for deployment {name:?} rollout to finish: {updated} out of {want} new replicas have been updated..."
            ),
        );
    }
    if replicas > updated {
        return (
            false,
            format!(
                "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
                replicas - updated
            ),
        );
    }
    if available < updated {
        return (
            false,
            format!(
                "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
            ),
        );
    }
    (true, format!("deployment {name:?} successfully rolled out"))
}

/// The template `rollout undo` writes back: that of `to_revision`, or of the revision before the
/// current one, without the pod-template-hash label.
pub fn template_for_undo(
    dep: &Deployment,
    rss: &[ReplicaSet],
    to_revision: Option<i64>,
) -> Result<PodTemplateSpec, String> {
    let mut owned: Vec<&ReplicaSet> = rss
        .iter()
        .filter(|r| owned_by(&r.metadata, &dep.metadata))
        .collect();
    owned.sort_by_key(|r| revision(r));
    let target = match to_revision {
        Some(n) => owned
            .iter()
            .find(|r| revision(r) == n)
            .ok_or_else(|| format!("unable to find the specified revision {n} in history"))?,
        None => {
            if owned.len() < 2 {
                return Err(
                    "no rollout history found: there is no previous revision to roll back to"
                        .into(),
                );
            }
            &owned[owned.len() - 2]
        }
    };
    let mut t = target
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(POD_TEMPLATE_HASH);
    }
    Ok(t)
}

#[cfg(test)]
mod tests;
