//! A compact R-tree of plain points: 12 bytes per point in leaves that hold up
//! to [`LEAF_MAX`] of them, instead of the 40-byte node enum per entry of a
//! general R-tree.
//!
//! Points are stored as `f32` longitude and latitude rounded to nearest, with
//! the slot of their item. An `f32` is within half a unit in the last place of
//! the `f64` it came from, so every rectangle here ([`Rect::of`] and the node
//! rectangles built from it) is padded by one unit on each side and always
//! contains the exact position: searches and distance bounds computed from
//! these rectangles are supersets and lower bounds, and exact `f64` tests on
//! the item decide.

/// Most points in a leaf; a leaf that would hold one more is split in two.
const LEAF_MAX: usize = 16;
/// A leaf with fewer points after a removal is dissolved and its points
/// inserted again, so that a moving fleet does not leave sparse leaves behind.
const LEAF_MIN: usize = 4;
/// Most children of an inner node.
const INNER_MAX: usize = 16;
/// Fewest children of an inner node before it is dissolved.
const INNER_MIN: usize = 4;
/// Points per leaf when the tree is built at once ([`PointTree::bulk_load`]):
/// room for a few inserts before the first split.
const BULK_LEAF: usize = 14;
/// Children per inner node when the tree is built at once.
const BULK_INNER: usize = 14;

/// A longitude/latitude rectangle in `f32` (x is longitude, y latitude).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rect {
    pub(crate) lo: [f32; 2],
    pub(crate) hi: [f32; 2],
}

impl Rect {
    /// The padded rectangle of a stored point: it contains the exact `f64`
    /// position that was rounded to `xy`.
    pub(crate) fn of(xy: [f32; 2]) -> Rect {
        Rect {
            lo: [xy[0].next_down(), xy[1].next_down()],
            hi: [xy[0].next_up(), xy[1].next_up()],
        }
    }

    fn empty() -> Rect {
        Rect {
            lo: [f32::INFINITY; 2],
            hi: [f32::NEG_INFINITY; 2],
        }
    }

    fn merge(&mut self, o: &Rect) {
        for a in 0..2 {
            self.lo[a] = self.lo[a].min(o.lo[a]);
            self.hi[a] = self.hi[a].max(o.hi[a]);
        }
    }

    pub(crate) fn intersects(&self, o: &Rect) -> bool {
        self.lo[0] <= o.hi[0]
            && o.lo[0] <= self.hi[0]
            && self.lo[1] <= o.hi[1]
            && o.lo[1] <= self.hi[1]
    }

    pub(crate) fn contains(&self, xy: [f32; 2]) -> bool {
        (0..2).all(|a| self.lo[a] <= xy[a] && xy[a] <= self.hi[a])
    }

    /// This rectangle widened by one `f32` step on each side: a stored
    /// point's padded box ([`Rect::of`]) meets `self` exactly when the point
    /// lies in the widened rectangle (`next_down(x) <= hi` is
    /// `x <= next_up(hi)`), so a walk tests a leaf's points without building
    /// their boxes.
    pub(crate) fn for_points(&self) -> Rect {
        Rect {
            lo: [self.lo[0].next_down(), self.lo[1].next_down()],
            hi: [self.hi[0].next_up(), self.hi[1].next_up()],
        }
    }

    /// The area shared with `o`, 0 when they do not meet.
    fn overlap(&self, o: &Rect) -> f64 {
        let w = f64::from(self.hi[0].min(o.hi[0])) - f64::from(self.lo[0].max(o.lo[0]));
        let h = f64::from(self.hi[1].min(o.hi[1])) - f64::from(self.lo[1].max(o.lo[1]));
        if w > 0.0 && h > 0.0 {
            w * h
        } else {
            0.0
        }
    }

    fn area(&self) -> f64 {
        (f64::from(self.hi[0]) - f64::from(self.lo[0]))
            * (f64::from(self.hi[1]) - f64::from(self.lo[1]))
    }

    /// The area this rectangle would have after taking in `o`, less its own.
    fn enlargement(&self, o: &Rect) -> f64 {
        let mut m = *self;
        m.merge(o);
        m.area() - self.area()
    }
}

/// One stored point: its rounded position and its item's slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PointEntry {
    pub(crate) xy: [f32; 2],
    pub(crate) slot: u32,
}

