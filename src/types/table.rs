//! `Table`: a compact map from byte-string field to byte-string value.
//!
//! Used for Redis hashes (and, with empty values, for sets in "hashtable" encoding).
//!
//! # Layout
//!
//! * `arena: Vec<u8>` holds every record back to back as
//!   `[varint flen][field][varint vlen][value]` (LEB128 varints, 1 byte below 128).
//! * `offsets: Vec<u32>` is the dense array of record offsets (dense position `0..len`).
//! * `index: HashTable<u32>` maps a field to its dense position (4 bytes + 1 control byte
//!   per bucket). Hashes are never stored: they are recomputed from the arena when the
//!   table grows. Fields are hashed with a per-table `DefaultHashBuilder` (foldhash with a
//!   random per-instance seed), so chosen fields cannot target a known hash function.
//!
//! For a 10-byte field and a 10-byte value this costs 22 bytes of record, 4 bytes of offset
//! and 5/load-factor bytes of index (≈ 6–11), i.e. ≈ 32–40 bytes per entry instead of the
//! ≈ 70–90 of Redis's dict. The arena and offsets grow by 1.5x while small and 1.25x once
//! above 1 MiB to keep capacity slack low.
//!
//! # Updates and removal
//!
//! * Replacing a value overwrites it in place when the new `[vlen][value]` fits into the old
//!   one (the leftover bytes become garbage); otherwise a new record is appended and the old
//!   one becomes garbage. A record at the very end of the arena is truncated instead.
//! * Indexed removal swaps the last dense slot into the hole (fixing the moved entry in the
//!   index). Dead records stay in the arena as garbage; when garbage exceeds the live bytes
//!   (and a small minimum), the arena is rebuilt in dense order. Dense positions do not change
//!   during compaction, so the index stays valid. Offsets and index shrink when 3/4 empty.
//! * Offsets are `u32`: an insertion that would grow the arena past `u32::MAX` bytes (even
//!   after compaction) fails with [`TooLarge`] and leaves the table unchanged.
//!
//! # Compact mode (Redis "listpack")
//!
//! A table made by [`Table::new`] starts compact: there is no index (lookups scan at most
//! `max_entries` records linearly), iteration is in insertion order and removal shifts
//! instead of swapping, so replies match Redis's listpack order exactly. The first insert
//! that would exceed `max_entries` entries, or whose field or value is longer than
//! `max_len`, converts the table to the indexed form for good (like Redis, never back).
//! The dense order is kept on conversion; after that, removals reorder entries.
//!
//! # SCAN
//!
//! Indexed tables are scanned from the highest dense position down; a cursor `c != 0`
//! means "continue below position `c`". Swap-removal only moves the last element (already
//! visited, or still below the cursor) and insertions append, so everything present for the
//! whole scan is visited at least once. Compact tables return everything in one call.

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::fmt;
use std::hash::BuildHasher;

/// The arena may not grow beyond this many bytes (offsets are `u32`).
const ARENA_LIMIT: usize = u32::MAX as usize;
/// Do not compact for less garbage than this.
const MIN_GARBAGE: usize = 64;
/// Version byte of the serialized form.
const FORMAT_VERSION: u8 = 1;
const FLAG_COMPACT: u8 = 1;

/// The table (its arena) would exceed `u32::MAX` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("table too large")
    }
}

impl std::error::Error for TooLarge {}

// ---------------------------------------------------------------------------------------
// Varints (LEB128).

/// Number of bytes `put_varint` writes for `v`.
#[inline]
pub(super) fn varint_len(v: usize) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v != 0 {
        n += 1;
        v >>= 7;
    }
    n
}

#[inline]
pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint that this module wrote itself (trusted; panics only on a broken invariant).
#[inline]
fn read_varint(buf: &[u8], pos: usize) -> (usize, usize) {
    let b = buf[pos];
    if b < 0x80 {
        return (b as usize, pos + 1);
    }
    let mut v = (b & 0x7f) as usize;
    let mut shift = 7;
    let mut p = pos + 1;
    loop {
        let b = buf[p];
        p += 1;
        v |= ((b & 0x7f) as usize) << shift;
        if b < 0x80 {
            return (v, p);
        }
        shift += 7;
    }
}

/// Reads a varint from untrusted input; `None` when truncated or longer than 64 bits.
pub(super) fn read_varint_checked(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Reads a length prefix followed by that many bytes from untrusted input.
fn read_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(read_varint_checked(buf, pos)?).ok()?;
    let end = pos.checked_add(len)?;
    let s = buf.get(*pos..end)?;
    *pos = end;
    Some(s)
}

