//! Output: the summary table, JSON, and HdrHistogram percentile-distribution (.hgrm) files.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use hdrhistogram::Histogram;

use crate::stats::{summarize, KindStats, RunStats, Summary};

/// A kind's summary, with ops/s from the replies received in the window: under an
/// overloaded open loop, fewer of the requests due in the window are answered than
/// replies arrive (the rest answer an older backlog).
fn row(k: &KindStats, h: &Histogram<u64>, seconds: f64) -> Summary {
    let mut s = summarize(&k.name, h, k.errors, seconds);
    s.ops_per_sec = if seconds > 0.0 {
        k.received as f64 / seconds
    } else {
        0.0
    };
    s
}

/// Summary rows for a run: per command (corrected), all commands, and service time.
pub fn rows(stats: &RunStats) -> (Vec<Summary>, Vec<Summary>) {
    let mut corrected: Vec<Summary> = stats
        .kinds
        .iter()
        .filter(|k| !k.corrected.is_empty())
        .map(|k| row(k, &k.corrected, stats.seconds))
        .collect();
    let mut service: Vec<Summary> = stats
        .kinds
        .iter()
        .filter(|k| !k.service.is_empty())
        .map(|k| row(k, &k.service, stats.seconds))
        .collect();
    if stats
        .kinds
        .iter()
        .filter(|k| !k.corrected.is_empty())
        .count()
        > 1
    {
        let t = stats.total();
        corrected.push(row(&t, &t.corrected, stats.seconds));
        service.push(row(&t, &t.service, stats.seconds));
    }
    (corrected, service)
}

/// The table printed at the end of a run.
pub fn table(title: &str, rows: &[Summary]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{title}");
    let _ = writeln!(
        out,
        "{:<10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "command",
        "ops/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "p99.99ms",
        "max ms",
        "errors"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<10} {:>12.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9}",
            r.command, r.ops_per_sec, r.p50, r.p90, r.p99, r.p999, r.p9999, r.max, r.errors
        );
    }
    out
}

/// The standard HdrHistogram percentile distribution (as wrk2 and HdrHistogram's
/// `outputPercentileDistribution` write it), values in milliseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut count = 0u64;
    for v in h.iter_quantiles(5) {
        count += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:>14.2}", 1.0 / (1.0 - q))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:>12.3} {:>14.12} {:>10} {}",
            v.value_iterated_to() as f64 / 1e6,
            q,
            count,
            inv
        );
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1e6,
        h.stdev() / 1e6
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / 1e6,
        h.len()
    );
    let sub_buckets = (2.0 * 10f64.powi(i32::from(h.sigfig())))
        .log2()
        .ceil()
        .exp2() as u64;
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets
    );
    out
}

/// Read the (percentile, value ms) points back from an .hgrm file, to overlay earlier runs.
pub fn read_hgrm(path: &Path) -> io::Result<Vec<(f64, f64)>> {
    let text = std::fs::read_to_string(path)?;
    let points: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let value = cols.next()?.parse::<f64>().ok()?;
            let pct = cols.next()?.parse::<f64>().ok()?;
            Some((pct, value))
        })
        .collect();
    if points.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} has no percentile lines", path.display()),
        ));
    }
    Ok(points)
}

/// Points of a histogram for plotting.
pub fn points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    h.iter_quantiles(5)
        .map(|v| (v.quantile_iterated_to(), v.value_iterated_to() as f64 / 1e6))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn hgrm_round_trips_through_the_reader() {
        let mut h = new_histogram();
        for i in 1..=1000u64 {
            h.record(i * 10_000).unwrap();
        }
        let text = hgrm(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(
            text.contains("#[Max     =       10.002, Total count    =         1000]"),
            "{text}"
        );
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
        let dir = std::env::temp_dir().join(format!("hgrm-test-{}", std::process::id()));
        std::fs::write(&dir, &text).unwrap();
        let pts = read_hgrm(&dir).unwrap();
        std::fs::remove_file(&dir).ok();
        assert_eq!(pts.first().map(|p| p.0), Some(0.0));
        let (last_p, last_v) = *pts.last().unwrap();
        assert_eq!(last_p, 1.0);
        assert!((last_v - 10.002).abs() < 0.001);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }
}
