//! Sorted-set aggregates, with Redis 7.0's option rules, reply shapes, error texts and
//! keyspace events: ZUNION / ZINTER / ZDIFF (WITHSCORES), their STORE forms (WEIGHTS,
//! AGGREGATE SUM|MIN|MAX), ZINTERCARD (LIMIT) and ZMPOP (MIN|MAX, COUNT).
//!
//! Their keys are counted by `numkeys` (`Spec::numkeys`; the STORE forms also name the
//! destination at 1), and every one carries `.cross(run_across_shards)`: when the keys span
//! shards the same keyed function runs on a scratch copy of them inside a one-command
//! transaction. Plain sets take part as sorted sets whose scores are all 1, as in Redis.
//!
//! Costs: union and difference are O(total input · log), intersection walks the smallest
//! input once with an O(1) (indexed) or O(128) (compact) lookup per other input, and
//! ZINTERCARD with LIMIT stops at the limit. Results are sorted once; the STORE forms build
//! the destination by inserting in order into `ZSet::new(128, 64)` (so the encoding follows
//! Redis's thresholds) and write it whole (`Db::write_owned`), or delete the destination
//! when the result is empty. ZMPOP edits through `Db::edit_zset` and is journaled as
//! `ZPOPMIN|ZPOPMAX key n`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::ops::Range;

use bytes::Bytes;
use coreshard_engine::ttl::{Owned, Stored};
use coreshard_protocol::Value as Resp;
use hashbrown::HashMap;

use super::strings::{err, NOT_INT, SYNTAX};
use super::{parse_int, Spec, K1, NONE};
use crate::db::{Db, Edit, WrongType};
use crate::server::ops::{bulk_array, OpResult};
use crate::server::txn::run_across_shards;
use crate::server::ArgList;
use crate::types::{limits, Obj, Set, ZSet};

const ZSET: &str = "sorted-set";
const READ_MOVABLE: &[&str] = &["readonly", "movablekeys"];
const STORE_MOVABLE: &[&str] = &["write", "denyoom", "movablekeys"];
const WRITE_MOVABLE: &[&str] = &["write", "movablekeys"];

/// A result would not fit in one sorted set (4 GiB of members).
const TOO_LARGE: &str = "ERR sorted set too large";

/// The family's commands.
#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    Spec::keyed("zunion", -3, READ_MOVABLE, NONE, (ZSET, "6.2.0", "Add multiple sorted sets"), zunion).numkeys(1).cross(run_across_shards),
    Spec::keyed("zinter", -3, READ_MOVABLE, NONE, (ZSET, "6.2.0", "Intersect multiple sorted sets"), zinter).numkeys(1).cross(run_across_shards),
    Spec::keyed("zdiff", -3, READ_MOVABLE, NONE, (ZSET, "6.2.0", "Subtract multiple sorted sets"), zdiff).numkeys(1).cross(run_across_shards),
    Spec::keyed("zunionstore", -4, STORE_MOVABLE, K1, (ZSET, "2.0.0", "Add multiple sorted sets and store the resulting sorted set in a new key"), zunionstore).numkeys(2).cross(run_across_shards),
    Spec::keyed("zinterstore", -4, STORE_MOVABLE, K1, (ZSET, "2.0.0", "Intersect multiple sorted sets and store the resulting sorted set in a new key"), zinterstore).numkeys(2).cross(run_across_shards),
    Spec::keyed("zdiffstore", -4, STORE_MOVABLE, K1, (ZSET, "6.2.0", "Subtract multiple sorted sets and store the resulting sorted set in a new key"), zdiffstore).numkeys(2).cross(run_across_shards),
    Spec::keyed("zintercard", -3, READ_MOVABLE, NONE, (ZSET, "7.0.0", "Intersect multiple sorted sets and return the cardinality of the result"), zintercard).numkeys(1).cross(run_across_shards),
    Spec::keyed("zmpop", -4, WRITE_MOVABLE, NONE, (ZSET, "7.0.0", "Remove and return members with scores in a sorted set"), zmpop).numkeys(1).cross(run_across_shards),
];

