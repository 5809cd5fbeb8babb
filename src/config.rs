//! Command-line options and the settings every shard reads.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use clap::Parser;
use coreshard_protocol::Limits;

/// coreshard: a Redis-compatible server on a thread-per-core io_uring engine.
/// One of `names`, in any case (redis.conf's enums are case-insensitive), as written in
/// `names`.
fn lower(names: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = String> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(names.iter().copied())
        .map(|s: String| s.to_ascii_lowercase())
}

#[derive(Debug, Clone, Parser)]
#[command(version, about, args_override_self = true)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// TCP port (0 picks a free one; the startup line says which).
    #[arg(long, default_value_t = 6379)]
    pub port: u16,
    /// Serve Prometheus metrics over HTTP (`GET /metrics`) on this port, from the shards'
    /// own I/O (0 picks a free one; the startup line says which). Off when not given.
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Address of the metrics endpoint (default: the `--bind` address).
    #[arg(long)]
    pub metrics_bind: Option<IpAddr>,
    /// Number of shards (threads); default one per available core.
    #[arg(long, default_value_t = 0)]
    pub shards: usize,
    /// Cores to pin shards to, comma separated (e.g. 0,1). Giving them pins the shards (and
    /// the WAL thread, to a core none of them uses where one exists).
    #[arg(long, value_delimiter = ',')]
    pub cores: Vec<usize>,
    /// Pin shard threads to the allowed cores even without `--cores` (for a dedicated
    /// machine; see `coreshard-tune plan`). By default shards are not pinned unless
    /// `--cores` is given: on a shared machine a pinned shard cannot move off a core
    /// another busy process is using.
    #[arg(long, conflicts_with = "no_pin")]
    pub pin: bool,
    /// Never pin shard threads, even with `--cores`.
    #[arg(long)]
    pub no_pin: bool,
    /// Most simultaneous clients.
    #[arg(long, default_value_t = 10_000)]
    pub maxclients: usize,
    /// Memory limit for the keyspace, split evenly between the shards (bytes, or with a
    /// k/kb/m/mb/g/gb suffix as in redis.conf; 0 = none).
    #[arg(long, default_value = "0", value_parser = parse_memory)]
    pub maxmemory: usize,
    /// What a shard does at its share of the limit: noeviction (refuse writes with -OOM),
    /// allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu,
    /// volatile-random or volatile-ttl.
    #[arg(long, default_value = "noeviction", value_parser = crate::evict::parse_policy)]
    pub maxmemory_policy: crate::evict::Policy,
    /// Keys sampled per eviction (more: closer to true LRU/LFU, more CPU).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=i64::from(i32::MAX)))]
    pub maxmemory_samples: u32,
    /// How slowly the LFU counter grows: higher needs more hits per step.
    #[arg(long, default_value_t = 10)]
    pub lfu_log_factor: u32,
    /// Minutes for an idle key's LFU counter to lose one (0: never).
    #[arg(long, default_value_t = 1)]
    pub lfu_decay_time: u32,
    /// Close connections idle this many seconds (0 = never).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
    /// Require clients to AUTH with this password.
    #[arg(long)]
    pub requirepass: Option<String>,
    /// Largest bulk argument in bytes (or with a k/mb/gb suffix, as in redis.conf).
    #[arg(long, default_value = "512mb", value_parser = parse_memory)]
    pub proto_max_bulk_len: usize,
    /// Most bytes buffered for one client's incomplete request (bytes, or with a
    /// k/kb/m/mb/g/gb suffix as in redis.conf).
    #[arg(long, default_value = "1gb", value_parser = parse_memory)]
    pub client_query_buffer_limit: usize,
    /// Send replies zero-copy (io_uring SEND_ZC) when they carry at least this much of
    /// stored values (bytes, or with a k/mb suffix); 0 (the default) never. Pays for large
    /// values sent through a NIC; over loopback the kernel copies anyway.
    #[arg(long, default_value = "0", value_parser = parse_memory)]
    pub send_zc_min: usize,
    /// Refuse clients from other hosts when bound to a non-loopback address without a
    /// password (yes/no).
    #[arg(long, default_value = "yes", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    pub protected_mode: bool,
    /// Disconnect a client whose unsent output passes these limits, as in redis.conf:
    /// `CLASS HARD SOFT SECONDS` (class `normal` or `pubsub`; sizes with k/mb/gb
    /// suffixes; 0 = none), one or more groups. May be given more than once.
    #[arg(long, value_parser = parse_output_limit)]
    pub client_output_buffer_limit: Vec<OutputLimits>,
    /// Where the write-ahead log and snapshots live.
    #[arg(long, default_value = "./data")]
    pub dir: std::path::PathBuf,
    /// Journal every write (yes/no). With `no`, nothing survives a restart.
    #[arg(long, default_value = "yes", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    pub appendonly: bool,
    /// When the log is synced: `always` (a write's reply, and any reply that observed it,
    /// waits until it is on disk), `everysec` (about a second may be lost on a crash) or
    /// `no` (the OS decides).
    #[arg(long, ignore_case = true, default_value = "always", value_parser = lower(&["always", "everysec", "no"]))]
    pub appendfsync: String,
    /// Core to pin the WAL thread to (default: a core no shard uses, else the last one).
    #[arg(long)]
    pub wal_core: Option<usize>,
    /// A corrupt record in the middle of the log: refuse to start (`strict`) or cut the log
    /// there (`truncate`, losing what follows).
    #[arg(long, ignore_case = true, default_value = "strict", value_parser = lower(&["strict", "truncate"]))]
    pub wal_recover: String,
    /// Size of each log segment.
    #[arg(long, default_value = "64mb", value_parser = parse_memory)]
    pub wal_segment_size: usize,
    /// Milliseconds a script may run before its shard answers other clients `BUSY` and
    /// SCRIPT KILL may stop it (Redis's `lua-time-limit` / `busy-reply-threshold`).
    #[arg(long, alias = "busy-reply-threshold", default_value_t = 5000)]
    pub lua_time_limit: u64,
    /// Milliseconds after which a read-only script still running is stopped as by SCRIPT
    /// KILL (its shard's own clients cannot reach SCRIPT KILL while it runs); 0: never.
    #[arg(long, default_value_t = 60_000)]
    pub lua_kill_after: u64,
    /// Redis's `list-compress-depth`: list chunks farther than this many from both ends are
    /// kept compressed; 0: none are (Redis's default; this server's is 1). CONFIG SET
    /// changes it for lists made afterwards, as in Redis.
    #[arg(long, default_value_t = crate::types::list::DEFAULT_COMPRESS_DEPTH, value_parser = clap::value_parser!(u32).range(0..=i64::from(i32::MAX)))]
    pub list_compress_depth: u32,
    /// Redis's `hash-max-listpack-entries` (alias `hash-max-ziplist-entries`): a hash with
    /// more fields converts from the compact encoding to the indexed one.
    #[arg(long, alias = "hash-max-ziplist-entries", default_value_t = crate::types::limits::HASH_MAX_LISTPACK_ENTRIES, value_parser = parse_count_config)]
    pub hash_max_listpack_entries: usize,
    /// Redis's `hash-max-listpack-value`: so does a hash given a longer field or value.
    #[arg(long, alias = "hash-max-ziplist-value", default_value_t = crate::types::limits::HASH_MAX_LISTPACK_VALUE, value_parser = parse_size_config)]
    pub hash_max_listpack_value: usize,
    /// Redis's `zset-max-listpack-entries`: the same for sorted sets.
    #[arg(long, alias = "zset-max-ziplist-entries", default_value_t = crate::types::limits::ZSET_MAX_LISTPACK_ENTRIES, value_parser = parse_count_config)]
    pub zset_max_listpack_entries: usize,
    /// Redis's `zset-max-listpack-value`: and for a longer member.
    #[arg(long, alias = "zset-max-ziplist-value", default_value_t = crate::types::limits::ZSET_MAX_LISTPACK_VALUE, value_parser = parse_size_config)]
    pub zset_max_listpack_value: usize,
    /// Redis's `set-max-intset-entries`: a set of integers with more members converts from
    /// the intset encoding.
    #[arg(long, default_value_t = crate::types::limits::SET_MAX_INTSET_ENTRIES, value_parser = parse_count_config)]
    pub set_max_intset_entries: usize,
    /// Keyspace notifications to publish, as Redis's flag letters (e.g. `KEA`, `Ex`);
    /// empty: none. CONFIG SET changes it at run time.
    #[arg(long, default_value = "")]
    pub notify_keyspace_events: String,
    /// Snapshot schedule as in redis.conf: pairs of `SECONDS CHANGES` (a snapshot, which
    /// also compacts the log, once any pair is met); empty: only SAVE/BGSAVE.
    #[arg(long, default_value = "3600 1 300 100 60 10000", value_parser = crate::persist::snapshot::parse_schedule)]
    pub save: crate::persist::snapshot::Schedule,
    /// Redis's `auto-aof-rewrite-percentage`: compact the log (take a snapshot) once the
    /// snapshot and the log after it have grown by this many percent over their size after
    /// the last compaction or at start; 0: never because of size.
    #[arg(long, default_value_t = crate::settings::REWRITE_PERCENTAGE, value_parser = clap::value_parser!(u64).range(0..=i32::MAX as u64))]
    pub auto_aof_rewrite_percentage: u64,
    /// Redis's `auto-aof-rewrite-min-size`: no compaction because of size while the
    /// snapshot and the log after it are smaller than this.
    #[arg(long, default_value = "64mb", value_parser = parse_size_config)]
    pub auto_aof_rewrite_min_size: usize,
    /// Commands that take at least this many microseconds go to the slow log (SLOWLOG);
    /// negative: none, 0: every command.
    #[arg(long, default_value_t = crate::settings::SLOWLOG_SLOWER_THAN, allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(-1..))]
    pub slowlog_log_slower_than: i64,
    /// Entries each shard's slow log keeps (SLOWLOG GET merges the shards' logs).
    #[arg(long, default_value_t = crate::settings::SLOWLOG_MAX_LEN)]
    pub slowlog_max_len: usize,
    /// Commands taking at least this many milliseconds are recorded as LATENCY events
    /// (`command`, `fast-command`); 0 = off.
    #[arg(long, default_value_t = 0)]
    pub latency_monitor_threshold: u64,
    /// Percentiles INFO latencystats reports, e.g. "50 99 99.9".
    #[arg(long, default_value = "50 99 99.9", value_parser = parse_percentiles)]
    pub latency_tracking_info_percentiles: Percentiles,
    /// Log level (error, warn, info, debug, trace). Logs go to stderr, coloured only when
    /// it is a terminal.
    #[arg(long, alias = "loglevel", ignore_case = true, default_value = "info", value_parser = lower(&["error", "warn", "info", "debug", "trace", "warning", "notice", "verbose"]))]
    pub log_level: String,
    /// Read settings from this file first: redis.conf's format (`name value` lines, `#`
    /// comments, quoted values), names as the options here (`maxmemory-policy
    /// allkeys-lru`); options on the command line win. CONFIG REWRITE writes back to it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Check a configuration file and exit: 0 if valid, 1 naming the first bad line.
    #[arg(long, value_name = "FILE")]
    pub check_config: Option<std::path::PathBuf>,
}

