//! Deletes: one object, or every selected object of a kind (`deletecollection`), with
//! Kubernetes' `DeleteOptions`: propagation (Orphan, Background, Foreground), preconditions on
//! `uid` and `resourceVersion`, a pod's grace period, and dry runs. The ops come from the pure
//! planner [`gc::plan_delete`]; each delete is one write, all or nothing.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::{Value, json};

use super::objects::{key_of, not_found, selected, selectors};
use super::options::DeleteOptions;
use super::path::ResourcePath;
use super::{ApiError, ApiState};
use crate::controller::gc::{self, DeleteRequest, Propagation};
use crate::store::{Key, Op, Outcome, Write};

/// The request's propagation, or the kind's default (Background for every kind served).
fn propagation(opts: &DeleteOptions) -> Propagation {
    opts.propagation.unwrap_or(Propagation::Background)
}

fn request(opts: &DeleteOptions) -> Result<DeleteRequest, ApiError> {
    let resource_version = match &opts.preconditions.resource_version {
        None => None,
        Some(v) => Some(v.parse::<i64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "preconditions.resourceVersion: {v:?} is not a resourceVersion"
            ))
        })?),
    };
    Ok(DeleteRequest {
        resource_version,
        uid: opts.preconditions.uid.clone(),
        grace_seconds: opts.grace_period_seconds,
    })
}

fn writable(rp: &ResourcePath) -> Result<(), ApiError> {
    if !rp.info.user_writable && rp.info.kind != "Node" {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} are written by the agents",
            rp.info.plural
        )));
    }
    Ok(())
}

/// The objects that may go with `obj`: for a Namespace everything in it, otherwise the kinds
/// controllers own in its namespace.
async fn candidates(s: &ApiState, key: &Key) -> Result<Vec<gc::Stored>, ApiError> {
    let mut out = Vec::new();
    if key.kind == "Namespace" {
        for k in crate::manifest::kinds::KINDS
            .iter()
            .filter(|k| k.namespaced)
        {
            out.extend(s.store.list(k.kind, Some(&key.name)).await?.0);
        }
    } else {
        // A cluster-scoped owner's dependents may be in any namespace.
        let ns = (!key.namespace.is_empty()).then_some(key.namespace.as_str());
        for k in gc::DEPENDENT_KINDS {
            out.extend(s.store.list(k, ns).await?.0);
        }
    }
    Ok(out.into_iter().filter_map(gc::Stored::decode).collect())
}

/// The metadata of a stored object.
fn meta_of(obj: &Value) -> Result<ObjectMeta, ApiError> {
    ObjectMeta::deserialize(&obj["metadata"])
        .map_err(|e| ApiError::Internal(format!("stored metadata unreadable: {e}")))
}

/// `DELETE` of one object. Answers 200 with the object when it is gone, 202 with it when it
/// stays marked (finalizers, or foreground propagation), as kube-apiserver does.
pub async fn delete(
    s: &ApiState,
    rp: &ResourcePath,
    opts: &DeleteOptions,
) -> Result<Response, ApiError> {
    writable(rp)?;
    let key = key_of(rp);
    let obj = s.store.get(&key).await?.ok_or_else(|| not_found(rp))?;
    let cands = candidates(s, &key).await?;
    let ops = gc::plan_delete(
        &meta_of(&obj)?,
        key.clone(),
        &cands,
        propagation(opts),
        &request(opts)?,
    );
    let owner_at = ops
        .iter()
        .position(|o| matches!(o, Op::Delete { key: k, .. } if *k == key))
        .expect("the planner deletes the object");
    let mut applied = s.commit_or_dry_run(Write::new(ops), opts.dry_run).await?;
    let a = applied.swap_remove(owner_at);
    let code = match a.outcome {
        Outcome::Deleted => StatusCode::OK,
        _ => StatusCode::ACCEPTED,
    };
    Ok((code, Json(a.object)).into_response())
}