// ---------------------------------------------------------------------------------------
// Inputs.

/// One input of an aggregate: a sorted set, or a set whose members all score 1.
#[derive(Clone, Copy)]
enum Input<'a> {
    Z(&'a ZSet),
    S(&'a Set),
}

impl<'a> Input<'a> {
    fn len(self) -> usize {
        match self {
            Input::Z(z) => z.len(),
            Input::S(s) => s.len(),
        }
    }

    /// The score of `m`, if a member.
    fn score(self, m: &[u8]) -> Option<f64> {
        match self {
            Input::Z(z) => z.score(m),
            Input::S(s) => s.contains(m).then_some(1.0),
        }
    }

    /// Every member with its score (sorted sets ascending, sets in their own order).
    fn entries(self) -> Box<dyn Iterator<Item = (Cow<'a, [u8]>, f64)> + 'a> {
        match self {
            Input::Z(z) => Box::new(z.iter().map(|(m, s)| (Cow::Borrowed(m), s))),
            Input::S(s) => Box::new(s.iter().map(|m| (m, 1.0))),
        }
    }
}

fn len_of(i: Option<Input<'_>>) -> usize {
    i.map_or(0, Input::len)
}

/// The sorted sets or sets at `keys` (absent keys as `None`), all borrowed at once. Keys
/// are checked in order and the first of another type answers WRONGTYPE (before any
/// option is judged, as in Redis). With `count`, each lookup counts as a keyspace hit or
/// miss (reads and the STORE forms' sources, as in Redis 7.0).
fn gather<'a>(
    db: &'a mut Db,
    now: u64,
    a: &dyn ArgList,
    keys: Range<usize>,
    count: bool,
) -> Result<Vec<Option<Input<'a>>>, WrongType> {
    for i in keys.clone() {
        // Also expires keys lazily, so the view below sees what a read sees.
        let found = if count {
            db.read(a.arg(i), now)
        } else {
            db.get(a.arg(i), now)
        };
        if let Some(v) = found {
            if !matches!(v, Stored::Object(Obj::ZSet(_) | Obj::Set(_))) {
                return Err(WrongType);
            }
        }
    }
    let map = db.keyspace();
    keys.map(|i| match map.peek(a.arg(i), now).map(|p| p.value) {
        None => Ok(None),
        Some(Stored::Object(Obj::ZSet(z))) => Ok(Some(Input::Z(z))),
        Some(Stored::Object(Obj::Set(s))) => Ok(Some(Input::S(s))),
        Some(_) => Err(WrongType),
    })
    .collect()
}

// ---------------------------------------------------------------------------------------
// Options.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Agg {
    Sum,
    Min,
    Max,
}

/// Redis's `zunionInterAggregate`, NaN rules included (a SUM of +inf and -inf is 0; a
/// NaN value never wins a MIN or MAX).
fn aggregate(target: &mut f64, val: f64, agg: Agg) {
    match agg {
        Agg::Sum => {
            *target += val;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Agg::Min => {
            if val < *target {
                *target = val;
            }
        }
        Agg::Max => {
            if val > *target {
                *target = val;
            }
        }
    }
}

/// How the command was called.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// ZUNION / ZINTER / ZDIFF: WITHSCORES allowed.
    Reply,
    /// The STORE forms.
    Store,
    /// ZINTERCARD: only LIMIT.
    Card,
}

struct Opts {
    weights: Vec<f64>,
    agg: Agg,
    withscores: bool,
    /// ZINTERCARD's LIMIT (0: none).
    limit: u64,
}

