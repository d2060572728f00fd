//! What leaves the platform, on AWS: pull request reports and notifications. Whoever ends
//! a deployment (the api on a runner's report, task-events, the reaper) sends a message
//! to the reports queue; λ reporter makes the report on GitHub or delivers the
//! notification. A report GitHub cannot take returns to the queue and is tried again; a
//! notification its target did not take is sent again with a delay (its backoff).
//! Neither ever holds a deployment up.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::error::DisplayErrorContext;
use std::time::Duration;

use envplane_core::ports::{NotificationDelivery, Notifier, ReportRequest, Reports};
use envplane_core::Platform;
use serde::{Deserialize, Serialize};

use crate::lazy::LazyClient;
use crate::sqs::for_each_record;

/// A message of the reports queue.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Outbound {
    Notification {
        notification: Box<NotificationDelivery>,
    },
    Report(ReportRequest),
}

/// The longest delay SQS puts on a message.
const MAX_DELAY: Duration = Duration::from_secs(900);

/// The Reports and Notifier ports on the SQS reports queue.
pub struct SqsOutbound {
    client: LazyClient<aws_sdk_sqs::Client>,
    queue_url: String,
}

impl SqsOutbound {
    pub fn new(client: impl Into<LazyClient<aws_sdk_sqs::Client>>, queue_url: &str) -> Self {
        Self {
            client: client.into(),
            queue_url: queue_url.to_string(),
        }
    }

    /// Sends `message`, held back `delay` (at most SQS's 15 minutes).
    async fn send(&self, message: &Outbound, delay: Duration) -> Result<(), String> {
        let body = serde_json::to_string(message).expect("an outbound message serializes");
        self.client
            .get()
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay.min(MAX_DELAY).as_secs() as i32)
            .send()
            .await
            .map(drop)
            .map_err(|error| DisplayErrorContext(error).to_string())
    }
}

#[async_trait]
impl Reports for SqsOutbound {
    async fn request(&self, request: ReportRequest) {
        let pull_request = request.pull_request_id.clone();
        if let Err(error) = self.send(&Outbound::Report(request), Duration::ZERO).await {
            // The pull request's next change asks again; its deployment is unaffected.
            tracing::error!(%pull_request, %error, "asking for the pull request's report failed");
        }
    }
}

#[async_trait]
impl Notifier for SqsOutbound {
    async fn enqueue(&self, delivery: NotificationDelivery, delay: Duration) {
        let target_id = delivery.target_id.clone();
        let message = Outbound::Notification {
            notification: Box::new(delivery),
        };
        if let Err(error) = self.send(&message, delay).await {
            tracing::error!(%target_id, %error, "queueing a notification failed; dropped");
        }
    }
}

/// Makes the report or delivers the notification each record asks for; a record whose
/// report failed returns to the queue (and, after the redrive limit, to its dead-letter
/// queue). A notification's retries are new messages, sent by the delivery itself.
pub async fn handle_reports(platform: &Platform, event: SqsEvent) -> SqsBatchResponse {
    for_each_record(event, |record| async move {
        let message: Outbound = record
            .body
            .as_deref()
            .map(serde_json::from_str)
            .ok_or("the record has no body")?
            .map_err(|error| {
                format!(
                    "the body is neither a report request nor a notification ({:?} error)",
                    error.classify()
                )
            })?;
        match message {
            Outbound::Report(request) => platform
                .report_pull_request(&request)
                .await
                .map_err(|error| format!("the report failed: {error}")),
            Outbound::Notification { notification } => platform
                .deliver_notification(&notification)
                .await
                .map_err(|error| format!("the notification could not be delivered: {error}")),
        }
    })
    .await
}
