//! Transactions across shards on ordered key locks: MULTI/EXEC, and the all-or-nothing
//! commands MSETNX, RENAME, RENAMENX and COPY when their keys span shards.
//!
//! The coordinator (the shard of the client's connection) locks the involved keys on
//! their owning shards one shard at a time, in ascending shard order, each `Lock` answered
//! by `Locked` with the keys' current entries and WATCH versions. Ordered acquisition
//! means two transactions can never wait for each other in a cycle, so there is no
//! deadlock and no global lock. With every key locked and read, the coordinator decides
//! (for EXEC: runs the queued commands against a scratch copy of the locked keys), sends
//! each shard a `Commit` with the final state of its keys (possibly nothing), and replies.
//! A transaction that contains FLUSHALL/FLUSHDB takes an *all* lock on every shard.
//!
//! While its transaction is in flight the client's connection is held (its input paused),
//! so the commands it pipelined after it always observe its effect, on any shard.
//!
//! On a shard, work that touches a locked key waits in a FIFO of deferred work. Only work
//! on the same keys queues behind it (so each key still sees its operations in arrival
//! order); work on other keys runs at once. A flush is a barrier: it waits until no lock is
//! held and everything before it ran, and everything after it waits for it.

use std::collections::VecDeque;

use bytes::Bytes;
use coreshard_engine::{ConnId, Ctx, ReplySlot, ShardId};

use super::ops::{unix_ms, Msg, Op, OpResult};
use super::Server;
use crate::commands::multi::{run_queued, Queued};
use crate::db::{Db, OwnedValue};
use crate::persist::effect::Effect;
use crate::persist::snapshot;
use coreshard_engine::ttl::Owned;
use coreshard_engine::wal::LogPosition;

/// A transaction: the coordinating shard and its sequence number there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxnId {
    /// The coordinating shard.
    pub origin: ShardId,
    /// Unique per origin.
    pub id: u64,
}

/// A change a `Commit` applies.
#[derive(Debug)]
pub enum Write {
    /// Store a value with a deadline (Unix ms, 0 = none).
    Set {
        key: Bytes,
        value: OwnedValue,
        deadline: u64,
    },
    /// Remove a key.
    Del { key: Bytes },
}

impl Write {
    fn key(&self) -> &Bytes {
        match self {
            Write::Set { key, .. } | Write::Del { key } => key,
        }
    }

    /// The journaled form.
    fn effect(&self) -> Effect {
        match self {
            Write::Set {
                key,
                value: Owned::Bytes(value),
                deadline,
            } => Effect::Set {
                key: key.clone(),
                value: value.clone(),
                deadline: *deadline,
            },
            Write::Set {
                key,
                value: Owned::Object(o),
                deadline,
            } => {
                let (ty, data) = o.encode();
                Effect::Obj {
                    key: key.clone(),
                    ty,
                    data: Bytes::from(data),
                    deadline: *deadline,
                }
            }
            Write::Del { key } => Effect::Del { key: key.clone() },
        }
    }
}

/// A key a connection WATCHes: where it lives and what it looked like then.
#[derive(Debug, Clone)]
pub struct WatchedKey {
    /// The key.
    pub key: Bytes,
    /// Its owning shard.
    pub shard: ShardId,
    /// Its WATCH version then.
    pub version: u64,
    /// Its deadline then (0: none or absent); passing it means the key expired.
    pub deadline: u64,
}

/// Which transaction runs.
#[derive(Debug)]
pub enum TxnKind {
    /// MSETNX: set every pair if none of the keys exists.
    MSetNx(Vec<(Bytes, Bytes)>),
    /// RENAME / RENAMENX (`nx`).
    Rename { src: Bytes, dst: Bytes, nx: bool },
    /// COPY (with REPLACE or not).
    Copy {
        src: Bytes,
        dst: Bytes,
        replace: bool,
    },
    /// One multi-key command whose keys span shards (SMOVE, LMOVE, SINTERSTORE...): run
    /// like an EXEC of that one command, all or nothing, answered with its own reply.
    One(Queued),
    /// FLUSHALL / FLUSHDB on every shard at once, between transactions.
    Flush,
    /// A snapshot: every shard whole, so none holds half a transaction; `save` answers
    /// only once it is written (SAVE), else at once (BGSAVE).
    Snapshot { id: u64, save: bool },
    /// EXEC: the queued commands, the connection's watched keys, and whether a flush is
    /// among the commands (then every shard is locked whole).
    Exec {
        cmds: Vec<Queued>,
        watched: Vec<WatchedKey>,
        flush: bool,
    },
}

