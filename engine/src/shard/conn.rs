//! One connection's engine-side state: its socket, its input left-over, its output, and
//! which operations are in flight.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Instant;

use bytes::BytesMut;

use super::order::Order;
use crate::sys::Chunk;

pub(crate) struct Conn<S> {
    pub fd: Option<OwnedFd>,
    pub generation: u32,
    /// The handler's state; `None` only while it is being handed to `on_close`.
    pub state: Option<S>,
    /// Replies gathered this turn; leaves in one send.
    pub out: Vec<u8>,
    /// Output written before `out` as separate chunks (shared values); when non-empty,
    /// the next send is vectored over these chunks and then `out`.
    pub queued: Vec<Chunk>,
    /// The buffer of the last completed send, kept for reuse.
    pub spare: Vec<u8>,
    /// An incomplete request waiting for more bytes.
    pub inbuf: BytesMut,
    /// How many bytes the handler expects the incomplete request to take in total.
    pub expect: usize,
    /// A multishot (provided-buffer) receive is armed.
    pub recv_armed: bool,
    /// The armed multishot receive was cancelled to switch to direct receives; its last
    /// completions (data included) are still to come.
    pub recv_cancelling: bool,
    /// A direct receive is in flight: the ring's slot that holds `inbuf` meanwhile (so
    /// `inbuf` here is empty until the completion hands it back).
    pub direct: Option<u32>,
    /// The last large request was received directly, so the start of the next one is
    /// read directly too (a large one that follows then never touches the ring buffers).
    pub direct_mode: bool,
    pub send_in_flight: bool,
    /// Bytes of the send in flight (counted with `out` and `queued` for backpressure).
    pub in_flight_len: usize,
    /// The kernel copied one of this connection's zero-copy sends (its route copies
    /// anyway, as loopback does) or refused one, so its sends no longer go zero-copy.
    pub zc_copied: bool,
    /// The handler paused input ([`crate::Ctx::pause_input`]): bytes that still arrive are
    /// kept in `inbuf`, undelivered, and no receive is re-armed.
    pub paused: bool,
    /// Output passed the engine's pause threshold: input stops until it drains.
    pub output_paused: bool,
    /// Reply slots still owed ([`crate::Ctx::reserve_slot`]) and the output queued behind
    /// them.
    pub order: Order,
    /// Too many reply slots are owed: input stops until half of them are released.
    pub order_paused: bool,
    /// An outgoing connect is in flight.
    pub connecting: bool,
    /// No more input is delivered; close once the output is flushed.
    pub closing: bool,
    /// The socket is being torn down: wait for in-flight operations, then free.
    pub tearing_down: bool,
    /// Tear down at the end of the turn without sending pending output.
    pub aborting: bool,
    /// The peer closed its side while input was paused with bytes kept: those are still
    /// delivered when input resumes, then the connection closes.
    pub peer_closed: bool,
    /// Output is held until the shard's released tag reaches this
    /// ([`crate::Ctx::hold_output_until`]).
    pub hold_until: u64,
    pub dirty: bool,
    /// A receive completion of this connection waits in [`crate::Ctx`]'s deferred list
    /// (taken while the shard was busy): later ones must wait behind it.
    pub busy_deferred: bool,
    pub peer: Option<SocketAddr>,
    /// The socket's own address (accepted connections), as `getsockname` reported it.
    pub local: Option<SocketAddr>,
    /// Which listener accepted it (0: the main one; `None`: an outgoing connection).
    pub listener: Option<usize>,
    pub created: Instant,
    pub last_active: Instant,
}

impl<S> Conn<S> {
    pub fn new(fd: OwnedFd, generation: u32, peer: Option<SocketAddr>, now: Instant) -> Self {
        Conn {
            fd: Some(fd),
            generation,
            state: None,
            out: Vec::new(),
            queued: Vec::new(),
            spare: Vec::new(),
            inbuf: BytesMut::new(),
            expect: 0,
            recv_armed: false,
            recv_cancelling: false,
            direct: None,
            direct_mode: false,
            send_in_flight: false,
            in_flight_len: 0,
            zc_copied: false,
            paused: false,
            output_paused: false,
            order: Order::default(),
            order_paused: false,
            connecting: false,
            closing: false,
            tearing_down: false,
            aborting: false,
            peer_closed: false,
            hold_until: 0,
            dirty: false,
            busy_deferred: false,
            peer,
            local: None,
            listener: None,
            created: now,
            last_active: now,
        }
    }

    /// Bytes waiting to be sent.
    pub fn pending_output(&self) -> usize {
        self.out.len()
            + self
                .queued
                .iter()
                .map(|c| c.as_slice().len())
                .sum::<usize>()
    }

    /// Output not yet acknowledged by the kernel: queued, in flight, and held behind
    /// owed reply slots (so output limits and backpressure bound what waits on a slot).
    pub fn unsent_output(&self) -> usize {
        self.pending_output() + self.in_flight_len + self.order.held_bytes()
    }

    /// Whether input is held back (by the handler, output backpressure or owed replies).
    pub fn input_blocked(&self) -> bool {
        self.paused || self.output_paused || self.order_paused
    }

    /// Whether a receive of either kind may be armed now: none is armed, the connection is
    /// up and open, and its input is not held back.
    pub fn may_receive(&self) -> bool {
        !(self.recv_armed
            || self.direct.is_some()
            || self.closing
            || self.connecting
            || self.input_blocked()
            || self.peer_closed)
    }

    /// Append released output (a filled slot and what was written behind it) to what
    /// leaves next. An owned buffer that was copied is handed back for reuse.
    pub fn append(&mut self, chunk: Chunk) -> Option<Vec<u8>> {
        match chunk {
            // Copied rather than swapped in: `out` keeps its (reused) capacity.
            Chunk::Owned(bytes) => {
                self.out.extend_from_slice(&bytes);
                Some(bytes)
            }
            Chunk::Shared(bytes) => {
                if !self.out.is_empty() {
                    self.queued
                        .push(Chunk::Owned(std::mem::take(&mut self.out)));
                }
                self.queued.push(Chunk::Shared(bytes));
                None
            }
        }
    }

    /// Bytes the incomplete request still lacks, by the handler's announcement.
    pub fn missing_input(&self) -> usize {
        self.expect.saturating_sub(self.inbuf.len())
    }

    /// Nothing the kernel still holds refers to this connection.
    pub fn quiescent(&self) -> bool {
        !self.recv_armed && self.direct.is_none() && !self.send_in_flight && !self.connecting
    }
}
