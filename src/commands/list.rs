//! The list family (non-blocking commands; the blocking ones are in `blocking.rs`), with
//! Redis 7.0's argument rules, reply shapes, error texts and keyspace events.
//!
//! Writes go through [`Db::edit_list`]. LPOP/RPOP are journaled as given (deterministic);
//! LMPOP as `LPOP|RPOP key n` for the key it popped from; LMOVE/RPOPLPUSH as a push on the
//! destination and a pop on the source, grouped by [`Db::atomically`], so a replay with
//! another shard count routes each half to its own shard.

use bytes::Bytes;
use coreshard_engine::ttl::Stored;
use coreshard_protocol::Value as Resp;

use super::strings::{err, NOT_INT, SYNTAX};
use super::{parse_int, Spec, K1, K12, NONE, R, RF, W, WDF, WF};
use crate::db::{Db, Edit, WrongType};
use crate::server::ops::OpResult;
use crate::server::txn::run_across_shards;
use crate::server::ArgList;
use crate::types::list::Elem;
use crate::types::{List, Obj};

const LIST: &str = "list";
const WRITE: &[&str] = &["write"];
const WD: &[&str] = &["write", "denyoom"];
const MOVABLE: &[&str] = &["write", "movablekeys"];

/// The family's commands.
pub static COMMANDS: &[Spec] = &[
    Spec::keyed("lpush", -3, WDF, K1, (LIST, "1.0.0", "Prepends one or more elements to a list. Creates the key if it doesn't exist."), lpush),
    Spec::keyed("rpush", -3, WDF, K1, (LIST, "1.0.0", "Appends one or more elements to a list. Creates the key if it doesn't exist."), rpush),
    Spec::keyed("lpushx", -3, WDF, K1, (LIST, "2.2.0", "Prepends one or more elements to a list only when the list exists."), lpushx),
    Spec::keyed("rpushx", -3, WDF, K1, (LIST, "2.2.0", "Appends an element to a list only when the list exists."), rpushx),
    Spec::keyed("lpop", -2, WF, K1, (LIST, "1.0.0", "Returns the first elements in a list after removing it. Deletes the list if the last element was popped."), lpop),
    Spec::keyed("rpop", -2, WF, K1, (LIST, "1.0.0", "Returns and removes the last elements of the list. Deletes the list if the last element was popped."), rpop),
    Spec::keyed("llen", 2, RF, K1, (LIST, "1.0.0", "Returns the length of a list."), llen),
    Spec::keyed("lrange", 4, R, K1, (LIST, "1.0.0", "Returns a range of elements from a list."), lrange),
    Spec::keyed("lindex", 3, R, K1, (LIST, "1.0.0", "Returns an element from a list by its index."), lindex),
    Spec::keyed("lset", 4, WD, K1, (LIST, "1.0.0", "Sets the value of an element in a list by its index."), lset),
    Spec::keyed("linsert", 5, WD, K1, (LIST, "2.2.0", "Inserts an element before or after another element in a list."), linsert),
    Spec::keyed("lrem", 4, WRITE, K1, (LIST, "1.0.0", "Removes elements from a list. Deletes the list if the last element was removed."), lrem),
    Spec::keyed("ltrim", 4, WRITE, K1, (LIST, "1.0.0", "Removes elements from both ends a list. Deletes the list if all elements were trimmed."), ltrim),
    Spec::keyed("lpos", -3, R, K1, (LIST, "6.0.6", "Returns the index of matching elements in a list."), lpos),
    Spec::keyed("lmove", 5, W, K12, (LIST, "6.2.0", "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved."), lmove).cross(run_across_shards),
    Spec::keyed("rpoplpush", 3, W, K12, (LIST, "1.2.0", "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped."), rpoplpush).cross(run_across_shards),
    // Keys are counted by `numkeys` (argument 1).
    Spec::keyed("lmpop", -4, MOVABLE, NONE, (LIST, "7.0.0", "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped."), lmpop).numkeys(1).cross(run_across_shards),
];

