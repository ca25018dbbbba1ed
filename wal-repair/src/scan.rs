//! Scanning: find the end of the last whole record and classify what follows it.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::format::{stop_reason, Frame, RecordFormat};
use crate::Error;

/// Limits for a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanConfig {
    /// Bytes read from the file per `read` call; the buffer only grows beyond this to hold one record
    /// that is larger, and never beyond the bytes present in the file.
    ///
    /// Default: 128 KiB (small enough to stay in the CPU cache between the copy and the parse).
    pub read_chunk: usize,
    /// How far past a bad frame the resync search looks for a valid record. If the non-zero bytes after
    /// the bad frame extend further than this, the tail cannot be proven torn and is reported as corrupt.
    /// It must exceed the largest record the writer can produce, since a torn record is at most one
    /// record long. It also bounds the memory the search uses.
    ///
    /// Default: 64 MiB.
    pub resync_window: u64,
    /// Threads that read and check a file at once, each its own chunks of `read_chunk` bytes, so that
    /// the kernel's copy out of the page cache and the checksums of neighbouring chunks run side by
    /// side. Used only for a format whose record headers give the record length
    /// ([`RecordFormat::record_len`], the frames format) and a file longer than one chunk per thread;
    /// the threads are scoped to the scan and joined before it returns. Each holds one chunk, or one
    /// record if a record is longer.
    ///
    /// Default: 1 (a library call starts no thread unless asked; the `wal-repair` tool asks for 2).
    pub threads: usize,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            read_chunk: 128 << 10,
            resync_window: 64 << 20,
            threads: 1,
        }
    }
}

impl ScanConfig {
    /// Checks the limits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if `read_chunk` is below 4 KiB, `resync_window` is zero or `threads`
    /// is zero.
    pub fn validate(&self) -> Result<(), Error> {
        if self.threads == 0 {
            return Err(Error::InvalidConfig {
                field: "threads",
                reason: "must be at least 1",
            });
        }
        if self.read_chunk < 4096 {
            return Err(Error::InvalidConfig {
                field: "read_chunk",
                reason: "must be at least 4096 bytes",
            });
        }
        if self.resync_window == 0 {
            return Err(Error::InvalidConfig {
                field: "resync_window",
                reason: "must be positive",
            });
        }
        Ok(())
    }
}

/// What follows the last whole record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Nothing: the log ends exactly after a whole record (or its header, or is empty).
    Clean,
    /// Only zero bytes (preallocated space, or a write whose data never reached the disk).
    Zero,
    /// A bad frame that no valid record follows: an interrupted write. Repairable.
    Torn {
        /// What the format said about the first discarded byte.
        reason: Cow<'static, str>,
    },
    /// Damage that valid data may follow. Never repaired.
    Corrupt {
        /// Offset of the bad frame (equal to [`Scan::valid_len`]).
        offset: u64,
        /// Why it is corrupt.
        reason: Cow<'static, str>,
        /// Offset of a valid record found after the bad frame, if that is what proved corruption.
        next_valid: Option<u64>,
    },
}

/// The result of scanning a log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scan {
    /// File length when scanned.
    pub file_len: u64,
    /// End of the last whole record (the header length for a log without records, 0 for an empty file).
    pub valid_len: u64,
    /// Whole records before `valid_len`.
    pub records: u64,
    /// What follows `valid_len`.
    pub tail: Tail,
}

impl Scan {
    /// Bytes after the last whole record.
    #[must_use]
    pub fn discarded(&self) -> u64 {
        self.file_len - self.valid_len
    }

    /// True when repair would change the file (a torn or zero tail).
    #[must_use]
    pub fn is_repairable(&self) -> bool {
        matches!(self.tail, Tail::Torn { .. } | Tail::Zero)
    }
}

/// Where and why the record walk stopped.
struct Stop {
    offset: u64,
    reason: Cow<'static, str>,
    /// A bad file header: this is not a log of this format, so it is reported as corrupt outright.
    fatal: bool,
    /// The format has no header and the very first record is invalid (see `classify_tail`).
    unproven: bool,
}

fn header_corrupt(offset: u64, reason: Cow<'static, str>) -> Tail {
    Tail::Corrupt {
        offset,
        reason,
        next_valid: None,
    }
}

