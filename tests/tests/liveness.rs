//! Liveness under faults, in milliseconds: the platform on SQLite with the fault kit's
//! queue, launcher and clock, and a test that plays the dispatcher, the sandboxes and
//! the watchdog's schedule. Whatever is lost, repeated, refused or silent, every
//! deployment ends with a reason, frees its environment and never has two sandboxes
//! for one phase.

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Minutes;
use envplane_core::auth::Caller;
use envplane_core::deployment::{Deployment, DeploymentStatus, PhaseReport, PhaseResult};
use envplane_core::ports::DeploymentMessage;
use envplane_core::secrecy::ExposeSecret;
use envplane_core::service::{DispatchOutcome, Ports, Runner, Settings, TokenScope, Watchdog};
use envplane_core::Platform;
use envplane_local::{FileArtifacts, FileKeyRing, SqliteStore};
use envplane_testkit::faults::{FaultyLauncher, FaultyQueue, LaggingStore, ManualClock};
use serde_json::json;

struct Kit {
    platform: Platform,
    store: Arc<LaggingStore>,
    queue: Arc<FaultyQueue>,
    launcher: Arc<FaultyLauncher>,
    clock: Arc<ManualClock>,
    caller: Caller,
    project_id: String,
    template_id: String,
    _data_dir: tempfile::TempDir,
}

fn from<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

impl Kit {
    async fn new(max_parallel_deployments: usize) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&data_dir.path().join("envplane.db")).unwrap();
        let store = Arc::new(LaggingStore::new(Arc::new(sqlite)));
        let (queue, launcher) = (
            Arc::new(FaultyQueue::default()),
            Arc::new(FaultyLauncher::default()),
        );
        let clock = Arc::new(ManualClock::default());
        let ports = Ports {
            store: store.clone(),
            key_ring: Arc::new(
                FileKeyRing::open_or_create(&data_dir.path().join("master.key")).unwrap(),
            ),
            clock: clock.clone(),
            queue: queue.clone(),
            launcher: launcher.clone(),
            artifacts: Arc::new(FileArtifacts::new(data_dir.path().join("artifacts"))),
        };
        let settings = Settings {
            max_parallel_deployments,
            ..Settings::default()
        };
        let platform = Platform::new(ports, settings);
        let key = platform.bootstrap().await.unwrap().unwrap();
        let caller = platform
            .authenticate(key.expose_secret(), "test")
            .await
            .unwrap();
        let project = platform
            .create_project(&caller, from(json!({"name": "payments"})))
            .await
            .unwrap();
        let template = platform
            .create_template(
                &caller,
                from(json!({
                    "name": "network", "project_id": project.id,
                    "repository": "https://github.com/acme/infra.git", "iac_version": "1.9.8",
                })),
            )
            .await
            .unwrap();
        Self {
            platform,
            store,
            queue,
            launcher,
            clock,
            caller,
            project_id: project.id,
            template_id: template.id,
            _data_dir: data_dir,
        }
    }

    async fn environment(&self, name: &str) -> String {
        let body =
            json!({"name": name, "project_id": self.project_id, "template_id": self.template_id});
        self.platform
            .create_environment(&self.caller, from(body))
            .await
            .unwrap()
            .id
    }

    /// Queues a plan of the environment; its message stays in the queue.
    async fn deploy(&self, environment_id: &str) -> String {
        let body = json!({"action": "plan"});
        self.platform
            .create_deployment(&self.caller, environment_id, from(body))
            .await
            .unwrap()
            .id
    }

    async fn deployment(&self, id: &str) -> Deployment {
        self.platform
            .get_deployment(&self.caller, id)
            .await
            .unwrap()
    }

    /// Delivers every message sent so far (whatever its delay), once each.
    async fn deliver(&self) -> Vec<DispatchOutcome> {
        let mut outcomes = Vec::new();
        for message in self.queue.take() {
            outcomes.push(self.platform.dispatch(&message).await.unwrap());
        }
        outcomes
    }

    /// Plays the sandbox of the deployment's newest launch: trades its credential.
    async fn start_runner(&self, deployment_id: &str) -> Runner {
        let token = self.launcher.launch_token(deployment_id).expect("launched");
        let launch = self
            .platform
            .authenticate_runner(token.expose_secret(), &[TokenScope::Launch])
            .await
            .unwrap();
        let session = self.platform.start_session(&launch).await.unwrap();
        self.platform
            .authenticate_runner(&session.runner_token, &[TokenScope::Runner])
            .await
            .unwrap()
    }

    async fn finish(&self, runner: &Runner, result: PhaseResult) -> Deployment {
        let report = PhaseReport {
            result,
            reason: Some("the runner said so".into()),
            plan_summary: None,
            commit: None,
            outputs: None,
        };
        self.platform.finish_phase(runner, report).await.unwrap()
    }

    async fn watchdog_after(&self, minutes: i64) -> Watchdog {
        self.clock.advance(Minutes::minutes(minutes));
        self.platform.run_watchdog().await.unwrap()
    }
}

