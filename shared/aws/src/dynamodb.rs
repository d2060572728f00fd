//! The Store port on DynamoDB: one table, single-table design (see `docs/storage.md`).
//!
//! ```text
//! record  PK = ORG#<org_id>                SK = <kind>#<id>
//!         kind, org_id, id, parent_id?, unique_key?, index_key?, version (N), body (S, JSON)
//!         GSI1PK = <org_id>#<kind>#<parent_id>   GSI1SK = <id>   (only with a parent)
//!         GSI2PK = <kind>#<index_key>            GSI2SK = <id>   (only with an index key)
//! guard   PK = UNIQUE#<kind>#<unique_key>  SK = UNIQUE
//!         kind, org_id, id (the owner)
//! ```
//!
//! Every commit is one `TransactWriteItems`, even a commit of a single write: the SDK
//! gives each transaction an idempotency token, so a retry after a lost response
//! succeeds instead of failing its own `attribute_not_exists` condition and reporting a
//! conflict that never happened (a plain conditional `PutItem` has no such token).
//!
//! Reads on the table are strongly consistent. The two GSIs cannot be: on real AWS a
//! listing by parent or by index key may miss a write of the last moments (typically
//! well under a second) or still show a record that has just left the index. Every use
//! of a listing tolerates that, because every state transition is a conditional write on
//! the record itself, which is read consistently: a stale listing makes a sweep see
//! something a little late or try a transition that then fails with `Conflict`, never
//! apply a transition twice. moto is consistent, so the tests cannot observe the lag.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put,
    ScalarAttributeType, Select, SseSpecification, SseType, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use envplane_core::ports::{
    IndexQuery, Kind, ListQuery, Page, Record, RecordKey, Store, StoreError, WriteOp, MAX_GET_MANY,
};

use crate::lazy::LazyClient;

/// How often a BatchGetItem's unprocessed keys are asked again before giving up.
const UNPROCESSED_RETRIES: u32 = 8;

const PK: &str = "PK";
const SK: &str = "SK";
const GSI1: &str = "GSI1";
const GSI1PK: &str = "GSI1PK";
const GSI1SK: &str = "GSI1SK";
const GSI2: &str = "GSI2";
const GSI2PK: &str = "GSI2PK";
const GSI2SK: &str = "GSI2SK";

const KIND: &str = "kind";
const ORG_ID: &str = "org_id";
const ID: &str = "id";
const PARENT_ID: &str = "parent_id";
const UNIQUE_KEY: &str = "unique_key";
const INDEX_KEY: &str = "index_key";
/// The table's time-to-live attribute (Unix seconds): DynamoDB deletes the item some
/// time after it.
const EXPIRES_AT: &str = "expires_at";
const VERSION: &str = "version";
const BODY: &str = "body";

/// The sort key of every unique-key guard item.
const GUARD_SK: &str = "UNIQUE";

/// The most items one `TransactWriteItems` may hold; guard items count.
const MAX_TRANSACTION_ITEMS: usize = 100;

/// The largest item DynamoDB stores (attribute names and values together).
const MAX_ITEM_BYTES: usize = 400 * 1024;

/// How long `create_table` waits for a new table to become active.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

type Item = HashMap<String, AttributeValue>;

/// The Store port on one DynamoDB table created by [`create_table`] (or by `infra/`
/// with the same key schema and indexes).
#[derive(Clone, Debug)]
pub struct DynamoDbStore {
    client: LazyClient<aws_sdk_dynamodb::Client>,
    table: String,
}

