//! The deployments queue on SQS, and the plumbing of SQS-triggered functions: partial
//! batch failures, with each record handled in its own span.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use envplane_core::ports::{
    DeploymentMessage, LaunchError, LaunchRequest, Launcher, Queue, QueueError,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::lazy::LazyClient;

/// The longest delay SQS allows on a message.
const MAX_DELAY_SECONDS: u64 = 900;

/// What the deployments queue carries, as JSON: a deployment to dispatch (the body is
/// the `DeploymentMessage` itself), or a cancelled deployment's sandbox to stop
/// (`{"stop_sandbox": {...}}`, sent by the api, which holds no ECS permission).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueueMessage {
    Dispatch(DeploymentMessage),
    StopSandbox { stop_sandbox: SandboxToStop },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxToStop {
    pub org_id: String,
    pub deployment_id: String,
    /// The sandbox's attempt; messages sent before it was named stop the current one.
    #[serde(default)]
    pub attempt: Option<u32>,
}

/// The `Queue` port on the SQS deployments queue.
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

    /// Sends `message` as JSON: a `DeploymentMessage` is its own body (`QueueMessage`
    /// reads it back as `Dispatch`), so no copy of it is wrapped first.
    async fn send_message(&self, message: &impl Serialize, delay: Duration) -> Result<(), String> {
        let body = serde_json::to_string(message)
            .map_err(|e| format!("cannot encode the message: {e}"))?;
        // SQS delays a message by at most 15 minutes.
        let delay_seconds = delay.as_secs().min(MAX_DELAY_SECONDS) as i32;
        self.client
            .get()
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay_seconds)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "SendMessage to {} failed: {}",
                    self.queue_url,
                    DisplayErrorContext(e)
                )
            })?;
        Ok(())
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send_after(
        &self,
        message: &DeploymentMessage,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.send_message(message, delay)
            .await
            .map_err(QueueError::Backend)
    }

    /// `SendMessageBatch`, ten at a time (SQS's most per call).
    async fn send_many(&self, messages: &[DeploymentMessage]) -> Result<(), QueueError> {
        for batch in messages.chunks(MAX_BATCH_MESSAGES) {
            let mut request = self
                .client
                .get()
                .send_message_batch()
                .queue_url(&self.queue_url);
            for (n, message) in batch.iter().enumerate() {
                let body = serde_json::to_string(message)
                    .map_err(|e| QueueError::Backend(format!("cannot encode the message: {e}")))?;
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|e| QueueError::Backend(e.to_string()))?;
                request = request.entries(entry);
            }
            let sent = request.send().await.map_err(|e| {
                QueueError::Backend(format!(
                    "SendMessageBatch to {} failed: {}",
                    self.queue_url,
                    DisplayErrorContext(e)
                ))
            })?;
            if let Some(failed) = sent.failed.first() {
                return Err(QueueError::Backend(format!(
                    "SendMessageBatch to {} refused {} of {} messages ({})",
                    self.queue_url,
                    sent.failed.len(),
                    batch.len(),
                    failed.code
                )));
            }
        }
        Ok(())
    }
}

/// The most messages one `SendMessageBatch` carries.
const MAX_BATCH_MESSAGES: usize = 10;

/// The api's launcher: it starts no sandbox (the deployer does), and a cancelled
/// deployment's sandbox is stopped by asking the deployer through the deployments
/// queue, so that the internet-facing function needs no ECS permission.
pub struct StopThroughQueue {
    queue: Arc<SqsQueue>,
}

impl StopThroughQueue {
    pub fn new(queue: Arc<SqsQueue>) -> Self {
        Self { queue }
    }
}

#[async_trait]
impl Launcher for StopThroughQueue {
    async fn launch(&self, _: LaunchRequest) -> Result<(), LaunchError> {
        Err(LaunchError::Failed(
            "the api starts no sandbox: the deployer does".into(),
        ))
    }

    /// The deployer reads the deployment's current attempt itself.
    async fn stop(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
    ) -> Result<(), LaunchError> {
        let stop_sandbox = SandboxToStop {
            org_id: org_id.into(),
            deployment_id: deployment_id.into(),
            attempt: Some(attempt),
        };
        self.queue
            .send_message(&QueueMessage::StopSandbox { stop_sandbox }, Duration::ZERO)
            .await
            .map_err(LaunchError::Failed)
    }
}

/// Reads a message body of the deployments queue. The body is never logged; an error
/// names only where the body went wrong.
pub fn queue_message(body: Option<&str>) -> Result<QueueMessage, String> {
    match body.map(serde_json::from_str) {
        Some(Ok(message)) => Ok(message),
        Some(Err(error)) => Err(format!(
            "the body is not a message of the deployments queue ({:?} error at line {}, column {})",
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
        assert_eq!(
            queue_message(Some(bodies[0])),
            Ok(QueueMessage::Dispatch(message))
        );
    }

    #[tokio::test]
    async fn messages_sent_together_all_arrive() {
        let client = aws_sdk_sqs::Client::new(&sdk_config().await);
        let queue_url = create_queue(&client, "envplane-deployments").await;
        let queue = SqsQueue::new(client.clone(), &queue_url);
        let messages: Vec<DeploymentMessage> = (0..23)
            .map(|n| DeploymentMessage {
                org_id: "org_1".into(),
                environment_id: format!("env_{n}"),
                deployment_id: format!("dep_{n}"),
            })
            .collect();
        queue.send_many(&messages).await.unwrap();
        let mut received = Vec::new();
        while received.len() < messages.len() {
            let batch = client
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            assert!(
                !batch.messages().is_empty(),
                "only {} arrived",
                received.len()
            );
            for message in batch.messages() {
                let body = message.body().unwrap();
                received.push(serde_json::from_str::<DeploymentMessage>(body).unwrap());
            }
        }
        received.sort_by_key(|m| m.deployment_id[4..].parse::<u32>().unwrap());
        assert_eq!(received, messages);
    }

    #[tokio::test]
    async fn a_stop_through_the_queue_is_a_stop_message() {
        let client = aws_sdk_sqs::Client::new(&sdk_config().await);
        let queue_url = create_queue(&client, "envplane-deployments").await;
        let launcher = StopThroughQueue::new(Arc::new(SqsQueue::new(client.clone(), &queue_url)));
        launcher.stop("org_1", "dep_1", 1).await.unwrap();

        let received = client
            .receive_message()
            .queue_url(&queue_url)
            .send()
            .await
            .unwrap();
        let body = received.messages()[0].body();
        assert_eq!(
            queue_message(body),
            Ok(QueueMessage::StopSandbox {
                stop_sandbox: SandboxToStop {
                    org_id: "org_1".into(),
                    deployment_id: "dep_1".into(),
                    attempt: Some(1),
                }
            })
        );
    }

    #[test]
    fn unreadable_bodies_name_where_they_went_wrong() {
        let error = queue_message(Some(r#"{"org_id": 1}"#)).unwrap_err();
        assert!(
            error.contains("not a message of the deployments queue"),
            "{error}"
        );
        assert!(!error.contains("org_id"), "the body is not echoed: {error}");
        assert_eq!(queue_message(None).unwrap_err(), "the record has no body");
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
