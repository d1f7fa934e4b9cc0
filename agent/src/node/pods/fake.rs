//! An in-memory [`PodRuntime`] and [`PodNet`] for the pod manager's unit tests. A container
//! is a record: started, it runs until stopped, or exits at once with a code when the test
//! says so for its name; exec probes fail for the instances the test marks. Every call that
//! changes something is logged, so a test asserts what the manager did, not how.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use flotilla_netproxy::NetError;
use flotilla_runtime::RuntimeError;
use flotilla_runtime::cgroups::ParentLimits;
use flotilla_runtime::container::ContainerStatus;
use flotilla_runtime::exec::ExecOutput;
use flotilla_runtime::image::{Image, ImageSummary};
use flotilla_runtime::logs::LogConfig;
use flotilla_runtime::shim::{ExitRecord, now_ms};
use flotilla_runtime::spec::ContainerSpec;

use super::containers::parse_instance_id;
use super::host::{PodNet, PodRuntime};

/// What the manager asked of the runtime or the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Start(String),
    Stop(String),
    Delete(String),
    CreateSandbox(String),
    RemoveSandbox(String),
    Pull(String),
    Attach(String),
    Detach(String),
}

#[derive(Default)]
struct State {
    containers: BTreeMap<String, (ContainerStatus, u64)>,
    sandboxes: HashSet<String>,
    images: HashSet<String>,
    /// Containers (by name) that exit with this code as soon as they start.
    exits: HashMap<String, i32>,
    /// Instances (by id) whose exec probes fail.
    failing_probes: HashSet<String>,
    calls: Vec<Call>,
}

#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

impl FakeRuntime {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("fake runtime"))
    }

    /// An image present on the node.
    pub fn add_image(&self, reference: &str) {
        self.with(|s| s.images.insert(reference.to_string()));
    }

    /// Containers named `name` exit with `code` as soon as they start.
    pub fn exit_at_once(&self, name: &str, code: i32) {
        self.with(|s| s.exits.insert(name.to_string(), code));
    }

    /// Exec probes of the instance `id` fail.
    pub fn fail_probes(&self, id: &str) {
        self.with(|s| s.failing_probes.insert(id.to_string()));
    }

    /// A container already running (as one left by an earlier agent).
    pub fn add_running(&self, id: &str, started_at_ms: u64) {
        self.with(|s| {
            let st = ContainerStatus::Running {
                pid: 4242,
                started_at_ms,
            };
            s.containers.insert(id.to_string(), (st, started_at_ms))
        });
    }

    /// A sandbox already made (as one left by an earlier agent).
    pub fn add_sandbox(&self, uid: &str) {
        self.with(|s| s.sandboxes.insert(uid.to_string()));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }

    /// The ids of the containers started, in order.
    pub fn starts(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Start(id) => Some(id),
                _ => None,
            })
            .collect()
    }

    pub fn ids(&self) -> Vec<String> {
        self.with(|s| s.containers.keys().cloned().collect())
    }
}

fn not_found(id: &str) -> RuntimeError {
    RuntimeError::ContainerNotFound { id: id.to_string() }
}

