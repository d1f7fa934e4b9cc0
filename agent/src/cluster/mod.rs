//! The cluster plane: node-to-node QUIC with mutual TLS ([`transport`]), joining by token
//! ([`join`]), membership by gossip ([`gossip`], chitchat over the same endpoint) and the
//! quorum that orders every write ([`raft`], openraft over the same endpoint).

pub mod certs;
pub mod gossip;
pub mod identity;
pub mod join;
pub mod kubeconfig;
pub mod pem;
pub mod raft;
pub mod tokens;
pub mod transport;

pub use identity::{AdminConfig, Identity};

/// Where the handler finds the quorum once it has started (the endpoint serves before).
pub type QuorumCell = Arc<std::sync::OnceLock<Arc<raft::Quorum>>>;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use tokio::sync::mpsc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde::{Deserialize, Serialize};

use crate::manifest::lifecycle::{self, decode};

use self::join::{Admission, JoinRequest, JoinResponse};
use self::transport::{Handler, Peer};

/// Who admits joiners on this node: fixed material, or the replicated store.
pub enum Admit {
    Fixed(Admission),
    Store(tokens::Admitter),
}

impl Admit {
    pub async fn admit(&self, req: &JoinRequest) -> Result<JoinResponse> {
        match self {
            Admit::Fixed(a) => a.admit(req),
            Admit::Store(s) => s.admit(req).await,
        }
    }
}

/// What one node asks another.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Request {
    Ping,
    Join(JoinRequest),
}

/// The answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Response {
    /// `peer`: the name in the asker's certificate, as this node saw it.
    Pong {
        node: String,
        peer: String,
    },
    Joined(JoinResponse),
    Error {
        message: String,
    },
}

fn error(message: impl Into<String>) -> Response {
    Response::Error {
        message: message.into(),
    }
}

/// The node's request handler. Only a join is answered for a peer without a cluster
/// certificate; a join is answered only by a node that holds the CA key (`admission`).
/// Gossip frames from members go to `gossip` (chitchat's inbox) and get an empty answer; Raft
/// frames from members go to the quorum (an empty answer before it has started).
pub fn handler(
    node: String,
    admission: Option<Arc<Admit>>,
    gossip: Option<mpsc::Sender<(SocketAddr, Vec<u8>)>>,
    quorum: QuorumCell,
) -> Handler {
    Arc::new(move |peer: Peer, body: Vec<u8>| {
        let (node, admission, gossip) = (node.clone(), admission.clone(), gossip.clone());
        let quorum = quorum.clone();
        Box::pin(async move {
            if body.first() == Some(&raft::RAFT_TAG) {
                let (Some(q), Some(_)) = (quorum.get(), &peer.node) else {
                    return Vec::new();
                };
                return match serde_json::from_slice::<raft::RaftRpc>(&body[1..]) {
                    Ok(rpc) => q.handle(rpc).await,
                    Err(e) => {
                        tracing::warn!(addr = %peer.addr, error = %e, "unreadable Raft message");
                        Vec::new()
                    }
                };
            }
            if body.first() == Some(&gossip::GOSSIP_TAG) {
                if let (Some(tx), Some(_), Some((from, _))) =
                    (&gossip, &peer.node, gossip::unframe(&body))
                {
                    // A full inbox drops the message: gossip repeats itself.
                    let _ = tx.try_send((from, body));
                }
                return Vec::new();
            }
            let resp = match (serde_json::from_slice::<Request>(&body), &peer.node) {
                (Err(e), _) => error(format!("unreadable request: {e}")),
                (Ok(Request::Join(req)), _) => match &admission {
                    Some(a) => match a.admit(&req).await {
                        Ok(r) => {
                            tracing::info!(joiner = %req.node, addr = %peer.addr, "admitted a node");
                            Response::Joined(r)
                        }
                        Err(e) => {
                            tracing::warn!(joiner = %req.node, addr = %peer.addr, error = %e, "refused a join");
                            error(format!("{e:#}"))
                        }
                    },
                    None => error("this node cannot admit nodes (it holds no CA key)"),
                },
                (Ok(_), None) => error("a cluster certificate is needed: join first"),
                (Ok(Request::Ping), Some(p)) => Response::Pong {
                    node,
                    peer: p.clone(),
                },
            };
            serde_json::to_vec(&resp).expect("responses serialise")
        })
    })
}

