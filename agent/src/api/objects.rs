//! Object handlers: get, list, create, replace, status, scale and delete.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::path::{self, ResourcePath};
use super::{ApiError, ApiState, parse_body, read_body};
use crate::manifest::{self, FieldError};
use crate::selector::{FieldSelector, Selector};
use crate::store::{Key, Op, Write, new_uid};

/// Routes every resource path.
pub async fn dispatch(
    State(s): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Response, ApiError> {
    let rp = path::parse(uri.path()).ok_or_else(|| ApiError::NoRoute(uri.path().to_string()))?;
    let sub = rp.sub.as_deref();
    if method == Method::GET && q.get("consistent").is_some_and(|c| c == "true" || c == "1") {
        s.store.read_barrier().await?;
    }
    match (&method, rp.name.is_some(), sub) {
        (&Method::GET, false, None) => {
            if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                Ok(super::watch::watch(s, rp, &q).await?)
            } else {
                list(&s, &rp, &q).await
            }
        }
        (&Method::GET, true, None | Some("status")) => {
            Ok(Json(get(&s, &rp).await?).into_response())
        }
        (&Method::POST, false, None) => {
            let obj = parse_body(&read_body(body).await?)?;
            let made = super::retry_taken(|| create(&s, &rp, obj.clone())).await?;
            Ok((StatusCode::CREATED, Json(made)).into_response())
        }
        (&Method::PUT, true, None) => {
            let obj = parse_body(&read_body(body).await?)?;
            Ok(Json(super::retry_taken(|| replace(&s, &rp, obj.clone())).await?).into_response())
        }
        (&Method::PUT, true, Some("status")) => {
            let obj = parse_body(&read_body(body).await?)?;
            Ok(Json(put_status(&s, &rp, obj).await?).into_response())
        }
        (&Method::GET, true, Some("scale")) => Ok(Json(get_scale(&s, &rp).await?).into_response()),
        (&Method::PUT, true, Some("scale")) => {
            let obj = parse_body(&read_body(body).await?)?;
            Ok(Json(put_scale(&s, &rp, obj).await?).into_response())
        }
        (&Method::DELETE, true, None) => Ok(Json(delete(&s, &rp, &q).await?).into_response()),
        (&Method::GET, true, Some("log")) if rp.info.kind == "Pod" => {
            let ns = rp.namespace.as_deref().unwrap_or("default");
            let name = rp.name.as_deref().unwrap_or("");
            if let Some(node) = super::pods::elsewhere(&s, ns, name).await? {
                return super::pods::forward(&s, &node, method, &uri, body).await;
            }
            super::pods::logs(&s, ns, name, &q).await
        }
        (&Method::POST | &Method::GET, true, Some("exec")) if rp.info.kind == "Pod" => {
            let ns = rp.namespace.as_deref().unwrap_or("default");
            let name = rp.name.as_deref().unwrap_or("");
            if let Some(node) = super::pods::elsewhere(&s, ns, name).await? {
                return super::pods::forward(&s, &node, method, &uri, body).await;
            }
            super::pods::exec(&s, ns, name, uri.query().unwrap_or(""), body).await
        }
        _ => Err(ApiError::MethodNotAllowed(format!(
            "{method} is not supported on {}",
            uri.path()
        ))),
    }
}

fn key_of(rp: &ResourcePath) -> Key {
    Key::new(
        rp.info.kind,
        if rp.info.namespaced {
            rp.namespace.as_deref().unwrap_or("default")
        } else {
            ""
        },
        rp.name.as_deref().unwrap_or(""),
    )
}

fn not_found(rp: &ResourcePath) -> ApiError {
    ApiError::NotFound(format!(
        "{} {:?} not found",
        rp.info.plural,
        rp.name.as_deref().unwrap_or("")
    ))
}

async fn get(s: &ApiState, rp: &ResourcePath) -> Result<Value, ApiError> {
    let obj = s
        .store
        .get(&key_of(rp))
        .await?
        .ok_or_else(|| not_found(rp))?;
    Ok(if rp.info.kind == "Node" {
        s.node_view(obj)
    } else {
        obj
    })
}

/// Label and field selectors from the query string.
pub fn selectors(q: &HashMap<String, String>) -> Result<(Selector, FieldSelector), ApiError> {
    let l = match q.get("labelSelector") {
        Some(s) => {
            Selector::parse(s).map_err(|e| ApiError::BadRequest(format!("labelSelector: {e}")))?
        }
        None => Selector::default(),
    };
    let f = match q.get("fieldSelector") {
        Some(s) => FieldSelector::parse(s)
            .map_err(|e| ApiError::BadRequest(format!("fieldSelector: {e}")))?,
        None => FieldSelector::default(),
    };
    Ok((l, f))
}

