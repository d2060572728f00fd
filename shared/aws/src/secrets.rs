//! The platform's own secrets (GitHub App private key, webhook secret) from Secrets
//! Manager, read once at cold start by the names the configuration gives; and the origin
//! secret CloudFront sends, read and cached for the origin check
//! ([`SecretsManagerOriginSecret`]).

use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::primitives::Blob;
use envplane_core::ports::{same_secret, OriginSecret};
use envplane_core::secrecy::{ExposeSecret, SecretString};

use crate::error_code::aws_error_code;
use crate::lazy::LazyClient;

/// Why a secret could not be read. Names the secret and the AWS error code, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read secret {name} from Secrets Manager: {code}")]
    Aws { name: String, code: String },
    /// An empty secret is a misconfiguration, never "no check".
    #[error("secret {name} is empty")]
    Empty { name: String },
    #[error("secret {name} is binary, not UTF-8 text")]
    NotText { name: String },
}

/// The current value of the secret `name` (a name or an ARN), as text: `SecretString`,
/// or `SecretBinary` holding UTF-8.
#[tracing::instrument(skip(client))]
pub async fn read_secret(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
) -> Result<SecretString, SecretsError> {
    read_version(client, name, None).await
}

/// The value of the secret `name` in the version `stage` labels (`AWSCURRENT` when
/// `None`), as [`read_secret`] reads it.
async fn read_version(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
    stage: Option<&str>,
) -> Result<SecretString, SecretsError> {
    let mut output = client
        .get_secret_value()
        .secret_id(name)
        .set_version_stage(stage.map(str::to_string))
        .send()
        .await
        .map_err(|error| SecretsError::Aws {
            name: name.to_string(),
            code: aws_error_code(&error),
        })?;
    let value = match (output.secret_string.take(), output.secret_binary.take()) {
        (Some(text), _) => SecretString::from(text),
        (None, Some(binary)) => String::from_utf8(Blob::into_inner(binary))
            .map(SecretString::from)
            .map_err(|_| SecretsError::NotText {
                name: name.to_string(),
            })?,
        (None, None) => SecretString::from(String::new()),
    };
    if value.expose_secret().is_empty() {
        return Err(SecretsError::Empty {
            name: name.to_string(),
        });
    }
    Ok(value)
}

/// How long the values read are accepted without reading them again.
const ORIGIN_CACHE_FOR: Duration = Duration::from_secs(5 * 60);

/// How soon after a read a value matching none read it again: a rotation that just
/// happened is seen within this time, and refused requests (anyone can send a wrong
/// value) cause at most one read in this time per function instance.
const ORIGIN_REREAD_AFTER: Duration = Duration::from_secs(30);

/// The origin check's secret in Secrets Manager (`ENVPLANE_ORIGIN_SECRET_ARN`): the values
/// of its `AWSCURRENT` and `AWSPREVIOUS` versions are accepted, so a rotation
/// (`put-secret-value`, then CloudFront sends the new value) refuses no request. The values
/// are read on first use and cached for 5 minutes; a value matching none reads them again,
/// at most once every 30 seconds. A read that fails refuses (fail closed) and is logged
/// with its AWS error code, never a value.
pub struct SecretsManagerOriginSecret {
    client: LazyClient<aws_sdk_secretsmanager::Client>,
    secret_id: String,
    reread_after: Duration,
    values: tokio::sync::Mutex<OriginValues>,
}

/// What was last read, and when.
#[derive(Default)]
struct OriginValues {
    /// `AWSCURRENT`, and `AWSPREVIOUS` where there is one.
    accepted: Vec<SecretString>,
    /// When `accepted` was read; `None` before the first read that succeeded.
    read_at: Option<Instant>,
    /// When a read was last tried, whether it succeeded or not.
    tried_at: Option<Instant>,
}

impl OriginValues {
    fn fresh(&self, now: Instant) -> bool {
        self.read_at
            .is_some_and(|at| now.saturating_duration_since(at) < ORIGIN_CACHE_FOR)
    }

    /// Every value is compared, each in constant time: how long it takes does not tell
    /// which one matched.
    fn accept(&self, presented: &[u8]) -> bool {
        self.accepted.iter().fold(false, |accepted, value| {
            accepted | same_secret(presented, value.expose_secret().as_bytes())
        })
    }
}

impl SecretsManagerOriginSecret {
    /// `secret_id`: the secret's ARN (or name).
    pub fn new(
        client: impl Into<LazyClient<aws_sdk_secretsmanager::Client>>,
        secret_id: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
            secret_id: secret_id.into(),
            reread_after: ORIGIN_REREAD_AFTER,
            values: tokio::sync::Mutex::default(),
        }
    }

    /// The values to accept: `AWSCURRENT`'s, and `AWSPREVIOUS`'s where that version
    /// exists (a secret never rotated has none).
    async fn read(&self) -> Result<Vec<SecretString>, SecretsError> {
        let client = self.client.get();
        let (current, previous) = tokio::join!(
            read_version(client, &self.secret_id, Some("AWSCURRENT")),
            read_version(client, &self.secret_id, Some("AWSPREVIOUS")),
        );
        let mut accepted = vec![current?];
        match previous {
            Ok(previous) => accepted.push(previous),
            Err(SecretsError::Aws { code, .. }) if code == "ResourceNotFoundException" => {}
            Err(error) => return Err(error),
        }
        Ok(accepted)
    }
}

