//! The quorum: openraft with its log ([`log`]) and state machine ([`machine`], the node's
//! [`Store`](crate::store::Store)) in the node's SQLite file, its RPCs over the cluster's QUIC
//! endpoint ([`network`]), and [`Quorum`], which takes writes from any node (forwarding them to
//! the leader) and keeps the voter count by promoting healthy nodes ([`voters`]).

pub mod log;
pub mod machine;
pub mod network;
pub mod pull;
pub mod quorum;
pub mod voters;

use std::io::Cursor;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{Applied, Rejection, Write};

pub use quorum::{Quorum, RaftSettings};

/// What applying one write answers: the ops' results, or why the write was refused.
pub type Reply = Result<Vec<Applied>, Rejection>;

/// A log entry's payload: the writes that reached the leader together (group commit), each
/// applied, or refused, on its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Batch(pub Vec<Write>);

/// A member as Raft knows it: its node name and the address of its QUIC endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub addr: String,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

openraft::declare_raft_types!(
    /// Flotilla's Raft types: a log entry is a [`Batch`] of store writes, answered write by
    /// write.
    pub TypeConfig:
        D = Batch,
        R = Vec<Reply>,
        NodeId = u64,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A node's Raft id: the first 8 bytes of the SHA-256 of its name (names are unique in a
/// cluster, and the id must not change when the node restarts), kept below 2^63 so it is a
/// SQLite integer.
pub fn node_id(name: &str) -> u64 {
    let d = Sha256::digest(name.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) >> 1
}

/// The frame tag of a Raft message on the cluster endpoint (gossip is 0x01; JSON requests
/// start with `{`).
pub const RAFT_TAG: u8 = 0x02;

/// A message of the quorum between members.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A client write from a node that is not the leader; `hops` bounds forwarding.
    Write {
        write: Write,
        hops: u8,
    },
    /// A node asks to be a member (a learner first; the leader promotes it when a voter is
    /// needed).
    Enroll {
        id: u64,
        member: Member,
        hops: u8,
    },
    /// The leader confirms it still leads and answers the log index a linearizable read on
    /// another member must wait for (a member that does not lead asks the leader).
    ReadIndex,
    /// A node outside the membership asks for the committed entries from index `from` on,
    /// waiting up to `wait_ms` for some ([`pull`]).
    Pull {
        from: u64,
        wait_ms: u64,
    },
    /// The part of this node's snapshot `id` from byte `offset` on, for a puller too far
    /// behind for entries ([`pull::Pulled::Snapshot`]).
    PullSnapshot {
        id: String,
        offset: u64,
    },
}

/// What an enrollment made of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A learner (and a voter when one is needed): the leader replicates to it.
    Member,
    /// The quorum has its voters and standby learners: the node pulls the log from peers.
    Puller,
}

pub type AppendAnswer = Result<AppendEntriesResponse<u64>, RaftError<u64>>;
pub type VoteAnswer = Result<VoteResponse<u64>, RaftError<u64>>;
pub type SnapshotAnswer =
    Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>;
pub type WriteAnswer = Result<Vec<Applied>, Rejection>;
pub type EnrollAnswer = Result<Role, String>;
pub type ReadIndexAnswer = Result<u64, Rejection>;

pub fn frame(rpc: &RaftRpc) -> Vec<u8> {
    let mut b = vec![RAFT_TAG];
    serde_json::to_writer(&mut b, rpc).expect("raft messages serialise");
    b
}

#[cfg(test)]
mod tests;
