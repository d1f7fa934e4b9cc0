//! The pod manager (the kubelet's job): makes the pods bound to this node real, keeps them so,
//! and reports their status.
//!
//! One task, level-triggered: on every store change, every probe verdict change, every
//! finished action and once a second, it reads the desired pods of this node (from the local
//! store) and what the runtime observes (sandboxes, container instances and their shims'
//! files), asks [`plan::plan`] what to do for each pod, runs those actions on a small pool of
//! blocking workers (at most [`WORKERS`] at once, never two on one object), and writes the
//! statuses that changed in one store write. Everything it needs to carry on is on disk
//! (the runtime's files and `DIR/pods/<uid>/`), so killing the agent at any moment loses
//! nothing: a new agent re-adopts the running containers and plans from what it finds. A pod
//! deleted from the store leaves its containers as orphans, which are stopped (with the
//! grace period recorded when the pod started) and removed with their sandbox and files.

pub mod containers;
#[cfg(test)]
mod fake;
pub mod host;
pub mod plan;
pub mod probe;
#[cfg(test)]
mod tests;
pub mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_runtime::container::{ContainerStatus, Runtime};
use flotilla_runtime::image::ImageStore;
use flotilla_runtime::logs::LogConfig;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, ObjectReference, Pod, PodIP, PodSpec, PodStatus, Secret,
};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, warn};

use self::containers::{PodContext, cgroup_path, parse_instance_id, pod_cgroup};
use self::host::{Machine, PodNet, PodRuntime};
use self::plan::{Action, Ended, Instance, InstanceState, Observed, StartFailure};
use self::volumes::{PodRecord, Sources, pod_dir};
use crate::manifest::events::{self, EventKind, event};
use crate::manifest::lifecycle::{self, items};
use crate::store::{Op, Store, StoreError, Write, new_uid, now_rfc3339};

/// Actions run at once.
pub const WORKERS: usize = 4;
/// How often the manager plans with nothing else waking it.
const RESYNC: Duration = Duration::from_secs(1);
/// Container logs: rotate at 10 MiB, keep 3 rotated files (as the kubelet's defaults, 10Mi/5).
const LOG_MAX_BYTES: u64 = 10 << 20;
const LOG_KEEP: u32 = 3;

/// The pod network's bridge in the agent's network namespace.
pub const BRIDGE: &str = "flotilla0";

/// Where a node's pods live (the API reads their logs and runs exec through it).
#[derive(Clone)]
pub struct Node {
    pub name: String,
    pub data: PathBuf,
    pub host_ip: String,
    pub runtime: Arc<Runtime>,
    pub images: Arc<ImageStore>,
    /// The pod network (`None`: pods have loopback only).
    pub net: Option<Arc<flotilla_netproxy::podnet::PodNetwork>>,
    /// How long a deleted pod that a Service selects keeps running before it is stopped, so
    /// every node's proxy has dropped it first (as Nomad's `shutdown_delay`).
    pub endpoint_drain: Duration,
}

impl Node {
    pub fn runtime_root(data: &Path) -> PathBuf {
        data.join("runtime")
    }

    /// The runtime ids of a pod's instances of `container`, oldest first.
    pub fn instances(&self, uid: &str, container: &str) -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = self
            .runtime
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|id| {
                let (u, c, a) = parse_instance_id(&id)?;
                (u == uid && c == container).then_some((a, id.clone()))
            })
            .collect();
        v.sort();
        v
    }
}

/// What the pod manager runs pods with: the node's name, files and addresses, a runtime and
/// a pod network ([`host`]).
#[derive(Clone)]
pub struct Host {
    pub name: String,
    pub data: PathBuf,
    pub host_ip: String,
    pub endpoint_drain: Duration,
    pub runtime: Arc<dyn PodRuntime>,
    pub net: Option<Arc<dyn PodNet>>,
}

impl From<&Node> for Host {
    fn from(n: &Node) -> Host {
        Host {
            name: n.name.clone(),
            data: n.data.clone(),
            host_ip: n.host_ip.clone(),
            endpoint_drain: n.endpoint_drain,
            runtime: Arc::new(Machine {
                runtime: n.runtime.clone(),
                images: n.images.clone(),
            }),
            net: n.net.clone().map(|n| n as Arc<dyn PodNet>),
        }
    }
}

