//! `SPARSE spread` on NEARBY, WITHIN and INTERSECTS, walked as Tile38
//! walks it (its collection's `geoSparse`).
//!
//! The bounding rectangle of the search area is halved in both directions
//! `spread` times, giving `4^spread` cells. The cells are visited depth
//! first, each rectangle's quarters in the order north-west, north-east,
//! south-west, south-east. A cell keeps at most one object: the first
//! candidate, in index order, whose indexed box meets the cell, that passes
//! the area's own test (inside it for WITHIN, meeting it for INTERSECTS
//! and NEARBY) and that no earlier cell kept. The object a cell keeps is
//! then put to the search's filters (MATCH, WHERE, WHEREIN); one that fails
//! them is dropped and the cell gives nothing, as in Tile38.
//!
//! The spread is at most [`MAX_SPREAD`] (Tile38's cap), and the walk never
//! holds anything per cell: it recurses (at most `spread` frames deep) and
//! skips a rectangle with no candidate left to keep, so the work is
//! bounded by the candidates times the depth, not by the count of cells.
//! What it holds is the ids kept so far, which are objects of the
//! collection. The deadline of a `TIMEOUT` is checked every
//! [`CHECK_EVERY`] candidates.

use std::collections::HashSet;
use std::time::Instant;

use geohook_db::{Area, Bounds, Collection, Item, Point};

use crate::cmd::ctx::{timed_out, CmdError};
use crate::cmd::sliced::{Flow, CHECK_EVERY};

/// The largest spread Tile38 accepts.
pub(crate) const MAX_SPREAD: u8 = 16;

/// A `SPARSE` value: a decimal integer from 1 to [`MAX_SPREAD`], read as
/// Tile38 reads it (Go's `ParseUint(s, 10, 8)`, so digits only, no sign).
///
/// # Errors
///
/// `invalid argument` for anything else.
pub(crate) fn spread(arg: &[u8]) -> Result<u8, CmdError> {
    std::str::from_utf8(arg)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u8>().ok())
        .filter(|n| (1..=MAX_SPREAD).contains(n))
        .ok_or_else(|| CmdError::invalid(arg))
}

/// The four quarters of `b`: north-west, north-east, south-west,
/// south-east (Tile38's order).
pub(crate) fn quarters(b: &Bounds) -> [Bounds; 4] {
    let mid_lon = b.sw.lon + (b.ne.lon - b.sw.lon) / 2.0;
    let mid_lat = b.sw.lat + (b.ne.lat - b.sw.lat) / 2.0;
    let rect = |min_lat: f64, min_lon: f64, max_lat: f64, max_lon: f64| Bounds {
        sw: Point {
            lat: min_lat,
            lon: min_lon,
            z: None,
        },
        ne: Point {
            lat: max_lat,
            lon: max_lon,
            z: None,
        },
    };
    [
        rect(mid_lat, b.sw.lon, b.ne.lat, mid_lon),
        rect(mid_lat, mid_lon, b.ne.lat, b.ne.lon),
        rect(b.sw.lat, b.sw.lon, mid_lat, mid_lon),
        rect(b.sw.lat, mid_lon, mid_lat, b.ne.lon),
    ]
}

/// A sparse walk of one collection.
struct Walk<'c, 't> {
    c: &'c Collection,
    now: i64,
    deadline: Option<Instant>,
    /// The area's exact test.
    test: &'t dyn Fn(&Item) -> bool,
    /// The ids kept by the cells visited so far.
    kept: HashSet<&'c str>,
    /// Candidates looked at, for the deadline checks.
    seen: usize,
}

