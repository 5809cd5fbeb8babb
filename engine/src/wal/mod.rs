//! The durable log: a write-ahead log written by a dedicated (optionally pinned) thread
//! with group commit, fixed-size preallocated segments, and snapshots written in bounded
//! steps that let old segments be deleted.
//!
//! # Using it
//!
//! 1. [`open`] before the engine starts: it recovers the directory and returns the
//!    [`Wal`] handle, one [`ShardLog`] per shard and a [`Recovery`] to replay: first
//!    [`Recovery::snapshot`], then [`Recovery::records`].
//! 2. Each shard owns its `ShardLog`: [`ShardLog::append`] at the one place the shard
//!    mutates state (it returns the record's LSN), [`ShardLog::flush`] once per loop
//!    turn *before* the turn's replies and cross-shard messages leave, and, with
//!    [`FsyncPolicy::Always`], replies held until [`ShardLog::durable`] reaches their
//!    LSN. [`Wal::set_notify`] tells the server when to look again.
//! 3. Snapshots: record [`Wal::position`] when a snapshot starts, write each shard's
//!    entries through [`Wal::snapshot_writer`] in bounded steps, then
//!    [`Wal::complete_snapshot`] publishes it and deletes the segments it replaces.
//! 4. [`Wal::shutdown`] after the engine stopped: everything handed over is written and
//!    synced.
//!
//! # The WAL thread and group commit
//!
//! Appends are encoded (CRC included) on the shard's own thread into a local buffer.
//! `flush` hands the turn's records over as one chunk through the shard's lock-free SPSC
//! ring ([`rtrb`]). The WAL thread takes all chunks that are there, writes them with one
//! vectored write at the end of the current segment through its own io_uring, and under
//! `Always` links an `fdatasync` to that write and waits for both. Only then does it
//! publish each shard's durable LSN (`Release` stores that `durable` loads with
//! `Acquire`) and call the notify callback for the shards that advanced. While a write
//! and its sync are in flight, shards keep handing over chunks; the next loop takes them
//! all as one batch: that is group commit, and the batch grows exactly as much as the
//! disk is slow.
//!
//! Policies: `Always` syncs every batch and publishes after the sync; `EverySec` writes
//! each batch, publishes once written to the OS, and syncs at most once a second (and at
//! shutdown); `No` never syncs except at shutdown.
//!
//! # Cross-shard order: tickets
//!
//! Every chunk takes a global ticket (one `fetch_add` on a shared counter) at the moment it
//! is handed over, and the WAL thread writes chunks strictly in ticket order: it writes
//! only a contiguous run of tickets, and a missing ticket (a chunk that took its ticket but
//! is still being pushed) holds back everything after it until it arrives. A shard takes
//! a ticket only when its ring has room, so a taken ticket always arrives. Consequence: if
//! shard A's chunk was handed over before shard B's chunk was even produced (B saw a
//! message A sent after its flush, or a client saw A's reply and then wrote to B), A's
//! ticket is smaller, so A's records come first in the log, and replay sees cause before
//! effect. Per shard, records are in LSN order.
//!
//! # Sleeping without losing wake-ups
//!
//! An idle WAL thread sleeps (`std::thread::park`). Before sleeping it sets a `parked`
//! flag and re-checks every ring; a producer pushes, then swaps the flag and unparks the
//! thread only if it was set. Both sides use sequentially consistent fences, so either the
//! thread sees the chunk or the producer sees the flag (Dekker), and a busy WAL thread
//! costs producers no system call.
//!
//! # Files
//!
//! The directory holds segments `{seq:020}.wal`, snapshot parts `snap-{id}-{part}.part`,
//! manifests `snapshot-{id}.manifest` and a `LOCK` file. The byte layouts are documented
//! where they are encoded: records in `wal/record.rs`, segments in `wal/segment.rs`,
//! snapshots and manifests in `wal/snapshot.rs`. Segments are preallocated and
//! zero-filled by a helper thread before they are needed, so a sync flushes data only;
//! a record never spans segments, and the WAL thread rotates between writes, syncing the
//! finished segment first (except under `No`). The end of the data in a segment is the
//! first zero length.
//!
//! # Disk errors
//!
//! A failed write or sync (ENOSPC, EIO...) sets [`ShardLog::error`] for every shard. The
//! records stay queued and are written again every 100 ms (the same bytes at the same
//! offset, then synced), and nothing is published as durable before that succeeds; then
//! the error clears. Under `EverySec` a failed periodic sync is retried the same way, but
//! the data written since the previous sync is not rewritten (the OS may have dropped
//! it): that policy does not promise durability across such a failure.

