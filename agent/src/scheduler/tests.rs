use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::manifest::lifecycle::{Object, decode};

/// The scheduler on JSON objects (decoded as the runner decodes stored ones).
fn place(pods: &[Value], nodes: &[Value]) -> Vec<Decision> {
    super::place(&typed(pods), &typed(nodes))
}

fn pod_request(p: &Value) -> Request {
    super::pod_request(&decode(p.clone()).unwrap())
}

fn typed<T: Object>(v: &[Value]) -> Vec<T> {
    v.iter().map(|o| decode(o.clone()).unwrap()).collect()
}

fn node(name: &str, cpu: &str, mem: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
           "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn pod(name: &str, cpu: &str, mem: &str, owner: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "d", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": owner, "controller": true}]},
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

fn zoned(name: &str, zone: &str) -> Value {
    let mut n = node(name, "4", "4Gi");
    n["metadata"]["labels"][affinity::ZONE] = json!(zone);
    n
}

#[test]
fn spreads_one_owner_across_zones_before_nodes() {
    // Two nodes in zone a, one in zone b: four pods go two to each zone.
    let nodes = vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")];
    let pods: Vec<Value> = (0..4)
        .map(|i| pod(&format!("p{i}"), "100m", "64Mi", "rs1"))
        .collect();
    let got = binds(&place(&pods, &nodes));
    let a = got.get("a1").copied().unwrap_or(0) + got.get("a2").copied().unwrap_or(0);
    assert_eq!((a, got.get("b1").copied()), (2, Some(2)), "{got:?}");
}

#[test]
fn required_node_affinity_filters_and_preferred_affinity_wins_ties() {
    let mut ssd = node("ssd", "4", "4Gi");
    ssd["metadata"]["labels"]["disk"] = json!("ssd");
    let mut p = pod("p", "100m", "1Mi", "x");
    p["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]}}});
    let d = place(&[p.clone()], &[node("a", "8", "8Gi"), ssd.clone()]);
    assert_eq!(binds(&d).keys().collect::<Vec<_>>(), vec!["ssd"]);
    let d = place(&[p], &[node("a", "8", "8Gi")]);
    assert!(
        matches!(&d[0], Decision::Unschedulable { message, .. }
            if message == "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."),
        "{d:?}"
    );
    // Preferred: goes to the ssd node although "a" is emptier and first by name.
    let mut q = pod("q", "100m", "1Mi", "x");
    q["spec"]["affinity"] = json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}});
    let busy = pod("busy", "2", "1Gi", "y");
    let mut busy = busy;
    busy["spec"]["nodeName"] = json!("ssd");
    let d = place(&[busy, q], &[node("a", "4", "4Gi"), ssd]);
    assert_eq!(binds(&d).keys().collect::<Vec<_>>(), vec!["ssd"]);
}

#[test]
fn hard_topology_spread_leaves_a_pod_pending_rather_than_skewed() {
    let spread = json!([{"maxSkew": 1, "topologyKey": affinity::ZONE, "whenUnsatisfiable": "DoNotSchedule",
                         "labelSelector": {"matchLabels": {"app": "db"}}}]);
    let db = |name: &str, node: Option<&str>| {
        let mut p = pod(name, "100m", "64Mi", "rs");
        p["metadata"]["labels"] = json!({"app": "db"});
        p["spec"]["topologySpreadConstraints"] = spread.clone();
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    };
    // Zone b's only node is cordoned: b counts 0, a already has 1, so a second pod in a would
    // make the skew 2.
    let mut b1 = zoned("b1", "b");
    b1["spec"] = json!({"unschedulable": true});
    let nodes = vec![zoned("a1", "a"), b1, node("nozone", "4", "4Gi")];
    let d = place(&[db("d0", Some("a1")), db("d1", None)], &nodes);
    assert_eq!(
        d,
        vec![Decision::Unschedulable {
            pod: Key::new("Pod", "d", "d1"),
            message: "0/3 nodes are available: 1 node(s) didn't match pod topology spread constraints, 1 node(s) didn't match pod topology spread constraints (missing required label), 1 node(s) were unschedulable.".into()
        }]
    );
    // With zone b open, pods alternate between the zones.
    let nodes = vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")];
    let pods: Vec<Value> = (0..4).map(|i| db(&format!("d{i}"), None)).collect();
    let got = binds(&place(&pods, &nodes));
    assert_eq!(got.get("b1"), Some(&2), "{got:?}");
}

proptest! {
    /// One owner's pods on identical nodes with room to spare: no node holds more than one pod
    /// above any other.
    #[test]
    fn spreads_evenly_when_it_can(nodes in 1usize..12, pods in 0usize..80, placed in proptest::collection::vec(0usize..12, 0..10)) {
        let nodes: Vec<Value> = (0..nodes).map(|i| node(&format!("n{i:02}"), "64", "64Gi")).collect();
        let mut all: Vec<Value> = placed.iter().enumerate().filter(|(_, n)| **n < nodes.len()).map(|(i, n)| {
            let mut p = pod(&format!("old{i}"), "100m", "64Mi", "o");
            p["spec"]["nodeName"] = json!(format!("n{n:02}"));
            p
        }).collect();
        let before = all.len();
        all.extend((0..pods).map(|i| pod(&format!("p{i}"), "100m", "64Mi", "o")));
        let mut count: BTreeMap<String, usize> = nodes.iter().map(|n| (n["metadata"]["name"].as_str().unwrap().to_string(), 0)).collect();
        for p in &all[..before] {
            *count.get_mut(p["spec"]["nodeName"].as_str().unwrap()).unwrap() += 1;
        }
        let decisions = place(&all, &nodes);
        prop_assert_eq!(decisions.len(), pods);
        for (node, n) in binds(&decisions) {
            *count.get_mut(&node).unwrap() += n;
        }
        // Pods already placed may be skewed; the new ones only ever go to the emptiest node.
        let max_before = placed.iter().filter(|n| **n < nodes.len()).fold(BTreeMap::new(), |mut m, n| { *m.entry(*n).or_insert(0usize) += 1; m }).values().copied().max().unwrap_or(0);
        let (lo, hi) = (count.values().min().copied().unwrap(), count.values().max().copied().unwrap());
        prop_assert!(hi - lo <= 1 || hi <= max_before, "{:?}", count);
    }
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
