//! The hash family, with Redis 7.0's replies, error texts, argument-checking order and
//! listpack/hashtable conversion points. Every write goes through `Db::edit_hash`;
//! HINCRBYFLOAT is journaled as the HSET of its result, as Redis propagates it, and its
//! arithmetic emulates Redis's `long double` (x87 80-bit) exactly, see [`ld`].

use std::cell::Cell;

use bytes::Bytes;
use coreshard_protocol::Value as Resp;

use super::longdouble as ld;
use super::scan;
use super::strings::{err, NOT_INT, SYNTAX};
use super::{arity_error, edited, parse_int, Spec, K1, R, RF, WDF, WF};
use crate::db::{Db, Edit};
use crate::server::ops::OpResult;
use crate::server::ArgList;
use crate::types::Table;

const HASH: &str = "hash";
const NOT_FLOAT: &str = "ERR value is not a valid float";
const TOO_LARGE: &str = "ERR hash exceeds the maximum allowed size";

/// The family's commands (Redis 7.0's arity, flags and key positions).
#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    Spec::keyed("hset", -4, WDF, K1, (HASH, "2.0.0", "Set the string value of a hash field"), hset),
    Spec::keyed("hsetnx", 4, WDF, K1, (HASH, "2.0.0", "Set the value of a hash field, only if the field does not exist"), hsetnx),
    Spec::keyed("hget", 3, RF, K1, (HASH, "2.0.0", "Get the value of a hash field"), hget),
    Spec::keyed("hmget", -3, RF, K1, (HASH, "2.0.0", "Get the values of all the given hash fields"), hmget),
    Spec::keyed("hmset", -4, WDF, K1, (HASH, "2.0.0", "Set multiple hash fields to multiple values"), hmset),
    Spec::keyed("hdel", -3, WF, K1, (HASH, "2.0.0", "Delete one or more hash fields"), hdel),
    Spec::keyed("hlen", 2, RF, K1, (HASH, "2.0.0", "Get the number of fields in a hash"), hlen),
    Spec::keyed("hstrlen", 3, RF, K1, (HASH, "3.2.0", "Get the length of the value of a hash field"), hstrlen),
    Spec::keyed("hexists", 3, RF, K1, (HASH, "2.0.0", "Determine if a hash field exists"), hexists),
    Spec::keyed("hincrby", 4, WDF, K1, (HASH, "2.0.0", "Increment the integer value of a hash field by the given number"), hincrby),
    Spec::keyed("hincrbyfloat", 4, WDF, K1, (HASH, "2.6.0", "Increment the float value of a hash field by the given amount"), hincrbyfloat),
    Spec::keyed("hkeys", 2, R, K1, (HASH, "2.0.0", "Get all the fields in a hash"), hkeys),
    Spec::keyed("hvals", 2, R, K1, (HASH, "2.0.0", "Get all the values in a hash"), hvals),
    Spec::keyed("hgetall", 2, R, K1, (HASH, "2.0.0", "Get all the fields and values in a hash"), hgetall),
    Spec::keyed("hrandfield", -2, R, K1, (HASH, "6.2.0", "Get one or multiple random fields from a hash"), hrandfield),
    Spec::keyed("hscan", -3, R, K1, (HASH, "2.8.0", "Incrementally iterate hash fields and associated values"), hscan),
];

fn bulk(b: &[u8]) -> Resp {
    Resp::Bulk(Bytes::copy_from_slice(b))
}

