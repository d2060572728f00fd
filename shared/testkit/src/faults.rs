//! The fault kit: adapters that fail the way the cloud does, so that tests can show
//! every deployment still ends with a reason and frees its environment. Each wraps or
//! stands in for one port: an index that lags behind the table, a queue that loses or
//! repeats messages, a launcher that refuses or dies mid-launch, a clock tests move.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use envplane_core::notification::TargetUrl;
use envplane_core::ports::{
    Clock, DaySpend, DeploymentMessage, IndexQuery, Kind, LaunchError, LaunchRequest, Launcher,
    ListQuery, NotificationDelivery, NotificationSender, Notifier, Page, Queue, QueueError, Record,
    RecordKey, SendError, SpendError, SpendSource, Store, StoreError, WriteOp,
};
use envplane_core::secrecy::SecretString;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes one from `counter` if it is above zero.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// A clock that stands still until a test moves it.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl Default for ManualClock {
    /// Starts at the real time now.
    fn default() -> Self {
        Self(Mutex::new(Utc::now()))
    }
}

impl ManualClock {
    pub fn advance(&self, by: chrono::Duration) {
        *lock(&self.0) += by;
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *lock(&self.0) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.0)
    }
}

/// A store whose indexes lag behind its table, as DynamoDB's global secondary indexes
/// do: while [`LaggingStore::lag`] is on, index reads (the cross-organization index,
/// listings by parent) answer as of the moment it was turned on, while point reads,
/// unique-key reads, organization listings and commits see the table as it is.
pub struct LaggingStore {
    inner: Arc<dyn Store>,
    lagging: AtomicBool,
    /// What each record written since the lag began looked like before (`None`: it
    /// did not exist).
    before: Mutex<HashMap<(Kind, String, String), Option<Record>>>,
}

impl LaggingStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            lagging: AtomicBool::new(false),
            before: Mutex::new(HashMap::new()),
        }
    }

    /// Index reads stop seeing writes from now on.
    pub fn lag(&self) {
        lock(&self.before).clear();
        self.lagging.store(true, Ordering::SeqCst);
    }

    /// Index reads catch up.
    pub fn catch_up(&self) {
        self.lagging.store(false, Ordering::SeqCst);
        lock(&self.before).clear();
    }

    async fn remember_before(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        for op in ops {
            let (kind, org_id, id) = match op {
                WriteOp::Insert(record) | WriteOp::Replace { record, .. } => {
                    (record.kind, record.org_id.clone(), record.id.clone())
                }
                WriteOp::Delete {
                    kind, org_id, id, ..
                } => (*kind, org_id.clone(), id.clone()),
                WriteOp::Check { .. } => continue,
            };
            let key = (kind, org_id, id);
            if lock(&self.before).contains_key(&key) {
                continue;
            }
            let current = self.inner.get(key.0, &key.1, &key.2).await?;
            lock(&self.before).entry(key).or_insert(current);
        }
        Ok(())
    }

    /// The records an index read of the whole of `current` would give while lagging:
    /// those written since the lag began as they were before (if they were in the
    /// index then, as `was_listed` says), the others as they are.
    fn as_before(
        &self,
        current: Vec<Record>,
        was_listed: impl Fn(&Record) -> bool,
    ) -> BTreeMap<String, Record> {
        let before = lock(&self.before).clone();
        let changed: HashSet<&(Kind, String, String)> = before.keys().collect();
        let mut seen: BTreeMap<String, Record> = current
            .into_iter()
            .filter(|record| {
                !changed.contains(&(record.kind, record.org_id.clone(), record.id.clone()))
            })
            .map(|record| (record.id.clone(), record))
            .collect();
        for record in before.values().flatten() {
            if was_listed(record) {
                seen.insert(record.id.clone(), record.clone());
            }
        }
        seen
    }
}

/// One page of `records` (in id order, or newest first) after `after`.
fn page_of(
    records: BTreeMap<String, Record>,
    after: Option<&String>,
    limit: usize,
    newest_first: bool,
) -> Page {
    let mut items: Vec<Record> = records.into_values().collect();
    if newest_first {
        items.reverse();
    }
    let mut items: Vec<Record> = items
        .into_iter()
        .filter(|record| {
            after.is_none_or(|after| {
                if newest_first {
                    &record.id < after
                } else {
                    &record.id > after
                }
            })
        })
        .collect();
    let next = (items.len() > limit).then(|| items[limit - 1].id.clone());
    items.truncate(limit);
    Page { items, next }
}

