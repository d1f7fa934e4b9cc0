//! The store: every object in one SQLite file, and an ordered log of every change.
//!
//! # Model
//! A write is a [`Write`]: a list of [`Op`]s applied in one SQLite transaction, all or nothing.
//! Each op that changes something gets the next revision (a cluster-wide counter, shown to users
//! as `metadata.resourceVersion`) and one row in `log`. A [`Write`] carries everything that is
//! not a function of the current state (uids, the clock), so applying the same writes in the same
//! order gives the same database on every node: this is the state machine the cluster replicates.
//!
//! Reads never take the write lock; SQLite's WAL gives each read a consistent snapshot.
//! Watches read `log` from a revision and are woken through a `tokio::sync::watch` of the latest
//! revision; loops that care about some kinds only follow those through [`Store::changes`].
//! [`Store::compact`] trims `log` and checkpoints the WAL so the file stays bounded.
//! Secret bodies are encrypted with [`crypt::SecretCipher`].

pub mod changes;
pub mod crypt;
mod direct;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, SqlStr};
use tokio::sync::{Mutex, watch};

pub use changes::Changes;
pub use crypt::SecretCipher;
pub(crate) use direct::Direct;

/// What can go wrong in the store. API maps these to HTTP statuses in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} not found{}", ns_suffix(namespace))]
    NotFound {
        kind: String,
        namespace: String,
        name: String,
    },
    #[error("{kind} {name:?} already exists{}", ns_suffix(namespace))]
    AlreadyExists {
        kind: String,
        namespace: String,
        name: String,
    },
    #[error(
        "conflict: {kind} {name:?} is at resourceVersion {actual}, not {expected}; read it again and retry"
    )]
    Conflict {
        kind: String,
        name: String,
        expected: i64,
        actual: i64,
    },
    #[error(
        "revision {requested} has been compacted (oldest kept is {oldest}); list again to resume"
    )]
    Compacted { requested: i64, oldest: i64 },
    #[error("object has no {0}")]
    Incomplete(&'static str),
    #[error("database error")]
    Sqlite(#[from] sqlx::Error),
    /// The same, from the store's own connections (see `direct`).
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored object is not valid JSON")]
    Json(#[from] serde_json::Error),
    #[error("reading the secrets key {path}")]
    Key {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot decrypt {object}: wrong key or damaged data")]
    Decrypt { object: String },
    #[error("database integrity check failed: {0}")]
    Integrity(String),
    /// The cluster cannot commit a write now (no leader, or the leader lost its quorum).
    #[error("{0}")]
    NoQuorum(String),
    /// A Service claims a ClusterIP or NodePort another Service holds (two nodes allocated
    /// the same one at the same time, or a user asked for one in use).
    #[error("{0}")]
    Taken(String),
    /// A list or continue token asks for a revision this replica can no longer serve.
    #[error("{0}")]
    Expired(String),
    /// A delete's precondition (uid) does not hold.
    #[error("{0}")]
    Precondition(String),
    /// Another node failed the write for a reason this one cannot name more precisely.
    #[error("{0}")]
    Remote(String),
}

/// Why a write was refused, in a form that crosses the network (the answer of a replicated
/// write, applied on another node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Rejection {
    NotFound {
        kind: String,
        namespace: String,
        name: String,
    },
    AlreadyExists {
        kind: String,
        namespace: String,
        name: String,
    },
    Conflict {
        kind: String,
        name: String,
        expected: i64,
        actual: i64,
    },
    Incomplete(String),
    NoQuorum(String),
    Taken(String),
    Other(String),
    /// Added after the first release: older nodes answer such a refusal as `Other`.
    Precondition(String),
}

impl From<&StoreError> for Rejection {
    fn from(e: &StoreError) -> Rejection {
        match e.clone_plain() {
            Some(r) => r,
            None => Rejection::Other(e.to_string()),
        }
    }
}

impl StoreError {
    fn clone_plain(&self) -> Option<Rejection> {
        Some(match self {
            StoreError::NotFound {
                kind,
                namespace,
                name,
            } => Rejection::NotFound {
                kind: kind.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
            },
            StoreError::AlreadyExists {
                kind,
                namespace,
                name,
            } => Rejection::AlreadyExists {
                kind: kind.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
            },
            StoreError::Conflict {
                kind,
                name,
                expected,
                actual,
            } => Rejection::Conflict {
                kind: kind.clone(),
                name: name.clone(),
                expected: *expected,
                actual: *actual,
            },
            StoreError::Incomplete(what) => Rejection::Incomplete(what.to_string()),
            StoreError::NoQuorum(m) => Rejection::NoQuorum(m.clone()),
            StoreError::Taken(m) => Rejection::Taken(m.clone()),
            StoreError::Precondition(m) => Rejection::Precondition(m.clone()),
            _ => return None,
        })
    }
}

impl From<Rejection> for StoreError {
    fn from(r: Rejection) -> StoreError {
        match r {
            Rejection::NotFound {
                kind,
                namespace,
                name,
            } => StoreError::NotFound {
                kind,
                namespace,
                name,
            },
            Rejection::AlreadyExists {
                kind,
                namespace,
                name,
            } => StoreError::AlreadyExists {
                kind,
                namespace,
                name,
            },
            Rejection::Conflict {
                kind,
                name,
                expected,
                actual,
            } => StoreError::Conflict {
                kind,
                name,
                expected,
                actual,
            },
            Rejection::Incomplete(what) => match what.as_str() {
                "kind" => StoreError::Incomplete("kind"),
                "metadata.name" => StoreError::Incomplete("metadata.name"),
                _ => StoreError::Remote(format!("object has no {what}")),
            },
            Rejection::NoQuorum(m) => StoreError::NoQuorum(m),
            Rejection::Taken(m) => StoreError::Taken(m),
            Rejection::Precondition(m) => StoreError::Precondition(m),
            Rejection::Other(m) => StoreError::Remote(m),
        }
    }
}

/// Where writes go when this store is one replica of a cluster: the quorum orders them, and
/// every replica (this one too) applies them through [`Store::apply_replicated_batch`].
pub trait Proposer: Send + Sync {
    fn propose(
        &self,
        w: Write,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<Applied>, StoreError>> + Send>>;

    /// Returns once this replica holds everything the cluster committed before the call.
    fn read_barrier(
        &self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;
}

/// Everything a replica holds, as a snapshot carries it (Secrets decrypted: each node seals
/// them with its own key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dump {
    pub revision: i64,
    /// `(kind, namespace, name, revision, object)`.
    pub objects: Vec<(String, String, String, i64, Value)>,
}

fn ns_suffix(ns: &str) -> String {
    if ns.is_empty() {
        String::new()
    } else {
        format!(" in namespace {ns:?}")
    }
}

/// Identifies one object. `namespace` is empty for cluster-scoped kinds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Key {
        Key {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a full object (`kind`, `metadata.namespace`, `metadata.name`).
    pub fn of(obj: &Value) -> Result<Key, StoreError> {
        let kind = obj["kind"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or(StoreError::Incomplete("kind"))?;
        let name = obj["metadata"]["name"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or(StoreError::Incomplete("metadata.name"))?;
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
        Ok(Key::new(kind, ns, name))
    }

    fn aad(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }

    fn not_found(&self) -> StoreError {
        StoreError::NotFound {
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// One change in a [`Write`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Creates the object with this uid; fails if it exists.
    Create { object: Value, uid: String },
    /// Writes what a user owns (labels, annotations, ownerReferences, spec, data), keeping
    /// status and system metadata. Creates the object (with `uid`) when `create` is set and it
    /// does not exist. A `metadata.resourceVersion` in the object must match the stored one.
    Put {
        object: Value,
        uid: String,
        create: bool,
    },
    /// Replaces `status` only (nodes and controllers). A `resourceVersion`, if given, must match.
    Status { object: Value },
    /// Deletes the object. `resource_version` and `uid`, if given, must match (a delete's
    /// preconditions).
    Delete {
        key: Key,
        resource_version: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<String>,
        /// A pod's grace period asked for by the delete: the body the log keeps for the
        /// deletion carries it as `deletionTimestamp` and `deletionGracePeriodSeconds`, and the
        /// pod's node stops its containers within it instead of the pod's own
        /// `terminationGracePeriodSeconds`. (Absent in entries written before it existed.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grace_seconds: Option<i64>,
        /// Foreground propagation: the object stays, marked deleted with the
        /// `foregroundDeletion` finalizer, until the garbage collector has removed its
        /// dependents.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        foreground: bool,
    },
}

impl Op {
    /// Deletes `key` unconditionally, with the object's own grace period.
    pub fn delete(key: Key) -> Op {
        Op::Delete {
            key,
            resource_version: None,
            uid: None,
            grace_seconds: None,
            foreground: false,
        }
    }
}

/// The finalizer that keeps an object deleted with foreground propagation until its
/// dependents are gone.
pub const FOREGROUND_DELETION: &str = "foregroundDeletion";

/// A batch of ops applied atomically, with the time every op records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Write {
    /// RFC 3339 time stamped on created objects (`creationTimestamp`).
    pub now: String,
    pub ops: Vec<Op>,
}

impl Write {
    pub fn new(ops: Vec<Op>) -> Write {
        Write {
            now: now_rfc3339(),
            ops,
        }
    }
}

/// RFC 3339 UTC time with seconds, as Kubernetes prints timestamps.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A fresh object uid.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// What an op did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
    Deleted,
}

/// The kind of a watch event, as Kubernetes names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One row of the log: the object as it was after (or, for DELETED, just before) the change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub revision: i64,
    pub event: EventType,
    pub object: Value,
}

/// The result of one op: what happened and the object as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub outcome: Outcome,
    pub object: Value,
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// The hot paths' own connections (see [`direct`]). Applying committed entries takes the
    /// one without a sync per commit: the entries are already on disk in the Raft log (synced),
    /// applying is idempotent by index, and the WAL is one sequential file, so the next synced
    /// commit (the next log append) makes these frames durable too. A power cut loses at most
    /// applies whose entries get applied again.
    pub(crate) direct: std::sync::Arc<direct::Direct>,
    cipher: SecretCipher,
    /// Serialises writers, so revisions are handed out in commit order.
    write_lock: std::sync::Arc<Mutex<()>>,
    /// The latest committed revision, for watches to wait on.
    latest: watch::Sender<i64>,
    /// The revision at which each kind (and kind in a namespace) last changed.
    topics: watch::Sender<changes::Topics>,
    /// Set when the store is a replica: writes go to the quorum.
    proposer: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<dyn Proposer>>>,
    /// The revision when the store was opened: [`Store::revision_of`] knows nothing of the
    /// changes before it.
    opened_at: i64,
    /// Pods deleted (or marked deleted) with a grace period, by uid, the latest
    /// [`MAX_GRACES`] (see [`Store::deletion_grace`]).
    graces: std::sync::Arc<std::sync::Mutex<Graces>>,
}

/// Pods' delete grace periods by uid, and the uids in the order they came.
type Graces = (
    std::collections::HashMap<String, i64>,
    std::collections::VecDeque<String>,
);

/// How many pods' delete grace periods are remembered.
const MAX_GRACES: usize = 4096;

fn migrator() -> Migrator {
    let m = |version, name, sql| {
        Migration::new(
            version,
            Cow::Borrowed(name),
            MigrationType::Simple,
            SqlStr::from_static(sql),
            false,
        )
    };
    Migrator::with_migrations(vec![
        m(1, "init", include_str!("migrations/0001_init.sql")),
        m(2, "raft", include_str!("migrations/0002_raft.sql")),
    ])
}

impl Store {
    /// Opens (creating if needed) the database at `path`, checks its integrity and migrates it.
    pub async fn open(path: &Path, cipher: SecretCipher) -> Result<Store, StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before it is acknowledged, so a power cut loses no
            // acknowledged write (NORMAL in WAL mode can lose the last ones).
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .pragma("journal_size_limit", (64 * 1024 * 1024).to_string())
            .pragma("cache_size", "-2000");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(opts.clone())
            .await?;
        let check: String = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_one(&pool)
            .await?;
        if check != "ok" {
            return Err(StoreError::Integrity(check));
        }
        migrator().run(&pool).await?;
        let rev: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision'")
            .fetch_one(&pool)
            .await?;
        let (latest, _) = watch::channel(rev);
        let (topics, _) = watch::channel(changes::Topics::new());
        let direct = std::sync::Arc::new(direct::Direct::open(path)?);
        Ok(Store {
            pool,
            direct,
            cipher,
            write_lock: Default::default(),
            latest,
            topics,
            proposer: Default::default(),
            opened_at: rev,
            graces: Default::default(),
        })
    }

    /// The last committed revision.
    pub fn revision(&self) -> i64 {
        *self.latest.borrow()
    }

    /// A receiver that changes whenever a write commits.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.latest.subscribe()
    }

    /// A follower of the changes to some topics: kinds (`Pod`) or kinds in a namespace
    /// (`ConfigMap/web`). It wakes for nothing else.
    pub fn changes(&self, topics: &[&str]) -> Changes {
        Changes::new(
            self.topics.subscribe(),
            topics.iter().map(|t| t.to_string()).collect(),
        )
    }

    /// The latest revision at which one of `topics` changed (0 if none did since start).
    pub fn revision_of<T: AsRef<str>>(&self, topics: &[T]) -> i64 {
        changes::latest(&self.topics.borrow(), topics)
    }

    /// Whether none of `topics` changed after `rev`, as far as this store can tell: `false`
    /// for a revision from before it was opened (or later restored), whose changes it does not
    /// track. A list read now is then exactly the list at `rev`.
    pub fn unchanged_since<T: AsRef<str>>(&self, topics: &[T], rev: i64) -> bool {
        rev >= self.opened_at && self.revision_of(topics) <= rev && rev <= self.revision()
    }

    /// Publishes a commit at `rev` that wrote `objects`.
    fn published<'a>(&self, rev: i64, objects: impl IntoIterator<Item = &'a Value> + Clone) {
        self.remember_graces(objects.clone());
        self.topics.send_modify(|t| changes::touch(t, objects, rev));
        self.latest.send_replace(rev);
    }

    /// Records the grace period of each pod among `objects` that a delete stamped one on.
    fn remember_graces<'a>(&self, objects: impl IntoIterator<Item = &'a Value>) {
        let mut g = None;
        for o in objects {
            let m = &o["metadata"];
            if o["kind"] != "Pod" || m["deletionTimestamp"].is_null() {
                continue;
            }
            let (Some(uid), Some(grace)) =
                (m["uid"].as_str(), m["deletionGracePeriodSeconds"].as_i64())
            else {
                continue;
            };
            let guard = g.get_or_insert_with(|| self.graces.lock().expect("graces lock"));
            let (map, order) = &mut **guard;
            if map.insert(uid.to_string(), grace).is_none() {
                order.push_back(uid.to_string());
                if order.len() > MAX_GRACES
                    && let Some(old) = order.pop_front()
                {
                    map.remove(&old);
                }
            }
        }
    }

    fn encode(&self, key: &Key, obj: &Value) -> Result<Vec<u8>, StoreError> {
        let json = serde_json::to_vec(obj)?;
        Ok(if key.kind == "Secret" {
            self.cipher.seal(&key.aad(), &json)
        } else {
            json
        })
    }

    fn decode(&self, key: &Key, body: &[u8]) -> Result<Value, StoreError> {
        if key.kind == "Secret" {
            Ok(serde_json::from_slice(
                &self.cipher.open(&key.aad(), body)?,
            )?)
        } else {
            Ok(serde_json::from_slice(body)?)
        }
    }

    /// Reads one object.
    pub async fn get(&self, key: &Key) -> Result<Option<Value>, StoreError> {
        self.direct.read(|c| {
            let mut q = c.prepare_cached(
                "SELECT body FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
            )?;
            let mut rows = q.query((&key.kind, &key.namespace, &key.name))?;
            match rows.next()? {
                Some(r) => Ok(Some(self.decode(key, blob(r, 0)?)?)),
                None => Ok(None),
            }
        })
    }

    /// Lists objects of a kind, in one namespace or all (`None`), sorted by namespace and name,
    /// with the revision the list was read at.
    pub async fn list(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<(Vec<Value>, i64), StoreError> {
        self.list_as(kind, namespace).await
    }

    /// Like [`Store::list`], decoding each object into `T`. A `T` with only the fields a caller
    /// needs skips the rest while parsing, which keeps big lists cheap.
    pub async fn list_as<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<(Vec<T>, i64), StoreError> {
        let (mut out, mut failed) = (Vec::new(), None);
        let rev = self.scan(kind, namespace, |body| {
            if failed.is_none() {
                match serde_json::from_slice(body) {
                    Ok(o) => out.push(o),
                    Err(e) => failed = Some(e),
                }
            }
        })?;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok((out, rev)),
        }
    }

    /// Lists objects as their JSON text (Secrets decrypted), for callers that pass them on
    /// without looking inside, such as the API's list responses.
    pub async fn list_raw(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<(Vec<Vec<u8>>, i64), StoreError> {
        let mut out = Vec::new();
        let rev = self.scan(kind, namespace, |body| out.push(body.to_vec()))?;
        Ok((out, rev))
    }

    /// Lists objects decoded as `T` one row at a time, so that the rows' bytes are never all
    /// held at once beside the decoded objects. An object that does not decode is left out and
    /// its key and error returned apart, for the caller to report.
    pub async fn list_typed<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<(Vec<T>, Vec<String>), StoreError> {
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        self.scan(kind, namespace, |body| match serde_json::from_slice(body) {
            Ok(o) => out.push(o),
            Err(e) => bad.push(e.to_string()),
        })?;
        Ok((out, bad))
    }

    /// [`Store::list_typed`] for loops that read the store to act on it (controllers, the
    /// service table): the store only holds objects that passed Kubernetes' schema, so one that
    /// does not decode is a bug or an older agent's object; it is named in the log and left out,
    /// and the others are acted on.
    pub async fn list_decodable<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<T>, StoreError> {
        let (objects, bad) = self.list_typed(kind, namespace).await?;
        for error in bad {
            tracing::warn!(kind, %error, "a stored object does not decode; left out");
        }
        Ok(objects)
    }

    /// Hands every object of a kind (in one namespace, or all) to `each` as JSON text, Secrets
    /// decrypted, in one read transaction; returns the revision of that snapshot.
    fn scan(
        &self,
        kind: &str,
        namespace: Option<&str>,
        mut each: impl FnMut(&[u8]),
    ) -> Result<i64, StoreError> {
        // One transaction: the revision and the rows are of the same snapshot.
        self.direct.read(|c| {
            run(c, "BEGIN")?;
            let mut read = || -> Result<i64, StoreError> {
                let rev = revision(c)?;
                let mut q = match namespace {
                    Some(_) => c.prepare_cached(
                        "SELECT namespace, name, body FROM objects WHERE kind = ?1 AND namespace = ?2 ORDER BY name",
                    )?,
                    None => c.prepare_cached(
                        "SELECT namespace, name, body FROM objects WHERE kind = ?1 ORDER BY namespace, name",
                    )?,
                };
                let mut rows = match namespace {
                    Some(ns) => q.query((kind, ns))?,
                    None => q.query([kind])?,
                };
                while let Some(r) = rows.next()? {
                    let body = blob(r, 2)?;
                    if kind == "Secret" {
                        let key = Key::new(kind, text(r, 0)?, text(r, 1)?);
                        each(&self.cipher.open(&key.aad(), body)?);
                    } else {
                        each(body);
                    }
                }
                Ok(rev)
            };
            let out = read();
            run(c, "COMMIT")?;
            out
        })
    }

    /// The changes after `revision` (at most `limit`), oldest first, optionally of one kind.
    /// Fails with [`StoreError::Compacted`] when that part of the log is gone.
    pub async fn changes_since(
        &self,
        revision: i64,
        kind: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Change>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let compacted: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'compacted'")
            .fetch_one(&mut *tx)
            .await?;
        if revision < compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                oldest: compacted + 1,
            });
        }
        let rows = sqlx::query(
            "SELECT revision, kind, namespace, name, event, body FROM log
             WHERE revision > ?1 AND (?2 IS NULL OR kind = ?2) ORDER BY revision LIMIT ?3",
        )
        .bind(revision)
        .bind(kind)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|r| {
                let key = Key::new(r.get(1), r.get(2), r.get(3));
                let event = match r.get::<&str, _>(4) {
                    "ADDED" => EventType::Added,
                    "DELETED" => EventType::Deleted,
                    _ => EventType::Modified,
                };
                Ok(Change {
                    revision: r.get(0),
                    event,
                    object: self.decode(&key, r.get::<&[u8], _>(5))?,
                })
            })
            .collect()
    }

    /// Makes this store a replica: from now on [`Store::write`] hands writes to `p`. Once only.
    pub fn set_proposer(&self, p: std::sync::Arc<dyn Proposer>) {
        let _ = self.proposer.set(p);
    }

    /// Waits until this replica holds every write the cluster committed before now (a
    /// linearizable read follows). Immediate on a store that is not a replica.
    pub async fn read_barrier(&self) -> Result<(), StoreError> {
        match self.proposer.get() {
            Some(p) => p.read_barrier().await,
            None => Ok(()),
        }
    }

    /// The SQLite pool, for the cluster's Raft log that lives in the same file.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The lock every writer of the file holds (SQLite has one writer at a time; a
    /// transaction that read first and then writes would fail with "database is locked"
    /// rather than wait).
    pub(crate) fn writer(&self) -> std::sync::Arc<Mutex<()>> {
        self.write_lock.clone()
    }

    /// Applies a write atomically: either every op takes effect, or none does. On a replica the
    /// write is first committed by the cluster's quorum.
    pub async fn write(&self, w: &Write) -> Result<Vec<Applied>, StoreError> {
        if let Some(p) = self.proposer.get() {
            return p.propose(w.clone()).await;
        }
        self.write_local(w, &[]).await
    }

    /// What [`Store::write`] would do, without writing anything: the write's ops run against
    /// this replica (after a read barrier on a cluster, so they see every committed write) in
    /// a transaction that is always rolled back. Conflicts, missing and existing objects, and
    /// claims (ClusterIPs, NodePorts, pod CIDRs) are refused exactly as a real write would
    /// be; nothing reaches the quorum's log, the objects, the log of changes or a watcher.
    pub async fn dry_run(&self, w: &Write) -> Result<Vec<Applied>, StoreError> {
        self.read_barrier().await?;
        let _guard = self.write_lock.lock().await;
        self.direct.write(false, |c| {
            run(c, "BEGIN IMMEDIATE")?;
            let planned = revision(c)
                .map_err(StoreError::from)
                .and_then(|mut rev| self.apply_ops(c, w, &mut rev));
            run(c, "ROLLBACK")?;
            planned
        })
    }

    /// The grace period the delete of pod `uid` gave it (`gracePeriodSeconds`), if it was
    /// deleted with one since this store opened. Its node stops the pod's containers within
    /// it rather than within the pod's own `terminationGracePeriodSeconds`.
    pub fn deletion_grace(&self, uid: &str) -> Option<i64> {
        self.graces.lock().expect("graces lock").0.get(uid).copied()
    }

    /// Every object and the revision, read in one snapshot of the database.
    pub async fn dump(&self) -> Result<Dump, StoreError> {
        Ok(self.dump_with_state(&[]).await?.0)
    }

    /// [`Store::dump`] and some `raft_state` values, read in the same snapshot.
    pub(crate) async fn dump_with_state(
        &self,
        keys: &[&str],
    ) -> Result<(Dump, Vec<Option<Vec<u8>>>), StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut state = Vec::with_capacity(keys.len());
        for k in keys {
            state.push(
                sqlx::query_scalar("SELECT value FROM raft_state WHERE key = ?")
                    .bind(*k)
                    .fetch_optional(&mut *tx)
                    .await?,
            );
        }
        let revision: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision'")
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT kind, namespace, name, revision, body FROM objects ORDER BY kind, namespace, name",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut objects = Vec::with_capacity(rows.len());
        for r in rows {
            let key = Key::new(r.get(0), r.get(1), r.get(2));
            let obj = self.decode(&key, r.get::<&[u8], _>(4))?;
            objects.push((key.kind, key.namespace, key.name, r.get(3), obj));
        }
        Ok((Dump { revision, objects }, state))
    }

    /// Replaces every object with `dump`'s, with `state` in the same transaction. The change
    /// log restarts at the dump's revision: a watch from before it must list again.
    pub(crate) async fn restore(
        &self,
        dump: &Dump,
        state: &[(&str, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let _guard = self.write_lock.lock().await;
        // One transaction on the store's own connection, not a trip to sqlx's thread per
        // object.
        self.direct.write(true, |c| {
            transaction(c, |c| {
                run(c, "DELETE FROM objects")?;
                run(c, "DELETE FROM log")?;
                let mut insert = c.prepare_cached(
                    "INSERT INTO objects (kind, namespace, name, revision, body) VALUES (?, ?, ?, ?, ?)",
                )?;
                for (kind, ns, name, rev, obj) in &dump.objects {
                    let body = self.encode(&Key::new(kind, ns, name), obj)?;
                    insert.execute((kind, ns, name, rev, &body))?;
                }
                c.prepare_cached("UPDATE meta SET value = ? WHERE key IN ('revision', 'compacted')")?
                    .execute([dump.revision])?;
                put_state(c, state)?;
                Ok(())
            })
        })?;
        self.topics.send_modify(|t| {
            t.insert(changes::EVERYTHING.into(), dump.revision);
        });
        self.latest.send_replace(dump.revision);
        Ok(())
    }

    async fn write_local(
        &self,
        w: &Write,
        state: &[(&str, Vec<u8>)],
    ) -> Result<Vec<Applied>, StoreError> {
        let _guard = self.write_lock.lock().await;
        let (results, rev) = self.direct.write(true, |c| {
            transaction(c, |c| {
                let start = revision(c)?;
                let mut rev = start;
                let results = self.apply_ops(c, w, &mut rev)?;
                finish(c, start, rev, state)?;
                Ok((results, (rev != start).then_some(rev)))
            })
        })?;
        if let Some(rev) = rev {
            self.published(rev, results.iter().map(|a| &a.object));
        }
        Ok(results)
    }

    /// Applies committed entries of the cluster's log in one transaction (one disk sync for
    /// them all): each entry is its log index and its writes; each write lands whole, or is
    /// refused (a conflict, say) and leaves nothing; `state` goes with them. Entries at or
    /// below the index applied before are skipped, so applying the same entry twice (a node
    /// that pulled entries and then gets them again from the leader) changes nothing. The
    /// outer error is the disk's; the inner ones are each write's own refusal, so every replica
    /// refuses alike and still moves on.
    #[allow(clippy::type_complexity)]
    pub(crate) async fn apply_replicated_batch(
        &self,
        entries: &[(u64, Vec<&Write>)],
        state: &[(&str, Vec<u8>)],
    ) -> Result<Vec<Vec<Result<Vec<Applied>, StoreError>>>, StoreError> {
        let _guard = self.write_lock.lock().await;
        let (out, rev) = self.direct.write(false, |c| {
            transaction(c, |c| {
                let start = revision(c)?;
                let mut rev = start;
                let done: Option<Vec<u8>> = c
                    .prepare_cached("SELECT value FROM raft_state WHERE key = 'applied_index'")?
                    .query_row([], |r| r.get(0))
                    .optional()?;
                let mut done: Option<u64> = done.and_then(|b| serde_json::from_slice(&b).ok());
                let mut out = Vec::with_capacity(entries.len());
                for (index, writes) in entries {
                    let mut results = Vec::with_capacity(writes.len());
                    for w in writes {
                        if done.is_some_and(|d| *index <= d) {
                            results.push(Ok(Vec::new()));
                            continue;
                        }
                        // A write of one op is refused before it writes anything; only a
                        // write of several needs a savepoint to undo its first ops.
                        let guarded = w.ops.len() > 1;
                        if guarded {
                            run(c, "SAVEPOINT entry")?;
                        }
                        let before = rev;
                        match self.apply_ops(c, w, &mut rev) {
                            Ok(applied) => results.push(Ok(applied)),
                            Err(e @ (StoreError::Db(_) | StoreError::Sqlite(_))) => return Err(e),
                            Err(refused) => {
                                if guarded {
                                    run(c, "ROLLBACK TO entry")?;
                                }
                                rev = before;
                                results.push(Err(refused));
                            }
                        }
                        if guarded {
                            run(c, "RELEASE entry")?;
                        }
                    }
                    done = Some(done.map_or(*index, |d| d.max(*index)));
                    out.push(results);
                }
                if let Some(d) = done {
                    put_state(
                        c,
                        &[("applied_index", serde_json::to_vec(&d).expect("u64"))],
                    )?;
                }
                finish(c, start, rev, state)?;
                Ok((out, (rev != start).then_some(rev)))
            })
        })?;
        if let Some(rev) = rev {
            let written = out.iter().flatten().flatten().flatten();
            self.published(rev, written.map(|a| &a.object));
        }
        Ok(out)
    }

    /// The ops of `w` on `c` (inside a transaction), revisions counted from `rev`; an op the
    /// write may not do refuses the whole write (the caller rolls back).
    fn apply_ops(
        &self,
        c: &rusqlite::Connection,
        w: &Write,
        rev: &mut i64,
    ) -> Result<Vec<Applied>, StoreError> {
        let mut results = Vec::with_capacity(w.ops.len());
        // The ClusterIPs and NodePorts Services hold, read once per write that has a Service.
        let mut claims: Option<BTreeMap<String, Key>> = None;
        for op in &w.ops {
            let key = match op {
                Op::Create { object, .. } | Op::Put { object, .. } | Op::Status { object } => {
                    Key::of(object)?
                }
                Op::Delete { key, .. } => key.clone(),
            };
            let current: Option<(i64, Vec<u8>)> = c
                .prepare_cached(
                    "SELECT revision, body FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                )?
                .query_row((&key.kind, &key.namespace, &key.name), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let current = match current {
                Some((r, body)) => Some((r, self.decode(&key, &body)?)),
                None => None,
            };
            let planned = plan_op(op, &key, current.clone(), &w.now, *rev + 1)?;
            let Some((event, object, outcome)) = planned else {
                let object = current.map(|(_, v)| v).unwrap_or(Value::Null);
                results.push(Applied {
                    outcome: Outcome::Unchanged,
                    object,
                });
                continue;
            };
            if key.kind == "Service" {
                if claims.is_none() {
                    claims = Some(self.service_claims(c)?);
                }
                let held = claims.as_mut().expect("claims read");
                held.retain(|_, k| *k != key);
                if event != EventType::Deleted {
                    for (claim, what) in claims_of(&object) {
                        if let Some(other) = held.get(&claim) {
                            return Err(StoreError::Taken(format!(
                                "{what} is already allocated to Service {}/{}",
                                other.namespace, other.name
                            )));
                        }
                        held.insert(claim, key.clone());
                    }
                }
            }
            if key.kind == "Node" && event != EventType::Deleted {
                self.check_pod_cidr(c, &key, current.as_ref().map(|(_, v)| v), &object)?;
            }
            *rev += 1;
            let body = self.encode(&key, &object)?;
            if event == EventType::Deleted {
                c.prepare_cached(
                    "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                )?
                .execute((&key.kind, &key.namespace, &key.name))?;
            } else {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO objects (kind, namespace, name, revision, body) VALUES (?, ?, ?, ?, ?)",
                )?
                .execute((&key.kind, &key.namespace, &key.name, *rev, &body))?;
            }
            c.prepare_cached(
                "INSERT INTO log (revision, kind, namespace, name, event, body) VALUES (?, ?, ?, ?, ?, ?)",
            )?
            .execute((*rev, &key.kind, &key.namespace, &key.name, event.as_str(), &body))?;
            results.push(Applied { outcome, object });
        }
        Ok(results)
    }

    /// A Node's `spec.podCIDR` is its own: a write giving a Node a pod CIDR another Node holds
    /// is refused (identically on every replica), so two nodes that pick one at the same time
    /// cannot both get it. A Node keeping the CIDR it already had is not checked again.
    fn check_pod_cidr(
        &self,
        c: &rusqlite::Connection,
        key: &Key,
        before: Option<&Value>,
        after: &Value,
    ) -> Result<(), StoreError> {
        let Some(cidr) = pod_cidr(after).filter(|c| !c.is_empty()) else {
            return Ok(());
        };
        if before.and_then(pod_cidr).as_ref() == Some(&cidr) {
            return Ok(());
        }
        let mut q =
            c.prepare_cached("SELECT name, body FROM objects WHERE kind = 'Node' AND name != ?")?;
        let rows = q.query_map([&key.name], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            let (name, body) = row?;
            let other = Key::new("Node", "", &name);
            let node = self.decode(&other, &body)?;
            if pod_cidr(&node).as_ref() == Some(&cidr) {
                return Err(StoreError::Taken(format!(
                    "spec.podCIDR: {cidr} is already allocated to Node {}",
                    other.name
                )));
            }
        }
        Ok(())
    }

    /// Every claim (see [`claims_of`]) the stored Services hold.
    fn service_claims(
        &self,
        c: &rusqlite::Connection,
    ) -> Result<BTreeMap<String, Key>, StoreError> {
        let mut q =
            c.prepare_cached("SELECT namespace, name, body FROM objects WHERE kind = 'Service'")?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut held = BTreeMap::new();
        for row in rows {
            let (ns, name, body) = row?;
            let key = Key::new("Service", &ns, &name);
            let svc = self.decode(&key, &body)?;
            for (claim, _) in claims_of(&svc) {
                held.insert(claim, key.clone());
            }
        }
        Ok(held)
    }

    /// Drops log rows older than the newest `keep` revisions and checkpoints the WAL, so the
    /// database file stays bounded however long the node runs. Returns the new compacted
    /// revision.
    pub async fn compact(&self, keep: i64) -> Result<i64, StoreError> {
        let upto = {
            let _guard = self.write_lock.lock().await;
            let mut tx = self.pool.begin().await?;
            let rev: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'revision'")
                .fetch_one(&mut *tx)
                .await?;
            let old: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'compacted'")
                .fetch_one(&mut *tx)
                .await?;
            let upto = (rev - keep).max(old);
            if upto > old {
                sqlx::query("DELETE FROM log WHERE revision <= ?")
                    .bind(upto)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE meta SET value = ? WHERE key = 'compacted'")
                    .bind(upto)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            upto
        };
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        Ok(upto)
    }

    /// The oldest revision a watch can still start after.
    pub async fn compacted(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'compacted'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `f` inside one transaction on `c` (taking the write lock at once), committed when it
/// returns Ok and rolled back otherwise.
pub(crate) fn transaction<T>(
    c: &rusqlite::Connection,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    run(c, "BEGIN IMMEDIATE")?;
    match f(c) {
        Ok(v) => {
            run(c, "COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = run(c, "ROLLBACK");
            Err(e)
        }
    }
}

/// Runs one statement without parameters or rows (BEGIN, COMMIT, SAVEPOINT ...), prepared
/// once per connection: these run on every write, and parsing SQL each time showed up.
fn run(c: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    c.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Column `i` of `r` as bytes, borrowed from the row.
pub(crate) fn blob<'r>(r: &'r rusqlite::Row, i: usize) -> rusqlite::Result<&'r [u8]> {
    r.get_ref(i)?.as_blob().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// Column `i` of `r` as text, borrowed from the row.
fn text<'r>(r: &'r rusqlite::Row, i: usize) -> rusqlite::Result<&'r str> {
    r.get_ref(i)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn revision(c: &rusqlite::Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT value FROM meta WHERE key = 'revision'")?
        .query_row([], |r| r.get(0))
}

/// Ends a write: the new revision and `state` (the caller commits).
fn finish(
    c: &rusqlite::Connection,
    start: i64,
    rev: i64,
    state: &[(&str, Vec<u8>)],
) -> rusqlite::Result<()> {
    if rev != start {
        c.prepare_cached("UPDATE meta SET value = ? WHERE key = 'revision'")?
            .execute([rev])?;
    }
    put_state(c, state)
}

fn put_state(c: &rusqlite::Connection, state: &[(&str, Vec<u8>)]) -> rusqlite::Result<()> {
    for (k, v) in state {
        c.prepare_cached("INSERT OR REPLACE INTO raft_state (key, value) VALUES (?, ?)")?
            .execute((k, v))?;
    }
    Ok(())
}

/// A Node's `spec.podCIDR`, read as k8s-openapi's `NodeSpec`.
fn pod_cidr(node: &Value) -> Option<String> {
    let spec = k8s_openapi::api::core::v1::NodeSpec::deserialize(node.get("spec")?).ok()?;
    spec.pod_cidr
}

/// What a Service holds that no other may: its ClusterIP and each NodePort (by protocol), with
/// the field that holds it, for the error.
fn claims_of(svc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // The store holds Services that passed the schema; one that does not read claims nothing.
    let spec = svc
        .get("spec")
        .and_then(|s| k8s_openapi::api::core::v1::ServiceSpec::deserialize(s).ok())
        .unwrap_or_default();
    if let Some(ip) = spec.cluster_ip.as_deref()
        && !ip.is_empty()
        && ip != "None"
    {
        out.push((format!("ip/{ip}"), format!("spec.clusterIP: {ip}")));
    }
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        if let Some(n) = p.node_port {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            out.push((
                format!("port/{proto}/{n}"),
                format!("spec.ports[{i}].nodePort: {n}"),
            ));
        }
    }
    out
}

/// The fields of `metadata` the store owns; users cannot set them.
const SYSTEM_META: &[&str] = &["uid", "resourceVersion", "generation", "creationTimestamp"];

fn expected_rv(obj: &Value) -> Option<i64> {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
}

fn check_rv(key: &Key, expected: Option<i64>, actual: i64) -> Result<(), StoreError> {
    match expected {
        Some(e) if e != actual => Err(StoreError::Conflict {
            kind: key.kind.clone(),
            name: key.name.clone(),
            expected: e,
            actual,
        }),
        _ => Ok(()),
    }
}

/// Everything of an object but metadata and status: what a change to bumps `generation`.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// `metadata.managedFields` of `cur` with the entries `new` carries: an entry of `new` replaces
/// the entry of the same manager, operation and subresource, the others stay. Writers send
/// only their own entry (the API), or the stored list back (controllers); both merge alike.
fn merge_managed_fields(cur: &Value, new: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = cur["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let same = |a: &Value, b: &Value| {
        a["manager"] == b["manager"]
            && a["operation"] == b["operation"]
            && a["subresource"] == b["subresource"]
    };
    for e in new["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match out.iter_mut().find(|o| same(o, e)) {
            Some(o) => *o = e.clone(),
            None => out.push(e.clone()),
        }
    }
    out
}

fn set_managed_fields(obj: &mut Value, managed: Vec<Value>) {
    if let Some(m) = obj["metadata"].as_object_mut() {
        if managed.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(managed));
        }
    }
}

/// Whether two objects are equal but for `metadata.managedFields` (compared in place: a
/// write of an unchanged object is the common case of a re-apply).
fn same_but_managed_fields(a: &Value, b: &Value) -> bool {
    let (Some(ao), Some(bo)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    if ao.len() != bo.len() {
        return false;
    }
    ao.iter().all(|(k, av)| {
        let Some(bv) = bo.get(k) else {
            return false;
        };
        match (k.as_str(), av.as_object(), bv.as_object()) {
            ("metadata", Some(am), Some(bm)) => {
                let rest = |m: &serde_json::Map<String, Value>| {
                    m.len() - usize::from(m.contains_key("managedFields"))
                };
                rest(am) == rest(bm)
                    && am
                        .iter()
                        .filter(|(k, _)| *k != "managedFields")
                        .all(|(k, v)| bm.get(k) == Some(v))
            }
            _ => av == bv,
        }
    })
}

/// Decides what one op does to the current object (`(revision, body)`), as a pure function:
/// the event to log, the new body and the outcome, or `None` when nothing changes.
fn plan_op(
    op: &Op,
    key: &Key,
    current: Option<(i64, Value)>,
    now: &str,
    next_rev: i64,
) -> Result<Option<(EventType, Value, Outcome)>, StoreError> {
    let stamp = |mut obj: Value, uid: &str, generation: i64, created: &str| {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
        }
        let m = &mut obj["metadata"];
        m["uid"] = Value::from(uid);
        m["generation"] = Value::from(generation);
        m["creationTimestamp"] = Value::from(created);
        m["resourceVersion"] = Value::from(next_rev.to_string());
        obj
    };
    match (op, current) {
        (Op::Create { object, uid }, None)
        | (
            Op::Put {
                object,
                uid,
                create: true,
            },
            None,
        ) => {
            if expected_rv(object).is_some_and(|rv| rv != 0) {
                return Err(key.not_found());
            }
            Ok(Some((
                EventType::Added,
                stamp(object.clone(), uid, 1, now),
                Outcome::Created,
            )))
        }
        (Op::Create { .. }, Some(_)) => Err(StoreError::AlreadyExists {
            kind: key.kind.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        }),
        (Op::Put { .. } | Op::Status { .. } | Op::Delete { .. }, None) => Err(key.not_found()),
        (Op::Put { object, .. }, Some((rev, cur))) => {
            check_rv(key, expected_rv(object), rev)?;
            let mut new = object.clone();
            // System metadata and status stay as stored.
            for f in SYSTEM_META {
                match cur["metadata"].get(*f) {
                    Some(v) => new["metadata"][*f] = v.clone(),
                    None => {
                        if let Some(m) = new["metadata"].as_object_mut() {
                            m.remove(*f);
                        }
                    }
                }
            }
            if let Some(s) = cur.get("status") {
                new["status"] = s.clone();
            } else if let Some(m) = new.as_object_mut() {
                m.remove("status");
            }
            // Deletion marks are the store's: kept as stored, never set by a Put.
            for f in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
                match cur["metadata"].get(f) {
                    Some(v) => new["metadata"][f] = v.clone(),
                    None => {
                        if let Some(m) = new["metadata"].as_object_mut() {
                            m.remove(f);
                        }
                    }
                }
            }
            if !cur["metadata"]["deletionTimestamp"].is_null()
                && new["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(|f| f.is_empty())
            {
                // Its last finalizer removed, an object marked deleted goes.
                let mut gone = cur;
                gone["metadata"]["finalizers"] = Value::Array(Vec::new());
                gone["metadata"]["resourceVersion"] = Value::from(next_rev.to_string());
                return Ok(Some((EventType::Deleted, gone, Outcome::Deleted)));
            }
            // Who wrote it is recorded only when something else changes: a write that
            // changes nothing leaves the object (and its resourceVersion) as it was.
            if same_but_managed_fields(&new, &cur) {
                return Ok(None);
            }
            let managed = merge_managed_fields(&cur, &new);
            set_managed_fields(&mut new, managed);
            if spec_part(&new) != spec_part(&cur) {
                let g = cur["metadata"]["generation"].as_i64().unwrap_or(1);
                new["metadata"]["generation"] = Value::from(g + 1);
            }
            new["metadata"]["resourceVersion"] = Value::from(next_rev.to_string());
            Ok(Some((EventType::Modified, new, Outcome::Configured)))
        }
        (Op::Status { object }, Some((rev, cur))) => {
            check_rv(key, expected_rv(object), rev)?;
            let status = object.get("status").cloned().unwrap_or(Value::Null);
            if cur.get("status").unwrap_or(&Value::Null) == &status {
                return Ok(None);
            }
            let managed = merge_managed_fields(&cur, object);
            let mut new = cur;
            new["status"] = status;
            set_managed_fields(&mut new, managed);
            new["metadata"]["resourceVersion"] = Value::from(next_rev.to_string());
            Ok(Some((EventType::Modified, new, Outcome::Configured)))
        }
        (
            Op::Delete {
                resource_version,
                uid,
                grace_seconds,
                foreground,
                ..
            },
            Some((rev, mut cur)),
        ) => {
            if let Some(want) = uid
                && cur["metadata"]["uid"].as_str() != Some(want.as_str())
            {
                return Err(StoreError::Precondition(format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {}",
                    cur["metadata"]["uid"].as_str().unwrap_or("")
                )));
            }
            check_rv(key, *resource_version, rev)?;
            // An object with finalizers (or deleted in the foreground) is only marked: it
            // goes when the last finalizer is removed (see the Put arm).
            let mut finalizers: Vec<Value> = cur["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if *foreground && !finalizers.iter().any(|f| f == FOREGROUND_DELETION) {
                finalizers.push(Value::from(FOREGROUND_DELETION));
            }
            if !finalizers.is_empty() {
                let cur_grace = cur["spec"]["terminationGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(30);
                let before = cur.clone();
                let m = &mut cur["metadata"];
                // A pod's containers get the delete's grace period, or the pod's own.
                let grace =
                    grace_seconds.unwrap_or_else(|| if key.kind == "Pod" { cur_grace } else { 0 });
                if m.get("deletionTimestamp").is_none_or(Value::is_null) {
                    m["deletionTimestamp"] = Value::from(now);
                    m["deletionGracePeriodSeconds"] = Value::from(grace);
                }
                m["finalizers"] = Value::Array(finalizers);
                if cur == before {
                    return Ok(None);
                }
                cur["metadata"]["resourceVersion"] = Value::from(next_rev.to_string());
                return Ok(Some((EventType::Modified, cur, Outcome::Configured)));
            }
            if let Some(g) = grace_seconds {
                let m = &mut cur["metadata"];
                m["deletionGracePeriodSeconds"] = Value::from(*g);
                if m.get("deletionTimestamp").is_none_or(Value::is_null) {
                    m["deletionTimestamp"] = Value::from(now);
                }
            }
            cur["metadata"]["resourceVersion"] = Value::from(next_rev.to_string());
            Ok(Some((EventType::Deleted, cur, Outcome::Deleted)))
        }
    }
}

#[cfg(test)]
mod tests;

/// A store in a new temporary directory, for unit tests (the directory goes with the guard).
#[cfg(test)]
pub async fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(
        &dir.path().join("flotilla.db"),
        SecretCipher::from_key(&[1; 32]).expect("a 32-byte key"),
    )
    .await
    .expect("a store in a new directory");
    (dir, store)
}
