//! Snapshots without fork. A snapshot is a transaction that locks every shard whole (so
//! no cross-shard transaction is half applied anywhere), notes the log position replay
//! will start from, then has each shard copy its keyspace at once (values are refcounted,
//! so the copy is mostly pointers) and write it in bounded steps between I/O. When every
//! part is written the manifest is published and the segments it replaces are deleted.
//!
//! Each part starts with a *meta* entry naming the shard and its LSN at the copy: replay
//! skips that shard's records up to that LSN (they are in the copy), and applies the rest.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coreshard_engine::wal::{SnapshotWriter, WalError};

use super::effect;
use crate::db::{Db, Found};

/// A snapshot is being taken (one at a time, server-wide).
pub static IN_PROGRESS: AtomicBool = AtomicBool::new(false);
/// Unix time (s) of the last completed snapshot (0: none this run).
pub static LAST_SAVE: AtomicU64 = AtomicU64::new(0);
/// Snapshots completed this run.
pub static COMPLETED: AtomicU64 = AtomicU64::new(0);
/// Whether the last snapshot that ended succeeded (`rdb_last_bgsave_status`).
static LAST_OK: AtomicBool = AtomicBool::new(true);

/// Whether the last snapshot that ended succeeded (true before any).
pub fn last_ok() -> bool {
    LAST_OK.load(Ordering::Relaxed)
}
/// Records journaled by all shards this run (each shard adds its own once per turn).
pub static CHANGES: AtomicU64 = AtomicU64::new(0);
/// `CHANGES` when the last snapshot started.
static CHANGES_AT_SAVE: AtomicU64 = AtomicU64::new(0);

// The persisted size, as Redis reports its AOF's (`aof_current_size`, `aof_base_size`):
// the newest snapshot plus the log after its start, which is what a snapshot replaces.
// One lock, so the size check never sees a new snapshot's size with the old log mark.
struct Sizes {
    /// Bytes of the newest snapshot's files.
    snapshot: u64,
    /// `Wal::log_bytes` when the newest snapshot started (0 for the one recovered at
    /// start: the running total counts from its start).
    log_at_snapshot: u64,
    /// The size after the last snapshot, or the recovered snapshot's size at start
    /// (`aof_base_size`; Redis's is its base file's size after loading).
    base: u64,
    /// Snapshots that failed in a row, and when the last one failed: compaction by size
    /// backs off after repeated failures rather than rewriting a full disk every second.
    failures: u32,
    failed_at: Option<Instant>,
}

static SIZES: Mutex<Sizes> = Mutex::new(Sizes {
    snapshot: 0,
    log_at_snapshot: 0,
    base: 0,
    failures: 0,
    failed_at: None,
});

/// Failures in a row before compaction by size backs off (Redis's
/// `AOF_REWRITE_LIMITE_THRESHOLD`); it then waits a minute, doubling per further failure up
/// to an hour.
const BACKOFF_AFTER: u32 = 3;

fn sizes() -> std::sync::MutexGuard<'static, Sizes> {
    SIZES.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sizes {
    fn current(&self, log_now: u64) -> u64 {
        self.snapshot
            .saturating_add(log_now.saturating_sub(self.log_at_snapshot))
    }
}

/// Note what recovery found: the snapshot's size (the base, as Redis takes its base file's)
/// and the log total's start.
pub fn recovered(snapshot_bytes: u64) {
    let mut s = sizes();
    s.snapshot = snapshot_bytes;
    s.log_at_snapshot = 0;
    s.base = snapshot_bytes;
}

/// A snapshot of `snapshot_bytes` was published, which started at log total
/// `log_at_start`; the log total is `log_now`.
pub fn published(snapshot_bytes: u64, log_at_start: u64, log_now: u64) {
    let mut s = sizes();
    s.snapshot = snapshot_bytes;
    s.log_at_snapshot = log_at_start;
    s.base = s.current(log_now);
}

