//! Blocking pops: BLPOP, BRPOP, BLMPOP, BLMOVE, BRPOPLPUSH on lists, BZPOPMIN, BZPOPMAX,
//! BZMPOP on sorted sets. Each has a keyed
//! form that never blocks (what Redis does inside MULTI) and an `exec` form that blocks
//! through `crate::server::blocking` when no list has an element.

use bytes::Bytes;
use coreshard_engine::{ConnId, Ctx};

use super::{parse_int, Args, Spec};
use crate::db::Db;
use crate::server::blocking::{parse_timeout, pop_now, BlockOp};
use crate::server::ops::{unix_ms, OpResult};
use crate::server::{ArgList, Server};

const LIST: &str = "list";
const ZSET: &str = "sorted-set";
const BW: &[&str] = &["write", "blocking"];
const BWD: &[&str] = &["write", "denyoom", "blocking"];
const BWF: &[&str] = &["write", "fast", "blocking"];
/// BLPOP/BRPOP keys: every argument but the last (the timeout).
const KEYS_BUT_LAST: (i32, i32, i32) = (1, -2, 1);

/// The family's commands.
pub static COMMANDS: &[Spec] = &[
    Spec::keyed("blpop", -3, BW, KEYS_BUT_LAST, (LIST, "2.0.0", "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped."), blpop_now).exec(blpop),
    Spec::keyed("brpop", -3, BW, KEYS_BUT_LAST, (LIST, "2.0.0", "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped."), brpop_now).exec(brpop),
    Spec::keyed("blmove", 6, BWD, (1, 2, 1), (LIST, "6.2.0", "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved."), blmove_now).exec(blmove),
    Spec::keyed("brpoplpush", 4, BWD, (1, 2, 1), (LIST, "2.2.0", "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise. Deletes the list if the last element was popped."), brpoplpush_now).exec(brpoplpush),
    // Keys are counted by `numkeys`; COMMAND reports them through key specs in Redis.
    Spec::keyed("blmpop", -5, BW, (0, 0, 0), (LIST, "7.0.0", "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped."), blmpop_now).numkeys(2).exec(blmpop),
    Spec::keyed("bzpopmin", -3, BWF, KEYS_BUT_LAST, (ZSET, "5.0.0", "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped."), bzpopmin_now).exec(bzpopmin),
    Spec::keyed("bzpopmax", -3, BWF, KEYS_BUT_LAST, (ZSET, "5.0.0", "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member available otherwise.  Deletes the sorted set if the last element was popped."), bzpopmax_now).exec(bzpopmax),
    Spec::keyed("bzmpop", -5, BW, (0, 0, 0), (ZSET, "7.0.0", "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped."), bzmpop_now).numkeys(2).exec(bzmpop),
];

/// A parsed blocking command: keys in order, what to do, timeout in ms (0 = forever).
struct Parsed {
    keys: Vec<Bytes>,
    op: BlockOp,
    timeout: u64,
}

const LEFT_RIGHT: [&str; 2] = ["LEFT", "RIGHT"];

/// Which of two `ends` (LEFT|RIGHT, MIN|MAX) argument `i` names: `true` for the first.
fn which_end(a: &dyn ArgList, i: usize, ends: [&str; 2]) -> Result<bool, OpResult> {
    if a.is(i, ends[0]) {
        Ok(true)
    } else if a.is(i, ends[1]) {
        Ok(false)
    } else {
        Err(OpResult::Error("ERR syntax error".into()))
    }
}

/// BLPOP, BRPOP, BZPOPMIN, BZPOPMAX: `key [key ...] timeout`, popping one with `op`.
fn parse_keys_timeout(a: &dyn ArgList, op: BlockOp) -> Result<Parsed, OpResult> {
    let timeout = parse_timeout(a.arg(a.len() - 1))?;
    let keys = (1..a.len() - 1).map(|i| a.arg_bytes(i)).collect();
    Ok(Parsed { keys, op, timeout })
}

fn parse_pop(a: &dyn ArgList, left: bool) -> Result<Parsed, OpResult> {
    parse_keys_timeout(a, BlockOp::Pop { left, count: None })
}

fn parse_move(
    a: &dyn ArgList,
    from_left: bool,
    to_left: bool,
    t: usize,
) -> Result<Parsed, OpResult> {
    let timeout = parse_timeout(a.arg(t))?;
    Ok(Parsed {
        keys: vec![a.arg_bytes(1)],
        op: BlockOp::Move {
            dst: a.arg_bytes(2),
            from_left,
            to_left,
        },
        timeout,
    })
}

fn parse_blmove(a: &dyn ArgList) -> Result<Parsed, OpResult> {
    let from_left = which_end(a, 3, LEFT_RIGHT)?;
    let to_left = which_end(a, 4, LEFT_RIGHT)?;
    parse_move(a, from_left, to_left, 5)
}

