use super::*;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerSpec;
use serde_json::json;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

/// A running, ready pod started long ago, each container requesting `cpu`.
fn pod(name: &str, cpu: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "app", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]},
        "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
                   "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:10Z"}]},
    }))
    .unwrap()
}

fn usage(cpu_milli: i64, now: Timestamp) -> Usage {
    Usage {
        cpu: cpu_milli,
        memory: 32 * 1024 * 1024 * 1000,
        timestamp: now,
        window: SignedDuration::from_secs(15),
    }
}

fn hpa(
    min: i32,
    max: i32,
    metrics: serde_json::Value,
    behavior: Option<serde_json::Value>,
) -> HorizontalPodAutoscaler {
    let mut spec = json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": min, "maxReplicas": max, "metrics": metrics,
    });
    if let Some(b) = behavior {
        spec["behavior"] = b;
    }
    HorizontalPodAutoscaler {
        metadata: serde_json::from_value(
            json!({"name": "web", "namespace": "default", "uid": "hpa-1", "generation": 1}),
        )
        .unwrap(),
        spec: Some(serde_json::from_value::<HorizontalPodAutoscalerSpec>(spec).unwrap()),
        status: None,
    }
}

fn cpu(percent: i32) -> serde_json::Value {
    json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}}])
}

fn scale(replicas: i32) -> Scale {
    Scale {
        replicas,
        selector: Selector::parse("app=web").unwrap(),
    }
}

fn condition<'a>(o: &'a Outcome, t: &str) -> &'a HorizontalPodAutoscalerCondition {
    items(&o.status.conditions)
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} condition in {:?}", o.status.conditions))
}

/// Evaluates with the pods' usages given in millicores (None: no sample).
fn run(
    h: &HorizontalPodAutoscaler,
    replicas: i32,
    pods: &[(Pod, Option<i64>)],
    hist: &mut History,
    now: Timestamp,
) -> Outcome {
    let refs: Vec<&Pod> = pods.iter().map(|(p, _)| p).collect();
    let metrics: HashMap<String, Usage> = pods
        .iter()
        .filter_map(|(p, u)| Some((lifecycle::name(&p.metadata).to_string(), usage((*u)?, now))))
        .collect();
    evaluate(h, Ok(&scale(replicas)), &refs, &metrics, hist, now)
}

#[test]
fn a_busy_pod_scales_up_to_the_maximum_and_says_why() {
    let h = hpa(1, 3, cpu(50), None);
    let mut hist = History::default();
    // 250m used of 100m requested: 250%, five times the target.
    let o = run(
        &h,
        1,
        &[(pod("web-1", "100m"), Some(250))],
        &mut hist,
        at(0),
    );
    assert_eq!(o.scale_to, Some(3));
    assert_eq!(o.status.desired_replicas, 3);
    assert_eq!(o.status.current_replicas, Some(1));
    let current = &items(&o.status.current_metrics)[0]
        .resource
        .as_ref()
        .unwrap()
        .current;
    assert_eq!(current.average_utilization, Some(250));
    assert_eq!(current.average_value, Some(Quantity("250m".into())));
    let limited = condition(&o, "ScalingLimited");
    assert_eq!(
        (limited.status.as_str(), limited.reason.as_deref()),
        ("True", Some("TooManyReplicas"))
    );
    assert_eq!(
        condition(&o, "AbleToScale").reason.as_deref(),
        Some("SucceededRescale")
    );
    assert_eq!(
        condition(&o, "ScalingActive").reason.as_deref(),
        Some("ValidMetricFound")
    );
    assert_eq!(
        o.events,
        vec![(
            EventKind::Normal,
            "SuccessfulRescale".to_string(),
            "New size: 3; reason: cpu resource utilization (percentage of request) above target"
                .to_string()
        )]
    );
    assert_eq!(o.status.last_scale_time, Some(Time(at(0))));
}

