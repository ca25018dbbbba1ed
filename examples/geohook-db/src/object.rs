//! Stored objects, query areas, and the predicates between them.

use std::sync::Arc;

use geo::{Covers, HaversineClosestPoint, Intersects};

use crate::error::{Error, Result};
use crate::geom::{circle_bounds, Bounds, DistanceFrom, GeoJson, Point};
use crate::segments;

/// A value stored under an id: one of Tile38's object kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// `SET … POINT lat lon [z]` (and `HASH`, which stores the cell's centre).
    Point(Point),
    /// `SET … BOUNDS minlat minlon maxlat maxlon`; boxed to keep every item small.
    Bounds(Box<Bounds>),
    /// `SET … OBJECT geojson`; shared, so that reads and fences never copy the JSON.
    Geometry(Arc<GeoJson>),
    /// `SET … STRING value`: not spatial, never found by a spatial search.
    String(Box<str>),
}

impl Object {
    /// Parses a GeoJSON document into an object.
    ///
    /// # Errors
    /// [`Error::InvalidGeoJson`] as [`GeoJson::parse`] reports it.
    pub fn from_geojson(text: &str) -> Result<Self> {
        Ok(Object::Geometry(Arc::new(GeoJson::parse(text)?)))
    }

    /// Parses a GeoJSON document into an object, keeping positions outside
    /// the lat/lon range as Tile38 does by default
    /// ([`GeoJson::parse_any_range`]).
    ///
    /// # Errors
    /// [`Error::InvalidGeoJson`] as [`GeoJson::parse_any_range`] reports it.
    pub fn from_geojson_any_range(text: &str) -> Result<Self> {
        Ok(Object::Geometry(Arc::new(GeoJson::parse_any_range(text)?)))
    }

    /// The point object for a geohash (its cell's centre), as Tile38's `HASH` input.
    ///
    /// # Errors
    /// [`Error::InvalidGeohash`].
    pub fn from_geohash(hash: &str) -> Result<Self> {
        Ok(Object::Point(Point::from_geohash(hash)?))
    }

    /// True for every kind except [`Object::String`].
    pub fn is_spatial(&self) -> bool {
        !matches!(self, Object::String(_))
    }

    /// The centre: the point itself, the middle of a bounds, the middle of a
    /// geometry's bounding rectangle (or the point of a GeoJSON Point). `None` for
    /// strings.
    pub fn center(&self) -> Option<Point> {
        match self {
            Object::Point(p) => Some(*p),
            Object::Bounds(b) => Some(b.center()),
            Object::Geometry(g) => Some(g.as_point().unwrap_or_else(|| g.bounds().center())),
            Object::String(_) => None,
        }
    }

    /// The bounding rectangle; `None` for strings.
    pub fn bounds(&self) -> Option<Bounds> {
        match self {
            Object::Point(p) => Some(Bounds {
                sw: Point { z: None, ..*p },
                ne: Point { z: None, ..*p },
            }),
            Object::Bounds(b) => Some(**b),
            Object::Geometry(g) => Some(g.bounds()),
            Object::String(_) => None,
        }
    }

    /// Number of positions, as Tile38's STATS `num_points` counts them: 1 for a
    /// point, 2 for bounds, every position of a geometry, 0 for a string.
    pub fn num_points(&self) -> usize {
        match self {
            Object::Point(_) => 1,
            Object::Bounds(_) => 2,
            Object::Geometry(g) => g.num_points(),
            Object::String(_) => 0,
        }
    }

    /// True when the object lies completely inside the area, edges included
    /// (Tile38 WITHIN). Strings are never within anything.
    pub fn within(&self, area: &Area) -> bool {
        let Some(shape) = Shape::of(self) else {
            return false;
        };
        match area {
            Area::Circle { center, meters } => shape.within_circle(center, *meters),
            _ => match area.shape() {
                Some(outer) => covers(&outer, &shape),
                None => false,
            },
        }
    }

