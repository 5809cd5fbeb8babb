//! `coreshard-bench`: an open-loop, coordinated-omission-corrected latency harness for any
//! RESP server, driven by io_uring client threads on the coreshard engine.

mod client;
mod dist;
mod plot;
mod reply;
mod report;
mod schedule;
mod stats;
mod workload;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use coreshard_engine::{start, EngineConfig};
use serde_json::json;

use client::{Client, Mode, Plan, PubSub, Shared};
use dist::KeyDist;
use stats::RunStats;
use workload::Workload;

/// Latency benchmark for RESP servers (coreshard, Redis, Valkey, ...).
///
/// Open loop (`--rate`): requests leave on a fixed schedule and latency is measured from
/// each request's intended send time, so server stalls are not hidden (coordinated
/// omission). Closed loop (default): each connection keeps `--pipeline` requests in flight.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Arbitrary commands: coreshard-bench -- INCR counter:__rand_int__"
)]
struct Args {
    /// Server host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(short, long, default_value_t = 6379)]
    port: u16,
    /// Compare mode: NAME=HOST:PORT, repeated; runs alternate A B A B ... for --rounds.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// Rounds per target in compare mode.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Connections (request workloads).
    #[arg(short, long, default_value_t = 50)]
    connections: usize,
    /// Client threads (each an io_uring event loop).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Cores to pin client threads to, e.g. 0 or 0,2.
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Open loop: total requests per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Requests in flight per connection (closed loop: always; open loop: at most).
    #[arg(short = 'P', long, default_value_t = 1)]
    pipeline: usize,
    /// SET:GET weights.
    #[arg(long, default_value = "1:10")]
    ratio: String,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 100_000)]
    keyspace: u64,
    /// Key distribution: uniform, zipfian[:theta], sequential.
    #[arg(long, default_value = "uniform")]
    distribution: KeyDist,
    /// Value size in bytes: N or MIN-MAX.
    #[arg(short = 'd', long, default_value = "32")]
    data_size: String,
    /// TTL in seconds on every SET.
    #[arg(long)]
    ttl: Option<u64>,
    /// SET every key of the key space before measuring.
    #[arg(long)]
    prefill: bool,
    /// Seconds to measure (default 10 unless --requests is given).
    #[arg(long)]
    duration: Option<f64>,
    /// Requests to measure.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Seconds of unrecorded load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the corrected latency distribution as .hgrm text (service time goes to
    /// FILE-service.hgrm).
    #[arg(long)]
    hdr: Option<PathBuf>,
    /// Draw latency by percentile as SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Overlay an earlier run on the plot: LABEL=FILE.hgrm (repeatable).
    #[arg(long = "plot-add")]
    plot_add: Vec<String>,
    /// Pub/sub mode: subscribers on one channel, publishers at --rate.
    #[arg(long)]
    pubsub: bool,
    /// Pub/sub subscribers.
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// Pub/sub publishers.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Pub/sub channel.
    #[arg(long, default_value = "coreshard-bench")]
    channel: String,
    /// No live progress line.
    #[arg(long)]
    no_progress: bool,
    /// A command template to run instead of the SET/GET mix (`__rand_int__`, `__data__`).
    #[arg(last = true)]
    command: Vec<String>,
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let parse = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|_| format!("bad size {t:?}"))
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if a > b {
                return Err(format!("size range {s} is backwards"));
            }
            Ok((a, b))
        }
        None => parse(s).map(|n| (n, n)),
    }
}

fn parse_ratio(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("ratio must be SET:GET, got {s:?}"))?;
    let a = a.parse::<u32>().map_err(|_| format!("bad ratio {s:?}"))?;
    let b = b.parse::<u32>().map_err(|_| format!("bad ratio {s:?}"))?;
    if a + b == 0 {
        return Err("ratio must not be 0:0".into());
    }
    Ok((a, b))
}

fn resolve(hostport: &str) -> Result<SocketAddr, String> {
    hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {hostport}"))
}

