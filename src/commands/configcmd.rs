//! CONFIG GET / SET / RESETSTAT / REWRITE / HELP, and SLOWLOG.

use coreshard_engine::{ConnId, Ctx};

use super::{parse_int, sanitize, unknown_subcommand_error, Args};
use crate::glob::glob_match;
use crate::server::ops::{Op, SlowlogOp};
use crate::server::reply::Agg;
use crate::server::Server;

/// Parameters CONFIG SET can change here (the memory ones are `evict.rs`'s).
const MUTABLE: [&str; 30] = [
    "maxmemory",
    "maxmemory-policy",
    "maxmemory-samples",
    "lfu-log-factor",
    "lfu-decay-time",
    "timeout",
    "requirepass",
    "save",
    "notify-keyspace-events",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "lua-time-limit",
    "busy-reply-threshold",
    "lua-kill-after",
    "latency-tracking-info-percentiles",
    "latency-monitor-threshold",
    "appendfsync",
    "list-compress-depth",
    "auto-aof-rewrite-percentage",
    "auto-aof-rewrite-min-size",
    "hash-max-listpack-entries",
    "hash-max-ziplist-entries",
    "hash-max-listpack-value",
    "hash-max-ziplist-value",
    "zset-max-listpack-entries",
    "zset-max-ziplist-entries",
    "zset-max-listpack-value",
    "zset-max-ziplist-value",
    "set-max-intset-entries",
    "client-output-buffer-limit",
];

/// Second names of parameters (CONFIG REWRITE writes only the first).
const ALIASES: [&str; 5] = [
    "busy-reply-threshold",
    "hash-max-ziplist-entries",
    "hash-max-ziplist-value",
    "zset-max-ziplist-entries",
    "zset-max-ziplist-value",
];

/// Defaults of the parameters CONFIG REWRITE may append (a value equal to its default is
/// not written).
const DEFAULTS: [(&str, &str); 25] = [
    ("appendfsync", "always"),
    ("maxmemory", "0"),
    ("maxmemory-policy", "noeviction"),
    ("maxmemory-samples", "5"),
    ("lfu-log-factor", "10"),
    ("lfu-decay-time", "1"),
    ("timeout", "0"),
    ("requirepass", ""),
    ("save", "3600 1 300 100 60 10000"),
    ("notify-keyspace-events", ""),
    ("slowlog-log-slower-than", "10000"),
    ("slowlog-max-len", "128"),
    ("lua-time-limit", "5000"),
    ("lua-kill-after", "60000"),
    ("latency-tracking-info-percentiles", "50 99 99.9"),
    ("latency-monitor-threshold", "0"),
    ("list-compress-depth", "1"),
    ("auto-aof-rewrite-percentage", "100"),
    ("auto-aof-rewrite-min-size", "67108864"),
    ("hash-max-listpack-entries", "512"),
    ("hash-max-listpack-value", "64"),
    ("zset-max-listpack-entries", "128"),
    ("zset-max-listpack-value", "64"),
    ("set-max-intset-entries", "512"),
    (
        "client-output-buffer-limit",
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
    ),
];