#[test]
fn within_the_tolerance_nothing_changes() {
    let h = hpa(1, 10, cpu(50), None);
    let mut hist = History::default();
    let pods = [(pod("a", "100m"), Some(54)), (pod("b", "100m"), Some(52))];
    let o = run(&h, 2, &pods, &mut hist, at(0));
    assert_eq!(o.scale_to, None);
    assert_eq!(o.status.desired_replicas, 2);
    assert!(o.events.is_empty(), "{:?}", o.events);
    // 60% is past the tolerance: ceil(1.2 x 2) = 3.
    let pods = [(pod("a", "100m"), Some(60)), (pod("b", "100m"), Some(60))];
    assert_eq!(
        run(&h, 2, &pods, &mut History::default(), at(0)).scale_to,
        Some(3)
    );
}

#[test]
fn silent_pods_count_as_idle_on_the_way_up_and_busy_on_the_way_down() {
    let h = hpa(1, 10, cpu(50), None);
    // Up: one pod at 100% (ratio 2), one without a sample counted as 0: ratio 1, no change
    // would flip... (100 + 0) / 2 = 50%: within tolerance, so nothing changes.
    let pods = [(pod("a", "100m"), Some(100)), (pod("b", "100m"), None)];
    assert_eq!(
        run(&h, 2, &pods, &mut History::default(), at(0)).scale_to,
        None
    );
    // Up: 150% and a silent pod: (150 + 0) / 2 = 75%, 1.5 x 2 pods = 3.
    let pods = [(pod("a", "100m"), Some(150)), (pod("b", "100m"), None)];
    assert_eq!(
        run(&h, 2, &pods, &mut History::default(), at(0)).scale_to,
        Some(3)
    );
    // Down: 10% and a silent pod counted at its whole request: (10 + 100) / 2 = 55%, which
    // would turn a scale-down into a scale-up: nothing changes.
    let pods = [(pod("a", "100m"), Some(10)), (pod("b", "100m"), None)];
    let o = run(&h, 2, &pods, &mut History::default(), at(0));
    assert_eq!(o.scale_to, None);
    assert_eq!(o.status.desired_replicas, 2);
}

#[test]
fn unready_and_pending_pods_count_as_idle_on_a_scale_up() {
    // A fast scale-up rule, so that only the maths limit the count.
    let fast =
        json!({"scaleUp": {"policies": [{"type": "Pods", "value": 100, "periodSeconds": 15}]}});
    let h = hpa(1, 10, cpu(50), Some(fast));
    let mut pending = pod("p", "100m");
    pending.status.as_mut().unwrap().phase = Some("Pending".into());
    // 200% on the ready pod; the pending one counts as 0: (200 + 0) / 2 = 100%, x2 pods = 4.
    let pods = [(pod("a", "100m"), Some(200)), (pending, None)];
    assert_eq!(
        run(&h, 2, &pods, &mut History::default(), at(0)).scale_to,
        Some(4)
    );
    // A pod that just became ready has its sample from before readiness left out.
    let mut fresh = pod("f", "100m");
    let now = at(0);
    let st = fresh.status.as_mut().unwrap();
    st.start_time = Some(Time(now - SignedDuration::from_secs(20)));
    st.conditions.as_mut().unwrap()[0].last_transition_time =
        Some(Time(now - SignedDuration::from_secs(5)));
    let pods = [(pod("a", "100m"), Some(200)), (fresh.clone(), Some(900))];
    assert_eq!(
        run(&h, 2, &pods, &mut History::default(), now).scale_to,
        Some(4)
    );
    // Ready for longer than a window, its sample counts: (200 + 900) / 2 = 550%, to the max.
    fresh.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
        Some(Time(now - SignedDuration::from_secs(16)));
    let pods = [(pod("a", "100m"), Some(200)), (fresh, Some(900))];
    assert_eq!(
        run(&h, 2, &pods, &mut History::default(), now).scale_to,
        Some(10)
    );
}

