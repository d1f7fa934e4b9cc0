//! Deployment: ReplicaSets per pod template, rolling updates within maxSurge/maxUnavailable,
//! Recreate, revision history, pause, and the rollout progress `rollout status` prints.

use serde_json::{Value, json};

use super::{
    Action, POD_TEMPLATE_HASH, is_terminating, owned_by, resolve_int_or_percent, status_update,
    template_hash,
};
use crate::store::Key;

/// The annotation holding a ReplicaSet's revision number within its Deployment.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION_ANNOTATION]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn replicas(rs: &Value) -> i64 {
    i(&rs["spec"]["replicas"])
}

/// Available pods a ReplicaSet will keep: its status may not yet show a scale-down that its
/// spec already asks for, so never count more than `spec.replicas`.
fn available(rs: &Value) -> i64 {
    i(&rs["status"]["availableReplicas"]).min(replicas(rs))
}

fn scaled(rs: &Value, n: i64) -> Action {
    let mut r = rs.clone();
    r["spec"]["replicas"] = Value::from(n);
    Action::Update(r)
}

/// maxSurge and maxUnavailable as numbers for `desired` replicas.
pub fn surge_and_unavailable(dep: &Value, desired: i64) -> (i64, i64) {
    let ru = &dep["spec"]["strategy"]["rollingUpdate"];
    let surge = resolve_int_or_percent(&ru["maxSurge"], desired, true);
    let mut unavailable = resolve_int_or_percent(&ru["maxUnavailable"], desired, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(desired))
}

/// The ReplicaSet a Deployment makes for its current template.
fn new_replica_set(dep: &Value, hash: &str, rev: i64, replicas: i64) -> Value {
    let name = format!("{}-{hash}", dep["metadata"]["name"].as_str().unwrap_or(""));
    let mut template = dep["spec"]["template"].clone();
    template["metadata"]["labels"][POD_TEMPLATE_HASH] = Value::from(hash);
    let mut selector = dep["spec"]["selector"].clone();
    selector["matchLabels"][POD_TEMPLATE_HASH] = Value::from(hash);
    let mut annotations = json!({REVISION_ANNOTATION: rev.to_string()});
    if let Some(c) = dep["metadata"]["annotations"][CHANGE_CAUSE].as_str() {
        annotations[CHANGE_CAUSE] = Value::from(c);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": dep["metadata"]["namespace"],
            "labels": template["metadata"]["labels"],
            "annotations": annotations,
            "ownerReferences": [super::owner_ref(dep)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": dep["spec"]["minReadySeconds"],
            "selector": selector,
            "template": template,
        },
    })
}

/// Plans one Deployment against the ReplicaSets of its namespace.
pub fn plan(dep: &Value, rss: &[Value]) -> Vec<Action> {
    if is_terminating(dep) {
        return vec![];
    }
    let desired = i(&dep["spec"]["replicas"]).max(0);
    let owned: Vec<&Value> = rss
        .iter()
        .filter(|r| owned_by(r, dep) && !is_terminating(r))
        .collect();
    let hash = template_hash(&dep["spec"]["template"]);
    let new_rs = owned
        .iter()
        .copied()
        .find(|r| r["metadata"]["labels"][POD_TEMPLATE_HASH] == hash.as_str());
    let mut olds: Vec<&Value> = owned
        .iter()
        .copied()
        .filter(|r| Some(*r) != new_rs)
        .collect();
    olds.sort_by_key(|r| revision(r));
    let max_rev = owned.iter().map(|r| revision(r)).max().unwrap_or(0);
    let paused = dep["spec"]["paused"] == true;
    let recreate = dep["spec"]["strategy"]["type"] == "Recreate";
    let (surge, unavailable) = surge_and_unavailable(dep, desired);
    let mut actions = Vec::new();

    if !paused {
        let total: i64 = owned.iter().map(|r| replicas(r)).sum();
        match new_rs {
            None => {
                let old_total: i64 = olds
                    .iter()
                    .map(|r| replicas(r) + i(&r["status"]["replicas"]))
                    .sum();
                let start = if recreate {
                    if old_total > 0 { 0 } else { desired }
                } else {
                    (desired + surge - total).clamp(0, desired)
                };
                actions.push(Action::Create(new_replica_set(
                    dep,
                    &hash,
                    max_rev + 1,
                    start,
                )));
            }
            Some(new) => {
                // Every change to the new ReplicaSet goes into one update: two updates of one
                // object in one write would conflict with each other.
                let mut updated = new.clone();
                if revision(new) < max_rev {
                    // Rolling back to an older template makes it the newest revision.
                    updated["metadata"]["annotations"][REVISION_ANNOTATION] =
                        Value::from((max_rev + 1).to_string());
                }
                if recreate {
                    for o in olds.iter().filter(|o| replicas(o) > 0) {
                        actions.push(scaled(o, 0));
                    }
                    let old_pods: i64 = olds.iter().map(|o| i(&o["status"]["replicas"])).sum();
                    let olds_down = olds.iter().all(|o| replicas(o) == 0) && old_pods == 0;
                    if olds_down {
                        updated["spec"]["replicas"] = Value::from(desired);
                    }
                } else {
                    let target =
                        rolling(&mut actions, new, &olds, desired, surge, unavailable, total);
                    updated["spec"]["replicas"] = Value::from(target);
                }
                if updated != *new {
                    actions.push(Action::Update(updated));
                }
            }
        }
    }

    // Keep revisionHistoryLimit old ReplicaSets that are fully scaled down.
    let limit = dep["spec"]["revisionHistoryLimit"]
        .as_i64()
        .unwrap_or(10)
        .max(0) as usize;
    let idle: Vec<&&Value> = olds
        .iter()
        .filter(|o| replicas(o) == 0 && i(&o["status"]["replicas"]) == 0)
        .collect();
    if idle.len() > limit {
        for o in idle.iter().take(idle.len() - limit) {
            if let Ok(k) = Key::of(o) {
                actions.push(Action::Delete(k));
            }
        }
    }

    let status = status(dep, new_rs, &owned, desired, unavailable);
    actions.extend(status_update(dep, status));
    actions
}

