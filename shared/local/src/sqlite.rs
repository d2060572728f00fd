//! The Store port on SQLite: one `records` table mirroring the single-table design used
//! on DynamoDB. WAL mode lets readers run while a write commits; each commit is one
//! SQLite transaction, so a batch of writes is all or nothing.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use async_trait::async_trait;
use envplane_core::ports::{IndexQuery, Kind, ListQuery, Page, Record, Store, StoreError, WriteOp};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use tokio::sync::oneshot;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    kind       TEXT    NOT NULL,
    org_id     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    parent_id  TEXT,
    unique_key TEXT,
    index_key  TEXT,
    version    INTEGER NOT NULL,
    expires_at INTEGER,
    body       TEXT    NOT NULL,
    PRIMARY KEY (kind, org_id, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS records_by_unique_key
    ON records (kind, unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_parent
    ON records (kind, org_id, parent_id, id) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_index_key
    ON records (kind, index_key, id) WHERE index_key IS NOT NULL;
";

const READERS: usize = 4;
/// Connections for point reads made in place on the caller's thread.
const INLINE_READERS: usize = 2;

/// A SQLite database file with one writer connection, a few reader threads for reads of
/// any size, and a few connections for point reads (one row by key, microseconds) made
/// in place: those need no hop to another thread and back.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Connections>,
}

struct Connections {
    writer: Mutex<Connection>,
    /// Reads for the reader threads. Each thread owns its connection for its whole life,
    /// so a caller that goes away (a client hung up, a timeout) cannot take a connection
    /// with it: only the answer is dropped.
    reads: mpsc::Sender<Read>,
    /// Point reads run on one of these when it is free, without awaiting anything, so a
    /// cancelled caller cannot leave one half-used either.
    inline: Vec<Mutex<Connection>>,
}

/// A read, run on whichever reader thread is free.
type Read = Box<dyn FnOnce(&Connection) + Send>;

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let writer = Connection::open(path).map_err(backend)?;
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
            )
            .map_err(backend)?;
        writer.execute_batch(SCHEMA).map_err(backend)?;
        add_expiry_column(&writer)?;
        let (reads, queued) = mpsc::channel::<Read>();
        let queued = Arc::new(Mutex::new(queued));
        for n in 0..READERS {
            let connection = open_reader(path)?;
            let queued = queued.clone();
            std::thread::Builder::new()
                .name(format!("sqlite-reader-{n}"))
                .spawn(move || serve_reads(&connection, &queued))
                .map_err(|e| StoreError::Backend(format!("cannot start a reader thread: {e}")))?;
        }
        let inline = (0..INLINE_READERS)
            .map(|_| open_reader(path).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            inner: Arc::new(Connections {
                writer: Mutex::new(writer),
                reads,
                inline,
            }),
        })
    }

    /// A point read: in place on a free inline connection, else on a reader thread.
    async fn read_point<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        for connection in &self.inner.inline {
            if let Ok(connection) = connection.try_lock() {
                return work(&connection);
            }
        }
        self.read(work).await
    }

    /// Runs `work` on a reader thread, off the async executor.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let read: Read = Box::new(move |connection| {
            // Nobody waits for a read whose caller went away: skip the query.
            if !answer.is_closed() {
                let _ = answer.send(work(connection));
            }
        });
        self.inner
            .reads
            .send(read)
            .map_err(|_| StoreError::Backend("the store's reader threads stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Backend("a store read panicked".into()))?
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    connection
        .execute_batch("PRAGMA busy_timeout = 5000;")
        .map_err(backend)?;
    Ok(connection)
}

/// A reader thread: takes reads one at a time until the store is dropped. A read that
/// panics loses its answer (its caller sees an error), not the thread or its connection.
fn serve_reads(connection: &Connection, queued: &Mutex<mpsc::Receiver<Read>>) {
    loop {
        let next = match queued.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(read) = next else {
            return;
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(connection)));
    }
}

async fn run_blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}

