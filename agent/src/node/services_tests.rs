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
