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

/// The Reports port on the SQS reports queue.
pub struct SqsReports {
    client: LazyClient<aws_sdk_sqs::Client>,
    queue_url: String,
}

impl SqsReports {
    pub fn new(client: impl Into<LazyClient<aws_sdk_sqs::Client>>, queue_url: &str) -> Self {
        Self {
            client: client.into(),
            queue_url: queue_url.to_string(),
        }
    }
}

#[async_trait]
impl Reports for SqsReports {
    async fn request(&self, request: ReportRequest) {
        let body = serde_json::to_string(&request).expect("a report request serializes");
        let sent = self
            .client
            .get()
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await;
        if let Err(error) = sent {
            // The pull request's next change asks again; its deployment is unaffected.
            tracing::error!(pull_request = %request.pull_request_id, error = %DisplayErrorContext(error), "asking for the pull request's report failed");
        }
    }
}

/// A message of the reports queue.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Outbound {
    Notification { notification: NotificationDelivery },
    Report(ReportRequest),
}

/// The Notifier port on the reports queue: a retry waits in the queue as the message's
/// delay (SQS allows up to 15 minutes).
pub struct SqsNotifier {
    client: LazyClient<aws_sdk_sqs::Client>,
    queue_url: String,
}

/// The longest delay SQS puts on a message.
const MAX_DELAY: Duration = Duration::from_secs(900);

impl SqsNotifier {
    pub fn new(client: impl Into<LazyClient<aws_sdk_sqs::Client>>, queue_url: &str) -> Self {
        Self {
            client: client.into(),
            queue_url: queue_url.to_string(),
        }
    }
}

#[async_trait]
impl Notifier for SqsNotifier {
    async fn enqueue(&self, delivery: NotificationDelivery, delay: Duration) {
        let target_id = delivery.target_id.clone();
        let message = Outbound::Notification {
            notification: delivery,
        };
        let body = serde_json::to_string(&message).expect("a notification serializes");
        let delay_seconds = delay.min(MAX_DELAY).as_secs() as i32;
        let sent = self
            .client
            .get()
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay_seconds)
            .send()
            .await;
        if let Err(error) = sent {
            tracing::error!(%target_id, error = %DisplayErrorContext(error), "queueing a notification failed; dropped");
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
