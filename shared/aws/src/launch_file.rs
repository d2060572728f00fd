//! How the launch credential reaches a sandbox on AWS without riding in RunTask.
//!
//! RunTask's container overrides are readable by anyone with `ecs:DescribeTasks`, appear
//! in CloudTrail and in the task state change events. So the deployer writes the
//! credential to an environment file in a bucket of its own, and RunTask names only the
//! file: ECS reads it with the task's execution role as the container starts and hands
//! the variable to the runner. Only the deployer writes there and only the execution
//! role (which template code never holds) reads; the file expires with a lifecycle rule,
//! and the credential in it is worthless once the sandbox traded it.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use envplane_core::ports::{LaunchError, LaunchRequest};
use envplane_core::secrecy::ExposeSecret;

use crate::ecs::RUNNER_TOKEN_VARIABLE;
use crate::error_code::aws_error_code;
use crate::lazy::LazyClient;

/// Writes the environment files of sandbox launches into one bucket.
#[derive(Debug, Clone)]
pub struct LaunchFiles {
    client: LazyClient<aws_sdk_s3::Client>,
    bucket: String,
    /// The AWS partition of the bucket's ARN (`aws`, `aws-cn`, `aws-us-gov`).
    partition: &'static str,
}

impl LaunchFiles {
    pub fn new(
        client: impl Into<LazyClient<aws_sdk_s3::Client>>,
        bucket: impl Into<String>,
        region: &str,
    ) -> Self {
        Self {
            client: client.into(),
            bucket: bucket.into(),
            partition: partition(region),
        }
    }

    /// One file per deployment phase; ECS wants the `.env` extension.
    pub fn key(request: &LaunchRequest) -> String {
        format!("launch/{}/{}.env", request.deployment_id, request.attempt)
    }

    /// The ARN RunTask names in `environmentFiles`.
    pub fn arn(&self, request: &LaunchRequest) -> String {
        format!(
            "arn:{}:s3:::{}/{}",
            self.partition,
            self.bucket,
            Self::key(request)
        )
    }

    /// Puts the phase's launch credential where its task will find it.
    pub async fn write(&self, request: &LaunchRequest) -> Result<(), LaunchError> {
        self.client
            .get()
            .put_object()
            .bucket(&self.bucket)
            .key(Self::key(request))
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(env_file(request).into_bytes()))
            .send()
            .await
            .map_err(|error| {
                // Only the error's code: nothing of a request that carried the credential.
                LaunchError::Failed(format!(
                    "could not write the sandbox's launch file: {}",
                    aws_error_code(&error)
                ))
            })?;
        Ok(())
    }
}

/// The file's text in ECS's `NAME=VALUE` per line format.
fn env_file(request: &LaunchRequest) -> String {
    format!(
        "{RUNNER_TOKEN_VARIABLE}={}\n",
        request.runner_token.expose_secret()
    )
}

fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envplane_core::secrecy::SecretString;

    fn request() -> LaunchRequest {
        LaunchRequest {
            org_id: "org_1".into(),
            deployment_id: "dep_01jz8k4m2v6q9r3t5w7y1a3c5e".into(),
            attempt: 2,
            runner_token: SecretString::from("ert_launch"),
            repository: String::new(),
        }
    }

    #[test]
    fn one_file_per_phase_named_by_an_arn_of_the_regions_partition() {
        let client = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .build(),
        );
        let files = LaunchFiles::new(client, "launch-bucket", "eu-west-1");
        assert_eq!(
            files.arn(&request()),
            "arn:aws:s3:::launch-bucket/launch/dep_01jz8k4m2v6q9r3t5w7y1a3c5e/2.env"
        );
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(env_file(&request()), "ENVPLANE_RUNNER_TOKEN=ert_launch\n");
    }
}
