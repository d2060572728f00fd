//! The ports: what the use cases need from the outside world. Adapters live in
//! `shared/local` (SQLite, key file) and, later, `shared/aws` (DynamoDB, KMS).

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::notification::{Notification, TargetUrl};

/// The kinds of object the store holds. Each record is addressed by (kind, org, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Organization,
    ApiKey,
    Project,
    Template,
    Environment,
    Variable,
    AuditEvent,
    Deployment,
    LogChunk,
    /// One deployment at a time per environment: held from dispatch to the final status.
    EnvironmentLock,
    RunnerToken,
    StateVersion,
    /// Terraform's own state lock (LOCK/UNLOCK on the state backend).
    StateLock,
    /// An environment's newest state version, read with a consistent point read and
    /// written in the same transaction as each new version.
    StateHead,
    /// What stays of an environment deleted by force while it held state: enough to
    /// read its state versions for a while.
    RetiredEnvironment,
    /// An organization's connection to a version control host (GitHub).
    VcsConnection,
    /// A webhook delivery already handled: its id, kept for a while so a redelivery
    /// or a replay does nothing.
    WebhookDelivery,
    /// A pull request envplane plans: its one comment and its environments' plans.
    PullRequest,
    /// Where a project's notifications go, with its sealed URL and secret.
    NotificationTarget,
    /// Which of a project's notification targets take which events, under the
    /// project's id.
    NotificationRoutes,
    /// When one scheduled job of an environment runs next, listed by that time: what
    /// the scheduler reads.
    DueJob,
    /// One environment's spend in one month, day by day, under the environment.
    SpendMonth,
    /// The day's run of the spend job, claimed by the first round of the day.
    SpendRun,
    /// Which region is active: one record, whose version is the epoch.
    ActiveRegion,
    /// The new active region's adoption of what was queued at a flip, claimed once
    /// per epoch.
    Handover,
    /// A write the failover tool makes in the active region to time its replication.
    RegionProbe,
}

impl Kind {
    pub const ALL: [Kind; 26] = [
        Kind::Organization,
        Kind::ApiKey,
        Kind::Project,
        Kind::Template,
        Kind::Environment,
        Kind::Variable,
        Kind::AuditEvent,
        Kind::Deployment,
        Kind::LogChunk,
        Kind::EnvironmentLock,
        Kind::RunnerToken,
        Kind::StateVersion,
        Kind::StateLock,
        Kind::StateHead,
        Kind::RetiredEnvironment,
        Kind::VcsConnection,
        Kind::WebhookDelivery,
        Kind::PullRequest,
        Kind::NotificationTarget,
        Kind::NotificationRoutes,
        Kind::DueJob,
        Kind::SpendMonth,
        Kind::SpendRun,
        Kind::ActiveRegion,
        Kind::Handover,
        Kind::RegionProbe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Organization => "organization",
            Kind::ApiKey => "api_key",
            Kind::Project => "project",
            Kind::Template => "template",
            Kind::Environment => "environment",
            Kind::Variable => "variable",
            Kind::AuditEvent => "audit_event",
            Kind::Deployment => "deployment",
            Kind::LogChunk => "log_chunk",
            Kind::EnvironmentLock => "environment_lock",
            Kind::RunnerToken => "runner_token",
            Kind::StateVersion => "state_version",
            Kind::StateLock => "state_lock",
            Kind::StateHead => "state_head",
            Kind::RetiredEnvironment => "retired_environment",
            Kind::VcsConnection => "vcs_connection",
            Kind::WebhookDelivery => "webhook_delivery",
            Kind::PullRequest => "pull_request",
            Kind::NotificationTarget => "notification_target",
            Kind::NotificationRoutes => "notification_routes",
            Kind::DueJob => "due_job",
            Kind::SpendMonth => "spend_month",
            Kind::SpendRun => "spend_run",
            Kind::ActiveRegion => "active_region",
            Kind::Handover => "handover",
            Kind::RegionProbe => "region_probe",
        }
    }
}

