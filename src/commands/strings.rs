//! The string family. Each keyed function runs on the shard that owns its key(s), with
//! Redis 7's option rules, reply shapes and error texts.

use bytes::Bytes;
use coreshard_engine::ttl::{Stored, ValueRef, INLINE_CAPACITY};
use coreshard_engine::{ConnId, Ctx};
use coreshard_protocol::Value as Resp;

use super::longdouble as ld;
use super::{parse_int, Args};
use crate::db::{Db, Value, WrongType};
use crate::server::ops::{Op, OpResult};
use crate::server::reply::Agg;
use crate::server::txn::TxnKind;
use crate::server::{ArgList, Server};

pub(crate) const NOT_INT: &str = "ERR value is not an integer or out of range";
pub(crate) const SYNTAX: &str = "ERR syntax error";
const MAX_STRING: usize = 512 * 1024 * 1024;

pub(crate) fn err(msg: &str) -> OpResult {
    OpResult::Error(msg.to_string())
}

pub(crate) fn invalid_expire(cmd: &str) -> OpResult {
    OpResult::Error(format!("ERR invalid expire time in '{cmd}' command"))
}

/// The value at argument `i`, stored inline (copied once into the entry) when it fits with
/// `key_len`, else as shared bytes (no copy when the argument is already owned).
fn value_arg(a: &dyn ArgList, i: usize, key_len: usize) -> Value<'_> {
    if key_len + a.arg(i).len() <= INLINE_CAPACITY {
        Value::Slice(a.arg(i))
    } else {
        Value::Shared(a.arg_bytes(i))
    }
}

/// Turn an expire amount into an absolute Unix-ms deadline, with Redis's overflow checks.
/// The result may be in the past (the key then expires at once).
pub(crate) fn to_deadline(
    amount: i64,
    seconds: bool,
    absolute: bool,
    now: u64,
    cmd: &str,
) -> Result<i64, OpResult> {
    let mut ms = amount;
    if seconds {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&ms) {
            return Err(invalid_expire(cmd));
        }
        ms *= 1000;
    }
    if !absolute {
        if ms > i64::MAX - now as i64 {
            return Err(invalid_expire(cmd));
        }
        ms += now as i64;
    }
    Ok(ms)
}

/// An expire option of SET/GETEX/SETEX: must be a positive integer.
fn positive_deadline(
    arg: &[u8],
    seconds: bool,
    absolute: bool,
    now: u64,
    cmd: &str,
) -> Result<i64, OpResult> {
    let n = parse_int(arg).ok_or_else(|| err(NOT_INT))?;
    if n <= 0 {
        return Err(invalid_expire(cmd));
    }
    to_deadline(n, seconds, absolute, now, cmd)
}

/// Which of `EX`, `PX`, `EXAT`, `PXAT` the word at `i` is. Redis lets an expire option
/// repeat (the last one counts) but not mix with another.
fn expire_kind(a: &dyn ArgList, i: usize) -> Option<usize> {
    ["EX", "PX", "EXAT", "PXAT"].iter().position(|w| a.is(i, w))
}

/// Parse `EX|PX|EXAT|PXAT <n>` at `i`; `Ok(None)` if the word is none of those.
fn expire_option(a: &dyn ArgList, i: usize, now: u64, cmd: &str) -> Result<Option<i64>, OpResult> {
    let (seconds, absolute) = if a.is(i, "EX") {
        (true, false)
    } else if a.is(i, "PX") {
        (false, false)
    } else if a.is(i, "EXAT") {
        (true, true)
    } else if a.is(i, "PXAT") {
        (false, true)
    } else {
        return Ok(None);
    };
    if i + 1 >= a.len() {
        return Err(err(SYNTAX));
    }
    positive_deadline(a.arg(i + 1), seconds, absolute, now, cmd).map(Some)
}

#[derive(Default)]
struct SetOpts {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    deadline: Option<i64>,
    /// Which expire option gave `deadline` ([`expire_kind`]).
    expire_kind: Option<usize>,
    ifeq: Option<Bytes>,
}

