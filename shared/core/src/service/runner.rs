//! The sandbox's side: trade the launch credential for the job, stream logs and steps,
//! hand over the plan, report the result. Every credential is valid for one deployment
//! phase only, and each opens only what its holder needs (see [`TokenScope`]).

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::auth::{generate_runner_token, hash_key};
use crate::deployment::{
    Deployment, DeploymentStatus, Job, JobVariable, LogChunk, LogChunkInput, Phase, PhaseReport,
    PhaseResult, PlanView, Session, Step, StepReport, StepStatus,
};
use crate::model::{Environment, Template};
use crate::ports::{Kind, StoreError, WriteOp, ENVIRONMENT_TAG, ORGANIZATION_TAG};
use crate::{Error, Result};

use super::credentials::{launch_token_id, minted_token_id, RunnerTokenRecord, TokenScope};
use super::deployments::log_chunk_id;
use super::{decode, record, retrying_conflicts, Platform};

/// Largest log chunk a sandbox may send; it batches below this.
pub const MAX_LOG_CHUNK_BYTES: usize = 256 * 1024;
const MAX_STEP_NAME_LEN: usize = 64;
const MAX_REASON_LEN: usize = 4096;

/// A sandbox, authenticated by one of its credentials.
#[derive(Debug, Clone)]
pub struct Runner {
    pub org_id: String,
    pub deployment_id: String,
    pub environment_id: String,
    pub attempt: u32,
    pub scope: TokenScope,
}

fn plan_key(deployment_id: &str) -> String {
    format!("plans/{deployment_id}")
}

pub(super) fn plan_view_key(deployment_id: &str) -> String {
    format!("plan-views/{deployment_id}")
}

impl Platform {
    /// A token is valid while its deployment runs the phase it was minted for: it
    /// expires when the deployment (or the phase) ends, or after its lifetime. It opens
    /// only the calls of one of `scopes`; a traded launch token opens nothing.
    pub async fn authenticate_runner(&self, token: &str, scopes: &[TokenScope]) -> Result<Runner> {
        let record = self
            .store
            .find_unique(Kind::RunnerToken, &hash_key(token))
            .await?
            .ok_or(Error::Unauthenticated)?;
        let token: RunnerTokenRecord = decode(&record)?;
        if token.expires_at <= self.now() || token.traded {
            return Err(Error::Unauthenticated);
        }
        if !scopes.contains(&token.scope) {
            return Err(Error::forbidden(
                "this sandbox credential does not open this call",
            ));
        }
        let deployment = self
            .load::<Deployment>(&record.org_id, &token.deployment_id)
            .await?
            .value;
        if !deployment.runs_attempt(token.attempt) {
            return Err(Error::Unauthenticated);
        }
        Ok(Runner {
            org_id: record.org_id,
            deployment_id: token.deployment_id,
            environment_id: token.environment_id,
            attempt: token.attempt,
            scope: token.scope,
        })
    }

    /// Trades the phase's launch credential, once, for the job and two credentials: the
    /// runner's own and the state's (for Terraform). What a reader of the launch request
    /// saw is worthless from then on; a second trade is refused.
    pub async fn start_session(&self, runner: &Runner) -> Result<Session> {
        if runner.scope != TokenScope::Launch {
            return Err(Error::forbidden(
                "only the launch credential is traded for the job",
            ));
        }
        let launch_id = launch_token_id(&runner.deployment_id, runner.attempt);
        let mut launch = self
            .load::<RunnerTokenRecord>(&runner.org_id, &launch_id)
            .await?;
        if launch.value.scope != TokenScope::Launch || launch.value.traded {
            return Err(Error::conflict("this launch credential was already traded"));
        }
        launch.value.traded = true;
        let (runner_token, runner_insert) = self.mint(runner, &launch.value, TokenScope::Runner)?;
        let (state_token, state_insert) = self.mint(runner, &launch.value, TokenScope::State)?;
        let job = self.runner_job(runner).await?;
        let ops = vec![launch.replace()?, runner_insert, state_insert];
        self.store.commit(ops).await.map_err(|error| match error {
            StoreError::Conflict => Error::conflict("this launch credential was already traded"),
            other => other.into(),
        })?;
        Ok(Session {
            job,
            runner_token: runner_token.expose_secret().to_string(),
            state_token: state_token.expose_secret().to_string(),
        })
    }

