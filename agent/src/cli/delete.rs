//! `flotilla delete (-f FILE | KIND NAME... | KIND -l SEL | KIND --all)`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use reqwest::Method;
use serde_json::json;

use super::apply::DryRun;

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
    /// What happens to what the objects own (their ReplicaSets, Pods): `background` deletes
    /// it with them, `orphan` leaves it (without the owner reference), `foreground` keeps
    /// each object, marked deleted, until what it owns is gone.
    #[arg(long, value_enum, default_value_t = Cascade::Background)]
    pub cascade: Cascade,
    /// The same as `--cascade=orphan`.
    #[arg(long, conflicts_with = "cascade")]
    pub cascade_orphan: bool,
    /// Seconds a pod's containers get to stop (instead of its terminationGracePeriodSeconds);
    /// 0 needs --force. -1: the pod's own.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// With --grace-period=0: stop the containers at once.
    #[arg(long)]
    pub force: bool,
    /// The same as --grace-period=1.
    #[arg(long, conflicts_with = "grace_period")]
    pub now: bool,
    /// `server`: the cluster checks the delete and says what it would delete, deleting
    /// nothing; `client`: only say what would be deleted. `--dry-run` alone is `server`.
    #[arg(long, value_enum, num_args = 0..=1, default_value_t = super::apply::DryRun::None, default_missing_value = "server")]
    pub dry_run: super::apply::DryRun,
    /// Do not report objects that do not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// `--cascade`, as kubectl's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Cascade {
    Background,
    Orphan,
    Foreground,
}

pub async fn run(cfg: &Path, a: DeleteArgs) -> Result<i32> {
    let ns = a.namespace.clone().unwrap_or_else(|| "default".into());
    let mut victims: Vec<(&'static kinds::KindInfo, String, String)> = Vec::new(); // kind, ns, name
    let client = Client::from_config_file(cfg)?;
    if a.all && a.selector.is_some() {
        bail!("--all and -l cannot be combined: --all deletes every object of the kind");
    }
    if !a.files.is_empty() {
        if a.kind.is_some() {
            bail!("give either -f or KIND NAME, not both");
        }
        if a.all || a.selector.is_some() {
            bail!("give either -f or -l/--all, not both");
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
            let obj_ns = match (d.value["metadata"]["namespace"].as_str(), &a.namespace) {
                (Some(doc), Some(flag)) if doc != flag => bail!(
                    "{}, document {}: the namespace from the provided object {doc:?} does not match the namespace {flag:?}. You must pass '--namespace={doc}' to perform this operation.",
                    d.source,
                    d.document
                ),
                (Some(doc), _) => doc.to_string(),
                (None, _) => ns.clone(),
            };
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
    let cascade = if a.cascade_orphan {
        Cascade::Orphan
    } else {
        a.cascade
    };
    let grace = match (a.now, a.grace_period, a.force) {
        (true, _, _) => Some(1),
        (false, 0, false) => {
            bail!("--grace-period=0 stops the containers at once without waiting: give --force too")
        }
        (false, g, _) if g < 0 => {
            if a.force {
                Some(0)
            } else {
                None
            }
        }
        (false, g, _) => Some(g),
    };
    let mut options = json!({
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "propagationPolicy": match cascade {
            Cascade::Background => "Background",
            Cascade::Orphan => "Orphan",
            Cascade::Foreground => "Foreground",
        },
    });
    if let Some(g) = grace {
        options["gracePeriodSeconds"] = json!(g);
    }
    let suffix = match a.dry_run {
        DryRun::None => "",
        DryRun::Server => {
            options["dryRun"] = json!(["All"]);
            " (server dry run)"
        }
        DryRun::Client => " (dry run)",
    };
    for (info, obj_ns, name) in victims {
        let path = object_path(info, Some(&obj_ns), Some(&name));
        let sent = if a.dry_run == DryRun::Client {
            client.get(&path, &[]).await.map(|_| ())
        } else {
            client
                .send(Method::DELETE, &path, &[], Some(&options))
                .await
                .map(|_| ())
        };
        match sent {
            Ok(()) => println!(
                "{} deleted{suffix}",
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
