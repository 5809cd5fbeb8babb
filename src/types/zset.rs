//! `ZSet`: a Redis sorted set — byte-string members with `f64` scores — kept compact.
//!
//! # Order and scores
//!
//! Entries are ordered by score, then by member bytes (lexicographically, like Redis's
//! `memcmp` order). Callers never pass NaN (they reject it); every comparison uses
//! `f64::total_cmp`, so even a stray NaN could not break an invariant. `-inf` and `+inf`
//! are ordinary scores, and `-0.0` is stored as `0.0`, so the two compare equal.
//!
//! # Records
//!
//! Every entry is the record `[varint mlen][member][score]` (LEB128 length, 1 byte below
//! 128; the score as 8 little-endian bytes).
//!
//! # Compact form (Redis "listpack")
//!
//! A set made by [`ZSet::new`] starts compact: its records sorted by (score, member), back
//! to back in one exactly sized `Box<[u8]>`, plus the length and the two limits packed in
//! the 24-byte `ZSet` (limits above `u16::MAX` move to a boxed header). Every operation
//! walks the records linearly (n ≤ `max_entries`, 128 by default). Adding a new member when
//! there are already `max_entries` of them, or a member longer than `max_len` bytes,
//! converts the set to the indexed form for good (like Redis: updates never convert, and
//! nothing converts back).
//!
//! # Indexed form (Redis "skiplist")
//!
//! Boxed, so it costs a compact set nothing:
//!
//! * `arena: Vec<u8>`: the records, no allocation per member. Score updates overwrite the
//!   8 score bytes in place; removed records become garbage, and the arena is rebuilt (in
//!   rank order) once garbage exceeds the live bytes.
//! * `dense: Vec<u32>`: dense position → record offset (`0..len`, swap-removal), used for
//!   SCAN cursors and O(1) random picks.
//! * `index: HashTable<u32>`: member → dense position (4 bytes + 1 control byte per
//!   bucket; hashes are recomputed from the arena, never stored; per-set random seed).
//! * `tree`: a counted B+tree over the record offsets in (score, member) order. Leaves
//!   hold up to 63 offsets (4 bytes per entry, 256-byte nodes); inner nodes hold up to 32
//!   children with their subtree counts and separator keys (a copy of the score plus the
//!   offset of a record whose member bytes complete the key). Nodes live in two slabs
//!   (`Vec`s indexed by `u32`, free lists), so there is no per-node allocation either.
//!   Rank, select, insert, remove, score/lex lower bounds are all O(log n); a separator
//!   may refer to a removed record (its bytes stay in the arena until the next rebuild,
//!   which recomputes the tree). A leaf split at the right (left) edge of the tree keeps
//!   the left (right) leaf full (inner nodes: all but one child), so ascending
//!   (descending) insertion packs the nodes; other splits are even (≈ 70% fill under
//!   random insertion). Non-root nodes below a third full merge with or borrow from a
//!   sibling.
//!
//! Measured for 1M members `member:{i}` (12.9 bytes on average) with score `i`: 22.9 bytes
//! of arena per member (21.9 of records + growth slack), 4.1 of dense positions, 10.5 of
//! hash table (2^21 buckets: 1M is just past a doubling; 5.2 just below it) and 4.9 of
//! tree: 42.5 bytes per member, against ≈ 100–120 for Redis's skiplist + dict. Random
//! insertion order gives about the same (42.4 bytes per member at 632k members).
//!
//! Offsets are `u32`: an insertion that would grow the records past `u32::MAX` bytes (even
//! after dropping garbage) fails with [`TooLarge`] and leaves the set unchanged.
//!
//! # Ranges
//!
//! [`Bound`] is this module's own enum (`Inclusive`/`Exclusive`/`Unbounded`, not
//! `std::ops::Bound`). [`ZSet::score_span`] and [`ZSet::lex_span`] return ascending rank
//! ranges (`lo..hi`, never `hi < lo`), to be read with [`ZSet::range_by_rank`] or removed
//! with [`ZSet::remove_rank_range`]. Lex spans are meaningful only when all scores are
//! equal (as in Redis); otherwise they are some in-bounds range.
//!
//! # SCAN
//!
//! Indexed sets are scanned from the highest dense position down; a cursor `c != 0` means
//! "continue below position `c`". Swap-removal only moves the last element (already
//! visited, or still below the cursor), insertions append and arena rebuilds keep dense
//! positions, so every member present for the whole scan is returned at least once.
//! Compact sets are returned whole in one call.
//!
//! # Memory accounting
//!
//! [`ZSet::heap_bytes`] is O(1) and counts every heap block as glibc malloc does.

use super::encoding::{
    alloc_size, grow, put_varint, read_varint, read_varint_checked, splice, varint_len,
};
use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};
use std::cmp::Ordering;
use std::fmt;
use std::hash::BuildHasher;
use std::ops::Range;

/// The records may not grow beyond this many bytes (offsets are `u32`).
const ARENA_LIMIT: usize = u32::MAX as usize;
/// Do not rebuild the arena for less garbage than this.
const MIN_GARBAGE: usize = 256;
/// Version byte of the serialized form.
const FORMAT_VERSION: u8 = 1;
const FLAG_COMPACT: u8 = 1;
/// Bytes of a score in a record.
const SCORE_LEN: usize = 8;
/// Smallest possible record: empty member.
const MIN_RECORD: usize = 1 + SCORE_LEN;
/// Offsets per leaf (a `Leaf` is 256 bytes).
const LEAF_CAP: usize = 63;
/// Children per inner node.
const INNER_CAP: usize = 32;
/// A leaf below this many entries is merged with or refilled from a sibling.
const MIN_LEAF: usize = LEAF_CAP / 3;
/// An inner node below this many children is merged with or refilled from a sibling.
const MIN_INNER: usize = INNER_CAP / 3;

/// The records would exceed `u32::MAX` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sorted set too large")
    }
}

impl std::error::Error for TooLarge {}

/// One end of a score or lex range (this module's own type, not `std::ops::Bound`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound<T> {
    Inclusive(T),
    Exclusive(T),
    Unbounded,
}

/// `-0.0` becomes `0.0`; everything else is kept.
#[inline]
fn norm(score: f64) -> f64 {
    if score == 0.0 {
        0.0
    } else {
        score
    }
}

/// The order of entries: score, then member bytes.
#[inline]
fn key_cmp(s1: f64, m1: &[u8], s2: f64, m2: &[u8]) -> Ordering {
    s1.total_cmp(&s2).then_with(|| m1.cmp(m2))
}

// ---------------------------------------------------------------------------------------
// Records.

/// Encoded size of a record with an `mlen`-byte member.
#[inline]
fn record_len(mlen: usize) -> usize {
    varint_len(mlen)
        .saturating_add(mlen)
        .saturating_add(SCORE_LEN)
}

fn write_record(out: &mut Vec<u8>, member: &[u8], score: f64) {
    put_varint(out, member.len() as u64);
    out.extend_from_slice(member);
    out.extend_from_slice(&score.to_le_bytes());
}

#[inline]
fn read_score(buf: &[u8], p: usize) -> f64 {
    let mut a = [0u8; SCORE_LEN];
    a.copy_from_slice(&buf[p..p + SCORE_LEN]);
    f64::from_le_bytes(a)
}

/// The record at `off`: member, score and the offset just past it.
#[inline]
fn record_at(buf: &[u8], off: usize) -> (&[u8], f64, usize) {
    let (mlen, p) = read_varint(buf, off);
    let end = p + mlen;
    (&buf[p..end], read_score(buf, end), end + SCORE_LEN)
}

/// Member and score of the record at arena offset `off`.
#[inline]
fn entry_at(arena: &[u8], off: u32) -> (&[u8], f64) {
    let (m, s, _) = record_at(arena, off as usize);
    (m, s)
}

#[inline]
fn member_at(arena: &[u8], off: u32) -> &[u8] {
    let (mlen, p) = read_varint(arena, off as usize);
    &arena[p..p + mlen]
}

#[inline]
fn score_at(arena: &[u8], off: u32) -> f64 {
    entry_at(arena, off).1
}

#[inline]
fn record_end(buf: &[u8], off: usize) -> usize {
    let (mlen, p) = read_varint(buf, off);
    p + mlen + SCORE_LEN
}