/// HSET / HMSET: set field-value pairs, creating the hash. Like Redis, a field or value
/// longer than 64 bytes, or a 129th field, converts the listpack to a hashtable.
fn set_pairs(db: &mut Db, now: u64, a: &dyn ArgList, name: &str, reply_ok: bool) -> OpResult {
    if a.len() % 2 == 1 {
        return arity_error(name);
    }
    let r = db.edit_hash(a.arg(1), now, true, a, |t| {
        let mut added = 0;
        for i in (2..a.len()).step_by(2) {
            match t.insert(a.arg(i), a.arg(i + 1)) {
                Ok(new) => added += i64::from(new),
                // Replay repeats the command and stops at the same point.
                Err(_) if i == 2 => return Edit::unchanged(err(TOO_LARGE)),
                Err(_) => return Edit::changed(err(TOO_LARGE), "hset"),
            }
        }
        let reply = if reply_ok {
            OpResult::Ok
        } else {
            OpResult::Int(added)
        };
        Edit::changed(reply, "hset")
    });
    edited(r, OpResult::Ok)
}

pub fn hset(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    set_pairs(db, now, a, "hset", false)
}

pub fn hmset(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    set_pairs(db, now, a, "hmset", true)
}

pub fn hsetnx(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let (field, value) = (a.arg(2), a.arg(3));
    let r = db.edit_hash(a.arg(1), now, true, a, |t| {
        // Redis 7.0 checks for the field before any conversion: an existing field leaves
        // the encoding alone even when the value is long.
        if t.contains(field) {
            return Edit::unchanged(OpResult::Int(0));
        }
        match t.insert(field, value) {
            Ok(_) => Edit::changed(OpResult::Int(1), "hset"),
            Err(_) => Edit::unchanged(err(TOO_LARGE)),
        }
    });
    edited(r, OpResult::Int(0))
}

pub fn hget(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_hash(a.arg(1), now) {
        Ok(t) => OpResult::Value(t.and_then(|t| t.get(a.arg(2))).map(Bytes::copy_from_slice)),
        Err(w) => w.into(),
    }
}

pub fn hmget(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_hash(a.arg(1), now) {
        Ok(t) => OpResult::Values(
            (2..a.len())
                .map(|i| t.and_then(|t| t.get(a.arg(i))).map(Bytes::copy_from_slice))
                .collect(),
        ),
        Err(w) => w.into(),
    }
}

pub fn hdel(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let r = db.edit_hash(a.arg(1), now, false, a, |t| {
        let removed = (2..a.len()).filter(|&i| t.remove(a.arg(i))).count() as i64;
        if removed > 0 {
            Edit::changed(OpResult::Int(removed), "hdel")
        } else {
            Edit::unchanged(OpResult::Int(0))
        }
    });
    edited(r, OpResult::Int(0))
}

pub fn hlen(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_hash(a.arg(1), now) {
        Ok(t) => OpResult::Int(t.map_or(0, |t| t.len() as i64)),
        Err(w) => w.into(),
    }
}

pub fn hstrlen(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_hash(a.arg(1), now) {
        Ok(t) => OpResult::Int(
            t.and_then(|t| t.get(a.arg(2)))
                .map_or(0, |v| v.len() as i64),
        ),
        Err(w) => w.into(),
    }
}

pub fn hexists(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_hash(a.arg(1), now) {
        Ok(t) => OpResult::Int(i64::from(t.is_some_and(|t| t.contains(a.arg(2))))),
        Err(w) => w.into(),
    }
}

pub fn hincrby(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let Some(by) = parse_int(a.arg(3)) else {
        return err(NOT_INT);
    };
    let field = a.arg(2);
    let r = db.edit_hash(a.arg(1), now, true, a, |t| {
        let current = match t.get(field) {
            None => 0,
            Some(v) => match parse_int(v) {
                Some(n) => n,
                None => return Edit::unchanged(err("ERR hash value is not an integer")),
            },
        };
        let Some(next) = current.checked_add(by) else {
            return Edit::unchanged(err("ERR increment or decrement would overflow"));
        };
        let mut buf = itoa::Buffer::new();
        match t.insert(field, buf.format(next).as_bytes()) {
            Ok(_) => Edit::changed(OpResult::Int(next), "hincrby"),
            Err(_) => Edit::unchanged(err(TOO_LARGE)),
        }
    });
    edited(r, OpResult::Int(0))
}

