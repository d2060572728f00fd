//! Who may sign a Terraform release: the OpenPGP keys a release's SHA256SUMS must be
//! signed by before any checksum in it is believed.
//!
//! A mirror (or anyone between the runner and it) can replace both an archive and the
//! SHA256SUMS beside it; only the detached signature ties the list to HashiCorp.

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::SignatureType;
use pgp::types::KeyDetails;

/// HashiCorp's release key as published at <https://www.hashicorp.com/security>,
/// primary fingerprint `C874 011F 0AB4 0511 0D02 1055 3436 5D94 72D7 468F`.
const HASHICORP_RELEASE_KEY: &str = include_str!("assets/hashicorp-release-key.asc");

/// Why a release's signature was not accepted; each message is meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("the release signing key could not be read: {0}")]
    Key(String),
    #[error("{file} is not an OpenPGP signature")]
    Malformed { file: String },
    #[error("{signed} is not signed by the release key ({signature_file} does not verify)")]
    NotSigned {
        signed: String,
        signature_file: String,
    },
}

/// The keys whose signature makes a SHA256SUMS trustworthy.
#[derive(Debug, Clone)]
pub struct ReleaseKeys(Vec<SignedPublicKey>);

impl ReleaseKeys {
    /// HashiCorp's key, built into the runner.
    pub fn hashicorp() -> Result<Self, SignatureError> {
        Self::from_armored(HASHICORP_RELEASE_KEY)
    }

    /// One armored public key; its subkeys count only when the primary key bound them.
    pub fn from_armored(armored: &str) -> Result<Self, SignatureError> {
        let (key, _headers) = SignedPublicKey::from_string(armored)
            .map_err(|error| SignatureError::Key(error.to_string()))?;
        key.verify_bindings()
            .map_err(|error| SignatureError::Key(error.to_string()))?;
        Ok(Self(vec![key]))
    }

    /// Accepts `content` when `signature` (binary, as HashiCorp publishes it) is a
    /// binary-document signature by a primary key or a signing subkey of these keys.
    pub fn verify(
        &self,
        content: &[u8],
        signature: &[u8],
        names: SignedFiles<'_>,
    ) -> Result<(), SignatureError> {
        let signature =
            DetachedSignature::from_bytes(signature).map_err(|_| SignatureError::Malformed {
                file: names.signature_file.to_owned(),
            })?;
        let is_binary = signature.signature.typ() == Some(SignatureType::Binary);
        if is_binary && self.any_signer_verifies(&signature, content) {
            return Ok(());
        }
        Err(SignatureError::NotSigned {
            signed: names.signed.to_owned(),
            signature_file: names.signature_file.to_owned(),
        })
    }

    fn any_signer_verifies(&self, signature: &DetachedSignature, content: &[u8]) -> bool {
        self.0.iter().any(|key| {
            signature.verify(key, content).is_ok()
                || key
                    .public_subkeys
                    .iter()
                    .filter(|subkey| subkey.signatures.iter().any(|s| s.key_flags().sign()))
                    .any(|subkey| signature.verify(&subkey.key, content).is_ok())
        })
    }

    /// The primary keys' fingerprints, upper-case hex.
    pub fn fingerprints(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|key| hex::encode_upper(key.fingerprint().as_bytes()))
            .collect()
    }
}

/// The file names an error message speaks of.
#[derive(Debug, Clone, Copy)]
pub struct SignedFiles<'a> {
    pub signed: &'a str,
    pub signature_file: &'a str,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pgp::composed::{KeyType, SecretKeyParamsBuilder, SignedSecretKey, SubkeyParamsBuilder};
    use pgp::crypto::hash::HashAlgorithm;
    use pgp::ser::Serialize;
    use pgp::types::Password;

    /// A key shaped like HashiCorp's: a certifying primary and a signing subkey.
    pub(crate) fn test_signer() -> SignedSecretKey {
        let mut signing = SubkeyParamsBuilder::default();
        signing.key_type(KeyType::Ed25519Legacy).can_sign(true);
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(false)
            .primary_user_id("envplane test releases".into())
            .subkeys(vec![signing.build().unwrap()]);
        params
            .build()
            .unwrap()
            .generate(rand::thread_rng())
            .unwrap()
    }

    pub(crate) fn public_keys(signer: &SignedSecretKey) -> ReleaseKeys {
        ReleaseKeys(vec![SignedPublicKey::from(signer.clone())])
    }

    /// A binary detached signature by the signer's signing subkey, as HashiCorp makes them.
    pub(crate) fn sign(signer: &SignedSecretKey, content: &[u8]) -> Vec<u8> {
        DetachedSignature::sign_binary_data(
            rand::thread_rng(),
            &signer.secret_subkeys[0].key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            content,
        )
        .unwrap()
        .to_bytes()
        .unwrap()
    }

    const NAMES: SignedFiles<'static> = SignedFiles {
        signed: "terraform_1.0.3_SHA256SUMS",
        signature_file: "terraform_1.0.3_SHA256SUMS.sig",
    };

    #[test]
    fn the_built_in_key_is_hashicorps_with_a_signing_subkey() {
        let keys = ReleaseKeys::hashicorp().unwrap();
        assert_eq!(
            keys.fingerprints(),
            ["C874011F0AB405110D02105534365D9472D7468F"]
        );
        let signing_subkeys = keys.0[0]
            .public_subkeys
            .iter()
            .filter(|subkey| subkey.signatures.iter().any(|s| s.key_flags().sign()))
            .count();
        assert!(signing_subkeys >= 1);
    }

    #[test]
    fn accepts_a_signature_by_the_signing_subkey() {
        let signer = test_signer();
        let sums = b"abc  terraform_1.0.3_linux_amd64.zip\n";
        public_keys(&signer)
            .verify(sums, &sign(&signer, sums), NAMES)
            .unwrap();
    }

    #[test]
    fn refuses_changed_content_another_key_and_garbage() {
        let signer = test_signer();
        let keys = public_keys(&signer);
        let sums = b"abc  terraform_1.0.3_linux_amd64.zip\n";
        let changed = b"abd  terraform_1.0.3_linux_amd64.zip\n";
        let error = keys
            .verify(changed, &sign(&signer, sums), NAMES)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "terraform_1.0.3_SHA256SUMS is not signed by the release key \
             (terraform_1.0.3_SHA256SUMS.sig does not verify)"
        );
        let stranger = test_signer();
        assert!(matches!(
            keys.verify(sums, &sign(&stranger, sums), NAMES),
            Err(SignatureError::NotSigned { .. })
        ));
        assert!(matches!(
            ReleaseKeys::hashicorp()
                .unwrap()
                .verify(sums, &sign(&signer, sums), NAMES),
            Err(SignatureError::NotSigned { .. })
        ));
        assert!(matches!(
            keys.verify(sums, b"<html>not found</html>", NAMES),
            Err(SignatureError::Malformed { .. })
        ));
    }

    #[test]
    fn a_key_that_does_not_parse_is_an_error() {
        assert!(matches!(
            ReleaseKeys::from_armored("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n"),
            Err(SignatureError::Key(_))
        ));
    }
}
