//! A store that counts the reads passing through it, for benchmarks that promise reads
//! proportional to the work (the scheduler's round) rather than to the data.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use envplane_core::ports::{
    IndexQuery, Kind, ListQuery, Page, Record, RecordKey, Store, StoreError, WriteOp,
};

/// Reads so far: calls to the store, and records they answered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    pub calls: usize,
    pub records: usize,
}

pub struct CountingStore {
    inner: Arc<dyn Store>,
    calls: AtomicUsize,
    records: AtomicUsize,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            calls: AtomicUsize::new(0),
            records: AtomicUsize::new(0),
        }
    }

    /// The reads since the last call, and starts counting again.
    pub fn take(&self) -> Reads {
        Reads {
            calls: self.calls.swap(0, Ordering::SeqCst),
            records: self.records.swap(0, Ordering::SeqCst),
        }
    }

    fn count(&self, records: usize) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.records.fetch_add(records, Ordering::SeqCst);
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn get(&self, kind: Kind, org_id: &str, id: &str) -> Result<Option<Record>, StoreError> {
        let found = self.inner.get(kind, org_id, id).await?;
        self.count(usize::from(found.is_some()));
        Ok(found)
    }

    async fn get_many(&self, keys: &[RecordKey<'_>]) -> Result<Vec<Option<Record>>, StoreError> {
        let found = self.inner.get_many(keys).await?;
        self.count(found.iter().flatten().count());
        Ok(found)
    }

    async fn find_unique(
        &self,
        kind: Kind,
        unique_key: &str,
    ) -> Result<Option<Record>, StoreError> {
        let found = self.inner.find_unique(kind, unique_key).await?;
        self.count(usize::from(found.is_some()));
        Ok(found)
    }

    async fn list(&self, query: ListQuery) -> Result<Page, StoreError> {
        let page = self.inner.list(query).await?;
        self.count(page.items.len());
        Ok(page)
    }

    async fn list_indexed(&self, query: IndexQuery) -> Result<Page, StoreError> {
        let page = self.inner.list_indexed(query).await?;
        self.count(page.items.len());
        Ok(page)
    }

    async fn count_indexed(
        &self,
        kind: Kind,
        index_key: &str,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let count = self.inner.count_indexed(kind, index_key, limit).await?;
        self.count(0);
        Ok(count)
    }

    async fn commit(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.inner.commit(ops).await
    }
}