const NO_SUCH_KEY: &str = "ERR no such key";
const OUT_OF_RANGE: &str = "ERR index out of range";
const MUST_BE_POSITIVE: &str = "ERR value is out of range, must be positive";
const RANK_ZERO: &str = "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list";

fn int_arg(a: &dyn ArgList, i: usize) -> Result<i64, OpResult> {
    parse_int(a.arg(i)).ok_or_else(|| err(NOT_INT))
}

/// `LEFT` (true) or `RIGHT` (false), else a syntax error.
fn side(a: &dyn ArgList, i: usize) -> Result<bool, OpResult> {
    if a.is(i, "LEFT") {
        Ok(true)
    } else if a.is(i, "RIGHT") {
        Ok(false)
    } else {
        Err(err(SYNTAX))
    }
}

/// Redis's normalization of `start..=end` over a list of `len`: `None` when empty.
fn norm_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let llen = len as i64;
    let start = if start < 0 { llen + start } else { start }.max(0);
    let end = if end < 0 { llen + end } else { end };
    if start > end || start >= llen {
        return None;
    }
    Some((start as usize, end.min(llen - 1) as usize))
}

fn bulks(v: Vec<Vec<u8>>) -> Vec<Resp> {
    v.into_iter().map(|e| Resp::Bulk(Bytes::from(e))).collect()
}

/// The list at `key` without counting a hit or miss (write commands' lookups): `Ok(None)`
/// if absent.
fn peek_list<'a>(db: &'a mut Db, key: &[u8], now: u64) -> Result<Option<&'a List>, WrongType> {
    match db.get(key, now) {
        None => Ok(None),
        Some(Stored::Object(Obj::List(l))) => Ok(Some(l)),
        Some(_) => Err(WrongType),
    }
}

fn pop_one(l: &mut List, left: bool) -> Option<Vec<u8>> {
    if left {
        l.pop_front()
    } else {
        l.pop_back()
    }
}

fn push(db: &mut Db, now: u64, a: &dyn ArgList, left: bool, create: bool) -> OpResult {
    let event = if left { "lpush" } else { "rpush" };
    let r = db.edit_list(a.arg(1), now, create, a, |l| {
        for i in 2..a.len() {
            if left {
                l.push_front(a.arg(i));
            } else {
                l.push_back(a.arg(i));
            }
        }
        Edit::changed(l.len() as i64, event)
    });
    match r {
        Ok(n) => OpResult::Int(n.unwrap_or(0)),
        Err(w) => w.into(),
    }
}

pub fn lpush(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    push(db, now, a, true, true)
}

pub fn rpush(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    push(db, now, a, false, true)
}

pub fn lpushx(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    push(db, now, a, true, false)
}

pub fn rpushx(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    push(db, now, a, false, false)
}

/// LPOP/RPOP key [count]: a bulk without count; with one, an array (a null array when the
/// key is absent, an empty one for count 0).
fn pop(db: &mut Db, now: u64, a: &dyn ArgList, left: bool) -> OpResult {
    let (name, event) = if left {
        ("lpop", "lpop")
    } else {
        ("rpop", "rpop")
    };
    if a.len() > 3 {
        return super::arity_error(name);
    }
    let count = if a.len() == 3 {
        match parse_int(a.arg(2)) {
            Some(n) if n >= 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => return err(MUST_BE_POSITIVE),
        }
    } else {
        None
    };
    let r = db.edit_list(a.arg(1), now, false, a, |l| match count {
        None => match pop_one(l, left) {
            Some(v) => Edit::changed(OpResult::Value(Some(Bytes::from(v))), event),
            None => Edit::unchanged(OpResult::Value(None)),
        },
        Some(0) => Edit::unchanged(OpResult::Values(Vec::new())),
        Some(n) => {
            let n = n.min(l.len());
            let out: Vec<Option<Bytes>> = (0..n)
                .map_while(|_| pop_one(l, left))
                .map(|v| Some(Bytes::from(v)))
                .collect();
            Edit::changed(OpResult::Values(out), event)
        }
    });
    match r {
        Ok(Some(r)) => r,
        Ok(None) if count.is_some() => OpResult::NullArray,
        Ok(None) => OpResult::Value(None),
        Err(w) => w.into(),
    }
}

