//! The cluster endpoint of a real agent process: a node joins through it by token over QUIC
//! with the real join token; a wrong secret and a wrong CA hash get nothing.

use flotilla::cluster::join::{self, JoinToken};
use flotilla::cluster::transport::{Credentials, Transport};
use flotilla::cluster::{Request, Response};

use crate::harness::Agent;

#[test]
fn a_node_joins_a_running_agent_by_token_over_quic() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = Agent::start();
    let dir = a.data_dir();
    let addr: std::net::SocketAddr = std::fs::read_to_string(dir.join("cluster-addr"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let token: JoinToken = std::fs::read_to_string(dir.join("join-token"))
        .unwrap()
        .parse()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let joined = join::join(addr, &token, "node-2", &[]).await.unwrap();
        let creds =
            Credentials::from_pem(&joined.response.ca, &joined.response.cert, &joined.key_pem)
                .unwrap();
        // The new certificate makes the joiner a member the agent recognises by name.
        let me = Transport::bind("127.0.0.1:0".parse().unwrap(), &creds).unwrap();
        let pong = me
            .request(addr, &serde_json::to_vec(&Request::Ping).unwrap())
            .await
            .unwrap();
        match serde_json::from_slice(&pong).unwrap() {
            Response::Pong { node, peer } => {
                assert_eq!((node.as_str(), peer.as_str()), ("node-1", "node-2"))
            }
            other => panic!("{other:?}"),
        }

        let wrong_secret = JoinToken {
            secret: "not-the-secret".into(),
            ..token.clone()
        };
        let e = join::join(addr, &wrong_secret, "node-3", &[])
            .await
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("secret is not valid"), "{e:#}");
        let wrong_ca = JoinToken {
            ca_hash: [9; 32],
            ..token
        };
        assert!(join::join(addr, &wrong_ca, "node-3", &[]).await.is_err());
    });
    assert!(a.log().contains("admitted a node"), "{}", a.log());
}

fn node_ready(a: &crate::harness::Agent) -> std::collections::BTreeMap<String, String> {
    a.json(&["get", "nodes"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let ready = n["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"].as_str().unwrap_or("").to_string())
                .unwrap_or_default();
            (n["metadata"]["name"].as_str().unwrap().to_string(), ready)
        })
        .collect()
}

/// The nodes shown with the control-plane role (the quorum's voters).
fn voters(a: &crate::harness::Agent) -> Vec<String> {
    a.json(&["get", "nodes"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == "true")
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn config_map(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"default"}},"data":{{"from":"{name}"}}}}"#
    )
}

fn apply(a: &crate::harness::Agent, yaml: &str) -> std::process::Output {
    let mut cmd = a.command(crate::harness::BIN);
    cmd.args(["apply", "-f", "-"])
        .env("FLOTILLA_CONFIG", a.config());
    crate::harness::with_stdin(cmd, yaml)
}

fn has_config_map(a: &crate::harness::Agent, name: &str) -> bool {
    a.cli(&["get", "configmap", name]).status.success()
}

