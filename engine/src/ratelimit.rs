//! Rate-limited logging: a condition that can repeat thousands of times a second (e.g.
//! accept failing with EMFILE) is reported at most once per period, with a count of the
//! reports held back since the last one.

use std::time::{Duration, Instant};

/// Lets one report through per `period` and counts the rest.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter that lets the first report through at once.
    pub const fn new(period: Duration) -> Self {
        LogLimiter {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to report an occurrence at `now`: `Some(n)` with the number of occurrences
    /// held back since the last report (reset to 0), or `None` to stay quiet.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.period);
        if due {
            self.last = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_period_with_a_count_of_the_rest() {
        let mut l = LogLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0));
        for i in 1..=9 {
            assert_eq!(l.allow(t0 + Duration::from_millis(100 * i)), None);
        }
        assert_eq!(l.allow(t0 + Duration::from_millis(1000)), Some(9));
        assert_eq!(l.allow(t0 + Duration::from_millis(1500)), None);
        assert_eq!(l.allow(t0 + Duration::from_millis(2000)), Some(1));
        assert_eq!(l.allow(t0 + Duration::from_secs(60)), Some(0));
    }
}
