//! A cluster in a box for the benchmarks: real release agents, each in its own network
//! namespace on one bridge in a hub namespace, measured from inside the hub. Dropping the box
//! kills the agents, removes their containers and every namespace and dir, even on a panic.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use flotilla::cli::client::Client;
use flotilla::cluster::identity::AdminConfig;

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The box: a hub namespace with the bridge (and 10.99.0.254 for the measuring side), and one
/// namespace per agent.
pub struct Box {
    /// The kernel's ARP table limit (`gc_thresh3`) before this run. The neighbour table is
    /// one for every network namespace of the machine, and a box of N nodes that all talk
    /// to each other needs N² entries: 50 nodes overflow the default 1,024 ("neighbor table
    /// overflow"), which real machines, each with its own kernel, never share.
    arp_limit: Option<(String, std::fs::File)>,
    tag: String,
    pub agents: Vec<Child>,
    pub dirs: Vec<tempfile::TempDir>,
    bin: PathBuf,
    /// Whether agents run pods (a pod network and containers) or only the control plane.
    pods: bool,
    extra: Vec<String>,
}

const ARP_LIMIT: &str = "/proc/sys/net/ipv4/neigh/default/gc_thresh3";

impl Box {
    /// An empty box; agents get `extra` flags.
    pub fn new(bin: &Path, pods: bool, extra: &[&str]) -> Box {
        let tag = format!("fbench-{}", std::process::id());
        let hub = format!("{tag}-hub");
        sh(&["ip", "netns", "add", &hub]);
        sh(&["ip", "-n", &hub, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"]);
        sh(&[
            "ip",
            "-n",
            &hub,
            "addr",
            "add",
            "10.99.0.254/16",
            "dev",
            "br0",
        ]);
        sh(&["ip", "-n", &hub, "link", "set", "br0", "up"]);
        // Opened here, in the host's namespace: the sysctl exists only there, and the drop
        // runs after this process has moved into the hub.
        let arp_limit = std::fs::read_to_string(ARP_LIMIT).ok().and_then(|v| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(ARP_LIMIT)
                .ok()?;
            Some((v, f))
        });
        let _ = std::fs::write(ARP_LIMIT, "16384");
        Box {
            arp_limit,
            tag,
            agents: Vec::new(),
            dirs: Vec::new(),
            bin: bin.to_path_buf(),
            pods,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn hub(&self) -> String {
        format!("{}-hub", self.tag)
    }

    pub fn ip(i: usize) -> String {
        format!("10.99.{}.{}", i / 250, i % 250 + 1)
    }

    /// Starts node `i` (0-based; node 0 inits, the others join through it) and returns `i`.
    pub fn add(&mut self) -> usize {
        let i = self.agents.len();
        let ns = format!("{}-{i}", self.tag);
        sh(&["ip", "netns", "add", &ns]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let port = format!("v{i}");
        sh(&[
            "ip",
            "-n",
            &ns,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.hub(),
        ]);
        sh(&[
            "ip",
            "-n",
            &self.hub(),
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/16", Box::ip(i)),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        let dir = tempfile::Builder::new()
            .prefix("fbench-")
            .tempdir()
            .unwrap();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{ns}"))
            .arg(&self.bin)
            .args(["agent", "--api-addr", "0.0.0.0:7443"])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--node-name", &format!("node-{i}")])
            .args(["--advertise-address", &Box::ip(i)])
            .args(&self.extra);
        if self.pods {
            cmd.args(["--pod-cidr", &format!("10.42.{i}.0/24")]);
        } else {
            cmd.args(["--pod-network", "none"]);
        }
        if i == 0 {
            cmd.arg("--init");
        } else {
            let token = std::fs::read_to_string(self.dirs[0].path().join("join-token")).unwrap();
            cmd.args(["--join", &format!("{}:7946", Box::ip(0))])
                .args(["--token", token.trim()]);
        }
        let log = std::fs::File::create(dir.path().with_extension("log")).unwrap();
        cmd.stdout(Stdio::null()).stderr(log).env(
            "RUST_LOG",
            std::env::var("FLOTILLA_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        );
        self.agents.push(cmd.spawn().expect("starting an agent"));
        self.dirs.push(dir);
        i
    }

    fn admin(&self, i: usize) -> AdminConfig {
        let start = Instant::now();
        let cfg = loop {
            if let Ok(c) = AdminConfig::load(&self.dirs[i].path().join("admin.yaml")) {
                break c;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "node {i} wrote no config"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        AdminConfig {
            server: format!("https://{}:7443", Box::ip(i)),
            ..cfg
        }
    }

    /// An API client of node `i`, from the hub.
    pub fn client(&self, i: usize) -> Client {
        Client::new(&self.admin(i)).unwrap()
    }

    /// Runs the CLI against node `i` from the hub.
    pub fn cli(&self, i: usize, args: &[&str]) -> Output {
        let path = self.dirs[i].path().with_extension("cli.yaml");
        if !path.exists() {
            std::fs::write(&path, serde_norway::to_string(&self.admin(i)).unwrap()).unwrap();
        }
        Command::new(&self.bin)
            .arg("--config")
            .arg(&path)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn kill9(&mut self, i: usize) {
        let _ = self.agents[i].kill();
        let _ = self.agents[i].wait();
    }

    /// Takes node `i`'s link to the bridge down or up.
    pub fn link(&self, i: usize, up: bool) {
        sh(&[
            "ip",
            "-n",
            &self.hub(),
            "link",
            "set",
            &format!("v{i}"),
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Box {
    fn drop(&mut self) {
        for a in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
        for (i, d) in self.dirs.iter().enumerate() {
            // Containers outlive their agent (their shims own them).
            if self.pods {
                flotilla::node::pods::remove_all(d.path());
            }
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{}-{i}", self.tag)])
                .status();
            // FLOTILLA_BENCH_LOG (agents' log filter) keeps the logs for reading.
            if std::env::var_os("FLOTILLA_BENCH_LOG").is_none() {
                let _ = std::fs::remove_file(d.path().with_extension("log"));
            }
            let _ = std::fs::remove_file(d.path().with_extension("cli.yaml"));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub()])
            .status();
        if let Some((v, f)) = &mut self.arp_limit {
            use std::io::Write as _;
            let _ = f.write_all(v.trim().as_bytes());
        }
    }
}

/// Enters a network namespace for the rest of this (still single-threaded) process.
pub fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns into the hub");
}
