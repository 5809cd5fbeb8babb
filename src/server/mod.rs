//! The Redis-protocol handler that runs on every shard: parse requests in place, run each
//! command on the shard that owns its keys, and keep replies in request order.

pub mod args;
pub mod blocking;
pub mod busy;
pub mod conn;
pub mod durability;
pub mod http;
pub mod ops;
mod preauth;
mod prefetch;
pub mod publish_order;
pub mod reply;
pub mod txn;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coreshard_engine::{ConnId, Ctx, Handler, Input, ReplySlot, ShardId, ShardInfo};
use coreshard_protocol::{parse_request_resume, Encoder, ParseState, Protocol};

pub use args::ArgList;
pub use conn::ConnState;
use ops::{unix_ms, Msg, Op, OpResult};
use reply::{encode_result, Agg};
use txn::{Locks, Txn};

/// Redis's refusal of a non-loopback client in protected mode.
const PROTECTED_MODE_DENIED: &[u8] = b"-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Set up an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n";

/// Protected mode (bound beyond loopback without a password) refuses clients that are
/// not on the loopback interface.
fn protected_mode_refuses(config: &ServerConfig, peer: Option<SocketAddr>) -> bool {
    let loopback = peer.is_some_and(|p| match p.ip() {
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        ip => ip.is_loopback(),
    });
    config.protected && !loopback && !config.runtime.has_password()
}

/// Slots one KEYS step visits before yielding to I/O.
const KEYS_STEP: usize = 4096;

/// A KEYS walk over this shard's keys, answered when it reaches the end.
struct KeysJob {
    slot: Option<ReplySlot>,
    part: u32,
    pattern: bytes::Bytes,
    cursor: u64,
    keys: Vec<bytes::Bytes>,
}

/// Replies a connection may owe before its input pauses (pipelines waiting on other
/// shards); it resumes below half. The engine enforces it (`max_owed_replies`).
pub const MAX_OWED_REPLIES: usize = 16 * 1024;
/// Mailbox batches waiting in overflow queues before producing connections pause.
const MAX_MAIL_BACKLOG: usize = 1024;

use crate::commands::pubsub::Observed;
use crate::commands::{self, Spec};
use crate::config::ServerConfig;
use crate::db::Db;
use crate::routing::SlotTable;
use coreshard_engine::ttl::ValueRef;

/// GET replies at least this large are sent from the stored value without a copy.
const SHARED_REPLY_MIN: usize = 16 * 1024;

/// Timer cookie of the active-expiry tick.
const EXPIRE_TICK: u64 = 1;
/// Timer cookie of the `--save` schedule check (shard 0).
const SAVE_TICK: u64 = 2;
/// How often an idle shard looks for expired keys.
const EXPIRE_EVERY: Duration = Duration::from_millis(50);
/// Keys (or stale bucket entries) one active-expiry step may touch before yielding to I/O.
const EXPIRE_BUDGET: usize = 256;

/// The keys of one request that one shard owns.
pub struct ShardGroup<'a> {
    /// The owning shard.
    pub shard: ShardId,
    /// Its keys, in request order.
    pub keys: Vec<&'a [u8]>,
    /// Where each key stands in the request.
    pub positions: Vec<usize>,
}

/// A small xorshift generator for RANDOMKEY (no cryptographic needs, no dependency).
pub struct Rng(u64);

impl Rng {
    /// The next pseudo-random number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A generator from `seed` (not 0), for repeatable randomized tests.
    #[cfg(test)]
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A number below `n` (`n > 0`).
    #[cfg(test)]
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Output Redis keeps in each client's static buffer (`PROTO_REPLY_CHUNK_BYTES`), outside
/// its output limits.
const REPLY_BUFFER: usize = 16 * 1024;

/// One shard's server: its slice of the keyspace and its connections' protocol state.
pub struct Server {
    /// This shard.
    pub shard: ShardId,
    /// How many shards run.
    pub shards: usize,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// Slot → shard.
    pub slots: Arc<SlotTable>,
    /// This shard's keys.
    pub db: Db,
    /// Commands run by this shard's connections.
    pub commands_processed: u64,
    /// The command found last: a pipeline mostly repeats one, and comparing its name is
    /// cheaper than looking it up.
    last_command: Option<(&'static commands::Spec, usize)>,
    /// Randomness for RANDOMKEY.
    pub rng: Rng,
    locks: Locks,
    txns: hashbrown::HashMap<u64, Txn>,
    next_txn: u64,
    next_client: u64,
    /// The connection input being parsed, when shareable (large values keep slices of it).
    input: Option<bytes::Bytes>,
    /// Replies and messages waiting for the log.
    pub durability: durability::Durability,
    /// Pub/sub: local subscribers and the interest replica.
    pub pubsub: crate::pubsub::PubSub,
    /// The log, when persistence is on (snapshots, INFO).
    pub wal: Option<Arc<coreshard_engine::wal::Wal>>,
    /// This shard's part of a snapshot being written.
    part_job: Option<crate::persist::snapshot::PartJob>,
    /// The snapshot this shard coordinates.
    snap_coord: Option<txn::SnapCoord>,
    /// Journaled records already added to the server-wide change count.
    pub changes_counted: u64,
    /// KEYS walks in progress, stepped between I/O.
    keys_jobs: std::collections::VecDeque<KeysJob>,
    /// Closed connections' messages still waiting for their replies (`publish_order`).
    orphans: hashbrown::HashMap<ConnId, publish_order::Outbound>,
    /// Connections over their soft output limit: looked at every 50 ms (the expiry tick
    /// keeps the shard turning), so one is dropped when its period ends even if nothing
    /// more is written to it, as Redis's clientsCron does.
    soft_over: hashbrown::HashSet<ConnId>,
    /// When `soft_over` was last looked at.
    soft_checked_at: std::time::Instant,
    /// Connections paused for owing too many replies or for mailbox backlog.
    backlogged: Vec<ConnId>,
    /// Clients from other hosts refused by protected mode, answered at the turn's end.
    denied: Vec<ConnId>,
    expire_backlog: bool,
    expire_timer_armed: bool,
    /// Blocked clients of this shard and waiters on its keys.
    pub blocking: blocking::Blocking,
    /// Per-command counters and latency (INFO commandstats, latencystats).
    pub cmd_stats: crate::stats::CmdStats,
    /// This shard's slow commands.
    pub slowlog: crate::stats::SlowLog,
    /// This shard's LATENCY events.
    pub latency: crate::latency::Monitor,
    /// Metrics (HTTP) connections open on this shard, left out of the client count.
    pub http_conns: u64,
    /// The last clock reading: a command's time is the gap since the previous reading.
    clock: std::time::Instant,
    /// A monotonic reading and the Unix time (ms) read with it: commands take their Unix
    /// time from `clock` through it ([`Server::now_ms`]), re-read every 100 ms.
    wall_anchor: (std::time::Instant, u64),
    /// Counters as they were at the last CONFIG RESETSTAT (the engine's cannot be reset).
    pub stats_base: ops::StatsBase,
    /// The idle timeout this shard's engine applies (seconds), to notice CONFIG SET.
    applied_timeout: u64,
}

impl Server {
    /// A shard's server.
    pub fn new(
        info: ShardInfo,
        config: Arc<ServerConfig>,
        slots: Arc<SlotTable>,
        db: Db,
        wal: Option<Arc<coreshard_engine::wal::Wal>>,
    ) -> Self {
        let hold = db.journal.is_some();
        let db = crate::evict::attach(db, &config.memory, info.shard, info.shards);
        let seed = unix_ms() ^ ((info.shard as u64 + 1) << 40) | 1;
        Server {
            shard: info.shard,
            shards: info.shards,
            config,
            slots,
            db,
            last_command: None,
            durability: durability::Durability::new(hold),
            pubsub: crate::pubsub::PubSub::default(),
            wal,
            part_job: None,
            snap_coord: None,
            changes_counted: 0,
            commands_processed: 0,
            rng: Rng(seed),
            locks: Locks::default(),
            txns: hashbrown::HashMap::new(),
            next_txn: 0,
            next_client: 0,
            input: None,
            backlogged: Vec::new(),
            keys_jobs: std::collections::VecDeque::new(),
            orphans: hashbrown::HashMap::new(),
            soft_over: hashbrown::HashSet::new(),
            soft_checked_at: std::time::Instant::now(),
            denied: Vec::new(),
            expire_backlog: false,
            expire_timer_armed: false,
            blocking: blocking::Blocking::default(),
            cmd_stats: crate::stats::CmdStats::default(),
            slowlog: crate::stats::SlowLog::default(),
            latency: crate::latency::Monitor::default(),
            http_conns: 0,
            clock: std::time::Instant::now(),
            wall_anchor: (std::time::Instant::now(), unix_ms()),
            stats_base: ops::StatsBase::default(),
            applied_timeout: 0,
        }
    }

