//! When to scan after the host changes: soon, but once per burst. A change schedules a scan after `settle`
//! of quiet; a change that keeps being followed by others waits at most `max_delay` from the first one, so a
//! new container shows up within seconds even on a busy host. When two scans in a row were forced by that
//! cap (the changes never stopped for two windows), the host is in a storm — a deploy starting hundreds of
//! containers — and each further cap doubles, up to [`STORM_CAP`], so a long storm costs a few scans
//! rather than one every `max_delay`. A scan that ran after real quiet ends the storm.
//!
//! That alone does not bound a storm whose changes each end before the next one starts — a mount every
//! `settle` plus a little: each would get its own scan. So, whatever the rhythm, no change starts a scan
//! while [`WINDOW_SCANS`] scans have started in the last [`WINDOW`]: changes cost at most 4 scans in any
//! minute; the interval adds its own (one per `interval`, and none while changes keep the agent scanning).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The longest any change waits for its scan, however stormy the host.
pub const STORM_CAP: Duration = Duration::from_secs(60);
/// At most this many scans for changes in any [`WINDOW`].
pub const WINDOW_SCANS: usize = 4;
/// The sliding window of [`WINDOW_SCANS`].
pub const WINDOW: Duration = Duration::from_secs(60);

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
    /// When the scans of the last [`WINDOW`] started, oldest first.
    recent: VecDeque<Instant>,
}

impl Debounce {
    /// No change pending.
    pub fn new(settle: Duration, max_delay: Duration) -> Debounce {
        Debounce {
            settle,
            max_delay,
            cap: max_delay,
            forced_in_a_row: 0,
            first: None,
            last: None,
            changes: 0,
            recent: VecDeque::new(),
        }
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
        let wanted = (last + self.settle).min(first + self.cap);
        // The window is full: wait until its oldest scan leaves it.
        let free = match self.recent.len().checked_sub(WINDOW_SCANS) {
            Some(i) => self.recent.get(i).map(|t| *t + WINDOW),
            None => None,
        };
        Some(free.map_or(wanted, |f| wanted.max(f)))
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
        self.recent.push_back(now);
        while self.recent.front().is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW) {
            self.recent.pop_front();
        }
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

    /// Scan starts for changes arriving every `gap` for `length`, scanning whenever due.
    fn scan_times(gap: Duration, length: Duration) -> Vec<Duration> {
        let t0 = Instant::now();
        let mut d = Debounce::new(S, M);
        let mut scans = Vec::new();
        let mut t = t0;
        let step = ms(10);
        let mut next_change = t0;
        while t < t0 + length + STORM_CAP * 2 {
            if d.due().is_some_and(|due| due <= t) {
                d.take(t);
                scans.push(t - t0);
            }
            if t >= next_change && t < t0 + length {
                d.note(t);
                next_change += gap;
            }
            t += step;
        }
        scans
    }

    #[test]
    fn changes_just_outside_the_settle_window_cost_at_most_4_scans_a_minute() {
        for gap in [ms(1010), ms(1100), ms(1500), ms(2000), ms(5100), ms(14_000)] {
            let scans = scan_times(gap, Duration::from_secs(600));
            for (i, start) in scans.iter().enumerate() {
                let in_window = scans[i..].iter().take_while(|t| **t < *start + WINDOW).count();
                assert!(in_window <= WINDOW_SCANS, "gap {gap:?}: {in_window} scans in the minute from {start:?}");
            }
            // Every change is still scanned: the last scan comes after the last change, within the cap.
            let last_change =
                Duration::from_secs(600).saturating_sub(ms(1)).as_millis() / gap.as_millis() * gap.as_millis();
            let last_scan = scans.last().expect("scans").as_millis();
            assert!(last_scan > last_change && last_scan <= last_change + STORM_CAP.as_millis() + 10, "gap {gap:?}");
        }
        // Without the window, a change every 1.1 s would cost a scan each: 54 a minute.
        assert!(scan_times(ms(1100), Duration::from_secs(60)).len() <= WINDOW_SCANS + 1);
    }

    #[test]
    fn a_quiet_host_scans_at_once_after_settle() {
        // Four changes a minute apart: each alone in its window, each scanned after settle.
        let scans = scan_times(Duration::from_secs(61), Duration::from_secs(240));
        assert_eq!(scans, [S, S + Duration::from_secs(61), S + Duration::from_secs(122), S + Duration::from_secs(183)]);
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
