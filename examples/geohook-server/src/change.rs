//! What the write path tells the rest of the server about each committed
//! change, and the trait through which it tells it (hooks plug in here).

use geohook_db::{Database, Object};

use crate::cmd::spec::Cmd;

/// One committed change: which command, about which key and object, the
/// data after it, and the objects before it.
#[derive(Debug)]
pub(crate) struct Change<'a> {
    /// The command as logged (an expiry is logged, and reported, as a DEL).
    pub(crate) cmd: Cmd,
    /// The collection key (empty for hook commands and FLUSHDB).
    pub(crate) key: &'a str,
    /// The object id, when the change is about one object.
    pub(crate) id: Option<&'a str>,
    /// The data after the change, for sinks that need the new object.
    pub(crate) db: &'a Database,
    /// The objects the change removed or replaced, by id, as they were
    /// before it (SET over an existing id, DEL, PDEL, an expiry).
    pub(crate) before: &'a [(&'a str, &'a Object)],
}

/// Receives every committed change, in log order, while the write lock is
/// held. It must not block, only enqueue.
pub(crate) trait ChangeSink: Send + Sync + std::fmt::Debug {
    /// Called once per committed change.
    fn on_change(&self, change: &Change<'_>);
}
