//! Request options as the real kubectl sends them: dry runs that write nothing, deletes that
//! keep what `--cascade=orphan` keeps and wait as `--cascade=foreground` waits, preconditions,
//! grace periods, and parameters Flotilla does not support refused by name.

use std::process::Output;

use flotilla::cli::client::{ApiFailure, Client};
use serde_json::{Value, json};

use crate::harness::{Agent, manifest, name};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Everything a dry run could have touched: the store's revision, every ConfigMap and
/// Service with its resourceVersion, and the number of events.
fn state(a: &Agent) -> (String, Vec<(String, String)>, usize) {
    let cms: Value =
        serde_json::from_str(&a.kubectl_ok(&["get", "--raw", "/api/v1/configmaps"])).unwrap();
    let svcs: Value =
        serde_json::from_str(&a.kubectl_ok(&["get", "--raw", "/api/v1/services"])).unwrap();
    let events: Value =
        serde_json::from_str(&a.kubectl_ok(&["get", "--raw", "/api/v1/events"])).unwrap();
    let objects = cms["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(svcs["items"].as_array().unwrap())
        .map(|o| {
            (
                name(o),
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    (
        cms["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string(),
        objects,
        events["items"].as_array().unwrap().len(),
    )
}

#[test]
fn dry_runs_of_kubectl_and_the_cli_write_nothing() {
    let a = Agent::start();
    a.kubectl_ok(&["create", "configmap", "keep", "--from-literal=a=1"]);
    let svc = manifest(
        &a,
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: taken}\nspec:\n  type: NodePort\n  selector: {app: x}\n  ports: [{port: 80, nodePort: 30080}]\n",
    );
    a.kubectl_ok(&["apply", "--validate=false", "-f", &svc]);
    let before = state(&a);

    // kubectl delete --dry-run=server: said deleted, still there.
    let out = a.kubectl_ok(&["delete", "configmap", "keep", "--dry-run=server"]);
    assert_eq!(out, "configmap \"keep\" deleted (server dry run)\n");
    // kubectl create --dry-run=server answers the object a create would make.
    let made: Value = serde_json::from_str(&a.kubectl_ok(&[
        "create",
        "configmap",
        "two",
        "--from-literal=b=2",
        "--dry-run=server",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(made["data"]["b"], "2");
    assert!(made["metadata"]["uid"].is_string(), "{made}");
    assert!(made["metadata"].get("resourceVersion").is_none(), "{made}");
    // A dry run is refused where the real write would be: a NodePort in use.
    let clash = manifest(
        &a,
        "clash.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: clash}\nspec:\n  type: NodePort\n  selector: {app: other}\n  ports: [{port: 80, nodePort: 30080}]\n",
    );
    let out = a.kubectl(&[
        "create",
        "--validate=false",
        "-f",
        &clash,
        "--dry-run=server",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("spec.ports[0].nodePort: 30080 is already allocated"),
        "{}",
        text(&out)
    );
    // kubectl apply --dry-run=server of a new object, and kubectl diff, which asks for a
    // server-side dry run.
    let three = manifest(
        &a,
        "three.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: three}\ndata: {c: \"3\"}\n",
    );
    let out = a.kubectl_ok(&[
        "apply",
        "--validate=false",
        "--dry-run=server",
        "-f",
        &three,
    ]);
    assert_eq!(out, "configmap/three created (server dry run)\n");
    let out = a.kubectl(&["diff", "-f", &three]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(diff.contains("+  c: \"3\""), "{diff}");
    let changed = manifest(
        &a,
        "changed.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}\ndata: {a: \"2\"}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: three}\ndata: {c: \"3\"}\n",
    );
    // The flotilla CLI's dry runs.
    let out = a.ok(&["apply", "--dry-run=server", "-f", &changed]);
    assert_eq!(
        out,
        "configmap/keep configured (server dry run)\nconfigmap/three created (server dry run)\n"
    );
    let out = a.ok(&["apply", "--dry-run=client", "-f", &changed]);
    assert_eq!(
        out,
        "configmap/keep configured (dry run)\nconfigmap/three created (dry run)\n"
    );
    let out = a.ok(&["delete", "configmap", "keep", "--dry-run=server"]);
    assert_eq!(out, "configmap/keep deleted (server dry run)\n");
    let out = a.ok(&["delete", "service", "taken", "--dry-run=client"]);
    assert_eq!(out, "service/taken deleted (dry run)\n");

    // Nothing moved: the same revision, objects, resourceVersions and events.
    assert_eq!(state(&a), before);
    assert_eq!(
        a.kubectl_ok(&["get", "configmap", "keep", "-o", "jsonpath={.data.a}"]),
        "1"
    );
}

#[test]
fn unsupported_parameters_and_media_types_are_refused_by_name() {
    let a = Agent::start();
    let out = a.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "query parameter \"sendInitialEvents\" is not supported for watch: the watch-list protocol is not served"
        ),
        "{}",
        text(&out)
    );
    let out = a.kubectl(&["get", "--raw", "/api/v1/namespaces/default/pods?dryrun=All"]);
    assert!(
        text(&out).contains("unknown query parameter \"dryrun\" for list"),
        "{}",
        text(&out)
    );
    let client = Client::from_config_file(&a.config()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let e = client
            .send_body(
                reqwest::Method::POST,
                "/api/v1/namespaces/default/configmaps",
                "application/vnd.kubernetes.protobuf",
                reqwest::Body::from("k8s\0"),
            )
            .await
            .unwrap_err()
            .downcast::<ApiFailure>()
            .unwrap();
        assert_eq!(e.code, 415);
        assert!(
            e.status["message"]
                .as_str()
                .unwrap()
                .contains("application/vnd.kubernetes.protobuf"),
            "{}",
            e.status
        );
    });
    // kubectl --validate=false and --validate=warn ask the server to drop fields Kubernetes
    // does not know (warn: and say so); a field Kubernetes has and Flotilla does not support
    // is refused whatever the mode, never dropped.
    let good = manifest(
        &a,
        "good.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\ndata: {a: \"1\"}\n",
    );
    a.kubectl_ok(&["apply", "--validate=false", "-f", &good]);
    let odd = manifest(
        &a,
        "odd.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: odd, colour: red}\ndata: {a: \"1\"}\n",
    );
    // Through the API directly (kubectl --validate=warn: apply_validates_on_the_server...).
    let client = Client::from_config_file(&a.config()).unwrap();
    let warning = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "odd", "colour": "red"}, "data": {"a": "1"}});
            let resp = client
                .send(
                    reqwest::Method::POST,
                    "/api/v1/namespaces/default/configmaps",
                    &[("fieldValidation", "Warn".to_string())],
                    Some(&body),
                )
                .await
                .unwrap();
            resp.headers()
                .get("warning")
                .map(|w| w.to_str().unwrap().to_string())
        });
    assert_eq!(
        warning.as_deref(),
        Some("299 - \"unknown field \\\"metadata.colour\\\"\"")
    );
    a.kubectl_ok(&["delete", "configmap", "odd"]);
    a.kubectl_ok(&["apply", "--validate=false", "-f", &odd]);
    let stored = json_of(&a, &["get", "configmap", "odd"]);
    assert!(stored["metadata"].get("colour").is_none(), "{stored}");
    // Strict (kubectl's default, and the flotilla CLI's): refused, naming the field.
    let out = a.cli(&["apply", "--dry-run=server", "-f", &odd]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("metadata.colour: unknown field"),
        "{}",
        text(&out)
    );
    let shared = manifest(
        &a,
        "shared.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: shared}\nspec:\n  shareProcessNamespace: true\n  containers: [{name: c, image: flotilla.local/busybox:1}]\n",
    );
    let out = a.kubectl(&["apply", "--validate=false", "-f", &shared]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "The Pod \"shared\" is invalid: spec.shareProcessNamespace: not supported by Flotilla yet"
        ),
        "{}",
        text(&out)
    );
    assert!(!a.kubectl(&["get", "pod", "shared"]).status.success());
    // Lists page with limit and continue (kubectl --chunk-size).
    for i in 0..5 {
        a.kubectl_ok(&["create", "configmap", &format!("c{i}")]);
    }
    let out = a.kubectl_ok(&["get", "configmaps", "--chunk-size=2", "-o", "name"]);
    assert_eq!(
        out,
        "configmap/c0\nconfigmap/c1\nconfigmap/c2\nconfigmap/c3\nconfigmap/c4\nconfigmap/good\nconfigmap/odd\n"
    );
    let page: Value = serde_json::from_str(&a.kubectl_ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?limit=2",
    ]))
    .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let token = page["metadata"]["continue"].as_str().unwrap().to_string();
    // A change to the kind after the first page: the rest is no longer that list.
    a.kubectl_ok(&["create", "configmap", "late"]);
    let out = a.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/configmaps?limit=2&continue={token}"),
    ]);
    assert!(
        text(&out).contains("The provided continue parameter is too old"),
        "{}",
        text(&out)
    );
}

