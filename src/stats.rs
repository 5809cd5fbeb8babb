//! Per-shard command statistics (INFO `commandstats`, `latencystats`, `errorstats`) and
//! the slow log (SLOWLOG). Each shard keeps its own, without atomics; INFO and SLOWLOG
//! gather every shard's copy through the mailboxes and merge them.
//!
//! The hot path costs one clock read per command: `Server::on_data` reads the clock once
//! when input arrives and once after each command, and a command's time is the gap since
//! the previous reading (its parse included). A command that runs on another shard is
//! timed where it arrived (routing and, for local keys, execution); its remote part is not.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;

/// Sub-buckets per power of two (2^3: values within 12.5% share a bucket).
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Largest exponent kept (2^40 ns, about 18 minutes); longer times count there.
const MAX_EXP: u32 = 40;
/// Buckets of a histogram.
const BUCKETS: usize = (MAX_EXP as usize - SUB_BITS as usize + 2) * SUB;

/// A log-bucketed histogram of nanoseconds: exact below 8 ns, then 8 buckets per power
/// of two. 2.4 KB, allocated when its command first runs.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }
}

/// The bucket of `ns`.
#[inline]
fn bucket(ns: u64) -> usize {
    let ns = ns.min((1u64 << (MAX_EXP + 1)) - 1);
    if ns < SUB as u64 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros();
    let sub = (ns >> (exp - SUB_BITS)) as usize & (SUB - 1);
    (exp - SUB_BITS + 1) as usize * SUB + sub
}

/// The highest value that lands in bucket `i` (what a percentile reports, as HdrHistogram's
/// "highest equivalent value").
fn bucket_high(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let exp = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = (i % SUB) as u64;
    let low = (SUB as u64 + sub) << (exp - SUB_BITS);
    low + (1u64 << (exp - SUB_BITS)) - 1
}

impl Histogram {
    /// Count one value.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.counts[bucket(ns)] += 1;
        self.total += 1;
    }

    /// Add another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
    }

    /// Values counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Values below `ns`: exact when `ns` starts a bucket (every power of two does).
    pub fn count_below(&self, ns: u64) -> u64 {
        self.counts[..bucket(ns)].iter().sum()
    }

    /// LATENCY HISTOGRAM's `histogram_usec`, as Redis 7 builds it from its HdrHistogram (a
    /// log iteration from 1024 ns, base 2): for each power of two `L` from 1024 ns until
    /// every value is counted, the label `L`'s highest equivalent value in microseconds
    /// (`(L + L/128 - 1) / 1000`, Redis's 2-digit precision) and the number of values
    /// below `L`, listed when it grew.
    pub fn redis_cdf(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut previous = 0;
        let mut level: u64 = 1024;
        while previous < self.total {
            let below = if level > 1 << MAX_EXP {
                self.total
            } else {
                self.count_below(level)
            };
            if below > previous {
                out.push(((level + level / 128 - 1) / 1000, below));
            }
            previous = below;
            level *= 2;
        }
        out
    }

    /// The value at percentile `p` (0-100), in nanoseconds; 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_high(i);
            }
        }
        bucket_high(BUCKETS - 1)
    }
}

/// One command's counters on one shard.
#[derive(Debug, Clone, Default)]
pub struct CmdStat {
    /// Calls that ran (rejected ones not included, as in Redis).
    pub calls: u64,
    /// Time spent in them.
    pub nanos: u64,
    /// Calls refused before running (arity, authentication, OOM, MISCONF).
    pub rejected: u64,
    /// Calls that ran and answered an error.
    pub failed: u64,
    /// Latency of the calls that ran.
    pub hist: Option<Histogram>,
}

impl CmdStat {
    /// Add another shard's counters.
    pub fn merge(&mut self, o: &CmdStat) {
        self.calls += o.calls;
        self.nanos += o.nanos;
        self.rejected += o.rejected;
        self.failed += o.failed;
        if let Some(h) = &o.hist {
            self.hist.get_or_insert_with(Histogram::default).merge(h);
        }
    }
}

/// Every command's counters on one shard, by command index ([`crate::commands::index_of`]).
#[derive(Debug, Default)]
pub struct CmdStats {
    stats: Vec<CmdStat>,
}

impl CmdStats {
    /// Count one call of command `idx` that took `ns`: rejected before running, failed
    /// (ran and answered an error) or fine.
    #[inline]
    pub fn record(&mut self, idx: usize, ns: u64, outcome: Outcome) {
        if idx >= self.stats.len() {
            self.stats.resize_with(idx + 1, CmdStat::default);
        }
        let s = &mut self.stats[idx];
        if outcome == Outcome::Rejected {
            s.rejected += 1;
            return;
        }
        s.calls += 1;
        s.nanos += ns;
        if outcome == Outcome::Failed {
            s.failed += 1;
        }
        s.hist.get_or_insert_with(Histogram::default).record(ns);
    }

