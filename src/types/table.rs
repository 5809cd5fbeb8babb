//! `Table`: a compact map from byte-string field to byte-string value.
//!
//! Used for Redis hashes (and, with empty values, for sets in "hashtable" encoding).
//!
//! # Records
//!
//! Every entry is stored as the record `[varint flen][field][varint vlen][value]` (LEB128
//! varints, 1 byte below 128), records back to back.
//!
//! # Compact mode (Redis "listpack")
//!
//! A table made by [`Table::new`] starts compact: it is nothing but its records, in one
//! exactly sized heap block (`Box<[u8]>`), plus the entry count and the two limits packed
//! into the 24-byte `Table` itself (limits above `u16::MAX` fall back to a boxed header).
//! Lookups scan at most `max_entries` records linearly, every change rebuilds the block at
//! its exact new size (O(n), n ≤ `max_entries`), iteration is in insertion order and
//! removal shifts, so replies match Redis's listpack order exactly. The first insert that
//! would exceed `max_entries` entries, or whose field or value is longer than `max_len`,
//! converts the table to the indexed form for good (like Redis, never back). The dense
//! order is kept on conversion; after that, removals reorder entries.
//!
//! # Indexed mode
//!
//! Boxed (`Box<Indexed>`), so it costs the `Table` nothing while compact:
//!
//! * `arena: Vec<u8>` holds the records.
//! * `offsets: Vec<u32>` is the dense array of record offsets (dense position `0..len`).
//! * `index: HashTable<u32>` maps a field to its dense position (4 bytes + 1 control byte
//!   per bucket). Hashes are never stored: they are recomputed from the arena when the
//!   table grows. Fields are hashed with a per-table `DefaultHashBuilder` (foldhash with a
//!   random per-instance seed), so chosen fields cannot target a known hash function.
//!
//! For a 10-byte field and a 10-byte value this costs 22 bytes of record, 4 bytes of offset
//! and 5/load-factor bytes of index (≈ 6–11), i.e. ≈ 32–40 bytes per entry instead of the
//! ≈ 70–90 of Redis's dict. The arena and offsets grow by 1.5x while small and 1.125x once
//! above 1 MiB to keep capacity slack low (such blocks are mmap'd, and glibc resizes them
//! with mremap, without copying).
//!
//! * Replacing a value overwrites it in place when the new `[vlen][value]` fits into the old
//!   one (the leftover bytes become garbage); otherwise a new record is appended and the old
//!   one becomes garbage. A record at the very end of the arena is truncated instead.
//! * Removal swaps the last dense slot into the hole (fixing the moved entry in the
//!   index). Dead records stay in the arena as garbage; when garbage exceeds the live bytes
//!   (and a small minimum), the arena is rebuilt in dense order. Dense positions do not change
//!   during compaction, so the index stays valid. Offsets and index shrink when 3/4 empty.
//! * Offsets are `u32`: an insertion that would grow the records past `u32::MAX` bytes (even
//!   after compaction) fails with [`TooLarge`] and leaves the table unchanged. Compact
//!   tables obey the same limit.
//!
//! # Memory accounting
//!
//! [`Table::heap_bytes`] is O(1) and counts every heap block as glibc malloc does
//! ([`alloc_size`]).
//!
//! # SCAN
//!
//! Indexed tables are scanned from the highest dense position down; a cursor `c != 0`
//! means "continue below position `c`". Swap-removal only moves the last element (already
//! visited, or still below the cursor) and insertions append, so everything present for the
//! whole scan is visited at least once. Compact tables return everything in one call.

use super::encoding::{
    alloc_size, grow, put_varint, read_bytes, read_varint, read_varint_checked, splice, varint_len,
    Varint,
};
use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::fmt;
use std::hash::BuildHasher;

/// The records may not grow beyond this many bytes (offsets are `u32`).
const ARENA_LIMIT: usize = u32::MAX as usize;
/// Do not compact for less garbage than this.
const MIN_GARBAGE: usize = 64;
/// Version byte of the serialized form.
const FORMAT_VERSION: u8 = 1;
const FLAG_COMPACT: u8 = 1;

/// The table (its records) would exceed `u32::MAX` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("table too large")
    }
}

impl std::error::Error for TooLarge {}

// ---------------------------------------------------------------------------------------
// Records.

