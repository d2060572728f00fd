//! The ports: what the use cases need from the outside world. Adapters live in
//! `shared/local` (SQLite, key file) and, later, `shared/aws` (DynamoDB, KMS).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

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
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Organization,
        Kind::ApiKey,
        Kind::Project,
        Kind::Template,
        Kind::Environment,
        Kind::Variable,
        Kind::AuditEvent,
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
    #[error("store unavailable: {0}")]
    Backend(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

/// Durable storage of records, scoped by organization.
#[async_trait]
pub trait Store: Send + Sync {
    async fn get(&self, kind: Kind, org_id: &str, id: &str) -> Result<Option<Record>, StoreError>;
    async fn find_unique(&self, kind: Kind, unique_key: &str)
        -> Result<Option<Record>, StoreError>;
    async fn list(&self, query: ListQuery) -> Result<Page, StoreError>;
    async fn commit(&self, ops: Vec<WriteOp>) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("sealed value cannot be opened with this organization's key")]
    Unseal,
    #[error("key ring unavailable: {0}")]
    Backend(String),
}

/// Envelope encryption of sensitive values, one key context per organization: a value
/// sealed for one organization cannot be opened as another's.
#[async_trait]
pub trait KeyRing: Send + Sync {
    async fn seal(&self, org_id: &str, plaintext: &SecretString) -> Result<String, KeyRingError>;
    async fn open(&self, org_id: &str, sealed: &str) -> Result<SecretString, KeyRingError>;
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
