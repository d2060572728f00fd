use secrecy::SecretString;

use crate::auth::{generate_key, hash_key, key_hint, Caller, Role};
use crate::ids::new_id;
use crate::model::{ApiKey, CreateOrganization, CreatedApiKey, CreatedOrganization, Organization};
use crate::ports::{Kind, WriteOp};
use crate::{validate, Error, Result};

use super::{decode, name_taken, record, Platform, Stored};

/// The organization created on first start.
pub const DEFAULT_ORGANIZATION: &str = "default";

impl Stored for Organization {
    const KIND: Kind = Kind::Organization;
    const NOUN: &'static str = "organization";
}

impl Platform {
    /// Creates the `default` organization and the operator's admin key on first start.
    /// Returns the key when it was just created: the only time it is ever available.
    pub async fn bootstrap(&self) -> Result<Option<SecretString>> {
        if self
            .store
            .find_unique(Kind::Organization, DEFAULT_ORGANIZATION)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let (organization, admin_key, mut ops) =
            self.new_organization(DEFAULT_ORGANIZATION, None, true)?;
        let audit_actor = Caller {
            key_id: admin_key.api_key.id.clone(),
            key_name: admin_key.api_key.name.clone(),
            org_id: organization.id.clone(),
            role: Role::Admin,
            project_id: None,
            operator: true,
            request_id: "bootstrap".into(),
            client_request_id: None,
        };
        ops.push(self.audit_event(
            &audit_actor,
            &organization.id,
            "organization.create",
            (Kind::Organization, &organization.id),
        ));
        self.store
            .commit(ops)
            .await
            .map_err(|e| name_taken(e, "organization", DEFAULT_ORGANIZATION))?;
        Ok(Some(admin_key.key))
    }

    /// Resolves a bearer key to its caller; unknown and revoked keys are refused alike.
    pub async fn authenticate(&self, key: &str, request_id: &str) -> Result<Caller> {
        let hash = hash_key(key);
        let cache = self.key_cache.as_ref();
        if let Some(caller) = cache.and_then(|cache| cache.get(&hash)) {
            return Ok(Caller {
                request_id: request_id.to_string(),
                ..caller
            });
        }
        let generation = cache.map(|cache| cache.generation());
        let record = self
            .store
            .find_unique(Kind::ApiKey, &hash)
            .await?
            .ok_or(Error::Unauthenticated)?;
        let api_key: ApiKey = decode(&record)?;
        if api_key.revoked_at.is_some() {
            return Err(Error::Unauthenticated);
        }
        let caller = Caller {
            key_id: api_key.id,
            key_name: api_key.name,
            org_id: record.org_id,
            role: api_key.role,
            project_id: api_key.project_id,
            operator: api_key.operator,
            request_id: request_id.to_string(),
            client_request_id: None,
        };
        if let (Some(cache), Some(generation)) = (cache, generation) {
            cache.insert(hash, caller.clone(), generation);
        }
        Ok(caller)
    }

    /// A new tenant with its first admin key. Only the platform operator may do this.
    pub async fn create_organization(
        &self,
        caller: &Caller,
        input: CreateOrganization,
    ) -> Result<CreatedOrganization> {
        caller.require_operator()?;
        let name = validate::name("name", &input.name)?;
        let (organization, admin_key, mut ops) =
            self.new_organization(&name, Some(&caller.key_id), false)?;
        let target = (Kind::Organization, organization.id.as_str());
        ops.push(self.audit_event(caller, &caller.org_id, "organization.create", target));
        ops.push(self.audit_event(caller, &organization.id, "organization.create", target));
        self.store
            .commit(ops)
            .await
            .map_err(|e| name_taken(e, "organization", &name))?;
        Ok(CreatedOrganization {
            organization,
            admin_key,
        })
    }

    pub async fn get_organization(&self, caller: &Caller) -> Result<Organization> {
        Ok(self
            .load::<Organization>(&caller.org_id, &caller.org_id)
            .await?
            .value)
    }

    fn new_organization(
        &self,
        name: &str,
        created_by: Option<&str>,
        operator: bool,
    ) -> Result<(Organization, CreatedApiKey, Vec<WriteOp>)> {
        let now = self.now();
        let organization = Organization {
            id: new_id("org"),
            name: name.to_string(),
            created_at: now,
            updated_at: now,
        };
        let (key, hash) = generate_key();
        let api_key = ApiKey {
            id: new_id("key"),
            name: format!("{name} admin"),
            role: Role::Admin,
            project_id: None,
            hint: key_hint(&key),
            operator,
            created_by: created_by.map(str::to_string),
            revoked_at: None,
            created_at: now,
            updated_at: now,
        };
        let ops = vec![
            WriteOp::Insert(record(
                &organization.id,
                &organization.id,
                None,
                Some(name.to_string()),
                &organization,
            )?),
            WriteOp::Insert(record(
                &organization.id,
                &api_key.id,
                None,
                Some(hash),
                &api_key,
            )?),
        ];
        Ok((organization, CreatedApiKey { api_key, key }, ops))
    }
}
