//! One shard's keyspace: the engine's TTL map behind the one choke point every read and
//! every mutation of a shard's data passes. Mutations (`write`, `append`, `setrange`,
//! `remove`, `set_deadline`, `clear`) are where WATCH invalidation hooks in (and where
//! journaling and memory accounting will); nothing outside this module touches the map
//! directly.

use bytes::Bytes;
use coreshard_engine::ttl::{ExpireStep, TtlMap, ValueRef};

use crate::notify::{Events, Mutation};
use crate::persist::effect::Effect;
use crate::persist::Journal;
use crate::watch::WatchTable;

/// A shard's keys, its hit/miss counters and its watched keys. Times are Unix milliseconds.
#[derive(Default)]
pub struct Db {
    map: TtlMap,
    /// Reads that found their key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
    /// Keys some connection WATCHes, with the version of their last modification.
    pub watch: WatchTable,
    /// The shard's log, when persistence is on: every mutation appends its effect.
    pub journal: Option<Journal>,
    /// LSN of the last record appended (replies that observe this state wait for it).
    pub last_lsn: u64,
    /// Keyspace notifications collected for the shard to publish.
    pub events: Events,
    /// Eviction under `maxmemory` (see [`crate::evict`]).
    pub evict: crate::evict::Evictor,
}

impl Db {
    /// Collect a keyspace notification, when they are on.
    #[inline]
    fn note(&mut self, what: Mutation, key: &[u8]) {
        let flags = crate::notify::flags();
        if flags != 0 {
            self.events.note(flags, what, key);
        }
    }

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

