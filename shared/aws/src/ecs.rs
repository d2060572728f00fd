//! The `Launcher` port on ECS Fargate: one RunTask per deployment phase, in the private
//! subnets, without a public IP, carrying only who the sandbox is, how to call back and
//! which environment file holds its launch credential ([`crate::launch_file`]).
//!
//! Every task is named by its `startedBy` (`<deployment_id>.<attempt>`) and `group`
//! (`envplane:<org_id>`), which is how task-events finds the deployment of a stopped
//! task and how `stop` finds the tasks of a deployment.

use async_trait::async_trait;
use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, DesiredStatus, EnvironmentFile,
    EnvironmentFileType, Failure, KeyValuePair, LaunchType, NetworkConfiguration, Tag,
    TaskOverride,
};
use envplane_core::ports::{LaunchError, LaunchRequest, Launcher};
use sha2::{Digest, Sha256};

use crate::launch_file::LaunchFiles;
use crate::lazy::LazyClient;

/// The reason StopTask records when a deployment is cancelled.
pub const STOP_REASON: &str = "cancelled by envplane";

/// The only environment variables a RunTask call sets: never a variable value, never
/// a credential.
pub const DEPLOYMENT_ID_VARIABLE: &str = "ENVPLANE_DEPLOYMENT_ID";
pub const API_URL_VARIABLE: &str = "ENVPLANE_API_URL";
/// The launch credential's variable, set by ECS from the phase's environment file.
pub const RUNNER_TOKEN_VARIABLE: &str = "ENVPLANE_RUNNER_TOKEN";

/// ECS limits: `startedBy` up to 36 characters, `clientToken` up to 64.
const STARTED_BY_MAX: usize = 36;
const GROUP_PREFIX: &str = "envplane:";

/// Where and how sandboxes run. `AwsSettings` guarantees at least one subnet and one
/// security group: a sandbox never runs in a default network.
#[derive(Debug, Clone)]
pub struct EcsSettings {
    pub cluster: String,
    /// Family, `family:revision` or ARN of the runner's task definition.
    pub task_definition: String,
    /// The runner's container in that task definition.
    pub container: String,
    /// Private subnets (egress through the NAT gateways with the published IPs).
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    /// The API sandboxes call back.
    pub api_url: String,
}

/// The `startedBy` of a deployment phase's task.
pub fn started_by(deployment_id: &str, attempt: u32) -> String {
    format!("{deployment_id}.{attempt}")
}

/// The deployment and attempt of a task started by envplane, from its `startedBy`.
pub fn parse_started_by(started_by: &str) -> Option<(&str, u32)> {
    let (deployment_id, attempt) = started_by.rsplit_once('.')?;
    let well_formed = deployment_id.starts_with("dep_")
        && deployment_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !attempt.is_empty()
        && attempt.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return None;
    }
    Some((deployment_id, attempt.parse().ok()?))
}

/// The task group of an organization's sandboxes.
pub fn group(org_id: &str) -> String {
    format!("{GROUP_PREFIX}{org_id}")
}

/// The organization of a task started by envplane, from its `group`.
pub fn parse_group(group: &str) -> Option<&str> {
    let org_id = group.strip_prefix(GROUP_PREFIX)?;
    let well_formed = !org_id.is_empty()
        && org_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    well_formed.then_some(org_id)
}

/// RunTask's idempotency token: the same deployment phase always gets the same token, so
/// a retried call never starts a second task. SHA-256 in hex is exactly 64 characters.
pub fn client_token(deployment_id: &str, attempt: u32) -> String {
    hex::encode(Sha256::digest(format!(
        "envplane/run-task/{deployment_id}/{attempt}"
    )))
}

/// Starts and stops sandboxes as ECS Fargate tasks.
#[derive(Debug, Clone)]
pub struct EcsLauncher {
    client: LazyClient<aws_sdk_ecs::Client>,
    settings: EcsSettings,
    launch_files: LaunchFiles,
}

