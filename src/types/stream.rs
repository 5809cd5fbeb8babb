//! A stream: entries with ever-growing ids in compact chunks, and its consumer groups.
//!
//! Entries live in chunks of at most [`NODE_MAX_ENTRIES`] entries (deleted ones included)
//! and about [`NODE_MAX_BYTES`] bytes, like Redis's listpack nodes, so approximate
//! trimming (`MAXLEN ~`) removes whole chunks at the same points Redis removes whole
//! nodes. A chunk is one byte buffer: the field names of its first entry (the *master*
//! fields), then each entry as
//!
//! ```text
//! varint (ms_delta << 4 | flags)   ms since the previous entry; flags: 1 deleted, 2 same
//!                                   fields, 4 big delta (then 0 << 4, and a varint of it),
//!                                   8 zero seq (the seq varint is left out)
//! [varint seq]                      first entry / new ms: the seq; same ms: seq - prev - 1
//! [varint nfields]                  only without the same-fields flag
//! (varint len, bytes) ...           values only (same fields) or field, value pairs
//! ```
//!
//! so an entry whose fields match the master's costs its values plus two or three bytes.
//! XDEL flips the deleted flag in place; chunks left without live entries are dropped in
//! bulk once they are half the chunk index (amortized O(1) per deletion). Lookups by id
//! binary-search the chunk index, then scan one chunk (≤ 100 entries).
//!
//! Consumer groups keep their pending-entries list (PEL) as an ordered map by id, and each
//! consumer the set of its pending ids, so acks, claims and XPENDING ranges are O(log n).
//! Every change to group state passes a method here, which keeps the counters memory
//! accounting reads in O(1).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::encoding::{alloc_size, grow, put_varint, read_bytes, read_varint, read_varint_checked};

/// Redis's `stream-node-max-entries`.
pub const NODE_MAX_ENTRIES: usize = 100;
/// Redis's `stream-node-max-bytes`.
pub const NODE_MAX_BYTES: usize = 4096;
/// Redis's marker for a group's unknown entries-read counter.
pub const INVALID_ENTRIES_READ: i64 = -1;

const DELETED: usize = 1;
const SAME_FIELDS: usize = 2;
/// The ms delta does not fit beside the flags: a full varint of it follows.
const BIG_DELTA: usize = 4;
/// The seq varint is 0 and left out (the usual next id: same ms and seq + 1, or a new
/// ms and seq 0).
const ZERO_SEQ: usize = 8;
const FLAG_BITS: u32 = 4;
const FLAGS: usize = 15;
/// Deltas below this share the header varint with the flags.
const SMALL_DELTA: u64 = 1 << (64 - FLAG_BITS);

/// An entry id: milliseconds and a sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub const fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    pub fn is_zero(&self) -> bool {
        self.ms == 0 && self.seq == 0
    }

    /// The next id, `None` after the last possible one.
    pub fn incr(self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId::new(self.ms, self.seq + 1))
        } else if self.ms < u64::MAX {
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            None
        }
    }

    /// The previous id, `None` before 0-0.
    pub fn decr(self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId::new(self.ms, self.seq - 1))
        } else if self.ms > 0 {
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            None
        }
    }

    /// `ms-seq`, as replies show it.
    pub fn to_bytes(self) -> Bytes {
        Bytes::from(self.to_string())
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A field's value as a chunk holds it: bytes, or a small integer kept as a number (its
/// text is the canonical decimal, so it reads back exactly as it was written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Val<'a> {
    Raw(&'a [u8]),
    Int(u64),
}

impl Val<'_> {
    /// The value's bytes.
    pub fn to_bytes(self) -> Bytes {
        match self {
            Val::Raw(b) => Bytes::copy_from_slice(b),
            Val::Int(n) => Bytes::from(n.to_string()),
        }
    }

    /// The value's bytes, appended to `out`.
    pub fn append_to(self, out: &mut Vec<u8>) {
        match self {
            Val::Raw(b) => out.extend_from_slice(b),
            Val::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
        }
    }

    /// Its length in bytes.
    pub fn len(self) -> usize {
        match self {
            Val::Raw(b) => b.len(),
            Val::Int(mut n) => {
                let mut d = 1;
                while n >= 10 {
                    n /= 10;
                    d += 1;
                }
                d
            }
        }
    }
}

/// Values stored as numbers: canonical decimals (no sign, no leading zero) of up to 18
/// digits.
fn small_int(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || (v.len() > 1 && v[0] == b'0') {
        return None;
    }
    let mut n = 0u64;
    for &c in v {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(c - b'0');
    }
    Some(n)
}

/// A value's encoding: `varint(n << 1 | 1)` for a small integer, else
/// `varint(len << 1)` and the bytes.
fn put_value(out: &mut Vec<u8>, v: &[u8]) {
    match small_int(v) {
        Some(n) => put_varint(out, (n << 1) | 1),
        None => {
            put_varint(out, (v.len() as u64) << 1);
            out.extend_from_slice(v);
        }
    }
}

/// An entry's field-value pairs, borrowed from its chunk.
pub type Fields<'a> = Vec<(&'a [u8], Val<'a>)>;

/// One chunk of entries (see the module docs for the byte layout).
#[derive(Clone, Debug)]
struct Chunk {
    /// Id of the first entry (live or not).
    first: StreamId,
    /// Id of the last entry (live or not).
    last: StreamId,
    /// Entries, deleted ones included.
    count: u32,
    /// Live entries.
    live: u32,
    /// Where entries start (after the master field names).
    entries_at: u32,
    /// Where the last entry starts.
    last_at: u32,
    /// The size Redis's listpack for these entries would have: chunks are cut where
    /// Redis cuts nodes (`stream-node-max-bytes`), so `~` trims agree with Redis's.
    lp_bytes: u32,
    data: Vec<u8>,
}

/// Bytes of a listpack element's back-length for an element of `n` bytes.
fn lp_backlen(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    }
}

