//! The service proxy for real: a node namespace with the pod bridge, backend pods serving HTTP
//! with busybox httpd in their own namespaces, a client pod, and another host on a link to the
//! node. Requests go through the kernel's nftables rules the proxy wrote. Everything is made in
//! namespaces this test creates, and a Drop guard removes them (and the servers) even on failure.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_netproxy::podnet::{Cidr, PodNetwork};

mod common;
use common::{get, inside, must, netns, sh};
use flotilla_netproxy::services::{
    Endpoint, Protocol, ProxyConfig, Service, ServicePort, ServiceProxy, nft,
};

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 5);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);

/// A node namespace with the pod bridge, backend pods serving `backend-I` on port 8080 with
/// busybox httpd, a client pod, and another host on a veth link to the node.
struct Lab {
    namespaces: Vec<String>,
    servers: Vec<Child>,
    _dir: tempfile::TempDir,
    node: String,
    host: String,
    client: String,
    /// Backend pods: namespace and address.
    backends: Vec<(String, Ipv4Addr)>,
    cfg: ProxyConfig,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::env::var_os("FLOTILLA_KEEP_LAB").is_some() {
            eprintln!("FLOTILLA_KEEP_LAB: leaving {:?}", self.namespaces);
            return;
        }
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        for ns in &self.namespaces {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

impl Lab {
    fn new(n: usize) -> Lab {
        // Unique per test process (nextest runs each test in its own), short enough for ifnames.
        let tag = format!("fpx{}", std::process::id() % 1_000_000);
        let mut lab = Lab {
            namespaces: vec![],
            servers: vec![],
            _dir: tempfile::tempdir().unwrap(),
            node: format!("{tag}n"),
            host: format!("{tag}h"),
            client: format!("{tag}c"),
            backends: vec![],
            cfg: ProxyConfig {
                cluster_cidr: "10.42.0.0/16".parse().unwrap(),
                egress: Some(("10.42.0.0/24".parse().unwrap(), "flotilla0".into())),
            },
        };
        for ns in [lab.node.clone(), lab.host.clone(), lab.client.clone()] {
            lab.add_ns(&ns);
        }
        // The other host: a veth from the node's namespace, 192.168.77.0/24.
        let (a, b) = (format!("{tag}a"), format!("{tag}b"));
        must(&[
            "ip", "link", "add", &a, "netns", &lab.node, "type", "veth", "peer", "name", &b,
            "netns", &lab.host,
        ]);
        must(&[
            "ip",
            "-n",
            &lab.node,
            "addr",
            "add",
            "192.168.77.1/24",
            "dev",
            &a,
        ]);
        must(&["ip", "-n", &lab.node, "link", "set", &a, "up"]);
        must(&[
            "ip",
            "-n",
            &lab.host,
            "addr",
            "add",
            "192.168.77.2/24",
            "dev",
            &b,
        ]);
        must(&["ip", "-n", &lab.host, "link", "set", &b, "up"]);
        must(&[
            "ip",
            "netns",
            "exec",
            &lab.node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let mut pods = vec![lab.client.clone()];
        for i in 0..n {
            let ns = format!("{tag}p{i}");
            lab.add_ns(&ns);
            pods.push(ns);
        }
        let state = lab._dir.path().to_owned();
        let cidr: Cidr = "10.42.0.0/24".parse().unwrap();
        let addrs = inside(&lab.node, move || {
            let net = PodNetwork::new("flotilla0", cidr, &state);
            net.ensure_bridge().unwrap();
            net.route_to_bridge("10.43.0.0/16".parse().unwrap())
                .unwrap();
            pods.iter()
                .map(|p| (p.clone(), net.attach(p, &netns(p)).unwrap()))
                .collect::<Vec<_>>()
        });
        // Permanent neighbour entries both ways across the bridge, so that address
        // resolution under a loaded machine (CI) is not what a test measures. A packet that
        // misses the rules still fails: nothing answers for a ClusterIP on the link.
        let mac = |ns: &str, dev: &str| -> String {
            let o = sh(&["ip", "-n", ns, "-o", "link", "show", dev]);
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            text.split_whitespace()
                .skip_while(|w| *w != "link/ether")
                .nth(1)
                .unwrap_or_else(|| panic!("no MAC for {dev} in {ns}: {text}"))
                .to_string()
        };
        let bridge_mac = mac(&lab.node, "flotilla0");
        for (ns, ip) in &addrs {
            let pod_mac = mac(ns, "eth0");
            must(&[
                "ip",
                "-n",
                &lab.node,
                "neigh",
                "replace",
                &ip.to_string(),
                "lladdr",
                &pod_mac,
                "dev",
                "flotilla0",
                "nud",
                "permanent",
            ]);
            must(&[
                "ip",
                "-n",
                ns,
                "neigh",
                "replace",
                "10.42.0.1",
                "lladdr",
                &bridge_mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ]);
        }
        for (i, (ns, ip)) in addrs.into_iter().skip(1).enumerate() {
            let www = lab._dir.path().join(format!("www{i}"));
            std::fs::create_dir_all(&www).unwrap();
            std::fs::write(www.join("index.html"), format!("backend-{i}\n")).unwrap();
            let child = Command::new("ip")
                .args([
                    "netns", "exec", &ns, "busybox", "httpd", "-f", "-p", "8080", "-h",
                ])
                .arg(&www)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            lab.servers.push(child);
            lab.backends.push((ns, ip));
        }
        for (ns, ip) in lab.backends.clone() {
            lab.wait_serving(&ns, ip);
        }
        lab
    }

    fn add_ns(&mut self, ns: &str) {
        must(&["ip", "netns", "add", ns]);
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        self.namespaces.push(ns.to_string());
    }

    fn wait_serving(&self, ns: &str, ip: Ipv4Addr) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.get(ns, &format!("http://{ip}:8080/")).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("backend {ip} in {ns} never served");
    }

    fn get(&self, ns: &str, url: &str) -> Result<String, String> {
        get(ns, url)
    }

    fn endpoints(&self, which: &[usize]) -> Vec<Endpoint> {
        which
            .iter()
            .map(|i| Endpoint {
                ip: self.backends[*i].1,
                port: 8080,
            })
            .collect()
    }

    fn proxy(&self) -> ServiceProxy {
        ServiceProxy::new(self.cfg.clone(), Some(&netns(&self.node)))
    }

    /// Counts which backend answered each of `n` requests from `ns` to `url`.
    fn spread(&self, ns: &str, url: &str, n: usize) -> Vec<usize> {
        let mut counts = vec![0; self.backends.len()];
        for _ in 0..n {
            let body = self
                .get(ns, url)
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            let i: usize = body
                .strip_prefix("backend-")
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("unexpected body {body:?}"));
            counts[i] += 1;
        }
        counts
    }

    fn list(&self, table: &str) -> String {
        let o = sh(&[
            "ip", "netns", "exec", &self.node, "nft", "list", "table", "inet", table,
        ]);
        String::from_utf8_lossy(&o.stdout).to_string()
    }
}

fn web(endpoints: Vec<Endpoint>, node_port: Option<u16>, affinity: Option<u32>) -> Service {
    Service {
        namespace: "default".into(),
        name: "web".into(),
        cluster_ip: CLUSTER_IP,
        affinity_timeout: affinity,
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port,
            endpoints,
        }],
    }
}

