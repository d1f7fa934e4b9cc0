//! `flotilla delete (-f FILE | KIND NAME... | KIND -l SEL | KIND --all)`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use reqwest::Method;

use super::apply::display_name;
use super::client::{Client, is_not_found};
use super::get::{resolve_kind, targets};
use crate::api::path::object_path;
use crate::manifest::kinds;

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kind, or KIND/NAME.
    pub kind: Option<String>,
    pub names: Vec<String>,
    /// Delete the objects named in these files.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Delete the objects of KIND matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete every object of KIND in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Leave what the objects own (their ReplicaSets, Pods) in place.
    #[arg(long)]
    pub cascade_orphan: bool,
    /// Do not report objects that do not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
}

pub async fn run(cfg: &Path, a: DeleteArgs) -> Result<i32> {
    let ns = a.namespace.clone().unwrap_or_else(|| "default".into());
    let mut victims: Vec<(&'static kinds::KindInfo, String, String)> = Vec::new(); // kind, ns, name
    let client = Client::from_config_file(cfg)?;
    if !a.files.is_empty() {
        if a.kind.is_some() {
            bail!("give either -f or KIND NAME, not both");
        }
        let docs = super::apply::read_documents(&a.files).map_err(|errs| {
            anyhow::anyhow!(
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        for d in docs {
            let kind = d.value["kind"].as_str().unwrap_or("");
            let info = kinds::by_kind(kind).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}, document {}: unsupported kind {kind:?}",
                    d.source,
                    d.document
                )
            })?;
            let name = d.value["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let obj_ns = d.value["metadata"]["namespace"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| ns.clone());
            victims.push((info, obj_ns, name));
        }
    } else {
        let Some(kind) = &a.kind else {
            bail!("give -f FILE, or KIND with names, -l SELECTOR or --all")
        };
        if a.selector.is_some() || a.all {
            if !a.names.is_empty() {
                bail!("give names or a selector (-l/--all), not both");
            }
            let info = resolve_kind(kind)?;
            let query: Vec<(&str, String)> = a
                .selector
                .iter()
                .map(|s| ("labelSelector", s.clone()))
                .collect();
            let list = client
                .get(&object_path(info, Some(&ns), None), &query)
                .await?;
            for o in list["items"].as_array().into_iter().flatten() {
                let obj_ns = o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                victims.push((
                    info,
                    obj_ns,
                    o["metadata"]["name"].as_str().unwrap_or("").to_string(),
                ));
            }
            if victims.is_empty() {
                eprintln!("No resources found");
            }
        } else {
            let t = targets(kind, &a.names)?;
            if t.iter().any(|(_, n)| n.is_none()) {
                bail!(
                    "resource(s) were provided, but no name was specified (use -l SELECTOR or --all)"
                );
            }
            victims.extend(
                t.into_iter()
                    .map(|(k, n)| (k, ns.clone(), n.unwrap_or_default())),
            );
        }
    }
    let mut code = 0;
    let query: Vec<(&str, String)> = if a.cascade_orphan {
        vec![("propagationPolicy", "Orphan".to_string())]
    } else {
        vec![]
    };
    for (info, obj_ns, name) in victims {
        let path = object_path(info, Some(&obj_ns), Some(&name));
        match client.send(Method::DELETE, &path, &query, None).await {
            Ok(_) => println!(
                "{} deleted",
                display_name(info.kind, info.api_version, &name)
            ),
            Err(e) if is_not_found(&e) && a.ignore_not_found => {}
            Err(e) => {
                eprintln!("Error from server: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}
