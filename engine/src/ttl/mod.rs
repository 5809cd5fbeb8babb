//! The per-shard TTL map: a shard's slice of a byte-string key space, with expiry.
//!
//! Layout, chosen for bytes per key:
//! - entries live in a chunked arena with stable slot numbers (no copying on growth, no
//!   doubling slack), and the hash index stores only a `u32` slot per key;
//! - a key and value that fit 48 bytes together are stored inline in the entry (no heap
//!   allocation); larger ones as a boxed key and a refcounted `Bytes` value, so a reader
//!   can send it without copying;
//! - the deadline is an absolute Unix time in milliseconds inside the entry (0 = none);
//! - keys with a deadline are also listed, exactly once, in 100 ms expiry buckets (4 bytes
//!   per key), which active expiry drains in bounded steps; a deadline change moves the
//!   listing in O(log buckets), so sliding TTLs cost no memory (see `expiry.rs`);
//! - values grown by APPEND/SETRANGE get spare capacity and are then edited in place
//!   unless a reader still holds them ([`TtlMap::append`], [`TtlMap::setrange`]).
//!
//! Stable slots also give SCAN its contract for free: a cursor is a slot number, a key
//! present for the whole scan keeps its slot, so it is returned exactly once.

mod arena;
mod entry;
mod expiry;

use std::hash::BuildHasher;

use bytes::Bytes;
use hashbrown::HashTable;

use arena::Arena;
pub use entry::ValueRef;
use entry::{Entry, INLINE};
use expiry::{bucket_of, Buckets, NO_POS};

/// What [`TtlMap::expire_step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireStep {
    /// Keys removed in this step.
    pub expired: usize,
    /// Whether due keys remain (run another step soon).
    pub more: bool,
}

/// A byte-string key space with millisecond deadlines. All times are Unix milliseconds
/// supplied by the caller, so the map itself never reads a clock.
pub struct TtlMap {
    index: HashTable<u32>,
    arena: Arena,
    hasher: hashbrown::DefaultHashBuilder,
    buckets: Buckets,
    with_deadline: usize,
    expired_total: u64,
}

impl Default for TtlMap {
    fn default() -> Self {
        Self::new()
    }
}

