//! RESP, the format of Redis and Tile38 append-only files: each record is an array of bulk strings
//! (`*<argc>\r\n` then, `argc` times, `$<len>\r\n<len bytes>\r\n`). Lines starting with `#` (Redis
//! timestamp annotations, at most 1024 bytes) are records of their own and carry no command.
//!
//! The parser is zero-copy and allocation-free: it validates a record by walking its length lines and
//! skipping bulk payloads by their declared length, so its cost is per record, not per byte. It is
//! public so that servers can replay their AOF with the same code that repairs it.

use crate::format::{Frame, RecordFormat};

/// The longest decimal length line accepted (`*` or `$`, up to 19 digits, CRLF).
const MAX_DIGITS: usize = 19;
/// The longest `#` annotation line accepted, as in Redis.
pub const MAX_ANNOTATION: usize = 1024;

/// RESP as a [`RecordFormat`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Resp;

impl RecordFormat for Resp {
    fn name(&self) -> &'static str {
        "resp"
    }

    fn decode(&self, buf: &[u8]) -> Frame {
        match parse(buf) {
            Ok((len, _)) => Frame::Complete(len),
            Err(frame) => frame,
        }
    }

    /// Only `*` starts a candidate: any `#` followed by a newline is a well-formed annotation, so
    /// garbage would too often "prove" corruption if annotations counted as evidence.
    fn next_candidate(&self, buf: &[u8], from: usize) -> Option<usize> {
        let rest = buf.get(from..)?;
        memchr::memchr(b'*', rest).map(|i| from + i)
    }
}

/// One command record, borrowed from the log buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command<'a> {
    raw: &'a [u8],
    body: usize,
    argc: usize,
}

impl<'a> Command<'a> {
    /// The record's bytes, exactly as in the log.
    #[must_use]
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The number of arguments (at least 1).
    #[must_use]
    pub fn argc(&self) -> usize {
        self.argc
    }

    /// The arguments in order; the first is the command name.
    #[must_use]
    pub fn args(&self) -> Args<'a> {
        Args {
            rest: &self.raw[self.body..],
            left: self.argc,
        }
    }
}

/// Iterator over a [`Command`]'s arguments.
#[derive(Debug, Clone)]
pub struct Args<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        // The record was validated by `parse`, so these lines are well formed.
        let (len, start) = number_line(self.rest, 0, b'$').ok()?;
        let arg = self.rest.get(start..start + len)?;
        self.rest = &self.rest[start + len + 2..];
        self.left -= 1;
        Some(arg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Parses `<prefix><digits>\r\n` at `pos`; returns the number and the offset after the CRLF.
#[inline]
fn number_line(buf: &[u8], pos: usize, prefix: u8) -> Result<(usize, usize), Frame> {
    match buf.get(pos) {
        None => return Err(Frame::Incomplete { needed: pos + 1 }),
        Some(&b) if b != prefix => {
            return Err(if prefix == b'*' {
                Frame::invalid("expected '*' at the start of a record")
            } else {
                Frame::invalid("expected '$' before a bulk string")
            })
        }
        Some(_) => {}
    }
    let mut value: usize = 0;
    let mut i = pos + 1;
    loop {
        match buf.get(i) {
            None => return Err(Frame::Incomplete { needed: i + 1 }),
            Some(&d @ b'0'..=b'9') => {
                if i - pos > MAX_DIGITS {
                    return Err(Frame::invalid("length line has too many digits"));
                }
                value = match value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(usize::from(d - b'0')))
                {
                    Some(v) => v,
                    None => return Err(Frame::invalid("length does not fit in usize")),
                };
            }
            Some(b'\r') => break,
            Some(_) => return Err(Frame::invalid("length line holds a non-digit")),
        }
        i += 1;
    }
    if i == pos + 1 {
        return Err(Frame::invalid("length line has no digits"));
    }
    match buf.get(i + 1) {
        None => Err(Frame::Incomplete { needed: i + 2 }),
        Some(b'\n') => Ok((value, i + 2)),
        Some(_) => Err(Frame::invalid("length line not ended by CRLF")),
    }
}

/// Parses the record at the start of `buf`.
///
/// Returns its length and the command, or `None` for a `#` annotation line.
///
/// # Errors
///
/// [`Frame::Incomplete`] if `buf` ends inside a record that is valid so far, [`Frame::Invalid`] if it
/// can never become one. `Frame::Complete` is never returned as an error.
pub fn parse(buf: &[u8]) -> Result<(usize, Option<Command<'_>>), Frame> {
    if buf.first() == Some(&b'#') {
        let window = &buf[..buf.len().min(MAX_ANNOTATION)];
        return match memchr::memchr(b'\n', window) {
            Some(i) => Ok((i + 1, None)),
            None if buf.len() >= MAX_ANNOTATION => {
                Err(Frame::invalid("annotation line longer than 1024 bytes"))
            }
            None => Err(Frame::Incomplete {
                needed: buf.len() + 1,
            }),
        };
    }
    let (argc, body) = number_line(buf, 0, b'*')?;
    if argc == 0 {
        return Err(Frame::invalid("command array has no arguments"));
    }
    let mut pos = body;
    // Each argument consumes at least six bytes or ends the loop, so a huge argc costs nothing.
    for _ in 0..argc {
        let (len, start) = number_line(buf, pos, b'$')?;
        let Some(end) = start.checked_add(len).and_then(|e| e.checked_add(2)) else {
            return Err(Frame::invalid("bulk string length overflows"));
        };
        match buf.get(end - 2..end) {
            None => return Err(Frame::Incomplete { needed: end }),
            Some(b"\r\n") => pos = end,
            Some(_) => return Err(Frame::invalid("bulk string not followed by CRLF")),
        }
    }
    Ok((
        pos,
        Some(Command {
            raw: &buf[..pos],
            body,
            argc,
        }),
    ))
}

/// Why [`Commands`] stopped before the end of its buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Offset in the buffer of the first byte that is not part of a whole record.
    pub offset: usize,
    /// [`Frame::Incomplete`] (the buffer ends inside a record) or [`Frame::Invalid`].
    pub frame: Frame,
}

/// Iterates over the commands of a RESP buffer, skipping annotations.
///
/// Yields one `Err(Stopped)` at the first bad record and then ends.
#[derive(Debug, Clone)]
pub struct Commands<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Commands<'a> {
    /// Starts at the beginning of `buf`.
    #[must_use]
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Offset of the next record (the end of the last whole record once iteration is over).
    #[must_use]
    pub fn offset(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Commands<'a> {
    type Item = Result<Command<'a>, Stopped>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.pos < self.buf.len() {
            match parse(&self.buf[self.pos..]) {
                Ok((len, cmd)) => {
                    self.pos += len;
                    if let Some(cmd) = cmd {
                        return Some(Ok(cmd));
                    }
                }
                Err(frame) => {
                    let offset = self.pos;
                    self.buf = &self.buf[..offset];
                    return Some(Err(Stopped { offset, frame }));
                }
            }
        }
        None
    }
}

/// Appends one RESP command record to `out`.
pub fn encode<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "*{}\r\n", args.len());
    for arg in args {
        let arg = arg.as_ref();
        let _ = write!(out, "${}\r\n", arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}
