//! Blocking list pops (BLPOP, BRPOP, BLMPOP, BLMOVE, BRPOPLPUSH) across shards.
//!
//! The client's shard *coordinates*; the shards owning its keys keep *waiters* queued per
//! key in arrival order. No element moves until the coordinator claims it, so a client
//! blocked on keys of several shards is served exactly once:
//!
//! 1. `BlockOn` registers the waiter on each key's shard; each answers whether it could
//!    serve now (`Offer { initial }`). Once all answered, the coordinator claims the offer
//!    of the earliest key (Redis's order when several keys have data).
//! 2. Later, a write that gives a watched key elements makes its shard offer them to the
//!    key's waiters in order, at most one waiter per element (`Offer`).
//! 3. The coordinator claims one offer at a time (`Take`); the shard pops (a journaled
//!    write like any LPOP) and answers `Served` with the reply, or `Served(None)` if the
//!    element is gone meanwhile (the waiter stays queued). Other offers wait their turn.
//! 4. Served, timed out, unblocked (CLIENT UNBLOCK) or disconnected: `Unblock` removes the
//!    waiter everywhere, and its shards offer what it was offered to the next waiters. A
//!    reply served to a client that disconnected while the claim was in flight is pushed
//!    back where it came from, so no element is lost.
//!
//! A blocked connection stops parsing input (what it sends meanwhile is kept, bounded by
//! the engine's input limit) but keeps reading, so a disconnect is seen at once.

use std::collections::VecDeque;

use bytes::Bytes;
use coreshard_engine::{ConnId, Ctx, ShardId};
use coreshard_protocol::Value as Resp;

use super::ops::{unix_ms, Msg, OpResult};
use super::Server;
use crate::db::{Db, Edit, WrongType};

/// A waiter: its coordinating shard and its number there.
pub type WaiterId = (ShardId, u64);

/// Timer cookies at and above this name a blocked client's timeout.
pub const TIMER_BASE: u64 = 1 << 40;

/// What a waiter does once served.
#[derive(Debug, Clone)]
pub enum BlockOp {
    /// BLPOP / BRPOP (`count: None`, reply `[key, element]`) or BLMPOP (`count: Some`,
    /// reply `[key, [elements]]`).
    Pop { left: bool, count: Option<u64> },
    /// BLMOVE / BRPOPLPUSH: pop from the source, push onto `dst`; reply the element.
    Move {
        dst: Bytes,
        from_left: bool,
        to_left: bool,
    },
    /// BZPOPMIN / BZPOPMAX (`count: None`, reply `[key, member, score]`) or BZMPOP
    /// (`count: Some`, reply `[key, [[member, score], ...]]`).
    ZPop { max: bool, count: Option<u64> },
    /// XREAD / XREADGROUP with BLOCK: the command (on a key's shard, restricted to that
    /// shard's keys with `$` resolved), run when one of its streams has something for it.
    /// Nothing is taken from the stream (a group read advances the group), so a stream
    /// has no budget of waiters: each is offered whenever its read would answer.
    /// `fresh` until the shard's first look at it: then the command's own errors apply
    /// (WRONGTYPE, NOGROUP), later those of a wait whose key or group went away.
    Stream { args: Vec<Bytes>, fresh: bool },
}

impl BlockOp {
    /// Whether it reads streams.
    fn on_streams(&self) -> bool {
        matches!(self, BlockOp::Stream { .. })
    }

    /// Whether it pops from sorted sets (else from lists).
    fn on_zsets(&self) -> bool {
        matches!(self, BlockOp::ZPop { .. })
    }
}

impl BlockOp {
    /// The reply when nothing came in time.
    pub(crate) fn timeout_reply(&self) -> OpResult {
        match self {
            BlockOp::Pop { .. } | BlockOp::ZPop { .. } | BlockOp::Stream { .. } => {
                OpResult::NullArray
            }
            BlockOp::Move { .. } => OpResult::Value(None),
        }
    }

    /// The event name a served wait runs as.
    pub(crate) fn command_name(&self) -> &'static str {
        match self {
            BlockOp::Pop { left: true, .. } => "lpop",
            BlockOp::Pop { left: false, .. } => "rpop",
            BlockOp::Move { .. } => "lmove",
            BlockOp::ZPop { max: false, .. } => "zpopmin",
            BlockOp::ZPop { max: true, .. } => "zpopmax",
            BlockOp::Stream { args, .. } => {
                if crate::commands::stream::is_group_read(args) {
                    "xreadgroup"
                } else {
                    "xread"
                }
            }
        }
    }
}

/// Coordinator side of one blocked client.
#[derive(Debug)]
struct Blocked {
    conn: ConnId,
    op: BlockOp,
    /// Shards holding the waiter.
    shards: Vec<ShardId>,
    /// Shards that have not answered the registration yet.
    pending_initial: usize,
    /// Offers received while registering (key position, shard), or queued behind a claim.
    offers: VecDeque<(u32, ShardId)>,
    /// The shard asked to serve, while its answer is in flight, and the key position of
    /// the offer claimed.
    claim: Option<ShardId>,
    claim_pos: u32,
    /// A claim refused because a transaction held the key (`Served { busy }`): its shard
    /// and the key's position. Later keys are not claimed meanwhile (Redis serves the
    /// first key that has elements); the shard's next offer, or its `Offer { pos: None }`,
    /// ends the hold.
    held: Option<(ShardId, u32)>,
    /// The timeout passed (or CLIENT UNBLOCK) while a claim was in flight.
    expired: Option<OpResult>,
    /// The client is gone: a served reply is pushed back.
    dead: bool,
    /// The timeout, cancelled when the wait ends sooner.
    timer: Option<coreshard_engine::TimerId>,
    /// Its one shard was asked to forget it (`End`); the wait ends at the answer.
    ending: bool,
    /// Its keys, in command order.
    keys: Vec<Bytes>,
    /// Replies shards gave at registration (a plain XREAD over several shards).
    early: Vec<OpResult>,
}

/// One XREAD reply from the shards' early answers: streams in command order, or the
/// first error.
fn merge_early(early: Vec<OpResult>, keys: &[Bytes]) -> OpResult {
    let mut pairs = Vec::new();
    for r in early {
        match r {
            OpResult::KeyMap(p) => pairs.extend(p),
            OpResult::Error(_) => return r,
            _ => {}
        }
    }
    let rank = |v: &Resp| match v {
        Resp::Bulk(k) => keys.iter().position(|x| x == k).unwrap_or(usize::MAX),
        _ => usize::MAX,
    };
    pairs.sort_by_key(|(k, _)| rank(k));
    OpResult::KeyMap(pairs)
}

/// Shard side of one waiter.
#[derive(Debug)]
struct Waiter {
    /// This shard's keys of the waiter, with their position in the command.
    keys: Vec<(u32, Bytes)>,
    op: BlockOp,
    /// Offered an element of this key and not answered yet.
    offered: Option<Bytes>,
    /// All its keys live on this shard (so its offers come from here only).
    single: bool,
    /// A stream read: where it reads each of `keys` from (same order).
    wait: Option<crate::commands::stream::StreamWait>,
    /// It was served (what it took may leave more for the next).
    served: bool,
}