fn parse_set(a: &dyn ArgList, now: u64) -> Result<SetOpts, OpResult> {
    let mut o = SetOpts::default();
    let mut expire_at = None;
    let mut i = 3;
    while i < a.len() {
        if a.is(i, "NX") && !o.xx && o.ifeq.is_none() {
            o.nx = true;
        } else if a.is(i, "XX") && !o.nx && o.ifeq.is_none() {
            o.xx = true;
        } else if a.is(i, "GET") {
            o.get = true;
        } else if a.is(i, "KEEPTTL") && o.expire_kind.is_none() {
            o.keepttl = true;
        } else if a.is(i, "IFEQ") && !o.nx && !o.xx && o.ifeq.is_none() && i + 1 < a.len() {
            o.ifeq = Some(a.arg_bytes(i + 1));
            i += 1;
        } else if !o.keepttl
            && expire_kind(a, i).is_some()
            && (o.expire_kind.is_none() || expire_kind(a, i) == o.expire_kind)
            && i + 1 < a.len()
        {
            // Only the last one's value is checked (after the syntax), as in Redis.
            o.expire_kind = expire_kind(a, i);
            expire_at = Some(i);
            i += 1;
        } else {
            return Err(err(SYNTAX));
        }
        i += 1;
    }
    if let Some(j) = expire_at {
        o.deadline = expire_option(a, j, now, "set")?;
    }
    Ok(o)
}

/// Store `value` with `deadline` (<= now: the key is removed instead).
fn store(db: &mut Db, key: &[u8], value: &Value<'_>, deadline: i64, now: u64) {
    if deadline != 0 && deadline <= now as i64 {
        db.remove(key, now);
    } else {
        db.write(key, value, deadline.max(0) as u64, now);
    }
}

pub fn get(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_bytes(a.arg(1), now) {
        Ok(v) => OpResult::Value(v),
        Err(w) => w.into(),
    }
}

pub fn set(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let o = match parse_set(a, now) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let key = a.arg(1);
    let current = db.get_with_deadline(key, now);
    if (o.get || o.ifeq.is_some()) && matches!(current, Some((Stored::Object(_), _))) {
        return WrongType.into();
    }
    let current = current.map(|(v, d)| (v.bytes().unwrap_or(ValueRef::Inline(&[])), d));
    let exists = current.is_some();
    let old_deadline = current.map_or(0, |(_, d)| d);
    let old = if o.get {
        current.map(|(v, _)| v.to_bytes())
    } else {
        None
    };
    let ifeq_ok = match (&o.ifeq, current) {
        (Some(expected), Some((v, _))) => v.as_slice() == &expected[..],
        (Some(_), None) => false,
        (None, _) => true,
    };
    let skip = (o.nx && exists) || (o.xx && !exists) || !ifeq_ok;
    if !skip {
        if o.keepttl {
            // The deadline it had is no `expire` event.
            db.write_keeping_deadline(key, &value_arg(a, 2, key.len()), old_deadline, now);
        } else {
            store(
                db,
                key,
                &value_arg(a, 2, key.len()),
                o.deadline.unwrap_or(0),
                now,
            );
        }
    }
    match (o.get, skip) {
        (true, _) => OpResult::Value(old),
        (false, false) => OpResult::Ok,
        (false, true) => OpResult::Value(None),
    }
}

pub fn setnx(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let key = a.arg(1);
    if db.contains(key, now) {
        return OpResult::Int(0);
    }
    store(db, key, &value_arg(a, 2, key.len()), 0, now);
    OpResult::Int(1)
}

fn setex_generic(db: &mut Db, now: u64, a: &dyn ArgList, seconds: bool, cmd: &str) -> OpResult {
    let deadline = match positive_deadline(a.arg(2), seconds, false, now, cmd) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let key = a.arg(1);
    store(db, key, &value_arg(a, 3, key.len()), deadline, now);
    OpResult::Ok
}

pub fn setex(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    setex_generic(db, now, a, true, "setex")
}

pub fn psetex(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    setex_generic(db, now, a, false, "psetex")
}

