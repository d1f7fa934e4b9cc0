//! Multi-node workloads on a cluster in a box with real containers: pods spread over the
//! nodes, and the pods of a node that dies run elsewhere.

use std::time::Instant;

use crate::harness::{Agent, Box, examples, pods_with, ready};

/// The containers running on a node, as its runtime's files say.
fn running_containers(a: &Agent) -> usize {
    let root = flotilla::node::pods::Node::runtime_root(a.data_dir());
    let Ok(rt) = flotilla_runtime::container::Runtime::open(&root) else {
        return 0;
    };
    rt.list()
        .unwrap_or_default()
        .iter()
        .filter(|id| {
            matches!(
                rt.status(id),
                Ok(flotilla_runtime::container::ContainerStatus::Running { .. })
            )
        })
        .count()
}

fn on_node<'a>(pods: &'a [serde_json::Value], node: &str) -> Vec<&'a serde_json::Value> {
    pods.iter()
        .filter(|p| p["spec"]["nodeName"] == node)
        .collect()
}

#[test]
fn a_dead_nodes_pods_run_elsewhere_within_the_grace_and_it_stops_its_copies_on_return() {
    let mut b = Box::start(3, &["--node-grace", "5"]);
    let tar = flotilla_runtime::testing::test_image(b.nodes[0].data_dir());
    for a in &b.nodes {
        a.ok(&["image", "import", tar.to_str().unwrap()]);
    }
    let web = examples().join("web.yaml");
    b.nodes[1].ok(&["apply", "-f", web.to_str().unwrap()]);
    let a = &b.nodes[0];
    a.eventually(90, "3 web pods Running and Ready", || {
        let ps = pods_with(a, "app=web");
        ps.len() == 3
            && ps
                .iter()
                .all(|p| p["status"]["phase"] == "Running" && ready(p))
    });
    // The scheduler spreads one owner's pods: one per node.
    let pods = pods_with(a, "app=web");
    for n in ["node-1", "node-2", "node-3"] {
        assert_eq!(on_node(&pods, n).len(), 1, "on {n}: {pods:#?}");
    }
    assert!(running_containers(&b.nodes[2]) >= 1);
    // Logs and exec of a pod on node-3, asked of node-1: forwarded to node-3's API.
    let remote = crate::harness::name(on_node(&pods, "node-3")[0]);
    let page = b.nodes[0].ok(&["exec", &remote, "--", "cat", "/www/index.html"]);
    assert!(page.contains("Hello from Flotilla"), "{page}");
    let out = b.nodes[0].cli(&["exec", &remote, "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    b.nodes[0].ok(&["logs", &remote, "--tail", "5"]);

    // node-3 dies: its agent is killed and its link goes down (its containers keep running,
    // cut off, as on a real machine that lost its network).
    b.nodes[2].kill9();
    b.link(3, false);
    let t = Instant::now();
    let a = &b.nodes[0];
    a.eventually(
        5 + 10 + 30,
        "3 web pods Running and Ready on node-1 and node-2",
        || {
            let ps = pods_with(a, "app=web");
            on_node(&ps, "node-3").is_empty()
                && ps.len() == 3
                && ps
                    .iter()
                    .all(|p| p["status"]["phase"] == "Running" && ready(p))
        },
    );
    eprintln!("replaced {:?} after the node died (grace 5 s)", t.elapsed());
    let nodes = a.ok(&["get", "nodes"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("node-3 ") && l.contains("NotReady")),
        "{nodes}"
    );
    let events = a.ok(&["get", "events"]);
    assert!(events.contains("NodeLost"), "{events}");

    // node-3 returns: its pods are gone from the store, so it stops its copies.
    b.link(3, true);
    b.nodes[2].spawn(false);
    let c = &b.nodes[2];
    c.eventually(60, "node-3 stopped its old containers", || {
        running_containers(c) == 0
    });
    let a = &b.nodes[0];
    a.eventually(30, "node-3 Ready again", || {
        a.ok(&["get", "nodes"])
            .lines()
            .any(|l| l.starts_with("node-3 ") && l.contains(" Ready"))
    });
    assert_eq!(pods_with(a, "app=web").len(), 3);

    // Drain node-1 while watching the Deployment: never fewer than 2 of 3 Ready (web's
    // maxUnavailable rounds to 0; a drain still moves one at a time).
    let watcher = {
        let (ns, cfg) = (b.nodes[1].netns.clone().unwrap(), b.nodes[1].config());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let h = std::thread::spawn(move || {
            let mut lowest = 3;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let out = std::process::Command::new("nsenter")
                    .arg(format!("--net=/run/netns/{ns}"))
                    .arg(crate::harness::BIN)
                    .args(["get", "pods", "-l", "app=web", "-o", "json"])
                    .env("FLOTILLA_CONFIG", &cfg)
                    .output()
                    .unwrap();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                    let n = v["items"]
                        .as_array()
                        .map_or(0, |ps| ps.iter().filter(|p| ready(p)).count());
                    lowest = lowest.min(n);
                }
            }
            lowest
        });
        (stop, h)
    };
    let out = b.nodes[1].ok(&["drain", "node-1", "--timeout", "120"]);
    assert!(out.contains("node/node-1 drained"), "{out}");
    watcher.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let lowest = watcher.1.join().unwrap();
    assert!(
        lowest >= 2,
        "only {lowest} web pods were Ready during the drain"
    );
    let a = &b.nodes[1];
    a.eventually(60, "3 Ready web pods, none on node-1", || {
        let ps = pods_with(a, "app=web");
        ps.len() == 3 && on_node(&ps, "node-1").is_empty() && ps.iter().all(ready)
    });
    assert!(
        a.ok(&["get", "nodes"]).contains("SchedulingDisabled") || {
            let n = a.json(&["get", "node", "node-1"]);
            n["spec"]["unschedulable"] == true
        }
    );
    assert!(a.ok(&["uncordon", "node-1"]).contains("uncordoned"));
}
