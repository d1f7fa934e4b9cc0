//! OpenAPI documents of the served kinds: `/openapi/v3` (an index of group-versions, each
//! document at its own path) and `/openapi/v2` (one JSON document), built from the same
//! schemas decoding checks against ([`crate::manifest::schema`]).
//!
//! kubectl reads v3: `explain` finds a kind's schema by its `x-kubernetes-group-version-kind`,
//! and before `apply`/`create` it looks for the `fieldValidation` parameter on the kind's
//! PATCH operation; when it is there, kubectl leaves validation to the server (which judges
//! strictly, naming every field) instead of fetching the v2 document as protobuf.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::manifest::kinds::{KINDS, KindInfo, REVIEWS};
use crate::manifest::schema::{self, REF_PREFIX};

/// Query parameters, as kube-apiserver documents them, by the operations that take them.
fn query_param(name: &str, kind: &str, what: &str) -> Value {
    json!({"name": name, "in": "query", "description": what, "schema": {"type": kind, "uniqueItems": true}})
}

fn write_params() -> Vec<Value> {
    vec![
        query_param(
            "dryRun",
            "string",
            "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
        ),
        query_param(
            "fieldManager",
            "string",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        query_param(
            "fieldValidation",
            "string",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict (the default)",
        ),
    ]
}

fn list_params() -> Vec<Value> {
    vec![
        query_param(
            "labelSelector",
            "string",
            "A selector to restrict the list of returned objects by their labels.",
        ),
        query_param(
            "fieldSelector",
            "string",
            "A selector to restrict the list of returned objects by their fields.",
        ),
        query_param(
            "limit",
            "integer",
            "limit is a maximum number of responses to return for a list call.",
        ),
        query_param(
            "continue",
            "string",
            "The continue option should be set when retrieving more results from the server.",
        ),
        query_param(
            "resourceVersion",
            "string",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
        ),
        query_param(
            "timeoutSeconds",
            "integer",
            "Timeout for the list/watch call.",
        ),
        query_param(
            "watch",
            "boolean",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
        ),
    ]
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": format!("{name} of the resource"), "schema": {"type": "string", "uniqueItems": true}})
}

fn gvk(k: &KindInfo) -> Value {
    json!({"group": k.group(), "version": k.version(), "kind": k.kind})
}

fn op(k: &KindInfo, action: &str, params: Vec<Value>, schema: Option<&str>) -> Value {
    let mut o = json!({
        "operationId": format!("{action}{}", k.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(k),
        "parameters": params,
        "responses": {"200": {"description": "OK"}, "401": {"description": "Unauthorized"}},
    });
    if let Some(def) = schema {
        let body = json!({"content": {"application/json": {"schema": {"$ref": format!("{REF_PREFIX}{def}")}}}});
        if matches!(action, "post" | "put" | "patch") {
            o["requestBody"] = body.clone();
        }
        if action != "list" && action != "deletecollection" {
            o["responses"]["200"] = json!({"description": "OK"});
            o["responses"]["200"]["content"] = body["content"].clone();
        }
    }
    o
}

/// The paths of one kind: its collection and its objects, namespaced or not.
fn kind_paths(k: &KindInfo, def: Option<&str>, paths: &mut Map<String, Value>) {
    let base = if k.namespaced {
        format!("{}/namespaces/{{namespace}}/{}", k.api_prefix(), k.plural)
    } else {
        format!("{}/{}", k.api_prefix(), k.plural)
    };
    let mut scope = Vec::new();
    if k.namespaced {
        scope.push(path_param("namespace"));
    }
    let with = |mut extra: Vec<Value>, first: &[Value]| {
        let mut v = first.to_vec();
        v.append(&mut extra);
        v
    };
    let mut collection = Map::new();
    if REVIEWS.contains(k) {
        // Created and answered, nothing else.
        collection.insert(
            "post".into(),
            op(k, "post", with(write_params(), &scope), def),
        );
        paths.insert(base, Value::Object(collection));
        return;
    }
    collection.insert(
        "get".into(),
        op(k, "list", with(list_params(), &scope), def),
    );
    let mut item = Map::new();
    let mut named = scope.clone();
    named.push(path_param("name"));
    item.insert("get".into(), op(k, "get", named.clone(), def));
    if k.user_writable {
        collection.insert(
            "post".into(),
            op(k, "post", with(write_params(), &scope), def),
        );
        collection.insert(
            "delete".into(),
            op(k, "deletecollection", with(list_params(), &scope), def),
        );
        item.insert(
            "put".into(),
            op(k, "put", with(write_params(), &named), def),
        );
        let mut patch = with(write_params(), &named);
        patch.push(query_param(
            "force",
            "boolean",
            "Force is going to \"force\" Apply requests.",
        ));
        item.insert("patch".into(), op(k, "patch", patch, def));
        item.insert(
            "delete".into(),
            op(k, "delete", with(write_params(), &named), def),
        );
    }
    paths.insert(base.clone(), Value::Object(collection));
    paths.insert(format!("{base}/{{name}}"), Value::Object(item));
}

/// Every definition `roots` lead to, by name.
fn reachable(defs: &Map<String, Value>, roots: &[&str]) -> BTreeSet<String> {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    out.push(r.trim_start_matches(REF_PREFIX).to_string());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        if let Some(s) = defs.get(&d) {
            refs(s, &mut todo);
        }
    }
    seen
}

/// The definitions of `kinds` and what they use, each kind's marked with its GVK.
fn components(kinds: &[&KindInfo]) -> Map<String, Value> {
    let s = schema::schemas();
    let roots: Vec<&str> = kinds
        .iter()
        .filter_map(|k| s.of(k).map(|(name, _)| name))
        .collect();
    let mut out = Map::new();
    for name in reachable(&s.defs, &roots) {
        let Some(def) = s.defs.get(&name) else {
            continue;
        };
        let mut def = def.clone();
        let marks: Vec<Value> = kinds
            .iter()
            .filter(|k| k.schema == name)
            .map(|k| gvk(k))
            .collect();
        if !marks.is_empty() {
            def["x-kubernetes-group-version-kind"] = Value::Array(marks);
        }
        out.insert(name, def);
    }
    out
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": super::discovery::GIT_VERSION})
}

/// The v3 document of one group-version (`v1`, `apps/v1`).
fn v3_document(group_version: &str) -> Option<Value> {
    let kinds: Vec<&KindInfo> = KINDS
        .iter()
        .chain(REVIEWS)
        .filter(|k| k.api_version == group_version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let s = schema::schemas();
    let mut paths = Map::new();
    for k in &kinds {
        kind_paths(k, s.of(k).map(|(name, _)| name), &mut paths);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {"schemas": components(&kinds)},
    }))
}