/// Percentiles for INFO latencystats.
#[derive(Debug, Clone, PartialEq)]
pub struct Percentiles(pub Vec<f64>);

/// `latency-tracking-info-percentiles`: numbers between 0 and 100, separated by blanks.
pub fn parse_percentiles(s: &str) -> Result<Percentiles, String> {
    s.split_whitespace()
        .map(|w| match w.parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
            _ => Err("percentile must be a number between 0 and 100".to_string()),
        })
        .collect::<Result<Vec<f64>, String>>()
        .map(Percentiles)
}

/// One class's output buffer limit (`client-output-buffer-limit`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputLimit {
    /// Disconnect at once past this many bytes (0: no limit).
    pub hard: usize,
    /// Disconnect when over this many bytes for `soft_seconds` (0: no limit).
    pub soft: usize,
    /// How long the soft limit may be exceeded.
    pub soft_seconds: u64,
}

/// A memory size as redis.conf writes it: `1024`, `64k`, `64kb`, `10mb`, `1gb` (k = 1000,
/// kb = 1024, and so on, as in Redis).
pub fn parse_memory(s: &str) -> Result<usize, String> {
    let lower = s.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("invalid memory size '{s}'"))?;
    let mul = memory_unit(unit).ok_or_else(|| format!("invalid memory size '{s}'"))?;
    n.checked_mul(mul)
        .ok_or_else(|| format!("memory size '{s}' is too large"))
}

