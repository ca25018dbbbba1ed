//! The crate's single error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while configuring or running a [`Watcher`](crate::Watcher).
///
/// Environment failures (`Io`, `Spawn`) are kept apart from data that could
/// not be understood (`Corrupt`) and from configuration mistakes
/// (`InvalidConfig`, `InvalidEnv`, `NoLimit`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`Config`](crate::Config) field holds a value that cannot work.
    #[error("invalid memwatch configuration: {field}: {reason}")]
    InvalidConfig {
        /// The offending field, as named in `Config`.
        field: &'static str,
        /// Why the value was rejected.
        reason: String,
    },
    /// A `MEMWATCH_*` environment variable could not be parsed. The watchdog is
    /// not silently disabled: the caller decides what to do.
    #[error("invalid environment variable {var}={value:?}: {reason}")]
    InvalidEnv {
        /// The variable name.
        var: &'static str,
        /// The raw value as found in the environment.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The threshold is a fraction of the effective limit but no limit could
    /// be determined (no configured limit, no cgroup limit, no physical size).
    #[error(
        "threshold is a fraction of the effective memory limit, but no limit could be determined"
    )]
    NoLimit,
    /// Reading a kernel file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A kernel file was read but its contents could not be understood.
    #[error("malformed {path}: {reason}")]
    Corrupt {
        /// The file being parsed.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A jemalloc control (`mallctl`) failed.
    #[error("jemalloc control {name} failed: {reason}")]
    Jemalloc {
        /// The control name, for example `epoch` or `arena.4096.purge`.
        name: &'static str,
        /// The error jemalloc reported.
        reason: String,
    },
    /// An OS thread could not be started.
    #[error("could not start thread {name}: {source}")]
    Spawn {
        /// The thread name.
        name: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
