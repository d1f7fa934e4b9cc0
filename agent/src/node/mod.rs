//! This node: its data dir (the identity in it is kept by [`crate::cluster::identity`]), its
//! Node object, pods, Services and DNS.
//!
//! # Data dir
//! ```text
//! DIR/node.json        name and cluster id; its presence means "this dir holds a node"
//! DIR/flotilla.db      the store (SQLite, WAL)
//! DIR/secrets.key      32-byte key that encrypts Secrets at rest (0600), never in the db
//! DIR/pki/ca.{crt,key} cluster CA (made by --init)
//! DIR/pki/node.{crt,key} this node's certificate, signed by the CA; serves the API
//! DIR/api-token        bearer token the API accepts (0600)
//! DIR/admin.yaml       kubeconfig of this node's API (server, CA, admin token) for kubectl and the CLI
//! DIR/join-token       K10<sha256 of the CA certificate, DER>::<secret>, for `agent --join`
//! DIR/cluster-addr     the UDP address the cluster endpoint (QUIC) bound, written at start
//! DIR/images/          the image store (blobs, unpacked layers)
//! DIR/runtime/         containers (bundles, shims' files) and pod sandboxes
//! DIR/pods/<uid>/      each pod's volumes, /etc files and logs (see [`pods::volumes`])
//! ```

pub mod dns;
pub mod memory;
pub mod metrics;
pub mod overlay;
pub mod pods;
pub mod services;
pub mod status;
