//! Two interleaved combs: polygons whose boxes overlap and whose edges never
//! meet, so that a test of every pair of segments cannot stop early. Shared
//! by the polygon benchmark, the crate's polygon tests and the server's
//! end-to-end test, each of which includes this file by path.
#![allow(dead_code, unreachable_pub)]

/// The closed ring of a comb with `t` teeth in the unit square: up (`up`)
/// from a base at y 0 to 0.1, teeth from y 0.1 to 1.0, or down from a base
/// at y 1.1 to 1.2, teeth from y 1.1 to 0.2, offset by half a tooth so that
/// the two combs interleave without touching. About `4 t` vertices.
pub fn comb_ring(t: usize, up: bool) -> Vec<(f64, f64)> {
    let w = 0.25 / t as f64;
    let mut ring: Vec<(f64, f64)> = Vec::with_capacity(4 * t + 5);
    if up {
        ring.extend([(0.0, 0.0), (1.0, 0.0), (1.0, 0.1)]);
        for i in (0..t).rev() {
            let x = (i as f64 + 0.1) / t as f64;
            ring.extend([(x + w, 0.1), (x + w, 1.0), (x, 1.0), (x, 0.1)]);
        }
        ring.extend([(0.0, 0.1), (0.0, 0.0)]);
    } else {
        ring.extend([(0.0, 1.2), (0.0, 1.1)]);
        for i in 0..t {
            let x = (i as f64 + 0.6) / t as f64;
            ring.extend([(x, 1.1), (x, 0.2), (x + w, 0.2), (x + w, 1.1)]);
        }
        ring.extend([(1.0, 1.1), (1.0, 1.2), (0.0, 1.2)]);
    }
    ring
}

/// A GeoJSON polygon of [`comb_ring`] moved right by `dx` teeth and scaled
/// to a tenth of a degree at longitude -112, latitude 33.
pub fn comb_geojson(t: usize, up: bool, dx: f64) -> String {
    let coords: Vec<String> = comb_ring(t, up)
        .iter()
        .map(|(x, y)| {
            let x = x + dx / t as f64;
            format!("[{},{}]", -112.0 + x * 0.1, 33.0 + y * 0.1)
        })
        .collect();
    format!(
        r#"{{"type":"Polygon","coordinates":[[{}]]}}"#,
        coords.join(",")
    )
}

/// A GeoJSON polygon of [`comb_ring`] moved right by `dx` teeth and
/// sheared so that every tooth leans right by `lean` times its height
/// (then scaled as [`comb_geojson`]): the teeth are long diagonals whose
/// bounding boxes each overlap those of about `lean` times the number of
/// teeth, so an index of boxes tests almost every pair, while the two
/// combs still interleave without touching (a shear keeps what meets).
pub fn teeth_geojson(t: usize, up: bool, dx: f64, lean: f64) -> String {
    let coords: Vec<String> = comb_ring(t, up)
        .iter()
        .map(|(x, y)| {
            let x = (x + dx / t as f64 + lean * y) / (1.0 + 1.2 * lean);
            format!("[{},{}]", -112.0 + x * 0.1, 33.0 + y * 0.1)
        })
        .collect();
    format!(
        r#"{{"type":"Polygon","coordinates":[[{}]]}}"#,
        coords.join(",")
    )
}
