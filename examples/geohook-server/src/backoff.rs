//! Exponential back-off for accept loops. When `accept` fails (most often:
//! the process is out of file descriptors), retrying at once spins a core
//! and floods the log; waiting a little longer after each consecutive
//! failure, up to a ceiling, lets connections close and descriptors return.

use std::time::Duration;

/// Consecutive-failure back-off: 5 ms, doubled after each failure, at most
/// 1 s; reset by a success.
#[derive(Debug, Clone, Default)]
pub(crate) struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The first wait.
    const FIRST: Duration = Duration::from_millis(5);
    /// The longest wait.
    const MAX: Duration = Duration::from_secs(1);

    /// Records a failure and returns how long to wait before retrying.
    pub(crate) fn failed(&mut self) -> Duration {
        let wait = Self::FIRST
            .saturating_mul(1u32 << self.failures.min(16))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    /// Records a success.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// True on the first failure of a run and then once per ten, so that a
    /// long run of failures logs a few lines, not one per retry.
    pub(crate) fn should_log(&self) -> bool {
        self.failures % 10 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<u128> = (0..10).map(|_| b.failed().as_millis()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        for _ in 0..100 {
            assert_eq!(b.failed(), Duration::from_secs(1));
        }
        b.succeeded();
        assert_eq!(b.failed(), Duration::from_millis(5));
        assert!(b.should_log());
    }
}
