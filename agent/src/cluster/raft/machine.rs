//! The state machine is the node's [`Store`]: a committed entry's [`Write`] is applied with the
//! applied log id (and membership) in the same SQLite transaction, so after a power cut the
//! store and Raft agree on what was applied. A snapshot is a [`Dump`] of every object.

// openraft's `StorageError` is large; its traits return it, so boxing it would not help.
#![allow(clippy::result_large_err)]

use std::io::Cursor;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::log::{encode, get_state, io};
use super::{Member, Reply, TypeConfig};
use crate::store::{Dump, Rejection, Store};

type Error = StorageError<u64>;
type Meta = SnapshotMeta<u64, Member>;

/// What a snapshot's bytes hold.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    dump: Dump,
}

/// The store as openraft's state machine; cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    store: Store,
}

impl StateMachine {
    pub fn new(store: Store) -> StateMachine {
        StateMachine { store }
    }

    async fn membership(&self) -> Result<StoredMembership<u64, Member>, Error> {
        Ok(get_state(self.store.pool(), "membership")
            .await?
            .unwrap_or_default())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, Error> {
        // Objects, applied id and membership from one read transaction.
        let (dump, state) = self
            .store
            .dump_with_state(&["applied", "membership"])
            .await
            .map_err(io(StorageIOError::read_state_machine))?;
        fn parse<T: serde::de::DeserializeOwned>(b: &Option<Vec<u8>>) -> Result<Option<T>, Error> {
            b.as_deref()
                .map(serde_json::from_slice)
                .transpose()
                .map_err(io(StorageIOError::read_state_machine))
        }
        let applied: Option<LogId<u64>> = parse::<Option<LogId<u64>>>(&state[0])?.flatten();
        let membership: StoredMembership<u64, Member> = parse(&state[1])?.unwrap_or_default();
        let data = encode(&SnapshotData { dump });
        let meta = Meta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id: format!(
                "{}-{}-{}",
                applied.map(|l| l.leader_id.term).unwrap_or(0),
                applied.map(|l| l.index).unwrap_or(0),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0)
            ),
        };
        save_snapshot(&self.store, &meta, &data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

async fn save_snapshot(store: &Store, meta: &Meta, data: &[u8]) -> Result<(), Error> {
    let sig = Some(meta.signature());
    let writer = store.writer();
    let _w = writer.lock().await;
    let mut tx = store
        .pool()
        .begin()
        .await
        .map_err(io(move |e| StorageIOError::write_snapshot(sig, e)))?;
    for (k, v) in [
        ("snapshot_meta", encode(meta)),
        ("snapshot_data", data.to_vec()),
    ] {
        sqlx::query("INSERT OR REPLACE INTO raft_state (key, value) VALUES (?, ?)")
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await
            .map_err(io(StorageIOError::write))?;
    }
    tx.commit().await.map_err(io(StorageIOError::write))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, Member>), Error> {
        let applied: Option<LogId<u64>> =
            get_state::<Option<LogId<u64>>>(self.store.pool(), "applied")
                .await?
                .flatten();
        Ok((applied, self.membership().await?))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Reply>>, Error>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // One transaction for the whole batch: under load openraft hands over many entries at
        // once, and each transaction costs a disk sync.
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let mut state = vec![("applied", encode(&Some(last)))];
        if let Some((id, m)) = entries.iter().rev().find_map(|e| match &e.payload {
            EntryPayload::Membership(m) => Some((e.log_id, m.clone())),
            _ => None,
        }) {
            state.push(("membership", encode(&StoredMembership::new(Some(id), m))));
        }
        let batch: Vec<(u64, Vec<&crate::store::Write>)> = entries
            .iter()
            .map(|e| match &e.payload {
                EntryPayload::Normal(b) => (e.log_id.index, b.0.iter().collect()),
                _ => (e.log_id.index, Vec::new()),
            })
            .collect();
        let results = self
            .store
            .apply_replicated_batch(&batch, &state)
            .await
            .map_err(io(move |e| StorageIOError::apply(last, e)))?;
        Ok(results
            .into_iter()
            .map(|rs| {
                rs.into_iter()
                    .map(|r| r.map_err(|e| Rejection::from(&e)))
                    .collect()
            })
            .collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, Error> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), Error> {
        let data = snapshot.into_inner();
        let sig = Some(meta.signature());
        let parsed: SnapshotData = serde_json::from_slice(&data)
            .map_err(io(|e| StorageIOError::read_snapshot(sig.clone(), e)))?;
        self.store
            .restore(
                &parsed.dump,
                &[
                    ("applied", encode(&meta.last_log_id)),
                    (
                        "applied_index",
                        encode(&meta.last_log_id.map_or(0, |l| l.index)),
                    ),
                    ("membership", encode(&meta.last_membership)),
                ],
            )
            .await
            .map_err(io(move |e| StorageIOError::write_snapshot(sig, e)))?;
        save_snapshot(&self.store, meta, &data).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, Error> {
        let Some(meta) = get_state::<Meta>(self.store.pool(), "snapshot_meta").await? else {
            return Ok(None);
        };
        let data: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM raft_state WHERE key = 'snapshot_data'")
                .fetch_optional(self.store.pool())
                .await
                .map_err(io(StorageIOError::read))?
                .unwrap_or_default();
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
