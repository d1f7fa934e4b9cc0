//! `flotilla scale deployment/NAME --replicas N`.

use std::path::Path;

use anyhow::{Result, bail};
use clap::Args;
use reqwest::Method;
use serde_json::json;

use super::apply::display_name;
use super::client::Client;
use super::get::targets;
use crate::api::path::object_path;

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// deployment/NAME or replicaset/NAME (or KIND NAME).
    pub target: String,
    pub name: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub replicas: i64,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

pub async fn run(cfg: &Path, a: ScaleArgs) -> Result<i32> {
    if a.replicas < 0 {
        bail!(
            "--replicas: {} must be greater than or equal to 0",
            a.replicas
        );
    }
    let names: Vec<String> = a.name.into_iter().collect();
    let t = targets(&a.target, &names)?;
    let ns = a.namespace.unwrap_or_else(|| "default".into());
    let client = Client::from_config_file(cfg)?;
    for (info, name) in t {
        let Some(name) = name else {
            bail!("scale needs a name: deployment/NAME")
        };
        if !matches!(info.kind, "Deployment" | "ReplicaSet") {
            bail!(
                "{} cannot be scaled; use a deployment or replicaset",
                info.plural
            );
        }
        let path = format!("{}/scale", object_path(info, Some(&ns), Some(&name)));
        let body = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": name, "namespace": ns}, "spec": {"replicas": a.replicas}});
        client.json(Method::PUT, &path, &[], Some(&body)).await?;
        println!(
            "{} scaled",
            display_name(info.kind, info.api_version, &name)
        );
    }
    Ok(0)
}