/// `DELETE` of a collection: every object of the kind (in the namespace) the label and field
/// selectors pick, each with its dependents as the policy says, in one write.
pub async fn delete_collection(
    s: &ApiState,
    rp: &ResourcePath,
    pairs: &[(String, String)],
    opts: &DeleteOptions,
) -> Result<Response, ApiError> {
    writable(rp)?;
    if opts.preconditions != Default::default() {
        return Err(ApiError::BadRequest(
            "preconditions name one object; a delete collection cannot take them".into(),
        ));
    }
    let q = pairs.iter().cloned().collect();
    let (l, f) = selectors(&q)?;
    let ns = if rp.info.namespaced {
        rp.namespace.as_deref()
    } else {
        Some("")
    };
    let (all, _) = s.store.list(rp.info.kind, ns).await?;
    let victims: Vec<Value> = all.into_iter().filter(|o| selected(o, &l, &f)).collect();
    let req = request(opts)?;
    let mut ops: Vec<Op> = Vec::new();
    let mut owners: Vec<Key> = Vec::new();
    for v in &victims {
        let key = Key::of(v)?;
        let cands = candidates(s, &key).await?;
        for op in gc::plan_delete(&meta_of(v)?, key.clone(), &cands, propagation(opts), &req) {
            // A dependent may also be selected (or shared): delete it once.
            let dup = match &op {
                Op::Delete { key: k, .. } => ops
                    .iter()
                    .any(|o| matches!(o, Op::Delete { key: k2, .. } if k2 == k)),
                _ => false,
            };
            if !dup {
                ops.push(op);
            }
        }
        owners.push(key);
    }
    let applied = if ops.is_empty() {
        Vec::new()
    } else {
        s.commit_or_dry_run(Write::new(ops.clone()), opts.dry_run)
            .await?
    };
    let items: Vec<Value> = ops
        .iter()
        .zip(applied)
        .filter(|(op, _)| matches!(op, Op::Delete { key, .. } if owners.contains(key)))
        .map(|(_, a)| a.object)
        .collect();
    Ok(Json(json!({
        "apiVersion": rp.info.api_version,
        "kind": format!("{}List", rp.info.kind),
        "metadata": {"resourceVersion": s.store.revision().to_string()},
        "items": items,
    }))
    .into_response())
}

/// `POST .../pods/NAME/eviction` (policy/v1 `Eviction`), which `kubectl drain` uses when the
/// API serves it: the pod is deleted with the Eviction's `deleteOptions` (grace period,
/// preconditions, dry run), answered `201` with a success `Status` as kube-apiserver does.
/// Flotilla serves no PodDisruptionBudget yet (the kind is refused by name), so no budget can
/// forbid an eviction; when it does, this is where the `429 TooManyRequests` belongs.
pub async fn evict(
    s: &ApiState,
    rp: &ResourcePath,
    pairs: &[(String, String)],
    body: &[u8],
) -> Result<Response, ApiError> {
    let v = super::parse_body(body)?;
    match (v["apiVersion"].as_str(), v["kind"].as_str()) {
        (Some("policy/v1" | "policy/v1beta1"), Some("Eviction")) => {}
        (a, k) => {
            return Err(ApiError::BadRequest(format!(
                "expected an Eviction of policy/v1, got kind {:?} of {:?}",
                k.unwrap_or(""),
                a.unwrap_or("")
            )));
        }
    }
    let name = rp.name.as_deref().unwrap_or("");
    if let Some(n) = v["metadata"]["name"].as_str()
        && n != name
    {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    let delete_body = match &v["deleteOptions"] {
        Value::Null => Vec::new(),
        o => serde_json::to_vec(o).map_err(crate::store::StoreError::from)?,
    };
    let opts = DeleteOptions::parse(pairs, &delete_body)?;
    let mut pod = rp.clone();
    pod.sub = None;
    delete(s, &pod, &opts).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})),
    )
        .into_response())
}
