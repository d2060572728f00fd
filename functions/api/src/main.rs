//! λ api: API Gateway (HTTP API) requests served by the same axum router as
//! `envplane serve`. This file only reads configuration and wires adapters.

use std::sync::Arc;

use anyhow::{bail, Context};
use envplane_core::Platform;

/// The DynamoDB table holding every record (single-table design).
const TABLE_VARIABLE: &str = "ENVPLANE_TABLE_NAME";

struct Config {
    table_name: String,
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            table_name: std::env::var(TABLE_VARIABLE)
                .with_context(|| format!("missing configuration: set {TABLE_VARIABLE}"))?,
        })
    }
}

/// The Store, KeyRing and Queue adapters on DynamoDB, KMS and SQS come with the AWS
/// adapters; until then the function refuses to start rather than serve on nothing.
fn platform(config: &Config) -> anyhow::Result<Platform> {
    bail!(
        "{TABLE_VARIABLE}={} is set, but this build has no DynamoDB store adapter yet; \
         run `envplane serve` for a working installation",
        config.table_name
    )
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .without_time()
        .init();
    let config = Config::from_env()?;
    let platform = Arc::new(platform(&config)?);
    lambda_http::run(envplane_http::api_router(platform)).await
}
