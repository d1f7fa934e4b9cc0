//! Object handlers: get, list, create, replace, status, scale and delete.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::options::{self, Verb};
use super::path::{self, ResourcePath};
use super::{ApiError, ApiState, parse_body, read_body};
use crate::manifest::selector::{FieldSelector, Selector};
use crate::manifest::{self, FieldError};
use crate::store::{Key, Op, Write, new_uid, now_rfc3339};

/// Routes every resource path. Every query parameter is checked against the verb first
/// ([`options::check`]): honoured, or refused by name.
pub async fn dispatch(
    State(s): State<Arc<ApiState>>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    // The parts stay whole: an exec's connection upgrade lives in their extensions.
    let (mut parts, body) = req.into_parts();
    let (method, uri, headers) = (
        parts.method.clone(),
        parts.uri.clone(),
        parts.headers.clone(),
    );
    let rp = path::parse(uri.path()).ok_or_else(|| ApiError::NoRoute(uri.path().to_string()))?;
    let pairs = options::pairs(uri.query())?;
    let verb = verb_of(&method, &rp, &pairs)?;
    options::check(verb, &pairs)?;
    if matches!(
        verb,
        Verb::Create | Verb::Update | Verb::Delete | Verb::DeleteCollection
    ) {
        super::check_media_type(&headers)?;
    }
    let pretty = options::flag(&pairs, "pretty")?;
    // Streams (watches, followed logs, exec) end on their own terms, not at the deadline.
    let streaming = matches!(verb, Verb::Watch | Verb::Log | Verb::Exec);
    let deadline = if streaming {
        None
    } else {
        options::timeout(&pairs)?
    };
    let work = handle(
        &s, verb, &method, &uri, &headers, &rp, &pairs, body, &mut parts,
    );
    let resp = match deadline {
        Some(t) => tokio::time::timeout(t, work)
            .await
            .map_err(|_| ApiError::Timeout(format!("the request did not finish within {t:?}")))??,
        None => work.await?,
    };
    if pretty && !streaming {
        return super::prettify(resp).await;
    }
    Ok(resp)
}

/// The verb of a request, as kube-apiserver names it.
fn verb_of(
    method: &Method,
    rp: &ResourcePath,
    pairs: &[(String, String)],
) -> Result<Verb, ApiError> {
    let named = rp.name.is_some();
    Ok(match (method, named, rp.sub.as_deref()) {
        (&Method::GET, false, None) => {
            if options::flag(pairs, "watch")? {
                Verb::Watch
            } else {
                Verb::List
            }
        }
        (&Method::GET, true, None | Some("status") | Some("scale")) => Verb::Get,
        (&Method::GET, true, Some("log")) => Verb::Log,
        (&Method::GET | &Method::POST, true, Some("exec")) => Verb::Exec,
        (&Method::GET | &Method::POST, true, Some("attach")) => Verb::Attach,
        (&Method::GET | &Method::POST, true, Some("portforward")) => Verb::PortForward,
        (&Method::POST, false, None) | (&Method::POST, true, Some("eviction")) => Verb::Create,
        (&Method::PUT, true, None | Some("status") | Some("scale")) => Verb::Update,
        (&Method::PATCH, true, _) => Verb::Patch,
        (&Method::DELETE, true, None) => Verb::Delete,
        (&Method::DELETE, false, None) => Verb::DeleteCollection,
        _ => {
            return Err(ApiError::MethodNotAllowed(format!(
                "{method} is not supported on {}",
                rp_path(rp)
            )));
        }
    })
}

