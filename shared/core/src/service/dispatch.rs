//! The dispatcher's side: start the next phase of a deployment in a sandbox when its
//! environment is free, and conclude deployments, releasing what they held.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::generate_runner_token;
use crate::deployment::{Deployment, DeploymentStatus};
use crate::model::{Environment, Template};
use crate::ports::{DeploymentMessage, IndexQuery, Kind, LaunchError, LaunchRequest, WriteOp};
use crate::{Error, Result};

use super::deployments::{message_for, status_index};
use super::{record, Loaded, PageRequest, Platform, Stored, MAX_PAGE_SIZE};

/// Held by one deployment of an environment from its first sandbox to its final status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct EnvironmentLock {
    pub deployment_id: String,
    pub acquired_at: DateTime<Utc>,
}

impl Stored for EnvironmentLock {
    const KIND: Kind = Kind::EnvironmentLock;
    const NOUN: &'static str = "environment lock";
}

/// The stored half of a runner token: only its hash is the record's unique key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RunnerTokenRecord {
    pub deployment_id: String,
    pub environment_id: String,
    pub attempt: u32,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub scope: TokenScope,
    /// A launch token is traded for the phase's job once; then it opens nothing.
    #[serde(default)]
    pub traded: bool,
}

/// What a sandbox credential opens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// What the launcher hands the sandbox (RunTask, the sandbox's environment): it can
    /// only be traded, once, for the job and the two credentials below.
    #[default]
    Launch,
    /// The runner's own: logs, steps, the plan, the result. Never given to template code.
    Runner,
    /// What Terraform (and so template code) holds: this environment's state and its
    /// lock, during this phase.
    State,
}

impl Stored for RunnerTokenRecord {
    const KIND: Kind = Kind::RunnerToken;
    const NOUN: &'static str = "runner token";
}

/// How long a sandbox may run one phase before its token stops working.
const RUNNER_TOKEN_LIFETIME_HOURS: i64 = 6;
/// Throttling or missing capacity is retried this many times before the deployment fails.
const LAUNCH_ATTEMPTS: u32 = 3;

/// What a dispatch did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchOutcome {
    /// A sandbox started for this deployment (or for an older one of its environment).
    Launched { deployment_id: String },
    /// The environment is busy; its current deployment's end dispatches the next one.
    Waiting,
    /// Too many sandboxes run already; deliver the message again later.
    AtCapacity,
    /// Nothing to do: the deployment is gone, ended or already running.
    Skipped,
    /// The sandbox could not start; the deployment failed.
    LaunchFailed { deployment_id: String },
}

