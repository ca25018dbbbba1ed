//! The crate's one error type.

use std::borrow::Cow;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while scanning, reading, writing or repairing a log.
///
/// Environment failures ([`Error::Io`], [`Error::Locked`]) are kept apart from data failures
/// ([`Error::Corrupt`], [`Error::TornTail`]): only a torn tail is ever repaired, and never because of an
/// I/O error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused a read, write, sync, lock or truncate.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The log is damaged somewhere other than a torn tail: valid data may follow the damage, so it is
    /// never truncated automatically.
    #[error("{} is corrupt at offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// File offset of the first byte that is not part of a whole, valid record.
        offset: u64,
        /// What the format said about the bytes at `offset`.
        reason: Cow<'static, str>,
    },
    /// The log ends in a torn (or zero-filled) tail that the current policy does not allow repairing, or
    /// a reader met a record cut short.
    #[error("{} has a torn tail: {discarded} bytes after offset {offset} are not a whole record", path.display())]
    TornTail {
        /// The file.
        path: PathBuf,
        /// End of the last whole record.
        offset: u64,
        /// Bytes after `offset`.
        discarded: u64,
    },
    /// Repair would discard more bytes than [`Config::max_discard`](crate::Config::max_discard) allows.
    #[error("repairing {} would discard {discarded} bytes after offset {offset}, more than the cap of {cap}", path.display())]
    DiscardCapExceeded {
        /// The file.
        path: PathBuf,
        /// End of the last whole record.
        offset: u64,
        /// Bytes repair would remove.
        discarded: u64,
        /// The configured cap.
        cap: u64,
    },
    /// [`cut_at`](crate::cut_at) was asked to cut beyond the end of the log.
    #[error("cannot cut {} at offset {offset}: the file is only {len} bytes long", path.display())]
    OffsetPastEnd {
        /// The file.
        path: PathBuf,
        /// The offset asked for.
        offset: u64,
        /// The file's length.
        len: u64,
    },
    /// Another process holds the lock on the log.
    #[error("{} is locked by another process", path.display())]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// The one-attempt helper repaired the log (or found nothing to repair) and reading still failed.
    #[error("{} is still unreadable after one repair attempt", path.display())]
    StillBroken {
        /// The file.
        path: PathBuf,
        /// The error from the read after the repair attempt.
        #[source]
        source: Box<Error>,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {field} {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why it is rejected.
        reason: &'static str,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// True for errors that describe the log's bytes (corrupt or torn), false for environment failures.
    #[must_use]
    pub fn is_data_error(&self) -> bool {
        matches!(self, Self::Corrupt { .. } | Self::TornTail { .. })
    }
}