/// A node: a leaf of points, or inner children with their rectangles.
#[derive(Debug)]
pub(crate) enum Node {
    Leaf(Vec<PointEntry>),
    Inner(Vec<Child>),
}

/// A child of an inner node and the rectangle that contains all its points.
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) rect: Rect,
    pub(crate) node: Node,
}

impl Default for Node {
    fn default() -> Self {
        Node::Leaf(Vec::new())
    }
}

impl Node {
    fn len(&self) -> usize {
        match self {
            Node::Leaf(v) => v.len(),
            Node::Inner(c) => c.len(),
        }
    }

    fn rect(&self) -> Rect {
        let mut r = Rect::empty();
        match self {
            Node::Leaf(v) => v.iter().for_each(|e| r.merge(&Rect::of(e.xy))),
            Node::Inner(c) => c.iter().for_each(|c| r.merge(&c.rect)),
        }
        r
    }

    fn drain_into(self, out: &mut Vec<PointEntry>) {
        match self {
            Node::Leaf(v) => out.extend(v),
            Node::Inner(c) => c.into_iter().for_each(|c| c.node.drain_into(out)),
        }
    }

    /// Inserts `e` below this node and returns the new sibling when the node split.
    fn insert(&mut self, e: PointEntry) -> Option<Child> {
        match self {
            Node::Leaf(v) => {
                // Grow a leaf four entries at a time rather than doubling it:
                // leaves are many and small, and doubling leaves a quarter of
                // them empty on average.
                if v.len() == v.capacity() {
                    v.reserve_exact(4);
                }
                v.push(e);
                (v.len() > LEAF_MAX).then(|| {
                    let right = split(v, |e| Rect::of(e.xy));
                    let node = Node::Leaf(right);
                    Child {
                        rect: node.rect(),
                        node,
                    }
                })
            }
            Node::Inner(children) => {
                let r = Rect::of(e.xy);
                let best = (0..children.len())
                    .min_by(|&a, &b| {
                        let (ca, cb) = (&children[a].rect, &children[b].rect);
                        ca.enlargement(&r)
                            .total_cmp(&cb.enlargement(&r))
                            .then(ca.area().total_cmp(&cb.area()))
                    })
                    .expect("inner nodes have children");
                let c = &mut children[best];
                c.rect.merge(&r);
                let sibling = c.node.insert(e)?;
                c.rect = c.node.rect();
                children.push(sibling);
                (children.len() > INNER_MAX).then(|| {
                    let right = split(children, |c| c.rect);
                    let node = Node::Inner(right);
                    Child {
                        rect: node.rect(),
                        node,
                    }
                })
            }
        }
    }

    /// Removes the entry of `slot` stored at `xy`. Children left with too few
    /// entries are taken out whole and their points put in `orphans`.
    fn remove(&mut self, xy: [f32; 2], slot: u32, orphans: &mut Vec<PointEntry>) -> bool {
        match self {
            Node::Leaf(v) => match v.iter().position(|e| e.slot == slot && e.xy == xy) {
                Some(i) => {
                    v.swap_remove(i);
                    true
                }
                None => false,
            },
            Node::Inner(children) => {
                for i in 0..children.len() {
                    if !children[i].rect.contains(xy) || !children[i].node.remove(xy, slot, orphans)
                    {
                        continue;
                    }
                    let min = match children[i].node {
                        Node::Leaf(_) => LEAF_MIN,
                        Node::Inner(_) => INNER_MIN,
                    };
                    if children[i].node.len() < min {
                        children.swap_remove(i).node.drain_into(orphans);
                    } else {
                        children[i].rect = children[i].node.rect();
                    }
                    return true;
                }
                false
            }
        }
    }
}

