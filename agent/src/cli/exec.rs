//! `flotilla exec POD [-c C] [-i] -- CMD [ARG...]`: runs a command in a pod's container and
//! exits with its exit code.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::Args;

use super::client::Client;
use super::logs::pod_name;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The pod (or pod/NAME).
    pub pod: String,
    /// The container (needed when the pod has more than one).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass this program's stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub async fn run(cfg: &Path, a: ExecArgs) -> Result<i32> {
    if a.command.is_empty() {
        bail!("exec needs a command: flotilla exec POD -- CMD [ARG...]");
    }
    let client = Client::from_config_file(cfg)?;
    let ns = a.namespace.unwrap_or_else(|| "default".into());
    let mut path = format!("/api/v1/namespaces/{ns}/pods/{}/exec?", pod_name(&a.pod));
    let mut q: Vec<(&str, &str)> = a.command.iter().map(|c| ("command", c.as_str())).collect();
    if let Some(c) = &a.container {
        q.push(("container", c));
    }
    if a.stdin {
        q.push(("stdin", "true"));
    }
    path.push_str(&serde_urlencoded::to_string(&q).context("encoding the command")?);
    let body = if a.stdin {
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b)?;
        b
    } else {
        Vec::new()
    };
    let resp = client
        .send_body(
            reqwest::Method::POST,
            &path,
            "application/octet-stream",
            reqwest::Body::from(body),
        )
        .await?;
    let v: serde_json::Value = resp.json().await.context("reading the exec answer")?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |k: &str| b64.decode(v[k].as_str().unwrap_or("")).unwrap_or_default();
    std::io::stdout().write_all(&decode("stdout"))?;
    std::io::stderr().write_all(&decode("stderr"))?;
    Ok(v["exitCode"].as_i64().unwrap_or(1) as i32)
}