impl DynamoDbStore {
    pub fn new(client: impl Into<LazyClient<Client>>, table: impl Into<String>) -> Self {
        Self {
            client: client.into(),
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

/// Creates the table with the layout this adapter expects: on-demand capacity, server-side
/// encryption with KMS (the AWS-managed key; see [`create_table_with_key`] for a
/// customer-managed one) and the two sparse GSIs, and waits until it is active.
///
/// Production tables come from `infra/`, which declares the same key schema and indexes
/// and adds the customer-managed key, point-in-time recovery and the replica region.
pub async fn create_table(client: &Client, name: &str) -> Result<(), StoreError> {
    create_table_with_key(client, name, None).await
}

/// [`create_table`] with server-side encryption under the KMS key `kms_key_id` (an id,
/// ARN or alias) when one is given.
pub async fn create_table_with_key(
    client: &Client,
    name: &str,
    kms_key_id: Option<&str>,
) -> Result<(), StoreError> {
    let attribute = |attribute_name: &str| {
        AttributeDefinition::builder()
            .attribute_name(attribute_name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build_error)
    };
    let key = |attribute_name: &str, key_type: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(attribute_name)
            .key_type(key_type)
            .build()
            .map_err(build_error)
    };
    let index = |index_name: &str, partition: &str, sort: &str| -> Result<_, StoreError> {
        GlobalSecondaryIndex::builder()
            .index_name(index_name)
            .key_schema(key(partition, KeyType::Hash)?)
            .key_schema(key(sort, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(build_error)
    };
    let mut encryption = SseSpecification::builder()
        .enabled(true)
        .sse_type(SseType::Kms);
    if let Some(kms_key_id) = kms_key_id {
        encryption = encryption.kms_master_key_id(kms_key_id);
    }
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(index(GSI1, GSI1PK, GSI1SK)?)
        .global_secondary_indexes(index(GSI2, GSI2PK, GSI2SK)?)
        .sse_specification(encryption.build());
    for attribute_name in [PK, SK, GSI1PK, GSI1SK, GSI2PK, GSI2SK] {
        request = request.attribute_definitions(attribute(attribute_name)?);
    }
    request
        .send()
        .await
        .map_err(|e| sdk_error("CreateTable", e))?;
    client
        .wait_until_table_exists()
        .table_name(name)
        .wait(TABLE_ACTIVE_TIMEOUT)
        .await
        .map_err(|e| {
            StoreError::Backend(format!(
                "DynamoDB table did not become active: {}",
                DisplayErrorContext(&e)
            ))
        })?;
    Ok(())
}

// ---- keys ------------------------------------------------------------------------------

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn org_pk(org_id: &str) -> String {
    format!("ORG#{org_id}")
}

fn kind_prefix(kind: Kind) -> String {
    format!("{}#", kind.as_str())
}

fn record_sk(kind: Kind, id: &str) -> String {
    format!("{}#{id}", kind.as_str())
}

fn parent_pk(org_id: &str, kind: Kind, parent_id: &str) -> String {
    format!("{org_id}#{}#{parent_id}", kind.as_str())
}

fn index_pk(kind: Kind, index_key: &str) -> String {
    format!("{}#{index_key}", kind.as_str())
}

fn guard_pk(kind: Kind, unique_key: &str) -> String {
    format!("UNIQUE#{}#{unique_key}", kind.as_str())
}

/// The primary key of an item, as the pair of strings it is made of.
type ItemKey = (String, String);

fn key_item((pk, sk): &ItemKey) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

fn record_key(kind: Kind, org_id: &str, id: &str) -> ItemKey {
    (org_pk(org_id), record_sk(kind, id))
}

fn guard_key(kind: Kind, unique_key: &str) -> ItemKey {
    (guard_pk(kind, unique_key), GUARD_SK.to_string())
}

// ---- items -----------------------------------------------------------------------------

/// The item of `record` stored at `version`, refused when DynamoDB could not hold it.
fn record_item(record: &Record, version: u64) -> Result<Item, StoreError> {
    let kind = record.kind;
    let mut item = key_item(&record_key(kind, &record.org_id, &record.id));
    item.insert(KIND.into(), s(kind.as_str()));
    item.insert(ORG_ID.into(), s(&record.org_id));
    item.insert(ID.into(), s(&record.id));
    if let Some(parent_id) = &record.parent_id {
        item.insert(PARENT_ID.into(), s(parent_id));
        item.insert(GSI1PK.into(), s(parent_pk(&record.org_id, kind, parent_id)));
        item.insert(GSI1SK.into(), s(&record.id));
    }
    if let Some(unique_key) = &record.unique_key {
        item.insert(UNIQUE_KEY.into(), s(unique_key));
    }
    if let Some(index_key) = &record.index_key {
        item.insert(INDEX_KEY.into(), s(index_key));
        item.insert(GSI2PK.into(), s(index_pk(kind, index_key)));
        item.insert(GSI2SK.into(), s(&record.id));
    }
    if let Some(expires_at) = record.expires_at {
        item.insert(EXPIRES_AT.into(), AttributeValue::N(expires_at.to_string()));
    }
    item.insert(VERSION.into(), AttributeValue::N(version.to_string()));
    item.insert(BODY.into(), s(record.body.to_string()));
    let size = approximate_size(&item);
    if size > MAX_ITEM_BYTES {
        return Err(StoreError::Backend(format!(
            "a {} record takes about {} KB, more than the {} KB a DynamoDB item holds",
            kind.as_str(),
            size / 1024,
            MAX_ITEM_BYTES / 1024
        )));
    }
    Ok(item)
}

/// An upper bound of DynamoDB's size of an item of strings and numbers.
fn approximate_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(text) | AttributeValue::N(text) => text.len(),
                    _ => 0,
                }
        })
        .sum()
}

fn guard_item(record: &Record, unique_key: &str) -> Item {
    let mut item = key_item(&guard_key(record.kind, unique_key));
    item.insert(KIND.into(), s(record.kind.as_str()));
    item.insert(ORG_ID.into(), s(&record.org_id));
    item.insert(ID.into(), s(&record.id));
    item
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("a DynamoDB item {what}"))
}

fn string<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        Some(_) => Err(corrupt(&format!("has a `{name}` that is not a string"))),
        None => Err(corrupt(&format!("lacks `{name}`"))),
    }
}

fn optional_string(item: &Item, name: &str) -> Result<Option<String>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(true)) => Ok(None),
        Some(_) => string(item, name).map(|value| Some(value.to_string())),
    }
}

fn version(item: &Item) -> Result<u64, StoreError> {
    match item.get(VERSION) {
        Some(AttributeValue::N(value)) => value
            .parse()
            .map_err(|_| corrupt("has a `version` that is not a whole number")),
        Some(_) => Err(corrupt("has a `version` that is not a number")),
        None => Err(corrupt("lacks `version`")),
    }
}

