//! envplane on its AWS adapters, against the emulator that `scripts/test` starts. The api,
//! deployer and task-events handlers are the real ones; this harness stands in for what
//! AWS runs around them: the SQS event source mapping that feeds the deployer, Fargate
//! running the runner's container (the emulator runs none), and EventBridge telling
//! task-events that a task stopped.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::error::DisplayErrorContext;
use aws_sdk_ecs::types::{ContainerOverride, DesiredStatus, Task};
use envplane_aws::config::{AwsPlatform, AwsSettings};
use envplane_aws::ecs::RUNNER_TOKEN_VARIABLE;
use envplane_aws::emulator::{deliver_batch, sqs_event, task_state_change, Stack};
use envplane_aws::reports::handle_reports;
use envplane_aws::task_events::handle_task_state_change;
use envplane_core::region::Regions;
use envplane_core::secrecy::ExposeSecret;
use envplane_core::Platform;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::{binary, eventually, tools_dir, Seeded, TestApp};

/// Repositories as sandboxes reach them (an `https://` URL, as production requires)
/// and the local directories git in a sandbox fetches them from instead, since nothing
/// here reaches a Git host.
type Repositories = Arc<Mutex<Vec<(String, PathBuf)>>>;

/// What the stand-in for Fargate does with a task that RunTask started.
#[derive(Clone, Copy, Debug)]
pub enum Sandbox {
    /// Runs `envplane-runner` with exactly the task's container overrides, then stops
    /// the task with the runner's exit code.
    RunRunner,
    /// Stops the task at once, as a container killed with `exit_code` before it could
    /// report anything.
    Crash { exit_code: i32 },
}

/// Which stand-ins run; without them a test drives deliveries and tasks itself.
#[derive(Clone, Copy, Debug)]
pub struct Harness {
    pub event_source_mapping: bool,
    pub fargate: Option<Sandbox>,
}

impl Harness {
    /// The whole path, with sandboxes that run the runner.
    pub const FULL: Harness = Harness {
        event_source_mapping: true,
        fargate: Some(Sandbox::RunRunner),
    };
    /// Only the api: the test delivers queue messages and plays the tasks.
    pub const API_ONLY: Harness = Harness {
        event_source_mapping: false,
        fargate: None,
    };
}

pub struct AwsApp {
    pub app: TestApp,
    /// Which region's api the public URL reaches (Route 53's failover record).
    pub dns: Dns,
    pub stack: Stack,
    /// The deployments queue's deployer, as one Lambda instance would build it.
    pub deployer: AwsPlatform,
    pub ecs: aws_sdk_ecs::Client,
    pub sqs: aws_sdk_sqs::Client,
    repositories: Repositories,
    stand_ins: Vec<JoinHandle<()>>,
}

impl Drop for AwsApp {
    fn drop(&mut self) {
        for stand_in in &self.stand_ins {
            stand_in.abort();
        }
    }
}

/// A fresh installation in the emulator, its api served on a loopback port (the same
/// router the api Lambda serves), and the stand-ins `harness` asks for.
pub async fn spawn_app_on_aws(harness: Harness) -> AwsApp {
    spawn_app_on_aws_with_github(harness, None).await
}

/// [`spawn_app_on_aws`], its functions calling GitHub's API at `github_api_url` (the
/// test kit's fake) and asking for reports on a reports queue of their own
/// ([`AwsApp::reports_queue_url`]).
pub async fn spawn_app_on_aws_with_github(
    harness: Harness,
    github_api_url: Option<&str>,
) -> AwsApp {
    spawn_app_on_aws_in(harness, github_api_url, None).await
}

/// [`spawn_app_on_aws_with_github`], its functions in `regions` of an installation
/// spread over several.
pub async fn spawn_app_on_aws_in(
    harness: Harness,
    github_api_url: Option<&str>,
    regions: Option<Regions>,
) -> AwsApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut stack = Stack::create(&format!("http://{address}")).await;
    if let Some(url) = github_api_url {
        let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
        stack.settings.reports_queue_url =
            Some(envplane_aws::emulator::create_queue(&sqs, "envplane-reports").await);
        stack.settings.github_api_url = url.to_string();
    }
    stack.settings.regions = regions;
    let api = envplane_aws::config::platform(&stack.settings, &stack.sdk);
    let admin_key = api
        .platform
        .bootstrap()
        .await
        .expect("bootstrap")
        .expect("a fresh table bootstraps")
        .expose_secret()
        .to_string();
    let dns = Dns::to(api.platform);
    let entry = dns.clone();
    let server = tokio::spawn(async move { axum::serve(listener, entry.router()).await.unwrap() });

    let deployer = envplane_aws::config::dispatching_platform(&stack.settings, &stack.sdk);
    let ecs = aws_sdk_ecs::Client::new(&stack.sdk);
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let repositories = Repositories::default();
    let stand_ins = stand_ins(harness, &stack.settings, &stack.sdk, &repositories);
    AwsApp {
        dns,
        app: TestApp {
            address,
            admin_key,
            data_dir: tempfile::tempdir().expect("temporary directory"),
            client: reqwest::Client::new(),
            server,
            quotas: Default::default(),
            github_api_url: None,
            configure: None,
        },
        stack,
        deployer,
        ecs,
        sqs,
        repositories,
        stand_ins,
    }
}