    /// True when the object and the area share at least one point (Tile38
    /// INTERSECTS). Strings intersect nothing.
    pub fn intersects(&self, area: &Area) -> bool {
        let Some(shape) = Shape::of(self) else {
            return false;
        };
        match area {
            Area::Circle { center, meters } => shape.distance_to(center) <= *meters,
            _ => match area.shape() {
                Some(other) => intersects(&shape, &other),
                None => false,
            },
        }
    }

    /// Distance in meters from `p` to the nearest point of the object (haversine,
    /// 0 when `p` is inside it); `None` for strings. For a point object this is the
    /// plain point-to-point distance that Tile38's NEARBY reports.
    pub fn distance_to(&self, p: &Point) -> Option<f64> {
        Shape::of(self).map(|s| s.distance_to(p))
    }

    /// The geohash of the object's centre with `precision` characters.
    ///
    /// # Errors
    /// [`Error::InvalidPrecision`] outside 1..=12; [`Error::InvalidCoordinates`]
    /// for a string object, which has no position.
    pub fn geohash(&self, precision: usize) -> Result<String> {
        match self.center() {
            Some(c) => c.geohash(precision),
            None => Err(Error::InvalidCoordinates {
                lat: f64::NAN,
                lon: f64::NAN,
            }),
        }
    }

    /// Appends the object's JSON: the client's own text for GeoJSON objects, a
    /// GeoJSON Point or Polygon for points and bounds, and a JSON string for
    /// strings (Tile38's `"object":"…"`).
    pub fn write_json(&self, out: &mut String) {
        match self {
            Object::Point(p) => p.write_json(out),
            Object::Bounds(b) => b.write_json(out),
            Object::Geometry(g) => out.push_str(g.as_str()),
            Object::String(s) => {
                // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
                out.push_str(&serde_json::Value::from(&**s).to_string());
            }
        }
    }

    /// The object's JSON as a new string; see [`Object::write_json`].
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }

    /// The text a RESP client sees for the object: the JSON of a spatial object
    /// and the raw value of a string (Tile38 replies the string itself).
    pub fn to_resp_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Object::Geometry(g) => std::borrow::Cow::Borrowed(g.as_str()),
            Object::String(s) => std::borrow::Cow::Borrowed(s),
            _ => std::borrow::Cow::Owned(self.to_json()),
        }
    }
}

/// A query area (WITHIN, INTERSECTS) or a fence (geohook-hooks).
///
/// `GET key id` areas are resolved by the caller: look the object up and wrap it in
/// [`Area::Object`].
#[derive(Debug, Clone, PartialEq)]
pub enum Area {
    /// A single position.
    Point(Point),
    /// Every position within `meters` of `center` (great-circle distance).
    Circle {
        /// Centre of the circle.
        center: Point,
        /// Radius in meters, finite and not negative.
        meters: f64,
    },
    /// A latitude/longitude rectangle.
    Bounds(Bounds),
    /// Any stored object used as an area; a string object matches nothing.
    Object(Object),
    /// A geohash cell.
    Hash(GeohashCell),
}

impl Area {
    /// `POINT lat lon [meters]`: a circle when a radius is given, else a point.
    ///
    /// # Errors
    /// [`Error::InvalidDistance`] for a negative or non-finite radius.
    pub fn point(center: Point, meters: Option<f64>) -> Result<Self> {
        match meters {
            Some(m) => Area::circle(center, m),
            None => Ok(Area::Point(center)),
        }
    }

    /// `CIRCLE lat lon meters`.
    ///
    /// # Errors
    /// [`Error::InvalidDistance`] for a negative or non-finite radius.
    pub fn circle(center: Point, meters: f64) -> Result<Self> {
        if !meters.is_finite() || meters < 0.0 {
            return Err(Error::InvalidDistance { meters });
        }
        Ok(Area::Circle { center, meters })
    }

    /// `HASH geohash`.
    ///
    /// # Errors
    /// [`Error::InvalidGeohash`].
    pub fn hash(hash: &str) -> Result<Self> {
        Ok(Area::Hash(GeohashCell::new(hash)?))
    }