pub fn lpop(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    pop(db, now, a, true)
}

pub fn rpop(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    pop(db, now, a, false)
}

pub fn llen(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_list(a.arg(1), now) {
        Ok(l) => OpResult::Int(l.map_or(0, |l| l.len() as i64)),
        Err(w) => w.into(),
    }
}

pub fn lrange(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let (start, end) = match (int_arg(a, 2), int_arg(a, 3)) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match db.read_list(a.arg(1), now) {
        Ok(Some(l)) => match norm_range(start, end, l.len()) {
            Some((s, e)) => {
                let mut reply = crate::server::ops::BulkArray::new(e + 1 - s);
                l.for_range(s, e, |v| reply.push(v));
                reply.finish()
            }
            None => OpResult::Values(Vec::new()),
        },
        Ok(None) => OpResult::Values(Vec::new()),
        Err(w) => w.into(),
    }
}

pub fn lindex(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let l = match db.read_list(a.arg(1), now) {
        Ok(Some(l)) => l,
        Ok(None) => return OpResult::Value(None),
        Err(w) => return w.into(),
    };
    let index = match int_arg(a, 2) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let len = l.len() as i64;
    let index = if index < 0 { len + index } else { index };
    if index < 0 {
        return OpResult::Value(None);
    }
    let v = usize::try_from(index).ok().and_then(|i| l.get(i));
    OpResult::Value(v.map(|e| e.to_bytes()))
}

pub fn lset(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let r = db.edit_list(a.arg(1), now, false, a, |l| {
        let index = match int_arg(a, 2) {
            Ok(i) => i,
            Err(e) => return Edit::unchanged(e),
        };
        let len = l.len() as i64;
        let index = if index < 0 { len + index } else { index };
        let ok = index >= 0 && usize::try_from(index).is_ok_and(|i| l.set(i, a.arg(3)));
        if ok {
            Edit::changed(OpResult::Ok, "lset")
        } else {
            Edit::unchanged(err(OUT_OF_RANGE))
        }
    });
    match r {
        Ok(Some(r)) => r,
        Ok(None) => err(NO_SUCH_KEY),
        Err(w) => w.into(),
    }
}

pub fn linsert(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let before = if a.is(2, "BEFORE") {
        true
    } else if a.is(2, "AFTER") {
        false
    } else {
        return err(SYNTAX);
    };
    let r = db.edit_list(a.arg(1), now, false, a, |l| {
        if l.insert_at_pivot(a.arg(3), before, a.arg(4)) {
            Edit::changed(l.len() as i64, "linsert")
        } else {
            Edit::unchanged(-1)
        }
    });
    match r {
        Ok(n) => OpResult::Int(n.unwrap_or(0)),
        Err(w) => w.into(),
    }
}

pub fn lrem(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let count = match int_arg(a, 2) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let r = db.edit_list(a.arg(1), now, false, a, |l| {
        let removed = l.remove_matching(count, a.arg(3)) as i64;
        if removed > 0 {
            Edit::changed(removed, "lrem")
        } else {
            Edit::unchanged(0)
        }
    });
    match r {
        Ok(n) => OpResult::Int(n.unwrap_or(0)),
        Err(w) => w.into(),
    }
}

