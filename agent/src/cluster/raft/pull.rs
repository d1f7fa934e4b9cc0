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

/// Bytes of a snapshot in one answer: a store of tens of thousands of objects is tens of
/// megabytes, more than one message may carry, and a slow link must still bring a part of it
/// within a request's time.
pub const SNAPSHOT_CHUNK: u64 = 1 << 20;

/// What a peer answers a pull with.
#[derive(Debug, Serialize, Deserialize)]
pub enum Pulled {
    /// Committed entries after the index asked for, in order; none when the wait ran out.
    Entries(Vec<Entry<TypeConfig>>),
    /// The peer no longer keeps the entries asked for: its snapshot instead, of `size` bytes,
    /// to fetch in parts ([`RaftRpc::PullSnapshot`](super::RaftRpc::PullSnapshot)).
    Snapshot {
        meta: SnapshotMeta<u64, Member>,
        size: u64,
    },
}

pub type PullAnswer = Result<Pulled, String>;

/// A part of a snapshot (base64 in the JSON message).
#[derive(Debug, Serialize, Deserialize)]
pub struct Chunk(#[serde(with = "base64_bytes")] pub Vec<u8>);

pub type ChunkAnswer = Result<Chunk, String>;

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

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
                let current = snapshot_meta(store).await?;
                let meta = match current {
                    Some(m) if m.last_log_id.is_some_and(|l| l.index >= from) => m,
                    _ => {
                        let mut sm = StateMachine::new(store.clone());
                        sm.build_snapshot().await.map_err(|e| e.to_string())?.meta
                    }
                };
                let size: i64 = sqlx::query_scalar(
                    "SELECT length(value) FROM raft_state WHERE key = 'snapshot_data'",
                )
                .fetch_optional(store.pool())
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or(0);
                return Ok(Pulled::Snapshot {
                    meta,
                    size: size as u64,
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

async fn snapshot_meta(store: &Store) -> Result<Option<SnapshotMeta<u64, Member>>, String> {
    get_state(store.pool(), "snapshot_meta")
        .await
        .map_err(|e| e.to_string())
}

/// Serves a part of this node's snapshot: [`SNAPSHOT_CHUNK`] bytes from `offset` (fewer at
/// the end), if the snapshot is still the one named `id` (a newer one replaces it: the puller
/// then starts over).
pub async fn serve_chunk(store: &Store, id: &str, offset: u64) -> ChunkAnswer {
    // One read transaction: the name and the bytes are of the same snapshot.
    let mut tx = store.pool().begin().await.map_err(|e| e.to_string())?;
    let meta: Option<SnapshotMeta<u64, Member>> = get_state(&mut *tx, "snapshot_meta")
        .await
        .map_err(|e| e.to_string())?;
    if meta.is_none_or(|m| m.snapshot_id != id) {
        return Err(format!("snapshot {id} is no longer kept here"));
    }
    // SQLite counts a blob's bytes from 1.
    let data: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT substr(value, ?, ?) FROM raft_state WHERE key = 'snapshot_data'",
    )
    .bind(offset as i64 + 1)
    .bind(SNAPSHOT_CHUNK as i64)
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| e.to_string())?;
    Ok(Chunk(data.unwrap_or_default()))
}

/// Takes in entries a peer sent: appends them to the log and applies them. Returns the next
/// index to ask for.
pub async fn absorb(
    store: &Store,
    entries: Vec<Entry<TypeConfig>>,
    keep: u64,
) -> Result<u64, String> {
    let Some(last) = entries.last().map(|e| e.log_id) else {
        return next_index(store).await;
    };
    let mut sm = StateMachine::new(store.clone());
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

/// Installs a peer's snapshot (and drops the log it covers). Returns the next index to ask
/// for.
pub async fn install(
    store: &Store,
    meta: &SnapshotMeta<u64, Member>,
    data: Vec<u8>,
) -> Result<u64, String> {
    let Some(last) = meta.last_log_id else {
        return next_index(store).await;
    };
    let mut sm = StateMachine::new(store.clone());
    sm.install_snapshot(meta, Box::new(Cursor::new(data)))
        .await
        .map_err(|e| e.to_string())?;
    purge(store, last.index, Some(last)).await?;
    Ok(last.index + 1)
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
