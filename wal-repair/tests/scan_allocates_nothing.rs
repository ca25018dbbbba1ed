//! The in-memory scanners allocate nothing for the built-in formats, whatever the bytes claim, and the
//! file scanner's buffer never grows past the bytes actually present, even when a length field claims
//! gigabytes. Measured with a counting global allocator (in this test binary only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use wal_repair::{frames, resp, scan_bytes, scan_file, RecordFormat, ScanConfig};

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn note(bytes: usize) {
    // `try_with` because the allocator can run while thread-locals are being torn down.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            TOTAL.with(|t| t.set(t.get() + bytes));
            PEAK.with(|p| p.set(p.get().max(bytes)));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns (total bytes allocated, largest single allocation).
fn measure(f: impl FnOnce()) -> (usize, usize) {
    TOTAL.with(|t| t.set(0));
    PEAK.with(|p| p.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    (TOTAL.with(Cell::get), PEAK.with(Cell::get))
}

fn hostile_inputs() -> Vec<(&'static str, &'static dyn RecordFormat, Vec<u8>)> {
    let frames_huge = [
        &frames::MAGIC[..],
        &u32::MAX.to_le_bytes(),
        &[0xEE; 4],
        b"tiny",
    ]
    .concat();
    vec![
        (
            "one non-RESP byte (found by the fuzzer)",
            &resp::Resp,
            vec![233],
        ),
        (
            "RESP bulk length of 10^18",
            &resp::Resp,
            b"*1\r\n$999999999999999999\r\nab".to_vec(),
        ),
        (
            "RESP argc of 10^18",
            &resp::Resp,
            b"*999999999999999999\r\n$1\r\na\r\n".to_vec(),
        ),
        ("frames length of 4 GiB", &frames::Frames, frames_huge),
        (
            "garbage",
            &frames::Frames,
            (0..=255u8).cycle().take(5000).collect(),
        ),
    ]
}

#[test]
fn in_memory_scans_allocate_nothing() {
    for (name, format, input) in hostile_inputs() {
        let (total, _) = measure(|| {
            std::hint::black_box(scan_bytes(format, &input));
        });
        assert_eq!(total, 0, "{name}: scan_bytes allocated {total} bytes");
        let (total, _) = measure(|| {
            for cmd in resp::Commands::new(&input) {
                std::hint::black_box(cmd.ok());
            }
        });
        assert_eq!(total, 0, "{name}: resp::Commands allocated {total} bytes");
    }
}

#[test]
fn file_scan_buffer_is_bounded_by_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = ScanConfig::default();
    for (name, format, input) in hostile_inputs() {
        let path = dir.path().join("hostile.log");
        std::fs::write(&path, &input).unwrap();
        let (_, peak) = measure(|| {
            std::hint::black_box(scan_file(&path, format, &config).unwrap());
        });
        // The read buffer is one chunk at most here (every file is smaller than a chunk), whatever the
        // length fields say; paths and the reason string are tiny.
        assert!(
            peak <= config.read_chunk.max(input.len()) + 4096,
            "{name}: peak allocation {peak}"
        );
    }
}
