//! Workload benchmark (issue 8's figures):
//! 1. the pure scheduler placing 5,000 pods onto 100 simulated nodes (pods bound per second),
//!    and one pass over a full cluster that places 100 more; one controller pass (the
//!    ReplicaSet planner, as the runner calls it) over 100 ReplicaSets and 10,000 pods;
//! 2. apply-to-Running of a 30-replica Deployment across a 3-node cluster in a box (real
//!    agents, real containers from the test image);
//! 3. a node's death (kill -9 of its agent and its link down) to its pods Running elsewhere;
//! 4. CronJob scheduling jitter on a one-node box: two CronJobs every minute for
//!    `--cron-minutes` minutes, each scheduled time against when its Job appeared and when its
//!    pod ran (the API polled every 50 ms), beside BusyBox's crond running two crontab lines
//!    for the same minutes (each line's command writes the time it started).
//!
//! `cargo bench -p flotilla --bench workloads -- [--pods 5000] [--nodes 100] [--replicas 30]
//! [--grace 10] [--cron-minutes 5] [--no-box] [--cron-only]` (or `scripts/bench/workloads.sh`). Prints
//! figures; asserts nothing about time. Everything it makes goes when it ends, even on a panic.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use common::{Box, enter_netns};
use flotilla::controller::OwnerIndex;
use flotilla::scheduler::{Decision, place};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    /// Pods for the scheduler figure.
    #[arg(long, default_value_t = 5000)]
    pods: usize,
    /// Simulated nodes for the scheduler figure.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Replicas of the Deployment applied to the box.
    #[arg(long, default_value_t = 30)]
    replicas: usize,
    /// The agents' --node-grace (seconds) for the node-death figure.
    #[arg(long, default_value_t = 10)]
    grace: u64,
    /// Minutes of the CronJob jitter figure (0: none).
    #[arg(long, default_value_t = 5)]
    cron_minutes: u64,
    /// Only the scheduler figure.
    #[arg(long)]
    no_box: bool,
    /// Only the CronJob jitter figure.
    #[arg(long)]
    cron_only: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn sim_node(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{i:03}"), "labels": {
            "kubernetes.io/hostname": format!("node-{i:03}"),
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
           "spec": {},
           "status": {"allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                      "conditions": [{"type": "Ready", "status": "True"}]}})
}

/// Pods of 50 Deployments (100 each), each asking 100m CPU and 128Mi.
fn sim_pod(i: usize) -> Value {
    let owner = i % 50;
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("app-{owner}-{i}"), "namespace": "default",
            "labels": {"app": format!("app-{owner}")},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("app-{owner}"), "uid": format!("uid-{owner}"), "controller": true}]},
           "spec": {"containers": [{"name": "c", "image": "x",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}})
}

/// The typed objects of JSON ones, as the runner decodes the stored bytes.
fn typed<T: serde::de::DeserializeOwned>(v: &[Value]) -> Vec<T> {
    v.iter()
        .map(|o| serde_json::from_value(o.clone()).expect("a valid object"))
        .collect()
}

