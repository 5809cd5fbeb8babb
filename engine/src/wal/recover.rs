//! Recovery at [`open`](super::open): find the newest complete snapshot, check every
//! segment from its start position, cut a torn tail, refuse (or, in `Truncate` mode, cut)
//! corruption in the middle, and stream what must be replayed.
//!
//! # Telling a torn tail from corruption in the middle
//!
//! The scan stops at the first invalid spot: a record whose length or CRC is wrong,
//! non-zero bytes after a zero length, an empty segment followed by more log, or a
//! segment that ends although the next segment's first record would still have fit.
//! What follows decides what it means. The WAL thread sets `FLAG_DURABLE_BEFORE` on the
//! first record of a write when everything before it was already durable (synced; for
//! `FsyncPolicy::No`, written). So if a valid record carrying that flag follows the bad
//! spot, the bad spot held durable (hence possibly acknowledged) data: that is corruption
//! in the middle, an error naming the file and offset. Otherwise the bad spot and
//! everything after it were never durable (a torn write, including the holes a power
//! loss leaves in unsynced pages): it is cut off and reported in
//! [`Recovery::truncated`].

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::record::{self, Decoded, FIXED, FLAG_DURABLE_BEFORE};
use super::segment::{self, TMP_SUFFIX};
use super::snapshot::{self, Manifest, PartsReader};
use super::{LogPosition, RecoverMode, SnapshotEntry, WalError};

/// Most bytes the search for durable records after a bad spot may checksum before it
/// gives up and treats the bad spot as corruption in the middle (the safe answer).
const SEARCH_BUDGET: u64 = 4 << 30;

/// What [`open`](super::open) found in the log: counts, what was cut off, and the entries
/// and records to replay, in this order: first [`Recovery::snapshot`], then
/// [`Recovery::records`]. Both stream from the files; nothing is loaded whole.
///
/// Replay must be idempotent per key: records between the snapshot's start position and
/// the moment each snapshot entry was captured are replayed on top of that entry (the
/// LSNs let the server skip records already reflected in an entry of the same shard).
#[derive(Debug)]
pub struct Recovery {
    /// Entries in the newest complete snapshot (0 without a snapshot).
    pub snapshot_entries: u64,
    /// Log records after the snapshot's start position.
    pub records: u64,
    /// Bytes of those records (headers included): the log a new snapshot would replace.
    pub log_bytes: u64,
    /// Bytes of the newest complete snapshot's part files (0 without a snapshot).
    pub snapshot_bytes: u64,
    /// The id of the newest complete snapshot; the next snapshot needs a larger id.
    pub snapshot_id: Option<u64>,
    /// A report of the torn tail (or, with `RecoverMode::Truncate`, the corruption) that
    /// was cut off: file, offset, reason and how much was dropped. `None` if the log was
    /// clean.
    pub truncated: Option<String>,
    dir: PathBuf,
    snapshot_parts: usize,
    /// `(segment, from, to)` byte ranges to replay, in order.
    replay: Vec<(u64, u64, u64)>,
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its LSN (per shard of the run that wrote it).
    pub lsn: u64,
    /// The shard that wrote it (in the run that wrote it: the shard count may differ now).
    pub shard: u16,
    /// The server's record kind.
    pub kind: u8,
    /// The server's payload (its own allocation, not a view of a segment buffer).
    pub payload: Bytes,
}

impl Recovery {
    /// The newest complete snapshot's entries, part after part. Each item is an entry or
    /// the error that ends the stream.
    pub fn snapshot(&mut self) -> impl Iterator<Item = Result<SnapshotEntry, WalError>> {
        let id = self.snapshot_id.unwrap_or(0);
        let parts = if self.snapshot_id.is_some() {
            self.snapshot_parts
        } else {
            0
        };
        PartsReader::new(&self.dir, id, parts)
    }

    /// The log records after the snapshot's start position (all records without a
    /// snapshot), in log order, one segment in memory at a time. Each item is a record or
    /// the error that ends the stream.
    pub fn records(&mut self) -> impl Iterator<Item = Result<Record, WalError>> {
        RecordsReader {
            dir: self.dir.clone(),
            replay: self.replay.clone(),
            next: 0,
            current: None,
            failed: false,
        }
    }
}

struct RecordsReader {
    dir: PathBuf,
    replay: Vec<(u64, u64, u64)>,
    next: usize,
    /// The segment being read: its path, data, position and end.
    current: Option<(PathBuf, Vec<u8>, usize, usize)>,
    failed: bool,
}

