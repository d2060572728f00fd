//! Starting a deployment's phase: take its environment and a sandbox slot, commit the
//! attempt, launch its sandbox. What follows a phase (its end, a failed start) is
//! `conclusion.rs`'s.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use crate::deployment::{Deployment, DeploymentStatus};
use crate::model::{Environment, Template};
use crate::ports::{DeploymentMessage, IndexQuery, Kind, LaunchError, LaunchRequest};
use crate::Result;

use super::credentials::{launch_token, EnvironmentLock};
use super::deployments::status_index;
use super::{decode, record, retrying_conflicts, Loaded, PageRequest, Platform, MAX_PAGE_SIZE};

/// Who holds the sandbox slots, as one read of the running deployments' index showed
/// it: a hint for handing a slot on (it may lag); a start's commit decides.
pub(super) struct Slots {
    /// Running deployments, counted up to the number of slots.
    pub taken: usize,
    /// The environments they hold.
    pub environments: HashSet<String>,
}

/// What changed a sandbox slot, for handing it on.
pub(super) enum SlotChange<'a> {
    /// A phase ended: its slot is free.
    Freed,
    /// A phase of `environment_id` started; `before` is who held the slots when its
    /// dispatch counted them (`None`: it did not count).
    Taken {
        environment_id: &'a str,
        before: Option<Slots>,
    },
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
            if deployment.value.status == DeploymentStatus::Running {
                self.lost_to_another_start().await;
            }
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
                return self.start_phase(deployment, false, None).await;
            }
            Some(_) => DispatchOutcome::Waiting,
            None => {
                let slots = self.slots().await?;
                if slots.taken >= self.settings.max_parallel_deployments {
                    DispatchOutcome::AtCapacity
                } else {
                    // The listing by environment is an index and may not show the
                    // message's own deployment yet: read consistently, it stands in for
                    // the oldest unless the listing shows an older one.
                    let oldest = match self.oldest_queued(org_id, &environment_id).await? {
                        Some(oldest) if oldest.value.id < deployment.value.id => oldest,
                        _ => deployment,
                    };
                    return self.start_phase(oldest, true, Some(slots)).await;
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
        slots: Slots,
    ) -> Pin<Box<dyn Future<Output = Result<DispatchOutcome>> + Send + '_>> {
        Box::pin(self.start_phase(loaded, take_lock, Some(slots)))
    }

    /// Commits a new attempt of the deployment's next phase (running, with a fresh
    /// launch credential, taking the environment's lock if asked), then launches its
    /// sandbox. Each attempt is its own sandbox and credential: the launcher makes
    /// launching one attempt twice start one sandbox. `slots` is who held the slots
    /// when the dispatch counted them, if it did.
    async fn start_phase(
        &self,
        mut loaded: Loaded<Deployment>,
        take_lock: bool,
        slots: Option<Slots>,
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
                crate::ports::StoreError::Conflict => {
                    self.lost_to_another_start().await;
                    Ok(DispatchOutcome::Waiting)
                }
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
        let taken = SlotChange::Taken {
            environment_id: &environment.id,
            before: slots,
        };
        // A slot left free is handed on while this sandbox is being set up (its
        // network takes a while), not after.
        let (launched, ()) = tokio::join!(self.launcher.launch(request), self.hand_on_slot(taken));
        match launched {
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

    /// Another dispatch started what this one was about to: two endings close together
    /// may have named the same deployment for their two free slots, and that start
    /// counted the slots before the second ending. The second slot is handed on here.
    async fn lost_to_another_start(&self) {
        self.hand_on_slot(SlotChange::Freed).await;
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

    /// Who holds the sandbox slots: the running deployments, as many as there are
    /// slots at most (past that, the slots are full whatever the rest are).
    pub(super) async fn slots(&self) -> Result<Slots> {
        let page = self
            .store
            .list_indexed(IndexQuery {
                kind: Kind::Deployment,
                index_key: DeploymentStatus::Running.as_str().to_string(),
                after: None,
                limit: self.settings.max_parallel_deployments.max(1),
            })
            .await?;
        let mut slots = Slots {
            taken: page.items.len(),
            environments: HashSet::new(),
        };
        for stored in &page.items {
            let deployment: Deployment = decode(stored)?;
            slots.environments.insert(deployment.environment_id);
        }
        Ok(slots)
    }

    /// The environment's oldest queued deployment, as far as the listing (an index)
    /// shows: environments deploy first in, first out.
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
            for listed in items {
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
