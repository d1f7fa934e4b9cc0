use serde_json::{Value, json};

use super::*;

/// The pure functions on JSON objects, decoded as the loop decodes the stored ones.
fn typed<T: serde::de::DeserializeOwned>(v: &[Value]) -> Vec<T> {
    v.iter()
        .map(|o| serde_json::from_value(o.clone()).unwrap())
        .collect()
}

fn table(s: &[Value], p: &[Value]) -> Vec<Service> {
    super::table(&typed(s), &typed(p))
}

fn service_env(s: &[Value]) -> Vec<(String, String)> {
    super::service_env(&typed(s))
}

fn pod(name: &str, ip: &str, ready: bool, labels: Value) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "c", "ports": [
            {"name": "http", "containerPort": 8080},
            {"name": "dns", "containerPort": 5353, "protocol": "UDP"}
        ]}]},
        "status": {"phase": "Running", "podIP": ip, "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}
        ]}
    })
}

fn svc(spec: Value) -> Value {
    json!({"metadata": {"name": "web-front", "namespace": "default"}, "spec": spec})
}

#[test]
fn endpoints_are_the_ready_pods_the_selector_matches_with_target_ports_resolved() {
    let pods = vec![
        pod("a", "10.42.0.2", true, json!({"app": "web"})),
        pod("b", "10.42.0.3", false, json!({"app": "web"})),
        pod("c", "10.42.0.4", true, json!({"app": "db"})),
        pod("d", "", true, json!({"app": "web"})),
    ];
    let mut other_ns = pod("e", "10.42.0.5", true, json!({"app": "web"}));
    other_ns["metadata"]["namespace"] = json!("prod");
    let mut deleting = pod("f", "10.42.0.6", true, json!({"app": "web"}));
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-23T00:00:00Z");
    let pods: Vec<Value> = pods.into_iter().chain([other_ns, deleting]).collect();
    let s = svc(json!({
        "clusterIP": "10.43.0.5", "type": "NodePort", "selector": {"app": "web"},
        "ports": [
            {"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
            {"port": 9000},
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"},
            {"name": "missing", "port": 81, "targetPort": "nope"}
        ]
    }));
    let t = table(&[s], &pods);
    assert_eq!(t.len(), 1);
    let ports = &t[0].ports;
    let ep = |port| {
        vec![Endpoint {
            ip: "10.42.0.2".parse().unwrap(),
            port,
        }]
    };
    assert_eq!(ports[0].endpoints, ep(8080), "named targetPort");
    assert_eq!(ports[0].node_port, Some(30080));
    assert_eq!(ports[1].name, "9000");
    assert_eq!(ports[1].endpoints, ep(9000), "targetPort defaults to port");
    assert_eq!(ports[2].protocol, Protocol::Udp);
    assert_eq!(ports[2].endpoints, ep(5353));
    assert!(
        ports[3].endpoints.is_empty(),
        "no container port by that name"
    );
    assert_eq!(t[0].affinity_timeout, None);
}

#[test]
fn headless_and_selectorless_services_and_affinity() {
    let pods = vec![pod("a", "10.42.0.2", true, json!({"app": "web"}))];
    let headless =
        svc(json!({"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]}));
    let bare = svc(json!({"clusterIP": "10.43.0.6", "ports": [{"port": 80}]}));
    let sticky = svc(json!({
        "clusterIP": "10.43.0.7", "selector": {"app": "web"}, "ports": [{"port": 80}],
        "sessionAffinity": "ClientIP"
    }));
    let t = table(&[headless, bare, sticky], &pods);
    assert_eq!(t.len(), 2);
    assert!(t[0].ports[0].endpoints.is_empty());
    assert_eq!(t[1].affinity_timeout, Some(10_800));
    assert_eq!(t[1].ports[0].node_port, None);
}

#[test]
fn service_env_names_follow_kubernetes() {
    let s = svc(json!({"clusterIP": "10.43.0.5", "ports": [
        {"name": "http", "port": 80}, {"name": "dns-udp", "port": 53, "protocol": "UDP"}
    ]}));
    let env: BTreeMap<String, String> = service_env(&[s]).into_iter().collect();
    assert_eq!(env["WEB_FRONT_SERVICE_HOST"], "10.43.0.5");
    assert_eq!(env["WEB_FRONT_SERVICE_PORT"], "80");
    assert_eq!(env["WEB_FRONT_SERVICE_PORT_HTTP"], "80");
    assert_eq!(env["WEB_FRONT_SERVICE_PORT_DNS_UDP"], "53");
    assert_eq!(env["WEB_FRONT_PORT"], "tcp://10.43.0.5:80");
    assert_eq!(env["WEB_FRONT_PORT_53_UDP"], "udp://10.43.0.5:53");
    assert_eq!(env["WEB_FRONT_PORT_53_UDP_PROTO"], "udp");
    assert_eq!(env["WEB_FRONT_PORT_80_TCP_ADDR"], "10.43.0.5");
    assert_eq!(env["WEB_FRONT_PORT_80_TCP_PORT"], "80");
    let headless = svc(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
    assert!(service_env(&[headless]).is_empty());
}

/// The tables a [`Proxy`] was given; it fails the syncs it is told to, and reports its table
/// gone once when told to (a `nft flush ruleset`).
#[derive(Clone, Default)]
struct Recorder {
    synced: Arc<std::sync::Mutex<Vec<Vec<Service>>>>,
    fail: Arc<std::sync::atomic::AtomicU32>,
    gone: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy for Recorder {
    fn sync(&mut self, services: &[Service]) -> Result<SyncReport, NetError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.fail.load(SeqCst) > 0 {
            self.fail.fetch_sub(1, SeqCst);
            return Err(NetError::Nft {
                message: "refused".into(),
            });
        }
        self.synced.lock().unwrap().push(services.to_vec());
        Ok(SyncReport {
            full: false,
            commands: 1,
        })
    }
    fn intact(&mut self) -> bool {
        !self.gone.swap(false, std::sync::atomic::Ordering::SeqCst)
    }
}

impl Recorder {
    fn syncs(&self) -> usize {
        self.synced.lock().unwrap().len()
    }
    /// Waits (up to 10 s) until the last table synced satisfies `ok`.
    async fn wait(&self, what: &str, ok: impl Fn(&[Service]) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let last = self.synced.lock().unwrap().last().cloned();
            if last.as_deref().is_some_and(&ok) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: last table {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn endpoints(t: &[Service]) -> Vec<String> {
    t.iter()
        .flat_map(|s| &s.ports)
        .flat_map(|p| &p.endpoints)
        .map(|e| format!("{}:{}", e.ip, e.port))
        .collect()
}

#[tokio::test]
async fn the_loop_follows_the_store_retries_a_failed_sync_and_rebuilds_a_flushed_table() {
    use crate::store::{Key, Op, Write, new_uid, now_rfc3339};
    let (_dir, store) = crate::store::temp_store().await;
    let write = |op: Op| {
        let store = store.clone();
        async move {
            store
                .write(&Write {
                    now: now_rfc3339(),
                    ops: vec![op],
                })
                .await
                .unwrap()
        }
    };
    let mut service = svc(json!({
        "clusterIP": "10.43.0.5", "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]
    }));
    service["apiVersion"] = json!("v1");
    service["kind"] = json!("Service");
    write(Op::Create {
        object: service,
        uid: new_uid(),
    })
    .await;
    let mut a = pod("a", "10.42.0.2", true, json!({"app": "web"}));
    a["apiVersion"] = json!("v1");
    a["kind"] = json!("Pod");
    write(Op::Create {
        object: a.clone(),
        uid: new_uid(),
    })
    .await;
    write(Op::Status { object: a }).await;

    let proxy = Recorder::default();
    // The first sync is refused: the loop tries again a second later.
    proxy.fail.store(1, std::sync::atomic::Ordering::SeqCst);
    let (zones, zones_rx) = watch::channel(Arc::new(Zone::default()));
    let task = spawn_with(
        store.clone(),
        "n1".into(),
        Box::new(proxy.clone()),
        zones,
        Duration::from_millis(200),
    );
    proxy
        .wait("the ready pod serves", |t| {
            endpoints(t) == ["10.42.0.2:8080"]
        })
        .await;
    assert_eq!(proxy.fail.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(
        zones_rx.borrow().a["web-front.default.svc.cluster.local"],
        [std::net::Ipv4Addr::new(10, 43, 0, 5)]
    );

    // The pod goes: its endpoint goes with it.
    write(Op::delete(Key {
        kind: "Pod".into(),
        namespace: "default".into(),
        name: "a".into(),
    }))
    .await;
    proxy
        .wait("no endpoints", |t| t.len() == 1 && endpoints(t).is_empty())
        .await;

    // Someone flushes the ruleset: the loop finds the table gone and syncs it again.
    let before = proxy.syncs();
    proxy.gone.store(true, std::sync::atomic::Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.syncs() == before {
        assert!(std::time::Instant::now() < deadline, "not rebuilt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy
        .wait("the same table again", |t| {
            t.len() == 1 && t[0].name == "web-front"
        })
        .await;
    task.abort();
}
