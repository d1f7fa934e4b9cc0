//! The image store: content-addressed blobs, layers unpacked once and shared, references.
//!
//! ```text
//! ROOT/blobs/sha256/<hex>     manifests, configs and layer blobs, each checked against its digest
//! ROOT/layers/<hex>/          one unpacked layer per diff_id, shared by every image and container
//! ROOT/refs.json              normalised reference -> manifest digest
//! ROOT/tmp/                   imports and unpacks in progress (renamed into place when whole)
//! ```
//! A layer directory or blob appears only by `rename` once complete, so a crash mid-import
//! leaves nothing half-written in place; `tmp/` is cleared when the store opens.

pub mod pull;
pub mod reference;
pub mod unpack;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::RuntimeError;
use crate::error::IoContext;
pub use pull::Credentials;
pub use reference::{Reference, normalize};
use unpack::{Compression, unpack_layer};

/// What a container needs from its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub reference: String,
    /// `sha256:...` of the manifest.
    pub digest: String,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// Unpacked layer directories, bottom first.
    pub layers: Vec<PathBuf>,
}

/// One line of `image ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSummary {
    pub reference: String,
    pub digest: String,
    /// Compressed size of config and layers.
    pub size: u64,
    pub layers: usize,
}

/// The store rooted at a directory (on the agent: `DATA_DIR/images`).
pub struct ImageStore {
    root: PathBuf,
    /// Serialises changes to refs.json and garbage collection within this process.
    lock: Mutex<()>,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn digest_hex(digest: &str) -> Result<&str, RuntimeError> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| RuntimeError::UnsupportedMediaType {
            what: "digest".into(),
            media_type: digest.to_string(),
        })
}

/// The node's platform in OCI's words.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

