//! The controller runner: one task that, on every store change and on a periodic resync, reads
//! the objects, runs every planner and the scheduler, and commits their actions.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, warn};

use super::events::{event, expired};
use super::{Action, EventKind, daemonset, deployment, job, replicaset};
use crate::scheduler::{self, Decision};
use crate::store::{Key, Op, Store, StoreError, Write, new_uid, now_rfc3339};

/// How often controllers re-plan with no store change (catches time-based work).
const RESYNC: Duration = Duration::from_secs(5);
/// The kinds a controller pass reads: a change to any other kind does not wake the controllers.
const CONTROLLED: [&str; 6] = [
    "Deployment",
    "ReplicaSet",
    "Pod",
    "Job",
    "DaemonSet",
    "Node",
];

/// The running controllers; [`Controllers::shutdown`] stops and joins them.
pub struct Controllers {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Controllers {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What the node lifecycle needs: the nodes gossip does not hear, and how long they may be
/// silent before their pods are replaced.
#[derive(Clone)]
pub struct Lifecycle {
    pub unreachable: watch::Receiver<std::collections::BTreeSet<String>>,
    pub grace: Duration,
}

/// Starts the controllers of this node; they work while `leading` is true (the leader of the
/// quorum runs them for the whole cluster) and idle otherwise.
pub fn spawn_all(
    store: Store,
    node: String,
    mut leading: watch::Receiver<bool>,
    mut lifecycle: Lifecycle,
) -> Controllers {
    let (stop, mut stop_rx) = watch::channel(false);
    let span = tracing::info_span!("controllers", node = %node);
    let task = tokio::spawn(
        async move {
            // What the passes read (Events are collected on a timer).
            let mut changes = store.changes(&CONTROLLED);
            let mut passes: u64 = 0;
            // Since when each node has been silent, as this leader saw it (a new leader starts
            // counting afresh: it waits a whole grace period before evicting).
            let mut silent_since: BTreeMap<String, std::time::Instant> = BTreeMap::new();
            loop {
                if !*leading.borrow_and_update() {
                    silent_since.clear();
                    tokio::select! {
                        r = leading.changed() => if r.is_err() { return },
                        _ = stop_rx.changed() => return,
                    }
                    continue;
                }
                changes.mark_seen();
                let now_silent = lifecycle.unreachable.borrow_and_update().clone();
                silent_since.retain(|n, _| now_silent.contains(n));
                for n in now_silent {
                    silent_since.entry(n).or_insert_with(std::time::Instant::now);
                }
                let silent: BTreeMap<String, Duration> = silent_since
                    .iter()
                    .map(|(n, t)| (n.clone(), t.elapsed()))
                    .collect();
                let retry = match reconcile_once(
                    &store,
                    passes.is_multiple_of(120),
                    &silent,
                    lifecycle.grace,
                )
                .await
                {
                    Ok(p) => {
                        if p.done > 0 {
                            debug!(actions = p.done, stale = p.stale, "reconciled");
                        }
                        p.stale > 0
                    }
                    Err(e) => {
                        warn!(error = %e, "reconcile pass failed");
                        true
                    }
                };
                passes += 1;
                crate::node::memory::release_free_memory();
                if retry {
                    // A plan was stale or a write failed: plan again soon, whatever wakes us.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        _ = stop_rx.changed() => return,
                    }
                }
                tokio::select! {
                    _ = changes.changed() => {
                        // Let a burst of writes land before planning again.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    _ = tokio::time::sleep(if silent_since.is_empty() { RESYNC } else { Duration::from_secs(1) }) => {}
                    _ = leading.changed() => {}
                    _ = lifecycle.unreachable.changed() => {}
                    _ = stop_rx.changed() => return,
                }
            }
        }
        .instrument(span),
    );
    Controllers { stop, task }
}

fn by_namespace(items: Vec<Value>) -> BTreeMap<String, Vec<Value>> {
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for o in items {
        m.entry(
            o["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
        .or_default()
        .push(o);
    }
    m
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Actions committed.
    pub done: usize,
    /// Plans that were stale when committed (an object changed since it was read); the next
    /// pass plans them again.
    pub stale: usize,
}

/// One pass of every controller and the scheduler.
pub async fn reconcile_once(
    store: &Store,
    collect_events: bool,
    silent: &BTreeMap<String, Duration>,
    grace: Duration,
) -> Result<Pass, StoreError> {
    let now = now_rfc3339();
    let (deployments, _) = store.list("Deployment", None).await?;
    let (rss, _) = store.list("ReplicaSet", None).await?;
    let pods = slim_pods(store).await?;
    let (jobs, _) = store.list("Job", None).await?;
    let (dss, _) = store.list("DaemonSet", None).await?;
    let (nodes, _) = store.list("Node", Some("")).await?;
    let rss_ns = by_namespace(rss.clone());
    let pods_ns = by_namespace(pods.clone());
    let empty = Vec::new();
    let ns_of = |o: &Value| {
        o["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let mut done = 0;
    let mut stale = 0;

    let mut work: Vec<(Value, Vec<Action>)> = Vec::new();
    for d in &deployments {
        work.push((
            d.clone(),
            deployment::plan(d, rss_ns.get(&ns_of(d)).unwrap_or(&empty)),
        ));
    }
    for rs in &rss {
        work.push((
            rs.clone(),
            replicaset::plan(rs, pods_ns.get(&ns_of(rs)).unwrap_or(&empty)),
        ));
    }
    for j in &jobs {
        work.push((
            j.clone(),
            job::plan(j, pods_ns.get(&ns_of(j)).unwrap_or(&empty), &now),
        ));
    }
    for ds in &dss {
        work.push((
            ds.clone(),
            daemonset::plan(ds, &nodes, pods_ns.get(&ns_of(ds)).unwrap_or(&empty)),
        ));
    }
    work.extend(super::nodes::plan(&nodes, &pods, silent, grace));
    // Objects deleted in the foreground: their dependents first.
    for owner in deployments.iter().chain(&rss).chain(&jobs).chain(&dss) {
        if super::gc::deleting_in_foreground(owner) {
            let ns = ns_of(owner);
            let candidates: Vec<&Value> = rss_ns
                .get(&ns)
                .into_iter()
                .flatten()
                .chain(pods_ns.get(&ns).into_iter().flatten())
                .collect();
            work.push((
                owner.clone(),
                super::gc::plan_foreground(owner, &candidates),
            ));
        }
    }
    for (owner, actions) in work {
        if actions.is_empty() {
            continue;
        }
        let n = actions.len();
        match execute(store, &owner, actions, &now).await {
            Ok(()) => done += n,
            Err(
                StoreError::Conflict { .. }
                | StoreError::NotFound { .. }
                | StoreError::AlreadyExists { .. },
            ) => {
                debug!(kind = %owner["kind"], name = %owner["metadata"]["name"], "stale plan, retrying next pass")
            }
            Err(e) => return Err(e),
        }
    }

    match schedule(store, &pods, &nodes, &now).await? {
        Some(n) => done += n,
        None => stale += 1,
    }

    if collect_events {
        let (events, _) = store.list("Event", None).await?;
        let t = chrono::Utc::now();
        let ops: Vec<Op> = events
            .iter()
            .filter(|e| expired(e, t))
            .filter_map(|e| Key::of(e).ok())
            .map(Op::delete)
            .collect();
        if !ops.is_empty() {
            done += ops.len();
            store
                .write(&Write {
                    now: now.clone(),
                    ops,
                })
                .await?;
        }
    }
    Ok(Pass { done, stale })
}

/// The parts of a Pod that planners and the scheduler read. Parsing into this skips commands,
/// images, env, volumes and probes, so a pass over 10,000 pods stays small.
#[derive(serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SlimPod {
    #[serde(default)]
    api_version: Value,
    #[serde(default)]
    kind: Value,
    #[serde(default)]
    metadata: Value,
    #[serde(default)]
    spec: SlimPodSpec,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    status: Value,
}

#[derive(serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct SlimPodSpec {
    #[serde(default, skip_serializing_if = "Value::is_null")]
    node_name: Value,
    #[serde(default)]
    containers: Vec<SlimContainer>,
    #[serde(default)]
    init_containers: Vec<SlimContainer>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    node_selector: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    tolerations: Value,
}

#[derive(serde::Deserialize, serde::Serialize, Default)]
struct SlimContainer {
    #[serde(default, skip_serializing_if = "Value::is_null")]
    resources: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    ports: Value,
}

/// Every pod, reduced to what planning needs. Writes that need the whole pod read it again.
async fn slim_pods(store: &Store) -> Result<Vec<Value>, StoreError> {
    let (pods, _) = store.list_as::<SlimPod>("Pod", None).await?;
    pods.into_iter()
        .map(|p| serde_json::to_value(p).map_err(StoreError::from))
        .collect()
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn name_of(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

/// Commits one owner's actions as one write, with the events they imply.
async fn execute(
    store: &Store,
    owner: &Value,
    actions: Vec<Action>,
    now: &str,
) -> Result<(), StoreError> {
    let component = "controller-manager";
    let mut ops = Vec::new();
    let ev = |reason: &str, msg: String, kind| Op::Create {
        object: with_name(event(owner, kind, reason, &msg, now, component)),
        uid: new_uid(),
    };
    for a in actions {
        match a {
            Action::Create(o) => {
                let o = with_name(o);
                let e = match o["kind"].as_str() {
                    Some("ReplicaSet") => ev(
                        "ScalingReplicaSet",
                        format!(
                            "Scaled up replica set {} to {}",
                            name_of(&o),
                            o["spec"]["replicas"]
                        ),
                        EventKind::Normal,
                    ),
                    _ => ev(
                        "SuccessfulCreate",
                        format!(
                            "Created {}: {}",
                            o["kind"].as_str().unwrap_or("").to_ascii_lowercase(),
                            name_of(&o)
                        ),
                        EventKind::Normal,
                    ),
                };
                ops.push(Op::Create {
                    object: o,
                    uid: new_uid(),
                });
                ops.push(e);
            }
            Action::Update(o) => {
                if o["kind"] == "ReplicaSet" && owner["kind"] == "Deployment" {
                    let n = o["spec"]["replicas"].as_i64().unwrap_or(0);
                    ops.push(ev(
                        "ScalingReplicaSet",
                        format!("Scaled replica set {} to {n}", name_of(&o)),
                        EventKind::Normal,
                    ));
                }
                ops.push(Op::Put {
                    object: o,
                    uid: new_uid(),
                    create: false,
                });
            }
            Action::Status(o) => ops.push(Op::Status { object: o }),
            Action::Delete(key) => {
                if key.kind == "Pod" {
                    ops.push(ev(
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", key.name),
                        EventKind::Normal,
                    ));
                }
                ops.push(Op::delete(key));
            }
            Action::DeleteInForeground(key) => ops.push(Op::Delete {
                key,
                resource_version: None,
                uid: None,
                grace_seconds: None,
                foreground: true,
            }),
            Action::Event {
                about,
                kind,
                reason,
                message,
            } => {
                ops.push(Op::Create {
                    object: with_name(event(&about, kind, &reason, &message, now, component)),
                    uid: new_uid(),
                });
            }
        }
    }
    store
        .write(&Write {
            now: now.to_string(),
            ops,
        })
        .await
        .map(|_| ())
}

/// Fills in a generated name.
fn with_name(mut o: Value) -> Value {
    if name_of(&o).is_empty() {
        let prefix = o["metadata"]["generateName"]
            .as_str()
            .unwrap_or("")
            .to_string();
        o["metadata"]["name"] = Value::from(format!("{prefix}{}", random_suffix()));
    }
    o
}

/// Binds pending pods to nodes in one write; `None` when the write was stale.
async fn schedule(
    store: &Store,
    pods: &[Value],
    nodes: &[Value],
    now: &str,
) -> Result<Option<usize>, StoreError> {
    let decisions = scheduler::place(pods, nodes);
    if decisions.is_empty() {
        return Ok(Some(0));
    }
    let find = |k: &Key| pods.iter().find(|p| Key::of(p).is_ok_and(|pk| pk == *k));
    let mut ops = Vec::new();
    for d in decisions {
        match d {
            Decision::Bind { pod, node } => {
                let Some(p) = find(&pod) else { continue };
                // The planning copy is slim; bind the whole pod, at the version planned from.
                let Some(mut bound) = store.get(&pod).await? else {
                    continue;
                };
                if bound["metadata"]["resourceVersion"] != p["metadata"]["resourceVersion"] {
                    continue;
                }
                bound["spec"]["nodeName"] = Value::from(node.as_str());
                let msg = format!(
                    "Successfully assigned {}/{} to {node}",
                    pod.namespace, pod.name
                );
                ops.push(Op::Put {
                    object: bound,
                    uid: new_uid(),
                    create: false,
                });
                ops.push(Op::Create {
                    object: with_name(event(
                        p,
                        EventKind::Normal,
                        "Scheduled",
                        &msg,
                        now,
                        "scheduler",
                    )),
                    uid: new_uid(),
                });
            }
            Decision::Unschedulable { pod, message } => {
                let Some(p) = find(&pod) else { continue };
                let cond = serde_json::json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message});
                let already = p["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.contains(&cond));
                if already {
                    continue;
                }
                let mut st = p.clone();
                st["status"] = serde_json::json!({"phase": "Pending", "conditions": [cond]});
                ops.push(Op::Status { object: st });
                ops.push(Op::Create {
                    object: with_name(event(
                        p,
                        EventKind::Warning,
                        "FailedScheduling",
                        &message,
                        now,
                        "scheduler",
                    )),
                    uid: new_uid(),
                });
            }
        }
    }
    let n = ops.len();
    if n == 0 {
        return Ok(Some(0));
    }
    match store
        .write(&Write {
            now: now.to_string(),
            ops,
        })
        .await
    {
        Ok(_) => Ok(Some(n)),
        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
