//! Starting and stopping a real agent process. The agent is killed when the guard drops, even
//! when a test fails, and its data dir is removed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A running agent on a temporary data dir.
pub struct Agent {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// The network namespace the agent (and the CLI) run in, when it has its own: then its
    /// pods get addresses on its pod network. Without one the agent shares the test's
    /// namespace and runs with `--pod-network none`, so that tests never add devices there.
    pub netns: Option<String>,
    /// The node's name.
    pub name: String,
    /// More arguments for `flotilla agent` (a member of a [`Box`] gets its join flags here).
    pub extra: Vec<String>,
}

impl Agent {
    pub fn start() -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-e2e-")
            .tempdir()
            .unwrap();
        let mut a = Agent {
            dir,
            child: None,
            netns: None,
            name: "node-1".into(),
            extra: Vec::new(),
        };
        a.spawn(true);
        a
    }

    /// An agent in a network namespace of its own (removed on drop), with the pod network.
    pub fn start_in_netns() -> Agent {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let ns = format!(
            "flt-e2e-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap();
        assert!(ok.success(), "ip netns add {ns}");
        let _ = Command::new("ip")
            .args(["-n", &ns, "link", "set", "lo", "up"])
            .status();
        let dir = tempfile::Builder::new()
            .prefix("flotilla-e2e-")
            .tempdir()
            .unwrap();
        let mut a = Agent {
            dir,
            child: None,
            netns: Some(ns),
            name: "node-1".into(),
            extra: Vec::new(),
        };
        a.spawn(true);
        a
    }

    /// A command that runs `program` in the agent's network namespace.
    pub fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// An agent with the project's busybox test image imported.
    pub fn with_image() -> Agent {
        let a = Agent::start();
        let tar = flotilla_runtime::testing::test_image(a.data_dir());
        a.ok(&["image", "import", tar.to_str().unwrap()]);
        a
    }

    /// A pod as JSON (`None` when it does not exist).
    pub fn pod(&self, name: &str) -> Option<Value> {
        let out = self.cli(&["get", "pod", name, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// The status of a pod's first container.
    pub fn container_status(&self, pod: &str) -> Value {
        self.pod(pod)
            .map(|p| p["status"]["containerStatuses"][0].clone())
            .unwrap_or(Value::Null)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("admin.yaml")
    }

    /// Starts the agent process (with `--init` the first time; a restart resumes).
    pub fn spawn(&mut self, init: bool) {
        let _ = std::fs::remove_file(self.config());
        let mut cmd = self.command(BIN);
        if self.netns.is_none() {
            cmd.args(["agent", "--pod-network", "none"]);
        } else {
            cmd.arg("agent");
        }
        // In a namespace of its own the API listens on every address there, so other nodes
        // of a box can forward logs and exec to it.
        let api = if self.netns.is_some() {
            "0.0.0.0:0"
        } else {
            "127.0.0.1:0"
        };
        cmd.arg("--data-dir").arg(self.dir.path()).args([
            "--api-addr",
            api,
            "--node-name",
            &self.name,
        ]);
        if self.extra.is_empty() {
            cmd.args(["--cluster-addr", "127.0.0.1:0"]);
        }
        cmd.args(&self.extra);
        if init {
            cmd.arg("--init");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().with_extension("log"))
            .unwrap();
        cmd.stdout(Stdio::null())
            .stderr(log)
            .env("RUST_LOG", "info,flotilla::controller=debug");
        self.child = Some(cmd.spawn().expect("starting the agent"));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("agent exited early with {status}: {}", self.log());
            }
            // Ready once its own Node is stored (the bootstrap write goes through the quorum
            // in the background).
            if self.config().exists() {
                let out = self.cli(&["get", "nodes"]);
                if out.status.success()
                    && String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .any(|l| l.starts_with(&format!("{} ", self.name)))
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("agent did not become ready: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().with_extension("log")).unwrap_or_default()
    }

    /// Kills the agent with SIGKILL (no chance to clean up), as a power cut or OOM would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The agent's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Stops the agent with SIGTERM and waits for it.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("agent running");
        unsafe_sigterm(c.id());
        c.wait().unwrap()
    }

    /// Runs the CLI against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(BIN)
            .args(args)
            .env("FLOTILLA_CONFIG", self.config())
            .output()
            .expect("running the CLI")
    }

    /// Runs the CLI and returns stdout, failing the test on a non-zero exit.
    pub fn ok(&self, args: &[&str]) -> String {
        stdout_of(self.cli(args), "flotilla", args)
    }

    /// Runs the CLI with `-o json` and parses the output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// Polls until `f` holds, or fails the test after `secs`.
    pub fn eventually(&self, secs: u64, what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}; agent log:\n{}", self.log());
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        // Containers outlive the agent (their shims own them): remove them too.
        flotilla::node::pods::remove_all(self.dir.path());
        // The parent of every pod cgroup: removed once empty (an rmdir, which fails while
        // another test's pods still use it), so a test run without scripts/test.sh, which
        // removes it at the end, leaves nothing either.
        flotilla_runtime::cgroups::remove("/flotilla");
        if let Some(ns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_file(self.dir.path().with_extension("log"));
    }
}

/// A cluster in a box for one test: a hub namespace holding a bridge, and one namespace per
/// node on it (`10.99.0.I/24`, no route out). Node 1 inits, the others join through it. Agents
/// drop first (killed, data removed), then the namespaces.
pub struct Box {
    pub nodes: Vec<Agent>,
    hub: NetnsGuard,
}

struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Box {
    /// Starts `n` agents with `extra` flags each (`--pod-network none` keeps them light).
    pub fn start(n: usize, extra: &[&str]) -> Box {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let tag = format!(
            "flt-box-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let hub = NetnsGuard(format!("{tag}-hub"));
        ip(&["netns", "add", &hub.0]);
        ip(&["-n", &hub.0, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub.0, "link", "set", "br0", "up"]);
        let mut b = Box {
            nodes: Vec::new(),
            hub,
        };
        for i in 1..=n {
            let join = (i > 1).then(|| {
                let token =
                    std::fs::read_to_string(b.nodes[0].data_dir().join("join-token")).unwrap();
                (1, token.trim().to_string())
            });
            let out = b.add(join, extra);
            assert!(out.is_ok(), "{}", out.unwrap_err());
        }
        b
    }

    /// Starts one more node; `join` is `(member, token)`: join through node `member`
    /// (1-based) with `token`; `None` inits. Returns the agent's log when it fails to start.
    pub fn add(&mut self, join: Option<(usize, String)>, extra: &[&str]) -> Result<(), String> {
        let i = self.nodes.len() + 1;
        let tag = self.hub.0.trim_end_matches("-hub").to_string();
        let ns = format!("{tag}-{i}");
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let port = format!("v{i}");
        ip(&[
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
            &self.hub.0,
        ]);
        ip(&[
            "-n",
            &self.hub.0,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.99.0.{i}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        let dir = tempfile::Builder::new()
            .prefix("flotilla-e2e-")
            .tempdir()
            .unwrap();
        let mut args: Vec<String> = [
            "--advertise-address",
            &format!("10.99.0.{i}"),
            "--pod-cidr",
            &format!("10.42.{}.0/24", i - 1),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let init = join.is_none();
        if let Some((member, token)) = join {
            args.extend([
                "--join".into(),
                format!("10.99.0.{member}:7946"),
                "--token".into(),
                token,
            ]);
        }
        let mut a = Agent {
            dir,
            child: None,
            netns: Some(ns),
            name: format!("node-{i}"),
            extra: args,
        };
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.spawn(init)));
        let log = a.log();
        self.nodes.push(a);
        started.map_err(|_| log)
    }

    /// Takes node `i`'s (1-based) link to the box down or up.
    pub fn link(&self, i: usize, up: bool) {
        ip(&[
            "-n",
            &self.hub.0,
            "link",
            "set",
            &format!("v{i}"),
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Box {
    fn drop(&mut self) {
        self.nodes.clear();
    }
}

/// Runs `cmd` (a CLI command line) with `input` on its stdin; returns its output.
pub fn with_stdin(mut cmd: Command, input: &str) -> Output {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Writes a manifest to a file in the agent's temp dir and returns its path.
pub fn manifest(a: &Agent, name: &str, yaml: &str) -> String {
    let p = a.data_dir().join(name);
    std::fs::write(&p, yaml).unwrap();
    p.display().to_string()
}

/// The pods a label selector picks, as JSON.
pub fn pods_with(a: &Agent, selector: &str) -> Vec<Value> {
    a.json(&["get", "pods", "-l", selector])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Whether a pod's Ready condition is True.
pub fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Applies examples/web.yaml and waits for its 3 pods to be Running and Ready.
pub fn apply_web(a: &Agent) -> Vec<Value> {
    a.ok(&["apply", "-f", examples().join("web.yaml").to_str().unwrap()]);
    a.eventually(60, "3 web pods Running and Ready", || {
        let ps = pods_with(a, "app=web");
        ps.len() == 3
            && ps
                .iter()
                .all(|p| p["status"]["phase"] == "Running" && ready(p))
    });
    pods_with(a, "app=web")
}

pub fn name(p: &Value) -> String {
    p["metadata"]["name"].as_str().unwrap().to_string()
}

impl Agent {
    /// The kubeconfig of this agent's API: the `admin.yaml` the agent wrote is one.
    pub fn kubeconfig(&self) -> PathBuf {
        self.config()
    }

    /// The real kubectl against this agent, to run with more settings (an editor).
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.command("kubectl");
        c.args(args).env("KUBECONFIG", self.kubeconfig());
        c
    }

    /// Runs the real kubectl against this agent.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args)
            .output()
            .expect("running kubectl (scripts/install-deps.sh installs it)")
    }

    /// Runs kubectl and returns stdout, failing the test on a non-zero exit.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        stdout_of(self.kubectl(args), "kubectl", args)
    }
}

/// The stdout of a command that must have succeeded; otherwise the test fails with its output.
fn stdout_of(out: Output, program: &str, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}