pub fn getex(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    // None: leave the deadline; Some(0): PERSIST; Some(d): new deadline.
    let mut change: Option<i64> = None;
    // Which option gave `change` (4: PERSIST); the same one may repeat, as in Redis.
    let mut kind: Option<usize> = None;
    let mut expire_at = None;
    let mut i = 2;
    while i < a.len() {
        if a.is(i, "PERSIST") && kind.is_none_or(|k| k == 4) {
            change = Some(0);
            kind = Some(4);
        } else if expire_kind(a, i).is_some()
            && (kind.is_none() || expire_kind(a, i) == kind)
            && i + 1 < a.len()
        {
            kind = expire_kind(a, i);
            expire_at = Some(i);
            i += 1;
        } else {
            return err(SYNTAX);
        }
        i += 1;
    }
    let key = a.arg(1);
    let value = match db.read_bytes(key, now) {
        Ok(Some(v)) => v,
        Ok(None) => return OpResult::Value(None),
        Err(w) => return w.into(),
    };
    // Only the last expire option's value is checked, after the syntax and the key's
    // lookup, as in Redis.
    if let Some(j) = expire_at.filter(|_| kind != Some(4)) {
        match expire_option(a, j, now, "getex") {
            Ok(d) => change = d,
            Err(e) => return e,
        }
    }
    match change {
        // As PERSIST: only a key with a TTL changes (and raises `persist`).
        Some(0) if db.deadline(key, now).is_some_and(|d| d != 0) => {
            db.set_deadline(key, 0, now);
        }
        Some(0) => {}
        Some(d) if d <= now as i64 => {
            db.remove(key, now);
        }
        Some(d) => {
            db.set_deadline(key, d as u64, now);
        }
        None => {}
    }
    OpResult::Value(Some(value))
}

pub fn getdel(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let v = match db.read_bytes(a.arg(1), now) {
        Ok(v) => v,
        Err(w) => return w.into(),
    };
    if v.is_some() {
        db.remove(a.arg(1), now);
    }
    OpResult::Value(v)
}

pub fn getset(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let key = a.arg(1);
    // Read as GET reads it (a hit or a miss), as Redis's GETSET does.
    let old = match db.read_str(key, now) {
        Ok(v) => v.map(|v| v.to_bytes()),
        Err(w) => return w.into(),
    };
    store(db, key, &value_arg(a, 2, key.len()), 0, now);
    OpResult::Value(old)
}

pub fn mget(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let groups = s.group_by_shard(args[1..].iter().map(|a| &a[..]));
    let mut parts = Vec::with_capacity(groups.len());
    let mut positions = Vec::with_capacity(groups.len());
    for g in groups {
        parts.push((g.shard, Op::MGet(g.keys)));
        positions.push(g.positions);
    }
    let agg = Agg::MGet {
        values: vec![None; args.len() - 1],
        positions,
    };
    s.run_parts(ctx, conn, parts, agg);
}

pub fn mset(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    if args.len() % 2 == 0 {
        return s.error(
            ctx,
            conn,
            "ERR wrong number of arguments for 'mset' command",
        );
    }
    let pairs: Vec<(&[u8], &[u8])> = args[1..]
        .chunks(2)
        .map(|c| (&c[0][..], &c[1][..]))
        .collect();
    let groups = s.group_by_shard(pairs.iter().map(|p| p.0));
    let parts = groups
        .into_iter()
        .map(|g| {
            let kvs = g
                .positions
                .iter()
                .map(|&i| (pairs[i].0, s.arg_bytes(pairs[i].1)))
                .collect();
            (g.shard, Op::MSet(kvs))
        })
        .collect();
    s.run_parts(ctx, conn, parts, Agg::AllOk);
}

/// MSETNX with every key on one shard: atomic there.
pub fn msetnx(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    if a.len() % 2 == 0 {
        return err("ERR wrong number of arguments for 'msetnx' command");
    }
    if (1..a.len()).step_by(2).any(|i| db.contains(a.arg(i), now)) {
        return OpResult::Int(0);
    }
    for i in (1..a.len()).step_by(2) {
        let key = a.arg(i);
        store(db, key, &value_arg(a, i + 1, key.len()), 0, now);
    }
    OpResult::Int(1)
}

/// MSETNX whose keys span shards: all-or-nothing through a transaction.
pub fn msetnx_cross(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    if args.len() % 2 == 0 {
        return s.error(
            ctx,
            conn,
            "ERR wrong number of arguments for 'msetnx' command",
        );
    }
    let pairs = args[1..]
        .chunks(2)
        .map(|c| (Bytes::copy_from_slice(&c[0]), Bytes::copy_from_slice(&c[1])))
        .collect();
    s.begin_txn(ctx, conn, TxnKind::MSetNx(pairs));
}

