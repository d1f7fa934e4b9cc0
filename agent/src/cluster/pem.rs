//! PEM texts to the DER forms rustls takes, with rustls-pki-types' own parser
//! (`rustls-pemfile` is archived; see docs/DECISIONS.md).

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Every certificate in a PEM text, in order.
pub fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("reading PEM certificates")
}

/// The first certificate of a PEM text.
pub fn first_cert(pem: &str) -> Result<CertificateDer<'static>> {
    certs(pem)?
        .into_iter()
        .next()
        .context("no certificate in the PEM text")
}

/// The private key of a PEM text (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).context("reading the PEM private key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_rcgen_writes() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["n".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let both = format!("{}{}", cert.pem(), cert.pem());
        assert_eq!(certs(&both).unwrap().len(), 2);
        assert_eq!(first_cert(&both).unwrap().as_ref(), cert.der().as_ref());
        assert!(private_key(&key.serialize_pem()).is_ok());
        assert!(first_cert("no pem here").is_err());
        assert!(
            private_key(&cert.pem()).is_err(),
            "a certificate is not a key"
        );
    }
}
