//! openraft's network over the cluster's QUIC endpoint: one request per RPC (a stream on a
//! cached mutual-TLS connection). Every answered RPC records when the target was last heard
//! from ([`Contacts`]), which is how the leader knows which voters are reachable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;

use super::{Member, RaftRpc, TypeConfig, frame};
use crate::cluster::transport::Transport;

/// When this node last heard from each peer: an answer to one of its RPCs, or the leader's
/// append (heartbeat) arriving.
#[derive(Clone, Default)]
pub struct Contacts(Arc<Mutex<HashMap<u64, Instant>>>);

impl Contacts {
    pub fn touch(&self, id: u64) {
        self.0.lock().expect("contacts").insert(id, Instant::now());
    }

    pub fn last(&self, id: u64) -> Option<Instant> {
        self.0.lock().expect("contacts").get(&id).copied()
    }
}

#[derive(Clone)]
pub struct Network {
    pub transport: Transport,
    pub contacts: Contacts,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: u64, node: &Member) -> Client {
        Client {
            target,
            addr: node.addr.parse().ok(),
            name: node.name.clone(),
            net: self.clone(),
        }
    }
}

pub struct Client {
    target: u64,
    addr: Option<SocketAddr>,
    name: String,
    net: Network,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failed(String);

impl Client {
    async fn call<T, E>(
        &self,
        rpc: RaftRpc,
        option: &RPCOption,
    ) -> Result<T, RPCError<u64, Member, RaftError<u64, E>>>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let addr = self.addr.ok_or_else(|| {
            RPCError::Unreachable(Unreachable::new(&Failed(format!(
                "member {} has no valid address",
                self.name
            ))))
        })?;
        let body = frame(&rpc);
        let answer =
            tokio::time::timeout(option.hard_ttl(), self.net.transport.request(addr, &body))
                .await
                .map_err(|_| {
                    RPCError::Network(NetworkError::new(&Failed(format!(
                        "{} ({addr}) did not answer within {:?}",
                        self.name,
                        option.hard_ttl()
                    ))))
                })?
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&Failed(format!("{e:#}")))))?;
        let r: Result<T, RaftError<u64, E>> = serde_json::from_slice(&answer)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.net.contacts.touch(self.target);
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        self.call(RaftRpc::Append(rpc), &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, Member, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(RaftRpc::Snapshot(rpc), &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        self.call(RaftRpc::Vote(rpc), &option).await
    }
}
