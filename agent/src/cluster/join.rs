//! Joining a cluster by token, over the cluster's QUIC port.
//!
//! A join token is `K10<sha256 of the CA certificate (DER), hex>::<secret>`. Each side checks
//! the other before anything is given away:
//! - the joiner accepts the member only if the member's TLS chain carries a CA whose hash is
//!   the token's and the member's certificate is signed by it (so a man in the middle without
//!   the CA key gets nowhere);
//! - the member signs a certificate for the joiner only if the secret matches (compared in
//!   constant time). The joiner's key never leaves it: it sends a certificate signing request.
//!
//! The member answers with the joiner's certificate, the CA certificate and the cluster's API
//! token, from which the joiner writes its identity (see `cluster::identity`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use rcgen::{CertificateParams, CertificateSigningRequestParams, DnType, Issuer, KeyPair, SanType};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::transport::{self, SERVER_NAME, Transport};

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_hash: [u8; 32],
    pub secret: String,
}

impl std::str::FromStr for JoinToken {
    type Err = String;
    fn from_str(s: &str) -> Result<JoinToken, String> {
        let rest = s
            .trim()
            .strip_prefix("K10")
            .ok_or("a join token starts with K10")?;
        let (hash, secret) = rest
            .split_once("::")
            .ok_or("a join token is K10<CA hash>::<secret>")?;
        let bytes = hex::decode(hash).map_err(|_| "the CA hash is not hex")?;
        let ca_hash: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the CA hash is not 64 hex digits (SHA-256)")?;
        if secret.is_empty() {
            return Err("the token has no secret".into());
        }
        Ok(JoinToken {
            ca_hash,
            secret: secret.to_string(),
        })
    }
}

/// The hash a join token carries for a CA certificate.
pub fn ca_hash(ca_der: &[u8]) -> [u8; 32] {
    Sha256::digest(ca_der).into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub secret: String,
    pub node: String,
    /// Addresses the joiner is reached at (added to its certificate).
    pub addresses: Vec<IpAddr>,
    /// The joiner's host name, when it differs from the node name (added to its certificate,
    /// so clients may reach the API by it). Absent from older joiners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// PKCS#10 request for the joiner's key, PEM.
    pub csr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    pub cert: String,
    pub ca: String,
    pub api_token: String,
    /// The cluster's id (gossip keeps clusters apart by it).
    #[serde(default)]
    pub cluster_id: String,
}

/// What a member holding the CA key needs to admit nodes.
pub struct Admission {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    /// Secrets of the valid join tokens.
    pub secrets: Vec<String>,
    pub api_token: String,
    pub cluster_id: String,
}