fn rp_path(rp: &ResourcePath) -> String {
    let mut p = path::object_path(rp.info, rp.namespace.as_deref(), rp.name.as_deref());
    if let Some(sub) = &rp.sub {
        p.push('/');
        p.push_str(sub);
    }
    p
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    s: &Arc<ApiState>,
    verb: Verb,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    rp: &ResourcePath,
    pairs: &[(String, String)],
    body: Body,
    parts: &mut axum::http::request::Parts,
) -> Result<Response, ApiError> {
    let q: HashMap<String, String> = pairs.iter().cloned().collect();
    let sub = rp.sub.as_deref();
    if matches!(verb, Verb::Get | Verb::List) && options::flag(pairs, "consistent")? {
        s.store.read_barrier().await?;
    }
    let user_agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let write_options = |kind: &str| options::WriteOptions::parse(pairs, kind, user_agent);
    match verb {
        Verb::Watch => {
            let view = super::table::wanted(headers, options::get(pairs, "includeObject"))?;
            Ok(super::watch::watch(s.clone(), rp.clone(), &q, view).await?)
        }
        Verb::List => {
            let view = super::table::wanted(headers, options::get(pairs, "includeObject"))?;
            let resp = list(s, rp, pairs).await?;
            let Some(view) = view else {
                return Ok(resp);
            };
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .map_err(|e| ApiError::Internal(format!("reading the list: {e}")))?;
            let mut l: Value =
                serde_json::from_slice(&bytes).map_err(crate::store::StoreError::from)?;
            let items = match l["items"].take() {
                Value::Array(items) => items,
                _ => Vec::new(),
            };
            Ok(Json(view.of_list(rp.info.kind, items, l["metadata"].take())).into_response())
        }
        Verb::Get => {
            wait_for_revision(s, pairs).await?;
            match sub {
                Some("scale") => Ok(Json(get_scale(s, rp).await?).into_response()),
                None => {
                    let view = super::table::wanted(headers, options::get(pairs, "includeObject"))?;
                    let o = get(s, rp).await?;
                    Ok(match view {
                        Some(v) => Json(v.of_one(rp.info.kind, o)).into_response(),
                        None => Json(o).into_response(),
                    })
                }
                _ => Ok(Json(get(s, rp).await?).into_response()),
            }
        }
        Verb::Create if sub == Some("eviction") && rp.info.kind == "Pod" => {
            super::delete::evict(s, rp, pairs, &read_body(body).await?).await
        }
        Verb::Create => {
            let opts = write_options("CreateOptions")?;
            let obj = parse_body(&read_body(body).await?)?;
            let (made, dropped) = super::retry_taken(|| create(s, rp, obj.clone(), &opts)).await?;
            Ok(with_warnings(
                (StatusCode::CREATED, Json(made)).into_response(),
                opts.validation.warnings(&dropped),
            ))
        }
        Verb::Update => {
            let opts = write_options("UpdateOptions")?;
            let obj = parse_body(&read_body(body).await?)?;
            let (out, dropped) = match sub {
                None => super::retry_taken(|| replace(s, rp, obj.clone(), &opts)).await?,
                Some("status") => (put_status(s, rp, obj, &opts).await?, Vec::new()),
                _ => (put_scale(s, rp, obj, &opts).await?, Vec::new()),
            };
            Ok(with_warnings(
                Json(out).into_response(),
                opts.validation.warnings(&dropped),
            ))
        }
        Verb::Patch => {
            let opts = write_options("PatchOptions")?;
            let t = super::patch::patch_type(
                headers
                    .get(axum::http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
            )?;
            let body = read_body(body).await?;
            let (out, dropped) = if t == super::patch::PatchType::Apply {
                let force = match options::get(pairs, "force") {
                    None => false,
                    Some(v) => options::parse_bool(v).ok_or_else(|| {
                        ApiError::BadRequest(format!("force: invalid boolean {v:?}"))
                    })?,
                };
                let named = options::get(pairs, "fieldManager").is_some();
                server_apply(s, rp, &body, &opts, named, force).await?
            } else {
                if options::get(pairs, "force").is_some() {
                    return Err(options::invalid_options(
                        "PatchOptions",
                        vec![crate::manifest::FieldError::new(
                            "force",
                            "Forbidden: may not be specified for non-apply patch".to_string(),
                        )],
                    ));
                }
                patch(s, rp, t, &body, &opts).await?
            };
            Ok(with_warnings(
                Json(out).into_response(),
                opts.validation.warnings(&dropped),
            ))
        }
        Verb::Delete => {
            let opts = options::DeleteOptions::parse(pairs, &read_body(body).await?)?;
            super::delete::delete(s, rp, &opts).await
        }
        Verb::DeleteCollection => {
            let opts = options::DeleteOptions::parse(pairs, &read_body(body).await?)?;
            super::delete::delete_collection(s, rp, pairs, &opts).await
        }
        Verb::Log if rp.info.kind == "Pod" => {
            let ns = rp.namespace.as_deref().unwrap_or("default");
            let name = rp.name.as_deref().unwrap_or("");
            if let Some(node) = super::pods::elsewhere(s, ns, name).await? {
                return super::pods::forward(s, &node, method.clone(), uri, body).await;
            }
            super::pods::logs(s, ns, name, &q).await
        }
        Verb::Exec | Verb::Attach | Verb::PortForward if rp.info.kind == "Pod" => {
            let ns = rp.namespace.as_deref().unwrap_or("default");
            let name = rp.name.as_deref().unwrap_or("");
            let (spdy, websocket) = (
                super::exec::is_spdy(headers),
                super::exec::is_websocket(headers),
            );
            // The pod's node serves the session (or says why not); any other passes the
            // upgrade on to it.
            if (spdy || websocket)
                && let Some(node) = super::pods::elsewhere(s, ns, name).await?
            {
                let client = parts
                    .extensions
                    .remove::<hyper::upgrade::OnUpgrade>()
                    .ok_or_else(|| {
                        ApiError::BadRequest("this connection cannot be upgraded".into())
                    })?;
                return super::pods::forward_upgrade(s, &node, uri, headers, client).await;
            }
            if spdy {
                // kubectl tries a WebSocket first and, refused, SPDY: the refusal it shows is
                // this one, so it says what the WebSocket's would have.
                match verb {
                    Verb::Exec => drop(super::exec::check(s, ns, name, pairs).await?),
                    Verb::Attach => drop(super::attach::check(s, ns, name, pairs).await?),
                    _ => drop(super::portforward::check(s, ns, name).await?),
                }
                return Err(ApiError::BadRequest(
                    "SPDY/3.1 upgrades are not served: exec, attach and port-forward are WebSockets, as kubectl 1.30+ speaks them".into(),
                ));
            }
            if !websocket {
                return match verb {
                    // A plain POST exec, answered whole (the flotilla CLI's).
                    Verb::Exec => match super::pods::elsewhere(s, ns, name).await? {
                        Some(node) => super::pods::forward(s, &node, method.clone(), uri, body).await,
                        None => super::pods::exec(s, ns, name, uri.query().unwrap_or(""), body).await,
                    },
                    _ => Err(ApiError::BadRequest(
                        "attach and port-forward are served as WebSockets, as kubectl 1.30+ speaks them".into(),
                    )),
                };
            }
            use axum::extract::FromRequestParts;
            let ws = axum::extract::ws::WebSocketUpgrade::from_request_parts(parts, &())
                .await
                .map_err(|e| {
                    ApiError::BadRequest(format!("WebSocket handshake: {}", e.body_text()))
                })?;
            match verb {
                Verb::Exec => super::exec::exec(s, ns, name, pairs, ws).await,
                Verb::Attach => super::attach::attach(s, ns, name, pairs, ws).await,
                _ => super::portforward::portforward(s, ns, name, ws).await,
            }
        }
        _ => Err(ApiError::MethodNotAllowed(format!(
            "{method} is not supported on {}",
            uri.path()
        ))),
    }
}

/// `resourceVersion` on a get: the object as of that revision or later (this replica waits,
/// a few seconds at most, until it has applied that far).
async fn wait_for_revision(s: &ApiState, pairs: &[(String, String)]) -> Result<(), ApiError> {
    match options::get(pairs, "resourceVersion") {
        None | Some("") | Some("0") => Ok(()),
        Some(v) => {
            let rv = parse_rv(v)?;
            at_least(s, rv).await
        }
    }
}

fn parse_rv(v: &str) -> Result<i64, ApiError> {
    v.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("resourceVersion: {v:?} is not a revision")))
}

