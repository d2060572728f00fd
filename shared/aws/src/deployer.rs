//! λ deployer's behaviour: each record of an SQS batch from the deployments queue is
//! one dispatch, or the stop of a cancelled deployment's sandbox that the api asked for.
//! Records that should be tried again (a malformed body, a dispatch error, no free
//! sandbox slot) go back to the queue as batch item failures, to be delivered again
//! after the queue's visibility timeout; the others are deleted.
//!
//! On the last delivery before the redrive policy moves a record to the dead-letter
//! queue (`redrive_limit`, the queue's `maxReceiveCount`), a deployment that still
//! cannot be dispatched fails with the reason, so nobody waits for it forever. Waiting
//! for a free sandbox slot is not a failure: on its last delivery such a record is sent
//! again as a fresh message instead, and keeps its place in line for as long as it takes.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use envplane_core::ports::Queue;
use envplane_core::service::DispatchOutcome;
use envplane_core::Platform;

use crate::sqs::{for_each_record, queue_message, receive_count, QueueMessage, SandboxToStop};

/// The queue's redrive policy `maxReceiveCount` when `ENVPLANE_REDRIVE_LIMIT` is unset.
pub const DEFAULT_REDRIVE_LIMIT: u32 = 5;

/// Dispatches every deployment message of the batch; returns the records to deliver
/// again. `queue` is the deployments queue the batch came from.
pub async fn handle_batch(
    platform: &Platform,
    queue: &dyn Queue,
    event: SqsEvent,
    redrive_limit: u32,
) -> SqsBatchResponse {
    for_each_record(event, |record| {
        handle_record(platform, queue, record, redrive_limit)
    })
    .await
}

async fn handle_record(
    platform: &Platform,
    queue: &dyn Queue,
    record: SqsMessage,
    redrive_limit: u32,
) -> Result<(), String> {
    let message = match queue_message(record.body.as_deref())? {
        QueueMessage::Dispatch(message) => message,
        QueueMessage::StopSandbox { stop_sandbox } => {
            let SandboxToStop {
                org_id,
                deployment_id,
                attempt,
            } = &stop_sandbox;
            tracing::Span::current().record("deployment_id", deployment_id.as_str());
            return platform
                .stop_unwanted_sandbox(org_id, deployment_id, *attempt)
                .await
                .map_err(|error| format!("stopping the deployment's sandbox failed: {error}"));
        }
    };
    tracing::Span::current().record("deployment_id", message.deployment_id.as_str());
    let receives = receive_count(&record);
    let last_delivery = receives >= redrive_limit;
    let failure = match platform.dispatch(&message).await {
        Ok(DispatchOutcome::AtCapacity) if last_delivery => match queue.send(&message).await {
            Ok(()) => {
                tracing::info!("no free sandbox slot yet; queued again as a fresh message");
                return Ok(());
            }
            Err(error) => format!(
                "no sandbox slot was free, and queueing the deployment again failed: {error}"
            ),
        },
        Ok(DispatchOutcome::AtCapacity) => {
            return Err("no free sandbox slot; delivered again after the visibility timeout".into())
        }
        // The active region adopts what was queued when it took over; this region's
        // copy of the message goes back until then, and is dropped (never failing the
        // deployment, which is not this region's to end) on its last delivery.
        Ok(DispatchOutcome::Passive) if last_delivery => {
            tracing::info!("this region is passive; last delivery dropped");
            return Ok(());
        }
        Ok(DispatchOutcome::Passive) => {
            return Err(
                "this region is passive; delivered again after the visibility timeout".into(),
            )
        }
        Ok(outcome) => {
            tracing::info!(?outcome, "dispatched");
            return Ok(());
        }
        Err(error) => format!("dispatching failed: {error}"),
    };
    if last_delivery {
        let reason = format!(
            "the deployment could not be started after {receives} deliveries of its queue message: {failure}"
        );
        tracing::error!(%reason, "last delivery; the message moves to the dead-letter queue");
        if let Err(error) = platform.dead_lettered(&message, &reason).await {
            tracing::error!(%error, "failing the dead-lettered deployment failed");
        }
    }
    Err(failure)
}

