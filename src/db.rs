//! One shard's keyspace: the engine's TTL map plus the read counters INFO reports.

use bytes::Bytes;
use coreshard_engine::ttl::{TtlMap, ValueRef};

/// A shard's keys and its hit/miss counters. Times are Unix milliseconds.
#[derive(Default)]
pub struct Db {
    /// The keys.
    pub map: TtlMap,
    /// Reads that found their key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
}

impl Db {
    /// Read a value, counting a hit or a miss.
    pub fn read(&mut self, key: &[u8], now: u64) -> Option<ValueRef<'_>> {
        let v = self.map.get(key, now);
        if v.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        v
    }

    /// Read a value as owned `Bytes` (free for large values), counting a hit or a miss.
    pub fn read_bytes(&mut self, key: &[u8], now: u64) -> Option<Bytes> {
        self.read(key, now).map(|v| v.to_bytes())
    }

    /// Store a value with a deadline (0 = none).
    pub fn write(&mut self, key: &[u8], value: &Value, deadline: u64, now: u64) {
        self.map.insert(key, value.as_ref(), deadline, now);
    }
}

/// A value about to be stored: borrowed bytes (copied into the map) or shared `Bytes`
/// (kept without a copy when large).
pub enum Value<'a> {
    /// Bytes to copy.
    Slice(&'a [u8]),
    /// An owned, shareable value.
    Shared(Bytes),
}

impl Value<'_> {
    /// The map's view of this value.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Slice(s) => ValueRef::Inline(s),
            Value::Shared(b) => ValueRef::Shared(b),
        }
    }
}