    /// Encode a reply for `conn` into its output (which the engine keeps behind any reply
    /// still owed by other shards).
    pub fn reply(&self, ctx: &mut Ctx<Server>, conn: ConnId, f: impl FnOnce(&mut Encoder<'_>)) {
        Self::reply_to(ctx, conn, f);
    }

    /// [`Server::reply`] without borrowing the server (for replies that borrow its data).
    fn reply_to(ctx: &mut Ctx<Server>, conn: ConnId, f: impl FnOnce(&mut Encoder<'_>)) {
        if let Some((state, out)) = ctx.state_and_output(conn) {
            f(&mut Encoder::new(out, state.proto));
        }
    }

    /// Whether a command for this shard may run right now on the parsing path: no lock
    /// or deferred work here, and nothing of this connection still in flight (which it
    /// must not overtake).
    fn local_ok(&self, ctx: &mut Ctx<Server>, conn: ConnId) -> bool {
        self.locks.is_clear() && ctx.replies_owed(conn) == 0 && ctx.state(conn).is_some()
    }

    /// Whether a command for this shard may run right now for `conn` (see `local_ok`).
    pub fn local_ok_for(&self, ctx: &mut Ctx<Server>, conn: ConnId) -> bool {
        self.local_ok(ctx, conn)
    }

    /// Pause `conn`'s input until a transaction (or WATCH) in flight is decided.
    pub fn hold_until_answered(&mut self, ctx: &mut Ctx<Server>, conn: ConnId) {
        if let Some(state) = ctx.state(conn) {
            state.held = true;
            ctx.pause_input(conn);
        }
    }

    /// The transaction (or WATCH) `conn` waited for is decided: read its input again.
    pub fn release_hold(&mut self, ctx: &mut Ctx<Server>, conn: ConnId) {
        if let Some(state) = ctx.state(conn) {
            if std::mem::take(&mut state.held) && !state.backlogged {
                ctx.resume_input(conn);
            }
        }
    }

    /// Pause `conn` while the mailboxes are backed up (the engine pauses a connection that
    /// owes too many replies).
    fn check_backlog(&mut self, ctx: &mut Ctx<Server>, conn: ConnId) -> bool {
        if ctx.mail_backlog() < MAX_MAIL_BACKLOG {
            return false;
        }
        let Some(state) = ctx.state(conn) else {
            return false;
        };
        if !state.backlogged {
            state.backlogged = true;
            self.backlogged.push(conn);
        }
        ctx.pause_input(conn);
        true
    }

    /// Resume backlogged connections once the mail backlog shrank below half.
    fn relieve_backlog(&mut self, ctx: &mut Ctx<Server>) {
        if self.backlogged.is_empty() || ctx.mail_backlog() >= MAX_MAIL_BACKLOG / 2 {
            return;
        }
        self.backlogged.retain(|&conn| {
            let Some(state) = ctx.state(conn) else {
                return false;
            };
            state.backlogged = false;
            if !state.held {
                ctx.resume_input(conn);
            }
            false
        });
    }

    /// Reply with an error (`msg` includes its code, e.g. `ERR ...`).
    pub fn error(&mut self, ctx: &mut Ctx<Server>, conn: ConnId, msg: &str) {
        crate::stats::note_error(msg);
        self.reply(ctx, conn, |e| e.error(msg));
    }

    /// Reply with a part result.
    pub fn reply_result(&mut self, ctx: &mut Ctx<Server>, conn: ConnId, result: &OpResult) {
        self.reply(ctx, conn, |e| encode_result(e, result));
    }

    /// GET: the hottest path, encoded straight from the stored value when the key is local.
    pub fn run_get(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        spec: &'static Spec,
        args: &[Cow<'_, [u8]>],
    ) {
        let key: &[u8] = &args[1];
        if self.slots.shard_of(key) == self.shard && self.local_ok(ctx, conn) {
            let now = self.now_ms();
            let in_order = true;
            match self.db.read_str(key, now) {
                // A large value goes to the socket straight from the store, no copy.
                Ok(Some(ValueRef::Shared(big))) if in_order && big.len() >= SHARED_REPLY_MIN => {
                    let big = big.clone();
                    if let Some((state, out)) = ctx.state_and_output(conn) {
                        Encoder::new(out, state.proto).bulk_header(big.len());
                    }
                    ctx.write_shared(conn, big);
                    ctx.write(conn, b"\r\n");
                }
                Ok(value) => {
                    Self::reply_to(ctx, conn, |e| e.opt_bulk(value.map(|v| v.as_slice())));
                }
                Err(_) => {
                    crate::stats::note_error(crate::db::WRONGTYPE);
                    Self::reply_to(ctx, conn, |e| e.error(crate::db::WRONGTYPE))
                }
            }
            return;
        }
        self.run_cmd(ctx, conn, spec, args);
    }

    /// Run a command whose keys (by the spec's key positions) live on one shard; commands
    /// whose keys span shards get `cross` (or Redis Cluster's CROSSSLOT-like error text).
    pub fn run_cmd(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        spec: &'static Spec,
        args: &[Cow<'_, [u8]>],
    ) {
        let mut owner = None;
        for i in spec.key_positions(args) {
            let s = self.slots.shard_of(&args[i]);
            match owner {
                None => owner = Some(s),
                Some(o) if o != s => {
                    return match spec.cross {
                        Some(cross) => cross(self, ctx, conn, args),
                        None => self.error(
                            ctx,
                            conn,
                            "CROSSSHARD Keys in request don't hash to the same shard",
                        ),
                    };
                }
                Some(_) => {}
            }
        }
        let owner = owner.unwrap_or(self.shard);
        let Some(keyed) = spec.keyed else {
            return self.error(ctx, conn, "ERR internal: command has no keyed form");
        };
        if owner == self.shard && self.local_ok(ctx, conn) {
            if spec.long {
                // What this turn raised goes before the script, whose run may send this
                // turn's replies (`serve_while_busy`): a reply never before its events.
                self.send_events(ctx);
            }
            let now = self.now_ms();
            let local = args::Local {
                args,
                input: self.input.as_ref(),
            };
            let limits = self.config.limits;
            let result = busy::run_keyed(ctx, &mut self.db, limits, spec, keyed, now, &local);
            self.send_messages(ctx);
            self.reply_result(ctx, conn, &result);
        } else {
            let op = Op::Cmd {
                spec,
                args: args::Local {
                    args,
                    input: self.input.as_ref(),
                }
                .to_owned(),
            };
            self.run_parts(ctx, conn, vec![(owner, op)], Agg::Single(None));
        }
    }

    /// Run a command split into per-shard parts; the reply is `agg` once all answered.
    /// Local parts run now (unless locks make them wait); remote ones travel in this
    /// turn's batch to their shard.
    pub fn run_parts(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        parts: Vec<(ShardId, Op<&[u8]>)>,
        agg: Agg,
    ) {
        let local_ok = self.local_ok(ctx, conn);
        // A shard running a script past lua-time-limit cannot answer: say so now.
        if let Some(busy) = parts
            .iter()
            .filter(|(shard, _)| *shard != self.shard)
            .find_map(|(shard, _)| crate::script::busy_reply(*shard))
        {
            return self.error(ctx, conn, busy);
        }
        let Some(slot) = Self::reserve_reply(ctx, conn, parts.len() as u32, agg) else {
            return;
        };
        // A script's reply may bring messages back: what the connection publishes after
        // it waits for it (`publish_order`).
        if parts
            .iter()
            .any(|(_, op)| matches!(op, Op::Cmd { spec, .. } if spec.long))
        {
            if let Some(state) = ctx.state(conn) {
                state.outbound.expect(slot.seq());
            }
        }
        for (part, (shard, op)) in parts.into_iter().enumerate() {
            let part = part as u32;
            if shard == self.shard && local_ok {
                self.run_part(ctx, self.shard, Some(slot), part, op);
            } else {
                let msg = Msg::Request {
                    slot: Some(slot),
                    part,
                    op: op.into_owned(),
                };
                ctx.send(shard, msg);
            }
        }
    }

    /// Take `conn`'s next reply position (an engine reply slot) for a reply put together
    /// from `parts` parts by `agg`, in the connection's protocol now.
    pub fn reserve_reply(
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        parts: u32,
        agg: Agg,
    ) -> Option<ReplySlot> {
        let proto = ctx.state(conn)?.proto;
        let slot = ctx.reserve_slot(conn)?;
        ctx.state(conn)?
            .pending
            .insert(slot.seq(), proto, parts, agg);
        Some(slot)
    }

    /// A value argument as `Bytes`: a zero-copy slice of the input when large.
    pub fn arg_bytes(&self, arg: &[u8]) -> bytes::Bytes {
        args::share_or_copy(self.input.as_ref(), arg)
    }

    /// Group `keys` by owning shard, in order of first appearance.
    pub fn group_by_shard<'a>(&self, keys: impl Iterator<Item = &'a [u8]>) -> Vec<ShardGroup<'a>> {
        let mut groups: Vec<ShardGroup<'a>> = Vec::new();
        for (pos, key) in keys.enumerate() {
            let shard = self.slots.shard_of(key);
            match groups.iter_mut().find(|g| g.shard == shard) {
                Some(g) => {
                    g.keys.push(key);
                    g.positions.push(pos);
                }
                None => groups.push(ShardGroup {
                    shard,
                    keys: vec![key],
                    positions: vec![pos],
                }),
            }
        }
        groups
    }

    /// Run `op` on every shard and combine with `agg`.
    pub fn broadcast(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        op: impl Fn() -> Op<&'static [u8]>,
        agg: Agg,
    ) {
        let parts = (0..self.shards).map(|s| (s, op())).collect();
        self.run_parts(ctx, conn, parts, agg);
    }

    /// Run one part here and answer the shard whose connection asked for it. KEYS walks
    /// the keyspace in bounded steps between I/O instead of all at once.
    pub fn run_part<K: AsRef<[u8]>>(
        &mut self,
        ctx: &mut Ctx<Server>,
        from: ShardId,
        slot: Option<ReplySlot>,
        part: u32,
        op: Op<K>,
    ) {
        if let Op::Keys(pattern) = op {
            self.keys_jobs.push_back(KeysJob {
                slot,
                part,
                pattern,
                cursor: 0,
                keys: Vec::new(),
            });
            return self.step_keys(ctx);
        }
        if let Op::Publish {
            ns,
            channel,
            message,
        } = &op
        {
            // After the events of what ran before it here.
            self.send_events(ctx);
            let n = self.deliver(ctx, *ns, channel, message, Observed::Nothing);
            let Some(slot) = slot else { return };
            let result = OpResult::Int(n);
            return if slot.shard() == self.shard {
                self.complete_part(ctx, slot, part, result)
            } else {
                let reply = Msg::Reply {
                    slot,
                    part,
                    result,
                    messages: Vec::new(),
                };
                ctx.send(slot.shard(), reply)
            };
        }
        if let Op::ClientUnblock { id, error } = op {
            let result = OpResult::Int(i64::from(self.unblock_client(ctx, id, error)));
            return self.answer(ctx, slot, part, result);
        }
        if let Op::ClientKill(filter) = op {
            let result = OpResult::Int(self.kill_clients(ctx, &filter));
            return self.answer(ctx, slot, part, result);
        }
        // Counters, client lists and pub/sub tables show no data: they never wait for
        // the log.
        let shows_data = !matches!(
            op,
            Op::Report
                | Op::ClientList(_)
                | Op::PubsubNames { .. }
                | Op::PubsubCounts { .. }
                | Op::ResetStat
                | Op::Slowlog(_)
                | Op::Latency(_)
        );
        let remote_cmd = match &op {
            Op::Cmd { spec, .. } if from != self.shard => Some(spec.name),
            _ => None,
        };
        let result = self.apply(ctx, op);
        // What a script or transaction published for a connection leaves in the
        // connection's order, from its shard (`publish_order`): another shard's goes back
        // with the reply; here it waits if earlier work of the connection may still
        // publish. Its writes' keyspace events leave from here, in the keys' order, now:
        // before the messages in most cases (two shards' mail to a third is unordered).
        let mut relayed = Vec::new();
        if let Some(slot) = slot.filter(|_| !self.db.events.messages.is_empty()) {
            let remote = slot.shard() != self.shard;
            if remote
                || ctx
                    .state(slot.conn())
                    .is_some_and(|s| s.outbound.blocks(slot.seq()))
            {
                let messages = std::mem::take(&mut self.db.events.messages);
                // Overflow marks leave now, with the events they were raised among: a
                // doomed subscriber must not leave (and dodge its mark) between them.
                let (marks, messages): (Vec<_>, Vec<_>) =
                    messages.into_iter().partition(|m| m.overflow);
                marks.into_iter().for_each(|m| self.db.events.requeue(m));
                self.publish_events(ctx);
                if remote {
                    relayed = messages;
                } else {
                    let out = publish_order::Outgoing::Messages(messages);
                    self.publish_in_order(ctx, slot.conn(), Some(slot.seq()), out);
                }
            }
        }
        self.send_messages(ctx);
        if let (Some(name), OpResult::Error(msg)) = (remote_cmd, &result) {
            // The command was counted where it arrived; its failure is known here.
            if let Some((_, idx)) = commands::lookup_indexed(name.as_bytes()) {
                self.cmd_stats.record_failure(idx, msg.starts_with("OOM"));
            }
        }
        self.serve_ready(ctx);
        let Some(slot) = slot else { return };
        if shows_data || slot.shard() == self.shard {
            self.answer_with(ctx, Some(slot), part, result, relayed);
        } else {
            let reply = Msg::Reply {
                slot,
                part,
                result,
                messages: relayed,
            };
            ctx.send(slot.shard(), reply);
        }
    }

    /// One bounded step of the oldest KEYS walk; keeps the shard turning while any remain.
    fn step_keys(&mut self, ctx: &mut Ctx<Server>) {
        let Some(job) = self.keys_jobs.front_mut() else {
            return;
        };
        let now = unix_ms();
        let pattern = job.pattern.clone();
        let keys = &mut job.keys;
        job.cursor = self.db.scan(job.cursor, KEYS_STEP, now, |k, _| {
            if crate::glob::glob_match(&pattern, k, false) {
                keys.push(bytes::Bytes::copy_from_slice(k));
            }
        });
        if job.cursor == 0 {
            if let Some(job) = self.keys_jobs.pop_front() {
                let result = OpResult::Keys(job.keys);
                self.answer(ctx, job.slot, job.part, result);
            }
        }
        if !self.keys_jobs.is_empty() {
            ctx.run_again();
        }
    }

    /// Deliver a part's result to the shard whose connection asked for it (nowhere when
    /// nobody waits for it).
    fn answer(
        &mut self,
        ctx: &mut Ctx<Server>,
        slot: Option<ReplySlot>,
        part: u32,
        result: OpResult,
    ) {
        self.answer_with(ctx, slot, part, result, Vec::new());
    }

    /// [`Self::answer`], with the messages the part published for the connection's shard
    /// to send (see [`publish_order`]).
    fn answer_with(
        &mut self,
        ctx: &mut Ctx<Server>,
        slot: Option<ReplySlot>,
        part: u32,
        result: OpResult,
        messages: Vec<crate::notify::Message>,
    ) {
        let Some(slot) = slot else { return };
        if slot.shard() == self.shard {
            self.complete_part(ctx, slot, part, result);
        } else {
            let reply = Msg::Reply {
                slot,
                part,
                result,
                messages,
            };
            self.send_observed(ctx, slot.shard(), reply);
        }
    }

    /// Account one part's result for the reply in `slot` (a slot of this shard); once the
    /// last part is in, encode the reply and fill the slot (the engine sends it in order).
    pub fn complete_part(
        &mut self,
        ctx: &mut Ctx<Server>,
        slot: ReplySlot,
        part: u32,
        result: OpResult,
    ) {
        let conn = slot.conn();
        let Some(state) = ctx.state(conn) else {
            // Closed: its messages may still wait for this reply.
            return self.reply_done(ctx, slot);
        };
        let Some((proto, agg)) = state.pending.complete_part(slot.seq(), part, result) else {
            return;
        };
        match agg {
            Agg::Watch { got, .. } => {
                state.watched.extend(got);
                ctx.fill_slot_with(slot, |out| out.extend_from_slice(b"+OK\r\n"));
                self.release_hold(ctx, conn);
            }
            agg @ Agg::Killed { .. } => {
                ctx.fill_slot_with(slot, |out| self.encode_agg(proto, agg, out));
                self.release_hold(ctx, conn);
            }
            agg @ Agg::Raw(_) => {
                // A SUBSCRIBE confirmation: it releases the hold only if it set it (a
                // RESP2 one sets none, and a later WATCH's hold is not its to release).
                let own = state.confirm_hold == Some(slot.seq());
                if own {
                    state.confirm_hold = None;
                }
                ctx.fill_slot_with(slot, |out| self.encode_agg(proto, agg, out));
                if own {
                    self.release_hold(ctx, conn);
                }
            }
            agg => ctx.fill_slot_with(slot, |out| self.encode_agg(proto, agg, out)),
        }
        self.reply_done(ctx, slot);
        self.gate_output(ctx, conn);
        self.over_output_limit(ctx, conn);
    }

    /// The pubsub class's output limit, for a subscribed connection: true if it was
    /// dropped.
    pub fn over_pubsub_limit(&mut self, ctx: &mut Ctx<Server>, conn: ConnId) -> bool {
        self.over_output_limit(ctx, conn)
    }

    /// Enforce `client-output-buffer-limit` (normal or pubsub class, by whether the client
    /// has subscriptions): past the hard limit, or over the soft limit for its whole
    /// period, the client is dropped as Redis does.
    fn over_output_limit(&mut self, ctx: &mut Ctx<Server>, conn: ConnId) -> bool {
        let subscribed = ctx.state(conn).is_some_and(|s| s.subs.is_some());
        use crate::settings::{NORMAL, PUBSUB};
        let limit = (self.config.runtime).output_limit(if subscribed { PUBSUB } else { NORMAL });
        if limit.hard == 0 && limit.soft == 0 {
            // Off: a later limit starts its period afresh (as Redis resets it).
            self.soft_over.remove(&conn);
            if let Some(state) = ctx.state(conn) {
                state.over_soft_since = None;
            }
            return false;
        }
        // Redis does not count its 16 KB static reply buffer against the limits, so a
        // tiny limit does not drop a client for one short reply (its own CONFIG SET's).
        let unsent = ctx.unsent_output(conn).saturating_sub(REPLY_BUFFER);
        let now = ctx.now();
        let Some(state) = ctx.state(conn) else {
            return true;
        };
        let mut over = limit.hard > 0 && unsent >= limit.hard;
        if limit.soft > 0 && unsent >= limit.soft {
            let since = *state.over_soft_since.get_or_insert(now);
            over |= now.saturating_duration_since(since).as_secs() >= limit.soft_seconds;
            self.soft_over.insert(conn);
        } else {
            state.over_soft_since = None;
            self.soft_over.remove(&conn);
        }
        if over {
            self.drop_over_output_limit(ctx, conn, &format!("{unsent} bytes"));
        }
        over
    }

    /// Drop `conn` for its output buffer limit (`why` goes to the log), counted once.
    pub fn drop_over_output_limit(&mut self, ctx: &mut Ctx<Server>, conn: ConnId, why: &str) {
        self.soft_over.remove(&conn);
        let Some(state) = ctx.state(conn) else { return };
        if !std::mem::replace(&mut state.closing, true) {
            tracing::warn!(
                "client id={} closed for overcoming of output buffer limits ({why})",
                state.id
            );
            self.pubsub.disconnections += 1;
        }
        ctx.abort(conn);
    }

    /// Encode a completed reply onto `out`.
    fn encode_agg(&mut self, proto: Protocol, agg: Agg, out: &mut Vec<u8>) {
        if let Agg::Metrics { reports } = &agg {
            // An HTTP response, not RESP.
            out.extend_from_slice(&crate::metrics::http_response(self, reports));
            return;
        }
        let mut e = Encoder::new(out, proto);
        match agg {
            Agg::LatencyHistogram { names, reports } => {
                commands::latency::encode_histogram(&mut e, &names, &reports);
            }
            Agg::Latency { ask, events } => {
                commands::latency::encode_events(self, &mut e, ask, &events);
            }
            Agg::Info { sections, reports } => {
                let text = commands::admin::format_info(self, &sections, &reports);
                e.verbatim(b"txt", text.as_bytes());
            }
            Agg::Random(candidates) => {
                let total: u64 = candidates.iter().map(|(_, n)| n).sum();
                let mut pick = if total > 0 {
                    self.rng.next() % total
                } else {
                    0
                };
                let chosen = candidates.iter().find(|(_, n)| {
                    if pick < *n {
                        true
                    } else {
                        pick -= n;
                        false
                    }
                });
                e.opt_bulk(chosen.map(|(k, _)| &k[..]));
            }
            other => other.encode(&mut e, self.shards),
        }
    }

    /// Active expiry: one bounded step; remembers whether due keys remain.
    fn expire_step(&mut self) {
        let step = self.db.expire_step(unix_ms(), EXPIRE_BUDGET);
        self.expire_backlog = step.more;
    }

    /// Run one request. Answers the command's index for its statistics, and whether it
    /// was refused before running (`None`: unknown or queued in MULTI, not counted).
    fn execute(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        args: &[Cow<'_, [u8]>],
    ) -> Option<(usize, bool)> {
        let found = match self.last_command {
            Some((s, i)) if s.name.as_bytes().eq_ignore_ascii_case(&args[0]) => Some((s, i)),
            _ => {
                let found = commands::lookup_indexed(&args[0]);
                self.last_command = found.or(self.last_command);
                found
            }
        };
        let spec = found.map(|(s, _)| s);
        let idx = found.map_or(0, |(_, i)| i);
        // As Redis: the last command is what the lookup found, before any check refuses
        // it (`NULL` for an unknown command or subcommand).
        let name = spec.map_or("NULL", |s| commands::full_name(s, args));
        let mut subscribed = false;
        if let Some(state) = ctx.state(conn) {
            state.last_cmd = name;
            subscribed = state.subs.is_some() && state.proto == Protocol::Resp2;
        }
        if commands::multi::queue_if_in_multi(self, ctx, conn, spec, args) {
            return None;
        }
        let Some(spec) = spec else {
            let msg = commands::unknown_command_error(args);
            self.error(ctx, conn, &msg);
            return None;
        };
        // Redis's order: an unknown subcommand and the arities, then NOAUTH, then the RESP2
        // subscribed context (named as Redis 7 names it: `client|id`).
        if let Some(refusal) = commands::early_refusal(spec, name, args) {
            self.refuse(ctx, conn, spec, &refusal.message);
            return (!refusal.unknown).then_some((idx, true));
        }
        let authed = ctx.state(conn).is_some_and(|s| s.authed);
        if !authed && !spec.no_auth {
            self.refuse(ctx, conn, spec, "NOAUTH Authentication required.");
            return Some((idx, true));
        }
        if subscribed && !commands::pubsub::allowed_while_subscribed(spec.name) {
            let msg = commands::pubsub::subscribed_context_error(name);
            self.refuse(ctx, conn, spec, &msg);
            return Some((idx, true));
        }
        if spec.flags.contains(&"write") {
            if let Some(err) = self.log_error() {
                let msg = format!("MISCONF Errors writing to the AOF file: {err}");
                self.error(ctx, conn, &msg);
                return Some((idx, true));
            }
        }
        if let Some(state) = ctx.state(conn) {
            state.observed |= spec.observes_data();
        }
        self.commands_processed += 1;
        match spec.exec {
            Some(exec) => exec(self, ctx, conn, args),
            None => self.run_cmd(ctx, conn, spec, args),
        }
        // Lists that gained elements go to clients blocked on them before the next
        // command runs (as in Redis).
        self.serve_ready(ctx);
        Some((idx, false))
    }

    /// Refuse a command that `queue_if_in_multi` let through (EXEC, DISCARD, MULTI, WATCH,
    /// QUIT) before it runs, as Redis's `rejectCommand`: inside MULTI the transaction is
    /// doomed, and a refused EXEC ends it (`EXECABORT ... because of: ...`, WATCHes
    /// dropped).
    #[cold]
    fn refuse(&mut self, ctx: &mut Ctx<Server>, conn: ConnId, spec: &commands::Spec, msg: &str) {
        if spec.name != "exec" {
            if let Some(multi) = ctx.state(conn).and_then(|st| st.multi.as_mut()) {
                multi.dirty = true;
            }
            return self.error(ctx, conn, msg);
        }
        // A refused EXEC discards the transaction, inside MULTI or not (Redis's
        // `rejectCommand`), and says why as EXECABORT.
        if let Some(st) = ctx.state(conn) {
            st.multi = None;
        }
        self.unwatch_all(ctx, conn);
        let text = commands::multi::execabort(msg.strip_prefix("ERR ").unwrap_or(msg));
        self.error(ctx, conn, &text);
    }

    /// Unix time in ms for the command about to run, without reading a clock: the last
    /// reading (the end of the previous command, or this turn's wake-up) carried over from
    /// an anchor that re-reads the wall clock every 100 ms (so a wall-clock step shows
    /// within 100 ms). A clock read per command was 3-4 % of a shard's time at -P 16.
    #[inline]
    pub fn now_ms(&mut self) -> u64 {
        let since = self.clock.saturating_duration_since(self.wall_anchor.0);
        if since >= Duration::from_millis(100) {
            self.wall_anchor = (self.clock, unix_ms());
            return self.wall_anchor.1;
        }
        self.wall_anchor.1 + since.as_millis() as u64
    }

    /// What the shard answers its other connections while a script runs (`busy.rs`).
    pub fn busy_answer(&self) -> busy::BusyAnswer {
        busy::BusyAnswer {
            limits: self.config.limits,
        }
    }

    /// Make sure the last clock reading is no older than `t` (a turn's wake-up).
    #[inline]
    pub fn clock_at_least(&mut self, t: std::time::Instant) {
        self.clock = self.clock.max(t);
    }

    /// Count a request that just ran (see [`Server::execute`]): one clock reading, the
    /// command's statistics and, past `slowlog-log-slower-than`, a slow log entry.
    #[inline]
    fn account(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        args: &[Cow<'_, [u8]>],
        ran: Option<(usize, bool)>,
        errors_before: (u64, u64),
    ) {
        let now = std::time::Instant::now();
        let ns = now.saturating_duration_since(self.clock).as_nanos() as u64;
        self.clock = now;
        let Some((idx, rejected)) = ran else { return };
        let (errors, ooms) = crate::stats::error_counts();
        // (Counts can only fall by CONFIG RESETSTAT, which did not fail.)
        let outcome = if rejected || ooms > errors_before.1 {
            crate::stats::Outcome::Rejected
        } else if errors > errors_before.0 {
            crate::stats::Outcome::Failed
        } else {
            crate::stats::Outcome::Ok
        };
        self.cmd_stats.record(idx, ns, outcome);
        let threshold = self.config.runtime.latency_threshold();
        if threshold > 0 && !rejected && ns / 1_000_000 >= threshold {
            self.latency_event(idx, ns / 1_000_000);
        }
        let slower_than = self.config.runtime.slowlog_slower_than();
        if slower_than >= 0 && ns / 1000 >= slower_than as u64 && !rejected {
            self.log_slow(ctx, conn, args, idx, ns / 1000);
        }
    }

    /// A command took at least `latency-monitor-threshold`: a sample of the `command` event
    /// (or `fast-command` for a command flagged fast), as Redis records it.
    #[cold]
    fn latency_event(&mut self, idx: usize, ms: u64) {
        let fast = commands::by_index(idx).is_some_and(|s| s.flags.contains(&"fast"));
        let event = if fast { "fast-command" } else { "command" };
        self.latency.add(event, unix_ms() / 1000, ms);
    }

    /// Add a slow log entry for `args` (not for commands flagged `skip_slowlog`).
    #[cold]
    fn log_slow(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        args: &[Cow<'_, [u8]>],
        idx: usize,
        micros: u64,
    ) {
        if commands::by_index(idx).is_some_and(|s| s.flags.contains(&"skip_slowlog")) {
            return;
        }
        let max_len = self.config.runtime.slowlog_max_len();
        if max_len == 0 {
            return;
        }
        let addr = ctx
            .meta(conn)
            .and_then(|m| m.peer)
            .map(|p| p.to_string())
            .unwrap_or_default();
        let name = ctx
            .state(conn)
            .and_then(|s| s.name.as_ref())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let entry = crate::stats::SlowEntry::new(args, micros, addr, name);
        self.slowlog.push(entry, max_len);
    }
}

impl Handler for Server {
    type Conn = ConnState;
    type Msg = Msg;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        crate::script::set_shard(self.shard);
        if self.shard == 0 && self.wal.is_some() {
            ctx.set_timer(Duration::from_secs(1), SAVE_TICK);
        }
        self.on_turn_end(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<Self>, cookie: u64) {
        if cookie == SAVE_TICK {
            self.save_tick(ctx);
            ctx.set_timer(Duration::from_secs(1), SAVE_TICK);
        }
        if cookie & http::TIMER_BIT != 0 {
            return self.http_deadline(ctx, cookie);
        }
        if cookie >= blocking::TIMER_BASE {
            return self.on_block_timeout(ctx, cookie - blocking::TIMER_BASE);
        }
        if cookie == EXPIRE_TICK {
            self.expire_timer_armed = false;
            self.expire_step();
        }
    }

    fn on_turn_end(&mut self, ctx: &mut Ctx<Self>) {
        let timeout = self.config.runtime.timeout();
        if timeout != self.applied_timeout {
            self.applied_timeout = timeout;
            ctx.set_idle_timeout(Some(Duration::from_secs(timeout)));
        }
        for conn in std::mem::take(&mut self.denied) {
            if ctx.state(conn).is_some_and(|s| s.http) {
                Self::http_forbidden(ctx, conn);
            } else {
                ctx.write(conn, PROTECTED_MODE_DENIED);
            }
            if let Some(s) = ctx.state(conn) {
                s.closing = true;
            }
            ctx.close(conn);
        }
        self.relieve_backlog(ctx);
        // At most every 50 ms (not every turn: many slow subscribers on a busy shard).
        if !self.soft_over.is_empty()
            && ctx.now().saturating_duration_since(self.soft_checked_at) >= EXPIRE_EVERY
        {
            self.soft_checked_at = ctx.now();
            let conns: Vec<ConnId> = self.soft_over.iter().copied().collect();
            for conn in conns {
                if ctx.state(conn).is_none() {
                    self.soft_over.remove(&conn);
                } else {
                    self.over_output_limit(ctx, conn);
                }
            }
        }
        self.serve_ready(ctx);
        self.step_keys(ctx);
        // Mass expiry is reclaimed one bounded step per loop turn, between I/O, so it never
        // stalls the shard's connections; while due keys remain the shard keeps turning
        // instead of sleeping. A periodic tick looks for newly due keys.
        if self.expire_backlog {
            self.expire_step();
            if self.expire_backlog {
                ctx.run_again();
            }
        }
        if !self.expire_timer_armed {
            ctx.set_timer(EXPIRE_EVERY, EXPIRE_TICK);
            self.expire_timer_armed = true;
        }
        self.step_snapshot(ctx);
        self.count_changes();
        self.publish_events(ctx);
        self.durability_turn(ctx);
    }

    fn on_open(
        &mut self,
        ctx: &mut Ctx<Self>,
        conn: ConnId,
        peer: Option<SocketAddr>,
    ) -> ConnState {
        if protected_mode_refuses(&self.config, peer) {
            self.denied.push(conn);
        }
        // The metrics listener's connections speak HTTP only (and RESP never reaches it).
        let http = self.config.metrics.is_some() && ctx.listener_of(conn) == Some(http::LISTENER);
        if http {
            self.http_conns += 1;
            ctx.set_timer(http::READ_DEADLINE, http::TIMER_BIT | conn.as_u64());
        }
        self.next_client += 1;
        ConnState {
            id: (self.next_client - 1) * self.shards as u64 + self.shard as u64 + 1,
            proto: Protocol::Resp2,
            authed: !self.config.runtime.has_password(),
            name: None,
            lib_name: None,
            lib_ver: None,
            last_cmd: "NULL",
            closing: false,
            pending: reply::Pending::default(),
            outbound: publish_order::Outbound::default(),
            held: false,
            confirm_hold: None,
            backlogged: false,
            multi: None,
            watched: Vec::new(),
            subs: None,
            over_soft_since: None,
            parse: ParseState::default(),
            observed: false,
            blocked: None,
            http,
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, input: Input<'_>) -> usize {
        let data: &[u8] = &input;
        if crate::script::aborting() {
            // SHUTDOWN NOSAVE stopped a script half way: its shard holds writes that were
            // never journaled, so nothing is served while the server stops.
            ctx.abort(conn);
            return data.len();
        }
        if ctx.state(conn).is_some_and(|s| s.http) {
            return self.on_http_data(ctx, conn, data);
        }
        self.input = input.share(data);
        // Time starts at this turn's wake-up, or at the end of the last command if that
        // was later: no clock read here, one per command after it runs.
        self.clock_at_least(ctx.now());
        let limits = self.config.limits;
        // Pipelined requests: warm the cache for the keys they name (on this shard)
        // before running them. Only at a request boundary (never rescanning a partial
        // request's bytes, so the look-ahead stays bounded per receive), and only for an
        // authenticated client that is not blocked.
        let look_ahead = self.db.prefetch_pays()
            && ctx
                .state(conn)
                .is_some_and(|s| s.authed && s.blocked.is_none() && !s.parse.pending());
        if look_ahead {
            let (slots, shard) = (&self.slots, self.shard);
            self.db
                .prefetch(prefetch::first_keys(data).filter(|k| slots.shard_of(k) == shard));
        }
        let mut args = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            if ctx.state(conn).is_some_and(|s| s.blocked.is_some()) {
                // A blocked client's further requests wait (kept by the engine) until
                // its pop is answered; reading goes on, so a disconnect is seen.
                break;
            }
            if ctx.state(conn).is_none_or(|s| s.closing) {
                if let Some(s) = ctx.state(conn) {
                    s.parse.reset();
                }
                pos = data.len();
                break;
            }
            if !ctx.state(conn).is_some_and(|s| s.authed) {
                if let Some(msg) = preauth::violation(&data[pos..]) {
                    self.error(ctx, conn, msg);
                    if let Some(s) = ctx.state(conn) {
                        s.closing = true;
                    }
                    ctx.close(conn);
                    pos = data.len();
                    break;
                }
            }
            // Resumes where the last call stopped: ingest is linear in bytes however the
            // request is split (the engine keeps `data[pos..]` from the same first byte).
            let Some(state) = ctx.state(conn) else { break };
            let parsed = parse_request_resume(&data[pos..], &limits, &mut state.parse, &mut args);
            let hint = state.parse.size_hint();
            match parsed {
                Ok(Some(n)) => {
                    pos += n;
                    if !args.is_empty() {
                        let errors_before = crate::stats::error_counts();
                        let ran = self.execute(ctx, conn, &args);
                        self.account(ctx, conn, &args, ran, errors_before);
                    }
                    // Stop at a transaction in flight (held), full output (the engine
                    // pauses until it drains) or a backlog; the rest is kept, in order.
                    if ctx.input_paused(conn)
                        || self.over_output_limit(ctx, conn)
                        || ctx.output_full(conn)
                        || self.check_backlog(ctx, conn)
                    {
                        break;
                    }
                }
                Ok(None) => {
                    // A large request arriving in pieces: have its buffer sized once.
                    if let Some(total) = hint {
                        if total > self.config.query_buffer_limit {
                            // Announced past client-query-buffer-limit: Redis drops the
                            // client rather than buffer it.
                            tracing::warn!(
                                "closing client that announced a {total} byte request, over \
                                 client-query-buffer-limit ({} bytes)",
                                self.config.query_buffer_limit
                            );
                            ctx.abort(conn);
                            pos = data.len();
                        } else if total >= args::BIG_ARG {
                            ctx.expect_input(conn, total);
                        }
                    }
                    break;
                }
                Err(e) => {
                    // Redis answers a protocol error and closes only this connection.
                    self.error(ctx, conn, &format!("ERR {e}"));
                    if let Some(s) = ctx.state(conn) {
                        s.closing = true;
                    }
                    ctx.close(conn);
                    pos = data.len();
                    break;
                }
            }
        }
        self.input = None;
        self.gate_output(ctx, conn);
        pos
    }

    fn on_message(&mut self, ctx: &mut Ctx<Self>, from: ShardId, msg: Msg) {
        match msg {
            Msg::Request { slot, part, op } => {
                if crate::script::aborting() {
                    let result = OpResult::Error("ERR the server is shutting down".into());
                    return self.answer(ctx, slot, part, result);
                }
                if let Some(op) = self.defer_if_locked(from, slot, part, op) {
                    self.run_part(ctx, from, slot, part, op);
                }
            }
            Msg::Reply {
                slot,
                part,
                result,
                messages,
            } => {
                // Before the reply completes: later messages of the connection wait for it.
                if !messages.is_empty() {
                    let out = publish_order::Outgoing::Messages(messages);
                    self.publish_in_order(ctx, slot.conn(), Some(slot.seq()), out);
                }
                self.complete_part(ctx, slot, part, result)
            }
            // After SHUTDOWN NOSAVE stopped a script half way, no transaction may read
            // (or snapshot) its unjournaled writes: the server is stopping anyway.
            Msg::Lock { .. } if crate::script::aborting() => {}
            Msg::Lock { txn, keys, all } => self.on_lock(ctx, from, txn, keys, all),
            Msg::Locked { txn, entries } => self.on_locked(ctx, txn, entries),
            Msg::Commit {
                txn,
                writes,
                flush,
                snapshot,
                event,
                events,
            } => {
                if let Some(id) = snapshot {
                    self.copy_for_snapshot(ctx, from, id);
                }
                self.on_commit(ctx, txn, writes, flush, event, events)
            }
            Msg::SnapshotPart { id, error } => self.on_snapshot_part(ctx, id, error),
            Msg::Interest {
                ns,
                name,
                on,
                announce,
            } => self.on_interest(ctx, from, ns, name, on, announce),
            Msg::InterestAck { id } => self.on_interest_ack(ctx, id),
            Msg::Notify {
                ns,
                channel,
                message,
                overflow,
            } => {
                self.on_notify(ctx, ns, &channel, &message, overflow, Observed::Nothing);
            }
            Msg::Block(m) => self.on_block_msg(ctx, from, m),
            Msg::Unwatch { keys } => {
                for k in keys {
                    self.db.watch.unwatch(&k);
                }
            }
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, mut state: ConnState) {
        // What it published still goes out, in its order.
        self.orphan_outbound(ctx, conn, std::mem::take(&mut state.outbound));
        if state.http {
            self.http_conns = self.http_conns.saturating_sub(1);
            return;
        }
        if let Some(id) = state.blocked {
            self.blocked_client_gone(ctx, id);
        }
        self.forget_watches(ctx, &state.watched);
        // A WATCH still in flight registers watchers its reply will never report: undo
        // them through the same FIFO mailboxes (this shard's too), behind the WATCH.
        let mut by_shard: Vec<(ShardId, Vec<bytes::Bytes>)> = Vec::new();
        for (key, shard) in state.pending.pending_watch_keys() {
            match by_shard.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, keys)) => keys.push(key),
                None => by_shard.push((shard, vec![key])),
            }
        }
        for (shard, keys) in by_shard {
            ctx.send(shard, Msg::Unwatch { keys });
        }
        if let Some(subs) = &state.subs {
            self.forget_subs(ctx, conn, subs);
        }
    }

    fn needs_turn(&self) -> bool {
        self.durability_needs_turn()
    }

    fn on_stop(&mut self, ctx: &mut Ctx<Self>) {
        self.durability_turn(ctx);
    }

    fn rejection(&self) -> &[u8] {
        b"-ERR max number of clients reached\r\n"
    }

    /// The metrics listener has its own connection limit; a scrape past it gets HTTP.
    fn rejection_for(&self, listener: usize) -> &[u8] {
        if listener == 0 {
            self.rejection()
        } else {
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> ServerConfig {
        let mut all = vec!["coreshard"];
        all.extend_from_slice(args);
        ServerConfig::from_args(&crate::config::Args::parse_from(all))
    }

    #[test]
    fn protected_mode_refuses_only_other_hosts_and_only_when_exposed_without_password() {
        let remote: SocketAddr = "203.0.113.7:5000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let exposed = config(&["--bind", "0.0.0.0"]);
        assert!(protected_mode_refuses(&exposed, Some(remote)));
        assert!(protected_mode_refuses(&exposed, None));
        assert!(!protected_mode_refuses(&exposed, Some(local)));
        assert!(!protected_mode_refuses(&exposed, Some(mapped)));
        let with_password = config(&["--bind", "0.0.0.0", "--requirepass", "x"]);
        assert!(!protected_mode_refuses(&with_password, Some(remote)));
        let off = config(&["--bind", "0.0.0.0", "--protected-mode", "no"]);
        assert!(!protected_mode_refuses(&off, Some(remote)));
        let loopback_only = config(&[]);
        assert!(!protected_mode_refuses(&loopback_only, Some(remote)));
        assert!(PROTECTED_MODE_DENIED.starts_with(b"-DENIED Redis is running in protected mode"));
    }
}
