//! Pub/sub: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, SSUBSCRIBE, SUNSUBSCRIBE,
//! PUBLISH, SPUBLISH, PUBSUB, RESET; delivery on each shard. Routing lives in
//! `crate::pubsub` (local subscribers and the interest replica).

use bytes::Bytes;
use coreshard_engine::{ConnId, Ctx, ShardId};
use coreshard_protocol::{Encoder, Protocol};

use super::{unknown_subcommand_error, Args};
use crate::pubsub::{Joined, Ns};
use crate::server::ops::{Msg, Op, OpResult};
use crate::server::reply::Agg;
use crate::server::Server;

fn kind_words(ns: Ns) -> (&'static str, &'static str) {
    match ns {
        Ns::Channel => ("subscribe", "unsubscribe"),
        Ns::Pattern => ("psubscribe", "punsubscribe"),
        Ns::Shard => ("ssubscribe", "sunsubscribe"),
    }
}

/// One `[kind, name, count]` frame: a push in RESP3, an array in RESP2.
fn frame(out: &mut Vec<u8>, proto: Protocol, kind: &str, name: Option<&[u8]>, count: usize) {
    let mut e = Encoder::new(out, proto);
    match proto {
        Protocol::Resp3 => e.push(3),
        Protocol::Resp2 => e.array(3),
    }
    e.bulk(kind.as_bytes());
    e.opt_bulk(name);
    e.int(count as i64);
}

pub fn subscribe(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    join(s, ctx, conn, args, Ns::Channel);
}

pub fn psubscribe(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    join(s, ctx, conn, args, Ns::Pattern);
}

pub fn ssubscribe(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    join(s, ctx, conn, args, Ns::Shard);
}

pub fn unsubscribe(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    leave(s, ctx, conn, args, Ns::Channel);
}

pub fn punsubscribe(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    leave(s, ctx, conn, args, Ns::Pattern);
}

pub fn sunsubscribe(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    leave(s, ctx, conn, args, Ns::Shard);
}

/// Subscribe; the confirmation frames leave once every announcement they depend on was
/// acknowledged by every shard.
fn join(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args, ns: Ns) {
    let others = s.shards.saturating_sub(1);
    let me = s.shard;
    let Some(state) = ctx.state(conn) else { return };
    let proto = state.proto;
    let subs = state.subs.get_or_insert_with(Default::default);
    let mut frames = Vec::new();
    let mut waits: hashbrown::HashSet<u64> = hashbrown::HashSet::new();
    let mut announce: Vec<(Bytes, u64)> = Vec::new();
    for name in &args[1..] {
        let name = Bytes::copy_from_slice(name);
        if subs.of(ns).insert(name.clone()) {
            match s.pubsub.join(me, ns, &name, conn, others) {
                Joined::Ready => {}
                Joined::Wait { id, new } => {
                    waits.insert(id);
                    if new {
                        announce.push((name.clone(), id));
                    }
                }
            }
        }
        frame(
            &mut frames,
            proto,
            kind_words(ns).0,
            Some(&name),
            subs.count(ns),
        );
    }
    for (name, id) in announce {
        for to in (0..s.shards).filter(|&t| t != me) {
            let msg = Msg::Interest {
                ns,
                name: name.clone(),
                on: true,
                announce: Some(id),
            };
            ctx.send(to, msg);
        }
    }
    if waits.is_empty() {
        return s.reply(ctx, conn, |e| e.raw(&frames));
    }
    let Some(slot) = Server::reserve_reply(ctx, conn, waits.len() as u32, Agg::Raw(frames)) else {
        return;
    };
    for id in waits {
        if let Some(a) = s.pubsub.announcing.get_mut(&id) {
            a.waiters.push(slot);
        }
    }
    if proto == Protocol::Resp3 {
        // A RESP3 client may pipeline any command behind it: a PUBLISH to the channel,
        // then an UNSUBSCRIBE or RESET. They run once the subscription is confirmed, in
        // order (the confirmation's completion releases the input).
        s.hold_until_answered(ctx, conn);
        if let Some(state) = ctx.state(conn) {
            state.confirm_hold = Some(slot.seq());
        }
    }
}

