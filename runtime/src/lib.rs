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
//! - [`cgroups`]: limits and OOM kills read back, cleanup, on cgroup v1 and v2.
//!
//! Still to come (the runtime issue): registry pulls, pod sandboxes, the shim, logs and exec.

pub mod cgroups;
pub mod container;
pub mod error;
pub mod image;
pub mod rootfs;
pub mod spec;

pub use error::RuntimeError;
