//! The verdict on a finished run: did it measure what was asked? A run with no replies,
//! too many errors, or an open loop that fell behind its schedule is reported as failed
//! (exit status 3), with the reason, in the table, the JSON and the plot.

use serde::Serialize;

use crate::stats::RunStats;

/// Limits a run must meet.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Largest acceptable share of failed requests (error replies and lost requests), 0..=1.
    pub max_error_rate: f64,
    /// Smallest acceptable achieved / offered rate for open-loop runs, 0..=1.
    pub min_achieved: f64,
}

/// Why a run failed; the first (most severe) problem names the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The run measured what was asked.
    Ok,
    /// No request (pub/sub: no message) was answered in the measured window.
    NoReplies,
    /// Error replies, lost requests or lost deliveries above `--max-error-rate`.
    Errors,
    /// Open loop: the achieved rate fell below `--min-achieved` of the offered rate.
    BelowOfferedRate,
}

impl Status {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NoReplies => "no_replies",
            Status::Errors => "errors",
            Status::BelowOfferedRate => "below_offered_rate",
        }
    }
}

/// The verdict on one run.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// `ok` or the most severe problem.
    pub status: Status,
    /// Every problem, as a sentence.
    pub problems: Vec<String>,
    /// Open loop: the requested rate (requests or messages per second).
    pub offered_rate: Option<f64>,
    /// Replies received inside the measured window, per second of it.
    pub achieved_rate: f64,
    /// Failed requests (error replies and lost requests) over all measured requests.
    pub error_rate: f64,
}

impl Verdict {
    /// Whether the run passed.
    pub fn ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// One line for the table and stderr.
    pub fn line(&self) -> String {
        if self.ok() {
            "status: ok".to_string()
        } else {
            format!(
                "status: FAILED ({}): {}",
                self.status.as_str(),
                self.problems.join("; ")
            )
        }
    }

    /// Achieved rate, with the offered one and the share when there is one.
    pub fn rate_text(&self) -> String {
        match self.offered_rate {
            Some(o) if o > 0.0 => format!(
                "achieved {} of {} offered ({:.1}%)",
                per_sec(self.achieved_rate),
                per_sec(o),
                100.0 * self.achieved_rate / o
            ),
            _ => format!("achieved {}", per_sec(self.achieved_rate)),
        }
    }
}

/// `38512/s`, `1.23M/s`: short rates for titles and legends.
pub fn per_sec(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M/s", r / 1e6)
    } else if r >= 1e4 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