fn message_of(kit: &Kit, environment_id: &str, deployment_id: &str) -> DeploymentMessage {
    DeploymentMessage {
        org_id: kit.caller.org_id.clone(),
        environment_id: environment_id.into(),
        deployment_id: deployment_id.into(),
    }
}

#[tokio::test]
async fn a_dispatcher_that_dies_between_commit_and_launch_leaves_nothing_stuck() {
    let kit = Kit::new(4).await;
    let environment = kit.environment("staging").await;
    let id = kit.deploy(&environment).await;
    let message = kit.queue.take().pop().unwrap();
    kit.launcher
        .dies
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let dispatch = kit.platform.dispatch(&message);
    assert!(tokio::time::timeout(Duration::from_millis(200), dispatch)
        .await
        .is_err());
    kit.launcher
        .dies
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let stuck = kit.deployment(&id).await;
    assert_eq!(
        (stuck.status, stuck.attempt, stuck.launched_at),
        (DeploymentStatus::Running, 1, None)
    );

    // Within the launch window nothing happens; past it, another attempt follows.
    assert_eq!(kit.watchdog_after(1).await, Watchdog::default());
    let round = kit.watchdog_after(2).await;
    assert_eq!(round.restarted, 1, "{round:?}");
    let requeued = kit.deployment(&id).await;
    assert_eq!(
        (requeued.status, requeued.start_failures),
        (DeploymentStatus::Queued, 1)
    );
    assert_eq!(kit.launcher.stopped(), [(id.clone(), 1)]);
    let sent = kit.queue.sent();
    assert_eq!(sent.len(), 1, "one message, after a backoff: {sent:?}");
    assert_eq!(sent[0].1, Duration::from_secs(2));
    // A second watchdog at the same time decides nothing more.
    assert_eq!(
        kit.platform.run_watchdog().await.unwrap(),
        Watchdog::default()
    );

    assert!(matches!(
        kit.deliver().await[..],
        [DispatchOutcome::Launched { .. }]
    ));
    assert_eq!(
        kit.launcher.launched(),
        [(id.clone(), 2)],
        "attempt 1 never ran"
    );
    let runner = kit.start_runner(&id).await;
    let done = kit.finish(&runner, PhaseResult::Succeeded).await;
    assert_eq!(done.status, DeploymentStatus::Succeeded);
}

#[tokio::test]
async fn a_sandbox_refused_for_capacity_is_retried_twice_then_fails_with_the_reason() {
    let kit = Kit::new(4).await;
    let environment = kit.environment("staging").await;
    let id = kit.deploy(&environment).await;
    let next = kit.deploy(&environment).await;
    kit.launcher
        .refuse
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let mut delays = Vec::new();
    for _ in 0..3 {
        let outcomes = kit.deliver().await;
        assert!(
            outcomes.contains(&DispatchOutcome::LaunchFailed {
                deployment_id: id.clone()
            }),
            "{outcomes:?}"
        );
        delays.extend(
            kit.queue
                .sent()
                .iter()
                .filter(|(m, _)| m.deployment_id == id)
                .map(|(_, delay)| delay.as_secs()),
        );
    }
    assert_eq!(delays, [2, 8], "each retry waits longer");
    let failed = kit.deployment(&id).await;
    assert_eq!(failed.status, DeploymentStatus::Failed);
    assert_eq!(failed.attempt, 3, "each try its own attempt and credential");
    let reason = failed.reason.unwrap();
    assert!(
        reason.starts_with("its sandbox could not start (3 attempts): no capacity"),
        "{reason}"
    );
    // The environment is free: the next deployment starts.
    assert!(kit.deliver().await.contains(&DispatchOutcome::Launched {
        deployment_id: next
    }));
}

#[tokio::test]
async fn a_sandbox_refused_once_starts_on_its_second_attempt() {
    let kit = Kit::new(4).await;
    let environment = kit.environment("staging").await;
    let id = kit.deploy(&environment).await;
    kit.launcher
        .refuse
        .store(1, std::sync::atomic::Ordering::SeqCst);
    kit.deliver().await;
    // Another deployment of the environment may not take it meanwhile.
    let later = kit.deploy(&environment).await;
    let outcomes = kit.deliver().await;
    assert!(
        outcomes.contains(&DispatchOutcome::Launched {
            deployment_id: id.clone()
        }),
        "{outcomes:?}"
    );
    assert_eq!(kit.launcher.launched(), [(id.clone(), 2)]);
    assert_eq!(
        kit.deployment(&later).await.status,
        DeploymentStatus::Queued
    );
    let runner = kit.start_runner(&id).await;
    assert_eq!(
        kit.finish(&runner, PhaseResult::Succeeded).await.status,
        DeploymentStatus::Succeeded
    );
}

