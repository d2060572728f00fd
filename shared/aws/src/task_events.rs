//! The task-events function's work: an ECS task of a deployment that STOPPED while the
//! deployment still waited for its result fails the deployment with the stop code and
//! reason (the platform ignores the event when the runner had already reported).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use envplane_core::Platform;
use serde::{Deserialize, Serialize};

/// The launcher names every task with these; they are parsed back here.
pub use crate::ecs::{group, started_by};
use crate::ecs::{parse_group, parse_started_by};

/// The detail of an EventBridge "ECS Task State Change" event, the fields used here.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsTaskStateChange {
    #[serde(default)]
    pub task_arn: String,
    #[serde(default)]
    pub last_status: String,
    #[serde(default)]
    pub started_by: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub stop_code: Option<String>,
    #[serde(default)]
    pub stopped_reason: Option<String>,
    #[serde(default)]
    pub containers: Vec<EcsContainer>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsContainer {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
}

/// Which deployment sandbox a task was, read from its `startedBy` and `group`.
#[derive(Debug, PartialEq, Eq)]
pub struct SandboxTask {
    pub org_id: String,
    pub deployment_id: String,
    pub attempt: u32,
}

impl EcsTaskStateChange {
    /// `None` for tasks envplane did not start.
    pub fn sandbox(&self) -> Option<SandboxTask> {
        let (deployment_id, attempt) = parse_started_by(self.started_by.as_deref()?)?;
        let org_id = parse_group(self.group.as_deref()?)?;
        Some(SandboxTask {
            org_id: org_id.to_string(),
            deployment_id: deployment_id.to_string(),
            attempt,
        })
    }

    /// "EssentialContainerExited: Essential container in task exited (exit code 137)".
    pub fn description(&self) -> String {
        let code = self.stop_code.as_deref().unwrap_or("Stopped");
        let reason = self.stopped_reason.as_deref().unwrap_or("the task stopped");
        match self
            .containers
            .iter()
            .find_map(|container| container.exit_code)
        {
            Some(exit_code) => format!("{code}: {reason} (exit code {exit_code})"),
            None => format!("{code}: {reason}"),
        }
    }
}

