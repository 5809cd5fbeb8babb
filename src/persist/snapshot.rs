//! Snapshots without fork. A snapshot is a transaction that locks every shard whole (so
//! no cross-shard transaction is half applied anywhere), notes the log position replay
//! will start from, then has each shard copy its keyspace at once (values are refcounted,
//! so the copy is mostly pointers) and write it in bounded steps between I/O. When every
//! part is written the manifest is published and the segments it replaces are deleted.
//!
//! Each part starts with a *meta* entry naming the shard and its LSN at the copy: replay
//! skips that shard's records up to that LSN (they are in the copy), and applies the rest.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use coreshard_engine::wal::{SnapshotWriter, WalError};

use super::effect;

/// A snapshot is being taken (one at a time, server-wide).
pub static IN_PROGRESS: AtomicBool = AtomicBool::new(false);
/// Unix time (s) of the last completed snapshot (0: none this run).
pub static LAST_SAVE: AtomicU64 = AtomicU64::new(0);
/// Snapshots completed, and failed, this run.
pub static COMPLETED: AtomicU64 = AtomicU64::new(0);
/// Snapshots that failed this run.
pub static FAILED: AtomicU64 = AtomicU64::new(0);
/// Records journaled by all shards this run (each shard adds its own once per turn).
pub static CHANGES: AtomicU64 = AtomicU64::new(0);
/// `CHANGES` when the last snapshot started.
static CHANGES_AT_SAVE: AtomicU64 = AtomicU64::new(0);

// The persisted size, as Redis reports its AOF's (`aof_current_size`, `aof_base_size`):
// the newest snapshot plus the log after its start, which is what a snapshot replaces.
/// Bytes of the newest snapshot's files.
static SNAPSHOT_BYTES: AtomicU64 = AtomicU64::new(0);
/// `Wal::log_bytes` when the newest snapshot started (0 for the one recovered at start:
/// the running total counts from its start).
static LOG_AT_SNAPSHOT: AtomicU64 = AtomicU64::new(0);
/// The size at start or after the last snapshot (`aof_base_size`).
static BASE_SIZE: AtomicU64 = AtomicU64::new(0);
/// Snapshots that failed in a row, and when the last one failed (Unix ms): compaction by
/// size backs off after failures rather than rewriting a full disk every second.
static FAILED_IN_A_ROW: AtomicU64 = AtomicU64::new(0);
static FAILED_AT_MS: AtomicU64 = AtomicU64::new(0);

/// Note what recovery found: the snapshot's size and the log bytes after its start.
pub fn recovered(snapshot_bytes: u64, log_bytes: u64) {
    SNAPSHOT_BYTES.store(snapshot_bytes, Ordering::Relaxed);
    LOG_AT_SNAPSHOT.store(0, Ordering::Relaxed);
    BASE_SIZE.store(snapshot_bytes.saturating_add(log_bytes), Ordering::Relaxed);
}

/// A snapshot of `snapshot_bytes` was published, which started at log total
/// `log_at_start`; the log total is `log_now`.
pub fn published(snapshot_bytes: u64, log_at_start: u64, log_now: u64) {
    SNAPSHOT_BYTES.store(snapshot_bytes, Ordering::Relaxed);
    LOG_AT_SNAPSHOT.store(log_at_start, Ordering::Relaxed);
    BASE_SIZE.store(current_size(log_now), Ordering::Relaxed);
}

/// The persisted size now (`aof_current_size`), given the log total `log_now`.
pub fn current_size(log_now: u64) -> u64 {
    SNAPSHOT_BYTES
        .load(Ordering::Relaxed)
        .saturating_add(log_now.saturating_sub(LOG_AT_SNAPSHOT.load(Ordering::Relaxed)))
}

/// The size at start or after the last snapshot (`aof_base_size`).
pub fn base_size() -> u64 {
    BASE_SIZE.load(Ordering::Relaxed)
}

