//! Engine configuration.

use std::net::SocketAddr;
use std::time::Duration;

/// How an engine is set up. `Default` gives 127.0.0.1:6379, one shard per allowed core.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Address every shard listens on (SO_REUSEPORT spreads connections across shards).
    /// Port 0 picks a free port; [`crate::EngineHandle::local_addr`] tells which. `None`
    /// runs shards without a listener (clients that only make outgoing connections).
    pub listen: Option<SocketAddr>,
    /// Number of shards (threads). 0 means one per core in `cores` (or per allowed core).
    pub shards: usize,
    /// Cores to pin shards to, round-robin; empty means the cores this process may run on.
    pub cores: Vec<usize>,
    /// Whether to pin shard threads at all.
    pub pin: bool,
    /// Total connections over all shards; past it, new connections get
    /// [`crate::Handler::rejection`] and are closed.
    pub max_connections: usize,
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
    /// `listen(2)` backlog.
    pub backlog: i32,
    /// How long shutdown waits for connections to flush before closing them anyway.
    pub shutdown_grace: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 6379))),
            shards: 0,
            cores: Vec::new(),
            pin: true,
            max_connections: 10_000,
            idle_timeout: None,
            max_input_buffer: 1 << 30,
            output_pause_bytes: 4 << 20,
            ring_entries: 1024,
            recv_buffers: 256,
            recv_buffer_size: 16 * 1024,
            mailbox_capacity: 4096,
            backlog: 511,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}
