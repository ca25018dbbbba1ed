//! The one wall clock of the server: milliseconds since the Unix epoch, the
//! unit the database, the log's absolute deadlines and the hooks run on.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch now.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(unix_ms(SystemTime::now())).unwrap_or(0)
}

/// `t` in milliseconds since the Unix epoch; 0 before it, saturating after
/// `i64::MAX`.
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The instant `ms` milliseconds after the Unix epoch (negative = the epoch).
pub(crate) fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
