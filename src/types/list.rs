//! Compact Redis list: a deque of byte chunks, in the spirit of Redis 7's quicklist of listpacks.
//!
//! # Layout
//!
//! A [`List`] is a `VecDeque` of chunks. A chunk is one `Vec<u8>` holding up to
//! `CHUNK_LIMIT` (8 KiB, like `list-max-listpack-size -2`) bytes of records, plus its
//! element count and a `head` offset: the live bytes are `buf[head..]`. Bytes before `head`
//! are slack for O(1) `push_front`, spare capacity after `len` is slack for `push_back`,
//! so popping from the front never memmoves the chunk. An element that does not fit in a
//! chunk gets a chunk of its own.
//!
//! Inside a chunk, records `r0 .. r(n-1)` are separated by *boundaries* `B0..Bn` (n + 1 of them):
//!
//! ```text
//! B0 r0 B1 r1 ... B(n-1) r(n-1) Bn        Bk = [P-ext(r(k-1))] [x_k] [N-ext(rk)]
//! ```
//!
//! Each element length `L` has a one-byte *code* `c(L)`: `L` itself for `L <= 251`, or
//! 252/253/254/255 meaning "the length is in a 1/2/4/8-byte extension" (`P-ext`/`N-ext`,
//! present only for such long elements, stored on both sides of the record). The boundary
//! byte is `x_k = c(L(k-1)) XOR c(Lk)` (with `c = 0` for the missing neighbour at either
//! end). A reader walking forwards already knows `c(L(k-1))`, so it recovers `c(Lk)`; a reader
//! walking backwards knows `c(Lk)` and recovers `c(L(k-1))` — the XOR-linked-list trick. So an
//! element of up to 251 bytes costs its bytes **plus one byte** (Redis's listpack: plus two,
//! an encoding byte and a back-length byte), and the chunk itself costs one extra byte.
//!
//! # Costs
//!
//! * push/pop at either end: O(element) amortized. Chunks grow geometrically (capacity
//!   doubling up to `CHUNK_LIMIT`); the slack made by a regrow goes to the side being pushed
//!   (split half/half when the chunk is the only one, so mixed LPUSH/RPUSH stays amortized
//!   O(1)); a chunk whose live bytes drop below a quarter of its capacity is shrunk to twice
//!   its live size, so memory follows the contents.
//! * `get`/`set`/`range`: skip whole chunks by their counts (from whichever end is closer),
//!   then walk inside one chunk (forwards or backwards, whichever is shorter).
//! * `set` with a different length, `insert_at_pivot`, `remove_matching`: rebuild only the
//!   affected chunks (splitting evenly if they overflow), then merge runs of neighbours whose
//!   combined size fits in one chunk, so chunks do not degenerate after removals.
//! * `retain_range`: drops whole chunks, then cuts the two edge chunks in place (moving
//!   `head` / truncating and fixing one boundary byte).
//! * `heap_bytes`: O(1), a running total of chunk capacities plus the deque's capacity.
//!
//! The snapshot format of [`List::encode`] is independent of the in-memory layout:
//! `varint(count)` then `varint(len) bytes` per element (LEB128 varints).
//!
//! # Compression (`list-compress-depth`)
//!
//! As in Redis, a list keeps the `depth` chunks nearest each end plain and stores the
//! chunks in between compressed ([`lz`]; "packed"), since queues touch only their ends.
//! Unlike Redis, the default depth is 1, not 0: a chunk of 8 KiB packs once per few
//! hundred pushes and unpacks once as pops reach it, and list elements (ids, JSON jobs,
//! log lines) compress well (`element:<i>` to about 30 %). Each list keeps the depth it
//! was made with (`List::with_depth`; CONFIG SET changes the default for new lists, as in
//! Redis).
//!
//! * Invariant after every operation: a chunk fewer than `depth` chunks from an end is
//!   plain; the others are packed unless packing did not pay (`incompressible`, cleared
//!   when its records change), their records are under `PACK_MIN` bytes, they are a single
//!   oversized element, or the chunk is *warm* and exactly `depth` from an end: pops
//!   brought it near the end (and unpacked it), and it is packed again only once pushes
//!   move it one further. That is what keeps a push and a pop across a chunk boundary from
//!   packing and unpacking the same chunk each time, while a list that only grows packs
//!   everything but its `depth` end chunks, as Redis does.
//! * Pushes and pops move at most two chunks across a line (`settle`), and a chunk's pack
//!   and unpack are each paid for by a chunk's worth of pushes or pops, so they stay
//!   O(element) amortized. Middle edits (LSET, LINSERT, LREM) unpack only the
//!   chunks they change and `settle_all` afterwards: O(chunks) checks, even for an LSET
//!   near an end (packed chunks are left alone, nothing is packed twice).
//! * Readers never unpack in place: a packed chunk a read reaches is decompressed into
//!   a shared buffer whose slices the read yields ([`Elem`]), and dropped after.
//! * `pack` decodes its result and compares it before keeping it, so `unpack` of a
//!   packed chunk cannot fail.

use super::encoding::{put_varint, read_varint_checked};
use super::lz;
use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Maximum bytes (records + boundaries) in one chunk holding more than one element.
const CHUNK_LIMIT: usize = 8 * 1024;

/// The chunk size as Redis's `list-max-listpack-size` would say it: -1 for 4 KiB nodes, -2
/// for 8 KiB, ... (fixed here; CONFIG GET reports it, CONFIG SET refuses it).
pub fn listpack_size_config() -> i64 {
    -(i64::from((CHUNK_LIMIT / 4096).max(1).trailing_zeros()) + 1)
}
/// Smallest chunk buffer capacity worth allocating.
const MIN_CAP: usize = 16;
/// Records smaller than this are never packed (Redis's `MIN_COMPRESS_BYTES`).
const PACK_MIN: usize = 48;

/// Redis's `list-compress-depth` for lists made from now on (see [`List::with_depth`]).
static COMPRESS_DEPTH: AtomicU32 = AtomicU32::new(DEFAULT_COMPRESS_DEPTH);
/// This server's default `list-compress-depth`: 1, where Redis's is 0 (see the module
/// documentation, "Compression").
pub const DEFAULT_COMPRESS_DEPTH: u32 = 1;

/// The `list-compress-depth` new lists get.
pub fn compress_depth() -> u32 {
    COMPRESS_DEPTH.load(Relaxed)
}

/// Set the `list-compress-depth` new lists get (lists that exist keep theirs, as in Redis).
pub fn set_compress_depth(depth: u32) {
    COMPRESS_DEPTH.store(depth, Relaxed);
}
/// Largest length stored directly in a code byte.
const DIRECT_MAX: usize = 251;

#[cfg(test)]
thread_local! {
    /// Bytes copied by internal re-layouts (not counting the element bytes a push or pop
    /// itself must copy); lets tests assert on work instead of time.
    static MOVED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Compressions tried (see `Chunk::pack`).
    static PACKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[inline]
fn note_moved(_bytes: usize) {
    #[cfg(test)]
    MOVED.with(|m| m.set(m.get() + _bytes));
}

/// Length code and its extension bytes for one element length.
#[derive(Clone, Copy)]
struct Hdr {
    code: u8,
    width: usize,
    ext: [u8; 8],
}

impl Hdr {
    fn new(len: usize) -> Hdr {
        let mut ext = [0u8; 8];
        let (code, width) = if len <= DIRECT_MAX {
            (len as u8, 0)
        } else if len <= DIRECT_MAX + 256 {
            ext[0] = (len - DIRECT_MAX - 1) as u8;
            (252, 1)
        } else if let Ok(x) = u16::try_from(len) {
            ext[..2].copy_from_slice(&x.to_le_bytes());
            (253, 2)
        } else if let Ok(x) = u32::try_from(len) {
            ext[..4].copy_from_slice(&x.to_le_bytes());
            (254, 4)
        } else {
            ext = (len as u64).to_le_bytes();
            (255, 8)
        };
        Hdr { code, width, ext }
    }

    fn ext(&self) -> &[u8] {
        &self.ext[..self.width]
    }
}

#[inline]
fn ext_width(code: u8) -> usize {
    match code {
        252 => 1,
        253 => 2,
        254 => 4,
        255 => 8,
        _ => 0,
    }
}

/// Decodes a length from its code and its `ext_width(code)` extension bytes.
#[inline]
fn read_len(code: u8, ext: &[u8]) -> usize {
    match code {
        252 => DIRECT_MAX + 1 + usize::from(ext[0]),
        253 => usize::from(u16::from_le_bytes([ext[0], ext[1]])),
        254 => u32::from_le_bytes([ext[0], ext[1], ext[2], ext[3]]) as usize,
        255 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&ext[..8]);
            usize::try_from(u64::from_le_bytes(a)).unwrap_or(usize::MAX)
        }
        c => usize::from(c),
    }
}

/// Bytes one more element of `len` adds to a chunk: boundary byte, both extensions, data.
#[inline]
fn rec_size(len: usize, width: usize) -> usize {
    1 + 2 * width + len
}