impl RecordsReader {
    fn next_record(&mut self) -> Option<Result<Record, WalError>> {
        loop {
            if self.current.is_none() {
                let &(seq, from, to) = self.replay.get(self.next)?;
                self.next += 1;
                let path = segment::path(&self.dir, seq);
                let data = match fs::read(&path) {
                    Ok(d) => d,
                    Err(e) => return Some(Err(WalError::io("read", &path, e))),
                };
                if let Err(reason) = segment::check_header(&data, seq) {
                    return Some(Err(WalError::corrupt(&path, 0, reason)));
                }
                let to = (to as usize).min(data.len());
                self.current = Some((path, data, from as usize, to));
            }
            let (path, data, pos, to) = self.current.as_mut()?;
            if *pos >= *to {
                self.current = None;
                continue;
            }
            return Some(match record::decode(&data[*pos..*to]) {
                Decoded::Record { record, size } => {
                    *pos += size;
                    Ok(Record {
                        lsn: record.lsn,
                        shard: record.shard,
                        kind: record.kind,
                        payload: Bytes::copy_from_slice(record.payload),
                    })
                }
                Decoded::End => Err(WalError::corrupt(
                    path,
                    *pos as u64,
                    "record vanished since the log was opened",
                )),
                Decoded::Bad(reason) => Err(WalError::corrupt(path, *pos as u64, reason)),
            });
        }
    }
}

impl Iterator for RecordsReader {
    type Item = Result<Record, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_record();
        if matches!(item, Some(Err(_))) {
            self.failed = true;
        }
        item
    }
}

/// The outcome of the scan.
pub(crate) struct Scanned {
    pub recovery: Recovery,
    /// The segment to write into and where; `exists: false` if it must be created.
    pub resume: LogPosition,
    pub resume_exists: bool,
    /// The highest LSN found anywhere (log records, snapshot, manifest).
    pub max_lsn: u64,
}

/// What one segment holds up to its first bad spot.
struct SegScan {
    seq: u64,
    len: u64,
    /// Records before the bad spot / end.
    records: u64,
    /// Of those, the ones at or after the replay start.
    replay_records: u64,
    /// Where the valid records end.
    end: u64,
    first_record_size: Option<usize>,
    problem: Option<(u64, String)>,
}

fn scan_segment(
    dir: &Path,
    seq: u64,
    replay_from: u64,
    max_lsn: &mut u64,
) -> Result<SegScan, WalError> {
    let path = segment::path(dir, seq);
    let data = fs::read(&path).map_err(|e| WalError::io("read", &path, e))?;
    let mut s = SegScan {
        seq,
        len: data.len() as u64,
        records: 0,
        replay_records: 0,
        end: 0,
        first_record_size: None,
        problem: None,
    };
    if let Err(reason) = segment::check_header(&data, seq) {
        s.problem = Some((0, reason.to_string()));
        return Ok(s);
    }
    let mut pos = segment::HEADER as usize;
    loop {
        match record::decode(&data[pos..]) {
            Decoded::Record { record, size } => {
                *max_lsn = (*max_lsn).max(record.lsn);
                s.records += 1;
                if pos as u64 >= replay_from {
                    s.replay_records += 1;
                }
                s.first_record_size.get_or_insert(size);
                pos += size;
            }
            Decoded::End => {
                if data[pos..].iter().any(|&b| b != 0) {
                    s.problem = Some((pos as u64, "non-zero data after the end marker".into()));
                }
                break;
            }
            Decoded::Bad(reason) => {
                s.problem = Some((pos as u64, reason.to_string()));
                break;
            }
        }
    }
    s.end = pos as u64;
    Ok(s)
}

/// Whether a valid record flagged `FLAG_DURABLE_BEFORE` starts anywhere at or after
/// `from` in `data`. `Err(())` if the search ran out of budget.
fn durable_record_after(data: &[u8], from: usize, budget: &mut u64) -> Result<bool, ()> {
    let Some(last_nonzero) = data.iter().rposition(|&b| b != 0) else {
        return Ok(false);
    };
    let mut p = from;
    while p <= last_nonzero {
        let buf = &data[p..];
        if buf.len() >= record::HEADER {
            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            let plausible =
                len >= FIXED && len + 8 <= buf.len() && buf[19] & !FLAG_DURABLE_BEFORE == 0;
            if plausible {
                *budget = budget.checked_sub(len as u64).ok_or(())?;
                if let Decoded::Record { record, size } = record::decode(buf) {
                    if record.flags & FLAG_DURABLE_BEFORE != 0 {
                        return Ok(true);
                    }
                    p += size;
                    continue;
                }
            }
        }
        p += 1;
    }
    Ok(false)
}

