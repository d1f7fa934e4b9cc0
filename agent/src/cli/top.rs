//! `flotilla top nodes|pods`: the resource metrics (`metrics.k8s.io`), in `kubectl top`'s
//! columns and units (CPU in millicores, memory in MiB, the nodes' share of what they can
//! give pods).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::Value;

use super::client::Client;
use crate::manifest::printers::table;
use crate::manifest::quantity::{parse_milli, parse_nano, parse_units};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum What {
    #[value(alias = "node", alias = "no")]
    Nodes,
    #[value(alias = "pod", alias = "po")]
    Pods,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// nodes or pods.
    pub what: What,
    /// One node or pod by name.
    pub name: Option<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Pods of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector (`app=web`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// A line per container.
    #[arg(long)]
    pub containers: bool,
}

const API: &str = "/apis/metrics.k8s.io/v1beta1";

/// A CPU usage in `kubectl top`'s words: millicores, rounded up.
pub fn cpu(q: &str) -> String {
    parse_milli(q)
        .map(|m| format!("{m}m"))
        .unwrap_or_else(|_| q.to_string())
}

/// A memory usage in MiB, rounded down, as `kubectl top` shows it.
pub fn memory(q: &str) -> String {
    parse_units(q)
        .map(|b| format!("{}Mi", b / (1024 * 1024)))
        .unwrap_or_else(|_| q.to_string())
}

fn percent(used: &str, of: Option<&str>, parse: fn(&str) -> Result<i64, String>) -> String {
    match (parse(used), of.map(parse)) {
        (Ok(u), Some(Ok(t))) if t > 0 => format!("{}%", u * 100 / t),
        _ => "<unknown>".into(),
    }
}

/// The rows of `top nodes`: each of `nodes` with its NodeMetrics and its share of its
/// allocatable, or `<unknown>` where it has no metrics (as kubectl shows such a node).
pub fn node_rows(metrics: &[Value], nodes: &[Value]) -> Vec<Vec<String>> {
    let usage: BTreeMap<&str, &Value> = metrics
        .iter()
        .filter_map(|m| Some((m["metadata"]["name"].as_str()?, &m["usage"])))
        .collect();
    nodes
        .iter()
        .filter_map(|n| {
            let name = n["metadata"]["name"].as_str()?;
            let Some(u) = usage.get(name) else {
                let unknown = "<unknown>".to_string();
                return Some(vec![
                    name.to_string(),
                    unknown.clone(),
                    unknown.clone(),
                    unknown.clone(),
                    unknown,
                ]);
            };
            let a = &n["status"]["allocatable"];
            let (c, mem) = (
                u["cpu"].as_str().unwrap_or("0"),
                u["memory"].as_str().unwrap_or("0"),
            );
            Some(vec![
                name.to_string(),
                cpu(c),
                percent(c, a["cpu"].as_str(), parse_milli),
                memory(mem),
                percent(mem, a["memory"].as_str(), parse_units),
            ])
        })
        .collect()
}

/// The rows of `top pods`: a pod's containers summed, or one row per container.
pub fn pod_rows(metrics: &[Value], namespaces: bool, containers: bool) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for m in metrics {
        let mut lead = Vec::new();
        if namespaces {
            lead.push(
                m["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        }
        lead.push(m["metadata"]["name"].as_str().unwrap_or("").to_string());
        let cs = m["containers"].as_array().cloned().unwrap_or_default();
        let q = |c: &Value, k: &str| c["usage"][k].as_str().unwrap_or("0").to_string();
        if containers {
            for c in &cs {
                let mut r = lead.clone();
                r.push(c["name"].as_str().unwrap_or("").to_string());
                r.push(cpu(&q(c, "cpu")));
                r.push(memory(&q(c, "memory")));
                rows.push(r);
            }
        } else {
            // Summed exactly, then rounded once, as kubectl adds the quantities.
            let sum = |k: &str, parse: fn(&str) -> Result<i64, String>| -> i64 {
                cs.iter().filter_map(|c| parse(&q(c, k)).ok()).sum()
            };
            let mut r = lead;
            r.push(format!(
                "{}m",
                (sum("cpu", parse_nano) + 999_999) / 1_000_000
            ));
            r.push(format!("{}Mi", sum("memory", parse_units) / (1024 * 1024)));
            rows.push(r);
        }
    }
    rows
}

pub async fn run(cfg: &Path, a: TopArgs) -> Result<i32> {
    let client = Client::from_config_file(cfg)?;
    let mut query = Vec::new();
    if let Some(l) = &a.selector {
        query.push(("labelSelector", l.clone()));
    }
    let items = |v: Value| -> Vec<Value> { v["items"].as_array().cloned().unwrap_or_default() };
    let not_yet = || "metrics not available yet (the first figures come one sampling period after a node starts)";
    match a.what {
        What::Nodes => {
            let (metrics, nodes) = match &a.name {
                Some(n) => (
                    vec![client.get(&format!("{API}/nodes/{n}"), &query).await?],
                    vec![client.get(&format!("/api/v1/nodes/{n}"), &[]).await?],
                ),
                None => (
                    items(client.get(&format!("{API}/nodes"), &query).await?),
                    items(client.get("/api/v1/nodes", &query).await?),
                ),
            };
            if metrics.is_empty() {
                bail!(not_yet());
            }
            let rows = node_rows(&metrics, &nodes);
            print!(
                "{}",
                table(
                    &["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"],
                    &rows
                )
            );
        }
        What::Pods => {
            let ns = a.namespace.clone().unwrap_or_else(|| "default".into());
            let metrics = match (&a.name, a.all_namespaces) {
                (Some(n), _) => vec![
                    client
                        .get(&format!("{API}/namespaces/{ns}/pods/{n}"), &query)
                        .await
                        .with_context(|| format!("metrics of pod {ns}/{n}"))?,
                ],
                (None, true) => items(client.get(&format!("{API}/pods"), &query).await?),
                (None, false) => items(
                    client
                        .get(&format!("{API}/namespaces/{ns}/pods"), &query)
                        .await?,
                ),
            };
            if metrics.is_empty() {
                bail!(
                    "no pod metrics in {}: {}",
                    if a.all_namespaces {
                        "any namespace".to_string()
                    } else {
                        format!("namespace {ns}")
                    },
                    not_yet()
                );
            }
            let mut headers = Vec::new();
            if a.all_namespaces {
                headers.push("NAMESPACE");
            }
            headers.extend(if a.containers {
                vec!["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
            } else {
                vec!["NAME", "CPU(cores)", "MEMORY(bytes)"]
            });
            let rows = pod_rows(&metrics, a.all_namespaces, a.containers);
            print!("{}", table(&headers, &rows));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_in_kubectl_tops_units() {
        let m = vec![
            json!({"metadata": {"name": "n1"}, "usage": {"cpu": "250000001n", "memory": "1048576Ki"}}),
        ];
        let nodes = vec![
            json!({"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "2", "memory": "4Gi"}}}),
        ];
        assert_eq!(
            node_rows(&m, &nodes),
            [["n1", "251m", "12%", "1024Mi", "25%"]]
        );
        let bare = vec![
            json!({"metadata": {"name": "n1"}}),
            json!({"metadata": {"name": "n2"}}),
        ];
        assert_eq!(node_rows(&m, &bare)[0][2], "<unknown>", "no allocatable");
        assert_eq!(
            node_rows(&m, &bare)[1],
            ["n2", "<unknown>", "<unknown>", "<unknown>", "<unknown>"]
        );
        let p = vec![
            json!({"metadata": {"name": "web", "namespace": "prod"}, "containers": [
            {"name": "a", "usage": {"cpu": "1500000n", "memory": "2048Ki"}},
            {"name": "b", "usage": {"cpu": "500000n", "memory": "4096Ki"}}]}),
        ];
        assert_eq!(pod_rows(&p, false, false), [["web", "2m", "6Mi"]]);
        assert_eq!(
            pod_rows(&p, true, true),
            [
                ["prod", "web", "a", "2m", "2Mi"],
                ["prod", "web", "b", "1m", "4Mi"]
            ]
        );
    }
}
