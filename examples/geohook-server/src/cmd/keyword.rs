//! Option keywords as parsers match them: an argument lowered on the
//! stack. It stands apart from the argument cursor (`args`) so that the
//! admission check, which reads a search's options before the command
//! runs, can use it without depending on the commands' error type.

/// An argument lowered for matching against option keywords: its ASCII
/// letters lowered, on the stack, with no UTF-8 check (a keyword is ASCII,
/// so bytes that are not never match one). An argument longer than
/// [`Keyword::MAX`] bytes is longer than every keyword and lowers to no
/// bytes, which match none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keyword {
    buf: [u8; Keyword::MAX],
    len: u8,
}

impl Keyword {
    /// At least the longest keyword matched this way.
    pub(crate) const MAX: usize = 16;

    /// `a` lowered (see the type).
    pub(crate) fn of(a: &[u8]) -> Keyword {
        let mut k = Keyword {
            buf: [0; Keyword::MAX],
            len: 0,
        };
        if let Some(to) = k.buf.get_mut(..a.len()) {
            for (t, f) in to.iter_mut().zip(a) {
                *t = f.to_ascii_lowercase();
            }
            // At most MAX (16), so it fits.
            k.len = a.len() as u8;
        }
        k
    }

    /// The lowered bytes, to match against lower-case keywords.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The lowered bytes zero-padded to [`Keyword::MAX`], read as one
    /// big-endian number (the command table's search key).
    pub(crate) fn as_u128(&self) -> u128 {
        u128::from_be_bytes(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyword_is_the_argument_lowered_unless_it_is_longer_than_any_keyword() {
        let max = "W".repeat(Keyword::MAX);
        let over = "W".repeat(Keyword::MAX + 1);
        for (given, want) in [
            (&b"LiMiT"[..], &b"limit"[..]),
            (b"", b""),
            (b"IDS", b"ids"),
            ("ÉTÉ".as_bytes(), "ÉtÉ".as_bytes()),
            (b"AB\xffC", b"ab\xffc"),
            (max.as_bytes(), max.to_ascii_lowercase().as_bytes()),
            (over.as_bytes(), b""),
        ] {
            assert_eq!(Keyword::of(given).as_bytes(), want, "{given:?}");
        }
    }
}
