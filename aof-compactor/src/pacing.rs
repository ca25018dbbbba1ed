//! How fast a rewrite sends the compacted state to the disk.
//!
//! A rewrite that writes as fast as the page cache takes it leaves the kernel
//! a mountain of dirty pages, and the appender's next `fdatasync` (a journal
//! commit that must first write the data of blocks allocated in it, then a
//! device cache flush) waits behind their write-back. The adaptive pacer
//! keeps what the appender can find in front of it small, and smaller still
//! while the appender is writing:
//!
//! * the state is written back in steps, and at most [`Pacing::in_flight`]
//!   steps are under write-back at once: the writer waits for the oldest
//!   before starting another;
//! * after each step the live file's length is read (one `fstat`). If it grew,
//!   an appender is writing, and the next step is half as long, down to
//!   [`Pacing::min_step`]; if it did not, the next step is one `min_step`
//!   longer, up to [`Rewrite::sync_every`] (additive increase, multiplicative
//!   decrease). When nobody appends the rewrite runs at full speed in full
//!   steps; while somebody does, each of their syncs waits behind at most
//!   `in_flight × min_step` bytes of the rewrite.
//!
//! The first design measured each step's own write-back time and backed off
//! when it rose above the fastest seen. On the virtio disk the figures were
//! measured on, 1 MiB steps of a rewrite with no appender at all took
//! anywhere from 0.6 to 9 ms, so that signal backed off to its floor with
//! nobody appending (0.02 of the plain write's throughput). The live file's
//! growth is the signal that does not depend on the disk's mood.
//!
//! [`Rewrite::sync_every`]: crate::Rewrite::sync_every

/// How a [`Rewrite`](crate::Rewrite) paces the write-back of the compacted
/// state. Build it with [`Pacing::adaptive`] (the default) or
/// [`Pacing::off`], then adjust with the setters.
///
/// [`Rewrite::max_rate`](crate::Rewrite::max_rate) is a separate, fixed cap
/// that applies on top of either.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pacing {
    pub(crate) adaptive: bool,
    pub(crate) in_flight: u32,
    pub(crate) min_step: u64,
}

/// Default for [`Pacing::in_flight`].
pub const DEFAULT_IN_FLIGHT: u32 = 2;

/// Default for [`Pacing::min_step`]: 64 KiB.
pub const DEFAULT_MIN_STEP: u64 = 64 * 1024;

impl Default for Pacing {
    fn default() -> Self {
        Pacing::adaptive()
    }
}

impl Pacing {
    /// Bounded write-back that yields to an appender, with the defaults:
    /// [`DEFAULT_IN_FLIGHT`] steps in flight, steps between
    /// [`DEFAULT_MIN_STEP`] and [`Rewrite::sync_every`](crate::Rewrite::sync_every).
    pub fn adaptive() -> Self {
        Pacing {
            adaptive: true,
            in_flight: DEFAULT_IN_FLIGHT,
            min_step: DEFAULT_MIN_STEP,
        }
    }

    /// No pacing: write-back of each [`Rewrite::sync_every`](crate::Rewrite::sync_every)
    /// bytes is started and never waited for, so the rewrite runs as fast as
    /// the page cache takes it (the behaviour before pacing existed).
    pub fn off() -> Self {
        Pacing {
            adaptive: false,
            ..Pacing::adaptive()
        }
    }

    /// Whether this is adaptive pacing (as opposed to [`Pacing::off`]).
    pub fn is_adaptive(&self) -> bool {
        self.adaptive
    }

    /// How many steps may be under write-back at once; at least 1. More
    /// keeps the disk busier while the writer fills the next step; fewer
    /// shortens what an appender's sync can find in front of it.
    ///
    /// Default: [`DEFAULT_IN_FLIGHT`] (2).
    pub fn in_flight(mut self, steps: u32) -> Self {
        self.in_flight = steps.max(1);
        self
    }

    /// The shortest step, in bytes, that the pacer shrinks to while an
    /// appender writes, and the amount a step grows by after each step
    /// without appends; at least 4 KiB. A step is never longer than
    /// [`Rewrite::sync_every`](crate::Rewrite::sync_every).
    ///
    /// Default: [`DEFAULT_MIN_STEP`] (64 KiB).
    pub fn min_step(mut self, bytes: u64) -> Self {
        self.min_step = bytes.max(4096);
        self
    }
}

