//! λ task-events: EventBridge "ECS Task State Change" events; a sandbox that stopped
//! without reporting fails its deployment. This file only wires.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use envplane_aws::task_events::{handle_task_state_change, EcsTaskStateChange};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    envplane_aws::config::init_lambda_tracing()?;
    let aws = envplane_aws::config::platform_from_env(envplane_aws::config::concluding_platform)?;
    let platform = &aws.platform;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<EcsTaskStateChange>>| async move {
            handle_task_state_change(platform, event.payload).await?;
            Ok::<(), Error>(())
        },
    ))
    .await
    .map_err(|error| anyhow::anyhow!(error))
}
