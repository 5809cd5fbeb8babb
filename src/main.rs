//! `coreshard`: a Redis-compatible server on the coreshard engine.

mod commands;
mod config;
mod configfile;
mod db;
mod evict;
mod glob;
mod latency;
mod metrics;
mod notify;
mod persist;
mod pubsub;
mod routing;
mod script;
mod server;
mod settings;
mod stats;
mod types;
mod watch;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use coreshard_engine::{block_shutdown_signals, start, wait_for_shutdown_signal, EngineConfig};

use config::{Args, ServerConfig};
use routing::SlotTable;
use server::Server;

/// Output a connection may have unsent before the engine stops reading from it.
const OUTPUT_PAUSE_BYTES: usize = 4 << 20;
/// File descriptors kept beyond clients (listeners, rings, logs), as Redis reserves 32.
const RESERVED_FDS: u64 = 32;

/// `maxclients` fitted to the open-file limit: raise the soft limit as far as allowed,
/// then lower maxclients with a warning if it still does not fit (as Redis does).
fn fit_maxclients(wanted: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let need = wanted as u64 + RESERVED_FDS;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    if soft >= need {
        return wanted;
    }
    let target = need.min(hard);
    let have = if setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        target
    } else {
        soft
    };
    if have >= need {
        return wanted;
    }
    let fitted = have.saturating_sub(RESERVED_FDS).max(1) as usize;
    tracing::warn!(
        "maxclients {wanted} needs {need} open files but the limit is {have}; \
         maxclients has been reduced to {fitted} (raise `ulimit -n` to serve more)"
    );
    fitted
}

/// The tracing level for a `--log-level` (Redis's names too).
fn log_level(name: &str) -> tracing::Level {
    match name {
        "error" => tracing::Level::ERROR,
        "warn" | "warning" => tracing::Level::WARN,
        "debug" | "verbose" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    }
}

