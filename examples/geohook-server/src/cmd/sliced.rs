//! Long searches walked in bounded slices, letting the database lock go
//! between them, so that a search never holds up a writer (and, behind a
//! waiting writer, every other reader) for longer than one slice.
//!
//! A slice is at most [`SLICE`] candidates, read under one read lock; the
//! lock is then released with a fair unlock, which hands it to a waiting
//! writer first, and taken again for the next slice. A slice also ends
//! early, at the first point the walk can resume from, as soon as a writer
//! waits for the lock ([`writer_waits`]) once it has read
//! [`WRITER_FLOOR`] candidates, so that a write waits for about one
//! candidate rather than the rest of a slice; an area range that a
//! writer interrupts is given up (the visitor rolls back) and tried again
//! half as wide. Between slices the walk keeps no reference into the
//! database, only where to resume:
//!
//! - **Id order** (SCAN): after the last id seen (before it, descending).
//! - **Area** (WITHIN, INTERSECTS): longitude ranges of the area's bounding
//!   box, west to east, each candidate belonging to exactly one range by its
//!   own position ([`geohook_db::Collection::area_part`]). The first
//!   range's width is a guess from the objects' spread
//!   ([`geohook_db::Collection::spread_estimate`]): the whole area when that
//!   puts a slice or fewer in it. A range's width then
//!   adapts to the candidates the last one held; a range that turns out to
//!   hold more than twice a slice is given up (the visitor rolls back) and
//!   tried again a quarter as wide, so a slice stays bounded however the
//!   objects cluster, down to a width of [`MIN_WIDTH`] degrees.
//! - **Distance** (NEARBY): nearest first, ties by id, resuming beyond the
//!   last distance seen ([`geohook_db::Collection::nearest_after`]), so a
//!   slice is the next [`SLICE`] candidates in the order of the walk under
//!   one lock, with the same distances. A slice that ends inside a run of
//!   candidates at one distance goes on to the end of the run (objects
//!   piled on one spot are walked together, however many), because the
//!   walk resumes by distance alone. With a radius the walk ends there;
//!   without one it goes on until the page is full or the collection is
//!   exhausted.
//! - **Value** (SEARCH): string objects by value then id (both descending
//!   with DESC), in passes. A pass reads the whole collection in id order,
//!   a slice at a time, and keeps copies of the first strings after the
//!   last (value, id) the walk has given, at most [`PASS_SLICES`] slices of
//!   them and [`PASS_BYTES`] bytes (one at least); once the pass has read
//!   the last id they are handed to the visitor in order, with the lock let
//!   go, and the next pass resumes after the last of them. A walk of `n`
//!   objects giving `k` strings takes about `k / (PASS_SLICES * SLICE)`
//!   passes of `n` each; a COUNT of every match needs no order and is one
//!   id walk.
//!
//! **What a sliced walk sees of writes made during it.** Like Redis's SCAN
//! (and unlike Tile38, which walks under its lock and so sees none):
//! - an object that is present and unchanged for the whole walk is visited
//!   exactly once;
//! - an object added, removed or changed during the walk may be visited or
//!   not, in its old state or its new one, and an object that moves across
//!   the walk's front (a SET to a new position) may be visited twice or not
//!   at all;
//! - when the key disappears during the walk (DROP, FLUSHDB, RENAME away, or
//!   its last object deleted), the walk ends there with what it has;
//! - when any key is renamed during the walk and the key still exists, the
//!   walk cannot tell whether its collection was replaced, and fails with
//!   [`moved`] rather than mix two collections;
//! - in a NEARBY the front is a distance: an object moved from beyond the
//!   front to nearer than it (or added there) is not seen, one moved from
//!   behind the front to beyond it is seen twice, once at each distance,
//!   and the page stays in distance order only for what was not moved
//!   meanwhile;
//! - in a SEARCH the front is a (value, id): a string whose value changes
//!   from beyond it to behind it is not seen, one whose value changes from
//!   behind to beyond is seen twice; within one pass a string is copied in
//!   the state its slice saw, and an object added or changed behind the
//!   pass's id front is missed by that pass (and by the walk, if the pass
//!   gives strings beyond its value);
//! - a cursor counts the candidates of this walk, so paging with the
//!   returned cursors visits every object once while the collection does
//!   not change, as before.
//!
//! The deadline of a `TIMEOUT` is checked between slices and every
//! [`CHECK_EVERY`] candidates within one.

use std::time::Instant;

