//! [`Quorum`]: this node's Raft member. It takes writes from anywhere in the node (the store's
//! [`Proposer`]), commits them when it leads and forwards them to the leader when it does not,
//! answers the RPCs of the other members, admits new members as learners and, while it leads,
//! keeps the voter set healthy ([`super::voters::plan`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Raft, RaftMetrics, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::log::LogStore;
use super::machine::StateMachine;
use super::network::{Contacts, Network};
use super::pull::{self, ChunkAnswer, PullAnswer, Pulled};
use super::{
    Batch, EnrollAnswer, Member, RaftRpc, ReadIndexAnswer, Reply, Role, TypeConfig, WriteAnswer,
    frame, node_id, voters,
};
use crate::cluster::transport::Transport;
use crate::store::{Applied, Proposer, Rejection, Store, StoreError, Write};

/// Timing and sizing of the quorum. The defaults hold on a Raspberry Pi with an SD card: an
/// fsync that takes a few hundred milliseconds does not cost the leader its lease.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    /// How often the leader tells the others it is alive.
    pub heartbeat: Duration,
    /// A follower that hears nothing for this long (up to half as long again, at random)
    /// stands for election.
    pub election_timeout: Duration,
    /// Most voters (1, 3 or 5); other members are learners.
    pub max_voters: usize,
    /// A voter silent this long is replaced by a healthy learner.
    pub replace_after: Duration,
    /// Entries between snapshots (the log before a snapshot is purged).
    pub snapshot_every: u64,
    /// Learners kept beyond the voters, ready to replace one; further nodes pull the log from
    /// peers instead of being replicated to by the leader.
    pub standby: usize,
    /// Entries kept behind a snapshot (for members and pullers a little behind).
    pub keep_logs: u64,
    /// How often a puller asks again to become a learner.
    pub reenroll_every: Duration,
}

impl Default for RaftSettings {
    fn default() -> RaftSettings {
        RaftSettings {
            heartbeat: Duration::from_millis(250),
            election_timeout: Duration::from_millis(1000),
            max_voters: 3,
            replace_after: Duration::from_secs(60),
            snapshot_every: 5000,
            standby: 3,
            keep_logs: 1000,
            reenroll_every: Duration::from_secs(30),
        }
    }
}

impl RaftSettings {
    /// How long a member may be silent and still count as reachable.
    fn liveness(&self) -> Duration {
        self.election_timeout.max(self.heartbeat * 4)
    }

    /// How long a write waits for a leader to appear before it fails.
    fn write_wait(&self) -> Duration {
        self.election_timeout * 4
    }
}

/// This node's member of the quorum.
pub struct Quorum {
    pub raft: Raft<TypeConfig>,
    pub id: u64,
    pub me: Member,
    transport: Transport,
    contacts: Contacts,
    settings: RaftSettings,
    /// Members to forward to before this node knows a leader (the address it joined through).
    seeds: Mutex<Vec<SocketAddr>>,
    leading: watch::Sender<bool>,
    /// Writes to commit while this node leads, grouped into entries by [`batch_writes`].
    batcher: mpsc::UnboundedSender<(Write, oneshot::Sender<Batched>)>,
    store: Store,
    /// Set when the leader made this node a puller ([`Role::Puller`]).
    pulling: std::sync::atomic::AtomicBool,
    /// Peers gossip shows, with the next log index each needs.
    peers: Mutex<Vec<(SocketAddr, u64)>>,
    /// The membership as a puller last applied it (a puller's openraft instance stays idle).
    pulled: watch::Sender<BTreeMap<String, bool>>,
    /// The voters' addresses, as a puller last applied them.
    voters: Mutex<Vec<SocketAddr>>,
}

/// What became of a write handed to [`batch_writes`].
enum Batched {
    Done(Reply),
    /// This node no longer leads: find the leader and try again.
    NotLeader,
    /// Not committed in time (`None`), or openraft's error.
    Failed(Option<String>),
}

/// Most writes in one entry.
const MAX_BATCH: usize = 512;

/// Entries being committed at once: while one is being applied and answered, the next is
/// already on its way to the followers' disks.
const IN_FLIGHT: usize = 2;

