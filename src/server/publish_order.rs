//! A connection's messages leave in its command order, whichever shard ran the command.
//!
//! Pub/sub promises that one connection's messages reach every subscriber in the order
//! it published them. Each shard's mailboxes are FIFO, but two shards' mailboxes to a
//! subscriber's shard are not ordered with each other. So every message a connection
//! publishes is sent from the connection's own shard:
//! - a plain PUBLISH from there in any case;
//! - a script or transaction run on another shard sends what it published back with its
//!   reply ([`super::ops::Msg::Reply`]'s `messages`), and the connection's shard sends it;
//! - a transaction coordinated here sends its messages from here.
//!
//! What a command published waits while a reply the connection owes from before it is
//! still out: that earlier command may be a script on another shard whose messages are
//! on their way back. Once the replies before it are in, it leaves, in slot order
//! ([`Server::flush_outgoing`] runs whenever one of the connection's replies completes).

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;
use coreshard_engine::{ConnId, Ctx, ReplySlot};

use super::ops::{Msg, Op, OpResult};
use super::reply::Agg;
use super::Server;
use crate::notify::Message;
use crate::pubsub::Ns;

/// What a command of the connection published.
#[derive(Debug)]
pub enum Outgoing {
    /// Messages a script or transaction published (for every shard's subscribers).
    Messages(Vec<Message>),
    /// A plain PUBLISH, answered into `slot`: its shards are looked up when it leaves (a
    /// subscription confirmed meanwhile gets it).
    Publish {
        slot: ReplySlot,
        ns: Ns,
        channel: Bytes,
        message: Bytes,
    },
}

/// A connection's published messages that wait for its earlier replies, and the replies
/// it owes that may bring messages back (scripts and transactions), by slot sequence.
/// Empty for almost every connection.
#[derive(Debug, Default)]
pub struct Outbound {
    /// By slot sequence; `held` until the work the connection queued on this shard before
    /// it has run (a PUBLISH goes after a pipelined write's keyspace event).
    waiting: VecDeque<Waiting>,
    owed: BTreeSet<u64>,
}

#[derive(Debug)]
struct Waiting {
    seq: u64,
    out: Outgoing,
    held: bool,
}

impl Outbound {
    /// The reply in slot `seq` may bring messages back (it runs a script or a
    /// transaction): what the connection publishes after it waits for it.
    pub fn expect(&mut self, seq: u64) {
        self.owed.insert(seq);
    }

    /// The reply in slot `seq` is in; whether it was one that could bring messages.
    fn done(&mut self, seq: u64) -> bool {
        self.owed.remove(&seq)
    }

    /// Whether something published in the command of slot `seq` must wait.
    pub fn blocks(&self, seq: u64) -> bool {
        !self.waiting.is_empty() || self.owed.first().is_some_and(|&o| o < seq)
    }

    /// Keep `out`, of the command in reply slot `seq`, in slot order.
    fn insert(&mut self, seq: u64, out: Outgoing, held: bool) {
        let at = self.waiting.partition_point(|w| w.seq <= seq);
        self.waiting.insert(at, Waiting { seq, out, held });
    }

    /// The item of slot `seq` is no longer held.
    fn release(&mut self, seq: u64) {
        let at = self.waiting.partition_point(|w| w.seq < seq);
        if let Some(w) = self.waiting.get_mut(at).filter(|w| w.seq == seq) {
            w.held = false;
        }
    }

    /// The first waiting item, unless it is held or a reply before it that may bring
    /// messages is owed.
    fn pop_ready(&mut self) -> Option<Outgoing> {
        let w = self.waiting.front()?;
        if w.held || self.owed.first().is_some_and(|&o| o < w.seq) {
            return None;
        }
        self.waiting.pop_front().map(|w| w.out)
    }

    /// Nothing waits and nothing is owed.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.owed.is_empty()
    }
}

impl Server {
    /// `conn`'s order: in its state, or kept after it closed while replies that may
    /// bring messages were still owed.
    fn with_outbound<R>(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        f: impl FnOnce(&mut Outbound) -> R,
    ) -> Option<R> {
        match ctx.state(conn) {
            Some(state) => Some(f(&mut state.outbound)),
            None => self.orphans.get_mut(&conn).map(f),
        }
    }

    /// A plain PUBLISH: now if nothing the connection published before waits, else
    /// behind it. The reply is how many clients got it.
    pub fn publish_plain(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        ns: Ns,
        channel: Bytes,
        message: Bytes,
    ) {
        // A shard running a script past lua-time-limit cannot answer: say so now.
        let mask = self.pubsub.targets(ns, &channel);
        let busy = crate::pubsub::shards_in(mask, self.shards)
            .filter(|&t| t != self.shard)
            .find_map(crate::script::busy_reply);
        if let Some(busy) = busy {
            return self.error(ctx, conn, busy);
        }
        let waits = ctx.state(conn).is_some_and(|s| !s.outbound.is_idle());
        // Work of the connection queued on this shard (a write whose keyspace event
        // comes first) runs before it: it waits for a turn of this shard's own mail.
        let local_ok = self.local_ok_for(ctx, conn);
        if !waits && local_ok {
            // Nothing to keep order with: now, to the shards just looked up.
            if mask == 0 {
                return self.reply(ctx, conn, |e| e.int(0));
            }
            let parts = crate::pubsub::shards_in(mask, self.shards).count() as u32;
            let Some(slot) = Self::reserve_reply(ctx, conn, parts, Agg::Sum(0)) else {
                return;
            };
            return self.send_publish(ctx, slot, ns, &channel, &message, mask);
        }
        // One part for now; `send_outgoing` sets how many once it knows the shards.
        let Some(slot) = Self::reserve_reply(ctx, conn, 1, Agg::Sum(0)) else {
            return;
        };
        let out = Outgoing::Publish {
            slot,
            ns,
            channel,
            message,
        };
        if local_ok {
            return self.publish_in_order(ctx, conn, Some(slot.seq()), out);
        }
        let seq = slot.seq();
        if let Some(state) = ctx.state(conn) {
            state.outbound.insert(seq, out, true);
        }
        ctx.run_on(self.shard, move |s: &mut Server, ctx: &mut Ctx<Server>| {
            s.with_outbound(ctx, conn, |o| o.release(seq));
            s.flush_outgoing(ctx, conn);
        });
    }

