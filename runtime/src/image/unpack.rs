//! Unpacking one layer into its own directory, for overlayfs to stack.
//!
//! OCI whiteouts become overlayfs markers, so the layer directories can be stacked as they are:
//! `.wh.NAME` becomes a 0/0 character device `NAME` (the file is deleted in the merged view) and
//! `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory (lower contents hidden).
//! The uncompressed stream is hashed while it is read and must match the layer's diff_id.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::RuntimeError;
use crate::error::IoContext;

/// Layer compression, from the descriptor's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

impl Compression {
    pub fn from_media_type(mt: &str) -> Result<Compression, RuntimeError> {
        match mt {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
            other => Err(RuntimeError::UnsupportedMediaType {
                what: "layer".into(),
                media_type: other.into(),
            }),
        }
    }
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks the layer blob at `blob` into `dest` (which must not exist; it is created) and checks
/// that the uncompressed tar hashes to `diff_id`. On any error `dest` is removed.
pub fn unpack_layer(
    blob: &Path,
    compression: Compression,
    diff_id: &str,
    dest: &Path,
) -> Result<(), RuntimeError> {
    let result = unpack_inner(blob, compression, diff_id, dest);
    if result.is_err() {
        let _ = fs::remove_dir_all(dest);
    }
    result
}

fn unpack_inner(
    blob: &Path,
    compression: Compression,
    diff_id: &str,
    dest: &Path,
) -> Result<(), RuntimeError> {
    fs::create_dir_all(dest).at("creating", dest)?;
    let file = fs::File::open(blob).at("opening layer", blob)?;
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(io::BufReader::new(file)),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(io::BufReader::new(file))),
    };
    let mut hashing = Hashing {
        inner: reader,
        hash: Sha256::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_preserve_mtime(true);
        archive.set_unpack_xattrs(true);
        archive.set_overwrite(true);
        let bad = |reason: String| RuntimeError::BadArchive {
            path: blob.to_owned(),
            reason,
        };
        for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
            let rel = relative(&path)
                .ok_or_else(|| bad(format!("entry {} leaves the layer", path.display())))?;
            let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let parent = dest.join(rel.parent().unwrap_or(Path::new("")));
            if name == ".wh..wh..opq" {
                fs::create_dir_all(&parent).at("creating", &parent)?;
                set_xattr(&parent, "trusted.overlay.opaque", b"y")?;
            } else if let Some(hidden) = name.strip_prefix(".wh.") {
                fs::create_dir_all(&parent).at("creating", &parent)?;
                whiteout(&parent.join(hidden))?;
            } else {
                entry
                    .unpack_in(dest)
                    .map_err(|e| RuntimeError::io("unpacking into", dest.join(&rel), e))?;
            }
        }
    }
    // Read what the tar reader left (end-of-archive padding) so the hash covers the whole blob.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| RuntimeError::BadArchive {
        path: blob.to_owned(),
        reason: e.to_string(),
    })?;
    let actual = format!("sha256:{}", hex::encode(hashing.hash.finalize()));
    if actual != diff_id {
        return Err(RuntimeError::DigestMismatch {
            what: format!("layer {}", blob.display()),
            expected: diff_id.into(),
            actual,
        });
    }
    Ok(())
}

/// The path without `./` and refusing `..` or absolute paths.
fn relative(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths from tar entries have no NUL")
}

fn whiteout(p: &Path) -> Result<(), RuntimeError> {
    let _ = fs::remove_file(p);
    nix::sys::stat::mknod(
        p,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .map_err(|e| RuntimeError::io("making whiteout", p, io::Error::from(e)))
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) -> Result<(), RuntimeError> {
    let path = cpath(p);
    let name_c = CString::new(name).expect("static xattr name");
    // SAFETY: both strings are NUL-terminated and live for the call; value is a valid slice.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name_c.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(RuntimeError::io(
            "setting xattr on",
            p,
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::relative;
    use std::path::Path;

    #[test]
    fn entries_stay_inside_the_layer() {
        assert_eq!(
            relative(Path::new("./etc/passwd")).unwrap(),
            Path::new("etc/passwd")
        );
        assert!(relative(Path::new("../etc/passwd")).is_none());
        assert!(relative(Path::new("/etc/passwd")).is_none());
        assert!(relative(Path::new("a/../../b")).is_none());
    }
}
