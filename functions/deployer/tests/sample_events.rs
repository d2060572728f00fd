//! Feeds the SQS sample batch in `events/deployer/` through the deployer's real handler,
//! on a platform with the local adapters (the AWS ones have their own tests).

use std::path::PathBuf;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use envplane_aws::deployer::{handle_batch, DEFAULT_REDRIVE_LIMIT};
use envplane_core::deployment::DeploymentStatus;
use envplane_core::ports::DeploymentMessage;
use envplane_core::Platform;
use envplane_local::{Isolation, LocalConfig, SqliteQueue, DATABASE_FILE};
use envplane_testkit::seed::queued_deployment;
use serde_json::json;

/// The ids the sample's well-formed record names.
const SAMPLE_ORG: &str = "org_01jz8k4m2v6q9r3t5w7y1a3c5e";
const SAMPLE_ENVIRONMENT: &str = "env_01jz8k5a7b9c1d3e5f7g9h1j3k";
const SAMPLE_DEPLOYMENT: &str = "dep_01jz8k6x2y4z6a8b0c2d4e6f8g";
const WELL_FORMED: &str = "059f36b4-87a3-44ab-83d2-661975830a7d";
const MALFORMED: &str = "2e1424d4-f796-459a-8184-9c92662be6da";

struct Lambda {
    platform: Arc<Platform>,
    queue: SqliteQueue,
    _data_dir: tempfile::TempDir,
}

/// A local installation whose sandboxes are `/bin/true`: a launch succeeds, and nobody
/// watches the exit, so a launched deployment stays running.
fn lambda() -> Lambda {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = LocalConfig::new(data_dir.path().to_path_buf(), "http://127.0.0.1:1".into());
    config.runner_binary = PathBuf::from("/bin/true");
    config.isolation = Isolation::Unsafe;
    let platform = envplane_local::open(config).unwrap().platform;
    let queue = SqliteQueue::open(&data_dir.path().join(DATABASE_FILE)).unwrap();
    Lambda {
        platform,
        queue,
        _data_dir: data_dir,
    }
}

/// Invokes the handler with `events/deployer/sqs-batch.json`, its ids replaced by `ids`.
async fn invoke(lambda: &Lambda, ids: Option<&DeploymentMessage>) -> SqsBatchResponse {
    let path = format!(
        "{}/../../events/deployer/sqs-batch.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut event = std::fs::read_to_string(path).unwrap();
    if let Some(ids) = ids {
        event = event
            .replace(SAMPLE_ORG, &ids.org_id)
            .replace(SAMPLE_ENVIRONMENT, &ids.environment_id)
            .replace(SAMPLE_DEPLOYMENT, &ids.deployment_id);
    }
    let event: SqsEvent = serde_json::from_str(&event).unwrap();
    handle_batch(
        &lambda.platform,
        &lambda.queue,
        event,
        DEFAULT_REDRIVE_LIMIT,
    )
    .await
}

fn failed(response: &SqsBatchResponse) -> Vec<&str> {
    response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.as_str())
        .collect()
}

#[tokio::test]
async fn the_sample_batch_returns_only_its_malformed_record() {
    let lambda = lambda();
    let response = invoke(&lambda, None).await;
    // The well-formed record names no deployment here: dispatching it is a no-op.
    assert_eq!(failed(&response), [MALFORMED]);
    assert!(!failed(&response).contains(&WELL_FORMED));
    let answer = serde_json::to_value(&response).unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": MALFORMED}]})
    );
}

#[tokio::test]
async fn the_sample_batch_launches_its_queued_deployment() {
    let lambda = lambda();
    let (caller, message) = queued_deployment(&lambda.platform).await;
    let response = invoke(&lambda, Some(&message)).await;
    assert_eq!(failed(&response), [MALFORMED]);
    let deployment = lambda
        .platform
        .get_deployment(&caller, &message.deployment_id)
        .await
        .unwrap();
    assert_eq!(deployment.status, DeploymentStatus::Running);
    assert_eq!(deployment.attempt, 1);
}
