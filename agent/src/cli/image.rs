//! `flotilla image import FILE | pull REF | ls | rm REF`: the images of the node the CLI talks to.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use reqwest::Method;

use super::client::Client;
use super::printers;

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub action: ImageAction,
}

#[derive(Debug, Subcommand)]
pub enum ImageAction {
    /// Import an OCI image layout or `docker save` tarball (for air-gapped nodes).
    Import { file: PathBuf },
    /// Pull an image from its registry (HTTPS; plain HTTP for registries on 127.0.0.1).
    Pull {
        reference: String,
        /// Registry user (the password is read from stdin with --password-stdin).
        #[arg(long, requires = "password_stdin")]
        username: Option<String>,
        #[arg(long, requires = "username")]
        password_stdin: bool,
    },
    /// List the node's images.
    #[command(alias = "list")]
    Ls,
    /// Remove an image; layers no other image or container uses are deleted.
    #[command(alias = "remove")]
    Rm { reference: String },
}

/// `1.0 MB` as Docker prints sizes (powers of 1000).
pub fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

pub async fn run(cfg: &Path, a: ImageArgs) -> Result<i32> {
    let client = Client::from_config_file(cfg)?;
    match a.action {
        ImageAction::Import { file } => {
            let f = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("opening {}", file.display()))?;
            let resp = client
                .send_body(
                    Method::POST,
                    "/apis/flotilla.io/v1/images/import",
                    "application/x-tar",
                    reqwest::Body::from(f),
                )
                .await?;
            let v: serde_json::Value = resp.json().await?;
            for i in v["items"].as_array().into_iter().flatten() {
                println!(
                    "{} imported ({}, {} layers, {})",
                    i["reference"].as_str().unwrap_or(""),
                    i["digest"].as_str().unwrap_or(""),
                    i["layers"],
                    human_size(i["size"].as_u64().unwrap_or(0))
                );
            }
        }
        ImageAction::Pull {
            reference,
            username,
            password_stdin,
        } => {
            let mut body = serde_json::json!({ "reference": reference });
            if let Some(u) = username {
                let mut p = String::new();
                if password_stdin {
                    std::io::stdin()
                        .read_line(&mut p)
                        .context("reading the password from stdin")?;
                }
                body["username"] = u.into();
                body["password"] = p.trim_end_matches(['\n', '\r']).into();
            }
            let v = client
                .json(
                    Method::POST,
                    "/apis/flotilla.io/v1/images/pull",
                    &[],
                    Some(&body),
                )
                .await?;
            for i in v["items"].as_array().into_iter().flatten() {
                println!(
                    "{} pulled ({}, {} layers, {})",
                    i["reference"].as_str().unwrap_or(""),
                    i["digest"].as_str().unwrap_or(""),
                    i["layers"],
                    human_size(i["size"].as_u64().unwrap_or(0))
                );
            }
        }
        ImageAction::Ls => {
            let v = client.get("/apis/flotilla.io/v1/images", &[]).await?;
            let rows: Vec<Vec<String>> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    let d = i["digest"].as_str().unwrap_or("");
                    vec![
                        i["reference"].as_str().unwrap_or("").to_string(),
                        d.strip_prefix("sha256:")
                            .map(|h| h[..12.min(h.len())].to_string())
                            .unwrap_or_default(),
                        i["layers"].to_string(),
                        human_size(i["size"].as_u64().unwrap_or(0)),
                    ]
                })
                .collect();
            print!(
                "{}",
                printers::table(&["IMAGE", "DIGEST", "LAYERS", "SIZE"], &rows)
            );
        }
        ImageAction::Rm { reference } => {
            client
                .send(
                    Method::DELETE,
                    "/apis/flotilla.io/v1/images",
                    &[("ref", reference.clone())],
                    None,
                )
                .await?;
            println!("{reference} removed");
        }
    }
    Ok(0)
}