fn expires_at(item: &Item) -> Result<Option<i64>, StoreError> {
    match item.get(EXPIRES_AT) {
        None => Ok(None),
        Some(AttributeValue::N(value)) => value
            .parse()
            .map(Some)
            .map_err(|_| corrupt("has an `expires_at` that is not a whole number")),
        Some(_) => Err(corrupt("has an `expires_at` that is not a number")),
    }
}

fn parse_kind(item: &Item) -> Result<Kind, StoreError> {
    let name = string(item, KIND)?;
    Kind::ALL
        .into_iter()
        .find(|kind| kind.as_str() == name)
        .ok_or_else(|| corrupt("has an unknown `kind`"))
}

fn record_from_item(item: &Item) -> Result<Record, StoreError> {
    let kind = parse_kind(item)?;
    let body = serde_json::from_str(string(item, BODY)?).map_err(|e| {
        StoreError::Corrupt(format!(
            "the body of a {} item is not JSON ({})",
            kind.as_str(),
            // The category and position only: serde's message never quotes the input,
            // but say so explicitly rather than rely on it.
            match e.classify() {
                serde_json::error::Category::Io => "unreadable",
                serde_json::error::Category::Syntax => "syntax error",
                serde_json::error::Category::Data => "unexpected data",
                serde_json::error::Category::Eof => "truncated",
            }
        ))
    })?;
    Ok(Record {
        kind,
        org_id: string(item, ORG_ID)?.to_string(),
        id: string(item, ID)?.to_string(),
        parent_id: optional_string(item, PARENT_ID)?,
        unique_key: optional_string(item, UNIQUE_KEY)?,
        index_key: optional_string(item, INDEX_KEY)?,
        expires_at: expires_at(item)?,
        version: version(item)?,
        body,
    })
}

// ---- errors ----------------------------------------------------------------------------

/// An SDK failure as a store error. Only the operation and the error code are kept:
/// DynamoDB's messages may quote parts of a request, and a record may hold anything.
fn sdk_error<E, R>(operation: &str, error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &error {
        SdkError::ServiceError(service) => match service.err().code() {
            Some("ConditionalCheckFailedException") => StoreError::Conflict,
            Some(code) => StoreError::Backend(format!("DynamoDB {operation} failed: {code}")),
            None => StoreError::Backend(format!(
                "DynamoDB {operation} failed with an unidentified service error"
            )),
        },
        // Timeouts, connection and response failures: no request content in these.
        other => StoreError::Backend(format!(
            "DynamoDB {operation} failed: {}",
            DisplayErrorContext(other)
        )),
    }
}

/// A cancelled transaction as a store error; `checks` are the positions of its
/// condition checks, whose failure is [`StoreError::CheckFailed`].
fn transaction_error(error: SdkError<TransactWriteItemsError>, checks: &[usize]) -> StoreError {
    if let SdkError::ServiceError(service) = &error {
        if let TransactWriteItemsError::TransactionCanceledException(cancelled) = service.err() {
            let reasons = cancelled.cancellation_reasons();
            let check_failed = checks.iter().any(|&index| {
                reasons.get(index).and_then(|reason| reason.code())
                    == Some("ConditionalCheckFailed")
            });
            if check_failed {
                return StoreError::CheckFailed;
            }
            let mut codes: Vec<&str> = cancelled
                .cancellation_reasons()
                .iter()
                .filter_map(|reason| reason.code())
                .filter(|code| *code != "None")
                .collect();
            if codes.contains(&"ConditionalCheckFailed") {
                return StoreError::Conflict;
            }
            codes.sort_unstable();
            codes.dedup();
            return StoreError::Backend(format!(
                "DynamoDB TransactWriteItems was cancelled: {}",
                if codes.is_empty() {
                    "no reason given".to_string()
                } else {
                    codes.join(", ")
                }
            ));
        }
    }
    sdk_error("TransactWriteItems", error)
}

fn build_error(error: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Backend(format!("invalid DynamoDB request: {error}"))
}

fn too_many_items(items: usize) -> StoreError {
    StoreError::Backend(format!(
        "a commit of {items} item writes (records and their unique-key guards) exceeds the \
         {MAX_TRANSACTION_ITEMS} items one DynamoDB transaction holds; split the work"
    ))
}

// ---- writes ----------------------------------------------------------------------------

/// What a write requires of the item it replaces or deletes.
enum Condition<'a> {
    /// Nothing is stored under the key.
    Absent,
    /// The stored record is at this version.
    Version(u64),
    /// The guard belongs to this record.
    Owner { org_id: &'a str, id: &'a str },
}

struct ConditionParts {
    expression: &'static str,
    names: HashMap<String, String>,
    values: Option<HashMap<String, AttributeValue>>,
}

