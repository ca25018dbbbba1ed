//! Item ids in 16 bytes: up to [`INLINE`] bytes stored in place, longer ones
//! behind one pointer.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Deref;

/// Longest id stored without a heap allocation. Fleet ids such as `truck12345`
/// or `p999999` fit; the inline form and the pointer form are both 16 bytes
/// with the enum's tag.
pub(crate) const INLINE: usize = 14;

/// An item's id.
#[derive(Clone)]
pub(crate) enum Id {
    Inline { len: u8, buf: [u8; INLINE] },
    // A thin pointer to the boxed text keeps this variant at 8 bytes, so that
    // the enum stays at 16 (a `Box<str>` alone would take 16).
    Heap(Box<Box<str>>),
}

impl Id {
    pub(crate) fn new(s: &str) -> Id {
        if s.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            Id::Inline {
                len: s.len() as u8,
                buf,
            }
        } else {
            Id::Heap(Box::new(s.into()))
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Id::Inline { len, buf } => {
                std::str::from_utf8(&buf[..usize::from(*len)]).expect("built from a str")
            }
            Id::Heap(s) => s,
        }
    }

    /// Bytes the id holds on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Id::Inline { .. } => 0,
            Id::Heap(s) => std::mem::size_of::<Box<str>>() + s.len(),
        }
    }
}

impl Deref for Id {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Id {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

// Order, equality and hashing are those of the text, as `Borrow<str>` requires.
impl PartialEq for Id {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for Id {}
impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Id {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders_as_text() {
        assert_eq!(std::mem::size_of::<Id>(), 16);
        assert_eq!(std::mem::size_of::<Option<Id>>(), 16);
        let texts = [
            "",
            "a",
            "truck12345",
            "exactly14bytes",
            "fifteen-bytes!!",
            "é漢字 and a long tail",
        ];
        let ids: Vec<Id> = texts.iter().map(|t| Id::new(t)).collect();
        for (t, id) in texts.iter().zip(&ids) {
            assert_eq!(id.as_str(), *t);
        }
        assert!(matches!(ids[3], Id::Inline { .. }));
        assert!(matches!(ids[4], Id::Heap(_)));
        for a in &ids {
            for b in &ids {
                assert_eq!(a.cmp(b), a.as_str().cmp(b.as_str()));
            }
        }
    }
}
