//! openraft's storage suite against the SQLite log and store, and real quorums: members in
//! this process, each with its own SQLite file, talking QUIC over 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use serde_json::json;
use tempfile::TempDir;

use super::log::LogStore;
use super::machine::StateMachine;
use super::quorum::Propose;
use super::*;
use crate::cluster::tests::{ca, install_provider, node_creds};
use crate::cluster::transport::Transport;
use crate::cluster::{QuorumCell, handler};
use crate::store::{Key, Op, SecretCipher, Store, StoreError, new_uid};

async fn open_store(dir: &std::path::Path) -> Store {
    Store::open(
        &dir.join("flotilla.db"),
        SecretCipher::from_key(&[7; 32]).unwrap(),
    )
    .await
    .unwrap()
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        Ok((dir, LogStore::new(&store), StateMachine::new(store)))
    }
}

#[test]
fn the_sqlite_log_and_store_pass_openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}

fn fast() -> RaftSettings {
    RaftSettings {
        heartbeat: Duration::from_millis(100),
        election_timeout: Duration::from_millis(500),
        max_voters: 3,
        replace_after: Duration::from_secs(3600),
        ..Default::default()
    }
}

struct Node {
    name: String,
    store: Store,
    quorum: Arc<Quorum>,
    transport: Transport,
    _dir: TempDir,
}

async fn node(ca: &crate::cluster::tests::Ca, name: &str, settings: RaftSettings) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let t = Transport::bind("127.0.0.1:0".parse().unwrap(), &node_creds(ca, name)).unwrap();
    let cell = QuorumCell::default();
    t.serve(handler(name.into(), None, None, cell.clone()));
    let member = Member {
        name: name.into(),
        addr: t.local_addr().unwrap().to_string(),
    };
    let quorum = Quorum::start(&store, t.clone(), member, settings)
        .await
        .unwrap();
    let _ = cell.set(quorum.clone());
    store.set_proposer(Arc::new(Propose(quorum.clone())));
    Node {
        name: name.into(),
        store,
        quorum,
        transport: t,
        _dir: dir,
    }
}

fn config_map(name: &str) -> Write {
    Write::new(vec![Op::Create {
        object: json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"}, "data": {"k": name}}),
        uid: new_uid(),
    }])
}

