//! λ deployer: batches of the SQS deployment queue, dispatched to ECS Fargate. This
//! file only reads configuration and wires adapters; the work is in `envplane_aws`.

use aws_lambda_events::event::sqs::SqsEvent;
use envplane_aws::deployer::handle_batch;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    envplane_aws::config::init_lambda_tracing()?;
    let aws = envplane_aws::config::platform_from_env(envplane_aws::config::dispatching_platform)?;
    let redrive_limit = envplane_aws::config::redrive_limit_from_env()?;
    let aws = &aws;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(
            handle_batch(
                &aws.platform,
                aws.queue.as_ref(),
                event.payload,
                redrive_limit,
            )
            .await,
        )
    }))
    .await
    .map_err(|error| anyhow::anyhow!(error))
}
