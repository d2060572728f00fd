//! Who is calling and what they may do.
//!
//! Roles are ordered `viewer < planner < deployer < admin`. A key holds one role either
//! for its whole organization or for one project; a project key reaches nothing outside
//! its project.

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::{Error, Result};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Planner,
    Deployer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Planner => "planner",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub key_name: String,
    pub org_id: String,
    pub role: Role,
    /// `Some` for a key limited to one project.
    pub project_id: Option<String>,
    /// The platform operator's key may create organizations.
    pub operator: bool,
    /// Carried into audit events so one request can be traced across logs.
    pub request_id: String,
    /// The client's own request id, when it sent a valid one.
    pub client_request_id: Option<String>,
}

impl Caller {
    /// Allows the call when the key has at least `role` over `project_id` (`None` means
    /// an organization-wide object, which project keys never reach).
    pub fn require(&self, role: Role, project_id: Option<&str>) -> Result<()> {
        self.require_scope(project_id)?;
        if self.role < role {
            return Err(Error::forbidden(format!(
                "this action needs the {} role; the key has {}",
                role.as_str(),
                self.role.as_str()
            )));
        }
        Ok(())
    }

    /// Allows the call when `project_id` is within the key's reach, whatever its role.
    pub fn require_scope(&self, project_id: Option<&str>) -> Result<()> {
        match (&self.project_id, project_id) {
            (None, _) => Ok(()),
            (Some(own), Some(target)) if own == target => Ok(()),
            (Some(_), Some(_)) => Err(Error::forbidden("the key is limited to another project")),
            (Some(_), None) => Err(Error::forbidden(
                "the key is limited to one project and cannot act on organization-wide objects",
            )),
        }
    }

    pub fn require_operator(&self) -> Result<()> {
        if self.operator {
            Ok(())
        } else {
            Err(Error::forbidden(
                "only the platform operator's key may create organizations",
            ))
        }
    }
}

/// Prefix of every envplane API key, so secret scanners can recognise leaked keys.
pub const KEY_PREFIX: &str = "epk_";

/// A new random API key (256 bits) and the hash under which it is stored.
pub fn generate_key() -> (SecretString, String) {
    random_secret(KEY_PREFIX)
}

/// Prefix of the short-lived tokens sandboxes use to call back.
pub const RUNNER_TOKEN_PREFIX: &str = "ert_";

/// A new runner token for one deployment phase and the hash under which it is stored.
pub fn generate_runner_token() -> (SecretString, String) {
    random_secret(RUNNER_TOKEN_PREFIX)
}

/// Prefix of the secrets notification webhooks are signed with.
pub const NOTIFICATION_SECRET_PREFIX: &str = "ens_";

/// A new secret to sign a notification target's deliveries with.
pub fn generate_notification_secret() -> SecretString {
    random_secret(NOTIFICATION_SECRET_PREFIX).0
}

fn random_secret(prefix: &str) -> (SecretString, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!("{prefix}{}", hex::encode(bytes));
    let hash = hash_key(&secret);
    (SecretString::from(secret), hash)
}

/// The stored form of a key. Keys carry 256 random bits, so one SHA-256 is enough: no
/// dictionary to guard against, and lookups stay fast.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The first characters of a key, safe to show in listings so users can tell keys apart.
pub fn key_hint(key: &SecretString) -> String {
    key.expose_secret()
        .chars()
        .take(KEY_PREFIX.len() + 6)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, project_id: Option<&str>) -> Caller {
        Caller {
            key_id: "key_1".into(),
            key_name: "test".into(),
            org_id: "org_1".into(),
            role,
            project_id: project_id.map(str::to_string),
            operator: false,
            request_id: "req".into(),
            client_request_id: None,
        }
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Planner);
        assert!(Role::Planner < Role::Deployer);
        assert!(Role::Deployer < Role::Admin);
    }

    #[test]
    fn org_keys_reach_every_project_with_enough_role() {
        let deployer = caller(Role::Deployer, None);
        assert!(deployer.require(Role::Deployer, Some("prj_a")).is_ok());
        assert!(deployer.require(Role::Planner, None).is_ok());
        assert!(matches!(
            deployer.require(Role::Admin, Some("prj_a")),
            Err(Error::Forbidden(_))
        ));
    }

    #[test]
    fn project_keys_reach_only_their_project() {
        let admin = caller(Role::Admin, Some("prj_a"));
        assert!(admin.require(Role::Admin, Some("prj_a")).is_ok());
        assert!(admin.require(Role::Viewer, Some("prj_b")).is_err());
        assert!(admin.require(Role::Viewer, None).is_err());
    }

    #[test]
    fn keys_are_random_and_hashed() {
        let (first, first_hash) = generate_key();
        let (second, _) = generate_key();
        assert_ne!(first.expose_secret(), second.expose_secret());
        assert!(first.expose_secret().starts_with(KEY_PREFIX));
        assert_eq!(hash_key(first.expose_secret()), first_hash);
        assert!(!first_hash.contains(first.expose_secret()));
        assert_eq!(key_hint(&first).len(), KEY_PREFIX.len() + 6);
    }
}