/// A shard's blocking state, both roles.
#[derive(Debug, Default)]
pub struct Blocking {
    next_id: u64,
    coord: hashbrown::HashMap<u64, Blocked>,
    queues: hashbrown::HashMap<Bytes, VecDeque<WaiterId>>,
    /// Stream readers per key, in arrival order, with the key's index in the waiter's
    /// keys (a reader is checked against the written key only, in O(1)).
    stream_queues: hashbrown::HashMap<Bytes, VecDeque<(WaiterId, u32)>>,
    waiters: hashbrown::HashMap<WaiterId, Waiter>,
    /// Keys whose waiters were refused under a transaction's lock: offered again once
    /// locks are released.
    retry: Vec<Bytes>,
    /// Waiters refused that way: their coordinators hold on until these keys are offered
    /// again or said to have nothing left.
    held_back: Vec<WaiterId>,
    /// Takes that wait for an earlier waiter of the same key to take or let go first.
    deferred_takes: Vec<(ShardId, WaiterId)>,
    /// Blocked moves running as transactions (by transaction id): the waiter and its
    /// shards, released once the transaction committed.
    moves: hashbrown::HashMap<u64, (WaiterId, Vec<ShardId>)>,
    /// Group reads over several shards tried first as a transaction (by transaction id):
    /// their keys, command and timeout, to block with if it answered nothing.
    reads: hashbrown::HashMap<u64, (Vec<Bytes>, Vec<Bytes>, u64)>,
}

/// A pop's result, as the shard answers it: the reply and what to push back if the
/// client is gone (`key`, elements in pop order, popped from the left).
#[derive(Debug)]
pub struct Popped {
    reply: OpResult,
    /// The command that puts back what was popped (LPUSH/RPUSH/ZADD), if anything was.
    restore: Option<Vec<Bytes>>,
    /// For a move whose destination is on another shard: the source key that has an
    /// element (nothing was popped; the coordinator moves it on key locks).
    move_from: Option<Bytes>,
}

impl Popped {
    /// The client's reply.
    pub fn into_reply(self) -> OpResult {
        self.reply
    }
}

/// The push that puts popped list elements back (popped in order from one end: pushing
/// them back in reverse restores the list).
fn restore_push(key: &Bytes, elems: Vec<Bytes>, left: bool) -> Option<Vec<Bytes>> {
    if elems.is_empty() {
        return None;
    }
    let name: &'static [u8] = if left { b"LPUSH" } else { b"RPUSH" };
    let mut args = vec![Bytes::from_static(name), key.clone()];
    args.extend(elems.into_iter().rev());
    Some(args)
}

/// The ZADD that puts popped members back with their scores.
fn restore_zadd(key: &Bytes, popped: &[(Bytes, f64)]) -> Option<Vec<Bytes>> {
    if popped.is_empty() {
        return None;
    }
    let mut args = vec![Bytes::from_static(b"ZADD"), key.clone()];
    for (m, s) in popped {
        args.push(Bytes::from(coreshard_protocol::format_double(*s)));
        args.push(m.clone());
    }
    Some(args)
}

/// Messages of the blocking protocol.
#[derive(Debug)]
pub enum BlockMsg {
    /// Register a waiter on these keys (position, key) of the receiving shard.
    BlockOn {
        waiter: WaiterId,
        keys: Vec<(u32, Bytes)>,
        op: BlockOp,
        /// Every key of the waiter is on the receiving shard.
        single: bool,
    },
    /// The shard can serve the waiter from the key at `pos` (`None`: not now).
    Offer {
        waiter: WaiterId,
        pos: Option<u32>,
        initial: bool,
        /// A plain XREAD spread over shards: what this shard's streams answer at once
        /// (the coordinator merges every shard's, as one XREAD would answer).
        early: Option<OpResult>,
    },
    /// Serve the waiter now.
    Take { waiter: WaiterId },
    /// The waiter's pop (`None`: nothing left; it stays queued). `busy`: nothing popped
    /// because a transaction holds the key; it is offered again (or, if it has nothing
    /// left by then, `Offer { pos: None }` says so) once the locks are released.
    Served {
        waiter: WaiterId,
        popped: Option<Popped>,
        busy: bool,
    },
    /// Forget the waiter.
    Unblock { waiter: WaiterId },
    /// End a one-shard waiter's wait: forget it and answer `Ended` (behind any `Served`
    /// already sent for it, so the coordinator learns which came first).
    End { waiter: WaiterId },
    /// The shard forgot the waiter (answer to `End`).
    Ended { waiter: WaiterId },
}

/// Parse a blocking timeout (seconds, fractional allowed) into milliseconds (0 = forever).
pub fn parse_timeout(arg: &[u8]) -> Result<u64, OpResult> {
    use crate::commands::longdouble;
    // As Redis 7.0 reads it: a long double, times 1000, rounded up, as a C long long (an
    // infinity or an overflow turns negative there, so it says "negative").
    let secs = longdouble::parse(arg)
        .ok_or_else(|| OpResult::Error("ERR timeout is not a float or out of range".into()))?;
    let ms = longdouble::ceil_millis(secs);
    if ms < 0 {
        return Err(OpResult::Error("ERR timeout is negative".into()));
    }
    Ok(ms as u64)
}