    /// A new credential of `scope` for the launch credential's phase, and its insert.
    fn mint(
        &self,
        runner: &Runner,
        launch: &RunnerTokenRecord,
        scope: TokenScope,
    ) -> Result<(SecretString, WriteOp)> {
        let (token, hash) = generate_runner_token();
        let value = RunnerTokenRecord {
            scope,
            traded: false,
            ..launch.clone()
        };
        let id = minted_token_id(&runner.deployment_id, runner.attempt, scope);
        let insert = record(
            &runner.org_id,
            &id,
            Some(&runner.deployment_id),
            Some(hash),
            &value,
        )?;
        Ok((token, WriteOp::Insert(insert)))
    }

    /// The job of this phase, with every variable's value: the one place sensitive
    /// values leave the platform, to the sandbox that needs them.
    async fn runner_job(&self, runner: &Runner) -> Result<Job> {
        let deployment = self
            .load::<Deployment>(&runner.org_id, &runner.deployment_id)
            .await?
            .value;
        let environment = self
            .load::<Environment>(&runner.org_id, &runner.environment_id)
            .await?
            .value;
        let template = self
            .load::<Template>(&runner.org_id, &environment.template_id)
            .await?
            .value;
        let phase = deployment.next_phase();
        let revision = match phase {
            Phase::ApplySavedPlan => deployment
                .commit
                .clone()
                .unwrap_or(deployment.revision.clone()),
            _ => deployment.revision.clone(),
        };
        let mut variables = self.job_variables(&runner.org_id, &environment).await?;
        variables.extend(
            self.github_clone_credential(&runner.org_id, &template.repository, &variables)
                .await,
        );
        Ok(Job {
            deployment_id: deployment.id,
            environment_id: environment.id.clone(),
            action: deployment.action,
            phase,
            repository: template.repository,
            revision,
            path: template.path,
            iac_version: template.iac_version,
            variables,
            cost_tags: [
                (ORGANIZATION_TAG.to_string(), runner.org_id.clone()),
                (ENVIRONMENT_TAG.to_string(), environment.id.clone()),
            ]
            .into(),
            tag_resources: environment.tag_resources,
        })
    }

    async fn job_variables(
        &self,
        org_id: &str,
        environment: &Environment,
    ) -> Result<Vec<JobVariable>> {
        let merged = self.merged_variables(org_id, environment).await?;
        let mut variables = Vec::with_capacity(merged.len());
        for variable in merged {
            let value = match &variable.sealed {
                Some(sealed) => self
                    .key_ring
                    .open(org_id, sealed)
                    .await?
                    .expose_secret()
                    .to_string(),
                None => variable.value.unwrap_or_default(),
            };
            variables.push(JobVariable {
                name: variable.name,
                value,
                kind: variable.kind,
                sensitive: variable.sensitive,
            });
        }
        Ok(variables)
    }

    /// The runner is alive: records the time on its credential, where the watchdog
    /// reads it. Only the runner's own credential sends heartbeats.
    pub async fn heartbeat(&self, runner: &Runner) -> Result<()> {
        let id = minted_token_id(&runner.deployment_id, runner.attempt, TokenScope::Runner);
        retrying_conflicts("the credential kept changing; try again", || async {
            let mut token = self.load::<RunnerTokenRecord>(&runner.org_id, &id).await?;
            token.value.heartbeat_at = Some(self.now());
            Ok(self.store.commit(vec![token.replace()?]).await?)
        })
        .await
        // Deleted meanwhile: the phase ended, and the credential with it.
        .map_err(|error| match error {
            Error::NotFound(_) => Error::Unauthenticated,
            other => other,
        })
    }

