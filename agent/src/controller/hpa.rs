//! The horizontal pod autoscaler (`autoscaling/v2`), as kube-controller-manager's: every sync
//! period the leader measures each HorizontalPodAutoscaler's pods, proposes a replica count per
//! metric, takes the largest, stabilizes it and limits its rate by the `behavior`, and writes the
//! target's replicas, the HPA's status and an event.
//!
//! The maths are Kubernetes' (`pkg/controller/podautoscaler`): a usage ratio within the 0.1
//! tolerance changes nothing; pods Pending, not yet ready or in their CPU initialization period
//! are left out, and on a scale-up count as using nothing; pods without metrics count as using
//! nothing on a scale-up and their whole request on a scale-down; a correction that would flip
//! the direction is dropped. Pure functions of data, the loop at the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition,
    HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus, MetricValueStatus,
    ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::ReplicationController;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, warn};

use super::{Action, EventKind, Made, about, events, status_update};
use crate::manifest::defaults::rules_with_defaults;
use crate::manifest::lifecycle::{self, items};
use crate::manifest::quantity;
use crate::manifest::selector::Selector;
use crate::node::metrics::{Sample, parse_go_duration};
use crate::store::{Key, Store, StoreError};

/// How often the autoscalers are evaluated (kube-controller-manager's
/// `--horizontal-pod-autoscaler-sync-period`).
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);
/// A usage ratio this close to 1 changes nothing.
pub const TOLERANCE: f64 = 0.1;
/// After a pod starts, its CPU is trusted only once it has been ready for a whole window.
const CPU_INITIALIZATION: SignedDuration = SignedDuration::from_secs(300);
/// A pod that turned unready within this long of starting has never been ready.
const INITIAL_READINESS_DELAY: SignedDuration = SignedDuration::from_secs(30);
/// The scale-down stabilization window when `behavior` does not set one.
const DOWNSCALE_STABILIZATION: i64 = 300;

/// One pod's measured usage, in thousandths of each unit (millicores; millibytes, as
/// Kubernetes' `MilliValue`), and the window it was measured over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu: i64,
    pub memory: i64,
    /// When the window ended.
    pub timestamp: Timestamp,
    pub window: SignedDuration,
}

impl Usage {
    fn of(&self, resource: &str) -> i64 {
        if resource == "cpu" {
            self.cpu
        } else {
            self.memory
        }
    }
}

/// What an HPA's target says through its `/scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    pub replicas: i32,
    pub selector: Selector,
}

/// What a resource metric aims at.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// Percent of the pods' requests.
    Utilization(i32),
    /// Per pod, in thousandths of the unit.
    AverageValue(i64),
}

/// One metric's proposal.
#[derive(Debug, Clone, PartialEq)]
struct Proposal {
    replicas: i32,
    status: MetricStatus,
    /// How Kubernetes names the metric in conditions and events.
    name: String,
}

/// The pods' usages of one resource: those that count, the ones left out, and the ready count.
struct Grouped {
    metrics: HashMap<String, i64>,
    ready: usize,
    unready: Vec<String>,
    missing: Vec<String>,
}

/// Sorts pods as Kubernetes' `groupPods`: deleted and failed pods are ignored, Pending pods and
/// (for CPU) pods not yet ready or still initializing are unready, pods without a sample are
/// missing, the rest are ready and measured.
fn group(
    pods: &[&Pod],
    metrics: &HashMap<String, Usage>,
    resource: &str,
    now: Timestamp,
) -> Grouped {
    let mut g = Grouped {
        metrics: HashMap::new(),
        ready: 0,
        unready: Vec::new(),
        missing: Vec::new(),
    };
    for p in pods {
        let name = lifecycle::name(&p.metadata).to_string();
        let phase = lifecycle::pod_phase(p);
        if lifecycle::is_terminating(&p.metadata) || phase == "Failed" {
            continue;
        }
        if phase == "Pending" || phase.is_empty() {
            g.unready.push(name);
            continue;
        }
        let Some(m) = metrics.get(&name) else {
            g.missing.push(name);
            continue;
        };
        if resource == "cpu" && cpu_unready(p, m, now) {
            g.unready.push(name);
            continue;
        }
        g.metrics.insert(name, m.of(resource));
        g.ready += 1;
    }
    g
}

