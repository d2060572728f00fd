//! The use cases, one module per kind of object, all on [`Platform`].

mod api_keys;
mod audit;
mod conclusion;
mod credentials;
mod deployments;
mod dispatch;
mod drift;
mod environments;
mod github;
mod key_cache;
mod notifications;
mod organizations;
mod projects;
mod region;
mod runner;
mod scheduler;
mod spend;
mod state;
mod templates;
mod variables;
mod watchdog;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::Caller;
use crate::model::Listing;
use crate::ports::{
    Artifacts, Clock, KeyRing, Kind, Launcher, ListQuery, NotificationSender, Notifier, Queue,
    Record, RecordKey, Reports, SpendSource, Store, StoreError, Vcs, WriteOp,
};
use crate::{validate, Error, Result};

pub use credentials::TokenScope;
pub use dispatch::DispatchOutcome;
pub use github::{WebhookDelivery, WebhookOutcome};
pub use notifications::{notification_backoff, MAX_NOTIFICATION_ATTEMPTS};
pub use region::{fail_over, read_active_region, Failover, FlipError, FlipRequest, RegionStores};
pub use runner::Runner;
pub use scheduler::SchedulerRound;
pub use spend::SpendRound;
pub use state::{StateLocked, StateVersion};
pub use variables::Scope;
pub use watchdog::Watchdog;

pub const DEFAULT_PAGE_SIZE: usize = 50;

/// Records of the platform itself, of no organization (ids of organizations start
/// with `org_`).
const PLATFORM_RECORDS: &str = "_platform";
pub const MAX_PAGE_SIZE: usize = 500;

/// How this installation of the platform behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The directory whose repositories templates may name as `file://` (local mode,
    /// when the operator shares one); `None` refuses every `file://` repository.
    pub local_repositories: Option<std::path::PathBuf>,
    /// Sandboxes running at once, across environments.
    pub max_parallel_deployments: usize,
    /// Keep resolved API keys in memory. Only where this process is the only one using
    /// the store (local mode), so that every revoke passes through it.
    pub cache_api_keys: bool,
    /// This process's launcher starts sandboxes itself (local mode): a freed slot's
    /// next deployment starts in the commit that freed it and is launched within the
    /// same request, not through the queue, so the slot is never left idle.
    pub start_next_inline: bool,
    pub quotas: Quotas,
    /// Where people reach the API: links in pull request comments and statuses.
    pub public_url: String,
    /// Send notifications at all: off for an installation that may reach nothing
    /// outside (then no target can be added).
    pub notifications: bool,
    /// Notification targets may name private, loopback or link-local hosts and plain
    /// HTTP: for an operator whose targets live on their own network (and for tests).
    pub allow_private_notification_targets: bool,
    /// The regions of an installation spread over several (AWS): only the one the
    /// switch names acts. `None`: one place, which always acts (local mode).
    pub regions: Option<crate::region::Regions>,
    /// The addresses sandboxes' traffic leaves from, published for allow-lists (the
    /// NAT gateways' Elastic IPs of every region on AWS; none locally).
    pub egress_ips: Vec<std::net::IpAddr>,
    /// How plans are priced beyond the catalog: aliases and a default region.
    pub pricing: crate::cost::PricingRules,
}

/// The addresses sandboxes' traffic leaves from, to allow-list; empty where the
/// installation has no fixed ones (local mode: the host's own address).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct EgressAddresses {
    #[schema(value_type = Vec<String>)]
    pub addresses: Vec<std::net::IpAddr>,
}