/// Unsubscribe from `args` (none: from everything of that kind).
fn leave(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args, ns: Ns) {
    let Some(state) = ctx.state(conn) else { return };
    let proto = state.proto;
    let mut frames = Vec::new();
    let names: Vec<Bytes> = if args.len() > 1 {
        args[1..]
            .iter()
            .map(|a| Bytes::copy_from_slice(a))
            .collect()
    } else {
        state
            .subs
            .as_mut()
            .map(|subs| subs.of(ns).iter().cloned().collect())
            .unwrap_or_default()
    };
    let kind = kind_words(ns).1;
    if names.is_empty() {
        let count = state.subs.as_ref().map_or(0, |subs| subs.count(ns));
        frame(&mut frames, proto, kind, None, count);
    }
    let mut lost = Vec::new();
    for name in names {
        let removed = state
            .subs
            .as_mut()
            .is_some_and(|subs| subs.of(ns).remove(&name));
        if removed && s.pubsub.leave(s.shard, ns, &name, conn) {
            lost.push(name.clone());
        }
        let count = state.subs.as_ref().map_or(0, |subs| subs.count(ns));
        frame(&mut frames, proto, kind, Some(&name), count);
    }
    if state.subs.as_ref().is_some_and(|subs| subs.is_empty()) {
        state.subs = None;
    }
    for name in lost {
        s.tell_lost_interest(ctx, ns, name);
    }
    s.reply(ctx, conn, |e| e.raw(&frames));
}

pub fn publish(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    send(s, ctx, conn, args, Ns::Channel);
}

pub fn spublish(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    send(s, ctx, conn, args, Ns::Shard);
}

/// PUBLISH: one part per shard with interest; the reply is how many clients got it.
fn send(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args, ns: Ns) {
    // Events and messages raised before it (a pipelined SET's keyspace event) go first.
    s.send_events(ctx);
    let channel = Bytes::copy_from_slice(&args[1]);
    let message = s.arg_bytes(&args[2]);
    s.publish_plain(ctx, conn, ns, channel, message);
}

pub fn pubsub(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let sub = args[1].to_ascii_lowercase();
    let arity_err = |s: &mut Server, ctx: &mut Ctx<Server>| {
        let msg = super::subcommand_syntax_error(&args[1], "pubsub");
        s.error(ctx, conn, &msg);
    };
    match sub.as_slice() {
        b"channels" | b"shardchannels" => {
            if args.len() > 3 {
                return arity_err(s, ctx);
            }
            let ns = if sub == b"channels" {
                Ns::Channel
            } else {
                Ns::Shard
            };
            let pattern = args.get(2).map(|p| Bytes::copy_from_slice(p));
            s.broadcast(
                ctx,
                conn,
                || Op::PubsubNames {
                    ns,
                    pattern: pattern.clone(),
                },
                Agg::Unique {
                    names: Vec::new(),
                    seen: Default::default(),
                    count_only: false,
                },
            );
        }
        b"numpat" => {
            if args.len() != 2 {
                return s.error(
                    ctx,
                    conn,
                    "ERR wrong number of arguments for 'pubsub|numpat' command",
                );
            }
            s.broadcast(
                ctx,
                conn,
                || Op::PubsubNames {
                    ns: Ns::Pattern,
                    pattern: None,
                },
                Agg::Unique {
                    names: Vec::new(),
                    seen: Default::default(),
                    count_only: true,
                },
            );
        }
        b"numsub" | b"shardnumsub" => {
            let ns = if sub == b"numsub" {
                Ns::Channel
            } else {
                Ns::Shard
            };
            let names: Vec<Bytes> = args[2..]
                .iter()
                .map(|a| Bytes::copy_from_slice(a))
                .collect();
            let counts = vec![0; names.len()];
            let agg = Agg::NumSub {
                names: names.clone(),
                counts,
            };
            s.broadcast(
                ctx,
                conn,
                || Op::PubsubCounts {
                    ns,
                    names: names.clone(),
                },
                agg,
            );
        }
        b"help" if args.len() > 2 => {
            let e = super::subcommand_arity_error("pubsub", "help");
            s.reply_result(ctx, conn, &e);
        }
        b"help" => {
            let lines = [
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "SHARDCHANNELS [<pattern>]",
                "    Return the currently active shard level channels matching a <pattern> (default: '*').",
                "SHARDNUMSUB [<shardchannel> ...]",
                "    Return the number of subscribers for the specified shard level channel(s)",
                "HELP",
                "    Prints this help.",
            ];
            s.reply(ctx, conn, |e| {
                e.array(lines.len());
                lines.iter().for_each(|l| e.simple(l));
            });
        }
        _ => {
            let msg = unknown_subcommand_error(&args[1], "pubsub");
            s.error(ctx, conn, &msg);
        }
    }
}

