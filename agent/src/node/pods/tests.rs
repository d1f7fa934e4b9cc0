//! The pod manager on the in-memory runtime ([`super::fake`]) and a real store in a temporary
//! directory: observe → plan → dispatch → status, as a user reads it back from the store.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::fake::{Call, FakeNet, FakeRuntime};
use super::{Host, PodManager, spawn_on};
use crate::store::{Key, Op, Store, Write, new_uid, now_rfc3339};

struct Bed {
    dir: tempfile::TempDir,
    store: Store,
    rt: Arc<FakeRuntime>,
    net: Arc<FakeNet>,
}

impl Bed {
    async fn new() -> Bed {
        let (dir, store) = crate::store::temp_store().await;
        let rt = Arc::new(FakeRuntime::default());
        rt.add_image("busybox");
        let net = Arc::new(FakeNet::new(rt.clone()));
        Bed {
            dir,
            store,
            rt,
            net,
        }
    }

    /// A pod manager of node `n1` on the bed's runtime and network (a new one is an agent
    /// restart: the same runtime, network and files).
    fn manager(&self) -> PodManager {
        spawn_on(
            self.store.clone(),
            Host {
                name: "n1".into(),
                data: self.dir.path().join("node"),
                host_ip: "192.0.2.1".into(),
                endpoint_drain: Duration::ZERO,
                runtime: self.rt.clone(),
                net: Some(self.net.clone()),
            },
        )
    }

