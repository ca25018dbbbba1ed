//! The state shared by every connection and background task, and the one
//! write path every change goes through.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use geohook_db::{Database, Object};
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::aof::{Aof, Fsync};
use crate::metrics::Metrics;
use crate::resp::Limits;
use crate::settings::Settings;

/// Options fixed at start from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// The data directory.
    pub dir: PathBuf,
    /// When the append-only file is fsynced.
    pub fsync: Fsync,
    /// Request caps.
    pub limits: Limits,
    /// Most connections one client address may hold open.
    pub max_conns_per_addr: usize,
    /// Most client connections in total.
    pub max_clients: usize,
    /// The address the server listens on, for SERVER and INFO.
    pub listen: String,
}

/// One change to the data, as the future hook engine and replication will
/// see it: the logged command, where it lands in the log, and the object
/// before and after.
#[derive(Debug)]
pub struct Change<'a> {
    /// The logical offset after the change was appended.
    pub offset: u64,
    /// The command as written to the append-only file.
    pub args: &'a [Vec<u8>],
    /// The collection key.
    pub key: &'a str,
    /// The object id, when the change is about one object.
    pub id: Option<&'a str>,
    /// The data after the change, for sinks that need the new object.
    pub db: &'a Database,
    /// The objects the change removed or replaced, by id, as they were
    /// before it (SET over an existing id, DEL, PDEL, an expiry).
    pub before: &'a [(&'a str, &'a Object)],
}

/// Receives every committed change, in log order, while the write lock is
/// held. Hook delivery (SETHOOK/DELHOOK/PDELHOOK/HOOKS) plugs in here; it must
/// not block, only enqueue.
pub trait ChangeSink: Send + Sync + std::fmt::Debug {
    /// Called once per committed change.
    fn on_change(&self, change: &Change<'_>);
}

/// The data and its log, guarded together so that the log order is the
/// apply order.
#[derive(Debug)]
pub struct Core {
    /// The objects.
    pub db: Database,
    /// The append-only file.
    pub aof: Aof,
    /// True while the file is being replayed at start: nothing is logged.
    pub loading: bool,
}

/// Everything the connections and tasks share.
#[derive(Debug)]
pub struct Shared {
    /// Options fixed at start.
    pub opts: Options,
    /// The data and its log.
    pub core: RwLock<Core>,
    /// Run-time settings (CONFIG GET/SET/REWRITE).
    pub settings: RwLock<Settings>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Fires when the server stops accepting and drains.
    pub shutdown: CancellationToken,
    /// READONLY yes.
    pub readonly: AtomicBool,
    /// True while a shrink runs.
    pub shrinking: AtomicBool,
    /// Commands run since start.
    pub commands_run: AtomicU64,
    /// When the process started.
    pub started: Instant,
    /// Where committed changes go (hooks, later replication).
    pub changes: Option<Arc<dyn ChangeSink>>,
    /// The compactor's handle: AOFSHRINK, CONFIG SET aofshrink-*, status.
    pub compactor: std::sync::OnceLock<aof_compactor::Handle>,
    /// The last completed shrink: the logical offset when it started and the
    /// file size it left.
    pub last_shrink: parking_lot::Mutex<Option<(u64, u64)>>,
    /// The memory watchdog, when configured.
    pub memwatch: std::sync::OnceLock<memwatch::Watcher>,
    /// Geofence hooks (SETHOOK and friends), set once at start.
    pub hooks: std::sync::OnceLock<Arc<crate::hooks::HookEngine>>,
    /// False while this node follows a leader (`FOLLOW host port`); the
    /// replication glue owns it. Read through [`Shared::is_leader`].
    pub leader: AtomicBool,
    /// Replication: role, leader backlog, follower task (set once at start).
    pub repl: std::sync::OnceLock<Arc<crate::replication::Repl>>,
}

impl Shared {
    /// Builds the shared state around an opened core.
    pub fn new(opts: Options, core: Core, settings: Settings, metrics: Arc<Metrics>) -> Shared {
        Shared {
            opts,
            core: RwLock::new(core),
            settings: RwLock::new(settings),
            metrics,
            shutdown: CancellationToken::new(),
            readonly: AtomicBool::new(false),
            shrinking: AtomicBool::new(false),
            commands_run: AtomicU64::new(0),
            started: Instant::now(),
            changes: None,
            compactor: std::sync::OnceLock::new(),
            memwatch: std::sync::OnceLock::new(),
            hooks: std::sync::OnceLock::new(),
            last_shrink: parking_lot::Mutex::new(None),
            leader: AtomicBool::new(true),
            repl: std::sync::OnceLock::new(),
        }
    }

