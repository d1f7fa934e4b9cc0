//! Lifecycle questions about objects, asked by the controllers, the scheduler, the nodes and
//! the API alike: is a pod ready, finished, terminating; who owns an object; does a pod
//! tolerate a node's taints. One home, so that every part answers them the same way.

use serde_json::Value;

/// Whether `obj` is controlled by `owner` (by uid).
pub fn owned_by(obj: &Value, owner: &Value) -> bool {
    let Some(uid) = owner["metadata"]["uid"].as_str() else {
        return false;
    };
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r["uid"] == uid && r["controller"] != false)
        })
}

/// Whether a pod's Ready condition is True.
pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Whether a pod has ended (Succeeded or Failed).
pub fn pod_finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// Whether an object is being deleted (marked, waiting for finalizers or its grace).
pub fn is_terminating(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

/// Whether tolerations cover the node's NoSchedule and NoExecute taints.
pub fn tolerates_taints(tolerations: &Value, node: &Value) -> bool {
    let tols: Vec<&Value> = tolerations.as_array().into_iter().flatten().collect();
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|t| {
            t["effect"] == "PreferNoSchedule"
                || tols.iter().any(|tol| {
                    let key_ok = tol["key"].is_null() || tol["key"] == t["key"];
                    let effect_ok = tol["effect"].is_null()
                        || tol["effect"] == ""
                        || tol["effect"] == t["effect"];
                    let value_ok = tol["operator"] == "Exists"
                        || tol["value"] == t["value"]
                        || (tol["value"].is_null() && t["value"].is_null());
                    key_ok && effect_ok && value_ok
                })
        })
}
