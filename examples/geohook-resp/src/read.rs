//! The one set of line and length readers, and the one reader of an array of
//! bulk strings, that both the request parser and the replication frame
//! decoder are built on.
//!
//! Every reader looks only at bytes that have arrived, checks each length
//! against its cap as the digits come in, and allocates nothing: a complete
//! argument is handed to the caller as a slice of the input.

/// How strictly framing bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// What clients send to a server, read as Redis clients are served: a line
    /// may end with a bare LF, a length may carry a sign and leading zeros (at
    /// most 19 characters, as an `i64`), and a count of zero or less is an
    /// empty command.
    Lenient,
    /// The replication stream and the files that hold it: exactly one encoding
    /// per value (CRLF, decimal digits, no leading zero), so that the accepted
    /// bytes are exactly the encoding of what they decode to, and a fault is
    /// reported at the first byte that cannot belong to a valid frame.
    Canonical,
}

/// What is wrong with a length line (`*n` or `$n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LenFault {
    /// A byte that cannot be part of a decimal length.
    NotANumber,
    /// A digit after a leading zero ([`Syntax::Canonical`] only).
    LeadingZero,
    /// The value is beyond the cap.
    TooLarge,
    /// A negative bulk length ([`Syntax::Lenient`] only; a negative count is an
    /// empty command).
    Negative,
    /// A carriage return followed by another byte than a line feed.
    CrWithoutLf,
}

/// What is wrong with a text line (`+status`, `-error`, an inline command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineFault {
    /// A carriage return followed by another byte than a line feed.
    CrWithoutLf,
    /// A line feed without a carriage return before it.
    LfWithoutCr,
    /// No line end within the cap.
    TooLong,
}

/// Why bytes cannot be framed, with the position (relative to the start of
/// the buffer) where it was found. Each decoder turns it into its own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The count line of an array.
    Count { at: usize, why: LenFault },
    /// The length line of a bulk string.
    BulkLen { at: usize, why: LenFault },
    /// Another byte than `$` where a bulk string starts.
    ExpectedDollar { at: usize, got: u8 },
    /// A bulk string not followed by CRLF.
    BulkEnding { at: usize },
    /// The array grew past its byte cap before it was complete.
    TooBig,
}

/// A length as read: a negative value is kept apart so that its magnitude
/// never needs a type wider than the caps. `-0` is zero, as `i64` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Len {
    Negative,
    Value(usize),
}

/// Reads the decimal length that starts at `pos` (just after `*` or `$`).
/// Returns the length and the position after its line end, or `None` while
/// the line is not complete. Digits are checked as they arrive, so garbage is
/// reported without waiting for a line end that may never come.
pub(crate) fn read_len(
    buf: &[u8],
    pos: usize,
    cap: usize,
    syntax: Syntax,
) -> Result<Option<(Len, usize)>, (usize, LenFault)> {
    // Most lengths in a request are one digit (`*3`, `$5`): read at once,
    // as the digit loop would, in both syntaxes.
    if let Some(&[d @ b'0'..=b'9', b'\r', b'\n']) = buf.get(pos..pos + 3) {
        let value = usize::from(d - b'0');
        if value <= cap {
            return Ok(Some((Len::Value(value), pos + 3)));
        }
    }
    read_len_digits(buf, pos, cap, syntax)
}

/// [`read_len`] digit by digit, for any length.
fn read_len_digits(
    buf: &[u8],
    pos: usize,
    cap: usize,
    syntax: Syntax,
) -> Result<Option<(Len, usize)>, (usize, LenFault)> {
    // The longest i64 as text, the bound of the lenient reading.
    const LENIENT_CHARS: usize = 19;
    let lenient = syntax == Syntax::Lenient;
    let mut negative = false;
    let mut digits = 0usize;
    let mut value: u64 = 0;
    let mut i = pos;
    let finish = |negative: bool, value: u64| {
        if negative && value > 0 {
            Len::Negative
        } else {
            // Checked against the cap, which is a usize, as the digits came.
            Len::Value(value as usize)
        }
    };
    loop {
        if lenient
            && i - pos >= LENIENT_CHARS
            && buf.get(i).is_some_and(|&b| b != b'\r' && b != b'\n')
        {
            return Err((pos, LenFault::NotANumber));
        }
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        match b {
            b'+' | b'-' if lenient && i == pos => negative = b == b'-',
            b'0'..=b'9' => {
                if !lenient && digits == 1 && buf[pos] == b'0' {
                    return Err((pos, LenFault::LeadingZero));
                }
                let next = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')));
                value = match next {
                    Some(v) if negative && v <= i64::MAX as u64 => v,
                    Some(v) if !negative && usize::try_from(v).is_ok_and(|v| v <= cap) => v,
                    _ if lenient && negative => return Err((pos, LenFault::NotANumber)),
                    _ => return Err((pos, LenFault::TooLarge)),
                };
                digits += 1;
            }
            b'\r' if digits > 0 => {
                return match buf.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((finish(negative, value), i + 2))),
                    Some(_) => Err((i, LenFault::CrWithoutLf)),
                };
            }
            b'\n' if lenient && digits > 0 => return Ok(Some((finish(negative, value), i + 1))),
            _ => return Err((i, LenFault::NotANumber)),
        }
        i += 1;
    }
}