/// A monotone predicate over the entry order (true for a prefix of the entries), used to
/// count entries below a bound.
#[derive(Clone, Copy)]
enum Pred<'k> {
    /// score < x
    ScoreLt(f64),
    /// score <= x
    ScoreLe(f64),
    /// member < m
    LexLt(&'k [u8]),
    /// member <= m
    LexLe(&'k [u8]),
    /// (score, member) <= (s, m)
    KeyLe(f64, &'k [u8]),
}

impl Pred<'_> {
    /// Whether the entry (`score`, `member()`) satisfies the predicate; the member is only
    /// fetched when needed.
    #[inline]
    fn holds<'m>(self, score: f64, member: impl FnOnce() -> &'m [u8]) -> bool {
        match self {
            Pred::ScoreLt(x) => score.total_cmp(&x).is_lt(),
            Pred::ScoreLe(x) => score.total_cmp(&x).is_le(),
            Pred::LexLt(m) => member() < m,
            Pred::LexLe(m) => member() <= m,
            Pred::KeyLe(s, m) => score.total_cmp(&s).then_with(|| member().cmp(m)).is_le(),
        }
    }

    /// The predicate for the record at arena offset `off`.
    #[inline]
    fn holds_at(self, arena: &[u8], off: u32) -> bool {
        let (m, s) = entry_at(arena, off);
        self.holds(s, || m)
    }

    /// Lower end of a score range: entries below it.
    fn below_min_score(min: Bound<f64>) -> Option<Pred<'static>> {
        match min {
            Bound::Inclusive(x) => Some(Pred::ScoreLt(norm(x))),
            Bound::Exclusive(x) => Some(Pred::ScoreLe(norm(x))),
            Bound::Unbounded => None,
        }
    }

    /// Upper end of a score range: entries up to it.
    fn upto_max_score(max: Bound<f64>) -> Option<Pred<'static>> {
        match max {
            Bound::Inclusive(x) => Some(Pred::ScoreLe(norm(x))),
            Bound::Exclusive(x) => Some(Pred::ScoreLt(norm(x))),
            Bound::Unbounded => None,
        }
    }

    fn below_min_lex(min: Bound<&[u8]>) -> Option<Pred<'_>> {
        match min {
            Bound::Inclusive(m) => Some(Pred::LexLt(m)),
            Bound::Exclusive(m) => Some(Pred::LexLe(m)),
            Bound::Unbounded => None,
        }
    }

    fn upto_max_lex(max: Bound<&[u8]>) -> Option<Pred<'_>> {
        match max {
            Bound::Inclusive(m) => Some(Pred::LexLe(m)),
            Bound::Exclusive(m) => Some(Pred::LexLt(m)),
            Bound::Unbounded => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Compact records: an exactly sized `Box<[u8]>`, sorted.

/// Rank, offset and score of `member`.
fn lp_find(buf: &[u8], member: &[u8]) -> Option<(usize, usize, f64)> {
    let mut pos = 0;
    let mut i = 0;
    while pos < buf.len() {
        let (m, s, next) = record_at(buf, pos);
        if m == member {
            return Some((i, pos, s));
        }
        pos = next;
        i += 1;
    }
    None
}

/// Number of leading records satisfying `pred`, and the offset just past them.
fn lp_count(buf: &[u8], pred: Pred<'_>) -> (usize, usize) {
    let mut pos = 0;
    let mut i = 0;
    while pos < buf.len() {
        let (m, s, next) = record_at(buf, pos);
        if !pred.holds(s, || m) {
            break;
        }
        pos = next;
        i += 1;
    }
    (i, pos)
}

/// Offset of the record `n` records after the one at `from` (or the end).
fn lp_skip(buf: &[u8], from: usize, n: usize) -> usize {
    let mut pos = from;
    for _ in 0..n {
        if pos >= buf.len() {
            break;
        }
        pos = record_end(buf, pos);
    }
    pos
}

/// Inserts a new member at its place.
fn lp_insert(buf: &mut Box<[u8]>, member: &[u8], score: f64) {
    let (_, pos) = lp_count(buf, Pred::KeyLe(score, member));
    let mut rec = Vec::with_capacity(record_len(member.len()));
    write_record(&mut rec, member, score);
    splice(buf, pos, pos, &[&rec]);
}

/// Gives the record at `off` a new score, moving it to its new place (no reallocation).
fn lp_rescore(buf: &mut [u8], off: usize, score: f64) {
    let end = record_end(buf, off);
    let rlen = end - off;
    // The first other record that must follow the moved one.
    let target = {
        let (mlen, p) = read_varint(buf, off);
        let member = &buf[p..p + mlen];
        let mut pos = 0;
        let mut target = buf.len();
        while pos < buf.len() {
            if pos == off {
                pos = end;
                continue;
            }
            let (m, s, next) = record_at(buf, pos);
            if key_cmp(s, m, score, member).is_gt() {
                target = pos;
                break;
            }
            pos = next;
        }
        target
    };
    let new_off = if target <= off {
        buf[target..end].rotate_right(rlen);
        target
    } else {
        buf[off..target].rotate_left(rlen);
        target - rlen
    };
    let s = new_off + rlen - SCORE_LEN;
    buf[s..s + SCORE_LEN].copy_from_slice(&score.to_le_bytes());
}

/// What a compact insertion did.
enum Step {
    /// An existing member (its previous score), or an error.
    Done(Result<Option<f64>, TooLarge>),
    /// A new member was added.
    Inserted,
    /// The set must become indexed first.
    Convert,
}

fn lp_insert_step(
    buf: &mut Box<[u8]>,
    len: usize,
    max_entries: usize,
    max_len: usize,
    member: &[u8],
    score: f64,
    limit: usize,
) -> Step {
    if let Some((_, off, old)) = lp_find(buf, member) {
        if old.total_cmp(&score).is_ne() {
            lp_rescore(buf, off, score);
        }
        return Step::Done(Ok(Some(old)));
    }
    if len >= max_entries || member.len() > max_len {
        return Step::Convert;
    }
    if buf.len().saturating_add(record_len(member.len())) > limit {
        return Step::Done(Err(TooLarge));
    }
    lp_insert(buf, member, score);
    Step::Inserted
}

// ---------------------------------------------------------------------------------------
// The counted B+tree of record offsets.

#[derive(Clone, Copy)]
struct Leaf {
    len: u32,
    items: [u32; LEAF_CAP],
}

impl Leaf {
    const EMPTY: Leaf = Leaf {
        len: 0,
        items: [0; LEAF_CAP],
    };

    #[inline]
    fn items(&self) -> &[u32] {
        &self.items[..self.len as usize]
    }
}

/// An inner node: `len` children with their entry counts; `keys[j]`/`key_offs[j]` separate
/// child `j` from child `j + 1`: every entry of child `j` is below the key, every entry of
/// child `j + 1` at or above it. The key is (`keys[j]`, member of the record at
/// `key_offs[j]`); that record may have been removed since (its bytes stay until the arena
/// is rebuilt, which rebuilds the tree too).
#[derive(Clone, Copy)]
struct Inner {
    len: u32,
    kids: [u32; INNER_CAP],
    counts: [u32; INNER_CAP],
    keys: [f64; INNER_CAP - 1],
    key_offs: [u32; INNER_CAP - 1],
}

impl Inner {
    const EMPTY: Inner = Inner {
        len: 0,
        kids: [0; INNER_CAP],
        counts: [0; INNER_CAP],
        keys: [0.0; INNER_CAP - 1],
        key_offs: [0; INNER_CAP - 1],
    };

    /// Entries below this node.
    fn total(&self) -> usize {
        self.counts[..self.len as usize]
            .iter()
            .map(|&c| c as usize)
            .sum()
    }

    /// The child to descend into for `pred`: the number of leading keys satisfying it.
    #[inline]
    fn child_for(&self, arena: &[u8], pred: Pred<'_>) -> usize {
        let (mut lo, mut hi) = (0, (self.len as usize).saturating_sub(1));
        while lo < hi {
            let mid = (lo + hi) / 2;
            if pred.holds(self.keys[mid], || member_at(arena, self.key_offs[mid])) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The child holding entry `rank` (relative to this node), and the rank within it.
    #[inline]
    fn child_at(&self, mut rank: usize) -> (usize, usize) {
        let n = self.len as usize;
        let mut c = 0;
        while c + 1 < n && rank >= self.counts[c] as usize {
            rank -= self.counts[c] as usize;
            c += 1;
        }
        (c, rank)
    }

    /// Inserts child `i` (`i >= 1`, room left) with the key separating it from child `i-1`.
    fn insert_kid(&mut self, i: usize, s: &Split) {
        let n = self.len as usize;
        self.kids.copy_within(i..n, i + 1);
        self.kids[i] = s.node;
        self.counts.copy_within(i..n, i + 1);
        self.counts[i] = s.count;
        self.keys.copy_within(i - 1..n - 1, i);
        self.keys[i - 1] = s.score;
        self.key_offs.copy_within(i - 1..n - 1, i);
        self.key_offs[i - 1] = s.off;
        self.len += 1;
    }

    /// Removes child `i` (`i >= 1`) and the key separating it from child `i-1`.
    fn remove_kid(&mut self, i: usize) {
        let n = self.len as usize;
        self.kids.copy_within(i + 1..n, i);
        self.counts.copy_within(i + 1..n, i);
        self.keys.copy_within(i..n - 1, i - 1);
        self.key_offs.copy_within(i..n - 1, i - 1);
        self.len -= 1;
    }
}

/// A key being inserted or removed: score, member and its record offset.
#[derive(Clone, Copy)]
struct Key<'a> {
    score: f64,
    member: &'a [u8],
    off: u32,
}

/// A new right sibling produced by a split, with its entry count and separating key.
struct Split {
    node: u32,
    count: u32,
    score: f64,
    off: u32,
}

/// A position in the tree: the path of (inner node, child) pairs from the root, the leaf
/// and the index in it.
struct Cursor {
    path: Vec<(u32, u32)>,
    leaf: u32,
    pos: u32,
}

#[derive(Clone)]
struct Tree {
    leaves: Vec<Leaf>,
    inners: Vec<Inner>,
    free_leaves: Vec<u32>,
    free_inners: Vec<u32>,
    root: u32,
    /// Levels of inner nodes (0: the root is a leaf).
    height: u32,
}

/// Sizes of `parts` chunks spreading `n` items evenly.
fn chunks(n: usize, parts: usize) -> impl Iterator<Item = usize> {
    let base = n / parts.max(1);
    let extra = n % parts.max(1);
    (0..parts).map(move |j| base + usize::from(j < extra))
}

impl Tree {
    fn new() -> Tree {
        Tree {
            leaves: vec![Leaf::EMPTY],
            inners: Vec::new(),
            free_leaves: Vec::new(),
            free_inners: Vec::new(),
            root: 0,
            height: 0,
        }
    }

    /// A tree over `items`, record offsets already in entry order, with full nodes.
    fn build(arena: &[u8], items: &[u32]) -> Tree {
        let n = items.len();
        if n == 0 {
            return Tree::new();
        }
        let mut t = Tree {
            leaves: Vec::with_capacity(n.div_ceil(LEAF_CAP)),
            inners: Vec::new(),
            free_leaves: Vec::new(),
            free_inners: Vec::new(),
            root: 0,
            height: 0,
        };
        // (node, entries, first key) of the current level.
        let mut level: Vec<(u32, u32, f64, u32)> = Vec::with_capacity(n.div_ceil(LEAF_CAP));
        let mut i = 0;
        for size in chunks(n, n.div_ceil(LEAF_CAP)) {
            let mut leaf = Leaf::EMPTY;
            leaf.items[..size].copy_from_slice(&items[i..i + size]);
            leaf.len = size as u32;
            let first = items[i];
            level.push((
                t.leaves.len() as u32,
                size as u32,
                score_at(arena, first),
                first,
            ));
            t.leaves.push(leaf);
            i += size;
        }
        while level.len() > 1 {
            let parts = level.len().div_ceil(INNER_CAP);
            t.inners.reserve_exact(parts);
            let mut next = Vec::with_capacity(parts);
            let mut i = 0;
            for size in chunks(level.len(), parts) {
                let group = &level[i..i + size];
                let mut node = Inner::EMPTY;
                node.len = size as u32;
                for (j, &(kid, count, score, off)) in group.iter().enumerate() {
                    node.kids[j] = kid;
                    node.counts[j] = count;
                    if j > 0 {
                        node.keys[j - 1] = score;
                        node.key_offs[j - 1] = off;
                    }
                }
                next.push((
                    t.inners.len() as u32,
                    node.total() as u32,
                    group[0].2,
                    group[0].3,
                ));
                t.inners.push(node);
                i += size;
            }
            level = next;
            t.height += 1;
        }
        t.root = level[0].0;
        t
    }

    fn alloc_leaf(&mut self) -> u32 {
        if let Some(i) = self.free_leaves.pop() {
            self.leaves[i as usize] = Leaf::EMPTY;
            return i;
        }
        grow(&mut self.leaves, 1);
        self.leaves.push(Leaf::EMPTY);
        (self.leaves.len() - 1) as u32
    }

    fn alloc_inner(&mut self) -> u32 {
        if let Some(i) = self.free_inners.pop() {
            self.inners[i as usize] = Inner::EMPTY;
            return i;
        }
        grow(&mut self.inners, 1);
        self.inners.push(Inner::EMPTY);
        (self.inners.len() - 1) as u32
    }

    /// Entries below `node` at `level`.
    fn size(&self, node: u32, level: u32) -> usize {
        if level == 0 {
            self.leaves[node as usize].len as usize
        } else {
            self.inners[node as usize].total()
        }
    }

    /// Number of leading entries satisfying `pred` (a monotone predicate).
    fn count(&self, arena: &[u8], pred: Pred<'_>) -> usize {
        let mut node = self.root;
        let mut before = 0;
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            let c = inner.child_for(arena, pred);
            before += inner.counts[..c].iter().map(|&x| x as usize).sum::<usize>();
            node = inner.kids[c];
        }
        let leaf = &self.leaves[node as usize];
        before + leaf.items().partition_point(|&o| pred.holds_at(arena, o))
    }

    /// The record offset at `rank`.
    fn at(&self, rank: usize) -> Option<u32> {
        let mut node = self.root;
        let mut r = rank;
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            let (c, rest) = inner.child_at(r);
            r = rest;
            node = inner.kids[c];
        }
        self.leaves[node as usize].items().get(r).copied()
    }

    /// Rank of the entry `key`.
    fn rank_of(&self, arena: &[u8], key: Key<'_>) -> Option<usize> {
        let pred = Pred::KeyLe(key.score, key.member);
        let mut node = self.root;
        let mut before = 0;
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            let c = inner.child_for(arena, pred);
            before += inner.counts[..c].iter().map(|&x| x as usize).sum::<usize>();
            node = inner.kids[c];
        }
        let leaf = &self.leaves[node as usize];
        let pos = leaf.items().iter().position(|&o| o == key.off)?;
        Some(before + pos)
    }

    fn insert(&mut self, arena: &[u8], key: Key<'_>) {
        let old_root = self.root;
        let Some(split) = self.insert_rec(arena, old_root, self.height, key, (true, true)) else {
            return;
        };
        let left = self.size(old_root, self.height);
        let root = self.alloc_inner();
        let r = &mut self.inners[root as usize];
        r.len = 2;
        r.kids[0] = old_root;
        r.kids[1] = split.node;
        r.counts[0] = left as u32;
        r.counts[1] = split.count;
        r.keys[0] = split.score;
        r.key_offs[0] = split.off;
        self.root = root;
        self.height += 1;
    }

    /// Inserts `key` below `node`; `edges` says whether `node` is on the left and right
    /// edge of the tree. Returns the new right sibling if `node` split.
    fn insert_rec(
        &mut self,
        arena: &[u8],
        node: u32,
        level: u32,
        key: Key<'_>,
        edges: (bool, bool),
    ) -> Option<Split> {
        let pred = Pred::KeyLe(key.score, key.member);
        if level == 0 {
            let leaf = &mut self.leaves[node as usize];
            let len = leaf.len as usize;
            let pos = leaf.items[..len].partition_point(|&o| pred.holds_at(arena, o));
            if len < LEAF_CAP {
                leaf.items.copy_within(pos..len, pos + 1);
                leaf.items[pos] = key.off;
                leaf.len += 1;
                return None;
            }
            let mut all = [0u32; LEAF_CAP + 1];
            all[..pos].copy_from_slice(&leaf.items[..pos]);
            all[pos] = key.off;
            all[pos + 1..].copy_from_slice(&leaf.items[pos..]);
            // Appending at the right edge (prepending at the left) keeps the other side
            // full, so monotone insertion packs the leaves.
            let keep = if pos == LEAF_CAP && edges.1 {
                LEAF_CAP
            } else if pos == 0 && edges.0 {
                1
            } else {
                LEAF_CAP.div_ceil(2)
            };
            leaf.items[..keep].copy_from_slice(&all[..keep]);
            leaf.len = keep as u32;
            let moved = LEAF_CAP + 1 - keep;
            let right = self.alloc_leaf();
            let r = &mut self.leaves[right as usize];
            r.items[..moved].copy_from_slice(&all[keep..]);
            r.len = moved as u32;
            return Some(Split {
                node: right,
                count: moved as u32,
                score: score_at(arena, all[keep]),
                off: all[keep],
            });
        }
        let inner = &self.inners[node as usize];
        let n = inner.len as usize;
        let c = inner.child_for(arena, pred);
        let kid = inner.kids[c];
        let split = self.insert_rec(
            arena,
            kid,
            level - 1,
            key,
            (edges.0 && c == 0, edges.1 && c + 1 == n),
        );
        let inner = &mut self.inners[node as usize];
        inner.counts[c] += 1;
        let split = split?;
        inner.counts[c] -= split.count;
        let i = c + 1;
        if n < INNER_CAP {
            inner.insert_kid(i, &split);
            return None;
        }
        // Split this node: INNER_CAP + 1 children.
        let mut kids = [0u32; INNER_CAP + 1];
        let mut counts = [0u32; INNER_CAP + 1];
        let mut keys = [0f64; INNER_CAP];
        let mut offs = [0u32; INNER_CAP];
        kids[..i].copy_from_slice(&inner.kids[..i]);
        kids[i] = split.node;
        kids[i + 1..].copy_from_slice(&inner.kids[i..]);
        counts[..i].copy_from_slice(&inner.counts[..i]);
        counts[i] = split.count;
        counts[i + 1..].copy_from_slice(&inner.counts[i..]);
        keys[..c].copy_from_slice(&inner.keys[..c]);
        keys[c] = split.score;
        keys[c + 1..].copy_from_slice(&inner.keys[c..]);
        offs[..c].copy_from_slice(&inner.key_offs[..c]);
        offs[c] = split.off;
        offs[c + 1..].copy_from_slice(&inner.key_offs[c..]);
        // Edge splits leave two children on the short side, so that every inner node keeps
        // at least two.
        let keep = if i == INNER_CAP && edges.1 {
            INNER_CAP - 1
        } else if i == 1 && edges.0 {
            2
        } else {
            INNER_CAP.div_ceil(2)
        };
        inner.kids[..keep].copy_from_slice(&kids[..keep]);
        inner.counts[..keep].copy_from_slice(&counts[..keep]);
        inner.keys[..keep - 1].copy_from_slice(&keys[..keep - 1]);
        inner.key_offs[..keep - 1].copy_from_slice(&offs[..keep - 1]);
        inner.len = keep as u32;
        let moved = INNER_CAP + 1 - keep;
        let right = self.alloc_inner();
        let r = &mut self.inners[right as usize];
        r.kids[..moved].copy_from_slice(&kids[keep..]);
        r.counts[..moved].copy_from_slice(&counts[keep..]);
        r.keys[..moved - 1].copy_from_slice(&keys[keep..]);
        r.key_offs[..moved - 1].copy_from_slice(&offs[keep..]);
        r.len = moved as u32;
        Some(Split {
            node: right,
            count: r.total() as u32,
            score: keys[keep - 1],
            off: offs[keep - 1],
        })
    }

    /// Removes the entry `key`; false if it is not there.
    fn remove(&mut self, arena: &[u8], key: Key<'_>) -> bool {
        let found = self.remove_rec(arena, self.root, self.height, key);
        self.collapse_root();
        found
    }

    fn remove_rec(&mut self, arena: &[u8], node: u32, level: u32, key: Key<'_>) -> bool {
        if level == 0 {
            let leaf = &mut self.leaves[node as usize];
            let len = leaf.len as usize;
            let Some(pos) = leaf.items[..len].iter().position(|&o| o == key.off) else {
                return false;
            };
            leaf.items.copy_within(pos + 1..len, pos);
            leaf.len -= 1;
            return true;
        }
        let inner = &self.inners[node as usize];
        let c = inner.child_for(arena, Pred::KeyLe(key.score, key.member));
        if !self.remove_rec(arena, inner.kids[c], level - 1, key) {
            return false;
        }
        self.inners[node as usize].counts[c] -= 1;
        self.fix_child(arena, node, level, c);
        true
    }

    /// Removes up to `max` entries from rank `rank` on, all from one leaf; appends their
    /// offsets to `out` and returns how many.
    fn remove_run(&mut self, arena: &[u8], rank: usize, max: usize, out: &mut Vec<u32>) -> usize {
        let n = self.remove_run_rec(arena, self.root, self.height, rank, max, out);
        self.collapse_root();
        n
    }

    fn remove_run_rec(
        &mut self,
        arena: &[u8],
        node: u32,
        level: u32,
        rank: usize,
        max: usize,
        out: &mut Vec<u32>,
    ) -> usize {
        if level == 0 {
            let leaf = &mut self.leaves[node as usize];
            let len = leaf.len as usize;
            if rank >= len {
                return 0;
            }
            let t = max.min(len - rank);
            out.extend_from_slice(&leaf.items[rank..rank + t]);
            leaf.items.copy_within(rank + t..len, rank);
            leaf.len -= t as u32;
            return t;
        }
        let inner = &self.inners[node as usize];
        let (c, r) = inner.child_at(rank);
        let t = self.remove_run_rec(arena, inner.kids[c], level - 1, r, max, out);
        if t > 0 {
            self.inners[node as usize].counts[c] -= t as u32;
            self.fix_child(arena, node, level, c);
        }
        t
    }

    /// Drops root levels with a single child.
    fn collapse_root(&mut self) {
        while self.height > 0 && self.inners[self.root as usize].len == 1 {
            let old = self.root;
            self.root = self.inners[old as usize].kids[0];
            self.free_inners.push(old);
            self.height -= 1;
        }
    }

    /// After a removal below child `c` of `node` (at `level`), merges the child with a
    /// sibling or refills it from one if it got too small.
    fn fix_child(&mut self, arena: &[u8], node: u32, level: u32, c: usize) {
        let inner = &self.inners[node as usize];
        if inner.len < 2 {
            return;
        }
        let kid = inner.kids[c] as usize;
        let short = if level == 1 {
            (self.leaves[kid].len as usize) < MIN_LEAF
        } else {
            (self.inners[kid].len as usize) < MIN_INNER
        };
        if !short {
            return;
        }
        let a = c.saturating_sub(1);
        if level == 1 {
            self.rebalance_leaves(arena, node, a);
        } else {
            self.rebalance_inners(node, a);
        }
    }

    /// Merges leaves `a` and `a + 1` of `node`, or spreads their entries evenly.
    fn rebalance_leaves(&mut self, arena: &[u8], node: u32, a: usize) {
        let p = &self.inners[node as usize];
        let (la, lb) = (p.kids[a] as usize, p.kids[a + 1] as usize);
        let mut all = [0u32; 2 * LEAF_CAP];
        let na = self.leaves[la].len as usize;
        let nb = self.leaves[lb].len as usize;
        all[..na].copy_from_slice(self.leaves[la].items());
        all[na..na + nb].copy_from_slice(self.leaves[lb].items());
        let total = na + nb;
        if total <= LEAF_CAP {
            let l = &mut self.leaves[la];
            l.items[..total].copy_from_slice(&all[..total]);
            l.len = total as u32;
            self.free_leaves.push(lb as u32);
            let p = &mut self.inners[node as usize];
            p.remove_kid(a + 1);
            p.counts[a] = total as u32;
        } else {
            let h = total / 2;
            let l = &mut self.leaves[la];
            l.items[..h].copy_from_slice(&all[..h]);
            l.len = h as u32;
            let r = &mut self.leaves[lb];
            r.items[..total - h].copy_from_slice(&all[h..total]);
            r.len = (total - h) as u32;
            let p = &mut self.inners[node as usize];
            p.counts[a] = h as u32;
            p.counts[a + 1] = (total - h) as u32;
            p.keys[a] = score_at(arena, all[h]);
            p.key_offs[a] = all[h];
        }
    }

    /// Merges inner children `a` and `a + 1` of `node`, or spreads their children evenly.
    fn rebalance_inners(&mut self, node: u32, a: usize) {
        let p = &self.inners[node as usize];
        let (ia, ib) = (p.kids[a] as usize, p.kids[a + 1] as usize);
        let (sep, sep_off) = (p.keys[a], p.key_offs[a]);
        let x = self.inners[ia];
        let y = self.inners[ib];
        let (na, nb) = (x.len as usize, y.len as usize);
        let total = na + nb;
        let mut kids = [0u32; 2 * INNER_CAP];
        let mut counts = [0u32; 2 * INNER_CAP];
        let mut keys = [0f64; 2 * INNER_CAP];
        let mut offs = [0u32; 2 * INNER_CAP];
        kids[..na].copy_from_slice(&x.kids[..na]);
        kids[na..total].copy_from_slice(&y.kids[..nb]);
        counts[..na].copy_from_slice(&x.counts[..na]);
        counts[na..total].copy_from_slice(&y.counts[..nb]);
        keys[..na - 1].copy_from_slice(&x.keys[..na - 1]);
        offs[..na - 1].copy_from_slice(&x.key_offs[..na - 1]);
        keys[na - 1] = sep;
        offs[na - 1] = sep_off;
        keys[na..total - 1].copy_from_slice(&y.keys[..nb - 1]);
        offs[na..total - 1].copy_from_slice(&y.key_offs[..nb - 1]);
        if total <= INNER_CAP {
            let l = &mut self.inners[ia];
            l.kids[..total].copy_from_slice(&kids[..total]);
            l.counts[..total].copy_from_slice(&counts[..total]);
            l.keys[..total - 1].copy_from_slice(&keys[..total - 1]);
            l.key_offs[..total - 1].copy_from_slice(&offs[..total - 1]);
            l.len = total as u32;
            let sum = l.total() as u32;
            self.free_inners.push(ib as u32);
            let p = &mut self.inners[node as usize];
            p.remove_kid(a + 1);
            p.counts[a] = sum;
        } else {
            let h = total / 2;
            let l = &mut self.inners[ia];
            l.kids[..h].copy_from_slice(&kids[..h]);
            l.counts[..h].copy_from_slice(&counts[..h]);
            l.keys[..h - 1].copy_from_slice(&keys[..h - 1]);
            l.key_offs[..h - 1].copy_from_slice(&offs[..h - 1]);
            l.len = h as u32;
            let left = l.total() as u32;
            let r = &mut self.inners[ib];
            r.kids[..total - h].copy_from_slice(&kids[h..total]);
            r.counts[..total - h].copy_from_slice(&counts[h..total]);
            r.keys[..total - h - 1].copy_from_slice(&keys[h..total - 1]);
            r.key_offs[..total - h - 1].copy_from_slice(&offs[h..total - 1]);
            r.len = (total - h) as u32;
            let right = r.total() as u32;
            let p = &mut self.inners[node as usize];
            p.counts[a] = left;
            p.counts[a + 1] = right;
            p.keys[a] = keys[h - 1];
            p.key_offs[a] = offs[h - 1];
        }
    }

    /// All record offsets in entry order.
    fn collect(&self, out: &mut Vec<u32>) {
        self.collect_rec(self.root, self.height, out);
    }

    fn collect_rec(&self, node: u32, level: u32, out: &mut Vec<u32>) {
        if level == 0 {
            out.extend_from_slice(self.leaves[node as usize].items());
        } else {
            let inner = &self.inners[node as usize];
            for &kid in &inner.kids[..inner.len as usize] {
                self.collect_rec(kid, level - 1, out);
            }
        }
    }

    /// A cursor at `rank` (which must exist for the cursor to be readable).
    fn seek(&self, rank: usize) -> Cursor {
        let mut path = Vec::with_capacity(self.height as usize);
        let mut node = self.root;
        let mut r = rank;
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            let (c, rest) = inner.child_at(r);
            r = rest;
            path.push((node, c as u32));
            node = inner.kids[c];
        }
        Cursor {
            path,
            leaf: node,
            pos: r as u32,
        }
    }

    /// Moves the cursor one entry forward (`rev`: backward). At either end it stays put.
    fn step(&self, cur: &mut Cursor, rev: bool) {
        if !rev && cur.pos + 1 < self.leaves[cur.leaf as usize].len {
            cur.pos += 1;
            return;
        }
        if rev && cur.pos > 0 {
            cur.pos -= 1;
            return;
        }
        loop {
            // Up to the first ancestor with a next (previous) child.
            let mut depth = cur.path.len();
            loop {
                if depth == 0 {
                    return;
                }
                let (node, c) = cur.path[depth - 1];
                let n = self.inners[node as usize].len;
                if !rev && c + 1 < n {
                    cur.path[depth - 1].1 = c + 1;
                    break;
                }
                if rev && c > 0 {
                    cur.path[depth - 1].1 = c - 1;
                    break;
                }
                depth -= 1;
            }
            cur.path.truncate(depth);
            // Down the leftmost (rightmost) path.
            let (p, c) = cur.path[depth - 1];
            let mut node = self.inners[p as usize].kids[c as usize];
            while cur.path.len() < self.height as usize {
                let inner = &self.inners[node as usize];
                let c = if rev { inner.len.saturating_sub(1) } else { 0 };
                cur.path.push((node, c));
                node = inner.kids[c as usize];
            }
            let len = self.leaves[node as usize].len;
            if len == 0 {
                // Never left behind by removals; skipped for robustness.
                continue;
            }
            cur.leaf = node;
            cur.pos = if rev { len - 1 } else { 0 };
            return;
        }
    }

    fn heap_bytes(&self) -> usize {
        alloc_size(self.leaves.capacity() * std::mem::size_of::<Leaf>())
            + alloc_size(self.inners.capacity() * std::mem::size_of::<Inner>())
            + alloc_size(self.free_leaves.capacity() * std::mem::size_of::<u32>())
            + alloc_size(self.free_inners.capacity() * std::mem::size_of::<u32>())
    }
}

