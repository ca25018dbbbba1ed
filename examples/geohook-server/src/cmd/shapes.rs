//! Areas that Tile38 builds from a few numbers and that geohook-db has no
//! variant for: SECTOR (a pie slice, as a polygon), TILE and QUADKEY (a
//! Web Mercator tile, as a rectangle), a circle as a polygon (TEST's left
//! side), and BUFFER (an area grown by a distance).

use geohook_db::{Area, Bounds, Object, Point, EARTH_RADIUS_M};

use crate::cmd::ctx::CmdError;

/// The latitude limit of Web Mercator tiles (Bing's `MaxLatitude`).
const MERCATOR_MAX_LAT: f64 = 85.051_128_78;

/// Vertices on a full circle when a circle becomes a polygon, as Tile38's
/// `defaultCircleSteps`.
const CIRCLE_STEPS: usize = 64;

/// The point `meters` from `from` along the initial `bearing` (degrees
/// clockwise from north), on the sphere of geohook-db's distances.
pub(crate) fn destination(from: &Point, meters: f64, bearing: f64) -> Point {
    let d = meters / EARTH_RADIUS_M;
    let (lat1, lon1, b) = (
        from.lat.to_radians(),
        from.lon.to_radians(),
        bearing.to_radians(),
    );
    let lat2 = (lat1.sin() * d.cos() + lat1.cos() * d.sin() * b.cos()).asin();
    let lon2 = lon1 + (b.sin() * d.sin() * lat1.cos()).atan2(d.cos() - lat1.sin() * lat2.sin());
    // Normalised to [-180, 180) so that the polygon's text stays valid.
    let lon = (lon2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
    Point {
        lat: lat2.to_degrees(),
        lon,
        z: None,
    }
}

/// A closed GeoJSON polygon from a ring of points (closed here).
fn polygon(ring: &[Point]) -> Result<Object, CmdError> {
    let mut text = String::from(r#"{"type":"Polygon","coordinates":[["#);
    for (i, p) in ring.iter().chain(ring.first()).enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!("[{},{}]", p.lon, p.lat));
    }
    text.push_str("]]}");
    Ok(Object::from_geojson(&text)?)
}

/// `SECTOR lat lon meters bearing1 bearing2`: the slice of the circle swept
/// clockwise from `b1` to `b2`, as a polygon with a vertex every few
/// degrees of arc (Tile38 builds the same shape with its `sectr` package).
///
/// # Errors
///
/// Equal bearings (Tile38's message: use CIRCLE), a negative or non-finite
/// radius, or a shape the GeoJSON parser refuses.
pub(crate) fn sector(center: Point, meters: f64, b1: f64, b2: f64) -> Result<Area, CmdError> {
    if b1 == b2 {
        return Err(CmdError::Msg(format!(
            "equal bearings ({b1} == {b2}), use CIRCLE instead"
        )));
    }
    if !meters.is_finite() || meters < 0.0 {
        return Err(CmdError::Invalid(meters.to_string()));
    }
    let start = b1.rem_euclid(360.0);
    let mut sweep = b2.rem_euclid(360.0) - start;
    if sweep <= 0.0 {
        sweep += 360.0;
    }
    // One vertex per 360/64 degrees of arc, and at least two.
    let steps = ((sweep / 360.0 * CIRCLE_STEPS as f64).ceil() as usize).max(2);
    let mut ring = Vec::with_capacity(steps + 2);
    ring.push(Point { z: None, ..center });
    for i in 0..=steps {
        let b = start + sweep * i as f64 / steps as f64;
        ring.push(destination(&center, meters, b));
    }
    Ok(Area::Object(polygon(&ring)?))
}

/// A circle as a polygon of 64 vertices, for where a circle must be an
/// object (the left side of TEST), as Tile38 does.
///
/// # Errors
///
/// A shape the GeoJSON parser refuses.
pub(crate) fn circle_polygon(center: Point, meters: f64) -> Result<Object, CmdError> {
    let ring: Vec<Point> = (0..CIRCLE_STEPS)
        .map(|i| destination(&center, meters, 360.0 * i as f64 / CIRCLE_STEPS as f64))
        .collect();
    polygon(&ring)
}

/// The latitude of the top edge of tile row `y` at zoom `z`.
fn tile_lat(y: f64, n: f64) -> f64 {
    let m = std::f64::consts::PI * (1.0 - 2.0 * y / n);
    m.sinh()
        .atan()
        .to_degrees()
        .clamp(-MERCATOR_MAX_LAT, MERCATOR_MAX_LAT)
}