    /// Stores masked log chunks. Resending a chunk (after a network blip) is harmless
    /// and not counted twice. A deployment whose log outgrows its quota ends, failed,
    /// saying so.
    pub async fn append_logs(&self, runner: &Runner, chunks: Vec<LogChunkInput>) -> Result<()> {
        let bytes: u64 = chunks.iter().map(|chunk| chunk.text.len() as u64).sum();
        let quota = self.settings.quotas.log_bytes;
        let sent = self
            .load::<Deployment>(&runner.org_id, &runner.deployment_id)
            .await?
            .value
            .log_bytes;
        if sent + bytes > quota {
            return Err(self
                .over_quota(
                    runner,
                    format!("its log exceeded the quota of {quota} bytes"),
                )
                .await);
        }
        let mut stored_bytes = 0;
        for chunk in chunks {
            if chunk.text.len() > MAX_LOG_CHUNK_BYTES || chunk.step.len() > MAX_STEP_NAME_LEN {
                return Err(Error::invalid(format!(
                    "a log chunk holds at most {MAX_LOG_CHUNK_BYTES} bytes and a step name {MAX_STEP_NAME_LEN}"
                )));
            }
            if chunk.seq > u64::from(u32::MAX) {
                return Err(Error::invalid("a log chunk's seq is at most 2^32 - 1"));
            }
            // Each sandbox numbers its chunks from 1; the attempt in the high bits keeps
            // an approved apply's log after its plan's.
            let seq = (u64::from(runner.attempt) << 32) | chunk.seq;
            let chunk_bytes = chunk.text.len() as u64;
            let stored = LogChunk {
                seq,
                step: chunk.step,
                text: chunk.text,
                at: self.now(),
            };
            let id = log_chunk_id(&runner.deployment_id, seq);
            let insert = record(
                &runner.org_id,
                &id,
                Some(&runner.deployment_id),
                None,
                &stored,
            )?;
            match self.store.commit(vec![WriteOp::Insert(insert)]).await {
                Ok(()) => stored_bytes += chunk_bytes,
                Err(StoreError::Conflict) => {}
                Err(error) => return Err(error.into()),
            }
        }
        if stored_bytes == 0 {
            return Ok(());
        }
        self.modify_running(runner, |deployment, _| deployment.log_bytes += stored_bytes)
            .await
    }

    /// Ends the runner's deployment, failed, for the quota `what` names, and stops its
    /// sandbox; answers the 413 for the call that went over.
    async fn over_quota(&self, runner: &Runner, what: String) -> Error {
        let reason = format!("the deployment was stopped: {what}");
        let (org_id, id, attempt) = (&runner.org_id, &runner.deployment_id, runner.attempt);
        let failed = DeploymentStatus::Failed;
        if let Err(error) = self
            .conclude_and_stop(org_id, id, attempt, failed, reason.clone())
            .await
        {
            tracing::error!(%error, deployment_id = %id, "ending a deployment over quota failed");
        }
        Error::TooLarge(reason)
    }

    /// Records a step starting or ending. A deployment that reports more steps than its
    /// quota ends, failed, saying so.
    pub async fn report_step(&self, runner: &Runner, report: StepReport) -> Result<()> {
        if report.name.is_empty() || report.name.len() > MAX_STEP_NAME_LEN {
            return Err(Error::invalid("a step name has 1 to 64 characters"));
        }
        let steps = self
            .load::<Deployment>(&runner.org_id, &runner.deployment_id)
            .await?
            .value
            .steps;
        let quota = self.settings.quotas.steps;
        if steps.len() >= quota && !steps.iter().any(|step| step.name == report.name) {
            return Err(self
                .over_quota(
                    runner,
                    format!("it reported more than the quota of {quota} steps"),
                )
                .await);
        }
        self.modify_running(runner, |deployment, now| {
            let step = match deployment
                .steps
                .iter_mut()
                .find(|step| step.name == report.name)
            {
                Some(step) => step,
                None => {
                    deployment.steps.push(Step {
                        name: report.name.clone(),
                        status: report.status,
                        started_at: None,
                        finished_at: None,
                    });
                    deployment.steps.last_mut().expect("just pushed")
                }
            };
            step.status = report.status;
            match report.status {
                StepStatus::Running => step.started_at = Some(now),
                _ => {
                    step.started_at.get_or_insert(now);
                    step.finished_at = Some(now);
                }
            }
        })
        .await
    }

    /// Keeps the saved plan, sealed, for the approved apply: once, and only from the
    /// phase that plans for approval. Its SHA-256 goes on the deployment; an approval
    /// approves that hash.
    /// Keeps the plan as people read it (a [`PlanView`] in JSON), from whichever phase
    /// planned; a later attempt's replaces an earlier one's. Sealed like the plan itself:
    /// it shows the infrastructure's values. Its cost estimate goes on the deployment.
    pub async fn put_plan_view(&self, runner: &Runner, view: Vec<u8>) -> Result<()> {
        let quota = self.settings.quotas.plan_bytes;
        if view.len() > quota {
            return Err(Error::TooLarge(format!(
                "the plan view is over the quota of {quota} bytes"
            )));
        }
        let parsed = serde_json::from_slice::<PlanView>(&view)
            .map_err(|_| Error::invalid("a plan view is {\"text\": ..., \"json\": ...}"))?;
        let sealed = self.key_ring.seal_bytes(&runner.org_id, &view).await?;
        self.artifacts
            .put(
                &runner.org_id,
                &plan_view_key(&runner.deployment_id),
                sealed,
            )
            .await?;
        let summary = self.price(&parsed).summary();
        self.modify_running(runner, |deployment, _| {
            deployment.cost_estimate = Some(summary.clone());
        })
        .await
    }