/// Encoded size of a record.
#[inline]
fn record_len(flen: usize, vlen: usize) -> usize {
    varint_len(flen)
        .saturating_add(flen)
        .saturating_add(varint_len(vlen))
        .saturating_add(vlen)
}

/// Grows `v` so that `additional` more elements fit: 1.5x while below 1 MiB, 1.25x above.
fn grow<T>(v: &mut Vec<T>, additional: usize) {
    let len = v.len();
    let cap = v.capacity();
    let want = len.saturating_add(additional);
    if want <= cap {
        return;
    }
    let bytes = cap.saturating_mul(std::mem::size_of::<T>().max(1));
    let step = if bytes < (1 << 20) { cap / 2 } else { cap / 4 };
    let min = (16 / std::mem::size_of::<T>().max(1)).max(1);
    let target = want.max(cap.saturating_add(step)).max(min);
    v.reserve_exact(target - len);
}

// ---------------------------------------------------------------------------------------
// Store: arena + dense offsets, no index.

#[derive(Clone, Default)]
struct Store {
    arena: Vec<u8>,
    offsets: Vec<u32>,
    /// Dead bytes in `arena`.
    garbage: usize,
}

impl Store {
    #[inline]
    fn len(&self) -> usize {
        self.offsets.len()
    }

    #[inline]
    fn field(&self, i: usize) -> &[u8] {
        let off = self.offsets[i] as usize;
        let (flen, p) = read_varint(&self.arena, off);
        &self.arena[p..p + flen]
    }

    #[inline]
    fn entry(&self, i: usize) -> (&[u8], &[u8]) {
        let off = self.offsets[i] as usize;
        let (flen, p) = read_varint(&self.arena, off);
        let field = &self.arena[p..p + flen];
        let (vlen, q) = read_varint(&self.arena, p + flen);
        (field, &self.arena[q..q + vlen])
    }

    /// End of the record starting at `off`.
    #[inline]
    fn record_end(&self, off: usize) -> usize {
        let (flen, p) = read_varint(&self.arena, off);
        let (vlen, q) = read_varint(&self.arena, p + flen);
        q + vlen
    }

    /// Makes room for `need` more arena bytes, compacting if that avoids the limit.
    fn ensure_room(&mut self, need: usize, limit: usize) -> Result<(), TooLarge> {
        if self.arena.len().saturating_add(need) > limit {
            if self.garbage > 0 {
                self.compact();
            }
            if self.arena.len().saturating_add(need) > limit {
                return Err(TooLarge);
            }
        }
        grow(&mut self.arena, need);
        Ok(())
    }

    fn write_record(&mut self, field: &[u8], value: &[u8]) {
        put_varint(&mut self.arena, field.len() as u64);
        self.arena.extend_from_slice(field);
        put_varint(&mut self.arena, value.len() as u64);
        self.arena.extend_from_slice(value);
    }

    /// Appends a new entry; returns its dense position.
    fn push(&mut self, field: &[u8], value: &[u8], limit: usize) -> Result<usize, TooLarge> {
        self.ensure_room(record_len(field.len(), value.len()), limit)?;
        let off = self.arena.len() as u32;
        self.write_record(field, value);
        grow(&mut self.offsets, 1);
        self.offsets.push(off);
        Ok(self.offsets.len() - 1)
    }

    /// Marks the record at `off` dead (truncating it if it ends the arena).
    fn drop_record(&mut self, off: usize) {
        let end = self.record_end(off);
        if end == self.arena.len() {
            self.arena.truncate(off);
        } else {
            self.garbage += end - off;
        }
    }

    /// Replaces the value of entry `i` (whose field is `field`).
    fn replace_value(
        &mut self,
        i: usize,
        field: &[u8],
        value: &[u8],
        limit: usize,
    ) -> Result<(), TooLarge> {
        let off = self.offsets[i] as usize;
        let (flen, p) = read_varint(&self.arena, off);
        let vstart = p + flen;
        let end = self.record_end(off);
        let new_tail = varint_len(value.len()) + value.len();
        if vstart + new_tail <= end {
            // In place; the leftover becomes garbage (skipped by compaction).
            let mut tail = Vec::with_capacity(varint_len(value.len()));
            put_varint(&mut tail, value.len() as u64);
            self.arena[vstart..vstart + tail.len()].copy_from_slice(&tail);
            let vpos = vstart + tail.len();
            self.arena[vpos..vpos + value.len()].copy_from_slice(value);
            self.garbage += end - (vstart + new_tail);
        } else {
            self.ensure_room(record_len(field.len(), value.len()), limit)?;
            // Compaction may have moved the record. `drop_record` truncates a record that
            // ends the arena, in which case the new one lands at the same offset.
            let off = self.offsets[i] as usize;
            self.drop_record(off);
            let new_off = self.arena.len() as u32;
            self.write_record(field, value);
            self.offsets[i] = new_off;
        }
        self.maybe_shrink();
        Ok(())
    }

