//! A container's root filesystem: overlayfs over the image's shared layers.
//!
//! ```text
//! DIR/upper   the container's own changes (kept across restarts of the container)
//! DIR/work    overlayfs' work dir
//! DIR/rootfs  the merged view the container sees
//! ```
//! The layers are never written: they are the lower dirs, shared by every container of every
//! image that has them. A read-only rootfs is the same overlay mounted `MS_RDONLY`.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::RuntimeError;
use crate::error::IoContext;

/// Mounts the overlay for a container in `dir` and returns the merged path.
pub fn mount_overlay(
    layers: &[PathBuf],
    dir: &Path,
    read_only: bool,
) -> Result<PathBuf, RuntimeError> {
    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&upper, &work, &merged] {
        fs::create_dir_all(d).at("creating", d)?;
    }
    let mut lower: Vec<PathBuf> = layers.iter().rev().cloned().collect();
    if lower.is_empty() {
        // An image with no layers still needs a lower dir.
        let empty = dir.join("empty");
        fs::create_dir_all(&empty).at("creating", &empty)?;
        lower.push(empty);
    }
    let lowerdir = lower
        .iter()
        .map(|p| escape(p))
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        escape(&upper),
        escape(&work)
    );
    let mut flags = MsFlags::MS_NODEV;
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .map_err(|source| RuntimeError::Mount {
        target: merged.clone(),
        source,
    })?;
    Ok(merged)
}

/// Overlay options separate with ',' and ':'; escape them in paths.
fn escape(p: &Path) -> String {
    p.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(':', "\\:")
}

/// Whether `path` is a mount point (its device differs from its parent's).
pub fn is_mounted(path: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let target = path.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(4) == Some(&target))
}

/// Unmounts a container's rootfs (lazily if busy) and, with `remove`, deletes its directory.
pub fn unmount_overlay(dir: &Path, remove: bool) -> Result<(), RuntimeError> {
    let merged = dir.join("rootfs");
    if is_mounted(&merged) {
        umount2(&merged, MntFlags::empty())
            .or_else(|_| umount2(&merged, MntFlags::MNT_DETACH))
            .map_err(|source| RuntimeError::Unmount {
                target: merged.clone(),
                source,
            })?;
    }
    if remove && dir.exists() {
        fs::remove_dir_all(dir).at("removing", dir)?;
    }
    Ok(())
}