/// One pass of the ReplicaSet controller over `sets` ReplicaSets of 100 Running, Ready pods
/// each, as the runner makes it: the pods indexed by owner, each plan given its own; converged,
/// so the plans are empty and the figure is the cost of looking. Decoding the stored bytes is
/// timed apart.
fn controller_figures(sets: usize) {
    let rss: Vec<Value> = (0..sets)
        .map(|o| {
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("app-{o}"), "namespace": "default", "uid": format!("uid-{o}")},
                "spec": {"replicas": 100, "selector": {"matchLabels": {"app": format!("app-{o}")}},
                         "template": {"metadata": {"labels": {"app": format!("app-{o}")}},
                                      "spec": {"containers": [{"name": "c", "image": "x"}]}}},
                "status": {"replicas": 100, "readyReplicas": 100, "availableReplicas": 100,
                           "fullyLabeledReplicas": 100, "observedGeneration": 1}})
        })
        .collect();
    let pods: Vec<Value> = (0..sets * 100)
        .map(|i| {
            let o = i % sets;
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("app-{o}-{i}"), "namespace": "default", "uid": format!("p-{i}"),
                    "labels": {"app": format!("app-{o}")},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("app-{o}"),
                                         "uid": format!("uid-{o}"), "controller": true}]},
                "spec": {"nodeName": "node-000", "containers": [{"name": "c", "image": "x"}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
                           "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
        })
        .collect();
    let bytes: Vec<Vec<u8>> = pods
        .iter()
        .map(|p| serde_json::to_vec(p).unwrap())
        .collect();
    let mut decode_times = Vec::new();
    let mut typed_pods: Vec<Pod> = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        typed_pods = bytes
            .iter()
            .map(|b| serde_json::from_slice(b).expect("a valid pod"))
            .collect();
        decode_times.push(t.elapsed());
    }
    let rss: Vec<ReplicaSet> = typed(&rss);
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let mut times = Vec::new();
    let mut actions = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let index = OwnerIndex::new(&typed_pods);
        actions = rss
            .iter()
            .map(|rs| {
                flotilla::controller::replicaset::plan(rs, index.of(&rs.metadata), &now).len()
            })
            .sum::<usize>();
        times.push(t.elapsed());
    }
    times.sort();
    decode_times.sort();
    println!(
        "\ncontroller pass (ReplicaSet planner on typed objects with an owner index, release build): {sets} ReplicaSets over {} pods: {:.1} ms (median of 5), {actions} actions; decoding the {} stored pods: {:.1} ms",
        pods.len(),
        times[2].as_secs_f64() * 1000.0,
        pods.len(),
        decode_times[2].as_secs_f64() * 1000.0
    );
}

fn scheduler_figures(a: &Args) {
    let nodes: Vec<Node> = typed(&(0..a.nodes).map(sim_node).collect::<Vec<_>>());
    let pods: Vec<Pod> = typed(&(0..a.pods).map(sim_pod).collect::<Vec<_>>());
    let mut times = Vec::new();
    let mut last = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        last = place(&pods, &nodes);
        times.push(t.elapsed());
    }
    times.sort();
    let bound: Vec<(&str, &str)> = last
        .iter()
        .filter_map(|d| match d {
            Decision::Bind { pod, node } => Some((pod.name.as_str(), node.as_str())),
            Decision::Unschedulable { .. } => None,
        })
        .collect();
    let mut per_node = std::collections::BTreeMap::new();
    for (_, n) in &bound {
        *per_node.entry(*n).or_insert(0usize) += 1;
    }
    let (lo, hi) = (
        per_node.values().min().copied().unwrap_or(0),
        per_node.values().max().copied().unwrap_or(0),
    );
    let median = times[times.len() / 2];
    println!(
        "\nscheduler (pure function, one pass, release build): {} pods onto {} nodes",
        a.pods, a.nodes
    );
    println!(
        "  bound {} of {} in {:.1} ms (median of 5): {:.0} pods/s; {lo}..{hi} pods per node",
        bound.len(),
        a.pods,
        median.as_secs_f64() * 1000.0,
        bound.len() as f64 / median.as_secs_f64()
    );
    // A full cluster: all but 100 pods already bound, the pass places the rest.
    let mut full = pods.clone();
    for (p, d) in full.iter_mut().zip(&last) {
        if let Decision::Bind { node, .. } = d {
            p.spec.as_mut().unwrap().node_name = Some(node.clone());
        }
    }
    for p in full.iter_mut().rev().take(100) {
        p.spec.as_mut().unwrap().node_name = None;
    }
    let t = Instant::now();
    let d = place(&full, &nodes);
    println!(
        "  one pass over {} bound pods placing 100 more: {:.1} ms ({} bound)",
        a.pods - 100,
        t.elapsed().as_secs_f64() * 1000.0,
        d.iter()
            .filter(|d| matches!(d, Decision::Bind { .. }))
            .count()
    );
    println!(
        "  peer: Nomad's C2M scheduled about 1,500 containers/s across a fleet (published; no \
         scheduler of a rival runs offline here)"
    );
}