fn backend(error: rusqlite::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

fn poisoned() -> StoreError {
    StoreError::Backend("a store connection was poisoned by an earlier panic".into())
}

/// Sorts after every id (ids are ASCII): an index read's bounds are always plain
/// comparisons, which SQLite answers from the index's range rather than by filtering
/// every record under the index key.
const LAST_ID: &str = "\u{10FFFF}";

const COLUMNS: &str = "org_id, id, parent_id, unique_key, index_key, version, body, expires_at";

/// Databases made before records could expire get the column (appended last, where
/// `ALTER TABLE` puts it) and the index the purge uses.
fn add_expiry_column(connection: &Connection) -> Result<(), StoreError> {
    let has_column = connection
        .prepare("SELECT 1 FROM pragma_table_info('records') WHERE name = 'expires_at'")
        .and_then(|mut statement| statement.exists([]))
        .map_err(backend)?;
    if !has_column {
        connection
            .execute_batch("ALTER TABLE records ADD COLUMN expires_at INTEGER")
            .map_err(backend)?;
    }
    connection
        .execute_batch(
            "CREATE INDEX IF NOT EXISTS records_by_expiry ON records (expires_at) \
             WHERE expires_at IS NOT NULL",
        )
        .map_err(backend)
}

/// Deletes the records whose expiry has passed: what DynamoDB's time to live does on
/// its own. Run by the commits that add expiring records, so they cannot pile up.
fn purge_expired(transaction: &Transaction<'_>) -> Result<(), StoreError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
    transaction
        .execute(
            "DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at < ?1",
            params![now],
        )
        .map_err(backend)?;
    Ok(())
}

/// Reads a row selected with `COLUMNS`; every query filters by kind, so it is known.
fn read_record(kind: Kind) -> impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    move |row| {
        let body: String = row.get(6)?;
        Ok(Record {
            kind,
            org_id: row.get(0)?,
            id: row.get(1)?,
            parent_id: row.get(2)?,
            unique_key: row.get(3)?,
            index_key: row.get(4)?,
            version: row.get::<_, i64>(5)? as u64,
            expires_at: row.get(7)?,
            body: serde_json::from_str(&body).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    6,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, kind: Kind, org_id: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let (org_id, id) = (org_id.to_string(), id.to_string());
        self.read_point(move |connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM records WHERE kind = ?1 AND org_id = ?2 AND id = ?3"
                ))
                .map_err(backend)?;
            statement
                .query_row(params![kind.as_str(), org_id, id], read_record(kind))
                .optional()
                .map_err(backend)
        })
        .await
    }

    async fn find_unique(
        &self,
        kind: Kind,
        unique_key: &str,
    ) -> Result<Option<Record>, StoreError> {
        let unique_key = unique_key.to_string();
        self.read_point(move |connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM records WHERE kind = ?1 AND unique_key = ?2"
                ))
                .map_err(backend)?;
            statement
                .query_row(params![kind.as_str(), unique_key], read_record(kind))
                .optional()
                .map_err(backend)
        })
        .await
    }

    async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        self.read(move |connection| list(connection, &query)).await
    }

    async fn list_indexed(&self, query: IndexQuery) -> Result<Page, StoreError> {
        self.read(move |connection| {
            let sql = format!(
                "SELECT {COLUMNS} FROM records WHERE kind = ?1 AND index_key = ?2 AND id > ?3 \
                 AND id <= ?5 ORDER BY id LIMIT ?4"
            );
            let mut statement = connection.prepare_cached(&sql).map_err(backend)?;
            let rows = statement
                .query_map(
                    params![
                        query.kind.as_str(),
                        query.index_key,
                        query.after.as_deref().unwrap_or(""),
                        (query.limit + 1) as i64,
                        query.until.as_deref().unwrap_or(LAST_ID),
                    ],
                    read_record(query.kind),
                )
                .map_err(backend)?;
            let items = rows.collect::<Result<Vec<_>, _>>().map_err(backend)?;
            Ok(page_of(items, query.limit))
        })
        .await
    }

    async fn commit(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        run_blocking(move || {
            let mut connection = inner.writer.lock().map_err(|_| poisoned())?;
            let transaction = connection.transaction().map_err(backend)?;
            if ops.iter().any(inserts_expiring) {
                purge_expired(&transaction)?;
            }
            for op in &ops {
                apply(&transaction, op)?;
            }
            transaction.commit().map_err(backend)
        })
        .await
    }
}

fn list(connection: &Connection, query: &ListQuery) -> Result<Page, StoreError> {
    let (order, after_op) = if query.newest_first {
        ("DESC", "<")
    } else {
        ("ASC", ">")
    };
    let parent_filter = if query.parent_id.is_some() {
        "AND parent_id = ?3"
    } else {
        "AND ?3 IS NULL"
    };
    let after_filter = if query.after.is_some() {
        format!("AND id {after_op} ?4")
    } else {
        "AND ?4 IS NULL".to_string()
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM records WHERE kind = ?1 AND org_id = ?2 {parent_filter} {after_filter} \
         ORDER BY id {order} LIMIT ?5"
    );
    let mut statement = connection.prepare_cached(&sql).map_err(backend)?;
    // One more than asked tells whether another page follows.
    let rows = statement
        .query_map(
            params![
                query.kind.as_str(),
                query.org_id,
                query.parent_id,
                query.after,
                (query.limit + 1) as i64
            ],
            read_record(query.kind),
        )
        .map_err(backend)?;
    let items = rows.collect::<Result<Vec<_>, _>>().map_err(backend)?;
    Ok(page_of(items, query.limit))
}

/// Rows were fetched one beyond `limit`: that extra row tells whether a next page exists.
fn page_of(mut items: Vec<Record>, limit: usize) -> Page {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|record| record.id.clone())
    } else {
        None
    };
    Page { items, next }
}

fn inserts_expiring(op: &WriteOp) -> bool {
    matches!(op, WriteOp::Insert(record) if record.expires_at.is_some())
}