/// `TILE x y z`: the rectangle of a Web Mercator (XYZ) tile.
///
/// # Errors
///
/// `invalid argument` when `z` is over 23 (Tile38's limit) or `x`/`y` is
/// outside the zoom's grid.
pub(crate) fn tile_bounds(x: u64, y: u64, z: u64) -> Result<Bounds, CmdError> {
    if z > 23 {
        return Err(CmdError::Invalid(z.to_string()));
    }
    let n = (1u64 << z) as f64;
    if x >= 1u64 << z {
        return Err(CmdError::Invalid(x.to_string()));
    }
    if y >= 1u64 << z {
        return Err(CmdError::Invalid(y.to_string()));
    }
    let (x, y) = (x as f64, y as f64);
    Ok(Bounds {
        sw: Point {
            lat: tile_lat(y + 1.0, n),
            lon: x / n * 360.0 - 180.0,
            z: None,
        },
        ne: Point {
            lat: tile_lat(y, n),
            lon: (x + 1.0) / n * 360.0 - 180.0,
            z: None,
        },
    })
}

/// `QUADKEY key`: Bing's quadkey (one digit 0-3 per zoom level) as the
/// rectangle of its tile.
///
/// # Errors
///
/// `invalid argument` for an empty key, a digit other than 0-3, or more
/// than 23 levels.
pub(crate) fn quadkey_bounds(key: &str) -> Result<Bounds, CmdError> {
    let bad = || CmdError::Invalid(key.to_string());
    if key.is_empty() || key.len() > 23 {
        return Err(bad());
    }
    let (mut x, mut y) = (0u64, 0u64);
    for c in key.bytes() {
        let d = match c {
            b'0'..=b'3' => u64::from(c - b'0'),
            _ => return Err(bad()),
        };
        x = x << 1 | (d & 1);
        y = y << 1 | (d >> 1);
    }
    tile_bounds(x, y, key.len() as u64)
}

/// The area grown by `meters` in every direction (Tile38's BUFFER). A point
/// becomes a circle, a circle a wider circle, and a rectangle (BOUNDS,
/// HASH, TILE, QUADKEY) a polygon with its sides pushed out and its corners
/// rounded, so that every position within `meters` of the rectangle is
/// inside and nothing much farther. Any other object (OBJECT, GET, SECTOR)
/// is grown as Tile38's `buffer.Simple` grows it: a collection of the
/// object itself (for a polygon), a band along each segment of its lines
/// and rings, and a disc at each vertex.
///
/// # Errors
///
/// A string object (no position), or a shape the GeoJSON parser refuses.
pub(crate) fn buffer(area: Area, meters: f64) -> Result<Area, CmdError> {
    if meters == 0.0 {
        return Ok(area);
    }
    match area {
        Area::Point(p) => Ok(Area::circle(p, meters)?),
        Area::Circle { center, meters: m } => Ok(Area::circle(center, m + meters)?),
        Area::Bounds(b) => grown_rect(&b, meters),
        Area::Hash(h) => grown_rect(&h.bounds(), meters),
        Area::Object(Object::Point(p)) => Ok(Area::circle(p, meters)?),
        Area::Object(Object::Bounds(b)) => grown_rect(&b, meters),
        Area::Object(o) => buffer_object(&o, meters),
    }
}

/// Vertices of the disc around each vertex of a buffered line or ring.
const DISC_STEPS: usize = CIRCLE_STEPS / 4;

/// The initial bearing (degrees clockwise from north) from `a` to `b`.
fn bearing(a: &Point, b: &Point) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlon = (b.lon - a.lon).to_radians();
    let y = dlon.sin() * lat2.cos();
    let x = lat1.cos() * lat2.sin() - lat1.sin() * lat2.cos() * dlon.cos();
    y.atan2(x).to_degrees()
}

/// A ring of `DISC_STEPS` vertices `meters` around `p`, closed.
fn disc(p: &Point, meters: f64) -> Vec<Point> {
    let mut ring: Vec<Point> = (0..DISC_STEPS)
        .map(|i| destination(p, meters, 360.0 * i as f64 / DISC_STEPS as f64))
        .collect();
    ring.push(ring[0]);
    ring
}