impl<'c> Walk<'c, '_> {
    /// The object the cell `rect` would keep now, if any.
    fn first(&mut self, rect: &Bounds) -> Result<Option<(&'c str, &'c Item)>, CmdError> {
        let cell = Area::Bounds(*rect);
        for (id, item) in self
            .c
            .area_part(&cell, f64::NEG_INFINITY..f64::INFINITY, self.now)
        {
            self.seen += 1;
            if self.seen.is_multiple_of(CHECK_EVERY)
                && self.deadline.is_some_and(|d| Instant::now() >= d)
            {
                return Err(timed_out());
            }
            if !self.kept.contains(id) && (self.test)(item) {
                return Ok(Some((id, item)));
            }
        }
        Ok(None)
    }

    /// Visits the `4^depth` cells of `rect`. A rectangle in which no cell
    /// could keep anything (no candidate left that passes the test) is
    /// skipped whole: its cells would all come out empty.
    fn cells(
        &mut self,
        rect: &Bounds,
        depth: u8,
        keep: &mut dyn FnMut(&'c str, &'c Item) -> Result<Flow, CmdError>,
    ) -> Result<Flow, CmdError> {
        let Some((id, item)) = self.first(rect)? else {
            return Ok(Flow::Go);
        };
        if depth == 0 {
            self.kept.insert(id);
            return keep(id, item);
        }
        for q in quarters(rect) {
            if self.cells(&q, depth - 1, keep)? == Flow::Done {
                return Ok(Flow::Done);
            }
        }
        Ok(Flow::Go)
    }
}

