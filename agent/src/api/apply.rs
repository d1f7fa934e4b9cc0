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

/// Takes the parameters of a create (`dryRun`, `fieldManager`, `fieldValidation`, `pretty`,
/// `timeout`); the body's `dryRun` is the same as `?dryRun=All`.
pub async fn apply(
    State(s): State<Arc<ApiState>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let pairs = super::options::pairs(uri.query())?;
    super::options::check(super::options::Verb::Create, &pairs)?;
    super::check_media_type(&headers)?;
    let user_agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let mut opts = super::options::WriteOptions::parse(&pairs, "CreateOptions", user_agent)?;
    if super::options::get(&pairs, "fieldManager").is_none() {
        opts.field_manager = "flotilla".into();
    }
    let pretty = super::options::flag(&pairs, "pretty")?;
    let deadline = super::options::timeout(&pairs)?;
    let bytes = read_body(body).await?;
    let work = super::retry_taken(|| async {
        let mut req: ApplyRequest = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("apply request: {e}")))?;
        req.dry_run |= opts.dry_run;
        apply_request(&s, req, &opts).await
    });
    let out = match deadline {
        Some(t) => tokio::time::timeout(t, work)
            .await
            .map_err(|_| ApiError::Timeout(format!("the request did not finish within {t:?}")))??,
        None => work.await?,
    };
    let (json, dropped) = out;
    let resp =
        super::objects::with_warnings(json.into_response(), opts.validation.warnings(&dropped));
    if pretty {
        return super::prettify(resp).await;
    }
    Ok(resp)
}

async fn apply_request(
    s: &ApiState,
    req: ApplyRequest,
    opts: &super::options::WriteOptions,
) -> Result<(Json<Value>, Vec<String>), ApiError> {
    let default_ns = req.namespace.clone().unwrap_or_else(|| "default".into());

    let mut causes = Vec::new();
    let mut dropped = Vec::new();
    let mut prepared: Vec<(usize, Value)> = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, item) in req.items.into_iter().enumerate() {
        let errs = |es: Vec<FieldError>| {
            es.into_iter()
                .map(move |e| FieldError::new(join(i, &e.path), e.message))
                .collect::<Vec<_>>()
        };
        let mut obj = match manifest::prepare_with(item, opts.validation.unknown()) {
            Ok((o, left_out)) => {
                dropped.extend(left_out.iter().map(|p| join(i, p)));
                o
            }
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
            about: None,
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
    let now = crate::store::now_rfc3339();
    let ops = prepared
        .into_iter()
        .map(|(_, mut object)| {
            super::objects::record_manager(&mut object, opts, &now, None);
            Op::Put {
                object,
                uid: new_uid(),
                create: true,
            }
        })
        .collect();
    let w = Write { now, ops };
    // A dry run plans the same write against the store and keeps nothing: conflicts and
    // address claims are checked, and each outcome is what the real apply would say.
    let applied = s.commit_or_dry_run(w, req.dry_run).await?;
    let results: Vec<(Value, String)> = applied
        .into_iter()
        .map(|a| {
            let word = match a.outcome {
                crate::store::Outcome::Created => "created",
                crate::store::Outcome::Configured => "configured",
                crate::store::Outcome::Unchanged => "unchanged",
                crate::store::Outcome::Deleted => "deleted",
            };
            let mut o = a.object;
            if req.dry_run {
                if a.outcome == crate::store::Outcome::Created
                    && let Some(m) = o["metadata"].as_object_mut()
                {
                    m.remove("resourceVersion");
                }
                (o, format!("{word} (server dry run)"))
            } else {
                (o, word.to_string())
            }
        })
        .collect();
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
    Ok((
        Json(
            json!({"kind": "ApplyResult", "apiVersion": "flotilla.io/v1", "items": items.into_iter().map(|(_, v)| v).collect::<Vec<_>>()}),
        ),
        dropped,
    ))
}

fn join(i: usize, path: &str) -> String {
    if path.is_empty() {
        format!("items[{i}]")
    } else {
        format!("items[{i}].{path}")
    }
}
