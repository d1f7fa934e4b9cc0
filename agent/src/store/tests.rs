//! Store tests against real SQLite files in temporary directories.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

async fn open() -> (tempfile::TempDir, Store) {
    temp_store().await
}

fn cm(name: &str, data: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": {"k": data}})
}

fn put(obj: Value) -> Op {
    Op::Put {
        object: obj,
        uid: new_uid(),
        create: true,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[tokio::test]
async fn create_update_conflict_and_delete() {
    let (_d, s) = open().await;
    let r = s
        .write(&Write::new(vec![Op::Create {
            object: cm("a", "1"),
            uid: "u1".into(),
        }]))
        .await
        .unwrap();
    assert_eq!(r[0].outcome, Outcome::Created);
    let a = &r[0].object;
    assert_eq!(a["metadata"]["uid"], "u1");
    assert_eq!(a["metadata"]["resourceVersion"], "1");
    assert_eq!(a["metadata"]["generation"], 1);
    assert!(a["metadata"]["creationTimestamp"].is_string());

    // The same apply again changes nothing and keeps the revision.
    let r = s.write(&Write::new(vec![put(cm("a", "1"))])).await.unwrap();
    assert_eq!(r[0].outcome, Outcome::Unchanged);
    assert_eq!(s.revision(), 1);

    // A change bumps revision and generation, and keeps uid.
    let r = s.write(&Write::new(vec![put(cm("a", "2"))])).await.unwrap();
    assert_eq!(r[0].outcome, Outcome::Configured);
    assert_eq!(r[0].object["metadata"]["resourceVersion"], "2");
    assert_eq!(r[0].object["metadata"]["generation"], 2);
    assert_eq!(r[0].object["metadata"]["uid"], "u1");

    // A write based on a stale resourceVersion is a conflict.
    let mut stale = cm("a", "3");
    stale["metadata"]["resourceVersion"] = json!("1");
    let e = s.write(&Write::new(vec![put(stale)])).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Conflict {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{e}"
    );

    let e = s
        .write(&Write::new(vec![Op::Create {
            object: cm("a", "9"),
            uid: "u2".into(),
        }]))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists { .. }), "{e}");

    let key = Key::new("ConfigMap", "default", "a");
    s.write(&Write::new(vec![Op::delete(key.clone())]))
        .await
        .unwrap();
    assert_eq!(s.get(&key).await.unwrap(), None);
    let e = s
        .write(&Write::new(vec![Op::delete(key)]))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }));
}

#[tokio::test]
async fn a_write_is_all_or_nothing() {
    let (_d, s) = open().await;
    s.write(&Write::new(vec![put(cm("exists", "1"))]))
        .await
        .unwrap();
    let batch = Write::new(vec![
        put(cm("b", "1")),
        put(cm("c", "1")),
        Op::Create {
            object: cm("exists", "2"),
            uid: new_uid(),
        },
    ]);
    assert!(s.write(&batch).await.is_err());
    assert_eq!(s.revision(), 1);
    let (items, rev) = s.list("ConfigMap", Some("default")).await.unwrap();
    assert_eq!(items.len(), 1, "nothing of the failed batch is visible");
    assert_eq!(rev, 1);
}

#[tokio::test]
async fn replicated_entries_apply_in_one_transaction_and_a_refused_one_leaves_nothing() {
    let (_d, s) = open().await;
    let first = Write::new(vec![put(cm("a", "1")), put(cm("b", "1"))]);
    // Refused: its first op would succeed, its second conflicts with `a` just created.
    let refused = Write::new(vec![
        put(cm("c", "1")),
        Op::Create {
            object: cm("a", "2"),
            uid: new_uid(),
        },
    ]);
    let last = Write::new(vec![put(cm("d", "1"))]);
    let out = s
        .apply_replicated_batch(
            &[(1, vec![&first]), (2, vec![]), (3, vec![&refused, &last])],
            &[("applied", b"42".to_vec())],
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0][0].as_ref().unwrap().len(), 2);
    assert!(out[1].is_empty());
    assert!(
        matches!(out[2][0], Err(StoreError::AlreadyExists { .. })),
        "{:?}",
        out[2][0]
    );
    let d = out[2][1].as_ref().unwrap();
    assert_eq!(d[0].object["metadata"]["resourceVersion"], "3");
    assert_eq!(s.revision(), 3, "revisions stay consecutive past a refusal");
    let (items, _) = s.list("ConfigMap", Some("default")).await.unwrap();
    let names: Vec<&str> = items
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "d"]);
    let applied: Vec<u8> = sqlx::query_scalar("SELECT value FROM raft_state WHERE key = 'applied'")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(applied, b"42");
    // The same entries again (a node that pulled them, then hears them from the leader):
    // nothing changes.
    let again = s
        .apply_replicated_batch(&[(3, vec![&refused, &last])], &[])
        .await
        .unwrap();
    assert!(
        again[0]
            .iter()
            .all(|r| r.as_ref().is_ok_and(|a| a.is_empty()))
    );
    assert_eq!(s.revision(), 3);
}

