//! The Redis-protocol handler that runs on every shard: parse requests in place, run each
//! command on the shard that owns its keys, and keep replies in request order.

mod args;
mod conn;
pub mod ops;
pub mod reply;
pub mod txn;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coreshard_engine::{ConnId, Ctx, Handler, Input, ShardId, ShardInfo};
use coreshard_protocol::{parse_request, request_size_hint, Encoder, Protocol};

pub use args::ArgList;
pub use conn::ConnState;
use ops::{unix_ms, Msg, Op, OpResult};
use reply::{encode_result, Agg, ReplyQueue};
use txn::{Locks, Txn};

use crate::commands::{self, Spec};
use crate::config::ServerConfig;
use crate::db::Db;
use crate::routing::SlotTable;
use coreshard_engine::ttl::ValueRef;

/// GET replies at least this large are sent from the stored value without a copy.
const SHARED_REPLY_MIN: usize = 16 * 1024;

/// Timer cookie of the active-expiry tick.
const EXPIRE_TICK: u64 = 1;
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
}

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
    /// Randomness for RANDOMKEY.
    pub rng: Rng,
    locks: Locks,
    txns: hashbrown::HashMap<u64, Txn>,
    next_txn: u64,
    next_client: u64,
    /// The connection input being parsed, when shareable (large values keep slices of it).
    input: Option<bytes::Bytes>,
    expire_backlog: bool,
    expire_timer_armed: bool,
}

impl Server {
    /// A shard's server.
    pub fn new(info: ShardInfo, config: Arc<ServerConfig>, slots: Arc<SlotTable>) -> Self {
        let seed = unix_ms() ^ ((info.shard as u64 + 1) << 40) | 1;
        Server {
            shard: info.shard,
            shards: info.shards,
            config,
            slots,
            db: Db::default(),
            commands_processed: 0,
            rng: Rng(seed),
            locks: Locks::default(),
            txns: hashbrown::HashMap::new(),
            next_txn: 0,
            next_client: 0,
            input: None,
            expire_backlog: false,
            expire_timer_armed: false,
        }
    }

