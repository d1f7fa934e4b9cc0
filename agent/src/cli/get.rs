//! `flotilla get KIND [NAME...]`: tables like kubectl's, or the objects as JSON or YAML.

use std::path::Path;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::client::Client;
use super::printers;
use crate::api::path::object_path;
use crate::manifest::kinds::{self, KindInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Wide,
    Yaml,
    Json,
    Name,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Kind (pods, po, deploy, svc, ...; several with commas) or KIND/NAME.
    pub kind: String,
    /// Names of objects to show (all when none).
    pub names: Vec<String>,
    /// Namespace (default: "default").
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector (app=web, env in (a,b), !legacy).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector (spec.nodeName=n1, status.phase!=Running).
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Read what the cluster has committed (the leader confirms its lead and this node
    /// catches up first) instead of this node's replica as it is. Fails without a quorum.
    #[arg(long)]
    pub consistent: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
    /// Keep `metadata.managedFields` in -o json|yaml (hidden by default, as kubectl does).
    #[arg(long)]
    pub show_managed_fields: bool,
}

/// Resolves a kind the way kubectl does, with a helpful error.
pub fn resolve_kind(name: &str) -> Result<&'static KindInfo> {
    kinds::by_cli_name(name).ok_or_else(|| {
        let known: Vec<&str> = kinds::KINDS.iter().map(|k| k.plural).collect();
        anyhow::anyhow!(
            "the server doesn't have a resource type {name:?} (known: {})",
            known.join(", ")
        )
    })
}

/// `KIND NAME...` or `KIND/NAME` into (kinds, names).
pub fn targets(kind: &str, names: &[String]) -> Result<Vec<(&'static KindInfo, Option<String>)>> {
    if let Some((k, n)) = kind.split_once('/') {
        if !names.is_empty() {
            bail!("there is no need to give a name after {kind}");
        }
        return Ok(vec![(resolve_kind(k)?, Some(n.to_string()))]);
    }
    let mut out = Vec::new();
    for k in kind.split(',') {
        // A category (`all`) stands for every kind in it, as kubectl expands it.
        let in_category: Vec<&'static KindInfo> = kinds::KINDS
            .iter()
            .filter(|info| info.categories.contains(&k))
            .collect();
        let infos = match kinds::by_cli_name(k) {
            Some(info) => vec![info],
            None if !in_category.is_empty() => in_category,
            None => vec![resolve_kind(k)?],
        };
        for info in infos {
            if names.is_empty() {
                out.push((info, None));
            } else {
                out.extend(names.iter().map(|n| (info, Some(n.clone()))));
            }
        }
    }
    Ok(out)
}

