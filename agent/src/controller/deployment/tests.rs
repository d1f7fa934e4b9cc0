//! Deployment planning tests, including a simulated cluster that runs the Deployment and
//! ReplicaSet planners step by step with pods becoming ready one step after they are made.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::*;
use crate::controller::{Action, OwnerIndex, pod_ready, replicaset};
use crate::manifest::lifecycle::decode;

fn deployment(replicas: i64, image: &str, surge: Value, unavailable: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "d", "uid": "dep1", "generation": 1, "resourceVersion": "1"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "revisionHistoryLimit": 10,
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}},
        },
    })
}

/// A tiny in-memory cluster: the store's effect of actions, and a kubelet that makes every pod
/// Ready one step after it was created.
#[derive(Default)]
struct World {
    dep: Value,
    rss: Vec<Value>,
    pods: Vec<Value>,
    next: u32,
}

impl World {
    /// Applies one owner's actions as the store does: all or nothing, and an update or status
    /// write must carry the object's current resourceVersion. Returns whether it committed.
    fn apply(&mut self, actions: Vec<Action>) -> bool {
        let (mut dep, mut rss, mut pods, mut next) = (
            self.dep.clone(),
            self.rss.clone(),
            self.pods.clone(),
            self.next,
        );
        for a in actions {
            match a {
                Action::Create(made) => {
                    let mut o = made.encode();
                    next += 1;
                    if o["metadata"]["name"].as_str().unwrap_or("").is_empty() {
                        o["metadata"]["name"] = Value::from(format!(
                            "{}{}",
                            o["metadata"]["generateName"].as_str().unwrap(),
                            next
                        ));
                    }
                    o["metadata"]["uid"] = Value::from(format!("uid{next}"));
                    o["metadata"]["resourceVersion"] = Value::from("1");
                    o["metadata"]["creationTimestamp"] =
                        Value::from(format!("2026-01-01T00:00:{:02}Z", next % 60));
                    match o["kind"].as_str() {
                        Some("ReplicaSet") => rss.push(o),
                        Some("Pod") => pods.push(o),
                        k => panic!("unexpected create of {k:?}"),
                    }
                }
                a @ (Action::Update(_) | Action::Status(_)) => {
                    let mut o = match a {
                        Action::Update(made) => made.encode(),
                        Action::Status(o) => o,
                        _ => unreachable!(),
                    };
                    let status_only = o.get("spec").is_none();
                    let name = o["metadata"]["name"].clone();
                    let cur = if o["kind"] == "Deployment" {
                        &mut dep
                    } else if let Some(r) = rss.iter_mut().find(|r| r["metadata"]["name"] == name) {
                        r
                    } else if let Some(p) = pods.iter_mut().find(|p| p["metadata"]["name"] == name)
                    {
                        p
                    } else {
                        return false;
                    };
                    if cur["metadata"]["resourceVersion"] != o["metadata"]["resourceVersion"] {
                        return false;
                    }
                    let rv: i64 = cur["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or("0")
                        .parse()
                        .unwrap();
                    if status_only {
                        cur["status"] = o["status"].take();
                        cur["metadata"]["resourceVersion"] = Value::from((rv + 1).to_string());
                    } else {
                        o["metadata"]["resourceVersion"] = Value::from((rv + 1).to_string());
                        *cur = o;
                    }
                }
                Action::Delete(k) | Action::DeleteInForeground(k) => {
                    rss.retain(|r| r["metadata"]["name"] != k.name.as_str());
                    pods.retain(|p| p["metadata"]["name"] != k.name.as_str());
                }
                Action::Event { .. } => {}
            }
        }
        (self.dep, self.rss, self.pods, self.next) = (dep, rss, pods, next);
        true
    }

    /// One pass of every controller, then the kubelet.
    fn step(&mut self) {
        let existing: Vec<Value> = self
            .pods
            .iter()
            .map(|p| p["metadata"]["name"].clone())
            .collect();
        // As the runner: every plan reads the state at the start of the pass, so a later plan
        // may be stale and refused, to be planned again next pass.
        let (dep, rss, pods) = (self.typed_dep(), self.typed_rss(), self.typed_pods());
        let (rs_index, pod_index) = (OwnerIndex::new(&rss), OwnerIndex::new(&pods));
        let a = plan(
            &dep,
            rs_index.of(&dep.metadata),
            &crate::manifest::events::now(),
        );
        self.apply(a);
        for rs in &rss {
            let a = replicaset::plan(
                rs,
                pod_index.of(&rs.metadata),
                &crate::manifest::events::now(),
            );
            self.apply(a);
        }
        for p in self
            .pods
            .iter_mut()
            .filter(|p| existing.contains(&p["metadata"]["name"]))
        {
            p["spec"]["nodeName"] = json!("n1");
            p["status"] =
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        }
    }

    fn typed_dep(&self) -> Deployment {
        decode(self.dep.clone()).unwrap()
    }

    fn typed_rss(&self) -> Vec<ReplicaSet> {
        self.rss
            .iter()
            .map(|r| decode(r.clone()).unwrap())
            .collect()
    }

    fn typed_pods(&self) -> Vec<Pod> {
        self.pods
            .iter()
            .map(|p| decode(p.clone()).unwrap())
            .collect()
    }

    /// The Deployment's plan as the runner makes it.
    fn plan(&self) -> Vec<Action> {
        let rss = self.typed_rss();
        let dep = self.typed_dep();
        plan(
            &dep,
            OwnerIndex::new(&rss).of(&dep.metadata),
            &crate::manifest::events::now(),
        )
    }

    fn progress(&self) -> (bool, String) {
        rollout_progress(&self.typed_dep())
    }

    fn undo(&self, to: Option<i64>) -> Result<Value, String> {
        template_for_undo(&self.typed_dep(), &self.typed_rss(), to)
            .map(|t| serde_json::to_value(t).unwrap())
    }

    fn ready(&self) -> usize {
        self.typed_pods().iter().filter(|p| pod_ready(p)).count()
    }

    fn converge(&mut self, max_steps: usize, mut check: impl FnMut(&World)) -> usize {
        for n in 0..max_steps {
            let before = (self.dep.clone(), self.rss.clone(), self.pods.clone());
            self.step();
            check(self);
            if before == (self.dep.clone(), self.rss.clone(), self.pods.clone()) {
                return n;
            }
        }
        panic!("did not converge in {max_steps} steps");
    }
}

fn new_template_pods(w: &World) -> usize {
    let hash = template_hash(&serde_json::from_value(w.dep["spec"]["template"].clone()).unwrap());
    w.pods
        .iter()
        .filter(|p| p["metadata"]["labels"][crate::controller::POD_TEMPLATE_HASH] == hash.as_str())
        .count()
}

#[test]
fn first_rollout_creates_a_replica_set_and_pods() {
    let mut w = World {
        dep: deployment(3, "v1", json!("25%"), json!("25%")),
        ..Default::default()
    };
    w.converge(20, |_| {});
    assert_eq!(w.rss.len(), 1);
    assert_eq!(
        w.rss[0]["metadata"]["annotations"][REVISION_ANNOTATION],
        "1"
    );
    assert_eq!(w.ready(), 3);
    assert_eq!(
        w.progress(),
        (
            true,
            "deployment \"web\" successfully rolled out".to_string()
        )
    );
    // Converged: planning again does nothing.
    assert_eq!(w.plan(), vec![]);
}

#[test]
fn surge_one_unavailable_zero_never_drops_below_desired_ready() {
    let mut w = World {
        dep: deployment(4, "v1", json!(1), json!(0)),
        ..Default::default()
    };
    w.converge(20, |_| {});
    assert_eq!(w.ready(), 4);
    w.dep["spec"]["template"]["spec"]["containers"][0]["image"] = json!("v2");
    w.dep["metadata"]["generation"] = json!(2);
    let mut min_ready = usize::MAX;
    let mut max_pods = 0;
    w.converge(60, |w| {
        min_ready = min_ready.min(w.ready());
        max_pods = max_pods.max(w.pods.len());
    });
    assert!(min_ready >= 4, "ready pods dropped to {min_ready}");
    assert!(
        max_pods <= 5,
        "more than replicas + maxSurge pods: {max_pods}"
    );
    assert_eq!(new_template_pods(&w), 4);
    assert_eq!(w.pods.len(), 4);
    assert_eq!(
        w.rss.len(),
        2,
        "the old ReplicaSet is kept, scaled to 0, as history"
    );
    assert!(w.progress().0);
}

#[test]
fn unavailable_budget_is_honoured_with_percentages() {
    let mut w = World {
        dep: deployment(10, "v1", json!("25%"), json!("25%")),
        ..Default::default()
    };
    w.converge(30, |_| {});
    w.dep["spec"]["template"]["spec"]["containers"][0]["image"] = json!("v2");
    let (mut min_ready, mut max_pods) = (usize::MAX, 0);
    w.converge(80, |w| {
        min_ready = min_ready.min(w.ready());
        max_pods = max_pods.max(w.pods.len());
    });
    assert!(
        min_ready >= 8,
        "maxUnavailable 25% of 10 is 2: ready fell to {min_ready}"
    );
    assert!(
        max_pods <= 13,
        "maxSurge 25% of 10 is 3: saw {max_pods} pods"
    );
    assert_eq!(new_template_pods(&w), 10);
}

#[test]
fn recreate_stops_old_pods_before_starting_new_ones() {
    let mut d = deployment(2, "v1", json!(1), json!(0));
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    let mut w = World {
        dep: d,
        ..Default::default()
    };
    w.converge(20, |_| {});
    w.dep["spec"]["template"]["spec"]["containers"][0]["image"] = json!("v2");
    let mut mixed = false;
    w.converge(40, |w| {
        let new = new_template_pods(w);
        if new > 0 && new < w.pods.len() {
            mixed = true;
        }
    });
    assert!(
        !mixed,
        "old and new pods must never run together under Recreate"
    );
    assert_eq!(new_template_pods(&w), 2);
}

#[test]
fn undo_restores_the_previous_template_as_a_new_revision() {
    let mut w = World {
        dep: deployment(2, "v1", json!(1), json!(0)),
        ..Default::default()
    };
    w.converge(20, |_| {});
    let v1 = w.dep["spec"]["template"].clone();
    w.dep["spec"]["template"]["spec"]["containers"][0]["image"] = json!("v2");
    w.converge(40, |_| {});
    let t = w.undo(None).unwrap();
    assert_eq!(t, v1);
    w.dep["spec"]["template"] = t;
    w.converge(40, |_| {});
    let revs: Vec<String> = w
        .rss
        .iter()
        .map(|r| {
            r["metadata"]["annotations"][REVISION_ANNOTATION]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(w.rss.len(), 2, "the v1 ReplicaSet is reused, not copied");
    assert!(
        revs.contains(&"3".to_string()),
        "rolled-back template becomes revision 3: {revs:?}"
    );
    assert_eq!(
        w.undo(Some(9)).unwrap_err(),
        "unable to find the specified revision 9 in history"
    );
}

#[test]
fn scaling_changes_only_the_replica_count() {
    let mut w = World {
        dep: deployment(2, "v1", json!("25%"), json!("25%")),
        ..Default::default()
    };
    w.converge(20, |_| {});
    w.dep["spec"]["replicas"] = json!(5);
    w.converge(20, |_| {});
    assert_eq!(w.rss.len(), 1);
    assert_eq!(w.ready(), 5);
    w.dep["spec"]["replicas"] = json!(1);
    w.converge(20, |_| {});
    assert_eq!(w.pods.len(), 1);
}

#[test]
fn history_is_limited() {
    let mut w = World {
        dep: deployment(1, "v0", json!(1), json!(0)),
        ..Default::default()
    };
    w.dep["spec"]["revisionHistoryLimit"] = json!(2);
    for v in 1..6 {
        w.dep["spec"]["template"]["spec"]["containers"][0]["image"] = json!(format!("v{v}"));
        w.converge(40, |_| {});
    }
    assert_eq!(w.rss.len(), 3, "the current ReplicaSet and 2 old ones");
}

#[test]
fn undo_in_the_middle_of_a_rollout_converges() {
    // The case that once livelocked: the rolled-back ReplicaSet needs both a new revision and
    // more replicas in the same pass.
    let mut w = World {
        dep: deployment(4, "v1", json!("25%"), json!("25%")),
        ..Default::default()
    };
    w.converge(20, |_| {});
    let v1 = w.dep["spec"]["template"].clone();
    w.dep["spec"]["template"]["spec"]["containers"][0]["image"] = json!("v2");
    w.step();
    w.step();
    assert_eq!(w.rss.len(), 2, "mid-rollout");
    w.dep["spec"]["template"] = w.undo(None).unwrap();
    assert_eq!(w.dep["spec"]["template"], v1);
    w.converge(40, |_| {});
    assert_eq!(new_template_pods(&w), 4);
    assert_eq!(w.pods.len(), 4);
}

#[test]
fn a_rollout_without_progress_for_its_deadline_is_reported_as_kubernetes_does() {
    let mut d = deployment(1, "v1", json!(1), json!(0));
    d["spec"]["progressDeadlineSeconds"] = json!(60);
    d["status"] = json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
        "readyReplicas": 0, "availableReplicas": 0,
        "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
            "message": "ReplicaSet \"web-x\" is progressing.",
            "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    let dep: Deployment = decode(d).unwrap();
    let rs: ReplicaSet = decode(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-x", "namespace": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"replicas": 1, "readyReplicas": 0, "availableReplicas": 0}}))
    .unwrap();
    let at = |s: &str| Time(s.parse().unwrap());
    let progressing = |now: &str| {
        let st = status(&dep, Some(&rs), &[&rs], 1, 0, &at(now));
        st.conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Progressing")
            .unwrap()
    };
    let c = progressing("2026-01-01T00:00:30Z");
    assert_eq!(c.status, "True", "within the deadline");
    assert_eq!(
        c.last_update_time,
        Some(at("2026-01-01T00:00:00Z")),
        "no progress: the update time stays"
    );
    let c = progressing("2026-01-01T00:01:01Z");
    assert_eq!(c.status, "False");
    assert_eq!(c.reason.as_deref(), Some("ProgressDeadlineExceeded"));
    assert_eq!(
        c.message.as_deref(),
        Some("ReplicaSet \"web-x\" has timed out progressing.")
    );
}
