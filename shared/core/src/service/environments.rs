use crate::auth::{Caller, Role};
use crate::drift::DriftStatus;
use crate::ids::new_id;
use chrono::{DateTime, Duration, Utc};

use crate::model::{
    CreateEnvironment, Environment, Listing, Project, Schedule, ScheduleSettings, Schedules,
    SetTtl, Template, UpdateEnvironment,
};
use crate::ports::{Kind, WriteOp};
use crate::schedule::{Calendar, CalendarInput, ScheduledJob};
use crate::{validate, Error, Result};

use super::scheduler::due_job_writes;
use super::state::{RetiredEnvironment, RETIRED_STATE_DAYS};
use super::templates::name_in_project_key;
use super::{changed_meanwhile, name_taken, record, PageRequest, Platform, Stored};

impl Stored for Environment {
    const KIND: Kind = Kind::Environment;
    const NOUN: &'static str = "environment";
}

/// A time to live from `now`: the duration as written, and when it ends.
fn expiry(
    ttl: Option<String>,
    now: DateTime<Utc>,
) -> Result<(Option<String>, Option<DateTime<Utc>>)> {
    let Some(text) = ttl else {
        return Ok((None, None));
    };
    let seconds = validate::ttl_seconds(&text)?;
    let ends = now + Duration::seconds(seconds as i64);
    Ok((Some(text), Some(ends)))
}

/// The calendars `settings` set, each next firing after `now`; a job that had one
/// keeps what it queued last (so a changed calendar does not run over it).
fn schedules(
    settings: ScheduleSettings,
    current: &Schedules,
    now: DateTime<Utc>,
) -> Result<Schedules> {
    let schedule = |job: ScheduledJob, input: Option<CalendarInput>| {
        input
            .map(|input| {
                let mut schedule = Schedule::new(&Calendar::parse(input)?, now)?;
                schedule.last_deployment_id = current
                    .get(job)
                    .and_then(|old| old.last_deployment_id.clone());
                Ok::<_, Error>(schedule)
            })
            .transpose()
    };
    Ok(Schedules {
        deploy: schedule(ScheduledJob::Deploy, settings.deploy)?,
        destroy: schedule(ScheduledJob::Destroy, settings.destroy)?,
        drift: schedule(ScheduledJob::Drift, settings.drift)?,
    })
}

impl Platform {
    pub async fn create_environment(
        &self,
        caller: &Caller,
        input: CreateEnvironment,
    ) -> Result<Environment> {
        caller.require(Role::Deployer, Some(&input.project_id))?;
        if input.allow_self_approval
            || input.pull_request_plans
            || input.continuous_deployment
            || input.auto_remediate_drift
        {
            caller.require(Role::Admin, Some(&input.project_id))?;
        }
        let watch_paths = validate::watch_paths(input.watch_paths)?;
        let name = validate::name("name", &input.name)?;
        let revision = input
            .revision
            .as_deref()
            .map(validate::revision)
            .transpose()?;
        let now = self.now();
        let (ttl, expires_at) = expiry(input.ttl, now)?;
        let schedules = schedules(
            input.schedules.unwrap_or_default(),
            &Schedules::default(),
            now,
        )?;
        let deployment_timeout_minutes = input.deployment_timeout_minutes.map_or(
            Ok(validate::DEFAULT_DEPLOYMENT_TIMEOUT_MINUTES),
            validate::deployment_timeout_minutes,
        )?;
        self.load::<Project>(&caller.org_id, &input.project_id)
            .await?;
        let template = self
            .load::<Template>(&caller.org_id, &input.template_id)
            .await?;
        // A template of another project is not one this environment can name.
        if template.value.project_id != input.project_id {
            return Err(Error::NotFound("template of this project"));
        }
        let environment = Environment {
            id: new_id("env"),
            name,
            project_id: input.project_id,
            template_id: input.template_id,
            revision,
            requires_approval: input.requires_approval,
            allow_self_approval: input.allow_self_approval,
            ttl,
            expires_at,
            schedules,
            deployment_timeout_minutes,
            auto_remediate_drift: input.auto_remediate_drift,
            drift_status: DriftStatus::Unknown,
            drift_check: None,
            cost_estimate: None,
            deployed: false,
            monthly_budget: input
                .monthly_budget
                .map(validate::monthly_budget)
                .transpose()?,
            tag_resources: input.tag_resources,
            pull_request_plans: input.pull_request_plans,
            continuous_deployment: input.continuous_deployment,
            watch_paths,
            outputs: None,
            created_at: now,
            updated_at: now,
        };
        let unique = name_in_project_key(&environment.project_id, &environment.name);
        let insert = record(
            &caller.org_id,
            &environment.id,
            Some(&environment.project_id),
            Some(unique),
            &environment,
        )?;
        let mut ops = vec![WriteOp::Insert(insert)];
        ops.extend(due_job_writes(
            &caller.org_id,
            &environment.id,
            &[],
            &environment.next_runs(),
        )?);
        self.commit_audited(
            caller,
            "environment.create",
            (Kind::Environment, &environment.id),
            ops,
        )
        .await
        .map_err(|e| name_taken(e, "environment in this project", &environment.name))?;
        Ok(environment)
    }

