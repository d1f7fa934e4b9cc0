//! The cluster plane: node-to-node QUIC with mutual TLS ([`transport`]) and joining by token
//! ([`join`]). Membership (chitchat) and the quorum (openraft) build on the same endpoint.

pub mod join;
pub mod transport;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use self::join::{Admission, JoinRequest, JoinResponse};
use self::transport::{Handler, Peer};

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
pub fn handler(node: String, admission: Option<Arc<Admission>>) -> Handler {
    Arc::new(move |peer: Peer, body: Vec<u8>| {
        let (node, admission) = (node.clone(), admission.clone());
        Box::pin(async move {
            let resp = match (serde_json::from_slice::<Request>(&body), &peer.node) {
                (Err(e), _) => error(format!("unreadable request: {e}")),
                (Ok(Request::Join(req)), _) => match &admission {
                    Some(a) => match a.admit(&req) {
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

#[cfg(test)]
mod tests;
