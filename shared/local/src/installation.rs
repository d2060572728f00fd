//! One local installation: every adapter over one data directory, and the background
//! loops a serverless deployment gets from SQS and EventBridge.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use envplane_core::ports::{QueueError, StoreError, SystemClock};
use envplane_core::service::{DispatchOutcome, Ports, Settings};
use envplane_core::Platform;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::task::JoinHandle;

use crate::launcher::{Isolation, LauncherConfig, LocalLauncher, SandboxExit};
use crate::queue::{Delivery, SqliteQueue};
use crate::{FileArtifacts, FileKeyRing, KeyFileError, SqliteStore};
use crate::{ARTIFACTS_DIR, DATABASE_FILE, MASTER_KEY_FILE, TOOLS_DIR};

/// Deliveries after which a message that keeps failing is given up (like a DLQ).
const MAX_RECEIVES: u32 = 5;
/// How long a deployment waits for a free sandbox slot before it is tried again.
const CAPACITY_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub data_dir: PathBuf,
    /// The URL sandboxes call back.
    pub api_url: String,
    pub runner_binary: PathBuf,
    pub tools_dir: PathBuf,
    pub isolation: Isolation,
    pub max_parallel_deployments: usize,
}

impl LocalConfig {
    /// Defaults: `envplane-runner` beside the running executable, tools in the data
    /// directory, bubblewrap when installed, four deployments at once.
    pub fn new(data_dir: PathBuf, api_url: String) -> Self {
        let runner_binary = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("envplane-runner")))
            .unwrap_or_else(|| PathBuf::from("envplane-runner"));
        Self {
            tools_dir: data_dir.join(TOOLS_DIR),
            data_dir,
            api_url,
            runner_binary,
            isolation: Isolation::detect(),
            max_parallel_deployments: Settings::default().max_parallel_deployments,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
}

pub struct Installation {
    pub platform: Arc<Platform>,
    queue: SqliteQueue,
    exits: UnboundedReceiver<SandboxExit>,
}

/// The background loops; they stop when this is dropped.
pub struct Background {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Opens (creating on first use, 0700) the installation in `config.data_dir`.
pub fn open(config: LocalConfig) -> Result<Installation, OpenError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .map_err(|source| OpenError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
    let database = config.data_dir.join(DATABASE_FILE);
    let store = SqliteStore::open(&database)?;
    let queue = SqliteQueue::open(&database)?;
    let key_ring = FileKeyRing::open_or_create(&config.data_dir.join(MASTER_KEY_FILE))?;
    let (exit_sender, exits) = unbounded_channel();
    let launcher = LocalLauncher::new(
        LauncherConfig {
            runner_binary: config.runner_binary,
            api_url: config.api_url,
            tools_dir: config.tools_dir,
            isolation: config.isolation,
        },
        exit_sender,
    );
    let ports = Ports {
        store: Arc::new(store),
        key_ring: Arc::new(key_ring),
        clock: Arc::new(SystemClock),
        queue: Arc::new(queue.clone()),
        launcher: Arc::new(launcher),
        artifacts: Arc::new(FileArtifacts::new(config.data_dir.join(ARTIFACTS_DIR))),
    };
    let settings = Settings {
        local_mode: true,
        cache_api_keys: true,
        max_parallel_deployments: config.max_parallel_deployments,
    };
    Ok(Installation {
        platform: Arc::new(Platform::new(ports, settings)),
        queue,
        exits,
    })
}

impl Installation {
    /// Fails what a previous process left running, then dispatches queued deployments
    /// and concludes those whose sandbox stopped without reporting, until dropped.
    pub async fn start(self) -> Result<(Arc<Platform>, Background), envplane_core::Error> {
        let interrupted = self.platform.recover_after_restart().await?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "failed the deployments that were running when envplane stopped"
            );
        }
        let dispatcher = tokio::spawn(dispatch_loop(self.platform.clone(), self.queue));
        let watcher = tokio::spawn(watch_exits(self.platform.clone(), self.exits));
        Ok((
            self.platform,
            Background {
                tasks: vec![dispatcher, watcher],
            },
        ))
    }
}

async fn dispatch_loop(platform: Arc<Platform>, queue: SqliteQueue) {
    loop {
        let deliveries = match queue.receive(10).await {
            Ok(deliveries) => deliveries,
            Err(error) => {
                tracing::error!(%error, "reading the deployment queue failed");
                Vec::new()
            }
        };
        if deliveries.is_empty() {
            queue.wait(Duration::from_millis(250)).await;
            continue;
        }
        for delivery in deliveries {
            if let Err(error) = handle(&platform, &queue, &delivery).await {
                tracing::error!(%error, deployment_id = %delivery.message.deployment_id, "queue bookkeeping failed");
            }
        }
    }
}

async fn handle(
    platform: &Platform,
    queue: &SqliteQueue,
    delivery: &Delivery,
) -> Result<(), QueueError> {
    match platform.dispatch(&delivery.message).await {
        Ok(DispatchOutcome::AtCapacity) => queue.retry_later(delivery, CAPACITY_RETRY).await,
        Ok(_) => queue.acknowledge(delivery).await,
        Err(error) if delivery.receives >= MAX_RECEIVES => {
            let reason =
                format!("it could not be dispatched after {MAX_RECEIVES} attempts: {error}");
            if let Err(error) = platform.dead_lettered(&delivery.message, &reason).await {
                tracing::error!(%error, "failing a dead-lettered deployment failed");
            }
            queue.acknowledge(delivery).await
        }
        Err(error) => {
            tracing::warn!(%error, receives = delivery.receives, "dispatch failed; retrying");
            queue
                .retry_later(delivery, Duration::from_secs(1 << delivery.receives.min(5)))
                .await
        }
    }
}

async fn watch_exits(platform: Arc<Platform>, mut exits: UnboundedReceiver<SandboxExit>) {
    while let Some(exit) = exits.recv().await {
        if let Err(error) = platform
            .sandbox_stopped(
                &exit.org_id,
                &exit.deployment_id,
                exit.attempt,
                &exit.description,
            )
            .await
        {
            tracing::error!(%error, deployment_id = %exit.deployment_id, "concluding a stopped sandbox failed");
        }
    }
}