/// One stored object: its body is the domain object as JSON, the other fields are what
/// the store indexes. `version` starts at 1 and grows by one with every replace, which
/// is what makes conditional writes (compare-and-swap) possible on every backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kind: Kind,
    pub org_id: String,
    pub id: String,
    /// Lists can be narrowed to one parent (a project's environments, a scope's variables).
    pub parent_id: Option<String>,
    /// Unique across all records of the kind (a key hash, a name within its parent).
    pub unique_key: Option<String>,
    /// A sparse index across organizations (the status of an active deployment), for
    /// the platform's own sweeps: recovery, capacity, the reaper.
    pub index_key: Option<String>,
    /// When the store may forget the record (Unix seconds): it may still read as any
    /// other record until the store gets round to deleting it.
    pub expires_at: Option<i64>,
    pub version: u64,
    pub body: serde_json::Value,
}

/// A write, applied with the others of one `commit` all or nothing.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Fails with `Conflict` when the id or the unique key is taken.
    Insert(Record),
    /// Fails with `Conflict` unless the stored version is `expected_version`; stores the
    /// record with version `expected_version + 1`.
    Replace {
        record: Record,
        expected_version: u64,
    },
    /// Fails with `Conflict` unless the record exists at `expected_version`.
    Delete {
        kind: Kind,
        org_id: String,
        id: String,
        expected_version: u64,
    },
    /// Writes nothing; fails the commit with `CheckFailed` unless the record is at
    /// `expected_version` (0: absent). The fence of a region's starts and ends.
    Check {
        kind: Kind,
        org_id: String,
        id: String,
        expected_version: u64,
    },
}

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub kind: Kind,
    pub org_id: String,
    pub parent_id: Option<String>,
    /// Continue after this id (exclusive), in the listing's order.
    pub after: Option<String>,
    pub limit: usize,
    pub newest_first: bool,
}