/// The multiplier of a redis.conf memory unit (lower case): k = 1000, kb = 1024, and so on.
pub fn memory_unit(unit: &str) -> Option<usize> {
    Some(match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    })
}

/// A size parameter as Redis's size configs take it: 0 up to `i64::MAX`, with redis.conf's
/// memory units.
pub fn parse_size_config(s: &str) -> Result<usize, String> {
    let n = parse_memory(s)?;
    if i64::try_from(n).is_err() {
        return Err(format!("'{s}' is above {}", i64::MAX));
    }
    Ok(n)
}

/// A count parameter as Redis's integer configs take it: 0 up to `i64::MAX`, no units.
pub fn parse_count_config(s: &str) -> Result<usize, String> {
    s.parse::<u64>()
        .ok()
        .filter(|&n| i64::try_from(n).is_ok())
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("'{s}' is not an integer between 0 and {}", i64::MAX))
}

fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("expected yes or no, got '{s}'")),
    }
}

fn parse_output_limit(s: &str) -> Result<OutputLimits, String> {
    // On the command line any spacing goes, as redis-server's (CONFIG SET is stricter).
    let words: Vec<&str> = s.split_whitespace().collect();
    crate::settings::parse_output_limits(&words.join(" ")).map(OutputLimits)
}

/// `--client-output-buffer-limit` groups, by class index (`settings::OUTPUT_CLASSES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLimits(pub Vec<(usize, OutputLimit)>);

