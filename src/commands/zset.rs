//! The sorted-set family (single-key commands and ZRANGESTORE), with Redis 7.0's option
//! rules, argument-checking order, reply shapes and error texts. The multi-key aggregates
//! (ZUNION, ZINTER, ZDIFF, their STORE forms, ZINTERCARD, ZMPOP) live in `zset_agg.rs`;
//! the parsing and reply helpers here that they can share are `pub(crate)`.
//!
//! Writes go through `Db::edit_zset` and are journaled as the command itself: every write
//! here is deterministic given the state (ZPOPMIN/ZPOPMAX pop the ends; the blocking pops
//! journal themselves as `ZPOPMIN key n` / `ZPOPMAX key n`, replayed by [`zpopmin`] /
//! [`zpopmax`]). ZRANGESTORE replaces its destination as a whole value
//! (`Db::write_owned`), or removes it when the range is empty.
//!
//! Ranges never walk from the start: score and lex bounds become rank spans in
//! O(log n), LIMIT offsets are added to the span, and rank ranges are read lazily from
//! their first entry, so a reply costs O(log n + what it returns); ZREMRANGEBY* likewise
//! cost O(log n + removed).

use std::cell::Cell;
use std::ops::Range;

use bytes::Bytes;
use coreshard_engine::ttl::Owned;
use coreshard_protocol::{format_double, Value as Resp};

use super::scan;
use super::strings::{err, NOT_INT, SYNTAX};
use super::{parse_int, Spec, K1, K12, R, RF, W, WDF, WF};
use crate::db::{Db, Edit};
use crate::server::ops::{bulk_array, OpResult};
use crate::server::txn::run_across_shards;
use crate::server::ArgList;
use crate::types::zset::{Bound, Iter};
use crate::types::{Obj, ZSet};

const ZSET: &str = "sorted-set";
/// ZREMRANGEBY*: plain "write" (not fast, not denyoom), as Redis flags them.
const WO: &[&str] = &["write"];

/// A score argument that is not a number (ZADD, ZINCRBY; also Redis's text for a bad
/// increment).
pub(crate) const NOT_FLOAT: &str = "ERR value is not a valid float";
/// A score range bound that is not a number.
pub(crate) const NOT_FLOAT_RANGE: &str = "ERR min or max is not a float";
/// A lex range bound that does not start with `(`, `[`, or is not `-` / `+`.
pub(crate) const NOT_LEX_RANGE: &str = "ERR min or max not valid string range item";
/// An increment that meets an infinity of the other sign.
pub(crate) const NAN_SCORE: &str = "ERR resulting score is not a number (NaN)";
/// The set's storage would exceed what one value may hold (4 GiB of records).
pub(crate) const TOO_LARGE: &str = "ERR sorted set too large";
/// Redis's `getPositiveLongFromObjectOrReply` text (for bad and negative counts alike).
const NOT_POSITIVE: &str = "ERR value is out of range, must be positive";

/// The family's commands (Redis 7.0's arity, flags and key positions).
#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    Spec::keyed("zadd", -4, WDF, K1, (ZSET, "1.2.0", "Add one or more members to a sorted set, or update its score if it already exists"), zadd),
    Spec::keyed("zincrby", 4, WDF, K1, (ZSET, "1.2.0", "Increment the score of a member in a sorted set"), zincrby),
    Spec::keyed("zrem", -3, WF, K1, (ZSET, "1.2.0", "Remove one or more members from a sorted set"), zrem),
    Spec::keyed("zcard", 2, RF, K1, (ZSET, "1.2.0", "Get the number of members in a sorted set"), zcard),
    Spec::keyed("zscore", 3, RF, K1, (ZSET, "1.2.0", "Get the score associated with the given member in a sorted set"), zscore),
    Spec::keyed("zmscore", -3, RF, K1, (ZSET, "6.2.0", "Get the score associated with the given members in a sorted set"), zmscore),
    Spec::keyed("zrank", 3, RF, K1, (ZSET, "2.0.0", "Determine the index of a member in a sorted set"), zrank),
    Spec::keyed("zrevrank", 3, RF, K1, (ZSET, "2.0.0", "Determine the index of a member in a sorted set, with scores ordered from high to low"), zrevrank),
    Spec::keyed("zcount", 4, RF, K1, (ZSET, "2.0.0", "Count the members in a sorted set with scores within the given values"), zcount),
    Spec::keyed("zlexcount", 4, RF, K1, (ZSET, "2.8.9", "Count the number of members in a sorted set between a given lexicographical range"), zlexcount),
    Spec::keyed("zrange", -4, R, K1, (ZSET, "1.2.0", "Return a range of members in a sorted set"), zrange),
    Spec::keyed("zrangestore", -5, W, K12, (ZSET, "6.2.0", "Store a range of members from sorted set into another key"), zrangestore).cross(run_across_shards),
    Spec::keyed("zrevrange", -4, R, K1, (ZSET, "1.2.0", "Return a range of members in a sorted set, by index, with scores ordered from high to low"), zrevrange),
    Spec::keyed("zrangebyscore", -4, R, K1, (ZSET, "1.0.5", "Return a range of members in a sorted set, by score"), zrangebyscore),
    Spec::keyed("zrevrangebyscore", -4, R, K1, (ZSET, "2.2.0", "Return a range of members in a sorted set, by score, with scores ordered from high to low"), zrevrangebyscore),
    Spec::keyed("zrangebylex", -4, R, K1, (ZSET, "2.8.9", "Return a range of members in a sorted set, by lexicographical range"), zrangebylex),
    Spec::keyed("zrevrangebylex", -4, R, K1, (ZSET, "2.8.9", "Return a range of members in a sorted set, by lexicographical range, ordered from higher to lower strings."), zrevrangebylex),
    Spec::keyed("zremrangebyrank", 4, WO, K1, (ZSET, "2.0.0", "Remove all members in a sorted set within the given indexes"), zremrangebyrank),
    Spec::keyed("zremrangebyscore", 4, WO, K1, (ZSET, "1.2.0", "Remove all members in a sorted set within the given scores"), zremrangebyscore),
    Spec::keyed("zremrangebylex", 4, WO, K1, (ZSET, "2.8.9", "Remove all members in a sorted set between the given lexicographical range"), zremrangebylex),
    Spec::keyed("zpopmin", -2, WF, K1, (ZSET, "5.0.0", "Remove and return members with the lowest scores in a sorted set"), zpopmin),
    Spec::keyed("zpopmax", -2, WF, K1, (ZSET, "5.0.0", "Remove and return members with the highest scores in a sorted set"), zpopmax),
    Spec::keyed("zrandmember", -2, R, K1, (ZSET, "6.2.0", "Get one or multiple random elements from a sorted set"), zrandmember),
    Spec::keyed("zscan", -3, R, K1, (ZSET, "2.8.0", "Incrementally iterate sorted sets elements and associated scores"), zscan),
];

