//! Connections of the store's own to its SQLite file, driven through rusqlite on the calling
//! thread, for the paths every write takes: the Raft log's append and reads, the committed
//! index, the apply of committed entries, and object reads.
//!
//! sqlx runs each of its connections on a thread of its own, so every query is a trip to that
//! thread and back (two context switches, a channel each way), and reaching the raw handle
//! (`lock_handle`) is such a trip too. On a small board, or a VM, switches are what a
//! replicated write spent most of its CPU on (docs/DECISIONS.md). These connections are plain
//! values behind a mutex: a read runs right where it is asked for (a WAL read never waits for a
//! writer, and the caller decodes the rows in place anyway); a synced write, which waits for
//! the disk, runs under `block_in_place` so the runtime moves this thread's other tasks
//! elsewhere; an unsynced one runs in place. Statements stay prepared for the connection's
//! life.
//!
//! All writes go through one connection, switched between synced and unsynced commits. A
//! connection that sees the file changed by another connection throws its whole page cache
//! away at its next transaction, and reads the pages back (a `pread` and an allocation each):
//! with a connection per kind of commit, the log's append and the apply did that for each
//! other on every entry. For the same reason the log's entries, which the leader reads back
//! right after writing them, are read on the writer connection when it is free.
//!
//! sqlx still opens the file, checks it, migrates it, and serves the paths that are not hot.
//! Both link the same libsqlite3-sys, so SQLite's locks see every connection of the process.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::Connection;

/// Read connections kept for reuse; more are opened when reads overlap, and closed after.
const KEEP_READERS: usize = 4;

pub(crate) struct Direct {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
}

/// The connection all writes take, and whether its commits are synced now.
struct Writer {
    conn: Connection,
    synced: bool,
}

impl Writer {
    /// Synced commits: the Raft log, single-node writes. They checkpoint the WAL into the
    /// database too (SQLite does it in the commit that crosses 1,000 pages, with a sync of the
    /// database file). Unsynced commits (applies of entries already synced in the log) neither
    /// sync nor checkpoint, so they never wait for the disk; the next synced commit makes them
    /// durable, the WAL being one sequential file.
    fn set_synced(&mut self, synced: bool) -> rusqlite::Result<()> {
        if self.synced != synced {
            let (synchronous, checkpoint) = if synced {
                (
                    "PRAGMA synchronous = FULL",
                    "PRAGMA wal_autocheckpoint = 1000",
                )
            } else {
                (
                    "PRAGMA synchronous = NORMAL",
                    "PRAGMA wal_autocheckpoint = 0",
                )
            };
            // The checkpoint pragma answers a row.
            self.conn.prepare_cached(synchronous)?.execute([])?;
            self.conn.prepare_cached(checkpoint)?.query([])?.next()?;
            self.synced = synced;
        }
        Ok(())
    }
}

/// Opens a connection, with unsynced commits that never checkpoint (see [`Writer`]).
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(10))?;
    c.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0; \
         PRAGMA cache_size = -2000; PRAGMA journal_size_limit = 67108864;",
    )?;
    c.set_prepared_statement_cache_capacity(32);
    Ok(c)
}

/// Runs `f`, which waits for the disk, without holding up the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

impl Direct {
    /// Opens the connections to a file that sqlx has already created and migrated (in WAL
    /// mode, which the file keeps).
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Direct> {
        Ok(Direct {
            path: path.to_path_buf(),
            writer: Mutex::new(Writer {
                conn: connect(path)?,
                synced: false,
            }),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// `f` on the writer connection, its commits synced (`synced`) or not. The caller holds
    /// the store's write lock: SQLite has one writer at a time. A synced commit waits for the
    /// disk, so it runs under `block_in_place`; an unsynced one neither syncs nor checkpoints,
    /// and runs in place like a read (handing the thread's tasks over would cost more than it).
    pub(crate) fn write<T, E: From<rusqlite::Error>>(
        &self,
        synced: bool,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let run = || {
            let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            w.set_synced(synced)?;
            f(&w.conn)
        };
        if synced { blocking(run) } else { run() }
    }

    /// `f` on a read connection (a statement's snapshot, or a transaction's if `f` opens one).
    pub(crate) fn read<T, E: From<rusqlite::Error>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let taken = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let c = match taken {
            Some(c) => c,
            None => connect(&self.path)?,
        };
        let out = f(&c);
        if c.is_autocommit() {
            let mut keep = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            if keep.len() < KEEP_READERS {
                keep.push(c);
            }
        }
        out
    }

    /// Like [`Direct::read`], on the writer connection if no write holds it (its page cache
    /// has what was just written), else on a read connection. `f` must not leave a
    /// transaction open.
    pub(crate) fn read_latest<T, E: From<rusqlite::Error>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        match self.writer.try_lock() {
            Ok(w) if w.conn.is_autocommit() => f(&w.conn),
            _ => self.read(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_and_unsynced_writes_are_read_back_and_readers_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER);")
            .unwrap();
        let d = Direct::open(&path).unwrap();
        // SQLite's own word for the commits' syncing: 2 is FULL, 1 NORMAL.
        let synchronous = |c: &Connection| c.query_row("PRAGMA synchronous", [], |r| r.get(0));
        let mode: i64 = d
            .write(true, |c| {
                c.execute("INSERT INTO t VALUES (1)", [])?;
                synchronous(c)
            })
            .unwrap();
        assert_eq!(mode, 2);
        let mode: i64 = d
            .write(false, |c| {
                c.execute("INSERT INTO t VALUES (2)", [])?;
                synchronous(c)
            })
            .unwrap();
        assert_eq!(mode, 1);
        assert_eq!(
            d.read_latest(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0)))
                .unwrap(),
            2
        );
        let sum = |d: &Direct| {
            d.read(|c| c.query_row("SELECT SUM(v) FROM t", [], |r| r.get::<_, i64>(0)))
                .unwrap()
        };
        assert_eq!(sum(&d), 3);
        // A read that fails leaves its connection usable; one left inside a transaction is
        // not kept.
        assert!(d.read(|c| c.execute("SELECT nope FROM t", [])).is_err());
        d.read(|c| c.execute_batch("BEGIN")).unwrap();
        assert_eq!(sum(&d), 3);
        assert_eq!(d.readers.lock().unwrap().len(), 1);
    }
}
