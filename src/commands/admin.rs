//! COMMAND, CONFIG, INFO, DBSIZE, FLUSHALL/FLUSHDB.

use crate::pubsub::Ns;
use coreshard_engine::{ConnId, Ctx};
use coreshard_protocol::Encoder;

use super::{all_commands, unknown_subcommand_error, Args, Spec};
use crate::server::ops::{Op, OpResult, ShardReport};
use crate::server::reply::Agg;
use crate::server::Server;

fn encode_command_info(e: &mut Encoder<'_>, spec: &Spec) {
    e.array(10);
    e.bulk(spec.name.as_bytes());
    e.int(i64::from(spec.arity));
    e.set(spec.flags.len());
    for f in spec.flags {
        e.simple(f);
    }
    e.int(i64::from(spec.first_key));
    e.int(i64::from(spec.last_key));
    e.int(i64::from(spec.step));
    e.set(1);
    // ACL categories are named like the groups, except sorted sets ("@sortedset").
    let category = match spec.group {
        "sorted-set" => "sortedset",
        g => g,
    };
    e.simple(&format!("@{category}"));
    e.set(0);
    e.array(0);
    e.array(0);
}

fn encode_command_docs(e: &mut Encoder<'_>, spec: &Spec) {
    e.bulk(spec.name.as_bytes());
    e.map(3);
    e.bulk(b"summary");
    e.bulk(spec.summary.as_bytes());
    e.bulk(b"since");
    e.bulk(spec.since.as_bytes());
    e.bulk(b"group");
    e.bulk(spec.group.as_bytes());
}

pub fn command(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    if args.len() == 1 {
        return s.reply(ctx, conn, |e| {
            e.array(all_commands().count());
            all_commands().for_each(|c| encode_command_info(e, c));
        });
    }
    let sub = args[1].to_ascii_lowercase();
    match sub.as_slice() {
        b"count" if args.len() == 2 => s.reply(ctx, conn, |e| e.int(all_commands().count() as i64)),
        b"list" if args.len() == 2 => s.reply(ctx, conn, |e| {
            e.array(all_commands().count());
            all_commands().for_each(|c| e.bulk(c.name.as_bytes()));
        }),
        b"info" => {
            let wanted: Vec<Option<&Spec>> = if args.len() == 2 {
                all_commands().map(Some).collect()
            } else {
                args[2..].iter().map(|n| super::lookup(n)).collect()
            };
            s.reply(ctx, conn, |e| {
                e.array(wanted.len());
                for w in &wanted {
                    match w {
                        Some(spec) => encode_command_info(e, spec),
                        None => e.null_array(),
                    }
                }
            });
        }
        b"docs" => {
            let wanted: Vec<&Spec> = if args.len() == 2 {
                all_commands().collect()
            } else {
                args[2..].iter().filter_map(|n| super::lookup(n)).collect()
            };
            s.reply(ctx, conn, |e| {
                e.map(wanted.len());
                wanted.iter().for_each(|spec| encode_command_docs(e, spec));
            });
        }
        b"count" | b"list" => {
            let msg = format!(
                "ERR wrong number of arguments for 'command|{}' command",
                String::from_utf8_lossy(&sub)
            );
            s.error(ctx, conn, &msg);
        }
        _ => {
            let msg = unknown_subcommand_error(&args[1], "command");
            s.error(ctx, conn, &msg);
        }
    }
}

/// The sections of `INFO` / `INFO default`, in Redis 7's order.
const DEFAULT_SECTIONS: [&str; 10] = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "errorstats",
    "cluster",
    "keyspace",
];

/// `INFO all` (and `everything`: no modules here) adds these to the default ones.
const MORE_SECTIONS: [&str; 3] = ["commandstats", "latencystats", "shards"];

/// Every INFO section, in the order Redis prints them.
const SECTION_ORDER: [&str; 13] = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "commandstats",
    "errorstats",
    "latencystats",
    "cluster",
    "keyspace",
    "shards",
];

