//! WAL tests on real files, each in its own directory under the system temp dir.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::record::{self, Decoded};
use super::segment;
use super::shared::Fault;
use super::*;

/// A unique directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "coreshard-wal-{name}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &Path, fsync: FsyncPolicy, segment_size: u64) -> WalConfig {
    WalConfig {
        dir: dir.to_path_buf(),
        fsync,
        segment_size,
        core: None,
        recover: RecoverMode::Strict,
    }
}

/// A small deterministic RNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A payload that names its producer and sequence number, padded to `len`.
fn payload(shard: usize, seq: u64, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len.max(10));
    p.extend_from_slice(&(shard as u16).to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    while p.len() < len {
        p.push((seq as u8).wrapping_add(p.len() as u8));
    }
    p
}

fn ids(p: &[u8]) -> (usize, u64) {
    let mut s = [0u8; 8];
    s.copy_from_slice(&p[2..10]);
    (
        u16::from_le_bytes([p[0], p[1]]) as usize,
        u64::from_le_bytes(s),
    )
}

fn all_records(rec: &mut Recovery) -> Vec<Record> {
    rec.records().collect::<Result<Vec<_>, _>>().unwrap()
}

/// Wait until the log reports an error (`failing`) or none; panics with `what` after
/// `within`.
fn wait_error(log: &ShardLog, failing: bool, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while log.error().is_some() != failing {
        assert!(Instant::now() < deadline, "{what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Append one record, hand it over and wait (up to 10 s) until it is durable.
fn append_durable(log: &mut ShardLog, payload: &[u8]) {
    let lsn = log.append(0, payload);
    log.flush();
    assert!(wait_durable(log, lsn, Duration::from_secs(10)));
}

fn wait_durable(log: &ShardLog, lsn: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while log.durable() < lsn {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_micros(50));
    }
    true
}

fn segments(dir: &Path) -> Vec<u64> {
    let mut s: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| segment::parse_name(e.ok()?.file_name().to_str()?))
        .collect();
    s.sort_unstable();
    s
}

/// `(offset, size)` of every valid record of a segment file.
fn record_offsets(path: &Path) -> Vec<(usize, usize)> {
    let data = fs::read(path).unwrap();
    let mut pos = segment::HEADER as usize;
    let mut out = Vec::new();
    while let Decoded::Record { size, .. } = record::decode(&data[pos..]) {
        out.push((pos, size));
        pos += size;
    }
    out
}

/// The segments that hold records (a prepared, still empty one may follow them).
fn data_segments(dir: &Path) -> Vec<u64> {
    segments(dir)
        .into_iter()
        .filter(|&s| !record_offsets(&segment::path(dir, s)).is_empty())
        .collect()
}

/// Append `n` records per batch for `batches` batches on shard 0, waiting for each
/// batch to be durable (so each batch is its own write).
fn write_batches(log: &mut ShardLog, batches: u64, n: u64, len: usize) -> u64 {
    let mut seq = 0;
    for _ in 0..batches {
        let mut last = 0;
        for _ in 0..n {
            last = log.append(1, &payload(0, seq, len));
            seq += 1;
        }
        log.flush();
        assert!(wait_durable(log, last, Duration::from_secs(10)));
    }
    seq
}

#[test]
fn empty_directory_opens_and_reopens() {
    let tmp = TempDir::new("empty");
    let (wal, logs, mut rec) = open(config(&tmp.0, FsyncPolicy::Always, 1 << 16), 2).unwrap();
    assert_eq!(
        (rec.snapshot_entries, rec.records, rec.snapshot_id),
        (0, 0, None)
    );
    assert!(rec.truncated.is_none());
    assert_eq!(rec.snapshot().count(), 0);
    assert_eq!(logs[0].last(), 0);
    assert_eq!(logs[1].durable(), 0);
    wal.shutdown().unwrap();
    drop(logs);
    let (wal, _, rec) = open(config(&tmp.0, FsyncPolicy::Always, 1 << 16), 2).unwrap();
    assert_eq!(rec.records, 0);
    assert!(rec.truncated.is_none());
    wal.shutdown().unwrap();
}

#[test]
fn second_open_of_a_directory_is_refused() {
    let tmp = TempDir::new("lock");
    let (wal, _logs, _) = open(config(&tmp.0, FsyncPolicy::No, 1 << 16), 1).unwrap();
    let err = open(config(&tmp.0, FsyncPolicy::No, 1 << 16), 1).unwrap_err();
    assert!(matches!(err, WalError::Locked(_)), "{err}");
    wal.shutdown().unwrap();
    let (wal, _, _) = open(config(&tmp.0, FsyncPolicy::No, 1 << 16), 1).unwrap();
    wal.shutdown().unwrap();
}

#[test]
fn round_trip_through_files_with_kinds_and_empty_payloads() {
    let tmp = TempDir::new("roundtrip");
    let (wal, mut logs, _) = open(config(&tmp.0, FsyncPolicy::Always, 1 << 16), 2).unwrap();
    let a = logs[0].append(7, b"set k v");
    let b = logs[1].append(8, b"");
    let c = logs[0].append(9, &[0u8; 3000]);
    assert_eq!((a, b, c), (1, 1, 2));
    logs[0].flush();
    logs[1].flush();
    assert!(wait_durable(&logs[0], c, Duration::from_secs(10)));
    assert!(wait_durable(&logs[1], b, Duration::from_secs(10)));
    wal.shutdown().unwrap();
    drop(logs);
    let (wal, logs, mut rec) = open(config(&tmp.0, FsyncPolicy::Always, 1 << 16), 2).unwrap();
    assert_eq!(rec.records, 3);
    let mut got = all_records(&mut rec);
    got.sort_by_key(|r| (r.shard, r.lsn));
    assert_eq!(
        got.iter()
            .map(|r| (r.shard, r.lsn, r.kind, r.payload.len()))
            .collect::<Vec<_>>(),
        vec![(0, 1, 7, 7), (0, 2, 9, 3000), (1, 1, 8, 0)]
    );
    assert_eq!(&got[0].payload[..], b"set k v");
    // New LSNs start above everything found.
    assert_eq!(logs[0].last(), 2);
    assert_eq!(logs[1].last(), 2);
    wal.shutdown().unwrap();
}

/// Several producer threads, random flush cadence and payload sizes; after reopening,
/// every record is there exactly once, in per-shard LSN order.
#[test]
fn many_producers_every_record_once_in_order() {
    let tmp = TempDir::new("producers");
    const SHARDS: usize = 4;
    const PER_SHARD: u64 = 5000;
    let (wal, logs, _) = open(config(&tmp.0, FsyncPolicy::EverySec, 1 << 20), SHARDS).unwrap();
    let handles: Vec<_> = logs
        .into_iter()
        .enumerate()
        .map(|(shard, mut log)| {
            thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9 + shard as u64);
                for seq in 0..PER_SHARD {
                    let len = 10 + rng.below(200) as usize;
                    let lsn = log.append(shard as u8, &payload(shard, seq, len));
                    assert_eq!(lsn, seq + 1);
                    if rng.below(8) == 0 {
                        log.flush();
                    }
                }
                log.flush();
                log
            })
        })
        .collect();
    let logs: Vec<ShardLog> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    wal.shutdown().unwrap();
    for log in &logs {
        assert_eq!(log.durable(), PER_SHARD, "shutdown publishes everything");
    }
    drop(logs);
    let (wal, logs, mut rec) =
        open(config(&tmp.0, FsyncPolicy::EverySec, 1 << 20), SHARDS).unwrap();
    assert_eq!(rec.records, SHARDS as u64 * PER_SHARD);
    let mut next = [1u64; SHARDS];
    for r in all_records(&mut rec) {
        let (shard, seq) = ids(&r.payload);
        assert_eq!(shard, r.shard as usize);
        assert_eq!(
            r.lsn, next[shard],
            "shard {shard}: LSNs in order, none missing or twice"
        );
        assert_eq!(seq + 1, r.lsn);
        assert_eq!(r.kind, shard as u8);
        next[shard] += 1;
    }
    assert_eq!(next, [PER_SHARD + 1; SHARDS]);
    assert_eq!(logs[2].last(), PER_SHARD);
    wal.shutdown().unwrap();
}

