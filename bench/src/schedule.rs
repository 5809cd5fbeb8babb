//! The open-loop schedule: when each request is *meant* to be sent. Latency is measured
//! from these intended times, so a server stall that delays sending shows up in the
//! percentiles instead of silently lowering the offered load (coordinated omission).

use std::time::{Duration, Instant};

/// Evenly spaced send times for one connection. Connections are staggered by their index
/// so the total rate is smooth rather than bursty.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    interval: Duration,
    next: u64,
}

impl Schedule {
    /// `total_rate` requests/s spread over `connections` connections; this is connection
    /// number `index` among them.
    pub fn new(start: Instant, total_rate: f64, connections: usize, index: usize) -> Self {
        let per_conn = total_rate / connections.max(1) as f64;
        let interval = Duration::from_secs_f64(1.0 / per_conn.max(1e-9));
        let offset = Duration::from_secs_f64(index as f64 / total_rate.max(1e-9));
        Schedule {
            start: start + offset,
            interval,
            next: 0,
        }
    }

    /// The intended time of the next request.
    pub fn peek(&self) -> Instant {
        self.start + self.interval * self.next as u32 + self.extra(self.next)
    }

    /// `Duration * u32` saturates the multiplier at `u32::MAX`; beyond it, add the rest.
    fn extra(&self, k: u64) -> Duration {
        let over = k.saturating_sub(u64::from(u32::MAX));
        Duration::from_secs_f64(self.interval.as_secs_f64() * over as f64)
    }

    /// Take every intended time that is due at `now`, oldest first.
    pub fn due(&mut self, now: Instant, mut f: impl FnMut(Instant)) {
        loop {
            let t = self.peek();
            if t > now {
                return;
            }
            self.next += 1;
            f(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_matches_the_rate_and_connections_are_staggered() {
        let t0 = Instant::now();
        let a = Schedule::new(t0, 1000.0, 4, 0);
        let b = Schedule::new(t0, 1000.0, 4, 1);
        assert_eq!(a.interval, Duration::from_millis(4));
        assert_eq!(b.peek() - a.peek(), Duration::from_millis(1));
    }

    #[test]
    fn overdue_requests_keep_their_intended_times() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 100.0, 1, 0);
        let mut got = Vec::new();
        // The sender was stalled for 55 ms: six sends are due, each at its own time.
        s.due(t0 + Duration::from_millis(55), |t| got.push(t - t0));
        let ms: Vec<u128> = got.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 10, 20, 30, 40, 50]);
        assert_eq!(s.peek() - t0, Duration::from_millis(60));
    }
}
