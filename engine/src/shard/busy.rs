//! Serving a shard's other connections while its handler runs long work.
//!
//! A handler that may run for long (a script) wraps the work in [`Ctx::long_work`] with a
//! [`WhileBusy`] answerer; code deep inside the work (an interpreter's hook) calls
//! [`serve_while_busy`] every so often. Each call reaps the shard's completions without
//! blocking and answers what the other connections sent with the answerer, then sends
//! those answers. Everything else waits for the next loop turn, in arrival order: accepts,
//! timers, messages from other shards, input of the connection whose request is running,
//! and input of connections that are paused (a transaction in flight, output full).
//! A connection whose input was left for later has all of its later input left too, so
//! its requests are never answered out of order.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::Ctx;
use crate::handler::{ConnId, Handler, WhileBusy};
use crate::sys::{self, Cqe, Kind, Token};

/// Input kept for one connection while busy, at most; past it, its input waits.
const MAX_BUSY_INPUT: usize = 1 << 20;

struct Busy<'a, H: Handler> {
    ctx: &'a mut Ctx<H>,
    answer: &'a mut dyn WhileBusy<H::Conn>,
}

impl<H: Handler> sys::reentry::Serve for Busy<'_, H> {
    fn serve(&mut self) -> bool {
        self.ctx.serve_busy(self.answer)
    }
}

/// Called from inside [`Ctx::long_work`] on the shard's thread (at any depth): answer the
/// shard's other connections now. Returns whether there was long work to serve for;
/// outside long work (or on another thread) it does nothing.
pub fn serve_while_busy() -> bool {
    sys::reentry::poke()
}

impl<H: Handler> Ctx<H> {
    /// Run `work`, which may take long, such that [`serve_while_busy`] called from inside
    /// it answers this shard's other connections with `answer` meanwhile.
    pub fn long_work<R>(
        &mut self,
        answer: &mut dyn WhileBusy<H::Conn>,
        work: impl FnOnce() -> R,
    ) -> R {
        let mut busy = Busy { ctx: self, answer };
        sys::reentry::scope(&mut busy, work)
    }

    fn serve_busy(&mut self, answer: &mut dyn WhileBusy<H::Conn>) -> bool {
        // What this turn had not dispatched yet comes first, then what arrived since.
        let from = self.batch_next.min(self.batch.len());
        let mut todo: Vec<Cqe> = self.batch.drain(from..).collect();
        let _ = self.ring.submit_and_wait(Some(Duration::ZERO));
        self.stats.enters += 1;
        let before = todo.len();
        self.ring.drain(&mut todo);
        self.stats.completions += (todo.len() - before) as u64;
        let mut out = Vec::new();
        for cqe in todo {
            if !self.busy_completion(&cqe, answer, &mut out) {
                // Kept for the next turn, in arrival order.
                self.deferred.push(cqe);
            }
        }
        // The turn's mail before its replies, as at the end of a turn.
        self.flush_mail();
        for i in 0..self.dirty.len() {
            let idx = self.dirty[i];
            // (An aborted connection is torn down at the end of the turn, unsent.)
            if self.conns.get(idx as usize).is_some_and(|c| !c.aborting) {
                self.start_send(idx);
            }
        }
        let _ = self.ring.submit_and_wait(Some(Duration::ZERO));
        self.stats.enters += 1;
        true
    }

    /// Handle one completion while busy; false if it must wait for the next turn.
    fn busy_completion(
        &mut self,
        cqe: &Cqe,
        answer: &mut dyn WhileBusy<H::Conn>,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(token) = Token::decode(cqe.user_data) else {
            return true;
        };
        match token.kind {
            Kind::Send => {
                if let Some(idx) = self.send_done(token.index, cqe.result, cqe.flags) {
                    // Torn down at the end of the turn.
                    if let Some(c) = self.conns.get_mut(idx as usize) {
                        c.aborting = true;
                    }
                    self.mark_dirty(idx);
                }
                true
            }
            Kind::Recv => self.busy_recv(token, cqe, answer, out),
            _ => false,
        }
    }

