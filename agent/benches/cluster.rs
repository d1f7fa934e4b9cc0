//! Cluster benchmark: real release agents, each in its own network namespace on one bridge (a
//! cluster in a box), measured from inside the box's hub namespace; beside a 3-member etcd
//! cluster on the hub's loopback doing the same puts in the same run.
//!
//! `cargo bench -p flotilla --bench cluster -- [--sizes 5,20,50] [--writes N] [--writers N]`
//! (or `scripts/bench/cluster.sh`). Figures: join-to-Ready, quorum write throughput and
//! latency with 3 voters (and etcd's), leader failover (kill -9 to the next successful write),
//! and the time for one change to reach every node. Prints figures; asserts nothing about time.
//! Everything it makes (namespaces, processes, data dirs) goes when it ends, even on a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Parser;
use common::{Box, enter_netns};
use flotilla::cli::client::Client;
use reqwest::Method;
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// Cluster sizes for the convergence figure (the first size also gives the other figures).
    #[arg(long, default_value = "5,20,50", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Writes timed for throughput and latency.
    #[arg(long, default_value_t = 20_000)]
    writes: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// etcd binary for the peer figures ("none" to skip).
    #[arg(long, default_value = "etcd")]
    etcd: String,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn config_map(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": {"k": "v"}})
}

async fn create(c: &Client, name: &str) -> anyhow::Result<()> {
    c.json(
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        &[],
        Some(&config_map(name)),
    )
    .await
    .map(|_| ())
}

async fn has(c: &Client, name: &str) -> bool {
    c.get(
        &format!("/api/v1/namespaces/default/configmaps/{name}"),
        &[],
    )
    .await
    .is_ok()
}