#[async_trait::async_trait]
impl PodRuntime for FakeRuntime {
    fn list(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(self.ids())
    }
    fn status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        self.with(|s| s.containers.get(id).map(|c| c.0.clone()))
            .ok_or_else(|| not_found(id))
    }
    fn changed_at_ms(&self, id: &str) -> u64 {
        self.with(|s| s.containers.get(id).map(|c| c.1).unwrap_or(0))
    }
    fn start(
        &self,
        spec: &ContainerSpec,
        _layers: &[PathBuf],
        _log: LogConfig,
    ) -> Result<i32, RuntimeError> {
        let name = parse_instance_id(&spec.id)
            .map(|(_, c, _)| c.to_string())
            .unwrap_or_default();
        self.with(|s| {
            if s.containers.contains_key(&spec.id) {
                return Err(RuntimeError::ContainerExists {
                    id: spec.id.clone(),
                });
            }
            let now = now_ms();
            let st = match s.exits.get(&name) {
                Some(&code) => ContainerStatus::Exited(ExitRecord {
                    code,
                    signal: None,
                    oom_killed: false,
                    started_at_ms: now,
                    finished_at_ms: now,
                }),
                None => ContainerStatus::Running {
                    pid: 4242,
                    started_at_ms: now,
                },
            };
            s.containers.insert(spec.id.clone(), (st, now));
            s.calls.push(Call::Start(spec.id.clone()));
            Ok(4242)
        })
    }
    fn stop(&self, id: &str, _grace: Duration) -> Result<(), RuntimeError> {
        self.with(|s| {
            let c = s.containers.get_mut(id).ok_or_else(|| not_found(id))?;
            s.calls.push(Call::Stop(id.to_string()));
            if let ContainerStatus::Running { started_at_ms, .. } = c.0 {
                let now = now_ms();
                c.0 = ContainerStatus::Exited(ExitRecord {
                    code: 143,
                    signal: Some(libc::SIGTERM),
                    oom_killed: false,
                    started_at_ms,
                    finished_at_ms: now,
                });
                c.1 = now;
            }
            Ok(())
        })
    }
    fn exec(
        &self,
        id: &str,
        _cmd: &[String],
        _timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        self.status(id)?;
        Ok(ExecOutput {
            code: Some(0),
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }
    async fn exec_probe(&self, id: &str, cmd: &[String], _timeout: Duration) -> Result<(), String> {
        let fails = self.with(|s| s.failing_probes.contains(id));
        if fails {
            Err(format!("command {cmd:?} exited with 1: "))
        } else {
            Ok(())
        }
    }
    fn delete(&self, id: &str, _cgroup: &str) -> Result<(), RuntimeError> {
        self.with(|s| {
            s.containers.remove(id).ok_or_else(|| not_found(id))?;
            s.calls.push(Call::Delete(id.to_string()));
            Ok(())
        })
    }
    fn sandboxes(&self) -> HashSet<String> {
        self.with(|s| s.sandboxes.clone())
    }
    fn create_sandbox(
        &self,
        uid: &str,
        _hostname: &str,
        _limits: &ParentLimits,
    ) -> Result<PathBuf, RuntimeError> {
        self.with(|s| {
            if !s.sandboxes.insert(uid.to_string()) {
                return Err(RuntimeError::ContainerExists {
                    id: uid.to_string(),
                });
            }
            s.calls.push(Call::CreateSandbox(uid.to_string()));
            Ok(PathBuf::from(format!("/fake/sandboxes/{uid}/net")))
        })
    }
    fn remove_sandbox(&self, uid: &str) -> Result<(), RuntimeError> {
        self.with(|s| {
            if s.sandboxes.remove(uid) {
                s.calls.push(Call::RemoveSandbox(uid.to_string()));
            }
            Ok(())
        })
    }
    fn resolve_image(&self, reference: &str) -> Result<Image, RuntimeError> {
        if !self.with(|s| s.images.contains(reference)) {
            return Err(RuntimeError::ImageNotFound {
                reference: reference.to_string(),
            });
        }
        Ok(Image {
            reference: reference.to_string(),
            digest: "sha256:fake".into(),
            env: vec!["PATH=/bin".into()],
            entrypoint: vec![],
            cmd: vec!["/bin/sh".into()],
            working_dir: None,
            user: None,
            layers: vec![],
        })
    }
    async fn pull_image(&self, reference: &str) -> Result<ImageSummary, RuntimeError> {
        self.with(|s| s.calls.push(Call::Pull(reference.to_string())));
        Err(RuntimeError::PullFailed {
            reference: reference.to_string(),
            message: "no registry here".into(),
        })
    }
}

/// A pod network handing out 10.42.0.x, in memory; it logs into its runtime's call log.
pub struct FakeNet {
    addresses: Mutex<BTreeMap<String, Ipv4Addr>>,
    runtime: std::sync::Arc<FakeRuntime>,
}

impl FakeNet {
    pub fn new(runtime: std::sync::Arc<FakeRuntime>) -> FakeNet {
        FakeNet {
            addresses: Mutex::default(),
            runtime,
        }
    }

    /// An address already held (as one left by an earlier agent).
    pub fn hold(&self, uid: &str, ip: Ipv4Addr) {
        self.addresses
            .lock()
            .expect("fake net")
            .insert(uid.to_string(), ip);
    }
}

impl PodNet for FakeNet {
    fn holders(&self) -> Vec<String> {
        self.addresses
            .lock()
            .expect("fake net")
            .keys()
            .cloned()
            .collect()
    }
    fn address_of(&self, uid: &str) -> Option<Ipv4Addr> {
        self.addresses.lock().expect("fake net").get(uid).copied()
    }
    fn attach(&self, uid: &str, _netns: &Path) -> Result<Ipv4Addr, NetError> {
        let mut a = self.addresses.lock().expect("fake net");
        let ip = Ipv4Addr::new(10, 42, 0, 2 + a.len() as u8);
        let ip = *a.entry(uid.to_string()).or_insert(ip);
        self.runtime
            .with(|s| s.calls.push(Call::Attach(uid.to_string())));
        Ok(ip)
    }
    fn detach(&self, uid: &str) -> Result<(), NetError> {
        self.addresses.lock().expect("fake net").remove(uid);
        self.runtime
            .with(|s| s.calls.push(Call::Detach(uid.to_string())));
        Ok(())
    }
}
