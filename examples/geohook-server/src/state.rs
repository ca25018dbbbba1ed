//! The state shared by every connection and background task, and the one
//! write path every change goes through ([`Core::commit`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use geohook_db::{Database, Object};
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::admission::{self, HeavyPool, MaxMemory, Pressure};
use crate::aof::{Aof, AofError, Fsync};
use crate::change::{Change, ChangeSink};
use crate::cmd::spec::{Cmd, Spec};
use crate::hooks::engine::HookEngine;
use crate::metrics::Metrics;
use crate::repl::state::Repl;
use crate::settings::Settings;
use geohook_resp::Limits;

/// Options fixed at start from the command line.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The data directory.
    pub(crate) dir: PathBuf,
    /// When the append-only file is fsynced.
    pub(crate) fsync: Fsync,
    /// Request caps.
    pub(crate) limits: Limits,
    /// Most connections one client address may hold open.
    pub(crate) max_conns_per_addr: usize,
    /// Most client connections in total.
    pub(crate) max_clients: usize,
    /// The address the server listens on, for SERVER and INFO.
    pub(crate) listen: String,
    /// The per-connection output budget and slow-peer timeouts.
    pub(crate) output: crate::output::OutputLimits,
    /// Most heavy commands running at once (0 = no pool).
    pub(crate) heavy_pool: usize,
    /// The scheduling priority of the heavy pool's threads.
    pub(crate) heavy_priority: crate::admission::HeavyPriority,
    /// The budgets of Lua scripts and of their cache.
    pub(crate) scripts: crate::scripts::ScriptLimits,
}

/// The data and its log, guarded together so that the log order is the
/// apply order.
#[derive(Debug)]
pub(crate) struct Core {
    /// The objects.
    pub(crate) db: Database,
    /// The append-only file.
    pub(crate) aof: Aof,
    /// True while the file is being replayed at start (or a leader's command
    /// applied on a follower): nothing is logged.
    pub(crate) loading: bool,
}

/// Everything the connections and tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Options fixed at start.
    pub(crate) opts: Options,
    /// The data and its log.
    pub(crate) core: RwLock<Core>,
    /// Run-time settings (CONFIG GET/SET/REWRITE).
    pub(crate) settings: RwLock<Settings>,
    pub(crate) metrics: Arc<Metrics>,
    /// Fires when the server stops accepting and drains.
    pub(crate) shutdown: CancellationToken,
    /// READONLY yes.
    pub(crate) readonly: AtomicBool,
    /// True while a shrink (or a follower's full sync) owns the file.
    pub(crate) shrinking: AtomicBool,
    /// When the process started.
    pub(crate) started: Instant,
    /// Where committed changes go (the hooks).
    pub(crate) changes: Option<Arc<dyn ChangeSink>>,
    /// The compactor's handle: AOFSHRINK, CONFIG SET aofshrink-*, status.
    pub(crate) compactor: OnceLock<aof_compactor::Handle>,
    /// The last completed shrink: the logical offset when it started and the
    /// file size it left.
    pub(crate) last_shrink: parking_lot::Mutex<Option<(u64, u64)>>,
    /// The memory watchdog, when configured.
    pub(crate) memwatch: OnceLock<memwatch::Watcher>,
    /// The `maxmemory` state the memory task keeps.
    pub(crate) maxmemory: MaxMemory,
    /// The bounded pool heavy commands run through.
    pub(crate) heavy: HeavyPool,
    /// Geofence hooks (SETHOOK and friends), set once at start.
    pub(crate) hooks: OnceLock<Arc<HookEngine>>,
    /// False while this node follows a leader (`FOLLOW host port`); the
    /// replication glue owns it. Read through [`Shared::is_leader`].
    pub(crate) leader: AtomicBool,
    /// Replication: role, leader backlog, follower task (set once at start).
    pub(crate) repl: OnceLock<Arc<Repl>>,
    /// The scripts SCRIPT LOAD and EVAL cached, by SHA-1.
    pub(crate) scripts: crate::scripts::ScriptCache,
    /// The MONITOR connections and their queues.
    pub(crate) monitors: crate::monitor::Monitors,
}