/// Records of one kind carrying one `index_key`, across organizations, by id.
#[derive(Debug, Clone)]
pub struct IndexQuery {
    pub kind: Kind,
    pub index_key: String,
    pub after: Option<String>,
    /// Only ids up to this one (inclusive): a time line read up to now.
    pub until: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<Record>,
    /// The id to pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the write conflicts with the stored state")]
    Conflict,
    /// A [`WriteOp::Check`] found its record changed: the region lost the switch.
    #[error("this region is no longer the active one: it lost the switch while acting")]
    CheckFailed,
    #[error("store unavailable: {0}")]
    Backend(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

/// Where one record is: what [`Store::get`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordKey<'a> {
    pub kind: Kind,
    pub org_id: &'a str,
    pub id: &'a str,
}

/// The most writes one [`Store::commit`] may carry on every store (DynamoDB's
/// transaction holds 100 items; a write that takes or frees a unique key counts twice).
pub const MAX_COMMIT_WRITES: usize = 100;

/// The most keys one [`Store::get_many`] takes.
pub const MAX_GET_MANY: usize = 100;

/// Durable storage of records, scoped by organization.
#[async_trait]
pub trait Store: Send + Sync {
    async fn get(&self, kind: Kind, org_id: &str, id: &str) -> Result<Option<Record>, StoreError>;
    /// Point reads of up to [`MAX_GET_MANY`] records, each as current as a `get`, in
    /// the order of `keys`: one round trip where the backend can.
    async fn get_many(&self, keys: &[RecordKey<'_>]) -> Result<Vec<Option<Record>>, StoreError> {
        let mut records = Vec::with_capacity(keys.len());
        for key in keys {
            records.push(self.get(key.kind, key.org_id, key.id).await?);
        }
        Ok(records)
    }
    async fn find_unique(&self, kind: Kind, unique_key: &str)
        -> Result<Option<Record>, StoreError>;
    async fn list(&self, query: ListQuery) -> Result<Page, StoreError>;
    async fn list_indexed(&self, query: IndexQuery) -> Result<Page, StoreError>;
    /// How many records of `kind` the index lists under `index_key`, counting at most
    /// `limit`: as current as [`Store::list_indexed`], without reading the records.
    async fn count_indexed(
        &self,
        kind: Kind,
        index_key: &str,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let page = self
            .list_indexed(IndexQuery {
                kind,
                index_key: index_key.to_string(),
                after: None,
                until: None,
                limit,
            })
            .await?;
        Ok(page.items.len())
    }
    async fn commit(&self, ops: Vec<WriteOp>) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("sealed value cannot be opened with this organization's key")]
    Unseal,
    #[error("key ring unavailable: {0}")]
    Backend(String),
}

/// Envelope encryption of sensitive values, state and plans, one key context per
/// organization: what is sealed for one organization cannot be opened as another's.
#[async_trait]
pub trait KeyRing: Send + Sync {
    async fn seal_bytes(&self, org_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyRingError>;
    async fn open_bytes(&self, org_id: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyRingError>;

    /// A secret sealed into printable text, for storing inside a record.
    async fn seal(&self, org_id: &str, plaintext: &SecretString) -> Result<String, KeyRingError> {
        let sealed = self
            .seal_bytes(org_id, plaintext.expose_secret().as_bytes())
            .await?;
        Ok(format!("{SEALED_TEXT_PREFIX}{}", STANDARD.encode(sealed)))
    }

    async fn open(&self, org_id: &str, sealed: &str) -> Result<SecretString, KeyRingError> {
        let bytes = sealed
            .strip_prefix(SEALED_TEXT_PREFIX)
            .and_then(|encoded| STANDARD.decode(encoded).ok())
            .ok_or(KeyRingError::Unseal)?;
        let plaintext = self.open_bytes(org_id, &bytes).await?;
        String::from_utf8(plaintext)
            .map(SecretString::from)
            .map_err(|_| KeyRingError::Unseal)
    }
}

/// Marks sealed text, so a later format can be told from this one.
const SEALED_TEXT_PREFIX: &str = "v1:";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Backend(String),
}

/// Asks for a deployment to be dispatched. Delivery is at least once: dispatch is
/// idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentMessage {
    pub org_id: String,
    pub environment_id: String,
    pub deployment_id: String,
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends a message delivered once `delay` has passed (SQS allows up to 15 minutes).
    async fn send_after(
        &self,
        message: &DeploymentMessage,
        delay: std::time::Duration,
    ) -> Result<(), QueueError>;

    async fn send(&self, message: &DeploymentMessage) -> Result<(), QueueError> {
        self.send_after(message, std::time::Duration::ZERO).await
    }

    /// Sends every message, in as few round trips as the queue allows.
    async fn send_many(&self, messages: &[DeploymentMessage]) -> Result<(), QueueError> {
        for message in messages {
            self.send(message).await?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Worth retrying later (throttling, no capacity).
    #[error("the sandbox could not start yet: {0}")]
    Transient(String),
    #[error("the sandbox could not start: {0}")]
    Failed(String),
}

/// What a sandbox is started with: who it is and how to call back, never a variable.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub org_id: String,
    pub deployment_id: String,
    pub attempt: u32,
    pub runner_token: SecretString,
    /// Local mode binds a `file://` repository into the sandbox read-only.
    pub repository: String,
}

/// Starts and stops the disposable sandbox of one deployment phase.
#[async_trait]
pub trait Launcher: Send + Sync {
    async fn launch(&self, request: LaunchRequest) -> Result<(), LaunchError>;
    /// Asks the sandbox of the deployment's `attempt` to stop: Terraform gets SIGINT
    /// first, so state and lock stay clean.
    async fn stop(
        &self,
        org_id: &str,
        deployment_id: &str,
        attempt: u32,
    ) -> Result<(), LaunchError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact store unavailable: {0}")]
    Backend(String),
}

/// Opaque blobs (sealed state versions and plans), addressed by organization and key.
#[async_trait]
pub trait Artifacts: Send + Sync {
    async fn put(&self, org_id: &str, key: &str, bytes: Vec<u8>) -> Result<(), ArtifactError>;
    async fn get(&self, org_id: &str, key: &str) -> Result<Option<Vec<u8>>, ArtifactError>;
}

/// The ports a process does not serve: a function that only dispatches or concludes
/// deployments never seals, opens or stores a blob, and leaving those adapters out
/// keeps their SDK crates out of its binary (docs/aws.md). Every call is an error
/// naming the port, so a use case that strays into one fails loudly.
#[derive(Debug, Clone, Copy)]
pub struct Unwired;

impl Unwired {
    fn reason(port: &str) -> String {
        format!("this process has no {port}: the use case belongs to another function")
    }
}

#[async_trait]
impl KeyRing for Unwired {
    async fn seal_bytes(&self, _: &str, _: &[u8]) -> Result<Vec<u8>, KeyRingError> {
        Err(KeyRingError::Backend(Self::reason("key ring")))
    }