/// Group commit on the leader: writes that arrive while entries are being committed wait and
/// go together in the next one, so a burst costs one log append (one fsync on each node) and
/// one apply transaction instead of one per write. A lone write goes at once.
async fn batch_writes(
    raft: Raft<TypeConfig>,
    mut rx: mpsc::UnboundedReceiver<(Write, oneshot::Sender<Batched>)>,
    wait: Duration,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Whatever came while waiting for a slot goes in the same entry.
        let mut pending = vec![first];
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => pending.push(p),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            commit_batch(&raft, pending, wait).await;
            drop(slot);
        });
    }
}

/// Commits one entry of writes and tells each writer what became of its write.
async fn commit_batch(
    raft: &Raft<TypeConfig>,
    pending: Vec<(Write, oneshot::Sender<Batched>)>,
    wait: Duration,
) {
    let (writes, waiters): (Vec<Write>, Vec<oneshot::Sender<Batched>>) =
        pending.into_iter().unzip();
    match tokio::time::timeout(wait, raft.client_write(Batch(writes))).await {
        Ok(Ok(resp)) => {
            for (w, reply) in waiters.into_iter().zip(resp.data) {
                let _ = w.send(Batched::Done(reply));
            }
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
            for w in waiters {
                let _ = w.send(Batched::NotLeader);
            }
        }
        Ok(Err(e)) => {
            let msg = e.to_string();
            for w in waiters {
                let _ = w.send(Batched::Failed(Some(msg.clone())));
            }
        }
        Err(_) => {
            for w in waiters {
                let _ = w.send(Batched::Failed(None));
            }
        }
    }
}

impl Quorum {
    /// Starts the member on `store` (whose SQLite file holds the log too), talking over
    /// `transport`. A new node is not a member of anything until [`Quorum::initialize`] (the
    /// first node) or an enrollment through a member ([`Quorum::enroll_through`]).
    pub async fn start(
        store: &Store,
        transport: Transport,
        me: Member,
        settings: RaftSettings,
    ) -> Result<Arc<Quorum>> {
        let election_ms = settings.election_timeout.as_millis() as u64;
        let config = openraft::Config {
            cluster_name: "flotilla".into(),
            heartbeat_interval: settings.heartbeat.as_millis() as u64,
            election_timeout_min: election_ms,
            // A follower that heard a leader waits out the leader's lease (openraft makes it
            // the maximum) and then its own timeout before it stands: failover takes about
            // max + a random pick in [min, max], so the spread is kept narrow.
            election_timeout_max: election_ms * 5 / 4,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every),
            max_in_snapshot_log_to_keep: settings.keep_logs,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()
        .context("Raft settings")?;
        let contacts = Contacts::default();
        let id = node_id(&me.name);
        let raft = Raft::new(
            id,
            Arc::new(config),
            Network {
                transport: transport.clone(),
                contacts: contacts.clone(),
            },
            LogStore::new(store),
            StateMachine::new(store.clone()),
        )
        .await
        .context("starting Raft")?;
        let (leading, _) = watch::channel(false);
        let (batcher, batches) = mpsc::unbounded_channel();
        tokio::spawn(batch_writes(raft.clone(), batches, settings.write_wait()));
        let q = Arc::new(Quorum {
            raft,
            id,
            me,
            transport,
            contacts,
            settings,
            seeds: Mutex::default(),
            leading,
            batcher,
            store: store.clone(),
            pulling: std::sync::atomic::AtomicBool::new(false),
            peers: Mutex::default(),
            pulled: watch::channel(BTreeMap::new()).0,
            voters: Mutex::default(),
        });
        tokio::spawn(watch_leadership(Arc::downgrade(&q)));
        tokio::spawn(follow(Arc::downgrade(&q)));
        tokio::spawn(keep_voters(Arc::downgrade(&q)));
        Ok(q)
    }

    /// Makes this node a one-voter cluster, unless it already is a member of one.
    pub async fn initialize(&self) -> Result<()> {
        if self.raft.is_initialized().await? {
            return Ok(());
        }
        let members = BTreeMap::from([(self.id, self.me.clone())]);
        self.raft
            .initialize(members)
            .await
            .context("initialising the quorum")?;
        info!(node = %self.me.name, id = self.id, "initialised a one-voter quorum");
        Ok(())
    }

    /// Whether this node is in the cluster's membership (as it last learned it).
    pub fn is_member(&self) -> bool {
        self.metrics()
            .membership_config
            .membership()
            .get_node(&self.id)
            .is_some()
    }