/// Bytes of a listpack integer element.
fn lp_int(v: i64) -> usize {
    let enc = match v {
        0..=127 => 1,
        -4096..=4095 => 2,
        -32768..=32767 => 3,
        -8388608..=8388607 => 4,
        -2147483648..=2147483647 => 5,
        _ => 9,
    };
    enc + lp_backlen(enc)
}

/// Bytes of a listpack element holding `s` (an integer when Redis would store one).
fn lp_str(s: &[u8]) -> usize {
    if let Some(v) = lp_as_int(s) {
        return lp_int(v);
    }
    let enc = match s.len() {
        0..=63 => 1 + s.len(),
        64..=4095 => 2 + s.len(),
        _ => 5 + s.len(),
    };
    enc + lp_backlen(enc)
}

/// Redis's `lpStringToInt64`: a canonical decimal of at most 20 characters.
fn lp_as_int(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits[0] == b'0' && (digits.len() > 1 || s.len() > 1))
    {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// A decoded entry header.
struct Raw {
    id: StreamId,
    /// Offset of the header varint (its first byte holds the flags).
    at: usize,
    flags: usize,
    /// Offset of the field count or values.
    body: usize,
}

impl Chunk {
    fn new(id: StreamId, fields: &[(&[u8], &[u8])]) -> Chunk {
        let mut data = Vec::new();
        put_varint(&mut data, fields.len() as u64);
        for (f, _) in fields {
            put_varint(&mut data, f.len() as u64);
            data.extend_from_slice(f);
        }
        let entries_at = data.len() as u32;
        // Header and end, then the master entry: count, deleted, field count, the
        // fields, a 0 terminator.
        let lp = 7
            + lp_int(1)
            + lp_int(0)
            + lp_int(fields.len() as i64)
            + fields.iter().map(|(f, _)| lp_str(f)).sum::<usize>()
            + lp_int(0);
        Chunk {
            first: id,
            last: id,
            count: 0,
            live: 0,
            entries_at,
            last_at: entries_at,
            lp_bytes: lp as u32,
            data,
        }
    }

    /// The master field names.
    fn master(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let (n, mut p) = read_varint(&self.data, 0);
        (0..n).map(move |_| {
            let (len, at) = read_varint(&self.data, p);
            p = at + len;
            &self.data[at..at + len]
        })
    }

    fn same_as_master(&self, fields: &[(&[u8], &[u8])]) -> bool {
        let (n, _) = read_varint(&self.data, 0);
        n == fields.len() && self.master().zip(fields).all(|(m, (f, _))| m == *f)
    }

    /// The listpack bytes Redis would add for this entry: flags, ms and seq relative to
    /// the node's first id, [field count, fields], values, element count.
    fn lp_entry(&self, id: StreamId, fields: &[(&[u8], &[u8])], same: bool) -> usize {
        let ms = id.ms.wrapping_sub(self.first.ms) as i64;
        let seq = id.seq.wrapping_sub(self.first.seq) as i64;
        let mut n = lp_int(2) + lp_int(ms) + lp_int(seq);
        let mut elements = fields.len() + 3;
        if !same {
            n += lp_int(fields.len() as i64) + fields.iter().map(|(f, _)| lp_str(f)).sum::<usize>();
            elements += fields.len() + 1;
        }
        n + fields.iter().map(|(_, v)| lp_str(v)).sum::<usize>() + lp_int(elements as i64)
    }

    fn push(&mut self, id: StreamId, fields: &[(&[u8], &[u8])]) {
        let same = self.same_as_master(fields);
        let lp = self.lp_entry(id, fields, same);
        self.lp_bytes = self
            .lp_bytes
            .saturating_add(lp.min(u32::MAX as usize) as u32);
        let (ms_delta, seq) = if self.count == 0 {
            (id.ms - self.first.ms, id.seq)
        } else if id.ms == self.last.ms {
            (0, id.seq - self.last.seq - 1)
        } else {
            (id.ms - self.last.ms, id.seq)
        };
        let mut flags = if same { SAME_FIELDS as u64 } else { 0 };
        if seq == 0 {
            flags |= ZERO_SEQ as u64;
        }
        let need = 24
            + fields
                .iter()
                .map(|(f, v)| v.len() + 10 + if same { 0 } else { f.len() + 10 })
                .sum::<usize>();
        grow(&mut self.data, need);
        self.last_at = self.data.len() as u32;
        if ms_delta < SMALL_DELTA {
            put_varint(&mut self.data, (ms_delta << FLAG_BITS) | flags);
        } else {
            put_varint(&mut self.data, flags | BIG_DELTA as u64);
            put_varint(&mut self.data, ms_delta);
        }
        if seq != 0 {
            put_varint(&mut self.data, seq);
        }
        if !same {
            put_varint(&mut self.data, fields.len() as u64);
        }
        for (f, v) in fields {
            if !same {
                put_varint(&mut self.data, f.len() as u64);
                self.data.extend_from_slice(f);
            }
            put_value(&mut self.data, v);
        }
        if self.count == 0 {
            self.first = id;
        }
        self.last = id;
        self.count += 1;
        self.live += 1;
    }

    /// Whether an entry with `id` and `fields` may join this chunk: Redis's rule for its
    /// nodes (fewer than 100 entries, and its listpack bytes plus the new entry's raw
    /// field and value bytes below 4096).
    fn fits(&self, id: StreamId, fields: &[(&[u8], &[u8])]) -> bool {
        let raw: usize = fields.iter().map(|(f, v)| f.len() + v.len()).sum();
        self.live > 0
            && (self.count as usize) < NODE_MAX_ENTRIES
            && (self.lp_bytes as usize).saturating_add(raw) < NODE_MAX_BYTES
            && id > self.last
    }

    /// The entry at `at`, following the one with id `prev` (`None` for the first).
    fn raw_at(&self, at: usize, prev: Option<StreamId>) -> Raw {
        let (h, mut p) = read_varint(&self.data, at);
        let ms_delta = if h & BIG_DELTA != 0 {
            let (d, q) = read_varint(&self.data, p);
            p = q;
            d as u64
        } else {
            (h >> FLAG_BITS) as u64
        };
        let (s, body) = if h & ZERO_SEQ != 0 {
            (0, p)
        } else {
            read_varint(&self.data, p)
        };
        let id = match prev {
            None => StreamId::new(self.first.ms + ms_delta, s as u64),
            Some(prev) if ms_delta == 0 => StreamId::new(prev.ms, prev.seq + 1 + s as u64),
            Some(prev) => StreamId::new(prev.ms + ms_delta, s as u64),
        };
        Raw {
            id,
            at,
            flags: h & FLAGS,
            body,
        }
    }

    /// Offset just past the entry.
    fn end_of(&self, r: &Raw) -> usize {
        let mut p = r.body;
        let pairs = if r.flags & SAME_FIELDS != 0 {
            read_varint(&self.data, 0).0
        } else {
            let (n, q) = read_varint(&self.data, p);
            p = q;
            n
        };
        for _ in 0..pairs {
            if r.flags & SAME_FIELDS == 0 {
                let (len, q) = read_varint(&self.data, p);
                p = q + len;
            }
            p = self.value_at(p).1;
        }
        p
    }

    /// The value at `p` and the offset after it.
    fn value_at(&self, p: usize) -> (Val<'_>, usize) {
        let (h, q) = read_varint(&self.data, p);
        if h & 1 != 0 {
            (Val::Int((h >> 1) as u64), q)
        } else {
            let len = h >> 1;
            (Val::Raw(&self.data[q..q + len]), q + len)
        }
    }

    /// Every entry's header, in order.
    fn raws(&self) -> Vec<Raw> {
        let mut out = Vec::with_capacity(self.count as usize);
        let mut p = self.entries_at as usize;
        let mut prev = None;
        for _ in 0..self.count {
            let r = self.raw_at(p, prev);
            p = self.end_of(&r);
            prev = Some(r.id);
            out.push(r);
        }
        out
    }

    fn fields<'a>(&'a self, r: &Raw, out: &mut Fields<'a>) {
        out.clear();
        let mut p = r.body;
        if r.flags & SAME_FIELDS != 0 {
            for name in self.master() {
                let (v, q) = self.value_at(p);
                out.push((name, v));
                p = q;
            }
        } else {
            let (n, q) = read_varint(&self.data, p);
            p = q;
            for _ in 0..n {
                let (flen, q) = read_varint(&self.data, p);
                let f = &self.data[q..q + flen];
                let (v, q2) = self.value_at(q + flen);
                out.push((f, v));
                p = q2;
            }
        }
    }

    fn mark_deleted(&mut self, r: &Raw) {
        self.data[r.at] |= DELETED as u8;
        self.live -= 1;
    }
}