impl Condition<'_> {
    fn parts(&self) -> ConditionParts {
        let names = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(placeholder, name)| (placeholder.to_string(), name.to_string()))
                .collect()
        };
        match self {
            Condition::Absent => ConditionParts {
                expression: "attribute_not_exists(#pk)",
                names: names(&[("#pk", PK)]),
                values: None,
            },
            Condition::Version(version) => ConditionParts {
                expression: "#version = :version",
                names: names(&[("#version", VERSION)]),
                values: Some(HashMap::from([(
                    ":version".to_string(),
                    AttributeValue::N(version.to_string()),
                )])),
            },
            Condition::Owner { org_id, id } => ConditionParts {
                expression: "#org_id = :org_id AND #id = :id",
                names: names(&[("#org_id", ORG_ID), ("#id", ID)]),
                values: Some(HashMap::from([
                    (":org_id".to_string(), s(*org_id)),
                    (":id".to_string(), s(*id)),
                ])),
            },
        }
    }
}

/// One item write of a commit.
struct Write {
    key: ItemKey,
    /// A put that requires the key to be free: two claims of one key in one commit are a
    /// conflict (as two inserts are in one SQLite transaction).
    claim: bool,
    /// A condition check ([`WriteOp::Check`]): its failure is `CheckFailed`.
    check: bool,
    item: TransactWriteItem,
}

impl DynamoDbStore {
    fn put(&self, item: Item, condition: Condition<'_>) -> Result<Write, StoreError> {
        let key = (
            string(&item, PK)?.to_string(),
            string(&item, SK)?.to_string(),
        );
        let claim = matches!(condition, Condition::Absent);
        let parts = condition.parts();
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(parts.expression)
            .set_expression_attribute_names(Some(parts.names))
            .set_expression_attribute_values(parts.values)
            .build()
            .map_err(build_error)?;
        Ok(Write {
            key,
            claim,
            check: false,
            item: TransactWriteItem::builder().put(put).build(),
        })
    }

    fn delete(&self, key: ItemKey, condition: Condition<'_>) -> Result<Write, StoreError> {
        let parts = condition.parts();
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key_item(&key)))
            .condition_expression(parts.expression)
            .set_expression_attribute_names(Some(parts.names))
            .set_expression_attribute_values(parts.values)
            .build()
            .map_err(build_error)?;
        Ok(Write {
            key,
            claim: false,
            check: false,
            item: TransactWriteItem::builder().delete(delete).build(),
        })
    }

    fn check(&self, key: ItemKey, condition: Condition<'_>) -> Result<Write, StoreError> {
        let parts = condition.parts();
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key_item(&key)))
            .condition_expression(parts.expression)
            .set_expression_attribute_names(Some(parts.names))
            .set_expression_attribute_values(parts.values)
            .build()
            .map_err(build_error)?;
        Ok(Write {
            key,
            claim: false,
            check: true,
            item: TransactWriteItem::builder().condition_check(check).build(),
        })
    }

    /// The unique key of the record stored at `expected_version`, read consistently,
    /// so that a replace or delete can move or drop its guard. `Conflict` when the record
    /// is missing or at another version: the transaction's own condition would fail too.
    async fn unique_key_at(
        &self,
        kind: Kind,
        org_id: &str,
        id: &str,
        expected_version: u64,
    ) -> Result<Option<String>, StoreError> {
        let output = self
            .client
            .get()
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_item(&record_key(kind, org_id, id))))
            .consistent_read(true)
            .projection_expression("#version, #unique_key")
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_names("#unique_key", UNIQUE_KEY)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        let item = output.item.ok_or(StoreError::Conflict)?;
        if version(&item)? != expected_version {
            return Err(StoreError::Conflict);
        }
        optional_string(&item, UNIQUE_KEY)
    }

    /// The item writes of one op, in the order they go into the transaction.
    async fn writes_of(&self, op: &WriteOp) -> Result<Vec<Write>, StoreError> {
        let mut writes = Vec::with_capacity(3);
        match op {
            WriteOp::Insert(record) => {
                writes.push(self.put(record_item(record, 1)?, Condition::Absent)?);
                if let Some(unique_key) = &record.unique_key {
                    writes.push(self.put(guard_item(record, unique_key), Condition::Absent)?);
                }
            }
            WriteOp::Replace {
                record,
                expected_version,
            } => {
                let stored_key = self
                    .unique_key_at(record.kind, &record.org_id, &record.id, *expected_version)
                    .await?;
                let next_version = expected_version.checked_add(1).ok_or_else(|| {
                    StoreError::Backend("the record's version cannot grow further".into())
                })?;
                // A put, not an update: attributes the new record lacks (a parent, an
                // index key) disappear, and with them the record's place in a GSI.
                writes.push(self.put(
                    record_item(record, next_version)?,
                    Condition::Version(*expected_version),
                )?);
                if stored_key != record.unique_key {
                    if let Some(old) = &stored_key {
                        writes.push(self.delete(
                            guard_key(record.kind, old),
                            Condition::Owner {
                                org_id: &record.org_id,
                                id: &record.id,
                            },
                        )?);
                    }
                    if let Some(new) = &record.unique_key {
                        writes.push(self.put(guard_item(record, new), Condition::Absent)?);
                    }
                }
            }
            WriteOp::Delete {
                kind,
                org_id,
                id,
                expected_version,
            } => {
                let stored_key = self
                    .unique_key_at(*kind, org_id, id, *expected_version)
                    .await?;
                writes.push(self.delete(
                    record_key(*kind, org_id, id),
                    Condition::Version(*expected_version),
                )?);
                if let Some(old) = &stored_key {
                    writes
                        .push(self.delete(guard_key(*kind, old), Condition::Owner { org_id, id })?);
                }
            }
            WriteOp::Check {
                kind,
                org_id,
                id,
                expected_version,
            } => writes.push(self.check(
                record_key(*kind, org_id, id),
                match expected_version {
                    0 => Condition::Absent,
                    version => Condition::Version(*version),
                },
            )?),
        }
        Ok(writes)
    }

    /// Runs a query to its end or until `want` records are in hand, following
    /// `LastEvaluatedKey` when DynamoDB stops early (at 1 MB of data).
    async fn collect(
        &self,
        request: QueryFluentBuilder,
        want: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let mut records = Vec::new();
        self.follow_pages(request, want, |output| {
            for item in output.items() {
                records.push(record_from_item(item)?);
            }
            Ok(output.items().len())
        })
        .await?;
        Ok(records)
    }

    /// Sends `request` page after page, each asking for what is still wanted of `want`,
    /// until `take` (which returns how many items a page gave) has had `want` or the
    /// query ends.
    async fn follow_pages(
        &self,
        request: QueryFluentBuilder,
        want: usize,
        mut take: impl FnMut(&QueryOutput) -> Result<usize, StoreError>,
    ) -> Result<(), StoreError> {
        let mut taken = 0;
        let mut start = None;
        while taken < want {
            let remaining = i32::try_from(want - taken).unwrap_or(i32::MAX);
            let output = request
                .clone()
                .limit(remaining)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            taken += take(&output)?;
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(())
    }

    /// A query of GSI2 for the records of `kind` under `index_key`: eventually
    /// consistent on real AWS (see the module comment).
    fn index_query(&self, kind: Kind, index_key: &str) -> QueryFluentBuilder {
        self.query()
            .index_name(GSI2)
            .expression_attribute_names("#pk", GSI2PK)
            .expression_attribute_values(":pk", s(index_pk(kind, index_key)))
    }

    fn query(&self) -> QueryFluentBuilder {
        self.client.get().query().table_name(&self.table)
    }
}

