use crate::auth::{Caller, Role};
use crate::ids::new_id;
use crate::model::{
    CreateTemplate, Environment, IacType, Listing, Project, Template, UpdateTemplate,
};
use crate::ports::{Kind, WriteOp};
use crate::{validate, Error, Result};

use super::{changed_meanwhile, name_taken, record, PageRequest, Platform, Stored};

impl Stored for Template {
    const KIND: Kind = Kind::Template;
    const NOUN: &'static str = "template";
}

const DEFAULT_REVISION: &str = "main";

/// Names are unique within a project.
pub(super) fn name_in_project_key(project_id: &str, name: &str) -> String {
    format!("{project_id}/{name}")
}

impl Platform {
    pub async fn create_template(
        &self,
        caller: &Caller,
        input: CreateTemplate,
    ) -> Result<Template> {
        caller.require(Role::Admin, Some(&input.project_id))?;
        let name = validate::name("name", &input.name)?;
        let repository = validate::repository_url(
            &input.repository,
            self.settings.local_repositories.as_deref(),
        )?;
        let revision = validate::revision(input.revision.as_deref().unwrap_or(DEFAULT_REVISION))?;
        let path = validate::repository_path(input.path.as_deref().unwrap_or("."))?;
        let iac_version = validate::iac_version(&input.iac_version)?;
        self.load::<Project>(&caller.org_id, &input.project_id)
            .await?;
        let now = self.now();
        let template = Template {
            id: new_id("tpl"),
            name,
            project_id: input.project_id,
            repository,
            revision,
            path,
            iac_type: input.iac_type.unwrap_or(IacType::Terraform),
            iac_version,
            created_at: now,
            updated_at: now,
        };
        let unique = name_in_project_key(&template.project_id, &template.name);
        let insert = record(
            &caller.org_id,
            &template.id,
            Some(&template.project_id),
            Some(unique),
            &template,
        )?;
        self.commit_audited(
            caller,
            "template.create",
            (Kind::Template, &template.id),
            vec![WriteOp::Insert(insert)],
        )
        .await
        .map_err(|e| name_taken(e, "template in this project", &template.name))?;
        Ok(template)
    }

    pub async fn list_templates(
        &self,
        caller: &Caller,
        project_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Listing<Template>> {
        let project_id = self.listing_scope(caller, project_id)?;
        self.page(&caller.org_id, project_id.as_deref(), page, false)
            .await
    }

    pub async fn get_template(&self, caller: &Caller, id: &str) -> Result<Template> {
        let template = self.load::<Template>(&caller.org_id, id).await?.value;
        caller.require(Role::Viewer, Some(&template.project_id))?;
        Ok(template)
    }

    pub async fn update_template(
        &self,
        caller: &Caller,
        id: &str,
        input: UpdateTemplate,
    ) -> Result<Template> {
        let mut loaded = self.load::<Template>(&caller.org_id, id).await?;
        caller.require(Role::Admin, Some(&loaded.value.project_id))?;
        let template = &mut loaded.value;
        if let Some(name) = input.name {
            template.name = validate::name("name", &name)?;
        }
        if let Some(repository) = input.repository {
            template.repository =
                validate::repository_url(&repository, self.settings.local_repositories.as_deref())?;
        }
        if let Some(revision) = input.revision {
            template.revision = validate::revision(&revision)?;
        }
        if let Some(path) = input.path {
            template.path = validate::repository_path(&path)?;
        }
        if let Some(iac_type) = input.iac_type {
            template.iac_type = iac_type;
        }
        if let Some(version) = input.iac_version {
            template.iac_version = validate::iac_version(&version)?;
        }
        template.updated_at = self.now();
        let unique = name_in_project_key(&template.project_id, &template.name);
        let name = template.name.clone();
        self.ensure_name_free(
            Kind::Template,
            &unique,
            id,
            "template in this project",
            &name,
        )
        .await?;
        let op = loaded.replace_with_unique_key(Some(unique))?;
        self.commit_audited(caller, "template.update", (Kind::Template, id), vec![op])
            .await
            .map_err(changed_meanwhile)?;
        Ok(loaded.value)
    }

    /// Deletes a template no environment uses any more, with its variables.
    pub async fn delete_template(&self, caller: &Caller, id: &str) -> Result<()> {
        let loaded = self.load::<Template>(&caller.org_id, id).await?;
        caller.require(Role::Admin, Some(&loaded.value.project_id))?;
        let in_use = self
            .all::<Environment>(&caller.org_id, &loaded.value.project_id)
            .await?
            .iter()
            .any(|environment| environment.value.template_id == id);
        if in_use {
            return Err(Error::conflict(
                "environments still use this template; delete them first",
            ));
        }
        let mut ops = self.variable_deletions(&caller.org_id, id).await?;
        ops.push(loaded.delete());
        self.commit_audited(caller, "template.delete", (Kind::Template, id), ops)
            .await
            .map_err(changed_meanwhile)
    }

    /// The project a listing is narrowed to: a project key only ever lists its own.
    pub(super) fn listing_scope(
        &self,
        caller: &Caller,
        project_id: Option<&str>,
    ) -> Result<Option<String>> {
        match (&caller.project_id, project_id) {
            (Some(own), None) => Ok(Some(own.clone())),
            (_, requested) => {
                caller.require(Role::Viewer, requested.or(caller.project_id.as_deref()))?;
                Ok(requested.map(str::to_string))
            }
        }
    }
}
