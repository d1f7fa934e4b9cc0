//! The CLI's HTTP client: finds the config, speaks TLS to the agent's API with the cluster CA,
//! and turns `Status` errors into readable messages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::cluster::AdminConfig;

/// Where the CLI looks for its config when neither `--config` nor `$FLOTILLA_CONFIG` is given.
pub const DEFAULT_CONFIG: &str = "/var/lib/flotilla/admin.yaml";

/// `--config`, then `$FLOTILLA_CONFIG` (clap fills both into one option), then the default.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

/// An error answered by the API, with the `Status` it sent.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiFailure {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub status: Value,
}

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn from_config_file(path: &Path) -> Result<Client> {
        if !path.exists() {
            bail!(
                "no config at {}: pass --config FILE or set FLOTILLA_CONFIG (an agent writes admin.yaml into its data dir)",
                path.display()
            );
        }
        Client::new(&AdminConfig::load(path)?)
    }

    pub fn new(cfg: &AdminConfig) -> Result<Client> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in crate::cluster::pem::certs(&cfg.certificate_authority)
            .context("reading the certificate authority")?
        {
            roots.add(cert).context("adding the cluster CA")?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            base: cfg.server.trim_end_matches('/').to_string(),
            token: cfg.token.clone(),
            http,
        })
    }

    /// Sends a request and returns the response, or the API's error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.finish(req).await
    }

    /// Sends a built request; a non-success answer becomes an [`ApiFailure`].
    async fn finish(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the agent at {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let code = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Err(failure(code, &text).into())
    }

    /// Sends a request with a raw body (an image tarball, streamed; an exec's stdin).
    pub async fn send_body(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: reqwest::Body,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{}", self.base, path);
        let req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.finish(req).await
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let resp = self.send(method, path, query, body).await?;
        resp.json().await.context("reading the API's answer")
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        self.json(Method::GET, path, query, None).await
    }
}

fn failure(code: StatusCode, text: &str) -> ApiFailure {
    let status: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let message = status["message"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| format!("the agent answered {code}: {}", text.trim()));
    ApiFailure {
        code: code.as_u16(),
        reason: status["reason"].as_str().unwrap_or("").to_string(),
        message,
        status,
    }
}

/// Whether an error is the API's 404.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiFailure>()
        .is_some_and(|f| f.code == 404)
}

/// Whether an error is the API's 409 Conflict (a stale resourceVersion).
pub fn is_conflict(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiFailure>()
        .is_some_and(|f| f.code == 409 && f.reason == "Conflict")
}
