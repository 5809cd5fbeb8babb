//! coreshard-engine: a thread-per-core network engine for Linux on io_uring.
//!
//! One shard per core, each a pinned thread with its own io_uring, its own SO_REUSEPORT
//! listener and its own slice of state. Connections are accepted with multishot accept,
//! read with multishot recv into a provided-buffer ring, and written with one send per
//! connection per loop turn. Shards never share data behind locks: they exchange
//! messages through single-producer/single-consumer mailboxes and wake each other with
//! `IORING_OP_MSG_RING`.
//!
//! An embedding protocol implements [`Handler`] and calls [`start`]:
//!
//! ```no_run
//! use coreshard_engine::{start, ConnId, Ctx, EngineConfig, Handler, Input, ShardId};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     type Conn = ();
//!     type Msg = ();
//!     fn on_open(&mut self, _: &mut Ctx<Self>, _: ConnId, _: Option<std::net::SocketAddr>) {}
//!     fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize {
//!         ctx.write(conn, &data);
//!         data.len()
//!     }
//!     fn on_message(&mut self, _: &mut Ctx<Self>, _: ShardId, _: ()) {}
//! }
//!
//! let engine = start(EngineConfig::default(), |_| Echo).expect("engine starts");
//! engine.shutdown();
//! engine.join().expect("clean exit");
//! ```

#![warn(missing_docs)]

mod affinity;
mod config;
mod error;
mod handler;
mod mailbox;
mod ratelimit;
mod runtime;
mod shard;
mod signal;
mod sys;
pub mod ttl;
pub mod wal;

pub use affinity::allowed_cores;
pub use config::EngineConfig;
pub use error::EngineError;
pub use handler::{ConnId, Handler, Input, ShardId, ShardInfo};
pub use runtime::{start, EngineHandle, RemoteWaker};
pub use shard::{ConnMeta, Ctx, ShardStats, TimerId};
pub use signal::{block_shutdown_signals, wait_for_shutdown_signal};
pub use sys::Features;