#[test]
fn a_scale_down_waits_out_the_stabilization_window() {
    let behavior = json!({"scaleDown": {"stabilizationWindowSeconds": 60}});
    let h = hpa(1, 10, cpu(50), Some(behavior));
    let mut hist = History::default();
    let busy = [(pod("a", "100m"), Some(100)), (pod("b", "100m"), Some(100))];
    assert_eq!(run(&h, 2, &busy, &mut hist, at(0)).scale_to, Some(4));
    let idle: Vec<(Pod, Option<i64>)> = (0..4)
        .map(|i| (pod(&format!("p{i}"), "100m"), Some(1)))
        .collect();
    // Within the window the recommendation of 4 holds.
    let o = run(&h, 4, &idle, &mut hist, at(30));
    assert_eq!(o.scale_to, None);
    assert_eq!(
        condition(&o, "AbleToScale").reason.as_deref(),
        Some("ScaleDownStabilized")
    );
    // Past it, down to the minimum.
    let o = run(&h, 4, &idle, &mut hist, at(91));
    assert_eq!(o.scale_to, Some(1));
    assert_eq!(
        o.events[0].2,
        "New size: 1; reason: All metrics below target"
    );
}

#[test]
fn a_scale_down_without_behavior_waits_five_minutes() {
    let h = hpa(1, 10, cpu(50), None);
    let mut hist = History::default();
    let busy = [(pod("a", "100m"), Some(100)), (pod("b", "100m"), Some(100))];
    assert_eq!(run(&h, 2, &busy, &mut hist, at(0)).scale_to, Some(4));
    let idle: Vec<(Pod, Option<i64>)> = (0..4)
        .map(|i| (pod(&format!("p{i}"), "100m"), Some(1)))
        .collect();
    assert_eq!(run(&h, 4, &idle, &mut hist, at(299)).scale_to, None);
    assert_eq!(run(&h, 4, &idle, &mut hist, at(301)).scale_to, Some(1));
}

#[test]
fn scaling_policies_limit_the_rate() {
    let behavior =
        json!({"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}});
    let h = hpa(1, 10, cpu(50), Some(behavior));
    let mut hist = History::default();
    let o = run(&h, 1, &[(pod("a", "100m"), Some(500))], &mut hist, at(0));
    assert_eq!(o.scale_to, Some(2));
    let limited = condition(&o, "ScalingLimited");
    assert_eq!(
        (limited.status.as_str(), limited.reason.as_deref()),
        ("True", Some("ScaleUpLimit"))
    );
    // 15 s later the one pod allowed per minute is spent.
    let pods = [(pod("a", "100m"), Some(500)), (pod("b", "100m"), Some(500))];
    assert_eq!(run(&h, 2, &pods, &mut hist, at(15)).scale_to, None);
    // A minute after the first step, one more.
    assert_eq!(run(&h, 2, &pods, &mut hist, at(61)).scale_to, Some(3));
    // Disabled: never up.
    let off = hpa(
        1,
        10,
        cpu(50),
        Some(json!({"scaleUp": {"selectPolicy": "Disabled"}})),
    );
    assert_eq!(
        run(
            &off,
            1,
            &[(pod("a", "100m"), Some(500))],
            &mut History::default(),
            at(0)
        )
        .scale_to,
        None
    );
}

#[test]
fn average_value_targets_divide_usage_by_pods() {
    let metrics = json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "100m"}}}]);
    let h = hpa(1, 10, metrics, None);
    // No requests needed; 300m each over 100m = 3x, 2 pods -> 6.
    let pods = [(pod("a", "0"), Some(300)), (pod("b", "0"), Some(300))];
    let o = run(&h, 2, &pods, &mut History::default(), at(0));
    assert_eq!(o.scale_to, Some(4), "the legacy rate doubles at most");
    let current = &items(&o.status.current_metrics)[0]
        .resource
        .as_ref()
        .unwrap()
        .current;
    assert_eq!(
        (current.average_utilization, current.average_value.clone()),
        (None, Some(Quantity("300m".into())))
    );
}