const HELD: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: held}
spec:
  replicas: 2
  selector: {matchLabels: {app: held}}
  template:
    metadata:
      labels: {app: held}
      finalizers: [example.com/hold]
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - {name: c, image: flotilla.local/busybox:1, command: [sleep, "3600"]}
"#;

const KEPT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: kept}
spec:
  replicas: 2
  selector: {matchLabels: {app: kept}}
  template:
    metadata: {labels: {app: kept}}
    spec:
      terminationGracePeriodSeconds: 120
      containers:
      - {name: c, image: flotilla.local/busybox:1, command: [sleep, "3600"]}
"#;

fn json_of(a: &Agent, args: &[&str]) -> Value {
    let mut v = args.to_vec();
    v.extend(["-o", "json"]);
    serde_json::from_str(&a.kubectl_ok(&v)).unwrap()
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn running(a: &Agent, selector: &str, n: usize) -> Vec<Value> {
    a.eventually(60, "pods Running", || {
        let ps = items(&json_of(a, &["get", "pods", "-l", selector]));
        ps.len() == n && ps.iter().all(|p| p["status"]["phase"] == "Running")
    });
    items(&json_of(a, &["get", "pods", "-l", selector]))
}

/// How many containers the runtime holds for a pod (by uid).
fn containers_of(a: &Agent, uid: &str) -> usize {
    std::fs::read_dir(a.data_dir().join("runtime").join("containers"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(uid))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn orphan_keeps_dependents_foreground_waits_for_them_preconditions_and_grace_hold() {
    let a = Agent::with_image();
    let kept = manifest(&a, "kept.yaml", KEPT);
    a.kubectl_ok(&["apply", "--validate=false", "-f", &kept]);
    let pods = running(&a, "app=kept", 2);
    let uids: Vec<Value> = pods.iter().map(|p| p["metadata"]["uid"].clone()).collect();

    // --cascade=orphan: the ReplicaSet and its pods stay, the RS without its owner.
    let out = a.kubectl_ok(&["delete", "deployment", "kept", "--cascade=orphan"]);
    assert_eq!(out, "deployment.apps \"kept\" deleted\n");
    let rss = items(&json_of(&a, &["get", "replicasets", "-l", "app=kept"]));
    assert_eq!(rss.len(), 1);
    assert!(
        rss[0]["metadata"].get("ownerReferences").is_none(),
        "{}",
        rss[0]
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let after = running(&a, "app=kept", 2);
    let after_uids: Vec<Value> = after.iter().map(|p| p["metadata"]["uid"].clone()).collect();
    assert_eq!(after_uids, uids, "the same pods, still running");

    // Preconditions: a stale resourceVersion or another uid is refused with 409.
    let client = Client::from_config_file(&a.config()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rs_path = format!(
        "/apis/apps/v1/namespaces/default/replicasets/{}",
        name(&rss[0])
    );
    rt.block_on(async {
        for pre in [
            json!({"resourceVersion": "1"}),
            json!({"uid": "00000000-0000-0000-0000-000000000000"}),
        ] {
            let e = client
                .send(
                    reqwest::Method::DELETE,
                    &rs_path,
                    &[],
                    Some(
                        &json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": pre}),
                    ),
                )
                .await
                .unwrap_err()
                .downcast::<ApiFailure>()
                .unwrap();
            assert_eq!(e.code, 409, "{}", e.status);
        }
    });
    assert_eq!(
        items(&json_of(&a, &["get", "replicasets", "-l", "app=kept"])).len(),
        1
    );

    // --grace-period: a pod whose own grace is 120 s, deleted with 1, stops at once.
    let victim = &after[0];
    let uid = victim["metadata"]["uid"].as_str().unwrap().to_string();
    assert!(containers_of(&a, &uid) > 0);
    a.kubectl_ok(&["delete", "pod", &name(victim), "--grace-period=1"]);
    a.eventually(30, "the pod's containers stopped within its 1 s", || {
        containers_of(&a, &uid) == 0
    });

    // kubectl logs with a start time, a tail and a byte limit.
    let talk = manifest(
        &a,
        "talk.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: talk}\nspec:\n  containers:\n  - {name: c, image: flotilla.local/busybox:1, command: [sh, -c, 'echo one; echo two; exec sleep 3600']}\n",
    );
    a.kubectl_ok(&["apply", "--validate=false", "-f", &talk]);
    a.eventually(60, "the pod's two lines", || {
        a.kubectl(&["logs", "talk"]).stdout == b"one\ntwo\n"
    });
    assert_eq!(
        a.kubectl_ok(&["logs", "talk", "--since=1h", "--tail=1"]),
        "two\n"
    );
    assert_eq!(a.kubectl_ok(&["logs", "talk", "--limit-bytes=4"]), "one\n");
    assert_eq!(
        a.kubectl_ok(&["logs", "talk", "--since-time=2999-01-01T00:00:00Z"]),
        ""
    );

    // --cascade=foreground on a Deployment whose pods carry a finalizer: the Deployment and
    // its ReplicaSet stay, marked, while the pods are held; they go once the pods do.
    let held = manifest(&a, "held.yaml", HELD);
    a.kubectl_ok(&["apply", "--validate=false", "-f", &held]);
    running(&a, "app=held", 2);
    let out = a.kubectl_ok(&[
        "delete",
        "deployment",
        "held",
        "--cascade=foreground",
        "--wait=false",
    ]);
    assert_eq!(out, "deployment.apps \"held\" deleted\n");
    let dep = json_of(&a, &["get", "deployment", "held"]);
    assert!(dep["metadata"]["deletionTimestamp"].is_string(), "{dep}");
    assert_eq!(dep["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    a.eventually(30, "the pods marked deleted", || {
        let ps = items(&json_of(&a, &["get", "pods", "-l", "app=held"]));
        ps.len() == 2
            && ps
                .iter()
                .all(|p| p["metadata"]["deletionTimestamp"].is_string())
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let dep = json_of(&a, &["get", "deployment", "held"]);
    assert!(
        dep["metadata"]["deletionTimestamp"].is_string(),
        "still held: {dep}"
    );
    // Their containers stop (within the pods' 2 s grace), while the finalizer keeps the
    // objects.
    for p in items(&json_of(&a, &["get", "pods", "-l", "app=held"])) {
        let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
        a.eventually(30, "a held pod's containers stopped", || {
            containers_of(&a, &uid) == 0
        });
    }
    // Removing the finalizers lets everything go.
    for mut p in items(&json_of(&a, &["get", "pods", "-l", "app=held"])) {
        p["metadata"]["finalizers"] = json!([]);
        let f = manifest(&a, &format!("{}.json", name(&p)), &p.to_string());
        a.kubectl_ok(&["replace", "--validate=false", "-f", &f]);
    }
    a.eventually(30, "the Deployment, its ReplicaSet and pods gone", || {
        !a.kubectl(&["get", "deployment", "held"]).status.success()
            && items(&json_of(&a, &["get", "replicasets", "-l", "app=held"])).is_empty()
            && items(&json_of(&a, &["get", "pods", "-l", "app=held"])).is_empty()
    });
}

#[test]
fn a_delete_collection_takes_the_selected_objects_in_one_write_or_previews_them() {
    let a = Agent::start();
    let docs: Vec<String> = [("a1", "a"), ("a2", "a"), ("b1", "b")]
        .iter()
        .map(|(n, t)| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {n}, labels: {{tier: {t}}}}}\n"
            )
        })
        .collect();
    let f = manifest(&a, "tiers.yaml", &docs.join("---\n"));
    a.kubectl_ok(&["apply", "--validate=false", "-f", &f]);
    let client = Client::from_config_file(&a.config()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let path = "/api/v1/namespaces/default/configmaps";
    let names = |v: &Value| items(v).iter().map(name).collect::<Vec<_>>();
    rt.block_on(async {
        let q = |extra: &[(&'static str, &str)]| {
            let mut v = vec![("labelSelector", "tier=a".to_string())];
            v.extend(extra.iter().map(|(k, x)| (*k, x.to_string())));
            v
        };
        let preview = client
            .json(
                reqwest::Method::DELETE,
                path,
                &q(&[("dryRun", "All")]),
                None,
            )
            .await
            .unwrap();
        assert_eq!(names(&preview), ["a1", "a2"]);
        let all = client.get(path, &[]).await.unwrap();
        assert_eq!(names(&all), ["a1", "a2", "b1"], "a preview deletes nothing");
        let done = client
            .json(reqwest::Method::DELETE, path, &q(&[]), None)
            .await
            .unwrap();
        assert_eq!(names(&done), ["a1", "a2"]);
        let all = client.get(path, &[]).await.unwrap();
        assert_eq!(names(&all), ["b1"]);
    });
}

/// kubectl's own validation path, as a user types it (no `--validate=false`): it finds the
/// `fieldValidation` parameter in the OpenAPI v3 documents and leaves the judging to the
/// server, which names every bad field; `explain` reads the same schemas.
#[test]
fn apply_validates_on_the_server_and_explain_reads_the_schemas() {
    let a = Agent::start();
    let good = manifest(
        &a,
        "good.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\ndata: {a: \"1\"}\n",
    );
    assert_eq!(
        a.kubectl_ok(&["apply", "-f", &good]),
        "configmap/good created\n"
    );
    // Three bad fields, three findings, one answer; nothing written.
    let bad = manifest(
        &a,
        "bad.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad, colour: red}\nspec:\n  replicas: three\n  selector: {matchLabels: {app: b}}\n  template:\n    metadata: {labels: {app: b}}\n    spec:\n      containers: [{name: c, image: flotilla.local/busybox:1, imagee: x}]\n",
    );
    let out = a.kubectl(&["apply", "-f", &bad]);
    assert!(!out.status.success());
    let said = text(&out);
    for want in [
        "spec.replicas: invalid type: string \"three\"",
        "metadata.colour: unknown field",
        "spec.template.spec.containers[0].imagee: unknown field",
    ] {
        assert!(said.contains(want), "{want:?} not in {said}");
    }
    assert!(!a.kubectl(&["get", "deployment", "bad"]).status.success());
    // --validate=warn: the object is written without the unknown field, and kubectl says so.
    let odd = manifest(
        &a,
        "odd.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: odd, colour: red}\ndata: {a: \"1\"}\n",
    );
    let out = a.kubectl(&["apply", "--validate=warn", "-f", &odd]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field \"metadata.colour\""),
        "{}",
        text(&out)
    );
    // explain, from the v3 documents.
    let out = a.kubectl_ok(&["explain", "pods.spec.containers.ports"]);
    assert!(out.contains("FIELD: ports <[]ContainerPort>"), "{out}");
    assert!(out.contains("containerPort\t<integer> -required-"), "{out}");
    assert!(out.contains("hostIP\t<string>"), "{out}");
    let out = a.kubectl_ok(&["explain", "deployment"]);
    assert!(out.contains("GROUP:      apps"), "{out}");
    assert!(out.contains("KIND:       Deployment"), "{out}");
}

/// `kubectl get all` asks discovery for the `all` category: workloads and Services, not
/// configuration.
#[test]
fn get_all_lists_the_all_category() {
    let a = Agent::start();
    let f = manifest(
        &a,
        "all.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: once}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: flotilla.local/busybox:1}]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n",
    );
    a.kubectl_ok(&["apply", "-f", &f]);
    let out = a.kubectl_ok(&["get", "all", "-o", "name"]);
    assert!(out.contains("service/web\n"), "{out}");
    assert!(out.contains("job.batch/once\n"), "{out}");
    assert!(!out.contains("configmap"), "{out}");
}

/// `kubectl auth can-i`, `can-i --list` and `whoami` read the reviews: the cluster's token is
/// its administrator, so every question is a yes, and a malformed review is refused.
#[test]
fn auth_can_i_and_whoami_answer_for_the_administrator() {
    let a = Agent::start();
    assert_eq!(
        a.kubectl_ok(&["auth", "can-i", "delete", "pods", "-n", "prod"])
            .trim(),
        "yes"
    );
    assert_eq!(
        a.kubectl_ok(&[
            "auth",
            "can-i",
            "create",
            "deployments.apps",
            "--subresource=scale"
        ])
        .trim(),
        "yes"
    );
    assert_eq!(
        a.kubectl_ok(&["auth", "can-i", "get", "/healthz"]).trim(),
        "yes"
    );
    let list = a.kubectl_ok(&["auth", "can-i", "--list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("*.*") && l.contains("[*]")),
        "{list}"
    );
    let who = a.kubectl_ok(&["auth", "whoami", "-o", "json"]);
    let who: Value = serde_json::from_str(&who).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "admin", "{who:#}");
    assert!(
        who["status"]["userInfo"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:masters"))
    );
    // A review that asks nothing is refused by its field, as kube-apiserver refuses it.
    // (`--validate=false`: kubectl looks for a kind without PATCH in the protobuf OpenAPI v2
    // document, which is not served.)
    let review = manifest(
        &a,
        "review.yaml",
        "apiVersion: authorization.k8s.io/v1\nkind: SelfSubjectAccessReview\nspec: {}\n",
    );
    let out = a.kubectl(&["create", "--validate=false", "-f", &review]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("spec.resourceAttributes"),
        "{}",
        text(&out)
    );
}

/// Whether everything `want` says is in `got` (which may add defaults and status).
fn within(want: &Value, got: &Value, path: &str) -> Result<(), String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w.iter().try_for_each(|(k, v)| match g.get(k) {
            Some(x) => within(v, x, &format!("{path}.{k}")),
            None => Err(format!("{path}.{k} is missing")),
        }),
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .enumerate()
            .try_for_each(|(i, (v, x))| within(v, x, &format!("{path}[{i}]"))),
        (w, g) if w == g => Ok(()),
        (w, g) => Err(format!("{path}: wrote {w}, read back {g}")),
    }
}

/// One manifest per served kind, from Kubernetes' documentation (images made local, pulls
/// off, so nothing leaves the machine): each applies with plain kubectl and reads back with
/// everything it said, plus Kubernetes' defaults.
#[test]
fn documentation_manifests_round_trip_through_kubectl() {
    let a = Agent::start();
    let img = "flotilla.local/busybox:1";
    let docs = [
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: development\n  labels:\n    name: development\n".to_string(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: game-demo\ndata:\n  player_initial_lives: \"3\"\n  ui_properties_file_name: \"user-interface.properties\"\n  game.properties: |\n    enemy.types=aliens,monsters\n    player.maximum-lives=5\n  user-interface.properties: |\n    color.good=purple\n    color.bad=yellow\n    allow.textmode=true\n".to_string(),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: mysecret\ntype: Opaque\ndata:\n  username: YWRtaW4=\n  password: MWYyZDFlMmU2N2Rm\n".to_string(),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: my-service\nspec:\n  selector:\n    app.kubernetes.io/name: MyApp\n  ports:\n    - protocol: TCP\n      port: 80\n      targetPort: 9376\n".to_string(),
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: nginx\nspec:\n  containers:\n  - name: nginx\n    image: {img}\n    imagePullPolicy: Never\n    ports:\n    - containerPort: 80\n"),
        format!("apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: frontend\n  labels:\n    app: guestbook\n    tier: frontend\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      tier: frontend\n  template:\n    metadata:\n      labels:\n        tier: frontend\n    spec:\n      containers:\n      - name: php-redis\n        image: {img}\n        imagePullPolicy: Never\n"),
        format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: nginx-deployment\n  labels:\n    app: nginx\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: nginx\n  template:\n    metadata:\n      labels:\n        app: nginx\n    spec:\n      containers:\n      - name: nginx\n        image: {img}\n        imagePullPolicy: Never\n        ports:\n        - containerPort: 80\n"),
        format!("apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: fluentd-elasticsearch\n  labels:\n    k8s-app: fluentd-logging\nspec:\n  selector:\n    matchLabels:\n      name: fluentd-elasticsearch\n  template:\n    metadata:\n      labels:\n        name: fluentd-elasticsearch\n    spec:\n      tolerations:\n      - key: node-role.kubernetes.io/control-plane\n        operator: Exists\n        effect: NoSchedule\n      containers:\n      - name: fluentd-elasticsearch\n        image: {img}\n        imagePullPolicy: Never\n        resources:\n          limits:\n            memory: 200Mi\n          requests:\n            cpu: 100m\n            memory: 200Mi\n        volumeMounts:\n        - name: varlog\n          mountPath: /var/log\n      terminationGracePeriodSeconds: 30\n      volumes:\n      - name: varlog\n        hostPath:\n          path: /var/log\n"),
        format!("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: pi\nspec:\n  template:\n    spec:\n      containers:\n      - name: pi\n        image: {img}\n        imagePullPolicy: Never\n        command: [\"perl\", \"-Mbignum=bpi\", \"-wle\", \"print bpi(2000)\"]\n      restartPolicy: Never\n  backoffLimit: 4\n"),
        format!("apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: hello\nspec:\n  schedule: \"* * * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - name: hello\n            image: {img}\n            imagePullPolicy: Never\n            command:\n            - /bin/sh\n            - -c\n            - date; echo Hello from the Kubernetes cluster\n          restartPolicy: OnFailure\n"),
        format!("apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: nginx\nspec:\n  replicas: 3\n  selector:\n    app: nginx\n  template:\n    metadata:\n      name: nginx\n      labels:\n        app: nginx\n    spec:\n      containers:\n      - name: nginx\n        image: {img}\n        imagePullPolicy: Never\n        ports:\n        - containerPort: 80\n"),
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: php-apache\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: php-apache\n  minReplicas: 1\n  maxReplicas: 10\n  metrics:\n  - type: Resource\n    resource:\n      name: cpu\n      target:\n        type: Utilization\n        averageUtilization: 50\n".to_string(),
    ];
    for (i, doc) in docs.iter().enumerate() {
        let file = manifest(&a, &format!("doc{i}.yaml"), doc);
        let out = a.kubectl(&["apply", "-f", &file]);
        assert!(out.status.success(), "{doc}\n{}", text(&out));
        let want: Value = serde_norway::from_str(doc).unwrap();
        let kind = want["kind"].as_str().unwrap().to_ascii_lowercase();
        let got = json_of(
            &a,
            &["get", &kind, want["metadata"]["name"].as_str().unwrap()],
        );
        if let Err(e) = within(&want, &got, "") {
            panic!("{kind}: {e}\n{got:#}");
        }
    }
}

/// The kubectl verbs that change an object with a merge or JSON patch: label, annotate,
/// patch --type merge|json, scale (through the scale subresource) and a node's labels.
#[test]
fn label_annotate_scale_and_patch_change_objects_in_place() {
    let a = Agent::start();
    let f = manifest(
        &a,
        "web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: flotilla.local/busybox:1, imagePullPolicy: Never}]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: slow, keep: \"yes\"}\n",
    );
    a.kubectl_ok(&["apply", "-f", &f]);
    assert_eq!(
        a.kubectl_ok(&["label", "deployment", "web", "tier=front"]),
        "deployment.apps/web labeled\n"
    );
    a.kubectl_ok(&["annotate", "deployment", "web", "owner=ops"]);
    let d = json_of(&a, &["get", "deployment", "web"]);
    assert_eq!(d["metadata"]["labels"]["tier"], "front", "{d}");
    assert_eq!(d["metadata"]["annotations"]["owner"], "ops", "{d}");
    a.kubectl_ok(&["label", "deployment", "web", "tier-"]);
    let d = json_of(&a, &["get", "deployment", "web"]);
    assert!(d["metadata"]["labels"].get("tier").is_none(), "{d}");
    assert_eq!(
        a.kubectl_ok(&["scale", "deployment", "web", "--replicas=3"]),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(
        json_of(&a, &["get", "deployment", "web"])["spec"]["replicas"],
        3
    );
    // patch --type merge: a null removes, the rest merges.
    a.kubectl_ok(&[
        "patch",
        "configmap",
        "settings",
        "--type",
        "merge",
        "-p",
        r#"{"data": {"mode": "fast", "keep": null}}"#,
    ]);
    let cm = json_of(&a, &["get", "configmap", "settings"]);
    assert_eq!(cm["data"], json!({"mode": "fast"}), "{cm}");
    // patch --type json: every operation or none.
    a.kubectl_ok(&[
        "patch",
        "configmap",
        "settings",
        "--type",
        "json",
        "-p",
        r#"[{"op": "add", "path": "/data/extra", "value": "1"}]"#,
    ]);
    let out = a.kubectl(&[
        "patch",
        "configmap",
        "settings",
        "--type",
        "json",
        "-p",
        r#"[{"op": "replace", "path": "/data/mode", "value": "odd"}, {"op": "test", "path": "/data/mode", "value": "never"}]"#,
    ]);
    assert!(!out.status.success());
    let cm = json_of(&a, &["get", "configmap", "settings"]);
    assert_eq!(cm["data"], json!({"mode": "fast", "extra": "1"}), "{cm}");
    // A merge patch that breaks the object is refused as an update would be.
    let out = a.kubectl(&[
        "patch",
        "deployment",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"spec": {"replicas": -1}}"#,
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("spec.replicas"), "{}", text(&out));
    // A node's labels.
    let node = a.kubectl_ok(&["get", "nodes", "-o", "name"]);
    a.kubectl_ok(&["label", node.trim(), "zone=lab"]);
    let n = json_of(&a, &["get", node.trim()]);
    assert_eq!(n["metadata"]["labels"]["zone"], "lab", "{n}");
    // Strategic merge (kubectl patch's default) on a map merges like a merge patch.
    a.kubectl_ok(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data": {"mode": "x"}}"#,
    ]);
    assert_eq!(
        json_of(&a, &["get", "configmap", "settings"])["data"],
        json!({"mode": "x", "extra": "1"})
    );
}

/// `kubectl apply --server-side`: creates, records the manager's fields in `managedFields`,
/// removes what the manager's next file no longer names, refuses a field another manager
/// applied with another value (naming field and manager, changing nothing) unless
/// `--force-conflicts`, and previews with `--dry-run=server`.
#[test]
fn server_side_apply_owns_fields_conflicts_and_forces() {
    let a = Agent::start();
    let deploy = |replicas: u32, image: &str, extra_label: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {{app: web{extra_label}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - {{name: web, image: \"{image}\"}}\n"
        )
    };
    let f = manifest(
        &a,
        "web.yaml",
        &deploy(0, "flotilla.local/busybox:1", ", tier: front"),
    );
    let out = a.kubectl_ok(&["apply", "--server-side", "-f", &f]);
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let d = json_of(&a, &["get", "deployment", "web", "--show-managed-fields"]);
    let entry = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["operation"] == "Apply")
        .unwrap_or_else(|| panic!("no Apply entry in {d:#}"))
        .clone();
    assert_eq!(entry["manager"], "kubectl");
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert_eq!(
        entry["fieldsV1"]["f:spec"]["f:replicas"],
        json!({}),
        "{entry:#}"
    );
    assert_eq!(
        entry["fieldsV1"]["f:metadata"]["f:labels"]["f:tier"],
        json!({}),
        "{entry:#}"
    );

    // The next file drops the tier label and changes the image: the label goes.
    let f = manifest(&a, "web.yaml", &deploy(0, "flotilla.local/busybox:2", ""));
    a.kubectl_ok(&["apply", "--server-side", "-f", &f]);
    let d = json_of(&a, &["get", "deployment", "web"]);
    assert_eq!(d["metadata"]["labels"], json!({"app": "web"}), "{d:#}");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "flotilla.local/busybox:2"
    );

    // Another manager applies replicas 2: a conflict, named, and nothing changes.
    let other = manifest(&a, "other.yaml", &deploy(2, "flotilla.local/busybox:2", ""));
    let out = a.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=ops",
        "-f",
        &other,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(r#"conflict with "kubectl" using apps/v1: .spec.replicas"#),
        "{}",
        text(&out)
    );
    assert_eq!(
        json_of(&a, &["get", "deployment", "web"])["spec"]["replicas"],
        0
    );

    // A server-side dry run of the forced apply previews it and writes nothing.
    let rv = json_of(&a, &["get", "deployment", "web"])["metadata"]["resourceVersion"].clone();
    let out = a.kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=ops",
        "--force-conflicts",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        &other,
    ]);
    let preview: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(preview["spec"]["replicas"], 2);
    let d = json_of(&a, &["get", "deployment", "web"]);
    assert_eq!(
        (
            d["spec"]["replicas"].clone(),
            d["metadata"]["resourceVersion"].clone()
        ),
        (json!(0), rv)
    );

    // Forced, ops takes the field from kubectl.
    a.kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=ops",
        "--force-conflicts",
        "-f",
        &other,
    ]);
    let d = json_of(&a, &["get", "deployment", "web", "--show-managed-fields"]);
    assert_eq!(d["spec"]["replicas"], 2);
    let owners: Vec<&str> = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["fieldsV1"]["f:spec"]["f:replicas"].is_null())
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["ops"], "{d:#}");

    // A plain update owns what it changes too: after `kubectl scale`, ops's replicas conflict
    // with the scaler, and nothing changes.
    a.kubectl_ok(&["scale", "deployment", "web", "--replicas=4"]);
    let out = a.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=ops",
        "-f",
        &other,
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(r#"conflict with "kubectl" using apps/v1: .spec.replicas"#),
        "{}",
        text(&out)
    );
    assert_eq!(
        json_of(&a, &["get", "deployment", "web"])["spec"]["replicas"],
        4
    );
    // A label added by `kubectl label` (an update) is the labeller's: ops's apply without it
    // does not take it away.
    a.kubectl_ok(&["label", "deployment", "web", "team=edge"]);
    a.kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=ops",
        "--force-conflicts",
        "-f",
        &other,
    ]);
    let d = json_of(&a, &["get", "deployment", "web"]);
    assert_eq!(d["metadata"]["labels"]["team"], "edge", "{d:#}");

    // A Service's DNS ports, one number over UDP and TCP (left out: TCP), are two elements
    // keyed by port and protocol; applying again changes nothing.
    let dns = manifest(
        &a,
        "dns.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: dns}\nspec:\n  selector: {app: dns}\n  ports:\n  - {name: dns, port: 53, protocol: UDP}\n  - {name: dns-tcp, port: 53}\n",
    );
    for _ in 0..2 {
        a.kubectl_ok(&["apply", "--server-side", "-f", &dns]);
        let s = json_of(&a, &["get", "service", "dns", "--show-managed-fields"]);
        let ports: Vec<(Value, Value)> = s["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].clone(), p["protocol"].clone()))
            .collect();
        assert_eq!(
            ports,
            [
                (json!("dns"), json!("UDP")),
                (json!("dns-tcp"), json!("TCP"))
            ],
            "{s:#}"
        );
        let owned = &s["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:ports"];
        assert!(
            owned[r#"k:{"port":53,"protocol":"UDP"}"#].is_object()
                && owned[r#"k:{"port":53,"protocol":"TCP"}"#].is_object(),
            "{s:#}"
        );
    }
}

/// The verbs that send a strategic merge patch: apply of a changed file (a list element
/// removed from the file goes, a field another writer set stays), edit, set image, rollout
/// restart, cordon and uncordon, patch with a list directive, and drain.
#[test]
fn apply_of_a_change_edit_set_image_rollout_restart_and_cordon_patch_strategically() {
    let a = Agent::start();
    let web = |replicas: u32, env: &str, image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - name: c\n        image: {image}\n        imagePullPolicy: Never\n        command: [sleep, '3600']\n        env: [{env}]\n      - name: side\n        image: flotilla.local/busybox:1\n        imagePullPolicy: Never\n        command: [sleep, '3600']\n      terminationGracePeriodSeconds: 1\n"
        )
    };
    let f = manifest(
        &a,
        "web.yaml",
        &web(
            1,
            "{name: A, value: '1'}, {name: B, value: '2'}",
            "flotilla.local/busybox:1",
        ),
    );
    assert_eq!(
        a.kubectl_ok(&["apply", "-f", &f]),
        "deployment.apps/web created\n"
    );
    // Another writer's label, which the file never had.
    a.kubectl_ok(&["label", "deployment", "web", "team=edge"]);
    let f = manifest(
        &a,
        "web.yaml",
        &web(2, "{name: A, value: one}", "flotilla.local/busybox:1"),
    );
    assert_eq!(
        a.kubectl_ok(&["apply", "-f", &f]),
        "deployment.apps/web configured\n"
    );
    let d = json_of(&a, &["get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2, "{d}");
    let c = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(c[0]["env"], json!([{"name": "A", "value": "one"}]), "{d}");
    assert_eq!(c[1]["name"], "side", "{d}");
    assert_eq!(d["metadata"]["labels"]["team"], "edge", "{d}");
    assert_eq!(
        a.kubectl_ok(&["apply", "-f", &f]),
        "deployment.apps/web unchanged\n"
    );

    assert_eq!(
        a.kubectl_ok(&[
            "set",
            "image",
            "deployment/web",
            "side=flotilla.local/busybox:2"
        ]),
        "deployment.apps/web image updated\n"
    );
    let d = json_of(&a, &["get", "deployment", "web"]);
    let c = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(c[1]["image"], "flotilla.local/busybox:2", "{d}");
    assert_eq!(c[0]["image"], "flotilla.local/busybox:1", "{d}");

    assert_eq!(
        a.kubectl_ok(&["rollout", "restart", "deployment/web"]),
        "deployment.apps/web restarted\n"
    );
    let d = json_of(&a, &["get", "deployment", "web"]);
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "{d}"
    );

    // kubectl edit with an editor that changes one line of what it is shown.
    let out = a
        .kubectl_cmd(&["edit", "deployment", "web"])
        .env("KUBE_EDITOR", "sed -i s/replicas:\\ 2/replicas:\\ 3/")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        json_of(&a, &["get", "deployment", "web"])["spec"]["replicas"],
        3
    );

    // A directive in a patch: one env entry deleted by its key.
    a.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": "A", "$patch": "delete"}]}]}}}}"#,
    ]);
    let d = json_of(&a, &["get", "deployment", "web"]);
    assert!(
        d["spec"]["template"]["spec"]["containers"][0]
            .get("env")
            .is_none_or(|e| e == &json!([])),
        "{d}"
    );
    // An element without its merge key is refused and changes nothing.
    let out = a.kubectl(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}"#,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("does not contain declared merge key: name"),
        "{}",
        text(&out)
    );

    let node = a.kubectl_ok(&["get", "nodes", "-o", "name"]);
    let node = node.trim();
    assert_eq!(
        a.kubectl_ok(&["cordon", node]),
        format!("{node} cordoned\n")
    );
    assert_eq!(json_of(&a, &["get", node])["spec"]["unschedulable"], true);
    // kubectl get prints the server's Table: the columns flotilla get prints.
    let nodes = a.kubectl_ok(&["get", "nodes"]);
    assert!(nodes.starts_with("NAME"), "{nodes}");
    assert!(nodes.contains("SchedulingDisabled"), "{nodes}");
    let wide = a.kubectl_ok(&["get", "nodes", "-o", "wide"]);
    assert!(wide.contains("INTERNAL-IP"), "{wide}");
    let deploy = a.kubectl_ok(&["get", "deployment", "web"]);
    assert!(
        deploy.lines().next().unwrap().split_whitespace().eq([
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE"
        ]),
        "{deploy}"
    );
    let all = a.kubectl_ok(&["get", "all", "--show-labels"]);
    assert!(
        all.contains("deployment.apps/web") && all.contains("app=web"),
        "{all}"
    );
    assert_eq!(
        a.kubectl_ok(&["uncordon", node]),
        format!("{node} uncordoned\n")
    );
    assert!(json_of(&a, &["get", node])["spec"]["unschedulable"] != true);

    // drain: cordons, then evicts the node's pods through the Eviction subresource (kubectl
    // finds pods/eviction in discovery); the ReplicaSet's new pods wait for a schedulable
    // node. A dry run first evicts nothing.
    let scheduled = |a: &Agent| {
        json_of(a, &["get", "pods"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["spec"]["nodeName"].is_string() && p["metadata"]["deletionTimestamp"].is_null()
            })
            .count()
    };
    a.eventually(30, "the deployment's pods placed on the node", || {
        scheduled(&a) > 0
    });
    let before = scheduled(&a);
    let out = a.kubectl(&["drain", node, "--ignore-daemonsets", "--dry-run=server"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("(server dry run)\nevicting pod default/web-"),
        "{}",
        text(&out)
    );
    assert_eq!(scheduled(&a), before, "a dry run evicts nothing");
    a.kubectl_ok(&["uncordon", node]);
    let out = a.kubectl(&["drain", node, "--ignore-daemonsets", "--timeout=60s"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("evicting pod default/web-"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains(&format!("{node} drained")),
        "{}",
        text(&out)
    );
    assert_eq!(
        scheduled(&a),
        0,
        "{}",
        a.kubectl_ok(&["get", "pods", "-o", "wide"])
    );
    a.kubectl_ok(&["uncordon", node]);
}

/// kubectl get -w prints the server's Table for the list and for each change, under one header.
#[test]
fn get_watch_prints_tables_for_each_change() {
    let a = Agent::start();
    let f = manifest(
        &a,
        "c.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n",
    );
    a.kubectl_ok(&["apply", "-f", &f]);
    let mut child = a
        .kubectl_cmd(&["get", "configmaps", "-w", "-v=6"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The watch resumes from the list's resourceVersion, so a change made before it connects
    // is still seen; the wait only lets kubectl print the list first.
    std::thread::sleep(std::time::Duration::from_secs(1));
    a.kubectl_ok(&["label", "configmap", "c", "x=y"]);
    a.kubectl_ok(&["patch", "configmap", "c", "-p", r#"{"data": {"b": "c"}}"#]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("NAME")).count(),
        1,
        "{stdout}"
    );
    assert!(
        lines[0].split_whitespace().eq(["NAME", "DATA", "AGE"]),
        "{stdout}"
    );
    // The change that added a key shows two.
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().take(2).eq(["c", "2"])),
        "{stdout}"
    );
    assert!(
        !stderr.contains("Unable to decode server response into a Table"),
        "{stderr}"
    );
}

/// The `admin.yaml` an agent writes is a kubeconfig that kubectl reads as it is, and
/// `flotilla kubeconfig --server URL` prints one for another address the node's certificate
/// names (here `localhost`, as another machine would use the node's advertise address).
#[test]
fn the_agents_admin_yaml_is_a_kubeconfig_and_flotilla_kubeconfig_prints_one() {
    let a = Agent::start();
    let nodes = a.kubectl_ok(&["get", "nodes", "-o", "name"]);
    assert!(nodes.starts_with("node/"), "{nodes}");
    assert_eq!(
        a.kubectl_ok(&["config", "view", "-o", "jsonpath={.current-context}"]),
        "flotilla"
    );
    let cfg = flotilla::cluster::AdminConfig::load(&a.config()).unwrap();
    let port = cfg.server.rsplit(':').next().unwrap().to_string();
    let server = format!("https://localhost:{port}");
    let printed = a.ok(&["kubeconfig", "--server", &server]);
    let file = manifest(&a, "other-machine.kubeconfig", &printed);
    let out = a
        .command("kubectl")
        .args(["get", "nodes", "-o", "name"])
        .env("KUBECONFIG", &file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), nodes);
    let server_of = a
        .command("kubectl")
        .args([
            "config",
            "view",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])
        .env("KUBECONFIG", &file)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&server_of.stdout), server);
    // The flotilla CLI reads the printed file too.
    let pods = a.cli(&["--config", &file, "get", "nodes", "-o", "name"]);
    assert!(pods.status.success(), "{}", text(&pods));
    let bad = a.cli(&["kubeconfig", "--server", "http://localhost:1"]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("https://HOST:PORT"), "{}", text(&bad));
}

