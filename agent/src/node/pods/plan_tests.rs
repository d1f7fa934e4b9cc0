use super::*;
use k8s_openapi::api::core::v1::Probe;
use serde_json::Value;

/// A plan with its status as JSON, as a user reads it back.
#[derive(Debug)]
struct Plan {
    actions: Vec<Action>,
    status: Value,
    finished: bool,
}

/// [`super::plan`] with the previous status given, and the new one read, as JSON.
fn plan(spec: &PodSpec, obs: &Observed, prev: &Value, now_ms: u64) -> Plan {
    let prev: PodStatus = if prev.is_null() {
        PodStatus::default()
    } else {
        serde_json::from_value(prev.clone()).expect("a pod status")
    };
    let p = super::plan(spec, obs, &prev, now_ms);
    Plan {
        actions: p.actions,
        status: serde_json::to_value(&p.status).unwrap(),
        finished: p.finished,
    }
}

fn spec(policy: &str, containers: &[&str], inits: &[&str]) -> PodSpec {
    let c = |n: &&str| Container {
        name: n.to_string(),
        image: Some("busybox".into()),
        ..Default::default()
    };
    PodSpec {
        containers: containers.iter().map(c).collect(),
        init_containers: Some(inits.iter().map(c).collect()),
        restart_policy: Some(policy.into()),
        ..Default::default()
    }
}

fn running(name: &str, attempt: u32) -> Instance {
    Instance {
        attempt,
        id: format!("u_{name}_{attempt}"),
        state: InstanceState::Running { started_ms: 1_000 },
    }
}

fn exited(name: &str, attempt: u32, code: i32, started_ms: u64, finished_ms: u64) -> Instance {
    Instance {
        attempt,
        id: format!("u_{name}_{attempt}"),
        state: InstanceState::Exited(Ended {
            code,
            signal: None,
            oom_killed: false,
            started_ms,
            finished_ms,
            lost: false,
            message: None,
        }),
    }
}

fn observed(instances: &[(&str, Vec<Instance>)]) -> Observed {
    Observed {
        sandbox: true,
        instances: instances
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect(),
        ..Default::default()
    }
}

fn starts(p: &Plan) -> Vec<(String, u32)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Start {
                container, attempt, ..
            } => Some((container.clone(), *attempt)),
            _ => None,
        })
        .collect()
}

fn cond(p: &Plan, kind: &str) -> String {
    p.status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_new_pod_gets_a_sandbox_then_its_containers() {
    let s = spec("Always", &["web", "side"], &[]);
    let p = plan(&s, &Observed::default(), &Value::Null, 0);
    assert_eq!(p.actions, vec![Action::CreateSandbox]);
    assert_eq!(p.status["phase"], "Pending");
    assert_eq!(
        p.status["containerStatuses"][0]["state"]["waiting"]["reason"],
        "ContainerCreating"
    );
    let p = plan(&s, &observed(&[]), &Value::Null, 0);
    assert_eq!(starts(&p), vec![("web".into(), 0), ("side".into(), 0)]);
    // Executing the plan and planning again asks for nothing new.
    let o = observed(&[
        ("web", vec![running("web", 0)]),
        ("side", vec![running("side", 0)]),
    ]);
    let p = plan(&s, &o, &Value::Null, 5_000);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.status["phase"], "Running");
    assert_eq!(cond(&p, "Ready"), "True");
    assert_eq!(
        p.status["containerStatuses"][0]["containerID"],
        "flotilla://u_web_0"
    );
}

