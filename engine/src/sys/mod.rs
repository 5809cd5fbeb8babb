//! The io_uring boundary. Every `unsafe` block of the engine lives below this module, each
//! with the invariant it relies on. Above it, the shard loop is safe Rust: buffers that the
//! kernel reads or writes are owned here until their completion arrives.

mod bufring;
mod probe;
pub(crate) mod reentry;
mod ring;
mod token;
mod wal_io;

pub(crate) use bufring::BufRing;
pub use probe::Features;
pub(crate) use ring::{failed_wake, wake_rings, Chunk, Cqe, Ring, SendDone, WakeRing};
pub(crate) use token::{Kind, Token};
pub(crate) use wal_io::{try_lock_exclusive, WalRing};

use std::os::fd::{FromRawFd, OwnedFd};

/// Take ownership of the descriptor an accept completion returned (`result >= 0`).
pub(crate) fn accepted_fd(result: i32) -> OwnedFd {
    debug_assert!(result >= 0);
    // SAFETY: a successful accept completion's result is a new descriptor that nothing
    // else in this process owns; wrapping it makes us its only owner.
    unsafe { OwnedFd::from_raw_fd(result) }
}