/// Who this node is in gossip, whom it starts from, and the timing; [`GossipConfig::new`]'s
/// defaults suit a Raspberry Pi on a lossy link.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    pub node: String,
    pub cluster_id: String,
    /// The address peers reach this node's endpoint at.
    pub advertise: SocketAddr,
    pub seeds: Vec<SocketAddr>,
    pub interval: Duration,
    pub phi_threshold: f64,
}

impl GossipConfig {
    pub fn new(node: &str, cluster_id: &str, advertise: SocketAddr) -> GossipConfig {
        GossipConfig {
            node: node.to_string(),
            cluster_id: cluster_id.to_string(),
            advertise,
            seeds: Vec::new(),
            interval: Duration::from_millis(500),
            phi_threshold: 8.0,
        }
    }
}

/// Starts chitchat on `transport`, fed by `inbox` (the handler's gossip channel), publishing
/// `key_values`.
pub async fn start_gossip(
    transport: &transport::Transport,
    inbox: gossip::Inbox,
    cfg: &GossipConfig,
    key_values: Vec<(String, String)>,
) -> Result<ChitchatHandle> {
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(cfg.node.clone(), generation, cfg.advertise),
        cluster_id: cfg.cluster_id.clone(),
        gossip_interval: cfg.interval,
        listen_addr: cfg.advertise,
        seed_nodes: cfg.seeds.iter().map(|s| s.to_string()).collect(),
        failure_detector_config: FailureDetectorConfig {
            phi_threshold: cfg.phi_threshold,
            initial_interval: cfg.interval * 2,
            ..FailureDetectorConfig::default()
        },
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: chitchat::ProtocolVersion::V0,
    };
    let t = gossip::QuicGossip::new(transport.clone(), cfg.advertise, inbox);
    chitchat::spawn_chitchat(config, key_values, &t).await
}

#[cfg(test)]
mod tests;

/// The nodes this node does not hear by gossip: every Node object of the store whose name is
/// not among the live nodes [`share_progress`] reports, once gossip has run for `settle` (so a
/// starting node does not call everyone unreachable). Refreshed twice a second.
pub fn watch_unreachable(
    observed: tokio::sync::watch::Receiver<Observed>,
    store: crate::store::Store,
    me: String,
    settle: Duration,
) -> (
    tokio::sync::watch::Receiver<std::collections::BTreeSet<String>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::watch::channel(std::collections::BTreeSet::new());
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            if started.elapsed() < settle {
                continue;
            }
            let live: std::collections::BTreeSet<String> =
                observed.borrow().keys().cloned().collect();
            #[derive(Deserialize)]
            struct Named {
                metadata: NameOnly,
            }
            #[derive(Deserialize)]
            struct NameOnly {
                name: String,
            }
            let Ok((nodes, _)) = store.list_as::<Named>("Node", Some("")).await else {
                continue;
            };
            let gone: std::collections::BTreeSet<String> = nodes
                .into_iter()
                .map(|n| n.metadata.name)
                .filter(|n| *n != me && !live.contains(n))
                .collect();
            tx.send_if_modified(|cur| {
                let changed = *cur != gone;
                if changed {
                    tracing::info!(node = %me, unreachable = ?gone, "gossip liveness changed");
                    *cur = gone;
                }
                changed
            });
        }
    });
    (rx, task)
}

/// Each live node's gossiped key-values, by node name.
pub type Observed = std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