/// Every page of a listing, read through `read_page` (given `after`).
async fn read_all<F, Fut>(read_page: F) -> Result<Vec<Record>, StoreError>
where
    F: Fn(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Page, StoreError>>,
{
    let mut records = Vec::new();
    let mut after = None;
    loop {
        let page = read_page(after).await?;
        records.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(records),
        }
    }
}

#[async_trait]
impl Store for LaggingStore {
    async fn get(&self, kind: Kind, org_id: &str, id: &str) -> Result<Option<Record>, StoreError> {
        self.inner.get(kind, org_id, id).await
    }

    async fn get_many(&self, keys: &[RecordKey<'_>]) -> Result<Vec<Option<Record>>, StoreError> {
        self.inner.get_many(keys).await
    }

    async fn find_unique(&self, kind: Kind, key: &str) -> Result<Option<Record>, StoreError> {
        self.inner.find_unique(kind, key).await
    }

    /// A listing by parent is an index read too (DynamoDB's GSI1); the others read the
    /// table itself.
    async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        if !self.lagging.load(Ordering::SeqCst) || query.parent_id.is_none() {
            return self.inner.list(query).await;
        }
        let current = read_all(|after| {
            self.inner.list(ListQuery {
                after,
                limit: 1000,
                newest_first: false,
                ..query.clone()
            })
        })
        .await?;
        let listed = self.as_before(current, |record| {
            record.kind == query.kind
                && record.org_id == query.org_id
                && record.parent_id == query.parent_id
        });
        Ok(page_of(
            listed,
            query.after.as_ref(),
            query.limit,
            query.newest_first,
        ))
    }

    async fn list_indexed(&self, query: IndexQuery) -> Result<Page, StoreError> {
        if !self.lagging.load(Ordering::SeqCst) {
            return self.inner.list_indexed(query).await;
        }
        let current = read_all(|after| {
            self.inner.list_indexed(IndexQuery {
                after,
                limit: 1000,
                ..query.clone()
            })
        })
        .await?;
        let listed = self.as_before(current, |record| {
            record.kind == query.kind
                && record.index_key.as_ref() == Some(&query.index_key)
                && query.until.as_ref().is_none_or(|until| &record.id <= until)
        });
        Ok(page_of(listed, query.after.as_ref(), query.limit, false))
    }

    async fn commit(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        if self.lagging.load(Ordering::SeqCst) {
            self.remember_before(&ops).await?;
        }
        self.inner.commit(ops).await
    }
}

/// An in-memory queue that records what is sent, and can be told to refuse sends, to
/// lose some silently or to deliver each twice. Tests deliver with [`Self::take`].
#[derive(Default)]
pub struct FaultyQueue {
    sent: Mutex<Vec<(DeploymentMessage, Duration)>>,
    /// Sends fail while set.
    pub down: AtomicBool,
    /// The next this many sends are accepted and lost.
    pub lose: AtomicUsize,
    /// Every send is delivered twice while set.
    pub repeat: AtomicBool,
}

impl FaultyQueue {
    /// What was sent and not yet taken, with each message's delay.
    pub fn sent(&self) -> Vec<(DeploymentMessage, Duration)> {
        lock(&self.sent).clone()
    }

    /// Takes every message sent so far, to deliver.
    pub fn take(&self) -> Vec<DeploymentMessage> {
        std::mem::take(&mut *lock(&self.sent))
            .into_iter()
            .map(|(message, _)| message)
            .collect()
    }
}

#[async_trait]
impl Queue for FaultyQueue {
    async fn send_after(
        &self,
        message: &DeploymentMessage,
        delay: Duration,
    ) -> Result<(), QueueError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(QueueError::Backend("the queue is unavailable".into()));
        }
        if take_one(&self.lose) {
            return Ok(());
        }
        let copies = if self.repeat.load(Ordering::SeqCst) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            lock(&self.sent).push((message.clone(), delay));
        }
        Ok(())
    }
}

/// A launcher that starts nothing: it records each launch (with its credential, for a
/// test to play the sandbox) and each stop, and can be told to refuse launches for
/// now or to die in the middle of one.
#[derive(Default)]
pub struct FaultyLauncher {
    launched: Mutex<Vec<LaunchRequest>>,
    stopped: Mutex<Vec<(String, u32)>>,
    /// The next this many launches are refused as throttled.
    pub refuse: AtomicUsize,
    /// While set, a launch never returns: the process launching died after its commit
    /// (a test drops the pending call).
    pub dies: AtomicBool,
    /// While set, every launch fails for good (a runner binary that is not there).
    pub fails: AtomicBool,
}

