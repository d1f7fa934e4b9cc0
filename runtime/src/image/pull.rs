//! Registry pulls over the OCI distribution protocol, with oci-client: anonymous, basic or
//! bearer (token) auth, a manifest list resolved to this node's architecture, and every blob
//! downloaded into a staging dir laid out as an OCI image layout. The blobs then go through the
//! same path as an imported archive ([`ImageStore::import`]): each digest verified, layers
//! unpacked once with whiteouts, the reference recorded. Registries on loopback addresses
//! (`127.0.0.1:5000`, `localhost:5000`) are spoken to over plain HTTP, every other over HTTPS.

use std::fs;
use std::path::Path;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_spec::image::{ImageIndex, ImageManifest};

use super::{ImageStore, ImageSummary, host_arch, normalize, sha256_hex, tempdir_in};
use crate::RuntimeError;

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ****)", self.username)
    }
}

/// Whether `registry` (`host[:port]`) is on this machine.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => registry.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn pull_error(reference: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::PullFailed {
        reference: reference.to_string(),
        message: e.to_string(),
    }
}

impl ImageStore {
    /// Pulls `reference` from its registry and records it; returns what was stored.
    ///
    /// Needs a multi-threaded tokio runtime (unpacking runs in `block_in_place`).
    pub async fn pull(
        &self,
        reference: &str,
        credentials: Option<&Credentials>,
    ) -> Result<ImageSummary, RuntimeError> {
        let name = normalize(reference)?;
        let r: oci_client::Reference = name.parse().map_err(|e| pull_error(&name, e))?;
        let protocol = if is_loopback(r.resolve_registry()) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let client = oci_client::Client::new(ClientConfig {
            protocol,
            // Manifest lists are resolved here, with the same rule as imports.
            platform_resolver: None,
            ..Default::default()
        });
        let auth = match credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let staging = tempdir_in(&self.root.join("tmp"), "pull")?;
        let result = async {
            let digest = self.download(&client, &r, &auth, &staging, &name).await?;
            tokio::task::block_in_place(|| self.commit_pulled(&staging, &digest, &name))
        }
        .await;
        let _ = fs::remove_dir_all(&staging);
        result
    }

    /// Downloads the manifest (and the platform's manifest of a list), the config and the
    /// layers this store lacks into `staging/blobs/sha256`; returns the top manifest's digest.
    async fn download(
        &self,
        client: &oci_client::Client,
        r: &oci_client::Reference,
        auth: &RegistryAuth,
        staging: &Path,
        name: &str,
    ) -> Result<String, RuntimeError> {
        let blobs = staging.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|e| RuntimeError::io("creating", &blobs, e))?;
        let accepted = [
            OCI_IMAGE_MEDIA_TYPE,
            IMAGE_MANIFEST_MEDIA_TYPE,
            OCI_IMAGE_INDEX_MEDIA_TYPE,
            IMAGE_MANIFEST_LIST_MEDIA_TYPE,
        ];
        let save = |bytes: &[u8], expected: Option<&str>| -> Result<String, RuntimeError> {
            let digest = format!("sha256:{}", sha256_hex(bytes));
            if let Some(e) = expected
                && !e.is_empty()
                && e != digest
            {
                return Err(RuntimeError::DigestMismatch {
                    what: format!("manifest of {name}"),
                    expected: e.to_string(),
                    actual: digest,
                });
            }
            let p = blobs.join(&digest["sha256:".len()..]);
            fs::write(&p, bytes).map_err(|e| RuntimeError::io("writing", &p, e))?;
            Ok(digest)
        };
        let (bytes, given) = client
            .pull_manifest_raw(r, auth, &accepted)
            .await
            .map_err(|e| pull_error(name, e))?;
        // A reference by digest must match it; a tag's manifest is named by its own hash.
        let expected = r.digest().map(String::from).or(Some(given));
        let top = save(&bytes, expected.as_deref())?;
        let mut manifest_bytes = bytes.to_vec();
        if serde_json::from_slice::<serde_json::Value>(&bytes)
            .is_ok_and(|v| v.get("manifests").is_some())
        {
            let index: ImageIndex =
                serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Json {
                    what: format!("manifest list of {name}"),
                    source,
                })?;
            let arch = host_arch();
            let pick = index
                .manifests()
                .iter()
                .find(|m| {
                    m.platform().as_ref().is_none_or(|p| {
                        p.architecture().to_string() == arch && p.os().to_string() == "linux"
                    })
                })
                .ok_or_else(|| RuntimeError::NoPlatform {
                    reference: name.into(),
                    os: "linux".into(),
                    arch: arch.into(),
                })?;
            let d = pick.digest().to_string();
            let (inner, _) = client
                .pull_manifest_raw(&r.clone_with_digest(d.clone()), auth, &accepted)
                .await
                .map_err(|e| pull_error(name, e))?;
            save(&inner, Some(&d))?;
            manifest_bytes = inner.to_vec();
        }
        let manifest: ImageManifest =
            serde_json::from_slice(&manifest_bytes).map_err(|source| RuntimeError::Json {
                what: format!("manifest of {name}"),
                source,
            })?;
        let wanted = std::iter::once(manifest.config().digest().to_string())
            .chain(manifest.layers().iter().map(|l| l.digest().to_string()));
        for d in wanted {
            if self.blob_path(&d)?.exists() {
                continue; // Shared with an image already here.
            }
            let p = blobs.join(d.trim_start_matches("sha256:"));
            let f = tokio::fs::File::create(&p)
                .await
                .map_err(|e| RuntimeError::io("creating", &p, e))?;
            let mut w = tokio::io::BufWriter::new(f);
            client
                .pull_blob(r, d.as_str(), &mut w)
                .await
                .map_err(|e| pull_error(name, format!("blob {d}: {e}")))?;
            tokio::io::AsyncWriteExt::flush(&mut w)
                .await
                .map_err(|e| RuntimeError::io("writing", &p, e))?;
        }
        Ok(top)
    }

    /// Verifies and stores what [`ImageStore::download`] staged, and names it.
    fn commit_pulled(
        &self,
        staging: &Path,
        digest: &str,
        name: &str,
    ) -> Result<ImageSummary, RuntimeError> {
        let label = Path::new(name);
        let manifest = self.stage_manifest(label, staging, digest, name)?;
        let _g = self.lock.lock().expect("image store lock");
        let mut refs = self.refs()?;
        refs.insert(name.to_string(), manifest);
        self.write_refs(&refs)?;
        self.summary(name, &refs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(is_loopback("127.3.4.5"));
        assert!(!is_loopback("registry-1.docker.io"));
        assert!(!is_loopback("10.0.0.5:5000"));
    }

    #[test]
    fn credentials_do_not_print_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{c:?}").contains("secret"));
    }
}