/// Pop for a waiter (or a blocking command run without blocking) from the first of `keys`
/// holding a non-empty list. `Ok(None)`: every list is empty. Journaled like the
/// equivalent non-blocking command.
pub fn pop_now(
    db: &mut Db,
    now: u64,
    keys: &[(u32, Bytes)],
    op: &BlockOp,
) -> Result<Option<Popped>, WrongType> {
    if let BlockOp::Stream { args, fresh } = op {
        let out = read_stream_now(db, now, args, *fresh);
        return Ok((!matches!(out, OpResult::NullArray)).then_some(Popped {
            reply: out,
            restore: None,
            move_from: None,
        }));
    }
    for (_, key) in keys {
        let has = if op.on_zsets() {
            db.read_zset(key, now)?.is_some_and(|z| !z.is_empty())
        } else {
            db.read_list(key, now)?.is_some_and(|l| !l.is_empty())
        };
        if !has {
            continue;
        }
        return match op {
            BlockOp::ZPop { max, count } => {
                let n = count.unwrap_or(1).max(1) as usize;
                let name: &'static [u8] = if *max { b"ZPOPMAX" } else { b"ZPOPMIN" };
                let args: Vec<Bytes> = vec![
                    Bytes::from_static(name),
                    key.clone(),
                    Bytes::from(n.to_string()),
                ];
                let event = if *max { "zpopmax" } else { "zpopmin" };
                let got = db.edit_zset(key, now, false, &args, |z| {
                    let mut out = Vec::new();
                    while out.len() < n && !z.is_empty() {
                        let rank = if *max { z.len() - 1 } else { 0 };
                        let Some((m, s)) = z.get_rank(rank).map(|(m, s)| (m.to_vec(), s)) else {
                            break;
                        };
                        z.remove(&m);
                        out.push((Bytes::from(m), s));
                    }
                    Edit::logged(out, event, args.clone())
                })?;
                let popped = got.unwrap_or_default();
                let restore = popped.clone();
                let reply = match count {
                    None => {
                        let (m, s) = popped.first().cloned().unwrap_or((Bytes::new(), 0.0));
                        Resp::Array(vec![
                            Resp::Bulk(key.clone()),
                            Resp::Bulk(m),
                            Resp::Double(s),
                        ])
                    }
                    Some(_) => Resp::Array(vec![
                        Resp::Bulk(key.clone()),
                        Resp::Array(
                            popped
                                .into_iter()
                                .map(|(m, s)| Resp::Array(vec![Resp::Bulk(m), Resp::Double(s)]))
                                .collect(),
                        ),
                    ]),
                };
                Ok(Some(Popped {
                    reply: OpResult::Reply(reply),
                    restore: restore_zadd(key, &restore),
                    move_from: None,
                }))
            }
            BlockOp::Pop { left, count } => {
                let n = count.unwrap_or(1).max(1) as usize;
                let name: &'static [u8] = if *left { b"LPOP" } else { b"RPOP" };
                let args: Vec<Bytes> = vec![
                    Bytes::from_static(name),
                    key.clone(),
                    Bytes::from(n.to_string()),
                ];
                let event = if *left { "lpop" } else { "rpop" };
                let got = db.edit_list(key, now, false, &args, |l| {
                    let mut out = Vec::new();
                    while out.len() < n {
                        let v = if *left { l.pop_front() } else { l.pop_back() };
                        match v {
                            Some(v) => out.push(Bytes::from(v)),
                            None => break,
                        }
                    }
                    Edit::logged(out, event, args.clone())
                })?;
                let elems = got.unwrap_or_default();
                let reply = match count {
                    None => Resp::Array(vec![
                        Resp::Bulk(key.clone()),
                        elems.first().cloned().map_or(Resp::Null, Resp::Bulk),
                    ]),
                    Some(_) => Resp::Array(vec![
                        Resp::Bulk(key.clone()),
                        Resp::Array(elems.iter().cloned().map(Resp::Bulk).collect()),
                    ]),
                };
                Ok(Some(Popped {
                    reply: OpResult::Reply(reply),
                    restore: restore_push(key, elems, *left),
                    move_from: None,
                }))
            }
            BlockOp::Stream { .. } => Ok(None),
            BlockOp::Move {
                dst,
                from_left,
                to_left,
            } => {
                if db.read_list(dst, now).is_err() {
                    return Err(WrongType);
                }
                let moved = db.atomically(|db| {
                    let pop: Vec<Bytes> = vec![
                        Bytes::from_static(if *from_left { b"LPOP" } else { b"RPOP" }),
                        key.clone(),
                    ];
                    let event = if *from_left { "lpop" } else { "rpop" };
                    let v = db
                        .edit_list(key, now, false, &pop, |l| {
                            let v = if *from_left {
                                l.pop_front()
                            } else {
                                l.pop_back()
                            };
                            match v {
                                Some(v) => Edit::logged(Some(v), event, pop.clone()),
                                None => Edit::unchanged(None),
                            }
                        })
                        .ok()
                        .flatten()
                        .flatten()?;
                    let push: Vec<Bytes> = vec![
                        Bytes::from_static(if *to_left { b"LPUSH" } else { b"RPUSH" }),
                        dst.clone(),
                        Bytes::copy_from_slice(&v),
                    ];
                    let event = if *to_left { "lpush" } else { "rpush" };
                    let _ = db.edit_list(dst, now, true, &push, |l| {
                        if *to_left {
                            l.push_front(&v);
                        } else {
                            l.push_back(&v);
                        }
                        Edit::logged((), event, push.clone())
                    });
                    Some(Bytes::from(v))
                });
                Ok(Some(Popped {
                    reply: OpResult::Value(moved),
                    restore: None,
                    move_from: None,
                }))
            }
        };
    }
    Ok(None)
}

/// Run a stream waiter's read now (null array: nothing for it yet): as the command
/// itself when `fresh`, else as a wait that ends.
fn read_stream_now(db: &mut Db, now: u64, args: &[Bytes], fresh: bool) -> OpResult {
    if fresh {
        crate::commands::stream::read_now(db, now, args)
    } else {
        crate::commands::stream::serve_waiter(db, now, args)
    }
}