    /// Encode a reply for `conn`: straight into its output when nothing is owed before
    /// it, else queued behind the replies still waiting for other shards.
    pub fn reply(&self, ctx: &mut Ctx<Server>, conn: ConnId, f: impl FnOnce(&mut Encoder<'_>)) {
        Self::reply_to(ctx, conn, f);
    }

    /// [`Server::reply`] without borrowing the server (for replies that borrow its data).
    fn reply_to(ctx: &mut Ctx<Server>, conn: ConnId, f: impl FnOnce(&mut Encoder<'_>)) {
        let Some((state, out)) = ctx.state_and_output(conn) else {
            return;
        };
        if state.replies.is_empty() {
            f(&mut Encoder::new(out, state.proto));
        } else {
            let mut buf = Vec::new();
            f(&mut Encoder::new(&mut buf, state.proto));
            state.replies.push_ready(buf);
        }
    }

    /// Reply with an error (`msg` includes its code, e.g. `ERR ...`).
    pub fn error(&mut self, ctx: &mut Ctx<Server>, conn: ConnId, msg: &str) {
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
        if self.slots.shard_of(key) == self.shard && self.locks.is_clear() {
            let now = unix_ms();
            let in_order = ctx.state(conn).is_some_and(|s| s.replies.is_empty());
            match self.db.read(key, now) {
                // A large value goes to the socket straight from the store, no copy.
                Some(ValueRef::Shared(big)) if in_order && big.len() >= SHARED_REPLY_MIN => {
                    let big = big.clone();
                    if let Some((state, out)) = ctx.state_and_output(conn) {
                        Encoder::new(out, state.proto).bulk_header(big.len());
                    }
                    ctx.write_shared(conn, big);
                    ctx.write(conn, b"\r\n");
                }
                value => Self::reply_to(ctx, conn, |e| e.opt_bulk(value.map(|v| v.as_slice()))),
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
        for i in spec.key_positions(args.len()) {
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
        if owner == self.shard && self.locks.is_clear() {
            let local = args::Local {
                args,
                input: self.input.as_ref(),
            };
            let result = keyed(&mut self.db, unix_ms(), &local);
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
        let Some(state) = ctx.state(conn) else { return };
        let proto = state.proto;
        let seq = state.replies.reserve(proto, parts.len() as u32, agg);
        for (part, (shard, op)) in parts.into_iter().enumerate() {
            let part = part as u32;
            if shard == self.shard && self.locks.is_clear() {
                let result = self.apply(ctx, op);
                self.complete_part(ctx, conn, seq, part, result);
            } else {
                ctx.send(
                    shard,
                    Msg::Request {
                        conn,
                        seq,
                        part,
                        op: op.into_owned(),
                    },
                );
            }
        }
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

    /// Deliver a part's result to the shard whose connection asked for it.
    fn answer(
        &mut self,
        ctx: &mut Ctx<Server>,
        to: ShardId,
        conn: ConnId,
        seq: u64,
        part: u32,
        result: OpResult,
    ) {
        if to == self.shard {
            self.complete_part(ctx, conn, seq, part, result);
        } else {
            ctx.send(
                to,
                Msg::Reply {
                    conn,
                    seq,
                    part,
                    result,
                },
            );
        }
    }

    fn complete_part(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        seq: u64,
        part: u32,
        result: OpResult,
    ) {
        let Some(state) = ctx.state(conn) else { return };
        if let Some((proto, agg)) = state.replies.complete_part(seq, part, result) {
            let bytes = self.encode_agg(proto, agg);
            if let Some(state) = ctx.state(conn) {
                state.replies.fill(seq, bytes);
            }
        }
        if let Some((state, out)) = ctx.state_and_output(conn) {
            state.replies.drain_ready(out);
        }
    }

    fn encode_agg(&mut self, proto: Protocol, agg: Agg) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = Encoder::new(&mut out, proto);
        match agg {
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
        out
    }

    /// Active expiry: one bounded step; remembers whether due keys remain.
    fn expire_step(&mut self) {
        let step = self.db.expire_step(unix_ms(), EXPIRE_BUDGET);
        self.expire_backlog = step.more;
    }

    fn execute(&mut self, ctx: &mut Ctx<Server>, conn: ConnId, args: &[Cow<'_, [u8]>]) {
        let Some(spec) = commands::lookup(&args[0]) else {
            let msg = commands::unknown_command_error(args);
            self.error(ctx, conn, &msg);
            return;
        };
        let authed = ctx.state(conn).is_some_and(|s| s.authed);
        if !authed && !spec.no_auth {
            self.error(ctx, conn, "NOAUTH Authentication required.");
            return;
        }
        let n = args.len() as i32;
        if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
            let msg = format!("ERR wrong number of arguments for '{}' command", spec.name);
            self.error(ctx, conn, &msg);
            return;
        }
        if let Some(state) = ctx.state(conn) {
            state.last_cmd = spec.name;
        }
        self.commands_processed += 1;
        match spec.exec {
            Some(exec) => exec(self, ctx, conn, args),
            None => self.run_cmd(ctx, conn, spec, args),
        }
    }
}

/// `CLIENT LIST` lines for this shard's connections (or only `only`).
pub fn client_list_lines(ctx: &Ctx<Server>, only: Option<ConnId>) -> String {
    let now = ctx.now();
    let mut text = String::new();
    for (id, s, meta) in ctx.connections() {
        if only.is_some_and(|o| o != id) {
            continue;
        }
        let show = |b: &Option<bytes::Bytes>| {
            b.as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let addr = meta
            .peer
            .map(|a| a.to_string())
            .unwrap_or_else(|| "?".into());
        text.push_str(&format!(
            "id={} addr={} name={} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf={} obl={} cmd={} user=default resp={} lib-name={} lib-ver={}\n",
            s.id,
            addr,
            show(&s.name),
            now.saturating_duration_since(meta.created).as_secs(),
            now.saturating_duration_since(meta.last_active).as_secs(),
            meta.input_buffered,
            meta.output_buffered,
            s.last_cmd,
            if s.proto == Protocol::Resp3 { 3 } else { 2 },
            show(&s.lib_name),
            show(&s.lib_ver),
        ));
    }
    text
}

impl Handler for Server {
    type Conn = ConnState;
    type Msg = Msg;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        self.on_turn_end(ctx);
    }

    fn on_timer(&mut self, _ctx: &mut Ctx<Self>, cookie: u64) {
        if cookie == EXPIRE_TICK {
            self.expire_timer_armed = false;
            self.expire_step();
        }
    }

    fn on_turn_end(&mut self, ctx: &mut Ctx<Self>) {
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
    }

    fn on_open(
        &mut self,
        _ctx: &mut Ctx<Self>,
        _conn: ConnId,
        _peer: Option<SocketAddr>,
    ) -> ConnState {
        self.next_client += 1;
        ConnState {
            id: (self.next_client - 1) * self.shards as u64 + self.shard as u64 + 1,
            proto: Protocol::Resp2,
            authed: self.config.requirepass.is_none(),
            name: None,
            lib_name: None,
            lib_ver: None,
            last_cmd: "NULL",
            closing: false,
            replies: ReplyQueue::default(),
        }
    }

    fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, input: Input<'_>) -> usize {
        let data: &[u8] = &input;
        self.input = input.share(data);
        let limits = self.config.limits;
        let mut args = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            if ctx.state(conn).is_none_or(|s| s.closing) {
                pos = data.len();
                break;
            }
            match parse_request(&data[pos..], &limits, &mut args) {
                Ok(Some(n)) => {
                    pos += n;
                    if !args.is_empty() {
                        self.execute(ctx, conn, &args);
                    }
                }
                Ok(None) => {
                    // A large request arriving in pieces: have its buffer sized once.
                    if let Some(total) = request_size_hint(&data[pos..]) {
                        if total >= args::BIG_ARG {
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
        pos
    }

    fn on_message(&mut self, ctx: &mut Ctx<Self>, from: ShardId, msg: Msg) {
        match msg {
            Msg::Request {
                conn,
                seq,
                part,
                op,
            } => {
                if let Some(op) = self.defer_if_locked(from, conn, seq, part, op) {
                    let result = self.apply(ctx, op);
                    self.answer(ctx, from, conn, seq, part, result);
                }
            }
            Msg::Reply {
                conn,
                seq,
                part,
                result,
            } => self.complete_part(ctx, conn, seq, part, result),
            Msg::Lock { txn, keys } => self.on_lock(ctx, from, txn, keys),
            Msg::Locked { txn, entries } => self.on_locked(ctx, txn, entries),
            Msg::Commit { txn, writes } => self.on_commit(ctx, txn, writes),
        }
    }

    fn is_busy(&self, state: &ConnState) -> bool {
        state.replies.waiting()
    }

    fn rejection(&self) -> &[u8] {
        b"-ERR max number of clients reached\r\n"
    }
}
