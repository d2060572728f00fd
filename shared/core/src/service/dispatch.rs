//! Starting a deployment's phase: take its environment and a sandbox slot, commit the
//! attempt, launch its sandbox. What follows a phase (its end, a failed start) is
//! `conclusion.rs`'s.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};

use crate::deployment::{Deployment, DeploymentStatus};
use crate::model::{Environment, Template};
use crate::ports::{DeploymentMessage, Kind, LaunchError, LaunchRequest, WriteOp};
use crate::Result;

use super::credentials::{launch_token, EnvironmentLock};
use super::deployments::status_index;
use super::{key_of, record, retrying_conflicts, Loaded, PageRequest, Platform, MAX_PAGE_SIZE};

/// What changed a sandbox slot, for handing it on.
pub(super) enum SlotChange {
    /// A phase ended: its slot is free.
    Freed,
    /// A dispatch found its deployment started by another: two endings close together
    /// may have named it for their two slots, one of which may be free.
    MaybeFreed,
    /// A phase's sandbox failed to start: its slot is free, and goes on through the
    /// queue even where this process launches sandboxes (a launch here that failed too
    /// would nest another such call; failures one after the other must not pile up).
    FreedByFailedStart,
    /// A phase started; `before` is how many slots were taken when its dispatch counted
    /// them (`None`: it did not count).
    Taken { before: Option<usize> },
}

/// A start of a deployment's phase, prepared: what to commit, then what to launch.
pub(super) struct Start {
    pub ops: Vec<WriteOp>,
    pub launch: Launch,
}

/// The sandbox of a committed start, to launch.
pub(super) struct Launch {
    request: LaunchRequest,
    /// The deployment as the start's commit left it.
    started: Loaded<Deployment>,
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
    /// This region is passive: the message goes back, for the active region's
    /// adoption of what was queued, or for this region once it is active again.
    Passive,
    /// The sandbox could not start: it is tried again later, or the deployment failed.
    LaunchFailed { deployment_id: String },
}