fn deployment(replicas: usize) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: bench}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: bench}}}}
  template:
    metadata: {{labels: {{app: bench}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {{name: c, image: flotilla.local/busybox:1, command: [sleep, "3600"],
         resources: {{requests: {{cpu: 10m, memory: 8Mi}}}}}}
"#
    )
}

fn pods(b: &Box, i: usize) -> Vec<Value> {
    let out = b.cli(i, &["get", "pods", "-l", "app=bench", "-o", "json"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
}

fn running(ps: &[Value], n: usize, not_on: Option<&str>) -> bool {
    ps.len() == n
        && ps.iter().all(|p| {
            p["status"]["phase"] == "Running" && not_on.is_none_or(|x| p["spec"]["nodeName"] != x)
        })
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(secs), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    t.elapsed()
}

fn box_figures(a: &Args, image: &std::path::Path) {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_flotilla"));
    let grace = a.grace.to_string();
    let mut b = Box::new(&bin, true, &["--node-grace", &grace]);
    enter_netns(&b.hub());
    for _ in 0..3 {
        let i = b.add();
        wait("a node joins", 60, || {
            let out = b.cli(0, &["get", "nodes", "-o", "name"]);
            String::from_utf8_lossy(&out.stdout).lines().count() == i + 1
        });
    }
    for i in 0..3 {
        let out = b.cli(i, &["image", "import", image.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
    }
    let f = b.dirs[0].path().join("bench.yaml");
    std::fs::write(&f, deployment(a.replicas)).unwrap();
    let t = Instant::now();
    let out = b.cli(1, &["apply", "-f", f.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    wait("all replicas Running", 300, || {
        running(&pods(&b, 0), a.replicas, None)
    });
    let apply = t.elapsed();
    let ps = pods(&b, 0);
    let on = |n: &str| ps.iter().filter(|p| p["spec"]["nodeName"] == n).count();
    let spread = format!("{}/{}/{}", on("node-0"), on("node-1"), on("node-2"));

    // node-2 dies: its agent is killed and its link goes down (its containers run on, cut off).
    b.kill9(2);
    b.link(2, false);
    let t = Instant::now();
    wait("the dead node's pods Running elsewhere", 300, || {
        running(&pods(&b, 0), a.replicas, Some("node-2"))
    });
    let replaced = t.elapsed();
    println!("\nworkloads on a 3-node cluster in a box (release agents, real containers, 2 cores)");
    println!(
        "  apply of a {}-replica Deployment to all Running: {:.2} s (pods per node {spread})",
        a.replicas,
        apply.as_secs_f64()
    );
    println!(
        "  node death (kill -9 and link down) to its {} pods Running elsewhere: {:.1} s \
         (grace {} s + {:.1} s; target grace + 10 s; Kubernetes' default grace is 300 s)",
        on("node-2"),
        replaced.as_secs_f64(),
        a.grace,
        replaced.as_secs_f64() - a.grace as f64
    );
}

fn main() {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    if args.cron_only {
        let dir = tempfile::tempdir().unwrap();
        let image = flotilla_runtime::testing::test_image(dir.path());
        cron_figures(args.cron_minutes.max(1), &image);
        return;
    }
    scheduler_figures(&args);
    controller_figures(100);
    if !args.no_box {
        let dir = tempfile::tempdir().unwrap();
        let image = flotilla_runtime::testing::test_image(dir.path());
        box_figures(&args, &image);
        if args.cron_minutes > 0 {
            cron_figures(args.cron_minutes, &image);
        }
    }
}

/// Seconds since the epoch, to the microsecond.
fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The median, 90th percentile and largest of some delays, in ms.
fn spread(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "none seen".into();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize] * 1000.0;
    format!(
        "median {:>6.0} ms   p90 {:>6.0} ms   max {:>6.0} ms   (n = {})",
        at(0.5),
        at(0.9),
        at(1.0),
        v.len()
    )
}

/// Child processes killed and a directory removed when dropped (BusyBox crond, its tabs).
struct Crond {
    child: std::process::Child,
    /// Removed once crond is gone.
    _dir: tempfile::TempDir,
}

impl Drop for Crond {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cron_figures(minutes: u64, image: &std::path::Path) {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_flotilla"));
    let mut b = Box::new(&bin, true, &[]);
    enter_netns(&b.hub());
    b.add();
    let out = b.cli(0, &["image", "import", image.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let mut yaml = String::new();
    for n in ["tick-a", "tick-b"] {
        yaml.push_str(&format!(
            "---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: {n}}}\nspec:\n  \
             schedule: '* * * * *'\n  timeZone: Etc/UTC\n  successfulJobsHistoryLimit: 10\n  \
             jobTemplate:\n    spec:\n      template:\n        spec:\n          \
             restartPolicy: Never\n          terminationGracePeriodSeconds: 0\n          \
             containers: [{{name: c, image: flotilla.local/busybox:1, command: ['true']}}]\n"
        ));
    }
    let f = b.dirs[0].path().join("cron.yaml");
    std::fs::write(&f, yaml).unwrap();
    // The peer: BusyBox's crond with two lines every minute, each writing when it ran.
    let tabs = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let fired = out_dir.path().join("fired");
    std::fs::write(
        tabs.path().join("root"),
        format!(
            "* * * * * date +%s.%N >> {0}\n* * * * * date +%s.%N >> {0}\n",
            fired.display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new("busybox")
        .args(["crond", "-f", "-l", "9", "-c"])
        .arg(tabs.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("busybox crond (busybox is in scripts/install-deps.sh)");
    let crond = Crond { child, _dir: tabs };
    let out = b.cli(0, &["apply", "-f", f.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let start = epoch_now();
    let end = ((start / 60.0).floor() + 1.0 + minutes as f64) * 60.0 + 5.0;
    let client = b.client(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Scheduled time -> when its Job was first seen, when its pod was first seen Running.
    let mut made: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    let mut ran: std::collections::BTreeMap<String, f64> = Default::default();
    while epoch_now() < end {
        let now = epoch_now();
        if let Ok(jobs) = rt.block_on(client.get("/apis/batch/v1/namespaces/default/jobs", &[])) {
            for j in jobs["items"].as_array().into_iter().flatten() {
                let name = j["metadata"]["name"].as_str().unwrap_or("").to_string();
                let at =
                    j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
                        .as_str()
                        .and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok());
                if let Some(at) = at {
                    made.entry(name).or_insert((at.as_second() as f64, now));
                }
            }
        }
        if let Ok(pods) = rt.block_on(client.get("/api/v1/namespaces/default/pods", &[])) {
            for p in pods["items"].as_array().into_iter().flatten() {
                let phase = p["status"]["phase"].as_str().unwrap_or("");
                if matches!(phase, "Running" | "Succeeded") {
                    let job = p["metadata"]["labels"]["batch.kubernetes.io/job-name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    ran.entry(job).or_insert(now);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = (start / 60.0).floor() * 60.0 + 60.0;
    let mut created: Vec<f64> = made
        .values()
        .filter(|(at, _)| *at >= first)
        .map(|(at, seen)| seen - at)
        .collect();
    let mut running: Vec<f64> = made
        .iter()
        .filter(|(_, (at, _))| *at >= first)
        .filter_map(|(name, (at, _))| ran.get(name).map(|r| r - at))
        .collect();
    let mut peer: Vec<f64> = std::fs::read_to_string(&fired)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .filter(|t| *t >= first && *t < end)
        .map(|t| t - (t / 60.0).floor() * 60.0)
        .collect();
    drop(crond);
    println!(
        "\nCronJob jitter over {minutes} minutes, two every minute (one-node box, release agent, \
         API polled every 50 ms)"
    );
    println!(
        "  Flotilla Job created after its scheduled time:   {}",
        spread(&mut created)
    );
    println!(
        "  Flotilla Job's pod Running after it:             {}",
        spread(&mut running)
    );
    println!(
        "  BusyBox crond command started after it:          {}",
        spread(&mut peer)
    );
}