impl TxnKind {
    /// The command whose keyspace notifications its writes raise.
    fn event(&self) -> &'static str {
        match self {
            TxnKind::MSetNx(_) => "msetnx",
            TxnKind::Rename { nx: false, .. } => "rename",
            TxnKind::Rename { nx: true, .. } => "renamenx",
            TxnKind::Copy { .. } => "copy",
            TxnKind::Exec { .. } => "exec",
            TxnKind::One(q) => q.spec.name,
            TxnKind::Flush | TxnKind::Snapshot { .. } => "",
        }
    }
}

/// What a shard read under lock for one key.
#[derive(Debug)]
pub struct LockedEntry {
    /// Value and deadline, if the key exists.
    pub entry: Option<(OwnedValue, u64)>,
    /// Its WATCH version, if anybody watches it.
    pub version: Option<u64>,
}

/// Coordinator-side state of a transaction.
#[derive(Debug)]
pub struct Txn {
    conn: ConnId,
    /// Where its reply goes (none for a snapshot the `--save` schedule started).
    slot: Option<ReplySlot>,
    kind: TxnKind,
    /// Involved shards in ascending order, each with the keys it owns.
    shards: Vec<(ShardId, Vec<Bytes>)>,
    /// Lock whole shards (a flush is part of the transaction).
    all: bool,
    /// How many shards granted their locks so far.
    granted: usize,
    /// What was read under lock, by key.
    entries: Vec<(Bytes, LockedEntry)>,
}

/// Work that waits for locks to be released, in arrival order.
#[derive(Debug)]
pub enum Deferred {
    /// A request (from another shard or this one).
    Request {
        from: ShardId,
        slot: Option<ReplySlot>,
        part: u32,
        op: Op<Bytes>,
    },
    /// A lock request of another transaction.
    Lock {
        from: ShardId,
        txn: TxnId,
        keys: Vec<Bytes>,
        all: bool,
    },
}

impl Deferred {
    fn keys(&self) -> Vec<&[u8]> {
        match self {
            Deferred::Request { op, .. } => op.keys(),
            Deferred::Lock { keys, .. } => keys.iter().map(|k| &k[..]).collect(),
        }
    }

    /// Whether this work needs the whole shard (a flush, an all lock).
    fn is_barrier(&self) -> bool {
        match self {
            Deferred::Request { op, .. } => op.is_barrier(),
            Deferred::Lock { all, .. } => *all,
        }
    }
}

/// A shard's lock table and deferred work.
#[derive(Debug, Default)]
pub struct Locks {
    held: hashbrown::HashMap<Bytes, TxnId>,
    /// A transaction holding the whole shard.
    all: Option<TxnId>,
    /// Transactions coordinated here that hold this shard without keys (so a snapshot's
    /// whole-shard lock waits until they committed, see `begin_txn`).
    tokens: hashbrown::HashSet<TxnId>,
    deferred: VecDeque<Deferred>,
    /// How many deferred items want each key (so a check is a lookup, not a scan).
    wanted: hashbrown::HashMap<Bytes, u32>,
    /// Deferred barriers (flushes, whole-shard locks).
    barriers: u32,
}

impl Locks {
    /// Whether work may run directly (nothing locked, nothing waiting).
    pub fn is_clear(&self) -> bool {
        self.held.is_empty()
            && self.all.is_none()
            && self.tokens.is_empty()
            && self.deferred.is_empty()
    }

    /// Whether work on `keys` (a barrier: on everything) may run now, ahead of nothing
    /// it must follow.
    pub fn may_run(&self, keys: &[&[u8]], barrier: bool) -> bool {
        if self.is_clear() {
            return true;
        }
        if self.all.is_some() {
            return false;
        }
        if barrier {
            return self.held.is_empty() && self.tokens.is_empty() && self.deferred.is_empty();
        }
        if keys.iter().any(|k| self.held.contains_key(*k)) {
            return false;
        }
        // Keep per-key order: nothing may overtake deferred work on one of its keys, and
        // nothing overtakes a deferred barrier.
        self.barriers == 0 && !keys.iter().any(|k| self.wanted.contains_key(*k))
    }

    /// Queue work behind what already waits.
    fn defer(&mut self, work: Deferred) {
        if work.is_barrier() {
            self.barriers += 1;
        }
        for k in work.keys() {
            match self.wanted.get_mut(k) {
                Some(n) => *n += 1,
                None => {
                    self.wanted.insert(Bytes::copy_from_slice(k), 1);
                }
            }
        }
        self.deferred.push_back(work);
    }
}

