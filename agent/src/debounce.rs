//! When to scan after the host changes: soon, but once per burst. A change schedules a scan after `settle`
//! of quiet; a change that keeps being followed by others waits at most `max_delay` from the first one, so a
//! new container shows up within seconds even on a busy host. When two scans in a row were forced by that
//! cap (the changes never stopped for two windows), the host is in a storm — a deploy starting hundreds of
//! containers — and each further cap doubles, up to [`STORM_CAP`], so a long storm costs a few scans
//! rather than one every `max_delay`. A scan that ran after real quiet ends the storm.

use std::time::{Duration, Instant};

/// The longest any change waits for its scan, however stormy the host.
pub const STORM_CAP: Duration = Duration::from_secs(60);

/// Pending host changes and the scan they ask for.
#[derive(Debug)]
pub struct Debounce {
    settle: Duration,
    max_delay: Duration,
    cap: Duration,
    forced_in_a_row: u32,
    first: Option<Instant>,
    last: Option<Instant>,
    changes: u64,
}

impl Debounce {
    /// No change pending.
    pub fn new(settle: Duration, max_delay: Duration) -> Debounce {
        Debounce { settle, max_delay, cap: max_delay, forced_in_a_row: 0, first: None, last: None, changes: 0 }
    }

    /// New timings from a reloaded configuration; pending changes stay pending.
    pub fn retime(&mut self, settle: Duration, max_delay: Duration) {
        self.settle = settle;
        self.max_delay = max_delay;
        self.cap = max_delay;
    }

    /// A change happened at `now`.
    pub fn note(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.changes += 1;
    }

    /// When the pending changes want their scan; `None` when nothing is pending.
    pub fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + self.settle).min(first + self.cap))
    }

    /// A scan starts at `now` and covers every pending change: returns how many there were.
    pub fn take(&mut self, now: Instant) -> u64 {
        let forced = match (self.first, self.last) {
            (Some(_), Some(last)) => now < last + self.settle,
            _ => false,
        };
        self.forced_in_a_row = if forced { self.forced_in_a_row + 1 } else { 0 };
        self.cap =
            if self.forced_in_a_row >= 2 { (self.cap * 2).min(STORM_CAP.max(self.max_delay)) } else { self.max_delay };
        self.first = None;
        self.last = None;
        std::mem::take(&mut self.changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const M: Duration = Duration::from_secs(5);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn one_change_scans_after_settle() {
        let t0 = Instant::now();
        let mut d = Debounce::new(S, M);
        assert_eq!(d.due(), None);
        d.note(t0);
        assert_eq!(d.due(), Some(t0 + S));
        assert_eq!(d.take(t0 + S), 1);
        assert_eq!(d.due(), None);
    }

    #[test]
    fn changes_close_together_wait_for_quiet() {
        let t0 = Instant::now();
        let mut d = Debounce::new(S, M);
        for i in 0..4 {
            d.note(t0 + ms(500 * i));
        }
        assert_eq!(d.due(), Some(t0 + ms(1500) + S));
    }

    /// Simulates a burst of changes every `gap` for `length`, scanning whenever due (scans take no time);
    /// returns how many scans the burst costs, counting the one after it ends.
    fn scans_for_burst(gap: Duration, length: Duration) -> u32 {
        let t0 = Instant::now();
        let mut d = Debounce::new(S, M);
        let mut scans = 0;
        let mut t = t0;
        while t < t0 + length {
            if d.due().is_some_and(|due| due <= t) {
                d.take(t);
                scans += 1;
            }
            d.note(t);
            t += gap;
        }
        while let Some(due) = d.due() {
            d.take(due);
            scans += 1;
        }
        scans
    }

    #[test]
    fn a_storm_costs_few_scans() {
        // 50 container starts, one every 200 ms (10 s): a scan every max_delay.
        assert_eq!(scans_for_burst(ms(200), Duration::from_secs(10)), 2);
        // One every 300 ms (15 s): the third window is the first after quiet.
        assert_eq!(scans_for_burst(ms(300), Duration::from_secs(15)), 3);
        // A minute of changes: 5 s, 10 s, then storm windows of 10 s and 20 s, then quiet at 61 s.
        assert_eq!(scans_for_burst(ms(500), Duration::from_secs(60)), 5);
        // Changes 2 s apart are separate events, each scanned after settle.
        assert_eq!(scans_for_burst(Duration::from_secs(2), Duration::from_secs(10)), 5);
    }

    #[test]
    fn the_first_change_of_a_storm_still_waits_at_most_max_delay() {
        let t0 = Instant::now();
        let mut d = Debounce::new(S, M);
        for i in 0..25 {
            d.note(t0 + ms(200 * i));
        }
        assert_eq!(d.due(), Some(t0 + M));
        d.take(t0 + M);
        // A second forced window at the same cap...
        for i in 0..25 {
            d.note(t0 + M + ms(200 * i));
        }
        assert_eq!(d.due(), Some(t0 + M * 2));
        d.take(t0 + M * 2);
        // ...makes a storm: the cap doubled for the next window...
        d.note(t0 + M * 2 + ms(100));
        assert_eq!(d.due(), Some(t0 + M * 2 + ms(1100)));
        d.note(t0 + M * 2 + ms(900));
        d.note(t0 + M * 2 + ms(1800));
        d.note(t0 + M * 2 + ms(2700));
        assert_eq!(d.due(), Some(t0 + M * 2 + ms(3700)));
        d.take(t0 + M * 2 + ms(3700));
        // ...and quiet ends it.
        let t1 = t0 + Duration::from_secs(30);
        for i in 0..40 {
            d.note(t1 + ms(200 * i));
        }
        assert_eq!(d.due(), Some(t1 + M));
    }
}
