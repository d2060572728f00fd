//! The platform in process on the fault kit's store, queue, launcher and clock, for
//! tests that play the dispatcher, the sandboxes and the schedules themselves and jump
//! time instead of waiting: liveness under faults, scheduled jobs.

use std::sync::Arc;

use chrono::Duration as Minutes;
use envplane_aws::dynamodb::{self, DynamoDbStore};
use envplane_aws::emulator;
use envplane_core::auth::Caller;
use envplane_core::deployment::{Deployment, PhaseReport, PhaseResult, PlanSummary};
use envplane_core::model::Environment;
use envplane_core::ports::Store;
use envplane_core::secrecy::ExposeSecret;
use envplane_core::service::{
    DispatchOutcome, PageRequest, Ports, Runner, Settings, TokenScope, Watchdog,
};
use envplane_core::Platform;
use envplane_local::{FileArtifacts, FileKeyRing, SqliteStore};
use envplane_testkit::faults::{
    FaultyLauncher, FaultyQueue, LaggingStore, ManualClock, RecordingNotifier, ScriptedSender,
    ScriptedSpend,
};
use serde_json::json;

pub struct Kit {
    pub platform: Platform,
    pub store: Arc<LaggingStore>,
    pub queue: Arc<FaultyQueue>,
    pub launcher: Arc<FaultyLauncher>,
    pub clock: Arc<ManualClock>,
    pub notifier: Arc<RecordingNotifier>,
    pub sender: Arc<ScriptedSender>,
    pub spend: Arc<ScriptedSpend>,
    pub caller: Caller,
    pub project_id: String,
    pub template_id: String,
    _data_dir: tempfile::TempDir,
}

/// The platform of another region, over the kit's store.
pub struct Region {
    pub platform: Platform,
    pub queue: Arc<FaultyQueue>,
    pub launcher: Arc<FaultyLauncher>,
}

/// The store under the fault kit's lagging wrapper.
#[derive(Clone, Copy)]
pub enum Backend {
    Sqlite,
    /// A fresh DynamoDB table in the emulator.
    Emulator,
}

impl Backend {
    pub async fn open(self, sqlite_path: &std::path::Path) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite => Arc::new(SqliteStore::open(sqlite_path).unwrap()),
            Backend::Emulator => {
                let client = aws_sdk_dynamodb::Client::new(&emulator::sdk_config().await);
                let table = emulator::unique_name("liveness");
                dynamodb::create_table(&client, &table).await.unwrap();
                Arc::new(DynamoDbStore::new(client, table))
            }
        }
    }
}

/// The regions of a process in `eu-central-1` of an installation whose home region,
/// active while the switch was never flipped, is `eu-west-1`: a passive region.
pub fn passive_region() -> Option<envplane_core::region::Regions> {
    Some(regions("eu-central-1", std::time::Duration::ZERO))
}

/// A process in region `this` of an installation whose home region is `eu-west-1`,
/// trusting a read of the switch for `cache_for`.
pub fn regions(this: &str, cache_for: std::time::Duration) -> envplane_core::region::Regions {
    envplane_core::region::Regions {
        this: envplane_core::region::RegionName::parse(this).unwrap(),
        home: envplane_core::region::RegionName::parse("eu-west-1").unwrap(),
        cache_for,
    }
}

pub fn from<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

impl Kit {
    pub async fn new(max_parallel_deployments: usize) -> Self {
        Self::with_settings(Settings {
            max_parallel_deployments,
            ..Settings::default()
        })
        .await
    }

    pub async fn with_settings(settings: Settings) -> Self {
        Self::on(Backend::Sqlite, settings).await
    }