/// What one deployment may use. A log or step quota that is hit ends the deployment
/// with a reason that names it; a state or plan over its quota is refused with 413.
#[derive(Debug, Clone)]
pub struct Quotas {
    /// Log bytes a deployment may send, across its sandboxes.
    pub log_bytes: u64,
    /// Steps a deployment may report.
    pub steps: usize,
    pub state_bytes: usize,
    pub plan_bytes: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            log_bytes: 64 * 1024 * 1024,
            steps: 200,
            state_bytes: 64 * 1024 * 1024,
            plan_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Most log bytes one page of a deployment's log carries (a chunk is at most 256 KiB).
pub const MAX_LOG_PAGE_BYTES: usize = 4 * 1024 * 1024;

impl Default for Settings {
    fn default() -> Self {
        Self {
            local_repositories: None,
            max_parallel_deployments: 4,
            cache_api_keys: false,
            start_next_inline: false,
            quotas: Quotas::default(),
            public_url: "http://127.0.0.1:8080".into(),
            regions: None,
            egress_ips: Vec::new(),
            notifications: true,
            allow_private_notification_targets: false,
            pricing: crate::cost::PricingRules::default(),
        }
    }
}

/// The adapters the use cases run on.
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub key_ring: Arc<dyn KeyRing>,
    pub clock: Arc<dyn Clock>,
    pub queue: Arc<dyn Queue>,
    pub launcher: Arc<dyn Launcher>,
    pub artifacts: Arc<dyn Artifacts>,
    pub vcs: Arc<dyn Vcs>,
    pub reports: Arc<dyn Reports>,
    pub notifier: Arc<dyn Notifier>,
    pub sender: Arc<dyn NotificationSender>,
    pub spend: Arc<dyn SpendSource>,
}

/// The platform's use cases over its ports.
pub struct Platform {
    store: Arc<dyn Store>,
    key_ring: Arc<dyn KeyRing>,
    clock: Arc<dyn Clock>,
    queue: Arc<dyn Queue>,
    launcher: Arc<dyn Launcher>,
    artifacts: Arc<dyn Artifacts>,
    vcs: Arc<dyn Vcs>,
    reports: Arc<dyn Reports>,
    notifier: Arc<dyn Notifier>,
    sender: Arc<dyn NotificationSender>,
    spend: Arc<dyn SpendSource>,
    key_cache: Option<key_cache::KeyCache>,
    switch_cache: region::SwitchCache,
    settings: Settings,
}

/// Which page of a listing to return.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

impl PageRequest {
    /// The page size (the default when none was asked for) and the position to start
    /// after, each checked against its rule.
    fn checked(&self) -> Result<(usize, Option<String>)> {
        let limit = match self.limit {
            None => DEFAULT_PAGE_SIZE,
            Some(limit) if (1..=MAX_PAGE_SIZE).contains(&limit) => limit,
            Some(_) => {
                return Err(Error::invalid(format!(
                    "limit must be between 1 and {MAX_PAGE_SIZE}"
                )))
            }
        };
        let after = self.cursor.as_deref().map(validate::cursor).transpose()?;
        Ok((limit, after))
    }
}

/// A domain object as the store keeps it.
trait Stored: Serialize + DeserializeOwned {
    const KIND: Kind;
    /// How a missing one is named in a 404.
    const NOUN: &'static str;
}

/// An object read from the store, with the stored record its conditional writes expect.
struct Loaded<T> {
    value: T,
    stored: Record,
}

/// Where the `T` with `id` is stored.
fn key_of<'a, T: Stored>(org_id: &'a str, id: &'a str) -> RecordKey<'a> {
    RecordKey {
        kind: T::KIND,
        org_id,
        id,
    }
}

impl<T: Stored> Loaded<T> {
    /// The object a point read found, decoded.
    fn found(record: Option<Record>) -> Result<Option<Self>> {
        record
            .map(|stored| {
                Ok(Loaded {
                    value: decode(&stored)?,
                    stored,
                })
            })
            .transpose()
    }

    /// Replaces the stored object with `self.value`, if nobody changed it since it was read.
    fn replace(&self) -> Result<WriteOp> {
        self.replace_keys(
            self.stored.unique_key.clone(),
            self.stored.index_key.clone(),
        )
    }

