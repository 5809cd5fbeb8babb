//! The set family, with Redis 7.0's option rules, reply shapes, error texts and keyspace
//! events. Each keyed function runs on the shard that owns all its keys; the multi-key
//! forms (SMOVE, SINTER...) carry `.cross(run_across_shards)`, so when their keys span
//! shards they run unchanged on a scratch copy of those keys inside a one-command
//! transaction.
//!
//! Writes go through `Db::edit_set` (journaled as the command itself, or as a
//! deterministic rewrite for random choices: SPOP becomes SREM of what it popped, SMOVE an
//! SREM and an SADD in one atomic group). The STORE forms replace the destination as a
//! whole value (`Db::write_owned`) or remove it when the result is empty.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;

use bytes::Bytes;
use coreshard_engine::ttl::{Owned, Stored};
use coreshard_protocol::Value as Resp;

use super::scan;
use super::strings::{err, NOT_INT, SYNTAX};
use super::{parse_int, Spec, K1, K12, KALL, R, RF, W, WDF, WF};
use crate::db::{Db, Edit, WrongType};
use crate::server::ops::OpResult;
use crate::server::txn::run_across_shards;
use crate::server::ArgList;
use crate::types::{Obj, Set};

const SET: &str = "set";
/// SINTERCARD's keys are `numkeys` arguments from position 2. The spec's (first, last,
/// step) cannot say "numkeys of them", so it names every argument from 2 on: a superset
/// (a trailing `LIMIT n` is taken for two more keys), enough to route and lock correctly.
const READ_MOVABLE: &[&str] = &["readonly", "movablekeys"];

/// Redis's `shared.outofrangeerr`.
const NOT_POSITIVE: &str = "ERR value is out of range, must be positive";
/// A set's storage would exceed what one value may hold (4 GiB of members).
const TOO_LARGE: &str = "ERR set too large";

/// The family's commands.
#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    Spec::keyed("sadd", -3, WDF, K1, (SET, "1.0.0", "Add one or more members to a set"), sadd),
    Spec::keyed("srem", -3, WF, K1, (SET, "1.0.0", "Remove one or more members from a set"), srem),
    Spec::keyed("smembers", 2, R, K1, (SET, "1.0.0", "Get all the members in a set"), smembers),
    Spec::keyed("sismember", 3, RF, K1, (SET, "1.0.0", "Determine if a given value is a member of a set"), sismember),
    Spec::keyed("smismember", -3, RF, K1, (SET, "6.2.0", "Returns the membership associated with the given elements for a set"), smismember),
    Spec::keyed("scard", 2, RF, K1, (SET, "1.0.0", "Get the number of members in a set"), scard),
    Spec::keyed("spop", -2, WF, K1, (SET, "1.0.0", "Remove and return one or multiple random members from a set"), spop),
    Spec::keyed("srandmember", -2, R, K1, (SET, "1.0.0", "Get one or multiple random members from a set"), srandmember),
    Spec::keyed("smove", 4, WF, K12, (SET, "1.0.0", "Move a member from one set to another"), smove).cross(run_across_shards),
    Spec::keyed("sinter", -2, R, KALL, (SET, "1.0.0", "Intersect multiple sets"), sinter).cross(run_across_shards),
    Spec::keyed("sintercard", -3, READ_MOVABLE, (0, 0, 0), (SET, "7.0.0", "Intersect multiple sets and return the cardinality of the result"), sintercard).numkeys(1).cross(run_across_shards),
    Spec::keyed("sunion", -2, R, KALL, (SET, "1.0.0", "Add multiple sets"), sunion).cross(run_across_shards),
    Spec::keyed("sdiff", -2, R, KALL, (SET, "1.0.0", "Subtract multiple sets"), sdiff).cross(run_across_shards),
    Spec::keyed("sinterstore", -3, W, KALL, (SET, "1.0.0", "Intersect multiple sets and store the resulting set in a key"), sinterstore).cross(run_across_shards),
    Spec::keyed("sunionstore", -3, W, KALL, (SET, "1.0.0", "Add multiple sets and store the resulting set in a key"), sunionstore).cross(run_across_shards),
    Spec::keyed("sdiffstore", -3, W, KALL, (SET, "1.0.0", "Subtract multiple sets and store the resulting set in a key"), sdiffstore).cross(run_across_shards),
    Spec::keyed("sscan", -3, R, K1, (SET, "2.8.0", "Incrementally iterate Set elements"), sscan),
];

