//! Logs kept as several files in one directory: a Redis 7 multi-part AOF, or a plain segment directory.
//!
//! Both are a list of [`Part`]s in write order. Every part but the last must end cleanly; only the last
//! may have a torn (or zero) tail, and only it is ever repaired. Damage anywhere else, including in the
//! Redis manifest, is corruption: nothing is modified.
//!
//! * A **Redis multi-part AOF** (`appendonlydir/`, Redis 7.0 and later) is described by its manifest,
//!   `<appendfilename>.manifest`: one line per file, `file <name> seq <n> type <b|h|i>`. The parts are
//!   the base file (`type b`, at most one) then the incremental files (`type i`) in manifest order;
//!   history files (`type h`) are not part of the data set and are ignored, as Redis does. A base file
//!   that starts with `REDIS` is an RDB snapshot (`aof-use-rdb-preamble yes`): it is recognised and left
//!   alone, never scanned as RESP. The manifest is read the way Redis reads it, and anything Redis would
//!   refuse to load (an empty manifest, a line without its newline or longer than 1024 bytes, fewer than
//!   six or an odd number of fields, a missing name, sequence or type, a path instead of a name, two
//!   base files, non-increasing incremental sequence numbers, an unknown type) is
//!   [`Error::Corrupt`] naming the manifest and the offset of the line.
//! * A **segment directory** is every regular file in the directory, in name order, except hidden files
//!   and this crate's evidence files (`.torn`, `.lost`): name segments with zero-padded sequence numbers.

use std::borrow::Cow;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::format::RecordFormat;
use crate::repair::{repair, Config, Outcome};
use crate::scan::{scan_file, Scan, Tail};
use crate::Error;

/// The longest manifest line Redis accepts, newline excluded.
const MANIFEST_MAX_LINE: usize = 1024;
/// A manifest larger than this is refused before it is read, so a damaged one cannot exhaust memory.
const MANIFEST_MAX_LEN: u64 = 4 << 20;

/// One file of a multi-file log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Part {
    /// The file.
    pub path: PathBuf,
    /// What it is.
    pub role: Role,
}

/// The role of a [`Part`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// A Redis base file in RDB form: recognised and left alone.
    RdbBase,
    /// A Redis base file in RESP form.
    Base,
    /// A Redis incremental file.
    Incr,
    /// A file of a segment directory.
    Segment,
}

impl Part {
    /// A part with this path and role, for [`repair_parts`] over a list built by the caller.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, role: Role) -> Self {
        Self {
            path: path.into(),
            role,
        }
    }
}

impl Role {
    /// A short name for reports: `"rdb-base"`, `"base"`, `"incr"` or `"segment"`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::RdbBase => "rdb-base",
            Self::Base => "base",
            Self::Incr => "incr",
            Self::Segment => "segment",
        }
    }
}

/// How a directory's files form one log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// A Redis multi-part AOF described by this manifest.
    RedisMultiPart {
        /// The manifest file.
        manifest: PathBuf,
    },
    /// Files in name order.
    Segments,
}

/// The scan of one [`Part`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartScan {
    /// The part.
    pub part: Part,
    /// Its scan; `None` for a part that is left alone ([`Role::RdbBase`]).
    pub scan: Option<Scan>,
}

impl PartScan {
    /// True if the part ends cleanly or is left alone.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.scan.as_ref().is_none_or(|s| s.tail == Tail::Clean)
    }
}

/// The parts of the log in `dir`: a Redis multi-part AOF if the directory holds a file named
/// `*.manifest`, otherwise a segment directory. `dir` may also be the manifest file itself (as
/// `redis-check-aof` takes it).
///
/// # Errors
///
/// [`Error::Io`] if the directory or a file cannot be read; [`Error::Corrupt`] for a damaged manifest
/// (see the module docs) or for more than one manifest.
pub fn dir_parts(dir: impl AsRef<Path>) -> Result<(Layout, Vec<Part>), Error> {
    let dir = dir.as_ref();
    if !dir.is_dir() && dir.extension().is_some_and(|e| e == "manifest") {
        let parts = redis_parts(dir)?;
        let manifest = dir.to_path_buf();
        return Ok((Layout::RedisMultiPart { manifest }, parts));
    }
    let files = regular_files(dir)?;
    let manifests: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "manifest"))
        .collect();
    match manifests.as_slice() {
        [] => Ok((Layout::Segments, segments(files))),
        [manifest] => {
            let parts = redis_parts(manifest)?;
            Ok((
                Layout::RedisMultiPart {
                    manifest: (*manifest).clone(),
                },
                parts,
            ))
        }
        [first, ..] => Err(Error::Corrupt {
            path: dir.to_path_buf(),
            offset: 0,
            reason: Cow::Owned(format!(
                "{} manifest files (first {}): which one describes the log is ambiguous",
                manifests.len(),
                first.display()
            )),
        }),
    }
}

