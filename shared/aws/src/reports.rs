//! Pull request reports on AWS: whoever ends a deployment (the api on a runner's report,
//! task-events, the reaper) sends a message to the reports queue; λ reporter, the one
//! function besides λ webhook that speaks to GitHub, makes the report. A report GitHub
//! cannot take returns to the queue and is tried again; it never holds a deployment up.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::error::DisplayErrorContext;
use envplane_core::ports::{ReportRequest, Reports};
use envplane_core::Platform;

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

/// Makes the report each record asks for; a record whose report failed returns to the
/// queue (and, after the redrive limit, to its dead-letter queue).
pub async fn handle_reports(platform: &Platform, event: SqsEvent) -> SqsBatchResponse {
    for_each_record(event, |record| async move {
        let request: ReportRequest = record
            .body
            .as_deref()
            .map(serde_json::from_str)
            .ok_or("the record has no body")?
            .map_err(|error| {
                format!(
                    "the body is not a report request ({:?} error)",
                    error.classify()
                )
            })?;
        platform
            .report_pull_request(&request)
            .await
            .map_err(|error| format!("the report failed: {error}"))
    })
    .await
}