impl EcsLauncher {
    pub fn new(
        client: impl Into<LazyClient<aws_sdk_ecs::Client>>,
        settings: EcsSettings,
        launch_files: LaunchFiles,
    ) -> Self {
        Self {
            client: client.into(),
            settings,
            launch_files,
        }
    }

    /// The RunTask call of one deployment phase, before it is sent.
    fn run_task(&self, request: &LaunchRequest) -> Result<RunTaskFluentBuilder, LaunchError> {
        let started_by = started_by(&request.deployment_id, request.attempt);
        if started_by.len() > STARTED_BY_MAX {
            return Err(LaunchError::Failed(format!(
                "the deployment id {} is too long for an ECS task",
                request.deployment_id
            )));
        }
        let network = AwsVpcConfiguration::builder()
            .set_subnets(Some(self.settings.subnets.clone()))
            .set_security_groups(Some(self.settings.security_groups.clone()))
            .assign_public_ip(AssignPublicIp::Disabled)
            .build()
            .map_err(|e| LaunchError::Failed(format!("invalid network configuration: {e}")))?;
        let variable =
            |name: &str, value: &str| KeyValuePair::builder().name(name).value(value).build();
        let launch_file = EnvironmentFile::builder()
            .r#type(EnvironmentFileType::S3)
            .value(self.launch_files.arn(request))
            .build()
            .map_err(|e| LaunchError::Failed(format!("invalid launch file: {e}")))?;
        let container = ContainerOverride::builder()
            .name(&self.settings.container)
            .environment(variable(DEPLOYMENT_ID_VARIABLE, &request.deployment_id))
            .environment(variable(API_URL_VARIABLE, &self.settings.api_url))
            .environment_files(launch_file)
            .build();
        let tag = |key: &str, value: String| Tag::builder().key(key).value(value).build();
        Ok(self
            .client
            .get()
            .run_task()
            .cluster(&self.settings.cluster)
            .task_definition(&self.settings.task_definition)
            .launch_type(LaunchType::Fargate)
            .count(1)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(network)
                    .build(),
            )
            .client_token(client_token(&request.deployment_id, request.attempt))
            .started_by(started_by)
            .group(group(&request.org_id))
            .enable_execute_command(false)
            .tags(tag("envplane:deployment-id", request.deployment_id.clone()))
            .tags(tag("envplane:org-id", request.org_id.clone()))
            .tags(tag("envplane:attempt", request.attempt.to_string()))
            .overrides(
                TaskOverride::builder()
                    .container_overrides(container)
                    .build(),
            ))
    }

    /// The running tasks of one deployment phase, found by their `startedBy`.
    async fn running_tasks(&self, started_by: &str) -> Result<Vec<String>, LaunchError> {
        let listed = self
            .client
            .get()
            .list_tasks()
            .cluster(&self.settings.cluster)
            .started_by(started_by)
            .desired_status(DesiredStatus::Running)
            .send()
            .await
            .map_err(|e| sdk_error("ListTasks", e))?;
        Ok(listed.task_arns().to_vec())
    }
}

#[async_trait]
impl Launcher for EcsLauncher {
    #[tracing::instrument(skip_all, fields(deployment_id = %request.deployment_id, attempt = request.attempt))]
    async fn launch(&self, request: LaunchRequest) -> Result<(), LaunchError> {
        let run_task = self.run_task(&request)?;
        // clientToken makes RunTask idempotent on AWS; this check also covers endpoints
        // that ignore it (the emulator does) and tokens older than ECS remembers.
        let phase = started_by(&request.deployment_id, request.attempt);
        if !self.running_tasks(&phase).await?.is_empty() {
            tracing::info!("the sandbox of this deployment phase is already running");
            return Ok(());
        }
        self.launch_files.write(&request).await?;
        let output = run_task.send().await.map_err(|e| sdk_error("RunTask", e))?;
        if let Some(task) = output.tasks().first() {
            tracing::info!(
                task_arn = task.task_arn().unwrap_or_default(),
                "sandbox started"
            );
            return Ok(());
        }
        Err(failures_error(output.failures()))
    }

