//! One shard's event loop. A turn: wait for completions, dispatch each one (accept, recv,
//! send, timer, wake), deliver inbound messages, let the handler finish the turn, then
//! send each dirty connection's output in one operation, pass message batches to other
//! shards (waking only sleeping ones), and re-arm what ended. A loaded shard enters the
//! kernel once per turn.

mod busy;
mod conn;
mod ctx;
mod order;

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use slab::Slab;

pub use busy::serve_while_busy;
pub(crate) use ctx::Envelope;
pub use ctx::{ConnMeta, Ctx, ReplySlot, ShardStats, TimerId};

use crate::handler::{ConnId, Handler, Input};
use crate::mailbox::Mailboxes;
use crate::runtime::Shared;
use crate::sys::{self, BufRing, Cqe, Kind, Ring, Token};
use crate::{EngineConfig, EngineError};
use conn::Conn;

/// Batches taken from one sender per turn, so a flood from one shard cannot starve I/O.
const MAX_BATCHES_PER_SENDER: usize = 64;
/// How long a stopping shard sleeps at most between checks of the other shards.
const STOPPING_POLL: Duration = Duration::from_millis(10);
/// A connection whose incomplete request still lacks at least this many bytes (by
/// [`Ctx::expect_input`]) stops its multishot receive and receives the rest straight into
/// its reassembly buffer, saving the copy out of the ring buffers (see
/// docs/ARCHITECTURE.md, "Large values").
pub const DIRECT_RECV_MIN: usize = 32 * 1024;
/// How much a connection that just received a large request reads directly before the
/// next request announces its size: enough for its header, little to copy when that
/// request turns out large too (its buffer is then allocated at the announced size).
const DIRECT_HEAD_READ: usize = 1024;
/// Back-off after accept fails for a reason other than cancellation (e.g. EMFILE).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The connection a completion's token names (index and generation).
fn conn_of(token: Token) -> ConnId {
    ConnId {
        index: token.index,
        generation: token.generation,
    }
}

/// One listening socket of a shard and its accept state.
struct Listener {
    fd: Option<OwnedFd>,
    armed: bool,
    retry_at: Option<Instant>,
}

pub(crate) struct Shard<H: Handler> {
    ctx: Ctx<H>,
    handler: H,
    /// Shared with `ctx`, which hands buffers back when it serves during long work.
    bufring: Rc<BufRing>,
    /// This shard's listeners: the main address first, then
    /// [`EngineConfig::extra_listen`] in order (the index is the accept token's).
    listeners: Vec<Listener>,
    config: Arc<EngineConfig>,
    inbound: Vec<(usize, Envelope<H>)>,
    rearm: Vec<u32>,
    stopping_deadline: Option<Instant>,
    drained_reported: bool,
    /// An idle-timeout tick is pending.
    tick_armed: bool,
}

