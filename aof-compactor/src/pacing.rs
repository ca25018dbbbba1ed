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
//!   before starting another. Each step ends on a page boundary, so that no
//!   page is sent to the disk twice;
//! * the first step is [`Pacing::min_step`], since the pacer has not yet
//!   seen whether anybody appends, and each step without growth of the live
//!   file doubles the next, up to [`Rewrite::sync_every`];
//! * after each step the live file's length is read (one `fstat`). If it grew,
//!   an appender is writing: the next step drops to [`Pacing::min_step`],
//!   and only one step is under write-back at a time.
//!   The rewrite stays that way until the live file has not grown for
//!   [`Pacing::hold`]; then the steps double again, with `in_flight` steps
//!   in flight. When nobody appends the rewrite reaches full steps after
//!   five (under 1 MiB with the defaults) and stays there; while somebody
//!   does, even once a second, each of their syncs finds at most one short
//!   step of the rewrite under write-back;
//! * while the steps are held short, the rewriter rests after each one:
//!   once the previous step's write-back is done, it sleeps [`Pacing::rest`]
//!   times as long as it waited for it (at most the hold), so that the disk
//!   is free of the rewrite most of the time and most of the appender's
//!   syncs find nothing of it in front of them. A short step alone does not
//!   do that: the rewriter starts the next one as soon as the last is done,
//!   and the disk is never without one. A rewrite that shares the appender's
//!   [`SyncGate`](crate::SyncGate) does not rest by default: it already
//!   waits for each sync to end before it starts a step.
//!
//! A step's own write-back time is not the signal: on a disk shared with
//! other work it rises for reasons that have nothing to do with the appender,
//! and a pacer that backs off on it slows down with nobody appending. The
//! live file's growth is the appender itself. The hold is there because an
//! appender slower than the rewrite's steps (an append every few
//! milliseconds) leaves most steps without growth, and steps that grew back
//! between its appends would be in front of its next sync.
//!
//! [`Rewrite::sync_every`]: crate::Rewrite::sync_every

use std::time::{Duration, Instant};

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
    /// `None`: [`DEFAULT_MIN_STEP`], or [`DEFAULT_GATED_MIN_STEP`] for a
    /// rewrite that shares the appender's [`SyncGate`](crate::SyncGate).
    pub(crate) min_step: Option<u64>,
    pub(crate) hold: Duration,
    /// `None`: [`DEFAULT_REST`], or [`DEFAULT_GATED_REST`] with a gate.
    pub(crate) rest: Option<u32>,
}

/// Default for [`Pacing::in_flight`].
pub const DEFAULT_IN_FLIGHT: u32 = 2;

/// Default for [`Pacing::min_step`]: 32 KiB (64 KiB before 2026-12-03: in
/// the `appender_latency` bench without a gate, 32 KiB steps gave the
/// appender a p99 2.3-3.1 times its p99 alone against 2.8-3.9 for 64 KiB,
/// while the rewrite under appends ran at about 200 MB/s instead of 300).
pub const DEFAULT_MIN_STEP: u64 = 32 * 1024;

/// Default for [`Pacing::min_step`] in a rewrite that shares the appender's
/// [`SyncGate`](crate::SyncGate): 32 KiB, now the same as
/// [`DEFAULT_MIN_STEP`]. With the gate, a sync finds at most the one step
/// that was under write-back when it began, so that step's length is what
/// the sync waits for; without it, a sync finds a step between each pair of
/// its requests.
pub const DEFAULT_GATED_MIN_STEP: u64 = 32 * 1024;

/// Default for [`Pacing::rest`]: while an appender writes, the rewriter
/// sleeps four times as long as it waited for each step's write-back, so
/// that its steps keep the disk busy about a fifth of the time. In the
/// `appender_latency` bench without a gate (2026-12-03, back-to-back
/// appends), the appender's p99 during rewrites was 2.5-2.9 times its p99
/// alone without a rest, 2.05-2.35 with a rest of 1, 1.4-2.1 with 3,
/// 1.4-1.6 with 4 and 1.6-1.9 with 6, while the rewrite under appends
/// slowed from about 170 MB/s to 100, 70, 60 and 45.
pub const DEFAULT_REST: u32 = 4;

/// Default for [`Pacing::rest`] in a rewrite that shares the appender's
/// [`SyncGate`](crate::SyncGate): none. Each of its steps already waits for
/// the appender's sync to end, and in the same bench a rest did not lower
/// the gated appender's p99 beyond the spread between runs, while it slowed
/// the gated rewrite from about 90 MB/s to 45-90.
pub const DEFAULT_GATED_REST: u32 = 0;

/// Default for [`Pacing::hold`]: one second.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(1);

impl Default for Pacing {
    fn default() -> Self {
        Pacing::adaptive()
    }
}

