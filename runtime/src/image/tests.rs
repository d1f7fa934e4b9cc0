//! Image store tests on real files, real tar archives and real overlay mounts (as root).
//! Each test works in its own temporary directory and unmounts what it mounted, also when it
//! fails.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::*;
use crate::rootfs::{mount_overlay, unmount_overlay};

/// What goes into a synthetic layer.
enum E<'a> {
    File(&'a str, &'a str),
    Dir(&'a str),
    Whiteout(&'a str),
    Opaque(&'a str),
}

fn layer_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut file = |path: &str, data: &[u8], mode: u32, kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    for e in entries {
        match e {
            E::File(p, c) => file(p, c.as_bytes(), 0o644, tar::EntryType::Regular),
            E::Dir(p) => file(p, b"", 0o755, tar::EntryType::Directory),
            E::Whiteout(p) => {
                let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
                let wh = if dir.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{dir}/.wh.{name}")
                };
                file(&wh, b"", 0o644, tar::EntryType::Regular)
            }
            E::Opaque(dir) => file(
                &format!("{dir}/.wh..wh..opq"),
                b"",
                0o644,
                tar::EntryType::Regular,
            ),
        }
    }
    b.into_inner().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn sha(d: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(d)))
}

/// Writes an OCI layout tarball holding one image made of `layers`.
fn oci_archive(dir: &Path, name: &str, layers: &[Vec<u8>]) -> PathBuf {
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut descs = Vec::new();
    let mut diffs = Vec::new();
    for l in layers {
        let z = gz(l);
        diffs.push(sha(l));
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(&z), "size": z.len()}));
        blobs.push((sha(&z), z));
    }
    let config = serde_json::to_vec(&serde_json::json!({"architecture": host_arch(), "os": "linux", "config": {"Env": ["A=1"], "Cmd": ["sh"], "WorkingDir": "/w"}, "rootfs": {"type": "layers", "diff_ids": diffs}})).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()}, "layers": descs})).unwrap();
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha(&manifest), "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": name}}]})).unwrap();
    blobs.push((sha(&config), config));
    blobs.push((sha(&manifest), manifest));
    let path = dir.join(format!(
        "{}.tar",
        sha(name.as_bytes()).trim_start_matches("sha256:")
    ));
    let mut b = tar::Builder::new(fs::File::create(&path).unwrap());
    let mut add = |p: &str, d: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, p, d).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &index);
    for (d, data) in &blobs {
        add(
            &format!("blobs/sha256/{}", d.trim_start_matches("sha256:")),
            data,
        );
    }
    b.finish().unwrap();
    path
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted(PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = unmount_overlay(&self.0, true);
    }
}

fn store() -> (tempfile::TempDir, ImageStore) {
    let d = tempfile::Builder::new()
        .prefix("flotilla-img-")
        .tempdir()
        .unwrap();
    let s = ImageStore::open(&d.path().join("images")).unwrap();
    (d, s)
}

#[test]
fn import_resolve_and_stack_layers_with_whiteouts() {
    let (d, s) = store();
    let base = layer_tar(&[
        E::Dir("a"),
        E::File("a/x", "lower x"),
        E::File("a/keep", "kept"),
        E::Dir("b"),
        E::File("b/y", "lower y"),
    ]);
    let top = layer_tar(&[
        E::Whiteout("a/x"),
        E::Opaque("b"),
        E::File("b/z", "top z"),
        E::File("hello", "hi"),
    ]);
    let archive = oci_archive(d.path(), "example.org/app:1", &[base, top]);
    let got = s.import(&archive).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].reference, "example.org/app:1");
    assert_eq!(got[0].layers, 2);
    let img = s.resolve("example.org/app:1").unwrap();
    assert_eq!(img.env, vec!["A=1"]);
    assert_eq!(img.cmd, vec!["sh"]);
    assert_eq!(img.working_dir.as_deref(), Some("/w"));
    // The top layer holds overlayfs markers.
    let wh = fs::metadata(img.layers[1].join("a/x")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout is a 0/0 char device"
    );

    let c = d.path().join("c1");
    let guard = Mounted(c.clone());
    let root = mount_overlay(&img.layers, &c, false).unwrap();
    assert!(!root.join("a/x").exists(), "whiteout hides the lower file");
    assert_eq!(fs::read_to_string(root.join("a/keep")).unwrap(), "kept");
    assert!(
        !root.join("b/y").exists(),
        "opaque dir hides the lower dir's contents"
    );
    assert_eq!(fs::read_to_string(root.join("b/z")).unwrap(), "top z");
    fs::write(root.join("new"), "mine").unwrap();
    assert_eq!(
        fs::read_to_string(c.join("upper/new")).unwrap(),
        "mine",
        "writes land in the container's upper dir"
    );
    assert!(
        !img.layers[1].join("new").exists(),
        "layers are never written"
    );
    drop(guard);
    assert!(!c.exists());
}

#[test]
fn read_only_rootfs_refuses_writes() {
    let (d, s) = store();
    let archive = oci_archive(
        d.path(),
        "example.org/ro:1",
        &[layer_tar(&[E::File("f", "x")])],
    );
    s.import(&archive).unwrap();
    let img = s.resolve("example.org/ro:1").unwrap();
    let c = d.path().join("c");
    let _g = Mounted(c.clone());
    let root = mount_overlay(&img.layers, &c, true).unwrap();
    let e = fs::write(root.join("g"), "y").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "x");
}