    pub fn metrics(&self) -> RaftMetrics<u64, Member> {
        self.raft.metrics().borrow().clone()
    }

    /// True while this node leads.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// The members by node name, `true` for voters, kept up to date.
    pub fn roles(&self) -> watch::Receiver<BTreeMap<String, bool>> {
        let mut metrics = self.raft.metrics();
        let mut pulled = self.pulled.subscribe();
        let (tx, rx) = watch::channel(BTreeMap::new());
        tokio::spawn(async move {
            loop {
                let m = metrics.borrow_and_update().clone();
                let membership = m.membership_config.membership();
                let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
                let mut roles: BTreeMap<String, bool> = membership
                    .nodes()
                    .map(|(id, n)| (n.name.clone(), voters.contains(id)))
                    .collect();
                // A puller's openraft instance knows no membership: use what it pulled.
                if roles.is_empty() {
                    roles = pulled.borrow_and_update().clone();
                }
                tx.send_if_modified(|r| {
                    let changed = *r != roles;
                    *r = roles;
                    changed
                });
                tokio::select! {
                    r = metrics.changed() => if r.is_err() { return },
                    r = pulled.changed() => if r.is_err() { return },
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        rx
    }

    /// The leader, as this node knows it.
    pub fn leader(&self) -> Option<(u64, Member)> {
        let m = self.metrics();
        let id = m.current_leader?;
        let member = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, member))
    }

    /// Asks the members at `seeds` until one admits this node (they forward to the leader).
    /// Returns at once when the node already is a member.
    pub async fn enroll_through(&self, seeds: Vec<SocketAddr>) {
        *self.seeds.lock().expect("seeds") = seeds.clone();
        let mut wait = Duration::from_millis(200);
        while !self.is_member() {
            for s in &seeds {
                let rpc = RaftRpc::Enroll {
                    id: self.id,
                    member: self.me.clone(),
                    hops: 0,
                };
                match self
                    .ask::<EnrollAnswer>(*s, &rpc, Duration::from_secs(10))
                    .await
                {
                    Ok(Ok(Role::Member)) => {
                        info!(node = %self.me.name, via = %s, "enrolled in the quorum");
                        return;
                    }
                    Ok(Ok(Role::Puller)) => {
                        info!(node = %self.me.name, via = %s, "enrolled: pulling the log from peers");
                        self.pulling
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                    Ok(Err(e)) => warn!(via = %s, error = %e, "enrollment refused"),
                    Err(e) => debug!(via = %s, error = %format!("{e:#}"), "enrollment failed"),
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        to: SocketAddr,
        rpc: &RaftRpc,
        within: Duration,
    ) -> Result<T> {
        let body = tokio::time::timeout(within, self.transport.request(to, &frame(rpc)))
            .await
            .map_err(|_| anyhow::anyhow!("{to} did not answer within {within:?}"))??;
        serde_json::from_slice(&body).with_context(|| format!("reading {to}'s answer"))
    }

    /// Adds `member` as a learner (on the leader; others forward). Idempotent.
    pub async fn enroll(&self, id: u64, member: Member, hops: u8) -> EnrollAnswer {
        match self.leader() {
            Some((l, _)) if l == self.id => {
                let m = self.metrics();
                let membership = m.membership_config.membership();
                if membership.get_node(&id) == Some(&member) {
                    return Ok(Role::Member);
                }
                // Members up to the voters wanted plus the standby learners; nodes beyond pull.
                // A member silent for longer than a voter may be (gone, kept as a learner by
                // the voter plan) does not count.
                let members = membership
                    .nodes()
                    .filter(|(m, _)| {
                        **m == self.id
                            || self
                                .contacts
                                .last(**m)
                                .is_some_and(|t| t.elapsed() < self.settings.replace_after)
                    })
                    .count();
                if membership.get_node(&id).is_none()
                    && members >= self.settings.max_voters + self.settings.standby
                {
                    return Ok(Role::Puller);
                }
                self.raft
                    .add_learner(id, member.clone(), false)
                    .await
                    .map_err(|e| e.to_string())?;
                info!(joiner = %member, id, "added a learner");
                Ok(Role::Member)
            }
            Some((_, leader)) if hops < 2 => {
                let addr: SocketAddr = leader.addr.parse().map_err(|_| "bad leader address")?;
                let rpc = RaftRpc::Enroll {
                    id,
                    member,
                    hops: hops + 1,
                };
                self.ask(addr, &rpc, Duration::from_secs(10))
                    .await
                    .map_err(|e| format!("forwarding to the leader {}: {e:#}", leader.name))?
            }
            _ => Err("no leader known here yet; retry".into()),
        }
    }

    /// Whether this node has heard nothing from member `id` for longer than a live peer
    /// allows (never having heard from it is not silence: it may be new).
    fn silent(&self, id: u64) -> bool {
        id != self.id
            && self
                .contacts
                .last(id)
                .is_some_and(|t| t.elapsed() > self.settings.liveness())
    }

    /// `reachable of voters`, as this node sees them.
    fn reachable(&self, m: &RaftMetrics<u64, Member>) -> (usize, usize) {
        let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
        let live = voters
            .iter()
            .filter(|&&v| {
                v == self.id
                    || self
                        .contacts
                        .last(v)
                        .is_some_and(|t| t.elapsed() < self.settings.liveness())
            })
            .count();
        (live, voters.len())
    }

    fn no_quorum(&self, m: &RaftMetrics<u64, Member>) -> StoreError {
        let (live, all) = self.reachable(m);
        StoreError::NoQuorum(format!("no quorum: {live} of {all} voters reachable"))
    }

    /// Commits `w` through the leader and returns what applying it did.
    pub async fn write(&self, w: Write, hops: u8) -> Result<Vec<Applied>, StoreError> {
        let deadline = Instant::now() + self.settings.write_wait();
        let mut metrics = self.raft.metrics();
        loop {
            let m = metrics.borrow_and_update().clone();
            let target = match m.current_leader {
                Some(l) if l == self.id => {
                    // Fails at once when no quorum has answered for a while and too few voters
                    // have been heard from; a quorum that is heard from but slow (a busy disk)
                    // gets the whole wait.
                    let (live, all) = self.reachable(&m);
                    if live <= all / 2
                        && m.millis_since_quorum_ack
                            .is_some_and(|ms| ms > self.settings.liveness().as_millis() as u64)
                    {
                        return Err(self.no_quorum(&m));
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    let (tx, rx) = oneshot::channel();
                    if self.batcher.send((w.clone(), tx)).is_err() {
                        return Err(StoreError::NoQuorum("the quorum has stopped".into()));
                    }
                    match tokio::time::timeout(left, rx).await {
                        Err(_) | Ok(Ok(Batched::Failed(None))) => {
                            let (live, all) = self.reachable(&m);
                            return Err(StoreError::NoQuorum(format!(
                                "no quorum: the write was not committed within {:?}; {live} of {all} voters reachable",
                                self.settings.write_wait()
                            )));
                        }
                        Ok(Err(_)) => {
                            return Err(StoreError::NoQuorum("the quorum has stopped".into()));
                        }
                        Ok(Ok(Batched::Done(reply))) => return reply.map_err(StoreError::from),
                        Ok(Ok(Batched::NotLeader)) => None,
                        Ok(Ok(Batched::Failed(Some(e)))) => return Err(StoreError::NoQuorum(e)),
                    }
                }
                // A leader silent for longer than a heartbeat allows is most likely gone: wait
                // for the election instead of sending it a write it may never answer.
                Some(l) if hops < 2 && !self.silent(l) => m
                    .membership_config
                    .membership()
                    .get_node(&l)
                    .and_then(|n| n.addr.parse::<SocketAddr>().ok())
                    .map(|a| (l, a)),
                None if hops < 2 && !self.is_member() => {
                    self.live_seeds().first().map(|a| (u64::MAX, *a))
                }
                _ => None,
            };
            if let Some((leader, addr)) = target {
                let rpc = frame(&RaftRpc::Write {
                    write: w.clone(),
                    hops: hops + 1,
                });
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(1));
                let request = tokio::time::timeout(left, self.transport.try_request(addr, &rpc));
                // Given up early when the leader goes silent meanwhile (killed, cut off): the
                // caller hears in about a second, not after the whole wait.
                let gone = async {
                    loop {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        if self.silent(leader) {
                            return;
                        }
                    }
                };
                let answer = tokio::select! {
                    a = request => a,
                    _ = gone => {
                        return Err(StoreError::Remote(format!(
                            "the leader at {addr} went silent during the write (it may or may not have been applied)"
                        )));
                    }
                };
                match answer {
                    Ok(Ok(body)) => {
                        let r: WriteAnswer = serde_json::from_slice(&body).map_err(|e| {
                            StoreError::Remote(format!("unreadable answer from {addr}: {e}"))
                        })?;
                        return r.map_err(StoreError::from);
                    }
                    // Never reached the leader: wait for a (new) leader and try again.
                    Ok(Err(e)) if !e.sent => {
                        debug!(leader = %addr, error = %format!("{:#}", e.error), "leader unreachable")
                    }
                    Ok(Err(e)) => {
                        return Err(StoreError::Remote(format!(
                            "the leader at {addr} failed during the write (it may or may not have been applied): {:#}",
                            e.error
                        )));
                    }
                    Err(_) => {
                        return Err(StoreError::Remote(format!(
                            "the leader at {addr} did not answer within {left:?} (the write may or may not have been applied)"
                        )));
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(if m.current_leader.is_none() {
                    let (live, all) = self.reachable(&m);
                    StoreError::NoQuorum(format!(
                        "no quorum: no leader elected; {live} of {all} voters reachable"
                    ))
                } else {
                    self.no_quorum(&m)
                });
            }
            let _ =
                tokio::time::timeout(left.min(Duration::from_millis(200)), metrics.changed()).await;
        }
    }

    /// On the leader: confirms the lead with a quorum and returns the index every read must
    /// see.
    async fn read_index(&self) -> Result<u64, StoreError> {
        let m = self.metrics();
        match tokio::time::timeout(self.settings.write_wait(), self.raft.ensure_linearizable())
            .await
        {
            Ok(Ok(id)) => Ok(id.map(|l| l.index).unwrap_or(0)),
            Ok(Err(e)) => Err(StoreError::NoQuorum(format!(
                "cannot confirm the leader for a consistent read: {e}"
            ))),
            Err(_) => Err(self.no_quorum(&m)),
        }
    }

    /// Returns once this member has applied everything committed before the call.
    pub async fn read_barrier(&self) -> Result<(), StoreError> {
        let deadline = Instant::now() + self.settings.write_wait();
        let index = loop {
            // Checked each time round: a joiner learns it pulls only once enrolled, and its
            // idle openraft instance would never show a leader (a joiner into a large cluster
            // waited out the whole deadline here).
            if self.is_puller() {
                return self.pulled_read_barrier().await;
            }
            let m = self.metrics();
            match m.current_leader {
                Some(l) if l == self.id => break self.read_index().await?,
                Some(l) => {
                    let Some(addr) = m
                        .membership_config
                        .membership()
                        .get_node(&l)
                        .and_then(|n| n.addr.parse::<SocketAddr>().ok())
                    else {
                        return Err(self.no_quorum(&m));
                    };
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self
                        .ask::<ReadIndexAnswer>(
                            addr,
                            &RaftRpc::ReadIndex,
                            left.max(Duration::from_secs(1)),
                        )
                        .await
                    {
                        Ok(r) => break r.map_err(StoreError::from)?,
                        Err(e) if Instant::now() < deadline => {
                            debug!(error = %format!("{e:#}"), "read index from the leader");
                        }
                        Err(_) => return Err(self.no_quorum(&m)),
                    }
                }
                None if Instant::now() >= deadline => {
                    let (live, all) = self.reachable(&m);
                    return Err(StoreError::NoQuorum(format!(
                        "no quorum: no leader elected; {live} of {all} voters reachable"
                    )));
                }
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        self.raft
            .wait(Some(left))
            .applied_index_at_least(Some(index), "consistent read")
            .await
            .map(|_| ())
            .map_err(|e| StoreError::NoQuorum(format!("catching up for a consistent read: {e}")))
    }

    /// Whether this node pulls the log (it is no member, and the leader said so).
    pub fn is_puller(&self) -> bool {
        self.pulling.load(std::sync::atomic::Ordering::Relaxed) && !self.is_member()
    }

    /// A puller's consistent read: the read index from a voter (which asks its leader), then
    /// waiting until the pulled log has been applied that far.
    async fn pulled_read_barrier(&self) -> Result<(), StoreError> {
        let deadline = Instant::now() + self.settings.write_wait();
        let seeds = self.live_seeds();
        let mut index = None;
        for s in seeds {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .ask::<ReadIndexAnswer>(s, &RaftRpc::ReadIndex, left.max(Duration::from_secs(1)))
                .await
            {
                Ok(Ok(i)) => {
                    index = Some(i);
                    break;
                }
                Ok(Err(e)) => debug!(via = %s, error = %StoreError::from(e), "read index"),
                Err(e) => debug!(via = %s, error = %format!("{e:#}"), "read index"),
            }
        }
        let Some(index) = index else {
            return Err(StoreError::NoQuorum(
                "no quorum: no voter answered a consistent read".into(),
            ));
        };
        while pull::next_index(&self.store).await.unwrap_or(0) <= index {
            if Instant::now() >= deadline {
                return Err(StoreError::NoQuorum(
                    "catching up for a consistent read: the pulled log is behind".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Where a node outside the membership sends writes and read-index requests: the voters
    /// (and the address it joined through), those gossip hears first.
    fn live_seeds(&self) -> Vec<SocketAddr> {
        let live: Vec<SocketAddr> = self
            .peers
            .lock()
            .expect("peers")
            .iter()
            .map(|(a, _)| *a)
            .collect();
        let mut seeds = self.seeds.lock().expect("seeds").clone();
        seeds.sort_by_key(|s| !live.contains(s));
        seeds
    }

    /// Gossip's view of the peers: their QUIC addresses and the next index each needs (one
    /// past the last it applied).
    pub fn set_peers(&self, peers: Vec<(SocketAddr, u64)>) {
        *self.peers.lock().expect("peers") = peers;
    }

    /// The peer a puller asks next: one gossip shows ahead of `mine`, other pullers and
    /// learners before voters; when none is ahead, a member or a puller ordered before this
    /// node (never two pullers waiting on each other).
    fn upstream(&self, mine: u64, turn: usize) -> Option<SocketAddr> {
        let voters = self.voters.lock().expect("voters").clone();
        let me: SocketAddr = self.me.addr.parse().ok()?;
        let peers: Vec<(SocketAddr, u64)> = self
            .peers
            .lock()
            .expect("peers")
            .iter()
            .filter(|(a, _)| *a != me)
            .copied()
            .collect();
        let pick = |c: Vec<SocketAddr>| (!c.is_empty()).then(|| c[turn % c.len()]);
        let ahead = |skip_voters: bool| -> Vec<SocketAddr> {
            peers
                .iter()
                .filter(|(a, i)| *i > mine && !(skip_voters && voters.contains(a)))
                .map(|(a, _)| *a)
                .collect()
        };
        pick(ahead(true))
            .or_else(|| pick(ahead(false)))
            .or_else(|| {
                pick(
                    peers
                        .iter()
                        .filter(|(a, i)| *i >= mine && !voters.contains(a) && *a < me)
                        .map(|(a, _)| *a)
                        .collect(),
                )
            })
            .or_else(|| pick(voters.clone()))
            .or_else(|| self.seeds.lock().expect("seeds").first().copied())
    }

    /// After pulling: the voters' addresses (where writes and consistent reads go) and the
    /// roles `get nodes` shows, from the membership this node applied.
    async fn learn_membership(&self) {
        let Ok(Some(m)) = super::log::get_state::<openraft::StoredMembership<u64, Member>>(
            self.store.pool(),
            "membership",
        )
        .await
        else {
            return;
        };
        let membership = m.membership();
        let voter_ids: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let voters: Vec<SocketAddr> = membership
            .nodes()
            .filter(|(id, _)| voter_ids.contains(id))
            .filter_map(|(_, n)| n.addr.parse().ok())
            .collect();
        let roles: BTreeMap<String, bool> = membership
            .nodes()
            .map(|(id, n)| (n.name.clone(), voter_ids.contains(id)))
            .collect();
        self.pulled.send_if_modified(|r| {
            let changed = *r != roles;
            if changed {
                info!(node = %self.me.name, roles = ?roles, "pulled a membership");
            }
            *r = roles;
            changed
        });
        if !voters.is_empty() {
            let mut seeds = self.seeds.lock().expect("seeds");
            let joined: Vec<SocketAddr> = seeds
                .iter()
                .filter(|s| !voters.contains(s))
                .copied()
                .collect();
            *seeds = voters.iter().copied().chain(joined).collect();
        }
        *self.voters.lock().expect("voters") = voters;
    }

    /// Answers one RPC from another member.
    pub async fn handle(&self, rpc: RaftRpc) -> Vec<u8> {
        let enc = |v: serde_json::Result<Vec<u8>>| v.expect("raft answers serialise");
        match rpc {
            RaftRpc::Append(r) => {
                if let Some(leader) = r.vote.leader_id().voted_for() {
                    self.contacts.touch(leader);
                }
                enc(serde_json::to_vec(&self.raft.append_entries(r).await))
            }
            RaftRpc::Vote(r) => enc(serde_json::to_vec(&self.raft.vote(r).await)),
            RaftRpc::Snapshot(r) => enc(serde_json::to_vec(&self.raft.install_snapshot(r).await)),
            RaftRpc::Write { write, hops } => {
                let r: WriteAnswer = self
                    .write(write, hops)
                    .await
                    .map_err(|e| Rejection::from(&e));
                enc(serde_json::to_vec(&r))
            }
            RaftRpc::Enroll { id, member, hops } => {
                enc(serde_json::to_vec(&self.enroll(id, member, hops).await))
            }
            RaftRpc::ReadIndex => {
                let r: ReadIndexAnswer = match self.leader() {
                    Some((l, leader)) if l != self.id => match leader.addr.parse() {
                        Ok(addr) => self
                            .ask::<ReadIndexAnswer>(
                                addr,
                                &RaftRpc::ReadIndex,
                                self.settings.write_wait(),
                            )
                            .await
                            .unwrap_or_else(|e| {
                                Err(Rejection::from(&StoreError::NoQuorum(format!(
                                    "asking the leader for a read index: {e:#}"
                                ))))
                            }),
                        Err(_) => Err(Rejection::from(&StoreError::NoQuorum(
                            "bad leader address".into(),
                        ))),
                    },
                    _ => self.read_index().await.map_err(|e| Rejection::from(&e)),
                };
                enc(serde_json::to_vec(&r))
            }
            RaftRpc::Pull { from, wait_ms } => {
                let wait = Duration::from_millis(wait_ms.min(30_000));
                let r: PullAnswer = pull::serve(&self.store, from, wait).await;
                enc(serde_json::to_vec(&r))
            }
            RaftRpc::PullSnapshot { id, offset } => {
                let r: ChunkAnswer = pull::serve_chunk(&self.store, &id, offset).await;
                enc(serde_json::to_vec(&r))
            }
        }
    }

    /// Stops Raft (the log and store stay as they are on disk).
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// What a puller got from a peer, whole.
enum Absorb {
    Entries(Vec<openraft::Entry<TypeConfig>>),
    Snapshot(openraft::SnapshotMeta<u64, Member>, Vec<u8>),
}

impl Quorum {
    /// Fetches the peer's snapshot `id` of `size` bytes, part by part.
    async fn fetch_snapshot(&self, from: SocketAddr, id: &str, size: u64) -> Result<Vec<u8>> {
        // The size is the peer's word: reserve no more than a large store needs up front.
        let mut data = Vec::with_capacity(size.min(64 << 20) as usize);
        while (data.len() as u64) < size {
            let rpc = RaftRpc::PullSnapshot {
                id: id.to_string(),
                offset: data.len() as u64,
            };
            let chunk = self
                .ask::<ChunkAnswer>(from, &rpc, Duration::from_secs(15))
                .await?
                .map_err(|e| anyhow::anyhow!(e))?;
            if chunk.0.is_empty() {
                anyhow::bail!(
                    "snapshot {id} from {from} ended at {} of {size} bytes",
                    data.len()
                );
            }
            data.extend_from_slice(&chunk.0);
        }
        debug!(node = %self.me.name, %from, id, size, "fetched a snapshot");
        Ok(data)
    }

    async fn absorb(&self, pulled: Absorb) -> Result<u64, String> {
        match pulled {
            Absorb::Entries(e) => pull::absorb(&self.store, e, self.settings.keep_logs).await,
            Absorb::Snapshot(meta, data) => pull::install(&self.store, &meta, data).await,
        }
    }
}

/// The store's way to the quorum.
pub struct Propose(pub Arc<Quorum>);

impl Proposer for Propose {
    fn propose(
        &self,
        w: Write,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<Applied>, StoreError>> + Send>> {
        let q = self.0.clone();
        Box::pin(async move { q.write(w, 0).await })
    }

    fn read_barrier(
        &self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>> {
        let q = self.0.clone();
        Box::pin(async move { q.read_barrier().await })
    }
}

/// A puller's loop: long-polls a peer for the entries after the last one applied here and
/// takes them in; every 30 s asks to be enrolled again, to become a learner when the quorum
/// needs one more.
async fn follow(q: Weak<Quorum>) {
    let mut turn = 0usize;
    let mut last_enroll = Instant::now();
    loop {
        let Some(q) = q.upgrade() else { return };
        if !q.is_puller() {
            drop(q);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        if last_enroll.elapsed() > q.settings.reenroll_every {
            last_enroll = Instant::now();
            let seeds = q.seeds.lock().expect("seeds").clone();
            let rpc = RaftRpc::Enroll {
                id: q.id,
                member: q.me.clone(),
                hops: 0,
            };
            for s in seeds {
                if let Ok(Ok(Role::Member)) =
                    q.ask::<EnrollAnswer>(s, &rpc, Duration::from_secs(5)).await
                {
                    info!(node = %q.me.name, "made a learner: the leader replicates to it now");
                    break;
                }
            }
        }
        let mine = pull::next_index(&q.store).await.unwrap_or(0);
        turn = turn.wrapping_add(1);
        let Some(up) = q.upstream(mine, turn) else {
            drop(q);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let rpc = RaftRpc::Pull {
            from: mine,
            wait_ms: 5000,
        };
        let pulled = match q.ask::<PullAnswer>(up, &rpc, Duration::from_secs(15)).await {
            Ok(Ok(Pulled::Snapshot { meta, size })) => q
                .fetch_snapshot(up, &meta.snapshot_id, size)
                .await
                .map(|data| Ok(Absorb::Snapshot(meta, data))),
            Ok(Ok(Pulled::Entries(e))) => Ok(Ok(Absorb::Entries(e))),
            Ok(Err(e)) => Ok(Err(e)),
            Err(e) => Err(e),
        };
        match pulled {
            Ok(Ok(pulled)) => match q.absorb(pulled).await {
                Ok(index) if index > mine => {
                    debug!(node = %q.me.name, from = %up, index, "pulled");
                    q.learn_membership().await;
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(node = %q.me.name, from = %up, error = %e, "cannot apply pulled entries");
                    drop(q);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            Ok(Err(e)) => {
                debug!(from = %up, error = %e, "pull refused");
                drop(q);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                debug!(from = %up, error = %format!("{e:#}"), "pull failed");
                drop(q);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn watch_leadership(q: Weak<Quorum>) {
    let Some(mut metrics) = q.upgrade().map(|q| q.raft.metrics()) else {
        return;
    };
    loop {
        {
            let Some(q) = q.upgrade() else { return };
            let leads = metrics.borrow_and_update().state == ServerState::Leader;
            let changed = q.leading.send_if_modified(|l| {
                let changed = *l != leads;
                *l = leads;
                changed
            });
            if changed {
                info!(node = %q.me.name, leading = leads, "leadership changed");
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// While leading: every second, plans the voter set and changes it when the plan says so.
async fn keep_voters(q: Weak<Quorum>) {
    let mut since: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(q) = q.upgrade() else { return };
        let m = q.metrics();
        if m.current_leader != Some(q.id) {
            since = None;
            continue;
        }
        let lead_start = *since.get_or_insert_with(Instant::now);
        let membership = m.membership_config.membership();
        if m.membership_config.membership().get_joint_config().len() > 1 {
            continue; // a change is under way
        }
        let voters = membership.voter_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let health: Vec<voters::Health> = membership
            .nodes()
            .map(|(&id, _)| {
                if id == q.id {
                    return voters::Health {
                        id,
                        ready: true,
                        silent_for: Duration::ZERO,
                    };
                }
                let silent_for = q
                    .contacts
                    .last(id)
                    .map(|t| t.elapsed())
                    .unwrap_or_else(|| lead_start.elapsed());
                let caught_up = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .is_some_and(|l| l.index + 100 >= last);
                voters::Health {
                    id,
                    ready: silent_for < q.settings.liveness() && caught_up,
                    silent_for,
                }
            })
            .collect();
        let Some(next) = voters::plan(
            &voters,
            &health,
            q.id,
            q.settings.max_voters,
            q.settings.replace_after,
        ) else {
            continue;
        };
        info!(node = %q.me.name, from = ?voters, to = ?next, "changing the voters");
        if let Err(e) = q.raft.change_membership(next, true).await {
            warn!(error = %e, "changing the voters failed");
        }
    }
}
