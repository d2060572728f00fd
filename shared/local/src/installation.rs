//! One local installation: every adapter over one data directory, and the background
//! loops a serverless deployment gets from SQS and EventBridge.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use envplane_core::cost::PricingRules;
use envplane_core::ports::{
    NotificationDelivery, QueueError, ReportRequest, StoreError, SystemClock,
};
use envplane_core::service::{Ports, Quotas, Settings};
use envplane_core::Platform;
use envplane_github::GitHubApi;
use envplane_webhooks::HttpSender;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::task::JoinHandle;

use crate::launcher::{Isolation, LauncherConfig, LocalLauncher, SandboxExit};
use crate::notifications::{notification_loop, ChannelNotifier};
use crate::queue::{Delivery, SqliteQueue};
use crate::reports::{report_loop, ChannelReports};
use crate::{FileArtifacts, FileKeyRing, KeyFileError, SqliteStore};
use crate::{ADMIN_KEY_FILE, ARTIFACTS_DIR, DATABASE_FILE, MASTER_KEY_FILE, TOOLS_DIR};

/// Deliveries after which a message that keeps failing is given up (like a DLQ).
const MAX_RECEIVES: u32 = 5;

#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub data_dir: PathBuf,
    /// The URL sandboxes call back.
    pub api_url: String,
    pub runner_binary: PathBuf,
    pub tools_dir: PathBuf,
    pub isolation: Isolation,
    pub max_parallel_deployments: usize,
    /// A directory whose Git repositories templates may name as `file://`; none by
    /// default. It may not overlap the data directory.
    pub local_repositories: Option<PathBuf>,
    /// Address ranges sandboxes may not reach, beyond the private, shared and
    /// link-local ones they never reach.
    pub blocked_ranges: Vec<String>,
    pub quotas: Quotas,
    /// GitHub's API: `https://api.github.com`, or a GitHub Enterprise Server's.
    pub github_api_url: String,
    /// Notification targets may be plain HTTP and on private, loopback or link-local
    /// addresses (off by default).
    pub allow_private_notification_targets: bool,
    /// Send notifications (on by default).
    pub notifications: bool,
    /// How plans are priced beyond the catalog.
    pub pricing: PricingRules,
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
            local_repositories: None,
            blocked_ranges: Vec::new(),
            quotas: Quotas::default(),
            github_api_url: "https://api.github.com".into(),
            allow_private_notification_targets: false,
            notifications: true,
            pricing: PricingRules::default(),
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
    #[error("cannot make {path} private to this user ({mode:o}): {source}")]
    Permissions {
        path: String,
        mode: u32,
        source: std::io::Error,
    },
    #[error("cannot share {path} as the local repositories directory: {reason}")]
    LocalRepositories { path: String, reason: String },
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
    report_requests: UnboundedReceiver<ReportRequest>,
    notifications: UnboundedReceiver<NotificationDelivery>,
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

/// Opens (creating on first use) the installation in `config.data_dir`, private to this
/// user at every start: the directory 0700, the database and key files 0600.
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
    make_private(&config.data_dir)?;
    let local_repositories = config
        .local_repositories
        .as_deref()
        .map(|root| shared_repositories(root, &config.data_dir))
        .transpose()?;
    let store = SqliteStore::open(&database)?;
    let queue = SqliteQueue::open(&database)?;
    let key_ring = FileKeyRing::open_or_create(&config.data_dir.join(MASTER_KEY_FILE))?;
    let (exit_sender, exits) = unbounded_channel();
    let (reports, report_requests) = ChannelReports::new();
    let (notifier, notifications) = ChannelNotifier::new();
    let public_url = config.api_url.clone();
    let launcher = LocalLauncher::new(
        LauncherConfig {
            runner_binary: config.runner_binary,
            api_url: config.api_url,
            tools_dir: config.tools_dir,
            isolation: config.isolation,
            local_repositories: local_repositories.clone(),
            blocked_ranges: config.blocked_ranges,
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
        vcs: Arc::new(GitHubApi::new(&config.github_api_url)),
        reports: Arc::new(reports),
        notifier: Arc::new(notifier),
        sender: Arc::new(HttpSender::new(config.allow_private_notification_targets)),
        // No bill to read from a laptop: actual spend is read on AWS.
        spend: Arc::new(envplane_core::ports::Unwired),
    };
    let settings = Settings {
        cache_api_keys: true,
        local_repositories,
        max_parallel_deployments: config.max_parallel_deployments,
        start_next_inline: true,
        quotas: config.quotas,
        public_url,
        regions: None,
        egress_ips: Vec::new(),
        allow_private_notification_targets: config.allow_private_notification_targets,
        notifications: config.notifications,
        pricing: config.pricing,
    };
    Ok(Installation {
        platform: Arc::new(Platform::new(ports, settings)),
        queue,
        exits,
        report_requests,
        notifications,
    })
}

/// Files of the data directory that hold secrets or state; SQLite creates its `-wal`
/// and `-shm` files with the database's mode. (A master key found readable by others
/// is not fixed but refused: it may have leaked.)
const PRIVATE_FILES: [&str; 4] = [
    DATABASE_FILE,
    "envplane.db-wal",
    "envplane.db-shm",
    ADMIN_KEY_FILE,
];

/// Sets the data directory to 0700 and its secret files to 0600 (creating an empty
/// database file first, so SQLite never creates one with the umask's mode). A file this
/// user cannot change, for example another user's, stops the start.
fn make_private(data_dir: &Path) -> Result<(), OpenError> {
    set_mode(data_dir, 0o700)?;
    let database = data_dir.join(DATABASE_FILE);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&database)
        .map_err(|source| permissions_error(&database, 0o600, source))?;
    for file in PRIVATE_FILES {
        let path = data_dir.join(file);
        if path.exists() {
            set_mode(&path, 0o600)?;
        }
    }
    Ok(())
}