impl TtlMap {
    /// An empty map.
    pub fn new() -> Self {
        TtlMap {
            index: HashTable::new(),
            arena: Arena::default(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            buckets: Buckets::default(),
            with_deadline: 0,
            expired_total: 0,
        }
    }

    /// Keys stored, including expired ones not yet reclaimed.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Keys that carry a deadline.
    pub fn with_deadline(&self) -> usize {
        self.with_deadline
    }

    /// Keys removed because they expired (lazily or actively), since creation.
    pub fn expired_total(&self) -> u64 {
        self.expired_total
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn find(&self, key: &[u8]) -> Option<u32> {
        let h = self.hash(key);
        let arena = &self.arena;
        self.index
            .find(h, |&slot| arena.get(slot).is_some_and(|e| e.key() == key))
            .copied()
    }

    /// Find a live key, removing it first if its deadline passed (lazy expiry).
    fn find_live(&mut self, key: &[u8], now: u64) -> Option<u32> {
        let slot = self.find(key)?;
        let expired = self.arena.get(slot).is_some_and(|e| e.is_expired(now));
        if expired {
            let h = self.hash(key);
            self.remove_slot(h, slot);
            self.expired_total += 1;
            return None;
        }
        Some(slot)
    }

    fn remove_slot(&mut self, h: u64, slot: u32) -> Option<Entry> {
        if let Ok(occ) = self.index.find_entry(h, |&s| s == slot) {
            occ.remove();
        }
        let old = self.arena.get(slot).map_or(0, |e| e.deadline());
        self.note_deadline_change(slot, old, 0);
        self.arena.remove(slot)
    }

    /// The value of a live key.
    pub fn get(&mut self, key: &[u8], now: u64) -> Option<ValueRef<'_>> {
        let slot = self.find_live(key, now)?;
        self.arena.get(slot).map(|e| e.value())
    }

    /// The value and deadline (0 = none) of a live key.
    pub fn get_with_deadline(&mut self, key: &[u8], now: u64) -> Option<(ValueRef<'_>, u64)> {
        let slot = self.find_live(key, now)?;
        self.arena.get(slot).map(|e| (e.value(), e.deadline()))
    }

    /// Whether a live key exists.
    pub fn contains(&mut self, key: &[u8], now: u64) -> bool {
        self.find_live(key, now).is_some()
    }

    /// The deadline of a live key: `None` if absent, `Some(0)` if it has none.
    pub fn deadline(&mut self, key: &[u8], now: u64) -> Option<u64> {
        let slot = self.find_live(key, now)?;
        self.arena.get(slot).map(|e| e.deadline())
    }

    /// Store `value` under `key` with `deadline` (Unix ms, 0 = none), replacing any
    /// previous value. Returns whether a live key was replaced.
    pub fn insert(&mut self, key: &[u8], value: ValueRef<'_>, deadline: u64, now: u64) -> bool {
        let existed = self.find_live(key, now);
        let entry = Entry::new(key, value, deadline);
        match existed {
            Some(slot) => {
                let (old_deadline, pos) = self
                    .arena
                    .get(slot)
                    .map_or((0, NO_POS), |e| (e.deadline(), e.bucket_pos()));
                let mut entry = entry;
                entry.set_bucket_pos(pos);
                self.arena.replace(slot, entry);
                self.note_deadline_change(slot, old_deadline, deadline);
                true
            }
            None => {
                let slot = self.arena.insert(entry);
                let h = self.hash(key);
                let arena = &self.arena;
                let hasher = &self.hasher;
                self.index.insert_unique(h, slot, |&s| {
                    arena.get(s).map_or(0, |e| hasher.hash_one(e.key()))
                });
                self.note_deadline_change(slot, 0, deadline);
                false
            }
        }
    }

    /// Keep the expiry buckets exact after `slot`'s deadline changed from `old` to `new`
    /// (0 = none); the entry's deadline is already `new` (or the entry is about to go).
    ///
    /// A change within the same 100 ms bucket costs nothing: the listing stays valid, since
    /// a bucket is drained only once its whole window has passed. Otherwise the listing is
    /// moved: `swap_remove` from the old bucket at the position the entry remembers (the
    /// slot that filled the hole gets its position updated), push onto the new one. So each
    /// key with a deadline is listed exactly once and a sliding TTL costs constant memory,
    /// at O(log buckets) per change.
    fn note_deadline_change(&mut self, slot: u32, old: u64, new: u64) {
        match (old != 0, new != 0) {
            (false, true) => self.with_deadline += 1,
            (true, false) => self.with_deadline -= 1,
            _ => {}
        }
        if old != 0 && new != 0 && bucket_of(old) == bucket_of(new) {
            return;
        }
        if old != 0 {
            let pos = self.arena.get(slot).map_or(NO_POS, |e| e.bucket_pos());
            if let Some(moved) = self.buckets.remove(old, slot, pos) {
                if let Some(e) = self.arena.get_mut(moved) {
                    e.set_bucket_pos(pos);
                }
            }
        }
        let pos = if new != 0 {
            self.buckets.insert(new, slot)
        } else {
            NO_POS
        };
        if let Some(e) = self.arena.get_mut(slot) {
            e.set_bucket_pos(pos);
        }
    }

    /// Change the deadline of a live key (0 removes it). Returns whether the key exists.
    pub fn set_deadline(&mut self, key: &[u8], deadline: u64, now: u64) -> bool {
        let Some(slot) = self.find_live(key, now) else {
            return false;
        };
        let old = self.arena.get(slot).map_or(0, |e| e.deadline());
        if let Some(e) = self.arena.get_mut(slot) {
            e.set_deadline(deadline);
        }
        self.note_deadline_change(slot, old, deadline);
        true
    }

    /// Append `data` to a live key's value, or store it as a new key without a deadline.
    /// Returns the new length. The value is grown in place with spare capacity, so a run of
    /// appends costs amortised O(appended bytes), not O(value) each; a value a reader still
    /// holds (from [`ValueRef::to_bytes`]) is copied rather than changed. The caller bounds
    /// the resulting length.
    pub fn append(&mut self, key: &[u8], data: &[u8], now: u64) -> usize {
        self.write_at(key, None, data, now)
    }

    /// Overwrite a live key's value from `offset` with `data`, zero-padding and growing it
    /// as needed, or create the key (without a deadline, zero-padded up to `offset`).
    /// Returns the new length. Edits in place like [`TtlMap::append`]; the caller bounds
    /// `offset + data.len()`.
    pub fn setrange(&mut self, key: &[u8], offset: usize, data: &[u8], now: u64) -> usize {
        self.write_at(key, Some(offset), data, now)
    }

    fn write_at(&mut self, key: &[u8], offset: Option<usize>, data: &[u8], now: u64) -> usize {
        if let Some(slot) = self.find_live(key, now) {
            return self
                .arena
                .get_mut(slot)
                .map_or(0, |e| e.write_at(offset, data));
        }
        // A new key gets exactly its size, like a SET: no slack until it is edited again.
        let at = offset.unwrap_or(0);
        let len = at.saturating_add(data.len());
        if key.len() + len <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[at..len].copy_from_slice(data);
            self.insert(key, ValueRef::Inline(&buf[..len]), 0, now);
        } else {
            let mut v = Vec::with_capacity(len);
            v.resize(at, 0);
            v.extend_from_slice(data);
            let v = Bytes::from(v);
            self.insert(key, ValueRef::Shared(&v), 0, now);
        }
        len
    }

