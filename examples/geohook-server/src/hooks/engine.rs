//! The server's hook engine: the registry and outbox of `geohook-hooks`, fed
//! by the write path through [`ChangeSink`].
//!
//! Only the leader queues and delivers events; fence state is kept on every
//! node so that a promoted follower detects enter and exit correctly.

use std::time::SystemTime;

use geohook_hooks::{Change, Hooks};

use crate::change::{self, ChangeSink};
use crate::cli::HookArgs;
use crate::clock::unix_ms;
use crate::cmd::spec::Cmd;

/// The hooks of one server.
#[derive(Debug)]
pub(crate) struct HookEngine {
    /// The registry, its fence state and its delivery queues.
    pub(crate) hooks: Hooks,
}

impl HookEngine {
    /// Builds an empty engine (leader role).
    ///
    /// # Errors
    ///
    /// The flags give an invalid queue configuration.
    pub(crate) fn new(args: &HookArgs) -> Result<HookEngine, geohook_hooks::Error> {
        Ok(HookEngine {
            hooks: Hooks::new(args.queue_config())?,
        })
    }
}

impl ChangeSink for HookEngine {
    fn on_change(&self, c: &change::Change<'_>) {
        let time = SystemTime::now();
        match c.cmd {
            Cmd::Set => {
                let Some(id) = c.id else { return };
                // A SET with a deadline already past leaves nothing live to
                // report.
                let Ok(item) = c.db.get(c.key, id, unix_ms(time)) else {
                    return;
                };
                let old = c.before.first().map(|(_, o)| *o);
                self.hooks.on_change(&Change::set(
                    c.key,
                    id,
                    old,
                    item.object(),
                    Some(item.fields()),
                    time,
                ));
            }
            // An expiry is logged as a DEL and reported the same way.
            Cmd::Del | Cmd::Pdel => {
                for (id, old) in c.before {
                    self.hooks.on_change(&Change::del(c.key, id, old, time));
                }
            }
            Cmd::Drop => {
                self.hooks.on_change(&Change::drop(c.key, time));
            }
            Cmd::Fset => {
                // Only an FSET that changed a value is committed and reaches
                // here.
                let Some(id) = c.id else { return };
                let Ok(item) = c.db.get(c.key, id, unix_ms(time)) else {
                    return;
                };
                self.hooks
                    .on_change(&Change::fset(c.key, id, item.object(), item.fields(), time));
            }
            _ => {}
        }
    }
}
