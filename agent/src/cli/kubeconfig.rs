//! `flotilla kubeconfig [--server URL]`: the admin kubeconfig of this cluster, for kubectl or
//! client libraries on another machine (copy it there as `~/.kube/config`).

use std::path::Path;

use anyhow::{Result, bail};
use clap::Args;

use crate::cluster::AdminConfig;
use crate::cluster::kubeconfig::Kubeconfig;

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// The API as the other machine reaches it (`https://ADDRESS:6443`); by default the
    /// server of the config read. The address must be one the node's certificate names (its
    /// advertise address, its name or localhost).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

pub fn run(cfg: &Path, a: KubeconfigArgs) -> Result<i32> {
    if !cfg.exists() {
        bail!(
            "no config at {}: pass --config FILE or set FLOTILLA_CONFIG (an agent writes admin.yaml into its data dir)",
            cfg.display()
        );
    }
    let admin = AdminConfig::load(cfg)?;
    let server = a.server.unwrap_or_else(|| admin.server.clone());
    let url = reqwest::Url::parse(&server)
        .map_err(|e| anyhow::anyhow!("--server {server:?} is not a URL: {e}"))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        bail!("--server {server:?}: expected https://HOST:PORT (the API speaks only TLS)");
    }
    let host = url.host_str().unwrap_or("");
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        eprintln!(
            "note: the server is a loopback address, reachable only from this machine; pass --server https://ADDRESS:PORT for another one"
        );
    }
    print!(
        "{}",
        Kubeconfig::admin(
            server.trim_end_matches('/'),
            &admin.certificate_authority,
            &admin.token
        )
        .to_yaml()?
    );
    Ok(0)
}
