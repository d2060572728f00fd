//! What users do with deployments: ask for one, follow it, approve, reject, cancel.

use crate::auth::{Caller, Role};
use crate::cost::{self, CostEstimate};
use crate::deployment::{
    Action, CreateDeployment, Deployment, DeploymentPlan, DeploymentStatus, LogChunk, LogPage,
    PlanView,
};
use crate::model::{Environment, Listing, Template};
use crate::ports::{DeploymentMessage, Kind, StoreError, WriteOp};
use crate::{Error, Result};

use super::runner::plan_view_key;
use super::{
    changed_meanwhile, record, retrying_conflicts, Loaded, PageRequest, Platform, Stored,
    MAX_LOG_PAGE_BYTES,
};

impl Stored for Deployment {
    const KIND: Kind = Kind::Deployment;
    const NOUN: &'static str = "deployment";
}

impl Stored for LogChunk {
    const KIND: Kind = Kind::LogChunk;
    const NOUN: &'static str = "log chunk";
}

/// Active deployments are indexed by status, across organizations, for the sweeps.
pub(super) fn status_index(status: DeploymentStatus) -> Option<String> {
    (!status.is_final()).then(|| status.as_str().to_string())
}

/// Log chunks sort by sequence number within their deployment.
pub(super) fn log_chunk_id(deployment_id: &str, seq: u64) -> String {
    format!("{deployment_id}/{seq:020}")
}

fn role_for(action: Action) -> Role {
    match action {
        Action::Plan => Role::Planner,
        Action::Apply | Action::Destroy => Role::Deployer,
    }
}

/// The insert of a new deployment, under its environment and in the status index.
pub(super) fn queued_insert(org_id: &str, deployment: &Deployment) -> Result<WriteOp> {
    let mut insert = record(
        org_id,
        &deployment.id,
        Some(&deployment.environment_id),
        None,
        deployment,
    )?;
    insert.index_key = status_index(deployment.status);
    Ok(WriteOp::Insert(insert))
}

pub(super) fn message_for(org_id: &str, deployment: &Deployment) -> DeploymentMessage {
    DeploymentMessage {
        org_id: org_id.to_string(),
        environment_id: deployment.environment_id.clone(),
        deployment_id: deployment.id.clone(),
    }
}

impl Platform {
    /// Queues a deployment of the environment; it starts when the environment is free.
    pub async fn create_deployment(
        &self,
        caller: &Caller,
        environment_id: &str,
        input: CreateDeployment,
    ) -> Result<Deployment> {
        let environment = self
            .load::<Environment>(&caller.org_id, environment_id)
            .await?
            .value;
        caller.require(role_for(input.action), Some(&environment.project_id))?;
        let template = self
            .load::<Template>(&caller.org_id, &environment.template_id)
            .await?
            .value;
        let revision = environment.revision.clone().unwrap_or(template.revision);
        let deployment = Deployment::queued(
            &environment,
            input.action,
            revision,
            caller.key_id.clone(),
            None,
            self.now(),
        );
        // Fenced: a region that lost the switch moments ago queues nothing its
        // successor would not see (its queue is nobody's now).
        let insert = vec![queued_insert(&caller.org_id, &deployment)?];
        self.commit_audited(
            caller,
            "deployment.create",
            (Kind::Deployment, &deployment.id),
            self.fenced(insert).await?,
        )
        .await?;
        self.announce(&caller.org_id, &deployment).await;
        Ok(deployment)
    }

    pub async fn get_deployment(&self, caller: &Caller, id: &str) -> Result<Deployment> {
        let deployment = self.load::<Deployment>(&caller.org_id, id).await?.value;
        caller.require(Role::Viewer, Some(&deployment.project_id))?;
        Ok(deployment)
    }

    /// The deployment's latest plan, for whoever may read the deployment; 404 until a
    /// sandbox has planned.
    pub async fn deployment_plan(&self, caller: &Caller, id: &str) -> Result<DeploymentPlan> {
        let deployment = self.get_deployment(caller, id).await?;
        let view = self.plan_view(&caller.org_id, id).await?;
        Ok(DeploymentPlan {
            deployment_id: deployment.id,
            plan_summary: deployment.plan_summary,
            cost_estimate: self.price(&view),
            text: view.text,
            json: view.json,
        })
    }

