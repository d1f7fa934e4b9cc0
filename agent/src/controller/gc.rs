//! Garbage collection by `ownerReferences`: what goes with an object when it is deleted.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::store::Key;

/// Kinds that controllers create with owner references.
pub const DEPENDENT_KINDS: &[&str] = &["ReplicaSet", "Pod"];

/// The keys of every object in `candidates` owned, directly or through other candidates, by
/// `root`. Pure: the caller supplies the candidates.
pub fn dependents(root: &Value, candidates: &[Value]) -> Vec<Key> {
    let mut owners: BTreeSet<String> = root["metadata"]["uid"]
        .as_str()
        .map(String::from)
        .into_iter()
        .collect();
    let mut out = Vec::new();
    let mut taken = vec![false; candidates.len()];
    loop {
        let mut grew = false;
        for (i, c) in candidates.iter().enumerate() {
            if taken[i] {
                continue;
            }
            let owned = c["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r["uid"].as_str().is_some_and(|u| owners.contains(u)))
                });
            if owned {
                taken[i] = true;
                grew = true;
                if let Some(uid) = c["metadata"]["uid"].as_str() {
                    owners.insert(uid.to_string());
                }
                if let Ok(k) = Key::of(c) {
                    out.push(k);
                }
            }
        }
        if !grew {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let got: Vec<String> = dependents(&dep, &cands)
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(got, vec!["web-a", "web-a-1"]);
    }
}