mod error;
mod producer;
mod record;
mod recover;
mod segment;
mod shared;
mod snapshot;
mod writer;

#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;

pub use error::WalError;
pub use producer::ShardLog;
pub use record::MAX_PAYLOAD;
pub use recover::{Record, Recovery};
pub use snapshot::SnapshotWriter;

use shared::{lock, Shared};

/// When the WAL thread syncs (Redis's `appendfsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Sync every batch; a record is durable once its batch's `fdatasync` completed.
    #[default]
    Always,
    /// Sync at most once a second (and at shutdown); a record counts as durable once
    /// written to the OS.
    EverySec,
    /// Never sync (the OS writes back when it likes) except at shutdown; a record counts
    /// as durable once written to the OS.
    No,
}

impl FsyncPolicy {
    pub(crate) fn code(self) -> u8 {
        match self {
            FsyncPolicy::Always => 0,
            FsyncPolicy::EverySec => 1,
            FsyncPolicy::No => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> FsyncPolicy {
        match code {
            1 => FsyncPolicy::EverySec,
            2 => FsyncPolicy::No,
            _ => FsyncPolicy::Always,
        }
    }
}

/// What recovery does with corruption in the middle of the log (invalid data followed by
/// records that were durable). A torn tail is always cut and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoverMode {
    /// Refuse to open, naming the file and offset.
    #[default]
    Strict,
    /// Cut the log at the corruption (dropping everything after it) and report it in
    /// [`Recovery::truncated`].
    Truncate,
}

/// The default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

/// The smallest segment size [`open`] accepts.
pub const MIN_SEGMENT_SIZE: u64 = 4096;

/// How to open the log.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// The directory holding segments, snapshots and manifests (created if missing).
    pub dir: PathBuf,
    /// When to sync.
    pub fsync: FsyncPolicy,
    /// Segment size in bytes (default [`DEFAULT_SEGMENT_SIZE`], at least
    /// [`MIN_SEGMENT_SIZE`]). A record larger than a segment gets a segment of its own.
    pub segment_size: u64,
    /// Pin the WAL thread to this core.
    pub core: Option<usize>,
    /// What recovery does with corruption in the middle of the log.
    pub recover: RecoverMode,
}

impl WalConfig {
    /// Defaults for `dir`: `Always`, 64 MiB segments, unpinned, `Strict` recovery.
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            fsync: FsyncPolicy::Always,
            segment_size: DEFAULT_SEGMENT_SIZE,
            core: None,
            recover: RecoverMode::Strict,
        }
    }
}

/// A point in the log: a segment and a byte offset in it. Ordered by log order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    /// The segment's sequence number.
    pub segment: u64,
    /// The byte offset in the segment (a record boundary).
    pub offset: u64,
}

/// One entry of a snapshot, as the server wrote it with [`SnapshotWriter::write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// The LSN the server attached to it.
    pub lsn: u64,
    /// The server's opaque payload.
    pub payload: Bytes,
}

/// Counters of the WAL thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Writes issued (one per batch, plus one per segment a batch continues into).
    pub batches: u64,
    /// Records written.
    pub records: u64,
    /// Record bytes written.
    pub bytes: u64,
    /// Completed `fdatasync`s.
    pub fsyncs: u64,
    /// Median latency of the last 1024 syncs (write+sync under `Always`), µs.
    pub fsync_p50_us: u64,
    /// 99th percentile of the same, µs.
    pub fsync_p99_us: u64,
    /// The most recent error, even if it has cleared since.
    pub last_error: Option<String>,
}

/// The WAL thread's handle. `Send + Sync`: share it (e.g. in an `Arc`) with whatever
/// writes snapshots.
pub struct Wal {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<(), WalError>>>,
    wal_thread: std::thread::Thread,
    /// Holds the directory's lock until the handle is gone.
    _lock: File,
}

