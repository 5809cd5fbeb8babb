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
//!   unless a reader still holds them ([`TtlMap::append`], [`TtlMap::setrange`]);
//! - each entry keeps a 24-bit access stamp for approximate LRU/LFU eviction (see
//!   `access.rs`) in bits it had spare, and the map keeps a running estimate of the memory
//!   it holds ([`TtlMap::used_bytes`]), so an owner can bound it by sampling entries
//!   ([`TtlMap::sample`], [`TtlMap::soonest`]) and removing the least useful.
//!
//! Stable slots also give SCAN its contract for free: a cursor is a slot number, a key
//! present for the whole scan keeps its slot, so it is returned exactly once.

pub mod access;
mod arena;
mod entry;
mod expiry;
mod snapshot;

use std::hash::BuildHasher;

use bytes::Bytes;
use hashbrown::HashTable;

pub use access::Access;
use arena::Arena;
pub use entry::{alloc_size, Owned, Stored, ValueRef};
use entry::{Entry, FAR, INLINE};
use expiry::{bucket_of, Buckets, NO_POS};

/// A value type an owner stores in the map besides byte strings (a hash, a list...): the
/// map knows nothing about it except how much heap memory it holds.
pub trait Object {
    /// Heap bytes the object holds beyond its own size, as the allocator sees them. Called
    /// before and after every edit, so it must be cheap (O(1)).
    fn heap_bytes(&self) -> usize;
}

/// The object type of a map that stores byte strings only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoObject {}

impl Object for NoObject {
    fn heap_bytes(&self) -> usize {
        0
    }
}

/// What [`TtlMap::edit_or_create`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum ObjectEdit<R> {
    /// No such key, and nothing to create it with.
    Absent,
    /// The key holds bytes: left alone.
    Bytes,
    /// The object was edited.
    Edited {
        /// What the edit returned.
        out: R,
        /// The object was created just now for this edit.
        created: bool,
    },
}

/// What [`TtlMap::expire_step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireStep {
    /// Keys removed in this step.
    pub expired: usize,
    /// Whether due keys remain (run another step soon).
    pub more: bool,
}

/// A live entry picked by [`TtlMap::sample`] or [`TtlMap::soonest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampled<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Its access stamp (see [`access`]).
    pub stamp: u32,
    /// Its deadline (Unix ms, 0 = none).
    pub deadline: u64,
}

/// What [`TtlMap::peek`] reports about a live key, without counting as an access.
#[derive(Debug, Clone, Copy)]
pub struct Peek<'a, O> {
    /// The value.
    pub value: Stored<'a, O>,
    /// The access stamp (see [`access`]).
    pub stamp: u32,
    /// Whether the value was edited in place (APPEND, SETRANGE) since it was stored.
    pub edited: bool,
    /// Estimated bytes the key costs: its entry, its share of the index, its heap blocks
    /// and its expiry listing.
    pub bytes: usize,
    /// Its deadline (Unix ms, 0 = none).
    pub deadline: u64,
}

/// Random probes per wanted sample before [`TtlMap::sample`] falls back to a walk.
const PROBES_PER_SAMPLE: usize = 8;
/// Slots the fallback walk of [`TtlMap::sample`] visits at most.
const SAMPLE_WALK: u32 = 4096;

/// A byte-string key space with millisecond deadlines. All times are Unix milliseconds
/// supplied by the caller, so the map itself never reads a clock.
pub struct TtlMap<O = NoObject> {
    index: HashTable<u32>,
    arena: Arena<O>,
    hasher: hashbrown::DefaultHashBuilder,
    buckets: Buckets,
    with_deadline: usize,
    expired_total: u64,
    /// Exact deadlines of entries whose deadline is `FAR` or beyond (after the year 10889):
    /// the entry keeps only 48 bits of deadline, so that its access stamp fits.
    far: hashbrown::HashMap<u32, u64>,
    /// Heap bytes the entries own (keys and values not stored inline), kept as entries
    /// change.
    heap_bytes: usize,
    /// How accesses update the entries' stamps.
    access: Access,
    /// State of the generator behind LFU's probabilistic increments.
    rng: u64,
    /// Keys removed by expiry since the last [`TtlMap::take_expired`], when asked for
    /// (keyspace notifications).
    expired_log: Option<Vec<Bytes>>,
    /// The snapshot being read, if any (see `snapshot.rs`).
    snap: Option<Box<snapshot::Snap<O>>>,
}

