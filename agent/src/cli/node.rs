//! `flotilla cordon | uncordon | drain NODE`: keep new pods off a node, and move its pods away
//! without taking a Deployment below what its `maxUnavailable` allows.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::client::Client;
use crate::controller::deployment::surge_and_unavailable;
use crate::manifest::lifecycle::{self, Object};

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

/// The name of `m`'s controller when it is a `kind`.
fn owner<'a>(m: &'a ObjectMeta, kind: &str) -> Option<&'a str> {
    lifecycle::controller_of(m)
        .filter(|r| r.kind == kind)
        .map(|r| r.name.as_str())
}

fn key(m: &ObjectMeta) -> (String, String) {
    (
        lifecycle::namespace(m).to_string(),
        lifecycle::name(m).to_string(),
    )
}

/// The pods of `node_pods` (those to move, in order) that may be deleted now. A Deployment's
/// pods go only while its Ready pods (over all nodes, `all_pods`) stay at least
/// `replicas - max(maxUnavailable, 1)`; pods of other controllers go at once.
pub fn evictable_now<'a>(
    node_pods: &'a [Pod],
    all_pods: &[Pod],
    replica_sets: &[ReplicaSet],
    deployments: &[Deployment],
) -> Vec<&'a Pod> {
    let rs_owner: BTreeMap<(String, String), String> = replica_sets
        .iter()
        .filter_map(|rs| {
            let d = owner(&rs.metadata, "Deployment")?;
            Some((key(&rs.metadata), d.to_string()))
        })
        .collect();
    let deployment_of = |p: &Pod| -> Option<(String, String)> {
        let rs = owner(&p.metadata, "ReplicaSet")?;
        let ns = lifecycle::namespace(&p.metadata).to_string();
        let d = rs_owner.get(&(ns.clone(), rs.to_string()))?;
        Some((ns, d.clone()))
    };
    // Budget left per Deployment: maxUnavailable minus the Ready pods it lacks now.
    let mut budget: BTreeMap<(String, String), i64> = BTreeMap::new();
    for d in deployments {
        let k = key(&d.metadata);
        let replicas = i64::from(d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1));
        // maxUnavailable 0 (the default for 3 replicas) would never let a drain finish
        // without surging, which would mean changing the user's Deployment: at least one.
        let max_unavailable = surge_and_unavailable(d, replicas).1.max(1);
        let ready_now = all_pods
            .iter()
            .filter(|p| lifecycle::pod_ready(p) && deployment_of(p).as_ref() == Some(&k))
            .count() as i64;
        budget.insert(k, max_unavailable - (replicas - ready_now).max(0));
    }
    let mut out = Vec::new();
    for p in node_pods {
        match deployment_of(p) {
            Some(d) => {
                let b = budget.entry(d).or_insert(1);
                // A pod that is not Ready costs nothing to move.
                if !lifecycle::pod_ready(p) {
                    out.push(p);
                } else if *b > 0 {
                    *b -= 1;
                    out.push(p);
                }
            }
            None => out.push(p),
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

async fn items<T: Object>(client: &Client, path: &str, query: &[(&str, String)]) -> Result<Vec<T>> {
    let list = client.get(path, query).await?;
    Vec::<T>::deserialize(&list["items"]).with_context(|| format!("reading {path}"))
}

pub async fn drain(cfg: &Path, a: DrainArgs) -> Result<i32> {
    let client = Client::from_config_file(cfg)?;
    set_unschedulable(&client, &a.node, true).await?;
    println!("node/{} cordoned", a.node);
    let on_node = [("fieldSelector", format!("spec.nodeName={}", a.node))];
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let mut warned = false;
    loop {
        let pods: Vec<Pod> = items::<Pod>(&client, "/api/v1/pods", &on_node)
            .await?
            .into_iter()
            .filter(|p| !lifecycle::pod_finished(p))
            .filter(|p| owner(&p.metadata, "DaemonSet").is_none())
            .collect();
        let bare: Vec<String> = pods
            .iter()
            .filter(|p| {
                p.metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(Vec::is_empty)
            })
            .map(|p| lifecycle::name(&p.metadata).to_string())
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
        let all: Vec<Pod> = items(&client, "/api/v1/pods", &[]).await?;
        let rss: Vec<ReplicaSet> = items(&client, "/apis/apps/v1/replicasets", &[]).await?;
        let deps: Vec<Deployment> = items(&client, "/apis/apps/v1/deployments", &[]).await?;
        let now = evictable_now(&pods, &all, &rss, &deps);
        if now.is_empty() && !warned {
            println!("waiting for replacements to be Ready before evicting more");
            warned = true;
        }
        for p in now {
            let (ns, name) = key(&p.metadata);
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

    fn dep(name: &str, replicas: i64, max_unavailable: i64) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"replicas": replicas,
            "selector": {},
            "template": {},
            "strategy": {"rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": 1}}}}))
        .unwrap()
    }

    fn owned(kind: &str, owner: &str) -> serde_json::Value {
        json!([{"apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": owner, "controller": true}])
    }

    fn rs(name: &str, dep: &str) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default",
            "ownerReferences": owned("Deployment", dep)}}))
        .unwrap()
    }

    fn pod(name: &str, rs: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default",
            "ownerReferences": owned("ReplicaSet", rs)},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}))
        .unwrap()
    }

    fn names(v: Vec<&Pod>) -> Vec<String> {
        v.iter().map(|p| key(&p.metadata).1).collect()
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
        let job_pod: Pod = serde_json::from_value(json!({"metadata": {"name": "j", "namespace": "default",
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "x", "uid": "x", "controller": true}]}}))
        .unwrap();
        let node = [pod("a", "web-1", false), job_pod.clone()];
        let all = [pod("a", "web-1", false), pod("b", "web-1", true), job_pod];
        assert_eq!(names(evictable_now(&node, &all, &rss, &deps)), ["a", "j"]);
    }
}
