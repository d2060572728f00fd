use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, Role};
use crate::model::{
    Environment, Listing, Project, PutVariable, ScopeKind, Template, Variable, VariableKind,
};
use crate::ports::{Kind, WriteOp};
use crate::validate::{self, MAX_VARIABLE_VALUE_LEN, MIN_SENSITIVE_VALUE_LEN};
use crate::{Error, Result};

use super::{changed_meanwhile, record, Loaded, PageRequest, Platform, Stored};

/// Where a variable is set. Nearer scopes win: organization -> project -> template ->
/// environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Organization,
    Project(String),
    Template(String),
    Environment(String),
}

/// A variable as stored: a sensitive value only ever sealed by the key ring.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredVariable {
    pub name: String,
    pub kind: VariableKind,
    pub sensitive: bool,
    pub value: Option<String>,
    pub sealed: Option<String>,
    pub scope: ScopeKind,
    pub scope_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Stored for StoredVariable {
    const KIND: Kind = Kind::Variable;
    const NOUN: &'static str = "variable";
}

impl StoredVariable {
    /// What the API shows: never the sealed value, never a sensitive value.
    fn public(&self) -> Variable {
        Variable {
            name: self.name.clone(),
            value: if self.sensitive {
                None
            } else {
                self.value.clone()
            },
            sensitive: self.sensitive,
            kind: self.kind,
            scope: self.scope,
            scope_id: self.scope_id.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A scope, found in the caller's organization, with what it takes to read and write it.
struct ResolvedScope {
    kind: ScopeKind,
    id: String,
    project_id: Option<String>,
    write_role: Role,
}

impl Platform {
    /// Sets (creates or replaces) a variable. Returns it and whether it was created.
    pub async fn put_variable(
        &self,
        caller: &Caller,
        scope: &Scope,
        name: &str,
        input: PutVariable,
    ) -> Result<(Variable, bool)> {
        let scope = self.resolve_scope(caller, scope).await?;
        caller.require(scope.write_role, scope.project_id.as_deref())?;
        let name = match input.kind {
            VariableKind::Terraform => validate::variable_name(name, true)?,
            VariableKind::Env => validate::environment_variable_name(name)?,
        };
        if input.value.expose_secret().contains('\0') {
            return Err(Error::invalid(
                "value must not contain the NUL character: every variable reaches the \
                 sandbox as an environment variable",
            ));
        }
        if input.value.expose_secret().chars().count() > MAX_VARIABLE_VALUE_LEN {
            return Err(Error::invalid(format!(
                "value must be at most {MAX_VARIABLE_VALUE_LEN} characters"
            )));
        }
        if input.sensitive && input.value.expose_secret().chars().count() < MIN_SENSITIVE_VALUE_LEN
        {
            return Err(Error::invalid(format!(
                "a sensitive value must be at least {MIN_SENSITIVE_VALUE_LEN} characters: \
                 a shorter one would be masked everywhere it appears in the log"
            )));
        }
        let (value, sealed) = if input.sensitive {
            let sealed = self.key_ring.seal(&caller.org_id, &input.value).await?;
            (None, Some(sealed))
        } else {
            (Some(input.value.expose_secret().to_string()), None)
        };
        let id = variable_id(&scope.id, &name);
        let existing = self.store.get(Kind::Variable, &caller.org_id, &id).await?;
        let now = self.now();
        let variable = StoredVariable {
            name,
            kind: input.kind,
            sensitive: input.sensitive,
            value,
            sealed,
            scope: scope.kind,
            scope_id: scope.id.clone(),
            created_at: now,
            updated_at: now,
        };
        let (op, created, action) = match existing {
            None => {
                let insert = record(&caller.org_id, &id, Some(&scope.id), None, &variable)?;
                (WriteOp::Insert(insert), true, "variable.create")
            }
            Some(stored) => {
                let created_at = super::decode::<StoredVariable>(&stored)?.created_at;
                let loaded = Loaded {
                    value: StoredVariable {
                        created_at,
                        ..variable.clone()
                    },
                    stored,
                };
                (loaded.replace()?, false, "variable.update")
            }
        };
        self.commit_audited(caller, action, (Kind::Variable, &id), vec![op])
            .await
            .map_err(changed_meanwhile)?;
        Ok((variable.public(), created))
    }

    pub async fn list_variables(
        &self,
        caller: &Caller,
        scope: &Scope,
        page: &PageRequest,
    ) -> Result<Listing<Variable>> {
        let scope = self.resolve_scope(caller, scope).await?;
        caller.require(Role::Viewer, scope.project_id.as_deref())?;
        let listing: Listing<StoredVariable> = self
            .page(&caller.org_id, Some(&scope.id), page, false)
            .await?;
        Ok(Listing {
            items: listing.items.iter().map(StoredVariable::public).collect(),
            next: listing.next,
        })
    }

    pub async fn get_variable(
        &self,
        caller: &Caller,
        scope: &Scope,
        name: &str,
    ) -> Result<Variable> {
        let scope = self.resolve_scope(caller, scope).await?;
        caller.require(Role::Viewer, scope.project_id.as_deref())?;
        let loaded = self
            .load::<StoredVariable>(&caller.org_id, &variable_id(&scope.id, name))
            .await?;
        Ok(loaded.value.public())
    }

    pub async fn delete_variable(&self, caller: &Caller, scope: &Scope, name: &str) -> Result<()> {
        let scope = self.resolve_scope(caller, scope).await?;
        caller.require(scope.write_role, scope.project_id.as_deref())?;
        let id = variable_id(&scope.id, name);
        let loaded = self.load::<StoredVariable>(&caller.org_id, &id).await?;
        self.commit_audited(
            caller,
            "variable.delete",
            (Kind::Variable, &id),
            vec![loaded.delete()],
        )
        .await
        .map_err(changed_meanwhile)
    }

    /// The variables a deployment of the environment gets: organization, project,
    /// template and environment scopes merged by name, the nearer scope winning.
    pub async fn effective_variables(
        &self,
        caller: &Caller,
        environment_id: &str,
        page: &PageRequest,
    ) -> Result<Listing<Variable>> {
        let (limit, after) = page.checked()?;
        let environment = self.get_environment(caller, environment_id).await?;
        let merged = self.merged_variables(&caller.org_id, &environment).await?;
        // By name, as merged; the cursor is the last name of the page before.
        let mut items: Vec<Variable> = merged
            .iter()
            .filter(|variable| after.as_ref().is_none_or(|after| variable.name > *after))
            .take(limit + 1)
            .map(StoredVariable::public)
            .collect();
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            items[limit - 1].name.clone()
        });
        Ok(Listing { items, next })
    }

    /// The environment's variables from all four scopes, by name, the nearer scope winning.
    pub(super) async fn merged_variables(
        &self,
        org_id: &str,
        environment: &Environment,
    ) -> Result<Vec<StoredVariable>> {
        let scopes = [
            org_id,
            environment.project_id.as_str(),
            environment.template_id.as_str(),
            environment.id.as_str(),
        ];
        let mut merged = BTreeMap::new();
        for scope_id in scopes {
            for loaded in self.all::<StoredVariable>(org_id, scope_id).await? {
                merged.insert(loaded.value.name.clone(), loaded.value);
            }
        }
        Ok(merged.into_values().collect())
    }

    async fn resolve_scope(&self, caller: &Caller, scope: &Scope) -> Result<ResolvedScope> {
        Ok(match scope {
            Scope::Organization => ResolvedScope {
                kind: ScopeKind::Organization,
                id: caller.org_id.clone(),
                project_id: None,
                write_role: Role::Admin,
            },
            Scope::Project(id) => {
                self.load::<Project>(&caller.org_id, id).await?;
                ResolvedScope {
                    kind: ScopeKind::Project,
                    id: id.clone(),
                    project_id: Some(id.clone()),
                    write_role: Role::Admin,
                }
            }
            Scope::Template(id) => {
                let template = self.load::<Template>(&caller.org_id, id).await?.value;
                ResolvedScope {
                    kind: ScopeKind::Template,
                    id: id.clone(),
                    project_id: Some(template.project_id),
                    write_role: Role::Admin,
                }
            }
            Scope::Environment(id) => {
                let environment = self.load::<Environment>(&caller.org_id, id).await?.value;
                ResolvedScope {
                    kind: ScopeKind::Environment,
                    id: id.clone(),
                    project_id: Some(environment.project_id),
                    write_role: Role::Deployer,
                }
            }
        })
    }
}

/// Variables are addressed by scope and name, so their id is derived from both.
fn variable_id(scope_id: &str, name: &str) -> String {
    format!("{scope_id}/{name}")
}