impl Server {
    /// Start blocking `conn` on `keys` (in command order) until `op` can run or `timeout_ms`
    /// passes (0 = forever). The caller already tried without blocking where it could.
    pub fn block(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        keys: Vec<Bytes>,
        op: BlockOp,
        timeout_ms: u64,
    ) {
        let b = &mut self.blocking;
        b.next_id += 1;
        let id = b.next_id;
        let waiter = (self.shard, id);
        let mut by_shard: Vec<(ShardId, Vec<(u32, Bytes)>)> = Vec::new();
        for (pos, key) in keys.into_iter().enumerate() {
            let shard = self.slots.shard_of(&key);
            match by_shard.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, ks)) => ks.push((pos as u32, key)),
                None => by_shard.push((shard, vec![(pos as u32, key)])),
            }
        }
        let shards: Vec<ShardId> = by_shard.iter().map(|(s, _)| *s).collect();
        let mut ordered: Vec<(u32, Bytes)> = by_shard
            .iter()
            .flat_map(|(_, ks)| ks.iter().cloned())
            .collect();
        ordered.sort_by_key(|(p, _)| *p);
        let ordered: Vec<Bytes> = ordered.into_iter().map(|(_, k)| k).collect();
        self.blocking.coord.insert(
            id,
            Blocked {
                conn,
                op: op.clone(),
                shards: shards.clone(),
                pending_initial: shards.len(),
                offers: VecDeque::new(),
                claim: None,
                claim_pos: 0,
                held: None,
                expired: None,
                dead: false,
                timer: None,
                ending: false,
                keys: ordered,
                early: Vec::new(),
            },
        );
        if let Some(state) = ctx.state(conn) {
            state.blocked = Some(id);
        }
        let single = shards.len() == 1;
        for (shard, keys) in by_shard {
            ctx.send(
                shard,
                Msg::Block(BlockMsg::BlockOn {
                    waiter,
                    keys,
                    op: op.clone(),
                    single,
                }),
            );
        }
        if timeout_ms > 0 {
            let t = ctx.set_timer(
                std::time::Duration::from_millis(timeout_ms),
                TIMER_BASE + id,
            );
            if let Some(b) = self.blocking.coord.get_mut(&id) {
                b.timer = Some(t);
            }
        }
    }

    /// A blocking-protocol message.
    pub fn on_block_msg(&mut self, ctx: &mut Ctx<Server>, from: ShardId, msg: BlockMsg) {
        match msg {
            BlockMsg::BlockOn {
                waiter,
                keys,
                op,
                single,
            } => self.register(ctx, waiter, keys, op, single),
            BlockMsg::Offer {
                waiter,
                pos,
                initial,
                early,
            } => self.on_offer(ctx, from, waiter.1, pos, initial, early),
            BlockMsg::Take { waiter } => self.on_take(ctx, from, waiter),
            BlockMsg::Served {
                waiter,
                popped,
                busy,
            } => self.on_served(ctx, from, waiter.1, popped, busy),
            BlockMsg::Unblock { waiter } => {
                self.forget_waiter(ctx, waiter);
                self.retry_takes(ctx);
            }
            BlockMsg::End { waiter } => {
                self.forget_waiter(ctx, waiter);
                self.retry_takes(ctx);
                // Ordered behind a `Served` still waiting for the log, if any.
                self.send_observed(ctx, from, Msg::Block(BlockMsg::Ended { waiter }));
            }
            BlockMsg::Ended { waiter } => {
                // Not served meanwhile: end it with the reply kept for this moment.
                if let Some(b) = self.blocking.coord.get_mut(&waiter.1) {
                    let reply = b.expired.take().unwrap_or_else(|| b.op.timeout_reply());
                    self.finish(ctx, waiter.1, reply);
                }
            }
        }
        self.serve_ready(ctx);
    }

    /// Queue a waiter behind this shard's earlier ones, and say whether it could be
    /// served now (a key of another type counts: serving it answers WRONGTYPE).
    fn register(
        &mut self,
        ctx: &mut Ctx<Server>,
        waiter: WaiterId,
        keys: Vec<(u32, Bytes)>,
        op: BlockOp,
        single: bool,
    ) {
        let now = unix_ms();
        let op = match op {
            BlockOp::Stream { args, fresh } => {
                let at: Vec<u32> = keys.iter().map(|(p, _)| *p).collect();
                BlockOp::Stream {
                    args: crate::commands::stream::waiter_command(&mut self.db, now, &args, &at),
                    fresh,
                }
            }
            op => op,
        };
        let streams = op.on_streams();
        let wait = match &op {
            BlockOp::Stream { args, .. } => Some(crate::commands::stream::stream_wait(args)),
            _ => None,
        };
        for (i, (_, k)) in keys.iter().enumerate() {
            if streams {
                self.blocking
                    .stream_queues
                    .entry(k.clone())
                    .or_default()
                    .push_back((waiter, i as u32));
            } else {
                self.blocking
                    .queues
                    .entry(k.clone())
                    .or_default()
                    .push_back(waiter);
            }
            self.db.block_keys.insert(k.clone());
        }
        let zsets = op.on_zsets();
        let wrong_type = keys
            .iter()
            .find(|(_, k)| !streams && self.wrong_type_for(k, now, zsets))
            .map(|(p, k)| (*p, k.clone()));
        let ordered: Vec<Bytes> = keys.iter().map(|(_, k)| k.clone()).collect();
        // A stream reader is checked alone, key by key in command order, and only its
        // first ready key counts: the other readers' streams did not change.
        let mut initial = None;
        if let Some(w) = &wait {
            let fresh = matches!(op, BlockOp::Stream { fresh: true, .. });
            for (i, (p, k)) in keys.iter().enumerate() {
                let ready = crate::commands::stream::key_ready(&mut self.db, now, k, w, i, fresh);
                if ready != crate::commands::stream::Ready::No {
                    initial = Some((*p, k.clone()));
                    break;
                }
            }
        }
        self.blocking.waiters.insert(
            waiter,
            Waiter {
                keys,
                op,
                offered: initial.as_ref().map(|(_, k)| k.clone()),
                single,
                wait,
                served: false,
            },
        );
        let mut initial = initial.map(|(p, _)| p);
        let mut others = Vec::new();
        if !streams {
            // Its keys' elements go to their waiters in arrival order; this one may get
            // some.
            for k in &ordered {
                for (w, pos) in self.offers_for_key(k) {
                    if w == waiter {
                        initial = Some(pos);
                    } else {
                        others.push((w, pos));
                    }
                }
            }
        }
        // A key of another type before the first key it could pop from answers WRONGTYPE,
        // as Redis's first look at the keys in command order does.
        if let Some((pos, key)) = wrong_type.filter(|(p, _)| initial.is_none_or(|i| *p < i)) {
            initial = Some(pos);
            if let Some(w) = self.blocking.waiters.get_mut(&waiter) {
                w.offered = Some(key);
            }
        }
        // A waiter with all its keys here is served at once (no claim needed: nothing
        // else can serve it); the coordinator still gets its registration answer first.
        let direct = initial.is_some() && self.direct(waiter);
        // A plain XREAD over several shards answers with whatever every shard has now.
        let mut early = None;
        if let (Some(_), false) = (initial, direct) {
            if let Some(BlockOp::Stream { args, .. }) =
                self.blocking.waiters.get(&waiter).map(|w| &w.op)
            {
                let plain = !crate::commands::stream::is_group_read(args);
                if plain {
                    let args = args.clone();
                    let out = read_stream_now(&mut self.db, now, &args, true);
                    if !matches!(out, OpResult::NullArray) {
                        early = Some(out);
                        if let Some(w) = self.blocking.waiters.get_mut(&waiter) {
                            w.offered = None;
                        }
                    }
                }
            }
        }
        let observed = early.is_some();
        let msg = BlockMsg::Offer {
            waiter,
            pos: if direct || early.is_some() {
                None
            } else {
                initial
            },
            initial: true,
            early,
        };
        if observed {
            // It shows data: held until what it read is durable, like any reply.
            self.send_observed(ctx, waiter.0, Msg::Block(msg));
        } else {
            ctx.send(waiter.0, Msg::Block(msg));
        }
        // Earlier waiters first (the new one is last in every queue it joined).
        self.send_offers(ctx, others);
        if direct {
            self.take(ctx, waiter.0, waiter);
            self.retry_takes(ctx);
        }
        // From now on a stream waiter's read is a wait's (see `BlockOp::Stream`).
        if let Some(Waiter {
            op: BlockOp::Stream { fresh, .. },
            ..
        }) = self.blocking.waiters.get_mut(&waiter)
        {
            *fresh = false;
        }
    }

    /// Whether `waiter` can be served here without the claim protocol: all its keys are
    /// on this shard, and a move's destination too.
    fn direct(&self, waiter: WaiterId) -> bool {
        let Some(w) = self.blocking.waiters.get(&waiter) else {
            return false;
        };
        w.single
            && match &w.op {
                BlockOp::Move { dst, .. } => self.slots.shard_of(dst) == self.shard,
                _ => true,
            }
    }

    /// Offer the elements of keys that gained some to their waiters, first come first.
    pub fn serve_ready(&mut self, ctx: &mut Ctx<Server>) {
        // Serving pops elements, which may leave keys with more for the next waiters: go
        // round until nothing is left to offer (each round serves or ends; a generous
        // bound keeps a pathological chain of moves from holding the shard).
        for _ in 0..1024 {
            if self.db.ready.is_empty() {
                return;
            }
            // In the order the keys became ready (Redis serves its ready keys so: a waiter
            // on two keys filled in one transaction gets the first filled), each once.
            let ready = std::mem::take(&mut self.db.ready);
            let mut seen = hashbrown::HashSet::with_capacity(ready.len());
            for key in ready {
                if seen.insert(key.clone()) {
                    self.offer_key(ctx, &key);
                }
            }
        }
        if !self.db.ready.is_empty() {
            ctx.run_again();
        }
    }

    fn offer_key(&mut self, ctx: &mut Ctx<Server>, key: &Bytes) {
        let offers = self.offers_for_key(key);
        self.send_offers(ctx, offers);
    }

    fn send_offers(&mut self, ctx: &mut Ctx<Server>, offers: Vec<(WaiterId, u32)>) {
        for (w, pos) in offers {
            if self.direct(w) {
                // Served now, before the next command runs here (Redis's order).
                self.take(ctx, w.0, w);
                continue;
            }
            let msg = BlockMsg::Offer {
                waiter: w,
                pos: Some(pos),
                initial: false,
                early: None,
            };
            ctx.send(w.0, Msg::Block(msg));
        }
        self.retry_takes(ctx);
    }

    /// The waiters of `key` to offer its elements to now: in queue order, one element
    /// each, counting those already offered one of this key's elements; waiters with an
    /// offer on another key pending are passed over for now. Marks them offered.
    fn offers_for_key(&mut self, key: &Bytes) -> Vec<(WaiterId, u32)> {
        let now = unix_ms();
        let mut offers = self.stream_offers(key, now);
        if !self.blocking.queues.contains_key(key) {
            return offers;
        }
        let mut budget = self.elements_of(key, now).unwrap_or(0);
        // Only waiters of the key's type are offered its elements (a sorted set appearing
        // where a BLPOP waits leaves it waiting, as in Redis; it answered WRONGTYPE).
        let zset_key = matches!(
            self.db.get(key, now),
            Some(coreshard_engine::ttl::Stored::Object(
                crate::types::Obj::ZSet(_)
            ))
        );
        let Some(queue) = self.blocking.queues.get(key) else {
            return offers;
        };
        for w in queue {
            if budget == 0 {
                break;
            }
            let Some(waiter) = self.blocking.waiters.get_mut(w) else {
                continue;
            };
            if waiter.op.on_zsets() != zset_key {
                continue;
            }
            match &waiter.offered {
                Some(k) if k == key => budget -= 1,
                Some(_) => {}
                None => {
                    budget -= 1;
                    waiter.offered = Some(key.clone());
                    let pos = waiter
                        .keys
                        .iter()
                        .find(|(_, k)| k == key)
                        .map_or(0, |(p, _)| *p);
                    offers.push((*w, pos));
                }
            }
        }
        offers
    }

    /// The stream readers of `key` whose read would answer now. A stream read takes
    /// nothing, so plain readers are all offered; of a group's readers only the first
    /// ready one this round (it may take every new entry; the next are offered again
    /// once it is served and the key is looked at again).
    fn stream_offers(&mut self, key: &Bytes, now: u64) -> Vec<(WaiterId, u32)> {
        let mut offers = Vec::new();
        let Some(queue) = self.blocking.stream_queues.get(key) else {
            return offers;
        };
        let (db, waiters) = (&mut self.db, &mut self.blocking.waiters);
        // Groups whose new entries are spoken for this round, or that have none: all
        // their `>` readers share the group's last id, so one look answers for all.
        let mut groups: Vec<Bytes> = Vec::new();
        for &(w, i) in queue {
            let Some(waiter) = waiters.get_mut(&w) else {
                continue;
            };
            let Some(wait) = &waiter.wait else { continue };
            if let Some(g) = &wait.group {
                if groups.contains(g) {
                    continue;
                }
                if waiter.offered.is_some() {
                    groups.push(g.clone());
                }
            }
            if waiter.offered.is_some() {
                continue;
            }
            let fresh = matches!(waiter.op, BlockOp::Stream { fresh: true, .. });
            let ready = crate::commands::stream::key_ready(db, now, key, wait, i as usize, fresh);
            match ready {
                crate::commands::stream::Ready::Ends => {}
                crate::commands::stream::Ready::Entries | crate::commands::stream::Ready::No => {
                    if let Some(g) = &wait.group {
                        groups.push(g.clone());
                    }
                    if ready == crate::commands::stream::Ready::No {
                        continue;
                    }
                }
            }
            waiter.offered = Some(key.clone());
            let pos = waiter.keys.get(i as usize).map_or(0, |(p, _)| *p);
            offers.push((w, pos));
        }
        offers
    }

    fn on_offer(
        &mut self,
        ctx: &mut Ctx<Server>,
        from: ShardId,
        id: u64,
        pos: Option<u32>,
        initial: bool,
        early: Option<OpResult>,
    ) {
        let Some(b) = self.blocking.coord.get_mut(&id) else {
            // Already served or gone: the shard must forget it.
            let msg = BlockMsg::Unblock {
                waiter: (self.shard, id),
            };
            return ctx.send(from, Msg::Block(msg));
        };
        if initial {
            b.pending_initial = b.pending_initial.saturating_sub(1);
        }
        if b.dead {
            // Nobody to serve: let the shard pass the element on.
            b.offers.clear();
            let waiter = (self.shard, id);
            ctx.send(from, Msg::Block(BlockMsg::Unblock { waiter }));
            if b.pending_initial == 0 && b.claim.is_none() {
                b.expired = Some(OpResult::Ok);
                self.end_wait(ctx, id);
            }
            return;
        }
        if let Some(p) = pos {
            b.offers.push_back((p, from));
        }
        // The shard that refused a claim under a lock offers again, or says it has
        // nothing left: either ends the hold, and the earliest key goes first again.
        if !initial && b.held.is_some_and(|(shard, _)| shard == from) {
            b.held = None;
            b.offers.make_contiguous().sort_by_key(|(p, _)| *p);
        }
        if let Some(out) = early {
            b.early.push(out);
        }
        if b.pending_initial == 0 && !b.early.is_empty() && !b.dead {
            let reply = merge_early(std::mem::take(&mut b.early), &b.keys);
            return self.finish(ctx, id, reply);
        }
        if b.pending_initial == 0 {
            // The earliest key first (Redis's order when several have data).
            b.offers.make_contiguous().sort_by_key(|(p, _)| *p);
        }
        self.try_claim(ctx, id);
    }

    fn try_claim(&mut self, ctx: &mut Ctx<Server>, id: u64) {
        let Some(b) = self.blocking.coord.get_mut(&id) else {
            return;
        };
        if b.claim.is_some() || b.pending_initial > 0 {
            return;
        }
        let next = if b.held.is_none() {
            b.offers.pop_front()
        } else {
            None
        };
        if let Some((pos, shard)) = next {
            b.claim = Some(shard);
            b.claim_pos = pos;
            let msg = BlockMsg::Take {
                waiter: (self.shard, id),
            };
            ctx.send(shard, Msg::Block(msg));
        } else if b.expired.is_some() {
            self.end_wait(ctx, id);
        }
    }

    /// End a wait whose reply is decided (`expired`) and that has no claim in flight. A
    /// waiter on one shard may have been served there meanwhile (its `Served` can still
    /// be on the way, e.g. held for the log): ask that shard to forget it and end on its
    /// answer (`Ended`), which comes after any such `Served`.
    fn end_wait(&mut self, ctx: &mut Ctx<Server>, id: u64) {
        let Some(b) = self.blocking.coord.get_mut(&id) else {
            return;
        };
        if b.shards.len() == 1 {
            if !b.ending {
                b.ending = true;
                let (shard, waiter) = (b.shards[0], (self.shard, id));
                ctx.send(shard, Msg::Block(BlockMsg::End { waiter }));
            }
            return;
        }
        let reply = b.expired.take().unwrap_or_else(|| b.op.timeout_reply());
        self.finish(ctx, id, reply);
    }

    fn on_take(&mut self, ctx: &mut Ctx<Server>, from: ShardId, waiter: WaiterId) {
        self.take(ctx, from, waiter);
        self.retry_takes(ctx);
    }

    /// Whether a waiter queued before `waiter` on its offered key still has an offer of
    /// that key pending: then `waiter` must not pop first, so elements go out in queue
    /// order. Only waiters whose keys are all on this shard are waited for: their
    /// coordinator has no other offer to try first, so the wait always ends (waiting for a
    /// waiter spread over shards could wait in a cycle across shards).
    fn behind_pending(&self, waiter: WaiterId) -> bool {
        let Some(key) = self
            .blocking
            .waiters
            .get(&waiter)
            .and_then(|w| w.offered.clone())
        else {
            return false;
        };
        let Some(queue) = self.blocking.queues.get(&key) else {
            return false;
        };
        queue.iter().take_while(|w| **w != waiter).any(|w| {
            self.blocking
                .waiters
                .get(w)
                .is_some_and(|x| x.single && x.offered.as_ref() == Some(&key))
        })
    }

    /// How many waiters queued on `key` before `waiter` hold an offer of its elements.
    fn reserved_before(&self, waiter: WaiterId, key: &Bytes) -> usize {
        let Some(queue) = self.blocking.queues.get(key) else {
            return 0;
        };
        queue
            .iter()
            .take_while(|w| **w != waiter)
            .filter(|w| {
                self.blocking
                    .waiters
                    .get(*w)
                    .is_some_and(|x| x.offered.as_ref() == Some(key))
            })
            .count()
    }

    /// Run the takes that waited behind earlier waiters, now that one of those resolved.
    fn retry_takes(&mut self, ctx: &mut Ctx<Server>) {
        if self.blocking.deferred_takes.is_empty() {
            return;
        }
        // Each pass may free the way for takes queued behind the ones it ran; stop once a
        // pass runs none (bounded: every pass that continues shrinks the list).
        loop {
            let takes = std::mem::take(&mut self.blocking.deferred_takes);
            let before = takes.len();
            for (from, waiter) in takes {
                self.take(ctx, from, waiter);
            }
            let after = self.blocking.deferred_takes.len();
            if after == 0 || after >= before {
                break;
            }
        }
    }

    fn take(&mut self, ctx: &mut Ctx<Server>, from: ShardId, waiter: WaiterId) {
        let now = unix_ms();
        if self.behind_pending(waiter) {
            self.blocking.deferred_takes.push((from, waiter));
            return;
        }
        let Some(w) = self.blocking.waiters.get_mut(&waiter) else {
            let msg = BlockMsg::Served {
                waiter,
                popped: None,
                busy: false,
            };
            return ctx.send(from, Msg::Block(msg));
        };
        let offered = w.offered.take();
        let mut keys = w.keys.clone();
        let mut op = w.op.clone();
        // A stream reader's whole command, when `op` is narrowed to its offered stream.
        let mut stream_full = None;
        // Served from the key that became ready (as Redis serves a ready key's waiters),
        // then the others in command order.
        if let Some(k) = &offered {
            if let Some(i) = keys.iter().position(|(_, x)| x == k) {
                let first = keys.remove(i);
                keys.insert(0, first);
                // A stream reader woken by one of its streams answers with that stream
                // alone, as Redis 7.0 serves a ready key (once, even if the command named
                // it twice). Its first look (`fresh`) answers every stream, as a
                // non-blocking read does.
                if let BlockOp::Stream { args, fresh: false } = &mut op {
                    stream_full = Some(BlockOp::Stream {
                        args: args.clone(),
                        fresh: false,
                    });
                    *args = crate::commands::stream::waiter_command(
                        &mut self.db,
                        now,
                        args,
                        &[i as u32],
                    );
                }
            }
            // Elements offered to earlier waiters (spread over shards, still claiming
            // them) are theirs: take at most what is left. (A stream read takes nothing.)
            let reserved = if op.on_streams() {
                0
            } else {
                self.reserved_before(waiter, k)
            };
            if reserved > 0 {
                let left = self
                    .elements_of(k, now)
                    .unwrap_or(0)
                    .saturating_sub(reserved);
                if left == 0 {
                    let msg = BlockMsg::Served {
                        waiter,
                        popped: None,
                        busy: false,
                    };
                    return ctx.send(from, Msg::Block(msg));
                }
                match &mut op {
                    BlockOp::Pop { count: Some(c), .. } | BlockOp::ZPop { count: Some(c), .. } => {
                        *c = (*c).min(left as u64);
                    }
                    _ => {}
                }
            }
        }
        // Keys a cross-shard transaction holds are not popped under it: the waiter stays
        // queued and is offered again when the transaction commits.
        let mut refs: Vec<&[u8]> = keys.iter().map(|(_, k)| &k[..]).collect();
        if let BlockOp::Move { dst, .. } = &op {
            // A move here writes its destination too.
            refs.push(dst);
        }
        if !self.locks.may_run(&refs, false) {
            self.blocking
                .retry
                .extend(keys.iter().map(|(_, k)| k.clone()));
            self.blocking.held_back.push(waiter);
            let msg = BlockMsg::Served {
                waiter,
                popped: None,
                busy: true,
            };
            return ctx.send(from, Msg::Block(msg));
        }
        // A move whose destination lives elsewhere runs as a transaction from the
        // coordinator; this shard only says the source has an element.
        if let BlockOp::Move { dst, .. } = &op {
            if self.slots.shard_of(dst) != self.shard {
                // A source of another type answers WRONGTYPE, as a move here would (it
                // counted as empty: the client waited, forever with timeout 0).
                if keys.iter().any(|(_, k)| self.db.read_list(k, now).is_err()) {
                    if let Some(w) = self.blocking.waiters.get_mut(&waiter) {
                        w.served = true;
                    }
                    self.forget_waiter(ctx, waiter);
                    let msg = BlockMsg::Served {
                        waiter,
                        popped: Some(Popped {
                            reply: WrongType.into(),
                            restore: None,
                            move_from: None,
                        }),
                        busy: false,
                    };
                    return ctx.send(from, Msg::Block(msg));
                }
                let source = keys
                    .iter()
                    .find(
                        |(_, k)| matches!(self.db.read_list(k, now), Ok(Some(l)) if !l.is_empty()),
                    )
                    .map(|(_, k)| k.clone());
                // The waiter keeps its claim on the element (so no other waiter is offered
                // it) until the coordinator's move committed and it lets go.
                if let (Some(k), Some(w)) = (&source, self.blocking.waiters.get_mut(&waiter)) {
                    w.offered = Some(k.clone());
                }
                let popped = source.map(|k| Popped {
                    reply: OpResult::Ok,
                    restore: None,
                    move_from: Some(k),
                });
                let msg = BlockMsg::Served {
                    waiter,
                    popped,
                    busy: false,
                };
                return self.send_observed(ctx, from, Msg::Block(msg));
            }
        }
        self.db.events.cmd = op.command_name();
        let mut popped_now = pop_now(&mut self.db, now, &keys, &op);
        // The stream it was woken for has nothing any more (trimmed or deleted since):
        // its other streams here may (they were not offered while this one was).
        if let (Ok(None), Some(full)) = (&popped_now, stream_full) {
            popped_now = pop_now(&mut self.db, now, &keys, &full);
        }
        let popped = match popped_now {
            Ok(p) => p,
            Err(WrongType) => Some(Popped {
                reply: WrongType.into(),
                restore: None,
                move_from: None,
            }),
        };
        if popped.is_some() {
            if let Some(w) = self.blocking.waiters.get_mut(&waiter) {
                w.served = true;
            }
            self.forget_waiter(ctx, waiter);
        }
        let msg = BlockMsg::Served {
            waiter,
            popped,
            busy: false,
        };
        self.send_observed(ctx, from, Msg::Block(msg));
    }

    fn on_served(
        &mut self,
        ctx: &mut Ctx<Server>,
        from: ShardId,
        id: u64,
        popped: Option<Popped>,
        busy: bool,
    ) {
        let Some(b) = self.blocking.coord.get_mut(&id) else {
            // Served directly while its wait ended here (timeout, CLIENT UNBLOCK,
            // disconnect): put back what was popped for nobody.
            if let Some(args) = popped.and_then(|p| p.restore) {
                self.restore(ctx, args);
            }
            return;
        };
        b.claim = None;
        let Some(popped) = popped else {
            if busy {
                b.held = Some((from, b.claim_pos));
            }
            return self.try_claim(ctx, id);
        };
        let (conn, dead, op) = (b.conn, b.dead, b.op.clone());
        if dead {
            if let Some(args) = popped.restore {
                self.restore(ctx, args);
            }
            return self.finish(ctx, id, OpResult::Ok);
        }
        if let (
            BlockOp::Move {
                dst,
                from_left,
                to_left,
            },
            Some(source),
        ) = (&op, popped.move_from)
        {
            // The source (on `from`) has an element and the destination is elsewhere: move
            // it atomically on key locks, as LMOVE across shards does. The waiter stays
            // registered (holding the element) until that transaction committed.
            let _ = from;
            let Some(b) = self.blocking.coord.remove(&id) else {
                return;
            };
            if let Some(t) = b.timer {
                ctx.cancel_timer(t);
            }
            if let Some(state) = ctx.state(conn) {
                state.blocked = None;
                state.observed = true;
            }
            let side = |l: bool| Bytes::from_static(if l { b"LEFT" } else { b"RIGHT" });
            let Some(spec) = crate::commands::lookup(b"lmove") else {
                return;
            };
            let args = vec![
                Bytes::from_static(b"LMOVE"),
                source,
                dst.clone(),
                side(*from_left),
                side(*to_left),
            ];
            let waiter = (self.shard, id);
            let kind = super::txn::TxnKind::One(crate::commands::multi::Queued { spec, args });
            match self.start_txn(ctx, conn, kind) {
                Some(txn) => {
                    self.blocking.moves.insert(txn, (waiter, b.shards));
                }
                None => {
                    for shard in b.shards {
                        ctx.send(shard, Msg::Block(BlockMsg::Unblock { waiter }));
                    }
                }
            }
            ctx.redeliver(conn);
            return;
        }
        self.finish(ctx, id, popped.reply);
    }

    /// Put back what was popped for a client that vanished, through the key's shard's
    /// request path (so it waits behind any transaction holding the key).
    fn restore(&mut self, ctx: &mut Ctx<Server>, args: Vec<Bytes>) {
        let Some(key) = args.get(1) else { return };
        let shard = self.slots.shard_of(key);
        // Nobody waits for the answer: no reply slot.
        let op = super::ops::Op::Restore { args };
        ctx.send(
            shard,
            Msg::Request {
                slot: None,
                part: 0,
                op,
            },
        );
    }

    /// Reply to a blocked client (unless gone), forget it everywhere, read its input again.
    fn finish(&mut self, ctx: &mut Ctx<Server>, id: u64, reply: OpResult) {
        self.unblock_everywhere(ctx, id);
        let Some(b) = self.blocking.coord.remove(&id) else {
            return;
        };
        if let Some(t) = b.timer {
            ctx.cancel_timer(t);
        }
        if b.dead {
            return;
        }
        if let Some(state) = ctx.state(b.conn) {
            state.blocked = None;
            // The reply shows data (popped from a shard's log): it waits for the log like
            // any reply that observed a write.
            state.observed = true;
        }
        self.reply_result(ctx, b.conn, &reply);
        self.gate_output(ctx, b.conn);
        ctx.redeliver(b.conn);
    }

    fn unblock_everywhere(&mut self, ctx: &mut Ctx<Server>, id: u64) {
        let Some(b) = self.blocking.coord.get(&id) else {
            return;
        };
        let waiter = (self.shard, id);
        for &shard in &b.shards {
            ctx.send(shard, Msg::Block(BlockMsg::Unblock { waiter }));
        }
    }

    /// Remove a waiter from this shard's queues; what it was offered goes to the next.
    fn forget_waiter(&mut self, ctx: &mut Ctx<Server>, waiter: WaiterId) {
        let Some(w) = self.blocking.waiters.remove(&waiter) else {
            return;
        };
        for (_, k) in &w.keys {
            if let Some(q) = self.blocking.queues.get_mut(k) {
                // Usually at the front: served waiters leave in queue order.
                if let Some(i) = q.iter().position(|x| *x == waiter) {
                    q.remove(i);
                }
                if q.is_empty() {
                    self.blocking.queues.remove(k);
                }
            }
            if let Some(q) = self.blocking.stream_queues.get_mut(k) {
                if let Some(i) = q.iter().position(|(x, _)| *x == waiter) {
                    q.remove(i);
                }
                if q.is_empty() {
                    self.blocking.stream_queues.remove(k);
                }
            }
            if !self.blocking.queues.contains_key(k) && !self.blocking.stream_queues.contains_key(k)
            {
                self.db.block_keys.remove(k);
            }
        }
        // What it had, or could have had, goes to the next waiters: at the next
        // `serve_ready` round (iteratively, never by recursion through their takes). A
        // stream reader takes nothing, so one leaving frees nothing for the others,
        // except a group reader that was served or held its group's turn.
        let _ = ctx;
        let frees = match &w.wait {
            None => true,
            Some(wait) => wait.group.is_some() && (w.served || w.offered.is_some()),
        };
        if frees {
            self.db.ready.extend(w.keys.into_iter().map(|(_, k)| k));
        }
    }

    /// A blocked client's timeout fired.
    pub fn on_block_timeout(&mut self, ctx: &mut Ctx<Server>, id: u64) {
        let Some(b) = self.blocking.coord.get_mut(&id) else {
            return;
        };
        let reply = b.op.timeout_reply();
        self.expire_blocked(ctx, id, reply);
    }

    /// End a blocked client's wait with `reply` (timeout, CLIENT UNBLOCK), unless a claim
    /// in flight serves it first.
    pub fn expire_blocked(&mut self, ctx: &mut Ctx<Server>, id: u64, reply: OpResult) {
        let Some(b) = self.blocking.coord.get_mut(&id) else {
            return;
        };
        if b.claim.is_some() || b.pending_initial > 0 {
            b.expired = Some(reply);
            b.offers.clear();
            return;
        }
        b.expired = Some(reply);
        self.end_wait(ctx, id);
    }

    /// The client of blocked wait `id` disconnected.
    pub fn blocked_client_gone(&mut self, ctx: &mut Ctx<Server>, id: u64) {
        let Some(b) = self.blocking.coord.get_mut(&id) else {
            return;
        };
        b.dead = true;
        b.offers.clear();
        b.expired = Some(OpResult::Ok);
        if b.claim.is_none() && b.pending_initial == 0 {
            // As for a timeout: a `Served` on its way is put back when it arrives.
            self.end_wait(ctx, id);
        }
    }

    /// Whether `key` holds a value a list waiter (`zsets`: a sorted-set waiter) cannot pop
    /// from: at its first look, that answers WRONGTYPE.
    fn wrong_type_for(&mut self, key: &[u8], now: u64, zsets: bool) -> bool {
        use crate::types::Obj;
        use coreshard_engine::ttl::Stored;
        match self.db.get(key, now) {
            None => false,
            Some(Stored::Object(Obj::List(_))) => zsets,
            Some(Stored::Object(Obj::ZSet(_))) => !zsets,
            Some(_) => true,
        }
    }

    /// Elements a waited-on key holds (a list's or a sorted set's); a key of another
    /// type is `Err` (serving a waiter from it answers WRONGTYPE).
    fn elements_of(&mut self, key: &[u8], now: u64) -> Result<usize, WrongType> {
        match self.db.get(key, now) {
            None => Ok(0),
            Some(coreshard_engine::ttl::Stored::Object(crate::types::Obj::List(l))) => Ok(l.len()),
            Some(coreshard_engine::ttl::Stored::Object(crate::types::Obj::ZSet(z))) => Ok(z.len()),
            Some(_) => Err(WrongType),
        }
    }

    /// Locks were released: offer again what waited for them.
    pub fn retry_blocked(&mut self, ctx: &mut Ctx<Server>) {
        if self.blocking.retry.is_empty() && self.blocking.held_back.is_empty() {
            return;
        }
        let keys = std::mem::take(&mut self.blocking.retry);
        for k in keys {
            self.offer_key(ctx, &k);
        }
        // A refused waiter not offered again has nothing left here: its coordinator may
        // go on to its later keys.
        for w in std::mem::take(&mut self.blocking.held_back) {
            if self
                .blocking
                .waiters
                .get(&w)
                .is_some_and(|x| x.offered.is_none())
            {
                let msg = BlockMsg::Offer {
                    waiter: w,
                    pos: None,
                    initial: false,
                    early: None,
                };
                ctx.send(w.0, Msg::Block(msg));
            }
        }
    }

    /// A group read over several shards runs as transaction `txn` first; block with it if
    /// that answers nothing (see [`Server::read_or_block`]).
    pub fn read_then_block(&mut self, txn: u64, keys: Vec<Bytes>, args: Vec<Bytes>, timeout: u64) {
        self.blocking.reads.insert(txn, (keys, args, timeout));
    }

    /// Transaction `txn` decided `result` for `conn`: if it was a group read that found
    /// nothing, answer nothing yet and block (`true`); else it is the reply (`false`).
    pub fn read_or_block(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        txn: u64,
        result: &OpResult,
    ) -> bool {
        let Some((keys, args, timeout)) = self.blocking.reads.remove(&txn) else {
            return false;
        };
        if !matches!(result, OpResult::NullArray) {
            return false;
        }
        self.block(
            ctx,
            conn,
            keys,
            BlockOp::Stream { args, fresh: true },
            timeout,
        );
        true
    }

    /// A transaction that carried a blocked move committed: release the waiter.
    pub fn after_blocked_move(&mut self, ctx: &mut Ctx<Server>, txn: u64) {
        if let Some((waiter, shards)) = self.blocking.moves.remove(&txn) {
            for shard in shards {
                ctx.send(shard, Msg::Block(BlockMsg::Unblock { waiter }));
            }
        }
    }

    /// Keys of this shard with waiters, and waiters registered here.
    pub fn blocking_counts(&self) -> (usize, usize) {
        let keys = self.blocking.queues.len()
            + self
                .blocking
                .stream_queues
                .keys()
                .filter(|k| !self.blocking.queues.contains_key(*k))
                .count();
        (keys, self.blocking.waiters.len())
    }

    /// Clients of this shard blocked now.
    pub fn blocked_clients(&self) -> usize {
        self.blocking.coord.values().filter(|b| !b.dead).count()
    }

    /// CLIENT UNBLOCK of a connection of this shard: whether it was blocked.
    pub fn unblock_client(&mut self, ctx: &mut Ctx<Server>, client_id: u64, error: bool) -> bool {
        let found = self.blocking.coord.iter().find_map(|(id, b)| {
            (!b.dead && ctx.state(b.conn).is_some_and(|s| s.id == client_id))
                .then(|| (*id, b.op.timeout_reply()))
        });
        let Some((id, timeout_reply)) = found else {
            return false;
        };
        let reply = if error {
            OpResult::Error("UNBLOCKED client unblocked via CLIENT UNBLOCK".into())
        } else {
            timeout_reply
        };
        self.expire_blocked(ctx, id, reply);
        true
    }
}
