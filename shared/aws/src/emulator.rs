//! The AWS emulator (moto server) the adapter tests run against. `scripts/test` starts
//! it and sets `AWS_ENDPOINT_URL`; nothing here reaches real AWS.

use aws_config::{BehaviorVersion, SdkConfig};

/// The SDK configuration for the emulator at `AWS_ENDPOINT_URL`.
///
/// Panics with instructions when the emulator is not running: a test that needs it
/// must not pass by skipping.
pub async fn sdk_config() -> SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "AWS_ENDPOINT_URL is not set: start the emulator with \
             `source scripts/lib/install.sh && ensure_moto && start_moto` (scripts/test does)"
        )
    });
    assert!(
        endpoint.starts_with("http://127.0.0.1") || endpoint.starts_with("http://localhost"),
        "AWS_ENDPOINT_URL must point at the local emulator, not {endpoint}"
    );
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "emulator",
        ))
        .load()
        .await
}

/// A name no other test run uses, for tables, queues, buckets and clusters.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        envplane_core::ids::new_id("t").replace('_', "-")
    )
}