pub fn hincrbyfloat(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let by = match ld::parse(a.arg(3)) {
        None => return err(NOT_FLOAT),
        Some(ld::Ld::Inf { .. }) => return err("ERR value is NaN or Infinity"),
        Some(x) => x,
    };
    let (key, field) = (a.arg(1), a.arg(2));
    let r = db.edit_hash(key, now, true, a, |t| {
        let current = match t.get(field) {
            None => ld::Ld::ZERO,
            Some(v) => match ld::parse(v) {
                Some(x) => x,
                None => return Edit::unchanged(err("ERR hash value is not a float")),
            },
        };
        let text = match ld::add(current, by) {
            ld::Ld::Inf { .. } => {
                return Edit::unchanged(err("ERR increment would produce NaN or Infinity"))
            }
            sum => Bytes::from(ld::format_human(sum)),
        };
        if t.insert(field, &text).is_err() {
            return Edit::unchanged(err(TOO_LARGE));
        }
        // Journaled as the HSET of the result, as Redis propagates it, so replay does
        // not depend on float arithmetic.
        let log = vec![
            Bytes::from_static(b"HSET"),
            Bytes::copy_from_slice(key),
            Bytes::copy_from_slice(field),
            text.clone(),
        ];
        Edit::logged(OpResult::Value(Some(text)), "hincrbyfloat", log)
    });
    edited(r, OpResult::Value(None))
}

/// HKEYS / HVALS / HGETALL: the whole hash (listpack order while compact).
fn read_all(
    db: &mut Db,
    now: u64,
    a: &dyn ArgList,
    absent: Resp,
    f: impl FnOnce(&Table) -> Resp,
) -> OpResult {
    match db.read_hash(a.arg(1), now) {
        Ok(Some(t)) => OpResult::Reply(f(t)),
        Ok(None) => OpResult::Reply(absent),
        Err(w) => w.into(),
    }
}

pub fn hkeys(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_hash(a.arg(1), now) {
        Ok(Some(t)) => crate::server::ops::bulk_array(t.len(), t.iter().map(|(f, _)| f)),
        Ok(None) => OpResult::Reply(Resp::Array(Vec::new())),
        Err(w) => w.into(),
    }
}

pub fn hvals(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_hash(a.arg(1), now) {
        Ok(Some(t)) => crate::server::ops::bulk_array(t.len(), t.iter().map(|(_, v)| v)),
        Ok(None) => OpResult::Reply(Resp::Array(Vec::new())),
        Err(w) => w.into(),
    }
}

pub fn hgetall(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    read_all(db, now, a, Resp::Map(Vec::new()), |t| {
        Resp::Map(t.iter().map(|(f, v)| (bulk(f), bulk(v))).collect())
    })
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// A random seed (std's per-process random hasher keys).
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        | 1
}

/// A uniform random number below `n` (n > 0), splitmix64.
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

/// HRANDFIELD's reply: fields, or field/value pairs (flat in RESP2, pairs in RESP3).
fn random_reply(out: Vec<Resp>, withvalues: bool) -> OpResult {
    if withvalues {
        OpResult::Pairs(out)
    } else {
        OpResult::Reply(Resp::Array(out))
    }
}

