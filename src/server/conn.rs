//! What the server keeps per connection.

use bytes::Bytes;
use coreshard_protocol::Protocol;

use super::reply::ReplyQueue;

/// A client connection's protocol state.
#[derive(Debug)]
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
    /// Replies owed, in request order.
    pub replies: ReplyQueue,
}
