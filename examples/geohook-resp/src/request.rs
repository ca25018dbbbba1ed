//! The bounded, incremental parser of client requests.
//!
//! Requests are multibulk arrays (what every client library sends) or inline
//! commands (a plain text line, as `redis-cli` in a pipe or `telnet` sends
//! them), accepted the way Redis accepts them. Framing faults get Redis's
//! protocol error texts.

use crate::read::{self, Fault, Grammar, Syntax};

/// Caps applied to every request read from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest number of arguments in one command.
    ///
    /// Default: 4096.
    pub max_args: usize,
    /// Largest single bulk string, in bytes.
    ///
    /// Default: 8 MiB.
    pub max_bulk: usize,
    /// Largest whole request (one command with its framing), in bytes.
    ///
    /// Default: 16 MiB.
    pub max_request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_args: 4096,
            max_bulk: 8 << 20,
            max_request: 16 << 20,
        }
    }
}

/// Why a request could not be parsed. The connection is closed after the
/// error reply, because the stream can no longer be framed reliably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// The multibulk count was not a number or exceeded the argument cap.
    InvalidMultibulkLength,
    /// A bulk length was not a number or exceeded the bulk cap.
    InvalidBulkLength,
    /// A `$` was expected but another byte was found.
    ExpectedDollar(u8),
    /// A bulk string was not followed by CRLF.
    InvalidBulkEnding,
    /// The request grew past the request cap before it was complete.
    TooBig,
    /// An inline command had an unbalanced quote.
    UnbalancedQuotes,
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtoError::InvalidMultibulkLength => {
                f.write_str("Protocol error: invalid multibulk length")
            }
            ProtoError::InvalidBulkLength => f.write_str("Protocol error: invalid bulk length"),
            ProtoError::ExpectedDollar(b) => {
                write!(
                    f,
                    "Protocol error: expected '$', got '{}'",
                    char::from(*b).escape_default()
                )
            }
            ProtoError::InvalidBulkEnding => {
                f.write_str("Protocol error: invalid bulk line ending")
            }
            ProtoError::TooBig => f.write_str("Protocol error: request too big"),
            ProtoError::UnbalancedQuotes => {
                f.write_str("Protocol error: unbalanced quotes in request")
            }
        }
    }
}

impl std::error::Error for ProtoError {}

impl From<Fault> for ProtoError {
    fn from(fault: Fault) -> Self {
        match fault {
            Fault::Count { .. } => ProtoError::InvalidMultibulkLength,
            Fault::BulkLen { .. } => ProtoError::InvalidBulkLength,
            Fault::ExpectedDollar { got, .. } => ProtoError::ExpectedDollar(got),
            Fault::BulkEnding { .. } => ProtoError::InvalidBulkEnding,
            Fault::TooBig => ProtoError::TooBig,
        }
    }
}

/// One parsed command: its arguments, and how many bytes of input it used.
pub type Parsed = (Vec<Vec<u8>>, usize);

/// Argument buffers that [`parse_into`] fills and a connection reuses from one
/// command to the next, so that a command costs no allocation per argument.
#[derive(Debug, Default)]
pub struct ArgBufs {
    bufs: Vec<Vec<u8>>,
    len: usize,
    /// Where [`parse_resume`] stopped in an incomplete multibulk request.
    progress: read::Progress,
    /// How far [`parse_resume`] has looked for the end of an incomplete
    /// inline request.
    scanned: usize,
}

impl ArgBufs {
    /// Buffers larger than this are freed after their command instead of being
    /// kept for the next one, so an idle connection holds little.
    const KEEP_BYTES: usize = 4096;
    /// At most this many buffers are kept between commands.
    const KEEP_COUNT: usize = 64;

    /// The arguments of the last command [`parse_into`] completed.
    pub fn args(&self) -> &[Vec<u8>] {
        &self.bufs[..self.len]
    }

    /// Frees the buffers that a large command left behind. The arguments
    /// of a request that [`parse_resume`] has begun are kept.
    pub fn shrink(&mut self) {
        if self.progress.done > 0 {
            return;
        }
        self.bufs.truncate(Self::KEEP_COUNT);
        for b in &mut self.bufs {
            if b.capacity() > Self::KEEP_BYTES {
                *b = Vec::new();
            }
        }
        self.len = self.len.min(self.bufs.len());
    }

    fn set(&mut self, i: usize, bytes: &[u8]) {
        match self.bufs.get_mut(i) {
            Some(b) => {
                b.clear();
                b.extend_from_slice(bytes);
            }
            None => self.bufs.push(bytes.to_vec()),
        }
    }
}

