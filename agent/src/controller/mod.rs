//! Controllers: reconcile loops that turn higher-level objects into lower ones.
//!
//! Each controller is a pure planning function `(desired, observed) -> Vec<Action>`, unit-tested
//! on data, and [`runner`] is the thin async loop that reads the store, plans, and commits each
//! object's actions as one write. Runners are level-triggered: they wake on any store change and
//! on a periodic resync, and plan from the current state, never from the event that woke them.
//! A plan is idempotent: executing it and planning again yields nothing new.
//!
//! ```text
//! Deployment --deployment::plan--> ReplicaSets --replicaset::plan--> Pods --scheduler--> nodeName
//! Job --job::plan--> Pods          DaemonSet --daemonset::plan--> Pods (one per node)
//! ```

pub mod daemonset;
pub mod deployment;
pub mod gc;
pub mod job;
pub mod nodes;
pub mod replicaset;
pub mod runner;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use crate::manifest::events::{self, EventKind};
pub use crate::manifest::lifecycle::{is_terminating, owned_by, pod_finished, pod_ready};
pub use runner::{Controllers, spawn_all};

use crate::store::Key;

/// What a controller wants done. A runner turns these into store ops.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create an object. An empty `metadata.name` with `generateName` gets a random suffix.
    Create(Value),
    /// Write spec/metadata of an existing object (with its resourceVersion, so a stale plan
    /// fails as a conflict and is planned again).
    Update(Value),
    /// Write the status of an object.
    Status(Value),
    Delete(Key),
    /// Delete an object in the foreground (it stays, marked, until its dependents are gone).
    DeleteInForeground(Key),
    /// Record an event about an object.
    Event {
        about: Value,
        kind: EventKind,
        reason: String,
        message: String,
    },
}

/// The status write for `obj`, or nothing when its status already is `status` (so that a
/// converged plan is empty and writes no revision).
pub fn status_update(obj: &Value, status: Value) -> Option<Action> {
    (obj["status"] != status).then(|| {
        let mut o = obj.clone();
        o["status"] = status;
        Action::Status(o)
    })
}

/// The label holding a pod template's hash, as Kubernetes names it.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// A short, stable hash of a pod template (lower-case letters and digits, 10 characters).
pub fn template_hash(template: &Value) -> String {
    let digest = Sha256::digest(serde_json::to_vec(template).unwrap_or_default());
    // Base-36 of the first 8 bytes keeps names short and DNS-safe.
    let mut n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    let mut s = String::new();
    for _ in 0..10 {
        let d = (n % 36) as u32;
        s.push(std::char::from_digit(d, 36).expect("digit below 36"));
        n /= 36;
    }
    s
}

/// An ownerReference to `owner` that marks it as the controller.
pub fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A pod made from a template, owned by `owner`, named `PREFIX-<random>` by the runner.
pub fn pod_from_template(
    owner: &Value,
    template: &Value,
    prefix: &str,
    extra_labels: &[(&str, &str)],
) -> Value {
    let mut meta = template["metadata"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    for (k, v) in extra_labels {
        meta["labels"][*k] = Value::from(*v);
    }
    meta["generateName"] = Value::from(format!("{prefix}-"));
    meta["namespace"] = owner["metadata"]["namespace"].clone();
    meta["ownerReferences"] = json!([owner_ref(owner)]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]})
}

/// Resolves an int-or-percent against a total: percentages round up for surge, down for
/// unavailability, as Kubernetes does.
pub fn resolve_int_or_percent(v: &Value, total: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let p: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = total * p;
            if round_up { (x + 99) / 100 } else { x / 100 }
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_is_stable_and_short() {
        let t = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
        let h = template_hash(&t);
        assert_eq!(h.len(), 10);
        assert!(
            h.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(h, template_hash(&t.clone()));
        assert_ne!(
            h,
            template_hash(&json!({"spec": {"containers": [{"name": "a", "image": "y"}]}}))
        );
    }

    #[test]
    fn percentages_round_like_kubernetes() {
        assert_eq!(resolve_int_or_percent(&json!("25%"), 10, true), 3);
        assert_eq!(resolve_int_or_percent(&json!("25%"), 10, false), 2);
        assert_eq!(resolve_int_or_percent(&json!(2), 10, false), 2);
    }
}