/// Writes through `a` until one succeeds; returns how long it took.
fn write_until_ok(a: &crate::harness::Agent, name: &str, secs: u64) -> std::time::Duration {
    let t = std::time::Instant::now();
    loop {
        let out = apply(a, &config_map(name));
        if out.status.success() {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(secs),
            "no write through {} within {secs} s: {}\n{}",
            a.name,
            String::from_utf8_lossy(&out.stderr),
            a.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn five_nodes_join_replicate_fail_over_and_replace_a_lost_voter() {
    let mut b =
        crate::harness::Box::start(5, &["--pod-network", "none", "--replace-voter-after", "4"]);
    // Every node sees every node Ready.
    for a in &b.nodes {
        a.eventually(30, "5 Ready nodes", || {
            let r = node_ready(a);
            r.len() == 5 && r.values().all(|s| s == "True")
        });
    }
    // Three voters (the control-plane role), two workers, as every node shows them.
    for a in &b.nodes {
        a.eventually(20, "3 control-plane nodes", || voters(a).len() == 3);
    }
    // A write on a worker is on every node.
    let out = apply(&b.nodes[4], &config_map("from-node-5"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for a in &b.nodes {
        a.eventually(10, "from-node-5 everywhere", || {
            has_config_map(a, "from-node-5")
        });
    }

    // A worker cut off: the others show it not Ready; it keeps answering reads from its own
    // store; when its link returns it catches up.
    b.link(5, false);
    write_until_ok(&b.nodes[3], "while-node-5-away", 10);
    b.nodes[2].eventually(20, "node-5 not Ready on node-3", || {
        node_ready(&b.nodes[2]).get("node-5").map(String::as_str) == Some("Unknown")
    });
    assert!(has_config_map(&b.nodes[4], "from-node-5"));
    assert!(!has_config_map(&b.nodes[4], "while-node-5-away"));
    // A consistent read cannot be had there, and says why.
    let out = b.nodes[4].cli(&["get", "configmap", "from-node-5", "--consistent"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no quorum"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.link(5, true);
    b.nodes[4].eventually(20, "node-5 catches up", || {
        has_config_map(&b.nodes[4], "while-node-5-away")
    });
    // A write through one node is seen at once by a consistent read through another.
    write_until_ok(&b.nodes[0], "read-your-write", 10);
    let got = b.nodes[3].ok(&["get", "configmap", "read-your-write", "--consistent"]);
    assert!(got.contains("read-your-write"), "{got}");

    // kill -9 of node-1 (the founder, leading since the start): writes through any other node
    // succeed again after a new election.
    b.nodes[0].kill9();
    let failover = write_until_ok(&b.nodes[2], "after-leader-died", 20);
    eprintln!("failover: first successful write {failover:?} after kill -9");
    b.nodes[1].eventually(20, "node-1 not Ready on node-2", || {
        node_ready(&b.nodes[1]).get("node-1").map(String::as_str) == Some("Unknown")
    });

    // node-1 is gone for good: after --replace-voter-after its vote goes to a healthy worker,
    // so the cluster now survives losing another of the first three voters.
    b.nodes[2].eventually(30, "node-1's vote given to a worker", || {
        let v = voters(&b.nodes[2]);
        v.len() == 3 && !v.contains(&"node-1".to_string())
    });
    b.nodes[1].kill9();
    write_until_ok(&b.nodes[4], "after-second-loss", 20);

    // The three survivors end on the same contents and revision.
    let revs: Vec<String> = b.nodes[2..]
        .iter()
        .map(|a| {
            a.eventually(10, "after-second-loss everywhere", || {
                has_config_map(a, "after-second-loss")
            });
            let v = a.json(&["get", "configmaps"]);
            let names: Vec<&str> = v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap())
                .collect();
            assert_eq!(
                names,
                [
                    "after-leader-died",
                    "after-second-loss",
                    "from-node-5",
                    "read-your-write",
                    "while-node-5-away"
                ],
                "on {}",
                a.name
            );
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    i["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    assert!(revs.windows(2).all(|w| w[0] == w[1]), "{revs:?}");
}

#[test]
fn nodes_beyond_the_quorum_pull_the_log_from_peers() {
    // One voter and no standby learner: nodes 2-4 are not replicated to by the leader; they
    // pull from peers gossip shows ahead of them.
    let mut b = crate::harness::Box::start(
        4,
        &[
            "--pod-network",
            "none",
            "--max-voters",
            "1",
            "--standby-learners",
            "0",
        ],
    );
    for a in &b.nodes {
        a.eventually(30, "4 Ready nodes", || {
            let r = node_ready(a);
            r.len() == 4 && r.values().all(|s| s == "True")
        });
        a.eventually(20, "node-1 shown as the control plane", || {
            voters(a) == ["node-1"]
        });
    }
    // A write through a puller reaches every node.
    let out = apply(&b.nodes[3], &config_map("from-a-puller"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for a in &b.nodes {
        a.eventually(10, "from-a-puller everywhere", || {
            has_config_map(a, "from-a-puller")
        });
    }
    // A consistent read through a puller sees a write made through the voter at once.
    write_until_ok(&b.nodes[0], "fresh", 10);
    let got = b.nodes[2].ok(&["get", "configmap", "fresh", "--consistent"]);
    assert!(got.contains("fresh"), "{got}");
    // One puller dies and another is cut off; writes go on, and the cut-off one catches up
    // when its link returns.
    b.nodes[1].kill9();
    b.link(4, false);
    write_until_ok(&b.nodes[2], "while-away", 10);
    b.nodes[2].eventually(10, "while-away on node-3", || {
        has_config_map(&b.nodes[2], "while-away")
    });
    assert!(!has_config_map(&b.nodes[3], "while-away"));
    b.link(4, true);
    b.nodes[3].eventually(30, "node-4 catches up", || {
        has_config_map(&b.nodes[3], "while-away")
    });
}

#[test]
fn services_created_through_two_nodes_at_once_get_distinct_addresses() {
    let b = crate::harness::Box::start(2, &["--pod-network", "none"]);
    for a in &b.nodes {
        a.eventually(30, "2 Ready nodes", || node_ready(a).len() == 2);
    }
    // Each node allocates from what its replica shows; writing at the same moment, both would
    // pick the same free ClusterIP and NodePort. The store refuses the second claim and the
    // node allocates again.
    let threads: Vec<_> = b
        .nodes
        .iter()
        .enumerate()
        .map(|(n, a)| {
            let (ns, cfg) = (a.netns.clone().unwrap(), a.config());
            std::thread::spawn(move || {
                for i in 0..8 {
                    let yaml = format!(
                        "apiVersion: v1\nkind: Service\nmetadata: {{name: s{n}-{i}}}\nspec: {{type: NodePort, selector: {{app: x}}, ports: [{{port: 80}}]}}\n"
                    );
                    let mut cmd = std::process::Command::new("nsenter");
                    cmd.arg(format!("--net=/run/netns/{ns}"))
                        .arg(crate::harness::BIN)
                        .args(["apply", "-f", "-"])
                        .env("FLOTILLA_CONFIG", &cfg);
                    let out = crate::harness::with_stdin(cmd, &yaml);
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let a = &b.nodes[0];
    a.eventually(10, "16 services", || {
        a.json(&["get", "services"])["items"]
            .as_array()
            .is_some_and(|v| {
                v.iter()
                    .filter(|s| {
                        s["metadata"]["name"]
                            .as_str()
                            .is_some_and(|n| n.starts_with('s'))
                    })
                    .count()
                    == 16
            })
    });
    let v = a.json(&["get", "services"]);
    let svcs: Vec<&serde_json::Value> = v["items"].as_array().unwrap().iter().collect();
    let ips: std::collections::BTreeSet<&str> = svcs
        .iter()
        .map(|s| s["spec"]["clusterIP"].as_str().unwrap())
        .collect();
    let ports: std::collections::BTreeSet<i64> = svcs
        .iter()
        .filter_map(|s| s["spec"]["ports"][0]["nodePort"].as_i64())
        .collect();
    assert_eq!(ips.len(), svcs.len(), "a ClusterIP given twice: {v:#}");
    assert_eq!(ports.len(), 16, "a NodePort given twice: {v:#}");
}

#[test]
fn tokens_admit_through_any_member_until_revoked_or_expired() {
    let mut b = crate::harness::Box::start(2, &["--pod-network", "none"]);
    // A new token, used through node-2 (not the founder): any member admits.
    let token = b.nodes[0].ok(&["token", "create", "--description", "for node-3"]);
    let token = token.trim().to_string();
    assert!(token.starts_with("K10"), "{token}");
    b.add(Some((2, token.clone())), &["--pod-network", "none"])
        .unwrap();
    b.nodes[2].eventually(30, "node-3 sees 3 nodes", || {
        node_ready(&b.nodes[2]).len() == 3
    });
    let list = b.nodes[1].ok(&["token", "list"]);
    let id = &token.rsplit("::").next().unwrap()[..6];
    assert!(
        list.lines()
            .any(|l| l.starts_with(id) && l.contains("valid") && l.contains("for node-3")),
        "{list}"
    );
    assert!(list.contains("made at --init"), "{list}");

    // Revoked: the next node is refused, and says so.
    assert!(b.nodes[2].ok(&["token", "revoke", id]).contains("revoked"));
    let refused = b.add(Some((3, token)), &["--pod-network", "none"]);
    let log = refused.expect_err("a revoked token admitted a node");
    assert!(log.contains("refused the join"), "{log}");
    assert!(log.contains("secret is not valid"), "{log}");

    // Expired: refused too.
    let short = b.nodes[0].ok(&["token", "create", "--ttl", "1s"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(b.nodes[0].ok(&["token", "list"]).contains("expired"));
    let refused = b.add(
        Some((1, short.trim().to_string())),
        &["--pod-network", "none"],
    );
    assert!(refused.is_err(), "an expired token admitted a node");
    // Bad input: a clear error naming the flag.
    let out = b.nodes[0].cli(&["token", "create", "--ttl", "5y"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ttl"));
}

/// A write through the CLI in a node's namespace, without borrowing the node (the chaos
/// thread owns the agents).
fn write_cm(netns: &str, config: &std::path::Path, name: &str) -> bool {
    let mut cmd = std::process::Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{netns}"))
        .arg(crate::harness::BIN)
        .args(["apply", "-f", "-"])
        .env("FLOTILLA_CONFIG", config);
    crate::harness::with_stdin(cmd, &config_map(name))
        .status
        .success()
}

/// The names and resourceVersions of every ConfigMap a node holds.
fn contents(a: &crate::harness::Agent) -> Option<Vec<(String, String)>> {
    let out = a.cli(&["get", "configmaps", "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let mut items: Vec<(String, String)> = v["items"]
        .as_array()?
        .iter()
        .map(|i| {
            (
                i["metadata"]["name"].as_str().unwrap_or("").to_string(),
                i["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    items.sort();
    Some(items)
}

/// Jepsen-style: writers through every node while nodes are killed and restarted; then every
/// acknowledged write is present, nothing appears that was never attempted, and every node
/// ends on the same contents and revisions.
#[test]
fn concurrent_writers_lose_no_acknowledged_write_while_nodes_die_and_return() {
    let mut b = crate::harness::Box::start(3, &["--pod-network", "none"]);
    for a in &b.nodes {
        a.eventually(20, "3 voters", || voters(a).len() == 3);
    }
    let targets: Vec<(String, std::path::PathBuf)> = b
        .nodes
        .iter()
        .map(|a| (a.netns.clone().unwrap(), a.config()))
        .collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (acked, unknown) = std::thread::scope(|s| {
        let writers: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(w, (ns, cfg))| {
                let stop = &stop;
                s.spawn(move || {
                    let (mut acked, mut unknown) = (Vec::new(), Vec::new());
                    let mut k = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let name = format!("w{w}-{k}");
                        k += 1;
                        if write_cm(ns, cfg, &name) {
                            acked.push(name);
                        } else {
                            unknown.push(name);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                        }
                    }
                    (acked, unknown)
                })
            })
            .collect();
        // Chaos: kill -9 each node in turn (the leader first) and bring it back.
        let nodes = &mut b.nodes;
        for i in [0usize, 1, 2, 0] {
            std::thread::sleep(std::time::Duration::from_secs(2));
            nodes[i].kill9();
            std::thread::sleep(std::time::Duration::from_secs(3));
            nodes[i].spawn(false);
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut acked = std::collections::BTreeSet::new();
        let mut unknown = std::collections::BTreeSet::new();
        for w in writers {
            let (a, u) = w.join().unwrap();
            acked.extend(a);
            unknown.extend(u);
        }
        (acked, unknown)
    });
    assert!(
        acked.len() > 20,
        "too few writes got through: {}",
        acked.len()
    );
    // Every node converges on one history.
    let mut last = None;
    b.nodes[0].eventually(30, "the same contents on every node", || {
        let all: Vec<Option<Vec<(String, String)>>> = b.nodes.iter().map(contents).collect();
        let same = all[0].is_some() && all.iter().all(|c| *c == all[0]);
        last = all[0].clone();
        same
    });
    let present: std::collections::BTreeSet<String> = last
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with('w'))
        .collect();
    let lost: Vec<&String> = acked.difference(&present).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let phantom: Vec<&String> = present
        .iter()
        .filter(|n| !acked.contains(*n) && !unknown.contains(*n))
        .collect();
    assert!(phantom.is_empty(), "writes nobody made: {phantom:?}");
    eprintln!(
        "{} acknowledged, {} failed or unknown ({} of those applied)",
        acked.len(),
        unknown.len(),
        present.len() - acked.len()
    );
}

#[test]
fn a_node_renews_its_certificate_and_keeps_talking() {
    let mut b = crate::harness::Box::start(1, &["--pod-network", "none"]);
    let token = std::fs::read_to_string(b.nodes[0].data_dir().join("join-token")).unwrap();
    // node-2 renews whenever fewer than 400 days are left: at its first check, 5 s in.
    b.add(
        Some((1, token.trim().to_string())),
        &["--pod-network", "none", "--renew-cert-within-days", "400"],
    )
    .unwrap();
    let crt = b.nodes[1].data_dir().join("pki/node.crt");
    let before = std::fs::read_to_string(&crt).unwrap();
    b.nodes[1].eventually(30, "a renewed certificate", || {
        b.nodes[1].log().contains("renewed the node certificate")
    });
    let after = std::fs::read_to_string(&crt).unwrap();
    assert_ne!(before, after);
    let (from, to) = flotilla::cluster::certs::validity(&after).unwrap();
    assert!(((to - from) as f64 / 86_400.0 - 365.0).abs() < 1.0);
    // With the new certificate, node-2's API answers and its writes reach node-1 over QUIC.
    let out = apply(&b.nodes[1], &config_map("after-renewal"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.nodes[0].eventually(10, "the write on node-1", || {
        has_config_map(&b.nodes[0], "after-renewal")
    });
}

/// The resource metrics of a 3-node box, read through a node that runs none of the pods:
/// `kubectl top nodes` shows each node's CPU and memory, `kubectl top pod` a busy pod on
/// node-3 using CPU, by container too, and `flotilla top` the same figures.
#[test]
fn kubectl_top_shows_every_nodes_usage_and_a_busy_pod_from_another_node() {
    let b = crate::harness::Box::start(3, &["--pod-network", "none", "--metrics-resolution", "1"]);
    let tar = flotilla_runtime::testing::test_image(b.nodes[2].data_dir());
    b.nodes[2].ok(&["image", "import", tar.to_str().unwrap()]);
    let a = &b.nodes[0];
    a.eventually(30, "3 Ready nodes", || node_ready(a).len() == 3);
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: busy, labels: {app: busy}}\nspec:\n  nodeSelector: {kubernetes.io/hostname: node-3}\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: burn\n    image: flotilla.local/busybox:1\n    command: [sh, -c, 'while :; do :; done']\n";
    a.ok(&[
        "apply",
        "-f",
        &crate::harness::manifest(a, "busy.yaml", yaml),
    ]);
    a.eventually(60, "busy Running", || {
        a.pod("busy")
            .is_some_and(|p| p["status"]["phase"] == "Running")
    });

    let cores = |cell: &str| cell.trim_end_matches('m').parse::<u64>().unwrap_or(0);
    let mut nodes = String::new();
    a.eventually(
        30,
        "kubectl top nodes shows the three nodes' figures",
        || {
            let out = a.kubectl(&["top", "nodes"]);
            nodes = String::from_utf8_lossy(&out.stdout).into_owned();
            out.status.success() && nodes.lines().count() == 4 && !nodes.contains("<unknown>")
        },
    );
    let header: Vec<&str> = nodes.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]
    );
    for line in nodes.lines().skip(1) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert!(cells[0].starts_with("node-"), "{nodes}");
        assert!(
            cells[3].ends_with("Mi") && cells[4].ends_with('%'),
            "{nodes}"
        );
    }
    let node3: Vec<&str> = nodes
        .lines()
        .find(|l| l.starts_with("node-3"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert!(cores(node3[1]) >= 100, "node-3 burns CPU: {nodes}");

    let mut pod = String::new();
    a.eventually(30, "kubectl top pod busy shows it burning", || {
        let out = a.kubectl(&["top", "pod", "busy", "--containers"]);
        pod = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
            && pod
                .lines()
                .nth(1)
                .is_some_and(|l| cores(l.split_whitespace().nth(2).unwrap_or("")) >= 100)
    });
    let row: Vec<&str> = pod.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["busy", "burn"], "{pod}");
    assert!(row[3].ends_with("Mi"), "{pod}");
    // By label, in every namespace, and through the flotilla CLI on another node.
    let all = a.kubectl_ok(&["top", "pods", "-A", "-l", "app=busy"]);
    assert!(
        all.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("default") && l.contains("busy")),
        "{all}"
    );
    let none = a.kubectl(&["top", "pods", "-l", "app=nothing"]);
    assert!(!String::from_utf8_lossy(&none.stdout).contains("busy"));
    let ours = b.nodes[1].ok(&["top", "pods"]);
    let row: Vec<&str> = ours
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(row.first(), Some(&"busy"), "{ours}");
    assert!(cores(row[1]) >= 100, "{ours}");
    let ours = b.nodes[1].ok(&["top", "nodes"]);
    assert_eq!(ours.lines().count(), 4, "{ours}");
}

/// A Deployment whose pods burn CPU for their first 25 seconds: its HorizontalPodAutoscaler
/// (50% of the 100m requested) scales it from 1 to its maximum of 3 on every node's samples,
/// then back to 1 once they idle and the 5 s scale-down window has passed, with kubectl's
/// columns, the conditions and the events a k3s user reads.
#[test]
fn an_autoscaler_scales_a_busy_deployment_up_and_back_down() {
    let b = crate::harness::Box::start(
        3,
        &[
            "--pod-network",
            "none",
            "--metrics-resolution",
            "1",
            "--horizontal-pod-autoscaler-sync-period",
            "2",
        ],
    );
    for n in &b.nodes {
        let tar = flotilla_runtime::testing::test_image(n.data_dir());
        n.ok(&["image", "import", tar.to_str().unwrap()]);
    }
    let a = &b.nodes[0];
    a.eventually(30, "3 Ready nodes", || node_ready(a).len() == 3);
    let yaml = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: burner}
spec:
  replicas: 1
  selector: {matchLabels: {app: burner}}
  template:
    metadata: {labels: {app: burner}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: burn
        image: flotilla.local/busybox:1
        command: [sh, -c, 'end=$(($(date +%s)+25)); while [ $(date +%s) -lt $end ]; do :; done; exec sleep 3600']
        resources:
          requests: {cpu: 100m}
          limits: {cpu: 200m}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burner}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burner}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 5}
"#;
    a.ok(&[
        "apply",
        "-f",
        &crate::harness::manifest(a, "burner.yaml", yaml),
    ]);
    let replicas = || {
        a.json(&["get", "deployment", "burner"])["spec"]["replicas"]
            .as_i64()
            .unwrap_or(0)
    };
    a.eventually(90, "the autoscaler to scale burner to 3", || {
        replicas() == 3
    });
    let hpa = a.kubectl_ok(&["get", "hpa", "burner"]);
    let header: Vec<&str> = hpa.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ],
        "{hpa}"
    );
    let row = hpa.lines().nth(1).unwrap();
    assert!(
        row.contains("Deployment/burner") && row.contains("cpu: ") && row.contains("%/50%"),
        "{hpa}"
    );
    let h: serde_json::Value =
        serde_json::from_str(&a.kubectl_ok(&["get", "hpa", "burner", "-o", "json"])).unwrap();
    let conditions = h["status"]["conditions"].as_array().unwrap();
    let reason = |t: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == t)
            .map(|c| c["reason"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(
        reason("ScalingActive").as_deref(),
        Some("ValidMetricFound"),
        "{h}"
    );
    assert!(h["status"]["lastScaleTime"].is_string(), "{h}");
    let events = a.ok(&["get", "events"]);
    assert!(
        events.contains("SuccessfulRescale")
            && events.contains("cpu resource utilization (percentage of request) above target"),
        "{events}"
    );
    // Every pod has idled after its 25 s and the window has passed: back to the minimum.
    a.eventually(120, "the autoscaler to scale burner back to 1", || {
        replicas() == 1
    });
    let events = a.ok(&["get", "events"]);
    assert!(
        events.contains("New size: 1; reason: All metrics below target"),
        "{events}"
    );
    a.eventually(60, "burner down to one pod", || {
        a.json(&["get", "pods", "-l", "app=burner"])["items"]
            .as_array()
            .is_some_and(|p| p.len() == 1)
    });
}

/// The Jobs of CronJob `tick`, by name, with their scheduled times (seconds since the epoch).
fn ticks(a: &crate::harness::Agent) -> Vec<(String, i64)> {
    let jobs = a.json(&["get", "jobs"]);
    let mut out: Vec<(String, i64)> = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["metadata"]["ownerReferences"][0]["name"] == "tick")
        .filter(|j| j["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"].is_null())
        .map(|j| {
            let at =
                j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
                    .as_str()
                    .unwrap()
                    .parse::<k8s_openapi::jiff::Timestamp>()
                    .unwrap()
                    .as_second();
            (j["metadata"]["name"].as_str().unwrap().to_string(), at)
        })
        .collect();
    out.sort_by_key(|(_, at)| *at);
    out
}

#[test]
fn a_cronjob_makes_one_job_a_minute_across_a_leader_kill() {
    let mut b = crate::harness::Box::start(3, &["--pod-network", "none"]);
    for n in &b.nodes {
        let tar = flotilla_runtime::testing::test_image(n.data_dir());
        n.ok(&["image", "import", tar.to_str().unwrap()]);
    }
    // Driven with kubectl through node-2, which outlives node-1 (the leader since the start).
    let a = &b.nodes[1];
    a.eventually(30, "3 Ready nodes", || node_ready(a).len() == 3);
    let yaml = r#"apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "* * * * *"
  timeZone: Etc/UTC
  successfulJobsHistoryLimit: 5
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: c, image: flotilla.local/busybox:1, command: [echo, tick]}]
"#;
    let m = crate::harness::manifest(a, "tick.yaml", yaml);
    assert!(
        a.kubectl_ok(&["apply", "-f", &m])
            .contains("cronjob.batch/tick created")
    );
    let table = a.kubectl_ok(&["get", "cronjobs"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE"
        ],
        "{table}"
    );
    let row = table.lines().nth(1).unwrap();
    assert!(
        row.starts_with("tick")
            && row.contains("* * * * *")
            && row.contains("Etc/UTC")
            && row.contains("False")
            && row.contains("<none>"),
        "{table}"
    );

    // The first Job at the next whole minute, named by it.
    a.eventually(75, "the first Job", || !ticks(a).is_empty());
    let first = ticks(a)[0].clone();
    assert_eq!(first.1 % 60, 0);
    assert_eq!(first.0, format!("tick-{}", first.1 / 60));
    a.eventually(60, "the first Job complete", || {
        a.json(&["get", "job", &first.0])["status"]["succeeded"] == 1
    });
    a.eventually(10, "lastSuccessfulTime", || {
        a.json(&["get", "cronjob", "tick"])["status"]["lastSuccessfulTime"].is_string()
    });

    // kill -9 of the leader three seconds before the next scheduled minute.
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let next = (now / 60 + 1) * 60;
    let wait = next - 3 - now;
    if wait > 0 {
        std::thread::sleep(std::time::Duration::from_secs(wait as u64));
    }
    b.nodes[0].kill9();
    let a = &b.nodes[1];
    a.eventually(150, "the Jobs of the next two minutes", || {
        ticks(a).iter().any(|(_, at)| *at == next + 60)
    });
    // One Job for every minute since the first, none twice, none missed.
    let got: Vec<i64> = ticks(a).iter().map(|(_, at)| *at).collect();
    let want: Vec<i64> = (0..).map(|i| first.1 + 60 * i).take(got.len()).collect();
    assert_eq!(got, want, "{:?}", ticks(a));
    assert!(got.contains(&next), "the minute of the kill: {got:?}");

    // A Job made by hand from the CronJob's template (kubectl's own way), beside its schedule.
    let made = a.kubectl_ok(&["create", "job", "--from=cronjob/tick", "by-hand"]);
    assert!(made.contains("job.batch/by-hand created"), "{made}");
    a.eventually(60, "by-hand complete", || {
        a.json(&["get", "job", "by-hand"])["status"]["succeeded"] == 1
    });
    let described = a.kubectl_ok(&["describe", "cronjob", "tick"]);
    assert!(described.contains("SuccessfulCreate"), "{described}");
    // Deleting the CronJob takes its Jobs and their pods.
    a.kubectl_ok(&["delete", "cronjob", "tick"]);
    a.eventually(60, "tick's Jobs gone", || ticks(a).is_empty());
}