/// Appends a record (its leading boundary byte `prev ^ code`, extensions and data).
fn put_record(buf: &mut Vec<u8>, prev: u8, h: &Hdr, v: &[u8]) {
    buf.push(prev ^ h.code);
    buf.extend_from_slice(h.ext());
    buf.extend_from_slice(v);
    buf.extend_from_slice(h.ext());
}

/// Record whose boundary byte is at `pos`, given the previous record's code.
/// Returns (code, data start, data length).
#[inline]
fn rec_at(d: &[u8], pos: usize, prev: u8) -> (u8, usize, usize) {
    let c = d[pos] ^ prev;
    let w = ext_width(c);
    let len = read_len(c, &d[pos + 1..pos + 1 + w]);
    (c, pos + 1 + w, len)
}

struct Chunk {
    /// Plain: the live bytes (records) are `buf[head..]`, never empty while the chunk is
    /// in a list. Packed: `buf` is their compressed form (see [`lz`]) and `head` is 0.
    buf: Vec<u8>,
    head: usize,
    count: usize,
    /// 0 while plain; when packed, the size of the records (at most `CHUNK_LIMIT`).
    packed: u32,
    /// Packing these records was tried and did not pay (cleared when they change).
    incompressible: bool,
    /// Unpacked because pops brought it near an end: while it stays exactly `depth` from
    /// that end it is left plain (see `List::settle`).
    warm: bool,
}

/// Where a forward walk over a chunk's records is; the records are passed to each step,
/// so the same walk serves borrowed and decompressed records.
#[derive(Clone, Copy)]
struct Fwd {
    /// Position of the next record's boundary byte.
    pos: usize,
    /// Code of the record before `pos` (0 at the start).
    prev: u8,
    left: usize,
}

impl Fwd {
    /// The next record's (start, length) in `d`.
    #[inline]
    fn step(&mut self, d: &[u8]) -> Option<(usize, usize)> {
        if self.left == 0 {
            return None;
        }
        let (c, s, len) = rec_at(d, self.pos, self.prev);
        self.left -= 1;
        self.pos = s + len + ext_width(c);
        self.prev = c;
        Some((s, len))
    }
}

/// Where a backward walk over a chunk's records is.
#[derive(Clone, Copy)]
struct Rev {
    /// Position of the boundary byte after the next record to yield.
    pos: usize,
    /// Code of the record after `pos` (0 at the end).
    next: u8,
    left: usize,
}

impl Rev {
    /// The next record's (start, length) in `d`, walking backwards.
    #[inline]
    fn step(&mut self, d: &[u8]) -> Option<(usize, usize)> {
        if self.left == 0 {
            return None;
        }
        let c = d[self.pos] ^ self.next;
        let w = ext_width(c);
        let len = read_len(c, &d[self.pos - w..self.pos]);
        let e = self.pos - w;
        let s = e - len;
        self.left -= 1;
        // Record 0 starts at 1 + w, so this is at least 0.
        self.pos = s - w - 1;
        self.next = c;
        Some((s, len))
    }
}

/// Forward iterator over a plain chunk's records.
struct ChunkIter<'a> {
    d: &'a [u8],
    at: Fwd,
}

impl<'a> Iterator for ChunkIter<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let (s, len) = self.at.step(self.d)?;
        Some(&self.d[s..s + len])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.at.left, Some(self.at.left))
    }
}

/// An element as a reader gets it: borrowed from a plain chunk, or a slice of a packed
/// chunk decompressed for the read (shared by that chunk's elements, not copied each).
#[derive(Debug, Clone)]
pub enum Elem<'a> {
    Borrowed(&'a [u8]),
    Shared(Bytes),
}

impl Elem<'_> {
    /// An owned handle: a copy of a borrowed element, the slice itself of a decompressed one.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Elem::Borrowed(b) => Bytes::copy_from_slice(b),
            Elem::Shared(b) => b.clone(),
        }
    }
}

impl std::ops::Deref for Elem<'_> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Elem::Borrowed(b) => b,
            Elem::Shared(b) => b,
        }
    }
}

impl PartialEq for Elem<'_> {
    fn eq(&self, other: &Elem<'_>) -> bool {
        **self == **other
    }
}

impl PartialEq<&[u8]> for Elem<'_> {
    fn eq(&self, other: &&[u8]) -> bool {
        **self == **other
    }
}

impl AsRef<[u8]> for Elem<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// One chunk's records as a reader sees them.
enum Recs<'a> {
    Plain(&'a [u8]),
    Unpacked(Bytes),
}

#[derive(Clone, Copy)]
enum Walk {
    Fwd(Fwd),
    Rev(Rev),
}

/// Iterator over one chunk's elements, packed or not.
struct Elems<'a> {
    recs: Recs<'a>,
    walk: Walk,
}

impl<'a> Iterator for Elems<'a> {
    type Item = Elem<'a>;

    #[inline]
    fn next(&mut self) -> Option<Elem<'a>> {
        let d: &[u8] = match &self.recs {
            Recs::Plain(d) => d,
            Recs::Unpacked(b) => b,
        };
        let (s, len) = match &mut self.walk {
            Walk::Fwd(f) => f.step(d)?,
            Walk::Rev(r) => r.step(d)?,
        };
        Some(match &self.recs {
            Recs::Plain(d) => Elem::Borrowed(&d[s..s + len]),
            Recs::Unpacked(b) => Elem::Shared(b.slice(s..s + len)),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = match self.walk {
            Walk::Fwd(f) => f.left,
            Walk::Rev(r) => r.left,
        };
        (left, Some(left))
    }
}

/// Boundary before record `k` (`k <= count`) of the records `d`: position of its byte and
/// the code of record `k - 1` (0 if `k == 0`). Walks from the nearer end.
fn boundary_in(d: &[u8], count: usize, k: usize) -> (usize, u8) {
    if k <= count / 2 {
        let mut at = Fwd {
            pos: 0,
            prev: 0,
            left: count,
        };
        for _ in 0..k {
            at.step(d);
        }
        (at.pos, at.prev)
    } else {
        let mut at = Rev {
            pos: d.len() - 1,
            next: 0,
            left: count,
        };
        for _ in k..count {
            at.step(d);
        }
        (at.pos, d[at.pos] ^ at.next)
    }
}

impl Chunk {
    /// A new chunk holding just `v`; its slack goes where pushes are expected.
    fn single(v: &[u8], front: bool, alone: bool) -> Chunk {
        let h = Hdr::new(v.len());
        let size = rec_size(v.len(), h.width) + 1;
        let (cap, head) = if size > CHUNK_LIMIT {
            (size, 0)
        } else {
            let cap = (2 * size).clamp(MIN_CAP, CHUNK_LIMIT);
            let free = cap - size;
            let head = if alone {
                free / 2
            } else if front {
                free
            } else {
                0
            };
            (cap, head)
        };
        let mut buf = Vec::with_capacity(cap);
        buf.resize(head, 0);
        put_record(&mut buf, 0, &h, v);
        buf.push(h.code);
        Chunk::plain(buf, head, 1)
    }

    fn plain(buf: Vec<u8>, head: usize, count: usize) -> Chunk {
        Chunk {
            buf,
            head,
            count,
            packed: 0,
            incompressible: false,
            warm: false,
        }
    }

    /// A tight chunk of `items` whose encoded size is `size`.
    fn from_items(items: &[&[u8]], size: usize) -> Chunk {
        let mut buf = Vec::with_capacity(size);
        let mut prev = 0;
        for v in items {
            let h = Hdr::new(v.len());
            put_record(&mut buf, prev, &h, v);
            prev = h.code;
        }
        buf.push(prev);
        note_moved(buf.len());
        Chunk::plain(buf, 0, items.len())
    }

    /// The records of a plain chunk.
    #[inline]
    fn data(&self) -> &[u8] {
        debug_assert_eq!(self.packed, 0, "records of a packed chunk");
        &self.buf[self.head..]
    }

    /// Size of the records, packed or not.
    #[inline]
    fn live(&self) -> usize {
        if self.packed != 0 {
            self.packed as usize
        } else {
            self.buf.len() - self.head
        }
    }

    /// Whether packing is worth trying: records of a size that may shrink, not tried yet.
    fn packable(&self) -> bool {
        self.packed == 0
            && !self.incompressible
            && (PACK_MIN..=CHUNK_LIMIT).contains(&(self.buf.len() - self.head))
    }

    /// Compresses the records in place if that saves at least [`lz::MIN_GAIN`] bytes;
    /// otherwise marks them incompressible. The result is decoded once and compared
    /// before it replaces the records, so [`Chunk::unpack`] cannot fail.
    fn pack(&mut self) {
        if !self.packable() {
            return;
        }
        #[cfg(test)]
        PACKS.with(|p| p.set(p.get() + 1));
        let raw = self.data();
        let mut out = Vec::with_capacity(raw.len());
        let ok = lz::compress(raw, &mut out)
            && lz::decompress(&out, raw.len()).is_some_and(|back| back == raw);
        if ok {
            out.shrink_to_fit();
            self.packed = raw.len() as u32;
            self.buf = out;
            self.head = 0;
            self.warm = false;
        } else {
            self.incompressible = true;
        }
    }

