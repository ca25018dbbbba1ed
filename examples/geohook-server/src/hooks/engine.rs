//! The server's hook engine: the registry and outbox of `geohook-hooks`, fed
//! by the write path through [`ChangeSink`].
//!
//! Only the leader queues and delivers events; fence state is kept on every
//! node so that a promoted follower detects enter and exit correctly.
//!
//! Lifecycle exits (`geohook-hooks`' `lifecycle.rs`) are sent from here:
//! before a DEL's `del` events (fence state still holds the stays), and
//! after a DROP, FLUSHDB or hook expiry is committed, from exits staged
//! before the removal ([`HookEngine::before_drop`]) or by the expiry.

use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

use geohook_db::{Database, Glob, Object, SearchOpts};
use geohook_hooks::{Change, Hooks, Journal, Neighbors};

use crate::aof::Fsync;
use crate::change::{self, ChangeSink};
use crate::cli::HookArgs;
use crate::clock::unix_ms;
use crate::cmd::spec::Cmd;

/// The hooks of one server.
#[derive(Debug)]
pub(crate) struct HookEngine {
    /// The registry, its fence state and its delivery queues.
    pub(crate) hooks: Hooks,
    /// The journal's compaction threshold in bytes, once a journal is open.
    journal_compact_size: OnceLock<u64>,
}

/// The hook journal's file name inside the data directory.
pub(crate) const JOURNAL_NAME: &str = "hooks.journal";

impl HookEngine {
    /// Builds an empty engine (leader role).
    ///
    /// # Errors
    ///
    /// The flags give an invalid queue configuration.
    pub(crate) fn new(args: &HookArgs) -> Result<HookEngine, geohook_hooks::Error> {
        Ok(HookEngine {
            hooks: Hooks::new(args.queue_config())?,
            journal_compact_size: OnceLock::new(),
        })
    }

    /// Opens (repairing a torn tail) the hook journal in `dir` and queues
    /// again the events it holds that were not delivered. Call after the log
    /// is replayed, so that their hooks exist, and before any client writes.
    /// The journal's fsyncs are marked on `gate`, and its compactions wait
    /// at it (the log's gate, so that both files' rewrites yield to both
    /// files' fsyncs).
    ///
    /// # Errors
    ///
    /// The journal cannot be read or is damaged before its tail.
    pub(crate) fn open_journal(
        &self,
        dir: &Path,
        compact_size: u64,
        gate: aof_compactor::SyncGate,
    ) -> Result<(), geohook_hooks::Error> {
        let opened = Journal::open(dir.join(JOURNAL_NAME))?;
        if opened.repaired_bytes > 0 {
            tracing::warn!(
                bytes = opened.repaired_bytes,
                "hook journal: cut a torn tail (kept in a sidecar file)"
            );
        }
        let n = self.hooks.outbox().attach_journal(
            opened.journal.with_sync_gate(gate),
            opened.pending,
            opened.next_id,
        )?;
        tracing::info!(events = n, "hook journal: events queued again");
        let _ = self.journal_compact_size.set(compact_size);
        Ok(())
    }

    /// The journal and its compaction threshold, when one is open.
    pub(crate) fn journal(&self) -> Option<(&Journal, u64)> {
        Some((
            self.hooks.outbox().journal()?,
            *self.journal_compact_size.get()?,
        ))
    }

    /// Writes the journal's buffered records (the events a batch of writes
    /// queued) and fsyncs them under `always`, like the log.
    ///
    /// # Errors
    ///
    /// The write or fsync failed.
    pub(crate) fn flush_journal(&self, fsync: Fsync) -> Result<(), geohook_hooks::Error> {
        self.hooks.outbox().flush_journal(fsync == Fsync::Always)
    }

    /// A client's DROP of `key` (or, with `None`, FLUSHDB) is about to
    /// remove objects: stages the lifecycle exits of those inside fences,
    /// with the objects read from `db` while they still exist. They are sent
    /// when the change sink hears the removal committed.
    pub(crate) fn before_drop(&self, db: &Database, key: Option<&str>) {
        let now = unix_ms(SystemTime::now());
        self.hooks.stage_drop_exits(key, |k, id| {
            db.get(k, id, now).ok().map(|item| item.object().clone())
        });
    }
}

impl ChangeSink for HookEngine {
    fn on_change(&self, c: &change::Change<'_>) {
        // Most writes go to keys no fence is on: those skip the second
        // lookup of the id below, which perf put at 4 to 7% of the server's
        // time in a SET benchmark, and the clock read.
        if c.cmd == Cmd::Set && !self.hooks.watches(c.key) {
            return;
        }
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
                let near = DbNeighbors {
                    db: c.db,
                    now_ms: unix_ms(time),
                };
                self.hooks.on_change_near(
                    &Change::set(c.key, id, old, item.object(), Some(item.fields()), time),
                    &near,
                );
            }
            // An expiry is logged as a DEL and reported the same way. The
            // lifecycle exits go first, while fence state still holds the
            // stays the `del` ends.
            Cmd::Del | Cmd::Pdel => {
                for (id, old) in c.before {
                    self.hooks.exit_on_removal(c.key, id, old, time);
                    self.hooks.on_change(&Change::del(c.key, id, old, time));
                }
            }
            Cmd::Drop => {
                self.hooks.emit_drop_exits(Some(c.key), time);
                self.hooks.on_change(&Change::drop(c.key, time));
            }
            // FLUSHDB sends no event of its own, as in Tile38; its lifecycle
            // exits do, and fence state is cleared.
            Cmd::Flushdb => {
                self.hooks.emit_drop_exits(None, time);
            }
            // A hook that expired is logged as DELHOOK (DELCHAN): its staged
            // exits go out now, the objects read from the data as they are.
            Cmd::Delhook | Cmd::Pdelhook | Cmd::Delchan | Cmd::Pdelchan => {
                let now = unix_ms(time);
                self.hooks.emit_hook_expiry_exits(
                    |k, id| c.db.get(k, id, now).ok().map(|item| item.object().clone()),
                    time,
                );
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

/// The database as roam fences see it: the live objects near a position.
struct DbNeighbors<'a> {
    db: &'a Database,
    now_ms: i64,
}

impl Neighbors for DbNeighbors<'_> {
    fn near(&self, key: &str, object: &Object, meters: f64, f: &mut dyn FnMut(&str, &Object, f64)) {
        let Some(center) = object.center() else {
            return;
        };
        let page = self.db.nearby(
            key,
            &center,
            Some(meters),
            &SearchOpts::default(),
            self.now_ms,
        );
        for hit in page.hits {
            f(hit.id, hit.item.object(), hit.distance.unwrap_or(0.0));
        }
    }

    fn scan(&self, key: &str, pattern: &str, f: &mut dyn FnMut(&str, &Object)) {
        let glob = Glob::new(pattern);
        // Ids are kept in order, so the ids that can match lie in one run that starts at the
        // pattern's literal part (up to its first wildcard): the walk reads only that run, as
        // Tile38's range scan does.
        let prefix = &pattern[..pattern.find(['*', '?']).unwrap_or(pattern.len())];
        if let Ok(item) = self.db.get(key, prefix, self.now_ms) {
            if glob.is_match(prefix) {
                f(prefix, item.object());
            }
        }
        for (k, id, item) in self.db.iter_after(Some((key, prefix)), self.now_ms) {
            if k != key || !id.starts_with(prefix) {
                break;
            }
            if glob.is_match(id) {
                f(id, item.object());
            }
        }
    }
}