/// Splits `v` in two along the axis on which `key` spreads most, at the
/// position (leaving at least a quarter on each side) whose two rectangles
/// overlap least, then have the least area: nodes that overlap less are
/// opened less often by a search. Keeps the lower part in `v` and returns the
/// upper one; both get capacity for a few more entries.
fn split<T>(v: &mut Vec<T>, rect: impl Fn(&T) -> Rect) -> Vec<T> {
    let centre = |t: &T, a: usize| {
        let r = rect(t);
        r.lo[a] + r.hi[a]
    };
    let spread = |a: usize| {
        let (lo, hi) = v
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), t| {
                (lo.min(centre(t, a)), hi.max(centre(t, a)))
            });
        hi - lo
    };
    let axis = usize::from(spread(1) > spread(0));
    v.sort_by(|a, b| centre(a, axis).total_cmp(&centre(b, axis)));
    // Rectangles of every prefix and every suffix, then the best cut.
    let n = v.len();
    let mut pre = Vec::with_capacity(n);
    let mut r = Rect::empty();
    for t in v.iter() {
        r.merge(&rect(t));
        pre.push(r);
    }
    let mut suf = vec![Rect::empty(); n + 1];
    for i in (0..n).rev() {
        suf[i] = suf[i + 1];
        suf[i].merge(&rect(&v[i]));
    }
    let min = (n / 4).max(1);
    let cut = (min..=n - min)
        .min_by(|&a, &b| {
            let cost = |k: usize| {
                (
                    pre[k - 1].overlap(&suf[k]),
                    pre[k - 1].area() + suf[k].area(),
                )
            };
            let (ca, cb) = (cost(a), cost(b));
            ca.0.total_cmp(&cb.0).then(ca.1.total_cmp(&cb.1))
        })
        .unwrap_or(n / 2);
    let mut right = v.split_off(cut);
    right.reserve_exact(4);
    v.shrink_to(v.len() + 4);
    right
}

/// Cuts `items` into groups of `per` (the last may be short) by
/// sort-tile-recursive packing: sorted by `centre`'s x, cut into about
/// the square root of the group count of vertical slabs of whole groups,
/// each slab sorted by y and cut into groups. Neighbouring groups come out
/// in order, slab by slab.
fn tile<T>(mut items: Vec<T>, per: usize, centre: impl Fn(&T) -> [f32; 2]) -> Vec<Vec<T>> {
    if items.is_empty() {
        return Vec::new();
    }
    let groups = items.len().div_ceil(per);
    let slabs = (groups as f64).sqrt().ceil() as usize;
    // Whole groups per slab, so that cutting the sorted items every `per`
    // never makes a group of two slabs.
    let per_slab = groups.div_ceil(slabs.max(1)) * per;
    items.sort_unstable_by(|a, b| centre(a)[0].total_cmp(&centre(b)[0]));
    for slab in items.chunks_mut(per_slab) {
        slab.sort_unstable_by(|a, b| centre(a)[1].total_cmp(&centre(b)[1]));
    }
    let mut out = Vec::with_capacity(groups);
    let mut it = items.into_iter();
    loop {
        let mut group = Vec::with_capacity(per);
        group.extend(it.by_ref().take(per));
        if group.is_empty() {
            return out;
        }
        out.push(group);
    }
}

/// The point index of one collection.
#[derive(Debug, Default)]
pub(crate) struct PointTree {
    root: Node,
    len: usize,
}

impl PointTree {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn root(&self) -> &Node {
        &self.root
    }

    /// The box of every stored point (padded), `None` when there is none.
    pub(crate) fn extent(&self) -> Option<Rect> {
        (self.len > 0).then(|| self.root.rect())
    }

    pub(crate) fn insert(&mut self, e: PointEntry) {
        self.len += 1;
        if let Some(sibling) = self.root.insert(e) {
            let old = std::mem::take(&mut self.root);
            self.root = Node::Inner(vec![
                Child {
                    rect: old.rect(),
                    node: old,
                },
                sibling,
            ]);
        }
    }

    /// Removes the entry of `slot` at `xy`; false when there is none.
    pub(crate) fn remove(&mut self, xy: [f32; 2], slot: u32) -> bool {
        let mut orphans = Vec::new();
        if !self.root.remove(xy, slot, &mut orphans) {
            return false;
        }
        self.len -= 1;
        // A root with one child is replaced by the child, so that the tree
        // shrinks in height as it empties.
        loop {
            match &mut self.root {
                Node::Inner(c) if c.len() == 1 => {
                    self.root = c.pop().expect("one child").node;
                }
                Node::Inner(c) if c.is_empty() => self.root = Node::default(),
                _ => break,
            }
        }
        self.len -= orphans.len();
        for e in orphans {
            self.insert(e);
        }
        true
    }

