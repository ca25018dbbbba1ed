//! Repair: evidence first, then truncate, under an exclusive lock.

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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
    let mut file = OpenOptions::new()
        .read(true)
        .write(!strict)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    // The lock keeps a second repairer (or a writer that locks) from racing between scan and truncate.
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(Error::Locked {
                path: path.to_path_buf(),
            })
        }
        Err(fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
    }
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
    let mut report = RepairReport {
        path: path.to_path_buf(),
        format: format.name(),
        original_len: scan.file_len,
        valid_len: scan.valid_len,
        discarded,
        records: scan.records,
        kind,
        reason: reason.into_owned(),
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        sidecar: PathBuf::new(),
    };
    write_evidence(&mut file, path, &dir, fs, &mut report)?;
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

/// Writes the sidecar (report line, then the discarded bytes unless they are all zero) under a name no
/// earlier repair used, then syncs the directory.
fn write_evidence(
    file: &mut File,
    path: &Path,
    dir: &Path,
    fs: &dyn RepairFs,
    report: &mut RepairReport,
) -> Result<(), Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "log".into(), |n| n.to_string_lossy().into_owned());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    for _ in 0..64 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let sidecar = dir.join(format!(
            "{name}.{}.{:09}-{}-{n}.torn",
            now.as_secs(),
            now.subsec_nanos(),
            std::process::id()
        ));
        report.sidecar = sidecar.clone();
        let mut line = serde_json::to_vec(&*report).map_err(|e| Error::io(&sidecar, e.into()))?;
        line.push(b'\n');
        file.seek(SeekFrom::Start(report.valid_len))
            .map_err(|e| Error::io(path, e))?;
        // A zero tail is fully described by its length; copying gigabytes of preallocated zeros would
        // only risk filling the disk.
        let data_len = if report.kind == "zero" {
            0
        } else {
            report.discarded
        };
        let mut data = (&*file).take(data_len);
        match fs.write_sidecar(&sidecar, &line, &mut data) {
            Ok(()) => {
                return fs.sync_dir(dir).map_err(|e| Error::io(dir, e));
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

/// The files in `dir` whose names end with `suffix`, in name order (the order segments are written in,
/// when names carry zero-padded sequence numbers). Sidecar files never match a suffix that does not
/// end in `.torn`.
///
/// # Errors
///
/// [`Error::Io`] if the directory cannot be listed.
pub fn list_segments(dir: impl AsRef<Path>, suffix: &str) -> Result<Vec<PathBuf>, Error> {
    let dir = dir.as_ref();
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let is_file = entry
            .file_type()
            .map_err(|e| Error::io(entry.path(), e))?
            .is_file();
        if is_file && entry.file_name().to_string_lossy().ends_with(suffix) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Repairs a segmented log given in write order: every segment but the last must be clean, and only the
/// last may be repaired.
///
/// # Errors
///
/// [`Error::Corrupt`] naming the first earlier segment that is not clean (a torn or zero tail there is
/// corruption too: later segments were written after it); otherwise as [`repair`]. An empty list is
/// [`Outcome::Clean`] of an empty scan.
pub fn repair_segments<F: RecordFormat + ?Sized>(
    segments: &[PathBuf],
    format: &F,
    config: &Config,
) -> Result<Outcome, Error> {
    config.validate()?;
    let Some((last, earlier)) = segments.split_last() else {
        return Ok(Outcome::Clean(Scan {
            file_len: 0,
            valid_len: 0,
            records: 0,
            tail: Tail::Clean,
        }));
    };
    for seg in earlier {
        let scan = crate::scan::scan_file(seg, format, &config.scan)?;
        let reason = match scan.tail {
            Tail::Clean => continue,
            Tail::Corrupt { reason, .. } | Tail::Torn { reason } => reason,
            Tail::Zero => Cow::Borrowed("zero bytes follow the last record"),
        };
        return Err(Error::Corrupt {
            path: seg.clone(),
            offset: scan.valid_len,
            reason: Cow::Owned(format!("{reason} (in a segment that is not the last)")),
        });
    }
    repair(last, format, config)
}