/// `numkeys` at `at`: an integer of at least 1, with that many arguments after it.
fn parse_numkeys(a: &dyn ArgList, at: usize, name: &str) -> Result<usize, OpResult> {
    let n = match parse_int(a.arg(at)) {
        None => return Err(err(NOT_INT)),
        Some(n) if n < 1 => {
            return Err(err(&format!(
                "ERR at least 1 input key is needed for '{name}' command"
            )))
        }
        Some(n) => n,
    };
    if n as u64 > (a.len() - at - 1) as u64 {
        return Err(err(SYNTAX));
    }
    Ok(n as usize)
}

/// The options after the keys (from `from`), as Redis's `zunionInterDiffGenericCommand`
/// reads them: WEIGHTS (one per key) and AGGREGATE except for ZDIFF and ZINTERCARD,
/// WITHSCORES only for the reply forms, LIMIT only for ZINTERCARD; any may repeat.
fn parse_opts(
    a: &dyn ArgList,
    from: usize,
    numkeys: usize,
    op: Op,
    form: Form,
) -> Result<Opts, OpResult> {
    let mut o = Opts {
        weights: vec![1.0; numkeys],
        agg: Agg::Sum,
        withscores: false,
        limit: 0,
    };
    let mut j = from;
    while j < a.len() {
        let remaining = a.len() - j;
        let weighed = op != Op::Diff && form != Form::Card;
        if weighed && remaining > numkeys && a.is(j, "WEIGHTS") {
            for (k, w) in o.weights.iter_mut().enumerate() {
                *w = parse_strtod(a.arg(j + 1 + k))
                    .ok_or_else(|| err("ERR weight value is not a float"))?;
            }
            j += 1 + numkeys;
        } else if weighed && remaining >= 2 && a.is(j, "AGGREGATE") {
            o.agg = if a.is(j + 1, "SUM") {
                Agg::Sum
            } else if a.is(j + 1, "MIN") {
                Agg::Min
            } else if a.is(j + 1, "MAX") {
                Agg::Max
            } else {
                return Err(err(SYNTAX));
            };
            j += 2;
        } else if form == Form::Reply && a.is(j, "WITHSCORES") {
            o.withscores = true;
            j += 1;
        } else if form == Form::Card && remaining >= 2 && a.is(j, "LIMIT") {
            o.limit = match parse_int(a.arg(j + 1)) {
                Some(n) if n >= 0 => n as u64,
                _ => return Err(err("ERR LIMIT can't be negative")),
            };
            j += 2;
        } else {
            return Err(err(SYNTAX));
        }
    }
    Ok(o)
}

/// C's `strtod` over the whole argument, as Redis's `getDoubleFromObject` uses it: no
/// leading space, nothing left over, not NaN, no overflow to ±HUGE_VAL nor underflow to
/// zero; "inf"/"infinity" (any case, signed) and hexadecimal floats ("0x1.8p1") accepted.
fn parse_strtod(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let v = if lower == "inf" || lower == "infinity" {
        f64::INFINITY
    } else if let Some(hex) = lower.strip_prefix("0x") {
        parse_hex_float(hex)?
    } else {
        let ok = body
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'));
        if !ok || body.starts_with(['+', '-']) {
            return None;
        }
        let v: f64 = body.parse().ok()?;
        let mantissa = body.split(['e', 'E']).next().unwrap_or("");
        if v.is_infinite() || (v == 0.0 && mantissa.bytes().any(|c| matches!(c, b'1'..=b'9'))) {
            return None; // ERANGE
        }
        v
    };
    Some(if neg { -v } else { v })
}