impl FaultyLauncher {
    /// (deployment, attempt) of every launch, in order.
    pub fn launched(&self) -> Vec<(String, u32)> {
        lock(&self.launched)
            .iter()
            .map(|request| (request.deployment_id.clone(), request.attempt))
            .collect()
    }

    /// Every launch, in order.
    pub fn launches(&self) -> Vec<LaunchRequest> {
        lock(&self.launched).clone()
    }

    /// The launch credential of the deployment's newest launch.
    pub fn launch_token(&self, deployment_id: &str) -> Option<SecretString> {
        lock(&self.launched)
            .iter()
            .rev()
            .find(|request| request.deployment_id == deployment_id)
            .map(|request| request.runner_token.clone())
    }

    /// (deployment, attempt) of every stop asked for, in order.
    pub fn stopped(&self) -> Vec<(String, u32)> {
        lock(&self.stopped).clone()
    }

    pub fn forget_stops(&self) {
        lock(&self.stopped).clear();
    }
}

#[async_trait]
impl Launcher for FaultyLauncher {
    async fn launch(&self, request: LaunchRequest) -> Result<(), LaunchError> {
        if self.dies.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.fails.load(Ordering::SeqCst) {
            return Err(LaunchError::Failed(
                "no runner to start (a test said so)".into(),
            ));
        }
        if take_one(&self.refuse) {
            return Err(LaunchError::Transient(
                "no capacity (a test refused it)".into(),
            ));
        }
        lock(&self.launched).push(request);
        Ok(())
    }

    async fn stop(&self, _: &str, deployment_id: &str, attempt: u32) -> Result<(), LaunchError> {
        lock(&self.stopped).push((deployment_id.to_string(), attempt));
        Ok(())
    }
}

/// A notifier that keeps what it is handed, with each delay, for a test to deliver.
#[derive(Default)]
pub struct RecordingNotifier {
    queued: Mutex<Vec<(NotificationDelivery, Duration)>>,
}

impl RecordingNotifier {
    /// Takes everything queued so far.
    pub fn take(&self) -> Vec<(NotificationDelivery, Duration)> {
        std::mem::take(&mut *lock(&self.queued))
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn enqueue(&self, delivery: NotificationDelivery, delay: Duration) {
        lock(&self.queued).push((delivery, delay));
    }
}

/// A notification target a test scripts: each post takes the next answer (success once
/// they run out) and is kept with its headers and body.
#[derive(Default)]
pub struct ScriptedSender {
    answers: Mutex<Vec<Result<(), SendError>>>,
    posted: Mutex<Vec<Posted>>,
}

/// One post a [`ScriptedSender`] received.
#[derive(Debug, Clone)]
pub struct Posted {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl ScriptedSender {
    /// The next posts answer these, in order.
    pub fn answer(&self, answers: Vec<Result<(), SendError>>) {
        *lock(&self.answers) = answers.into_iter().rev().collect();
    }

    pub fn posted(&self) -> Vec<Posted> {
        lock(&self.posted).clone()
    }
}

#[async_trait]
impl NotificationSender for ScriptedSender {
    async fn post(
        &self,
        url: &TargetUrl,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Result<(), SendError> {
        lock(&self.posted).push(Posted {
            url: url.as_str().to_string(),
            headers,
            body,
        });
        lock(&self.answers).pop().unwrap_or(Ok(()))
    }
}

/// A bill a test writes: each reading answers what was set last (or fails, once, when
/// told to), and the readings are counted with their periods.
#[derive(Default)]
pub struct ScriptedSpend {
    bill: Mutex<Vec<DaySpend>>,
    fail_next: AtomicBool,
    readings: Mutex<Vec<(chrono::NaiveDate, chrono::NaiveDate)>>,
}

impl ScriptedSpend {
    pub fn set(&self, bill: Vec<DaySpend>) {
        *lock(&self.bill) = bill;
    }

    pub fn fail_next(&self) {
        self.fail_next.store(true, Ordering::SeqCst);
    }

    /// The periods read so far, `[from, until)`.
    pub fn readings(&self) -> Vec<(chrono::NaiveDate, chrono::NaiveDate)> {
        lock(&self.readings).clone()
    }
}

#[async_trait]
impl SpendSource for ScriptedSpend {
    async fn daily_spend(
        &self,
        from: chrono::NaiveDate,
        until: chrono::NaiveDate,
    ) -> Result<Vec<DaySpend>, SpendError> {
        lock(&self.readings).push((from, until));
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(SpendError("the scripted bill failed".into()));
        }
        Ok(lock(&self.bill)
            .iter()
            .filter(|day| from <= day.day && day.day < until)
            .cloned()
            .collect())
    }
}