impl Shared {
    /// Builds the shared state around an opened core.
    pub(crate) fn new(
        opts: Options,
        core: Core,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Shared {
        Shared {
            heavy: HeavyPool::new(opts.heavy_pool).with_priority(opts.heavy_priority),
            scripts: crate::scripts::ScriptCache::new(opts.scripts),
            opts,
            core: RwLock::new(core),
            // READONLY yes survives a restart, as in Tile38.
            readonly: AtomicBool::new(settings.read_only),
            settings: RwLock::new(settings),
            metrics,
            shutdown: CancellationToken::new(),
            shrinking: AtomicBool::new(false),
            started: Instant::now(),
            changes: None,
            compactor: OnceLock::new(),
            memwatch: OnceLock::new(),
            maxmemory: MaxMemory::default(),
            hooks: OnceLock::new(),
            last_shrink: parking_lot::Mutex::new(None),
            leader: AtomicBool::new(true),
            repl: OnceLock::new(),
            monitors: crate::monitor::Monitors::default(),
        }
    }

    /// True unless this node follows a leader. Only a leader expires
    /// objects into its log and queues hook events; a follower takes both
    /// from its leader's stream.
    pub(crate) fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Refuses a command that adds data while memory is under pressure:
    /// memwatch's level is elevated (or it fired), or the allocated bytes
    /// are over `maxmemory`. Two atomic loads; counted by reason and
    /// command.
    ///
    /// # Errors
    ///
    /// The pressure that refused it.
    pub(crate) fn admit(&self, spec: &Spec) -> Result<(), Pressure> {
        let soft = self
            .memwatch
            .get()
            .is_some_and(memwatch::Watcher::is_under_pressure);
        let r = admission::admit(spec, soft, self.maxmemory.is_over());
        if let Err(p) = r {
            self.metrics.refused(p, spec);
        }
        r
    }

    /// True when writes are refused by READONLY.
    pub(crate) fn is_readonly(&self) -> bool {
        self.readonly.load(Ordering::Relaxed)
    }

    /// Writes the commands committed with [`When::Deferred`]
    /// (anyone's: one write serves every connection whose batch is done)
    /// and, under `always`, fsyncs. A connection calls it after a batch that
    /// wrote and before it sends the batch's replies.
    ///
    /// # Errors
    ///
    /// The write or fsync failed (and is latched); the replies must not go out.
    pub(crate) fn flush_aof(&self) -> Result<(), AofError> {
        self.flush_aof_locked(&mut self.core.write())
    }

    /// [`Shared::flush_aof`] under a write lock the caller already holds:
    /// a write that ends its connection's batch flushes before it lets the
    /// lock go, rather than take it a second time for the flush (each take
    /// may wait for a slice of a heavy search).
    ///
    /// # Errors
    ///
    /// As [`Shared::flush_aof`].
    pub(crate) fn flush_aof_locked(&self, core: &mut Core) -> Result<(), AofError> {
        // The hook events these writes queued are acknowledged with them:
        // same moment, same fsync policy. The journal goes first, as in
        // `flush_task`: a crash between the two writes can then leave an
        // event for a write the log lost (it was never acknowledged), but
        // never a write in the log whose events are gone, which a client's
        // retry could not bring back (the object is already there).
        self.flush_hook_journal(core)?;
        core.aof.flush()?;
        if self.opts.fsync == Fsync::Always {
            core.aof.sync()?;
        }
        Ok(())
    }

    /// Writes the hook events that commits made under `core`'s lock queued
    /// (fsynced under `always`, like the log). A connection's flush and
    /// [`Shared::flush_task`] call it before the log's. A failure is
    /// latched like the log's own.
    ///
    /// # Errors
    ///
    /// The journal's write or fsync failed (now latched in the log).
    pub(crate) fn flush_hook_journal(&self, core: &mut Core) -> Result<(), AofError> {
        if let Some(Err(e)) = self.hooks.get().map(|h| h.flush_journal(self.opts.fsync)) {
            core.aof.poison(e.to_string());
            core.aof.check()?;
        }
        Ok(())
    }

    /// Writes what a background task committed with a deferred writer (an
    /// expiry): the hook events its commits queued first, then the log, each
    /// fsynced under `always`. An expiry has no reply to wait for, so the
    /// log is its commit point; with the journal written first, a crash
    /// between the two writes can only repeat the expiry and its events
    /// after the restart, never leave an expiry in the log whose exits are
    /// lost.
    ///
    /// # Errors
    ///
    /// A write or fsync failed (and is latched).
    pub(crate) fn flush_task(&self, core: &mut Core) -> Result<(), AofError> {
        self.flush_hook_journal(core)?;
        if self.opts.fsync == Fsync::Always {
            core.aof.sync()
        } else {
            core.aof.flush()
        }
    }

    /// How a client's write reaches the file: with the connection's flush
    /// before its batch's replies, and to the hooks.
    pub(crate) fn client_writer(&self) -> Writer<'_> {
        Writer {
            when: When::Deferred,
            sink: self.changes.as_ref(),
        }
    }

    /// How a background task's write (an expiry) reaches the file: at once,
    /// fsynced under `always`, and to the hooks.
    pub(crate) fn task_writer(&self) -> Writer<'_> {
        Writer {
            when: When::Now(self.opts.fsync),
            sink: self.changes.as_ref(),
        }
    }
}