// ---------------------------------------------------------------------------------------
// Indexed form.

#[derive(Clone)]
struct Indexed {
    /// The records, live and dead.
    arena: Vec<u8>,
    /// Dense position → record offset.
    dense: Vec<u32>,
    /// Dead bytes in `arena`.
    garbage: usize,
    /// Dense positions, keyed by member.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    tree: Tree,
    max_entries: usize,
    max_len: usize,
}

impl Indexed {
    fn new(max_entries: usize, max_len: usize) -> Indexed {
        Indexed {
            arena: Vec::new(),
            dense: Vec::new(),
            garbage: 0,
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            tree: Tree::new(),
            max_entries,
            max_len,
        }
    }

    /// Takes over `count` well-formed records sorted by (score, member). With `check`,
    /// `None` if a member occurs twice; without, members must be distinct.
    fn from_records(
        arena: Vec<u8>,
        count: usize,
        limits: (usize, usize),
        check: bool,
    ) -> Option<Indexed> {
        let (max_entries, max_len) = limits;
        let mut dense = Vec::with_capacity(count);
        let mut pos = 0;
        while pos < arena.len() {
            dense.push(pos as u32);
            pos = record_end(&arena, pos);
        }
        let mut ix = Indexed::new(max_entries, max_len);
        ix.tree = Tree::build(&arena, &dense);
        ix.arena = arena;
        ix.dense = dense;
        ix.build_index(check).then_some(ix)
    }

    /// Builds the index from the dense positions; false if a member occurs twice (only
    /// detected with `check`).
    fn build_index(&mut self, check: bool) -> bool {
        let Indexed {
            arena,
            dense,
            index,
            hasher,
            ..
        } = self;
        *index = HashTable::with_capacity(dense.len());
        for (i, &off) in dense.iter().enumerate() {
            let member = member_at(arena, off);
            let h = hasher.hash_one(member);
            let rehash = |&j: &u32| hasher.hash_one(member_at(arena, dense[j as usize]));
            if check {
                match index.entry(
                    h,
                    |&j| member_at(arena, dense[j as usize]) == member,
                    rehash,
                ) {
                    Entry::Occupied(_) => return false,
                    Entry::Vacant(v) => {
                        v.insert(i as u32);
                    }
                }
            } else {
                index.insert_unique(h, i as u32, rehash);
            }
        }
        true
    }

    #[inline]
    fn len(&self) -> usize {
        self.dense.len()
    }

    #[inline]
    fn hash(&self, member: &[u8]) -> u64 {
        self.hasher.hash_one(member)
    }

    /// Dense position of `member`.
    fn find(&self, member: &[u8]) -> Option<usize> {
        let (arena, dense) = (&self.arena, &self.dense);
        self.index
            .find(self.hash(member), |&j| {
                member_at(arena, dense[j as usize]) == member
            })
            .map(|&j| j as usize)
    }

    #[inline]
    fn entry(&self, off: u32) -> (&[u8], f64) {
        entry_at(&self.arena, off)
    }

    fn score(&self, member: &[u8]) -> Option<f64> {
        self.find(member).map(|i| self.entry(self.dense[i]).1)
    }

    fn rank(&self, member: &[u8]) -> Option<usize> {
        let off = self.dense[self.find(member)?];
        let score = score_at(&self.arena, off);
        self.tree.rank_of(&self.arena, Key { score, member, off })
    }

    fn insert(&mut self, member: &[u8], score: f64, limit: usize) -> Result<Option<f64>, TooLarge> {
        if let Some(i) = self.find(member) {
            let off = self.dense[i];
            let (_, old, end) = record_at(&self.arena, off as usize);
            if old.total_cmp(&score).is_ne() {
                self.tree.remove(
                    &self.arena,
                    Key {
                        score: old,
                        member,
                        off,
                    },
                );
                self.arena[end - SCORE_LEN..end].copy_from_slice(&score.to_le_bytes());
                self.tree.insert(&self.arena, Key { score, member, off });
            }
            return Ok(Some(old));
        }
        self.ensure_room(record_len(member.len()), limit)?;
        let off = self.arena.len() as u32;
        write_record(&mut self.arena, member, score);
        grow(&mut self.dense, 1);
        let id = self.dense.len() as u32;
        self.dense.push(off);
        let h = self.hash(member);
        let Indexed {
            arena,
            dense,
            index,
            hasher,
            tree,
            ..
        } = self;
        index.insert_unique(h, id, |&j| {
            hasher.hash_one(member_at(arena, dense[j as usize]))
        });
        tree.insert(arena, Key { score, member, off });
        Ok(None)
    }

    fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let h = self.hash(member);
        let (arena, dense) = (&self.arena, &self.dense);
        let i = match self
            .index
            .find_entry(h, |&j| member_at(arena, dense[j as usize]) == member)
        {
            Ok(e) => e.remove().0 as usize,
            Err(_) => return None,
        };
        let off = self.dense[i];
        let (_, score, end) = record_at(&self.arena, off as usize);
        self.tree.remove(&self.arena, Key { score, member, off });
        self.garbage += end - off as usize;
        self.unlink(i);
        self.maybe_shrink();
        Some(score)
    }

    /// Removes ranks `start..end` (clamped); returns how many.
    fn remove_rank_range(&mut self, start: usize, end: usize) -> usize {
        let end = end.min(self.len());
        if start >= end {
            return 0;
        }
        let want = end - start;
        let mut done = 0;
        let mut out = Vec::with_capacity(want.min(LEAF_CAP));
        while done < want {
            let t = self
                .tree
                .remove_run(&self.arena, start, want - done, &mut out);
            if t == 0 {
                break;
            }
            done += t;
            for off in out.drain(..) {
                let member = member_at(&self.arena, off);
                let h = self.hash(member);
                let dense = &self.dense;
                if let Ok(e) = self.index.find_entry(h, |&j| dense[j as usize] == off) {
                    let i = e.remove().0 as usize;
                    self.garbage += record_end(&self.arena, off as usize) - off as usize;
                    self.unlink(i);
                }
            }
        }
        self.maybe_shrink();
        done
    }

    /// Removes dense slot `i` (whose index entry is already gone) by moving the last one
    /// into it.
    fn unlink(&mut self, i: usize) {
        let last = self.dense.len() - 1;
        if i != last {
            let h = self.hash(member_at(&self.arena, self.dense[last]));
            if let Some(slot) = self.index.find_mut(h, |&j| j as usize == last) {
                *slot = i as u32;
            }
        }
        self.dense.swap_remove(i);
    }

    /// Makes room for `need` more arena bytes, dropping garbage if that avoids the limit.
    fn ensure_room(&mut self, need: usize, limit: usize) -> Result<(), TooLarge> {
        if self.arena.len().saturating_add(need) > limit {
            if self.garbage > 0 {
                self.rebuild();
            }
            if self.arena.len().saturating_add(need) > limit {
                return Err(TooLarge);
            }
        }
        grow(&mut self.arena, need);
        Ok(())
    }

    /// Rewrites the arena without garbage, in entry order, and rebuilds the tree (full
    /// nodes, fresh separators). Dense positions and the index are unchanged.
    fn rebuild(&mut self) {
        let mut order = Vec::with_capacity(self.len());
        self.tree.collect(&mut order);
        let live = self.arena.len() - self.garbage;
        let mut arena = Vec::with_capacity(live + live / 8);
        let mut old = std::mem::take(&mut self.arena);
        for o in order.iter_mut() {
            let start = *o as usize;
            let end = record_end(&old, start);
            let new = arena.len() as u32;
            arena.extend_from_slice(&old[start..end]);
            // Forwarding address, in the old copy's score bytes.
            old[end - SCORE_LEN..end - SCORE_LEN + 4].copy_from_slice(&new.to_le_bytes());
            *o = new;
        }
        for d in self.dense.iter_mut() {
            let end = record_end(&old, *d as usize);
            let mut a = [0u8; 4];
            a.copy_from_slice(&old[end - SCORE_LEN..end - SCORE_LEN + 4]);
            *d = u32::from_le_bytes(a);
        }
        self.tree = Tree::build(&arena, &order);
        self.arena = arena;
        self.garbage = 0;
    }

    fn maybe_shrink(&mut self) {
        if self.dense.is_empty() {
            if self.arena.capacity() > 0 || self.tree.leaves.len() > 1 {
                let (me, ml) = (self.max_entries, self.max_len);
                let hasher = self.hasher.clone();
                *self = Indexed::new(me, ml);
                self.hasher = hasher;
            }
            return;
        }
        let live = self.arena.len() - self.garbage;
        if self.garbage >= MIN_GARBAGE && self.garbage > live {
            self.rebuild();
        }
        if self.dense.capacity() > 64 && self.dense.len() < self.dense.capacity() / 4 {
            let l = self.dense.len();
            self.dense.shrink_to(l + l / 2);
        }
        if self.index.capacity() > 64 && self.index.len() < self.index.capacity() / 4 {
            let Indexed {
                arena,
                dense,
                index,
                hasher,
                ..
            } = self;
            let n = index.len();
            index.shrink_to(n + n / 2, |&j| {
                hasher.hash_one(member_at(arena, dense[j as usize]))
            });
        }
    }

    fn heap_bytes(&self) -> usize {
        alloc_size(std::mem::size_of::<Indexed>())
            + alloc_size(self.arena.capacity())
            + alloc_size(self.dense.capacity() * std::mem::size_of::<u32>())
            + alloc_size(self.index.allocation_size())
            + self.tree.heap_bytes()
    }
}

// ---------------------------------------------------------------------------------------
// ZSet.

/// A Redis sorted set; see the module documentation.
#[derive(Clone)]
pub struct ZSet {
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

impl Default for ZSet {
    /// An empty compact set with Redis's default limits (128 entries, 64 bytes).
    fn default() -> ZSet {
        ZSet::new(128, 64)
    }
}

impl fmt::Debug for ZSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZSet")
            .field("len", &self.len())
            .field("encoding", &self.encoding())
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

/// Iterator over a range of entries (see [`ZSet::range_by_rank`]).
pub struct Iter<'a> {
    src: Src<'a>,
    remaining: usize,
}