#[test]
fn layers_are_shared_and_collected_when_unused() {
    let (d, s) = store();
    let shared = layer_tar(&[E::File("base", "b")]);
    let a = oci_archive(
        d.path(),
        "example.org/a:1",
        &[shared.clone(), layer_tar(&[E::File("a", "a")])],
    );
    let b = oci_archive(
        d.path(),
        "example.org/b:1",
        &[shared, layer_tar(&[E::File("b", "b")])],
    );
    s.import(&a).unwrap();
    s.import(&b).unwrap();
    let layers = |s: &ImageStore| fs::read_dir(s.root.join("layers")).unwrap().count();
    assert_eq!(layers(&s), 3, "the shared layer is unpacked once");
    let ia = s.resolve("example.org/a:1").unwrap();
    let ib = s.resolve("example.org/b:1").unwrap();
    assert_eq!(ia.layers[0], ib.layers[0]);
    s.remove("example.org/a:1", &Default::default()).unwrap();
    assert_eq!(
        layers(&s),
        2,
        "a's own layer is collected, the shared one stays"
    );
    assert!(s.resolve("example.org/a:1").is_err());
    assert!(ib.layers.iter().all(|l| l.exists()));
    // A layer a container still uses is kept.
    let in_use: BTreeSet<PathBuf> = ib.layers.iter().cloned().collect();
    s.remove("example.org/b:1", &in_use).unwrap();
    assert_eq!(layers(&s), 2);
    assert!(s.list().unwrap().is_empty());
    let e = s
        .remove("example.org/b:1", &Default::default())
        .unwrap_err();
    assert!(matches!(e, RuntimeError::ImageNotFound { .. }), "{e}");
}

#[test]
fn corrupt_blobs_and_bad_archives_are_refused() {
    let (d, s) = store();
    let archive = oci_archive(
        d.path(),
        "example.org/bad:1",
        &[layer_tar(&[E::File("f", "x")])],
    );
    // Flip a byte inside the gzip layer blob (the largest entry after the headers).
    let mut bytes = fs::read(&archive).unwrap();
    let pos = bytes
        .windows(3)
        .position(|w| w == [0x1f, 0x8b, 0x08])
        .unwrap()
        + 20;
    bytes[pos] ^= 0xff;
    fs::write(&archive, &bytes).unwrap();
    let e = s.import(&archive).unwrap_err();
    assert!(matches!(e, RuntimeError::DigestMismatch { .. }), "{e}");
    assert!(
        s.list().unwrap().is_empty(),
        "nothing is named after a failed import"
    );

    let junk = d.path().join("junk.tar");
    fs::write(&junk, b"not a tarball at all").unwrap();
    let e = s.import(&junk).unwrap_err();
    assert!(matches!(e, RuntimeError::BadArchive { .. }), "{e}");
    assert!(
        fs::read_dir(s.root.join("tmp")).unwrap().next().is_none(),
        "no staging left behind"
    );
}

#[test]
fn docker_save_tarballs_import() {
    let (d, s) = store();
    let layer = layer_tar(&[E::Dir("etc"), E::File("etc/motd", "docker")]);
    let config = serde_json::to_vec(&serde_json::json!({"architecture": host_arch(), "os": "linux", "config": {"Cmd": ["cat", "/etc/motd"]}, "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]}})).unwrap();
    let cfg_name = format!("{}.json", sha(&config).trim_start_matches("sha256:"));
    let manifest = serde_json::to_vec(&serde_json::json!([{"Config": cfg_name, "RepoTags": ["motd:2"], "Layers": ["abc/layer.tar"]}])).unwrap();
    let path = d.path().join("save.tar");
    let mut b = tar::Builder::new(fs::File::create(&path).unwrap());
    for (p, data) in [
        ("manifest.json", manifest.as_slice()),
        (cfg_name.as_str(), config.as_slice()),
        ("abc/layer.tar", layer.as_slice()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, p, data).unwrap();
    }
    b.finish().unwrap();
    let got = s.import(&path).unwrap();
    assert_eq!(got[0].reference, "docker.io/library/motd:2");
    let img = s.resolve("motd:2").unwrap();
    assert_eq!(img.cmd, vec!["cat", "/etc/motd"]);
    assert_eq!(
        fs::read_to_string(img.layers[0].join("etc/motd")).unwrap(),
        "docker"
    );
}

#[test]
fn the_busybox_test_image_runs_a_shell_in_its_rootfs() {
    let (d, s) = store();
    let archive = crate::testing::test_image(d.path());
    let got = s.import(&archive).unwrap();
    assert_eq!(got[0].reference, "flotilla.local/busybox:1");
    assert_eq!(got[0].layers, 3);
    let img = s.resolve("flotilla.local/busybox:1").unwrap();
    let c = d.path().join("c");
    let _g = Mounted(c.clone());
    let root = mount_overlay(&img.layers, &c, false).unwrap();
    let mode = fs::metadata(root.join("bin/busybox"))
        .unwrap()
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "busybox is executable");
    let out = std::process::Command::new("chroot")
        .arg(&root)
        .args(["/bin/sh", "-c", "echo hello from $(cat /etc/os-release)"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello from NAME=\"Flotilla test image\""
    );
    // Importing the same archive again changes nothing.
    let again = s.import(&archive).unwrap();
    assert_eq!(again, got);
}
