//! In-process caches of hot answers, invalidated on every write: at once in this process,
//! and on PostgreSQL in every other node too, through `NOTIFY` sent inside the writing
//! transaction (so only committed changes are announced).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Entries a cache keeps before it starts over; bounds memory under a flood of distinct keys.
const MAX_ENTRIES: usize = 100_000;

/// The PostgreSQL channel invalidations travel on.
pub const CHANNEL: &str = "backroom_cache";

/// A map whose entries live at most `ttl`. The TTL is a safety net; writes evict. Values are
/// shared, so a hit costs a reference count, not a copy.
pub struct TtlCache<V> {
    ttl: Duration,
    entries: RwLock<HashMap<String, (Instant, Arc<V>)>>,
}

impl<V> TtlCache<V> {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: RwLock::new(HashMap::new()) }
    }

    pub fn get(&self, key: &str) -> Option<Arc<V>> {
        let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (stored_at, value) = entries.get(key)?;
        (stored_at.elapsed() < self.ttl).then(|| value.clone())
    }

    pub fn insert(&self, key: String, value: Arc<V>) {
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (Instant::now(), value));
    }
}

/// What a cache must do when told its data changed.
pub trait Evict: Send + Sync {
    fn evict(&self, key: &str);
    fn clear(&self);
}

impl<V: Send + Sync> Evict for TtlCache<V> {
    fn evict(&self, key: &str) {
        self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(key);
    }

    fn clear(&self) {
        self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}

/// A change to announce: `key` of the cache `cache`, or all of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Invalidation {
    pub cache: &'static str,
    pub key: Option<String>,
}

impl Invalidation {
    pub fn key(cache: &'static str, key: impl Into<String>) -> Self {
        Self { cache, key: Some(key.into()) }
    }

    pub fn all(cache: &'static str) -> Self {
        Self { cache, key: None }
    }

    /// The `NOTIFY` payload: `cache` or `cache:key`.
    pub fn payload(&self) -> String {
        match &self.key {
            Some(key) => format!("{}:{key}", self.cache),
            None => self.cache.to_owned(),
        }
    }
}

/// Every cache of the process by name, so that an invalidation, local or from another
/// node, reaches the right one.
#[derive(Default)]
pub struct Caches {
    by_name: RwLock<HashMap<&'static str, Arc<dyn Evict>>>,
}

impl Caches {
    /// Registers a cache under `name` and returns it.
    pub fn register<V: Send + Sync + 'static>(&self, name: &'static str, ttl: Duration) -> Arc<TtlCache<V>> {
        let cache = Arc::new(TtlCache::new(ttl));
        self.by_name.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(name, cache.clone());
        cache
    }

    pub fn apply(&self, invalidation: &Invalidation) {
        let by_name = self.by_name.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cache) = by_name.get(invalidation.cache) {
            match &invalidation.key {
                Some(key) => cache.evict(key),
                None => cache.clear(),
            }
        }
    }

    /// Applies a payload received from another node.
    pub fn apply_payload(&self, payload: &str) {
        let by_name = self.by_name.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (name, key) = match payload.split_once(':') {
            Some((name, key)) => (name, Some(key)),
            None => (payload, None),
        };
        if let Some(cache) = by_name.get(name) {
            match key {
                Some(key) => cache.evict(key),
                None => cache.clear(),
            }
        }
    }

    /// Empties every cache: after a lost connection to the other nodes, when some
    /// invalidations may have been missed.
    pub fn clear_all(&self) {
        for cache in self.by_name.read().unwrap_or_else(|poisoned| poisoned.into_inner()).values() {
            cache.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_invalidations_reach_their_cache() {
        let caches = Caches::default();
        let users = caches.register::<u32>("users", Duration::from_secs(60));
        let short = caches.register::<u32>("short", Duration::from_millis(10));
        users.insert("a".into(), Arc::new(1));
        users.insert("b".into(), Arc::new(2));
        short.insert("a".into(), Arc::new(3));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(short.get("a"), None);
        caches.apply(&Invalidation::key("users", "a"));
        assert_eq!(users.get("a"), None);
        assert_eq!(users.get("b"), Some(Arc::new(2)));
        caches.apply_payload("users");
        assert_eq!(users.get("b"), None);
        users.insert("c".into(), Arc::new(3));
        caches.apply_payload("users:c");
        assert_eq!(users.get("c"), None);
        assert_eq!(Invalidation::key("users", "x:y").payload(), "users:x:y");
    }
}
