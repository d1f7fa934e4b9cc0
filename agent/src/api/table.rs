//! Server-side printing: a `get`, `list` or `watch` whose `Accept` asks for `as=Table` (what
//! kubectl sends for `kubectl get [-w]`) is answered with a `meta.k8s.io/v1` Table (for a
//! watch, each event's object is a Table of one row), whose columns are the
//! ones `flotilla get` prints (`manifest::printers`); the columns `-o wide` adds have priority
//! 1, so kubectl shows them only then. Each row carries the object's metadata as a
//! `PartialObjectMetadata` (`includeObject=Metadata`, kube-apiserver's default), the whole
//! object (`Object`) or nothing (`None`). `as=PartialObjectMetadata(List)` (client-go's
//! metadata client) answers only each object's metadata. Pure functions of data.

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::ApiError;
use crate::manifest::printers;

/// A view of objects a request's `Accept` asks for in place of the objects themselves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum View {
    /// `as=Table`: rows of printed columns.
    Table(Include),
    /// `as=PartialObjectMetadata` or `PartialObjectMetadataList`: only each object's metadata.
    Metadata,
}

/// The view the request's `Accept` asks for (of `meta.k8s.io`, v1 or v1beta1), taking the
/// media types in the order given; `None` for the objects themselves.
pub fn wanted(headers: &HeaderMap, include: Option<&str>) -> Result<Option<View>, ApiError> {
    let accept = headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|m| m.split(';').map(str::trim).collect::<Vec<&str>>());
    for params in accept {
        if !params.contains(&"g=meta.k8s.io") {
            if params.iter().all(|p| !p.starts_with("as=")) {
                return Ok(None);
            }
            continue;
        }
        if params.contains(&"as=Table") {
            return Ok(Some(View::Table(Include::parse(include)?)));
        }
        if params.contains(&"as=PartialObjectMetadata")
            || params.contains(&"as=PartialObjectMetadataList")
        {
            return Ok(Some(View::Metadata));
        }
    }
    Ok(None)
}

/// An object as `PartialObjectMetadata`.
pub fn metadata_of(o: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": o["metadata"],
    })
}

impl View {
    /// The view of a list of `objects`, with the list's `metadata`.
    pub fn of_list(self, kind: &str, objects: Vec<Value>, metadata: Value) -> Value {
        match self {
            View::Table(include) => table(kind, objects, metadata, include, Utc::now()),
            View::Metadata => json!({
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadataList",
                "metadata": metadata,
                "items": objects.iter().map(metadata_of).collect::<Vec<_>>(),
            }),
        }
    }

    /// The view of one object (a get, or a watch event's object).
    pub fn of_one(self, kind: &str, o: Value) -> Value {
        match self {
            View::Table(include) => {
                let meta = json!({"resourceVersion": o["metadata"]["resourceVersion"]});
                table(kind, vec![o], meta, include, Utc::now())
            }
            View::Metadata => metadata_of(&o),
        }
    }
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
                Include::Metadata => metadata_of(&o),
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
        assert_eq!(wanted(&h, None).unwrap(), None);
        h.insert(
            axum::http::header::ACCEPT,
            HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"),
        );
        assert_eq!(
            wanted(&h, None).unwrap(),
            Some(View::Table(Include::Metadata))
        );
        assert_eq!(
            wanted(&h, Some("Object")).unwrap(),
            Some(View::Table(Include::Object))
        );
        assert!(wanted(&h, Some("Everything")).is_err());
        h.insert(
            axum::http::header::ACCEPT,
            HeaderValue::from_static(
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json",
            ),
        );
        assert_eq!(wanted(&h, None).unwrap(), Some(View::Metadata));
        let l = View::Metadata.of_list(
            "Pod",
            vec![json!({"metadata": {"name": "a"}, "spec": {}})],
            json!({"resourceVersion": "3"}),
        );
        assert_eq!(l["kind"], "PartialObjectMetadataList");
        assert_eq!(
            l["items"][0],
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": "a"}})
        );
        // Plain JSON first: the objects themselves.
        h.insert(
            axum::http::header::ACCEPT,
            HeaderValue::from_static(
                "application/json, application/json;as=Table;v=v1;g=meta.k8s.io",
            ),
        );
        assert_eq!(wanted(&h, None).unwrap(), None);
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
    }
}
