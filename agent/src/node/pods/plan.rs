//! The pod reconcile plan: a pure function of one pod's spec and what the node observes of it
//! (its sandbox, its containers' instances, probe results, failed starts, the time) to the
//! actions that move it on and the status Kubernetes would show for it.
//!
//! Every container of a pod is run as a sequence of instances, `<pod uid>_<name>_<attempt>`;
//! the attempt number is the container's restartCount. The two newest instances of each
//! container are kept (the running one and the previous, for `logs --previous`); an init
//! container's last instance shows that it completed, across agent restarts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::manifest::lifecycle::items;

/// Kubernetes' restart back-off: 10 s doubling to 5 min, reset after 10 min of running.
pub const BACKOFF_BASE_MS: u64 = 10_000;
pub const BACKOFF_MAX_MS: u64 = 300_000;
pub const BACKOFF_RESET_MS: u64 = 600_000;

/// One instance of a container, as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Instance {
    pub attempt: u32,
    pub id: String,
    pub state: InstanceState,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InstanceState {
    /// Its shim has not reported yet.
    Starting,
    Running {
        started_ms: u64,
    },
    Exited(Ended),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ended {
    pub code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub started_ms: u64,
    pub finished_ms: u64,
    /// Lost: the shim died without recording an exit.
    pub lost: bool,
    /// What the container wrote to its `terminationMessagePath` (or, with
    /// `FallbackToLogsOnError`, its log's tail after a failure), as its status shows it.
    pub message: Option<String>,
}

/// What the prober knows of a running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probed {
    /// The readiness probe's verdict (true when there is none).
    pub ready: bool,
    /// Whether the startup probe has passed (true when there is none).
    pub started: bool,
    /// The liveness (or startup) probe failed past its threshold: restart it.
    pub failed: Option<&'static str>,
}

impl Default for Probed {
    fn default() -> Probed {
        Probed {
            ready: true,
            started: true,
            failed: None,
        }
    }
}

/// A start that failed before any instance existed (image missing, bad command, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    pub reason: String,
    pub message: String,
    pub at_ms: u64,
    /// Failures in a row, for the back-off.
    pub count: u32,
}

/// What the node observes of one pod.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub sandbox: bool,
    /// Instances of each container by name, oldest first.
    pub instances: BTreeMap<String, Vec<Instance>>,
    /// By instance id; missing means "nothing known yet" (not ready if it has a probe).
    pub probes: BTreeMap<String, Probed>,
    /// By container name.
    pub start_failures: BTreeMap<String, StartFailure>,
    /// Restarts in a row without 10 minutes of running, by container name.
    pub streaks: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    CreateSandbox,
    Start {
        container: String,
        attempt: u32,
        init: bool,
        /// The back-off streak once this start is made.
        streak: u32,
    },
    Kill {
        id: String,
        reason: String,
    },
    Remove {
        id: String,
    },
}

/// A plan for one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// `status` without podIP, hostIP and startTime (the caller knows those).
    pub status: PodStatus,
    /// The pod has ended (Succeeded or Failed): nothing will start again.
    pub finished: bool,
    /// When the plan would change with nothing else changing (a back-off ends), in ms.
    pub wake_at: Option<u64>,
}

/// The delay before restart number `streak + 1` of a crash streak (the first is at once).
pub fn backoff_ms(streak: u32) -> u64 {
    if streak == 0 {
        return 0;
    }
    BACKOFF_BASE_MS
        .saturating_mul(1u64 << (streak - 1).min(20))
        .min(BACKOFF_MAX_MS)
}

pub fn rfc3339_ms(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A time of the status, to the second as Kubernetes writes it (so that a status read back
/// from the store compares equal to the one planned again).
pub fn time_ms(ms: u64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second((ms / 1000) as i64).unwrap_or_default())
}

fn container_id(id: &str) -> String {
    format!("flotilla://{id}")
}

fn terminated(e: &Ended, id: &str) -> ContainerState {
    let reason = if e.oom_killed {
        "OOMKilled"
    } else if e.lost {
        "Unknown"
    } else if e.code == 0 {
        "Completed"
    } else {
        "Error"
    };
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: e.code,
            reason: Some(reason.into()),
            started_at: Some(time_ms(e.started_ms)),
            finished_at: Some(time_ms(e.finished_ms)),
            container_id: Some(container_id(id)),
            signal: e.signal,
            message: e.message.clone(),
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

/// A container's status before anything of it ran: waiting for `reason`.
fn not_started(c: &Container, reason: &str) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        state: Some(waiting(reason, None)),
        ..Default::default()
    }
}