async fn eventually<F: AsyncFn() -> bool>(what: &str, within: Duration, f: F) {
    let end = std::time::Instant::now() + within;
    while !f().await {
        assert!(std::time::Instant::now() < end, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn has(store: &Store, name: &str) -> bool {
    store
        .get(&Key::new("ConfigMap", "default", name))
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_writes_from_any_of_them_and_survive_losing_the_leader() {
    install_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let ca = ca();
    let mut nodes = Vec::new();
    for n in ["n1", "n2", "n3"] {
        nodes.push(node(&ca, n, fast()).await);
    }
    nodes[0].quorum.initialize().await.unwrap();
    let seed: std::net::SocketAddr = nodes[0].quorum.me.addr.parse().unwrap();
    for n in &nodes[1..] {
        n.quorum.enroll_through(vec![seed]).await;
    }
    // The leader promotes both learners once they caught up: three voters.
    eventually("three voters", Duration::from_secs(20), async || {
        nodes[0]
            .quorum
            .metrics()
            .membership_config
            .membership()
            .voter_ids()
            .count()
            == 3
    })
    .await;

    // A write on a follower is forwarded, committed, and applied everywhere.
    let applied = nodes[2].store.write(&config_map("from-n3")).await.unwrap();
    assert_eq!(applied[0].object["metadata"]["name"], "from-n3");
    // A consistent read on another member sees it at once.
    for n in &nodes {
        n.store.read_barrier().await.unwrap();
        assert!(
            has(&n.store, "from-n3").await,
            "{} after the barrier",
            n.name
        );
    }
    for n in &nodes {
        eventually(
            &format!("{} has from-n3", n.name),
            Duration::from_secs(5),
            async || has(&n.store, "from-n3").await,
        )
        .await;
    }
    // A refusal comes back as the store's own error, from every member alike.
    let again = nodes[1].store.write(&config_map("from-n3")).await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists { .. })),
        "{again:?}"
    );
    // Same revision on every node.
    let revs: Vec<i64> = nodes.iter().map(|n| n.store.revision()).collect();
    eventually("same revision", Duration::from_secs(5), async || {
        nodes.iter().all(|n| n.store.revision() == revs[0])
    })
    .await;

    // The leader dies: the others elect a new one, and writes go on.
    let (lid, _) = nodes[0].quorum.leader().unwrap();
    let li = nodes.iter().position(|n| n.quorum.id == lid).unwrap();
    let dead = nodes.remove(li);
    dead.quorum.shutdown().await;
    dead.transport.close();
    let started = std::time::Instant::now();
    let mut wrote = false;
    while started.elapsed() < Duration::from_secs(15) {
        match nodes[0].store.write(&config_map("after-failover")).await {
            Ok(_) => {
                wrote = true;
                break;
            }
            Err(StoreError::AlreadyExists { .. }) => {
                wrote = true;
                break;
            }
            Err(e) => eprintln!("while electing: {e}"),
        }
    }
    assert!(wrote, "no write succeeded after the leader died");
    eprintln!("failover: first write after {:?}", started.elapsed());
    for n in &nodes {
        eventually(
            "after-failover everywhere",
            Duration::from_secs(5),
            async || has(&n.store, "after-failover").await,
        )
        .await;
    }

    // Down to one of three voters: a write fails with a clear error, and does not hang.
    let (lid, _) = nodes[0].quorum.leader().unwrap();
    let li = nodes.iter().position(|n| n.quorum.id == lid).unwrap();
    let survivor = nodes.remove(1 - li);
    let other = nodes.remove(0);
    other.quorum.shutdown().await;
    other.transport.close();
    let t = std::time::Instant::now();
    let err = survivor
        .store
        .write(&config_map("no-quorum"))
        .await
        .unwrap_err();
    // Either it knew the quorum was gone, or its write was cut off mid-way when the last
    // other voter died; both say so.
    assert!(
        err.to_string()
            .starts_with("no quorum: 1 of 3 voters reachable")
            || err.to_string().starts_with("no quorum: no leader")
            || err.to_string().contains("may or may not have been applied"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // Plain reads carry on; a consistent read says it cannot be.
    assert!(has(&survivor.store, "after-failover").await);
    let e = survivor.store.read_barrier().await.unwrap_err();
    assert!(e.to_string().contains("no quorum"), "{e}");
    assert!(!has(&survivor.store, "no-quorum").await);
    survivor.quorum.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_beyond_the_quorum_pull_the_log_from_peers_or_a_snapshot() {
    install_provider();
    let ca = ca();
    // One voter, no standby learner: every other node pulls. Snapshots every 20 entries,
    // keeping 5, so a late joiner finds the start of the log gone.
    let settings = RaftSettings {
        max_voters: 1,
        standby: 0,
        snapshot_every: 20,
        keep_logs: 5,
        ..fast()
    };
    let n1 = node(&ca, "n1", settings.clone()).await;
    n1.quorum.initialize().await.unwrap();
    for i in 0..40 {
        n1.store
            .write(&config_map(&format!("early-{i}")))
            .await
            .unwrap();
    }
    // A store larger than one message may carry: the snapshot comes in parts.
    let big = "x".repeat(1_000_000);
    for i in 0..6 {
        n1.store
            .write(&Write::new(vec![Op::Create {
                object: json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("big-{i}"), "namespace": "default"},
                    "data": {"k": big}}),
                uid: new_uid(),
            }]))
            .await
            .unwrap();
    }
    for i in 40..60 {
        n1.store
            .write(&config_map(&format!("early-{i}")))
            .await
            .unwrap();
    }
    let seed: std::net::SocketAddr = n1.quorum.me.addr.parse().unwrap();
    let n2 = node(&ca, "n2", settings.clone()).await;
    n2.quorum.enroll_through(vec![seed]).await;
    assert!(n2.quorum.is_puller(), "n2 should pull, not be a member");
    // The leader's log no longer starts at 1: n2 gets a snapshot, then entries.
    eventually(
        "n2 has everything written before it joined",
        Duration::from_secs(20),
        async || has(&n2.store, "early-59").await && has(&n2.store, "early-0").await,
    )
    .await;
    for i in 0..6 {
        let cm = n2
            .store
            .get(&Key::new("ConfigMap", "default", &format!("big-{i}")))
            .await
            .unwrap()
            .expect("the big ConfigMap on n2");
        assert_eq!(cm["data"]["k"].as_str().map(str::len), Some(1_000_000));
    }
    // n3 pulls from n2, which gossip would show ahead of it.
    let n3 = node(&ca, "n3", settings.clone()).await;
    n3.quorum.enroll_through(vec![seed]).await;
    assert!(n3.quorum.is_puller());
    let n2_addr: std::net::SocketAddr = n2.quorum.me.addr.parse().unwrap();
    n3.quorum.set_peers(vec![(n2_addr, u64::MAX)]);
    eventually(
        "n3 caught up through n2",
        Duration::from_secs(20),
        async || has(&n3.store, "early-59").await,
    )
    .await;
    // A write through a puller goes to the voter; every node gets it.
    n3.store.write(&config_map("from-a-puller")).await.unwrap();
    for n in [&n1, &n2, &n3] {
        eventually(
            "the puller's write everywhere",
            Duration::from_secs(20),
            async || has(&n.store, "from-a-puller").await,
        )
        .await;
    }
    // A consistent read on a puller waits for what the voter committed.
    n1.store.write(&config_map("just-now")).await.unwrap();
    n2.store.read_barrier().await.unwrap();
    assert!(has(&n2.store, "just-now").await);
    // The leader replicates to no one: the pullers cost it only what they ask.
    let m = n1.quorum.metrics();
    let targets: Vec<u64> = m
        .replication
        .iter()
        .flat_map(|r| r.keys().copied())
        .filter(|id| *id != n1.quorum.id)
        .collect();
    assert!(targets.is_empty(), "the leader replicates to {targets:?}");
    // Same contents and revision everywhere.
    let d1 = n1.store.dump().await.unwrap();
    for n in [&n2, &n3] {
        eventually("same revision", Duration::from_secs(20), async || {
            n.store.revision() == n1.store.revision()
        })
        .await;
        let d = n.store.dump().await.unwrap();
        assert_eq!(d.objects.len(), d1.objects.len());
    }
    // Roles come from the pulled membership.
    let roles = n3.quorum.roles();
    eventually(
        "n3 knows n1 is the voter",
        Duration::from_secs(5),
        async || roles.borrow().get("n1") == Some(&true),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_puller_becomes_a_learner_when_a_voter_is_lost_and_applies_nothing_twice() {
    install_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let ca = ca();
    // 3 voters + 1 standby learner; the fifth node pulls. A voter dies: the learner replaces
    // it, and the puller, asking again, becomes the new standby learner; openraft then sends
    // it entries it already pulled, which change nothing.
    let settings = RaftSettings {
        replace_after: Duration::from_secs(2),
        standby: 1,
        reenroll_every: Duration::from_millis(500),
        ..fast()
    };
    let mut nodes = Vec::new();
    for n in ["n1", "n2", "n3", "n4", "n5"] {
        nodes.push(node(&ca, n, settings.clone()).await);
    }
    nodes[0].quorum.initialize().await.unwrap();
    let seed: std::net::SocketAddr = nodes[0].quorum.me.addr.parse().unwrap();
    for n in &nodes[1..4] {
        n.quorum.enroll_through(vec![seed]).await;
    }
    let voters = |n: &Node| {
        n.quorum
            .metrics()
            .membership_config
            .membership()
            .voter_ids()
            .count()
    };
    eventually("three voters", Duration::from_secs(20), async || {
        voters(&nodes[0]) == 3
    })
    .await;
    nodes[4].quorum.enroll_through(vec![seed]).await;
    assert!(nodes[4].quorum.is_puller());
    for i in 0..20 {
        nodes[1]
            .store
            .write(&config_map(&format!("before-{i}")))
            .await
            .unwrap();
    }
    eventually(
        "n5 pulled everything",
        Duration::from_secs(20),
        async || has(&nodes[4].store, "before-19").await,
    )
    .await;
    // A voter other than the leader dies.
    let leader = nodes[0].quorum.leader().unwrap().0;
    let m = nodes[0].quorum.metrics();
    let voter_ids: Vec<u64> = m.membership_config.membership().voter_ids().collect();
    let victim = nodes
        .iter()
        .position(|n| n.quorum.id != leader && voter_ids.contains(&n.quorum.id))
        .unwrap();
    nodes[victim].quorum.shutdown().await;
    nodes[victim].transport.close();
    let live: Vec<usize> = (0..5).filter(|i| *i != victim).collect();
    eventually("n5 is a member", Duration::from_secs(30), async || {
        nodes[4].quorum.is_member() && !nodes[4].quorum.is_puller()
    })
    .await;
    // The former puller now gets entries from the leader; nothing is applied twice.
    let w = live[0];
    nodes[w].store.write(&config_map("after")).await.unwrap();
    eventually(
        "n5 has the new write",
        Duration::from_secs(20),
        async || has(&nodes[4].store, "after").await,
    )
    .await;
    let rev = nodes[w].store.revision();
    for i in &live {
        eventually(
            "same revision everywhere",
            Duration::from_secs(20),
            async || nodes[*i].store.revision() == rev,
        )
        .await;
    }
}
