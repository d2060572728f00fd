//! The Queue port on SQLite: a durable table in the installation's database, so queued
//! deployments survive a restart. Delivery is at least once, like SQS: a received
//! message becomes visible again unless it is acknowledged.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use envplane_core::ports::{DeploymentMessage, Queue, QueueError};
use rusqlite::{params, Connection};
use tokio::sync::Notify;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    body       TEXT    NOT NULL,
    visible_at INTEGER NOT NULL,
    receives   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queue_by_visibility ON queue (visible_at, id);
";

/// How long a received message stays hidden before it is delivered again.
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct SqliteQueue {
    connection: Arc<Mutex<Connection>>,
    arrivals: Arc<Notify>,
}

/// A received message; acknowledge it, or hand it back for later.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub message: DeploymentMessage,
    /// How many times it has been received, this time included.
    pub receives: u32,
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

fn backend(error: impl std::fmt::Display) -> QueueError {
    QueueError::Backend(error.to_string())
}

impl SqliteQueue {
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        let connection = Connection::open(path).map_err(backend)?;
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;")
            .map_err(backend)?;
        connection.execute_batch(SCHEMA).map_err(backend)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            arrivals: Arc::new(Notify::new()),
        })
    }

    async fn with_connection<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, QueueError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .map_err(|_| backend("queue connection poisoned"))?;
            work(&mut connection).map_err(backend)
        })
        .await
        .map_err(backend)?
    }

    /// Up to `max` visible messages, hidden for the visibility timeout.
    pub async fn receive(&self, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let rows = self
            .with_connection(move |connection| {
                let transaction = connection.transaction()?;
                let now = now_millis();
                let rows = {
                    let mut select = transaction.prepare_cached(
                        "SELECT id, body, receives FROM queue WHERE visible_at <= ?1 ORDER BY id LIMIT ?2",
                    )?;
                    let rows = select
                        .query_map(params![now, max as i64], |row| {
                            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    rows
                };
                let hidden_until = now + VISIBILITY_TIMEOUT.as_millis() as i64;
                for (id, _, _) in &rows {
                    transaction.execute(
                        "UPDATE queue SET visible_at = ?1, receives = receives + 1 WHERE id = ?2",
                        params![hidden_until, id],
                    )?;
                }
                transaction.commit()?;
                Ok(rows)
            })
            .await?;
        rows.into_iter()
            .map(|(id, body, receives)| {
                Ok(Delivery {
                    id,
                    message: serde_json::from_str(&body).map_err(backend)?,
                    receives: receives as u32 + 1,
                })
            })
            .collect()
    }

    pub async fn acknowledge(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let id = delivery.id;
        self.with_connection(move |connection| {
            connection.execute("DELETE FROM queue WHERE id = ?1", params![id])
        })
        .await
        .map(|_| ())
    }

    /// Makes the message visible again after `delay`.
    pub async fn retry_later(
        &self,
        delivery: &Delivery,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let (id, visible_at) = (delivery.id, now_millis() + delay.as_millis() as i64);
        self.with_connection(move |connection| {
            connection.execute(
                "UPDATE queue SET visible_at = ?1 WHERE id = ?2",
                params![visible_at, id],
            )
        })
        .await
        .map(|_| ())
    }

    /// Messages not yet acknowledged, received or not.
    pub async fn depth(&self) -> Result<u64, QueueError> {
        self.with_connection(|connection| {
            connection.query_row("SELECT COUNT(*) FROM queue", [], |row| row.get(0))
        })
        .await
    }

    /// Waits until a message is sent or `timeout` passes.
    pub async fn wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.arrivals.notified()).await;
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send_after(
        &self,
        message: &DeploymentMessage,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let body = serde_json::to_string(message).map_err(backend)?;
        let visible_at = now_millis() + delay.as_millis() as i64;
        self.with_connection(move |connection| {
            connection.execute(
                "INSERT INTO queue (body, visible_at) VALUES (?1, ?2)",
                params![body, visible_at],
            )
        })
        .await?;
        self.arrivals.notify_one();
        Ok(())
    }

    /// One transaction for all of them.
    async fn send_many(&self, messages: &[DeploymentMessage]) -> Result<(), QueueError> {
        let bodies = messages
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        let visible_at = now_millis();
        self.with_connection(move |connection| {
            let transaction = connection.transaction()?;
            for body in bodies {
                transaction.execute(
                    "INSERT INTO queue (body, visible_at) VALUES (?1, ?2)",
                    params![body, visible_at],
                )?;
            }
            transaction.commit()
        })
        .await?;
        self.arrivals.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u32) -> DeploymentMessage {
        DeploymentMessage {
            org_id: "org_1".into(),
            environment_id: "env_1".into(),
            deployment_id: format!("dep_{n}"),
        }
    }

    #[tokio::test]
    async fn messages_sent_together_are_delivered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let queue = SqliteQueue::open(&dir.path().join("queue.db")).unwrap();
        let sent: Vec<_> = (0..3).map(message).collect();
        queue.send_many(&sent).await.unwrap();
        let received = queue.receive(10).await.unwrap();
        let bodies: Vec<_> = received.iter().map(|d| d.message.clone()).collect();
        assert_eq!(bodies, sent);
    }

    #[tokio::test]
    async fn messages_are_delivered_in_order_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let queue = SqliteQueue::open(&path).unwrap();
        for n in 0..3 {
            queue.send(&message(n)).await.unwrap();
        }
        let received = queue.receive(2).await.unwrap();
        assert_eq!(
            received
                .iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>(),
            [message(0), message(1)]
        );
        assert_eq!(received[0].receives, 1);
        // Received messages are hidden; the third is still there.
        let rest = queue.receive(10).await.unwrap();
        assert_eq!(rest.len(), 1);
        queue.acknowledge(&received[0]).await.unwrap();
        queue
            .retry_later(&received[1], Duration::ZERO)
            .await
            .unwrap();

        // Durable: a new queue on the same file sees what was not acknowledged.
        let reopened = SqliteQueue::open(&path).unwrap();
        let again = reopened.receive(10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].message, message(1));
        assert_eq!(again[0].receives, 2);
    }
}
