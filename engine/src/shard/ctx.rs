//! The per-shard context a [`Handler`] works through: its connections' output and reply
//! order, calls and messages to other shards, timers and statistics.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use slab::Slab;

use super::conn::Conn;
use crate::handler::{ConnId, Handler, ShardId};
use crate::mailbox::Mailboxes;
use crate::route::{shard_of_hash, DefaultKeyHash, KeyHash};
use crate::runtime::Shared;
use crate::sys::{BufRing, Chunk, Cqe, Kind, Ring, SendDone, Token};

/// Counters a shard keeps about its connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Connections accepted (including rejected ones).
    pub accepted: u64,
    /// Connections refused because `max_connections` was reached.
    pub rejected: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Receives that ran out of provided buffers (ENOBUFS) and were re-armed.
    pub recv_buffer_exhausted: u64,
    /// Direct receives into a connection's own buffer (the rest of a large request).
    pub direct_recvs: u64,
    /// Calls into the kernel to submit and wait (`io_uring_enter`), one per loop turn.
    pub enters: u64,
    /// Completions handled (all kinds: receives, sends, accepts, timers, wakes).
    pub completions: u64,
    /// Messages (and remote jobs and slot fills) received from shards, this one included.
    pub messages_in: u64,
    /// Zero-copy send operations ([`crate::EngineConfig::send_zc_min`]).
    pub zc_sends: u64,
    /// Zero-copy sends whose data the kernel copied anyway (loopback does; Linux 6.2+
    /// reports it, older kernels count 0).
    pub zc_copied: u64,
}

/// Facts about one connection, for listings such as `CLIENT LIST`.
#[derive(Debug, Clone, Copy)]
pub struct ConnMeta {
    /// The peer's address, when the OS reported it.
    pub peer: Option<SocketAddr>,
    /// The connection's own address (its listener's, with the actual local IP when the
    /// listener is bound to a wildcard), for accepted connections.
    pub local: Option<SocketAddr>,
    /// Which listener accepted it: 0 for [`crate::EngineConfig::listen`], `1 + i` for
    /// [`crate::EngineConfig::extra_listen`]`[i]`; `None` for an outgoing connection.
    /// Already set when [`crate::Handler::on_open`] runs.
    pub listener: Option<usize>,
    /// When it was accepted.
    pub created: Instant,
    /// When bytes last arrived.
    pub last_active: Instant,
    /// Bytes buffered as an incomplete request.
    pub input_buffered: usize,
    /// Bytes waiting to be sent.
    pub output_buffered: usize,
    /// Reply slots reserved and not yet released ([`Ctx::reserve_slot`]).
    pub replies_owed: usize,
}

/// A reserved position in one connection's reply order ([`Ctx::reserve_slot`]).
///
/// Everything written to the connection after the slot was reserved (by [`Ctx::write`],
/// [`Ctx::state_and_output`], other slots) waits behind it until it is filled with
/// [`Ctx::fill_slot`], on any shard: a slot is `Send` and small, so it can travel inside a
/// message to the shard that computes the answer. Fill every slot exactly once; a slot
/// never filled holds the connection's later replies (and its graceful close) forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use = "a reserved slot holds back every later reply of its connection until filled"]
pub struct ReplySlot {
    shard: ShardId,
    conn: ConnId,
    seq: u64,
}

impl ReplySlot {
    /// The shard the connection lives on.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// The connection whose reply this is.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// The slot's position in its connection's order (increasing from 0).
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// Work sent to run on another shard's handler ([`Ctx::run_on`]).
pub(crate) type Job<H> = Box<dyn FnOnce(&mut H, &mut Ctx<H>) + Send>;

/// What travels between shards: the handler's messages and the engine's own calls and
/// answers.
pub(crate) enum Envelope<H: Handler> {
    /// [`Ctx::send`]: delivered to [`Handler::on_message`].
    Msg(H::Msg),
    /// [`Ctx::run_on`] / [`Ctx::call`]: run with the receiving shard's handler.
    Run(Job<H>),
    /// [`Ctx::fill_slot`] for a connection of the receiving shard.
    Fill { slot: ReplySlot, answer: Vec<u8> },
}

/// Handle to a timer armed with [`Ctx::set_timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerId {
    slot: u32,
    generation: u32,
}

