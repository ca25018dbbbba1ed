//! Where sizes and free space come from.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the compactor reads the current size of the log from.
///
/// The size is the physical footprint on disk as reported by the file system
/// (`st_size`), never a count of logical bytes kept by the writer, which is
/// how TemporalStore #324 under-counted sevenfold and never compacted.
#[derive(Clone)]
pub enum SizeSource {
    /// `stat` the path at every check. A missing file counts as an error, not
    /// as size zero, so that a misconfigured path is visible in the status.
    Path(PathBuf),
    /// `fstat` an open file. Useful when the writer keeps the file open and
    /// the path may be renamed underneath.
    File(Arc<File>),
    /// Any closure, for a log made of several files (a base plus increments).
    Fn(Arc<dyn Fn() -> io::Result<u64> + Send + Sync>),
}

impl SizeSource {
    /// Builds a [`SizeSource::Fn`] from a closure.
    pub fn from_fn(f: impl Fn() -> io::Result<u64> + Send + Sync + 'static) -> Self {
        SizeSource::Fn(Arc::new(f))
    }

    /// Reads the current size.
    ///
    /// This is one `stat`/`fstat` system call (or whatever the closure does),
    /// cheap enough to run on the async task directly.
    ///
    /// # Errors
    ///
    /// The error of the underlying call.
    pub fn size(&self) -> io::Result<u64> {
        match self {
            SizeSource::Path(p) => Ok(std::fs::metadata(p)?.len()),
            SizeSource::File(f) => Ok(f.metadata()?.len()),
            SizeSource::Fn(f) => f(),
        }
    }
}

impl fmt::Debug for SizeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeSource::Path(p) => f.debug_tuple("Path").field(p).finish(),
            SizeSource::File(file) => f.debug_tuple("File").field(file).finish(),
            SizeSource::Fn(_) => f.write_str("Fn(..)"),
        }
    }
}

/// Reports the bytes available to an unprivileged writer on the disk that
/// holds the log. Tests inject a fake; [`Statvfs`] asks the kernel.
pub trait DiskSpace: Send + Sync + 'static {
    /// Free bytes available to the process.
    ///
    /// # Errors
    ///
    /// Whatever prevents the measurement.
    fn available(&self) -> io::Result<u64>;
}

impl<F> DiskSpace for F
where
    F: Fn() -> io::Result<u64> + Send + Sync + 'static,
{
    fn available(&self) -> io::Result<u64> {
        self()
    }
}

/// Free space on the file system holding a path, from `statvfs(3)`.
#[derive(Debug, Clone)]
pub struct Statvfs {
    path: PathBuf,
}

impl Statvfs {
    /// Measures the file system holding `path` (a file or a directory).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Statvfs { path: path.into() }
    }

    /// The directory to measure for a log file at `file`.
    pub fn for_file(file: &Path) -> Self {
        Statvfs::new(crate::rewrite::parent_dir(file))
    }
}

impl DiskSpace for Statvfs {
    fn available(&self) -> io::Result<u64> {
        let c_path = CString::new(self.path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `statvfs` is plain old data, so an all-zero value is valid
        // and the call fully initialises it on success.
        let mut buf: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c_path` is a NUL-terminated string that outlives the call and
        // `buf` is a valid, writable `statvfs`.
        let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut buf) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // The field widths differ between platforms, hence the widening casts.
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        let bytes = u64::from(buf.f_bavail as u64).saturating_mul(buf.f_frsize as u64);
        Ok(bytes)
    }
}
