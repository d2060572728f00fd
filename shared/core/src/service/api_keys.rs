use crate::auth::{generate_key, key_hint, Caller, Role};
use crate::ids::new_id;
use crate::model::{ApiKey, CreateApiKey, CreatedApiKey, Listing, Project};
use crate::ports::{Kind, WriteOp};
use crate::{validate, Error, Result};

use super::{changed_meanwhile, record, PageRequest, Platform, Stored};

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

    /// Revokes a key at once; it keeps being listed, with `revoked_at` set.
    pub async fn revoke_api_key(&self, caller: &Caller, id: &str) -> Result<ApiKey> {
        let mut loaded = self.load::<ApiKey>(&caller.org_id, id).await?;
        caller.require(Role::Admin, loaded.value.project_id.as_deref())?;
        if loaded.value.revoked_at.is_some() {
            return Ok(loaded.value);
        }
        let now = self.now();
        loaded.value.revoked_at = Some(now);
        loaded.value.updated_at = now;
        self.commit_audited(
            caller,
            "api_key.revoke",
            (Kind::ApiKey, id),
            vec![loaded.replace()?],
        )
        .await
        .map_err(changed_meanwhile)?;
        if let Some(cache) = &self.key_cache {
            cache.forget_all();
        }
        Ok(loaded.value)
    }
}
