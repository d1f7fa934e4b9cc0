//! The HTTPS API every agent serves: Kubernetes-shaped paths, objects, lists, watches and
//! `Status` errors, behind a bearer token.
//!
//! # Layout
//! - [`path`]: which resource a URL names (pure).
//! - [`objects`]: get, list, create, replace, status, delete (with cascade).
//! - [`watch`]: `?watch=true` streams of ADDED/MODIFIED/DELETED events from the store's log.
//! - [`apply`]: `POST /apis/flotilla.io/v1/apply`, the all-or-nothing multi-object apply the CLI
//!   uses.
//! - [`discovery`]: `/version`, `/api`, `/apis` and resource lists, so kubectl can find its way.
//! - [`error`]: the one place errors become HTTP statuses.

pub mod apply;
pub mod attach;
pub mod delete;
pub mod discovery;
pub mod error;
pub mod exec;
pub mod images;
pub mod metrics;
pub mod objects;
pub mod openapi;
pub mod options;
pub mod patch;
pub mod path;
pub mod pods;
pub mod portforward;
pub mod review;
pub mod services;
pub mod spdy;
pub mod table;
pub mod watch;

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use k8s_openapi::api::core::v1::Node;
use serde::Deserialize;
use serde_json::Value;

pub use error::ApiError;

use crate::manifest::lifecycle;
use crate::store::{Applied, Store, Write};

/// Requests with larger bodies are refused with 413 (Kubernetes' limit is about 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// The bearer token requests must carry.
    pub token: Arc<str>,
    /// This node's name.
    pub node: Arc<str>,
    /// Held from reading the Services to committing a write that allocates ClusterIPs or
    /// NodePorts, so two writes never take the same one.
    pub alloc_lock: Arc<tokio::sync::Mutex<()>>,
    /// This node's images.
    pub images: Arc<flotilla_runtime::image::ImageStore>,
    /// Where the image store lives (uploads are staged in its `tmp/`).
    pub images_dir: std::path::PathBuf,
    /// This node's containers, for logs and exec.
    pub pods: crate::node::pods::Node,
    /// Nodes that gossip says are unreachable: shown with Ready Unknown.
    pub unreachable: tokio::sync::watch::Receiver<std::collections::BTreeSet<String>>,
    /// The quorum's members by node name: `true` for a voter, `false` for a learner. Shown
    /// as the control-plane role (empty: no quorum information, leave the labels alone).
    pub voters: tokio::sync::watch::Receiver<std::collections::BTreeMap<String, bool>>,
    /// HTTPS to other nodes' APIs (trusting the cluster CA), for logs and exec of their pods.
    pub peers: Option<reqwest::Client>,
    /// Every live node's gossiped state, summarised on its Node as `flotilla.io/observed`.
    pub observed: tokio::sync::watch::Receiver<crate::cluster::Observed>,
    /// This node's resource metrics (`None`: not sampled here).
    pub metrics: Option<Arc<crate::node::metrics::Metrics>>,
    /// The namespaces' names, as of the revision the Namespaces last changed at: every
    /// create checks its namespace, and namespaces seldom change.
    namespaces: Arc<std::sync::Mutex<Option<NamespaceNames>>>,
}

/// The namespaces' names, and the revision the Namespaces had changed at when they were read.
type NamespaceNames = (i64, std::collections::BTreeSet<String>);

impl ApiState {
    pub fn new(
        store: Store,
        token: &str,
        node: &str,
        images: Arc<flotilla_runtime::image::ImageStore>,
        images_dir: std::path::PathBuf,
        pods: crate::node::pods::Node,
    ) -> ApiState {
        ApiState {
            store,
            token: Arc::from(token),
            node: Arc::from(node),
            alloc_lock: Default::default(),
            images,
            images_dir,
            pods,
            unreachable: tokio::sync::watch::channel(Default::default()).1,
            voters: tokio::sync::watch::channel(Default::default()).1,
            peers: None,
            observed: tokio::sync::watch::channel(Default::default()).1,
            metrics: None,
            namespaces: Default::default(),
        }
    }

    /// Shows what gossip says of each node on its Node object.
    pub fn with_observed(
        mut self,
        observed: tokio::sync::watch::Receiver<crate::cluster::Observed>,
    ) -> ApiState {
        self.observed = observed;
        self
    }

