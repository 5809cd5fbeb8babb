//! The latency monitor (LATENCY LATEST / HISTORY / RESET / DOCTOR), as Redis 7 keeps it:
//! a command that takes at least `latency-monitor-threshold` milliseconds is a sample of
//! the event `command` (or `fast-command` for commands flagged fast). Each shard keeps its
//! own series, without atomics; LATENCY gathers every shard's and merges them.

use std::collections::VecDeque;

/// Samples an event keeps (Redis's `LATENCY_TS_LEN`).
pub const SAMPLES: usize = 160;

/// One event's samples: `(unix seconds, milliseconds)`, oldest first, at most one per
/// second (the largest), and the largest latency ever seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Series {
    /// Oldest first.
    pub samples: VecDeque<(u64, u64)>,
    /// The largest latency since the event was (re)created.
    pub max: u64,
}

impl Series {
    /// Add a sample: a second that already has one keeps the larger (Redis's rule).
    pub fn add(&mut self, time: u64, ms: u64) {
        self.max = self.max.max(ms);
        if let Some(last) = self.samples.back_mut() {
            if last.0 == time {
                last.1 = last.1.max(ms);
                return;
            }
        }
        self.samples.push_back((time, ms));
        if self.samples.len() > SAMPLES {
            self.samples.pop_front();
        }
    }

    /// Fold in another shard's series: samples of the same second keep the larger, the
    /// newest [`SAMPLES`] seconds are kept.
    pub fn merge(&mut self, other: &Series) {
        self.max = self.max.max(other.max);
        let mut all: Vec<(u64, u64)> = self
            .samples
            .iter()
            .chain(other.samples.iter())
            .copied()
            .collect();
        all.sort_unstable();
        let mut merged: VecDeque<(u64, u64)> = VecDeque::with_capacity(all.len());
        for (t, ms) in all {
            match merged.back_mut() {
                Some(last) if last.0 == t => last.1 = last.1.max(ms),
                _ => merged.push_back((t, ms)),
            }
        }
        while merged.len() > SAMPLES {
            merged.pop_front();
        }
        self.samples = merged;
    }

    /// The newest sample.
    pub fn latest(&self) -> (u64, u64) {
        self.samples.back().copied().unwrap_or((0, 0))
    }
}

/// One shard's events, in the order they first happened.
#[derive(Debug, Default)]
pub struct Monitor {
    events: Vec<(String, Series)>,
}

impl Monitor {
    /// Record `ms` for `event` at unix second `time`.
    pub fn add(&mut self, event: &str, time: u64, ms: u64) {
        match self.events.iter_mut().find(|(n, _)| n == event) {
            Some((_, s)) => s.add(time, ms),
            None => {
                let mut s = Series::default();
                s.add(time, ms);
                self.events.push((event.to_string(), s));
            }
        }
    }

    /// Every event with its series.
    pub fn events(&self) -> Vec<(String, Series)> {
        self.events.clone()
    }

    /// Forget the named events (all of them if `names` is empty); answers the names of
    /// those that existed.
    pub fn reset(&mut self, names: &[String]) -> Vec<String> {
        let mut gone = Vec::new();
        self.events.retain(|(n, _)| {
            let hit = names.is_empty() || names.iter().any(|w| w.eq_ignore_ascii_case(n));
            if hit {
                gone.push(n.clone());
            }
            !hit
        });
        gone
    }
}

/// Merge shards' events by name, in first-seen order.
pub fn merge_events(into: &mut Vec<(String, Series)>, from: Vec<(String, Series)>) {
    for (name, series) in from {
        match into.iter_mut().find(|(n, _)| *n == name) {
            Some((_, s)) => s.merge(&series),
            None => into.push((name, series)),
        }
    }
}

/// What LATENCY DOCTOR reads besides the events.
#[derive(Debug, Clone, Copy)]
pub struct DoctorSettings {
    /// `latency-monitor-threshold` (ms).
    pub threshold_ms: u64,
    /// `slowlog-log-slower-than` (us; negative: off).
    pub slowlog_slower_than: i64,
    /// `slowlog-max-len`.
    pub slowlog_max_len: usize,
    /// Unix seconds now.
    pub now: u64,
}

