//! The stream family: XADD, XLEN, XRANGE, XREVRANGE, XDEL, XTRIM, XREAD, XREADGROUP,
//! XGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM, XINFO, XSETID, with Redis 7.0's argument
//! order, replies and error texts. The representation is `crate::types::stream`.
//!
//! Writes go through `Db::edit_stream` and journal deterministic rewrites where the
//! command depends on the clock or on layout: XADD with the id it generated and its trim
//! as an exact `MINID =` (or `MAXLEN = 0`); XTRIM likewise; XREADGROUP, XCLAIM and
//! XAUTOCLAIM as `XCLAIM ... TIME t RETRYCOUNT n FORCE JUSTID` claims plus an
//! `XGROUP SETID ... ENTRIESREAD n` for the group's position (what Redis propagates), so
//! consumer-group state survives a crash exactly. Group bookkeeping is journaled without
//! a keyspace notification (an empty event name), as Redis notifies none for it.
//!
//! XREAD and XREADGROUP with BLOCK wait through `crate::server::blocking` (see
//! [`xread_exec`]); their keyed forms never block (inside MULTI, or served at once).

use bytes::Bytes;
use coreshard_engine::{ConnId, Ctx};
use coreshard_protocol::Value as Resp;

use super::strings::{err, NOT_INT, SYNTAX};
use super::{parse_int, Args, Spec, K1, K2, R, RF, W, WDF, WF};
use crate::db::{Db, Edit};
use crate::server::blocking::BlockOp;
use crate::server::ops::{unix_ms, OpResult};
use crate::server::txn::run_across_shards;
use crate::server::{ArgList, Server};
use crate::types::stream::{Fields, Stream, StreamId, Trim, Val, INVALID_ENTRIES_READ};

const STREAM: &str = "stream";
const WO: &[&str] = &["write"];
const RB: &[&str] = &["readonly", "blocking"];
const WB: &[&str] = &["write", "blocking"];

const INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";
const NO_SUCH_KEY: &str = "ERR no such key";

/// Positions of XREAD and XREADGROUP in [`COMMANDS`].
const XREAD: usize = 6;
const XREADGROUP: usize = 7;

/// The family's commands (Redis 7.0's arity, flags and key positions).
#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    Spec::keyed("xadd", -5, WDF, K1, (STREAM, "5.0.0", "Appends a new entry to a stream"), xadd),
    Spec::keyed("xlen", 2, RF, K1, (STREAM, "5.0.0", "Return the number of entries in a stream"), xlen),
    Spec::keyed("xrange", -4, R, K1, (STREAM, "5.0.0", "Return a range of elements in a stream, with IDs matching the specified IDs interval"), xrange),
    Spec::keyed("xrevrange", -4, R, K1, (STREAM, "5.0.0", "Return a range of elements in a stream, with IDs matching the specified IDs interval, in reverse order (from greater to smaller IDs) compared to XRANGE"), xrevrange),
    Spec::keyed("xdel", -3, WF, K1, (STREAM, "5.0.0", "Removes the specified entries from the stream. Returns the number of items actually deleted, that may be different from the number of IDs passed in case certain IDs do not exist."), xdel),
    Spec::keyed("xtrim", -4, WO, K1, (STREAM, "5.0.0", "Trims the stream to (approximately if '~' is passed) a certain size"), xtrim),
    Spec::keyed("xread", -4, RB, (0, 0, 0), (STREAM, "5.0.0", "Return never seen elements in multiple streams, with IDs greater than the ones reported by the caller for each stream. Can block."), xread).streams(1).cross(run_across_shards).exec(xread_exec),
    Spec::keyed("xreadgroup", -7, WB, (0, 0, 0), (STREAM, "5.0.0", "Return new entries from a stream using a consumer group, or access the history of the pending entries for a given consumer. Can block."), xreadgroup).streams(4).cross(run_across_shards).exec(xread_exec),
    Spec::keyed("xgroup", -2, W, K2, (STREAM, "5.0.0", "A container for consumer groups commands"), xgroup),
    Spec::keyed("xack", -4, WF, K1, (STREAM, "5.0.0", "Marks a pending message as correctly processed, effectively removing it from the pending entries list of the consumer group. Return value of the command is the number of messages successfully acknowledged, that is, the IDs we were actually able to resolve in the PEL."), xack),
    Spec::keyed("xpending", -3, R, K1, (STREAM, "5.0.0", "Return information and entries from a stream consumer group pending entries list, that are messages fetched but never acknowledged."), xpending),
    Spec::keyed("xclaim", -6, WF, K1, (STREAM, "5.0.0", "Changes (or acquires) ownership of a message in a consumer group, as if the message was delivered to the specified consumer."), xclaim),
    Spec::keyed("xautoclaim", -6, WF, K1, (STREAM, "6.2.0", "Changes (or acquires) ownership of messages in a consumer group, as if the messages were delivered to the specified consumer."), xautoclaim),
    Spec::keyed("xinfo", -2, R, K2, (STREAM, "5.0.0", "A container for stream introspection commands"), xinfo),
    Spec::keyed("xsetid", -3, WDF, K1, (STREAM, "5.0.0", "An internal command for replicating stream values"), xsetid),
];

// ---------------------------------------------------------------- parsing