/// HRANDFIELD key [count [WITHVALUES]]. A negative count may repeat fields (and costs
/// what the client asked for); a positive one returns distinct fields, all of them when
/// it reaches the size. WITHVALUES replies pairs in RESP3.
pub fn hrandfield(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    if a.len() == 2 {
        return match db.read_hash(a.arg(1), now) {
            Ok(Some(t)) => OpResult::Value(
                t.get_index(below(t.len()))
                    .map(|(f, _)| Bytes::copy_from_slice(f)),
            ),
            Ok(None) => OpResult::Value(None),
            Err(w) => w.into(),
        };
    }
    let Some(l) = parse_int(a.arg(2)) else {
        return err(NOT_INT);
    };
    if l == i64::MIN {
        return err(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        );
    }
    if a.len() > 4 || (a.len() == 4 && !a.is(3, "WITHVALUES")) {
        return err(SYNTAX);
    }
    let withvalues = a.len() == 4;
    if withvalues && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&l) {
        return err("ERR value is out of range");
    }
    if l < 0 && l.unsigned_abs() > super::MAX_RANDOM_REPLY {
        return super::random_reply_too_long();
    }
    let t = match db.read_hash(a.arg(1), now) {
        Ok(Some(t)) => t,
        Ok(None) => return OpResult::Reply(Resp::Array(Vec::new())),
        Err(w) => return w.into(),
    };
    let count = l.unsigned_abs();
    let per = if withvalues { 2 } else { 1 };
    let push = |out: &mut Vec<Resp>, (f, v): (&[u8], &[u8])| {
        out.push(bulk(f));
        if withvalues {
            out.push(bulk(v));
        }
    };
    let n = t.len();
    if count == 0 {
        return OpResult::Reply(Resp::Array(Vec::new()));
    }
    // A compact hash finds a position by walking its records: walk them once, not once
    // per pick (its size is whatever hash-max-listpack-entries allows).
    let flat: Option<Vec<(&[u8], &[u8])>> = t.is_compact().then(|| t.iter().collect());
    let at = |i: usize| match &flat {
        Some(f) => f.get(i).copied(),
        None => t.get_index(i),
    };
    if l < 0 || count == 1 {
        // Independent picks: the reply is as long as asked (grown as it fills, not
        // reserved up front).
        let mut out = Vec::with_capacity((count.min(1024) as usize) * per);
        for _ in 0..count {
            if let Some(e) = at(below(n)) {
                push(&mut out, e);
            }
        }
        return random_reply(out, withvalues);
    }
    let mut out = Vec::with_capacity(count.min(n as u64) as usize * per);
    if count >= n as u64 {
        t.iter().for_each(|e| push(&mut out, e));
        return random_reply(out, withvalues);
    }
    let count = count as usize;
    let mut picked: Vec<usize> = if count * 3 > n {
        // Partial Fisher-Yates over all positions: O(n), and n < 3 * count.
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..count {
            let j = i + below(n - i);
            all.swap(i, j);
        }
        all.truncate(count);
        all
    } else {
        // Few out of many: draw until enough distinct, expected O(count).
        let mut seen = hashbrown::HashSet::with_capacity(count);
        let mut v = Vec::with_capacity(count);
        while v.len() < count {
            let i = below(n);
            if seen.insert(i) {
                v.push(i);
            }
        }
        v
    };
    if t.is_compact() {
        // Redis samples a listpack in its order.
        picked.sort_unstable();
    }
    for i in picked {
        if let Some(e) = at(i) {
            push(&mut out, e);
        }
    }
    random_reply(out, withvalues)
}

/// HSCAN key cursor [MATCH pattern] [COUNT count]. A listpack is returned whole with
/// cursor 0, as in Redis. Like Redis, the cursor is checked first, then the key, then the
/// options.
pub fn hscan(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let Some(cursor) = scan::parse_cursor(a.arg(2)) else {
        return err("ERR invalid cursor");
    };
    let opts = scan::parse_opts(a, 3);
    let t = match db.read_hash(a.arg(1), now) {
        Ok(Some(t)) => t,
        Ok(None) => return scan::reply(0, Vec::new()),
        Err(w) => return w.into(),
    };
    let opts = match opts {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut items = Vec::new();
    let next = t.scan(cursor, opts.count, |f, v| {
        if opts.matches(f) {
            items.push(bulk(f));
            items.push(bulk(v));
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
        assert_eq!(parse_cursor(b"+7"), Some(7));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551616"), None);
        for bad in [&b" 1"[..], b"1 ", b"x", b"-", b"+", b"1x"] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn below_is_in_range() {
        for n in [1, 2, 3, 10, 1000] {
            for _ in 0..1000 {
                assert!(below(n) < n);
            }
        }
    }
}
