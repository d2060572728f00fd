//! Feeds the EventBridge samples in `events/task-events/` through the task-events
//! handler, on a platform with the local adapters (the AWS ones have their own tests).

use std::path::PathBuf;
use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use envplane_aws::task_events::{handle_task_state_change, EcsTaskStateChange};
use envplane_core::auth::Caller;
use envplane_core::deployment::{Deployment, DeploymentStatus};
use envplane_core::ports::DeploymentMessage;
use envplane_core::service::DispatchOutcome;
use envplane_core::Platform;
use envplane_local::{Isolation, LocalConfig};
use envplane_testkit::seed::queued_deployment;

/// The ids the samples' `startedBy` and `group` name.
const SAMPLE_ORG: &str = "org_01jz8k4m2v6q9r3t5w7y1a3c5e";
const SAMPLE_DEPLOYMENT: &str = "dep_01jz8k6x2y4z6a8b0c2d4e6f8g";

struct Lambda {
    platform: Arc<Platform>,
    _data_dir: tempfile::TempDir,
}

/// A local installation whose sandboxes are `/bin/true`: a launch succeeds, and nobody
/// watches the exit, so only the events under test conclude a deployment.
fn lambda() -> Lambda {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = LocalConfig::new(data_dir.path().to_path_buf(), "http://127.0.0.1:1".into());
    config.runner_binary = PathBuf::from("/bin/true");
    config.isolation = Isolation::Unsafe;
    Lambda {
        platform: envplane_local::open(config).unwrap().platform,
        _data_dir: data_dir,
    }
}

/// A deployment created through the platform's API and dispatched: it runs in its
/// first sandbox.
async fn running_deployment(platform: &Platform) -> (Caller, DeploymentMessage) {
    let (caller, message) = queued_deployment(platform).await;
    assert!(matches!(
        platform.dispatch(&message).await.unwrap(),
        DispatchOutcome::Launched { .. }
    ));
    (caller, message)
}

/// Invokes the handler with `events/task-events/<name>`, its ids replaced by `ids`.
async fn invoke(lambda: &Lambda, name: &str, ids: Option<&DeploymentMessage>) {
    let path = format!(
        "{}/../../events/task-events/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut event = std::fs::read_to_string(path).unwrap();
    if let Some(ids) = ids {
        event = event
            .replace(SAMPLE_ORG, &ids.org_id)
            .replace(SAMPLE_DEPLOYMENT, &ids.deployment_id);
    }
    let event: EventBridgeEvent<EcsTaskStateChange> = serde_json::from_str(&event).unwrap();
    handle_task_state_change(&lambda.platform, event)
        .await
        .unwrap();
}

async fn deployment(lambda: &Lambda, caller: &Caller, id: &str) -> Deployment {
    lambda.platform.get_deployment(caller, id).await.unwrap()
}

#[tokio::test]
async fn a_sandbox_stopped_before_its_runner_started_is_queued_again_with_the_stop_reason() {
    let lambda = lambda();
    let (caller, message) = running_deployment(&lambda.platform).await;
    invoke(&lambda, "task-stopped.json", Some(&message)).await;
    let deployment = deployment(&lambda, &caller, &message.deployment_id).await;
    // The sandbox never asked for its job: another attempt follows.
    assert_eq!(deployment.status, DeploymentStatus::Queued);
    assert_eq!(
        deployment.reason.as_deref(),
        Some(
            "its sandbox failed to start (attempt 1 of 3; another follows): the sandbox \
             stopped before its runner started: EssentialContainerExited: Essential container \
             in task exited (exit code 1)"
        )
    );
}

#[tokio::test]
async fn running_and_foreign_tasks_are_ignored() {
    let lambda = lambda();
    let (caller, message) = running_deployment(&lambda.platform).await;
    invoke(&lambda, "task-running.json", Some(&message)).await;
    invoke(&lambda, "task-foreign.json", Some(&message)).await;
    let deployment = deployment(&lambda, &caller, &message.deployment_id).await;
    assert_eq!(deployment.status, DeploymentStatus::Running);
}

#[tokio::test]
async fn events_of_unknown_deployments_are_a_no_op() {
    let lambda = lambda();
    for name in [
        "task-stopped.json",
        "task-running.json",
        "task-foreign.json",
    ] {
        invoke(&lambda, name, None).await;
    }
}