/// Nodes `c` lists (0 when it does not answer within 5 s: a node still catching up).
async fn node_count(c: &Client) -> usize {
    tokio::time::timeout(Duration::from_secs(5), c.get("/api/v1/nodes", &[]))
        .await
        .ok()
        .and_then(Result::ok)
        .and_then(|v| v["items"].as_array().map(|a| a.len()))
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

struct Throughput {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `n` puts by `writers` concurrent writers through `put` (numbered 0..n), after one untimed
/// put by each writer (numbered from n on), so that connections are open on both sides.
async fn throughput<F, Fut>(n: usize, writers: usize, put: F) -> Throughput
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let put = Arc::new(put);
    let warm: Vec<_> = (0..writers).map(|w| put(n + w)).collect();
    futures::future::join_all(warm).await;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (put, next) = (put.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return lat;
                }
                let t = Instant::now();
                put(i).await;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    Throughput {
        per_sec: n as f64 / secs,
        p50_ms: pct(&all, 0.5),
        p99_ms: pct(&all, 0.99),
    }
}

/// A 3-member etcd cluster on the hub's loopback; the puts go to member 1 (its leader or not).
async fn etcd_figures(args: &Args, dir: &Path) -> Option<(String, Throughput)> {
    let version = Command::new(&args.etcd).arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("etcd")
        .replace("etcd Version: ", "etcd ");
    let peers: Vec<String> = (1..=3)
        .map(|i| format!("e{i}=http://127.0.0.1:2380{i}"))
        .collect();
    let mut procs = Vec::new();
    for i in 1..=3 {
        let client = format!("http://127.0.0.1:2379{i}");
        let peer = format!("http://127.0.0.1:2380{i}");
        let p = Command::new(&args.etcd)
            .args(["--name", &format!("e{i}")])
            .arg("--data-dir")
            .arg(dir.join(format!("etcd{i}")))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &peers.join(",")])
            .args(["--initial-cluster-state", "new"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        procs.push(KillOnDrop(p));
    }
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let start = Instant::now();
    loop {
        let r = http
            .post("http://127.0.0.1:23791/v3/kv/put")
            .json(&json!({"key": b64("warm"), "value": b64("up")}))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            eprintln!("etcd cluster did not start; skipping the peer");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = throughput(args.writes, args.writers, move |i| {
        let http = http.clone();
        async move {
            let r = http
                .post("http://127.0.0.1:23791/v3/kv/put")
                .json(&json!({"key": b64(&format!("/registry/configmaps/default/cm-{i}")), "value": b64(&config_map(&format!("cm-{i}")).to_string())}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "etcd put: {}", r.status());
        }
    })
    .await;
    drop(procs);
    Some((version, t))
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_flotilla"));
    let mut b = Box::new(&bin, false, &[]);
    // The measuring side lives in the hub: it reaches every node, and nothing is on the host's
    // network. Done before any thread exists (setns affects only the calling thread).
    enter_netns(&b.hub());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&args, &mut b));
}

/// Starts node `n` and waits until node 0 lists it: the join-to-Ready time.
async fn join(b: &mut Box, c0: &Client, n: usize) -> Duration {
    let t = Instant::now();
    b.add();
    while node_count(c0).await < n + 1 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "node {n} did not join"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.elapsed()
}

async fn run(args: &Args, b: &mut Box) {
    // The peer first, on an idle machine, as flotilla's writes below are (the agents of the
    // convergence figures would otherwise still be running).
    let dir = tempfile::tempdir().unwrap();
    let etcd = if args.etcd == "none" {
        None
    } else {
        etcd_figures(args, dir.path()).await
    };
    let first = args.sizes.first().copied().unwrap_or(5).max(3);
    // Join-to-Ready: from starting a joiner to node 0 listing it.
    b.add();
    let c0 = b.client(0);
    while node_count(&c0).await < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut joins = Vec::new();
    // Three nodes first: the quorum writes are timed on 3 voters alone, as etcd's 3 members.
    for n in 1..3 {
        joins.push(join(b, &c0, n).await);
    }
    // Let the leader promote voters (3).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let c = Arc::new(b.client(0));
    let via_leader = throughput(args.writes, args.writers, move |i| {
        let c = c.clone();
        async move { create(&c, &format!("w-{i}")).await.unwrap() }
    })
    .await;

    // Then the rest: the leader also replicates to learners, and a learner forwards writes.
    for n in 3..first {
        joins.push(join(b, &c0, n).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let clients: Arc<Vec<Client>> = Arc::new((0..first).map(|i| b.client(i)).collect());
    let cs = clients.clone();
    let all_leader = throughput(args.writes / 2, args.writers, move |i| {
        let cs = cs.clone();
        async move { create(&cs[0], &format!("x-{i}")).await.unwrap() }
    })
    .await;
    let cs = clients.clone();
    let last = first - 1;
    let via_worker = throughput(args.writes / 2, args.writers, move |i| {
        let cs = cs.clone();
        async move { create(&cs[last], &format!("v-{i}")).await.unwrap() }
    })
    .await;

    // One change reaching every node, for each size.
    let mut converge = Vec::new();
    for &size in &args.sizes {
        while b.agents.len() < size {
            let i = b.add();
            let c = b.client(i);
            let t = Instant::now();
            while node_count(&c).await < i + 1 {
                assert!(
                    t.elapsed() < Duration::from_secs(120),
                    "node {i} did not join"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let all: Vec<Client> = (0..size).map(|i| b.client(i)).collect();
        let mut samples = Vec::new();
        for k in 0..5 {
            let name = format!("c-{size}-{k}");
            let t = Instant::now();
            create(&all[size - 1], &name).await.unwrap();
            let mut pending: Vec<&Client> = all.iter().collect();
            while !pending.is_empty() {
                let mut still = Vec::new();
                for c in pending {
                    if !has(c, &name).await {
                        still.push(c);
                    }
                }
                pending = still;
                assert!(t.elapsed() < Duration::from_secs(60), "no convergence");
            }
            samples.push(t.elapsed());
        }
        samples.sort();
        converge.push((size, samples[samples.len() / 2], samples[samples.len() - 1]));
    }

    // Failover: kill -9 the founder (the leader since the start), then write through node 1.
    b.kill9(0);
    let t = Instant::now();
    let mut k = 0;
    loop {
        k += 1;
        if create(&clients[1], &format!("after-kill-{k}"))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no write after the leader died"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failover = t.elapsed();

    println!(
        "\ncluster benchmark ({} agents at most, release build)",
        b.agents.len()
    );
    let ms = |d: &[Duration]| {
        d.iter()
            .map(|j| format!("{:.0}", j.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "join-to-Ready (start of a joiner to listed by node 0): {} ms into a new cluster",
        ms(&joins[..joins.len().min(2)])
    );
    if joins.len() > 2 {
        println!(
            "  {} ms after the writes through the leader below (a store of {} objects)",
            ms(&joins[2..]),
            args.writes
        );
    }
    let peer = etcd
        .as_ref()
        .map(|(v, _)| v.clone())
        .unwrap_or("etcd (not run)".into());
    println!(
        "{:<58} {:>22} {:>26}",
        format!("quorum writes, 3 voters, {} writers", args.writers),
        "flotilla",
        format!("{peer}, 3 members")
    );
    let e = etcd.as_ref().map(|(_, t)| t);
    let fmt =
        |x: Option<f64>, unit: &str| x.map(|v| format!("{v:.1} {unit}")).unwrap_or("-".into());
    println!(
        "{:<58} {:>22} {:>26}",
        "  throughput through the leader (3 nodes)",
        format!("{:.0} writes/s", via_leader.per_sec),
        fmt(e.map(|t| t.per_sec), "writes/s")
    );
    println!(
        "{:<58} {:>22} {:>26}",
        "  latency p50 / p99 through the leader (3 nodes)",
        format!("{:.1} / {:.1} ms", via_leader.p50_ms, via_leader.p99_ms),
        e.map(|t| format!("{:.1} / {:.1} ms", t.p50_ms, t.p99_ms))
            .unwrap_or("-".into())
    );
    println!(
        "{:<58} {:>22} {:>26}",
        format!(
            "  through the leader, {first} nodes ({} learners replicated too)",
            first - 3
        ),
        format!(
            "{:.0} writes/s, p50 {:.1} ms",
            all_leader.per_sec, all_leader.p50_ms
        ),
        "-"
    );
    println!(
        "{:<58} {:>22} {:>26}",
        format!("  through a learner, {first} nodes (forwarded to the leader)"),
        format!(
            "{:.0} writes/s, p50 {:.1} ms",
            via_worker.per_sec, via_worker.p50_ms
        ),
        "-"
    );
    for (size, med, max) in converge {
        println!(
            "one change reaching all {size} nodes: median {:.0} ms, max {:.0} ms (5 changes)",
            med.as_secs_f64() * 1000.0,
            max.as_secs_f64() * 1000.0
        );
    }
    println!(
        "leader failover, kill -9 to the next successful write (via another node): {:.2} s",
        failover.as_secs_f64()
    );
}