    /// A rectangle containing the whole area (for R-tree candidate searches and
    /// for indexing fences); `None` for a string object.
    pub fn bounds(&self) -> Option<Bounds> {
        match self {
            Area::Point(p) => Object::Point(*p).bounds(),
            Area::Circle { center, meters } => Some(circle_bounds(center, *meters)),
            Area::Bounds(b) => Some(*b),
            Area::Object(o) => o.bounds(),
            Area::Hash(h) => Some(h.bounds),
        }
    }

    fn shape(&self) -> Option<Shape<'_>> {
        match self {
            Area::Point(p) => Some(Shape::Point(*p)),
            Area::Circle { .. } => None,
            Area::Bounds(b) => Some(Shape::Rect(*b)),
            Area::Object(o) => Shape::of(o),
            Area::Hash(h) => Some(Shape::Rect(h.bounds)),
        }
    }
}

/// A decoded geohash cell: the hash text and its rectangle.
#[derive(Debug, Clone, PartialEq)]
pub struct GeohashCell {
    hash: Box<str>,
    bounds: Bounds,
}

impl GeohashCell {
    /// Decodes a geohash.
    ///
    /// # Errors
    /// [`Error::InvalidGeohash`].
    pub fn new(hash: &str) -> Result<Self> {
        Ok(GeohashCell {
            bounds: Bounds::from_geohash(hash)?,
            hash: hash.into(),
        })
    }

    /// The geohash text.
    pub fn as_str(&self) -> &str {
        &self.hash
    }

    /// The cell's rectangle.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }
}

/// The geometric part of an object or area, borrowed, so that predicates never
/// copy a geometry.
/// An area made ready to test many objects against, as a search does its
/// candidates: a circle keeps its centre ready for the haversine, so that
/// a point object costs one cosine fewer. Its answers are
/// [`Object::within`]'s and [`Object::intersects`]'s, bit for bit.
#[derive(Debug, Clone, Copy)]
pub struct AreaTest<'a> {
    area: &'a Area,
    /// A circle's centre, ready, and its radius.
    circle: Option<(DistanceFrom, f64)>,
}

impl Area {
    /// This area made ready to test many objects against.
    pub fn test(&self) -> AreaTest<'_> {
        AreaTest {
            area: self,
            circle: match self {
                Area::Circle { center, meters } => {
                    Some((DistanceFrom::new(center.lat, center.lon), *meters))
                }
                _ => None,
            },
        }
    }
}

