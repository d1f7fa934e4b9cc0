//! The resource metrics API (`metrics.k8s.io/v1beta1`), as metrics-server serves it:
//! NodeMetrics and PodMetrics of the whole cluster from any node, what `kubectl top` reads.
//!
//! Each node samples itself (`node/metrics.rs`) and answers its sample at
//! `/apis/flotilla.io/v1/metrics/local`; the node asked gathers every reachable node's
//! sample, then names and filters them by the stored Nodes and Pods (a node that does not
//! answer is left out, as metrics-server leaves out a node it cannot scrape).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState};
use crate::manifest::selector::Selector;
use crate::node::metrics::Sample;

pub const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// How long a peer may take to answer its sample before it is left out.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /apis/flotilla.io/v1/metrics/local`: this node's last sample (`null` before two
/// readings, or with sampling off).
pub async fn local(State(s): State<Arc<ApiState>>) -> Json<Option<Sample>> {
    Json(s.metrics.as_ref().and_then(|m| m.sample()))
}

/// Every reachable node's sample: this node's, and the others' over their APIs, together.
pub async fn samples(s: &ApiState) -> Result<Vec<Sample>, ApiError> {
    let (nodes, _) = s.store.list("Node", None).await?;
    let unreachable = s.unreachable.borrow().clone();
    let names: Vec<String> = nodes
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
        .filter(|n| *n != *s.node && !unreachable.contains(n))
        .collect();
    let uri: axum::http::Uri = "/apis/flotilla.io/v1/metrics/local"
        .parse()
        .expect("a path");
    let asks = names.iter().map(|n| {
        let uri = uri.clone();
        async move {
            let url = super::pods::peer_url(s, n, &uri).await.ok()?;
            let resp = super::pods::peers(s)
                .ok()?
                .get(&url)
                .bearer_auth(&*s.token)
                .timeout(PEER_TIMEOUT)
                .send()
                .await
                .ok()?;
            match resp.json::<Option<Sample>>().await {
                Ok(sample) => sample,
                Err(e) => {
                    tracing::debug!(node = %n, error = %e, "a node's metrics were unreadable");
                    None
                }
            }
        }
    });
    let mut out: Vec<Sample> = futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    if let Some(mine) = s.metrics.as_ref().and_then(|m| m.sample()) {
        out.push(mine);
    }
    out.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(out)
}

/// The list options the metrics API honours: `labelSelector`, and `fieldSelector` on
/// `metadata.name` / `metadata.namespace`. Anything else is refused by name.
struct Options {
    labels: Selector,
    fields: crate::manifest::selector::FieldSelector,
}

fn options(query: Option<&str>) -> Result<Options, ApiError> {
    let mut o = Options {
        labels: Selector::default(),
        fields: Default::default(),
    };
    for (k, v) in super::options::pairs(query)? {
        match k.as_str() {
            "labelSelector" => {
                o.labels = Selector::parse(&v)
                    .map_err(|e| ApiError::BadRequest(format!("labelSelector: {e}")))?
            }
            "fieldSelector" => {
                let f = crate::manifest::selector::FieldSelector::parse(&v)
                    .map_err(|e| ApiError::BadRequest(format!("fieldSelector: {e}")))?;
                if let Some((path, _, _)) = f
                    .0
                    .iter()
                    .find(|(p, _, _)| !matches!(p.as_str(), "metadata.name" | "metadata.namespace"))
                {
                    return Err(ApiError::BadRequest(format!(
                        "field label not supported: {path}"
                    )));
                }
                o.fields = f;
            }
            // A server may answer a whole list where a page is asked (the API conventions
            // allow it, metrics-server does it): `continue` comes back empty.
            "pretty"
            | "timeout"
            | "timeoutSeconds"
            | "limit"
            | "continue"
            | "resourceVersion"
            | "resourceVersionMatch" => {}
            other => {
                return Err(ApiError::BadRequest(format!(
                    "query parameter {other:?} is not supported by the metrics API"
                )));
            }
        }
    }
    Ok(o)
}

fn meta(name: &str, namespace: Option<&str>, labels: &BTreeMap<String, String>) -> Value {
    let mut m = json!({"name": name, "creationTimestamp": crate::store::now_rfc3339()});
    if let Some(ns) = namespace {
        m["namespace"] = ns.into();
    }
    if !labels.is_empty() {
        m["labels"] = json!(labels);
    }
    m
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": API_VERSION, "metadata": {}, "items": items})
}

