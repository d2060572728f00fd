//! Terraform state behind the platform's HTTP backend: every version kept, sealed at
//! rest, with Terraform's own locking. Users list versions and read them masked.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use secrecy::ExposeSecret;

use crate::auth::{Caller, Role};
use crate::model::{Environment, Listing};
use crate::ports::{Kind, StoreError, WriteOp};
use crate::{Error, Result};

use super::runner::Runner;
use super::{record, Loaded, PageRequest, Platform, Stored};

/// How long the state versions of an environment deleted by force stay readable.
pub(super) const RETIRED_STATE_DAYS: i64 = 30;

/// What stays of an environment an admin deleted by force while it held state, so
/// its state versions stay readable (and masked) for [`RETIRED_STATE_DAYS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RetiredEnvironment {
    pub environment: Environment,
    /// Its sensitive variable values as they were, still sealed, to mask its state.
    pub sealed_sensitive: Vec<String>,
    pub deleted_at: DateTime<Utc>,
    pub deleted_by: String,
    pub readable_until: DateTime<Utc>,
}

impl Stored for RetiredEnvironment {
    const KIND: Kind = Kind::RetiredEnvironment;
    const NOUN: &'static str = "environment";
}

/// Whose state a person reads: the environment's project, and the sealed sensitive
/// values to mask in it.
struct StateOwner {
    project_id: String,
    sealed_sensitive: Vec<String>,
}

/// One saved state of an environment. The state itself is a sealed artifact.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateVersion {
    /// 1 for the first state saved, then one more for each save.
    pub version: u64,
    /// Terraform's own serial and lineage, from the state file.
    pub serial: u64,
    pub lineage: String,
    pub deployment_id: String,
    pub size_bytes: usize,
    pub created_at: DateTime<Utc>,
}

/// A state version as stored: what the API shows, and where its sealed state is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SavedState {
    #[serde(flatten)]
    pub version: StateVersion,
    /// A key no other save ever writes. `None` for versions saved before keys were
    /// unique (`state/<env>/<version>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_key: Option<String>,
}

impl SavedState {
    fn blob_key(&self, environment_id: &str) -> String {
        self.blob_key
            .clone()
            .unwrap_or_else(|| format!("state/{environment_id}/{}", self.version.version))
    }
}

impl Stored for SavedState {
    const KIND: Kind = Kind::StateVersion;
    const NOUN: &'static str = "state version";
}

/// The newest state version of an environment: what a save checks its serial and
/// lineage against and what a read opens, by a consistent point read (an index may lag).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StateHead {
    pub saved: SavedState,
}

impl Stored for StateHead {
    const KIND: Kind = Kind::StateHead;
    const NOUN: &'static str = "state head";
}

/// Terraform's lock on an environment's state, as it sent it, and who took it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StateLock {
    pub deployment_id: String,
    /// The lock info Terraform sent (its `ID` is what unlock and save refer to).
    pub info: Value,
}

impl Stored for StateLock {
    const KIND: Kind = Kind::StateLock;
    const NOUN: &'static str = "state lock";
}

/// The delete of the state lock `found` if `deployment_id` still holds it: a sandbox
/// that died mid-apply must not block the environment forever.
pub(super) fn state_lock_release(
    found: Option<Loaded<StateLock>>,
    deployment_id: &str,
) -> Option<WriteOp> {
    found
        .filter(|held| held.value.deployment_id == deployment_id)
        .map(|held| held.delete())
}

/// A state lock request refused because someone else holds it; carries their lock info.
#[derive(Debug)]
pub struct StateLocked(pub Value);

fn version_id(environment_id: &str, version: u64) -> String {
    format!("{environment_id}/{version:020}")
}

/// A blob key of its own for every save: a save that fails after its upload never
/// overwrites a committed version's state.
fn new_state_key(environment_id: &str, version: u64) -> String {
    format!(
        "state/{environment_id}/{version}-{}",
        crate::ids::new_id("blob")
    )
}

