//! Recent full samples, and the sustained growth rate they show.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// How many recent full samples are kept.
pub(crate) const HISTORY: usize = 128;

/// The shortest window the growth rate is measured over.
pub(crate) const MIN_WINDOW: Duration = Duration::from_secs(1);

/// One full sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Point {
    /// When it was taken, on tokio's clock (paused in tests).
    pub at: Instant,
    /// When it was taken, for humans.
    pub unix_ms: u64,
    /// The compared figure.
    pub used: u64,
}

/// The last [`HISTORY`] full samples, oldest first.
#[derive(Debug, Default)]
pub(crate) struct History(VecDeque<Point>);

/// Milliseconds since the Unix epoch, for the diagnostics bundle.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl History {
    pub(crate) fn push(&mut self, at: Instant, used: u64) {
        if self.0.len() == HISTORY {
            self.0.pop_front();
        }
        self.0.push_back(Point {
            at,
            unix_ms: unix_ms(),
            used,
        });
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Point> + '_ {
        self.0.iter()
    }

    /// The growth rate, in bytes per second, that the samples of the last
    /// `window` show when followed by `used` at `now`, or `None` when the
    /// samples do not span half the window or memory did not grow.
    ///
    /// The window is split at the sample nearest its middle and the smaller
    /// of the two halves' rates is returned: growth must be sustained, so a
    /// single jump (a batch loaded at once, a cache filled) that lands in one
    /// half only does not project a crossing.
    pub(crate) fn sustained_rate(&self, window: Duration, now: Instant, used: u64) -> Option<f64> {
        let start = now.checked_sub(window).unwrap_or(now);
        let first = self.0.iter().position(|p| p.at >= start && p.at < now)?;
        let first = self.0[first];
        let span = now.saturating_duration_since(first.at);
        if span < window / 2 {
            return None;
        }
        let middle = first.at + span / 2;
        let mid = self
            .0
            .iter()
            .filter(|p| p.at > first.at && p.at < now)
            .min_by_key(|p| {
                if p.at > middle {
                    p.at - middle
                } else {
                    middle - p.at
                }
            })?;
        let d1 = (mid.at - first.at).as_secs_f64();
        let d2 = (now - mid.at).as_secs_f64();
        let r1 = (mid.used as f64 - first.used as f64) / d1;
        let r2 = (used as f64 - mid.used as f64) / d2;
        let rate = r1.min(r2);
        (rate > 0.0).then_some(rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(points: &[(u64, u64)], t0: Instant) -> History {
        let mut h = History::default();
        for &(s, used) in points {
            h.push(t0 + Duration::from_secs(s), used);
        }
        h
    }

    #[test]
    fn steady_growth_is_its_rate() {
        let t0 = Instant::now();
        let h = history(&[(0, 0), (1, 1000), (2, 2000), (3, 3000)], t0);
        let r = h.sustained_rate(Duration::from_secs(8), t0 + Duration::from_secs(4), 4000);
        assert_eq!(r, Some(1000.0));
    }

    #[test]
    fn a_single_jump_or_a_fall_is_not_growth() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(4);
        let jump = history(&[(0, 0), (1, 0), (2, 0), (3, 6000)], t0);
        assert_eq!(jump.sustained_rate(Duration::from_secs(8), now, 6000), None);
        let fall = history(&[(0, 4000), (1, 3000), (2, 2000), (3, 1000)], t0);
        assert_eq!(fall.sustained_rate(Duration::from_secs(8), now, 0), None);
    }

    #[test]
    fn too_short_a_span_has_no_rate() {
        let t0 = Instant::now();
        let h = history(&[(0, 0), (1, 1000)], t0);
        assert_eq!(
            h.sustained_rate(Duration::from_secs(8), t0 + Duration::from_secs(2), 2000),
            None
        );
        // Samples older than the window do not count.
        let h = history(&[(0, 0), (1, 1000), (10, 1000), (11, 1000)], t0);
        assert_eq!(
            h.sustained_rate(Duration::from_secs(4), t0 + Duration::from_secs(12), 1000),
            None
        );
    }
}
