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
    // kubectl exec through node-1: the WebSocket is passed through to node-3's API.
    let out = crate::harness::with_stdin(
        b.nodes[0].kubectl_cmd(&["exec", "-i", &remote, "--", "sh", "-c", "cat; exit 4"]),
        "through node-1",
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through node-1");

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

const PLACEMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 6
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: c, image: flotilla.local/busybox:1, command: [sleep, "3600"],
         resources: {requests: {cpu: 10m, memory: 8Mi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: huge}
spec:
  containers:
  - {name: c, image: flotilla.local/busybox:1, command: [sleep, "3600"],
     resources: {requests: {memory: 1000Ti}}}
---
apiVersion: v1
kind: Pod
metadata: {name: picky}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {disk: ssd}
  containers:
  - {name: c, image: flotilla.local/busybox:1, command: [sleep, "3600"]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: everywhere}
spec:
  selector: {matchLabels: {app: everywhere}}
  template:
    metadata: {labels: {app: everywhere}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: c, image: flotilla.local/busybox:1, command: [sleep, "3600"]}
"#;

/// A 4-replica web Deployment behind a Service; `version` goes into the page and the template.
fn web4(version: u32) -> String {
    format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: web4-v{version}}}
data: {{index.html: "v{version}"}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web4}}
spec:
  replicas: 4
  strategy: {{rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  selector: {{matchLabels: {{app: web4}}}}
  template:
    metadata: {{labels: {{app: web4}}}}
    spec:
      containers:
      - name: httpd
        image: flotilla.local/busybox:1
        command: [httpd, -f, -p, "8080", -h, /www]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}
        volumeMounts: [{{name: www, mountPath: /www}}]
      volumes: [{{name: www, configMap: {{name: web4-v{version}}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web4}}
spec:
  selector: {{app: web4}}
  ports: [{{port: 80, targetPort: http}}]
"#
    )
}

/// Stops and continues a process, 1 s stopped and 0.3 s running, until dropped (it is left
/// running).
struct Lag {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lag {
    fn start(pid: u32) -> Lag {
        use nix::sys::signal::{Signal, kill};
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let thread = std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = kill(pid, Signal::SIGSTOP);
                std::thread::sleep(std::time::Duration::from_millis(1000));
                let _ = kill(pid, Signal::SIGCONT);
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        });
        Lag {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Lag {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The pods the store places on `node`.
fn pods_on_node_count(a: &Agent, node: &str) -> usize {
    a.json(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        &format!("spec.nodeName={node}"),
    ])["items"]
        .as_array()
        .map_or(0, |v| v.len())
}

fn running_and_ready(ps: &[serde_json::Value]) -> bool {
    ps.iter()
        .all(|p| p["status"]["phase"] == "Running" && ready(p))
}

#[test]
fn pods_land_where_asked_daemonsets_reach_new_nodes_and_a_rollout_fails_no_request() {
    // With `--endpoint-drain 0` this test sees failed requests: the old pods stop before the
    // lagging node has dropped them from the Service.
    let mut b = Box::start(3, &[]);
    let tar = flotilla_runtime::testing::test_image(b.nodes[0].data_dir());
    for a in &b.nodes {
        a.ok(&["image", "import", tar.to_str().unwrap()]);
    }
    let a = &b.nodes[0];
    let out = a.ok(&["label", "node", "node-2", "disk=ssd"]);
    assert!(out.contains("labeled"), "{out}");
    let out = a.cli(&["label", "node/node-2", "disk=hdd"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("add --overwrite"),
        "{out:?}"
    );
    let f = crate::harness::manifest(a, "placement.yaml", PLACEMENT);
    a.ok(&["apply", "-f", &f]);

    // 6 replicas over 3 nodes: 2 on each.
    a.eventually(90, "6 spread pods Running", || {
        let ps = pods_with(a, "app=spread");
        ps.len() == 6 && ps.iter().all(|p| p["status"]["phase"] == "Running")
    });
    let ps = pods_with(a, "app=spread");
    for n in ["node-1", "node-2", "node-3"] {
        assert_eq!(on_node(&ps, n).len(), 2, "on {n}");
    }
    // Each node gossips its pods' states; node-1 shows node-3's on its Node.
    a.eventually(20, "node-3's pods as gossip tells them", || {
        let on_3 = pods_on_node_count(a, "node-3");
        let n = a.json(&["get", "node", "node-3"]);
        on_3 >= 2
            && n["metadata"]["annotations"]["flotilla.io/observed"]
                .as_str()
                .is_some_and(|o| o.contains(&format!("pods={on_3} running={on_3}")))
    });
    // nodeSelector: on the labelled node.
    a.eventually(30, "picky Running", || {
        a.pod("picky")
            .is_some_and(|p| p["status"]["phase"] == "Running")
    });
    assert_eq!(a.pod("picky").unwrap()["spec"]["nodeName"], "node-2");
    // Too big for every node: Pending, and describe says why.
    let huge = a.ok(&["describe", "pod", "huge"]);
    assert!(huge.contains("Pending"), "{huge}");
    assert!(
        huge.contains("0/3 nodes are available: 3 Insufficient memory."),
        "{huge}"
    );
    // The DaemonSet runs on every node, and on a node that joins later.
    a.eventually(60, "a DaemonSet pod on each of 3 nodes", || {
        let ps = pods_with(a, "app=everywhere");
        ps.len() == 3 && running_and_ready(&ps)
    });
    let token = a.ok(&["token", "create"]);
    b.add(
        Some((2, token.trim().to_string())),
        &["--endpoint-drain", "0"],
    )
    .expect("node-4 joins");
    b.nodes[3].ok(&["image", "import", tar.to_str().unwrap()]);
    let a = &b.nodes[0];
    a.eventually(60, "the DaemonSet's pod Running on node-4", || {
        let ps = pods_with(a, "app=everywhere");
        ps.len() == 4 && running_and_ready(&ps) && on_node(&ps, "node-4").len() == 1
    });
    // Nodes that stop matching lose the pod.
    let f = crate::harness::manifest(
        a,
        "ds-ssd.yaml",
        &PLACEMENT.split("---").last().unwrap().replace(
            "      containers:",
            "      nodeSelector: {disk: ssd}\n      containers:",
        ),
    );
    a.ok(&["apply", "-f", &f]);
    a.eventually(60, "the DaemonSet only on node-2", || {
        let ps = pods_with(a, "app=everywhere");
        ps.len() == 1 && on_node(&ps, "node-2").len() == 1
    });
    a.ok(&[
        "delete",
        "-f",
        &crate::harness::manifest(a, "p.yaml", PLACEMENT),
    ]);

    // A rolling update behind a Service while a client loops requests through the ClusterIP
    // from another pod: not one fails. (`timeout`, as busybox 1.35's `wget -T` segfaults.)
    let f = crate::harness::manifest(a, "web4.yaml", &web4(1));
    a.ok(&["apply", "-f", &f]);
    a.eventually(90, "4 web4 pods Running and Ready", || {
        let ps = pods_with(a, "app=web4");
        ps.len() == 4 && running_and_ready(&ps)
    });
    let ip = a.json(&["get", "service", "web4"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let client = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: node-4
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: flotilla.local/busybox:1
    command: [sh, -c, 'for i in 1 2 3 4; do (while true; do if timeout 3 wget -q -O - http://{ip}/ >/tmp/page$i 2>/tmp/err$i; then echo "ok $(cat /tmp/page$i)"; else echo "FAIL $(date +%T) $(cat /tmp/err$i)"; fi; done) & done; wait']
"#
    );
    a.ok(&[
        "apply",
        "-f",
        &crate::harness::manifest(a, "client.yaml", &client),
    ]);
    let count = |what: &str| {
        a.cli(&["logs", "client"])
            .stdout
            .split(|c| *c == b'\n')
            .filter(|l| l.starts_with(what.as_bytes()))
            .count()
    };
    let t = Instant::now();
    while count("ok v1") < 10 {
        assert!(
            t.elapsed().as_secs() < 60,
            "the client got no pages from {ip}: {}\n{:#?}",
            a.ok(&["logs", "client"]),
            a.json(&["get", "pod", "client"])["status"]
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let before = count("ok v");
    // The client's node lags: its agent stalls for a second at a time (as a Pi stuck on its
    // SD card), so it learns of each old pod's deletion late. Its kernel keeps sending
    // requests by the rules it has; the old pods must still answer them.
    let lag = Lag::start(b.nodes[3].pid().unwrap());
    let f = crate::harness::manifest(a, "web4-v2.yaml", &web4(2));
    a.ok(&["apply", "-f", &f]);
    let t = Instant::now();
    a.ok(&["rollout", "status", "deployment/web4", "--timeout", "180"]);
    eprintln!("rollout of 4 replicas took {:?}", t.elapsed());
    drop(lag);
    // The old pods are gone once they stop; requests go on meanwhile.
    a.eventually(60, "only v2 pods, and the client served by them", || {
        let ps = pods_with(a, "app=web4");
        ps.len() == 4 && running_and_ready(&ps) && count("ok v2") >= 20
    });
    // Every old pod is stopped by now (each waits out the endpoint drain, then stops).
    a.eventually(30, "no v1 pod left on any node", || {
        b.nodes.iter().all(|n| {
            let root = flotilla::node::pods::Node::runtime_root(n.data_dir());
            std::fs::read_dir(root.join("sandboxes")).map_or(0, |d| d.count())
                <= pods_on_node_count(a, &n.name)
        })
    });
    let (during, failed) = (count("ok v") - before, count("FAIL"));
    eprintln!("client: {during} requests served during the rollout, {failed} failed");
    assert!(
        during >= 20,
        "{}",
        a.ok(&["logs", "client", "--tail", "20"])
    );
    let failures: Vec<String> = String::from_utf8_lossy(&a.cli(&["logs", "client"]).stdout)
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        failed, 0,
        "failed requests during the rollout: {failures:?}"
    );
}

/// The lines of a file the pods append to (a hostPath on the node's machine).
fn lines(p: &std::path::Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
}

fn restarts(a: &Agent, pod: &str) -> i64 {
    a.pod(pod).map_or(-1, |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(-1)
    })
}

/// A node cut off from the rest of the cluster runs its pods on its own, from its local
/// store: a crashing container is restarted on its back-off, one whose liveness probe fails
/// is restarted, a healthy one is left alone, also across a kill -9 of the node's agent
/// meanwhile. Back on the network it recreates nothing, and the cluster learns the restarts.
#[test]
fn a_cut_off_node_keeps_restarting_and_probing_its_pods_and_recreates_none_on_return() {
    // A grace longer than the test: the cluster must not move node-3's pods meanwhile.
    let mut b = Box::start(3, &["--pod-network", "none", "--node-grace", "600"]);
    let tar = flotilla_runtime::testing::test_image(b.nodes[2].data_dir());
    b.nodes[2].ok(&["image", "import", tar.to_str().unwrap()]);
    let starts = b.nodes[2].data_dir().join("starts");
    std::fs::create_dir_all(&starts).unwrap();
    let pod = |name: &str, script: &str, probe: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: node-3}}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: flotilla.local/busybox:1
    command: [sh, -c, "date +%s >> /starts/{name}; {script}"]
    volumeMounts: [{{name: starts, mountPath: /starts}}]
{probe}
  volumes: [{{name: starts, hostPath: {{path: {}}}}}]
"#,
            starts.display()
        )
    };
    let yaml = [
        pod("crasher", "exit 1", ""),
        pod(
            "sick",
            "touch /tmp/ok; sleep 3; rm /tmp/ok; exec sleep 100000",
            "    livenessProbe: {exec: {command: [test, -f, /tmp/ok]}, periodSeconds: 1, failureThreshold: 2}",
        ),
        pod(
            "steady",
            "exec sleep 100000",
            "    readinessProbe: {exec: {command: [\"true\"]}, periodSeconds: 1}",
        ),
    ]
    .join("---\n");
    let a = &b.nodes[0];
    a.ok(&[
        "apply",
        "-f",
        &crate::harness::manifest(a, "cutoff.yaml", &yaml),
    ]);
    a.eventually(90, "steady Ready, crasher and sick restarted once", || {
        a.pod("steady").is_some_and(|p| ready(&p))
            && restarts(a, "crasher") >= 1
            && restarts(a, "sick") >= 1
    });
    let uid = |a: &Agent, name: &str| a.pod(name).unwrap()["metadata"]["uid"].clone();
    let uids: Vec<_> = ["crasher", "sick", "steady"]
        .iter()
        .map(|n| uid(a, n))
        .collect();
    let steady = a.container_status("steady");

    // Cut off: node-3's agent and pods live on, alone.
    b.link(3, false);
    let cut = Instant::now();
    let (crashed, sickened) = (lines(&starts.join("crasher")), lines(&starts.join("sick")));
    let c = &b.nodes[2];
    c.eventually(60, "node-3 restarts both pods while cut off", || {
        lines(&starts.join("crasher")) > crashed && lines(&starts.join("sick")) > sickened
    });
    eprintln!("restarted both while cut off within {:?}", cut.elapsed());
    // Its own API still answers from its local store and runtime.
    assert!(c.ok(&["get", "pods"]).contains("steady"));
    assert_eq!(
        c.cli(&["exec", "steady", "--", "true"]).status.code(),
        Some(0)
    );
    // Its agent killed and started again, still cut off: it carries on.
    b.nodes[2].kill9();
    b.nodes[2].spawn(false);
    let (a, c) = (&b.nodes[0], &b.nodes[2]);
    let (crashed, sickened) = (lines(&starts.join("crasher")), lines(&starts.join("sick")));
    c.eventually(
        90,
        "node-3 restarts both pods again after its agent restarted, still cut off",
        || lines(&starts.join("crasher")) > crashed && lines(&starts.join("sick")) > sickened,
    );
    assert!(
        a.ok(&["get", "nodes"])
            .lines()
            .any(|l| l.starts_with("node-3 ") && l.contains("NotReady")),
        "the others see node-3 cut off"
    );

    // Back: nothing recreated, and the cluster catches up with what happened.
    b.link(3, true);
    eprintln!("cut off for {:?}", cut.elapsed());
    let a = &b.nodes[0];
    a.eventually(60, "the restart counts reach the cluster", || {
        restarts(a, "crasher") + 1 >= lines(&starts.join("crasher")) as i64
            && restarts(a, "sick") + 1 >= lines(&starts.join("sick")) as i64
    });
    let now: Vec<_> = ["crasher", "sick", "steady"]
        .iter()
        .map(|n| uid(a, n))
        .collect();
    assert_eq!(now, uids, "the same pods, none recreated");
    let steady_now = a.container_status("steady");
    assert_eq!(
        (
            &steady_now["containerID"],
            &steady_now["state"]["running"]["startedAt"],
            &steady_now["restartCount"]
        ),
        (
            &steady["containerID"],
            &steady["state"]["running"]["startedAt"],
            &serde_json::json!(0)
        ),
        "the healthy container ran through it all"
    );
    assert_eq!(lines(&starts.join("steady")), 1);
    a.eventually(30, "node-3 Ready again", || {
        a.ok(&["get", "nodes"])
            .lines()
            .any(|l| l.starts_with("node-3 ") && l.contains(" Ready"))
    });
}

/// The overlay follows membership: each node routes to the others' pod CIDRs as they join, and
/// a node removed from the cluster takes its route and its VXLAN entries with it.
#[test]
fn routes_to_pod_cidrs_come_as_nodes_join_and_go_when_a_node_is_removed() {
    let mut b = Box::start(3, &[]);
    let show = |a: &Agent, program: &str, args: &[&str]| {
        let o = a.command(program).args(args).output().unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let a = &b.nodes[0];
    a.eventually(30, "node-1 routes to node-2's and node-3's pods", || {
        let r = show(a, "ip", &["route"]);
        r.contains("10.42.1.0/24 via 10.42.1.0 dev flotilla.1")
            && r.contains("10.42.2.0/24 via 10.42.2.0 dev flotilla.1")
    });
    assert!(show(a, "bridge", &["fdb", "show", "dev", "flotilla.1"]).contains("dst 10.99.0.3"));

    // node-3 is gone for good: its agent stopped, its Node deleted.
    b.nodes[2].kill9();
    b.nodes[0].ok(&["delete", "node", "node-3"]);
    let a = &b.nodes[0];
    a.eventually(30, "node-1's route and entries for node-3 gone", || {
        let r = show(a, "ip", &["route"]);
        r.contains("10.42.1.0/24")
            && !r.contains("10.42.2.0/24")
            && !show(a, "bridge", &["fdb", "show", "dev", "flotilla.1"]).contains("dst 10.99.0.3")
    });
}