    /// The plan priced from the catalog, with the operator's pricing rules.
    pub(super) fn price(&self, view: &PlanView) -> CostEstimate {
        cost::estimate(&view.json, cost::catalog(), &self.settings.pricing)
    }

    /// The plan view a deployment's sandbox saved; 404 until it has planned.
    pub(super) async fn plan_view(&self, org_id: &str, id: &str) -> Result<PlanView> {
        let sealed = self
            .artifacts
            .get(org_id, &plan_view_key(id))
            .await?
            .ok_or(Error::NotFound("plan of this deployment"))?;
        let opened = self.key_ring.open_bytes(org_id, &sealed).await?;
        serde_json::from_slice(&opened)
            .map_err(|e| Error::Store(StoreError::Corrupt(format!("the plan view of {id}: {e}"))))
    }

    /// An environment's deployments, newest first.
    pub async fn list_deployments(
        &self,
        caller: &Caller,
        environment_id: &str,
        page: &PageRequest,
    ) -> Result<Listing<Deployment>> {
        self.environment_history(caller, environment_id, page).await
    }

    /// Records kept under an environment (deployments, state versions), newest first.
    pub(super) async fn environment_history<T: Stored>(
        &self,
        caller: &Caller,
        environment_id: &str,
        page: &PageRequest,
    ) -> Result<Listing<T>> {
        let environment = self
            .load::<Environment>(&caller.org_id, environment_id)
            .await?
            .value;
        caller.require(Role::Viewer, Some(&environment.project_id))?;
        self.page(&caller.org_id, Some(environment_id), page, true)
            .await
    }

