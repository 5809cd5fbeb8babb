//! Settings that CONFIG SET changes at run time (besides the memory settings in
//! `evict.rs`, the notification flags in `notify/` and the script limits in
//! `script/busy.rs`), shared by every shard. Reads on the hot path are relaxed atomic
//! loads; the rest (passwords, schedules) sit behind locks read on rare paths only.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::RwLock;

use crate::config::OutputLimit;
use crate::persist::snapshot::Schedule;

/// Redis's default `slowlog-log-slower-than` (microseconds).
pub const SLOWLOG_SLOWER_THAN: i64 = 10_000;
/// Redis's default `slowlog-max-len`.
pub const SLOWLOG_MAX_LEN: usize = 128;
/// Redis's default `latency-tracking-info-percentiles`.
pub const PERCENTILES: [f64; 3] = [50.0, 99.0, 99.9];

/// The runtime-changeable settings.
#[derive(Debug)]
pub struct Runtime {
    timeout: AtomicU64,
    slowlog_slower_than: AtomicI64,
    slowlog_max_len: AtomicUsize,
    requirepass: RwLock<Option<String>>,
    save: RwLock<Schedule>,
    percentiles: RwLock<Vec<f64>>,
    latency_threshold: AtomicU64,
    /// `appendfsync`: 0 always, 1 everysec, 2 no.
    appendfsync: AtomicU8,
    /// `auto-aof-rewrite-percentage` (0: no compaction by size).
    rewrite_percentage: AtomicU64,
    /// `auto-aof-rewrite-min-size` in bytes.
    rewrite_min_size: AtomicU64,
    /// `client-output-buffer-limit` per class ([`OUTPUT_CLASSES`]): hard, soft, seconds.
    output_limits: [[AtomicU64; 3]; 3],
}

/// `client-output-buffer-limit` classes in the order Redis lists them (`replica` is also
/// called `slave`; there are no replicas here, but the value is kept and shown).
pub const OUTPUT_CLASSES: [&str; 3] = ["normal", "slave", "pubsub"];
/// The class of clients without subscriptions.
pub const NORMAL: usize = 0;
/// The class of clients with subscriptions.
pub const PUBSUB: usize = 2;

/// Redis's default output buffer limits, per class of [`OUTPUT_CLASSES`].
pub const OUTPUT_LIMITS: [OutputLimit; 3] = [
    OutputLimit {
        hard: 0,
        soft: 0,
        soft_seconds: 0,
    },
    OutputLimit {
        hard: 256 << 20,
        soft: 64 << 20,
        soft_seconds: 60,
    },
    OutputLimit {
        hard: 32 << 20,
        soft: 8 << 20,
        soft_seconds: 60,
    },
];

/// The class index of a client class name, as Redis accepts them (not `master`).
pub fn output_class(name: &str) -> Option<usize> {
    match name.to_ascii_lowercase().as_str() {
        "normal" => Some(0),
        "slave" | "replica" => Some(1),
        "pubsub" => Some(2),
        _ => None,
    }
}

/// `client-output-buffer-limit` groups (`CLASS HARD SOFT SECONDS`, repeated), checked as
/// Redis 7.0 checks them, with its error texts.
pub fn parse_output_limits(value: &str) -> Result<Vec<(usize, OutputLimit)>, String> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    // Single spaces only, as Redis splits it: a stray space is a missing argument.
    let words: Vec<&str> = value.split(' ').collect();
    if words.len() % 4 != 0 {
        return Err("Wrong number of arguments in buffer limit configuration.".into());
    }
    words
        .chunks(4)
        .map(|w| {
            let class = output_class(w[0])
                .ok_or("Invalid client class specified in buffer limit configuration.")?;
            let bad = "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
            let size = |s: &str| crate::config::parse_memory(s).map_err(|_| bad);
            let soft_seconds = w[3].parse::<u64>().map_err(|_| bad)?;
            Ok((
                class,
                OutputLimit {
                    hard: size(w[1])?,
                    soft: size(w[2])?,
                    soft_seconds,
                },
            ))
        })
        .collect()
}

/// Redis's default `auto-aof-rewrite-percentage`.
pub const REWRITE_PERCENTAGE: u64 = 100;
/// Redis's default `auto-aof-rewrite-min-size`: 64 MiB.
pub const REWRITE_MIN_SIZE: u64 = 64 << 20;

/// `appendfsync` values, in the order of their codes.
pub const APPENDFSYNC: [&str; 3] = ["always", "everysec", "no"];

impl Runtime {
    /// Settings as given at start.
    pub fn new(timeout: u64, requirepass: Option<String>, save: Schedule) -> Self {
        crate::notify::set_pubsub_hard_limit(OUTPUT_LIMITS[PUBSUB].hard);
        Runtime {
            timeout: AtomicU64::new(timeout),
            slowlog_slower_than: AtomicI64::new(SLOWLOG_SLOWER_THAN),
            slowlog_max_len: AtomicUsize::new(SLOWLOG_MAX_LEN),
            requirepass: RwLock::new(requirepass),
            save: RwLock::new(save),
            percentiles: RwLock::new(PERCENTILES.to_vec()),
            latency_threshold: AtomicU64::new(0),
            appendfsync: AtomicU8::new(0),
            rewrite_percentage: AtomicU64::new(REWRITE_PERCENTAGE),
            rewrite_min_size: AtomicU64::new(REWRITE_MIN_SIZE),
            output_limits: OUTPUT_LIMITS
                .map(|l| [l.hard as u64, l.soft as u64, l.soft_seconds].map(AtomicU64::new)),
        }
    }

