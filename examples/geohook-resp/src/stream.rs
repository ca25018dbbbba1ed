//! Replication frames: the leader-to-follower stream and the files that hold
//! it.
//!
//! The stream is a sequence of RESP arrays of bulk strings (write commands)
//! with a few status lines (`+OFFSET n`, `+SNAPSHOTEND`) and error lines
//! between them. It is read canonically: one encoding per command, so that
//! the bytes a node accepts are exactly the bytes [`encode_command`] writes,
//! and a fault is reported at the first byte that cannot belong to a frame,
//! without waiting for a line end.
//!
//! [`encode_command`]: crate::encode_command

use std::fmt;

use crate::read::{self, Fault, Grammar, LenFault, LineFault, Syntax};
use crate::request::Parsed;

/// Caps applied to every frame read from a peer or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest number of arguments in one command.
    ///
    /// Default: 65 536.
    pub max_args: usize,
    /// Largest single bulk string, in bytes.
    ///
    /// Default: 64 MiB.
    pub max_bulk: usize,
    /// Longest status or error line, in bytes (without CRLF).
    ///
    /// Default: 4096.
    pub max_line: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_args: 65_536,
            max_bulk: 64 << 20,
            max_line: 4096,
        }
    }
}

impl FrameLimits {
    /// No cap at all, for bytes a node wrote itself (a leader's own backlog).
    pub const UNBOUNDED: FrameLimits = FrameLimits {
        max_args: usize::MAX,
        max_bulk: usize::MAX,
        max_line: usize::MAX,
    };

    fn grammar(&self) -> Grammar {
        Grammar {
            syntax: Syntax::Canonical,
            max_args: self.max_args,
            max_bulk: self.max_bulk,
            // A command's size is bounded by its count and bulk caps alone.
            max_bytes: usize::MAX,
        }
    }
}

/// Why bytes could not be framed, with the position (relative to the start of
/// the buffer that was read) where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Byte position of the fault, relative to the start of the buffer.
    pub at: usize,
    /// What is wrong there, e.g. `length exceeds the configured limit`.
    pub reason: &'static str,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.reason, self.at)
    }
}

impl std::error::Error for Malformed {}

fn len_reason(why: LenFault) -> &'static str {
    match why {
        LenFault::NotANumber => "expected a decimal length",
        LenFault::LeadingZero => "length with a leading zero",
        LenFault::TooLarge => "length exceeds the configured limit",
        LenFault::Negative => "negative length",
        LenFault::CrWithoutLf => "carriage return not followed by line feed",
    }
}

impl From<Fault> for Malformed {
    fn from(fault: Fault) -> Self {
        let (at, reason) = match fault {
            Fault::Count { at, why } | Fault::BulkLen { at, why } => (at, len_reason(why)),
            Fault::ExpectedDollar { at, .. } => (at, "expected '$' (a bulk string)"),
            Fault::BulkEnding { at } => (at, "bulk string not followed by CRLF"),
            Fault::TooBig => (0, "command exceeds the configured limit"),
        };
        Malformed { at, reason }
    }
}

fn line_fault((at, why): (usize, LineFault)) -> Malformed {
    let reason = match why {
        LineFault::CrWithoutLf => "carriage return not followed by line feed",
        LineFault::LfWithoutCr => "line feed without carriage return",
        LineFault::TooLong => "line too long",
    };
    Malformed { at, reason }
}

/// Finds the end of the command that starts at `buf[0]`.
///
/// Returns `Ok(Some(len))` for a complete command of `len` bytes, `Ok(None)`
/// when `buf` is a proper prefix of a command that could still be valid, and
/// an error as soon as the bytes cannot be the start of a valid command.
/// Nothing is allocated.
///
/// # Errors
///
/// [`Malformed`] at the first byte that cannot belong to a command under
/// `limits` (an empty command `*0` included).
pub fn scan_command(buf: &[u8], limits: &FrameLimits) -> Result<Option<usize>, Malformed> {
    read_command(buf, limits, |_, _| {})
}

fn read_command(
    buf: &[u8],
    limits: &FrameLimits,
    arg: impl FnMut(usize, &[u8]),
) -> Result<Option<usize>, Malformed> {
    match buf.first() {
        None => return Ok(None),
        Some(b'*') => {}
        Some(_) => {
            return Err(Malformed {
                at: 0,
                reason: "expected '*' (a RESP array)",
            })
        }
    }
    match read::read_array(buf, &limits.grammar(), arg)? {
        None => Ok(None),
        Some((0, _)) => Err(Malformed {
            at: 1,
            reason: "empty command",
        }),
        Some((_, len)) => Ok(Some(len)),
    }
}

/// Parses one command at the start of `buf`: its arguments and its length in
/// bytes, or `None` if `buf` holds only part of a command.
///
/// The command is found with [`scan_command`] first, so nothing is allocated
/// for a command whose bytes have not all arrived.
///
/// # Errors
///
/// As [`scan_command`].
pub fn parse_command(buf: &[u8], limits: &FrameLimits) -> Result<Option<Parsed>, Malformed> {
    let Some(len) = scan_command(buf, limits)? else {
        return Ok(None);
    };
    let mut args = Vec::new();
    read_command(&buf[..len], limits, |_, a| args.push(a.to_vec()))?;
    Ok(Some((args, len)))
}

/// One item of the leader-to-follower stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A command: its arguments and its encoded length in bytes.
    Command(Vec<Vec<u8>>, usize),
    /// A `+` status line (without `+` and CRLF) and its length in bytes.
    Status(String, usize),
    /// A `-` error line (without `-` and CRLF) and its length in bytes.
    Error(String, usize),
}