    async fn open_bytes(&self, _: &str, _: &[u8]) -> Result<Vec<u8>, KeyRingError> {
        Err(KeyRingError::Backend(Self::reason("key ring")))
    }
}

#[async_trait]
impl Artifacts for Unwired {
    async fn put(&self, _: &str, _: &str, _: Vec<u8>) -> Result<(), ArtifactError> {
        Err(ArtifactError::Backend(Self::reason("artifact store")))
    }

    async fn get(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, ArtifactError> {
        Err(ArtifactError::Backend(Self::reason("artifact store")))
    }
}

#[async_trait]
impl Launcher for Unwired {
    async fn launch(&self, _: LaunchRequest) -> Result<(), LaunchError> {
        Err(LaunchError::Failed(Self::reason("sandbox launcher")))
    }

    async fn stop(&self, _: &str, _: &str, _: u32) -> Result<(), LaunchError> {
        Err(LaunchError::Failed(Self::reason("sandbox launcher")))
    }
}

/// How the platform acts as one organization on its version control host.
pub enum VcsAuth {
    /// A GitHub App installation: short-lived installation tokens, minted with an
    /// RS256 JWT signed by the App's private key (PEM).
    App {
        app_id: u64,
        installation_id: u64,
        private_key: SecretString,
    },
    /// A personal or fine-grained access token (local use).
    Token(SecretString),
}

impl std::fmt::Debug for VcsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::App {
                app_id,
                installation_id,
                ..
            } => f
                .debug_struct("App")
                .field("app_id", app_id)
                .field("installation_id", installation_id)
                .finish_non_exhaustive(),
            Self::Token(_) => f.write_str("Token(..)"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitState {
    Pending,
    Success,
    Failure,
    Error,
}

/// A commit status, e.g. `envplane/staging`: pending, then success or failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    pub context: String,
    pub state: CommitState,
    pub description: String,
    pub target_url: Option<String>,
}

/// What a user may do in a repository, as the host reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RepositoryPermission {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

#[derive(Debug, thiserror::Error)]
pub enum VcsError {
    /// The host refused the call (a 4xx other than a rate limit): retrying cannot help.
    #[error("the version control host refused the call: {0}")]
    Refused(String),
    /// The object is gone (a deleted comment).
    #[error("the version control host has no such object")]
    NotFound,
    /// The host could not answer (5xx, a rate limit, the network) after retries.
    #[error("the version control host is unavailable: {0}")]
    Unavailable(String),
}

/// A version control host's API (GitHub; GitLab or Bitbucket later, as other adapters).
/// `repository` is `owner/name`. Adapters retry what may pass (5xx, rate limits).
#[async_trait]
pub trait Vcs: Send + Sync {
    /// Every file a pull request changes, across all pages.
    async fn changed_files(
        &self,
        auth: &VcsAuth,
        repository: &str,
        number: u64,
    ) -> Result<Vec<String>, VcsError>;
    /// Adds a comment to a pull request; answers its id.
    async fn create_comment(
        &self,
        auth: &VcsAuth,
        repository: &str,
        number: u64,
        body: &str,
    ) -> Result<u64, VcsError>;
    async fn edit_comment(
        &self,
        auth: &VcsAuth,
        repository: &str,
        comment_id: u64,
        body: &str,
    ) -> Result<(), VcsError>;
    async fn delete_comment(
        &self,
        auth: &VcsAuth,
        repository: &str,
        comment_id: u64,
    ) -> Result<(), VcsError>;
    async fn set_status(
        &self,
        auth: &VcsAuth,
        repository: &str,
        commit: &str,
        status: &CommitStatus,
    ) -> Result<(), VcsError>;
    async fn permission(
        &self,
        auth: &VcsAuth,
        repository: &str,
        user: &str,
    ) -> Result<RepositoryPermission, VcsError>;
    /// A credential to clone `repository` with, valid for about an hour.
    async fn clone_token(&self, auth: &VcsAuth, repository: &str)
        -> Result<SecretString, VcsError>;
}

/// A pull request whose report (its comment, its statuses) is to be brought up to date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRequest {
    pub org_id: String,
    pub pull_request_id: String,
}

/// Where reports are asked for: the process that speaks to the host makes them, off
/// the path of whoever asked (a runner's final report, a watchdog), so a slow or
/// failing host never holds a deployment up.
#[async_trait]
pub trait Reports: Send + Sync {
    async fn request(&self, request: ReportRequest);
}

#[async_trait]
impl Vcs for Unwired {
    async fn changed_files(&self, _: &VcsAuth, _: &str, _: u64) -> Result<Vec<String>, VcsError> {
        Err(VcsError::Unavailable(Self::reason(
            "version control client",
        )))
    }
    async fn create_comment(&self, _: &VcsAuth, _: &str, _: u64, _: &str) -> Result<u64, VcsError> {
        Err(VcsError::Unavailable(Self::reason(
            "version control client",
        )))
    }
    async fn edit_comment(&self, _: &VcsAuth, _: &str, _: u64, _: &str) -> Result<(), VcsError> {
        Err(VcsError::Unavailable(Self::reason(
            "version control client",
        )))
    }
    async fn delete_comment(&self, _: &VcsAuth, _: &str, _: u64) -> Result<(), VcsError> {
        Err(VcsError::Unavailable(Self::reason(
            "version control client",
        )))
    }
    async fn set_status(
        &self,
        _: &VcsAuth,
        _: &str,
        _: &str,
        _: &CommitStatus,
    ) -> Result<(), VcsError> {
        Err(VcsError::Unavailable(Self::reason(
            "version control client",
        )))
    }
    async fn permission(
        &self,
        _: &VcsAuth,
        _: &str,
        _: &str,
    ) -> Result<RepositoryPermission, VcsError> {
        Err(VcsError::Unavailable(Self::reason(
            "version control client",
        )))
    }
    async fn clone_token(&self, _: &VcsAuth, _: &str) -> Result<SecretString, VcsError> {
        Err(VcsError::Unavailable(Self::reason(
            "version control client",
        )))
    }
}

/// Where no process makes reports (no host connected), asking for one does nothing.
#[async_trait]
impl Reports for Unwired {
    async fn request(&self, request: ReportRequest) {
        tracing::warn!(pull_request = %request.pull_request_id, "no process makes pull request reports here; the report is skipped");
    }
}

/// A notification on its way to one target; `attempt` counts the deliveries tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationDelivery {
    pub org_id: String,
    pub target_id: String,
    pub notification: Notification,
    pub attempt: u32,
}

/// Where notifications wait for delivery, off the path of what caused them: a
/// deployment never waits for, or fails with, a target.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Hands `delivery` to whoever delivers, after `delay`. A failure is logged.
    async fn enqueue(&self, delivery: NotificationDelivery, delay: std::time::Duration);
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth another try later: no answer, a timeout, a 5xx or 429.
    #[error("the target did not take the notification: {0}")]
    Retry(String),
    /// Another try would fare no better: an address the platform may not call, a 4xx.
    #[error("the target refused the notification: {0}")]
    Refused(String),
}