/// Open (creating if needed) the log in `config.dir` for `shards` shards: recover it,
/// start the WAL thread, and return its handle, one [`ShardLog`] per shard (index =
/// shard) and what to replay.
///
/// Every `ShardLog` starts above the highest LSN found in the log and the snapshot, so
/// LSNs of different runs compare correctly even if the shard count changed. Fails if
/// another process has the directory open, on corruption in the middle of the log (with
/// [`RecoverMode::Strict`]), on a missing segment, or on I/O errors.
pub fn open(config: WalConfig, shards: usize) -> Result<(Wal, Vec<ShardLog>, Recovery), WalError> {
    if shards == 0 || shards > usize::from(u16::MAX) + 1 {
        return Err(WalError::Config(format!(
            "shard count {shards} must be between 1 and 65536"
        )));
    }
    if config.segment_size < MIN_SEGMENT_SIZE {
        return Err(WalError::Config(format!(
            "segment size {} is below the minimum of {MIN_SEGMENT_SIZE}",
            config.segment_size
        )));
    }
    let dir = config.dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| WalError::io("create directory", &dir, e))?;
    let lock_path = dir.join("LOCK");
    let lock_file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| WalError::io("open", &lock_path, e))?;
    match crate::sys::try_lock_exclusive(&lock_file) {
        Ok(true) => {}
        Ok(false) => return Err(WalError::Locked(dir)),
        Err(e) => return Err(WalError::io("lock", &lock_path, e)),
    }

    let scanned = recover::scan(&dir, config.recover, config.segment_size)?;
    let resume = scanned.resume;
    let file = if scanned.resume_exists {
        segment::open_rw(&segment::path(&dir, resume.segment))?
    } else {
        segment::create(&dir, resume.segment, config.segment_size)?
    };
    let shared = Arc::new(Shared::new(
        dir,
        config.fsync,
        shards,
        scanned.max_lsn,
        resume,
        scanned.recovery.log_bytes,
    ));
    let mut producers = Vec::with_capacity(shards);
    let mut consumers = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (p, c) = rtrb::RingBuffer::new(producer::RING_CAPACITY);
        producers.push(p);
        consumers.push(c);
    }
    let segment = writer::Segment::new(&shared, resume.segment, file, resume.offset)?;
    let thread = writer::spawn(writer::Setup {
        shared: shared.clone(),
        consumers,
        segment,
        segment_size: config.segment_size,
        core: config.core,
    })?;
    let wal_thread = thread.thread().clone();
    let logs = producers
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            ShardLog::new(
                i,
                scanned.max_lsn + 1,
                p,
                shared.clone(),
                wal_thread.clone(),
            )
        })
        .collect();
    let wal = Wal {
        shared,
        thread: Some(thread),
        wal_thread,
        _lock: lock_file,
    };
    Ok((wal, logs, scanned.recovery))
}

impl Wal {
    /// Install the callback the WAL thread calls, with a shard's index, after that
    /// shard's durable LSN advanced (the server passes an engine wake-up). It runs on the
    /// WAL thread between batches: keep it short and non-blocking.
    pub fn set_notify(&self, f: Box<dyn Fn(usize) + Send + Sync>) {
        *lock(&self.shared.notify) = Some(Arc::from(f));
    }

    /// Change the fsync policy while running (Redis's `CONFIG SET appendfsync`). The WAL
    /// thread applies it before its next write; moving away from `No` first syncs the
    /// segments that policy left unsynced, so nothing written before counts as durable
    /// under `Always` without being on disk. Durable LSNs follow the new policy from then
    /// on (under `Always`: synced; otherwise: written).
    pub fn set_policy(&self, policy: FsyncPolicy) {
        self.shared.set_policy(policy);
        self.wal_thread.unpark();
    }

    /// The fsync policy in force.
    pub fn policy(&self) -> FsyncPolicy {
        self.shared.policy()
    }

    /// A running total of log bytes: those after the recovered snapshot's start (what
    /// [`Recovery::log_bytes`] counted at open) plus every record byte written since. The
    /// difference of two readings is the log written between them, so the reading
    /// [`Wal::position_and_log_bytes`] gives when a snapshot starts tells how much log a
    /// later reading has beyond that snapshot (what a size-triggered compaction compares).
    pub fn log_bytes(&self) -> u64 {
        lock(&self.shared.position).1
    }

    /// [`Wal::position`] and [`Wal::log_bytes`] as of the same write.
    pub fn position_and_log_bytes(&self) -> (LogPosition, u64) {
        *lock(&self.shared.position)
    }

    /// Counters and sync latencies.
    pub fn stats(&self) -> WalStats {
        let s = &self.shared.stats;
        let (p50, p99) = lock(&self.shared.fsync_latency).percentiles();
        WalStats {
            batches: s.batches.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            fsync_p50_us: p50,
            fsync_p99_us: p99,
            last_error: lock(&self.shared.last_error).clone(),
        }
    }