/// A token goes round the producer threads; each appends and flushes before passing
/// it on. The log must hold the token's records in the order they were produced.
#[test]
fn tickets_keep_cross_shard_causality() {
    let tmp = TempDir::new("causality");
    const SHARDS: usize = 4;
    const ROUNDS: u64 = 3000;
    let (wal, logs, _) = open(config(&tmp.0, FsyncPolicy::No, 1 << 20), SHARDS).unwrap();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..SHARDS).map(|_| mpsc::channel::<u64>()).unzip();
    let mut rxs: Vec<Option<mpsc::Receiver<u64>>> = rxs.into_iter().map(Some).collect();
    let handles: Vec<_> = logs
        .into_iter()
        .enumerate()
        .map(|(shard, mut log)| {
            let rx = rxs[shard].take().unwrap();
            let next = txs[(shard + 1) % SHARDS].clone();
            thread::spawn(move || {
                let mut rng = Rng(77 + shard as u64);
                // Unrelated records too, so chunks interleave.
                while let Ok(token) = rx.recv() {
                    for i in 0..rng.below(3) {
                        log.append(0, &payload(shard, 1_000_000 + token * 10 + i, 12));
                    }
                    log.append(1, &payload(shard, token, 16));
                    log.flush();
                    if token + 1 < ROUNDS * SHARDS as u64 {
                        if next.send(token + 1).is_err() {
                            break;
                        }
                    } else {
                        break;
                    }
                }
                log
            })
        })
        .collect();
    txs[0].send(0).unwrap();
    drop(txs);
    let logs: Vec<ShardLog> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    wal.shutdown().unwrap();
    drop(logs);
    let (wal, _, mut rec) = open(config(&tmp.0, FsyncPolicy::No, 1 << 20), SHARDS).unwrap();
    let tokens: Vec<u64> = all_records(&mut rec)
        .iter()
        .filter(|r| r.kind == 1)
        .map(|r| ids(&r.payload).1)
        .collect();
    assert_eq!(tokens.len() as u64, ROUNDS * SHARDS as u64);
    assert!(
        tokens.windows(2).all(|w| w[0] + 1 == w[1]),
        "token records out of causal order"
    );
    wal.shutdown().unwrap();
}

