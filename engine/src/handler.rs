//! The protocol side of the engine: what an embedding team implements.

use std::net::SocketAddr;
use std::ops::Deref;

use bytes::Bytes;

use crate::shard::Ctx;

/// The bytes handed to [`Handler::on_data`]: a received ring buffer (borrowed for the call
/// only) or the connection's reassembly buffer, which can be shared without a copy.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    data: &'a [u8],
    shared: Option<&'a Bytes>,
}

impl<'a> Input<'a> {
    /// Input that lives only for the call (a ring buffer, or any borrowed bytes).
    pub fn borrowed(data: &'a [u8]) -> Self {
        Input { data, shared: None }
    }

    /// Input backed by a refcounted buffer whose parts can be kept.
    pub fn shared(data: &'a Bytes) -> Self {
        Input {
            data,
            shared: Some(data),
        }
    }

    /// A zero-copy handle on `part`, a sub-slice of this input, when the input is shared
    /// (`None` for borrowed input: copy instead). Keeping it keeps the whole buffer alive,
    /// so take it only for large parts.
    pub fn share(&self, part: &[u8]) -> Option<Bytes> {
        let shared = self.shared?;
        let base = shared.as_ptr() as usize;
        let start = part.as_ptr() as usize;
        let inside = start >= base && start + part.len() <= base + shared.len();
        inside.then(|| shared.slice_ref(part))
    }
}

impl Deref for Input<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.data
    }
}

/// Identifies one connection on one shard. It carries a generation, so an id kept after
/// its connection closed never reaches a newer connection that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// A number unique among this shard's live connections (for logs and maps).
    pub fn as_u64(self) -> u64 {
        u64::from(self.generation) << 32 | u64::from(self.index)
    }

    /// The id whose [`ConnId::as_u64`] is `v` (for tables keyed by number, and tests). It
    /// names a live connection only if one with that number exists.
    pub fn from_u64(v: u64) -> ConnId {
        ConnId {
            index: v as u32,
            generation: (v >> 32) as u32,
        }
    }
}

/// Index of a shard, `0..shard_count`.
pub type ShardId = usize;

/// What a shard is told when its handler is created.
#[derive(Debug, Clone, Copy)]
pub struct ShardInfo {
    /// This shard.
    pub shard: ShardId,
    /// How many shards the engine runs.
    pub shards: usize,
    /// The core the shard is pinned to, if pinned.
    pub core: Option<usize>,
}

