use crate::auth::{Caller, Role};
use crate::ids::new_id;
use crate::model::{CreateProject, Environment, Listing, Project, Template, UpdateProject};
use crate::ports::{Kind, WriteOp};
use crate::validate::{self, MAX_DESCRIPTION_LEN};
use crate::{Error, Result};

use super::{changed_meanwhile, name_taken, record, PageRequest, Platform, Stored};

impl Stored for Project {
    const KIND: Kind = Kind::Project;
    const NOUN: &'static str = "project";
}

fn project_name_key(org_id: &str, name: &str) -> String {
    format!("{org_id}/{name}")
}

fn description(value: Option<String>) -> Result<Option<String>> {
    match value {
        Some(text) if text.chars().count() > MAX_DESCRIPTION_LEN => Err(Error::invalid(format!(
            "description must be at most {MAX_DESCRIPTION_LEN} characters"
        ))),
        other => Ok(other),
    }
}

impl Platform {
    pub async fn create_project(&self, caller: &Caller, input: CreateProject) -> Result<Project> {
        caller.require(Role::Admin, None)?;
        let name = validate::name("name", &input.name)?;
        let now = self.now();
        let project = Project {
            id: new_id("prj"),
            name,
            description: description(input.description)?,
            created_at: now,
            updated_at: now,
        };
        let unique = project_name_key(&caller.org_id, &project.name);
        let insert = record(&caller.org_id, &project.id, None, Some(unique), &project)?;
        self.commit_audited(
            caller,
            "project.create",
            (Kind::Project, &project.id),
            vec![WriteOp::Insert(insert)],
        )
        .await
        .map_err(|e| name_taken(e, "project", &project.name))?;
        Ok(project)
    }

    /// All projects for an organization key; only its own project for a project key.
    pub async fn list_projects(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Listing<Project>> {
        match &caller.project_id {
            None => self.page(&caller.org_id, None, page, false).await,
            Some(own) => Ok(Listing {
                items: vec![self.get_project(caller, own).await?],
                next: None,
            }),
        }
    }

    pub async fn get_project(&self, caller: &Caller, id: &str) -> Result<Project> {
        let project = self.load::<Project>(&caller.org_id, id).await?.value;
        caller.require(Role::Viewer, Some(id))?;
        Ok(project)
    }

    pub async fn update_project(
        &self,
        caller: &Caller,
        id: &str,
        input: UpdateProject,
    ) -> Result<Project> {
        let mut loaded = self.load::<Project>(&caller.org_id, id).await?;
        caller.require(Role::Admin, Some(id))?;
        if let Some(name) = input.name {
            loaded.value.name = validate::name("name", &name)?;
        }
        if let Some(text) = input.description {
            loaded.value.description = description(text)?;
        }
        loaded.value.updated_at = self.now();
        let name = loaded.value.name.clone();
        let op = loaded.replace_with_unique_key(Some(project_name_key(&caller.org_id, &name)))?;
        self.ensure_name_free(
            Kind::Project,
            &project_name_key(&caller.org_id, &name),
            id,
            "project",
            &name,
        )
        .await?;
        self.commit_audited(caller, "project.update", (Kind::Project, id), vec![op])
            .await
            .map_err(changed_meanwhile)?;
        Ok(loaded.value)
    }

    /// Deletes an empty project (and its variables); one that still holds templates or
    /// environments is refused, so nothing deployed is orphaned.
    pub async fn delete_project(&self, caller: &Caller, id: &str) -> Result<()> {
        let loaded = self.load::<Project>(&caller.org_id, id).await?;
        caller.require(Role::Admin, None)?;
        let first = PageRequest {
            cursor: None,
            limit: Some(1),
        };
        let has_environments = !self
            .page::<Environment>(&caller.org_id, Some(id), &first, false)
            .await?
            .items
            .is_empty();
        let has_templates = !self
            .page::<Template>(&caller.org_id, Some(id), &first, false)
            .await?
            .items
            .is_empty();
        if has_environments || has_templates {
            return Err(Error::conflict(
                "the project still has templates or environments; delete them first",
            ));
        }
        let mut ops = self.variable_deletions(&caller.org_id, id).await?;
        ops.push(loaded.delete());
        self.commit_audited(caller, "project.delete", (Kind::Project, id), ops)
            .await
            .map_err(changed_meanwhile)
    }

    /// Refuses a rename onto a name another object of the kind already holds.
    pub(super) async fn ensure_name_free(
        &self,
        kind: Kind,
        unique_key: &str,
        own_id: &str,
        what: &str,
        name: &str,
    ) -> Result<()> {
        match self.store.find_unique(kind, unique_key).await? {
            Some(other) if other.id != own_id => Err(Error::conflict(format!(
                "a {what} named {name:?} already exists"
            ))),
            _ => Ok(()),
        }
    }

    /// Deletes of every variable set on one scope, for the scope's own deletion.
    pub(super) async fn variable_deletions(
        &self,
        org_id: &str,
        scope_id: &str,
    ) -> Result<Vec<WriteOp>> {
        Ok(self
            .all::<super::variables::StoredVariable>(org_id, scope_id)
            .await?
            .iter()
            .map(|loaded| loaded.delete())
            .collect())
    }
}
