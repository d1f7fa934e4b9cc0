//! `POST /apis/flotilla.io/v1/apply`: create or update many objects in one all-or-nothing write.
//!
//! Every item is validated first and every problem reported (as `items[i].field` causes); only
//! if all are valid, and every namespace they need exists or is in the same request, is one
//! [`Write`] committed. `kubectl apply` is not atomic; this is, so a half-applied file never
//! leaves a cluster in a state nobody wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, read_body};
use crate::manifest::{self, FieldError, kinds};
use crate::store::{Key, Op, Write, new_uid};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyRequest {
    pub items: Vec<Value>,
    /// Namespace for items that name none (the CLI's `-n`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Validate only; write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

pub async fn apply(State(s): State<Arc<ApiState>>, body: Body) -> Result<Json<Value>, ApiError> {
    let bytes = read_body(body).await?;
    super::retry_taken(|| async {
        let req: ApplyRequest = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("apply request: {e}")))?;
        apply_request(&s, req).await
    })
    .await
}

async fn apply_request(s: &ApiState, req: ApplyRequest) -> Result<Json<Value>, ApiError> {
    let default_ns = req.namespace.clone().unwrap_or_else(|| "default".into());

    let mut causes = Vec::new();
    let mut prepared: Vec<(usize, Value)> = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, item) in req.items.into_iter().enumerate() {
        let errs = |es: Vec<FieldError>| {
            es.into_iter()
                .map(move |e| FieldError::new(join(i, &e.path), e.message))
                .collect::<Vec<_>>()
        };
        let mut obj = match manifest::prepare(item) {
            Ok(o) => o,
            Err(es) => {
                causes.extend(errs(es));
                continue;
            }
        };
        let info = kinds::by_kind(obj["kind"].as_str().unwrap_or(""))
            .expect("prepare accepts known kinds only");
        if info.namespaced {
            match (obj["metadata"]["namespace"].as_str(), &req.namespace) {
                (Some(ns), Some(want)) if ns != want => causes.push(FieldError::new(
                    join(i, "metadata.namespace"),
                    format!("{ns:?} does not match the namespace {want:?} of the request"),
                )),
                (Some(_), _) => {}
                (None, _) => obj["metadata"]["namespace"] = Value::from(default_ns.clone()),
            }
        }
        if obj["metadata"]["name"].as_str().unwrap_or("").is_empty() {
            causes.push(FieldError::new(
                join(i, "metadata.name"),
                "required: apply needs a name (generateName is for create)",
            ));
            continue;
        }
        let key = Key::of(&obj)?;
        if let Some(first) = seen.insert(key.clone(), i) {
            causes.push(FieldError::new(
                join(i, "metadata.name"),
                format!("{} {:?} is also items[{first}]", key.kind, key.name),
            ));
        }
        prepared.push((i, obj));
    }

    // Namespaces must exist or be created by this request.
    let created_ns: BTreeSet<&str> = prepared
        .iter()
        .filter(|(_, o)| o["kind"] == "Namespace")
        .filter_map(|(_, o)| o["metadata"]["name"].as_str())
        .collect();
    let mut checked: BTreeMap<String, bool> = BTreeMap::new();
    for (i, o) in &prepared {
        let Some(ns) = o["metadata"]["namespace"].as_str() else {
            continue;
        };
        if created_ns.contains(ns) {
            continue;
        }
        let exists = match checked.get(ns) {
            Some(e) => *e,
            None => {
                let e = s.namespace_exists(ns).await?;
                checked.insert(ns.to_string(), e);
                e
            }
        };
        if !exists {
            causes.push(FieldError::new(
                join(*i, "metadata.namespace"),
                format!("namespace {ns:?} not found"),
            ));
        }
    }
    // ClusterIPs and NodePorts, under the allocation lock until the commit (only when there is
    // a Service to allocate for: other applies need not wait for each other).
    let _alloc = if prepared.iter().any(|(_, o)| o["kind"] == "Service") {
        Some(s.alloc_lock.lock().await)
    } else {
        None
    };
    if causes.is_empty() {
        let mut objs: Vec<&mut Value> = prepared.iter_mut().map(|(_, o)| o).collect();
        let problems = super::services::allocate_in(&s.store, &mut objs).await?;
        for (j, e) in problems {
            let i = prepared[j].0;
            causes.push(FieldError::new(join(i, &e.path), e.message));
        }
    }
    if !causes.is_empty() {
        let n = causes.len();
        let list: Vec<String> = causes.iter().map(ToString::to_string).collect();
        return Err(ApiError::Invalid {
            summary: format!(
                "apply refused, nothing was written ({n} problem{}): {}",
                if n == 1 { "" } else { "s" },
                list.join("; ")
            ),
            causes,
        });
    }

    // Namespaces and configuration before what uses them.
    let rank = |o: &Value| {
        kinds::KINDS
            .iter()
            .position(|k| o["kind"] == k.kind)
            .unwrap_or(usize::MAX)
    };
    prepared.sort_by_key(|(i, o)| (rank(o), *i));
    let order: Vec<usize> = prepared.iter().map(|(i, _)| *i).collect();
    let results: Vec<(Value, &str)> = if req.dry_run {
        prepared
            .into_iter()
            .map(|(_, o)| (o, "unchanged (dry run)"))
            .collect()
    } else {
        let ops = prepared
            .into_iter()
            .map(|(_, object)| Op::Put {
                object,
                uid: new_uid(),
                create: true,
            })
            .collect();
        let applied = s.commit(Write::new(ops)).await?;
        applied
            .into_iter()
            .map(|a| {
                let word = match a.outcome {
                    crate::store::Outcome::Created => "created",
                    crate::store::Outcome::Configured => "configured",
                    crate::store::Outcome::Unchanged => "unchanged",
                    crate::store::Outcome::Deleted => "deleted",
                };
                (a.object, word)
            })
            .collect()
    };
    let mut items: Vec<(usize, Value)> = order
        .into_iter()
        .zip(results)
        .map(|(i, (o, outcome))| {
            (
                i,
                json!({
                    "index": i,
                    "kind": o["kind"],
                    "apiVersion": o["apiVersion"],
                    "namespace": o["metadata"]["namespace"],
                    "name": o["metadata"]["name"],
                    "resourceVersion": o["metadata"]["resourceVersion"],
                    "outcome": outcome,
                }),
            )
        })
        .collect();
    items.sort_by_key(|(i, _)| *i);
    if items.len() > 100 {
        crate::node::memory::release_free_memory();
    }
    Ok(Json(
        json!({"kind": "ApplyResult", "apiVersion": "flotilla.io/v1", "items": items.into_iter().map(|(_, v)| v).collect::<Vec<_>>()}),
    ))
}

fn join(i: usize, path: &str) -> String {
    if path.is_empty() {
        format!("items[{i}]")
    } else {
        format!("items[{i}].{path}")
    }
}
