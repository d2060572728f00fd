//! Starting a deployment's phase: take its environment and a sandbox slot, commit the
//! attempt, launch its sandbox; start again a sandbox that failed to start; hand a
//! freed slot to the oldest deployment that can use it.

use std::collections::HashSet;
use std::time::Duration;

use crate::deployment::{Deployment, DeploymentStatus};
use crate::model::{Environment, Template};
use crate::ports::{DeploymentMessage, IndexQuery, Kind, LaunchError, LaunchRequest};
use crate::Result;

use super::credentials::{launch_token, EnvironmentLock, RunnerTokenRecord};
use super::deployments::{message_for, status_index};
use super::{decode, record, retrying_conflicts, Loaded, PageRequest, Platform, MAX_PAGE_SIZE};

/// Sandboxes of one phase that may fail to start before the deployment fails.
pub(super) const MAX_START_ATTEMPTS: u32 = 3;

/// How long a deployment whose sandbox failed to start `failures` times waits before
/// its next attempt: 2 s, then 8 s.
fn start_backoff(failures: u32) -> Duration {
    Duration::from_secs(1 << (2 * failures.clamp(1, 4) - 1))
}

/// What a dispatch did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchOutcome {
    /// A sandbox started for this deployment (or for an older one of its environment).
    Launched { deployment_id: String },
    /// The environment is busy; its current deployment's end dispatches the next one.
    Waiting,
    /// Too many sandboxes run already; the next deployment to end hands its slot to the
    /// oldest deployment that can use it.
    AtCapacity,
    /// Nothing to do: the deployment is gone, ended or already running.
    Skipped,
    /// The sandbox could not start: it is tried again later, or the deployment failed.
    LaunchFailed { deployment_id: String },
}

