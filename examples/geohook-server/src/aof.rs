//! The append-only file: every write command, RESP-encoded, in the order the
//! server applied it.
//!
//! [`Aof::append`] writes the record to the file before it returns.
//! [`Aof::append_deferred`] only adds it to a pending buffer, which the next
//! [`Aof::flush`] writes with one `write(2)`: a client connection commits a
//! pipelined batch that way and flushes (and, under [`Fsync::Always`],
//! fsyncs) before it sends the batch's replies, so no reply announces a
//! write that is not in the file, at one system call per batch rather than
//! per command. Whatever else writes to or reads the file first writes the
//! pending bytes (`append`, `sync`, `sync_handle`, a shrink's `flush`), so
//! the file always receives commands in commit order, and a leader's
//! replication backlog receives exactly the bytes written, after they are.
//! A failed write or fsync is latched: from then on every append and sync
//! fails with the first error, and the server refuses writes, because the
//! file no longer matches memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use aof_compactor::SyncGate;
use geohook_resp::encode_command;

/// A failed write or fsync of the log, latched: every later append or sync
/// fails with the first error, because the file no longer matches memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("aof write failed, writes disabled: {0}")]
pub(crate) struct AofError(String);

/// The Tile38 file name of the append-only file inside the data directory.
pub(crate) const AOF_NAME: &str = "appendonly.aof";

/// When the file is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Fsync {
    /// Before the reply to any write is sent.
    Always,
    /// Once a second, from a background task.
    Everysec,
    /// Never by the server; the operating system decides.
    No,
}

impl Fsync {
    /// The name used by `--appendfsync` and `CONFIG GET appendfsync`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Everysec => "everysec",
            Fsync::No => "no",
        }
    }
}

/// The open append-only file.
#[derive(Debug)]
pub(crate) struct Aof {
    path: PathBuf,
    file: File,
    size: u64,
    /// Bytes appended over the life of this process plus the size at start;
    /// never goes down, not even when a shrink makes the file smaller. A
    /// follower will use it as its replication position.
    offset: u64,
    unsynced: bool,
    failed: Option<String>,
    /// Encoded commands committed but not yet written, oldest first.
    pending: Vec<u8>,
    /// On a leader, the replication backlog: every appended command goes to
    /// it with exactly the bytes written to the file, under the same lock.
    tap: Option<std::sync::Arc<geohook_repl::Leader>>,
    /// Every fsync of the file is marked on it, so that a shrink's
    /// write-back waits for the sync to end instead of landing between its
    /// requests.
    gate: SyncGate,
}