/// Scan the WAL directory; see the module docs.
pub(crate) fn scan(dir: &Path, mode: RecoverMode, segment_size: u64) -> Result<Scanned, WalError> {
    let mut segs = Vec::new();
    let mut manifests = Vec::new();
    let mut parts = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| WalError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            if let Err(e) = fs::remove_file(entry.path()) {
                tracing::warn!("WAL: cannot remove stale {name}: {e}");
            }
        } else if let Some(seq) = segment::parse_name(name) {
            segs.push(seq);
        } else if let Some(id) = snapshot::parse_manifest_name(name) {
            manifests.push(id);
        } else if let Some((id, part)) = snapshot::parse_part_name(name) {
            parts.push((id, part, entry.path()));
        }
    }
    segs.sort_unstable();
    manifests.sort_unstable();

    // The newest snapshot: its manifest, and its parts' summaries.
    let mut max_lsn = 0u64;
    let mut snapshot_entries = 0u64;
    let manifest = match manifests.last() {
        Some(&id) => {
            let path = dir.join(snapshot::manifest_name(id));
            let m = Manifest::read(&path)?;
            if m.id != id {
                return Err(WalError::corrupt(
                    &path,
                    0,
                    "manifest names another snapshot",
                ));
            }
            for part in 0..m.parts {
                let path = dir.join(snapshot::part_name(id, part));
                if !path.exists() {
                    return Err(WalError::Snapshot {
                        id,
                        reason: format!("part {} is missing", path.display()),
                    });
                }
                let (count, lsn) = snapshot::part_summary(&path, id, part)?;
                snapshot_entries += count;
                max_lsn = max_lsn.max(lsn);
            }
            max_lsn = max_lsn.max(m.max_lsn);
            Some(m)
        }
        None => None,
    };
    // Leftovers of older snapshots, or of one that never completed.
    let keep = manifest.map(|m| m.id);
    for &id in &manifests {
        if Some(id) != keep {
            remove(&dir.join(snapshot::manifest_name(id)));
        }
    }
    for (id, _, path) in &parts {
        if Some(*id) != keep {
            remove(path);
        }
    }

    // The segments from the snapshot's start on.
    let start = match manifest {
        Some(m) => m.start,
        None => LogPosition {
            segment: segs.first().copied().unwrap_or(1),
            offset: segment::HEADER,
        },
    };
    for &seq in segs.iter().filter(|&&s| s < start.segment) {
        remove(&segment::path(dir, seq));
    }
    segs.retain(|&s| s >= start.segment);
    if manifest.is_some() && segs.first() != Some(&start.segment) {
        return Err(WalError::MissingSegment {
            path: segment::path(dir, start.segment),
        });
    }
    for w in segs.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(WalError::MissingSegment {
                path: segment::path(dir, w[0] + 1),
            });
        }
    }

    // Scan up to the first bad spot.
    let mut scans: Vec<SegScan> = Vec::new();
    for &seq in &segs {
        let from = if seq == start.segment {
            start.offset
        } else {
            0
        };
        let s = scan_segment(dir, seq, from, &mut max_lsn)?;
        let bad = s.problem.is_some();
        scans.push(s);
        if bad {
            break;
        }
    }
    // Structural problems before it: an empty segment followed by more log, or a
    // segment that ends although the next one's first record would have fit.
    let mut problem: Option<(usize, u64, String)> = scans
        .iter()
        .enumerate()
        .find_map(|(i, s)| s.problem.clone().map(|(pos, r)| (i, pos, r)));
    let limit = problem.as_ref().map_or(scans.len(), |p| p.0);
    for i in 0..limit {
        let later_data = scans[i + 1..]
            .iter()
            .any(|s| s.records > 0 || s.problem.is_some());
        if scans[i].end == segment::HEADER && later_data {
            problem = Some((
                i,
                segment::HEADER,
                "empty segment followed by more log".into(),
            ));
            break;
        }
        if let Some(next) = scans.get(i + 1).and_then(|s| s.first_record_size) {
            if scans[i].end + next as u64 <= scans[i].len {
                problem = Some((
                    i,
                    scans[i].end,
                    "segment ends before it was full, yet the log continues".into(),
                ));
                break;
            }
        }
    }

    let mut truncated = None;
    let last_kept = match problem {
        Some((k, pos, reason)) => {
            let path = segment::path(dir, scans[k].seq);
            let durable_after = durable_after(dir, &segs[k..], pos)?;
            let dropped_segments = segs.len() - k - 1;
            if durable_after && mode == RecoverMode::Strict {
                return Err(WalError::corrupt(
                    &path,
                    pos,
                    format!(
                        "{reason}; records that were durable follow it (corruption in the \
                         middle of the log; recover with RecoverMode::Truncate to cut the \
                         log here)"
                    ),
                ));
            }
            let what = if durable_after {
                "corruption in the middle of the log"
            } else {
                "torn tail"
            };
            truncated = Some(format!(
                "{} at offset {pos}: {reason} ({what}); cut {} bytes to the end of the \
                 segment and {dropped_segments} later segment(s)",
                path.display(),
                scans[k].len.saturating_sub(pos)
            ));
            cut(dir, &mut scans[k], pos, segment_size)?;
            for &seq in &segs[k + 1..] {
                remove(&segment::path(dir, seq));
            }
            scans.truncate(k + 1);
            Some(k)
        }
        None => {
            // Trailing segments without records are prepared ones that were never used.
            let last = scans.iter().rposition(|s| s.records > 0).unwrap_or(0);
            for s in scans.iter().skip(last + 1) {
                remove(&segment::path(dir, s.seq));
            }
            scans.truncate(last + 1);
            if scans.is_empty() {
                None
            } else {
                Some(last)
            }
        }
    };
    if truncated.is_some() || segs.len() != scans.len() {
        segment::sync_dir(dir)?;
    }

    let (resume, resume_exists) = match last_kept {
        Some(k) => (
            LogPosition {
                segment: scans[k].seq,
                offset: scans[k].end.max(segment::HEADER),
            },
            true,
        ),
        None => (
            LogPosition {
                segment: start.segment,
                offset: segment::HEADER,
            },
            false,
        ),
    };
    // A cut before the snapshot's start (possible when the snapshot started at data not
    // yet synced): new records will be written from the cut on, so replay must start
    // there. Publish the manifest again with that start.
    if let Some(mut m) = manifest {
        if resume < m.start {
            m.start = resume;
            m.publish(dir)?;
        }
    }
    let replay_start = start.min(resume);
    let replay: Vec<(u64, u64, u64)> = scans
        .iter()
        .map(|s| {
            let from = if s.seq == replay_start.segment {
                replay_start.offset
            } else {
                segment::HEADER
            };
            (s.seq, from, s.end)
        })
        .collect();
    let records = scans.iter().map(|s| s.replay_records).sum();
    let log_bytes = replay
        .iter()
        .map(|&(_, from, to)| to.saturating_sub(from))
        .sum();
    let snapshot_bytes = match manifest {
        Some(m) => (0..m.parts)
            .map(|part| {
                let path = dir.join(snapshot::part_name(m.id, part));
                fs::metadata(&path)
                    .map(|md| md.len())
                    .map_err(|e| WalError::io("stat", &path, e))
            })
            .sum::<Result<u64, WalError>>()?,
        None => 0,
    };
    Ok(Scanned {
        recovery: Recovery {
            snapshot_entries,
            records,
            log_bytes,
            snapshot_bytes,
            snapshot_id: manifest.map(|m| m.id),
            truncated,
            dir: dir.to_path_buf(),
            snapshot_parts: manifest.map_or(0, |m| m.parts),
            replay,
        },
        resume,
        resume_exists,
        max_lsn,
    })
}

