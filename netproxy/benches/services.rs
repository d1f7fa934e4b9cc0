//! Service proxy figures (the networking issue), in namespaces this benchmark makes and removes:
//!
//! - Sync time for 10, 1,000 and 5,000 services with 10 endpoints each: the first (full) sync, and
//!   a sync after one endpoint of one service changes (median of 20).
//! - TCP connect latency through a ClusterIP with 10 and with 5,000 services installed, beside
//!   the same services laid out as kube-proxy's iptables mode lays them out (iptables-nft: one
//!   `KUBE-SERVICES` rule per service, a chain per service and per endpoint), with the measured
//!   service last in that list, and its load time with `iptables-restore`.
//!
//! `cargo bench -p flotilla-netproxy --bench services [-- --sizes 1000,5000 --connects 1000]`
//! as root; `scripts/bench/services.sh` installs iptables first.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_netproxy::podnet::Cidr;
use flotilla_netproxy::services::{
    Endpoint, Protocol, ProxyConfig, Service, ServicePort, ServiceProxy, TABLE,
};

const TARGET: Ipv4Addr = Ipv4Addr::new(10, 43, 255, 254);

fn ip(args: &[&str]) {
    let ok = Command::new("ip").args(args).status().unwrap();
    assert!(ok.success(), "ip {args:?}");
}

/// node <-> client on 10.99.1.0/24, node <-> backend on 10.99.2.0/24; the backend holds ten
/// addresses (the measured service's endpoints) and accepts on port 8080.
struct Lab {
    node: String,
    client: String,
    backend: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.node, &self.client, &self.backend] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn netns(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

fn enter(ns: &str) {
    let f = std::fs::File::open(netns(ns)).unwrap();
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

impl Lab {
    fn new() -> Lab {
        let p = format!("fpb{}", std::process::id() % 100_000);
        let lab = Lab {
            node: format!("{p}n"),
            client: format!("{p}c"),
            backend: format!("{p}b"),
        };
        for ns in [&lab.node, &lab.client, &lab.backend] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        for (peer, net) in [(&lab.client, 1), (&lab.backend, 2)] {
            let (a, b) = (format!("{p}x{net}"), format!("{p}y{net}"));
            ip(&[
                "link", "add", &a, "netns", &lab.node, "type", "veth", "peer", "name", &b, "netns",
                peer,
            ]);
            ip(&[
                "-n",
                &lab.node,
                "addr",
                "add",
                &format!("10.99.{net}.1/24"),
                "dev",
                &a,
            ]);
            ip(&["-n", &lab.node, "link", "set", &a, "up"]);
            ip(&[
                "-n",
                peer,
                "addr",
                "add",
                &format!("10.99.{net}.2/24"),
                "dev",
                &b,
            ]);
            ip(&["-n", peer, "link", "set", &b, "up"]);
            ip(&[
                "-n",
                peer,
                "route",
                "add",
                "default",
                "via",
                &format!("10.99.{net}.1"),
            ]);
            if net == 2 {
                for i in 10..20 {
                    ip(&[
                        "-n",
                        peer,
                        "addr",
                        "add",
                        &format!("10.99.2.{i}/24"),
                        "dev",
                        &b,
                    ]);
                }
            }
        }
        ip(&[
            "-n",
            &lab.node,
            "route",
            "add",
            "10.43.0.0/16",
            "via",
            "10.99.2.2",
        ]);
        let ok = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.node,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])
            .status()
            .unwrap();
        assert!(ok.success());
        let backend = lab.backend.clone();
        std::thread::spawn(move || {
            enter(&backend);
            let l = TcpListener::bind("0.0.0.0:8080").unwrap();
            for c in l.incoming() {
                drop(c);
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        lab
    }
}

/// `n` services with 10 endpoints each; the last is the measured one, whose endpoints are the
/// backend's ten addresses. The others' endpoints are never dialled.
fn services(n: usize) -> Vec<Service> {
    (0..n)
        .map(|i| {
            let last = i == n - 1;
            let cluster_ip = if last {
                TARGET
            } else {
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 43, 0, 2)) + i as u32)
            };
            let endpoints = (0..10u32)
                .map(|e| Endpoint {
                    ip: if last {
                        Ipv4Addr::new(10, 99, 2, 10 + e as u8)
                    } else {
                        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 44, 0, 0)) + i as u32 * 10 + e)
                    },
                    port: 8080,
                })
                .collect();
            Service {
                namespace: "bench".into(),
                name: format!("svc-{i}"),
                cluster_ip,
                affinity_timeout: None,
                ports: vec![ServicePort {
                    name: "http".into(),
                    protocol: Protocol::Tcp,
                    port: 80,
                    node_port: None,
                    endpoints,
                }],
            }
        })
        .collect()
}

fn config() -> ProxyConfig {
    ProxyConfig {
        cluster_cidr: "10.42.0.0/16".parse::<Cidr>().unwrap(),
        egress: None,
    }
}

