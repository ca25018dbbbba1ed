//! Repair: evidence first, then truncate, under an exclusive lock.

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::format::RecordFormat;
use crate::scan::{scan_open_file, Scan, ScanConfig, Tail};
use crate::Error;

/// What repair may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// Never modify the log; a torn or zero tail is returned as [`Error::TornTail`].
    Strict,
    /// Truncate a torn or zero tail after saving it to a sidecar file; refuse corruption.
    #[default]
    TruncateTornTail,
}

/// Repair configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// What repair may do.
    ///
    /// Default: [`Policy::TruncateTornTail`].
    pub policy: Policy,
    /// The most bytes a repair may discard (zero tails included); `None` for no cap.
    ///
    /// Default: `None`.
    pub max_discard: Option<u64>,
    /// Directory for sidecar evidence files; `None` puts them beside the log.
    ///
    /// Default: `None`.
    pub sidecar_dir: Option<PathBuf>,
    /// Scan limits.
    ///
    /// Default: [`ScanConfig::default()`].
    pub scan: ScanConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            policy: Policy::TruncateTornTail,
            max_discard: None,
            sidecar_dir: None,
            scan: ScanConfig::default(),
        }
    }
}

impl Config {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] as [`ScanConfig::validate`].
    pub fn validate(&self) -> Result<(), Error> {
        self.scan.validate()
    }
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The log was already clean; nothing was written.
    Clean(Scan),
    /// The tail was cut.
    Repaired(RepairReport),
}

/// The details of one repair, also written (as JSON) at the start of the sidecar file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RepairReport {
    /// The repaired log.
    pub path: PathBuf,
    /// The format's name.
    pub format: &'static str,
    /// Log length before the repair.
    pub original_len: u64,
    /// Log length after the repair: the end of the last whole record.
    pub valid_len: u64,
    /// Bytes removed.
    pub discarded: u64,
    /// Whole records kept.
    pub records: u64,
    /// `"torn"` or `"zero"`.
    pub kind: &'static str,
    /// Why the first discarded byte is not a record.
    pub reason: String,
    /// Seconds since the Unix epoch when the repair ran.
    pub unix_time: u64,
    /// The sidecar file holding this report and the discarded bytes.
    pub sidecar: PathBuf,
}

/// The file-system operations repair performs after deciding to cut, so tests can inject failures
/// (a full disk, a crash between the sidecar and the truncate) that root privileges cannot bypass.
pub trait RepairFs: std::fmt::Debug {
    /// Creates `path` exclusively (never overwriting), writes `report` then the bytes of `data`, and
    /// syncs the file.
    ///
    /// # Errors
    ///
    /// Any I/O error; `AlreadyExists` makes repair retry with another name.
    fn write_sidecar(&self, path: &Path, report: &[u8], data: &mut dyn Read) -> io::Result<()>;
    /// Syncs a directory so a new entry in it is durable.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Truncates the (locked) log to `len` and syncs it.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    fn truncate(&self, file: &File, len: u64) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

impl RepairFs for StdFs {
    fn write_sidecar(&self, path: &Path, report: &[u8], data: &mut dyn Read) -> io::Result<()> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
        file.write_all(report)?;
        io::copy(data, &mut file)?;
        file.sync_all()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)?;
        file.sync_all()
    }
}