/// Classifies the bytes after a bad frame. `tail` starts at the bad frame (file offset `base`);
/// `reaches_eof` says whether it runs to the end of the file.
fn classify_tail<F: RecordFormat + ?Sized>(
    format: &F,
    tail: &[u8],
    base: u64,
    reaches_eof: bool,
    reason: Cow<'static, str>,
    unproven_format: bool,
) -> Tail {
    // Zeros can never start a record of either built-in format, so the search stops at the last non-zero
    // byte; a run of trailing zeros is preallocation, not data.
    let Some(last) = tail.iter().rposition(|&b| b != 0) else {
        return Tail::Zero;
    };
    if unproven_format {
        // Nothing yet shows this file is in this format (no header, no whole record) and its first
        // bytes cannot start a record: cutting would delete a whole file of some other format. The
        // reason is static so that scanning arbitrary bytes allocates nothing.
        let _ = reason;
        return Tail::Corrupt {
            offset: base,
            reason: Cow::Borrowed(
                "the file holds no whole record and does not start like one: is it in this format?",
            ),
            next_valid: None,
        };
    }
    let content_end = last + 1;
    let mut from = 1;
    while let Some(c) = format.next_candidate(tail, from) {
        if c >= content_end {
            break;
        }
        match format.decode(&tail[c..]) {
            Frame::Complete(_) => {
                return Tail::Corrupt {
                    offset: base,
                    reason,
                    next_valid: Some(base + c as u64),
                }
            }
            Frame::Incomplete { .. } if !reaches_eof => {
                // The candidate could still be a valid record that extends past the window: we cannot
                // prove the tail torn, so refuse rather than risk dropping it.
                return Tail::Corrupt {
                    offset: base,
                    reason: Cow::Owned(format!(
                        "{reason}; a possible record at offset {} extends past the resync window",
                        base + c as u64
                    )),
                    next_valid: None,
                };
            }
            Frame::Incomplete { .. } | Frame::Invalid(_) => {}
        }
        from = c + 1;
    }
    Tail::Torn { reason }
}

/// Scans a log held in memory. Allocates nothing for the built-in formats.
#[must_use]
pub fn scan_bytes<F: RecordFormat + ?Sized>(format: &F, buf: &[u8]) -> Scan {
    let file_len = buf.len() as u64;
    let done = |valid_len: usize, records: u64, tail: Tail| Scan {
        file_len,
        valid_len: valid_len as u64,
        records,
        tail,
    };
    if buf.is_empty() {
        return done(0, 0, Tail::Clean);
    }
    let mut pos = match format.decode_header(buf) {
        Frame::Complete(n) if n <= buf.len() => n,
        Frame::Complete(_) => {
            return done(
                0,
                0,
                header_corrupt(0, "format returned a header longer than the file".into()),
            )
        }
        Frame::Incomplete { .. } => {
            let tail = classify_tail(format, buf, 0, true, "file header cut short".into(), false);
            return done(0, 0, tail);
        }
        Frame::Invalid(reason) => return done(0, 0, header_corrupt(0, reason)),
    };
    let headerless = pos == 0;
    let mut records = 0;
    while pos < buf.len() {
        let (reason, invalid) = match format.decode(&buf[pos..]) {
            Frame::Complete(n) if n > 0 && n <= buf.len() - pos => {
                pos += n;
                records += 1;
                continue;
            }
            frame => stop_reason(frame),
        };
        let unproven = headerless && records == 0 && invalid;
        let tail = classify_tail(format, &buf[pos..], pos as u64, true, reason, unproven);
        return done(pos, records, tail);
    }
    done(pos, records, Tail::Clean)
}

/// Scans the log at `path`.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be opened or read; the scan never guesses past an I/O error.
pub fn scan_file<F: RecordFormat + ?Sized>(
    path: &Path,
    format: &F,
    config: &ScanConfig,
) -> Result<Scan, Error> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    scan_open_file(&mut file, path, format, config, &mut |_| {})
}