/// The files of a segment directory in name order (hidden files and evidence files excluded).
///
/// # Errors
///
/// [`Error::Io`] if the directory cannot be listed.
pub fn segment_parts(dir: impl AsRef<Path>) -> Result<Vec<Part>, Error> {
    Ok(segments(regular_files(dir.as_ref())?))
}

fn segments(files: Vec<PathBuf>) -> Vec<Part> {
    files
        .into_iter()
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            !name.starts_with('.') && !name.ends_with(".torn") && !name.ends_with(".lost")
        })
        .map(|path| Part {
            path,
            role: Role::Segment,
        })
        .collect()
}

/// Regular files directly in `dir`, sorted by name.
fn regular_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
        if kind.is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The parts of a Redis multi-part AOF, read from its manifest: the base file, if any, then the
/// incremental files in manifest order, all in the manifest's directory.
///
/// # Errors
///
/// [`Error::Corrupt`] for a manifest Redis would refuse (see the module docs); [`Error::Io`] if the
/// manifest or the start of the base file cannot be read.
pub fn redis_parts(manifest: impl AsRef<Path>) -> Result<Vec<Part>, Error> {
    let manifest = manifest.as_ref();
    let dir = match manifest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut bytes = Vec::new();
    fs::File::open(manifest)
        .and_then(|f| f.take(MANIFEST_MAX_LEN + 1).read_to_end(&mut bytes))
        .map_err(|e| Error::io(manifest, e))?;
    if bytes.len() as u64 > MANIFEST_MAX_LEN {
        return Err(corrupt_manifest(manifest, 0, "larger than 4 MiB".into()));
    }
    let entries = parse_manifest(&bytes)
        .map_err(|(offset, reason)| corrupt_manifest(manifest, offset, reason))?;
    let mut parts = Vec::new();
    for (name, kind) in entries {
        let path = dir.join(name);
        let role = match kind {
            b'b' if is_rdb(&path)? => Role::RdbBase,
            b'b' => Role::Base,
            _ => Role::Incr,
        };
        parts.push(Part { path, role });
    }
    Ok(parts)
}

fn corrupt_manifest(path: &Path, offset: u64, reason: Cow<'static, str>) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: Cow::Owned(format!("AOF manifest: {reason}")),
    }
}

/// True if the file starts with the RDB magic `REDIS` (and is long enough to hold an RDB header), the
/// test `redis-check-aof` applies.
fn is_rdb(path: &Path) -> Result<bool, Error> {
    let mut head = Vec::with_capacity(8);
    fs::File::open(path)
        .and_then(|f| f.take(8).read_to_end(&mut head))
        .map_err(|e| Error::io(path, e))?;
    Ok(head.len() == 8 && head.starts_with(b"REDIS"))
}

/// Where (the line's offset) and why a manifest is refused.
type ManifestError = (u64, Cow<'static, str>);

/// Parses a manifest into (file name, type) for the base file first, then the incremental files, as
/// Redis's `aofLoadManifestFromFile` does. Errors carry the line's offset and the reason.
fn parse_manifest(bytes: &[u8]) -> Result<Vec<(String, u8)>, ManifestError> {
    if bytes.is_empty() {
        return Err((0, "the manifest is empty".into()));
    }
    let mut base = None;
    let mut incr = Vec::new();
    let mut max_seq = 0i64;
    let mut at = 0;
    while at < bytes.len() {
        let offset = at as u64;
        let rest = &bytes[at..];
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            if rest[0] == b'#' {
                break;
            }
            return Err((offset, "the last line has no newline (cut short?)".into()));
        };
        at += nl + 1;
        let line = &rest[..nl];
        if line.first() == Some(&b'#') {
            continue;
        }
        if nl > MANIFEST_MAX_LINE {
            return Err((offset, "a line is longer than 1024 bytes".into()));
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| (offset, Cow::Borrowed("a line is not valid UTF-8")))?
            .trim_matches([' ', '\t', '\r']);
        if line.is_empty() {
            return Err((offset, "an empty line".into()));
        }
        let args = split_args(line).ok_or((offset, Cow::Borrowed("unbalanced quotes")))?;
        if args.len() < 6 || args.len() % 2 == 1 {
            return Err((
                offset,
                "a line needs key-value pairs file, seq and type".into(),
            ));
        }
        let (mut name, mut seq, mut kind) = (None, 0i64, None);
        for pair in args.chunks_exact(2) {
            let value = &pair[1];
            if pair[0].eq_ignore_ascii_case("file") {
                if value.contains('/') || value == "." || value == ".." {
                    return Err((offset, "a file must be a name, not a path".into()));
                }
                name = Some(value.clone());
            } else if pair[0].eq_ignore_ascii_case("seq") {
                seq = value.parse().unwrap_or(0);
            } else if pair[0].eq_ignore_ascii_case("type") {
                kind = value.bytes().next();
            }
        }
        let (Some(name), Some(kind)) = (name, kind) else {
            return Err((offset, "a line lacks its file name or type".into()));
        };
        if seq == 0 || name.is_empty() {
            return Err((
                offset,
                "a line lacks its file name or sequence number".into(),
            ));
        }
        match kind {
            b'b' if base.is_some() => return Err((offset, "two base files".into())),
            b'b' => base = Some(name),
            b'h' => {}
            b'i' if seq <= max_seq => {
                return Err((
                    offset,
                    "incremental sequence numbers do not increase".into(),
                ))
            }
            b'i' => {
                max_seq = seq;
                incr.push(name);
            }
            _ => return Err((offset, "unknown file type".into())),
        }
    }
    let mut out: Vec<(String, u8)> = base.map(|b| (b, b'b')).into_iter().collect();
    out.extend(incr.into_iter().map(|n| (n, b'i')));
    Ok(out)
}