/// What the public URL reaches: one region's api, switched as a DNS failover record
/// switches.
#[derive(Clone)]
pub struct Dns(Arc<Mutex<axum::Router>>);

impl Dns {
    fn to(platform: Arc<Platform>) -> Self {
        Self(Arc::new(Mutex::new(envplane_http::api_router(platform))))
    }

    /// From now on the public URL reaches `platform`'s api.
    pub fn point_to(&self, platform: Arc<Platform>) {
        *self.0.lock().unwrap() = envplane_http::api_router(platform);
    }

    /// A router that hands each request to the api the record points to now.
    fn router(self) -> axum::Router {
        axum::Router::new().fallback_service(tower::service_fn(
            move |request: axum::extract::Request| {
                let router = self.0.lock().unwrap().clone();
                tower::ServiceExt::oneshot(router, request)
            },
        ))
    }
}

/// The stand-ins `harness` asks for, around the functions of one region: the event
/// source mapping feeding its deployer, and Fargate running its cluster's tasks.
fn stand_ins(
    harness: Harness,
    settings: &AwsSettings,
    sdk: &aws_config::SdkConfig,
    repositories: &Repositories,
) -> Vec<JoinHandle<()>> {
    let mut stand_ins = Vec::new();
    if harness.event_source_mapping {
        let feeding = Arc::new(AtomicBool::new(true));
        stand_ins.push(event_source_mapping(settings, sdk, feeding));
    }
    if let Some(sandbox) = harness.fargate {
        let fargate = Fargate {
            ecs: aws_sdk_ecs::Client::new(sdk),
            s3: envplane_aws::config::s3_client(sdk, true),
            cluster: settings.ecs_cluster.clone(),
            task_events: envplane_aws::config::concluding_platform(settings, sdk).platform,
            sandbox,
            repositories: repositories.clone(),
        };
        stand_ins.push(tokio::spawn(fargate.run()));
    }
    stand_ins
}