#[tokio::test]
async fn two_services_never_hold_the_same_cluster_ip_or_node_port() {
    let (_d, s) = open().await;
    let svc = |name: &str, ip: &str, node_port: i64| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
               "spec": {"clusterIP": ip, "ports": [{"port": 80, "protocol": "TCP", "nodePort": node_port}]}})
    };
    s.write(&Write::new(vec![put(svc("a", "10.43.0.5", 30001))]))
        .await
        .unwrap();
    let e = s
        .write(&Write::new(vec![put(svc("b", "10.43.0.5", 30002))]))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "spec.clusterIP: 10.43.0.5 is already allocated to Service default/a"
    );
    let e = s
        .write(&Write::new(vec![put(svc("b", "10.43.0.6", 30001))]))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "spec.ports[0].nodePort: 30001 is already allocated to Service default/a"
    );
    // Within one write too.
    let e = s
        .write(&Write::new(vec![
            put(svc("c", "10.43.0.7", 30003)),
            put(svc("d", "10.43.0.7", 30004)),
        ]))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("already allocated to Service default/c"),
        "{e}"
    );
    // A Service keeps its own; a deleted one frees them.
    s.write(&Write::new(vec![put(svc("a", "10.43.0.5", 30001))]))
        .await
        .unwrap();
    s.write(&Write::new(vec![Op::delete(Key::new(
        "Service", "default", "a",
    ))]))
    .await
    .unwrap();
    s.write(&Write::new(vec![put(svc("b", "10.43.0.5", 30001))]))
        .await
        .unwrap();
}

#[tokio::test]
async fn two_nodes_never_hold_the_same_pod_cidr() {
    let (_d, s) = open().await;
    let node = |name: &str, cidr: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {"podCIDR": cidr}});
    s.write(&Write::new(vec![put(node("a", "10.42.0.0/24"))]))
        .await
        .unwrap();
    let e = s
        .write(&Write::new(vec![put(node("b", "10.42.0.0/24"))]))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "spec.podCIDR: 10.42.0.0/24 is already allocated to Node a"
    );
    assert!(s.get(&Key::new("Node", "", "b")).await.unwrap().is_none());
    s.write(&Write::new(vec![put(node("b", "10.42.1.0/24"))]))
        .await
        .unwrap();
    // A node rewriting its own (labels, status, a restart) is not refused.
    let mut relabelled = node("a", "10.42.0.0/24");
    relabelled["metadata"]["labels"] = json!({"disk": "ssd"});
    s.write(&Write::new(vec![put(relabelled)])).await.unwrap();
    // A deleted node frees its CIDR.
    s.write(&Write::new(vec![Op::delete(Key::new("Node", "", "a"))]))
        .await
        .unwrap();
    s.write(&Write::new(vec![put(node("c", "10.42.0.0/24"))]))
        .await
        .unwrap();
}

#[tokio::test]
async fn status_is_separate_from_spec() {
    let (_d, s) = open().await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
    s.write(&Write::new(vec![put(pod.clone())])).await.unwrap();
    let mut st = pod.clone();
    st["status"] = json!({"phase": "Running"});
    let r = s
        .write(&Write::new(vec![Op::Status { object: st }]))
        .await
        .unwrap();
    assert_eq!(r[0].object["status"]["phase"], "Running");
    assert_eq!(
        r[0].object["metadata"]["generation"], 1,
        "status does not bump generation"
    );
    // A user apply keeps status.
    let mut changed = pod.clone();
    changed["spec"]["containers"][0]["image"] = json!("y");
    changed["status"] = json!({"phase": "Failed"});
    let r = s.write(&Write::new(vec![put(changed)])).await.unwrap();
    assert_eq!(r[0].object["status"]["phase"], "Running");
    assert_eq!(r[0].object["metadata"]["generation"], 2);
}