    /// A tree of `entries` built at once by sort-tile-recursive packing:
    /// full leaves of neighbouring points, in a fraction of the time of one
    /// insert per point. Every level is tiled the same way, so that inner
    /// nodes are about as wide as they are tall: grouping the leaves in the
    /// order they were cut would make each inner node a thin column that
    /// many searches cross.
    pub(crate) fn bulk_load(entries: Vec<PointEntry>) -> PointTree {
        let len = entries.len();
        if len <= LEAF_MAX {
            return PointTree {
                root: Node::Leaf(entries),
                len,
            };
        }
        let mut level: Vec<Child> = tile(entries, BULK_LEAF, |e| e.xy)
            .into_iter()
            .map(|mut v| {
                v.reserve_exact(4);
                let node = Node::Leaf(v);
                Child {
                    rect: node.rect(),
                    node,
                }
            })
            .collect();
        while level.len() > 1 {
            level = tile(level, BULK_INNER, |c| {
                [c.rect.lo[0] + c.rect.hi[0], c.rect.lo[1] + c.rect.hi[1]]
            })
            .into_iter()
            .map(|mut group| {
                group.reserve_exact(2);
                let node = Node::Inner(group);
                Child {
                    rect: node.rect(),
                    node,
                }
            })
            .collect();
        }
        let root = level.pop().map_or_else(Node::default, |c| c.node);
        PointTree { root, len }
    }

    /// The entries whose padded rectangle meets `q`, in tree order.
    pub(crate) fn locate(&self, q: Rect) -> Locate<'_> {
        // Deep enough for a tree of millions without growing: the children
        // of one node per level.
        let mut stack = Vec::with_capacity(4 * INNER_MAX);
        stack.push(&self.root);
        Locate {
            q,
            points: q.for_points(),
            stack,
            leaf: [].iter(),
        }
    }
}

/// Iterator of [`PointTree::locate`].
pub(crate) struct Locate<'a> {
    q: Rect,
    /// `q` widened for a leaf's points ([`Rect::for_points`]).
    points: Rect,
    stack: Vec<&'a Node>,
    leaf: std::slice::Iter<'a, PointEntry>,
}

impl<'a> Iterator for Locate<'a> {
    type Item = &'a PointEntry;