// ---------------------------------------------------------------------------------------
// Number parsing, as Redis's C library does it.

/// C's `isspace` in the C locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// glibc's `strtod` when it must consume all of `s`: leading white space skipped, an
/// optional sign, then a decimal number, a hex float (`0x1.8p3`), `inf` or `infinity`
/// (any case). Returns the value (rounded to nearest) and whether it overflowed to an
/// infinity or underflowed to zero (`ERANGE` with a zero or infinite result); `None` when
/// `s` is not one number from end to end. NaN texts are refused here (every caller
/// refuses NaN anyway).
fn strtod_all(s: &[u8]) -> Option<(f64, bool)> {
    let start = s.iter().position(|&c| !is_space(c)).unwrap_or(s.len());
    let s = &s[start..];
    let (neg, body) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let signed = |x: f64| if neg { -x } else { x };
    if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        return Some((signed(f64::INFINITY), false));
    }
    if body.len() > 2 && body[0] == b'0' && body[1] | 0x20 == b'x' {
        if let Some((x, range)) = parse_hex(&body[2..]) {
            return Some((signed(x), range));
        }
        // "0x" not followed by a hex number: strtod reads just the "0".
        return None;
    }
    // Decimal: digits [. digits] (at least one digit) [e [sign] digits].
    let mut i = 0;
    let mut digits = 0;
    let mut nonzero = false;
    let mut dot = false;
    while i < body.len() {
        match body[i] {
            c @ b'0'..=b'9' => {
                digits += 1;
                nonzero |= c != b'0';
            }
            b'.' if !dot => dot = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if i < body.len() {
        if body[i] | 0x20 != b'e' {
            return None;
        }
        let mut j = i + 1;
        if matches!(body.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if j == body.len() || !body[j..].iter().all(u8::is_ascii_digit) {
            return None;
        }
    }
    // Rust's parser is correctly rounded, as glibc's strtod is.
    let x: f64 = std::str::from_utf8(body).ok()?.parse().ok()?;
    let range = x.is_infinite() || (x == 0.0 && nonzero);
    Some((signed(x), range))
}

/// The digits of a hex float after "0x" (`h[.h][p[sign]d]`), correctly rounded.
fn parse_hex(b: &[u8]) -> Option<(f64, bool)> {
    let mut mant: u64 = 0;
    let mut exp: i64 = 0;
    let mut sticky = false;
    let (mut any, mut dot) = (false, false);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if let Some(v) = (c as char).to_digit(16) {
            any = true;
            if mant >> 60 == 0 {
                mant = (mant << 4) | u64::from(v);
                if dot {
                    exp -= 4;
                }
            } else {
                sticky |= v != 0;
                if !dot {
                    exp += 4;
                }
            }
        } else if c == b'.' && !dot {
            dot = true;
        } else {
            break;
        }
        i += 1;
    }
    if !any {
        return None;
    }
    if i < b.len() {
        if b[i] | 0x20 != b'p' {
            return None;
        }
        let rest = &b[i + 1..];
        let (eneg, digits) = match rest.first() {
            Some(b'-') => (true, &rest[1..]),
            Some(b'+') => (false, &rest[1..]),
            _ => (false, rest),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let e = digits.iter().fold(0i64, |v, &c| {
            (v * 10 + i64::from(c - b'0')).min(1_000_000_000)
        });
        exp += if eneg { -e } else { e };
    }
    if mant == 0 {
        return Some((0.0, false));
    }
    Some(compose(mant, sticky, exp))
}

/// `(mant + a sticky fraction) * 2^exp` rounded to nearest-even as an f64, and whether it
/// overflowed or underflowed to zero.
fn compose(mant: u64, sticky: bool, exp: i64) -> (f64, bool) {
    let lz = i64::from(mant.leading_zeros());
    let m = mant << lz;
    let e = exp - lz; // value = m * 2^e, m in [2^63, 2^64)
    let top = e + 63;
    if top > 1023 {
        return (f64::INFINITY, true);
    }
    // Bits of `m` below the result's last mantissa bit (more for subnormals).
    let drop = if top >= -1022 { 11 } else { 11 + (-1022 - top) };
    if drop > 64 {
        return (0.0, true);
    }
    let (kept, half, rest) = if drop == 64 {
        (0, m >> 63 == 1, (m << 1) != 0 || sticky)
    } else {
        (
            m >> drop,
            (m >> (drop - 1)) & 1 == 1,
            m & ((1u64 << (drop - 1)) - 1) != 0 || sticky,
        )
    };
    let mut q = kept;
    if half && (rest || q & 1 == 1) {
        q += 1;
    }
    let scale = e + drop; // >= -1074
    let pow2 = if scale >= -1022 {
        f64::from_bits(((scale + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (scale + 1074))
    };
    let x = q as f64 * pow2;
    (x, x.is_infinite() || x == 0.0)
}

/// A score as ZADD / ZINCRBY read it (Redis's `string2d`): the whole argument, no leading
/// space, not NaN, not out of a double's range (`1e400`, `1e-400` are refused; subnormals
/// and `inf` are fine). Also how WEIGHTS values parse.
pub(crate) fn parse_score(b: &[u8]) -> Option<f64> {
    if b.first().is_none_or(|&c| is_space(c)) {
        return None;
    }
    match strtod_all(b)? {
        (x, false) if !x.is_nan() => Some(x),
        _ => None,
    }
}

/// One end of a score range (Redis's `zslParseRange`): `(` makes it exclusive; the rest is
/// read by `strtod` up to the first NUL, so leading white space is allowed, out-of-range
/// values saturate, and an empty number means 0. `None`: not a float (or NaN).
pub(crate) fn parse_score_bound(b: &[u8]) -> Option<Bound<f64>> {
    let b = match b.iter().position(|&c| c == 0) {
        Some(end) => &b[..end],
        None => b,
    };
    let (exclusive, body) = match b.first() {
        Some(b'(') => (true, &b[1..]),
        _ => (false, b),
    };
    let x = if body.is_empty() {
        0.0
    } else {
        strtod_all(body)?.0
    };
    if x.is_nan() {
        return None;
    }
    Some(if exclusive {
        Bound::Exclusive(x)
    } else {
        Bound::Inclusive(x)
    })
}

/// A score range from its two arguments, or Redis's error.
pub(crate) fn parse_score_range(
    min: &[u8],
    max: &[u8],
) -> Result<(Bound<f64>, Bound<f64>), OpResult> {
    match (parse_score_bound(min), parse_score_bound(max)) {
        (Some(lo), Some(hi)) => Ok((lo, hi)),
        _ => Err(err(NOT_FLOAT_RANGE)),
    }
}

/// One end of a lex range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LexBound<'a> {
    /// `-`: below every member.
    Min,
    /// `+`: above every member.
    Max,
    /// `[member`
    Inclusive(&'a [u8]),
    /// `(member`
    Exclusive(&'a [u8]),
}

/// One end of a lex range (Redis's `zslParseLexRangeItem`); `None` if invalid.
pub(crate) fn parse_lex_bound(b: &[u8]) -> Option<LexBound<'_>> {
    // Redis reads a C string: `+` / `-` followed by a NUL count as alone.
    let alone = b.len() == 1 || b.get(1) == Some(&0);
    match *b.first()? {
        b'+' if alone => Some(LexBound::Max),
        b'-' if alone => Some(LexBound::Min),
        b'(' => Some(LexBound::Exclusive(&b[1..])),
        b'[' => Some(LexBound::Inclusive(&b[1..])),
        _ => None,
    }
}

/// A lex range from its two arguments, or Redis's error.
pub(crate) fn parse_lex_range<'a>(
    min: &'a [u8],
    max: &'a [u8],
) -> Result<(LexBound<'a>, LexBound<'a>), OpResult> {
    match (parse_lex_bound(min), parse_lex_bound(max)) {
        (Some(lo), Some(hi)) => Ok((lo, hi)),
        _ => Err(err(NOT_LEX_RANGE)),
    }
}

/// Ascending rank span of the members within a lex range (`+` as the minimum or `-` as
/// the maximum select nothing).
pub(crate) fn lex_span(z: &ZSet, min: LexBound<'_>, max: LexBound<'_>) -> Range<usize> {
    let lo = match min {
        LexBound::Min => Bound::Unbounded,
        LexBound::Max => return 0..0,
        LexBound::Inclusive(m) => Bound::Inclusive(m),
        LexBound::Exclusive(m) => Bound::Exclusive(m),
    };
    let hi = match max {
        LexBound::Max => Bound::Unbounded,
        LexBound::Min => return 0..0,
        LexBound::Inclusive(m) => Bound::Inclusive(m),
        LexBound::Exclusive(m) => Bound::Exclusive(m),
    };
    z.lex_span(lo, hi)
}

/// A score as Redis 7.0 replies it: a double (`%.17g` text as a bulk string in RESP2, a
/// `,` double in RESP3).
pub(crate) fn score_value(x: f64) -> Resp {
    Resp::Double(x)
}

fn bulk(m: &[u8]) -> Resp {
    Resp::Bulk(Bytes::copy_from_slice(m))
}

/// `n` entries from `it` as ZRANGE replies them: members only (one encoded buffer), or
/// member/score pairs (a flat array in RESP2, two-element arrays in RESP3).
pub(crate) fn range_reply<'a>(
    n: usize,
    it: impl Iterator<Item = (&'a [u8], f64)>,
    withscores: bool,
) -> OpResult {
    if withscores {
        let mut flat = Vec::with_capacity(n.saturating_mul(2));
        for (m, s) in it.take(n) {
            flat.push(bulk(m));
            flat.push(score_value(s));
        }
        OpResult::Pairs(flat)
    } else {
        bulk_array(n, it.map(|(m, _)| m))
    }
}

fn empty_array() -> OpResult {
    OpResult::Reply(Resp::Array(Vec::new()))
}

thread_local! {
    /// Per-shard random state for ZRANDMEMBER (a read: replay never depends on it).
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x25e7_u64) | 1
}

/// A uniform random number below `n` (`n > 0`), splitmix64.
fn below(n: usize) -> usize {
    let x = RNG.with(|s| {
        let v = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(v);
        let mut z = v;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    });
    ((u128::from(x) * n as u128) >> 64) as usize
}

// ---------------------------------------------------------------------------------------
// ZADD / ZINCRBY / ZREM.

/// ZADD and ZINCRBY (which is ZADD with INCR, options included, as in Redis).
fn zadd_generic(db: &mut Db, now: u64, a: &dyn ArgList, incr_cmd: bool) -> OpResult {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, incr_cmd);
    let mut idx = 2;
    while idx < a.len() {
        if a.is(idx, "NX") {
            nx = true;
        } else if a.is(idx, "XX") {
            xx = true;
        } else if a.is(idx, "CH") {
            ch = true;
        } else if a.is(idx, "INCR") {
            incr = true;
        } else if a.is(idx, "GT") {
            gt = true;
        } else if a.is(idx, "LT") {
            lt = true;
        } else {
            break;
        }
        idx += 1;
    }
    let elements = a.len() - idx;
    if elements == 0 || elements % 2 == 1 {
        return err(SYNTAX);
    }
    let elements = elements / 2;
    if nx && xx {
        return err("ERR XX and NX options at the same time are not compatible");
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return err("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if incr && elements > 1 {
        return err("ERR INCR option supports a single increment-element pair");
    }
    let mut scores = Vec::with_capacity(elements);
    for j in 0..elements {
        match parse_score(a.arg(idx + 2 * j)) {
            Some(s) => scores.push(s),
            None => return err(NOT_FLOAT),
        }
    }
    let event = if incr { "zincr" } else { "zadd" };
    let r = db.edit_zset(a.arg(1), now, !xx, a, |z| {
        let (mut added, mut updated, mut processed) = (0i64, 0i64, 0);
        let mut last = 0.0;
        let finish = |reply: OpResult, changed: bool| {
            if changed {
                Edit::changed(reply, event)
            } else {
                Edit::unchanged(reply)
            }
        };
        for (j, &score) in scores.iter().enumerate() {
            let m = a.arg(idx + 1 + 2 * j);
            match z.score(m) {
                Some(cur) => {
                    if nx {
                        continue;
                    }
                    let s = if incr { score + cur } else { score };
                    if s.is_nan() {
                        // Replay repeats the command and stops at the same member.
                        return finish(err(NAN_SCORE), added + updated > 0);
                    }
                    if (lt && s >= cur) || (gt && s <= cur) {
                        continue;
                    }
                    last = s;
                    processed += 1;
                    if s != cur {
                        if z.insert(m, s).is_err() {
                            return finish(err(TOO_LARGE), added + updated > 0);
                        }
                        updated += 1;
                    }
                }
                None => {
                    if xx {
                        continue;
                    }
                    if z.insert(m, score).is_err() {
                        return finish(err(TOO_LARGE), added + updated > 0);
                    }
                    added += 1;
                    processed += 1;
                    last = score;
                }
            }
        }
        let reply = if incr {
            if processed > 0 {
                OpResult::Reply(score_value(last))
            } else {
                OpResult::Value(None)
            }
        } else {
            OpResult::Int(if ch { added + updated } else { added })
        };
        finish(reply, added + updated > 0)
    });
    match r {
        Ok(Some(reply)) => reply,
        // XX on an absent key.
        Ok(None) if incr => OpResult::Value(None),
        Ok(None) => OpResult::Int(0),
        Err(w) => w.into(),
    }
}

/// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]
pub fn zadd(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    zadd_generic(db, now, a, false)
}

/// ZINCRBY key increment member
pub fn zincrby(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    zadd_generic(db, now, a, true)
}

pub fn zrem(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let r = db.edit_zset(a.arg(1), now, false, a, |z| {
        let mut removed = 0;
        for i in 2..a.len() {
            if z.remove(a.arg(i)).is_some() {
                removed += 1;
            }
            if z.is_empty() {
                break;
            }
        }
        if removed > 0 {
            Edit::changed(removed, "zrem")
        } else {
            Edit::unchanged(0)
        }
    });
    match r {
        Ok(n) => OpResult::Int(n.unwrap_or(0)),
        Err(w) => w.into(),
    }
}

// ---------------------------------------------------------------------------------------
// Point reads and counts.

pub fn zcard(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_zset(a.arg(1), now) {
        Ok(z) => OpResult::Int(z.map_or(0, |z| z.len() as i64)),
        Err(w) => w.into(),
    }
}

pub fn zscore(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_zset(a.arg(1), now) {
        Ok(z) => match z.and_then(|z| z.score(a.arg(2))) {
            Some(s) => OpResult::Reply(score_value(s)),
            None => OpResult::Value(None),
        },
        Err(w) => w.into(),
    }
}

pub fn zmscore(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_zset(a.arg(1), now) {
        Ok(z) => OpResult::Reply(Resp::Array(
            (2..a.len())
                .map(|i| match z.and_then(|z| z.score(a.arg(i))) {
                    Some(s) => score_value(s),
                    None => Resp::Null,
                })
                .collect(),
        )),
        Err(w) => w.into(),
    }
}

fn rank_generic(db: &mut Db, now: u64, a: &dyn ArgList, rev: bool) -> OpResult {
    match db.read_zset(a.arg(1), now) {
        Ok(Some(z)) => match z.rank(a.arg(2)) {
            Some(r) if rev => OpResult::Int((z.len() - 1 - r) as i64),
            Some(r) => OpResult::Int(r as i64),
            None => OpResult::Value(None),
        },
        Ok(None) => OpResult::Value(None),
        Err(w) => w.into(),
    }
}

pub fn zrank(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    rank_generic(db, now, a, false)
}

pub fn zrevrank(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    rank_generic(db, now, a, true)
}

pub fn zcount(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let (lo, hi) = match parse_score_range(a.arg(2), a.arg(3)) {
        Ok(r) => r,
        Err(e) => return e,
    };
    match db.read_zset(a.arg(1), now) {
        Ok(z) => OpResult::Int(z.map_or(0, |z| z.score_span(lo, hi).len() as i64)),
        Err(w) => w.into(),
    }
}

pub fn zlexcount(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let (lo, hi) = match parse_lex_range(a.arg(2), a.arg(3)) {
        Ok(r) => r,
        Err(e) => return e,
    };
    match db.read_zset(a.arg(1), now) {
        Ok(z) => OpResult::Int(z.map_or(0, |z| lex_span(z, lo, hi).len() as i64)),
        Err(w) => w.into(),
    }
}

// ---------------------------------------------------------------------------------------
// Ranges.

/// How a range is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    Rank,
    Score,
    Lex,
}

/// A parsed range.
#[derive(Debug, Clone, Copy)]
enum Span<'a> {
    /// Start and stop ranks as given (negative from the end).
    Rank(i64, i64),
    Score(Bound<f64>, Bound<f64>),
    Lex(LexBound<'a>, LexBound<'a>),
}

