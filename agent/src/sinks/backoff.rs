//! Reconnect delays: exponential from 1 s to 60 s with full jitter (a uniformly random delay between zero
//! and the exponential bound), so that a fleet of agents does not reconnect to a restarted collector in
//! lock-step.

use std::time::Duration;

/// The delay schedule of one sink.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// 1 s doubling up to 60 s.
    pub fn new() -> Backoff {
        Backoff::with_bounds(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// A schedule with other bounds.
    pub fn with_bounds(base: Duration, cap: Duration) -> Backoff {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Backoff { base, cap, attempt: 0, rng: seed | 1 }
    }

    /// The exponential bound for the next failure, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay to wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64: jitter needs spread, not cryptographic quality.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(frac)
    }

    /// Back to the first step after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_from_one_second_to_a_minute() {
        let mut b = Backoff::new();
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            ceilings.push(b.ceiling().as_secs());
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(60));
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn delays_are_spread_below_the_ceiling() {
        let mut b = Backoff::with_bounds(Duration::from_secs(60), Duration::from_secs(60));
        let delays: Vec<Duration> = (0..200).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(60)));
        let low = delays.iter().filter(|d| **d < Duration::from_secs(30)).count();
        assert!((40..=160).contains(&low), "full jitter spreads delays over the range: {low} of 200 below half");
    }
}