/// Walks the `4^spread` cells of `rect` over the live objects of `c` at
/// `now`, handing each cell's object (see the module) to `keep` until it
/// says [`Flow::Done`].
///
/// # Errors
///
/// `keep`'s error, or [`timed_out`] once `deadline` has passed.
pub(crate) fn walk<'c>(
    c: &'c Collection,
    rect: &Bounds,
    spread: u8,
    now: i64,
    deadline: Option<Instant>,
    test: &dyn Fn(&Item) -> bool,
    keep: &mut dyn FnMut(&'c str, &'c Item) -> Result<Flow, CmdError>,
) -> Result<(), CmdError> {
    let mut w = Walk {
        c,
        now,
        deadline,
        test,
        kept: HashSet::new(),
        seen: 0,
    };
    w.cells(rect, spread.min(MAX_SPREAD), keep)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use geohook_db::{Database, Object, SetCondition};

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

    fn kept(db: &Database, rect: &Bounds, spread: u8, area: &Area, within: bool) -> Vec<String> {
        let c = db.collection("k").unwrap();
        let test = |i: &Item| {
            if within {
                i.object().within(area)
            } else {
                i.object().intersects(area)
            }
        };
        let mut out = Vec::new();
        walk(c, rect, spread, NOW, None, &test, &mut |id, _| {
            out.push(id.to_owned());
            Ok(Flow::Go)
        })
        .unwrap();
        out
    }

    #[test]
    fn spreads_read_as_tile38_reads_them() {
        for good in ["1", "2", "16", "016"] {
            assert!(spread(good.as_bytes()).is_ok(), "{good}");
        }
        for bad in ["0", "17", "255", "256", "-1", "+1", "1.0", "", "x", " 1"] {
            assert_eq!(
                spread(bad.as_bytes()).unwrap_err().to_string(),
                format!("invalid argument '{bad}'")
            );
        }
    }

    #[test]
    fn quarters_go_north_west_north_east_south_west_south_east() {
        let b = Bounds::new(0.0, 0.0, 2.0, 4.0).unwrap();
        let q: Vec<(f64, f64, f64, f64)> = quarters(&b)
            .iter()
            .map(|r| (r.sw.lat, r.sw.lon, r.ne.lat, r.ne.lon))
            .collect();
        assert_eq!(
            q,
            [
                (1.0, 0.0, 2.0, 2.0),
                (1.0, 2.0, 2.0, 4.0),
                (0.0, 0.0, 1.0, 2.0),
                (0.0, 2.0, 1.0, 4.0)
            ]
        );
    }

    /// Tile38's collection test for SPARSE: 10,000 random points in a
    /// rectangle give one object per cell, 4, 16 and 64 of them.
    #[test]
    fn a_filled_area_gives_one_object_per_cell() {
        let rect = Bounds::new(42.4586739, -71.598930, 42.607937, -71.37302).unwrap();
        let mut db = Database::new();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1_000_000) as f64 / 1_000_000.0
        };
        for i in 0..10_000 {
            let lat = rect.sw.lat + (rect.ne.lat - rect.sw.lat) * next();
            let lon = rect.sw.lon + (rect.ne.lon - rect.sw.lon) * next();
            put(&mut db, &i.to_string(), point(lat, lon));
        }
        let area = Area::Bounds(rect);
        for (spread, n) in [(1, 4), (2, 16), (3, 64)] {
            for within in [true, false] {
                let got = kept(&db, &rect, spread, &area, within);
                assert_eq!(got.len(), n, "spread {spread} within {within}");
                let unique: HashSet<&String> = got.iter().collect();
                assert_eq!(unique.len(), n);
            }
        }
        // Stopping early stops the walk (Tile38: 31 of 64 when the
        // iterator says stop after 30).
        let c = db.collection("k").unwrap();
        let mut n = 0;
        walk(c, &rect, 3, NOW, None, &|_| true, &mut |_, _| {
            n += 1;
            Ok(if n <= 30 { Flow::Go } else { Flow::Done })
        })
        .unwrap();
        assert_eq!(n, 31);
    }

    #[test]
    fn each_cell_keeps_its_first_object_in_cell_order() {
        // One point per quarter of [0,0]-[2,2], plus a second in the
        // south-east quarter.
        let mut db = Database::new();
        put(&mut db, "se", point(0.5, 1.5));
        put(&mut db, "se2", point(0.25, 1.75));
        put(&mut db, "nw", point(1.5, 0.5));
        put(&mut db, "sw", point(0.5, 0.5));
        put(&mut db, "ne", point(1.5, 1.5));
        let rect = Bounds::new(0.0, 0.0, 2.0, 2.0).unwrap();
        let area = Area::Bounds(rect);
        let got = kept(&db, &rect, 1, &area, true);
        assert_eq!(got.len(), 4);
        assert_eq!(&got[..3], ["nw", "ne", "sw"]);
        assert!(got[3] == "se" || got[3] == "se2", "{got:?}");
        // With two levels the south-east points fall in different cells.
        let got = kept(&db, &rect, 2, &area, true);
        assert_eq!(got.len(), 5, "{got:?}");
    }

    #[test]
    fn an_object_over_many_cells_is_kept_once_and_the_test_is_the_areas() {
        let mut db = Database::new();
        // A box across the whole area, and a point inside it.
        let wide = Bounds::new(0.1, 0.1, 1.9, 1.9).unwrap();
        put(&mut db, "wide", Object::Bounds(Box::new(wide)));
        put(&mut db, "p", point(0.5, 0.5));
        // A point in the rectangle but outside the circle drawn in it.
        put(&mut db, "corner", point(0.01, 0.01));
        let rect = Bounds::new(0.0, 0.0, 2.0, 2.0).unwrap();
        let got = kept(&db, &rect, 2, &Area::Bounds(rect), false);
        assert_eq!(got.iter().filter(|id| *id == "wide").count(), 1);
        assert!(got.contains(&"p".to_owned()) && got.contains(&"corner".to_owned()));
        let circle = Area::circle(Point::new(1.0, 1.0).unwrap(), 100_000.0).unwrap();
        let got = kept(&db, &rect, 2, &circle, false);
        assert!(!got.contains(&"corner".to_owned()), "{got:?}");
    }

    #[test]
    fn the_largest_spread_is_bounded_by_the_objects_not_the_cells() {
        // 4^16 cells would never end; the walk skips the empty ones.
        let mut db = Database::new();
        for i in 0..200 {
            put(
                &mut db,
                &format!("p{i}"),
                point(i as f64 / 100.0, i as f64 / 100.0),
            );
        }
        let rect = Bounds::new(0.0, 0.0, 2.0, 2.0).unwrap();
        let got = kept(&db, &rect, MAX_SPREAD, &Area::Bounds(rect), true);
        assert_eq!(got.len(), 200);
    }

    #[test]
    fn a_walk_stops_at_its_deadline() {
        let mut db = Database::new();
        // Two thousand points apart from each other: tens of thousands of
        // rectangles to visit at the largest spread.
        for i in 0..2000 {
            let (lat, lon) = ((i % 50) as f64 * 0.04, (i / 50) as f64 * 0.04);
            put(&mut db, &format!("p{i}"), point(lat, lon));
        }
        let rect = Bounds::new(0.0, 0.0, 2.0, 2.0).unwrap();
        let c = db.collection("k").unwrap();
        let r = walk(
            c,
            &rect,
            MAX_SPREAD,
            NOW,
            Some(Instant::now()),
            &|_| true,
            &mut |_, _| Ok(Flow::Go),
        );
        assert_eq!(r.unwrap_err().to_string(), timed_out().to_string());
    }
}