/// How one container stands after planning.
struct Standing {
    status: ContainerStatus,
    ready: bool,
    /// Ended and will not run again.
    done: Option<i32>,
    started_once: bool,
}

/// Whether the restart policy restarts a container that ended with `code`.
fn restarts(policy: &str, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

/// Plans one container; `init` containers count as done only when they exit 0.
fn plan_container(
    c: &Container,
    init: bool,
    policy: &str,
    obs: &Observed,
    now_ms: u64,
    actions: &mut Vec<Action>,
    wake_at: &mut Option<u64>,
) -> Standing {
    let mut wake = |at: u64| *wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
    let instances = obs.instances.get(&c.name).map(Vec::as_slice).unwrap_or(&[]);
    // Older instances than the newest two go.
    if instances.len() > 2 {
        for i in &instances[..instances.len() - 2] {
            actions.push(Action::Remove { id: i.id.clone() });
        }
    }
    let streak = obs.streaks.get(&c.name).copied().unwrap_or(0);
    let mut status = ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        restart_count: instances.last().map(|i| i.attempt as i32).unwrap_or(0),
        started: Some(false),
        ..Default::default()
    };
    let previous = instances.len().checked_sub(2).map(|k| &instances[k]);
    if let Some(Instance {
        state: InstanceState::Exited(e),
        id,
        ..
    }) = previous
    {
        status.last_state = Some(terminated(e, id));
    }
    let Some(latest) = instances.last() else {
        // Never started: start it, unless an earlier try failed and is backing off.
        let mut st = Standing {
            status,
            ready: false,
            done: None,
            started_once: false,
        };
        if let Some(f) = obs.start_failures.get(&c.name) {
            let wait = backoff_ms(f.count);
            if now_ms < f.at_ms + wait {
                wake(f.at_ms + wait);
                let reason = match f.reason.as_str() {
                    "ErrImagePull" => "ImagePullBackOff",
                    r => r,
                };
                st.status.state = Some(waiting(reason, Some(f.message.clone())));
                return st;
            }
            st.status.state = Some(waiting(&f.reason, Some(f.message.clone())));
        } else {
            st.status.state = Some(waiting(
                if init {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                },
                None,
            ));
        }
        actions.push(Action::Start {
            container: c.name.clone(),
            attempt: 0,
            init,
            streak,
        });
        return st;
    };
    match &latest.state {
        InstanceState::Starting => {
            status.state = Some(waiting("ContainerCreating", None));
            status.container_id = Some(container_id(&latest.id));
            Standing {
                status,
                ready: false,
                done: None,
                started_once: true,
            }
        }
        InstanceState::Running { started_ms } => {
            let probed = obs.probes.get(&latest.id).copied().unwrap_or(Probed {
                ready: c.readiness_probe.is_none(),
                started: c.startup_probe.is_none(),
                failed: None,
            });
            if let Some(why) = probed.failed {
                actions.push(Action::Kill {
                    id: latest.id.clone(),
                    reason: why.to_string(),
                });
            }
            let ready = probed.ready && probed.started && !init;
            status.state = Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(time_ms(*started_ms)),
                }),
                ..Default::default()
            });
            status.ready = ready;
            status.started = Some(probed.started);
            status.container_id = Some(container_id(&latest.id));
            Standing {
                status,
                ready,
                done: None,
                started_once: true,
            }
        }
        InstanceState::Exited(e) => {
            let again = if init {
                e.code != 0 && policy != "Never"
            } else {
                restarts(policy, e.code)
            };
            if !again {
                status.state = Some(terminated(e, &latest.id));
                status.container_id = Some(container_id(&latest.id));
                return Standing {
                    status,
                    ready: false,
                    done: Some(e.code),
                    started_once: true,
                };
            }
            // A run of 10 minutes or more ends the crash streak.
            let streak = if e.finished_ms.saturating_sub(e.started_ms) >= BACKOFF_RESET_MS {
                0
            } else {
                streak
            };
            let wait = backoff_ms(streak);
            status.last_state = Some(terminated(e, &latest.id));
            if now_ms >= e.finished_ms + wait {
                status.state = Some(waiting("ContainerCreating", None));
                actions.push(Action::Start {
                    container: c.name.clone(),
                    attempt: latest.attempt + 1,
                    init,
                    streak: streak + 1,
                });
            } else {
                wake(e.finished_ms + wait);
                status.state = Some(waiting(
                    "CrashLoopBackOff",
                    Some(format!(
                        "back-off {}s restarting failed container={} pod",
                        wait / 1000,
                        c.name
                    )),
                ));
            }
            Standing {
                status,
                ready: false,
                done: None,
                started_once: true,
            }
        }
    }
}