/// Handles one event; events of other tasks and of tasks still running are ignored.
pub async fn handle_task_state_change(
    platform: &Platform,
    event: EventBridgeEvent<EcsTaskStateChange>,
) -> Result<(), envplane_core::Error> {
    let detail = event.detail;
    let Some(sandbox) = detail.sandbox() else {
        tracing::debug!(task = %detail.task_arn, "not an envplane sandbox");
        return Ok(());
    };
    if detail.last_status != "STOPPED" {
        return Ok(());
    }
    tracing::info!(deployment_id = %sandbox.deployment_id, task = %detail.task_arn, "sandbox stopped");
    platform
        .sandbox_stopped(
            &sandbox.org_id,
            &sandbox.deployment_id,
            sandbox.attempt,
            &detail.description(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(started_by: &str, group: &str) -> EcsTaskStateChange {
        EcsTaskStateChange {
            last_status: "STOPPED".into(),
            started_by: Some(started_by.into()),
            group: Some(group.into()),
            stop_code: Some("EssentialContainerExited".into()),
            stopped_reason: Some("Essential container in task exited".into()),
            containers: vec![EcsContainer {
                name: "runner".into(),
                exit_code: Some(137),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn sandboxes_are_recognised_by_started_by_and_group() {
        let sandbox = change(&started_by("dep_01abc", 2), &group("org_01xyz"))
            .sandbox()
            .unwrap();
        assert_eq!(
            sandbox,
            SandboxTask {
                org_id: "org_01xyz".into(),
                deployment_id: "dep_01abc".into(),
                attempt: 2
            }
        );
        assert!(change("ecs-svc/123", "service:web").sandbox().is_none());
        assert!(change("dep_01abc.x", "envplane:org_1").sandbox().is_none());
        assert!(change("dep_01abc.1", "family:runner").sandbox().is_none());
    }

    #[test]
    fn the_description_names_code_reason_and_exit_code() {
        let description = change("dep_1.1", "envplane:org_1").description();
        assert_eq!(
            description,
            "EssentialContainerExited: Essential container in task exited (exit code 137)"
        );
    }

    mod handler {
        use super::*;
        use crate::deployer::fixture::Fixture;
        use envplane_core::deployment::DeploymentStatus;
        use envplane_core::secrecy::ExposeSecret;
        use envplane_core::service::TokenScope;

        /// A fixture whose deployment runs in its first sandbox, not started yet.
        async fn launched() -> Fixture {
            let fixture = Fixture::new(4).await;
            fixture.platform.dispatch(&fixture.message).await.unwrap();
            assert_eq!(fixture.deployment().await.status, DeploymentStatus::Running);
            fixture
        }

        /// A fixture whose deployment runs in its first sandbox, whose runner started.
        async fn running() -> Fixture {
            let fixture = launched().await;
            let token = fixture
                .launcher
                .launch_token(&fixture.message.deployment_id)
                .unwrap();
            let launch = fixture
                .platform
                .authenticate_runner(token.expose_secret(), &[TokenScope::Launch])
                .await
                .unwrap();
            fixture.platform.start_session(&launch).await.unwrap();
            fixture
        }

        fn event(detail: EcsTaskStateChange) -> EventBridgeEvent<EcsTaskStateChange> {
            let mut event: EventBridgeEvent<EcsTaskStateChange> =
                serde_json::from_value(serde_json::json!({
                    "detail-type": "ECS Task State Change",
                    "source": "aws.ecs",
                    "detail": {"lastStatus": "STOPPED"},
                }))
                .unwrap();
            event.detail = detail;
            event
        }

        fn of(fixture: &Fixture, attempt: u32) -> EcsTaskStateChange {
            change(
                &started_by(&fixture.message.deployment_id, attempt),
                &group(&fixture.message.org_id),
            )
        }

        #[tokio::test]
        async fn a_stopped_sandbox_fails_its_running_deployment() {
            let fixture = running().await;
            handle_task_state_change(&fixture.platform, event(of(&fixture, 1)))
                .await
                .unwrap();
            let deployment = fixture.deployment().await;
            assert_eq!(deployment.status, DeploymentStatus::Failed);
            assert_eq!(
                deployment.reason.unwrap(),
                "the sandbox stopped before reporting a result: EssentialContainerExited: \
                 Essential container in task exited (exit code 137)"
            );
        }

        #[tokio::test]
        async fn a_sandbox_stopped_before_its_runner_started_gets_another_attempt() {
            let fixture = launched().await;
            handle_task_state_change(&fixture.platform, event(of(&fixture, 1)))
                .await
                .unwrap();
            let deployment = fixture.deployment().await;
            assert_eq!(
                (deployment.status, deployment.start_failures),
                (DeploymentStatus::Queued, 1)
            );
            assert_eq!(fixture.queue.take(), std::slice::from_ref(&fixture.message));
            fixture.platform.dispatch(&fixture.message).await.unwrap();
            assert_eq!(fixture.deployment().await.attempt, 2);
        }

        #[tokio::test]
        async fn other_events_change_nothing() {
            let fixture = running().await;
            let mut still_running = of(&fixture, 1);
            still_running.last_status = "RUNNING".into();
            let other_attempt = of(&fixture, 2);
            let other_org = change(
                &started_by(&fixture.message.deployment_id, 1),
                &group("org_someone_else"),
            );
            let foreign = change("ecs-svc/1234567890", "service:web");
            let unknown = change(
                &started_by("dep_unknown", 1),
                &group(&fixture.message.org_id),
            );
            for detail in [still_running, other_attempt, other_org, foreign, unknown] {
                handle_task_state_change(&fixture.platform, event(detail))
                    .await
                    .unwrap();
            }
            assert_eq!(fixture.deployment().await.status, DeploymentStatus::Running);
        }
    }
}