    /// Send what `conn` published in the command of reply slot `seq` once every reply
    /// owed from before it that may bring messages is in (now, if none is). With no
    /// slot, or a connection long gone, there is no order left to keep: now.
    pub fn publish_in_order(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        seq: Option<u64>,
        out: Outgoing,
    ) {
        let mut out = Some(out);
        if let Some(seq) = seq {
            self.with_outbound(ctx, conn, |o| {
                if o.blocks(seq) {
                    if let Some(out) = out.take() {
                        o.insert(seq, out, false);
                    }
                }
            });
        }
        match out {
            Some(out) => self.send_outgoing(ctx, out),
            None => self.flush_outgoing(ctx, conn),
        }
    }

    /// The reply in `slot` is complete (the connection may have closed): what waited
    /// for it may go.
    pub fn reply_done(&mut self, ctx: &mut Ctx<Server>, slot: ReplySlot) {
        let conn = slot.conn();
        if self.with_outbound(ctx, conn, |o| o.done(slot.seq())) == Some(true) {
            self.flush_outgoing(ctx, conn);
        }
    }

    /// `conn` closed: what it published still goes out in its order, once the replies
    /// it waits for are in.
    pub fn orphan_outbound(&mut self, ctx: &mut Ctx<Server>, conn: ConnId, o: Outbound) {
        if !o.is_idle() {
            self.orphans.insert(conn, o);
            self.flush_outgoing(ctx, conn);
        }
    }

    /// Send `conn`'s waiting messages that no owed reply holds back, in order.
    fn flush_outgoing(&mut self, ctx: &mut Ctx<Server>, conn: ConnId) {
        while let Some(out) = self.with_outbound(ctx, conn, Outbound::pop_ready).flatten() {
            self.send_outgoing(ctx, out);
        }
        if self.orphans.get(&conn).is_some_and(Outbound::is_idle) {
            self.orphans.remove(&conn);
        }
    }

    /// Send one item now.
    fn send_outgoing(&mut self, ctx: &mut Ctx<Server>, out: Outgoing) {
        match out {
            Outgoing::Messages(messages) => {
                for m in messages {
                    self.db.events.requeue(m);
                }
                self.send_messages(ctx);
            }
            Outgoing::Publish {
                slot,
                ns,
                channel,
                message,
            } => {
                // Behind the events of what ran here before it (the connection's write
                // it was held behind).
                self.send_events(ctx);
                let mask = self.pubsub.targets(ns, &channel);
                self.send_publish(ctx, slot, ns, &channel, &message, mask);
            }
        }
    }

    /// A PUBLISH's parts to the shards of `mask`, answered into `slot`.
    fn send_publish(
        &mut self,
        ctx: &mut Ctx<Server>,
        slot: ReplySlot,
        ns: Ns,
        channel: &Bytes,
        message: &Bytes,
        mask: crate::pubsub::ShardMask,
    ) {
        let targets: Vec<usize> = crate::pubsub::shards_in(mask, self.shards).collect();
        if targets.is_empty() {
            return self.complete_part(ctx, slot, 0, OpResult::Int(0));
        }
        if let Some(state) = ctx.state(slot.conn()) {
            state.pending.set_parts(slot.seq(), targets.len() as u32);
        }
        for (part, shard) in targets.into_iter().enumerate() {
            let part = part as u32;
            let op = Op::Publish {
                ns,
                channel: channel.clone(),
                message: message.clone(),
            };
            if shard == self.shard {
                self.run_part(ctx, shard, Some(slot), part, op);
            } else {
                // Behind the messages this shard holds for `shard` until the log has
                // them (under `appendfsync always`).
                let msg = Msg::Request {
                    slot: Some(slot),
                    part,
                    op,
                };
                self.send_behind_outbox(ctx, shard, msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(o: &Outbound) -> Vec<u64> {
        o.waiting.iter().map(|w| w.seq).collect()
    }

    #[test]
    fn items_leave_in_slot_order_once_no_earlier_script_reply_is_owed() {
        let mut o = Outbound::default();
        o.expect(2);
        o.expect(4);
        assert!(
            o.blocks(3) && !o.blocks(2),
            "only an earlier owed reply blocks"
        );
        o.insert(7, Outgoing::Messages(Vec::new()), false);
        o.insert(3, Outgoing::Messages(Vec::new()), true);
        o.insert(5, Outgoing::Messages(Vec::new()), false);
        assert_eq!(seqs(&o), [3, 5, 7]);
        assert!(o.blocks(9), "behind what waits");
        // Reply 2 is still owed: nothing leaves.
        assert!(o.pop_ready().is_none());
        assert!(o.done(2) && !o.done(2));
        // Item 3 is held until released.
        assert!(o.pop_ready().is_none());
        o.release(3);
        // Item 3 leaves; 5 waits for reply 4.
        assert!(o.pop_ready().is_some());
        assert!(o.pop_ready().is_none());
        assert!(o.done(4));
        assert!(o.pop_ready().is_some());
        assert!(o.pop_ready().is_some());
        assert!(o.is_idle() && o.pop_ready().is_none());
    }
}
