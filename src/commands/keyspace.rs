//! Keys as a whole: DEL/UNLINK/EXISTS/TOUCH, TYPE, expiry, KEYS, SCAN, RANDOMKEY, RENAME,
//! RENAMENX, COPY.

use bytes::Bytes;
use coreshard_engine::{ConnId, Ctx};

use super::strings::{err, to_deadline, NOT_INT, SYNTAX};
use super::{parse_int, Args};
use crate::db::Db;
use crate::server::ops::{Op, OpResult};
use crate::server::reply::Agg;
use crate::server::txn::TxnKind;
use crate::server::{ArgList, Server};

/// Bits of a SCAN cursor that name the shard; the rest is the slot within it.
const SHARD_BITS: u32 = 10;

/// The cursor to return after shard `shard` answered with its next slot `next` (0: done).
pub fn scan_cursor(shard: usize, next: u64, shards: usize) -> u64 {
    if next == 0 {
        if shard + 1 < shards {
            (shard + 1) as u64
        } else {
            0
        }
    } else {
        (next << SHARD_BITS) | shard as u64
    }
}

fn counting(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args, delete: bool) {
    let groups = s.group_by_shard(args[1..].iter().map(|a| &a[..]));
    let parts = groups
        .into_iter()
        .map(|g| {
            (
                g.shard,
                if delete {
                    Op::Del(g.keys)
                } else {
                    Op::Exists(g.keys)
                },
            )
        })
        .collect();
    s.run_parts(ctx, conn, parts, Agg::Sum(0));
}

/// DEL and UNLINK (values are freed on the owning shard either way).
pub fn del(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    counting(s, ctx, conn, args, true);
}

/// EXISTS and TOUCH (no access-time tracking exists to update).
pub fn exists(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    counting(s, ctx, conn, args, false);
}

pub fn type_(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let t = db.type_of(a.arg(1), now);
    db.count_lookup(a.arg(1), t != "none");
    OpResult::Reply(coreshard_protocol::Value::Simple(t.into()))
}