/// The running pod manager; [`PodManager::shutdown`] stops it (the containers keep running).
pub struct PodManager {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PodManager {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Writes a pass's pod statuses and events, then sets `replan` and wakes the loop: the next
/// pass plans again (statuses computed while this write was in flight were not written, and a
/// failed write must be made again). A pod deleted meanwhile fails the whole batch, so the
/// others are then written one by one, unless the cluster cannot commit anything now (no
/// quorum), where each would only wait and fail the same way.
async fn write_statuses(
    store: Store,
    ops: Vec<Op>,
    replan: Arc<std::sync::atomic::AtomicBool>,
    wake: Arc<Notify>,
) {
    let w = Write {
        now: now_rfc3339(),
        ops,
    };
    if let Err(e) = store.write(&w).await {
        debug!(error = %e, ops = w.ops.len(), "pod status write failed");
        if !matches!(e, StoreError::NoQuorum(_) | StoreError::Remote(_)) {
            for op in w.ops {
                let _ = store
                    .write(&Write {
                        now: now_rfc3339(),
                        ops: vec![op],
                    })
                    .await;
            }
        }
    }
    replan.store(true, std::sync::atomic::Ordering::Relaxed);
    wake.notify_one();
}

/// Shared between the loop and its workers.
#[derive(Default)]
struct Memory {
    inflight: HashSet<String>,
    failures: HashMap<(String, String), StartFailure>,
    streaks: HashMap<(String, String), u32>,
    /// Events to record, made by workers.
    events: Vec<Event>,
}

/// Starts the pod manager of `node` on the machine itself.
pub fn spawn(store: Store, node: Node) -> PodManager {
    spawn_on(store, Host::from(&node))
}

/// Starts a pod manager on `node`'s runtime and pod network.
pub fn spawn_on(store: Store, node: Host) -> PodManager {
    let (stop, mut stop_rx) = watch::channel(false);
    let span = tracing::info_span!("pods", node = %node.name);
    let task = tokio::spawn(
        async move {
            let wake = Arc::new(Notify::new());
            let changes = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let mut m = Manager {
                prober: probe::Prober::new(node.runtime.clone(), wake.clone(), changes.clone()),
                changes,
                last: None,
                wake_at: None,
                store: store.clone(),
                node,
                mem: Arc::default(),
                sem: Arc::new(Semaphore::new(WORKERS)),
                wake: wake.clone(),
                cache: None,
                sources_cache: HashMap::new(),
                synced: HashMap::new(),
                messages: HashMap::new(),
                dispatched: std::sync::atomic::AtomicBool::new(false),
                writing: None,
                replan: Arc::default(),
            };
            // Woken by its pods, and by the ConfigMaps, Secrets and Services of their
            // namespaces (volumes, env); not by other kinds or namespaces.
            let mut changes = store.changes(&["Pod"]);
            loop {
                changes.mark_seen();
                let passed = m.pass().await;
                changes.follow(m.topics());
                match passed {
                    // Give back what a busy pass allocated; an idle pass allocates little.
                    Ok(true) => crate::node::memory::release_free_memory(),
                    Ok(false) => {}
                    Err(e) => warn!(error = %e, "pod sync failed"),
                }
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(RESYNC) => {}
                    _ = stop_rx.changed() => return,
                }
            }
        }
        .instrument(span),
    );
    PodManager { stop, task }
}

struct Manager {
    store: Store,
    node: Host,
    mem: Arc<Mutex<Memory>>,
    sem: Arc<Semaphore>,
    wake: Arc<Notify>,
    prober: probe::Prober,
    /// This node's pods as of a store revision.
    cache: Option<(i64, Arc<Desired>)>,
    /// Bumped by every finished action, pull and probe verdict change.
    changes: Arc<std::sync::atomic::AtomicU64>,
    /// What the last full pass planned from: a hash of the observed containers, the store
    /// revision and `changes`. A resync that finds the same, before any back-off ends, skips
    /// planning.
    last: Option<(u64, i64, u64)>,
    /// The earliest end of a back-off the last full pass saw.
    wake_at: Option<u64>,
    /// Whether this pass handed work to the workers.
    dispatched: std::sync::atomic::AtomicBool,
    /// The status and event write in flight, if any (see [`write_statuses`]).
    writing: Option<JoinHandle<()>>,
    /// Set when that write ended: the next pass plans again, since statuses planned while it
    /// was in flight were left for later (and a write that changed nothing moves no revision
    /// that would wake a pass).
    replan: Arc<std::sync::atomic::AtomicBool>,
    /// Each exited instance's termination message (or, with `FallbackToLogsOnError`, its
    /// log's tail after a failure), read once: an exited instance does not change.
    messages: HashMap<String, Option<String>>,
    /// Each pod's volume dirs and /etc files, as of the store revision they were synced at.
    synced: HashMap<String, (i64, BTreeMap<String, PathBuf>, EtcFiles, String)>,
    /// ConfigMaps and Secrets by namespace, as of a store revision.
    sources_cache: HashMap<String, (i64, Arc<NamespaceData>)>,
}

/// What the runtime shows: instances by pod uid and container name, and sandboxes.
#[derive(Default)]
struct Seen {
    instances: BTreeMap<String, BTreeMap<String, Vec<Instance>>>,
    sandboxes: HashSet<String>,
    pod_dirs: HashSet<String>,
    /// Pods holding an address of the pod network.
    addresses: HashSet<String>,
}

/// Where a container instance's termination message is kept on the node (bind-mounted at its
/// `terminationMessagePath`, so it outlives the container, as the kubelet keeps it).
pub fn termination_file(data: &std::path::Path, uid: &str, id: &str) -> std::path::PathBuf {
    pod_dir(data, uid).join("termination").join(id)
}

/// Kubernetes' limit on a termination message.
const MESSAGE_MAX: usize = 4096;

/// The last `max` bytes of a file (a container may write anything: only the end is read).
fn file_tail(path: &std::path::Path, max: u64) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max))).ok()?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// The termination message an exited instance left, if any: its last 4 KiB, as the kubelet
/// reads it.
fn termination_message(data: &std::path::Path, uid: &str, id: &str) -> Option<String> {
    let bytes = file_tail(&termination_file(data, uid, id), MESSAGE_MAX as u64)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (!text.is_empty()).then_some(text)
}