    fn next(&mut self) -> Option<&'a PointEntry> {
        loop {
            if let Some(e) = self.leaf.by_ref().find(|e| self.points.contains(e.xy)) {
                return Some(e);
            }
            match self.stack.pop()? {
                Node::Leaf(v) => self.leaf = v.iter(),
                Node::Inner(c) => {
                    // Reversed, so that children are visited in their order.
                    self.stack.extend(
                        c.iter()
                            .rev()
                            .filter(|c| self.q.intersects(&c.rect))
                            .map(|c| &c.node),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    fn entries(n: u32, seed: u64) -> Vec<PointEntry> {
        let mut r = xorshift(seed);
        (0..n)
            .map(|slot| PointEntry {
                // A coarse grid, so that many points share a position.
                xy: [(r() % 200) as f32 * 0.01 - 1.0, (r() % 200) as f32 * 0.01],
                slot,
            })
            .collect()
    }

    #[test]
    fn a_point_is_in_the_widened_rectangle_exactly_when_its_box_meets_the_rectangle() {
        let mut r = xorshift(11);
        // Coordinates a few steps apart around a few values, zero among
        // them, so that edges fall on, beside and between stored values.
        let near = |r: &mut dyn FnMut() -> u64| {
            let base = [0.0f32, -0.0, 1.0, -115.25, 33.5, 179.99, -90.0][(r() % 7) as usize];
            let mut v = base;
            for _ in 0..(r() % 4) {
                v = if r().is_multiple_of(2) {
                    v.next_up()
                } else {
                    v.next_down()
                };
            }
            v
        };
        for _ in 0..100_000 {
            let (a, b, c, d) = (near(&mut r), near(&mut r), near(&mut r), near(&mut r));
            let w = Rect {
                lo: [a.min(b), c.min(d)],
                hi: [a.max(b), c.max(d)],
            };
            let xy = [near(&mut r), near(&mut r)];
            assert_eq!(
                Rect::of(xy).intersects(&w),
                w.for_points().contains(xy),
                "{xy:?} {w:?}"
            );
        }
    }

    /// Checks the structure: every rectangle contains its subtree, leaves and
    /// inner nodes respect their maximum, and the entries are exactly `want`.
    fn check(t: &PointTree, want: &[PointEntry]) {
        fn walk(
            n: &Node,
            out: &mut Vec<PointEntry>,
            depth: usize,
            depths: &mut Vec<usize>,
        ) -> Rect {
            match n {
                Node::Leaf(v) => {
                    assert!(v.len() <= LEAF_MAX);
                    depths.push(depth);
                    out.extend_from_slice(v);
                }
                Node::Inner(c) => {
                    assert!(!c.is_empty() && c.len() <= INNER_MAX);
                    for ch in c {
                        let inner = walk(&ch.node, out, depth + 1, depths);
                        let mut m = ch.rect;
                        m.merge(&inner);
                        assert_eq!(m, ch.rect, "a child's rectangle misses part of it");
                    }
                }
            }
            n.rect()
        }
        let mut got = Vec::new();
        let mut depths = Vec::new();
        walk(&t.root, &mut got, 0, &mut depths);
        assert!(
            depths.windows(2).all(|w| w[0] == w[1]),
            "leaves at different depths"
        );
        let key = |e: &PointEntry| e.slot;
        got.sort_by_key(key);
        let mut want = want.to_vec();
        want.sort_by_key(key);
        assert_eq!(got, want);
        assert_eq!(t.len(), want.len());
    }

    fn naive(all: &[PointEntry], q: Rect) -> Vec<u32> {
        let mut v: Vec<u32> = all
            .iter()
            .filter(|e| q.intersects(&Rect::of(e.xy)))
            .map(|e| e.slot)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn tiling_cuts_whole_groups_and_keeps_each_within_its_slab() {
        for (n, per) in [
            (0usize, 14usize),
            (1, 14),
            (14, 14),
            (15, 14),
            (3000, 14),
            (2801, 16),
            (97, 4),
        ] {
            let all = entries(n as u32, 7);
            let groups = tile(all.clone(), per, |e| e.xy);
            assert_eq!(groups.len(), n.div_ceil(per), "n {n} per {per}");
            let (last, full) = groups
                .split_last()
                .map_or((None, &[][..]), |(l, f)| (Some(l), f));
            assert!(full.iter().all(|g| g.len() == per), "n {n} per {per}");
            assert!(last.is_none_or(|g| !g.is_empty() && g.len() <= per));
            // Every item comes out once.
            let mut got: Vec<u32> = groups.iter().flatten().map(|e| e.slot).collect();
            got.sort_unstable();
            let mut want: Vec<u32> = all.iter().map(|e| e.slot).collect();
            want.sort_unstable();
            assert_eq!(got, want);
            // A slab is a run of whole groups sorted by y; consecutive
            // slabs are ordered by x, so no group takes items of two slabs:
            // within a group, y never decreases.
            for g in &groups {
                assert!(
                    g.windows(2).all(|w| w[0].xy[1] <= w[1].xy[1]),
                    "n {n} per {per}"
                );
            }
        }
    }

    #[test]
    fn inserts_removes_and_locates_like_a_list() {
        for seed in 1..4 {
            let all = entries(3000, seed);
            let mut t = PointTree::default();
            for e in &all {
                t.insert(*e);
            }
            check(&t, &all);
            let bulk = PointTree::bulk_load(all.clone());
            check(&bulk, &all);
            let mut r = xorshift(seed + 100);
            for _ in 0..50 {
                let (x, y) = ((r() % 200) as f32 * 0.01 - 1.0, (r() % 200) as f32 * 0.01);
                let q = Rect {
                    lo: [x, y],
                    hi: [x + 0.15, y + 0.1],
                };
                let want = naive(&all, q);
                for tree in [&t, &bulk] {
                    let mut got: Vec<u32> = tree.locate(q).map(|e| e.slot).collect();
                    got.sort();
                    assert_eq!(got, want);
                }
            }
            // Remove two thirds, in an order unrelated to the positions, from
            // both trees; then a missing entry is refused.
            let mut left = all.clone();
            let mut bulk = bulk;
            for e in &all {
                if e.slot % 3 != 0 {
                    assert!(t.remove(e.xy, e.slot));
                    assert!(bulk.remove(e.xy, e.slot));
                    left.retain(|x| x.slot != e.slot);
                }
            }
            check(&t, &left);
            check(&bulk, &left);
            assert!(!t.remove(all[1].xy, all[1].slot));
            for e in &left {
                assert!(t.remove(e.xy, e.slot));
            }
            check(&t, &[]);
        }
    }
}