/// (`aof_current_size`, `aof_base_size`) given the log total `log_now`.
pub fn size_and_base(log_now: u64) -> (u64, u64) {
    let s = sizes();
    (s.current(log_now), s.base)
}

/// Whether the persisted size calls for a compaction, given the log total `log_now`
/// (Redis's `auto-aof-rewrite-percentage` / `-min-size` rule: above the minimum size and
/// grown by at least `percent` over the base; `percent` 0: never).
pub fn rewrite_due(percent: u64, min_size: u64, log_now: u64) -> bool {
    let s = sizes();
    let current = s.current(log_now);
    if percent == 0 || current <= min_size {
        return false;
    }
    if s.failures >= BACKOFF_AFTER {
        let wait = Duration::from_secs(60 << (s.failures - BACKOFF_AFTER).min(6))
            .min(Duration::from_secs(3600));
        if s.failed_at.is_some_and(|t| t.elapsed() < wait) {
            return false;
        }
    }
    let growth = u128::from(current) * 100 / u128::from(s.base.max(1));
    growth >= 100 + u128::from(percent)
}

/// A `--save` schedule: snapshot after `secs` seconds if at least `changes` writes happened
/// (any rule, as in Redis).
pub fn parse_schedule(s: &str) -> Result<Schedule, String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.len() % 2 != 0 {
        return Err(format!(
            "--save needs pairs of seconds and changes, got '{s}'"
        ));
    }
    words
        .chunks(2)
        .map(|p| match (p[0].parse(), p[1].parse()) {
            (Ok(secs), Ok(changes)) => Ok((secs, changes)),
            _ => Err(format!("invalid --save pair '{} {}'", p[0], p[1])),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Schedule)
}

/// `--save` pairs of (seconds, changes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule(pub Vec<(u64, u64)>);

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words: Vec<String> = self.0.iter().map(|(s, c)| format!("{s} {c}")).collect();
        f.write_str(&words.join(" "))
    }
}

/// Whether the schedule asks for a snapshot now (`since`: seconds since the last one or
/// since start).
pub fn due(schedule: &[(u64, u64)], since: u64) -> bool {
    let changes = CHANGES
        .load(Ordering::Relaxed)
        .saturating_sub(CHANGES_AT_SAVE.load(Ordering::Relaxed));
    schedule
        .iter()
        .any(|&(secs, min)| changes >= min.max(1) && since >= secs)
}

/// Note the change count a snapshot starts from.
pub fn mark_start() {
    CHANGES_AT_SAVE.store(CHANGES.load(Ordering::Relaxed), Ordering::Relaxed);
}

const META: u8 = 0;
const KEY: u8 = 1;
const OBJ: u8 = 2;

/// Payload of a part's first entry: which shard, as of which of its LSNs.
pub fn meta_payload(shard: usize) -> Vec<u8> {
    let mut out = vec![META];
    out.extend_from_slice(&(shard as u64).to_le_bytes());
    out
}

/// Payload of a key entry.
pub fn key_payload(key: &[u8], value: Found<'_>, deadline: u64) -> Vec<u8> {
    match value {
        Found::Bytes(v) => {
            let mut out = vec![KEY];
            effect::set_payload(&mut out, key, v.as_slice(), deadline);
            out
        }
        Found::Object(o) => {
            let (ty, data) = o.encode();
            let e = effect::Effect::Obj {
                key: Bytes::copy_from_slice(key),
                ty,
                data: Bytes::from(data),
                deadline,
            };
            let (_, payload) = e.encode();
            let mut out = Vec::with_capacity(payload.len() + 1);
            out.push(OBJ);
            out.extend_from_slice(&payload);
            out
        }
    }
}

/// A decoded snapshot entry.
pub enum Entry {
    /// The part of shard `shard` holds everything it journaled up to the entry's LSN.
    Meta { shard: u64 },
    /// A key (its payload decodes as an effect of this kind: SET or OBJ).
    Key(u8, Bytes),
}