    #[tracing::instrument(skip(self))]
    async fn stop(
        &self,
        _org_id: &str,
        deployment_id: &str,
        attempt: u32,
    ) -> Result<(), LaunchError> {
        for task_arn in self
            .running_tasks(&started_by(deployment_id, attempt))
            .await?
        {
            self.client
                .get()
                .stop_task()
                .cluster(&self.settings.cluster)
                .task(&task_arn)
                .reason(STOP_REASON)
                .send()
                .await
                .map_err(|e| sdk_error("StopTask", e))?;
            tracing::info!(%task_arn, "sandbox stopped");
        }
        Ok(())
    }
}

/// RunTask answered without a task: capacity and rate limits are worth retrying, the
/// rest (a missing task definition, a bad subnet) is not.
fn failures_error(failures: &[Failure]) -> LaunchError {
    if failures.is_empty() {
        return LaunchError::Failed("RunTask started no task and reported no failure".into());
    }
    let describe = |failure: &Failure| {
        let reason = failure.reason().unwrap_or("unknown reason");
        match failure.detail() {
            Some(detail) if !detail.is_empty() => format!("{reason} ({detail})"),
            _ => reason.to_string(),
        }
    };
    let text = failures.iter().map(describe).collect::<Vec<_>>().join("; ");
    if failures
        .iter()
        .all(|failure| failure.reason().is_some_and(is_transient_reason))
    {
        LaunchError::Transient(text)
    } else {
        LaunchError::Failed(text)
    }
}

/// Failure reasons ECS gives when it has no room for the task right now.
fn is_transient_reason(reason: &str) -> bool {
    let lower = reason.to_ascii_lowercase();
    reason.starts_with("RESOURCE:")
        || reason == "AGENT"
        || lower.contains("capacity is unavailable")
        || lower.contains("limit on the number of tasks")
        || is_throttling_message(reason)
}

/// ECS reports some throttling as a `ClientException` saying "Rate exceeded".
fn is_throttling_message(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("rate exceeded") || lower.contains("throttl")
}

