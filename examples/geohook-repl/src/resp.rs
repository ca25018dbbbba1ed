//! Bounded RESP framing for the replication stream.
//!
//! The stream is a sequence of RESP arrays of bulk strings (write commands)
//! with a few status lines (`+OFFSET n`, `+SNAPSHOTEND`) and error lines
//! between them. Every count and length read from a peer or a file is checked
//! against [`Limits`] before it is used, and nothing is allocated for a length
//! until the bytes it announces have arrived.

use std::fmt;

/// Caps applied to every frame read from a peer or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
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

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_args: 65_536,
            max_bulk: 64 << 20,
            max_line: 4096,
        }
    }
}

impl Limits {
    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        let bad = |field, reason: &str| {
            Err(crate::Error::Config {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.max_args == 0 {
            return bad("limits.max_args", "must be at least 1");
        }
        if self.max_bulk == 0 {
            return bad("limits.max_bulk", "must be at least 1");
        }
        if self.max_line < 64 {
            return bad("limits.max_line", "must be at least 64");
        }
        Ok(())
    }
}

/// Why bytes could not be framed, with the position (relative to the start of
/// the buffer that was scanned) where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed {
    pub(crate) at: usize,
    pub(crate) reason: &'static str,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.reason, self.at)
    }
}

/// Appends one command as a RESP array of bulk strings.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    let total: usize = args.iter().map(|a| a.as_ref().len() + 16).sum();
    out.reserve(total + 16);
    push_len(out, b'*', args.len());
    for arg in args {
        let arg = arg.as_ref();
        push_len(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// The number of bytes [`encode_command`] produces for `args`.
pub fn encoded_len<A: AsRef<[u8]>>(args: &[A]) -> usize {
    let mut n = 1 + digits(args.len()) + 2;
    for arg in args {
        let len = arg.as_ref().len();
        n += 1 + digits(len) + 2 + len + 2;
    }
    n
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

fn push_len(out: &mut Vec<u8>, prefix: u8, n: usize) {
    out.push(prefix);
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Reads a CRLF-terminated line starting at `pos` (just after the type byte).
/// Returns the line's end (position of `\r`), `None` when the line is not
/// complete yet.
fn line_end(buf: &[u8], pos: usize, max: usize) -> Result<Option<usize>, Malformed> {
    let avail = &buf[pos.min(buf.len())..];
    let window = &avail[..avail.len().min(max.saturating_add(2))];
    for (i, &b) in window.iter().enumerate() {
        if b == b'\r' {
            return match window.get(i + 1) {
                Some(b'\n') => Ok(Some(pos + i)),
                Some(_) => Err(Malformed {
                    at: pos + i,
                    reason: "carriage return not followed by line feed",
                }),
                None => Ok(None),
            };
        }
        if b == b'\n' {
            return Err(Malformed {
                at: pos + i,
                reason: "line feed without carriage return",
            });
        }
    }
    if window.len() > max {
        return Err(Malformed {
            at: pos,
            reason: "line too long",
        });
    }
    Ok(None)
}

/// Parses the decimal length after a `*` or `$` at `pos`. Returns the value and
/// the position after the CRLF, or `None` if incomplete. Digits are checked as
/// they arrive so that garbage is reported without waiting for a line end.
fn read_len(buf: &[u8], pos: usize, cap: usize) -> Result<Option<(usize, usize)>, Malformed> {
    let mut value: usize = 0;
    let mut i = pos;
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        match b {
            b'0'..=b'9' if i > pos && buf[pos] == b'0' => {
                // One encoding per length, so that accepted bytes are exactly
                // the encoding of what they decode to.
                return Err(Malformed {
                    at: pos,
                    reason: "length with a leading zero",
                });
            }
            b'0'..=b'9' => {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(usize::from(b - b'0')))
                    .filter(|&v| v <= cap)
                    .ok_or(Malformed {
                        at: pos,
                        reason: "length exceeds the configured limit",
                    })?;
                i += 1;
            }
            b'\r' if i > pos => {
                return match buf.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((value, i + 2))),
                    Some(_) => Err(Malformed {
                        at: i,
                        reason: "carriage return not followed by line feed",
                    }),
                };
            }
            _ => {
                return Err(Malformed {
                    at: i,
                    reason: "expected a decimal length",
                })
            }
        }
    }
}