impl Admission {
    /// A data dir's admission material, when it holds the CA key (`pki/ca.key`) and a join
    /// token (`join-token`); `None` for a node that cannot sign certificates.
    pub fn load(dir: &std::path::Path, api_token: &str) -> Result<Option<Admission>> {
        let key = dir.join("pki/ca.key");
        if !key.exists() {
            return Ok(None);
        }
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        let token: JoinToken = read(&dir.join("join-token"))?
            .parse()
            .map_err(|e| anyhow!("{}: {e}", dir.join("join-token").display()))?;
        let node: crate::cluster::identity::NodeFile =
            serde_json::from_str(&read(&dir.join("node.json"))?).context("parsing node.json")?;
        Ok(Some(Admission {
            cluster_id: node.cluster_id,
            ca_cert_pem: read(&dir.join("pki/ca.crt"))?,
            ca_key_pem: read(&key)?,
            secrets: vec![token.secret],
            api_token: api_token.to_string(),
        }))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parameters of a node certificate: its name, its host name, `flotilla`, localhost and its
/// addresses, valid for [`super::certs::CERT_DAYS`] from now (renewed by the node itself
/// before it ends). The API serves with it, so a kubeconfig may name the node by any of them.
pub fn node_cert_params(
    node: &str,
    hostname: Option<&str>,
    addresses: &[IpAddr],
) -> Result<CertificateParams> {
    let mut names = vec![node.to_string()];
    names.extend(hostname.filter(|h| *h != node).map(String::from));
    names.extend([SERVER_NAME.to_string(), "localhost".to_string()]);
    let mut p = CertificateParams::new(names)?;
    p.distinguished_name.push(DnType::CommonName, node);
    let mut ips: Vec<IpAddr> = vec!["127.0.0.1".parse()?, "::1".parse()?];
    ips.extend(addresses.iter().copied());
    ips.dedup();
    for ip in ips {
        p.subject_alt_names.push(SanType::IpAddress(ip));
    }
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(super::certs::CERT_DAYS);
    Ok(p)
}

impl Admission {
    /// Checks the secret and signs the joiner's certificate. The request's own names and
    /// extensions are ignored: the member decides what the certificate says.
    pub fn admit(&self, req: &JoinRequest) -> Result<JoinResponse> {
        if !self
            .secrets
            .iter()
            .any(|s| constant_time_eq(s.as_bytes(), req.secret.as_bytes()))
        {
            bail!("the join token's secret is not valid here");
        }
        if let Some(e) = crate::manifest::validate::dns_subdomain_error(&req.node) {
            bail!("node name {:?} {e}", req.node);
        }
        if let Some(h) = &req.hostname
            && let Some(e) = crate::manifest::validate::dns_subdomain_error(h)
        {
            bail!("host name {h:?} {e}");
        }
        let csr = CertificateSigningRequestParams::from_pem(&req.csr)
            .context("reading the certificate request")?;
        let signed = CertificateSigningRequestParams {
            params: node_cert_params(&req.node, req.hostname.as_deref(), &req.addresses)?,
            public_key: csr.public_key,
        };
        let key = KeyPair::from_pem(&self.ca_key_pem).context("reading the CA key")?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, key).context("reading the CA")?;
        let cert = signed.signed_by(&issuer).context("signing")?;
        Ok(JoinResponse {
            cert: cert.pem(),
            ca: self.ca_cert_pem.clone(),
            api_token: self.api_token.clone(),
            cluster_id: self.cluster_id.clone(),
        })
    }
}

/// Accepts a member whose chain carries the CA the token names and whose certificate that CA
/// signed.
#[derive(Debug)]
struct PinnedCa {
    hash: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| ca_hash(c) == self.hash)
            .ok_or_else(|| {
                rustls::Error::General("the member's CA is not the one the join token names".into())
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        v.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What a node gets by joining: its key and certificate, the CA, the API token.
pub struct Joined {
    pub key_pem: String,
    pub response: JoinResponse,
}

/// Joins through the member at `member` with `token`, as `node` reachable at `addresses`.
pub async fn join(
    member: SocketAddr,
    token: &JoinToken,
    node: &str,
    addresses: &[IpAddr],
) -> Result<Joined> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            hash: token.ca_hash,
            provider,
        }))
        .with_no_client_auth();
    let t = Transport::client(transport::client_config(tls)?)?;
    let key = KeyPair::generate().context("generating the node key")?;
    let csr = CertificateParams::new(vec![node.to_string()])?
        .serialize_request(&key)
        .context("making the certificate request")?
        .pem()?;
    let req = super::Request::Join(JoinRequest {
        secret: token.secret.clone(),
        node: node.to_string(),
        addresses: addresses.to_vec(),
        hostname: super::identity::host_name(),
        csr,
    });
    let body = t
        .request(member, &serde_json::to_vec(&req)?)
        .await
        .with_context(|| format!("joining through {member}"))?;
    t.close();
    match serde_json::from_slice(&body).context("reading the member's answer")? {
        super::Response::Joined(response) => {
            let ca = super::pem::first_cert(&response.ca).context("the member sent no CA")?;
            if ca_hash(&ca) != token.ca_hash {
                bail!("the member sent a CA that is not the one the join token names");
            }
            Ok(Joined {
                key_pem: key.serialize_pem(),
                response,
            })
        }
        super::Response::Error { message } => bail!("{member} refused the join: {message}"),
        other => bail!("{member} answered {other:?}"),
    }
}
