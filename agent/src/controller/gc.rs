//! Garbage collection by `ownerReferences`: what goes with an object when it is deleted.
//!
//! Pure planners: [`plan_delete`] turns one delete and its propagation policy into the ops of
//! one write; [`plan_foreground`] is the collector's step for an object deleted in the
//! foreground (its dependents first, then the object).

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;

use super::{Action, Made, Object, is_terminating, key_of};
use crate::manifest::lifecycle;
use crate::store::{FOREGROUND_DELETION, Key, Op, new_uid};

/// What happens to the objects an object owns when it is deleted (`propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// The dependents stay, their `ownerReferences` to the deleted object removed.
    Orphan,
    /// The object goes now, its dependents with it (in the same write).
    Background,
    /// The object stays, with `deletionTimestamp` and the `foregroundDeletion` finalizer,
    /// until its blocking dependents are gone.
    Foreground,
}

/// The conditions and the grace period of one delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRequest {
    /// Precondition on the object's `resourceVersion`.
    pub resource_version: Option<i64>,
    /// Precondition on the object's `uid`.
    pub uid: Option<String>,
    /// For a Pod: how long its containers get to stop.
    pub grace_seconds: Option<i64>,
}

/// A stored object that may depend on the one deleted: its key, its metadata and its JSON
/// (which an orphaning delete writes back without the reference).
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: Key,
    pub meta: ObjectMeta,
    pub object: Value,
}

impl Stored {
    /// The stored object with its metadata read; `None` for one without a readable key.
    pub fn decode(object: Value) -> Option<Stored> {
        let key = Key::of(&object).ok()?;
        let meta = ObjectMeta::deserialize(&object["metadata"]).ok()?;
        Some(Stored { key, meta, object })
    }
}

/// The ops of deleting the object `key` names, whose metadata is `owner`, with `propagation`;
/// `candidates` are the objects that may be its dependents (the caller reads them). A
/// Namespace takes everything in it whatever the policy.
pub fn plan_delete(
    owner: &ObjectMeta,
    key: Key,
    candidates: &[Stored],
    propagation: Propagation,
    req: &DeleteRequest,
) -> Vec<Op> {
    let grace_seconds = if key.kind == "Pod" {
        req.grace_seconds
    } else {
        None
    };
    let namespace = key.kind == "Namespace";
    let delete = |foreground| Op::Delete {
        key: key.clone(),
        resource_version: req.resource_version,
        uid: req.uid.clone(),
        grace_seconds,
        foreground,
    };
    let mut ops = Vec::new();
    match propagation {
        _ if namespace => {
            ops.push(delete(false));
            ops.extend(candidates.iter().map(|c| Op::delete(c.key.clone())));
        }
        Propagation::Orphan => {
            let uid = lifecycle::uid(owner);
            for c in candidates
                .iter()
                .filter(|c| lifecycle::refers_to(&c.meta, uid))
            {
                let mut meta = c.meta.clone();
                if let Some(refs) = meta.owner_references.as_mut() {
                    refs.retain(|r| r.uid != uid);
                }
                meta.owner_references = meta.owner_references.filter(|r| !r.is_empty());
                // Unconditional: the dependent may have changed since it was read; only the
                // reference goes.
                meta.resource_version = None;
                let mut freed = c.object.clone();
                freed["metadata"] = serde_json::to_value(&meta).expect("metadata serialises");
                ops.push(Op::Put {
                    object: freed,
                    uid: new_uid(),
                    create: false,
                });
            }
            ops.push(delete(false));
        }
        Propagation::Background => {
            ops.push(delete(false));
            ops.extend(dependents(owner, candidates).into_iter().map(Op::delete));
        }
        Propagation::Foreground => ops.push(delete(true)),
    }
    ops
}

/// Whether an object is marked deleted in the foreground and waits for its dependents.
pub fn deleting_in_foreground(m: &ObjectMeta) -> bool {
    is_terminating(m)
        && m.finalizers
            .as_deref()
            .is_some_and(|f| f.iter().any(|f| f == FOREGROUND_DELETION))
}

/// An object that may depend on an owner: its key and its metadata.
#[derive(Debug, Clone)]
pub struct Dependent<'a> {
    pub key: Key,
    pub meta: &'a ObjectMeta,
}