/// Whether an object passes the label and field selectors.
pub fn selected(obj: &Value, l: &Selector, f: &FieldSelector) -> bool {
    f.matches(obj) && (l.is_empty() || l.matches(&labels_of(obj)))
}

/// An object's labels as a map.
pub fn labels_of(obj: &Value) -> std::collections::BTreeMap<String, String> {
    crate::selector::string_map(&obj["metadata"]["labels"])
}

/// Just the labels of an object, parsed without the rest.
#[derive(serde::Deserialize)]
struct LabelsOnly {
    #[serde(default)]
    metadata: MetaLabels,
}

#[derive(serde::Deserialize, Default)]
struct MetaLabels {
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

/// A list response built from the stored JSON text: objects are filtered (labels parsed alone,
/// the whole object only for a field selector) but never re-encoded.
async fn list(
    s: &ApiState,
    rp: &ResourcePath,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let (l, f) = selectors(q)?;
    let ns = if rp.info.namespaced {
        rp.namespace.as_deref()
    } else {
        Some("")
    };
    let (mut items, rev) = s.store.list_raw(rp.info.kind, ns).await?;
    if rp.info.kind == "Node" {
        for raw in items.iter_mut() {
            let obj: Value = serde_json::from_slice(raw).map_err(crate::store::StoreError::from)?;
            *raw = serde_json::to_vec(&s.node_view(obj)).map_err(crate::store::StoreError::from)?;
        }
    }
    let mut body = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 256);
    body.extend_from_slice(
        format!(
            r#"{{"apiVersion":{},"kind":"{}List","metadata":{{"resourceVersion":"{rev}"}},"items":["#,
            Value::from(rp.info.api_version),
            rp.info.kind
        )
        .as_bytes(),
    );
    let mut first = true;
    for raw in &items {
        let keep = if !f.0.is_empty() {
            let obj: Value = serde_json::from_slice(raw).map_err(crate::store::StoreError::from)?;
            selected(&obj, &l, &f)
        } else if !l.is_empty() {
            let lo: LabelsOnly =
                serde_json::from_slice(raw).map_err(crate::store::StoreError::from)?;
            l.matches(&lo.metadata.labels)
        } else {
            true
        };
        if keep {
            if !first {
                body.push(b',');
            }
            first = false;
            body.extend_from_slice(raw);
        }
    }
    body.extend_from_slice(b"]}");
    let big = items.len() > 1000;
    drop(items);
    let resp = (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if big {
        crate::node::memory::release_free_memory();
    }
    Ok(resp)
}

/// Checks a user-written body against the URL and runs it through validation and defaults.
fn prepare_user_object(rp: &ResourcePath, mut obj: Value) -> Result<Value, ApiError> {
    if !rp.info.user_writable {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} are written by the agents",
            rp.info.plural
        )));
    }
    let Some(m) = obj.as_object_mut() else {
        return Err(ApiError::BadRequest("body must be an object".into()));
    };
    m.entry("kind").or_insert_with(|| Value::from(rp.info.kind));
    m.entry("apiVersion")
        .or_insert_with(|| Value::from(rp.info.api_version));
    if obj["kind"] != rp.info.kind {
        return Err(ApiError::BadRequest(format!(
            "body is a {}, but the URL is for {}",
            obj["kind"], rp.info.plural
        )));
    }
    if rp.info.namespaced {
        let url_ns = rp.namespace.as_deref().unwrap_or("default");
        match obj["metadata"]["namespace"].as_str() {
            Some(ns) if ns != url_ns => {
                return Err(ApiError::BadRequest(format!(
                    "the namespace of the object ({ns}) does not match the namespace on the request ({url_ns})"
                )));
            }
            _ => obj["metadata"]["namespace"] = Value::from(url_ns),
        }
    }
    if let (Some(name), Some(body_name)) = (&rp.name, obj["metadata"]["name"].as_str())
        && name != body_name
    {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    manifest::prepare(obj).map_err(|causes| invalid(rp.info.kind, rp.name.as_deref(), causes))
}

/// The 422 error for a refused object, listing every cause.
pub fn invalid(kind: &str, name: Option<&str>, causes: Vec<FieldError>) -> ApiError {
    let list: Vec<String> = causes.iter().map(ToString::to_string).collect();
    ApiError::Invalid {
        summary: format!(
            "{kind} {:?} is invalid: {}",
            name.unwrap_or(""),
            list.join("; ")
        ),
        causes,
    }
}

