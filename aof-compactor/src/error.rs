//! The crate's single error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in this crate.
///
/// Environment failures ([`Error::Io`]) are kept apart from data that does not
/// hold together ([`Error::Corrupt`]) and from caller mistakes
/// ([`Error::InvalidConfig`]), so that a server can answer each differently.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value was rejected by [`Config::validate`](crate::Config::validate).
    /// The previous configuration stays in force.
    #[error("invalid configuration: {field}: {reason}")]
    InvalidConfig {
        /// The name of the offending field.
        field: &'static str,
        /// Why the value was rejected.
        reason: String,
    },

    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, such as `"rename"` or `"fsync"`.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The live file no longer matches what the rewrite recorded, for example it
    /// became shorter than the length recorded when the rewrite began. The live
    /// file is left untouched.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The live file.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },

    /// The compactor task has stopped, so no run can be started or awaited.
    #[error("the compactor has stopped")]
    Stopped,
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}