    /// Count a failure (or an OOM refusal) of command `idx`, whose call was counted on
    /// the shard it arrived at, when it ran here for that shard.
    pub fn record_failure(&mut self, idx: usize, rejected: bool) {
        if idx >= self.stats.len() {
            self.stats.resize_with(idx + 1, CmdStat::default);
        }
        let s = &mut self.stats[idx];
        if rejected {
            s.rejected += 1;
        } else {
            s.failed += 1;
        }
    }

    /// The commands with any count, by index.
    pub fn used(&self) -> Vec<(usize, CmdStat)> {
        self.stats
            .iter()
            .enumerate()
            .filter(|(_, s)| s.calls > 0 || s.rejected > 0 || s.failed > 0)
            .map(|(i, s)| (i, s.clone()))
            .collect()
    }

    /// Forget everything (CONFIG RESETSTAT).
    pub fn reset(&mut self) {
        self.stats.clear();
    }
}

/// How a call ended, for its command's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered without an error.
    Ok,
    /// Ran and answered an error.
    Failed,
    /// Refused before running.
    Rejected,
}

/// Redis stops adding error codes to errorstats past this many.
const MAX_ERROR_CODES: usize = 128;

thread_local! {
    /// Error replies encoded on this thread (a shard): total, OOM among them, and by code.
    static ERROR_TOTAL: Cell<u64> = const { Cell::new(0) };
    static OOM_TOTAL: Cell<u64> = const { Cell::new(0) };
    static ERRORS: RefCell<Vec<(String, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Count an error reply (`msg` starts with its code, e.g. `ERR ...`, `WRONGTYPE ...`).
pub fn note_error(msg: &str) {
    // Redis's rule: the code is what precedes a space within the first 32 bytes; an
    // error without one counts as ERR (so a client cannot make codes of any length).
    let head = &msg.as_bytes()[..msg.len().min(32)];
    let code = match head.iter().position(|&c| c == b' ') {
        Some(end) if end > 0 => &msg[..end],
        _ => "ERR",
    };
    ERROR_TOTAL.with(|t| t.set(t.get() + 1));
    if code == "OOM" {
        OOM_TOTAL.with(|t| t.set(t.get() + 1));
    }
    ERRORS.with(|e| {
        let mut e = e.borrow_mut();
        if let Some((_, n)) = e.iter_mut().find(|(c, _)| c == code) {
            *n += 1;
        } else if e.len() < MAX_ERROR_CODES {
            e.push((code.to_string(), 1));
        }
    });
}

/// Error replies counted on this thread so far, and OOM refusals among them.
#[inline]
pub fn error_counts() -> (u64, u64) {
    (ERROR_TOTAL.with(Cell::get), OOM_TOTAL.with(Cell::get))
}

/// This thread's errors by code, and their total.
pub fn error_stats() -> (Vec<(String, u64)>, u64) {
    (
        ERRORS.with(|e| e.borrow().clone()),
        ERROR_TOTAL.with(Cell::get),
    )
}

/// Forget this thread's error counts (CONFIG RESETSTAT).
pub fn reset_errors() {
    ERROR_TOTAL.with(|t| t.set(0));
    OOM_TOTAL.with(|t| t.set(0));
    ERRORS.with(|e| e.borrow_mut().clear());
}

/// Sum error codes from several shards, in first-seen order.
pub fn merge_errors(into: &mut Vec<(String, u64)>, from: &[(String, u64)]) {
    for (code, n) in from {
        match into.iter_mut().find(|(c, _)| c == code) {
            Some((_, m)) => *m += n,
            None => into.push((code.clone(), *n)),
        }
    }
}

/// Slow log entry ids, shared by every shard so that merged logs order by id as by time.
static NEXT_SLOW_ID: AtomicU64 = AtomicU64::new(0);

/// Redis keeps at most this many arguments of a slow command...
const SLOWLOG_MAX_ARGC: usize = 32;
/// ...and at most this many bytes of each.
const SLOWLOG_MAX_STRING: usize = 128;

/// One slow command, as SLOWLOG GET shows it.
#[derive(Debug, Clone)]
pub struct SlowEntry {
    /// Unique, increasing across shards.
    pub id: u64,
    /// Unix seconds when it was logged.
    pub time: u64,
    /// Its duration in microseconds.
    pub micros: u64,
    /// Its arguments, shortened as Redis does.
    pub args: Vec<Bytes>,
    /// The client's `ip:port`.
    pub addr: String,
    /// The client's name (empty if none).
    pub name: String,
}

impl SlowEntry {
    /// An entry for `args`, shortened like Redis's `slowlogCreateEntry`: at most 32
    /// arguments (the last says how many more there were), each at most 128 bytes (then
    /// how many more bytes).
    pub fn new<A: AsRef<[u8]>>(args: &[A], micros: u64, addr: String, name: String) -> Self {
        let argc = args.len().min(SLOWLOG_MAX_ARGC);
        let mut kept = Vec::with_capacity(argc);
        for (i, a) in args.iter().take(argc).enumerate() {
            let a = a.as_ref();
            if argc != args.len() && i == argc - 1 {
                let more = args.len() - argc + 1;
                kept.push(Bytes::from(format!("... ({more} more arguments)")));
            } else if a.len() > SLOWLOG_MAX_STRING {
                let mut v = a[..SLOWLOG_MAX_STRING].to_vec();
                v.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - SLOWLOG_MAX_STRING).as_bytes(),
                );
                kept.push(Bytes::from(v));
            } else {
                kept.push(Bytes::copy_from_slice(a));
            }
        }
        SlowEntry {
            id: NEXT_SLOW_ID.fetch_add(1, Relaxed),
            time: crate::server::ops::unix_ms() / 1000,
            micros,
            args: kept,
            addr,
            name,
        }
    }
}

