//! Dissemination beyond the quorum: nodes that are not members pull the log from peers.
//!
//! The leader replicates to the voters and to at most `standby` learners (nodes ready to
//! become voters). Every further node is a *puller*: it long-polls a peer for the committed
//! entries after the last one it applied ([`RaftRpc::Pull`](super::RaftRpc::Pull)), appends
//! them to its own log (so that it can serve them on) and applies them, or installs the peer's
//! snapshot when the peer no longer keeps the entries it needs. Which peer: one gossip shows
//! ahead of it, preferring other pullers and learners to voters, so the voters' load does not
//! grow with the fleet. Committed entries are the same on every node (Raft's log matching), so
//! it does not matter whose copy a puller gets.
//!
//! A puller's own openraft instance stays idle (it is in no membership). Should the leader
//! later make it a learner, openraft finds the pulled log and applied index on disk; entries it
//! applies again are skipped by index ([`crate::store::Store::apply_replicated_batch`]).

// openraft's `StorageError` is large; its traits return it, so boxing it would not help.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::time::{Duration, Instant};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, SnapshotMeta};
use openraft::{Entry, LogId};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::log::{encode, get_state};
use super::machine::StateMachine;
use super::{Member, TypeConfig};
use crate::store::Store;

/// Most entries in one answer.
pub const PULL_BATCH: u64 = 256;

/// What a peer answers a pull with.
#[derive(Debug, Serialize, Deserialize)]
pub enum Pulled {
    /// Committed entries after the index asked for, in order; none when the wait ran out.
    Entries(Vec<Entry<TypeConfig>>),
    /// The peer no longer keeps the entries asked for: its snapshot instead.
    Snapshot {
        meta: SnapshotMeta<u64, Member>,
        data: Vec<u8>,
    },
}

pub type PullAnswer = Result<Pulled, String>;

/// The index of the first entry this node has not applied: one past the last applied (0
/// before any; openraft's first entry, the initial membership, is at index 0).
pub async fn next_index(store: &Store) -> Result<u64, String> {
    let applied: Option<Option<LogId<u64>>> = get_state(store.pool(), "applied")
        .await
        .map_err(|e| e.to_string())?;
    Ok(applied.flatten().map_or(0, |l| l.index + 1))
}

async fn first_log_index(store: &Store) -> Result<Option<u64>, String> {
    let first: Option<i64> = sqlx::query_scalar("SELECT MIN(idx) FROM raft_log")
        .fetch_one(store.pool())
        .await
        .map_err(|e| e.to_string())?;
    Ok(first.map(|i| i as u64))
}

/// Serves a pull: the committed entries from index `from` on (at most [`PULL_BATCH`]),
/// waiting up to `wait` for one to be applied here; or this node's snapshot when it no longer
/// keeps them.
pub async fn serve(store: &Store, from: u64, wait: Duration) -> PullAnswer {
    let deadline = Instant::now() + wait;
    let mut changes = store.subscribe();
    loop {
        changes.mark_unchanged();
        let next = next_index(store).await?;
        if next > from {
            let first = first_log_index(store).await?;
            if first.is_none_or(|f| f > from) {
                let mut sm = StateMachine::new(store.clone());
                let current = sm.get_current_snapshot().await.map_err(|e| e.to_string())?;
                let snap = match current {
                    Some(s) if s.meta.last_log_id.is_some_and(|l| l.index >= from) => s,
                    _ => sm.build_snapshot().await.map_err(|e| e.to_string())?,
                };
                return Ok(Pulled::Snapshot {
                    meta: snap.meta,
                    data: snap.snapshot.into_inner(),
                });
            }
            let upto = next.min(from + PULL_BATCH);
            let rows =
                sqlx::query("SELECT entry FROM raft_log WHERE idx >= ? AND idx < ? ORDER BY idx")
                    .bind(from as i64)
                    .bind(upto as i64)
                    .fetch_all(store.pool())
                    .await
                    .map_err(|e| e.to_string())?;
            let entries = rows
                .iter()
                .map(|r| serde_json::from_slice(r.get::<&[u8], _>(0)).map_err(|e| e.to_string()))
                .collect::<Result<Vec<Entry<TypeConfig>>, String>>()?;
            return Ok(Pulled::Entries(entries));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Pulled::Entries(Vec::new()));
        }
        // Revisions wake us; entries that change no object (membership, blanks) are seen at
        // the next check.
        let _ = tokio::time::timeout(left.min(Duration::from_millis(250)), changes.changed()).await;
    }
}

/// Takes in what a peer sent: appends entries to the log and applies them, or installs the
/// snapshot (and drops the log it covers). Returns the next index to ask for.
pub async fn absorb(store: &Store, pulled: Pulled, keep: u64) -> Result<u64, String> {
    let mut sm = StateMachine::new(store.clone());
    match pulled {
        Pulled::Entries(entries) => {
            let Some(last) = entries.last().map(|e| e.log_id) else {
                return next_index(store).await;
            };
            append_committed(store, &entries).await?;
            sm.apply(entries).await.map_err(|e| e.to_string())?;
            // A puller keeps a bounded log, as members do after a snapshot.
            if let Some(first) = first_log_index(store).await?
                && last.index > first + 2 * keep
            {
                sm.build_snapshot().await.map_err(|e| e.to_string())?;
                purge(store, last.index - keep, None).await?;
            }
            Ok(last.index + 1)
        }
        Pulled::Snapshot { meta, data } => {
            let Some(last) = meta.last_log_id else {
                return next_index(store).await;
            };
            sm.install_snapshot(&meta, Box::new(Cursor::new(data)))
                .await
                .map_err(|e| e.to_string())?;
            purge(store, last.index, Some(last)).await?;
            Ok(last.index + 1)
        }
    }
}

/// Appends committed entries to this node's log, in one transaction.
async fn append_committed(store: &Store, entries: &[Entry<TypeConfig>]) -> Result<(), String> {
    let writer = store.writer();
    let _w = writer.lock().await;
    let r = async {
        let mut tx = store.pool().begin().await?;
        for e in entries {
            sqlx::query("INSERT OR REPLACE INTO raft_log (idx, term, entry) VALUES (?, ?, ?)")
                .bind(e.log_id.index as i64)
                .bind(e.log_id.leader_id.term as i64)
                .bind(encode(e))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
    .await;
    r.map_err(|e: sqlx::Error| e.to_string())
}

/// Drops log entries up to `index`, remembering the last one dropped (or `known`, the id at
/// `index` when the log may not hold it) as openraft does.
async fn purge(store: &Store, index: u64, known: Option<LogId<u64>>) -> Result<(), String> {
    let writer = store.writer();
    let _w = writer.lock().await;
    let r = async {
        let mut tx = store.pool().begin().await?;
        let last: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT entry FROM raft_log WHERE idx <= ? ORDER BY idx DESC LIMIT 1",
        )
        .bind(index as i64)
        .fetch_optional(&mut *tx)
        .await?;
        let last: Option<LogId<u64>> = known.or_else(|| {
            serde_json::from_slice::<Entry<TypeConfig>>(&last?)
                .ok()
                .map(|e| e.log_id)
        });
        if let Some(l) = last {
            sqlx::query("INSERT OR REPLACE INTO raft_state (key, value) VALUES ('purged', ?)")
                .bind(encode(&l))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM raft_log WHERE idx <= ?")
            .bind(index as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
    .await;
    r.map_err(|e: sqlx::Error| e.to_string())
}