/// The sections an INFO request names, in the order to print them (Redis 7: several
/// sections, `all`, `everything`, `default`, case-insensitive, duplicates once).
fn info_sections(args: Args) -> Vec<String> {
    let mut wanted: Vec<String> = Vec::new();
    // Only known sections are kept (Redis ignores the others), so the list stays short
    // however many arguments a client sends.
    let add = |name: &str, wanted: &mut Vec<String>| {
        if SECTION_ORDER.contains(&name) && !wanted.iter().any(|w| w == name) {
            wanted.push(name.to_string());
        }
    };
    if args.len() == 1 {
        DEFAULT_SECTIONS.iter().for_each(|n| add(n, &mut wanted));
    }
    for a in &args[1..] {
        let name = String::from_utf8_lossy(a).to_ascii_lowercase();
        match name.as_str() {
            "default" => DEFAULT_SECTIONS.iter().for_each(|n| add(n, &mut wanted)),
            "all" | "everything" => DEFAULT_SECTIONS
                .iter()
                .chain(MORE_SECTIONS.iter())
                .for_each(|n| add(n, &mut wanted)),
            other => add(other, &mut wanted),
        }
    }
    // Print in the canonical order, as Redis does, whatever order they were asked in.
    SECTION_ORDER
        .iter()
        .filter(|o| wanted.iter().any(|w| w == *o))
        .map(|o| o.to_string())
        .collect()
}

pub fn info(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let sections = info_sections(args);
    s.broadcast(
        ctx,
        conn,
        || Op::Report,
        Agg::Info {
            sections,
            reports: Vec::new(),
        },
    );
}

pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|t| {
            t.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// INFO persistence: Redis's field names where they fit, plus the WAL's own figures.
fn persistence_info(s: &Server) -> String {
    use crate::persist::snapshot;
    use std::sync::atomic::Ordering::Relaxed;
    let in_progress = u8::from(snapshot::IN_PROGRESS.load(Relaxed));
    let last_save = snapshot::LAST_SAVE.load(Relaxed);
    let mut out = format!(
        "loading:0\r\nrdb_bgsave_in_progress:{in_progress}\r\nrdb_last_save_time:{last_save}\r\nrdb_saves:{}\r\nrdb_last_bgsave_status:{}\r\n",
        snapshot::COMPLETED.load(Relaxed),
        if snapshot::last_ok() { "ok" } else { "err" },
    );
    match &s.wal {
        None => out.push_str("aof_enabled:0\r\n"),
        Some(wal) => {
            let st = wal.stats();
            let (size, base) = snapshot::size_and_base(wal.log_bytes());
            // The last write's status (Redis's meaning): ok again once the log writes again;
            // `wal_last_error` keeps the last error's text.
            let status = if s.log_error().is_some() { "err" } else { "ok" };
            out.push_str(&format!(
                "aof_enabled:1\r\naof_rewrite_in_progress:{in_progress}\r\naof_last_write_status:{status}\r\naof_current_size:{}\r\naof_base_size:{}\r\naof_fsync:{}\r\nwal_batches:{}\r\nwal_records:{}\r\nwal_bytes:{}\r\nwal_fsyncs:{}\r\nwal_records_per_batch:{:.1}\r\nwal_fsync_p50_us:{}\r\nwal_fsync_p99_us:{}\r\nwal_last_error:{}\r\n",
                size,
                base,
                s.config.runtime.appendfsync(),
                st.batches,
                st.records,
                st.bytes,
                st.fsyncs,
                st.records as f64 / st.batches.max(1) as f64,
                st.fsync_p50_us,
                st.fsync_p99_us,
                st.last_error.unwrap_or_default().replace(['\r', '\n'], " "),
            ));
        }
    }
    out
}

/// Seconds with microseconds, as Redis prints CPU times.
fn secs(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// INFO cpu: the process's CPU time (Redis's fields) and each shard thread's.
fn cpu_info(reports: &[ShardReport]) -> String {
    let (user, sys) = crate::server::ops::process_cpu_us();
    let mut out = format!(
        "used_cpu_sys:{}\r\nused_cpu_user:{}\r\nused_cpu_sys_children:0.000000\r\nused_cpu_user_children:0.000000\r\n",
        secs(sys),
        secs(user)
    );
    for r in reports {
        out.push_str(&format!(
            "used_cpu_sys_shard_{}:{}\r\nused_cpu_user_shard_{}:{}\r\n",
            r.shard,
            secs(r.cpu_sys_us),
            r.shard,
            secs(r.cpu_user_us)
        ));
    }
    out
}

/// Every shard's command statistics summed, by command index (in command table order).
pub(crate) fn merged_cmdstats(reports: &[ShardReport]) -> Vec<(usize, crate::stats::CmdStat)> {
    let mut all: Vec<(usize, crate::stats::CmdStat)> = Vec::new();
    for r in reports {
        for (idx, st) in &r.cmdstats {
            match all.iter_mut().find(|(i, _)| i == idx) {
                Some((_, m)) => m.merge(st),
                None => all.push((*idx, st.clone())),
            }
        }
    }
    all.sort_by_key(|(i, _)| *i);
    all
}

/// INFO commandstats, as Redis 7 prints it.
fn commandstats_info(reports: &[ShardReport]) -> String {
    let mut out = String::new();
    for (idx, st) in merged_cmdstats(reports) {
        let Some(spec) = super::by_index(idx) else {
            continue;
        };
        let usec = st.nanos / 1000;
        let per_call = if st.calls > 0 {
            st.nanos as f64 / 1000.0 / st.calls as f64
        } else {
            0.0
        };
        out.push_str(&format!(
            "cmdstat_{}:calls={},usec={usec},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
            spec.name, st.calls, st.rejected, st.failed
        ));
    }
    out
}

/// INFO latencystats: percentiles (`latency-tracking-info-percentiles`) of each
/// command's latency histogram, merged across shards.
fn latencystats_info(s: &Server, reports: &[ShardReport]) -> String {
    let percentiles = s.config.runtime.percentiles();
    let mut out = String::new();
    for (idx, st) in merged_cmdstats(reports) {
        let (Some(spec), Some(h)) = (super::by_index(idx), st.hist.as_ref()) else {
            continue;
        };
        if h.total() == 0 {
            continue;
        }
        let values: Vec<String> = percentiles
            .iter()
            .map(|&p| {
                format!(
                    "{}={:.3}",
                    crate::stats::percentile_label(p),
                    h.percentile(p) as f64 / 1000.0
                )
            })
            .collect();
        out.push_str(&format!(
            "latency_percentiles_usec_{}:{}\r\n",
            spec.name,
            values.join(",")
        ));
    }
    out
}

/// INFO errorstats: error replies by code, summed across shards.
fn errorstats_info(reports: &[ShardReport]) -> String {
    let mut all = Vec::new();
    for r in reports {
        crate::stats::merge_errors(&mut all, &r.errors);
    }
    all.iter()
        .map(|(code, n)| format!("errorstat_{code}:count={n}\r\n"))
        .collect()
}

/// INFO shards (coreshard's own): one line per shard.
fn shards_info(reports: &[ShardReport]) -> String {
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!(
            "shard{}:connections={},commands={},io_uring_enters={},completions={},completions_per_enter={:.2},mailbox_messages={},mailbox_backlog={},expiry_backlog={},keys={},expires={},used_memory={},used_cpu_sys={},used_cpu_user={}\r\n",
            r.shard,
            r.clients,
            r.commands,
            r.enters,
            r.completions,
            r.completions as f64 / r.enters.max(1) as f64,
            r.messages_in,
            r.mail_backlog,
            r.expiry_backlog,
            r.keys,
            r.expires,
            r.used_memory,
            secs(r.cpu_sys_us),
            secs(r.cpu_user_us),
        ));
    }
    out
}