/// A document's bytes and its hash (clients cache by it).
struct Doc {
    bytes: Vec<u8>,
    hash: String,
}

impl Doc {
    fn of(v: &Value) -> Doc {
        let bytes = serde_json::to_vec(v).expect("documents serialise");
        let hash = hex::encode_upper(Sha256::digest(&bytes));
        Doc { bytes, hash }
    }
}

/// The v3 documents by their path under `/openapi/v3/` (`api/v1`, `apis/apps/v1`).
static V3: LazyLock<BTreeMap<String, Doc>> = LazyLock::new(|| {
    let mut gvs: Vec<&str> = KINDS.iter().chain(REVIEWS).map(|k| k.api_version).collect();
    gvs.sort();
    gvs.dedup();
    gvs.into_iter()
        .filter_map(|gv| {
            let path = if gv.contains('/') {
                format!("apis/{gv}")
            } else {
                format!("api/{gv}")
            };
            v3_document(gv).map(|d| (path, Doc::of(&d)))
        })
        .collect()
});

static V2: LazyLock<Doc> = LazyLock::new(|| {
    let all: Vec<&KindInfo> = KINDS.iter().chain(REVIEWS).collect();
    let s = schema::schemas();
    let mut paths = Map::new();
    for k in &all {
        kind_paths(k, s.of(k).map(|(name, _)| name), &mut paths);
    }
    let mut doc = json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": components(&all),
    });
    v2_shapes(&mut doc);
    Doc::of(&doc)
});

