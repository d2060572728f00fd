//! Deployments: what was asked (plan, apply, destroy), where it is in its life, and
//! what the sandbox reported back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::cost::{CostEstimate, CostSummary};
use crate::model::{Environment, VariableKind};
use crate::schedule::ScheduledJob;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Plan only: nothing changes.
    Plan,
    Apply,
    Destroy,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plan => "plan",
            Self::Apply => "apply",
            Self::Destroy => "destroy",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    Queued,
    Running,
    WaitingForApproval,
    Succeeded,
    Failed,
    Cancelled,
    Rejected,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::WaitingForApproval => "waiting_for_approval",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Rejected
        )
    }

    /// The transitions a deployment may take; every write checks one of these.
    pub fn can_become(self, next: Self) -> bool {
        use DeploymentStatus::*;
        matches!(
            (self, next),
            (Queued, Running | Cancelled | Failed)
                // Back to the queue: its sandbox failed to start and is tried again.
                | (Running, Queued | WaitingForApproval | Succeeded | Failed | Cancelled)
                | (WaitingForApproval, Queued | Rejected | Cancelled | Failed)
        )
    }
}

/// Which part of a deployment one sandbox runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Plan, then apply (or destroy) in the same sandbox; or plan only.
    PlanAndApply,
    /// Plan and stop: the deployment waits for approval.
    PlanForApproval,
    /// Apply exactly the plan saved by the first phase.
    ApplySavedPlan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Running,
    Succeeded,
    Failed,
    Skipped,
}

/// One logged step: `clone`, a hook such as `before_plan`, `init`, `plan`, `apply`,
/// `destroy`, `outputs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Step {
    pub name: String,
    pub status: StepStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanSummary {
    pub add: u32,
    pub change: u32,
    pub destroy: u32,
    /// Whether any output would change.
    pub outputs_changed: bool,
}

impl PlanSummary {
    pub fn has_changes(&self) -> bool {
        self.add + self.change + self.destroy > 0 || self.outputs_changed
    }
}

/// A plan as people read it, as the sandbox that made it sends it: Terraform's text
/// (`terraform show`) and its JSON (`terraform show -json`) without the values Terraform
/// marks sensitive, both masked of the deployment's sensitive variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanView {
    pub text: String,
    pub json: serde_json::Value,
}

/// A deployment's latest plan (`GET /v1/deployments/{id}/plan`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentPlan {
    pub deployment_id: String,
    pub plan_summary: Option<PlanSummary>,
    /// What `terraform show` prints, sensitive values masked.
    pub text: String,
    /// `terraform show -json`: its format version, variables, resource and output
    /// changes and drift, with every value Terraform marks sensitive replaced by
    /// `"(sensitive value)"` and the deployment's sensitive variables masked.
    #[schema(value_type = Object)]
    pub json: serde_json::Value,
    /// The plan priced from the catalog, resource by resource.
    pub cost_estimate: CostEstimate,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    pub id: String,
    pub environment_id: String,
    pub project_id: String,
    pub action: Action,
    pub status: DeploymentStatus,
    /// Whether an apply or destroy waits for approval after its plan.
    pub requires_approval: bool,
    /// The branch, tag or commit asked for.
    pub revision: String,
    /// The commit the plan ran on; an approved apply checks out exactly this one.
    pub commit: Option<String>,
    pub steps: Vec<Step>,
    pub plan_summary: Option<PlanSummary>,
    /// What its latest plan costs a month, before and after, from the price catalog.
    #[serde(default)]
    pub cost_estimate: Option<CostSummary>,
    /// SHA-256 of the saved plan, for deployments that wait for approval.
    #[serde(default)]
    pub plan_sha256: Option<String>,
    /// The plan hash an approval approved: the apply reads exactly this plan or fails.
    #[serde(default)]
    pub approved_plan_sha256: Option<String>,
    /// Why it failed, was cancelled or rejected.
    pub reason: Option<String>,
    /// Log bytes its sandboxes sent, counted against its quota.
    #[serde(default)]
    pub log_bytes: u64,
    pub cancel_requested: bool,
    /// Sandboxes started so far; names the current one.
    pub attempt: u32,
    pub requested_by: String,
    pub approved_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    /// When its current sandbox phase was dispatched: the deployment timeout counts
    /// from here (a wait for approval does not count).
    #[serde(default)]
    pub running_since: Option<DateTime<Utc>>,
    /// When the watchdog sent its queue message again, believing the first lost; cleared
    /// at its dispatch.
    #[serde(default)]
    pub resent_at: Option<DateTime<Utc>>,
    /// When the launcher accepted its current attempt's sandbox; unset between the
    /// commit that starts an attempt and the launcher's answer, so the watchdog can
    /// tell an attempt that was never launched.
    #[serde(default)]
    pub launched_at: Option<DateTime<Utc>>,
    /// Sandboxes of the current phase that failed to start; each is retried as a new
    /// attempt, up to three in all.
    #[serde(default)]
    pub start_failures: u32,
    pub finished_at: Option<DateTime<Utc>>,
    /// The region that started its current phase, and the switch's epoch then (AWS,
    /// where the platform spans regions; unset in one place).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub region: Option<crate::region::RegionName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// What asked for it when it was not a person: a pull request, a push, a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
}

/// The event behind a deployment no person asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// A plan of a pull request's head commit.
    PullRequest {
        /// `owner/name`.
        repository: String,
        number: u64,
        commit: String,
        /// Who pushed or commented.
        sender: String,
        /// The platform's record of the pull request.
        pull_request_id: String,
    },
    /// An apply of a push to the environment's branch.
    Push {
        repository: String,
        branch: String,
        commit: String,
        sender: String,
    },
    /// A scheduled job of the environment: its time to live ended, or a calendar fired.
    Schedule {
        job: ScheduledJob,
        /// The time the job was due.
        due_at: DateTime<Utc>,
    },
}

