//! The Redis-protocol handler that runs on every shard: parse requests in place, run each
//! command on the shard that owns its keys, and keep replies in request order.

mod conn;
pub mod ops;
pub mod reply;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use coreshard_engine::{ConnId, Ctx, Handler, ShardId, ShardInfo};
use coreshard_protocol::{parse_request, Encoder, Protocol};

pub use conn::ConnState;
use ops::{Msg, Op, OpResult};
use reply::{encode_result, Agg, ReplyQueue};

use crate::commands;
use crate::config::ServerConfig;
use crate::routing::SlotTable;
use crate::store::Store;

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
    pub store: Store,
    /// Commands run by this shard's connections.
    pub commands_processed: u64,
    next_client: u64,
}

impl Server {
    /// A shard's server.
    pub fn new(info: ShardInfo, config: Arc<ServerConfig>, slots: Arc<SlotTable>) -> Self {
        Server {
            shard: info.shard,
            shards: info.shards,
            config,
            slots,
            store: Store::default(),
            commands_processed: 0,
            next_client: 0,
        }
    }

    /// Encode a reply for `conn`: straight into its output when nothing is owed before
    /// it, else queued behind the replies still waiting for other shards.
    pub fn reply(&self, ctx: &mut Ctx<Server>, conn: ConnId, f: impl FnOnce(&mut Encoder<'_>)) {
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

    /// Run a single-key operation on the shard that owns `key`.
    pub fn run_keyed(&mut self, ctx: &mut Ctx<Server>, conn: ConnId, key: &[u8], op: Op<&[u8]>) {
        let owner = self.slots.shard_of(key);
        if owner == self.shard {
            if let Op::Get(k) = op {
                // The hottest path: encode straight from the stored value.
                let value = self.store.peek(k);
                let hit = value.is_some();
                self.reply(ctx, conn, |e| e.opt_bulk(value.map(|v| &v[..])));
                self.store.count_read(hit);
                return;
            }
            let result = self.apply(ctx, op);
            self.reply(ctx, conn, |e| encode_result(e, &result));
        } else {
            self.run_parts(ctx, conn, vec![(owner, op)], Agg::Single(None));
        }
    }

    /// Run a command split into per-shard parts; the reply is `agg` once all answered.
    /// Local parts run now; remote ones travel in this turn's batch to their shard.
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
            if shard == self.shard {
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

    fn encode_agg(&self, proto: Protocol, agg: Agg) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = Encoder::new(&mut out, proto);
        match agg {
            Agg::Single(Some(r)) => encode_result(&mut e, &r),
            Agg::Single(None) => e.error("ERR internal: missing result"),
            Agg::Sum(n) => e.int(n),
            Agg::AllOk => e.simple("OK"),
            Agg::MGet { values, .. } => {
                e.array(values.len());
                for v in &values {
                    e.opt_bulk(v.as_deref());
                }
            }
            Agg::Info { sections, reports } => {
                let text = commands::admin::format_info(self, &sections, &reports);
                e.verbatim(b"txt", text.as_bytes());
            }
            Agg::ClientList(text) => e.verbatim(b"txt", text.as_bytes()),
        }
        out
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
        (spec.exec)(self, ctx, conn, args);
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

    fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: &[u8]) -> usize {
        let limits = self.config.limits;
        let mut args = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            if ctx.state(conn).is_none_or(|s| s.closing) {
                return data.len();
            }
            match parse_request(&data[pos..], &limits, &mut args) {
                Ok(Some(n)) => {
                    pos += n;
                    if !args.is_empty() {
                        self.execute(ctx, conn, &args);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Redis answers a protocol error and closes only this connection.
                    self.error(ctx, conn, &format!("ERR {e}"));
                    if let Some(s) = ctx.state(conn) {
                        s.closing = true;
                    }
                    ctx.close(conn);
                    return data.len();
                }
            }
        }
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
                let result = self.apply(ctx, op);
                ctx.send(
                    from,
                    Msg::Reply {
                        conn,
                        seq,
                        part,
                        result,
                    },
                );
            }
            Msg::Reply {
                conn,
                seq,
                part,
                result,
            } => self.complete_part(ctx, conn, seq, part, result),
        }
    }

    fn is_busy(&self, state: &ConnState) -> bool {
        state.replies.waiting()
    }

    fn rejection(&self) -> &[u8] {
        b"-ERR max number of clients reached\r\n"
    }
}