pub async fn run(cfg: &Path, a: GetArgs) -> Result<i32> {
    let client = Client::from_config_file(cfg)?;
    let ns = a.namespace.clone().unwrap_or_else(|| "default".into());
    let mut query = Vec::new();
    if let Some(l) = &a.selector {
        query.push(("labelSelector", l.clone()));
    }
    if let Some(f) = &a.field_selector {
        query.push(("fieldSelector", f.clone()));
    }
    let by_name: Vec<(&str, String)> = if a.consistent {
        query.push(("consistent", "true".into()));
        vec![("consistent", "true".into())]
    } else {
        Vec::new()
    };
    let now = chrono::Utc::now();
    let mut objects: Vec<Value> = Vec::new();
    let mut code = 0;
    let mut tables = Vec::new();
    let targets = targets(&a.kind, &a.names)?;
    let named = targets.iter().any(|(_, n)| n.is_some());
    if named && (a.selector.is_some() || a.field_selector.is_some()) {
        bail!("name cannot be provided when a selector is specified");
    }
    if named && a.all_namespaces {
        bail!("a resource cannot be retrieved by name across all namespaces");
    }
    let multi_kind = targets
        .iter()
        .map(|(k, _)| k.kind)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        > 1;
    for (info, name) in &targets {
        let scope_ns = if a.all_namespaces && name.is_none() {
            None
        } else {
            Some(ns.as_str())
        };
        let items = match name {
            Some(n) => match client
                .get(&object_path(info, scope_ns, Some(n)), &by_name)
                .await
            {
                Ok(o) => vec![o],
                Err(e) => {
                    if super::client::is_not_found(&e) {
                        eprintln!("Error from server (NotFound): {e}");
                    } else {
                        eprintln!("Error from server: {e}");
                    }
                    code = 1;
                    continue;
                }
            },
            None => {
                let mut list = client
                    .get(&object_path(info, scope_ns, None), &query)
                    .await?;
                match list["items"].take() {
                    Value::Array(items) => items,
                    _ => Vec::new(),
                }
            }
        };
        if matches!(a.output, None | Some(Output::Wide)) {
            let wide = a.output == Some(Output::Wide);
            let with_ns = a.all_namespaces && info.namespaced;
            let mut headers = printers::headers(info.kind, wide);
            if with_ns {
                headers.insert(0, "NAMESPACE");
            }
            // Each object is dropped once its row is made: a table of 10,000 pods never holds
            // their JSON and their typed copies at once.
            let rows: Vec<Vec<String>> = items
                .into_iter()
                .map(|mut o| {
                    // No column reads managedFields: not decoding them halves a pod's copy.
                    if let Some(m) = o["metadata"].as_object_mut() {
                        m.remove("managedFields");
                    }
                    let mut r = printers::row(info.kind, &o, now, wide);
                    if multi_kind {
                        r[0] = super::apply::display_name(info.kind, info.api_version, &r[0]);
                    }
                    if with_ns {
                        r.insert(
                            0,
                            o["metadata"]["namespace"]
                                .as_str()
                                .unwrap_or("")
                                .to_string(),
                        );
                    }
                    r
                })
                .collect();
            if !rows.is_empty() {
                tables.push(printers::table(&headers, &rows));
            }
        } else {
            objects.extend(items);
        }
    }
    match a.output {
        None | Some(Output::Wide) => {
            if tables.is_empty() && code == 0 {
                let info = targets[0].0;
                if a.all_namespaces || !info.namespaced {
                    eprintln!("No resources found");
                } else {
                    eprintln!("No resources found in {ns} namespace.");
                }
            }
            print!("{}", tables.join("\n"));
        }
        Some(Output::Name) => {
            for o in &objects {
                let kind = o["kind"].as_str().unwrap_or("");
                let api = o["apiVersion"].as_str().unwrap_or("");
                println!(
                    "{}",
                    super::apply::display_name(
                        kind,
                        api,
                        o["metadata"]["name"].as_str().unwrap_or("")
                    )
                );
            }
        }
        Some(fmt @ (Output::Json | Output::Yaml)) => {
            if !a.show_managed_fields {
                for o in objects.iter_mut() {
                    if let Some(m) = o["metadata"].as_object_mut() {
                        m.remove("managedFields");
                    }
                }
            }
            let single = targets.len() == 1 && targets[0].1.is_some();
            let doc = if single && objects.len() == 1 {
                objects.remove(0)
            } else {
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": objects})
            };
            if fmt == Output::Json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print!("{}", serde_norway::to_string(&doc)?);
            }
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_category_stands_for_its_kinds() {
        let kinds: Vec<&str> = targets("all", &[])
            .unwrap()
            .iter()
            .map(|(k, _)| k.kind)
            .collect();
        for k in [
            "Pod",
            "Service",
            "Deployment",
            "ReplicaSet",
            "DaemonSet",
            "Job",
            "CronJob",
        ] {
            assert!(kinds.contains(&k), "{kinds:?}");
        }
        assert!(!kinds.contains(&"ConfigMap"), "{kinds:?}");
        let mixed = targets("all,configmaps", &[]).unwrap();
        assert_eq!(mixed.last().unwrap().0.kind, "ConfigMap");
        assert!(targets("nonsense", &[]).is_err());
    }
}