fn workload(args: &Args) -> Result<Workload, String> {
    let sizes = parse_size(&args.data_size)?;
    if !args.command.is_empty() {
        return Ok(Workload::template(
            args.command.clone(),
            args.keyspace,
            args.distribution.clone(),
            sizes,
        ));
    }
    let (set, get) = parse_ratio(&args.ratio)?;
    Ok(Workload::set_get(
        set,
        get,
        args.keyspace,
        args.distribution.clone(),
        sizes,
        args.ttl,
    ))
}

/// Run `plan` on a fresh engine and gather every thread's results.
fn execute(plan: Plan, cpus: &[usize], progress: bool) -> Result<RunStats, String> {
    let shards = plan.shards;
    let shared = Shared::new(shards);
    let plan = Arc::new(plan);
    let config = EngineConfig {
        listen: None,
        shards,
        cores: cpus.to_vec(),
        pin: !cpus.is_empty(),
        max_connections: usize::MAX,
        ..EngineConfig::default()
    };
    let (p, s) = (Arc::clone(&plan), Arc::clone(&shared));
    let engine = start(config, move |info| {
        Client::new(info, Arc::clone(&p), Arc::clone(&s))
    })
    .map_err(|e| e.to_string())?;
    let bar = if progress {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    let limit = plan.warmup
        + plan.duration.unwrap_or(Duration::from_secs(3600))
        + plan.drain
        + Duration::from_secs(30);
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let mut finished = true;
    while shared.done.load(Ordering::Acquire) < shards {
        if started.elapsed() > limit {
            finished = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let done = shared.completed.load(Ordering::Relaxed);
        let rate = (done - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), done);
        let p99 = shared
            .live_p99_ns
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0) as f64
            / 1e6;
        let errors = shared.errors.load(Ordering::Relaxed);
        bar.set_message(format!(
            "{rate:>10.0} ops/s   p99 {p99:.3} ms   {done} done   {errors} errors"
        ));
        bar.tick();
    }
    bar.finish_and_clear();
    engine.shutdown();
    engine.join().map_err(|e| e.to_string())?;
    if !finished {
        return Err("the run did not finish in time (server unreachable or stuck?)".into());
    }
    let mut total = RunStats::default();
    for r in shared
        .results
        .lock()
        .map_err(|_| "results poisoned")?
        .iter()
    {
        total.merge(r);
    }
    if let Some(ps) = &plan.pubsub {
        let expected = shared.published.load(Ordering::Relaxed) * ps.subscribers as u64;
        total.lost = expected.saturating_sub(total.delivered);
    }
    Ok(total)
}

fn prefill(args: &Args, target: SocketAddr) -> Result<(), String> {
    let sizes = parse_size(&args.data_size)?;
    let w = Workload::template(
        vec!["SET".into(), "key:__rand_int__".into(), "__data__".into()],
        args.keyspace,
        KeyDist::Sequential,
        (sizes.1, sizes.1),
    );
    let plan = Plan {
        target,
        connections: 1,
        shards: 1,
        mode: Mode::Closed { pipeline: 64 },
        workload: w,
        start: Instant::now(),
        warmup: Duration::ZERO,
        duration: None,
        requests: Some(args.keyspace),
        pubsub: None,
        drain: Duration::from_secs(10),
    };
    let stats = execute(plan, &args.cpus, false)?;
    let errors: u64 = stats.kinds.iter().map(|k| k.errors).sum();
    if errors > 0 {
        return Err(format!(
            "prefill got {errors} errors: {:?}",
            stats.error_samples
        ));
    }
    Ok(())
}