/// `kubectl exec` and `kubectl cp` over the WebSocket protocol kubectl 1.30+ speaks
/// (`v5.channel.k8s.io`): stdout and stderr apart, the exit code, stdin up to its end, a
/// terminal of kubectl's own size, and files copied both ways (tar over exec).
#[test]
fn exec_and_cp_over_websockets_with_exit_codes_stdin_and_a_terminal() {
    let a = Agent::with_image();
    let pod = name(&crate::harness::apply_web(&a)[0]);
    let out = a.kubectl(&[
        "exec",
        &pod,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("err\n"), "{err}");
    assert!(err.contains("command terminated with exit code 3"), "{err}");
    let out = crate::harness::with_stdin(
        a.kubectl_cmd(&[
            "exec",
            "-i",
            &pod,
            "--",
            "sh",
            "-c",
            "cat; echo ' and done'",
        ]),
        "all of stdin",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "all of stdin and done\n"
    );
    // A terminal: `script` gives kubectl one of 30 rows and 100 columns, and kubectl passes
    // its size on.
    let line = format!(
        "stty rows 30 cols 100; KUBECONFIG={} kubectl exec -it {pod} -- sh -c 'test -t 0 && echo on-a-tty; stty size'",
        a.kubeconfig().display()
    );
    let out = a
        .command("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(
        out.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shown.contains("on-a-tty\n30 100\n"), "{shown:?}");
    // kubectl cp, both ways.
    let local = manifest(&a, "notes.txt", "line one\nline two\n");
    a.kubectl_ok(&["cp", &local, &format!("{pod}:/tmp/notes.txt")]);
    assert_eq!(
        a.kubectl_ok(&["exec", &pod, "--", "cat", "/tmp/notes.txt"]),
        "line one\nline two\n"
    );
    let back = a.data_dir().join("back.txt");
    a.kubectl_ok(&[
        "cp",
        &format!("{pod}:/tmp/notes.txt"),
        back.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "line one\nline two\n"
    );
}

/// The Python `kubernetes` client from PyPI (installed by scripts/install-deps.sh into a venv;
/// `$FLOTILLA_PYTHON` names its interpreter) lists, creates, patches (strategic and JSON),
/// scales and watches from a resourceVersion against the agent, decoding every answer into
/// its models (which check Kubernetes' required fields).
#[test]
fn the_python_kubernetes_client_lists_creates_patches_scales_and_watches() {
    let a = Agent::start();
    let python = std::env::var("FLOTILLA_PYTHON")
        .unwrap_or_else(|_| "/var/tmp/flotilla-py/bin/python".into());
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/python/client.py");
    let out = a
        .command(&python)
        .arg(&script)
        .arg(a.kubeconfig())
        .output()
        .expect("the Python client's venv (scripts/install-deps.sh makes it)");
    assert!(out.status.success(), "{}", text(&out));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["nodes"], json!(["node-1"]), "{seen}");
    assert!(!seen["kernel"].as_str().unwrap().is_empty(), "{seen}");
    assert_eq!(seen["configmaps"], json!(["settings"]), "{seen}");
    assert_eq!(
        seen["data"],
        json!({"mode": "fast", "extra": "1"}),
        "{seen}"
    );
    // The two patches and the create came after the list, and nothing before it.
    assert_eq!(
        seen["watched"],
        json!([
            ["MODIFIED", "settings"],
            ["MODIFIED", "settings"],
            ["ADDED", "later"]
        ]),
        "{seen}"
    );
    assert_eq!(
        (seen["scale"].clone(), seen["replicas"].clone()),
        (json!(2), json!(2)),
        "{seen}"
    );
    assert_eq!(seen["conflict"], json!([409, "AlreadyExists"]), "{seen}");
}

/// kubectl asks for aggregated discovery (`apidiscovery.k8s.io/v2`) and, answered it, reads
/// every group in two requests (`/api`, `/apis`) instead of one per group-version.
#[test]
fn kubectl_reads_aggregated_discovery_in_two_requests() {
    let a = Agent::start();
    let cache = a.data_dir().join("kubectl-cache");
    let out = a.kubectl(&[
        "--cache-dir",
        cache.to_str().unwrap(),
        "-v=6",
        "get",
        "deployments",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    let gets: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" GET https://"))
        .collect();
    assert!(
        gets.iter()
            .any(|l| l.contains("/apis?timeout") && l.contains("200 OK")),
        "{log}"
    );
    assert!(
        !gets
            .iter()
            .any(|l| l.contains("/apis/apps/v1?timeout") || l.contains("/api/v1?timeout")),
        "no request per group-version: {log}"
    );
    let resources = a.kubectl_ok(&["--cache-dir", cache.to_str().unwrap(), "api-resources"]);
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("deployments") && l.contains("deploy") && l.contains("apps/v1")),
        "{resources}"
    );
}

