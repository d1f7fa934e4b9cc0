//! Flotilla's node agent and CLI as a library: the binary in `main.rs` only parses arguments
//! and dispatches, so integration tests and benchmarks can use the same code.
//!
//! # Layout (the planes of the system, top to bottom)
//! - [`agent`]: one node's parts started together ([`agent::Agent::start`]) and stopped
//!   together, draining every task ([`agent::Agent::shutdown`]).
//! - [`cli`]: the `flotilla` commands a user types; talks to an agent's API.
//! - [`api`]: the HTTPS API every agent serves (Kubernetes-shaped paths and objects).
//! - [`manifest`]: the object model: kinds, schemas, typed manifests, validation, defaults,
//!   selectors, lifecycle questions (ready, finished, terminating, owner), events, kubectl's
//!   columns, strategic merge patch and server-side apply's field ownership.
//! - [`store`]: the SQLite store, an ordered log of object revisions.
//! - [`controller`]: reconcile loops (Deployment, ReplicaSet, Job, DaemonSet, garbage
//!   collection, namespaces) as pure planning functions plus a thin async runner.
//! - [`cluster`]: node-to-node QUIC with mutual TLS, joining by token.
//! - [`node`]: this node: identity (data dir, certificates, tokens), the pod manager (over
//!   the `PodRuntime` and `PodNet` traits, unit-tested on an in-memory runtime), the service
//!   table and its proxy loop, cluster DNS and its Node object.

pub mod agent;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod controller;
pub mod manifest;
pub mod node;
pub mod scheduler;
pub mod store;

#[cfg(test)]
mod layering_tests;