/// C's `strtoull` as Redis's `string2ull` uses it: leading white space and a sign are
/// accepted (a negative value wraps), nothing may follow the digits; a plain negative
/// integer is refused.
fn parse_u64(b: &[u8]) -> Option<u64> {
    if let Some(n) = parse_int(b) {
        return u64::try_from(n).ok();
    }
    let mut i = 0;
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    if i >= b.len() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in &b[i..] {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// Redis's `streamGenericParseIDOrReply`: `ms-seq`, `ms` (seq `missing_seq`), `-`, `+`
/// (not when `strict`); with `auto_seq`, `ms-*` gives `(ms-0, false)`.
fn parse_id_full(
    b: &[u8],
    missing_seq: u64,
    strict: bool,
    auto_seq: bool,
) -> Result<(StreamId, bool), OpResult> {
    let bad = || err(INVALID_ID);
    if b.len() > 127 {
        return Err(bad());
    }
    // C strings end at a NUL byte.
    let b = b.split(|c| *c == 0).next().unwrap_or_default();
    if b == b"-" || b == b"+" {
        if strict {
            return Err(bad());
        }
        return Ok((
            if b == b"-" {
                StreamId::MIN
            } else {
                StreamId::MAX
            },
            true,
        ));
    }
    match b.iter().position(|c| *c == b'-') {
        Some(dash) => {
            let ms = parse_u64(&b[..dash]).ok_or_else(bad)?;
            let rest = &b[dash + 1..];
            if auto_seq && rest == b"*" {
                return Ok((StreamId::new(ms, 0), false));
            }
            let seq = parse_u64(rest).ok_or_else(bad)?;
            Ok((StreamId::new(ms, seq), true))
        }
        None => Ok((
            StreamId::new(parse_u64(b).ok_or_else(bad)?, missing_seq),
            true,
        )),
    }
}

/// A strict id (no `-` / `+`), a missing seq read as 0.
fn parse_id(b: &[u8]) -> Result<StreamId, OpResult> {
    parse_id_full(b, 0, true, false).map(|(id, _)| id)
}

/// A range bound: `(id` is exclusive (strict), else `-`, `+` or an id whose missing seq
/// is `missing_seq`. Returns the inclusive bound.
fn parse_bound(b: &[u8], missing_seq: u64, start: bool) -> Result<StreamId, OpResult> {
    if b.len() > 1 && b[0] == b'(' {
        let (id, _) = parse_id_full(&b[1..], missing_seq, true, false)?;
        let moved = if start { id.incr() } else { id.decr() };
        return moved.ok_or_else(|| {
            err(if start {
                "ERR invalid start ID for the interval"
            } else {
                "ERR invalid end ID for the interval"
            })
        });
    }
    parse_id_full(b, missing_seq, false, false).map(|(id, _)| id)
}

/// The clock for delivery and seen times: `now`, or the wall clock when replay runs a
/// record (replay passes 0 so that nothing counts as expired; the times it restores are
/// the records' own `TIME`s, clamped to this).
fn wall(now: u64) -> u64 {
    if now == 0 {
        unix_ms()
    } else {
        now
    }
}

fn int_or(b: &[u8], msg: &str) -> Result<i64, OpResult> {
    parse_int(b).ok_or_else(|| err(msg))
}

// ---------------------------------------------------------------- replies

fn bulk(b: &[u8]) -> Resp {
    Resp::Bulk(Bytes::copy_from_slice(b))
}

fn id_reply(id: StreamId) -> Resp {
    Resp::Bulk(id.to_bytes())
}

/// `[id, [field, value, ...]]`.
fn entry_reply(id: StreamId, fields: &Fields<'_>) -> Resp {
    let mut flat = Vec::with_capacity(fields.len() * 2);
    for (f, v) in fields {
        flat.push(bulk(f));
        flat.push(Resp::Bulk(v.to_bytes()));
    }
    Resp::Array(vec![id_reply(id), Resp::Array(flat)])
}

/// Entries of `[start, end]` (descending with `rev`), at most `count` (0: all).
fn range_reply(s: &Stream, start: StreamId, end: StreamId, rev: bool, count: u64) -> Vec<Resp> {
    let mut out = Vec::new();
    s.range(start, end, rev, |id, f| {
        out.push(entry_reply(id, f));
        count == 0 || (out.len() as u64) < count
    });
    out
}

/// Entries encoded once as `[[id, [field, value, ...]], ...]`, the same bytes in RESP2
/// and RESP3: one buffer per reply instead of a value per field.
struct Frame {
    n: usize,
    body: Vec<u8>,
}

impl Frame {
    fn new() -> Frame {
        Frame {
            n: 0,
            body: Vec::new(),
        }
    }

    fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
        out.push(kind);
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    fn bulk(out: &mut Vec<u8>, b: &[u8]) {
        Frame::header(out, b'$', b.len());
        out.extend_from_slice(b);
        out.extend_from_slice(b"\r\n");
    }

    fn push(&mut self, id: StreamId, fields: &Fields<'_>) {
        let b = &mut self.body;
        b.extend_from_slice(b"*2\r\n");
        let mut num = itoa::Buffer::new();
        let ms = num.format(id.ms).len();
        let mut num2 = itoa::Buffer::new();
        let seq = num2.format(id.seq).len();
        Frame::header(b, b'$', ms + 1 + seq);
        b.extend_from_slice(num.format(id.ms).as_bytes());
        b.push(b'-');
        b.extend_from_slice(num2.format(id.seq).as_bytes());
        b.extend_from_slice(b"\r\n");
        Frame::header(b, b'*', fields.len() * 2);
        for (f, v) in fields {
            Frame::bulk(b, f);
            match v {
                Val::Raw(x) => Frame::bulk(b, x),
                Val::Int(n) => Frame::bulk(b, num.format(*n).as_bytes()),
            }
        }
        self.n += 1;
    }

    fn finish(self) -> Resp {
        let mut out = Vec::with_capacity(self.body.len() + 12);
        Frame::header(&mut out, b'*', self.n);
        out.extend_from_slice(&self.body);
        Resp::Raw(Bytes::from(out))
    }
}

/// Entries of `[start, end]` (descending with `rev`), at most `count` (0: all), as one
/// encoded frame.
fn range_frame(s: &Stream, start: StreamId, end: StreamId, rev: bool, count: u64) -> Resp {
    let mut frame = Frame::new();
    s.range(start, end, rev, |id, f| {
        frame.push(id, f);
        count == 0 || (frame.n as u64) < count
    });
    frame.finish()
}

/// One entry by id, or nil.
fn entry_or_nil(s: &Stream, id: StreamId) -> Resp {
    range_reply(s, id, id, false, 1).pop().unwrap_or(Resp::Null)
}

fn reply(r: Resp) -> OpResult {
    OpResult::Reply(r)
}

fn text(t: &str) -> Resp {
    Resp::Bulk(Bytes::copy_from_slice(t.as_bytes()))
}

fn cmd(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

// ---------------------------------------------------------------- XADD / XTRIM

/// What XADD and XTRIM parsed.
struct AddTrim {
    trim: Option<(Trim, bool)>,
    /// Entries removed at most in whole chunks (0: no limit).
    limit: u64,
    nomkstream: bool,
    /// XADD: the id (`None`: `*`), whether its seq was given, and where fields start.
    id: Option<(StreamId, bool)>,
    fields_at: usize,
}

/// Redis's `streamParseAddOrTrimArgsOrReply`.
fn parse_add_trim(a: &dyn ArgList, xadd: bool) -> Result<AddTrim, OpResult> {
    let mut out = AddTrim {
        trim: None,
        limit: 0,
        nomkstream: false,
        id: None,
        fields_at: a.len() + 1,
    };
    let mut limit: Option<i64> = None;
    let mut approx = false;
    let mut i = 2;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let opt = a.arg(i);
        if xadd && opt == b"*" {
            out.fields_at = i + 1;
            break;
        } else if (a.is(i, "MAXLEN") || a.is(i, "MINID")) && more > 0 {
            if out.trim.is_some() {
                return Err(err("ERR syntax error, MAXLEN and MINID options at the same time are not compatible"));
            }
            let maxlen = a.is(i, "MAXLEN");
            approx = false;
            let next = a.arg(i + 1);
            if more >= 2 && next == b"~" {
                approx = true;
                i += 1;
            } else if more >= 2 && next == b"=" {
                i += 1;
            }
            let how = if maxlen {
                let n = int_or(a.arg(i + 1), NOT_INT)?;
                if n < 0 {
                    return Err(err("ERR The MAXLEN argument must be >= 0."));
                }
                Trim::MaxLen(n as u64)
            } else {
                Trim::MinId(parse_id(a.arg(i + 1))?)
            };
            out.trim = Some((how, approx));
            i += 1;
        } else if a.is(i, "LIMIT") && more > 0 {
            let n = int_or(a.arg(i + 1), NOT_INT)?;
            if n < 0 {
                return Err(err("ERR The LIMIT argument must be >= 0."));
            }
            limit = Some(n);
            i += 1;
        } else if xadd && a.is(i, "NOMKSTREAM") {
            out.nomkstream = true;
        } else if xadd {
            out.id = Some(parse_id_full(opt, 0, true, true)?);
            out.fields_at = i + 1;
            break;
        } else {
            return Err(err(SYNTAX));
        }
        i += 1;
    }
    if limit.is_some_and(|n| n > 0) && out.trim.is_none() {
        return Err(err(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && out.trim.is_none() {
        return Err(err(
            "ERR syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    out.limit = match limit {
        Some(_) if !approx => {
            return Err(err(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ))
        }
        Some(n) => n as u64,
        None if approx => 10_000,
        None => 0,
    };
    Ok(out)
}

/// The exact trim that leaves `s` as a trim just left it (journaled instead of `~`).
fn exact_trim(key: &[u8], s: &Stream, xadd_id: Option<StreamId>) -> Vec<Bytes> {
    let (how, arg) = if s.is_empty() {
        (&b"MAXLEN"[..], b"0".to_vec())
    } else {
        (&b"MINID"[..], s.first_id().to_string().into_bytes())
    };
    match xadd_id {
        None => cmd(&[b"XTRIM", key, how, b"=", &arg]),
        Some(id) => cmd(&[b"XADD", key, how, b"=", &arg, id.to_string().as_bytes()]),
    }
}

pub fn xadd(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let p = match parse_add_trim(a, true) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let at = p.fields_at;
    if at > a.len() || a.len() - at < 2 || (a.len() - at) % 2 == 1 {
        return super::arity_error("xadd");
    }
    if let Some((id, true)) = p.id {
        if id.is_zero() {
            return err("ERR The ID specified in XADD must be greater than 0-0");
        }
    }
    let key = a.arg(1);
    let journaling = db.journaling();
    let r = db.edit_stream(key, now, !p.nomkstream, a, |s| {
        if s.last_id == StreamId::MAX {
            return Edit::unchanged(err(
                "ERR The stream has exhausted the last possible ID, unable to add more items",
            ));
        }
        let last = s.last_id;
        let id = match p.id {
            None if now > last.ms => StreamId::new(now, 0),
            None => match last.incr() {
                Some(id) => id,
                None => return Edit::unchanged(err("ERR Elements are too large to be stored")),
            },
            Some((want, false)) if want.ms == last.ms => {
                if last.seq == u64::MAX {
                    return Edit::unchanged(err("ERR Elements are too large to be stored"));
                }
                StreamId::new(want.ms, last.seq + 1)
            }
            Some((want, _)) => want,
        };
        if id <= last {
            return Edit::unchanged(err(
                "ERR The ID specified in XADD is equal or smaller than the target stream top item",
            ));
        }
        let fields: Vec<(&[u8], &[u8])> = (at..a.len())
            .step_by(2)
            .map(|i| (a.arg(i), a.arg(i + 1)))
            .collect();
        s.add(id, &fields);
        let trimmed = match p.trim {
            Some((how, approx)) => s.trim(how, approx, p.limit),
            None => 0,
        };
        let out = OpResult::Value(Some(id.to_bytes()));
        let rewrite = p.id.is_none_or(|(_, given)| !given) || p.trim.is_some();
        let edit = if journaling && rewrite {
            let mut log = if trimmed > 0 {
                exact_trim(key, s, Some(id))
            } else {
                cmd(&[b"XADD", key, id.to_string().as_bytes()])
            };
            log.extend((at..a.len()).map(|i| a.arg_bytes(i)));
            Edit::logged(out, "xadd", log)
        } else {
            Edit::changed(out, "xadd")
        };
        if trimmed > 0 {
            edit.and_event("xtrim")
        } else {
            edit
        }
    });
    super::edited(r, OpResult::Value(None))
}

pub fn xtrim(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let p = match parse_add_trim(a, false) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let Some((how, approx)) = p.trim else {
        return err(SYNTAX);
    };
    let key = a.arg(1);
    let r = db.edit_stream(key, now, false, a, |s| {
        let n = s.trim(how, approx, p.limit);
        if n == 0 {
            return Edit::unchanged(OpResult::Int(0));
        }
        Edit::logged(OpResult::Int(n as i64), "xtrim", exact_trim(key, s, None))
    });
    super::edited(r, OpResult::Int(0))
}

// ---------------------------------------------------------------- reads

pub fn xlen(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_stream(a.arg(1), now) {
        Ok(s) => OpResult::Int(s.map_or(0, |s| s.len() as i64)),
        Err(w) => w.into(),
    }
}

fn range_generic(db: &mut Db, now: u64, a: &dyn ArgList, rev: bool) -> OpResult {
    let (sa, ea) = if rev { (3, 2) } else { (2, 3) };
    let parsed = (|| {
        let start = parse_bound(a.arg(sa), 0, true)?;
        let end = parse_bound(a.arg(ea), u64::MAX, false)?;
        let mut count: i64 = -1;
        let mut j = 4;
        while j < a.len() {
            if a.is(j, "COUNT") && j + 1 < a.len() {
                count = int_or(a.arg(j + 1), NOT_INT)?.max(0);
                j += 2;
            } else {
                return Err(err(SYNTAX));
            }
        }
        Ok((start, end, count))
    })();
    let (start, end, count) = match parsed {
        Ok(x) => x,
        Err(e) => return e,
    };
    let s = match db.read_stream(a.arg(1), now) {
        Ok(Some(s)) => s,
        Ok(None) => return reply(Resp::Array(vec![])),
        Err(w) => return w.into(),
    };
    if count == 0 {
        return OpResult::NullArray;
    }
    let count = if count < 0 { 0 } else { count as u64 };
    reply(range_frame(s, start, end, rev, count))
}

pub fn xrange(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    range_generic(db, now, a, false)
}

pub fn xrevrange(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    range_generic(db, now, a, true)
}

pub fn xdel(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    match db.read_stream(a.arg(1), now) {
        Ok(None) => return OpResult::Int(0),
        Err(w) => return w.into(),
        Ok(Some(_)) => {}
    }
    let ids: Result<Vec<StreamId>, OpResult> = (2..a.len()).map(|i| parse_id(a.arg(i))).collect();
    let ids = match ids {
        Ok(ids) => ids,
        Err(e) => return e,
    };
    let r = db.edit_stream(a.arg(1), now, false, a, |s| {
        let n = ids.iter().filter(|id| s.delete(**id)).count() as i64;
        if n == 0 {
            Edit::unchanged(OpResult::Int(0))
        } else {
            Edit::changed(OpResult::Int(n), "xdel")
        }
    });
    super::edited(r, OpResult::Int(0))
}

// ---------------------------------------------------------------- XREAD / XREADGROUP

/// An XREAD / XREADGROUP id argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadFrom {
    /// Entries after this id (for a group: the consumer's history after it).
    After(StreamId),
    /// `>`: the group's new entries.
    New,
}

/// What XREAD / XREADGROUP parsed.
pub(crate) struct ReadArgs {
    count: u64,
    /// BLOCK's milliseconds (0: forever).
    pub(crate) block: Option<u64>,
    group: Option<(Bytes, Bytes)>,
    noack: bool,
    /// Position of the first key.
    streams_at: usize,
    keys: usize,
}

fn parse_read(a: &dyn ArgList, xreadgroup: bool) -> Result<ReadArgs, OpResult> {
    let mut out = ReadArgs {
        count: 0,
        block: None,
        group: None,
        noack: false,
        streams_at: 0,
        keys: 0,
    };
    let mut i = 1;
    while i < a.len() {
        let more = a.len() - i - 1;
        if a.is(i, "BLOCK") && more > 0 {
            i += 1;
            let t = int_or(a.arg(i), "ERR timeout is not an integer or out of range")?;
            if t < 0 {
                return Err(err("ERR timeout is negative"));
            }
            out.block = Some(t as u64);
        } else if a.is(i, "COUNT") && more > 0 {
            i += 1;
            out.count = int_or(a.arg(i), NOT_INT)?.max(0) as u64;
        } else if a.is(i, "STREAMS") && more > 0 {
            out.streams_at = i + 1;
            let n = a.len() - out.streams_at;
            if n % 2 != 0 {
                return Err(err("ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."));
            }
            out.keys = n / 2;
            break;
        } else if a.is(i, "GROUP") && more >= 2 {
            if !xreadgroup {
                return Err(err("ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead."));
            }
            out.group = Some((a.arg_bytes(i + 1), a.arg_bytes(i + 2)));
            i += 2;
        } else if a.is(i, "NOACK") {
            if !xreadgroup {
                return Err(err("ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead."));
            }
            out.noack = true;
        } else {
            return Err(err(SYNTAX));
        }
        i += 1;
    }
    if out.streams_at == 0 {
        return Err(err(SYNTAX));
    }
    if xreadgroup && out.group.is_none() {
        return Err(err("ERR Missing GROUP option for XREADGROUP"));
    }
    Ok(out)
}

/// Check every key and id in order, as Redis does before serving any: the ids to read
/// after.
fn resolve_ids(
    db: &mut Db,
    now: u64,
    a: &dyn ArgList,
    p: &ReadArgs,
) -> Result<Vec<ReadFrom>, OpResult> {
    let mut ids = Vec::with_capacity(p.keys);
    for k in 0..p.keys {
        let key = a.arg(p.streams_at + k);
        let arg = a.arg(p.streams_at + p.keys + k);
        let s = db.read_stream(key, now).map_err(OpResult::from)?;
        if let Some((group, _)) = &p.group {
            if s.is_none_or(|s| s.group(group).is_none()) {
                return Err(err(&format!(
                    "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(group)
                )));
            }
        }
        let from = if arg == b"$" {
            if p.group.is_some() {
                return Err(err("ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set."));
            }
            ReadFrom::After(s.map_or(StreamId::MIN, |s| s.last_id))
        } else if arg == b">" {
            if p.group.is_none() {
                return Err(err("ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option."));
            }
            ReadFrom::New
        } else {
            ReadFrom::After(parse_id(arg)?)
        };
        ids.push(from);
    }
    Ok(ids)
}

/// The reply for the streams served: `[[key, entries], ...]` (a map in RESP3), or a
/// null array when none was.
fn served_reply(served: Vec<(Bytes, Resp)>) -> OpResult {
    if served.is_empty() {
        return OpResult::NullArray;
    }
    OpResult::KeyMap(
        served
            .into_iter()
            .map(|(k, entries)| (Resp::Bulk(k), entries))
            .collect(),
    )
}

/// XREAD without blocking.
pub fn xread(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    read_generic(db, now, a, false)
}

/// XREADGROUP without blocking.
pub fn xreadgroup(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    read_generic(db, now, a, true)
}

fn read_generic(db: &mut Db, now: u64, a: &dyn ArgList, xreadgroup: bool) -> OpResult {
    let p = match parse_read(a, xreadgroup) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let ids = match resolve_ids(db, now, a, &p) {
        Ok(ids) => ids,
        Err(e) => return e,
    };
    let mut served = Vec::new();
    match &p.group {
        None => {
            for (k, from) in ids.into_iter().enumerate() {
                let key = a.arg(p.streams_at + k);
                let ReadFrom::After(after) = from else {
                    continue;
                };
                let Ok(Some(s)) = db.read_stream(key, now) else {
                    continue;
                };
                if s.is_empty() || s.last_live_id() <= after {
                    continue;
                }
                let Some(start) = after.incr() else { continue };
                let entries = range_frame(s, start, StreamId::MAX, false, p.count);
                served.push((a.arg_bytes(p.streams_at + k), entries));
            }
        }
        Some((group, consumer)) => {
            let group = group.clone();
            let consumer = consumer.clone();
            db.atomically(|db| {
                for (k, from) in ids.into_iter().enumerate() {
                    let key = a.arg(p.streams_at + k);
                    if let Some(entries) =
                        group_read(db, now, key, &group, &consumer, from, p.count, p.noack)
                    {
                        served.push((a.arg_bytes(p.streams_at + k), entries));
                    }
                }
            });
        }
    }
    served_reply(served)
}

/// One stream of an XREADGROUP: the consumer's history after an id, or the group's new
/// entries (`None`: nothing new). Journals the claims and the group's new position.
#[allow(clippy::too_many_arguments)]
fn group_read(
    db: &mut Db,
    now: u64,
    key: &[u8],
    group: &[u8],
    consumer: &[u8],
    from: ReadFrom,
    count: u64,
    noack: bool,
) -> Option<Resp> {
    let journaling = db.journaling();
    // Redis 7.0 creates (or refreshes) the consumer only when it serves it: its history,
    // or new entries when the stream has some past the group's last id.
    if from == ReadFrom::New {
        let ready = match db.read_stream(key, now) {
            Ok(Some(s)) => {
                let last = s.group(group).map_or(StreamId::MAX, |g| g.last_id);
                !s.is_empty() && s.last_live_id() > last
            }
            _ => false,
        };
        if !ready {
            return None;
        }
    }
    let none: &[Bytes] = &[];
    let ts = wall(now);
    let r = db.edit_stream(key, now, false, &none.to_vec(), |s| {
        let created = s.touch_consumer(group, consumer, ts) == Some(true);
        // Whether the group's state changed (not only what is journaled: a transaction's
        // scratch copy journals nothing, and writes back only what says it changed).
        let mut changed = created;
        let mut logs = Vec::new();
        if created && journaling {
            logs.push(cmd(&[b"XGROUP", b"CREATECONSUMER", key, group, consumer]));
        }
        let time = ts.to_string();
        let out = match from {
            ReadFrom::After(after) => {
                // History: the consumer's pending entries after `after`.
                let ids: Vec<StreamId> = match (s.group(group), after.incr()) {
                    (Some(g), Some(start)) => {
                        let pel = g.consumers().get(consumer).map(|c| &c.pel);
                        pel.map(|p| {
                            p.range(start..)
                                .take(if count == 0 {
                                    usize::MAX
                                } else {
                                    count as usize
                                })
                                .copied()
                                .collect()
                        })
                        .unwrap_or_default()
                    }
                    _ => Vec::new(),
                };
                let mut entries = Vec::with_capacity(ids.len());
                for id in ids {
                    let e = entry_or_nil(s, id);
                    if matches!(e, Resp::Null) {
                        entries.push(Resp::Array(vec![id_reply(id), Resp::Null]));
                        continue;
                    }
                    entries.push(e);
                    s.redeliver(group, id, ts);
                    changed = true;
                    if journaling {
                        let n = s
                            .group(group)
                            .and_then(|g| g.pel().get(&id))
                            .map_or(1, |n| n.delivery_count);
                        logs.push(claim_log(key, group, consumer, &[id], &time, n));
                    }
                }
                Some(Resp::Array(entries))
            }
            ReadFrom::New => {
                let last = s.group(group).map_or(StreamId::MAX, |g| g.last_id);
                let mut ids = Vec::new();
                let mut frame = Frame::new();
                if !s.is_empty() && s.last_live_id() > last {
                    if let Some(start) = last.incr() {
                        s.range(start, StreamId::MAX, false, |id, f| {
                            ids.push(id);
                            frame.push(id, f);
                            count == 0 || (ids.len() as u64) < count
                        });
                    }
                }
                if ids.is_empty() {
                    None
                } else {
                    changed = true;
                    for id in &ids {
                        s.advance_group(group, *id);
                        if !noack {
                            s.set_pending(group, consumer, *id, ts, 1);
                        }
                    }
                    if journaling {
                        if !noack {
                            logs.push(claim_log(key, group, consumer, &ids, &time, 1));
                        }
                        logs.push(setid_log(key, group, s));
                    }
                    Some(frame.finish())
                }
            }
        };
        let event = consumer_event(created);
        if !changed {
            Edit::unchanged(out)
        } else {
            Edit::logged_all(out, event, logs).bookkeeping()
        }
    });
    r.ok().flatten().flatten()
}

/// The claim replay applies for deliveries: `XCLAIM key group consumer 0 ids... TIME t
/// RETRYCOUNT n FORCE JUSTID`.
fn claim_log(
    key: &[u8],
    group: &[u8],
    consumer: &[u8],
    ids: &[StreamId],
    time: &str,
    count: u64,
) -> Vec<Bytes> {
    let mut c = cmd(&[b"XCLAIM", key, group, consumer, b"0"]);
    c.extend(ids.iter().map(|id| id.to_bytes()));
    c.extend(cmd(&[
        b"TIME",
        time.as_bytes(),
        b"RETRYCOUNT",
        count.to_string().as_bytes(),
        b"FORCE",
        b"JUSTID",
    ]));
    c
}

/// `XGROUP SETID key group last ENTRIESREAD n`: the group's position as it is now.
fn setid_log(key: &[u8], group: &[u8], s: &Stream) -> Vec<Bytes> {
    let (last, read) = s
        .group(group)
        .map_or((StreamId::MIN, INVALID_ENTRIES_READ), |g| {
            (g.last_id, g.entries_read)
        });
    cmd(&[
        b"XGROUP",
        b"SETID",
        key,
        group,
        last.to_string().as_bytes(),
        b"ENTRIESREAD",
        read.to_string().as_bytes(),
    ])
}

/// XREAD / XREADGROUP as typed: without BLOCK, run like any keyed command; with BLOCK,
/// serve at once if this shard owns every key and one has entries, else wait.
pub fn xread_exec(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let a: &[std::borrow::Cow<'_, [u8]>] = args;
    let xreadgroup = a[0].eq_ignore_ascii_case(b"xreadgroup");
    let spec = &COMMANDS[if xreadgroup { XREADGROUP } else { XREAD }];
    let p = match parse_read(&a, xreadgroup) {
        Ok(p) => p,
        Err(OpResult::Error(e)) => return s.error(ctx, conn, &e),
        Err(_) => return,
    };
    let Some(timeout) = p.block else {
        return s.run_cmd(ctx, conn, spec, args);
    };
    let keys: Vec<Bytes> = (0..p.keys)
        .map(|k| Bytes::copy_from_slice(&a[p.streams_at + k]))
        .collect();
    let all_here = keys.iter().all(|k| s.slots.shard_of(k) == s.shard);
    let first = keys.first().map(|k| s.slots.shard_of(k));
    let one_shard = keys.iter().all(|k| Some(s.slots.shard_of(k)) == first);
    if !one_shard && xreadgroup {
        // Every key and group is checked, and every stream with entries served, at once
        // under key locks (as one XREADGROUP without BLOCK); block only if that answers
        // nothing.
        let owned: Vec<Bytes> = a.iter().map(|x| Bytes::copy_from_slice(x)).collect();
        let kind = crate::server::txn::TxnKind::One(super::multi::Queued {
            spec,
            args: owned.clone(),
        });
        if let Some(txn) = s.begin_txn(ctx, conn, kind) {
            s.read_then_block(txn, keys, owned, timeout);
        }
        return;
    }
    let mut block_args: Vec<Bytes> = a.iter().map(|x| Bytes::copy_from_slice(x)).collect();
    if all_here && s.local_ok_for(ctx, conn) {
        let now = unix_ms();
        let out = read_generic(&mut s.db, now, &a, xreadgroup);
        if !matches!(out, OpResult::NullArray) {
            return s.reply_result(ctx, conn, &out);
        }
        // `$` means the last id now: fix it before waiting.
        for (k, key) in keys.iter().enumerate() {
            let at = p.streams_at + p.keys + k;
            if block_args[at] == b"$"[..] {
                let last =
                    s.db.read_stream(key, now)
                        .ok()
                        .flatten()
                        .map_or(StreamId::MIN, |x| x.last_id);
                block_args[at] = last.to_bytes();
            }
        }
    }
    s.block(
        ctx,
        conn,
        keys,
        BlockOp::Stream {
            args: block_args,
            fresh: true,
        },
        timeout,
    );
}

/// Whether a waiter's command is an XREADGROUP (else a plain XREAD).
pub fn is_group_read(args: &[Bytes]) -> bool {
    args.first()
        .is_some_and(|n| n.eq_ignore_ascii_case(b"xreadgroup"))
}

/// For a stream waiter: its command restricted to the keys `keys` (positions in the
/// command) with `$` resolved against this shard's streams now.
pub fn waiter_command(db: &mut Db, now: u64, args: &[Bytes], keys: &[u32]) -> Vec<Bytes> {
    let a: &dyn ArgList = &args.to_vec();
    let xreadgroup = is_group_read(args);
    let Ok(p) = parse_read(a, xreadgroup) else {
        return args.to_vec();
    };
    let mut out: Vec<Bytes> = args[..p.streams_at].to_vec();
    let mut ids = Vec::new();
    for &k in keys {
        let k = k as usize;
        let key = args[p.streams_at + k].clone();
        let mut id = args[p.streams_at + p.keys + k].clone();
        if id == b"$"[..] {
            let last = db
                .read_stream(&key, now)
                .ok()
                .flatten()
                .map_or(StreamId::MIN, |x| x.last_id);
            id = last.to_bytes();
        }
        out.push(key);
        ids.push(id);
    }
    out.extend(ids);
    out
}

/// Where a blocked stream read reads one key from.
#[derive(Debug, Clone, Copy)]
pub enum WaitFrom {
    /// Entries past this id (XREAD), or the consumer's history past it (XREADGROUP).
    After(StreamId),
    /// `>`: the group's new entries.
    New,
    /// An id that does not parse (its read answers the error).
    Invalid,
}

/// A blocked stream read as a shard checks it: the group it reads for (XREADGROUP) and,
/// for each of its keys on that shard, where it reads from.
#[derive(Debug, Clone)]
pub struct StreamWait {
    pub group: Option<Bytes>,
    pub from: Vec<WaitFrom>,
}

/// The [`StreamWait`] of a waiter's command (see [`waiter_command`]).
pub fn stream_wait(args: &[Bytes]) -> StreamWait {
    let a: &dyn ArgList = &args.to_vec();
    let group_read = is_group_read(args);
    let Ok(p) = parse_read(a, group_read) else {
        return StreamWait {
            group: None,
            from: Vec::new(),
        };
    };
    let from = (0..p.keys)
        .map(|k| {
            let id = a.arg(p.streams_at + p.keys + k);
            if id == b">" {
                WaitFrom::New
            } else {
                parse_id(id).map_or(WaitFrom::Invalid, WaitFrom::After)
            }
        })
        .collect();
    StreamWait {
        group: p.group.map(|(g, _)| g),
        from,
    }
}

/// Why a blocked read would answer now because of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// Not because of this key.
    No,
    /// It has entries for the read (for a group read: the group's new entries, shared
    /// by all its readers).
    Entries,
    /// It ends with an error or a history reply of its own (key or group gone, a key of
    /// another type, a history read).
    Ends,
}

/// Whether a blocked read would answer now because of `key`, in O(log groups): a plain
/// XREAD when the stream has entries past its id (a key of another type keeps it
/// waiting, as in Redis); a group read when its group has entries past its last id, and
/// also when the key is gone or of another type, or the group is gone (it ends with
/// Redis's error, see [`serve_waiter`]), and always for a history read. `fresh`: the
/// command's first look, where its own errors answer.
pub fn key_ready(
    db: &mut Db,
    now: u64,
    key: &[u8],
    wait: &StreamWait,
    at: usize,
    fresh: bool,
) -> Ready {
    let from = wait.from.get(at).copied().unwrap_or(WaitFrom::Invalid);
    let ends = |yes: bool| if yes { Ready::Ends } else { Ready::No };
    let s = match db.read_stream(key, now) {
        Ok(Some(s)) => s,
        Err(_) => return ends(wait.group.is_some() || fresh),
        Ok(None) => return ends(wait.group.is_some()),
    };
    let has_after = |id: StreamId| {
        if !s.is_empty() && s.last_live_id() > id {
            Ready::Entries
        } else {
            Ready::No
        }
    };
    match (&wait.group, from) {
        (_, WaitFrom::Invalid) | (None, WaitFrom::New) | (Some(_), WaitFrom::After(_)) => {
            Ready::Ends
        }
        (None, WaitFrom::After(id)) => has_after(id),
        (Some(g), WaitFrom::New) => match s.group(g) {
            None => Ready::Ends,
            Some(g) => has_after(g.last_id),
        },
    }
}

/// A stream waiter's command run as it is (its first look: the command's own errors).
pub fn read_now(db: &mut Db, now: u64, args: &[Bytes]) -> OpResult {
    read_generic(db, now, &args.to_vec(), is_group_read(args))
}

/// Serve a stream waiter whose read would answer (see [`waiter_ready`]): Redis's errors
/// for a group read whose key or group went away meanwhile; a plain XREAD reads only the
/// keys that hold streams.
pub fn serve_waiter(db: &mut Db, now: u64, args: &[Bytes]) -> OpResult {
    let a: &dyn ArgList = &args.to_vec();
    let group_read = is_group_read(args);
    let Ok(p) = parse_read(a, group_read) else {
        return OpResult::NullArray;
    };
    if let Some((group, _)) = &p.group {
        for k in 0..p.keys {
            match db.read_stream(a.arg(p.streams_at + k), now) {
                Ok(Some(s)) if s.group(group).is_some() => {}
                Ok(Some(_)) => {
                    return err(
                        "NOGROUP the consumer group this client was blocked on no longer exists",
                    )
                }
                _ => return err("UNBLOCKED the stream key no longer exists"),
            }
        }
        return xreadgroup(db, now, a);
    }
    let streams: Vec<usize> = (0..p.keys)
        .filter(|&k| db.read_stream(a.arg(p.streams_at + k), now).is_ok())
        .collect();
    if streams.len() == p.keys {
        return xread(db, now, a);
    }
    let mut only: Vec<Bytes> = args[..p.streams_at].to_vec();
    only.extend(streams.iter().map(|&k| args[p.streams_at + k].clone()));
    only.extend(
        streams
            .iter()
            .map(|&k| args[p.streams_at + p.keys + k].clone()),
    );
    xread(db, now, &only)
}

// ---------------------------------------------------------------- groups

const XGROUP_HELP: &[&str] = &[
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
];

const XINFO_HELP: &[&str] = &[
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Prints this help.",
];

/// A container command's subcommand check: unknown names and wrong arities answer as
/// Redis 7.0's subcommand table does.
fn subcommand(a: &dyn ArgList, command: &str, table: &[(&str, i32)]) -> Result<String, OpResult> {
    let sub = String::from_utf8_lossy(a.arg(1)).to_ascii_lowercase();
    let Some((_, ar)) = table.iter().find(|(n, _)| *n == sub) else {
        return Err(err(&super::unknown_subcommand_error(a.arg(1), command)));
    };
    let n = a.len() as i32;
    if (*ar > 0 && n != *ar) || (*ar < 0 && n < -ar) {
        return Err(super::subcommand_arity_error(command, &sub));
    }
    Ok(sub)
}

fn subcommand_syntax(a: &dyn ArgList, command: &str) -> OpResult {
    err(&super::subcommand_syntax_error(a.arg(1), command))
}

fn nogroup_for_key(group: &[u8], key: &[u8]) -> OpResult {
    err(&format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        String::from_utf8_lossy(group),
        String::from_utf8_lossy(key)
    ))
}

fn nogroup(key: &[u8], group: &[u8]) -> OpResult {
    err(&format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

/// `ENTRIESREAD n` options from argument 5 (CREATE also takes MKSTREAM).
fn parse_group_opts(a: &dyn ArgList, create: bool) -> Result<(bool, i64), OpResult> {
    let mut mk = false;
    let mut read = INVALID_ENTRIES_READ;
    let mut i = 5;
    while i < a.len() {
        if create && a.is(i, "MKSTREAM") {
            mk = true;
            i += 1;
        } else if a.is(i, "ENTRIESREAD") && i + 1 < a.len() {
            read = int_or(a.arg(i + 1), NOT_INT)?;
            if read < 0 && read != INVALID_ENTRIES_READ {
                return Err(err("ERR value for ENTRIESREAD must be positive or -1"));
            }
            i += 2;
        } else {
            return Err(subcommand_syntax(a, "xgroup"));
        }
    }
    Ok((mk, read))
}

pub fn xgroup(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let table = [
        ("create", -5),
        ("createconsumer", 5),
        ("delconsumer", 5),
        ("destroy", 4),
        ("setid", -5),
        ("help", 2),
    ];
    let sub = match subcommand(a, "xgroup", &table) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if sub == "help" {
        return super::help_reply(XGROUP_HELP);
    }
    let (mk, read) = match sub.as_str() {
        "create" | "setid" => match parse_group_opts(a, sub == "create") {
            Ok(x) => x,
            Err(e) => return e,
        },
        _ => (false, INVALID_ENTRIES_READ),
    };
    let (key, group) = (a.arg(2), a.arg(3));
    // A write lookup, as Redis's XGROUP: no hit, miss or keymiss.
    let (exists, has_group, last) = match db.peek_stream(key, now) {
        Err(w) => return w.into(),
        Ok(None) => (false, false, StreamId::MIN),
        Ok(Some(s)) => (true, s.group(group).is_some(), s.last_id),
    };
    if !mk {
        if !exists {
            return err("ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.");
        }
        if !has_group && matches!(sub.as_str(), "setid" | "createconsumer" | "delconsumer") {
            return nogroup_for_key(group, key);
        }
    }
    let journaling = db.journaling();
    let r = match sub.as_str() {
        "create" => {
            if a.len() > 8 {
                return subcommand_syntax(a, "xgroup");
            }
            let id = if a.arg(4) == b"$" {
                last
            } else {
                match parse_id(a.arg(4)) {
                    Ok(id) => id,
                    Err(e) => return e,
                }
            };
            db.edit_stream(key, now, true, a, |s| {
                if !s.create_group(group, id, read) {
                    return Edit::unchanged(err("BUSYGROUP Consumer Group name already exists"));
                }
                // MKSTREAM: the key may have been created for the group.
                let log = cmd(&[
                    b"XGROUP",
                    b"CREATE",
                    key,
                    group,
                    id.to_string().as_bytes(),
                    b"ENTRIESREAD",
                    read.to_string().as_bytes(),
                    b"MKSTREAM",
                ]);
                if journaling {
                    Edit::logged(OpResult::Ok, "xgroup-create", log)
                } else {
                    Edit::changed(OpResult::Ok, "xgroup-create")
                }
            })
        }
        "setid" => {
            if a.len() != 5 && a.len() != 7 {
                return subcommand_syntax(a, "xgroup");
            }
            let id = if a.arg(4) == b"$" {
                last
            } else {
                match parse_id_full(a.arg(4), 0, false, false) {
                    Ok((id, _)) => id,
                    Err(e) => return e,
                }
            };
            db.edit_stream(key, now, false, a, |s| {
                s.set_group_id(group, id, read);
                let log = cmd(&[
                    b"XGROUP",
                    b"SETID",
                    key,
                    group,
                    id.to_string().as_bytes(),
                    b"ENTRIESREAD",
                    read.to_string().as_bytes(),
                ]);
                Edit::logged(OpResult::Ok, "xgroup-setid", log).bookkeeping()
            })
        }
        "destroy" => db.edit_stream(key, now, false, a, |s| {
            if s.destroy_group(group) {
                Edit::changed(OpResult::Int(1), "xgroup-destroy")
            } else {
                Edit::unchanged(OpResult::Int(0))
            }
        }),
        "createconsumer" => db.edit_stream(key, now, false, a, |s| {
            match s.create_consumer(group, a.arg(4), wall(now)) {
                Some(true) => {
                    Edit::changed(OpResult::Int(1), "xgroup-createconsumer").bookkeeping()
                }
                _ => Edit::unchanged(OpResult::Int(0)),
            }
        }),
        _ => db.edit_stream(key, now, false, a, |s| {
            match s.delete_consumer(group, a.arg(4)) {
                Some(Some(n)) => {
                    Edit::changed(OpResult::Int(n as i64), "xgroup-delconsumer").bookkeeping()
                }
                _ => Edit::unchanged(OpResult::Int(0)),
            }
        }),
    };
    super::edited(r, err(NO_SUCH_KEY))
}

pub fn xack(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let (key, group) = (a.arg(1), a.arg(2));
    match db.read_stream(key, now) {
        Err(w) => return w.into(),
        Ok(Some(s)) if s.group(group).is_some() => {}
        Ok(_) => return OpResult::Int(0),
    }
    let ids: Result<Vec<StreamId>, OpResult> = (3..a.len()).map(|i| parse_id(a.arg(i))).collect();
    let ids = match ids {
        Ok(ids) => ids,
        Err(e) => return e,
    };
    let r = db.edit_stream(key, now, false, a, |s| {
        let n = ids.iter().filter(|id| s.ack(group, **id)).count() as i64;
        if n == 0 {
            Edit::unchanged(OpResult::Int(0))
        } else {
            Edit::logged_all(OpResult::Int(n), "", vec![])
        }
    });
    super::edited(r, OpResult::Int(0))
}

pub fn xpending(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let (key, group) = (a.arg(1), a.arg(2));
    let n = a.len();
    if n != 3 && !(6..=9).contains(&n) {
        return err(SYNTAX);
    }
    let mut range = None;
    if n >= 6 {
        let parsed = (|| {
            let mut at = 3;
            let mut min_idle = 0i64;
            if a.is(3, "IDLE") {
                min_idle = int_or(a.arg(4), NOT_INT)?;
                if n < 8 {
                    return Err(err(SYNTAX));
                }
                at += 2;
            }
            let count = int_or(a.arg(at + 2), NOT_INT)?.max(0) as usize;
            let start = parse_bound(a.arg(at), 0, true)?;
            let end = parse_bound(a.arg(at + 1), u64::MAX, false)?;
            let consumer = (at + 3 < n).then(|| a.arg(at + 3).to_vec());
            Ok((min_idle, start, end, count, consumer))
        })();
        match parsed {
            Ok(r) => range = Some(r),
            Err(e) => return e,
        }
    }
    let s = match db.read_stream(key, now) {
        Err(w) => return w.into(),
        Ok(s) => s,
    };
    let Some(g) = s.and_then(|s| s.group(group)) else {
        return nogroup(key, group);
    };
    let Some((min_idle, start, end, count, consumer)) = range else {
        let pel = g.pel();
        let (Some((first, _)), Some((last, _))) = (pel.first_key_value(), pel.last_key_value())
        else {
            return reply(Resp::Array(vec![
                Resp::Integer(0),
                Resp::Null,
                Resp::Null,
                Resp::Null,
            ]));
        };
        let per: Vec<Resp> = g
            .consumers()
            .iter()
            .filter(|(_, c)| !c.pel.is_empty())
            .map(|(name, c)| {
                Resp::Array(vec![
                    Resp::Bulk(name.clone()),
                    text(&c.pel.len().to_string()),
                ])
            })
            .collect();
        return reply(Resp::Array(vec![
            Resp::Integer(pel.len() as i64),
            id_reply(*first),
            id_reply(*last),
            Resp::Array(per),
        ]));
    };
    let mut out = Vec::new();
    if start > end {
        return reply(Resp::Array(out));
    }
    let row = |id: &StreamId, owner: &Bytes, time: u64, count: u64| {
        Resp::Array(vec![
            id_reply(*id),
            Resp::Bulk(owner.clone()),
            Resp::Integer(now.saturating_sub(time) as i64),
            Resp::Integer(count as i64),
        ])
    };
    let idle_ok = |time: u64| min_idle <= 0 || (now as i64).saturating_sub(time as i64) >= min_idle;
    match consumer {
        Some(c) => {
            let Some(cons) = g.consumers().get(&c[..]) else {
                return reply(Resp::Array(out));
            };
            for id in cons.pel.range(start..=end) {
                if out.len() >= count {
                    break;
                }
                if let Some(nack) = g.pel().get(id) {
                    if idle_ok(nack.delivery_time) {
                        out.push(row(
                            id,
                            &nack.consumer,
                            nack.delivery_time,
                            nack.delivery_count,
                        ));
                    }
                }
            }
        }
        None => {
            for (id, nack) in g.pel().range(start..=end) {
                if out.len() >= count {
                    break;
                }
                if idle_ok(nack.delivery_time) {
                    out.push(row(
                        id,
                        &nack.consumer,
                        nack.delivery_time,
                        nack.delivery_count,
                    ));
                }
            }
        }
    }
    reply(Resp::Array(out))
}

/// XCLAIM's options.
struct ClaimOpts {
    min_idle: i64,
    ids: Vec<StreamId>,
    time: Option<i64>,
    retry: Option<i64>,
    force: bool,
    justid: bool,
    last_id: StreamId,
}

fn parse_claim(a: &dyn ArgList, now: u64) -> Result<ClaimOpts, OpResult> {
    let min_idle = int_or(a.arg(4), "ERR Invalid min-idle-time argument for XCLAIM")?.max(0);
    let mut ids = Vec::new();
    let mut j = 5;
    while j < a.len() {
        match parse_id(a.arg(j)) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        j += 1;
    }
    let mut o = ClaimOpts {
        min_idle,
        ids,
        time: None,
        retry: None,
        force: false,
        justid: false,
        last_id: StreamId::MIN,
    };
    while j < a.len() {
        let more = a.len() - 1 - j;
        if a.is(j, "FORCE") {
            o.force = true;
        } else if a.is(j, "JUSTID") {
            o.justid = true;
        } else if a.is(j, "IDLE") && more > 0 {
            j += 1;
            let idle = int_or(a.arg(j), "ERR Invalid IDLE option argument for XCLAIM")?;
            o.time = Some((now as i64).saturating_sub(idle));
        } else if a.is(j, "TIME") && more > 0 {
            j += 1;
            o.time = Some(int_or(
                a.arg(j),
                "ERR Invalid TIME option argument for XCLAIM",
            )?);
        } else if a.is(j, "RETRYCOUNT") && more > 0 {
            j += 1;
            // A negative count counts as not given (Redis's -1 sentinel).
            let r = int_or(
                a.arg(j),
                "ERR Invalid RETRYCOUNT option argument for XCLAIM",
            )?;
            o.retry = (r >= 0).then_some(r);
        } else if a.is(j, "LASTID") && more > 0 {
            j += 1;
            o.last_id = parse_id(a.arg(j))?;
        } else {
            return Err(err(&format!(
                "ERR Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(a.arg(j))
            )));
        }
        j += 1;
    }
    Ok(o)
}

/// Transfer pending entry `id` to `consumer` (XCLAIM / XAUTOCLAIM). Returns whether it
/// was claimed; journals what replay needs into `logs`.
#[allow(clippy::too_many_arguments)]
fn claim_one(
    s: &mut Stream,
    key: &[u8],
    group: &[u8],
    consumer: &[u8],
    id: StreamId,
    time: u64,
    count: Option<u64>,
    now: u64,
    logs: &mut Option<Vec<Vec<Bytes>>>,
) -> bool {
    let created = s.touch_consumer(group, consumer, now) == Some(true);
    let old = s
        .group(group)
        .and_then(|g| g.pel().get(&id))
        .map_or(1, |n| n.delivery_count);
    let n = count.unwrap_or(old);
    s.set_pending(group, consumer, id, time, n);
    if let Some(l) = logs {
        l.push(claim_log(key, group, consumer, &[id], &time.to_string(), n));
    }
    created
}

/// Drop a pending entry whose stream entry is gone, journaled as the claim that drops it.
fn drop_deleted(
    s: &mut Stream,
    key: &[u8],
    group: &[u8],
    consumer: &[u8],
    id: StreamId,
    logs: &mut Option<Vec<Vec<Bytes>>>,
) {
    s.ack(group, id);
    if let Some(l) = logs {
        let mut c = cmd(&[b"XCLAIM", key, group, consumer, b"0"]);
        c.push(id.to_bytes());
        l.push(c);
    }
}

pub fn xclaim(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let (key, group, consumer) = (a.arg(1), a.arg(2), a.arg(3));
    match db.read_stream(key, now) {
        Err(w) => return w.into(),
        Ok(Some(s)) if s.group(group).is_some() => {}
        Ok(_) => return nogroup(key, group),
    }
    let ts = wall(now);
    let o = match parse_claim(a, ts) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let journaling = db.journaling();
    let r = db.edit_stream(key, now, false, a, |s| {
        let mut logs = journaling.then(Vec::new);
        let (mut changed, mut created) = (false, false);
        let time = match o.time {
            Some(t) if t >= 0 && (t as u64) <= ts => t as u64,
            _ => ts,
        };
        if s.group(group).is_some_and(|g| o.last_id > g.last_id) {
            let read = s
                .group(group)
                .map_or(INVALID_ENTRIES_READ, |g| g.entries_read);
            s.set_group_id(group, o.last_id, read);
            changed = true;
            if let Some(l) = logs.as_mut() {
                l.push(setid_log(key, group, s));
            }
        }
        let mut out = Vec::new();
        for &id in &o.ids {
            let pending = s.group(group).and_then(|g| g.pel().get(&id).cloned());
            if !s.contains(id) {
                if pending.is_some() {
                    drop_deleted(s, key, group, consumer, id, &mut logs);
                    changed = true;
                }
                continue;
            }
            let count = match &pending {
                None if !o.force => continue,
                None => {
                    // FORCE creates the entry as delivered once (no idle time to judge),
                    // then claims it.
                    match (o.retry, o.justid) {
                        (Some(r), _) => Some(r as u64),
                        (None, true) => Some(1),
                        (None, false) => Some(2),
                    }
                }
                Some(n) => {
                    if o.min_idle > 0
                        && (ts as i64).saturating_sub(n.delivery_time as i64) < o.min_idle
                    {
                        continue;
                    }
                    match (o.retry, o.justid) {
                        (Some(r), _) => Some(r as u64),
                        (None, true) => Some(n.delivery_count),
                        (None, false) => Some(n.delivery_count.wrapping_add(1)),
                    }
                }
            };
            created |= claim_one(s, key, group, consumer, id, time, count, ts, &mut logs);
            changed = true;
            out.push(if o.justid {
                id_reply(id)
            } else {
                entry_or_nil(s, id)
            });
        }
        let out = reply(Resp::Array(out));
        if changed {
            Edit::logged_all(out, consumer_event(created), logs.unwrap_or_default())
        } else {
            Edit::unchanged(out)
        }
    });
    super::edited(r, nogroup(key, group))
}

pub fn xautoclaim(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let (key, group, consumer) = (a.arg(1), a.arg(2), a.arg(3));
    let found = match db.read_stream(key, now) {
        Err(w) => return w.into(),
        Ok(s) => s.is_some_and(|s| s.group(group).is_some()),
    };
    let parsed = (|| {
        let min_idle = int_or(
            a.arg(4),
            "ERR Invalid min-idle-time argument for XAUTOCLAIM",
        )?
        .max(0);
        let start = parse_bound(a.arg(5), 0, true)?;
        let mut count = 100i64;
        let mut justid = false;
        let mut j = 6;
        while j < a.len() {
            let more = a.len() - 1 - j;
            if a.is(j, "COUNT") && more > 0 {
                count = match parse_int(a.arg(j + 1)) {
                    Some(n) if (1..=i64::MAX / 16).contains(&n) => n,
                    _ => return Err(err("ERR COUNT must be > 0")),
                };
                j += 2;
            } else if a.is(j, "JUSTID") {
                justid = true;
                j += 1;
            } else {
                return Err(err(SYNTAX));
            }
        }
        Ok((min_idle, start, count as u64, justid))
    })();
    let (min_idle, start, count, justid) = match parsed {
        Ok(x) => x,
        Err(e) => return e,
    };
    if !found {
        return nogroup(key, group);
    }
    let journaling = db.journaling();
    let ts = wall(now);
    let r = db.edit_stream(key, now, false, a, |s| {
        let mut logs = journaling.then(Vec::new);
        let mut attempts = count.saturating_mul(10);
        let mut left = count;
        let mut claimed = Vec::new();
        let mut deleted = Vec::new();
        let mut created = false;
        let mut cursor = start;
        let mut next = StreamId::MIN;
        loop {
            let Some((id, nack)) = s
                .group(group)
                .and_then(|g| g.pel().range(cursor..).next().map(|(i, n)| (*i, n.clone())))
            else {
                next = StreamId::MIN;
                break;
            };
            if attempts == 0 || left == 0 {
                next = id;
                break;
            }
            attempts -= 1;
            cursor = match id.incr() {
                Some(c) => c,
                None => StreamId::MAX,
            };
            let at_end = id == StreamId::MAX;
            if !s.contains(id) {
                drop_deleted(s, key, group, consumer, id, &mut logs);
                deleted.push(id_reply(id));
                left -= 1;
            } else if min_idle > 0
                && (ts as i64).saturating_sub(nack.delivery_time as i64) < min_idle
            {
                // not idle long enough
            } else {
                let n = if justid {
                    nack.delivery_count
                } else {
                    nack.delivery_count.wrapping_add(1)
                };
                created |= claim_one(s, key, group, consumer, id, ts, Some(n), ts, &mut logs);
                claimed.push(if justid {
                    id_reply(id)
                } else {
                    entry_or_nil(s, id)
                });
                left -= 1;
            }
            if at_end {
                break;
            }
        }
        let changed = !claimed.is_empty() || !deleted.is_empty();
        let out = reply(Resp::Array(vec![
            id_reply(next),
            Resp::Array(claimed),
            Resp::Array(deleted),
        ]));
        if changed {
            Edit::logged_all(out, consumer_event(created), logs.unwrap_or_default())
        } else {
            Edit::unchanged(out)
        }
    });
    super::edited(r, nogroup(key, group))
}

/// The keyspace event of a claim: `xgroup-createconsumer` when it made the consumer, as
/// Redis raises it (on the first entry actually claimed), else none.
fn consumer_event(created: bool) -> &'static str {
    if created {
        "xgroup-createconsumer"
    } else {
        ""
    }
}

// ---------------------------------------------------------------- XINFO / XSETID

fn opt_int(v: Option<i64>) -> Resp {
    v.map_or(Resp::Null, Resp::Integer)
}

fn group_info(s: &Stream, name: &Bytes, g: &crate::types::stream::Group) -> Vec<(Resp, Resp)> {
    let read = (g.entries_read != INVALID_ENTRIES_READ).then_some(g.entries_read);
    vec![
        (text("name"), Resp::Bulk(name.clone())),
        (text("consumers"), Resp::Integer(g.consumers().len() as i64)),
        (text("pending"), Resp::Integer(g.pel().len() as i64)),
        (text("last-delivered-id"), id_reply(g.last_id)),
        (text("entries-read"), opt_int(read)),
        (text("lag"), opt_int(s.lag(g))),
    ]
}

pub fn xinfo(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let table = [("consumers", 4), ("groups", 3), ("stream", -3), ("help", 2)];
    let sub = match subcommand(a, "xinfo", &table) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if sub == "help" {
        return super::help_reply(XINFO_HELP);
    }
    let key = a.arg(2);
    let st = match db.read_stream(key, now) {
        Err(w) => return w.into(),
        Ok(None) => return err(NO_SUCH_KEY),
        Ok(Some(x)) => x,
    };
    match sub.as_str() {
        "consumers" => {
            let Some(g) = st.group(a.arg(3)) else {
                return nogroup_for_key(a.arg(3), key);
            };
            let list = g
                .consumers()
                .iter()
                .map(|(name, c)| {
                    Resp::Map(vec![
                        (text("name"), Resp::Bulk(name.clone())),
                        (text("pending"), Resp::Integer(c.pel.len() as i64)),
                        (
                            text("idle"),
                            Resp::Integer(now.saturating_sub(c.seen_time) as i64),
                        ),
                    ])
                })
                .collect();
            reply(Resp::Array(list))
        }
        "groups" => reply(Resp::Array(
            st.groups()
                .iter()
                .map(|(n, g)| Resp::Map(group_info(st, n, g)))
                .collect(),
        )),
        _ => xinfo_stream(st, a),
    }
}

fn xinfo_stream(st: &Stream, a: &dyn ArgList) -> OpResult {
    let mut full = false;
    let mut count: u64 = 10;
    if a.len() > 3 {
        if !a.is(3, "FULL") {
            return subcommand_syntax(a, "xinfo");
        }
        full = true;
        if a.len() > 4 {
            if a.len() != 6 || !a.is(4, "COUNT") {
                return subcommand_syntax(a, "xinfo");
            }
            count = match parse_int(a.arg(5)) {
                Some(n) if n <= 0 => 0,
                Some(n) => n as u64,
                None => return err(NOT_INT),
            };
        }
    }
    let (chunks, nodes) = st.layout();
    let mut m = vec![
        (text("length"), Resp::Integer(st.len() as i64)),
        (text("radix-tree-keys"), Resp::Integer(chunks as i64)),
        (text("radix-tree-nodes"), Resp::Integer(nodes as i64)),
        (text("last-generated-id"), id_reply(st.last_id)),
        (text("max-deleted-entry-id"), id_reply(st.max_deleted)),
        (
            text("entries-added"),
            Resp::Integer(st.entries_added as i64),
        ),
    ];
    if !full {
        m.push((text("recorded-first-entry-id"), id_reply(st.first_id())));
        m.push((text("groups"), Resp::Integer(st.groups().len() as i64)));
        let first = range_reply(st, StreamId::MIN, StreamId::MAX, false, 1).pop();
        let last = range_reply(st, StreamId::MIN, StreamId::MAX, true, 1).pop();
        m.push((text("first-entry"), first.unwrap_or(Resp::Null)));
        m.push((text("last-entry"), last.unwrap_or(Resp::Null)));
        return reply(Resp::Map(m));
    }
    m.push((text("recorded-first-entry-id"), id_reply(st.first_id())));
    m.push((
        text("entries"),
        Resp::Array(range_reply(st, StreamId::MIN, StreamId::MAX, false, count)),
    ));
    let limit = if count == 0 {
        usize::MAX
    } else {
        count as usize
    };
    let groups = st
        .groups()
        .iter()
        .map(|(name, g)| {
            let read = (g.entries_read != INVALID_ENTRIES_READ).then_some(g.entries_read);
            let pel: Vec<Resp> = g
                .pel()
                .iter()
                .take(limit)
                .map(|(id, n)| {
                    Resp::Array(vec![
                        id_reply(*id),
                        Resp::Bulk(n.consumer.clone()),
                        Resp::Integer(n.delivery_time as i64),
                        Resp::Integer(n.delivery_count as i64),
                    ])
                })
                .collect();
            let consumers: Vec<Resp> = g
                .consumers()
                .iter()
                .map(|(cname, c)| {
                    let pending: Vec<Resp> = c
                        .pel
                        .iter()
                        .take(limit)
                        .filter_map(|id| {
                            g.pel().get(id).map(|n| {
                                Resp::Array(vec![
                                    id_reply(*id),
                                    Resp::Integer(n.delivery_time as i64),
                                    Resp::Integer(n.delivery_count as i64),
                                ])
                            })
                        })
                        .collect();
                    Resp::Map(vec![
                        (text("name"), Resp::Bulk(cname.clone())),
                        (text("seen-time"), Resp::Integer(c.seen_time as i64)),
                        (text("pel-count"), Resp::Integer(c.pel.len() as i64)),
                        (text("pending"), Resp::Array(pending)),
                    ])
                })
                .collect();
            Resp::Map(vec![
                (text("name"), Resp::Bulk(name.clone())),
                (text("last-delivered-id"), id_reply(g.last_id)),
                (text("entries-read"), opt_int(read)),
                (text("lag"), opt_int(st.lag(g))),
                (text("pel-count"), Resp::Integer(g.pel().len() as i64)),
                (text("pending"), Resp::Array(pel)),
                (text("consumers"), Resp::Array(consumers)),
            ])
        })
        .collect();
    m.push((text("groups"), Resp::Array(groups)));
    reply(Resp::Map(m))
}

pub fn xsetid(db: &mut Db, now: u64, a: &dyn ArgList) -> OpResult {
    let parsed = (|| {
        let id = parse_id(a.arg(2))?;
        let mut added: Option<u64> = None;
        let mut max_del = StreamId::MIN;
        let mut i = 3;
        while i < a.len() {
            let more = a.len() - 1 - i;
            if a.is(i, "ENTRIESADDED") && more > 0 {
                let n = int_or(a.arg(i + 1), NOT_INT)?;
                if n < 0 {
                    return Err(err("ERR entries_added must be positive"));
                }
                added = Some(n as u64);
                i += 2;
            } else if a.is(i, "MAXDELETEDID") && more > 0 {
                max_del = parse_id(a.arg(i + 1))?;
                if id < max_del {
                    return Err(err("ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id"));
                }
                i += 2;
            } else {
                return Err(err(SYNTAX));
            }
        }
        Ok((id, added, max_del))
    })();
    let (id, added, max_del) = match parsed {
        Ok(x) => x,
        Err(e) => return e,
    };
    let r = db.edit_stream(a.arg(1), now, false, a, |s| {
        if !s.is_empty() {
            if id < s.last_live_id() {
                return Edit::unchanged(err(
                    "ERR The ID specified in XSETID is smaller than the target stream top item",
                ));
            }
            if added.is_some_and(|n| n < s.len()) {
                return Edit::unchanged(err(
                    "ERR The entries_added specified in XSETID is smaller than the target stream length",
                ));
            }
        }
        s.set_last_id(id);
        if let Some(n) = added {
            s.entries_added = n;
        }
        if !max_del.is_zero() {
            s.max_deleted = max_del;
        }
        Edit::changed(OpResult::Ok, "xsetid")
    });
    super::edited(r, err(NO_SUCH_KEY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocking_reads_are_where_their_exec_looks() {
        assert_eq!(COMMANDS[XREAD].name, "xread");
        assert_eq!(COMMANDS[XREADGROUP].name, "xreadgroup");
    }

    #[test]
    fn ids_parse_like_redis() {
        let id = |b: &[u8]| parse_id(b).ok();
        assert_eq!(id(b"5-1"), Some(StreamId::new(5, 1)));
        assert_eq!(id(b"5"), Some(StreamId::new(5, 0)));
        assert_eq!(id(b" 5"), Some(StreamId::new(5, 0)));
        assert_eq!(id(b"+5"), Some(StreamId::new(5, 0)));
        assert_eq!(id(b"00004-0001"), Some(StreamId::new(4, 1)));
        for bad in [
            &b"5-"[..],
            b"-5",
            b"5.0",
            b"",
            b"*-5",
            b"6-+",
            b"1-2-3",
            b"-",
            b"+",
        ] {
            assert_eq!(id(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            parse_id_full(b"7-*", 0, true, true).ok(),
            Some((StreamId::new(7, 0), false))
        );
        assert_eq!(
            parse_bound(b"(5-1", 0, true).ok(),
            Some(StreamId::new(5, 2))
        );
        assert_eq!(
            parse_bound(b"(5-0", 0, false).ok(),
            Some(StreamId::new(4, u64::MAX))
        );
        assert!(parse_bound(b"(0-0", 0, false).is_err());
        assert_eq!(
            parse_bound(b"5", u64::MAX, false).ok(),
            Some(StreamId::new(5, u64::MAX))
        );
    }
}