/// A running `kubectl port-forward`, stopped when dropped; `local` is the port it listens on.
struct Forwarding {
    child: std::process::Child,
    local: u16,
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kubectl port-forward TARGET :PORT` and waits for the local port it prints.
fn port_forward(a: &Agent, target: &str, port: &str) -> Forwarding {
    use std::io::BufRead;
    let mut child = a
        .kubectl_cmd(&["port-forward", target, &format!(":{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // "Forwarding from 127.0.0.1:43215 -> 8080"
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let local = first
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok());
    let Some(local) = local else {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!("kubectl port-forward said {first:?} {}", text(&out));
    };
    // The rest of its stdout (one line per connection) is drained so that it never blocks.
    std::thread::spawn(move || lines.for_each(drop));
    Forwarding { child, local }
}

/// An HTTP GET through a forwarded port: the status line and the body.
fn http_get(local: u16, path: &str) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&all)));
    let status = String::from_utf8_lossy(&all[..split])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    (status, all[split + 4..].to_vec())
}

/// `kubectl port-forward` (SPDY/3.1 tunnelled in a WebSocket, as kubectl 1.30+ speaks it) to a
/// pod and to a Service: pages fetched through it, a 4 MiB download and a 3 MiB upload whole,
/// and a port nobody listens on reported in the kubelet's words.
#[test]
fn port_forward_to_pods_and_services_carries_pages_both_ways() {
    let a = Agent::with_image();
    let pod = name(&crate::harness::apply_web(&a)[0]);
    let fwd = port_forward(&a, &format!("pod/{pod}"), "8080");
    for _ in 0..2 {
        let (status, body) = http_get(fwd.local, "/");
        assert!(status.contains("200"), "{status}");
        assert!(
            String::from_utf8_lossy(&body).contains("Hello from Flotilla"),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    // A Service: kubectl picks one of its pods and maps port 80 to targetPort `http`.
    let svc = port_forward(&a, "svc/web", "80");
    let (status, body) = http_get(svc.local, "/index.html");
    assert!(status.contains("200"), "{status}");
    assert!(String::from_utf8_lossy(&body).contains("Hello from Flotilla"));

    // Bulk both ways: a 4 MiB file served by a second httpd, and 3 MiB sent to nc.
    a.kubectl_ok(&[
        "exec",
        &pod,
        "--",
        "sh",
        "-c",
        "mkdir -p /tmp/files && dd if=/dev/urandom of=/tmp/files/big bs=1024 count=4096 2>/dev/null && httpd -p 9090 -h /tmp/files && (sleep 600 | nc -l -p 9000 >/tmp/up &) </dev/null >/dev/null 2>&1",
    ]);
    let sum = a.kubectl_ok(&["exec", &pod, "--", "sha256sum", "/tmp/files/big"]);
    let bulk = port_forward(&a, &format!("pod/{pod}"), "9090");
    let (status, body) = http_get(bulk.local, "/big");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.len(), 4 << 20);
    let got = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&body));
    assert!(sum.starts_with(&got), "{sum} vs {got}");

    let up = port_forward(&a, &format!("pod/{pod}"), "9000");
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", up.local)).unwrap();
        let payload: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        s.write_all(&payload).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
    }
    a.eventually(20, "the upload to land in the pod", || {
        a.kubectl(&["exec", &pod, "--", "wc", "-c", "/tmp/up"])
            .stdout
            .starts_with(format!("{} ", 3 << 20).as_bytes())
    });

    // Nothing listens on 9999: the connection closes and kubectl says why, naming the pod.
    let closed = port_forward(&a, &format!("pod/{pod}"), "9999");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", closed.local)).unwrap();
    let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
    let mut closed = closed;
    let mut err = String::new();
    let stderr = closed.child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut e = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut e);
        e
    });
    // kubectl ends on such an error (or is stopped here after a while).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if closed.child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = closed.child.kill();
    err.push_str(&reader.join().unwrap());
    assert!(
        err.contains(&format!("error forwarding port 9999 to pod default/{pod}"))
            && err.contains("dial tcp 127.0.0.1:9999: connect: connection refused"),
        "{err}"
    );

    // A pod that is not running is refused before anything is forwarded.
    let out = a.kubectl(&["port-forward", "pod/nope", ":80"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("pods \"nope\" not found"),
        "{}",
        text(&out)
    );
}

/// `kubectl attach`: the container's own output as it is written, and with `-i` the client's
/// input on the stdin of a container started with `stdin: true` (which stays open between
/// clients); the session ends when the container does. `tty: true` is refused at apply.
#[test]
fn attach_streams_output_and_feeds_stdin_of_a_container_with_stdin() {
    let a = Agent::with_image();
    let pods = manifest(
        &a,
        "attach.yaml",
        r#"apiVersion: v1
kind: Pod
metadata: {name: talk}
spec:
  containers:
  - name: talk
    image: flotilla.local/busybox:1
    command: ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: listen}
spec:
  restartPolicy: Never
  containers:
  - name: listen
    image: flotilla.local/busybox:1
    stdin: true
    command: ["sh", "-c", "read a; echo \"got $a\"; read b; echo \"then $b\" >&2"]
"#,
    );
    a.kubectl_ok(&["apply", "-f", &pods]);
    for p in ["talk", "listen"] {
        a.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{p}"),
            "--timeout=60s",
        ]);
    }

    // Output only: new ticks arrive while attached.
    {
        use std::io::BufRead;
        let mut child = a
            .kubectl_cmd(&["attach", "talk"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let ticks: Vec<String> = lines
            .map_while(Result::ok)
            .filter(|l| l.starts_with("tick "))
            .take(3)
            .collect();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(ticks.len(), 3, "{ticks:?}");
    }

    // Two clients in turn: the first sends a line, reads the answer and leaves (the container
    // goes on, its stdin open); the second's session ends when the container does, with what
    // it wrote to stderr on kubectl's stderr.
    {
        use std::io::{BufRead, Write};
        let mut child = a
            .kubectl_cmd(&["attach", "-i", "listen"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(b"hello\n").unwrap();
        let first = std::io::BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("got "));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(first.as_deref(), Some("got hello"));
    }
    let out = crate::harness::with_stdin(a.kubectl_cmd(&["attach", "-i", "listen"]), "world\n");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("then world"),
        "{}",
        text(&out)
    );
    a.eventually(20, "the pod to succeed", || {
        a.kubectl_ok(&["get", "pod", "listen", "-o", "jsonpath={.status.phase}"]) == "Succeeded"
    });
    assert_eq!(a.kubectl_ok(&["logs", "listen"]), "got hello\nthen world\n");

    // No stdin to attach to.
    let out = crate::harness::with_stdin(a.kubectl_cmd(&["attach", "-i", "talk"]), "x\n");
    assert!(
        text(&out).contains("was not started with stdin: true"),
        "{}",
        text(&out)
    );

    let tty = manifest(
        &a,
        "tty.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: term}\nspec:\n  containers:\n  - {name: c, image: flotilla.local/busybox:1, tty: true, stdin: true}\n",
    );
    let out = a.kubectl(&["apply", "-f", &tty]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("spec.containers[0].tty"),
        "{}",
        text(&out)
    );
}

/// The Kubernetes documentation's ReplicationController (its map selector defaulted from the
/// template when left out), scaled and deleted with kubectl.
#[test]
fn a_replication_controller_keeps_its_pods_and_scales_with_kubectl() {
    let a = Agent::with_image();
    let f = manifest(
        &a,
        "rc.yaml",
        "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: nginx}\nspec:\n  replicas: 2\n  template:\n    metadata: {name: nginx, labels: {app: nginx}}\n    spec:\n      terminationGracePeriodSeconds: 0\n      containers:\n      - name: nginx\n        image: flotilla.local/busybox:1\n        command: [sleep, '600']\n        ports: [{containerPort: 80}]\n",
    );
    assert!(
        a.kubectl_ok(&["apply", "-f", &f])
            .contains("replicationcontroller/nginx created")
    );
    let rc = json_of(&a, &["get", "rc", "nginx"]);
    assert_eq!(rc["spec"]["selector"]["app"], "nginx", "{rc}");
    assert_eq!(rc["metadata"]["labels"]["app"], "nginx", "{rc}");
    let pods = running(&a, "app=nginx", 2);
    assert_eq!(
        pods[0]["metadata"]["ownerReferences"][0]["kind"],
        "ReplicationController"
    );
    a.eventually(20, "kubectl get rc shows 2 ready", || {
        let t = a.kubectl_ok(&["get", "rc", "nginx"]);
        let row: Vec<&str> = t.lines().nth(1).unwrap_or("").split_whitespace().collect();
        t.starts_with("NAME") && row[..4] == ["nginx", "2", "2", "2"]
    });
    assert_eq!(
        a.kubectl_ok(&["scale", "rc", "nginx", "--replicas=3"]),
        "replicationcontroller/nginx scaled\n"
    );
    running(&a, "app=nginx", 3);
    // A pod deleted by hand is replaced.
    let victim = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    a.kubectl_ok(&["delete", "pod", &victim]);
    a.eventually(60, "the pod replaced", || {
        let ps = items(&json_of(&a, &["get", "pods", "-l", "app=nginx"]));
        ps.len() == 3
            && ps.iter().all(|p| {
                p["metadata"]["name"] != victim.as_str() && p["status"]["phase"] == "Running"
            })
    });
    a.kubectl_ok(&["delete", "rc", "nginx"]);
    a.eventually(60, "its pods gone", || {
        items(&json_of(&a, &["get", "pods", "-l", "app=nginx"])).is_empty()
    });
}

/// An Indexed Job (each pod its index, in env and hostname), a failure policy that fails a Job
/// at its first exit 42, and a Job created suspended, resumed with kubectl patch.
#[test]
fn indexed_jobs_failure_policies_and_suspended_jobs_run_as_kubernetes_runs_them() {
    let a = Agent::with_image();
    let f = manifest(
        &a,
        "jobs.yaml",
        r#"apiVersion: batch/v1
kind: Job
metadata: {name: indexed}
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 3
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: c, image: flotilla.local/busybox:1, command: [sh, -c, 'echo index=$JOB_COMPLETION_INDEX host=$(hostname)']}
---
apiVersion: batch/v1
kind: Job
metadata: {name: policy}
spec:
  backoffLimit: 6
  podFailurePolicy:
    rules:
    - action: FailJob
      onExitCodes: {containerName: c, operator: In, values: [42]}
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: flotilla.local/busybox:1, command: [sh, -c, 'exit 42']}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: paused}
spec:
  suspend: true
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: flotilla.local/busybox:1, command: [echo, resumed]}]
"#,
    );
    a.kubectl_ok(&["apply", "-f", &f]);
    a.eventually(60, "indexed complete", || {
        json_of(&a, &["get", "job", "indexed"])["status"]["completedIndexes"] == "0-2"
    });
    let pods = items(&json_of(
        &a,
        &["get", "pods", "-l", "batch.kubernetes.io/job-name=indexed"],
    ));
    let mut logs: Vec<String> = pods
        .iter()
        .map(|p| a.ok(&["logs", p["metadata"]["name"].as_str().unwrap()]))
        .collect();
    logs.sort();
    assert_eq!(
        logs,
        [
            "index=0 host=indexed-0\n",
            "index=1 host=indexed-1\n",
            "index=2 host=indexed-2\n"
        ]
    );
    a.eventually(60, "policy failed by its rule", || {
        json_of(&a, &["get", "job", "policy"])["status"]["conditions"][0]["reason"]
            == "PodFailurePolicy"
    });
    let job = json_of(&a, &["get", "job", "policy"]);
    assert_eq!(
        job["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .split(" for pod ")
            .next(),
        Some("Container c"),
        "{job}"
    );
    let tries = items(&json_of(
        &a,
        &["get", "pods", "-l", "batch.kubernetes.io/job-name=policy"],
    ));
    assert_eq!(tries.len(), 1, "no retry after a FailJob exit");
    // Suspended: no pod, and kubectl says so; resumed, it runs.
    a.eventually(20, "paused shown Suspended", || {
        let t = a.kubectl_ok(&["get", "job", "paused"]);
        t.lines().nth(1).is_some_and(|l| l.contains("Suspended"))
    });
    assert!(
        items(&json_of(
            &a,
            &["get", "pods", "-l", "batch.kubernetes.io/job-name=paused"]
        ))
        .is_empty()
    );
    a.kubectl_ok(&[
        "patch",
        "job",
        "paused",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    a.eventually(60, "paused ran once resumed", || {
        json_of(&a, &["get", "job", "paused"])["status"]["succeeded"] == 1
    });
    let j = json_of(&a, &["get", "job", "paused"]);
    let resumed = j["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Suspended")
        .cloned()
        .unwrap();
    assert_eq!(resumed["reason"], "JobResumed", "{j}");
}

/// `kubectl taint ... :NoExecute` evicts the pods that do not tolerate it at once, those that
/// tolerate it for a while after that while, and leaves those that tolerate it for good.
#[test]
fn a_no_execute_taint_evicts_pods_by_their_tolerations() {
    let a = Agent::with_image();
    let pod = |name: &str, tol: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: taint}}}}\nspec:\n  terminationGracePeriodSeconds: 0\n{tol}  containers: [{{name: c, image: flotilla.local/busybox:1, command: [sleep, '600']}}]\n"
        )
    };
    let tol = |secs: &str| {
        format!(
            "  tolerations: [{{key: maintenance, operator: Exists, effect: NoExecute{secs}}}]\n"
        )
    };
    let yaml = [
        pod("plain", ""),
        pod("brief", &tol(", tolerationSeconds: 4")),
        pod("always", &tol("")),
    ]
    .concat();
    let f = manifest(&a, "taint.yaml", &yaml);
    a.kubectl_ok(&["apply", "-f", &f]);
    running(&a, "app=taint", 3);
    let names = || -> Vec<String> {
        let mut n: Vec<String> = items(&json_of(&a, &["get", "pods", "-l", "app=taint"]))
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    let t = std::time::Instant::now();
    a.kubectl_ok(&["taint", "nodes", "node-1", "maintenance=yes:NoExecute"]);
    a.eventually(20, "plain evicted", || {
        !names().contains(&"plain".to_string())
    });
    assert!(
        names().contains(&"brief".to_string()),
        "brief tolerates it for 4 s"
    );
    a.eventually(30, "brief evicted after its 4 s", || names() == ["always"]);
    assert!(
        t.elapsed() >= std::time::Duration::from_secs(4),
        "{:?}",
        t.elapsed()
    );
    let events = a.kubectl_ok(&["get", "events"]);
    assert!(events.contains("TaintManagerEviction"), "{events}");
    a.kubectl_ok(&["taint", "nodes", "node-1", "maintenance-"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(names(), ["always"]);
}

/// A rollout that makes no progress for `progressDeadlineSeconds` is reported as Kubernetes
/// reports it, and `kubectl rollout status` gives up saying so.
#[test]
fn a_stuck_rollout_exceeds_its_progress_deadline() {
    let a = Agent::with_image();
    let f = manifest(
        &a,
        "stuck.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: stuck}\nspec:\n  progressDeadlineSeconds: 4\n  selector: {matchLabels: {app: stuck}}\n  template:\n    metadata: {labels: {app: stuck}}\n    spec:\n      containers: [{name: c, image: flotilla.local/nowhere:1}]\n",
    );
    a.kubectl_ok(&["apply", "-f", &f]);
    let t = std::time::Instant::now();
    let out = a.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=60s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("deployment \"stuck\" exceeded its progress deadline"),
        "{err}"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(40),
        "{:?}",
        t.elapsed()
    );
    let d = json_of(&a, &["get", "deployment", "stuck"]);
    let c = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned()
        .unwrap();
    assert_eq!(c["status"], "False", "{d}");
    assert_eq!(c["reason"], "ProgressDeadlineExceeded");
    assert!(c["lastUpdateTime"].is_string() && c["lastTransitionTime"].is_string());
    // flotilla's own rollout status says the same.
    let own = a.cli(&["rollout", "status", "deployment/stuck"]);
    assert!(!own.status.success());
    assert!(
        String::from_utf8_lossy(&own.stderr).contains("exceeded its progress deadline"),
        "{own:?}"
    );
}
