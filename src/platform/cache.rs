//! In-process caches of hot answers, invalidated on every write: at once in this process,
//! and on PostgreSQL in every other node too, through `NOTIFY` sent inside the writing
//! transaction (so only committed changes are announced).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Bumped by every eviction. A reader notes it before reading the database and inserts
    /// only if it has not moved, so a value read before a change never lands after it.
    generation: AtomicU64,
}

impl<V> TtlCache<V> {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: RwLock::new(HashMap::new()), generation: AtomicU64::new(0) }
    }

    /// The generation to pass to [`TtlCache::insert`]; take it before reading the source.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, key: &str) -> Option<Arc<V>> {
        let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (stored_at, value) = entries.get(key)?;
        (stored_at.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Caches `value`, read from the source after [`TtlCache::generation`] returned
    /// `generation`, unless something was evicted since: then it may already be stale.
    pub fn insert(&self, key: String, value: Arc<V>, generation: u64) {
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Evictions bump the generation under this same lock, so the check cannot race them.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
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
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(key);
    }

    fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

/// Empties a cache on any eviction, whatever its key.
struct ClearOnAny<V>(Arc<TtlCache<V>>);

impl<V: Send + Sync> Evict for ClearOnAny<V> {
    fn evict(&self, _key: &str) {
        self.0.clear();
    }

    fn clear(&self) {
        self.0.clear();
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

    /// What a `NOTIFY` announces, after the name of the node that sends it: `cache` or
    /// `cache:key`.
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
    by_name: RwLock<HashMap<&'static str, Vec<Arc<dyn Evict>>>>,
}

impl Caches {
    /// Registers a cache under `name` and returns it.
    pub fn register<V: Send + Sync + 'static>(&self, name: &'static str, ttl: Duration) -> Arc<TtlCache<V>> {
        let cache = Arc::new(TtlCache::new(ttl));
        self.register_evict(name, cache.clone());
        cache
    }

    /// Registers a structure of its own that hears invalidations of `name`, beside any
    /// other that does.
    pub fn register_evict(&self, name: &'static str, target: Arc<dyn Evict>) {
        self.by_name.write().unwrap_or_else(|poisoned| poisoned.into_inner()).entry(name).or_default().push(target);
    }

    /// Has `cache` emptied by any invalidation of `name`, whatever its key: for a cache of
    /// answers built from many of that name's entries.
    pub fn clear_on<V: Send + Sync + 'static>(&self, name: &'static str, cache: Arc<TtlCache<V>>) {
        self.register_evict(name, Arc::new(ClearOnAny(cache)));
    }

    pub fn apply(&self, invalidation: &Invalidation) {
        self.evict(invalidation.cache, invalidation.key.as_deref());
    }

    /// Applies a payload received from another node.
    pub fn apply_payload(&self, payload: &str) {
        match payload.split_once(':') {
            Some((name, key)) => self.evict(name, Some(key)),
            None => self.evict(payload, None),
        }
    }

    fn evict(&self, name: &str, key: Option<&str>) {
        let by_name = self.by_name.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        for cache in by_name.get(name).into_iter().flatten() {
            match key {
                Some(key) => cache.evict(key),
                None => cache.clear(),
            }
        }
    }

    /// Empties every cache: after a lost connection to the other nodes, when some
    /// invalidations may have been missed.
    pub fn clear_all(&self) {
        for cache in self.by_name.read().unwrap_or_else(|poisoned| poisoned.into_inner()).values().flatten() {
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
        users.insert("a".into(), Arc::new(1), users.generation());
        users.insert("b".into(), Arc::new(2), users.generation());
        short.insert("a".into(), Arc::new(3), short.generation());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(short.get("a"), None);
        caches.apply(&Invalidation::key("users", "a"));
        assert_eq!(users.get("a"), None);
        assert_eq!(users.get("b"), Some(Arc::new(2)));
        caches.apply_payload("users");
        assert_eq!(users.get("b"), None);
        users.insert("c".into(), Arc::new(3), users.generation());
        caches.apply_payload("users:c");
        assert_eq!(users.get("c"), None);
        // A value read before an eviction is not cached after it.
        let before = users.generation();
        caches.apply(&Invalidation::key("users", "d"));
        users.insert("d".into(), Arc::new(4), before);
        assert_eq!(users.get("d"), None);
        assert_eq!(Invalidation::key("users", "x:y").payload(), "users:x:y");
    }
}