    /// Makes the chunk plain again (a no-op if it is).
    fn unpack(&mut self) {
        if self.packed == 0 {
            return;
        }
        let Some(raw) = lz::decompress(&self.buf, self.live()) else {
            // `pack` checked this very data decodes; nothing else writes a packed buffer.
            unreachable!("a packed list chunk no longer decodes");
        };
        note_moved(raw.len());
        *self = Chunk::plain(raw, 0, self.count);
    }

    /// The records for reading: borrowed, or decompressed into a shared buffer.
    fn recs(&self) -> Recs<'_> {
        if self.packed == 0 {
            return Recs::Plain(self.data());
        }
        match lz::decompress(&self.buf, self.live()) {
            Some(raw) => Recs::Unpacked(Bytes::from(raw)),
            None => unreachable!("a packed list chunk no longer decodes"),
        }
    }

    /// Its elements front to back, packed or not.
    fn elems(&self) -> Elems<'_> {
        self.elems_from(0)
    }

    /// Its elements from record `k` on.
    fn elems_from(&self, k: usize) -> Elems<'_> {
        let recs = self.recs();
        let d: &[u8] = match &recs {
            Recs::Plain(d) => d,
            Recs::Unpacked(b) => b,
        };
        let (pos, prev) = boundary_in(d, self.count, k);
        let walk = Walk::Fwd(Fwd {
            pos,
            prev,
            left: self.count - k,
        });
        Elems { recs, walk }
    }

    /// Its elements back to front, packed or not.
    fn elems_rev(&self) -> Elems<'_> {
        let recs = self.recs();
        let pos = match &recs {
            Recs::Plain(d) => d.len() - 1,
            Recs::Unpacked(b) => b.len() - 1,
        };
        let walk = Walk::Rev(Rev {
            pos,
            next: 0,
            left: self.count,
        });
        Elems { recs, walk }
    }

    /// Whether an element equals `v`, packed or not.
    fn contains(&self, v: &[u8]) -> bool {
        self.elems().any(|e| *e == *v)
    }

    #[inline]
    fn cap(&self) -> usize {
        self.buf.capacity()
    }

    fn iter(&self) -> ChunkIter<'_> {
        ChunkIter {
            d: self.data(),
            at: Fwd {
                pos: 0,
                prev: 0,
                left: self.count,
            },
        }
    }

    /// Boundary before record `k` (`k <= count`) of a plain chunk: position of its byte
    /// (relative to `head`) and the code of record `k - 1` (0 if `k == 0`).
    fn boundary(&self, k: usize) -> (usize, u8) {
        boundary_in(self.data(), self.count, k)
    }

    /// Element `k`, walking from the nearer end.
    fn get(&self, k: usize) -> Option<Elem<'_>> {
        if k >= self.count {
            None
        } else if k <= self.count / 2 {
            self.elems().nth(k)
        } else {
            self.elems_rev().nth(self.count - 1 - k)
        }
    }

    /// Moves the live bytes into a fresh buffer of capacity `cap` starting at `head_room`.
    fn relayout(&mut self, cap: usize, head_room: usize) {
        let mut buf = Vec::with_capacity(cap.max(head_room + self.live()));
        buf.resize(head_room, 0);
        buf.extend_from_slice(self.data());
        note_moved(self.live());
        self.buf = buf;
        self.head = head_room;
    }

    /// Ensures `need` free bytes on the given side, growing or re-centring the buffer.
    /// Returns false if the element should go to a new chunk instead.
    fn make_room(&mut self, front: bool, need: usize, alone: bool) -> bool {
        let live = self.live();
        let total = live + need;
        if total > CHUNK_LIMIT {
            return false;
        }
        let avail = if front {
            self.head
        } else {
            self.buf.capacity() - self.buf.len()
        };
        if avail >= need {
            return true;
        }
        let cap = self.buf.capacity();
        let grown = (2 * total).clamp(MIN_CAP, CHUNK_LIMIT);
        let new_cap = if grown > cap {
            grown
        } else {
            // Full-size chunk with the slack on the wrong side: moving the data is only
            // worth it if it frees a good share of the chunk.
            if cap >= CHUNK_LIMIT && cap - total < CHUNK_LIMIT / 8 {
                return false;
            }
            cap
        };
        let free = new_cap - total;
        let slack_front = if alone {
            free / 2
        } else if front {
            free
        } else {
            0
        };
        let head_room = if front {
            slack_front + need
        } else {
            slack_front
        };
        self.relayout(new_cap, head_room);
        true
    }

    /// Appends `v`; the caller made room.
    fn put_back(&mut self, h: &Hdr, v: &[u8]) {
        let last = self.buf.len() - 1;
        self.buf[last] ^= h.code;
        self.buf.extend_from_slice(h.ext());
        self.buf.extend_from_slice(v);
        self.buf.extend_from_slice(h.ext());
        self.buf.push(h.code);
        self.count += 1;
    }

    /// Prepends `v` (`need` bytes) into the head slack; the caller made room.
    fn put_front(&mut self, h: &Hdr, v: &[u8], need: usize) {
        let old = self.head;
        let new = old - need;
        let w = h.width;
        self.buf[new] = h.code;
        self.buf[new + 1..new + 1 + w].copy_from_slice(h.ext());
        let s = new + 1 + w;
        self.buf[s..s + v.len()].copy_from_slice(v);
        self.buf[s + v.len()..old].copy_from_slice(h.ext());
        self.buf[old] ^= h.code;
        self.head = new;
        self.count += 1;
    }

    fn take_front(&mut self) -> Vec<u8> {
        let d = self.data();
        let (c, s, len) = rec_at(d, 0, 0);
        let out = d[s..s + len].to_vec();
        let next = s + len + ext_width(c);
        self.count -= 1;
        if self.count > 0 {
            let p = self.head + next;
            self.buf[p] ^= c;
            self.head = p;
        }
        out
    }

    fn take_back(&mut self) -> Vec<u8> {
        let d = self.data();
        let last = d.len() - 1;
        let c = d[last];
        let w = ext_width(c);
        let len = read_len(c, &d[last - w..last]);
        let e = last - w;
        let s = e - len;
        let out = d[s..e].to_vec();
        self.count -= 1;
        if self.count > 0 {
            let p = self.head + s - w - 1;
            self.buf[p] ^= c;
            self.buf.truncate(p + 1);
        }
        out
    }

    /// Drops the first `k < count` records in place.
    fn trim_front(&mut self, k: usize) {
        let (pos, prev) = self.boundary(k);
        let p = self.head + pos;
        self.buf[p] ^= prev;
        self.head = p;
        self.count -= k;
        self.incompressible = false;
    }

    /// Drops the last `k < count` records in place.
    fn trim_back(&mut self, k: usize) {
        let keep = self.count - k;
        let (pos, prev) = self.boundary(keep);
        let p = self.head + pos;
        self.buf[p] = prev;
        self.buf.truncate(p + 1);
        self.count = keep;
        self.incompressible = false;
    }

    /// Shrinks a mostly empty buffer to twice its live size.
    fn maybe_shrink(&mut self, front: bool, alone: bool) {
        let cap = self.cap();
        let live = self.live();
        if cap > MIN_CAP && live * 4 < cap {
            let new_cap = (2 * live).max(MIN_CAP);
            let free = new_cap - live;
            let slack_front = if alone {
                free / 2
            } else if front {
                free
            } else {
                0
            };
            self.relayout(new_cap, slack_front);
        }
    }
}

/// Packs `items` into tight chunks of at most `CHUNK_LIMIT` bytes (an oversized item alone),
/// splitting evenly rather than leaving a tiny remainder.
fn pack(items: &[&[u8]]) -> Vec<Chunk> {
    if items.is_empty() {
        return Vec::new();
    }
    let sizes: Vec<usize> = items
        .iter()
        .map(|v| rec_size(v.len(), Hdr::new(v.len()).width))
        .collect();
    let total = sizes.iter().sum::<usize>() + 1;
    let groups = total.div_ceil(CHUNK_LIMIT);
    let target = total.div_ceil(groups).min(CHUNK_LIMIT);
    let mut out = Vec::with_capacity(groups + 1);
    let mut start = 0;
    let mut size = 1;
    for (j, &s) in sizes.iter().enumerate() {
        if j > start && size + s > target {
            out.push(Chunk::from_items(&items[start..j], size));
            start = j;
            size = 1;
        }
        size += s;
    }
    out.push(Chunk::from_items(&items[start..], size));
    out
}

/// A Redis list value; see the module documentation for the layout.
pub struct List {
    chunks: VecDeque<Chunk>,
    len: usize,
    /// Sum of the chunk buffers' capacities.
    buf_bytes: usize,
    /// `list-compress-depth` when the list was made: this many chunks at each end stay
    /// plain, the rest are packed (0: none are).
    depth: u32,
}

