//! LATENCY LATEST / HISTORY / RESET / HISTOGRAM / DOCTOR / HELP, as Redis 7 answers them,
//! over every shard's latency monitor (`src/latency.rs`) and command histograms
//! (`src/stats.rs`).

use bytes::Bytes;
use coreshard_engine::{ConnId, Ctx};
use coreshard_protocol::Encoder;

use super::{unknown_subcommand_error, Args};
use crate::latency::{Series, SAMPLES};
use crate::server::ops::{Op, ShardReport};
use crate::server::reply::Agg;
use crate::server::Server;

/// What a LATENCY request wants from the merged events.
#[derive(Debug, Clone)]
pub enum Ask {
    /// LATENCY LATEST.
    Latest,
    /// LATENCY HISTORY event.
    History(String),
    /// LATENCY DOCTOR.
    Doctor,
}

const HELP: [&str; 17] = [
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
    "    If no commands are specified then all histograms are replied.",
    "HELP",
    "    Prints this help.",
];

pub fn latency(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let sub = args[1].to_ascii_lowercase();
    let events = |ask| Agg::Latency {
        ask,
        events: Vec::new(),
    };
    match (sub.as_slice(), args.len()) {
        (b"latest", 2) => s.broadcast(ctx, conn, || Op::Latency(None), events(Ask::Latest)),
        (b"history", 3) => {
            let name = String::from_utf8_lossy(&args[2]).into_owned();
            s.broadcast(ctx, conn, || Op::Latency(None), events(Ask::History(name)))
        }
        (b"doctor", 2) => s.broadcast(ctx, conn, || Op::Latency(None), events(Ask::Doctor)),
        (b"reset", _) => {
            let names: Vec<String> = args[2..]
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            s.broadcast(
                ctx,
                conn,
                || Op::Latency(Some(names.clone())),
                Agg::Unique {
                    names: Vec::new(),
                    seen: Default::default(),
                    count_only: true,
                },
            )
        }
        (b"histogram", _) => {
            let names = args[2..]
                .iter()
                .map(|a| Bytes::copy_from_slice(a))
                .collect();
            s.broadcast(
                ctx,
                conn,
                || Op::Report,
                Agg::LatencyHistogram {
                    names,
                    reports: Vec::new(),
                },
            )
        }
        (b"graph", 3) => s.error(
            ctx,
            conn,
            "ERR LATENCY GRAPH is not supported by coreshard: use LATENCY HISTORY",
        ),
        (b"help", 2) => s.reply(ctx, conn, |e| {
            e.array(HELP.len());
            HELP.iter().for_each(|l| e.simple(l));
        }),
        (b"latest" | b"history" | b"doctor" | b"graph" | b"help", _) => {
            let msg = format!(
                "ERR wrong number of arguments for 'latency|{}' command",
                String::from_utf8_lossy(&sub)
            );
            s.error(ctx, conn, &msg);
        }
        _ => {
            let msg = unknown_subcommand_error(&args[1], "latency");
            s.error(ctx, conn, &msg);
        }
    }
}

/// Encode LATEST / HISTORY / DOCTOR from the merged events.
pub fn encode_events(s: &Server, e: &mut Encoder<'_>, ask: Ask, events: &[(String, Series)]) {
    match ask {
        Ask::Latest => {
            e.array(events.len());
            for (name, series) in events {
                let (time, ms) = series.latest();
                e.array(4);
                e.bulk(name.as_bytes());
                e.int(time as i64);
                e.int(ms as i64);
                e.int(series.max as i64);
            }
        }
        Ask::History(name) => {
            let samples: Vec<(u64, u64)> = events
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                .map(|(_, s)| s.samples.iter().copied().collect())
                .unwrap_or_default();
            debug_assert!(samples.len() <= SAMPLES);
            e.array(samples.len());
            for (time, ms) in samples {
                e.array(2);
                e.int(time as i64);
                e.int(ms as i64);
            }
        }
        Ask::Doctor => {
            let rt = &s.config.runtime;
            let text = crate::latency::doctor(
                events,
                crate::latency::DoctorSettings {
                    threshold_ms: rt.latency_threshold(),
                    slowlog_slower_than: rt.slowlog_slower_than(),
                    slowlog_max_len: rt.slowlog_max_len(),
                    now: crate::server::ops::unix_ms() / 1000,
                },
            );
            e.verbatim(b"txt", text.as_bytes());
        }
    }
}

/// Encode LATENCY HISTOGRAM: a map of command -> {calls, histogram_usec: {usec -> count}}
/// (Redis 7's shape), for the named commands (repeats included, unknown or unused ones
/// left out, as Redis does) or every command that ran.
pub fn encode_histogram(e: &mut Encoder<'_>, names: &[Bytes], reports: &[ShardReport]) {
    let merged = super::admin::merged_cmdstats(reports);
    let with_data = |idx: usize| {
        merged
            .iter()
            .find(|(i, _)| *i == idx)
            .and_then(|(_, st)| st.hist.as_ref())
            .filter(|h| h.total() > 0)
    };
    let picked: Vec<(usize, &crate::stats::Histogram)> = if names.is_empty() {
        merged
            .iter()
            .filter_map(|(i, st)| st.hist.as_ref().filter(|h| h.total() > 0).map(|h| (*i, h)))
            .collect()
    } else {
        names
            .iter()
            .filter_map(|n| super::lookup_indexed(n))
            .filter_map(|(_, idx)| with_data(idx).map(|h| (idx, h)))
            .collect()
    };
    e.map(picked.len());
    for (idx, h) in picked {
        let name = super::by_index(idx).map_or("?", |s| s.name);
        e.bulk(name.as_bytes());
        e.map(2);
        e.bulk(b"calls");
        e.int(h.total() as i64);
        e.bulk(b"histogram_usec");
        let cdf = h.redis_cdf();
        e.map(cdf.len());
        for (usec, count) in cdf {
            e.int(usec as i64);
            e.int(count as i64);
        }
    }
}
