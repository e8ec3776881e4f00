//! A bounded cache of compiled schemas, so a server compiles a schema once
//! per version instead of once per write.
//!
//! Keys are the caller's: e.g. `(String, u64)` for a `tenant/namespace` and a
//! schema version. A schema version never changes meaning, so entries never
//! go stale; the bound only limits memory.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::validation::CompiledSchema;

/// Compiled schemas by key, at most `capacity` of them: inserting into a full
/// cache evicts the least recently used entry. Shared by reference across
/// threads (`&self` methods; the lock is held only for map operations, never
/// while compiling).
#[derive(Debug)]
pub struct SchemaCache<K> {
    capacity: usize,
    inner: Mutex<Entries<K>>,
}

#[derive(Debug)]
struct Entries<K> {
    /// Key → schema and the tick of its last use.
    map: HashMap<K, (Arc<CompiledSchema>, u64)>,
    /// Tick of last use → key: the first entry is the one to evict.
    by_use: BTreeMap<u64, K>,
    next_tick: u64,
}

impl<K: Eq + Hash + Clone> Entries<K> {
    fn touch(&mut self, key: &K) -> Option<Arc<CompiledSchema>> {
        let tick = self.next_tick;
        let (schema, last_used) = self.map.get_mut(key)?;
        self.by_use.remove(last_used);
        *last_used = tick;
        self.by_use.insert(tick, key.clone());
        self.next_tick += 1;
        Some(schema.clone())
    }
}

impl<K: Eq + Hash + Clone> SchemaCache<K> {
    /// An empty cache holding at most `capacity` schemas (0 caches nothing).
    pub fn new(capacity: usize) -> Self {
        SchemaCache {
            capacity,
            inner: Mutex::new(Entries {
                map: HashMap::new(),
                by_use: BTreeMap::new(),
                next_tick: 0,
            }),
        }
    }

    /// The most schemas kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, Entries<K>> {
        // No code panics while holding the lock, and the maps stay consistent
        // at every step, so a poisoned lock's data is still good.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The schema cached under `key`, marking it used.
    pub fn get(&self, key: &K) -> Option<Arc<CompiledSchema>> {
        self.lock().touch(key)
    }

    /// Caches `schema` under `key` (replacing any schema there), evicting the
    /// least recently used entry when full, and returns it.
    pub fn insert(&self, key: K, schema: Arc<CompiledSchema>) -> Arc<CompiledSchema> {
        if self.capacity == 0 {
            return schema;
        }
        let mut entries = self.lock();
        let tick = entries.next_tick;
        entries.next_tick += 1;
        if let Some((_, old_tick)) = entries.map.insert(key.clone(), (schema.clone(), tick)) {
            entries.by_use.remove(&old_tick);
        }
        entries.by_use.insert(tick, key);
        while entries.map.len() > self.capacity {
            let Some((_, oldest)) = entries.by_use.pop_first() else {
                break;
            };
            entries.map.remove(&oldest);
        }
        schema
    }

    /// The schema cached under `key`, or the one `compile` makes, cached.
    /// Compilation runs outside the lock: two threads missing the same key at
    /// once both compile, and the later insert wins (the schemas are equal).
    pub fn get_or_try_insert_with<E>(
        &self,
        key: K,
        compile: impl FnOnce() -> Result<CompiledSchema, E>,
    ) -> Result<Arc<CompiledSchema>, E> {
        if let Some(schema) = self.get(&key) {
            return Ok(schema);
        }
        let schema = Arc::new(compile()?);
        Ok(self.insert(key, schema))
    }

    /// Drops the schema cached under `key`, if any.
    pub fn remove(&self, key: &K) -> Option<Arc<CompiledSchema>> {
        let mut entries = self.lock();
        let (schema, tick) = entries.map.remove(key)?;
        entries.by_use.remove(&tick);
        Some(schema)
    }

    /// How many schemas are cached.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no schema is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every cached schema.
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.map.clear();
        entries.by_use.clear();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::SchemaDocument;

    fn schema(max: u64) -> CompiledSchema {
        SchemaDocument::from_value(json!({"maximum": max}))
            .and_then(|d| d.compile())
            .expect("compiles")
    }

    fn key(ns: &str, version: u64) -> (String, u64) {
        (ns.to_string(), version)
    }

    #[test]
    fn the_least_recently_used_entry_is_evicted() {
        let cache = SchemaCache::new(2);
        cache.insert(key("a", 1), Arc::new(schema(1)));
        cache.insert(key("b", 1), Arc::new(schema(2)));
        assert!(
            cache.get(&key("a", 1)).is_some(),
            "a is now the most recent"
        );
        cache.insert(key("c", 1), Arc::new(schema(3)));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key("b", 1)).is_none(), "b was the oldest");
        assert!(cache.get(&key("a", 1)).is_some());
        assert!(cache.get(&key("c", 1)).is_some());
    }

    #[test]
    fn replacing_a_key_keeps_one_entry() {
        let cache = SchemaCache::new(2);
        cache.insert(key("a", 1), Arc::new(schema(1)));
        cache.insert(key("a", 1), Arc::new(schema(5)));
        cache.insert(key("b", 1), Arc::new(schema(2)));
        assert_eq!(cache.len(), 2);
        let a = cache.get(&key("a", 1)).expect("cached");
        assert!(a.is_valid(&json!(5)));
        assert!(cache.remove(&key("a", 1)).is_some());
        assert!(cache.remove(&key("a", 1)).is_none());
        assert_eq!(cache.len(), 1);
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn compiles_once_per_key() {
        let cache = SchemaCache::new(4);
        let mut compiled = 0;
        for _ in 0..3 {
            let s = cache
                .get_or_try_insert_with(key("a", 7), || {
                    compiled += 1;
                    Ok::<_, crate::Error>(schema(1))
                })
                .expect("compiles");
            assert!(!s.is_valid(&json!(2)));
        }
        assert_eq!(compiled, 1);
        let err = cache.get_or_try_insert_with(key("bad", 1), || {
            SchemaDocument::from_value(json!({"minimum": "x"})).and_then(|d| d.compile())
        });
        assert!(err.is_err());
        assert!(
            cache.get(&key("bad", 1)).is_none(),
            "failures are not cached"
        );
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = SchemaCache::new(0);
        let s = cache.insert("k".to_string(), Arc::new(schema(1)));
        assert!(s.is_valid(&json!(1)));
        assert!(cache.is_empty());
        assert_eq!(cache.capacity(), 0);
    }

    #[test]
    fn the_cache_is_shared_across_threads() {
        let cache = Arc::new(SchemaCache::new(8));
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for v in 0..16u64 {
                        let s = cache
                            .get_or_try_insert_with(key("ns", v % 10), || {
                                Ok::<_, crate::Error>(schema(v % 10))
                            })
                            .expect("compiles");
                        assert!(s.is_valid(&json!(v % 10)), "thread {t}");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread ran");
        }
        assert!(cache.len() <= 8);
    }
}