#[test]
fn a_cluster_ip_spreads_requests_over_ready_backends_and_rejects_when_none() {
    let lab = Lab::new(3);
    let mut proxy = lab.proxy();
    assert!(
        proxy.in_process(),
        "libnftables is loaded where nftables is installed"
    );
    let r = proxy
        .sync(&[web(lab.endpoints(&[0, 1, 2]), None, None)])
        .unwrap();
    assert!(r.full);
    let url = format!("http://{CLUSTER_IP}/");
    let counts = lab.spread(&lab.client, &url, 60);
    assert!(
        counts.iter().all(|c| *c >= 5),
        "every backend gets a share of 60 requests: {counts:?}"
    );

    // Backend 1 goes unready: it leaves the rules, in a small transaction.
    let r = proxy
        .sync(&[web(lab.endpoints(&[0, 2]), None, None)])
        .unwrap();
    assert!(!r.full && r.commands < 15, "incremental: {r:?}");
    let counts = lab.spread(&lab.client, &url, 30);
    assert_eq!(
        counts[1], 0,
        "no request reaches the unready backend: {counts:?}"
    );

    // No ready endpoint: refused at once, not a black hole.
    proxy.sync(&[web(vec![], None, None)]).unwrap();
    let t = Instant::now();
    let err = lab.get(&lab.client, &url).unwrap_err();
    assert!(err.contains("refused"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "rejected, not timed out"
    );

    // The same through the nft program, as on a machine without libnftables: a new proxy's
    // first sync rebuilds the table.
    let mut program = lab.proxy().with_nft_program();
    assert!(!program.in_process());
    let r = program
        .sync(&[web(lab.endpoints(&[2]), None, None)])
        .unwrap();
    assert!(r.full);
    assert_eq!(lab.spread(&lab.client, &url, 10), [0, 0, 10]);
}

#[test]
fn a_node_port_answers_another_host_and_the_node_itself() {
    let lab = Lab::new(2);
    let mut proxy = lab.proxy();
    proxy
        .sync(&[web(lab.endpoints(&[0, 1]), Some(30080), None)])
        .unwrap();
    let counts = lab.spread(&lab.host, &format!("http://{NODE_IP}:30080/"), 30);
    assert!(counts.iter().all(|c| *c > 0), "{counts:?}");
    // From the node's own namespace, through the ClusterIP and the NodePort.
    for url in [
        format!("http://{CLUSTER_IP}/"),
        format!("http://{NODE_IP}:30080/"),
    ] {
        let body = lab.get(&lab.node, &url).unwrap();
        assert!(body.starts_with("backend-"), "{url}: {body}");
    }
    // Another port on the node is not a NodePort.
    assert!(
        lab.get(&lab.host, &format!("http://{NODE_IP}:30081/"))
            .is_err()
    );

    // Two ports, each with its own endpoints, on the ClusterIP and on every NodePort.
    let mut two = web(lab.endpoints(&[0]), Some(30080), None);
    two.ports.push(ServicePort {
        name: "admin".into(),
        port: 81,
        node_port: Some(30081),
        endpoints: lab.endpoints(&[1]),
        ..two.ports[0].clone()
    });
    proxy.sync(&[two.clone()]).unwrap();
    for (url, want) in [
        (format!("http://{CLUSTER_IP}:80/"), [10, 0]),
        (format!("http://{CLUSTER_IP}:81/"), [0, 10]),
    ] {
        assert_eq!(lab.spread(&lab.client, &url, 10), want, "{url}");
    }
    for (url, want) in [
        (format!("http://{NODE_IP}:30080/"), [10, 0]),
        (format!("http://{NODE_IP}:30081/"), [0, 10]),
    ] {
        assert_eq!(lab.spread(&lab.host, &url, 10), want, "{url}");
    }
    // A NodePort whose service has no ready endpoint refuses at once, as a ClusterIP does.
    for p in two.ports.iter_mut() {
        p.endpoints.clear();
    }
    proxy.sync(&[two]).unwrap();
    let t = Instant::now();
    let err = lab
        .get(&lab.host, &format!("http://{NODE_IP}:30080/"))
        .unwrap_err();
    assert!(err.contains("refused"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "rejected, not timed out"
    );
}

#[test]
fn client_ip_affinity_pins_a_client_to_one_backend() {
    let lab = Lab::new(3);
    let mut proxy = lab.proxy();
    proxy
        .sync(&[web(lab.endpoints(&[0, 1, 2]), None, Some(600))])
        .unwrap();
    let counts = lab.spread(&lab.client, &format!("http://{CLUSTER_IP}/"), 20);
    assert_eq!(
        counts.iter().filter(|c| **c > 0).count(),
        1,
        "one backend serves every request: {counts:?}"
    );

    // With a 1 s timeout the pin lapses between requests 1.2 s apart: over 10 of them a client
    // reaches more than one backend (all on one by chance: (1/3)^9, about 1 in 20,000).
    proxy
        .sync(&[web(lab.endpoints(&[0, 1, 2]), None, Some(1))])
        .unwrap();
    let url = format!("http://{CLUSTER_IP}/");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        seen.insert(lab.get(&lab.client, &url).unwrap());
        std::thread::sleep(Duration::from_millis(1200));
    }
    assert!(seen.len() > 1, "the pin never lapsed: {seen:?}");
}

#[test]
fn a_pod_reaches_itself_through_its_service() {
    let lab = Lab::new(1);
    let mut proxy = lab.proxy();
    proxy.sync(&[web(lab.endpoints(&[0]), None, None)]).unwrap();
    let me = &lab.backends[0].0;
    assert_eq!(
        lab.get(me, &format!("http://{CLUSTER_IP}/")).unwrap(),
        "backend-0"
    );
}

#[test]
fn the_first_sync_removes_stale_rules_and_leaves_other_tables_alone() {
    let lab = Lab::new(1);
    let ns = netns(&lab.node);
    nft(
        Some(&ns),
        "add table inet other\nadd chain inet other keep\n\
         add table inet flotilla\nadd chain inet flotilla stale\n\
         add map inet flotilla service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }\n\
         add element inet flotilla service-ips { 10.43.0.99 . tcp . 80 : goto stale }\n",
    )
    .unwrap();
    let mut proxy = lab.proxy();
    proxy.sync(&[web(lab.endpoints(&[0]), None, None)]).unwrap();
    let ours = lab.list("flotilla");
    assert!(
        !ours.contains("stale") && !ours.contains("10.43.0.99"),
        "{ours}"
    );
    assert!(ours.contains("10.43.0.5"), "{ours}");
    assert!(lab.list("other").contains("chain keep"));
    // A second proxy (an agent restart) rebuilds the same rules; remove takes the table away.
    let mut again = lab.proxy();
    again.sync(&[web(lab.endpoints(&[0]), None, None)]).unwrap();
    assert_eq!(lab.list("flotilla"), ours);
    assert!(again.intact());
    // Someone flushes the whole ruleset (a firewall restart): the proxy notices, and its next
    // sync, with nothing changed, rebuilds the table.
    nft(Some(&ns), "flush ruleset\n").unwrap();
    assert!(!again.intact());
    let r = again.sync(&[web(lab.endpoints(&[0]), None, None)]).unwrap();
    assert!(r.full);
    assert_eq!(lab.list("flotilla"), ours);
    assert!(again.intact());
    again.remove().unwrap();
    assert_eq!(lab.list("flotilla"), "");
}

#[test]
fn a_client_looping_through_a_cluster_ip_never_fails_during_100_syncs() {
    let lab = Lab::new(3);
    let mut proxy = lab.proxy();
    proxy
        .sync(&[web(lab.endpoints(&[0, 1, 2]), None, None)])
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        // The client holds only names, so a failing test still drops (and removes) the lab.
        let (client_ns, stop) = (lab.client.clone(), stop.clone());
        std::thread::spawn(move || {
            let url = format!("http://{CLUSTER_IP}/");
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match get(&client_ns, &url) {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        })
    };
    // Endpoints come and go (never all at once) while other services churn around them.
    let sets: [&[usize]; 4] = [&[0, 1], &[1, 2], &[0, 2], &[0, 1, 2]];
    for i in 0..100 {
        let mut table = vec![web(lab.endpoints(sets[i % 4]), Some(30080), None)];
        for k in 0..(i % 7) * 10 {
            table.push(Service {
                name: format!("other-{k}"),
                cluster_ip: Ipv4Addr::new(10, 43, 1, k as u8),
                ..web(lab.endpoints(&[k % 3]), None, None)
            });
        }
        let r = proxy.sync(&table).unwrap();
        assert!(!r.full);
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = client.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert!(ok >= 20, "the client kept requesting: {ok}");
}

#[test]
fn a_udp_flow_moves_to_a_new_endpoint_when_its_endpoint_leaves() {
    let lab = Lab::new(2);
    // A UDP echo in each backend pod answering its name (sockets keep the namespace they were
    // made in, so they are made inside and served from here).
    for (i, (ns, _)) in lab.backends.iter().enumerate() {
        let sock = inside(ns, || std::net::UdpSocket::bind("0.0.0.0:5353").unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((_, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(format!("backend-{i}").as_bytes(), from);
            }
        });
    }
    let udp = |eps: &[usize]| Service {
        ports: vec![ServicePort {
            name: "dns".into(),
            protocol: Protocol::Udp,
            port: 53,
            node_port: None,
            endpoints: eps
                .iter()
                .map(|i| Endpoint {
                    ip: lab.backends[*i].1,
                    port: 5353,
                })
                .collect(),
        }],
        ..web(vec![], None, None)
    };
    let client = inside(&lab.client, || {
        std::net::UdpSocket::bind("0.0.0.0:0").unwrap()
    });
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let ask = || -> Option<String> {
        client.send_to(b"?", (CLUSTER_IP, 53)).ok()?;
        let mut buf = [0u8; 64];
        let n = client.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).to_string())
    };
    let mut proxy = lab.proxy();
    proxy.sync(&[udp(&[0])]).unwrap();
    for _ in 0..3 {
        assert_eq!(ask().as_deref(), Some("backend-0"));
    }
    // The same flow (same client port), after its endpoint is replaced.
    proxy.sync(&[udp(&[1])]).unwrap();
    assert_eq!(ask().as_deref(), Some("backend-1"));
}

#[test]
fn pods_reach_other_hosts_under_the_nodes_address() {
    let lab = Lab::new(1);
    let mut proxy = lab.proxy();
    proxy.sync(&[]).unwrap();
    // A server on the other host that records who connected (the host has no route to the
    // pod network, so without masquerade the connection could not even be made).
    let host = netns(&lab.host);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let f = std::fs::File::open(&host).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = std::net::TcpListener::bind("192.168.77.2:9000").unwrap();
        l.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok((mut s, peer)) = l.accept() {
                use std::io::{Read, Write};
                // Read the request before answering: closing a socket with unread bytes
                // sends a reset, which can reach the client before it reads the answer.
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 512];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello\n");
                let _ = s.shutdown(std::net::Shutdown::Write);
                return Some(peer.ip());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    });
    ready_rx.recv().unwrap();
    let body = lab.get(&lab.client, "http://192.168.77.2:9000/");
    assert_eq!(
        server.join().unwrap(),
        Some(std::net::IpAddr::V4(NODE_IP)),
        "the other host sees the node, not the pod ({body:?})"
    );
    assert_eq!(body.as_deref(), Ok("hello"));
}
