//! Memory admission: whether a command may add data now. The command table
//! says which commands add data ([`Spec::adds_data`]); this file decides
//! whether memory allows them, from memwatch's soft level and Tile38's
//! `maxmemory` property, and keeps the `maxmemory` state with its
//! hysteresis. Reads, deletes, DROP, FLUSHDB, administration and
//! replication are never refused here: they are how memory comes back.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::cmd::spec::Spec;

/// How far below `maxmemory` the allocated bytes must fall, as a fraction
/// of it, before writes that add data are accepted again. The same 5 % as
/// memwatch's default hysteresis, so that the two paths behave alike.
pub(crate) const MAXMEMORY_HYSTERESIS: f64 = 0.05;

/// Why a command that adds data was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Pressure {
    /// memwatch's level is elevated (at or above its soft level) or it
    /// fired.
    Soft,
    /// jemalloc's allocated bytes are above `maxmemory`.
    MaxMemory,
}

impl Pressure {
    /// The metrics label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Pressure::Soft => "memwatch_soft",
            Pressure::MaxMemory => "maxmemory",
        }
    }
}

/// The `maxmemory` state, set by the memory task from jemalloc's
/// allocated bytes and read by every command that adds data (one atomic
/// load).
#[derive(Debug, Default)]
pub(crate) struct MaxMemory {
    over: AtomicBool,
}

impl MaxMemory {
    /// True while writes that add data are refused for `maxmemory`.
    pub(crate) fn is_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// Takes one reading of the allocated bytes against `maxmemory` (0 =
    /// off) and returns the new state: over once `allocated > maxmemory`,
    /// and over until it is at or below `maxmemory` less the hysteresis.
    pub(crate) fn observe(&self, allocated: u64, maxmemory: u64) -> bool {
        let over = if maxmemory == 0 {
            false
        } else if self.is_over() {
            let resume = maxmemory - (maxmemory as f64 * MAXMEMORY_HYSTERESIS) as u64;
            allocated > resume
        } else {
            allocated > maxmemory
        };
        self.over.store(over, Ordering::Relaxed);
        over
    }
}

/// The admission decision for one command: a command that adds data is
/// refused while either kind of pressure holds; every other command runs.
///
/// # Errors
///
/// The pressure that refused it (the soft level first).
pub(crate) fn admit(spec: &Spec, soft_level: bool, over_maxmemory: bool) -> Result<(), Pressure> {
    if !spec.adds_data {
        return Ok(());
    }
    if soft_level {
        return Err(Pressure::Soft);
    }
    if over_maxmemory {
        return Err(Pressure::MaxMemory);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::spec::{lookup, TABLE};

    #[test]
    fn only_commands_that_add_data_are_refused() {
        for s in TABLE {
            for (soft, over) in [(true, false), (false, true), (true, true)] {
                let r = admit(s, soft, over);
                assert_eq!(r.is_err(), s.adds_data, "{} {soft} {over}", s.name);
            }
            assert_eq!(admit(s, false, false), Ok(()), "{}", s.name);
        }
        let set = lookup("set").unwrap();
        assert_eq!(admit(set, true, true), Err(Pressure::Soft));
        assert_eq!(admit(set, false, true), Err(Pressure::MaxMemory));
    }

    #[test]
    fn maxmemory_holds_until_the_hysteresis_is_cleared() {
        let m = MaxMemory::default();
        let max = 1000;
        // (allocated, expected state) in order.
        let steps = [
            (900, false),
            (1000, false),
            (1001, true),
            (990, true),
            (951, true),
            (950, false),
            (999, false),
            (1200, true),
        ];
        for (allocated, want) in steps {
            assert_eq!(m.observe(allocated, max), want, "at {allocated}");
            assert_eq!(m.is_over(), want);
        }
        // 0 turns it off at once.
        assert!(!m.observe(u64::MAX, 0));
    }
}