/// A shard's context. Everything here is local to the shard's thread.
pub struct Ctx<H: Handler> {
    pub(crate) shard: ShardId,
    pub(crate) shards: usize,
    pub(crate) conns: Slab<Conn<H::Conn>>,
    pub(crate) dirty: Vec<u32>,
    pub(crate) ring: Ring,
    pub(crate) mail: Mailboxes<Envelope<H>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) now: Instant,
    pub(crate) stats: ShardStats,
    pub(crate) timer_generation: u32,
    pub(crate) run_again: bool,
    pub(crate) next_generation: u32,
    pub(crate) output_pause_bytes: usize,
    pub(crate) max_owed_replies: usize,
    /// Output held until this tag is released ([`Ctx::release_output`]).
    pub(crate) released: u64,
    /// Connections whose output is held.
    pub(crate) held: Vec<u32>,
    /// Connections whose input was resumed this turn: their kept input is delivered and
    /// their receive re-armed before the turn ends.
    pub(crate) resumed: Vec<ConnId>,
    /// Idle connections are closed after this long ([`Ctx::set_idle_timeout`]).
    pub(crate) idle_timeout: Option<Duration>,
    /// The provided-buffer ring receives land in.
    pub(crate) bufring: Rc<BufRing>,
    /// The completions of this turn being dispatched, and the index of the next one (long
    /// work that serves connections meanwhile takes the rest, see `busy.rs`).
    pub(crate) batch: Vec<Cqe>,
    pub(crate) batch_next: usize,
    /// Completions taken while serving during long work that must wait for the next
    /// turn, in arrival order.
    pub(crate) deferred: Vec<Cqe>,
    /// The connection whose input the handler is being given right now.
    pub(crate) in_data: Option<u32>,
}

impl<H: Handler> Ctx<H> {
    /// This shard's index.
    pub fn shard_id(&self) -> ShardId {
        self.shard
    }

    /// How many shards the engine runs.
    pub fn shard_count(&self) -> usize {
        self.shards
    }

    /// The time at the start of this loop turn (cheap; no clock read).
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Connections open on all shards together.
    pub fn total_connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Connections open on this shard.
    pub fn local_connections(&self) -> usize {
        self.conns.len()
    }

    /// This shard's counters.
    pub fn stats(&self) -> ShardStats {
        let zc = self.ring.zc_stats();
        ShardStats {
            zc_sends: zc.sends,
            zc_copied: zc.copied,
            ..self.stats
        }
    }

    /// The idle timeout in force on this shard.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// Change this shard's idle timeout (from `EngineConfig::idle_timeout` at start);
    /// `None` or zero: never. Takes effect within a second.
    pub fn set_idle_timeout(&mut self, idle: Option<Duration>) {
        self.idle_timeout = idle.filter(|d| !d.is_zero());
    }

