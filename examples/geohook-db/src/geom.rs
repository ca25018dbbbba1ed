//! Points, bounds and GeoJSON documents, with validation and distances.

use std::fmt::Write as _;

use geo::{BoundingRect, CoordsIter};
use serde_json::Value;

use crate::error::{Error, Result};

/// Earth radius in meters used for every distance, the value Tile38 uses, so that
/// NEARBY and CIRCLE answers agree with it to the meter.
pub const EARTH_RADIUS_M: f64 = 6_371_000.0;

/// A position: latitude and longitude in degrees, with an optional elevation.
///
/// Build it with [`Point::new`] to get range checks; the fields are public so that
/// a caller can read them without accessors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Latitude in degrees, in [-90, 90].
    pub lat: f64,
    /// Longitude in degrees, in [-180, 180].
    pub lon: f64,
    /// Elevation or any third coordinate the client sent; kept and returned, never
    /// used by a predicate.
    pub z: Option<f64>,
}

impl Point {
    /// A validated point without elevation.
    ///
    /// # Errors
    /// [`Error::InvalidCoordinates`] when lat is outside [-90, 90], lon outside
    /// [-180, 180], or either is not finite.
    pub fn new(lat: f64, lon: f64) -> Result<Self> {
        let p = Point { lat, lon, z: None };
        p.validate()?;
        Ok(p)
    }

