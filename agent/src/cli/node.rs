//! `flotilla cordon | uncordon | drain NODE`: keep new pods off a node, and move its pods away
//! without taking a Deployment below what its `maxUnavailable` allows.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use reqwest::Method;
use serde_json::Value;

use super::client::Client;
use k8s_openapi::api::apps::v1::Deployment;

use crate::controller::deployment::surge_and_unavailable;
use crate::manifest::lifecycle::decode;

#[derive(Debug, Args)]
pub struct CordonArgs {
    pub node: String,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    pub node: String,
    /// Also delete pods no controller owns (they are not recreated anywhere).
    #[arg(long)]
    pub force: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

fn owner<'a>(o: &'a Value, kind: &str) -> Option<&'a str> {
    o["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true && r["kind"] == kind)?["name"]
        .as_str()
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn key(o: &Value) -> (String, String) {
    (
        o["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        o["metadata"]["name"].as_str().unwrap_or("").to_string(),
    )
}

/// The pods of `node_pods` (those to move, in order) that may be deleted now. A Deployment's
/// pods go only while its Ready pods (over all nodes, `all_pods`) stay at least
/// `replicas - max(maxUnavailable, 1)`; pods of other controllers go at once.
pub fn evictable_now(
    node_pods: &[Value],
    all_pods: &[Value],
    replica_sets: &[Value],
    deployments: &[Value],
) -> Vec<Value> {
    let rs_owner: BTreeMap<(String, String), String> = replica_sets
        .iter()
        .filter_map(|rs| {
            let (ns, name) = key(rs);
            Some(((ns, name), owner(rs, "Deployment")?.to_string()))
        })
        .collect();
    let deployment_of = |p: &Value| -> Option<(String, String)> {
        let rs = owner(p, "ReplicaSet")?;
        let ns = key(p).0;
        let d = rs_owner.get(&(ns.clone(), rs.to_string()))?;
        Some((ns, d.clone()))
    };
    // Budget left per Deployment: maxUnavailable minus the Ready pods it lacks now.
    let mut budget: BTreeMap<(String, String), i64> = BTreeMap::new();
    for d in deployments {
        let k = key(d);
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        // maxUnavailable 0 (the default for 3 replicas) would never let a drain finish
        // without surging, which would mean changing the user's Deployment: at least one.
        let max_unavailable = decode::<Deployment>(d.clone())
            .map_or(1, |typed| surge_and_unavailable(&typed, replicas).1);
        let max_unavailable = max_unavailable.max(1);
        let ready_now = all_pods
            .iter()
            .filter(|p| ready(p) && deployment_of(p).as_ref() == Some(&k))
            .count() as i64;
        budget.insert(k, max_unavailable - (replicas - ready_now).max(0));
    }
    let mut out = Vec::new();
    for p in node_pods {
        match deployment_of(p) {
            Some(d) => {
                let b = budget.entry(d).or_insert(1);
                // A pod that is not Ready costs nothing to move.
                if !ready(p) {
                    out.push(p.clone());
                } else if *b > 0 {
                    *b -= 1;
                    out.push(p.clone());
                }
            }
            None => out.push(p.clone()),
        }
    }
    out
}

async fn set_unschedulable(client: &Client, node: &str, on: bool) -> Result<bool> {
    let path = format!("/api/v1/nodes/{node}");
    let mut obj = client.get(&path, &[]).await.map_err(|e| {
        if super::client::is_not_found(&e) {
            anyhow::anyhow!("node {node:?} not found")
        } else {
            e
        }
    })?;
    let was = obj["spec"]["unschedulable"] == true;
    if was == on {
        return Ok(false);
    }
    if on {
        obj["spec"]["unschedulable"] = Value::Bool(true);
    } else if let Some(spec) = obj["spec"].as_object_mut() {
        spec.remove("unschedulable");
    }
    client.json(Method::PUT, &path, &[], Some(&obj)).await?;
    Ok(true)
}

pub async fn cordon(cfg: &Path, a: CordonArgs, on: bool) -> Result<i32> {
    let client = Client::from_config_file(cfg)?;
    let changed = set_unschedulable(&client, &a.node, on).await?;
    let verb = if on { "cordoned" } else { "uncordoned" };
    if changed {
        println!("node/{} {verb}", a.node);
    } else {
        println!("node/{} already {verb}", a.node);
    }
    Ok(0)
}

async fn items(client: &Client, path: &str, query: &[(&str, String)]) -> Result<Vec<Value>> {
    Ok(client.get(path, query).await?["items"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

pub async fn drain(cfg: &Path, a: DrainArgs) -> Result<i32> {
    let client = Client::from_config_file(cfg)?;
    set_unschedulable(&client, &a.node, true).await?;
    println!("node/{} cordoned", a.node);
    let on_node = [("fieldSelector", format!("spec.nodeName={}", a.node))];
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let mut warned = false;
    loop {
        let pods: Vec<Value> = items(&client, "/api/v1/pods", &on_node)
            .await?
            .into_iter()
            .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
            .filter(|p| owner(p, "DaemonSet").is_none())
            .collect();
        let bare: Vec<String> = pods
            .iter()
            .filter(|p| {
                p["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(|r| r.is_empty())
            })
            .map(|p| key(p).1)
            .collect();
        if !bare.is_empty() && !a.force {
            bail!(
                "cannot drain node {}: pods not managed by a controller would be lost (use --force): {}",
                a.node,
                bare.join(", ")
            );
        }
        if pods.is_empty() {
            break;
        }
        let all = items(&client, "/api/v1/pods", &[]).await?;
        let rss = items(&client, "/apis/apps/v1/replicasets", &[]).await?;
        let deps = items(&client, "/apis/apps/v1/deployments", &[]).await?;
        let now = evictable_now(&pods, &all, &rss, &deps);
        if now.is_empty() && !warned {
            println!("waiting for replacements to be Ready before evicting more");
            warned = true;
        }
        for p in now {
            let (ns, name) = key(&p);
            match client
                .json(
                    Method::DELETE,
                    &format!("/api/v1/namespaces/{ns}/pods/{name}"),
                    &[],
                    None,
                )
                .await
            {
                Ok(_) => println!("pod/{name} evicted"),
                Err(e) if super::client::is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if Instant::now() > deadline {
            bail!(
                "drain of {} timed out after {} s with pods left",
                a.node,
                a.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("node/{} drained", a.node);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dep(name: &str, replicas: i64, max_unavailable: i64) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"replicas": replicas,
            "strategy": {"rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": 1}}}})
    }

    fn rs(name: &str, dep: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default",
            "ownerReferences": [{"kind": "Deployment", "name": dep, "controller": true}]}})
    }

    fn pod(name: &str, rs: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "namespace": "default",
            "ownerReferences": [{"kind": "ReplicaSet", "name": rs, "controller": true}]},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn names(v: Vec<Value>) -> Vec<String> {
        v.iter().map(|p| key(p).1).collect()
    }

    #[test]
    fn a_deployment_loses_at_most_max_unavailable_ready_pods_at_a_time() {
        let deps = [dep("web", 4, 1)];
        let rss = [rs("web-1", "web")];
        let node = [pod("a", "web-1", true), pod("b", "web-1", true)];
        let mut all = node.to_vec();
        all.extend([pod("c", "web-1", true), pod("d", "web-1", true)]);
        assert_eq!(names(evictable_now(&node, &all, &rss, &deps)), ["a"]);
        // "a" is gone and its replacement not Ready yet: nothing more until it is.
        let node = [pod("b", "web-1", true)];
        let mut all = vec![pod("b", "web-1", true), pod("c", "web-1", true)];
        all.extend([pod("d", "web-1", true), pod("a2", "web-1", false)]);
        assert!(evictable_now(&node, &all, &rss, &deps).is_empty());
        all[3] = pod("a2", "web-1", true);
        assert_eq!(names(evictable_now(&node, &all, &rss, &deps)), ["b"]);
    }

    #[test]
    fn unready_pods_and_other_controllers_go_at_once() {
        let deps = [dep("web", 2, 1)];
        let rss = [rs("web-1", "web")];
        let job_pod = json!({"metadata": {"name": "j", "namespace": "default",
            "ownerReferences": [{"kind": "Job", "name": "x", "controller": true}]}});
        let node = [pod("a", "web-1", false), job_pod.clone()];
        let all = [pod("a", "web-1", false), pod("b", "web-1", true), job_pod];
        assert_eq!(names(evictable_now(&node, &all, &rss, &deps)), ["a", "j"]);
    }
}