impl List {
    /// An empty list with the current default `list-compress-depth`.
    pub fn new() -> List {
        List::with_depth(compress_depth())
    }

    /// An empty list keeping `depth` chunks at each end plain and packing the rest
    /// (0: packs nothing).
    pub fn with_depth(depth: u32) -> List {
        List {
            chunks: VecDeque::new(),
            len: 0,
            buf_bytes: 0,
            depth,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every element and frees all memory.
    pub fn clear(&mut self) {
        *self = List::with_depth(self.depth);
    }

    /// Whether chunk `i` is within `depth` chunks of either end (kept plain).
    fn hot(&self, i: usize) -> bool {
        let d = self.depth as usize;
        d == 0 || i < d || i + d >= self.chunks.len()
    }

    /// Whether chunk `i` is exactly `depth` chunks from an end (and not nearer the other).
    fn at_margin(&self, i: usize) -> bool {
        let d = self.depth as usize;
        !self.hot(i) && (i == d || i + d + 1 == self.chunks.len())
    }

    /// Brings chunk `i` (if any) in line with the depth: plain near the ends, packed (when
    /// that pays) from `depth` chunks away on, except a *warm* chunk at exactly `depth`:
    /// one that pops brought near an end and unpacked, left plain until pushes move it one
    /// further. Without that, a push and a pop across a chunk boundary would pack and
    /// unpack the same chunk every time.
    fn settle(&mut self, i: usize) {
        let (hot, margin) = (self.hot(i), self.at_margin(i));
        let Some(ch) = self.chunks.get_mut(i) else {
            return;
        };
        let before = ch.cap();
        if hot {
            let was_packed = ch.packed != 0;
            ch.unpack();
            ch.warm |= was_packed;
        } else if !(margin && ch.warm) {
            ch.pack();
        }
        self.buf_bytes = self.buf_bytes - before + ch.cap();
    }

    /// Makes chunk `i` plain (to change it), whatever the depth.
    fn unpack_at(&mut self, i: usize) {
        if let Some(ch) = self.chunks.get_mut(i) {
            let before = ch.cap();
            ch.unpack();
            self.buf_bytes = self.buf_bytes - before + ch.cap();
        }
    }

    /// Settles the chunks that may have crossed the depth after chunks were removed at the
    /// ends: the `depth` nearest each end.
    fn settle_ends(&mut self) {
        let d = self.depth as usize;
        if d == 0 {
            return;
        }
        let n = self.chunks.len();
        for i in (0..d.min(n)).chain(n.saturating_sub(d)..n) {
            self.settle(i);
        }
    }

    /// Settles every chunk, after changes anywhere: O(chunks), each packed once at most.
    fn settle_all(&mut self) {
        if self.depth == 0 {
            return;
        }
        for i in 0..self.chunks.len() {
            self.settle(i);
        }
    }

    pub fn push_front(&mut self, v: &[u8]) {
        self.push(v, true);
    }

    pub fn push_back(&mut self, v: &[u8]) {
        self.push(v, false);
    }

    fn push(&mut self, v: &[u8], front: bool) {
        let h = Hdr::new(v.len());
        let need = rec_size(v.len(), h.width);
        let alone = self.chunks.len() == 1;
        let end = if front {
            self.chunks.front_mut()
        } else {
            self.chunks.back_mut()
        };
        if let Some(ch) = end {
            // The end chunks are always plain.
            debug_assert_eq!(ch.packed, 0);
            let before = ch.cap();
            ch.unpack();
            let room = ch.make_room(front, need, alone);
            if room {
                ch.incompressible = false;
                if front {
                    ch.put_front(&h, v, need);
                } else {
                    ch.put_back(&h, v);
                }
            }
            self.buf_bytes = self.buf_bytes - before + ch.cap();
            if room {
                self.len += 1;
                return;
            }
        }
        let ch = Chunk::single(v, front, self.chunks.is_empty());
        self.buf_bytes += ch.cap();
        if self.chunks.capacity() == 0 {
            self.chunks.reserve_exact(1);
        }
        if front {
            self.chunks.push_front(ch);
        } else {
            self.chunks.push_back(ch);
        }
        self.len += 1;
        // The chunks that were `depth - 1` and `depth` from this end moved one further.
        let d = self.depth as usize;
        if d > 0 {
            let n = self.chunks.len();
            for i in [d, d + 1] {
                let i = if front { Some(i) } else { n.checked_sub(i + 1) };
                if let Some(i) = i {
                    self.settle(i);
                }
            }
        }
    }

    pub fn pop_front(&mut self) -> Option<Vec<u8>> {
        self.pop(true)
    }

    pub fn pop_back(&mut self) -> Option<Vec<u8>> {
        self.pop(false)
    }

    fn pop(&mut self, front: bool) -> Option<Vec<u8>> {
        let alone = self.chunks.len() == 1;
        let ch = if front {
            self.chunks.front_mut()
        } else {
            self.chunks.back_mut()
        }?;
        debug_assert_eq!(ch.packed, 0);
        let before = ch.cap();
        ch.unpack();
        ch.incompressible = false;
        let out = if front {
            ch.take_front()
        } else {
            ch.take_back()
        };
        self.len -= 1;
        if ch.count == 0 {
            self.buf_bytes -= before;
            if front {
                self.chunks.pop_front();
            } else {
                self.chunks.pop_back();
            }
            self.chunks_removed();
            // The chunk that was `depth` from this end is now `depth - 1` from it.
            let d = self.depth as usize;
            if d > 0 {
                let i = if front {
                    Some(d - 1)
                } else {
                    self.chunks.len().checked_sub(d)
                };
                if let Some(i) = i {
                    self.settle(i);
                }
            }
        } else {
            ch.maybe_shrink(front, alone);
            self.buf_bytes = self.buf_bytes - before + ch.cap();
        }
        Some(out)
    }

    pub fn front(&self) -> Option<Elem<'_>> {
        self.chunks.front().and_then(|c| c.elems().next())
    }

    pub fn back(&self) -> Option<Elem<'_>> {
        self.chunks.back().and_then(|c| c.elems_rev().next())
    }

    /// (chunk index, index inside the chunk) of element `index`, counting chunks from the
    /// nearer end.
    fn locate(&self, index: usize) -> Option<(usize, usize)> {
        if index >= self.len {
            return None;
        }
        if index < self.len / 2 {
            let mut rem = index;
            for (i, c) in self.chunks.iter().enumerate() {
                if rem < c.count {
                    return Some((i, rem));
                }
                rem -= c.count;
            }
        } else {
            let mut rem = self.len - 1 - index;
            for (i, c) in self.chunks.iter().enumerate().rev() {
                if rem < c.count {
                    return Some((i, c.count - 1 - rem));
                }
                rem -= c.count;
            }
        }
        None
    }

