//! The append-only file: every write command, RESP-encoded, in the order the
//! server applied it.
//!
//! [`Aof::append`] writes the record to the file before it returns, so the
//! caller can reply only after the write reached the operating system; with
//! [`Fsync::Always`], [`crate::state::Core::commit`] calls [`Aof::sync`]
//! after each write, before its reply is rendered. A failed write or fsync is latched:
//! from then on every append and sync fails with the first error, and the
//! server refuses writes, because the file no longer matches memory.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::resp::encode_command;

/// The Tile38 file name of the append-only file inside the data directory.
pub const AOF_NAME: &str = "appendonly.aof";

/// When the file is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fsync {
    /// Before the reply to any write is sent.
    Always,
    /// Once a second, from a background task.
    Everysec,
    /// Never by the server; the operating system decides.
    No,
}

impl Fsync {
    /// The name used by `--appendfsync` and `CONFIG GET appendfsync`.
    pub fn as_str(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Everysec => "everysec",
            Fsync::No => "no",
        }
    }
}

/// The open append-only file.
#[derive(Debug)]
pub struct Aof {
    path: PathBuf,
    file: File,
    size: u64,
    /// Bytes appended over the life of this process plus the size at start;
    /// never goes down, not even when a shrink makes the file smaller. A
    /// follower will use it as its replication position.
    offset: u64,
    unsynced: bool,
    failed: Option<String>,
    buf: Vec<u8>,
    /// On a leader, the replication backlog: every appended command goes to
    /// it with exactly the bytes written to the file, under the same lock.
    tap: Option<std::sync::Arc<geohook_repl::Leader>>,
}

impl Aof {
    /// Opens (creating if missing) the file for appending.
    ///
    /// # Errors
    ///
    /// Any I/O error from opening or reading the file's metadata.
    pub fn open(path: &Path) -> io::Result<Aof> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Aof {
            path: path.to_path_buf(),
            file,
            size,
            offset: size,
            unsynced: false,
            failed: None,
            buf: Vec::with_capacity(4096),
            tap: None,
        })
    }

    /// The path of the live file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current size of the file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The logical write offset: monotonic across shrinks.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The first write or fsync error, if one happened.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn check(&self) -> Result<(), String> {
        match &self.failed {
            Some(e) => Err(format!("aof write failed, writes disabled: {e}")),
            None => Ok(()),
        }
    }

    fn fail(&mut self, what: &str, e: &io::Error) -> String {
        let msg = format!("{what} {}: {e}", self.path.display());
        tracing::error!(error = %msg, "append-only file failed; refusing further writes");
        self.failed = Some(msg.clone());
        format!("aof write failed, writes disabled: {msg}")
    }

    /// Appends one command; returns the logical offset after it.
    ///
    /// # Errors
    ///
    /// The (latched) error message when the write fails or failed earlier.
    pub fn append(&mut self, args: &[Vec<u8>]) -> Result<u64, String> {
        self.check()?;
        self.buf.clear();
        encode_command(&mut self.buf, args);
        if let Err(e) = self.file.write_all(&self.buf) {
            return Err(self.fail("write", &e));
        }
        let n = self.buf.len() as u64;
        if let Some(tap) = &self.tap {
            tap.append_encoded(&self.buf);
        }
        if self.buf.capacity() > 1 << 20 {
            // Do not keep a huge buffer around after one big command.
            self.buf = Vec::with_capacity(4096);
        }
        self.size += n;
        self.offset += n;
        self.unsynced = true;
        Ok(self.offset)
    }

    /// Fsyncs the file if anything was appended since the last sync.
    ///
    /// # Errors
    ///
    /// The (latched) error message when the fsync fails or a write failed.
    pub fn sync(&mut self) -> Result<(), String> {
        self.check()?;
        if self.unsynced {
            if let Err(e) = self.file.sync_data() {
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
    pub fn sync_handle(&mut self) -> Result<Option<File>, String> {
        self.check()?;
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
    pub fn set_offset(&mut self, offset: u64) {
        self.offset = offset;
    }

    /// Sends every later append to `tap` as well (a leader's backlog), or
    /// stops doing so (`None`, on a follower).
    pub fn set_tap(&mut self, tap: Option<std::sync::Arc<geohook_repl::Leader>>) {
        self.tap = tap;
    }

    /// Switches to the new live file after a shrink renamed it over the old
    /// one. `size` is its size; the logical offset does not change.
    pub(crate) fn replace(&mut self, file: File, size: u64) {
        self.file = file;
        self.size = size;
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
    pub fn poison(&mut self, msg: String) {
        tracing::error!(error = %msg, "append-only file failed; refusing further writes");
        self.failed = Some(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