/// LATENCY DOCTOR's report: a short human summary in Redis's words (its texts for
/// monitoring off, nothing observed, the per-event line and the advice that applies here).
pub fn doctor(events: &[(String, Series)], set: DoctorSettings) -> String {
    if events.is_empty() {
        if set.threshold_ms == 0 {
            return "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable it. If we weren't in a deep space mission I'd suggest to take a look at https://redis.io/topics/latency-monitor.\n".to_string();
        }
        return "Dave, no latency spike was observed during the lifetime of this Redis instance, not in the slightest bit. I honestly think you ought to sit down calmly, take a stress pill, and think things over.\n".to_string();
    }
    let mut out = String::from(
        "Dave, I have observed latency spikes in this Redis instance. You don't mind talking about it, do you Dave?\n\n",
    );
    for (i, (name, s)) in events.iter().enumerate() {
        let n = s.samples.len().max(1) as u64;
        let avg = s.samples.iter().map(|(_, ms)| ms).sum::<u64>() / n;
        let oldest = s.samples.front().map_or(set.now, |x| x.0);
        let period = set.now.saturating_sub(oldest).max(1) as f64 / n as f64;
        out.push_str(&format!(
            "{}. {name}: {} latency spikes (average {avg}ms, mean deviation {}ms, period {period:.2} sec). Worst all time event {}ms.\n",
            i + 1,
            s.samples.len(),
            mean_deviation(s, avg),
            s.max,
        ));
    }
    out.push_str("\nI have a few advices for you:\n\n");
    if set.slowlog_slower_than < 0 || set.slowlog_max_len == 0 {
        out.push_str("- There is no Slow Log configured: enable it with 'CONFIG SET slowlog-log-slower-than <microseconds>' and 'CONFIG SET slowlog-max-len <entries>' to see which commands are slow.\n");
    } else if set.slowlog_slower_than as u64 / 1000 > set.threshold_ms {
        out.push_str(&format!(
            "- Your current Slow Log configuration only logs events that are slower than your configured latency monitor threshold. Please use 'CONFIG SET slowlog-log-slower-than {}'.\n",
            set.threshold_ms * 1000
        ));
    }
    let has = |e: &str| events.iter().any(|(n, _)| n == e);
    if has("command") {
        out.push_str("- Check your Slow Log to understand what are the commands you are running which are too slow to execute. Please check https://redis.io/commands/slowlog for more information.\n");
        out.push_str("- Deleting, expiring or evicting (because of maxmemory policy) large objects is a blocking operation. If you have very large objects that are often deleted, expired, or evicted, try to fragment those objects into multiple smaller objects.\n");
    }
    if has("fast-command") {
        out.push_str("- The system is slow to execute Redis code paths not containing system calls. This usually means the system does not provide Redis CPU time to run for long periods. You should try to:\n  1) Lower the system load.\n  2) Use a computer / VM just for Redis if you are running other software in the same system.\n  3) Check if you have a \"noisy neighbour\" problem.\n  4) Check with 'redis-cli --intrinsic-latency 100' what is the intrinsic latency in your system.\n");
        out.push_str("- coreshard runs one thread per shard: a shard pinned (--pin, --cores) to a core that another busy process shares cannot move away from it.\n");
    }
    out
}

fn mean_deviation(s: &Series, avg: u64) -> u64 {
    let n = s.samples.len().max(1) as u64;
    s.samples
        .iter()
        .map(|(_, ms)| ms.abs_diff(avg))
        .sum::<u64>()
        / n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_per_second_the_largest_and_160_kept() {
        let mut s = Series::default();
        s.add(10, 5);
        s.add(10, 3);
        s.add(10, 9);
        assert_eq!(s.samples, VecDeque::from(vec![(10, 9)]));
        for t in 11..400 {
            s.add(t, 1);
        }
        assert_eq!(s.samples.len(), SAMPLES);
        assert_eq!(s.samples.front(), Some(&(400 - SAMPLES as u64, 1)));
        assert_eq!(s.max, 9);
        assert_eq!(s.latest(), (399, 1));
    }

    #[test]
    fn shards_merge_by_second() {
        let mut a = Series::default();
        a.add(1, 4);
        a.add(3, 2);
        let mut b = Series::default();
        b.add(1, 7);
        b.add(2, 1);
        a.merge(&b);
        assert_eq!(a.samples, VecDeque::from(vec![(1, 7), (2, 1), (3, 2)]));
        assert_eq!(a.max, 7);
        let mut all = vec![("command".to_string(), a.clone())];
        merge_events(&mut all, vec![("fast-command".to_string(), b.clone())]);
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn reset_names_what_existed() {
        let mut m = Monitor::default();
        m.add("command", 1, 5);
        m.add("fast-command", 1, 5);
        assert_eq!(m.reset(&["command".into(), "nope".into()]), vec!["command"]);
        assert_eq!(m.events().len(), 1);
        assert_eq!(m.reset(&[]), vec!["fast-command"]);
        assert!(m.events().is_empty());
    }

    #[test]
    fn doctor_texts() {
        let set = |threshold_ms| DoctorSettings {
            threshold_ms,
            slowlog_slower_than: 10_000,
            slowlog_max_len: 128,
            now: 5,
        };
        assert!(doctor(&[], set(0)).starts_with("I'm sorry, Dave"));
        assert!(doctor(&[], set(5)).starts_with("Dave, no latency spike"));
        let mut m = Monitor::default();
        m.add("command", 1, 5);
        m.add("command", 3, 7);
        let text = doctor(&m.events(), set(1));
        assert!(text.contains("period 2.00 sec"), "{text}");
        assert!(
            text.contains("'CONFIG SET slowlog-log-slower-than 1000'"),
            "{text}"
        );
        assert!(
            text.contains("1. command: 2 latency spikes (average 6ms"),
            "{text}"
        );
        assert!(text.contains("Worst all time event 7ms"), "{text}");
    }
}