/// The keys of `keys` grouped by owning shard, ascending, without duplicates.
fn by_shard(s: &Server, keys: impl Iterator<Item = Bytes>) -> Vec<(ShardId, Vec<Bytes>)> {
    let mut shards: Vec<(ShardId, Vec<Bytes>)> = Vec::new();
    for k in keys {
        let owner = s.slots.shard_of(&k);
        match shards.iter_mut().find(|(id, _)| *id == owner) {
            Some((_, ks)) => {
                if !ks.contains(&k) {
                    ks.push(k);
                }
            }
            None => shards.push((owner, vec![k])),
        }
    }
    shards.sort_by_key(|(s, _)| *s);
    shards
}

/// The `cross` form of a multi-key command whose keys span shards: it runs as a
/// one-command transaction on key locks (see [`TxnKind::One`]).
pub fn run_across_shards(
    s: &mut Server,
    ctx: &mut Ctx<Server>,
    conn: ConnId,
    args: crate::commands::Args<'_, '_>,
) {
    let Some(spec) = crate::commands::lookup(&args[0]) else {
        return;
    };
    let args = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
    s.begin_txn(ctx, conn, TxnKind::One(Queued { spec, args }));
}

impl Server {
    /// EXEC: run `cmds` atomically, unless a watched key changed. Directly when every key
    /// is on this shard and nothing is locked or in flight here; otherwise on key locks.
    pub fn exec_transaction(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        cmds: Vec<Queued>,
        watched: Vec<WatchedKey>,
    ) {
        let flush = cmds.iter().any(|c| c.is_flush());
        let here = self.shard;
        let all_local = (!flush || self.shards == 1)
            && watched.iter().all(|w| w.shard == here)
            && cmds
                .iter()
                .all(|c| c.keys().all(|k| self.slots.shard_of(&k) == here));
        if all_local && self.local_ok(ctx, conn) {
            let now = unix_ms();
            let result = if watched_changed(&watched, now, |w| self.db.watch.version(&w.key)) {
                OpResult::NullArray
            } else {
                // One log record for the whole EXEC: replay applies all of it or none. A
                // queued script may run for long: the shard answers meanwhile (so what this
                // turn raised goes first).
                self.send_events(ctx);
                let mut answer = self.busy_answer();
                let db = &mut self.db;
                OpResult::Multi(ctx.long_work(&mut answer, || {
                    db.atomically(|db| cmds.iter().map(|c| run_queued(db, now, c)).collect())
                }))
            };
            self.send_messages(ctx);
            self.forget_watches(ctx, &watched);
            self.reply_result(ctx, conn, &result);
            return;
        }
        self.begin_txn(
            ctx,
            conn,
            TxnKind::Exec {
                cmds,
                watched,
                flush,
            },
        );
    }

    /// Start a cross-shard transaction for `conn`; its reply takes the next position and
    /// the connection's later input waits until it is decided.
    pub fn begin_txn(&mut self, ctx: &mut Ctx<Server>, conn: ConnId, kind: TxnKind) -> Option<u64> {
        self.txn_with(ctx, conn, kind, true)
    }

    /// [`Server::begin_txn`] without the BUSY check: for a blocked client being served
    /// (it never gets BUSY; its move waits for the locks like any transaction).
    pub fn start_txn(&mut self, ctx: &mut Ctx<Server>, conn: ConnId, kind: TxnKind) -> Option<u64> {
        self.txn_with(ctx, conn, kind, false)
    }