/// Only the metadata of a stored object.
#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    metadata: ObjectMeta,
}

async fn node_metrics(s: &ApiState, o: &Options) -> Result<Vec<Value>, ApiError> {
    let (nodes, _) = s.store.list_typed::<Named>("Node", None).await?;
    let labels: BTreeMap<String, BTreeMap<String, String>> = nodes
        .into_iter()
        .filter_map(|n| Some((n.metadata.name?, n.metadata.labels.unwrap_or_default())))
        .collect();
    Ok(samples(s)
        .await?
        .into_iter()
        .filter_map(|sm| {
            let usage = sm.usage?;
            let l = labels.get(&sm.node)?;
            let m = meta(&sm.node, None, l);
            let v = json!({"kind": "NodeMetrics", "apiVersion": API_VERSION, "metadata": m,
                "timestamp": sm.timestamp, "window": sm.window, "usage": usage});
            (o.labels.matches(l) && o.fields.matches(&v)).then_some(v)
        })
        .collect())
}

async fn pod_metrics(
    s: &ApiState,
    namespace: Option<&str>,
    o: &Options,
) -> Result<Vec<Value>, ApiError> {
    let (pods, _) = s.store.list_typed::<Named>("Pod", namespace).await?;
    let by_uid: BTreeMap<String, ObjectMeta> = pods
        .into_iter()
        .filter_map(|p| Some((p.metadata.uid.clone()?, p.metadata)))
        .collect();
    let mut out = Vec::new();
    for sm in samples(s).await? {
        for (uid, containers) in sm.pods {
            let Some(pm) = by_uid.get(&uid) else {
                continue;
            };
            let labels = pm.labels.clone().unwrap_or_default();
            let name = pm.name.as_deref().unwrap_or("");
            let m = meta(name, pm.namespace.as_deref(), &labels);
            let v = json!({"kind": "PodMetrics", "apiVersion": API_VERSION, "metadata": m,
                "timestamp": sm.timestamp, "window": sm.window, "containers": containers});
            if o.labels.matches(&labels) && o.fields.matches(&v) {
                out.push(v);
            }
        }
    }
    out.sort_by(|a, b| {
        let k = |v: &Value| {
            (
                v["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                v["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        };
        k(a).cmp(&k(b))
    });
    Ok(out)
}

pub async fn nodes(
    State(s): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let o = options(q.as_deref())?;
    Ok(Json(list("NodeMetricsList", node_metrics(&s, &o).await?)))
}

pub async fn node(
    State(s): State<Arc<ApiState>>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let o = options(q.as_deref())?;
    node_metrics(&s, &o)
        .await?
        .into_iter()
        .find(|v| v["metadata"]["name"] == name.as_str())
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("nodemetrics.metrics.k8s.io {name:?} not found")))
}

pub async fn all_pods(
    State(s): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let o = options(q.as_deref())?;
    Ok(Json(list(
        "PodMetricsList",
        pod_metrics(&s, None, &o).await?,
    )))
}

pub async fn pods(
    State(s): State<Arc<ApiState>>,
    Path(ns): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let o = options(q.as_deref())?;
    Ok(Json(list(
        "PodMetricsList",
        pod_metrics(&s, Some(&ns), &o).await?,
    )))
}

pub async fn pod(
    State(s): State<Arc<ApiState>>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let o = options(q.as_deref())?;
    pod_metrics(&s, Some(&ns), &o)
        .await?
        .into_iter()
        .find(|v| v["metadata"]["name"] == name.as_str())
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "podmetrics.metrics.k8s.io \"{ns}/{name}\" not found"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_options_honoured_or_refused_by_name() {
        let o = options(Some(
            "labelSelector=app%3Dweb&fieldSelector=metadata.name%3Dx",
        ))
        .unwrap();
        assert!(
            o.labels
                .matches(&crate::manifest::selector::labels(&[("app", "web")]))
        );
        assert!(
            !o.labels
                .matches(&crate::manifest::selector::labels(&[("app", "db")]))
        );
        assert!(o.fields.matches(&json!({"metadata": {"name": "x"}})));
        let e = options(Some("fieldSelector=spec.nodeName%3Dn1"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("spec.nodeName"), "{e}");
        assert!(
            options(Some("limit=500")).is_ok(),
            "kubectl get pods.metrics.k8s.io pages"
        );
        let e = options(Some("watch=true")).err().unwrap();
        assert!(e.to_string().contains("\"watch\""), "{e}");
    }
}
