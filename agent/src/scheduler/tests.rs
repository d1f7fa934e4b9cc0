use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn node(name: &str, cpu: &str, mem: &str) -> Value {
    json!({"kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
           "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn pod(name: &str, cpu: &str, mem: &str, owner: &str) -> Value {
    json!({"kind": "Pod", "metadata": {"name": name, "namespace": "d", "ownerReferences": [{"uid": owner, "controller": true}]},
           "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}})
}

fn binds(d: &[Decision]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for x in d {
        if let Decision::Bind { node, .. } = x {
            *m.entry(node.clone()).or_default() += 1;
        }
    }
    m
}

#[test]
fn spreads_one_owners_pods_evenly() {
    let nodes = vec![
        node("a", "4", "4Gi"),
        node("b", "4", "4Gi"),
        node("c", "4", "4Gi"),
    ];
    let pods: Vec<Value> = (0..6)
        .map(|i| pod(&format!("p{i}"), "100m", "64Mi", "rs1"))
        .collect();
    let got = binds(&place(&pods, &nodes));
    assert_eq!(
        got.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{got:?}"
    );
}

#[test]
fn too_big_stays_pending_with_the_reason() {
    let nodes = vec![
        node("a", "4", "1Gi"),
        node("b", "4", "1Gi"),
        node("c", "4", "1Gi"),
    ];
    let d = place(&[pod("big", "100m", "8Gi", "x")], &nodes);
    assert_eq!(
        d,
        vec![Decision::Unschedulable {
            pod: Key::new("Pod", "d", "big"),
            message: "0/3 nodes are available: 3 Insufficient memory.".into()
        }]
    );
}

#[test]
fn node_selector_cordon_and_readiness_filter() {
    let mut gpu = node("gpu", "4", "4Gi");
    gpu["metadata"]["labels"]["accel"] = json!("gpu");
    let mut cordoned = node("cordoned", "4", "4Gi");
    cordoned["metadata"]["labels"]["accel"] = json!("gpu");
    cordoned["spec"] = json!({"unschedulable": true});
    let mut p = pod("p", "100m", "1Mi", "x");
    p["spec"]["nodeSelector"] = json!({"accel": "gpu"});
    let d = place(
        &[p.clone()],
        &[node("plain", "4", "4Gi"), cordoned.clone(), gpu],
    );
    assert_eq!(
        d,
        vec![Decision::Bind {
            pod: Key::new("Pod", "d", "p"),
            node: "gpu".into()
        }]
    );
    let d = place(&[p], &[node("plain", "4", "4Gi"), cordoned]);
    let Decision::Unschedulable { message, .. } = &d[0] else {
        panic!("{d:?}")
    };
    assert_eq!(
        message,
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were unschedulable."
    );
}

#[test]
fn host_ports_conflict() {
    let mut p1 = pod("p1", "0", "0", "x");
    p1["spec"]["containers"][0]["ports"] =
        json!([{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]);
    let mut p2 = p1.clone();
    p2["metadata"]["name"] = json!("p2");
    let d = place(&[p1, p2], &[node("a", "4", "4Gi")]);
    assert!(matches!(d[1], Decision::Unschedulable { .. }), "{d:?}");
}

proptest! {
    /// Whatever the pods and nodes, no node is given more than its allocatable CPU and memory.
    #[test]
    fn never_binds_past_allocatable(
        nodes in proptest::collection::vec((1i64..8, 1i64..8), 1..6),
        pods in proptest::collection::vec((0i64..3000, 0i64..3000), 0..60),
    ) {
        let nodes: Vec<Value> = nodes.iter().enumerate().map(|(i, (c, m))| node(&format!("n{i}"), &c.to_string(), &format!("{m}Gi"))).collect();
        let pods: Vec<Value> = pods.iter().enumerate().map(|(i, (c, m))| pod(&format!("p{i}"), &format!("{c}m"), &format!("{m}Mi"), "o")).collect();
        let decisions = place(&pods, &nodes);
        prop_assert_eq!(decisions.len(), pods.len());
        let mut used: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for d in &decisions {
            if let Decision::Bind { pod, node } = d {
                let p = pods.iter().find(|p| p["metadata"]["name"] == pod.name.as_str()).unwrap();
                let r = pod_request(p);
                let e = used.entry(node.clone()).or_default();
                e.0 += r.cpu_milli;
                e.1 += r.memory;
            }
        }
        for n in &nodes {
            let name = n["metadata"]["name"].as_str().unwrap();
            let (c, m) = used.get(name).copied().unwrap_or_default();
            prop_assert!(c <= parse_milli(n["status"]["allocatable"]["cpu"].as_str().unwrap()).unwrap());
            prop_assert!(m <= parse_units(n["status"]["allocatable"]["memory"].as_str().unwrap()).unwrap());
        }
    }
}