/// BLMPOP / BZMPOP: `timeout numkeys key [key ...] WHERE [COUNT count]`, where WHERE is
/// one of `ends` (LEFT|RIGHT or MIN|MAX); `op` builds the pop from the end chosen (the
/// first of `ends` is `true`) and the count.
fn parse_mpop(
    a: &dyn ArgList,
    ends: [&str; 2],
    op: fn(bool, u64) -> BlockOp,
) -> Result<Parsed, OpResult> {
    let timeout = parse_timeout(a.arg(1))?;
    let numkeys = match parse_int(a.arg(2)) {
        Some(n) if n > 0 => n as usize,
        _ => {
            return Err(OpResult::Error(
                "ERR numkeys should be greater than 0".into(),
            ))
        }
    };
    let where_at = 3 + numkeys;
    if where_at >= a.len() {
        return Err(OpResult::Error("ERR syntax error".into()));
    }
    let keys = (3..where_at).map(|i| a.arg_bytes(i)).collect();
    let first_end = which_end(a, where_at, ends)?;
    let mut count = 1u64;
    let mut i = where_at + 1;
    let mut seen_count = false;
    while i < a.len() {
        if a.is(i, "COUNT") && i + 1 < a.len() && !seen_count {
            count = match parse_int(a.arg(i + 1)) {
                Some(n) if n > 0 => n as u64,
                _ => return Err(OpResult::Error("ERR count should be greater than 0".into())),
            };
            seen_count = true;
            i += 2;
        } else {
            return Err(OpResult::Error("ERR syntax error".into()));
        }
    }
    Ok(Parsed {
        keys,
        op: op(first_end, count),
        timeout,
    })
}

fn parse_blmpop(a: &dyn ArgList) -> Result<Parsed, OpResult> {
    parse_mpop(a, LEFT_RIGHT, |left, count| BlockOp::Pop {
        left,
        count: Some(count),
    })
}

fn parse_zpop(a: &dyn ArgList, max: bool) -> Result<Parsed, OpResult> {
    parse_keys_timeout(a, BlockOp::ZPop { max, count: None })
}

fn parse_bzmpop(a: &dyn ArgList) -> Result<Parsed, OpResult> {
    parse_mpop(a, ["MIN", "MAX"], |min, count| BlockOp::ZPop {
        max: !min,
        count: Some(count),
    })
}

/// Run without blocking (inside MULTI, or on the shard owning every key).
fn run_now(db: &mut Db, now: u64, p: Result<Parsed, OpResult>) -> OpResult {
    let p = match p {
        Ok(p) => p,
        Err(e) => return e,
    };
    let keys: Vec<(u32, Bytes)> = p
        .keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| (i as u32, k))
        .collect();
    match pop_now(db, now, &keys, &p.op) {
        Ok(Some(popped)) => popped.into_reply(),
        Ok(None) => p.op.timeout_reply(),
        Err(w) => w.into(),
    }
}

pub fn blpop_now(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run_now(db, now, parse_pop(a, true))
}

pub fn brpop_now(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run_now(db, now, parse_pop(a, false))
}

pub fn blmove_now(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run_now(db, now, parse_blmove(a))
}

pub fn brpoplpush_now(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run_now(db, now, parse_move(a, false, true, 3))
}

pub fn blmpop_now(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run_now(db, now, parse_blmpop(a))
}

pub fn bzpopmin_now(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run_now(db, now, parse_zpop(a, false))
}

pub fn bzpopmax_now(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run_now(db, now, parse_zpop(a, true))
}

pub fn bzmpop_now(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    run_now(db, now, parse_bzmpop(a))
}

/// Pop at once if this shard owns every key and has an element; otherwise block.
fn block_or_pop(
    s: &mut Server,
    ctx: &mut Ctx<Server>,
    conn: ConnId,
    args: Args,
    parse: fn(&dyn ArgList) -> Result<Parsed, OpResult>,
) {
    let a: &[std::borrow::Cow<'_, [u8]>] = args;
    let p = match parse(&a) {
        Ok(p) => p,
        Err(OpResult::Error(e)) => return s.error(ctx, conn, &e),
        Err(_) => return,
    };
    let mut all_here = p.keys.iter().all(|k| s.slots.shard_of(k) == s.shard);
    if let BlockOp::Move { dst, .. } = &p.op {
        all_here &= s.slots.shard_of(dst) == s.shard;
    }
    // Other clients already waiting on one of the keys are served first: join the queue.
    let waited_on = p.keys.iter().any(|k| s.db.block_keys.contains(k));
    if all_here && !waited_on && s.local_ok_for(ctx, conn) {
        let now = unix_ms();
        let keys: Vec<(u32, Bytes)> = p
            .keys
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, k)| (i as u32, k))
            .collect();
        s.db.events.cmd = p.op.command_name();
        match pop_now(&mut s.db, now, &keys, &p.op) {
            Ok(Some(popped)) => return s.reply_result(ctx, conn, &popped.into_reply()),
            Ok(None) => {}
            Err(w) => return s.reply_result(ctx, conn, &w.into()),
        }
    }
    s.block(ctx, conn, p.keys, p.op, p.timeout);
}

pub fn blpop(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    block_or_pop(s, ctx, conn, args, |a| parse_pop(a, true));
}

pub fn brpop(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    block_or_pop(s, ctx, conn, args, |a| parse_pop(a, false));
}

pub fn blmove(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    block_or_pop(s, ctx, conn, args, parse_blmove);
}

pub fn brpoplpush(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    block_or_pop(s, ctx, conn, args, |a| parse_move(a, false, true, 3));
}

pub fn blmpop(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    block_or_pop(s, ctx, conn, args, parse_blmpop);
}

pub fn bzpopmin(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    block_or_pop(s, ctx, conn, args, |a| parse_zpop(a, false));
}

pub fn bzpopmax(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    block_or_pop(s, ctx, conn, args, |a| parse_zpop(a, true));
}

pub fn bzmpop(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    block_or_pop(s, ctx, conn, args, parse_bzmpop);
}
