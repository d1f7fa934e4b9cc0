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
//! CronJob --cronjob::plan--> Jobs (one per scheduled time)
//! ReplicationController --replicaset::plan_rc--> Pods
//! ```

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod gc;
pub mod hpa;
pub mod job;
pub mod nodes;
pub mod replicaset;
pub mod runner;

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use crate::manifest::events::{self, EventKind};
pub use crate::manifest::lifecycle::{
    Object, about, encode, is_terminating, key_of, owned_by, pod_finished, pod_ready,
};
pub use runner::{Controllers, spawn_all};

use crate::manifest::lifecycle::owner_uids;
use crate::store::Key;

/// What a controller wants done. The runner turns these into store ops, encoding the objects
/// into the store's JSON only then.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create an object. An empty `metadata.name` with `generateName` gets a random suffix.
    Create(Made),
    /// Write spec/metadata of an existing object (with its resourceVersion, so a stale plan
    /// fails as a conflict and is planned again).
    Update(Made),
    /// Write the status of an object (its JSON: a status write carries only what it changes).
    Status(Value),
    Delete(Key),
    /// Delete an object in the foreground (it stays, marked, until its dependents are gone).
    DeleteInForeground(Key),
    /// Record an event about an object (named by [`about`]).
    Event {
        about: ObjectReference,
        kind: EventKind,
        reason: String,
        message: String,
    },
}

/// An object a controller creates or updates, typed until the runner writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Made {
    Pod(Box<Pod>),
    ReplicaSet(Box<ReplicaSet>),
    Deployment(Box<Deployment>),
    Job(Box<Job>),
    DaemonSet(Box<DaemonSet>),
    CronJob(Box<CronJob>),
    ReplicationController(Box<ReplicationController>),
}

macro_rules! made_from {
    ($($kind:ident),*) => {
        $(impl From<$kind> for Made {
            fn from(o: $kind) -> Made {
                Made::$kind(Box::new(o))
            }
        })*

        impl Made {
            /// The object's metadata.
            pub fn meta(&self) -> &ObjectMeta {
                match self {
                    $(Made::$kind(o) => &o.metadata,)*
                }
            }

            /// The object's metadata, to change.
            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Made::$kind(o) => &mut o.metadata,)*
                }
            }

            /// The object's kind.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Made::$kind(_) => <$kind as k8s_openapi::Resource>::KIND,)*
                }
            }

            /// The object's JSON, as the store takes it.
            pub fn encode(&self) -> Value {
                match self {
                    $(Made::$kind(o) => encode(o.as_ref()),)*
                }
            }
        }
    };
}

made_from!(
    Pod,
    ReplicaSet,
    Deployment,
    Job,
    DaemonSet,
    CronJob,
    ReplicationController
);

impl Made {
    /// A ReplicaSet's desired replicas (what its scaling events say).
    pub fn replicas(&self) -> Option<i32> {
        match self {
            Made::ReplicaSet(rs) => rs.spec.as_ref().and_then(|s| s.replicas),
            _ => None,
        }
    }
}

/// The status write for `obj`, or nothing when its status already is `status` (so that a
/// converged plan is empty and writes no revision). The write carries the object's
/// resourceVersion: a status planned from a stale read is a conflict, planned again.
pub fn status_update<T: Object, S: PartialEq + serde::Serialize>(
    obj: &T,
    current: Option<&S>,
    status: S,
) -> Option<Action> {
    (current != Some(&status)).then(|| {
        let m = obj.metadata();
        Action::Status(json!({
            "apiVersion": T::API_VERSION,
            "kind": T::KIND,
            "metadata": {"name": m.name, "namespace": m.namespace, "resourceVersion": m.resource_version},
            "status": status,
        }))
    })
}

