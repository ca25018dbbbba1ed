//! The record-format seam: how the scanner asks "is there a whole record here?".

use std::borrow::Cow;
use std::fmt;

/// What a [`RecordFormat`] says about the bytes at one offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole, valid record of this many bytes (always at least 1) starts here.
    Complete(usize),
    /// The bytes seen so far are a valid beginning, but the record needs at least `needed` bytes in total
    /// (counted from the record start; always more than the bytes given).
    Incomplete {
        /// Total bytes, from the record start, needed before the format can answer again.
        needed: usize,
    },
    /// These bytes can never begin a valid record, whatever follows them.
    Invalid(Cow<'static, str>),
}

impl Frame {
    /// An [`Frame::Invalid`] with a static reason, which allocates nothing.
    #[must_use]
    pub const fn invalid(reason: &'static str) -> Self {
        Self::Invalid(Cow::Borrowed(reason))
    }
}

/// A log's framing, as seen by the scanner.
///
/// Implementations must be pure functions of the bytes they are given: the scanner calls
/// [`decode`](RecordFormat::decode) with growing prefixes of the same record and relies on the answers
/// being consistent. A `decode` must never allocate in proportion to a length field it reads; it only
/// looks at `buf`.
pub trait RecordFormat: fmt::Debug + Send + Sync {
    /// A short name for reports and logs, such as `"resp"`.
    fn name(&self) -> &'static str;

    /// Checks the file header at offset 0 (the whole file prefix is passed in, possibly shorter than the
    /// header). Returns the header length as [`Frame::Complete`], or `Complete(0)` when the format has no
    /// header. An empty file is always accepted before this is called.
    fn decode_header(&self, buf: &[u8]) -> Frame {
        let _ = buf;
        Frame::Complete(0)
    }

    /// Classifies the bytes at the start of `buf`, which is the whole rest of the file or a window of it.
    fn decode(&self, buf: &[u8]) -> Frame;

    /// The total length of the record at the start of `buf` as its header gives it, without checking
    /// the record: [`Frame::Complete`] with the length, [`Frame::Incomplete`] if `buf` is shorter than
    /// the header, or [`Frame::Invalid`] if the header can never start a record. The answer must agree
    /// with [`decode`](RecordFormat::decode) on every record that checks out.
    ///
    /// A format that can answer lets a scan split a file between threads
    /// ([`ScanConfig::threads`](crate::ScanConfig::threads)): one thread hops from header to header to
    /// find where the next thread's first record starts, before it checks its own records. `None`, the
    /// default, means the length is only known by decoding the record, and the scan stays on one thread.
    fn record_len(&self, buf: &[u8]) -> Option<Frame> {
        let _ = buf;
        None
    }

    /// The first offset at or after `from` in `buf` where a record could possibly begin.
    ///
    /// The resync search after a bad frame only tries these offsets, so a format with a start marker can
    /// skip quickly (RESP jumps to the next `*`). The default tries every offset.
    fn next_candidate(&self, buf: &[u8], from: usize) -> Option<usize> {
        (from < buf.len()).then_some(from)
    }
}

impl<F: RecordFormat + ?Sized> RecordFormat for &F {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn decode_header(&self, buf: &[u8]) -> Frame {
        (**self).decode_header(buf)
    }
    fn decode(&self, buf: &[u8]) -> Frame {
        (**self).decode(buf)
    }
    fn record_len(&self, buf: &[u8]) -> Option<Frame> {
        (**self).record_len(buf)
    }
    fn next_candidate(&self, buf: &[u8], from: usize) -> Option<usize> {
        (**self).next_candidate(buf, from)
    }
}

/// Why the record walk stops at `frame` (anything but a whole record that fits), and whether the frame
/// is invalid rather than cut short, which decides whether the stop is unproven. Both walks share it so that a scan
/// in memory and a scan of the file stop for the same reasons.
pub(crate) fn stop_reason(frame: Frame) -> (Cow<'static, str>, bool) {
    match frame {
        Frame::Complete(_) => (
            Cow::Borrowed("format returned an impossible record length"),
            false,
        ),
        Frame::Incomplete { .. } => (Cow::Borrowed("record runs past the end of the file"), false),
        Frame::Invalid(reason) => (reason, true),
    }
}