#[tokio::test]
async fn a_runner_that_goes_silent_fails_its_deployment_and_frees_the_environment() {
    let kit = Kit::new(4).await;
    let environment = kit.environment("staging").await;
    let id = kit.deploy(&environment).await;
    let next = kit.deploy(&environment).await;
    kit.deliver().await;
    let runner = kit.start_runner(&id).await;
    for _ in 0..3 {
        kit.platform.heartbeat(&runner).await.unwrap();
        assert_eq!(
            kit.watchdog_after(4).await,
            Watchdog::default(),
            "heartbeats keep it alive"
        );
    }
    // Silent from here on.
    let round = kit.watchdog_after(2).await;
    assert_eq!(round.silent, 1, "{round:?}");
    let failed = kit.deployment(&id).await;
    assert_eq!(failed.status, DeploymentStatus::Failed);
    let reason = failed.reason.unwrap();
    assert!(
        reason.starts_with("its runner stopped sending heartbeats: none for 5m"),
        "{reason}"
    );
    assert_eq!(kit.launcher.stopped(), [(id.clone(), 1)]);
    // Its credentials are dead; the next deployment runs.
    assert!(kit.platform.heartbeat(&runner).await.is_err());
    assert!(kit.deliver().await.contains(&DispatchOutcome::Launched {
        deployment_id: next
    }));
}

#[tokio::test]
async fn a_sandbox_that_never_starts_gets_another_attempt() {
    let kit = Kit::new(4).await;
    let environment = kit.environment("staging").await;
    let id = kit.deploy(&environment).await;
    kit.deliver().await;
    assert_eq!(kit.watchdog_after(4).await, Watchdog::default());
    assert_eq!(kit.watchdog_after(2).await.restarted, 1);
    assert_eq!(kit.deployment(&id).await.status, DeploymentStatus::Queued);
    kit.deliver().await;
    // A stop before the runner asked for its job: not started either.
    kit.platform
        .sandbox_stopped(&kit.caller.org_id, &id, 2, "CannotPullContainerError")
        .await
        .unwrap();
    kit.deliver().await;
    assert_eq!(
        kit.launcher.launched(),
        [(id.clone(), 1), (id.clone(), 2), (id.clone(), 3)]
    );
    kit.platform
        .sandbox_stopped(&kit.caller.org_id, &id, 3, "CannotPullContainerError")
        .await
        .unwrap();
    let failed = kit.deployment(&id).await;
    assert_eq!(failed.status, DeploymentStatus::Failed);
    let reason = failed.reason.unwrap();
    assert!(
        reason.contains("the sandbox stopped before its runner started: CannotPullContainerError"),
        "{reason}"
    );
    // A late stop event of an earlier attempt changes nothing.
    kit.platform
        .sandbox_stopped(&kit.caller.org_id, &id, 1, "late")
        .await
        .unwrap();
    assert_eq!(kit.deployment(&id).await.reason.unwrap(), reason);
}

#[tokio::test]
async fn a_freed_slot_goes_to_the_oldest_ready_deployment_of_any_environment() {
    let kit = Kit::new(1).await;
    let (a, b) = (kit.environment("a").await, kit.environment("b").await);
    let first = kit.deploy(&a).await;
    let other = kit.deploy(&b).await;
    let second = kit.deploy(&a).await;
    let outcomes = kit.deliver().await;
    assert_eq!(
        outcomes,
        [
            DispatchOutcome::Launched {
                deployment_id: first.clone()
            },
            DispatchOutcome::AtCapacity,
            DispatchOutcome::Waiting,
        ]
    );
    let runner = kit.start_runner(&first).await;
    kit.finish(&runner, PhaseResult::Succeeded).await;
    // b's deployment is older than a's second one: it gets the slot, and only it.
    assert_eq!(kit.queue.take(), [message_of(&kit, &b, &other)]);
    kit.platform
        .dispatch(&message_of(&kit, &b, &other))
        .await
        .unwrap();
    let runner = kit.start_runner(&other).await;
    kit.finish(&runner, PhaseResult::Failed).await;
    assert_eq!(kit.queue.take(), [message_of(&kit, &a, &second)]);
}

#[tokio::test]
async fn a_queued_deployment_the_index_has_not_caught_up_with_is_still_recovered() {
    let kit = Kit::new(4).await;
    let environment = kit.environment("staging").await;
    kit.store.lag();
    let id = kit.deploy(&environment).await;
    // Its message is lost, and the index does not show it yet.
    kit.queue.take();
    assert_eq!(kit.watchdog_after(6).await, Watchdog::default());
    kit.store.catch_up();
    assert_eq!(kit.watchdog_after(0).await.resent, 1);
    assert!(kit
        .deliver()
        .await
        .contains(&DispatchOutcome::Launched { deployment_id: id }));
}