    pub async fn list_environments(
        &self,
        caller: &Caller,
        project_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Listing<Environment>> {
        let project_id = self.listing_scope(caller, project_id)?;
        self.page(&caller.org_id, project_id.as_deref(), page, false)
            .await
    }

    pub async fn get_environment(&self, caller: &Caller, id: &str) -> Result<Environment> {
        let environment = self.load::<Environment>(&caller.org_id, id).await?.value;
        caller.require(Role::Viewer, Some(&environment.project_id))?;
        Ok(environment)
    }

    pub async fn update_environment(
        &self,
        caller: &Caller,
        id: &str,
        input: UpdateEnvironment,
    ) -> Result<Environment> {
        let mut loaded = self.load::<Environment>(&caller.org_id, id).await?;
        caller.require(Role::Deployer, Some(&loaded.value.project_id))?;
        let now = self.now();
        let before = loaded.value.next_runs();
        let environment = &mut loaded.value;
        if let Some(name) = input.name {
            environment.name = validate::name("name", &name)?;
        }
        if let Some(revision) = input.revision {
            environment.revision = revision.as_deref().map(validate::revision).transpose()?;
        }
        let approval_changes = input
            .requires_approval
            .is_some_and(|v| v != environment.requires_approval)
            || input
                .allow_self_approval
                .is_some_and(|v| v != environment.allow_self_approval);
        // Pull request plans run code anyone who can push a branch wrote, with the
        // environment's variables; continuous deployment and drift remediation apply
        // without a person asking.
        let automation_changes = input
            .pull_request_plans
            .is_some_and(|v| v != environment.pull_request_plans)
            || input
                .continuous_deployment
                .is_some_and(|v| v != environment.continuous_deployment)
            || input
                .auto_remediate_drift
                .is_some_and(|v| v != environment.auto_remediate_drift);
        if approval_changes || automation_changes {
            caller.require(Role::Admin, Some(&environment.project_id))?;
        }
        if let Some(enabled) = input.pull_request_plans {
            environment.pull_request_plans = enabled;
        }
        if let Some(enabled) = input.continuous_deployment {
            environment.continuous_deployment = enabled;
        }
        if let Some(enabled) = input.auto_remediate_drift {
            environment.auto_remediate_drift = enabled;
        }
        if let Some(enabled) = input.tag_resources {
            environment.tag_resources = enabled;
        }
        if let Some(budget) = input.monthly_budget {
            environment.monthly_budget = budget.map(validate::monthly_budget).transpose()?;
        }
        if let Some(globs) = input.watch_paths {
            environment.watch_paths = validate::watch_paths(globs)?;
        }
        if let Some(requires_approval) = input.requires_approval {
            environment.requires_approval = requires_approval;
        }
        if let Some(allow_self_approval) = input.allow_self_approval {
            environment.allow_self_approval = allow_self_approval;
        }
        if let Some(value) = input.ttl {
            (environment.ttl, environment.expires_at) = expiry(value, now)?;
        }
        if let Some(settings) = input.schedules {
            environment.schedules = schedules(settings, &environment.schedules, now)?;
        }
        if let Some(minutes) = input.deployment_timeout_minutes {
            environment.deployment_timeout_minutes = validate::deployment_timeout_minutes(minutes)?;
        }
        environment.updated_at = now;
        let unique = name_in_project_key(&environment.project_id, &environment.name);
        let name = environment.name.clone();
        self.ensure_name_free(
            Kind::Environment,
            &unique,
            id,
            "environment in this project",
            &name,
        )
        .await?;
        let replace = loaded.replace_with_unique_key(Some(unique))?;
        self.commit_changed(
            caller,
            "environment.update",
            replace,
            &loaded.value,
            &before,
        )
        .await?;
        Ok(loaded.value)
    }

    /// Commits `replace`, a change of `environment` whose scheduled runs were `before`,
    /// with the due-job records it moves, audited as `action`.
    async fn commit_changed(
        &self,
        caller: &Caller,
        action: &str,
        replace: WriteOp,
        environment: &Environment,
        before: &[(ScheduledJob, DateTime<Utc>)],
    ) -> Result<()> {
        let id = &environment.id;
        let after = environment.next_runs();
        let mut ops = vec![replace];
        ops.extend(due_job_writes(&caller.org_id, id, before, &after)?);
        self.commit_audited(caller, action, (Kind::Environment, id), ops)
            .await
            .map_err(changed_meanwhile)
    }

    /// Sets when the environment's time to live ends (`ttl` from now, or `expires_at`),
    /// or removes it; a destroy is queued when it ends.
    pub async fn set_ttl(&self, caller: &Caller, id: &str, input: SetTtl) -> Result<Environment> {
        let now = self.now();
        let mut loaded = self.load::<Environment>(&caller.org_id, id).await?;
        caller.require(Role::Deployer, Some(&loaded.value.project_id))?;
        let before = loaded.value.next_runs();
        let environment = &mut loaded.value;
        (environment.ttl, environment.expires_at) = match (input.ttl, input.expires_at) {
            (Some(ttl), None) => expiry(ttl, now)?,
            (None, Some(at)) => (None, Some(validate::expiry_time(at, now)?)),
            _ => {
                return Err(Error::invalid(
                    "give either ttl (a duration such as 8h, or null to remove the time to live) or expires_at",
                ))
            }
        };
        environment.updated_at = now;
        let replace = loaded.replace()?;
        self.commit_changed(caller, "environment.ttl", replace, &loaded.value, &before)
            .await?;
        Ok(loaded.value)
    }

    /// Deletes the environment's record and variables. It does not destroy what the
    /// environment deployed: that is a `destroy` deployment's job. Refused (409) while
    /// deployments of it have not ended or it holds Terraform state, unless an admin
    /// forces it: then its unfinished deployments are cancelled first (a running
    /// sandbox told to stop), and its state versions stay in the store.
    pub async fn delete_environment(&self, caller: &Caller, id: &str, force: bool) -> Result<()> {
        let loaded = self.load::<Environment>(&caller.org_id, id).await?;
        let role = if force { Role::Admin } else { Role::Deployer };
        caller.require(role, Some(&loaded.value.project_id))?;
        let unfinished = self.unfinished_deployments(&caller.org_id, id).await?;
        let state = self.latest_state_version(&caller.org_id, id).await?;
        if !force {
            if !unfinished.is_empty() {
                return Err(Error::conflict(format!(
                    "{} deployment(s) of the environment have not ended: cancel them, or delete with force=true (admins)",
                    unfinished.len()
                )));
            }
            if let Some(state) = state {
                return Err(Error::conflict(format!(
                    "the environment holds Terraform state (version {}): destroy what it deployed first, or delete with force=true (admins)",
                    state.version.version
                )));
            }
        }
        let reason = format!("the environment was deleted by {}", caller.key_name);
        for deployment in unfinished {
            self.cancel_for_deletion(deployment, &reason).await?;
        }
        let mut ops = Vec::new();
        if state.is_some() {
            ops.push(self.retire(caller, &loaded.value).await?);
        }
        ops.extend(self.variable_deletions(&caller.org_id, id).await?);
        ops.extend(due_job_writes(
            &caller.org_id,
            id,
            &loaded.value.next_runs(),
            &[],
        )?);
        ops.push(loaded.delete());
        let action = if force {
            "environment.force_delete"
        } else {
            "environment.delete"
        };
        self.commit_audited(caller, action, (Kind::Environment, id), ops)
            .await
            .map_err(changed_meanwhile)
    }

    /// The record that keeps a deleted environment's state readable for
    /// [`RETIRED_STATE_DAYS`], with what masking its state needs.
    async fn retire(&self, caller: &Caller, environment: &Environment) -> Result<WriteOp> {
        let now = self.now();
        let retired = RetiredEnvironment {
            environment: environment.clone(),
            sealed_sensitive: self.sealed_sensitive(&caller.org_id, environment).await?,
            deleted_at: now,
            deleted_by: caller.key_name.clone(),
            readable_until: now + chrono::Duration::days(RETIRED_STATE_DAYS),
        };
        let id = &environment.id;
        // A record left by an earlier delete of the same id cannot exist: ids are new.
        Ok(WriteOp::Insert(record(
            &caller.org_id,
            id,
            None,
            None,
            &retired,
        )?))
    }
}
