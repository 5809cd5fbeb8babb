//! The per-shard context a [`Handler`] works through: its connections' output, messages to
//! other shards, timers and statistics.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use slab::Slab;

use super::conn::Conn;
use crate::handler::{ConnId, Handler, ShardId};
use crate::mailbox::Mailboxes;
use crate::runtime::Shared;
use crate::sys::{Chunk, Kind, Ring, Token};

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
}

/// Facts about one connection, for listings such as `CLIENT LIST`.
#[derive(Debug, Clone, Copy)]
pub struct ConnMeta {
    /// The peer's address, when the OS reported it.
    pub peer: Option<SocketAddr>,
    /// When it was accepted.
    pub created: Instant,
    /// When bytes last arrived.
    pub last_active: Instant,
    /// Bytes buffered as an incomplete request.
    pub input_buffered: usize,
    /// Bytes waiting to be sent.
    pub output_buffered: usize,
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
    pub(crate) mail: Mailboxes<H::Msg>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) now: Instant,
    pub(crate) stats: ShardStats,
    pub(crate) timer_generation: u32,
    pub(crate) run_again: bool,
    pub(crate) next_generation: u32,
    pub(crate) output_pause_bytes: usize,
    /// Output held until this tag is released ([`Ctx::release_output`]).
    pub(crate) released: u64,
    /// Connections whose output is held.
    pub(crate) held: Vec<u32>,
    /// Connections whose input was resumed this turn: their kept input is delivered and
    /// their receive re-armed before the turn ends.
    pub(crate) resumed: Vec<ConnId>,
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
        self.stats
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
    /// bytes that will be sent at the end of this turn.
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
        Some((state, &mut conn.out))
    }

    /// Append bytes to the connection's output. Returns false if it is gone.
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
    pub fn output_full(&self, id: ConnId) -> bool {
        self.get(id)
            .is_some_and(|c| c.unsent_output() >= self.output_pause_bytes)
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
    /// slack). Call it from [`Handler::on_data`] when returning without consuming it all.
    pub fn expect_input(&mut self, id: ConnId, total: usize) {
        if let Some(conn) = self.get_mut(id) {
            conn.expect = total;
        }
    }

    /// Facts about a connection.
    pub fn meta(&self, id: ConnId) -> Option<ConnMeta> {
        self.get(id).map(meta_of)
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

    /// Send `msg` to shard `to` (this shard included). Messages to one shard arrive in the
    /// order sent; all of one turn's messages to a shard travel as one batch.
    pub fn send(&mut self, to: ShardId, msg: H::Msg) {
        self.mail.send(to, msg);
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
}

fn meta_of<S>(c: &Conn<S>) -> ConnMeta {
    ConnMeta {
        peer: c.peer,
        created: c.created,
        last_active: c.last_active,
        input_buffered: c.inbuf.len(),
        output_buffered: c.unsent_output(),
    }
}
