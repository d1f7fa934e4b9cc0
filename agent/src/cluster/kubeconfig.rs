//! kubeconfig files. The `admin.yaml` every agent writes into its data dir is one, so kubectl,
//! client libraries and the flotilla CLI all read the same file:
//! `KUBECONFIG=/var/lib/flotilla/admin.yaml kubectl get nodes`.
//!
//! Reading takes the parts of a kubeconfig the CLI can honour (the current context's server,
//! its CA as data or as a file, a bearer token as data or as a file) and refuses, by name,
//! anything that would change how it connects and that it cannot do (client certificates,
//! exec plugins, skipping verification...). Files in the older `server/certificateAuthority/
//! token` shape are still read.

use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::AdminConfig;

/// The names the kubeconfig an agent writes gives its cluster, user and context.
const CLUSTER: &str = "flotilla";
const USER: &str = "admin";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    #[serde(default)]
    pub users: Vec<NamedUser>,
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
    #[serde(rename = "current-context", default)]
    pub current_context: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: ClusterEntry,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterEntry {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_tls_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    #[serde(default)]
    pub user: UserEntry,
}

/// A user's credentials. Only the token forms are read; the others are listed so that a file
/// that uses them is refused by name rather than read as "no credentials".
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(rename = "tokenFile", default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    #[serde(
        rename = "client-certificate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_certificate: Option<String>,
    #[serde(
        rename = "client-certificate-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_certificate_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<serde_json::Value>,
    #[serde(
        rename = "auth-provider",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_provider: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: ContextEntry,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContextEntry {
    pub cluster: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Kubeconfig {
    /// The kubeconfig of the cluster's admin for the API at `server`.
    pub fn admin(server: &str, ca_pem: &str, token: &str) -> Kubeconfig {
        let b64 = base64::engine::general_purpose::STANDARD;
        Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![NamedCluster {
                name: CLUSTER.into(),
                cluster: ClusterEntry {
                    server: server.into(),
                    certificate_authority_data: Some(b64.encode(ca_pem)),
                    ..Default::default()
                },
            }],
            users: vec![NamedUser {
                name: USER.into(),
                user: UserEntry {
                    token: Some(token.into()),
                    ..Default::default()
                },
            }],
            contexts: vec![NamedContext {
                name: CLUSTER.into(),
                context: ContextEntry {
                    cluster: CLUSTER.into(),
                    user: USER.into(),
                    namespace: None,
                },
            }],
            current_context: CLUSTER.into(),
        }
    }

    pub fn to_yaml(&self) -> Result<String> {
        Ok(serde_norway::to_string(self)?)
    }

    /// What the CLI connects with: the current context's server, CA and token. Relative file
    /// paths are read from `dir`, the kubeconfig's own directory, as kubectl reads them.
    pub fn resolve(&self, dir: &Path) -> Result<AdminConfig> {
        let name = &self.current_context;
        if name.is_empty() {
            bail!("the kubeconfig has no current-context");
        }
        let ctx = self
            .contexts
            .iter()
            .find(|c| &c.name == name)
            .with_context(|| format!("current-context {name:?} is not among the contexts"))?;
        if let Some(ns) = ctx.context.namespace.as_deref().filter(|n| *n != "default") {
            bail!(
                "context {name:?} sets namespace {ns:?}: the flotilla CLI does not read a context's namespace; remove it and pass -n {ns}"
            );
        }
        let cluster = &self
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .with_context(|| {
                format!(
                    "cluster {:?} of context {name:?} is not among the clusters",
                    ctx.context.cluster
                )
            })?
            .cluster;
        let refuse = |field: &str| {
            anyhow::anyhow!(
                "cluster {:?} sets {field}, which the flotilla CLI does not support",
                ctx.context.cluster
            )
        };
        if cluster.insecure_skip_tls_verify == Some(true) {
            return Err(refuse(
                "insecure-skip-tls-verify (it always verifies the server)",
            ));
        }
        if cluster.tls_server_name.is_some() {
            return Err(refuse("tls-server-name"));
        }
        if cluster.proxy_url.is_some() {
            return Err(refuse("proxy-url"));
        }
        let ca = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) => String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .context("certificate-authority-data is not base64")?,
            )
            .context("certificate-authority-data is not PEM text")?,
            (None, Some(file)) => std::fs::read_to_string(dir.join(file))
                .with_context(|| format!("reading certificate-authority {file}"))?,
            (None, None) => bail!(
                "cluster {:?} names no certificate authority (certificate-authority-data or certificate-authority)",
                ctx.context.cluster
            ),
        };
        let user = &self
            .users
            .iter()
            .find(|u| u.name == ctx.context.user)
            .with_context(|| {
                format!(
                    "user {:?} of context {name:?} is not among the users",
                    ctx.context.user
                )
            })?
            .user;
        let unsupported = [
            ("client-certificate", user.client_certificate.is_some()),
            (
                "client-certificate-data",
                user.client_certificate_data.is_some(),
            ),
            ("exec", user.exec.is_some()),
            ("auth-provider", user.auth_provider.is_some()),
            ("username", user.username.is_some()),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
            bail!(
                "user {:?} authenticates with {field}, which the flotilla CLI does not support: use a bearer token (token or tokenFile)",
                ctx.context.user
            );
        }
        let token = match (&user.token, &user.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(file)) => std::fs::read_to_string(dir.join(file))
                .with_context(|| format!("reading tokenFile {file}"))?
                .trim()
                .to_string(),
            (None, None) => bail!("user {:?} has no token or tokenFile", ctx.context.user),
        };
        Ok(AdminConfig {
            server: cluster.server.clone(),
            certificate_authority: ca,
            token,
        })
    }
}