    /// A validated point with an elevation.
    ///
    /// # Errors
    /// As [`Point::new`]; a non-finite `z` is also rejected.
    pub fn with_z(lat: f64, lon: f64, z: f64) -> Result<Self> {
        let p = Point {
            lat,
            lon,
            z: Some(z),
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks the ranges of the coordinates.
    ///
    /// # Errors
    /// [`Error::InvalidCoordinates`] as for [`Point::new`].
    pub fn validate(&self) -> Result<()> {
        let lat_ok = self.lat.is_finite() && (-90.0..=90.0).contains(&self.lat);
        let lon_ok = self.lon.is_finite() && (-180.0..=180.0).contains(&self.lon);
        let z_ok = self.z.is_none_or(f64::is_finite);
        if lat_ok && lon_ok && z_ok {
            Ok(())
        } else {
            Err(Error::InvalidCoordinates {
                lat: self.lat,
                lon: self.lon,
            })
        }
    }

    /// The centre of a geohash cell, as Tile38's `SET key id HASH geohash` stores it.
    ///
    /// # Errors
    /// [`Error::InvalidGeohash`] for an empty hash, one longer than 12
    /// characters, or one with characters outside the geohash alphabet.
    pub fn from_geohash(hash: &str) -> Result<Self> {
        check_geohash(hash)?;
        let (c, _, _) = geohash::decode(hash).map_err(|_| Error::InvalidGeohash {
            hash: hash.to_owned(),
        })?;
        Point::new(c.y, c.x)
    }

    /// The geohash of this point with `precision` characters (1 to 12).
    ///
    /// # Errors
    /// [`Error::InvalidPrecision`] outside 1..=12.
    pub fn geohash(&self, precision: usize) -> Result<String> {
        if !(1..=12).contains(&precision) {
            return Err(Error::InvalidPrecision { precision });
        }
        // Tile38 hashes every stored position, and it stores positions out
        // of range unless REQUIREVALID is set; its encoder never fails on
        // one. Such a position is hashed here at the nearest position in
        // range, which is the cell a client drawing the hash would expect.
        let coord = geo::Coord {
            x: self.lon.clamp(-180.0, 180.0),
            y: self.lat.clamp(-90.0, 90.0),
        };
        geohash::encode(coord, precision).map_err(|_| Error::InvalidCoordinates {
            lat: self.lat,
            lon: self.lon,
        })
    }

    /// Great-circle distance in meters (haversine on a sphere of
    /// [`EARTH_RADIUS_M`], as Tile38 computes it).
    pub fn distance_to(&self, other: &Point) -> f64 {
        haversine(self.lat, self.lon, other.lat, other.lon)
    }

    pub(crate) fn coord(&self) -> geo::Coord<f64> {
        geo::Coord {
            x: self.lon,
            y: self.lat,
        }
    }

    pub(crate) fn geo(&self) -> geo::Point<f64> {
        geo::Point(self.coord())
    }

    /// Appends the GeoJSON text of this point (`{"type":"Point","coordinates":[lon,lat]}`).
    pub fn write_json(&self, out: &mut String) {
        out.push_str(r#"{"type":"Point","coordinates":"#);
        write_position(out, self.lon, self.lat, self.z);
        out.push('}');
    }

    /// Appends the point as Tile38's POINTS output writes it in JSON:
    /// `{"lat":…,"lon":…}`, with `"z"` when the point has one.
    pub fn write_latlon_json(&self, out: &mut String) {
        // `write!` into a String cannot fail, so the results are ignored.
        let _ = write!(
            out,
            "{{\"lat\":{},\"lon\":{}",
            JsonNum(self.lat),
            JsonNum(self.lon)
        );
        if let Some(z) = self.z {
            let _ = write!(out, ",\"z\":{}", JsonNum(z));
        }
        out.push('}');
    }
}

/// A latitude/longitude rectangle: Tile38's `BOUNDS minlat minlon maxlat maxlon`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// South-west corner (minimum latitude and longitude).
    pub sw: Point,
    /// North-east corner (maximum latitude and longitude).
    pub ne: Point,
}

impl Bounds {
    /// Validated bounds from `minlat minlon maxlat maxlon`, the order of Tile38's
    /// `BOUNDS` argument.
    ///
    /// # Errors
    /// [`Error::InvalidCoordinates`] for a corner out of range, and
    /// [`Error::InvalidBounds`] when min is greater than max.
    pub fn new(min_lat: f64, min_lon: f64, max_lat: f64, max_lon: f64) -> Result<Self> {
        let b = Bounds {
            sw: Point::new(min_lat, min_lon)?,
            ne: Point::new(max_lat, max_lon)?,
        };
        b.validate()?;
        Ok(b)
    }

    /// Checks both corners and their order.
    ///
    /// # Errors
    /// As [`Bounds::new`].
    pub fn validate(&self) -> Result<()> {
        self.sw.validate()?;
        self.ne.validate()?;
        if self.sw.lat > self.ne.lat || self.sw.lon > self.ne.lon {
            return Err(Error::InvalidBounds {
                sw_lat: self.sw.lat,
                sw_lon: self.sw.lon,
                ne_lat: self.ne.lat,
                ne_lon: self.ne.lon,
            });
        }
        Ok(())
    }

    /// The bounds of a geohash cell.
    ///
    /// # Errors
    /// [`Error::InvalidGeohash`] as for [`Point::from_geohash`].
    pub fn from_geohash(hash: &str) -> Result<Self> {
        check_geohash(hash)?;
        let r = geohash::decode_bbox(hash).map_err(|_| Error::InvalidGeohash {
            hash: hash.to_owned(),
        })?;
        Ok(Bounds::from_rect(r))
    }

    /// The centre (mean of the corners).
    pub fn center(&self) -> Point {
        Point {
            lat: (self.sw.lat + self.ne.lat) / 2.0,
            lon: (self.sw.lon + self.ne.lon) / 2.0,
            z: None,
        }
    }

    /// True when `p` lies inside or on the edge.
    pub fn contains_point(&self, p: &Point) -> bool {
        p.lat >= self.sw.lat && p.lat <= self.ne.lat && p.lon >= self.sw.lon && p.lon <= self.ne.lon
    }

    /// True when `other` lies entirely inside or on the edge.
    pub fn contains_bounds(&self, other: &Bounds) -> bool {
        self.contains_point(&other.sw) && self.contains_point(&other.ne)
    }

    /// True when the two rectangles share at least one point (edges included).
    pub fn intersects_bounds(&self, other: &Bounds) -> bool {
        self.sw.lat <= other.ne.lat
            && other.sw.lat <= self.ne.lat
            && self.sw.lon <= other.ne.lon
            && other.sw.lon <= self.ne.lon
    }

    /// The smallest great-circle distance in meters from `p` to any point of the
    /// rectangle; 0 when `p` is inside.
    pub fn distance_to(&self, p: &Point) -> f64 {
        rect_distance(p, self.sw.lon, self.sw.lat, self.ne.lon, self.ne.lat)
    }

    pub(crate) fn from_rect(r: geo::Rect<f64>) -> Self {
        Bounds {
            sw: Point {
                lat: r.min().y,
                lon: r.min().x,
                z: None,
            },
            ne: Point {
                lat: r.max().y,
                lon: r.max().x,
                z: None,
            },
        }
    }

    pub(crate) fn rect(&self) -> geo::Rect<f64> {
        geo::Rect::new(self.sw.coord(), self.ne.coord())
    }

    /// Appends the bounds as Tile38's BOUNDS output writes them in JSON:
    /// `{"sw":{"lat":…,"lon":…},"ne":{"lat":…,"lon":…}}`.
    pub fn write_latlon_json(&self, out: &mut String) {
        out.push_str("{\"sw\":");
        Point { z: None, ..self.sw }.write_latlon_json(out);
        out.push_str(",\"ne\":");
        Point { z: None, ..self.ne }.write_latlon_json(out);
        out.push('}');
    }

    /// Appends the GeoJSON Polygon that Tile38 returns for a bounds object.
    pub fn write_json(&self, out: &mut String) {
        let (a, b) = (self.sw, self.ne);
        out.push_str(r#"{"type":"Polygon","coordinates":[["#);
        let ring = [
            (a.lon, a.lat),
            (b.lon, a.lat),
            (b.lon, b.lat),
            (a.lon, b.lat),
            (a.lon, a.lat),
        ];
        for (i, (lon, lat)) in ring.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_position(out, lon, lat, None);
        }
        out.push_str("]]}");
    }
}

/// Rejects what the `geohash` crate cannot take: it panics on an empty hash (a
/// shift by 64) and errors on more than 12 characters, so both are checked first.
fn check_geohash(hash: &str) -> Result<()> {
    const ALPHABET: &[u8] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    if (1..=12).contains(&hash.len()) && hash.bytes().all(|b| ALPHABET.contains(&b)) {
        Ok(())
    } else {
        Err(Error::InvalidGeohash {
            hash: hash.to_owned(),
        })
    }
}

fn write_position(out: &mut String, lon: f64, lat: f64, z: Option<f64>) {
    // `write!` into a String cannot fail, so the results are ignored.
    let _ = write!(out, "[{},{}", JsonNum(lon), JsonNum(lat));
    if let Some(z) = z {
        let _ = write!(out, ",{}", JsonNum(z));
    }
    out.push(']');
}

/// Formats a finite f64 the way JSON wants it (`1` rather than `1.0` is fine, and
/// Rust's shortest round-trip formatting never prints `NaN` for finite values).
struct JsonNum(f64);

impl std::fmt::Display for JsonNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The kind of a GeoJSON document, from its `type` member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GeoJsonKind {
    /// `Point`.
    Point,
    /// `MultiPoint`.
    MultiPoint,
    /// `LineString`.
    LineString,
    /// `MultiLineString`.
    MultiLineString,
    /// `Polygon`.
    Polygon,
    /// `MultiPolygon`.
    MultiPolygon,
    /// `GeometryCollection`.
    GeometryCollection,
    /// `Feature`.
    Feature,
    /// `FeatureCollection`.
    FeatureCollection,
}

/// A validated GeoJSON object: its text as the client sent it without the
/// whitespace between its tokens (as Tile38 gives objects back), and the
/// geometry that predicates run on.
///
/// A Feature is tested through its geometry and a FeatureCollection as the
/// collection of its features' geometries; their other members (properties,
/// ids) are kept only in the text.
#[derive(Debug, Clone)]
pub struct GeoJson {
    text: Box<str>,
    kind: GeoJsonKind,
    geometry: geo::Geometry<f64>,
    bounds: Bounds,
    num_points: usize,
    /// The segment index of a large geometry, built the first time a
    /// predicate against another large geometry needs it.
    segments: std::sync::OnceLock<crate::segments::Segments>,
}

impl PartialEq for GeoJson {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl GeoJson {
    /// Parses and validates a GeoJSON document.
    ///
    /// Positions are `[lon, lat]` or `[lon, lat, z]`; lat must be in [-90, 90] and lon
    /// in [-180, 180]. LineStrings need 2 positions, polygon rings 4 with the last
    /// equal to the first. Empty multi-geometries and collections are rejected,
    /// because an object without a position cannot be indexed or searched.
    ///
    /// # Errors
    /// [`Error::InvalidGeoJson`] naming the reason and the path in the document.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_with(text, true)
    }

    /// Parses and validates a GeoJSON document as [`GeoJson::parse`] does,
    /// except that positions outside the lat/lon range are kept: Tile38
    /// stores them unless its `REQUIREVALID` environment variable is set, so
    /// data and tests written for it carry such positions. Coordinates must
    /// still be finite numbers.
    ///
    /// # Errors
    /// [`Error::InvalidGeoJson`] naming the reason and the path in the document.
    pub fn parse_any_range(text: &str) -> Result<Self> {
        Self::parse_with(text, false)
    }

    fn parse_with(text: &str, strict: bool) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::InvalidGeoJson {
            reason: format!("not JSON: {e}"),
            path: "$".into(),
        })?;
        let (kind, geometry) = convert(&value, "$", strict)?;
        let rect = geometry
            .bounding_rect()
            .ok_or_else(|| Error::InvalidGeoJson {
                reason: "empty geometry".into(),
                path: "$".into(),
            })?;
        let num_points = geometry.coords_count();
        Ok(GeoJson {
            text: compact(text),
            kind,
            geometry,
            bounds: Bounds::from_rect(rect),
            num_points,
            segments: std::sync::OnceLock::new(),
        })
    }

