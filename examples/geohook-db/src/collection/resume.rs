//! Walks that stop and resume: the orders a long search can be cut into
//! bounded parts by, so that a caller holding a lock around the collection
//! can let it go between parts.
//!
//! No order refers to a position in a structure that a write may reshape:
//! the id walk resumes after the last id it saw, the area walk is cut into
//! longitude ranges that each item belongs to by its own position, and the
//! nearest walk resumes beyond the last distance it saw. So whatever is
//! written between two parts, an item that is present and unchanged for the
//! whole walk is visited exactly once.

use std::ops::Range;

use rstar::AABB;

use super::{down, envelope, slot_id, up, Collection, Item, Nearest};
use crate::geom::{Bounds, Point};
use crate::object::Area;
use crate::points::Rect;

impl Collection {
    /// Live items in id order, strictly after `after` (from the first id
    /// when `None`); with `desc`, in descending order strictly before it
    /// (from the last id when `None`). A walk resumed from the last id it
    /// saw visits every item present for the whole walk exactly once.
    pub fn ids_from<'a>(
        &'a self,
        after: Option<&str>,
        desc: bool,
        now_ms: i64,
    ) -> Box<dyn Iterator<Item = (&'a str, &'a Item)> + 'a> {
        let at = after.map(|a| self.by_id.search(a, |s| slot_id(&self.slots, s)));
        let slots: Box<dyn Iterator<Item = u32> + 'a> = match (at, desc) {
            (None, false) => Box::new(self.by_id.iter()),
            (None, true) => Box::new(self.by_id.iter().rev()),
            (Some(Ok((b, i))), false) => Box::new(self.by_id.iter_from((b, i + 1))),
            (Some(Err(pos)), false) => Box::new(self.by_id.iter_from(pos)),
            (Some(Ok(pos) | Err(pos)), true) => Box::new(self.by_id.iter_before(pos)),
        };
        Box::new(
            slots
                .map(|i| self.slot(i))
                .filter(move |s| s.item.is_live(now_ms))
                .map(|s| (s.id.as_str(), &s.item)),
        )
    }

    /// NEARBY's walk from `after` on: the live spatial items farther than
    /// `after` meters from `center` (every one without it) and within
    /// `meters` when given, with their distances, nearest first and ties by
    /// id, in the order and with the distances of
    /// [`Collection::nearby`]. A walk cut after an item and resumed after
    /// its distance visits every item present and unchanged for the whole
    /// walk exactly once, provided it was cut between two distances, not
    /// inside a run of items at one distance.
    ///
    /// Nodes of the index wholly within `after` of the centre are not
    /// opened, and nodes are keyed by their exact distance rather than
    /// [`Collection::nearby`]'s cheaper bound, which is loose far from the
    /// centre; so a resumed walk costs about what the items it yields and
    /// the nodes across its front cost, not what lies behind the front or
    /// within the bound's slack beyond it.
    pub fn nearest_after<'a>(
        &'a self,
        center: &Point,
        meters: Option<f64>,
        after: Option<f64>,
        now_ms: i64,
    ) -> impl Iterator<Item = (&'a str, &'a Item, f64)> + 'a {
        let walk = Nearest::new(self, *center, meters.unwrap_or(f64::INFINITY))
            .after(after.unwrap_or(f64::NEG_INFINITY));
        walk.filter(move |(_, item, _)| item.is_live(now_ms))
    }

    /// How many of the stored spatial objects (expired ones included) would
    /// lie in `b` if they were spread evenly over the box that holds them
    /// all: their number times the share of that box which `b` covers, axis
    /// by axis (an axis on which the box has no width counts whole when `b`
    /// meets it). A first guess for how wide a part of an area walk
    /// ([`Collection::area_part`]) can be; objects that cluster inside `b`
    /// make it low.
    pub fn spread_estimate(&self, b: &Bounds) -> usize {
        let mut extent: Option<Rect> = self.points.extent();
        if self.tree.size() > 0 {
            let env = self.tree.root().envelope();
            let r = Rect {
                lo: env.lower(),
                hi: env.upper(),
            };
            extent = Some(match extent {
                Some(mut e) => {
                    for a in 0..2 {
                        e.lo[a] = e.lo[a].min(r.lo[a]);
                        e.hi[a] = e.hi[a].max(r.hi[a]);
                    }
                    e
                }
                None => r,
            });
        }
        let Some(e) = extent else {
            return 0;
        };
        let share = |lo: f64, hi: f64, a: usize| {
            let (elo, ehi) = (f64::from(e.lo[a]), f64::from(e.hi[a]));
            let width = lo.max(elo)..hi.min(ehi);
            if width.start > width.end {
                0.0
            } else if ehi > elo {
                ((width.end - width.start) / (ehi - elo)).min(1.0)
            } else {
                1.0
            }
        };
        let n = self.points.len() + self.tree.size();
        let f = share(b.sw.lon, b.ne.lon, 0) * share(b.sw.lat, b.ne.lat, 1);
        (n as f64 * f).ceil() as usize
    }

    /// The candidates of one part of a search of `area`: the live items
    /// whose indexed box meets the area's bounding box and whose place lies
    /// in `lons`, points first, then the other spatial objects, each in
    /// index order. A point's place is its stored longitude; another
    /// object's is the west edge of its box, or the area's when that is
    /// further east. Every candidate of the whole area has exactly one
    /// place, so parts whose ranges cover every longitude (the first may
    /// start at minus infinity, and a part that ends at plus infinity
    /// includes it) visit each candidate once.
    ///
    /// Candidates are a superset: the caller applies the exact test
    /// ([`crate::Object::within`] or [`crate::Object::intersects`]).
    pub fn area_part<'a>(
        &'a self,
        area: &Area,
        lons: Range<f64>,
        now_ms: i64,
    ) -> Box<dyn Iterator<Item = (&'a str, &'a Item)> + 'a> {
        let Some(b) = area.bounds() else {
            return Box::new(std::iter::empty());
        };
        let env = envelope(&b);
        let in_part = move |v: f32| {
            let v = f64::from(v);
            v >= lons.start && (v < lons.end || lons.end == f64::INFINITY)
        };
        // The index is searched only over the part's own longitudes (widened
        // outwards to the index's precision); the place test then decides.
        let lo = [env.lower()[0].max(down(lons.start)), env.lower()[1]];
        let hi = [env.upper()[0].min(up(lons.end)), env.upper()[1]];
        if lo[0] > hi[0] {
            return Box::new(std::iter::empty());
        }
        let west = env.lower()[0];
        let points = self
            .points
            .locate(Rect { lo, hi })
            .filter(move |e| in_part(e.xy[0]))
            .map(|e| e.slot);
        let boxes = self
            .tree
            .locate_in_envelope_intersecting(&AABB::from_corners(lo, hi))
            .filter(move |e| in_part(e.env.lower()[0].max(west)))
            .map(|e| e.slot);
        Box::new(
            points
                .chain(boxes)
                .map(|i| self.slot(i))
                .filter(move |s| s.item.is_live(now_ms))
                .map(|s| (s.id.as_str(), &s.item)),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::{Area, Bounds, Database, Object, Point, SetCondition};
    use std::collections::BTreeMap;

    const NOW: i64 = 1_700_000_000_000;

    fn put(db: &mut Database, id: &str, o: Object) {
        db.set(
            "k",
            id,
            o,
            &[] as &[(&str, f64)],
            None,
            SetCondition::Always,
            NOW,
        )
        .unwrap();
    }

    fn point(lat: f64, lon: f64) -> Object {
        Object::Point(Point::new(lat, lon).unwrap())
    }

    #[test]
    fn the_spread_estimate_is_the_share_of_the_box_of_all_objects() {
        let b = |s: f64, w: f64, n: f64, e: f64| Bounds::new(s, w, n, e).unwrap();
        let mut db = Database::new();
        // A 100 x 100 grid over 0..9.9 degrees both ways.
        for i in 0..100 {
            for j in 0..100 {
                put(
                    &mut db,
                    &format!("p{i}_{j}"),
                    point(i as f64 * 0.1, j as f64 * 0.1),
                );
            }
        }
        let c = db.collection("k").unwrap();
        let estimate = |area: Bounds| c.spread_estimate(&area);
        assert_eq!(estimate(b(-1.0, -1.0, 20.0, 20.0)), 10_000);
        // A quarter of the box: 2,500, give or take the padding.
        assert!((2_490..=2_510).contains(&estimate(b(0.0, 0.0, 4.95, 4.95))));
        // A sliver holds few, and an area beside the box none.
        assert!(estimate(b(1.0, 1.0, 1.05, 1.05)) <= 4);
        assert_eq!(estimate(b(20.0, 20.0, 21.0, 21.0)), 0);
        // A box bounding another object widens the box of them all.
        put(
            &mut db,
            "far",
            Object::Bounds(Box::new(b(0.0, 0.0, 0.5, 99.0))),
        );
        let c = db.collection("k").unwrap();
        assert!(c.spread_estimate(&b(0.0, 0.0, 4.95, 4.95)) < 300);
        // All on one spot: the box has no width, and an area that meets the
        // spot counts every object.
        let mut one = Database::new();
        for i in 0..50 {
            put(&mut one, &format!("s{i}"), point(33.0, -115.0));
        }
        let c = one.collection("k").unwrap();
        assert_eq!(c.spread_estimate(&b(32.0, -116.0, 34.0, -114.0)), 50);
        assert_eq!(c.spread_estimate(&b(34.0, -116.0, 35.0, -114.0)), 0);
    }

    /// Walks `ids_from` in chunks of `n`, writing between chunks with `between`.
    fn chunked(
        db: &mut Database,
        desc: bool,
        n: usize,
        mut between: impl FnMut(&mut Database, usize),
    ) -> Vec<String> {
        let mut seen = Vec::new();
        let mut last: Option<String> = None;
        for round in 0.. {
            let chunk: Vec<String> = db
                .collection("k")
                .map(|c| {
                    c.ids_from(last.as_deref(), desc, NOW)
                        .take(n)
                        .map(|(id, _)| id.to_owned())
                        .collect()
                })
                .unwrap_or_default();
            if chunk.is_empty() {
                break;
            }
            last = chunk.last().cloned();
            seen.extend(chunk);
            between(db, round);
        }
        seen
    }

    #[test]
    fn an_id_walk_resumed_after_writes_sees_every_unchanged_item_once() {
        let mut db = Database::new();
        for i in 0..1000 {
            put(&mut db, &format!("id{i:04}"), point(1.0, 1.0));
        }
        for desc in [false, true] {
            let mut db2 = Database::new();
            for i in 0..1000 {
                put(&mut db2, &format!("id{i:04}"), point(1.0, 1.0));
            }
            // Between chunks: delete an id the walk has passed and one it
            // has not, and add new ones on both sides.
            let seen = chunked(&mut db2, desc, 37, |db, round| {
                db.del("k", &format!("id{:04}", (round * 7) % 1000), NOW);
                db.del("k", &format!("id{:04}", 999 - (round * 11) % 1000), NOW);
                put(db, &format!("id{:04}x", round * 13 % 1000), point(1.0, 1.0));
            });
            let mut sorted = seen.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), seen.len(), "no id twice ({desc})");
            let mut in_order = seen.clone();
            if desc {
                in_order.sort_by(|a, b| b.cmp(a));
            } else {
                in_order.sort();
            }
            assert_eq!(in_order, seen, "in order ({desc})");
            // Every id still there at the end was there all along, unless
            // it was added meanwhile: all of those must have been seen.
            let end: Vec<String> = db2
                .collection("k")
                .unwrap()
                .iter(NOW)
                .map(|(id, _)| id.to_owned())
                .filter(|id| !id.ends_with('x'))
                .collect();
            for id in end {
                assert!(seen.contains(&id), "{id} missed ({desc})");
            }
        }
        // Without writes, the chunks are the whole order.
        let all: Vec<String> = db
            .collection("k")
            .unwrap()
            .iter(NOW)
            .map(|(id, _)| id.to_owned())
            .collect();
        assert_eq!(chunked(&mut db, false, 10, |_, _| {}), all);
        let mut rev = all.clone();
        rev.reverse();
        assert_eq!(chunked(&mut db, true, 999, |_, _| {}), rev);
    }

    #[test]
    fn area_parts_cover_every_candidate_exactly_once() {
        let mut db = Database::new();
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 10_000) as f64 / 1000.0
        };
        for i in 0..3000 {
            put(&mut db, &format!("p{i}"), point(next(), next()));
        }
        // Boxes, some sticking out west of the area, and points on the part
        // boundaries.
        for i in 0..300 {
            let (lat, lon) = (next(), next() - 2.0);
            let b = Bounds::new(lat, lon, lat + 0.5, lon + 0.7).unwrap();
            put(&mut db, &format!("b{i}"), Object::Bounds(Box::new(b)));
        }
        for (i, lon) in [2.0, 4.0, 4.5, 7.25].iter().enumerate() {
            put(&mut db, &format!("edge{i}"), point(5.0, *lon));
        }
        let area = Area::Bounds(Bounds::new(1.0, 1.0, 9.0, 9.0).unwrap());
        let col = db.collection("k").unwrap();
        let mut whole: BTreeMap<String, usize> = BTreeMap::new();
        for (id, item) in col.area_part(&area, f64::NEG_INFINITY..f64::INFINITY, NOW) {
            if item.object().intersects(&area) {
                *whole.entry(id.to_owned()).or_default() += 1;
            }
        }
        let want: Vec<String> = db
            .intersects("k", &area, &Default::default(), NOW)
            .hits
            .iter()
            .map(|h| h.id.to_owned())
            .collect();
        assert_eq!(whole.keys().cloned().collect::<Vec<_>>(), {
            let mut w = want.clone();
            w.sort();
            w
        });
        for cuts in [
            vec![],
            vec![4.0],
            vec![2.0, 4.0, 4.5, 7.25],
            vec![-5.0, 0.5, 30.0],
        ] {
            let mut bounds = vec![f64::NEG_INFINITY];
            bounds.extend(&cuts);
            bounds.push(f64::INFINITY);
            let mut parts: BTreeMap<String, usize> = BTreeMap::new();
            for w in bounds.windows(2) {
                for (id, item) in col.area_part(&area, w[0]..w[1], NOW) {
                    if item.object().intersects(&area) {
                        *parts.entry(id.to_owned()).or_default() += 1;
                    }
                }
            }
            assert_eq!(parts, whole, "cut at {cuts:?}");
        }
    }

    /// Walks `nearest_after` in parts of at least `n` items, each part
    /// finishing the run of items at its last distance, as a sliced walk
    /// does.
    fn nearest_in_parts(
        db: &Database,
        center: &Point,
        meters: Option<f64>,
        n: usize,
    ) -> Vec<(String, f64)> {
        let col = db.collection("k").unwrap();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let mut part = Vec::new();
            let mut it = col.nearest_after(center, meters, after, NOW).peekable();
            while let Some((id, _, d)) = it.next() {
                part.push((id.to_owned(), d));
                if part.len() >= n && it.peek().is_none_or(|next| next.2 != d) {
                    break;
                }
            }
            let Some(last) = part.last() else {
                return seen;
            };
            after = Some(last.1);
            seen.extend(part);
        }
    }

    #[test]
    fn a_nearest_walk_resumed_after_each_part_is_the_whole_walk() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut db = Database::new();
        // Spread over the whole globe, a tight cluster, a pile on one spot
        // (equal distances), and boxes.
        for i in 0..1500 {
            let (lat, lon) = (
                next(18_000) as f64 / 100.0 - 90.0,
                next(36_000) as f64 / 100.0 - 180.0,
            );
            put(&mut db, &format!("g{i}"), point(lat, lon));
        }
        for i in 0..800 {
            let (lat, lon) = (
                33.0 + next(1000) as f64 * 1e-5,
                -115.0 + next(1000) as f64 * 1e-5,
            );
            put(&mut db, &format!("c{i}"), point(lat, lon));
        }
        for i in 0..300 {
            put(&mut db, &format!("pile{i}"), point(33.001, -115.001));
        }
        for i in 0..200 {
            let (lat, lon) = (next(170) as f64 - 85.0, next(350) as f64 - 175.0);
            let b = Bounds::new(lat, lon, lat + 0.5, lon + 2.0).unwrap();
            put(&mut db, &format!("b{i}"), Object::Bounds(Box::new(b)));
        }
        for (center, meters) in [
            (Point::new(33.0, -115.0).unwrap(), None),
            (Point::new(33.0, -115.0).unwrap(), Some(2_000_000.0)),
            (Point::new(33.001, -115.001).unwrap(), Some(500.0)),
            (Point::new(-60.0, 170.0).unwrap(), None),
            (Point::new(90.0, 0.0).unwrap(), None),
        ] {
            let whole: Vec<(String, f64)> = db
                .nearby("k", &center, meters, &Default::default(), NOW)
                .hits
                .iter()
                .map(|h| (h.id.to_owned(), h.distance.unwrap()))
                .collect();
            assert!(!whole.is_empty());
            for n in [1, 7, 64, 1000] {
                let parts = nearest_in_parts(&db, &center, meters, n);
                assert_eq!(parts, whole, "{center:?} {meters:?} in parts of {n}");
            }
        }
    }
}