// ---------------------------------------------------------------------------------------
// Helpers.

thread_local! {
    /// Per-shard xorshift state for SPOP / SRANDMEMBER (SPOP journals what it chose, so
    /// replay does not depend on it).
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x5e7_u64) | 1
}

/// A pseudo-random number in `0..n` (`n > 0`).
fn rand_below(n: usize) -> usize {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        (x % n as u64) as usize
    })
}

fn bulk(m: &[u8]) -> Resp {
    Resp::Bulk(Bytes::copy_from_slice(m))
}

fn bulk_cow(m: Cow<'_, [u8]>) -> Resp {
    match m {
        Cow::Owned(v) => Resp::Bulk(Bytes::from(v)),
        Cow::Borrowed(b) => bulk(b),
    }
}

/// Every member of `s`, as a RESP3 set (an array in RESP2).
fn members_reply(s: &Set) -> Resp {
    Resp::Set(s.iter().map(bulk_cow).collect())
}

fn empty_set() -> OpResult {
    OpResult::Reply(Resp::Set(Vec::new()))
}

fn empty_array() -> OpResult {
    OpResult::Reply(Resp::Array(Vec::new()))
}

/// The sets at `keys` (absent keys as `None`), all borrowed at once. With `count`, each
/// lookup counts as a keyspace hit or miss (reads and the STORE forms' sources, as in
/// Redis 7.0). Any key of another type: WRONGTYPE.
fn gather<'a>(
    db: &'a mut Db,
    now: u64,
    a: &dyn ArgList,
    keys: std::ops::Range<usize>,
    count: bool,
) -> Result<Vec<Option<&'a Set>>, WrongType> {
    for i in keys.clone() {
        // Also expires keys lazily, so the view below sees what a read sees.
        if count {
            db.read_set(a.arg(i), now)?;
        } else if matches!(db.get(a.arg(i), now), Some(Stored::Bytes(_))) {
            return Err(WrongType);
        }
    }
    let map = db.keyspace();
    keys.map(|i| match map.peek(a.arg(i), now).map(|p| p.value) {
        None => Ok(None),
        Some(Stored::Object(Obj::Set(s))) => Ok(Some(&**s)),
        Some(_) => Err(WrongType),
    })
    .collect()
}

/// Visit the members common to all `sets` (none absent) in the order of the smallest
/// set, as Redis does; `f` returns false to stop.
fn for_each_common(sets: &[&Set], mut f: impl FnMut(Cow<'_, [u8]>) -> bool) {
    let Some(smallest) = (0..sets.len()).min_by_key(|&i| sets[i].len()) else {
        return;
    };
    let first = sets[smallest];
    for m in first.iter() {
        let everywhere = sets
            .iter()
            .all(|s| std::ptr::eq(*s, first) || s.contains(&m));
        if everywhere && !f(m) {
            return;
        }
    }
}

/// Which set operation an SUNION/SDIFF-style command computes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Inter,
    Union,
    Diff,
}