/// Whether durable records follow `pos` in the first of `segs` or anywhere in the rest.
fn durable_after(dir: &Path, segs: &[u64], pos: u64) -> Result<bool, WalError> {
    let mut budget = SEARCH_BUDGET;
    for (i, &seq) in segs.iter().enumerate() {
        let path = segment::path(dir, seq);
        let data = fs::read(&path).map_err(|e| WalError::io("read", &path, e))?;
        let from = if i == 0 {
            pos as usize
        } else {
            segment::HEADER as usize
        };
        match durable_record_after(&data, from.min(data.len()), &mut budget) {
            Ok(false) => {}
            // Out of budget: assume the worst (an error, not a silent cut).
            Ok(true) | Err(()) => return Ok(true),
        }
    }
    Ok(false)
}

/// Cut segment `s` at `pos`: zero everything from there (a bad header: recreate the
/// segment empty), so that new records follow valid data.
fn cut(dir: &Path, s: &mut SegScan, pos: u64, segment_size: u64) -> Result<(), WalError> {
    let path = segment::path(dir, s.seq);
    if pos < segment::HEADER {
        fs::remove_file(&path).map_err(|e| WalError::io("remove", &path, e))?;
        segment::create(dir, s.seq, segment_size)?;
        s.end = segment::HEADER;
        s.len = segment_size.max(segment::HEADER);
        s.records = 0;
        s.replay_records = 0;
        return Ok(());
    }
    let file = segment::open_rw(&path)?;
    segment::zero_range(&file, pos, s.len)
        .and_then(|()| file.sync_data())
        .map_err(|e| WalError::io("zero the torn tail of", &path, e))?;
    s.end = pos;
    Ok(())
}

fn remove(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("WAL: cannot remove {}: {e}", path.display());
        }
    }
}