impl<H: Handler> Shard<H> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shard: usize,
        shards: usize,
        ring: Ring,
        bufring: BufRing,
        listeners: Vec<OwnedFd>,
        mail: Mailboxes<Envelope<H>>,
        shared: Arc<Shared>,
        config: Arc<EngineConfig>,
        handler: H,
    ) -> Self {
        let bufring = Rc::new(bufring);
        Shard {
            ctx: Ctx {
                shard,
                shards,
                conns: Slab::with_capacity(256),
                dirty: Vec::new(),
                ring,
                mail,
                shared,
                now: Instant::now(),
                stats: ShardStats::default(),
                timer_generation: 0,
                run_again: false,
                next_generation: 1,
                output_pause_bytes: config.output_pause_bytes,
                max_owed_replies: config.max_owed_replies,
                released: 0,
                held: Vec::new(),
                resumed: Vec::new(),
                idle_timeout: config.idle_timeout.filter(|d| !d.is_zero()),
                bufring: Rc::clone(&bufring),
                batch: Vec::with_capacity(1024),
                batch_next: 0,
                deferred: Vec::new(),
                in_data: None,
            },
            tick_armed: false,
            handler,
            bufring,
            listeners: listeners
                .into_iter()
                .map(|fd| Listener {
                    fd: Some(fd),
                    armed: false,
                    retry_at: None,
                })
                .collect(),
            config,
            inbound: Vec::new(),
            rearm: Vec::new(),
            stopping_deadline: None,
            drained_reported: false,
        }
    }

    /// Run until the engine shuts down and every shard has drained its connections.
    pub fn run(&mut self) -> Result<(), EngineError> {
        self.handler.on_start(&mut self.ctx);
        self.arm_accept();
        self.arm_tick();
        loop {
            self.ctx.now = Instant::now();
            self.dispatch_completions();
            self.deliver_messages();
            self.deliver_resumed();
            self.handler.on_turn_end(&mut self.ctx);
            self.deliver_resumed();
            self.flush_mail();
            self.flush_connections();
            self.rearm_receives();
            self.arm_tick();
            if self.check_shutdown() {
                break;
            }
            self.wait()?;
        }
        self.handler.on_stop(&mut self.ctx);
        self.abort_remaining();
        Ok(())
    }

    /// Whether the shard can stop; also starts stopping when shutdown was requested.
    fn check_shutdown(&mut self) -> bool {
        let shared = Arc::clone(&self.ctx.shared);
        if shared.shutdown.load(Ordering::Acquire) && self.stopping_deadline.is_none() {
            self.begin_shutdown();
            // Graceful closes were just requested: let this turn's flush run first.
            self.flush_connections();
        }
        let Some(deadline) = self.stopping_deadline else {
            return false;
        };
        if self.ctx.conns.is_empty() && !self.drained_reported {
            self.drained_reported = true;
            shared.drained.fetch_add(1, Ordering::AcqRel);
        }
        let all_drained = shared.drained.load(Ordering::Acquire) >= self.ctx.shards;
        all_drained || self.ctx.now >= deadline
    }

    fn begin_shutdown(&mut self) {
        self.stopping_deadline = Some(self.ctx.now + self.config.shutdown_grace);
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if l.armed {
                self.ctx.ring.cancel(Token::new(Kind::Accept, 0, i as u32));
            }
            if let Some(fd) = l.fd.take() {
                self.ctx.ring.close(fd);
            }
        }
        let ids: Vec<ConnId> = self.live_ids();
        for id in ids {
            self.ctx.close(id);
        }
    }

    /// Past the grace period: drop whatever is left without waiting for peers.
    fn abort_remaining(&mut self) {
        let idxs: Vec<u32> = self.ctx.conns.iter().map(|(i, _)| i as u32).collect();
        for idx in idxs {
            self.teardown(idx);
        }
        let _ = self.ctx.ring.submit_and_wait(Some(Duration::ZERO));
        self.ctx.batch.clear();
        self.ctx.ring.drain(&mut self.ctx.batch);
        let idle = self.ctx.conns.iter().all(|(_, c)| c.quiescent());
        self.bufring.release(&self.ctx.ring, idle);
    }

    fn live_ids(&self) -> Vec<ConnId> {
        self.ctx
            .conns
            .iter()
            .map(|(i, c)| ConnId {
                index: i as u32,
                generation: c.generation,
            })
            .collect()
    }

    fn wait(&mut self) -> Result<(), EngineError> {
        let mut timeout = None;
        if self.stopping_deadline.is_some() {
            timeout = Some(STOPPING_POLL);
        }
        for at in self.listeners.iter().filter_map(|l| l.retry_at) {
            let left = at.saturating_duration_since(self.ctx.now);
            timeout = Some(timeout.map_or(left, |t: Duration| t.min(left)));
        }
        if self.ctx.mail.has_overflow() {
            timeout = Some(Duration::from_micros(50));
        }
        let parking = &self.ctx.shared.parking[self.ctx.shard];
        parking.park();
        if self.ctx.mail.inbound_pending()
            || !self.ctx.deferred.is_empty()
            || std::mem::take(&mut self.ctx.run_again)
            || self.handler.needs_turn()
        {
            timeout = Some(Duration::ZERO);
        }
        let res = self.ctx.ring.submit_and_wait(timeout);
        self.ctx.stats.enters += 1;
        self.ctx.shared.parking[self.ctx.shard].unpark();
        res.map_err(|e| EngineError::Setup("io_uring_enter", e))
    }

    /// Dispatch this turn's completions, after any that long work left for this turn
    /// (`busy.rs`). Long work may take the rest of the batch while it runs; the loop then
    /// finds the batch shorter.
    fn dispatch_completions(&mut self) {
        self.ctx.batch.clear();
        if !self.ctx.deferred.is_empty() {
            self.ctx.take_deferred();
        }
        self.ctx.ring.drain(&mut self.ctx.batch);
        self.ctx.stats.completions += self.ctx.batch.len() as u64;
        let mut next = 0;
        while let Some(&cqe) = self.ctx.batch.get(next) {
            next += 1;
            self.ctx.batch_next = next;
            self.dispatch(&cqe);
        }
        // Dispatched: long work later this turn (a message, the turn's end) must not see
        // these again.
        self.ctx.batch.clear();
        self.ctx.batch_next = 0;
    }

    fn dispatch(&mut self, cqe: &Cqe) {
        let Some(token) = Token::decode(cqe.user_data) else {
            return;
        };
        match token.kind {
            Kind::Accept => self.on_accept(token.index as usize, cqe),
            Kind::Recv => self.on_recv(token, cqe),
            Kind::RecvInto => self.on_recv_into(token.index, cqe.result),
            Kind::Send => self.on_send(token.index, cqe.result, cqe.flags),
            Kind::Connect => self.on_connect(token.index, cqe.result),
            Kind::Timer => {
                if let Some(cookie) = self.ctx.ring.complete_timer(token.index) {
                    if cqe.result == -libc::ETIME {
                        self.handler.on_timer(&mut self.ctx, cookie);
                    }
                }
            }
            Kind::Tick => {
                self.ctx.ring.complete_timer(token.index);
                self.tick_armed = false;
                self.on_tick();
                self.arm_tick();
            }
            Kind::Wake => {
                // A wake from another shard needs no work: the turn it caused is the
                // point. One we posted that failed comes back here; its target may be
                // asleep with mail waiting, so it is woken again in `flush_mail`.
                if let Some(to) = sys::failed_wake(token, cqe.result) {
                    self.ctx.mail.wake_failed(to);
                }
            }
            Kind::Ignore => {}
        }
    }

    fn deliver_messages(&mut self) {
        let mut inbound = std::mem::take(&mut self.inbound);
        self.ctx
            .mail
            .take_inbound(&mut inbound, MAX_BATCHES_PER_SENDER);
        self.ctx.stats.messages_in += inbound.len() as u64;
        for (from, envelope) in inbound.drain(..) {
            match envelope {
                Envelope::Msg(msg) => self.handler.on_message(&mut self.ctx, from, msg),
                Envelope::Run(job) => job(&mut self.handler, &mut self.ctx),
                Envelope::Fill { slot, answer } => self.ctx.fill_local(slot, answer),
            }
        }
        self.inbound = inbound;
    }

    fn flush_mail(&mut self) {
        self.ctx.flush_mail();
    }

    fn arm_accept(&mut self) {
        for i in 0..self.listeners.len() {
            self.arm_accept_on(i);
        }
    }

    /// Arm accepting on listener `i` unless it is armed, backing off, or the shard stops.
    fn arm_accept_on(&mut self, i: usize) {
        if self.stopping_deadline.is_some() {
            return;
        }
        let l = &mut self.listeners[i];
        if l.armed {
            return;
        }
        if let Some(at) = l.retry_at {
            if self.ctx.now < at {
                return;
            }
            l.retry_at = None;
        }
        if let Some(fd) = &l.fd {
            self.ctx
                .ring
                .accept(fd.as_raw_fd(), Token::new(Kind::Accept, 0, i as u32));
            l.armed = true;
        }
    }

    /// Arm the idle-timeout tick when a timeout is in force and none is pending (the
    /// timeout may be set at run time, [`Ctx::set_idle_timeout`]).
    fn arm_tick(&mut self) {
        if self.tick_armed {
            return;
        }
        if let Some(idle) = self.ctx.idle_timeout {
            let every = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
            self.ctx.ring.timer(every, Kind::Tick, 0, 0);
            self.tick_armed = true;
        }
    }

    fn on_tick(&mut self) {
        let Some(idle) = self.ctx.idle_timeout else {
            return;
        };
        let now = Instant::now();
        let expired: Vec<u32> = self
            .ctx
            .conns
            .iter()
            .filter(|(_, c)| !c.tearing_down && now.duration_since(c.last_active) > idle)
            .filter(|(_, c)| c.order.is_empty())
            .filter(|(_, c)| c.state.as_ref().is_some_and(|s| !self.handler.is_busy(s)))
            .map(|(i, _)| i as u32)
            .collect();
        for idx in expired {
            tracing::debug!(
                shard = self.ctx.shard,
                conn = idx,
                "closing idle connection"
            );
            self.teardown(idx);
        }
    }

    fn on_accept(&mut self, listener: usize, cqe: &Cqe) {
        if listener >= self.listeners.len() {
            return;
        }
        if !cqe.more() {
            self.listeners[listener].armed = false;
        }
        if cqe.result < 0 {
            let errno = -cqe.result;
            if errno == libc::EINVAL && self.ctx.ring.features().multishot_accept {
                self.ctx.ring.features_mut().multishot_accept = false;
            } else if errno != libc::ECANCELED {
                // At most one warning per second (a failure like EMFILE recurs on every
                // retry), with a count of those held back. One limiter per thread, i.e.
                // per shard; it lives here rather than in `Shard` only to keep this change
                // inside this function.
                thread_local! {
                    static ACCEPT_WARNINGS: std::cell::RefCell<crate::ratelimit::LogLimiter> =
                        const {
                            std::cell::RefCell::new(crate::ratelimit::LogLimiter::new(
                                Duration::from_secs(1),
                            ))
                        };
                }
                let now = self.ctx.now;
                if let Some(suppressed) = ACCEPT_WARNINGS.with_borrow_mut(|l| l.allow(now)) {
                    let err = std::io::Error::from_raw_os_error(errno);
                    if suppressed == 0 {
                        tracing::warn!(shard = self.ctx.shard, "accept failed: {err}");
                    } else {
                        tracing::warn!(
                            shard = self.ctx.shard,
                            "accept failed: {err} ({suppressed} more accept failures since \
                             the last warning were not logged)"
                        );
                    }
                }
                self.listeners[listener].retry_at = Some(self.ctx.now + ACCEPT_BACKOFF);
            }
            self.arm_accept_on(listener);
            return;
        }
        let fd = sys::accepted_fd(cqe.result);
        self.arm_accept_on(listener);
        if self.stopping_deadline.is_some() {
            return; // dropping `fd` closes it
        }
        let sock = socket2::SockRef::from(&fd);
        let _ = sock.set_tcp_nodelay(true);
        let peer: Option<SocketAddr> = sock.peer_addr().ok().and_then(|a| a.as_socket());
        let local: Option<SocketAddr> = sock.local_addr().ok().and_then(|a| a.as_socket());
        let (counter, limit) = if listener == 0 {
            (&self.ctx.shared.connections, self.config.max_connections)
        } else {
            (
                &self.ctx.shared.extra_connections,
                self.config.extra_max_connections,
            )
        };
        let total = counter.fetch_add(1, Ordering::Relaxed) + 1;
        self.ctx.stats.accepted += 1;
        let generation = self.ctx.new_generation();
        let idx = self
            .ctx
            .conns
            .insert(Conn::new(fd, generation, peer, self.ctx.now)) as u32;
        self.ctx.conns[idx as usize].listener = Some(listener);
        self.ctx.conns[idx as usize].local = local;
        let id = ConnId {
            index: idx,
            generation,
        };
        let state = self.handler.on_open(&mut self.ctx, id, peer);
        self.ctx.conns[idx as usize].state = Some(state);
        if total > limit {
            self.ctx.stats.rejected += 1;
            let msg = self.handler.rejection_for(listener).to_vec();
            self.ctx.write(id, &msg);
            self.ctx.close(id);
            return;
        }
        self.arm_recv(idx);
    }

    fn on_recv(&mut self, token: Token, cqe: &Cqe) {
        let idx = token.index;
        let bid = cqe.buffer_id();
        let live = self
            .ctx
            .conns
            .get(idx as usize)
            .is_some_and(|c| c.generation == token.generation);
        if !live {
            if let Some(bid) = bid {
                self.bufring.recycle(bid);
            }
            return;
        }
        let id = conn_of(token);
        let more = cqe.more();
        if !more {
            let conn = &mut self.ctx.conns[idx as usize];
            conn.recv_armed = false;
            conn.recv_cancelling = false;
        }
        match cqe.result {
            n if n > 0 => {
                let Some(bid) = bid else {
                    tracing::error!("recv completion without a buffer id");
                    self.teardown(idx);
                    return;
                };
                self.ctx.stats.bytes_in += n as u64;
                let conn = &mut self.ctx.conns[idx as usize];
                if !conn.closing {
                    conn.last_active = self.ctx.now;
                    self.deliver(id, bid, n as usize);
                }
                self.bufring.recycle(bid);
                self.schedule_rearm(idx, more);
                // The last completion of a connection being torn down may carry data:
                // re-check it at the end of the turn so its slot and fd are freed.
                if self
                    .ctx
                    .conns
                    .get(idx as usize)
                    .is_some_and(|c| c.tearing_down)
                {
                    self.mark_dirty(idx);
                }
            }
            0 => {
                if let Some(bid) = bid {
                    self.bufring.recycle(bid);
                }
                self.on_peer_closed(id);
            }
            err => {
                let errno = -err;
                let tearing_down = self.ctx.conns[idx as usize].tearing_down;
                if errno == libc::ECANCELED && !tearing_down {
                    // Cancelled because input was paused; re-armed when it resumes.
                    self.schedule_rearm(idx, more);
                } else if errno == libc::ENOBUFS {
                    self.ctx.stats.recv_buffer_exhausted += 1;
                    self.schedule_rearm(idx, more);
                } else if errno == libc::EINVAL && self.ctx.ring.features().multishot_recv {
                    tracing::info!("kernel refused multishot recv; using one-shot recv");
                    self.ctx.ring.features_mut().multishot_recv = false;
                    self.schedule_rearm(idx, more);
                } else {
                    if errno != libc::ECANCELED && errno != libc::ECONNRESET {
                        tracing::debug!(
                            "recv failed: {}",
                            std::io::Error::from_raw_os_error(errno)
                        );
                    }
                    self.teardown(idx);
                }
            }
        }
    }

    /// The peer closed its side: send what is already owed, then close; but requests it
    /// sent before closing and that wait behind a pause are served first.
    fn on_peer_closed(&mut self, id: ConnId) {
        let Some(conn) = self.ctx.get_mut(id) else {
            return;
        };
        if conn.input_blocked() && !conn.inbuf.is_empty() && !conn.closing {
            conn.peer_closed = true;
        } else {
            self.ctx.close(id);
        }
    }

    /// Arm a receive on a connection that is open and has none armed: a direct one while a
    /// large request is (or was just) arriving, else a multishot one.
    fn arm_recv(&mut self, idx: u32) {
        let group = self.bufring.group();
        let Some(conn) = self.ctx.conns.get_mut(idx as usize) else {
            return;
        };
        if !conn.may_receive() {
            return;
        }
        let missing = conn.missing_input();
        if missing >= DIRECT_RECV_MIN || (conn.direct_mode && missing > 0) {
            conn.direct_mode = true;
            self.arm_direct(idx, missing);
            return;
        }
        if conn.direct_mode {
            // The last request was large: read the start of the next one directly as well
            // (one small read), so that if it is large too, its body never
            // passes through the ring buffers. Kept up only if it announces a large one.
            conn.direct_mode = false;
            self.arm_direct(idx, DIRECT_HEAD_READ);
            return;
        }
        if let Some(fd) = conn.fd.as_ref().map(|f| f.as_raw_fd()) {
            conn.recv_armed = true;
            let token = Token::new(Kind::Recv, conn.generation, idx);
            self.ctx.ring.recv(fd, group, token);
        }
    }

    /// Receive up to `max` bytes straight into the connection's buffer, after what it
    /// holds (one-shot, no provided buffer), unless a receive is armed or input is stopped.
    fn arm_direct(&mut self, idx: u32, max: usize) {
        let Some(conn) = self.ctx.conns.get_mut(idx as usize) else {
            return;
        };
        if max == 0 || !conn.may_receive() {
            return;
        }
        let Some(fd) = conn.fd.as_ref().map(|f| f.as_raw_fd()) else {
            return;
        };
        let mut buf = std::mem::take(&mut conn.inbuf);
        buf.reserve(max);
        let owner = Token::new(Kind::RecvInto, conn.generation, idx);
        conn.direct = Some(self.ctx.ring.recv_into(fd, owner, buf, max));
        self.ctx.stats.direct_recvs += 1;
    }

    /// A connection announced a large request: receive directly from now on. Its
    /// multishot receive is cancelled; the completions still to come from it are
    /// delivered in order as usual (often the whole request: a multishot receive takes
    /// all the socket holds), and the last one re-arms, which `arm_recv` then does
    /// directly: the rest of this request, or the start of the next one.
    fn switch_to_direct(&mut self, id: ConnId) {
        let Some(conn) = self.ctx.get_mut(id) else {
            return;
        };
        if conn.missing_input() < DIRECT_RECV_MIN || conn.closing || conn.input_blocked() {
            return;
        }
        conn.direct_mode = true;
        if conn.recv_armed && !conn.recv_cancelling {
            conn.recv_cancelling = true;
            let token = Token::new(Kind::Recv, conn.generation, id.index);
            self.ctx.ring.cancel(token);
        }
    }

    /// A direct receive completed: its buffer comes back as the connection's input, the
    /// received bytes appended in order. The handler sees it once the announced request is
    /// complete; until then the next direct receive continues it.
    fn on_recv_into(&mut self, slot: u32, result: i32) {
        let Some((owner, buf)) = self.ctx.ring.complete_recv_into(slot, result) else {
            return;
        };
        let idx = owner.index;
        let id = conn_of(owner);
        let Some(conn) = self.ctx.get_mut(id) else {
            return; // a stale completion: the connection is gone, and so are its bytes
        };
        conn.direct = None;
        // Nothing else receives while a direct receive is in flight, so nothing can have
        // been kept meanwhile.
        debug_assert!(conn.inbuf.is_empty());
        conn.inbuf = buf;
        if conn.tearing_down {
            // Re-checked at the end of the turn so its slot and fd are freed.
            self.mark_dirty(idx);
            return;
        }
        match result {
            n if n > 0 => {
                self.ctx.stats.bytes_in += n as u64;
                let conn = &mut self.ctx.conns[idx as usize];
                conn.last_active = self.ctx.now;
                if conn.closing {
                    conn.inbuf.clear();
                    return;
                }
                let over_limit = conn.inbuf.len() > self.config.max_input_buffer;
                if over_limit || conn.input_blocked() {
                    // Kept in order; input resumes (and receives again) later.
                    self.check_input_limit(id);
                } else if conn.missing_input() > 0 {
                    // Still short of what the handler announced: it would only wait.
                    let missing = conn.missing_input();
                    self.arm_direct(idx, missing);
                } else {
                    let inbuf = std::mem::take(&mut conn.inbuf);
                    let kept = self.feed_kept(id, inbuf);
                    self.keep_input(id, kept);
                    self.rearm.push(idx);
                }
            }
            0 => {
                self.on_peer_closed(id);
            }
            err => {
                let errno = -err;
                if matches!(errno, libc::ECANCELED | libc::EINTR | libc::EAGAIN) {
                    self.rearm.push(idx);
                } else {
                    if errno != libc::ECONNRESET {
                        tracing::debug!(
                            "recv failed: {}",
                            std::io::Error::from_raw_os_error(errno)
                        );
                    }
                    self.teardown(idx);
                }
            }
        }
    }

    fn schedule_rearm(&mut self, idx: u32, more: bool) {
        if !more {
            self.rearm.push(idx);
        }
    }

    /// Hand received bytes to the handler: straight from the ring buffer when nothing was
    /// left over, else appended to the left-over, which the handler may keep parts of
    /// without copying. Only an unconsumed tail is copied.
    fn deliver(&mut self, id: ConnId, bid: u16, len: usize) {
        let idx = id.index as usize;
        let data = self.bufring.data(bid, len);
        if self.ctx.conns[idx].input_blocked() {
            // Paused: keep the bytes in order, and stop reading once a little is held.
            let conn = &mut self.ctx.conns[idx];
            conn.inbuf.extend_from_slice(data);
            let held = conn.inbuf.len();
            self.stop_reading_if_held(id, held);
            self.check_input_limit(id);
            return;
        }
        let conn = &mut self.ctx.conns[idx];
        let mut inbuf = std::mem::take(&mut conn.inbuf);
        // Announced anew by each call that leaves a request incomplete.
        conn.expect = 0;
        let kept = if inbuf.is_empty() {
            self.ctx.in_data = Some(id.index);
            let used = self
                .handler
                .on_data(&mut self.ctx, id, Input::borrowed(data))
                .min(data.len());
            self.ctx.in_data = None;
            let rest = &data[used..];
            if !rest.is_empty() {
                let expect = self.ctx.get_mut(id).map_or(0, |c| c.expect);
                inbuf.reserve(expect.max(rest.len()));
                inbuf.extend_from_slice(rest);
            }
            inbuf
        } else {
            inbuf.extend_from_slice(data);
            self.feed_kept(id, inbuf)
        };
        self.keep_input(id, kept);
    }

    /// Run the handler over kept input (appended bytes included) and return what it left.
    fn feed_kept(&mut self, id: ConnId, inbuf: BytesMut) -> BytesMut {
        if let Some(conn) = self.ctx.get_mut(id) {
            // Announced anew by each call that leaves a request incomplete.
            conn.expect = 0;
        }
        let frozen = inbuf.freeze();
        self.ctx.in_data = Some(id.index);
        let used = self
            .handler
            .on_data(&mut self.ctx, id, Input::shared(&frozen))
            .min(frozen.len());
        self.ctx.in_data = None;
        let rest = frozen.slice(used..);
        drop(frozen);
        // Unique again unless the handler kept parts; then copy only the tail.
        match rest.try_into_mut() {
            Ok(m) => m,
            Err(shared) => BytesMut::from(&shared[..]),
        }
    }

    /// Store what the handler did not consume, sized for what it expects; enforce the
    /// input limit and output backpressure.
    fn keep_input(&mut self, id: ConnId, kept: BytesMut) {
        let pause_at = self.config.output_pause_bytes;
        let Some(conn) = self.ctx.get_mut(id) else {
            return;
        };
        if kept.is_empty() {
            conn.expect = 0;
            conn.inbuf = kept;
        } else if conn.expect > kept.len() {
            let mut kept = kept;
            kept.reserve(conn.expect - kept.len());
            conn.inbuf = kept;
        } else {
            conn.inbuf = kept;
        }
        if !conn.output_paused && conn.unsent_output() >= pause_at && !conn.closing {
            // Backpressure: stop reading until the peer takes its replies.
            conn.output_paused = true;
        }
        if conn.input_blocked() {
            let held = conn.inbuf.len();
            self.stop_reading_if_held(id, held.max(1));
        } else {
            self.switch_to_direct(id);
        }
        self.check_input_limit(id);
    }

    /// A paused connection keeps reading until a little is held, so short pauses (a
    /// transaction in flight) cost nothing; past that its receive is cancelled and the
    /// peer meets TCP backpressure.
    fn stop_reading_if_held(&mut self, id: ConnId, held: usize) {
        let limit = self.config.recv_buffer_size;
        let Some(conn) = self.ctx.get_mut(id) else {
            return;
        };
        if conn.recv_armed && (held >= limit || conn.output_paused) && !conn.tearing_down {
            let token = Token::new(Kind::Recv, conn.generation, id.index);
            self.ctx.ring.cancel(token);
        }
    }

    fn check_input_limit(&mut self, id: ConnId) {
        let limit = self.config.max_input_buffer;
        let too_big = self.ctx.get_mut(id).is_some_and(|c| c.inbuf.len() > limit);
        if too_big {
            tracing::warn!(
                shard = self.ctx.shard,
                "closing connection over the input buffer limit ({limit} bytes)"
            );
            self.teardown(id.index);
        }
    }

    /// Deliver the kept input of connections resumed this turn, then read again.
    fn deliver_resumed(&mut self) {
        let mut rounds = 0;
        while !self.ctx.resumed.is_empty() && rounds < 4 {
            rounds += 1;
            for id in std::mem::take(&mut self.ctx.resumed) {
                self.resume(id);
            }
        }
        if !self.ctx.resumed.is_empty() {
            self.ctx.run_again = true;
        }
    }

    fn resume(&mut self, id: ConnId) {
        let Some(conn) = self.ctx.get_mut(id) else {
            return;
        };
        if conn.input_blocked() || conn.tearing_down {
            return;
        }
        if !conn.closing && !conn.inbuf.is_empty() {
            let inbuf = std::mem::take(&mut conn.inbuf);
            let kept = self.feed_kept(id, inbuf);
            self.keep_input(id, kept);
        }
        if let Some(conn) = self.ctx.get_mut(id) {
            if conn.peer_closed && !conn.input_blocked() {
                // Everything the peer sent before closing has been served.
                self.ctx.close(id);
                return;
            }
        }
        self.rearm.push(id.index);
    }

    /// An outgoing connection finished connecting (or failed to).
    fn on_connect(&mut self, slot: u32, result: i32) {
        let Some(owner) = self.ctx.ring.complete_connect(slot) else {
            return;
        };
        let idx = owner.index;
        let id = conn_of(owner);
        let Some(conn) = self.ctx.get_mut(id) else {
            return;
        };
        conn.connecting = false;
        if result < 0 || conn.tearing_down {
            let err = std::io::Error::from_raw_os_error(-result.min(-1));
            self.handler.on_connected(&mut self.ctx, id, Err(err));
            self.teardown(idx);
            return;
        }
        let conn = &mut self.ctx.conns[idx as usize];
        if let Some(fd) = conn.fd.as_ref() {
            let _ = socket2::SockRef::from(fd).set_tcp_nodelay(true);
        }
        self.handler.on_connected(&mut self.ctx, id, Ok(()));
        self.arm_recv(idx);
        self.mark_dirty(idx);
    }

    fn on_send(&mut self, slot: u32, result: i32, flags: u32) {
        if let Some(idx) = self.ctx.send_done(slot, result, flags) {
            self.teardown(idx);
        }
    }

    fn mark_dirty(&mut self, idx: u32) {
        self.ctx.mark_dirty(idx);
    }

    /// Send each dirty connection's output (one send per connection per turn, never two in
    /// flight), then progress closes.
    fn flush_connections(&mut self) {
        while let Some(idx) = self.ctx.dirty.pop() {
            let Some(conn) = self.ctx.conns.get_mut(idx as usize) else {
                continue;
            };
            conn.dirty = false;
            if conn.aborting && !conn.tearing_down {
                self.teardown(idx);
            }
            let Some(conn) = self.ctx.conns.get_mut(idx as usize) else {
                continue;
            };
            conn.dirty = false;
            self.ctx.start_send(idx);
            let conn = &self.ctx.conns[idx as usize];
            let flushed = !conn.send_in_flight
                && conn.out.is_empty()
                && conn.queued.is_empty()
                && conn.order.is_empty();
            let busy = conn.state.as_ref().is_some_and(|s| self.handler.is_busy(s));
            if conn.closing && !conn.tearing_down && flushed && !busy {
                self.teardown(idx);
            }
            let conn = &self.ctx.conns[idx as usize];
            if conn.tearing_down && conn.quiescent() {
                self.finalize(idx);
            }
        }
    }

    /// Stop the socket both ways so in-flight operations complete promptly; the slot is
    /// freed once nothing the kernel holds refers to it.
    fn teardown(&mut self, idx: u32) {
        let Some(conn) = self.ctx.conns.get_mut(idx as usize) else {
            return;
        };
        if !conn.tearing_down {
            conn.tearing_down = true;
            conn.closing = true;
            if let Some(fd) = &conn.fd {
                let _ = socket2::SockRef::from(fd).shutdown(std::net::Shutdown::Both);
            }
            if conn.recv_armed {
                let token = Token::new(Kind::Recv, conn.generation, idx);
                self.ctx.ring.cancel(token);
            }
            if let Some(slot) = conn.direct {
                let owner = Token::new(Kind::RecvInto, conn.generation, idx);
                self.ctx.ring.cancel_recv_into(owner, slot);
            }
        }
        // Re-checked at the end of the turn: freed once quiescent.
        self.mark_dirty(idx);
    }

    fn finalize(&mut self, idx: u32) {
        let mut conn = self.ctx.conns.remove(idx as usize);
        let counter = match conn.listener {
            Some(l) if l > 0 => &self.ctx.shared.extra_connections,
            _ => &self.ctx.shared.connections,
        };
        counter.fetch_sub(1, Ordering::Relaxed);
        if let Some(fd) = conn.fd.take() {
            self.ctx.ring.close(fd);
        }
        let id = ConnId {
            index: idx,
            generation: conn.generation,
        };
        if let Some(state) = conn.state.take() {
            self.handler.on_close(&mut self.ctx, id, state);
        }
    }

    fn rearm_receives(&mut self) {
        for idx in std::mem::take(&mut self.rearm) {
            self.arm_recv(idx);
        }
        self.arm_accept();
    }
}