/// Waits (3 s at most, as kube-apiserver) until this replica holds revision `rv`.
async fn at_least(s: &ApiState, rv: i64) -> Result<(), ApiError> {
    let mut rx = s.store.subscribe();
    let wait = async {
        while *rx.borrow_and_update() < rv {
            if rx.changed().await.is_err() {
                break;
            }
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(3), wait)
        .await
        .is_err()
    {
        return Err(ApiError::Timeout(format!(
            "Too large resource version: {rv}, current: {}",
            s.store.revision()
        )));
    }
    Ok(())
}

pub(super) fn key_of(rp: &ResourcePath) -> Key {
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

pub(super) fn not_found(rp: &ResourcePath) -> ApiError {
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
    crate::manifest::selector::string_map(&obj["metadata"]["labels"])
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
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
}

/// Where a paged list carries on: after this object, of the list read at `rv`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: i64,
    ns: String,
    name: String,
}

fn encode_continue(c: &Continue) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).expect("continue token serialises"))
}

fn decode_continue(t: &str) -> Result<Continue, ApiError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| ApiError::BadRequest("continue: not a continue token of this API".into()))
}

/// The 410 kube-apiserver answers for a continue token whose list has since changed.
fn continue_expired() -> ApiError {
    ApiError::Store(crate::store::StoreError::Expired(
        "The provided continue parameter is too old to display a consistent list result. \
         You can start a new list without the continue parameter."
            .into(),
    ))
}

