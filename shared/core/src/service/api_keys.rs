use crate::auth::{generate_key, key_hint, Caller, Role};
use crate::ids::new_id;
use crate::model::{ApiKey, CreateApiKey, CreatedApiKey, Listing, Organization, Project};
use crate::ports::{Kind, WriteOp};
use crate::{validate, Error, Result};

use super::{record, retrying_conflicts, PageRequest, Platform, Stored, MAX_PAGE_SIZE};

impl Stored for ApiKey {
    const KIND: Kind = Kind::ApiKey;
    const NOUN: &'static str = "API key";
}

impl Platform {
    /// A new key, never reaching further than the caller's own: an admin of one project
    /// can only make keys for that project, and nobody can grant a role above their own.
    pub async fn create_api_key(
        &self,
        caller: &Caller,
        input: CreateApiKey,
    ) -> Result<CreatedApiKey> {
        let name = validate::name("name", &input.name)?;
        caller.require(Role::Admin, input.project_id.as_deref())?;
        if input.role > caller.role {
            return Err(Error::forbidden(
                "a key cannot be given a role above the caller's",
            ));
        }
        if let Some(project_id) = &input.project_id {
            self.load::<Project>(&caller.org_id, project_id).await?;
        }
        let now = self.now();
        let (key, hash) = generate_key();
        let api_key = ApiKey {
            id: new_id("key"),
            name,
            role: input.role,
            project_id: input.project_id,
            hint: key_hint(&key),
            operator: false,
            created_by: Some(caller.key_id.clone()),
            revoked_at: None,
            created_at: now,
            updated_at: now,
        };
        let insert = record(&caller.org_id, &api_key.id, None, Some(hash), &api_key)?;
        self.commit_audited(
            caller,
            "api_key.create",
            (Kind::ApiKey, &api_key.id),
            vec![WriteOp::Insert(insert)],
        )
        .await?;
        Ok(CreatedApiKey { api_key, key })
    }

    /// The keys the caller administers: all of the organization's for an organization
    /// admin, the project's for a project admin.
    pub async fn list_api_keys(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Listing<ApiKey>> {
        caller.require(Role::Admin, caller.project_id.as_deref())?;
        let mut listing: Listing<ApiKey> = self.page(&caller.org_id, None, page, false).await?;
        if let Some(project_id) = &caller.project_id {
            listing
                .items
                .retain(|key| key.project_id.as_ref() == Some(project_id));
        }
        Ok(listing)
    }

    /// Revokes a key at once; it keeps being listed, with `revoked_at` set. The
    /// operator's key and an organization's last active admin key are kept (409): without
    /// them nobody could manage the platform or the organization again.
    pub async fn revoke_api_key(&self, caller: &Caller, id: &str) -> Result<ApiKey> {
        let revoked = retrying_conflicts("the API keys kept changing; try again", || {
            self.try_revoke_api_key(caller, id)
        })
        .await?;
        if let Some(cache) = &self.key_cache {
            cache.forget_all();
        }
        Ok(revoked)
    }

    async fn try_revoke_api_key(&self, caller: &Caller, id: &str) -> Result<ApiKey> {
        let mut loaded = self.load::<ApiKey>(&caller.org_id, id).await?;
        caller.require(Role::Admin, loaded.value.project_id.as_deref())?;
        if loaded.value.revoked_at.is_some() {
            return Ok(loaded.value);
        }
        let mut ops = Vec::new();
        if is_organization_admin(&loaded.value) {
            ops.push(
                self.ensure_another_admin_remains(&caller.org_id, &loaded.value)
                    .await?,
            );
        }
        let now = self.now();
        loaded.value.revoked_at = Some(now);
        loaded.value.updated_at = now;
        ops.push(loaded.replace()?);
        self.commit_audited(caller, "api_key.revoke", (Kind::ApiKey, id), ops)
            .await?;
        Ok(loaded.value)
    }

    /// Refuses to remove `leaving` unless another active admin of its organization
    /// stays, the rule for every way an admin goes. The returned write rewrites the
    /// organization unchanged: two removals committed at once both rewrite it, so the
    /// second fails, reads the keys again and finds itself the last.
    async fn ensure_another_admin_remains(
        &self,
        org_id: &str,
        leaving: &ApiKey,
    ) -> Result<WriteOp> {
        if leaving.operator {
            return Err(Error::conflict(
                "the operator's key cannot be revoked: it is the only key that can create \
                 organizations",
            ));
        }
        let organization = self.load::<Organization>(org_id, org_id).await?;
        let mut page = PageRequest {
            cursor: None,
            limit: Some(MAX_PAGE_SIZE),
        };
        loop {
            let (keys, next) = self
                .page_loaded::<ApiKey>(org_id, None, &page, false)
                .await?;
            let another = keys.iter().any(|key| {
                key.value.id != leaving.id
                    && key.value.revoked_at.is_none()
                    && is_organization_admin(&key.value)
            });
            if another {
                return organization.replace();
            }
            match next {
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
        }
        Err(Error::conflict(
            "this is the organization's last active admin key: create a new admin key \
             first, then revoke this one",
        ))
    }
}

/// An admin of the whole organization, not of one project.
fn is_organization_admin(key: &ApiKey) -> bool {
    key.role == Role::Admin && key.project_id.is_none()
}
