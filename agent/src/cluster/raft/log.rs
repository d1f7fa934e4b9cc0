//! The Raft log in the node's SQLite file (`raft_log`, `raft_state`), with synchronous
//! commits: an entry is on disk before openraft is told it is.

// openraft's `StorageError` is large; its traits return it, so boxing it would not help.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::SqlitePool;

use super::TypeConfig;

type Error = StorageError<u64>;

/// Turns any error into openraft's storage error of the given kind.
pub(super) fn io<E: std::error::Error + 'static>(
    kind: impl FnOnce(AnyError) -> StorageIOError<u64>,
) -> impl FnOnce(E) -> Error {
    move |e| kind(AnyError::new(&e)).into()
}

/// A value of `raft_state`, read through a pool or inside a transaction.
pub(super) async fn get_state<'e, T: DeserializeOwned>(
    db: impl sqlx::SqliteExecutor<'e>,
    key: &str,
) -> Result<Option<T>, Error> {
    let raw: Option<Vec<u8>> = sqlx::query_scalar("SELECT value FROM raft_state WHERE key = ?")
        .bind(key)
        .fetch_optional(db)
        .await
        .map_err(io(StorageIOError::read))?;
    raw.map(|b| serde_json::from_slice(&b).map_err(io(StorageIOError::read)))
        .transpose()
}

pub(super) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("raft state serialises")
}

async fn put_state<T: Serialize>(pool: &SqlitePool, key: &str, v: &T) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT OR REPLACE INTO raft_state (key, value) VALUES (?, ?)")
        .bind(key)
        .bind(encode(v))
        .execute(pool)
        .await
        .map(|_| ())
}

/// The log; cheap to clone (a pool handle and the file's writer lock).
#[derive(Clone)]
pub struct LogStore {
    pool: SqlitePool,
    /// The store's own connections, for the append, the reads of entries and the committed
    /// index (every write goes through these).
    direct: std::sync::Arc<crate::store::Direct>,
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl LogStore {
    pub fn new(store: &crate::store::Store) -> LogStore {
        LogStore {
            pool: store.pool().clone(),
            direct: store.direct.clone(),
            writer: store.writer(),
        }
    }
}

fn index_range<RB: RangeBounds<u64>>(range: &RB) -> (i64, i64) {
    let lo = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let hi = match range.end_bound() {
        Bound::Included(&i) => i.saturating_add(1),
        Bound::Excluded(&i) => i,
        Bound::Unbounded => u64::MAX,
    };
    (
        lo.min(i64::MAX as u64) as i64,
        hi.min(i64::MAX as u64) as i64,
    )
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, Error> {
        let (lo, hi) = index_range(&range);
        // SQLite's errors outside, the entries' own inside.
        self.direct
            .read_latest(|c| {
                let mut q = c.prepare_cached(
                    "SELECT entry FROM raft_log WHERE idx >= ? AND idx < ? ORDER BY idx",
                )?;
                let mut rows = q.query((lo, hi))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    match serde_json::from_slice(crate::store::blob(r, 0)?) {
                        Ok(e) => out.push(e),
                        Err(e) => return Ok(Err(io(StorageIOError::read_logs)(e))),
                    }
                }
                Ok::<_, rusqlite::Error>(Ok(out))
            })
            .map_err(io(StorageIOError::read_logs))?
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, Error> {
        let purged: Option<LogId<u64>> = get_state(&self.pool, "purged").await?;
        let last: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT entry FROM raft_log ORDER BY idx DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(io(StorageIOError::read_logs))?;
        let last = match last {
            Some(b) => {
                let e: Entry<TypeConfig> =
                    serde_json::from_slice(&b).map_err(io(StorageIOError::read_logs))?;
                Some(e.log_id)
            }
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), Error> {
        let _w = self.writer.lock().await;
        put_state(&self.pool, "vote", vote)
            .await
            .map_err(io(StorageIOError::write_vote))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, Error> {
        get_state(&self.pool, "vote").await
    }

    /// Not synced: the index is a hint that lets a restarted node apply what it knows was
    /// committed before it hears from a leader, and openraft calls this on every commit, which
    /// sits between the log's sync and the apply on the leader's write path. The WAL is one
    /// sequential file, so the next synced append makes it durable too; a power cut loses at
    /// most a recent hint, never an entry (the entries themselves are synced).
    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), Error> {
        let _w = self.writer.lock().await;
        self.direct
            .write(false, |c| {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO raft_state (key, value) VALUES ('committed', ?)",
                )?
                .execute([encode(&committed)])
            })
            .map(|_| ())
            .map_err(io(StorageIOError::write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, Error> {
        Ok(get_state::<Option<LogId<u64>>>(&self.pool, "committed")
            .await?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), Error>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows: Vec<(i64, i64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| {
                (
                    e.log_id.index as i64,
                    e.log_id.leader_id.term as i64,
                    encode(&e),
                )
            })
            .collect();
        let _w = self.writer.lock().await;
        // One trip to SQLite for the whole batch, synced at commit.
        let r = self.direct.write(true, |c| {
            crate::store::transaction(c, |c| {
                let mut insert = c.prepare_cached(
                    "INSERT OR REPLACE INTO raft_log (idx, term, entry) VALUES (?, ?, ?)",
                )?;
                for row in &rows {
                    insert.execute((row.0, row.1, &row.2))?;
                }
                Ok(())
            })
        });
        match r {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io(StorageIOError::write_logs)(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), Error> {
        let _w = self.writer.lock().await;
        sqlx::query("DELETE FROM raft_log WHERE idx >= ?")
            .bind(log_id.index as i64)
            .execute(&self.pool)
            .await
            .map_err(io(StorageIOError::write_logs))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), Error> {
        let _w = self.writer.lock().await;
        let r = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("INSERT OR REPLACE INTO raft_state (key, value) VALUES ('purged', ?)")
                .bind(encode(&log_id))
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM raft_log WHERE idx <= ?")
                .bind(log_id.index as i64)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await;
        r.map_err(io(StorageIOError::write_logs))
    }
}