/// An SDK error as a launch error: throttling, server errors and network failures are
/// transient (retrying RunTask is safe thanks to its client token), the rest is final.
fn sdk_error<E, R>(operation: &str, error: SdkError<E, R>) -> LaunchError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let transient = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            matches!(
                code,
                "ThrottlingException"
                    | "Throttling"
                    | "TooManyRequestsException"
                    | "RequestLimitExceeded"
                    | "ServerException"
                    | "ServiceUnavailableException"
            ) || service.err().message().is_some_and(is_throttling_message)
        }
        _ => false,
    };
    let text = format!("{operation} failed: {}", DisplayErrorContext(&error));
    if transient {
        LaunchError::Transient(text)
    } else {
        LaunchError::Failed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::{
        manual_task_progression, runner_cluster, sandbox_network, sdk_config, unique_name,
    };
    use aws_sdk_ecs::types::{Task, TaskField};
    use envplane_core::secrecy::SecretString;

    const TOKEN: &str = "ert_runner_token_for_the_test";
    const API_URL: &str = "https://api.envplane.example.com";

    fn request(deployment_id: &str, attempt: u32) -> LaunchRequest {
        LaunchRequest {
            org_id: "org_01jz8k4m2v6q9r3t5w7y1a3c5e".into(),
            deployment_id: deployment_id.into(),
            attempt,
            runner_token: SecretString::from(TOKEN),
            repository: "https://github.com/acme/infra.git".into(),
        }
    }

    fn deployment_id() -> String {
        envplane_core::ids::new_id("dep")
    }

    fn settings(subnets: Vec<String>, security_groups: Vec<String>, cluster: &str) -> EcsSettings {
        EcsSettings {
            cluster: cluster.into(),
            task_definition: "envplane-runner".into(),
            container: "runner".into(),
            subnets,
            security_groups,
            api_url: API_URL.into(),
        }
    }

    #[test]
    fn names_round_trip_and_fit_the_limits() {
        let id = deployment_id();
        assert_eq!(id.len(), 30);
        let started = started_by(&id, 12345);
        assert!(started.len() <= STARTED_BY_MAX);
        assert_eq!(parse_started_by(&started), Some((id.as_str(), 12345)));
        assert_eq!(parse_started_by("ecs-svc/1234567890"), None);
        assert_eq!(parse_started_by("someone.else"), None);
        assert_eq!(parse_started_by("dep_1."), None);
        assert_eq!(parse_started_by("dep_1.x"), None);
        assert_eq!(parse_group(&group("org_1")), Some("org_1"));
        assert_eq!(parse_group("service:api"), None);
        assert_eq!(parse_group("envplane:"), None);

        let token = client_token(&id, 1);
        assert_eq!(token.len(), 64);
        assert_eq!(token, client_token(&id, 1));
        assert_ne!(token, client_token(&id, 2));
        assert_ne!(token, client_token(&deployment_id(), 1));
    }

    #[test]
    fn failures_are_sorted_into_transient_and_final() {
        let failure = |reason: &str| Failure::builder().reason(reason).build();
        for reason in [
            "Capacity is unavailable at this time. Please try again later or in a different availability zone",
            "RESOURCE:MEMORY",
            "RESOURCE:ENI",
            "You've reached the limit on the number of tasks you can run concurrently",
        ] {
            assert!(
                matches!(failures_error(&[failure(reason)]), LaunchError::Transient(_)),
                "{reason}"
            );
        }
        let LaunchError::Failed(text) = failures_error(&[Failure::builder()
            .reason("MISSING")
            .detail("subnet-123 does not exist")
            .build()])
        else {
            panic!("a missing subnet is final");
        };
        assert_eq!(text, "MISSING (subnet-123 does not exist)");
        assert!(matches!(failures_error(&[]), LaunchError::Failed(_)));
    }

    /// A client that is never sent anything.
    fn offline_client() -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::from_conf(
            aws_sdk_ecs::Config::builder()
                .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
                .build(),
        )
    }

    fn offline_launch_files() -> LaunchFiles {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .build(),
        );
        LaunchFiles::new(s3, "envplane-launch", "eu-west-1")
    }

    /// Whoever reads DescribeTasks, CloudTrail or the task event sees the request: it
    /// names the launch file, never the credential.
    #[test]
    fn run_task_carries_no_credential_and_a_private_network() {
        let launcher = EcsLauncher::new(
            offline_client(),
            settings(
                vec!["subnet-a".into(), "subnet-b".into()],
                vec!["sg-1".into()],
                "envplane",
            ),
            offline_launch_files(),
        );
        let id = deployment_id();
        let builder = launcher.run_task(&request(&id, 2)).unwrap();
        let input = builder.as_input();
        assert_eq!(input.get_launch_type(), &Some(LaunchType::Fargate));
        assert_eq!(input.get_count(), &Some(1));
        let vpc = input
            .get_network_configuration()
            .as_ref()
            .and_then(|n| n.awsvpc_configuration())
            .unwrap();
        assert_eq!(vpc.subnets(), ["subnet-a", "subnet-b"]);
        assert_eq!(vpc.security_groups(), ["sg-1"]);
        assert_eq!(vpc.assign_public_ip(), Some(&AssignPublicIp::Disabled));
        assert_eq!(input.get_client_token(), &Some(client_token(&id, 2)));
        assert_eq!(input.get_started_by(), &Some(format!("{id}.2")));
        assert_eq!(
            input.get_group(),
            &Some("envplane:org_01jz8k4m2v6q9r3t5w7y1a3c5e".to_string())
        );
        let overrides = input.get_overrides().as_ref().unwrap();
        assert_eq!(overrides.container_overrides().len(), 1);
        let container = &overrides.container_overrides()[0];
        assert_eq!(container.name(), Some("runner"));
        assert!(container.command().is_empty());
        assert_eq!(
            environment(container.environment()),
            [
                (DEPLOYMENT_ID_VARIABLE.to_string(), id.clone()),
                (API_URL_VARIABLE.to_string(), API_URL.to_string()),
            ]
        );
        let files: Vec<(&EnvironmentFileType, &str)> = container
            .environment_files()
            .iter()
            .map(|file| (file.r#type(), file.value()))
            .collect();
        let file_arn = format!("arn:aws:s3:::envplane-launch/launch/{id}/2.env");
        assert_eq!(files, [(&EnvironmentFileType::S3, file_arn.as_str())]);
        // The SDK's Debug redacts the environment, which is checked above.
        assert!(!format!("{input:?}").contains(TOKEN));
        // Nothing else in the task overrides: no role, no command, no extra container.
        assert!(overrides.task_role_arn().is_none() && overrides.execution_role_arn().is_none());
        let tags: Vec<(&str, &str)> = input
            .get_tags()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
            .collect();
        assert!(tags.contains(&("envplane:deployment-id", id.as_str())));
        assert!(tags.contains(&("envplane:org-id", "org_01jz8k4m2v6q9r3t5w7y1a3c5e")));
    }

    fn environment(pairs: &[KeyValuePair]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|pair| {
                (
                    pair.name().unwrap_or_default().to_string(),
                    pair.value().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    struct Sandbox {
        ecs: aws_sdk_ecs::Client,
        s3: aws_sdk_s3::Client,
        launch_bucket: String,
        launcher: EcsLauncher,
        cluster: String,
    }

    /// The sandbox network, a cluster and the runner task definition in the emulator,
    /// with tasks kept at RUNNING until stopped.
    async fn sandbox() -> Sandbox {
        manual_task_progression().await;
        let (subnet, security_group) = sandbox_network().await;
        let sdk = sdk_config().await;
        let ecs = aws_sdk_ecs::Client::new(&sdk);
        let (cluster, family) = runner_cluster(&ecs).await;
        let mut settings = settings(vec![subnet], vec![security_group], &cluster);
        settings.task_definition = family;
        let s3 = crate::config::s3_client(&sdk, true);
        let launch_bucket = unique_name("envplane-launch");
        s3.create_bucket()
            .bucket(&launch_bucket)
            .send()
            .await
            .unwrap();
        let launch_files = LaunchFiles::new(s3.clone(), &launch_bucket, "us-east-1");
        Sandbox {
            launcher: EcsLauncher::new(ecs.clone(), settings, launch_files),
            ecs,
            s3,
            launch_bucket,
            cluster,
        }
    }

    impl Sandbox {
        async fn tasks(&self, desired: DesiredStatus) -> Vec<Task> {
            let arns = self
                .ecs
                .list_tasks()
                .cluster(&self.cluster)
                .desired_status(desired)
                .send()
                .await
                .unwrap()
                .task_arns
                .unwrap_or_default();
            if arns.is_empty() {
                return Vec::new();
            }
            self.ecs
                .describe_tasks()
                .cluster(&self.cluster)
                .set_tasks(Some(arns))
                .include(TaskField::Tags)
                .send()
                .await
                .unwrap()
                .tasks
                .unwrap_or_default()
        }
    }

    #[tokio::test]
    async fn launch_writes_the_launch_file_and_starts_one_task_without_the_credential() {
        let sandbox = sandbox().await;
        let id = deployment_id();
        sandbox.launcher.launch(request(&id, 1)).await.unwrap();

        let tasks = sandbox.tasks(DesiredStatus::Running).await;
        assert_eq!(tasks.len(), 1);
        let task = &tasks[0];
        assert_eq!(task.started_by(), Some(format!("{id}.1").as_str()));
        assert_eq!(
            task.group(),
            Some("envplane:org_01jz8k4m2v6q9r3t5w7y1a3c5e")
        );
        assert_eq!(task.launch_type(), Some(&LaunchType::Fargate));
        let subnet = &sandbox.launcher.settings.subnets[0];
        assert!(
            task.attachments().iter().any(|attachment| attachment
                .details()
                .iter()
                .any(|d| d.name() == Some("subnetId") && d.value() == Some(subnet))),
            "the task's network interface is not in the private subnet: {task:?}"
        );
        let overrides = task.overrides().unwrap().container_overrides();
        assert_eq!(overrides.len(), 1);
        assert_eq!(overrides[0].name(), Some("runner"));
        let mut names: Vec<String> = environment(overrides[0].environment())
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        names.sort();
        assert_eq!(names, ["ENVPLANE_API_URL", "ENVPLANE_DEPLOYMENT_ID"]);
        assert!(!format!("{task:?}").contains(TOKEN));
        let file = overrides[0].environment_files()[0].value();
        let key = format!("launch/{id}/1.env");
        assert_eq!(
            file,
            format!("arn:aws:s3:::{}/{key}", sandbox.launch_bucket)
        );
        let written = sandbox
            .s3
            .get_object()
            .bucket(&sandbox.launch_bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            written.server_side_encryption(),
            Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256)
        );
        let text = written.body.collect().await.unwrap().into_bytes();
        assert_eq!(
            text.as_ref(),
            format!("ENVPLANE_RUNNER_TOKEN={TOKEN}\n").as_bytes()
        );
        let tags: Vec<(&str, &str)> = task
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
            .collect();
        assert!(
            tags.contains(&("envplane:deployment-id", id.as_str())),
            "{tags:?}"
        );
    }

    #[tokio::test]
    async fn launching_the_same_phase_twice_starts_one_task() {
        let sandbox = sandbox().await;
        let id = deployment_id();
        sandbox.launcher.launch(request(&id, 1)).await.unwrap();
        sandbox.launcher.launch(request(&id, 1)).await.unwrap();
        assert_eq!(sandbox.tasks(DesiredStatus::Running).await.len(), 1);

        // The next phase (an approved apply) is a new sandbox.
        sandbox.launcher.launch(request(&id, 2)).await.unwrap();
        let mut started: Vec<String> = sandbox
            .tasks(DesiredStatus::Running)
            .await
            .iter()
            .filter_map(|t| t.started_by().map(str::to_string))
            .collect();
        started.sort();
        assert_eq!(started, [format!("{id}.1"), format!("{id}.2")]);
    }

    #[tokio::test]
    async fn stop_stops_only_the_tasks_of_the_deployment() {
        let sandbox = sandbox().await;
        let (cancelled, other) = (deployment_id(), deployment_id());
        sandbox
            .launcher
            .launch(request(&cancelled, 1))
            .await
            .unwrap();
        sandbox.launcher.launch(request(&other, 1)).await.unwrap();

        sandbox.launcher.stop("org_1", &cancelled, 1).await.unwrap();
        let running = sandbox.tasks(DesiredStatus::Running).await;
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].started_by(), Some(format!("{other}.1").as_str()));
        let stopped = sandbox.tasks(DesiredStatus::Stopped).await;
        assert_eq!(stopped.len(), 1);
        assert_eq!(
            stopped[0].started_by(),
            Some(format!("{cancelled}.1").as_str())
        );
        assert_eq!(stopped[0].stopped_reason(), Some(STOP_REASON));

        // Stopping again, or a deployment without a sandbox, is a no-op.
        sandbox.launcher.stop("org_1", &cancelled, 1).await.unwrap();
        sandbox
            .launcher
            .stop("org_1", &deployment_id(), 1)
            .await
            .unwrap();
        assert_eq!(sandbox.tasks(DesiredStatus::Running).await.len(), 1);
    }

    #[tokio::test]
    async fn a_missing_task_definition_fails_the_launch() {
        let sandbox = sandbox().await;
        let mut settings = sandbox.launcher.settings.clone();
        settings.task_definition = unique_name("missing");
        let launcher = EcsLauncher::new(
            sandbox.ecs.clone(),
            settings,
            sandbox.launcher.launch_files.clone(),
        );
        let error = launcher
            .launch(request(&deployment_id(), 1))
            .await
            .unwrap_err();
        let LaunchError::Failed(text) = error else {
            panic!("a missing task definition is not transient: {error}");
        };
        assert!(text.starts_with("RunTask failed"), "{text}");
        assert!(!text.contains(TOKEN));
    }
}