    fn txn_with(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        kind: TxnKind,
        check_busy: bool,
    ) -> Option<u64> {
        let (keys, all): (Vec<Bytes>, bool) = match &kind {
            TxnKind::MSetNx(pairs) => (pairs.iter().map(|(k, _)| k.clone()).collect(), false),
            TxnKind::Rename { src, dst, .. } | TxnKind::Copy { src, dst, .. } => {
                (vec![src.clone(), dst.clone()], false)
            }
            TxnKind::Exec {
                cmds,
                watched,
                flush,
            } => {
                let mut keys: Vec<Bytes> = cmds.iter().flat_map(|c| c.keys()).collect();
                keys.extend(watched.iter().map(|w| w.key.clone()));
                (keys, *flush)
            }
            TxnKind::One(q) => (q.keys().collect(), false),
            TxnKind::Flush | TxnKind::Snapshot { .. } => (Vec::new(), true),
        };
        let mut shards = by_shard(self, keys.into_iter());
        if self.wal.is_some() && !all && !shards.iter().any(|(s, _)| *s == self.shard) {
            // The transaction's record goes to this shard's log: hold this shard too (in
            // shard order, without keys), so a snapshot cannot copy this shard between
            // the moment the record is written and the moment its writes are applied
            // elsewhere (its replay would skip the record, its copy miss the writes).
            shards.push((self.shard, Vec::new()));
            shards.sort_by_key(|(s, _)| *s);
        }
        if all {
            for s in 0..self.shards {
                if !shards.iter().any(|(id, _)| *id == s) {
                    shards.push((s, Vec::new()));
                }
            }
            shards.sort_by_key(|(s, _)| *s);
        }
        if matches!(kind, TxnKind::Snapshot { .. }) {
            if crate::script::aborting() {
                return None;
            }
        } else if check_busy {
            // A shard running a script past lua-time-limit cannot take locks: answer BUSY
            // now, as for single requests (an EXEC is dropped, as Redis drops it).
            let busy = shards
                .iter()
                .find_map(|(s, _)| crate::script::busy_reply(*s))
                .or(crate::script::aborting().then_some("ERR the server is shutting down"));
            if let Some(why) = busy {
                let msg = match &kind {
                    TxnKind::Exec { watched, .. } => {
                        self.forget_watches(ctx, watched);
                        crate::commands::multi::execabort(why)
                    }
                    _ => why.to_string(),
                };
                self.error(ctx, conn, &msg);
                return None;
            }
        }
        let slot = match Self::reserve_reply(ctx, conn, 1, super::reply::Agg::Single(None)) {
            Some(slot) => {
                self.hold_until_answered(ctx, conn);
                // It may publish: what the connection publishes after it waits for it.
                if let Some(state) = ctx.state(conn) {
                    state.outbound.expect(slot.seq());
                }
                Some(slot)
            }
            // A snapshot the `--save` schedule started: nobody waits for a reply.
            None if matches!(kind, TxnKind::Snapshot { .. }) => None,
            None => return None,
        };
        self.next_txn += 1;
        let id = TxnId {
            origin: self.shard,
            id: self.next_txn,
        };
        let first = shards.first().cloned();
        self.txns.insert(
            id.id,
            Txn {
                conn,
                slot,
                kind,
                shards,
                all,
                granted: 0,
                entries: Vec::new(),
            },
        );
        let Some((first, first_keys)) = first else {
            // No keys at all (cannot happen for these kinds): decide at once.
            self.on_locked(ctx, id, Vec::new());
            return Some(id.id);
        };
        ctx.send(
            first,
            Msg::Lock {
                txn: id,
                keys: first_keys,
                all,
            },
        );
        Some(id.id)
    }

    /// A `Lock` arrived: grant it now or queue it behind conflicting work.
    pub fn on_lock(
        &mut self,
        ctx: &mut Ctx<Server>,
        from: ShardId,
        txn: TxnId,
        keys: Vec<Bytes>,
        all: bool,
    ) {
        let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        if !self.locks.may_run(&refs, all) {
            self.locks.defer(Deferred::Lock {
                from,
                txn,
                keys,
                all,
            });
            return;
        }
        self.grant(ctx, from, txn, keys, all);
    }

    fn grant(
        &mut self,
        ctx: &mut Ctx<Server>,
        from: ShardId,
        txn: TxnId,
        keys: Vec<Bytes>,
        all: bool,
    ) {
        let now = unix_ms();
        let entries: Vec<LockedEntry> = keys
            .iter()
            .map(|k| LockedEntry {
                entry: self.db.get_owned(k, now),
                version: self.db.watch.version(k),
            })
            .collect();
        if all {
            self.locks.all = Some(txn);
        } else if keys.is_empty() {
            self.locks.tokens.insert(txn);
        }
        for k in keys {
            self.locks.held.insert(k, txn);
        }
        if entries.is_empty() {
            // A whole-shard or token lock carries no data, so nothing waits for the log:
            // behind a write that a failing disk holds, a snapshot's lock would otherwise
            // keep the shards that already granted theirs locked until the disk recovers.
            // (Replay order needs no wait: the coordinator's record comes after this
            // shard's by ticket order, and snapshots skip records by per-shard LSN.)
            return ctx.send(from, Msg::Locked { txn, entries });
        }
        self.send_observed(ctx, from, Msg::Locked { txn, entries });
    }

