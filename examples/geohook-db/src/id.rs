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

/// One slot of a block with four bytes of its id, those after the prefix
/// that every id of the block shares, so that most comparisons of a search
/// read no id at all.
#[derive(Debug, Clone, Copy)]
struct Entry {
    slot: u32,
    frag: u32,
}

/// One run of the order: its entries and the length of the prefix their ids
/// share (a prefix of the block's first id, not necessarily the longest).
#[derive(Debug, Default)]
struct Block {
    entries: Vec<Entry>,
    shared: usize,
}

/// The four bytes of `id` after its first `shared`, big-endian and padded
/// with zeros. For two ids with the same first `shared` bytes, a smaller
/// fragment means a smaller id and a larger one a larger id; only equal
/// fragments need the ids themselves.
fn frag(id: &str, shared: usize) -> u32 {
    let rest = &id.as_bytes()[shared..];
    let mut b = [0u8; 4];
    let n = rest.len().min(4);
    b[..n].copy_from_slice(&rest[..n]);
    u32::from_be_bytes(b)
}

impl Block {
    /// Sets `shared` to the longest prefix of the block's first and last ids
    /// (which every id between them shares) and recomputes every fragment.
    /// It reads every id of the block, so it runs only when a block is made
    /// (split, merged, rebuilt) or an id without the prefix joins it.
    fn refit<'a>(&mut self, key: impl Fn(u32) -> &'a str) {
        let (Some(first), Some(last)) = (self.entries.first(), self.entries.last()) else {
            return;
        };
        let (a, z) = (key(first.slot).as_bytes(), key(last.slot).as_bytes());
        self.shared = a.iter().zip(z).take_while(|(x, y)| x == y).count();
        for e in &mut self.entries {
            e.frag = frag(key(e.slot), self.shared);
        }
    }
}