fn apply(transaction: &Transaction<'_>, op: &WriteOp) -> Result<(), StoreError> {
    let changed = match op {
        WriteOp::Insert(record) => transaction
            .execute(
                &format!(
                    "INSERT INTO records (kind, {COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8) ON CONFLICT DO NOTHING"
                ),
                params![
                    record.kind.as_str(),
                    record.org_id,
                    record.id,
                    record.parent_id,
                    record.unique_key,
                    record.index_key,
                    record.body.to_string(),
                    record.expires_at
                ],
            )
            .map_err(write_error)?,
        WriteOp::Replace {
            record,
            expected_version,
        } => transaction
            .execute(
                "UPDATE records SET parent_id = ?4, unique_key = ?5, index_key = ?6, body = ?7, \
                 expires_at = ?9, version = version + 1 \
                 WHERE kind = ?1 AND org_id = ?2 AND id = ?3 AND version = ?8",
                params![
                    record.kind.as_str(),
                    record.org_id,
                    record.id,
                    record.parent_id,
                    record.unique_key,
                    record.index_key,
                    record.body.to_string(),
                    *expected_version as i64,
                    record.expires_at
                ],
            )
            .map_err(write_error)?,
        WriteOp::Delete {
            kind,
            org_id,
            id,
            expected_version,
        } => transaction
            .execute(
                "DELETE FROM records WHERE kind = ?1 AND org_id = ?2 AND id = ?3 AND version = ?4",
                params![kind.as_str(), org_id, id, *expected_version as i64],
            )
            .map_err(write_error)?,
        WriteOp::Check {
            kind,
            org_id,
            id,
            expected_version,
        } => return check(transaction, *kind, org_id, id, *expected_version),
    };
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict)
    }
}

/// A [`WriteOp::Check`]: the record is at `expected_version` (0: absent).
fn check(
    transaction: &Transaction<'_>,
    kind: Kind,
    org_id: &str,
    id: &str,
    expected_version: u64,
) -> Result<(), StoreError> {
    let stored: Option<i64> = transaction
        .query_row(
            "SELECT version FROM records WHERE kind = ?1 AND org_id = ?2 AND id = ?3",
            params![kind.as_str(), org_id, id],
            |row| row.get(0),
        )
        .optional()
        .map_err(backend)?;
    if stored.unwrap_or(0) as u64 == expected_version {
        Ok(())
    } else {
        Err(StoreError::CheckFailed)
    }
}

/// A unique-index violation is a conflict like any other failed condition.
fn write_error(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Conflict,
        _ => backend(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("envplane.db")).unwrap();
        envplane_testkit::store::conformance(&store).await;
    }

    #[tokio::test]
    async fn abandoned_calls_leave_every_connection_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("envplane.db")).unwrap();
        envplane_testkit::store::survives_abandoned_calls(std::sync::Arc::new(store)).await;
    }

    #[tokio::test]
    async fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("envplane.db");
        envplane_testkit::store::write_sample(&SqliteStore::open(&path).unwrap()).await;
        envplane_testkit::store::check_sample(&SqliteStore::open(&path).unwrap()).await;
    }

    fn delivery(id: &str, expires_at: i64) -> Record {
        Record {
            kind: Kind::WebhookDelivery,
            org_id: "org_a".into(),
            id: id.into(),
            parent_id: None,
            unique_key: None,
            index_key: None,
            expires_at: Some(expires_at),
            version: 1,
            body: serde_json::json!({}),
        }
    }

    #[tokio::test]
    async fn expired_records_go_when_new_expiring_ones_come() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("envplane.db")).unwrap();
        let now = chrono::Utc::now().timestamp();
        store
            .commit(vec![
                WriteOp::Insert(delivery("expired", now - 1)),
                WriteOp::Insert(delivery("current", now + 3600)),
            ])
            .await
            .unwrap();
        store
            .commit(vec![WriteOp::Insert(delivery("next", now + 3600))])
            .await
            .unwrap();
        let stored = |id: &'static str| store.get(Kind::WebhookDelivery, "org_a", id);
        assert!(stored("expired").await.unwrap().is_none());
        assert!(stored("current").await.unwrap().is_some());
        assert!(stored("next").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_database_from_before_expiry_gets_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("envplane.db");
        let old_schema = SCHEMA.replace("    expires_at INTEGER,\n", "");
        Connection::open(&path)
            .unwrap()
            .execute_batch(&old_schema)
            .unwrap();
        let store = SqliteStore::open(&path).unwrap();
        let now = chrono::Utc::now().timestamp();
        store
            .commit(vec![WriteOp::Insert(delivery("d", now + 60))])
            .await
            .unwrap();
        let stored = store
            .get(Kind::WebhookDelivery, "org_a", "d")
            .await
            .unwrap();
        assert_eq!(stored.unwrap().expires_at, Some(now + 60));
    }
}