#[test]
fn crashes_back_off_10s_doubling_to_5min_and_reset_after_10min() {
    assert_eq!(
        (0..8).map(backoff_ms).collect::<Vec<_>>(),
        vec![0, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]
    );
    let s = spec("Always", &["app"], &[]);
    // The first crash restarts at once.
    let mut o = observed(&[("app", vec![exited("app", 0, 1, 1_000, 2_000)])]);
    let p = plan(&s, &o, &Value::Null, 2_100);
    assert_eq!(starts(&p), vec![("app".into(), 1)]);
    // The second waits 10 s, showing CrashLoopBackOff meanwhile.
    o.instances.insert(
        "app".into(),
        vec![
            exited("app", 0, 1, 1_000, 2_000),
            exited("app", 1, 1, 3_000, 4_000),
        ],
    );
    o.streaks.insert("app".into(), 1);
    let p = plan(&s, &o, &Value::Null, 4_000 + 9_999);
    assert!(starts(&p).is_empty());
    let st = &p.status["containerStatuses"][0];
    assert_eq!(st["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(st["restartCount"], 1);
    assert_eq!(st["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(st["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(p.status["phase"], "Running");
    let p = plan(&s, &o, &Value::Null, 4_000 + 10_000);
    assert!(
        p.actions.contains(&Action::Start {
            container: "app".into(),
            attempt: 2,
            init: false,
            streak: 2
        }),
        "{:?}",
        p.actions
    );
    // A run of 10 minutes or more resets the streak: restart at once.
    o.streaks.insert("app".into(), 5);
    o.instances.insert(
        "app".into(),
        vec![
            exited("app", 4, 1, 0, 1),
            exited("app", 5, 1, 10_000, 10_000 + 600_000),
        ],
    );
    let p = plan(&s, &o, &Value::Null, 610_001);
    assert_eq!(starts(&p), vec![("app".into(), 6)]);
}

#[test]
fn restart_policies_decide_and_phases_follow() {
    let ok = |policy| {
        let s = spec(policy, &["a"], &[]);
        plan(
            &s,
            &observed(&[("a", vec![exited("a", 0, 0, 1, 2)])]),
            &Value::Null,
            10,
        )
    };
    let failed = |policy| {
        let s = spec(policy, &["a"], &[]);
        plan(
            &s,
            &observed(&[("a", vec![exited("a", 0, 3, 1, 2)])]),
            &Value::Null,
            10,
        )
    };
    assert_eq!(starts(&ok("Always")).len(), 1);
    let p = ok("OnFailure");
    assert!(starts(&p).is_empty());
    assert_eq!(p.status["phase"], "Succeeded");
    assert_eq!(
        p.status["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert!(p.finished);
    assert_eq!(starts(&failed("OnFailure")).len(), 1);
    let p = failed("Never");
    assert!(starts(&p).is_empty());
    assert_eq!(p.status["phase"], "Failed");
    // Two containers, one still running: Running.
    let s = spec("Never", &["a", "b"], &[]);
    let p = plan(
        &s,
        &observed(&[
            ("a", vec![exited("a", 0, 0, 1, 2)]),
            ("b", vec![running("b", 0)]),
        ]),
        &Value::Null,
        10,
    );
    assert_eq!(p.status["phase"], "Running");
    assert_eq!(cond(&p, "Ready"), "False");
}

#[test]
fn init_containers_run_in_order_before_the_app() {
    let s = spec("Always", &["app"], &["one", "two"]);
    let p = plan(&s, &observed(&[]), &Value::Null, 0);
    assert_eq!(starts(&p), vec![("one".into(), 0)]);
    assert_eq!(p.status["phase"], "Pending");
    assert_eq!(cond(&p, "Initialized"), "False");
    let o = observed(&[("one", vec![running("one", 0)])]);
    assert!(starts(&plan(&s, &o, &Value::Null, 0)).is_empty());
    let o = observed(&[("one", vec![exited("one", 0, 0, 1, 2)])]);
    assert_eq!(
        starts(&plan(&s, &o, &Value::Null, 3)),
        vec![("two".into(), 0)]
    );
    let o = observed(&[
        ("one", vec![exited("one", 0, 0, 1, 2)]),
        ("two", vec![exited("two", 0, 0, 3, 4)]),
    ]);
    let p = plan(&s, &o, &Value::Null, 5);
    assert_eq!(starts(&p), vec![("app".into(), 0)]);
    assert_eq!(cond(&p, "Initialized"), "True");
    assert_eq!(
        p.status["initContainerStatuses"][1]["state"]["terminated"]["reason"],
        "Completed"
    );
    // A failing init container is retried (policy Always), and fails the pod with Never.
    let o = observed(&[("one", vec![exited("one", 0, 2, 1, 2)])]);
    assert_eq!(
        starts(&plan(&s, &o, &Value::Null, 3)),
        vec![("one".into(), 1)]
    );
    let never = spec("Never", &["app"], &["one"]);
    let p = plan(&never, &o, &Value::Null, 3);
    assert!(starts(&p).is_empty());
    assert_eq!(p.status["phase"], "Failed");
}

#[test]
fn probes_gate_readiness_and_failed_liveness_kills() {
    let mut s = spec("Always", &["web"], &[]);
    s.containers[0].readiness_probe = Some(Probe::default());
    let mut o = observed(&[("web", vec![running("web", 0)])]);
    // No verdict yet: not ready.
    let p = plan(&s, &o, &Value::Null, 10);
    assert_eq!(cond(&p, "Ready"), "False");
    assert_eq!(p.status["phase"], "Running");
    o.probes.insert(
        "u_web_0".into(),
        Probed {
            ready: true,
            started: true,
            failed: None,
        },
    );
    let p = plan(&s, &o, &Value::Null, 10);
    assert_eq!(cond(&p, "Ready"), "True");
    o.probes.insert(
        "u_web_0".into(),
        Probed {
            ready: true,
            started: true,
            failed: Some("Liveness probe failed"),
        },
    );
    let p = plan(&s, &o, &Value::Null, 10);
    assert_eq!(
        p.actions,
        vec![Action::Kill {
            id: "u_web_0".into(),
            reason: "Liveness probe failed".into()
        }]
    );
}

#[test]
fn old_instances_are_removed_keeping_the_previous_one() {
    let s = spec("Always", &["a"], &[]);
    let o = observed(&[(
        "a",
        vec![
            exited("a", 0, 1, 1, 2),
            exited("a", 1, 1, 3, 4),
            running("a", 2),
        ],
    )]);
    let p = plan(&s, &o, &Value::Null, 10);
    assert_eq!(p.actions, vec![Action::Remove { id: "u_a_0".into() }]);
    assert_eq!(p.status["containerStatuses"][0]["restartCount"], 2);
    assert_eq!(
        p.status["containerStatuses"][0]["lastState"]["terminated"]["finishedAt"],
        rfc3339_ms(4)
    );
}

#[test]
fn failed_starts_back_off_with_kubernetes_reasons() {
    let s = spec("Always", &["a"], &[]);
    let mut o = observed(&[]);
    o.start_failures.insert(
        "a".into(),
        StartFailure {
            reason: "ErrImagePull".into(),
            message: "image busybox is not on this node".into(),
            at_ms: 1_000,
            count: 1,
        },
    );
    let p = plan(&s, &o, &Value::Null, 2_000);
    assert!(starts(&p).is_empty());
    let w = &p.status["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(w["reason"], "ImagePullBackOff");
    assert_eq!(w["message"], "image busybox is not on this node");
    let p = plan(&s, &o, &Value::Null, 11_000);
    assert_eq!(starts(&p), vec![("a".into(), 0)]);
    assert_eq!(
        p.status["containerStatuses"][0]["state"]["waiting"]["reason"],
        "ErrImagePull"
    );
}

#[test]
fn an_oom_kill_shows_as_oomkilled_and_transition_times_stay() {
    let s = spec("Never", &["hog"], &[]);
    let mut inst = exited("hog", 0, 137, 1_000, 2_000);
    if let InstanceState::Exited(e) = &mut inst.state {
        e.oom_killed = true;
        e.signal = Some(9);
    }
    let p = plan(&s, &observed(&[("hog", vec![inst])]), &Value::Null, 3_000);
    let t = &p.status["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (t["reason"].as_str(), t["exitCode"].as_i64()),
        (Some("OOMKilled"), Some(137))
    );
    let again = plan(
        &s,
        &observed(&[("hog", vec![exited("hog", 0, 137, 1_000, 2_000)])]),
        &p.status,
        90_000,
    );
    let since = |p: &Plan| p.status["conditions"][0]["lastTransitionTime"].clone();
    assert_eq!(since(&again), since(&p));
}

#[test]
fn a_pod_past_its_active_deadline_is_stopped_and_failed() {
    let mut s = spec("Always", &["web"], &[]);
    s.active_deadline_seconds = Some(30);
    let started = serde_json::json!({"phase": "Running", "startTime": "1970-01-01T00:00:01Z"});
    let obs = observed(&[("web", vec![running("web", 0)])]);
    let p = plan(&s, &obs, &started, 30_999);
    assert_eq!(p.status["phase"], "Running", "in time");
    assert!(p.actions.is_empty());
    let p = plan(&s, &obs, &started, 31_000);
    assert_eq!(p.status["phase"], "Failed");
    assert_eq!(p.status["reason"], "DeadlineExceeded");
    assert_eq!(
        p.status["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    assert_eq!(
        p.actions,
        vec![Action::Kill {
            id: "u_web_0".into(),
            reason: "DeadlineExceeded".into()
        }]
    );
    assert!(p.finished);
    // Once stopped it stays Failed, and restartPolicy Always does not start it again.
    let failed = p.status.clone();
    let stopped = observed(&[("web", vec![exited("web", 0, 137, 1_000, 32_000)])]);
    let p = plan(&s, &stopped, &failed, 40_000);
    assert_eq!(p.status["phase"], "Failed");
    assert_eq!(p.status["reason"], "DeadlineExceeded");
    assert!(starts(&p).is_empty(), "{:?}", p.actions);
    let c = &p.status["containerStatuses"][0];
    assert_eq!(c["state"]["terminated"]["exitCode"], 137, "{c}");
    assert!(c.get("lastState").is_none(), "{c}");
    // A pod that never got its sandbox in time fails without one.
    let p = plan(&s, &Observed::default(), &started, 31_000);
    assert_eq!(p.status["phase"], "Failed");
    assert!(p.actions.is_empty());
}