/// The result of `op` over `sets` (absent keys are empty sets), built as Redis builds its
/// destination set: starting as an intset, so encodings (and intset order) match.
fn compute(op: SetOp, sets: &[Option<&Set>]) -> Result<Set, OpResult> {
    let too_large = |_| err(TOO_LARGE);
    let mut out = Set::new();
    match op {
        SetOp::Inter => {
            if sets.iter().any(Option::is_none) {
                return Ok(out);
            }
            let present: Vec<&Set> = sets.iter().flatten().copied().collect();
            let mut failed = false;
            for_each_common(&present, |m| {
                failed = out.insert(&m).is_err();
                !failed
            });
            if failed {
                return Err(err(TOO_LARGE));
            }
        }
        SetOp::Union => {
            for s in sets.iter().flatten() {
                for m in s.iter() {
                    out.insert(&m).map_err(too_large)?;
                }
            }
        }
        SetOp::Diff => {
            let Some(Some(first)) = sets.first() else {
                return Ok(out);
            };
            let rest = &sets[1..];
            // Redis's choice: test each member of the first set against the others
            // (O(first * sets)), or copy the first and remove the others' members
            // (O(total)), whichever is less work.
            let one: u64 = sets.iter().flatten().count() as u64 * first.len() as u64 / 2;
            let two: u64 = sets.iter().flatten().map(|s| s.len() as u64).sum();
            if one <= two {
                for m in first.iter() {
                    if !rest.iter().flatten().any(|s| s.contains(&m)) {
                        out.insert(&m).map_err(too_large)?;
                    }
                }
            } else {
                for m in first.iter() {
                    out.insert(&m).map_err(too_large)?;
                }
                for s in rest.iter().flatten() {
                    for m in s.iter() {
                        out.remove(&m);
                    }
                    if out.is_empty() {
                        break;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// SINTER / SUNION / SDIFF: the result as a set reply.
fn set_op_reply(db: &mut Db, now: u64, a: &dyn ArgList, op: SetOp) -> OpResult {
    let sets = match gather(db, now, a, 1..a.len(), true) {
        Ok(s) => s,
        Err(w) => return w.into(),
    };
    if op == SetOp::Inter {
        // Straight from the smallest set, in its order (Redis replies as it iterates).
        if sets.iter().any(Option::is_none) {
            return empty_set();
        }
        let present: Vec<&Set> = sets.iter().flatten().copied().collect();
        let mut out = Vec::new();
        for_each_common(&present, |m| {
            out.push(bulk_cow(m));
            true
        });
        return OpResult::Reply(Resp::Set(out));
    }
    match compute(op, &sets) {
        Ok(s) => OpResult::Reply(members_reply(&s)),
        Err(e) => e,
    }
}

/// SINTERSTORE / SUNIONSTORE / SDIFFSTORE: replace the destination (whatever it held)
/// with the result, or delete it when the result is empty.
fn set_op_store(db: &mut Db, now: u64, a: &dyn ArgList, op: SetOp) -> OpResult {
    let result = {
        let sets = match gather(db, now, a, 2..a.len(), true) {
            Ok(s) => s,
            Err(w) => return w.into(),
        };
        match compute(op, &sets) {
            Ok(s) => s,
            Err(e) => return e,
        }
    };
    let dst = a.arg(1);
    let n = result.len() as i64;
    if result.is_empty() {
        db.remove(dst, now);
    } else {
        // Notified as the command's own event (see `notify::name_for`).
        db.write_owned(
            dst,
            Owned::Object(Box::new(Obj::Set(Box::new(result)))),
            0,
            now,
        );
    }
    OpResult::Int(n)
}

/// A member count argument of SPOP: a non-negative integer.
fn spop_count(arg: &[u8]) -> Result<usize, OpResult> {
    match parse_int(arg) {
        Some(n) if n >= 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => Err(err(NOT_POSITIVE)),
    }
}

/// `count` distinct positions of `0..len` (`count <= len`), chosen uniformly, in
/// O(count) time and space (a Fisher-Yates shuffle that only records the swaps).
fn distinct_positions(len: usize, count: usize) -> Vec<usize> {
    let mut swapped: HashMap<usize, usize> = HashMap::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let j = k + rand_below(len - k);
        let at_j = swapped.get(&j).copied().unwrap_or(j);
        let at_k = swapped.get(&k).copied().unwrap_or(k);
        swapped.insert(j, at_k);
        out.push(at_j);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Commands.

pub fn sadd(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let r = db.edit_set(a.arg(1), now, true, a, |s| {
        let mut added = 0;
        for i in 2..a.len() {
            match s.insert(a.arg(i)) {
                Ok(true) => added += 1,
                Ok(false) => {}
                Err(_) => {
                    // Replay repeats the command and stops at the same member.
                    let reply = err(TOO_LARGE);
                    return if added > 0 {
                        Edit::changed(reply, "sadd")
                    } else {
                        Edit::unchanged(reply)
                    };
                }
            }
        }
        if added > 0 {
            Edit::changed(OpResult::Int(added), "sadd")
        } else {
            Edit::unchanged(OpResult::Int(0))
        }
    });
    match r {
        Ok(Some(reply)) => reply,
        Ok(None) => OpResult::Int(0),
        Err(w) => w.into(),
    }
}

pub fn srem(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let r = db.edit_set(a.arg(1), now, false, a, |s| {
        let mut removed = 0;
        for i in 2..a.len() {
            if s.remove(a.arg(i)) {
                removed += 1;
                if s.is_empty() {
                    break;
                }
            }
        }
        if removed > 0 {
            Edit::changed(removed, "srem")
        } else {
            Edit::unchanged(0)
        }
    });
    match r {
        Ok(n) => OpResult::Int(n.unwrap_or(0)),
        Err(w) => w.into(),
    }
}

pub fn smembers(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_set(a.arg(1), now) {
        Ok(Some(s)) => OpResult::Reply(members_reply(s)),
        Ok(None) => empty_set(),
        Err(w) => w.into(),
    }
}

pub fn sismember(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_set(a.arg(1), now) {
        Ok(s) => OpResult::Int(i64::from(s.is_some_and(|s| s.contains(a.arg(2))))),
        Err(w) => w.into(),
    }
}

pub fn smismember(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_set(a.arg(1), now) {
        Ok(s) => OpResult::Reply(Resp::Array(
            (2..a.len())
                .map(|i| Resp::Integer(i64::from(s.is_some_and(|s| s.contains(a.arg(i))))))
                .collect(),
        )),
        Err(w) => w.into(),
    }
}

pub fn scard(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_set(a.arg(1), now) {
        Ok(s) => OpResult::Int(s.map_or(0, |s| s.len() as i64)),
        Err(w) => w.into(),
    }
}

/// SPOP key [count]: random members removed, journaled as `SREM key <them>`.
pub fn spop(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    if a.len() > 3 {
        return err(SYNTAX);
    }
    let key = a.arg(1);
    let srem_of = |members: &mut dyn Iterator<Item = Bytes>| {
        let mut log = vec![Bytes::from_static(b"SREM"), Bytes::copy_from_slice(key)];
        log.extend(members);
        log
    };
    if a.len() == 2 {
        let r = db.edit_set(key, now, false, a, |s| {
            if s.is_empty() {
                return Edit::unchanged(None);
            }
            match s.remove_index(rand_below(s.len())) {
                Some(m) => {
                    let m = Bytes::from(m);
                    let log = srem_of(&mut std::iter::once(m.clone()));
                    Edit::logged(Some(m), "spop", log)
                }
                None => Edit::unchanged(None),
            }
        });
        return match r {
            Ok(m) => OpResult::Value(m.flatten()),
            Err(w) => w.into(),
        };
    }
    let count = match spop_count(a.arg(2)) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let r = db.edit_set(key, now, false, a, |s| {
        if count == 0 || s.is_empty() {
            return Edit::unchanged(Vec::new());
        }
        let popped: Vec<Bytes> = if count >= s.len() {
            // The whole set, in its order (sorted for an intset, as Redis replies).
            let all = s.iter().map(|m| Bytes::from(m.into_owned())).collect();
            *s = Set::new();
            all
        } else {
            // One random position at a time: O(1) each for a hashtable, O(512) at most
            // for an intset.
            (0..count)
                .filter_map(|_| s.remove_index(rand_below(s.len())))
                .map(Bytes::from)
                .collect()
        };
        let log = srem_of(&mut popped.iter().cloned());
        Edit::logged(popped, "spop", log)
    });
    match r {
        Ok(popped) => OpResult::Reply(Resp::Set(
            popped
                .unwrap_or_default()
                .into_iter()
                .map(Resp::Bulk)
                .collect(),
        )),
        Err(w) => w.into(),
    }
}

/// SRANDMEMBER key [count]: distinct members for a positive count, a count of picks
/// (repeats allowed) for a negative one.
pub fn srandmember(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    if a.len() > 3 {
        return err(SYNTAX);
    }
    if a.len() == 2 {
        return match db.read_set(a.arg(1), now) {
            Ok(Some(s)) if !s.is_empty() => OpResult::Value(
                s.get_index(rand_below(s.len()))
                    .map(|m| Bytes::from(m.into_owned())),
            ),
            Ok(_) => OpResult::Value(None),
            Err(w) => w.into(),
        };
    }
    let n = match parse_int(a.arg(2)) {
        Some(i64::MIN) => {
            return err(
                "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
            )
        }
        Some(n) => n,
        None => return err(NOT_INT),
    };
    if n < 0 && n.unsigned_abs() > super::MAX_RANDOM_REPLY {
        return super::random_reply_too_long();
    }
    let s = match db.read_set(a.arg(1), now) {
        Ok(Some(s)) if !s.is_empty() => s,
        Ok(_) => return empty_array(),
        Err(w) => return w.into(),
    };
    let len = s.len();
    let count = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
    let pick = |i: usize| s.get_index(i).map(bulk_cow);
    let out: Vec<Resp> = if n < 0 {
        // As many picks as asked (the reply is that long anyway).
        let mut out = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            out.extend(pick(rand_below(len)));
        }
        out
    } else if count >= len {
        s.iter().map(bulk_cow).collect()
    } else {
        distinct_positions(len, count)
            .into_iter()
            .filter_map(pick)
            .collect()
    };
    OpResult::Reply(Resp::Array(out))
}

/// SMOVE src dst member: journaled as SREM src + SADD dst, one atomic record.
pub fn smove(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let (src, dst, m) = (a.arg(1), a.arg(2), a.arg(3));
    let is_set = |v: Option<Stored<'_, Obj>>| match v {
        None => Ok(false),
        Some(Stored::Object(Obj::Set(_))) => Ok(true),
        Some(_) => Err(WrongType),
    };
    match is_set(db.get(src, now)) {
        Ok(true) => {}
        Ok(false) => return OpResult::Int(0),
        Err(w) => return w.into(),
    }
    if let Err(w) = is_set(db.get(dst, now)) {
        return w.into();
    }
    if src == dst {
        return match db.read_set(src, now) {
            Ok(s) => OpResult::Int(i64::from(s.is_some_and(|s| s.contains(m)))),
            Err(w) => w.into(),
        };
    }
    let member = Bytes::copy_from_slice(m);
    let log = |cmd: &'static [u8], key: &[u8]| {
        vec![
            Bytes::from_static(cmd),
            Bytes::copy_from_slice(key),
            member.clone(),
        ]
    };
    db.atomically(|db| {
        let removed = db.edit_set(src, now, false, a, |s| {
            if s.remove(m) {
                Edit::logged(true, "srem", log(b"SREM", src))
            } else {
                Edit::unchanged(false)
            }
        });
        if !matches!(removed, Ok(Some(true))) {
            return OpResult::Int(0);
        }
        let added = db.edit_set(dst, now, true, a, |s| match s.insert(m) {
            Ok(true) => Edit::logged(Ok(()), "sadd", log(b"SADD", dst)),
            Ok(false) => Edit::unchanged(Ok(())),
            Err(e) => Edit::unchanged(Err(e)),
        });
        match added {
            Ok(Some(Ok(()))) => {
                // Redis signals the destination modified even when it had the member.
                db.watch.touch(dst);
                OpResult::Int(1)
            }
            Ok(Some(Err(_))) | Ok(None) | Err(_) => {
                // The destination cannot take it (unreachable in practice): put it back.
                let _ = db.edit_set(src, now, true, a, |s| match s.insert(m) {
                    Ok(true) => Edit::logged((), "sadd", log(b"SADD", src)),
                    _ => Edit::unchanged(()),
                });
                err(TOO_LARGE)
            }
        }
    })
}

pub fn sinter(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    set_op_reply(db, now, a, SetOp::Inter)
}

pub fn sunion(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    set_op_reply(db, now, a, SetOp::Union)
}

pub fn sdiff(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    set_op_reply(db, now, a, SetOp::Diff)
}

pub fn sinterstore(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    set_op_store(db, now, a, SetOp::Inter)
}

pub fn sunionstore(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    set_op_store(db, now, a, SetOp::Union)
}

pub fn sdiffstore(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    set_op_store(db, now, a, SetOp::Diff)
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit] (0: no limit).
pub fn sintercard(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let numkeys = match parse_int(a.arg(1)) {
        Some(n) if n > 0 => n as u64,
        _ => return err("ERR numkeys should be greater than 0"),
    };
    if numkeys > (a.len() - 2) as u64 {
        return err("ERR Number of keys can't be greater than number of args");
    }
    let end = 2 + numkeys as usize;
    let mut limit: u64 = 0;
    let mut i = end;
    while i < a.len() {
        if a.is(i, "LIMIT") && i + 1 < a.len() {
            match parse_int(a.arg(i + 1)) {
                Some(n) if n >= 0 => limit = n as u64,
                _ => return err("ERR LIMIT can't be negative"),
            }
            i += 2;
        } else {
            return err(SYNTAX);
        }
    }
    let sets = match gather(db, now, a, 2..end, true) {
        Ok(s) => s,
        Err(w) => return w.into(),
    };
    if sets.iter().any(Option::is_none) {
        return OpResult::Int(0);
    }
    let present: Vec<&Set> = sets.iter().flatten().copied().collect();
    let mut n: u64 = 0;
    for_each_common(&present, |_| {
        n += 1;
        limit == 0 || n < limit
    });
    OpResult::Int(n as i64)
}

/// SSCAN key cursor [MATCH pattern] [COUNT count]. An intset comes back whole.
pub fn sscan(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let Some(cursor) = scan::parse_cursor(a.arg(2)) else {
        return err("ERR invalid cursor");
    };
    let opts = scan::parse_opts(a, 3);
    let s = match db.read_set(a.arg(1), now) {
        Ok(Some(s)) => s,
        Ok(None) => return scan::reply(0, Vec::new()),
        Err(w) => return w.into(),
    };
    let opts = match opts {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut items = Vec::new();
    let next = s.scan(cursor, opts.count, |m| {
        if opts.matches(m) {
            items.push(bulk(m));
        }
    });
    scan::reply(next, items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::scan::parse_cursor;

    #[test]
    fn cursors_parse_like_strtoul() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"+5"), Some(5));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551616"), None);
        for bad in [&b" 1"[..], b"1 ", b"x", b"-", b"+", b"1x", b"\t1"] {
            assert_eq!(
                parse_cursor(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn distinct_positions_are_distinct_and_in_range() {
        for (len, count) in [(1, 1), (10, 10), (10, 3), (1000, 999), (1_000_000, 5)] {
            let mut got = distinct_positions(len, count);
            assert_eq!(got.len(), count);
            assert!(got.iter().all(|&i| i < len));
            got.sort_unstable();
            got.dedup();
            assert_eq!(got.len(), count);
        }
    }

    fn set_of(members: &[&str]) -> Set {
        let mut s = Set::new();
        for m in members {
            s.insert(m.as_bytes()).unwrap();
        }
        s
    }

    fn strings(s: &Set) -> Vec<String> {
        s.iter()
            .map(|m| String::from_utf8(m.into_owned()).unwrap())
            .collect()
    }

    #[test]
    fn set_operations_match_redis() {
        let a = set_of(&["5", "1", "3", "2"]);
        let b = set_of(&["2", "3", "9"]);
        let h = set_of(&["x", "3"]);
        let inter = compute(SetOp::Inter, &[Some(&a), Some(&b)]).unwrap();
        assert_eq!(strings(&inter), ["2", "3"]);
        assert_eq!(inter.encoding(), "intset");
        assert!(compute(SetOp::Inter, &[Some(&a), None]).unwrap().is_empty());
        let union = compute(SetOp::Union, &[Some(&b), None, Some(&a)]).unwrap();
        assert_eq!(strings(&union), ["1", "2", "3", "5", "9"]);
        let diff = compute(SetOp::Diff, &[Some(&a), Some(&b), None]).unwrap();
        assert_eq!(strings(&diff), ["1", "5"]);
        assert!(compute(SetOp::Diff, &[None, Some(&a)]).unwrap().is_empty());
        let mixed = compute(SetOp::Inter, &[Some(&h), Some(&a)]).unwrap();
        assert_eq!(strings(&mixed), ["3"]);
        assert_eq!(mixed.encoding(), "intset");
        let mixed = compute(SetOp::Union, &[Some(&h), Some(&a)]).unwrap();
        assert_eq!(mixed.encoding(), "hashtable");
        assert_eq!(mixed.len(), 5);
        // Both diff strategies agree.
        let big: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
        let big = set_of(&big.iter().map(String::as_str).collect::<Vec<_>>());
        let many: Vec<Option<&Set>> = std::iter::once(Some(&a))
            .chain(std::iter::repeat_n(Some(&big), 1))
            .collect();
        assert!(compute(SetOp::Diff, &many).unwrap().is_empty());
        let small_first = compute(SetOp::Diff, &[Some(&big), Some(&a), Some(&b)]).unwrap();
        assert_eq!(small_first.len(), 2000 - 5);
        assert!(!small_first.contains(b"9") && small_first.contains(b"10"));
    }
}