/// Whether a pod's CPU sample is not to be trusted yet (Kubernetes' rule: no Ready condition or
/// start time; within the initialization period, unready or sampled before a whole window of
/// readiness; after it, unready and never ready).
fn cpu_unready(p: &Pod, m: &Usage, now: Timestamp) -> bool {
    let status = p.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_deref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let start = status.and_then(|s| s.start_time.as_ref());
    let (Some(ready), Some(start)) = (ready, start) else {
        return true;
    };
    let transition = ready.last_transition_time.as_ref().map_or(start.0, |t| t.0);
    if start.0 + CPU_INITIALIZATION > now {
        ready.status == "False" || m.timestamp < transition + m.window
    } else {
        ready.status == "False" && start.0 + INITIAL_READINESS_DELAY > transition
    }
}

/// Each pod's request of `resource`, in thousandths; an error names the first container
/// without one (Utilization needs every request).
fn requests(pods: &[&Pod], resource: &str) -> Result<HashMap<String, i64>, String> {
    let mut out = HashMap::new();
    for p in pods {
        let name = lifecycle::name(&p.metadata);
        let mut sum = 0;
        for c in p.spec.as_ref().map_or(&[][..], |s| &s.containers) {
            let q = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource));
            let Some(q) = q else {
                return Err(format!(
                    "missing request for {resource} in container {} of Pod {name}",
                    c.name
                ));
            };
            sum += quantity::parse_milli(&q.0).unwrap_or(0);
        }
        out.insert(name.to_string(), sum);
    }
    Ok(out)
}

/// Usage over requests of the pods that have both: (ratio to the target, utilization percent,
/// average usage).
fn utilization_ratio(
    metrics: &HashMap<String, i64>,
    requests: &HashMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), String> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (pod, m) in metrics {
        if let Some(r) = requests.get(pod) {
            used += m;
            requested += r;
            n += 1;
        }
    }
    if requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let utilization = i32::try_from(used * 100 / requested).unwrap_or(i32::MAX);
    Ok((
        f64::from(utilization) / f64::from(target),
        utilization,
        used / n,
    ))
}

/// A resource metric's replica count, as Kubernetes' `GetResourceReplicas` (Utilization) and
/// `GetRawResourceReplicas` (AverageValue) reckon it. Returns (replicas, utilization percent if
/// a utilization target, average usage in thousandths).
fn resource_replicas(
    current: i32,
    target: Target,
    resource: &str,
    pods: &[&Pod],
    metrics: &HashMap<String, Usage>,
    now: Timestamp,
) -> Result<(i32, Option<i32>, i64), String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let mut g = group(pods, metrics, resource, now);
    if g.metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let ready = g.ready as f64;
    let reqs = match target {
        Target::Utilization(_) => requests(pods, resource)?,
        Target::AverageValue(_) => HashMap::new(),
    };
    // The ratio of usage to target over a set of measured pods.
    let ratio = |m: &HashMap<String, i64>| -> Result<(f64, Option<i32>, i64), String> {
        match target {
            Target::Utilization(t) => {
                utilization_ratio(m, &reqs, t).map(|(r, u, avg)| (r, Some(u), avg))
            }
            Target::AverageValue(t) => {
                let sum: i64 = m.values().sum();
                let avg = sum / m.len().max(1) as i64;
                Ok((sum as f64 / (t as f64 * m.len().max(1) as f64), None, avg))
            }
        }
    };
    let (usage_ratio, utilization, average) = ratio(&g.metrics)?;
    let up_with_unready = !g.unready.is_empty() && usage_ratio > 1.0;
    if !up_with_unready && g.missing.is_empty() {
        if (1.0 - usage_ratio).abs() <= TOLERANCE {
            return Ok((current, utilization, average));
        }
        return Ok(((usage_ratio * ready).ceil() as i32, utilization, average));
    }
    if !g.missing.is_empty() {
        for pod in &g.missing {
            let fallback = if usage_ratio < 1.0 {
                // A scale-down counts a silent pod as using all of its request (or the
                // target, when that is higher).
                match target {
                    Target::Utilization(t) => {
                        reqs.get(pod).copied().unwrap_or(0) * i64::from(t.max(100)) / 100
                    }
                    Target::AverageValue(t) => t,
                }
            } else {
                0
            };
            if usage_ratio != 1.0 {
                g.metrics.insert(pod.clone(), fallback);
            }
        }
    }
    if up_with_unready {
        for pod in &g.unready {
            g.metrics.insert(pod.clone(), 0);
        }
    }
    let (new_ratio, _, _) = ratio(&g.metrics)?;
    if (1.0 - new_ratio).abs() <= TOLERANCE
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok((current, utilization, average));
    }
    let replicas = (new_ratio * g.metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok((current, utilization, average));
    }
    Ok((replicas, utilization, average))
}