    /// A live key's value, without counting a hit or miss.
    pub fn get(&mut self, key: &[u8], now: u64) -> Option<ValueRef<'_>> {
        self.map.get(key, now)
    }

    /// A live key's value and deadline (0 = none), without counting.
    pub fn get_with_deadline(&mut self, key: &[u8], now: u64) -> Option<(ValueRef<'_>, u64)> {
        self.map.get_with_deadline(key, now)
    }

    /// Whether a live key exists.
    pub fn contains(&mut self, key: &[u8], now: u64) -> bool {
        self.map.contains(key, now)
    }

    /// A live key's deadline: `None` if absent, `Some(0)` if it has none.
    pub fn deadline(&mut self, key: &[u8], now: u64) -> Option<u64> {
        self.map.deadline(key, now)
    }

    /// Live keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Keys with a deadline.
    pub fn with_deadline(&self) -> usize {
        self.map.with_deadline()
    }

    /// Keys removed by expiry so far.
    pub fn expired_total(&self) -> u64 {
        self.map.expired_total()
    }

    /// Bytes the keyspace structure holds.
    pub fn structure_bytes(&self) -> usize {
        self.map.structure_bytes()
    }

    /// Read-only view of the map (memory estimate, sampling for eviction, OBJECT); every
    /// change still goes through `Db`.
    pub fn keyspace(&self) -> &TtlMap {
        &self.map
    }

    /// How key accesses are recorded (LRU or LFU stamps, per the eviction policy).
    pub fn set_access(&mut self, access: coreshard_engine::ttl::Access) {
        self.map.set_access(access);
    }

    /// Visit up to `count` slots from `cursor` (see [`TtlMap::scan`]).
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        now: u64,
        f: impl FnMut(&[u8], ValueRef<'_>),
    ) -> u64 {
        self.map.scan(cursor, count, now, f)
    }

    /// A random live key.
    pub fn random_key(&mut self, now: u64, rand: impl FnMut() -> u64) -> Option<Vec<u8>> {
        self.map.random_key(now, rand)
    }

    /// Store a value with a deadline (0 = none).
    pub fn write(&mut self, key: &[u8], value: &Value, deadline: u64, now: u64) {
        self.watch.touch(key);
        self.note(Mutation::Write, key);
        if deadline != 0 {
            self.note(Mutation::Expire, key);
        }
        if let Some(j) = self.journal.as_mut().filter(|j| j.enabled) {
            self.last_lsn = j.set(key, value.as_ref().as_slice(), deadline);
        }
        self.map.insert(key, value.as_ref(), deadline, now);
    }

    /// Before an edit that builds on the current value (APPEND, SETRANGE): if the key does
    /// not exist now (absent, or expired a moment ago), journal a DEL first, so replay,
    /// which applies records without judging expiry, starts the edit from nothing too.
    fn journal_fresh_start(&mut self, key: &[u8], now: u64) {
        if self.journal.as_ref().is_some_and(|j| j.enabled) && !self.map.contains(key, now) {
            if let Some(j) = self.journal.as_mut() {
                self.last_lsn = j.del(key);
            }
        }
    }

    /// Journal an effect that is applied elsewhere or without the log (a cross-shard
    /// transaction's outcome, a fence).
    pub fn journal(&mut self, e: &Effect) {
        if let Some(j) = self.journal.as_mut().filter(|j| j.enabled) {
            self.last_lsn = j.effect(e);
        }
    }

    /// Run `f` with journaling off (its effects are covered by another record).
    pub fn unjournaled<T>(&mut self, f: impl FnOnce(&mut Db) -> T) -> T {
        let was = self.journal.as_ref().is_some_and(|j| j.enabled);
        if let Some(j) = self.journal.as_mut() {
            j.enabled = false;
        }
        let out = f(self);
        if let Some(j) = self.journal.as_mut() {
            j.enabled = was;
        }
        out
    }

    /// Append `data` to a key's value, creating the key (without a deadline) if absent; an
    /// existing deadline is kept. Returns the new length. Grows the value in place with
    /// spare capacity (see [`TtlMap::append`]); the caller enforces the length limit.
    pub fn append(&mut self, key: &[u8], data: &[u8], now: u64) -> usize {
        self.journal_fresh_start(key, now);
        self.watch.touch(key);
        self.note(Mutation::Append, key);
        if let Some(j) = self.journal.as_mut().filter(|j| j.enabled) {
            self.last_lsn = j.append_to(key, data);
        }
        self.map.append(key, data, now)
    }

    /// Overwrite a key's value from `offset` with `data`, zero-padding it as needed, or
    /// create the key (without a deadline); an existing deadline is kept. Returns the new
    /// length. Edits in place (see [`TtlMap::setrange`]); the caller enforces the limit.
    pub fn setrange(&mut self, key: &[u8], offset: usize, data: &[u8], now: u64) -> usize {
        self.journal_fresh_start(key, now);
        self.watch.touch(key);
        self.note(Mutation::SetRange, key);
        if let Some(j) = self.journal.as_mut().filter(|j| j.enabled) {
            self.last_lsn = j.setrange(key, offset as u64, data);
        }
        self.map.setrange(key, offset, data, now)
    }

    /// Remove a live key, returning its value and deadline.
    pub fn remove(&mut self, key: &[u8], now: u64) -> Option<(Bytes, u64)> {
        let old = self.map.remove(key, now);
        if old.is_some() {
            self.watch.touch(key);
            self.note(Mutation::Remove, key);
            if let Some(j) = self.journal.as_mut().filter(|j| j.enabled) {
                self.last_lsn = j.del(key);
            }
        }
        old
    }

    /// Change a live key's deadline (0 removes it). Returns whether the key exists.
    pub fn set_deadline(&mut self, key: &[u8], deadline: u64, now: u64) -> bool {
        let found = self.map.set_deadline(key, deadline, now);
        if found {
            self.watch.touch(key);
            let what = if deadline == 0 {
                Mutation::Persist
            } else {
                Mutation::Expire
            };
            self.note(what, key);
            if let Some(j) = self.journal.as_mut().filter(|j| j.enabled) {
                self.last_lsn = j.deadline(key, deadline);
            }
        }
        found
    }

    /// Remove every key. Watched keys that existed count as modified (as in Redis, a
    /// watched key that did not exist is not).
    pub fn clear(&mut self, now: u64) {
        let map = &mut self.map;
        self.watch.touch_where(|k| map.contains(k, now));
        if let Some(j) = self.journal.as_mut().filter(|j| j.enabled) {
            self.last_lsn = j.effect(&Effect::Flush);
        }
        self.map.clear();
    }

    /// Whether keys removed by expiry are collected for `expired` notifications.
    pub fn collect_expired(&mut self, on: bool) {
        self.map.log_expired(on);
    }

    /// Keys expiry removed since the last call (when collecting).
    pub fn take_expired(&mut self) -> Vec<Bytes> {
        self.map.take_expired()
    }

    /// One bounded step of active expiry. Expired keys need no WATCH bump (a watcher
    /// checks the deadline it saw, see [`crate::watch`]) and no log record (records carry
    /// absolute deadlines, so replay drops them the same way).
    pub fn expire_step(&mut self, now: u64, budget: usize) -> ExpireStep {
        let mut step = self.map.expire_step(now, budget);
        // Over maxmemory, evict in bounded steps between I/O too (through `remove`).
        step.more |= crate::evict::background_step(self, now);
        step
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