/// The parameters CONFIG GET answers, with their current values.
fn config_params(s: &Server) -> Vec<(&'static str, String)> {
    let c = &s.config;
    let rt = &c.runtime;
    vec![
        ("bind", c.listen.ip().to_string()),
        ("port", c.listen.port().to_string()),
        ("maxclients", c.maxclients.to_string()),
        ("timeout", rt.timeout().to_string()),
        ("requirepass", rt.requirepass().unwrap_or_default()),
        ("proto-max-bulk-len", c.limits.max_bulk_len.to_string()),
        (
            "client-query-buffer-limit",
            c.query_buffer_limit.to_string(),
        ),
        ("client-output-buffer-limit", rt.output_limits_text()),
        ("databases", "1".into()),
        ("io-threads", s.shards.to_string()),
        ("tcp-backlog", "511".into()),
        (
            "save",
            if c.dir.is_some() {
                rt.save().to_string()
            } else {
                String::new()
            },
        ),
        (
            "appendonly",
            if c.dir.is_some() { "yes" } else { "no" }.into(),
        ),
        ("appendfsync", rt.appendfsync().to_string()),
        (
            "auto-aof-rewrite-percentage",
            rt.auto_rewrite().0.to_string(),
        ),
        ("auto-aof-rewrite-min-size", rt.auto_rewrite().1.to_string()),
        (
            "notify-keyspace-events",
            crate::notify::format(crate::notify::flags()),
        ),
        (
            "dir",
            c.dir
                .as_ref()
                .and_then(|d| std::fs::canonicalize(d).ok())
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        ),
        ("cluster-enabled", "no".into()),
        (
            "protected-mode",
            if c.protected { "yes" } else { "no" }.into(),
        ),
        (
            "slowlog-log-slower-than",
            rt.slowlog_slower_than().to_string(),
        ),
        ("slowlog-max-len", rt.slowlog_max_len().to_string()),
        ("lua-time-limit", crate::script::time_limit().to_string()),
        (
            "busy-reply-threshold",
            crate::script::time_limit().to_string(),
        ),
        ("lua-kill-after", crate::script::kill_after().to_string()),
        (
            "latency-tracking-info-percentiles",
            crate::settings::format_percentiles(&rt.percentiles()),
        ),
        ("latency-tracking", "yes".into()),
        (
            "list-compress-depth",
            crate::types::list::compress_depth().to_string(),
        ),
        // Fixed node sizes, reported as Redis names them (CONFIG SET refuses them).
        (
            "list-max-listpack-size",
            crate::types::list::listpack_size_config().to_string(),
        ),
        (
            "list-max-ziplist-size",
            crate::types::list::listpack_size_config().to_string(),
        ),
        (
            "stream-node-max-bytes",
            crate::types::stream::NODE_MAX_BYTES.to_string(),
        ),
        (
            "stream-node-max-entries",
            crate::types::stream::NODE_MAX_ENTRIES.to_string(),
        ),
        (
            "latency-monitor-threshold",
            rt.latency_threshold().to_string(),
        ),
    ]
    .into_iter()
    .chain(crate::evict::config_params(&c.memory))
    .chain(crate::types::limits::config_params())
    .collect()
}

fn failed(name: &str, why: &str) -> String {
    format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {why}")
}

/// One checked CONFIG SET value of the parameters outside `evict.rs`.
enum Setting {
    Timeout(u64),
    Requirepass(Option<String>),
    Save(crate::persist::snapshot::Schedule),
    Notify(u32),
    SlowerThan(i64),
    SlowMaxLen(usize),
    LuaTimeLimit(u64),
    LuaKillAfter(u64),
    Percentiles(Vec<f64>),
    Appendfsync(String),
    LatencyThreshold(u64),
    ListCompressDepth(u32),
    RewritePercentage(u64),
    RewriteMinSize(u64),
    /// An encoding threshold (`crate::types::limits`), by name or alias.
    EncodingLimit(String, usize),
    /// `client-output-buffer-limit` groups, by class.
    OutputLimits(Vec<(usize, crate::config::OutputLimit)>),
}

/// An integer parameter in `lo..=hi`, with Redis's errors.
fn int_in(name: &str, value: &str, lo: i64, hi: i64) -> Result<i64, String> {
    let n = parse_int(value.as_bytes())
        .ok_or_else(|| failed(name, "argument couldn't be parsed into an integer"))?;
    if n < lo || n > hi {
        return Err(failed(
            name,
            &format!("argument must be between {lo} and {hi} inclusive"),
        ));
    }
    Ok(n)
}