pub(crate) fn sync_parent_dir(path: &Path) -> Result<(), Error> {
    let dir = parent_dir(path);
    StdFs.sync_dir(&dir).map_err(|e| Error::io(dir, e))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Scans the log at `path` without modifying it or taking a lock.
///
/// # Errors
///
/// [`Error::InvalidConfig`] or [`Error::Io`].
pub fn check<F: RecordFormat + ?Sized>(
    path: impl AsRef<Path>,
    format: &F,
    config: &Config,
) -> Result<Scan, Error> {
    config.validate()?;
    crate::scan::scan_file(path.as_ref(), format, &config.scan)
}

/// Repairs the log at `path` if and only if it ends in a torn or zero tail; see the crate docs for the
/// exact rule.
///
/// # Errors
///
/// [`Error::Corrupt`] (file untouched, no sidecar), [`Error::TornTail`] under [`Policy::Strict`],
/// [`Error::DiscardCapExceeded`], [`Error::Locked`], [`Error::Io`] (if before the truncate, the log is
/// untouched), [`Error::InvalidConfig`].
pub fn repair<F: RecordFormat + ?Sized>(
    path: impl AsRef<Path>,
    format: &F,
    config: &Config,
) -> Result<Outcome, Error> {
    repair_with(path.as_ref(), format, config, &StdFs, &mut |_| {})
}

/// [`repair`] with an injected file system and a progress callback (bytes scanned so far).
///
/// # Errors
///
/// As [`repair`].
pub fn repair_with<F: RecordFormat + ?Sized>(
    path: &Path,
    format: &F,
    config: &Config,
    fs: &dyn RepairFs,
    progress: &mut dyn FnMut(u64),
) -> Result<Outcome, Error> {
    config.validate()?;
    let strict = config.policy == Policy::Strict;
    let mut file = open_locked(path, !strict)?;
    let scan = scan_open_file(&mut file, path, format, &config.scan, progress)?;
    let (kind, reason) = match &scan.tail {
        Tail::Clean => return Ok(Outcome::Clean(scan)),
        Tail::Corrupt { offset, reason, .. } => {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                offset: *offset,
                reason: reason.clone(),
            })
        }
        Tail::Torn { reason } => ("torn", reason.clone()),
        Tail::Zero => (
            "zero",
            Cow::Borrowed("only zero bytes follow the last record"),
        ),
    };
    let discarded = scan.discarded();
    if strict {
        return Err(Error::TornTail {
            path: path.to_path_buf(),
            offset: scan.valid_len,
            discarded,
        });
    }
    if let Some(cap) = config.max_discard {
        if discarded > cap {
            return Err(Error::DiscardCapExceeded {
                path: path.to_path_buf(),
                offset: scan.valid_len,
                discarded,
                cap,
            });
        }
    }

    let dir = config
        .sidecar_dir
        .clone()
        .unwrap_or_else(|| parent_dir(path));
    let now = since_epoch();
    let mut report = RepairReport {
        path: path.to_path_buf(),
        format: format.name(),
        original_len: scan.file_len,
        valid_len: scan.valid_len,
        discarded,
        records: scan.records,
        kind,
        reason: reason.into_owned(),
        unix_time: now.as_secs(),
        sidecar: PathBuf::new(),
    };
    // A zero tail is fully described by its length; copying gigabytes of preallocated zeros would
    // only risk filling the disk.
    let saved = if kind == "zero" { 0 } else { discarded };
    report.sidecar = write_sidecar(
        &file,
        path,
        &dir,
        fs,
        Sidecar {
            ext: "torn",
            now,
            from: scan.valid_len,
            len: saved,
        },
        &mut |sidecar| {
            report.sidecar = sidecar.to_path_buf();
            let mut line = serde_json::to_vec(&report).map_err(io::Error::from)?;
            line.push(b'\n');
            Ok(line)
        },
    )?;
    fs.truncate(&file, scan.valid_len)
        .map_err(|e| Error::io(path, e))?;
    tracing::warn!(
        path = %path.display(),
        valid_len = report.valid_len,
        discarded = report.discarded,
        reason = %report.reason,
        sidecar = %report.sidecar.display(),
        "truncated a torn log tail"
    );
    Ok(Outcome::Repaired(report))
}

/// Opens the log and takes the exclusive lock that repair and [`cut_at`] hold while they decide and cut.
/// The lock keeps a second repairer (or a writer that locks) from racing between scan and truncate.
fn open_locked(path: &Path, write: bool) -> Result<File, Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(path, e)),
    }
}

/// Time since the Unix epoch, zero if the clock is before it; names sidecars and dates reports.
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Which bytes of the log a sidecar keeps, and how it is named.
struct Sidecar {
    /// The name's extension: `torn` for a repair, `lost` for [`cut_at`].
    ext: &'static str,
    /// The time in the name.
    now: Duration,
    /// Log offset of the first byte saved.
    from: u64,
    /// Bytes saved.
    len: u64,
}

/// Writes a sidecar (`header(its path)`, then `len` bytes of the log from `from`) in `dir` under a name
/// no earlier sidecar used, `<log name>.<secs>.<nanos>-<pid>-<n>.<ext>`, created with `create_new` and
/// synced, then syncs `dir`. Returns the sidecar's path.
fn write_sidecar(
    file: &File,
    path: &Path,
    dir: &Path,
    fs: &dyn RepairFs,
    what: Sidecar,
    header: &mut dyn FnMut(&Path) -> io::Result<Vec<u8>>,
) -> Result<PathBuf, Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "log".into(), |n| n.to_string_lossy().into_owned());
    for _ in 0..64 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let sidecar = dir.join(format!(
            "{name}.{}.{:09}-{}-{n}.{}",
            what.now.as_secs(),
            what.now.subsec_nanos(),
            std::process::id(),
            what.ext
        ));
        let head = header(&sidecar).map_err(|e| Error::io(&sidecar, e))?;
        let mut reader = file;
        reader
            .seek(SeekFrom::Start(what.from))
            .map_err(|e| Error::io(path, e))?;
        let mut data = reader.take(what.len);
        match fs.write_sidecar(&sidecar, &head, &mut data) {
            Ok(()) => {
                fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
                return Ok(sidecar);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                // Leave no half-written evidence that a later reader could take for a complete one.
                let _ = fs::remove_file(&sidecar);
                return Err(Error::io(sidecar, e));
            }
        }
    }
    Err(Error::io(
        dir,
        io::Error::new(io::ErrorKind::AlreadyExists, "no unused sidecar name"),
    ))
}

