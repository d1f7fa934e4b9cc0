//! `flotilla describe KIND NAME`: the object's metadata, spec and status, and its events.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use serde_json::Value;

use super::client::Client;
use super::get::targets;
use super::printers;
use crate::api::path::object_path;
use crate::manifest::kinds;

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Kind, or KIND/NAME.
    pub kind: String,
    pub names: Vec<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

fn map_lines(v: &Value) -> String {
    let parts: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join("\n              ")
    }
}

fn indent(v: &Value) -> String {
    let y = serde_norway::to_string(v).unwrap_or_default();
    y.lines().map(|l| format!("  {l}\n")).collect()
}

/// Renders one object and its events as `describe` prints them. Pure.
pub fn render(o: &Value, events: &[Value], now: chrono::DateTime<chrono::Utc>) -> String {
    let m = &o["metadata"];
    let mut out = String::new();
    out.push_str(&format!(
        "Name:         {}\n",
        m["name"].as_str().unwrap_or("")
    ));
    if let Some(ns) = m["namespace"].as_str() {
        out.push_str(&format!("Namespace:    {ns}\n"));
    }
    out.push_str(&format!("Labels:       {}\n", map_lines(&m["labels"])));
    out.push_str(&format!("Annotations:  {}\n", map_lines(&m["annotations"])));
    out.push_str(&format!(
        "Created:      {}\n",
        m["creationTimestamp"].as_str().unwrap_or("")
    ));
    if let Some(refs) = m["ownerReferences"].as_array() {
        for r in refs {
            out.push_str(&format!(
                "Controlled By: {}/{}\n",
                r["kind"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or("")
            ));
        }
    }
    if o["kind"] == "Pod" {
        out.push_str(&format!(
            "Node:         {}\n",
            o["spec"]["nodeName"].as_str().unwrap_or("<none>")
        ));
        let status = <k8s_openapi::api::core::v1::Pod as serde::Deserialize>::deserialize(o)
            .map(|p| printers::pod_status(&p))
            .unwrap_or_default();
        out.push_str(&format!("Status:       {status}\n"));
        out.push_str(&format!(
            "IP:           {}\n",
            o["status"]["podIP"].as_str().unwrap_or("")
        ));
    }
    for section in ["spec", "data", "status"] {
        let v = &o[section];
        if v.is_null() || v.as_object().is_some_and(|m| m.is_empty()) {
            continue;
        }
        let shown = if o["kind"] == "Secret" && section == "data" {
            // Like kubectl: sizes, not values.
            let sizes: serde_json::Map<String, Value> = v
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Value::from(format!(
                            "{} bytes",
                            v.as_str().map_or(0, |s| s.len() * 3 / 4)
                        )),
                    )
                })
                .collect();
            Value::Object(sizes)
        } else {
            v.clone()
        };
        let title = format!("{}{}", section[..1].to_ascii_uppercase(), &section[1..]);
        out.push_str(&format!("{title}:\n{}", indent(&shown)));
    }
    if events.is_empty() {
        out.push_str("Events:       <none>\n");
    } else {
        out.push_str("Events:\n");
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                let last = if e["lastTimestamp"].is_null() {
                    &e["metadata"]["creationTimestamp"]
                } else {
                    &e["lastTimestamp"]
                };
                vec![
                    e["type"].as_str().unwrap_or("").to_string(),
                    e["reason"].as_str().unwrap_or("").to_string(),
                    printers::age(
                        <k8s_openapi::apimachinery::pkg::apis::meta::v1::Time as serde::Deserialize>::deserialize(last).ok().as_ref(),
                        now,
                    ),
                    e["source"]["component"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                ]
            })
            .collect();
        for line in printers::table(&["Type", "Reason", "Age", "From", "Message"], &rows).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

pub async fn run(cfg: &Path, a: DescribeArgs) -> Result<i32> {
    let client = Client::from_config_file(cfg)?;
    let ns = a.namespace.unwrap_or_else(|| "default".into());
    let events_kind = kinds::by_kind("Event").expect("Event is a kind");
    let mut code = 0;
    let mut first = true;
    for (info, name) in targets(&a.kind, &a.names)? {
        let objs: Vec<Value> = match &name {
            Some(n) => match client
                .get(&object_path(info, Some(&ns), Some(n)), &[])
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
            None => client.get(&object_path(info, Some(&ns), None), &[]).await?["items"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        };
        for o in objs {
            let uid = o["metadata"]["uid"].as_str().unwrap_or("").to_string();
            let ev_ns = o["metadata"]["namespace"].as_str().unwrap_or("default");
            let q = [("fieldSelector", format!("involvedObject.uid={uid}"))];
            let mut events = client
                .get(&object_path(events_kind, Some(ev_ns), None), &q)
                .await?["items"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            events.sort_by(|a, b| {
                a["lastTimestamp"]
                    .as_str()
                    .cmp(&b["lastTimestamp"].as_str())
            });
            if !first {
                println!();
            }
            first = false;
            print!("{}", render(&o, &events, chrono::Utc::now()));
        }
    }
    Ok(code)
}
