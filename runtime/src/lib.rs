//! Flotilla's container runtime: turns a plain container spec into a real container made from a
//! real OCI image. It knows nothing of manifests, the store or the cluster.
//!
//! # Layout
//! - [`image`]: the content-addressed image store: import of OCI layouts and `docker save`
//!   tarballs, digests verified, each layer unpacked once (whiteouts as overlayfs markers) and
//!   shared by every container, references, removal and garbage collection.
//! - [`rootfs`]: overlayfs mounts over the shared layers, with a per-container upper dir, or
//!   read-only.
//! - [`spec`]: the plain container spec and the OCI runtime spec made from it.
//! - [`container`]: create, start, signal, wait and delete through youki's libcontainer.
//! - [`cgroups`]: limits, usage (CPU time, memory, pids) and OOM kills read back, cleanup, on
//!   cgroup v1 and v2.
//! - [`shim`]: the per-container process that starts the container and then becomes the pump,
//!   and how the agent finds it (files in the bundle dir).
//! - [`pump`]: what a shim becomes once its container runs: a small static program (built from
//!   this one file by `build.rs`) that holds stdio, writes logs and records the exit.
//! - [`logs`]: CRI-format log lines, rotated by size, read back with tail or followed.
//! - [`sandbox`]: a pod's shared network, IPC and UTS namespaces, held by bind mounts.
//! - [`exec`]: a command run inside a running container's namespaces and cgroups.
//! - [`image::pull`]: registry pulls (HTTPS, plain HTTP on loopback, basic and token auth,
//!   manifest lists resolved to the node's architecture).

pub mod cgroups;
pub mod container;
pub mod error;
pub mod exec;
pub mod image;
pub mod logs;
pub mod pump;
pub mod rootfs;
pub mod sandbox;
pub mod shim;
pub mod spec;
pub mod testing;

pub use error::RuntimeError;