    /// The JSON text as the client sent it, without whitespace between tokens.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The `type` of the document.
    pub fn kind(&self) -> GeoJsonKind {
        self.kind
    }

    /// The geometry that predicates run on (x is longitude, y latitude).
    pub fn geometry(&self) -> &geo::Geometry<f64> {
        &self.geometry
    }

    /// The bounding rectangle.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// The number of positions in the document (Tile38's `num_points`).
    pub fn num_points(&self) -> usize {
        self.num_points
    }

    /// The geometry's segments in an R-tree, built on first use and kept.
    pub(crate) fn segments(&self) -> &crate::segments::Segments {
        self.segments
            .get_or_init(|| crate::segments::Segments::new(&self.geometry))
    }

    /// The position of a `Point` document (or of a Feature whose geometry is one).
    pub fn as_point(&self) -> Option<Point> {
        match self.geometry {
            geo::Geometry::Point(p) => Some(Point {
                lat: p.y(),
                lon: p.x(),
                z: None,
            }),
            _ => None,
        }
    }
}

/// A valid JSON document without the whitespace between its tokens. Tile38
/// writes the objects it stores anew, compactly, so that GET and JGET give
/// back `{"type":"Point",...}` whatever spacing the client sent; strings,
/// key order and the text of numbers are kept as sent.
fn compact(text: &str) -> Box<str> {
    let text = text.trim();
    let blank = |c: char| matches!(c, ' ' | '\n' | '\r' | '\t');
    if !text.contains(blank) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !blank(c) {
            out.push(c);
        }
    }
    out.into()
}

