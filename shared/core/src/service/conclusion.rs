//! Ending a deployment's phase, and recovering deployments whose phase ended without a
//! word: release what the deployment held, hand its sandbox slot on.

use crate::deployment::{Deployment, DeploymentStatus};
use crate::model::Environment;
use crate::ports::{DeploymentMessage, IndexQuery};
use crate::{Error, Result};

use super::credentials::{EnvironmentLock, RunnerTokenRecord, SignsOfLife};
use super::deployments::{message_for, status_index};
use super::{retrying_conflicts, Loaded, Platform, Stored, MAX_PAGE_SIZE};

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
    /// Ends the deployment if it is still in the sandbox `attempt` it was in.
    pub(super) async fn conclude_by_id(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
        status: DeploymentStatus,
        reason: String,
    ) -> Result<Option<Deployment>> {
        let loaded = self.load::<Deployment>(org_id, deployment_id).await?;
        if !loaded.value.runs_attempt(attempt) {
            return Ok(None);
        }
        match self.conclude(loaded, status, Some(reason), None).await {
            Ok(deployment) => Ok(Some(deployment)),
            // Someone else (a report, another watchdog) ended the phase meanwhile.
            Err(Error::Conflict(_))
                if !self
                    .load::<Deployment>(org_id, deployment_id)
                    .await?
                    .value
                    .runs_attempt(attempt) =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// [`Self::conclude_by_id`], then stops the phase's sandbox if it was this call that
    /// ended it. The stop comes after the conclusion: on AWS it is a queue message, and
    /// the deployer stops only the sandboxes that are not wanted any more.
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
            self.stop_quietly(org_id, deployment_id, attempt).await;
        }
        Ok(concluded)
    }

    /// Moves a deployment to a final status (or to waiting for approval), releasing
    /// what it held: its runner tokens always; its environment lock and Terraform state
    /// lock when it ends. Then its sandbox slot goes to the oldest deployment that can
    /// use it.
    pub(super) async fn conclude(
        &self,
        loaded: Loaded<Deployment>,
        status: DeploymentStatus,
        reason: Option<String>,
        outputs: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<Deployment> {
        let (org_id, id) = (loaded.stored.org_id.clone(), loaded.stored.id.clone());
        // The first try uses what the caller read; a conflict reads it again.
        let mut given = Some(loaded);
        let deployment = retrying_conflicts("the deployment kept changing; try again", || {
            let given = given.take();
            let (org_id, id) = (&org_id, &id);
            let (reason, outputs) = (reason.clone(), outputs.clone());
            async move {
                let mut loaded = match given {
                    Some(loaded) => loaded,
                    None => self.load::<Deployment>(org_id, id).await?,
                };
                let conclusion = Conclusion::for_deployment(&loaded.value, status, reason, outputs);
                if !loaded.value.status.can_become(conclusion.status) {
                    return Err(Error::conflict(format!(
                        "the deployment is {} and cannot become {}",
                        loaded.value.status.as_str(),
                        conclusion.status.as_str()
                    )));
                }
                self.try_conclude(&mut loaded, &conclusion).await?;
                Ok(loaded.value)
            }
        })
        .await?;
        self.hand_on_slot().await;
        Ok(deployment)
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
        // The next phase (an approved apply) starts with its own start attempts.
        deployment.start_failures = 0;
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

    /// A sandbox stopped (exited, crashed, was killed). One that stopped before its
    /// runner asked for the job never started: another attempt follows. Otherwise, if
    /// its deployment was still in that sandbox's phase, the deployment fails with the
    /// reason (or ends cancelled).
    pub async fn sandbox_stopped(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
        description: &str,
    ) -> Result<()> {
        let tokens = self
            .all::<RunnerTokenRecord>(org_id, deployment_id)
            .await?
            .into_iter()
            .map(|token| token.value)
            .collect::<Vec<_>>();
        let ended = if SignsOfLife::of(attempt, &tokens).started {
            let reason = format!("the sandbox stopped before reporting a result: {description}");
            let failed = DeploymentStatus::Failed;
            self.conclude_by_id(org_id, deployment_id, attempt, failed, reason)
                .await
                .map(drop)
        } else {
            let reason = format!("the sandbox stopped before its runner started: {description}");
            self.start_failed(org_id, deployment_id, attempt, reason)
                .await
        };
        match ended {
            Ok(()) | Err(Error::NotFound(_)) => Ok(()),
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