impl Platform {
    /// Handles one queue message. Idempotent: a message delivered twice starts at most
    /// one sandbox, because every start is a conditional write.
    #[tracing::instrument(skip(self), fields(deployment_id = %message.deployment_id))]
    pub async fn dispatch(&self, message: &DeploymentMessage) -> Result<DispatchOutcome> {
        if !self.acting().await? {
            return Ok(DispatchOutcome::Passive);
        }
        let org_id = &message.org_id;
        // The message names the deployment's environment: its lock comes in the same
        // round trip.
        let [deployment, lock] = self
            .get_records([
                key_of::<Deployment>(org_id, &message.deployment_id),
                key_of::<EnvironmentLock>(org_id, &message.environment_id),
            ])
            .await?;
        let Some(deployment) = Loaded::<Deployment>::found(deployment)? else {
            return Ok(DispatchOutcome::Skipped);
        };
        if deployment.value.status != DeploymentStatus::Queued {
            if deployment.value.status == DeploymentStatus::Running {
                self.lost_to_another_start().await;
            }
            return Ok(DispatchOutcome::Skipped);
        }
        let environment_id = deployment.value.environment_id.clone();
        let lock = if environment_id == message.environment_id {
            Loaded::<EnvironmentLock>::found(lock)?
        } else {
            self.find::<EnvironmentLock>(org_id, &environment_id)
                .await?
        };
        let outcome = match lock {
            // An approved deployment keeps the lock while it waits for its apply
            // sandbox, and so does one whose sandbox failed to start.
            Some(lock) if lock.value.deployment_id == deployment.value.id => {
                return self.start_phase(deployment, false, None).await;
            }
            Some(_) => DispatchOutcome::Waiting,
            None => {
                let taken = self.slots_taken().await?;
                if taken >= self.settings.max_parallel_deployments {
                    DispatchOutcome::AtCapacity
                } else {
                    // The listing by environment is an index and may not show the
                    // message's own deployment yet: read consistently, it stands in for
                    // the oldest unless the listing shows an older one.
                    let oldest = self
                        .older_queued(org_id, &environment_id, &deployment.value.id)
                        .await?
                        .unwrap_or(deployment);
                    return self.start_phase(oldest, true, Some(taken)).await;
                }
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

    /// [`Self::start_phase`] boxed: a start hands on the slot it leaves free, which may
    /// start another.
    pub(super) fn start_phase_boxed(
        &self,
        loaded: Loaded<Deployment>,
        take_lock: bool,
        taken: usize,
    ) -> Pin<Box<dyn Future<Output = Result<DispatchOutcome>> + Send + '_>> {
        Box::pin(self.start_phase(loaded, take_lock, Some(taken)))
    }

    /// Commits a new attempt of the deployment's next phase, then launches its sandbox.
    /// `taken` is how many slots were taken when the dispatch counted them, if it did.
    async fn start_phase(
        &self,
        loaded: Loaded<Deployment>,
        take_lock: bool,
        taken: Option<usize>,
    ) -> Result<DispatchOutcome> {
        let start = self.prepare_start(loaded, take_lock, self.now()).await?;
        if let Err(error) = self.store.commit(self.fenced(start.ops).await?).await {
            return match error {
                // Another dispatcher started it, or took the environment first.
                crate::ports::StoreError::Conflict => {
                    self.lost_to_another_start().await;
                    Ok(DispatchOutcome::Waiting)
                }
                // The region lost the switch since it read it: it starts nothing.
                crate::ports::StoreError::CheckFailed => Ok(DispatchOutcome::Passive),
                other => Err(other.into()),
            };
        }
        self.launch_started(start.launch, taken).await
    }

    /// What starting a new attempt of the deployment's next phase writes (running, with
    /// a fresh launch credential, taking the environment's lock if asked), and what to
    /// launch once that is committed. Each attempt is its own sandbox and credential:
    /// the launcher makes launching one attempt twice start one sandbox.
    pub(super) async fn prepare_start(
        &self,
        mut loaded: Loaded<Deployment>,
        take_lock: bool,
        now: DateTime<Utc>,
    ) -> Result<Start> {
        let org_id = loaded.stored.org_id.clone();
        let environment = self
            .load::<Environment>(&org_id, &loaded.value.environment_id)
            .await?
            .value;
        let template = self
            .load::<Template>(&org_id, &environment.template_id)
            .await?
            .value;
        self.stamp_region(&mut loaded.value).await?;
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
        let (replace, started) =
            loaded.replace_keys_then(None, status_index(DeploymentStatus::Running))?;
        let mut ops = vec![replace, token_insert];
        if take_lock {
            let lock = EnvironmentLock {
                deployment_id: started.value.id.clone(),
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
        let request = LaunchRequest {
            org_id,
            deployment_id: started.value.id.clone(),
            attempt: started.value.attempt,
            runner_token: token,
            repository: template.repository,
        };
        Ok(Start {
            ops,
            launch: Launch { request, started },
        })
    }

    /// [`Self::launch_started`] boxed: a failed launch concludes the deployment, whose
    /// conclusion may start and launch another.
    pub(super) fn launch_started_boxed(
        &self,
        launch: Launch,
        taken: Option<usize>,
    ) -> Pin<Box<dyn Future<Output = Result<DispatchOutcome>> + Send + '_>> {
        Box::pin(self.launch_started(launch, taken))
    }

    /// Launches the sandbox of an attempt whose start is committed. A slot left free is
    /// handed on while the sandbox is being set up (its network takes a while), not
    /// after.
    async fn launch_started(
        &self,
        launch: Launch,
        taken: Option<usize>,
    ) -> Result<DispatchOutcome> {
        let Launch { request, started } = launch;
        let (org_id, deployment_id, attempt) = (
            request.org_id.clone(),
            request.deployment_id.clone(),
            request.attempt,
        );
        let change = SlotChange::Taken { before: taken };
        let hand_on = async {
            // Where starts go through the queue, the deployment this would name has its
            // own message on the way (many were queued at once), or is named again by
            // the dispatch that finds the deployment it came for started by another.
            if self.settings.start_next_inline {
                self.hand_on_slot(change).await;
            }
        };
        let (launched, ()) = tokio::join!(self.launcher.launch(request), hand_on);
        match launched {
            Ok(()) => {
                self.record_launch(started).await?;
                Ok(DispatchOutcome::Launched { deployment_id })
            }
            Err(LaunchError::Transient(reason)) => {
                self.start_failed(&org_id, &deployment_id, attempt, reason)
                    .await?;
                Ok(DispatchOutcome::LaunchFailed { deployment_id })
            }
            Err(error) => {
                self.conclude_failed_launch(&org_id, &deployment_id, attempt, error.to_string())
                    .await?;
                Ok(DispatchOutcome::LaunchFailed { deployment_id })
            }
        }
    }

    /// Another dispatch started what this one was about to: two endings close together
    /// may have named the same deployment for their two free slots, and that start
    /// counted the slots before the second ending. The second slot is handed on here.
    async fn lost_to_another_start(&self) {
        self.hand_on_slot(SlotChange::MaybeFreed).await;
    }

    /// Records that the launcher accepted the sandbox of the attempt `started` is in.
    /// If the deployment moved on meanwhile (the watchdog started another attempt, a
    /// cancel ended it), that sandbox is not wanted and is stopped.
    async fn record_launch(&self, started: Loaded<Deployment>) -> Result<()> {
        let (org_id, id) = (started.stored.org_id.clone(), started.stored.id.clone());
        let attempt = started.value.attempt;
        // The first try uses the deployment as the start left it; a conflict reads it.
        let mut given = Some(started);
        let recorded = retrying_conflicts("the deployment kept changing; try again", || {
            let given = given.take();
            let (org_id, id) = (&org_id, &id);
            async move {
                let mut loaded = match given {
                    Some(loaded) => loaded,
                    None => self.load::<Deployment>(org_id, id).await?,
                };
                if !loaded.value.runs_attempt(attempt) {
                    return Ok(false);
                }
                loaded.value.launched_at = Some(self.now());
                self.store.commit(vec![loaded.replace()?]).await?;
                Ok(true)
            }
        })
        .await?;
        if !recorded {
            self.stop_quietly(&org_id, &id, attempt).await;
        }
        Ok(())
    }

    /// How many sandbox slots are taken: the running deployments, counted up to one
    /// more than there are slots (past that, the slots are full whatever the rest are;
    /// the one more lets an ending that still counts itself leave the others exact).
    pub(super) async fn slots_taken(&self) -> Result<usize> {
        let limit = self.settings.max_parallel_deployments + 1;
        let running = DeploymentStatus::Running.as_str();
        Ok(self
            .store
            .count_indexed(Kind::Deployment, running, limit)
            .await?)
    }

    /// The environment's oldest queued deployment created before `than`, as far as the
    /// listing (an index) shows: environments deploy first in, first out.
    pub(super) async fn older_queued(
        &self,
        org_id: &str,
        environment_id: &str,
        than: &str,
    ) -> Result<Option<Loaded<Deployment>>> {
        let mut page = PageRequest {
            cursor: None,
            limit: Some(MAX_PAGE_SIZE),
        };
        loop {
            let (items, next) = self
                .page_loaded::<Deployment>(org_id, Some(environment_id), &page, false)
                .await?;
            for listed in items {
                // Oldest first: what follows is not older.
                if listed.value.id.as_str() >= than {
                    return Ok(None);
                }
                if listed.value.status != DeploymentStatus::Queued {
                    continue;
                }
                // The listing may lag: what it shows queued is read again, consistently.
                match self.find::<Deployment>(org_id, &listed.stored.id).await? {
                    Some(current) if current.value.status == DeploymentStatus::Queued => {
                        return Ok(Some(current));
                    }
                    _ => {}
                }
            }
            match next {
                Some(next) => page.cursor = Some(next),
                None => return Ok(None),
            }
        }
    }
}