/// What became of a deployment whose sandbox failed to start.
enum StartRetry {
    /// Queued again, keeping its environment, for a new attempt.
    Queued(Box<Deployment>),
    /// Out of attempts, or cancelled: it ends.
    GivenUp,
    /// It had moved on from that attempt already.
    Moot,
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
        let lock = self
            .find::<EnvironmentLock>(org_id, &environment_id)
            .await?;
        let outcome = match lock {
            // An approved deployment keeps the lock while it waits for its apply
            // sandbox, and so does one whose sandbox failed to start.
            Some(lock) if lock.value.deployment_id == deployment.value.id => {
                return self.start_phase(deployment, false).await;
            }
            Some(_) => DispatchOutcome::Waiting,
            None if self.sandboxes_running().await? >= self.settings.max_parallel_deployments => {
                DispatchOutcome::AtCapacity
            }
            None => {
                return match self.oldest_queued(org_id, &environment_id).await? {
                    Some(oldest) => self.start_phase(oldest, true).await,
                    None => Ok(DispatchOutcome::Skipped),
                };
            }
        };
        if deployment.value.resent_at.is_some() {
            self.resend_arrived(deployment).await?;
        }
        Ok(outcome)
    }

    /// The message the watchdog sent again arrived, though the deployment cannot
    /// start yet: nothing was lost, and the watchdog's count starts over.
    async fn resend_arrived(&self, mut loaded: Loaded<Deployment>) -> Result<()> {
        loaded.value.resent_at = None;
        loaded.value.updated_at = self.now();
        match self.store.commit(vec![loaded.replace()?]).await {
            // Changed meanwhile (dispatched, cancelled): that clears it too.
            Ok(()) | Err(crate::ports::StoreError::Conflict) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Commits a new attempt of the deployment's next phase (running, with a fresh
    /// launch credential, taking the environment's lock if asked), then launches its
    /// sandbox. Each attempt is its own sandbox and credential: the launcher makes
    /// launching one attempt twice start one sandbox.
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
        deployment.launched_at = None;
        deployment.resent_at = None;
        deployment.updated_at = now;
        if deployment.start_failures > 0 {
            // It said why it went back to the queue; that is over.
            deployment.reason = None;
        }
        let (token, token_insert) = launch_token(&org_id, deployment, now)?;
        let mut ops = vec![
            loaded.replace_keys(None, status_index(DeploymentStatus::Running))?,
            token_insert,
        ];
        if take_lock {
            let lock = EnvironmentLock {
                deployment_id: loaded.value.id.clone(),
                acquired_at: now,
            };
            ops.push(crate::ports::WriteOp::Insert(record(
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
        let (deployment_id, attempt) = (loaded.value.id.clone(), loaded.value.attempt);
        let request = LaunchRequest {
            org_id: org_id.clone(),
            deployment_id: deployment_id.clone(),
            attempt,
            runner_token: token,
            repository: template.repository,
        };
        match self.launcher.launch(request).await {
            Ok(()) => {
                self.record_launch(&org_id, &deployment_id, attempt).await?;
                Ok(DispatchOutcome::Launched { deployment_id })
            }
            Err(LaunchError::Transient(reason)) => {
                self.start_failed(&org_id, &deployment_id, attempt, reason)
                    .await?;
                Ok(DispatchOutcome::LaunchFailed { deployment_id })
            }
            Err(error) => {
                let failed = DeploymentStatus::Failed;
                self.conclude_by_id(&org_id, &deployment_id, attempt, failed, error.to_string())
                    .await?;
                Ok(DispatchOutcome::LaunchFailed { deployment_id })
            }
        }
    }

    /// Records that the launcher accepted the sandbox of `attempt`. If the deployment
    /// moved on meanwhile (the watchdog started another attempt, a cancel ended it),
    /// that sandbox is not wanted and is stopped.
    async fn record_launch(&self, org_id: &str, deployment_id: &str, attempt: u32) -> Result<()> {
        let recorded = retrying_conflicts("the deployment kept changing; try again", || async {
            let mut loaded = self.load::<Deployment>(org_id, deployment_id).await?;
            if !loaded.value.runs_attempt(attempt) {
                return Ok(false);
            }
            loaded.value.launched_at = Some(self.now());
            self.store.commit(vec![loaded.replace()?]).await?;
            Ok(true)
        })
        .await?;
        if !recorded {
            self.stop_quietly(org_id, deployment_id, attempt).await;
        }
        Ok(())
    }

    /// The sandbox of `attempt` failed to start (the launcher refused it for now, it
    /// stopped before its runner asked for the job, or it never came up). The
    /// deployment goes back to the queue, keeping its environment, and its message
    /// comes back after a backoff to start a new attempt; after [`MAX_START_ATTEMPTS`]
    /// it fails with the last reason. Safe to call twice: the second finds the
    /// deployment moved on.
    pub(super) async fn start_failed(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
        reason: String,
    ) -> Result<()> {
        let retry = retrying_conflicts("the deployment kept changing; try again", || {
            self.requeue_for_start(org_id, deployment_id, attempt, &reason)
        })
        .await?;
        match retry {
            StartRetry::Moot => {}
            StartRetry::GivenUp => {
                let reason = format!(
                    "its sandbox could not start ({MAX_START_ATTEMPTS} attempts): {reason}"
                );
                let failed = DeploymentStatus::Failed;
                self.conclude_and_stop(org_id, deployment_id, attempt, failed, reason)
                    .await?;
            }
            StartRetry::Queued(deployment) => {
                tracing::warn!(%deployment_id, attempt, %reason, "the sandbox failed to start; another attempt follows");
                self.stop_quietly(org_id, deployment_id, attempt).await;
                let delay = start_backoff(deployment.start_failures);
                let message = message_for(org_id, &deployment);
                if let Err(error) = self.queue.send_after(&message, delay).await {
                    // The watchdog finds it queued without a message and sends it again.
                    tracing::error!(%deployment_id, %error, "queueing the next attempt failed");
                }
                self.hand_on_slot().await;
            }
        }
        Ok(())
    }

    async fn requeue_for_start(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
        reason: &str,
    ) -> Result<StartRetry> {
        let mut loaded = self.load::<Deployment>(org_id, deployment_id).await?;
        let deployment = &mut loaded.value;
        if !deployment.runs_attempt(attempt) {
            return Ok(StartRetry::Moot);
        }
        if deployment.cancel_requested || deployment.start_failures + 1 >= MAX_START_ATTEMPTS {
            return Ok(StartRetry::GivenUp);
        }
        deployment.status = DeploymentStatus::Queued;
        deployment.start_failures += 1;
        deployment.reason = Some(format!(
            "its sandbox failed to start (attempt {} of {MAX_START_ATTEMPTS}; another follows): {reason}",
            deployment.start_failures
        ));
        deployment.running_since = None;
        deployment.launched_at = None;
        deployment.updated_at = self.now();
        let mut ops = vec![loaded.replace_keys(None, status_index(DeploymentStatus::Queued))?];
        for token in self.all::<RunnerTokenRecord>(org_id, deployment_id).await? {
            ops.push(token.delete());
        }
        self.store.commit(ops).await?;
        Ok(StartRetry::Queued(Box::new(loaded.value)))
    }

    /// Asks the sandbox of `attempt` to stop; a failure is logged (the sandbox's
    /// credentials are dead already, and the watchdog stops what outlives them).
    pub(super) async fn stop_quietly(&self, org_id: &str, deployment_id: &str, attempt: u32) {
        if let Err(error) = self.launcher.stop(org_id, deployment_id, attempt).await {
            tracing::warn!(%deployment_id, attempt, %error, "stopping the sandbox failed");
        }
    }

    /// [`Self::announce_ready`] after a phase ended: what ended stays ended if it fails
    /// (the watchdog sends a lost deployment's message again).
    pub(super) async fn hand_on_slot(&self) {
        if let Err(error) = self.announce_ready().await {
            tracing::error!(%error, "announcing the next deployments failed");
        }
    }

    /// Hands the free sandbox slots to the oldest deployments that can use them, across
    /// all environments: sends the message of each, oldest first. Called whenever a
    /// sandbox's phase ends. A deployment whose sandbox failed to start waits for its
    /// own delayed message instead.
    async fn announce_ready(&self) -> Result<()> {
        let running = self.sandboxes_running().await?;
        let mut free = self
            .settings
            .max_parallel_deployments
            .saturating_sub(running);
        // The queued index lists by id, which is creation order: the first deployment
        // seen of an environment is its oldest.
        let mut seen_environments = HashSet::new();
        let mut after = None;
        while free > 0 {
            let page = self
                .store
                .list_indexed(IndexQuery {
                    kind: Kind::Deployment,
                    index_key: DeploymentStatus::Queued.as_str().to_string(),
                    after,
                    limit: MAX_PAGE_SIZE,
                })
                .await?;
            for stored in &page.items {
                let deployment: Deployment = decode(stored)?;
                if !seen_environments.insert(deployment.environment_id.clone()) {
                    continue;
                }
                let lock = self
                    .find::<EnvironmentLock>(&stored.org_id, &deployment.environment_id)
                    .await?;
                let ready = lock.is_none_or(|lock| lock.value.deployment_id == deployment.id);
                if ready && deployment.start_failures == 0 {
                    self.announce(&stored.org_id, &deployment).await;
                    free -= 1;
                    if free == 0 {
                        break;
                    }
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(())
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_back_off_two_then_eight_seconds() {
        assert_eq!(start_backoff(1), Duration::from_secs(2));
        assert_eq!(start_backoff(2), Duration::from_secs(8));
    }
}
