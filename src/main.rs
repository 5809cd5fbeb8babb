//! `coreshard`: a Redis-compatible server on the coreshard engine.

mod commands;
mod config;
mod db;
mod glob;
mod routing;
mod server;
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

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = args.log_level.parse().unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_writer(std::io::stderr)
        .init();
    // Before any thread exists, so every shard inherits the mask.
    block_shutdown_signals();

    let mut config = ServerConfig::from_args(&args);
    config.maxclients = fit_maxclients(args.maxclients);
    if config.protected {
        tracing::warn!(
            "protected mode: bound to {} without a password, so only loopback clients are \
             accepted; set --requirepass or --protected-mode no to serve other hosts",
            args.bind
        );
    }
    let engine_config = EngineConfig {
        listen: Some(config.listen),
        shards: args.shards,
        cores: args.cores.clone(),
        pin: !args.no_pin,
        max_connections: config.maxclients,
        idle_timeout: config.idle_timeout(),
        max_input_buffer: args.client_query_buffer_limit,
        output_pause_bytes: OUTPUT_PAUSE_BYTES,
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
    // The port is only known after binding; shards read it lazily through this cell.
    let shared_config = Arc::new(std::sync::OnceLock::<Arc<ServerConfig>>::new());
    let cfg_cell = Arc::clone(&shared_config);
    let base = config.clone();
    let engine = match start(engine_config, move |info| {
        let cfg = cfg_cell
            .get()
            .cloned()
            .unwrap_or_else(|| Arc::new(base.clone()));
        Server::new(info, cfg, Arc::clone(&slots))
    }) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("coreshard: {e}");
            return ExitCode::FAILURE;
        }
    };
    config.listen = engine.local_addr().unwrap_or(config.listen);
    let listen = config.listen;
    let _ = shared_config.set(Arc::new(config));
    let cores: Vec<String> = engine
        .cores()
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i}->{}", c.map_or("any".to_string(), |c| c.to_string())))
        .collect();
    println!(
        "coreshard {} listening on {} shards={} cores=[{}] io_uring: {}",
        env!("CARGO_PKG_VERSION"),
        listen,
        shards,
        cores.join(","),
        engine.features()
    );
    let _ = std::io::stdout().flush();

    match wait_for_shutdown_signal() {
        Ok(sig) => tracing::info!("{sig} received, shutting down"),
        Err(e) => tracing::error!("{e}; shutting down"),
    }
    engine.shutdown();
    match engine.join() {
        Ok(()) => {
            tracing::info!("bye");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coreshard: {e}");
            ExitCode::FAILURE
        }
    }
}
