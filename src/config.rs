//! Command-line options and the settings every shard reads.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use clap::Parser;
use coreshard_protocol::Limits;

/// coreshard: a Redis-compatible server on a thread-per-core io_uring engine.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// TCP port (0 picks a free one; the startup line says which).
    #[arg(long, default_value_t = 6379)]
    pub port: u16,
    /// Number of shards (threads); default one per available core.
    #[arg(long, default_value_t = 0)]
    pub shards: usize,
    /// Cores to pin shards to, comma separated (e.g. 0,1); default the allowed cores.
    #[arg(long, value_delimiter = ',')]
    pub cores: Vec<usize>,
    /// Do not pin shard threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Most simultaneous clients.
    #[arg(long, default_value_t = 10_000)]
    pub maxclients: usize,
    /// Close connections idle this many seconds (0 = never).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
    /// Require clients to AUTH with this password.
    #[arg(long)]
    pub requirepass: Option<String>,
    /// Largest bulk argument in bytes.
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    pub proto_max_bulk_len: usize,
    /// Most bytes buffered for one client's incomplete request.
    #[arg(long, default_value_t = 1 << 30)]
    pub client_query_buffer_limit: usize,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// Settings shared read-only by every shard.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where clients connect (the real port once bound).
    pub listen: SocketAddr,
    /// How many shards run.
    pub shards: usize,
    /// Client limit.
    pub maxclients: usize,
    /// Idle timeout in seconds (0 = off).
    pub timeout: u64,
    /// Password, if any.
    pub requirepass: Option<String>,
    /// Request parsing limits.
    pub limits: Limits,
    /// Input buffer limit per client.
    pub query_buffer_limit: usize,
    /// When the server started (INFO uptime).
    pub started: Instant,
}

impl ServerConfig {
    /// Settings from the command line, before binding.
    pub fn from_args(args: &Args) -> Self {
        ServerConfig {
            listen: SocketAddr::new(args.bind, args.port),
            shards: args.shards,
            maxclients: args.maxclients,
            timeout: args.timeout,
            requirepass: args.requirepass.clone(),
            limits: Limits {
                max_bulk_len: args.proto_max_bulk_len,
                ..Limits::default()
            },
            query_buffer_limit: args.client_query_buffer_limit,
            started: Instant::now(),
        }
    }

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.timeout > 0).then(|| Duration::from_secs(self.timeout))
    }
}