/// A protocol running on the engine.
///
/// # State is per shard
///
/// [`crate::start`] creates **one handler value per shard**, on the shard's own (pinned)
/// thread, and never shares it: every field of the handler is that shard's private state,
/// touched without locks. With more than one shard (the default is one per core) a field
/// such as a `HashMap` of counters is therefore *not* global: a connection sees only the
/// map of the shard that accepted it. To keep one logical map over all shards, give each
/// key an owner ([`Ctx::shard_for`], [`crate::Router`]) and run every request for the key
/// there with [`Ctx::call`] (answer in request order) or [`Ctx::run_on`] /
/// [`Ctx::send`] (fire and forget). State that really is global (a counter of all
/// connections, a configuration switch) belongs in an `Arc` of atomics captured by the
/// `make_handler` closure.
///
/// Per-connection state is [`Handler::Conn`], created in [`Handler::on_open`].
///
/// # Output order
///
/// Output written to a connection ([`Ctx::write`], [`Ctx::state_and_output`]) leaves in
/// the order written; answers computed on other shards ([`Ctx::call`],
/// [`Ctx::reserve_slot`]) take their place in that order, and anything written after
/// them waits for them.
///
/// Only [`Handler::on_data`] must be written; every other hook has a default.
pub trait Handler: Sized + 'static {
    /// Per-connection protocol state ([`Handler::on_open`] creates it; by default
    /// `Default::default()`).
    type Conn: Default;
    /// Messages between shards ([`Ctx::send`], [`Handler::on_message`]); `()` if the
    /// handler sends none. A shard's messages for one destination produced during one
    /// loop turn travel as one batch.
    type Msg: Send + 'static;

    /// Called once on the shard's thread before it serves anything (arm timers here).
    fn on_start(&mut self, _ctx: &mut Ctx<Self>) {}

    /// A connection was accepted; return its state. The default returns
    /// `Self::Conn::default()`.
    fn on_open(
        &mut self,
        _ctx: &mut Ctx<Self>,
        _conn: ConnId,
        _peer: Option<SocketAddr>,
    ) -> Self::Conn {
        Self::Conn::default()
    }

    /// Bytes arrived. `data` is everything not yet consumed for this connection: the
    /// received buffer itself when nothing was left over (zero copy), else the left-over
    /// tail with the new bytes appended (shareable, see [`Input::share`]). Return how many
    /// bytes were consumed; the rest is kept for the next call, in a buffer sized by
    /// [`Ctx::expect_input`] if the handler knows how much is coming.
    fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize;

    /// A message sent with [`Ctx::send`] from shard `from` (possibly this shard). The
    /// default drops it. (Work sent with [`Ctx::run_on`] or [`Ctx::call`] and answers to
    /// reply slots do not come here: the engine runs and files them itself.)
    fn on_message(&mut self, _ctx: &mut Ctx<Self>, _from: ShardId, _msg: Self::Msg) {}

    /// An outgoing connection made with [`Ctx::connect`] is established (`Ok`) or failed
    /// (`Err`; it is closed next).
    fn on_connected(&mut self, _ctx: &mut Ctx<Self>, _conn: ConnId, _result: std::io::Result<()>) {}

    /// The shard is about to stop (engine shutdown); last chance to hand results out.
    fn on_stop(&mut self, _ctx: &mut Ctx<Self>) {}

    /// The connection is gone; its state is handed back for clean-up.
    fn on_close(&mut self, _ctx: &mut Ctx<Self>, _conn: ConnId, _state: Self::Conn) {}

    /// A timer armed with [`Ctx::set_timer`] fired.
    fn on_timer(&mut self, _ctx: &mut Ctx<Self>, _cookie: u64) {}

    /// Called once at the end of every loop turn, before output is sent and batches are
    /// handed to other shards.
    fn on_turn_end(&mut self, _ctx: &mut Ctx<Self>) {}

    /// Asked right before the shard sleeps: whether something published by another
    /// thread (see [`crate::RemoteWaker`]) needs a turn now. Must be cheap (an atomic load).
    fn needs_turn(&self) -> bool {
        false
    }

    /// Whether a connection still waits for work it started that the engine does not
    /// know of (reply slots it does know of: a graceful close always waits for those). A
    /// graceful close waits until this is false.
    fn is_busy(&self, _state: &Self::Conn) -> bool {
        false
    }

    /// Bytes sent to a connection refused because `max_connections` was reached, before it
    /// is closed.
    fn rejection(&self) -> &[u8] {
        b""
    }

    /// What a connection refused on listener `listener` gets (0: the main listener, 1 + i:
    /// `extra_listen[i]`); by default [`Handler::rejection`].
    fn rejection_for(&self, listener: usize) -> &[u8] {
        let _ = listener;
        self.rejection()
    }
}

/// What a shard answers while its handler runs long work ([`Ctx::long_work`]): requests
/// of its other connections arrive meanwhile, and a protocol usually answers them with a
/// "busy" error rather than keep them waiting (Redis's `-BUSY` during a long script).
pub trait WhileBusy<C> {
    /// `data` is a connection's input not consumed yet (it may end inside a request) and
    /// `state` its state. Write replies to `out` and return how many bytes were consumed.
    /// What is left is kept, in order, with everything that arrives after it, and goes
    /// to [`Handler::on_data`] once the work is over (so returning 0 makes the connection
    /// simply wait).
    fn on_data(&mut self, state: &mut C, data: &[u8], out: &mut Vec<u8>) -> usize;
}
