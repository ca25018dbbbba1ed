//! SET, NEARBY and WITHIN on collections of 10^5 and 10^6 points, and the
//! server benchmark's NEARBY on its own data set.
//!
//! Run with `cargo bench -p geohook-db --bench db`. Each collection is built once
//! per size (random points in a 1°×1° square around Phoenix, the density of a busy
//! fleet) and then measured with one operation per iteration.

use std::cell::RefCell;

use divan::Bencher;
use geohook_db::{Area, Bounds, Database, Object, Point, SearchOpts, SetCondition};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const NOW: i64 = 1_700_000_000_000;
const SIZES: &[usize] = &[100_000, 1_000_000];
const NO_FIELDS: &[(&str, f64)] = &[];

/// SET `id` in `fleet` with no fields, no TTL and no condition.
fn put(db: &mut Database, id: &str, obj: Object) {
    db.set("fleet", id, obj, NO_FIELDS, None, SetCondition::Always, NOW)
        .unwrap();
}

fn main() {
    divan::main();
}

fn random_point(rng: &mut SmallRng) -> Object {
    Object::Point(Point::new(33.0 + rng.random::<f64>(), -112.5 + rng.random::<f64>()).unwrap())
}

fn filled(n: usize) -> Database {
    let mut rng = SmallRng::seed_from_u64(n as u64);
    let mut db = Database::new();
    for i in 0..n {
        put(&mut db, &format!("truck{i}"), random_point(&mut rng));
    }
    db
}

/// Moves an existing truck to a new random position: Tile38's typical write.
#[divan::bench(args = SIZES, sample_count = 20, sample_size = 1000)]
fn set_update_point(bencher: Bencher<'_, '_>, n: usize) {
    let db = RefCell::new(filled(n));
    let rng = RefCell::new(SmallRng::seed_from_u64(7));
    bencher.bench_local(|| {
        let mut rng = rng.borrow_mut();
        let id = format!("truck{}", rng.random_range(0..n));
        let obj = random_point(&mut rng);
        put(&mut db.borrow_mut(), &id, obj);
    });
}

/// Adds a new id to a collection of `n` (the collection grows by the sample count).
#[divan::bench(args = SIZES, sample_count = 20, sample_size = 1000)]
fn set_insert_point(bencher: Bencher<'_, '_>, n: usize) {
    let db = RefCell::new(filled(n));
    let rng = RefCell::new(SmallRng::seed_from_u64(8));
    let next = RefCell::new(n);
    bencher.bench_local(|| {
        let mut i = next.borrow_mut();
        *i += 1;
        let obj = random_point(&mut rng.borrow_mut());
        put(&mut db.borrow_mut(), &format!("truck{i}"), obj);
    });
}

/// NEARBY … LIMIT 10 POINT lat lon (pure KNN from a random point).
#[divan::bench(args = SIZES, sample_count = 20, sample_size = 1000)]
fn nearby_limit_10(bencher: Bencher<'_, '_>, n: usize) {
    knn_10(bencher, &filled(n));
}

/// `nearby_limit_10` over the index a replay at start builds: the same
/// points with the point index built at once (`defer_point_index`, then
/// `build_point_index`) instead of one insert each.
#[divan::bench(args = SIZES, sample_count = 20, sample_size = 1000)]
fn nearby_limit_10_after_replay(bencher: Bencher<'_, '_>, n: usize) {
    knn_10(bencher, &bulk_filled(n));
}

/// NEARBY … LIMIT 10 from random points of the fleet's square.
fn knn_10(bencher: Bencher<'_, '_>, db: &Database) {
    let rng = RefCell::new(SmallRng::seed_from_u64(9));
    let opts = SearchOpts {
        limit: Some(10),
        ..Default::default()
    };
    bencher.bench_local(|| {
        let mut rng = rng.borrow_mut();
        let c = Point::new(33.0 + rng.random::<f64>(), -112.5 + rng.random::<f64>()).unwrap();
        db.nearby("fleet", &c, None, &opts, NOW).hits.len()
    });
}

/// NEARBY … POINT lat lon 1000 (every point within 1 km: π km² of the
/// ≈10,300 km² square, so about 30 at 10^5, as the README's table says).
#[divan::bench(args = SIZES, sample_count = 20, sample_size = 1000)]
fn nearby_radius_1km(bencher: Bencher<'_, '_>, n: usize) {
    let db = filled(n);
    let rng = RefCell::new(SmallRng::seed_from_u64(10));
    let opts = SearchOpts::default();
    bencher.bench_local(|| {
        let mut rng = rng.borrow_mut();
        let c = Point::new(33.0 + rng.random::<f64>(), -112.5 + rng.random::<f64>()).unwrap();
        db.nearby("fleet", &c, Some(1_000.0), &opts, NOW).hits.len()
    });
}

/// The query of `examples/geohook-server/benches/vs-redis.sh`: the 10 nearest
/// within 1 km of (33, -115), over random points in the same 2°×2° box
/// (about 15 within the radius at 2·10^5, 75 at 10^6), from a fixed centre, as
/// redis-benchmark repeats it.
#[divan::bench(args = [200_000, 1_000_000], sample_count = 20, sample_size = 1000)]
fn nearby_limit_10_within_1km_server_query(bencher: Bencher<'_, '_>, n: usize) {
    let mut rng = SmallRng::seed_from_u64(38);
    let mut db = Database::new();
    for i in 0..n {
        let p = Point::new(
            32.0 + 2.0 * rng.random::<f64>(),
            -116.0 + 2.0 * rng.random::<f64>(),
        );
        put(&mut db, &format!("p{i}"), Object::Point(p.unwrap()));
    }
    let c = Point::new(33.0, -115.0).unwrap();
    let opts = SearchOpts {
        limit: Some(10),
        ..Default::default()
    };
    bencher.bench_local(|| db.nearby("fleet", &c, Some(1_000.0), &opts, NOW).hits.len());
}

/// WITHIN a 0.01°×0.01° box (about 10 points at 10^5).
#[divan::bench(args = SIZES, sample_count = 20, sample_size = 1000)]
fn within_small_bounds(bencher: Bencher<'_, '_>, n: usize) {
    let db = filled(n);
    let rng = RefCell::new(SmallRng::seed_from_u64(11));
    let opts = SearchOpts::default();
    bencher.bench_local(|| {
        let mut rng = rng.borrow_mut();
        let (lat, lon) = (33.0 + rng.random::<f64>(), -112.5 + rng.random::<f64>());
        let area = Area::Bounds(Bounds::new(lat, lon, lat + 0.01, lon + 0.01).unwrap());
        db.within("fleet", &area, &opts, NOW).hits.len()
    });
}

/// Stores `n` new points through `Database::set`, one insert into the point
/// index each: the data-model side of a replay at start, as it is today.
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn load_points_one_by_one(bencher: Bencher<'_, '_>, n: usize) {
    bencher.bench_local(|| filled(n));
}

/// The same load with the point index built once at the end
/// (`Database::defer_point_index`, then `build_point_index`).
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn load_points_bulk(bencher: Bencher<'_, '_>, n: usize) {
    bencher.bench_local(|| bulk_filled(n));
}

/// `filled(n)`'s points, with the point index built once at the end.
fn bulk_filled(n: usize) -> Database {
    let mut rng = SmallRng::seed_from_u64(n as u64);
    let mut db = Database::new();
    db.defer_point_index();
    for i in 0..n {
        put(&mut db, &format!("truck{i}"), random_point(&mut rng));
    }
    db.build_point_index();
    db
}