/// Settings shared read-only by every shard.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where clients connect (the real port once bound).
    pub listen: SocketAddr,
    /// Where the Prometheus endpoint listens, if on (the real port once bound).
    pub metrics: Option<SocketAddr>,
    /// maxmemory and eviction settings, shared by every shard (CONFIG SET changes them).
    pub memory: std::sync::Arc<crate::evict::MemoryConfig>,
    /// How many shards run.
    pub shards: usize,
    /// Client limit.
    pub maxclients: usize,
    /// Settings CONFIG SET changes at run time (timeout, password, slow log, save...).
    pub runtime: std::sync::Arc<crate::settings::Runtime>,
    /// The file the settings were read from (`--config`), for CONFIG REWRITE.
    pub config_file: Option<std::path::PathBuf>,
    /// Request parsing limits.
    pub limits: Limits,
    /// Input buffer limit per client.
    pub query_buffer_limit: usize,
    /// When the server started (INFO uptime).
    pub started: Instant,
    /// Refuse non-loopback clients while no password is set (bound beyond loopback with
    /// protected mode on).
    pub protected: bool,
    /// Persistence on, and where.
    pub dir: Option<std::path::PathBuf>,
}

impl Args {
    /// Whether shard threads (and the WAL thread) are pinned: with `--cores` or `--pin`,
    /// never with `--no-pin`.
    pub fn pinned(&self) -> bool {
        !self.no_pin && (self.pin || !self.cores.is_empty())
    }
}