#[cfg(test)]
pub(crate) mod fixture {
    //! A platform on local adapters with one queued deployment, the fault kit's
    //! stand-ins for the queue and the launcher the AWS handlers drive, and a store
    //! that can be made to fail.

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use envplane_core::auth::Caller;
    use envplane_core::deployment::Deployment;
    use envplane_core::ports::{
        DeploymentMessage, IndexQuery, Kind, ListQuery, Page, Record, Store, StoreError,
        SystemClock, WriteOp,
    };
    use envplane_core::service::Ports;
    pub use envplane_core::service::Settings;
    use envplane_core::Platform;
    use envplane_local::{FileArtifacts, FileKeyRing, SqliteStore};
    use envplane_testkit::faults::{FaultyLauncher, FaultyQueue};
    use envplane_testkit::seed::queued_deployment;

    /// Fails the cross-organization index reads, which dispatch needs and concluding a
    /// deployment does not, while `down` is set; answers the next `conflicts` commits
    /// with a conflict, as a write another request made first would.
    pub struct FlakyStore {
        inner: SqliteStore,
        pub down: AtomicBool,
        pub conflicts: AtomicUsize,
    }

    #[async_trait]
    impl Store for FlakyStore {
        async fn get(
            &self,
            kind: Kind,
            org_id: &str,
            id: &str,
        ) -> Result<Option<Record>, StoreError> {
            self.inner.get(kind, org_id, id).await
        }
        async fn find_unique(&self, kind: Kind, key: &str) -> Result<Option<Record>, StoreError> {
            self.inner.find_unique(kind, key).await
        }
        async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
            self.inner.list(query).await
        }
        async fn list_indexed(&self, query: IndexQuery) -> Result<Page, StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Backend("the table is unavailable".into()));
            }
            self.inner.list_indexed(query).await
        }
        async fn commit(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
            let pending = self.conflicts.load(Ordering::SeqCst);
            if pending > 0 {
                self.conflicts.store(pending - 1, Ordering::SeqCst);
                return Err(StoreError::Conflict);
            }
            self.inner.commit(ops).await
        }
    }

    pub struct Fixture {
        pub platform: Arc<Platform>,
        pub store: Arc<FlakyStore>,
        pub launcher: Arc<FaultyLauncher>,
        pub queue: Arc<FaultyQueue>,
        pub caller: Caller,
        pub message: DeploymentMessage,
        _data_dir: tempfile::TempDir,
    }

    impl Fixture {
        /// A platform allowing `max_parallel_deployments`, with one queued deployment.
        pub async fn new(max_parallel_deployments: usize) -> Self {
            Self::with(Settings {
                max_parallel_deployments,
                ..Settings::default()
            })
            .await
        }

        /// A platform with `settings`, with one queued deployment.
        pub async fn with(settings: Settings) -> Self {
            let data_dir = tempfile::tempdir().unwrap();
            let store = Arc::new(FlakyStore {
                inner: SqliteStore::open(&data_dir.path().join("envplane.db")).unwrap(),
                down: AtomicBool::new(false),
                conflicts: AtomicUsize::new(0),
            });
            let launcher = Arc::new(FaultyLauncher::default());
            let queue = Arc::new(FaultyQueue::default());
            let ports = Ports {
                store: store.clone(),
                key_ring: Arc::new(
                    FileKeyRing::open_or_create(&data_dir.path().join("master.key")).unwrap(),
                ),
                clock: Arc::new(SystemClock),
                queue: queue.clone(),
                launcher: launcher.clone(),
                artifacts: Arc::new(FileArtifacts::new(data_dir.path().join("artifacts"))),
                vcs: Arc::new(envplane_core::ports::Unwired),
                reports: Arc::new(envplane_core::ports::Unwired),
                notifier: Arc::new(envplane_core::ports::Unwired),
                sender: Arc::new(envplane_core::ports::Unwired),
                spend: Arc::new(envplane_core::ports::Unwired),
            };
            let platform = Arc::new(Platform::new(ports, settings));
            let (caller, message) = queued_deployment(&platform).await;
            queue.take();
            Self {
                platform,
                store,
                launcher,
                queue,
                caller,
                message,
                _data_dir: data_dir,
            }
        }

        pub async fn deployment(&self) -> Deployment {
            self.platform
                .get_deployment(&self.caller, &self.message.deployment_id)
                .await
                .unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::fixture::{Fixture, Settings};
    use super::*;
    use envplane_core::deployment::DeploymentStatus;
    use serde_json::json;

    fn record(id: &str, body: serde_json::Value, receives: u32) -> serde_json::Value {
        json!({
            "messageId": id,
            "body": body.as_str().map(str::to_string).unwrap_or_else(|| body.to_string()),
            "attributes": {"ApproximateReceiveCount": receives.to_string()},
            "eventSource": "aws:sqs",
        })
    }

    fn batch(records: Vec<serde_json::Value>) -> SqsEvent {
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    fn failed(response: &SqsBatchResponse) -> Vec<&str> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    impl Fixture {
        async fn deliver(&self, receives: u32, redrive_limit: u32) -> SqsBatchResponse {
            let message = serde_json::to_value(&self.message).unwrap();
            let event = batch(vec![record("m1", message, receives)]);
            handle_batch(&self.platform, self.queue.as_ref(), event, redrive_limit).await
        }
    }

    #[tokio::test]
    async fn a_queued_deployment_is_launched_and_its_record_deleted() {
        let fixture = Fixture::new(4).await;
        let response = fixture.deliver(1, DEFAULT_REDRIVE_LIMIT).await;
        assert!(failed(&response).is_empty());
        assert_eq!(
            fixture.launcher.launched(),
            [(fixture.message.deployment_id.clone(), 1)]
        );
        assert_eq!(fixture.deployment().await.status, DeploymentStatus::Running);

        // A redelivery of the same message starts nothing more.
        let response = fixture.deliver(2, DEFAULT_REDRIVE_LIMIT).await;
        assert!(failed(&response).is_empty());
        assert_eq!(fixture.launcher.launched().len(), 1);
    }

    #[tokio::test]
    async fn only_the_records_to_try_again_return_to_the_queue() {
        let fixture = Fixture::new(4).await;
        let message = serde_json::to_value(&fixture.message).unwrap();
        let unknown =
            json!({"org_id": "org_x", "environment_id": "env_x", "deployment_id": "dep_x"});
        let response = handle_batch(
            &fixture.platform,
            fixture.queue.as_ref(),
            batch(vec![
                record("m1", json!("{\"deployment_id\": \"dep_1\""), 1),
                record("m2", message, 1),
                record("m3", json!({"hello": "world"}), 5),
                record("m4", unknown, 1),
                json!({"messageId": "m5", "attributes": {}}),
            ]),
            DEFAULT_REDRIVE_LIMIT,
        )
        .await;
        assert_eq!(failed(&response), ["m1", "m3", "m5"]);
        assert_eq!(fixture.launcher.launched().len(), 1);
    }

    #[tokio::test]
    async fn at_capacity_the_record_returns_and_is_queued_afresh_on_its_last_delivery() {
        let fixture = Fixture::new(0).await;
        let response = fixture.deliver(4, 5).await;
        assert_eq!(failed(&response), ["m1"]);
        assert!(fixture.queue.sent().is_empty());

        let response = fixture.deliver(5, 5).await;
        assert!(failed(&response).is_empty());
        assert_eq!(fixture.queue.take(), std::slice::from_ref(&fixture.message));
        assert_eq!(fixture.deployment().await.status, DeploymentStatus::Queued);
        assert!(fixture.launcher.launched().is_empty());
    }

    /// A passive region's deployer hands a record back, and on its last delivery drops
    /// it: the deployment is the active region's to start, never this one's to fail.
    #[tokio::test]
    async fn a_passive_region_hands_records_back_and_never_fails_their_deployment() {
        use envplane_core::region::{RegionName, Regions};
        use envplane_core::service::{fail_over, FlipRequest, RegionStores};

        let west = RegionName::parse("eu-west-1").unwrap();
        let fixture = Fixture::with(Settings {
            regions: Some(Regions {
                this: west.clone(),
                home: west.clone(),
                cache_for: std::time::Duration::ZERO,
            }),
            ..Settings::default()
        })
        .await;
        // The deployment was queued here; then the other region took over.
        let store: &dyn envplane_core::ports::Store = fixture.store.as_ref();
        let request = FlipRequest {
            to: RegionName::parse("eu-central-1").unwrap(),
            home: west,
            max_lag: std::time::Duration::from_secs(5),
            force: false,
            by: "test".into(),
        };
        let stores = RegionStores {
            active: Some(store),
            target: store,
        };
        let clock = envplane_core::ports::SystemClock;
        fail_over(stores, &request, &clock).await.unwrap();
        let response = fixture.deliver(4, 5).await;
        assert_eq!(failed(&response), ["m1"]);
        let response = fixture.deliver(5, 5).await;
        assert!(failed(&response).is_empty());
        assert_eq!(fixture.deployment().await.status, DeploymentStatus::Queued);
        assert!(fixture.launcher.launched().is_empty());
        assert!(fixture.queue.sent().is_empty());
    }

    #[tokio::test]
    async fn at_capacity_on_the_last_delivery_without_a_queue_the_deployment_fails() {
        let fixture = Fixture::new(0).await;
        fixture.queue.down.store(true, Ordering::SeqCst);
        let response = fixture.deliver(5, 5).await;
        assert_eq!(failed(&response), ["m1"]);
        let deployment = fixture.deployment().await;
        assert_eq!(deployment.status, DeploymentStatus::Failed);
        let reason = deployment.reason.unwrap();
        assert!(reason.contains("after 5 deliveries"), "{reason}");
        assert!(reason.contains("the queue is unavailable"), "{reason}");
    }

    #[tokio::test]
    async fn dispatch_errors_return_the_record_and_fail_the_deployment_on_the_last_delivery() {
        let fixture = Fixture::new(4).await;
        fixture.store.down.store(true, Ordering::SeqCst);
        let response = fixture.deliver(1, 2).await;
        assert_eq!(failed(&response), ["m1"]);
        assert_eq!(fixture.deployment().await.status, DeploymentStatus::Queued);

        let response = fixture.deliver(2, 2).await;
        assert_eq!(failed(&response), ["m1"]);
        let deployment = fixture.deployment().await;
        assert_eq!(deployment.status, DeploymentStatus::Failed);
        let reason = deployment.reason.unwrap();
        assert!(reason.contains("after 2 deliveries"), "{reason}");
        assert!(reason.contains("the table is unavailable"), "{reason}");
        assert!(fixture.launcher.launched().is_empty());
    }

    #[tokio::test]
    async fn a_stop_message_stops_only_a_cancelled_running_sandbox() {
        let fixture = Fixture::new(4).await;
        fixture.deliver(1, DEFAULT_REDRIVE_LIMIT).await;
        let id = fixture.message.deployment_id.clone();
        let stop = json!({"stop_sandbox": {"org_id": fixture.message.org_id, "deployment_id": id}});
        let deliver_stop = || {
            let event = batch(vec![record("m2", stop.clone(), 1)]);
            handle_batch(
                &fixture.platform,
                fixture.queue.as_ref(),
                event,
                DEFAULT_REDRIVE_LIMIT,
            )
        };

        // Not cancelled: a stray stop message stops nothing.
        assert!(failed(&deliver_stop().await).is_empty());
        assert!(fixture.launcher.stopped().is_empty());

        fixture
            .platform
            .cancel_deployment(&fixture.caller, &id, false)
            .await
            .unwrap();
        fixture.launcher.forget_stops();
        assert!(failed(&deliver_stop().await).is_empty());
        assert_eq!(fixture.launcher.stopped(), [(id, 1)]);
    }

    #[tokio::test]
    async fn a_cancel_that_meets_another_write_reads_again() {
        let fixture = Fixture::new(4).await;
        fixture.deliver(1, DEFAULT_REDRIVE_LIMIT).await;
        let id = fixture.message.deployment_id.clone();
        // The runner's step report lands between the cancel's read and its write.
        fixture.store.conflicts.store(1, Ordering::SeqCst);
        let cancelled = fixture
            .platform
            .cancel_deployment(&fixture.caller, &id, false)
            .await
            .unwrap();
        assert!(cancelled.cancel_requested);
        assert_eq!(fixture.launcher.stopped(), [(id, 1)]);
    }
}
