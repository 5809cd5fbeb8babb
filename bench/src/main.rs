//! `coreshard-bench`: an open-loop, coordinated-omission-corrected latency harness for any
//! RESP server, driven by io_uring client threads on the coreshard engine.

mod check;
mod client;
mod dist;
mod plot;
mod reply;
mod report;
mod schedule;
mod stats;
mod verdict;
mod workload;

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
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
use verdict::{judge, per_sec, Thresholds, Verdict};
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
    after_help = "Arbitrary commands: coreshard-bench -- INCR counter:__rand_int__\n\n\
Before any load, every target must accept a connection, answer PING and one request of each \
workload command (pub/sub: confirm a SUBSCRIBE and deliver a PUBLISH), and every input and \
output file must be usable.\n\n\
Exit status: 0 the run measured what was asked; 1 nothing was measured (bad option, \
unreachable or refusing server, missing file); 2 command-line syntax; 3 a run happened but \
failed its checks (no replies, errors above --max-error-rate, open loop below \
--min-achieved of the offered rate): the table, JSON and plot are still written and say why."
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
    /// Requests in flight per connection (closed loop: always; open loop: at most;
    /// pub/sub publishers: at least 1024, so they never wait on replies).
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
    /// Fail the run (exit 3) when more than this percentage of measured requests got an
    /// error reply or no reply (pub/sub: also lost deliveries).
    #[arg(long, value_name = "PERCENT", default_value_t = 0.1)]
    max_error_rate: f64,
    /// Open loop: fail the run (exit 3) when the replies received in the measured window
    /// fall below this percentage of the offered rate.
    #[arg(long, value_name = "PERCENT", default_value_t = 95.0)]
    min_achieved: f64,
    /// Seconds each pre-flight check (connect, PING, one request per command) may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    check_timeout: f64,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the corrected latency distribution as .hgrm text (service time goes to
    /// FILE-service.hgrm).
    #[arg(long)]
    hdr: Option<PathBuf>,
    /// Draw latency by percentile as SVG (log latency axis).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// A linear latency axis from 0 instead of the log axis.
    #[arg(long)]
    plot_linear: bool,
    /// Overlay an earlier run on the plot: LABEL=FILE.hgrm (repeatable).
    #[arg(long = "plot-add")]
    plot_add: Vec<String>,
    /// Pub/sub mode: subscribers on one channel, publishers at --rate (payload: -d bytes,
    /// at least the 16-byte timestamp).
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

fn prefill_workload(args: &Args) -> Result<Workload, String> {
    let sizes = parse_size(&args.data_size)?;
    Ok(Workload::template(
        vec!["SET".into(), "key:__rand_int__".into(), "__data__".into()],
        args.keyspace,
        KeyDist::Sequential,
        (sizes.1, sizes.1),
    ))
}

/// Everything validated before any connection is made.
struct Setup {
    workload: Workload,
    /// (name, address); in single mode the name is the address.
    targets: Vec<(String, SocketAddr)>,
    /// `--plot-add` overlays, read up front.
    overlays: Vec<plot::Series>,
    thresholds: Thresholds,
    /// Open loop (and pub/sub): the offered rate.
    offered: Option<f64>,
    check_timeout: Duration,
}

fn percent(option: &str, v: f64) -> Result<f64, String> {
    if (0.0..=100.0).contains(&v) {
        Ok(v / 100.0)
    } else {
        Err(format!("{option} is a percentage (0 to 100), got {v}"))
    }
}

