//! Lifecycle questions about objects, asked by the controllers, the scheduler, the nodes and
//! the API alike: is a pod ready, finished, terminating; who owns an object; does a pod
//! tolerate a node's taints. One home, on Kubernetes' own types (k8s-openapi), so that every
//! part answers them the same way.
//!
//! The store holds JSON; [`decode`] and [`encode`] are the two crossings, and [`Object`] is
//! what a typed object offers (its kind, its metadata, its serde form).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde_json::Value;

use crate::store::Key;

/// A typed Kubernetes object: its kind and API version, its metadata, its JSON form.
pub trait Object:
    k8s_openapi::Resource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + serde::Serialize
    + serde::de::DeserializeOwned
    + Clone
{
}

impl<T> Object for T where
    T: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Clone
{
}

/// The store key of a typed object.
pub fn key_of<T: Object>(o: &T) -> Key {
    let m = o.metadata();
    Key::new(
        T::KIND,
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or(""),
    )
}

/// The JSON of a typed object (with `apiVersion` and `kind`), as the store and the wire take
/// it. Unset fields are left out, as Kubernetes' `omitempty` does.
pub fn encode<T: Object>(o: &T) -> Value {
    serde_json::to_value(o).expect("Kubernetes' types always serialise")
}

/// A stored object as its typed form.
///
/// Read through `&Value`, the one way the agent decodes a `Value` (bytes decode straight from
/// the slice): each way instantiates the whole tree of every kind's decoder again, about
/// 0.4 MB of the binary per way.
pub fn decode<T: Object>(v: Value) -> Result<T, serde_json::Error> {
    T::deserialize(&v)
}

/// The reference an Event or a log line names an object by: apiVersion, kind, name,
/// namespace and uid.
pub fn about<T: Object>(o: &T) -> ObjectReference {
    let m = o.metadata();
    ObjectReference {
        api_version: Some(T::API_VERSION.into()),
        kind: Some(T::KIND.into()),
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        ..Default::default()
    }
}

/// The uid of an object ("" before it is stored).
pub fn uid(m: &ObjectMeta) -> &str {
    m.uid.as_deref().unwrap_or("")
}

/// The name of an object ("" when it has none yet).
pub fn name(m: &ObjectMeta) -> &str {
    m.name.as_deref().unwrap_or("")
}

/// The namespace of an object ("" for cluster-scoped kinds).
pub fn namespace(m: &ObjectMeta) -> &str {
    m.namespace.as_deref().unwrap_or("")
}

/// An object's labels (an empty map when it has none).
pub fn labels(m: &ObjectMeta) -> &BTreeMap<String, String> {
    strings(&m.labels)
}

/// The items of a list that k8s-openapi leaves `None` when unset.
pub fn items<T>(v: &Option<Vec<T>>) -> &[T] {
    v.as_deref().unwrap_or_default()
}

/// A string map that k8s-openapi leaves `None` when unset (an empty map then).
pub fn strings(m: &Option<BTreeMap<String, String>>) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    m.as_ref().unwrap_or(&EMPTY)
}

/// A label's value.
pub fn label<'a>(m: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    m.labels.as_ref()?.get(key).map(String::as_str)
}

/// An annotation's value.
pub fn annotation<'a>(m: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    m.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The owner reference marked as the controller, if any.
pub fn controller_of(m: &ObjectMeta) -> Option<&OwnerReference> {
    m.owner_references
        .as_deref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `obj` is controlled by `owner` (by uid). A reference that does not say whether it
/// is the controller counts, as it always has here.
pub fn owned_by(obj: &ObjectMeta, owner: &ObjectMeta) -> bool {
    let Some(uid) = owner.uid.as_deref() else {
        return false;
    };
    obj.owner_references.as_deref().is_some_and(|refs| {
        refs.iter()
            .any(|r| r.uid == uid && r.controller != Some(false))
    })
}

/// The uid of the controller that owns an object, if any (for indexing objects by owner:
/// the same test as [`owned_by`]).
pub fn owner_uids(m: &ObjectMeta) -> impl Iterator<Item = &str> {
    m.owner_references
        .as_deref()
        .into_iter()
        .flatten()
        .filter(|r| r.controller != Some(false))
        .map(|r| r.uid.as_str())
}

/// Whether an object names `uid` among its owners (controller or not).
pub fn refers_to(m: &ObjectMeta, uid: &str) -> bool {
    !uid.is_empty()
        && m.owner_references
            .as_deref()
            .is_some_and(|refs| refs.iter().any(|r| r.uid == uid))
}

/// Whether a pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a pod is available at `now`: Ready, and for `min_ready` seconds at least.
pub fn pod_available(p: &Pod, min_ready: i32, now: &Time) -> bool {
    if !pod_ready(p) {
        return false;
    }
    if min_ready <= 0 {
        return true;
    }
    let since = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref());
    since.is_some_and(|t| t.0.as_second() + i64::from(min_ready) <= now.0.as_second())
}