    /// Element at `index` (0-based from the front); skips whole chunks by their counts.
    pub fn get(&self, index: usize) -> Option<Elem<'_>> {
        let (i, k) = self.locate(index)?;
        self.chunks[i].get(k)
    }

    /// LSET: replace element `index`; false if out of range.
    pub fn set(&mut self, index: usize, v: &[u8]) -> bool {
        let Some((i, k)) = self.locate(index) else {
            return false;
        };
        self.unpack_at(i);
        let ch = &mut self.chunks[i];
        ch.incompressible = false;
        let (pos, prev) = ch.boundary(k);
        let (_, s, len) = rec_at(ch.data(), pos, prev);
        if len == v.len() {
            let a = ch.head + s;
            ch.buf[a..a + len].copy_from_slice(v);
            self.settle(i);
            return true;
        }
        let new = {
            let ch = &self.chunks[i];
            let items: Vec<&[u8]> = ch
                .iter()
                .enumerate()
                .map(|(j, e)| if j == k { v } else { e })
                .collect();
            pack(&items)
        };
        let n = self.replace_chunk(i, new);
        self.merge_range(i.saturating_sub(1), i + n);
        self.settle_all();
        true
    }

    /// LINSERT: insert `v` before (or after) the first element equal to `pivot`, scanning from
    /// the front; returns false if the pivot is absent.
    pub fn insert_at_pivot(&mut self, pivot: &[u8], before: bool, v: &[u8]) -> bool {
        let mut found = None;
        for (i, ch) in self.chunks.iter().enumerate() {
            if let Some(k) = ch.elems().position(|e| *e == *pivot) {
                found = Some((i, k));
                break;
            }
        }
        let Some((i, k)) = found else {
            return false;
        };
        self.unpack_at(i);
        let at = if before { k } else { k + 1 };
        let new = {
            let ch = &self.chunks[i];
            let mut items: Vec<&[u8]> = Vec::with_capacity(ch.count + 1);
            for (j, e) in ch.iter().enumerate() {
                if j == at {
                    items.push(v);
                }
                items.push(e);
            }
            if at == ch.count {
                items.push(v);
            }
            pack(&items)
        };
        let n = self.replace_chunk(i, new);
        self.len += 1;
        self.merge_range(i.saturating_sub(1), i + n);
        self.settle_all();
        true
    }

    /// LREM semantics: count > 0 removes the first `count` matches from the front, count < 0 the
    /// first |count| from the back, 0 all; returns how many were removed.
    pub fn remove_matching(&mut self, count: i64, v: &[u8]) -> usize {
        let limit = if count == 0 {
            usize::MAX
        } else {
            usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
        };
        let mut removed = 0;
        // Touched span: first index, and distance of its end from the back of the deque.
        let mut span: Option<(usize, usize)> = None;
        if count >= 0 {
            let mut i = 0;
            while i < self.chunks.len() && removed < limit {
                if !self.chunks[i].contains(v) {
                    i += 1;
                    continue;
                }
                self.unpack_at(i);
                let (new, hit) = {
                    let mut hit = 0;
                    let items: Vec<&[u8]> = self.chunks[i]
                        .iter()
                        .filter(|e| {
                            if removed + hit < limit && *e == v {
                                hit += 1;
                                false
                            } else {
                                true
                            }
                        })
                        .collect();
                    (pack(&items), hit)
                };
                removed += hit;
                let n = self.replace_chunk(i, new);
                let lo = span.map_or(i, |(lo, _)| lo);
                i += n;
                span = Some((lo, self.chunks.len() - i));
            }
        } else {
            let mut i = self.chunks.len();
            while i > 0 && removed < limit {
                i -= 1;
                if !self.chunks[i].contains(v) {
                    continue;
                }
                self.unpack_at(i);
                let (new, hit) = {
                    let elems: Vec<&[u8]> = self.chunks[i].iter().collect();
                    let mut keep = vec![true; elems.len()];
                    let mut hit = 0;
                    for k in (0..elems.len()).rev() {
                        if removed + hit < limit && elems[k] == v {
                            keep[k] = false;
                            hit += 1;
                        }
                    }
                    let items: Vec<&[u8]> = elems
                        .iter()
                        .zip(&keep)
                        .filter(|(_, &k)| k)
                        .map(|(e, _)| *e)
                        .collect();
                    (pack(&items), hit)
                };
                removed += hit;
                let n = self.replace_chunk(i, new);
                let tail = span.map_or(self.chunks.len() - (i + n), |(_, t)| t);
                span = Some((i, tail));
            }
        }
        self.len -= removed;
        if let Some((lo, tail)) = span {
            let hi = self.chunks.len() - tail; // neighbour after the touched span
            self.merge_range(lo.saturating_sub(1), hi);
        }
        self.chunks_removed();
        self.settle_all();
        removed
    }

    /// LTRIM: keep only positions start..=end (already normalized by the caller:
    /// start <= end < len); pass start > end or start >= len to empty the list.
    /// O(removed chunks + one chunk).
    pub fn retain_range(&mut self, start: usize, end: usize) {
        if start > end || start >= self.len {
            self.clear();
            return;
        }
        let end = end.min(self.len - 1);
        let mut drop_front = start;
        let mut drop_back = self.len - 1 - end;
        while let Some(f) = self.chunks.front() {
            if f.count > drop_front {
                break;
            }
            drop_front -= f.count;
            self.len -= f.count;
            self.buf_bytes -= f.cap();
            self.chunks.pop_front();
        }
        while let Some(b) = self.chunks.back() {
            if b.count > drop_back {
                break;
            }
            drop_back -= b.count;
            self.len -= b.count;
            self.buf_bytes -= b.cap();
            self.chunks.pop_back();
        }
        // Chunks that are now near an end become plain (the edges are cut below).
        self.settle_ends();
        let alone = self.chunks.len() == 1;
        if drop_front > 0 {
            if let Some(ch) = self.chunks.front_mut() {
                let before = ch.cap();
                ch.trim_front(drop_front);
                ch.maybe_shrink(true, alone);
                self.buf_bytes = self.buf_bytes - before + ch.cap();
                self.len -= drop_front;
            }
        }
        if drop_back > 0 {
            if let Some(ch) = self.chunks.back_mut() {
                let before = ch.cap();
                ch.trim_back(drop_back);
                ch.maybe_shrink(false, alone);
                self.buf_bytes = self.buf_bytes - before + ch.cap();
                self.len -= drop_back;
            }
        }
        self.chunks_removed();
    }

    /// Calls `f` with each element from `start` to `end` (inclusive, clamped to the list)
    /// in order, without visiting earlier chunks element by element. A packed chunk is
    /// decompressed once, when the walk reaches it. Internal iteration: no iterator per
    /// chunk and no `Elem` per element (LRANGE's reply loop).
    pub fn for_range(&self, start: usize, end: usize, mut f: impl FnMut(&[u8])) {
        let Some((first, mut k)) = self.locate(start).filter(|_| start <= end) else {
            return;
        };
        let mut n = end.min(self.len - 1) - start + 1;
        for c in self.chunks.range(first..) {
            let recs = c.recs();
            let d: &[u8] = match &recs {
                Recs::Plain(d) => d,
                Recs::Unpacked(b) => b,
            };
            let (pos, prev) = boundary_in(d, c.count, k);
            let mut walk = Fwd {
                pos,
                prev,
                left: c.count - k,
            };
            while n > 0 {
                let Some((s, len)) = walk.step(d) else { break };
                f(&d[s..s + len]);
                n -= 1;
            }
            if n == 0 {
                return;
            }
            k = 0;
        }
    }

    /// Front to back.
    pub fn iter(&self) -> impl Iterator<Item = Elem<'_>> + '_ {
        self.chunks.iter().flat_map(Chunk::elems)
    }

    /// Back to front.
    pub fn iter_rev(&self) -> impl Iterator<Item = Elem<'_>> + '_ {
        self.chunks.iter().rev().flat_map(Chunk::elems_rev)
    }

    /// Heap memory owned by the list (buffer capacities), in O(1).
    pub fn heap_bytes(&self) -> usize {
        self.buf_bytes + self.chunks.capacity() * std::mem::size_of::<Chunk>()
    }

    /// Appends the snapshot encoding: `varint(count)`, then `varint(len) bytes` per element.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.chunks.iter().map(Chunk::live).sum::<usize>() + 10);
        put_varint(out, self.len as u64);
        for e in self.iter() {
            put_varint(out, e.len() as u64);
            out.extend_from_slice(&e);
        }
    }

    /// Decodes what [`List::encode`] wrote (the whole of `buf`); `None` on malformed input.
    pub fn decode(buf: &[u8]) -> Option<List> {
        let mut p = 0;
        let n = read_varint_checked(buf, &mut p)?;
        if n > buf.len() as u64 {
            return None;
        }
        let mut b = Builder::new();
        for _ in 0..n {
            let len = usize::try_from(read_varint_checked(buf, &mut p)?).ok()?;
            let end = p.checked_add(len)?;
            b.push(buf.get(p..end)?);
            p = end;
        }
        if p != buf.len() {
            return None;
        }
        Some(b.finish())
    }

    /// Replaces chunk `i` by `new` (possibly none); returns how many were inserted.
    fn replace_chunk(&mut self, i: usize, new: Vec<Chunk>) -> usize {
        let n = new.len();
        let mut it = new.into_iter();
        match it.next() {
            Some(first) => {
                self.buf_bytes += first.cap();
                let old = std::mem::replace(&mut self.chunks[i], first);
                self.buf_bytes -= old.cap();
                for (j, c) in it.enumerate() {
                    self.buf_bytes += c.cap();
                    self.chunks.insert(i + 1 + j, c);
                }
            }
            None => {
                if let Some(old) = self.chunks.remove(i) {
                    self.buf_bytes -= old.cap();
                }
            }
        }
        n
    }

    /// Merges runs of neighbouring chunks among `lo..=hi` whose combined size fits a chunk.
    fn merge_range(&mut self, lo: usize, hi: usize) {
        let Some(last) = self.chunks.len().checked_sub(1) else {
            return;
        };
        let mut hi = hi.min(last);
        let mut i = lo;
        while i < hi {
            let mut total = self.chunks[i].live();
            let mut j = i;
            while j < hi && total + self.chunks[j + 1].live() - 1 <= CHUNK_LIMIT {
                total += self.chunks[j + 1].live() - 1;
                j += 1;
            }
            if j > i {
                for k in i..=j {
                    self.unpack_at(k);
                }
                let mut buf: Vec<u8> = Vec::with_capacity(total);
                let mut count = 0;
                for ch in self.chunks.range(i..=j) {
                    let d = ch.data();
                    match buf.last_mut() {
                        Some(b) => {
                            *b ^= d[0];
                            buf.extend_from_slice(&d[1..]);
                        }
                        None => buf.extend_from_slice(d),
                    }
                    count += ch.count;
                }
                note_moved(buf.len());
                let merged = Chunk::plain(buf, 0, count);
                self.buf_bytes += merged.cap();
                let old = std::mem::replace(&mut self.chunks[i], merged);
                self.buf_bytes -= old.cap();
                for old in self.chunks.drain(i + 1..=j) {
                    self.buf_bytes -= old.cap();
                }
                hi -= j - i;
            }
            i += 1;
        }
    }

    /// Releases deque capacity after chunks were removed.
    fn chunks_removed(&mut self) {
        if self.chunks.is_empty() {
            self.chunks = VecDeque::new();
        } else {
            let cap = self.chunks.capacity();
            if cap > 2 && self.chunks.len() * 4 < cap {
                self.chunks.shrink_to(self.chunks.len() * 2);
            }
        }
    }

    /// Checks every internal invariant; panics on violation.
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut len = 0;
        let mut bytes = 0;
        for (i, plain) in self.chunks.iter().enumerate() {
            assert!(plain.count >= 1, "empty chunk");
            assert!(plain.head < plain.buf.len());
            assert!(
                plain.live() <= CHUNK_LIMIT || plain.count == 1,
                "oversized chunk"
            );
            if self.hot(i) {
                assert_eq!(plain.packed, 0, "chunk {i} near an end is packed");
            } else if !(plain.warm && self.at_margin(i)) {
                assert!(!plain.packable(), "chunk {i} in the middle is not packed");
            }
            let mut unpacked = Chunk {
                buf: plain.buf.clone(),
                ..*plain
            };
            unpacked.unpack();
            let ch = &unpacked;
            let fwd: Vec<&[u8]> = ch.iter().collect();
            let mut rev: Vec<Vec<u8>> = plain.elems_rev().map(|e| e.to_vec()).collect();
            rev.reverse();
            assert_eq!(fwd, rev);
            assert_eq!(fwd.len(), ch.count);
            let mut it = ch.iter();
            for _ in 0..ch.count {
                it.next();
            }
            assert_eq!(it.at.pos, ch.live() - 1, "trailing bytes in chunk");
            assert_eq!(ch.data()[it.at.pos], it.at.prev);
            len += ch.count;
            bytes += plain.cap();
        }
        assert_eq!(len, self.len);
        assert_eq!(bytes, self.buf_bytes);
    }
}