/// RESET: back to a fresh connection's state (no subscriptions, no transaction, no
/// watches, RESP2, no name; authenticated only if no password is set).
pub fn reset(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, _args: Args) {
    s.drop_subscriptions(ctx, conn);
    s.unwatch_all(ctx, conn);
    let needs_auth = s.config.runtime.has_password();
    if let Some(state) = ctx.state(conn) {
        state.multi = None;
        state.proto = Protocol::Resp2;
        state.name = None;
        if needs_auth {
            state.authed = false;
        }
    }
    s.reply(ctx, conn, |e| e.simple("RESET"));
}

/// Redis's error for a command a RESP2 connection with subscriptions may not run.
pub fn subscribed_context_error(name: &str) -> String {
    format!(
        "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    )
}

/// Commands a RESP2 connection with subscriptions may run.
pub fn allowed_while_subscribed(name: &str) -> bool {
    matches!(
        name,
        "subscribe"
            | "unsubscribe"
            | "psubscribe"
            | "punsubscribe"
            | "ssubscribe"
            | "sunsubscribe"
            | "ping"
            | "quit"
            | "reset"
    )
}

impl Server {
    /// Tell every other shard this shard has no subscriber of `name` any more.
    pub fn tell_lost_interest(&mut self, ctx: &mut Ctx<Server>, ns: Ns, name: Bytes) {
        for to in (0..self.shards).filter(|&t| t != self.shard) {
            let msg = Msg::Interest {
                ns,
                name: name.clone(),
                on: false,
                announce: None,
            };
            ctx.send(to, msg);
        }
    }

    /// Drop every subscription of `conn` (RESET, close).
    pub fn drop_subscriptions(&mut self, ctx: &mut Ctx<Server>, conn: ConnId) {
        let Some(subs) = ctx.state(conn).and_then(|st| st.subs.take()) else {
            return;
        };
        self.forget_subs(ctx, conn, &subs);
    }

    /// Remove `conn` from the local tables for everything in `subs`.
    pub fn forget_subs(&mut self, ctx: &mut Ctx<Server>, conn: ConnId, subs: &crate::pubsub::Subs) {
        for (ns, set) in [
            (Ns::Channel, &subs.channels),
            (Ns::Pattern, &subs.patterns),
            (Ns::Shard, &subs.shard),
        ] {
            for name in set {
                if self.pubsub.leave(self.shard, ns, name, conn) {
                    self.tell_lost_interest(ctx, ns, name.clone());
                }
            }
        }
    }

    /// Another shard gained or lost interest; acknowledge an announcement.
    pub fn on_interest(
        &mut self,
        ctx: &mut Ctx<Server>,
        from: ShardId,
        ns: Ns,
        name: Bytes,
        on: bool,
        announce: Option<u64>,
    ) {
        self.pubsub.set_interest(ns, &name, from, on);
        if let Some(id) = announce {
            ctx.send(from, Msg::InterestAck { id });
        }
    }

    /// Every shard knows about an announced subscription: confirm the waiting SUBSCRIBEs.
    pub fn on_interest_ack(&mut self, ctx: &mut Ctx<Server>, id: u64) {
        if let Some(waiters) = self.pubsub.acked(id) {
            for slot in waiters {
                self.complete_part(ctx, slot, 0, OpResult::Ok);
            }
        }
    }

    /// Deliver a message to this shard's subscribers (channel, then matching patterns);
    /// each frame is encoded once per protocol. Returns how many received it.
    pub fn deliver(
        &mut self,
        ctx: &mut Ctx<Server>,
        ns: Ns,
        channel: &[u8],
        message: &[u8],
        observed: Observed,
    ) -> i64 {
        let kind: &[u8] = if ns == Ns::Shard {
            b"smessage"
        } else {
            b"message"
        };
        let mut cache: [Option<Vec<u8>>; 2] = [None, None];
        let direct: Vec<ConnId> = self.pubsub.subscribers(ns, channel).collect();
        let mut n = 0;
        for conn in direct {
            let encode = |proto| message_frame(proto, kind, None, channel, message);
            n += i64::from(self.push_to(ctx, conn, &mut cache, encode, observed));
        }
        if ns == Ns::Channel {
            let matches: Vec<(Bytes, Vec<ConnId>)> = self
                .pubsub
                .matching_patterns(channel)
                .map(|(p, subs)| (p.clone(), subs.iter().copied().collect()))
                .collect();
            for (pattern, conns) in matches {
                let mut cache: [Option<Vec<u8>>; 2] = [None, None];
                for conn in conns {
                    let encode =
                        |proto| message_frame(proto, b"pmessage", Some(&pattern), channel, message);
                    n += i64::from(self.push_to(ctx, conn, &mut cache, encode, observed));
                }
            }
        }
        n
    }

    /// Write a pushed frame to `conn` (behind replies it still owes, so a confirmation
    /// always precedes the messages it announces), then apply the pubsub output limit.
    fn push_to(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        cache: &mut [Option<Vec<u8>>; 2],
        encode: impl Fn(Protocol) -> Vec<u8>,
        observed: Observed,
    ) -> bool {
        let Some(state) = ctx.state(conn) else {
            return false;
        };
        let proto = state.proto;
        let slot = usize::from(proto == Protocol::Resp3);
        let bytes = cache[slot].get_or_insert_with(|| encode(proto));
        ctx.write(conn, bytes);
        if observed == Observed::Here {
            self.gate_push(ctx, conn);
        }
        self.over_pubsub_limit(ctx, conn);
        true
    }
}

/// Whether a delivered message comes from this shard's writes (a keyspace event, or a
/// message a transaction or script published): under `appendfsync always` it then leaves
/// only once they are durable, like a reply that read them (so nobody hears of a
/// transaction a crash may still undo). A plain PUBLISH, or a message another shard sent
/// once durable, shows nothing of this shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Of this shard's state.
    Here,
    /// Of nothing here.
    Nothing,
}