/// The SQS event source mapping of a region's deployer: its queue's messages, one at a
/// time, to the deployer's handler while `feeding` is set.
pub fn event_source_mapping(
    settings: &AwsSettings,
    sdk: &aws_config::SdkConfig,
    feeding: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let deployer = envplane_aws::config::dispatching_platform(settings, sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue_url = settings.queue_url.clone();
    tokio::spawn(async move {
        loop {
            if !feeding.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let delivered = deliver_batch(
                &deployer.platform,
                deployer.queue.as_ref(),
                &sqs,
                &queue_url,
                1,
            )
            .await;
            if delivered.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    })
}

/// A second region of the installation: its own deployments queue, cluster and
/// functions (with their stand-ins), over the same table, key and bucket (what the
/// global table, the multi-region key and replication give, minus their lag).
pub struct SecondRegion {
    pub settings: AwsSettings,
    /// Its api's platform, for the DNS record to point to.
    pub api: Arc<Platform>,
    /// Its reaper's platform (watchdog, scheduler).
    pub reaper: Arc<Platform>,
    stand_ins: Vec<JoinHandle<()>>,
}

impl Drop for SecondRegion {
    fn drop(&mut self) {
        for stand_in in &self.stand_ins {
            stand_in.abort();
        }
    }
}

/// The stand-in for Fargate and for EventBridge's task state change events.
struct Fargate {
    ecs: aws_sdk_ecs::Client,
    /// What the task's execution role reads its environment files with.
    s3: aws_sdk_s3::Client,
    cluster: String,
    /// The task-events function's platform.
    task_events: Arc<Platform>,
    sandbox: Sandbox,
    repositories: Repositories,
}

impl Fargate {
    async fn run(self) {
        let this = Arc::new(self);
        let mut started = HashSet::new();
        loop {
            // A failed poll is tried again at the next tick: under load the emulator
            // answers 500s, and a panic here would end the stand-in without a word.
            match try_tasks(&this.ecs, &this.cluster, DesiredStatus::Running).await {
                Ok(running) => {
                    for task in running {
                        let arn = task.task_arn().unwrap_or_default().to_string();
                        if started.insert(arn) {
                            tokio::spawn(Arc::clone(&this).run_task(task));
                        }
                    }
                }
                Err(error) => eprintln!("fargate stand-in: {error}; polling again"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn run_task(self: Arc<Self>, task: Task) {
        let exit_code = match self.sandbox {
            Sandbox::RunRunner => self.run_runner(&task).await,
            Sandbox::Crash { exit_code } => exit_code,
        };
        // Tried until it goes through, as ECS and EventBridge would: a panic in this
        // spawned task would leave the deployment running without a word.
        for attempt in 1.. {
            match self.stop(&task, exit_code).await {
                Ok(()) => return,
                Err(error) => eprintln!("fargate stand-in, attempt {attempt}: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the task with the container's exit code and hands the stop to task-events.
    async fn stop(&self, task: &Task, exit_code: i32) -> Result<(), String> {
        let stopped = self
            .ecs
            .stop_task()
            .cluster(&self.cluster)
            .task(task.task_arn().unwrap_or_default())
            .reason("Essential container in task exited")
            .send()
            .await
            .map_err(|error| format!("StopTask: {}", DisplayErrorContext(error)))?
            .task
            .ok_or("StopTask returned no task")?;
        let event = task_state_change(&stopped, Some(exit_code));
        handle_task_state_change(&self.task_events, event)
            .await
            .map_err(|error| format!("task-events: {error}"))
    }

    /// Runs the runner as the task's container would: only the container overrides'
    /// variables and those of its environment files, plus what the runner image provides (tools, PATH, a home whose git
    /// configuration stands in for the network).
    async fn run_runner(&self, task: &Task) -> i32 {
        let home = tempfile::tempdir().expect("the container's home");
        let git_config: String = self
            .repositories
            .lock()
            .unwrap()
            .iter()
            .map(|(url, dir)| format!("[url \"file://{}\"]\n\tinsteadOf = {url}\n", dir.display()))
            .collect();
        std::fs::write(home.path().join(".gitconfig"), git_config).expect("write .gitconfig");
        let work_dir = tempfile::tempdir().expect("the task's work directory");
        let mut command = tokio::process::Command::new(binary("envplane-runner"));
        command
            .env_clear()
            .envs(container_environment(&self.s3, task).await)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", home.path())
            .env("TMPDIR", work_dir.path())
            .env("ENVPLANE_TOOLS_DIR", tools_dir())
            .current_dir(work_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        let mut runner = command.spawn().expect("start envplane-runner");
        let arn = task.task_arn().unwrap_or_default();
        let mut asked_to_stop = false;
        loop {
            tokio::select! {
                status = runner.wait() => return status.expect("wait for envplane-runner").code().unwrap_or(137),
                _ = tokio::time::sleep(Duration::from_millis(200)), if !asked_to_stop => {
                    // StopTask (a cancel) reaches the container as SIGTERM, as on ECS.
                    if self.desired_stopped(arn).await {
                        let pid = Pid::from_raw(runner.id().expect("the runner's pid") as i32);
                        let _ = kill(pid, Signal::SIGTERM);
                        asked_to_stop = true;
                    }
                }
            }
        }
    }

    async fn desired_stopped(&self, task_arn: &str) -> bool {
        let described = self
            .ecs
            .describe_tasks()
            .cluster(&self.cluster)
            .tasks(task_arn)
            .send()
            .await;
        described.is_ok_and(|described| {
            described
                .tasks()
                .iter()
                .any(|task| task.desired_status() == Some("STOPPED"))
        })
    }
}

/// The variables ECS gives the task's container: those of the container overrides,
/// then those of its environment files, read from S3 as the execution role would.
async fn container_environment(s3: &aws_sdk_s3::Client, task: &Task) -> Vec<(String, String)> {
    let mut variables = override_variables(task);
    for file in container_overrides(task).flat_map(|container| container.environment_files()) {
        let text = environment_file(s3, file.value()).await;
        variables.extend(text.lines().filter_map(|line| {
            let (name, value) = line.split_once('=')?;
            Some((name.to_string(), value.to_string()))
        }));
    }
    variables
}

fn container_overrides(task: &Task) -> impl Iterator<Item = &ContainerOverride> {
    task.overrides()
        .map(|overrides| overrides.container_overrides())
        .unwrap_or_default()
        .iter()
}

/// The variables written in the task's container overrides themselves: what
/// DescribeTasks, CloudTrail and the task events show.
fn override_variables(task: &Task) -> Vec<(String, String)> {
    container_overrides(task)
        .flat_map(|container| container.environment())
        .map(|pair| {
            (
                pair.name().unwrap_or_default().to_string(),
                pair.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The text of an environment file named by its S3 object ARN.
async fn environment_file(s3: &aws_sdk_s3::Client, arn: &str) -> String {
    let (bucket, key) = arn
        .strip_prefix("arn:aws:s3:::")
        .and_then(|path| path.split_once('/'))
        .unwrap_or_else(|| panic!("not an S3 object ARN: {arn}"));
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("GetObject of an environment file");
    let bytes = object.body.collect().await.expect("environment file body");
    String::from_utf8(bytes.into_bytes().to_vec()).expect("an environment file is text")
}

/// The cluster's tasks with `desired` status, described with their tags.
pub async fn tasks(ecs: &aws_sdk_ecs::Client, cluster: &str, desired: DesiredStatus) -> Vec<Task> {
    try_tasks(ecs, cluster, desired)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

async fn try_tasks(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    desired: DesiredStatus,
) -> Result<Vec<Task>, String> {
    let arns = ecs
        .list_tasks()
        .cluster(cluster)
        .desired_status(desired)
        .send()
        .await
        .map_err(|error| format!("ListTasks: {}", DisplayErrorContext(error)))?
        .task_arns
        .unwrap_or_default();
    if arns.is_empty() {
        return Ok(Vec::new());
    }
    Ok(ecs
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(arns))
        .send()
        .await
        .map_err(|error| format!("DescribeTasks: {}", DisplayErrorContext(error)))?
        .tasks
        .unwrap_or_default())
}

impl AwsApp {
    /// Builds the installation's functions in `regions.this` as well, with the stand-ins
    /// `harness` asks for.
    pub async fn second_region(&self, harness: Harness, regions: Regions) -> SecondRegion {
        let mut settings = self.stack.settings.clone();
        settings.regions = Some(regions);
        settings.queue_url =
            envplane_aws::emulator::create_queue(&self.sqs, "envplane-deployments-b").await;
        (settings.ecs_cluster, settings.runner_task_definition) =
            envplane_aws::emulator::runner_cluster(&self.ecs).await;
        let sdk = &self.stack.sdk;
        SecondRegion {
            api: envplane_aws::config::platform(&settings, sdk).platform,
            reaper: envplane_aws::config::reaper_platform(&settings, sdk).platform,
            stand_ins: stand_ins(harness, &settings, sdk, &self.repositories),
            settings,
        }
    }

    /// Plays λ reporter once, as the SQS event source mapping runs it: what the reports
    /// queue holds (after waiting up to a second) goes to `reporter`'s handler, which
    /// must take every record.
    pub async fn run_reporter_once(&self, reporter: &Platform) -> Result<(), String> {
        let reports_queue = self.stack.settings.reports_queue_url.clone();
        let messages = self
            .sqs
            .receive_message()
            .queue_url(reports_queue.expect("a stack with a reports queue"))
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .messages
            .unwrap_or_default();
        if !messages.is_empty() {
            let failed = handle_reports(reporter, sqs_event(&messages)).await;
            assert!(failed.batch_item_failures.is_empty());
        }
        Ok(())
    }

    /// A project, a template on `repository` (served at an `https://` URL) and an
    /// environment; returns their ids.
    pub async fn environment_on(
        &self,
        repository: &tempfile::TempDir,
        name: &str,
        requires_approval: bool,
    ) -> Seeded {
        let url = format!("https://git.envplane.test/acme/{name}.git");
        self.repositories
            .lock()
            .unwrap()
            .push((url.clone(), repository.path().to_path_buf()));
        let template = |project_id: &str| json!({ "name": name, "project_id": project_id, "repository": url, "iac_version": "1.0.3" });
        // The tests' one admin key both requests and approves.
        let environment = json!({
            "name": name,
            "requires_approval": requires_approval,
            "allow_self_approval": requires_approval,
        });
        self.app
            .create_environment(&self.app.admin_key, name, template, environment)
            .await
    }

    /// `startedBy` of every task the installation ever started, sorted.
    pub async fn started_tasks(&self) -> Vec<String> {
        let cluster = &self.stack.settings.ecs_cluster;
        // By ARN: a task that stops between the two listings appears in both.
        let mut started = std::collections::BTreeMap::new();
        for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
            for task in tasks(&self.ecs, cluster, desired).await {
                if let (Some(arn), Some(started_by)) = (task.task_arn(), task.started_by()) {
                    started.insert(arn.to_string(), started_by.to_string());
                }
            }
        }
        let mut started: Vec<String> = started.into_values().collect();
        started.sort();
        started
    }

    /// The runner token of the first sandbox task to run, as ECS hands it to the
    /// container (for tests that play the sandbox themselves).
    pub async fn runner_token(&self) -> String {
        let s3 = envplane_aws::config::s3_client(&self.stack.sdk, true);
        let task = eventually("a sandbox task running", || async {
            let running = tasks(
                &self.ecs,
                &self.stack.settings.ecs_cluster,
                DesiredStatus::Running,
            )
            .await;
            running
                .into_iter()
                .next()
                .ok_or_else(|| "no running task".to_string())
        })
        .await;
        container_environment(&s3, &task)
            .await
            .into_iter()
            .find(|(name, _)| name == RUNNER_TOKEN_VARIABLE)
            .map(|(_, token)| token)
            .expect("the sandbox task's environment has its launch credential")
    }

    /// The state credential of the first sandbox to run, traded for as its runner does
    /// (for tests that play the sandbox).
    pub async fn sandbox_state_credential(&self) -> String {
        let launch = self.runner_token().await;
        let session: serde_json::Value = self
            .app
            .request(reqwest::Method::POST, "/v1/runner/session")
            .bearer_auth(&launch)
            .send()
            .await
            .expect("trade the launch credential")
            .json()
            .await
            .expect("a session");
        session["state_token"]
            .as_str()
            .expect("a state credential")
            .to_string()
    }

    /// A call to the state backend (`/v1/state/<environment><suffix>`) as Terraform makes
    /// it, with `state` as its password.
    pub fn state_call(
        &self,
        method: reqwest::Method,
        environment_id: &str,
        suffix: &str,
        state: &str,
    ) -> reqwest::RequestBuilder {
        self.app
            .request(method, &format!("/v1/state/{environment_id}{suffix}"))
            .basic_auth("envplane", Some(state))
    }

    /// Waits until the task of a deployment phase (`<deployment_id>.<attempt>`) stopped.
    pub async fn wait_until_stopped(&self, phase: &str) {
        let cluster = &self.stack.settings.ecs_cluster;
        eventually(&format!("the task of {phase} stopped"), || async {
            let stopped = tasks(&self.ecs, cluster, DesiredStatus::Stopped).await;
            if stopped.iter().any(|task| task.started_by() == Some(phase)) {
                Ok(())
            } else {
                Err(format!("{} stopped tasks, none of {phase}", stopped.len()))
            }
        })
        .await
    }

    /// Everything the installation keeps at rest or sent to ECS, as text: every item of
    /// the table, every version of every object in the artifacts bucket, every task
    /// (with its overrides) ever started. Not the launch bucket, whose files are the
    /// sandboxes' launch credentials, for the execution role's eyes only.
    pub async fn everything_stored(&self) -> String {
        let mut text = String::new();
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.stack.sdk);
        let mut start = None;
        loop {
            let page = dynamodb
                .scan()
                .table_name(&self.stack.settings.table_name)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("Scan");
            text.push_str(&format!("{:?}", page.items()));
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        let s3 = envplane_aws::config::s3_client(&self.stack.sdk, true);
        let bucket = &self.stack.settings.artifacts_bucket;
        let versions = s3
            .list_object_versions()
            .bucket(bucket)
            .send()
            .await
            .expect("ListObjectVersions");
        for version in versions.versions() {
            let object = s3
                .get_object()
                .bucket(bucket)
                .key(version.key().unwrap_or_default())
                .set_version_id(version.version_id().map(str::to_string))
                .send()
                .await
                .expect("GetObject");
            let bytes = object.body.collect().await.expect("object body");
            text.push_str(&String::from_utf8_lossy(&bytes.into_bytes()));
        }
        let cluster = &self.stack.settings.ecs_cluster;
        for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
            for task in tasks(&self.ecs, cluster, desired).await {
                // The SDK's Debug redacts the overrides' environment: spell it out.
                for (name, value) in override_variables(&task) {
                    text.push_str(&format!("{name}={value}\n"));
                }
                text.push_str(&format!("{task:?}"));
            }
        }
        text
    }

    /// The keys of the bucket's objects.
    pub async fn artifact_keys(&self) -> Vec<String> {
        envplane_aws::config::s3_client(&self.stack.sdk, true)
            .list_objects_v2()
            .bucket(&self.stack.settings.artifacts_bucket)
            .send()
            .await
            .expect("ListObjectsV2")
            .contents()
            .iter()
            .filter_map(|object| object.key().map(str::to_string))
            .collect()
    }
}
