use serde_json::json;

use super::*;
use crate::manifest::schema::schemas;

const DEPLOYMENT: Option<&str> = Some("io.k8s.api.apps.v1.Deployment");

fn config(replicas: i64, image: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

fn who(manager: &str, force: bool) -> Applier<'_> {
    Applier {
        manager,
        api_version: "apps/v1",
        now: "2026-12-03T00:00:00Z",
        force,
    }
}

fn p(steps: &[&str]) -> Path {
    steps.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_fields_of_a_config_are_kubernetes_fieldsv1() {
    let c = config(2, "nginx:1.27", json!({"app": "web"}));
    let f = fields_of(schemas(), DEPLOYMENT, &c);
    assert!(f.0.contains(&p(&["f:spec", "f:replicas"])));
    assert!(
        f.0.contains(&p(&["f:metadata", "f:labels"])),
        "a map is owned itself"
    );
    assert!(
        !f.0.contains(&p(&["f:spec"])),
        "a struct only through its fields"
    );
    assert!(
        !f.0.iter()
            .any(|q| q.contains(&"f:name".to_string()) && q.len() == 2)
    );
    let web = r#"k:{"name":"web"}"#;
    // Keyed by number and protocol, as Kubernetes keys them: TCP when left out.
    let c80 = r#"k:{"containerPort":80,"protocol":"TCP"}"#;
    let v1 = f.to_v1();
    assert_eq!(
        v1["f:spec"]["f:template"]["f:spec"]["f:containers"][web],
        json!({".": {}, "f:image": {}, "f:name": {}, "f:ports": {c80: {".": {}, "f:containerPort": {}}}})
    );
    assert_eq!(v1["f:metadata"]["f:labels"], json!({".": {}, "f:app": {}}));
    assert_eq!(
        FieldSet::from_v1(&v1),
        f,
        "fieldsV1 reads back as the same set"
    );
    assert_eq!(
        display(&p(&[
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            web,
            "f:image"
        ])),
        r#".spec.template.spec.containers[name="web"].image"#
    );
}

const SERVICE: Option<&str> = Some("io.k8s.api.core.v1.Service");

fn dns(ports: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"},
        "spec": {"selector": {"app": "dns"}, "ports": ports}})
}