fn condition(kind: &str, ok: bool, prev: &PodStatus, now: &Time) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    // Keep the transition time while the condition holds its value.
    let since = items(&prev.conditions)
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: kind.into(),
        status: status.into(),
        last_transition_time: Some(since),
        ..Default::default()
    }
}

/// The four conditions of a pod's status.
fn conditions(initialized: bool, ready: bool, prev: &PodStatus, now: &Time) -> Vec<PodCondition> {
    vec![
        condition("PodScheduled", true, prev, now),
        condition("Initialized", initialized, prev, now),
        condition("ContainersReady", ready, prev, now),
        condition("Ready", ready, prev, now),
    ]
}

/// The reason of a pod stopped at its `activeDeadlineSeconds`, as the kubelet gives it.
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";

/// A pod past its deadline: Failed, not ready, with the kubelet's reason and message.
fn deadline_status(prev: &PodStatus, now: &Time) -> PodStatus {
    PodStatus {
        phase: Some("Failed".into()),
        conditions: Some(conditions(
            items(&prev.conditions)
                .iter()
                .any(|c| c.type_ == "Initialized" && c.status == "True"),
            false,
            prev,
            now,
        )),
        reason: Some(DEADLINE_EXCEEDED.into()),
        message: Some("Pod was active on the node longer than the specified deadline".into()),
        container_statuses: prev.container_statuses.clone(),
        init_container_statuses: prev.init_container_statuses.clone(),
        ..Default::default()
    }
}