impl ImageStore {
    pub fn open(root: &Path) -> Result<ImageStore, RuntimeError> {
        for d in ["blobs/sha256", "layers", "tmp"] {
            fs::create_dir_all(root.join(d)).at("creating", &root.join(d))?;
        }
        // Anything in tmp/ is an import or unpack that did not finish.
        for e in fs::read_dir(root.join("tmp"))
            .at("reading", &root.join("tmp"))?
            .flatten()
        {
            let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
        }
        Ok(ImageStore {
            root: root.to_owned(),
            lock: Mutex::new(()),
        })
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, RuntimeError> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    fn layer_path(&self, diff_id: &str) -> Result<PathBuf, RuntimeError> {
        Ok(self.root.join("layers").join(digest_hex(diff_id)?))
    }

    fn read_blob(&self, digest: &str) -> Result<Vec<u8>, RuntimeError> {
        let p = self.blob_path(digest)?;
        fs::read(&p).at("reading blob", &p)
    }

    fn refs(&self) -> Result<BTreeMap<String, String>, RuntimeError> {
        let p = self.root.join("refs.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| RuntimeError::Json {
                what: p.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(RuntimeError::io("reading", p, e)),
        }
    }

    fn write_refs(&self, refs: &BTreeMap<String, String>) -> Result<(), RuntimeError> {
        let p = self.root.join("refs.json");
        let tmp = self.root.join("tmp/refs.json");
        let mut f = fs::File::create(&tmp).at("writing", &tmp)?;
        f.write_all(&serde_json::to_vec_pretty(refs).expect("a map of strings serialises"))
            .at("writing", &tmp)?;
        f.sync_all().at("syncing", &tmp)?;
        fs::rename(&tmp, &p).at("renaming into place", &p)
    }

    /// Imports an OCI image layout or `docker save` tarball; returns the images it held.
    pub fn import(&self, archive: &Path) -> Result<Vec<ImageSummary>, RuntimeError> {
        let staging = tempdir_in(&self.root.join("tmp"), "import")?;
        let result = self.import_staged(archive, &staging);
        let _ = fs::remove_dir_all(&staging);
        result
    }

    fn import_staged(
        &self,
        archive: &Path,
        staging: &Path,
    ) -> Result<Vec<ImageSummary>, RuntimeError> {
        extract(archive, staging)?;
        let mut found: Vec<(String, String)> = Vec::new(); // (reference, manifest digest)
        if staging.join("manifest.json").exists() && !staging.join("index.json").exists() {
            found = self.stage_docker_save(archive, staging)?;
        } else if staging.join("index.json").exists() {
            // Docker 25+ writes an OCI layout and manifest.json; the names are in both.
            let names = docker_names(staging);
            let index = read_json::<ImageIndex>(&staging.join("index.json"))?;
            for m in index.manifests() {
                let digest = m.digest().to_string();
                let ann = m.annotations().clone().unwrap_or_default();
                let name = ann
                    .get("io.containerd.image.name")
                    .cloned()
                    .or_else(|| names.get(&digest).cloned())
                    .or_else(|| ann.get("org.opencontainers.image.ref.name").cloned())
                    .ok_or_else(|| RuntimeError::BadArchive {
                        path: archive.to_owned(),
                        reason: format!("manifest {digest} has no image name"),
                    })?;
                let manifest_digest = self.stage_manifest(archive, staging, &digest, &name)?;
                found.push((normalize(&name)?, manifest_digest));
            }
        } else {
            return Err(RuntimeError::BadArchive {
                path: archive.to_owned(),
                reason: "neither index.json (OCI layout) nor manifest.json (docker save)".into(),
            });
        }
        if found.is_empty() {
            return Err(RuntimeError::BadArchive {
                path: archive.to_owned(),
                reason: "no images in the archive".into(),
            });
        }
        // Blobs are in place and layers unpacked; now the names.
        let _g = self.lock.lock().expect("image store lock");
        let mut refs = self.refs()?;
        for (r, d) in &found {
            refs.insert(r.clone(), d.clone());
        }
        self.write_refs(&refs)?;
        found.iter().map(|(r, _)| self.summary(r, &refs)).collect()
    }

    /// Moves a verified blob from the staging area into the store (or keeps the one there).
    fn adopt_blob(&self, staged: &Path, digest: &str) -> Result<PathBuf, RuntimeError> {
        let dest = self.blob_path(digest)?;
        if dest.exists() {
            return Ok(dest);
        }
        let actual = format!("sha256:{}", hash_file(staged)?);
        if actual != digest {
            return Err(RuntimeError::DigestMismatch {
                what: format!("blob {}", staged.display()),
                expected: digest.into(),
                actual,
            });
        }
        fs::rename(staged, &dest).at("storing blob", &dest)?;
        Ok(dest)
    }

    /// Stores an OCI manifest (following an index to this platform) with its config and layers,
    /// and unpacks the layers. Returns the digest of the image manifest.
    fn stage_manifest(
        &self,
        archive: &Path,
        staging: &Path,
        digest: &str,
        name: &str,
    ) -> Result<String, RuntimeError> {
        let staged = |d: &str| -> Result<PathBuf, RuntimeError> {
            let p = staging.join("blobs/sha256").join(digest_hex(d)?);
            if p.exists() || self.blob_path(d)?.exists() {
                Ok(p)
            } else {
                Err(RuntimeError::BadArchive {
                    path: archive.to_owned(),
                    reason: format!("blob {d} is missing"),
                })
            }
        };
        let bytes = fs::read(staged(digest)?).or_else(|_| {
            self.read_blob(digest)
                .map_err(|e| io::Error::other(e.to_string()))
        });
        let bytes = bytes.map_err(|e| RuntimeError::io("reading manifest", staging, e))?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Json {
                what: format!("manifest {digest}"),
                source,
            })?;
        if v.get("manifests").is_some() {
            // An index: pick this platform.
            let index: ImageIndex =
                serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Json {
                    what: format!("index {digest}"),
                    source,
                })?;
            let arch = host_arch();
            let pick = index.manifests().iter().find(|m| {
                m.platform().as_ref().is_none_or(|p| {
                    p.architecture().to_string() == arch && p.os().to_string() == "linux"
                })
            });
            let Some(m) = pick else {
                return Err(RuntimeError::NoPlatform {
                    reference: name.into(),
                    os: "linux".into(),
                    arch: arch.into(),
                });
            };
            let inner = self.stage_manifest(archive, staging, m.digest().as_ref(), name)?;
            self.adopt_blob(&staged(digest)?, digest).ok();
            return Ok(inner);
        }
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Json {
                what: format!("manifest {digest}"),
                source,
            })?;
        let config_digest = manifest.config().digest().to_string();
        let config_path = self.adopt_blob(&staged(&config_digest)?, &config_digest)?;
        let config: ImageConfiguration = read_json(&config_path)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(RuntimeError::BadArchive {
                path: archive.to_owned(),
                reason: format!(
                    "{} layers but {} diff_ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            });
        }
        for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let d = layer.digest().to_string();
            let compression = Compression::from_media_type(layer.media_type().as_ref())?;
            let blob = self.adopt_blob(&staged(&d)?, &d)?;
            self.ensure_layer(&blob, compression, diff_id)?;
        }
        self.adopt_blob(&staged(digest)?, digest)?;
        Ok(digest.to_string())
    }

    /// Unpacks a layer unless it already is (layers are shared between images).
    fn ensure_layer(
        &self,
        blob: &Path,
        compression: Compression,
        diff_id: &str,
    ) -> Result<PathBuf, RuntimeError> {
        let dest = self.layer_path(diff_id)?;
        if dest.exists() {
            return Ok(dest);
        }
        let tmp = tempdir_in(&self.root.join("tmp"), "layer")?;
        let into = tmp.join("rootfs");
        unpack_layer(blob, compression, diff_id, &into)?;
        match fs::rename(&into, &dest) {
            Ok(()) => {}
            // Another import unpacked it meanwhile.
            Err(_) if dest.exists() => {}
            Err(e) => return Err(RuntimeError::io("storing layer", &dest, e)),
        }
        let _ = fs::remove_dir_all(&tmp);
        Ok(dest)
    }

    /// `docker save` (before Docker 25): manifest.json names the config and uncompressed layers.
    fn stage_docker_save(
        &self,
        archive: &Path,
        staging: &Path,
    ) -> Result<Vec<(String, String)>, RuntimeError> {
        let entries: Vec<DockerSaveEntry> = read_json(&staging.join("manifest.json"))?;
        let mut out = Vec::new();
        for e in entries {
            let config_bytes = read_file_in(staging, &e.config, archive)?;
            let config_digest = format!("sha256:{}", sha256_hex(&config_bytes));
            let config_path = self.blob_path(&config_digest)?;
            if !config_path.exists() {
                fs::write(&config_path, &config_bytes).at("storing config", &config_path)?;
            }
            let config: ImageConfiguration =
                serde_json::from_slice(&config_bytes).map_err(|source| RuntimeError::Json {
                    what: e.config.clone(),
                    source,
                })?;
            let diff_ids = config.rootfs().diff_ids();
            if diff_ids.len() != e.layers.len() {
                return Err(RuntimeError::BadArchive {
                    path: archive.to_owned(),
                    reason: format!("{} layers but {} diff_ids", e.layers.len(), diff_ids.len()),
                });
            }
            let mut layers = Vec::new();
            for (l, diff_id) in e.layers.iter().zip(diff_ids) {
                let staged = safe_join(staging, l).ok_or_else(|| RuntimeError::BadArchive {
                    path: archive.to_owned(),
                    reason: format!("layer path {l} leaves the archive"),
                })?;
                let size = fs::metadata(&staged).at("reading", &staged)?.len();
                // An uncompressed layer's digest is its diff_id.
                let blob = self.adopt_blob(&staged, diff_id)?;
                self.ensure_layer(&blob, Compression::None, diff_id)?;
                layers.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": diff_id, "size": size}));
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
                "layers": layers,
            });
            let mbytes = serde_json::to_vec(&manifest).expect("json serialises");
            let mdigest = format!("sha256:{}", sha256_hex(&mbytes));
            let mpath = self.blob_path(&mdigest)?;
            if !mpath.exists() {
                fs::write(&mpath, &mbytes).at("storing manifest", &mpath)?;
            }
            if e.repo_tags.is_empty() {
                return Err(RuntimeError::BadArchive {
                    path: archive.to_owned(),
                    reason: "an image has no RepoTags".into(),
                });
            }
            for t in e.repo_tags {
                out.push((normalize(&t)?, mdigest.clone()));
            }
        }
        Ok(out)
    }

    fn manifest(&self, digest: &str) -> Result<(ImageManifest, ImageConfiguration), RuntimeError> {
        let m: ImageManifest =
            serde_json::from_slice(&self.read_blob(digest)?).map_err(|source| {
                RuntimeError::Json {
                    what: format!("manifest {digest}"),
                    source,
                }
            })?;
        let cd = m.config().digest().to_string();
        let c: ImageConfiguration =
            serde_json::from_slice(&self.read_blob(&cd)?).map_err(|source| RuntimeError::Json {
                what: format!("config {cd}"),
                source,
            })?;
        Ok((m, c))
    }

    fn summary(
        &self,
        reference: &str,
        refs: &BTreeMap<String, String>,
    ) -> Result<ImageSummary, RuntimeError> {
        let digest = refs
            .get(reference)
            .ok_or_else(|| RuntimeError::ImageNotFound {
                reference: reference.into(),
            })?;
        let (m, _) = self.manifest(digest)?;
        let size = m.config().size() + m.layers().iter().map(|l| l.size()).sum::<u64>();
        Ok(ImageSummary {
            reference: reference.into(),
            digest: digest.clone(),
            size,
            layers: m.layers().len(),
        })
    }

    /// Every image, sorted by reference.
    pub fn list(&self) -> Result<Vec<ImageSummary>, RuntimeError> {
        let refs = self.refs()?;
        refs.keys().map(|r| self.summary(r, &refs)).collect()
    }

    /// What a container needs from the image `reference` (any form: `busybox`, full, by digest).
    pub fn resolve(&self, reference: &str) -> Result<Image, RuntimeError> {
        let name = normalize(reference)?;
        let refs = self.refs()?;
        let digest = refs
            .get(&name)
            .cloned()
            .or_else(|| {
                // By digest: any name whose manifest has it.
                let d = Reference::parse(reference).ok()?.digest?;
                refs.values().find(|v| **v == d).cloned()
            })
            .ok_or_else(|| RuntimeError::ImageNotFound {
                reference: name.clone(),
            })?;
        let (_, config) = self.manifest(&digest)?;
        let layers = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| self.layer_path(d))
            .collect::<Result<Vec<_>, _>>()?;
        for l in &layers {
            if !l.is_dir() {
                return Err(RuntimeError::ImageNotFound {
                    reference: format!("{name} (layer {} missing)", l.display()),
                });
            }
        }
        let c = config.config().clone().unwrap_or_default();
        Ok(Image {
            reference: name,
            digest,
            env: c.env().clone().unwrap_or_default(),
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
            user: c.user().clone().filter(|u| !u.is_empty()),
            layers,
        })
    }

    /// Removes a reference, then collects what no image uses any more, except the layers in
    /// `in_use` (those of running containers).
    pub fn remove(&self, reference: &str, in_use: &BTreeSet<PathBuf>) -> Result<(), RuntimeError> {
        let name = normalize(reference)?;
        let _g = self.lock.lock().expect("image store lock");
        let mut refs = self.refs()?;
        if refs.remove(&name).is_none() {
            return Err(RuntimeError::ImageNotFound { reference: name });
        }
        self.write_refs(&refs)?;
        self.collect(&refs, in_use)
    }

    /// Deletes blobs and layers no reference reaches and no container uses.
    fn collect(
        &self,
        refs: &BTreeMap<String, String>,
        in_use: &BTreeSet<PathBuf>,
    ) -> Result<(), RuntimeError> {
        let mut blobs = BTreeSet::new();
        let mut layers = in_use.clone();
        for d in refs.values() {
            let (m, c) = self.manifest(d)?;
            blobs.insert(self.blob_path(d)?);
            blobs.insert(self.blob_path(m.config().digest().as_ref())?);
            for l in m.layers() {
                blobs.insert(self.blob_path(l.digest().as_ref())?);
            }
            for id in c.rootfs().diff_ids() {
                layers.insert(self.layer_path(id)?);
            }
        }
        for dir in ["blobs/sha256", "layers"] {
            let p = self.root.join(dir);
            for e in fs::read_dir(&p).at("reading", &p)?.flatten() {
                let path = e.path();
                let keep = if dir == "layers" {
                    layers.contains(&path)
                } else {
                    blobs.contains(&path)
                };
                if !keep {
                    let r = if path.is_dir() {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                    r.at("removing", &path)?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Names from a Docker 25+ `manifest.json` beside an OCI layout: manifest digest -> first tag.
fn docker_names(staging: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = read_json::<Vec<serde_json::Value>>(&staging.join("manifest.json")) else {
        return BTreeMap::new();
    };
    let Ok(index) = read_json::<ImageIndex>(&staging.join("index.json")) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (m, e) in index.manifests().iter().zip(entries) {
        if let Some(tag) = e["RepoTags"].get(0).and_then(|t| t.as_str()) {
            out.insert(m.digest().to_string(), tag.to_string());
        }
    }
    out
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T, RuntimeError> {
    let b = fs::read(p).at("reading", p)?;
    serde_json::from_slice(&b).map_err(|source| RuntimeError::Json {
        what: p.display().to_string(),
        source,
    })
}

fn read_file_in(staging: &Path, rel: &str, archive: &Path) -> Result<Vec<u8>, RuntimeError> {
    let p = safe_join(staging, rel).ok_or_else(|| RuntimeError::BadArchive {
        path: archive.to_owned(),
        reason: format!("{rel} leaves the archive"),
    })?;
    fs::read(&p).at("reading", &p)
}

fn safe_join(root: &Path, rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    p.components()
        .all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
        .then(|| root.join(p))
}

fn hash_file(p: &Path) -> Result<String, RuntimeError> {
    let mut f = fs::File::open(p).at("opening", p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).at("reading", p)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn tempdir_in(parent: &Path, prefix: &str) -> Result<PathBuf, RuntimeError> {
    for i in 0u32.. {
        let p = parent.join(format!("{prefix}-{}-{i}", std::process::id()));
        match fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(RuntimeError::io("creating", p, e)),
        }
    }
    unreachable!("u32 range exhausted")
}

/// Extracts the regular files of an image archive (plain or gzip tar) into `dest`.
fn extract(archive: &Path, dest: &Path) -> Result<(), RuntimeError> {
    let bad = |reason: String| RuntimeError::BadArchive {
        path: archive.to_owned(),
        reason,
    };
    let mut f = fs::File::open(archive).at("opening", archive)?;
    let mut magic = [0u8; 2];
    let gz = f.read(&mut magic).at("reading", archive)? == 2 && magic == [0x1f, 0x8b];
    drop(f);
    let f = fs::File::open(archive).at("opening", archive)?;
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(io::BufReader::new(f)))
    } else {
        Box::new(io::BufReader::new(f))
    };
    let mut tar = tar::Archive::new(reader);
    let mut files = 0;
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue;
        }
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        if safe_join(dest, &path.to_string_lossy()).is_none() {
            return Err(bad(format!("entry {} leaves the archive", path.display())));
        }
        entry
            .unpack_in(dest)
            .map_err(|e| RuntimeError::io("extracting", dest.join(&path), e))?;
        files += 1;
    }
    if files == 0 {
        return Err(bad("not a tar archive, or an empty one".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