/// The local repositories directory, resolved: it must exist, and neither it nor the
/// data directory may hold the other (a sandbox would see the keys and the database).
fn shared_repositories(root: &Path, data_dir: &Path) -> Result<PathBuf, OpenError> {
    let refused = |reason: String| OpenError::LocalRepositories {
        path: root.display().to_string(),
        reason,
    };
    let root = root.canonicalize().map_err(|e| refused(e.to_string()))?;
    if !root.is_dir() {
        return Err(refused("it is not a directory".into()));
    }
    let data_dir = data_dir
        .canonicalize()
        .map_err(|e| refused(e.to_string()))?;
    if root.starts_with(&data_dir) || data_dir.starts_with(&root) {
        return Err(refused(format!(
            "it overlaps the data directory {}",
            data_dir.display()
        )));
    }
    Ok(root)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), OpenError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|source| permissions_error(path, mode, source))
}

fn permissions_error(path: &Path, mode: u32, source: std::io::Error) -> OpenError {
    OpenError::Permissions {
        path: path.display().to_string(),
        mode,
        source,
    }
}

impl Installation {
    /// Fails what a previous process left running, then dispatches queued deployments,
    /// concludes those whose sandbox stopped without reporting, fails those that ran
    /// past their timeout and runs scheduled jobs, until dropped.
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
        let watchdog = tokio::spawn(watchdog_loop(self.platform.clone()));
        let scheduler = tokio::spawn(scheduler_loop(self.platform.clone()));
        let reporter = tokio::spawn(report_loop(self.platform.clone(), self.report_requests));
        let notifier = tokio::spawn(notification_loop(self.platform.clone(), self.notifications));
        Ok((
            self.platform,
            Background {
                tasks: vec![dispatcher, watcher, watchdog, scheduler, reporter, notifier],
            },
        ))
    }
}

/// How often the watchdog looks for deployments past their timeout.
const WATCHDOG_INTERVAL: Duration = Duration::from_secs(30);

async fn watchdog_loop(platform: Arc<Platform>) {
    let mut ticks = tokio::time::interval(WATCHDOG_INTERVAL);
    loop {
        ticks.tick().await;
        match platform.run_watchdog().await {
            Ok(round) if round == Default::default() => {}
            Ok(round) => tracing::warn!(?round, "the watchdog ended or resent deployments"),
            Err(error) => tracing::error!(%error, "the watchdog failed"),
        }
    }
}

/// How often the scheduler looks for jobs that came due (a round with none due is one
/// read): a time to live that ends is acted on within this.
const SCHEDULER_INTERVAL: Duration = Duration::from_secs(5);

async fn scheduler_loop(platform: Arc<Platform>) {
    let mut ticks = tokio::time::interval(SCHEDULER_INTERVAL);
    loop {
        ticks.tick().await;
        match platform.run_scheduler().await {
            Ok(round) if round == Default::default() => {}
            Ok(round) => tracing::info!(?round, "scheduled jobs ran"),
            Err(error) => tracing::error!(%error, "the scheduler failed"),
        }
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
        // Waiting for a slot or for its environment needs no message: the phase that
        // ends next announces the oldest deployment that can start (the store here is
        // consistent, so none is missed; the watchdog covers a lost announcement).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn every_start_makes_the_data_directory_private() {
        let parent = tempfile::tempdir().unwrap();
        let data_dir = parent.path().join("data");
        std::fs::create_dir(&data_dir).unwrap();
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let admin_key = data_dir.join(ADMIN_KEY_FILE);
        std::fs::write(&admin_key, "epk_x").unwrap();
        std::fs::set_permissions(&admin_key, std::fs::Permissions::from_mode(0o644)).unwrap();

        let config = LocalConfig::new(data_dir.clone(), "http://127.0.0.1:1".into());
        drop(open(config.clone()).unwrap());
        assert_eq!(mode(&data_dir), 0o700);
        for file in [DATABASE_FILE, MASTER_KEY_FILE, ADMIN_KEY_FILE] {
            assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
        }

        // Loosened between two starts: tightened again.
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let database = data_dir.join(DATABASE_FILE);
        std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o666)).unwrap();
        drop(open(config).unwrap());
        assert_eq!(mode(&data_dir), 0o700);
        assert_eq!(mode(&database), 0o600);
    }

    #[tokio::test]
    async fn the_local_repositories_never_overlap_the_data_directory() {
        let parent = tempfile::tempdir().unwrap();
        let data_dir = parent.path().join("data");
        let config = |repositories: PathBuf| LocalConfig {
            local_repositories: Some(repositories),
            ..LocalConfig::new(data_dir.clone(), "http://127.0.0.1:1".into())
        };
        for overlapping in [
            parent.path().to_path_buf(),
            data_dir.clone(),
            data_dir.join("artifacts"),
        ] {
            std::fs::create_dir_all(&overlapping).unwrap();
            let error = open(config(overlapping.clone())).err().expect("refused");
            assert!(
                error.to_string().contains("overlaps"),
                "{overlapping:?}: {error}"
            );
        }
        let missing = open(config(parent.path().join("missing")))
            .err()
            .expect("refused");
        assert!(missing.to_string().contains("missing"), "{missing}");
        let repositories = tempfile::tempdir().unwrap();
        assert!(open(config(repositories.path().to_path_buf())).is_ok());
    }
}
