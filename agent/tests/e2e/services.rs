//! Services through a real agent: it computes endpoints from its ready pods and programs
//! nftables in its own network namespace; pods and the node reach a Service by its ClusterIP
//! and NodePort, and a pod that goes unready leaves the rotation.

use std::collections::BTreeMap;

use crate::harness::{Agent, manifest, name, pods_with, ready};

/// Three pods that serve their own name, Ready while /tmp/ready exists, behind a NodePort
/// Service whose targetPort is a port name.
const WHO: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: who
spec:
  replicas: 3
  selector:
    matchLabels: {app: who}
  template:
    metadata:
      labels: {app: who}
    spec:
      containers:
      - name: httpd
        image: flotilla.local/busybox:1
        command: ["sh", "-c", "mkdir -p /tmp/www && hostname > /tmp/www/index.html && touch /tmp/ready && exec httpd -f -p 8080 -h /tmp/www"]
        ports:
        - {name: web, containerPort: 8080}
        readinessProbe:
          exec: {command: ["cat", "/tmp/ready"]}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata:
  name: who
spec:
  type: NodePort
  selector: {app: who}
  ports:
  - {name: http, port: 80, targetPort: web, nodePort: 30080}
"#;

/// GETs `url` from the agent's namespace: the body, or None when it fails.
fn get(a: &Agent, url: &str) -> Option<String> {
    let o = a
        .command("timeout")
        .args(["5", "busybox", "wget", "-qO-", url])
        .output()
        .unwrap();
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Which pod answered each of `n` requests.
fn spread(a: &Agent, url: &str, n: usize) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let body = get(a, url).unwrap_or_else(|| panic!("GET {url} failed"));
        *m.entry(body).or_default() += 1;
    }
    m
}