    /// The output buffer limit of class `class` (an index of [`OUTPUT_CLASSES`]).
    #[inline]
    pub fn output_limit(&self, class: usize) -> OutputLimit {
        let [hard, soft, secs] = &self.output_limits[class];
        OutputLimit {
            hard: hard.load(Relaxed) as usize,
            soft: soft.load(Relaxed) as usize,
            soft_seconds: secs.load(Relaxed),
        }
    }

    /// Set the output buffer limit of class `class`.
    pub fn set_output_limit(&self, class: usize, l: OutputLimit) {
        if class == PUBSUB {
            crate::notify::set_pubsub_hard_limit(l.hard);
        }
        let [hard, soft, secs] = &self.output_limits[class];
        hard.store(l.hard as u64, Relaxed);
        soft.store(l.soft as u64, Relaxed);
        secs.store(l.soft_seconds, Relaxed);
    }

    /// `client-output-buffer-limit` as CONFIG GET shows it (bytes).
    pub fn output_limits_text(&self) -> String {
        (0..OUTPUT_CLASSES.len())
            .map(|c| {
                let l = self.output_limit(c);
                format!(
                    "{} {} {} {}",
                    OUTPUT_CLASSES[c], l.hard, l.soft, l.soft_seconds
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// When the log is compacted by size: (`auto-aof-rewrite-percentage`,
    /// `auto-aof-rewrite-min-size`).
    pub fn auto_rewrite(&self) -> (u64, u64) {
        (
            self.rewrite_percentage.load(Relaxed),
            self.rewrite_min_size.load(Relaxed),
        )
    }

    /// Set `auto-aof-rewrite-percentage`.
    pub fn set_rewrite_percentage(&self, percent: u64) {
        self.rewrite_percentage.store(percent, Relaxed);
    }

    /// Set `auto-aof-rewrite-min-size`.
    pub fn set_rewrite_min_size(&self, bytes: u64) {
        self.rewrite_min_size.store(bytes, Relaxed);
    }

    /// The `appendfsync` policy's name.
    pub fn appendfsync(&self) -> &'static str {
        APPENDFSYNC[usize::from(self.appendfsync.load(Relaxed)).min(2)]
    }

    /// Whether the policy is `always` (replies wait for the log).
    #[inline]
    pub fn fsync_always(&self) -> bool {
        self.appendfsync.load(Relaxed) == 0
    }

    /// Set `appendfsync` by name; false for an unknown name.
    pub fn set_appendfsync(&self, name: &str) -> bool {
        match APPENDFSYNC
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
        {
            Some(code) => {
                self.appendfsync.store(code as u8, Relaxed);
                true
            }
            None => false,
        }
    }

    /// Idle client timeout in seconds (0: never).
    pub fn timeout(&self) -> u64 {
        self.timeout.load(Relaxed)
    }

    /// Set the idle client timeout; shards apply it at their next loop turn.
    pub fn set_timeout(&self, secs: u64) {
        self.timeout.store(secs, Relaxed);
    }

    /// Commands at least this many microseconds long are logged (negative: none).
    #[inline]
    pub fn slowlog_slower_than(&self) -> i64 {
        self.slowlog_slower_than.load(Relaxed)
    }

    /// Set `slowlog-log-slower-than`.
    pub fn set_slowlog_slower_than(&self, us: i64) {
        self.slowlog_slower_than.store(us, Relaxed);
    }

    /// `latency-monitor-threshold` in milliseconds: commands at least this long are
    /// LATENCY events (0: monitoring off).
    #[inline]
    pub fn latency_threshold(&self) -> u64 {
        self.latency_threshold.load(Relaxed)
    }

    /// Set `latency-monitor-threshold`.
    pub fn set_latency_threshold(&self, ms: u64) {
        self.latency_threshold.store(ms, Relaxed);
    }

    /// Entries each slow log keeps.
    pub fn slowlog_max_len(&self) -> usize {
        self.slowlog_max_len.load(Relaxed)
    }

    /// Set `slowlog-max-len`.
    pub fn set_slowlog_max_len(&self, n: usize) {
        self.slowlog_max_len.store(n, Relaxed);
    }

    /// The password clients must AUTH with, if any.
    pub fn requirepass(&self) -> Option<String> {
        self.requirepass.read().map_or(None, |p| p.clone())
    }

    /// Whether a password is set.
    pub fn has_password(&self) -> bool {
        self.requirepass.read().is_ok_and(|p| p.is_some())
    }

    /// Set (or with `None` remove) the password; connections already authenticated stay
    /// so, as in Redis.
    pub fn set_requirepass(&self, p: Option<String>) {
        if let Ok(mut g) = self.requirepass.write() {
            *g = p;
        }
    }

    /// The snapshot schedule.
    pub fn save(&self) -> Schedule {
        self.save.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Set the snapshot schedule.
    pub fn set_save(&self, s: Schedule) {
        if let Ok(mut g) = self.save.write() {
            *g = s;
        }
    }

    /// Percentiles INFO latencystats reports.
    pub fn percentiles(&self) -> Vec<f64> {
        self.percentiles
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|_| PERCENTILES.to_vec())
    }

    /// Set `latency-tracking-info-percentiles`.
    pub fn set_percentiles(&self, p: Vec<f64>) {
        if let Ok(mut g) = self.percentiles.write() {
            *g = p;
        }
    }
}

/// Percentiles as CONFIG GET shows them: `50 99 99.9`.
pub fn format_percentiles(p: &[f64]) -> String {
    p.iter()
        .map(|v| crate::stats::percentile_label(*v)[1..].to_string())
        .collect::<Vec<_>>()
        .join(" ")
}