/// INFO text from every shard's counters.
pub fn format_info(s: &Server, sections: &[String], reports: &[ShardReport]) -> String {
    let mut reports = reports.to_vec();
    reports.sort_by_key(|r| r.shard);
    let reports = &reports[..];
    let sum = |f: fn(&ShardReport) -> u64| reports.iter().map(f).sum::<u64>();
    let uptime = s.config.started.elapsed().as_secs();
    let mut out = String::new();
    let mut seen = Vec::new();
    for section in sections {
        if seen.contains(&section) {
            continue;
        }
        seen.push(section);
        let body = match section.as_str() {
            "server" => format!(
                "redis_version:{}\r\ncoreshard_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nmultiplexing_api:io_uring\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nshards:{}\r\n",
                super::connection::REDIS_COMPAT_VERSION,
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH,
                std::process::id(),
                s.config.listen.port(),
                uptime,
                uptime / 86400,
                s.shards,
            ),
            "clients" => format!(
                "connected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\ntotal_blocking_keys:{}\r\nblocking_waits_registered:{}\r\n",
                sum(|r| r.clients),
                s.config.maxclients,
                sum(|r| r.blocked_clients),
                sum(|r| r.blocking_keys),
                sum(|r| r.waiters),
            ),
            "memory" => crate::evict::info_memory(
                &s.config.memory,
                sum(|r| r.used_memory),
                rss_bytes(),
                sum(|r| r.keyspace_bytes),
            ),
            "stats" => format!(
                "total_connections_received:{}\r\ntotal_commands_processed:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\npubsubshard_channels:{}\r\nclient_output_buffer_limit_disconnections:{}\r\nrecv_buffer_exhausted:{}\r\nzero_copy_sends:{}\r\nzero_copy_sends_copied:{}\r\ntotal_error_replies:{}\r\n",
                sum(|r| r.accepted),
                sum(|r| r.commands),
                sum(|r| r.bytes_in),
                sum(|r| r.bytes_out),
                sum(|r| r.rejected),
                sum(|r| r.expired),
                sum(|r| r.evicted),
                sum(|r| r.hits),
                sum(|r| r.misses),
                // Distinct names over all shards (one subscribed on two shards counts once).
                crate::pubsub::distinct(Ns::Channel),
                crate::pubsub::distinct(Ns::Pattern),
                crate::pubsub::distinct(Ns::Shard),
                sum(|r| r.output_limit_disconnections),
                sum(|r| r.recv_buffer_exhausted),
                sum(|r| r.zc_sends),
                sum(|r| r.zc_copied),
                sum(|r| r.error_replies),
            ),
            "persistence" => persistence_info(s),
            "replication" => "role:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\nmaster_repl_offset:0\r\nrepl_backlog_active:0\r\n".to_string(),
            "cluster" => "cluster_enabled:0\r\n".to_string(),
            "cpu" => cpu_info(reports),
            "commandstats" => commandstats_info(reports),
            "errorstats" => errorstats_info(reports),
            "latencystats" => latencystats_info(s, reports),
            "shards" => shards_info(reports),
            "keyspace" => {
                let keys = sum(|r| r.keys);
                if keys > 0 {
                    format!("db0:keys={keys},expires={},avg_ttl=0\r\n", sum(|r| r.expires))
                } else {
                    String::new()
                }
            }
            _ => continue,
        };
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let mut title = section.clone();
        if let Some(first) = title.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        out.push_str(&format!("# {title}\r\n{body}"));
    }
    out
}

pub fn dbsize(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, _args: Args) {
    s.broadcast(ctx, conn, || Op::DbSize, Agg::Sum(0));
}

pub fn flush(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, args: Args) {
    let ok = match args.len() {
        1 => true,
        2 => args[1].eq_ignore_ascii_case(b"ASYNC") || args[1].eq_ignore_ascii_case(b"SYNC"),
        _ => false,
    };
    if !ok {
        return s.error(ctx, conn, "ERR syntax error");
    }
    if s.shards == 1 {
        s.broadcast(ctx, conn, || Op::Flush, Agg::AllOk);
    } else {
        // Every shard at once, on the transaction locks: no transaction sees it half done.
        s.begin_txn(ctx, conn, crate::server::txn::TxnKind::Flush);
    }
}

/// TIME's reply: Unix seconds and microseconds, as bulk strings.
pub fn time_reply() -> OpResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    OpResult::Reply(coreshard_protocol::Value::Array(vec![
        coreshard_protocol::Value::Bulk(bytes::Bytes::from(now.as_secs().to_string())),
        coreshard_protocol::Value::Bulk(bytes::Bytes::from(now.subsec_micros().to_string())),
    ]))
}

pub fn time(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, _args: Args) {
    s.reply_result(ctx, conn, &time_reply());
}

/// ROLE: this server is a master with no replicas (there is no replication), replication
/// offset 0, which is what Sentinel-aware clients check on connect.
pub fn role(s: &mut Server, ctx: &mut Ctx<Server>, conn: ConnId, _args: Args) {
    s.reply(ctx, conn, |e| {
        e.array(3);
        e.bulk(b"master");
        e.int(0);
        e.array(0);
    });
}