/// A list response built from the stored JSON text: objects are filtered (labels parsed alone,
/// the whole object only for a field selector) but never re-encoded.
///
/// `limit` and `continue` page it: each page is the objects after the last one of the page
/// before, and a page is served only while the kind has not changed since the first page was
/// read, so the pages together are exactly the list at the first page's revision (otherwise
/// 410, as kube-apiserver once that revision is compacted). `resourceVersion` with
/// `resourceVersionMatch=NotOlderThan` (the default for a number) waits until this replica
/// holds that revision; `Exact` serves only a list unchanged since it. Without a
/// `resourceVersion` the list is this replica's latest (see docs/DECISIONS.md: reads are
/// local; `consistent=true` asks the leader first).
async fn list(
    s: &ApiState,
    rp: &ResourcePath,
    pairs: &[(String, String)],
) -> Result<Response, ApiError> {
    let q: HashMap<String, String> = pairs.iter().cloned().collect();
    let (l, f) = selectors(&q)?;
    let limit = match options::get(pairs, "limit") {
        None | Some("") => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => Some(n as usize),
            Ok(_) => None,
            Err(_) => {
                return Err(ApiError::BadRequest(format!(
                    "limit: {v:?} is not a number"
                )));
            }
        },
    };
    let cont = match options::get(pairs, "continue") {
        None | Some("") => None,
        Some(t) => Some(decode_continue(t)?),
    };
    let rv = options::get(pairs, "resourceVersion").filter(|v| !v.is_empty());
    let rv_match = options::get(pairs, "resourceVersionMatch").filter(|v| !v.is_empty());
    let topics = [rp.info.kind];
    match (rv, rv_match, &cont) {
        (Some(_), _, Some(_)) => {
            return Err(ApiError::BadRequest(
                "resourceVersion: specifying resource version is not allowed when using continue"
                    .into(),
            ));
        }
        (None, Some(m), _) => {
            return Err(ApiError::BadRequest(format!(
                "resourceVersionMatch: {m:?} is forbidden unless resourceVersion is provided"
            )));
        }
        (Some(v), m, None) => {
            let n = parse_rv(v)?;
            match m {
                None | Some("NotOlderThan") => at_least(s, n).await?,
                Some("Exact") if n == 0 => {
                    return Err(ApiError::BadRequest(
                        "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\""
                            .into(),
                    ));
                }
                Some("Exact") => {
                    at_least(s, n).await?;
                    if !s.store.unchanged_since(&topics, n) {
                        return Err(ApiError::Store(crate::store::StoreError::Expired(format!(
                            "The resourceVersion for the provided list is too old: {} changed after {n}",
                            rp.info.plural
                        ))));
                    }
                }
                Some(other) => {
                    return Err(ApiError::BadRequest(format!(
                        "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                    )));
                }
            }
        }
        _ => {}
    }
    let ns = if rp.info.namespaced {
        rp.namespace.as_deref()
    } else {
        Some("")
    };
    let (mut items, rev) = s.store.list_raw(rp.info.kind, ns).await?;
    let list_rev = match (&cont, rv_match) {
        (Some(c), _) => {
            if !s.store.unchanged_since(&topics, c.rv) {
                return Err(continue_expired());
            }
            c.rv
        }
        (None, Some("Exact")) => rv.and_then(|v| v.parse().ok()).unwrap_or(rev),
        _ => rev,
    };
    if rp.info.kind == "Node" {
        for raw in items.iter_mut() {
            let obj: Value = serde_json::from_slice(raw).map_err(crate::store::StoreError::from)?;
            *raw = serde_json::to_vec(&s.node_view(obj)).map_err(crate::store::StoreError::from)?;
        }
    }
    let mut body = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 256);
    let mut kept = 0usize;
    let mut cut = false;
    let mut last_key: Option<(String, String)> = None;
    for raw in &items {
        // Only what a field selector or a page boundary needs is parsed.
        let needs_key = cont.is_some() || limit.is_some();
        // A page boundary needs only the name: the metadata is parsed alone (the rest of
        // the object is skipped, not built), as a label selector does.
        let (obj, key, meta): (Option<Value>, Option<(String, String)>, Option<MetaLabels>) =
            if !f.0.is_empty() {
                let obj: Value =
                    serde_json::from_slice(raw).map_err(crate::store::StoreError::from)?;
                let key = (
                    obj["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
                );
                (Some(obj), Some(key), None)
            } else if needs_key || !l.is_empty() {
                let lo: LabelsOnly =
                    serde_json::from_slice(raw).map_err(crate::store::StoreError::from)?;
                let key = (lo.metadata.namespace.clone(), lo.metadata.name.clone());
                (None, Some(key), Some(lo.metadata))
            } else {
                (None, None, None)
            };
        if let (Some(c), Some((ns, name))) = (&cont, &key)
            && (ns.as_str(), name.as_str()) <= (c.ns.as_str(), c.name.as_str())
        {
            continue;
        }
        let keep = match (&obj, &meta) {
            (Some(o), _) => selected(o, &l, &f),
            (None, Some(m)) => l.is_empty() || l.matches(&m.labels),
            (None, None) => true,
        };
        if !keep {
            continue;
        }
        if limit.is_some_and(|n| kept == n) {
            // One more is selected: the page ends before it.
            cut = true;
            break;
        }
        if kept > 0 {
            body.push(b',');
        }
        kept += 1;
        body.extend_from_slice(raw);
        last_key = key;
    }
    let token = match (cut, last_key) {
        (true, Some((ns, name))) => Some(encode_continue(&Continue {
            rv: list_rev,
            ns,
            name,
        })),
        _ => None,
    };
    let mut head = format!(
        r#"{{"apiVersion":{},"kind":"{}List","metadata":{{"resourceVersion":"{list_rev}""#,
        Value::from(rp.info.api_version),
        rp.info.kind
    );
    if let Some(t) = token {
        head.push_str(&format!(r#","continue":"{t}""#));
    }
    head.push_str(r#"},"items":["#);
    let mut out = Vec::with_capacity(head.len() + body.len() + 2);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(b"]}");
    drop(body);
    let big = items.len() > 1000;
    drop(items);
    let resp = (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response();
    if big {
        crate::node::memory::release_free_memory();
    }
    Ok(resp)
}

/// `resp` with a `Warning` header for each of `warnings`.
pub fn with_warnings(mut resp: Response, warnings: Vec<String>) -> Response {
    for w in warnings {
        if let Ok(v) = axum::http::HeaderValue::from_str(&w) {
            resp.headers_mut().append(axum::http::header::WARNING, v);
        }
    }
    resp
}

/// Checks a user-written body against the URL and runs it through validation and defaults;
/// returns it with the unknown fields `unknown` let it leave out.
fn prepare_user_object(
    rp: &ResourcePath,
    mut obj: Value,
    unknown: manifest::Unknown,
) -> Result<(Value, Vec<String>), ApiError> {
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
    // A create names its object in the body.
    let name = rp
        .name
        .clone()
        .or_else(|| obj["metadata"]["name"].as_str().map(String::from));
    manifest::prepare_with(obj, unknown)
        .map_err(|causes| invalid(rp.info.kind, name.as_deref(), causes))
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
        about: Some((kind.to_string(), name.unwrap_or("").to_string())),
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

async fn create(
    s: &ApiState,
    rp: &ResourcePath,
    obj: Value,
    opts: &options::WriteOptions,
) -> Result<(Value, Vec<String>), ApiError> {
    let (mut obj, dropped) = prepare_user_object(rp, obj, opts.validation.unknown())?;
    if obj["metadata"]["name"].as_str().unwrap_or("").is_empty() {
        let prefix = obj["metadata"]["generateName"]
            .as_str()
            .unwrap_or("")
            .to_string();
        obj["metadata"]["name"] = Value::from(format!("{prefix}{}", &new_uid()[..5]));
    }
    check_namespace(s, &obj).await?;
    let now = now_rfc3339();
    track_update(rp, None, &mut obj, opts, &now, None);
    let _alloc = allocation_lock(s, rp).await;
    allocate_one(s, rp, &mut obj).await?;
    let w = Write {
        now,
        ops: vec![Op::Create {
            object: obj,
            uid: new_uid(),
        }],
    };
    let mut r = s.commit_or_dry_run(w, opts.dry_run).await?;
    let mut made = r.remove(0).object;
    if opts.dry_run {
        // Nothing was stored: a dry-run create has no revision (as kube-apiserver answers).
        if let Some(m) = made["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
    }
    Ok((made, dropped))
}

/// Records the writer in `metadata.managedFields` (its entry only; the store merges it with the
/// entries of the other managers). What a client sent there is replaced: managers are the
/// API's record of who wrote, and field sets come with server-side apply.
pub fn record_manager(
    obj: &mut Value,
    opts: &options::WriteOptions,
    now: &str,
    subresource: Option<&str>,
) {
    if let Some(all) = &opts.managed {
        obj["metadata"]["managedFields"] = Value::Array(all.clone());
        return;
    }
    let mut entry = json!({
        "manager": opts.field_manager,
        "operation": "Update",
        "apiVersion": obj["apiVersion"],
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": {},
    });
    if let Some(sub) = subresource {
        entry["subresource"] = Value::from(sub);
    }
    obj["metadata"]["managedFields"] = json!([entry]);
}

async fn replace(
    s: &ApiState,
    rp: &ResourcePath,
    obj: Value,
    opts: &options::WriteOptions,
) -> Result<(Value, Vec<String>), ApiError> {
    if rp.info.kind == "Node" {
        let mut obj = node_user_part(rp, obj)?;
        // The pod CIDR is the agent's: kept as stored.
        if let Some(cur) = s.store.get(&key_of(rp)).await?
            && let Some(cidr) = cur["spec"].get("podCIDR")
        {
            obj["spec"]["podCIDR"] = cidr.clone();
        }
        return Ok((update(s, rp, obj, opts, None).await?, Vec::new()));
    }
    let (mut obj, dropped) = prepare_user_object(rp, obj, opts.validation.unknown())?;
    let _alloc = allocation_lock(s, rp).await;
    allocate_one(s, rp, &mut obj).await?;
    Ok((update(s, rp, obj, opts, None).await?, dropped))
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

/// PATCH: the patch applied to the stored object (or its status, or its scale) and written
/// as an update guarded by the stored `resourceVersion`; when another write came between, the
/// patch is applied again to the newer object (unless the patch itself names a version).
async fn patch(
    s: &ApiState,
    rp: &ResourcePath,
    t: super::patch::PatchType,
    body: &[u8],
    opts: &options::WriteOptions,
) -> Result<(Value, Vec<String>), ApiError> {
    let mut tries = 0;
    loop {
        let stored = s
            .store
            .get(&key_of(rp))
            .await?
            .ok_or_else(|| not_found(rp))?;
        let mut doc = match rp.sub.as_deref() {
            Some("scale") => scale_of(&stored),
            _ => stored.clone(),
        };
        let before = doc["metadata"]["resourceVersion"].clone();
        let schema = match rp.sub.as_deref() {
            Some("scale") => None,
            _ => Some(rp.info.schema),
        };
        super::patch::apply(t, &mut doc, body, schema)?;
        let pinned = doc["metadata"]["resourceVersion"] != before;
        super::patch::keep_identity(&mut doc, &stored);
        let r = match rp.sub.as_deref() {
            None => super::retry_taken(|| replace(s, rp, doc.clone(), opts)).await,
            Some("status") => put_status(s, rp, doc, opts).await.map(|v| (v, Vec::new())),
            Some("scale") => put_scale(s, rp, doc, opts).await.map(|v| (v, Vec::new())),
            Some(other) => {
                return Err(ApiError::MethodNotAllowed(format!(
                    "PATCH is not supported on {}/{other}",
                    rp.info.plural
                )));
            }
        };
        match r {
            Err(ApiError::Store(crate::store::StoreError::Conflict { .. }))
                if !pinned && tries < 5 =>
            {
                tries += 1;
            }
            r => return r,
        }
    }
}

/// Server-side apply (`application/apply-patch+yaml`): the manager's configuration merged into
/// the stored object (or made into a new one) with [`crate::manifest::managed::apply`], which
/// answers the fields each manager owns and refuses a field another manager owns with another
/// value (409, one cause per field) unless `force`; then written as a create or an update,
/// through the same checks, retried when another write came between.
async fn server_apply(
    s: &ApiState,
    rp: &ResourcePath,
    body: &[u8],
    opts: &options::WriteOptions,
    manager_named: bool,
    force: bool,
) -> Result<(Value, Vec<String>), ApiError> {
    if !manager_named {
        return Err(options::invalid_options(
            "PatchOptions",
            vec![crate::manifest::FieldError::new(
                "fieldManager",
                "Required value: is required for apply patch".to_string(),
            )],
        ));
    }
    let config: Value = serde_norway::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::BadRequest(
            "an apply patch must be an object (the manager's whole configuration)".into(),
        ));
    }
    let api_version = rp.info.api_version.to_string();
    for (field, want) in [("apiVersion", api_version.as_str()), ("kind", rp.info.kind)] {
        if config[field].as_str() != Some(want) {
            return Err(ApiError::BadRequest(format!(
                "{field} {} in the apply patch does not match the URL's {want:?}",
                config[field]
            )));
        }
    }
    let name = rp.name.as_deref().unwrap_or("");
    if config["metadata"]["name"].as_str() != Some(name) {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({}) does not match the name on the URL ({name:?})",
            config["metadata"]["name"]
        )));
    }
    let mut tries = 0;
    loop {
        let stored = s.store.get(&key_of(rp)).await?;
        let now = now_rfc3339();
        let who = crate::manifest::managed::Applier {
            manager: &opts.field_manager,
            api_version: &api_version,
            now: &now,
            force,
        };
        let schemas = crate::manifest::schema::schemas();
        let mut merged = crate::manifest::managed::apply(
            schemas,
            Some(rp.info.schema),
            stored.as_ref(),
            &config,
            &who,
        )
        .map_err(|e| match e {
            crate::manifest::managed::ApplyError::Conflicts(c) => apply_conflicts(rp, &c),
            crate::manifest::managed::ApplyError::Merge(e) => ApiError::BadRequest(format!(
                "the apply patch does not merge into the object: {e}"
            )),
        })?;
        let managed = merged["metadata"]["managedFields"].as_array().cloned();
        let opts = options::WriteOptions {
            managed,
            ..opts.clone()
        };
        let r = match &stored {
            None => create(s, rp, merged, &opts).await,
            Some(st) => {
                super::patch::keep_identity(&mut merged, st);
                super::retry_taken(|| replace(s, rp, merged.clone(), &opts)).await
            }
        };
        match r {
            Err(ApiError::Store(
                crate::store::StoreError::Conflict { .. }
                | crate::store::StoreError::AlreadyExists { .. },
            )) if tries < 5 => tries += 1,
            r => return r,
        }
    }
}

/// kube-apiserver's 409 for an apply's conflicts: one cause per field, and the message
/// kubectl prints with its advice.
fn apply_conflicts(
    rp: &ResourcePath,
    conflicts: &[crate::manifest::managed::Conflict],
) -> ApiError {
    let lines: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "- {}: {}",
                c.message(),
                crate::manifest::managed::display(&c.path)
            )
        })
        .collect();
    let n = conflicts.len();
    ApiError::ApplyConflict {
        message: format!(
            "Apply failed with {n} conflict{}: {}",
            if n == 1 { "" } else { "s" },
            if n == 1 {
                format!(
                    "{}: {}",
                    conflicts[0].message(),
                    crate::manifest::managed::display(&conflicts[0].path)
                )
            } else {
                format!("\n{}", lines.join("\n"))
            }
        ),
        causes: conflicts
            .iter()
            .map(|c| (c.message(), crate::manifest::managed::display(&c.path)))
            .collect(),
        about: (
            rp.info.plural.to_string(),
            rp.name.clone().unwrap_or_default(),
        ),
    }
}

/// Writes what users own of an existing object (no create), with the fields it changed owned
/// by its manager ([`track_update`]).
async fn update(
    s: &ApiState,
    rp: &ResourcePath,
    obj: Value,
    opts: &options::WriteOptions,
    subresource: Option<&str>,
) -> Result<Value, ApiError> {
    // A Node's user part is only part of it: its managers are recorded, not its fields.
    let track = opts.managed.is_none() && rp.info.kind != "Node";
    let pinned = obj["metadata"]["resourceVersion"].is_string();
    let mut tries = 0;
    loop {
        let now = now_rfc3339();
        let mut o = obj.clone();
        if track {
            let before = s.store.get(&key_of(rp)).await?;
            track_update(rp, before.as_ref(), &mut o, opts, &now, subresource);
            // Unless the client pinned a version, the write is conditional on the one the
            // fields were compared with, and tried again after another write came between
            // (which would otherwise be counted as this manager's).
            if !pinned && let Some(rv) = before.as_ref().map(|b| &b["metadata"]["resourceVersion"])
            {
                o["metadata"]["resourceVersion"] = rv.clone();
            }
        } else {
            record_manager(&mut o, opts, &now, subresource);
        }
        let w = Write {
            now,
            ops: vec![Op::Put {
                object: o,
                uid: new_uid(),
                create: false,
            }],
        };
        match s.commit_or_dry_run(w, opts.dry_run).await {
            Err(ApiError::Store(crate::store::StoreError::Conflict { .. }))
                if track && !pinned && tries < 5 =>
            {
                tries += 1;
            }
            r => return Ok(r?.remove(0).object),
        }
    }
}

/// `metadata.managedFields` after a create or update by this request's manager: the fields it
/// changed from `before` (None: it creates the object) become its own and leave the other
/// managers' sets (`managed::updated`); a server-side apply brings its whole list instead.
fn track_update(
    rp: &ResourcePath,
    before: Option<&Value>,
    obj: &mut Value,
    opts: &options::WriteOptions,
    now: &str,
    subresource: Option<&str>,
) {
    if opts.managed.is_some() {
        return record_manager(obj, opts, now, subresource);
    }
    let who = crate::manifest::managed::Updater {
        manager: &opts.field_manager,
        api_version: rp.info.api_version,
        now,
        subresource,
    };
    let schemas = crate::manifest::schema::schemas();
    let root = Some(rp.info.schema);
    let stored_status = before.and_then(|b| b.get("status"));
    let entries = if subresource.is_none() && before.is_some() && obj.get("status") != stored_status
    {
        // An update of the object keeps the stored status: its fields are compared on that.
        let mut view = obj.clone();
        match (stored_status, view.as_object_mut()) {
            (Some(st), _) => view["status"] = st.clone(),
            (None, Some(m)) => drop(m.remove("status")),
            (None, None) => {}
        }
        crate::manifest::managed::updated(schemas, root, before, &view, &who)
    } else {
        crate::manifest::managed::updated(schemas, root, before, obj, &who)
    };
    obj["metadata"]["managedFields"] = Value::Array(entries);
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

async fn put_status(
    s: &ApiState,
    rp: &ResourcePath,
    mut obj: Value,
    opts: &options::WriteOptions,
) -> Result<Value, ApiError> {
    let key = key_of(rp);
    obj["kind"] = Value::from(key.kind.clone());
    obj["metadata"]["name"] = Value::from(key.name.clone());
    if rp.info.namespaced {
        obj["metadata"]["namespace"] = Value::from(key.namespace.clone());
    }
    let now = now_rfc3339();
    record_manager(&mut obj, opts, &now, Some("status"));
    let w = Write {
        now,
        ops: vec![Op::Status { object: obj }],
    };
    let mut r = s.commit_or_dry_run(w, opts.dry_run).await?;
    Ok(r.remove(0).object)
}

fn scalable(rp: &ResourcePath) -> Result<(), ApiError> {
    if rp.info.subresources.contains(&"scale") {
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

async fn put_scale(
    s: &ApiState,
    rp: &ResourcePath,
    scale: Value,
    opts: &options::WriteOptions,
) -> Result<Value, ApiError> {
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
    Ok(scale_of(&update(s, rp, obj, opts, Some("scale")).await?))
}
