//! The agent stops and starts again without losing or corrupting anything.

use crate::harness::{Agent, examples};

#[test]
fn kill_9_and_restart_keeps_every_object_and_revision_order() {
    let mut a = Agent::start();
    a.ok(&["apply", "-f", examples().join("web.yaml").to_str().unwrap()]);
    a.eventually(10, "3 pods", || {
        a.json(&["get", "pods"])["items"].as_array().unwrap().len() == 3
    });
    let before = a.json(&["get", "pods"]);
    let rv_before: i64 = before["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        })
        .max()
        .unwrap();
    let token_before = std::fs::read_to_string(a.data_dir().join("api-token")).unwrap();
    a.kill9();
    a.spawn(false);
    let after = a.json(&["get", "pods"]);
    let names = |v: &serde_json::Value| {
        let mut n: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&before), names(&after), "the same pods, not new ones");
    assert_eq!(
        std::fs::read_to_string(a.data_dir().join("api-token")).unwrap(),
        token_before,
        "same identity"
    );
    let f = crate::harness::manifest(
        &a,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: after}\n",
    );
    a.ok(&["apply", "-f", &f]);
    let cm = a.json(&["get", "cm", "after"]);
    let rv: i64 = cm["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rv > rv_before,
        "revisions keep increasing across restarts ({rv} after {rv_before})"
    );
}

#[test]
fn sigterm_stops_cleanly_and_init_again_resumes() {
    let mut a = Agent::start();
    let f = crate::harness::manifest(
        &a,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}\n",
    );
    a.ok(&["apply", "-f", &f]);
    let status = a.stop();
    assert!(status.success(), "agent exit status {status}");
    // `--init` on a dir that holds a node carries on as that node.
    a.spawn(true);
    assert_eq!(a.json(&["get", "cm", "keep"])["metadata"]["name"], "keep");
    let nodes = a.json(&["get", "nodes"]);
    assert_eq!(nodes["items"].as_array().unwrap().len(), 1);
}

#[test]
fn an_empty_data_dir_without_init_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["agent", "--api-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds no node: start with --init"), "{err}");
}