/// What the pacer did during one rewrite, from
/// [`Rewrite::pacing_stats`](crate::Rewrite::pacing_stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PacingStats {
    /// Write-back steps taken.
    pub steps: u64,
    /// Steps after which the live file had grown, each halving the next step.
    pub yields: u64,
    /// The shortest step taken, in bytes (0 before the first).
    pub shortest_step: u64,
}

/// The pacer's decisions, without any I/O of its own: the rewrite tells it
/// after each step whether the live file grew, and takes the next step's
/// length from it, so that the rule is tested with made-up sequences.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    min_step: u64,
    max_step: u64,
    step: u64,
    stats: PacingStats,
}

impl Pacer {
    /// A pacer whose steps range from `pacing.min_step` to `max_step`
    /// (`Rewrite::sync_every`), starting at `max_step`.
    pub(crate) fn new(pacing: &Pacing, max_step: u64) -> Self {
        let min_step = pacing.min_step.min(max_step).max(1);
        Pacer {
            min_step,
            max_step: max_step.max(min_step),
            step: max_step.max(min_step),
            stats: PacingStats::default(),
        }
    }

    /// The length of the step being written.
    pub(crate) fn step_len(&self) -> u64 {
        self.step
    }

    /// Takes one finished step of `len` bytes, after which the live file had
    /// or had not `grown`, and returns the length of the next step.
    pub(crate) fn step_done(&mut self, len: u64, grown: bool) -> u64 {
        self.stats.steps += 1;
        if self.stats.shortest_step == 0 || len < self.stats.shortest_step {
            self.stats.shortest_step = len;
        }
        self.step = if grown {
            self.stats.yields += 1;
            (self.step / 2).max(self.min_step)
        } else {
            (self.step + self.min_step).min(self.max_step)
        };
        self.step
    }

    pub(crate) fn stats(&self) -> PacingStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    /// Feeds a sequence of "grown" flags, each for a step of the length the
    /// pacer asked for, and returns the lengths it asked for next.
    fn run(pacer: &mut Pacer, grown: &[bool]) -> Vec<u64> {
        grown
            .iter()
            .map(|&g| pacer.step_done(pacer.step_len(), g) / KIB)
            .collect()
    }

    #[test]
    fn without_appends_every_step_is_full_length() {
        let mut p = Pacer::new(&Pacing::adaptive(), 1024 * KIB);
        assert_eq!(p.step_len(), 1024 * KIB);
        assert_eq!(run(&mut p, &[false; 20]), [1024; 20]);
        assert_eq!(p.stats().yields, 0);
        assert_eq!(p.stats().steps, 20);
        assert_eq!(p.stats().shortest_step, 1024 * KIB);
    }

    #[test]
    fn appends_halve_the_step_down_to_the_minimum() {
        let mut p = Pacer::new(&Pacing::adaptive(), 1024 * KIB);
        assert_eq!(run(&mut p, &[true; 7]), [512, 256, 128, 64, 64, 64, 64]);
        assert_eq!(p.stats().yields, 7);
        assert_eq!(p.stats().shortest_step, 64 * KIB);
    }

    #[test]
    fn quiet_steps_grow_it_back_by_the_minimum_each() {
        let mut p = Pacer::new(&Pacing::adaptive(), 512 * KIB);
        run(&mut p, &[true; 4]);
        assert_eq!(p.step_len(), 64 * KIB);
        assert_eq!(
            run(&mut p, &[false; 9]),
            [128, 192, 256, 320, 384, 448, 512, 512, 512]
        );
    }

    #[test]
    fn an_occasional_append_costs_one_halving() {
        let mut p = Pacer::new(&Pacing::adaptive().min_step(128 * KIB), 1024 * KIB);
        let grown = [false, false, true, false, false, false, false, true, false];
        assert_eq!(
            run(&mut p, &grown),
            [1024, 1024, 512, 640, 768, 896, 1024, 512, 640]
        );
        assert_eq!(p.stats().yields, 2);
    }

    #[test]
    fn the_bounds_are_sane_whatever_is_asked() {
        // A minimum above the maximum is lowered to it: every step is full.
        let mut p = Pacer::new(&Pacing::adaptive().min_step(8192 * KIB), 1024 * KIB);
        assert_eq!(run(&mut p, &[true, false, true]), [1024, 1024, 1024]);
        assert_eq!(Pacing::adaptive().min_step(1).min_step, 4096);
        assert_eq!(Pacing::adaptive().in_flight(0).in_flight, 1);
        assert!(!Pacing::off().is_adaptive());
        assert_eq!(Pacing::default(), Pacing::adaptive());
    }
}