#[async_trait::async_trait]
impl OriginSecret for SecretsManagerOriginSecret {
    async fn accepts(&self, presented: &[u8]) -> bool {
        // Held across the read: requests arriving meanwhile wait for its values rather
        // than read too.
        let mut values = self.values.lock().await;
        let now = Instant::now();
        if values.fresh(now) && values.accept(presented) {
            return true;
        }
        // Never read, read too long ago, a read that failed, or a value that matches
        // none (a rotation may just have happened): read again, unless a read was tried
        // moments ago.
        let tried_recently = values
            .tried_at
            .is_some_and(|at| now.saturating_duration_since(at) < self.reread_after);
        if tried_recently {
            return false;
        }
        values.tried_at = Some(now);
        match self.read().await {
            Ok(accepted) => {
                values.accepted = accepted;
                values.read_at = Some(now);
                values.accept(presented)
            }
            Err(error) => {
                // The values read before stay only until they expire: a request is never
                // accepted by values older than ORIGIN_CACHE_FOR.
                tracing::error!(error = %error, "cannot read the origin secret; refusing the request");
                false
            }
        }
    }
}

impl std::fmt::Debug for SecretsManagerOriginSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SecretsManagerOriginSecret")
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::{sdk_config, unique_name};

    async fn client() -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&sdk_config().await)
    }

    #[tokio::test]
    async fn secrets_are_read_by_name() {
        let client = client().await;
        let name = unique_name("envplane/webhook-secret");
        client
            .create_secret()
            .name(&name)
            .secret_string("whsec-value")
            .send()
            .await
            .unwrap();
        let secret = read_secret(&client, &name).await.unwrap();
        assert_eq!(secret.expose_secret(), "whsec-value");
        assert!(!format!("{secret:?}").contains("whsec-value"));

        let binary = unique_name("envplane/github-app-key");
        client
            .create_secret()
            .name(&binary)
            .secret_binary(Blob::new("-----BEGIN RSA PRIVATE KEY-----"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            read_secret(&client, &binary).await.unwrap().expose_secret(),
            "-----BEGIN RSA PRIVATE KEY-----"
        );
    }

    #[tokio::test]
    async fn secrets_missing_or_unusable_are_named_errors() {
        let client = client().await;
        let missing = unique_name("envplane/missing");
        let error = read_secret(&client, &missing).await.unwrap_err();
        assert!(
            matches!(&error, SecretsError::Aws { name, code }
                if name == &missing && code == "ResourceNotFoundException"),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(&missing), "{message}");
        assert!(message.contains("ResourceNotFoundException"), "{message}");

        let binary = unique_name("envplane/binary");
        client
            .create_secret()
            .name(&binary)
            .secret_binary(Blob::new(vec![0xff, 0xfe, 0x00]))
            .send()
            .await
            .unwrap();
        assert!(matches!(
            read_secret(&client, &binary).await,
            Err(SecretsError::NotText { .. })
        ));
    }

    async fn create(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) {
        client
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_origin_secret_accepts_the_current_and_the_previous_value() {
        let client = client().await;
        let name = unique_name("envplane/origin-verify");
        create(&client, &name, "origin-one").await;
        let origin = SecretsManagerOriginSecret::new(client.clone(), &name);
        // A secret never rotated: AWSCURRENT alone.
        assert!(origin.accepts(b"origin-one").await);
        assert!(!origin.accepts(b"origin-two").await);
        assert!(!origin.accepts(b"").await);
        assert!(!format!("{origin:?}").contains("origin-one"));

        // The rotation: the new value becomes AWSCURRENT, the old one AWSPREVIOUS.
        client
            .put_secret_value()
            .secret_id(&name)
            .secret_string("origin-two")
            .send()
            .await
            .unwrap();
        // Read moments ago: the new value waits for the next read (30 seconds), the
        // cached one is still accepted.
        assert!(!origin.accepts(b"origin-two").await);
        assert!(origin.accepts(b"origin-one").await);

        // Read again (a new instance, or 30 seconds later): both, and nothing else.
        for origin in [
            SecretsManagerOriginSecret::new(client.clone(), &name),
            SecretsManagerOriginSecret {
                reread_after: Duration::ZERO,
                ..SecretsManagerOriginSecret::new(client.clone(), &name)
            },
        ] {
            assert!(origin.accepts(b"origin-two").await);
            assert!(origin.accepts(b"origin-one").await);
            assert!(!origin.accepts(b"origin-three").await);
            assert!(!origin.accepts(b"origin-tw").await);
        }

        // A value that matches none reads again (here without waiting): the next
        // rotation retires the oldest value.
        let origin = SecretsManagerOriginSecret {
            reread_after: Duration::ZERO,
            ..SecretsManagerOriginSecret::new(client.clone(), &name)
        };
        assert!(origin.accepts(b"origin-one").await);
        client
            .put_secret_value()
            .secret_id(&name)
            .secret_string("origin-three")
            .send()
            .await
            .unwrap();
        assert!(origin.accepts(b"origin-three").await);
        assert!(origin.accepts(b"origin-two").await);
        assert!(!origin.accepts(b"origin-one").await);
    }

    #[tokio::test]
    async fn an_origin_secret_that_cannot_be_read_refuses() {
        let client = client().await;
        let missing = unique_name("envplane/origin-missing");
        let origin = SecretsManagerOriginSecret {
            reread_after: Duration::ZERO,
            ..SecretsManagerOriginSecret::new(client.clone(), &missing)
        };
        assert!(!origin.accepts(b"anything").await);
        assert!(!origin.accepts(b"").await);
    }
}