/// Rewrites v3 shapes into v2's: `$ref`s to `#/definitions/`, a parameter's `schema.type`
/// as its own `type`, and request bodies as `body` parameters.
fn v2_shapes(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                *r = r.replace(REF_PREFIX, "#/definitions/");
            }
            if m.get("in").is_some_and(|i| i == "query" || i == "path")
                && let Some(Value::Object(s)) = m.remove("schema")
            {
                m.extend(s);
            }
            if let Some(body) = m.remove("requestBody") {
                let schema = body["content"]["application/json"]["schema"].clone();
                if let Some(Value::Array(p)) = m.get_mut("parameters") {
                    p.push(
                        json!({"name": "body", "in": "body", "required": true, "schema": schema}),
                    );
                }
            }
            if let Some(resp) = m.get_mut("responses").and_then(Value::as_object_mut) {
                for r in resp.values_mut() {
                    if let Some(c) = r.as_object_mut().and_then(|o| o.remove("content")) {
                        r["schema"] = c["application/json"]["schema"].clone();
                    }
                }
            }
            m.values_mut().for_each(v2_shapes);
        }
        Value::Array(a) => a.iter_mut().for_each(v2_shapes),
        _ => {}
    }
}

fn json_response(doc: &Doc, immutable: bool) -> Response {
    let mut r = doc.bytes.clone().into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, immutable"
        } else {
            "no-cache, private"
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", doc.hash)) {
        h.insert(header::ETAG, v);
    }
    r
}

/// Whether the client takes JSON (kubectl asks for the v2 document as protobuf only, and
/// goes on without it when told it is not acceptable).
fn takes_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    accept.split(',').any(|m| {
        let m = m.split(';').next().unwrap_or("").trim();
        m == "*/*" || m == "application/*" || m == "application/json"
    })
}

/// `GET /openapi/v2`.
pub async fn v2(headers: HeaderMap) -> Result<Response, ApiError> {
    if !takes_json(&headers) {
        return Err(ApiError::NotAcceptable(
            "only application/json is served for /openapi/v2".into(),
        ));
    }
    Ok(json_response(&V2, false))
}

/// `GET /openapi/v3`: where each group-version's document is.
pub async fn v3_index() -> Response {
    let paths: Map<String, Value> = V3
        .iter()
        .map(|(p, d)| {
            (
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", d.hash)}),
            )
        })
        .collect();
    let mut r = axum::Json(json!({"paths": paths})).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

/// `GET /openapi/v3/{api/v1 | apis/GROUP/VERSION}`.
pub async fn v3_document_at(
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let doc = V3
        .get(rest.trim_matches('/'))
        .ok_or_else(|| ApiError::NoRoute(format!("/openapi/v3/{rest}")))?;
    let hashed = query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|p| p == format!("hash={}", doc.hash)));
    Ok(json_response(doc, hashed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_version_has_a_document_with_its_kinds() {
        let paths: Vec<&String> = V3.keys().collect();
        assert_eq!(
            paths,
            [
                "api/v1",
                "apis/apps/v1",
                "apis/authentication.k8s.io/v1",
                "apis/authorization.k8s.io/v1",
                "apis/autoscaling/v2",
                "apis/batch/v1"
            ]
        );
        let d: Value = serde_json::from_slice(&V3["apis/apps/v1"].bytes).unwrap();
        let deploy = &d["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deploy["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        // What a Deployment uses is in the same document.
        assert!(d["components"]["schemas"]["io.k8s.api.core.v1.Container"].is_object());
        // kubectl apply computes its strategic patch from these, as the agent applies it.
        let containers =
            &d["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        // Every $ref resolves within the document.
        let text = String::from_utf8(V3["apis/apps/v1"].bytes.clone()).unwrap();
        for r in text.split("\"$ref\":\"").skip(1) {
            let name = r.split('"').next().unwrap().trim_start_matches(REF_PREFIX);
            assert!(d["components"]["schemas"][name].is_object(), "{name}");
        }
    }

    /// kubectl leaves validation to the server when the kind's PATCH takes fieldValidation.
    #[test]
    fn patch_operations_say_they_take_field_validation() {
        let d: Value = serde_json::from_slice(&V3["api/v1"].bytes).unwrap();
        let patch = &d["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"fieldValidation"), "{names:?}");
        // Agent-written kinds are read-only.
        assert!(d["paths"]["/api/v1/nodes/{name}"].get("patch").is_none());
    }

    #[test]
    fn the_v2_document_uses_v2_shapes() {
        let d: Value = serde_json::from_slice(&V2.bytes).unwrap();
        assert_eq!(d["swagger"], "2.0");
        assert!(d["definitions"]["io.k8s.api.core.v1.Pod"].is_object());
        let text = String::from_utf8(V2.bytes.clone()).unwrap();
        assert!(!text.contains("#/components/"));
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
        );
        assert!(!takes_json(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, */*"),
        );
        assert!(takes_json(&h));
    }
}
