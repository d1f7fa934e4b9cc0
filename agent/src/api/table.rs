//! Server-side printing: a `get`, `list` or `watch` whose `Accept` asks for `as=Table` (what
//! kubectl sends for `kubectl get [-w]`) is answered with a `meta.k8s.io/v1` Table (for a
//! watch, each event's object is a Table of one row), whose columns are the
//! ones `flotilla get` prints (`manifest::printers`); the columns `-o wide` adds have priority
//! 1, so kubectl shows them only then. Each row carries the object's metadata as a
//! `PartialObjectMetadata` (`includeObject=Metadata`, kube-apiserver's default), the whole
//! object (`Object`) or nothing (`None`). Pure functions of data.

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::ApiError;
use crate::manifest::printers;

/// Whether the request's `Accept` asks for a Table of `meta.k8s.io` (v1 or v1beta1).
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            let params: Vec<&str> = m.split(';').map(str::trim).collect();
            params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
        })
}

/// What each row carries of its object (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn parse(v: Option<&str>) -> Result<Include, ApiError> {
        match v {
            None | Some("") | Some("Metadata") => Ok(Include::Metadata),
            Some("None") => Ok(Include::None),
            Some("Object") => Ok(Include::Object),
            Some(o) => Err(ApiError::BadRequest(format!(
                "includeObject: Unsupported value: {o:?}: supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }
}

/// A Table of `objects`, all of `kind`, with the list's `metadata` (resourceVersion, continue).
pub fn table(
    kind: &str,
    objects: Vec<Value>,
    metadata: Value,
    include: Include,
    now: DateTime<Utc>,
) -> Value {
    let narrow = printers::headers(kind, false).len();
    let columns: Vec<Value> = printers::headers(kind, true)
        .iter()
        .enumerate()
        .map(|(i, h)| {
            json!({
                "name": h,
                "type": "string",
                "format": if i == 0 { "name" } else { "" },
                "description": "",
                "priority": if i < narrow { 0 } else { 1 },
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .into_iter()
        .map(|o| {
            let cells = printers::row(kind, &o, now, true);
            let object = match include {
                Include::None => Value::Null,
                Include::Metadata => json!({
                    "apiVersion": "meta.k8s.io/v1",
                    "kind": "PartialObjectMetadata",
                    "metadata": o["metadata"],
                }),
                Include::Object => o,
            };
            let mut row = json!({"cells": cells});
            if !object.is_null() {
                row["object"] = object;
            }
            row
        })
        .collect();
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "Table",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn kubectls_accept_header_asks_for_a_table() {
        let mut h = HeaderMap::new();
        assert!(!wanted(&h));
        h.insert(
            axum::http::header::ACCEPT,
            HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"),
        );
        assert!(wanted(&h));
        h.insert(
            axum::http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        assert!(!wanted(&h));
    }

    #[test]
    fn a_table_has_flotillas_columns_with_wide_ones_at_priority_one() {
        let now = Utc::now();
        let pod = json!({"metadata": {"name": "web-1", "namespace": "default", "labels": {"a": "b"},
            "creationTimestamp": "2026-12-02T00:00:00Z"},
            "spec": {"containers": [{"name": "c"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.42.0.5",
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 2}]}});
        let t = table(
            "Pod",
            vec![pod],
            json!({"resourceVersion": "9"}),
            Include::Metadata,
            now,
        );
        assert_eq!(t["kind"], "Table");
        let cols: Vec<(&str, i64)> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["priority"].as_i64().unwrap()))
            .collect();
        assert_eq!(
            &cols[..5],
            &[
                ("NAME", 0),
                ("READY", 0),
                ("STATUS", 0),
                ("RESTARTS", 0),
                ("AGE", 0)
            ]
        );
        assert!(cols[5..].iter().all(|(_, p)| *p == 1), "{cols:?}");
        let row = &t["rows"][0];
        assert_eq!(row["cells"][0], "web-1");
        assert_eq!(row["cells"][1], "1/1");
        assert_eq!(row["cells"][2], "Running");
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["metadata"]["labels"]["a"], "b");
        assert_eq!(t["metadata"]["resourceVersion"], "9");
        let t = table(
            "Pod",
            vec![json!({"metadata": {"name": "x"}})],
            json!({}),
            Include::None,
            now,
        );
        assert!(t["rows"][0].get("object").is_none());
        assert!(Include::parse(Some("Everything")).is_err());
    }
}