use geohook_db::{Area, Bounds, Collection, Database, Item, Point};
use parking_lot::{RwLock, RwLockReadGuard};

use crate::cmd::ctx::{timed_out, CmdError};

/// Most candidates read under one read lock.
pub(crate) const SLICE: usize = 1024;
/// The slice length the walks use: [`SLICE`], or in unit tests what the
/// test set with [`set_slice`], so that small collections cross many slice
/// boundaries.
pub(crate) fn slice() -> usize {
    #[cfg(test)]
    {
        TEST_SLICE.with(std::cell::Cell::get)
    }
    #[cfg(not(test))]
    {
        SLICE
    }
}

#[cfg(test)]
thread_local! {
    static TEST_SLICE: std::cell::Cell<usize> = const { std::cell::Cell::new(SLICE) };
}

/// Sets this thread's slice length (unit tests only).
#[cfg(test)]
pub(crate) fn set_slice(n: usize) {
    TEST_SLICE.with(|c| c.set(n));
}

/// A slice checks the deadline after this many candidates.
pub(crate) const CHECK_EVERY: usize = 256;
/// An area range narrower than this (in degrees of longitude, about 11 m at
/// the equator, where stored positions are still told apart) is walked
/// whole, however many candidates it holds.
pub(crate) const MIN_WIDTH: f64 = 1e-4;

/// What a visitor says after a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Go on walking.
    Go,
    /// The walk is over (the page is full, or nothing further can match).
    Done,
}

/// The order a walk goes in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Order<'a> {
    /// Id order, descending with `desc`.
    Ids { desc: bool },
    /// The candidates of an area, by longitude range.
    Area(&'a Area),
    /// Nearest first from a point, within a radius in meters when given.
    Nearby(&'a Point, Option<f64>),
    /// String objects by value then id, descending with `desc` (SEARCH).
    Values { desc: bool },
}

/// Most bytes of string objects (values, ids and a share for fields) a
/// SEARCH pass keeps copies of, besides the one it always keeps.
pub(crate) const PASS_BYTES: usize = 16 << 20;
/// Most string objects a SEARCH pass keeps, in slices: a pass reads the
/// whole collection, so the more it keeps the fewer passes a long SEARCH
/// takes, while what one slice holds the lock for stays one slice.
pub(crate) const PASS_SLICES: usize = 64;

/// A string object a SEARCH pass keeps: a copy, ordered by value then id
/// (reversed with `desc`).
struct Kept {
    id: Box<str>,
    item: Item,
    desc: bool,
}

impl Kept {
    fn key(&self) -> (&str, &str) {
        (value(&self.item), &self.id)
    }

    /// Bytes the copy holds, as [`PASS_BYTES`] counts them.
    fn bytes(&self) -> usize {
        self.id.len() + value(&self.item).len() + 64 * (1 + self.item.fields().len())
    }
}

/// The value of a string object ("" for any other).
fn value(item: &Item) -> &str {
    match item.object() {
        geohook_db::Object::String(v) => v,
        _ => "",
    }
}

/// `a` against `b` in the walk's order of (value, id).
fn value_order(a: (&str, &str), b: (&str, &str), desc: bool) -> std::cmp::Ordering {
    let o = a.cmp(&b);
    if desc {
        o.reverse()
    } else {
        o
    }
}

impl PartialEq for Kept {
    fn eq(&self, o: &Self) -> bool {
        self.key() == o.key()
    }
}
impl Eq for Kept {}
impl PartialOrd for Kept {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Kept {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        value_order(self.key(), o.key(), self.desc)
    }
}

/// What a sliced walk hands each candidate to. The visitor owns what it
/// keeps (it sees a candidate only while the lock is held).
pub(crate) trait Visitor {
    /// A state to go back to ([`Visitor::rollback`]).
    type Mark: Copy;
    /// Takes one live candidate, with its distance in meters in a NEARBY.
    ///
    /// # Errors
    ///
    /// Ends the walk with this error (a reply too large, say).
    fn visit(&mut self, id: &str, item: &Item, distance: Option<f64>) -> Result<Flow, CmdError>;
    /// The state now.
    fn mark(&self) -> Self::Mark;
    /// Forgets every candidate visited since `mark`.
    fn rollback(&mut self, mark: Self::Mark);
}

/// The error of a walk whose key may have been replaced by a RENAME.
pub(crate) fn moved() -> CmdError {
    CmdError::Msg("a key was renamed during the search: retry it".into())
}

/// Whether a writer waits for `lock`, asked by a thread that holds a read
/// guard of it. parking_lot's writer claims the lock's exclusive bit first
/// and only then waits for the readers inside to leave, and no writer can
/// hold the lock while a read guard lives, so the bit set means exactly
/// that a writer is waiting (and, the lock being fair, every reader that
/// comes after it waits too).
pub(crate) fn writer_waits<T>(lock: &RwLock<T>) -> bool {
    lock.is_locked_exclusive()
}

/// The fewest candidates a slice reads before a waiting writer ends it, so
/// that a stream of writers, each arriving as the last one leaves, cannot
/// make a walk pay a round of the lock for every candidate.
pub(crate) const WRITER_FLOOR: usize = 32;

/// Whether the slice that has read `n` candidates ends now for a writer.
pub(crate) fn yields<T>(lock: &RwLock<T>, n: usize) -> bool {
    n >= WRITER_FLOOR && writer_waits(lock)
}

fn check(deadline: Option<Instant>) -> Result<(), CmdError> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(timed_out()),
        _ => Ok(()),
    }
}