/// Finds the end of the command that starts at `buf[0]`.
///
/// Returns `Ok(Some(len))` for a complete command of `len` bytes, `Ok(None)`
/// when `buf` is a proper prefix of a command that could still be valid, and
/// an error as soon as the bytes cannot be the start of a valid command.
/// Nothing is allocated.
pub(crate) fn scan_command(buf: &[u8], limits: &Limits) -> Result<Option<usize>, Malformed> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first != b'*' {
        return Err(Malformed {
            at: 0,
            reason: "expected '*' (a RESP array)",
        });
    }
    let Some((argc, mut pos)) = read_len(buf, 1, limits.max_args)? else {
        return Ok(None);
    };
    if argc == 0 {
        return Err(Malformed {
            at: 1,
            reason: "empty command",
        });
    }
    for _ in 0..argc {
        let Some(&b) = buf.get(pos) else {
            return Ok(None);
        };
        if b != b'$' {
            return Err(Malformed {
                at: pos,
                reason: "expected '$' (a bulk string)",
            });
        }
        let Some((len, start)) = read_len(buf, pos + 1, limits.max_bulk)? else {
            return Ok(None);
        };
        let end = start.checked_add(len).ok_or(Malformed {
            at: pos,
            reason: "length exceeds the configured limit",
        })?;
        for (i, want) in [b'\r', b'\n'].into_iter().enumerate() {
            match buf.get(end + i) {
                None => return Ok(None),
                Some(&got) if got != want => {
                    return Err(Malformed {
                        at: end + i,
                        reason: "bulk string not followed by CRLF",
                    })
                }
                Some(_) => {}
            }
        }
        pos = end + 2;
    }
    Ok(Some(pos))
}

/// Splits a complete command (as found by [`scan_command`]) into its arguments.
pub(crate) fn split_command(buf: &[u8]) -> Vec<Vec<u8>> {
    // The bytes were validated by scan_command, so the parse below cannot fail;
    // it still never indexes past the end, to stay panic-free on misuse.
    let mut args = Vec::new();
    let mut pos = match buf.iter().position(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => return args,
    };
    while pos < buf.len() {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            break;
        };
        let len: usize = std::str::from_utf8(&buf[pos + 1..pos + nl - 1])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let start = pos + nl + 1;
        let end = (start + len).min(buf.len());
        args.push(buf[start..end].to_vec());
        pos = end + 2;
    }
    args
}

/// Parses one command at the start of `buf`: its arguments and its length.
///
/// # Errors
///
/// A description of the first malformed byte.
pub(crate) fn parse_command(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(crate::Command, usize)>, Malformed> {
    Ok(scan_command(buf, limits)?.map(|len| (split_command(&buf[..len]), len)))
}

/// One item of the leader-to-follower stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A command: its arguments and its encoded length in bytes.
    Command(Vec<Vec<u8>>, usize),
    /// A `+` status line (without `+` and CRLF) and its length in bytes.
    Status(String, usize),
    /// A `-` error line (without `-` and CRLF) and its length in bytes.
    Error(String, usize),
}

/// Parses one frame at the start of `buf`.
pub(crate) fn parse_frame(buf: &[u8], limits: &Limits) -> Result<Option<Frame>, Malformed> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => Ok(parse_command(buf, limits)?.map(|(a, n)| Frame::Command(a, n))),
        Some(&t @ (b'+' | b'-')) => {
            let Some(end) = line_end(buf, 1, limits.max_line)? else {
                return Ok(None);
            };
            let text = String::from_utf8_lossy(&buf[1..end]).into_owned();
            Ok(Some(if t == b'+' {
                Frame::Status(text, end + 2)
            } else {
                Frame::Error(text, end + 2)
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

    #[test]
    fn encoded_len_matches_encoding() {
        let args: Vec<Vec<u8>> = vec![b"SET".to_vec(), vec![b'x'; 1234], Vec::new()];
        let mut out = Vec::new();
        encode_command(&mut out, &args);
        assert_eq!(out.len(), encoded_len(&args));
        assert_eq!(
            parse_command(&out, &Limits::default()).unwrap(),
            Some((args, out.len()))
        );
    }

    #[test]
    fn garbage_is_rejected_before_its_line_ends() {
        let l = Limits::default();
        assert!(scan_command(b"*1x", &l).is_err());
        assert!(scan_command(b"*99999999999999999999999", &l).is_err());
        assert!(scan_command(b"*1\r\n$5\r\nhelloXX", &l).is_err());
        assert_eq!(scan_command(b"*1\r\n$5\r\nhel", &l), Ok(None));
        assert!(scan_command(b"*1\r\n$05\r\nhello\r\n", &l).is_err());
        assert_eq!(scan_command(b"*1\r\n$0\r\n\r\n", &l), Ok(Some(10)));
    }
}
