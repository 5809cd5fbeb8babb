//! Durability: what the server journals (effects), its shard-side journal, and start-up
//! replay. The log itself (records, segments, the WAL thread, group commit, snapshots
//! files) is the engine's `wal` module.

pub mod effect;
pub mod journal;
pub mod replay;
pub mod snapshot;

pub use journal::Journal;