impl Pacing {
    /// Bounded write-back that yields to an appender, with the defaults:
    /// [`DEFAULT_IN_FLIGHT`] steps in flight, steps between
    /// [`DEFAULT_MIN_STEP`] ([`DEFAULT_GATED_MIN_STEP`] with a
    /// [`SyncGate`](crate::SyncGate)) and [`Rewrite::sync_every`](crate::Rewrite::sync_every),
    /// short steps held for [`DEFAULT_HOLD`] after the live file last grew.
    pub fn adaptive() -> Self {
        Pacing {
            adaptive: true,
            in_flight: DEFAULT_IN_FLIGHT,
            min_step: None,
            hold: DEFAULT_HOLD,
            rest: None,
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

    /// The shortest step, in bytes: the first step of a rewrite, and the
    /// step the pacer drops to while an appender writes (steps without appends
    /// double from it); at least 4 KiB. A step is never longer than
    /// [`Rewrite::sync_every`](crate::Rewrite::sync_every).
    ///
    /// Default: [`DEFAULT_MIN_STEP`] (32 KiB), or [`DEFAULT_GATED_MIN_STEP`]
    /// (also 32 KiB) in a rewrite given a [`SyncGate`](crate::SyncGate).
    pub fn min_step(mut self, bytes: u64) -> Self {
        self.min_step = Some(bytes.max(4096));
        self
    }

    /// How long after the live file last grew the steps stay short (one
    /// step in flight, no growth). Longer protects an appender that writes
    /// rarely; shorter gives the rewrite its speed back sooner.
    ///
    /// Default: [`DEFAULT_HOLD`] (1 s).
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// How long the rewriter rests after each step while the steps are held
    /// short, as a multiple of the time it waited for that step's
    /// write-back (never longer than the [hold](Pacing::hold)); 0 never
    /// rests. A rest of `n` leaves the disk to the appender about `n`
    /// parts in `n + 1` of the time the rewrite is held back; it does
    /// nothing while nobody appends.
    ///
    /// Default: [`DEFAULT_REST`] (4), or [`DEFAULT_GATED_REST`] (0) in a
    /// rewrite given a [`SyncGate`](crate::SyncGate).
    pub fn rest(mut self, times_the_wait: u32) -> Self {
        self.rest = Some(times_the_wait);
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
    /// Steps after which the live file had grown, each dropping the next
    /// step to the minimum.
    pub yields: u64,
    /// The shortest step taken, in bytes (0 before the first).
    pub shortest_step: u64,
    /// Steps that found the appender syncing and waited at the
    /// [`SyncGate`](crate::SyncGate) before starting.
    pub gate_waits: u64,
    /// The time those steps waited, in all.
    pub gate_waited: Duration,
    /// Steps after which the rewriter rested (see [`Pacing::rest`]).
    pub rests: u64,
    /// The time it rested, in all.
    pub rested: Duration,
}

/// The pacer's decisions, without any I/O or clock of its own: the rewrite
/// tells it after each step whether the live file grew and when, and takes
/// the next step's length and the number of steps allowed in flight from it,
/// so that the rule is tested with made-up sequences and instants.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    min_step: u64,
    max_step: u64,
    in_flight: usize,
    hold: Duration,
    rest: u32,
    step: u64,
    /// When the live file was last seen to have grown.
    grew_at: Option<Instant>,
    /// Whether the last step fell within the hold.
    holding: bool,
    stats: PacingStats,
}

impl Pacer {
    /// A pacer whose steps range from `pacing.min_step` to `max_step`
    /// (`Rewrite::sync_every`), starting at the shortest: whether anybody
    /// appends is known only after the first step. `gated`: the rewrite
    /// shares the appender's gate, which sets the default minimum.
    pub(crate) fn new(pacing: &Pacing, max_step: u64, gated: bool) -> Self {
        let default = if gated {
            DEFAULT_GATED_MIN_STEP
        } else {
            DEFAULT_MIN_STEP
        };
        let min_step = pacing.min_step.unwrap_or(default).min(max_step).max(1);
        let rest = pacing.rest.unwrap_or(if gated {
            DEFAULT_GATED_REST
        } else {
            DEFAULT_REST
        });
        Pacer {
            rest,
            min_step,
            max_step: max_step.max(min_step),
            in_flight: pacing.in_flight.max(1) as usize,
            hold: pacing.hold,
            step: min_step,
            grew_at: None,
            holding: false,
            stats: PacingStats::default(),
        }
    }

    /// The length of the step being written.
    pub(crate) fn step_len(&self) -> u64 {
        self.step
    }

    /// How many steps may be under write-back once the one just finished
    /// is started: one while holding, `in_flight` otherwise.
    pub(crate) fn in_flight(&self) -> usize {
        if self.holding {
            1
        } else {
            self.in_flight
        }
    }

    /// Takes one finished step of `len` bytes, after which, at `now`, the
    /// live file had or had not `grown`, and returns the length of the next
    /// step.
    pub(crate) fn step_done(&mut self, len: u64, grown: bool, now: Instant) -> u64 {
        self.stats.steps += 1;
        if self.stats.shortest_step == 0 || len < self.stats.shortest_step {
            self.stats.shortest_step = len;
        }
        if grown {
            self.stats.yields += 1;
            self.grew_at = Some(now);
            self.holding = true;
            self.step = self.min_step;
            return self.step;
        }
        self.holding = self
            .grew_at
            .is_some_and(|t| now.saturating_duration_since(t) < self.hold);
        if !self.holding {
            self.step = (self.step * 2).min(self.max_step);
        }
        self.step
    }

    /// How long to rest before the next step, having waited `waited` for
    /// the last one's write-back: [`Pacing::rest`] times that while the
    /// steps are held short, at most the hold; nothing otherwise.
    pub(crate) fn rest_after(&mut self, waited: Duration) -> Duration {
        if !self.holding || self.rest == 0 || waited.is_zero() {
            return Duration::ZERO;
        }
        let rest = waited.saturating_mul(self.rest).min(self.hold);
        self.stats.rests += 1;
        self.stats.rested += rest;
        rest
    }

    /// Counts a wait of `waited` at the appender's gate before a step.
    pub(crate) fn waited_at_gate(&mut self, waited: Duration) {
        self.stats.gate_waits += 1;
        self.stats.gate_waited += waited;
    }

    pub(crate) fn stats(&self) -> PacingStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const MS: Duration = Duration::from_millis(1);

    /// Feeds steps of the length the pacer asks for, each `(ms after the
    /// start, grown)`, and returns `(next step in KiB, steps in flight)`.
    fn run(pacer: &mut Pacer, start: Instant, steps: &[(u64, bool)]) -> Vec<(u64, usize)> {
        steps
            .iter()
            .map(|&(at, grown)| {
                let next = pacer.step_done(pacer.step_len(), grown, start + MS * at as u32);
                (next / KIB, pacer.in_flight())
            })
            .collect()
    }

    /// `n` steps without growth, 1 ms apart from `from` ms.
    fn quiet(from: u64, n: u64) -> Vec<(u64, bool)> {
        (from..from + n).map(|t| (t, false)).collect()
    }

    #[test]
    fn without_appends_the_steps_double_from_the_minimum_to_full_length() {
        let t0 = Instant::now();
        let mut p = Pacer::new(&Pacing::adaptive(), 1024 * KIB, false);
        assert_eq!(p.step_len(), 32 * KIB);
        let mut expected = vec![(64, 2), (128, 2), (256, 2), (512, 2)];
        expected.extend([(1024, 2); 16]);
        assert_eq!(run(&mut p, t0, &quiet(0, 20)), expected);
        assert_eq!(p.stats().shortest_step, 32 * KIB);
        // The same rule from another minimum.
        let mut p = Pacer::new(&Pacing::adaptive().min_step(64 * KIB), 1024 * KIB, false);
        assert_eq!(p.step_len(), 64 * KIB);
        let mut expected = vec![(128, 2), (256, 2), (512, 2)];
        expected.extend([(1024, 2); 17]);
        assert_eq!(run(&mut p, t0, &quiet(0, 20)), expected);
        assert_eq!(p.stats().yields, 0);
        assert_eq!(p.stats().steps, 20);
        assert_eq!(p.stats().shortest_step, 64 * KIB);
    }

    #[test]
    fn an_append_drops_the_step_to_the_minimum_one_at_a_time() {
        let t0 = Instant::now();
        let mut p = Pacer::new(&Pacing::adaptive().min_step(64 * KIB), 1024 * KIB, false);
        let grown: Vec<_> = (0..4).map(|t| (t, true)).collect();
        assert_eq!(run(&mut p, t0, &grown), [(64, 1); 4]);
        assert_eq!(p.stats().yields, 4);
        assert_eq!(p.stats().shortest_step, 64 * KIB);
    }

    #[test]
    fn short_steps_are_held_for_the_hold_after_the_last_growth() {
        let t0 = Instant::now();
        let mut p = Pacer::new(&Pacing::adaptive().min_step(64 * KIB), 512 * KIB, false);
        run(&mut p, t0, &[(0, true), (1, true), (2, true)]);
        assert_eq!(p.step_len(), 64 * KIB);
        // Quiet steps within a second of the last growth change nothing.
        assert_eq!(
            run(&mut p, t0, &[(10, false), (500, false), (1001, false)]),
            [(64, 1), (64, 1), (64, 1)]
        );
        // From one second on, each quiet step doubles, with two in flight.
        assert_eq!(
            run(&mut p, t0, &quiet(1002, 5)),
            [(128, 2), (256, 2), (512, 2), (512, 2), (512, 2)]
        );
    }

    #[test]
    fn a_rare_appender_keeps_the_steps_short() {
        // One append every 200 ms, far slower than the steps: the steps
        // never grow back.
        let t0 = Instant::now();
        let mut p = Pacer::new(&Pacing::adaptive().min_step(64 * KIB), 1024 * KIB, false);
        let steps: Vec<_> = (0..3000).map(|t| (t, t % 200 == 0)).collect();
        let out = run(&mut p, t0, &steps);
        assert!(out.iter().all(|&s| s == (64, 1)), "{:?}", &out[..10]);
        assert_eq!(p.stats().yields, 15);
    }

    #[test]
    fn a_shorter_hold_gives_the_speed_back_sooner() {
        let t0 = Instant::now();
        let mut p = Pacer::new(
            &Pacing::adaptive()
                .hold(Duration::from_millis(10))
                .min_step(256 * KIB),
            1024 * KIB,
            false,
        );
        assert_eq!(
            run(
                &mut p,
                t0,
                &[(0, true), (5, false), (10, false), (11, false), (12, false)]
            ),
            [(256, 1), (256, 1), (512, 2), (1024, 2), (1024, 2)]
        );
    }

    #[test]
    fn the_bounds_are_sane_whatever_is_asked() {
        let t0 = Instant::now();
        // A minimum above the maximum is lowered to it: every step is full.
        let mut p = Pacer::new(&Pacing::adaptive().min_step(8192 * KIB), 1024 * KIB, true);
        assert_eq!(
            run(&mut p, t0, &[(0, true), (1, false)]),
            [(1024, 1), (1024, 1)]
        );
        assert_eq!(Pacing::adaptive().min_step(1).min_step, Some(4096));
        assert_eq!(Pacing::adaptive().in_flight(0).in_flight, 1);
        let p = Pacer::new(&Pacing::adaptive().in_flight(3), 1024 * KIB, false);
        assert_eq!(p.in_flight(), 3);
        assert!(!Pacing::off().is_adaptive());
        assert_eq!(Pacing::default(), Pacing::adaptive());
    }

    #[test]
    fn the_rewriter_rests_only_while_the_steps_are_held_short() {
        let t0 = Instant::now();
        let mut p = Pacer::new(&Pacing::adaptive(), 1024 * KIB, false);
        // Nobody appends: no rest, however long the wait.
        run(&mut p, t0, &quiet(0, 3));
        assert_eq!(p.rest_after(MS * 3), Duration::ZERO);
        // An append: four times the wait, from the next step on.
        run(&mut p, t0, &[(3, true)]);
        assert_eq!(p.rest_after(MS * 3), MS * 12);
        run(&mut p, t0, &[(500, false)]);
        assert_eq!(p.rest_after(MS / 2), MS * 2);
        // A wait of nothing is no rest, and a long one rests the hold.
        assert_eq!(p.rest_after(Duration::ZERO), Duration::ZERO);
        assert_eq!(p.rest_after(MS * 400), DEFAULT_HOLD);
        // Once the hold is over, the rests are too.
        run(&mut p, t0, &[(1004, false)]);
        assert_eq!(p.rest_after(MS * 3), Duration::ZERO);
        let stats = p.stats();
        assert_eq!(stats.rests, 3);
        assert_eq!(stats.rested, MS * 14 + DEFAULT_HOLD);
    }

    #[test]
    fn the_rest_is_the_one_set_and_none_by_default_with_a_gate() {
        let t0 = Instant::now();
        let grown = [(0, true)];
        let mut p = Pacer::new(&Pacing::adaptive(), 1024 * KIB, true);
        run(&mut p, t0, &grown);
        assert_eq!(p.rest_after(MS), Duration::ZERO);
        let mut p = Pacer::new(&Pacing::adaptive().rest(2), 1024 * KIB, true);
        run(&mut p, t0, &grown);
        assert_eq!(p.rest_after(MS), MS * 2);
        let mut p = Pacer::new(&Pacing::adaptive().rest(0), 1024 * KIB, false);
        run(&mut p, t0, &grown);
        assert_eq!(p.rest_after(MS), Duration::ZERO);
        assert_eq!(p.stats().rests, 0);
    }

    #[test]
    fn a_gated_rewrite_starts_from_the_gated_minimum_unless_told_otherwise() {
        let t0 = Instant::now();
        let mut p = Pacer::new(&Pacing::adaptive(), 1024 * KIB, true);
        assert_eq!(p.step_len(), 32 * KIB);
        assert_eq!(
            run(&mut p, t0, &[(0, false), (1, true)]),
            [(64, 2), (32, 1)]
        );
        let p = Pacer::new(&Pacing::adaptive().min_step(64 * KIB), 1024 * KIB, true);
        assert_eq!(p.step_len(), 64 * KIB);
    }
}
