//! λ reporter: batches of the SQS reports queue, each a pull request whose comment and
//! commit statuses are brought up to date on GitHub. This file only reads configuration
//! and wires adapters; the work is in `envplane_aws::reports`.

use aws_lambda_events::event::sqs::SqsEvent;
use envplane_aws::reports::handle_reports;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    envplane_aws::config::init_lambda_tracing()?;
    let aws = envplane_aws::config::platform_from_env(envplane_aws::config::platform)?;
    let aws = &aws;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handle_reports(&aws.platform, event.payload).await)
    }))
    .await
    .map_err(|error| anyhow::anyhow!(error))
}