fn expire_generic(
    db: &mut Db,
    now: u64,
    a: &dyn ArgList,
    seconds: bool,
    absolute: bool,
    cmd: &str,
) -> OpResult {
    let Some(amount) = parse_int(a.arg(2)) else {
        return err(NOT_INT);
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for i in 3..a.len() {
        if a.is(i, "NX") {
            nx = true;
        } else if a.is(i, "XX") {
            xx = true;
        } else if a.is(i, "GT") {
            gt = true;
        } else if a.is(i, "LT") {
            lt = true;
        } else {
            let opt = String::from_utf8_lossy(a.arg(i)).into_owned();
            return OpResult::Error(format!("ERR Unsupported option {opt}"));
        }
    }
    if nx && (xx || gt || lt) {
        return err("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return err("ERR GT and LT options at the same time are not compatible");
    }
    let when = match to_deadline(amount, seconds, absolute, now, cmd) {
        Ok(w) => w,
        Err(e) => return e,
    };
    let key = a.arg(1);
    let Some(current) = db.deadline(key, now) else {
        return OpResult::Int(0);
    };
    let has = current != 0;
    let refused = (nx && has)
        || (xx && !has)
        || (gt && (!has || when <= current as i64))
        || (lt && has && when >= current as i64);
    if refused {
        return OpResult::Int(0);
    }
    if when <= now as i64 {
        db.remove(key, now);
    } else {
        db.set_deadline(key, when as u64, now);
    }
    OpResult::Int(1)
}

pub fn expire(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    expire_generic(db, now, a, true, false, "expire")
}

pub fn pexpire(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    expire_generic(db, now, a, false, false, "pexpire")
}

pub fn expireat(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    expire_generic(db, now, a, true, true, "expireat")
}

pub fn pexpireat(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    expire_generic(db, now, a, false, true, "pexpireat")
}

/// -2 when the key is missing, -1 without a deadline, else `f(deadline)`.
fn ttl_generic(db: &mut Db, now: u64, a: &dyn ArgList, f: impl Fn(u64) -> i64) -> OpResult {
    let deadline = db.deadline(a.arg(1), now);
    db.count_lookup(a.arg(1), deadline.is_some());
    match deadline {
        None => OpResult::Int(-2),
        Some(0) => OpResult::Int(-1),
        Some(d) => OpResult::Int(f(d)),
    }
}

pub fn ttl(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    ttl_generic(db, now, a, |d| ((d - now + 500) / 1000) as i64)
}

pub fn pttl(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    ttl_generic(db, now, a, |d| (d - now) as i64)
}

pub fn expiretime(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    ttl_generic(db, now, a, |d| (d / 1000) as i64)
}

pub fn pexpiretime(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    ttl_generic(db, now, a, |d| d as i64)
}

pub fn persist(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.deadline(a.arg(1), now) {
        Some(d) if d != 0 => {
            db.set_deadline(a.arg(1), 0, now);
            OpResult::Int(1)
        }
        _ => OpResult::Int(0),
    }
}

pub fn keys(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let pattern = Bytes::copy_from_slice(&args[1]);
    s.broadcast(
        ctx,
        conn,
        || Op::Keys(pattern.clone()),
        Agg::Keys(Vec::new()),
    );
}

pub fn scan(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let Some(cursor) = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
    else {
        return s.error(ctx, conn, "ERR invalid cursor");
    };
    let mut count = 10usize;
    let mut pattern = None;
    let mut type_name = None;
    let mut i = 2;
    while i < args.len() {
        let more = i + 1 < args.len();
        if args[i].eq_ignore_ascii_case(b"COUNT") && more {
            match parse_int(&args[i + 1]) {
                Some(n) if n >= 1 => count = n as usize,
                Some(_) => return s.error(ctx, conn, SYNTAX),
                None => return s.error(ctx, conn, NOT_INT),
            }
        } else if args[i].eq_ignore_ascii_case(b"MATCH") && more {
            pattern = Some(Bytes::copy_from_slice(&args[i + 1]));
        } else if args[i].eq_ignore_ascii_case(b"TYPE") && more {
            type_name = Some(Bytes::from(args[i + 1].to_ascii_lowercase()));
        } else {
            return s.error(ctx, conn, SYNTAX);
        }
        i += 2;
    }
    let shard = (cursor & ((1 << SHARD_BITS) - 1)) as usize;
    let slot = cursor >> SHARD_BITS;
    if shard >= s.shards {
        return s.reply(ctx, conn, |e| {
            e.array(2);
            e.bulk(b"0");
            e.array(0);
        });
    }
    let op = Op::Scan {
        cursor: slot,
        count,
        pattern,
        type_name,
    };
    s.run_parts(
        ctx,
        conn,
        vec![(shard, op)],
        Agg::Scan { shard, page: None },
    );
}

pub fn randomkey(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, _args: Args) {
    s.broadcast(ctx, conn, || Op::RandomKey, Agg::Random(Vec::new()));
}

/// RENAME/RENAMENX with both keys on one shard.
fn rename_local(db: &mut Db, now: u64, a: &dyn ArgList, nx: bool) -> OpResult {
    let (src, dst) = (a.arg(1), a.arg(2));
    if !db.contains(src, now) {
        return err("ERR no such key");
    }
    if src == dst {
        return if nx { OpResult::Int(0) } else { OpResult::Ok };
    }
    if nx && db.contains(dst, now) {
        return OpResult::Int(0);
    }
    // Moved, not copied; journaled as one record (DEL src, then dst's whole value).
    db.atomically(|db| {
        db.announce_new(dst, now);
        if let Some((value, deadline)) = db.remove(src, now) {
            db.write_owned(dst, value, deadline, now);
        }
    });
    if nx {
        OpResult::Int(1)
    } else {
        OpResult::Ok
    }
}

pub fn rename(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    rename_local(db, now, a, false)
}

pub fn renamenx(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    rename_local(db, now, a, true)
}

pub fn rename_cross(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let (src, dst) = (
        Bytes::copy_from_slice(&args[1]),
        Bytes::copy_from_slice(&args[2]),
    );
    s.begin_txn(
        ctx,
        conn,
        TxnKind::Rename {
            src,
            dst,
            nx: false,
        },
    );
}

pub fn renamenx_cross(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let (src, dst) = (
        Bytes::copy_from_slice(&args[1]),
        Bytes::copy_from_slice(&args[2]),
    );
    s.begin_txn(ctx, conn, TxnKind::Rename { src, dst, nx: true });
}

/// COPY's options: `Ok(replace)` or the error to send.
fn copy_opts(a: &dyn ArgList) -> Result<bool, OpResult> {
    let mut replace = false;
    let mut i = 3;
    while i < a.len() {
        if a.is(i, "REPLACE") {
            replace = true;
        } else if a.is(i, "DB") && i + 1 < a.len() {
            match parse_int(a.arg(i + 1)) {
                Some(0) => {}
                Some(_) => return Err(err("ERR DB index is out of range")),
                None => return Err(err(NOT_INT)),
            }
            i += 1;
        } else {
            return Err(err(SYNTAX));
        }
        i += 1;
    }
    if a.arg(1) == a.arg(2) {
        return Err(err("ERR source and destination objects are the same"));
    }
    Ok(replace)
}

pub fn copy(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let replace = match copy_opts(a) {
        Ok(r) => r,
        Err(e) => return e,
    };
    // The source is read (a hit or a miss), the destination looked up as a write.
    if !db.exists(a.arg(1), now) || (!replace && db.contains(a.arg(2), now)) {
        return OpResult::Int(0);
    }
    let Some((value, deadline)) = db.get_owned(a.arg(1), now) else {
        return OpResult::Int(0);
    };
    db.announce_new(a.arg(2), now);
    db.write_owned(a.arg(2), value, deadline, now);
    OpResult::Int(1)
}

pub fn copy_cross(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let a: &[std::borrow::Cow<'_, [u8]>] = args;
    let replace = match copy_opts(&a) {
        Ok(r) => r,
        Err(OpResult::Error(e)) => return s.error(ctx, conn, &e),
        Err(_) => return,
    };
    let (src, dst) = (
        Bytes::copy_from_slice(&args[1]),
        Bytes::copy_from_slice(&args[2]),
    );
    s.begin_txn(ctx, conn, TxnKind::Copy { src, dst, replace });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_cursors_walk_shards_in_order() {
        assert_eq!(scan_cursor(0, 0, 1), 0);
        assert_eq!(scan_cursor(0, 0, 4), 1);
        assert_eq!(scan_cursor(3, 0, 4), 0);
        let c = scan_cursor(2, 77, 4);
        assert_eq!(c & 1023, 2);
        assert_eq!(c >> 10, 77);
    }
}
