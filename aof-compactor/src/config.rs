//! The trigger policy.

use std::time::Duration;

use bytesize::ByteSize;

use crate::Error;

/// When to compact. Every field can be changed at run time through
/// [`Handle::set_config`](crate::Handle::set_config); the new values take
/// effect at the next check.
///
/// Write `Config { min_size: ByteSize::mb(256), ..Default::default() }` and
/// leave the rest alone unless you have a reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Automatic compaction starts only when the measured size is strictly
    /// greater than this. Zero turns automatic compaction off; manual runs
    /// through [`Handle::compact_now`](crate::Handle::compact_now) still work.
    ///
    /// Default: 0 (off), as in Tile38's `aofshrink-min-size`.
    pub min_size: ByteSize,

    /// When set, the size must also have grown by at least this many percent
    /// over the base size (the size reported by the last successful
    /// compaction), Redis's `auto-aof-rewrite-percentage` rule. `Some(0)` is
    /// rejected: use `None` to compact on size alone.
    ///
    /// Default: `None` (size alone decides).
    pub growth_percent: Option<u32>,

    /// How often the size is checked. Must be at least one millisecond.
    ///
    /// Default: 10 s.
    pub check_interval: Duration,

    /// After a successful run, automatic runs are suppressed for this long.
    ///
    /// Default: 60 s.
    pub cooldown: Duration,

    /// The number of consecutive failures tolerated at the normal check rate
    /// before back-off starts. Zero means back-off starts after the first
    /// failure.
    ///
    /// Default: 3 (Redis's `aofRewriteLimited`).
    pub backoff_after_failures: u32,

    /// The first back-off delay; each further consecutive failure doubles it.
    /// Must be greater than zero.
    ///
    /// Default: 60 s.
    pub backoff_initial: Duration,

    /// The back-off delay never exceeds this. Must be at least
    /// `backoff_initial`.
    ///
    /// Default: 1 h.
    pub backoff_max: Duration,

    /// When set, a run starts only if the disk holding the file has at least
    /// this percentage of the current size free (100 means "as much free space
    /// as the file takes"). The check needs a disk-space probe: one is derived
    /// automatically for a [`SizeSource::Path`](crate::SizeSource::Path), or
    /// given with [`Compactor::with_disk_space`](crate::Compactor::with_disk_space).
    ///
    /// Default: `None` (no check).
    pub min_free_percent: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_size: ByteSize(0),
            growth_percent: None,
            check_interval: Duration::from_secs(10),
            cooldown: Duration::from_secs(60),
            backoff_after_failures: 3,
            backoff_initial: Duration::from_secs(60),
            backoff_max: Duration::from_secs(3600),
            min_free_percent: None,
        }
    }
}

impl Config {
    /// Checks that the values make sense together.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first offending field.
    pub fn validate(&self) -> Result<(), Error> {
        if self.growth_percent == Some(0) {
            return Err(Error::invalid(
                "growth_percent",
                "0% growth would compact at every check; use None to compact on size alone",
            ));
        }
        if self.check_interval < Duration::from_millis(1) {
            return Err(Error::invalid("check_interval", "must be at least 1 ms"));
        }
        if self.backoff_initial.is_zero() {
            return Err(Error::invalid(
                "backoff_initial",
                "must be greater than zero",
            ));
        }
        if self.backoff_max < self.backoff_initial {
            return Err(Error::invalid(
                "backoff_max",
                format!(
                    "{:?} is less than backoff_initial {:?}",
                    self.backoff_max, self.backoff_initial
                ),
            ));
        }
        if self.min_free_percent == Some(0) {
            return Err(Error::invalid(
                "min_free_percent",
                "0% would never refuse a run; use None to skip the check",
            ));
        }
        Ok(())
    }

    /// True when automatic compaction is on (`min_size` is not zero).
    pub fn auto_enabled(&self) -> bool {
        self.min_size.as_u64() > 0
    }

    /// The back-off delay after `failures` consecutive failures, or `None`
    /// when no back-off applies yet.
    pub fn backoff_for(&self, failures: u32) -> Option<Duration> {
        if failures == 0 || failures <= self.backoff_after_failures {
            return None;
        }
        let doublings = failures - self.backoff_after_failures - 1;
        // Beyond 2^20 the cap has long been reached; clamping the exponent keeps
        // the multiplication from overflowing.
        let factor = 1u32 << doublings.min(20);
        Some(
            self.backoff_initial
                .checked_mul(factor)
                .unwrap_or(self.backoff_max)
                .min(self.backoff_max),
        )
    }

    /// The trigger rule on its own: whether `size` warrants a run given the
    /// `base` size after the last compaction.
    ///
    /// `size > min_size`, and when `growth_percent` is set,
    /// `size * 100 / max(base, 1) - 100 >= growth_percent`.
    pub fn size_triggers(&self, size: u64, base: u64) -> bool {
        if !self.auto_enabled() || size <= self.min_size.as_u64() {
            return false;
        }
        match self.growth_percent {
            None => true,
            Some(pct) => growth_percent(size, base) >= i128::from(pct),
        }
    }
}

/// Growth of `size` over `base` in whole percent, Redis's formula with a base
/// of zero treated as one byte.
pub(crate) fn growth_percent(size: u64, base: u64) -> i128 {
    let base = i128::from(base.max(1));
    i128::from(size) * 100 / base - 100
}
