//! The request parser as the server had it before this crate, kept verbatim
//! as the oracle: the shared readers report some faults earlier (at the first
//! byte that cannot belong to a request instead of at the line end), and must
//! otherwise accept and refuse exactly what it did.

use geohook_resp::{Limits, ProtoError};
use proptest::prelude::*;

mod oracle {
    #![allow(dead_code, unreachable_pub)]
    use super::{Limits, ProtoError};

    /// One parsed command: its arguments, and how many bytes of input it used.
    pub type Parsed = (Vec<Vec<u8>>, usize);

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
    pub struct ArgBufs {
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
        pub fn args(&self) -> &[Vec<u8>] {
            &self.bufs[..self.len]
        }

        /// Frees the buffers that a large command left behind.
        pub fn shrink(&mut self) {
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
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn accepts_and_refuses_what_the_old_parser_did(
        bytes in prop::collection::vec(
            prop_oneof![
                Just(b'*'), Just(b'$'), Just(b'+'), Just(b'-'), Just(b'\r'), Just(b'\n'),
                Just(b'0'), Just(b'1'), Just(b'2'), Just(b'9'), Just(b' '), Just(b'"'), Just(b'a'),
                any::<u8>(),
            ],
            0..48,
        ),
        max_args in 0usize..4,
        max_bulk in 0usize..10,
        max_request in 8usize..40,
    ) {
        let limits = Limits { max_args, max_bulk, max_request };
        let old = oracle::parse(&bytes, &limits);
        let new = geohook_resp::parse(&bytes, &limits);
        match (&old, &new) {
            (Ok(Some(_)), _) | (_, Ok(Some(_))) => prop_assert_eq!(&new, &old),
            // Incomplete now means incomplete then.
            (_, Ok(None)) => prop_assert_eq!(&old, &Ok(None)),
            // A refusal may come earlier, never later.
            (Err(_), Err(_)) | (Ok(None), Err(_)) => {}
        }
    }
}

/// Rows where the old parser waited for a line end and the shared readers
/// refuse at once, and rows where both accept lenient forms.
#[test]
fn lenient_forms_and_early_refusals() {
    let l = Limits::default();
    let check = |input: &[u8], want: Result<Option<usize>, ProtoError>| {
        let got = geohook_resp::parse(input, &l).map(|p| p.map(|(_, used)| used));
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
    };
    check(b"*1x", Err(ProtoError::InvalidMultibulkLength));
    check(b"*1\r\n$1x", Err(ProtoError::InvalidBulkLength));
    check(b"*1\r\n$1\r\naX", Err(ProtoError::InvalidBulkEnding));
    check(b"*-1\r\n", Ok(Some(5)));
    check(b"*+1\n$003\nGET\r\n", Ok(Some(14)));
    check(b"*1\r\n$-0\r\n\r\n", Ok(Some(11)));
    check(b"*1\r\n$-1\r\n", Err(ProtoError::InvalidBulkLength));
    check(
        b"*00000000000000000001\r\n",
        Err(ProtoError::InvalidMultibulkLength),
    );
    check(b"*0000000000000000001\r\n", Ok(None));
}