/// A memory parameter's value as Redis 7.0's CONFIG SET checks it: "" is 0, redis.conf's
/// units, no spaces, at most `i64::MAX`.
fn memory_in(name: &str, value: &str) -> Result<u64, String> {
    if value.is_empty() {
        return Ok(0);
    }
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let mul = crate::config::memory_unit(&unit.to_ascii_lowercase())
        .ok_or_else(|| failed(name, "argument must be a memory value"))? as u128;
    let n: u128 = digits
        .parse()
        .map_err(|_| failed(name, "argument must be a memory value"))?;
    let bytes = n.saturating_mul(mul);
    u64::try_from(bytes)
        .ok()
        .filter(|&b| i64::try_from(b).is_ok())
        .ok_or_else(|| {
            failed(
                name,
                &format!("argument must be between 0 and {} inclusive", i64::MAX),
            )
        })
}

/// Check one value of a parameter this module sets.
fn check(s: &Server, name: &str, value: &str) -> Result<Setting, String> {
    const INT_MAX: i64 = i32::MAX as i64;
    Ok(match name {
        "timeout" => Setting::Timeout(int_in(name, value, 0, INT_MAX)? as u64),
        "requirepass" => Setting::Requirepass((!value.is_empty()).then(|| value.to_string())),
        "save" => {
            // Turning snapshots off is fine either way (clients send `save ""` to do so).
            if s.config.dir.is_none() && !value.trim().is_empty() {
                return Err(failed(
                    name,
                    "persistence is off (--appendonly no): nothing to save",
                ));
            }
            let schedule = crate::persist::snapshot::parse_schedule(value)
                .map_err(|_| failed(name, "Invalid save parameters"))?;
            Setting::Save(schedule)
        }
        "notify-keyspace-events" => {
            Setting::Notify(crate::notify::parse(value).ok_or_else(|| {
                failed(
                    name,
                    "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.",
                )
            })?)
        }
        "slowlog-log-slower-than" => Setting::SlowerThan(int_in(name, value, -1, i64::MAX)?),
        "slowlog-max-len" => Setting::SlowMaxLen(int_in(name, value, 0, i64::MAX)? as usize),
        "lua-time-limit" | "busy-reply-threshold" => {
            Setting::LuaTimeLimit(int_in(name, value, 0, i64::MAX)? as u64)
        }
        "lua-kill-after" => Setting::LuaKillAfter(int_in(name, value, 0, i64::MAX)? as u64),
        "latency-tracking-info-percentiles" => Setting::Percentiles(
            crate::config::parse_percentiles(value)
                .map_err(|e| failed(name, &e))?
                .0,
        ),
        "latency-monitor-threshold" => {
            Setting::LatencyThreshold(int_in(name, value, 0, i64::MAX)? as u64)
        }
        "list-compress-depth" => {
            Setting::ListCompressDepth(int_in(name, value, 0, INT_MAX)? as u32)
        }
        "hash-max-listpack-entries"
        | "hash-max-ziplist-entries"
        | "zset-max-listpack-entries"
        | "zset-max-ziplist-entries"
        | "set-max-intset-entries" => {
            Setting::EncodingLimit(name.to_string(), int_in(name, value, 0, i64::MAX)? as usize)
        }
        "hash-max-listpack-value"
        | "hash-max-ziplist-value"
        | "zset-max-listpack-value"
        | "zset-max-ziplist-value" => {
            Setting::EncodingLimit(name.to_string(), memory_in(name, value)? as usize)
        }
        "auto-aof-rewrite-percentage" => {
            Setting::RewritePercentage(int_in(name, value, 0, INT_MAX)? as u64)
        }
        "auto-aof-rewrite-min-size" => Setting::RewriteMinSize(memory_in(name, value)?),
        "client-output-buffer-limit" => Setting::OutputLimits(
            crate::settings::parse_output_limits(value).map_err(|e| failed(name, &e))?,
        ),
        "appendfsync" => {
            if !crate::settings::APPENDFSYNC.contains(&value.to_ascii_lowercase().as_str()) {
                return Err(failed(
                    name,
                    "argument(s) must be one of the following: always, everysec, no",
                ));
            }
            Setting::Appendfsync(value.to_ascii_lowercase())
        }
        _ => return Err(failed(name, "can't set immutable config")),
    })
}

