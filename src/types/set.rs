//! `Set`: Redis 7.0 set encodings.
//!
//! * `Ints` ("intset"): while every member is a canonical integer string (exactly what
//!   Redis's `string2ll` accepts) and there are at most `set-max-intset-entries` (512)
//!   members, they are kept sorted in an [`IntSet`] (one exactly sized block, 2, 4 or 8
//!   bytes per member like Redis's intset), so iteration is in ascending numeric order.
//! * `Table` ("hashtable"): an indexed [`Table`] whose values are always empty.
//!
//! Conversion from `Ints` to `Table` happens on the first non-integer member or when the
//! 513th member is added, and is one way.

use super::encoding::{alloc_size, put_varint, read_varint_checked};
use super::table::{Table, TooLarge};
use std::borrow::Cow;

const TAG_INTS: u8 = 0;
const TAG_TABLE: u8 = 1;

/// Sorted, distinct integers stored like Redis's intset: one exactly sized block
/// `[width][member]*`, every member little-endian in `width` bytes (2, 4 or 8: the
/// smallest that has fitted every member so far; it only grows). Empty: no block.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IntSet {
    buf: Box<[u8]>,
}

/// Bytes needed to store `n`.
fn width_of(n: i64) -> usize {
    if i16::try_from(n).is_ok() {
        2
    } else if i32::try_from(n).is_ok() {
        4
    } else {
        8
    }
}

fn put_int(out: &mut Vec<u8>, n: i64, width: usize) {
    match width {
        2 => out.extend_from_slice(&(n as i16).to_le_bytes()),
        4 => out.extend_from_slice(&(n as i32).to_le_bytes()),
        _ => out.extend_from_slice(&n.to_le_bytes()),
    }
}

impl std::fmt::Debug for IntSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl IntSet {
    /// Bytes per member.
    #[inline]
    fn width(&self) -> usize {
        self.buf.first().map_or(2, |&w| usize::from(w))
    }

    pub fn len(&self) -> usize {
        self.buf.len().saturating_sub(1) / self.width()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Member `i`, which must exist.
    #[inline]
    fn at(&self, i: usize) -> i64 {
        let w = self.width();
        let b = &self.buf[1 + i * w..1 + (i + 1) * w];
        match w {
            2 => i64::from(i16::from_le_bytes([b[0], b[1]])),
            4 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            _ => {
                let mut a = [0; 8];
                a.copy_from_slice(b);
                i64::from_le_bytes(a)
            }
        }
    }

    /// The `i`-th smallest member.
    pub fn get(&self, i: usize) -> Option<i64> {
        (i < self.len()).then(|| self.at(i))
    }

    /// Members in ascending order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = i64> + ExactSizeIterator + '_ {
        (0..self.len()).map(move |i| self.at(i))
    }

    /// Like `slice::binary_search`.
    fn search(&self, n: i64) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.at(mid).cmp(&n) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    pub fn contains(&self, n: i64) -> bool {
        self.search(n).is_ok()
    }

    /// Inserts `n` at position `pos` (keeping the order is the caller's job).
    fn insert_at(&mut self, pos: usize, n: i64) {
        let old = self.width();
        let w = old.max(width_of(n));
        let len = self.len();
        let mut out = Vec::with_capacity(1 + (len + 1) * w);
        out.push(w as u8);
        if w == old && len > 0 {
            out.extend_from_slice(&self.buf[1..1 + pos * w]);
            put_int(&mut out, n, w);
            out.extend_from_slice(&self.buf[1 + pos * w..]);
        } else {
            for i in 0..pos {
                put_int(&mut out, self.at(i), w);
            }
            put_int(&mut out, n, w);
            for i in pos..len {
                put_int(&mut out, self.at(i), w);
            }
        }
        self.buf = out.into_boxed_slice();
    }

    /// Removes and returns member `pos`, which must exist.
    fn remove_at(&mut self, pos: usize) -> i64 {
        let n = self.at(pos);
        if self.len() == 1 {
            self.buf = Box::default();
        } else {
            let w = self.width();
            let mut out = Vec::with_capacity(self.buf.len() - w);
            out.extend_from_slice(&self.buf[..1 + pos * w]);
            out.extend_from_slice(&self.buf[1 + (pos + 1) * w..]);
            self.buf = out.into_boxed_slice();
        }
        n
    }

    /// From members in ascending order.
    fn from_sorted(v: &[i64]) -> IntSet {
        let (Some(&lo), Some(&hi)) = (v.first(), v.last()) else {
            return IntSet::default();
        };
        let w = width_of(lo).max(width_of(hi));
        let mut out = Vec::with_capacity(1 + v.len() * w);
        out.push(w as u8);
        for &n in v {
            put_int(&mut out, n, w);
        }
        IntSet {
            buf: out.into_boxed_slice(),
        }
    }

