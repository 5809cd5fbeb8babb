//! coreshard-engine: a thread-per-core network engine for Linux on io_uring.
//!
//! One shard per core, each a pinned thread with its own io_uring, its own SO_REUSEPORT
//! listener and its own slice of state. Connections are accepted with multishot accept,
//! read with multishot recv into a provided-buffer ring, and written with one send per
//! connection per loop turn. Shards never share data behind locks: they exchange
//! messages through single-producer/single-consumer mailboxes and wake each other with
//! `IORING_OP_MSG_RING`.
//!
//! An embedding protocol implements [`Handler`] (only [`Handler::on_data`] is required)
//! and calls [`start`]. The handler value is **per shard** (see [`Handler`]); state keyed
//! by name is given an owning shard with [`Ctx::shard_for`] and reached with [`Ctx::call`],
//! whose answers the engine keeps in each connection's request order.
//!
//! ```no_run
//! use coreshard_engine::{start, ConnId, Ctx, EngineConfig, Handler, Input};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     type Conn = ();
//!     type Msg = ();
//!     fn on_data(&mut self, ctx: &mut Ctx<Self>, conn: ConnId, data: Input<'_>) -> usize {
//!         ctx.write(conn, &data);
//!         data.len()
//!     }
//! }
//!
//! let config = EngineConfig::listen_on("127.0.0.1:0".parse().unwrap());
//! let engine = start(config, |_shard| Echo).expect("engine starts");
//! println!("listening on {:?}", engine.local_addr());
//! engine.shutdown();
//! engine.join().expect("clean exit");
//! ```
//!
//! See `engine/README.md` for the threading model and the API map, and
//! `engine/examples/` (echo, a sharded counter, a key-value store with TTLs).

#![warn(missing_docs)]

mod affinity;
mod config;
mod error;
mod handler;
mod mailbox;
mod ratelimit;
mod route;
mod runtime;
mod shard;
mod signal;
mod sys;
pub mod ttl;
pub mod wal;

pub use affinity::allowed_cores;
pub use config::EngineConfig;
pub use error::EngineError;
pub use handler::{ConnId, Handler, Input, ShardId, ShardInfo, WhileBusy};
pub use route::{DefaultKeyHash, KeyHash, Router};
pub use runtime::{start, EngineHandle, RemoteWaker};
pub use shard::{serve_while_busy, ConnMeta, Ctx, ReplySlot, ShardStats, TimerId, DIRECT_RECV_MIN};
pub use signal::{block_shutdown_signals, wait_for_shutdown_signal};
pub use sys::Features;

/// The README's code, compiled as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
