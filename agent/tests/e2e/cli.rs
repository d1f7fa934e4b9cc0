//! The CLI as a user drives it: apply, get, describe, delete, scale, rollout.

use serde_json::Value;

use crate::harness::{Agent, examples, manifest};

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn apply_the_example_and_see_pods_bound_to_the_node() {
    let a = Agent::start();
    let web = examples().join("web.yaml");
    let out = a.ok(&["apply", "-f", web.to_str().unwrap()]);
    assert_eq!(
        out,
        "configmap/web-content created\ndeployment.apps/web created\nservice/web created\n"
    );
    a.eventually(10, "3 pods bound to node-1", || {
        let pods = a.json(&["get", "pods", "-l", "app=web"]);
        let items = pods["items"].as_array().unwrap();
        items.len() == 3 && items.iter().all(|p| p["spec"]["nodeName"] == "node-1")
    });
    let pods = a.json(&["get", "pods"]);
    for p in pods["items"].as_array().unwrap() {
        assert_eq!(p["kind"], "Pod");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert!(
            p["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
                > 0
        );
    }
    // `get all`: the kinds of the `all` category, as kubectl expands it (no ConfigMap).
    let all = a.ok(&["get", "all", "-o", "name"]);
    assert!(all.contains("service/web\n"), "{all}");
    assert!(all.contains("deployment.apps/web\n"), "{all}");
    assert_eq!(
        all.lines().filter(|l| l.starts_with("pod/")).count(),
        3,
        "{all}"
    );
    assert!(!all.contains("configmap"), "{all}");
    let table = a.ok(&["get", "pods", "-o", "wide"]);
    let header = table.lines().next().unwrap();
    for col in ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"] {
        assert!(header.contains(col), "{header}");
    }
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        table
            .lines()
            .skip(1)
            .all(|l| l.contains("node-1") && l.contains("0/1")),
        "{table}"
    );
    // Applying again changes nothing.
    let out = a.ok(&["apply", "-f", web.to_str().unwrap()]);
    assert_eq!(
        out,
        "configmap/web-content unchanged\ndeployment.apps/web unchanged\nservice/web unchanged\n"
    );
    let deploy = a.json(&["get", "deployment", "web"]);
    assert_eq!(
        deploy["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%",
        "Kubernetes defaults are filled in"
    );
    assert_eq!(deploy["status"]["updatedReplicas"], 3);
    let describe = a.ok(&["describe", "deployment", "web"]);
    assert!(describe.contains("ScalingReplicaSet"), "{describe}");
    let events = a.ok(&["get", "events"]);
    assert!(
        events.contains("Scheduled") && events.contains("SuccessfulCreate"),
        "{events}"
    );
}

#[test]
fn a_bad_file_is_refused_whole_with_file_document_and_field() {
    let a = Agent::start();
    let f = manifest(
        &a,
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: x, ports: [{containerPort: 70000}]}]\n",
    );
    let out = a.cli(&["apply", "-f", &f]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml, document 2: spec.template.spec.containers[0].ports[0].containerPort: 70000 is not in 1-65535"),
        "{err}"
    );
    let cms = a.json(&["get", "configmaps"]);
    assert!(
        names(&cms).is_empty(),
        "nothing of the file was written: {cms}"
    );

    // Unknown fields and unsupported kinds too.
    let f = manifest(
        &a,
        "typo.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, lables: {a: b}}\n",
    );
    let err = String::from_utf8(a.cli(&["apply", "-f", &f]).stderr).unwrap();
    assert!(
        err.contains("typo.yaml, document 1: metadata.lables: unknown field `lables`"),
        "{err}"
    );
    let f = manifest(
        &a,
        "kind.yaml",
        "apiVersion: v1\nkind: Ingress\nmetadata: {name: c}\n",
    );
    let err = String::from_utf8(a.cli(&["apply", "-f", &f]).stderr).unwrap();
    assert!(
        err.contains("kind.yaml, document 1: kind: unsupported kind \"Ingress\""),
        "{err}"
    );
    let f = manifest(&a, "yaml.yaml", "apiVersion: v1\nkind: [unclosed\n");
    let err = String::from_utf8(a.cli(&["apply", "-f", &f]).stderr).unwrap();
    assert!(err.contains("yaml.yaml, document 1: invalid YAML"), "{err}");
}

