//! The controller runner: one task that, on every store change and on a periodic resync, reads
//! the objects, runs every planner and the scheduler, and commits their actions.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, warn};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Event, Node, ObjectReference, Pod, PodCondition, PodStatus, ReplicationController,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::events::{self, event, expired, named};
use super::gc::{self, Dependent};
use super::{
    Action, EventKind, Made, Object, OwnerIndex, about, cronjob, daemonset, deployment, job,
    key_of, replicaset, status_update,
};
use crate::manifest::kinds;
use crate::manifest::lifecycle::{self, encode};
use crate::scheduler::{self, Decision};
use crate::store::{Key, Op, Store, StoreError, Write, new_uid};

/// How often controllers re-plan with no store change (catches time-based work).
const RESYNC: Duration = Duration::from_secs(5);
/// The kinds a controller pass reads: a change to any other kind does not wake the controllers.
const CONTROLLED: [&str; 8] = [
    "Deployment",
    "ReplicaSet",
    "ReplicationController",
    "Pod",
    "Job",
    "CronJob",
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
            // Warnings the CronJob planner has given (kept by this leader only).
            let mut said = cronjob::Said::new();
            // Since when pods have tolerated a NoExecute taint for a while (this leader's).
            let mut tolerating = BTreeMap::new();
            loop {
                if !*leading.borrow_and_update() {
                    silent_since.clear();
                    tolerating.clear();
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
                    silent_since
                        .entry(n)
                        .or_insert_with(std::time::Instant::now);
                }
                let silent: BTreeMap<String, Duration> = silent_since
                    .iter()
                    .map(|(n, t)| (n.clone(), t.elapsed()))
                    .collect();
                let mut idle = if silent_since.is_empty() {
                    RESYNC
                } else {
                    Duration::from_secs(1)
                };
                let retry = match reconcile_once(
                    &store,
                    passes.is_multiple_of(120),
                    &silent,
                    lifecycle.grace,
                    &mut said,
                    &mut tolerating,
                )
                .await
                {
                    Ok(p) => {
                        if p.done > 0 {
                            debug!(actions = p.done, stale = p.stale, "reconciled");
                        }
                        if let Some(at) = p.wake {
                            // A scheduled time comes before the resync: wake for it.
                            let ms = at.as_millisecond()
                                - k8s_openapi::jiff::Timestamp::now().as_millisecond();
                            idle = idle.min(Duration::from_millis(ms.max(0) as u64));
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
                    _ = tokio::time::sleep(idle) => {}
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

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Actions committed.
    pub done: usize,
    /// Plans that were stale when committed (an object changed since it was read); the next
    /// pass plans them again.
    pub stale: usize,
    /// The next time a plan asks for with nothing else changing (a CronJob's next schedule).
    pub wake: Option<k8s_openapi::jiff::Timestamp>,
}

/// Every stored object of a kind, typed (cluster-scoped kinds from the "" namespace).
async fn typed<T: Object>(store: &Store) -> Result<Vec<T>, StoreError> {
    let cluster_scoped = matches!(kinds::by_kind(T::KIND).map(|k| k.namespaced), Some(false));
    store
        .list_decodable(T::KIND, cluster_scoped.then_some(""))
        .await
}

/// The objects of `owners` deleted in the foreground, each with the collector's step.
fn foreground<'a, T: Object + Into<Made>>(
    owners: &'a [T],
    candidates: &dyn Fn(&str) -> Vec<Dependent<'a>>,
) -> Vec<(ObjectReference, Vec<Action>)> {
    owners
        .iter()
        .filter(|o| gc::deleting_in_foreground(o.metadata()))
        .map(|o| {
            let ns = o.metadata().namespace.as_deref().unwrap_or("");
            (about(o), gc::plan_foreground(o, &candidates(ns)))
        })
        .collect()
}

/// One pass of every controller and the scheduler.
pub async fn reconcile_once(
    store: &Store,
    collect_events: bool,
    silent: &BTreeMap<String, Duration>,
    grace: Duration,
    said: &mut cronjob::Said,
    tolerating: &mut BTreeMap<String, k8s_openapi::jiff::Timestamp>,
) -> Result<Pass, StoreError> {
    let now_t = events::now();
    let now = rfc3339(&now_t);
    let deployments: Vec<Deployment> = typed(store).await?;
    let rss: Vec<ReplicaSet> = typed(store).await?;
    let pods: Vec<Pod> = typed(store).await?;
    let jobs: Vec<Job> = typed(store).await?;
    let cronjobs: Vec<CronJob> = typed(store).await?;
    let rcs: Vec<ReplicationController> = typed(store).await?;
    let dss: Vec<DaemonSet> = typed(store).await?;
    let nodes: Vec<Node> = typed(store).await?;
    let rs_of = OwnerIndex::new(&rss);
    let pods_of = OwnerIndex::new(&pods);
    let jobs_of = OwnerIndex::new(&jobs);
    let mut wake: Option<k8s_openapi::jiff::Timestamp> = None;
    let mut done = 0;
    let mut stale = 0;

    // Each owner with what its plan asks (a converged owner asks nothing and is left out).
    let mut work: Vec<(ObjectReference, Vec<Action>)> = Vec::new();
    fn planned<T: Object>(
        work: &mut Vec<(ObjectReference, Vec<Action>)>,
        o: &T,
        actions: Vec<Action>,
    ) {
        if !actions.is_empty() {
            work.push((about(o), actions));
        }
    }
    for d in &deployments {
        planned(
            &mut work,
            d,
            deployment::plan(d, rs_of.of(&d.metadata), &now_t),
        );
    }
    for rs in &rss {
        planned(
            &mut work,
            rs,
            replicaset::plan(rs, pods_of.of(&rs.metadata), &now_t),
        );
    }
    for rc in &rcs {
        planned(
            &mut work,
            rc,
            replicaset::plan_rc(rc, pods_of.of(&rc.metadata), &now_t),
        );
    }
    for j in &jobs {
        // A deadline or a TTL to come wakes the runner then (a past one is planned now).
        if let Some(at) = job::wake_at(j).filter(|at| *at > now_t.0) {
            wake = Some(wake.map_or(at, |w| w.min(at)));
        }
        planned(&mut work, j, job::plan(j, pods_of.of(&j.metadata), &now_t));
    }
    // (only when there are CronJobs to ask)
    let job_names: std::collections::BTreeSet<(&str, &str)> = jobs
        .iter()
        .filter(|_| !cronjobs.is_empty())
        .map(|j| {
            (
                lifecycle::namespace(&j.metadata),
                lifecycle::name(&j.metadata),
            )
        })
        .collect();
    // Warnings of CronJobs gone, or of times over an hour ago, are forgotten.
    let hour_ago = now_t.0.as_second() - 3600;
    said.retain(|(uid, at, _)| {
        (*at == 0 || *at > hour_ago) && cronjobs.iter().any(|c| lifecycle::uid(&c.metadata) == uid)
    });
    let mut to_say: std::collections::HashMap<String, Vec<cronjob::SaidKey>> = Default::default();
    for cj in &cronjobs {
        let ns = lifecycle::namespace(&cj.metadata);
        let taken = |name: &str| job_names.contains(&(ns, name));
        let p = cronjob::plan(cj, jobs_of.of(&cj.metadata), &taken, &now_t, said);
        wake = match (wake, p.wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if !p.said.is_empty() {
            to_say.insert(lifecycle::uid(&cj.metadata).to_string(), p.said);
        }
        planned(&mut work, cj, p.actions);
    }
    for ds in &dss {
        planned(
            &mut work,
            ds,
            daemonset::plan(ds, &nodes, pods_of.of(&ds.metadata), &now_t),
        );
    }
    work.extend(super::nodes::plan(&nodes, &pods, silent, grace));
    work.extend(super::nodes::taint_evictions(
        &nodes, &pods, tolerating, now_t.0,
    ));
    // Objects deleted in the foreground: their dependents first.
    let candidates = |ns: &str| -> Vec<Dependent> {
        let in_ns = |m: &ObjectMeta| m.namespace.as_deref().unwrap_or("") == ns;
        rss.iter()
            .filter(|r| in_ns(&r.metadata))
            .map(Dependent::of)
            .chain(
                jobs.iter()
                    .filter(|j| in_ns(&j.metadata))
                    .map(Dependent::of),
            )
            .chain(
                pods.iter()
                    .filter(|p| in_ns(&p.metadata))
                    .map(Dependent::of),
            )
            .collect()
    };
    work.extend(foreground(&deployments, &candidates));
    work.extend(foreground(&rss, &candidates));
    work.extend(foreground(&jobs, &candidates));
    work.extend(foreground(&dss, &candidates));
    work.extend(foreground(&cronjobs, &candidates));
    work.extend(foreground(&rcs, &candidates));
    for (owner, actions) in work {
        if actions.is_empty() {
            continue;
        }
        let n = actions.len();
        match execute(store, &owner, actions, &now_t).await {
            Ok(()) => {
                done += n;
                if let Some(keys) = owner.uid.as_ref().and_then(|u| to_say.remove(u)) {
                    said.extend(keys);
                }
            }
            Err(
                StoreError::Conflict { .. }
                | StoreError::NotFound { .. }
                | StoreError::AlreadyExists { .. },
            ) => {
                debug!(kind = ?owner.kind, name = ?owner.name, "stale plan, retrying next pass")
            }
            Err(e) => return Err(e),
        }
    }

    match schedule(store, &pods, &nodes, &now_t).await? {
        Some(n) => done += n,
        None => stale += 1,
    }

    if collect_events {
        let events: Vec<Event> = store.list_decodable("Event", None).await?;
        let ops: Vec<Op> = events
            .iter()
            .filter(|e| expired(e, now_t.0))
            .map(|e| Op::delete(key_of(e)))
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
    Ok(Pass { done, stale, wake })
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// An event as the store takes it, named.
fn event_op(e: Event) -> Op {
    Op::Create {
        object: encode(&named(e, &random_suffix())),
        uid: new_uid(),
    }
}

/// Commits one owner's actions as one write, with the events they imply.
pub(super) async fn execute(
    store: &Store,
    owner: &ObjectReference,
    actions: Vec<Action>,
    now: &Time,
) -> Result<(), StoreError> {
    let component = "controller-manager";
    let mut ops = Vec::new();
    let ev = |reason: &str, msg: String, kind| {
        event_op(event(owner, kind, reason, &msg, now, component))
    };
    for a in actions {
        match a {
            Action::Create(mut o) => {
                let meta = o.meta_mut();
                if lifecycle::name(meta).is_empty() {
                    let prefix = meta.generate_name.as_deref().unwrap_or("");
                    meta.name = Some(format!("{prefix}{}", random_suffix()));
                }
                let name = lifecycle::name(o.meta());
                let e = match (o.kind(), o.replicas()) {
                    ("ReplicaSet", Some(n)) => ev(
                        "ScalingReplicaSet",
                        format!("Scaled up replica set {name} to {n}"),
                        EventKind::Normal,
                    ),
                    // The CronJob controller's own wording.
                    ("Job", _) => ev(
                        "SuccessfulCreate",
                        format!("Created job {name}"),
                        EventKind::Normal,
                    ),
                    (kind, _) => ev(
                        "SuccessfulCreate",
                        format!("Created {}: {name}", kind.to_ascii_lowercase()),
                        EventKind::Normal,
                    ),
                };
                ops.push(Op::Create {
                    object: o.encode(),
                    uid: new_uid(),
                });
                ops.push(e);
            }
            Action::Update(o) => {
                if o.kind() == "ReplicaSet" && owner.kind.as_deref() == Some("Deployment") {
                    ops.push(ev(
                        "ScalingReplicaSet",
                        format!(
                            "Scaled replica set {} to {}",
                            lifecycle::name(o.meta()),
                            o.replicas().unwrap_or(0)
                        ),
                        EventKind::Normal,
                    ));
                }
                ops.push(Op::Put {
                    object: o.encode(),
                    uid: new_uid(),
                    create: false,
                });
            }
            Action::Status(o) => ops.push(Op::Status { object: o }),
            Action::Delete(key) => {
                // (an eviction's write is about the pod itself, and says so in its own event)
                if key.kind == "Pod" && owner.kind.as_deref() != Some("Pod") {
                    ops.push(ev(
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", key.name),
                        EventKind::Normal,
                    ));
                }
                ops.push(Op::delete(key));
            }
            Action::DeleteInForeground(key) => {
                // The CronJob controller's history and replaced Jobs.
                if key.kind == "Job" && owner.kind.as_deref() == Some("CronJob") {
                    ops.push(ev(
                        "SuccessfulDelete",
                        format!("Deleted job {}", key.name),
                        EventKind::Normal,
                    ));
                }
                ops.push(Op::Delete {
                    key,
                    resource_version: None,
                    uid: None,
                    grace_seconds: None,
                    foreground: true,
                })
            }
            Action::Event {
                about,
                kind,
                reason,
                message,
            } => ops.push(event_op(event(
                &about, kind, &reason, &message, now, component,
            ))),
        }
    }
    store
        .write(&Write {
            now: rfc3339(now),
            ops,
        })
        .await
        .map(|_| ())
}

/// A time as the store's writes carry it.
fn rfc3339(t: &Time) -> String {
    t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Binds pending pods to nodes in one write; `None` when the write was stale.
async fn schedule(
    store: &Store,
    pods: &[Pod],
    nodes: &[Node],
    now: &Time,
) -> Result<Option<usize>, StoreError> {
    let decisions = scheduler::place(pods, nodes);
    if decisions.is_empty() {
        return Ok(Some(0));
    }
    let find = |k: &Key| pods.iter().find(|p| key_of(*p) == *k);
    let mut ops = Vec::new();
    for d in decisions {
        match d {
            Decision::Bind { pod, node } => {
                let Some(p) = find(&pod) else { continue };
                // Bind the stored pod as it is, at the version planned from.
                let Some(stored) = store.get(&pod).await? else {
                    continue;
                };
                let Ok(mut bound) = lifecycle::decode::<Pod>(stored) else {
                    continue;
                };
                if bound.metadata.resource_version != p.metadata.resource_version {
                    continue;
                }
                bound.spec.get_or_insert_with(Default::default).node_name = Some(node.clone());
                let msg = format!(
                    "Successfully assigned {}/{} to {node}",
                    pod.namespace, pod.name
                );
                ops.push(Op::Put {
                    object: encode(&bound),
                    uid: new_uid(),
                    create: false,
                });
                ops.push(event_op(event(
                    &about(p),
                    EventKind::Normal,
                    "Scheduled",
                    &msg,
                    now,
                    "scheduler",
                )));
            }
            Decision::Unschedulable { pod, message } => {
                let Some(p) = find(&pod) else { continue };
                let cond = PodCondition {
                    type_: "PodScheduled".into(),
                    status: "False".into(),
                    reason: Some("Unschedulable".into()),
                    message: Some(message.clone()),
                    ..Default::default()
                };
                let status = PodStatus {
                    phase: Some("Pending".into()),
                    conditions: Some(vec![cond.clone()]),
                    ..Default::default()
                };
                let already = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_deref())
                    .is_some_and(|cs| cs.contains(&cond));
                if already {
                    continue;
                }
                if let Some(Action::Status(st)) = status_update(p, None, status) {
                    ops.push(Op::Status { object: st });
                }
                ops.push(event_op(event(
                    &about(p),
                    EventKind::Warning,
                    "FailedScheduling",
                    &message,
                    now,
                    "scheduler",
                )));
            }
        }
    }
    let n = ops.len();
    if n == 0 {
        return Ok(Some(0));
    }
    match store
        .write(&Write {
            now: rfc3339(now),
            ops,
        })
        .await
    {
        Ok(_) => Ok(Some(n)),
        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