    /// Heap bytes held (one malloc block), O(1).
    pub fn heap_bytes(&self) -> usize {
        alloc_size(self.buf.len())
    }
}

/// A Redis set.
#[derive(Clone)]
pub enum Set {
    /// Sorted, distinct integers ("intset").
    Ints(IntSet),
    /// Members as fields of an indexed table with empty values ("hashtable").
    Table(Table),
}

impl std::fmt::Debug for Set {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Set")
            .field("encoding", &self.encoding())
            .field("len", &self.len())
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

impl Default for Set {
    fn default() -> Set {
        Set::new()
    }
}

/// Parses `s` as Redis's `string2ll` does: optional '-', digits without leading zeros,
/// no '+' or spaces, within `i64`; "-0" is rejected.
pub fn parse_int(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if !matches!(digits.first(), Some(b'1'..=b'9')) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if neg {
        if v > 1 << 63 {
            None
        } else {
            Some(0i64.wrapping_sub(v as i64))
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// Formats `n` in decimal into `buf`, returning the used tail.
fn fmt_int(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut u = n.unsigned_abs();
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if n < 0 {
        pos -= 1;
        buf[pos] = b'-';
    }
    &buf[pos..]
}

fn int_bytes(n: i64) -> Vec<u8> {
    fmt_int(n, &mut [0; 20]).to_vec()
}

impl Set {
    /// An empty set in intset form.
    pub fn new() -> Set {
        Set::Ints(IntSet::default())
    }

    pub fn len(&self) -> usize {
        match self {
            Set::Ints(v) => v.len(),
            Set::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Set::Ints(v) => v.is_empty(),
            Set::Table(t) => t.is_empty(),
        }
    }

    pub fn contains(&self, m: &[u8]) -> bool {
        match self {
            Set::Ints(v) => parse_int(m).is_some_and(|n| v.contains(n)),
            Set::Table(t) => t.contains(m),
        }
    }

    /// Adds `m`; `Ok(true)` if it was not a member.
    pub fn insert(&mut self, m: &[u8]) -> Result<bool, TooLarge> {
        self.insert_with_limit(m, super::limits::intset())
    }

    /// [`Set::insert`] with a configurable `set-max-intset-entries`.
    pub fn insert_with_limit(
        &mut self,
        m: &[u8],
        max_intset_entries: usize,
    ) -> Result<bool, TooLarge> {
        if let Set::Ints(v) = self {
            if let Some(n) = parse_int(m) {
                match v.search(n) {
                    Ok(_) => return Ok(false),
                    Err(pos) if v.len() < max_intset_entries => {
                        v.insert_at(pos, n);
                        return Ok(true);
                    }
                    Err(_) => {}
                }
            }
            self.convert_to_table()?;
        }
        match self {
            Set::Table(t) => t.insert_new(m, b""),
            Set::Ints(_) => Err(TooLarge), // unreachable: converted above
        }
    }

    /// Converts to hashtable form (no-op if already there).
    pub fn convert_to_table(&mut self) -> Result<(), TooLarge> {
        if let Set::Ints(v) = self {
            let mut t = Table::new_indexed();
            t.reserve(v.len() + 1);
            let mut buf = [0; 20];
            for n in v.iter() {
                t.insert_new(fmt_int(n, &mut buf), b"")?;
            }
            *self = Set::Table(t);
        }
        Ok(())
    }

    /// Removes `m`; true if it was a member.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self {
            Set::Ints(v) => match parse_int(m).map(|n| v.search(n)) {
                Some(Ok(pos)) => {
                    v.remove_at(pos);
                    true
                }
                _ => false,
            },
            Set::Table(t) => t.remove(m),
        }
    }

    /// Member at position `i` (`0..len`), for uniform random picks. Ints are rendered
    /// in decimal.
    pub fn get_index(&self, i: usize) -> Option<Cow<'_, [u8]>> {
        match self {
            Set::Ints(v) => v.get(i).map(|n| Cow::Owned(int_bytes(n))),
            Set::Table(t) => t.get_index(i).map(|(k, _)| Cow::Borrowed(k)),
        }
    }

    /// Removes the member at position `i`.
    pub fn remove_index(&mut self, i: usize) -> Option<Vec<u8>> {
        match self {
            Set::Ints(v) => (i < v.len()).then(|| int_bytes(v.remove_at(i))),
            Set::Table(t) => t.remove_index(i).map(|(k, _)| k),
        }
    }

    /// All members (ascending numeric order for intsets).
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, [u8]>> + '_ {
        let (ints, table) = match self {
            Set::Ints(v) => (Some(v.iter()), None),
            Set::Table(t) => (None, Some(t.iter())),
        };
        ints.into_iter()
            .flatten()
            .map(|n| Cow::Owned(int_bytes(n)))
            .chain(table.into_iter().flatten().map(|(k, _)| Cow::Borrowed(k)))
    }