async fn check_namespace(s: &ApiState, obj: &Value) -> Result<(), ApiError> {
    if let Some(ns) = obj["metadata"]["namespace"].as_str()
        && !s.namespace_exists(ns).await?
    {
        return Err(ApiError::NotFound(format!("namespaces {ns:?} not found")));
    }
    Ok(())
}

async fn create(s: &ApiState, rp: &ResourcePath, obj: Value) -> Result<Value, ApiError> {
    let mut obj = prepare_user_object(rp, obj)?;
    if obj["metadata"]["name"].as_str().unwrap_or("").is_empty() {
        let prefix = obj["metadata"]["generateName"]
            .as_str()
            .unwrap_or("")
            .to_string();
        obj["metadata"]["name"] = Value::from(format!("{prefix}{}", &new_uid()[..5]));
    }
    check_namespace(s, &obj).await?;
    let _alloc = allocation_lock(s, rp).await;
    allocate_one(s, rp, &mut obj).await?;
    let mut r = s
        .commit(Write::new(vec![Op::Create {
            object: obj,
            uid: new_uid(),
        }]))
        .await?;
    Ok(r.remove(0).object)
}

async fn replace(s: &ApiState, rp: &ResourcePath, obj: Value) -> Result<Value, ApiError> {
    if rp.info.kind == "Node" {
        let mut obj = node_user_part(rp, obj)?;
        // The pod CIDR is the agent's: kept as stored.
        if let Some(cur) = s.store.get(&key_of(rp)).await?
            && let Some(cidr) = cur["spec"].get("podCIDR")
        {
            obj["spec"]["podCIDR"] = cidr.clone();
        }
        return update(s, obj).await;
    }
    let mut obj = prepare_user_object(rp, obj)?;
    let _alloc = allocation_lock(s, rp).await;
    allocate_one(s, rp, &mut obj).await?;
    update(s, obj).await
}

/// What users may write of a Node (as `kubectl cordon`, `label` and `taint` do): labels,
/// annotations, `spec.unschedulable` and `spec.taints`. The agent owns the rest.
fn node_user_part(rp: &ResourcePath, obj: Value) -> Result<Value, ApiError> {
    let name = rp.name.as_deref().unwrap_or("");
    if obj["metadata"]["name"] != name {
        return Err(ApiError::BadRequest(format!(
            "metadata.name {} does not match the URL's node {name:?}",
            obj["metadata"]["name"]
        )));
    }
    let mut problems = Vec::new();
    let u = &obj["spec"]["unschedulable"];
    if !(u.is_null() || u.is_boolean()) {
        problems.push(crate::manifest::FieldError {
            path: "spec.unschedulable".into(),
            message: format!("{u} is not true or false"),
        });
    }
    let t = &obj["spec"]["taints"];
    if !(t.is_null() || t.is_array()) {
        problems.push(crate::manifest::FieldError {
            path: "spec.taints".into(),
            message: format!("{t} is not a list"),
        });
    }
    if !problems.is_empty() {
        return Err(invalid("Node", Some(name), problems));
    }
    let mut spec = serde_json::Map::new();
    for (k, v) in obj["spec"].as_object().into_iter().flatten() {
        if ["unschedulable", "taints"].contains(&k.as_str()) && !v.is_null() {
            spec.insert(k.clone(), v.clone());
        }
    }
    let mut meta = serde_json::Map::new();
    for k in ["name", "labels", "annotations", "resourceVersion"] {
        if let Some(v) = obj["metadata"].get(k) {
            meta.insert(k.into(), v.clone());
        }
    }
    Ok(serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec}))
}

/// Writes what users own of an existing object (no create).
async fn update(s: &ApiState, obj: Value) -> Result<Value, ApiError> {
    let mut r = s
        .commit(Write::new(vec![Op::Put {
            object: obj,
            uid: new_uid(),
            create: false,
        }]))
        .await?;
    Ok(r.remove(0).object)
}

/// Held from allocating a Service's ClusterIP and NodePort until its write commits, so two
/// Services written through this node never get the same address. Other kinds allocate
/// nothing and take no lock: holding one across the commit would queue every write of the
/// node behind the previous one's quorum round trip.
async fn allocation_lock<'a>(
    s: &'a ApiState,
    rp: &ResourcePath,
) -> Option<tokio::sync::MutexGuard<'a, ()>> {
    if rp.info.kind == "Service" {
        Some(s.alloc_lock.lock().await)
    } else {
        None
    }
}

