//! `flotilla token create | list | revoke`: the join tokens of the cluster (Secrets of type
//! `bootstrap.kubernetes.io/token` in `kube-system`, replicated, so any member admits with
//! them).

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use rand::RngCore;
use reqwest::Method;

use super::client::Client;
use crate::cluster::identity::AdminConfig;
use crate::cluster::tokens;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub action: TokenAction,
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Make a new join token and print it.
    Create {
        /// How long it admits nodes, e.g. 30m, 24h, 7d (default: until revoked).
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the join tokens (their ids, not their secrets).
    #[command(alias = "ls")]
    List,
    /// Revoke a token by its id (the first 6 characters of its secret): nodes can no longer
    /// join with it. Nodes that joined with it stay members.
    #[command(alias = "delete")]
    Revoke { id: String },
}

/// `30m`, `24h`, `7d`, `90s` as a duration.
pub fn parse_ttl(s: &str) -> Result<chrono::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("--ttl {s:?}: expected a number and a unit (s, m, h, d)"))?;
    if n <= 0 {
        return Err(format!("--ttl {s:?}: must be above zero"));
    }
    let d = match unit {
        "s" => chrono::Duration::try_seconds(n),
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        _ => return Err(format!("--ttl {s:?}: the unit must be s, m, h or d")),
    };
    // A token must end within the dates a certificate can name (before the year 10000).
    d.filter(|d| {
        chrono::Utc::now()
            .checked_add_signed(*d)
            .is_some_and(|t| t.timestamp() < 253_402_300_799)
    })
    .ok_or_else(|| format!("--ttl {s:?}: too long"))
}

const SECRETS: &str = "/api/v1/namespaces/kube-system/secrets";

pub async fn run(cfg: &Path, a: TokenArgs) -> Result<i32> {
    let client = Client::from_config_file(cfg)?;
    match a.action {
        TokenAction::Create { ttl, description } => {
            let expiration = ttl
                .as_deref()
                .map(parse_ttl)
                .transpose()
                .map_err(anyhow::Error::msg)?
                .map(|d| {
                    (chrono::Utc::now() + d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                });
            let mut b = [0u8; 16];
            rand::rng().fill_bytes(&mut b);
            let secret = hex::encode(b);
            let obj = tokens::token_secret(
                &secret,
                expiration.as_deref(),
                &description,
                &crate::store::now_rfc3339(),
            );
            client
                .json(Method::POST, SECRETS, &[], Some(&obj))
                .await
                .context("storing the token")?;
            // The CA hash comes from the CA this CLI trusts: the joiner will check it.
            let admin = AdminConfig::load(cfg)?;
            let ca = crate::cluster::pem::first_cert(&admin.certificate_authority)
                .context("the config holds no CA certificate")?;
            let hash = hex::encode(crate::cluster::join::ca_hash(&ca));
            println!("K10{hash}::{secret}");
            Ok(0)
        }
        TokenAction::List => {
            let list = client.get(SECRETS, &[]).await?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            let now = crate::store::now_rfc3339();
            let rows = tokens::tokens(&items, &now);
            if rows.is_empty() {
                eprintln!("No join tokens.");
                return Ok(0);
            }
            println!("{:<8} {:<22} {:<9} DESCRIPTION", "ID", "EXPIRES", "STATUS");
            for (t, _) in rows {
                println!(
                    "{:<8} {:<22} {:<9} {}",
                    t.id,
                    t.expiration.as_deref().unwrap_or("never"),
                    if t.expired { "expired" } else { "valid" },
                    t.description
                );
            }
            Ok(0)
        }
        TokenAction::Revoke { id } => {
            if id.len() != 6 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("token id {id:?}: expected the 6 hex characters `token list` shows");
            }
            let path = format!("{SECRETS}/bootstrap-token-{id}");
            match client.json(Method::DELETE, &path, &[], None).await {
                Ok(_) => {
                    println!("token {id} revoked");
                    Ok(0)
                }
                Err(e) if super::client::is_not_found(&e) => bail!("no join token with id {id}"),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttls_take_a_number_and_a_unit() {
        assert_eq!(parse_ttl("90s").unwrap().num_seconds(), 90);
        assert_eq!(parse_ttl("24h").unwrap().num_hours(), 24);
        assert_eq!(parse_ttl("7d").unwrap().num_days(), 7);
        assert!(parse_ttl("0h").unwrap_err().contains("above zero"));
        assert!(parse_ttl("5y").unwrap_err().contains("unit"));
        assert!(parse_ttl("h").is_err());
        // Out of range: an error, not a panic.
        assert!(parse_ttl("200000000d").unwrap_err().contains("too long"));
        assert!(
            parse_ttl("9223372036854775807s")
                .unwrap_err()
                .contains("too long")
        );
    }
}