/// What [`cut_at`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CutReport {
    /// The cut log.
    pub path: PathBuf,
    /// Log length before the cut.
    pub original_len: u64,
    /// Log length after the cut: the offset asked for.
    pub offset: u64,
    /// Bytes removed from the log (and saved in [`evidence`](Self::evidence)).
    pub discarded: u64,
    /// Seconds since the Unix epoch when the cut ran.
    pub unix_time: u64,
    /// The file holding exactly the removed bytes, `None` if `offset` was already the end of the log.
    pub evidence: Option<PathBuf>,
}

/// Cuts the log at `path` at `offset`, keeping everything removed as evidence: the operator's "accept
/// data loss" for a log that [`repair`] refused as corrupt.
///
/// Under the same exclusive lock as [`repair`]: writes the bytes `[offset, EOF)`, exactly and nothing
/// else, to a new file `<name>.<secs>.<nanos>-<pid>-<n>.lost` (created with `create_new`, in
/// [`Config::sidecar_dir`] or beside the log), fsyncs it and its directory, then truncates the log to
/// `offset` and fsyncs it, and emits one `tracing` warning. Bytes before `offset` are never touched,
/// and if anything fails before the truncate the log is untouched. Concatenating the log and the
/// evidence file gives back the original log. An `offset` equal to the log's length cuts nothing and
/// writes no file.
///
/// This is an explicit decision to drop data, so [`Config::policy`] and [`Config::max_discard`], which
/// govern automatic repair, do not apply; the caller decides the offset (usually the `offset` of an
/// [`Error::Corrupt`]).
///
/// # Errors
///
/// [`Error::OffsetPastEnd`] if `offset` is beyond the end of the log (nothing written);
/// [`Error::Locked`]; [`Error::Io`] (if before the truncate, the log is untouched);
/// [`Error::InvalidConfig`].
pub fn cut_at(path: impl AsRef<Path>, offset: u64, config: &Config) -> Result<CutReport, Error> {
    let path = path.as_ref();
    config.validate()?;
    let file = open_locked(path, true)?;
    let original_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if offset > original_len {
        return Err(Error::OffsetPastEnd {
            path: path.to_path_buf(),
            offset,
            len: original_len,
        });
    }
    let now = since_epoch();
    let mut report = CutReport {
        path: path.to_path_buf(),
        original_len,
        offset,
        discarded: original_len - offset,
        unix_time: now.as_secs(),
        evidence: None,
    };
    if report.discarded == 0 {
        return Ok(report);
    }
    let dir = config
        .sidecar_dir
        .clone()
        .unwrap_or_else(|| parent_dir(path));
    let what = Sidecar {
        ext: "lost",
        now,
        from: offset,
        len: report.discarded,
    };
    // No header: the evidence is the log's own bytes, so it can be read with the log's own tools.
    let evidence = write_sidecar(&file, path, &dir, &StdFs, what, &mut |_| Ok(Vec::new()))?;
    StdFs
        .truncate(&file, offset)
        .map_err(|e| Error::io(path, e))?;
    tracing::warn!(
        path = %path.display(),
        offset,
        discarded = report.discarded,
        evidence = %evidence.display(),
        "cut the log at the operator's request; the removed bytes are kept"
    );
    report.evidence = Some(evidence);
    Ok(report)
}

/// The result of [`read_with_repair`].
#[derive(Debug)]
pub struct Recovered<T> {
    /// What the read returned.
    pub value: T,
    /// The repair that made the read succeed, if one was needed.
    pub repair: Option<RepairReport>,
}

/// Reads a log with `read`, and if that fails with a data error, repairs a torn tail once and reads
/// again. This is etcd's start-up contract: exactly one attempt, then a hard error.
///
/// # Errors
///
/// Errors from `read` that are not data errors (such as [`Error::Io`]) are returned without repairing.
/// Errors from [`repair`] (such as [`Error::Corrupt`]) are returned as they are. If the repair finds
/// nothing to cut, or the second read fails, the result is [`Error::StillBroken`].
pub fn read_with_repair<T, F: RecordFormat + ?Sized>(
    path: impl AsRef<Path>,
    format: &F,
    config: &Config,
    mut read: impl FnMut(&Path) -> Result<T, Error>,
) -> Result<Recovered<T>, Error> {
    let path = path.as_ref();
    let first = match read(path) {
        Ok(value) => {
            return Ok(Recovered {
                value,
                repair: None,
            })
        }
        Err(e) if e.is_data_error() => e,
        Err(e) => return Err(e),
    };
    let report = match repair(path, format, config)? {
        Outcome::Repaired(report) => report,
        Outcome::Clean(_) => {
            return Err(Error::StillBroken {
                path: path.to_path_buf(),
                source: Box::new(first),
            })
        }
    };
    match read(path) {
        Ok(value) => Ok(Recovered {
            value,
            repair: Some(report),
        }),
        Err(e) => Err(Error::StillBroken {
            path: path.to_path_buf(),
            source: Box::new(e),
        }),
    }
}
