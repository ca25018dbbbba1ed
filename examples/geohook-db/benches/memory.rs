//! Heap bytes per stored point, measured with a counting allocator.
//!
//! Run with `cargo bench -p geohook-db --bench memory`. For each size it builds a
//! fresh database of points with ids `truck<i>` and prints the bytes that are
//! still allocated afterwards, divided by the number of points. This counts what
//! the program asked for, not allocator overhead or fragmentation; the server's
//! resident-memory figure covers those.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use geohook_db::{Database, Object, Point, SetCondition};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator with the same layout and
// only adds bookkeeping on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and
    // must stay quick, so it measures the small size only.
    let quick = !std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if quick {
        &[10_000]
    } else {
        &[100_000, 1_000_000]
    };
    println!(
        "{:>10} {:>14} {:>12}",
        "points", "heap bytes", "bytes/point"
    );
    for &n in sizes {
        let before = LIVE.load(Ordering::Relaxed);
        let mut db = Database::new();
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for i in 0..n {
            // xorshift: deterministic positions without pulling a RNG into the count.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let lat = 33.0 + (x % 1_000_000) as f64 * 1e-6;
            let lon = -112.5 + ((x >> 20) % 1_000_000) as f64 * 1e-6;
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
        let used = LIVE.load(Ordering::Relaxed) - before;
        println!("{n:>10} {used:>14} {:>12.1}", used as f64 / n as f64);
        drop(db);
    }
}