fn apply(s: &Server, setting: Setting) {
    let rt = &s.config.runtime;
    match setting {
        Setting::Timeout(t) => rt.set_timeout(t),
        Setting::Requirepass(p) => rt.set_requirepass(p),
        Setting::Save(schedule) => rt.set_save(schedule),
        Setting::Notify(f) => crate::notify::FLAGS.store(f, std::sync::atomic::Ordering::Relaxed),
        Setting::SlowerThan(us) => rt.set_slowlog_slower_than(us),
        Setting::SlowMaxLen(n) => rt.set_slowlog_max_len(n),
        Setting::LuaTimeLimit(ms) => crate::script::set_time_limit(ms),
        Setting::LuaKillAfter(ms) => crate::script::set_kill_after(ms),
        Setting::Percentiles(p) => rt.set_percentiles(p),
        Setting::LatencyThreshold(ms) => rt.set_latency_threshold(ms),
        Setting::ListCompressDepth(d) => crate::types::list::set_compress_depth(d),
        Setting::RewritePercentage(p) => rt.set_rewrite_percentage(p),
        Setting::RewriteMinSize(n) => rt.set_rewrite_min_size(n),
        Setting::EncodingLimit(name, n) => crate::types::limits::set(&name, n),
        Setting::OutputLimits(groups) => {
            for (class, limit) in groups {
                rt.set_output_limit(class, limit);
            }
        }
        Setting::Appendfsync(name) => {
            rt.set_appendfsync(&name);
            if let Some(wal) = &s.wal {
                wal.set_policy(match name.as_str() {
                    "everysec" => coreshard_engine::wal::FsyncPolicy::EverySec,
                    "no" => coreshard_engine::wal::FsyncPolicy::No,
                    _ => coreshard_engine::wal::FsyncPolicy::Always,
                });
            }
        }
    }
}

/// CONFIG SET of name/value pairs: every pair is checked before any applies (Redis 7's
/// all-or-nothing), with Redis's errors for unknown, immutable and bad values.
fn config_set(s: &mut Server, args: Args) -> Result<(), String> {
    if args.len() % 2 != 0 {
        // (Redis 7.0's reply to an odd count past the arity check.)
        return Err("ERR syntax error".into());
    }
    let known: Vec<&str> = config_params(s).iter().map(|(n, _)| *n).collect();
    let mut names: Vec<String> = Vec::new();
    for pair in args.chunks(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        if !known.contains(&name.as_str()) {
            return Err(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                sanitize(&pair[0], 128)
            ));
        }
        if names.contains(&name) {
            return Err(failed(&name, "duplicate parameter"));
        }
        names.push(name);
    }
    let memory: Vec<&[u8]> = names
        .iter()
        .zip(args.chunks(2))
        .filter(|(n, _)| {
            crate::evict::config_params(&s.config.memory)
                .iter()
                .any(|(m, _)| m == n)
        })
        .flat_map(|(_, pair)| [&pair[0][..], &pair[1][..]])
        .collect();
    let mut settings = Vec::new();
    for (name, pair) in names.iter().zip(args.chunks(2)) {
        if memory
            .iter()
            .any(|m| m.eq_ignore_ascii_case(name.as_bytes()))
        {
            continue;
        }
        if !MUTABLE.contains(&name.as_str()) {
            return Err(failed(name, "can't set immutable config"));
        }
        if std::str::from_utf8(&pair[1]).is_err() {
            return Err(failed(name, "the value must be valid UTF-8"));
        }
        let value = String::from_utf8_lossy(&pair[1]);
        settings.push(check(s, name, &value)?);
    }
    if !memory.is_empty() {
        // Checks all its pairs before applying any; ours are checked already.
        crate::evict::config_set(&s.config.memory, &memory)?;
        crate::evict::sync_access(&mut s.db);
    }
    for setting in settings {
        apply(s, setting);
    }
    Ok(())
}