/// Appends elements to fresh, full chunks (used by `decode` and `FromIterator`).
struct Builder {
    list: List,
    cur: Vec<u8>,
    count: usize,
    prev: u8,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            list: List::new(),
            cur: Vec::new(),
            count: 0,
            prev: 0,
        }
    }

    fn push(&mut self, v: &[u8]) {
        let h = Hdr::new(v.len());
        let need = rec_size(v.len(), h.width);
        if self.count > 0 && self.cur.len() + need + 1 > CHUNK_LIMIT {
            self.flush();
        }
        if self.count == 0 {
            let size = need + 1;
            self.cur = Vec::with_capacity(if size > CHUNK_LIMIT {
                size
            } else {
                CHUNK_LIMIT
            });
            self.prev = 0;
        }
        put_record(&mut self.cur, self.prev, &h, v);
        self.prev = h.code;
        self.count += 1;
    }

    fn flush(&mut self) {
        if self.count == 0 {
            return;
        }
        let mut buf = std::mem::take(&mut self.cur);
        buf.push(self.prev);
        let ch = Chunk::plain(buf, 0, self.count);
        self.list.len += self.count;
        self.list.buf_bytes += ch.cap();
        self.list.chunks.push_back(ch);
        self.count = 0;
        // Pack as the list grows, so loading a big list never holds it all plain.
        let d = self.list.depth as usize;
        if d > 0 {
            if let Some(i) = self.list.chunks.len().checked_sub(d + 2) {
                self.list.settle(i);
            }
        }
    }

    fn finish(mut self) -> List {
        let tail = self.count > 0;
        self.flush();
        if tail {
            if let Some(ch) = self.list.chunks.back_mut() {
                let before = ch.cap();
                ch.buf.shrink_to_fit();
                self.list.buf_bytes = self.list.buf_bytes - before + ch.cap();
            }
        }
        self.list.chunks.shrink_to_fit();
        self.list.settle_all();
        self.list
    }
}

impl Default for List {
    fn default() -> List {
        List::new()
    }
}

impl Clone for List {
    /// Clones into tight buffers (no slack).
    fn clone(&self) -> List {
        let mut chunks = VecDeque::with_capacity(self.chunks.len());
        let mut buf_bytes = 0;
        for c in &self.chunks {
            let buf = c.buf[c.head..].to_vec();
            buf_bytes += buf.capacity();
            chunks.push_back(Chunk { buf, head: 0, ..*c });
        }
        List {
            chunks,
            len: self.len,
            buf_bytes,
            depth: self.depth,
        }
    }
}

impl fmt::Debug for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("List")
            .field("len", &self.len)
            .field("chunks", &self.chunks.len())
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

impl<'a> FromIterator<&'a [u8]> for List {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(iter: I) -> List {
        let mut b = Builder::new();
        for v in iter {
            b.push(v);
        }
        b.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved() -> usize {
        MOVED.with(|m| m.get())
    }

    fn reset_moved() {
        MOVED.with(|m| m.set(0));
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn contents(l: &List) -> Vec<Vec<u8>> {
        l.iter().map(|e| e.to_vec()).collect()
    }

    fn range_vec(l: &List, start: usize, end: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        l.for_range(start, end, |v| out.push(v.to_vec()));
        out
    }

    fn model_vec(m: &VecDeque<Vec<u8>>) -> Vec<Vec<u8>> {
        m.iter().cloned().collect()
    }

    fn model_remove(m: &mut VecDeque<Vec<u8>>, count: i64, v: &[u8]) -> usize {
        let limit = if count == 0 {
            usize::MAX
        } else {
            count.unsigned_abs() as usize
        };
        let mut removed = 0;
        let mut out = VecDeque::new();
        if count >= 0 {
            for e in m.drain(..) {
                if removed < limit && e == v {
                    removed += 1;
                } else {
                    out.push_back(e);
                }
            }
        } else {
            for e in m.drain(..).rev() {
                if removed < limit && e == v {
                    removed += 1;
                } else {
                    out.push_front(e);
                }
            }
        }
        *m = out;
        removed
    }

    fn gen_val(r: &mut Rng, pool: &[Vec<u8>]) -> Vec<u8> {
        let p = r.below(1000);
        if p < 4 {
            vec![r.below(256) as u8; 10 * 1024]
        } else if p < 5 {
            vec![b'L'; 100 * 1024]
        } else if p < 20 {
            (0..240 + r.below(300))
                .map(|_| r.below(256) as u8)
                .collect()
        } else if p < 600 {
            pool[r.below(pool.len())].clone()
        } else {
            (0..r.below(21)).map(|_| b'a' + r.below(3) as u8).collect()
        }
    }

    #[test]
    fn randomized_model_plain() {
        randomized_model(0);
    }

    #[test]
    fn randomized_model_packed_between_one_end_chunk() {
        randomized_model(1);
    }

    #[test]
    fn randomized_model_packed_between_two_end_chunks() {
        randomized_model(2);
    }

    fn opt_vec(e: Option<Elem<'_>>) -> Option<Vec<u8>> {
        e.map(|e| e.to_vec())
    }

    fn randomized_model(depth: u32) {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15 + u64::from(depth));
        let pool: Vec<Vec<u8>> = (0..12)
            .map(|i| (0..i * 2).map(|j| b'p' + ((i + j) % 5) as u8).collect())
            .collect();
        let mut l = List::with_depth(depth);
        let mut m: VecDeque<Vec<u8>> = VecDeque::new();
        let mut packed_seen = 0;
        for step in 0..200_000 {
            let mut op = r.below(100);
            if m.len() > if depth == 0 { 3000 } else { 12_000 } && op < 36 {
                op += 36; // turn pushes into pops/other ops to bound the size
            }
            match op {
                0..=17 => {
                    let v = gen_val(&mut r, &pool);
                    l.push_back(&v);
                    m.push_back(v);
                }
                18..=35 => {
                    let v = gen_val(&mut r, &pool);
                    l.push_front(&v);
                    m.push_front(v);
                }
                36..=45 => assert_eq!(l.pop_front(), m.pop_front()),
                46..=55 => assert_eq!(l.pop_back(), m.pop_back()),
                56..=58 => {
                    assert_eq!(opt_vec(l.front()), m.front().cloned());
                    assert_eq!(opt_vec(l.back()), m.back().cloned());
                }
                59..=64 => {
                    let i = r.below(m.len() + 2);
                    assert_eq!(opt_vec(l.get(i)), m.get(i).cloned());
                }
                65..=69 => {
                    let i = r.below(m.len() + 1);
                    let v = gen_val(&mut r, &pool);
                    let ok = l.set(i, &v);
                    assert_eq!(ok, i < m.len());
                    if ok {
                        m[i] = v;
                    }
                }
                70..=74 => {
                    let pivot = if !m.is_empty() && r.below(2) == 0 {
                        m[r.below(m.len())].clone()
                    } else {
                        pool[r.below(pool.len())].clone()
                    };
                    let before = r.below(2) == 0;
                    let v = gen_val(&mut r, &pool);
                    let ok = l.insert_at_pivot(&pivot, before, &v);
                    let pos = m.iter().position(|e| *e == pivot);
                    assert_eq!(ok, pos.is_some());
                    if let Some(p) = pos {
                        m.insert(if before { p } else { p + 1 }, v);
                    }
                }
                75..=78 => {
                    let v = if !m.is_empty() && r.below(3) == 0 {
                        m[r.below(m.len())].clone()
                    } else {
                        pool[r.below(pool.len())].clone()
                    };
                    let count = r.below(7) as i64 - 3;
                    assert_eq!(
                        l.remove_matching(count, &v),
                        model_remove(&mut m, count, &v)
                    );
                }
                79 => {
                    let n = m.len();
                    // Packed runs trim less and empty the list more rarely: packed chunks
                    // need a longer list.
                    let (clear, part) = if depth == 0 { (20, 8) } else { (400, 64) };
                    let (s, e) = if r.below(clear) == 0 {
                        (n + 1, 0)
                    } else {
                        let s = r.below(n / part + 1);
                        let e = n.saturating_sub(1 + r.below(n / part + 1));
                        (s, e)
                    };
                    l.retain_range(s, e);
                    if s > e || s >= n {
                        m.clear();
                    } else {
                        m.truncate(e + 1);
                        m.drain(..s);
                    }
                }
                80..=84 => {
                    if !m.is_empty() {
                        let a = r.below(m.len());
                        let b = a + r.below(m.len() - a);
                        let got: Vec<Vec<u8>> = range_vec(&l, a, b);
                        let want: Vec<Vec<u8>> = m.range(a..=b).cloned().collect();
                        assert_eq!(got, want);
                    }
                }
                85..=86 => {
                    let got: Vec<Vec<u8>> = l.iter_rev().map(|e| e.to_vec()).collect();
                    let want: Vec<Vec<u8>> = m.iter().rev().cloned().collect();
                    assert_eq!(got, want);
                }
                87 => {
                    let mut buf = Vec::new();
                    l.encode(&mut buf);
                    // Decoded lists take the default depth (1), whatever this one's.
                    let d = List::decode(&buf).expect("decode");
                    d.check_invariants();
                    assert_eq!(contents(&d), model_vec(&m));
                }
                88 => {
                    let c = l.clone();
                    c.check_invariants();
                    assert_eq!(contents(&c), model_vec(&m));
                }
                _ => {
                    assert_eq!(l.len(), m.len());
                    assert_eq!(l.is_empty(), m.is_empty());
                    let data: usize = m.iter().map(Vec::len).sum();
                    assert!(depth > 0 || l.heap_bytes() >= data);
                }
            }
            assert_eq!(l.len(), m.len());
            if step % if depth == 0 { 1000 } else { 250 } == 0 {
                packed_seen += l.chunks.iter().filter(|c| c.packed != 0).count();
                l.check_invariants();
                assert_eq!(contents(&l), model_vec(&m));
            }
        }
        l.check_invariants();
        assert_eq!(contents(&l), model_vec(&m));
        println!(
            "model test: final len {}, {:?}, packed chunks seen {packed_seen}",
            m.len(),
            l
        );
        // The packed runs must really have had packed chunks to test.
        assert_eq!(depth == 0, packed_seen == 0);
    }