    /// Like `replace`, for a change that moves the unique key (a rename).
    fn replace_with_unique_key(&self, unique_key: Option<String>) -> Result<WriteOp> {
        self.replace_keys(unique_key, self.stored.index_key.clone())
    }

    fn replace_keys(
        &self,
        unique_key: Option<String>,
        index_key: Option<String>,
    ) -> Result<WriteOp> {
        Ok(WriteOp::Replace {
            record: self.replacement(unique_key, index_key)?,
            expected_version: self.stored.version,
        })
    }

    /// [`Self::replace_keys`], and the object as it reads once that is committed (so a
    /// later change need not read it again).
    fn replace_keys_then(
        mut self,
        unique_key: Option<String>,
        index_key: Option<String>,
    ) -> Result<(WriteOp, Self)> {
        let replacement = self.replacement(unique_key, index_key)?;
        let op = WriteOp::Replace {
            record: replacement.clone(),
            expected_version: self.stored.version,
        };
        self.stored = replacement;
        Ok((op, self))
    }

    fn replacement(&self, unique_key: Option<String>, index_key: Option<String>) -> Result<Record> {
        let mut replacement = record(
            &self.stored.org_id,
            &self.stored.id,
            self.stored.parent_id.as_deref(),
            unique_key,
            &self.value,
        )?;
        replacement.index_key = index_key;
        replacement.version = self.stored.version + 1;
        Ok(replacement)
    }

    /// Deletes the stored object, if nobody changed it since it was read.
    fn delete(&self) -> WriteOp {
        WriteOp::Delete {
            kind: T::KIND,
            org_id: self.stored.org_id.clone(),
            id: self.stored.id.clone(),
            expected_version: self.stored.version,
        }
    }
}

impl Platform {
    /// What one deployment may use.
    pub fn quotas(&self) -> &Quotas {
        &self.settings.quotas
    }

    /// Where sandboxes' traffic comes from, as published.
    pub fn egress_addresses(&self) -> EgressAddresses {
        EgressAddresses {
            addresses: self.settings.egress_ips.clone(),
        }
    }

