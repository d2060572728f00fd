use crate::auth::{Caller, Role};
use crate::ids::new_id;
use crate::model::{CreateEnvironment, Environment, Listing, Project, Template, UpdateEnvironment};
use crate::ports::{Kind, WriteOp};
use crate::{validate, Error, Result};

use super::state::{RetiredEnvironment, RETIRED_STATE_DAYS};
use super::templates::name_in_project_key;
use super::{changed_meanwhile, name_taken, record, PageRequest, Platform, Stored};

impl Stored for Environment {
    const KIND: Kind = Kind::Environment;
    const NOUN: &'static str = "environment";
}

/// Drift detection arrives with the scheduler; until then only `null` is accepted, so a
/// setting is never silently ignored.
fn no_drift_settings(drift: Option<serde_json::Value>) -> Result<()> {
    match drift {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(_) => Err(Error::invalid(
            "drift detection is not available yet; drift must be null",
        )),
    }
}

fn ttl(value: Option<String>) -> Result<Option<String>> {
    value
        .map(|text| validate::ttl_seconds(&text).map(|_| text))
        .transpose()
}

impl Platform {
    pub async fn create_environment(
        &self,
        caller: &Caller,
        input: CreateEnvironment,
    ) -> Result<Environment> {
        caller.require(Role::Deployer, Some(&input.project_id))?;
        if input.allow_self_approval || input.pull_request_plans || input.continuous_deployment {
            caller.require(Role::Admin, Some(&input.project_id))?;
        }
        let watch_paths = validate::watch_paths(input.watch_paths)?;
        let name = validate::name("name", &input.name)?;
        let revision = input
            .revision
            .as_deref()
            .map(validate::revision)
            .transpose()?;
        let ttl = ttl(input.ttl)?;
        let deployment_timeout_minutes = input.deployment_timeout_minutes.map_or(
            Ok(validate::DEFAULT_DEPLOYMENT_TIMEOUT_MINUTES),
            validate::deployment_timeout_minutes,
        )?;
        no_drift_settings(input.drift)?;
        self.load::<Project>(&caller.org_id, &input.project_id)
            .await?;
        let template = self
            .load::<Template>(&caller.org_id, &input.template_id)
            .await?;
        // A template of another project is not one this environment can name.
        if template.value.project_id != input.project_id {
            return Err(Error::NotFound("template of this project"));
        }
        let now = self.now();
        let environment = Environment {
            id: new_id("env"),
            name,
            project_id: input.project_id,
            template_id: input.template_id,
            revision,
            requires_approval: input.requires_approval,
            allow_self_approval: input.allow_self_approval,
            ttl,
            deployment_timeout_minutes,
            drift: None,
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
        self.commit_audited(
            caller,
            "environment.create",
            (Kind::Environment, &environment.id),
            vec![WriteOp::Insert(insert)],
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
        no_drift_settings(input.drift)?;
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
        // environment's variables; continuous deployment applies without a person.
        let automation_changes = input
            .pull_request_plans
            .is_some_and(|v| v != environment.pull_request_plans)
            || input
                .continuous_deployment
                .is_some_and(|v| v != environment.continuous_deployment);
        if approval_changes || automation_changes {
            caller.require(Role::Admin, Some(&environment.project_id))?;
        }
        if let Some(enabled) = input.pull_request_plans {
            environment.pull_request_plans = enabled;
        }
        if let Some(enabled) = input.continuous_deployment {
            environment.continuous_deployment = enabled;
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
            environment.ttl = ttl(value)?;
        }
        if let Some(minutes) = input.deployment_timeout_minutes {
            environment.deployment_timeout_minutes = validate::deployment_timeout_minutes(minutes)?;
        }
        environment.updated_at = self.now();
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
        let op = loaded.replace_with_unique_key(Some(unique))?;
        self.commit_audited(
            caller,
            "environment.update",
            (Kind::Environment, id),
            vec![op],
        )
        .await
        .map_err(changed_meanwhile)?;
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