impl Trigger {
    pub fn pull_request_id(&self) -> Option<&str> {
        match self {
            Self::PullRequest {
                pull_request_id, ..
            } => Some(pull_request_id),
            Self::Push { .. } | Self::Schedule { .. } => None,
        }
    }
}

impl Deployment {
    /// A new deployment of `environment`, queued at `now`: `revision` is what it
    /// checks out, `requested_by` the key (or the version control user) that asked.
    pub fn queued(
        environment: &Environment,
        action: Action,
        revision: String,
        requested_by: String,
        trigger: Option<Trigger>,
        now: DateTime<Utc>,
    ) -> Self {
        Deployment {
            id: crate::ids::new_id("dep"),
            environment_id: environment.id.clone(),
            project_id: environment.project_id.clone(),
            action,
            status: DeploymentStatus::Queued,
            requires_approval: environment.requires_approval,
            revision,
            commit: None,
            steps: Vec::new(),
            plan_summary: None,
            cost_estimate: None,
            plan_sha256: None,
            approved_plan_sha256: None,
            log_bytes: 0,
            reason: None,
            cancel_requested: false,
            attempt: 0,
            requested_by,
            approved_by: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            running_since: None,
            resent_at: None,
            launched_at: None,
            start_failures: 0,
            finished_at: None,
            region: None,
            epoch: None,
            trigger,
        }
    }

    /// Whether the deployment is running in the sandbox of `attempt`.
    pub fn runs_attempt(&self, attempt: u32) -> bool {
        self.status == DeploymentStatus::Running && self.attempt == attempt
    }

    /// What the next sandbox of this deployment runs.
    pub fn next_phase(&self) -> Phase {
        if self.approved_by.is_some() {
            Phase::ApplySavedPlan
        } else if self.requires_approval && self.action != Action::Plan {
            Phase::PlanForApproval
        } else {
            Phase::PlanAndApply
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    pub action: Action,
}

/// An ordered piece of a deployment's log, already masked by the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogChunk {
    /// Increases through the deployment, across its sandboxes (plan, approved apply).
    pub seq: u64,
    pub step: String,
    pub text: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    pub items: Vec<LogChunk>,
    /// Pass as `after` to get what follows; `null` when nothing was returned.
    pub last_seq: Option<u64>,
    /// Whether the deployment has ended, so no more chunks will come.
    pub complete: bool,
}

/// Everything a sandbox needs to run its phase. Sent only to the sandbox, over HTTPS,
/// in exchange for its token: it carries sensitive values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub deployment_id: String,
    pub environment_id: String,
    pub action: Action,
    pub phase: Phase,
    pub repository: String,
    /// A commit when known (approved applies), else the branch or tag.
    pub revision: String,
    pub path: String,
    pub iac_version: String,
    pub variables: Vec<JobVariable>,
    /// The tags the bill is grouped by (`envplane:organization`, `envplane:environment`):
    /// Terraform gets them as `var.envplane_tags`.
    #[serde(default)]
    pub cost_tags: std::collections::BTreeMap<String, String>,
    /// Add `cost_tags` to the default AWS provider's `default_tags` (the environment's
    /// `tag_resources`).
    #[serde(default)]
    pub tag_resources: bool,
}

/// What a sandbox gets, once, for its launch credential: the job, and the credentials
/// it runs with from then on.
#[derive(Serialize, Deserialize)]
pub struct Session {
    pub job: Job,
    /// For the runner alone: logs, steps, the plan, the result. Never in template
    /// code's reach.
    pub runner_token: String,
    /// For Terraform's state backend: this environment's state and lock, this phase.
    pub state_token: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct JobVariable {
    pub name: String,
    pub value: String,
    pub kind: VariableKind,
    pub sensitive: bool,
}

impl std::fmt::Debug for JobVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobVariable")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("sensitive", &self.sensitive)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogChunkInput {
    pub seq: u64,
    pub step: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepReport {
    pub name: String,
    pub status: StepStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseResult {
    Succeeded,
    Failed,
    /// The plan is saved and waits for a person.
    PlanReady,
}

/// What a sandbox reports when its phase ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseReport {
    pub result: PhaseResult,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub plan_summary: Option<PlanSummary>,
    #[serde(default)]
    pub commit: Option<String>,
    /// Output values, sensitive ones already `null`.
    #[serde(default)]
    pub outputs: Option<serde_json::Map<String, serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeploymentStatus::*;

    #[test]
    fn final_statuses_go_nowhere() {
        for from in [Succeeded, Failed, Cancelled, Rejected] {
            for to in [
                Queued,
                Running,
                WaitingForApproval,
                Succeeded,
                Failed,
                Cancelled,
                Rejected,
            ] {
                assert!(!from.can_become(to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn approval_goes_back_to_the_queue() {
        assert!(Running.can_become(WaitingForApproval));
        assert!(WaitingForApproval.can_become(Queued));
        assert!(WaitingForApproval.can_become(Rejected));
        assert!(!Queued.can_become(WaitingForApproval));
        assert!(!Queued.can_become(Succeeded));
    }

    #[test]
    fn job_variables_do_not_debug_print_values() {
        let variable = JobVariable {
            name: "db_password".into(),
            value: "hunter2".into(),
            kind: VariableKind::Terraform,
            sensitive: true,
        };
        assert!(!format!("{variable:?}").contains("hunter2"));
    }
}