pub fn append(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let (key, data) = (a.arg(1), a.arg(2));
    let current = match db.get_str(key, now) {
        Ok(v) => v.map_or(0, |v| v.len()),
        Err(w) => return w.into(),
    };
    if current.saturating_add(data.len()) > MAX_STRING {
        return err("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    }
    // Grows the stored value in place (amortised), keeping its deadline.
    OpResult::Int(db.append(key, data, now) as i64)
}

pub fn strlen(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_str(a.arg(1), now) {
        Ok(v) => OpResult::Int(v.map_or(0, |v| v.len() as i64)),
        Err(w) => w.into(),
    }
}

pub fn getrange(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let (Some(mut start), Some(mut end)) = (parse_int(a.arg(2)), parse_int(a.arg(3))) else {
        return err(NOT_INT);
    };
    let v = match db.read_str(a.arg(1), now) {
        Ok(Some(v)) => v,
        Ok(None) => return OpResult::Value(Some(Bytes::new())),
        Err(w) => return w.into(),
    };
    let s = v.as_slice();
    let len = s.len() as i64;
    if start < 0 && end < 0 && start > end {
        return OpResult::Value(Some(Bytes::new()));
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if len == 0 || start > end {
        return OpResult::Value(Some(Bytes::new()));
    }
    OpResult::Value(Some(Bytes::copy_from_slice(
        &s[start as usize..=end as usize],
    )))
}

pub fn setrange(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let Some(offset) = parse_int(a.arg(2)) else {
        return err(NOT_INT);
    };
    if offset < 0 {
        return err("ERR offset is out of range");
    }
    let key = a.arg(1);
    let patch = a.arg(3);
    let current = match db.get_str(key, now) {
        Ok(v) => v.map_or(0, |v| v.len() as i64),
        Err(w) => return w.into(),
    };
    if patch.is_empty() {
        return OpResult::Int(current);
    }
    let Ok(offset) = usize::try_from(offset) else {
        return err("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    };
    if offset.saturating_add(patch.len()) > MAX_STRING {
        return err("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    }
    // Writes into the stored value in place (growing it amortised), keeping its deadline.
    OpResult::Int(db.setrange(key, offset, patch, now) as i64)
}

fn incr_generic(db: &mut Db, now: u64, key: &[u8], by: i64) -> OpResult {
    let (current, deadline) = match db.get_str_with_deadline(key, now) {
        Ok(Some((v, d))) => match parse_int(v.as_slice()) {
            Some(n) => (n, d),
            None => return err(NOT_INT),
        },
        Ok(None) => (0, 0),
        Err(w) => return w.into(),
    };
    let Some(next) = current.checked_add(by) else {
        return err("ERR increment or decrement would overflow");
    };
    let mut buf = itoa::Buffer::new();
    let value = Value::Slice(buf.format(next).as_bytes());
    db.write_keeping_deadline(key, &value, deadline, now);
    OpResult::Int(next)
}

pub fn incr(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    incr_generic(db, now, a.arg(1), 1)
}

pub fn decr(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    incr_generic(db, now, a.arg(1), -1)
}

pub fn incrby(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match parse_int(a.arg(2)) {
        Some(by) => incr_generic(db, now, a.arg(1), by),
        None => err(NOT_INT),
    }
}

pub fn decrby(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match parse_int(a.arg(2)) {
        Some(i64::MIN) => err("ERR decrement would overflow"),
        Some(by) => incr_generic(db, now, a.arg(1), -by),
        None => err(NOT_INT),
    }
}

pub fn incrbyfloat(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    // In Redis's `long double` arithmetic, exactly (0.1 + 0.2 answers 0.3, as in Redis).
    let Some(by) = ld::parse(a.arg(2)) else {
        return err("ERR value is not a valid float");
    };
    let key = a.arg(1);
    let (current, deadline) = match db.get_str_with_deadline(key, now) {
        Err(w) => return w.into(),
        Ok(None) => (ld::Ld::ZERO, 0),
        Ok(Some((v, d))) => match ld::parse(v.as_slice()) {
            Some(x) => (x, d),
            None => return err("ERR value is not a valid float"),
        },
    };
    let text = match ld::add(current, by) {
        ld::Ld::Inf { .. } => return err("ERR increment would produce NaN or Infinity"),
        sum => ld::format_human(sum),
    };
    db.write_keeping_deadline(key, &Value::Slice(text.as_bytes()), deadline, now);
    OpResult::Value(Some(Bytes::from(text)))
}

/// LCS options.
#[derive(Debug, Clone, Copy, Default)]
pub struct LcsOpts {
    len: bool,
    idx: bool,
    min_match_len: u64,
    with_match_len: bool,
}

fn parse_lcs(a: &dyn ArgList) -> Result<LcsOpts, OpResult> {
    let mut o = LcsOpts::default();
    let mut i = 3;
    while i < a.len() {
        if a.is(i, "LEN") {
            o.len = true;
        } else if a.is(i, "IDX") {
            o.idx = true;
        } else if a.is(i, "WITHMATCHLEN") {
            o.with_match_len = true;
        } else if a.is(i, "MINMATCHLEN") && i + 1 < a.len() {
            let n = parse_int(a.arg(i + 1)).ok_or_else(|| err(NOT_INT))?;
            o.min_match_len = n.max(0) as u64;
            i += 1;
        } else {
            return Err(err(SYNTAX));
        }
        i += 1;
    }
    if o.len && o.idx {
        return Err(err(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    Ok(o)
}

/// The LCS reply for `a` and `b`, computed exactly as Redis walks its DP table.
pub fn lcs_reply(o: &LcsOpts, a: &[u8], b: &[u8]) -> Resp {
    let (alen, blen) = (a.len(), b.len());
    if (alen as u64 + 1) * (blen as u64 + 1) * 4 > MAX_STRING as u64 {
        return Resp::Error(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len".into(),
        );
    }
    let w = blen + 1;
    let mut dp = vec![0u32; (alen + 1) * w];
    for i in 1..=alen {
        for j in 1..=blen {
            dp[i * w + j] = if a[i - 1] == b[j - 1] {
                dp[(i - 1) * w + j - 1] + 1
            } else {
                dp[(i - 1) * w + j].max(dp[i * w + j - 1])
            };
        }
    }
    let total = dp[alen * w + blen] as usize;
    let mut result = vec![0u8; total];
    let mut idx = total;
    let (mut i, mut j) = (alen, blen);
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (alen, 0usize, 0usize, 0usize);
    let mut matches = Vec::new();
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            result[idx - 1] = a[i - 1];
            if a_start == alen {
                (a_start, a_end, b_start, b_end) = (i - 1, i - 1, j - 1, j - 1);
            } else if a_start == i && b_start == j {
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if dp[(i - 1) * w + j] > dp[i * w + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            if a_start != alen {
                emit = true;
            }
        }
        if emit {
            let match_len = (a_end - a_start + 1) as u64;
            if o.min_match_len == 0 || match_len >= o.min_match_len {
                let mut m = vec![
                    Resp::Array(vec![
                        Resp::Integer(a_start as i64),
                        Resp::Integer(a_end as i64),
                    ]),
                    Resp::Array(vec![
                        Resp::Integer(b_start as i64),
                        Resp::Integer(b_end as i64),
                    ]),
                ];
                if o.with_match_len {
                    m.push(Resp::Integer(match_len as i64));
                }
                matches.push(Resp::Array(m));
            }
            a_start = alen;
        }
    }
    if o.idx {
        Resp::Map(vec![
            (
                Resp::Bulk(Bytes::from_static(b"matches")),
                Resp::Array(matches),
            ),
            (
                Resp::Bulk(Bytes::from_static(b"len")),
                Resp::Integer(total as i64),
            ),
        ])
    } else if o.len {
        Resp::Integer(total as i64)
    } else {
        Resp::Bulk(Bytes::from(result))
    }
}

pub fn lcs(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let o = match parse_lcs(a) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let x = match db.read_bytes(a.arg(1), now) {
        Ok(v) => v.unwrap_or_default(),
        Err(w) => return w.into(),
    };
    let y = match db.read_bytes(a.arg(2), now) {
        Ok(v) => v.unwrap_or_default(),
        Err(w) => return w.into(),
    };
    OpResult::Reply(lcs_reply(&o, &x, &y))
}

/// LCS whose keys live on two shards: gather both values, compute here. (Two reads, not
/// one atomic snapshot: give the keys a common hash tag when that matters.)
pub fn lcs_cross(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let a: &[std::borrow::Cow<'_, [u8]>] = args;
    let opts = match parse_lcs(&a) {
        Ok(o) => o,
        Err(OpResult::Error(e)) => return s.error(ctx, conn, &e),
        Err(_) => return,
    };
    let (k1, k2): (&[u8], &[u8]) = (&args[1], &args[2]);
    let parts = vec![
        (s.slots.shard_of(k1), Op::Read(k1)),
        (s.slots.shard_of(k2), Op::Read(k2)),
    ];
    s.run_parts(
        ctx,
        conn,
        parts,
        Agg::Lcs {
            opts,
            inputs: [None, None],
        },
    );
}

pub fn delifeq(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let key = a.arg(1);
    let equal = match db.get_str(key, now) {
        Ok(v) => v.is_some_and(|v| v.as_slice() == a.arg(2)),
        Err(w) => return w.into(),
    };
    if equal {
        db.remove(key, now);
    }
    OpResult::Int(i64::from(equal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcs_matches_redis_examples() {
        let o = LcsOpts::default();
        assert_eq!(
            lcs_reply(&o, b"ohmytext", b"mynewtext"),
            Resp::Bulk(Bytes::from_static(b"mytext"))
        );
        let len = LcsOpts { len: true, ..o };
        assert_eq!(lcs_reply(&len, b"ohmytext", b"mynewtext"), Resp::Integer(6));
        let idx = LcsOpts {
            idx: true,
            with_match_len: true,
            ..o
        };
        let Resp::Map(pairs) = lcs_reply(&idx, b"ohmytext", b"mynewtext") else {
            panic!()
        };
        let Resp::Array(matches) = &pairs[0].1 else {
            panic!()
        };
        let ranges = |m: &Resp| format!("{m:?}");
        assert_eq!(matches.len(), 2);
        assert!(
            ranges(&matches[0]).contains("Integer(4), Integer(7)")
                && ranges(&matches[0]).contains("Integer(5), Integer(8)")
        );
        assert!(
            ranges(&matches[1]).contains("Integer(2), Integer(3)")
                && ranges(&matches[1]).contains("Integer(0), Integer(1)")
        );
        assert_eq!(pairs[1].1, Resp::Integer(6));
        let min = LcsOpts {
            idx: true,
            min_match_len: 4,
            ..o
        };
        let Resp::Map(pairs) = lcs_reply(&min, b"ohmytext", b"mynewtext") else {
            panic!()
        };
        assert_eq!(
            pairs[0].1,
            Resp::Array(vec![Resp::Array(vec![
                Resp::Array(vec![Resp::Integer(4), Resp::Integer(7)]),
                Resp::Array(vec![Resp::Integer(5), Resp::Integer(8)]),
            ])])
        );
    }

    #[test]
    fn incrbyfloat_adds_like_redis_long_double() {
        let mut db = Db::default();
        let run = |db: &mut Db, by: &str| -> OpResult {
            let args: Vec<Bytes> = ["INCRBYFLOAT", "f", by]
                .iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect();
            incrbyfloat(db, 1, &args)
        };
        let text = |r: OpResult| match r {
            OpResult::Value(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            other => format!("{other:?}"),
        };
        assert_eq!(text(run(&mut db, "0.1")), "0.1");
        assert_eq!(text(run(&mut db, "0.2")), "0.3", "not 0.30000000000000004");
        assert_eq!(
            text(run(&mut db, "5.0e3")),
            "5000.29999999999999982",
            "Redis 7.0.15 says so too"
        );
        assert!(text(run(&mut db, " 1")).contains("not a valid float"));
        assert!(text(run(&mut db, "nan")).contains("not a valid float"));
        assert!(text(run(&mut db, "inf")).contains("NaN or Infinity"));
    }
}