/// One shard's slow log, newest first.
#[derive(Debug, Default)]
pub struct SlowLog {
    entries: VecDeque<SlowEntry>,
}

impl SlowLog {
    /// Log an entry, keeping at most `max_len`.
    pub fn push(&mut self, entry: SlowEntry, max_len: usize) {
        self.entries.push_front(entry);
        self.entries.truncate(max_len);
    }

    /// The newest `n` entries.
    pub fn newest(&self, n: usize) -> Vec<SlowEntry> {
        self.entries.iter().take(n).cloned().collect()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Forget every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Merge shards' newest-first logs into one, newest first (by id, which follows time
/// across shards), keeping at most `n`.
pub fn merge_slow(mut all: Vec<SlowEntry>, n: usize) -> Vec<SlowEntry> {
    all.sort_unstable_by_key(|e| std::cmp::Reverse(e.id));
    all.truncate(n);
    all
}

/// A percentile label as Redis prints it: `p50`, `p99`, `p99.9`.
pub fn percentile_label(p: f64) -> String {
    let s = format!("{p:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("p{s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_cover_their_values() {
        let mut last = 0;
        for v in (0..5000u64).chain([1 << 20, 123_456_789, 1 << 39, u64::MAX]) {
            let b = bucket(v);
            assert!(b >= last || v > 5000, "bucket of {v}");
            last = b;
            assert!(b < BUCKETS);
            if v < 1 << MAX_EXP {
                assert!(bucket_high(b) >= v, "{v} above its bucket's top");
                assert!(bucket_high(b) - v <= v / 8 + 1, "{v} too coarse");
            }
        }
        for i in 1..BUCKETS {
            assert!(bucket_high(i) > bucket_high(i - 1));
            assert_eq!(bucket(bucket_high(i)), i);
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.percentile(50.0);
        let p99 = h.percentile(99.0);
        assert!((500_000..=563_000).contains(&p50), "{p50}");
        assert!((990_000..=1_114_000).contains(&p99), "{p99}");
        assert_eq!(Histogram::default().percentile(50.0), 0);
        let mut m = Histogram::default();
        m.merge(&h);
        m.merge(&h);
        assert_eq!(m.total(), 2000);
        assert_eq!(m.percentile(50.0), p50);
    }

    #[test]
    fn cumulative_counts_like_redis() {
        let mut h = Histogram::default();
        assert!(h.redis_cdf().is_empty());
        h.record(500);
        h.record(7_500);
        h.record(8_000);
        h.record(1_000_000);
        assert_eq!(h.count_below(1024), 1);
        assert_eq!(h.count_below(8192), 3);
        // Labels 1, 2, 4, 8, 16, 33, 66, 132, 264, 528, 1056 as Redis prints them.
        assert_eq!(h.redis_cdf(), vec![(1, 1), (8, 3), (1056, 4)]);
    }

    #[test]
    fn slow_entries_are_shortened_like_redis() {
        let args: Vec<Vec<u8>> = (0..40).map(|i| vec![b'a'; 100 + i]).collect();
        let e = SlowEntry::new(&args, 5, "1.2.3.4:5".into(), String::new());
        assert_eq!(e.args.len(), 32);
        assert_eq!(&e.args[31][..], b"... (9 more arguments)");
        assert_eq!(e.args[0].len(), 100);
        assert_eq!(e.args[30].len(), 128 + "... (2 more bytes)".len());
        assert!(e.args[30].ends_with(b"... (2 more bytes)"));
    }

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_label(50.0), "p50");
        assert_eq!(percentile_label(99.9), "p99.9");
    }

    #[test]
    fn errors_count_by_code() {
        reset_errors();
        note_error("ERR bad");
        note_error("WRONGTYPE Operation against a key");
        note_error("ERR again");
        note_error("OOM command not allowed");
        let (codes, total) = error_stats();
        assert_eq!(total, 4);
        assert_eq!(error_counts(), (4, 1));
        assert_eq!(
            codes,
            vec![
                ("ERR".to_string(), 2),
                ("WRONGTYPE".to_string(), 1),
                ("OOM".to_string(), 1)
            ]
        );
        reset_errors();
        assert_eq!(error_counts(), (0, 0));
    }
}