    #[test]
    fn push_pop_million_is_linear() {
        const N: usize = 1_000_000;
        let bytes = N * 4; // one boundary byte + 3 data bytes per element
        reset_moved();
        let mut l = List::new();
        for _ in 0..N {
            l.push_back(b"xxx");
        }
        for _ in 0..N {
            assert_eq!(l.pop_front().as_deref(), Some(&b"xxx"[..]));
        }
        assert!(l.is_empty());
        assert_eq!(l.heap_bytes(), 0);
        let m = moved();
        println!("push_back+pop_front: moved {m} bytes for {bytes} record bytes");
        assert!(m <= 3 * bytes, "moved {m} bytes for {bytes}");

        reset_moved();
        for _ in 0..N {
            l.push_front(b"xxx");
        }
        for _ in 0..N {
            assert_eq!(l.pop_back().as_deref(), Some(&b"xxx"[..]));
        }
        let m = moved();
        assert!(m <= 3 * bytes, "moved {m} bytes for {bytes}");

        // Mixed pushes/pops at both ends on a list of bounded size (one or two chunks).
        reset_moved();
        let mut r = Rng(7);
        let mut model = VecDeque::new();
        for i in 0..N {
            let v = (i as u32).to_le_bytes();
            match r.below(4) {
                0 => {
                    l.push_front(&v);
                    model.push_front(v.to_vec());
                }
                1 => {
                    l.push_back(&v);
                    model.push_back(v.to_vec());
                }
                2 => assert_eq!(l.pop_front(), model.pop_front()),
                _ => assert_eq!(l.pop_back(), model.pop_back()),
            }
        }
        let m = moved();
        println!("mixed ends: moved {m} bytes for {N} ops");
        assert!(m <= 8 * N * 5, "moved {m} bytes for {} pushed", N * 5 / 2);
        l.check_invariants();
        assert_eq!(contents(&l), model_vec(&model));
    }

    #[test]
    fn drifting_queue_on_full_chunk_is_linear() {
        // Lists of one or two chunks near the limit whose contents drift one way, then the
        // other, then alternate ends: push at one end, pop at the other keeps the size.
        for size in [10usize, 1000, 1500, 1800, 1900, 2040, 2100, 4000] {
            let mut l = List::new();
            for _ in 0..size {
                l.push_back(b"abc");
            }
            reset_moved();
            for _ in 0..100_000 {
                l.push_front(b"abc");
                l.pop_back();
            }
            for _ in 0..100_000 {
                l.push_back(b"abc");
                l.pop_front();
            }
            for i in 0..100_000 {
                if i % 2 == 0 {
                    l.push_front(b"abc");
                    l.pop_back();
                } else {
                    l.push_back(b"abc");
                    l.pop_front();
                }
            }
            let m = moved();
            let pushed = 300_000 * 4;
            println!("drift size {size}: moved {m} bytes for {pushed} pushed");
            assert!(m <= 8 * pushed, "size {size}: moved {m}");
            assert_eq!(l.len(), size);
            l.check_invariants();
        }
    }