pub fn ltrim(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let (start, end) = match (int_arg(a, 2), int_arg(a, 3)) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let r = db.edit_list(a.arg(1), now, false, a, |l| {
        match norm_range(start, end, l.len()) {
            Some((s, e)) => l.retain_range(s, e),
            None => l.clear(),
        }
        // Redis signals the key and raises `ltrim` even when nothing was removed.
        Edit::changed((), "ltrim")
    });
    match r {
        Ok(_) => OpResult::Ok,
        Err(w) => w.into(),
    }
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len].
pub fn lpos(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let mut rank: i64 = 1;
    let mut count: i64 = -1; // -1: no COUNT option
    let mut maxlen: i64 = 0;
    let mut j = 3;
    while j < a.len() {
        let more = j + 1 < a.len();
        if a.is(j, "RANK") && more {
            j += 1;
            rank = match int_arg(a, j) {
                Ok(0) => return err(RANK_ZERO),
                Ok(r) => r,
                Err(e) => return e,
            };
        } else if a.is(j, "COUNT") && more {
            j += 1;
            count = match parse_int(a.arg(j)) {
                Some(n) if n >= 0 => n,
                _ => return err("ERR COUNT can't be negative"),
            };
        } else if a.is(j, "MAXLEN") && more {
            j += 1;
            maxlen = match parse_int(a.arg(j)) {
                Some(n) if n >= 0 => n,
                _ => return err("ERR MAXLEN can't be negative"),
            };
        } else {
            return err(SYNTAX);
        }
        j += 1;
    }
    // A negative rank searches from the tail. Arithmetic wraps as in Redis, so RANK
    // -9223372036854775808 behaves as it does there.
    let from_head = rank > 0;
    if rank < 0 {
        rank = rank.wrapping_neg();
    }
    let l = match db.read_list(a.arg(1), now) {
        Ok(Some(l)) => l,
        Ok(None) if count != -1 => return OpResult::Values(Vec::new()),
        Ok(None) => return OpResult::Value(None),
        Err(w) => return w.into(),
    };
    let ele = a.arg(2);
    let llen = l.len() as i64;
    let it: Box<dyn Iterator<Item = Elem<'_>>> = if from_head {
        Box::new(l.iter())
    } else {
        Box::new(l.iter_rev())
    };
    let limit = if maxlen == 0 {
        usize::MAX
    } else {
        usize::try_from(maxlen).unwrap_or(usize::MAX)
    };
    let mut matches: i64 = 0;
    let mut found = Vec::new();
    let mut first = None;
    for (index, e) in it.take(limit).enumerate() {
        if *e != *ele {
            continue;
        }
        matches += 1;
        let index = index as i64;
        let at = if from_head { index } else { llen - index - 1 };
        if matches >= rank {
            if count == -1 {
                first = Some(at);
                break;
            }
            found.push(Resp::Integer(at));
            if count != 0 && matches.wrapping_sub(rank).wrapping_add(1) >= count {
                break;
            }
        }
    }
    if count != -1 {
        OpResult::Reply(Resp::Array(found))
    } else {
        match first {
            Some(i) => OpResult::Int(i),
            None => OpResult::Value(None),
        }
    }
}

/// LMOVE / RPOPLPUSH on keys this `db` holds: the element is read at the source, pushed to
/// the destination, then popped from the source (so a list moved onto itself is never
/// empty in between), each half journaled as a single-key command.
fn move_elem(
    db: &mut Db,
    now: u64,
    src: &[u8],
    dst: &[u8],
    from_left: bool,
    to_left: bool,
) -> OpResult {
    let v = match peek_list(db, src, now) {
        Ok(Some(l)) => {
            let v = if from_left { l.front() } else { l.back() };
            match v {
                Some(v) => v.to_vec(),
                None => return OpResult::Value(None),
            }
        }
        Ok(None) => return OpResult::Value(None),
        Err(w) => return w.into(),
    };
    if let Err(w) = peek_list(db, dst, now) {
        return w.into();
    }
    let v = Bytes::from(v);
    let res: Result<(), WrongType> = db.atomically(|db| {
        let push_name: &'static [u8] = if to_left { b"LPUSH" } else { b"RPUSH" };
        let push: Vec<Bytes> = vec![
            Bytes::from_static(push_name),
            Bytes::copy_from_slice(dst),
            v.clone(),
        ];
        let event = if to_left { "lpush" } else { "rpush" };
        db.edit_list(dst, now, true, &push, |l| {
            if to_left {
                l.push_front(&v);
            } else {
                l.push_back(&v);
            }
            Edit::logged((), event, push.clone())
        })?;
        let pop_name: &'static [u8] = if from_left { b"LPOP" } else { b"RPOP" };
        let pop: Vec<Bytes> = vec![Bytes::from_static(pop_name), Bytes::copy_from_slice(src)];
        let event = if from_left { "lpop" } else { "rpop" };
        db.edit_list(src, now, false, &pop, |l| match pop_one(l, from_left) {
            Some(_) => Edit::logged((), event, pop.clone()),
            None => Edit::unchanged(()),
        })?;
        Ok(())
    });
    match res {
        Ok(()) => OpResult::Value(Some(v)),
        Err(w) => w.into(),
    }
}

