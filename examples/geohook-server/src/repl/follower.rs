//! The follower side: the server's database as the follower task's state
//! machine. The task (in `geohook-repl`) reads the leader's stream; this
//! applies each command to memory and writes the leader's bytes to the file,
//! builds the new file of a full sync, and swaps it in.

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use geohook_repl::{encode_header, BatchError, BoxError, Command, ReplId, Replica};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::aof::{Fsync, AOF_NAME};
use crate::cmd::ctx::{CmdError, Ctx};
use crate::repl::leader::fullsync_path;
use crate::repl::state::SyncFile;
use crate::state::{Core, Shared};
use geohook_resp::encode_command;

/// The server's database as the follower task's state machine.
pub(crate) struct ServerReplica {
    pub(crate) shared: Arc<Shared>,
    pub(crate) cancel: CancellationToken,
    pub(crate) sync: Arc<Mutex<Option<SyncFile>>>,
}

impl ServerReplica {
    fn live(&self) -> Result<(), BoxError> {
        if self.cancel.is_cancelled() {
            return Err("no longer following".into());
        }
        Ok(())
    }
}

/// Applies one command from the leader to memory (data and hooks) without
/// logging it; the caller writes the leader's bytes to the file. A failure
/// other than those a replay expects is logged and returned.
fn replay(shared: &Shared, core: &mut Core, args: &[Vec<u8>], ctx: &Ctx) -> Result<(), CmdError> {
    core.loading = true;
    let w = crate::state::Writer::replicated(shared.changes.as_ref());
    let r = crate::replay::apply_with(core, shared.hooks.get().map(|h| &**h), args, &w, ctx);
    core.loading = false;
    if let Err(e) = &r {
        tracing::warn!(
            cmd = %String::from_utf8_lossy(&args[0]),
            error = %e,
            "replicated command not applied"
        );
    }
    r
}

impl Replica for ServerReplica {
    fn apply(&self, args: Vec<Vec<u8>>, offset: u64) -> Result<(), BoxError> {
        let mut core = self.shared.core.write();
        // Checked under the lock FOLLOW NO ONE takes, so no command lands
        // after a promotion.
        self.live()?;
        core.writable()?;
        // A stream command that fails is kept in the file all the same (the
        // file's stream bytes must equal the leader's), and the session goes
        // on: the leader applied it, so a failure here is a command the
        // leader's own replay would also skip.
        let _ = replay(&self.shared, &mut core, &args, &Ctx::new(false));
        core.aof.append(&args)?;
        if self.shared.opts.fsync == Fsync::Always {
            core.aof.sync()?;
        }
        if core.aof.offset() != offset {
            tracing::warn!(
                ours = core.aof.offset(),
                leader = offset,
                "replicated command re-encoded to a different length"
            );
            core.aof.set_offset(offset);
        }
        Ok(())
    }

    /// The commands of one read from the leader, under one write lock and
    /// written to the file in one append (and one fsync under `always`), as
    /// the leader writes a client's pipeline; each is still checked against
    /// its own offset.
    fn apply_batch(&self, cmds: Vec<(Command, u64)>) -> Result<(), BatchError> {
        let mut core = self.shared.core.write();
        let fail = |applied, source: BoxError| BatchError { applied, source };
        self.live().map_err(|e| fail(0, e))?;
        core.writable().map_err(|e| fail(0, e.into()))?;
        let ctx = Ctx::new(false);
        for (i, (args, offset)) in cmds.iter().enumerate() {
            let _ = replay(&self.shared, &mut core, args, &ctx);
            if let Err(e) = core.aof.append_deferred(args) {
                // The ones before it are applied in memory; they reach the
                // file with the flush below if the log still takes writes.
                let _ = core.aof.flush();
                return Err(fail(i, e.into()));
            }
            if core.aof.offset() != *offset {
                tracing::warn!(
                    ours = core.aof.offset(),
                    leader = offset,
                    "replicated command re-encoded to a different length"
                );
                core.aof.set_offset(*offset);
            }
        }
        let written = if self.shared.opts.fsync == Fsync::Always {
            core.aof.sync()
        } else {
            core.aof.flush()
        };
        // A failed write is latched by the log; the session ends here and
        // resumes from before this batch, as after a failed single append.
        written.map_err(|e| fail(0, e.into()))
    }