    #[test]
    fn heap_shrinks_after_pops() {
        let mut l = List::new();
        for i in 0..1_000_000u32 {
            l.push_back(&i.to_le_bytes());
        }
        let full = l.heap_bytes();
        for _ in 0..999_000 {
            l.pop_front();
        }
        let after = l.heap_bytes();
        assert!(after * 100 < full, "{after} vs {full}");
        for _ in 0..990 {
            l.pop_back();
        }
        // 10 live records take 51 bytes; a buffer is shrunk once it is 4x its contents.
        assert!(
            l.heap_bytes() <= 4 * 51 + 2 * std::mem::size_of::<Chunk>(),
            "{l:?}"
        );
        l.check_invariants();
        let want: Vec<Vec<u8>> = (999_000..999_010u32)
            .map(|i| i.to_le_bytes().to_vec())
            .collect();
        assert_eq!(contents(&l), want);
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut l = List::new();
        let mut buf = Vec::new();
        l.encode(&mut buf);
        let d = List::decode(&buf).expect("empty");
        assert!(d.is_empty());

        let sizes = [
            0usize, 1, 3, 251, 252, 253, 507, 508, 509, 4000, 8190, 9000, 65535, 65536, 70000,
        ];
        for (i, &s) in sizes.iter().enumerate() {
            let v: Vec<u8> = (0..s).map(|j| (i * 31 + j) as u8).collect();
            if i % 2 == 0 {
                l.push_back(&v);
            } else {
                l.push_front(&v);
            }
        }
        for i in 0..5000u32 {
            l.push_back(&i.to_be_bytes()[..(i % 5) as usize]);
        }
        l.check_invariants();
        buf.clear();
        l.encode(&mut buf);
        let d = List::decode(&buf).expect("decode");
        d.check_invariants();
        assert_eq!(contents(&d), contents(&l));
        assert_eq!(d.len(), l.len());

        // Malformed inputs.
        assert!(List::decode(&[]).is_none());
        assert!(List::decode(&buf[..buf.len() - 1]).is_none());
        let mut extra = buf.clone();
        extra.push(0);
        assert!(List::decode(&extra).is_none());
        assert!(List::decode(&[5, 1, b'a']).is_none());
        assert!(List::decode(&[0xff; 11]).is_none());
        assert!(
            List::decode(&[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
                .is_none()
        );
        let ok = List::decode(&[2, 0, 2, b'h', b'i']).expect("valid");
        assert_eq!(contents(&ok), vec![Vec::new(), b"hi".to_vec()]);
    }

    #[test]
    fn edge_cases() {
        let mut l = List::new();
        assert_eq!(l.pop_front(), None);
        assert_eq!(l.pop_back(), None);
        assert_eq!(l.front(), None);
        assert_eq!(l.get(0), None);
        assert!(!l.set(0, b"x"));
        assert!(!l.insert_at_pivot(b"x", true, b"y"));
        assert_eq!(l.remove_matching(0, b"x"), 0);
        assert!(range_vec(&l, 0, 0).is_empty());
        l.retain_range(0, 0);

        // Zero-length elements.
        l.push_back(b"");
        l.push_front(b"");
        assert_eq!(l.len(), 2);
        assert_eq!(opt_vec(l.get(1)), Some(Vec::new()));
        assert_eq!(l.pop_back(), Some(Vec::new()));
        assert_eq!(l.pop_front(), Some(Vec::new()));
        assert!(l.is_empty());

        // Giant element in the middle, set across size classes, pivots around it.
        let big = vec![7u8; 1 << 20];
        for i in 0..3000u32 {
            l.push_back(&i.to_le_bytes());
        }
        assert!(l.insert_at_pivot(&1500u32.to_le_bytes(), false, &big));
        assert_eq!(opt_vec(l.get(1501)), Some(big.clone()));
        assert!(l.set(1501, b"small"));
        assert!(l.set(1501, &big));
        assert!(l.set(0, &big));
        assert!(l.set(2999, &vec![1u8; 300]));
        l.check_invariants();
        assert_eq!(l.remove_matching(0, &big), 2);
        l.check_invariants();
        assert_eq!(l.len(), 2999);
        assert_eq!(opt_vec(l.get(0)), Some(1u32.to_le_bytes().to_vec()));
        l.push_front(&big);
        l.push_back(&big);
        assert_eq!(l.pop_front().as_deref(), Some(&big[..]));
        assert_eq!(opt_vec(l.back()), Some(big.clone()));
        l.retain_range(10, 20);
        l.check_invariants();
        let want: Vec<Vec<u8>> = (11..22u32).map(|i| i.to_le_bytes().to_vec()).collect();
        assert_eq!(contents(&l), want);
        assert_eq!(
            range_vec(&l, 3, 5),
            vec![
                14u32.to_le_bytes().to_vec(),
                15u32.to_le_bytes().to_vec(),
                16u32.to_le_bytes().to_vec()
            ]
        );
        l.retain_range(5, 2);
        assert!(l.is_empty());
        assert_eq!(l.heap_bytes(), 0);
        let f: List = [&b"a"[..], b"", b"bc"].into_iter().collect();
        assert_eq!(
            contents(&f),
            vec![b"a".to_vec(), Vec::new(), b"bc".to_vec()]
        );
        assert!(format!("{f:?}").contains("len: 3"));
    }

    #[test]
    fn removals_merge_chunks() {
        let mut l = List::new();
        for i in 0..100_000u32 {
            l.push_back(if i % 10 == 0 { b"keep" } else { b"drop" });
        }
        let chunks_before = l.chunks.len();
        assert_eq!(l.remove_matching(0, b"drop"), 90_000);
        l.check_invariants();
        assert!(
            l.chunks.len() * 5 < chunks_before,
            "{} vs {}",
            l.chunks.len(),
            chunks_before
        );
        assert!(l.iter().all(|e| *e == *b"keep"));
        assert_eq!(l.remove_matching(-5, b"keep"), 5);
        assert_eq!(l.remove_matching(3, b"keep"), 3);
        assert_eq!(l.len(), 9992);
    }

    #[test]
    fn bytes_per_element() {
        for v in [&b"xxx"[..], b"0123456789"] {
            for front in [true, false] {
                let mut l = List::with_depth(0);
                for _ in 0..1_000_000 {
                    if front {
                        l.push_front(v);
                    } else {
                        l.push_back(v);
                    }
                }
                let bpe = l.heap_bytes() as f64 / l.len() as f64;
                println!(
                    "{} x {}-byte elements via {}: {:.3} heap bytes/element ({} chunks)",
                    l.len(),
                    v.len(),
                    if front { "push_front" } else { "push_back" },
                    bpe,
                    l.chunks.len()
                );
                // One boundary byte per element, plus chunk slack and bookkeeping.
                assert!(bpe < v.len() as f64 + 1.12, "{bpe}");
                l.check_invariants();
            }
        }
    }

    fn packs() -> usize {
        PACKS.with(|p| p.get())
    }

    #[test]
    fn pushes_and_pops_across_a_chunk_boundary_do_not_repack() {
        let mut r = Rng(7);
        let noise: Vec<Vec<u8>> = (0..64)
            .map(|_| (0..200).map(|_| r.below(256) as u8).collect())
            .collect();
        let compressible = |i: usize| format!("element:{i}").into_bytes();
        let incompressible = |i: usize| noise[i % noise.len()].clone();
        type MakeElem<'a> = &'a dyn Fn(usize) -> Vec<u8>;
        let kinds: [(&str, MakeElem); 2] = [
            ("compressible", &compressible),
            ("incompressible", &incompressible),
        ];
        for (what, elem) in kinds {
            for front in [false, true] {
                let mut l = List::with_depth(1);
                let push = |l: &mut List, v: &[u8]| {
                    if front {
                        l.push_front(v)
                    } else {
                        l.push_back(v)
                    }
                };
                // Fill until a push opens a fifth chunk, then pop it again: the list now
                // sits on a chunk boundary with a chunk beyond the margin.
                let mut i = 0;
                while l.chunks.len() < 5 {
                    push(&mut l, &elem(i));
                    i += 1;
                }
                if front {
                    l.pop_front();
                } else {
                    l.pop_back();
                }
                l.check_invariants();
                let (packs_before, bytes) = (packs(), l.heap_bytes());
                reset_moved();
                for _ in 0..1000 {
                    push(&mut l, &elem(i));
                    let popped = if front { l.pop_front() } else { l.pop_back() };
                    assert_eq!(popped, Some(elem(i)));
                }
                l.check_invariants();
                let (tried, moved) = (packs() - packs_before, moved());
                println!("{what}, front {front}: {tried} packs, {moved} bytes moved");
                assert!(tried <= 1, "{what}: {tried} packs for 1000 push+pop pairs");
                assert!(moved < 64 * 1024, "{what}: {moved} bytes moved");
                assert_eq!(l.heap_bytes(), bytes);
                // Pushes that move the warm chunk one further pack it after all.
                let n = l.chunks.len();
                while l.chunks.len() < n + 2 {
                    push(&mut l, &elem(i));
                    i += 1;
                }
                l.check_invariants();
                if what == "compressible" {
                    let plain = l.chunks.iter().filter(|c| c.packed == 0).count();
                    assert_eq!(plain, 2, "only the end chunks stay plain");
                }
            }
        }
    }

    #[test]
    fn interior_chunks_are_packed_and_ends_stay_plain() {
        let elems: Vec<Vec<u8>> = (0..200_000)
            .map(|i| format!("element:{i}").into_bytes())
            .collect();
        for front in [false, true] {
            let mut plain = List::with_depth(0);
            let mut packed = List::with_depth(1);
            for e in &elems {
                if front {
                    plain.push_front(e);
                    packed.push_front(e);
                } else {
                    plain.push_back(e);
                    packed.push_back(e);
                }
            }
            packed.check_invariants();
            let n = packed.chunks.len();
            let packed_chunks = packed.chunks.iter().filter(|c| c.packed != 0).count();
            assert_eq!(
                packed_chunks,
                n - 2,
                "all but the two end chunks are packed"
            );
            let (p, c) = (plain.heap_bytes(), packed.heap_bytes());
            println!("{} elements: plain {p} B, packed {c} B", elems.len());
            assert!(c * 2 < p, "packed {c} B vs plain {p} B");
            assert_eq!(contents(&packed), contents(&plain));
            // Reads in the middle decompress without changing the list.
            for i in [0, 1, 777, 100_000, 199_999] {
                assert_eq!(opt_vec(packed.get(i)), opt_vec(plain.get(i)));
            }
            let got: Vec<Vec<u8>> = range_vec(&packed, 5000, 5100);
            let want: Vec<Vec<u8>> = range_vec(&plain, 5000, 5100);
            assert_eq!(got, want);
            assert_eq!(packed.heap_bytes(), c);
            // Popping walks into packed chunks, which become plain as they reach the end.
            for _ in 0..150_000 {
                assert_eq!(packed.pop_front(), plain.pop_front());
            }
            packed.check_invariants();
            assert!(packed.heap_bytes() * 2 < plain.heap_bytes());
            while let Some(e) = plain.pop_back() {
                assert_eq!(packed.pop_back(), Some(e));
            }
            assert!(packed.is_empty());
            assert_eq!(packed.heap_bytes(), 0);
        }
    }

    /// 8 KiB chunks are what Redis calls `list-max-listpack-size -2`.
    #[test]
    fn chunk_size_is_reported_as_redis_names_it() {
        assert_eq!(CHUNK_LIMIT, 8192);
        assert_eq!(listpack_size_config(), -2);
    }
}