/// Judge `stats`; `offered` is the open-loop rate, `pubsub` whether it was a pub/sub run.
pub fn judge(stats: &RunStats, offered: Option<f64>, pubsub: bool, t: Thresholds) -> Verdict {
    let achieved = if stats.seconds > 0.0 {
        stats.received_in_window as f64 / stats.seconds
    } else {
        0.0
    };
    let answered: u64 = if pubsub {
        stats.kinds.first().map_or(0, |k| k.corrected.len())
    } else {
        stats.kinds.iter().map(|k| k.corrected.len()).sum()
    };
    let error_replies: u64 = stats.kinds.iter().map(|k| k.errors).sum();
    let failed = error_replies + stats.lost_in_flight;
    let error_rate = if answered + stats.lost_in_flight > 0 {
        failed as f64 / (answered + stats.lost_in_flight) as f64
    } else {
        0.0
    };
    let mut problems = Vec::new();
    let mut status = Status::Ok;
    let mut fail = |s: Status, text: String, status: &mut Status| {
        if *status == Status::Ok {
            *status = s;
        }
        problems.push(text);
    };
    let what = if pubsub { "PUBLISH request" } else { "request" };
    if answered == 0 && stats.received_in_window > 0 {
        // Replies came, but all to requests due before the window: an open loop so far
        // behind that it was still working off the warm-up's backlog.
        fail(
            Status::BelowOfferedRate,
            format!(
                "no {what} due in the measured window was answered: all {} replies in it \
                 answered requests due earlier (a backlog from the warm-up)",
                stats.received_in_window
            ),
            &mut status,
        );
    } else if answered == 0 || (pubsub && stats.delivered == 0) {
        let mut text = if answered == 0 {
            format!(
                "no {what} was answered in the {:.1} s measured window",
                stats.seconds
            )
        } else {
            format!(
                "no message was delivered to a subscriber in {:.1} s",
                stats.seconds
            )
        };
        if stats.lost_in_flight > 0 {
            text.push_str(&format!(" ({} lost unanswered)", stats.lost_in_flight));
        }
        if let Some(e) = stats.error_samples.first() {
            text.push_str(&format!(" (first error: {e})"));
        }
        fail(Status::NoReplies, text, &mut status);
    }
    if failed > 0 && error_rate > t.max_error_rate {
        let mut text = format!(
            "{:.2}% of requests failed ({error_replies} error replies, {} lost unanswered; \
             --max-error-rate {}%)",
            100.0 * error_rate,
            stats.lost_in_flight,
            trim(100.0 * t.max_error_rate)
        );
        if let Some(e) = stats.error_samples.first() {
            text.push_str(&format!(", first: {e}"));
        }
        fail(Status::Errors, text, &mut status);
    }
    if pubsub {
        let expected = stats.delivered + stats.lost;
        if stats.lost > 0 && stats.lost as f64 > t.max_error_rate * expected as f64 {
            fail(
                Status::Errors,
                format!(
                    "{} of {expected} deliveries lost ({:.2}%; --max-error-rate {}%)",
                    stats.lost,
                    100.0 * stats.lost as f64 / expected as f64,
                    trim(100.0 * t.max_error_rate)
                ),
                &mut status,
            );
        }
    }
    if let Some(o) = offered.filter(|&o| o > 0.0) {
        if achieved < t.min_achieved * o {
            let mut text = format!(
                "open loop achieved {:.0}/s, {:.1}% of the offered {:.0}/s (--min-achieved {}%): \
                 the server or the client could not keep up, so latencies include a growing \
                 backlog",
                achieved,
                100.0 * achieved / o,
                o,
                trim(100.0 * t.min_achieved)
            );
            if stats.unsent > 0 {
                text.push_str(&format!(" ({} due requests never sent)", stats.unsent));
            }
            fail(Status::BelowOfferedRate, text, &mut status);
        }
    }
    Verdict {
        status,
        problems,
        offered_rate: offered,
        achieved_rate: achieved,
        error_rate,
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::KindStats;

    const T: Thresholds = Thresholds {
        max_error_rate: 0.001,
        min_achieved: 0.95,
    };

    fn run(replies: u64, errors: u64, received: u64, seconds: f64) -> RunStats {
        let mut k = KindStats::new("GET");
        for i in 0..replies {
            k.record(10_000, 10_000, i < errors);
        }
        RunStats {
            kinds: vec![k],
            seconds,
            received_in_window: received,
            ..RunStats::default()
        }
    }

    #[test]
    fn a_good_run_passes() {
        let v = judge(&run(10_000, 0, 10_000, 1.0), Some(10_000.0), false, T);
        assert!(v.ok(), "{v:?}");
        assert_eq!(v.achieved_rate, 10_000.0);
        assert_eq!(v.line(), "status: ok");
        // Closed loop: no offered rate, no rate check.
        assert!(judge(&run(10, 0, 10, 1.0), None, false, T).ok());
    }

    #[test]
    fn each_failure_is_named() {
        let v = judge(&RunStats::default(), None, false, T);
        assert_eq!(v.status, Status::NoReplies);
        assert!(v.problems[0].contains("no request was answered"), "{v:?}");

        let v = judge(&run(1000, 2, 1000, 1.0), None, false, T);
        assert_eq!(v.status, Status::Errors);
        assert!(v.problems[0].contains("0.20% of requests failed"), "{v:?}");
        // One in a thousand is at the limit, not over it.
        assert!(judge(&run(1000, 1, 1000, 1.0), None, false, T).ok());

        let mut lost = run(1000, 0, 1000, 1.0);
        lost.lost_in_flight = 50;
        assert_eq!(judge(&lost, None, false, T).status, Status::Errors);

        let mut behind = RunStats {
            kinds: vec![KindStats::new("GET")],
            received_in_window: 200,
            seconds: 1.0,
            ..RunStats::default()
        };
        behind.unsent = 800;
        let v = judge(&behind, Some(1000.0), false, T);
        assert_eq!(v.status, Status::BelowOfferedRate, "{v:?}");
        assert!(v.problems[0].contains("all 200 replies in it answered requests due earlier"));
        assert!(
            v.problems[1].contains("800 due requests never sent"),
            "{v:?}"
        );

        let v = judge(&run(770, 0, 770, 1.0), Some(1000.0), false, T);
        assert_eq!(v.status, Status::BelowOfferedRate);
        assert!(
            v.problems[0].contains("77.0% of the offered 1000/s"),
            "{v:?}"
        );
        assert!(v.rate_text().contains("(77.0%)"), "{}", v.rate_text());
        assert!(judge(&run(950, 0, 950, 1.0), Some(1000.0), false, T).ok());

        let mut ps = run(100, 0, 100, 1.0);
        ps.kinds.push(KindStats::new("DELIVERY"));
        assert_eq!(judge(&ps, Some(100.0), true, T).status, Status::NoReplies);
        ps.delivered = 90;
        ps.lost = 10;
        let v = judge(&ps, Some(100.0), true, T);
        assert_eq!(v.status, Status::Errors);
        assert!(v.problems[0].contains("10 of 100 deliveries lost"), "{v:?}");
    }
}