/// CONFIG REWRITE: the runtime values into the file the server started with.
fn config_rewrite(s: &Server) -> Result<(), String> {
    let Some(path) = &s.config.config_file else {
        return Err("ERR The server is running without a config file".into());
    };
    let params = config_params(s);
    let values: Vec<(&str, String)> = params
        .into_iter()
        .filter(|(n, _)| MUTABLE.contains(n) && !ALIASES.contains(n))
        .filter(|(n, _)| *n != "save" || s.config.dir.is_some())
        .map(|(n, v)| (n, rewrite_text(n, &v)))
        .collect();
    let defaults: Vec<(&str, String)> = DEFAULTS
        .iter()
        .map(|&(n, v)| (n, rewrite_text(n, v)))
        .collect();
    let defaults: Vec<(&str, &str)> = defaults.iter().map(|(n, v)| (*n, v.as_str())).collect();
    crate::configfile::rewrite(path, &values, &defaults)
        .map_err(|e| format!("ERR Rewriting config file: {e}"))
}

/// A value as CONFIG REWRITE writes it: sizes in the largest whole unit, as Redis writes
/// them (`64mb`, `1gb`, `1536kb`, `1000`), everything else as CONFIG GET shows it.
fn rewrite_text(name: &str, value: &str) -> String {
    if name == "client-output-buffer-limit" {
        return output_limits_rewrite(value);
    }
    const SIZES: [&str; 4] = [
        "maxmemory",
        "auto-aof-rewrite-min-size",
        "proto-max-bulk-len",
        "client-query-buffer-limit",
    ];
    match SIZES.contains(&name).then(|| value.parse::<u64>().ok()) {
        Some(Some(bytes)) => size_text(bytes),
        _ => value.to_string(),
    }
}

/// A size in the largest whole unit (`64mb`, `1536kb`, `1000`, `0`).
fn size_text(bytes: u64) -> String {
    if bytes > 0 {
        for (unit, size) in [("gb", 1u64 << 30), ("mb", 1 << 20), ("kb", 1 << 10)] {
            if bytes % size == 0 {
                return format!("{}{unit}", bytes / size);
            }
        }
    }
    bytes.to_string()
}