/// Check every option and file before anything connects.
fn prepare(args: &Args) -> Result<Setup, String> {
    let workload = workload(args)?;
    parse_size(&args.data_size)?;
    let offered = match (args.rate, args.pubsub) {
        (Some(r), _) if !(r > 0.0 && r.is_finite()) => {
            return Err(format!("--rate must be positive, got {r}"))
        }
        (Some(r), _) => Some(r),
        (None, true) => Some(1000.0),
        (None, false) => None,
    };
    if let Some(d) = args.duration {
        if !(d > 0.0 && d.is_finite()) {
            return Err(format!("--duration must be positive, got {d}"));
        }
    }
    if args.requests == Some(0) {
        return Err("--requests must be positive".into());
    }
    if !(args.warmup >= 0.0 && args.warmup.is_finite()) {
        return Err(format!("--warmup must be 0 or more, got {}", args.warmup));
    }
    if !(args.check_timeout > 0.0 && args.check_timeout.is_finite()) {
        return Err(format!(
            "--check-timeout must be positive, got {}",
            args.check_timeout
        ));
    }
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let thresholds = Thresholds {
        max_error_rate: percent("--max-error-rate", args.max_error_rate)?,
        min_achieved: percent("--min-achieved", args.min_achieved)?,
    };
    if args.pubsub && args.requests.is_some() {
        return Err("--pubsub measures for --duration, not --requests".into());
    }
    // Outputs: fail now rather than after the whole run.
    if let Some(p) = &args.json {
        check::output("--json", p)?;
    }
    if let Some(p) = &args.hdr {
        check::output("--hdr", p)?;
        check::output("--hdr", &service_hgrm(p))?;
    }
    if let Some(p) = &args.plot {
        check::output("--plot", p)?;
    }
    if !args.plot_add.is_empty() && args.plot.is_none() {
        return Err("--plot-add overlays a plot: give --plot FILE.svg too".into());
    }
    let mut overlays = Vec::new();
    for add in &args.plot_add {
        let (name, file) = add
            .split_once('=')
            .ok_or_else(|| format!("--plot-add wants LABEL=FILE, got {add:?}"))?;
        let points =
            report::read_hgrm(Path::new(file)).map_err(|e| format!("--plot-add {file}: {e}"))?;
        overlays.push(plot::Series {
            dashed: true,
            ..plot::Series::new(name, points)
        });
    }
    let targets = if args.targets.is_empty() {
        let addr = resolve(&format!("{}:{}", args.host, args.port))?;
        vec![(addr.to_string(), addr)]
    } else {
        args.targets
            .iter()
            .map(|t| {
                let (name, addr) = t
                    .split_once('=')
                    .filter(|(n, a)| !n.is_empty() && !a.is_empty())
                    .ok_or_else(|| format!("--target wants NAME=HOST:PORT, got {t:?}"))?;
                Ok((name.to_string(), resolve(addr)?))
            })
            .collect::<Result<_, String>>()?
    };
    Ok(Setup {
        workload,
        targets,
        overlays,
        thresholds,
        offered,
        check_timeout: Duration::from_secs_f64(args.check_timeout),
    })
}

/// Every target answers before any load starts.
fn preflight(args: &Args, setup: &Setup) -> Result<(), String> {
    for (name, addr) in &setup.targets {
        let t = setup.check_timeout;
        if args.pubsub {
            check::pubsub(name, *addr, &args.channel, t)?;
        } else {
            check::requests(name, *addr, &setup.workload, t)?;
            if args.prefill && !setup.workload.commands.iter().any(|c| c.0 == "SET") {
                check::requests(name, *addr, &prefill_workload(args)?, t)?;
            }
        }
    }
    Ok(())
}

/// What the live line shows, computed by [`progress_line`].
struct Progress {
    /// Since sending started.
    elapsed: Duration,
    warmup: Duration,
    /// Warm-up plus measured duration, when the run is timed.
    total: Option<Duration>,
    /// Replies per second over the last interval.
    rate: f64,
    offered: Option<f64>,
    /// The worst thread's p99 over its last window; `None` until there are replies.
    p99_ns: Option<u64>,
    done: u64,
    errors: u64,
}

/// The live progress line.
fn progress_line(p: &Progress) -> String {
    let e = p.elapsed.as_secs_f64();
    let mut line = match p.total {
        Some(t) => format!("{e:>5.1}/{:.1} s", t.as_secs_f64()),
        None => format!("{e:>5.1} s"),
    };
    if p.elapsed < p.warmup {
        line.push_str(" (warm-up)");
    }
    match p.offered {
        Some(o) => {
            let _ = write!(
                line,
                "   achieved {} of {} offered ({:.0}%)",
                per_sec(p.rate),
                per_sec(o),
                100.0 * p.rate / o
            );
        }
        None => {
            let _ = write!(line, "   {}", per_sec(p.rate));
        }
    }
    match p.p99_ns {
        Some(ns) if ns > 0 => {
            let _ = write!(line, "   p99 {}", plot::latency_label(ns as f64 / 1e6));
        }
        _ => line.push_str("   p99 -"),
    }
    let _ = write!(line, "   {} replies   {} errors", p.done, p.errors);
    line
}

