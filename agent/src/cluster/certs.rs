//! Node certificates renew themselves: each is valid for [`CERT_DAYS`], and a node whose
//! certificate has less than `renew_within` left makes a new key and has it signed by the
//! cluster CA (every member holds it, from the store), then swaps its QUIC endpoint and HTTPS
//! API over to it without a restart. Nobody has to remember a date (k3s users on air-gapped
//! sites lose clusters to one-year certificates that nobody rotated).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rcgen::{CertificateParams, Issuer, KeyPair};

/// How long a node certificate is valid.
pub const CERT_DAYS: i64 = 365;

/// The validity window of a PEM certificate, as Unix seconds.
pub fn validity(cert_pem: &str) -> Result<(i64, i64)> {
    let der = super::pem::first_cert(cert_pem)?;
    let (_, c) = x509_parser::parse_x509_certificate(&der).context("parsing the certificate")?;
    Ok((
        c.validity().not_before.timestamp(),
        c.validity().not_after.timestamp(),
    ))
}

/// The IP addresses a PEM certificate names (its IP subject alternative names).
pub fn ip_addresses(cert_pem: &str) -> Result<Vec<std::net::IpAddr>> {
    let der = super::pem::first_cert(cert_pem)?;
    let (_, c) = x509_parser::parse_x509_certificate(&der).context("parsing the certificate")?;
    let mut out = Vec::new();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::IPAddress(b) = name {
                match b.len() {
                    4 => out.push(std::net::IpAddr::from(<[u8; 4]>::try_from(*b)?)),
                    16 => out.push(std::net::IpAddr::from(<[u8; 16]>::try_from(*b)?)),
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// Whether a certificate ending at `not_after` should be renewed at `now` (Unix seconds).
pub fn needs_renewal(not_after: i64, now: i64, renew_within: Duration) -> bool {
    not_after - now < renew_within.as_secs() as i64
}

/// A new key and a certificate for `node` signed by the CA: `(cert_pem, key_pem)`.
pub fn issue(
    node: &str,
    addresses: &[std::net::IpAddr],
    ca_pem: &str,
    ca_key_pem: &str,
) -> Result<(String, String)> {
    let key = KeyPair::generate().context("generating the node key")?;
    let params: CertificateParams =
        super::join::node_cert_params(node, super::identity::host_name().as_deref(), addresses)?;
    let ca_key = KeyPair::from_pem(ca_key_pem).context("reading the CA key")?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).context("reading the CA")?;
    let cert = params.signed_by(&key, &issuer).context("signing")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a renewed certificate and key into `dir/pki` (key first; each file replaced whole).
pub fn install(dir: &Path, cert_pem: &str, key_pem: &str) -> Result<()> {
    crate::cluster::identity::write_private(&dir.join("pki/node.key"), key_pem.as_bytes())?;
    crate::cluster::identity::write_private(&dir.join("pki/node.crt"), cert_pem.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_names_its_ip_addresses() {
        let c =
            rcgen::generate_simple_self_signed(vec!["10.0.0.5".into(), "node-1".into()]).unwrap();
        let ips = ip_addresses(&c.cert.pem()).unwrap();
        assert_eq!(ips, vec!["10.0.0.5".parse::<std::net::IpAddr>().unwrap()]);
    }

    #[test]
    fn renewal_starts_within_the_window() {
        let day = 86_400;
        let within = Duration::from_secs(30 * day as u64);
        assert!(!needs_renewal(100 * day, 0, within));
        assert!(needs_renewal(29 * day, 0, within));
        assert!(needs_renewal(-day, 0, within), "an expired one too");
    }

    #[test]
    fn an_issued_certificate_is_valid_for_a_year_and_signed_by_the_ca() {
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = p.self_signed(&ca_key).unwrap();
        let (cert, key) = issue("node-7", &[], &ca.pem(), &ca_key.serialize_pem()).unwrap();
        let (from, to) = validity(&cert).unwrap();
        let days = (to - from) as f64 / 86_400.0;
        assert!((days - CERT_DAYS as f64).abs() < 1.0, "{days}");
        // The transport accepts it as this node's credentials under that CA.
        let creds = crate::cluster::transport::Credentials::from_pem(&ca.pem(), &cert, &key);
        assert!(creds.is_ok());
        let der = crate::cluster::pem::first_cert(&cert).unwrap();
        assert_eq!(
            crate::cluster::transport::common_name(&der).as_deref(),
            Some("node-7")
        );
    }
}