fn message_frame(
    proto: Protocol,
    kind: &[u8],
    pattern: Option<&[u8]>,
    channel: &[u8],
    message: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + channel.len() + 48);
    let mut e = Encoder::new(&mut out, proto);
    let n = if pattern.is_some() { 4 } else { 3 };
    match proto {
        Protocol::Resp3 => e.push(n),
        Protocol::Resp2 => e.array(n),
    }
    e.bulk(kind);
    if let Some(p) = pattern {
        e.bulk(p);
    }
    e.bulk(channel);
    e.bulk(message);
    out
}

impl Server {
    /// Publish the keyspace notifications this turn's mutations collected, and the
    /// messages transactions and scripts published, in the order they were raised.
    pub fn publish_events(&mut self, ctx: &mut Ctx<Server>) {
        use crate::notify::{EXPIRED, KEYEVENT, KEYSPACE};
        let flags = crate::notify::flags();
        let expired_wanted = flags & EXPIRED != 0 && flags & (KEYSPACE | KEYEVENT) != 0;
        self.db.collect_expired(expired_wanted);
        if expired_wanted {
            for key in self.db.take_expired() {
                self.db.events.push_event("expired", key);
            }
        }
        if self.db.events.pending.is_empty() && self.db.events.messages.is_empty() {
            return;
        }
        let mut messages = std::mem::take(&mut self.db.events.messages)
            .into_iter()
            .peekable();
        let pending = std::mem::take(&mut self.db.events.pending);
        for (i, (event, key)) in pending.into_iter().enumerate() {
            while let Some(m) = messages.next_if(|m| m.at <= i) {
                self.notify_message(ctx, m);
            }
            if flags & crate::notify::KEYSPACE != 0 {
                let mut ch = b"__keyspace@0__:".to_vec();
                ch.extend_from_slice(&key);
                let event = Bytes::from_static(event.as_bytes());
                self.notify(ctx, Ns::Channel, Bytes::from(ch), event, false);
            }
            if flags & crate::notify::KEYEVENT != 0 {
                let ch = format!("__keyevent@0__:{event}");
                self.notify(ctx, Ns::Channel, Bytes::from(ch), key.clone(), false);
            }
        }
        for m in messages {
            self.notify_message(ctx, m);
        }
    }

