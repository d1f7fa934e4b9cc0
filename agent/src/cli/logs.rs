//! `flotilla logs POD [-c C] [-f] [--tail N] [--previous] [--timestamps]`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use futures::StreamExt;
use reqwest::Method;

use super::client::Client;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The pod (or pod/NAME).
    pub pod: String,
    /// The container (needed when the pod has more than one).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep printing new lines until the container stops.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<i64>,
    /// The previous instance of the container (before its last restart).
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Prefix each line with its time (RFC 3339).
    #[arg(long)]
    pub timestamps: bool,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// `pod/NAME`, `pods/NAME` or `NAME`.
pub fn pod_name(arg: &str) -> &str {
    arg.strip_prefix("pod/")
        .or_else(|| arg.strip_prefix("pods/"))
        .unwrap_or(arg)
}

pub async fn run(cfg: &Path, a: LogsArgs) -> Result<i32> {
    let client = Client::from_config_file(cfg)?;
    let ns = a.namespace.unwrap_or_else(|| "default".into());
    let path = format!("/api/v1/namespaces/{ns}/pods/{}/log", pod_name(&a.pod));
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(c) = a.container {
        q.push(("container", c));
    }
    if a.follow {
        q.push(("follow", "true".into()));
    }
    if let Some(t) = a.tail.filter(|t| *t >= 0) {
        q.push(("tailLines", t.to_string()));
    }
    if a.previous {
        q.push(("previous", "true".into()));
    }
    if a.timestamps {
        q.push(("timestamps", "true".into()));
    }
    let resp = client.send(Method::GET, &path, &q, None).await?;
    let mut body = resp.bytes_stream();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("reading the log stream")?;
        out.write_all(&chunk)?;
        out.flush()?;
    }
    Ok(0)
}
