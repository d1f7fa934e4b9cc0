//! Two nodes' pods talk across nodes: two node namespaces on a shared bridge (in a third
//! namespace, the "switch"), each with its pod bridge and one pod, joined by VXLAN or host-gw
//! routes. A Drop guard removes every namespace (and the pod's server) even on failure.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_netproxy::overlay::{Backend, Overlay, Peer};
use flotilla_netproxy::podnet::PodNetwork;

mod common;
use common::{get, inside, must, netns};

struct TwoNodes {
    namespaces: Vec<String>,
    server: Option<Child>,
    _dir: tempfile::TempDir,
    nodes: [String; 2],
    pods: [String; 2],
    overlays: [Overlay; 2],
}

impl Drop for TwoNodes {
    fn drop(&mut self) {
        if let Some(s) = &mut self.server {
            let _ = s.kill();
            let _ = s.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl TwoNodes {
    fn new(backend: Backend) -> TwoNodes {
        let tag = format!("fov{}", std::process::id() % 1_000_000);
        let dir = tempfile::tempdir().unwrap();
        let switch = format!("{tag}s");
        let nodes = [format!("{tag}n1"), format!("{tag}n2")];
        let pods = [format!("{tag}p1"), format!("{tag}p2")];
        let mut t = TwoNodes {
            namespaces: vec![],
            server: None,
            _dir: dir,
            nodes: nodes.clone(),
            pods: pods.clone(),
            overlays: [1u8, 2].map(|i| Overlay {
                backend,
                node_ip: Ipv4Addr::new(192, 168, 80, i),
                pod_cidr: format!("10.42.{i}.0/24").parse().unwrap(),
                cluster: "10.42.0.0/16".parse().unwrap(),
            }),
        };
        for ns in [&switch, &nodes[0], &nodes[1], &pods[0], &pods[1]] {
            must(&["ip", "netns", "add", ns]);
            t.namespaces.push(ns.clone());
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        must(&["ip", "-n", &switch, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &switch, "link", "set", "br0", "up"]);
        for (i, node) in nodes.iter().enumerate() {
            let (a, b) = (format!("{tag}a{i}"), format!("{tag}b{i}"));
            must(&[
                "ip", "link", "add", &a, "netns", node, "type", "veth", "peer", "name", &b,
                "netns", &switch,
            ]);
            must(&[
                "ip", "-n", &switch, "link", "set", &b, "master", "br0", "up",
            ]);
            let addr = format!("192.168.80.{}/24", i + 1);
            must(&["ip", "-n", node, "addr", "add", &addr, "dev", &a]);
            must(&["ip", "-n", node, "link", "set", &a, "up"]);
            must(&[
                "ip",
                "netns",
                "exec",
                node,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ]);
            let (cidr, state, pod) = (
                t.overlays[i].pod_cidr,
                t._dir.path().join(format!("net{i}")),
                pods[i].clone(),
            );
            let ip = inside(node, move || {
                let net = PodNetwork::new("flotilla0", cidr, &state).with_mtu(backend.pod_mtu());
                net.ensure_bridge().unwrap();
                net.attach(&pod, &netns(&pod)).unwrap()
            });
            assert_eq!(ip, Ipv4Addr::new(10, 42, i as u8 + 1, 2));
        }
        let www = t._dir.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "pod-2\n").unwrap();
        t.server = Some(
            Command::new("ip")
                .args([
                    "netns", "exec", &pods[1], "busybox", "httpd", "-f", "-p", "8080", "-h",
                ])
                .arg(&www)
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        t
    }

    fn sync(&self, i: usize, peers: Vec<Peer>) {
        let o = self.overlays[i].clone();
        inside(&self.nodes[i], move || o.sync(&peers)).unwrap();
    }

    fn peer(&self, i: usize) -> Peer {
        Peer {
            node_ip: self.overlays[i].node_ip,
            pod_cidr: self.overlays[i].pod_cidr,
        }
    }

    fn routes(&self, i: usize) -> String {
        let o = Command::new("ip")
            .args(["-n", &self.nodes[i], "route"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    }
}

fn pods_talk_across_nodes(backend: Backend) {
    let t = TwoNodes::new(backend);
    // Both nodes see both (as membership gives every node the whole table), twice: idempotent.
    for _ in 0..2 {
        let all = vec![t.peer(0), t.peer(1)];
        t.sync(0, all.clone());
        t.sync(1, all);
    }
    let url = "http://10.42.2.2:8080/";
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = get(&t.pods[0], url);
    while last.is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        last = get(&t.pods[0], url);
    }
    assert_eq!(
        last,
        Ok("pod-2".to_string()),
        "routes on node 1:\n{}",
        t.routes(0)
    );
    let via = match backend {
        Backend::Vxlan => "10.42.2.0/24 via 10.42.2.0 dev flotilla.1",
        Backend::HostGw => "10.42.2.0/24 via 192.168.80.2",
    };
    assert!(t.routes(0).contains(via), "{}", t.routes(0));
    // Pods' MTU leaves room for the tunnel's headers.
    let link = Command::new("ip")
        .args(["-n", &t.pods[0], "link", "show", "eth0"])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    let mtu = match backend {
        Backend::Vxlan => "mtu 1450 ",
        Backend::HostGw => "mtu 1500 ",
    };
    assert!(link.contains(mtu), "{link}");

    // Node 2 leaves: node 1's route to its pods goes, and so does the traffic; with VXLAN
    // also the device's entries for it.
    // The vxlan device's neighbour and forwarding entries on node `i`.
    let entries = |i: usize| {
        let show = |program: &str, args: &[&str]| {
            let o = Command::new(program)
                .args(["-n", &t.nodes[i]])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).to_string()
        };
        show("ip", &["neigh", "show", "dev", "flotilla.1"])
            + &show("bridge", &["fdb", "show", "dev", "flotilla.1"])
    };
    if backend == Backend::Vxlan {
        let e = entries(0);
        assert!(
            e.contains("10.42.2.0 lladdr 02:66:c0:a8:50:02 PERMANENT"),
            "{e}"
        );
        assert!(e.contains("02:66:c0:a8:50:02 dst 192.168.80.2"), "{e}");
    }
    t.sync(0, vec![t.peer(0)]);
    assert!(!t.routes(0).contains("10.42.2.0/24"), "{}", t.routes(0));
    assert!(get(&t.pods[0], url).is_err());
    if backend == Backend::Vxlan {
        let e = entries(0);
        assert!(
            !e.contains("02:66:c0:a8:50:02"),
            "entries of a node that left: {e}"
        );
    }
    // It comes back.
    t.sync(0, vec![t.peer(0), t.peer(1)]);
    assert_eq!(get(&t.pods[0], url), Ok("pod-2".to_string()));
    let o = t.overlays[0].clone();
    inside(&t.nodes[0], move || o.remove()).unwrap();
    assert!(!t.routes(0).contains("10.42.2.0/24"), "{}", t.routes(0));
}

#[test]
fn pods_on_two_nodes_talk_over_vxlan() {
    pods_talk_across_nodes(Backend::Vxlan);
}

#[test]
fn pods_on_two_nodes_talk_over_host_gw_routes() {
    pods_talk_across_nodes(Backend::HostGw);
}