    pub async fn put_plan(&self, runner: &Runner, plan: Vec<u8>) -> Result<()> {
        let quota = self.settings.quotas.plan_bytes;
        if plan.len() > quota {
            return Err(Error::TooLarge(format!(
                "the plan is over the quota of {quota} bytes"
            )));
        }
        let deployment = self
            .load::<Deployment>(&runner.org_id, &runner.deployment_id)
            .await?
            .value;
        if deployment.next_phase() != Phase::PlanForApproval {
            return Err(Error::conflict(
                "a plan is saved only by the phase that plans for approval",
            ));
        }
        if deployment.plan_sha256.is_some() {
            return Err(Error::conflict("this deployment's plan was already saved"));
        }
        let digest = hex::encode(Sha256::digest(&plan));
        let sealed = self.key_ring.seal_bytes(&runner.org_id, &plan).await?;
        self.artifacts
            .put(&runner.org_id, &plan_key(&runner.deployment_id), sealed)
            .await?;
        self.modify_running(runner, |deployment, _| {
            deployment.plan_sha256 = Some(digest.clone());
        })
        .await
    }

    /// The approved plan, for the phase that applies it: exactly the bytes whose hash
    /// was approved, or a conflict.
    pub async fn get_plan(&self, runner: &Runner) -> Result<Vec<u8>> {
        let deployment = self
            .load::<Deployment>(&runner.org_id, &runner.deployment_id)
            .await?
            .value;
        let applying = deployment.next_phase() == Phase::ApplySavedPlan;
        let approved = deployment
            .approved_plan_sha256
            .filter(|_| applying)
            .ok_or_else(|| Error::conflict("only the approved apply reads the saved plan"))?;
        let sealed = self
            .artifacts
            .get(&runner.org_id, &plan_key(&runner.deployment_id))
            .await?
            .ok_or(Error::NotFound("saved plan"))?;
        let plan = self.key_ring.open_bytes(&runner.org_id, &sealed).await?;
        if hex::encode(Sha256::digest(&plan)) != approved {
            return Err(Error::conflict(
                "the saved plan is not the one that was approved",
            ));
        }
        Ok(plan)
    }

    /// The sandbox's result for its phase: ends the deployment, or parks it until a
    /// person approves the saved plan.
    pub async fn finish_phase(&self, runner: &Runner, report: PhaseReport) -> Result<Deployment> {
        let reason = report
            .reason
            .map(|reason| truncate(&reason, MAX_REASON_LEN));
        let (summary, commit) = (report.plan_summary, report.commit);
        self.modify_running(runner, |deployment, _| {
            if summary.is_some() {
                deployment.plan_summary = summary;
            }
            if commit.is_some() {
                deployment.commit = commit.clone();
            }
        })
        .await?;
        let loaded = self
            .load::<Deployment>(&runner.org_id, &runner.deployment_id)
            .await?;
        let (status, outputs) = match report.result {
            PhaseResult::PlanReady if loaded.value.next_phase() == Phase::PlanForApproval => {
                (DeploymentStatus::WaitingForApproval, None)
            }
            PhaseResult::PlanReady => {
                return Err(Error::conflict("this phase does not wait for approval"));
            }
            PhaseResult::Succeeded => (DeploymentStatus::Succeeded, report.outputs),
            PhaseResult::Failed => (DeploymentStatus::Failed, None),
        };
        self.conclude(loaded, status, reason, outputs).await
    }

    /// Applies `change` to the runner's deployment while it is still running its phase.
    async fn modify_running(
        &self,
        runner: &Runner,
        change: impl Fn(&mut Deployment, chrono::DateTime<chrono::Utc>),
    ) -> Result<()> {
        retrying_conflicts("the deployment kept changing; try again", || async {
            let mut loaded = self
                .load::<Deployment>(&runner.org_id, &runner.deployment_id)
                .await?;
            if !loaded.value.runs_attempt(runner.attempt) {
                return Err(Error::Unauthenticated);
            }
            let now = self.now();
            change(&mut loaded.value, now);
            loaded.value.updated_at = now;
            Ok(self.store.commit(vec![loaded.replace()?]).await?)
        })
        .await
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}