/// Parses one command from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((args, used)))`
/// for a complete command (an empty `args` is an empty line or `*0`, which the
/// caller skips), and an error when the bytes can never form a valid request.
///
/// # Errors
///
/// [`ProtoError`] for malformed framing or any cap in `limits` exceeded.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, ProtoError> {
    let mut out = ArgBufs::default();
    Ok(parse_into(buf, limits, &mut out)?.map(|used| {
        out.bufs.truncate(out.len);
        (out.bufs, used)
    }))
}

/// [`parse`] into reused buffers: on `Ok(Some(used))` the command's arguments
/// are [`ArgBufs::args`]. Buffers grow with the bytes that arrived, as in
/// [`parse`].
///
/// # Errors
///
/// As [`parse`].
pub fn parse_into(
    buf: &[u8],
    limits: &Limits,
    out: &mut ArgBufs,
) -> Result<Option<usize>, ProtoError> {
    out.progress = read::Progress::default();
    out.scanned = 0;
    parse_resume(buf, limits, out)
}

/// [`parse_into`] that resumes where the last call stopped: when a request is
/// incomplete (`Ok(None)`), its complete arguments stay in `out` and are
/// neither parsed nor copied again, and an inline line is not searched again
/// for its end. Each byte of a request is therefore read once, however
/// slowly it arrives.
///
/// The next call must pass the same bytes (the incomplete request still at
/// the front of `buf`), possibly extended; a caller that drops them must call
/// [`parse_into`] instead, which starts afresh.
///
/// # Errors
///
/// As [`parse`].
pub fn parse_resume(
    buf: &[u8],
    limits: &Limits,
    out: &mut ArgBufs,
) -> Result<Option<usize>, ProtoError> {
    out.len = 0;
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != b'*' {
        // Look for the line's end only in the bytes not searched yet.
        let from = out.scanned.min(buf.len());
        if !buf[from..].contains(&b'\n') {
            if buf.len() > limits.max_request {
                out.scanned = 0;
                return Err(ProtoError::TooBig);
            }
            out.scanned = buf.len();
            return Ok(None);
        }
        out.scanned = 0;
        // Inline commands are rare (a human at a terminal); they are parsed
        // on their own and copied in.
        return Ok(parse_inline(buf, limits)?.map(|(args, used)| {
            for (i, a) in args.iter().enumerate() {
                out.set(i, a);
            }
            out.len = args.len();
            used
        }));
    }
    let grammar = Grammar {
        syntax: Syntax::Lenient,
        max_args: limits.max_args,
        max_bulk: limits.max_bulk,
        max_bytes: limits.max_request,
    };
    let mut progress = out.progress;
    let read = read::read_array_from(buf, &grammar, &mut progress, |i, arg| out.set(i, arg));
    out.progress = progress;
    let Some((n, used)) = read? else {
        return Ok(None);
    };
    out.len = n;
    Ok(Some(used))
}

fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, ProtoError> {
    let Some((end, used)) = read::read_line(buf, 0, limits.max_request, Syntax::Lenient)
        // A lenient line has no fault but its length.
        .map_err(|_| ProtoError::TooBig)?
    else {
        return Ok(None);
    };
    let text = &buf[..end];
    let mut args: Vec<Vec<u8>> = Vec::new();
    let mut i = 0;
    while i < text.len() {
        while i < text.len() && text[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= text.len() {
            break;
        }
        let mut arg = Vec::new();
        if text[i] == b'"' || text[i] == b'\'' {
            let quote = text[i];
            i += 1;
            loop {
                if i >= text.len() {
                    return Err(ProtoError::UnbalancedQuotes);
                }
                if text[i] == quote {
                    i += 1;
                    break;
                }
                if text[i] == b'\\' && quote == b'"' && i + 1 < text.len() {
                    i += 1;
                    arg.push(match text[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        other => other,
                    });
                } else {
                    arg.push(text[i]);
                }
                i += 1;
            }
        } else {
            while i < text.len() && !text[i].is_ascii_whitespace() {
                arg.push(text[i]);
                i += 1;
            }
        }
        if args.len() >= limits.max_args {
            return Err(ProtoError::InvalidMultibulkLength);
        }
        args.push(arg);
    }
    Ok(Some((args, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits {
            max_args: 8,
            max_bulk: 16,
            max_request: 64,
        }
    }

    #[test]
    fn parses_multibulk_and_inline() {
        let (args, used) = parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nrest", &lim())
            .unwrap()
            .unwrap();
        assert_eq!(args, vec![b"GET".to_vec(), b"k".to_vec()]);
        assert_eq!(used, 20);
        let (args, _) = parse(b"set a \"b c\" 'd'\r\n", &lim()).unwrap().unwrap();
        assert_eq!(
            args,
            vec![
                b"set".to_vec(),
                b"a".to_vec(),
                b"b c".to_vec(),
                b"d".to_vec()
            ]
        );
    }

    #[test]
    fn reused_buffers_hold_exactly_the_last_command() {
        let mut bufs = ArgBufs::default();
        let two = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*1\r\n$4\r\nPING\r\n";
        let used = parse_into(two, &lim(), &mut bufs).unwrap().unwrap();
        assert_eq!(
            bufs.args(),
            [b"SET".to_vec(), b"k".to_vec(), b"hello".to_vec()]
        );
        assert_eq!(parse_into(&two[used..], &lim(), &mut bufs), Ok(Some(14)));
        assert_eq!(bufs.args(), [b"PING".to_vec()]);
        // Incomplete and empty commands leave no arguments behind.
        assert_eq!(parse_into(&two[..used - 1], &lim(), &mut bufs), Ok(None));
        assert!(bufs.args().is_empty());
        assert_eq!(parse_into(b"*0\r\n", &lim(), &mut bufs), Ok(Some(4)));
        assert!(bufs.args().is_empty());
        assert_eq!(
            parse_into(b"get  'a b'\r\n", &lim(), &mut bufs),
            Ok(Some(12))
        );
        assert_eq!(bufs.args(), [b"get".to_vec(), b"a b".to_vec()]);
        // A large argument's buffer is not kept once its command is done.
        let big = Limits {
            max_args: 8,
            max_bulk: 1 << 20,
            max_request: 1 << 21,
        };
        let mut cmd = b"*1\r\n$10000\r\n".to_vec();
        cmd.extend(std::iter::repeat_n(b'x', 10_000));
        cmd.extend_from_slice(b"\r\n");
        parse_into(&cmd, &big, &mut bufs).unwrap().unwrap();
        assert_eq!(bufs.args()[0].len(), 10_000);
        bufs.shrink();
        assert!(bufs
            .bufs
            .iter()
            .all(|b| b.capacity() <= ArgBufs::KEEP_BYTES));
    }

    #[test]
    fn a_dripped_request_is_read_once_and_matches_the_whole() {
        let big = Limits {
            max_args: 8,
            max_bulk: 1 << 16,
            max_request: 1 << 17,
        };
        let mut req = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000\r\n".to_vec();
        let header = req.len();
        req.extend(std::iter::repeat_n(b'v', 5000));
        req.extend_from_slice(b"\r\n*1\r\n$4\r\nPING\r\n");
        let whole = parse(&req, &big).unwrap().unwrap();
        let mut bufs = ArgBufs::default();
        let mut got = None;
        for cut in 1..=req.len() {
            match parse_resume(&req[..cut], &big, &mut bufs).unwrap() {
                None => {
                    // Once the third argument's header is in, the first two
                    // are held and not read again.
                    if cut >= header {
                        assert_eq!(bufs.progress.done, 2, "cut at {cut}");
                    }
                    bufs.shrink();
                }
                Some(used) => {
                    got = Some((bufs.args().to_vec(), used));
                    break;
                }
            }
        }
        assert_eq!(got, Some(whole));
        // An inline line dripped in is searched once for its end.
        let mut bufs = ArgBufs::default();
        let line = b"PING hello\r\n";
        for cut in 1..line.len() {
            assert_eq!(parse_resume(&line[..cut], &big, &mut bufs), Ok(None));
            assert_eq!(bufs.scanned, cut);
        }
        assert_eq!(parse_resume(line, &big, &mut bufs), Ok(Some(line.len())));
        assert_eq!(bufs.args(), [b"PING".to_vec(), b"hello".to_vec()]);
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        let full = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut], &lim()), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn rejects_what_exceeds_the_caps() {
        assert_eq!(
            parse(b"*99999999999\r\n", &lim()),
            Err(ProtoError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse(b"*1\r\n$99999999999\r\n", &lim()),
            Err(ProtoError::InvalidBulkLength)
        );
        assert_eq!(
            parse(b"*1\r\n$-5\r\n", &lim()),
            Err(ProtoError::InvalidBulkLength)
        );
        assert_eq!(
            parse(b"*1\r\n+OK\r\n", &lim()),
            Err(ProtoError::ExpectedDollar(b'+'))
        );
        assert_eq!(
            parse(b"*1\r\n$1\r\nab\r\n", &lim()),
            Err(ProtoError::InvalidBulkEnding)
        );
        assert_eq!(parse(&[b'x'; 100], &lim()), Err(ProtoError::TooBig));
    }
}
