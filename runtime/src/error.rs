//! The runtime's errors: each says what failed for which image, layer or container.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("image {reference} not found")]
    ImageNotFound { reference: String },
    #[error("{reference:?} is not a valid image reference: {reason}")]
    BadReference { reference: String, reason: String },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: not an image archive: {reason}")]
    BadArchive { path: PathBuf, reason: String },
    #[error("image {reference} has no manifest for {os}/{arch}")]
    NoPlatform {
        reference: String,
        os: String,
        arch: String,
    },
    #[error("unsupported media type {media_type} for {what}")]
    UnsupportedMediaType { what: String, media_type: String },
    #[error("image {reference} is used by {users} container(s)")]
    ImageInUse { reference: String, users: usize },
    #[error("no space left on device while writing {path}")]
    NoSpace { path: PathBuf },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mounting overlay rootfs at {target}")]
    Mount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("unmounting {target}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("container id {id:?} must be 1-128 letters, digits, '-', '_' or '.'")]
    BadContainerId { id: String },
    #[error("container {id} not found")]
    ContainerNotFound { id: String },
    #[error("making the sandbox {id}: {message}")]
    Sandbox { id: String, message: String },
    #[error("starting the shim of container {id}: {message}")]
    ShimFailed { id: String, message: String },
    #[error("pulling {reference}: {message}")]
    PullFailed { reference: String, message: String },
    #[error("exec in container {id}: {message}")]
    ExecFailed { id: String, message: String },
    #[error("container {id} already exists")]
    ContainerExists { id: String },
    #[error("{signal} is not a signal")]
    BadSignal { signal: i32 },
    #[error("container {id} has no process")]
    NoPid { id: String },
    #[error("container {id}")]
    Container {
        id: String,
        #[source]
        source: Box<libcontainer::error::LibcontainerError>,
    },
    #[error("reading {what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

impl RuntimeError {
    /// An I/O error on a path; ENOSPC becomes [`RuntimeError::NoSpace`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(libc::ENOSPC) {
            RuntimeError::NoSpace { path }
        } else {
            RuntimeError::Io { op, path, source }
        }
    }
}

/// Adds the operation and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, op: &'static str, path: &std::path::Path) -> Result<T, RuntimeError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, op: &'static str, path: &std::path::Path) -> Result<T, RuntimeError> {
        self.map_err(|e| RuntimeError::io(op, path, e))
    }
}