    /// The log chunks after sequence number `after`, in order.
    pub async fn deployment_logs(
        &self,
        caller: &Caller,
        id: &str,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<LogPage> {
        let deployment = self.get_deployment(caller, id).await?;
        let page = PageRequest {
            cursor: after.map(|seq| log_chunk_id(id, seq)),
            limit,
        };
        let mut listing: Listing<LogChunk> =
            self.page(&caller.org_id, Some(id), &page, false).await?;
        // A page carries at most MAX_LOG_PAGE_BYTES (and always one chunk); the rest
        // follows from `last_seq`.
        let mut bytes = 0;
        let fits = listing
            .items
            .iter()
            .position(|chunk| {
                bytes += chunk.text.len();
                bytes > MAX_LOG_PAGE_BYTES
            })
            .map_or(listing.items.len(), |over| over.max(1));
        let cut = fits < listing.items.len();
        listing.items.truncate(fits);
        Ok(LogPage {
            last_seq: listing.items.last().map(|chunk| chunk.seq),
            complete: deployment.status.is_final() && listing.next.is_none() && !cut,
            items: listing.items,
        })
    }

    /// Approves the saved plan, by its hash: a new sandbox applies exactly that plan. The
    /// key that requested the deployment may not, unless its environment allows
    /// self-approval.
    pub async fn approve_deployment(&self, caller: &Caller, id: &str) -> Result<Deployment> {
        let mut loaded = self.waiting_for_approval(caller, id).await?;
        if loaded.value.requested_by == caller.key_id {
            let environment = self
                .load::<Environment>(&caller.org_id, &loaded.value.environment_id)
                .await?
                .value;
            if !environment.allow_self_approval {
                return Err(Error::forbidden(
                    "the key that requested a deployment cannot approve it: another key must, \
                     or an admin can set allow_self_approval on the environment",
                ));
            }
        }
        let deployment = &mut loaded.value;
        if deployment.plan_sha256.is_none() {
            return Err(Error::conflict(
                "the deployment has no saved plan to approve",
            ));
        }
        deployment.status = DeploymentStatus::Queued;
        deployment.approved_by = Some(caller.key_id.clone());
        deployment.approved_plan_sha256 = deployment.plan_sha256.clone();
        deployment.updated_at = self.now();
        let op = loaded.replace_keys(None, status_index(DeploymentStatus::Queued))?;
        self.commit_audited(
            caller,
            "deployment.approve",
            (Kind::Deployment, id),
            vec![op],
        )
        .await
        .map_err(changed_meanwhile)?;
        self.announce(&caller.org_id, &loaded.value).await;
        Ok(loaded.value)
    }

    pub async fn reject_deployment(&self, caller: &Caller, id: &str) -> Result<Deployment> {
        let loaded = self.waiting_for_approval(caller, id).await?;
        self.audit_only(caller, "deployment.reject", id).await?;
        let reason = format!("rejected by {}", caller.key_name);
        self.conclude(loaded, DeploymentStatus::Rejected, Some(reason), None)
            .await
    }

    /// Cancels a deployment that has not ended. A running sandbox is asked to stop
    /// (Terraform gets SIGINT first); the deployment ends `cancelled` when it has.
    /// `force` (admins only) is the escape hatch for a deployment that cannot end by
    /// itself (its sandbox gone without a word): it ends `cancelled` at once, its
    /// sandbox told to stop, its locks released and the environment's next one started.
    pub async fn cancel_deployment(
        &self,
        caller: &Caller,
        id: &str,
        force: bool,
    ) -> Result<Deployment> {
        // The runner reports its steps on the same record: a cancel that meets one of
        // those writes reads the deployment again rather than failing with a conflict.
        retrying_conflicts("the deployment kept changing; try again", || {
            self.try_cancel(caller, id, force)
        })
        .await
    }

    async fn try_cancel(&self, caller: &Caller, id: &str, force: bool) -> Result<Deployment> {
        let mut loaded = self.load::<Deployment>(&caller.org_id, id).await?;
        let role = if force {
            Role::Admin
        } else {
            role_for(loaded.value.action)
        };
        caller.require(role, Some(&loaded.value.project_id))?;
        let reason = format!("cancelled by {}", caller.key_name);
        match loaded.value.status {
            DeploymentStatus::Running if force => {
                self.audit_only(caller, "deployment.force_cancel", id)
                    .await?;
                let reason = format!(
                    "force-cancelled by {}: ended without waiting for its sandbox",
                    caller.key_name
                );
                let (attempt, cancelled) = (loaded.value.attempt, DeploymentStatus::Cancelled);
                match self
                    .conclude_and_stop(&caller.org_id, id, attempt, cancelled, reason)
                    .await?
                {
                    Some(deployment) => Ok(deployment),
                    // It ended by itself meanwhile.
                    None => Ok(self.load::<Deployment>(&caller.org_id, id).await?.value),
                }
            }
            DeploymentStatus::Queued | DeploymentStatus::WaitingForApproval => {
                self.audit_only(caller, "deployment.cancel", id).await?;
                self.conclude(loaded, DeploymentStatus::Cancelled, Some(reason), None)
                    .await
            }
            DeploymentStatus::Running => {
                loaded.value.cancel_requested = true;
                loaded.value.reason = Some(reason);
                loaded.value.updated_at = self.now();
                let write = vec![loaded.replace()?];
                self.commit_audited(caller, "deployment.cancel", (Kind::Deployment, id), write)
                    .await?;
                let attempt = loaded.value.attempt;
                if let Err(error) = self.launcher.stop(&caller.org_id, id, attempt).await {
                    tracing::warn!(deployment_id = id, %error, "stopping the sandbox failed");
                }
                Ok(loaded.value)
            }
            status => Err(Error::conflict(format!(
                "the deployment has already ended ({})",
                status.as_str()
            ))),
        }
    }

    /// The environment's deployments that have not ended, queued ones first: cancelling
    /// them in that order leaves nothing for a running one's end to start.
    pub(super) async fn unfinished_deployments(
        &self,
        org_id: &str,
        environment_id: &str,
    ) -> Result<Vec<Loaded<Deployment>>> {
        let mut unfinished: Vec<Loaded<Deployment>> = self
            .all::<Deployment>(org_id, environment_id)
            .await?
            .into_iter()
            .filter(|loaded| !loaded.value.status.is_final())
            .collect();
        unfinished.sort_by_key(|d| d.value.status != DeploymentStatus::Queued);
        Ok(unfinished)
    }

    /// Ends a deployment of an environment being deleted as `cancelled`, then stops its
    /// sandbox if it had one. One that ended meanwhile is left as it ended.
    pub(super) async fn cancel_for_deletion(
        &self,
        loaded: Loaded<Deployment>,
        reason: &str,
    ) -> Result<()> {
        let (org_id, id) = (loaded.stored.org_id.clone(), loaded.value.id.clone());
        let (cancelled, reason) = (DeploymentStatus::Cancelled, reason.to_string());
        if loaded.value.status == DeploymentStatus::Running {
            let attempt = loaded.value.attempt;
            self.conclude_and_stop(&org_id, &id, attempt, cancelled, reason)
                .await?;
            return Ok(());
        }
        match self.conclude(loaded, cancelled, Some(reason), None).await {
            Ok(_) => Ok(()),
            Err(Error::Conflict(_))
                if self
                    .load::<Deployment>(&org_id, &id)
                    .await?
                    .value
                    .status
                    .is_final() =>
            {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Stops the sandbox of `attempt` (the current one when unnamed) if it should not
    /// run: its deployment was cancelled, has ended (force-cancelled, timed out) or
    /// moved on to another attempt (its start was retried), where the process that
    /// decided cannot stop it itself (on AWS the api, the reaper and the task-events
    /// function ask the deployer, through the queue). The sandbox of a running attempt
    /// nobody cancelled is left as it is, whatever a late or repeated message says.
    pub async fn stop_unwanted_sandbox(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: Option<u32>,
    ) -> Result<()> {
        let Some(Loaded {
            value: deployment, ..
        }) = self.find::<Deployment>(org_id, deployment_id).await?
        else {
            return Ok(());
        };
        let attempt = attempt.unwrap_or(deployment.attempt);
        let wanted = deployment.status == DeploymentStatus::Running
            && deployment.attempt == attempt
            && !deployment.cancel_requested;
        if !wanted {
            self.launcher.stop(org_id, deployment_id, attempt).await?;
        }
        Ok(())
    }

    async fn waiting_for_approval(&self, caller: &Caller, id: &str) -> Result<Loaded<Deployment>> {
        let loaded = self.load::<Deployment>(&caller.org_id, id).await?;
        caller.require(Role::Deployer, Some(&loaded.value.project_id))?;
        if loaded.value.status != DeploymentStatus::WaitingForApproval {
            return Err(Error::conflict(format!(
                "the deployment is not waiting for approval (it is {})",
                loaded.value.status.as_str()
            )));
        }
        Ok(loaded)
    }

    async fn audit_only(&self, caller: &Caller, action: &str, id: &str) -> Result<()> {
        Ok(self
            .commit_audited(caller, action, (Kind::Deployment, id), Vec::new())
            .await?)
    }

    /// [`Self::announce`] for many deployments at once, in as few round trips as the
    /// queue allows.
    pub(super) async fn announce_all(&self, org_id: &str, deployments: &[&Deployment]) {
        let messages: Vec<DeploymentMessage> = deployments
            .iter()
            .map(|deployment| message_for(org_id, deployment))
            .collect();
        if messages.is_empty() {
            return;
        }
        if let Err(error) = self.queue.send_many(&messages).await {
            tracing::error!(count = messages.len(), %error, "queueing the deployments failed");
        }
    }

    /// Asks the dispatcher to look at this deployment. A lost message loses nothing: the
    /// deployment stays queued, and recovery (or the reaper) sends it again.
    pub(super) async fn announce(&self, org_id: &str, deployment: &Deployment) {
        if let Err(error) = self.queue.send(&message_for(org_id, deployment)).await {
            tracing::error!(deployment_id = %deployment.id, %error, "queueing the deployment failed");
        }
    }
}