/// Reads a CLI config: a kubeconfig, or the older `server/certificateAuthority/token` file.
pub fn load(path: &Path) -> Result<AdminConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    let doc: serde_json::Value = serde_norway::from_str(&text)
        .with_context(|| format!("parsing config {}", path.display()))?;
    if doc.get("server").is_some() && doc.get("clusters").is_none() {
        return serde_json::from_value(doc)
            .with_context(|| format!("parsing config {}", path.display()));
    }
    let k: Kubeconfig = serde_json::from_value(doc)
        .with_context(|| format!("parsing kubeconfig {}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    k.resolve(dir)
        .with_context(|| format!("reading kubeconfig {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn the_admin_kubeconfig_reads_back_and_older_files_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.yaml");
        let k = Kubeconfig::admin("https://127.0.0.1:6443", CA, "secret");
        std::fs::write(&path, k.to_yaml().unwrap()).unwrap();
        let cfg = load(&path).unwrap();
        assert_eq!(
            (
                cfg.server.as_str(),
                cfg.certificate_authority.as_str(),
                cfg.token.as_str()
            ),
            ("https://127.0.0.1:6443", CA, "secret")
        );
        std::fs::write(
            &path,
            format!("server: https://h:1\ncertificateAuthority: {CA:?}\ntoken: t\n"),
        )
        .unwrap();
        assert_eq!(load(&path).unwrap().token, "t");
    }

    #[test]
    fn files_relative_to_the_kubeconfig_and_unsupported_settings_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), CA).unwrap();
        std::fs::write(dir.path().join("tok"), "abc\n").unwrap();
        let path = dir.path().join("config");
        let write = |user: &str, cluster_extra: &str| {
            std::fs::write(
                &path,
                format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://h:6443\n    certificate-authority: ca.crt\n{cluster_extra}users:\n- name: u\n  user:\n{user}contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
                ),
            )
            .unwrap();
        };
        write("    tokenFile: tok\n", "");
        let cfg = load(&path).unwrap();
        assert_eq!(
            (cfg.token.as_str(), cfg.certificate_authority.as_str()),
            ("abc", CA)
        );
        write(
            "    client-certificate-data: AAAA\n    client-key-data: AAAA\n",
            "",
        );
        let e = format!("{:#}", load(&path).unwrap_err());
        assert!(e.contains("client-certificate-data"), "{e}");
        write("    token: t\n", "    insecure-skip-tls-verify: true\n");
        let e = format!("{:#}", load(&path).unwrap_err());
        assert!(e.contains("insecure-skip-tls-verify"), "{e}");
    }
}