fn bad(reason: impl Into<String>, path: &str) -> Error {
    Error::InvalidGeoJson {
        reason: reason.into(),
        path: path.to_owned(),
    }
}

fn member<'v>(v: &'v Value, name: &str, path: &str) -> Result<&'v Value> {
    v.get(name)
        .ok_or_else(|| bad(format!("missing member '{name}'"), path))
}

fn array<'v>(v: &'v Value, path: &str) -> Result<&'v Vec<Value>> {
    v.as_array().ok_or_else(|| bad("expected an array", path))
}

fn convert(v: &Value, path: &str, strict: bool) -> Result<(GeoJsonKind, geo::Geometry<f64>)> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("expected a GeoJSON object", path))?;
    let ty = obj
        .get("type")
        .ok_or_else(|| bad("missing member 'type'", path))?
        .as_str()
        .ok_or_else(|| bad("'type' must be a string", path))?;
    let cpath = format!("{path}.coordinates");
    let coords = || member(v, "coordinates", path);
    use geo::Geometry as G;
    Ok(match ty {
        "Point" => (
            GeoJsonKind::Point,
            G::Point(geo::Point(position(coords()?, &cpath, strict)?)),
        ),
        "MultiPoint" => {
            let ps = positions(coords()?, &cpath, 1, strict)?;
            (
                GeoJsonKind::MultiPoint,
                G::MultiPoint(ps.into_iter().map(geo::Point).collect()),
            )
        }
        "LineString" => (
            GeoJsonKind::LineString,
            G::LineString(geo::LineString(positions(coords()?, &cpath, 2, strict)?)),
        ),
        "MultiLineString" => {
            let lines = array(coords()?, &cpath)?;
            nonempty(lines, &cpath)?;
            let ls = lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let lpath = format!("{cpath}[{i}]");
                    Ok(geo::LineString(positions(l, &lpath, 2, strict)?))
                })
                .collect::<Result<Vec<_>>>()?;
            (
                GeoJsonKind::MultiLineString,
                G::MultiLineString(geo::MultiLineString(ls)),
            )
        }
        "Polygon" => (
            GeoJsonKind::Polygon,
            G::Polygon(polygon(coords()?, &cpath, strict)?),
        ),
        "MultiPolygon" => {
            let polys = array(coords()?, &cpath)?;
            nonempty(polys, &cpath)?;
            let ps = polys
                .iter()
                .enumerate()
                .map(|(i, p)| polygon(p, &format!("{cpath}[{i}]"), strict))
                .collect::<Result<Vec<_>>>()?;
            (
                GeoJsonKind::MultiPolygon,
                G::MultiPolygon(geo::MultiPolygon(ps)),
            )
        }
        "GeometryCollection" => {
            let gpath = format!("{path}.geometries");
            let gs = array(member(v, "geometries", path)?, &gpath)?;
            nonempty(gs, &gpath)?;
            let parts = gs
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let p = format!("{gpath}[{i}]");
                    let (kind, geom) = convert(g, &p, strict)?;
                    if matches!(kind, GeoJsonKind::Feature | GeoJsonKind::FeatureCollection) {
                        return Err(bad(
                            "a GeometryCollection holds geometries, not features",
                            &p,
                        ));
                    }
                    Ok(geom)
                })
                .collect::<Result<Vec<_>>>()?;
            (
                GeoJsonKind::GeometryCollection,
                G::GeometryCollection(geo::GeometryCollection(parts)),
            )
        }
        "Feature" => {
            let gpath = format!("{path}.geometry");
            let g = member(v, "geometry", path)?;
            let (kind, geom) = convert(g, &gpath, strict)?;
            if matches!(kind, GeoJsonKind::Feature | GeoJsonKind::FeatureCollection) {
                return Err(bad("a Feature's geometry must be a geometry", &gpath));
            }
            (GeoJsonKind::Feature, geom)
        }
        "FeatureCollection" => {
            let fpath = format!("{path}.features");
            let fs = array(member(v, "features", path)?, &fpath)?;
            nonempty(fs, &fpath)?;
            let parts = fs
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let p = format!("{fpath}[{i}]");
                    let (kind, geom) = convert(f, &p, strict)?;
                    if kind != GeoJsonKind::Feature {
                        return Err(bad("a FeatureCollection holds Features", &p));
                    }
                    Ok(geom)
                })
                .collect::<Result<Vec<_>>>()?;
            (
                GeoJsonKind::FeatureCollection,
                G::GeometryCollection(geo::GeometryCollection(parts)),
            )
        }
        other => return Err(bad(format!("unknown type '{other}'"), path)),
    })
}

