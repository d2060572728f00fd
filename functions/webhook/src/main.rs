//! λ webhook: GitHub's deliveries at `POST /webhooks/github`, verified and acted on by
//! the same router `envplane serve` mounts. This file only reads configuration and
//! wires adapters.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    envplane_aws::config::init_lambda_tracing()?;
    let aws = envplane_aws::config::platform_from_env(envplane_aws::config::platform)?;
    let origin = envplane_aws::config::origin_secret_from_env(&aws.sdk);
    lambda_http::run(envplane_http::webhook_router_behind(aws.platform, origin))
        .await
        .map_err(|error| anyhow::anyhow!(error))
}