/// Finds the end of the text line that starts at `pos`, looking at no more
/// than `max` bytes of text. Returns where the text ends and where the next
/// line starts, or `None` while the line is not complete.
///
/// [`Syntax::Lenient`] ends a line at LF and drops one CR before it, so a CR
/// elsewhere is text; [`Syntax::Canonical`] wants CRLF and refuses a lone CR
/// or LF.
pub(crate) fn read_line(
    buf: &[u8],
    pos: usize,
    max: usize,
    syntax: Syntax,
) -> Result<Option<(usize, usize)>, (usize, LineFault)> {
    let avail = buf.get(pos..).unwrap_or_default();
    match syntax {
        Syntax::Lenient => {
            let window = &avail[..avail.len().min(max)];
            match window.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    let end = if nl > 0 && window[nl - 1] == b'\r' {
                        nl - 1
                    } else {
                        nl
                    };
                    Ok(Some((pos + end, pos + nl + 1)))
                }
                None if avail.len() > max => Err((pos, LineFault::TooLong)),
                None => Ok(None),
            }
        }
        Syntax::Canonical => {
            let window = &avail[..avail.len().min(max.saturating_add(2))];
            for (i, &b) in window.iter().enumerate() {
                if b == b'\r' {
                    return match window.get(i + 1) {
                        Some(b'\n') => Ok(Some((pos + i, pos + i + 2))),
                        Some(_) => Err((pos + i, LineFault::CrWithoutLf)),
                        None => Ok(None),
                    };
                }
                if b == b'\n' {
                    return Err((pos + i, LineFault::LfWithoutCr));
                }
            }
            if window.len() > max {
                return Err((pos, LineFault::TooLong));
            }
            Ok(None)
        }
    }
}

/// The caps and the syntax of one array reading.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grammar {
    pub(crate) syntax: Syntax,
    pub(crate) max_args: usize,
    pub(crate) max_bulk: usize,
    /// Largest array in bytes, framing included; a buffer larger than this
    /// that still holds no complete array is [`Fault::TooBig`].
    pub(crate) max_bytes: usize,
}

/// Reads the array of bulk strings whose count line starts at `buf[1]` (the
/// caller has checked `buf[0] == b'*'`). Hands each complete argument to
/// `arg` with its index, and returns the number of arguments and the array's
/// length in bytes, or `None` while the array is not complete.
///
/// A count of zero or less gives `Some((0, len))`; whether that is an empty
/// command or an error is the caller's decision. The announced count only
/// bounds the loop: nothing is reserved for it.
pub(crate) fn read_array(
    buf: &[u8],
    g: &Grammar,
    arg: impl FnMut(usize, &[u8]),
) -> Result<Option<(usize, usize)>, Fault> {
    read_array_from(buf, g, &mut Progress::default(), arg)
}

/// Where an incomplete array's reading stopped: its count, how many
/// arguments were complete and where the next one starts. Handing it back
/// with the same bytes, extended, resumes there, so that a request that
/// arrives a few bytes at a time is read once, not once per arrival.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    count: Option<usize>,
    pub(crate) done: usize,
    pos: usize,
}

/// [`read_array`] resumed from `at`, which it updates: on `Ok(None)` it holds
/// the arguments already handed to `arg` (they are not handed again); on any
/// other outcome it is reset.
pub(crate) fn read_array_from(
    buf: &[u8],
    g: &Grammar,
    at: &mut Progress,
    mut arg: impl FnMut(usize, &[u8]),
) -> Result<Option<(usize, usize)>, Fault> {
    let r = read_array_steps(buf, g, at, &mut arg);
    if !matches!(r, Ok(None)) {
        *at = Progress::default();
    }
    r
}