    fn notify_message(&mut self, ctx: &mut Ctx<Server>, m: crate::notify::Message) {
        self.notify(ctx, m.ns, m.channel, m.message, m.overflow);
    }

    /// Send what a transaction or script just PUBLISHed (with the events raised before
    /// it) now, before the connection's next command: a plain PUBLISH after it, on this
    /// shard, must not overtake it.
    pub fn send_messages(&mut self, ctx: &mut Ctx<Server>) {
        if !self.db.events.messages.is_empty() {
            self.publish_events(ctx);
        }
    }

    /// Send the events and messages collected so far now (before a PUBLISH, which must
    /// not overtake them).
    pub fn send_events(&mut self, ctx: &mut Ctx<Server>) {
        if !self.db.events.pending.is_empty() || !self.db.events.messages.is_empty() {
            self.publish_events(ctx);
        }
    }

    /// Publish `message` on `channel` from this shard, without a reply; it shows this
    /// shard's writes (a keyspace event, or a script's or transaction's message). With
    /// `overflow`, drop `channel`'s receivers instead (see [`crate::notify::Message`]).
    fn notify(
        &mut self,
        ctx: &mut Ctx<Server>,
        ns: Ns,
        channel: Bytes,
        message: Bytes,
        overflow: bool,
    ) {
        let mask = self.pubsub.targets(ns, &channel);
        for t in crate::pubsub::shards_in(mask, self.shards) {
            if t == self.shard {
                self.on_notify(ctx, ns, &channel, &message, overflow, Observed::Here);
            } else {
                let msg = Msg::Notify {
                    ns,
                    channel: channel.clone(),
                    message: message.clone(),
                    overflow,
                };
                self.send_observed(ctx, t, msg);
            }
        }
    }

    /// A keyspace event or a script's or transaction's message (or overflow mark) for
    /// this shard's subscribers.
    pub fn on_notify(
        &mut self,
        ctx: &mut Ctx<Server>,
        ns: Ns,
        channel: &[u8],
        message: &[u8],
        overflow: bool,
        observed: Observed,
    ) {
        if !overflow {
            self.deliver(ctx, ns, channel, message, observed);
            return;
        }
        // Every receiver a script sent more than the pubsub output limit: as if its
        // output had passed the limit (`notify::bound`).
        let mut conns: Vec<ConnId> = self.pubsub.subscribers(ns, channel).collect();
        if ns == Ns::Channel {
            for (_, subs) in self.pubsub.matching_patterns(channel) {
                conns.extend(subs.iter().copied());
            }
        }
        for conn in conns {
            self.drop_over_output_limit(ctx, conn, "more than the pubsub limit from one script");
        }
    }
}
