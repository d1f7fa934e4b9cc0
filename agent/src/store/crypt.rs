//! Encryption at rest for Secret objects: XChaCha20-Poly1305 with a random nonce per write.
//!
//! The 32-byte key lives in its own file in the data dir (`secrets.key`, mode 0600), never in
//! the database, so a copied `flotilla.db` does not give away the Secrets. The object's key
//! (kind/namespace/name) is the associated data, so a ciphertext cannot be moved to another row.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use super::StoreError;

const NONCE: usize = 24;
/// Marks an encrypted body, so plain JSON (which starts with `{`) is never mistaken for one.
const MAGIC: &[u8] = b"flt1";

#[derive(Clone)]
pub struct SecretCipher(XChaCha20Poly1305);

impl SecretCipher {
    /// Makes a new random key file; fails if one exists.
    pub fn create_key(path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(&key)?;
        f.sync_all()
    }

    pub fn load(path: &Path) -> Result<Self, StoreError> {
        let key = std::fs::read(path).map_err(|source| StoreError::Key {
            path: path.to_owned(),
            source,
        })?;
        Self::from_key(&key).ok_or_else(|| StoreError::Key {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "key must be 32 bytes"),
        })
    }

    pub fn from_key(key: &[u8]) -> Option<Self> {
        (key.len() == 32).then(|| SecretCipher(XChaCha20Poly1305::new(key.into())))
    }

    pub fn seal(&self, aad: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .0
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption does not fail for in-memory buffers");
        [MAGIC, &nonce, &ct].concat()
    }

    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        let bad = || StoreError::Decrypt {
            object: aad.to_string(),
        };
        let rest = sealed.strip_prefix(MAGIC).ok_or_else(bad)?;
        if rest.len() < NONCE {
            return Err(bad());
        }
        let (nonce, ct) = rest.split_at(NONCE);
        self.0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let c = SecretCipher::from_key(&[7u8; 32]).unwrap();
        let sealed = c.seal("Secret/default/db", b"{\"data\":{}}");
        assert!(
            !sealed.windows(4).any(|w| w == b"data"),
            "plaintext must not show"
        );
        assert_eq!(
            c.open("Secret/default/db", &sealed).unwrap(),
            b"{\"data\":{}}"
        );
        assert!(
            c.open("Secret/default/other", &sealed).is_err(),
            "bound to its object"
        );
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(c.open("Secret/default/db", &bad).is_err());
        let other = SecretCipher::from_key(&[8u8; 32]).unwrap();
        assert!(other.open("Secret/default/db", &sealed).is_err());
    }
}