/// When a committed command reaches the append-only file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// Before the commit returns, fsynced too under `always`.
    Now(Fsync),
    /// With the log's next flush: a client's pipelined batch, which the
    /// connection flushes with [`Shared::flush_aof`] (one `write(2)`, and an
    /// fsync under `always`) before it replies. Any other write to the log
    /// writes the pending commands first, so the file keeps commit order.
    Deferred,
}

/// Where a commit goes: when it reaches the file, and which sink hears of
/// it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer<'a> {
    pub(crate) when: When,
    pub(crate) sink: Option<&'a Arc<dyn ChangeSink>>,
}

impl Writer<'_> {
    /// Replay at start (or a follower applying its leader's command): the
    /// core is loading, so nothing is written and no sink is told.
    pub(crate) fn replay() -> Writer<'static> {
        Writer {
            when: When::Now(Fsync::No),
            sink: None,
        }
    }

    /// A follower applying its leader's command: nothing is written (the
    /// follower writes the leader's bytes itself), but `sink` is told, so
    /// that the follower keeps fence state and its channel subscribers and
    /// live fences hear its own matching, as in Tile38.
    pub(crate) fn replicated(sink: Option<&Arc<dyn ChangeSink>>) -> Writer<'_> {
        Writer {
            when: When::Now(Fsync::No),
            sink,
        }
    }
}

/// One change as it is logged: the command, its exact logged form, and what
/// the change sink needs to know about it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    pub(crate) cmd: Cmd,
    /// The logged command, name first (lower case).
    pub(crate) args: &'a [&'a [u8]],
    /// The collection key (empty for hook commands and FLUSHDB).
    pub(crate) key: &'a str,
    /// The object id, when the change is about one object.
    pub(crate) id: Option<&'a str>,
    /// The objects the change removed or replaced, as they were.
    pub(crate) before: &'a [(&'a str, &'a Object)],
}

impl<'a> Record<'a> {
    /// A record with no object removed or replaced.
    pub(crate) fn new(
        cmd: Cmd,
        args: &'a [&'a [u8]],
        key: &'a str,
        id: Option<&'a str>,
    ) -> Record<'a> {
        Record {
            cmd,
            args,
            key,
            id,
            before: &[],
        }
    }

    /// What the change sink hears of this record.
    fn change<'b>(&'b self, db: &'b geohook_db::Database) -> Change<'b> {
        Change {
            cmd: self.cmd,
            key: self.key,
            id: self.id,
            db,
            before: self.before,
        }
    }
}

impl Core {
    /// Refuses a write before it touches memory when the log has failed, so
    /// that memory never runs ahead of a file known to be broken.
    ///
    /// # Errors
    ///
    /// The latched log failure.
    pub(crate) fn writable(&self) -> Result<(), AofError> {
        if self.loading {
            return Ok(());
        }
        self.aof.check()
    }

    /// The one write path: appends the applied command's logged form to the
    /// log (at the moment `w.when` says) and tells the change sink. While
    /// loading nothing is logged, and only a [`Writer::replicated`] sink is
    /// told.
    ///
    /// # Errors
    ///
    /// The write or fsync failed, now or earlier (latched).
    pub(crate) fn commit(&mut self, w: &Writer<'_>, rec: Record<'_>) -> Result<(), AofError> {
        if self.loading {
            if let Some(sink) = w.sink {
                sink.on_change(&rec.change(&self.db));
            }
            return Ok(());
        }
        match w.when {
            When::Now(fsync) => {
                self.aof.append(rec.args)?;
                if fsync == Fsync::Always {
                    self.aof.sync()?;
                }
            }
            When::Deferred => {
                self.aof.append_deferred(rec.args)?;
            }
        }
        if let Some(sink) = w.sink {
            sink.on_change(&rec.change(&self.db));
        }
        Ok(())
    }
}

/// A server state with its log at `path`, `appendfsync always`, and no
/// hooks or replication, for the unit tests.
#[cfg(test)]
pub(crate) fn shared_on(path: &std::path::Path) -> Shared {
    let opts = Options {
        dir: std::env::temp_dir(),
        fsync: Fsync::Always,
        limits: geohook_resp::Limits::default(),
        max_conns_per_addr: 1,
        max_clients: 1,
        listen: String::new(),
        output: crate::output::OutputLimits::default(),
        heavy_pool: 2,
        heavy_priority: crate::admission::HeavyPriority::default(),
        scripts: crate::scripts::ScriptLimits::default(),
    };
    let core = Core {
        db: geohook_db::Database::new(),
        aof: Aof::open(path).unwrap(),
        loading: false,
    };
    Shared::new(opts, core, Default::default(), Default::default())
}
