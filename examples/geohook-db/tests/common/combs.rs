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

/// The closed ring of a comb of `t` teeth on integer positions, each tooth
/// leaning right by one per unit of height: a base from (0, 0) to (4 t, 1),
/// tooth `i` from x `4 i + 1` to `4 i + 2` at its foot and `h` high. At
/// `h = 4 t` every tooth's box meets every other's. Every position, and
/// every vertex of one such comb on another's edge, is exact, so combs of
/// different heights touch exactly: the shorter one's tooth tops lie on
/// the taller one's tooth edges, which they overlap.
pub fn leaning_comb(t: i32, h: i32) -> Vec<(f64, f64)> {
    let mut ring = vec![(0, 0), (4 * t, 0), (4 * t, 1)];
    for i in (0..t).rev() {
        ring.extend([
            (4 * i + 2, 1),
            (4 * i + 2, h),
            (4 * i + 1, h),
            (4 * i + 1, 1),
        ]);
    }
    ring.extend([(0, 1), (0, 0)]);
    ring.into_iter()
        .map(|(x, y)| (f64::from(x + y), f64::from(y)))
        .collect()
}

/// A GeoJSON polygon of [`leaning_comb`], scaled by 2^-10 of a degree from
/// longitude -112, latitude 33: exact in binary, and at most 13 significant
/// decimal digits, which JSON parsers read back exactly (longer decimals
/// may come back an ulp off, and the combs would cross instead of touch).
pub fn leaning_comb_geojson(t: i32, h: i32) -> String {
    let scale = 1.0 / 1_024.0;
    let coords: Vec<String> = leaning_comb(t, h)
        .iter()
        .map(|(x, y)| format!("[{},{}]", -112.0 + x * scale, 33.0 + y * scale))
        .collect();
    format!(
        r#"{{"type":"Polygon","coordinates":[[{}]]}}"#,
        coords.join(",")
    )
}
