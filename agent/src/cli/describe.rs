//! `flotilla describe KIND NAME`: the object's metadata, spec and status, and its events.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;

use super::client::Client;
use super::get::targets;
use super::printers;
use crate::api::path::object_path;
use crate::manifest::{kinds, lifecycle};

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Kind, or KIND/NAME.
    pub kind: String,
    pub names: Vec<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

fn map_lines(m: Option<&std::collections::BTreeMap<String, String>>) -> String {
    let parts: Vec<String> = m
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
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
pub fn render(o: &Value, events: &[Event], now: chrono::DateTime<chrono::Utc>) -> String {
    let m = ObjectMeta::deserialize(&o["metadata"]).unwrap_or_default();
    let mut out = String::new();
    out.push_str(&format!("Name:         {}\n", lifecycle::name(&m)));
    if let Some(ns) = &m.namespace {
        out.push_str(&format!("Namespace:    {ns}\n"));
    }
    out.push_str(&format!("Labels:       {}\n", map_lines(m.labels.as_ref())));
    out.push_str(&format!(
        "Annotations:  {}\n",
        map_lines(m.annotations.as_ref())
    ));
    out.push_str(&format!(
        "Created:      {}\n",
        m.creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default()
    ));
    for r in m.owner_references.iter().flatten() {
        out.push_str(&format!("Controlled By: {}/{}\n", r.kind, r.name));
    }
    if let Ok(p) = Pod::deserialize(o)
        && o["kind"] == "Pod"
    {
        let spec = p.spec.as_ref();
        out.push_str(&format!(
            "Node:         {}\n",
            spec.and_then(|s| s.node_name.as_deref())
                .unwrap_or("<none>")
        ));
        out.push_str(&format!("Status:       {}\n", printers::pod_status(&p)));
        out.push_str(&format!(
            "IP:           {}\n",
            p.status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .unwrap_or("")
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
                let last = e
                    .last_timestamp
                    .as_ref()
                    .or(e.metadata.creation_timestamp.as_ref());
                vec![
                    e.type_.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    printers::age(last, now),
                    e.source
                        .as_ref()
                        .and_then(|s| s.component.clone())
                        .unwrap_or_default(),
                    e.message.clone().unwrap_or_default(),
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
            let m = ObjectMeta::deserialize(&o["metadata"]).unwrap_or_default();
            let q = [(
                "fieldSelector",
                format!("involvedObject.uid={}", lifecycle::uid(&m)),
            )];
            let ev_ns = m.namespace.as_deref().unwrap_or("default");
            let list = client
                .get(&object_path(events_kind, Some(ev_ns), None), &q)
                .await?;
            let mut events: Vec<Event> =
                Vec::<Event>::deserialize(&list["items"]).context("reading the object's events")?;
            events.sort_by(|a, b| a.last_timestamp.cmp(&b.last_timestamp));
            if !first {
                println!();
            }
            first = false;
            print!("{}", render(&o, &events, chrono::Utc::now()));
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describe_shows_metadata_the_pod_and_its_events_as_kubectl_does() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"},
                "creationTimestamp": "2026-12-03T10:00:00Z",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "r1"}]},
            "spec": {"nodeName": "node-2", "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "podIP": "10.42.1.5"}});
        let ev: Event = serde_json::from_value(json!({
            "metadata": {"name": "web-1.a", "namespace": "shop"},
            "involvedObject": {"kind": "Pod", "name": "web-1"},
            "type": "Normal", "reason": "Started", "message": "Started container c",
            "source": {"component": "flotilla-node"},
            "lastTimestamp": "2026-12-03T10:00:00Z"}))
        .unwrap();
        let now = "2026-12-03T10:02:00Z".parse().unwrap();
        let out = render(&pod, &[ev], now);
        for want in [
            "Name:         web-1\n",
            "Namespace:    shop\n",
            "Labels:       app=web\n",
            "Annotations:  <none>\n",
            "Created:      2026-12-03T10:00:00Z\n",
            "Controlled By: ReplicaSet/web-abc\n",
            "Node:         node-2\n",
            "Status:       Running\n",
            "IP:           10.42.1.5\n",
        ] {
            assert!(out.contains(want), "{want:?} in\n{out}");
        }
        let events = out.split("Events:\n").nth(1).unwrap();
        assert!(events.contains("Normal"), "{events}");
        assert!(events.contains("Started container c"), "{events}");
        assert!(events.contains("2m"), "{events}");
        assert!(events.contains("flotilla-node"), "{events}");
    }
}
