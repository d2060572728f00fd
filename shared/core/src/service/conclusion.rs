//! Ending a deployment's phase and recovering one whose phase ended without a word or
//! whose sandbox failed to start: release what the deployment held, start it again
//! when that is the cure, and hand its sandbox slot on.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::cost::CurrentCost;
use crate::deployment::{Deployment, DeploymentStatus};
use crate::drift::deployed_after;
use crate::model::Environment;
use crate::ports::{DeploymentMessage, IndexQuery, Kind, ReportRequest, StoreError, WriteOp};
use crate::{Error, Result};

use super::credentials::{attempt_credential_ids, EnvironmentLock, RunnerTokenRecord};
use super::deployments::{message_for, status_index};
use super::dispatch::{SlotChange, Start};
use super::drift::{may_change_drift, DriftAftermath};
use super::state::{state_lock_release, StateLock};
use super::{decode, key_of, retrying_conflicts, Loaded, Platform, Stored, MAX_PAGE_SIZE};

/// Environment locks read per round trip while looking for the oldest queued
/// deployment that can start; also the first page of queued deployments read, as the
/// oldest few usually hold it (every deployment read costs, on DynamoDB and more so on
/// its emulator).
const LOCKS_PER_READ: usize = 10;
/// Queued deployments read per page after the first while looking for it.
const READY_SCAN_PAGE: usize = 50;

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

/// How the slot a conclusion frees is handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandOn {
    /// Where this process launches sandboxes, by starting the next deployment in the
    /// conclusion's own commit (or right after it).
    Inline,
    /// Through the queue, whatever the process: after a failed launch.
    ThroughQueue,
}

impl HandOn {
    fn freed(self) -> SlotChange {
        match self {
            HandOn::Inline => SlotChange::Freed,
            HandOn::ThroughQueue => SlotChange::FreedByFailedStart,
        }
    }
}

/// Sandboxes of one phase that may fail to start before the deployment fails.
const MAX_START_ATTEMPTS: u32 = 3;

/// How long a deployment whose sandbox failed to start `failures` times waits before
/// its next attempt: 2 s, then 8 s.
fn start_backoff(failures: u32) -> Duration {
    Duration::from_secs(1 << (2 * failures.clamp(1, 4) - 1))
}

/// A queued deployment that can take a free slot.
struct Ready {
    deployment: Loaded<Deployment>,
    /// It holds its environment already (approved, waiting for its apply sandbox).
    holds_lock: bool,
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
    /// Ends the deployment if it is still in the sandbox `attempt` it was in.
    pub(super) async fn conclude_by_id(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
        status: DeploymentStatus,
        reason: String,
    ) -> Result<Option<Deployment>> {
        self.conclude_attempt(
            org_id,
            deployment_id,
            attempt,
            status,
            reason,
            HandOn::Inline,
        )
        .await
    }

    /// [`Self::conclude_by_id`] for a phase whose sandbox failed to launch: the slot it
    /// frees is handed on through the queue, never by a launch in this call, so that
    /// launches failing one after the other (a missing runner, a full cluster) cannot
    /// nest one call in the next without end.
    pub(super) async fn conclude_failed_launch(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
        reason: String,
    ) -> Result<Option<Deployment>> {
        let failed = DeploymentStatus::Failed;
        self.conclude_attempt(
            org_id,
            deployment_id,
            attempt,
            failed,
            reason,
            HandOn::ThroughQueue,
        )
        .await
    }