    /// Whether the engine is shutting down (no new input is delivered).
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.load(Ordering::Relaxed)
    }

    fn get(&self, id: ConnId) -> Option<&Conn<H::Conn>> {
        self.conns
            .get(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn<H::Conn>> {
        self.conns
            .get_mut(id.index as usize)
            .filter(|c| c.generation == id.generation)
    }

    /// Whether `id` is a live connection of this shard.
    pub fn is_open(&self, id: ConnId) -> bool {
        self.get(id).is_some_and(|c| !c.tearing_down)
    }

    /// The connection's state, if it is still open.
    pub fn state(&mut self, id: ConnId) -> Option<&mut H::Conn> {
        self.get_mut(id).and_then(|c| c.state.as_mut())
    }

    /// The connection's state and its output buffer, to encode replies straight into the
    /// bytes that will be sent at the end of this turn (or, while reply slots are owed,
    /// into the buffer that is released behind them: output order is request order).
    pub fn state_and_output(&mut self, id: ConnId) -> Option<(&mut H::Conn, &mut Vec<u8>)> {
        let idx = id.index;
        let conn = self
            .conns
            .get_mut(idx as usize)
            .filter(|c| c.generation == id.generation)?;
        if conn.tearing_down {
            return None;
        }
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(idx);
        }
        let state = conn.state.as_mut()?;
        // While reply slots are owed, new output queues behind the newest one.
        let out = match conn.order.newest_tail() {
            Some(tail) => tail,
            None => &mut conn.out,
        };
        Some((state, out))
    }

    /// Append bytes to the connection's output (behind any reply slot still owed). Returns
    /// false if it is gone.
    pub fn write(&mut self, id: ConnId, bytes: &[u8]) -> bool {
        match self.state_and_output(id) {
            Some((_, out)) => {
                out.extend_from_slice(bytes);
                true
            }
            None => false,
        }
    }

    /// Append a shared value to the connection's output without copying it (small values
    /// are copied, which is cheaper than another iovec). Returns false if it is gone.
    pub fn write_shared(&mut self, id: ConnId, bytes: Bytes) -> bool {
        const COPY_BELOW: usize = 4096;
        if bytes.len() < COPY_BELOW {
            return self.write(id, &bytes);
        }
        if self.state_and_output(id).is_none() {
            return false;
        }
        let Some(conn) = self.get_mut(id) else {
            return false;
        };
        if !conn.order.is_empty() {
            conn.order.push_shared(bytes);
            return true;
        }
        if !conn.out.is_empty() {
            let owned = std::mem::take(&mut conn.out);
            conn.queued.push(Chunk::Owned(owned));
        }
        conn.queued.push(Chunk::Shared(bytes));
        true
    }

    /// Close the connection once its output has been sent (and
    /// [`Handler::is_busy`] is false). No more input is delivered.
    pub fn close(&mut self, id: ConnId) {
        let idx = id.index;
        if let Some(conn) = self.get_mut(id) {
            conn.closing = true;
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(idx);
            }
        }
    }

    /// Stop delivering input to `id` until [`Ctx::resume_input`]: bytes already received
    /// and bytes still arriving are kept, in order, and the socket is not read further
    /// once a little is buffered (the peer then feels TCP backpressure). Call it from
    /// [`Handler::on_data`] and return only what was consumed so far; the rest is kept.
    pub fn pause_input(&mut self, id: ConnId) {
        if let Some(conn) = self.get_mut(id) {
            conn.paused = true;
        }
    }

    /// Deliver `id`'s input again: what was kept goes to [`Handler::on_data`] before this
    /// turn ends, then reading resumes.
    pub fn resume_input(&mut self, id: ConnId) {
        if let Some(conn) = self.get_mut(id) {
            if conn.paused {
                conn.paused = false;
                self.resumed.push(id);
            }
        }
    }

    /// Deliver `id`'s kept input to [`Handler::on_data`] again before this turn ends (a
    /// handler that stopped consuming without pausing, e.g. for a blocked command, is
    /// ready for the rest).
    pub fn redeliver(&mut self, id: ConnId) {
        if self.get(id).is_some() {
            self.resumed.push(id);
        }
    }

    /// Whether input to `id` is paused (by the handler or by output backpressure).
    pub fn input_paused(&self, id: ConnId) -> bool {
        self.get(id).is_some_and(|c| c.input_blocked())
    }

    /// Bytes of output `id` has that the kernel has not taken yet.
    pub fn unsent_output(&self, id: ConnId) -> usize {
        self.get(id).map_or(0, |c| c.unsent_output())
    }

    /// Whether `id`'s output passed the backpressure threshold: a handler parsing a
    /// pipeline should stop there and return what it consumed; the engine pauses the
    /// connection's input until the output drains and then delivers the rest.
    /// Also true while the connection owes `max_owed_replies` reply slots.
    pub fn output_full(&self, id: ConnId) -> bool {
        self.get(id).is_some_and(|c| {
            c.unsent_output() >= self.output_pause_bytes || c.order.len() >= self.max_owed_replies
        })
    }

    /// Batches waiting in overflow queues because a shard's mailbox was full (a measure
    /// of cross-shard backlog; handlers pause producing connections when it grows).
    pub fn mail_backlog(&self) -> usize {
        self.mail.overflow_len()
    }

    /// Hold everything `id` has to send (now and later) until [`Ctx::release_output`] is
    /// called with `tag` or more. Tags are the handler's, increasing (e.g. a log sequence
    /// number that must be durable before replies that observed it may leave).
    pub fn hold_output_until(&mut self, id: ConnId, tag: u64) {
        if tag <= self.released {
            return;
        }
        let idx = id.index;
        if let Some(conn) = self.get_mut(id) {
            if conn.hold_until <= self.released {
                self.held.push(idx);
            }
            let conn = &mut self.conns[idx as usize];
            conn.hold_until = conn.hold_until.max(tag);
        }
    }

    /// Let output held for tags up to `tag` leave (this turn).
    pub fn release_output(&mut self, tag: u64) {
        if tag <= self.released {
            return;
        }
        self.released = tag;
        let mut still = Vec::new();
        for idx in std::mem::take(&mut self.held) {
            let Some(conn) = self.conns.get_mut(idx as usize) else {
                continue;
            };
            if conn.hold_until > tag {
                still.push(idx);
            } else if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(idx);
            }
        }
        self.held = still;
    }

    /// Drop the connection at the end of this turn without sending what is pending (for
    /// limits: a client over its output limit, a refused client).
    pub fn abort(&mut self, id: ConnId) {
        let idx = id.index;
        if let Some(conn) = self.get_mut(id) {
            conn.closing = true;
            conn.aborting = true;
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(idx);
            }
        }
    }

    /// Tell the engine the incomplete request in progress on `id` will take `total` bytes,
    /// so its reassembly buffer is allocated once at that size (no regrowth copies, no
    /// slack). Call it from [`Handler::on_data`] when returning without consuming it all;
    /// it holds for that call only. `total` must not exceed what the request needs before
    /// the handler can make progress: when a large part is missing (at least
    /// [`crate::DIRECT_RECV_MIN`] bytes), the engine receives it straight into that buffer
    /// and calls `on_data` again only once `total` bytes are in.
    pub fn expect_input(&mut self, id: ConnId, total: usize) {
        if let Some(conn) = self.get_mut(id) {
            conn.expect = total;
        }
    }

    /// Facts about a connection.
    pub fn meta(&self, id: ConnId) -> Option<ConnMeta> {
        self.get(id).map(meta_of)
    }

    /// Which listener accepted `id` (see [`ConnMeta::listener`]): 0 for the main address,
    /// `1 + i` for [`crate::EngineConfig::extra_listen`]`[i]`, `None` for an outgoing or
    /// closed connection.
    pub fn listener_of(&self, id: ConnId) -> Option<usize> {
        self.get(id).and_then(|c| c.listener)
    }

    /// Every live connection of this shard with its state.
    pub fn connections(&self) -> impl Iterator<Item = (ConnId, &H::Conn, ConnMeta)> + '_ {
        self.conns
            .iter()
            .filter(|(_, c)| !c.tearing_down)
            .filter_map(|(idx, c)| {
                let id = ConnId {
                    index: idx as u32,
                    generation: c.generation,
                };
                c.state.as_ref().map(|s| (id, s, meta_of(c)))
            })
    }

    /// Hand this turn's mail to the other shards (and wake them as needed). Before any
    /// reply leaves: a client that hears a reply may ask another shard for something
    /// whose mail must come after this shard's (`mailbox.rs`).
    pub(crate) fn flush_mail(&mut self) {
        let Ctx {
            mail, ring, shared, ..
        } = self;
        let Some(fds) = shared.ring_fds.get() else {
            return;
        };
        mail.flush(|to| {
            let wake = shared.parking[to].needs_wake();
            if wake {
                ring.wake(fds[to], to);
            }
            wake
        });
        // Wakes that failed last turn (reported in `dispatch_completions`): the targets'
        // parked flags are already cleared, so they are woken regardless.
        mail.take_rewakes(|to| ring.wake(fds[to], to));
    }

    /// Send `msg` to shard `to` (this shard included), for [`Handler::on_message`].
    /// Messages to one shard arrive in the order sent (together with [`Ctx::run_on`] and
    /// [`Ctx::call`] work); all of one turn's messages to a shard travel as one batch.
    ///
    /// # Panics
    /// If `to` is not below [`Ctx::shard_count`].
    pub fn send(&mut self, to: ShardId, msg: H::Msg) {
        self.mail.send(to, Envelope::Msg(msg));
    }

    /// The shard that owns `key` under the default routing ([`crate::Router::new`] with
    /// this engine's shard count): where state keyed by `key` should live.
    pub fn shard_for(&self, key: &[u8]) -> ShardId {
        shard_of_hash(DefaultKeyHash.hash_key(key), self.shards)
    }

    /// Run `f` on shard `to` with that shard's handler and context, like Seastar's
    /// `submit_to` without a result: it travels in this turn's batch to `to`, in order
    /// with [`Ctx::send`] messages, and runs when `to` delivers its mail (on this shard:
    /// later in this turn, never inline). To answer a connection from there, reserve a
    /// slot first and fill it inside `f`, or use [`Ctx::call`].
    ///
    /// # Panics
    /// If `to` is not below [`Ctx::shard_count`].
    pub fn run_on<F>(&mut self, to: ShardId, f: F)
    where
        F: FnOnce(&mut H, &mut Ctx<H>) + Send + 'static,
    {
        self.mail.send(to, Envelope::Run(Box::new(f)));
    }

    /// Answer `conn`'s next request on shard `to`: `f` runs there with that shard's
    /// handler and context, and the bytes it returns become `conn`'s next reply, in
    /// request order, whatever else is written meanwhile and wherever the other answers
    /// come from. On this shard `f` runs at once (inline, with `handler`) and its answer
    /// is written like [`Ctx::write`]; elsewhere a reply slot is reserved and `f` travels
    /// like [`Ctx::run_on`]. Returns false if `conn` is gone.
    ///
    /// ```no_run
    /// # use coreshard_engine::{ConnId, Ctx, Handler, Input};
    /// # use std::collections::HashMap;
    /// #[derive(Default)]
    /// struct Counter { counts: HashMap<Vec<u8>, u64> }
    /// impl Handler for Counter {
    ///     type Conn = ();
    ///     type Msg = ();
    ///     fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize {
    ///         let key = data.to_vec();
    ///         let owner = ctx.shard_for(&key);
    ///         ctx.call(self, conn, owner, move |counter: &mut Counter, _ctx| {
    ///             let n = counter.counts.entry(key).or_insert(0);
    ///             *n += 1;
    ///             format!("{n}\n").into_bytes()
    ///         });
    ///         data.len()
    ///     }
    /// }
    /// ```
    ///
    /// # Panics
    /// If `to` is not below [`Ctx::shard_count`].
    pub fn call<F>(&mut self, handler: &mut H, conn: ConnId, to: ShardId, f: F) -> bool
    where
        F: FnOnce(&mut H, &mut Ctx<H>) -> Vec<u8> + Send + 'static,
    {
        if to == self.shard {
            if !self.is_open(conn) {
                return false;
            }
            let answer = f(handler, self);
            return self.write(conn, &answer);
        }
        let Some(slot) = self.reserve_slot(conn) else {
            return false;
        };
        self.run_on(to, move |h, ctx| {
            let answer = f(h, ctx);
            ctx.fill_slot(slot, answer);
        });
        true
    }

    /// Reserve `conn`'s next reply position. Output written to `conn` from now on waits
    /// behind it until [`Ctx::fill_slot`] fills it (output before it leaves as usual).
    /// `None` if the connection is gone. Once `max_owed_replies` slots are owed the
    /// connection's input pauses (and [`Ctx::output_full`] says so) until half of them
    /// are released.
    pub fn reserve_slot(&mut self, conn: ConnId) -> Option<ReplySlot> {
        let limit = self.max_owed_replies;
        let c = self.get_mut(conn).filter(|c| !c.tearing_down)?;
        let seq = c.order.reserve();
        if c.order.len() >= limit {
            c.order_paused = true;
        }
        Some(ReplySlot {
            shard: self.shard,
            conn,
            seq,
        })
    }

    /// Fill a reserved slot with its reply, from any shard: on the slot's own shard the
    /// filled prefix of the connection's order is released to its output at once;
    /// otherwise the answer travels back in this turn's batch. A slot of a connection
    /// that closed meanwhile, or one filled before, is ignored.
    pub fn fill_slot(&mut self, slot: ReplySlot, answer: Vec<u8>) {
        if slot.shard == self.shard {
            self.fill_local(slot, answer);
        } else {
            self.mail.send(slot.shard, Envelope::Fill { slot, answer });
        }
    }

    /// Fill a slot by encoding its reply in place: on the slot's own shard straight into
    /// the connection's output when it is the oldest slot owed (no buffer of its own),
    /// else into a buffer reused from released replies; on another shard like
    /// [`Ctx::fill_slot`]. `encode` is not called for a slot of a connection that closed
    /// or one filled before.
    pub fn fill_slot_with(&mut self, slot: ReplySlot, encode: impl FnOnce(&mut Vec<u8>)) {
        if slot.shard != self.shard {
            let mut answer = Vec::new();
            encode(&mut answer);
            self.mail.send(slot.shard, Envelope::Fill { slot, answer });
            return;
        }
        let Some(conn) = self.get_mut(slot.conn).filter(|c| !c.tearing_down) else {
            return;
        };
        if conn.order.is_unfilled_front(slot.seq) {
            // Everything before it has left for `out` already.
            encode(&mut conn.out);
            self.fill_local(slot, Vec::new());
        } else if conn.order.is_unfilled(slot.seq) {
            let mut answer = conn.order.take_buffer();
            encode(&mut answer);
            self.fill_local(slot, answer);
        }
    }

    /// Reply slots `conn` owes: reserved and not yet released.
    pub fn replies_owed(&self, conn: ConnId) -> usize {
        self.get(conn).map_or(0, |c| c.order.len())
    }

    pub(crate) fn fill_local(&mut self, slot: ReplySlot, answer: Vec<u8>) {
        let limit = self.max_owed_replies;
        let idx = slot.conn.index;
        let Some(conn) = self.get_mut(slot.conn) else {
            return;
        };
        if conn.tearing_down || !conn.order.fill(slot.seq, answer) {
            return;
        }
        let mut order = std::mem::take(&mut conn.order);
        if order.release(|chunk| conn.append(chunk)) == 0 {
            conn.order = order;
            return;
        }
        conn.order = order;
        let resume = conn.order_paused && conn.order.len() < (limit / 2).max(1);
        if resume {
            conn.order_paused = false;
        }
        let resume = resume && !conn.input_blocked();
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(idx);
        }
        if resume {
            self.resumed.push(slot.conn);
        }
    }

    /// Call [`Handler::on_timer`] with `cookie` after `after`.
    pub fn set_timer(&mut self, after: Duration, cookie: u64) -> TimerId {
        self.timer_generation = self.timer_generation.wrapping_add(1) & 0xff_ffff;
        let generation = self.timer_generation;
        let slot = self.ring.timer(after, Kind::Timer, generation, cookie);
        TimerId { slot, generation }
    }

    pub(crate) fn new_generation(&mut self) -> u32 {
        let g = self.next_generation;
        self.next_generation = (self.next_generation + 1) & 0xff_ffff;
        g
    }

    /// Open an outgoing TCP connection to `addr` with handler state `state`. Output written
    /// before it connects is sent once it does; [`Handler::on_connected`] reports the
    /// outcome, and a failed connection is then closed (with [`Handler::on_close`]).
    pub fn connect(&mut self, addr: SocketAddr, state: H::Conn) -> std::io::Result<ConnId> {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM.cloexec(),
            None,
        )?;
        let fd = std::os::fd::OwnedFd::from(sock);
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let generation = self.new_generation();
        let mut conn = Conn::new(fd, generation, Some(addr), self.now);
        conn.state = Some(state);
        conn.connecting = true;
        let idx = self.conns.insert(conn) as u32;
        self.shared.connections.fetch_add(1, Ordering::Relaxed);
        self.ring
            .connect(raw, addr.into(), Token::new(Kind::Connect, generation, idx));
        Ok(ConnId {
            index: idx,
            generation,
        })
    }

    /// Ask for another loop turn right away instead of sleeping until I/O arrives: for
    /// background work done in bounded steps (e.g. reclaiming expired keys).
    pub fn run_again(&mut self) {
        self.run_again = true;
    }

    /// Cancel a timer that has not fired yet (a fired or unknown timer is ignored).
    pub fn cancel_timer(&mut self, timer: TimerId) {
        self.ring
            .cancel_timer(Kind::Timer, timer.generation, timer.slot);
    }

    pub(crate) fn mark_dirty(&mut self, idx: u32) {
        if let Some(c) = self.conns.get_mut(idx as usize) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(idx);
            }
        }
    }

    /// A send completed (or a part of it): free the connection for its next send, resume
    /// input that waited for the output to drain. The connection to tear down if the send
    /// failed.
    pub(crate) fn send_done(&mut self, slot: u32, result: i32, flags: u32) -> Option<u32> {
        let (owner, buf, failed) = match self.ring.complete_send(slot, result, flags) {
            SendDone::Continuing => return None,
            SendDone::NoZeroCopy { owner } => {
                let id = ConnId {
                    index: owner.index,
                    generation: owner.generation,
                };
                if let Some(conn) = self.get_mut(id) {
                    conn.zc_copied = true;
                }
                return None;
            }
            SendDone::Complete { owner, buf } => (owner, buf, None),
            SendDone::Failed { owner, buf, errno } => (owner, buf, Some(errno)),
        };
        let idx = owner.index;
        let id = ConnId {
            index: owner.index,
            generation: owner.generation,
        };
        let resume_below = self.output_pause_bytes / 2;
        let conn = self.get_mut(id)?;
        conn.send_in_flight = false;
        conn.in_flight_len = 0;
        let mut resume = false;
        if conn.output_paused && !conn.tearing_down && conn.unsent_output() < resume_below {
            conn.output_paused = false;
            resume = !conn.paused;
        }
        if conn.spare.capacity() < buf.capacity() {
            conn.spare = buf;
        }
        if resume {
            self.resumed.push(id);
        }
        if let Some(errno) = failed {
            tracing::debug!("send failed: {}", std::io::Error::from_raw_os_error(errno));
            return Some(idx);
        }
        self.mark_dirty(idx);
        None
    }

    /// Send the connection's output in one operation if it has some that may leave and
    /// nothing is in flight (never two sends at once: bytes cannot reorder).
    pub(crate) fn start_send(&mut self, idx: u32) {
        let released = self.released;
        let Some(conn) = self.conns.get_mut(idx as usize) else {
            return;
        };
        let has_output =
            (!conn.out.is_empty() || !conn.queued.is_empty()) && conn.hold_until <= released;
        if conn.tearing_down || conn.connecting || conn.send_in_flight || !has_output {
            return;
        }
        let Some(fd) = conn.fd.as_ref().map(|f| f.as_raw_fd()) else {
            return;
        };
        let mut chunks = std::mem::take(&mut conn.queued);
        let owned = std::mem::replace(&mut conn.out, std::mem::take(&mut conn.spare));
        if owned.is_empty() {
            conn.spare = owned;
        } else {
            chunks.push(Chunk::Owned(owned));
        }
        conn.send_in_flight = true;
        let len: usize = chunks.iter().map(|c| c.as_slice().len()).sum();
        conn.in_flight_len = len;
        self.stats.bytes_out += len as u64;
        let owner = Token::new(Kind::Send, conn.generation, idx);
        let zc_ok = !conn.zc_copied;
        self.ring.send(fd, owner, chunks, zc_ok);
    }
}

fn meta_of<S>(c: &Conn<S>) -> ConnMeta {
    ConnMeta {
        peer: c.peer,
        local: c.local,
        listener: c.listener,
        created: c.created,
        last_active: c.last_active,
        input_buffered: c.inbuf.len(),
        output_buffered: c.unsent_output(),
        replies_owed: c.order.len(),
    }
}