/// How XADD / XTRIM trim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trim {
    /// Keep at most this many entries.
    MaxLen(u64),
    /// Remove entries with smaller ids.
    MinId(StreamId),
}

/// An entry a consumer was delivered and has not acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nack {
    pub consumer: Bytes,
    /// Unix ms of the last delivery.
    pub delivery_time: u64,
    pub delivery_count: u64,
}

/// A consumer of a group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consumer {
    /// Unix ms of its last read or claim.
    pub seen_time: u64,
    /// Its pending ids.
    pub pel: BTreeSet<StreamId>,
}

/// A consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The last id delivered to the group.
    pub last_id: StreamId,
    /// Entries the group read (its logical position), or [`INVALID_ENTRIES_READ`].
    pub entries_read: i64,
    pel: BTreeMap<StreamId, Nack>,
    consumers: BTreeMap<Bytes, Consumer>,
}

impl Group {
    /// Pending entries, by id.
    pub fn pel(&self) -> &BTreeMap<StreamId, Nack> {
        &self.pel
    }

    /// Consumers, by name.
    pub fn consumers(&self) -> &BTreeMap<Bytes, Consumer> {
        &self.consumers
    }
}

/// A stream value.
#[derive(Clone, Debug, Default)]
pub struct Stream {
    chunks: VecDeque<Chunk>,
    /// Live entries.
    len: u64,
    /// The id of the last entry ever added (or set by XSETID).
    pub last_id: StreamId,
    /// The largest id XDEL removed.
    pub max_deleted: StreamId,
    /// Entries ever added.
    pub entries_added: u64,
    /// Chunks without live entries still in the index.
    dead: usize,
    /// Allocated bytes of every chunk buffer but the last.
    closed_bytes: usize,
    groups: BTreeMap<Bytes, Group>,
    /// Pending entries over all groups (memory accounting).
    pel_total: usize,
    /// Consumers over all groups, and the bytes of their and the groups' names.
    consumers_total: usize,
    name_bytes: usize,
}

impl Stream {
    pub fn new() -> Stream {
        Stream::default()
    }

    /// Live entries.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first live entry's id (0-0 when empty). O(1) unless that chunk's first
    /// entries are deleted (then a scan of that one chunk): chunks left without live
    /// entries at either end are dropped as soon as they are.
    pub fn first_id(&self) -> StreamId {
        let Some(c) = self.chunks.iter().find(|c| c.live > 0) else {
            return StreamId::MIN;
        };
        if usize::from(c.data[c.entries_at as usize]) & DELETED == 0 {
            return c.first;
        }
        let mut p = c.entries_at as usize;
        let mut prev = None;
        for _ in 0..c.count {
            let r = c.raw_at(p, prev);
            if r.flags & DELETED == 0 {
                return r.id;
            }
            p = c.end_of(&r);
            prev = Some(r.id);
        }
        StreamId::MIN
    }

