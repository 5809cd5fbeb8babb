//! Replies wait for durability (`appendfsync always`): a reply, or a message carrying
//! data to another shard, that was produced after this shard journaled a record leaves
//! only once that record is on disk. Each connection's output is held until the shard's
//! LSN at reply time is durable (`Ctx::hold_output_until`); replies that saw nothing new
//! (the shard's last record already durable) pass at once. Messages that carry
//! observations (`Reply`, `Locked` with key entries) wait in an outbox, in order. The WAL thread's progress
//! wakes the shard (`RemoteWaker`), whose turn end releases what became durable.

use std::collections::VecDeque;

use coreshard_engine::{ConnId, Ctx, ShardId};

use super::ops::Msg;
use super::Server;

/// A shard's view of durability.
#[derive(Default)]
pub struct Durability {
    /// The log exists (persistence on); replies wait for it while `appendfsync` is
    /// `always` (CONFIG SET may change that at any time: see [`Server::holding`]).
    pub journaled: bool,
    /// The durable LSN already acted on.
    released: u64,
    /// Messages waiting for their LSN to be durable, in send order.
    outbox: VecDeque<(u64, ShardId, Msg)>,
    /// How many of them are pub/sub messages (`Msg::Notify`), per destination shard.
    notifies: hashbrown::HashMap<ShardId, usize>,
}

impl Durability {
    /// For a shard with a log (`journaled`) or without.
    pub fn new(journaled: bool) -> Self {
        Durability {
            journaled,
            ..Durability::default()
        }
    }
}

impl Server {
    /// Whether replies and observed messages wait for the log now (`appendfsync always`).
    #[inline]
    fn holding(&self) -> bool {
        self.durability.journaled && self.config.runtime.fsync_always()
    }

    /// The shard's durable LSN (everything, when nothing is journaled).
    fn durable(&self) -> u64 {
        self.db.journal.as_ref().map_or(u64::MAX, |j| j.durable())
    }

    /// Hold `conn`'s output until what this shard journaled so far is durable.
    pub fn gate_output(&mut self, ctx: &mut Ctx<Server>, conn: ConnId) {
        if !self.holding() || self.db.last_lsn <= self.durable() {
            return;
        }
        // Only replies that may show data wait; PING or INFO alone pass (later output
        // still queues behind anything already held).
        // The flag stays set while replies of this connection are still in flight (an
        // EXEC waiting for its locks): they are produced later and must be held then too.
        let in_flight = ctx.replies_owed(conn) > 0;
        let observed = ctx.state(conn).is_some_and(|s| {
            let observed = s.observed;
            if !in_flight {
                s.observed = false;
            }
            observed
        });
        if observed {
            ctx.hold_output_until(conn, self.db.last_lsn);
        }
    }

    /// Hold `conn`'s output (a pushed message telling of this shard's writes) until what
    /// this shard journaled so far is durable.
    pub fn gate_push(&mut self, ctx: &mut Ctx<Server>, conn: ConnId) {
        if self.holding() && self.db.last_lsn > self.durable() {
            ctx.hold_output_until(conn, self.db.last_lsn);
        }
    }

    /// Send a message that carries data this shard's state produced: it waits until that
    /// state is durable (and behind earlier waiting messages).
    pub fn send_observed(&mut self, ctx: &mut Ctx<Server>, to: ShardId, msg: Msg) {
        // Behind earlier waiting messages even when the policy stopped holding (order).
        let wait = !self.durability.outbox.is_empty()
            || (self.holding() && self.db.last_lsn > self.durable());
        if wait {
            let lsn = self.db.last_lsn;
            if matches!(msg, Msg::Notify { .. }) {
                *self.durability.notifies.entry(to).or_insert(0) += 1;
            }
            self.durability.outbox.push_back((lsn, to, msg));
        } else {
            ctx.send(to, msg);
        }
    }

    /// Send a PUBLISH part to `to` now, or, while pub/sub messages for `to` wait for the
    /// log, behind them (it must not overtake them; replies and lock grants waiting there
    /// carry no messages, and it does not wait for those).
    pub fn send_behind_outbox(&mut self, ctx: &mut Ctx<Server>, to: ShardId, msg: Msg) {
        let queued = self.durability.notifies.get(&to).is_some_and(|&n| n > 0);
        match self.durability.outbox.back() {
            Some(&(lsn, _, _)) if queued => self.durability.outbox.push_back((lsn, to, msg)),
            _ => ctx.send(to, msg),
        }
    }

    /// Hand this turn's records to the WAL thread and release what became durable.
    pub fn durability_turn(&mut self, ctx: &mut Ctx<Server>) {
        let Some(j) = self.db.journal.as_mut() else {
            return;
        };
        j.flush();
        let durable = j.durable();
        if durable <= self.durability.released {
            return;
        }
        self.durability.released = durable;
        ctx.release_output(durable);
        while let Some((lsn, _, _)) = self.durability.outbox.front() {
            if *lsn > durable {
                break;
            }
            if let Some((_, to, msg)) = self.durability.outbox.pop_front() {
                if matches!(msg, Msg::Notify { .. }) {
                    if let Some(n) = self.durability.notifies.get_mut(&to) {
                        *n = n.saturating_sub(1);
                    }
                }
                ctx.send(to, msg);
            }
        }
    }

    /// Whether the log advanced since the last turn (asked before the shard sleeps).
    pub fn durability_needs_turn(&self) -> bool {
        self.db
            .journal
            .as_ref()
            .is_some_and(|j| j.durable() > self.durability.released)
    }

    /// Why writes are refused (`MISCONF`), if the log cannot write.
    pub fn log_error(&self) -> Option<String> {
        self.db.journal.as_ref().and_then(|j| j.error())
    }
}