/// A chunk whose ticket is taken but not yet pushed holds back every later chunk: the
/// WAL thread writes only a contiguous run of tickets.
#[test]
fn a_missing_ticket_holds_back_later_chunks() {
    let tmp = TempDir::new("gap");
    let cfg = config(&tmp.0, FsyncPolicy::No, 1 << 16);
    let (wal, logs, _) = open(cfg.clone(), 2).unwrap();
    let mut logs = logs.into_iter();
    let (mut a, mut b) = (logs.next().unwrap(), logs.next().unwrap());
    let (ticket_taken_tx, ticket_taken_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = thread::spawn(move || {
        a.append(0, b"first");
        a.hand_over(|| {
            ticket_taken_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        });
        a
    });
    ticket_taken_rx.recv().unwrap();
    let lsn = b.append(0, b"second");
    b.flush();
    thread::sleep(Duration::from_millis(200));
    assert_eq!(b.durable(), 0, "written past a missing ticket");
    release_tx.send(()).unwrap();
    let a = holder.join().unwrap();
    assert!(wait_durable(&b, lsn, Duration::from_secs(10)));
    assert!(wait_durable(&a, 1, Duration::from_secs(10)));
    wal.shutdown().unwrap();
    drop((a, b));
    let (wal, _, mut rec) = open(cfg, 2).unwrap();
    let got: Vec<Vec<u8>> = all_records(&mut rec)
        .iter()
        .map(|r| r.payload.to_vec())
        .collect();
    assert_eq!(got, vec![b"first".to_vec(), b"second".to_vec()]);
    wal.shutdown().unwrap();
}

/// Cut the last segment at many offsets (truncated file, or garbage after the cut):
/// recovery keeps exactly the records before the cut, reports the cut unless it fell on
/// a record boundary, and appending afterwards works.
#[test]
fn torn_tail_at_random_offsets_is_cut_and_reported() {
    let mut rng = Rng(12345);
    for round in 0..24 {
        let tmp = TempDir::new("torn");
        let cfg = config(&tmp.0, FsyncPolicy::Always, 1 << 16);
        let (wal, mut logs, _) = open(cfg.clone(), 1).unwrap();
        let written = write_batches(&mut logs[0], 20, 5, 100 + rng.below(300) as usize);
        wal.shutdown().unwrap();
        drop(logs);
        let segs = data_segments(&tmp.0);
        let path = segment::path(&tmp.0, *segs.last().unwrap());
        let offsets = record_offsets(&path);
        let earlier: u64 = segs[..segs.len() - 1]
            .iter()
            .map(|&s| record_offsets(&segment::path(&tmp.0, s)).len() as u64)
            .sum();
        let data_end = offsets.last().map_or(32, |&(o, s)| o + s);
        let cut = rng.below(data_end as u64 + 1) as usize;
        let garbage = round % 2 == 1;
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        if garbage {
            let junk: Vec<u8> = (0..data_end - cut).map(|_| rng.next() as u8 | 1).collect();
            f.write_all_at(&junk, cut as u64).unwrap();
        } else {
            f.set_len(cut as u64).unwrap();
        }
        drop(f);
        let kept_here = offsets.iter().filter(|&&(o, s)| o + s <= cut).count();
        let kept = earlier + kept_here as u64;
        let on_boundary = cut == 32 || offsets.iter().any(|&(o, s)| o + s == cut);
        let (wal, mut logs, mut rec) = open(cfg.clone(), 1)
            .unwrap_or_else(|e| panic!("round {round} cut {cut} garbage {garbage}: {e}"));
        assert_eq!(rec.records, kept, "round {round} cut {cut}");
        let got = all_records(&mut rec);
        assert_eq!(got.len() as u64, kept);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.lsn, i as u64 + 1);
        }
        assert_eq!(
            rec.truncated.is_some(),
            !on_boundary || (garbage && cut < data_end),
            "round {round} cut {cut} garbage {garbage}: {:?}",
            rec.truncated
        );
        if let Some(t) = &rec.truncated {
            let at = if cut < 32 {
                0
            } else {
                offsets.get(kept_here).map_or(data_end, |&(o, _)| o)
            };
            assert!(t.contains(&format!("offset {at}:")), "cut {cut}: {t}");
        }
        assert!(written >= kept);
        assert_eq!(
            logs[0].last(),
            kept,
            "LSNs continue above the valid records"
        );
        // Append after recovery, and find it all again.
        let lsn = logs[0].append(2, b"after recovery");
        logs[0].flush();
        assert!(wait_durable(&logs[0], lsn, Duration::from_secs(10)));
        wal.shutdown().unwrap();
        drop(logs);
        let (wal, _, mut rec) = open(cfg, 1).unwrap();
        assert!(rec.truncated.is_none(), "{:?}", rec.truncated);
        let got = all_records(&mut rec);
        assert_eq!(got.len() as u64, kept + 1);
        assert_eq!(&got.last().unwrap().payload[..], b"after recovery");
        wal.shutdown().unwrap();
    }
}

/// A bit flipped in a record that was durable, with durable records after it: `Strict`
/// refuses naming file and offset; `Truncate` cuts there.
#[test]
fn bit_flip_in_the_middle_is_an_error_or_cut() {
    for in_earlier_segment in [false, true] {
        let tmp = TempDir::new("bitflip");
        let cfg = config(&tmp.0, FsyncPolicy::Always, 1 << 14);
        let (wal, mut logs, _) = open(cfg.clone(), 1).unwrap();
        let batches = if in_earlier_segment { 200 } else { 10 };
        write_batches(&mut logs[0], batches, 4, 50);
        wal.shutdown().unwrap();
        drop(logs);
        let segs = data_segments(&tmp.0);
        assert!(!in_earlier_segment || segs.len() >= 3, "{segs:?}");
        let path = segment::path(
            &tmp.0,
            segs[if in_earlier_segment {
                0
            } else {
                segs.len() - 1
            }],
        );
        let offsets = record_offsets(&path);
        let (victim, size) = offsets[offsets.len() / 2];
        let before_in_segment = (offsets.len() / 2) as u64;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut byte = [0u8; 1];
        let at = (victim + size - 3) as u64;
        f.read_exact_at(&mut byte, at).unwrap();
        f.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
        drop(f);

        match open(cfg.clone(), 1) {
            Err(WalError::Corrupt {
                path: p,
                offset,
                reason,
            }) => {
                assert_eq!(p, path);
                assert_eq!(offset, victim as u64, "{reason}");
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("corruption in the middle must be refused"),
        }
        let mut cfg = cfg;
        cfg.recover = RecoverMode::Truncate;
        let (wal, mut logs, mut rec) = open(cfg.clone(), 1).unwrap();
        let t = rec.truncated.clone().expect("reported");
        assert!(t.contains(&format!("offset {victim}")), "{t}");
        let got = all_records(&mut rec);
        if !in_earlier_segment {
            let earlier: u64 = segs[..segs.len() - 1]
                .iter()
                .map(|&s| record_offsets(&segment::path(&tmp.0, s)).len() as u64)
                .sum();
            assert_eq!(got.len() as u64, earlier + before_in_segment);
        } else {
            assert_eq!(got.len() as u64, before_in_segment);
            assert!(
                !segments(&tmp.0).contains(&segs[2]),
                "later segments dropped"
            );
        }
        let lsn = logs[0].append(1, b"x");
        logs[0].flush();
        assert!(wait_durable(&logs[0], lsn, Duration::from_secs(10)));
        wal.shutdown().unwrap();
        drop(logs);
        cfg.recover = RecoverMode::Strict;
        let (wal, _, rec) = open(cfg, 1).unwrap();
        assert!(rec.truncated.is_none());
        assert_eq!(rec.records, got.len() as u64 + 1);
        wal.shutdown().unwrap();
    }
}

/// A power loss can leave holes (zeroed pages) inside the last, unsynced write while
/// later pages of that write survive. Records after the hole were never durable (no
/// record flagged as written after a completed sync follows), so this is a torn tail:
/// cut and reported, not refused.
#[test]
fn hole_inside_the_last_write_is_a_torn_tail() {
    let tmp = TempDir::new("hole");
    let cfg = config(&tmp.0, FsyncPolicy::Always, 1 << 20);
    let (wal, mut logs, _) = open(cfg.clone(), 1).unwrap();
    write_batches(&mut logs[0], 5, 3, 40);
    // One big last write: 200 records of 100 bytes.
    for i in 0..200 {
        logs[0].append(0, &payload(0, 1000 + i, 100));
    }
    logs[0].flush();
    wal.shutdown().unwrap();
    drop(logs);
    let path = segment::path(&tmp.0, data_segments(&tmp.0)[0]);
    let offsets = record_offsets(&path);
    assert_eq!(offsets.len(), 215);
    // Zero one page in the middle of the last write.
    let hole = (offsets[15 + 80].0.div_ceil(4096) * 4096) as u64;
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0u8; 4096], hole).unwrap();
    drop(f);
    let first_bad = offsets
        .iter()
        .position(|&(o, s)| (o + s) as u64 > hole)
        .unwrap();
    let (wal, _, rec) = open(cfg, 1).unwrap();
    let t = rec.truncated.clone().expect("reported");
    assert!(t.contains("torn tail"), "{t}");
    assert!(
        t.contains(&format!("offset {}:", offsets[first_bad].0)),
        "{t}"
    );
    assert_eq!(rec.records, first_bad as u64);
    wal.shutdown().unwrap();
}

