//! Node figures (the node issue): apply-to-Running for 1, 10 and 50 pods on one node with the
//! image present, and the agent's CPU and memory at steady state with 50 pods probed every
//! second; beside `runc run --detach` of as many containers in the same run (podman, the
//! natural peer, cannot start containers on these hosts: see docs/BENCHMARKS.md).
//!
//! Then the cost of observability (the same steady state with metrics sampling off) and the
//! autoscaler's reaction: from a pod that starts burning CPU to the second replica its
//! HorizontalPodAutoscaler adds Running, at the agent's defaults (samples every 15 s, the
//! autoscaler every 15 s, as metrics-server's and kube-controller-manager's).
//!
//! `cargo bench -p flotilla --bench pods [-- --sizes 1,10,50 --steady 50 --seconds 30]`, as
//! root (real containers). `scripts/bench/pods.sh` installs runc first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
const IMAGE: &str = "flotilla.local/busybox:1";

struct Agent {
    dir: tempfile::TempDir,
    child: Child,
    /// The agent runs in a network namespace of its own, where its pod network lives.
    netns: String,
}

impl Agent {
    fn start(extra: &[&str]) -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-bench-")
            .tempdir()
            .unwrap();
        let netns = format!("flt-bench-{}", std::process::id());
        let made = Command::new("ip").args(["netns", "add", &netns]).status();
        assert!(made.is_ok_and(|s| s.success()), "ip netns add {netns}");
        let _ = Command::new("ip")
            .args(["-n", &netns, "link", "set", "lo", "up"])
            .status();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .arg(BIN)
            .args([
                "agent",
                "--init",
                "--node-name",
                "bench",
                "--api-addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("starting the agent");
        let a = Agent { dir, child, netns };
        let t = Instant::now();
        while !(a.config().exists() && a.cli(&["get", "nodes"]).is_some()) {
            assert!(t.elapsed() < Duration::from_secs(30), "agent not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        a
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("admin.yaml")
    }

    fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(BIN)
            .args(args)
            .env("FLOTILLA_CONFIG", self.config())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn pods(&self) -> Vec<Value> {
        self.cli(&["get", "pods", "-o", "json"])
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
    }

    fn containers(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("runtime/containers"))
            .map(|r| r.count())
            .unwrap_or(0)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        flotilla::node::pods::remove_all(self.dir.path());
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

fn deployment(replicas: usize, probes: bool) -> String {
    let probes = if probes {
        "        readinessProbe:\n          httpGet: {path: /, port: 8080}\n          periodSeconds: 1\n        livenessProbe:\n          tcpSocket: {port: 8080}\n          periodSeconds: 1\n"
    } else {
        ""
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: bench}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: bench}}}}\n  template:\n    metadata: {{labels: {{app: bench}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: httpd\n        image: {IMAGE}\n        command: [sh, -c, \"mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n{probes}"
    )
}

/// Seconds from `apply` until `n` pods are Running (and Ready when `ready`).
fn apply_to_running(a: &Agent, n: usize, probes: bool) -> f64 {
    let f = a.write("bench.yaml", &deployment(n, probes));
    let t = Instant::now();
    a.cli(&["apply", "-f", &f]).expect("apply");
    loop {
        let pods = a.pods();
        let up = pods
            .iter()
            .filter(|p| {
                p["status"]["phase"] == "Running"
                    && (!probes
                        || p["status"]["conditions"].as_array().is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        }))
            })
            .count();
        if up >= n {
            return t.elapsed().as_secs_f64();
        }
        assert!(t.elapsed() < Duration::from_secs(300), "pods never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn delete_all(a: &Agent) {
    a.cli(&["delete", "deployment", "bench"]);
    a.cli(&["delete", "hpa", "bench"]);
    let t = Instant::now();
    while a.containers() > 0 && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// A field of a `/proc/PID/` file in kB, as MiB.
fn proc_mib(pid: u32, file: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn rss_mib(pid: u32) -> f64 {
    proc_mib(pid, "status", "VmRSS:")
}

/// The pids of the shims of the node at `dir`.
fn shims(dir: &Path) -> Vec<u32> {
    let needle = format!("--root\0{}", dir.join("runtime").display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

/// The peer: `runc run --detach` of `n` containers (sleep) from the same image, one after the
/// other, each with its own cgroup and network namespace: what starting pods costs with no
/// orchestration at all. Returns the seconds until all run, or `None` without runc.
fn runc_start(dir: &Path, layers: &[PathBuf], n: usize) -> Option<f64> {
    use flotilla_runtime::spec::{ContainerSpec, oci_spec};
    Command::new("runc").arg("--version").output().ok()?;
    let base = dir.join("runc-peer");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).ok()?;
    let rootfs = flotilla_runtime::rootfs::mount_overlay(layers, &base, false).ok()?;
    let state = base.join("state");
    let ids: Vec<String> = (0..n).map(|i| format!("bench-runc-{i}")).collect();
    let mut bundles = Vec::new();
    for id in &ids {
        let b = base.join(id);
        std::fs::create_dir_all(&b).ok()?;
        let mut spec = ContainerSpec::new(id, &["sleep", "600"]);
        spec.cgroup_path = format!("/flotilla-bench/{id}");
        std::fs::write(
            b.join("config.json"),
            serde_json::to_vec(&oci_spec(&spec, &rootfs)).ok()?,
        )
        .ok()?;
        bundles.push(b);
    }
    let runc = |args: &[&str], extra: Option<&Path>| {
        let mut c = Command::new("runc");
        c.arg("--root").arg(&state).args(args);
        if let Some(e) = extra {
            c.arg(e);
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let t = Instant::now();
    let mut ok = true;
    for (id, b) in ids.iter().zip(&bundles) {
        ok &= runc(&["run", "--detach", "--bundle"], Some(b))
            .arg(id)
            .status()
            .is_ok_and(|s| s.success());
    }
    let took = t.elapsed().as_secs_f64();
    for id in &ids {
        let _ = runc(&["delete", "--force", id], None).status();
    }
    let _ = flotilla_runtime::rootfs::unmount_overlay(&base, true);
    let _ = std::fs::remove_dir_all(&base);
    flotilla_runtime::cgroups::remove("/flotilla-bench");
    ok.then_some(took)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The agent's CPU (% of a core), RSS and anonymous memory (MiB) over `seconds` with `steady`
/// probed pods, and the apply-to-Ready time.
fn steady_state(a: &Agent, steady: usize, seconds: u64) -> (f64, f64, f64, f64) {
    let t = apply_to_running(a, steady, true);
    std::thread::sleep(Duration::from_secs(5));
    let pid = a.child.id();
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let cpu = (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    (
        t,
        cpu,
        rss_mib(pid),
        proc_mib(pid, "smaps_rollup", "Anonymous:"),
    )
}

/// Seconds from the first pod Running (its CPU burning from its start) to its autoscaler's
/// second replica Running.
fn autoscaler_reaction(a: &Agent) -> Option<f64> {
    let yaml = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: bench}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: bench}}}}\n  template:\n    metadata: {{labels: {{app: bench}}}}\n    spec:\n      terminationGracePeriodSeconds: 0\n      containers:\n      - name: burn\n        image: {IMAGE}\n        command: [sh, -c, 'end=$(($(date +%s)+150)); while [ $(date +%s) -lt $end ]; do :; done; exec sleep 3600']\n        resources: {{requests: {{cpu: 100m}}, limits: {{cpu: 300m}}}}\n---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: bench}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: bench}}\n  maxReplicas: 2\n  metrics:\n  - type: Resource\n    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}\n"
    );
    let f = a.write("hpa.yaml", &yaml);
    a.cli(&["apply", "-f", &f])?;
    let running = |pods: &[Value]| {
        pods.iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count()
    };
    let t = Instant::now();
    let mut started: Option<Instant> = None;
    while t.elapsed() < Duration::from_secs(150) {
        let n = running(&a.pods());
        if n >= 1 && started.is_none() {
            started = Some(Instant::now());
        }
        if n >= 2 {
            return started.map(|s| s.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let sizes: Vec<usize> = arg(&args, "--sizes")
        .unwrap_or_else(|| "1,10,50".into())
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    let steady: usize = arg(&args, "--steady")
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let seconds: u64 = arg(&args, "--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);

    let a = Agent::start(&[]);
    let tar = flotilla_runtime::testing::test_image(a.dir.path());
    a.cli(&["image", "import", tar.to_str().unwrap()])
        .expect("importing the test image");
    let layers: Vec<PathBuf> = {
        let store =
            flotilla_runtime::image::ImageStore::open(&a.dir.path().join("images")).unwrap();
        store.resolve(IMAGE).unwrap().layers
    };
    let runc_version = Command::new("runc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(String::from)
        })
        .unwrap_or_else(|| "runc not installed".into());

    println!("apply-to-Running on one node, image present (median of 3)");
    println!("  flotilla: `apply` of a Deployment until every pod shows Running in `get pods`");
    println!(
        "  peer: `runc run --detach` of as many containers, one after the other ({runc_version})"
    );
    println!("{:>6}  {:>12}  {:>12}", "pods", "flotilla s", "runc s");
    for &n in &sizes {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..3 {
            ours.push(apply_to_running(&a, n, false));
            delete_all(&a);
            if let Some(t) = runc_start(a.dir.path(), &layers, n) {
                theirs.push(t);
            }
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        };
        let p = med(&mut theirs)
            .map(|t| format!("{t:.3}"))
            .unwrap_or_else(|| "-".into());
        println!("{n:>6}  {:>12.3}  {p:>12}", med(&mut ours).unwrap());
    }

    let (t, cpu, rss, anon) = steady_state(&a, steady, seconds);
    println!("\n{steady} pods with an httpGet readiness and a tcpSocket liveness probe every 1 s");
    println!("  apply to all Running and Ready: {t:.3} s");
    let shim_pids = shims(a.dir.path());
    let shim_rss: f64 = shim_pids.iter().map(|p| rss_mib(*p)).sum();
    println!("  agent CPU over {seconds} s: {cpu:.2}% of one core (target < 2%)");
    println!("  agent RSS: {rss:.1} MiB (target < 64 MiB)");
    // The rest is file pages: mostly the binary's own code, shared and reclaimable (how much
    // of it shows depends on how the kernel maps the page cache).
    println!("    of which anonymous (heap, stacks): {anon:.1} MiB");
    println!(
        "  shims: {} processes, {:.1} MiB RSS in all ({:.2} MiB each)",
        shim_pids.len(),
        shim_rss,
        shim_rss / shim_pids.len().max(1) as f64
    );
    delete_all(&a);

    // The autoscaler, at the defaults a user gets.
    match autoscaler_reaction(&a) {
        Some(s) => println!(
            "\nautoscaler: a pod burning 300m of its 100m request (target 50%) to its second replica Running: {s:.1} s\n  (samples every 15 s, the autoscaler every 15 s: at least two samples after start, then one pass)"
        ),
        None => println!("\nautoscaler: no second replica within 150 s"),
    }
    delete_all(&a);
    drop(a);

    // The same steady state with the metrics sampler off: what observability costs.
    let off = Agent::start(&["--metrics-resolution", "0"]);
    let tar = flotilla_runtime::testing::test_image(off.dir.path());
    off.cli(&["image", "import", tar.to_str().unwrap()])
        .expect("importing the test image");
    let (_, cpu_off, rss_off, anon_off) = steady_state(&off, steady, seconds);
    println!("\nthe cost of metrics ({steady} probed pods, {seconds} s each)");
    println!("{:>22}  {:>10}  {:>10}", "", "sampling", "off");
    println!(
        "{:>22}  {cpu:>9.2}%  {cpu_off:>9.2}%",
        "agent CPU (of a core)"
    );
    println!("{:>22}  {rss:>10.1}  {rss_off:>10.1}", "agent RSS MiB");
    println!(
        "{:>22}  {anon:>10.1}  {anon_off:>10.1}",
        "of which anonymous"
    );
    delete_all(&off);
}