    async fn conclude_attempt(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
        status: DeploymentStatus,
        reason: String,
        hand_on: HandOn,
    ) -> Result<Option<Deployment>> {
        let loaded = self.load::<Deployment>(org_id, deployment_id).await?;
        if !loaded.value.runs_attempt(attempt) {
            return Ok(None);
        }
        match self
            .conclude_handing_on(loaded, status, Some(reason), None, hand_on)
            .await
        {
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
    /// lock when it ends. Its sandbox slot goes to the oldest deployment that can use
    /// it: in the same commit where this process launches sandboxes, else right after.
    pub(super) async fn conclude(
        &self,
        loaded: Loaded<Deployment>,
        status: DeploymentStatus,
        reason: Option<String>,
        outputs: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<Deployment> {
        self.conclude_handing_on(loaded, status, reason, outputs, HandOn::Inline)
            .await
    }

    async fn conclude_handing_on(
        &self,
        loaded: Loaded<Deployment>,
        status: DeploymentStatus,
        reason: Option<String>,
        outputs: Option<serde_json::Map<String, serde_json::Value>>,
        hand_on: HandOn,
    ) -> Result<Deployment> {
        let (org_id, id) = (loaded.stored.org_id.clone(), loaded.stored.id.clone());
        // The first try uses what the caller read; a conflict reads it again.
        let mut given = Some(loaded);
        let (deployment, next, freed, drift) =
            retrying_conflicts("the deployment kept changing; try again", || {
                let given = given.take();
                let (org_id, id) = (&org_id, &id);
                let (reason, outputs) = (reason.clone(), outputs.clone());
                async move {
                    let mut loaded = match given {
                        Some(loaded) => loaded,
                        None => self.load::<Deployment>(org_id, id).await?,
                    };
                    let conclusion =
                        Conclusion::for_deployment(&loaded.value, status, reason, outputs);
                    if !loaded.value.status.can_become(conclusion.status) {
                        return Err(Error::conflict(format!(
                            "the deployment is {} and cannot become {}",
                            loaded.value.status.as_str(),
                            conclusion.status.as_str()
                        )));
                    }
                    let now = self.now();
                    let next = match hand_on {
                        HandOn::Inline => {
                            self.start_in_freed_slot(&loaded.value, conclusion.status, now)
                                .await
                        }
                        HandOn::ThroughQueue => None,
                    };
                    let (also, next) = match next {
                        Some((Start { ops, launch }, taken)) => (ops, Some((launch, taken))),
                        None => (Vec::new(), None),
                    };
                    let was_running = loaded.value.status == DeploymentStatus::Running;
                    let (released_lock, drift) = self
                        .try_conclude(&mut loaded, &conclusion, now, also)
                        .await?;
                    Ok((loaded.value, next, was_running || released_lock, drift))
                }
            })
            .await?;
        match next {
            Some((launch, taken)) => {
                if let Err(error) = self.launch_started_boxed(launch, Some(taken)).await {
                    tracing::error!(%error, "launching the sandbox of the deployment that took the freed slot failed");
                }
            }
            // A deployment that had not started held neither a slot nor its environment
            // (a superseded pull request plan): nothing to hand on.
            None if freed => self.hand_on_slot(hand_on.freed()).await,
            None => {}
        }
        self.report_if_triggered(&org_id, &deployment).await;
        self.notify_status(&org_id, &deployment).await;
        self.follow_drift(&org_id, &deployment, drift).await;
        Ok(deployment)
    }

    /// Asks for the report of the pull request a deployment planned, now it has ended.
    async fn report_if_triggered(&self, org_id: &str, deployment: &Deployment) {
        let pull_request_id = deployment
            .trigger
            .as_ref()
            .and_then(|t| t.pull_request_id());
        if let (Some(pull_request_id), true) = (pull_request_id, deployment.status.is_final()) {
            self.reports
                .request(ReportRequest {
                    org_id: org_id.to_string(),
                    pull_request_id: pull_request_id.to_string(),
                })
                .await;
        }
    }

    /// Where sandboxes start in this process, the slot a running deployment's ending
    /// frees goes to the oldest ready deployment in the ending's own commit, so no
    /// moment passes with the slot free. `None`: the slot is handed on after the commit
    /// (elsewhere only the deployer launches sandboxes; or the oldest ready deployment
    /// is the ending's own environment's next, which waits for the lock to go first).
    async fn start_in_freed_slot(
        &self,
        ending: &Deployment,
        status: DeploymentStatus,
        now: DateTime<Utc>,
    ) -> Option<(Start, usize)> {
        if !self.settings.start_next_inline || ending.status != DeploymentStatus::Running {
            return None;
        }
        match self.try_start_in_freed_slot(ending, status, now).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(%error, "finding the deployment to take the freed slot failed");
                None
            }
        }
    }

    async fn try_start_in_freed_slot(
        &self,
        ending: &Deployment,
        status: DeploymentStatus,
        now: DateTime<Utc>,
    ) -> Result<Option<(Start, usize)>> {
        // The ending still counts as running until this commit.
        let taken = self.slots_taken().await?.saturating_sub(1);
        if taken >= self.settings.max_parallel_deployments {
            return Ok(None);
        }
        // Waiting for approval, it keeps its environment.
        let released = status.is_final().then_some(ending.id.as_str());
        let Some(ready) = self.oldest_ready(released).await? else {
            return Ok(None);
        };
        if ready.deployment.value.environment_id == ending.environment_id {
            return Ok(None);
        }
        let start = self
            .prepare_start(ready.deployment, !ready.holds_lock, now)
            .await?;
        Ok(Some((start, taken)))
    }

    /// Commits the conclusion at `now`, with `also` (the start of the deployment that
    /// takes the freed slot, if one does); answers whether it released the environment,
    /// and what follows from the drift it found.
    async fn try_conclude(
        &self,
        loaded: &mut Loaded<Deployment>,
        conclusion: &Conclusion,
        now: DateTime<Utc>,
        also: Vec<WriteOp>,
    ) -> Result<(bool, DriftAftermath)> {
        let org_id = loaded.stored.org_id.clone();
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
        // What the phase holds, in one round trip.
        let [launch, runner, state] = attempt_credential_ids(&deployment_id, loaded.value.attempt);
        let [launch, runner, state, lock, state_lock] = self
            .get_records([
                key_of::<RunnerTokenRecord>(&org_id, &launch),
                key_of::<RunnerTokenRecord>(&org_id, &runner),
                key_of::<RunnerTokenRecord>(&org_id, &state),
                key_of::<EnvironmentLock>(&org_id, &environment_id),
                key_of::<StateLock>(&org_id, &environment_id),
            ])
            .await?;
        for token in [launch, runner, state] {
            if let Some(token) = Loaded::<RunnerTokenRecord>::found(token)? {
                ops.push(token.delete());
            }
        }
        let mut released_lock = false;
        let mut drift = DriftAftermath::default();
        if conclusion.status.is_final() {
            if let Some(lock) = Loaded::<EnvironmentLock>::found(lock)? {
                if lock.value.deployment_id == deployment_id {
                    ops.push(lock.delete());
                    released_lock = true;
                }
            }
            ops.extend(state_lock_release(
                Loaded::found(state_lock)?,
                &deployment_id,
            ));
            // In the same transaction: whoever sees the deployment ended sees its
            // outputs, cost and what it found of drift on the environment (a conflict
            // concludes again from the start).
            let cost = CurrentCost::after(&loaded.value);
            if conclusion.outputs.is_some() || cost.is_some() || may_change_drift(&loaded.value) {
                if let Some(mut environment) =
                    self.find::<Environment>(&org_id, &environment_id).await?
                {
                    if let Some(outputs) = &conclusion.outputs {
                        environment.value.outputs = Some(outputs.clone());
                    }
                    if let Some(cost) = cost {
                        environment.value.cost_estimate = cost;
                    }
                    if let Some(deployed) = deployed_after(&loaded.value) {
                        environment.value.deployed = deployed;
                    }
                    drift = self
                        .record_drift(
                            &org_id,
                            &mut environment.value,
                            &loaded.value,
                            now,
                            &mut ops,
                        )
                        .await?;
                    ops.push(environment.replace()?);
                }
            }
        }
        ops.extend(also);
        self.store.commit(self.fenced(ops).await?).await?;
        Ok((released_lock, drift))
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
    /// reason (or ends cancelled). A passive region does nothing: the active region's
    /// watchdog ends what its sandboxes left.
    pub async fn sandbox_stopped(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
        description: &str,
    ) -> Result<()> {
        if let Some(reason) = self.passive_reason().await? {
            tracing::info!(%deployment_id, %reason, "a sandbox stopped; left to the active region");
            return Ok(());
        }
        let ended = if self
            .signs_of_life(org_id, deployment_id, attempt)
            .await?
            .started
        {
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
            // Lost the switch since reading it: the active region's watchdog ends it.
            Ok(()) | Err(Error::NotFound(_)) | Err(Error::Store(StoreError::CheckFailed)) => Ok(()),
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
                    until: None,
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

/// Recovering a phase whose sandbox failed to start, and handing freed slots on.
impl Platform {
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
                if self
                    .conclude_failed_launch(org_id, deployment_id, attempt, reason)
                    .await?
                    .is_some()
                {
                    self.stop_quietly(org_id, deployment_id, attempt).await;
                }
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
                self.hand_on_slot(SlotChange::FreedByFailedStart).await;
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
        for token in self
            .attempt_credentials(org_id, deployment_id, attempt)
            .await?
        {
            ops.push(token.delete());
        }
        self.store.commit(self.fenced(ops).await?).await?;
        Ok(StartRetry::Queued(Box::new(loaded.value)))
    }

    /// Asks the sandbox of `attempt` to stop; a failure is logged (the sandbox's
    /// credentials are dead already, and the watchdog stops what outlives them).
    pub(super) async fn stop_quietly(&self, org_id: &str, deployment_id: &str, attempt: u32) {
        if let Err(error) = self.launcher.stop(org_id, deployment_id, attempt).await {
            tracing::warn!(%deployment_id, attempt, %error, "stopping the sandbox failed");
        }
    }

    /// Hands a sandbox slot on: dispatches the oldest deployment, across all
    /// environments, that can use it (through the queue, whose dispatch counts the
    /// slots; or at once if one is free, where this process launches sandboxes).
    /// Called when a phase ends (it freed a slot), when a dispatch finds its deployment
    /// started by another (two endings close together named the same one), and where
    /// this process launches sandboxes when a phase starts (a slot may still be free).
    /// So every free slot finds its deployment, one at a time. A failure is logged:
    /// what ended stays ended, and the watchdog sends a lost deployment's message again.
    pub(super) async fn hand_on_slot(&self, change: SlotChange) {
        if let Err(error) = self.start_oldest_ready(change).await {
            tracing::error!(%error, "handing the sandbox slot on failed");
        }
    }

    /// Dispatches the oldest queued deployment that could start now, if a slot is (or,
    /// named through the queue, was just) free. A deployment whose sandbox failed to
    /// start waits for its own delayed message instead.
    async fn start_oldest_ready(&self, change: SlotChange) -> Result<()> {
        let inline =
            self.settings.start_next_inline && !matches!(change, SlotChange::FreedByFailedStart);
        let taken = match change {
            // Counted before this start: one more is taken now.
            SlotChange::Taken {
                before: Some(before),
            } => Some(before + 1),
            // A slot a phase's end just freed is free unless a start took it meanwhile,
            // and then the named deployment's dispatch, which counts, answers
            // AtCapacity. A slot that only may be free is counted: naming a deployment
            // while all are taken would leave a message more in the queue, whose
            // dispatch would find it started and name another.
            SlotChange::Freed | SlotChange::FreedByFailedStart if !inline => None,
            _ => Some(self.slots_taken().await?),
        };
        if taken.is_some_and(|taken| taken >= self.settings.max_parallel_deployments) {
            return Ok(());
        }
        let Some(ready) = self.oldest_ready(None).await? else {
            return Ok(());
        };
        match taken {
            // What a dispatch of its message would read, this has read already.
            Some(taken) if inline => {
                self.start_phase_boxed(ready.deployment, !ready.holds_lock, taken)
                    .await?;
            }
            _ => {
                let deployment = &ready.deployment;
                self.announce(&deployment.stored.org_id, &deployment.value)
                    .await;
            }
        }
        Ok(())
    }

    /// The oldest queued deployment whose environment is free (or held for it, or by
    /// the `released` deployment, whose lock goes in the same commit), and the oldest of
    /// its own environment.
    async fn oldest_ready(&self, released: Option<&str>) -> Result<Option<Ready>> {
        // The queued index lists by id, which is creation order: the first deployment
        // seen of an environment is its oldest (or the one holding it, which is older).
        let mut seen_environments = HashSet::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_indexed(IndexQuery {
                    kind: Kind::Deployment,
                    index_key: DeploymentStatus::Queued.as_str().to_string(),
                    limit: if after.is_none() {
                        LOCKS_PER_READ
                    } else {
                        READY_SCAN_PAGE
                    },
                    after,
                    until: None,
                })
                .await?;
            let mut candidates = Vec::new();
            for stored in &page.items {
                let deployment: Deployment = decode(stored)?;
                if seen_environments.insert(deployment.environment_id.clone())
                    && deployment.start_failures == 0
                {
                    candidates.push((stored.org_id.as_str(), deployment));
                }
            }
            if let Some(ready) = self.first_ready(&candidates, released).await? {
                return Ok(Some(ready));
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(None),
            }
        }
    }

    /// The first of `candidates` (each the oldest queued deployment of its environment,
    /// oldest first) whose environment is free, held for it or by `released`, read again
    /// consistently. Their locks are read a few at a time, in one round trip each: the
    /// first few usually hold the one, and the others need not be read.
    async fn first_ready(
        &self,
        candidates: &[(&str, Deployment)],
        released: Option<&str>,
    ) -> Result<Option<Ready>> {
        for chunk in candidates.chunks(LOCKS_PER_READ) {
            let keys: Vec<_> = chunk
                .iter()
                .map(|(org_id, deployment)| {
                    key_of::<EnvironmentLock>(org_id, &deployment.environment_id)
                })
                .collect();
            let locks = self.store.get_many(&keys).await?;
            for ((org_id, deployment), lock) in chunk.iter().zip(locks) {
                let holds_lock = match Loaded::<EnvironmentLock>::found(lock)? {
                    Some(lock) if lock.value.deployment_id == deployment.id => true,
                    Some(lock) if Some(lock.value.deployment_id.as_str()) != released => continue,
                    _ => false,
                };
                // The index may lag: it may show queued one that started meanwhile.
                match self.find::<Deployment>(org_id, &deployment.id).await? {
                    Some(current)
                        if current.value.status == DeploymentStatus::Queued
                            && current.value.start_failures == 0 =>
                    {
                        return Ok(Some(Ready {
                            deployment: current,
                            holds_lock,
                        }));
                    }
                    _ => continue,
                }
            }
        }
        Ok(None)
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
