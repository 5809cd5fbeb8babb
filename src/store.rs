//! One shard's slice of the keyspace. Values are refcounted `Bytes`, so a reply can be
//! built (and a value handed to another shard) without copying it.

use bytes::Bytes;
use hashbrown::HashMap;

/// A shard's keys and its hit/miss counters.
#[derive(Debug, Default)]
pub struct Store {
    map: HashMap<Bytes, Bytes>,
    /// Reads that found their key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
}

impl Store {
    /// The value of `key`, counting a hit or a miss.
    pub fn get(&mut self, key: &[u8]) -> Option<Bytes> {
        let v = self.map.get(key).cloned();
        self.count_read(v.is_some());
        v
    }

    /// The value of `key` without copying or counting; pair with [`Store::count_read`].
    pub fn peek(&self, key: &[u8]) -> Option<&Bytes> {
        self.map.get(key)
    }

    /// Count a read as a hit or a miss.
    pub fn count_read(&mut self, hit: bool) {
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
    }

    /// Set `key` to `value`, reusing the stored key when it already exists.
    pub fn set(&mut self, key: &[u8], value: Bytes) {
        match self.map.get_mut(key) {
            Some(v) => *v = value,
            None => {
                self.map.insert(Bytes::copy_from_slice(key), value);
            }
        }
    }

    /// Remove `key`; whether it existed.
    pub fn del(&mut self, key: &[u8]) -> bool {
        self.map.remove(key).is_some()
    }

    /// Whether `key` exists (no hit/miss accounting, as in Redis).
    pub fn exists(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Drop every key.
    pub fn clear(&mut self) {
        self.map = HashMap::new();
    }
}