/// Scans an open log from its start, calling `progress` with the bytes scanned so far after each read.
///
/// Memory use is one read chunk, or up to twice one record if a record is larger, plus at most
/// [`ScanConfig::resync_window`] for the bytes after a bad frame; never more than the bytes present.
///
/// # Errors
///
/// [`Error::Io`] (naming `path`) if a read fails.
pub fn scan_open_file<F: RecordFormat + ?Sized>(
    file: &mut File,
    path: &Path,
    format: &F,
    config: &ScanConfig,
    progress: &mut dyn FnMut(u64),
) -> Result<Scan, Error> {
    let io = |e| Error::io(path, e);
    let file_len = file.metadata().map_err(io)?.len();
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let (valid_len, records, stop, file_len) =
        match walk_parallel(file, file_len, format, config, progress).map_err(io)? {
            Some((valid_len, records, stop)) => (valid_len, records, stop, file_len),
            None => {
                file.seek(SeekFrom::Start(0)).map_err(io)?;
                let mut walker = Walker {
                    file: &mut *file,
                    file_len,
                    chunk: config.read_chunk.max(4096),
                    buf: Vec::new(),
                    start: 0,
                    end: 0,
                    buf_offset: 0,
                    read_to: 0,
                };
                let (valid_len, records, stop) = walker.walk(format, progress).map_err(io)?;
                (valid_len, records, stop, walker.file_len)
            }
        };
    let Some(stop) = stop else {
        return Ok(Scan {
            file_len,
            valid_len,
            records,
            tail: Tail::Clean,
        });
    };
    let tail = if stop.fatal {
        header_corrupt(stop.offset, stop.reason)
    } else {
        classify_file_tail(file, file_len, format, config, stop).map_err(io)?
    };
    Ok(Scan {
        file_len,
        valid_len,
        records,
        tail,
    })
}

/// The record walk on [`ScanConfig::threads`] threads, when they are asked for and the format and the
/// file allow it; `None` means the caller walks on one thread (also after the file shrank mid-walk).
fn walk_parallel<F: RecordFormat + ?Sized>(
    file: &File,
    file_len: u64,
    format: &F,
    config: &ScanConfig,
    progress: &mut dyn FnMut(u64),
) -> io::Result<Option<(u64, u64, Option<Stop>)>> {
    use std::os::unix::fs::FileExt;

    let chunk = config.read_chunk.max(4096);
    let threads = config.threads.max(1);
    if threads < 2 || file_len / threads as u64 <= chunk as u64 {
        return Ok(None);
    }
    // The header is checked on this thread; anything unusual about it is left to the one-thread walk.
    let mut head = vec![0u8; chunk];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => return Ok(None),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let first = match format.decode_header(&head) {
        Frame::Complete(n) if n <= head.len() => n,
        _ => return Ok(None),
    };
    if format.record_len(&head[first..]).is_none() {
        return Ok(None);
    }
    drop(head);
    match crate::parallel::walk(
        file,
        file_len,
        first as u64,
        chunk,
        threads,
        format,
        progress,
    )? {
        crate::parallel::Walked::Shrunk => Ok(None),
        crate::parallel::Walked::Done {
            valid_len,
            records,
            stop,
        } => Ok(Some((
            valid_len,
            records,
            stop.map(|stop| Stop {
                offset: stop.offset,
                reason: stop.reason,
                fatal: false,
                unproven: first == 0 && records == 0 && stop.invalid,
            }),
        ))),
    }
}

fn classify_file_tail<F: RecordFormat + ?Sized>(
    file: &mut File,
    file_len: u64,
    format: &F,
    config: &ScanConfig,
    stop: Stop,
) -> io::Result<Tail> {
    let base = stop.offset;
    let remaining = file_len - base;
    let window = config.resync_window.max(1);
    if remaining <= window {
        let tail = read_range(file, base, remaining)?;
        return Ok(classify_tail(
            format,
            &tail,
            base,
            true,
            stop.reason,
            stop.unproven,
        ));
    }
    // The tail is longer than the window: find the last non-zero byte without loading it all.
    let content_end = last_nonzero_end(file, base, file_len, config.read_chunk.max(4096))?;
    if content_end <= base {
        return Ok(Tail::Zero);
    }
    if content_end - base > window {
        return Ok(Tail::Corrupt {
            offset: base,
            reason: Cow::Owned(format!(
                "{}; {} non-zero bytes follow, more than the resync window of {window} bytes, so the \
                 tail cannot be proven torn",
                stop.reason,
                content_end - base
            )),
            next_valid: None,
        });
    }
    let tail = read_range(file, base, window)?;
    Ok(classify_tail(
        format,
        &tail,
        base,
        false,
        stop.reason,
        stop.unproven,
    ))
}

fn read_range(file: &mut File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::new();
    file.take(len).read_to_end(&mut out)?;
    Ok(out)
}