fn run_once(args: &Args, target: SocketAddr) -> Result<RunStats, String> {
    if args.prefill {
        prefill(args, target)?;
    }
    let mode = match args.rate {
        Some(r) if r > 0.0 => Mode::Open {
            rate: r,
            pipeline: args.pipeline.max(1),
        },
        Some(_) => return Err("--rate must be positive".into()),
        None if args.pubsub => Mode::Open {
            rate: 1000.0,
            pipeline: args.pipeline.max(1),
        },
        None => Mode::Closed {
            pipeline: args.pipeline.max(1),
        },
    };
    let duration = match (args.duration, args.requests) {
        (Some(d), _) => Some(Duration::from_secs_f64(d)),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let pubsub = args.pubsub.then(|| PubSub {
        subscribers: args.subscribers.max(1),
        publishers: args.publishers.max(1),
        channel: args.channel.clone(),
        size: parse_size(&args.data_size).map(|s| s.1).unwrap_or(32),
    });
    let plan = Plan {
        target,
        connections: args.connections.max(1),
        shards: args.threads.max(1),
        mode,
        workload: workload(args)?,
        start: Instant::now() + Duration::from_millis(200),
        warmup: Duration::from_secs_f64(args.warmup),
        duration,
        requests: args.requests,
        pubsub,
        drain: Duration::from_secs(2),
    };
    execute(plan, &args.cpus, !args.no_progress)
}

fn describe(args: &Args) -> String {
    match (args.rate, args.pubsub) {
        (_, true) => format!(
            "pub/sub: {} subscribers, {} publishers at {} msg/s",
            args.subscribers,
            args.publishers,
            args.rate.unwrap_or(1000.0)
        ),
        (Some(r), _) => format!(
            "open loop at {r} req/s over {} connections",
            args.connections
        ),
        (None, _) => format!(
            "closed loop, {} connections x pipeline {}",
            args.connections, args.pipeline
        ),
    }
}

fn run_json(stats: &RunStats) -> serde_json::Value {
    let (corrected, service) = report::rows(stats);
    json!({
        "seconds": stats.seconds,
        "commands": corrected,
        "service_time": service,
        "reconnects": stats.reconnects,
        "lost_in_flight": stats.lost_in_flight,
        "error_samples": stats.error_samples,
        "pubsub": { "delivered": stats.delivered, "lost": stats.lost, "subscriber_disconnects": stats.subscriber_disconnects },
    })
}

fn plot_series(
    label: &str,
    stats: &RunStats,
    with_service: bool,
    extra: &[String],
) -> Result<Vec<plot::Series>, String> {
    let total = stats.total();
    let mut series = vec![plot::Series {
        label: label.to_string(),
        points: report::points(&total.corrected),
    }];
    if with_service {
        series.push(plot::Series {
            label: format!("{label} (service time, uncorrected)"),
            points: report::points(&total.service),
        });
    }
    for add in extra {
        let (name, file) = add
            .split_once('=')
            .ok_or_else(|| format!("--plot-add wants LABEL=FILE, got {add:?}"))?;
        let points =
            report::read_hgrm(std::path::Path::new(file)).map_err(|e| format!("{file}: {e}"))?;
        series.push(plot::Series {
            label: name.to_string(),
            points,
        });
    }
    Ok(series)
}

fn write(path: &std::path::Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn single(args: &Args) -> Result<(), String> {
    let target = resolve(&format!("{}:{}", args.host, args.port))?;
    let stats = run_once(args, target)?;
    println!(
        "{target}: {}, {:.1} s measured",
        describe(args),
        stats.seconds
    );
    let (corrected, service) = report::rows(&stats);
    let open = args.rate.is_some() || args.pubsub;
    let title = if open {
        "latency from intended send time (coordinated omission corrected):"
    } else {
        "latency:"
    };
    print!("{}", report::table(title, &corrected));
    if open {
        print!(
            "{}",
            report::table("service time (from actual send, uncorrected):", &service)
        );
    }
    if args.pubsub {
        println!(
            "delivered {}   lost {}   slow-subscriber disconnects {}",
            stats.delivered, stats.lost, stats.subscriber_disconnects
        );
    }
    println!(
        "reconnects {}   requests lost with a connection {}",
        stats.reconnects, stats.lost_in_flight
    );
    for e in &stats.error_samples {
        println!("error reply: {e}");
    }
    if let Some(path) = &args.json {
        let doc = json!({ "target": target.to_string(), "workload": describe(args), "run": run_json(&stats) });
        write(
            path,
            &serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?,
        )?;
    }
    if let Some(path) = &args.hdr {
        let total = stats.total();
        write(path, &report::hgrm(&total.corrected))?;
        let stem = path.with_extension("");
        write(
            &PathBuf::from(format!("{}-service.hgrm", stem.display())),
            &report::hgrm(&total.service),
        )?;
    }
    if let Some(path) = &args.plot {
        let series = plot_series(&target.to_string(), &stats, open, &args.plot_add)?;
        write(path, &plot::svg(&describe(args), &series))?;
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn compare(args: &Args) -> Result<(), String> {
    let targets: Vec<(String, SocketAddr)> = args
        .targets
        .iter()
        .map(|t| {
            let (name, addr) = t
                .split_once('=')
                .ok_or_else(|| format!("--target wants NAME=HOST:PORT, got {t:?}"))?;
            Ok((name.to_string(), resolve(addr)?))
        })
        .collect::<Result<_, String>>()?;
    let mut runs: Vec<Vec<RunStats>> = vec![Vec::new(); targets.len()];
    for round in 0..args.rounds.max(1) {
        for (i, (name, addr)) in targets.iter().enumerate() {
            let stats = run_once(args, *addr)?;
            let all = stats.total();
            let s = stats::summarize(name, &all.corrected, all.errors, stats.seconds);
            eprintln!(
                "round {}: {name}: {:.0} ops/s p50 {:.3} p99 {:.3} p99.9 {:.3} ms, {} errors",
                round + 1,
                s.ops_per_sec,
                s.p50,
                s.p99,
                s.p999,
                s.errors
            );
            runs[i].push(stats);
        }
    }
    println!(
        "{} — medians of {} rounds",
        describe(args),
        args.rounds.max(1)
    );
    println!(
        "{:<12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>10}",
        "target",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors",
        "ops ratio",
        "p99 ratio"
    );
    let mut rows = Vec::new();
    for (i, (name, _)) in targets.iter().enumerate() {
        let sums: Vec<stats::Summary> = runs[i]
            .iter()
            .map(|r| {
                let t = r.total();
                stats::summarize(name, &t.corrected, t.errors, r.seconds)
            })
            .collect();
        let pick = |f: fn(&stats::Summary) -> f64| median(sums.iter().map(f).collect());
        let row = (
            pick(|s| s.ops_per_sec),
            pick(|s| s.p50),
            pick(|s| s.p99),
            pick(|s| s.p999),
            pick(|s| s.max),
            sums.iter().map(|s| s.errors).sum::<u64>(),
        );
        rows.push((name.clone(), row, sums));
    }
    let base = rows.first().map(|r| r.1).unwrap_or_default();
    for (name, r, _) in &rows {
        println!(
            "{name:<12} {:>12.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8} {:>9.2}x {:>9.2}x",
            r.0,
            r.1,
            r.2,
            r.3,
            r.4,
            r.5,
            r.0 / base.0,
            r.2 / base.2
        );
    }
    if let Some(path) = &args.json {
        let doc = json!({
            "workload": describe(args),
            "rounds": args.rounds,
            "targets": rows.iter().enumerate().map(|(i, (name, r, _))| json!({
                "name": name, "addr": targets[i].1.to_string(),
                "median": { "ops_per_sec": r.0, "p50": r.1, "p99": r.2, "p999": r.3, "max": r.4 },
                "ratio_to_first": { "ops_per_sec": r.0 / base.0, "p99": r.2 / base.2 },
                "errors": r.5,
                "runs": runs[i].iter().map(run_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        write(
            path,
            &serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?,
        )?;
    }
    if let Some(path) = &args.plot {
        let mut series = Vec::new();
        for (i, (name, _)) in targets.iter().enumerate() {
            let mut merged = RunStats::default();
            runs[i].iter().for_each(|r| merged.merge(r));
            series.extend(plot_series(name, &merged, false, &[])?);
        }
        series.extend(
            plot_series("", &RunStats::default(), false, &args.plot_add)?
                .into_iter()
                .skip(1),
        );
        write(path, &plot::svg(&describe(args), &series))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = if args.targets.is_empty() {
        single(&args)
    } else {
        compare(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coreshard-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