impl AreaTest<'_> {
    /// [`Object::within`] the area.
    pub fn within(&self, o: &Object) -> bool {
        match (&self.circle, o) {
            // What `Shape::within_circle` computes for a point.
            (Some((c, meters)), Object::Point(p)) => c.to(p.lat, p.lon) <= *meters,
            _ => o.within(self.area),
        }
    }

    /// [`Object::intersects`] the area.
    pub fn intersects(&self, o: &Object) -> bool {
        match (&self.circle, o) {
            // A point's distance to the centre, as `Shape::distance_to`.
            (Some((c, meters)), Object::Point(p)) => c.to(p.lat, p.lon) <= *meters,
            _ => o.intersects(self.area),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Shape<'a> {
    Point(Point),
    Rect(Bounds),
    /// A geometry, with the document it came from (which keeps its
    /// segment index).
    Geom(&'a geo::Geometry<f64>, &'a GeoJson),
}

impl<'a> Shape<'a> {
    fn of(o: &'a Object) -> Option<Self> {
        match o {
            Object::Point(p) => Some(Shape::Point(*p)),
            Object::Bounds(b) => Some(Shape::Rect(**b)),
            Object::Geometry(g) => Some(match g.geometry() {
                geo::Geometry::Point(p) => Shape::Point(Point {
                    lat: p.y(),
                    lon: p.x(),
                    z: None,
                }),
                other => Shape::Geom(other, g),
            }),
            Object::String(_) => None,
        }
    }

    fn distance_to(&self, p: &Point) -> f64 {
        match self {
            Shape::Point(q) => q.distance_to(p),
            Shape::Rect(b) => b.distance_to(p),
            Shape::Geom(g, _) => {
                if guarded(|| g.intersects(&p.geo())) {
                    return 0.0;
                }
                let closest = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    g.haversine_closest_point(&p.geo())
                }))
                .unwrap_or(geo::Closest::Indeterminate);
                match closest {
                    geo::Closest::Intersection(_) => 0.0,
                    geo::Closest::SinglePoint(q) => {
                        crate::geom::haversine(p.lat, p.lon, q.y(), q.x())
                    }
                    // Only degenerate geometries get here; their bounding rectangle
                    // gives a distance that is never larger than the truth.
                    geo::Closest::Indeterminate => {
                        use geo::BoundingRect;
                        g.bounding_rect()
                            .map_or(f64::INFINITY, |r| Bounds::from_rect(r).distance_to(p))
                    }
                }
            }
        }
    }

    fn within_circle(&self, c: &Point, meters: f64) -> bool {
        match self {
            Shape::Point(p) => p.distance_to(c) <= meters,
            // A spherical cap smaller than a hemisphere is convex, so a shape is
            // inside it when all its vertices are.
            Shape::Rect(b) => [
                (b.sw.lat, b.sw.lon),
                (b.sw.lat, b.ne.lon),
                (b.ne.lat, b.ne.lon),
                (b.ne.lat, b.sw.lon),
            ]
            .iter()
            .all(|&(lat, lon)| crate::geom::haversine(lat, lon, c.lat, c.lon) <= meters),
            Shape::Geom(g, _) => {
                use geo::CoordsIter;
                g.coords_iter()
                    .all(|q| crate::geom::haversine(q.y, q.x, c.lat, c.lon) <= meters)
            }
        }
    }
}

fn intersects(a: &Shape<'_>, b: &Shape<'_>) -> bool {
    use Shape::*;
    match (a, b) {
        (Point(p), Point(q)) => p.lat == q.lat && p.lon == q.lon,
        (Point(p), Rect(r)) | (Rect(r), Point(p)) => r.contains_point(p),
        (Rect(r), Rect(s)) => r.intersects_bounds(s),
        (Point(p), Geom(g, _)) | (Geom(g, _), Point(p)) => guarded(|| g.intersects(&p.geo())),
        (Rect(r), Geom(g, _)) | (Geom(g, _), Rect(r)) => guarded(|| g.intersects(&r.rect())),
        (Geom(g, gj), Geom(h, hj)) => guarded(|| geoms_intersect(g, gj, h, hj)),
    }
}

/// Below this product of the two sizes `geo`'s test of every pair of
/// segments is as quick as building an index, and it needs no memory.
const INDEX_ABOVE: usize = 1 << 14;

/// INTERSECTS between two geometries: `geo`'s pairwise test for small ones;
/// for large ones the segment indexes, each built once per document and
/// kept with it, so that two 10,000-vertex polygons cost milliseconds, not
/// the seconds of 10⁸ segment pairs (every other client waits meanwhile).
fn geoms_intersect(
    g: &geo::Geometry<f64>,
    gj: &GeoJson,
    h: &geo::Geometry<f64>,
    hj: &GeoJson,
) -> bool {
    if gj.num_points().saturating_mul(hj.num_points()) <= INDEX_ABOVE {
        return g.intersects(h);
    }
    if !gj.bounds().intersects_bounds(&hj.bounds()) {
        return false;
    }
    segments::intersects(g, gj.segments(), h, hj.segments())
}

