//! Engine configuration.

use std::net::SocketAddr;
use std::time::Duration;

/// How an engine is set up.
///
/// There is no default address: set [`EngineConfig::listen`] (or build the config with
/// [`EngineConfig::listen_on`]), or ask for an engine without a listener with
/// [`EngineConfig::outgoing_only`]; [`crate::start`] refuses a config that says neither.
/// Everything else has a default, notably **one shard per allowed core**: a handler's
/// fields are per-shard state (see [`crate::Handler`]).
///
/// ```
/// use coreshard_engine::EngineConfig;
/// let config = EngineConfig {
///     shards: 2,
///     ..EngineConfig::listen_on("127.0.0.1:0".parse().unwrap())
/// };
/// assert_eq!(config.listen.map(|a| a.port()), Some(0));
/// ```
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Address every shard listens on (SO_REUSEPORT spreads connections across shards).
    /// Port 0 picks a free port; [`crate::EngineHandle::local_addr`] tells which. Must
    /// be set unless `outgoing_only` is.
    pub listen: Option<SocketAddr>,
    /// More addresses every shard listens on, bound like `listen` (refused if in use,
    /// port 0 picks a free port, SO_REUSEPORT across the shards); a connection knows which
    /// one accepted it ([`crate::ConnMeta::listener`], [`crate::Ctx::listener_of`]): `1 + i`
    /// for `extra_listen[i]`. Needs `listen`. [`crate::EngineHandle::extra_addrs`] tells
    /// the bound addresses.
    pub extra_listen: Vec<SocketAddr>,
    /// Run shards without a listener (clients that only make outgoing connections with
    /// [`crate::Ctx::connect`]); `listen` must then be `None`.
    pub outgoing_only: bool,
    /// Number of shards (threads). 0 (the default) means one per core in `cores` (or per
    /// allowed core). Each shard has its own handler value and so its own state.
    pub shards: usize,
    /// Cores to pin shards to, round-robin; empty means the cores this process may run on.
    pub cores: Vec<usize>,
    /// Whether to pin shard threads at all.
    pub pin: bool,
    /// Total connections over all shards; past it, new connections get
    /// [`crate::Handler::rejection`] and are closed.
    pub max_connections: usize,
    /// Total connections over all shards on the [`EngineConfig::extra_listen`] addresses,
    /// counted apart from `max_connections`; past it, new ones get
    /// [`crate::Handler::rejection_for`] and are closed.
    pub extra_max_connections: usize,
    /// Close connections idle for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Most bytes a connection may have buffered as an incomplete request.
    pub max_input_buffer: usize,
    /// Output backpressure: once a connection has this many bytes of output not yet taken
    /// by the kernel, the engine stops reading from it (no data lost, no disconnect) until
    /// the output drains below half of it.
    pub output_pause_bytes: usize,
    /// Submission queue entries per shard ring.
    pub ring_entries: u32,
    /// Provided receive buffers per shard (a power of two).
    pub recv_buffers: u16,
    /// Size of each provided receive buffer.
    pub recv_buffer_size: usize,
    /// Capacity, in batches, of each shard-to-shard mailbox.
    pub mailbox_capacity: usize,
    /// Reply slots ([`crate::Ctx::reserve_slot`], [`crate::Ctx::call`]) a connection may
    /// owe before its input pauses (until half are released). At least 1.
    pub max_owed_replies: usize,
    /// `listen(2)` backlog.
    pub backlog: i32,
    /// How long shutdown waits for connections to flush before closing them anyway.
    pub shutdown_grace: Duration,
    /// Send zero-copy (`IORING_OP_SEND_ZC` / `SENDMSG_ZC`) when one send carries at least
    /// this many bytes of shared chunks ([`crate::Ctx::write_shared`]); 0 (the default)
    /// never. The kernel then reads the value in place instead of copying it into socket
    /// buffers, and the engine keeps the value alive until the kernel's notification. It
    /// pays for large values sent through a NIC; over loopback the kernel copies anyway
    /// and the extra completion and page pinning cost more than they save (see
    /// ARCHITECTURE.md, "Zero-copy sends"). Ignored where the kernel lacks it.
    pub send_zc_min: usize,
}

impl EngineConfig {
    /// The defaults, listening on `addr` (port 0: a free port).
    pub fn listen_on(addr: SocketAddr) -> Self {
        EngineConfig {
            listen: Some(addr),
            ..EngineConfig::default()
        }
    }

    /// The defaults, without a listener (only outgoing connections).
    pub fn outgoing_only() -> Self {
        EngineConfig {
            outgoing_only: true,
            ..EngineConfig::default()
        }
    }
}

impl Default for EngineConfig {
    /// No listen address (set one, or `outgoing_only`), one shard per allowed core.
    fn default() -> Self {
        EngineConfig {
            listen: None,
            extra_listen: Vec::new(),
            outgoing_only: false,
            shards: 0,
            cores: Vec::new(),
            pin: true,
            max_connections: 10_000,
            extra_max_connections: 64,
            idle_timeout: None,
            max_input_buffer: 1 << 30,
            output_pause_bytes: 4 << 20,
            ring_entries: 1024,
            recv_buffers: 256,
            recv_buffer_size: 16 * 1024,
            mailbox_capacity: 4096,
            max_owed_replies: 16 * 1024,
            backlog: 511,
            shutdown_grace: Duration::from_secs(5),
            send_zc_min: 0,
        }
    }
}