/// The width in degrees of longitude of an area walk's first range over
/// `c`, for an area bounded by `b`: infinite (one range, the whole area)
/// when the objects, assumed spread evenly over the box that holds them
/// all, put `slice` or fewer in the area. A cluster makes the range
/// crowded, and the walk tries it again narrower; sparse ranges widen the
/// next.
pub(crate) fn first_width(c: &Collection, b: &Bounds, now: i64, slice: usize) -> f64 {
    let (west, east) = (b.sw.lon.max(-180.0), b.ne.lon.min(180.0));
    let expect = c.spread_estimate(b).min(c.len(now));
    if expect <= slice || east <= west {
        f64::INFINITY
    } else {
        (east - west) * slice as f64 / expect as f64
    }
}

/// Walks the collection at `key` in `order`, in slices under `lock` (the
/// database seen through `view`), handing every live candidate to `v`
/// until it says [`Flow::Done`] or the candidates end.
///
/// # Errors
///
/// The visitor's error, [`timed_out`] once `deadline` has passed, or
/// [`moved`].
pub(crate) fn walk<T, V: Visitor>(
    lock: &RwLock<T>,
    view: impl Fn(&T) -> &Database,
    key: &str,
    order: Order<'_>,
    now: i64,
    deadline: Option<Instant>,
    v: &mut V,
) -> Result<(), CmdError> {
    // A heavy thread keeps one turn for the whole walk (`crate::boost`).
    let _turn = crate::boost::Turn::hold();
    let slice = slice();
    let mut moves = None;
    // Where the next slice starts: the last id seen, or the next range.
    let mut last: Option<Box<str>> = None;
    let mut from = f64::NEG_INFINITY;
    let mut width: Option<f64> = None;
    let mut beyond: Option<f64> = None;
    // A SEARCH pass: the first strings after `after` in the walk's order,
    // every one below `cap` among those seen so far.
    let mut kept: std::collections::BinaryHeap<Kept> = std::collections::BinaryHeap::new();
    let mut kept_bytes = 0;
    let mut cap: Option<Kept> = None;
    let mut after: Option<Kept> = None;
    let mut pending: Option<Vec<Kept>> = None;
    loop {
        check(deadline)?;
        // Before the guard, so dropped after it (`crate::boost`): between
        // slices a heavy thread is back at its own low priority.
        let boost = crate::boost::Boost::hold();
        let guard = lock.read();
        let db = view(&guard);
        let Some(c) = db.collection(key) else {
            return Ok(());
        };
        if *moves.get_or_insert(db.moves()) != db.moves() {
            return Err(moved());
        }
        let mut n = 0;
        match order {
            Order::Ids { desc } => {
                let mut ended = true;
                for (id, item) in c.ids_from(last.as_deref(), desc, now) {
                    n += 1;
                    if n % CHECK_EVERY == 0 {
                        check(deadline)?;
                    }
                    if v.visit(id, item, None)? == Flow::Done {
                        return Ok(());
                    }
                    if n == slice || yields(lock, n) {
                        last = Some(id.into());
                        ended = false;
                        break;
                    }
                }
                if ended {
                    return Ok(());
                }
            }
            Order::Area(area) => {
                let Some(b) = area.bounds() else {
                    return Ok(());
                };
                let (west, east) = (b.sw.lon.max(-180.0), b.ne.lon.min(180.0));
                let w = *width.get_or_insert_with(|| first_width(c, &b, now, slice));
                let start = from.max(west);
                let end = if start + w >= east {
                    f64::INFINITY
                } else {
                    start + w
                };
                let splits = end.min(east) - start > MIN_WIDTH;
                let mark = v.mark();
                let mut crowded = false;
                let mut interrupted = false;
                for (id, item) in c.area_part(area, from..end, now) {
                    n += 1;
                    if n % CHECK_EVERY == 0 {
                        check(deadline)?;
                    }
                    if n > 2 * slice && splits {
                        crowded = true;
                        break;
                    }
                    // A range cannot be resumed halfway: it is given up for
                    // the writer and tried again narrower, so that it ends
                    // sooner. A range too narrow to split is walked whole,
                    // so the walk always moves on.
                    if splits && yields(lock, n) {
                        interrupted = true;
                        break;
                    }
                    if v.visit(id, item, None)? == Flow::Done {
                        return Ok(());
                    }
                }
                if crowded {
                    v.rollback(mark);
                    width = Some((end.min(east) - start) / 4.0);
                } else if interrupted {
                    v.rollback(mark);
                    width = Some((end.min(east) - start) / 2.0);
                } else if end == f64::INFINITY {
                    return Ok(());
                } else {
                    from = end;
                    width = Some(w * (slice as f64 / n.max(1) as f64).clamp(0.25, 4.0));
                }
            }
            Order::Values { desc } => {
                let mut ended = true;
                for (id, item) in c.ids_from(last.as_deref(), false, now) {
                    n += 1;
                    if n % CHECK_EVERY == 0 {
                        check(deadline)?;
                    }
                    if n == slice || yields(lock, n) {
                        last = Some(id.into());
                        ended = false;
                    }
                    if matches!(item.object(), geohook_db::Object::String(_)) {
                        let k = (value(item), id);
                        let behind = after
                            .as_ref()
                            .is_some_and(|a| value_order(k, a.key(), desc).is_le());
                        let beyond_cap = cap
                            .as_ref()
                            .is_some_and(|c| value_order(k, c.key(), desc).is_ge());
                        if !behind && !beyond_cap {
                            let copy = Kept {
                                id: id.into(),
                                item: item.clone(),
                                desc,
                            };
                            kept_bytes += copy.bytes();
                            kept.push(copy);
                            // The largest copies go while there are too
                            // many, and nothing larger is taken after.
                            while kept.len() > PASS_SLICES * slice
                                || (kept_bytes > PASS_BYTES && kept.len() > 1)
                            {
                                let out = kept.pop().expect("more than one kept");
                                kept_bytes -= out.bytes();
                                cap = Some(out);
                            }
                        }
                    }
                    if !ended {
                        break;
                    }
                }
                if ended {
                    // The pass is over: what it kept is the next part of
                    // the walk, visited once the lock is let go.
                    pending = Some(std::mem::take(&mut kept).into_sorted_vec());
                    kept_bytes = 0;
                    last = None;
                }
            }
            Order::Nearby(center, meters) => {
                let mut it = c.nearest_after(center, meters, beyond, now).peekable();
                let mut ended = true;
                while let Some((id, item, d)) = it.next() {
                    n += 1;
                    if n % CHECK_EVERY == 0 {
                        check(deadline)?;
                    }
                    if v.visit(id, item, Some(d))? == Flow::Done {
                        return Ok(());
                    }
                    // The next slice starts beyond this distance, so the
                    // run of candidates at it is finished here.
                    if (n >= slice || yields(lock, n)) && it.peek().is_none_or(|next| next.2 != d) {
                        beyond = Some(d);
                        ended = it.peek().is_none();
                        break;
                    }
                }
                if ended {
                    return Ok(());
                }
            }
        }
        RwLockReadGuard::unlock_fair(guard);
        drop(boost);
        if let Some(part) = pending.take() {
            for (i, k) in part.iter().enumerate() {
                if (i + 1) % CHECK_EVERY == 0 {
                    check(deadline)?;
                }
                if v.visit(&k.id, &k.item, None)? == Flow::Done {
                    return Ok(());
                }
            }
            // Nothing was left out: the walk is complete.
            if cap.take().is_none() {
                return Ok(());
            }
            after = part.into_iter().next_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geohook_db::{Bounds, Object, Point, SetCondition};

    const NOW: i64 = 1_700_000_000_000;

    /// Keeps the ids visited; rolls back by forgetting the last ones.
    #[derive(Default)]
    struct Tally {
        seen: Vec<String>,
        /// Every visit, rolled back or not.
        calls: usize,
    }

    impl Visitor for Tally {
        type Mark = usize;
        fn visit(&mut self, id: &str, _: &Item, _: Option<f64>) -> Result<Flow, CmdError> {
            self.calls += 1;
            self.seen.push(id.to_owned());
            Ok(Flow::Go)
        }
        fn mark(&self) -> usize {
            self.seen.len()
        }
        fn rollback(&mut self, mark: usize) {
            self.seen.truncate(mark);
        }
    }

    fn point(lat: f64, lon: f64) -> Object {
        Object::Point(Point::new(lat, lon).unwrap())
    }

    fn filled(n: usize) -> Database {
        let mut db = Database::new();
        for i in 0..n {
            let (lat, lon) = ((i % 97) as f64 / 10.0, (i % 101) as f64 / 10.0);
            db.set(
                "k",
                &format!("id{i:05}"),
                point(lat, lon),
                &[] as &[(&str, f64)],
                None,
                SetCondition::Always,
                NOW,
            )
            .unwrap();
        }
        db
    }

    #[test]
    fn a_sliced_area_walk_visits_what_one_walk_does_once_each() {
        // A crowd on one longitude forces the narrowing; the rest spreads.
        let mut db = filled(5 * SLICE);
        for i in 0..3 * SLICE {
            let o = point((i % 50) as f64 / 10.0, 3.3 + (i % 7) as f64 * 1e-6);
            db.set(
                "k",
                &format!("c{i}"),
                o,
                &[] as &[(&str, f64)],
                None,
                SetCondition::Always,
                NOW,
            )
            .unwrap();
        }
        let area = Area::Bounds(Bounds::new(0.0, 0.0, 10.0, 10.0).unwrap());
        let lock = RwLock::new(db);
        let mut t = Tally::default();
        walk(&lock, |d| d, "k", Order::Area(&area), NOW, None, &mut t).unwrap();
        let db = lock.read();
        let mut want: Vec<String> = db
            .within("k", &area, &Default::default(), NOW)
            .hits
            .iter()
            .map(|h| h.id.to_owned())
            .collect();
        want.sort();
        let mut got = t.seen.clone();
        got.sort();
        assert_eq!(got, want);
        assert!(t.calls > t.seen.len(), "the crowded range was rolled back");
    }

    /// Signals a writer halfway through the first slice and waits until it
    /// waits for the lock, so that it writes right after that slice.
    struct Halfway<'l> {
        lock: &'l RwLock<Database>,
        go: Option<std::sync::mpsc::Sender<()>>,
        n: usize,
    }

    /// Spins until a writer waits for (or holds) the lock, which a test's
    /// visitor asked for, for at most a minute.
    fn wait_for_writer(lock: &RwLock<Database>) {
        let give_up = Instant::now() + std::time::Duration::from_secs(60);
        while !writer_waits(lock) {
            assert!(Instant::now() < give_up, "the writer never came");
            std::thread::yield_now();
        }
    }

    impl Visitor for Halfway<'_> {
        type Mark = usize;
        fn visit(&mut self, _: &str, _: &Item, _: Option<f64>) -> Result<Flow, CmdError> {
            self.n += 1;
            if self.n == SLICE / 2 {
                if let Some(go) = self.go.take() {
                    go.send(()).unwrap();
                    wait_for_writer(self.lock);
                }
            }
            Ok(Flow::Go)
        }
        fn mark(&self) -> usize {
            self.n
        }
        fn rollback(&mut self, mark: usize) {
            self.n = mark;
        }
    }

    #[test]
    fn a_walk_ends_when_its_key_goes_and_fails_when_a_key_was_renamed() {
        let world = Area::Bounds(Bounds::new(-90.0, -180.0, 90.0, 180.0).unwrap());
        let here = Point::new(5.0, 5.0).unwrap();
        for what in ["drop", "flush", "rename", "delete all"] {
            for order in [
                Order::Ids { desc: false },
                Order::Ids { desc: true },
                Order::Area(&world),
                Order::Nearby(&here, None),
            ] {
                let lock = RwLock::new(filled(4 * SLICE));
                let (tx, rx) = std::sync::mpsc::channel();
                let mut v = Halfway {
                    lock: &lock,
                    go: Some(tx),
                    n: 0,
                };
                let shared = &lock;
                let r = std::thread::scope(|scope| {
                    scope.spawn(move || {
                        rx.recv().unwrap();
                        let mut db = shared.write();
                        match what {
                            "drop" => {
                                db.drop_key("k");
                            }
                            "flush" => db.flushdb(),
                            "rename" => {
                                // Away and back: the key holds the same
                                // collection, but the walk cannot know.
                                db.rename_key("k", "k2");
                                db.rename_key("k2", "k");
                            }
                            _ => {
                                db.pdel("k", "*", NOW);
                            }
                        }
                    });
                    walk(&lock, |d| d, "k", order, NOW, None, &mut v)
                });
                match what {
                    "rename" => assert_eq!(r.unwrap_err().to_string(), moved().to_string()),
                    _ => r.unwrap(),
                }
                // The walk stopped right after its first slice.
                assert!(v.n <= 2 * SLICE, "{what} {order:?}: {}", v.n);
            }
        }
    }

    /// Asks a writer for the lock every `every` visits (rolled back or not)
    /// and waits until it waits, so that the walk meets a waiting writer at
    /// known candidates.
    struct Interrupting<'l> {
        lock: &'l RwLock<Database>,
        ask: std::sync::mpsc::Sender<()>,
        every: usize,
        calls: &'l std::sync::atomic::AtomicUsize,
        seen: Vec<String>,
    }

    impl Visitor for Interrupting<'_> {
        type Mark = usize;
        fn visit(&mut self, id: &str, _: &Item, _: Option<f64>) -> Result<Flow, CmdError> {
            let calls = 1 + self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.seen.push(id.to_owned());
            if calls.is_multiple_of(self.every) {
                self.ask.send(()).unwrap();
                wait_for_writer(self.lock);
            }
            Ok(Flow::Go)
        }
        fn mark(&self) -> usize {
            self.seen.len()
        }
        fn rollback(&mut self, mark: usize) {
            self.seen.truncate(mark);
        }
    }

    #[test]
    fn a_waiting_writer_ends_a_slice_at_the_next_candidate() {
        let world = Area::Bounds(Bounds::new(-90.0, -180.0, 90.0, 180.0).unwrap());
        let here = Point::new(5.03, 5.07).unwrap();
        for (every, order) in [
            (100, Order::Ids { desc: false }),
            (100, Order::Ids { desc: true }),
            (100, Order::Nearby(&here, None)),
            (100, Order::Area(&world)),
            // Below the floor: each slice still reads WRITER_FLOOR.
            (10, Order::Ids { desc: false }),
        ] {
            let lock = RwLock::new(filled(4 * SLICE));
            let calls = std::sync::atomic::AtomicUsize::new(0);
            let (ask, asked) = std::sync::mpsc::channel::<()>();
            let mut v = Interrupting {
                lock: &lock,
                ask,
                every,
                calls: &calls,
                seen: Vec::new(),
            };
            // The visits counted when each write got the lock, and the
            // visitor's ids.
            let (at, seen) = std::thread::scope(|scope| {
                let (lock, calls) = (&lock, &calls);
                let writer = scope.spawn(move || {
                    let mut at = Vec::new();
                    for () in asked {
                        let _db = lock.write();
                        at.push(calls.load(std::sync::atomic::Ordering::SeqCst));
                    }
                    at
                });
                walk(lock, |d| d, "k", order, NOW, None, &mut v).unwrap();
                let Interrupting { ask, seen, .. } = v;
                drop(ask);
                (writer.join().unwrap(), seen)
            });
            // Without the early end a writer would wait for the rest of a
            // slice of SLICE candidates; here the first one waits for none
            // past the floor.
            let first = every.max(WRITER_FLOOR);
            assert_eq!(at.first(), Some(&first), "{order:?}");
            if !matches!(order, Order::Area(_)) && every >= WRITER_FLOOR {
                let want: Vec<usize> = (1..=at.len()).map(|i| i * every).collect();
                assert_eq!(at, want, "{order:?}: every write right after its candidate");
            }
            // Every object is still visited exactly once.
            let mut got = seen;
            got.sort();
            let mut want: Vec<String> = (0..4 * SLICE).map(|i| format!("id{i:05}")).collect();
            want.sort();
            assert_eq!(got, want, "{order:?}");
        }
    }

    #[test]
    fn a_walk_stops_at_its_deadline() {
        let lock = RwLock::new(filled(4 * SLICE));
        let mut t = Tally::default();
        let past = Some(Instant::now());
        let r = walk(
            &lock,
            |d| d,
            "k",
            Order::Ids { desc: false },
            NOW,
            past,
            &mut t,
        );
        assert_eq!(r.unwrap_err().to_string(), timed_out().to_string());
        assert!(t.seen.len() < SLICE, "cut within the first slice");
    }
}