    fn busy_recv(
        &mut self,
        token: Token,
        cqe: &Cqe,
        answer: &mut dyn WhileBusy<H::Conn>,
        out: &mut Vec<u8>,
    ) -> bool {
        let id = ConnId {
            index: token.index,
            generation: token.generation,
        };
        let in_data = self.in_data;
        let pause_at = self.output_pause_bytes;
        let (now, bufring) = (self.now, std::rc::Rc::clone(&self.bufring));
        let Some(conn) = self
            .conns
            .get_mut(token.index as usize)
            .filter(|c| c.generation == token.generation)
        else {
            // A stale completion: the next turn recycles its buffer.
            return false;
        };
        if cqe.result == -libc::ENOBUFS && !conn.busy_deferred && !conn.tearing_down {
            // The ring ran dry: no data to keep in order, so read on at once.
            self.stats.recv_buffer_exhausted += 1;
            if !cqe.more() {
                conn.recv_armed = conn.fd.is_some();
                if let Some(fd) = conn.fd.as_ref().map(|fd| fd.as_raw_fd()) {
                    self.ring.recv(fd, bufring.group(), token);
                }
            }
            return true;
        }
        let data = match (cqe.buffer_id(), usize::try_from(cqe.result)) {
            (Some(bid), Ok(n)) if n > 0 => Some((bid, n)),
            _ => None,
        };
        let usable = data.is_some_and(|(_, n)| conn.inbuf.len() + n <= MAX_BUSY_INPUT)
            && in_data != Some(token.index)
            && !conn.busy_deferred
            && !conn.closing
            && !conn.tearing_down
            && !conn.input_blocked()
            // Owes replies: it may be the connection whose request is running (sent here
            // as a message); its later requests run after it, as in Redis.
            && conn.order.is_empty()
            && conn.unsent_output() < pause_at
            // In the middle of a large request received directly: its bytes go where the
            // direct receive puts them, next turn.
            && conn.direct.is_none()
            && !conn.recv_cancelling
            && !conn.direct_mode
            && conn.state.is_some();
        let Some((bid, n)) = data.filter(|_| usable) else {
            if !conn.busy_deferred {
                conn.busy_deferred = true;
                // Its input waits for the next turn: stop it taking more ring buffers
                // meanwhile (the rest waits in the socket; the next turn re-arms).
                if conn.recv_armed && cqe.more() && !conn.tearing_down {
                    self.ring.cancel(token);
                }
            }
            return false;
        };
        conn.inbuf.extend_from_slice(bufring.data(bid, n));
        conn.last_active = now;
        bufring.recycle(bid);
        let rearm = if cqe.more() {
            None
        } else {
            conn.recv_armed = conn.fd.is_some();
            conn.fd.as_ref().map(|fd| fd.as_raw_fd())
        };
        self.stats.bytes_in += n as u64;
        if let Some(fd) = rearm {
            self.ring.recv(fd, bufring.group(), token);
        }
        let Some(conn) = self.get_mut(id) else {
            return true;
        };
        let Some(state) = conn.state.as_mut() else {
            return true;
        };
        out.clear();
        let used = answer
            .on_data(state, &conn.inbuf, out)
            .min(conn.inbuf.len());
        let _ = conn.inbuf.split_to(used);
        if !conn.inbuf.is_empty() {
            // Left for later: delivered after the work, even if nothing more arrives.
            self.resumed.push(id);
        }
        if !out.is_empty() {
            let reply = std::mem::take(out);
            self.write(id, &reply);
            *out = reply;
        }
        true
    }

    /// Put the completions kept while busy at the head of this turn's batch.
    pub(crate) fn take_deferred(&mut self) {
        for cqe in &self.deferred {
            if let Some(token) = Token::decode(cqe.user_data) {
                if token.kind == Kind::Recv {
                    if let Some(c) = self.conns.get_mut(token.index as usize) {
                        c.busy_deferred = false;
                    }
                }
            }
        }
        self.batch.append(&mut self.deferred);
    }
}