    /// The last live entry's id (0-0 when empty), O(1) unless the last entry is deleted.
    pub fn last_live_id(&self) -> StreamId {
        let Some(c) = self.chunks.iter().rev().find(|c| c.live > 0) else {
            return StreamId::MIN;
        };
        if usize::from(c.data[c.last_at as usize]) & DELETED == 0 {
            return c.last;
        }
        c.raws()
            .iter()
            .rev()
            .find(|r| r.flags & DELETED == 0)
            .map_or(StreamId::MIN, |r| r.id)
    }

    /// Chunks holding live entries and a stand-in for Redis's radix-tree node count (what
    /// XINFO STREAM reports as `radix-tree-keys` / `radix-tree-nodes`).
    pub fn layout(&self) -> (usize, usize) {
        let keys = self.chunks.iter().filter(|c| c.live > 0).count();
        (keys, keys + 1)
    }

    /// Append an entry; `id` must be greater than [`Stream::last_id`].
    pub fn add(&mut self, id: StreamId, fields: &[(&[u8], &[u8])]) {
        debug_assert!(id > self.last_id || (self.entries_added == 0 && id.is_zero()));
        let fits = self.chunks.back().is_some_and(|c| c.fits(id, fields));
        if !fits {
            if let Some(c) = self.chunks.back_mut() {
                c.data.shrink_to_fit();
                self.closed_bytes += alloc_size(c.data.capacity());
            }
            self.chunks.push_back(Chunk::new(id, fields));
        }
        if let Some(c) = self.chunks.back_mut() {
            c.push(id, fields);
        }
        self.len += 1;
        self.entries_added = self.entries_added.wrapping_add(1);
        self.last_id = id;
    }

    /// Index of the first chunk whose last id is ≥ `id`.
    fn chunk_from(&self, id: StreamId) -> usize {
        self.chunks.partition_point(|c| c.last < id)
    }

