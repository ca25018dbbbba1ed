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
            // SAFETY: `Id::new` is the only place that builds an inline id,
            // and it copies `len` bytes of a `str` into `buf`, whole; the
            // bytes are never changed after. Checking them again on every
            // read was a measurable part of each id lookup and NEARBY hit.
            Id::Inline { len, buf } => unsafe {
                std::str::from_utf8_unchecked(&buf[..usize::from(*len)])
            },
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

/// Most slots in one block of [`IdOrder`]; a fuller block is split in two.
const BLOCK: usize = 128;

/// Where an id is, or would be, in an [`IdOrder`]: block and index in it.
pub(crate) type Pos = (usize, usize);

/// The slots of a collection in the order of their ids, in blocks of at most
/// [`BLOCK`] slot numbers (4 bytes each) with the first id of every block kept
/// beside, for the search: about 5 bytes per id, where a `BTreeMap` from ids
/// to slots takes 30 to 45, because it holds a second copy of each id and its
/// nodes are half full when filled in a log's order. The ids themselves are
/// read from the slots through the `key` function that every search is given.
#[derive(Debug, Default)]
pub(crate) struct IdOrder {
    blocks: Vec<Vec<u32>>,
    firsts: Vec<Id>,
    len: usize,
}

impl IdOrder {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// `Ok` with the position of `id`, or `Err` with the position where it
    /// would be inserted.
    pub(crate) fn search<'a>(&self, id: &str, key: impl Fn(u32) -> &'a str) -> Result<Pos, Pos> {
        if self.blocks.is_empty() {
            return Err((0, 0));
        }
        // The last block whose first id is not above `id` (the first block
        // when `id` is below all of them).
        let b = self
            .firsts
            .partition_point(|f| f.as_str() <= id)
            .saturating_sub(1);
        match self.blocks[b].binary_search_by(|&s| key(s).cmp(id)) {
            Ok(i) => Ok((b, i)),
            Err(i) => Err((b, i)),
        }
    }

    /// The slot under `id`.
    pub(crate) fn get<'a>(&self, id: &str, key: impl Fn(u32) -> &'a str) -> Option<u32> {
        let (b, i) = self.search(id, key).ok()?;
        Some(self.blocks[b][i])
    }

    /// The slot at `pos`, as [`IdOrder::search`] found it.
    pub(crate) fn slot_at(&self, (b, i): Pos) -> u32 {
        self.blocks[b][i]
    }

    /// Inserts `slot` at `pos`, as [`IdOrder::search`] returned it for the
    /// slot's id; `key` must already read that id.
    pub(crate) fn insert<'a>(&mut self, (b, i): Pos, slot: u32, key: impl Fn(u32) -> &'a str) {
        self.len += 1;
        if self.blocks.is_empty() {
            self.blocks.push(vec![slot]);
            self.firsts.push(Id::new(key(slot)));
            return;
        }
        let block = &mut self.blocks[b];
        // Blocks grow sixteen slots at a time rather than doubling: most of
        // them would otherwise be a quarter empty.
        if block.len() == block.capacity() {
            block.reserve_exact(16);
        }
        block.insert(i, slot);
        if i == 0 {
            self.firsts[b] = Id::new(key(slot));
        }
        if block.len() > BLOCK {
            let mut right = block.split_off(block.len() / 2);
            block.shrink_to(block.len() + 16);
            right.reserve_exact(16);
            self.firsts.insert(b + 1, Id::new(key(right[0])));
            self.blocks.insert(b + 1, right);
        }
    }

    /// Removes the slot at `pos`; `key` must still read every other slot's id.
    pub(crate) fn remove<'a>(&mut self, (b, i): Pos, key: impl Fn(u32) -> &'a str) -> u32 {
        self.len -= 1;
        let slot = self.blocks[b].remove(i);
        if self.blocks[b].is_empty() {
            self.blocks.remove(b);
            self.firsts.remove(b);
            return slot;
        }
        if i == 0 {
            self.firsts[b] = Id::new(key(self.blocks[b][0]));
        }
        // A block that has shrunk to a quarter joins its successor when both
        // fit in one, so that deletions do not leave many small blocks.
        if self.blocks[b].len() < BLOCK / 4
            && self
                .blocks
                .get(b + 1)
                .is_some_and(|n| n.len() + self.blocks[b].len() <= BLOCK)
        {
            let next = self.blocks.remove(b + 1);
            self.firsts.remove(b + 1);
            self.blocks[b].extend_from_slice(&next);
        }
        slot
    }

    /// The same order over renumbered slots (`to` maps each old number to
    /// its new one; `key` reads ids by new number), in half-full blocks
    /// allocated to fit, so that a collection that shrank also gives back
    /// the blocks' spare capacity.
    pub(crate) fn renumbered<'a>(
        &self,
        to: impl Fn(u32) -> u32,
        key: impl Fn(u32) -> &'a str,
    ) -> IdOrder {
        let all: Vec<u32> = self.iter().map(to).collect();
        let blocks: Vec<Vec<u32>> = all
            .chunks(BLOCK / 2)
            .map(|c| {
                let mut b = Vec::with_capacity(c.len() + 16);
                b.extend_from_slice(c);
                b
            })
            .collect();
        IdOrder {
            firsts: blocks.iter().map(|b| Id::new(key(b[0]))).collect(),
            blocks,
            len: all.len(),
        }
    }

    /// Every slot in id order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        self.blocks.iter().flatten().copied()
    }

    /// The slots before `pos`, in descending id order.
    pub(crate) fn iter_before(&self, (b, i): Pos) -> impl Iterator<Item = u32> + '_ {
        let first = self.blocks.get(b).map_or(&[][..], |v| &v[..i.min(v.len())]);
        first
            .iter()
            .rev()
            .chain(
                self.blocks[..b.min(self.blocks.len())]
                    .iter()
                    .rev()
                    .flat_map(|v| v.iter().rev()),
            )
            .copied()
    }

    /// The slots from `pos` on, in id order.
    pub(crate) fn iter_from(&self, (b, i): Pos) -> impl Iterator<Item = u32> + '_ {
        let first = self.blocks.get(b).map_or(&[][..], |v| &v[i.min(v.len())..]);
        first
            .iter()
            .chain(self.blocks.iter().skip(b + 1).flatten())
            .copied()
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Random inserts and removals of ids against a `BTreeSet`: lookups,
    /// order, and walks from every kind of position agree.
    #[test]
    fn keeps_ids_in_order_like_a_btreeset() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Slot `s` has the id `names[s]`; a removed slot keeps its name, as
        // the order never looks at slots it does not hold.
        let mut names: Vec<String> = Vec::new();
        let mut order = IdOrder::default();
        let mut model: BTreeSet<String> = BTreeSet::new();
        for round in 0..6000 {
            // Mostly inserts early on, mostly removals later.
            let insert = next() % 100 < if round < 4000 { 75 } else { 25 };
            let id = format!("id{}", next() % 3000);
            let key = |s: u32| names[s as usize].as_str();
            match (insert, order.search(&id, key)) {
                (true, Err(pos)) => {
                    names.push(id.clone());
                    let slot = (names.len() - 1) as u32;
                    order.insert(pos, slot, |s: u32| names[s as usize].as_str());
                    model.insert(id);
                }
                (false, Ok(pos)) => {
                    let slot = order.remove(pos, |s: u32| names[s as usize].as_str());
                    assert_eq!(names[slot as usize], id);
                    model.remove(&id);
                }
                (true, Ok(_)) | (false, Err(_)) => {
                    assert_eq!(
                        model.contains(&id),
                        order
                            .search(&id, |s: u32| names[s as usize].as_str())
                            .is_ok()
                    );
                }
            }
            assert_eq!(order.len(), model.len());
            if round % 500 == 0 || round == 5999 {
                let key = |s: u32| names[s as usize].as_str();
                let got: Vec<&str> = order.iter().map(key).collect();
                let want: Vec<&str> = model.iter().map(String::as_str).collect();
                assert_eq!(got, want);
                let rev: Vec<&str> = order.iter().rev().map(key).collect();
                assert_eq!(rev, want.iter().rev().copied().collect::<Vec<_>>());
                for probe in ["", "id1", "id1500", "id2999", "id5", "zz"] {
                    let pos = match order.search(probe, key) {
                        Ok((b, i)) => (b, i + 1),
                        Err(p) => p,
                    };
                    let after: Vec<&str> = order.iter_from(pos).map(key).collect();
                    let want_after: Vec<&str> = model
                        .range::<str, _>((
                            std::ops::Bound::Excluded(probe),
                            std::ops::Bound::Unbounded,
                        ))
                        .map(String::as_str)
                        .collect();
                    assert_eq!(after, want_after, "after {probe}");
                    assert_eq!(order.get(probe, key).is_some(), model.contains(probe));
                }
            }
        }
        assert!(order
            .blocks
            .iter()
            .all(|b| !b.is_empty() && b.len() <= BLOCK));
    }
}
