//! Flotilla's networking: plain Rust inputs (a pod id and its namespace; later, tables of
//! services and endpoints), never a manifest.
//!
//! - [`podnet`]: the node's pod network: a bridge with the pod CIDR's gateway, a veth per pod
//!   sandbox, addresses from a persisted IPAM table, over netlink.
//!
//! - [`services`]: the nftables service proxy: a table of services and ready endpoints becomes
//!   the `inet flotilla` table (ClusterIP, NodePort, ClientIP affinity, masquerade), each sync
//!   one atomic transaction.
//!
//! - [`overlay`]: pods across nodes: a VXLAN device (or host-gw routes) driven by a table of
//!   peers (node address, pod CIDR).
//!
//! Cluster DNS is answered by the agent (it knows the Services); see `agent/src/node/dns.rs`.

mod nftlib;
pub mod overlay;
pub mod podnet;
pub mod services;

/// What went wrong, and with which link, address or file.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Netlink { what: String, message: String },
    #[error("nft refused the ruleset: {message}")]
    Nft { message: String },
    #[error("no free address left in the pod network {cidr}")]
    PoolExhausted { cidr: String },
}