/// A thousandths amount as a quantity (`250m`, `3`, `128974848`).
fn milli_quantity(milli: i64) -> Quantity {
    Quantity(if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    })
}

/// The proposal of one metric of the spec.
fn propose(
    spec: &MetricSpec,
    current: i32,
    pods: &[&Pod],
    metrics: &HashMap<String, Usage>,
    now: Timestamp,
) -> Result<Proposal, (String, String)> {
    let failed = |e: String| ("FailedGetResourceMetric".to_string(), e);
    let Some(r) = spec.resource.as_ref().filter(|_| spec.type_ == "Resource") else {
        return Err((
            "InvalidMetricSourceType".into(),
            format!(
                "metric type {:?} is not supported by Flotilla yet",
                spec.type_
            ),
        ));
    };
    let target = match (r.target.type_.as_str(), &r.target) {
        ("Utilization", t) => Target::Utilization(t.average_utilization.unwrap_or(0).max(1)),
        ("AverageValue", t) => Target::AverageValue(
            t.average_value
                .as_ref()
                .and_then(|q| quantity::parse_milli(&q.0).ok())
                .unwrap_or(0)
                .max(1),
        ),
        (other, _) => {
            return Err(failed(format!(
                "invalid target type {other:?} for a resource metric"
            )));
        }
    };
    let (replicas, utilization, average) =
        resource_replicas(current, target, &r.name, pods, metrics, now).map_err(|e| {
            failed(format!(
                "failed to get {0} resource metric value: failed to get {0} utilization: {e}",
                r.name
            ))
        })?;
    let name = match target {
        Target::Utilization(_) => {
            format!("{} resource utilization (percentage of request)", r.name)
        }
        Target::AverageValue(_) => format!("{} resource", r.name),
    };
    Ok(Proposal {
        replicas,
        name,
        status: MetricStatus {
            type_: "Resource".into(),
            resource: Some(ResourceMetricStatus {
                name: r.name.clone(),
                current: MetricValueStatus {
                    average_utilization: utilization,
                    average_value: Some(milli_quantity(average)),
                    value: None,
                },
            }),
            ..Default::default()
        },
    })
}

/// What the controller remembers of one HPA between passes (as kube-controller-manager keeps
/// it in memory): its recent recommendations and scale changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    recommendations: Vec<(Timestamp, i32)>,
    /// (when, replicas added) and (when, replicas removed).
    ups: Vec<(Timestamp, i32)>,
    downs: Vec<(Timestamp, i32)>,
    /// The warnings of the last pass: a warning that repeats is not recorded again.
    warned: Vec<(String, String)>,
}

/// Replicas changed within the last `period` seconds.
fn changed_within(events: &[(Timestamp, i32)], period: i32, now: Timestamp) -> i32 {
    let cutoff = now - SignedDuration::from_secs(i64::from(period));
    events
        .iter()
        .filter(|(t, _)| *t > cutoff)
        .map(|(_, n)| n)
        .sum()
}

