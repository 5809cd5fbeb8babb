//! What the server keeps per connection.

use bytes::Bytes;
use coreshard_protocol::Protocol;

use super::reply::Pending;
use super::txn::WatchedKey;
use crate::commands::multi::Queued;

/// A client connection's protocol state.
#[derive(Debug, Default)]
pub struct ConnState {
    /// CLIENT ID: unique across shards.
    pub id: u64,
    /// RESP2 until `HELLO 3`.
    pub proto: Protocol,
    /// Whether AUTH succeeded (or no password is configured).
    pub authed: bool,
    /// CLIENT SETNAME.
    pub name: Option<Bytes>,
    /// CLIENT SETINFO LIB-NAME.
    pub lib_name: Option<Bytes>,
    /// CLIENT SETINFO LIB-VER.
    pub lib_ver: Option<Bytes>,
    /// The last command run (CLIENT LIST's `cmd=`).
    pub last_cmd: &'static str,
    /// QUIT or a protocol error: nothing more is parsed.
    pub closing: bool,
    /// Replies waiting for parts from shards, by reply slot (the engine keeps the order).
    pub pending: Pending,
    /// Messages it published that wait for its earlier replies (see `publish_order`).
    pub outbound: super::publish_order::Outbound,
    /// Input is paused until a transaction (or WATCH) in flight is decided.
    pub held: bool,
    /// The hold is a RESP3 SUBSCRIBE's, released by the confirmation in this reply slot
    /// (by its sequence number) and by nothing else's completion.
    pub confirm_hold: Option<u64>,
    /// Input is paused because too many replies are owed or the mailboxes are backed up.
    pub backlogged: bool,
    /// Inside MULTI: the queued commands, and whether one was refused (EXEC then aborts).
    pub multi: Option<MultiState>,
    /// Keys under WATCH.
    pub watched: Vec<WatchedKey>,
    /// Pub/sub subscriptions (none for most connections).
    pub subs: Option<Box<crate::pubsub::Subs>>,
    /// Ran a command that reads or writes data since its output was last gated for the
    /// log (PING, INFO, CONFIG... show no data and never wait for the log).
    pub observed: bool,
    /// How far the request being received has been parsed.
    pub parse: coreshard_protocol::ParseState,
    /// Blocked in a blocking pop: its wait's id here (input is kept, not parsed).
    pub blocked: Option<u64>,
    /// Since when the output has been over the soft output limit.
    pub over_soft_since: Option<std::time::Instant>,
    /// Accepted on the metrics listener: HTTP, never RESP.
    pub http: bool,
}

/// A MULTI block being queued.
#[derive(Debug, Default)]
pub struct MultiState {
    /// Commands to run at EXEC.
    pub queued: Vec<Queued>,
    /// A command was refused while queueing: EXEC answers EXECABORT.
    pub dirty: bool,
}