impl<'a> Dependent<'a> {
    pub fn of<T: Object>(o: &'a T) -> Dependent<'a> {
        Dependent {
            key: key_of(o),
            meta: o.metadata(),
        }
    }
}

/// The collector's step for `owner`, deleted in the foreground: its direct dependents are
/// deleted (in the foreground too, so theirs go first), and once none with
/// `blockOwnerDeletion` is left, the `foregroundDeletion` finalizer is removed, which lets the
/// store delete the owner. Nothing while dependents are still going.
pub fn plan_foreground<T: Object + Into<Made>>(owner: &T, candidates: &[Dependent]) -> Vec<Action> {
    let om = owner.metadata();
    if !deleting_in_foreground(om) {
        return Vec::new();
    }
    let uid = om.uid.as_deref().unwrap_or("");
    let direct: Vec<&Dependent> = candidates
        .iter()
        .filter(|c| lifecycle::refers_to(c.meta, uid))
        .collect();
    let mut actions: Vec<Action> = direct
        .iter()
        .filter(|c| !is_terminating(c.meta))
        // Pods own nothing: they go at once (their containers stop on their node).
        .map(|c| {
            if c.key.kind == "Pod" {
                Action::Delete(c.key.clone())
            } else {
                Action::DeleteInForeground(c.key.clone())
            }
        })
        .collect();
    let blocking = direct.iter().any(|c| {
        c.meta
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
    });
    if !blocking {
        let mut done = owner.clone();
        if let Some(f) = done.metadata_mut().finalizers.as_mut() {
            f.retain(|f| f != FOREGROUND_DELETION);
        }
        actions.push(Action::Update(done.into()));
    }
    actions
}

/// Kinds that controllers create with owner references.
pub const DEPENDENT_KINDS: &[&str] = &["ReplicaSet", "Job", "Pod"];

/// The keys of every object in `candidates` owned, directly or through other candidates, by
/// `root`. Pure: the caller supplies the candidates.
pub fn dependents(root: &ObjectMeta, candidates: &[Stored]) -> Vec<Key> {
    let mut owners: BTreeSet<&str> = root.uid.as_deref().into_iter().collect();
    let mut out = Vec::new();
    let mut taken = vec![false; candidates.len()];
    loop {
        let mut grew = false;
        for (i, c) in candidates.iter().enumerate() {
            // Every reference counts, not only the controller's, as Kubernetes' collector has it.
            let owned = c
                .meta
                .owner_references
                .iter()
                .flatten()
                .any(|r| owners.contains(r.uid.as_str()));
            if taken[i] || !owned {
                continue;
            }
            taken[i] = true;
            grew = true;
            owners.extend(c.meta.uid.as_deref());
            out.push(c.key.clone());
        }
        if !grew {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn owned(kind: &str, name: &str, uid: &str, owner: &str, block: bool) -> Value {
        json!({"kind": kind, "metadata": {"name": name, "namespace": "d", "uid": uid,
            "resourceVersion": "9",
            "ownerReferences": [{"apiVersion": "apps/v1", "uid": owner, "kind": "Deployment", "name": "web",
                "controller": true, "blockOwnerDeletion": block}]}})
    }

    fn meta(v: &Value) -> ObjectMeta {
        ObjectMeta::deserialize(&v["metadata"]).unwrap()
    }

    fn stored(objects: Vec<Value>) -> Vec<Stored> {
        objects.into_iter().filter_map(Stored::decode).collect()
    }

    fn keys(ops: &[Op]) -> Vec<String> {
        ops.iter()
            .map(|o| match o {
                Op::Put { object, .. } => {
                    format!("put {}", object["metadata"]["name"].as_str().unwrap())
                }
                Op::Delete {
                    key, foreground, ..
                } => {
                    format!(
                        "delete {}{}",
                        key.name,
                        if *foreground { " (foreground)" } else { "" }
                    )
                }
                _ => "other".into(),
            })
            .collect()
    }

    #[test]
    fn orphan_frees_direct_dependents_and_deletes_the_owner_only() {
        let dep = obj("Deployment", "web", "d1", None);
        let cands = vec![
            owned("ReplicaSet", "web-a", "r1", "d1", true),
            obj("Pod", "web-a-1", "p1", Some("r1")),
        ];
        let ops = plan_delete(
            &meta(&dep),
            Key::of(&dep).unwrap(),
            &stored(cands.clone()),
            Propagation::Orphan,
            &DeleteRequest::default(),
        );
        assert_eq!(keys(&ops), vec!["put web-a", "delete web"]);
        let Op::Put { object, .. } = &ops[0] else {
            unreachable!()
        };
        assert!(
            object["metadata"].get("ownerReferences").is_none(),
            "{object}"
        );
        assert!(object["metadata"].get("resourceVersion").is_none());
    }

    #[test]
    fn background_takes_every_dependent_and_foreground_marks_the_owner() {
        let dep = obj("Deployment", "web", "d1", None);
        let cands = vec![
            owned("ReplicaSet", "web-a", "r1", "d1", true),
            obj("Pod", "web-a-1", "p1", Some("r1")),
        ];
        let req = DeleteRequest {
            resource_version: Some(4),
            uid: Some("d1".into()),
            grace_seconds: Some(3),
        };
        let ops = plan_delete(
            &meta(&dep),
            Key::of(&dep).unwrap(),
            &stored(cands.clone()),
            Propagation::Background,
            &req,
        );
        assert_eq!(
            keys(&ops),
            vec!["delete web", "delete web-a", "delete web-a-1"]
        );
        let Op::Delete {
            resource_version,
            uid,
            grace_seconds,
            ..
        } = &ops[0]
        else {
            unreachable!()
        };
        assert_eq!((*resource_version, uid.as_deref()), (Some(4), Some("d1")));
        assert_eq!(*grace_seconds, None, "a grace period is a pod's");
        let ops = plan_delete(
            &meta(&dep),
            Key::of(&dep).unwrap(),
            &stored(cands.clone()),
            Propagation::Foreground,
            &req,
        );
        assert_eq!(keys(&ops), vec!["delete web (foreground)"]);
    }

    #[test]
    fn foreground_deletes_dependents_first_then_lets_the_owner_go() {
        use crate::manifest::lifecycle::decode;
        use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
        let typed = |v: Value| -> ReplicaSet {
            let mut v = v;
            v["apiVersion"] = json!("apps/v1");
            decode(v).unwrap()
        };
        let mut dep: Deployment = decode(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "d", "uid": "d1"}}))
        .unwrap();
        let rs = typed(owned("ReplicaSet", "web-a", "r1", "d1", true));
        // Not marked: nothing to do.
        assert!(plan_foreground(&dep, &[Dependent::of(&rs)]).is_empty());
        dep.metadata.deletion_timestamp = Some(Time("2026-12-01T00:00:00Z".parse().unwrap()));
        dep.metadata.finalizers =
            Some(vec!["foregroundDeletion".into(), "example.com/keep".into()]);
        let a = plan_foreground(&dep, &[Dependent::of(&rs)]);
        assert!(
            matches!(&a[..], [Action::DeleteInForeground(k)] if k.name == "web-a"),
            "{a:?}"
        );
        // The dependent is going: wait for it.
        let mut going = rs.clone();
        going.metadata.deletion_timestamp = Some(Time("2026-12-01T00:00:01Z".parse().unwrap()));
        assert!(plan_foreground(&dep, &[Dependent::of(&going)]).is_empty());
        // A dependent that does not block its owner is deleted, but not waited for.
        let loose = typed(owned("ReplicaSet", "web-b", "r2", "d1", false));
        let a = plan_foreground(&dep, &[Dependent::of(&loose)]);
        assert_eq!(a.len(), 2);
        // None left: the finalizer goes, the other one stays.
        let a = plan_foreground(&dep, &[]);
        let [Action::Update(o)] = &a[..] else {
            panic!("{a:?}")
        };
        assert_eq!(
            o.meta().finalizers,
            Some(vec!["example.com/keep".to_string()])
        );
    }

    fn obj(kind: &str, name: &str, uid: &str, owner: Option<&str>) -> Value {
        let refs: Vec<Value> = owner.map(|o| json!({"uid": o})).into_iter().collect();
        json!({"kind": kind, "metadata": {"name": name, "namespace": "d", "uid": uid, "ownerReferences": refs}})
    }

    #[test]
    fn follows_owner_chains_in_any_order() {
        let dep = obj("Deployment", "web", "d1", None);
        let cands = vec![
            obj("Pod", "web-a-1", "p1", Some("r1")),
            obj("ReplicaSet", "web-a", "r1", Some("d1")),
            obj("Pod", "other", "p2", Some("r9")),
            obj("Pod", "bare", "p3", None),
        ];
        let got: Vec<String> = dependents(&meta(&dep), &stored(cands))
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(got, vec!["web-a", "web-a-1"]);
    }
}
