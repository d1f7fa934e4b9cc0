//! Flotilla's container runtime: turns a plain container spec into a real container made from a
//! real OCI image. It knows nothing of manifests, the store or the cluster.
//!
//! # Layout
//! - [`image`]: the content-addressed image store: import of OCI layouts and `docker save`
//!   tarballs, digests verified, each layer unpacked once (whiteouts as overlayfs markers) and
//!   shared by every container, references, removal and garbage collection.
//! - [`rootfs`]: overlayfs mounts over the shared layers, with a per-container upper dir, or
//!   read-only.
//!
//! Still to come (the runtime issue): registry pulls, libcontainer lifecycle, pod sandboxes,
//! cgroups, the shim, logs and exec.

pub mod error;
pub mod image;
pub mod rootfs;

pub use error::RuntimeError;
