//! Control-plane benchmark: a real release agent process, driven as a user drives it, beside
//! etcd (Debian's etcd-server) measured in the same run on the same machine.
//!
//! `cargo bench -p flotilla --bench control_plane -- [--objects N] [--pods N] [--samples N]`
//! (or `scripts/bench/control-plane.sh`). Prints figures; asserts nothing about time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Parser;
use flotilla::cli::client::Client;
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    /// Objects in the one-file apply.
    #[arg(long, default_value_t = 1000)]
    objects: usize,
    /// Pods stored for the list and memory figures.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Single-object writes timed for p50/p99.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// etcd binary for the peer figures ("none" to skip).
    #[arg(long, default_value = "etcd")]
    etcd: String,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// The resident size over a window, sampled every 100 ms: (lowest, highest). The agent's
/// controllers re-read the store every few seconds, so one reading lands at a random point
/// of that cycle; the window shows both the settled size and the peak of a pass.
async fn rss_window(pid: u32, window: Duration) -> (f64, f64) {
    let end = Instant::now() + window;
    let (mut lo, mut hi) = (f64::MAX, 0f64);
    while Instant::now() < end {
        let r = rss_mib(pid);
        (lo, hi) = (lo.min(r), hi.max(r));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (lo, hi)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pod(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("pod-{i:05}"), "namespace": "bench", "labels": {"app": format!("app-{}", i % 50), "tier": "web"}},
           "spec": {"nodeName": "elsewhere", "containers": [{"name": "web", "image": "flotilla.local/busybox:1", "command": ["httpd", "-f", "-p", "8080"],
                     "ports": [{"containerPort": 8080, "name": "http"}], "resources": {"limits": {"memory": "32Mi", "cpu": "100m"}}}]}})
}

/// The agent's kubeconfig (its `admin.yaml` is one), if kubectl is installed.
fn kubectl_config(admin: &Path) -> Option<PathBuf> {
    let found = Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found.then(|| admin.to_path_buf())
}

/// One watch event fanned out: `n` watchers of a namespace's ConfigMaps, one ConfigMap
/// written, and how long after the write was sent each watcher had the event (median, max),
/// beside the write's own answer.
async fn fan_out(client: &Client, n: usize) -> (f64, f64, f64) {
    use futures::StreamExt;
    let ns = json!({"items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "watch"}}]});
    client
        .json(Method::POST, "/apis/flotilla.io/v1/apply", &[], Some(&ns))
        .await
        .unwrap();
    let path = "/api/v1/namespaces/watch/configmaps";
    let list = client.get(path, &[]).await.unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let resp = client
            .send(
                Method::GET,
                path,
                &[("watch", "true".into()), ("resourceVersion", rv.clone())],
                None,
            )
            .await
            .unwrap();
        streams.push(resp.bytes_stream());
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for mut s in streams {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(Ok(chunk)) = s.next().await {
                seen.extend_from_slice(&chunk);
                if seen.windows(6).any(|w| w == b"fanned") {
                    let _ = tx.send(Instant::now());
                    return;
                }
            }
        });
    }
    drop(tx);
    // Every watcher is connected before the write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cm = json!({"items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fanned", "namespace": "watch"}}]});
    let sent = Instant::now();
    client
        .json(Method::POST, "/apis/flotilla.io/v1/apply", &[], Some(&cm))
        .await
        .unwrap();
    let answered = sent.elapsed();
    let mut lat = Vec::with_capacity(n);
    while let Ok(Some(t)) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        lat.push(t.saturating_duration_since(sent));
        if lat.len() == n {
            break;
        }
    }
    assert_eq!(lat.len(), n, "every watcher gets the event");
    lat.sort();
    (
        answered.as_secs_f64() * 1000.0,
        percentile(&lat, 0.5),
        lat.last().unwrap().as_secs_f64() * 1000.0,
    )
}