/// The slots of a collection in the order of their ids, in blocks of at most
/// [`BLOCK`] slot numbers with the first id of every block kept beside, for
/// the search. Each slot number (4 bytes) is kept with 4 bytes of its id
/// beyond the block's shared prefix: a search then compares those in the
/// block and reads an id from its slot only when they are equal, where
/// reading the slot of every probe was a cache miss each and most of a SET's
/// time in the order at 200,000 points. About 9 bytes per id, where a
/// `BTreeMap` from ids to slots takes 30 to 45, because it holds a second
/// copy of each id and its nodes are half full when filled in a log's
/// order. The ids themselves are read from the slots through the `key`
/// function that every search is given.
#[derive(Debug, Default)]
pub(crate) struct IdOrder {
    blocks: Vec<Block>,
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
        let block = &self.blocks[b];
        let prefix = &self.firsts[b].as_bytes()[..block.shared];
        if !id.as_bytes().starts_with(prefix) {
            // Every id of the block starts with `prefix` and `id` does not,
            // so it is below all of them or above all of them.
            let i = if id.as_bytes() < prefix {
                0
            } else {
                block.entries.len()
            };
            return Err((b, i));
        }
        let f = frag(id, block.shared);
        match block
            .entries
            .binary_search_by(|e| e.frag.cmp(&f).then_with(|| key(e.slot).cmp(id)))
        {
            Ok(i) => Ok((b, i)),
            Err(i) => Err((b, i)),
        }
    }

    /// The slot under `id`.
    pub(crate) fn get<'a>(&self, id: &str, key: impl Fn(u32) -> &'a str) -> Option<u32> {
        let (b, i) = self.search(id, key).ok()?;
        Some(self.blocks[b].entries[i].slot)
    }

    /// The slot at `pos`, as [`IdOrder::search`] found it.
    pub(crate) fn slot_at(&self, (b, i): Pos) -> u32 {
        self.blocks[b].entries[i].slot
    }

    /// Inserts `slot` at `pos`, as [`IdOrder::search`] returned it for the
    /// slot's id; `key` must already read that id.
    pub(crate) fn insert<'a>(&mut self, (b, i): Pos, slot: u32, key: impl Fn(u32) -> &'a str) {
        self.len += 1;
        let id = key(slot);
        if self.blocks.is_empty() {
            self.blocks.push(Block {
                entries: vec![Entry {
                    slot,
                    frag: frag(id, id.len()),
                }],
                shared: id.len(),
            });
            self.firsts.push(Id::new(id));
            return;
        }
        let block = &mut self.blocks[b];
        // Blocks grow sixteen slots at a time rather than doubling: most of
        // them would otherwise be a quarter empty.
        if block.entries.len() == block.entries.capacity() {
            block.entries.reserve_exact(16);
        }
        let fits = id
            .as_bytes()
            .starts_with(&self.firsts[b].as_bytes()[..block.shared]);
        let f = if fits { frag(id, block.shared) } else { 0 };
        block.entries.insert(i, Entry { slot, frag: f });
        if !fits {
            block.refit(&key);
        }
        if i == 0 {
            self.firsts[b] = Id::new(id);
        }
        if block.entries.len() > BLOCK {
            let mut right = block.entries.split_off(block.entries.len() / 2);
            block.entries.shrink_to(block.entries.len() + 16);
            right.reserve_exact(16);
            // Each half may share a longer prefix than the whole did; its
            // fragments then tell more ids apart.
            block.refit(&key);
            let mut right = Block {
                entries: right,
                shared: 0,
            };
            right.refit(&key);
            self.firsts
                .insert(b + 1, Id::new(key(right.entries[0].slot)));
            self.blocks.insert(b + 1, right);
        }
    }

    /// Removes the slot at `pos`; `key` must still read every other slot's id.
    pub(crate) fn remove<'a>(&mut self, (b, i): Pos, key: impl Fn(u32) -> &'a str) -> u32 {
        self.len -= 1;
        let slot = self.blocks[b].entries.remove(i).slot;
        if self.blocks[b].entries.is_empty() {
            self.blocks.remove(b);
            self.firsts.remove(b);
            return slot;
        }
        // The remaining ids still share the block's prefix, so their
        // fragments stay as they are.
        if i == 0 {
            self.firsts[b] = Id::new(key(self.blocks[b].entries[0].slot));
        }
        // A block that has shrunk to a quarter joins its successor when both
        // fit in one, so that deletions do not leave many small blocks.
        if self.blocks[b].entries.len() < BLOCK / 4
            && self
                .blocks
                .get(b + 1)
                .is_some_and(|n| n.entries.len() + self.blocks[b].entries.len() <= BLOCK)
        {
            let next = self.blocks.remove(b + 1);
            self.firsts.remove(b + 1);
            self.blocks[b].entries.extend_from_slice(&next.entries);
            self.blocks[b].refit(&key);
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
        let blocks: Vec<Block> = all
            .chunks(BLOCK / 2)
            .map(|c| {
                let mut entries = Vec::with_capacity(c.len() + 16);
                entries.extend(c.iter().map(|&slot| Entry { slot, frag: 0 }));
                let mut b = Block { entries, shared: 0 };
                b.refit(&key);
                b
            })
            .collect();
        IdOrder {
            firsts: blocks
                .iter()
                .map(|b| Id::new(key(b.entries[0].slot)))
                .collect(),
            blocks,
            len: all.len(),
        }
    }

    /// Every slot in id order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        self.blocks
            .iter()
            .flat_map(|b| b.entries.iter())
            .map(|e| e.slot)
    }

    /// The slots before `pos`, in descending id order.
    pub(crate) fn iter_before(&self, (b, i): Pos) -> impl Iterator<Item = u32> + '_ {
        let first = self
            .blocks
            .get(b)
            .map_or(&[][..], |v| &v.entries[..i.min(v.entries.len())]);
        first
            .iter()
            .rev()
            .chain(
                self.blocks[..b.min(self.blocks.len())]
                    .iter()
                    .rev()
                    .flat_map(|v| v.entries.iter().rev()),
            )
            .map(|e| e.slot)
    }

    /// The slots from `pos` on, in id order.
    pub(crate) fn iter_from(&self, (b, i): Pos) -> impl Iterator<Item = u32> + '_ {
        let first = self
            .blocks
            .get(b)
            .map_or(&[][..], |v| &v.entries[i.min(v.entries.len())..]);
        first
            .iter()
            .chain(
                self.blocks
                    .iter()
                    .skip(b + 1)
                    .flat_map(|v| v.entries.iter()),
            )
            .map(|e| e.slot)
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Random inserts and removals of ids against a `BTreeSet`: lookups,
    /// order, and walks from every kind of position agree, for ids that
    /// differ early, ids with long shared prefixes (where the blocks'
    /// fragments tie), ids that are prefixes of others or hold zero bytes
    /// (which pad a short fragment), and the empty id.
    #[test]
    fn keeps_ids_in_order_like_a_btreeset() {
        let shapes: [fn(u64) -> String; 4] = [
            |n| format!("id{}", n % 3000),
            |n| format!("{:012}", n % 3000 * 7),
            |n| format!("fleet:truck:{}", n % 3000).repeat(1 + (n % 3) as usize),
            |n| match n % 7 {
                0 => String::new(),
                1 => format!("a\0{}", n % 500),
                2 => format!("a{}", n % 500),
                3 => "a".repeat((n % 40) as usize),
                _ => format!("a\0\0{}", n % 1000),
            },
        ];
        for shape in shapes {
            check(shape);
        }
    }

    /// Every block's ids start with its shared prefix and carry their own
    /// fragment, and every block's first id is kept beside it.
    fn check_blocks<'a>(order: &IdOrder, key: impl Fn(u32) -> &'a str) {
        for (block, first) in order.blocks.iter().zip(&order.firsts) {
            assert!(!block.entries.is_empty() && block.entries.len() <= BLOCK);
            assert_eq!(first.as_str(), key(block.entries[0].slot));
            for e in &block.entries {
                let id = key(e.slot);
                assert!(id.as_bytes().starts_with(&first.as_bytes()[..block.shared]));
                assert_eq!(e.frag, frag(id, block.shared), "fragment of {id:?}");
            }
        }
        assert_eq!(order.blocks.len(), order.firsts.len());
    }

    fn check(shape: fn(u64) -> String) {
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
            let id = shape(next());
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
                check_blocks(&order, key);
                let probes = [
                    "",
                    "id1",
                    "id1500",
                    "id2999",
                    "id5",
                    "zz",
                    "a",
                    "a\0",
                    "000000000007",
                ];
                for probe in probes
                    .into_iter()
                    .map(String::from)
                    .chain([shape(next()), shape(next())])
                {
                    let probe = probe.as_str();
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
        check_blocks(&order, |s: u32| names[s as usize].as_str());
        // A rebuilt order (as a shrink makes, here with the same numbers)
        // keeps the same ids in the same places.
        let key = |s: u32| names[s as usize].as_str();
        let rebuilt = order.renumbered(|s| s, key);
        check_blocks(&rebuilt, key);
        assert!(rebuilt.iter().eq(order.iter()));
        for id in &model {
            assert_eq!(rebuilt.get(id, key), order.get(id, key));
        }
    }
}