/// Encoded size of a record.
#[inline]
fn record_len(flen: usize, vlen: usize) -> usize {
    varint_len(flen)
        .saturating_add(flen)
        .saturating_add(varint_len(vlen))
        .saturating_add(vlen)
}

/// The record at `off`: field, value and the offset just past it.
#[inline]
fn record_at(buf: &[u8], off: usize) -> (&[u8], &[u8], usize) {
    let (flen, p) = read_varint(buf, off);
    let field = &buf[p..p + flen];
    let (vlen, q) = read_varint(buf, p + flen);
    (field, &buf[q..q + vlen], q + vlen)
}

/// End of the record starting at `off`.
#[inline]
fn record_end(buf: &[u8], off: usize) -> usize {
    record_at(buf, off).2
}

fn write_record(out: &mut Vec<u8>, field: &[u8], value: &[u8]) {
    put_varint(out, field.len() as u64);
    out.extend_from_slice(field);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

// ---------------------------------------------------------------------------------------
// Compact records: an exactly sized `Box<[u8]>`.

/// Dense position and offset of `field`.
fn lp_find(buf: &[u8], field: &[u8]) -> Option<(usize, usize)> {
    let mut pos = 0;
    let mut i = 0;
    while pos < buf.len() {
        let (f, _, next) = record_at(buf, pos);
        if f == field {
            return Some((i, pos));
        }
        pos = next;
        i += 1;
    }
    None
}

/// Offset of record `i` (which must exist).
fn lp_offset(buf: &[u8], i: usize) -> usize {
    (0..i).fold(0, |pos, _| record_end(buf, pos))
}

/// What a compact insertion did.
enum Step {
    Done(Result<bool, TooLarge>),
    /// The table must become indexed first.
    Convert,
}

/// Insert into compact records holding `len` entries (the caller counts a new entry).
#[allow(clippy::too_many_arguments)]
fn lp_insert(
    buf: &mut Box<[u8]>,
    len: usize,
    max_entries: usize,
    max_len: usize,
    field: &[u8],
    value: &[u8],
    replace: bool,
    limit: usize,
) -> Step {
    // Like Redis, long arguments convert even when nothing ends up being inserted.
    if field.len() > max_len || value.len() > max_len {
        return Step::Convert;
    }
    match lp_find(buf, field) {
        // Redis converts after any set that leaves more entries than the limit (a lowered
        // one), an update too.
        Some(_) if replace && len > max_entries => Step::Convert,
        Some((_, off)) => {
            if replace {
                let (_, old, end) = record_at(buf, off);
                let vstart = end - old.len() - varint_len(old.len());
                let tail = varint_len(value.len()) + value.len();
                if (buf.len() - (end - vstart)).saturating_add(tail) > limit {
                    return Step::Done(Err(TooLarge));
                }
                splice(
                    buf,
                    vstart,
                    end,
                    &[Varint::new(value.len()).as_slice(), value],
                );
            }
            Step::Done(Ok(false))
        }
        None if len >= max_entries => Step::Convert,
        None => {
            if buf
                .len()
                .saturating_add(record_len(field.len(), value.len()))
                > limit
            {
                return Step::Done(Err(TooLarge));
            }
            let end = buf.len();
            splice(
                buf,
                end,
                end,
                &[
                    Varint::new(field.len()).as_slice(),
                    field,
                    Varint::new(value.len()).as_slice(),
                    value,
                ],
            );
            Step::Done(Ok(true))
        }
    }
}

/// Removes `field` from compact records; true if it was there.
fn lp_remove(buf: &mut Box<[u8]>, field: &[u8]) -> bool {
    match lp_find(buf, field) {
        Some((_, off)) => {
            let end = record_end(buf, off);
            splice(buf, off, end, &[]);
            true
        }
        None => false,
    }
}

/// Removes record `i` (which must exist) from compact records.
fn lp_remove_index(buf: &mut Box<[u8]>, i: usize) -> (Vec<u8>, Vec<u8>) {
    let off = lp_offset(buf, i);
    let (f, v, end) = record_at(buf, off);
    let out = (f.to_vec(), v.to_vec());
    splice(buf, off, end, &[]);
    out
}

// ---------------------------------------------------------------------------------------
// Indexed storage: arena + dense offsets.

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
        let (f, v, _) = record_at(&self.arena, self.offsets[i] as usize);
        (f, v)
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

    /// Appends a new entry; returns its dense position.
    fn push(&mut self, field: &[u8], value: &[u8], limit: usize) -> Result<usize, TooLarge> {
        self.ensure_room(record_len(field.len(), value.len()), limit)?;
        let off = self.arena.len() as u32;
        write_record(&mut self.arena, field, value);
        grow(&mut self.offsets, 1);
        self.offsets.push(off);
        Ok(self.offsets.len() - 1)
    }

    /// Marks the record at `off` dead (truncating it if it ends the arena).
    fn drop_record(&mut self, off: usize) {
        let end = record_end(&self.arena, off);
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
        let end = record_end(&self.arena, off);
        let new_tail = varint_len(value.len()) + value.len();
        if vstart + new_tail <= end {
            // In place; the leftover becomes garbage (skipped by compaction).
            let vl = Varint::new(value.len());
            let vl = vl.as_slice();
            self.arena[vstart..vstart + vl.len()].copy_from_slice(vl);
            let vpos = vstart + vl.len();
            self.arena[vpos..vpos + value.len()].copy_from_slice(value);
            self.garbage += end - (vstart + new_tail);
        } else {
            self.ensure_room(record_len(field.len(), value.len()), limit)?;
            // Compaction may have moved the record. `drop_record` truncates a record that
            // ends the arena, in which case the new one lands at the same offset.
            let off = self.offsets[i] as usize;
            self.drop_record(off);
            let new_off = self.arena.len() as u32;
            write_record(&mut self.arena, field, value);
            self.offsets[i] = new_off;
        }
        self.maybe_shrink();
        Ok(())
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
            let end = record_end(&self.arena, start);
            *slot = arena.len() as u32;
            arena.extend_from_slice(&self.arena[start..end]);
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

/// The indexed form (boxed in [`Table`]).
#[derive(Clone)]
struct Indexed {
    store: Store,
    /// Dense positions, keyed by field.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    max_entries: usize,
    max_len: usize,
}

impl Indexed {
    fn new(max_entries: usize, max_len: usize) -> Indexed {
        Indexed {
            store: Store::default(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            max_entries,
            max_len,
        }
    }

    /// Takes over compact records (holding distinct fields).
    fn from_compact(buf: Box<[u8]>, len: usize, max_entries: usize, max_len: usize) -> Indexed {
        let arena = buf.into_vec();
        let mut offsets = Vec::with_capacity(len);
        let mut pos = 0;
        while pos < arena.len() {
            offsets.push(pos as u32);
            pos = record_end(&arena, pos);
        }
        let mut ix = Indexed::new(max_entries, max_len);
        ix.store = Store {
            arena,
            offsets,
            garbage: 0,
        };
        // Entries are unique, so building cannot fail.
        ix.build_index();
        ix
    }

    #[inline]
    fn hash(&self, field: &[u8]) -> u64 {
        self.hasher.hash_one(field)
    }

    /// Dense position of `field`.
    fn find(&self, field: &[u8]) -> Option<usize> {
        let store = &self.store;
        self.index
            .find(self.hash(field), |&i| store.field(i as usize) == field)
            .map(|&i| i as usize)
    }

    /// Builds the index from scratch; false if a field occurs twice.
    fn build_index(&mut self) -> bool {
        let Indexed {
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

    fn reserve(&mut self, additional: usize) {
        grow(&mut self.store.offsets, additional);
        let Indexed {
            store,
            index,
            hasher,
            ..
        } = self;
        index.reserve(additional, |&j| hasher.hash_one(store.field(j as usize)));
    }

    fn insert(
        &mut self,
        field: &[u8],
        value: &[u8],
        replace: bool,
        limit: usize,
    ) -> Result<bool, TooLarge> {
        let h = self.hash(field);
        let Indexed {
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

    fn remove(&mut self, field: &[u8]) -> bool {
        let h = self.hash(field);
        let store = &self.store;
        match self
            .index
            .find_entry(h, |&j| store.field(j as usize) == field)
        {
            Ok(e) => {
                let i = e.remove().0 as usize;
                self.unlink(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Removes dense slot `i` (whose index entry is already gone) by swapping in the last.
    fn unlink(&mut self, i: usize) {
        let last = self.store.len() - 1;
        if i != last {
            let h = self.hash(self.store.field(last));
            if let Some(slot) = self.index.find_mut(h, |&j| j as usize == last) {
                *slot = i as u32;
            }
        }
        self.store.remove_swap(i);
        if self.index.capacity() > 64 && self.index.len() < self.index.capacity() / 4 {
            let Indexed {
                store,
                index,
                hasher,
                ..
            } = self;
            let n = index.len();
            index.shrink_to(n + n / 2, |&j| hasher.hash_one(store.field(j as usize)));
        }
    }

    fn remove_index(&mut self, i: usize) -> Option<(Vec<u8>, Vec<u8>)> {
        if i >= self.store.len() {
            return None;
        }
        let (f, v) = self.store.entry(i);
        let out = (f.to_vec(), v.to_vec());
        let h = self.hash(&out.0);
        if let Ok(e) = self.index.find_entry(h, |&j| j as usize == i) {
            e.remove();
        }
        self.unlink(i);
        Some(out)
    }

    fn heap_bytes(&self) -> usize {
        alloc_size(std::mem::size_of::<Indexed>())
            + alloc_size(self.store.arena.capacity())
            + alloc_size(self.store.offsets.capacity() * std::mem::size_of::<u32>())
            + alloc_size(self.index.allocation_size())
    }
}

// ---------------------------------------------------------------------------------------
// Table.

/// A compact field → value map; see the module documentation.
#[derive(Clone)]
pub struct Table {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// Compact with limits that fit in `u16`: the records and nothing else.
    Small {
        len: u16,
        max_entries: u16,
        max_len: u16,
        buf: Box<[u8]>,
    },
    /// Compact with larger limits.
    Wide(Box<Wide>),
    Indexed(Box<Indexed>),
}

#[derive(Clone)]
struct Wide {
    buf: Box<[u8]>,
    len: usize,
    max_entries: usize,
    max_len: usize,
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
            .field("compact", &self.is_compact())
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

/// Iterator over a table's entries in dense order.
struct Iter<'a> {
    src: Src<'a>,
    front: usize,
    back: usize,
}

enum Src<'a> {
    /// Compact records; `pos` is the offset of entry `front`.
    Compact {
        buf: &'a [u8],
        pos: usize,
    },
    Indexed(&'a Store),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        let i = self.front;
        self.front += 1;
        Some(match self.src {
            Src::Compact { buf, ref mut pos } => {
                let (f, v, next) = record_at(buf, *pos);
                *pos = next;
                (f, v)
            }
            Src::Indexed(store) => store.entry(i),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    /// O(remaining) per call for compact tables (records are only readable forwards).
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        self.back -= 1;
        Some(match &self.src {
            Src::Compact { buf, pos } => {
                let off = (self.front..self.back).fold(*pos, |p, _| record_end(buf, p));
                let (f, v, _) = record_at(buf, off);
                (f, v)
            }
            Src::Indexed(store) => store.entry(self.back),
        })
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl Table {
    /// A compact table that converts to the indexed form once it holds more than
    /// `max_entries` entries or gets a field or value longer than `max_len` bytes.
    pub fn new(max_entries: usize, max_len: usize) -> Table {
        Table::compact_from(Box::default(), 0, max_entries, max_len)
    }

    /// A compact table of `len` entries in `buf` (distinct, within the limits).
    fn compact_from(buf: Box<[u8]>, len: usize, max_entries: usize, max_len: usize) -> Table {
        let repr = match (
            u16::try_from(len),
            u16::try_from(max_entries),
            u16::try_from(max_len),
        ) {
            (Ok(len), Ok(max_entries), Ok(max_len)) => Repr::Small {
                len,
                max_entries,
                max_len,
                buf,
            },
            _ => Repr::Wide(Box::new(Wide {
                buf,
                len,
                max_entries,
                max_len,
            })),
        };
        Table { repr }
    }

    /// An indexed (never compact) table.
    pub fn new_indexed() -> Table {
        Table {
            repr: Repr::Indexed(Box::new(Indexed::new(0, 0))),
        }
    }

    /// The compact records and entry count, or `None` when indexed.
    #[inline]
    fn compact(&self) -> Option<(&[u8], usize)> {
        match &self.repr {
            Repr::Small { buf, len, .. } => Some((buf, usize::from(*len))),
            Repr::Wide(w) => Some((&w.buf, w.len)),
            Repr::Indexed(_) => None,
        }
    }

    /// Whether the table is still in compact ("listpack") form.
    pub fn is_compact(&self) -> bool {
        !matches!(self.repr, Repr::Indexed(_))
    }

    /// The compact-mode limits `(max_entries, max_len)` the table was created with.
    pub fn limits(&self) -> (usize, usize) {
        match &self.repr {
            Repr::Small {
                max_entries,
                max_len,
                ..
            } => (usize::from(*max_entries), usize::from(*max_len)),
            Repr::Wide(w) => (w.max_entries, w.max_len),
            Repr::Indexed(ix) => (ix.max_entries, ix.max_len),
        }
    }

    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Small { len, .. } => usize::from(*len),
            Repr::Wide(w) => w.len,
            Repr::Indexed(ix) => ix.store.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match &self.repr {
            Repr::Indexed(ix) => ix.find(field).map(|i| ix.store.entry(i).1),
            _ => {
                let (buf, _) = self.compact()?;
                let (_, off) = lp_find(buf, field)?;
                Some(record_at(buf, off).1)
            }
        }
    }

    pub fn contains(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }

    /// Takes the table out as its indexed form, converting if needed (`self` is left empty
    /// and compact).
    fn take_indexed(&mut self) -> Box<Indexed> {
        let empty = Repr::Small {
            len: 0,
            max_entries: 0,
            max_len: 0,
            buf: Box::default(),
        };
        match std::mem::replace(&mut self.repr, empty) {
            Repr::Indexed(ix) => ix,
            Repr::Small {
                len,
                max_entries,
                max_len,
                buf,
            } => Box::new(Indexed::from_compact(
                buf,
                usize::from(len),
                usize::from(max_entries),
                usize::from(max_len),
            )),
            Repr::Wide(w) => {
                let Wide {
                    buf,
                    len,
                    max_entries,
                    max_len,
                } = *w;
                Box::new(Indexed::from_compact(buf, len, max_entries, max_len))
            }
        }
    }

    /// Take the compact-encoding limits `(max_entries, max_len)` now in force (CONFIG SET
    /// `hash-max-listpack-*`). Nothing converts here: as in Redis, a compact value above a
    /// lowered limit converts when a field is set (an update too, as Redis checks after
    /// every set). Indexed ones only note them (they never convert back).
    pub fn set_limits(&mut self, max_entries: usize, max_len: usize) {
        if self.limits() == (max_entries, max_len) {
            return;
        }
        let empty = Repr::Small {
            len: 0,
            max_entries: 0,
            max_len: 0,
            buf: Box::default(),
        };
        let (buf, len) = match std::mem::replace(&mut self.repr, empty) {
            Repr::Small { len, buf, .. } => (buf, usize::from(len)),
            Repr::Wide(w) => (w.buf, w.len),
            Repr::Indexed(mut ix) => {
                ix.max_entries = max_entries;
                ix.max_len = max_len;
                self.repr = Repr::Indexed(ix);
                return;
            }
        };
        *self = Table::compact_from(buf, len, max_entries, max_len);
    }

    /// Converts to the indexed form (no-op if already indexed). The server calls this
    /// directly to mirror Redis's pre-emptive conversions (e.g. HSET with many fields).
    pub fn convert_to_indexed(&mut self) {
        if self.is_compact() {
            let ix = self.take_indexed();
            self.repr = Repr::Indexed(ix);
        }
    }

    /// Reserves room for `additional` more entries in an indexed table (offsets and
    /// index). Compact tables are always exactly sized, so this is a no-op for them.
    pub fn reserve(&mut self, additional: usize) {
        if let Repr::Indexed(ix) = &mut self.repr {
            ix.reserve(additional);
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
        let step = match &mut self.repr {
            Repr::Indexed(ix) => return ix.insert(field, value, replace, limit),
            Repr::Small {
                len,
                max_entries,
                max_len,
                buf,
            } => {
                let step = lp_insert(
                    buf,
                    usize::from(*len),
                    usize::from(*max_entries),
                    usize::from(*max_len),
                    field,
                    value,
                    replace,
                    limit,
                );
                if let Step::Done(Ok(true)) = step {
                    *len += 1;
                }
                step
            }
            Repr::Wide(w) => {
                let step = lp_insert(
                    &mut w.buf,
                    w.len,
                    w.max_entries,
                    w.max_len,
                    field,
                    value,
                    replace,
                    limit,
                );
                if let Step::Done(Ok(true)) = step {
                    w.len += 1;
                }
                step
            }
        };
        match step {
            Step::Done(r) => r,
            Step::Convert => {
                let mut ix = self.take_indexed();
                let r = ix.insert(field, value, replace, limit);
                self.repr = Repr::Indexed(ix);
                r
            }
        }
    }

    pub fn remove(&mut self, field: &[u8]) -> bool {
        match &mut self.repr {
            Repr::Small { len, buf, .. } => {
                let found = lp_remove(buf, field);
                if found {
                    *len -= 1;
                }
                found
            }
            Repr::Wide(w) => {
                let found = lp_remove(&mut w.buf, field);
                if found {
                    w.len -= 1;
                }
                found
            }
            Repr::Indexed(ix) => ix.remove(field),
        }
    }

    /// The entry at dense position `i` (`0..len`), for uniform random picks. O(i) while
    /// compact.
    pub fn get_index(&self, i: usize) -> Option<(&[u8], &[u8])> {
        match &self.repr {
            Repr::Indexed(ix) => (i < ix.store.len()).then(|| ix.store.entry(i)),
            _ => {
                let (buf, len) = self.compact()?;
                if i >= len {
                    return None;
                }
                let (f, v, _) = record_at(buf, lp_offset(buf, i));
                Some((f, v))
            }
        }
    }

    /// Removes the entry at dense position `i`, returning its field and value.
    pub fn remove_index(&mut self, i: usize) -> Option<(Vec<u8>, Vec<u8>)> {
        match &mut self.repr {
            Repr::Small { len, buf, .. } => {
                if i >= usize::from(*len) {
                    return None;
                }
                *len -= 1;
                Some(lp_remove_index(buf, i))
            }
            Repr::Wide(w) => {
                if i >= w.len {
                    return None;
                }
                w.len -= 1;
                Some(lp_remove_index(&mut w.buf, i))
            }
            Repr::Indexed(ix) => ix.remove_index(i),
        }
    }

    /// All entries in dense order (insertion order while compact). Reverse iteration of a
    /// compact table costs O(len) per step.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &[u8])> + ExactSizeIterator + '_ {
        let (src, back) = match &self.repr {
            Repr::Indexed(ix) => (Src::Indexed(&ix.store), ix.store.len()),
            Repr::Small { buf, len, .. } => (Src::Compact { buf, pos: 0 }, usize::from(*len)),
            Repr::Wide(w) => (
                Src::Compact {
                    buf: &w.buf,
                    pos: 0,
                },
                w.len,
            ),
        };
        Iter {
            src,
            front: 0,
            back,
        }
    }

    /// Redis SCAN: start with cursor 0, visits about `count` entries and returns the next
    /// cursor (0 when done). Entries present during the whole scan are visited at least once.
    /// Compact tables are returned whole in one call.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], &[u8])) -> u64 {
        let Repr::Indexed(ix) = &self.repr else {
            for (k, v) in self.iter() {
                f(k, v);
            }
            return 0;
        };
        let len = ix.store.len();
        // Continue below `pos`.
        let mut pos = if cursor == 0 {
            len
        } else {
            usize::try_from(cursor).map_or(len, |c| c.min(len))
        };
        let stop = pos.saturating_sub(count.max(1));
        while pos > stop {
            pos -= 1;
            let (k, v) = ix.store.entry(pos);
            f(k, v);
        }
        pos as u64
    }

    /// Heap bytes held, as malloc blocks ([`alloc_size`]), O(1). A compact table with
    /// limits up to `u16::MAX` holds just one block: its records.
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Small { buf, .. } => alloc_size(buf.len()),
            Repr::Wide(w) => alloc_size(std::mem::size_of::<Wide>()) + alloc_size(w.buf.len()),
            Repr::Indexed(ix) => ix.heap_bytes(),
        }
    }

    /// Serializes as `[version][flags][max_entries][max_len][count]` (varints) followed by
    /// `count` records `[flen][field][vlen][value]` in dense order.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (max_entries, max_len) = self.limits();
        out.push(FORMAT_VERSION);
        match &self.repr {
            Repr::Indexed(ix) => {
                out.reserve(ix.store.arena.len() - ix.store.garbage + 32);
                out.push(0);
                put_varint(out, max_entries as u64);
                put_varint(out, max_len as u64);
                put_varint(out, ix.store.len() as u64);
                for (k, v) in self.iter() {
                    write_record(out, k, v);
                }
            }
            _ => {
                let (buf, len) = self.compact().unwrap_or_default();
                out.reserve(buf.len() + 32);
                out.push(FLAG_COMPACT);
                put_varint(out, max_entries as u64);
                put_varint(out, max_len as u64);
                put_varint(out, len as u64);
                out.extend_from_slice(buf);
            }
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
        let mut ix = Indexed::new(max_entries, max_len);
        ix.store.arena.reserve_exact(rest);
        ix.store.offsets.reserve_exact(count);
        let mut fits = count <= max_entries;
        for _ in 0..count {
            let field = read_bytes(buf, &mut pos)?;
            let value = read_bytes(buf, &mut pos)?;
            fits &= field.len() <= max_len && value.len() <= max_len;
            ix.store.push(field, value, ARENA_LIMIT).ok()?;
        }
        if pos != buf.len() || !ix.build_index() {
            return None;
        }
        if flags & FLAG_COMPACT != 0 && fits {
            // Freshly written: no garbage, records in dense order.
            let records = std::mem::take(&mut ix.store.arena).into_boxed_slice();
            Some(Table::compact_from(records, count, max_entries, max_len))
        } else {
            Some(Table {
                repr: Repr::Indexed(Box::new(ix)),
            })
        }
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
                // Every fourth round uses limits too big for the inline form.
                let max_len = if op % 20_000 == 0 {
                    70_000
                } else {
                    4 + rng.below(12)
                };
                t = Table::new(max_entries, max_len);
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
                // Exactly sized: the records and nothing else (plus the header if wide).
                let records: usize = t.iter().map(|(k, v)| record_len(k.len(), v.len())).sum();
                let header = if ml > 65_535 {
                    alloc_size(std::mem::size_of::<Wide>())
                } else {
                    0
                };
                assert_eq!(t.heap_bytes(), header + alloc_size(records));
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
    fn sizes() {
        let size = std::mem::size_of::<Table>();
        println!("size_of::<Table>() = {size}");
        assert!(size <= 24, "{size}");
        assert!(std::mem::size_of::<Option<Table>>() <= 24);
        assert_eq!(Table::new(128, 64).heap_bytes(), 0);
        assert_eq!(alloc_size(0), 0);
        assert_eq!(alloc_size(1), 32);
        assert_eq!(alloc_size(24), 32);
        assert_eq!(alloc_size(25), 48);
        assert_eq!(alloc_size(120), 128);
        assert_eq!(alloc_size(121), 144);
    }

    #[test]
    fn small_hash_bytes_per_field() {
        let n = 100_000;
        let mut total = 0;
        let mut sample = 0;
        for i in 0..n {
            let mut t = Table::new(128, 64);
            for j in 0..10 {
                t.insert(format!("f{j}").as_bytes(), format!("v{i}:{j}").as_bytes())
                    .unwrap();
            }
            assert!(t.is_compact());
            assert_eq!(t.get(b"f3"), Some(format!("v{i}:3").as_bytes()));
            total += t.heap_bytes();
            if i == 12_345 {
                sample = t.heap_bytes();
            }
        }
        let size = std::mem::size_of::<Table>();
        println!(
            "10-field hash f{{j}} -> v{{i}}:{{j}}: size_of::<Table>() {size}, heap_bytes {sample} \
             (i = 12345), mean over {n} hashes {:.1} => {:.1} bytes/field (+ the Box<Obj> block)",
            total as f64 / n as f64,
            (total as f64 / n as f64 + size as f64) / 10.0
        );
        // 10 records of 12 bytes: one 128-byte block.
        assert_eq!(sample, 128);
    }

    #[test]
    fn wide_limits() {
        // Limits beyond u16 keep working (with a boxed header).
        let mut t = Table::new(3, 100_000);
        assert_eq!(t.limits(), (3, 100_000));
        assert!(t.is_compact());
        let long = vec![b'x'; 70_000];
        t.insert(b"a", &long).unwrap();
        t.insert(b"b", b"1").unwrap();
        t.insert(b"c", b"2").unwrap();
        assert!(t.is_compact());
        assert_eq!(t.get(b"a"), Some(&long[..]));
        assert_eq!(
            t.heap_bytes(),
            alloc_size(std::mem::size_of::<Wide>())
                + alloc_size(record_len(1, 70_000) + 2 * record_len(1, 1))
        );
        let rev: Vec<&[u8]> = t.iter().rev().map(|e| e.0).collect();
        assert_eq!(rev, vec![&b"c"[..], b"b", b"a"]);
        let mut buf = Vec::new();
        t.encode(&mut buf);
        let d = Table::decode(&buf).unwrap();
        assert!(d.is_compact());
        assert_eq!(d.limits(), (3, 100_000));
        assert_eq!(collect(&d), collect(&t));
        assert_eq!(t.remove_index(1), Some((b"b".to_vec(), b"1".to_vec())));
        t.insert(b"d", b"3").unwrap();
        assert!(t.is_compact());
        t.insert(b"e", b"4").unwrap();
        assert!(!t.is_compact());
        assert_eq!(t.limits(), (3, 100_000));
        let keys: Vec<&[u8]> = t.iter().map(|e| e.0).collect();
        assert_eq!(keys, vec![&b"a"[..], b"c", b"d", b"e"]);

        let mut t = Table::new(70_000, 4);
        for i in 0..100 {
            t.insert(format!("k{i}").as_bytes(), b"v").unwrap();
        }
        assert!(t.is_compact());
        assert_eq!(t.len(), 100);
        assert!(t.remove(b"k50"));
        assert!(!t.remove(b"k50"));
        assert_eq!(t.len(), 99);
        t.insert(b"k1", b"12345").unwrap();
        assert!(!t.is_compact());
        assert_eq!(t.limits(), (70_000, 4));

        let t = Table::new(65_535, 65_535);
        assert_eq!(t.limits(), (65_535, 65_535));
        assert_eq!(t.heap_bytes(), 0);
    }

    #[test]
    fn compact_iter_both_ends() {
        let mut t = Table::new(128, 64);
        for i in 0..20 {
            t.insert(format!("f{i}").as_bytes(), format!("{i}").as_bytes())
                .unwrap();
        }
        let fwd = collect(&t);
        let mut rev: Vec<(Vec<u8>, Vec<u8>)> = t
            .iter()
            .rev()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        rev.reverse();
        assert_eq!(rev, fwd);
        let mut it = t.iter();
        assert_eq!(it.len(), 20);
        let mut got = Vec::new();
        let mut back = Vec::new();
        while let Some(a) = it.next() {
            got.push(a.0.to_vec());
            if let Some(b) = it.next_back() {
                back.push(b.0.to_vec());
            }
            assert_eq!(it.len(), 20 - got.len() - back.len());
        }
        back.reverse();
        got.extend(back);
        let want: Vec<Vec<u8>> = fwd.into_iter().map(|e| e.0).collect();
        assert_eq!(got, want);
        for (i, w) in want.iter().enumerate() {
            assert_eq!(t.get_index(i).map(|e| e.0), Some(&w[..]));
        }
        assert_eq!(t.get_index(20), None);
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
        assert!(b < 42.7, "{b}");
    }

    /// New limits: kept while within them (also across the u16 boundary, to the wide
    /// header and back), converting at the next set when the table holds more; indexed tables only
    /// note them. Nothing is lost either way.
    #[test]
    fn set_limits_follows_or_converts() {
        let mut t = Table::new(16, 64);
        for i in 0..10u32 {
            t.insert(format!("f{i}").as_bytes(), b"v").unwrap();
        }
        t.set_limits(100_000, 64);
        assert!(t.is_compact());
        assert_eq!(t.limits(), (100_000, 64));
        t.set_limits(12, 8);
        assert!(t.is_compact());
        assert_eq!(t.limits(), (12, 8));
        t.insert(b"f10", b"v").unwrap();
        t.insert(b"f11", b"v").unwrap();
        assert!(t.is_compact());
        t.set_limits(11, 8);
        assert!(t.is_compact(), "nothing converts until a field is set");
        assert!(!t.insert(b"f0", b"w").unwrap());
        assert!(
            !t.is_compact(),
            "an update of 12 entries over a limit of 11 converts"
        );
        t.insert(b"f0", b"v").unwrap();
        assert_eq!(t.len(), 12);
        for i in 0..12u32 {
            assert_eq!(t.get(format!("f{i}").as_bytes()), Some(&b"v"[..]));
        }
        t.set_limits(512, 64);
        assert!(!t.is_compact(), "never back");
        assert_eq!(t.limits(), (512, 64));
    }
}