    /// Visit live entries with ids in `[start, end]`, ascending (or descending with
    /// `rev`), until `f` answers `false`.
    pub fn range(
        &self,
        start: StreamId,
        end: StreamId,
        rev: bool,
        mut f: impl FnMut(StreamId, &Fields<'_>) -> bool,
    ) {
        if start > end {
            return;
        }
        let mut fields = Vec::new();
        if !rev {
            for c in self.chunks.range(self.chunk_from(start)..) {
                if c.first > end {
                    return;
                }
                if c.live == 0 {
                    continue;
                }
                let mut p = c.entries_at as usize;
                let mut prev = None;
                for _ in 0..c.count {
                    let r = c.raw_at(p, prev);
                    p = c.end_of(&r);
                    prev = Some(r.id);
                    if r.id > end {
                        return;
                    }
                    if r.id < start || r.flags & DELETED != 0 {
                        continue;
                    }
                    c.fields(&r, &mut fields);
                    if !f(r.id, &fields) {
                        return;
                    }
                }
            }
        } else {
            let upto = self.chunks.partition_point(|c| c.first <= end);
            for c in self.chunks.range(..upto).rev() {
                if c.last < start {
                    return;
                }
                if c.live == 0 {
                    continue;
                }
                for r in c.raws().iter().rev() {
                    if r.id < start {
                        return;
                    }
                    if r.id > end || r.flags & DELETED != 0 {
                        continue;
                    }
                    c.fields(r, &mut fields);
                    if !f(r.id, &fields) {
                        return;
                    }
                }
            }
        }
    }

    /// Whether a live entry has this id.
    pub fn contains(&self, id: StreamId) -> bool {
        let mut found = false;
        self.range(id, id, false, |_, _| {
            found = true;
            false
        });
        found
    }

    /// Delete the live entry `id`; whether there was one.
    pub fn delete(&mut self, id: StreamId) -> bool {
        let i = self.chunk_from(id);
        let Some(c) = self.chunks.get_mut(i) else {
            return false;
        };
        if c.first > id || c.live == 0 {
            return false;
        }
        let mut p = c.entries_at as usize;
        let mut prev = None;
        let mut hit = None;
        for _ in 0..c.count {
            let r = c.raw_at(p, prev);
            if r.id >= id {
                if r.id == id && r.flags & DELETED == 0 {
                    hit = Some(r);
                }
                break;
            }
            p = c.end_of(&r);
            prev = Some(r.id);
        }
        let Some(r) = hit else {
            return false;
        };
        c.mark_deleted(&r);
        if c.live == 0 {
            self.dead += 1;
        }
        self.len -= 1;
        if id > self.max_deleted {
            self.max_deleted = id;
        }
        self.drop_dead_ends();
        self.compact();
        true
    }

    /// Drop chunks without live entries at both ends (so the first and last live ids
    /// are found in O(1)).
    fn drop_dead_ends(&mut self) {
        while self.chunks.front().is_some_and(|c| c.live == 0) {
            self.pop_front();
        }
        while self.chunks.back().is_some_and(|c| c.live == 0) {
            self.pop_back();
        }
    }

    /// Remove the last chunk (the one before becomes the tail, no longer counted in
    /// `closed_bytes`).
    fn pop_back(&mut self) {
        if let Some(c) = self.chunks.pop_back() {
            if c.live == 0 {
                self.dead = self.dead.saturating_sub(1);
            }
            if let Some(nb) = self.chunks.back() {
                self.closed_bytes = self
                    .closed_bytes
                    .saturating_sub(alloc_size(nb.data.capacity()));
            }
        }
    }

    /// Drop chunks without live entries once they are many.
    fn compact(&mut self) {
        if self.dead < 8 || self.dead * 2 < self.chunks.len() {
            return;
        }
        let tail = self.chunks.len() - 1;
        let mut i = 0;
        let mut freed = 0;
        self.chunks.retain(|c| {
            let keep = c.live > 0;
            if !keep && i != tail {
                freed += alloc_size(c.data.capacity());
            }
            i += 1;
            keep
        });
        self.closed_bytes -= freed;
        self.dead = 0;
        self.fix_tail_bytes();
    }

    /// After the last chunk changed: it is not counted in `closed_bytes`.
    fn fix_tail_bytes(&mut self) {
        // `closed_bytes` counts all but the last chunk; recount when the last one was
        // removed (rare: trims and compaction).
        let n = self.chunks.len();
        self.closed_bytes = self
            .chunks
            .iter()
            .take(n.saturating_sub(1))
            .map(|c| alloc_size(c.data.capacity()))
            .sum();
    }

    /// Set the last id (XSETID). Deleted entries past it are dropped for good, so ids
    /// keep growing through the chunks when it moves back over them.
    pub fn set_last_id(&mut self, id: StreamId) {
        self.last_id = id;
        while let Some(c) = self.chunks.back() {
            if c.last <= id {
                break;
            }
            if c.live == 0 {
                self.pop_back();
                continue;
            }
            // Entries after the last live one are all deleted: cut them off.
            let raws = c.raws();
            let Some(i) = raws.iter().rposition(|r| r.flags & DELETED == 0) else {
                break;
            };
            let end = c.end_of(&raws[i]);
            let (last, last_at) = (raws[i].id, raws[i].at as u32);
            if let Some(c) = self.chunks.back_mut() {
                c.data.truncate(end);
                c.count = i as u32 + 1;
                c.last = last;
                c.last_at = last_at;
            }
            break;
        }
    }

    /// Remove the first chunk.
    fn pop_front(&mut self) {
        if let Some(c) = self.chunks.pop_front() {
            if c.live == 0 {
                self.dead = self.dead.saturating_sub(1);
            }
            if self.chunks.is_empty() {
                self.closed_bytes = 0;
            } else {
                self.closed_bytes -= alloc_size(c.data.capacity());
            }
        }
    }

    /// Trim from the oldest entry, as Redis does: whole chunks while they can go; with
    /// `approx`, stop at the first chunk that cannot go whole; `limit` (> 0) caps the
    /// entries removed in whole chunks. Returns the entries removed.
    pub fn trim(&mut self, how: Trim, approx: bool, limit: u64) -> u64 {
        let mut deleted = 0u64;
        while let Some(c) = self.chunks.front() {
            if let Trim::MaxLen(max) = how {
                if self.len <= max {
                    break;
                }
            }
            if c.live == 0 {
                self.pop_front();
                continue;
            }
            let entries = u64::from(c.live);
            if limit > 0 && deleted + entries > limit {
                break;
            }
            let whole = match how {
                Trim::MaxLen(max) => self.len - entries >= max,
                Trim::MinId(min) => c.last < min,
            };
            if whole {
                self.pop_front();
                self.len -= entries;
                deleted += entries;
                continue;
            }
            if approx {
                break;
            }
            let raws = c.raws();
            let mut marked = Vec::new();
            let mut len = self.len;
            for r in raws {
                if r.flags & DELETED != 0 {
                    continue;
                }
                let stop = match how {
                    Trim::MaxLen(max) => len <= max,
                    Trim::MinId(min) => r.id >= min,
                };
                if stop {
                    break;
                }
                len -= 1;
                marked.push(r);
            }
            if let Some(c) = self.chunks.front_mut() {
                for r in &marked {
                    c.mark_deleted(r);
                }
                if c.live == 0 {
                    self.dead += 1;
                }
            }
            deleted += marked.len() as u64;
            self.len = len;
            break;
        }
        self.drop_dead_ends();
        if self.chunks.len() <= 1 {
            self.closed_bytes = 0;
        }
        deleted
    }

    /// Redis's `streamEstimateDistanceFromFirstEverEntry`: the entries-read counter of a
    /// group whose last id is `id`, or [`INVALID_ENTRIES_READ`] when it cannot be known.
    pub fn estimate_distance(&self, id: StreamId) -> i64 {
        if self.entries_added == 0 {
            return 0;
        }
        let added = self.entries_added as i64;
        if self.len == 0 && id <= self.last_id {
            return added;
        }
        if id == self.last_id {
            return added;
        }
        if id > self.last_id {
            return INVALID_ENTRIES_READ;
        }
        let first = self.first_id();
        if self.max_deleted.is_zero() || self.max_deleted < first {
            if id < first {
                return added.wrapping_sub(self.len as i64);
            }
            if id == first {
                return added.wrapping_sub(self.len as i64).wrapping_add(1);
            }
        }
        INVALID_ENTRIES_READ
    }

    /// Redis's `streamRangeHasTombstones` from `start` to the end.
    pub fn has_tombstones_from(&self, start: StreamId) -> bool {
        if self.len == 0 || self.max_deleted.is_zero() {
            return false;
        }
        if self.first_id() > self.max_deleted {
            return false;
        }
        start <= self.max_deleted
    }

    /// A group's lag (XINFO GROUPS), `None` when unknown.
    pub fn lag(&self, g: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if g.entries_read != INVALID_ENTRIES_READ && !self.has_tombstones_from(g.last_id) {
            return Some((self.entries_added as i64).wrapping_sub(g.entries_read));
        }
        let read = self.estimate_distance(g.last_id);
        (read != INVALID_ENTRIES_READ).then(|| (self.entries_added as i64).wrapping_sub(read))
    }

    // ---- consumer groups ----

    /// Groups by name.
    pub fn groups(&self) -> &BTreeMap<Bytes, Group> {
        &self.groups
    }

    pub fn group(&self, name: &[u8]) -> Option<&Group> {
        self.groups.get(name)
    }

    /// Create a group; `false` if it exists.
    pub fn create_group(&mut self, name: &[u8], last_id: StreamId, entries_read: i64) -> bool {
        if self.groups.contains_key(name) {
            return false;
        }
        self.name_bytes += name.len();
        self.groups.insert(
            Bytes::copy_from_slice(name),
            Group {
                last_id,
                entries_read,
                pel: BTreeMap::new(),
                consumers: BTreeMap::new(),
            },
        );
        true
    }

    /// Destroy a group; whether it existed.
    pub fn destroy_group(&mut self, name: &[u8]) -> bool {
        let Some(g) = self.groups.remove(name) else {
            return false;
        };
        self.name_bytes -= name.len();
        self.pel_total -= g.pel.len();
        self.consumers_total -= g.consumers.len();
        self.name_bytes -= g.consumers.keys().map(|k| k.len()).sum::<usize>();
        true
    }

    /// XGROUP SETID.
    pub fn set_group_id(&mut self, name: &[u8], id: StreamId, entries_read: i64) -> bool {
        match self.groups.get_mut(name) {
            Some(g) => {
                g.last_id = id;
                g.entries_read = entries_read;
                true
            }
            None => false,
        }
    }

    /// The consumer, created if absent (seen now); `None` without the group. The flag
    /// says whether it was created.
    pub fn touch_consumer(&mut self, group: &[u8], consumer: &[u8], now: u64) -> Option<bool> {
        let g = self.groups.get_mut(group)?;
        match g.consumers.get_mut(consumer) {
            Some(c) => {
                c.seen_time = now;
                Some(false)
            }
            None => {
                g.consumers.insert(
                    Bytes::copy_from_slice(consumer),
                    Consumer {
                        seen_time: now,
                        pel: BTreeSet::new(),
                    },
                );
                self.consumers_total += 1;
                self.name_bytes += consumer.len();
                Some(true)
            }
        }
    }

    /// Create a consumer without touching an existing one: `None` without the group,
    /// else whether it was created.
    pub fn create_consumer(&mut self, group: &[u8], consumer: &[u8], now: u64) -> Option<bool> {
        let g = self.groups.get(group)?;
        if g.consumers.contains_key(consumer) {
            return Some(false);
        }
        self.touch_consumer(group, consumer, now)
    }

    /// Delete a consumer and its pending entries: `None` without the group, else the
    /// number of pending entries it had (`None` inside if it did not exist).
    pub fn delete_consumer(&mut self, group: &[u8], consumer: &[u8]) -> Option<Option<usize>> {
        let g = self.groups.get_mut(group)?;
        let Some(c) = g.consumers.remove(consumer) else {
            return Some(None);
        };
        for id in &c.pel {
            g.pel.remove(id);
        }
        self.pel_total -= c.pel.len();
        self.consumers_total -= 1;
        self.name_bytes -= consumer.len();
        Some(Some(c.pel.len()))
    }

    /// A group's read of new entries delivered `id` (XREADGROUP `>`): advance its last
    /// id and counter as Redis does.
    pub fn advance_group(&mut self, group: &[u8], id: StreamId) {
        let tomb = self.has_tombstones_from(id);
        let added = self.entries_added;
        let estimate = self.estimate_distance(id);
        if let Some(g) = self.groups.get_mut(group) {
            if id > g.last_id {
                if g.entries_read != INVALID_ENTRIES_READ && !tomb {
                    g.entries_read = g.entries_read.wrapping_add(1);
                } else if added > 0 {
                    g.entries_read = estimate;
                }
                g.last_id = id;
            }
        }
    }

    /// Record `id` as delivered to `consumer` at `now` with `count` deliveries (replacing
    /// any previous owner). The group and consumer must exist.
    pub fn set_pending(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        id: StreamId,
        now: u64,
        count: u64,
    ) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        // The consumer's own name, shared (no copy per pending entry).
        let owner = match g.consumers.get_key_value(consumer) {
            Some((name, _)) => name.clone(),
            None => Bytes::copy_from_slice(consumer),
        };
        let old = g.pel.insert(
            id,
            Nack {
                consumer: owner,
                delivery_time: now,
                delivery_count: count,
            },
        );
        match old {
            Some(n) => {
                if let Some(c) = g.consumers.get_mut(&n.consumer) {
                    c.pel.remove(&id);
                }
            }
            None => self.pel_total += 1,
        }
        if let Some(c) = g.consumers.get_mut(consumer) {
            c.pel.insert(id);
        }
    }

