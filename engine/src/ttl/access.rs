//! Per-entry access stamps for approximate LRU and LFU eviction, as Redis keeps them in
//! its objects' 24-bit `lru` field.
//!
//! Every entry carries a 24-bit stamp (it costs no memory: 8 bits sit in the entry's
//! padding, 16 in the top of its deadline word, see `entry.rs`). What it means depends on
//! the map's [`Access`] mode:
//!
//! - [`Access::Lru`]: the time of the last access on a 24-bit clock of seconds (wraps every
//!   194 days, like Redis's `LRU_CLOCK`); idle time is the clock distance to now.
//! - [`Access::Lfu`]: 16 bits of minutes (when the counter was last decayed) and an 8-bit
//!   logarithmic access counter: new keys start at 5, an access increments it with
//!   probability `1 / ((counter - 5) * log_factor + 1)`, and it loses one per `decay_minutes`
//!   elapsed (Redis's `LFULogIncr` / `LFUDecrAndReturn`, `lfu-log-factor`,
//!   `lfu-decay-time`).
//!
//! All times are Unix milliseconds supplied by the caller.

/// Largest stamp value (24 bits).
pub const STAMP_MAX: u32 = (1 << 24) - 1;

/// Counter of a new key in LFU mode (Redis's `LFU_INIT_VAL`), so that it is not the first
/// candidate for eviction before it had a chance to be read.
pub const LFU_INIT: u8 = 5;

/// How entries record accesses in their stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Least recently used: the stamp is the 24-bit seconds clock of the last access.
    #[default]
    Lru,
    /// Least frequently used: minutes of the last decay (16 bits) and a logarithmic
    /// counter (8 bits).
    Lfu {
        /// Higher values make the counter grow more slowly (Redis `lfu-log-factor`).
        log_factor: u32,
        /// Minutes for the counter to lose one (0: never decays; Redis `lfu-decay-time`).
        decay_minutes: u32,
    },
}

/// The LRU clock at `now_ms`: seconds, wrapping at 24 bits.
pub fn lru_clock(now_ms: u64) -> u32 {
    ((now_ms / 1000) & u64::from(STAMP_MAX)) as u32
}

/// Milliseconds since the access recorded in an LRU `stamp` (whole seconds, as in Redis;
/// assumes at most one wrap of the clock).
pub fn idle_ms(stamp: u32, now_ms: u64) -> u64 {
    let ticks = lru_clock(now_ms).wrapping_sub(stamp) & STAMP_MAX;
    u64::from(ticks) * 1000
}

/// Minutes on the 16-bit LFU clock at `now_ms`.
fn lfu_minutes(now_ms: u64) -> u32 {
    ((now_ms / 60_000) & 0xFFFF) as u32
}

/// The LFU counter of `stamp` after the decay due by `now_ms` (without storing it).
pub fn lfu_counter(stamp: u32, now_ms: u64, decay_minutes: u32) -> u8 {
    let last = (stamp >> 8) & 0xFFFF;
    let counter = stamp & 0xFF;
    let now = lfu_minutes(now_ms);
    let elapsed = if now >= last {
        now - last
    } else {
        0xFFFF - last + now
    };
    let periods = elapsed.checked_div(decay_minutes).unwrap_or(0);
    counter.saturating_sub(periods) as u8
}

/// A stamp holding `counter` as of `now_ms`.
fn lfu_stamp(counter: u8, now_ms: u64) -> u32 {
    (lfu_minutes(now_ms) << 8) | u32::from(counter)
}

/// The stamp of a key created at `now_ms`.
pub fn initial(access: Access, now_ms: u64) -> u32 {
    match access {
        Access::Lru => lru_clock(now_ms),
        Access::Lfu { .. } => lfu_stamp(LFU_INIT, now_ms),
    }
}

/// The stamp after an access at `now_ms`; `rand` is a uniform random `u64` (used by LFU's
/// probabilistic increment).
pub fn touched(access: Access, stamp: u32, now_ms: u64, rand: u64) -> u32 {
    match access {
        Access::Lru => lru_clock(now_ms),
        Access::Lfu {
            log_factor,
            decay_minutes,
        } => {
            let mut counter = lfu_counter(stamp, now_ms, decay_minutes);
            if counter < u8::MAX {
                let base = f64::from(counter.saturating_sub(LFU_INIT));
                let p = 1.0 / (base * f64::from(log_factor) + 1.0);
                // 53 random bits as a fraction in [0, 1).
                let r = (rand >> 11) as f64 / (1u64 << 53) as f64;
                if r < p {
                    counter += 1;
                }
            }
            lfu_stamp(counter, now_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LFU: Access = Access::Lfu {
        log_factor: 10,
        decay_minutes: 1,
    };

    #[test]
    fn lru_idle_time_is_seconds_since_the_access_across_a_wrap() {
        let t = 1_700_000_000_000u64;
        let s = initial(Access::Lru, t);
        assert_eq!(idle_ms(s, t + 999), 0);
        assert_eq!(idle_ms(s, t + 5_000), 5_000);
        // Stamped just before the 24-bit clock wraps, read just after.
        let before_wrap = u64::from(STAMP_MAX) * 1000;
        let s = lru_clock(before_wrap - 1000);
        assert_eq!(idle_ms(s, before_wrap + 2000), 3000);
    }

    #[test]
    fn lfu_starts_at_five_grows_logarithmically_and_decays() {
        let t = 1_700_000_000_000u64;
        let mut s = initial(LFU, t);
        assert_eq!(lfu_counter(s, t, 1), LFU_INIT);
        let mut x = 1u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..1000 {
            s = touched(LFU, s, t, next());
        }
        let c = lfu_counter(s, t, 1);
        // Redis's table for factor 10 (redis.conf): 1K hits give 18, 1M hits 255.
        assert!((12..=30).contains(&c), "counter {c} after 1000 hits");
        for _ in 0..1_000_000 {
            s = touched(LFU, s, t, next());
        }
        let c2 = lfu_counter(s, t, 1);
        assert!(c2 >= 200, "counter {c2} after 1M hits");
        // One point per minute of decay time elapsed.
        assert_eq!(lfu_counter(s, t + 3 * 60_000, 1), c2 - 3);
        assert_eq!(
            lfu_counter(s, t + 3 * 60_000, 0),
            c2,
            "decay time 0: no decay"
        );
        assert_eq!(lfu_counter(s, t + 1_000 * 60_000, 1), 0);
    }
}