impl Frame {
    /// The frame's length in bytes, framing included.
    pub fn wire_len(&self) -> usize {
        match self {
            Frame::Command(_, n) | Frame::Status(_, n) | Frame::Error(_, n) => *n,
        }
    }
}

/// Parses one frame at the start of `buf`, or returns `None` if `buf` holds
/// only part of one.
///
/// # Errors
///
/// [`Malformed`] at the first byte that cannot belong to a frame under
/// `limits`.
pub fn parse_frame(buf: &[u8], limits: &FrameLimits) -> Result<Option<Frame>, Malformed> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => Ok(parse_command(buf, limits)?.map(|(a, n)| Frame::Command(a, n))),
        Some(&t @ (b'+' | b'-')) => {
            let Some((end, next)) =
                read::read_line(buf, 1, limits.max_line, Syntax::Canonical).map_err(line_fault)?
            else {
                return Ok(None);
            };
            let text = String::from_utf8_lossy(&buf[1..end]).into_owned();
            Ok(Some(if t == b'+' {
                Frame::Status(text, next)
            } else {
                Frame::Error(text, next)
            }))
        }
        Some(_) => Err(Malformed {
            at: 0,
            reason: "expected '*', '+' or '-'",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_command, encoded_len};

    #[test]
    fn encoded_len_matches_encoding() {
        let args: Vec<Vec<u8>> = vec![b"SET".to_vec(), vec![b'x'; 1234], Vec::new()];
        let mut out = Vec::new();
        encode_command(&mut out, &args);
        assert_eq!(out.len(), encoded_len(&args));
        assert_eq!(
            parse_command(&out, &FrameLimits::default()).unwrap(),
            Some((args, out.len()))
        );
    }

    #[test]
    fn garbage_is_rejected_before_its_line_ends() {
        let l = FrameLimits::default();
        assert!(scan_command(b"*1x", &l).is_err());
        assert!(scan_command(b"*99999999999999999999999", &l).is_err());
        assert!(scan_command(b"*1\r\n$5\r\nhelloXX", &l).is_err());
        assert_eq!(scan_command(b"*1\r\n$5\r\nhel", &l), Ok(None));
        assert!(scan_command(b"*1\r\n$05\r\nhello\r\n", &l).is_err());
        assert_eq!(scan_command(b"*1\r\n$0\r\n\r\n", &l), Ok(Some(10)));
    }

    /// `(input, Ok(frame) or Err((at, reason)))`, one row per rule.
    #[test]
    fn frames_and_faults() {
        let l = FrameLimits {
            max_args: 4,
            max_bulk: 8,
            max_line: 64,
        };
        let cmd = |args: &[&str], n| {
            Ok(Some(Frame::Command(
                args.iter().map(|a| a.as_bytes().to_vec()).collect(),
                n,
            )))
        };
        let bad = |at, reason| Err(Malformed { at, reason });
        let check = |input: &[u8], want: Result<Option<Frame>, Malformed>| {
            assert_eq!(
                parse_frame(input, &l),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        };
        check(b"", Ok(None));
        check(b"*1\r\n$4\r\nPING\r\n*", cmd(&["PING"], 14));
        check(
            b"+OFFSET 12\r\n",
            Ok(Some(Frame::Status("OFFSET 12".into(), 12))),
        );
        check(b"-ERR no\r\n", Ok(Some(Frame::Error("ERR no".into(), 9))));
        check(b"+OFFSET", Ok(None));
        check(b"+OK\r", Ok(None));
        check(
            b"+OK\rx",
            bad(3, "carriage return not followed by line feed"),
        );
        check(b"+OK\n", bad(3, "line feed without carriage return"));
        check(&[b'+'; 70], bad(1, "line too long"));
        check(b":1\r\n", bad(0, "expected '*', '+' or '-'"));
        check(b"*0\r\n", bad(1, "empty command"));
        check(b"*5\r\n", bad(1, "length exceeds the configured limit"));
        check(
            b"*1\r\n$9\r\n",
            bad(5, "length exceeds the configured limit"),
        );
        check(b"*-1\r\n", bad(1, "expected a decimal length"));
        check(b"*\r\n", bad(1, "expected a decimal length"));
        check(b"*1\n", bad(2, "expected a decimal length"));
        check(
            b"*1\rx",
            bad(2, "carriage return not followed by line feed"),
        );
        check(b"*01\r\n", bad(1, "length with a leading zero"));
        check(b"*1\r\n+OK\r\n", bad(4, "expected '$' (a bulk string)"));
        check(
            b"*1\r\n$1\r\nab",
            bad(9, "bulk string not followed by CRLF"),
        );
        check(
            b"*1\r\n$1\r\na\rx",
            bad(10, "bulk string not followed by CRLF"),
        );
    }

    #[test]
    fn malformed_reads_as_reason_and_position() {
        let m = scan_command(b"*1\r\n$05", &FrameLimits::default()).unwrap_err();
        assert_eq!(m.to_string(), "length with a leading zero (at byte 5)");
    }

    #[test]
    fn a_leaders_own_bytes_are_read_without_caps() {
        let mut big = Vec::new();
        encode_command(&mut big, &[vec![b'x'; 100_000]]);
        assert!(scan_command(&big, &FrameLimits::default()).is_ok());
        let tight = FrameLimits {
            max_bulk: 10,
            ..FrameLimits::default()
        };
        assert!(scan_command(&big, &tight).is_err());
        assert_eq!(
            scan_command(&big, &FrameLimits::UNBOUNDED),
            Ok(Some(big.len()))
        );
    }
}