/// The last 80 lines (at most 2 KiB) of an instance's CRI log, its content only (partial
/// chunks joined to their line): the kubelet's message for `FallbackToLogsOnError`.
fn log_tail(path: &std::path::Path) -> Option<String> {
    let bytes = file_tail(path, 64 * 1024)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = Vec::new();
    let mut partial = String::new();
    for l in text.lines() {
        // `<time> <stream> <P|F> <content>`
        let mut parts = l.splitn(4, ' ');
        let (Some(_time), Some(_stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        partial.push_str(parts.next().unwrap_or(""));
        if tag != "P" {
            lines.push(std::mem::take(&mut partial));
        }
    }
    if !partial.is_empty() {
        lines.push(partial);
    }
    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
    let start = tail.len().saturating_sub(2048);
    let start = (start..tail.len())
        .find(|i| tail.is_char_boundary(*i))
        .unwrap_or(tail.len());
    let tail = tail[start..].to_string();
    (!tail.is_empty()).then_some(tail)
}

fn observe(node: &Host) -> Seen {
    let mut seen = Seen::default();
    if let Some(net) = &node.net {
        seen.addresses = net.holders().into_iter().collect();
    }
    for id in node.runtime.list().unwrap_or_default() {
        let Some((uid, name, attempt)) = parse_instance_id(&id) else {
            continue;
        };
        let state = match node.runtime.status(&id) {
            Ok(ContainerStatus::Starting) => InstanceState::Starting,
            Ok(ContainerStatus::Running { started_at_ms, .. }) => InstanceState::Running {
                started_ms: started_at_ms,
            },
            Ok(ContainerStatus::Exited(r)) => InstanceState::Exited(Ended {
                code: r.code,
                signal: r.signal,
                oom_killed: r.oom_killed,
                started_ms: r.started_at_ms,
                finished_ms: r.finished_at_ms,
                lost: false,
                // Read once per instance by the pass (`Manager::fill_messages`).
                message: None,
            }),
            // Its end is not known; its bundle's last change stands in, so that the back-off
            // holds: a shim that keeps dying must not restart its container in a tight loop.
            Ok(ContainerStatus::Lost) | Err(_) => {
                let at = node.runtime.changed_at_ms(&id);
                InstanceState::Exited(Ended {
                    code: 255,
                    signal: None,
                    oom_killed: false,
                    started_ms: at,
                    finished_ms: at,
                    lost: true,
                    message: None,
                })
            }
        };
        seen.instances
            .entry(uid.to_string())
            .or_default()
            .entry(name.to_string())
            .or_default()
            .push(Instance {
                attempt,
                id: id.clone(),
                state,
            });
    }
    for m in seen.instances.values_mut() {
        for v in m.values_mut() {
            v.sort_by_key(|i| i.attempt);
        }
    }
    seen.sandboxes = node.runtime.sandboxes();
    seen.pod_dirs = std::fs::read_dir(node.data.join("pods"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    seen
}

fn now_ms() -> u64 {
    flotilla_runtime::shim::now_ms()
}

/// The topics of what a namespace gives its pods ([`NamespaceData`]).
fn source_topics(ns: &str) -> [String; 3] {
    ["ConfigMap", "Secret", "Service"].map(|k| format!("{k}/{ns}"))
}

type EtcFiles = Vec<(PathBuf, &'static str)>;

/// Decoded data of a namespace's ConfigMaps and Secrets.
type DataByName = BTreeMap<String, BTreeMap<String, String>>;
/// What a namespace gives its pods: ConfigMaps, Secrets, and the Services' env vars.
type NamespaceData = (DataByName, DataByName, Vec<(String, String)>);

/// What one pass gathers across pods.
#[derive(Default)]
struct Round {
    /// The uids of this node's pods in the store (the rest are orphans).
    desired: HashSet<String>,
    /// Running instances (their probes keep running).
    running: HashSet<String>,
    sources: HashMap<String, Arc<NamespaceData>>,
}

/// A pod's inputs on this node ([`Manager::inputs`]).
#[derive(Default)]
struct Inputs {
    hostname: String,
    /// Empty without a pod network.
    pod_ip: String,
    volumes: BTreeMap<String, PathBuf>,
    etc: EtcFiles,
    /// Why the volumes or /etc files could not be written.
    error: Option<String>,
}

/// This node's pods in the store, decoded.
#[derive(Default)]
struct Desired {
    pods: Vec<Pod>,
    /// The uids of those that do not decode (or have no spec): not run, but not orphans.
    unreadable: Vec<String>,
}

/// The pods marked deleted (held by finalizers), by uid, with the grace period of the delete:
/// they are not run, and their containers stop within it while the object waits.
fn terminating(pods: &[Pod]) -> HashMap<String, Option<u64>> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .map(|p| {
            let g = p
                .metadata
                .deletion_grace_period_seconds
                .map(|g| g.max(0) as u64);
            (lifecycle::uid(&p.metadata).to_string(), g)
        })
        .collect()
}

impl Manager {
    /// What the loop follows: Pods, and what the namespaces of this node's pods give them.
    fn topics(&self) -> Vec<String> {
        let mut t = vec!["Pod".to_string()];
        for ns in self.sources_cache.keys() {
            t.extend(source_topics(ns));
        }
        t
    }

    fn sources_revision(&self, ns: &str) -> i64 {
        self.store.revision_of(&source_topics(ns))
    }

    /// This node's pods, decoded once per revision of the store's pods.
    async fn desired(&mut self) -> anyhow::Result<Arc<Desired>> {
        let rev = self.store.revision_of(&["Pod"]);
        if let Some((r, pods)) = &self.cache
            && *r == rev
        {
            return Ok(pods.clone());
        }
        let (pods, _) = self.store.list("Pod", None).await?;
        let mut mine = Desired::default();
        for raw in pods {
            // Only this node's pods are decoded (the filter reads the store's bytes).
            if raw["spec"]["nodeName"] != self.node.name.as_str() {
                continue;
            }
            let uid = raw["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            match lifecycle::decode::<Pod>(raw) {
                Ok(p) if p.spec.is_some() && !uid.is_empty() => mine.pods.push(p),
                Ok(_) => mine.unreadable.push(uid),
                Err(e) => {
                    warn!(uid = %uid, error = %e, "cannot read pod");
                    mine.unreadable.push(uid);
                }
            }
        }
        let mine = Arc::new(mine);
        self.cache = Some((rev, mine.clone()));
        Ok(mine)
    }

    async fn sources(&self, ns: &str) -> anyhow::Result<NamespaceData> {
        let (cms, _) = self
            .store
            .list_as::<ConfigMap>("ConfigMap", Some(ns))
            .await?;
        let (secrets, _) = self.store.list_as::<Secret>("Secret", Some(ns)).await?;
        let text = |b: ByteString| String::from_utf8_lossy(&b.0).into_owned();
        let cm = cms
            .into_iter()
            .map(|c| {
                let mut d = c.data.unwrap_or_default();
                d.extend(
                    c.binary_data
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k, text(v))),
                );
                (c.metadata.name.unwrap_or_default(), d)
            })
            .collect();
        let sec = secrets
            .into_iter()
            .map(|s| {
                let mut d: BTreeMap<String, String> = s
                    .data
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k, text(v)))
                    .collect();
                d.extend(s.string_data.unwrap_or_default());
                (s.metadata.name.unwrap_or_default(), d)
            })
            .collect();
        let (services, _) = self
            .store
            .list_as::<k8s_openapi::api::core::v1::Service>("Service", Some(ns))
            .await?;
        Ok((cm, sec, crate::node::services::service_env(&services)))
    }

    /// One pass; returns whether it did anything (dispatched actions or wrote statuses):
    /// observe what runs, then for each of this node's pods its inputs, plan, dispatch and
    /// status, then the orphans' cleanup and one write of what changed.
    async fn pass(&mut self) -> anyhow::Result<bool> {
        let desired = self.desired().await?;
        let terminating = terminating(&desired.pods);
        let node = self.node.clone();
        let mut seen = tokio::task::spawn_blocking(move || observe(&node)).await?;
        self.fill_messages(&mut seen, &desired.pods);
        let now = now_ms();
        if !self.changed(&seen, now) {
            // Nothing changed since the last plan: the same plan would come out.
            return Ok(false);
        }
        let mut round = Round::default();
        // A pod that does not read keeps what it runs (it is not an orphan).
        round.desired.extend(desired.unreadable.iter().cloned());
        let mut statuses = Vec::new();
        for pod in &desired.pods {
            // Pods marked deleted are not run: their containers go as orphans.
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            round
                .desired
                .insert(lifecycle::uid(&pod.metadata).to_string());
            if let Some(op) = self.sync_pod(pod, &seen, now, &mut round).await? {
                statuses.push(op);
            }
        }
        self.prober.retain(&round.running);
        let desired = &round.desired;
        self.synced.retain(|uid, _| desired.contains(uid));
        self.sources_cache
            .retain(|ns, _| round.sources.contains_key(ns));
        self.remove_orphans(&seen, &round.desired, &terminating)
            .await;
        let busy = !statuses.is_empty()
            || self
                .dispatched
                .swap(false, std::sync::atomic::Ordering::Relaxed);
        self.flush(statuses);
        Ok(busy)
    }

    /// Whether what the pass sees differs from what the last full pass planned from (or a
    /// back-off it saw is over); remembers it.
    fn changed(&mut self, seen: &Seen, now: u64) -> bool {
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            seen.instances.hash(&mut h);
            let mut sb: Vec<&String> = seen
                .sandboxes
                .iter()
                .chain(&seen.pod_dirs)
                .chain(&seen.addresses)
                .collect();
            sb.sort();
            sb.hash(&mut h);
            (
                h.finish(),
                self.store.revision(),
                self.changes.load(std::sync::atomic::Ordering::Relaxed),
            )
        };
        if self
            .replan
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.last = None;
        }
        let due = self.wake_at.is_some_and(|w| now >= w);
        if self.last == Some(fingerprint) && !due {
            return false;
        }
        self.last = Some(fingerprint);
        self.wake_at = None;
        true
    }

    /// What a namespace gives its pods, read once per pass and store revision.
    async fn namespace_data(
        &mut self,
        ns: &str,
        round: &mut Round,
    ) -> anyhow::Result<Arc<NamespaceData>> {
        if let Some(d) = round.sources.get(ns) {
            return Ok(d.clone());
        }
        let rev = self.sources_revision(ns);
        let data = match self.sources_cache.get(ns) {
            Some((r, d)) if *r == rev => d.clone(),
            _ => {
                let d = Arc::new(self.sources(ns).await?);
                self.sources_cache.insert(ns.to_string(), (rev, d.clone()));
                d
            }
        };
        round.sources.insert(ns.to_string(), data.clone());
        Ok(data)
    }

    /// A pod's inputs on this node: its address, and its volumes and /etc files, kept up to
    /// date while it has a sandbox (brought up to date when the pod is new here and whenever
    /// the store changed since: a ConfigMap or Secret may have).
    fn inputs(
        &mut self,
        pod: &Pod,
        spec: &PodSpec,
        uid: &str,
        has_sandbox: bool,
        data: &NamespaceData,
    ) -> Inputs {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let hostname = spec
            .hostname
            .clone()
            .unwrap_or_else(|| lifecycle::name(&pod.metadata).chars().take(63).collect());
        let pod_ip = self
            .node
            .net
            .as_ref()
            .and_then(|n| n.address_of(uid))
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let mut got = Inputs {
            hostname,
            pod_ip,
            ..Default::default()
        };
        if !has_sandbox {
            return got;
        }
        let rev = self.store.revision();
        if let Some(s) = self.synced.get(uid)
            && s.0 == rev
            && s.3 == got.pod_ip
        {
            (got.volumes, got.etc) = (s.1.clone(), s.2.clone());
            return got;
        }
        let (cms, secrets, _) = data;
        let dir = pod_dir(&self.node.data, uid);
        let src = Sources {
            config_maps: cms,
            secrets,
        };
        // Small file writes, inline: one pass, one consistent view.
        match volumes::sync_volumes(&dir, spec, &src) {
            Ok(v) => got.volumes = v,
            Err(e) => got.error = Some(e),
        }
        // ClusterFirst (the default) asks the node's cluster DNS, when the node has a pod
        // network; `Default` takes the node's own resolv.conf. ClusterFirstWithHostNet is
        // ClusterFirst for a pod in its own network namespace (every pod here).
        let resolv = match (&self.node.net, spec.dns_policy.as_deref()) {
            (Some(_), None | Some("ClusterFirst") | Some("ClusterFirstWithHostNet")) => {
                crate::node::dns::pod_resolv_conf(ns, crate::node::services::DNS_IP)
            }
            _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        match volumes::write_etc(&dir, &got.hostname, &got.pod_ip, &resolv) {
            Ok(e) => got.etc = e,
            Err(e) => got.error = Some(format!("writing /etc files: {e}")),
        }
        if got.error.is_none() {
            self.synced.insert(
                uid.to_string(),
                (
                    rev,
                    got.volumes.clone(),
                    got.etc.clone(),
                    got.pod_ip.clone(),
                ),
            );
        }
        got
    }

    /// Gives each exited instance its termination message: from the cache, or read once from
    /// its file (with `FallbackToLogsOnError`, after a failure without one, its log's tail).
    /// Instances no longer seen leave the cache.
    fn fill_messages(&mut self, seen: &mut Seen, pods: &[Pod]) {
        let specs: HashMap<&str, &PodSpec> = pods
            .iter()
            .filter_map(|p| Some((lifecycle::uid(&p.metadata), p.spec.as_ref()?)))
            .collect();
        let mut live = HashSet::new();
        for (uid, containers) in &mut seen.instances {
            for (name, instances) in containers {
                let fallback = specs.get(uid.as_str()).is_some_and(|s| {
                    s.containers
                        .iter()
                        .chain(items(&s.init_containers))
                        .any(|c| {
                            c.name == *name
                                && c.termination_message_policy.as_deref()
                                    == Some("FallbackToLogsOnError")
                        })
                });
                for i in instances {
                    let InstanceState::Exited(e) = &mut i.state else {
                        continue;
                    };
                    live.insert(i.id.clone());
                    let data = &self.node.data;
                    e.message = self
                        .messages
                        .entry(i.id.clone())
                        .or_insert_with(|| {
                            termination_message(data, uid, &i.id).or_else(|| {
                                (fallback && e.code != 0).then(|| {
                                    log_tail(
                                        &pod_dir(data, uid)
                                            .join("logs")
                                            .join(format!("{name}_{}.log", i.attempt)),
                                    )
                                })?
                            })
                        })
                        .clone();
                }
            }
        }
        self.messages.retain(|id, _| live.contains(id));
    }

    /// What the planner is told about a pod: its sandbox and instances as seen, the start
    /// failures and crash streaks the workers remember, and the probes' verdicts.
    fn observed(
        &self,
        spec: &PodSpec,
        uid: &str,
        seen: &Seen,
        volume_error: Option<&String>,
        now: u64,
    ) -> Observed {
        let mut obs = Observed {
            sandbox: seen.sandboxes.contains(uid),
            instances: seen.instances.get(uid).cloned().unwrap_or_default(),
            ..Default::default()
        };
        let mem = self.mem.lock().expect("pod memory");
        for c in spec.containers.iter().chain(items(&spec.init_containers)) {
            let key = (uid.to_string(), c.name.clone());
            if let Some(f) = mem.failures.get(&key) {
                obs.start_failures.insert(c.name.clone(), f.clone());
            }
            let streak = mem.streaks.get(&key).copied().unwrap_or_else(|| {
                // After an agent restart: as many as its restarts, capped.
                obs.instances
                    .get(&c.name)
                    .and_then(|v| v.last())
                    .map(|i| i.attempt.min(6))
                    .unwrap_or(0)
            });
            obs.streaks.insert(c.name.clone(), streak);
            if let Some(e) = volume_error {
                obs.start_failures
                    .entry(c.name.clone())
                    .or_insert(StartFailure {
                        reason: "ContainerCreating".into(),
                        message: e.clone(),
                        at_ms: now,
                        count: 1,
                    });
            }
        }
        drop(mem);
        for i in obs.instances.values().flatten() {
            if let Some(p) = self.prober.get(&i.id) {
                obs.probes.insert(i.id.clone(), p);
            }
        }
        obs
    }

    /// Observes, plans and dispatches one pod; returns its status write if it changed.
    async fn sync_pod(
        &mut self,
        pod: &Pod,
        seen: &Seen,
        now: u64,
        round: &mut Round,
    ) -> anyhow::Result<Option<Op>> {
        let uid = lifecycle::uid(&pod.metadata).to_string();
        let Some(spec) = pod.spec.as_ref() else {
            return Ok(None);
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let data = self.namespace_data(ns, round).await?;
        let has_sandbox = seen.sandboxes.contains(&uid);
        let inputs = self.inputs(pod, spec, &uid, has_sandbox, &data);
        let obs = self.observed(spec, &uid, seen, inputs.error.as_ref(), now);
        let none = PodStatus::default();
        let prev = pod.status.as_ref().unwrap_or(&none);
        let p = plan::plan(spec, &obs, prev, now);
        let deadline = Some(plan::DEADLINE_EXCEEDED);
        if p.status.reason.as_deref() == deadline && prev.reason.as_deref() != deadline {
            self.event(
                &lifecycle::about(pod),
                EventKind::Normal,
                plan::DEADLINE_EXCEEDED,
                p.status.message.as_deref().unwrap_or_default(),
            );
        }
        if let Some(w) = p.wake_at {
            self.wake_at = Some(self.wake_at.map_or(w, |x| x.min(w)));
        }
        let sandbox = flotilla_runtime::sandbox::Sandbox {
            dir: Node::runtime_root(&self.node.data)
                .join("sandboxes")
                .join(&uid),
        };
        self.probe_running(spec, &obs, prev, &sandbox, &inputs.pod_ip, round);

        let (cms, secrets, service_env) = &*data;
        // What the pod's events are about (made only when there is something to do).
        let about = &if p.actions.is_empty() {
            ObjectReference::default()
        } else {
            lifecycle::about(pod)
        };
        for a in p.actions {
            let ctx = PodContext {
                pod,
                spec,
                uid: &uid,
                node: &self.node.name,
                pod_ip: &inputs.pod_ip,
                host_ip: &self.node.host_ip,
                sandbox: &sandbox,
                volumes: &inputs.volumes,
                etc_files: &inputs.etc,
                config_maps: cms,
                secrets,
                service_env,
            };
            self.dispatch(a, &ctx, about, &inputs.hostname);
        }

        let mut status = p.status;
        status.host_ip = Some(self.node.host_ip.clone());
        if !inputs.pod_ip.is_empty() && has_sandbox {
            status.pod_ip = Some(inputs.pod_ip.clone());
            status.pod_ips = Some(vec![PodIP {
                ip: inputs.pod_ip.clone(),
            }]);
        }
        status.start_time = Some(
            prev.start_time
                .clone()
                .unwrap_or_else(|| plan::time_ms(now)),
        );
        if status == *prev {
            return Ok(None);
        }
        let mut o = pod.clone();
        o.status = Some(status);
        o.metadata.resource_version = None;
        Ok(Some(Op::Status {
            object: serde_json::to_value(&o)?,
        }))
    }

    /// Makes sure the probes of the pod's running instances run.
    fn probe_running(
        &mut self,
        spec: &PodSpec,
        obs: &Observed,
        prev: &PodStatus,
        sandbox: &flotilla_runtime::sandbox::Sandbox,
        pod_ip: &str,
        round: &mut Round,
    ) {
        for c in spec.containers.iter() {
            let Some(Instance {
                id,
                state: InstanceState::Running { .. },
                ..
            }) = obs.instances.get(&c.name).and_then(|v| v.last())
            else {
                continue;
            };
            round.running.insert(id.clone());
            let cid = format!("flotilla://{id}");
            let was = items(&prev.container_statuses)
                .iter()
                .find(|s| s.name == c.name && s.container_id.as_deref() == Some(&cid))
                .map(|s| (s.ready, s.started == Some(true)))
                .unwrap_or((false, false));
            let ip = if pod_ip.is_empty() {
                "127.0.0.1"
            } else {
                pod_ip
            };
            let target = probe::Target {
                id: id.clone(),
                netns: sandbox.net(),
                ip: ip.to_string(),
            };
            self.prober.ensure(c, target, was);
        }
    }

    /// Stops and removes what runs here for pods no longer in the store.
    async fn remove_orphans(
        &self,
        seen: &Seen,
        desired: &HashSet<String>,
        terminating: &HashMap<String, Option<u64>>,
    ) {
        let orphans: HashSet<&String> = seen
            .instances
            .keys()
            .chain(&seen.sandboxes)
            .chain(&seen.pod_dirs)
            .chain(&seen.addresses)
            .filter(|u| !desired.contains(*u))
            .collect();
        for uid in orphans {
            let mut rec = read_record(&self.node.data, uid);
            if let Some(g) = terminating.get(uid.as_str()).copied().flatten() {
                rec.grace_seconds = g;
            } else if let Some(g) = self.store.deletion_grace(uid) {
                // Deleted with --grace-period (remembered as the delete was applied here).
                rec.grace_seconds = g.max(0) as u64;
            }
            let running = seen.instances.get(uid).is_some_and(|m| {
                m.values()
                    .flatten()
                    .any(|i| matches!(i.state, InstanceState::Running { .. }))
            });
            let drain = if running && self.backs_a_service(&rec).await {
                self.node
                    .endpoint_drain
                    .min(Duration::from_secs(rec.grace_seconds))
            } else {
                Duration::ZERO
            };
            self.cleanup(
                uid.clone(),
                rec,
                seen.instances.get(uid).cloned().unwrap_or_default(),
                drain,
            );
        }
    }

    /// Writes the pass's statuses and the workers' events, one write at a time, in the
    /// background: cut off from the quorum, a write waits seconds before it fails, and the
    /// pods must be restarted and probed meanwhile. A pass that finds a write in flight
    /// leaves its statuses and events for a later one.
    fn flush(&mut self, statuses: Vec<Op>) {
        if self.writing.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let mut ops = statuses;
        let events = std::mem::take(&mut self.mem.lock().expect("pod memory").events);
        for e in events {
            ops.push(Op::Create {
                object: lifecycle::encode(&events::named(e, &new_uid()[..8])),
                uid: new_uid(),
            });
        }
        if !ops.is_empty() {
            self.writing = Some(tokio::spawn(
                write_statuses(
                    self.store.clone(),
                    ops,
                    self.replan.clone(),
                    self.wake.clone(),
                )
                .in_current_span(),
            ));
        }
    }

    /// Runs `job` on a worker unless something is already in flight for `key`.
    fn run(&self, key: String, job: impl FnOnce() + Send + 'static) {
        self.run_after(Duration::ZERO, key, job)
    }

    /// As [`Manager::run`], `delay` after now; the wait holds no worker.
    fn run_after(&self, delay: Duration, key: String, job: impl FnOnce() + Send + 'static) {
        self.dispatched
            .store(true, std::sync::atomic::Ordering::Relaxed);
        {
            let mut mem = self.mem.lock().expect("pod memory");
            if !mem.inflight.insert(key.clone()) {
                return;
            }
        }
        let (sem, mem, wake) = (self.sem.clone(), self.mem.clone(), self.wake.clone());
        let changes = self.changes.clone();
        tokio::spawn(
            async move {
                tokio::time::sleep(delay).await;
                let _permit = sem.acquire_owned().await;
                let _ = tokio::task::spawn_blocking(job).await;
                mem.lock().expect("pod memory").inflight.remove(&key);
                changes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                wake.notify_one();
            }
            .in_current_span(),
        );
    }

    fn dispatch(&self, a: Action, ctx: &PodContext<'_>, about: &ObjectReference, hostname: &str) {
        let (node, mem) = (self.node.clone(), self.mem.clone());
        let uid = ctx.uid.to_string();
        let pod_name = lifecycle::name(&ctx.pod.metadata).to_string();
        let grace = ctx
            .spec
            .termination_grace_period_seconds
            .unwrap_or(30)
            .max(0) as u64;
        match a {
            Action::CreateSandbox => {
                let rec = PodRecord {
                    namespace: ctx.pod.metadata.namespace.clone().unwrap_or_default(),
                    name: pod_name.clone(),
                    grace_seconds: grace,
                    labels: lifecycle::labels(&ctx.pod.metadata).clone(),
                    pre_stop: ctx
                        .spec
                        .containers
                        .iter()
                        .filter_map(|c| Some((c.name.clone(), volumes::Hook::pre_stop(c)?)))
                        .collect(),
                };
                let host = hostname.to_string();
                let limits = containers::pod_limits(ctx.spec);
                self.run(format!("sandbox:{uid}"), move || {
                    let dir = pod_dir(&node.data, &uid);
                    let made = std::fs::create_dir_all(dir.join("logs"))
                        .map_err(|e| e.to_string())
                        .and_then(|()| {
                            std::fs::write(
                                dir.join("pod.json"),
                                serde_json::to_vec(&rec).expect("serialises"),
                            )
                            .map_err(|e| e.to_string())
                        })
                        .and_then(|()| {
                            node.runtime
                                .create_sandbox(&uid, &host, &limits)
                                .map_err(|e| e.to_string())
                        })
                        .and_then(|netns| {
                            let Some(net) = &node.net else { return Ok(()) };
                            match net.attach(&uid, &netns) {
                                Ok(ip) => {
                                    debug!(pod = %pod_name, ip = %ip, "pod network attached");
                                    Ok(())
                                }
                                Err(e) => {
                                    // Without its network the sandbox is no use: try again.
                                    let _ = node.runtime.remove_sandbox(&uid);
                                    Err(format!("attaching the pod network: {e}"))
                                }
                            }
                        });
                    match made {
                        Ok(()) => debug!(pod = %pod_name, "sandbox made"),
                        Err(e) => warn!(pod = %pod_name, error = %e, "cannot make the sandbox"),
                    }
                });
            }
            Action::Start {
                container,
                attempt,
                init,
                streak,
            } => {
                let list = if init {
                    items(&ctx.spec.init_containers)
                } else {
                    &ctx.spec.containers
                };
                let Some(c) = list.iter().find(|c| c.name == container).cloned() else {
                    return;
                };
                let key = (uid.clone(), container.clone());
                let fail = move |mem: &Arc<Mutex<Memory>>, reason: &str, message: String| {
                    let mut m = mem.lock().expect("pod memory");
                    let count = m.failures.get(&key).map(|f| f.count + 1).unwrap_or(1);
                    m.failures.insert(
                        key.clone(),
                        StartFailure {
                            reason: reason.to_string(),
                            message,
                            at_ms: now_ms(),
                            count,
                        },
                    );
                };
                let image_ref = c.image.clone().unwrap_or_default();
                let image = match node.runtime.resolve_image(&image_ref) {
                    Ok(i) => i,
                    Err(_) if c.image_pull_policy.as_deref() == Some("Never") => {
                        let msg = format!(
                            "image {image_ref:?} is not on this node and imagePullPolicy is Never"
                        );
                        fail(&mem, "ErrImageNeverPull", msg);
                        self.wake.notify_one();
                        return;
                    }
                    Err(_) => {
                        self.pull(about, &image_ref, fail);
                        return;
                    }
                };
                let mut spec = match containers::container_spec(ctx, &c, attempt, &image) {
                    Ok(s) => s,
                    Err(e) => {
                        self.event(about, EventKind::Warning, "Failed", &e.0);
                        fail(&mem, "CreateContainerConfigError", e.0);
                        self.wake.notify_one();
                        return;
                    }
                };
                // The termination message's file, kept on the node and mounted at its path.
                let message = termination_file(&node.data, &uid, &spec.id);
                let made = message
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&message, b""))
                    .and_then(|()| {
                        std::fs::set_permissions(
                            &message,
                            std::os::unix::fs::PermissionsExt::from_mode(0o666),
                        )
                    });
                if let Err(e) = made {
                    warn!(pod = %pod_name, container = %container, error = %e, "cannot make the termination message file");
                } else {
                    spec.mounts.push(flotilla_runtime::spec::BindMount {
                        source: message,
                        destination: c
                            .termination_message_path
                            .clone()
                            .unwrap_or_else(|| "/dev/termination-log".into()),
                        read_only: false,
                    });
                }
                let log = LogConfig {
                    path: pod_dir(&node.data, &uid)
                        .join("logs")
                        .join(format!("{container}_{attempt}.log")),
                    max_bytes: LOG_MAX_BYTES,
                    keep: LOG_KEEP,
                };
                let about = about.clone();
                let id = spec.id.clone();
                self.run(id.clone(), move || {
                    match node.runtime.start(&spec, &image.layers, log) {
                        Ok(pid) => {
                            info!(pod = %pod_name, container = %container, attempt, pid, "started");
                            let mut m = mem.lock().expect("pod memory");
                            m.failures.remove(&(uid.clone(), container.clone()));
                            m.streaks.insert((uid, container.clone()), streak);
                            let now = events::now();
                            m.events.push(event(
                                &about,
                                EventKind::Normal,
                                "Started",
                                &format!("Started container {container}"),
                                &now,
                                "flotilla-node",
                            ));
                        }
                        Err(e) => {
                            let msg = error_chain(&e);
                            warn!(pod = %pod_name, container = %container, error = %msg, "start failed");
                            fail(&mem, "RunContainerError", msg);
                        }
                    }
                });
            }
            Action::Kill { id, reason } => {
                let hook = parse_instance_id(&id)
                    .and_then(|(_, name, _)| ctx.spec.containers.iter().find(|c| c.name == name))
                    .and_then(volumes::Hook::pre_stop);
                let stopping = format!("stop:{id}");
                if self
                    .mem
                    .lock()
                    .expect("pod memory")
                    .inflight
                    .contains(&stopping)
                {
                    // Already being stopped (a plan repeats its kill until the instance exits).
                    return;
                }
                self.event(
                    about,
                    EventKind::Normal,
                    "Killing",
                    &format!("Stopping container {id}: {reason}"),
                );
                self.run(format!("stop:{id}"), move || {
                    stop_instance(&*node.runtime, &id, grace, hook.as_ref());
                });
            }
            Action::Remove { id } => {
                let cg = cgroup_path(&uid, &id);
                let _ = std::fs::remove_file(termination_file(&node.data, &uid, &id));
                self.run(format!("remove:{id}"), move || {
                    if let Err(e) = node.runtime.delete(&id, &cg) {
                        warn!(container = %id, error = %e, "cannot remove");
                    }
                });
            }
        }
    }

    /// Pulls an image in the background (once at a time per image); a failure is the start
    /// failure `ErrImagePull` of the container that wanted it.
    fn pull(
        &self,
        about: &ObjectReference,
        image: &str,
        fail: impl FnOnce(&Arc<Mutex<Memory>>, &str, String) + Send + 'static,
    ) {
        let key = format!("pull:{image}");
        {
            let mut mem = self.mem.lock().expect("pod memory");
            if !mem.inflight.insert(key.clone()) {
                return;
            }
        }
        self.event(
            about,
            EventKind::Normal,
            "Pulling",
            &format!("Pulling image {image:?}"),
        );
        let (runtime, mem, wake) = (
            self.node.runtime.clone(),
            self.mem.clone(),
            self.wake.clone(),
        );
        let changes = self.changes.clone();
        let (image, about) = (image.to_string(), about.clone());
        tokio::spawn(
            async move {
                let t = std::time::Instant::now();
                let result = runtime.pull_image(&image).await;
                let now = events::now();
                match result {
                    Ok(got) => {
                        let msg = format!(
                            "Successfully pulled image {image:?} in {:.3}s ({})",
                            t.elapsed().as_secs_f64(),
                            got.digest
                        );
                        info!(image = %image, digest = %got.digest, "pulled");
                        let e = event(
                            &about,
                            EventKind::Normal,
                            "Pulled",
                            &msg,
                            &now,
                            "flotilla-node",
                        );
                        mem.lock().expect("pod memory").events.push(e);
                    }
                    Err(e) => {
                        let msg = error_chain(&e);
                        warn!(image = %image, error = %msg, "pull failed");
                        let ev = event(
                            &about,
                            EventKind::Warning,
                            "Failed",
                            &msg,
                            &now,
                            "flotilla-node",
                        );
                        mem.lock().expect("pod memory").events.push(ev);
                        fail(&mem, "ErrImagePull", msg);
                    }
                }
                mem.lock().expect("pod memory").inflight.remove(&key);
                changes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                wake.notify_one();
            }
            .in_current_span(),
        );
    }

    fn event(&self, about: &ObjectReference, kind: EventKind, reason: &str, message: &str) {
        let e = event(
            about,
            kind,
            reason,
            message,
            &events::now(),
            "flotilla-node",
        );
        self.mem.lock().expect("pod memory").events.push(e);
    }

    /// Whether a Service of the pod's namespace selects the pod `rec` describes.
    async fn backs_a_service(&self, rec: &PodRecord) -> bool {
        if rec.labels.is_empty() {
            return false;
        }
        let Ok((services, _)) = self
            .store
            .list_as::<k8s_openapi::api::core::v1::Service>("Service", Some(&rec.namespace))
            .await
        else {
            return true;
        };
        services.iter().any(|s| {
            let sel = s.spec.as_ref().and_then(|s| s.selector.as_ref());
            sel.is_some_and(|sel| {
                !sel.is_empty() && sel.iter().all(|(k, v)| rec.labels.get(k) == Some(v))
            })
        })
    }

    /// Stops and removes everything of a pod that is gone from the store: after `drain` (the
    /// pod still serving while every node drops it from its Services), each container's
    /// preStop hook and SIGTERM, then SIGKILL when the grace period is over.
    fn cleanup(
        &self,
        uid: String,
        rec: PodRecord,
        instances: BTreeMap<String, Vec<Instance>>,
        drain: Duration,
    ) {
        let node = self.node.clone();
        let mem = self.mem.clone();
        self.run_after(drain, format!("cleanup:{uid}"), move || {
            let dir = pod_dir(&node.data, &uid);
            let ids: Vec<String> = instances.values().flatten().map(|i| i.id.clone()).collect();
            let grace = rec.grace_seconds.saturating_sub(drain.as_secs());
            // Stop them all at once, so the grace periods overlap.
            std::thread::scope(|s| {
                for id in &ids {
                    let rt = &*node.runtime;
                    let hook = parse_instance_id(id).and_then(|(_, name, _)| rec.pre_stop.get(name));
                    s.spawn(move || stop_instance(rt, id, grace, hook));
                }
            });
            for id in &ids {
                if let Err(e) = node.runtime.delete(id, &cgroup_path(&uid, id)) {
                    warn!(container = %id, error = %e, "cannot remove");
                }
            }
            if let Some(net) = &node.net
                && let Err(e) = net.detach(&uid)
            {
                warn!(pod = %rec.name, error = %e, "cannot release the pod's address");
            }
            if let Err(e) = node.runtime.remove_sandbox(&uid) {
                warn!(pod = %rec.name, error = %e, "cannot remove the sandbox");
            }
            if let Err(e) = volumes::remove_pod_dir(&dir) {
                warn!(pod = %rec.name, error = %e, "cannot remove the pod's files");
            }
            let mut m = mem.lock().expect("pod memory");
            m.failures.retain(|(u, _), _| *u != uid);
            m.streaks.retain(|(u, _), _| *u != uid);
            info!(pod = %rec.name, namespace = %rec.namespace, uid = %uid, "pod removed from the node");
        });
    }
}