/// A ZRANGE-family request once parsed.
struct RangeReq<'a> {
    span: Span<'a>,
    rev: bool,
    withscores: bool,
    offset: i64,
    /// Negative: no limit.
    limit: i64,
}

/// Redis's `zrangeGenericCommand` argument handling: `<src> <min> <max>` at `src`,
/// `src + 1`, `src + 2`, then the options (`by` / `rev` fixed by the legacy commands,
/// open for ZRANGE and ZRANGESTORE; no WITHSCORES for a store).
fn parse_range<'a>(
    a: &'a dyn ArgList,
    src: usize,
    store: bool,
    by: Option<By>,
    rev: Option<bool>,
) -> Result<RangeReq<'a>, OpResult> {
    let (mut by, mut rev) = (by, rev);
    let mut withscores = false;
    let (mut offset, mut limit) = (0i64, -1i64);
    let mut j = src + 3;
    while j < a.len() {
        let left = a.len() - j - 1;
        if !store && a.is(j, "WITHSCORES") {
            withscores = true;
        } else if a.is(j, "LIMIT") && left >= 2 {
            match (parse_int(a.arg(j + 1)), parse_int(a.arg(j + 2))) {
                (Some(o), Some(l)) => (offset, limit) = (o, l),
                _ => return Err(err(NOT_INT)),
            }
            j += 2;
        } else if rev.is_none() && a.is(j, "REV") {
            rev = Some(true);
        } else if by.is_none() && a.is(j, "BYLEX") {
            by = Some(By::Lex);
        } else if by.is_none() && a.is(j, "BYSCORE") {
            by = Some(By::Score);
        } else {
            return Err(err(SYNTAX));
        }
        j += 1;
    }
    let rev = rev.unwrap_or(false);
    let by = by.unwrap_or(By::Rank);
    // Redis tests the limit's value: "LIMIT 0 -1" passes with a rank range.
    if limit != -1 && by == By::Rank {
        return Err(err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && by == By::Lex {
        return Err(err(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut lo, mut hi) = (src + 1, src + 2);
    if rev && by != By::Rank {
        // Given as max, min.
        std::mem::swap(&mut lo, &mut hi);
    }
    let span = match by {
        By::Rank => match (parse_int(a.arg(lo)), parse_int(a.arg(hi))) {
            (Some(start), Some(stop)) => Span::Rank(start, stop),
            _ => return Err(err(NOT_INT)),
        },
        By::Score => {
            let (min, max) = parse_score_range(a.arg(lo), a.arg(hi))?;
            Span::Score(min, max)
        }
        By::Lex => {
            let (min, max) = parse_lex_range(a.arg(lo), a.arg(hi))?;
            Span::Lex(min, max)
        }
    };
    Ok(RangeReq {
        span,
        rev,
        withscores: withscores || store,
        offset,
        limit,
    })
}

/// Normalizes Redis's start/stop ranks for a set of `len`: the inclusive ascending (or,
/// reversed, from-the-top) range, or `None` when empty.
fn rank_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 {
        start.saturating_add(len)
    } else {
        start
    };
    let mut stop = if stop < 0 {
        stop.saturating_add(len)
    } else {
        stop
    };
    start = start.max(0);
    if start > stop || start >= len {
        return None;
    }
    stop = stop.min(len - 1);
    Some((start as usize, stop as usize))
}

/// The entries a request selects from `z`, in reply order: lazily, from the first one.
fn select<'z>(z: &'z ZSet, req: &RangeReq<'_>) -> (usize, Iter<'z>) {
    let none = (0, z.range_by_rank(1, 0, false));
    let span = match req.span {
        Span::Rank(start, stop) => {
            return match rank_range(start, stop, z.len()) {
                Some((s, e)) => (e - s + 1, z.range_by_rank(s, e, req.rev)),
                None => none,
            };
        }
        Span::Score(min, max) => z.score_span(min, max),
        Span::Lex(min, max) => lex_span(z, min, max),
    };
    // Redis skips `offset` entries before it looks at `limit`; a negative offset walks
    // past the end, and a zero limit returns nothing.
    if req.offset < 0 || req.limit == 0 {
        return none;
    }
    let offset = usize::try_from(req.offset).unwrap_or(usize::MAX);
    let avail = span.len();
    if offset >= avail {
        return none;
    }
    let mut n = avail - offset;
    if req.limit > 0 {
        n = n.min(usize::try_from(req.limit).unwrap_or(usize::MAX));
    }
    let first = if req.rev {
        // Descending from ascending rank `span.end - 1`, counted from the top.
        z.len() - span.end + offset
    } else {
        span.start + offset
    };
    (n, z.range_by_rank(first, first + n - 1, req.rev))
}

/// ZRANGE and the legacy range commands: the reply for the key at argument 1.
fn range_command(
    db: &mut Db,
    now: u64,
    a: &dyn ArgList,
    by: Option<By>,
    rev: Option<bool>,
) -> OpResult {
    let req = match parse_range(a, 1, false, by, rev) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let z = match db.read_zset(a.arg(1), now) {
        Ok(Some(z)) => z,
        Ok(None) => return empty_array(),
        Err(w) => return w.into(),
    };
    let (n, it) = select(z, &req);
    range_reply(n, it, req.withscores)
}

/// ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]
pub fn zrange(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    range_command(db, now, a, None, None)
}

/// ZREVRANGE key start stop [WITHSCORES]
pub fn zrevrange(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    range_command(db, now, a, Some(By::Rank), Some(true))
}

/// ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]
pub fn zrangebyscore(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    range_command(db, now, a, Some(By::Score), Some(false))
}

/// ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]
pub fn zrevrangebyscore(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    range_command(db, now, a, Some(By::Score), Some(true))
}

/// ZRANGEBYLEX key min max [LIMIT offset count]
pub fn zrangebylex(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    range_command(db, now, a, Some(By::Lex), Some(false))
}

/// ZREVRANGEBYLEX key max min [LIMIT offset count]
pub fn zrevrangebylex(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    range_command(db, now, a, Some(By::Lex), Some(true))
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]: the range
/// replaces `dst` (whatever it held, its TTL dropped), or deletes it when empty.
pub fn zrangestore(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let req = match parse_range(a, 2, true, None, None) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let result = match db.read_zset(a.arg(2), now) {
        Err(w) => return w.into(),
        Ok(None) => None,
        Ok(Some(z)) => {
            let (n, it) = select(z, &req);
            if n == 0 {
                None
            } else {
                // Built as Redis builds it: a fresh listpack that converts as it grows.
                let Obj::ZSet(mut out) = Obj::new_zset() else {
                    return err("ERR internal: not a sorted set");
                };
                for (m, s) in it {
                    if out.insert(m, s).is_err() {
                        return err(TOO_LARGE);
                    }
                }
                Some(out)
            }
        }
    };
    let dst = a.arg(1);
    match result {
        Some(out) => {
            let n = out.len() as i64;
            // Notified as "zrangestore" (see `notify::name_for`).
            db.write_owned(dst, Owned::Object(Box::new(Obj::ZSet(out))), 0, now);
            OpResult::Int(n)
        }
        None => {
            db.remove(dst, now);
            OpResult::Int(0)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Range removals.

fn zremrange(db: &mut Db, now: u64, a: &dyn ArgList, by: By) -> OpResult {
    let span = match by {
        By::Rank => match (parse_int(a.arg(2)), parse_int(a.arg(3))) {
            (Some(start), Some(stop)) => Span::Rank(start, stop),
            _ => return err(NOT_INT),
        },
        By::Score => match parse_score_range(a.arg(2), a.arg(3)) {
            Ok((min, max)) => Span::Score(min, max),
            Err(e) => return e,
        },
        By::Lex => match parse_lex_range(a.arg(2), a.arg(3)) {
            Ok((min, max)) => Span::Lex(min, max),
            Err(e) => return e,
        },
    };
    let event = match by {
        By::Rank => "zremrangebyrank",
        By::Score => "zremrangebyscore",
        By::Lex => "zremrangebylex",
    };
    let r = db.edit_zset(a.arg(1), now, false, a, |z| {
        let range = match span {
            Span::Rank(start, stop) => match rank_range(start, stop, z.len()) {
                Some((s, e)) => s..e + 1,
                None => 0..0,
            },
            Span::Score(min, max) => z.score_span(min, max),
            Span::Lex(min, max) => lex_span(z, min, max),
        };
        if range.is_empty() {
            return Edit::unchanged(0);
        }
        let n = z.remove_rank_range(range.start, range.end) as i64;
        if n > 0 {
            Edit::changed(n, event)
        } else {
            Edit::unchanged(0)
        }
    });
    match r {
        Ok(n) => OpResult::Int(n.unwrap_or(0)),
        Err(w) => w.into(),
    }
}

pub fn zremrangebyrank(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    zremrange(db, now, a, By::Rank)
}

pub fn zremrangebyscore(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    zremrange(db, now, a, By::Score)
}

pub fn zremrangebylex(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    zremrange(db, now, a, By::Lex)
}

// ---------------------------------------------------------------------------------------
// Pops.

/// Removes up to `count` entries from the low (`max` false) or high end of `z` and
/// returns them in pop order. O(count + log n).
pub(crate) fn pop_ends(z: &mut ZSet, count: usize, max: bool) -> Vec<(Bytes, f64)> {
    let len = z.len();
    let k = count.min(len);
    if k == 0 {
        return Vec::new();
    }
    let popped: Vec<(Bytes, f64)> = z
        .range_by_rank(0, k - 1, max)
        .map(|(m, s)| (Bytes::copy_from_slice(m), s))
        .collect();
    if max {
        z.remove_rank_range(len - k, len);
    } else {
        z.remove_rank_range(0, k);
    }
    popped
}

/// ZPOPMIN / ZPOPMAX key [count]. Journaled as given (also the blocking pops' rewrite
/// `ZPOPMIN key n`): the same state pops the same members.
fn zpop(db: &mut Db, now: u64, a: &dyn ArgList, max: bool) -> OpResult {
    if a.len() > 3 {
        return err(SYNTAX);
    }
    let count = if a.len() == 3 {
        match parse_int(a.arg(2)) {
            Some(n) if n >= 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => return err(NOT_POSITIVE),
        }
    } else {
        None
    };
    let event = if max { "zpopmax" } else { "zpopmin" };
    let r = db.edit_zset(a.arg(1), now, false, a, |z| {
        let popped = pop_ends(z, count.unwrap_or(1), max);
        if popped.is_empty() {
            Edit::unchanged(popped)
        } else {
            Edit::changed(popped, event)
        }
    });
    let popped = match r {
        Ok(p) => p.unwrap_or_default(),
        Err(w) => return w.into(),
    };
    let mut flat = Vec::with_capacity(popped.len() * 2);
    for (m, s) in popped {
        flat.push(Resp::Bulk(m));
        flat.push(score_value(s));
    }
    if count.is_some() {
        // Pairs in RESP3, as Redis replies with a count.
        OpResult::Pairs(flat)
    } else {
        OpResult::Reply(Resp::Array(flat))
    }
}

pub fn zpopmin(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    zpop(db, now, a, false)
}

pub fn zpopmax(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    zpop(db, now, a, true)
}

// ---------------------------------------------------------------------------------------
// ZRANDMEMBER and ZSCAN.

/// ZRANDMEMBER key [count [WITHSCORES]]. A negative count may repeat members (and costs
/// what the client asked for, capped); a positive one returns distinct members, all of
/// them (highest first, as Redis iterates) when it reaches the size.
pub fn zrandmember(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    if a.len() == 2 {
        return match db.read_zset(a.arg(1), now) {
            Ok(Some(z)) if !z.is_empty() => OpResult::Value(
                z.get_index(below(z.len()))
                    .map(|(m, _)| Bytes::copy_from_slice(m)),
            ),
            Ok(_) => OpResult::Value(None),
            Err(w) => w.into(),
        };
    }
    let l = match parse_int(a.arg(2)) {
        Some(i64::MIN) => {
            return err(
                "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
            )
        }
        Some(l) => l,
        None => return err(NOT_INT),
    };
    if a.len() > 4 || (a.len() == 4 && !a.is(3, "WITHSCORES")) {
        return err(SYNTAX);
    }
    let withscores = a.len() == 4;
    if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&l) {
        return err("ERR value is out of range");
    }
    if l < 0 && l.unsigned_abs() > super::MAX_RANDOM_REPLY {
        return super::random_reply_too_long();
    }
    let z = match db.read_zset(a.arg(1), now) {
        Ok(Some(z)) if !z.is_empty() => z,
        Ok(_) => return empty_array(),
        Err(w) => return w.into(),
    };
    let count = usize::try_from(l.unsigned_abs()).unwrap_or(usize::MAX);
    if count == 0 {
        return empty_array();
    }
    let len = z.len();
    let per = if withscores { 2 } else { 1 };
    let mut out: Vec<Resp> = Vec::new();
    let push = |out: &mut Vec<Resp>, (m, s): (&[u8], f64)| {
        out.push(bulk(m));
        if withscores {
            out.push(score_value(s));
        }
    };
    // A compact set finds a position by walking its records: walk them once, not once per
    // pick (its size is whatever zset-max-listpack-entries allows). Its order is rank order.
    let flat: Option<Vec<(&[u8], f64)>> = (z.encoding() == "listpack").then(|| z.iter().collect());
    let at = |i: usize| match &flat {
        Some(f) => f.get(i).copied(),
        None => z.get_index(i),
    };
    if l < 0 || count == 1 {
        // Independent picks; the reply grows as it fills (not reserved up front).
        out.reserve(count.min(1024) * per);
        for _ in 0..count {
            if let Some(e) = at(below(len)) {
                push(&mut out, e);
            }
        }
    } else if count >= len {
        // The whole set, in Redis's iteration order (from the highest).
        out.reserve(len * per);
        for e in z.range_by_rank(0, len - 1, true) {
            push(&mut out, e);
        }
    } else {
        let mut picked: Vec<usize> = if count * 3 > len {
            // Partial Fisher-Yates over all positions: O(len), and len < 3 * count.
            let mut all: Vec<usize> = (0..len).collect();
            for i in 0..count {
                let j = i + below(len - i);
                all.swap(i, j);
            }
            all.truncate(count);
            all
        } else {
            // Few out of many: draw until enough distinct, expected O(count).
            let mut seen = hashbrown::HashSet::with_capacity(count);
            let mut v = Vec::with_capacity(count);
            while v.len() < count {
                let i = below(len);
                if seen.insert(i) {
                    v.push(i);
                }
            }
            v
        };
        if z.encoding() == "listpack" {
            // Redis samples a listpack in its order.
            picked.sort_unstable();
        }
        out.reserve(count * per);
        for i in picked {
            if let Some(e) = at(i) {
                push(&mut out, e);
            }
        }
    }
    if withscores {
        OpResult::Pairs(out)
    } else {
        OpResult::Reply(Resp::Array(out))
    }
}

/// ZSCAN key cursor [MATCH pattern] [COUNT count]. A listpack comes back whole with
/// cursor 0, as in Redis; scores are bulk strings in both protocols. Like Redis, the
/// cursor is checked first, then the key, then the options.
pub fn zscan(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let Some(cursor) = scan::parse_cursor(a.arg(2)) else {
        return err("ERR invalid cursor");
    };
    let opts = scan::parse_opts(a, 3);
    let z = match db.read_zset(a.arg(1), now) {
        Ok(Some(z)) => z,
        Ok(None) => return scan::reply(0, Vec::new()),
        Err(w) => return w.into(),
    };
    let opts = match opts {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut items = Vec::new();
    let next = z.scan(cursor, opts.count, |m, s| {
        if opts.matches(m) {
            items.push(bulk(m));
            items.push(Resp::Bulk(Bytes::from(format_double(s))));
        }
    });
    scan::reply(next, items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::scan::parse_cursor;

    #[test]
    fn scores_parse_like_string2d() {
        for (text, want) in [
            ("1", 1.0),
            ("-1.5", -1.5),
            ("+2", 2.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e3", 1000.0),
            ("1E-2", 0.01),
            ("inf", f64::INFINITY),
            ("+inf", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
            ("0x10", 16.0),
            ("0X1p3", 8.0),
            ("0x1.8p1", 3.0),
            ("-0x.8", -0.5),
            ("1e-310", 1e-310),
        ] {
            assert_eq!(parse_score(text.as_bytes()), Some(want), "{text}");
        }
        for bad in [
            "", " 1", "1 ", "nan", "-nan", "NaN", "1e400", "-1e400", "1e-400", "abc", "1e", "1e+",
            "0x", "0x1p", ".", "-", "+", "in", "infinit", "1.2.3", "1\u{0}",
        ] {
            assert_eq!(parse_score(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn hex_floats_round_to_nearest_even() {
        // 2^53 + 1 rounds down to 2^53 (tie to even); 2^53 + 3 rounds up.
        assert_eq!(parse_score(b"0x20000000000001"), Some(9007199254740992.0));
        assert_eq!(parse_score(b"0x20000000000003"), Some(9007199254740996.0));
        // Beyond 16 hex digits the rest is sticky.
        assert_eq!(
            parse_score(b"0x200000000000010000001"),
            Some(9007199254740994.0 * 2f64.powi(28))
        );
        assert_eq!(parse_score(b"0x1p-1074"), Some(f64::from_bits(1)));
        assert_eq!(parse_score(b"0x1p-1075"), None, "underflows to zero");
        assert_eq!(parse_score(b"0x1.8p-1075"), Some(f64::from_bits(1)));
        assert_eq!(parse_score(b"0x1p1023"), Some(2f64.powi(1023)));
        assert_eq!(parse_score(b"0x1p1024"), None, "overflows");
        assert_eq!(
            parse_score(b"0x1.fffffffffffffp1023"),
            Some(f64::MAX),
            "the largest double"
        );
    }

    #[test]
    fn range_bounds_parse_like_zsl_parse_range() {
        let b = |s: &str| parse_score_bound(s.as_bytes());
        assert_eq!(b("1.5"), Some(Bound::Inclusive(1.5)));
        assert_eq!(b("(1.5"), Some(Bound::Exclusive(1.5)));
        assert_eq!(b("-inf"), Some(Bound::Inclusive(f64::NEG_INFINITY)));
        assert_eq!(b("(+inf"), Some(Bound::Exclusive(f64::INFINITY)));
        assert_eq!(b(""), Some(Bound::Inclusive(0.0)), "strtod of nothing is 0");
        assert_eq!(b("("), Some(Bound::Exclusive(0.0)));
        assert_eq!(b(" 7"), Some(Bound::Inclusive(7.0)), "strtod skips spaces");
        assert_eq!(b("1e400"), Some(Bound::Inclusive(f64::INFINITY)));
        assert_eq!(b("2\u{0}junk"), Some(Bound::Inclusive(2.0)), "a C string");
        for bad in [" ", "((1", "[1", "1 ", "nan", "(nan", "x", "-"] {
            assert_eq!(b(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lex_bounds_parse_like_redis() {
        assert_eq!(parse_lex_bound(b"-"), Some(LexBound::Min));
        assert_eq!(parse_lex_bound(b"+"), Some(LexBound::Max));
        assert_eq!(parse_lex_bound(b"+\0x"), Some(LexBound::Max));
        assert_eq!(parse_lex_bound(b"[a"), Some(LexBound::Inclusive(b"a")));
        assert_eq!(parse_lex_bound(b"("), Some(LexBound::Exclusive(b"")));
        for bad in [&b""[..], b"a", b"+a", b"-a", b"]"] {
            assert_eq!(parse_lex_bound(bad), None);
        }
        let mut z = ZSet::new(128, 64);
        for m in ["a", "b", "c", "d"] {
            z.insert(m.as_bytes(), 0.0).unwrap();
        }
        assert_eq!(lex_span(&z, LexBound::Min, LexBound::Max), 0..4);
        assert_eq!(lex_span(&z, LexBound::Max, LexBound::Max), 0..0);
        assert_eq!(lex_span(&z, LexBound::Min, LexBound::Min), 0..0);
        assert_eq!(
            lex_span(&z, LexBound::Exclusive(b"a"), LexBound::Inclusive(b"c")),
            1..3
        );
    }

    #[test]
    fn rank_ranges_normalize_like_redis() {
        assert_eq!(rank_range(0, -1, 5), Some((0, 4)));
        assert_eq!(rank_range(-3, -2, 5), Some((2, 3)));
        assert_eq!(rank_range(-100, 100, 5), Some((0, 4)));
        assert_eq!(rank_range(3, 2, 5), None);
        assert_eq!(rank_range(5, 10, 5), None);
        assert_eq!(rank_range(0, -6, 5), None);
        assert_eq!(rank_range(i64::MIN, i64::MAX, 5), Some((0, 4)));
        assert_eq!(rank_range(0, 0, 0), None);
    }

    #[test]
    fn cursors_parse_like_strtoul() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"12\0x"), Some(12));
        for bad in [&b" 1"[..], b"1 ", b"x", b"-", b"18446744073709551616"] {
            assert_eq!(parse_cursor(bad), None);
        }
    }

    #[test]
    fn pops_take_the_ends() {
        let mut z = ZSet::new(4, 64);
        for (i, m) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
            z.insert(m.as_bytes(), i as f64).unwrap();
        }
        let names = |v: Vec<(Bytes, f64)>| -> Vec<String> {
            v.into_iter()
                .map(|(m, _)| String::from_utf8(m.to_vec()).unwrap())
                .collect()
        };
        assert_eq!(names(pop_ends(&mut z, 2, false)), ["a", "b"]);
        assert_eq!(names(pop_ends(&mut z, 3, true)), ["f", "e", "d"]);
        assert_eq!(names(pop_ends(&mut z, 9, true)), ["c"]);
        assert!(z.is_empty());
        assert!(pop_ends(&mut z, 1, false).is_empty());
    }
}