#[test]
fn ports_of_one_number_and_two_protocols_are_two_elements() {
    let both = dns(json!([
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53}
    ]));
    let made = apply(schemas(), SERVICE, None, &both, &who("kubectl", false)).unwrap();
    assert_eq!(made["spec"]["ports"], both["spec"]["ports"], "both kept");
    let v1 = &made["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:ports"];
    assert!(v1[r#"k:{"port":53,"protocol":"UDP"}"#]["f:name"].is_object());
    assert!(v1[r#"k:{"port":53,"protocol":"TCP"}"#]["f:name"].is_object());
    // Another applier's SCTP port of the same number is its own element, no conflict.
    let mine = dns(json!([{"name": "alt", "port": 53, "protocol": "SCTP"}]));
    let after = apply(schemas(), SERVICE, Some(&made), &mine, &who("other", false)).unwrap();
    assert_eq!(after["spec"]["ports"].as_array().unwrap().len(), 3);
    // The same element by its defaulted key: the UDP one is left alone, the TCP one renamed
    // is a conflict with its owner, named as kube-apiserver names it.
    let renamed = dns(json!([{"name": "x", "port": 53, "protocol": "TCP"}]));
    let c = apply(
        schemas(),
        SERVICE,
        Some(&made),
        &renamed,
        &who("other", false),
    )
    .unwrap_err();
    let c = c.conflicts();
    assert_eq!(c.len(), 1);
    assert_eq!(
        display(&c[0].path),
        r#".spec.ports[port=53,protocol="TCP"].name"#
    );
}

/// A port without its number cannot be keyed: the apply is refused with the key named.
#[test]
fn an_element_without_its_key_is_refused_naming_the_key() {
    let bad = dns(json!([{"name": "dns", "protocol": "UDP"}]));
    match apply(schemas(), SERVICE, None, &bad, &who("kubectl", false)) {
        Err(ApplyError::Merge(e)) => assert!(e.to_string().contains("port"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// An object whose managedFields an older agent wrote, keying ports by `containerPort` alone:
/// the same apply again keeps the port (the old entry names the same element).
#[test]
fn entries_keyed_before_ports_had_two_keys_name_the_same_elements() {
    let c = config(1, "nginx:1.27", json!({"app": "web"}));
    let mut live = apply(schemas(), DEPLOYMENT, None, &c, &who("kubectl", false)).unwrap();
    let old = serde_json::to_string(&live["metadata"]["managedFields"])
        .unwrap()
        .replace(
            r#"k:{\"containerPort\":80,\"protocol\":\"TCP\"}"#,
            r#"k:{\"containerPort\":80}"#,
        );
    assert!(!old.contains("protocol"), "{old}");
    live["metadata"]["managedFields"] = serde_json::from_str(&old).unwrap();
    let again = apply(
        schemas(),
        DEPLOYMENT,
        Some(&live),
        &c,
        &who("kubectl", false),
    )
    .unwrap();
    assert_eq!(
        again["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80}]),
        "the port stays"
    );
    // An update by another manager leaves the old owner its re-keyed port.
    let mut changed = live.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostPort"] = json!(8080);
    let u = updated(
        schemas(),
        DEPLOYMENT,
        Some(&live),
        &changed,
        &Updater {
            manager: "edit",
            api_version: "apps/v1",
            now: "2026-12-04T00:00:00Z",
            subresource: None,
        },
    );
    let kept = u.iter().find(|e| e["manager"] == "kubectl").unwrap();
    let ports = &kept["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"web"}"#]
        ["f:ports"];
    assert!(
        ports[r#"k:{"containerPort":80,"protocol":"TCP"}"#].is_object(),
        "re-keyed, still owned: {kept:#}"
    );
}

#[test]
fn apply_creates_then_changes_and_removes_what_the_manager_dropped() {
    let s = schemas();
    let first = config(2, "nginx:1.27", json!({"app": "web", "tier": "front"}));
    let made = apply(s, DEPLOYMENT, None, &first, &who("kubectl", false)).unwrap();
    assert_eq!(made["spec"]["replicas"], 2);
    let m = &made["metadata"]["managedFields"];
    assert_eq!(m.as_array().unwrap().len(), 1);
    assert_eq!(m[0]["manager"], "kubectl");
    assert_eq!(m[0]["operation"], "Apply");
    assert_eq!(m[0]["fieldsType"], "FieldsV1");

    // The next config changes the image and no longer names the tier label.
    let second = config(2, "nginx:1.28", json!({"app": "web"}));
    let after = apply(s, DEPLOYMENT, Some(&made), &second, &who("kubectl", false)).unwrap();
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
    assert_eq!(after["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn a_field_another_manager_owns_with_another_value_conflicts_unless_forced() {
    let s = schemas();
    let c = config(2, "nginx:1.27", json!({"app": "web"}));
    let made = apply(s, DEPLOYMENT, None, &c, &who("kubectl", false)).unwrap();
    // `kubectl scale` (an update) sets replicas to 5: it now owns them.
    let mut scaled = made.clone();
    scaled["spec"]["replicas"] = json!(5);
    scaled["metadata"]["managedFields"] = Value::Array(updated(
        s,
        DEPLOYMENT,
        Some(&made),
        &scaled,
        &Updater {
            manager: "kubectl-scale",
            api_version: "apps/v1",
            now: "2026-12-03T00:01:00Z",
            subresource: Some("scale"),
        },
    ));
    let owners: Vec<String> = entries_of(&scaled)
        .iter()
        .filter(|e| e.fields.0.contains(&p(&["f:spec", "f:replicas"])))
        .map(|e| e.manager.clone())
        .collect();
    assert_eq!(owners, ["kubectl-scale"], "the update took the field");

    // Applying replicas 3 conflicts, naming the field and its owner; nothing is written.
    let three = config(3, "nginx:1.27", json!({"app": "web"}));
    let err = apply(s, DEPLOYMENT, Some(&scaled), &three, &who("kubectl", false)).unwrap_err();
    let err = err.conflicts();
    assert_eq!(err.len(), 1);
    assert_eq!(display(&err[0].path), ".spec.replicas");
    assert_eq!(
        err[0].message(),
        r#"conflict with "kubectl-scale" using apps/v1"#
    );

    // The same value is no conflict: both own it.
    let five = config(5, "nginx:1.27", json!({"app": "web"}));
    let shared = apply(s, DEPLOYMENT, Some(&scaled), &five, &who("kubectl", false)).unwrap();
    let owners = entries_of(&shared)
        .iter()
        .filter(|e| e.fields.0.contains(&p(&["f:spec", "f:replicas"])))
        .count();
    assert_eq!(owners, 2);

    // Forced, the applier takes the field.
    let forced = apply(s, DEPLOYMENT, Some(&scaled), &three, &who("kubectl", true)).unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    let scale = entries_of(&forced)
        .into_iter()
        .find(|e| e.manager == "kubectl-scale")
        .unwrap();
    assert!(!scale.fields.0.contains(&p(&["f:spec", "f:replicas"])));
}

#[test]
fn a_dropped_list_element_goes_unless_another_manager_owns_part_of_it() {
    let s = schemas();
    let mut two = config(1, "nginx:1.27", json!({"app": "web"}));
    two["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "busybox"}));
    let made = apply(s, DEPLOYMENT, None, &two, &who("kubectl", false)).unwrap();
    let one = config(1, "nginx:1.27", json!({"app": "web"}));
    let after = apply(s, DEPLOYMENT, Some(&made), &one, &who("kubectl", false)).unwrap();
    let names: Vec<&str> = after["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web"]);

    // Another manager applied the sidecar's image too: dropping it keeps the sidecar.
    let other = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox"}]}}}
    });
    let shared = apply(s, DEPLOYMENT, Some(&made), &other, &who("ops", false)).unwrap();
    let after = apply(s, DEPLOYMENT, Some(&shared), &one, &who("kubectl", false)).unwrap();
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
