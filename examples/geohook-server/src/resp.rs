//! A bounded, incremental RESP request parser and the reply encoder.
//!
//! The parser never trusts a length it reads from the peer: every count and
//! length is checked against [`Limits`] before anything is allocated, and
//! vectors grow with the bytes that actually arrived, not with the lengths the
//! peer announced. Inline commands (a plain text line, as `redis-cli` in a pipe
//! or `telnet` sends them) are accepted the way Redis accepts them.

/// Caps applied to every request read from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Largest number of arguments in one command.
    ///
    /// Default: 4096.
    pub(crate) max_args: usize,
    /// Largest single bulk string, in bytes.
    ///
    /// Default: 8 MiB.
    pub(crate) max_bulk: usize,
    /// Largest whole request (one command with its framing), in bytes.
    ///
    /// Default: 16 MiB.
    pub(crate) max_request: usize,
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
pub(crate) enum ProtoError {
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

/// One parsed command: its arguments, and how many bytes of input it used.
pub(crate) type Parsed = (Vec<Vec<u8>>, usize);

/// Finds the CRLF-terminated line starting at `pos`; returns the line without
/// its terminator and the position after it.
fn line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let end = if nl > 0 && rest[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((&rest[..end], pos + nl + 1))
}

fn parse_len(digits: &[u8], max: usize) -> Option<i64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let s = std::str::from_utf8(digits).ok()?;
    let n: i64 = s.parse().ok()?;
    if n > max as i64 {
        return None;
    }
    Some(n)
}

/// Argument buffers that [`parse_into`] fills and a connection reuses from one
/// command to the next, so that a command costs no allocation per argument.
#[derive(Debug, Default)]
pub(crate) struct ArgBufs {
    bufs: Vec<Vec<u8>>,
    len: usize,
}

impl ArgBufs {
    /// Buffers larger than this are freed after their command instead of being
    /// kept for the next one, so an idle connection holds little.
    const KEEP_BYTES: usize = 4096;
    /// At most this many buffers are kept between commands.
    const KEEP_COUNT: usize = 64;

    /// The arguments of the last command [`parse_into`] completed.
    pub(crate) fn args(&self) -> &[Vec<u8>] {
        &self.bufs[..self.len]
    }

    /// Frees the buffers that a large command left behind.
    pub(crate) fn shrink(&mut self) {
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
pub(crate) fn parse(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, ProtoError> {
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
pub(crate) fn parse_into(
    buf: &[u8],
    limits: &Limits,
    out: &mut ArgBufs,
) -> Result<Option<usize>, ProtoError> {
    out.len = 0;
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != b'*' {
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
    let Some((head, mut pos)) = line(buf, 1) else {
        // The count line itself is tiny; a long run without a newline is garbage.
        return if buf.len() > 32 {
            Err(ProtoError::InvalidMultibulkLength)
        } else {
            Ok(None)
        };
    };
    let n = parse_len(head, limits.max_args).ok_or(ProtoError::InvalidMultibulkLength)?;
    if n <= 0 {
        return Ok(Some(pos));
    }
    let n = n as usize;
    // Grow with what arrives; the announced count only bounds the loop.
    for i in 0..n {
        if pos >= buf.len() {
            return check_size(buf, limits);
        }
        if buf[pos] != b'$' {
            return Err(ProtoError::ExpectedDollar(buf[pos]));
        }
        let Some((digits, after)) = line(buf, pos + 1) else {
            if buf.len() - pos > 32 {
                return Err(ProtoError::InvalidBulkLength);
            }
            return check_size(buf, limits);
        };
        let len = parse_len(digits, limits.max_bulk).ok_or(ProtoError::InvalidBulkLength)?;
        if len < 0 {
            return Err(ProtoError::InvalidBulkLength);
        }
        let len = len as usize;
        if after + len > limits.max_request {
            return Err(ProtoError::TooBig);
        }
        if buf.len() < after + len + 2 {
            return Ok(None);
        }
        if &buf[after + len..after + len + 2] != b"\r\n" {
            return Err(ProtoError::InvalidBulkEnding);
        }
        out.set(i, &buf[after..after + len]);
        pos = after + len + 2;
    }
    out.len = n;
    Ok(Some(pos))
}

fn check_size<T>(buf: &[u8], limits: &Limits) -> Result<Option<T>, ProtoError> {
    if buf.len() > limits.max_request {
        Err(ProtoError::TooBig)
    } else {
        Ok(None)
    }
}

fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, ProtoError> {
    let Some((text, used)) = line(buf, 0) else {
        return check_size(buf, limits);
    };
    if used > limits.max_request {
        return Err(ProtoError::TooBig);
    }
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

/// Encodes a command as a RESP multibulk array, the form used on the wire and
/// in the append-only file. It is the replication crate's encoder, so the
/// bytes appended to the file and to a leader's backlog come from one place.
pub(crate) use geohook_repl::encode_command;

/// A reply in RESP terms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// `+text`.
    Simple(String),
    /// `-ERR text`, or the text as is when it starts with an upper-case word.
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$len` followed by the bytes.
    Bulk(Vec<u8>),
    /// `$-1`.
    Null,
    /// `*n` followed by the items.
    Array(Vec<Reply>),
    /// A reply already in RESP form, written as is: a search writes its hits
    /// straight into one buffer instead of building a tree of replies.
    Encoded(Vec<u8>),
}

impl Reply {
    /// A bulk reply from text.
    pub(crate) fn bulk(s: impl Into<String>) -> Reply {
        Reply::Bulk(s.into().into_bytes())
    }

    /// The `+OK` reply.
    pub(crate) fn ok() -> Reply {
        Reply::Simple("OK".into())
    }

    /// Appends the RESP encoding of this reply to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(s) => {
                out.push(b'+');
                out.extend_from_slice(s.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Reply::Error(s) => {
                out.push(b'-');
                if !starts_with_code(s) {
                    out.extend_from_slice(b"ERR ");
                }
                // A newline inside an error would break the framing.
                out.extend(
                    s.bytes()
                        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
                out.extend_from_slice(b"\r\n");
            }
            Reply::Int(n) => {
                out.push(b':');
                out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Reply::Bulk(b) => encode_bulk(b, out),
            Reply::Null => out.extend_from_slice(b"$-1\r\n"),
            Reply::Encoded(b) => out.extend_from_slice(b),
            Reply::Array(items) => {
                encode_array_header(items.len(), out);
                for i in items {
                    i.encode(out);
                }
            }
        }
    }
}

/// Appends a RESP array header `*n`.
pub(crate) fn encode_array_header(n: usize, out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a RESP bulk string.
pub(crate) fn encode_bulk(b: &[u8], out: &mut Vec<u8>) {
    out.push(b'$');
    out.extend_from_slice(itoa::Buffer::new().format(b.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// True when the message starts with an all upper-case word such as `OOM`,
/// `LOADING` or `NOAUTH`; Redis clients read that word as the error code.
fn starts_with_code(s: &str) -> bool {
    let word = s.split(' ').next().unwrap_or("");
    word.len() >= 2 && word.bytes().all(|b| b.is_ascii_uppercase())
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

    #[test]
    fn errors_get_an_err_prefix_unless_coded() {
        let mut out = Vec::new();
        Reply::Error("key not found".into()).encode(&mut out);
        Reply::Error("OOM command not allowed".into()).encode(&mut out);
        assert_eq!(out, b"-ERR key not found\r\n-OOM command not allowed\r\n");
    }
}