    fn reset(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError> {
        self.live()?;
        let live = self.shared.opts.dir.join(AOF_NAME);
        let path = fullsync_path(&live);
        let mut sync = self.sync.lock();
        // No shrink may run while the database holds a partial snapshot: its
        // file would claim the old position with part of the data. A sync
        // already in progress (a FOLLOW during one) holds the flag already;
        // otherwise it is taken here, and released when the new file is in
        // place. While a shrink runs, the sync is refused rather than waited
        // for (no thread sleeps holding a lock): the follower task reconnects
        // after its back-off and asks again.
        let took = sync.is_none();
        if took && self.shared.shrinking.swap(true, Ordering::SeqCst) {
            return Err("a shrink is running; the full sync is retried after it".into());
        }
        let created = std::fs::File::create(&path)
            .map_err(|e| format!("create {}: {e}", path.display()))
            .and_then(|f| {
                let mut file = std::io::BufWriter::with_capacity(256 * 1024, f);
                file.write_all(&encode_header(replid, offset, 0))
                    .map_err(|e| format!("write {}: {e}", path.display()))?;
                Ok(file)
            });
        let file = match created {
            Ok(f) => f,
            Err(e) => {
                if took {
                    self.shared.shrinking.store(false, Ordering::SeqCst);
                }
                return Err(e.into());
            }
        };
        *sync = Some(SyncFile {
            path,
            file,
            base_len: 0,
        });
        drop(sync);
        let mut core = self.shared.core.write();
        core.db = geohook_db::Database::new();
        replay(
            &self.shared,
            &mut core,
            &[b"pdelhook".to_vec(), b"*".to_vec()],
            &Ctx::new(false),
        )?;
        tracing::info!(replid = %replid.as_str(), offset, "full sync started");
        Ok(())
    }

    fn apply_snapshot(&self, args: Vec<Vec<u8>>) -> Result<(), BoxError> {
        self.live()?;
        let mut buf = Vec::new();
        encode_command(&mut buf, &args);
        {
            let mut sync = self.sync.lock();
            let s = sync
                .as_mut()
                .ok_or("snapshot command outside a full sync")?;
            s.file.write_all(&buf)?;
            s.base_len += buf.len() as u64;
        }
        // A snapshot command that cannot be applied means the copy would
        // differ from the leader's state: the session fails, the follower is
        // never reported caught up on it, and it retries with a full sync.
        let mut core = self.shared.core.write();
        replay(&self.shared, &mut core, &args, &Ctx::new(false)).map_err(|e| {
            format!(
                "snapshot command {:?}: {e}",
                String::from_utf8_lossy(&args[0])
            )
        })?;
        Ok(())
    }

    fn finish_snapshot(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError> {
        self.live()?;
        let s = self
            .sync
            .lock()
            .take()
            .ok_or("full sync finished without a start")?;
        let file = s.file.into_inner().map_err(|e| e.into_error())?;
        file.write_all_at(&encode_header(replid, offset, s.base_len), 0)?;
        file.sync_all()?;
        drop(file);
        let result = (|| -> Result<(), BoxError> {
            let live = self.shared.opts.dir.join(AOF_NAME);
            let mut core = self.shared.core.write();
            self.live()?;
            crate::fsio::replace(&s.path, &live)?;
            let f = std::fs::OpenOptions::new().append(true).open(&live)?;
            let size = f.metadata()?.len();
            core.aof.replace(f, size);
            core.aof.set_offset(offset);
            *self
                .shared
                .repl
                .get()
                .ok_or("replication is not started")?
                .replid
                .lock() = *replid;
            Ok(())
        })();
        self.shared.shrinking.store(false, Ordering::SeqCst);
        result?;
        tracing::info!(replid = %replid.as_str(), offset, base = s.base_len, "full sync finished");
        Ok(())
    }

    fn replid_changed(&self, replid: &ReplId, offset: u64) -> Result<(), BoxError> {
        if let Some(r) = self.shared.repl.get() {
            *r.replid.lock() = *replid;
        }
        tracing::info!(replid = %replid.as_str(), offset, "leader continued under a new id");
        Ok(())
    }
}