/// Whether the persisted size `current` calls for a compaction (Redis's
/// `auto-aof-rewrite-percentage` / `-min-size` rule: above the minimum size and grown by at
/// least `percent` over the base; `percent` 0: never). After failed snapshots it waits a
/// minute, doubling per further failure up to an hour (Redis limits failed AOF rewrites
/// likewise).
pub fn rewrite_due(percent: u64, min_size: u64, current: u64, now_ms: u64) -> bool {
    if percent == 0 || current <= min_size {
        return false;
    }
    let failures = FAILED_IN_A_ROW.load(Ordering::Relaxed);
    if failures > 0 {
        let wait_ms = (60_000u64 << (failures - 1).min(6)).min(3_600_000);
        let failed_at = FAILED_AT_MS.load(Ordering::Relaxed);
        if now_ms.saturating_sub(failed_at) < wait_ms {
            return false;
        }
    }
    let base = base_size().max(1);
    let growth = u128::from(current) * 100 / u128::from(base);
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

/// A key's value as a snapshot part holds it: strings shared, collections serialized at
/// the copy (so later edits do not reach the snapshot).
#[derive(Debug)]
pub enum SnapValue {
    /// A string.
    Str(Bytes),
    /// A collection's type tag and serialized form.
    Obj(u8, Bytes),
}

/// Payload of a part's first entry: which shard, as of which of its LSNs.
pub fn meta_payload(shard: usize) -> Vec<u8> {
    let mut out = vec![META];
    out.extend_from_slice(&(shard as u64).to_le_bytes());
    out
}

/// Payload of a key entry.
pub fn key_payload(key: &[u8], value: &SnapValue, deadline: u64) -> Vec<u8> {
    match value {
        SnapValue::Str(v) => {
            let mut out = vec![KEY];
            effect::set_payload(&mut out, key, v, deadline);
            out
        }
        SnapValue::Obj(ty, data) => {
            let e = effect::Effect::Obj {
                key: Bytes::copy_from_slice(key),
                ty: *ty,
                data: data.clone(),
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
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if ok {
        LAST_SAVE.store(now_ms / 1000, Ordering::Relaxed);
        COMPLETED.fetch_add(1, Ordering::Relaxed);
        FAILED_IN_A_ROW.store(0, Ordering::Relaxed);
    } else {
        FAILED.fetch_add(1, Ordering::Relaxed);
        FAILED_IN_A_ROW.fetch_add(1, Ordering::Relaxed);
        FAILED_AT_MS.store(now_ms, Ordering::Relaxed);
    }
    IN_PROGRESS.store(false, Ordering::Release);
}

/// One shard's part being written: a copy of its keys, written a step at a time.
pub struct PartJob {
    /// Snapshot id.
    pub id: u64,
    /// The shard that coordinates the snapshot.
    pub coordinator: usize,
    writer: Option<SnapshotWriter>,
    lsn: u64,
    entries: Vec<(Bytes, SnapValue, u64)>,
    next: usize,
}

/// Entries one step writes before yielding to I/O.
const STEP: usize = 4096;

impl PartJob {
    /// A part for `shard` at `lsn`, holding `entries` (key, value, deadline).
    pub fn new(
        id: u64,
        coordinator: usize,
        shard: usize,
        mut writer: SnapshotWriter,
        lsn: u64,
        entries: Vec<(Bytes, SnapValue, u64)>,
    ) -> Result<PartJob, WalError> {
        writer.write(lsn, &meta_payload(shard))?;
        Ok(PartJob {
            id,
            coordinator,
            writer: Some(writer),
            lsn,
            entries,
            next: 0,
        })
    }

    /// Write the next step; `Ok(true)` once the part is finished and synced.
    pub fn step(&mut self) -> Result<bool, WalError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(true);
        };
        let end = (self.next + STEP).min(self.entries.len());
        for (k, v, d) in &self.entries[self.next..end] {
            writer.write(self.lsn, &key_payload(k, v, *d))?;
        }
        self.next = end;
        if self.next < self.entries.len() {
            return Ok(false);
        }
        if let Some(w) = self.writer.take() {
            w.finish()?;
        }
        Ok(true)
    }
}