    /// Update a pending entry's delivery time and count in place (history reads).
    pub fn redeliver(&mut self, group: &[u8], id: StreamId, now: u64) {
        if let Some(n) = self.groups.get_mut(group).and_then(|g| g.pel.get_mut(&id)) {
            n.delivery_time = now;
            n.delivery_count = n.delivery_count.wrapping_add(1);
        }
    }

    /// Acknowledge `id`: whether it was pending.
    pub fn ack(&mut self, group: &[u8], id: StreamId) -> bool {
        let Some(g) = self.groups.get_mut(group) else {
            return false;
        };
        let Some(n) = g.pel.remove(&id) else {
            return false;
        };
        if let Some(c) = g.consumers.get_mut(&n.consumer) {
            c.pel.remove(&id);
        }
        self.pel_total -= 1;
        true
    }

    // ---- persistence and accounting ----

    /// Heap bytes owned, in O(1).
    pub fn heap_bytes(&self) -> usize {
        let tail = self
            .chunks
            .back()
            .map_or(0, |c| alloc_size(c.data.capacity()));
        self.closed_bytes
            + tail
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.groups.len() * 96
            + self.pel_total * 96
            + self.consumers_total * 96
            + self.name_bytes
    }

    /// Snapshot encoding: entries (id, pairs), then the stream's counters, then groups
    /// (name, last id, entries read + 1, pending entries, consumers).
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.len);
        self.range(StreamId::MIN, StreamId::MAX, false, |id, fields| {
            put_id(out, id);
            put_varint(out, fields.len() as u64);
            for (f, v) in fields {
                put_bytes(out, f);
                put_varint(out, v.len() as u64);
                v.append_to(out);
            }
            true
        });
        put_id(out, self.last_id);
        put_id(out, self.max_deleted);
        put_varint(out, self.entries_added);
        put_varint(out, self.groups.len() as u64);
        for (name, g) in &self.groups {
            put_bytes(out, name);
            put_id(out, g.last_id);
            put_varint(out, (g.entries_read as u64).wrapping_add(1));
            put_varint(out, g.pel.len() as u64);
            for (id, n) in &g.pel {
                put_id(out, *id);
                put_bytes(out, &n.consumer);
                put_varint(out, n.delivery_time);
                put_varint(out, n.delivery_count);
            }
            put_varint(out, g.consumers.len() as u64);
            for (cname, c) in &g.consumers {
                put_bytes(out, cname);
                put_varint(out, c.seen_time);
            }
        }
    }

    /// Rebuild from [`Stream::encode`]'s output (the whole of `buf`); `None` if malformed.
    pub fn decode(buf: &[u8]) -> Option<Stream> {
        let mut p = 0;
        let mut s = Stream::new();
        let n = read_varint_checked(buf, &mut p)?;
        if n > buf.len() as u64 {
            return None;
        }
        let mut prev: Option<StreamId> = None;
        let mut fields: Vec<(&[u8], &[u8])> = Vec::new();
        for _ in 0..n {
            let id = get_id(buf, &mut p)?;
            if prev.is_some_and(|x| x >= id) {
                return None;
            }
            prev = Some(id);
            let k = read_varint_checked(buf, &mut p)?;
            if k > buf.len() as u64 {
                return None;
            }
            fields.clear();
            for _ in 0..k {
                let f = read_bytes(buf, &mut p)?;
                let v = read_bytes(buf, &mut p)?;
                fields.push((f, v));
            }
            s.add(id, &fields);
        }
        s.last_id = get_id(buf, &mut p)?;
        s.max_deleted = get_id(buf, &mut p)?;
        s.entries_added = read_varint_checked(buf, &mut p)?;
        if prev.is_some_and(|x| x > s.last_id) {
            return None;
        }
        let groups = read_varint_checked(buf, &mut p)?;
        for _ in 0..groups {
            let name = read_bytes(buf, &mut p)?;
            let last = get_id(buf, &mut p)?;
            let read = read_varint_checked(buf, &mut p)?.wrapping_sub(1) as i64;
            if !s.create_group(name, last, read) {
                return None;
            }
            let pending = read_varint_checked(buf, &mut p)?;
            let mut pel = Vec::new();
            for _ in 0..pending {
                let id = get_id(buf, &mut p)?;
                let owner = read_bytes(buf, &mut p)?;
                let time = read_varint_checked(buf, &mut p)?;
                let count = read_varint_checked(buf, &mut p)?;
                pel.push((id, owner, time, count));
            }
            let consumers = read_varint_checked(buf, &mut p)?;
            for _ in 0..consumers {
                let cname = read_bytes(buf, &mut p)?;
                let seen = read_varint_checked(buf, &mut p)?;
                s.touch_consumer(name, cname, seen)?;
            }
            for (id, owner, time, count) in pel {
                if !s.group(name)?.consumers.contains_key(owner) {
                    return None;
                }
                s.set_pending(name, owner, id, time, count);
            }
        }
        (p == buf.len()).then_some(s)
    }
}

