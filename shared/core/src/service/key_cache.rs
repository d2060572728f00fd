//! API keys already resolved, so a request costs one store read instead of two. Only
//! for an installation that is the single process over its store (local mode): there
//! every revoke goes through this process and empties the cache. Lambda instances each
//! have their own memory and read the key every time, so a revoke takes effect at once
//! everywhere.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use crate::auth::Caller;

#[derive(Default)]
pub(super) struct KeyCache {
    callers: RwLock<HashMap<String, Caller>>,
    /// Bumped by every revoke. A lookup that read the store before a revoke committed
    /// must not put the key back afterwards: it stores its result only if no revoke
    /// happened since it started.
    generation: AtomicU64,
}

impl KeyCache {
    pub fn get(&self, hash: &str) -> Option<Caller> {
        read(&self.callers).get(hash).cloned()
    }

    /// Where a lookup starts; hand it back to `insert`.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn insert(&self, hash: String, caller: Caller, generation: u64) {
        let mut callers = write(&self.callers);
        // Checked under the lock: a revoke bumps the generation, then clears under it.
        if self.generation.load(Ordering::SeqCst) == generation {
            callers.insert(hash, caller);
        }
    }

    /// Called after a revoke is committed.
    pub fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        write(&self.callers).clear();
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn caller() -> Caller {
        Caller {
            key_id: "key_1".into(),
            key_name: "ci".into(),
            org_id: "org_1".into(),
            role: Role::Admin,
            project_id: None,
            operator: false,
            request_id: String::new(),
            client_request_id: None,
        }
    }

    #[test]
    fn a_lookup_that_started_before_a_revoke_does_not_bring_the_key_back() {
        let cache = KeyCache::default();
        let started = cache.generation();
        cache.forget_all();
        cache.insert("hash".into(), caller(), started);
        assert!(cache.get("hash").is_none());

        let after = cache.generation();
        cache.insert("hash".into(), caller(), after);
        assert_eq!(cache.get("hash").unwrap().key_id, "key_1");
        cache.forget_all();
        assert!(cache.get("hash").is_none());
    }
}