fn nonempty(v: &[Value], path: &str) -> Result<()> {
    if v.is_empty() {
        Err(bad("empty array", path))
    } else {
        Ok(())
    }
}

fn position(v: &Value, path: &str, strict: bool) -> Result<geo::Coord<f64>> {
    let a = array(v, path)?;
    if !(2..=3).contains(&a.len()) {
        return Err(bad("a position has 2 or 3 numbers", path));
    }
    let num = |i: usize| {
        a[i].as_f64().filter(|f| f.is_finite()).ok_or_else(|| {
            bad(
                "a coordinate must be a finite number",
                &format!("{path}[{i}]"),
            )
        })
    };
    let (lon, lat) = (num(0)?, num(1)?);
    if a.len() == 3 {
        num(2)?;
    }
    if strict && (!(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat)) {
        return Err(bad(
            format!("position [{lon}, {lat}] out of range (lon in [-180, 180], lat in [-90, 90])"),
            path,
        ));
    }
    Ok(geo::Coord { x: lon, y: lat })
}

fn positions(v: &Value, path: &str, min: usize, strict: bool) -> Result<Vec<geo::Coord<f64>>> {
    let a = array(v, path)?;
    if a.len() < min {
        return Err(bad(format!("needs at least {min} positions"), path));
    }
    a.iter()
        .enumerate()
        .map(|(i, p)| position(p, &format!("{path}[{i}]"), strict))
        .collect()
}

fn polygon(v: &Value, path: &str, strict: bool) -> Result<geo::Polygon<f64>> {
    let rings = array(v, path)?;
    nonempty(rings, path)?;
    let mut out = Vec::with_capacity(rings.len());
    for (i, r) in rings.iter().enumerate() {
        let rpath = format!("{path}[{i}]");
        let ring = positions(r, &rpath, 4, strict)?;
        if ring.first() != ring.last() {
            return Err(bad("a linear ring must end where it starts", &rpath));
        }
        out.push(geo::LineString(ring));
    }
    let exterior = out.remove(0);
    Ok(geo::Polygon::new(exterior, out))
}