fn put_id(out: &mut Vec<u8>, id: StreamId) {
    put_varint(out, id.ms);
    put_varint(out, id.seq);
}

fn get_id(buf: &[u8], p: &mut usize) -> Option<StreamId> {
    Some(StreamId::new(
        read_varint_checked(buf, p)?,
        read_varint_checked(buf, p)?,
    ))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId::new(ms, seq)
    }

    fn ids(s: &Stream, rev: bool) -> Vec<StreamId> {
        let mut out = Vec::new();
        s.range(StreamId::MIN, StreamId::MAX, rev, |i, _| {
            out.push(i);
            true
        });
        out
    }

    fn filled(n: u64) -> Stream {
        let mut s = Stream::new();
        for i in 1..=n {
            let v = i.to_string();
            s.add(id(i / 3, i), &[(b"f", v.as_bytes()), (b"g", b"x")]);
        }
        s
    }

    #[test]
    fn entries_round_trip_through_chunks() {
        let mut s = Stream::new();
        s.add(id(5, 0), &[(b"a", b"1")]);
        s.add(id(5, 1), &[(b"a", b"2")]);
        s.add(id(5, 7), &[(b"b", b"3"), (b"c", b"")]);
        s.add(id(1 << 40, 0), &[(b"a", b"4")]);
        let mut got = Vec::new();
        s.range(StreamId::MIN, StreamId::MAX, false, |i, f| {
            got.push((
                i,
                f.iter()
                    .map(|(a, b)| (a.to_vec(), b.to_bytes().to_vec()))
                    .collect::<Vec<_>>(),
            ));
            true
        });
        assert_eq!(got.len(), 4);
        assert_eq!(got[2].0, id(5, 7));
        assert_eq!(
            got[2].1,
            vec![(b"b".to_vec(), b"3".to_vec()), (b"c".to_vec(), vec![])]
        );
        assert_eq!(got[3].0, id(1 << 40, 0));
        assert_eq!(got[1].1, vec![(b"a".to_vec(), b"2".to_vec())]);
        assert_eq!(
            ids(&s, true),
            vec![id(1 << 40, 0), id(5, 7), id(5, 1), id(5, 0)]
        );
    }

    #[test]
    fn ranges_deletes_and_chunks_agree_with_a_model() {
        let mut s = filled(1000);
        assert!(s.chunks.len() >= 10);
        let mut model: Vec<StreamId> = (1..=1000).map(|i| id(i / 3, i)).collect();
        for k in (0..1000).step_by(7) {
            let d = model[k];
            assert!(s.delete(d));
            assert!(!s.delete(d));
        }
        model = model
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % 7 != 0)
            .map(|(_, x)| x)
            .collect();
        assert_eq!(ids(&s, false), model);
        let mut rev = model.clone();
        rev.reverse();
        assert_eq!(ids(&s, true), rev);
        assert_eq!(s.len(), model.len() as u64);
        let (a, b) = (model[100], model[300]);
        let mut got = Vec::new();
        s.range(a, b, false, |i, _| {
            got.push(i);
            true
        });
        assert_eq!(got, model[100..=300].to_vec());
        assert_eq!(s.first_id(), model[0]);
    }

    #[test]
    fn deleting_everything_compacts_the_index() {
        let mut s = filled(5000);
        for i in 1..=5000 {
            assert!(s.delete(id(i / 3, i)));
        }
        assert!(s.is_empty());
        assert!(s.chunks.len() < 10, "{} chunks left", s.chunks.len());
        s.add(id(10_000, 0), &[(b"f", b"v")]);
        assert_eq!(ids(&s, false), vec![id(10_000, 0)]);
    }

    #[test]
    fn exact_and_approximate_trims() {
        let mut s = filled(1000);
        assert_eq!(
            s.trim(Trim::MaxLen(990), true, 0),
            0,
            "no whole chunk can go"
        );
        assert_eq!(s.trim(Trim::MaxLen(850), true, 0), 100);
        assert_eq!(s.trim(Trim::MaxLen(850), false, 0), 50);
        assert_eq!(s.len(), 850);
        assert_eq!(s.first_id(), id(151 / 3, 151));
        assert_eq!(s.trim(Trim::MinId(id(300 / 3, 300)), false, 0), 149);
        assert_eq!(s.first_id(), id(100, 300));
        assert_eq!(
            s.trim(Trim::MaxLen(0), true, 250),
            201,
            "whole chunks up to the limit"
        );
        assert_eq!(s.len(), 500);
        assert_eq!(s.trim(Trim::MaxLen(0), false, 0), 500);
        assert!(s.is_empty());
    }

    #[test]
    fn groups_track_pending_entries() {
        let mut s = filled(10);
        assert!(s.create_group(b"g", StreamId::MIN, 0));
        assert!(!s.create_group(b"g", StreamId::MIN, 0));
        assert_eq!(s.touch_consumer(b"g", b"c1", 5), Some(true));
        s.touch_consumer(b"g", b"c2", 5);
        s.set_pending(b"g", b"c1", id(0, 1), 5, 1);
        s.set_pending(b"g", b"c1", id(0, 2), 5, 1);
        s.set_pending(b"g", b"c2", id(0, 2), 6, 2);
        let g = s.group(b"g").unwrap_or_else(|| panic!("group"));
        assert_eq!(g.pel().len(), 2);
        assert_eq!(g.consumers()[&b"c1"[..]].pel.len(), 1);
        assert_eq!(g.consumers()[&b"c2"[..]].pel.len(), 1);
        assert!(s.ack(b"g", id(0, 2)));
        assert!(!s.ack(b"g", id(0, 2)));
        assert_eq!(s.delete_consumer(b"g", b"c1"), Some(Some(1)));
        assert_eq!(s.pel_total, 0);
        let mut buf = Vec::new();
        s.set_pending(b"g", b"c2", id(0, 3), 7, 3);
        s.encode(&mut buf);
        let t = Stream::decode(&buf).unwrap_or_else(|| panic!("decode"));
        assert_eq!(t.groups, s.groups);
        assert_eq!(ids(&t, false), ids(&s, false));
        assert_eq!(t.entries_added, s.entries_added);
        assert!(s.destroy_group(b"g"));
        assert_eq!((s.pel_total, s.consumers_total, s.name_bytes), (0, 0, 0));
    }

    #[test]
    fn integer_values_read_back_exactly() {
        let vals: [&[u8]; 9] = [
            b"0",
            b"7",
            b"123",
            b"007",
            b"-5",
            b"999999999999999999",
            b"1000000000000000000",
            b"12a",
            b"",
        ];
        let mut s = Stream::new();
        for (i, v) in vals.iter().enumerate() {
            s.add(id(1, i as u64), &[(b"f", v)]);
        }
        let mut got = Vec::new();
        s.range(StreamId::MIN, StreamId::MAX, false, |_, f| {
            got.push(f[0].1.to_bytes().to_vec());
            true
        });
        let want: Vec<Vec<u8>> = vals.iter().map(|v| v.to_vec()).collect();
        assert_eq!(got, want);
        assert_eq!(Val::Int(0).len(), 1);
        assert_eq!(Val::Int(999).len(), 3);
    }

    #[test]
    fn chunks_end_where_redis_ends_its_nodes() {
        // 200-byte values: Redis's 4096-byte listpack nodes hold 19 such entries, so
        // MAXLEN ~ 60 over 100 entries removes two whole nodes, as redis-server 7.0 does.
        let v = [b'v'; 200];
        let mut s = Stream::new();
        for i in 1..=100 {
            s.add(id(i, 0), &[(b"f", &v)]);
        }
        assert_eq!(s.trim(Trim::MaxLen(60), true, 0), 38);
        // Small entries: 100 per node.
        let mut s = filled(250);
        assert_eq!(s.trim(Trim::MaxLen(120), true, 0), 100);
    }

    #[test]
    fn decode_rejects_garbage() {
        let mut buf = Vec::new();
        filled(50).encode(&mut buf);
        for cut in [1, 10, buf.len() / 2, buf.len() - 1] {
            assert!(Stream::decode(&buf[..cut]).is_none());
        }
        assert!(Stream::decode(&[0xff; 20]).is_none());
    }

    #[test]
    fn entries_with_the_master_fields_are_small() {
        let mut s = Stream::new();
        for i in 0..100_000u64 {
            let v = format!("{:016}", i);
            s.add(
                id(1_700_000_000_000 + i / 10, i % 10),
                &[(b"user", b"123"), (b"payload", v.as_bytes())],
            );
        }
        let per = s.heap_bytes() as f64 / 100_000.0;
        assert!(per < 27.0, "{per} bytes per entry");
    }
}