    /// Removes dense slot `i`, shifting the following ones down (order preserving).
    fn remove_shift(&mut self, i: usize) {
        let off = self.offsets.remove(i) as usize;
        self.drop_record(off);
        self.maybe_shrink();
    }

    /// Removes dense slot `i`, moving the last slot into it.
    fn remove_swap(&mut self, i: usize) {
        let off = self.offsets.swap_remove(i) as usize;
        self.drop_record(off);
        self.maybe_shrink();
    }

    /// Rewrites the arena without garbage, in dense order. Dense positions are unchanged.
    fn compact(&mut self) {
        let live = self.arena.len() - self.garbage;
        let mut arena = Vec::with_capacity(live + live / 8);
        for slot in self.offsets.iter_mut() {
            let start = *slot as usize;
            let (flen, p) = read_varint(&self.arena, start);
            let (vlen, q) = read_varint(&self.arena, p + flen);
            *slot = arena.len() as u32;
            arena.extend_from_slice(&self.arena[start..q + vlen]);
        }
        self.arena = arena;
        self.garbage = 0;
    }

    fn maybe_shrink(&mut self) {
        let live = self.arena.len() - self.garbage;
        if self.garbage >= MIN_GARBAGE && self.garbage > live {
            self.compact();
        } else if self.arena.capacity() > 256 && self.arena.len() < self.arena.capacity() / 4 {
            let l = self.arena.len();
            self.arena.shrink_to(l + l / 2);
        }
        if self.offsets.capacity() > 64 && self.offsets.len() < self.offsets.capacity() / 4 {
            let l = self.offsets.len();
            self.offsets.shrink_to(l + l / 2);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Table.

/// A compact field → value map; see the module documentation.
#[derive(Clone)]
pub struct Table {
    store: Store,
    /// Dense positions, keyed by field. Empty while compact.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    max_entries: usize,
    max_len: usize,
    compact: bool,
}

impl Default for Table {
    /// An indexed (non-compact) empty table.
    fn default() -> Table {
        Table::new_indexed()
    }
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.len())
            .field("compact", &self.compact)
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

impl Table {
    /// A compact table that converts to the indexed form once it holds more than
    /// `max_entries` entries or gets a field or value longer than `max_len` bytes.
    pub fn new(max_entries: usize, max_len: usize) -> Table {
        Table {
            store: Store::default(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            max_entries,
            max_len,
            compact: true,
        }
    }

    /// An indexed (never compact) table.
    pub fn new_indexed() -> Table {
        let mut t = Table::new(0, 0);
        t.compact = false;
        t
    }

    /// Whether the table is still in compact ("listpack") form.
    pub fn is_compact(&self) -> bool {
        self.compact
    }

    /// The compact-mode limits `(max_entries, max_len)` the table was created with.
    pub fn limits(&self) -> (usize, usize) {
        (self.max_entries, self.max_len)
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.len() == 0
    }

    #[inline]
    fn hash(&self, field: &[u8]) -> u64 {
        self.hasher.hash_one(field)
    }

    /// Dense position of `field`.
    fn find(&self, field: &[u8]) -> Option<usize> {
        if self.compact {
            (0..self.store.len()).find(|&i| self.store.field(i) == field)
        } else {
            let store = &self.store;
            self.index
                .find(self.hash(field), |&i| store.field(i as usize) == field)
                .map(|&i| i as usize)
        }
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        self.find(field).map(|i| self.store.entry(i).1)
    }

    pub fn contains(&self, field: &[u8]) -> bool {
        self.find(field).is_some()
    }

    /// Converts to the indexed form (no-op if already indexed). The server calls this
    /// directly to mirror Redis's pre-emptive conversions (e.g. HSET with many fields).
    pub fn convert_to_indexed(&mut self) {
        if !self.compact {
            return;
        }
        self.compact = false;
        // Entries are unique, so building cannot fail.
        self.build_index();
    }

    /// Builds the index from scratch; false if a field occurs twice.
    fn build_index(&mut self) -> bool {
        let Table {
            store,
            index,
            hasher,
            ..
        } = self;
        *index = HashTable::with_capacity(store.len());
        for i in 0..store.len() {
            let field = store.field(i);
            let h = hasher.hash_one(field);
            match index.entry(
                h,
                |&j| store.field(j as usize) == field,
                |&j| hasher.hash_one(store.field(j as usize)),
            ) {
                Entry::Occupied(_) => return false,
                Entry::Vacant(v) => {
                    v.insert(i as u32);
                }
            }
        }
        true
    }

    /// Reserves room for `additional` more entries (offsets and, if indexed, the index).
    pub fn reserve(&mut self, additional: usize) {
        grow(&mut self.store.offsets, additional);
        if !self.compact {
            let Table {
                store,
                index,
                hasher,
                ..
            } = self;
            index.reserve(additional, |&j| hasher.hash_one(store.field(j as usize)));
        }
    }

    /// Insert or replace; `Ok(true)` when the field is new.
    pub fn insert(&mut self, field: &[u8], value: &[u8]) -> Result<bool, TooLarge> {
        self.insert_impl(field, value, true, ARENA_LIMIT)
    }

    /// Insert only when absent; `Ok(true)` when inserted.
    pub fn insert_new(&mut self, field: &[u8], value: &[u8]) -> Result<bool, TooLarge> {
        self.insert_impl(field, value, false, ARENA_LIMIT)
    }

    fn insert_impl(
        &mut self,
        field: &[u8],
        value: &[u8],
        replace: bool,
        limit: usize,
    ) -> Result<bool, TooLarge> {
        // Like Redis, long arguments convert even when nothing ends up being inserted.
        if self.compact && (field.len() > self.max_len || value.len() > self.max_len) {
            self.convert_to_indexed();
        }
        if self.compact {
            return match self.find(field) {
                Some(i) => {
                    if replace {
                        self.store.replace_value(i, field, value, limit)?;
                    }
                    Ok(false)
                }
                None => {
                    self.store.push(field, value, limit)?;
                    if self.store.len() > self.max_entries {
                        self.convert_to_indexed();
                    }
                    Ok(true)
                }
            };
        }
        let h = self.hash(field);
        let Table {
            store,
            index,
            hasher,
            ..
        } = self;
        match index.entry(
            h,
            |&j| store.field(j as usize) == field,
            |&j| hasher.hash_one(store.field(j as usize)),
        ) {
            Entry::Occupied(e) => {
                let i = *e.get() as usize;
                if replace {
                    store.replace_value(i, field, value, limit)?;
                }
                Ok(false)
            }
            Entry::Vacant(v) => {
                let i = store.push(field, value, limit)?;
                v.insert(i as u32);
                Ok(true)
            }
        }
    }

    pub fn remove(&mut self, field: &[u8]) -> bool {
        if self.compact {
            return match self.find(field) {
                Some(i) => {
                    self.store.remove_shift(i);
                    true
                }
                None => false,
            };
        }
        let h = self.hash(field);
        let store = &self.store;
        match self
            .index
            .find_entry(h, |&j| store.field(j as usize) == field)
        {
            Ok(e) => {
                let i = e.remove().0 as usize;
                self.unlink_indexed(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Removes dense slot `i` (whose index entry is already gone) by swapping in the last.
    fn unlink_indexed(&mut self, i: usize) {
        let last = self.store.len() - 1;
        if i != last {
            let h = self.hash(self.store.field(last));
            if let Some(slot) = self.index.find_mut(h, |&j| j as usize == last) {
                *slot = i as u32;
            }
        }
        self.store.remove_swap(i);
        if self.index.capacity() > 64 && self.index.len() < self.index.capacity() / 4 {
            let Table {
                store,
                index,
                hasher,
                ..
            } = self;
            let n = index.len();
            index.shrink_to(n + n / 2, |&j| hasher.hash_one(store.field(j as usize)));
        }
    }

    /// The entry at dense position `i` (`0..len`), for uniform random picks.
    pub fn get_index(&self, i: usize) -> Option<(&[u8], &[u8])> {
        (i < self.store.len()).then(|| self.store.entry(i))
    }

    /// Removes the entry at dense position `i`, returning its field and value.
    pub fn remove_index(&mut self, i: usize) -> Option<(Vec<u8>, Vec<u8>)> {
        if i >= self.store.len() {
            return None;
        }
        let (f, v) = self.store.entry(i);
        let out = (f.to_vec(), v.to_vec());
        if self.compact {
            self.store.remove_shift(i);
        } else {
            let h = self.hash(&out.0);
            if let Ok(e) = self.index.find_entry(h, |&j| j as usize == i) {
                e.remove();
            }
            self.unlink_indexed(i);
        }
        Some(out)
    }

    /// All entries in dense order (insertion order while compact).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &[u8])> + ExactSizeIterator + '_ {
        (0..self.store.len()).map(move |i| self.store.entry(i))
    }

    /// Redis SCAN: start with cursor 0, visits about `count` entries and returns the next
    /// cursor (0 when done). Entries present during the whole scan are visited at least once.
    /// Compact tables are returned whole in one call.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], &[u8])) -> u64 {
        let len = self.store.len();
        if self.compact {
            for (k, v) in self.iter() {
                f(k, v);
            }
            return 0;
        }
        // Continue below `pos`.
        let mut pos = if cursor == 0 {
            len
        } else {
            usize::try_from(cursor).map_or(len, |c| c.min(len))
        };
        let stop = pos.saturating_sub(count.max(1));
        while pos > stop {
            pos -= 1;
            let (k, v) = self.store.entry(pos);
            f(k, v);
        }
        pos as u64
    }

    /// Heap bytes held (arena, offsets and index capacities), O(1).
    pub fn heap_bytes(&self) -> usize {
        self.store.arena.capacity()
            + self.store.offsets.capacity() * std::mem::size_of::<u32>()
            + self.index.allocation_size()
    }

    /// Serializes as `[version][flags][max_entries][max_len][count]` (varints) followed by
    /// `count` records `[flen][field][vlen][value]` in dense order.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let live = self.store.arena.len() - self.store.garbage;
        out.reserve(live + 32);
        out.push(FORMAT_VERSION);
        out.push(if self.compact { FLAG_COMPACT } else { 0 });
        put_varint(out, self.max_entries as u64);
        put_varint(out, self.max_len as u64);
        put_varint(out, self.len() as u64);
        for (k, v) in self.iter() {
            put_varint(out, k.len() as u64);
            out.extend_from_slice(k);
            put_varint(out, v.len() as u64);
            out.extend_from_slice(v);
        }
    }

    /// Inverse of [`Table::encode`]; `None` on malformed input (including duplicate fields
    /// and trailing bytes). A compact table that violates its own limits comes back indexed.
    pub fn decode(buf: &[u8]) -> Option<Table> {
        let mut pos = 0;
        if *buf.first()? != FORMAT_VERSION {
            return None;
        }
        let flags = *buf.get(1)?;
        if flags & !FLAG_COMPACT != 0 {
            return None;
        }
        pos += 2;
        let max_entries = usize::try_from(read_varint_checked(buf, &mut pos)?).ok()?;
        let max_len = usize::try_from(read_varint_checked(buf, &mut pos)?).ok()?;
        let count = usize::try_from(read_varint_checked(buf, &mut pos)?).ok()?;
        let rest = buf.len() - pos;
        if count > rest / 2 {
            return None; // every record takes at least two bytes
        }
        let mut t = Table::new(max_entries, max_len);
        t.store.arena.reserve_exact(rest);
        t.store.offsets.reserve_exact(count);
        let mut fits = count <= max_entries;
        for _ in 0..count {
            let field = read_bytes(buf, &mut pos)?;
            let value = read_bytes(buf, &mut pos)?;
            fits &= field.len() <= max_len && value.len() <= max_len;
            t.store.push(field, value, ARENA_LIMIT).ok()?;
        }
        if pos != buf.len() || !t.build_index() {
            return None;
        }
        if flags & FLAG_COMPACT != 0 && fits {
            t.index = HashTable::new();
        } else {
            t.compact = false;
        }
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn collect(t: &Table) -> Vec<(Vec<u8>, Vec<u8>)> {
        t.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
    }

    /// Model: map plus insertion order (order only checked while compact).
    struct Model {
        map: HashMap<Vec<u8>, Vec<u8>>,
        order: Vec<Vec<u8>>,
    }

    impl Model {
        fn check(&self, t: &Table) {
            assert_eq!(t.len(), self.map.len());
            let got = collect(t);
            if t.is_compact() {
                let keys: Vec<Vec<u8>> = got.iter().map(|e| e.0.clone()).collect();
                assert_eq!(keys, self.order);
            }
            let got_map: HashMap<Vec<u8>, Vec<u8>> = got.into_iter().collect();
            assert_eq!(got_map, self.map);
        }
    }

    #[test]
    fn model_random_ops() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut t = Table::new(16, 8);
        let mut m = Model {
            map: HashMap::new(),
            order: Vec::new(),
        };
        let mut conversions = 0;
        let mut was_compact = true;
        for op in 0..100_000 {
            if op % 5000 == 0 {
                let max_entries = 1 + rng.below(64);
                t = Table::new(max_entries, 4 + rng.below(12));
                m.map.clear();
                m.order.clear();
                was_compact = true;
            }
            let key_space = if op % 10_000 < 5000 { 40 } else { 3000 };
            let k = format!("k{}", rng.below(key_space)).into_bytes();
            let vlen = if rng.below(50) == 0 { 20 } else { rng.below(8) };
            let v: Vec<u8> = (0..vlen).map(|_| b'a' + rng.below(26) as u8).collect();
            match rng.below(10) {
                0..=3 => {
                    let new = t.insert(&k, &v).unwrap();
                    assert_eq!(new, !m.map.contains_key(&k));
                    if new {
                        m.order.push(k.clone());
                    }
                    m.map.insert(k, v);
                }
                4 => {
                    let new = t.insert_new(&k, &v).unwrap();
                    assert_eq!(new, !m.map.contains_key(&k));
                    if new {
                        m.order.push(k.clone());
                        m.map.insert(k, v);
                    }
                }
                5..=6 => {
                    let had = m.map.remove(&k).is_some();
                    assert_eq!(t.remove(&k), had);
                    if had {
                        m.order.retain(|x| *x != k);
                    }
                }
                7 => {
                    assert_eq!(t.get(&k), m.map.get(&k).map(|v| v.as_slice()));
                    assert_eq!(t.contains(&k), m.map.contains_key(&k));
                }
                8 => {
                    if !t.is_empty() {
                        let i = rng.below(t.len());
                        let (f, v) = t.remove_index(i).unwrap();
                        assert_eq!(m.map.remove(&f), Some(v));
                        m.order.retain(|x| *x != f);
                    } else {
                        assert!(t.remove_index(0).is_none());
                    }
                }
                _ => {
                    let i = rng.below(t.len() + 1);
                    match t.get_index(i) {
                        Some((f, v)) => assert_eq!(m.map.get(f).map(|x| x.as_slice()), Some(v)),
                        None => assert_eq!(i, t.len()),
                    }
                }
            }
            if was_compact && !t.is_compact() {
                conversions += 1;
                was_compact = false;
            }
            if t.is_compact() {
                let (me, ml) = t.limits();
                assert!(t.len() <= me);
                assert!(t.iter().all(|(k, v)| k.len() <= ml && v.len() <= ml));
            }
            if op % 997 == 0 {
                m.check(&t);
            }
        }
        m.check(&t);
        assert!(conversions >= 10, "conversions: {conversions}");
    }

    #[test]
    fn compact_order_preserved() {
        let mut t = Table::new(128, 64);
        for c in b'a'..=b'j' {
            assert_eq!(t.insert(&[c], &[c, c]), Ok(true));
        }
        assert!(t.remove(b"c"));
        assert!(t.remove(b"a"));
        assert!(!t.remove(b"zz"));
        // Same-size, smaller and larger updates keep the position.
        assert_eq!(t.insert(b"e", b"EE"), Ok(false));
        assert_eq!(t.insert(b"f", b""), Ok(false));
        assert_eq!(t.insert(b"g", &[b'G'; 50]), Ok(false));
        assert_eq!(t.insert_new(b"h", b"nope"), Ok(false));
        assert_eq!(t.insert(b"a", b"A"), Ok(true));
        assert_eq!(t.remove_index(0), Some((b"b".to_vec(), b"bb".to_vec())));
        let keys: Vec<&[u8]> = t.iter().map(|e| e.0).collect();
        let want: Vec<&[u8]> = vec![b"d", b"e", b"f", b"g", b"h", b"i", b"j", b"a"];
        assert_eq!(keys, want);
        assert_eq!(t.get(b"e"), Some(&b"EE"[..]));
        assert_eq!(t.get(b"f"), Some(&b""[..]));
        assert_eq!(t.get(b"g"), Some(&[b'G'; 50][..]));
        assert_eq!(t.get(b"h"), Some(&b"hh"[..]));
        assert_eq!(t.get_index(3), Some((&b"g"[..], &[b'G'; 50][..])));
        assert!(t.is_compact());
        // Many updates of a compact table keep order and bounded memory.
        for i in 0..10_000 {
            let v = vec![b'x'; i % 60];
            t.insert(b"d", &v).unwrap();
        }
        assert_eq!(t.iter().next().map(|e| e.0), Some(&b"d"[..]));
        assert!(t.heap_bytes() < 1024, "{}", t.heap_bytes());
        let mut seen = Vec::new();
        assert_eq!(t.scan(0, 1, |k, _| seen.push(k.to_vec())), 0);
        assert_eq!(seen.len(), t.len());
    }

    #[test]
    fn conversion_rules() {
        let mut t = Table::new(4, 8);
        for i in 0..4 {
            t.insert(format!("f{i}").as_bytes(), b"v").unwrap();
        }
        assert!(t.is_compact());
        t.insert(b"f0", b"12345678").unwrap(); // exactly max_len
        assert!(t.is_compact());
        t.insert(b"f5", b"v").unwrap(); // fifth entry
        assert!(!t.is_compact());
        assert_eq!(t.len(), 5);

        let mut t = Table::new(4, 8);
        t.insert(b"a", b"1").unwrap();
        assert_eq!(t.insert_new(b"a", b"123456789"), Ok(false)); // long arg converts anyway
        assert!(!t.is_compact());
        assert_eq!(t.get(b"a"), Some(&b"1"[..]));

        let mut t = Table::new(4, 8);
        t.insert(b"123456789", b"").unwrap();
        assert!(!t.is_compact());

        let mut t = Table::new(0, 0);
        assert!(t.is_compact());
        t.insert(b"", b"").unwrap();
        assert!(!t.is_compact());
        assert!(!Table::new_indexed().is_compact());
    }

    #[test]
    fn scan_guarantee() {
        let mut rng = Rng(12345);
        for round in 0..20 {
            let mut t = Table::new_indexed();
            let mut stable = HashSet::new();
            let mut volatile = Vec::new();
            let mut next = 0u64;
            for _ in 0..2000 {
                let k = format!("s{next}").into_bytes();
                next += 1;
                if rng.below(2) == 0 {
                    stable.insert(k.clone());
                } else {
                    volatile.push(k.clone());
                }
                t.insert(&k, b"v").unwrap();
            }
            let mut seen = HashSet::new();
            let mut cursor = 0;
            let mut calls = 0;
            loop {
                let count = 1 + rng.below(40 + round);
                cursor = t.scan(cursor, count, |k, _| {
                    seen.insert(k.to_vec());
                });
                calls += 1;
                if cursor == 0 {
                    break;
                }
                for _ in 0..rng.below(30) {
                    match rng.below(3) {
                        0 => {
                            let k = format!("s{next}").into_bytes();
                            next += 1;
                            t.insert(&k, b"v").unwrap();
                            volatile.push(k);
                        }
                        1 if !volatile.is_empty() => {
                            let k = volatile.swap_remove(rng.below(volatile.len()));
                            assert!(t.remove(&k));
                        }
                        _ if !volatile.is_empty() => {
                            // Remove a volatile entry via its dense position.
                            let k = volatile.swap_remove(rng.below(volatile.len()));
                            let i = (0..t.len()).find(|&i| t.get_index(i).unwrap().0 == k);
                            let (f, _) = t.remove_index(i.unwrap()).unwrap();
                            assert_eq!(f, k);
                        }
                        _ => {}
                    }
                }
            }
            assert!(calls > 10);
            for k in &stable {
                assert!(seen.contains(k), "missed {:?}", String::from_utf8_lossy(k));
            }
        }
    }

    #[test]
    fn compaction_bounds_memory() {
        let mut t = Table::new(128, 64);
        for i in 0..100_000 {
            t.insert(
                format!("field:{i}").as_bytes(),
                format!("value:{i}").as_bytes(),
            )
            .unwrap();
        }
        let full = t.heap_bytes();
        for i in 0..90_000 {
            assert!(t.remove(format!("field:{i}").as_bytes()));
        }
        let after = t.heap_bytes();
        assert!(after * 4 < full, "full {full} after {after}");
        for i in 90_000..100_000 {
            let v = format!("value:{i}");
            assert_eq!(t.get(format!("field:{i}").as_bytes()), Some(v.as_bytes()));
        }
        // Repeated growing updates do not grow the arena without bound.
        let before = t.heap_bytes();
        for round in 0..20 {
            for i in 90_000..100_000 {
                let v = format!("value:{i}:{round}{}", "x".repeat(round % 3));
                t.insert(format!("field:{i}").as_bytes(), v.as_bytes())
                    .unwrap();
            }
        }
        assert!(
            t.heap_bytes() < before * 3,
            "{} vs {before}",
            t.heap_bytes()
        );
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.get(b"field:95000"), Some(&b"value:95000:19x"[..]));
        // Draining from the end truncates.
        while let Some((_, _)) = t.remove_index(t.len().wrapping_sub(1)) {}
        assert!(t.is_empty());
        assert!(t.heap_bytes() < 4096, "{}", t.heap_bytes());
    }

    #[test]
    fn too_large_is_reported() {
        let mut t = Table::new_indexed();
        let limit = 100;
        let mut n = 0;
        loop {
            match t.insert_impl(format!("f{n:02}").as_bytes(), b"0123456", true, limit) {
                Ok(true) => n += 1,
                Ok(false) => unreachable!(),
                Err(TooLarge) => break,
            }
        }
        assert_eq!(n, 100 / 12);
        let before = collect(&t);
        assert_eq!(
            t.insert_impl(b"f00", b"0123456789", true, limit),
            Err(TooLarge)
        );
        assert_eq!(collect(&t), before);
        // Garbage is reclaimed to make room.
        assert!(t.remove(b"f01"));
        assert!(t.remove(b"f03"));
        assert_eq!(t.insert_impl(b"g", b"x", true, limit), Ok(true));
        assert_eq!(t.insert_impl(b"h", b"x", true, limit), Ok(true));
        assert_eq!(t.get(b"g"), Some(&b"x"[..]));
        assert_eq!(t.get(b"f02"), Some(&b"0123456"[..]));
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut compact = Table::new(10, 20);
        for i in 0..8 {
            compact
                .insert(format!("f{i}").as_bytes(), format!("v{i}").as_bytes())
                .unwrap();
        }
        compact.remove(b"f2");
        compact.insert(b"f3", b"longer value").unwrap();
        let mut big = Table::new(128, 64);
        for i in 0..1000 {
            big.insert(format!("f{i}").as_bytes(), &vec![b'x'; i % 200])
                .unwrap();
        }
        for i in (0..1000).step_by(3) {
            big.remove(format!("f{i}").as_bytes());
        }
        for t in [Table::new(3, 4), Table::new_indexed(), compact, big] {
            let mut buf = Vec::new();
            t.encode(&mut buf);
            let d = Table::decode(&buf).unwrap();
            assert_eq!(collect(&d), collect(&t));
            assert_eq!(d.is_compact(), t.is_compact());
            assert_eq!(d.limits(), t.limits());
            for (k, v) in t.iter() {
                assert_eq!(d.get(k), Some(v));
            }
            // Every truncation and trailing garbage are rejected without panicking.
            for cut in 0..buf.len() {
                assert!(Table::decode(&buf[..cut]).is_none());
            }
            let mut longer = buf.clone();
            longer.push(0);
            assert!(Table::decode(&longer).is_none());
        }
        // Duplicate fields are rejected.
        let mut a = Table::new_indexed();
        a.insert(b"x", b"1").unwrap();
        a.insert(b"y", b"2").unwrap();
        let mut buf = Vec::new();
        a.encode(&mut buf);
        let n = buf.len();
        buf[n - 3] = b'x';
        assert!(Table::decode(&buf).is_none());
        // Garbage input.
        let mut rng = Rng(99);
        for _ in 0..2000 {
            let len = rng.below(40);
            let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if !b.is_empty() {
                b[0] = FORMAT_VERSION;
            }
            let _ = Table::decode(&b);
        }
        // A compact table violating its limits comes back indexed.
        let mut over = Vec::new();
        Table::new(1, 1).encode(&mut over);
        over.pop();
        over.extend_from_slice(&[2, 1, b'a', 0, 1, b'b', 0]);
        let d = Table::decode(&over).unwrap();
        assert!(!d.is_compact());
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn bytes_per_entry_1m() {
        let n = 1_000_000;
        let mut t = Table::new(128, 64);
        let mut data = 0;
        for i in 0..n {
            let f = format!("field:{i}");
            let v = format!("value:{i}");
            data += f.len() + v.len();
            t.insert(f.as_bytes(), v.as_bytes()).unwrap();
        }
        let b = t.heap_bytes() as f64 / n as f64;
        println!(
            "table: {n} entries, avg field+value {:.1} bytes, heap {} bytes = {b:.1} bytes/entry",
            data as f64 / n as f64,
            t.heap_bytes()
        );
        assert!(b < 48.0);
    }
}
