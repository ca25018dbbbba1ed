//! A follower applying a huge object as a full sync sends it: one SET with
//! the first 1,000 fields, then FSET continuation records of 1,000 fields
//! each whose names follow the last. Measured for objects of 10,000 and
//! 100,000 fields, one whole object per iteration.
//!
//! Run with `cargo bench -p geohook-db --bench fields`.

use divan::Bencher;
use geohook_db::{Database, Object, Point, SetCondition};

const NOW: i64 = 1_700_000_000_000;
const CHUNK: usize = 1000;

fn main() {
    divan::main();
}

#[divan::bench(args = [10_000, 100_000], sample_count = 3, sample_size = 1)]
fn set_then_continuations(bencher: Bencher<'_, '_>, n: usize) {
    let fields: Vec<(String, f64)> = (0..n)
        .map(|i| (format!("f{i:07}"), 1.0 + i as f64))
        .collect();
    bencher.bench_local(|| {
        let mut db = Database::new();
        let point = Object::Point(Point::new(33.0, -112.0).unwrap());
        db.set(
            "k",
            "big",
            point,
            &fields[..CHUNK],
            None,
            SetCondition::Always,
            NOW,
        )
        .unwrap();
        for chunk in fields[CHUNK..].chunks(CHUNK) {
            db.fset("k", "big", chunk, false, NOW).unwrap();
        }
        db
    });
}