#[test]
fn apply_reads_directories_and_stdin_and_checks_namespaces() {
    let a = Agent::start();
    let dir = a.data_dir().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("a.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    )
    .unwrap();
    std::fs::write(dir.join("b.json"), r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg","namespace":"shop"},"data":{"k":"v"}}"#).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a manifest").unwrap();
    let out = a.ok(&["apply", "-f", dir.to_str().unwrap()]);
    assert_eq!(out, "namespace/shop created\nconfigmap/cfg created\n");
    assert_eq!(
        a.json(&["get", "cm", "cfg", "-n", "shop"])["data"]["k"],
        "v"
    );

    let mut cmd = std::process::Command::new(crate::harness::BIN);
    cmd.args(["apply", "-f", "-", "-n", "missing"])
        .env("FLOTILLA_CONFIG", a.config());
    let out = crate::harness::with_stdin(
        cmd,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("-, document 1: metadata.namespace: namespace \"missing\" not found"),
        "{err}"
    );
}

#[test]
fn delete_cascades_and_selectors_pick_objects() {
    let a = Agent::start();
    a.ok(&["apply", "-f", examples().join("web.yaml").to_str().unwrap()]);
    a.eventually(10, "3 pods", || {
        a.json(&["get", "pods"])["items"].as_array().unwrap().len() == 3
    });
    let f = manifest(
        &a,
        "cms.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: {tier: x}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, labels: {tier: y}}\n",
    );
    a.ok(&["apply", "-f", &f]);
    assert_eq!(
        names(&a.json(&["get", "cm", "-l", "tier in (x)"])),
        vec!["a"]
    );
    assert_eq!(
        names(&a.json(&["get", "cm", "-l", "tier,tier!=x"])),
        vec!["b"]
    );
    assert_eq!(
        a.ok(&["delete", "cm", "-l", "tier=y"]),
        "configmap/b deleted\n"
    );
    assert_eq!(names(&a.json(&["get", "cm", "-l", "tier"])), vec!["a"]);

    assert_eq!(
        a.ok(&["delete", "deployment", "web"]),
        "deployment.apps/web deleted\n"
    );
    assert!(
        names(&a.json(&["get", "rs"])).is_empty(),
        "ReplicaSets go with their Deployment"
    );
    assert!(
        names(&a.json(&["get", "pods"])).is_empty(),
        "and so do their pods"
    );
    let out = a.cli(&["delete", "deployment", "web"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn namespaces_take_their_contents_with_them() {
    let a = Agent::start();
    let f = manifest(
        &a,
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: team}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: team}\nstringData: {p: q}\n",
    );
    a.ok(&["apply", "-f", &f]);
    assert_eq!(
        a.json(&["get", "secret", "s", "-n", "team"])["data"]["p"],
        "cQ=="
    );
    a.ok(&["delete", "namespace", "team"]);
    assert!(
        names(&a.json(&["get", "cm", "-A"]))
            .iter()
            .all(|n| n != "c")
    );
    // (kube-system keeps the cluster's own Secrets: the CA and the join tokens.)
    assert!(
        names(&a.json(&["get", "secrets", "-A"]))
            .iter()
            .all(|n| n != "s")
    );
}

#[test]
fn scale_and_rollout_history_and_undo() {
    let a = Agent::start();
    let v1 = manifest(
        &a,
        "v1.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: api}}\n  template:\n    metadata: {labels: {app: api}}\n    spec:\n      containers: [{name: c, image: flotilla.local/busybox:1}]\n",
    );
    a.ok(&["apply", "-f", &v1]);
    a.ok(&["scale", "deployment/api", "--replicas", "4"]);
    a.eventually(10, "4 pods", || {
        a.json(&["get", "pods", "-l", "app=api"])["items"]
            .as_array()
            .unwrap()
            .len()
            == 4
    });
    let err = String::from_utf8(
        a.cli(&["scale", "deployment/api", "--replicas", "-1"])
            .stderr,
    )
    .unwrap();
    assert!(err.contains("must be greater than or equal to 0"), "{err}");

    let v2 = std::fs::read_to_string(&v1)
        .unwrap()
        .replace("busybox:1", "busybox:2")
        .replace("replicas: 2", "replicas: 4");
    let v2 = manifest(&a, "v2.yaml", &v2);
    a.ok(&["apply", "-f", &v2]);
    a.eventually(10, "two revisions", || {
        a.json(&["get", "rs"])["items"].as_array().unwrap().len() == 2
    });
    let history = a.ok(&["rollout", "history", "deployment/api"]);
    assert!(
        history.contains("REVISION") && history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );
    assert_eq!(
        a.ok(&["rollout", "undo", "deployment/api"]),
        "deployment.apps/api rolled back\n"
    );
    let dep = a.json(&["get", "deploy", "api"]);
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "flotilla.local/busybox:1"
    );
    let mut last = serde_json::Value::Null;
    let found = (0..100).any(|_| {
        last = a.json(&["get", "rs"]);
        let hit = last["items"].as_array().unwrap().iter().any(|r| {
            r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
                && r["spec"]["template"]["spec"]["containers"][0]["image"]
                    == "flotilla.local/busybox:1"
        });
        if !hit {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        hit
    });
    assert!(
        found,
        "no revision 3 of the first template: {last:#}\ndeployment: {:#}\nlog: {}",
        a.json(&["get", "deploy", "api"]),
        a.log()
    );
    let err = String::from_utf8(
        a.cli(&["rollout", "undo", "deployment/api", "--to-revision", "7"])
            .stderr,
    )
    .unwrap();
    assert!(
        err.contains("unable to find the specified revision 7"),
        "{err}"
    );
}

#[test]
fn jobs_start_their_pods_and_unschedulable_pods_say_why() {
    let a = Agent::start();
    let f = manifest(
        &a,
        "job.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: pi}\nspec:\n  completions: 3\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: flotilla.local/busybox:1, command: [sh, -c, 'echo 3.14']}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: huge}\nspec:\n  containers: [{name: c, image: x, resources: {requests: {memory: 100Ti}}}]\n",
    );
    a.ok(&["apply", "-f", &f]);
    a.eventually(10, "2 job pods", || {
        a.json(&["get", "pods", "-l", "batch.kubernetes.io/job-name=pi"])["items"]
            .as_array()
            .unwrap()
            .len()
            == 2
    });
    a.eventually(10, "huge to be unschedulable", || {
        let p = a.json(&["get", "pod", "huge"]);
        p["status"]["conditions"][0]["message"] == "0/1 nodes are available: 1 Insufficient memory."
    });
    let d = a.ok(&["describe", "pod", "huge"]);
    assert!(
        d.contains("FailedScheduling") && d.contains("Insufficient memory"),
        "{d}"
    );
}

#[test]
fn services_get_cluster_ips_and_node_ports_that_stay() {
    let a = Agent::start();
    a.ok(&["apply", "-f", examples().join("web.yaml").to_str().unwrap()]);
    let web = a.json(&["get", "svc", "web"]);
    let ip = web["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.43."), "{ip}");
    let f = manifest(
        &a,
        "np.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: np}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n",
    );
    a.ok(&["apply", "-f", &f]);
    let np = a.json(&["get", "svc", "np"]);
    let port = np["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&port), "{port}");
    assert_ne!(np["spec"]["clusterIP"], web["spec"]["clusterIP"]);
    // Applying again keeps both; the table shows them.
    a.ok(&["apply", "-f", &f]);
    assert_eq!(
        a.json(&["get", "svc", "np"])["spec"]["ports"][0]["nodePort"],
        port
    );
    let table = a.ok(&["get", "svc"]);
    assert!(
        table.contains(&ip) && table.contains(&format!("80:{port}/TCP")),
        "{table}"
    );
    // Asking for a taken address is refused with the field named.
    let f2 = manifest(
        &a,
        "clash.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: clash}}\nspec:\n  clusterIP: {ip}\n  ports: [{{port: 80}}]\n"
        ),
    );
    let err = String::from_utf8(a.cli(&["apply", "-f", &f2]).stderr).unwrap();
    assert!(
        err.contains(&format!(
            "clash.yaml, document 1: spec.clusterIP: {ip} is already allocated"
        )),
        "{err}"
    );
}

#[test]
fn a_paused_deployment_does_not_roll_out_until_resumed() {
    let a = Agent::start();
    let v1 = manifest(
        &a,
        "v1.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: api}}\n  template:\n    metadata: {labels: {app: api}}\n    spec:\n      containers: [{name: c, image: flotilla.local/busybox:1}]\n",
    );
    a.ok(&["apply", "-f", &v1]);
    a.eventually(10, "one ReplicaSet", || {
        a.json(&["get", "rs"])["items"].as_array().unwrap().len() == 1
    });
    assert_eq!(
        a.ok(&["rollout", "pause", "deployment/api"]),
        "deployment.apps/api paused\n"
    );
    // A template change through apply keeps the pause (apply writes what the file says; the
    // file does not say paused, so pause again as kubectl users do with `rollout pause`).
    let v2 = std::fs::read_to_string(&v1)
        .unwrap()
        .replace("busybox:1", "busybox:2")
        .replace("replicas: 1", "replicas: 1\n  paused: true");
    let v2 = manifest(&a, "v2.yaml", &v2);
    a.ok(&["apply", "-f", &v2]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        a.json(&["get", "rs"])["items"].as_array().unwrap().len(),
        1,
        "no rollout while paused"
    );
    assert_eq!(
        a.ok(&["rollout", "resume", "deployment/api"]),
        "deployment.apps/api resumed\n"
    );
    a.eventually(10, "the new ReplicaSet", || {
        a.json(&["get", "rs"])["items"].as_array().unwrap().len() == 2
    });
}

/// Options that cannot be honoured together are refused, with what to do instead, rather than
/// one of them being dropped.
#[test]
fn cli_options_that_cannot_be_honoured_are_refused() {
    let a = Agent::start();
    let cm = manifest(
        &a,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: default}\ndata: {k: v}\n",
    );
    a.ok(&["apply", "-f", &cm]);
    let refused = |args: &[&str], says: &str| {
        let out = a.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(says), "{args:?}: {err}");
    };
    refused(
        &["get", "configmap", "a", "-l", "x=y"],
        "name cannot be provided when a selector is specified",
    );
    refused(
        &["get", "configmap", "a", "-A"],
        "a resource cannot be retrieved by name across all namespaces",
    );
    refused(
        &["delete", "-f", &cm, "-l", "x=y"],
        "give either -f or -l/--all",
    );
    refused(
        &["delete", "configmap", "--all", "-l", "x=y"],
        "--all and -l cannot be combined",
    );
    refused(
        &["delete", "-f", &cm, "-n", "other"],
        "does not match the namespace \"other\"",
    );
    refused(
        &["apply", "--dry-run=client", "-f", &cm, "-n", "other"],
        "does not match the namespace \"other\"",
    );
    refused(
        &["delete", "configmap", "a", "--grace-period=0"],
        "give --force too",
    );
    refused(&["token", "create", "--ttl", "200000000d"], "too long");
    // The agent holds its data dir: reset and a second agent are refused while it runs.
    let dir = a.data_dir().display().to_string();
    refused(&["reset", "--data-dir", &dir], "an agent is running on");
    refused(
        &[
            "agent",
            "--data-dir",
            &dir,
            "--api-addr",
            "127.0.0.1:0",
            "--cluster-addr",
            "127.0.0.1:0",
        ],
        "another agent is running on",
    );
    refused(
        &["--config", "x.yaml", "reset", "--data-dir", &dir],
        "--config is for client commands",
    );
    // Nothing was deleted on the way.
    assert!(a.ok(&["get", "configmap", "a"]).contains("a "));
}
