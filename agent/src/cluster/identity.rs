//! Making and loading a node's identity: cluster CA, node certificate, API token, join token.

use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rand::RngCore;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde::{Deserialize, Serialize};

/// What `DIR/node.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFile {
    pub name: String,
    pub cluster_id: String,
}

/// What the CLI connects with: read from a kubeconfig (the `admin.yaml` an agent writes is
/// one) or from the older file of these three fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminConfig {
    /// `https://HOST:PORT` of an agent's API.
    pub server: String,
    /// PEM of the cluster CA that signed the API's certificate.
    pub certificate_authority: String,
    /// Bearer token.
    pub token: String,
}

impl AdminConfig {
    pub fn load(path: &Path) -> Result<AdminConfig> {
        super::kubeconfig::load(path)
    }
}

/// A node's identity, loaded from its data dir.
#[derive(Debug, Clone)]
pub struct Identity {
    pub dir: PathBuf,
    pub node: NodeFile,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub api_token: String,
}

pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", path.display()))
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A node name from the host name: lower-case, DNS-1123.
pub fn default_node_name() -> String {
    host_name().unwrap_or_else(|| "node".into())
}

/// This machine's host name as a DNS name (lower-case, other characters made `-`), if it has
/// one.
pub fn host_name() -> Option<String> {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name
        .trim_matches(|c: char| c == '-' || c == '.')
        .to_string();
    (!name.is_empty() && crate::manifest::validate::dns_subdomain_error(&name).is_none())
        .then_some(name)
}

impl Identity {
    /// Whether `dir` already holds a node.
    pub fn exists(dir: &Path) -> bool {
        dir.join("node.json").exists()
    }

    /// Loads the identity of the node in `dir`.
    pub fn load(dir: &Path) -> Result<Identity> {
        let read = |p: &str| {
            fs::read_to_string(dir.join(p))
                .with_context(|| format!("reading {}", dir.join(p).display()))
        };
        let node: NodeFile =
            serde_json::from_str(&read("node.json")?).context("parsing node.json")?;
        Ok(Identity {
            dir: dir.to_owned(),
            node,
            ca_pem: read("pki/ca.crt")?,
            cert_pem: read("pki/node.crt")?,
            key_pem: read("pki/node.key")?,
            api_token: read("api-token")?.trim().to_string(),
        })
    }

    /// Makes a new one-node cluster in `dir`: CA, node certificate, API and join tokens, and the
    /// key that encrypts Secrets. Refuses a dir that already holds a node.
    pub fn init(dir: &Path, node_name: &str, extra_addrs: &[IpAddr]) -> Result<Identity> {
        if Identity::exists(dir) {
            bail!(
                "{} already holds a node; start it without --init to resume",
                dir.display()
            );
        }
        if let Some(e) = crate::manifest::validate::dns_subdomain_error(node_name) {
            bail!("node name {node_name:?} {e}");
        }
        fs::create_dir_all(dir.join("pki"))
            .with_context(|| format!("creating {}", dir.display()))?;

        let ca_key = KeyPair::generate().context("generating the CA key")?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "flotilla-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        ca_params.not_after = rcgen::date_time_ymd(2124, 1, 1);
        let ca_cert = ca_params.self_signed(&ca_key).context("signing the CA")?;
        let ca_pem = ca_cert.pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let node_key = KeyPair::generate().context("generating the node key")?;
        let p =
            crate::cluster::join::node_cert_params(node_name, host_name().as_deref(), extra_addrs)?;
        let node_cert = p
            .signed_by(&node_key, &issuer)
            .context("signing the node certificate")?;

        let api_token = random_hex(24);
        let ca_hash = hex::encode(crate::cluster::join::ca_hash(ca_cert.der()));
        let join_token = format!("K10{ca_hash}::{}", random_hex(16));
        let node = NodeFile {
            name: node_name.to_string(),
            cluster_id: random_hex(8),
        };

        fs::write(dir.join("pki/ca.crt"), &ca_pem)?;
        write_private(
            &dir.join("pki/ca.key"),
            issuer.key().serialize_pem().as_bytes(),
        )?;
        fs::write(dir.join("pki/node.crt"), node_cert.pem())?;
        write_private(
            &dir.join("pki/node.key"),
            node_key.serialize_pem().as_bytes(),
        )?;
        write_private(&dir.join("api-token"), api_token.as_bytes())?;
        write_private(
            &dir.join("join-token"),
            format!("{join_token}\n").as_bytes(),
        )?;
        let key_path = dir.join("secrets.key");
        if !key_path.exists() {
            crate::store::SecretCipher::create_key(&key_path).context("creating secrets.key")?;
        }
        // node.json last: its presence marks a complete identity.
        write_private(
            &dir.join("node.json"),
            serde_json::to_string_pretty(&node)?.as_bytes(),
        )?;
        Identity::load(dir)
    }

    /// Writes what a join brought (`joined`: key, CA-signed certificate, CA, API token) as the
    /// identity of node `node_name` in `dir`, and a key of its own for Secrets.
    pub fn from_join(
        dir: &Path,
        node_name: &str,
        joined: &crate::cluster::join::Joined,
    ) -> Result<Identity> {
        if Identity::exists(dir) {
            bail!("{} already holds a node", dir.display());
        }
        fs::create_dir_all(dir.join("pki"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let r = &joined.response;
        fs::write(dir.join("pki/ca.crt"), &r.ca)?;
        fs::write(dir.join("pki/node.crt"), &r.cert)?;
        write_private(&dir.join("pki/node.key"), joined.key_pem.as_bytes())?;
        write_private(&dir.join("api-token"), r.api_token.as_bytes())?;
        let key_path = dir.join("secrets.key");
        if !key_path.exists() {
            crate::store::SecretCipher::create_key(&key_path).context("creating secrets.key")?;
        }
        let node = NodeFile {
            name: node_name.to_string(),
            cluster_id: r.cluster_id.clone(),
        };
        write_private(
            &dir.join("node.json"),
            serde_json::to_string_pretty(&node)?.as_bytes(),
        )?;
        Identity::load(dir)
    }

    /// Writes `DIR/admin.yaml`, the admin's kubeconfig for the API at `server` (kubectl and
    /// the flotilla CLI both read it).
    pub fn write_admin_config(&self, server: &str) -> Result<PathBuf> {
        let cfg = super::kubeconfig::Kubeconfig::admin(server, &self.ca_pem, &self.api_token);
        let path = self.dir.join("admin.yaml");
        write_private(&path, cfg.to_yaml()?.as_bytes())?;
        Ok(path)
    }
}

/// The lock one agent holds on its data dir for its whole life (`DIR/agent.lock`, an flock the
/// kernel drops when the process ends, however it ends): a second agent on the same dir, and
/// `flotilla reset` while an agent runs, are refused. `None` when another process holds it.
pub fn lock_data_dir(dir: &Path) -> std::io::Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("agent.lock"))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e.into()),
    }
}
