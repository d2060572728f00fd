//! The Artifacts port on S3: `<bucket>/<org>/<key>`, every object encrypted with SSE-KMS
//! under the platform's customer-managed key. What is stored here is already sealed by
//! the key ring; SSE-KMS is the second layer every object at rest gets.
//!
//! The function role needs `s3:ListBucket` on the bucket as well as `s3:GetObject`:
//! without it S3 answers a missing object with `AccessDenied` instead of `NoSuchKey`.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use envplane_core::ports::{ArtifactError, Artifacts};

use crate::error_code::aws_error_code;
use crate::lazy::LazyClient;

pub struct S3Artifacts {
    client: LazyClient<aws_sdk_s3::Client>,
    bucket: String,
    kms_key_id: String,
}

impl S3Artifacts {
    pub fn new(
        client: impl Into<LazyClient<aws_sdk_s3::Client>>,
        bucket: impl Into<String>,
        kms_key_id: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
            bucket: bucket.into(),
            kms_key_id: kms_key_id.into(),
        }
    }

    /// Keys are made by the platform from ids; anything that could reach another
    /// organization's prefix is refused, as the local adapter does.
    fn object_key(org_id: &str, key: &str) -> Result<String, ArtifactError> {
        let safe = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        };
        if !safe(org_id) || !key.split('/').all(safe) {
            return Err(ArtifactError::Backend(format!(
                "invalid artifact key {key:?}"
            )));
        }
        Ok(format!("{org_id}/{key}"))
    }
}

#[async_trait]
impl Artifacts for S3Artifacts {
    async fn put(&self, org_id: &str, key: &str, bytes: Vec<u8>) -> Result<(), ArtifactError> {
        let object_key = Self::object_key(org_id, key)?;
        self.client
            .get()
            .put_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .body(ByteStream::from(bytes))
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(&self.kms_key_id)
            .send()
            .await
            .map_err(|error| {
                ArtifactError::Backend(format!(
                    "S3 PutObject {object_key} failed: {}",
                    aws_error_code(&error)
                ))
            })?;
        Ok(())
    }

    async fn get(&self, org_id: &str, key: &str) -> Result<Option<Vec<u8>>, ArtifactError> {
        let object_key = Self::object_key(org_id, key)?;
        let output = match self
            .client
            .get()
            .get_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None)
            }
            Err(error) => {
                return Err(ArtifactError::Backend(format!(
                    "S3 GetObject {object_key} failed: {}",
                    aws_error_code(&error)
                )))
            }
        };
        let bytes = output.body.collect().await.map_err(|error| {
            ArtifactError::Backend(format!("S3 GetObject {object_key} body: {error}"))
        })?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::{sdk_config, unique_name};

    struct Fixture {
        client: aws_sdk_s3::Client,
        bucket: String,
        key_id: String,
    }

    impl Fixture {
        async fn new() -> Self {
            let config = sdk_config().await;
            // The emulator has no per-bucket host names.
            let client = crate::config::s3_client(&config, true);
            let key_id = aws_sdk_kms::Client::new(&config)
                .create_key()
                .send()
                .await
                .expect("create KMS key")
                .key_metadata
                .expect("key metadata")
                .key_id;
            let bucket = unique_name("artifacts");
            client
                .create_bucket()
                .bucket(&bucket)
                .send()
                .await
                .expect("create bucket");
            Self {
                client,
                bucket,
                key_id,
            }
        }

        fn artifacts(&self) -> S3Artifacts {
            S3Artifacts::new(self.client.clone(), &self.bucket, &self.key_id)
        }
    }

    #[tokio::test]
    async fn s3_artifacts_round_trip() {
        let fixture = Fixture::new().await;
        let artifacts = fixture.artifacts();
        artifacts
            .put("org_1", "state/env_1/1", b"one".to_vec())
            .await
            .unwrap();
        artifacts
            .put("org_1", "state/env_1/1", b"two".to_vec())
            .await
            .unwrap();
        assert_eq!(
            artifacts.get("org_1", "state/env_1/1").await.unwrap(),
            Some(b"two".to_vec())
        );
        artifacts.put("org_1", "plan/empty", vec![]).await.unwrap();
        assert_eq!(
            artifacts.get("org_1", "plan/empty").await.unwrap(),
            Some(vec![])
        );
    }

    #[tokio::test]
    async fn s3_artifacts_missing_object_is_none() {
        let fixture = Fixture::new().await;
        assert_eq!(
            fixture
                .artifacts()
                .get("org_1", "state/nope")
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn s3_artifacts_are_isolated_by_organization() {
        let fixture = Fixture::new().await;
        let artifacts = fixture.artifacts();
        artifacts
            .put("org_1", "plan/dep_1", b"org one".to_vec())
            .await
            .unwrap();
        assert_eq!(artifacts.get("org_2", "plan/dep_1").await.unwrap(), None);
        artifacts
            .put("org_2", "plan/dep_1", b"org two".to_vec())
            .await
            .unwrap();
        assert_eq!(
            artifacts.get("org_1", "plan/dep_1").await.unwrap(),
            Some(b"org one".to_vec())
        );
        assert_eq!(
            artifacts.get("org_2", "plan/dep_1").await.unwrap(),
            Some(b"org two".to_vec())
        );
        for bad in [
            "../x",
            "a/../../b",
            "",
            "a//b",
            "/abs",
            "org_2/../x",
            "a/./b",
        ] {
            assert!(artifacts.put("org_1", bad, vec![]).await.is_err(), "{bad}");
            assert!(artifacts.get("org_1", bad).await.is_err(), "{bad}");
        }
        assert!(artifacts.get("..", "x").await.is_err());
        assert!(artifacts.put("org_1/..", "x", vec![]).await.is_err());
    }

    #[tokio::test]
    async fn s3_artifacts_are_stored_with_sse_kms() {
        let fixture = Fixture::new().await;
        fixture
            .artifacts()
            .put("org_1", "state/env_1/1", b"sealed".to_vec())
            .await
            .unwrap();
        let head = fixture
            .client
            .head_object()
            .bucket(&fixture.bucket)
            .key("org_1/state/env_1/1")
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.server_side_encryption(),
            Some(&ServerSideEncryption::AwsKms)
        );
        let key_id = head.ssekms_key_id().expect("the object names its KMS key");
        assert!(key_id.ends_with(&fixture.key_id), "{key_id}");
    }
}
