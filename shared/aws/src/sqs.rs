//! The deployments queue on SQS, and the plumbing of SQS-triggered functions: partial
//! batch failures, with each record handled in its own span.

use std::future::Future;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::error::DisplayErrorContext;
use envplane_core::ports::{DeploymentMessage, Queue, QueueError};
use tracing::Instrument;

use crate::lazy::LazyClient;

/// The `Queue` port on an SQS queue: each message is one `DeploymentMessage` as JSON.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: LazyClient<aws_sdk_sqs::Client>,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(
        client: impl Into<LazyClient<aws_sdk_sqs::Client>>,
        queue_url: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, message: &DeploymentMessage) -> Result<(), QueueError> {
        let body = serde_json::to_string(message)
            .map_err(|e| QueueError::Backend(format!("cannot encode the message: {e}")))?;
        self.client
            .get()
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| {
                QueueError::Backend(format!(
                    "SendMessage to {} failed: {}",
                    self.queue_url,
                    DisplayErrorContext(e)
                ))
            })?;
        Ok(())
    }
}

/// Reads a message body of the deployments queue. The body is never logged; an error
/// names only where the body went wrong.
pub fn deployment_message(body: Option<&str>) -> Result<DeploymentMessage, String> {
    match body.map(serde_json::from_str) {
        Some(Ok(message)) => Ok(message),
        Some(Err(error)) => Err(format!(
            "the body is not a deployment message ({:?} error at line {}, column {})",
            error.classify(),
            error.line(),
            error.column()
        )),
        None => Err("the record has no body".into()),
    }
}

/// How many times SQS has delivered the record, this delivery included.
pub fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

/// Runs `handle` on every record of the batch, one after the other, each in its own span,
/// and reports the records it failed as batch item failures: only those return to the
/// queue (the event source mapping must enable `ReportBatchItemFailures`).
///
/// A failed record without a message id is reported with an empty one, which makes
/// Lambda return the whole batch: redelivering too much is safe, losing a record is not.
pub async fn for_each_record<F, Fut>(event: SqsEvent, mut handle: F) -> SqsBatchResponse
where
    F: FnMut(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!(
            "sqs_record",
            message_id = %message_id,
            receive_count = receive_count(&record),
            deployment_id = tracing::field::Empty,
        );
        if let Err(reason) = handle(record).instrument(span.clone()).await {
            span.in_scope(|| tracing::warn!(%reason, "the record returns to the queue"));
            response.add_failure(message_id);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::{create_queue, sdk_config, unique_name};

    #[tokio::test]
    async fn queue_sends_the_message_as_json() {
        let client = aws_sdk_sqs::Client::new(&sdk_config().await);
        let queue_url = create_queue(&client, "envplane-deployments").await;
        let queue = SqsQueue::new(client.clone(), &queue_url);
        let message = DeploymentMessage {
            org_id: "org_1".into(),
            environment_id: "env_1".into(),
            deployment_id: "dep_1".into(),
        };
        queue.send(&message).await.unwrap();

        let received = client
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let bodies: Vec<&str> = received
            .messages()
            .iter()
            .filter_map(|m| m.body())
            .collect();
        assert_eq!(bodies.len(), 1);
        let sent: DeploymentMessage = serde_json::from_str(bodies[0]).unwrap();
        assert_eq!(sent, message);
    }

    #[tokio::test]
    async fn queue_errors_name_the_queue() {
        let client = aws_sdk_sqs::Client::new(&sdk_config().await);
        let queue_url = format!(
            "{}/123456789012/{}",
            std::env::var("AWS_ENDPOINT_URL").unwrap(),
            unique_name("missing")
        );
        let queue = SqsQueue::new(client, &queue_url);
        let message = DeploymentMessage {
            org_id: "org_1".into(),
            environment_id: "env_1".into(),
            deployment_id: "dep_1".into(),
        };
        let QueueError::Backend(text) = queue.send(&message).await.unwrap_err();
        assert!(text.contains(&queue_url), "{text}");
    }

    fn event(records: serde_json::Value) -> SqsEvent {
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    #[tokio::test]
    async fn batches_report_only_the_failed_records() {
        let batch = event(serde_json::json!([
            {"messageId": "m1", "body": "ok", "attributes": {"ApproximateReceiveCount": "3"}},
            {"messageId": "m2", "body": "fail", "attributes": {}},
            {"messageId": "m3", "body": "ok"},
        ]));
        let mut seen = Vec::new();
        let response = for_each_record(batch, |record| {
            seen.push((record.message_id.clone().unwrap(), receive_count(&record)));
            async move {
                match record.body.as_deref() {
                    Some("ok") => Ok(()),
                    _ => Err("refused".to_string()),
                }
            }
        })
        .await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["m2"]);
        assert_eq!(seen, [("m1".into(), 3), ("m2".into(), 1), ("m3".into(), 1)]);
    }

    #[tokio::test]
    async fn records_without_an_id_fail_the_whole_batch() {
        let batch = event(serde_json::json!([{"body": "x"}]));
        let response = for_each_record(batch, |_| async { Err("refused".to_string()) }).await;
        assert_eq!(response.batch_item_failures.len(), 1);
        assert_eq!(response.batch_item_failures[0].item_identifier, "");
    }
}
