//! `flotilla rollout status|history|undo deployment/NAME`.
//!
//! A Deployment's revisions are its ReplicaSets, each annotated with
//! `deployment.kubernetes.io/revision`, as in Kubernetes.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use reqwest::Method;
use serde_json::Value;

use super::client::{Client, is_conflict};
use super::get::targets;
use crate::api::path::object_path;
use crate::controller::deployment::{revision, rollout_progress, template_for_undo};
use crate::controller::owned_by;
use crate::manifest::kinds;
use crate::manifest::lifecycle::{annotation, decode};

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub action: RolloutAction,
}

#[derive(Debug, Subcommand)]
pub enum RolloutAction {
    /// Wait until the Deployment's rollout is complete.
    Status {
        target: String,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// List the Deployment's revisions.
    History {
        target: String,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Stop rolling out template changes until resumed (scaling still works).
    Pause {
        target: String,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Roll out template changes again.
    Resume {
        target: String,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Roll back to the previous revision, or to --to-revision.
    Undo {
        target: String,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(long)]
        to_revision: Option<i64>,
    },
}

fn deployment_name(target: &str) -> Result<String> {
    let t = targets(target, &[])?;
    match t.as_slice() {
        [(info, Some(name))] if info.kind == "Deployment" => Ok(name.clone()),
        _ => bail!("expected deployment/NAME, got {target:?}"),
    }
}

/// The Deployment's ReplicaSets (its revisions), oldest first.
async fn replica_sets(client: &Client, ns: &str, dep: &Deployment) -> Result<Vec<ReplicaSet>> {
    let rs = kinds::by_kind("ReplicaSet").expect("ReplicaSet is a kind");
    let list = client.get(&object_path(rs, Some(ns), None), &[]).await?;
    let mut v: Vec<ReplicaSet> = Vec::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let r: ReplicaSet = decode(item.clone()).context("reading a ReplicaSet")?;
        if owned_by(&r.metadata, &dep.metadata) {
            v.push(r);
        }
    }
    v.sort_by_key(revision);
    Ok(v)
}

async fn deployment(client: &Client, path: &str) -> Result<(Value, Deployment)> {
    let v = client.get(path, &[]).await?;
    let typed = decode(v.clone()).context("reading the Deployment")?;
    Ok((v, typed))
}

/// What a read-modify-write of a Deployment changes.
enum Change {
    Template(Option<i64>),
    Paused(bool),
}

/// Reads the Deployment, applies `change`, writes it back; retries when controllers wrote the
/// Deployment in between (a 409 Conflict), as they do all through a rollout.
async fn update_deployment(client: &Client, ns: &str, name: &str, change: Change) -> Result<()> {
    let dep_kind = kinds::by_kind("Deployment").expect("Deployment is a kind");
    let path = object_path(dep_kind, Some(ns), Some(name));
    for attempt in 0.. {
        let (mut dep, typed) = deployment(client, &path).await?;
        match change {
            Change::Template(to_revision) => {
                if dep["spec"]["paused"] == true {
                    anyhow::bail!(
                        "you cannot rollback a paused deployment; resume it first with 'flotilla rollout resume deployment/{name}' and try again"
                    );
                }
                // As kubectl: revision 0 is the previous one.
                let to_revision = to_revision.filter(|r| *r != 0);
                let rss = replica_sets(client, ns, &typed).await?;
                let template =
                    template_for_undo(&typed, &rss, to_revision).map_err(anyhow::Error::msg)?;
                dep["spec"]["template"] = serde_json::to_value(template)?;
            }
            Change::Paused(p) => dep["spec"]["paused"] = Value::from(p),
        }
        match client.json(Method::PUT, &path, &[], Some(&dep)).await {
            Ok(_) => return Ok(()),
            Err(e) if is_conflict(&e) && attempt < 10 => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

pub async fn run(cfg: &Path, a: RolloutArgs) -> Result<i32> {
    let client = Client::from_config_file(cfg)?;
    let dep_kind = kinds::by_kind("Deployment").expect("Deployment is a kind");
    let ns_of = |n: Option<String>| n.unwrap_or_else(|| "default".into());
    match a.action {
        RolloutAction::Status {
            target,
            namespace,
            timeout,
        } => {
            let name = deployment_name(&target)?;
            let ns = ns_of(namespace);
            let start = Instant::now();
            let mut last = String::new();
            loop {
                let (_, dep) =
                    deployment(&client, &object_path(dep_kind, Some(&ns), Some(&name))).await?;
                let (done, msg) = rollout_progress(&dep);
                let exceeded = dep
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_deref())
                    .into_iter()
                    .flatten()
                    .any(|c| {
                        c.type_ == "Progressing"
                            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                    });
                let observed = dep
                    .status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .unwrap_or(0)
                    >= dep.metadata.generation.unwrap_or(0);
                if exceeded && observed {
                    // kubectl's words.
                    bail!("deployment {name:?} exceeded its progress deadline");
                }
                if msg != last {
                    println!("{msg}");
                    last = msg;
                }
                if done {
                    return Ok(0);
                }
                if start.elapsed() > Duration::from_secs(timeout) {
                    bail!("timed out waiting for the rollout of deployment {name:?} to finish");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        RolloutAction::History { target, namespace } => {
            let name = deployment_name(&target)?;
            let ns = ns_of(namespace);
            let (_, dep) =
                deployment(&client, &object_path(dep_kind, Some(&ns), Some(&name))).await?;
            println!("deployment.apps/{name}");
            let rows: Vec<Vec<String>> = replica_sets(&client, &ns, &dep)
                .await?
                .iter()
                .map(|rs| {
                    let cause =
                        annotation(&rs.metadata, "kubernetes.io/change-cause").unwrap_or("<none>");
                    vec![revision(rs).to_string(), cause.to_string()]
                })
                .collect();
            print!(
                "{}",
                super::printers::table(&["REVISION", "CHANGE-CAUSE"], &rows)
            );
            Ok(0)
        }
        RolloutAction::Undo {
            target,
            namespace,
            to_revision,
        } => {
            let name = deployment_name(&target)?;
            update_deployment(
                &client,
                &ns_of(namespace),
                &name,
                Change::Template(to_revision),
            )
            .await?;
            println!("deployment.apps/{name} rolled back");
            Ok(0)
        }
        RolloutAction::Pause { target, namespace } => {
            let name = deployment_name(&target)?;
            update_deployment(&client, &ns_of(namespace), &name, Change::Paused(true)).await?;
            println!("deployment.apps/{name} paused");
            Ok(0)
        }
        RolloutAction::Resume { target, namespace } => {
            let name = deployment_name(&target)?;
            update_deployment(&client, &ns_of(namespace), &name, Change::Paused(false)).await?;
            println!("deployment.apps/{name} resumed");
            Ok(0)
        }
    }
}