/// The options: the command line, after the `--config` file's directives when one is
/// given (so the command line wins). `Err` is the exit code after the error was printed;
/// `--check-config` ends here too.
fn read_args() -> Result<(Args, Option<std::path::PathBuf>), ExitCode> {
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = Args::parse_from(&raw);
    if let Some(path) = &cli.check_config {
        return Err(match configfile::load(path, &[]) {
            Ok(_) => {
                println!("coreshard: configuration file {} is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        });
    }
    let Some(path) = cli.config.clone() else {
        return Ok((cli, None));
    };
    let from_file = match configfile::load(&path, &raw[1..]) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return Err(ExitCode::FAILURE);
        }
    };
    let mut all: Vec<std::ffi::OsString> = vec![raw[0].clone()];
    all.extend(from_file.into_iter().map(Into::into));
    all.extend(raw[1..].iter().cloned());
    let args = Args::try_parse_from(&all).unwrap_or_else(|e| e.exit());
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    Ok((args, Some(path)))
}

/// Warn once, concisely, about the host findings that hurt most (as Redis warns about
/// transparent huge pages and overcommit): `coreshard-tune audit` without the fsync
/// measurement.
fn warn_about_host(args: &Args) {
    use coreshard_tune::{audit, Options, Root, Severity};
    let opts = Options {
        shards: (args.shards > 0).then_some(args.shards),
        cores: args.cores.clone(),
        dir: args.dir.clone(),
        maxclients: args.maxclients,
        measure_fsync: false,
    };
    let findings = audit(&Root::host(), &opts);
    let worst: Vec<_> = findings
        .iter()
        .filter(|f| f.severity >= Severity::Warn)
        .collect();
    if worst.is_empty() {
        return;
    }
    let shown: Vec<String> = worst
        .iter()
        .take(3)
        .map(|f| format!("{} ({})", f.id, f.saw))
        .collect();
    let more = worst.len().saturating_sub(shown.len());
    tracing::warn!(
        "host tuning: {}{}; run `coreshard-tune audit` for the fixes",
        shown.join("; "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
}

fn main() -> ExitCode {
    let (args, config_file) = match read_args() {
        Ok(a) => a,
        Err(code) => return code,
    };
    // Colour only for a terminal: logs sent to a file or a pipe stay plain text.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_max_level(log_level(&args.log_level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    warn_about_host(&args);
    // Before any thread exists, so every shard inherits the mask.
    block_shutdown_signals();

    let mut config = ServerConfig::from_args(&args);
    config.config_file = config_file;
    script::set_time_limit(args.lua_time_limit);
    script::set_kill_after(args.lua_kill_after);
    types::list::set_compress_depth(args.list_compress_depth);
    types::limits::apply_args(&args);
    match notify::parse(&args.notify_keyspace_events) {
        Some(f) => notify::FLAGS.store(f, std::sync::atomic::Ordering::Relaxed),
        None => {
            eprintln!(
                "coreshard: invalid --notify-keyspace-events '{}' (use 'Ag$lshzxeKEtmdn')",
                args.notify_keyspace_events
            );
            return ExitCode::FAILURE;
        }
    }
    config.maxclients = fit_maxclients(args.maxclients);
    if config.protected && !config.runtime.has_password() {
        tracing::warn!(
            "protected mode: bound to {} without a password, so only loopback clients are \
             accepted; set --requirepass or --protected-mode no to serve other hosts",
            args.bind
        );
    }
    let engine_config = EngineConfig {
        listen: Some(config.listen),
        extra_listen: config.metrics.into_iter().collect(),
        shards: args.shards,
        cores: args.cores.clone(),
        pin: args.pinned(),
        max_connections: config.maxclients,
        idle_timeout: config.idle_timeout(),
        max_input_buffer: args.client_query_buffer_limit,
        send_zc_min: args.send_zc_min,
        output_pause_bytes: OUTPUT_PAUSE_BYTES,
        max_owed_replies: server::MAX_OWED_REPLIES,
        ..EngineConfig::default()
    };
    let shards = if args.shards > 0 {
        args.shards
    } else if args.cores.is_empty() {
        coreshard_engine::allowed_cores().len()
    } else {
        args.cores.len()
    };
    config.shards = shards;
    let slots = Arc::new(SlotTable::even(shards));
    let t0 = std::time::Instant::now();
    let opened = match open_store(&args, &config, &slots, shards) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("coreshard: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(dir) = &config.dir {
        match script::functions::restore(dir) {
            Ok(0) => {}
            Ok(n) => tracing::info!("loaded {n} function libraries from {}", dir.display()),
            Err(e) => {
                eprintln!("coreshard: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let recovered_in = t0.elapsed();
    let Store {
        dbs,
        wal,
        recovered,
    } = opened;
    let wal = wal.map(Arc::new);
    let shard_wal = wal.clone();
    let dbs = std::sync::Mutex::new(dbs.into_iter().map(Some).collect::<Vec<_>>());
    // The WAL thread wakes a shard whose records became durable; the waker exists once
    // the engine runs.
    let waker = Arc::new(std::sync::OnceLock::<coreshard_engine::RemoteWaker>::new());
    if let Some(wal) = &wal {
        let w = Arc::clone(&waker);
        wal.set_notify(Box::new(move |shard| {
            if let Some(w) = w.get() {
                w.wake(shard);
            }
        }));
    }
    // The port is only known after binding; shards read it lazily through this cell.
    let shared_config = Arc::new(std::sync::OnceLock::<Arc<ServerConfig>>::new());
    let cfg_cell = Arc::clone(&shared_config);
    let base = config.clone();
    let engine = match start(engine_config, move |info| {
        let cfg = cfg_cell
            .get()
            .cloned()
            .unwrap_or_else(|| Arc::new(base.clone()));
        let db = dbs
            .lock()
            .ok()
            .and_then(|mut d| d.get_mut(info.shard).and_then(Option::take))
            .unwrap_or_default();
        Server::new(info, cfg, Arc::clone(&slots), db, shard_wal.clone())
    }) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("coreshard: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Ok(w) = engine.remote_waker() {
        let _ = waker.set(w);
    }
    config.listen = engine.local_addr().unwrap_or(config.listen);
    config.metrics = engine.extra_addrs().first().copied().or(config.metrics);
    let listen = config.listen;
    let metrics = config.metrics;
    let _ = shared_config.set(Arc::new(config));
    let cores: Vec<String> = engine
        .cores()
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i}->{}", c.map_or("any".to_string(), |c| c.to_string())))
        .collect();
    let mut out = std::io::stdout();
    // A closed stdout (a supervisor that stopped reading) must not stop the server.
    let _ = writeln!(
        out,
        "coreshard {} listening on {} shards={} cores=[{}] io_uring: {}",
        env!("CARGO_PKG_VERSION"),
        listen,
        shards,
        cores.join(","),
        engine.features()
    );
    if let Some(m) = metrics {
        let _ = writeln!(out, "metrics: http://{m}/metrics");
    }
    let _ = match &config_dir(&args) {
        Some(dir) => writeln!(
            out,
            "persistence: dir={} appendfsync={} recovered {} keys from the snapshot and {} log \
             records in {:.3}s{}",
            dir,
            args.appendfsync,
            recovered.snapshot_keys,
            recovered.records,
            recovered_in.as_secs_f64(),
            recovered
                .truncated
                .as_ref()
                .map(|t| format!(" (cut a torn tail: {t})"))
                .unwrap_or_default()
        ),
        None => writeln!(
            out,
            "persistence: off (--appendonly no); nothing survives a restart"
        ),
    };
    let _ = out.flush();

    match wait_for_shutdown_signal() {
        Ok(sig) => tracing::info!("{sig} received, shutting down"),
        Err(e) => tracing::error!("{e}; shutting down"),
    }
    engine.shutdown();
    let joined = engine.join();
    // Shards handed their last records at their last turn: sync them before exiting.
    let synced = match wal.map(Arc::try_unwrap) {
        None => Ok(()),
        Some(Ok(w)) => w.shutdown().map_err(|e| e.to_string()),
        Some(Err(_)) => Err("the log is still in use".to_string()),
    };
    match (joined, synced) {
        (Ok(()), Ok(())) => {
            tracing::info!("bye");
            ExitCode::SUCCESS
        }
        (Err(e), _) => {
            eprintln!("coreshard: {e}");
            ExitCode::FAILURE
        }
        (_, Err(e)) => {
            eprintln!("coreshard: the log could not be synced at shutdown: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The data directory as shown at start-up, when persistence is on.
fn config_dir(args: &Args) -> Option<String> {
    args.appendonly.then(|| {
        std::fs::canonicalize(&args.dir)
            .unwrap_or_else(|_| args.dir.clone())
            .display()
            .to_string()
    })
}

/// Each shard's keyspace, rebuilt from the log, and the log to keep writing.
struct Store {
    dbs: Vec<db::Db>,
    wal: Option<coreshard_engine::wal::Wal>,
    recovered: persist::replay::Recovered,
}

/// Open (or create) the log in `--dir`, replay it into one keyspace per shard, and give
/// each shard its journal.
fn open_store(
    args: &Args,
    config: &ServerConfig,
    slots: &SlotTable,
    shards: usize,
) -> Result<Store, String> {
    use coreshard_engine::wal::{self, FsyncPolicy, RecoverMode, WalConfig};
    let mut dbs: Vec<db::Db> = (0..shards).map(|_| db::Db::default()).collect();
    let Some(dir) = config.dir.clone() else {
        return Ok(Store {
            dbs,
            wal: None,
            recovered: persist::replay::Recovered::default(),
        });
    };
    let fsync = match args.appendfsync.as_str() {
        "everysec" => FsyncPolicy::EverySec,
        "no" => FsyncPolicy::No,
        _ => FsyncPolicy::Always,
    };
    let recover = if args.wal_recover == "truncate" {
        RecoverMode::Truncate
    } else {
        RecoverMode::Strict
    };
    let core = args.wal_core.or_else(|| wal_core_default(args, shards));
    let cfg = WalConfig {
        dir: dir.clone(),
        fsync,
        segment_size: args.wal_segment_size as u64,
        core,
        recover,
    };
    let (wal, logs, mut recovery) = wal::open(cfg, shards)
        .map_err(|e| format!("cannot open the log in {}: {e}", dir.display()))?;
    persist::snapshot::recovered(recovery.snapshot_bytes);
    let now = server::ops::unix_ms();
    let recovered = persist::replay::replay(&mut recovery, &mut dbs, slots, now)
        .map_err(|e| format!("cannot recover from {}: {e}", dir.display()))?;
    for (db, log) in dbs.iter_mut().zip(logs) {
        // Replay is not news: no keyspace notifications for it.
        db.events.pending.clear();
        db.journal = Some(persist::Journal::new(log));
    }
    Ok(Store {
        dbs,
        wal: Some(wal),
        recovered,
    })
}

/// A core no shard is pinned to, where one exists, else the last allowed core.
fn wal_core_default(args: &Args, shards: usize) -> Option<usize> {
    if !args.pinned() {
        return None;
    }
    let allowed = coreshard_engine::allowed_cores();
    let used: Vec<usize> = if args.cores.is_empty() {
        allowed.iter().copied().take(shards).collect()
    } else {
        args.cores.clone()
    };
    allowed
        .iter()
        .copied()
        .find(|c| !used.contains(c))
        .or_else(|| allowed.last().copied())
}