/// How a deployment ends.
pub(super) struct Conclusion {
    pub status: DeploymentStatus,
    pub reason: Option<String>,
    pub outputs: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Conclusion {
    /// A failure after someone asked to cancel is the cancel taking effect; a success
    /// stands (the cancel came too late to stop the apply).
    fn for_deployment(
        deployment: &Deployment,
        status: DeploymentStatus,
        reason: Option<String>,
        outputs: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Self {
        if deployment.cancel_requested && status == DeploymentStatus::Failed {
            return Self {
                status: DeploymentStatus::Cancelled,
                reason: deployment.reason.clone(),
                outputs: None,
            };
        }
        Self {
            status,
            reason,
            outputs,
        }
    }
}

impl Platform {
    /// Handles one queue message. Idempotent: a message delivered twice starts at most
    /// one sandbox, because every start is a conditional write.
    #[tracing::instrument(skip(self), fields(deployment_id = %message.deployment_id))]
    pub async fn dispatch(&self, message: &DeploymentMessage) -> Result<DispatchOutcome> {
        let org_id = &message.org_id;
        let Some(deployment) = self
            .find::<Deployment>(org_id, &message.deployment_id)
            .await?
        else {
            return Ok(DispatchOutcome::Skipped);
        };
        if deployment.value.status != DeploymentStatus::Queued {
            return Ok(DispatchOutcome::Skipped);
        }
        let environment_id = deployment.value.environment_id.clone();
        match self
            .find::<EnvironmentLock>(org_id, &environment_id)
            .await?
        {
            // An approved deployment keeps the lock while it waits for its apply sandbox.
            Some(lock) if lock.value.deployment_id == deployment.value.id => {
                self.start_phase(deployment, false).await
            }
            Some(_) => Ok(DispatchOutcome::Waiting),
            None => {
                if self.sandboxes_running().await? >= self.settings.max_parallel_deployments {
                    return Ok(DispatchOutcome::AtCapacity);
                }
                match self.oldest_queued(org_id, &environment_id).await? {
                    Some(oldest) => self.start_phase(oldest, true).await,
                    None => Ok(DispatchOutcome::Skipped),
                }
            }
        }
    }

    async fn start_phase(
        &self,
        mut loaded: Loaded<Deployment>,
        take_lock: bool,
    ) -> Result<DispatchOutcome> {
        let org_id = loaded.stored.org_id.clone();
        let environment = self
            .load::<Environment>(&org_id, &loaded.value.environment_id)
            .await?
            .value;
        let template = self
            .load::<Template>(&org_id, &environment.template_id)
            .await?
            .value;
        let now = self.now();
        let deployment = &mut loaded.value;
        deployment.status = DeploymentStatus::Running;
        deployment.attempt += 1;
        deployment.started_at.get_or_insert(now);
        deployment.running_since = Some(now);
        deployment.resent_at = None;
        deployment.updated_at = now;
        let (token, token_hash) = generate_runner_token();
        let token_record = RunnerTokenRecord {
            deployment_id: deployment.id.clone(),
            environment_id: deployment.environment_id.clone(),
            attempt: deployment.attempt,
            expires_at: now + chrono::Duration::hours(RUNNER_TOKEN_LIFETIME_HOURS),
            scope: TokenScope::Launch,
            traded: false,
        };
        let token_id = format!("{}.{}", deployment.id, deployment.attempt);
        let mut ops = vec![
            loaded.replace_keys(None, status_index(DeploymentStatus::Running))?,
            WriteOp::Insert(record(
                &org_id,
                &token_id,
                Some(&loaded.value.id),
                Some(token_hash),
                &token_record,
            )?),
        ];
        if take_lock {
            let lock = EnvironmentLock {
                deployment_id: loaded.value.id.clone(),
                acquired_at: now,
            };
            ops.push(WriteOp::Insert(record(
                &org_id,
                &environment.id,
                None,
                None,
                &lock,
            )?));
        }
        if let Err(error) = self.store.commit(ops).await {
            return match error {
                // Another dispatcher started it, or took the environment first.
                crate::ports::StoreError::Conflict => Ok(DispatchOutcome::Waiting),
                other => Err(other.into()),
            };
        }
        let deployment_id = loaded.value.id.clone();
        let request = LaunchRequest {
            org_id: org_id.clone(),
            deployment_id: deployment_id.clone(),
            attempt: loaded.value.attempt,
            runner_token: token,
            repository: template.repository,
        };
        match self.launch_with_retries(request).await {
            Ok(()) => Ok(DispatchOutcome::Launched { deployment_id }),
            Err(error) => {
                self.conclude_by_id(
                    &org_id,
                    &deployment_id,
                    loaded.value.attempt,
                    DeploymentStatus::Failed,
                    error.to_string(),
                )
                .await?;
                Ok(DispatchOutcome::LaunchFailed { deployment_id })
            }
        }
    }

    /// Throttling and missing capacity are retried with backoff; then the error stands.
    async fn launch_with_retries(&self, request: LaunchRequest) -> Result<(), LaunchError> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match self.launcher.launch(request.clone()).await {
                Err(LaunchError::Transient(reason)) if attempt < LAUNCH_ATTEMPTS => {
                    tracing::warn!(%reason, attempt, "sandbox launch throttled; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    pub(super) async fn sandboxes_running(&self) -> Result<usize> {
        let page = self
            .store
            .list_indexed(IndexQuery {
                kind: Kind::Deployment,
                index_key: DeploymentStatus::Running.as_str().to_string(),
                after: None,
                limit: self.settings.max_parallel_deployments.max(1),
            })
            .await?;
        Ok(page.items.len())
    }

    /// The environment's oldest queued deployment: environments deploy first in, first out.
    pub(super) async fn oldest_queued(
        &self,
        org_id: &str,
        environment_id: &str,
    ) -> Result<Option<Loaded<Deployment>>> {
        let mut page = PageRequest {
            cursor: None,
            limit: Some(MAX_PAGE_SIZE),
        };
        loop {
            let (items, next) = self
                .page_loaded::<Deployment>(org_id, Some(environment_id), &page, false)
                .await?;
            if let Some(found) = items
                .into_iter()
                .find(|loaded| loaded.value.status == DeploymentStatus::Queued)
            {
                return Ok(Some(found));
            }
            match next {
                Some(next) => page.cursor = Some(next),
                None => return Ok(None),
            }
        }
    }

    /// Ends the deployment if it is still in the sandbox `attempt` it was in.
    pub(super) async fn conclude_by_id(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
        status: DeploymentStatus,
        reason: String,
    ) -> Result<Option<Deployment>> {
        let in_that_phase = |deployment: &Deployment| {
            deployment.status == DeploymentStatus::Running && deployment.attempt == attempt
        };
        let loaded = self.load::<Deployment>(org_id, deployment_id).await?;
        if !in_that_phase(&loaded.value) {
            return Ok(None);
        }
        match self.conclude(loaded, status, Some(reason), None).await {
            Ok(deployment) => Ok(Some(deployment)),
            // Someone else (a report, another watchdog) ended the phase meanwhile.
            Err(Error::Conflict(_))
                if !in_that_phase(&self.load::<Deployment>(org_id, deployment_id).await?.value) =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// [`Self::conclude_by_id`], then stops the phase's sandbox if it was this call that
    /// ended it. The stop comes after the conclusion: on AWS it is a queue message, and
    /// the deployer stops only the sandboxes of deployments that ended or were cancelled.
    pub(super) async fn conclude_and_stop(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
        status: DeploymentStatus,
        reason: String,
    ) -> Result<Option<Deployment>> {
        let concluded = self
            .conclude_by_id(org_id, deployment_id, attempt, status, reason)
            .await?;
        if concluded.is_some() {
            if let Err(error) = self.launcher.stop(org_id, deployment_id, attempt).await {
                tracing::warn!(%deployment_id, %error, "stopping the sandbox failed");
            }
        }
        Ok(concluded)
    }

    /// Moves a deployment to a final status (or to waiting for approval), releasing
    /// what it held: its runner tokens always; its environment lock and Terraform state
    /// lock when it ends. Then the environment's next queued deployment is dispatched.
    pub(super) async fn conclude(
        &self,
        mut loaded: Loaded<Deployment>,
        status: DeploymentStatus,
        reason: Option<String>,
        outputs: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<Deployment> {
        let org_id = loaded.stored.org_id.clone();
        for _ in 0..5 {
            let conclusion =
                Conclusion::for_deployment(&loaded.value, status, reason.clone(), outputs.clone());
            if !loaded.value.status.can_become(conclusion.status) {
                return Err(Error::conflict(format!(
                    "the deployment is {} and cannot become {}",
                    loaded.value.status.as_str(),
                    conclusion.status.as_str()
                )));
            }
            match self.try_conclude(&mut loaded, &conclusion).await {
                Err(Error::Store(crate::ports::StoreError::Conflict)) => {
                    loaded = self.load::<Deployment>(&org_id, &loaded.stored.id).await?;
                }
                Err(error) => return Err(error),
                Ok(()) => {
                    let deployment = loaded.value;
                    if conclusion.status.is_final() {
                        self.dispatch_next(&org_id, &deployment.environment_id)
                            .await?;
                    }
                    return Ok(deployment);
                }
            }
        }
        Err(Error::conflict("the deployment kept changing; try again"))
    }

    async fn try_conclude(
        &self,
        loaded: &mut Loaded<Deployment>,
        conclusion: &Conclusion,
    ) -> Result<()> {
        let org_id = loaded.stored.org_id.clone();
        let now = self.now();
        let deployment = &mut loaded.value;
        deployment.status = conclusion.status;
        deployment.updated_at = now;
        if conclusion.reason.is_some() {
            deployment.reason = conclusion.reason.clone();
        }
        if conclusion.status.is_final() {
            deployment.finished_at = Some(now);
        }
        let deployment_id = deployment.id.clone();
        let environment_id = deployment.environment_id.clone();
        let mut ops = vec![loaded.replace_keys(None, status_index(conclusion.status))?];
        for token in self
            .all::<RunnerTokenRecord>(&org_id, &deployment_id)
            .await?
        {
            ops.push(token.delete());
        }
        if conclusion.status.is_final() {
            if let Some(lock) = self
                .find::<EnvironmentLock>(&org_id, &environment_id)
                .await?
            {
                if lock.value.deployment_id == deployment_id {
                    ops.push(lock.delete());
                }
            }
            ops.extend(
                self.state_lock_release(&org_id, &environment_id, &deployment_id)
                    .await?,
            );
            // In the same transaction: whoever sees the deployment ended sees its
            // outputs on the environment (a conflict concludes again from the start).
            if let Some(outputs) = &conclusion.outputs {
                if let Some(mut environment) =
                    self.find::<Environment>(&org_id, &environment_id).await?
                {
                    environment.value.outputs = Some(outputs.clone());
                    ops.push(environment.replace()?);
                }
            }
        }
        Ok(self.store.commit(ops).await?)
    }

    /// Sends the message that starts the environment's next queued deployment, if any.
    pub(super) async fn dispatch_next(&self, org_id: &str, environment_id: &str) -> Result<()> {
        if let Some(next) = self.oldest_queued(org_id, environment_id).await? {
            self.announce(org_id, &next.value).await;
        }
        Ok(())
    }

    /// After a restart of a single-process installation: sandboxes died with the
    /// process, so running deployments failed; queued ones are announced again.
    pub async fn recover_after_restart(&self) -> Result<usize> {
        let running = self
            .indexed::<Deployment>(DeploymentStatus::Running)
            .await?;
        let count = running.len();
        for loaded in running {
            let attempt = loaded.value.attempt;
            self.conclude_by_id(
                &loaded.stored.org_id,
                &loaded.stored.id,
                attempt,
                DeploymentStatus::Failed,
                "envplane restarted while the deployment was running; its sandbox stopped with the server".into(),
            )
            .await?;
        }
        for loaded in self.indexed::<Deployment>(DeploymentStatus::Queued).await? {
            self.queue
                .send(&message_for(&loaded.stored.org_id, &loaded.value))
                .await?;
        }
        Ok(count)
    }

    /// A sandbox stopped (exited, crashed, was killed). If its deployment was still in
    /// that sandbox's phase, the deployment fails with the reason (or ends cancelled).
    pub async fn sandbox_stopped(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
        description: &str,
    ) -> Result<()> {
        let reason = format!("the sandbox stopped before reporting a result: {description}");
        match self
            .conclude_by_id(
                org_id,
                deployment_id,
                attempt,
                DeploymentStatus::Failed,
                reason,
            )
            .await
        {
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Every record of `T` whose index key is `status`, across organizations.
    pub(super) async fn indexed<T: Stored>(
        &self,
        status: DeploymentStatus,
    ) -> Result<Vec<Loaded<T>>> {
        let mut found = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_indexed(IndexQuery {
                    kind: T::KIND,
                    index_key: status.as_str().to_string(),
                    after,
                    limit: MAX_PAGE_SIZE,
                })
                .await?;
            for record in page.items {
                found.push(Loaded {
                    value: super::decode(&record)?,
                    stored: record,
                });
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(found),
            }
        }
    }
}

impl Platform {
    /// The message kept failing and was given up: a deployment still queued fails with
    /// the reason, so nobody waits for it forever.
    pub async fn dead_lettered(&self, message: &DeploymentMessage, reason: &str) -> Result<()> {
        let Some(loaded) = self
            .find::<Deployment>(&message.org_id, &message.deployment_id)
            .await?
        else {
            return Ok(());
        };
        if loaded.value.status == DeploymentStatus::Queued {
            self.conclude(
                loaded,
                DeploymentStatus::Failed,
                Some(reason.to_string()),
                None,
            )
            .await?;
        }
        Ok(())
    }
}
