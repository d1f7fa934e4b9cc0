//! Discovery: `/version`, `/api`, `/apis` and resource lists, in Kubernetes' shapes.

use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiError;
use crate::manifest::kinds::{KINDS, KindInfo, METRICS, REVIEWS};

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

/// The media type of aggregated discovery (kubectl 1.30+ asks for it first, and then needs
/// no request per group-version).
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the request asks for aggregated discovery (`apidiscovery.k8s.io/v2`).
fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let params: Vec<&str> = t.split(';').map(str::trim).collect();
            params.first() == Some(&"application/json")
                && params.contains(&"g=apidiscovery.k8s.io")
                && params.contains(&"v=v2")
                && params.contains(&"as=APIGroupDiscoveryList")
        })
}

fn aggregated(groups: Vec<Value>) -> Response {
    (
        [(header::CONTENT_TYPE, AGGREGATED)],
        Json(json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": groups,
        })),
    )
        .into_response()
}

/// One group's aggregated discovery: its one version and every resource served in it.
fn group_discovery(group: &str, group_version: &str) -> Value {
    let version = group_version.rsplit('/').next().unwrap_or(group_version);
    let resources: Vec<Value> = resources(group_version)
        .iter()
        .map(|r| {
            let kind = |group: &str, version: &str, kind: &str| {
                json!({"group": group, "version": version, "kind": kind})
            };
            let mut v = json!({
                "resource": r.name,
                "responseKind": kind(group, version, r.kind),
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": r.verbs,
            });
            if !r.short.is_empty() {
                v["shortNames"] = json!(r.short);
            }
            if !r.categories.is_empty() {
                v["categories"] = json!(r.categories);
            }
            if !r.subresources.is_empty() {
                v["subresources"] = r
                    .subresources
                    .iter()
                    .map(|s| {
                        json!({
                            "subresource": s.name,
                            "responseKind": kind(s.group, s.version, s.kind),
                            "verbs": s.verbs,
                        })
                    })
                    .collect();
            }
            v
        })
        .collect();
    let mut g = json!({
        "metadata": {},
        "versions": [{"version": version, "resources": resources, "freshness": "Current"}],
    });
    if !group.is_empty() {
        g["metadata"]["name"] = json!(group);
    }
    g
}

pub async fn api_versions(headers: HeaderMap) -> Response {
    if wants_aggregated(&headers) {
        return aggregated(vec![group_discovery("", "v1")]);
    }
    Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))
        .into_response()
}

/// Every served kind: stored ones, reviews and metrics.
fn served() -> impl Iterator<Item = &'static KindInfo> {
    KINDS.iter().chain(REVIEWS).chain(METRICS)
}

/// The named API groups, each with its one version.
fn groups() -> Vec<(&'static str, &'static str)> {
    let mut g: Vec<(&str, &str)> = served()
        .map(|k| (k.group(), k.version()))
        .filter(|(g, _)| !g.is_empty())
        .collect();
    g.sort();
    g.dedup();
    g
}

pub async fn api_groups(headers: HeaderMap) -> Response {
    if wants_aggregated(&headers) {
        return aggregated(
            groups()
                .into_iter()
                .map(|(g, v)| group_discovery(g, &format!("{g}/{v}")))
                .collect(),
        );
    }
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})).into_response()
}

/// A served resource as discovery describes it (both the per-group-version lists and the
/// aggregated document are made from this).
struct Resource {
    name: &'static str,
    singular: String,
    namespaced: bool,
    kind: &'static str,
    verbs: Vec<&'static str>,
    short: Vec<&'static str>,
    categories: &'static [&'static str],
    subresources: Vec<Subresource>,
}

struct Subresource {
    name: &'static str,
    kind: &'static str,
    group: &'static str,
    version: &'static str,
    verbs: Vec<&'static str>,
}

fn resources(group_version: &str) -> Vec<Resource> {
    served()
        .filter(|k| k.api_version == group_version)
        .map(|k| {
            let verbs = if REVIEWS.contains(k) {
                vec!["create"]
            } else if METRICS.contains(k) {
                vec!["get", "list"]
            } else if k.user_writable {
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
            let subresources = k
                .subresources
                .iter()
                .map(|sub| {
                    let (kind, group, version, verbs) = match *sub {
                        "scale" => ("Scale", "autoscaling", "v1", vec!["get", "patch", "update"]),
                        "log" => (k.kind, "", "v1", vec!["get"]),
                        "exec" => ("PodExecOptions", "", "v1", vec!["create", "get"]),
                        "eviction" => ("Eviction", "policy", "v1", vec!["create"]),
                        _ if k.user_writable => (
                            k.kind,
                            k.group(),
                            k.version(),
                            vec!["get", "patch", "update"],
                        ),
                        _ => (k.kind, k.group(), k.version(), vec!["get"]),
                    };
                    Subresource {
                        name: sub,
                        kind,
                        group,
                        version,
                        verbs,
                    }
                })
                .collect();
            let singular = k.kind.to_ascii_lowercase();
            Resource {
                name: k.plural,
                short: k.short.iter().copied().filter(|s| *s != singular).collect(),
                singular,
                namespaced: k.namespaced,
                kind: k.kind,
                verbs,
                categories: k.categories,
                subresources,
            }
        })
        .collect()
}

fn resource_list(group_version: &str) -> Value {
    let mut list = Vec::new();
    for r in resources(group_version) {
        let mut v = json!({
            "name": r.name,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
            "shortNames": r.short,
        });
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        list.push(v);
        for sub in &r.subresources {
            let mut s = json!({
                "name": format!("{}/{}", r.name, sub.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if matches!(sub.name, "scale" | "eviction") {
                s["group"] = json!(sub.group);
                s["version"] = json!(sub.version);
            }
            list.push(s);
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list})
}

pub async fn core_resources() -> Json<Value> {
    Json(resource_list("v1"))
}

pub async fn group_resources(
    Path((group, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let gv = format!("{group}/{version}");
    if !served().any(|k| k.api_version == gv) {
        return Err(ApiError::NoRoute(format!("/apis/{gv}")));
    }
    Ok(Json(resource_list(&gv)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_when_asked_for_it_and_the_same_resources_as_the_lists() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
                .parse()
                .unwrap(),
        );
        assert!(wants_aggregated(&h));
        h.insert(header::ACCEPT, "application/json, */*".parse().unwrap());
        assert!(!wants_aggregated(&h));
        let apps = group_discovery("apps", "apps/v1");
        assert_eq!(apps["metadata"]["name"], "apps");
        let deploy = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap()
            .clone();
        assert_eq!(
            deploy["responseKind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert_eq!(deploy["scope"], "Namespaced");
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert_eq!(deploy["categories"], json!(["all"]));
        let scale = deploy["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "scale")
            .unwrap()
            .clone();
        assert_eq!(scale["responseKind"]["group"], "autoscaling");
        // The same resources as the per-group-version list names.
        let listed: Vec<String> = resource_list("apps/v1")["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| {
                r["name"]
                    .as_str()
                    .filter(|n| !n.contains('/'))
                    .map(String::from)
            })
            .collect();
        let aggregated: Vec<String> = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["resource"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(listed, aggregated);
        let core = group_discovery("", "v1");
        assert!(
            core["metadata"].get("name").is_none(),
            "the core group has no name"
        );
    }
}