/// The part of a hexadecimal float after "0x": hex digits with an optional point, then an
/// optional binary exponent `p[+-]digits`.
fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = match s.split_once('p') {
        Some((m, e)) => (m, Some(e)),
        None => (s, None),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let digit = |c: char| c.to_digit(16).map(f64::from);
    let mut v = 0.0f64;
    for c in int.chars() {
        v = v * 16.0 + digit(c)?;
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        v += digit(c)? * scale;
        scale /= 16.0;
    }
    let e: i64 = match exp {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let n = digits.parse::<i64>().unwrap_or(i64::MAX).min(100_000);
            if e.starts_with('-') {
                -n
            } else {
                n
            }
        }
    };
    let nonzero = v != 0.0;
    let mut e = e;
    while e > 0 && v.is_finite() {
        let step = e.min(1000);
        v *= 2f64.powi(step as i32);
        e -= step;
    }
    while e < 0 && v != 0.0 {
        let step = e.max(-1000);
        v *= 2f64.powi(step as i32);
        e -= step;
    }
    if v.is_infinite() || (nonzero && v == 0.0) {
        return None; // ERANGE
    }
    Some(v)
}

// ---------------------------------------------------------------------------------------
// Computing.

/// Entries ordered as a sorted set orders them: by score (`-0` equal to `0`), then by
/// member bytes.
fn entry_order(x: &(Cow<'_, [u8]>, f64), y: &(Cow<'_, [u8]>, f64)) -> Ordering {
    if x.1 < y.1 {
        Ordering::Less
    } else if x.1 > y.1 {
        Ordering::Greater
    } else {
        x.0.cmp(&y.0)
    }
}