fn read_array_steps(
    buf: &[u8],
    g: &Grammar,
    at: &mut Progress,
    arg: &mut impl FnMut(usize, &[u8]),
) -> Result<Option<(usize, usize)>, Fault> {
    let incomplete = || {
        if buf.len() > g.max_bytes {
            Err(Fault::TooBig)
        } else {
            Ok(None)
        }
    };
    let n = match at.count {
        Some(n) => n,
        None => {
            let (count, pos) = match read_len(buf, 1, g.max_args, g.syntax) {
                Ok(Some(found)) => found,
                Ok(None) => return Ok(None),
                Err((at, why)) => return Err(Fault::Count { at, why }),
            };
            match count {
                Len::Negative | Len::Value(0) => return Ok(Some((0, pos))),
                Len::Value(n) => {
                    *at = Progress {
                        count: Some(n),
                        done: 0,
                        pos,
                    };
                    n
                }
            }
        }
    };
    let mut pos = at.pos;
    for i in at.done..n {
        let Some(&b) = buf.get(pos) else {
            return incomplete();
        };
        if b != b'$' {
            return Err(Fault::ExpectedDollar { at: pos, got: b });
        }
        let (len, start) = match read_len(buf, pos + 1, g.max_bulk, g.syntax) {
            Ok(Some((Len::Value(len), start))) => (len, start),
            Ok(Some((Len::Negative, _))) => {
                return Err(Fault::BulkLen {
                    at: pos + 1,
                    why: LenFault::Negative,
                })
            }
            Ok(None) => return incomplete(),
            Err((at, why)) => return Err(Fault::BulkLen { at, why }),
        };
        let end = match start.checked_add(len) {
            Some(end) if end <= g.max_bytes => end,
            Some(_) => return Err(Fault::TooBig),
            None => {
                return Err(Fault::BulkLen {
                    at: pos,
                    why: LenFault::TooLarge,
                })
            }
        };
        for (k, want) in [b'\r', b'\n'].into_iter().enumerate() {
            match buf.get(end + k) {
                // The bytes of the string have been bounded above; waiting
                // for them allocates nothing.
                None => return Ok(None),
                Some(&got) if got != want => return Err(Fault::BulkEnding { at: end + k }),
                Some(_) => {}
            }
        }
        arg(i, &buf[start..end]);
        pos = end + 2;
        at.done = i + 1;
        at.pos = pos;
    }
    Ok(Some((n, pos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of up to four bytes from digits, signs, line ends and
    /// garbage, after a prefix byte, under caps around the digits: the
    /// one-digit shortcut answers as the digit loop does.
    #[test]
    fn the_one_digit_shortcut_reads_as_the_digit_loop() {
        let alphabet = b"0159\r\n+-x";
        let mut lines = vec![Vec::new()];
        for _ in 0..4 {
            let longer: Vec<Vec<u8>> = lines
                .iter()
                .filter(|l| l.len() == lines.last().map_or(0, Vec::len))
                .flat_map(|l| {
                    alphabet.iter().map(move |&b| {
                        let mut l = l.clone();
                        l.push(b);
                        l
                    })
                })
                .collect();
            lines.extend(longer);
        }
        let mut shortcut = 0;
        for line in &lines {
            let mut buf = b"$".to_vec();
            buf.extend_from_slice(line);
            for cap in [0, 4, 5, 9, 512] {
                for syntax in [Syntax::Lenient, Syntax::Canonical] {
                    let got = read_len(&buf, 1, cap, syntax);
                    assert_eq!(got, read_len_digits(&buf, 1, cap, syntax), "{line:?} {cap}");
                    shortcut += usize::from(matches!(got, Ok(Some((_, 4)))) && line.len() >= 3);
                }
            }
        }
        assert!(shortcut > 0);
        assert_eq!(
            read_len(b"*5\r\n", 1, 4, Syntax::Canonical),
            Err((1, LenFault::TooLarge))
        );
        assert_eq!(
            read_len(b"$0\r\n", 1, 0, Syntax::Canonical),
            Ok(Some((Len::Value(0), 4)))
        );
    }
}