/// Runs a client process to the end and times it; it must succeed.
fn timed(mut cmd: Command) -> Duration {
    let t = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .output()
        .expect("running a client");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Duration {
    let mut c = Command::new("kubectl");
    c.args(args).env("KUBECONFIG", kubeconfig);
    timed(c)
}

fn cli(bin: &Path, cfg: &Path, args: &[&str]) -> Duration {
    let mut c = Command::new(bin);
    c.args(args).env("FLOTILLA_CONFIG", cfg);
    timed(c)
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

#[derive(Default)]
struct Figures {
    apply_file_s: Option<f64>,
    write_p50_ms: f64,
    write_p99_ms: f64,
    load_s: f64,
    list_s: f64,
    list_json_s: Option<f64>,
    /// `kubectl get pods` (Table), when kubectl is installed.
    kubectl_list_s: Option<f64>,
    /// `kubectl apply -f` of the same number of objects, when kubectl is installed.
    kubectl_apply_s: Option<f64>,
    /// One event to 100 watchers: the write's answer, then the median and slowest watcher,
    /// ms after the write was sent.
    fan_out_ms: Option<(f64, f64, f64)>,
    rss_idle: f64,
    rss_loaded: f64,
    rss_loaded_peak: f64,
    db_mib: Option<f64>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_flotilla"));
    let dir = tempfile::Builder::new()
        .prefix("flotilla-bench-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("agent");
    let agent = Proc(
        Command::new(&bin)
            .args([
                "agent",
                "--init",
                // It runs in the host's namespace: no pod network there (no bridge, routes or
                // nftables table on the host).
                "--pod-network",
                "none",
                "--node-name",
                "bench",
                "--cluster-addr",
                "127.0.0.1:0",
                "--api-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the agent"),
    );
    let cfg = data.join("admin.yaml");
    let start = Instant::now();
    while !(cfg.exists()
        && Command::new(&bin)
            .args(["get", "nodes"])
            .env("FLOTILLA_CONFIG", &cfg)
            .output()
            .is_ok_and(|o| o.status.success()))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "agent did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready_after = start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut f = Figures {
        rss_idle: rss_mib(agent.0.id()),
        ..Default::default()
    };
    let client = Client::from_config_file(&cfg).unwrap();

    // 1. One file of N objects, through the CLI, end to end.
    let mut yaml = String::new();
    for i in 0..args.objects {
        yaml.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:05}\n  labels: {{app: bench}}\ndata:\n  key: value-{i}\n"));
    }
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, yaml).unwrap();
    f.apply_file_s = Some(cli(&bin, &cfg, &["apply", "-f", file.to_str().unwrap()]).as_secs_f64());

    // 2. Single-object writes through the apply endpoint, each a changed object.
    let mut lat = Vec::with_capacity(args.samples);
    for i in 0..args.samples {
        let body = json!({"items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "latency"}, "data": {"i": i.to_string()}}]});
        let t = Instant::now();
        client
            .json(Method::POST, "/apis/flotilla.io/v1/apply", &[], Some(&body))
            .await
            .unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    f.write_p50_ms = percentile(&lat, 0.5);
    f.write_p99_ms = percentile(&lat, 0.99);

    // 3. Many pods, then list them as `get pods` does.
    let ns = json!({"items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}]});
    client
        .json(Method::POST, "/apis/flotilla.io/v1/apply", &[], Some(&ns))
        .await
        .unwrap();
    let t = Instant::now();
    for chunk in (0..args.pods).collect::<Vec<_>>().chunks(1000) {
        let items: Vec<Value> = chunk.iter().map(|i| pod(*i)).collect();
        client
            .json(
                Method::POST,
                "/apis/flotilla.io/v1/apply",
                &[],
                Some(&json!({"items": items})),
            )
            .await
            .unwrap();
    }
    f.load_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    f.list_s = median(
        (0..3)
            .map(|_| cli(&bin, &cfg, &["get", "pods", "-n", "bench"]))
            .collect(),
    );
    f.list_json_s = Some(median(
        (0..3)
            .map(|_| cli(&bin, &cfg, &["get", "pods", "-n", "bench", "-o", "json"]))
            .collect(),
    ));
    // The same list as a k3s user types it: the real kubectl, printing the server's Table.
    f.kubectl_list_s = kubectl_config(&cfg).map(|kc| {
        median(
            (0..3)
                .map(|_| kubectl(&kc, &["get", "pods", "-n", "bench"]))
                .collect(),
        )
    });
    (f.rss_loaded, f.rss_loaded_peak) = rss_window(agent.0.id(), Duration::from_secs(10)).await;
    // After the memory window, so that its figures hold the same objects as before: the same
    // number of new objects through the real kubectl, and one event to 100 watchers.
    // kubectl (client-side apply: a read and a
    // create per object).
    if let Some(kc) = kubectl_config(&cfg) {
        let mut yaml = String::new();
        for i in 0..args.objects {
            yaml.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kc-{i:05}\n  labels: {{app: bench}}\ndata:\n  key: value-{i}\n"));
        }
        let file = dir.path().join("kubectl-objects.yaml");
        std::fs::write(&file, yaml).unwrap();
        f.kubectl_apply_s =
            Some(kubectl(&kc, &["apply", "-f", file.to_str().unwrap()]).as_secs_f64());
    }
    f.fan_out_ms = Some(fan_out(&client, 100).await);
    let db: u64 = ["flotilla.db", "flotilla.db-wal"]
        .iter()
        .filter_map(|n| std::fs::metadata(data.join(n)).ok())
        .map(|m| m.len())
        .sum();
    f.db_mib = Some(db as f64 / 1048576.0);
    drop(agent);

    let etcd = if args.etcd == "none" {
        None
    } else {
        bench_etcd(&args, dir.path()).await
    };

    let total = args.objects + args.pods + args.samples.min(1);
    println!();
    println!(
        "Control plane benchmark: release build, {} CPUs, one agent on 127.0.0.1",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "settings: --objects {} --pods {} --samples {}; agent ready {} ms after start",
        args.objects,
        args.pods,
        args.samples,
        ready_after.as_millis()
    );
    println!();
    let peer_name = etcd
        .as_ref()
        .map(|(v, _)| v.clone())
        .unwrap_or_else(|| "etcd (not run)".into());
    println!("{:<48} {:>18} {:>18}", "metric", "flotilla", peer_name);
    let e = etcd.map(|(_, f)| f);
    let fmt = |v: Option<f64>, unit: &str, prec: usize| {
        v.map(|v| format!("{v:.prec$} {unit}"))
            .unwrap_or_else(|| "-".into())
    };
    let row = |name: &str, a: String, b: String| println!("{name:<48} {a:>18} {b:>18}");
    row(
        &format!(
            "apply {} objects in one file (CLI, end to end)",
            args.objects
        ),
        fmt(f.apply_file_s, "s", 3),
        "-".into(),
    );
    row(
        &format!("kubectl apply -f of {} new objects", args.objects),
        fmt(f.kubectl_apply_s, "s", 3),
        "-".into(),
    );
    row(
        "one write watched by 100: the write answered",
        fmt(f.fan_out_ms.map(|x| x.0), "ms", 2),
        "-".into(),
    );
    row(
        "  the event at the median watcher",
        fmt(f.fan_out_ms.map(|x| x.1), "ms", 2),
        "-".into(),
    );
    row(
        "  the event at the slowest watcher",
        fmt(f.fan_out_ms.map(|x| x.2), "ms", 2),
        "-".into(),
    );
    row(
        "single-object write p50 (API; etcd: kv put)",
        fmt(Some(f.write_p50_ms), "ms", 2),
        fmt(e.as_ref().map(|e| e.write_p50_ms), "ms", 2),
    );
    row(
        "single-object write p99",
        fmt(Some(f.write_p99_ms), "ms", 2),
        fmt(e.as_ref().map(|e| e.write_p99_ms), "ms", 2),
    );
    row(
        &format!("store {} pods (flotilla: batches of 1,000)", args.pods),
        fmt(Some(f.load_s), "s", 2),
        fmt(e.as_ref().map(|e| e.load_s), "s", 2),
    );
    row(
        &format!("list {} pods (get pods table; etcd: range)", args.pods),
        fmt(Some(f.list_s), "s", 3),
        fmt(e.as_ref().map(|e| e.list_s), "s", 3),
    );
    row(
        "list as JSON (get pods -o json)",
        fmt(f.list_json_s, "s", 3),
        "-".into(),
    );
    row(
        "list with kubectl get pods (server's Table)",
        fmt(f.kubectl_list_s, "s", 3),
        "-".into(),
    );
    row(
        "resident memory, idle",
        fmt(Some(f.rss_idle), "MiB", 1),
        fmt(e.as_ref().map(|e| e.rss_idle), "MiB", 1),
    );
    row(
        &format!("resident memory, holding {total}+ objects (10 s low)"),
        fmt(Some(f.rss_loaded), "MiB", 1),
        fmt(e.as_ref().map(|e| e.rss_loaded), "MiB", 1),
    );
    row(
        "  the same 10 s, highest",
        fmt(Some(f.rss_loaded_peak), "MiB", 1),
        fmt(e.as_ref().map(|e| e.rss_loaded_peak), "MiB", 1),
    );
    row(
        "database on disk (db + WAL)",
        fmt(f.db_mib, "MiB", 1),
        fmt(e.as_ref().and_then(|e| e.db_mib), "MiB", 1),
    );
    println!();
    println!("k3s, for scale (published): server 1.2-1.6 GB, agent about 270 MB resident.");
}

/// The same write, load and list pattern against etcd's v3 JSON gateway.
async fn bench_etcd(args: &Args, dir: &Path) -> Option<(String, Figures)> {
    let version = Command::new(&args.etcd).arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("etcd")
        .replace("etcd Version: ", "etcd ");
    let data = dir.join("etcd");
    let (client_url, peer_url) = ("http://127.0.0.1:23790", "http://127.0.0.1:23800");
    let etcd = Proc(
        Command::new(&args.etcd)
            .args([
                "--data-dir",
                data.to_str().unwrap(),
                "--listen-client-urls",
                client_url,
                "--advertise-client-urls",
                client_url,
            ])
            .args([
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
                "--initial-cluster",
                &format!("default={peer_url}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?,
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let start = Instant::now();
    while http
        .get(format!("{client_url}/health"))
        .send()
        .await
        .is_err()
    {
        if start.elapsed() > Duration::from_secs(20) {
            eprintln!("etcd did not start; skipping the peer");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let put = |k: String, v: String| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("{client_url}/v3/kv/put"))
                .json(&json!({"key": b64(&k), "value": b64(&v)}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "etcd put: {}", r.status());
        }
    };
    let mut f = Figures {
        rss_idle: rss_mib(etcd.0.id()),
        ..Default::default()
    };
    let mut lat = Vec::with_capacity(args.samples);
    for i in 0..args.samples {
        let v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "latency"}, "data": {"i": i.to_string()}}).to_string();
        let t = Instant::now();
        put("/registry/configmaps/default/latency".into(), v).await;
        lat.push(t.elapsed());
    }
    lat.sort();
    f.write_p50_ms = percentile(&lat, 0.5);
    f.write_p99_ms = percentile(&lat, 0.99);
    // etcd limits a transaction to 128 ops, so load with 16 writers in parallel.
    let t = Instant::now();
    let mut i = 0;
    while i < args.pods {
        let batch: Vec<_> = (i..(i + 16).min(args.pods))
            .map(|j| {
                put(
                    format!("/registry/pods/bench/pod-{j:05}"),
                    pod(j).to_string(),
                )
            })
            .collect();
        futures::future::join_all(batch).await;
        i += 16;
    }
    f.load_s = t.elapsed().as_secs_f64();
    let mut lists = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = http
            .post(format!("{client_url}/v3/kv/range"))
            .json(&json!({"key": b64("/registry/pods/bench/"), "range_end": b64("/registry/pods/bench0")}))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["count"].as_str().and_then(|c| c.parse::<usize>().ok()),
            Some(args.pods)
        );
        lists.push(t.elapsed());
    }
    f.list_s = median(lists);
    (f.rss_loaded, f.rss_loaded_peak) = rss_window(etcd.0.id(), Duration::from_secs(10)).await;
    let db = std::fs::read_dir(data.join("member/snap"))
        .ok()
        .into_iter()
        .flatten()
        .chain(
            std::fs::read_dir(data.join("member/wal"))
                .ok()
                .into_iter()
                .flatten(),
        );
    f.db_mib = Some(
        db.filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum::<u64>() as f64
            / 1048576.0,
    );
    drop(etcd);
    Some((version, f))
}