/// A requests-bounded run with no reply for this long is stuck.
const STALL: Duration = Duration::from_secs(30);

/// Run `plan` on a fresh engine and gather every thread's results.
fn execute(plan: Plan, cpus: &[usize], progress: bool) -> Result<RunStats, String> {
    let shards = plan.shards;
    let shared = Shared::new(shards);
    let plan = Arc::new(plan);
    let config = EngineConfig {
        outgoing_only: true,
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
    let offered = match plan.mode {
        Mode::Open { rate, .. } => Some(rate),
        Mode::Closed { .. } => None,
    };
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let mut last_reply = Instant::now();
    let mut failure = None;
    while shared.done.load(Ordering::Acquire) < shards {
        if started.elapsed() > limit {
            failure = Some("the run did not finish in time (server stuck?)".to_string());
            break;
        }
        if plan.duration.is_none() && last_reply.elapsed() > STALL {
            failure = Some(format!(
                "no reply for {} s: the server stopped answering",
                STALL.as_secs()
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let done = shared.completed.load(Ordering::Relaxed);
        if done != last.1 {
            last_reply = Instant::now();
        }
        let rate = (done - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), done);
        let p99 = shared
            .live_p99_ns
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .max()
            .filter(|&v| v > 0);
        bar.set_message(progress_line(&Progress {
            elapsed: Instant::now().saturating_duration_since(plan.start),
            warmup: plan.warmup,
            total: plan.duration.map(|d| d + plan.warmup),
            rate,
            offered,
            p99_ns: p99,
            done,
            errors: shared.errors.load(Ordering::Relaxed),
        }));
        bar.tick();
    }
    bar.finish_and_clear();
    engine.shutdown();
    engine.join().map_err(|e| e.to_string())?;
    if let Some(f) = failure {
        return Err(f);
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
    let plan = Plan {
        target,
        connections: 1,
        shards: 1,
        mode: Mode::Closed { pipeline: 64 },
        workload: prefill_workload(args)?,
        start: Instant::now(),
        warmup: Duration::ZERO,
        duration: None,
        requests: Some(args.keyspace),
        pubsub: None,
        drain: Duration::from_secs(10),
    };
    let stats = execute(plan, &args.cpus, false)?;
    let errors: u64 = stats.kinds.iter().map(|k| k.errors).sum::<u64>() + stats.lost_in_flight;
    if errors > 0 {
        return Err(format!(
            "prefill: {errors} of {} SETs failed: {:?}",
            args.keyspace, stats.error_samples
        ));
    }
    Ok(())
}

/// PUBLISHes each publisher may have in flight (at least; `-P` raises it).
const PUBLISH_WINDOW: usize = 1024;

fn run_once(args: &Args, setup: &Setup, target: SocketAddr) -> Result<RunStats, String> {
    if args.prefill {
        prefill(args, target)?;
    }
    let mode = match setup.offered {
        // Pub/sub publishers never wait on PUBLISH replies (the cap only turns a server
        // that stops answering into a backlog, which the corrected latency shows).
        Some(rate) if args.pubsub => Mode::Open {
            rate,
            pipeline: args.pipeline.max(PUBLISH_WINDOW),
        },
        Some(rate) => Mode::Open {
            rate,
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
        workload: setup.workload.clone(),
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

fn run_json(stats: &RunStats, v: &Verdict) -> serde_json::Value {
    let (corrected, service) = report::rows(stats);
    json!({
        "status": v.status.as_str(),
        "problems": v.problems,
        "offered_rate": v.offered_rate,
        "achieved_rate": v.achieved_rate,
        "error_rate": v.error_rate,
        "seconds": stats.seconds,
        "received_in_window": stats.received_in_window,
        "commands": corrected,
        "service_time": service,
        "reconnects": stats.reconnects,
        "lost_in_flight": stats.lost_in_flight,
        "unsent": stats.unsent,
        "error_samples": stats.error_samples,
        "pubsub": { "delivered": stats.delivered, "lost": stats.lost, "subscriber_disconnects": stats.subscriber_disconnects },
    })
}

fn thresholds_json(t: &Thresholds) -> serde_json::Value {
    json!({ "max_error_rate_percent": 100.0 * t.max_error_rate, "min_achieved_percent": 100.0 * t.min_achieved })
}

fn service_hgrm(path: &Path) -> PathBuf {
    PathBuf::from(format!(
        "{}-service.hgrm",
        path.with_extension("").display()
    ))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// How a run ended.
enum Outcome {
    /// Every run passed its checks.
    Passed,
    /// A run happened but failed: the reasons.
    Failed(Vec<String>),
}

fn single(args: &Args, setup: &Setup) -> Result<Outcome, String> {
    let target = setup.targets[0].1;
    let stats = run_once(args, setup, target)?;
    let v = judge(&stats, setup.offered, args.pubsub, setup.thresholds);
    println!(
        "{target}: {}, {:.1} s measured, {}",
        describe(args),
        stats.seconds,
        v.rate_text()
    );
    let (corrected, service) = report::rows(&stats);
    let open = setup.offered.is_some();
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
        "reconnects {}   requests lost unanswered {}   due requests never sent {}",
        stats.reconnects, stats.lost_in_flight, stats.unsent
    );
    for e in &stats.error_samples {
        println!("error reply: {e}");
    }
    println!("{}", v.line());
    if let Some(path) = &args.json {
        let doc = json!({
            "target": target.to_string(),
            "workload": describe(args),
            "status": if v.ok() { "ok" } else { "failed" },
            "problems": v.problems,
            "offered_rate": v.offered_rate,
            "achieved_rate": v.achieved_rate,
            "thresholds": thresholds_json(&setup.thresholds),
            "run": run_json(&stats, &v),
        });
        write(
            path,
            &serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?,
        )?;
    }
    if let Some(path) = &args.hdr {
        let total = stats.total();
        write(path, &report::hgrm(&total.corrected))?;
        write(&service_hgrm(path), &report::hgrm(&total.service))?;
    }
    if let Some(path) = &args.plot {
        let total = stats.total();
        let failed = (!v.ok()).then(|| v.status.as_str().replace('_', " "));
        let mut series = vec![plot::Series {
            failed,
            ..plot::Series::new(
                if open {
                    format!("{target} corrected, {}", v.rate_text())
                } else {
                    format!("{target}, {}", v.rate_text())
                },
                report::points(&total.corrected),
            )
        }];
        if open {
            series.push(plot::Series {
                dashed: true,
                ..plot::Series::new(
                    format!("{target} service time (uncorrected)"),
                    report::points(&total.service),
                )
            });
        }
        series.extend(clone_series(&setup.overlays));
        let opts = plot::Options {
            title: describe(args),
            subtitle: format!(
                "{target}: {}, {:.1} s measured",
                v.rate_text(),
                stats.seconds
            ),
            banner: (!v.ok()).then(|| format!("FAILED: {}", v.problems.join("; "))),
            linear: args.plot_linear,
        };
        write(path, &plot::svg(&opts, &series))?;
    }
    Ok(if v.ok() {
        Outcome::Passed
    } else {
        Outcome::Failed(v.problems)
    })
}

fn clone_series(s: &[plot::Series]) -> Vec<plot::Series> {
    s.iter()
        .map(|o| plot::Series {
            label: o.label.clone(),
            points: o.points.clone(),
            dashed: o.dashed,
            failed: o.failed.clone(),
        })
        .collect()
}

/// What compare mode ranks rounds by.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MedianBy {
    /// Open loop: the rate is fixed, so the corrected p99 tells rounds apart.
    P99,
    /// Closed loop: the achieved rate.
    Throughput,
}

impl MedianBy {
    fn name(self) -> &'static str {
        match self {
            MedianBy::P99 => "p99",
            MedianBy::Throughput => "throughput",
        }
    }
}

/// One round of one target, summarised.
#[derive(Debug, Clone)]
struct Round {
    round: usize,
    achieved: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    errors: u64,
    ok: bool,
}

/// The index of the median round by `by` (the lower middle one for an even count).
fn median_round(rounds: &[Round], by: MedianBy) -> usize {
    let mut order: Vec<usize> = (0..rounds.len()).collect();
    let key = |i: &usize| match by {
        MedianBy::P99 => rounds[*i].p99,
        MedianBy::Throughput => rounds[*i].achieved,
    };
    order.sort_by(|a, b| key(a).total_cmp(&key(b)).then(a.cmp(b)));
    order[(order.len().saturating_sub(1)) / 2]
}

/// The compare table: one row per target, each the whole row of its median round.
fn compare_table(rows: &[(String, Round)]) -> String {
    let w = rows
        .iter()
        .map(|r| r.0.chars().count())
        .chain(std::iter::once(6))
        .max()
        .unwrap_or(6);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<w$} {:>5} {:>12} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6} {:>10} {:>10}",
        "target",
        "round",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors",
        "status",
        "ops ratio",
        "p99 ratio"
    );
    let base = rows.first().map(|r| r.1.clone());
    for (name, r) in rows {
        let (ops_ratio, p99_ratio) = base.as_ref().map_or((f64::NAN, f64::NAN), |b| {
            (r.achieved / b.achieved, r.p99 / b.p99)
        });
        let _ = writeln!(
            out,
            "{name:<w$} {:>5} {:>12.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8} {:>6} {:>9.2}x {:>9.2}x",
            r.round,
            r.achieved,
            r.p50,
            r.p99,
            r.p999,
            r.max,
            r.errors,
            if r.ok { "ok" } else { "FAILED" },
            ops_ratio,
            p99_ratio
        );
    }
    out
}

fn compare(args: &Args, setup: &Setup) -> Result<Outcome, String> {
    let targets = &setup.targets;
    let rounds = args.rounds;
    let by = if setup.offered.is_some() {
        MedianBy::P99
    } else {
        MedianBy::Throughput
    };
    let mut runs: Vec<Vec<(RunStats, Verdict, Round)>> = vec![Vec::new(); targets.len()];
    let mut problems = Vec::new();
    for round in 1..=rounds {
        for (i, (name, addr)) in targets.iter().enumerate() {
            let stats = run_once(args, setup, *addr)?;
            let v = judge(&stats, setup.offered, args.pubsub, setup.thresholds);
            let all = stats.total();
            let s = stats::summarize(name, &all.corrected, all.errors, stats.seconds);
            let r = Round {
                round,
                achieved: v.achieved_rate,
                p50: s.p50,
                p99: s.p99,
                p999: s.p999,
                max: s.max,
                errors: all.errors + stats.lost_in_flight,
                ok: v.ok(),
            };
            eprintln!(
                "round {round}/{rounds}: {name}: {}, p50 {:.3} p99 {:.3} p99.9 {:.3} ms, {} errors, {}",
                v.rate_text(),
                r.p50,
                r.p99,
                r.p999,
                r.errors,
                if v.ok() { "ok" } else { "FAILED" }
            );
            for p in &v.problems {
                problems.push(format!("{name} round {round}: {p}"));
            }
            runs[i].push((stats, v, r));
        }
    }
    let medians: Vec<usize> = runs
        .iter()
        .map(|r| {
            let rs: Vec<Round> = r.iter().map(|x| x.2.clone()).collect();
            median_round(&rs, by)
        })
        .collect();
    println!(
        "{} — per target, the median of {rounds} rounds by {}{}",
        describe(args),
        by.name(),
        if rounds % 2 == 0 {
            " (lower middle of an even count)"
        } else {
            ""
        }
    );
    let rows: Vec<(String, Round)> = targets
        .iter()
        .zip(&medians)
        .enumerate()
        .map(|(i, ((name, _), &m))| (name.clone(), runs[i][m].2.clone()))
        .collect();
    print!("{}", compare_table(&rows));
    let ok = problems.is_empty();
    println!(
        "status: {}",
        if ok {
            "ok".to_string()
        } else {
            format!("FAILED: {}", problems.join("; "))
        }
    );
    if let Some(path) = &args.json {
        let base = rows.first().map(|r| r.1.clone());
        let doc = json!({
            "workload": describe(args),
            "status": if ok { "ok" } else { "failed" },
            "problems": problems,
            "offered_rate": setup.offered,
            "thresholds": thresholds_json(&setup.thresholds),
            "rounds": rounds,
            "median_by": by.name(),
            "targets": targets.iter().enumerate().map(|(i, (name, addr))| {
                let m = &runs[i][medians[i]];
                let r = &m.2;
                let all_ok = runs[i].iter().all(|x| x.1.ok());
                json!({
                    "name": name,
                    "addr": addr.to_string(),
                    "status": if all_ok { "ok" } else { "failed" },
                    "median_round": r.round,
                    "offered_rate": setup.offered,
                    "achieved_rate": r.achieved,
                    "median": {
                        "round": r.round, "status": m.1.status.as_str(),
                        "ops_per_sec": r.achieved, "p50": r.p50, "p99": r.p99,
                        "p999": r.p999, "max": r.max, "errors": r.errors,
                    },
                    "ratio_to_first": base.as_ref().map(|b| json!({
                        "ops_per_sec": r.achieved / b.achieved, "p99": r.p99 / b.p99,
                    })),
                    "runs": runs[i].iter().map(|(s, v, x)| {
                        let mut j = run_json(s, v);
                        j["round"] = json!(x.round);
                        j
                    }).collect::<Vec<_>>(),
                })
            }).collect::<Vec<_>>(),
        });
        write(
            path,
            &serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?,
        )?;
    }
    if let Some(path) = &args.plot {
        let mut series = Vec::new();
        for (i, (name, _)) in targets.iter().enumerate() {
            let (stats, v, r) = &runs[i][medians[i]];
            let failed: Vec<String> = runs[i]
                .iter()
                .filter(|x| !x.1.ok())
                .map(|x| {
                    format!(
                        "round {} {}",
                        x.2.round,
                        x.1.status.as_str().replace('_', " ")
                    )
                })
                .collect();
            series.push(plot::Series {
                failed: (!failed.is_empty()).then(|| failed.join(", ")),
                ..plot::Series::new(
                    format!(
                        "{name} (median round {} of {rounds}), {}",
                        r.round,
                        v.rate_text()
                    ),
                    report::points(&stats.total().corrected),
                )
            });
        }
        series.extend(clone_series(&setup.overlays));
        let opts = plot::Options {
            title: describe(args),
            subtitle: format!(
                "corrected latency of each target's median round by {} of {rounds}",
                by.name()
            ),
            banner: (!ok).then(|| format!("FAILED: {}", problems.join("; "))),
            linear: args.plot_linear,
        };
        write(path, &plot::svg(&opts, &series))?;
    }
    Ok(if ok {
        Outcome::Passed
    } else {
        Outcome::Failed(problems)
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = prepare(&args).and_then(|setup| {
        preflight(&args, &setup)?;
        if args.targets.is_empty() {
            single(&args, &setup)
        } else {
            compare(&args, &setup)
        }
    });
    match result {
        Ok(Outcome::Passed) => ExitCode::SUCCESS,
        Ok(Outcome::Failed(problems)) => {
            for p in problems {
                eprintln!("coreshard-bench: FAILED: {p}");
            }
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("coreshard-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(round: usize, achieved: f64, p99: f64) -> Round {
        Round {
            round,
            achieved,
            p50: p99 / 2.0,
            p99,
            p999: p99 * 2.0,
            max: p99 * 3.0,
            errors: 0,
            ok: true,
        }
    }

    #[test]
    fn the_median_round_is_one_whole_round() {
        let rounds = [
            round(1, 100.0, 9.0),
            round(2, 300.0, 1.0),
            round(3, 200.0, 5.0),
        ];
        assert_eq!(median_round(&rounds, MedianBy::P99), 2);
        assert_eq!(median_round(&rounds, MedianBy::Throughput), 2);
        let rounds = [
            round(1, 100.0, 1.0),
            round(2, 300.0, 5.0),
            round(3, 200.0, 9.0),
        ];
        assert_eq!(median_round(&rounds, MedianBy::P99), 1);
        assert_eq!(median_round(&rounds, MedianBy::Throughput), 2);
        // Even count: the lower middle.
        let rounds = [
            round(1, 4.0, 4.0),
            round(2, 1.0, 1.0),
            round(3, 3.0, 3.0),
            round(4, 2.0, 2.0),
        ];
        assert_eq!(median_round(&rounds, MedianBy::P99), 3);
        assert_eq!(median_round(&[round(1, 1.0, 1.0)], MedianBy::P99), 0);
    }

    #[test]
    fn compare_table_stays_aligned_with_long_names() {
        let rows = vec![
            ("coreshard".to_string(), round(2, 40_000.0, 0.05)),
            (
                "redis-7.2.4-on-the-other-machine".to_string(),
                Round {
                    ok: false,
                    ..round(1, 20_000.0, 0.1)
                },
            ),
        ];
        let t = compare_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        // Every column ends at the same offset on every line.
        let ends = |l: &str| -> Vec<usize> {
            let mut v = Vec::new();
            let b = l.as_bytes();
            for i in 0..b.len() {
                if b[i] != b' ' && (i + 1 == b.len() || b[i + 1] == b' ') {
                    v.push(i);
                }
            }
            v
        };
        let header = ends(lines[0]);
        // "p50 ms" etc. are two words: compare the last few columns by end offset.
        for l in &lines[1..] {
            assert_eq!(l.len(), lines[0].len(), "{t}");
            assert_eq!(ends(l).last(), header.last(), "{t}");
        }
        assert!(
            lines[2].contains("FAILED") && lines[2].contains("0.50x"),
            "{t}"
        );
        assert!(lines[2].contains("2.00x"), "{t}");
    }

    #[test]
    fn the_progress_line_says_where_the_run_is() {
        let mut p = Progress {
            elapsed: Duration::from_millis(400),
            warmup: Duration::from_secs(1),
            total: Some(Duration::from_secs(11)),
            rate: 38_512.0,
            offered: Some(50_000.0),
            p99_ns: None,
            done: 1234,
            errors: 0,
        };
        let l = progress_line(&p);
        assert!(l.contains("0.4/11.0 s (warm-up)"), "{l}");
        assert!(
            l.contains("achieved 38.5k/s of 50.0k/s offered (77%)"),
            "{l}"
        );
        assert!(l.contains("p99 -") && !l.contains("0.000"), "{l}");
        p.elapsed = Duration::from_secs(3);
        p.p99_ns = Some(2_700_000_000);
        p.offered = None;
        let l = progress_line(&p);
        assert!(!l.contains("warm-up") && l.contains("3.0/11.0 s"), "{l}");
        assert!(l.contains("38.5k/s") && !l.contains("offered"), "{l}");
        assert!(l.contains("p99 2.7 s"), "{l}");
    }

    #[test]
    fn bad_inputs_are_refused_before_any_connection() {
        let parse = |extra: &[&str]| {
            let mut v = vec!["coreshard-bench", "-p", "1"];
            v.extend_from_slice(extra);
            prepare(&Args::parse_from(v)).err().unwrap_or_default()
        };
        assert!(parse(&["--rate", "0"]).contains("--rate must be positive"));
        assert!(parse(&["--max-error-rate", "101"]).contains("percentage"));
        assert!(parse(&["--min-achieved=-1"]).contains("percentage"));
        assert!(parse(&["--rounds", "0"]).contains("--rounds"));
        assert!(parse(&["--duration", "0"]).contains("--duration"));
        assert!(parse(&["--plot-add", "a=b.hgrm"]).contains("--plot"));
        assert!(parse(&["--plot", "x.svg", "--plot-add", "nolabel"]).contains("LABEL=FILE"));
        assert!(parse(&["--json", "/nonexistent-dir/x.json"]).contains("does not exist"));
        assert!(parse(&["--target", "=127.0.0.1:1"]).contains("NAME=HOST:PORT"));
        assert!(parse(&["--pubsub", "-n", "10"]).contains("--duration"));
        assert_eq!(parse(&[]), "");
    }
}
