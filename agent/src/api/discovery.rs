//! Discovery: `/version`, `/api`, `/apis` and resource lists, in Kubernetes' shapes.

use axum::Json;
use axum::extract::Path;
use serde_json::{Value, json};

use super::ApiError;
use crate::manifest::kinds::{KINDS, KindInfo};

/// The Kubernetes version served: the one of the k8s-openapi types objects are checked
/// against (its `v1_31` feature). kubectl 1.32 sends protobuf bodies to a 1.32 server, which
/// this API does not read yet.
pub const GIT_VERSION: &str = concat!("v1.31.0+flotilla-", env!("CARGO_PKG_VERSION"));

pub async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": "31",
        "gitVersion": GIT_VERSION,
        "platform": format!("linux/{}", std::env::consts::ARCH),
    }))
}

pub async fn api_versions() -> Json<Value> {
    Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))
}

fn groups() -> Vec<&'static str> {
    let mut g: Vec<&str> = KINDS
        .iter()
        .map(KindInfo::group)
        .filter(|g| !g.is_empty())
        .collect();
    g.sort();
    g.dedup();
    g
}

pub async fn api_groups() -> Json<Value> {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|g| {
            let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
}

fn resource_list(group_version: &str) -> Value {
    let resources: Vec<Value> = KINDS
        .iter()
        .filter(|k| k.api_version == group_version)
        .flat_map(|k| {
            let verbs = if k.user_writable {
                vec![
                    "create",
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "update",
                    "watch",
                ]
            } else {
                vec!["get", "list", "watch"]
            };
            let mut r = json!({
                "name": k.plural,
                "singularName": k.kind.to_ascii_lowercase(),
                "namespaced": k.namespaced,
                "kind": k.kind,
                "verbs": verbs,
                "shortNames": k.short.iter().filter(|s| **s != k.kind.to_ascii_lowercase()).collect::<Vec<_>>(),
            });
            if !k.categories.is_empty() {
                r["categories"] = json!(k.categories);
            }
            let mut all = vec![r];
            for sub in k.subresources {
                let (kind, group, version, verbs) = match *sub {
                    "scale" => ("Scale", "autoscaling", "v1", vec!["get", "patch", "update"]),
                    "log" => (k.kind, "", "v1", vec!["get"]),
                    "exec" => ("PodExecOptions", "", "v1", vec!["create", "get"]),
                    "eviction" => ("Eviction", "policy", "v1", vec!["create"]),
                    _ if k.user_writable => (k.kind, k.group(), k.version(), vec!["get", "patch", "update"]),
                    _ => (k.kind, k.group(), k.version(), vec!["get"]),
                };
                let mut s = json!({
                    "name": format!("{}/{sub}", k.plural),
                    "singularName": "",
                    "namespaced": k.namespaced,
                    "kind": kind,
                    "verbs": verbs,
                });
                if matches!(*sub, "scale" | "eviction") {
                    s["group"] = json!(group);
                    s["version"] = json!(version);
                }
                all.push(s);
            }
            all
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

pub async fn core_resources() -> Json<Value> {
    Json(resource_list("v1"))
}

pub async fn group_resources(
    Path((group, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let gv = format!("{group}/{version}");
    if !KINDS.iter().any(|k| k.api_version == gv) {
        return Err(ApiError::NoRoute(format!("/apis/{gv}")));
    }
    Ok(Json(resource_list(&gv)))
}
