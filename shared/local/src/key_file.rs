//! Sensitive values sealed with AES-256-GCM under a 256-bit master key kept in a file
//! readable by its owner only. The organization id is bound in as associated data, so a
//! value sealed for one organization never opens as another's.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use async_trait::async_trait;
use envplane_core::ports::{KeyRing, KeyRingError};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read or create the master key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the master key file {0} must hold exactly 32 bytes")]
    Malformed(String),
    #[error("the master key file {0} is readable by others; run chmod 600 on it")]
    TooOpen(String),
}

pub struct FileKeyRing {
    cipher: Aes256Gcm,
}

impl FileKeyRing {
    /// Opens the master key at `path`, creating it (mode 0600) on first use.
    pub fn open_or_create(path: &Path) -> Result<Self, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let key = match fs::read(path) {
            Ok(bytes) => {
                let mode = fs::metadata(path).map_err(io)?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(KeyFileError::TooOpen(path.display().to_string()));
                }
                bytes
            }
            Err(error) if error.kind() == ErrorKind::NotFound => {
                let key = Aes256Gcm::generate_key(OsRng).to_vec();
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                file.write_all(&key)
                    .and_then(|_| file.sync_all())
                    .map_err(io)?;
                key
            }
            Err(error) => return Err(io(error)),
        };
        if key.len() != KEY_LEN {
            return Err(KeyFileError::Malformed(path.display().to_string()));
        }
        Ok(Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)),
        })
    }
}

#[async_trait]
impl KeyRing for FileKeyRing {
    /// The nonce, then the ciphertext with its tag.
    async fn seal_bytes(&self, org_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyRingError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext,
            aad: org_id.as_bytes(),
        };
        let ciphertext = self
            .cipher
            .encrypt(&nonce, payload)
            .map_err(|_| KeyRingError::Backend("encryption failed".into()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    async fn open_bytes(&self, org_id: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyRingError> {
        if sealed.len() <= NONCE_LEN {
            return Err(KeyRingError::Unseal);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: org_id.as_bytes(),
        };
        self.cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| KeyRingError::Unseal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        FileKeyRing::open_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let first = fs::read(&path).unwrap();
        FileKeyRing::open_or_create(&path).unwrap();
        assert_eq!(first, fs::read(&path).unwrap());
    }

    #[test]
    fn an_open_or_short_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, [7u8; 16]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            FileKeyRing::open_or_create(&path),
            Err(KeyFileError::Malformed(_))
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            FileKeyRing::open_or_create(&path),
            Err(KeyFileError::TooOpen(_))
        ));
    }

    #[tokio::test]
    async fn the_key_ring_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let ring = FileKeyRing::open_or_create(&dir.path().join("master.key")).unwrap();
        envplane_testkit::key_ring::conformance(&ring).await;
    }
}