/// Input positions ordered by size, smallest first (Redis sorts ZUNION/ZINTER inputs so;
/// the order of a SUM's additions follows it).
fn by_size(inputs: &[Option<Input<'_>>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| len_of(inputs[i]));
    order
}

/// Visit the members of the intersection with their aggregated scores (in the order of
/// the smallest input); `f` returns false to stop.
fn for_each_common<'a>(
    inputs: &[Option<Input<'a>>],
    weights: &[f64],
    agg: Agg,
    mut f: impl FnMut(Cow<'a, [u8]>, f64) -> bool,
) {
    let order = by_size(inputs);
    let Some(&first) = order.first() else {
        return;
    };
    let Some(smallest) = inputs[first].filter(|i| i.len() > 0) else {
        return;
    };
    // Every other input is at least as large, so present and non-empty.
    let others: Vec<(Input<'a>, f64)> = order[1..]
        .iter()
        .filter_map(|&i| inputs[i].map(|inp| (inp, weights[i])))
        .collect();
    if others.len() + 1 < inputs.len() {
        return;
    }
    for (m, s) in smallest.entries() {
        let mut score = weights[first] * s;
        if score.is_nan() {
            score = 0.0;
        }
        let mut everywhere = true;
        for (inp, w) in &others {
            match inp.score(&m) {
                Some(v) => aggregate(&mut score, v * w, agg),
                None => {
                    everywhere = false;
                    break;
                }
            }
        }
        if everywhere && !f(m, score) {
            return;
        }
    }
}

/// The result of `op` over `inputs` (absent keys are empty), sorted as a sorted set.
/// `same_as_first[i]`: input `i` is the first input's key again (ZDIFF then is empty).
fn compute<'a>(
    op: Op,
    inputs: &[Option<Input<'a>>],
    opts: &Opts,
    same_as_first: impl Fn(usize) -> bool,
) -> Vec<(Cow<'a, [u8]>, f64)> {
    let mut out: Vec<(Cow<'a, [u8]>, f64)> = Vec::new();
    match op {
        Op::Inter => for_each_common(inputs, &opts.weights, opts.agg, |m, s| {
            out.push((m, s));
            true
        }),
        Op::Union => {
            let order = by_size(inputs);
            let largest = order.last().map_or(0, |&i| len_of(inputs[i]));
            let mut acc: HashMap<Cow<'a, [u8]>, f64> = HashMap::with_capacity(largest);
            for &i in &order {
                let Some(inp) = inputs[i] else { continue };
                let w = opts.weights[i];
                for (m, s) in inp.entries() {
                    let mut score = w * s;
                    if score.is_nan() {
                        score = 0.0;
                    }
                    match acc.get_mut(&m) {
                        Some(t) => aggregate(t, score, opts.agg),
                        None => {
                            acc.insert(m, score);
                        }
                    }
                }
            }
            out = acc.into_iter().collect();
        }
        Op::Diff => {
            let Some(Some(first)) = inputs.first().copied() else {
                return out;
            };
            if (1..inputs.len()).any(|i| inputs[i].is_some() && same_as_first(i)) {
                return out;
            }
            let rest: Vec<Input<'a>> = inputs[1..].iter().flatten().copied().collect();
            // Redis's choice: test each member of the first against the others
            // (first × inputs / 2), or remove the others' members from a copy of the
            // first (total size), whichever is less work.
            let one = inputs.len() as u64 * first.len() as u64 / 2;
            let two: u64 = inputs.iter().map(|i| len_of(*i) as u64).sum();
            if one <= two {
                out.extend(
                    first
                        .entries()
                        .filter(|(m, _)| rest.iter().all(|r| r.score(m).is_none())),
                );
            } else {
                let mut left: HashMap<Cow<'a, [u8]>, f64> = first.entries().collect();
                for r in &rest {
                    for (m, _) in r.entries() {
                        left.remove(&m);
                    }
                    if left.is_empty() {
                        break;
                    }
                }
                out = left.into_iter().collect();
            }
        }
    }
    out.sort_unstable_by(entry_order);
    out
}

/// The shared part of ZUNION / ZINTER / ZDIFF and their STORE forms: `numkeys` at `at`.
fn run(db: &mut Db, now: u64, a: &dyn ArgList, op: Op, form: Form, name: &str) -> OpResult {
    let at = if form == Form::Store { 2 } else { 1 };
    let numkeys = match parse_numkeys(a, at, name) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let keys = at + 1..at + 1 + numkeys;
    let built = {
        let inputs = match gather(db, now, a, keys.clone(), true) {
            Ok(i) => i,
            Err(w) => return w.into(),
        };
        let opts = match parse_opts(a, keys.end, numkeys, op, form) {
            Ok(o) => o,
            Err(e) => return e,
        };
        let same = |i: usize| a.arg(keys.start + i) == a.arg(keys.start);
        let entries = compute(op, &inputs, &opts, same);
        if form == Form::Reply {
            return if opts.withscores {
                let mut flat = Vec::with_capacity(entries.len() * 2);
                for (m, s) in entries {
                    flat.push(Resp::Bulk(Bytes::from(m.into_owned())));
                    flat.push(Resp::Double(s));
                }
                OpResult::Pairs(flat)
            } else {
                bulk_array(entries.len(), entries.iter().map(|(m, _)| &m[..]))
            };
        }
        let (max_entries, max_len) = limits::zset();
        match ZSet::from_sorted(&entries, max_entries, max_len) {
            Some(Ok(z)) => z,
            Some(Err(_)) => return err(TOO_LARGE),
            None => {
                let mut z = ZSet::new(max_entries, max_len);
                for (m, s) in &entries {
                    if z.insert(m, *s).is_err() {
                        return err(TOO_LARGE);
                    }
                }
                z
            }
        }
    };
    let dst = a.arg(1);
    let n = built.len() as i64;
    if built.is_empty() {
        db.remove(dst, now);
    } else {
        // Notified as the command's own event (see `notify::name_for`).
        db.write_owned(
            dst,
            Owned::Object(Box::new(Obj::ZSet(Box::new(built)))),
            0,
            now,
        );
    }
    OpResult::Int(n)
}

// ---------------------------------------------------------------------------------------
// Commands.

/// ZUNION numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]
pub fn zunion(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run(db, now, a, Op::Union, Form::Reply, "zunion")
}

/// ZINTER numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]
pub fn zinter(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run(db, now, a, Op::Inter, Form::Reply, "zinter")
}

/// ZDIFF numkeys key [key ...] [WITHSCORES]
pub fn zdiff(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run(db, now, a, Op::Diff, Form::Reply, "zdiff")
}

/// ZUNIONSTORE destination numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE ...]
pub fn zunionstore(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run(db, now, a, Op::Union, Form::Store, "zunionstore")
}

/// ZINTERSTORE destination numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE ...]
pub fn zinterstore(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run(db, now, a, Op::Inter, Form::Store, "zinterstore")
}

/// ZDIFFSTORE destination numkeys key [key ...]
pub fn zdiffstore(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run(db, now, a, Op::Diff, Form::Store, "zdiffstore")
}

/// ZINTERCARD numkeys key [key ...] [LIMIT limit] (0: no limit); stops at the limit.
pub fn zintercard(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let numkeys = match parse_numkeys(a, 1, "zintercard") {
        Ok(n) => n,
        Err(e) => return e,
    };
    let keys = 2..2 + numkeys;
    let inputs = match gather(db, now, a, keys.clone(), true) {
        Ok(i) => i,
        Err(w) => return w.into(),
    };
    let opts = match parse_opts(a, keys.end, numkeys, Op::Inter, Form::Card) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut n: u64 = 0;
    for_each_common(&inputs, &opts.weights, Agg::Sum, |_, _| {
        n += 1;
        opts.limit == 0 || n < opts.limit
    });
    OpResult::Int(n as i64)
}

/// ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]: pops up to `count` members from the
/// first non-empty sorted set; `[key, [[member, score], ...]]`, or a null array.
pub fn zmpop(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let numkeys = match parse_int(a.arg(1)) {
        Some(n) if n > 0 => n as u64,
        _ => return err("ERR numkeys should be greater than 0"),
    };
    let where_at = numkeys.saturating_add(2);
    if where_at >= a.len() as u64 {
        return err(SYNTAX);
    }
    let where_at = where_at as usize;
    let max = if a.is(where_at, "MIN") {
        false
    } else if a.is(where_at, "MAX") {
        true
    } else {
        return err(SYNTAX);
    };
    let mut count: Option<u64> = None;
    let mut j = where_at + 1;
    while j < a.len() {
        if count.is_none() && a.is(j, "COUNT") && j + 1 < a.len() {
            count = match parse_int(a.arg(j + 1)) {
                Some(n) if n > 0 => Some(n as u64),
                _ => return err("ERR count should be greater than 0"),
            };
            j += 2;
        } else {
            return err(SYNTAX);
        }
    }
    let count = count.unwrap_or(1);
    // The first key that exists decides: a sorted set pops, another type is WRONGTYPE.
    let mut found = None;
    for i in 2..where_at {
        match db.get(a.arg(i), now) {
            None => continue,
            Some(Stored::Object(Obj::ZSet(_))) => {
                found = Some(i);
                break;
            }
            Some(_) => return WrongType.into(),
        }
    }
    let Some(i) = found else {
        return OpResult::NullArray;
    };
    let key = a.arg_bytes(i);
    let (name, event): (&'static [u8], _) = if max {
        (b"ZPOPMAX", "zpopmax")
    } else {
        (b"ZPOPMIN", "zpopmin")
    };
    let popped = db.edit_zset(&key, now, false, a, |z| {
        let len = z.len();
        let n = usize::try_from(count).unwrap_or(usize::MAX).min(len);
        let out: Vec<Resp> = z
            .range_by_rank(0, n.saturating_sub(1), max)
            .take(n)
            .map(|(m, s)| Resp::Array(vec![Resp::Bulk(Bytes::copy_from_slice(m)), Resp::Double(s)]))
            .collect();
        if n == 0 {
            return Edit::unchanged(out);
        }
        if max {
            z.remove_rank_range(len - n, len);
        } else {
            z.remove_rank_range(0, n);
        }
        let log = vec![
            Bytes::from_static(name),
            key.clone(),
            Bytes::from(n.to_string()),
        ];
        Edit::logged(out, event, log)
    });
    match popped {
        Err(w) => w.into(),
        Ok(None) => OpResult::NullArray,
        Ok(Some(items)) => OpResult::Reply(Resp::Array(vec![Resp::Bulk(key), Resp::Array(items)])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_like_strtod() {
        assert_eq!(parse_strtod(b"1.5"), Some(1.5));
        assert_eq!(parse_strtod(b"-2"), Some(-2.0));
        assert_eq!(parse_strtod(b"+.5"), Some(0.5));
        assert_eq!(parse_strtod(b"5."), Some(5.0));
        assert_eq!(parse_strtod(b"1e3"), Some(1000.0));
        assert_eq!(parse_strtod(b"1E+3"), Some(1000.0));
        assert_eq!(parse_strtod(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_strtod(b"-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_strtod(b"0x10"), Some(16.0));
        assert_eq!(parse_strtod(b"0x1.8p1"), Some(3.0));
        assert_eq!(parse_strtod(b"-0X.8"), Some(-0.5));
        assert_eq!(parse_strtod(b"0x1p-2"), Some(0.25));
        assert_eq!(parse_strtod(b"0"), Some(0.0));
        assert_eq!(parse_strtod(b"0e400"), Some(0.0));
        assert_eq!(parse_strtod(b"4e-320"), Some(4e-320), "subnormal");
        for bad in [
            &b""[..],
            b" 1",
            b"1 ",
            b"nan",
            b"-nan",
            b"1e400",
            b"1e-400",
            b"0x1p99999",
            b"0x",
            b"0x1p",
            b"0xg",
            b"abc",
            b"1e",
            b".",
            b"--1",
            b"+-1",
            b"1,5",
            b"inff",
            b"1\x00",
        ] {
            assert_eq!(
                parse_strtod(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn aggregate_keeps_redis_nan_rules() {
        let mut t = f64::INFINITY;
        aggregate(&mut t, f64::NEG_INFINITY, Agg::Sum);
        assert_eq!(t, 0.0);
        let mut t = 1.0;
        aggregate(&mut t, f64::NAN, Agg::Min);
        assert_eq!(t, 1.0);
        aggregate(&mut t, f64::NAN, Agg::Max);
        assert_eq!(t, 1.0);
        aggregate(&mut t, 3.0, Agg::Max);
        assert_eq!(t, 3.0);
        aggregate(&mut t, -3.0, Agg::Min);
        assert_eq!(t, -3.0);
    }

    fn zset_of(entries: &[(&str, f64)]) -> ZSet {
        let mut z = {
            let (e, l) = limits::zset();
            ZSet::new(e, l)
        };
        for (m, s) in entries {
            z.insert(m.as_bytes(), *s).unwrap();
        }
        z
    }

    fn set_of(members: &[&str]) -> Set {
        let mut s = Set::new();
        for m in members {
            s.insert(m.as_bytes()).unwrap();
        }
        s
    }

    fn strings(v: &[(Cow<'_, [u8]>, f64)]) -> Vec<(String, f64)> {
        v.iter()
            .map(|(m, s)| (String::from_utf8_lossy(m).into_owned(), *s))
            .collect()
    }

    fn opts(n: usize, weights: &[f64], agg: Agg) -> Opts {
        let mut w = vec![1.0; n];
        w[..weights.len()].copy_from_slice(weights);
        Opts {
            weights: w,
            agg,
            withscores: false,
            limit: 0,
        }
    }

    #[test]
    fn aggregates_match_redis() {
        let z1 = zset_of(&[("a", 1.0), ("b", 2.0), ("c", 3.0)]);
        let z2 = zset_of(&[("b", 10.0), ("c", -1.0), ("d", 4.0)]);
        let s = set_of(&["c", "d", "e"]);
        let ins = [Some(Input::Z(&z1)), Some(Input::Z(&z2)), Some(Input::S(&s))];
        let never = |_| false;
        let o = opts(3, &[], Agg::Sum);
        assert_eq!(
            strings(&compute(Op::Union, &ins, &o, never)),
            [
                ("a".into(), 1.0),
                ("e".into(), 1.0),
                ("c".into(), 3.0),
                ("d".into(), 5.0),
                ("b".into(), 12.0)
            ]
        );
        assert_eq!(
            strings(&compute(Op::Inter, &ins, &o, never)),
            [("c".into(), 3.0)]
        );
        let o = opts(3, &[2.0, 1.0, 5.0], Agg::Min);
        assert_eq!(
            strings(&compute(Op::Inter, &ins, &o, never)),
            [("c".into(), -1.0)]
        );
        let o = opts(3, &[2.0, 1.0, 5.0], Agg::Max);
        assert_eq!(
            strings(&compute(Op::Union, &ins, &o, never)),
            [
                ("a".into(), 2.0),
                ("d".into(), 5.0),
                ("e".into(), 5.0),
                ("c".into(), 6.0),
                ("b".into(), 10.0)
            ]
        );
        let o = opts(3, &[], Agg::Sum);
        assert_eq!(
            strings(&compute(Op::Diff, &ins, &o, never)),
            [("a".into(), 1.0)]
        );
        let with_absent = [Some(Input::Z(&z1)), None];
        let o = opts(2, &[], Agg::Sum);
        assert!(compute(Op::Inter, &with_absent, &o, never).is_empty());
        assert_eq!(compute(Op::Diff, &with_absent, &o, never).len(), 3);
        assert_eq!(compute(Op::Union, &with_absent, &o, never).len(), 3);
        assert!(compute(Op::Diff, &[None, Some(Input::Z(&z1))], &o, never).is_empty());
        let same = [Some(Input::Z(&z1)), Some(Input::Z(&z1))];
        assert!(compute(Op::Diff, &same, &o, |i| i == 1).is_empty());
        // 0 × inf is NaN, which counts as 0.
        let inf = zset_of(&[("x", f64::INFINITY)]);
        let o = opts(1, &[0.0], Agg::Sum);
        assert_eq!(
            strings(&compute(Op::Union, &[Some(Input::Z(&inf))], &o, never)),
            [("x".into(), 0.0)]
        );
    }

    #[test]
    fn diff_takes_either_path() {
        // A big first set against a small other (test each member), and a small first set
        // against big others (remove from a copy): the same answer.
        let big: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
        let mut zbig = {
            let (e, l) = limits::zset();
            ZSet::new(e, l)
        };
        for (i, m) in big.iter().enumerate() {
            zbig.insert(m.as_bytes(), i as f64).unwrap();
        }
        let small = zset_of(&[("m1", 0.0), ("m3", 0.0), ("zz", 9.0)]);
        let o = opts(3, &[], Agg::Sum);
        let never = |_| false;
        let d = compute(
            Op::Diff,
            &[
                Some(Input::Z(&small)),
                Some(Input::Z(&zbig)),
                Some(Input::Z(&zbig)),
            ],
            &o,
            never,
        );
        assert_eq!(strings(&d), [("zz".into(), 9.0)]);
        let o = opts(2, &[], Agg::Sum);
        let d = compute(
            Op::Diff,
            &[Some(Input::Z(&zbig)), Some(Input::Z(&small))],
            &o,
            never,
        );
        assert_eq!(d.len(), 998);
        assert_eq!(strings(&d[..2]), [("m0".into(), 0.0), ("m2".into(), 2.0)]);
    }

    #[test]
    fn negative_zero_sorts_with_zero() {
        let v = vec![
            (Cow::Borrowed(&b"b"[..]), 0.0),
            (Cow::Borrowed(&b"a"[..]), -0.0),
            (Cow::Borrowed(&b"c"[..]), -1.0),
        ];
        let mut v = v;
        v.sort_unstable_by(entry_order);
        assert_eq!(
            v.iter().map(|(m, _)| m.to_vec()).collect::<Vec<_>>(),
            [b"c".to_vec(), b"a".to_vec(), b"b".to_vec()]
        );
    }
}
