//! λ reaper: on an EventBridge schedule, messages the deployments queue moved to its
//! dead-letter queue fail their deployment; then the watchdog, the scheduled jobs and
//! the daily spend job run. This file only reads configuration and wires.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use envplane_aws::reaper::handle_schedule;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    envplane_aws::config::init_lambda_tracing()?;
    let aws = envplane_aws::config::platform_from_env(envplane_aws::config::reaper_platform)?;
    let dead_letters = envplane_aws::config::dead_letters_from_env(&aws.sdk)?;
    let (platform, dead_letters) = (&aws.platform, &dead_letters);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            Ok::<_, Error>(handle_schedule(platform, dead_letters, event.payload).await?)
        },
    ))
    .await
    .map_err(|error| anyhow::anyhow!(error))
}