/// The label holding a pod template's hash, as Kubernetes names it.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// A short, stable hash of a pod template (lower-case letters and digits, 10 characters).
/// Hashed over the template's JSON with sorted keys, so the hash of a stored template does not
/// change with the way it is read.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let v = serde_json::to_value(template).unwrap_or_default();
    let digest = Sha256::digest(serde_json::to_vec(&v).unwrap_or_default());
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
pub fn owner_ref<T: Object>(owner: &T) -> OwnerReference {
    let m = owner.metadata();
    OwnerReference {
        api_version: T::API_VERSION.to_string(),
        kind: T::KIND.to_string(),
        name: m.name.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod made from a template, owned by `owner`, named `PREFIX-<random>` by the runner.
pub fn pod_from_template<T: Object>(
    owner: &T,
    template: Option<&PodTemplateSpec>,
    prefix: &str,
    extra_labels: &[(&str, &str)],
) -> Pod {
    let mut meta = template
        .and_then(|t| t.metadata.clone())
        .unwrap_or_default();
    if !extra_labels.is_empty() {
        let labels = meta.labels.get_or_insert_with(Default::default);
        for (k, v) in extra_labels {
            labels.insert((*k).to_string(), (*v).to_string());
        }
    }
    // A name in the template (the documentation's examples have one) is not the pods' name.
    meta.name = None;
    meta.generate_name = Some(format!("{prefix}-"));
    meta.namespace = owner.metadata().namespace.clone();
    meta.owner_references = Some(vec![owner_ref(owner)]);
    Pod {
        metadata: meta,
        spec: template.and_then(|t| t.spec.clone()),
        status: None,
    }
}

/// Resolves an int-or-percent against a total: percentages round up for surge, down for
/// unavailability, as Kubernetes does. Unset is 0.
pub fn resolve_int_or_percent(v: Option<&IntOrString>, total: i64, round_up: bool) -> i64 {
    match v {
        Some(IntOrString::Int(n)) => i64::from(*n),
        Some(IntOrString::String(s)) => {
            let p: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = total * p;
            if round_up { (x + 99) / 100 } else { x / 100 }
        }
        None => 0,
    }
}

/// Objects grouped by the uid of the owner that controls them: each planner reads only its own
/// (one pass over the objects, instead of every object for every owner).
pub struct OwnerIndex<'a, T> {
    by_owner: HashMap<&'a str, Vec<&'a T>>,
}

impl<'a, T: Object> OwnerIndex<'a, T> {
    pub fn new(objects: &'a [T]) -> Self {
        let mut by_owner: HashMap<&'a str, Vec<&'a T>> = HashMap::new();
        for o in objects {
            for uid in owner_uids(o.metadata()) {
                by_owner.entry(uid).or_default().push(o);
            }
        }
        OwnerIndex { by_owner }
    }

    /// The objects `owner` controls (as [`owned_by`] decides).
    pub fn of(&self, owner: &ObjectMeta) -> &[&'a T] {
        owner
            .uid
            .as_deref()
            .and_then(|u| self.by_owner.get(u))
            .map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_is_stable_and_short() {
        let t: PodTemplateSpec =
            serde_json::from_value(json!({"spec": {"containers": [{"name": "a", "image": "x"}]}}))
                .unwrap();
        let h = template_hash(&t);
        assert_eq!(h.len(), 10);
        assert!(
            h.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(h, template_hash(&t.clone()));
        assert_ne!(
            h,
            template_hash(
                &serde_json::from_value(
                    json!({"spec": {"containers": [{"name": "a", "image": "y"}]}})
                )
                .unwrap()
            )
        );
    }

    #[test]
    fn percentages_round_like_kubernetes() {
        let p = IntOrString::String("25%".into());
        assert_eq!(resolve_int_or_percent(Some(&p), 10, true), 3);
        assert_eq!(resolve_int_or_percent(Some(&p), 10, false), 2);
        assert_eq!(
            resolve_int_or_percent(Some(&IntOrString::Int(2)), 10, false),
            2
        );
        assert_eq!(resolve_int_or_percent(None, 10, false), 0);
    }
}
