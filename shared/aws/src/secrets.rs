//! The platform's own secrets (GitHub App private key, webhook secret) from Secrets
//! Manager, read once at cold start by the names the configuration gives.

use aws_sdk_secretsmanager::primitives::Blob;
use envplane_core::secrecy::{ExposeSecret, SecretString};

use crate::error_code::aws_error_code;

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
    let mut output = client
        .get_secret_value()
        .secret_id(name)
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
}
