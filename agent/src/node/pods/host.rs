//! What the pod manager needs from the machine, behind two traits: [`PodRuntime`] (containers,
//! sandboxes, the pod's cgroup, images) and [`PodNet`] (the pod network's addresses). The
//! agent runs on [`Machine`] and [`flotilla_netproxy::podnet::PodNetwork`]; the manager's unit
//! tests run on an in-memory runtime (`fake.rs`), so that observe → plan → dispatch → status
//! is tested in milliseconds, while the kernel-facing parts keep their own real tests.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotilla_netproxy::NetError;
use flotilla_runtime::RuntimeError;
use flotilla_runtime::cgroups::ParentLimits;
use flotilla_runtime::container::{ContainerStatus, Runtime};
use flotilla_runtime::exec::ExecOutput;
use flotilla_runtime::image::{Image, ImageStore, ImageSummary};
use flotilla_runtime::logs::LogConfig;
use flotilla_runtime::sandbox::Sandbox;
use flotilla_runtime::spec::ContainerSpec;

use super::containers::pod_cgroup;

/// Containers, sandboxes and images, as the pod manager uses them. Container ids are the
/// manager's own (`<uid>_<container>_<attempt>`); a sandbox is named by its pod's uid.
#[async_trait::async_trait]
pub trait PodRuntime: Send + Sync + 'static {
    /// Every container the runtime knows, running or not.
    fn list(&self) -> Result<Vec<String>, RuntimeError>;
    fn status(&self, id: &str) -> Result<ContainerStatus, RuntimeError>;
    /// When the container's state last changed (stands in for the end of a lost container).
    fn changed_at_ms(&self, id: &str) -> u64;
    /// Starts a container that outlives the caller; returns its pid.
    fn start(
        &self,
        spec: &ContainerSpec,
        layers: &[PathBuf],
        log: LogConfig,
    ) -> Result<i32, RuntimeError>;
    /// SIGTERM, then SIGKILL once `grace` has passed.
    fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;
    /// Runs a command in a running container (preStop hooks).
    fn exec(&self, id: &str, cmd: &[String], timeout: Duration)
    -> Result<ExecOutput, RuntimeError>;
    /// Runs an exec probe: `Ok` when the command exits 0, else why not.
    async fn exec_probe(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<(), String>;
    /// Removes a stopped container, its files and its cgroup.
    fn delete(&self, id: &str, cgroup: &str) -> Result<(), RuntimeError>;

    /// The uids of the pods that have a sandbox.
    fn sandboxes(&self) -> HashSet<String>;
    /// Makes the pod's cgroup (with the sum of its containers' limits) and its sandbox (the
    /// namespaces its containers share); returns the sandbox's network namespace.
    fn create_sandbox(
        &self,
        uid: &str,
        hostname: &str,
        limits: &ParentLimits,
    ) -> Result<PathBuf, RuntimeError>;
    /// Removes the pod's sandbox (if any) and its cgroup.
    fn remove_sandbox(&self, uid: &str) -> Result<(), RuntimeError>;

    /// The image as it is on this node.
    fn resolve_image(&self, reference: &str) -> Result<Image, RuntimeError>;
    async fn pull_image(&self, reference: &str) -> Result<ImageSummary, RuntimeError>;
}

/// The pod network: one address per pod, on the node's bridge.
pub trait PodNet: Send + Sync + 'static {
    /// The uids of the pods holding an address.
    fn holders(&self) -> Vec<String>;
    fn address_of(&self, uid: &str) -> Option<Ipv4Addr>;
    /// Gives the pod an address and plugs its network namespace into the bridge.
    fn attach(&self, uid: &str, netns: &Path) -> Result<Ipv4Addr, NetError>;
    fn detach(&self, uid: &str) -> Result<(), NetError>;
}

impl PodNet for flotilla_netproxy::podnet::PodNetwork {
    fn holders(&self) -> Vec<String> {
        flotilla_netproxy::podnet::PodNetwork::holders(self)
    }
    fn address_of(&self, uid: &str) -> Option<Ipv4Addr> {
        flotilla_netproxy::podnet::PodNetwork::address_of(self, uid)
    }
    fn attach(&self, uid: &str, netns: &Path) -> Result<Ipv4Addr, NetError> {
        flotilla_netproxy::podnet::PodNetwork::attach(self, uid, netns)
    }
    fn detach(&self, uid: &str) -> Result<(), NetError> {
        flotilla_netproxy::podnet::PodNetwork::detach(self, uid)
    }
}

/// The machine itself: youki's libcontainer under shims, namespaces, cgroups and the image
/// store on disk.
pub struct Machine {
    pub runtime: Arc<Runtime>,
    pub images: Arc<ImageStore>,
}

impl Machine {
    fn sandbox(&self, uid: &str) -> Sandbox {
        Sandbox {
            dir: self.runtime.root().join("sandboxes").join(uid),
        }
    }
}

#[async_trait::async_trait]
impl PodRuntime for Machine {
    fn list(&self) -> Result<Vec<String>, RuntimeError> {
        self.runtime.list()
    }
    fn status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        self.runtime.status(id)
    }
    fn changed_at_ms(&self, id: &str) -> u64 {
        self.runtime.changed_at_ms(id)
    }
    fn start(
        &self,
        spec: &ContainerSpec,
        layers: &[PathBuf],
        log: LogConfig,
    ) -> Result<i32, RuntimeError> {
        self.runtime.start(spec, layers, log)
    }
    fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.runtime.stop(id, grace).map(drop)
    }
    fn exec(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        self.runtime.exec(id, cmd, timeout)
    }
    async fn exec_probe(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<(), String> {
        super::probe::exec_probe(&self.runtime, id, cmd, timeout).await
    }
    fn delete(&self, id: &str, cgroup: &str) -> Result<(), RuntimeError> {
        self.runtime.delete(id, cgroup)
    }
    fn sandboxes(&self) -> HashSet<String> {
        std::fs::read_dir(self.runtime.root().join("sandboxes"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
    fn create_sandbox(
        &self,
        uid: &str,
        hostname: &str,
        limits: &ParentLimits,
    ) -> Result<PathBuf, RuntimeError> {
        flotilla_runtime::cgroups::ensure_parent(&pod_cgroup(uid), limits)?;
        let sb = flotilla_runtime::sandbox::create(self.runtime.root(), uid, hostname)?;
        Ok(sb.net())
    }
    fn remove_sandbox(&self, uid: &str) -> Result<(), RuntimeError> {
        let sb = self.sandbox(uid);
        let removed = if sb.dir.exists() {
            flotilla_runtime::sandbox::remove(&sb)
        } else {
            Ok(())
        };
        flotilla_runtime::cgroups::remove(&pod_cgroup(uid));
        removed
    }
    fn resolve_image(&self, reference: &str) -> Result<Image, RuntimeError> {
        self.images.resolve(reference)
    }
    async fn pull_image(&self, reference: &str) -> Result<ImageSummary, RuntimeError> {
        self.images.pull(reference, None).await
    }
}
