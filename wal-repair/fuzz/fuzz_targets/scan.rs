//! Arbitrary bytes through both scanners and the RESP command iterator: no panic, and the scanners'
//! own allocations never exceed the input size.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use wal_repair::{frames, resp, scan_bytes, RecordFormat, Tail};

/// Counts bytes requested while `ARMED` is set, so only the code under test is measured.
struct Counting;

static ARMED: AtomicUsize = AtomicUsize::new(0);
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) != 0 {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) != 0 {
            ALLOCATED.fetch_add(new_size.saturating_sub(layout.size()), Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn measured<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATED.store(0, Ordering::Relaxed);
    ARMED.store(1, Ordering::Relaxed);
    let out = f();
    ARMED.store(0, Ordering::Relaxed);
    (out, ALLOCATED.load(Ordering::Relaxed))
}

fn check_scan<F: RecordFormat>(format: &F, data: &[u8]) {
    let (scan, bytes) = measured(|| scan_bytes(format, data));
    assert!(bytes <= data.len(), "{} scan allocated {bytes} bytes for {} input bytes", format.name(), data.len());
    assert!(scan.valid_len <= scan.file_len);
    assert_eq!(scan.file_len, data.len() as u64);
    // The valid prefix must itself scan clean with the same record count: repair keeps exactly it.
    let prefix = &data[..scan.valid_len as usize];
    let again = scan_bytes(format, prefix);
    assert_eq!(again.tail, Tail::Clean);
    assert_eq!(again.records, scan.records);
    if let Tail::Corrupt { next_valid: Some(at), .. } = scan.tail {
        assert!(matches!(format.decode(&data[at as usize..]), wal_repair::Frame::Complete(_)));
    }
}

fuzz_target!(|data: &[u8]| {
    check_scan(&frames::Frames, data);
    // Arbitrary bytes almost never start with the magic, so the call above mostly stops at the file
    // header; prefixing the magic sends the same bytes through the frames record walk.
    let mut with_magic = frames::MAGIC.to_vec();
    with_magic.extend_from_slice(data);
    check_scan(&frames::Frames, &with_magic);
    check_scan(&resp::Resp, data);

    let ((), bytes) = measured(|| {
        for cmd in resp::Commands::new(data) {
            if let Ok(cmd) = cmd {
                assert!(cmd.args().count() == cmd.argc());
                assert!(cmd.args().all(|a| a.len() < data.len()));
            }
        }
    });
    assert!(bytes <= data.len(), "RESP commands allocated {bytes} bytes for {} input bytes", data.len());
});