    /// True unless this node follows a leader. Only a leader expires
    /// objects into its log and queues hook events; a follower takes both
    /// from its leader's stream.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// True when writes are refused by READONLY.
    pub fn is_readonly(&self) -> bool {
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
    pub fn flush_aof(&self) -> Result<(), String> {
        let mut core = self.core.write();
        core.aof.flush()?;
        if self.opts.fsync == Fsync::Always {
            core.aof.sync()?;
        }
        Ok(())
    }
}

impl Core {
    /// Refuses a write before it touches memory when the log has failed, so
    /// that memory never runs ahead of a file known to be broken.
    ///
    /// # Errors
    ///
    /// The latched log failure.
    pub fn writable(&self) -> Result<(), String> {
        match self.aof.failure() {
            Some(e) if !self.loading => Err(format!("aof write failed, writes disabled: {e}")),
            _ => Ok(()),
        }
    }

    /// The one write path: appends the applied command to the log (fsyncing
    /// it under `always`), bumps the logical offset and tells the change sink.
    /// While loading nothing is logged.
    ///
    /// # Errors
    ///
    /// The write or fsync failed; the caller replies with the error.
    pub fn commit(
        &mut self,
        fsync: Fsync,
        sink: Option<&Arc<dyn ChangeSink>>,
        args: &[Vec<u8>],
        key: &str,
        id: Option<&str>,
    ) -> Result<(), String> {
        self.commit_as(When::Now(fsync), sink, args, key, id, &[])
    }

    /// [`Core::commit`] with the moment the command reaches the file chosen
    /// by `when`, for a change that may have removed or replaced objects:
    /// `before` lists them as they were, for the change sink.
    ///
    /// # Errors
    ///
    /// The write or fsync failed, now or earlier (latched).
    pub fn commit_as(
        &mut self,
        when: When,
        sink: Option<&Arc<dyn ChangeSink>>,
        args: &[Vec<u8>],
        key: &str,
        id: Option<&str>,
        before: &[(&str, &Object)],
    ) -> Result<(), String> {
        if self.loading {
            return Ok(());
        }
        let offset = match when {
            When::Now(fsync) => {
                let offset = self.aof.append(args)?;
                if fsync == Fsync::Always {
                    self.aof.sync()?;
                }
                offset
            }
            When::Deferred => self.aof.append_deferred(args)?,
        };
        if let Some(sink) = sink {
            sink.on_change(&Change {
                offset,
                args,
                key,
                id,
                db: &self.db,
                before,
            });
        }
        Ok(())
    }
}

/// When a committed command reaches the append-only file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Before the commit returns, fsynced too under `always`.
    Now(Fsync),
    /// With the log's next flush: a client's pipelined batch, which the
    /// connection flushes with [`Shared::flush_aof`] (one `write(2)`, and an
    /// fsync under `always`) before it replies. Any other write to the log
    /// writes the pending commands first, so the file keeps commit order.
    Deferred,
}

/// A server state with its log at `path`, `appendfsync always`, and no
/// hooks or replication, for the unit tests.
#[cfg(test)]
pub(crate) fn shared_on(path: &std::path::Path) -> Shared {
    let opts = Options {
        dir: std::env::temp_dir(),
        fsync: Fsync::Always,
        limits: crate::resp::Limits::default(),
        max_conns_per_addr: 1,
        max_clients: 1,
        listen: String::new(),
    };
    let core = Core {
        db: geohook_db::Database::new(),
        aof: crate::aof::Aof::open(path).unwrap(),
        loading: false,
    };
    Shared::new(opts, core, Default::default(), Default::default())
}

/// Milliseconds since the Unix epoch, the clock the database runs on.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