    pub async fn on(backend: Backend, settings: Settings) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LaggingStore::new(
            backend.open(&data_dir.path().join("envplane.db")).await,
        ));
        let (queue, launcher) = (
            Arc::new(FaultyQueue::default()),
            Arc::new(FaultyLauncher::default()),
        );
        let clock = Arc::new(ManualClock::default());
        let (notifier, sender) = (
            Arc::new(RecordingNotifier::default()),
            Arc::new(ScriptedSender::default()),
        );
        let spend = Arc::new(ScriptedSpend::default());
        let ports = Ports {
            store: store.clone(),
            key_ring: Arc::new(
                FileKeyRing::open_or_create(&data_dir.path().join("master.key")).unwrap(),
            ),
            clock: clock.clone(),
            queue: queue.clone(),
            launcher: launcher.clone(),
            artifacts: Arc::new(FileArtifacts::new(data_dir.path().join("artifacts"))),
            vcs: Arc::new(envplane_core::ports::Unwired),
            reports: Arc::new(envplane_core::ports::Unwired),
            notifier: notifier.clone(),
            sender: sender.clone(),
            spend: spend.clone(),
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
            notifier,
            sender,
            spend,
            caller,
            project_id: project.id,
            template_id: template.id,
            _data_dir: data_dir,
        }
    }

    /// One sandbox slot, started in process (as `envplane serve` does), and two
    /// environments, `a` and `b`.
    pub async fn one_slot_in_process() -> (Self, String, String) {
        let kit = Self::with_settings(Settings {
            max_parallel_deployments: 1,
            start_next_inline: true,
            ..Settings::default()
        })
        .await;
        let (a, b) = (kit.environment("a").await, kit.environment("b").await);
        (kit, a, b)
    }

    pub async fn environment(&self, name: &str) -> String {
        self.environment_with(name, json!({})).await.id
    }

    /// An environment with the settings of `extra` (a JSON object) besides its name,
    /// project and template.
    pub async fn environment_with(&self, name: &str, extra: serde_json::Value) -> Environment {
        let mut body =
            json!({"name": name, "project_id": self.project_id, "template_id": self.template_id});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        self.platform
            .create_environment(&self.caller, from(body))
            .await
            .unwrap()
    }

    /// Queues a plan of the environment; its message stays in the queue.
    pub async fn deploy(&self, environment_id: &str) -> String {
        let body = json!({"action": "plan"});
        self.platform
            .create_deployment(&self.caller, environment_id, from(body))
            .await
            .unwrap()
            .id
    }

    /// The environment's deployments, newest first.
    pub async fn deployments_of(&self, environment_id: &str) -> Vec<Deployment> {
        self.platform
            .list_deployments(&self.caller, environment_id, &PageRequest::default())
            .await
            .unwrap()
            .items
    }

    pub async fn environment_now(&self, id: &str) -> Environment {
        self.platform
            .get_environment(&self.caller, id)
            .await
            .unwrap()
    }

    pub async fn deployment(&self, id: &str) -> Deployment {
        self.platform
            .get_deployment(&self.caller, id)
            .await
            .unwrap()
    }

    /// Delivers every message sent so far (whatever its delay), once each.
    pub async fn deliver(&self) -> Vec<DispatchOutcome> {
        let mut outcomes = Vec::new();
        for message in self.queue.take() {
            outcomes.push(self.platform.dispatch(&message).await.unwrap());
        }
        outcomes
    }

    /// Plays the sandbox of the deployment's newest launch: trades its credential.
    pub async fn start_runner(&self, deployment_id: &str) -> Runner {
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

    pub async fn finish(&self, runner: &Runner, result: PhaseResult) -> Deployment {
        let report = PhaseReport {
            result,
            reason: Some("the runner said so".into()),
            plan_summary: None,
            commit: None,
            outputs: None,
        };
        self.platform.finish_phase(runner, report).await.unwrap()
    }

    /// Ends the runner's phase successfully after a plan with `summary`, whose
    /// `terraform show -json` (reduced as the runner reduces it) is `plan`.
    pub async fn finish_planned(
        &self,
        runner: &Runner,
        summary: PlanSummary,
        plan: serde_json::Value,
    ) -> Deployment {
        let view = json!({"text": "(the plan)", "json": plan});
        self.platform
            .put_plan_view(runner, serde_json::to_vec(&view).unwrap())
            .await
            .unwrap();
        let report = PhaseReport {
            result: PhaseResult::Succeeded,
            reason: None,
            plan_summary: Some(summary),
            commit: Some("c0ffee".into()),
            outputs: None,
        };
        self.platform.finish_phase(runner, report).await.unwrap()
    }

    /// Where the platform keeps its artifacts (states, plans) as files.
    pub fn artifacts_dir(&self) -> std::path::PathBuf {
        self._data_dir.path().join("artifacts")
    }

    /// The platform as a process in another region of the installation runs it: the
    /// same store (a global table without lag), key file and clock, its own queue and
    /// launcher.
    pub fn region(&self, regions: envplane_core::region::Regions) -> Region {
        let (queue, launcher) = (
            Arc::new(FaultyQueue::default()),
            Arc::new(FaultyLauncher::default()),
        );
        let data_dir = self._data_dir.path();
        let ports = Ports {
            store: self.store.clone(),
            key_ring: Arc::new(FileKeyRing::open_or_create(&data_dir.join("master.key")).unwrap()),
            clock: self.clock.clone(),
            queue: queue.clone(),
            launcher: launcher.clone(),
            artifacts: Arc::new(FileArtifacts::new(data_dir.join("artifacts"))),
            vcs: Arc::new(envplane_core::ports::Unwired),
            reports: Arc::new(envplane_core::ports::Unwired),
            notifier: self.notifier.clone(),
            sender: self.sender.clone(),
            spend: self.spend.clone(),
        };
        let settings = Settings {
            regions: Some(regions),
            ..Settings::default()
        };
        Region {
            platform: Platform::new(ports, settings),
            queue,
            launcher,
        }
    }

    pub async fn watchdog_after(&self, minutes: i64) -> Watchdog {
        self.clock.advance(Minutes::minutes(minutes));
        self.platform.run_watchdog().await.unwrap()
    }
}