/// A segment in the middle whose records vanished (all zeros) while later segments hold
/// durable records: an error naming that segment.
#[test]
fn zeroed_segment_in_the_middle_is_an_error() {
    let tmp = TempDir::new("zeroed");
    let cfg = config(&tmp.0, FsyncPolicy::Always, 4096);
    let (wal, mut logs, _) = open(cfg.clone(), 1).unwrap();
    write_batches(&mut logs[0], 100, 2, 80);
    wal.shutdown().unwrap();
    drop(logs);
    let segs = data_segments(&tmp.0);
    assert!(segs.len() >= 4, "{segs:?}");
    let victim = segment::path(&tmp.0, segs[1]);
    let len = fs::metadata(&victim).unwrap().len();
    let f = OpenOptions::new().write(true).open(&victim).unwrap();
    f.write_all_at(&vec![0u8; len as usize - 32], 32).unwrap();
    drop(f);
    match open(cfg, 1) {
        Err(WalError::Corrupt {
            path,
            offset,
            reason,
        }) => {
            assert_eq!((path, offset), (victim, 32), "{reason}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a vanished segment must be refused"),
    }
}

#[test]
fn missing_segment_is_an_error() {
    let tmp = TempDir::new("missing");
    let cfg = config(&tmp.0, FsyncPolicy::No, 4096);
    let (wal, mut logs, _) = open(cfg.clone(), 1).unwrap();
    for i in 0..200 {
        logs[0].append(0, &payload(0, i, 100));
        logs[0].flush();
    }
    wal.shutdown().unwrap();
    drop(logs);
    let segs = segments(&tmp.0);
    assert!(segs.len() >= 4, "{segs:?}");
    let gone = segment::path(&tmp.0, segs[2]);
    fs::remove_file(&gone).unwrap();
    match open(cfg, 1) {
        Err(WalError::MissingSegment { path }) => assert_eq!(path, gone),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a gap in the segments must be refused"),
    }
}

/// Small segments, several producers, records of many sizes (some larger than a
/// segment): rotation loses and duplicates nothing.
#[test]
fn rotation_under_load_loses_nothing() {
    let tmp = TempDir::new("rotation");
    const SHARDS: usize = 3;
    const PER_SHARD: u64 = 4000;
    let seg = 64 << 10;
    let cfg = config(&tmp.0, FsyncPolicy::Always, seg);
    let (wal, logs, _) = open(cfg.clone(), SHARDS).unwrap();
    let handles: Vec<_> = logs
        .into_iter()
        .enumerate()
        .map(|(shard, mut log)| {
            thread::spawn(move || {
                let mut rng = Rng(99 + shard as u64);
                for seq in 0..PER_SHARD {
                    let len = if seq % 1000 == 999 {
                        seg as usize + 1000 // larger than a segment
                    } else {
                        10 + rng.below(1500) as usize
                    };
                    log.append(0, &payload(shard, seq, len));
                    if rng.below(4) == 0 {
                        log.flush();
                    }
                }
                log.flush();
                log
            })
        })
        .collect();
    let logs: Vec<ShardLog> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let shared = wal.shared();
    wal.shutdown().unwrap();
    drop(logs);
    let segs = segments(&tmp.0);
    assert!(segs.len() > 50, "{} segments", segs.len());
    let stats = &shared.stats;
    assert_eq!(
        stats.records.load(Ordering::Relaxed),
        SHARDS as u64 * PER_SHARD
    );
    assert!(stats.fsyncs.load(Ordering::Relaxed) >= stats.batches.load(Ordering::Relaxed));
    let (wal, _, mut rec) = open(cfg, SHARDS).unwrap();
    assert!(rec.truncated.is_none());
    let mut seen: HashMap<(usize, u64), usize> = HashMap::new();
    let mut next = [1u64; SHARDS];
    for r in all_records(&mut rec) {
        let (shard, seq) = ids(&r.payload);
        assert_eq!(r.lsn, next[shard]);
        next[shard] += 1;
        let expect = payload(shard, seq, r.payload.len());
        assert_eq!(&r.payload[..], &expect[..]);
        *seen.entry((shard, seq)).or_default() += 1;
    }
    assert_eq!(seen.len() as u64, SHARDS as u64 * PER_SHARD);
    assert!(seen.values().all(|&n| n == 1));
    wal.shutdown().unwrap();
}

/// Snapshot written while records keep coming; completing it deletes the old segments,
/// and reopening returns the snapshot's entries, then only the records after its start.
#[test]
fn snapshot_then_later_records_and_old_segments_deleted() {
    let tmp = TempDir::new("snapshot");
    let cfg = config(&tmp.0, FsyncPolicy::Always, 8192);
    let (wal, mut logs, rec) = open(cfg.clone(), 2).unwrap();
    assert_eq!(rec.snapshot_id, None);
    // Phase A: records the snapshot will cover.
    let mut last = [0u64; 2];
    for i in 0..600 {
        let s = (i % 2) as usize;
        last[s] = logs[s].append(0, &payload(s, i, 60));
        logs[s].flush();
    }
    for s in 0..2 {
        assert!(wait_durable(&logs[s], last[s], Duration::from_secs(10)));
    }
    let start = wal.position();
    // The running log total counts every record byte: 600 records of 60-byte payloads.
    let record_size = (super::record::HEADER + 60) as u64;
    let (position, log_at_start) = wal.position_and_log_bytes();
    assert_eq!(position, start);
    assert_eq!(log_at_start, 600 * record_size);
    let before = segments(&tmp.0);
    assert!(
        before.len() > 3 && before[0] < start.segment,
        "{before:?} {start:?}"
    );
    // The snapshot is written in steps while phase B records keep arriving.
    let mut writers: Vec<SnapshotWriter> =
        (0..2).map(|s| wal.snapshot_writer(s, 1).unwrap()).collect();
    for i in 0..100u64 {
        for (s, w) in writers.iter_mut().enumerate() {
            w.write(logs[s].last(), format!("key{s}-{i}").as_bytes())
                .unwrap();
        }
        let s = (i % 2) as usize;
        last[s] = logs[s].append(1, &payload(s, 1000 + i, 60));
        logs[s].flush();
    }
    // Not complete until every part is finished.
    let mut writers = writers.into_iter();
    writers.next().unwrap().finish().unwrap();
    assert!(matches!(
        wal.complete_snapshot(1, 2, start),
        Err(WalError::Snapshot { .. })
    ));
    writers.next().unwrap().finish().unwrap();
    let size = wal.complete_snapshot(1, 2, start).unwrap();
    let parts: u64 = (0..2)
        .map(|p| {
            fs::metadata(tmp.0.join(super::snapshot::part_name(1, p)))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(size, parts, "the snapshot's size is its parts'");
    let after = segments(&tmp.0);
    assert_eq!(
        after[0], start.segment,
        "segments before the start are deleted"
    );
    for s in 0..2 {
        assert!(wait_durable(&logs[s], last[s], Duration::from_secs(10)));
    }
    assert_eq!(
        wal.log_bytes() - log_at_start,
        100 * record_size,
        "the 100 records after the start"
    );
    wal.shutdown().unwrap();
    drop(logs);

    let (wal, logs, mut rec) = open(cfg.clone(), 2).unwrap();
    assert_eq!(rec.snapshot_id, Some(1));
    assert_eq!(rec.snapshot_entries, 200);
    // What a compaction would replace now: the snapshot and the 100 records after its start.
    assert_eq!(rec.snapshot_bytes, size);
    assert_eq!(rec.log_bytes, 100 * record_size);
    assert_eq!(
        wal.log_bytes(),
        rec.log_bytes,
        "the total goes on from there"
    );
    let entries: Vec<SnapshotEntry> = rec.snapshot().collect::<Result<_, _>>().unwrap();
    assert_eq!(entries.len(), 200);
    assert_eq!(&entries[0].payload[..], b"key0-0");
    assert_eq!(&entries[100].payload[..], b"key1-0");
    let records = all_records(&mut rec);
    assert_eq!(rec.records, 100);
    assert!(
        records.iter().all(|r| r.kind == 1),
        "only records after the start"
    );
    assert_eq!(records.len(), 100);
    assert_eq!(logs[0].last(), last[0].max(last[1]));
    // A stale temp file and an unfinished part of a newer snapshot are cleaned up.
    let mut w = wal.snapshot_writer(0, 2).unwrap();
    w.write(1, b"unfinished").unwrap();
    drop(w);
    let snap_files = |dir: &Path, id: &str| {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                let name = e
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .into_owned();
                name.starts_with(&format!("snap-{id}"))
            })
            .count()
    };
    assert_eq!(
        snap_files(&tmp.0, &format!("{:020}", 2)),
        0,
        "a writer dropped unfinished removes its temporary file"
    );
    // A failed snapshot's finished parts go when it is abandoned.
    let w = wal.snapshot_writer(1, 3).unwrap();
    w.finish().unwrap();
    assert_eq!(snap_files(&tmp.0, &format!("{:020}", 3)), 1);
    wal.abandon_snapshot(3);
    assert_eq!(snap_files(&tmp.0, &format!("{:020}", 3)), 0);
    // A published one (its manifest on disk) keeps its parts whatever failed after.
    wal.abandon_snapshot(1);
    assert_eq!(rec.snapshot().count(), 200);
    wal.shutdown().unwrap();
    drop(logs);
    let (wal, _, mut rec) = open(cfg, 2).unwrap();
    assert_eq!(rec.snapshot_id, Some(1));
    assert_eq!(rec.snapshot().count(), 200);
    assert!(fs::read_dir(&tmp.0).unwrap().all(|e| {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        !(name.starts_with("snap-") && name.ends_with(".tmp"))
    }));
    wal.shutdown().unwrap();
}

/// With `Always`, durable() passes a record only once its sync succeeded: while every
/// sync fails, the record is written but not durable and the error is reported; once
/// syncs succeed again it becomes durable, the error clears, and it is in the log once.
#[test]
fn durable_advances_only_after_the_sync() {
    let tmp = TempDir::new("durable");
    let cfg = config(&tmp.0, FsyncPolicy::Always, 1 << 16);
    let (wal, mut logs, _) = open(cfg.clone(), 1).unwrap();
    let first = logs[0].append(0, b"before");
    logs[0].flush();
    assert!(wait_durable(&logs[0], first, Duration::from_secs(10)));
    let shared = wal.shared();
    shared.set_fault(Fault::Sync);
    let lsn = logs[0].append(0, b"held");
    logs[0].flush();
    wait_error(
        &logs[0],
        true,
        Duration::from_secs(10),
        "the error must be reported",
    );
    thread::sleep(Duration::from_millis(350)); // several retries
    assert_eq!(logs[0].durable(), first, "not durable while syncs fail");
    assert!(logs[0].error().unwrap().contains("fdatasync"));
    shared.set_fault(Fault::None);
    assert!(wait_durable(&logs[0], lsn, Duration::from_secs(10)));
    assert_eq!(logs[0].error(), None, "cleared once a retry succeeded");
    assert!(wal.stats().last_error.is_some());
    wal.shutdown().unwrap();
    drop(logs);
    let (wal, _, mut rec) = open(cfg, 1).unwrap();
    let got: Vec<Vec<u8>> = all_records(&mut rec)
        .iter()
        .map(|r| r.payload.to_vec())
        .collect();
    assert_eq!(got, vec![b"before".to_vec(), b"held".to_vec()]);
    wal.shutdown().unwrap();
}

/// Failing writes (every policy): records are kept and retried, nothing is lost or
/// duplicated, nothing is published as durable meanwhile.
#[test]
fn failed_writes_are_retried_without_loss() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
        let tmp = TempDir::new("retry");
        let cfg = config(&tmp.0, policy, 8192);
        let (wal, mut logs, _) = open(cfg.clone(), 2).unwrap();
        let shared = wal.shared();
        let mut n = 0u64;
        for round in 0..7 {
            shared.set_fault(if round % 2 == 1 {
                Fault::Write
            } else {
                Fault::None
            });
            let before = [logs[0].durable(), logs[1].durable()];
            for _ in 0..50 {
                for (s, log) in logs.iter_mut().enumerate() {
                    log.append(0, &payload(s, n, 90));
                    log.flush();
                }
                n += 1;
            }
            if round % 2 == 1 {
                thread::sleep(Duration::from_millis(150));
                assert!(logs[0].error().is_some(), "{policy:?}");
                assert_eq!([logs[0].durable(), logs[1].durable()], before, "{policy:?}");
            } else {
                assert!(wait_durable(
                    &logs[0],
                    logs[0].last(),
                    Duration::from_secs(10)
                ));
                assert!(wait_durable(
                    &logs[1],
                    logs[1].last(),
                    Duration::from_secs(10)
                ));
                // (Under EverySec a periodic sync that failed must succeed first.)
                wait_error(
                    &logs[0],
                    false,
                    Duration::from_secs(5),
                    &format!("{policy:?}: error never cleared"),
                );
            }
        }
        // Bytes rewritten after failures count once, as recovery counts them.
        let total = wal.log_bytes();
        assert_eq!(
            total,
            2 * n * (super::record::HEADER + 90) as u64,
            "{policy:?}"
        );
        wal.shutdown().unwrap();
        drop(logs);
        let (wal, _, mut rec) = open(cfg, 2).unwrap();
        assert_eq!(rec.log_bytes, total, "{policy:?}");
        let mut next = [0u64; 2];
        for r in all_records(&mut rec) {
            let (s, seq) = ids(&r.payload);
            assert_eq!(seq, next[s], "{policy:?}");
            next[s] += 1;
        }
        assert_eq!(next, [n, n], "{policy:?}");
        wal.shutdown().unwrap();
    }
}