/// An agent in its own namespace running [`WHO`] with its 3 pods Ready, and the ClusterIP.
fn who_agent() -> (Agent, String) {
    let a = Agent::start_in_netns();
    let tar = flotilla_runtime::testing::test_image(a.data_dir());
    a.ok(&["image", "import", tar.to_str().unwrap()]);
    a.ok(&["apply", "-f", &manifest(&a, "who.yaml", WHO)]);
    a.eventually(60, "3 pods Ready", || {
        let ps = pods_with(&a, "app=who");
        ps.len() == 3 && ps.iter().all(ready)
    });
    let ip = a.json(&["get", "service", "who"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    (a, ip)
}

#[test]
fn services_reach_ready_pods_by_cluster_ip_and_node_port() {
    let (a, ip) = who_agent();
    let names: Vec<String> = pods_with(&a, "app=who").iter().map(name).collect();
    let url = format!("http://{ip}/");

    // From the node: every ready pod gets a share.
    a.eventually(10, "the service answers", || get(&a, &url).is_some());
    let counts = spread(&a, &url, 30);
    assert_eq!(counts.len(), 3, "{counts:?}");
    for n in &names {
        assert!(counts.contains_key(n), "{n} never answered: {counts:?}");
    }
    // Through the NodePort on the node's pod-network address, and from inside a pod.
    let np = get(&a, "http://10.42.0.1:30080/").expect("NodePort answers");
    assert!(names.contains(&np), "{np}");
    let from_pod = a.ok(&["exec", &names[0], "--", "wget", "-qO-", &url]);
    assert!(names.contains(&from_pod.trim().to_string()), "{from_pod}");

    // A pod made after the Service gets its variables.
    let client = "apiVersion: v1\nkind: Pod\nmetadata: {name: client}\nspec:\n  containers:\n  - {name: c, image: flotilla.local/busybox:1, command: [sleep, '3600']}\n";
    a.ok(&["apply", "-f", &manifest(&a, "client.yaml", client)]);
    // Ready, not only Running: exec needs the container itself started.
    a.eventually(30, "client ready", || {
        a.pod("client").is_some_and(|p| ready(&p))
    });
    let env = a.ok(&["exec", "client", "--", "env"]);
    assert!(env.contains(&format!("WHO_SERVICE_HOST={ip}\n")), "{env}");
    assert!(env.contains("WHO_SERVICE_PORT=80\n"), "{env}");

    // Cluster DNS: the full name, the short name through the search path, SRV for the named
    // port, and the page through the name.
    let resolv = a.ok(&["exec", "client", "--", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.starts_with("nameserver 10.43.0.10\nsearch default.svc.cluster.local"),
        "{resolv}"
    );
    let full = a.ok(&[
        "exec",
        "client",
        "--",
        "nslookup",
        "who.default.svc.cluster.local",
    ]);
    assert!(full.contains(&format!("Address: {ip}")), "{full}");
    let srv = a.ok(&[
        "exec",
        "client",
        "--",
        "nslookup",
        "-type=srv",
        "_http._tcp.who.default.svc.cluster.local",
    ]);
    assert!(srv.contains("80 who.default.svc.cluster.local"), "{srv}");
    let page = a.ok(&["exec", "client", "--", "wget", "-qO-", "http://who/"]);
    assert!(names.contains(&page.trim().to_string()), "{page}");
    let missing = a.cli(&[
        "exec",
        "client",
        "--",
        "nslookup",
        "nope.default.svc.cluster.local",
    ]);
    assert!(!missing.status.success());

    // Readiness gates the endpoints: an unready pod gets no more requests.
    a.ok(&["exec", &names[0], "--", "rm", "/tmp/ready"]);
    a.eventually(20, "the pod unready", || {
        a.pod(&names[0]).is_some_and(|p| !ready(&p))
    });
    a.eventually(10, "the unready pod out of rotation", || {
        !spread(&a, &url, 10).contains_key(&names[0])
    });
    let counts = spread(&a, &url, 20);
    assert!(!counts.contains_key(&names[0]), "{counts:?}");

    // No ready pod at all: refused at once rather than hanging.
    for n in &names[1..] {
        a.ok(&["exec", n, "--", "rm", "/tmp/ready"]);
    }
    a.eventually(20, "connections refused", || {
        let o = a
            .command("timeout")
            .args(["5", "busybox", "wget", "-qO-", &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stderr).contains("refused")
    });
    let table = a
        .command("nft")
        .args(["list", "table", "inet", "flotilla"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!("{ip} . tcp . 80 : goto reject-chain")),
        "{table}"
    );
}

#[test]
fn service_rules_outlive_the_agent_are_rebuilt_at_start_and_reset_network_removes_them() {
    let (mut a, ip) = who_agent();
    let url = format!("http://{ip}/");
    a.eventually(10, "the service answers", || get(&a, &url).is_some());

    // The agent dies: the kernel keeps serving the Service.
    a.kill9();
    assert!(get(&a, &url).is_some(), "answered while the agent is down");
    // A new agent rebuilds the table from nothing and it keeps answering.
    a.spawn(false);
    // (The log is the new agent's own.)
    a.eventually(10, "the rules rebuilt", || {
        a.log().contains("service rules rebuilt")
    });
    assert_eq!(spread(&a, &url, 10).values().sum::<usize>(), 10);

    // Stopped for good: `reset --network` in its namespace removes what it made there.
    a.kill9();
    let out = a
        .command(crate::harness::BIN)
        .args(["reset", "--network", "--data-dir"])
        .arg(a.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = a
        .command("nft")
        .args(["list", "table", "inet", "flotilla"])
        .output()
        .unwrap();
    assert!(!table.status.success(), "the table is gone");
    let link = a
        .command("ip")
        .args(["link", "show", "flotilla0"])
        .output()
        .unwrap();
    assert!(!link.status.success(), "the bridge is gone");
    assert!(get(&a, &url).is_none());
}

/// A pod with `hostname` and `subdomain` naming a headless Service has its own DNS name (as a
/// StatefulSet's `web-0.nginx`), and a Deployment's pods count as available only after
/// `minReadySeconds` of readiness.
#[test]
fn subdomain_pods_have_their_own_names_and_min_ready_seconds_delays_availability() {
    let a = Agent::start_in_netns();
    let tar = flotilla_runtime::testing::test_image(a.data_dir());
    a.ok(&["image", "import", tar.to_str().unwrap()]);
    let yaml = r#"apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: named}
---
apiVersion: v1
kind: Pod
metadata: {name: web-zero, labels: {app: named}}
spec:
  hostname: web-0
  subdomain: nginx
  containers: [{name: c, image: flotilla.local/busybox:1, command: [sleep, '3600']}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: slow}
spec:
  replicas: 1
  minReadySeconds: 6
  selector: {matchLabels: {app: slow}}
  template:
    metadata: {labels: {app: slow}}
    spec:
      containers: [{name: c, image: flotilla.local/busybox:1, command: [sleep, '3600']}]
"#;
    a.ok(&["apply", "-f", &manifest(&a, "named.yaml", yaml)]);
    a.eventually(40, "slow's pod ready", || {
        a.json(&["get", "deployment", "slow"])["status"]["readyReplicas"] == 1
    });
    let ready_at = std::time::Instant::now();
    let d = a.json(&["get", "deployment", "slow"]);
    assert_ne!(
        d["status"]["availableReplicas"], 1,
        "ready, not yet available: {d}"
    );
    a.eventually(30, "slow available", || {
        a.json(&["get", "deployment", "slow"])["status"]["availableReplicas"] == 1
    });
    assert!(
        ready_at.elapsed() >= std::time::Duration::from_secs(3),
        "{:?}",
        ready_at.elapsed()
    );
    a.eventually(30, "web-zero ready", || {
        a.pod("web-zero").is_some_and(|p| ready(&p))
    });
    let ip = a.pod("web-zero").unwrap()["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    let slow = name(&pods_with(&a, "app=slow")[0]);
    let mut out = String::new();
    // (BusyBox's nslookup asks the name as given, without the search path.)
    a.eventually(20, "web-0.nginx resolves from another pod", || {
        let o = a.cli(&[
            "exec",
            &slow,
            "--",
            "nslookup",
            "web-0.nginx.default.svc.cluster.local",
        ]);
        out = String::from_utf8_lossy(&o.stdout).into_owned();
        o.status.success() && out.contains(&format!("Address: {ip}"))
    });
    assert!(
        out.contains("web-0.nginx.default.svc.cluster.local"),
        "{out}"
    );
}
