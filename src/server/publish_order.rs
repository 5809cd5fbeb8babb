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

use std::collections::VecDeque;

use bytes::Bytes;
use coreshard_engine::{ConnId, Ctx, ReplySlot, ShardId};

use super::ops::{Msg, Op};
use super::Server;
use crate::notify::Message;

/// What a command of the connection published.
#[derive(Debug)]
pub enum Outgoing {
    /// Messages a script or transaction published (for every shard's subscribers).
    Messages(Vec<Message>),
    /// A PUBLISH's parts, one per shard with interest; answered into `slot`.
    Publish {
        slot: ReplySlot,
        parts: Vec<(ShardId, Op<Bytes>)>,
    },
}

/// A connection's published messages that wait for its earlier replies, by reply slot
/// sequence (empty for almost every connection).
#[derive(Debug, Default)]
pub struct Outbound {
    waiting: VecDeque<(u64, Outgoing)>,
}

impl Outbound {
    /// Keep `out`, of the command in reply slot `seq`, in slot order.
    fn insert(&mut self, seq: u64, out: Outgoing) {
        let at = self.waiting.partition_point(|(s, _)| *s <= seq);
        self.waiting.insert(at, (seq, out));
    }

    /// The first waiting item, if no reply before it is still owed (`oldest` is the
    /// connection's oldest reply still waiting for parts).
    fn pop_ready(&mut self, oldest: Option<u64>) -> Option<Outgoing> {
        let &(seq, _) = self.waiting.front()?;
        if oldest.is_some_and(|o| o < seq) {
            return None;
        }
        self.waiting.pop_front().map(|(_, out)| out)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Everything waiting, in order (the connection closed).
    pub fn take_all(&mut self) -> impl Iterator<Item = Outgoing> {
        std::mem::take(&mut self.waiting)
            .into_iter()
            .map(|(_, o)| o)
    }
}

impl Server {
    /// Send what `conn` published in the command of reply slot `seq` once every reply
    /// the connection owes from before it is in (now, if none is). With no slot or no
    /// connection (it closed) there is no order left to keep: now.
    pub fn publish_in_order(
        &mut self,
        ctx: &mut Ctx<Server>,
        conn: ConnId,
        seq: Option<u64>,
        out: Outgoing,
    ) {
        let Some((seq, state)) = seq.zip(ctx.state(conn)) else {
            return self.send_outgoing(ctx, out);
        };
        let earlier_owed = state.pending.oldest().is_some_and(|o| o < seq);
        if !earlier_owed && state.outbound.is_empty() {
            return self.send_outgoing(ctx, out);
        }
        state.outbound.insert(seq, out);
        self.flush_outgoing(ctx, conn);
    }

    /// Send `conn`'s waiting messages that no earlier owed reply holds back, in order.
    pub fn flush_outgoing(&mut self, ctx: &mut Ctx<Server>, conn: ConnId) {
        loop {
            let Some(state) = ctx.state(conn) else { return };
            let oldest = state.pending.oldest();
            let Some(out) = state.outbound.pop_ready(oldest) else {
                return;
            };
            self.send_outgoing(ctx, out);
        }
    }

    /// Send one item now.
    pub fn send_outgoing(&mut self, ctx: &mut Ctx<Server>, out: Outgoing) {
        match out {
            Outgoing::Messages(messages) => {
                for m in messages {
                    self.db.events.publish(m.ns, m.channel, m.message);
                }
                self.send_messages(ctx);
            }
            Outgoing::Publish { slot, parts } => {
                for (part, (shard, op)) in parts.into_iter().enumerate() {
                    let part = part as u32;
                    if shard == self.shard {
                        self.run_part(ctx, shard, Some(slot), part, op);
                    } else {
                        // Behind the messages this shard holds for `shard` until the log
                        // has them (under `appendfsync always`).
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(o: &Outbound) -> Vec<u64> {
        o.waiting.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn items_leave_in_slot_order_once_no_earlier_reply_is_owed() {
        let mut o = Outbound::default();
        o.insert(7, Outgoing::Messages(Vec::new()));
        o.insert(3, Outgoing::Messages(Vec::new()));
        o.insert(5, Outgoing::Messages(Vec::new()));
        assert_eq!(seqs(&o), [3, 5, 7]);
        // Reply 2 is still owed: nothing leaves.
        assert!(o.pop_ready(Some(2)).is_none());
        // The oldest owed reply is item 3's own: it leaves, 5 waits for reply 4.
        assert!(o.pop_ready(Some(3)).is_some());
        assert!(o.pop_ready(Some(4)).is_none());
        assert!(o.pop_ready(None).is_some());
        assert!(o.pop_ready(None).is_some());
        assert!(o.is_empty() && o.pop_ready(None).is_none());
    }
}