/// Leaving `No` syncs the segments that policy left unsynced, closed ones included. If
/// that fails, the change is retried (the old policy stays in force meanwhile) and a
/// segment whose sync failed is synced again, not forgotten.
#[test]
fn leaving_no_retries_failed_segment_syncs() {
    let tmp = TempDir::new("leave-no");
    let cfg = config(&tmp.0, FsyncPolicy::No, 4096);
    let (wal, mut logs, _) = open(cfg.clone(), 1).unwrap();
    let mut last = 0;
    for i in 0..120 {
        last = logs[0].append(0, &payload(0, i, 100));
        logs[0].flush();
    }
    assert!(wait_durable(&logs[0], last, Duration::from_secs(10)));
    let segments = segments(&tmp.0).len();
    assert!(segments >= 3, "the test needs closed segments ({segments})");
    let shared = wal.shared();
    shared.set_fault(Fault::Sync);
    wal.set_policy(FsyncPolicy::Always);
    wait_error(
        &logs[0],
        true,
        Duration::from_secs(10),
        "the failing sync must be reported",
    );
    thread::sleep(Duration::from_millis(250)); // several retries
    let before = wal.stats().fsyncs;
    shared.set_fault(Fault::None);
    append_durable(&mut logs[0], &payload(0, 120, 100));
    let synced = wal.stats().fsyncs - before;
    // Every closed segment (the preparer's spare aside) and the current one were synced
    // once the disk recovered, then the new record under `Always`.
    assert!(
        synced as usize >= segments - 1,
        "only {synced} syncs after recovery for {segments} segments"
    );
    wait_error(
        &logs[0],
        false,
        Duration::from_secs(5),
        "cleared once the syncs succeeded",
    );
    wal.shutdown().unwrap();
}