impl ServerConfig {
    /// Settings from the command line, before binding.
    pub fn from_args(args: &Args) -> Self {
        ServerConfig {
            listen: SocketAddr::new(args.bind, args.port),
            metrics: args
                .metrics_port
                .map(|p| SocketAddr::new(args.metrics_bind.unwrap_or(args.bind), p)),
            shards: args.shards,
            maxclients: args.maxclients,
            runtime: std::sync::Arc::new({
                let r = crate::settings::Runtime::new(
                    args.timeout,
                    args.requirepass.clone().filter(|p| !p.is_empty()),
                    args.save.clone(),
                );
                r.set_slowlog_slower_than(args.slowlog_log_slower_than);
                r.set_slowlog_max_len(args.slowlog_max_len);
                r.set_percentiles(args.latency_tracking_info_percentiles.0.clone());
                r.set_latency_threshold(args.latency_monitor_threshold);
                r.set_appendfsync(&args.appendfsync);
                r.set_rewrite_percentage(args.auto_aof_rewrite_percentage);
                r.set_rewrite_min_size(args.auto_aof_rewrite_min_size as u64);
                for (class, limit) in args.client_output_buffer_limit.iter().flat_map(|l| &l.0) {
                    r.set_output_limit(*class, *limit);
                }
                r
            }),
            config_file: None,
            limits: Limits {
                max_bulk_len: args.proto_max_bulk_len,
                ..Limits::default()
            },
            query_buffer_limit: args.client_query_buffer_limit,
            started: Instant::now(),
            protected: args.protected_mode && !args.bind.is_loopback(),
            dir: args.appendonly.then(|| args.dir.clone()),
            memory: std::sync::Arc::new(crate::evict::MemoryConfig::new(
                args.maxmemory,
                args.maxmemory_policy,
                args.maxmemory_samples as usize,
                args.lfu_log_factor,
                args.lfu_decay_time,
            )),
        }
    }

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Option<Duration> {
        let t = self.runtime.timeout();
        (t > 0).then(|| Duration::from_secs(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_read_as_in_redis_conf() {
        assert_eq!(parse_memory("1024"), Ok(1024));
        assert_eq!(parse_memory("10mb"), Ok(10 << 20));
        assert_eq!(parse_memory("10M"), Ok(10_000_000));
        assert_eq!(parse_memory("1gb"), Ok(1 << 30));
        assert!(parse_memory("ten").is_err());
        assert!(parse_memory("5tb").is_err());
    }

    #[test]
    fn a_later_option_wins_and_collected_ones_add_up() {
        let a = Args::parse_from([
            "coreshard",
            "--timeout=7",
            "--timeout",
            "9",
            "--client-output-buffer-limit=normal 1 2 3",
            "--client-output-buffer-limit=pubsub 4 5 6",
        ]);
        assert_eq!(a.timeout, 9);
        assert_eq!(a.client_output_buffer_limit.len(), 2);
    }

    #[test]
    fn output_limits_parse_like_redis() {
        let OutputLimits(groups) = parse_output_limit("pubsub 32mb 8mb 60").unwrap();
        let (class, l) = groups[0];
        assert_eq!(class, 2);
        assert_eq!((l.hard, l.soft, l.soft_seconds), (32 << 20, 8 << 20, 60));
        assert!(parse_output_limit("normal 0 0").is_err());
        assert!(parse_output_limit("master 0 0 0").is_err());
        assert!(parse_output_limit("normal 1x 0 0").is_err());
        assert!(parse_output_limit("normal 0 0 -1").is_err());
        assert!(parse_output_limit("normal 0 0 3x").is_err());
        assert!(
            parse_output_limit("normal  0 0 0 ").is_ok(),
            "any spacing here"
        );
        assert!(crate::settings::parse_output_limits("normal 0 0 0 ").is_err());
        assert!(crate::settings::parse_output_limits("normal  0 0 0").is_err());
        let OutputLimits(two) = parse_output_limit("normal 1k 2 3 REPLICA 1 2 3").unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!((two[0].1.hard, two[0].1.soft_seconds), (1000, 3));
        assert_eq!(two[1].0, 1);
    }
}
