//! Heap bytes per stored point, read from jemalloc's statistics.
//!
//! Run with `cargo bench -p geohook-db --bench memory`. For each size it builds a
//! fresh database of points with ids `truck<i>` and prints jemalloc's
//! `stats.allocated` growth (bytes in live allocations, size-class rounding
//! included, the same measure as Redis's `used_memory`) divided by the number of
//! points, and the growth of `stats.resident`. `benches/memory_vs_redis.sh` runs
//! this next to `redis-server` loaded with the same points through GEOADD.

use geohook_db::{Database, Object, Point, SetCondition};
use tikv_jemalloc_ctl::{epoch, stats};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn read() -> (usize, usize) {
    epoch::advance().expect("jemalloc epoch");
    (
        stats::allocated::read().expect("stats.allocated"),
        stats::resident::read().expect("stats.resident"),
    )
}

/// The same deterministic positions as `memory_vs_redis.sh` feeds to Redis: a
/// 1°×1° square around Phoenix, from a xorshift generator.
pub fn positions(n: usize) -> impl Iterator<Item = (f64, f64)> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    (0..n).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let lat = 33.0 + (x % 1_000_000) as f64 * 1e-6;
        let lon = -112.5 + ((x >> 20) % 1_000_000) as f64 * 1e-6;
        (lat, lon)
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `--emit-geoadd N` prints the Redis commands for the same points instead.
    if let Some(i) = args.iter().position(|a| a == "--emit-geoadd") {
        let n: usize = args[i + 1].parse().expect("a count");
        let mut out = String::new();
        for (i, (lat, lon)) in positions(n).enumerate() {
            let member = format!("truck{i}");
            let (lon, lat) = (lon.to_string(), lat.to_string());
            out.push_str(&format!(
                "*5\r\n$6\r\nGEOADD\r\n$5\r\nfleet\r\n${}\r\n{lon}\r\n${}\r\n{lat}\r\n${}\r\n{member}\r\n",
                lon.len(),
                lat.len(),
                member.len()
            ));
            if out.len() > 1 << 20 {
                print!("{out}");
                out.clear();
            }
        }
        print!("{out}");
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and must
    // stay quick, so it measures the small size only.
    let quick = !args.iter().any(|a| a == "--bench");
    let sizes: &[usize] = if quick {
        &[10_000]
    } else {
        &[100_000, 500_000, 1_000_000]
    };
    // The public per-item types, so that the layout written in the README can
    // be checked against the compiler's.
    println!(
        "size_of: Item {} Object {} Point {} Fields {}",
        std::mem::size_of::<geohook_db::Item>(),
        std::mem::size_of::<Object>(),
        std::mem::size_of::<Point>(),
        std::mem::size_of::<geohook_db::Fields>()
    );
    println!(
        "{:>10} {:>6} {:>14} {:>12} {:>14}",
        "points", "load", "allocated", "bytes/point", "resident/point"
    );
    for &n in sizes {
        for bulk in [false, true] {
            let (a0, r0) = read();
            let db = load(n, bulk);
            let (a1, r1) = read();
            let used = a1.saturating_sub(a0);
            println!(
                "{n:>10} {:>6} {used:>14} {:>12.1} {:>14.1}",
                if bulk { "bulk" } else { "set" },
                used as f64 / n as f64,
                r1.saturating_sub(r0) as f64 / n as f64
            );
            drop(db);
        }
    }
    // What an id map as a `BTreeMap` from ids to slots costs: keys of 16
    // bytes (an inline id) or 24 (`SmolStr`, the id map before the id order
    // replaced it), filled with the same ids in the same order, so that the
    // map's share of the total before can be told apart from the slots' and
    // the R-tree's.
    println!(
        "{:>10} {:>16} {:>16}",
        "points", "idmap16 B/point", "idmap24 B/point"
    );
    for &n in sizes {
        println!(
            "{n:>10} {:>16.1} {:>16.1}",
            id_map::<16>(n) as f64 / n as f64,
            id_map::<24>(n) as f64 / n as f64
        );
    }
}

/// Bytes allocated by a `BTreeMap<[u8; K], u32>` of the ids `truck0..n`,
/// zero-padded (which keeps their order).
fn id_map<const K: usize>(n: usize) -> usize {
    let (a0, _) = read();
    let mut m = std::collections::BTreeMap::new();
    for i in 0..n {
        let mut k = [0u8; K];
        let id = format!("truck{i}");
        k[..id.len()].copy_from_slice(id.as_bytes());
        m.insert(k, i as u32);
    }
    let (a1, _) = read();
    drop(m);
    a1.saturating_sub(a0)
}

/// `n` points in one key through `Database::set`, or with the point index
/// built at the end (`bulk`, the replay path).
fn load(n: usize, bulk: bool) -> Database {
    let mut db = Database::new();
    if bulk {
        db.defer_point_index();
    }
    for (i, (lat, lon)) in positions(n).enumerate() {
        let p = Object::Point(Point::new(lat, lon).expect("in range"));
        db.set(
            "fleet",
            &format!("truck{i}"),
            p,
            &[] as &[(&str, f64)],
            None,
            SetCondition::Always,
            0,
        )
        .expect("set");
    }
    db.build_point_index();
    db
}