/// True when `outer` covers `inner` (no point of `inner` outside `outer`).
fn covers(outer: &Shape<'_>, inner: &Shape<'_>) -> bool {
    use Shape::*;
    match (outer, inner) {
        (Point(p), Point(q)) => p.lat == q.lat && p.lon == q.lon,
        (Point(p), Rect(r)) => r.sw.lat == r.ne.lat && r.sw.lon == r.ne.lon && r.contains_point(p),
        // `geo` would relate the two, noding the geometry against itself.
        (Point(p), Geom(g, _)) => {
            use geo::CoordsIter;
            g.coords_iter().all(|c| c == p.coord())
        }
        (Rect(r), Point(p)) => r.contains_point(p),
        (Rect(r), Rect(s)) => r.contains_bounds(s),
        // A rectangle is convex, so a geometry is inside it exactly when its
        // bounding rectangle is.
        (Rect(r), Geom(g, _)) => {
            use geo::BoundingRect;
            g.bounding_rect()
                .is_some_and(|b| r.contains_bounds(&Bounds::from_rect(b)))
        }
        (Geom(g, _), Point(p)) => guarded(|| g.covers(&p.geo())),
        (Geom(g, gj), Rect(r)) => guarded(|| {
            let rect = r.rect();
            if gj.num_points() <= RELATE_MAX {
                g.covers(&rect)
            } else if !gj.bounds().contains_bounds(r) {
                false
            } else if rect.width() > 0.0 && rect.height() > 0.0 {
                segments::covers_rect(g, gj.segments(), &rect)
            } else {
                // A rectangle without an area is a segment or a point.
                let flat = geo::Geometry::Line(geo::Line::new(rect.min(), rect.max()));
                segments::covers(g, gj.segments(), &flat, &segments::Segments::new(&flat))
                    .unwrap_or_else(|| {
                        relate_within_budget(gj.num_points(), 2, RELATE_BUDGET, || g.covers(&flat))
                    })
            }
        }),
        (Geom(g, gj), Geom(h, hj)) => guarded(|| match h {
            geo::Geometry::GeometryCollection(_) => covers_members(g, gj, h),
            _ => covers_geometry(g, gj, h, hj.segments(), hj.num_points(), &hj.bounds()),
        }),
    }
}

/// `outer` covers a collection when it covers each of its members, which
/// is what "no point of the collection outside" means for their union, and
/// how Tile38 reads a collection. `geo`'s DE-9IM of a whole collection
/// answers otherwise when its members overlap (a line inside one of its
/// own polygons) or one lies along the area's edge, and the sweeps take a
/// collection's parts as one boundary, so each member is tested alone.
fn covers_members(g: &geo::Geometry<f64>, gj: &GeoJson, h: &geo::Geometry<f64>) -> bool {
    use geo::{BoundingRect, CoordsIter};
    match h {
        geo::Geometry::GeometryCollection(members) => {
            !members.is_empty() && members.iter().all(|m| covers_members(g, gj, m))
        }
        member => {
            let Some(b) = member.bounding_rect() else {
                return false;
            };
            let sm = segments::Segments::new(member);
            covers_geometry(
                g,
                gj,
                member,
                &sm,
                member.coords_count(),
                &Bounds::from_rect(b),
            )
        }
    }
}

/// `g.covers(h)` for two geometries that are not collections: `geo`'s
/// DE-9IM up to [`RELATE_MAX`] vertices together, the sweeps above it, and
/// the DE-9IM within [`RELATE_BUDGET`] where the sweeps give no answer.
fn covers_geometry(
    g: &geo::Geometry<f64>,
    gj: &GeoJson,
    h: &geo::Geometry<f64>,
    sh: &segments::Segments,
    h_points: usize,
    h_bounds: &Bounds,
) -> bool {
    if gj.num_points().saturating_add(h_points) <= RELATE_MAX {
        g.covers(h)
    } else {
        gj.bounds().contains_bounds(h_bounds)
            && segments::covers(g, gj.segments(), h, sh).unwrap_or_else(|| {
                relate_within_budget(gj.num_points(), h_points, RELATE_BUDGET, || g.covers(h))
            })
    }
}