/// Stops and removes every container, sandbox and pod dir of the node at `data` (for
/// `cluster-in-a-box down`, uninstall and tests); the agent must not be running.
pub fn remove_all(data: &Path) {
    let root = Node::runtime_root(data);
    if let Ok(rt) = Runtime::open(&root) {
        let ids = rt.list().unwrap_or_default();
        for id in &ids {
            if let Ok(ContainerStatus::Running { .. } | ContainerStatus::Starting) = rt.status(id) {
                let _ = rt.kill(id, libc::SIGKILL);
            }
        }
        for id in &ids {
            let _ = rt.wait_exit(id, Duration::from_secs(5));
            let cg = parse_instance_id(id)
                .map(|(uid, _, _)| cgroup_path(uid, id))
                .unwrap_or_default();
            let _ = rt.delete(id, &cg);
        }
    }
    if let Ok(rd) = std::fs::read_dir(root.join("sandboxes")) {
        for e in rd.flatten() {
            let _ = flotilla_runtime::sandbox::remove(&flotilla_runtime::sandbox::Sandbox {
                dir: e.path(),
            });
            if let Some(uid) = e.file_name().to_str() {
                flotilla_runtime::cgroups::remove(&pod_cgroup(uid));
            }
        }
    }
    // Addresses go with the pods (their veths went with their namespaces).
    let _ = std::fs::remove_file(data.join("net/ipam.json"));
    if let Ok(rd) = std::fs::read_dir(data.join("pods")) {
        for e in rd.flatten() {
            let _ = volumes::remove_pod_dir(&e.path());
            if let Some(uid) = e.file_name().to_str() {
                flotilla_runtime::cgroups::remove(&pod_cgroup(uid));
            }
        }
    }
}