#[tokio::test]
async fn secrets_are_encrypted_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.db");
    let s = Store::open(&path, SecretCipher::from_key(&[3; 32]).unwrap())
        .await
        .unwrap();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "default"}, "data": {"password": "c3VwZXJzZWNyZXQtdmFsdWU="}});
    s.write(&Write::new(vec![put(secret)])).await.unwrap();
    let got = s
        .get(&Key::new("Secret", "default", "db"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got["data"]["password"], "c3VwZXJzZWNyZXQtdmFsdWU=");
    s.compact(0).await.unwrap();
    s.close().await;
    let raw = std::fs::read(&path).unwrap();
    let needle = b"c3VwZXJzZWNyZXQtdmFsdWU=";
    assert!(
        !raw.windows(needle.len()).any(|w| w == needle),
        "secret data must not be in the file"
    );
    // With another key the secret cannot be read.
    let s = Store::open(&path, SecretCipher::from_key(&[4; 32]).unwrap())
        .await
        .unwrap();
    assert!(matches!(
        s.get(&Key::new("Secret", "default", "db")).await,
        Err(StoreError::Decrypt { .. })
    ));
}

#[tokio::test]
async fn compaction_bounds_the_log_and_says_so() {
    let (_d, s) = open().await;
    for i in 0..20 {
        s.write(&Write::new(vec![put(cm("a", &i.to_string()))]))
            .await
            .unwrap();
    }
    assert_eq!(s.compact(5).await.unwrap(), 15);
    let e = s.changes_since(3, None, 100).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Compacted {
                requested: 3,
                oldest: 16
            }
        ),
        "{e}"
    );
    let ch = s.changes_since(15, None, 100).await.unwrap();
    assert_eq!(
        ch.iter().map(|c| c.revision).collect::<Vec<_>>(),
        (16..=20).collect::<Vec<_>>()
    );
    // The current state is untouched by compaction.
    let got = s
        .get(&Key::new("ConfigMap", "default", "a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got["data"]["k"], "19");
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flotilla.db");
    let key = SecretCipher::from_key(&[1; 32]).unwrap();
    let s = Store::open(&path, key.clone()).await.unwrap();
    s.write(&Write::new(vec![put(cm("a", "1")), put(cm("b", "1"))]))
        .await
        .unwrap();
    s.close().await;
    let s = Store::open(&path, key).await.unwrap();
    assert_eq!(s.revision(), 2);
    let r = s.write(&Write::new(vec![put(cm("c", "1"))])).await.unwrap();
    assert_eq!(r[0].object["metadata"]["resourceVersion"], "3");
}

#[derive(Debug, Clone)]
enum Action {
    Apply(u8, u8),
    Delete(u8),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (0u8..5, 0u8..3).prop_map(|(n, v)| Action::Apply(n, v)),
        (0u8..5).prop_map(Action::Delete)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any sequence of applies and deletes keeps revisions strictly increasing, and a watch
    /// from any revision replays exactly the changes after it, ending in the current state.
    #[test]
    fn revisions_increase_and_watches_replay(actions in proptest::collection::vec(action(), 1..30), from in 0i64..30) {
        rt().block_on(async {
            let (_d, s) = open().await;
            let mut history: Vec<(i64, String, bool)> = Vec::new(); // (revision, name, deleted)
            let mut last = 0;
            for a in &actions {
                let op = match a {
                    Action::Apply(n, v) => put(cm(&format!("o{n}"), &v.to_string())),
                    Action::Delete(n) => Op::delete(Key::new("ConfigMap", "default", &format!("o{n}"))),
                };
                let Ok(r) = s.write(&Write::new(vec![op])).await else { continue };
                if r[0].outcome == Outcome::Unchanged { continue; }
                let rev: i64 = r[0].object["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
                prop_assert!(rev > last, "revision {rev} after {last}");
                last = rev;
                history.push((rev, r[0].object["metadata"]["name"].as_str().unwrap().to_string(), r[0].outcome == Outcome::Deleted));
            }
            let from = from.min(last);
            let changes = s.changes_since(from, Some("ConfigMap"), 1000).await.unwrap();
            let want: Vec<_> = history.iter().filter(|h| h.0 > from).cloned().collect();
            let got: Vec<_> = changes.iter().map(|c| (c.revision, c.object["metadata"]["name"].as_str().unwrap().to_string(), c.event == EventType::Deleted)).collect();
            prop_assert_eq!(got, want);
            // Replaying the whole log gives the listed state.
            let mut state = std::collections::BTreeMap::new();
            for c in s.changes_since(0, None, 1000).await.unwrap() {
                let name = c.object["metadata"]["name"].as_str().unwrap().to_string();
                if c.event == EventType::Deleted { state.remove(&name); } else { state.insert(name, c.object); }
            }
            let (list, _) = s.list("ConfigMap", None).await.unwrap();
            prop_assert_eq!(state.into_values().collect::<Vec<_>>(), list);
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn followers_hear_only_the_kinds_and_namespaces_they_follow() {
    let (_d, s) = open().await;
    let pods = s.changes(&["Pod"]);
    let mut cms = s.changes(&["ConfigMap/default"]);
    let other_ns = s.changes(&["ConfigMap/web"]);
    s.write(&Write::new(vec![put(cm("a", "1"))])).await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), cms.changed())
        .await
        .expect("the ConfigMap follower wakes")
        .unwrap();
    assert_eq!(cms.revision(), s.revision());
    assert_eq!(pods.revision(), 0, "a ConfigMap is not a Pod");
    assert_eq!(other_ns.revision(), 0, "nor in namespace web");
    // A delete is heard too, and a refused write is not.
    s.write(&Write::new(vec![Op::delete(Key::new(
        "ConfigMap",
        "default",
        "a",
    ))]))
    .await
    .unwrap();
    assert_eq!(s.revision_of(&["ConfigMap"]), s.revision());
    let before = s.revision_of(&["ConfigMap"]);
    assert!(
        s.write(&Write::new(vec![Op::delete(Key::new(
            "ConfigMap",
            "default",
            "a"
        ))]))
        .await
        .is_err()
    );
    assert_eq!(s.revision_of(&["ConfigMap"]), before);
    assert_eq!(pods.revision(), 0);
}

#[tokio::test]
async fn a_dry_run_checks_like_a_write_and_keeps_nothing() {
    let (_d, s) = open().await;
    s.write(&Write::new(vec![put(cm("a", "1"))])).await.unwrap();
    let rev = s.revision();
    let changes = s.changes_since(0, None, 100).await.unwrap().len();

    // Create, update and delete, planned: the answers a write would give.
    let r = s
        .dry_run(&Write::new(vec![put(cm("b", "1"))]))
        .await
        .unwrap();
    assert_eq!(r[0].outcome, Outcome::Created);
    let r = s
        .dry_run(&Write::new(vec![put(cm("a", "2"))]))
        .await
        .unwrap();
    assert_eq!(r[0].outcome, Outcome::Configured);
    assert_eq!(r[0].object["data"]["k"], "2");
    let r = s
        .dry_run(&Write::new(vec![Op::delete(Key::new(
            "ConfigMap",
            "default",
            "a",
        ))]))
        .await
        .unwrap();
    assert_eq!(r[0].outcome, Outcome::Deleted);
    // Refusals too: an existing name, a stale resourceVersion.
    let e = s
        .dry_run(&Write::new(vec![Op::Create {
            object: cm("a", "1"),
            uid: new_uid(),
        }]))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::AlreadyExists { .. }), "{e}");
    let mut stale = cm("a", "3");
    stale["metadata"]["resourceVersion"] = json!("99");
    let e = s.dry_run(&Write::new(vec![put(stale)])).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");

    // Nothing was kept: same revision, same objects, no log row.
    assert_eq!(s.revision(), rev);
    let a = s
        .get(&Key::new("ConfigMap", "default", "a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a["data"]["k"], "1");
    assert!(
        s.get(&Key::new("ConfigMap", "default", "b"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.changes_since(0, None, 100).await.unwrap().len(), changes);
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_the_last_one_goes() {
    let (_d, s) = open().await;
    let mut held = cm("held", "1");
    held["metadata"]["finalizers"] = json!(["example.com/keep"]);
    s.write(&Write::new(vec![put(held)])).await.unwrap();
    let key = Key::new("ConfigMap", "default", "held");

    // The delete only marks it.
    let r = s
        .write(&Write::new(vec![Op::delete(key.clone())]))
        .await
        .unwrap();
    assert_eq!(r[0].outcome, Outcome::Configured);
    let o = s.get(&key).await.unwrap().unwrap();
    assert!(o["metadata"]["deletionTimestamp"].is_string(), "{o}");
    assert_eq!(o["metadata"]["deletionGracePeriodSeconds"], 0);
    // A second delete changes nothing; a write cannot clear the mark.
    let r = s
        .write(&Write::new(vec![Op::delete(key.clone())]))
        .await
        .unwrap();
    assert_eq!(r[0].outcome, Outcome::Unchanged);
    let mut edit = o.clone();
    edit["data"]["k"] = json!("2");
    edit["metadata"]["deletionTimestamp"] = Value::Null;
    s.write(&Write::new(vec![put(edit)])).await.unwrap();
    let o = s.get(&key).await.unwrap().unwrap();
    assert!(o["metadata"]["deletionTimestamp"].is_string());
    // Removing the last finalizer deletes it.
    let mut done = o.clone();
    done["metadata"]["finalizers"] = json!([]);
    let r = s.write(&Write::new(vec![put(done)])).await.unwrap();
    assert_eq!(r[0].outcome, Outcome::Deleted);
    assert!(s.get(&key).await.unwrap().is_none());

    // Foreground: marked with foregroundDeletion, though it had no finalizer.
    s.write(&Write::new(vec![put(cm("fg", "1"))]))
        .await
        .unwrap();
    let key = Key::new("ConfigMap", "default", "fg");
    s.write(&Write::new(vec![Op::Delete {
        key: key.clone(),
        resource_version: None,
        uid: None,
        grace_seconds: None,
        foreground: true,
    }]))
    .await
    .unwrap();
    let o = s.get(&key).await.unwrap().unwrap();
    assert_eq!(o["metadata"]["finalizers"], json!([FOREGROUND_DELETION]));
    // A user's manifest cannot mark an object deleted.
    let mut sneaky = cm("new", "1");
    sneaky["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let r = s.write(&Write::new(vec![put(sneaky)])).await.unwrap();
    assert!(r[0].object["metadata"].get("deletionTimestamp").is_none());
}

#[tokio::test]
async fn delete_preconditions_and_grace() {
    let (_d, s) = open().await;
    let r = s.write(&Write::new(vec![put(cm("a", "1"))])).await.unwrap();
    let uid = r[0].object["metadata"]["uid"].as_str().unwrap().to_string();
    let key = Key::new("ConfigMap", "default", "a");
    let with = |rv: Option<i64>, u: Option<&str>| Op::Delete {
        key: key.clone(),
        resource_version: rv,
        uid: u.map(String::from),
        grace_seconds: Some(5),
        foreground: false,
    };
    let e = s
        .write(&Write::new(vec![with(Some(7), None)]))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    let e = s
        .write(&Write::new(vec![with(None, Some("other"))]))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Precondition failed: UID in precondition: other"),
        "{e}"
    );
    assert!(s.get(&key).await.unwrap().is_some());
    s.write(&Write::new(vec![with(Some(1), Some(&uid))]))
        .await
        .unwrap();
    // The log keeps how it was deleted.
    let gone = s.changes_since(1, None, 10).await.unwrap().pop().unwrap();
    assert_eq!(gone.event, EventType::Deleted);
    assert_eq!(gone.object["metadata"]["deletionGracePeriodSeconds"], 5);
    // A pod's is remembered for its node; a ConfigMap has none to give.
    assert_eq!(s.deletion_grace(&uid), None);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": {}});
    let r = s.write(&Write::new(vec![put(pod)])).await.unwrap();
    let pod_uid = r[0].object["metadata"]["uid"].as_str().unwrap().to_string();
    s.write(&Write::new(vec![Op::Delete {
        key: Key::new("Pod", "default", "p"),
        resource_version: None,
        uid: None,
        grace_seconds: Some(1),
        foreground: false,
    }]))
    .await
    .unwrap();
    assert_eq!(s.deletion_grace(&pod_uid), Some(1));
}

#[tokio::test]
async fn managers_are_recorded_and_merged_but_not_for_a_no_op() {
    let (_d, s) = open().await;
    let entry = |m: &str, t: &str| json!({"manager": m, "operation": "Update", "apiVersion": "v1", "time": t});
    let mut a = cm("a", "1");
    a["metadata"]["managedFields"] = json!([entry("kubectl-create", "t1")]);
    s.write(&Write::new(vec![put(a)])).await.unwrap();
    let mut b = cm("a", "2");
    b["metadata"]["managedFields"] = json!([entry("kubectl-edit", "t2")]);
    s.write(&Write::new(vec![put(b.clone())])).await.unwrap();
    let key = Key::new("ConfigMap", "default", "a");
    let o = s.get(&key).await.unwrap().unwrap();
    assert_eq!(
        o["metadata"]["managedFields"],
        json!([entry("kubectl-create", "t1"), entry("kubectl-edit", "t2")])
    );
    let rev = s.revision();
    b["metadata"]["managedFields"] = json!([entry("kubectl-edit", "t3")]);
    let r = s.write(&Write::new(vec![put(b)])).await.unwrap();
    assert_eq!(r[0].outcome, Outcome::Unchanged);
    assert_eq!(s.revision(), rev);
}