    /// Redis SSCAN semantics (see [`Table::scan`]); intsets are returned whole.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8])) -> u64 {
        match self {
            Set::Ints(v) => {
                let mut buf = [0; 20];
                for n in v.iter() {
                    f(fmt_int(n, &mut buf));
                }
                0
            }
            Set::Table(t) => t.scan(cursor, count, |k, _| f(k)),
        }
    }

    /// "intset" or "hashtable" (OBJECT ENCODING).
    pub fn encoding(&self) -> &'static str {
        match self {
            Set::Ints(_) => "intset",
            Set::Table(_) => "hashtable",
        }
    }

    /// Heap bytes held, O(1).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Set::Ints(v) => v.heap_bytes(),
            Set::Table(t) => t.heap_bytes(),
        }
    }

    /// Serializes: `[0][count][zigzag varint]*` for intsets, `[1][Table::encode]` otherwise.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Set::Ints(v) => {
                out.reserve(v.len() * 3 + 6);
                out.push(TAG_INTS);
                put_varint(out, v.len() as u64);
                for n in v.iter() {
                    put_varint(out, ((n << 1) ^ (n >> 63)) as u64);
                }
            }
            Set::Table(t) => {
                out.push(TAG_TABLE);
                t.encode(out);
            }
        }
    }

    /// Inverse of [`Set::encode`]; `None` on malformed input.
    pub fn decode(buf: &[u8]) -> Option<Set> {
        let (&tag, rest) = buf.split_first()?;
        match tag {
            TAG_INTS => {
                let mut pos = 0;
                let count = usize::try_from(read_varint_checked(rest, &mut pos)?).ok()?;
                if count > rest.len() - pos {
                    return None;
                }
                let mut v: Vec<i64> = Vec::with_capacity(count);
                for _ in 0..count {
                    let z = read_varint_checked(rest, &mut pos)?;
                    let n = ((z >> 1) as i64) ^ -((z & 1) as i64);
                    if v.last().is_some_and(|&last| last >= n) {
                        return None;
                    }
                    v.push(n);
                }
                (pos == rest.len()).then(|| Set::Ints(IntSet::from_sorted(&v)))
            }
            TAG_TABLE => {
                let mut t = Table::decode(rest)?;
                if t.iter().any(|(_, v)| !v.is_empty()) {
                    return None;
                }
                t.convert_to_indexed();
                Some(Set::Table(t))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashSet};

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

    fn members(s: &Set) -> Vec<Vec<u8>> {
        s.iter().map(|m| m.into_owned()).collect()
    }

    fn check(s: &Set, model: &BTreeSet<Vec<u8>>) {
        assert_eq!(s.len(), model.len());
        let got = members(s);
        if let Set::Ints(v) = s {
            let v: Vec<i64> = v.iter().collect();
            assert!(v.windows(2).all(|w| w[0] < w[1]));
            assert!(v.len() <= crate::types::limits::SET_MAX_INTSET_ENTRIES);
            let want: Vec<Vec<u8>> = v.iter().map(|n| n.to_string().into_bytes()).collect();
            assert_eq!(got, want);
        }
        let got: BTreeSet<Vec<u8>> = got.into_iter().collect();
        assert_eq!(&got, model);
    }

    #[test]
    fn model_random_ops() {
        let mut rng = Rng(0xDEAD_BEEF_1234_5678);
        let mut s = Set::new();
        let mut model = BTreeSet::new();
        let mut all_int = true;
        let mut conversions = 0;
        for op in 0..100_000 {
            if op % 4000 == 0 {
                s = Set::new();
                model.clear();
                all_int = true;
            }
            let m: Vec<u8> = match rng.below(200) {
                0 => format!("m{}", rng.below(100)).into_bytes(),
                1 => b"-0".to_vec(),
                2 => b"007".to_vec(),
                _ => {
                    let span = if op % 8000 < 4000 { 300 } else { 1200 };
                    (rng.below(span) as i64 - 100).to_string().into_bytes()
                }
            };
            let before = s.encoding();
            match rng.below(10) {
                0..=4 => {
                    let added = s.insert(&m).unwrap();
                    assert_eq!(added, model.insert(m.clone()));
                    all_int &= parse_int(&m).is_some();
                }
                5..=6 => assert_eq!(s.remove(&m), model.remove(&m)),
                7 => assert_eq!(s.contains(&m), model.contains(&m)),
                8 => {
                    if s.is_empty() {
                        assert!(s.remove_index(0).is_none());
                    } else {
                        let i = rng.below(s.len());
                        let got = s.get_index(i).unwrap().into_owned();
                        assert_eq!(s.remove_index(i), Some(got.clone()));
                        assert!(model.remove(&got));
                    }
                }
                _ => {
                    let i = rng.below(s.len() + 1);
                    match s.get_index(i) {
                        Some(x) => assert!(model.contains(x.as_ref())),
                        None => assert_eq!(i, s.len()),
                    }
                }
            }
            if before == "hashtable" {
                assert_eq!(s.encoding(), "hashtable");
            } else if s.encoding() == "hashtable" {
                conversions += 1;
            }
            if s.encoding() == "intset" {
                assert!(all_int);
            }
            if op % 501 == 0 {
                check(&s, &model);
            }
        }
        check(&s, &model);
        assert!(conversions >= 10, "{conversions}");
    }

    #[test]
    fn sizes_and_widths() {
        let size = std::mem::size_of::<Set>();
        println!("size_of::<Set>() = {size}");
        assert!(size <= 24, "{size}");
        let mut s = Set::new();
        assert_eq!(s.heap_bytes(), 0);
        let mut want: BTreeSet<i64> = BTreeSet::new();
        let steps: [(i64, usize); 7] = [
            (5, 2),
            (-300, 2),
            (i64::from(i16::MAX), 2),
            (70_000, 4),
            (i64::from(i32::MIN), 4),
            (1 << 40, 8),
            (i64::MIN, 8),
        ];
        for (n, w) in steps {
            assert!(s.insert(n.to_string().as_bytes()).unwrap());
            want.insert(n);
            let Set::Ints(v) = &s else {
                panic!("not an intset")
            };
            assert_eq!(v.width(), w);
            assert_eq!(
                v.iter().collect::<Vec<_>>(),
                want.iter().copied().collect::<Vec<_>>()
            );
            assert_eq!(s.heap_bytes(), alloc_size(1 + want.len() * w));
        }
        // The width never shrinks; emptying frees the block.
        assert!(s.remove(b"-9223372036854775808"));
        assert!(s.contains(b"1099511627776"));
        assert!(!s.contains(b"1099511627777"));
        while s.remove_index(0).is_some() {}
        assert_eq!(s.encoding(), "intset");
        assert_eq!(s.heap_bytes(), 0);
        // 512 small ints: 2 bytes each.
        let mut s = Set::new();
        for i in 0..512 {
            s.insert((i * 3 - 700).to_string().as_bytes()).unwrap();
        }
        assert_eq!(s.heap_bytes(), alloc_size(1 + 512 * 2));
        assert_eq!(s.get_index(0).as_deref(), Some(&b"-700"[..]));
        assert_eq!(s.get_index(511).as_deref(), Some(&b"833"[..]));
    }

    #[test]
    fn canonical_integers() {
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"007",
            b"00",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"18446744073709551616",
            b"99999999999999999999",
            b"-00000000000000000001",
            b"1.0",
            b"0x10",
        ] {
            assert_eq!(parse_int(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        for (good, n) in [
            (&b"0"[..], 0),
            (b"7", 7),
            (b"-7", -7),
            (b"10", 10),
            (b"9223372036854775807", i64::MAX),
            (b"-9223372036854775808", i64::MIN),
        ] {
            assert_eq!(parse_int(good), Some(n));
            assert_eq!(int_bytes(n), good);
        }
        let mut s = Set::new();
        s.insert(b"-9223372036854775808").unwrap();
        s.insert(b"9223372036854775807").unwrap();
        assert_eq!(s.encoding(), "intset");
        assert!(s.contains(b"-9223372036854775808"));
        assert!(!s.contains(b"+9223372036854775807"));
        for bad in ["-0", "007", "+1", "9223372036854775808"] {
            let mut s = Set::new();
            s.insert(b"1").unwrap();
            assert!(s.insert(bad.as_bytes()).unwrap());
            assert_eq!(s.encoding(), "hashtable", "{bad}");
            assert!(s.contains(bad.as_bytes()));
            assert!(s.contains(b"1"));
        }
    }

    #[test]
    fn intset_order_and_limit() {
        let mut s = Set::new();
        for m in ["5", "-3", "10", "0", "-100", "5"] {
            s.insert(m.as_bytes()).unwrap();
        }
        let got: Vec<Vec<u8>> = members(&s);
        let want: Vec<&[u8]> = vec![b"-100", b"-3", b"0", b"5", b"10"];
        assert_eq!(got, want);
        assert_eq!(s.get_index(1).as_deref(), Some(&b"-3"[..]));
        assert!(!s.remove(b"-03"));
        assert!(s.remove(b"-3"));
        assert_eq!(s.remove_index(0), Some(b"-100".to_vec()));
        let mut seen = Vec::new();
        assert_eq!(s.scan(0, 1, |m| seen.push(m.to_vec())), 0);
        assert_eq!(seen, members(&s));

        let mut s = Set::new();
        for i in 0..512 {
            assert!(s.insert((i * 7).to_string().as_bytes()).unwrap());
        }
        assert_eq!(s.encoding(), "intset");
        assert!(!s.insert(b"0").unwrap());
        assert_eq!(s.encoding(), "intset");
        assert!(s.insert(b"1").unwrap());
        assert_eq!(s.encoding(), "hashtable");
        assert_eq!(s.len(), 513);
        for i in 0..512 {
            assert!(s.contains((i * 7).to_string().as_bytes()));
        }
        // One way: removing everything does not convert back.
        for i in 0..512 {
            assert!(s.remove((i * 7).to_string().as_bytes()));
        }
        assert_eq!(s.encoding(), "hashtable");
    }

    #[test]
    fn scan_table_form() {
        let mut rng = Rng(7);
        let mut s = Set::new();
        for i in 0..3000 {
            s.insert(format!("m{i}").as_bytes()).unwrap();
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut next = 3000;
        loop {
            cursor = s.scan(cursor, 10, |m| {
                seen.insert(m.to_vec());
            });
            if cursor == 0 {
                break;
            }
            // Only members m1500.. are ever removed.
            let victim = format!("m{}", 1500 + rng.below(1500));
            s.remove(victim.as_bytes());
            s.insert(format!("m{next}").as_bytes()).unwrap();
            next += 1;
        }
        for i in 0..1500 {
            assert!(seen.contains(format!("m{i}").as_bytes()));
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut ints = Set::new();
        for n in [i64::MIN, -5, 0, 3, 1 << 40, i64::MAX] {
            ints.insert(n.to_string().as_bytes()).unwrap();
        }
        let mut table = Set::new();
        for i in 0..1000 {
            table.insert(format!("member:{i}").as_bytes()).unwrap();
        }
        for i in (0..1000).step_by(7) {
            table.remove(format!("member:{i}").as_bytes());
        }
        for s in [Set::new(), Set::Table(Table::new_indexed()), ints, table] {
            let mut buf = Vec::new();
            s.encode(&mut buf);
            let d = Set::decode(&buf).unwrap();
            assert_eq!(d.encoding(), s.encoding());
            assert_eq!(members(&d), members(&s));
            for cut in 0..buf.len() {
                assert!(Set::decode(&buf[..cut]).is_none());
            }
            buf.push(0);
            assert!(Set::decode(&buf).is_none());
        }
        // Unsorted or duplicate ints are rejected.
        assert!(Set::decode(&[TAG_INTS, 2, 4, 2]).is_none());
        assert!(Set::decode(&[TAG_INTS, 2, 4, 4]).is_none());
        assert!(Set::decode(&[TAG_INTS, 2, 2, 4]).is_some());
        // Tables with values are rejected.
        let mut t = Table::new_indexed();
        t.insert(b"a", b"x").unwrap();
        let mut buf = vec![TAG_TABLE];
        t.encode(&mut buf);
        assert!(Set::decode(&buf).is_none());
        let mut rng = Rng(3);
        for _ in 0..2000 {
            let len = rng.below(30);
            let b: Vec<u8> = (0..len).map(|_| rng.next() as u8 % 4).collect();
            let _ = Set::decode(&b);
        }
    }

    #[test]
    fn bytes_per_entry_1m() {
        let n = 1_000_000;
        let mut s = Set::new();
        for i in 0..n {
            s.insert(format!("member:{i}").as_bytes()).unwrap();
        }
        assert_eq!(s.len(), n);
        let b = s.heap_bytes() as f64 / n as f64;
        println!(
            "set: {n} members `member:{{i}}`, heap {} bytes = {b:.1} bytes/member",
            s.heap_bytes()
        );
        assert!(b < 40.0);
    }
}
