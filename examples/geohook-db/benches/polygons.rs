//! INTERSECTS and WITHIN between a stored polygon and a query polygon of
//! 1,000 and 10,000 vertices: the shape that made `geo`'s pairwise segment
//! test take seconds (two interleaved combs whose boxes overlap and whose
//! edges never meet), before and after the segment index.
//!
//! Run with `cargo bench -p geohook-db --bench polygons`. Each iteration
//! parses the query polygon, as the server does for every command; the
//! stored polygon is parsed once, so its segment index is built once.

use divan::Bencher;
use geo::Intersects;
use geohook_db::{Area, Object};

fn main() {
    divan::main();
}

const SIZES: &[usize] = &[1_000, 10_000];

#[path = "../tests/common/combs.rs"]
mod combs;

/// A GeoJSON polygon of about `n` vertices: two such interleave.
fn comb(n: usize, up: bool) -> String {
    combs::comb_geojson(n / 4, up, 0.0)
}

/// INTERSECTS as it was: `geo`'s test of every pair of segments.
#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn intersects_combs_pairwise(bencher: Bencher<'_, '_>, n: usize) {
    let stored = Object::from_geojson(&comb(n, true)).unwrap();
    let query = comb(n, false);
    let Object::Geometry(a) = &stored else {
        unreachable!()
    };
    bencher.bench_local(|| {
        let Object::Geometry(b) = Object::from_geojson(&query).unwrap() else {
            unreachable!()
        };
        a.geometry().intersects(b.geometry())
    });
}

/// INTERSECTS through `Object::intersects`: the segment indexes.
#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn intersects_combs_indexed(bencher: Bencher<'_, '_>, n: usize) {
    let stored = Object::from_geojson(&comb(n, true)).unwrap();
    let query = comb(n, false);
    bencher.bench_local(|| {
        let area = Area::Object(Object::from_geojson(&query).unwrap());
        stored.intersects(&area)
    });
}

/// Parsing the query alone, the part of both figures above that is not the test.
#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn parse_query(bencher: Bencher<'_, '_>, n: usize) {
    let query = comb(n, false);
    bencher.bench_local(|| Object::from_geojson(&query).unwrap());
}

/// WITHIN of the same pair (`geo`'s DE-9IM, which indexes segments itself,
/// so it was never `n · m`; measured to show it).
#[divan::bench(args = SIZES, sample_count = 5, sample_size = 1)]
fn within_combs(bencher: Bencher<'_, '_>, n: usize) {
    let stored = Object::from_geojson(&comb(n, true)).unwrap();
    let query = comb(n, false);
    bencher.bench_local(|| {
        let area = Area::Object(Object::from_geojson(&query).unwrap());
        stored.within(&area)
    });
}