    /// Serves this node's resource metrics.
    pub fn with_metrics(mut self, metrics: Arc<crate::node::metrics::Metrics>) -> ApiState {
        self.metrics = Some(metrics);
        self
    }

    /// Lets this node forward logs and exec to the node a pod runs on.
    pub fn with_peers(mut self, ca_pem: &str) -> anyhow::Result<ApiState> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in crate::cluster::pem::certs(ca_pem)? {
            roots.add(cert)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        self.peers = Some(
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .no_proxy()
                .build()?,
        );
        Ok(self)
    }

    /// Shows the quorum's voters with the control-plane role.
    pub fn with_voters(
        mut self,
        voters: tokio::sync::watch::Receiver<std::collections::BTreeMap<String, bool>>,
    ) -> ApiState {
        self.voters = voters;
        self
    }

    /// Shows the nodes in `unreachable` as not Ready.
    pub fn with_unreachable(
        mut self,
        unreachable: tokio::sync::watch::Receiver<std::collections::BTreeSet<String>>,
    ) -> ApiState {
        self.unreachable = unreachable;
        self
    }

    /// A Node as this node sees it (Ready Unknown when gossip does not hear it).
    pub fn node_view(&self, stored: Value) -> Value {
        let Ok(mut node) = Node::deserialize(&stored) else {
            return stored;
        };
        let name = lifecycle::name(&node.metadata).to_string();
        let voters = self.voters.borrow();
        // Known voters get the role; every other node (a learner, or a node that pulls the
        // log and is in no membership) loses it.
        if !voters.is_empty()
            && let Some(labels) = node.metadata.labels.as_mut()
        {
            const ROLE: &str = "node-role.kubernetes.io/control-plane";
            if voters.get(&name) == Some(&true) {
                labels.insert(ROLE.into(), "true".into());
            } else {
                labels.remove(ROLE);
            }
        }
        drop(voters);
        if let Some(kv) = self.observed.borrow().get(&name) {
            node.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(
                    "flotilla.io/observed".into(),
                    crate::cluster::observed_summary(kv),
                );
        }
        if self.unreachable.borrow().contains(&name) {
            crate::node::status::unreachable_view(&mut node);
        }
        lifecycle::encode(&node)
    }

    /// Commits a write: on a cluster the store hands it to the quorum's leader and returns
    /// once it is committed and applied here.
    pub async fn commit(&self, w: Write) -> Result<Vec<Applied>, ApiError> {
        Ok(self.store.write(&w).await?)
    }

    /// Commits `w`, or with `dry_run` plans it against this replica and writes nothing
    /// ([`Store::dry_run`]): the answer is the same either way.
    pub async fn commit_or_dry_run(
        &self,
        w: Write,
        dry_run: bool,
    ) -> Result<Vec<Applied>, ApiError> {
        if dry_run {
            Ok(self.store.dry_run(&w).await?)
        } else {
            self.commit(w).await
        }
    }

    pub async fn namespace_exists(&self, ns: &str) -> Result<bool, ApiError> {
        let rev = self.store.revision_of(&["Namespace"]);
        if let Some((r, names)) = &*self.namespaces.lock().expect("namespaces lock")
            && *r == rev
        {
            return Ok(names.contains(ns));
        }
        let (all, _) = self.store.list("Namespace", Some("")).await?;
        let names: std::collections::BTreeSet<String> = all
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        let exists = names.contains(ns);
        *self.namespaces.lock().expect("namespaces lock") = Some((rev, names));
        Ok(exists)
    }
}