/// LMOVE source destination LEFT|RIGHT LEFT|RIGHT.
pub fn lmove(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let (from_left, to_left) = match (side(a, 3), side(a, 4)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    move_elem(db, now, a.arg(1), a.arg(2), from_left, to_left)
}

/// RPOPLPUSH source destination.
pub fn rpoplpush(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    move_elem(db, now, a.arg(1), a.arg(2), false, true)
}

/// LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]: pops from the first non-empty
/// list; replies `[key, [elements]]`, or a null array when every list is empty.
pub fn lmpop(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let numkeys = match parse_int(a.arg(1)) {
        Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        _ => return err("ERR numkeys should be greater than 0"),
    };
    let where_at = numkeys.saturating_add(2);
    if where_at >= a.len() {
        return err(SYNTAX);
    }
    let left = match side(a, where_at) {
        Ok(l) => l,
        Err(e) => return e,
    };
    let mut count: Option<usize> = None;
    let mut j = where_at + 1;
    while j < a.len() {
        if count.is_none() && a.is(j, "COUNT") && j + 1 < a.len() {
            j += 1;
            count = match parse_int(a.arg(j)) {
                Some(n) if n > 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                _ => return err("ERR count should be greater than 0"),
            };
        } else {
            return err(SYNTAX);
        }
        j += 1;
    }
    let count = count.unwrap_or(1);
    for i in 2..where_at {
        let key = a.arg(i);
        let len = match peek_list(db, key, now) {
            Ok(Some(l)) => l.len(),
            Ok(None) => continue,
            Err(w) => return w.into(),
        };
        if len == 0 {
            continue;
        }
        let n = count.min(len);
        let name: &'static [u8] = if left { b"LPOP" } else { b"RPOP" };
        let log: Vec<Bytes> = vec![
            Bytes::from_static(name),
            Bytes::copy_from_slice(key),
            Bytes::from(n.to_string()),
        ];
        let event = if left { "lpop" } else { "rpop" };
        let popped = db.edit_list(key, now, false, &log, |l| {
            let out: Vec<Vec<u8>> = (0..n).map_while(|_| pop_one(l, left)).collect();
            Edit::logged(out, event, log.clone())
        });
        return match popped {
            Ok(got) => OpResult::Reply(Resp::Array(vec![
                Resp::Bulk(Bytes::copy_from_slice(key)),
                Resp::Array(bulks(got.unwrap_or_default())),
            ])),
            Err(w) => w.into(),
        };
    }
    OpResult::NullArray
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_normalize_like_redis() {
        assert_eq!(norm_range(0, -1, 5), Some((0, 4)));
        assert_eq!(norm_range(-100, 100, 5), Some((0, 4)));
        assert_eq!(norm_range(3, 1, 5), None);
        assert_eq!(norm_range(5, 10, 5), None);
        assert_eq!(norm_range(-2, -1, 5), Some((3, 4)));
        assert_eq!(norm_range(i64::MIN, i64::MAX, 5), Some((0, 4)));
        assert_eq!(norm_range(0, i64::MIN, 5), None);
        assert_eq!(norm_range(0, 0, 0), None);
    }

    #[test]
    fn numkeys_spec_counts_lmpop_keys() {
        let spec = super::super::lookup(b"lmpop").expect("lmpop");
        let args = ["lmpop", "2", "a", "b", "LEFT", "COUNT", "3"];
        assert_eq!(spec.key_positions(&args).collect::<Vec<_>>(), vec![2, 3]);
    }
}