/// `client-output-buffer-limit` as CONFIG REWRITE writes it: the classes that differ from
/// Redis's defaults, sizes in units (`pubsub 64mb 16mb 120`), as Redis writes them (one
/// value here, several groups in it, which reads back the same). With every class at its
/// default it is the first class's default (`normal 0 0 0`), which Redis writes in that
/// case where the file had the directive (it is then also the default's text, so the
/// directive is not added to a file without it).
fn output_limits_rewrite(value: &str) -> String {
    let Ok(groups) = crate::settings::parse_output_limits(value) else {
        return value.to_string();
    };
    let size = |n: usize| size_text(n as u64);
    let mut changed: Vec<_> = groups
        .into_iter()
        .filter(|&(class, l)| crate::settings::OUTPUT_LIMITS[class] != l)
        .collect();
    if changed.is_empty() {
        changed.push((0, crate::settings::OUTPUT_LIMITS[0]));
    }
    changed
        .into_iter()
        .map(|(class, l)| {
            let name = crate::settings::OUTPUT_CLASSES[class];
            format!(
                "{name} {} {} {}",
                size(l.hard),
                size(l.soft),
                l.soft_seconds
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const CONFIG_HELP: [&str; 9] = [
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
];

pub fn config(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let sub = args[1].to_ascii_lowercase();
    let arity = |sub: &[u8]| {
        format!(
            "ERR wrong number of arguments for 'config|{}' command",
            String::from_utf8_lossy(sub)
        )
    };
    match sub.as_slice() {
        b"get" if args.len() >= 3 => {
            let params = config_params(s);
            let matched: Vec<&(&str, String)> = params
                .iter()
                .filter(|(name, _)| {
                    args[2..]
                        .iter()
                        .any(|p| glob_match(p, name.as_bytes(), true))
                })
                .collect();
            s.reply(ctx, conn, |e| {
                e.map(matched.len());
                for (name, value) in matched {
                    e.bulk(name.as_bytes());
                    e.bulk(value.as_bytes());
                }
            });
        }
        b"set" if args.len() >= 4 => match config_set(s, &args[2..]) {
            Ok(()) => s.reply(ctx, conn, |e| e.simple("OK")),
            Err(msg) => s.error(ctx, conn, &msg),
        },
        b"resetstat" if args.len() == 2 => {
            s.broadcast(ctx, conn, || Op::ResetStat, Agg::AllOk);
        }
        b"rewrite" if args.len() == 2 => match config_rewrite(s) {
            Ok(()) => s.reply(ctx, conn, |e| e.simple("OK")),
            Err(msg) => s.error(ctx, conn, &msg),
        },
        b"help" if args.len() == 2 => s.reply(ctx, conn, |e| {
            e.array(CONFIG_HELP.len());
            CONFIG_HELP.iter().for_each(|l| e.simple(l));
        }),
        b"get" | b"set" | b"resetstat" | b"rewrite" | b"help" => {
            let msg = arity(&sub);
            s.error(ctx, conn, &msg)
        }
        _ => {
            let msg = unknown_subcommand_error(&args[1], "config");
            s.error(ctx, conn, &msg);
        }
    }
}

const SLOWLOG_HELP: [&str; 12] = [
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Print this help.",
];

/// SLOWLOG GET / LEN / RESET / HELP over every shard's log.
pub fn slowlog(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let sub = args[1].to_ascii_lowercase();
    let max_len = s.config.runtime.slowlog_max_len();
    match (sub.as_slice(), args.len()) {
        (b"get", 2 | 3) => {
            let count = match args.get(2) {
                None => 10,
                Some(a) => match parse_int(a) {
                    Some(-1) => usize::MAX,
                    Some(n) if n >= 0 => n as usize,
                    _ => {
                        return s.error(
                            ctx,
                            conn,
                            "ERR count should be greater than or equal to -1",
                        )
                    }
                },
            };
            let per_shard = count.min(max_len);
            s.broadcast(
                ctx,
                conn,
                || Op::Slowlog(SlowlogOp::Get(per_shard)),
                Agg::Slowlog {
                    get: Some(count),
                    max_len,
                    entries: Vec::new(),
                    len: 0,
                },
            );
        }
        (b"len", 2) => s.broadcast(
            ctx,
            conn,
            || Op::Slowlog(SlowlogOp::Len),
            Agg::Slowlog {
                get: None,
                max_len,
                entries: Vec::new(),
                len: 0,
            },
        ),
        (b"reset", 2) => s.broadcast(ctx, conn, || Op::Slowlog(SlowlogOp::Reset), Agg::AllOk),
        (b"help", 2) => s.reply(ctx, conn, |e| {
            e.array(SLOWLOG_HELP.len());
            SLOWLOG_HELP.iter().for_each(|l| e.simple(l));
        }),
        (b"get" | b"len" | b"reset" | b"help", _) => {
            let msg = format!(
                "ERR wrong number of arguments for 'slowlog|{}' command",
                String::from_utf8_lossy(&sub)
            );
            s.error(ctx, conn, &msg);
        }
        _ => {
            let msg = unknown_subcommand_error(&args[1], "slowlog");
            s.error(ctx, conn, &msg);
        }
    }
}
