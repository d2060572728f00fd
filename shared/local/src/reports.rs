//! Pull request reports in this process: asked for on a channel, made one at a time by
//! a background loop, so whoever asked (a runner's final report) never waits for GitHub.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use envplane_core::ports::{ReportRequest, Reports};
use envplane_core::Platform;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

pub struct ChannelReports {
    requests: UnboundedSender<ReportRequest>,
}

impl ChannelReports {
    pub fn new() -> (Self, UnboundedReceiver<ReportRequest>) {
        let (requests, received) = unbounded_channel();
        (Self { requests }, received)
    }
}

#[async_trait]
impl Reports for ChannelReports {
    async fn request(&self, request: ReportRequest) {
        // Closed only when the process stops; the report's next change asks again.
        let _ = self.requests.send(request);
    }
}

/// Makes the reports asked for; requests for one pull request that wait together are
/// made once (a report always shows the latest of everything).
pub(crate) async fn report_loop(
    platform: Arc<Platform>,
    mut requests: UnboundedReceiver<ReportRequest>,
) {
    while let Some(first) = requests.recv().await {
        let mut batch = BTreeSet::from([(first.org_id, first.pull_request_id)]);
        while let Ok(more) = requests.try_recv() {
            batch.insert((more.org_id, more.pull_request_id));
        }
        for (org_id, pull_request_id) in batch {
            let request = ReportRequest {
                org_id,
                pull_request_id,
            };
            if let Err(error) = platform.report_pull_request(&request).await {
                tracing::warn!(pull_request = %request.pull_request_id, %error, "the pull request report could not be made");
            }
        }
    }
}