    /// Remove a live key, returning its value (as `Bytes`) and deadline.
    pub fn remove(&mut self, key: &[u8], now: u64) -> Option<(Bytes, u64)> {
        let slot = self.find_live(key, now)?;
        let h = self.hash(key);
        self.remove_slot(h, slot)
            .map(|e| (e.value().to_bytes(), e.deadline()))
    }

    /// Remove every key.
    pub fn clear(&mut self) {
        *self = TtlMap {
            expired_total: self.expired_total,
            ..TtlMap::new()
        };
    }

    /// Remove keys whose deadline passed, at most `budget` of them.
    pub fn expire_step(&mut self, now: u64, budget: usize) -> ExpireStep {
        let mut expired = 0;
        let mut work = 0;
        while work < budget {
            let Some(slot) = self.buckets.peek_due(now) else {
                return ExpireStep {
                    expired,
                    more: false,
                };
            };
            work += 1;
            let h = match self.arena.get(slot) {
                Some(e) if e.is_expired(now) => self.hash(e.key()),
                _ => {
                    // Cannot happen while the buckets are exact (every deadline in a due
                    // bucket has passed); drop the listing rather than loop on it.
                    debug_assert!(false, "slot {slot} listed under a wrong bucket");
                    self.buckets.pop_due(now);
                    continue;
                }
            };
            // Unlists the key too (the listing is the bucket's last: a plain pop).
            if self.remove_slot(h, slot).is_some() {
                expired += 1;
                self.expired_total += 1;
            }
        }
        ExpireStep {
            expired,
            more: self.buckets.has_due(now),
        }
    }

    /// The earliest bucket deadline still pending (a hint for when to step next).
    pub fn next_deadline(&self) -> Option<u64> {
        self.buckets.next_due()
    }

    /// Visit up to `count` slots from `cursor`, calling `f` with each live key; returns the
    /// next cursor (0 once the end is reached). Expired keys are skipped.
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        now: u64,
        mut f: impl FnMut(&[u8], ValueRef<'_>),
    ) -> u64 {
        let end = u64::from(self.arena.slots());
        let mut slot = cursor;
        let mut visited = 0;
        while slot < end && visited < count.max(1) {
            if let Some(e) = self.arena.get(slot as u32) {
                if !e.is_expired(now) {
                    f(e.key(), e.value());
                }
                visited += 1;
            }
            slot += 1;
        }
        if slot >= end {
            0
        } else {
            slot
        }
    }

    /// A live key chosen at random with `rand` (a source of random u64s), if any.
    pub fn random_key(&mut self, now: u64, mut rand: impl FnMut() -> u64) -> Option<Vec<u8>> {
        let slots = self.arena.slots();
        if slots == 0 || self.is_empty() {
            return None;
        }
        // Probe random slots; the arena is dense unless many keys were deleted, so a few
        // probes find one. Fall back to a linear walk from a random point.
        for _ in 0..64 {
            let slot = (rand() % u64::from(slots)) as u32;
            if let Some(e) = self.arena.get(slot) {
                if !e.is_expired(now) {
                    return Some(e.key().to_vec());
                }
            }
        }
        let start = (rand() % u64::from(slots)) as u32;
        (0..slots).map(|i| (start + i) % slots).find_map(|slot| {
            self.arena
                .get(slot)
                .filter(|e| !e.is_expired(now))
                .map(|e| e.key().to_vec())
        })
    }

    /// Bytes of memory this map holds for its structure and inline data (heap values and
    /// long keys not included), for memory reports.
    pub fn structure_bytes(&self) -> usize {
        self.arena.bytes()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.buckets.bytes()
    }
}

/// Largest key + value stored inline without a heap allocation.
pub const INLINE_CAPACITY: usize = INLINE;

#[cfg(test)]
mod tests;
