//! The reaper's work, on a schedule: messages the deployments queue gave up on (moved to
//! its dead-letter queue after the redrive limit) fail their deployment with the reason;
//! then the watchdog's round and the scheduler's (time to live, calendars).
//! The deployer already does that on a message's last delivery; the reaper is the
//! backstop for a last delivery whose deployer died or timed out first, so no deployment
//! waits in the queue forever.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::Message;
use envplane_core::Platform;
use serde::Serialize;

use crate::lazy::LazyClient;
use crate::sqs::{queue_message, QueueMessage};

/// At most this many batches of 10 per run, so one run stays well inside its timeout;
/// the next run takes the rest.
const MAX_BATCHES: usize = 100;

pub const DEAD_LETTER_REASON: &str = "the deployment was never started: its queue message \
    failed every delivery and was moved to the dead-letter queue";

#[derive(Debug, thiserror::Error)]
#[error("the dead-letter queue {queue_url} could not be read: {reason}")]
pub struct ReapError {
    queue_url: String,
    reason: String,
}

/// The deployments queue's dead-letter queue.
pub struct DeadLetters {
    client: LazyClient<aws_sdk_sqs::Client>,
    queue_url: String,
}

/// What one run did.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reaped {
    /// Messages of deployments now failed (or that had ended meanwhile), deleted.
    pub concluded: usize,
    /// Requests to stop a cancelled deployment's sandbox that failed every delivery,
    /// deleted (the sandbox ends when its run does).
    pub stops_dropped: usize,
    /// Messages that are no message of the deployments queue, deleted.
    pub unreadable: usize,
    /// Messages left for the next run: failing their deployment failed.
    pub retried: usize,
}

impl DeadLetters {
    pub fn new(
        client: impl Into<LazyClient<aws_sdk_sqs::Client>>,
        queue_url: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
            queue_url: queue_url.into(),
        }
    }

    fn error(&self, operation: &str, error: impl std::error::Error) -> ReapError {
        ReapError {
            queue_url: self.queue_url.clone(),
            reason: format!("{operation}: {}", DisplayErrorContext(error)),
        }
    }

    async fn receive(&self) -> Result<Vec<Message>, ReapError> {
        let received = self
            .client
            .get()
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .map_err(|error| self.error("ReceiveMessage", error))?;
        Ok(received.messages.unwrap_or_default())
    }

    async fn delete(&self, message: &Message) -> Result<(), ReapError> {
        self.client
            .get()
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(message.receipt_handle().unwrap_or_default())
            .send()
            .await
            .map_err(|error| self.error("DeleteMessage", error))?;
        Ok(())
    }
}

/// Handles one EventBridge scheduled event: a run of [`reap_dead_letters`].
pub async fn handle_schedule(
    platform: &Platform,
    dead_letters: &DeadLetters,
    event: EventBridgeEvent<serde_json::Value>,
) -> Result<Reaped, ReapError> {
    // A passive region ends nothing: its dead letters wait for it to be active again.
    match platform.passive_reason().await {
        Ok(None) => {}
        Ok(Some(reason)) => {
            tracing::info!(%reason, "nothing to do here");
            return Ok(Reaped::default());
        }
        Err(error) => {
            tracing::error!(%error, "the active region could not be read; nothing done");
            return Ok(Reaped::default());
        }
    }
    let reaped = reap_dead_letters(platform, dead_letters).await?;
    tracing::info!(scheduled_at = ?event.time, ?reaped, "dead-letter queue drained");
    // The watchdog: a failure here is logged, and the next schedule tries again.
    match platform.run_watchdog().await {
        Ok(round) => tracing::info!(?round, "watchdog round done"),
        Err(error) => tracing::error!(%error, "the watchdog failed"),
    }
    // Scheduled jobs; likewise logged.
    match platform.run_scheduler().await {
        Ok(round) => tracing::info!(?round, "scheduler round done"),
        Err(error) => tracing::error!(%error, "the scheduler failed"),
    }
    // The bill, read by the day's first run only.
    match platform.run_spend_job().await {
        Ok(round) if round.ran => tracing::info!(?round, "the daily spend job ran"),
        Ok(_) => {}
        Err(error) => tracing::error!(%error, "the daily spend job failed"),
    }
    Ok(reaped)
}

/// Drains the dead-letter queue: each deployment message fails its deployment if it is
/// still queued, then is deleted; a message that is no deployment message is deleted
/// with an error log (never its body). A message whose deployment could not be updated
/// stays, and comes back after the queue's visibility timeout.
pub async fn reap_dead_letters(
    platform: &Platform,
    dead_letters: &DeadLetters,
) -> Result<Reaped, ReapError> {
    let mut reaped = Reaped::default();
    for _ in 0..MAX_BATCHES {
        let messages = dead_letters.receive().await?;
        if messages.is_empty() {
            break;
        }
        for message in &messages {
            match queue_message(message.body()) {
                Ok(QueueMessage::Dispatch(deployment)) => {
                    if let Err(error) = platform
                        .dead_lettered(&deployment, DEAD_LETTER_REASON)
                        .await
                    {
                        tracing::error!(deployment_id = %deployment.deployment_id, %error, "failing a dead-lettered deployment failed");
                        reaped.retried += 1;
                        continue;
                    }
                    tracing::warn!(deployment_id = %deployment.deployment_id, "dead-lettered deployment concluded");
                    reaped.concluded += 1;
                }
                Ok(QueueMessage::StopSandbox { stop_sandbox }) => {
                    tracing::error!(deployment_id = %stop_sandbox.deployment_id, "a cancelled deployment's sandbox could not be stopped; it ends when its run does");
                    reaped.stops_dropped += 1;
                }
                Err(reason) => {
                    tracing::error!(message_id = ?message.message_id(), %reason, "unreadable dead letter dropped");
                    reaped.unreadable += 1;
                }
            }
            dead_letters.delete(message).await?;
        }
    }
    Ok(reaped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployer::fixture::Fixture;
    use crate::emulator::{create_queue, sdk_config};
    use envplane_core::deployment::DeploymentStatus;

    async fn dead_letter_queue(bodies: &[String]) -> DeadLetters {
        let client = aws_sdk_sqs::Client::new(&sdk_config().await);
        let queue_url = create_queue(&client, "envplane-deployments-dlq").await;
        for body in bodies {
            client
                .send_message()
                .queue_url(&queue_url)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
        DeadLetters::new(client, queue_url)
    }

    #[tokio::test]
    async fn dead_letters_fail_their_queued_deployment_and_are_deleted() {
        let fixture = Fixture::new(4).await;
        let body = serde_json::to_string(&fixture.message).unwrap();
        let stop = r#"{"stop_sandbox":{"org_id":"org_1","deployment_id":"dep_1"}}"#;
        let dead_letters =
            dead_letter_queue(&[body.clone(), "{not a deployment".into(), body, stop.into()]).await;

        let reaped = reap_dead_letters(&fixture.platform, &dead_letters)
            .await
            .unwrap();
        assert_eq!(
            reaped,
            Reaped {
                concluded: 2,
                stops_dropped: 1,
                unreadable: 1,
                retried: 0
            }
        );
        let deployment = fixture.deployment().await;
        assert_eq!(deployment.status, DeploymentStatus::Failed);
        assert_eq!(deployment.reason.as_deref(), Some(DEAD_LETTER_REASON));
        // Nothing is left for the next run.
        let again = reap_dead_letters(&fixture.platform, &dead_letters)
            .await
            .unwrap();
        assert_eq!(again, Reaped::default());
    }
}