/// The API's routes. `/healthz` and `/readyz` answer without a token; everything else needs it.
pub fn router(state: Arc<ApiState>) -> Router {
    // One shared state: axum clones it for every request and extractor.
    Router::new()
        .route("/version", get(discovery::version))
        .route("/api", get(discovery::api_versions))
        .route("/apis", get(discovery::api_groups))
        .route("/api/v1", get(discovery::core_resources))
        .route("/apis/{group}/{version}", get(discovery::group_resources))
        .route("/openapi/v2", get(openapi::v2))
        .route("/openapi/v3", get(openapi::v3_index))
        .route("/openapi/v3/{*rest}", get(openapi::v3_document_at))
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            post(review::access_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            post(review::rules_review),
        )
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            post(review::self_review),
        )
        .route("/apis/metrics.k8s.io/v1beta1/nodes", get(metrics::nodes))
        .route(
            "/apis/metrics.k8s.io/v1beta1/nodes/{name}",
            get(metrics::node),
        )
        .route("/apis/metrics.k8s.io/v1beta1/pods", get(metrics::all_pods))
        .route(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods",
            get(metrics::pods),
        )
        .route(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/{name}",
            get(metrics::pod),
        )
        .route("/apis/flotilla.io/v1/metrics/local", get(metrics::local))
        .route("/apis/flotilla.io/v1/apply", post(apply::apply))
        .route(
            "/apis/flotilla.io/v1/images",
            get(images::list).delete(images::remove),
        )
        .route("/apis/flotilla.io/v1/images/import", post(images::import))
        .route("/apis/flotilla.io/v1/images/pull", post(images::pull))
        .fallback(objects::dispatch)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn auth(
    State(s): State<Arc<ApiState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), s.token.as_bytes()) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(req).await)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The rustls server config for the node's certificate.
pub fn tls_config(cert_pem: &str, key_pem: &str) -> anyhow::Result<rustls::ServerConfig> {
    let certs = crate::cluster::pem::certs(cert_pem).context("reading the node certificate")?;
    let key = crate::cluster::pem::private_key(key_pem).context("reading node.key")?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("building the TLS config")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serves the API on an already-bound listener until `handle` is told to shut down.
/// `tls` can be reloaded while serving (a renewed certificate).
pub async fn serve(
    listener: std::net::TcpListener,
    tls: axum_server::tls_rustls::RustlsConfig,
    state: Arc<ApiState>,
    handle: axum_server::Handle<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(router(state).into_make_service())
        .await
        .context("serving the API")
}

/// The media types a request body may have (kube-apiserver's, less protobuf).
pub const BODY_TYPES: &[&str] = &["application/json", "application/yaml"];

/// Refuses (415) a body of a media type the API cannot read, naming it. No `Content-Type`
/// at all is read as JSON, or YAML.
pub fn check_media_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence.is_empty() || BODY_TYPES.contains(&essence.as_str()) {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "the body of the request was in an unknown format ({ct}) - accepted media types include: {}",
        BODY_TYPES.join(", ")
    )))
}

/// The same response with its JSON body indented (`?pretty=true`).
pub async fn prettify(resp: Response) -> Result<Response, ApiError> {
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(format!("reading the response: {e}")))?;
    let pretty = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => {
            let mut out = serde_json::to_vec_pretty(&v).unwrap_or_else(|_| bytes.to_vec());
            out.push(b'\n');
            out
        }
        Err(_) => bytes.to_vec(),
    };
    let mut resp = Response::from_parts(parts, axum::body::Body::from(pretty));
    resp.headers_mut().remove(header::CONTENT_LENGTH);
    Ok(resp)
}

/// Parses a request body as JSON, or as YAML when it is not JSON.
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).or_else(|_| {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
        serde_norway::from_str(text)
            .map_err(|e| ApiError::BadRequest(format!("body is not JSON or YAML: {e}")))
    })
}

/// Reads a whole body, refusing one over [`MAX_BODY`].
///
/// An oversized body is still read (and thrown away) up to [`DRAIN_LIMIT`], so that a client
/// that is still sending gets the 413 answer rather than a reset connection.
pub async fn read_body(body: axum::body::Body) -> Result<axum::body::Bytes, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        seen += chunk.len();
        if seen <= MAX_BODY {
            buf.extend_from_slice(&chunk);
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > MAX_BODY {
        return Err(ApiError::TooLarge { limit: MAX_BODY });
    }
    Ok(buf.into())
}

/// How much of an oversized body is read before the connection is given up.
pub const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Runs a write that allocates Service addresses, and runs it again (three times at most) when
/// the store refused its claim because a Service written through another node took the same
/// ClusterIP or NodePort a moment before: the next allocation sees that Service. A clusterIP
/// or nodePort a user asked for that is in use fails the same way each time and is reported.
pub async fn retry_taken<T, F, Fut>(mut f: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut tries = 0u64;
    loop {
        match f().await {
            Err(ApiError::Store(crate::store::StoreError::Taken(_))) if tries < 3 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
            }
            r => return r,
        }
    }
}