/// What the node wrote down about pod `uid` when it made its sandbox (a 30 s grace period
/// when nothing was written).
fn read_record(data: &Path, uid: &str) -> PodRecord {
    std::fs::read(pod_dir(data, uid).join("pod.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(PodRecord {
            grace_seconds: 30,
            ..Default::default()
        })
}

/// The kubelet's stop: the preStop hook (within the grace period), SIGTERM, then SIGKILL
/// when the grace period is over.
fn stop_instance(
    rt: &dyn PodRuntime,
    id: &str,
    grace_seconds: u64,
    pre_stop: Option<&volumes::Hook>,
) {
    let start = std::time::Instant::now();
    let grace = Duration::from_secs(grace_seconds);
    if let Some(hook) = pre_stop
        && let Ok(ContainerStatus::Running { .. }) = rt.status(id)
    {
        match hook {
            volumes::Hook::Exec(cmd) => match rt.exec(id, cmd, grace) {
                Ok(o) if o.code == Some(0) => {}
                Ok(o) => warn!(container = %id, code = ?o.code, "preStop hook failed"),
                Err(e) => warn!(container = %id, error = %e, "preStop hook failed"),
            },
            // The pause is the container's last moment of service: SIGTERM after it.
            volumes::Hook::Sleep { seconds } => {
                std::thread::sleep(Duration::from_secs(*seconds).min(grace));
            }
        }
    }
    let left = grace.saturating_sub(start.elapsed());
    if let Err(e) = rt.stop(id, left) {
        warn!(container = %id, error = %e, "cannot stop");
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}

/// The id of the instance `logs`/`exec` should use: the newest, or the one before it with
/// `previous`.
pub fn pick_instance(instances: &[(u32, String)], previous: bool) -> Option<String> {
    let k = instances.len().checked_sub(if previous { 2 } else { 1 })?;
    instances.get(k).map(|(_, id)| id.clone())
}