/// The band `meters` wide on each side of the segment from `a` to `b`,
/// closed.
fn band(a: &Point, b: &Point, meters: f64) -> Vec<Point> {
    let (ab, ba) = (bearing(a, b), bearing(b, a));
    let ring = vec![
        destination(a, meters, ab - 90.0),
        destination(a, meters, ab + 90.0),
        destination(b, meters, ba - 90.0),
        destination(b, meters, ba + 90.0),
    ];
    let first = ring[0];
    ring.into_iter().chain([first]).collect()
}

/// Appends the pieces that grow a line (or ring) by `meters`: a disc at its
/// first vertex, then for each segment its band and a disc at its end.
fn grow_series(out: &mut Vec<Vec<Point>>, line: &[Point], meters: f64) {
    for (i, w) in line.windows(2).enumerate() {
        if i == 0 {
            out.push(disc(&w[0], meters));
        }
        out.push(band(&w[0], &w[1], meters));
        out.push(disc(&w[1], meters));
    }
    if line.len() == 1 {
        out.push(disc(&line[0], meters));
    }
}

fn json_points(v: &serde_json::Value) -> Vec<Point> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    Some(Point {
                        lon: c.get(0)?.as_f64()?,
                        lat: c.get(1)?.as_f64()?,
                        z: None,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Collects the polygons (as rings) that make up a grown GeoJSON value;
/// a polygon keeps itself (`keep`) as well as its grown outline.
fn grow_value(
    v: &serde_json::Value,
    meters: f64,
    rings: &mut Vec<Vec<Point>>,
    keep: &mut Vec<serde_json::Value>,
) {
    let c = &v["coordinates"];
    match v.get("type").and_then(serde_json::Value::as_str) {
        Some("Point") => rings.extend(
            json_points(&serde_json::json!([c]))
                .iter()
                .map(|p| disc(p, meters)),
        ),
        Some("MultiPoint") => rings.extend(json_points(c).iter().map(|p| disc(p, meters))),
        Some("LineString") => grow_series(rings, &json_points(c), meters),
        Some("MultiLineString") => {
            for l in c.as_array().into_iter().flatten() {
                grow_series(rings, &json_points(l), meters);
            }
        }
        Some("Polygon") => {
            for ring in c.as_array().into_iter().flatten() {
                grow_series(rings, &json_points(ring), meters);
            }
            keep.push(v.clone());
        }
        Some("MultiPolygon") => {
            for poly in c.as_array().into_iter().flatten() {
                let p = serde_json::json!({"type": "Polygon", "coordinates": poly});
                grow_value(&p, meters, rings, keep);
            }
        }
        Some("GeometryCollection") => {
            for g in v["geometries"].as_array().into_iter().flatten() {
                grow_value(g, meters, rings, keep);
            }
        }
        Some("Feature") => grow_value(&v["geometry"], meters, rings, keep),
        Some("FeatureCollection") => {
            for f in v["features"].as_array().into_iter().flatten() {
                grow_value(f, meters, rings, keep);
            }
        }
        _ => {}
    }
}

/// An object grown by `meters`, as one GeometryCollection of its pieces.
fn buffer_object(obj: &Object, meters: f64) -> Result<Area, CmdError> {
    if !obj.is_spatial() {
        return Err(CmdError::Msg("cannot buffer a string object".into()));
    }
    let v: serde_json::Value =
        serde_json::from_str(&obj.to_json()).map_err(|e| CmdError::Msg(e.to_string()))?;
    let (mut rings, mut keep) = (Vec::new(), Vec::new());
    grow_value(&v, meters, &mut rings, &mut keep);
    let mut geometries = keep;
    for ring in rings {
        let coords: Vec<serde_json::Value> = ring
            .iter()
            .map(|p| serde_json::json!([p.lon, p.lat]))
            .collect();
        geometries.push(serde_json::json!({"type": "Polygon", "coordinates": [coords]}));
    }
    let text = serde_json::json!({"type": "GeometryCollection", "geometries": geometries});
    Ok(Area::Object(Object::from_geojson(&text.to_string())?))
}

/// A rectangle grown by `meters`: each corner is replaced by a quarter
/// circle around it, joined by the pushed-out sides.
fn grown_rect(b: &Bounds, meters: f64) -> Result<Area, CmdError> {
    let corners = [
        // Corner, and the bearing range its quarter circle sweeps, going
        // clockwise around the rectangle from the north-west corner.
        (
            Point {
                lat: b.ne.lat,
                lon: b.sw.lon,
                z: None,
            },
            270.0,
        ),
        (
            Point {
                lat: b.ne.lat,
                lon: b.ne.lon,
                z: None,
            },
            0.0,
        ),
        (
            Point {
                lat: b.sw.lat,
                lon: b.ne.lon,
                z: None,
            },
            90.0,
        ),
        (
            Point {
                lat: b.sw.lat,
                lon: b.sw.lon,
                z: None,
            },
            180.0,
        ),
    ];
    const STEPS: usize = CIRCLE_STEPS / 4;
    let mut ring = Vec::with_capacity(4 * (STEPS + 1));
    for (corner, from) in corners {
        for i in 0..=STEPS {
            ring.push(destination(
                &corner,
                meters,
                from + 90.0 * i as f64 / STEPS as f64,
            ));
        }
    }
    // A polygon ring is counter-clockwise by GeoJSON's right-hand rule; the
    // predicates do not depend on it, but clients reading the shape might.
    ring.reverse();
    Ok(Area::Object(polygon(&ring)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadkey_and_tile_agree_with_bing() {
        // Bing's documented example: quadkey 213 is tile (3, 5) at zoom 3.
        let q = quadkey_bounds("213").unwrap();
        let t = tile_bounds(3, 5, 3).unwrap();
        assert_eq!(q, t);
        assert_eq!(t.sw.lon, -45.0);
        assert_eq!(t.ne.lon, 0.0);
        assert!(t.ne.lat < 0.0 && t.sw.lat < t.ne.lat);
        assert!(quadkey_bounds("214").is_err());
        assert!(tile_bounds(8, 0, 3).is_err());
    }

    #[test]
    fn destination_moves_by_the_distance() {
        let c = Point::new(33.5, -112.2).unwrap();
        let p = destination(&c, 1000.0, 90.0);
        let back = Object::Point(p).distance_to(&c).unwrap();
        assert!((back - 1000.0).abs() < 0.01, "{back}");
    }

    #[test]
    fn a_sector_holds_points_inside_its_bearings_only() {
        let c = Point::new(33.0, -112.0).unwrap();
        let s = sector(c, 5000.0, 0.0, 90.0).unwrap();
        let ne = Object::Point(destination(&c, 2000.0, 45.0));
        let sw = Object::Point(destination(&c, 2000.0, 225.0));
        let far = Object::Point(destination(&c, 6000.0, 45.0));
        assert!(ne.within(&s));
        assert!(!sw.within(&s));
        assert!(!far.within(&s));
        assert!(sector(c, 10.0, 5.0, 5.0).is_err());
    }

    #[test]
    fn a_buffered_rectangle_reaches_out_by_the_distance() {
        let b = Bounds::new(33.0, -112.0, 33.1, -111.9).unwrap();
        let grown = buffer(Area::Bounds(b), 1000.0).unwrap();
        let north = Point::new(33.1, -111.95).unwrap();
        let near = Object::Point(destination(&north, 900.0, 0.0));
        let far = Object::Point(destination(&north, 1100.0, 0.0));
        assert!(near.within(&grown));
        assert!(!far.within(&grown));
        // Past a corner along the diagonal, 900 m is in and 1100 m is out.
        let corner = Point::new(33.1, -111.9).unwrap();
        assert!(Object::Point(destination(&corner, 900.0, 45.0)).within(&grown));
        assert!(!Object::Point(destination(&corner, 1100.0, 45.0)).within(&grown));
        // A polygon grows by the distance past its edges, and keeps its
        // inside.
        let poly = Area::Object(circle_polygon(corner, 1000.0).unwrap());
        let grown = buffer(poly, 500.0).unwrap();
        assert!(Object::Point(corner).within(&grown));
        assert!(Object::Point(destination(&corner, 1400.0, 10.0)).intersects(&grown));
        assert!(!Object::Point(destination(&corner, 1600.0, 10.0)).intersects(&grown));
        // A line too.
        let line =
            Object::from_geojson(r#"{"type":"LineString","coordinates":[[-112,33],[-111.9,33]]}"#)
                .unwrap();
        let grown = buffer(Area::Object(line), 1000.0).unwrap();
        let mid = Point::new(33.0, -111.95).unwrap();
        assert!(Object::Point(destination(&mid, 900.0, 0.0)).intersects(&grown));
        assert!(!Object::Point(destination(&mid, 1100.0, 0.0)).intersects(&grown));
    }
}