impl Aof {
    /// Opens (creating if missing) the file for appending.
    ///
    /// # Errors
    ///
    /// Any I/O error from opening or reading the file's metadata.
    pub(crate) fn open(path: &Path) -> io::Result<Aof> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Aof {
            path: path.to_path_buf(),
            file,
            size,
            offset: size,
            unsynced: false,
            failed: None,
            pending: Vec::with_capacity(4096),
            tap: None,
            gate: SyncGate::new(),
        })
    }

    /// The gate this file's fsyncs are marked on, for a shrink's
    /// [`aof_compactor::Rewrite::sync_gate`] and the once-a-second fsync.
    pub(crate) fn sync_gate(&self) -> SyncGate {
        self.gate.clone()
    }

    /// The path of the live file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The size of the file in bytes, counting committed bytes not yet
    /// written (call [`Aof::flush`] first for the size on disk).
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The logical write offset: monotonic across shrinks.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The latched failure, if a write or fsync failed.
    ///
    /// # Errors
    ///
    /// That failure.
    pub(crate) fn check(&self) -> Result<(), AofError> {
        match &self.failed {
            Some(e) => Err(AofError(e.clone())),
            None => Ok(()),
        }
    }

    fn fail(&mut self, what: &str, e: &io::Error) -> AofError {
        let msg = format!("{what} {}: {e}", self.path.display());
        tracing::error!(error = %msg, "append-only file failed; refusing further writes");
        self.failed = Some(msg.clone());
        AofError(msg)
    }

    /// Appends one command and writes it (after any pending ones) before
    /// returning; returns the logical offset after it.
    ///
    /// # Errors
    ///
    /// The (latched) error message when the write fails or failed earlier.
    pub(crate) fn append<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<u64, AofError> {
        let offset = self.append_deferred(args)?;
        self.flush()?;
        Ok(offset)
    }

    /// Commits one command to the pending buffer, to be written by the next
    /// [`Aof::flush`] (or any append or sync); returns the logical offset
    /// after it. Past 1 MiB pending, it writes at once.
    ///
    /// # Errors
    ///
    /// The latched error message when an earlier write or fsync failed, or
    /// the write of a full pending buffer failed.
    pub(crate) fn append_deferred<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<u64, AofError> {
        self.check()?;
        // The logical offset is the replication offset, which a leader may
        // have announced anywhere below 2^64: it must never wrap.
        let len = u64::try_from(geohook_resp::encoded_len(args)).unwrap_or(u64::MAX);
        if self.offset.checked_add(len).is_none() {
            return Err(AofError(format!(
                "write refused: the replication offset {} cannot grow by {len} bytes",
                self.offset
            )));
        }
        let before = self.pending.len();
        encode_command(&mut self.pending, args);
        let n = (self.pending.len() - before) as u64;
        self.size += n;
        self.offset += n;
        if self.pending.len() > 1 << 20 {
            self.flush()?;
        }
        Ok(self.offset)
    }

    /// Writes the pending commands with one `write(2)` and hands the same
    /// bytes to the replication backlog.
    ///
    /// # Errors
    ///
    /// The (latched) error message when the write fails or failed earlier.
    pub(crate) fn flush(&mut self) -> Result<(), AofError> {
        self.check()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.pending) {
            return Err(self.fail("write", &e));
        }
        if let Some(tap) = &self.tap {
            tap.append_encoded(&self.pending);
        }
        self.pending.clear();
        if self.pending.capacity() > 1 << 21 {
            // Do not keep a huge buffer around after one big batch.
            self.pending = Vec::with_capacity(4096);
        }
        self.unsynced = true;
        Ok(())
    }

    /// Writes what is pending, then fsyncs the file if anything was written
    /// since the last sync.
    ///
    /// # Errors
    ///
    /// The (latched) error message when the fsync fails or a write failed.
    pub(crate) fn sync(&mut self) -> Result<(), AofError> {
        self.flush()?;
        if self.unsynced {
            if let Err(e) = self.gate.sync_data(&self.file) {
                return Err(self.fail("fsync", &e));
            }
            self.unsynced = false;
        }
        Ok(())
    }

    /// For `everysec`: when anything was appended since the last sync, a
    /// second handle on the file to fsync without holding the server's lock,
    /// and the size it covers. The caller must report a failed fsync with
    /// [`Aof::poison`].
    ///
    /// # Errors
    ///
    /// The latched failure, or the handle cannot be duplicated.
    pub(crate) fn sync_handle(&mut self) -> Result<Option<File>, AofError> {
        self.flush()?;
        if !self.unsynced {
            return Ok(None);
        }
        match self.file.try_clone() {
            Ok(f) => {
                // Appends after this point set the flag again and are covered
                // by the next second's sync.
                self.unsynced = false;
                Ok(Some(f))
            }
            Err(e) => Err(self.fail("dup", &e)),
        }
    }

    /// Sets the logical offset: the replication offset recovered from the
    /// file's REPLSTATE header at start, or the leader's after a full sync.
    pub(crate) fn set_offset(&mut self, offset: u64) {
        self.offset = offset;
    }

    /// True when the appends go to a leader's backlog that a follower's
    /// link is waiting on (see [`geohook_repl::Leader::streaming`]).
    pub(crate) fn streaming(&self) -> bool {
        self.tap.as_ref().is_some_and(|t| t.streaming())
    }

    /// Sends every later append to `tap` as well (a leader's backlog), or
    /// stops doing so (`None`, on a follower).
    pub(crate) fn set_tap(&mut self, tap: Option<std::sync::Arc<geohook_repl::Leader>>) {
        self.tap = tap;
    }

    /// Switches to the new live file after a shrink renamed it over the old
    /// one. `size` is its size; the logical offset does not change. Bytes
    /// still pending follow everything the new file holds, so they go to it.
    pub(crate) fn replace(&mut self, file: File, size: u64) {
        self.file = file;
        self.size = size + self.pending.len() as u64;
        self.unsynced = false;
    }

    /// After a failed shrink commit: if the path now names a different file
    /// than the open handle (the rename happened), switch to it.
    pub(crate) fn reopen_if_replaced(&mut self) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let on_disk = std::fs::metadata(&self.path)?;
        let open = self.file.metadata()?;
        if on_disk.ino() != open.ino() || on_disk.dev() != open.dev() {
            let file = OpenOptions::new().append(true).open(&self.path)?;
            let size = file.metadata()?.len();
            self.replace(file, size);
        }
        Ok(())
    }

    /// Marks the file as failed from outside (a background fsync failed, or
    /// a shrink could not reopen the live file).
    pub(crate) fn poison(&mut self, msg: String) {
        tracing::error!(error = %msg, "append-only file failed; refusing further writes");
        self.failed = Some(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_near_the_top_refuses_the_write_instead_of_wrapping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AOF_NAME);
        let mut aof = Aof::open(&path).unwrap();
        aof.set_offset(u64::MAX - 20);
        let cmd = [b"set".to_vec(), b"k".to_vec()];
        // 20 bytes fit exactly (`*2 $3 set $1 k` is 20 bytes); one more
        // does not.
        assert_eq!(aof.append(&cmd).unwrap(), u64::MAX);
        let err = aof.append(&cmd).unwrap_err();
        assert!(err.to_string().contains("cannot grow"), "{err}");
        assert_eq!(aof.offset(), u64::MAX);
        assert_eq!(std::fs::read(&path).unwrap().len(), 20);
    }

    #[test]
    fn appends_are_in_the_file_at_once_and_offset_is_monotonic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AOF_NAME);
        let mut aof = Aof::open(&path).unwrap();
        let off = aof.append(&[b"set".to_vec(), b"k".to_vec()]).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"*2\r\n$3\r\nset\r\n$1\r\nk\r\n"
        );
        assert_eq!(off, 20);
        aof.sync().unwrap();
        std::fs::write(path.with_extension("new"), b"").unwrap();
        std::fs::rename(path.with_extension("new"), &path).unwrap();
        aof.reopen_if_replaced().unwrap();
        assert_eq!(aof.size(), 0);
        assert_eq!(aof.offset(), 20);
    }

    #[test]
    fn deferred_appends_reach_the_file_in_order_at_the_next_flush_or_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AOF_NAME);
        let mut aof = Aof::open(&path).unwrap();
        let cmd = |s: &str| vec![s.as_bytes().to_vec()];
        assert_eq!(aof.append_deferred(&cmd("a")).unwrap(), 11);
        assert_eq!(aof.append_deferred(&cmd("b")).unwrap(), 22);
        assert_eq!(aof.size(), 22, "the size counts pending bytes");
        assert_eq!(std::fs::read(&path).unwrap(), b"", "nothing written yet");
        aof.flush().unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"*1\r\n$1\r\na\r\n*1\r\n$1\r\nb\r\n"
        );
        // An immediate append writes what is pending first.
        aof.append_deferred(&cmd("c")).unwrap();
        aof.append(&cmd("d")).unwrap();
        assert!(std::fs::read(&path)
            .unwrap()
            .ends_with(b"c\r\n*1\r\n$1\r\nd\r\n"));
        // So does a sync.
        aof.append_deferred(&cmd("e")).unwrap();
        aof.sync().unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 55);
    }

    #[test]
    fn a_failed_flush_is_latched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AOF_NAME);
        let mut aof = Aof::open(&path).unwrap();
        // A read-only handle makes the write fail.
        aof.file = File::open(&path).unwrap();
        aof.append_deferred(&[b"set".to_vec()]).unwrap();
        assert!(aof
            .flush()
            .unwrap_err()
            .to_string()
            .contains("writes disabled"));
        assert!(aof.append_deferred(&[b"set".to_vec()]).is_err());
        assert!(aof.flush().is_err());
        assert!(aof.check().is_err());
    }
}