#[test]
fn a_missing_request_stops_scaling_and_is_reported_once() {
    let h = hpa(1, 10, cpu(50), None);
    let mut no_request = pod("a", "100m");
    no_request.spec.as_mut().unwrap().containers[0].resources = None;
    let pods = [(no_request, Some(500))];
    let mut hist = History::default();
    let o = run(&h, 1, &pods, &mut hist, at(0));
    assert_eq!(o.scale_to, None);
    let active = condition(&o, "ScalingActive");
    assert_eq!(
        (active.status.as_str(), active.reason.as_deref()),
        ("False", Some("FailedGetResourceMetric"))
    );
    assert!(
        active
            .message
            .as_deref()
            .unwrap()
            .contains("missing request for cpu in container app of Pod a"),
        "{active:?}"
    );
    let reasons: Vec<&str> = o.events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        reasons,
        ["FailedGetResourceMetric", "FailedComputeMetricsReplicas"]
    );
    // The same failure next pass records no new event; the condition keeps its time.
    let again = run(&h, 1, &pods, &mut hist, at(15));
    assert!(again.events.is_empty(), "{:?}", again.events);
    let h2 = HorizontalPodAutoscaler {
        status: Some(o.status.clone()),
        ..h.clone()
    };
    let later = run(&h2, 1, &pods, &mut hist, at(30));
    assert_eq!(
        condition(&later, "ScalingActive").last_transition_time,
        Some(Time(at(0)))
    );
}

#[test]
fn a_target_at_zero_is_not_scaled_and_out_of_range_counts_are_corrected() {
    let h = hpa(2, 5, cpu(50), None);
    let o = run(&h, 0, &[], &mut History::default(), at(0));
    assert_eq!(o.scale_to, None);
    assert_eq!(
        condition(&o, "ScalingActive").reason.as_deref(),
        Some("ScalingDisabled")
    );
    let o = run(&h, 1, &[], &mut History::default(), at(0));
    assert_eq!(o.scale_to, Some(2));
    assert_eq!(
        o.events[0].2,
        "New size: 2; reason: Current number of replicas below Spec.MinReplicas"
    );
    let o = run(&h, 9, &[], &mut History::default(), at(0));
    assert_eq!(o.scale_to, Some(5));
}

#[test]
fn an_unreadable_target_says_so() {
    let h = hpa(1, 5, cpu(50), None);
    let o = evaluate(
        &h,
        Err("deployments.apps \"web\" not found".into()),
        &[],
        &HashMap::new(),
        &mut History::default(),
        at(0),
    );
    let able = condition(&o, "AbleToScale");
    assert_eq!(
        (able.status.as_str(), able.reason.as_deref()),
        ("False", Some("FailedGetScale"))
    );
    assert_eq!(o.events[0].1, "FailedGetScale");
}

#[test]
fn samples_become_usage_by_pod_uid() {
    use crate::node::metrics::{ContainerUsage, Usage as U};
    let s = Sample {
        node: "n1".into(),
        timestamp: "2027-01-15T08:00:00Z".into(),
        window: "15.5s".into(),
        usage: None,
        pods: vec![(
            "uid-a".into(),
            vec![
                ContainerUsage {
                    name: "a".into(),
                    usage: U {
                        cpu: "150000000n".into(),
                        memory: "1Ki".into(),
                    },
                },
                ContainerUsage {
                    name: "b".into(),
                    usage: U {
                        cpu: "50m".into(),
                        memory: "1Ki".into(),
                    },
                },
            ],
        )],
    };
    let u = usage_by_uid(&[s]);
    let a = u["uid-a"];
    assert_eq!((a.cpu, a.memory), (200, 2048 * 1000));
    assert_eq!(a.window, SignedDuration::from_millis(15_500));
}