/// The highest (scaling up) or lowest (down) count the rules allow now.
fn rate_limit(current: i32, h: &History, rules: &HPAScalingRules, up: bool, now: Timestamp) -> i32 {
    let select = rules.select_policy.as_deref().unwrap_or("Max");
    if select == "Disabled" {
        return current;
    }
    // For a scale-up "Max" picks the largest proposal; for a scale-down the lowest count.
    let widest = select != "Min";
    let mut result: Option<i32> = None;
    for p in items(&rules.policies) {
        let start = current - changed_within(&h.ups, p.period_seconds, now)
            + changed_within(&h.downs, p.period_seconds, now);
        let proposed = match (p.type_.as_str(), up) {
            ("Pods", true) => start + p.value,
            ("Pods", false) => start - p.value,
            ("Percent", true) => {
                (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
            }
            ("Percent", false) => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
            _ => continue,
        };
        result = Some(match result {
            None => proposed,
            Some(r) if up == widest => r.max(proposed),
            Some(r) => r.min(proposed),
        });
    }
    result.unwrap_or(current)
}

/// A condition to set: (type, status, reason, message).
type Cond = (&'static str, &'static str, String, String);

fn cond(t: &'static str, s: &'static str, reason: &str, msg: impl Into<String>) -> Cond {
    (t, s, reason.to_string(), msg.into())
}

/// The recommendation stabilized over the windows (the lowest recent one caps a scale-up, the
/// highest recent one a scale-down), recorded in the history; and the condition that says so.
fn stabilize(
    current: i32,
    desired: i32,
    up_window: i64,
    down_window: i64,
    h: &mut History,
    now: Timestamp,
) -> (i32, Cond) {
    let up_cut = now - SignedDuration::from_secs(up_window);
    let down_cut = now - SignedDuration::from_secs(down_window);
    let (mut up_rec, mut down_rec) = (desired, desired);
    for (t, r) in &h.recommendations {
        if *t > up_cut {
            up_rec = up_rec.min(*r);
        }
        if *t > down_cut {
            down_rec = down_rec.max(*r);
        }
    }
    h.recommendations
        .retain(|(t, _)| *t > up_cut || *t > down_cut);
    h.recommendations.push((now, desired));
    let stabilized = current.max(up_rec).min(down_rec);
    let c = if stabilized == desired {
        cond(
            "AbleToScale",
            "True",
            "ReadyForNewScale",
            "recommended size matches current size",
        )
    } else if desired >= current {
        cond(
            "AbleToScale",
            "True",
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        cond(
            "AbleToScale",
            "True",
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    };
    (stabilized, c)
}

/// The stabilized recommendation brought within min/max and the scaling rates (`up_rate` the
/// most it may grow to now, `down_rate` the least it may shrink to).
fn limit(
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    up_rate: i32,
    down_rate: i32,
) -> (i32, Cond) {
    let limited = |n: i32, reason: &str, msg: &str| {
        let st = if n == desired { "False" } else { "True" };
        (n, cond("ScalingLimited", st, reason, msg))
    };
    if desired > current {
        let rate = up_rate.max(current);
        let (allowed, reason, msg) = if max > rate {
            (
                rate,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                max,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        if desired > allowed {
            return limited(allowed, reason, msg);
        }
    } else if desired < current {
        let rate = down_rate.min(current);
        let (allowed, reason, msg) = if min < rate {
            (
                rate,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        };
        if desired < allowed {
            return limited(allowed, reason, msg);
        }
    }
    limited(
        desired,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
}

/// What one evaluation of an HPA decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The target's new replica count, when it changes.
    pub scale_to: Option<i32>,
    pub status: HorizontalPodAutoscalerStatus,
    /// (kind, reason, message) of each event about the HPA.
    pub events: Vec<(EventKind, String, String)>,
}

/// Evaluates one HPA: its target's scale (or why it could not be read), the pods it selects and
/// their usage (by pod name).
pub fn evaluate(
    hpa: &HorizontalPodAutoscaler,
    scale: Result<&Scale, String>,
    pods: &[&Pod],
    metrics: &HashMap<String, Usage>,
    h: &mut History,
    now: Timestamp,
) -> Outcome {
    let mut o = decide(hpa, scale, pods, metrics, h, now);
    let warnings: Vec<(String, String)> = o
        .events
        .iter()
        .filter(|(k, _, _)| *k == EventKind::Warning)
        .map(|(_, r, m)| (r.clone(), m.clone()))
        .collect();
    o.events.retain(|(k, r, m)| {
        *k == EventKind::Normal || !h.warned.iter().any(|(wr, wm)| wr == r && wm == m)
    });
    h.warned = warnings;
    o
}

fn decide(
    hpa: &HorizontalPodAutoscaler,
    scale: Result<&Scale, String>,
    pods: &[&Pod],
    metrics: &HashMap<String, Usage>,
    h: &mut History,
    now: Timestamp,
) -> Outcome {
    let spec = hpa.spec.clone().unwrap_or_default();
    let old = hpa.status.clone().unwrap_or_default();
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let mut conds: Vec<Cond> = Vec::new();
    let mut events = Vec::new();
    let mut status = HorizontalPodAutoscalerStatus {
        observed_generation: hpa.metadata.generation,
        last_scale_time: old.last_scale_time.clone(),
        current_metrics: old.current_metrics.clone(),
        current_replicas: old.current_replicas,
        desired_replicas: old.desired_replicas,
        conditions: None,
    };
    let scale = match scale {
        Ok(s) => s,
        Err(e) => {
            let msg =
                format!("the HPA controller was unable to get the target's current scale: {e}");
            events.push((EventKind::Warning, "FailedGetScale".into(), e.clone()));
            conds.push(cond("AbleToScale", "False", "FailedGetScale", msg));
            status.conditions = Some(merge_conditions(&old, conds, now));
            return Outcome {
                scale_to: None,
                status,
                events,
            };
        }
    };
    conds.push(cond(
        "AbleToScale",
        "True",
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
    ));
    let current = scale.replicas;
    let mut desired = 0;
    let mut reason = String::new();
    let mut rescale = true;
    if current == 0 && min != 0 {
        rescale = false;
        conds.push(cond(
            "ScalingActive",
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        ));
    } else if current > max {
        reason = "Current number of replicas above Spec.MaxReplicas".into();
        desired = max;
    } else if current < min {
        reason = "Current number of replicas below Spec.MinReplicas".into();
        desired = min;
    } else {
        let specs = items(&spec.metrics);
        let mut best: Option<Proposal> = None;
        let mut statuses = Vec::new();
        let mut errors: Vec<(String, String)> = Vec::new();
        for m in specs {
            match propose(m, current, pods, metrics, now) {
                Ok(p) => {
                    statuses.push(p.status.clone());
                    if best.as_ref().is_none_or(|b| p.replicas > b.replicas) {
                        best = Some(p);
                    }
                }
                Err(e) => {
                    // An empty status keeps each metric's place, as Kubernetes writes it.
                    statuses.push(MetricStatus::default());
                    events.push((EventKind::Warning, e.0.clone(), e.1.clone()));
                    errors.push(e);
                }
            }
        }
        status.current_metrics = (!statuses.is_empty()).then_some(statuses);
        // All metrics invalid, or some invalid and the rest would scale down: nothing changes.
        let best = best.filter(|b| errors.is_empty() || b.replicas >= current);
        let Some(best) = best else {
            let (r, msg) = errors.first().cloned().unwrap_or_else(|| {
                (
                    "FailedGetResourceMetric".into(),
                    "no metrics to scale by".into(),
                )
            });
            conds.push(cond(
                "ScalingActive",
                "False",
                &r,
                format!("the HPA was unable to compute the replica count: {msg}"),
            ));
            events.push((
                EventKind::Warning,
                "FailedComputeMetricsReplicas".into(),
                format!(
                    "invalid metrics ({} invalid out of {}), first error is: {msg}",
                    errors.len(),
                    specs.len()
                ),
            ));
            status.current_replicas = Some(current);
            status.desired_replicas = current;
            status.conditions = Some(merge_conditions(&old, conds, now));
            return Outcome {
                scale_to: None,
                status,
                events,
            };
        };
        conds.push(cond(
            "ScalingActive",
            "True",
            "ValidMetricFound",
            format!(
                "the HPA was able to successfully calculate a replica count from {}",
                best.name
            ),
        ));
        desired = best.replicas;
        if desired > current {
            reason = format!("{} above target", best.name);
        } else if desired < current {
            reason = "All metrics below target".into();
        }
        let (up_window, down_window, up_rate, down_rate) = match &spec.behavior {
            Some(b) => {
                let up = rules_with_defaults(b.scale_up.as_ref(), true);
                let down = rules_with_defaults(b.scale_down.as_ref(), false);
                (
                    up.stabilization_window_seconds.map_or(0, i64::from),
                    down.stabilization_window_seconds
                        .map_or(DOWNSCALE_STABILIZATION, i64::from),
                    rate_limit(current, h, &up, true, now),
                    rate_limit(current, h, &down, false, now),
                )
            }
            // Without a behavior Kubernetes grows to at most double (at least 4) per pass,
            // shrinks at any rate, and stabilizes scale-downs over 5 minutes.
            None => (0, DOWNSCALE_STABILIZATION, (2 * current).max(4), i32::MIN),
        };
        let (stabilized, c) = stabilize(current, desired, up_window, down_window, h, now);
        conds.push(c);
        let (limited, c) = limit(current, stabilized, min, max, up_rate, down_rate);
        conds.push(c);
        desired = limited;
        rescale = desired != current;
    }
    let mut scale_to = None;
    if rescale && desired != current {
        scale_to = Some(desired);
        conds.push(cond(
            "AbleToScale",
            "True",
            "SucceededRescale",
            format!("the HPA controller was able to update the target scale to {desired}"),
        ));
        events.push((
            EventKind::Normal,
            "SuccessfulRescale".into(),
            format!("New size: {desired}; reason: {reason}"),
        ));
        if desired > current {
            h.ups.push((now, desired - current));
        } else {
            h.downs.push((now, current - desired));
        }
        let horizon = now - SignedDuration::from_secs(3600);
        h.ups.retain(|(t, _)| *t > horizon);
        h.downs.retain(|(t, _)| *t > horizon);
        status.last_scale_time = Some(Time(now));
    } else {
        desired = current;
    }
    status.current_replicas = Some(current);
    status.desired_replicas = desired;
    status.conditions = Some(merge_conditions(&old, conds, now));
    Outcome {
        scale_to,
        status,
        events,
    }
}

/// The conditions after this pass, in Kubernetes' order (AbleToScale, ScalingActive,
/// ScalingLimited); a later setting of a type wins, and a condition whose status did not change
/// keeps its transition time.
fn merge_conditions(
    old: &HorizontalPodAutoscalerStatus,
    set: Vec<Cond>,
    now: Timestamp,
) -> Vec<HorizontalPodAutoscalerCondition> {
    let mut out: Vec<HorizontalPodAutoscalerCondition> = Vec::new();
    for (t, s, reason, msg) in set {
        let since = items(&old.conditions)
            .iter()
            .find(|c| c.type_ == t && c.status == s)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        let c = HorizontalPodAutoscalerCondition {
            type_: t.into(),
            status: s.into(),
            reason: Some(reason),
            message: Some(msg),
            last_transition_time: Some(since),
        };
        match out.iter_mut().find(|o| o.type_ == t) {
            Some(o) => *o = c,
            None => out.push(c),
        }
    }
    // Conditions not set this pass stay as they were.
    for c in items(&old.conditions) {
        if !out.iter().any(|o| o.type_ == c.type_) {
            out.push(c.clone());
        }
    }
    let rank = |t: &str| match t {
        "AbleToScale" => 0,
        "ScalingActive" => 1,
        _ => 2,
    };
    out.sort_by_key(|c| rank(&c.type_));
    out
}

/// Every node's samples, gathered (the API's fan-out, given by the agent).
pub type Samples = Arc<dyn Fn() -> BoxFuture<'static, Vec<Sample>> + Send + Sync>;

/// Each pod's usage by pod uid, from the nodes' samples.
pub fn usage_by_uid(samples: &[Sample]) -> HashMap<String, Usage> {
    let mut out = HashMap::new();
    for s in samples {
        let Ok(timestamp) = s.timestamp.parse::<Timestamp>() else {
            continue;
        };
        let window = parse_go_duration(&s.window)
            .and_then(|d| SignedDuration::try_from(d).ok())
            .unwrap_or_default();
        for (uid, containers) in &s.pods {
            let (mut cpu, mut memory) = (0, 0);
            for c in containers {
                cpu += quantity::parse_milli(&c.usage.cpu).unwrap_or(0);
                memory += quantity::parse_milli(&c.usage.memory).unwrap_or(0);
            }
            out.insert(
                uid.clone(),
                Usage {
                    cpu,
                    memory,
                    timestamp,
                    window,
                },
            );
        }
    }
    out
}

/// The running autoscaler; [`Autoscaler::shutdown`] stops and joins it.
pub struct Autoscaler {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Autoscaler {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the autoscaler of this node: it evaluates every HPA each `period` while `leading`.
pub fn spawn(
    store: Store,
    node: String,
    mut leading: watch::Receiver<bool>,
    samples: Samples,
    period: Duration,
) -> Autoscaler {
    let (stop, mut stop_rx) = watch::channel(false);
    let span = tracing::info_span!("autoscaler", node = %node);
    let task = tokio::spawn(
        async move {
            let mut histories: HashMap<String, History> = HashMap::new();
            loop {
                if !*leading.borrow_and_update() {
                    // A new leader starts without history, as a restarted controller does.
                    histories.clear();
                    tokio::select! {
                        r = leading.changed() => if r.is_err() { return },
                        _ = stop_rx.changed() => return,
                    }
                    continue;
                }
                if let Err(e) = pass(&store, &samples, &mut histories).await {
                    warn!(error = %e, "autoscaler pass failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = leading.changed() => {}
                    _ = stop_rx.changed() => return,
                }
            }
        }
        .instrument(span),
    );
    Autoscaler { stop, task }
}

/// The target's scale and the object to write it back to.
enum ScaleTarget {
    Deployment(Box<Deployment>),
    ReplicaSet(Box<ReplicaSet>),
    ReplicationController(Box<ReplicationController>),
}

async fn read_target(
    store: &Store,
    hpa: &HorizontalPodAutoscaler,
) -> Result<(ScaleTarget, Scale), String> {
    let spec = hpa.spec.as_ref().ok_or("no spec")?;
    let r = &spec.scale_target_ref;
    let ns = lifecycle::namespace(&hpa.metadata);
    if !matches!(
        r.kind.as_str(),
        "Deployment" | "ReplicaSet" | "ReplicationController"
    ) {
        return Err(format!(
            "the server could not find the requested resource: {} has no scale subresource in Flotilla",
            r.kind
        ));
    }
    let stored = store
        .get(&Key::new(&r.kind, ns, &r.name))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            let group = if r.kind == "ReplicationController" {
                ""
            } else {
                ".apps"
            };
            format!(
                "{}{group} \"{}\" not found",
                r.kind.to_ascii_lowercase() + "s",
                r.name
            )
        })?;
    let (target, replicas, selector) = match r.kind.as_str() {
        "Deployment" => {
            let d: Deployment = lifecycle::decode(stored).map_err(|e| e.to_string())?;
            let s = d.spec.clone().unwrap_or_default();
            (
                ScaleTarget::Deployment(Box::new(d)),
                s.replicas.unwrap_or(1),
                s.selector,
            )
        }
        "ReplicationController" => {
            let rc: ReplicationController = lifecycle::decode(stored).map_err(|e| e.to_string())?;
            let s = rc.spec.clone().unwrap_or_default();
            let selector = LabelSelector {
                match_labels: s.selector,
                ..Default::default()
            };
            (
                ScaleTarget::ReplicationController(Box::new(rc)),
                s.replicas.unwrap_or(1),
                selector,
            )
        }
        _ => {
            let rs: ReplicaSet = lifecycle::decode(stored).map_err(|e| e.to_string())?;
            let s = rs.spec.clone().unwrap_or_default();
            (
                ScaleTarget::ReplicaSet(Box::new(rs)),
                s.replicas.unwrap_or(1),
                s.selector,
            )
        }
    };
    let selector = Selector::from_label_selector(&selector)?;
    Ok((target, Scale { replicas, selector }))
}

/// One evaluation of every HPA.
async fn pass(
    store: &Store,
    samples: &Samples,
    histories: &mut HashMap<String, History>,
) -> Result<(), StoreError> {
    let hpas: Vec<HorizontalPodAutoscaler> = store
        .list_decodable("HorizontalPodAutoscaler", None)
        .await?;
    histories.retain(|k, _| {
        hpas.iter()
            .any(|h| lifecycle::uid(&h.metadata) == k.as_str())
    });
    if hpas.is_empty() {
        return Ok(());
    }
    let pods: Vec<Pod> = store.list_decodable("Pod", None).await?;
    let usage = usage_by_uid(&samples().await);
    let now_t = events::now();
    for hpa in &hpas {
        let ns = lifecycle::namespace(&hpa.metadata);
        let target = read_target(store, hpa).await;
        let selected: Vec<&Pod> = match &target {
            Ok((_, scale)) => pods
                .iter()
                .filter(|p| {
                    lifecycle::namespace(&p.metadata) == ns
                        && scale.selector.matches(lifecycle::labels(&p.metadata))
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let metrics: HashMap<String, Usage> = selected
            .iter()
            .filter_map(|p| {
                let u = usage.get(lifecycle::uid(&p.metadata))?;
                Some((lifecycle::name(&p.metadata).to_string(), *u))
            })
            .collect();
        let h = histories
            .entry(lifecycle::uid(&hpa.metadata).to_string())
            .or_default();
        let before = h.clone();
        let outcome = evaluate(
            hpa,
            target.as_ref().map(|(_, s)| s).map_err(Clone::clone),
            &selected,
            &metrics,
            h,
            now_t.0,
        );
        let mut actions = Vec::new();
        if let (Some(n), Ok((t, _))) = (outcome.scale_to, target) {
            actions.push(Action::Update(match t {
                ScaleTarget::Deployment(mut d) => {
                    d.spec.get_or_insert_with(Default::default).replicas = Some(n);
                    Made::Deployment(d)
                }
                ScaleTarget::ReplicaSet(mut rs) => {
                    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
                    Made::ReplicaSet(rs)
                }
                ScaleTarget::ReplicationController(mut rc) => {
                    rc.spec.get_or_insert_with(Default::default).replicas = Some(n);
                    Made::ReplicationController(rc)
                }
            }));
        }
        actions.extend(status_update(hpa, hpa.status.as_ref(), outcome.status));
        for (kind, reason, message) in outcome.events {
            actions.push(Action::Event {
                about: about(hpa),
                kind,
                reason,
                message,
            });
        }
        if actions.is_empty() {
            continue;
        }
        match super::runner::execute(store, &about(hpa), actions, &now_t).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                // Planned from a stale read: nothing happened, so nothing is remembered.
                *h = before;
                debug!(hpa = %lifecycle::name(&hpa.metadata), "stale, evaluated again next pass");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