/// Records were fetched one beyond `limit`: that extra one tells whether a next page exists.
fn page_of(mut items: Vec<Record>, limit: usize) -> Page {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|record| record.id.clone())
    } else {
        None
    };
    Page { items, next }
}

/// A GSI partition key is a concatenation; were an id ever to contain `#`, two partitions
/// could coincide. A listing therefore returns only what it asked for, or fails.
fn ensure_listed(record: &Record, kind: Kind, org_id: Option<&str>) -> Result<(), StoreError> {
    if record.kind != kind || org_id.is_some_and(|org_id| record.org_id != org_id) {
        return Err(StoreError::Corrupt(format!(
            "a {} listing returned a record it did not ask for",
            kind.as_str()
        )));
    }
    Ok(())
}

#[async_trait]
impl Store for DynamoDbStore {
    async fn get(&self, kind: Kind, org_id: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let output = self
            .client
            .get()
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_item(&record_key(kind, org_id, id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let record = record_from_item(&item)?;
        if record.kind != kind || record.org_id != org_id || record.id != id {
            return Err(corrupt("does not match its key"));
        }
        Ok(Some(record))
    }

    async fn get_many(&self, keys: &[RecordKey<'_>]) -> Result<Vec<Option<Record>>, StoreError> {
        let mut wanted: Vec<ItemKey> = keys
            .iter()
            .map(|key| record_key(key.kind, key.org_id, key.id))
            .collect();
        // BatchGetItem refuses a key asked twice.
        wanted.sort();
        wanted.dedup();
        let mut found = HashMap::new();
        for chunk in wanted.chunks(MAX_GET_MANY) {
            self.batch_get(chunk, &mut found).await?;
        }
        keys.iter()
            .map(|key| {
                let Some(record) = found.get(&record_key(key.kind, key.org_id, key.id)) else {
                    return Ok(None);
                };
                if record.kind != key.kind || record.org_id != key.org_id || record.id != key.id {
                    return Err(corrupt("does not match its key"));
                }
                Ok(Some(record.clone()))
            })
            .collect()
    }

    async fn find_unique(
        &self,
        kind: Kind,
        unique_key: &str,
    ) -> Result<Option<Record>, StoreError> {
        let output = self
            .client
            .get()
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_item(&guard_key(kind, unique_key))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        let Some(guard) = output.item else {
            return Ok(None);
        };
        let record = self
            .get(kind, string(&guard, ORG_ID)?, string(&guard, ID)?)
            .await?;
        // Between the two reads a commit may have deleted the record or moved it to
        // another key (and its guard with it): then the key is free, as of the second read.
        Ok(record.filter(|record| record.unique_key.as_deref() == Some(unique_key)))
    }

    async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        let kind = query.kind;
        // DynamoDB refuses attribute names an expression does not use: `#sk` is named
        // only where a key condition bounds the sort key.
        let mut request = self.query().scan_index_forward(!query.newest_first);
        // Fetch one beyond the page to learn whether another follows.
        let mut want = query.limit.saturating_add(1);
        let mut skip = None;
        if let Some(parent_id) = &query.parent_id {
            // GSI1's sort key is the bare id: `after` is a plain bound. The index cannot
            // be read consistently (see the module comment).
            request = request
                .index_name(GSI1)
                .expression_attribute_names("#pk", GSI1PK)
                .expression_attribute_values(":pk", s(parent_pk(&query.org_id, kind, parent_id)));
            request = match &query.after {
                None => request.key_condition_expression("#pk = :pk"),
                Some(after) => request
                    .key_condition_expression(if query.newest_first {
                        "#pk = :pk AND #sk < :after"
                    } else {
                        "#pk = :pk AND #sk > :after"
                    })
                    .expression_attribute_names("#sk", GSI1SK)
                    .expression_attribute_values(":after", s(after)),
            };
        } else {
            // The table's sort key is `<kind>#<id>` among the organization's other kinds:
            // the range must stay inside this kind's prefix, and a key condition holds one
            // range only. `BETWEEN` is inclusive, so `after` itself may come back: it is
            // dropped, and fetched one more for.
            let prefix = kind_prefix(kind);
            request = request
                .consistent_read(true)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", s(org_pk(&query.org_id)));
            request = match &query.after {
                None => request
                    .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                    .expression_attribute_values(":prefix", s(prefix)),
                Some(after) => {
                    let bound = record_sk(kind, after);
                    // Every `<kind>#...` sorts below `<kind>$` ('$' follows '#').
                    let (low, high) = if query.newest_first {
                        (prefix, bound)
                    } else {
                        (bound, format!("{}$", kind.as_str()))
                    };
                    want = want.saturating_add(1);
                    skip = Some(after.as_str());
                    request
                        .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
                        .expression_attribute_values(":low", s(low))
                        .expression_attribute_values(":high", s(high))
                }
            };
        }
        let mut records = self.collect(request, want).await?;
        if let Some(after) = skip {
            records.retain(|record| record.id != after);
        }
        for record in &records {
            ensure_listed(record, kind, Some(&query.org_id))?;
            if query.parent_id.is_some() && record.parent_id != query.parent_id {
                return Err(StoreError::Corrupt(format!(
                    "a {} listing returned a record of another parent",
                    kind.as_str()
                )));
            }
        }
        records.truncate(query.limit.saturating_add(1));
        Ok(page_of(records, query.limit))
    }

    async fn list_indexed(&self, query: IndexQuery) -> Result<Page, StoreError> {
        let request = self.index_query(query.kind, &query.index_key);
        let sort_key = |request: QueryFluentBuilder, condition: &str| {
            request
                .key_condition_expression(format!("#pk = :pk AND {condition}"))
                .expression_attribute_names("#sk", GSI2SK)
        };
        // One range per key condition: both bounds are a BETWEEN, which includes
        // `after`, dropped below (and one more record read to make up for it).
        let (request, drop_after) = match (&query.after, &query.until) {
            (None, None) => (request.key_condition_expression("#pk = :pk"), false),
            (Some(after), None) => (
                sort_key(request, "#sk > :after").expression_attribute_values(":after", s(after)),
                false,
            ),
            (None, Some(until)) => (
                sort_key(request, "#sk <= :until").expression_attribute_values(":until", s(until)),
                false,
            ),
            (Some(after), Some(until)) if after >= until => return Ok(Page::default()),
            (Some(after), Some(until)) => (
                sort_key(request, "#sk BETWEEN :after AND :until")
                    .expression_attribute_values(":after", s(after))
                    .expression_attribute_values(":until", s(until)),
                true,
            ),
        };
        let wanted = query.limit.saturating_add(1 + usize::from(drop_after));
        let mut records = self.collect(request, wanted).await?;
        if drop_after && records.first().map(|r| &r.id) == query.after.as_ref() {
            records.remove(0);
        }
        for record in &records {
            ensure_listed(record, query.kind, None)?;
            if record.index_key.as_deref() != Some(query.index_key.as_str()) {
                return Err(StoreError::Corrupt(format!(
                    "a {} index listing returned a record of another index key",
                    query.kind.as_str()
                )));
            }
        }
        Ok(page_of(records, query.limit))
    }

    async fn count_indexed(
        &self,
        kind: Kind,
        index_key: &str,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let request = self
            .index_query(kind, index_key)
            .key_condition_expression("#pk = :pk")
            .select(Select::Count);
        let mut counted = 0;
        self.follow_pages(request, limit, |output| {
            let count = usize::try_from(output.count).unwrap_or_default();
            counted += count;
            Ok(count)
        })
        .await?;
        Ok(counted.min(limit))
    }

    async fn commit(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        // Every op writes at least one item: refuse before reading anything.
        if ops.len() > MAX_TRANSACTION_ITEMS {
            return Err(too_many_items(ops.len()));
        }
        let mut writes = Vec::with_capacity(ops.len());
        for op in &ops {
            writes.extend(self.writes_of(op).await?);
        }
        if writes.len() > MAX_TRANSACTION_ITEMS {
            return Err(too_many_items(writes.len()));
        }
        // A transaction may touch each item once.
        let mut claims: HashMap<&ItemKey, bool> = HashMap::with_capacity(writes.len());
        for write in &writes {
            if let Some(other_claim) = claims.insert(&write.key, write.claim) {
                return Err(if other_claim && write.claim {
                    StoreError::Conflict
                } else {
                    StoreError::Backend(
                        "a commit may write each record and each unique key once: a DynamoDB \
                         transaction touches an item at most once"
                            .into(),
                    )
                });
            }
        }
        if let [single] = writes.as_slice() {
            if !single.check {
                return self.write_one(&single.item).await;
            }
        }
        let checks: Vec<usize> = (0..writes.len())
            .filter(|&index| writes[index].check)
            .collect();
        self.client
            .get()
            .transact_write_items()
            .set_transact_items(Some(writes.into_iter().map(|write| write.item).collect()))
            .send()
            .await
            .map_err(|error| transaction_error(error, &checks))?;
        Ok(())
    }
}

impl DynamoDbStore {
    /// One BatchGetItem of at most 100 distinct keys, consistent, into `found` by key;
    /// the keys DynamoDB leaves unprocessed (throttling) are asked again after a pause.
    async fn batch_get(
        &self,
        keys: &[ItemKey],
        found: &mut HashMap<ItemKey, Record>,
    ) -> Result<(), StoreError> {
        let mut pending: Vec<Item> = keys.iter().map(key_item).collect();
        for attempt in 0..UNPROCESSED_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .build()
                .map_err(build_error)?;
            let output = self
                .client
                .get()
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| sdk_error("BatchGetItem", e))?;
            let items = output
                .responses
                .and_then(|mut responses| responses.remove(&self.table))
                .unwrap_or_default();
            for item in &items {
                let key = (string(item, PK)?.to_string(), string(item, SK)?.to_string());
                found.insert(key, record_from_item(item)?);
            }
            pending = output
                .unprocessed_keys
                .and_then(|mut unprocessed| unprocessed.remove(&self.table))
                .map(|keys| keys.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
        }
        Err(StoreError::Backend(
            "DynamoDB BatchGetItem left keys unprocessed after retries".into(),
        ))
    }

    /// A commit that writes one item needs no transaction: a conditional PutItem or
    /// DeleteItem is as atomic, costs half the write capacity and answers sooner.
    async fn write_one(&self, item: &TransactWriteItem) -> Result<(), StoreError> {
        if let Some(put) = item.put() {
            return self
                .client
                .get()
                .put_item()
                .table_name(put.table_name())
                .set_item(Some(put.item().clone()))
                .set_condition_expression(put.condition_expression().map(str::to_string))
                .set_expression_attribute_names(put.expression_attribute_names().cloned())
                .set_expression_attribute_values(put.expression_attribute_values().cloned())
                .send()
                .await
                .map(drop)
                // `sdk_error` maps a failed condition to a conflict.
                .map_err(|error| sdk_error("PutItem", error));
        }
        if let Some(delete) = item.delete() {
            return self
                .client
                .get()
                .delete_item()
                .table_name(delete.table_name())
                .set_key(Some(delete.key().clone()))
                .set_condition_expression(delete.condition_expression().map(str::to_string))
                .set_expression_attribute_names(delete.expression_attribute_names().cloned())
                .set_expression_attribute_values(delete.expression_attribute_values().cloned())
                .send()
                .await
                .map(drop)
                // `sdk_error` maps a failed condition to a conflict.
                .map_err(|error| sdk_error("DeleteItem", error));
        }
        Err(StoreError::Backend(
            "a commit writes puts and deletes only".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::{sdk_config, unique_name};
    use serde_json::json;

    async fn fresh_store() -> DynamoDbStore {
        let client = Client::new(&sdk_config().await);
        let table = unique_name("envplane-store");
        create_table(&client, &table).await.unwrap();
        DynamoDbStore::new(client, table)
    }

    fn project(id: &str, unique_key: Option<&str>) -> Record {
        Record {
            kind: Kind::Project,
            org_id: "org_c".into(),
            id: id.into(),
            parent_id: None,
            unique_key: unique_key.map(str::to_string),
            index_key: None,
            expires_at: None,
            version: 1,
            body: json!({ "id": id }),
        }
    }

    #[tokio::test]
    async fn the_dynamodb_store_conforms() {
        let store = fresh_store().await;
        envplane_testkit::store::conformance(&store).await;
    }

    #[tokio::test]
    async fn dynamodb_records_are_seen_by_another_store_on_the_table() {
        let store = fresh_store().await;
        envplane_testkit::store::write_sample(&store).await;
        let client = Client::new(&sdk_config().await);
        let other = DynamoDbStore::new(client, store.table());
        envplane_testkit::store::check_sample(&other).await;
    }

    #[tokio::test]
    async fn dynamodb_commits_beyond_one_transaction_fail_cleanly() {
        let store = fresh_store().await;
        let too_many: Vec<_> = (0..101)
            .map(|n| WriteOp::Insert(project(&format!("c_{n:03}"), None)))
            .collect();
        match store.commit(too_many).await {
            Err(StoreError::Backend(message)) => assert!(message.contains("100"), "{message}"),
            other => panic!("expected a backend error, got {other:?}"),
        }
        // 51 records with unique keys are 102 items: the guards count.
        let with_guards: Vec<_> = (0..51)
            .map(|n| {
                let id = format!("c_{n:03}");
                WriteOp::Insert(project(&id, Some(&format!("org_c/{id}"))))
            })
            .collect();
        match store.commit(with_guards).await {
            Err(StoreError::Backend(message)) => assert!(message.contains("102"), "{message}"),
            other => panic!("expected a backend error, got {other:?}"),
        }
        assert!(store
            .get(Kind::Project, "org_c", "c_000")
            .await
            .unwrap()
            .is_none());
        // The largest commit that fits goes through.
        let fits: Vec<_> = (0..100)
            .map(|n| WriteOp::Insert(project(&format!("c_{n:03}"), None)))
            .collect();
        store.commit(fits).await.unwrap();
        assert!(store
            .get(Kind::Project, "org_c", "c_099")
            .await
            .unwrap()
            .is_some());
    }

    /// The read before a replace or delete only learns the unique key: the transaction's
    /// own conditions still decide, as when another commit lands between the two.
    #[tokio::test]
    async fn dynamodb_transaction_conditions_hold_without_the_read() {
        let store = fresh_store().await;
        let record = project("v_1", Some("org_c/v"));
        store
            .commit(vec![WriteOp::Insert(record.clone())])
            .await
            .unwrap();
        let stale = store
            .put(record_item(&record, 3).unwrap(), Condition::Version(2))
            .unwrap();
        let foreign_guard = store
            .delete(
                guard_key(Kind::Project, "org_c/v"),
                Condition::Owner {
                    org_id: "org_c",
                    id: "v_2",
                },
            )
            .unwrap();
        for write in [stale, foreign_guard] {
            let result = store
                .client
                .get()
                .transact_write_items()
                .transact_items(write.item)
                .send()
                .await
                .map_err(|error| transaction_error(error, &[]));
            assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
        }
        let found = store
            .find_unique(Kind::Project, "org_c/v")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found, record);
    }

    #[tokio::test]
    async fn dynamodb_claims_of_one_key_in_one_commit_conflict() {
        let store = fresh_store().await;
        let result = store
            .commit(vec![
                WriteOp::Insert(project("u_1", Some("org_c/same"))),
                WriteOp::Insert(project("u_2", Some("org_c/same"))),
            ])
            .await;
        assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
        assert!(store
            .find_unique(Kind::Project, "org_c/same")
            .await
            .unwrap()
            .is_none());
        store.commit(vec![]).await.unwrap();
    }

    #[tokio::test]
    async fn dynamodb_listings_resume_after_a_deleted_record() {
        let store = fresh_store().await;
        let ops = ["a_1", "a_2", "a_3", "a_4"]
            .into_iter()
            .map(|id| WriteOp::Insert(project(id, None)))
            .collect();
        store.commit(ops).await.unwrap();
        // Another kind in the same organization stays out of every listing.
        let mut template = project("a_9", None);
        template.kind = Kind::Template;
        let mut older = project("a_0", None);
        older.kind = Kind::Environment;
        store
            .commit(vec![WriteOp::Insert(template), WriteOp::Insert(older)])
            .await
            .unwrap();
        store
            .commit(vec![WriteOp::Delete {
                kind: Kind::Project,
                org_id: "org_c".into(),
                id: "a_2".into(),
                expected_version: 1,
            }])
            .await
            .unwrap();
        let list = |after: &str, newest_first| ListQuery {
            kind: Kind::Project,
            org_id: "org_c".into(),
            parent_id: None,
            after: Some(after.into()),
            limit: 10,
            newest_first,
        };
        let ids = |page: Page| page.items.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.list(list("a_2", false)).await.unwrap()),
            ["a_3", "a_4"]
        );
        assert_eq!(ids(store.list(list("a_2", true)).await.unwrap()), ["a_1"]);
        assert_eq!(
            ids(store.list(list("a_4", false)).await.unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(
            ids(store.list(list("a_1", true)).await.unwrap()),
            Vec::<String>::new()
        );
    }

    #[tokio::test]
    async fn dynamodb_unreadable_items_are_corrupt() {
        let store = fresh_store().await;
        let mut item = record_item(&project("bad_1", None), 1).unwrap();
        item.insert(BODY.into(), s("{not json"));
        store
            .client
            .get()
            .put_item()
            .table_name(store.table())
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
        let result = store.get(Kind::Project, "org_c", "bad_1").await;
        match result {
            Err(StoreError::Corrupt(message)) => {
                assert!(!message.contains("not json"), "{message}")
            }
            other => panic!("expected a corrupt record, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn dynamodb_refuses_records_larger_than_an_item() {
        let store = fresh_store().await;
        let mut large = project("big_1", None);
        large.body = json!({ "log": "x".repeat(MAX_ITEM_BYTES) });
        match store.commit(vec![WriteOp::Insert(large)]).await {
            Err(StoreError::Backend(message)) => assert!(message.contains("400 KB"), "{message}"),
            other => panic!("expected a backend error, got {other:?}"),
        }
    }
}