/// Posts notifications to their targets.
#[async_trait]
pub trait NotificationSender: Send + Sync {
    async fn post(
        &self,
        url: &TargetUrl,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Result<(), SendError>;
}

/// Where nobody delivers notifications, they are dropped, logged.
#[async_trait]
impl Notifier for Unwired {
    async fn enqueue(&self, delivery: NotificationDelivery, _: std::time::Duration) {
        tracing::warn!(target_id = %delivery.target_id, "no process delivers notifications here; dropped");
    }
}

#[async_trait]
impl NotificationSender for Unwired {
    async fn post(
        &self,
        _: &TargetUrl,
        _: Vec<(&'static str, String)>,
        _: Vec<u8>,
    ) -> Result<(), SendError> {
        Err(SendError::Refused(Self::reason("notification sender")))
    }
}

/// The tags the runner asks Terraform to put on every resource (see
/// `docs/costs.md`), which the bill is grouped by.
pub const ORGANIZATION_TAG: &str = "envplane:organization";
pub const ENVIRONMENT_TAG: &str = "envplane:environment";

/// What one environment's resources cost on one day, as the cloud's bill says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaySpend {
    pub org_id: String,
    pub environment_id: String,
    pub day: chrono::NaiveDate,
    /// In `currency`'s units (USD for AWS), unrounded.
    pub amount: f64,
    pub currency: String,
}

#[derive(Debug, thiserror::Error)]
#[error("the bill could not be read: {0}")]
pub struct SpendError(pub String);

/// Where actual spend comes from: on AWS, Cost Explorer.
#[async_trait]
pub trait SpendSource: Send + Sync {
    /// Whether there is a bill to read here at all.
    fn available(&self) -> bool {
        true
    }

