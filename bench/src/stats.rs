//! Latency recording: per command kind, a histogram measured from the intended send time
//! (coordinated-omission corrected) and one from the actual send time (service time).

use hdrhistogram::Histogram;
use serde::Serialize;

/// Histograms record nanoseconds from 1 µs to 100 s with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3)
        .expect("static histogram bounds are valid")
}

/// One command kind's results.
#[derive(Debug, Clone)]
pub struct KindStats {
    /// Command name.
    pub name: String,
    /// Latency from the intended send time.
    pub corrected: Histogram<u64>,
    /// Latency from the actual send time.
    pub service: Histogram<u64>,
    /// Replies that were not errors.
    pub ok: u64,
    /// Error replies.
    pub errors: u64,
    /// Replies received inside the measured window (whenever their requests were due).
    pub received: u64,
}

impl KindStats {
    /// Empty stats for `name`.
    pub fn new(name: &str) -> Self {
        KindStats {
            name: name.to_string(),
            corrected: new_histogram(),
            service: new_histogram(),
            ok: 0,
            errors: 0,
            received: 0,
        }
    }

    /// Record one reply.
    pub fn record(&mut self, corrected_ns: u64, service_ns: u64, error: bool) {
        let _ = self
            .corrected
            .record(corrected_ns.clamp(1_000, 100_000_000_000));
        let _ = self
            .service
            .record(service_ns.clamp(1_000, 100_000_000_000));
        if error {
            self.errors += 1;
        } else {
            self.ok += 1;
        }
    }

    /// Fold `other` (same kind) into this.
    pub fn merge(&mut self, other: &KindStats) {
        let _ = self.corrected.add(&other.corrected);
        let _ = self.service.add(&other.service);
        self.ok += other.ok;
        self.errors += other.errors;
        self.received += other.received;
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    /// Per command kind.
    pub kinds: Vec<KindStats>,
    /// Seconds of the measured window.
    pub seconds: f64,
    /// Connections that closed during the run and were reopened.
    pub reconnects: u64,
    /// Measured requests that never got a reply: lost with a closed connection, or still
    /// unanswered at the end of the drain. The verdict counts them as errors.
    pub lost_in_flight: u64,
    /// Replies (error replies included) that arrived inside the measured window, whenever
    /// their requests were due: the achieved rate is this over `seconds`.
    pub received_in_window: u64,
    /// Open loop: requests due in the window that were never sent because their
    /// connection was still waiting on earlier ones.
    pub unsent: u64,
    /// The first few distinct error replies, so errors are never hidden.
    pub error_samples: Vec<String>,
    /// Pub/sub: messages delivered to subscribers.
    pub delivered: u64,
    /// Pub/sub: messages published times subscribers, minus delivered.
    pub lost: u64,
    /// Pub/sub: subscribers the server disconnected.
    pub subscriber_disconnects: u64,
}

impl RunStats {
    /// Fold another shard's stats (same workload) into this.
    pub fn merge(&mut self, other: &RunStats) {
        if self.kinds.is_empty() {
            self.kinds = other.kinds.clone();
        } else {
            for (a, b) in self.kinds.iter_mut().zip(&other.kinds) {
                a.merge(b);
            }
        }
        self.seconds = self.seconds.max(other.seconds);
        self.reconnects += other.reconnects;
        self.lost_in_flight += other.lost_in_flight;
        self.received_in_window += other.received_in_window;
        self.unsent += other.unsent;
        for e in &other.error_samples {
            if self.error_samples.len() < 5 && !self.error_samples.contains(e) {
                self.error_samples.push(e.clone());
            }
        }
        self.delivered += other.delivered;
        self.lost += other.lost;
        self.subscriber_disconnects += other.subscriber_disconnects;
    }

    /// All kinds merged into one (for the overall line, hgrm files and plots).
    pub fn total(&self) -> KindStats {
        let mut t = KindStats::new("ALL");
        for k in &self.kinds {
            t.merge(k);
        }
        t
    }
}

/// One row of the summary table, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Command name.
    pub command: String,
    /// Replies received in the measured window, per second of it.
    pub ops_per_sec: f64,
    /// Replies to requests due in the measured window (the histogram's count).
    pub count: u64,
    /// Error replies.
    pub errors: u64,
    /// Percentiles in ms.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
    /// 99.99th.
    pub p9999: f64,
    /// Largest.
    pub max: f64,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Summarise `h` for `name` over `seconds`.
pub fn summarize(name: &str, h: &Histogram<u64>, errors: u64, seconds: f64) -> Summary {
    let q = |p: f64| ms(h.value_at_quantile(p));
    Summary {
        command: name.to_string(),
        ops_per_sec: if seconds > 0.0 {
            h.len() as f64 / seconds
        } else {
            0.0
        },
        count: h.len(),
        errors,
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        p999: q(0.999),
        p9999: q(0.9999),
        max: ms(h.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_summarize() {
        let mut a = KindStats::new("GET");
        let mut b = KindStats::new("GET");
        for i in 1..=99u64 {
            a.record(i * 1_000_000, 1_000_000, false);
        }
        b.record(500_000_000, 1_000_000, true);
        a.merge(&b);
        let s = summarize("GET", &a.corrected, a.errors, 10.0);
        assert_eq!(s.count, 100);
        assert_eq!(s.errors, 1);
        assert!((s.ops_per_sec - 10.0).abs() < 1e-9);
        assert!((s.p50 - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.max - 500.0).abs() < 0.5, "{s:?}");
        let service = summarize("GET", &a.service, 0, 10.0);
        assert!((service.p99 - 1.0).abs() < 0.01);
    }
}