fn lock_id(info: &Value) -> Option<&str> {
    info.get("ID").and_then(Value::as_str)
}

impl Platform {
    fn require_own_environment(runner: &Runner, environment_id: &str) -> Result<()> {
        if runner.environment_id == environment_id {
            Ok(())
        } else {
            Err(Error::forbidden(
                "the token is for another environment's state",
            ))
        }
    }

    /// The latest state, or `None` before the first apply.
    pub async fn read_state(
        &self,
        runner: &Runner,
        environment_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Self::require_own_environment(runner, environment_id)?;
        match self
            .latest_state_version(&runner.org_id, environment_id)
            .await?
        {
            None => Ok(None),
            Some(saved) => self
                .open_state(&runner.org_id, environment_id, &saved)
                .await
                .map(Some),
        }
    }

    /// Saves a new state version. While the state is locked, only the lock's holder
    /// (naming its lock id) may save.
    pub async fn write_state(
        &self,
        runner: &Runner,
        environment_id: &str,
        lock: Option<&str>,
        state: Vec<u8>,
    ) -> Result<StateVersion> {
        Self::require_own_environment(runner, environment_id)?;
        let quota = self.settings.quotas.state_bytes;
        if state.len() > quota {
            return Err(Error::TooLarge(format!(
                "the state is over the quota of {quota} bytes"
            )));
        }
        if let Some(held) = self
            .current_state_lock(&runner.org_id, environment_id)
            .await?
        {
            if lock_id(&held.info) != lock {
                return Err(Error::conflict("the state is locked by another operation"));
            }
        }
        let parsed: Value =
            serde_json::from_slice(&state).map_err(|_| Error::invalid("the state is not JSON"))?;
        let serial = parsed.get("serial").and_then(Value::as_u64);
        let lineage = parsed.get("lineage").and_then(Value::as_str);
        let (Some(serial), Some(lineage)) = (serial, lineage) else {
            return Err(Error::invalid("the state has no serial or lineage"));
        };
        let head = self
            .find::<StateHead>(&runner.org_id, environment_id)
            .await?;
        let previous = match &head {
            Some(head) => Some(head.value.saved.version.clone()),
            // Saved before heads existed: the newest version by the index.
            None => self
                .latest_state_version(&runner.org_id, environment_id)
                .await?
                .map(|saved| saved.version),
        };
        if let Some(previous) = &previous {
            follows(previous, serial, lineage)?;
        }
        let number = previous.map_or(1, |previous| previous.version + 1);
        let saved = SavedState {
            version: StateVersion {
                version: number,
                serial,
                lineage: lineage.to_string(),
                deployment_id: runner.deployment_id.clone(),
                size_bytes: state.len(),
                created_at: self.now(),
            },
            blob_key: Some(new_state_key(environment_id, number)),
        };
        let sealed = self.key_ring.seal_bytes(&runner.org_id, &state).await?;
        self.artifacts
            .put(&runner.org_id, &saved.blob_key(environment_id), sealed)
            .await?;
        let id = version_id(environment_id, number);
        let insert = record(&runner.org_id, &id, Some(environment_id), None, &saved)?;
        let new_head = StateHead {
            saved: saved.clone(),
        };
        let head_write = match head {
            Some(mut head) => {
                head.value = new_head;
                head.replace()?
            }
            None => WriteOp::Insert(record(
                &runner.org_id,
                environment_id,
                None,
                None,
                &new_head,
            )?),
        };
        self.store
            .commit(vec![WriteOp::Insert(insert), head_write])
            .await
            .map_err(|error| match error {
                StoreError::Conflict => Error::conflict("another state was saved at the same time"),
                other => other.into(),
            })?;
        Ok(saved.version)
    }