enum Src<'a> {
    /// Compact, ascending: `pos` is the offset of the next record.
    Compact { buf: &'a [u8], pos: usize },
    /// Compact, descending: offsets still to return (last first).
    CompactRev { buf: &'a [u8], offs: Vec<u32> },
    Tree {
        ix: &'a Indexed,
        cur: Cursor,
        rev: bool,
    },
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let item = match &mut self.src {
            Src::Compact { buf, pos } => {
                let buf: &'a [u8] = buf;
                if *pos >= buf.len() {
                    None
                } else {
                    let (m, s, next) = record_at(buf, *pos);
                    *pos = next;
                    Some((m, s))
                }
            }
            Src::CompactRev { buf, offs } => {
                let buf: &'a [u8] = buf;
                offs.pop().map(|o| entry_at(buf, o))
            }
            Src::Tree { ix, cur, rev } => {
                let ix: &'a Indexed = ix;
                let off = ix.tree.leaves[cur.leaf as usize]
                    .items()
                    .get(cur.pos as usize)
                    .copied();
                if self.remaining > 0 {
                    ix.tree.step(cur, *rev);
                }
                off.map(|o| ix.entry(o))
            }
        };
        if item.is_none() {
            self.remaining = 0;
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl ZSet {
    /// An empty compact set that converts to the indexed form once a new member would make
    /// it hold more than `max_entries` members or is longer than `max_len` bytes.
    pub fn new(max_entries: usize, max_len: usize) -> ZSet {
        ZSet::compact_from(Box::default(), 0, max_entries, max_len)
    }

    /// A set of `entries` built in one pass (ZUNIONSTORE & co.: linear, where inserting one
    /// by one into a compact set is quadratic): compact when within the limits, else
    /// indexed, as Redis converts a built result. `None` unless the members are distinct and
    /// sorted by (score, member) with no NaN (the caller then inserts them one by one);
    /// `Some(Err)` past the size limit.
    pub fn from_sorted<M: AsRef<[u8]>>(
        entries: &[(M, f64)],
        max_entries: usize,
        max_len: usize,
    ) -> Option<Result<ZSet, TooLarge>> {
        let mut arena = Vec::new();
        let mut prev: Option<(f64, &[u8])> = None;
        let mut longest = 0;
        for (m, s) in entries {
            let (m, s) = (m.as_ref(), norm(*s));
            if s.is_nan() || prev.is_some_and(|(ps, pm)| key_cmp(ps, pm, s, m).is_ge()) {
                return None;
            }
            prev = Some((s, m));
            longest = longest.max(m.len());
            write_record(&mut arena, m, s);
            if arena.len() > ARENA_LIMIT {
                return Some(Err(TooLarge));
            }
        }
        let n = entries.len();
        Some(Ok(if n <= max_entries && longest <= max_len {
            ZSet::compact_from(arena.into_boxed_slice(), n, max_entries, max_len)
        } else {
            let ix = Indexed::from_records(arena, n, (max_entries, max_len), false)?;
            ZSet {
                repr: Repr::Indexed(Box::new(ix)),
            }
        }))
    }

    /// A compact set of `len` entries in `buf` (sorted, distinct, within the limits).
    fn compact_from(buf: Box<[u8]>, len: usize, max_entries: usize, max_len: usize) -> ZSet {
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
        ZSet { repr }
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

    /// The compact records, entry count and limits, or `None` when indexed.
    fn compact_mut(&mut self) -> Option<(&mut Box<[u8]>, usize, usize, usize)> {
        match &mut self.repr {
            Repr::Small {
                buf,
                len,
                max_entries,
                max_len,
            } => Some((
                buf,
                usize::from(*len),
                usize::from(*max_entries),
                usize::from(*max_len),
            )),
            Repr::Wide(w) => Some((&mut w.buf, w.len, w.max_entries, w.max_len)),
            Repr::Indexed(_) => None,
        }
    }

    /// Sets the entry count of a compact set (it only grows within `max_entries`; a set
    /// left above a lowered limit only shrinks, so `u16` still holds it).
    fn set_compact_len(&mut self, n: usize) {
        match &mut self.repr {
            Repr::Small { len, .. } => *len = u16::try_from(n).unwrap_or(u16::MAX),
            Repr::Wide(w) => w.len = n,
            Repr::Indexed(_) => {}
        }
    }

    /// The compact-mode limits `(max_entries, max_len)` the set was created with.
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
            Repr::Indexed(ix) => ix.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Redis 7.0's name for the representation: "listpack" or "skiplist".
    pub fn encoding(&self) -> &'static str {
        match self.repr {
            Repr::Indexed(_) => "skiplist",
            _ => "listpack",
        }
    }

    /// Take the compact-encoding limits `(max_entries, max_len)` now in force (CONFIG SET
    /// `zset-max-listpack-*`). Nothing converts here: as in Redis, a compact value above a
    /// lowered limit converts when a new member is added. Indexed ones only note them
    /// (they never convert back).
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
        *self = ZSet::compact_from(buf, len, max_entries, max_len);
    }

    /// Converts to the indexed form (no-op if already indexed). For callers that mirror
    /// Redis's pre-emptive conversions.
    pub fn convert_to_indexed(&mut self) {
        let empty = Repr::Small {
            len: 0,
            max_entries: 0,
            max_len: 0,
            buf: Box::default(),
        };
        let ix = match std::mem::replace(&mut self.repr, empty) {
            Repr::Indexed(ix) => ix,
            Repr::Small {
                len,
                max_entries,
                max_len,
                buf,
            } => Indexed::from_records(
                buf.into_vec(),
                usize::from(len),
                (usize::from(max_entries), usize::from(max_len)),
                false,
            )
            .map(Box::new)
            .unwrap_or_else(|| Box::new(Indexed::new(0, 0))),
            Repr::Wide(w) => {
                let Wide {
                    buf,
                    len,
                    max_entries,
                    max_len,
                } = *w;
                Indexed::from_records(buf.into_vec(), len, (max_entries, max_len), false)
                    .map(Box::new)
                    .unwrap_or_else(|| Box::new(Indexed::new(0, 0)))
            }
        };
        self.repr = Repr::Indexed(ix);
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        match &self.repr {
            Repr::Indexed(ix) => ix.score(member),
            _ => {
                let (buf, _) = self.compact()?;
                lp_find(buf, member).map(|(_, _, s)| s)
            }
        }
    }

    /// Insert or update (`-0.0` is stored as `0.0`); returns the previous score (`None` =
    /// new member).
    pub fn insert(&mut self, member: &[u8], score: f64) -> Result<Option<f64>, TooLarge> {
        self.insert_impl(member, norm(score), ARENA_LIMIT)
    }

    fn insert_impl(
        &mut self,
        member: &[u8],
        score: f64,
        limit: usize,
    ) -> Result<Option<f64>, TooLarge> {
        let step = match self.compact_mut() {
            None => Step::Convert,
            Some((buf, len, max_entries, max_len)) => {
                let step = lp_insert_step(buf, len, max_entries, max_len, member, score, limit);
                if let Step::Inserted = step {
                    self.set_compact_len(len + 1);
                }
                step
            }
        };
        match step {
            Step::Done(r) => r,
            Step::Inserted => Ok(None),
            Step::Convert => {
                self.convert_to_indexed();
                match &mut self.repr {
                    Repr::Indexed(ix) => ix.insert(member, score, limit),
                    _ => Err(TooLarge),
                }
            }
        }
    }

    /// Removes `member`, returning its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        if let Repr::Indexed(ix) = &mut self.repr {
            return ix.remove(member);
        }
        let (buf, len, _, _) = self.compact_mut()?;
        let (_, off, score) = lp_find(buf, member)?;
        let end = record_end(buf, off);
        splice(buf, off, end, &[]);
        self.set_compact_len(len - 1);
        Some(score)
    }

    /// 0-based rank in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        match &self.repr {
            Repr::Indexed(ix) => ix.rank(member),
            _ => {
                let (buf, _) = self.compact()?;
                lp_find(buf, member).map(|(r, _, _)| r)
            }
        }
    }

    /// Member and score at ascending rank.
    pub fn get_rank(&self, rank: usize) -> Option<(&[u8], f64)> {
        match &self.repr {
            Repr::Indexed(ix) => ix.tree.at(rank).map(|o| ix.entry(o)),
            _ => {
                let (buf, len) = self.compact()?;
                if rank >= len {
                    return None;
                }
                let (m, s, _) = record_at(buf, lp_skip(buf, 0, rank));
                Some((m, s))
            }
        }
    }

    /// Entries with ranks `start..=end`, ascending, or with `rev` descending with ranks
    /// counted from the top (rank 0 = highest). The caller normalizes (`end < len`); an
    /// out-of-range request yields only the existing entries. Lazy: O(log n) to start, then
    /// O(1) amortized per entry (compact descending ranges collect their offsets first).
    pub fn range_by_rank(&self, start: usize, end: usize, rev: bool) -> Iter<'_> {
        let len = self.len();
        let empty = Iter {
            src: Src::Compact { buf: &[], pos: 0 },
            remaining: 0,
        };
        if start > end || start >= len {
            return empty;
        }
        let end = end.min(len - 1);
        let count = end - start + 1;
        // Ascending rank of the first entry returned.
        let first = if rev { len - 1 - start } else { start };
        let src = match &self.repr {
            Repr::Indexed(ix) => Src::Tree {
                ix,
                cur: ix.tree.seek(first),
                rev,
            },
            _ => {
                let Some((buf, _)) = self.compact() else {
                    return empty;
                };
                if rev {
                    let mut offs = Vec::with_capacity(count);
                    let mut pos = lp_skip(buf, 0, first + 1 - count);
                    for _ in 0..count {
                        if pos >= buf.len() {
                            break;
                        }
                        offs.push(pos as u32);
                        pos = record_end(buf, pos);
                    }
                    Src::CompactRev { buf, offs }
                } else {
                    Src::Compact {
                        buf,
                        pos: lp_skip(buf, 0, first),
                    }
                }
            }
        };
        Iter {
            src,
            remaining: count,
        }
    }

    /// Number of leading entries satisfying `pred`.
    fn count(&self, pred: Pred<'_>) -> usize {
        match &self.repr {
            Repr::Indexed(ix) => ix.tree.count(&ix.arena, pred),
            _ => self.compact().map_or(0, |(buf, _)| lp_count(buf, pred).0),
        }
    }

    /// `lo..hi` from the predicates "below the lower bound" and "up to the upper bound".
    fn span(&self, below: Option<Pred<'_>>, upto: Option<Pred<'_>>) -> Range<usize> {
        let lo = below.map_or(0, |p| self.count(p));
        let hi = upto.map_or(self.len(), |p| self.count(p));
        lo..hi.max(lo)
    }

    /// Ascending rank range `lo..hi` of the entries whose score is within the bounds
    /// (empty when none is; bounds of `-0.0` mean `0.0`).
    pub fn score_span(&self, min: Bound<f64>, max: Bound<f64>) -> Range<usize> {
        self.span(Pred::below_min_score(min), Pred::upto_max_score(max))
    }

    /// Ascending rank range of the entries whose member is within the bounds (Redis's lex
    /// ranges; meaningful when all scores are equal).
    pub fn lex_span(&self, min: Bound<&[u8]>, max: Bound<&[u8]>) -> Range<usize> {
        self.span(Pred::below_min_lex(min), Pred::upto_max_lex(max))
    }

    /// Removes ranks `start..end` (exclusive, clamped to the length) and returns how many.
    /// O(end - start + log n · (end - start) / 63) when indexed.
    pub fn remove_rank_range(&mut self, start: usize, end: usize) -> usize {
        if let Repr::Indexed(ix) = &mut self.repr {
            return ix.remove_rank_range(start, end);
        }
        let Some((buf, len, _, _)) = self.compact_mut() else {
            return 0;
        };
        let end = end.min(len);
        if start >= end {
            return 0;
        }
        let a = lp_skip(buf, 0, start);
        let b = lp_skip(buf, a, end - start);
        splice(buf, a, b, &[]);
        self.set_compact_len(len - (end - start));
        end - start
    }

    /// All entries, ascending.
    pub fn iter(&self) -> Iter<'_> {
        self.range_by_rank(0, self.len().saturating_sub(1), false)
    }

    /// Redis SCAN: start with cursor 0; visits about `count` entries and returns the next
    /// cursor (0 when done). Members present during the whole scan are visited at least
    /// once. Compact sets are returned whole in one call.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], f64)) -> u64 {
        let Repr::Indexed(ix) = &self.repr else {
            for (m, s) in self.iter() {
                f(m, s);
            }
            return 0;
        };
        let len = ix.len();
        // Continue below `pos`.
        let mut pos = if cursor == 0 {
            len
        } else {
            usize::try_from(cursor).map_or(len, |c| c.min(len))
        };
        let stop = pos.saturating_sub(count.max(1));
        while pos > stop {
            pos -= 1;
            let (m, s) = ix.entry(ix.dense[pos]);
            f(m, s);
        }
        pos as u64
    }

    /// The entry at position `i` of some fixed arrangement (`0..len`), for uniform random
    /// picks (ZRANDMEMBER): O(1) when indexed, O(i) when compact (where it is the rank).
    pub fn get_index(&self, i: usize) -> Option<(&[u8], f64)> {
        match &self.repr {
            Repr::Indexed(ix) => ix.dense.get(i).map(|&o| ix.entry(o)),
            _ => self.get_rank(i),
        }
    }

    /// Heap bytes held, as malloc blocks, O(1). A compact set with limits up to
    /// `u16::MAX` holds just one block: its records.
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Small { buf, .. } => alloc_size(buf.len()),
            Repr::Wide(w) => alloc_size(std::mem::size_of::<Wide>()) + alloc_size(w.buf.len()),
            Repr::Indexed(ix) => ix.heap_bytes(),
        }
    }

    /// Serializes as `[version][flags][max_entries][max_len][count]` (varints after the
    /// two bytes) followed by the `count` records in ascending order.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (max_entries, max_len) = self.limits();
        out.push(FORMAT_VERSION);
        match &self.repr {
            Repr::Indexed(ix) => {
                out.reserve(ix.arena.len() - ix.garbage + 32);
                out.push(0);
                put_varint(out, max_entries as u64);
                put_varint(out, max_len as u64);
                put_varint(out, ix.len() as u64);
                for (m, s) in self.iter() {
                    write_record(out, m, s);
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

    /// Inverse of [`ZSet::encode`]; `None` on malformed input (truncation, trailing bytes,
    /// non-canonical lengths, NaN or `-0.0` scores, records out of order, duplicate
    /// members). A compact set that violates its own limits comes back indexed.
    pub fn decode(buf: &[u8]) -> Option<ZSet> {
        if *buf.first()? != FORMAT_VERSION {
            return None;
        }
        let flags = *buf.get(1)?;
        if flags & !FLAG_COMPACT != 0 {
            return None;
        }
        let mut pos = 2;
        let max_entries = usize::try_from(read_varint_checked(buf, &mut pos)?).ok()?;
        let max_len = usize::try_from(read_varint_checked(buf, &mut pos)?).ok()?;
        let count = usize::try_from(read_varint_checked(buf, &mut pos)?).ok()?;
        let records = &buf[pos..];
        if count > records.len() / MIN_RECORD {
            return None;
        }
        let mut p = 0;
        let mut fits = count <= max_entries;
        let mut prev: Option<(f64, &[u8])> = None;
        for _ in 0..count {
            let start = p;
            let mlen = usize::try_from(read_varint_checked(records, &mut p)?).ok()?;
            if p - start != varint_len(mlen) {
                return None;
            }
            let member = records.get(p..p.checked_add(mlen)?)?;
            p += mlen;
            let sb = records.get(p..p.checked_add(SCORE_LEN)?)?;
            p += SCORE_LEN;
            let score = read_score(sb, 0);
            if score.is_nan() || (score == 0.0 && score.is_sign_negative()) {
                return None;
            }
            if let Some((ps, pm)) = prev {
                if !key_cmp(ps, pm, score, member).is_lt() {
                    return None;
                }
            }
            prev = Some((score, member));
            fits &= mlen <= max_len;
        }
        if p != records.len() || records.len() > ARENA_LIMIT {
            return None;
        }
        let ix = Indexed::from_records(records.to_vec(), count, (max_entries, max_len), true)?;
        if flags & FLAG_COMPACT != 0 && fits {
            Some(ZSet::compact_from(
                ix.arena.into_boxed_slice(),
                count,
                max_entries,
                max_len,
            ))
        } else {
            Some(ZSet {
                repr: Repr::Indexed(Box::new(ix)),
            })
        }
    }
}

#[cfg(test)]
impl Tree {
    /// Checks the subtree: counts, order, separators, fill. Returns (entries, first, last).
    fn check_rec(
        &self,
        arena: &[u8],
        node: u32,
        level: u32,
        root: bool,
        seen: &mut (Vec<bool>, Vec<bool>),
    ) -> (usize, Option<u32>, Option<u32>) {
        let key = |o: u32| entry_at(arena, o);
        if level == 0 {
            assert!(!seen.0[node as usize], "leaf reached twice");
            seen.0[node as usize] = true;
            let leaf = &self.leaves[node as usize];
            assert!(leaf.len as usize <= LEAF_CAP);
            assert!(root || leaf.len > 0, "empty non-root leaf");
            for w in leaf.items().windows(2) {
                let ((m1, s1), (m2, s2)) = (key(w[0]), key(w[1]));
                assert!(key_cmp(s1, m1, s2, m2).is_lt(), "leaf out of order");
            }
            return (
                leaf.len as usize,
                leaf.items().first().copied(),
                leaf.items().last().copied(),
            );
        }
        assert!(!seen.1[node as usize], "inner reached twice");
        seen.1[node as usize] = true;
        let inner = self.inners[node as usize];
        let n = inner.len as usize;
        assert!(n >= 2, "inner node with {n} children");
        assert!(n <= INNER_CAP);
        let mut total = 0;
        let mut first = None;
        let mut last: Option<u32> = None;
        for j in 0..n {
            let (cnt, f, l) = self.check_rec(arena, inner.kids[j], level - 1, false, seen);
            assert_eq!(cnt, inner.counts[j] as usize, "count");
            total += cnt;
            if j > 0 {
                let (ks, km) = (inner.keys[j - 1], member_at(arena, inner.key_offs[j - 1]));
                if let Some(l) = last {
                    let (m, s) = key(l);
                    assert!(key_cmp(s, m, ks, km).is_lt(), "separator not above left");
                }
                if let Some(f) = f {
                    let (m, s) = key(f);
                    assert!(key_cmp(ks, km, s, m).is_le(), "separator above right");
                }
                if let (Some(l), Some(f)) = (last, f) {
                    let ((m1, s1), (m2, s2)) = (key(l), key(f));
                    assert!(key_cmp(s1, m1, s2, m2).is_lt(), "children out of order");
                }
            }
            if first.is_none() {
                first = f;
            }
            if l.is_some() {
                last = l;
            }
        }
        (total, first, last)
    }
}

#[cfg(test)]
impl Indexed {
    /// Checks every invariant of the indexed form (O(n)).
    fn check(&self) {
        let n = self.len();
        assert_eq!(self.index.len(), n);
        let mut live = 0;
        for (i, &off) in self.dense.iter().enumerate() {
            let member = member_at(&self.arena, off);
            assert_eq!(self.find(member), Some(i));
            live += record_end(&self.arena, off as usize) - off as usize;
        }
        assert_eq!(self.arena.len() - self.garbage, live, "garbage accounting");
        let t = &self.tree;
        let mut seen = (vec![false; t.leaves.len()], vec![false; t.inners.len()]);
        let (count, _, _) = t.check_rec(&self.arena, t.root, t.height, true, &mut seen);
        assert_eq!(count, n);
        for &f in &t.free_leaves {
            assert!(!seen.0[f as usize], "free leaf in use");
            seen.0[f as usize] = true;
        }
        for &f in &t.free_inners {
            assert!(!seen.1[f as usize], "free inner in use");
            seen.1[f as usize] = true;
        }
        assert!(seen.0.iter().all(|&x| x), "leaked leaf");
        assert!(seen.1.iter().all(|&x| x), "leaked inner");
        let mut items = Vec::new();
        t.collect(&mut items);
        let mut a = items.clone();
        let mut b = self.dense.clone();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "tree and dense disagree");
        for (r, &o) in items.iter().enumerate().step_by(7) {
            assert_eq!(t.at(r), Some(o));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap, HashSet};

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
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[derive(Clone, Copy, Debug)]
    struct OrderedScore(f64);
    impl PartialEq for OrderedScore {
        fn eq(&self, o: &Self) -> bool {
            self.0.total_cmp(&o.0).is_eq()
        }
    }
    impl Eq for OrderedScore {}
    impl PartialOrd for OrderedScore {
        fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for OrderedScore {
        fn cmp(&self, o: &Self) -> Ordering {
            self.0.total_cmp(&o.0)
        }
    }

    /// The reference: the order and the member → score map.
    #[derive(Default)]
    struct Model {
        sorted: BTreeMap<(OrderedScore, Vec<u8>), ()>,
        map: HashMap<Vec<u8>, f64>,
    }

    impl Model {
        fn insert(&mut self, m: &[u8], s: f64) -> Option<f64> {
            let s = norm(s);
            let old = self.map.insert(m.to_vec(), s);
            if let Some(o) = old {
                self.sorted.remove(&(OrderedScore(o), m.to_vec()));
            }
            self.sorted.insert((OrderedScore(s), m.to_vec()), ());
            old
        }
        fn remove(&mut self, m: &[u8]) -> Option<f64> {
            let old = self.map.remove(m)?;
            self.sorted.remove(&(OrderedScore(old), m.to_vec()));
            Some(old)
        }
        fn rank(&self, m: &[u8]) -> Option<usize> {
            let s = *self.map.get(m)?;
            Some(self.sorted.range(..(OrderedScore(s), m.to_vec())).count())
        }
        fn entries(&self) -> Vec<(Vec<u8>, f64)> {
            self.sorted.keys().map(|(s, m)| (m.clone(), s.0)).collect()
        }
        fn count(&self, f: impl Fn(f64, &[u8]) -> bool) -> usize {
            self.sorted.keys().take_while(|(s, m)| f(s.0, m)).count()
        }
        fn score_span(&self, min: Bound<f64>, max: Bound<f64>) -> Range<usize> {
            let lo = match min {
                Bound::Inclusive(x) => self.count(|s, _| s.total_cmp(&norm(x)).is_lt()),
                Bound::Exclusive(x) => self.count(|s, _| s.total_cmp(&norm(x)).is_le()),
                Bound::Unbounded => 0,
            };
            let hi = match max {
                Bound::Inclusive(x) => self.count(|s, _| s.total_cmp(&norm(x)).is_le()),
                Bound::Exclusive(x) => self.count(|s, _| s.total_cmp(&norm(x)).is_lt()),
                Bound::Unbounded => self.map.len(),
            };
            lo..hi.max(lo)
        }
        fn lex_span(&self, min: Bound<&[u8]>, max: Bound<&[u8]>) -> Range<usize> {
            let lo = match min {
                Bound::Inclusive(x) => self.count(|_, m| m < x),
                Bound::Exclusive(x) => self.count(|_, m| m <= x),
                Bound::Unbounded => 0,
            };
            let hi = match max {
                Bound::Inclusive(x) => self.count(|_, m| m <= x),
                Bound::Exclusive(x) => self.count(|_, m| m < x),
                Bound::Unbounded => self.map.len(),
            };
            lo..hi.max(lo)
        }
    }

    fn collect(z: &ZSet) -> Vec<(Vec<u8>, f64)> {
        z.iter().map(|(m, s)| (m.to_vec(), s)).collect()
    }

    fn check_ix(z: &ZSet) {
        if let Repr::Indexed(ix) = &z.repr {
            ix.check();
        }
    }

    fn check(z: &ZSet, m: &Model) {
        assert_eq!(z.len(), m.map.len());
        let got = collect(z);
        let want = m.entries();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.0, w.0);
            assert_eq!(g.1.to_bits(), w.1.to_bits());
        }
        let rev: Vec<(Vec<u8>, f64)> = z
            .range_by_rank(0, z.len().saturating_sub(1), true)
            .map(|(m, s)| (m.to_vec(), s))
            .collect();
        let mut fwd = rev;
        fwd.reverse();
        assert_eq!(fwd, got);
        check_ix(z);
        if let Some((buf, len)) = z.compact() {
            let (me, ml) = z.limits();
            assert!(len <= me);
            assert!(got.iter().all(|(m, _)| m.len() <= ml));
            let records: usize = got.iter().map(|(m, _)| record_len(m.len())).sum();
            assert_eq!(buf.len(), records);
            let wide = if me > 65_535 || ml > 65_535 {
                alloc_size(std::mem::size_of::<Wide>())
            } else {
                0
            };
            assert_eq!(z.heap_bytes(), wide + alloc_size(records));
        }
    }

    fn pick_bound(rng: &mut Rng, x: f64) -> Bound<f64> {
        match rng.below(5) {
            0 => Bound::Unbounded,
            1 | 2 => Bound::Inclusive(x),
            _ => Bound::Exclusive(x),
        }
    }

    fn pick_lex<'a>(rng: &mut Rng, x: &'a [u8]) -> Bound<&'a [u8]> {
        match rng.below(5) {
            0 => Bound::Unbounded,
            1 | 2 => Bound::Inclusive(x),
            _ => Bound::Exclusive(x),
        }
    }

    const SCORES: [f64; 10] = [
        f64::NEG_INFINITY,
        f64::INFINITY,
        -0.0,
        0.0,
        1.0,
        -1.0,
        2.5,
        1e300,
        -1e-300,
        3.0,
    ];

    fn pick_score(rng: &mut Rng, equal: bool) -> f64 {
        if equal {
            return if rng.below(2) == 0 { 0.0 } else { -0.0 };
        }
        match rng.below(4) {
            0 => SCORES[rng.below(SCORES.len())],
            1 => rng.below(7) as f64 - 3.0,
            2 => (rng.next() % 1_000_000) as f64 / 1000.0 - 500.0,
            _ => rng.below(1000) as f64,
        }
    }

    #[test]
    fn model_random_ops() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut z = ZSet::default();
        let mut m = Model::default();
        let mut conversions = 0;
        let mut expect_compact = true;
        let mut key_space = 40;
        let mut equal = false;
        for op in 0..100_000 {
            if op % 5000 == 0 {
                check(&z, &m);
                let phase = op / 5000;
                let (me, ml) = match phase % 5 {
                    0 => (128, 64),
                    1 => (1 + rng.below(40), 4 + rng.below(8)),
                    2 => (70_000, 6), // wide header
                    3 => (0, 0),      // indexed from the start
                    _ => (1 + rng.below(200), 8),
                };
                z = ZSet::new(me, ml);
                m = Model::default();
                expect_compact = true;
                key_space = [40, 300, 1500][rng.below(3)];
                equal = phase % 4 == 3;
            }
            let k: Vec<u8> = if rng.below(60) == 0 {
                format!("long-member-{}", rng.below(key_space)).into_bytes()
            } else {
                format!("k{}", rng.below(key_space)).into_bytes()
            };
            let s = pick_score(&mut rng, equal);
            let was_compact = z.encoding() == "listpack";
            match rng.below(20) {
                0..=6 => {
                    let (me, ml) = z.limits();
                    let new = !m.map.contains_key(&k);
                    if new && (m.map.len() >= me || k.len() > ml) {
                        expect_compact = false;
                    }
                    let got = z.insert(&k, s).unwrap();
                    let want = m.insert(&k, s);
                    assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits));
                }
                7..=8 => {
                    let got = z.remove(&k);
                    assert_eq!(got.map(f64::to_bits), m.remove(&k).map(f64::to_bits));
                }
                9 => {
                    let got = z.score(&k);
                    assert_eq!(got.map(f64::to_bits), m.map.get(&k).map(|x| x.to_bits()));
                }
                10 => assert_eq!(z.rank(&k), m.rank(&k)),
                11 => {
                    let r = rng.below(z.len() + 2);
                    let want = m.sorted.keys().nth(r).map(|(s, k)| (k.clone(), s.0));
                    let got = z.get_rank(r).map(|(k, s)| (k.to_vec(), s));
                    assert_eq!(got, want);
                }
                12 => {
                    let len = z.len();
                    if len > 0 {
                        let a = rng.below(len);
                        let b = (a + rng.below(20)).min(len - 1);
                        let rev = rng.below(2) == 0;
                        let got: Vec<(Vec<u8>, f64)> = z
                            .range_by_rank(a, b, rev)
                            .map(|(k, s)| (k.to_vec(), s))
                            .collect();
                        let all = m.entries();
                        let want: Vec<(Vec<u8>, f64)> = if rev {
                            all.iter().rev().skip(a).take(b - a + 1).cloned().collect()
                        } else {
                            all[a..=b].to_vec()
                        };
                        assert_eq!(got, want);
                        assert_eq!(z.range_by_rank(a, b, rev).len(), b - a + 1);
                    }
                    assert_eq!(z.range_by_rank(len, len + 3, false).count(), 0);
                }
                13 => {
                    let (x, y) = (pick_score(&mut rng, equal), pick_score(&mut rng, equal));
                    let (lo, hi) = (pick_bound(&mut rng, x), pick_bound(&mut rng, y));
                    let got = z.score_span(lo, hi);
                    assert_eq!(got, m.score_span(lo, hi));
                    if !got.is_empty() {
                        for (_, s) in z.range_by_rank(got.start, got.end - 1, false) {
                            assert!(within(s, lo, hi), "{s} not in {lo:?} {hi:?}");
                        }
                    }
                }
                14 => {
                    let a = format!("k{}", rng.below(key_space)).into_bytes();
                    let b = format!("k{}", rng.below(key_space)).into_bytes();
                    let (lo, hi) = (pick_lex(&mut rng, &a), pick_lex(&mut rng, &b));
                    let got = z.lex_span(lo, hi);
                    if equal {
                        assert_eq!(got, m.lex_span(lo, hi));
                    } else {
                        assert!(got.start <= got.end && got.end <= z.len());
                    }
                }
                15 => {
                    let len = z.len();
                    let a = rng.below(len + 1);
                    let span = if rng.below(10) == 0 { 200 } else { 4 };
                    let b = a + rng.below(span);
                    let removed = z.remove_rank_range(a, b);
                    let doomed: Vec<(OrderedScore, Vec<u8>)> =
                        m.sorted.keys().skip(a).take(b - a).cloned().collect();
                    assert_eq!(removed, doomed.len());
                    for (_, k) in doomed {
                        m.remove(&k);
                    }
                }
                16 => {
                    let i = rng.below(z.len() + 1);
                    match z.get_index(i) {
                        Some((k, s)) => {
                            assert_eq!(m.map.get(k).map(|x| x.to_bits()), Some(s.to_bits()))
                        }
                        None => assert_eq!(i, z.len()),
                    }
                }
                17 => {
                    let mut seen = HashSet::new();
                    let mut cursor = 0;
                    loop {
                        cursor = z.scan(cursor, 1 + rng.below(50), |k, s| {
                            assert_eq!(m.map.get(k).map(|x| x.to_bits()), Some(s.to_bits()));
                            seen.insert(k.to_vec());
                        });
                        if cursor == 0 {
                            break;
                        }
                    }
                    assert_eq!(seen.len(), m.map.len());
                }
                18 => {
                    let mut buf = Vec::new();
                    z.encode(&mut buf);
                    let d = ZSet::decode(&buf).unwrap();
                    assert_eq!(d.encoding(), z.encoding());
                    assert_eq!(d.limits(), z.limits());
                    check(&d, &m);
                    if rng.below(2) == 0 {
                        z = d;
                    }
                }
                _ => {
                    if z.encoding() == "listpack" {
                        let hb = z.heap_bytes();
                        let c = z.clone();
                        assert_eq!(c.heap_bytes(), hb);
                    }
                    assert!(format!("{z:?}").len() < 100);
                }
            }
            assert_eq!(z.encoding() == "listpack", expect_compact, "op {op}");
            if was_compact && z.encoding() == "skiplist" {
                conversions += 1;
            }
            if op % 499 == 0 {
                check(&z, &m);
            }
        }
        check(&z, &m);
        assert!(conversions >= 10, "conversions: {conversions}");
    }

    fn within(s: f64, lo: Bound<f64>, hi: Bound<f64>) -> bool {
        let above = match lo {
            Bound::Inclusive(x) => s.total_cmp(&norm(x)).is_ge(),
            Bound::Exclusive(x) => s.total_cmp(&norm(x)).is_gt(),
            Bound::Unbounded => true,
        };
        let below = match hi {
            Bound::Inclusive(x) => s.total_cmp(&norm(x)).is_le(),
            Bound::Exclusive(x) => s.total_cmp(&norm(x)).is_lt(),
            Bound::Unbounded => true,
        };
        above && below
    }

    /// Big indexed sets: several tree levels, merges, refills, edge splits, arena rebuilds,
    /// with every invariant checked along the way.
    #[test]
    fn tree_stress() {
        let mut rng = Rng(42);
        let mut z = ZSet::new(0, 0);
        let mut m = Model::default();
        let n = 30_000;
        // Ascending, then descending insertion (edge splits), then random.
        for i in 0..n / 3 {
            let k = format!("a{i:06}");
            z.insert(k.as_bytes(), i as f64).unwrap();
            m.insert(k.as_bytes(), i as f64);
        }
        check(&z, &m);
        for i in (0..n / 3).rev() {
            let k = format!("d{i:06}");
            z.insert(k.as_bytes(), i as f64 - 1e6).unwrap();
            m.insert(k.as_bytes(), i as f64 - 1e6);
        }
        check(&z, &m);
        if let Repr::Indexed(ix) = &z.repr {
            assert!(ix.tree.height >= 2, "height {}", ix.tree.height);
            // Monotone insertion packs the leaves.
            let per_leaf =
                z.len() as f64 / (ix.tree.leaves.len() - ix.tree.free_leaves.len()) as f64;
            assert!(per_leaf > 60.0, "{per_leaf}");
        }
        for _ in 0..n / 3 {
            let k = format!("r{}", rng.below(n));
            let s = pick_score(&mut rng, false);
            z.insert(k.as_bytes(), s).unwrap();
            m.insert(k.as_bytes(), s);
        }
        check(&z, &m);
        let keys: Vec<Vec<u8>> = m.map.keys().cloned().collect();
        for round in 0..6 {
            for _ in 0..4000 {
                let k = &keys[rng.below(keys.len())];
                match rng.below(6) {
                    0 | 1 => {
                        let s = pick_score(&mut rng, false);
                        let got = z.insert(k, s).unwrap();
                        assert_eq!(got.map(f64::to_bits), m.insert(k, s).map(f64::to_bits));
                    }
                    2 | 3 => assert_eq!(z.remove(k), m.remove(k)),
                    // Rank and select agree (the order itself is checked against the model
                    // after every round).
                    4 => match z.rank(k) {
                        Some(r) => assert_eq!(z.get_rank(r).map(|e| e.0), Some(&k[..])),
                        None => assert!(!m.map.contains_key(k)),
                    },
                    _ => {
                        let r = rng.below(z.len() + 1);
                        match z.get_rank(r) {
                            Some((k, s)) => {
                                assert_eq!(z.rank(k), Some(r));
                                assert_eq!(m.map.get(k).copied(), Some(s));
                            }
                            None => assert_eq!(r, z.len()),
                        }
                    }
                }
            }
            check(&z, &m);
            // Chunks of ranks.
            let len = z.len();
            let a = rng.below(len);
            let b = a + rng.below(len / 4 + 1);
            let doomed: Vec<Vec<u8>> = m
                .sorted
                .keys()
                .skip(a)
                .take(b - a)
                .map(|e| e.1.clone())
                .collect();
            assert_eq!(z.remove_rank_range(a, b), doomed.len());
            for k in &doomed {
                m.remove(k);
            }
            check(&z, &m);
            // Score spans across levels.
            for _ in 0..50 {
                let (x, y) = (pick_score(&mut rng, false), pick_score(&mut rng, false));
                let (lo, hi) = (pick_bound(&mut rng, x), pick_bound(&mut rng, y));
                assert_eq!(z.score_span(lo, hi), m.score_span(lo, hi), "round {round}");
            }
            // Refill.
            for _ in 0..3000 {
                let k = format!("n{}", rng.below(n));
                let s = pick_score(&mut rng, false);
                z.insert(k.as_bytes(), s).unwrap();
                m.insert(k.as_bytes(), s);
            }
            check(&z, &m);
        }
        // Drain almost everything (merges up the tree, rebuilds), then all of it.
        while z.len() > 100 {
            let r = rng.below(z.len());
            let (k, _) = z.get_rank(r).unwrap();
            let k = k.to_vec();
            assert!(z.remove(&k).is_some());
            m.remove(&k);
            if z.len() % 3001 == 7 {
                check(&z, &m);
            }
        }
        check(&z, &m);
        assert!(z.heap_bytes() < 16 << 10, "{}", z.heap_bytes());
        assert_eq!(z.remove_rank_range(0, usize::MAX), 100);
        assert!(z.is_empty());
        check_ix(&z);
        assert!(z.heap_bytes() < 1024, "{}", z.heap_bytes());
        z.insert(b"again", 1.0).unwrap();
        assert_eq!(z.rank(b"again"), Some(0));
        check_ix(&z);
    }

    /// Runs `f` on a compact and an indexed set filled with the same entries.
    fn both(entries: &[(&str, f64)], f: impl Fn(&mut ZSet)) {
        for mut z in [ZSet::new(128, 64), ZSet::new(0, 0)] {
            for (k, s) in entries {
                z.insert(k.as_bytes(), *s).unwrap();
            }
            f(&mut z);
            check_ix(&z);
        }
    }

    #[test]
    fn order_infinities_zeros_ties() {
        let entries = [
            ("b", 0.0),
            ("a", -0.0),
            ("c", f64::INFINITY),
            ("z", f64::NEG_INFINITY),
            ("y", f64::NEG_INFINITY),
            ("m", 1.5),
            ("", 1.5),
            ("mm", 1.5),
        ];
        both(&entries, |z| {
            let got: Vec<(Vec<u8>, f64)> = collect(z);
            let names: Vec<&[u8]> = got.iter().map(|e| &e.0[..]).collect();
            let want: Vec<&[u8]> = vec![b"y", b"z", b"a", b"b", b"", b"m", b"mm", b"c"];
            assert_eq!(names, want, "{}", z.encoding());
            // -0.0 is stored as 0.0.
            assert_eq!(z.score(b"a").map(f64::to_bits), Some(0.0f64.to_bits()));
            assert_eq!(z.insert(b"a", 0.0), Ok(Some(0.0)));
            assert_eq!(
                z.insert(b"b", -0.0).map(|o| o.map(f64::to_bits)),
                Ok(Some(0))
            );
            assert_eq!(z.rank(b"y"), Some(0));
            assert_eq!(z.rank(b"c"), Some(7));
            assert_eq!(z.rank(b"nope"), None);
            assert_eq!(z.get_rank(8), None);
            assert_eq!(z.get_rank(4), Some((&b""[..], 1.5)));
            // Moves in both directions keep the order.
            assert_eq!(z.insert(b"c", f64::NEG_INFINITY), Ok(Some(f64::INFINITY)));
            assert_eq!(z.rank(b"c"), Some(0));
            assert_eq!(z.insert(b"y", 1.5), Ok(Some(f64::NEG_INFINITY)));
            assert_eq!(z.rank(b"y"), Some(7));
            assert_eq!(z.insert(b"y", 1.5), Ok(Some(1.5)));
            let rev: Vec<&[u8]> = z.range_by_rank(0, 2, true).map(|e| e.0).collect();
            assert_eq!(rev, vec![&b"y"[..], b"mm", b"m"]);
            assert_eq!(z.remove(b"z"), Some(f64::NEG_INFINITY));
            assert_eq!(z.remove(b"z"), None);
            assert_eq!(z.len(), 7);
        });
    }

    #[test]
    fn spans_edge_cases() {
        use Bound::*;
        // Empty.
        for z in [ZSet::new(128, 64), ZSet::new(0, 0)] {
            assert_eq!(z.score_span(Unbounded, Unbounded), 0..0);
            assert_eq!(z.score_span(Inclusive(1.0), Inclusive(0.0)), 0..0);
            assert_eq!(z.lex_span(Unbounded, Unbounded), 0..0);
            assert_eq!(z.range_by_rank(0, 0, false).count(), 0);
            assert_eq!(z.iter().count(), 0);
            assert_eq!(z.scan(0, 10, |_, _| panic!()), 0);
        }
        let entries = [("a", 1.0), ("b", 2.0), ("c", 2.0), ("d", 2.0), ("e", 3.0)];
        both(&entries, |z| {
            assert_eq!(z.score_span(Unbounded, Unbounded), 0..5);
            assert_eq!(
                z.score_span(Inclusive(f64::NEG_INFINITY), Inclusive(f64::INFINITY)),
                0..5
            );
            assert_eq!(z.score_span(Inclusive(2.0), Inclusive(2.0)), 1..4);
            assert_eq!(z.score_span(Exclusive(2.0), Inclusive(3.0)), 4..5);
            assert_eq!(z.score_span(Inclusive(1.0), Exclusive(2.0)), 0..1);
            assert_eq!(z.score_span(Exclusive(2.0), Exclusive(2.0)), 4..4);
            assert_eq!(z.score_span(Exclusive(1.0), Exclusive(3.0)), 1..4);
            assert_eq!(z.score_span(Inclusive(3.5), Unbounded), 5..5);
            assert_eq!(z.score_span(Unbounded, Exclusive(1.0)), 0..0);
            assert_eq!(z.score_span(Inclusive(5.0), Inclusive(-5.0)), 5..5);
            assert_eq!(z.score_span(Inclusive(-0.0), Inclusive(1.0)), 0..1);
            assert_eq!(z.score_span(Exclusive(f64::INFINITY), Unbounded), 5..5);
            assert_eq!(z.score_span(Unbounded, Exclusive(f64::NEG_INFINITY)), 0..0);
            let r = z.score_span(Inclusive(2.0), Unbounded);
            let got: Vec<&[u8]> = z
                .range_by_rank(r.start, r.end - 1, false)
                .map(|e| e.0)
                .collect();
            assert_eq!(got, vec![&b"b"[..], b"c", b"d", b"e"]);
        });
        // Lex spans: all scores equal.
        let entries = [("a", 0.0), ("b", 0.0), ("bb", 0.0), ("c", -0.0), ("", 0.0)];
        both(&entries, |z| {
            let l = |s: &'static str| s.as_bytes();
            assert_eq!(z.lex_span(Unbounded, Unbounded), 0..5);
            assert_eq!(z.lex_span(Inclusive(l("b")), Inclusive(l("b"))), 2..3);
            assert_eq!(z.lex_span(Exclusive(l("b")), Exclusive(l("b"))), 3..3);
            assert_eq!(z.lex_span(Exclusive(l("b")), Inclusive(l("c"))), 3..5);
            assert_eq!(z.lex_span(Inclusive(l("b")), Exclusive(l("c"))), 2..4);
            assert_eq!(z.lex_span(Inclusive(l("")), Exclusive(l("a"))), 0..1);
            assert_eq!(z.lex_span(Exclusive(l("")), Unbounded), 1..5);
            assert_eq!(z.lex_span(Inclusive(l("d")), Unbounded), 5..5);
            assert_eq!(z.lex_span(Unbounded, Exclusive(l(""))), 0..0);
            assert_eq!(z.lex_span(Inclusive(l("c")), Inclusive(l("a"))), 4..4);
            assert_eq!(z.lex_span(Inclusive(l("aa")), Inclusive(l("bz"))), 2..4);
        });
    }

    #[test]
    fn lex_spans_big_equal_scores() {
        // Separators in the tree compare member bytes.
        let mut z = ZSet::new(128, 64);
        let mut m = Model::default();
        let mut rng = Rng(7);
        for i in 0..6000 {
            let k = format!("{:x}", rng.next() % 100_000).into_bytes();
            z.insert(&k, 0.0).unwrap();
            m.insert(&k, 0.0);
            if i % 3 == 0 {
                let k = format!("{:x}", rng.next() % 100_000).into_bytes();
                assert_eq!(z.remove(&k), m.remove(&k));
            }
        }
        check(&z, &m);
        for _ in 0..500 {
            let a = format!("{:x}", rng.next() % 100_000).into_bytes();
            let b = format!("{:x}", rng.next() % 100_000).into_bytes();
            let (lo, hi) = (pick_lex(&mut rng, &a), pick_lex(&mut rng, &b));
            assert_eq!(z.lex_span(lo, hi), m.lex_span(lo, hi));
        }
    }

    #[test]
    fn remove_rank_range_cases() {
        let entries: Vec<(String, f64)> =
            (0..300).map(|i| (format!("m{i:03}"), i as f64)).collect();
        let entries: Vec<(&str, f64)> = entries.iter().map(|(k, s)| (k.as_str(), *s)).collect();
        both(&entries[..100], |z| {
            assert_eq!(z.remove_rank_range(5, 5), 0);
            assert_eq!(z.remove_rank_range(7, 3), 0);
            assert_eq!(z.remove_rank_range(100, 200), 0);
            assert_eq!(z.remove_rank_range(0, 1), 1);
            assert_eq!(z.get_rank(0).map(|e| e.0), Some(&b"m001"[..]));
            assert_eq!(z.remove_rank_range(90, 1000), 9);
            assert_eq!(z.len(), 90);
            assert_eq!(z.remove_rank_range(10, 20), 10);
            let names: Vec<&[u8]> = z.range_by_rank(8, 11, false).map(|e| e.0).collect();
            assert_eq!(names, vec![&b"m009"[..], b"m010", b"m021", b"m022"]);
            assert_eq!(z.rank(b"m021"), Some(10));
            assert_eq!(z.score(b"m015"), None);
            assert_eq!(z.remove_rank_range(0, z.len()), 80);
            assert!(z.is_empty());
            z.insert(b"x", 1.0).unwrap();
            assert_eq!(z.len(), 1);
        });
        // Across many leaves of a big tree, in one call.
        let mut z = ZSet::new(0, 0);
        for i in 0..20_000 {
            z.insert(format!("m{i:05}").as_bytes(), i as f64).unwrap();
        }
        assert_eq!(z.remove_rank_range(1000, 19_000), 18_000);
        check_ix(&z);
        assert_eq!(z.len(), 2000);
        assert_eq!(z.get_rank(1000).map(|e| e.1), Some(19_000.0));
        assert_eq!(z.rank(b"m19500"), Some(1500));
        assert_eq!(z.score(b"m05000"), None);
    }

    #[test]
    fn conversion_rules() {
        let mut z = ZSet::new(4, 8);
        for i in 0..4 {
            z.insert(format!("m{i}").as_bytes(), i as f64).unwrap();
        }
        assert_eq!(z.encoding(), "listpack");
        assert_eq!(z.insert(b"m0", 10.0), Ok(Some(0.0))); // update: no conversion
        assert_eq!(z.insert(b"12345678", 1.0), Ok(None));
        assert_eq!(z.encoding(), "skiplist"); // fifth member
        assert_eq!(z.len(), 5);
        assert_eq!(z.limits(), (4, 8));
        let names: Vec<&[u8]> = z.iter().map(|e| e.0).collect();
        assert_eq!(names, vec![&b"12345678"[..], b"m1", b"m2", b"m3", b"m0"]);

        let mut z = ZSet::new(4, 8);
        z.insert(b"123456789", 1.0).unwrap(); // too long
        assert_eq!(z.encoding(), "skiplist");
        let mut z = ZSet::new(4, 8);
        z.insert(b"12345678", 1.0).unwrap(); // exactly max_len
        assert_eq!(z.encoding(), "listpack");
        let mut z = ZSet::new(0, 0);
        assert_eq!(z.encoding(), "listpack");
        z.insert(b"", 0.0).unwrap();
        assert_eq!(z.encoding(), "skiplist");
        // Removing never converts back.
        z.remove(b"");
        assert_eq!(z.encoding(), "skiplist");
        let mut z = ZSet::default();
        assert_eq!(z.limits(), (128, 64));
        for i in 0..128 {
            z.insert(format!("{i}").as_bytes(), 0.0).unwrap();
        }
        assert_eq!(z.encoding(), "listpack");
        z.insert(b"x", 0.0).unwrap();
        assert_eq!(z.encoding(), "skiplist");
        let mut z = ZSet::default();
        z.insert(b"a", 1.0).unwrap();
        z.convert_to_indexed();
        assert_eq!(z.encoding(), "skiplist");
        assert_eq!(z.score(b"a"), Some(1.0));
        // Wide limits keep working (boxed header).
        let mut z = ZSet::new(70_000, 100_000);
        let long = vec![b'x'; 70_000];
        z.insert(&long, 1.0).unwrap();
        z.insert(b"a", 2.0).unwrap();
        assert_eq!(z.encoding(), "listpack");
        assert_eq!(z.limits(), (70_000, 100_000));
        assert_eq!(
            z.heap_bytes(),
            alloc_size(std::mem::size_of::<Wide>())
                + alloc_size(record_len(70_000) + record_len(1))
        );
        assert_eq!(z.rank(b"a"), Some(1));
        assert_eq!(z.remove(&long), Some(1.0));
        assert_eq!(z.len(), 1);
    }

    #[test]
    fn scan_guarantee() {
        let mut rng = Rng(12345);
        for round in 0..12 {
            let mut z = ZSet::new(0, 0);
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
                z.insert(&k, rng.below(100) as f64).unwrap();
            }
            let mut seen = HashSet::new();
            let mut cursor = 0;
            let mut calls = 0;
            loop {
                cursor = z.scan(cursor, 1 + rng.below(40 + round), |k, _| {
                    seen.insert(k.to_vec());
                });
                calls += 1;
                if cursor == 0 {
                    break;
                }
                for _ in 0..rng.below(40) {
                    match rng.below(4) {
                        0 => {
                            let k = format!("s{next}").into_bytes();
                            next += 1;
                            z.insert(&k, rng.below(100) as f64).unwrap();
                            volatile.push(k);
                        }
                        1 if !volatile.is_empty() => {
                            let k = volatile.swap_remove(rng.below(volatile.len()));
                            assert!(z.remove(&k).is_some());
                        }
                        2 if !volatile.is_empty() => {
                            // Remove a volatile member through its rank.
                            let k = volatile.swap_remove(rng.below(volatile.len()));
                            let r = z.rank(&k).unwrap();
                            assert_eq!(z.remove_rank_range(r, r + 1), 1);
                        }
                        _ => {
                            // Score updates of anything move entries in the tree.
                            let k = format!("s{}", rng.below(next as usize)).into_bytes();
                            if z.score(&k).is_some() {
                                z.insert(&k, rng.below(100) as f64).unwrap();
                            }
                        }
                    }
                }
            }
            assert!(calls > 10);
            check_ix(&z);
            for k in &stable {
                assert!(seen.contains(k), "missed {:?}", String::from_utf8_lossy(k));
            }
        }
        // Compact: everything at once; a foreign cursor on an indexed set is harmless.
        let mut z = ZSet::default();
        z.insert(b"a", 1.0).unwrap();
        z.insert(b"b", 2.0).unwrap();
        let mut n = 0;
        assert_eq!(z.scan(0, 1, |_, _| n += 1), 0);
        assert_eq!(n, 2);
        z.convert_to_indexed();
        let mut n = 0;
        assert_eq!(z.scan(u64::MAX, 1, |_, _| n += 1), 1);
        assert_eq!(n, 1);
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut compact = ZSet::new(10, 20);
        for i in 0..8 {
            compact
                .insert(format!("m{i}").as_bytes(), (i % 3) as f64)
                .unwrap();
        }
        compact.remove(b"m2");
        let mut big = ZSet::default();
        for i in 0..3000 {
            big.insert(format!("m{i}").as_bytes(), (i % 77) as f64 - 0.5)
                .unwrap();
        }
        for i in (0..3000).step_by(3) {
            big.remove(format!("m{i}").as_bytes());
        }
        let mut special = ZSet::new(0, 0);
        special.insert(b"", f64::NEG_INFINITY).unwrap();
        special.insert(&[0xff; 200], f64::INFINITY).unwrap();
        special.insert(b"z", -0.0).unwrap();
        for z in [ZSet::new(3, 4), ZSet::new(0, 0), compact, big, special] {
            let mut buf = Vec::new();
            z.encode(&mut buf);
            let d = ZSet::decode(&buf).unwrap();
            assert_eq!(collect(&d), collect(&z));
            assert_eq!(d.encoding(), z.encoding());
            assert_eq!(d.limits(), z.limits());
            check_ix(&d);
            for (k, s) in z.iter() {
                assert_eq!(d.score(k), Some(s));
            }
            // Every truncation and trailing garbage are rejected without panicking.
            let step = (buf.len() / 500).max(1);
            for cut in (0..buf.len()).step_by(step) {
                assert!(ZSet::decode(&buf[..cut]).is_none());
            }
            let mut longer = buf.clone();
            longer.push(0);
            assert!(ZSet::decode(&longer).is_none());
        }
        let encoded_with = |max_entries: u64, entries: &[(&[u8], f64)]| {
            let mut buf = vec![FORMAT_VERSION, FLAG_COMPACT];
            put_varint(&mut buf, max_entries);
            put_varint(&mut buf, 64);
            put_varint(&mut buf, entries.len() as u64);
            for (m, s) in entries {
                write_record(&mut buf, m, *s);
            }
            buf
        };
        let encoded = |entries: &[(&[u8], f64)]| encoded_with(128, entries);
        assert!(ZSet::decode(&encoded(&[(b"a", 1.0), (b"b", 1.0)])).is_some());
        // Out of order, equal, duplicate member, NaN, -0.0.
        assert!(ZSet::decode(&encoded(&[(b"b", 1.0), (b"a", 1.0)])).is_none());
        assert!(ZSet::decode(&encoded(&[(b"a", 2.0), (b"b", 1.0)])).is_none());
        assert!(ZSet::decode(&encoded(&[(b"a", 1.0), (b"a", 1.0)])).is_none());
        assert!(ZSet::decode(&encoded(&[(b"a", 1.0), (b"a", 2.0)])).is_none());
        assert!(ZSet::decode(&encoded(&[(b"a", f64::NAN)])).is_none());
        assert!(ZSet::decode(&encoded(&[(b"a", -0.0)])).is_none());
        // Non-canonical length.
        let mut buf = encoded(&[]);
        buf[5] = 1;
        buf.extend_from_slice(&[0x81, 0x00, b'a']);
        buf.extend_from_slice(&1f64.to_le_bytes());
        assert!(ZSet::decode(&buf).is_none());
        // Bad version / flags / huge count.
        assert!(ZSet::decode(&[]).is_none());
        assert!(ZSet::decode(&[2, 0, 0, 0, 0]).is_none());
        assert!(ZSet::decode(&[FORMAT_VERSION, 4, 0, 0, 0]).is_none());
        assert!(ZSet::decode(&[FORMAT_VERSION, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_none());
        // A compact set violating its limits comes back indexed.
        let over = encoded_with(1, &[(b"a", 1.0), (b"b", 2.0)]);
        let d = ZSet::decode(&over).unwrap();
        assert_eq!(d.encoding(), "skiplist");
        assert_eq!(d.len(), 2);
        // Random garbage never panics.
        let mut rng = Rng(99);
        for _ in 0..5000 {
            let len = rng.below(60);
            let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if b.len() > 2 {
                b[0] = FORMAT_VERSION;
                b[1] &= 1;
            }
            if let Some(z) = ZSet::decode(&b) {
                check_ix(&z);
                let _ = collect(&z);
            }
        }
        // Mutations of a valid encoding never panic either.
        let mut z = ZSet::new(0, 0);
        for i in 0..50 {
            z.insert(format!("k{i}").as_bytes(), (i / 5) as f64)
                .unwrap();
        }
        let mut good = Vec::new();
        z.encode(&mut good);
        for _ in 0..5000 {
            let mut b = good.clone();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            if let Some(z) = ZSet::decode(&b) {
                check_ix(&z);
            }
        }
    }

    #[test]
    fn too_large_is_reported() {
        for start in [ZSet::new(1000, 64), ZSet::new(0, 0)] {
            let mut z = start;
            let limit = 200;
            let mut n = 0;
            loop {
                match z.insert_impl(format!("m{n:02}").as_bytes(), n as f64, limit) {
                    Ok(None) => n += 1,
                    Ok(Some(_)) => unreachable!(),
                    Err(TooLarge) => break,
                }
            }
            assert_eq!(n, 200 / 12);
            let before = collect(&z);
            assert_eq!(z.insert_impl(b"m99", 1.0, limit), Err(TooLarge));
            assert_eq!(collect(&z), before);
            // Updates always fit.
            assert_eq!(z.insert_impl(b"m00", 100.0, limit), Ok(Some(0.0)));
            if z.encoding() == "skiplist" {
                // Garbage is reclaimed to make room.
                assert!(z.remove(b"m01").is_some());
                assert_eq!(z.insert_impl(b"m77", 7.0, limit), Ok(None));
                assert_eq!(z.rank(b"m77"), Some(6));
                check_ix(&z);
            }
        }
    }

    #[test]
    fn sizes() {
        let size = std::mem::size_of::<ZSet>();
        assert!(size <= 24, "{size}");
        assert!(std::mem::size_of::<Option<ZSet>>() <= 24);
        assert_eq!(std::mem::size_of::<Leaf>(), 256);
        assert_eq!(ZSet::new(128, 64).heap_bytes(), 0);
        assert_eq!(alloc_size(0), 0);
        assert_eq!(alloc_size(24), 32);
        assert_eq!(alloc_size(25), 48);
        let mut z = ZSet::default();
        for i in 0..10 {
            z.insert(format!("member:{i}").as_bytes(), i as f64)
                .unwrap();
        }
        // 10 records of 17 bytes: one 192-byte block.
        assert_eq!(z.heap_bytes(), 192);
        let s = format!("{z:?}");
        assert!(s.contains("listpack") && s.contains("10"), "{s}");
    }

    #[test]
    fn rebuild_bounds_memory() {
        let mut z = ZSet::new(0, 0);
        for i in 0..50_000 {
            z.insert(format!("member:{i}").as_bytes(), (i % 1000) as f64)
                .unwrap();
        }
        let full = z.heap_bytes();
        for i in 0..45_000 {
            assert!(z.remove(format!("member:{i}").as_bytes()).is_some());
        }
        check_ix(&z);
        let after = z.heap_bytes();
        assert!(after * 5 < full, "full {full} after {after}");
        // Score churn does not grow memory.
        let before = z.heap_bytes();
        let mut rng = Rng(5);
        for _ in 0..50_000 {
            let i = 45_000 + rng.below(5000);
            z.insert(format!("member:{i}").as_bytes(), rng.below(100_000) as f64)
                .unwrap();
        }
        check_ix(&z);
        assert!(
            z.heap_bytes() < before * 2,
            "{} vs {before}",
            z.heap_bytes()
        );
    }

    fn fill_1m() -> (ZSet, usize) {
        let mut z = ZSet::default();
        let mut data = 0;
        for i in 0..1_000_000 {
            let m = format!("member:{i}");
            data += m.len();
            z.insert(m.as_bytes(), i as f64).unwrap();
        }
        (z, data)
    }

    /// Heap bytes per member for 1M members `member:{i}` with score `i` (`--nocapture`).
    #[test]
    fn bytes_per_member_1m() {
        let t = std::time::Instant::now();
        let (z, data) = fill_1m();
        let took = t.elapsed();
        let n = z.len();
        assert_eq!(n, 1_000_000);
        let b = z.heap_bytes() as f64 / n as f64;
        println!(
            "zset: {n} members, avg member {:.2} bytes, heap {} bytes = {b:.1} bytes/member \
             (+{} bytes of ZSet); inserted in {took:?}",
            data as f64 / n as f64,
            z.heap_bytes(),
            std::mem::size_of::<ZSet>(),
        );
        if let Repr::Indexed(ix) = &z.repr {
            println!(
                "  arena {} ({} used), dense {}, index {}, tree {} (height {})",
                alloc_size(ix.arena.capacity()),
                ix.arena.len(),
                alloc_size(ix.dense.capacity() * 4),
                alloc_size(ix.index.allocation_size()),
                ix.tree.heap_bytes(),
                ix.tree.height
            );
        }
        assert_eq!(z.rank(b"member:765432"), Some(765_432));
        assert!(b < 45.0, "{b}");
    }

    /// Timings at 1M members (`cargo test --release bench_1m -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn bench_1m() {
        let n = 1_000_000;
        let t = std::time::Instant::now();
        let (mut z, _) = fill_1m();
        println!("{n} ascending inserts in {:?}", t.elapsed());
        let t = std::time::Instant::now();
        let mut sum = 0;
        for i in (0..n).step_by(7) {
            sum += z.rank(format!("member:{i}").as_bytes()).unwrap_or(0);
        }
        println!("{} ranks in {:?} ({sum})", n / 7, t.elapsed());
        let t = std::time::Instant::now();
        let mut sum = 0.0;
        for i in (0..n).step_by(7) {
            sum += z.score(format!("member:{i}").as_bytes()).unwrap_or(0.0);
        }
        println!("{} score lookups in {:?} ({sum})", n / 7, t.elapsed());
        let t = std::time::Instant::now();
        let mut rng = Rng(3);
        let mut hits = 0;
        for _ in 0..n / 10 {
            let x = rng.below(n) as f64;
            let r = z.score_span(Bound::Inclusive(x), Bound::Inclusive(x + 10.0));
            hits += z
                .range_by_rank(r.start, r.end.saturating_sub(1), false)
                .count();
        }
        println!(
            "{} ZRANGEBYSCORE of ~10 in {:?} ({hits})",
            n / 10,
            t.elapsed()
        );
        let t = std::time::Instant::now();
        for _ in 0..n / 10 {
            let i = rng.below(n);
            z.insert(format!("member:{i}").as_bytes(), rng.below(n) as f64)
                .unwrap();
        }
        println!("{} random score updates in {:?}", n / 10, t.elapsed());
        let t = std::time::Instant::now();
        let mut z2 = ZSet::default();
        for _ in 0..n {
            let i = rng.below(n);
            z2.insert(format!("member:{i}").as_bytes(), rng.below(n) as f64)
                .unwrap();
        }
        println!(
            "{n} random inserts/updates ({} members) in {:?}: {:.1} bytes/member",
            z2.len(),
            t.elapsed(),
            z2.heap_bytes() as f64 / z2.len() as f64
        );
        let t = std::time::Instant::now();
        for i in 0..n {
            z.remove(format!("member:{i}").as_bytes());
        }
        println!(
            "{n} removes in {:?} (heap now {})",
            t.elapsed(),
            z.heap_bytes()
        );
    }

    /// New limits: kept; a set above them converts when a new member comes (as Redis).
    #[test]
    fn set_limits_follows_or_converts() {
        let mut z = ZSet::new(16, 64);
        for i in 0..10u32 {
            z.insert(format!("m{i}").as_bytes(), f64::from(i)).unwrap();
        }
        z.set_limits(70_000, 64);
        assert_eq!((z.encoding(), z.limits()), ("listpack", (70_000, 64)));
        z.set_limits(10, 64);
        assert_eq!(z.encoding(), "listpack");
        z.set_limits(9, 64);
        z.insert(b"m0", 0.0).unwrap();
        assert_eq!(
            z.encoding(),
            "listpack",
            "an update does not convert (as in Redis)"
        );
        z.insert(b"m10", 10.0).unwrap();
        assert_eq!(
            z.encoding(),
            "skiplist",
            "a new member over a limit of 9 converts"
        );
        z.remove(b"m10");
        assert_eq!(z.len(), 10);
        for i in 0..10u32 {
            assert_eq!(z.score(format!("m{i}").as_bytes()), Some(f64::from(i)));
        }
    }

    /// Built in one pass, a set equals the one built by inserts: same members, scores,
    /// order and encoding, on both sides of the limit; unsorted input is refused.
    #[test]
    fn from_sorted_matches_inserts() {
        for n in [0usize, 1, 5, 128, 129, 3000] {
            let mut entries: Vec<(Vec<u8>, f64)> = (0..n)
                .map(|i| (format!("m{i}").into_bytes(), f64::from((i % 7) as u32)))
                .collect();
            entries.sort_by(|a, b| key_cmp(a.1, &a.0, b.1, &b.0));
            let built = ZSet::from_sorted(&entries, 128, 64).unwrap().unwrap();
            let mut inserted = ZSet::new(128, 64);
            for (m, s) in &entries {
                inserted.insert(m, *s).unwrap();
            }
            assert_eq!(built.encoding(), inserted.encoding(), "n={n}");
            let a: Vec<(Vec<u8>, f64)> = built.iter().map(|(m, s)| (m.to_vec(), s)).collect();
            let b: Vec<(Vec<u8>, f64)> = inserted.iter().map(|(m, s)| (m.to_vec(), s)).collect();
            assert_eq!(a, b, "n={n}");
            if n > 1 {
                assert_eq!(built.score(b"m1"), Some(1.0));
                let mut shuffled = entries.clone();
                shuffled.swap(0, n - 1);
                assert!(ZSet::from_sorted(&shuffled, 128, 64).is_none());
            }
        }
        let long = vec![(vec![b'x'; 65], 1.0)];
        assert_eq!(
            ZSet::from_sorted(&long, 128, 64)
                .unwrap()
                .unwrap()
                .encoding(),
            "skiplist"
        );
    }
}