    pub fn new(ports: Ports, settings: Settings) -> Self {
        Self {
            store: ports.store,
            key_ring: ports.key_ring,
            clock: ports.clock,
            queue: ports.queue,
            launcher: ports.launcher,
            artifacts: ports.artifacts,
            vcs: ports.vcs,
            reports: ports.reports,
            notifier: ports.notifier,
            sender: ports.sender,
            spend: ports.spend,
            key_cache: settings.cache_api_keys.then(key_cache::KeyCache::default),
            switch_cache: region::SwitchCache::default(),
            settings,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    async fn load<T: Stored>(&self, org_id: &str, id: &str) -> Result<Loaded<T>> {
        self.find(org_id, id).await?.ok_or(Error::NotFound(T::NOUN))
    }

    /// [`Self::load`], with a missing object as `None` rather than an error.
    async fn find<T: Stored>(&self, org_id: &str, id: &str) -> Result<Option<Loaded<T>>> {
        Loaded::found(self.store.get(T::KIND, org_id, id).await?)
    }

    /// Point reads of `N` records at once: one round trip where the store can. Each
    /// is decoded with [`Loaded::found`].
    async fn get_records<const N: usize>(
        &self,
        keys: [RecordKey<'_>; N],
    ) -> Result<[Option<Record>; N]> {
        let found = self.store.get_many(&keys).await?;
        found.try_into().map_err(|_| {
            StoreError::Corrupt("a batch read answered another number of records".into()).into()
        })
    }

    /// One page of `T`s, ordered by id (creation order), optionally under one parent.
    async fn page<T: Stored>(
        &self,
        org_id: &str,
        parent_id: Option<&str>,
        page: &PageRequest,
        newest_first: bool,
    ) -> Result<Listing<T>> {
        let (items, next) = self
            .page_loaded(org_id, parent_id, page, newest_first)
            .await?;
        Ok(Listing {
            items: items.into_iter().map(|loaded| loaded.value).collect(),
            next,
        })
    }

    /// Like `page`, keeping each stored record for conditional writes.
    async fn page_loaded<T: Stored>(
        &self,
        org_id: &str,
        parent_id: Option<&str>,
        page: &PageRequest,
        newest_first: bool,
    ) -> Result<(Vec<Loaded<T>>, Option<String>)> {
        let (limit, after) = page.checked()?;
        let result = self
            .store
            .list(ListQuery {
                kind: T::KIND,
                org_id: org_id.to_string(),
                parent_id: parent_id.map(str::to_string),
                after,
                limit,
                newest_first,
            })
            .await?;
        let items = result
            .items
            .into_iter()
            .map(|record| {
                Ok(Loaded {
                    value: decode(&record)?,
                    stored: record,
                })
            })
            .collect::<Result<_>>()?;
        Ok((items, result.next))
    }

    /// Every `T` under one parent, page after page.
    async fn all<T: Stored>(&self, org_id: &str, parent_id: &str) -> Result<Vec<Loaded<T>>> {
        let mut loaded = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list(ListQuery {
                    kind: T::KIND,
                    org_id: org_id.to_string(),
                    parent_id: Some(parent_id.to_string()),
                    after,
                    limit: MAX_PAGE_SIZE,
                    newest_first: false,
                })
                .await?;
            for record in page.items {
                loaded.push(Loaded {
                    value: decode(&record)?,
                    stored: record,
                });
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(loaded),
            }
        }
    }

    /// Applies `ops` together with the audit event that records them.
    async fn commit_audited(
        &self,
        caller: &Caller,
        action: &str,
        target: (Kind, &str),
        mut ops: Vec<WriteOp>,
    ) -> Result<(), StoreError> {
        ops.push(self.audit_event(caller, &caller.org_id, action, target));
        self.store.commit(ops).await
    }
}

fn record<T: Stored>(
    org_id: &str,
    id: &str,
    parent_id: Option<&str>,
    unique_key: Option<String>,
    value: &T,
) -> Result<Record> {
    Ok(Record {
        kind: T::KIND,
        org_id: org_id.to_string(),
        id: id.to_string(),
        parent_id: parent_id.map(str::to_string),
        unique_key,
        index_key: None,
        expires_at: None,
        version: 1,
        body: serde_json::to_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

fn decode<T: Stored>(record: &Record) -> Result<T> {
    <T as serde::Deserialize>::deserialize(&record.body).map_err(|e| {
        Error::Store(StoreError::Corrupt(format!(
            "{} {}: {e}",
            T::NOUN,
            record.id
        )))
    })
}

/// A unique-key collision on insert means the name is taken; anything else passes through.
fn name_taken(error: StoreError, what: &str, name: &str) -> Error {
    match error {
        StoreError::Conflict => Error::conflict(format!("a {what} named {name:?} already exists")),
        other => Error::Store(other),
    }
}

/// How often a read-modify-write is tried again when another write came first.
const CONFLICT_RETRIES: usize = 10;

/// Runs `attempt` (a fresh read, a change, a conditional write) again while its write
/// meets a conflict, as it does when another request, or the runner reporting a step,
/// wrote the same record between its read and its write. After
/// [`CONFLICT_RETRIES`] tries: a 409 saying `gave_up`.
async fn retrying_conflicts<T, F>(
    gave_up: &'static str,
    mut attempt: impl FnMut() -> F,
) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    for _ in 0..CONFLICT_RETRIES {
        match attempt().await {
            Err(Error::Store(StoreError::Conflict)) => continue,
            done => return done,
        }
    }
    Err(Error::conflict(gave_up))
}

/// A version mismatch on a conditional write: someone else changed the object first.
fn changed_meanwhile(error: StoreError) -> Error {
    match error {
        StoreError::Conflict => {
            Error::conflict("the object was changed by another request; read it again and retry")
        }
        other => Error::Store(other),
    }
}