    /// Write and sync everything handed over so far (whatever the policy), then stop the
    /// WAL thread. Call it after the shards stopped: records handed over later are lost.
    /// If writes keep failing, it gives up after 5 seconds with an error.
    pub fn shutdown(mut self) -> Result<(), WalError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), WalError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.wal_thread.unpark();
        let result = match thread.join() {
            Ok(result) => result,
            Err(_) => Err(WalError::Shutdown("the WAL thread panicked".into())),
        };
        // Records appended from now on would never be written: say so.
        self.shared.set_stopped();
        result
    }

    /// Start part `shard` of snapshot `id` (ids must grow from one snapshot to the next;
    /// see [`Recovery::snapshot_id`]).
    pub fn snapshot_writer(&self, shard: usize, id: u64) -> Result<SnapshotWriter, WalError> {
        if u32::try_from(shard).is_err() {
            return Err(WalError::Config(format!(
                "snapshot part {shard} out of range"
            )));
        }
        SnapshotWriter::create(&self.shared.dir, id, shard)
    }

    /// Publish snapshot `id`, made of parts `0..parts` (each [finished]), whose replay
    /// starts at `start` (the [`Wal::position`] recorded when the snapshot started):
    /// atomically write its manifest (temporary file, fsync, rename, fsync of the
    /// directory), then delete the segments wholly before `start` and older snapshots.
    /// Returns the snapshot's size: the bytes of its part files.
    ///
    /// [finished]: SnapshotWriter::finish
    pub fn complete_snapshot(
        &self,
        id: u64,
        parts: usize,
        start: LogPosition,
    ) -> Result<u64, WalError> {
        let dir = &self.shared.dir;
        if parts == 0 || u32::try_from(parts).is_err() {
            return Err(WalError::Snapshot {
                id,
                reason: format!("invalid part count {parts}"),
            });
        }
        if start > self.position() {
            return Err(WalError::Snapshot {
                id,
                reason: format!("start {start:?} is beyond the end of the log"),
            });
        }
        let mut max_lsn = self.shared.max_written_lsn.load(Ordering::Relaxed);
        let mut size = 0u64;
        for part in 0..parts {
            let path = dir.join(snapshot::part_name(id, part));
            let Ok(meta) = std::fs::metadata(&path) else {
                return Err(WalError::Snapshot {
                    id,
                    reason: format!("part {} is missing (not finished?)", path.display()),
                });
            };
            size = size.saturating_add(meta.len());
            let (_, lsn) = snapshot::part_summary(&path, id, part)?;
            max_lsn = max_lsn.max(lsn);
        }
        snapshot::Manifest {
            id,
            parts,
            start,
            max_lsn,
        }
        .publish(dir)?;
        // The new snapshot is durable; what it replaces can go.
        let entries = std::fs::read_dir(dir).map_err(|e| WalError::io("list", dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let obsolete = if let Some(seq) = segment::parse_name(name) {
                seq < start.segment
            } else if let Some(old) = snapshot::parse_manifest_name(name) {
                old < id
            } else if let Some((old, _)) = snapshot::parse_part_name(name) {
                old < id
            } else {
                false
            };
            if obsolete {
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    tracing::warn!("WAL: cannot remove {name}: {e}");
                }
            }
        }
        Ok(size)
    }

    /// Remove the parts of snapshot `id`, which failed and will not be published (finished
    /// parts; unfinished ones are removed by their writers): they would otherwise hold disk
    /// space until the next snapshot is published.
    /// A snapshot whose manifest is on disk was published (a failure after the manifest's
    /// rename, e.g. syncing the directory): its parts are kept, since recovery needs them.
    pub fn abandon_snapshot(&self, id: u64) {
        let dir = &self.shared.dir;
        if dir.join(snapshot::manifest_name(id)).exists() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let ours = name
                .to_str()
                .and_then(snapshot::parse_part_name)
                .is_some_and(|(part_id, _)| part_id == id);
            if ours {
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    tracing::warn!("WAL: cannot remove {}: {e}", entry.path().display());
                }
            }
        }
    }

    /// The current end of the written log. Every record handed over after this call is
    /// written after it (and so is anything handed over but not yet written), so replay
    /// from here misses nothing a snapshot started now may not contain. Record it when a
    /// snapshot starts and pass it to [`Wal::complete_snapshot`].
    pub fn position(&self) -> LogPosition {
        lock(&self.shared.position).0
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!("WAL: {e}");
        }
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.dir)
            .field("policy", &self.shared.policy())
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}