/// Haversine distance in meters between two latitude/longitude pairs in degrees.
pub(crate) fn haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    DistanceFrom::new(lat2, lon2).to(lat1, lon1)
}

/// One end of [`haversine`] made ready for many distances from it: its
/// latitude in radians and that latitude's cosine, which every distance
/// needs and would otherwise compute again. A distance from it is the same
/// `f64`, bit for bit, as [`haversine`]'s, which is this with the end made
/// ready each time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DistanceFrom {
    /// Latitude in radians.
    lat: f64,
    cos_lat: f64,
    /// Longitude in degrees.
    lon: f64,
}

impl DistanceFrom {
    pub(crate) fn new(lat: f64, lon: f64) -> DistanceFrom {
        let lat = lat.to_radians();
        DistanceFrom {
            lat,
            cos_lat: lat.cos(),
            lon,
        }
    }

    /// Meters to `lat`, `lon` (degrees).
    pub(crate) fn to(&self, lat: f64, lon: f64) -> f64 {
        let p1 = lat.to_radians();
        let dp = self.lat - p1;
        let dl = (self.lon - lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * self.cos_lat * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }
}

/// A lower bound of the great-circle distance from one centre to anything in a
/// latitude/longitude rectangle, computed without trigonometry: the nearest-
/// neighbour walk evaluates it for every child of every node it opens, where
/// the exact rectangle distance ([`rect_distance`]) costs five or six libm
/// calls each.
///
/// It starts from the haversine identity
/// `hav θ = hav Δφ + cos φ₁ cos φ₂ hav Δλ` (`hav x = sin²(x/2)`, increasing on
/// `[0, π]`) and bounds every term from below for every point of the
/// rectangle: `Δφ` and `Δλ` by the rectangle's latitude and (wrapped)
/// longitude gaps, `sin y` by `y − y³/6` (valid for `y ≥ 0`, and non-negative
/// up to `π/2`), and `cos φ₂` by its value at the rectangle's latitude
/// farthest from the equator, `e` poleward of `|φ₁|`:
/// `cos(|φ₁| + e) = cos φ₁ cos e − |sin φ₁| sin e`, with `cos e ≥ 1 − e²/2`,
/// and `sin e` at most `e` when `e ≥ 0` and at most `e − e³/6` when `e < 0`.
/// Then `θ = 2 asin √hav θ ≥ 2 √hav θ`. Only small higher-order terms are
/// dropped, so at the scale of a search (kilometres) the bound is within
/// about 10⁻⁴ of the exact distance and prunes as well.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LowerBound {
    lat: f64,
    lon: f64,
    cos_lat: f64,
    sin_lat_abs: f64,
}

/// 1/6, so that the bound multiplies instead of dividing; the last bit it
/// rounds differently is far inside the terms the bound already drops.
const SIXTH: f64 = 1.0 / 6.0;

impl LowerBound {
    /// The bound's constants for `center` (one sine and one cosine, once).
    pub(crate) fn new(center: &Point) -> Self {
        let (sin, cos) = center.lat.to_radians().sin_cos();
        LowerBound {
            lat: center.lat,
            lon: center.lon,
            cos_lat: cos,
            sin_lat_abs: sin.abs(),
        }
    }