/// This node's own observed state as gossip key-values: `pods` (each of its pods with phase,
/// IP and readiness, as JSON `[[ns/name, phase, ip, ready], ...]`) and `allocatable` (its
/// Node's, as JSON), from its replica.
async fn own_state(store: &crate::store::Store, me: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok((pods, _)) = store.list("Pod", None).await {
        let mine: Vec<serde_json::Value> = pods
            .into_iter()
            // Only this node's pods are decoded (the filter reads the store's bytes).
            .filter(|p| p["spec"]["nodeName"] == me)
            .filter_map(|p| decode::<Pod>(p).ok())
            .map(|p| {
                serde_json::json!([
                    format!(
                        "{}/{}",
                        lifecycle::namespace(&p.metadata),
                        lifecycle::name(&p.metadata)
                    ),
                    match lifecycle::pod_phase(&p) {
                        "" => "Pending",
                        phase => phase,
                    },
                    p.status
                        .as_ref()
                        .and_then(|s| s.pod_ip.as_deref())
                        .unwrap_or(""),
                    lifecycle::pod_ready(&p)
                ])
            })
            .collect();
        out.push(("pods".into(), serde_json::Value::from(mine).to_string()));
    }
    if let Ok(Some(node)) = store.get(&crate::store::Key::new("Node", "", me)).await
        && let Ok(node) = decode::<Node>(node)
    {
        let allocatable = node.status.and_then(|s| s.allocatable).unwrap_or_default();
        out.push((
            "allocatable".into(),
            serde_json::to_string(&allocatable).unwrap_or_default(),
        ));
    }
    out
}

/// A one-line summary of a node's gossiped state, as `get node` shows it in the annotation
/// `flotilla.io/observed`: `next=N pods=T running=R ready=Y`.
pub fn observed_summary(kv: &std::collections::BTreeMap<String, String>) -> String {
    let mut parts = Vec::new();
    if let Some(n) = kv.get("next") {
        parts.push(format!("next={n}"));
    }
    if let Some(pods) = kv
        .get("pods")
        .and_then(|p| serde_json::from_str::<Vec<serde_json::Value>>(p).ok())
    {
        let running = pods.iter().filter(|p| p[1] == "Running").count();
        let ready = pods.iter().filter(|p| p[3] == true).count();
        parts.push(format!(
            "pods={} running={running} ready={ready}",
            pods.len()
        ));
    }
    parts.join(" ")
}

/// Publishes in gossip the next log index this node needs (`next`, one past the last it
/// applied) and hands the quorum every live peer's, four times a second: how a node that
/// pulls the log finds a peer ahead of it ([`raft::pull`]).
pub fn share_progress(
    gossip: &ChitchatHandle,
    store: crate::store::Store,
    quorum: std::sync::Arc<raft::Quorum>,
    me: String,
) -> (
    tokio::sync::watch::Receiver<Observed>,
    tokio::task::JoinHandle<()>,
) {
    let chitchat = gossip.chitchat();
    let (tx, rx) = tokio::sync::watch::channel(Observed::new());
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut published_rev = -1;
        let mut published_at = std::time::Instant::now();
        loop {
            tick.tick().await;
            let mine = raft::pull::next_index(&store).await.unwrap_or(0);
            // Pods and resources when they changed in the replica, at most once a second.
            let rev = store.revision_of(&["Pod", "Node"]);
            let state = if rev != published_rev && published_at.elapsed() >= Duration::from_secs(1)
            {
                published_rev = rev;
                published_at = std::time::Instant::now();
                Some(own_state(&store, &me).await)
            } else {
                None
            };
            let (peers, observed): (Vec<(std::net::SocketAddr, u64)>, Observed) = {
                let mut c = chitchat.lock().await;
                let value = mine.to_string();
                if c.self_node_state().get("next") != Some(value.as_str()) {
                    c.self_node_state().set("next", value);
                }
                for (k, v) in state.into_iter().flatten() {
                    if c.self_node_state().get(&k) != Some(v.as_str()) {
                        c.self_node_state().set(k, v);
                    }
                }
                let live: Vec<ChitchatId> = c.live_nodes().cloned().collect();
                let peers = live
                    .iter()
                    .filter_map(|id| {
                        let next = c.node_state(id)?.get("next")?.parse().ok()?;
                        Some((id.gossip_advertise_addr, next))
                    })
                    .collect();
                let observed = live
                    .iter()
                    .filter_map(|id| {
                        let kv = c
                            .node_state(id)?
                            .key_values()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect();
                        Some((id.node_id.to_string(), kv))
                    })
                    .collect();
                (peers, observed)
            };
            quorum.set_peers(peers);
            tx.send_if_modified(|o| {
                let changed = *o != observed;
                *o = observed;
                changed
            });
        }
    });
    (rx, task)
}