/// Offset just after the last non-zero byte in `[base, file_len)`, or `base` if all are zero.
fn last_nonzero_end(file: &mut File, base: u64, file_len: u64, chunk: usize) -> io::Result<u64> {
    let mut buf = vec![0u8; chunk];
    let mut end = file_len;
    while end > base {
        let start = end.saturating_sub(chunk as u64).max(base);
        // The chunk is at most `chunk` bytes, which fits in usize.
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(base)
}

/// Walks whole records through a bounded, sliding buffer.
struct Walker<'f> {
    file: &'f mut File,
    file_len: u64,
    chunk: usize,
    buf: Vec<u8>,
    /// Next unexamined byte in `buf`.
    start: usize,
    /// End of the filled part of `buf`.
    end: usize,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    /// File offset up to which bytes have been read.
    read_to: u64,
}

impl Walker<'_> {
    fn at_eof(&self) -> bool {
        self.read_to >= self.file_len
    }

    /// Reads so that at least `want` unexamined bytes are buffered (or the file ends). Keeps the
    /// unexamined bytes, drops the rest, and grows the buffer only to fit `want`, which the caller has
    /// already capped at the bytes left in the file.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        let have = self.end - self.start;
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.buf_offset += self.start as u64;
            self.start = 0;
            self.end = have;
        }
        let left = self.file_len - self.read_to;
        let target = want.max(self.chunk);
        let target =
            have + (target - have.min(target)).min(usize::try_from(left).unwrap_or(usize::MAX));
        if self.buf.len() < target {
            self.buf.resize(target, 0);
        }
        while self.end < target {
            match self.file.read(&mut self.buf[self.end..target]) {
                Ok(0) => {
                    // The file shrank while we read it; what we have is all there is.
                    self.file_len = self.read_to;
                    break;
                }
                Ok(n) => {
                    self.end += n;
                    self.read_to += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn offset(&self) -> u64 {
        self.buf_offset + self.start as u64
    }

    fn walk<F: RecordFormat + ?Sized>(
        &mut self,
        format: &F,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<(u64, u64, Option<Stop>)> {
        if self.file_len == 0 {
            return Ok((0, 0, None));
        }
        self.fill(self.chunk)?;
        loop {
            match format.decode_header(&self.buf[..self.end]) {
                Frame::Complete(n) if n <= self.end => {
                    self.start = n;
                    break;
                }
                Frame::Incomplete { needed } if needed > self.end && !self.at_eof() => {
                    self.fill(needed)?;
                }
                Frame::Incomplete { .. } => {
                    return Ok((
                        0,
                        0,
                        Some(Stop {
                            offset: 0,
                            reason: "file header cut short".into(),
                            fatal: false,
                            unproven: false,
                        }),
                    ))
                }
                Frame::Complete(_) => {
                    return Ok((
                        0,
                        0,
                        Some(fatal_header(
                            "format returned a header longer than the file".into(),
                        )),
                    ))
                }
                Frame::Invalid(reason) => return Ok((0, 0, Some(fatal_header(reason)))),
            }
        }
        let headerless = self.offset() == 0;
        let mut records = 0;
        loop {
            if self.start == self.end {
                if self.at_eof() {
                    return Ok((self.offset(), records, None));
                }
                self.fill(self.chunk)?;
                progress(self.read_to);
                continue;
            }
            let (reason, invalid) = match format.decode(&self.buf[self.start..self.end]) {
                Frame::Complete(n) if n > 0 && n <= self.end - self.start => {
                    self.start += n;
                    records += 1;
                    continue;
                }
                Frame::Incomplete { needed } if needed <= self.end - self.start => (
                    Cow::Borrowed("format asked for bytes it already had"),
                    false,
                ),
                Frame::Incomplete { needed } if !self.at_eof() => {
                    let left = usize::try_from(self.file_len - self.offset()).unwrap_or(usize::MAX);
                    // A format may ask for only the next few bytes of a long
                    // record, and each retry decodes the record from its
                    // start: asking for at least twice what is buffered makes
                    // the retries' total cost linear in the record's length
                    // rather than quadratic.
                    let have = self.end - self.start;
                    self.fill(needed.max(have.saturating_mul(2)).min(left))?;
                    progress(self.read_to);
                    continue;
                }
                frame => stop_reason(frame),
            };
            return Ok((
                self.offset(),
                records,
                Some(Stop {
                    offset: self.offset(),
                    reason,
                    fatal: false,
                    unproven: headerless && records == 0 && invalid,
                }),
            ));
        }
    }
}

fn fatal_header(reason: Cow<'static, str>) -> Stop {
    Stop {
        offset: 0,
        reason,
        fatal: true,
        unproven: false,
    }
}