/// Decode an entry payload.
pub fn decode(payload: &Bytes) -> Option<Entry> {
    match *payload.first()? {
        META => {
            let b: [u8; 8] = payload.get(1..9)?.try_into().ok()?;
            Some(Entry::Meta {
                shard: u64::from_le_bytes(b),
            })
        }
        KEY => Some(Entry::Key(effect::kind::SET, payload.slice(1..))),
        OBJ => Some(Entry::Key(effect::kind::OBJ, payload.slice(1..))),
        _ => None,
    }
}

/// Try to start a snapshot; false if one is running.
pub fn begin() -> bool {
    let started = !IN_PROGRESS.swap(true, Ordering::AcqRel);
    if started {
        mark_start();
    }
    started
}

/// A snapshot ended (published or failed).
pub fn end(ok: bool) {
    LAST_OK.store(ok, Ordering::Relaxed);
    if ok {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        LAST_SAVE.store(now, Ordering::Relaxed);
        COMPLETED.fetch_add(1, Ordering::Relaxed);
        sizes().failures = 0;
    } else {
        let mut s = sizes();
        s.failures = s.failures.saturating_add(1);
        s.failed_at = Some(Instant::now());
    }
    IN_PROGRESS.store(false, Ordering::Release);
}

/// One shard's part being written: the keyspace as it was at `lsn`, read from the map's
/// copy-on-write snapshot (`TtlMap::snapshot_begin`) a step at a time between I/O, while
/// the shard goes on serving writes.
pub struct PartJob {
    /// Snapshot id.
    pub id: u64,
    /// The shard that coordinates the snapshot.
    pub coordinator: usize,
    writer: Option<SnapshotWriter>,
    lsn: u64,
}

/// Entries one step writes before yielding to I/O.
const STEP: usize = 4096;

impl PartJob {
    /// A part for `shard` as of `lsn`: starts `db`'s snapshot, now.
    pub fn new(
        id: u64,
        coordinator: usize,
        shard: usize,
        mut writer: SnapshotWriter,
        lsn: u64,
        db: &mut Db,
        now: u64,
    ) -> Result<PartJob, WalError> {
        writer.write(lsn, &meta_payload(shard))?;
        db.snapshot_begin(now);
        Ok(PartJob {
            id,
            coordinator,
            writer: Some(writer),
            lsn,
        })
    }

    /// Write the next step of `db`'s snapshot; `Ok(true)` once the part is finished and
    /// synced. On an error the snapshot is dropped.
    pub fn step(&mut self, db: &mut Db) -> Result<bool, WalError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(true);
        };
        let lsn = self.lsn;
        let mut failed = None;
        let done = db.snapshot_step(STEP, |k, v, d| {
            if failed.is_none() {
                failed = writer.write(lsn, &key_payload(k, v, d)).err();
            }
        });
        if let Some(e) = failed {
            db.snapshot_abort();
            self.writer = None;
            return Err(e);
        }
        if !done {
            writer.start_writeback();
            return Ok(false);
        }
        if let Some(w) = self.writer.take() {
            w.finish()?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rdb_last_bgsave_status` is the last snapshot's outcome: ok again after a failure
    /// is followed by a success. The size rule: above the minimum and grown by the
    /// percentage over the base; 0 turns it off.
    #[test]
    fn status_follows_the_last_snapshot_and_the_size_rule_holds() {
        assert!(begin());
        end(false);
        assert!(!last_ok());
        assert!(begin());
        end(true);
        assert!(last_ok());

        recovered(1000);
        assert_eq!(size_and_base(0), (1000, 1000));
        assert!(!rewrite_due(100, 10_000, 5000), "below the minimum");
        assert!(!rewrite_due(100, 100, 900), "grown 90 %");
        assert!(rewrite_due(100, 100, 1000), "doubled");
        assert!(!rewrite_due(0, 100, 1_000_000), "percentage 0: never");
        published(500, 1000, 1200);
        assert_eq!(size_and_base(1200), (700, 700));
        assert!(rewrite_due(100, 100, 1000 + 900));
        assert!(!rewrite_due(100, 100, 1000 + 800));
    }
}
