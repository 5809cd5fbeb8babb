//! The Prometheus text exposition (format 0.0.4) of every shard's figures: what INFO
//! shows, as counters and gauges with HELP and TYPE lines, a latency histogram per
//! command, and per-shard series with a `shard` label. Built from the same per-shard
//! reports INFO merges (`Op::Report`).

use std::fmt::Write;

use crate::server::ops::ShardReport;
use crate::server::Server;
use crate::stats::CmdStat;

/// Content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Histogram bucket bounds: powers of two nanoseconds from 2^10 (1.024 us) to 2^34
/// (17.2 s), where the command histograms (`src/stats.rs`) count exactly.
const BUCKET_EXP: std::ops::RangeInclusive<u32> = 10..=34;

/// A label value escaped as the text format wants (`\\`, `\"`, `\n`).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A number as the text format writes it (integers without a fraction).
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Builds the exposition one family at a time.
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", num(value));
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A family with one sample per shard.
    fn per_shard(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        reports: &[ShardReport],
        f: fn(&ShardReport) -> f64,
    ) {
        self.family(name, kind, help);
        for r in reports {
            let shard = r.shard.to_string();
            self.sample(name, &[("shard", &shard)], f(r));
        }
    }
}

/// The exposition text for these reports.
pub fn render(s: &Server, reports: &[ShardReport]) -> String {
    let mut reports = reports.to_vec();
    reports.sort_by_key(|r| r.shard);
    let reports = &reports[..];
    let sum = |f: fn(&ShardReport) -> u64| reports.iter().map(f).sum::<u64>() as f64;
    let mut o = Out {
        text: String::with_capacity(16 * 1024),
    };

    o.single(
        "coreshard_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        s.config.started.elapsed().as_secs_f64().floor(),
    );
    o.single(
        "coreshard_shards",
        "gauge",
        "Shards (threads) serving.",
        s.shards as f64,
    );
    o.single(
        "coreshard_connected_clients",
        "gauge",
        "Client connections open (metrics scrapes not included).",
        sum(|r| r.clients),
    );
    o.single(
        "coreshard_maxclients",
        "gauge",
        "Most simultaneous clients.",
        s.config.maxclients as f64,
    );
    o.single(
        "coreshard_blocked_clients",
        "gauge",
        "Clients blocked in a blocking pop.",
        sum(|r| r.blocked_clients),
    );
    o.single(
        "coreshard_connections_received_total",
        "counter",
        "Connections accepted.",
        sum(|r| r.accepted),
    );
    o.single(
        "coreshard_rejected_connections_total",
        "counter",
        "Connections refused over maxclients.",
        sum(|r| r.rejected),
    );
    o.single(
        "coreshard_commands_processed_total",
        "counter",
        "Commands run.",
        sum(|r| r.commands),
    );
    o.single(
        "coreshard_net_input_bytes_total",
        "counter",
        "Bytes received from clients.",
        sum(|r| r.bytes_in),
    );
    o.single(
        "coreshard_net_output_bytes_total",
        "counter",
        "Bytes sent to clients.",
        sum(|r| r.bytes_out),
    );
    o.single(
        "coreshard_keyspace_hits_total",
        "counter",
        "Reads that found their key.",
        sum(|r| r.hits),
    );
    o.single(
        "coreshard_keyspace_misses_total",
        "counter",
        "Reads that did not find their key.",
        sum(|r| r.misses),
    );
    o.single(
        "coreshard_expired_keys_total",
        "counter",
        "Keys removed by expiry.",
        sum(|r| r.expired),
    );
    o.single(
        "coreshard_evicted_keys_total",
        "counter",
        "Keys evicted under maxmemory.",
        sum(|r| r.evicted),
    );
    o.single("coreshard_keys", "gauge", "Keys held.", sum(|r| r.keys));
    o.single(
        "coreshard_expires",
        "gauge",
        "Keys with a time to live.",
        sum(|r| r.expires),
    );
    o.single(
        "coreshard_used_memory_bytes",
        "gauge",
        "The keyspace's memory estimate (INFO used_memory).",
        sum(|r| r.used_memory),
    );
    o.single(
        "coreshard_used_memory_rss_bytes",
        "gauge",
        "Resident set size of the process.",
        crate::commands::admin::rss_bytes() as f64,
    );
    o.single(
        "coreshard_maxmemory_bytes",
        "gauge",
        "The memory limit (0: none).",
        s.config.memory.maxmemory() as f64,
    );
    o.single(
        "coreshard_error_replies_total",
        "counter",
        "Error replies sent.",
        sum(|r| r.error_replies),
    );

    let mut errors = Vec::new();
    for r in reports {
        crate::stats::merge_errors(&mut errors, &r.errors);
    }
    o.family(
        "coreshard_errors_total",
        "counter",
        "Error replies by error code (INFO errorstats).",
    );
    for (code, n) in &errors {
        o.sample("coreshard_errors_total", &[("code", code)], *n as f64);
    }

    // Per command.
    let cmds: Vec<(&'static crate::commands::Spec, CmdStat)> =
        crate::commands::admin::merged_cmdstats(reports)
            .into_iter()
            .filter_map(|(i, st)| crate::commands::by_index(i).map(|spec| (spec, st)))
            .collect();
    let per_cmd = |o: &mut Out, name: &str, help: &str, f: fn(&CmdStat) -> f64| {
        o.family(name, "counter", help);
        for (spec, st) in &cmds {
            o.sample(name, &[("cmd", spec.name)], f(st));
        }
    };
    per_cmd(
        &mut o,
        "coreshard_command_calls_total",
        "Calls of each command that ran (INFO commandstats calls).",
        |st| st.calls as f64,
    );
    per_cmd(
        &mut o,
        "coreshard_command_duration_seconds_total",
        "Time spent in each command (INFO commandstats usec, in seconds).",
        |st| st.nanos as f64 / 1e9,
    );
    per_cmd(
        &mut o,
        "coreshard_command_failed_calls_total",
        "Calls that ran and answered an error (INFO commandstats failed_calls).",
        |st| st.failed as f64,
    );
    per_cmd(
        &mut o,
        "coreshard_command_rejected_calls_total",
        "Calls refused before running (INFO commandstats rejected_calls).",
        |st| st.rejected as f64,
    );

    let name = "coreshard_command_latency_seconds";
    o.family(
        name,
        "histogram",
        "Latency of each command (label group: its command family).",
    );
    let bounds: Vec<(u64, String)> = BUCKET_EXP
        .map(|e| (1u64 << e, num((1u64 << e) as f64 / 1e9)))
        .collect();
    for (spec, st) in &cmds {
        let Some(h) = st.hist.as_ref().filter(|h| h.total() > 0) else {
            continue;
        };
        let (cmd, group) = (("cmd", spec.name), ("group", spec.group));
        for (ns, le) in &bounds {
            o.sample(
                &format!("{name}_bucket"),
                &[cmd, group, ("le", le)],
                h.count_below(*ns) as f64,
            );
        }
        o.sample(
            &format!("{name}_bucket"),
            &[cmd, group, ("le", "+Inf")],
            h.total() as f64,
        );
        o.sample(&format!("{name}_sum"), &[cmd, group], st.nanos as f64 / 1e9);
        o.sample(&format!("{name}_count"), &[cmd, group], h.total() as f64);
    }

    // Per shard.
    let cpu = "coreshard_shard_cpu_seconds_total";
    o.family(cpu, "counter", "CPU time of each shard thread, by mode.");
    for r in reports {
        let shard = r.shard.to_string();
        o.sample(
            cpu,
            &[("shard", &shard), ("mode", "user")],
            r.cpu_user_us as f64 / 1e6,
        );
        o.sample(
            cpu,
            &[("shard", &shard), ("mode", "system")],
            r.cpu_sys_us as f64 / 1e6,
        );
    }
    o.per_shard(
        "coreshard_shard_connections",
        "gauge",
        "Client connections open on each shard.",
        reports,
        |r| r.clients as f64,
    );
    o.per_shard(
        "coreshard_shard_commands_processed_total",
        "counter",
        "Commands run by each shard's connections.",
        reports,
        |r| r.commands as f64,
    );
    o.per_shard(
        "coreshard_shard_io_uring_enters_total",
        "counter",
        "io_uring_enter calls of each shard.",
        reports,
        |r| r.enters as f64,
    );
    o.per_shard(
        "coreshard_shard_completions_total",
        "counter",
        "io_uring completions each shard handled.",
        reports,
        |r| r.completions as f64,
    );
    o.per_shard(
        "coreshard_shard_mailbox_messages_total",
        "counter",
        "Message batches each shard received from shards.",
        reports,
        |r| r.messages_in as f64,
    );
    o.per_shard(
        "coreshard_shard_mailbox_backlog",
        "gauge",
        "Message batches each shard has waiting in overflow queues.",
        reports,
        |r| r.mail_backlog as f64,
    );
    o.per_shard(
        "coreshard_shard_expiry_backlog",
        "gauge",
        "1 while a shard still has due keys to expire.",
        reports,
        |r| r.expiry_backlog as f64,
    );
    o.per_shard(
        "coreshard_shard_keys",
        "gauge",
        "Keys each shard holds.",
        reports,
        |r| r.keys as f64,
    );
    o.per_shard(
        "coreshard_shard_expires",
        "gauge",
        "Keys with a time to live on each shard.",
        reports,
        |r| r.expires as f64,
    );
    o.per_shard(
        "coreshard_shard_used_memory_bytes",
        "gauge",
        "Each shard's memory estimate.",
        reports,
        |r| r.used_memory as f64,
    );
    o.text
}

/// The whole HTTP response for a scrape.
pub fn http_response(s: &Server, reports: &[ShardReport]) -> Vec<u8> {
    let body = render(s, reports);
    crate::server::http::response("200 OK", "", CONTENT_TYPE, body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_numbers() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num((1u64 << 10) as f64 / 1e9), "0.000001024");
    }
}