/// Backing out to `No` after a change away from it failed: `No` promises no sync, so the
/// error clears (writes are not refused for good) and records are published as written,
/// although syncs still fail.
#[test]
fn backing_out_to_no_clears_the_sync_error() {
    let tmp = TempDir::new("back-to-no");
    let (wal, mut logs, _) = open(config(&tmp.0, FsyncPolicy::No, 4096), 1).unwrap();
    for i in 0..60 {
        logs[0].append(0, &payload(0, i, 100));
        logs[0].flush();
    }
    assert!(wait_durable(
        &logs[0],
        logs[0].last(),
        Duration::from_secs(10)
    ));
    let shared = wal.shared();
    shared.set_fault(Fault::Sync);
    wal.set_policy(FsyncPolicy::Always);
    wait_error(
        &logs[0],
        true,
        Duration::from_secs(10),
        "the failing sync must be reported",
    );
    wal.set_policy(FsyncPolicy::No);
    wait_error(
        &logs[0],
        false,
        Duration::from_secs(5),
        "the error must clear under No",
    );
    append_durable(&mut logs[0], &payload(0, 60, 100));
    shared.set_fault(Fault::None);
    wal.shutdown().unwrap();
}

/// `EverySec`: a failing periodic sync is reported (records still count as durable once
/// written to the OS) and clears only when a sync succeeds again.
#[test]
fn everysec_sync_failure_is_reported_until_a_sync_succeeds() {
    let tmp = TempDir::new("everysec-fail");
    let (wal, mut logs, _) = open(config(&tmp.0, FsyncPolicy::EverySec, 1 << 20), 1).unwrap();
    let shared = wal.shared();
    shared.set_fault(Fault::Sync);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut i = 0;
    while logs[0].error().is_none() {
        assert!(Instant::now() < deadline, "a failing sync must be reported");
        append_durable(&mut logs[0], &payload(0, i, 30));
        i += 1;
        thread::sleep(Duration::from_millis(10));
    }
    // Writes keep succeeding, the error stays.
    append_durable(&mut logs[0], b"more");
    assert!(logs[0].error().unwrap().contains("fdatasync"));
    shared.set_fault(Fault::None);
    wait_error(
        &logs[0],
        false,
        Duration::from_secs(5),
        "cleared by a successful sync",
    );
    wal.shutdown().unwrap();
}