/// Plans one pod. `prev` is its current status (for transition times and a finished phase).
pub fn plan(spec: &PodSpec, obs: &Observed, prev: &PodStatus, now_ms: u64) -> Plan {
    let now = time_ms(now_ms);
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let mut actions = Vec::new();
    let prev_phase = prev.phase.as_deref().unwrap_or("Pending");
    let already_finished = matches!(prev_phase, "Succeeded" | "Failed");
    // activeDeadlineSeconds counts from the pod's start on this node.
    let deadline_at = spec.active_deadline_seconds.map(|d| {
        let start = prev
            .start_time
            .as_ref()
            .map_or(now_ms, |t| t.0.as_millisecond().max(0) as u64);
        start.saturating_add((d.max(0) as u64).saturating_mul(1000))
    });
    let past_deadline = if already_finished {
        prev.reason.as_deref() == Some(DEADLINE_EXCEEDED)
    } else {
        deadline_at.is_some_and(|at| now_ms >= at)
    };
    if past_deadline && !obs.sandbox {
        return Plan {
            actions: Vec::new(),
            status: deadline_status(prev, &now),
            finished: true,
            wake_at: None,
        };
    }
    if !obs.sandbox && !already_finished {
        let pending = |cs: &[Container], reason: &str| -> Vec<ContainerStatus> {
            cs.iter().map(|c| not_started(c, reason)).collect()
        };
        let inits = items(&spec.init_containers);
        let status = PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(conditions(inits.is_empty(), false, prev, &now)),
            container_statuses: Some(pending(&spec.containers, "ContainerCreating")),
            init_container_statuses: (!inits.is_empty()).then(|| pending(inits, "PodInitializing")),
            ..Default::default()
        };
        return Plan {
            actions: vec![Action::CreateSandbox],
            status,
            finished: false,
            wake_at: None,
        };
    }

    // Init containers, one at a time, in order.
    let mut wake_at = None;
    let mut init_statuses = Vec::new();
    let mut initialized = true;
    let mut init_failed = None;
    for c in items(&spec.init_containers) {
        if !initialized {
            init_statuses.push(not_started(c, "PodInitializing"));
            continue;
        }
        let mut own = Vec::new();
        let st = plan_container(c, true, policy, obs, now_ms, &mut own, &mut wake_at);
        match st.done {
            Some(0) => {}
            Some(code) => {
                initialized = false;
                init_failed = Some(code);
            }
            None => initialized = false,
        }
        if !already_finished {
            actions.extend(own);
        } else {
            actions.extend(
                own.into_iter()
                    .filter(|a| matches!(a, Action::Remove { .. })),
            );
        }
        init_statuses.push(st.status);
    }

    let mut statuses = Vec::new();
    let mut all_ready = true;
    let mut all_started = true;
    let mut ended = Vec::new();
    for c in &spec.containers {
        if !initialized {
            statuses.push(not_started(c, "PodInitializing"));
            all_ready = false;
            all_started = false;
            continue;
        }
        let mut own = Vec::new();
        let st = plan_container(c, false, policy, obs, now_ms, &mut own, &mut wake_at);
        if already_finished {
            // A finished pod starts nothing again; it only tidies and stops strays.
            own.retain(|a| !matches!(a, Action::Start { .. }));
        }
        actions.extend(own);
        all_ready &= st.ready;
        all_started &= st.started_once;
        if let Some(code) = st.done {
            ended.push(code);
        }
        statuses.push(st.status);
    }

    let phase = if init_failed.is_some() {
        "Failed"
    } else if initialized && !spec.containers.is_empty() && ended.len() == spec.containers.len() {
        if ended.iter().all(|c| *c == 0) {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if already_finished {
        prev_phase
    } else if initialized && all_started {
        "Running"
    } else {
        "Pending"
    };
    if past_deadline {
        // Everything still running is stopped; nothing starts again.
        let killing: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Kill { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect();
        for i in obs.instances.values().filter_map(|is| is.last()) {
            if matches!(
                i.state,
                InstanceState::Running { .. } | InstanceState::Starting
            ) && !killing.contains(&i.id)
            {
                actions.push(Action::Kill {
                    id: i.id.clone(),
                    reason: DEADLINE_EXCEEDED.into(),
                });
            }
        }
        actions.retain(|a| !matches!(a, Action::Start { .. }));
        // A stopped container stays terminated (not waiting for a restart that will not come).
        for st in statuses.iter_mut().chain(init_statuses.iter_mut()) {
            let Some(is) = obs.instances.get(&st.name) else {
                continue;
            };
            if let Some(Instance {
                state: InstanceState::Exited(e),
                id,
                ..
            }) = is.last()
            {
                st.state = Some(terminated(e, id));
                st.container_id = Some(container_id(id));
                st.last_state = match is.len().checked_sub(2).map(|k| &is[k]) {
                    Some(Instance {
                        state: InstanceState::Exited(e),
                        id,
                        ..
                    }) => Some(terminated(e, id)),
                    _ => None,
                };
            }
        }
        let mut status = deadline_status(prev, &now);
        status.container_statuses = Some(statuses);
        status.init_container_statuses = (!init_statuses.is_empty()).then_some(init_statuses);
        return Plan {
            actions,
            status,
            finished: true,
            wake_at: None,
        };
    }
    if let Some(at) = deadline_at {
        wake_at = Some(wake_at.map_or(at, |w: u64| w.min(at)));
    }
    let finished = matches!(phase, "Succeeded" | "Failed");
    if finished {
        actions.retain(|a| !matches!(a, Action::Start { .. }));
    }
    let ready = all_ready && phase == "Running";
    let status = PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions(initialized, ready, prev, &now)),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        reason: init_failed.map(|_| "InitError".into()),
        message: init_failed.map(|code| format!("an init container exited with code {code}")),
        ..Default::default()
    };
    Plan {
        actions,
        status,
        finished,
        wake_at: if finished { None } else { wake_at },
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