    /// A shard granted its locks: lock the next shard, or decide and commit.
    pub fn on_locked(&mut self, ctx: &mut Ctx<Server>, txn: TxnId, entries: Vec<LockedEntry>) {
        let Some(t) = self.txns.get_mut(&txn.id) else {
            return;
        };
        if let Some((_, keys)) = t.shards.get(t.granted) {
            let keys = keys.clone();
            t.entries.extend(keys.into_iter().zip(entries));
            t.granted += 1;
        }
        if t.granted < t.shards.len() {
            let (next, keys) = (t.shards[t.granted].0, t.shards[t.granted].1.clone());
            let all = t.all;
            ctx.send(next, Msg::Lock { txn, keys, all });
            return;
        }
        let Some(t) = self.txns.remove(&txn.id) else {
            return;
        };
        if let TxnKind::Snapshot { id, save } = t.kind {
            return self.start_snapshot(ctx, txn, &t, id, save);
        }
        // A script in it may run for long: the shard answers its connections meanwhile
        // (so what this turn raised goes first).
        self.send_events(ctx);
        let mut answer = self.busy_answer();
        let (mut writes, flush, result, raised) = ctx.long_work(&mut answer, || decide(&t));
        let (mut events, messages) = match raised {
            Some(r) => {
                // The reads ran on the scratch copy: they count here.
                self.db.hits += r.hits;
                self.db.misses += r.misses;
                (Some(r.events), r.messages)
            }
            None => (None, Vec::new()),
        };
        if let TxnKind::Copy { src, .. } = &t.kind {
            // COPY reads its source (a hit or a miss), as on one shard; RENAME's is a
            // write lookup (neither), as in Redis.
            let found = t.entries.iter().any(|(k, e)| k == src && e.entry.is_some());
            if found {
                self.db.hits += 1;
            } else {
                self.db.misses += 1;
            }
        }
        if flush || !writes.is_empty() {
            // One record for the whole outcome: replay applies all of it or none. The
            // shards that apply it append a fence behind it instead of their own records.
            self.db.journal(&Effect::Txn {
                flush,
                writes: writes.iter().map(Write::effect).collect(),
            });
        }
        for (shard, keys) in &t.shards {
            let mut mine = Vec::new();
            let mut i = 0;
            while i < writes.len() {
                if keys.contains(writes[i].key()) {
                    mine.push(writes.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            let my_events = events.as_mut().map(|all| {
                let (mine, rest): (Events, Events) =
                    all.drain(..).partition(|(_, k)| keys.contains(k));
                *all = rest;
                mine
            });
            ctx.send(
                *shard,
                Msg::Commit {
                    txn,
                    writes: mine,
                    flush,
                    snapshot: None,
                    event: t.kind.event(),
                    events: my_events,
                },
            );
        }
        // Behind the commits: a subscriber that reads a key on hearing the message waits
        // for the key's lock, so it sees the transaction's writes. (The keyspace events of
        // the commits, sent by each shard, are not ordered with these messages.)
        let seq = t.slot.map(|s| s.seq());
        // Overflow marks (`notify::bound`) need no order: now, right behind the commits.
        let (marks, messages): (Vec<_>, Vec<_>) = messages.into_iter().partition(|m| m.overflow);
        marks.into_iter().for_each(|m| self.db.events.requeue(m));
        self.send_messages(ctx);
        let out = super::publish_order::Outgoing::Messages(messages);
        self.publish_in_order(ctx, t.conn, seq, out);
        if let TxnKind::Exec { watched, .. } = &t.kind {
            // After the commits, so each shard still knew the versions when locked.
            self.forget_watches(ctx, watched);
        }
        // A blocked move that waited for this transaction lets its source go only now,
        // behind the commits (so nothing could take its element in between).
        self.after_blocked_move(ctx, txn.id);
        if self.read_or_block(ctx, t.conn, txn.id, &result) {
            // A group read over several shards that found nothing: its reply slot stays
            // empty and the connection blocks; the wait's answer is its reply.
            self.answer_txn(ctx, &t, OpResult::Bulks(Vec::new()));
        } else {
            self.answer_txn(ctx, &t, result);
        }
        self.release_hold(ctx, t.conn);
    }

    /// Apply a transaction's writes here, release its locks and run what waited.
    pub fn on_commit(
        &mut self,
        ctx: &mut Ctx<Server>,
        txn: TxnId,
        writes: Vec<Write>,
        flush: bool,
        event: &'static str,
        events: Option<Events>,
    ) {
        let now = unix_ms();
        let changes = flush || !writes.is_empty();
        self.db.events.cmd = event;
        let noted = self.db.events.pending.len();
        self.db.unjournaled(|db| {
            if flush {
                db.clear(now);
            }
            for w in writes {
                match w {
                    Write::Set {
                        key,
                        value,
                        deadline,
                    } => {
                        if matches!(event, "rename" | "renamenx" | "copy") {
                            db.announce_new(&key, now);
                        }
                        db.write_owned(&key, value, deadline, now)
                    }
                    Write::Del { key } => {
                        db.remove(&key, now);
                    }
                }
            }
        });
        if let Some(events) = events {
            // The commands' own events (raised on the coordinator's scratch copy) replace
            // the generic ones of applying their final values.
            self.db.events.pending.truncate(noted);
            self.db.events.pending.extend(events);
        }
        if changes {
            self.db.journal(&Effect::Fence);
        }
        self.locks.held.retain(|_, owner| *owner != txn);
        self.locks.tokens.remove(&txn);
        if self.locks.all == Some(txn) {
            self.locks.all = None;
        }
        self.run_deferred(ctx);
        self.retry_blocked(ctx);
        self.serve_ready(ctx);
    }

    /// The transaction's reply, into its slot (if anybody waits for it).
    fn answer_txn(&mut self, ctx: &mut Ctx<Server>, t: &Txn, result: OpResult) {
        if let Some(slot) = t.slot {
            self.complete_part(ctx, slot, 0, result);
        }
    }

    /// Queue a request if locks say so; returns it back when it may run now.
    pub fn defer_if_locked(
        &mut self,
        from: ShardId,
        slot: Option<ReplySlot>,
        part: u32,
        op: Op<Bytes>,
    ) -> Option<Op<Bytes>> {
        if self.locks.is_clear() || self.locks.may_run(&op.keys(), op.is_barrier()) {
            return Some(op);
        }
        self.locks.defer(Deferred::Request {
            from,
            slot,
            part,
            op,
        });
        None
    }

    /// Run every deferred item that no lock and no earlier item on its keys holds back.
    /// One pass in arrival order: each item runs unless a lock holds one of its keys or an
    /// item that stays ahead of it wants one (a barrier that stays stops everything after
    /// it). Linear in the deferred keys, whatever the queue length.
    fn run_deferred(&mut self, ctx: &mut Ctx<Server>) {
        let items = std::mem::take(&mut self.locks.deferred);
        self.locks.wanted.clear();
        self.locks.barriers = 0;
        let mut ahead: hashbrown::HashSet<Bytes> = hashbrown::HashSet::new();
        for work in items {
            let runnable = self.locks.all.is_none()
                && self.locks.barriers == 0
                && if work.is_barrier() {
                    self.locks.deferred.is_empty()
                        && self.locks.held.is_empty()
                        && self.locks.tokens.is_empty()
                } else {
                    work.keys()
                        .iter()
                        .all(|k| !self.locks.held.contains_key(*k) && !ahead.contains(*k))
                };
            if !runnable {
                ahead.extend(work.keys().into_iter().map(Bytes::copy_from_slice));
                self.locks.defer(work);
                continue;
            }
            match work {
                Deferred::Request {
                    from,
                    slot,
                    part,
                    op,
                } => {
                    self.run_part(ctx, from, slot, part, op);
                }
                Deferred::Lock {
                    from,
                    txn,
                    keys,
                    all,
                } => self.grant(ctx, from, txn, keys, all),
            }
        }
    }
}

/// The snapshot a shard coordinates.
#[derive(Debug)]
pub struct SnapCoord {
    id: u64,
    start: LogPosition,
    /// `Wal::log_bytes` at `start`.
    log_at_start: u64,
    pending: usize,
    parts: usize,
    /// SAVE's reply position, answered when the snapshot is published.
    reply_to: Option<ReplySlot>,
    error: Option<String>,
}

impl Server {
    /// Every shard is locked: note where replay will start, then have each shard copy
    /// its keys (the `Commit` carries the snapshot id) and release.
    fn start_snapshot(&mut self, ctx: &mut Ctx<Server>, txn: TxnId, t: &Txn, id: u64, save: bool) {
        let Some((start, log_at_start)) = self.wal.as_ref().map(|w| w.position_and_log_bytes())
        else {
            snapshot::end(false);
            let off = OpResult::Error("ERR persistence is off".into());
            self.answer_txn(ctx, t, off);
            return self.release_hold(ctx, t.conn);
        };
        self.snap_coord = Some(SnapCoord {
            id,
            start,
            log_at_start,
            pending: t.shards.len(),
            parts: t.shards.len(),
            reply_to: t.slot.filter(|_| save),
            error: None,
        });
        for (shard, _) in &t.shards {
            ctx.send(
                *shard,
                Msg::Commit {
                    txn,
                    writes: Vec::new(),
                    flush: false,
                    snapshot: Some(id),
                    event: "",
                    events: None,
                },
            );
        }
        if !save {
            let started = OpResult::Reply(coreshard_protocol::Value::Simple(
                "Background saving started".into(),
            ));
            self.answer_txn(ctx, t, started);
            self.release_hold(ctx, t.conn);
        }
    }

    /// Start this shard's part of snapshot `id` (still under the snapshot's lock, so it is
    /// exactly the state at this shard's last LSN; later writes only copy what they change
    /// before the part has it).
    pub fn copy_for_snapshot(&mut self, ctx: &mut Ctx<Server>, coordinator: ShardId, id: u64) {
        let fail = |e: String| Msg::SnapshotPart { id, error: Some(e) };
        let Some(wal) = self.wal.as_ref() else {
            return ctx.send(coordinator, fail("persistence is off".into()));
        };
        let writer = match wal.snapshot_writer(self.shard, id) {
            Ok(w) => w,
            Err(e) => return ctx.send(coordinator, fail(e.to_string())),
        };
        let lsn = self.db.last_lsn;
        let now = unix_ms();
        match snapshot::PartJob::new(id, coordinator, self.shard, writer, lsn, &mut self.db, now) {
            Ok(job) => self.part_job = Some(job),
            Err(e) => ctx.send(coordinator, fail(e.to_string())),
        }
    }

    /// One bounded step of writing this shard's snapshot part.
    pub fn step_snapshot(&mut self, ctx: &mut Ctx<Server>) {
        let Some(job) = self.part_job.as_mut() else {
            return;
        };
        let done = job.step(&mut self.db);
        let (id, coordinator) = (job.id, job.coordinator);
        match done {
            Ok(false) => ctx.run_again(),
            Ok(true) => {
                self.part_job = None;
                ctx.send(coordinator, Msg::SnapshotPart { id, error: None });
            }
            Err(e) => {
                self.part_job = None;
                let error = Some(e.to_string());
                ctx.send(coordinator, Msg::SnapshotPart { id, error });
            }
        }
    }

    /// A part is written: once all are, publish the snapshot (old segments go).
    pub fn on_snapshot_part(&mut self, ctx: &mut Ctx<Server>, id: u64, error: Option<String>) {
        let Some(c) = self.snap_coord.as_mut().filter(|c| c.id == id) else {
            return;
        };
        c.pending = c.pending.saturating_sub(1);
        if error.is_some() {
            c.error = error;
        }
        if c.pending > 0 {
            return;
        }
        let Some(c) = self.snap_coord.take() else {
            return;
        };
        let result = match (c.error, self.wal.as_ref()) {
            (Some(e), _) => Err(e),
            (None, None) => Err("persistence is off".into()),
            (None, Some(wal)) => wal
                .complete_snapshot(c.id, c.parts, c.start)
                .map(|size| snapshot::published(size, c.log_at_start, wal.log_bytes()))
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = &result {
            tracing::warn!("snapshot {} failed: {e}", c.id);
            if let Some(wal) = self.wal.as_ref() {
                wal.abandon_snapshot(c.id);
            }
        }
        snapshot::end(result.is_ok());
        if let Some(slot) = c.reply_to {
            let reply = match result {
                Ok(()) => OpResult::Ok,
                Err(e) => OpResult::Error(format!("ERR snapshot failed: {e}")),
            };
            self.complete_part(ctx, slot, 0, reply);
            self.release_hold(ctx, slot.conn());
        }
    }
}

/// What a transaction decided from what it read under lock: writes, whether shards flush
/// first, the reply, and what its commands raised (EXEC and one-command transactions):
/// keyspace events, which the shards publish instead of generic ones, and the messages
/// its PUBLISHes send, which the coordinator sends after the commits.
type Decision = (Vec<Write>, bool, OpResult, Option<Raised>);

/// Keyspace events raised on a scratch copy: (event, key).
type Events = Vec<(&'static str, Bytes)>;

/// What a transaction's commands raised on the scratch copy.
struct Raised {
    events: Events,
    messages: Vec<crate::notify::Message>,
    /// The keyspace hits and misses of the commands' reads.
    hits: u64,
    misses: u64,
}

fn decide(t: &Txn) -> Decision {
    let entry = |k: &Bytes| {
        t.entries
            .iter()
            .find(|(key, _)| key == k)
            .and_then(|(_, e)| e.entry.as_ref())
    };
    match &t.kind {
        TxnKind::MSetNx(pairs) => {
            if pairs.iter().any(|(k, _)| entry(k).is_some()) {
                return (Vec::new(), false, OpResult::Int(0), None);
            }
            let writes = pairs
                .iter()
                .map(|(k, v)| Write::Set {
                    key: k.clone(),
                    value: Owned::Bytes(v.clone()),
                    deadline: 0,
                })
                .collect();
            (writes, false, OpResult::Int(1), None)
        }
        TxnKind::Rename { src, dst, nx } => {
            let Some((value, deadline)) = entry(src).cloned() else {
                return (
                    Vec::new(),
                    false,
                    OpResult::Error("ERR no such key".into()),
                    None,
                );
            };
            if *nx && entry(dst).is_some() {
                return (Vec::new(), false, OpResult::Int(0), None);
            }
            let writes = vec![
                Write::Del { key: src.clone() },
                Write::Set {
                    key: dst.clone(),
                    value,
                    deadline,
                },
            ];
            (
                writes,
                false,
                if *nx { OpResult::Int(1) } else { OpResult::Ok },
                None,
            )
        }
        TxnKind::Copy { src, dst, replace } => {
            let Some((value, deadline)) = entry(src).cloned() else {
                return (Vec::new(), false, OpResult::Int(0), None);
            };
            if !*replace && entry(dst).is_some() {
                return (Vec::new(), false, OpResult::Int(0), None);
            }
            (
                vec![Write::Set {
                    key: dst.clone(),
                    value,
                    deadline,
                }],
                false,
                OpResult::Int(1),
                None,
            )
        }
        TxnKind::Flush => (Vec::new(), true, OpResult::Ok, None),
        TxnKind::Snapshot { .. } => (Vec::new(), false, OpResult::Ok, None),
        TxnKind::One(q) => {
            let (writes, flush, result, events) =
                exec_on_scratch(&t.entries, std::slice::from_ref(q), false, unix_ms());
            let result = match result {
                OpResult::Multi(mut rs) if rs.len() == 1 => rs.remove(0),
                other => other,
            };
            (writes, flush, result, events)
        }
        TxnKind::Exec {
            cmds,
            watched,
            flush,
        } => {
            let now = unix_ms();
            let version = |k: &Bytes| {
                t.entries
                    .iter()
                    .find(|(key, _)| key == k)
                    .and_then(|(_, e)| e.version)
            };
            if watched_changed(watched, now, |w| version(&w.key)) {
                return (Vec::new(), false, OpResult::NullArray, None);
            }
            exec_on_scratch(&t.entries, cmds, *flush, now)
        }
    }
}

/// Whether any watched key changed (another version) or expired since WATCH.
pub fn watched_changed(
    watched: &[WatchedKey],
    now: u64,
    current: impl Fn(&WatchedKey) -> Option<u64>,
) -> bool {
    watched
        .iter()
        .any(|w| current(w) != Some(w.version) || (w.deadline != 0 && w.deadline <= now))
}

/// Run EXEC's commands against a scratch keyspace holding copies of the locked keys, and
/// turn the keys' final states into writes (only keys that changed).
fn exec_on_scratch(
    entries: &[(Bytes, LockedEntry)],
    cmds: &[Queued],
    flush: bool,
    now: u64,
) -> Decision {
    let mut scratch = Db::default();
    scratch.quiet_changes = Some(Default::default());
    for (key, e) in entries {
        if let Some((value, deadline)) = &e.entry {
            scratch.write_owned(key, value.clone(), *deadline, now);
        }
    }
    // Loading the copies is not an event; what the commands do is.
    scratch.events.pending.clear();
    let before: Vec<u64> = entries
        .iter()
        .map(|(k, _)| scratch.watch.watch(k))
        .collect();
    let results = cmds
        .iter()
        .map(|c| run_queued(&mut scratch, now, c))
        .collect();
    let mut writes = Vec::new();
    let quiet = scratch.quiet_changes.take().unwrap_or_default();
    for ((key, _), v) in entries.iter().zip(before) {
        if scratch.watch.version(key) == Some(v) && !quiet.contains(key) {
            continue;
        }
        match scratch.get_owned(key, now) {
            Some((value, deadline)) => writes.push(Write::Set {
                key: key.clone(),
                value,
                deadline,
            }),
            None => writes.push(Write::Del { key: key.clone() }),
        }
    }
    let raised = Raised {
        events: std::mem::take(&mut scratch.events.pending),
        messages: std::mem::take(&mut scratch.events.messages),
        hits: scratch.hits,
        misses: scratch.misses,
    };
    (writes, flush, OpResult::Multi(results), Some(raised))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(id: u64) -> TxnId {
        TxnId { origin: 0, id }
    }

    #[test]
    fn only_work_on_locked_keys_waits() {
        let mut l = Locks::default();
        assert!(l.is_clear());
        l.held.insert(Bytes::from_static(b"a"), txn(1));
        assert!(!l.may_run(&[b"a"], false));
        assert!(l.may_run(&[b"b"], false));
        assert!(!l.may_run(&[], true), "a flush waits for held locks");
    }

    #[test]
    fn nothing_overtakes_deferred_work_on_its_keys() {
        let mut l = Locks::default();
        l.held.insert(Bytes::from_static(b"a"), txn(1));
        l.defer(Deferred::Lock {
            from: 0,
            txn: txn(2),
            keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
            all: false,
        });
        assert!(!l.may_run(&[b"b"], false), "b is wanted by earlier work");
        assert!(l.may_run(&[b"c"], false));
    }

    #[test]
    fn a_whole_shard_lock_blocks_everything() {
        let mut l = Locks {
            all: Some(txn(1)),
            ..Locks::default()
        };
        assert!(!l.may_run(&[b"x"], false));
        l.all = None;
        assert!(l.may_run(&[b"x"], false));
    }
}