/// Under `No`, nothing is synced until shutdown, which syncs everything handed over.
#[test]
fn shutdown_writes_and_syncs_everything() {
    let tmp = TempDir::new("shutdown");
    let cfg = config(&tmp.0, FsyncPolicy::No, 1 << 20);
    let (wal, mut logs, _) = open(cfg.clone(), 2).unwrap();
    let shared = wal.shared();
    for i in 0..500 {
        for (s, log) in logs.iter_mut().enumerate() {
            log.append(0, &payload(s, i, 50));
        }
        if i % 50 == 0 {
            logs[0].flush();
            logs[1].flush();
        }
    }
    logs[0].flush();
    logs[1].flush();
    assert_eq!(
        shared.stats.fsyncs.load(Ordering::Relaxed),
        0,
        "No never syncs"
    );
    wal.shutdown().unwrap(); // immediately: whatever is still queued must be written
    assert!(shared.stats.fsyncs.load(Ordering::Relaxed) >= 1);
    assert_eq!(logs[0].durable(), 500);
    assert_eq!(logs[1].durable(), 500);
    drop(logs);
    let (wal, _, rec) = open(cfg, 2).unwrap();
    assert_eq!(rec.records, 1000);
    wal.shutdown().unwrap();
}

/// Many tiny flushes from several threads with random pauses, each waiting for its own
/// record to become durable before a deadline: a lost wake-up would leave the WAL thread
/// asleep with work queued, and the wait would time out. Waits use the notify callback.
#[test]
fn parking_handshake_never_loses_a_wakeup() {
    for policy in [FsyncPolicy::No, FsyncPolicy::Always] {
        let tmp = TempDir::new("parking");
        const SHARDS: usize = 4;
        let rounds: u64 = if policy == FsyncPolicy::No { 3000 } else { 300 };
        let (wal, logs, _) = open(config(&tmp.0, policy, 1 << 20), SHARDS).unwrap();
        let signal = Arc::new((Mutex::new(0u64), Condvar::new()));
        let notified = Arc::new(AtomicU64::new(0));
        {
            let signal = signal.clone();
            let notified = notified.clone();
            wal.set_notify(Box::new(move |_shard| {
                notified.fetch_add(1, Ordering::Relaxed);
                let (m, c) = &*signal;
                *lock(m) += 1;
                c.notify_all();
            }));
        }
        let handles: Vec<_> = logs
            .into_iter()
            .enumerate()
            .map(|(shard, mut log)| {
                let signal = signal.clone();
                thread::spawn(move || {
                    let mut rng = Rng(5 + shard as u64);
                    for i in 0..rounds {
                        let lsn = log.append(0, &payload(shard, i, 8));
                        log.flush();
                        match rng.below(4) {
                            0 => {}
                            1 => thread::yield_now(),
                            _ => thread::sleep(Duration::from_micros(rng.below(200))),
                        }
                        let deadline = Instant::now() + Duration::from_secs(10);
                        let (m, c) = &*signal;
                        let mut g = lock(m);
                        while log.durable() < lsn {
                            let now = Instant::now();
                            assert!(
                                now < deadline,
                                "{policy:?}: shard {shard} lost a wake-up at {i}"
                            );
                            g = c
                                .wait_timeout(g, (deadline - now).min(Duration::from_millis(100)))
                                .unwrap()
                                .0;
                        }
                    }
                    log
                })
            })
            .collect();
        let logs: Vec<ShardLog> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(notified.load(Ordering::Relaxed) > 0);
        wal.shutdown().unwrap();
        drop(logs);
    }
}

#[test]
fn lsns_stay_above_previous_runs_when_the_shard_count_changes() {
    let tmp = TempDir::new("reshard");
    let (wal, mut logs, _) = open(config(&tmp.0, FsyncPolicy::No, 1 << 16), 4).unwrap();
    for _ in 0..10 {
        logs[3].append(0, b"x");
    }
    logs[0].append(0, b"y");
    logs[3].flush();
    logs[0].flush();
    wal.shutdown().unwrap();
    drop(logs);
    let (wal, mut logs, mut rec) = open(config(&tmp.0, FsyncPolicy::No, 1 << 16), 2).unwrap();
    assert_eq!(rec.records, 11);
    assert!(all_records(&mut rec).iter().any(|r| r.shard == 3));
    assert_eq!(logs[0].last(), 10);
    assert_eq!(logs[1].append(0, b"z"), 11);
    wal.shutdown().unwrap();
}

