//! Join tokens and the cluster CA as replicated objects, so that any member can admit a node.
//!
//! Each token is a Secret `bootstrap-token-ID` in `kube-system` of type
//! `bootstrap.kubernetes.io/token` (as kubeadm keeps them): `token-id`, `token-secret`, an
//! optional `expiration` (RFC 3339) and `description`. The CA certificate and key are the
//! Secret `flotilla-ca` in `kube-system`. Secrets are encrypted at rest on every node, and the
//! API that can read them needs the admin token. `flotilla token create | list | revoke` makes,
//! shows and deletes token Secrets; the token printed at `--init` is one of them.

use anyhow::{Context, Result, anyhow};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::join::{Admission, JoinRequest, JoinResponse};
use crate::store::{Key, Store};

pub const TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const CA_SECRET: &str = "flotilla-ca";
pub const NAMESPACE: &str = "kube-system";

/// The Secret that holds one join token.
pub fn token_secret(secret: &str, expiration: Option<&str>, description: &str, now: &str) -> Value {
    let id = token_id(secret);
    let mut data = serde_json::Map::new();
    let mut put = |k: &str, v: &str| {
        data.insert(k.into(), Value::from(B64.encode(v)));
    };
    put("token-id", &id);
    put("token-secret", secret);
    put("usage-bootstrap-authentication", "true");
    put("created", now);
    if let Some(e) = expiration {
        put("expiration", e);
    }
    if !description.is_empty() {
        put("description", description);
    }
    json!({"apiVersion": "v1", "kind": "Secret", "type": TOKEN_TYPE,
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": NAMESPACE},
        "data": data})
}

/// A token's public id: the first 6 characters of its secret.
pub fn token_id(secret: &str) -> String {
    secret.chars().take(6).collect()
}

/// One field of a Secret's `data`, decoded.
pub fn field(secret: &Value, key: &str) -> Option<String> {
    let raw = secret["data"][key].as_str()?;
    String::from_utf8(B64.decode(raw).ok()?).ok()
}

/// A token as `token list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub expiration: Option<String>,
    pub description: String,
    pub expired: bool,
}

/// The tokens among `secrets`, with whether each has expired at `now` (RFC 3339).
pub fn tokens(secrets: &[Value], now: &str) -> Vec<(TokenInfo, String)> {
    let now = chrono::DateTime::parse_from_rfc3339(now).ok();
    secrets
        .iter()
        .filter(|s| s["type"] == TOKEN_TYPE)
        .filter_map(|s| {
            let secret = field(s, "token-secret")?;
            let expiration = field(s, "expiration");
            let expired = match (&expiration, now) {
                (Some(e), Some(now)) => chrono::DateTime::parse_from_rfc3339(e)
                    .map(|e| e <= now)
                    .unwrap_or(true),
                _ => false,
            };
            Some((
                TokenInfo {
                    id: field(s, "token-id").unwrap_or_else(|| token_id(&secret)),
                    expiration,
                    description: field(s, "description").unwrap_or_default(),
                    expired,
                },
                secret,
            ))
        })
        .collect()
}

/// The Secret holding the cluster CA.
pub fn ca_secret(ca_pem: &str, key_pem: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": CA_SECRET, "namespace": NAMESPACE},
        "data": {"ca.crt": B64.encode(ca_pem), "ca.key": B64.encode(key_pem)}})
}

/// Admits joiners with the CA and tokens of the store (any member holds them once the
/// founder's bootstrap has replicated).
pub struct Admitter {
    pub store: Store,
    pub api_token: String,
    pub cluster_id: String,
}

impl Admitter {
    /// What admitting needs, as the store holds it now.
    pub async fn admission(&self) -> Result<Admission> {
        let ca = self
            .store
            .get(&Key::new("Secret", NAMESPACE, CA_SECRET))
            .await?
            .ok_or_else(|| anyhow!("this member has no copy of the cluster CA yet; retry"))?;
        let (secrets, _) = self.store.list("Secret", Some(NAMESPACE)).await?;
        let now = crate::store::now_rfc3339();
        Ok(Admission {
            ca_cert_pem: field(&ca, "ca.crt").context("flotilla-ca has no ca.crt")?,
            ca_key_pem: field(&ca, "ca.key").context("flotilla-ca has no ca.key")?,
            secrets: tokens(&secrets, &now)
                .into_iter()
                .filter(|(t, _)| !t.expired)
                .map(|(_, s)| s)
                .collect(),
            api_token: self.api_token.clone(),
            cluster_id: self.cluster_id.clone(),
        })
    }

    pub async fn admit(&self, req: &JoinRequest) -> Result<JoinResponse> {
        self.admission().await?.admit(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_through_its_secret_and_expires() {
        let now = "2026-01-01T00:00:00Z";
        let s = [
            token_secret("abcdef0123", Some("2026-01-02T00:00:00Z"), "ci", now),
            token_secret("ffffff9999", Some("2025-12-31T00:00:00Z"), "", now),
            token_secret("1234567890", None, "forever", now),
            json!({"type": "Opaque", "data": {"token-secret": B64.encode("nope")}}),
        ];
        assert_eq!(s[0]["metadata"]["name"], "bootstrap-token-abcdef");
        let t = tokens(&s, now);
        let view: Vec<(&str, bool, &str)> = t
            .iter()
            .map(|(i, sec)| (i.id.as_str(), i.expired, sec.as_str()))
            .collect();
        assert_eq!(
            view,
            [
                ("abcdef", false, "abcdef0123"),
                ("ffffff", true, "ffffff9999"),
                ("123456", false, "1234567890")
            ]
        );
        assert_eq!(t[0].0.description, "ci");
    }
}