    /// The haversine distance from `q` to the centre: bit for bit
    /// `q.distance_to(centre)`, whose `cos` of the centre's latitude this
    /// reuses instead of computing again.
    pub(crate) fn distance_to_point(&self, q: &Point) -> f64 {
        let (p1, p2) = (q.lat.to_radians(), self.lat.to_radians());
        let dp = p2 - p1;
        let dl = (self.lon - q.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * self.cos_lat * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }

    /// A lower bound, in meters, of the distance from the centre to every point
    /// of the rectangle. The slack absorbs rounding differences against the
    /// haversine of an exact distance, so that the bound never exceeds it.
    #[inline(always)]
    pub(crate) fn rect(&self, min_lon: f64, min_lat: f64, max_lon: f64, max_lat: f64) -> f64 {
        let dlat = (min_lat - self.lat).max(self.lat - max_lat).max(0.0);
        let dlon = if self.lon >= min_lon && self.lon <= max_lon {
            0.0
        } else {
            // Longitudes are within ±180, so one subtraction wraps the gap.
            let gap = |x: f64| {
                let d = (self.lon - x).abs();
                d.min(360.0 - d)
            };
            gap(min_lon).min(gap(max_lon))
        };
        // cos φ is smallest at the rectangle's latitude farthest from the
        // equator, `e` poleward of the centre's (negative: equatorward).
        let e = (min_lat.abs().max(max_lat.abs()) - self.lat.abs()).to_radians();
        let cos_e = 1.0 - e * e / 2.0;
        let cos_lo = if e >= 0.0 {
            (self.cos_lat * cos_e - self.sin_lat_abs * e).max(0.0)
        } else {
            self.cos_lat * cos_e - self.sin_lat_abs * e * (1.0 - e * e * SIXTH)
        };
        // sin(x/2) from below for x in [0, π].
        let half_sine = |x_deg: f64| {
            let y = x_deg.to_radians() / 2.0;
            y * (1.0 - y * y * SIXTH)
        };
        let (a, b) = (half_sine(dlat), half_sine(dlon));
        let hav = a * a + self.cos_lat * cos_lo * b * b;
        let d = 2.0 * EARTH_RADIUS_M * hav.sqrt();
        (d * (1.0 - 1e-9) - 1e-6).max(0.0)
    }
}

/// Exact great-circle distance from `p` to a latitude/longitude rectangle.
///
/// When `p`'s longitude is inside the rectangle's range the nearest point lies on
/// `p`'s meridian. Otherwise it lies on the nearer of the two meridian edges
/// (distance along a parallel grows with the longitude difference); on a meridian
/// the nearest point is at latitude `atan2(sin φ, cos φ cos Δλ)`, clamped to the
/// edge, when `|Δλ| < 90°`, and one of the edge's ends otherwise. The R-tree nearest-neighbour walk needs this to be a true lower bound for
/// everything inside the rectangle, which it is.
pub(crate) fn rect_distance(
    p: &Point,
    min_lon: f64,
    min_lat: f64,
    max_lon: f64,
    max_lat: f64,
) -> f64 {
    if p.lon >= min_lon && p.lon <= max_lon {
        let lat = p.lat.clamp(min_lat, max_lat);
        return (p.lat - lat).abs().to_radians() * EARTH_RADIUS_M;
    }
    let edge = |lon0: f64| {
        let dl = (p.lon - lon0).to_radians();
        if dl.cos() > 0.0 {
            let phi = p.lat.to_radians();
            let foot = phi.sin().atan2(phi.cos() * dl.cos()).to_degrees();
            let lat = foot.clamp(min_lat, max_lat);
            haversine(p.lat, p.lon, lat, lon0)
        } else {
            // Beyond a quarter turn the foot lies on the opposite meridian, and
            // along this one the distance only falls away from the foot's
            // antipode, so the nearest point of the edge is one of its ends.
            haversine(p.lat, p.lon, min_lat, lon0).min(haversine(p.lat, p.lon, max_lat, lon0))
        }
    };
    // Along any parallel, distance grows with the longitude difference, so every
    // point of the farther edge has a nearer twin on the nearer edge: only the
    // edge nearer in (wrapped) longitude needs the trigonometry.
    let gap = |lon0: f64| {
        let d = (p.lon - lon0).abs() % 360.0;
        d.min(360.0 - d)
    };
    if gap(min_lon) <= gap(max_lon) {
        edge(min_lon)
    } else {
        edge(max_lon)
    }
}

/// The latitude/longitude rectangle that contains every point within `meters` of
/// `center`, widened to all longitudes when it would cross a pole or the
/// antimeridian (a superset is fine: exact tests follow).
pub(crate) fn circle_bounds(center: &Point, meters: f64) -> Bounds {
    let d = (meters / EARTH_RADIUS_M).min(std::f64::consts::PI);
    let lat = center.lat.to_radians();
    let (mut min_lat, mut max_lat) = (lat - d, lat + d);
    let half_pi = std::f64::consts::FRAC_PI_2;
    let (min_lon, max_lon);
    if min_lat > -half_pi && max_lat < half_pi {
        let dl = (d.sin() / lat.cos()).min(1.0).asin();
        let (a, b) = (center.lon.to_radians() - dl, center.lon.to_radians() + dl);
        if a < -std::f64::consts::PI || b > std::f64::consts::PI {
            (min_lon, max_lon) = (-180.0, 180.0);
        } else {
            (min_lon, max_lon) = (a.to_degrees(), b.to_degrees());
        }
    } else {
        min_lat = min_lat.max(-half_pi);
        max_lat = max_lat.min(half_pi);
        (min_lon, max_lon) = (-180.0, 180.0);
    }
    let corner = |lat: f64, lon: f64| Point {
        lat: lat.clamp(-90.0, 90.0),
        lon,
        z: None,
    };
    Bounds {
        sw: corner(min_lat.to_degrees(), min_lon),
        ne: corner(max_lat.to_degrees(), max_lon),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// The walk's order is right only if the bound never exceeds the exact
        /// rectangle distance (itself checked against a brute-force minimum in
        /// `tests/oracle.rs`); and it prunes only if it is close to it nearby.
        #[test]
        fn lower_bound_is_below_the_rectangle_distance(
            lat in -90.0..=90.0f64, lon in -180.0..=180.0f64,
            a in -90.0..=90.0f64, b in -180.0..=180.0f64,
            h in 0.0..30.0f64, w in 0.0..90.0f64,
        ) {
            let (max_lat, max_lon) = ((a + h).min(90.0), (b + w).min(180.0));
            let p = Point { lat, lon, z: None };
            let lb = LowerBound::new(&p).rect(b, a, max_lon, max_lat);
            let exact = rect_distance(&p, b, a, max_lon, max_lat);
            prop_assert!(lb <= exact, "bound {lb} above the exact {exact}");
            prop_assert!(lb >= 0.0);
        }

        /// Within tens of kilometres, where a search spends its time, the bound
        /// is within a ten-thousandth of the exact distance of a point.
        #[test]
        fn lower_bound_of_a_point_is_tight_nearby(
            lat in -80.0..80.0f64, lon in -179.0..179.0f64,
            dlat in -0.2..0.2f64, dlon in -0.2..0.2f64,
        ) {
            let p = Point { lat, lon, z: None };
            let (qlat, qlon) = (lat + dlat, lon + dlon);
            let lb = LowerBound::new(&p).rect(qlon, qlat, qlon, qlat);
            let exact = haversine(lat, lon, qlat, qlon);
            prop_assert!(lb <= exact, "bound {lb} above the exact {exact}");
            prop_assert!(lb >= exact * 0.9999 - 1e-3, "bound {lb} far below {exact}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// NEARBY reports the walk's distance; it must be the very value
        /// `Point::distance_to` gives (and the oracle tests compare with).
        #[test]
        fn walk_distance_is_haversine_bit_for_bit(
            lat in -90.0..=90.0f64, lon in -180.0..=180.0f64,
            qlat in -90.0..=90.0f64, qlon in -180.0..=180.0f64,
        ) {
            let (c, q) = (Point { lat, lon, z: None }, Point { lat: qlat, lon: qlon, z: None });
            let d = LowerBound::new(&c).distance_to_point(&q);
            prop_assert_eq!(d.to_bits(), q.distance_to(&c).to_bits());
            let near = Point { lat: (lat + qlat * 1e-4).clamp(-90.0, 90.0), lon: (lon + qlon * 1e-4).clamp(-180.0, 180.0), z: None };
            let d = LowerBound::new(&c).distance_to_point(&near);
            prop_assert_eq!(d.to_bits(), near.distance_to(&c).to_bits());
        }
    }

    #[test]
    fn lower_bound_edge_cases() {
        let p = Point {
            lat: 33.0,
            lon: 179.9,
            z: None,
        };
        let b = LowerBound::new(&p);
        // Inside: zero.
        assert_eq!(b.rect(179.0, 32.0, 180.0, 34.0), 0.0);
        // Across the antimeridian the gap wraps: the nearest edge, -180, is
        // 0.1° away, not 359.9°.
        let across = b.rect(-180.0, 33.0, -179.9, 33.0);
        let exact = haversine(33.0, 179.9, 33.0, 180.0);
        assert!(
            across > 0.999 * exact && across <= exact,
            "{across} {exact}"
        );
        // At a pole every longitude is the same place.
        let pole = LowerBound::new(&Point {
            lat: 90.0,
            lon: 0.0,
            z: None,
        });
        assert!(pole.rect(120.0, 89.0, 121.0, 89.0) <= haversine(90.0, 0.0, 89.0, 120.0));
    }
}