#[test]
fn everysec_publishes_on_write_and_syncs_rarely() {
    let tmp = TempDir::new("everysec");
    let (wal, mut logs, _) = open(config(&tmp.0, FsyncPolicy::EverySec, 1 << 20), 1).unwrap();
    let started = Instant::now();
    for i in 0..2000 {
        append_durable(&mut logs[0], &payload(0, i, 20));
    }
    let stats = wal.stats();
    let secs = started.elapsed().as_secs();
    assert!(stats.fsyncs <= secs + 2, "{stats:?} in {secs}s");
    assert_eq!(stats.records, 2000);
    wal.shutdown().unwrap();
}

/// Under sustained load (the WAL thread never idle) `EverySec` still syncs every second.
#[test]
fn everysec_syncs_under_sustained_load() {
    let tmp = TempDir::new("everysec-load");
    let (wal, logs, _) = open(config(&tmp.0, FsyncPolicy::EverySec, 256 << 20), 2).unwrap();
    let stop = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = logs
        .into_iter()
        .map(|mut log| {
            let stop = stop.clone();
            thread::spawn(move || {
                while stop.load(Ordering::Relaxed) == 0 {
                    log.append(0, &[7u8; 64]);
                    log.flush();
                }
                log
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(2600));
    let stats = wal.stats();
    stop.store(1, Ordering::Relaxed);
    let logs: Vec<ShardLog> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(stats.fsyncs >= 2, "{stats:?}");
    wal.shutdown().unwrap();
    drop(logs);
}

#[test]
fn invalid_configurations_are_refused() {
    let tmp = TempDir::new("config");
    assert!(matches!(
        open(config(&tmp.0, FsyncPolicy::No, 100), 1),
        Err(WalError::Config(_))
    ));
    assert!(matches!(
        open(config(&tmp.0, FsyncPolicy::No, 1 << 16), 0),
        Err(WalError::Config(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary bytes as a segment (after a valid header, or instead of one) never
    /// panic recovery: it opens (possibly cutting) or returns an error.
    #[test]
    fn arbitrary_segment_bytes_never_panic_recovery(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        valid_header in any::<bool>(),
        mode_truncate in any::<bool>(),
    ) {
        let tmp = TempDir::new("fuzz");
        let mut data = Vec::new();
        if valid_header {
            data.extend_from_slice(&segment::encode_header(1));
        }
        data.extend_from_slice(&body);
        fs::write(segment::path(&tmp.0, 1), &data).unwrap();
        let mut cfg = config(&tmp.0, FsyncPolicy::No, 4096);
        if mode_truncate {
            cfg.recover = RecoverMode::Truncate;
        }
        if let Ok((wal, _, mut rec)) = open(cfg, 1) {
            for r in rec.records() {
                prop_assert!(r.is_ok());
            }
            wal.shutdown().unwrap();
        }
    }
}

/// Throughput and sync latency on this machine's temp directory:
/// `cargo test -p coreshard-engine --release wal::tests::measure -- --ignored --nocapture`
#[test]
#[ignore]
fn measure() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
        let tmp = TempDir::new("measure");
        const SHARDS: usize = 4;
        const PER_SHARD: u64 = 200_000;
        let (wal, logs, _) = open(config(&tmp.0, policy, DEFAULT_SEGMENT_SIZE), SHARDS).unwrap();
        let started = Instant::now();
        let handles: Vec<_> = logs
            .into_iter()
            .enumerate()
            .map(|(shard, mut log)| {
                thread::spawn(move || {
                    let body = payload(shard, 0, 100);
                    for i in 0..PER_SHARD {
                        log.append(0, &body);
                        // A "turn" of 16 records; keep at most 64 turns in flight.
                        if i % 16 == 15 {
                            log.flush();
                            while log.last() > log.durable() + 1024 {
                                thread::yield_now();
                            }
                        }
                    }
                    log.flush();
                    while log.durable() < log.last() {
                        thread::yield_now();
                    }
                    log
                })
            })
            .collect();
        let logs: Vec<ShardLog> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let elapsed = started.elapsed();
        let s = wal.stats();
        println!(
            "{policy:?}: {} records of 120 B from {SHARDS} producers in {elapsed:?}: {:.0} records/s, \
             {} writes ({:.1} records/write), {} fsyncs, fsync p50 {} us p99 {} us",
            s.records,
            s.records as f64 / elapsed.as_secs_f64(),
            s.batches,
            s.records as f64 / s.batches.max(1) as f64,
            s.fsyncs,
            s.fsync_p50_us,
            s.fsync_p99_us
        );
        wal.shutdown().unwrap();
        drop(logs);
    }
    // Sequential single-record commits: one write+fdatasync each.
    let tmp = TempDir::new("measure-seq");
    let (wal, mut logs, _) =
        open(config(&tmp.0, FsyncPolicy::Always, DEFAULT_SEGMENT_SIZE), 1).unwrap();
    let started = Instant::now();
    for i in 0..2000 {
        let lsn = logs[0].append(0, &payload(0, i, 100));
        logs[0].flush();
        while logs[0].durable() < lsn {
            std::hint::spin_loop();
        }
    }
    let s = wal.stats();
    println!(
        "Always, one record per commit: {:.0} commits/s, fsync p50 {} us p99 {} us",
        2000.0 / started.elapsed().as_secs_f64(),
        s.fsync_p50_us,
        s.fsync_p99_us
    );
    wal.shutdown().unwrap();
}

#[test]
fn handles_are_send_and_the_wal_is_sync() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<ShardLog>();
    send::<SnapshotWriter>();
    send::<Recovery>();
    send_sync::<Wal>();
}