    /// Each tagged environment's spend per day from `from` up to `until` (exclusive),
    /// grouped by [`ORGANIZATION_TAG`] and [`ENVIRONMENT_TAG`]; untagged spend is left
    /// out.
    async fn daily_spend(
        &self,
        from: chrono::NaiveDate,
        until: chrono::NaiveDate,
    ) -> Result<Vec<DaySpend>, SpendError>;
}

/// Where no bill can be read (local mode), no spend is recorded.
#[async_trait]
impl SpendSource for Unwired {
    fn available(&self) -> bool {
        false
    }

    async fn daily_spend(
        &self,
        _: chrono::NaiveDate,
        _: chrono::NaiveDate,
    ) -> Result<Vec<DaySpend>, SpendError> {
        Err(SpendError(Self::reason("spend source")))
    }
}

/// What a request must present in the origin header to be served when the routers sit
/// behind CloudFront: the one way around the WAF, the API Gateway's own execute-api
/// URL, is closed by refusing requests without it. The HTTP edge asks; the AWS adapter
/// reads the secret from Secrets Manager.
#[async_trait]
pub trait OriginSecret: Send + Sync {
    /// Whether `presented` (the header's value, never logged) is an accepted value of the
    /// secret. Implementations compare with [`same_secret`]; any doubt (the secret
    /// cannot be read) is a refusal.
    async fn accepts(&self, presented: &[u8]) -> bool;
}

/// `presented == expected` in time that depends only on their lengths, not on where
/// they differ (`subtle`): a caller timing refusals learns nothing of the secret.
pub fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    presented.ct_eq(expected).into()
}

/// Time, injectable so that expiry and TTL logic can be tested without waiting.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_are_the_same_only_when_equal() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}