/// ClusterIP and NodePorts for a Service being written (a no-op for other kinds).
async fn allocate_one(s: &ApiState, rp: &ResourcePath, obj: &mut Value) -> Result<(), ApiError> {
    let problems = super::services::allocate_in(&s.store, &mut [obj]).await?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(invalid(
            rp.info.kind,
            rp.name.as_deref(),
            problems.into_iter().map(|(_, e)| e).collect(),
        ))
    }
}

async fn put_status(s: &ApiState, rp: &ResourcePath, mut obj: Value) -> Result<Value, ApiError> {
    let key = key_of(rp);
    obj["kind"] = Value::from(key.kind.clone());
    obj["metadata"]["name"] = Value::from(key.name.clone());
    if rp.info.namespaced {
        obj["metadata"]["namespace"] = Value::from(key.namespace.clone());
    }
    let mut r = s
        .commit(Write::new(vec![Op::Status { object: obj }]))
        .await?;
    Ok(r.remove(0).object)
}

fn scalable(rp: &ResourcePath) -> Result<(), ApiError> {
    if matches!(rp.info.kind, "Deployment" | "ReplicaSet") {
        Ok(())
    } else {
        Err(ApiError::NoRoute(format!(
            "{} have no scale subresource",
            rp.info.plural
        )))
    }
}

fn scale_of(obj: &Value) -> Value {
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
        },
        "spec": {"replicas": obj["spec"]["replicas"]},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0)},
    })
}

async fn get_scale(s: &ApiState, rp: &ResourcePath) -> Result<Value, ApiError> {
    scalable(rp)?;
    Ok(scale_of(&get(s, rp).await?))
}

async fn put_scale(s: &ApiState, rp: &ResourcePath, scale: Value) -> Result<Value, ApiError> {
    scalable(rp)?;
    let replicas = scale["spec"]["replicas"].as_i64().ok_or_else(|| {
        invalid(
            "Scale",
            rp.name.as_deref(),
            vec![FieldError::new("spec.replicas", "required: an integer")],
        )
    })?;
    if replicas < 0 {
        return Err(invalid(
            "Scale",
            rp.name.as_deref(),
            vec![FieldError::new(
                "spec.replicas",
                format!("{replicas} must be greater than or equal to 0"),
            )],
        ));
    }
    let mut obj = get(s, rp).await?;
    obj["spec"]["replicas"] = Value::from(replicas);
    // With the client's resourceVersion the write is conditional on it; without one it is
    // not (as `kubectl scale`), and Op::Put keeps whatever status controllers wrote meanwhile.
    match scale["metadata"]["resourceVersion"].as_str() {
        Some(rv) => obj["metadata"]["resourceVersion"] = Value::from(rv),
        None => {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
        }
    }
    Ok(scale_of(&update(s, obj).await?))
}

/// Deletes an object and, unless `propagationPolicy=Orphan`, everything it owns (and, for a
/// Namespace, everything in it) in the same write.
async fn delete(
    s: &ApiState,
    rp: &ResourcePath,
    q: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    if !rp.info.user_writable && rp.info.kind != "Node" {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} are written by the agents",
            rp.info.plural
        )));
    }
    let key = key_of(rp);
    let obj = s.store.get(&key).await?.ok_or_else(|| not_found(rp))?;
    let mut keys = vec![key];
    if q.get("propagationPolicy").map(String::as_str) != Some("Orphan") {
        keys.extend(cascade(s, &obj).await?);
    }
    let ops = keys
        .into_iter()
        .map(|key| Op::Delete {
            key,
            resource_version: None,
        })
        .collect();
    let mut r = s.commit(Write::new(ops)).await?;
    Ok(r.remove(0).object)
}

/// The keys of what goes with `obj` when it is deleted.
async fn cascade(s: &ApiState, obj: &Value) -> Result<Vec<Key>, ApiError> {
    let mut candidates = Vec::new();
    if obj["kind"] == "Namespace" {
        let ns = obj["metadata"]["name"].as_str().unwrap_or("");
        for k in crate::manifest::kinds::KINDS
            .iter()
            .filter(|k| k.namespaced)
        {
            candidates.extend(s.store.list(k.kind, Some(ns)).await?.0);
        }
        return Ok(candidates.iter().filter_map(|o| Key::of(o).ok()).collect());
    }
    for k in crate::controller::gc::DEPENDENT_KINDS {
        let ns = obj["metadata"]["namespace"].as_str();
        candidates.extend(s.store.list(k, ns).await?.0);
    }
    Ok(crate::controller::gc::dependents(obj, &candidates))
}
