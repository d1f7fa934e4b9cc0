//! The `flotilla` command line: one file per command, argument structs here.
//!
//! `agent` runs a node; every other command is a client of some agent's API, found through
//! `--config`, `$FLOTILLA_CONFIG` or `/var/lib/flotilla/admin.yaml`.

pub mod agent;
pub mod apply;
pub mod client;
pub mod delete;
pub mod describe;
pub mod exec;
pub mod get;
pub mod image;
pub mod kubeconfig;
pub mod label;
pub mod logs;
pub mod node;
pub use crate::manifest::printers;
pub mod reset;
pub mod rollout;
pub mod scale;
pub mod token;
pub mod top;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Flotilla: a container orchestrator for edge fleets, one binary per node.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about, propagate_version = true)]
pub struct Cli {
    /// CLI config: a kubeconfig (an agent's admin.yaml is one); also read from $FLOTILLA_CONFIG.
    #[arg(long, global = true, env = "FLOTILLA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run this node's agent in the foreground.
    Agent(agent::AgentArgs),
    /// Create or update objects from YAML/JSON files, directories or stdin (-), all or nothing.
    Apply(apply::ApplyArgs),
    /// List objects, or show some by name.
    Get(get::GetArgs),
    /// Show an object in detail, with its events.
    Describe(describe::DescribeArgs),
    /// Delete objects by file, by name or by label selector.
    Delete(delete::DeleteArgs),
    /// Set the replicas of a Deployment or ReplicaSet.
    Scale(scale::ScaleArgs),
    /// Watch, list or undo a Deployment's rollouts.
    Rollout(rollout::RolloutArgs),
    /// Print the logs of a pod's container.
    Logs(logs::LogsArgs),
    /// Run a command in a pod's container.
    Exec(exec::ExecArgs),
    /// Import, list and remove the images of a node.
    Image(image::ImageArgs),
    /// Show the CPU and memory nodes and pods use now (the resource metrics).
    Top(top::TopArgs),
    /// Set (key=value) or remove (key-) labels of an object, e.g. a node.
    Label(label::LabelArgs),
    /// Mark a node unschedulable: no new pods go there.
    Cordon(node::CordonArgs),
    /// Make a cordoned node schedulable again.
    Uncordon(node::CordonArgs),
    /// Cordon a node and move its pods elsewhere, within each Deployment's maxUnavailable.
    Drain(node::DrainArgs),
    /// Print the admin kubeconfig of this cluster, for kubectl on another machine.
    Kubeconfig(kubeconfig::KubeconfigArgs),
    /// Create, list and revoke join tokens.
    Token(token::TokenArgs),
    /// Stop and remove every container and pod of a stopped node (identity and store stay).
    Reset(reset::ResetArgs),
    /// The per-container shim (started by the agent, not by people).
    #[command(hide = true)]
    Shim(ShimArgs),
}

#[derive(Debug, clap::Args)]
pub struct ShimArgs {
    #[arg(long)]
    pub root: PathBuf,
    #[arg(long)]
    pub id: String,
    /// Run a command inside the running container instead (the exec helper).
    #[arg(long)]
    pub exec: bool,
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    // The agent and reset work on a data dir and write its admin.yaml; a --config given to
    // them on the command line would be ignored (one in the environment is for the clients).
    if matches!(cli.command, Command::Agent(_) | Command::Reset(_))
        && std::env::args().any(|a| a == "--config" || a.starts_with("--config="))
    {
        anyhow::bail!(
            "--config is for client commands; the agent and reset take --data-dir (the agent writes DIR/admin.yaml)"
        );
    }
    let cfg = client::config_path(cli.config.as_deref());
    match cli.command {
        Command::Agent(a) => agent::run(a).await.map(|()| 0),
        Command::Apply(a) => apply::run(&cfg, a).await,
        Command::Get(a) => get::run(&cfg, a).await,
        Command::Describe(a) => describe::run(&cfg, a).await,
        Command::Delete(a) => delete::run(&cfg, a).await,
        Command::Scale(a) => scale::run(&cfg, a).await,
        Command::Rollout(a) => rollout::run(&cfg, a).await,
        Command::Image(a) => image::run(&cfg, a).await,
        Command::Token(a) => token::run(&cfg, a).await,
        Command::Kubeconfig(a) => kubeconfig::run(&cfg, a),
        Command::Label(a) => label::run(&cfg, a).await,
        Command::Cordon(a) => node::cordon(&cfg, a, true).await,
        Command::Uncordon(a) => node::cordon(&cfg, a, false).await,
        Command::Drain(a) => node::drain(&cfg, a).await,
        Command::Logs(a) => logs::run(&cfg, a).await,
        Command::Exec(a) => exec::run(&cfg, a).await,
        Command::Top(a) => top::run(&cfg, a).await,
        Command::Reset(a) => reset::run(a),
        Command::Shim(_) => {
            anyhow::bail!("the shim runs before the async runtime starts (see main.rs)")
        }
    }
}