/// A pod's phase ("" when it has no status yet).
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether a pod has ended (Succeeded or Failed).
pub fn pod_finished(pod: &Pod) -> bool {
    matches!(pod_phase(pod), "Succeeded" | "Failed")
}

/// How a Job ended ("Complete" or "Failed"), `None` while it runs.
pub fn job_finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_deref())?;
    ["Complete", "Failed"].into_iter().find(|t| {
        conditions
            .iter()
            .any(|c| c.type_ == *t && c.status == "True")
    })
}

/// The node a pod is bound to, if any.
pub fn pod_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

/// Whether an object is being deleted (marked, waiting for finalizers or its grace).
pub fn is_terminating(m: &ObjectMeta) -> bool {
    m.deletion_timestamp.is_some()
}

/// Whether a node's Ready condition is True.
pub fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether one toleration covers one taint.
pub fn tolerates(tol: &Toleration, t: &Taint) -> bool {
    let key_ok = tol
        .key
        .as_deref()
        .is_none_or(|k| k.is_empty() || k == t.key);
    let effect_ok = tol
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == t.effect);
    let value_ok = tol.operator.as_deref() == Some("Exists") || tol.value == t.value;
    key_ok && effect_ok && value_ok
}

/// Whether tolerations cover the node's NoSchedule and NoExecute taints.
pub fn tolerates_taints(tolerations: &[Toleration], node: &Node) -> bool {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref());
    taints
        .into_iter()
        .flatten()
        .all(|t| t.effect == "PreferNoSchedule" || tolerations.iter().any(|tol| tolerates(tol, t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(taints: Value) -> Node {
        decode(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}, "spec": {"taints": taints}})).unwrap()
    }

    fn tols(v: Value) -> Vec<Toleration> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn taints_need_a_matching_toleration_except_preferences() {
        let n = node(json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]));
        assert!(!tolerates_taints(&[], &n));
        assert!(tolerates_taints(
            &tols(
                json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])
            ),
            &n
        ));
        assert!(tolerates_taints(
            &tols(json!([{"key": "dedicated", "operator": "Exists"}])),
            &n
        ));
        assert!(!tolerates_taints(
            &tols(json!([{"key": "dedicated", "operator": "Equal", "value": "cpu"}])),
            &n
        ));
        assert!(
            tolerates_taints(&tols(json!([{"operator": "Exists"}])), &n),
            "tolerates everything"
        );
        let soft = node(json!([{"key": "k", "effect": "PreferNoSchedule"}]));
        assert!(tolerates_taints(&[], &soft));
    }

    #[test]
    fn ownership_by_uid_and_controller_flag() {
        let owner: ObjectMeta = serde_json::from_value(json!({"name": "o", "uid": "u1"})).unwrap();
        let refd = |controller: Value| -> ObjectMeta {
            serde_json::from_value(json!({"name": "p", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "o", "uid": "u1", "controller": controller}]}))
            .unwrap()
        };
        assert!(owned_by(&refd(json!(true)), &owner));
        assert!(owned_by(&refd(Value::Null), &owner));
        assert!(!owned_by(&refd(json!(false)), &owner));
        assert!(refers_to(&refd(json!(false)), "u1"));
        assert_eq!(
            controller_of(&refd(json!(true))).map(|r| r.uid.as_str()),
            Some("u1")
        );
        assert!(controller_of(&refd(Value::Null)).is_none());
    }
}