    /// Takes Terraform's state lock, or says who holds it.
    pub async fn lock_state(
        &self,
        runner: &Runner,
        environment_id: &str,
        info: Value,
    ) -> Result<Result<(), StateLocked>> {
        Self::require_own_environment(runner, environment_id)?;
        if lock_id(&info).is_none() {
            return Err(Error::invalid("the lock info has no ID"));
        }
        let lock = StateLock {
            deployment_id: runner.deployment_id.clone(),
            info,
        };
        let insert = record(&runner.org_id, environment_id, None, None, &lock)?;
        match self.store.commit(vec![WriteOp::Insert(insert)]).await {
            Ok(()) => Ok(Ok(())),
            Err(StoreError::Conflict) => {
                let held = self
                    .current_state_lock(&runner.org_id, environment_id)
                    .await?;
                Ok(Err(StateLocked(
                    held.map(|lock| lock.info).unwrap_or(Value::Null),
                )))
            }
            Err(error) => Err(error.into()),
        }
    }

    pub async fn unlock_state(
        &self,
        runner: &Runner,
        environment_id: &str,
        info: Value,
    ) -> Result<()> {
        Self::require_own_environment(runner, environment_id)?;
        // A store that fails to answer is an error, not "unlocked": it may hold the lock.
        let Some(held) = self
            .find::<StateLock>(&runner.org_id, environment_id)
            .await?
        else {
            return Ok(());
        };
        if lock_id(&held.value.info) != lock_id(&info) {
            return Err(Error::conflict("the state is locked by another operation"));
        }
        match self.store.commit(vec![held.delete()]).await {
            Ok(()) | Err(StoreError::Conflict) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Releases Terraform's lock on an environment's state, whoever holds it: the escape
    /// hatch for a lock a lost sandbox left behind. Admins only, audited; 409 when the
    /// state is not locked.
    pub async fn force_unlock_state(&self, caller: &Caller, environment_id: &str) -> Result<()> {
        let environment = self
            .load::<Environment>(&caller.org_id, environment_id)
            .await?;
        caller.require(Role::Admin, Some(&environment.value.project_id))?;
        let held = self
            .find::<StateLock>(&caller.org_id, environment_id)
            .await?
            .ok_or_else(|| Error::conflict("the state is not locked"))?;
        let target = (Kind::Environment, environment_id);
        self.commit_audited(
            caller,
            "environment.state_unlock",
            target,
            vec![held.delete()],
        )
        .await
        .map_err(|error| match error {
            StoreError::Conflict => Error::conflict("the state lock changed meanwhile; try again"),
            other => other.into(),
        })
    }

    /// The environment's state versions, newest first. Those of an environment
    /// deleted by force stay listed for [`RETIRED_STATE_DAYS`].
    pub async fn list_state_versions(
        &self,
        caller: &Caller,
        environment_id: &str,
        page: &PageRequest,
    ) -> Result<Listing<StateVersion>> {
        let owner = self.state_owner(caller, environment_id).await?;
        caller.require(Role::Viewer, Some(&owner.project_id))?;
        let listing: Listing<SavedState> = self
            .page(&caller.org_id, Some(environment_id), page, true)
            .await?;
        Ok(Listing {
            items: listing
                .items
                .into_iter()
                .map(|saved| saved.version)
                .collect(),
            next: listing.next,
        })
    }

    /// One state version for a person to read: sensitive outputs are `null` and every
    /// sensitive variable value is masked. Admins only: state describes everything.
    pub async fn get_state_version(
        &self,
        caller: &Caller,
        environment_id: &str,
        version: u64,
    ) -> Result<Value> {
        let owner = self.state_owner(caller, environment_id).await?;
        caller.require(Role::Admin, Some(&owner.project_id))?;
        let version = self
            .load::<SavedState>(&caller.org_id, &version_id(environment_id, version))
            .await?
            .value;
        let state = self
            .open_state(&caller.org_id, environment_id, &version)
            .await?;
        let mut text =
            String::from_utf8(state).map_err(|_| Error::invalid("the state is not text"))?;
        for sealed in &owner.sealed_sensitive {
            let secret = self.key_ring.open(&caller.org_id, sealed).await?;
            let secret = secret.expose_secret();
            if !secret.is_empty() {
                text = text.replace(&json_escaped(secret), "***");
            }
        }
        let mut state: Value =
            serde_json::from_str(&text).map_err(|_| Error::invalid("the state is not JSON"))?;
        if let Some(outputs) = state.get_mut("outputs").and_then(Value::as_object_mut) {
            for output in outputs.values_mut() {
                if output.get("sensitive") == Some(&Value::Bool(true)) {
                    output["value"] = Value::Null;
                }
            }
        }
        Ok(state)
    }

    /// The environment whose state is read, or what stays of it while its state is
    /// kept after a forced delete.
    async fn state_owner(&self, caller: &Caller, environment_id: &str) -> Result<StateOwner> {
        if let Some(live) = self
            .find::<Environment>(&caller.org_id, environment_id)
            .await?
        {
            return Ok(StateOwner {
                sealed_sensitive: self.sealed_sensitive(&caller.org_id, &live.value).await?,
                project_id: live.value.project_id,
            });
        }
        match self
            .find::<RetiredEnvironment>(&caller.org_id, environment_id)
            .await?
        {
            Some(retired) if retired.value.readable_until > self.now() => Ok(StateOwner {
                project_id: retired.value.environment.project_id,
                sealed_sensitive: retired.value.sealed_sensitive,
            }),
            _ => Err(Error::NotFound("environment")),
        }
    }

    /// The sealed values of the environment's sensitive variables (its own, its
    /// project's and its organization's).
    pub(super) async fn sealed_sensitive(
        &self,
        org_id: &str,
        environment: &Environment,
    ) -> Result<Vec<String>> {
        Ok(self
            .merged_variables(org_id, environment)
            .await?
            .into_iter()
            .filter_map(|variable| variable.sealed)
            .collect())
    }

    /// The newest state version: the head's (a consistent read), or for environments
    /// whose states were saved before heads existed, the index's newest.
    pub(super) async fn latest_state_version(
        &self,
        org_id: &str,
        environment_id: &str,
    ) -> Result<Option<SavedState>> {
        if let Some(head) = self.find::<StateHead>(org_id, environment_id).await? {
            return Ok(Some(head.value.saved));
        }
        let newest = PageRequest {
            cursor: None,
            limit: Some(1),
        };
        let listing: Listing<SavedState> = self
            .page(org_id, Some(environment_id), &newest, true)
            .await?;
        Ok(listing.items.into_iter().next())
    }

    async fn open_state(
        &self,
        org_id: &str,
        environment_id: &str,
        saved: &SavedState,
    ) -> Result<Vec<u8>> {
        // Never "no state" for a version the table records: Terraform would read a 404 as
        // an empty state and plan to create everything again. The object may be on its
        // way from the other region's bucket (replication after a failover).
        let sealed = self
            .artifacts
            .get(org_id, &saved.blob_key(environment_id))
            .await?
            .ok_or_else(|| {
                Error::Unavailable(format!(
                    "state version {} of this environment is recorded, but its object is not in this region's bucket (yet): replication may still be bringing it; try again later",
                    saved.version.version
                ))
            })?;
        Ok(self.key_ring.open_bytes(org_id, &sealed).await?)
    }

    async fn current_state_lock(
        &self,
        org_id: &str,
        environment_id: &str,
    ) -> Result<Option<StateLock>> {
        Ok(self
            .find::<StateLock>(org_id, environment_id)
            .await?
            .map(|held| held.value))
    }
}

/// Whether a state with `serial` and `lineage` may follow `previous`, as Terraform's own
/// backends decide: the same lineage, and a serial that does not go back.
fn follows(previous: &StateVersion, serial: u64, lineage: &str) -> Result<()> {
    if lineage != previous.lineage {
        return Err(Error::conflict(format!(
            "the state's lineage {lineage:?} is not the environment's ({:?}): it is another state",
            previous.lineage
        )));
    }
    if serial < previous.serial {
        return Err(Error::conflict(format!(
            "the state's serial {serial} is older than the saved one ({})",
            previous.serial
        )));
    }
    Ok(())
}

/// How a value appears inside a JSON string.
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_string()
}