    /// Creates a pod bound to `n1` with one container `app`; returns its uid.
    async fn pod(&self, name: &str, container: Value) -> String {
        let uid = new_uid();
        let mut c = json!({"name": "app", "image": "busybox"});
        c.as_object_mut()
            .unwrap()
            .extend(container.as_object().unwrap().clone());
        let object = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [c]},
        });
        self.store
            .write(&Write {
                now: now_rfc3339(),
                ops: vec![Op::Create {
                    object,
                    uid: uid.clone(),
                }],
            })
            .await
            .unwrap();
        uid
    }

    async fn status(&self, name: &str) -> Value {
        let key = Key {
            kind: "Pod".into(),
            namespace: "default".into(),
            name: name.into(),
        };
        let pod = self.store.get(&key).await.unwrap().expect("the pod");
        pod["status"].clone()
    }

    /// Waits (up to 10 s) until the pod's status satisfies `ok`; returns it.
    async fn wait_status(&self, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status(name).await;
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what}: pod {name} is at {s:#}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 10 s) until the runtime's calls satisfy `ok`.
    async fn wait_calls(&self, what: &str, ok: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let calls = self.rt.calls();
            if ok(&calls) {
                return calls;
            }
            assert!(Instant::now() < deadline, "{what}: calls are {calls:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn app(s: &Value) -> &Value {
    &s["containerStatuses"][0]
}

#[tokio::test]
async fn a_crash_loop_restarts_once_at_once_then_backs_off() {
    let bed = Bed::new().await;
    bed.rt.exit_at_once("app", 1);
    let uid = bed.pod("crashy", json!({})).await;
    let m = bed.manager();

    let s = bed
        .wait_status("crashy", "in CrashLoopBackOff", |s| {
            app(s)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        })
        .await;
    assert_eq!(
        app(&s)["state"]["waiting"]["message"],
        "back-off 10s restarting failed container=app pod"
    );
    assert_eq!(app(&s)["restartCount"], 1);
    assert_eq!(app(&s)["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(s["phase"], "Running");
    // The first restart came at once; the next waits out its 10 s back-off.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        bed.rt.starts(),
        [format!("{uid}_app_0"), format!("{uid}_app_1")]
    );
    m.shutdown().await;
}

#[tokio::test]
async fn a_failing_liveness_probe_stops_and_restarts_the_container() {
    let bed = Bed::new().await;
    let uid = bed
        .pod(
            "sick",
            json!({"livenessProbe": {
                "exec": {"command": ["cat", "/tmp/healthy"]},
                "periodSeconds": 1, "failureThreshold": 1,
            }}),
        )
        .await;
    // The first instance fails its probe; the one that replaces it passes.
    let (first, second) = (format!("{uid}_app_0"), format!("{uid}_app_1"));
    bed.rt.fail_probes(&first);
    let m = bed.manager();

    let calls = bed
        .wait_calls("restarted", |c| c.contains(&Call::Start(second.clone())))
        .await;
    let at = |c: Call| calls.iter().position(|x| *x == c).unwrap();
    assert!(at(Call::Stop(first.clone())) < at(Call::Start(second.clone())));
    let s = bed
        .wait_status("sick", "one restart, then healthy", |s| {
            app(s)["restartCount"] == 1 && app(s)["ready"] == true
        })
        .await;
    assert_eq!(app(&s)["containerID"], format!("flotilla://{second}"));
    assert_eq!(
        app(&s)["lastState"]["terminated"]["containerID"],
        format!("flotilla://{first}")
    );
    // Events are written in the background, after the status.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (events, _) = bed.store.list("Event", Some("default")).await.unwrap();
        if events.iter().any(|e| {
            e["reason"] == "Killing"
                && e["involvedObject"]["name"] == "sick"
                && e["message"].as_str().unwrap().contains(&first)
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "no Killing event in {events:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m.shutdown().await;
}

#[tokio::test]
async fn an_orphan_is_stopped_and_removed_with_its_sandbox_address_and_files() {
    let bed = Bed::new().await;
    // What an earlier agent left of a pod the store no longer has.
    let orphan = "0f0f0f0f-dead-4bad-8bad-0f0f0f0f0f0f";
    let id = format!("{orphan}_app_0");
    bed.rt.add_running(&id, flotilla_runtime::shim::now_ms());
    bed.rt.add_sandbox(orphan);
    bed.net.hold(orphan, Ipv4Addr::new(10, 42, 0, 99));
    let files = bed.dir.path().join("node/pods").join(orphan);
    std::fs::create_dir_all(files.join("logs")).unwrap();
    // And a pod the store has, which stays.
    let uid = bed.pod("kept", json!({})).await;
    let m = bed.manager();

    let calls = bed
        .wait_calls("orphan removed", |c| {
            c.contains(&Call::RemoveSandbox(orphan.into()))
        })
        .await;
    let at = |c: Call| calls.iter().position(|x| *x == c).unwrap();
    assert!(at(Call::Stop(id.clone())) < at(Call::Delete(id.clone())));
    assert!(at(Call::Delete(id.clone())) < at(Call::RemoveSandbox(orphan.into())));
    assert!(calls.contains(&Call::Detach(orphan.into())));
    assert!(!files.exists(), "the orphan's files are left");
    assert_eq!(bed.rt.ids(), [format!("{uid}_app_0")]);
    let s = bed
        .wait_status("kept", "running", |s| s["phase"] == "Running")
        .await;
    assert_eq!(app(&s)["ready"], true);
    assert!(
        !calls.contains(&Call::Stop(format!("{uid}_app_0"))),
        "the kept pod was stopped: {calls:?}"
    );
    m.shutdown().await;
}

#[tokio::test]
async fn a_restarted_agent_adopts_what_runs() {
    let bed = Bed::new().await;
    let uid = bed.pod("web", json!({})).await;
    let first = bed.manager();
    let before = bed
        .wait_status("web", "running", |s| app(s)["ready"] == true)
        .await;
    first.shutdown().await;
    assert_eq!(before["podIP"], "10.42.0.2");

    // A new agent on the same runtime, network and files: it plans from what it finds.
    let second = bed.manager();
    let uid2 = bed.pod("later", json!({})).await;
    bed.wait_status("later", "running", |s| app(s)["ready"] == true)
        .await;
    let after = bed.status("web").await;
    assert_eq!(after, before, "the adopted pod's status moved");
    assert_eq!(
        app(&after)["containerID"],
        format!("flotilla://{uid}_app_0")
    );
    assert_eq!(
        bed.rt.starts(),
        [format!("{uid}_app_0"), format!("{uid2}_app_0")]
    );
    let calls = bed.rt.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::CreateSandbox(_)))
            .count(),
        2,
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Stop(_))),
        "something was stopped: {calls:?}"
    );
    second.shutdown().await;
}
