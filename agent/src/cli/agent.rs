//! `flotilla agent`: start (or resume) this node and serve until SIGTERM or SIGINT.

use anyhow::Result;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use crate::agent::Agent;
pub use crate::agent::Config as AgentArgs;

pub async fn run(a: AgentArgs) -> Result<()> {
    let mut agent = Agent::start(a).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let failed = tokio::select! {
        _ = term.recv() => { info!("SIGTERM: shutting down"); None }
        _ = int.recv() => { info!("SIGINT: shutting down"); None }
        r = agent.failed() => Some(r),
    };
    agent.shutdown().await;
    failed.unwrap_or(Ok(()))
}
