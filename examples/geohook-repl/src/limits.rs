//! The caps on replication frames, as this crate's callers configure them.
//!
//! The framing itself is `geohook-resp`'s, the one RESP codec of the
//! examples; this type keeps the crate's configuration surface (its
//! validation and its error type) and converts to the codec's caps.

use geohook_resp::FrameLimits;

/// Caps applied to every frame read from a peer or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest number of arguments in one command.
    ///
    /// Default: 65 536.
    pub max_args: usize,
    /// Largest single bulk string, in bytes.
    ///
    /// Default: 64 MiB.
    pub max_bulk: usize,
    /// Longest status or error line, in bytes (without CRLF).
    ///
    /// Default: 4096.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // The codec's defaults are the replication defaults: one place for
        // the numbers.
        let d = FrameLimits::default();
        Limits {
            max_args: d.max_args,
            max_bulk: d.max_bulk,
            max_line: d.max_line,
        }
    }
}

impl Limits {
    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        let bad = |field, reason: &str| {
            Err(crate::Error::Config {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.max_args == 0 {
            return bad("limits.max_args", "must be at least 1");
        }
        if self.max_bulk == 0 {
            return bad("limits.max_bulk", "must be at least 1");
        }
        if self.max_line < 64 {
            return bad("limits.max_line", "must be at least 64");
        }
        Ok(())
    }

    /// The codec's caps for these limits.
    pub(crate) fn frame(&self) -> FrameLimits {
        FrameLimits {
            max_args: self.max_args,
            max_bulk: self.max_bulk,
            max_line: self.max_line,
        }
    }
}