/// Up to this many vertices in the two geometries together, WITHIN runs
/// `geo`'s DE-9IM test, which is exact whatever the boundaries do but nodes
/// each geometry against itself and the other through boxes of segments:
/// shapes made to defeat boxes (long diagonal teeth) make that about the
/// square of the sizes, a few million segment tests at this size. Above it,
/// [`segments::covers`] answers in `O((n + m) log(n + m))`, whether the two
/// boundaries meet or not; the DE-9IM answers (exact, at its cost) only
/// where that gives up: boundaries that meet when one geometry crosses or
/// overlaps itself, when the area is not a polygon, or when a rounded
/// midpoint of a piece of boundary lands on the other's boundary.
const RELATE_MAX: usize = 2_048;

/// The largest product of the two geometries' vertex counts for which a
/// WITHIN that the sweeps leave open (boundaries that meet while one
/// geometry crosses or overlaps itself, an area that is not a polygon, or a
/// rounded midpoint on a boundary: see [`segments::covers`]) is handed to
/// `geo`'s DE-9IM. Its cost grows with that product for shapes made
/// against it (two 10,000-vertex combs: seconds, under the database lock);
/// up to this budget it is about a tenth of a second. Past it the answer is
/// "not within": the shapes that get there are invalid (self-crossing) or
/// degenerate, for which the DE-9IM's answer is not defined either, and an
/// unbounded test would let one client stall every other.
const RELATE_BUDGET: usize = 4_000_000;

/// `relate()` when `n · m` is within `budget`, else false (see
/// [`RELATE_BUDGET`]).
fn relate_within_budget(n: usize, m: usize, budget: usize, relate: impl FnOnce() -> bool) -> bool {
    n.saturating_mul(m) <= budget && relate()
}

/// Runs a `geo` predicate on client geometry. GeoJSON allows self-intersecting
/// and collapsed polygons, and `geo`'s DE-9IM code checks internal invariants
/// with assertions that such input can trip (debug builds panic on them). A
/// peer's bytes must not take the process down, so a predicate that panics
/// answers "no" instead; the panic hook still reports it.
fn guarded(f: impl FnOnce() -> bool) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

        /// A ready circle answers as the object's own tests, for points
        /// near its rim (within a metre either way) as well as anywhere.
        #[test]
        fn a_ready_circle_answers_as_the_objects_own_tests(
            lat in -89.0..89.0f64,
            lon in -180.0..180.0f64,
            meters in 0.0..50_000.0f64,
            bearing in 0.0..std::f64::consts::TAU,
            off in -1.0..1.0f64,
            anywhere in any::<bool>(),
            plat in -90.0..90.0f64,
            plon in -180.0..180.0f64,
        ) {
            let center = Point::new(lat, lon).unwrap();
            let area = Area::circle(center, meters).unwrap();
            let p = if anywhere {
                Point::new(plat, plon).unwrap()
            } else {
                // About `meters + off` from the centre along `bearing`.
                let d = (meters + off).max(0.0) / crate::EARTH_RADIUS_M;
                let (la, lo) = (lat.to_radians(), lon.to_radians());
                let la2 = (la.sin() * d.cos() + la.cos() * d.sin() * bearing.cos()).asin();
                let lo2 = lo + (bearing.sin() * d.sin() * la.cos()).atan2(d.cos() - la.sin() * la2.sin());
                let lo2 = (lo2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
                Point::new(la2.to_degrees().clamp(-90.0, 90.0), lo2).unwrap()
            };
            let o = Object::Point(p);
            let t = area.test();
            prop_assert_eq!(t.within(&o), o.within(&area));
            prop_assert_eq!(t.intersects(&o), o.intersects(&area));
        }
    }

    #[test]
    fn a_ready_area_that_is_no_circle_asks_the_object() {
        let b = Bounds::new(0.0, 0.0, 1.0, 1.0).unwrap();
        let area = Area::Bounds(b);
        let t = area.test();
        for (p, inside) in [((0.5, 0.5), true), ((1.5, 0.5), false), ((1.0, 1.0), true)] {
            let o = Object::Point(Point::new(p.0, p.1).unwrap());
            assert_eq!(t.within(&o), inside, "{p:?}");
            assert_eq!(t.intersects(&o), inside, "{p:?}");
        }
        let s = Object::String("x".into());
        assert!(!t.within(&s) && !t.intersects(&s));
    }
}