impl<O: Object> Default for TtlMap<O> {
    fn default() -> Self {
        Self::with_objects()
    }
}

impl TtlMap<NoObject> {
    /// An empty map of byte strings.
    pub fn new() -> Self {
        Self::with_objects()
    }
}

impl<O: Object> TtlMap<O> {
    /// An empty map that may also hold objects of type `O`, which must be at most 24 bytes
    /// (checked at compile time): an object with a short key is stored in the entry
    /// itself, so the entry stays 64 bytes and most objects cost no heap block of their
    /// own; box larger state inside `O`.
    pub fn with_objects() -> Self {
        const {
            assert!(
                std::mem::size_of::<O>() <= entry::OBJ_INLINE_SIZE,
                "TtlMap objects are at most 24 bytes: box larger state inside them"
            );
            assert!(
                std::mem::size_of::<Entry<O>>() == 64,
                "a TtlMap entry is 64 bytes: the object's alignment must not grow it"
            );
        };
        TtlMap {
            index: HashTable::new(),
            arena: Arena::default(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            buckets: Buckets::default(),
            with_deadline: 0,
            expired_total: 0,
            far: hashbrown::HashMap::new(),
            heap_bytes: 0,
            access: Access::Lru,
            rng: 0x9E37_79B9_7F4A_7C15,
            expired_log: None,
            snap: None,
        }
    }

    /// Record the keys expiry removes (lazily or actively) for [`TtlMap::take_expired`].
    pub fn log_expired(&mut self, on: bool) {
        match (on, self.expired_log.is_some()) {
            (true, false) => self.expired_log = Some(Vec::new()),
            (false, true) => self.expired_log = None,
            _ => {}
        }
    }

    /// The keys expiry removed since the last call (empty unless logging is on).
    pub fn take_expired(&mut self) -> Vec<Bytes> {
        self.expired_log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// How accesses are recorded from now on. Stamps recorded in another mode are read in
    /// the new one until keys are accessed again (as in Redis when the policy changes).
    pub fn set_access(&mut self, access: Access) {
        self.access = access;
    }

    /// How accesses are recorded.
    pub fn access(&self) -> Access {
        self.access
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: plenty for a probabilistic counter.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Record an access to `slot` at `now` in its stamp.
    fn touch(&mut self, slot: u32, now: u64) {
        let access = self.access;
        let rand = match access {
            Access::Lfu { .. } => self.next_rand(),
            Access::Lru => 0,
        };
        if let Some(e) = self.arena.get_mut(slot) {
            e.set_stamp(access::touched(access, e.stamp(), now, rand));
        }
    }

    /// The exact deadline of `slot`'s entry `e` (0 = none).
    fn deadline_at(&self, slot: u32, e: &Entry<O>) -> u64 {
        match e.deadline() {
            FAR => self.far.get(&slot).copied().unwrap_or(FAR),
            d => d,
        }
    }

    /// Whether `slot`'s entry `e` has expired at `now`.
    fn expired(&self, slot: u32, e: &Entry<O>, now: u64) -> bool {
        match e.deadline() {
            FAR => now >= FAR && self.deadline_at(slot, e) <= now,
            _ => e.is_expired(now),
        }
    }

    /// Keep the side table of far deadlines in step with `slot`'s new `deadline` (the
    /// entry itself already stores it, clamped to `FAR`).
    fn note_far(&mut self, slot: u32, deadline: u64) {
        if deadline >= FAR {
            self.far.insert(slot, deadline);
        } else if !self.far.is_empty() {
            self.far.remove(&slot);
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

    /// Whether [`TtlMap::prefetch`] can pay: not for a map small enough to stay in a
    /// core's cache (16k entries: 1 MiB of entries, the L2 size here), where lookups rarely
    /// miss and the look-ahead would only hash every key twice.
    pub fn prefetch_pays(&self) -> bool {
        self.index.len() >= 16 * 1024
    }

    /// Warm the cache for `keys` before they are used: look them all up (index, then
    /// entry) in tight loops, where the processor overlaps their cache misses, which the
    /// work between one request's lookup and the next would serialize. Changes nothing.
    pub fn prefetch<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        // Two passes, 16 keys at a time: first the index (the first candidate slot is
        // enough: a wrong one only wastes a load), then the entries, whose loads are then
        // all independent of each other.
        const BATCH: usize = 16;
        let mut slots = [0u32; BATCH];
        let mut keys = keys.into_iter().peekable();
        let mut acc = 0u64;
        while keys.peek().is_some() {
            let mut n = 0;
            for key in keys.by_ref().take(BATCH) {
                if let Some(&slot) = self.index.find(self.hash(key), |_| true) {
                    slots[n] = slot;
                    n += 1;
                }
            }
            for &slot in &slots[..n] {
                if let Some(e) = self.arena.get(slot) {
                    acc ^= e.warm();
                }
            }
        }
        std::hint::black_box(acc);
    }

    /// Find a live key, removing it first if its deadline passed (lazy expiry).
    fn find_live(&mut self, key: &[u8], now: u64) -> Option<u32> {
        let slot = self.find(key)?;
        let expired = self
            .arena
            .get(slot)
            .is_some_and(|e| self.expired(slot, e, now));
        if expired {
            let h = self.hash(key);
            self.remove_slot(h, slot);
            self.expired_total += 1;
            if let Some(log) = self.expired_log.as_mut() {
                log.push(Bytes::copy_from_slice(key));
            }
            return None;
        }
        Some(slot)
    }

    fn remove_slot(&mut self, h: u64, slot: u32) -> Option<Entry<O>> {
        self.snapshot_keep(slot);
        if let Ok(occ) = self.index.find_entry(h, |&s| s == slot) {
            occ.remove();
        }
        let old = self
            .arena
            .get(slot)
            .map_or(0, |e| self.deadline_at(slot, e));
        self.note_deadline_change(slot, old, 0);
        self.note_far(slot, 0);
        let e = self.arena.remove(slot)?;
        self.heap_bytes = self.heap_bytes.saturating_sub(e.heap_size());
        Some(e)
    }

    /// The value of a live key (an access: updates its stamp).
    pub fn get(&mut self, key: &[u8], now: u64) -> Option<Stored<'_, O>> {
        let slot = self.find_live(key, now)?;
        self.touch(slot, now);
        self.arena.get(slot).map(|e| e.value())
    }

    /// The value and deadline (0 = none) of a live key (an access: updates its stamp).
    pub fn get_with_deadline(&mut self, key: &[u8], now: u64) -> Option<(Stored<'_, O>, u64)> {
        let slot = self.find_live(key, now)?;
        self.touch(slot, now);
        let e = self.arena.get(slot)?;
        Some((e.value(), self.deadline_at(slot, e)))
    }

    /// A live key's value, stamp, edit flag and memory, without lazy expiry and without
    /// counting as an access (for OBJECT and MEMORY USAGE). An expired key is absent.
    pub fn peek(&self, key: &[u8], now: u64) -> Option<Peek<'_, O>> {
        let slot = self.find(key)?;
        let e = self.arena.get(slot)?;
        if self.expired(slot, e, now) {
            return None;
        }
        let deadline = self.deadline_at(slot, e);
        let index_share = (std::mem::size_of::<u32>() + 1) * 8 / 7 + 1;
        let listing = if deadline != 0 {
            std::mem::size_of::<u32>()
        } else {
            0
        };
        Some(Peek {
            value: e.value(),
            stamp: e.stamp(),
            edited: e.edited(),
            bytes: std::mem::size_of::<Entry<O>>() + index_share + e.heap_size() + listing,
            deadline,
        })
    }

    /// Whether a live key exists.
    pub fn contains(&mut self, key: &[u8], now: u64) -> bool {
        self.find_live(key, now).is_some()
    }

    /// The deadline of a live key: `None` if absent, `Some(0)` if it has none.
    pub fn deadline(&mut self, key: &[u8], now: u64) -> Option<u64> {
        let slot = self.find_live(key, now)?;
        self.arena.get(slot).map(|e| self.deadline_at(slot, e))
    }

    /// Store `value` under `key` with `deadline` (Unix ms, 0 = none), replacing any
    /// previous value. Returns whether a live key was replaced.
    ///
    /// A new key gets a fresh stamp; a replaced one is stamped now in LRU mode and keeps
    /// its counter in LFU mode (as Redis's overwrite keeps the object's frequency; the
    /// caller's lookup of the old value is the access that counts).
    pub fn insert(&mut self, key: &[u8], value: ValueRef<'_>, deadline: u64, now: u64) -> bool {
        self.insert_entry(key, Entry::new(key, value, deadline), deadline, now)
    }

    /// Store an object under `key` with `deadline`, replacing any previous value (see
    /// [`TtlMap::insert`]). Returns whether a live key was replaced.
    pub fn insert_object(&mut self, key: &[u8], obj: O, deadline: u64, now: u64) -> bool {
        self.insert_entry(key, Entry::new_object(key, obj, deadline), deadline, now)
    }

    /// Run `f` on the object a live key holds (an access: updates its stamp), keeping the
    /// memory estimate in step with what `f` changed. `None` if the key is absent or holds
    /// bytes.
    pub fn edit_object<R>(
        &mut self,
        key: &[u8],
        now: u64,
        f: impl FnOnce(&mut O) -> R,
    ) -> Option<R> {
        let slot = self.find_live(key, now)?;
        self.touch(slot, now);
        self.snapshot_keep(slot);
        let e = self.arena.get_mut(slot)?;
        let before = e.heap_size();
        let out = f(e.object_mut()?);
        let after = e.heap_size();
        self.heap_bytes = self.heap_bytes.saturating_sub(before) + after;
        Some(out)
    }

    /// Edit the object at `key` in one lookup, creating it with `create` first if the key
    /// is absent (see [`ObjectEdit`]). An access, like [`TtlMap::edit_object`], with the same
    /// memory accounting.
    pub fn edit_or_create<R>(
        &mut self,
        key: &[u8],
        now: u64,
        create: Option<&dyn Fn() -> O>,
        f: impl FnOnce(&mut O) -> R,
    ) -> ObjectEdit<R> {
        let (slot, created) = match self.find_live(key, now) {
            Some(slot) => (slot, false),
            None => match create {
                None => return ObjectEdit::Absent,
                Some(new) => {
                    let entry = Entry::new_object(key, new(), 0);
                    (self.insert_new_entry(key, entry, 0, now), true)
                }
            },
        };
        if !created {
            self.touch(slot, now);
            self.snapshot_keep(slot);
        }
        let Some(e) = self.arena.get_mut(slot) else {
            return ObjectEdit::Absent;
        };
        let before = e.heap_size();
        let Some(obj) = e.object_mut() else {
            return ObjectEdit::Bytes;
        };
        let out = f(obj);
        let after = e.heap_size();
        self.heap_bytes = self.heap_bytes.saturating_sub(before) + after;
        ObjectEdit::Edited { out, created }
    }

    fn insert_entry(&mut self, key: &[u8], entry: Entry<O>, deadline: u64, now: u64) -> bool {
        match self.find_live(key, now) {
            Some(slot) => {
                self.replace_entry(slot, entry, deadline, now);
                true
            }
            None => {
                self.insert_new_entry(key, entry, deadline, now);
                false
            }
        }
    }

    /// Add an entry for a key known to be absent; returns its slot.
    fn insert_new_entry(
        &mut self,
        key: &[u8],
        mut entry: Entry<O>,
        deadline: u64,
        now: u64,
    ) -> u32 {
        self.heap_bytes += entry.heap_size();
        entry.set_stamp(access::initial(self.access, now));
        let slot = self.arena.insert(entry);
        self.snapshot_filled(slot);
        let h = self.hash(key);
        let arena = &self.arena;
        let hasher = &self.hasher;
        self.index.insert_unique(h, slot, |&s| {
            arena.get(s).map_or(0, |e| hasher.hash_one(e.key()))
        });
        self.note_far(slot, deadline);
        self.note_deadline_change(slot, 0, deadline);
        slot
    }

    /// Replace the live entry at `slot` (its key unchanged).
    fn replace_entry(&mut self, slot: u32, mut entry: Entry<O>, deadline: u64, now: u64) {
        self.snapshot_keep(slot);
        self.heap_bytes += entry.heap_size();
        let (old_deadline, pos, stamp, old_heap) =
            self.arena.get(slot).map_or((0, NO_POS, 0, 0), |e| {
                (
                    self.deadline_at(slot, e),
                    e.bucket_pos(),
                    e.stamp(),
                    e.heap_size(),
                )
            });
        self.heap_bytes = self.heap_bytes.saturating_sub(old_heap);
        entry.set_bucket_pos(pos);
        entry.set_stamp(match self.access {
            Access::Lru => access::lru_clock(now),
            Access::Lfu { .. } => stamp,
        });
        self.arena.replace(slot, entry);
        self.note_far(slot, deadline);
        self.note_deadline_change(slot, old_deadline, deadline);
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
        self.snapshot_keep(slot);
        let old = self
            .arena
            .get(slot)
            .map_or(0, |e| self.deadline_at(slot, e));
        if let Some(e) = self.arena.get_mut(slot) {
            e.set_deadline(deadline);
        }
        self.note_far(slot, deadline);
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
            self.snapshot_keep(slot);
            let Some(e) = self.arena.get_mut(slot) else {
                return 0;
            };
            let before = e.heap_size();
            let len = e.write_at(offset, data);
            self.heap_bytes = self.heap_bytes.saturating_sub(before) + e.heap_size();
            return len;
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
        if offset.is_some() {
            // A string SETRANGE creates is built in place: Redis reports it as raw.
            if let Some(e) = self.find(key).and_then(|slot| self.arena.get_mut(slot)) {
                e.mark_edited();
            }
        }
        len
    }

    /// Remove a live key, returning its value (as `Bytes`) and deadline.
    pub fn remove(&mut self, key: &[u8], now: u64) -> Option<(Owned<O>, u64)> {
        let slot = self.find_live(key, now)?;
        let h = self.hash(key);
        let deadline = self
            .arena
            .get(slot)
            .map_or(0, |e| self.deadline_at(slot, e));
        self.remove_slot(h, slot)
            .map(|e| (e.into_owned(), deadline))
    }

    /// Remove every key (a snapshot in progress takes over the entries it has not handed
    /// out yet, without a copy).
    pub fn clear(&mut self) {
        self.snapshot_take_all();
        *self = TtlMap {
            expired_total: self.expired_total,
            access: self.access,
            rng: self.rng,
            snap: self.snap.take(),
            ..TtlMap::with_objects()
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
                Some(e) if self.expired(slot, e, now) => {
                    if let Some(log) = self.expired_log.as_mut() {
                        log.push(Bytes::copy_from_slice(e.key()));
                    }
                    self.hash(e.key())
                }
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
        mut f: impl FnMut(&[u8], Stored<'_, O>),
    ) -> u64 {
        let end = u64::from(self.arena.slots());
        let mut slot = cursor;
        let mut visited = 0;
        while slot < end && visited < count.max(1) {
            if let Some(e) = self.arena.get(slot as u32) {
                if !self.expired(slot as u32, e, now) {
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
                if !self.expired(slot, e, now) {
                    return Some(e.key().to_vec());
                }
            }
        }
        let start = (rand() % u64::from(slots)) as u32;
        (0..slots).map(|i| (start + i) % slots).find_map(|slot| {
            self.arena
                .get(slot)
                .filter(|e| !self.expired(slot, e, now))
                .map(|e| e.key().to_vec())
        })
    }

    /// The sample view of `slot`, if it holds a live entry (with a deadline, if
    /// `volatile`).
    fn sampled(&self, slot: u32, volatile: bool, now: u64) -> Option<Sampled<'_>> {
        let e = self.arena.get(slot)?;
        if (volatile && e.deadline() == 0) || self.expired(slot, e, now) {
            return None;
        }
        Some(Sampled {
            key: e.key(),
            stamp: e.stamp(),
            deadline: self.deadline_at(slot, e),
        })
    }

    /// Pass up to `count` live entries picked at random to `f` (with `volatile`, only keys
    /// with a deadline), for eviction by sampling; returns how many were passed. The same
    /// entry may come twice. Bounded work: `count * 8` random slot probes, then, if none
    /// was found (a sparse arena after mass deletion), a walk of at most 4096 slots from a
    /// random point; for `volatile`, the soonest-expiring keys as a last resort. Nothing
    /// found while keys exist is possible only in a very sparse arena; the caller may
    /// simply try again.
    pub fn sample(
        &self,
        count: usize,
        volatile: bool,
        now: u64,
        mut rand: impl FnMut() -> u64,
        mut f: impl FnMut(Sampled<'_>),
    ) -> usize {
        let slots = self.arena.slots();
        let candidates = if volatile {
            self.with_deadline
        } else {
            self.len()
        };
        if slots == 0 || candidates == 0 || count == 0 {
            return 0;
        }
        let mut found = 0;
        for _ in 0..count.saturating_mul(PROBES_PER_SAMPLE) {
            let slot = (rand() % u64::from(slots)) as u32;
            if let Some(s) = self.sampled(slot, volatile, now) {
                f(s);
                found += 1;
                if found == count {
                    return found;
                }
            }
        }
        if found > 0 {
            return found;
        }
        let start = (rand() % u64::from(slots)) as u32;
        for i in 0..slots.min(SAMPLE_WALK) {
            if let Some(s) = self.sampled((start + i) % slots, volatile, now) {
                f(s);
                found += 1;
                if found == count {
                    return found;
                }
            }
        }
        if found == 0 && volatile {
            found = self.soonest(count, f);
        }
        found
    }

    /// Pass up to `count` of the keys that expire soonest (listed in the earliest expiry
    /// bucket, which may also hold keys already expired but not yet reclaimed) to `f`;
    /// returns how many. O(log buckets + count).
    pub fn soonest(&self, count: usize, mut f: impl FnMut(Sampled<'_>)) -> usize {
        let mut found = 0;
        for slot in self.buckets.soonest(count) {
            if let Some(e) = self.arena.get(slot) {
                f(Sampled {
                    key: e.key(),
                    stamp: e.stamp(),
                    deadline: self.deadline_at(slot, e),
                });
                found += 1;
            }
        }
        found
    }

    /// Bytes of memory this map holds for its structure and inline data (heap values and
    /// long keys not included), for memory reports. O(1).
    pub fn structure_bytes(&self) -> usize {
        // hashbrown keeps capacity at 7/8 of its buckets; each bucket is a u32 slot and a
        // control byte.
        let index = self.index.capacity() * 8 / 7 * (std::mem::size_of::<u32>() + 1);
        let far = self.far.capacity() * (std::mem::size_of::<(u32, u64)>() + 1);
        self.arena.bytes() + index + self.buckets.bytes() + far
    }

    /// Heap bytes owned by entries: keys and values not stored inline, as the allocator
    /// rounds them. O(1): kept up to date as entries change.
    pub fn heap_bytes(&self) -> usize {
        self.heap_bytes
    }

    /// The map's estimate of the memory it holds: [`TtlMap::structure_bytes`] plus
    /// [`TtlMap::heap_bytes`]. O(1). Values stored as slices of a larger shared buffer
    /// (zero-copy big arguments) count only their own length.
    pub fn used_bytes(&self) -> usize {
        self.structure_bytes() + self.heap_bytes
    }
}

/// Largest key + value stored inline without a heap allocation.
pub const INLINE_CAPACITY: usize = INLINE;

#[cfg(test)]
mod tests;