/// Splits a manifest line into words as Redis's `sdssplitargs` does for the names Redis writes: plain
/// words, and double-quoted words with `\"`, `\\`, `\n`, `\r`, `\t`, `\a`, `\b` and `\xHH` escapes.
fn split_args(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Some(out);
        };
        let mut word = String::new();
        if first == '"' {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        'n' => word.push('\n'),
                        'r' => word.push('\r'),
                        't' => word.push('\t'),
                        'a' => word.push('\x07'),
                        'b' => word.push('\x08'),
                        'x' => {
                            let hex: String = [chars.next()?, chars.next()?].iter().collect();
                            word.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
                        }
                        c => word.push(c),
                    },
                    c => word.push(c),
                }
            }
            // A closing quote must be followed by a space or the end of the line.
            if chars.peek().is_some_and(|c| !c.is_ascii_whitespace()) {
                return None;
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_ascii_whitespace()) {
                word.push(c);
            }
        }
        out.push(word);
    }
}

/// Scans every part in order without modifying anything (a [`Role::RdbBase`] part is not scanned).
///
/// # Errors
///
/// [`Error::InvalidConfig`] or [`Error::Io`].
pub fn check_parts<F: RecordFormat + ?Sized>(
    parts: &[Part],
    format: &F,
    config: &Config,
) -> Result<Vec<PartScan>, Error> {
    config.validate()?;
    parts
        .iter()
        .map(|part| {
            let scan = match part.role {
                Role::RdbBase => None,
                _ => Some(scan_file(&part.path, format, &config.scan)?),
            };
            Ok(PartScan {
                part: part.clone(),
                scan,
            })
        })
        .collect()
}

/// Repairs a multi-file log: every part but the last must end cleanly, and only the last may be
/// repaired, by [`repair`]. A [`Role::RdbBase`] part is left alone wherever it is.
///
/// # Errors
///
/// [`Error::Corrupt`] naming the first earlier part that does not end cleanly (a torn or zero tail there
/// is corruption too: later parts were written after it), with nothing modified; otherwise as
/// [`repair`]. An empty list, or a list whose last part is left alone, is [`Outcome::Clean`] of an
/// empty scan.
pub fn repair_parts<F: RecordFormat + ?Sized>(
    parts: &[Part],
    format: &F,
    config: &Config,
) -> Result<Outcome, Error> {
    config.validate()?;
    let empty = Outcome::Clean(Scan {
        file_len: 0,
        valid_len: 0,
        records: 0,
        tail: Tail::Clean,
    });
    let Some((last, earlier)) = parts.split_last() else {
        return Ok(empty);
    };
    for part in earlier.iter().filter(|p| p.role != Role::RdbBase) {
        let scan = scan_file(&part.path, format, &config.scan)?;
        let reason = match scan.tail {
            Tail::Clean => continue,
            Tail::Corrupt { reason, .. } | Tail::Torn { reason } => reason,
            Tail::Zero => Cow::Borrowed("zero bytes follow the last record"),
        };
        return Err(Error::Corrupt {
            path: part.path.clone(),
            offset: scan.valid_len,
            reason: Cow::Owned(format!("{reason} (in a file that is not the last)")),
        });
    }
    if last.role == Role::RdbBase {
        return Ok(empty);
    }
    repair(&last.path, format, config)
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
    let parts: Vec<Part> = segments
        .iter()
        .map(|path| Part {
            path: path.clone(),
            role: Role::Segment,
        })
        .collect();
    repair_parts(&parts, format, config)
}