/// The same services as kube-proxy's iptables mode writes them, for `iptables-restore`.
fn iptables_layout(svcs: &[Service]) -> String {
    let mut chains = String::from("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n");
    let mut rules = String::from(
        "-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\n\
         -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n",
    );
    for (i, s) in svcs.iter().enumerate() {
        let p = &s.ports[0];
        let _ = writeln!(chains, ":KUBE-SVC-{i} - [0:0]");
        let _ = writeln!(
            rules,
            "-A KUBE-SERVICES -d {}/32 -p tcp -m tcp --dport {} -j KUBE-SVC-{i}",
            s.cluster_ip, p.port
        );
        let _ = writeln!(
            rules,
            "-A KUBE-SVC-{i} ! -s 10.42.0.0/16 -d {}/32 -p tcp -m tcp --dport {} -j KUBE-MARK-MASQ",
            s.cluster_ip, p.port
        );
        let n = p.endpoints.len();
        for (j, e) in p.endpoints.iter().enumerate() {
            let _ = writeln!(chains, ":KUBE-SEP-{i}-{j} - [0:0]");
            if j + 1 < n {
                let _ = writeln!(
                    rules,
                    "-A KUBE-SVC-{i} -m statistic --mode random --probability {:.10} -j KUBE-SEP-{i}-{j}",
                    1.0 / (n - j) as f64
                );
            } else {
                let _ = writeln!(rules, "-A KUBE-SVC-{i} -j KUBE-SEP-{i}-{j}");
            }
            let _ = writeln!(
                rules,
                "-A KUBE-SEP-{i}-{j} -s {}/32 -j KUBE-MARK-MASQ\n-A KUBE-SEP-{i}-{j} -p tcp -m tcp -j DNAT --to-destination {}:{}",
                e.ip, e.ip, e.port
            );
        }
    }
    chains + &rules + "COMMIT\n"
}

fn in_node(lab: &Lab, program: &str, args: &[&str], stdin: &str) -> Duration {
    let t = Instant::now();
    let mut c = Command::new("ip")
        .args(["netns", "exec", &lab.node, program])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "{program} {args:?}");
    t.elapsed()
}

/// Median and 99th percentile of `n` TCP connects from the client to the measured service.
fn connect_latency(lab: &Lab, n: usize) -> (Duration, Duration) {
    let client = lab.client.clone();
    std::thread::spawn(move || {
        enter(&client);
        let to = SocketAddr::from((TARGET, 80));
        let mut times = Vec::with_capacity(n);
        for i in 0..n + 50 {
            let t = Instant::now();
            let s = TcpStream::connect_timeout(&to, Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("connect {to}: {e}"));
            let d = t.elapsed();
            drop(s);
            if i >= 50 {
                times.push(d);
            }
        }
        times.sort();
        (times[n / 2], times[n * 99 / 100])
    })
    .join()
    .unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_string())
    };
    let sizes: Vec<usize> = opt("--sizes", "10,1000,5000")
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let connects: usize = opt("--connects", "1000").parse().unwrap();
    let have_iptables = Command::new("iptables-restore")
        .arg("--version")
        .output()
        .is_ok();

    let lab = Lab::new();
    let ns = netns(&lab.node);

    println!(
        "## Sync time, 10 endpoints per service (one transaction each: libnftables in-process, and beside it the nft program)"
    );
    println!(
        "| services | full sync | one endpoint changed, median / max of 20 | same through `nft -f` | iptables-restore, same services |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for &n in &sizes {
        let mut table = services(n);
        // A full sync, then 20 syncs that each change one endpoint of one service.
        let mut run = |mut proxy: ServiceProxy, salt: u8| {
            let t = Instant::now();
            proxy.sync(&table).unwrap();
            let full = t.elapsed();
            let mut one = Vec::new();
            for k in 0..20u8 {
                table[n / 2].ports[0].endpoints[3].ip = Ipv4Addr::new(10, 45, salt, k);
                let t = Instant::now();
                let r = proxy.sync(&table).unwrap();
                one.push(t.elapsed());
                assert!(!r.full && r.commands > 0);
            }
            proxy.remove().unwrap();
            let max = *one.iter().max().unwrap();
            (full, median(one), max)
        };
        let lib = ServiceProxy::new(config(), Some(&ns));
        assert!(lib.in_process(), "libnftables not found");
        let (full, one, one_max) = run(lib, 0);
        let (_, program, _) = run(ServiceProxy::new(config(), Some(&ns)).with_nft_program(), 1);
        let ipt = if have_iptables {
            let rules = iptables_layout(&table);
            let d = ms(in_node(&lab, "iptables-restore", &[], &rules));
            in_node(&lab, "iptables", &["-t", "nat", "-F"], "");
            in_node(&lab, "iptables", &["-t", "nat", "-X"], "");
            d
        } else {
            "iptables not installed".into()
        };
        println!(
            "| {n} | {} | {} / {} | {} | {ipt} |",
            ms(full),
            ms(one),
            ms(one_max),
            ms(program)
        );
    }

    println!();
    println!(
        "## TCP connect latency through a ClusterIP ({connects} connects, the service measured last)"
    );
    println!(
        "| services installed | flotilla (nftables maps) median / p99 | kube-proxy iptables layout median / p99 |"
    );
    println!("|---:|---:|---:|");
    for n in [10usize, *sizes.iter().max().unwrap_or(&5000)] {
        let table = services(n);
        let mut proxy = ServiceProxy::new(config(), Some(&ns));
        proxy.sync(&table).unwrap();
        let (m, p99) = connect_latency(&lab, connects);
        proxy.remove().unwrap();
        let ipt = if have_iptables {
            in_node(&lab, "iptables-restore", &[], &iptables_layout(&table));
            let (im, ip99) = connect_latency(&lab, connects);
            in_node(&lab, "iptables", &["-t", "nat", "-F"], "");
            in_node(&lab, "iptables", &["-t", "nat", "-X"], "");
            format!("{} / {}", us(im), us(ip99))
        } else {
            "iptables not installed".into()
        };
        println!("| {n} | {} / {} | {ipt} |", us(m), us(p99));
    }
    let _ = TABLE;
}