/// One step of a rolling update, computed from the current state as Kubernetes does: scale old
/// ReplicaSets down while at least `desired - maxUnavailable` pods stay available (pushed as
/// actions), and return the new ReplicaSet's replicas within maxSurge.
fn rolling(
    actions: &mut Vec<Action>,
    new: &Value,
    olds: &[&Value],
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
    let mut after: Vec<(i64, &Value)> = olds.iter().map(|o| (replicas(o), *o)).collect();
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

fn status(
    dep: &Value,
    new_rs: Option<&Value>,
    owned: &[&Value],
    desired: i64,
    unavailable: i64,
) -> Value {
    let sum = |f: &str| owned.iter().map(|r| i(&r["status"][f])).sum::<i64>();
    let available = sum("availableReplicas");
    let updated = new_rs.map(|r| i(&r["status"]["replicas"])).unwrap_or(0);
    let total = sum("replicas");
    let complete =
        new_rs.is_some() && updated == desired && total == desired && available >= desired;
    let min_ok = available >= desired - unavailable;
    let progressing = if dep["spec"]["paused"] == true {
        json!({"type": "Progressing", "status": "Unknown", "reason": "DeploymentPaused", "message": "Deployment is paused"})
    } else if complete {
        json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
               "message": format!("ReplicaSet {:?} has successfully progressed.", new_rs.map(|r| r["metadata"]["name"].clone()).unwrap_or_default())})
    } else {
        json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
               "message": format!("ReplicaSet {:?} is progressing.", new_rs.map(|r| r["metadata"]["name"].clone()).unwrap_or_default())})
    };
    json!({
        "observedGeneration": dep["metadata"]["generation"],
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": sum("readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": (desired - available).max(0),
        "conditions": [
            if min_ok {
                json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."})
            } else {
                json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "Deployment does not have minimum availability."})
            },
            progressing,
        ],
    })
}

/// Whether a rollout is done, and the line `rollout status` prints (kubectl's wording).
pub fn rollout_progress(dep: &Value) -> (bool, String) {
    let name = dep["metadata"]["name"].as_str().unwrap_or("");
    let st = &dep["status"];
    let want = i(&dep["spec"]["replicas"]);
    if i(&st["observedGeneration"]) < i(&dep["metadata"]["generation"]) {
        return (
            false,
            "Waiting for deployment spec update to be observed...".into(),
        );
    }
    let (updated, replicas, available) = (
        i(&st["updatedReplicas"]),
        i(&st["replicas"]),
        i(&st["availableReplicas"]),
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
    dep: &Value,
    rss: &[Value],
    to_revision: Option<i64>,
) -> Result<Value, String> {
    let mut owned: Vec<&Value> = rss.iter().filter(|r| owned_by(r, dep)).collect();
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
            owned[owned.len() - 2]
        }
    };
    let mut t = target["spec"]["template"].clone();
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove(POD_TEMPLATE_HASH);
    }
    Ok(t)
}

#[cfg(test)]
mod tests;
