//! Fuzzing on stable: random bytes and structure-aware inputs (valid
//! commands, mutated) through every reader of the crate, whole and split at
//! every offset. A reader must never panic, must decide the same thing
//! whether the bytes arrive at once or one at a time, and must allocate in
//! proportion to the bytes it was given, never to a length the bytes claim.
//!
//! Allocation is measured per thread by a counting allocator, so that the
//! test threads running in parallel do not see each other's memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use geohook_resp::{
    encode_command, parse, parse_frame, parse_resume, scan_command, ArgBufs, Frame, FrameLimits,
    Limits,
};
use proptest::prelude::*;

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn add(n: usize) {
    // `try_with` because the allocator also runs while a thread's locals are
    // being torn down.
    let _ = LIVE.try_with(|l| {
        let v = l.get() + n;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

fn sub(n: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(n)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        add(new);
        sub(layout.size());
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes allocated at the peak of `f`, above what was live when it began.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

/// Generous caps, so that a claimed length is not refused by a cap before
/// the allocation question arises.
const WIDE: Limits = Limits {
    max_args: 1 << 20,
    max_bulk: 512 << 20,
    max_request: 1 << 30,
};
const WIDE_FRAMES: FrameLimits = FrameLimits {
    max_args: 1 << 20,
    max_bulk: 512 << 20,
    max_line: 4096,
};

/// What a reader may allocate for `n` input bytes: the copied arguments,
/// one vector header per argument (an argument takes at least four bytes on
/// the wire) and a small constant, with room for a vector's doubling.
fn budget(n: usize) -> usize {
    4 * (n + 6 * n) + 4096
}

/// Feeds `wire` to `parse_resume` one more byte at a time and checks that
/// the first decision equals the whole buffer's, and that nothing before it
/// was anything but "incomplete".
fn check_resume(wire: &[u8], limits: &Limits) -> Result<(), TestCaseError> {
    let whole = parse(wire, limits);
    let mut bufs = ArgBufs::default();
    for k in 0..=wire.len() {
        match parse_resume(&wire[..k], limits, &mut bufs) {
            Ok(None) => continue,
            Ok(Some(used)) => {
                let Ok(Some((args, n))) = &whole else {
                    return Err(TestCaseError::fail(format!(
                        "split at {k} read a command, whole read {whole:?}"
                    )));
                };
                prop_assert_eq!(used, *n, "split at {}", k);
                prop_assert_eq!(bufs.args(), &args[..], "split at {}", k);
                return Ok(());
            }
            Err(e) => {
                // An error found on a prefix is an error of the whole.
                prop_assert_eq!(&whole, &Err(e), "split at {}", k);
                return Ok(());
            }
        }
    }
    prop_assert_eq!(whole, Ok(None));
    Ok(())
}

/// The stream readers decide once: every prefix is "incomplete" or the same
/// decision as every longer prefix.
fn check_stream(wire: &[u8], limits: &FrameLimits) -> Result<(), TestCaseError> {
    let whole_frame = parse_frame(wire, limits);
    let whole_scan = scan_command(wire, limits);
    let mut decided_frame = false;
    let mut decided_scan = false;
    for k in 0..=wire.len() {
        let part = &wire[..k];
        let f = parse_frame(part, limits);
        if decided_frame {
            prop_assert_eq!(&f, &whole_frame, "parse_frame at {}", k);
        } else if f != Ok(None) {
            // Once decided on a prefix, the whole agrees (a status or error
            // line is decided by its CRLF, a command by its last byte).
            prop_assert_eq!(&f, &whole_frame, "parse_frame first decided at {}", k);
            decided_frame = true;
        }
        let s = scan_command(part, limits);
        if decided_scan {
            prop_assert_eq!(&s, &whole_scan, "scan_command at {}", k);
        } else if s != Ok(None) {
            prop_assert_eq!(&s, &whole_scan, "scan_command first decided at {}", k);
            decided_scan = true;
        }
    }
    if let Ok(Some(Frame::Command(args, n))) = &whole_frame {
        // What the canonical reader accepts is exactly an encoding.
        let mut again = Vec::new();
        encode_command(&mut again, args);
        prop_assert_eq!(&again[..], &wire[..*n]);
        prop_assert_eq!(whole_scan, Ok(Some(*n)));
    }
    Ok(())
}

fn check_all(wire: &[u8]) -> Result<(), TestCaseError> {
    for limits in [
        Limits::default(),
        WIDE,
        Limits {
            max_args: 3,
            max_bulk: 8,
            max_request: 40,
        },
    ] {
        let (_, peak) = peak_of(|| parse(wire, &limits));
        prop_assert!(
            peak <= budget(wire.len()),
            "parse of {} bytes allocated {} bytes",
            wire.len(),
            peak
        );
        check_resume(wire, &limits)?;
    }
    for limits in [
        FrameLimits::default(),
        WIDE_FRAMES,
        FrameLimits {
            max_args: 3,
            max_bulk: 8,
            max_line: 64,
        },
    ] {
        let (_, peak) = peak_of(|| parse_frame(wire, &limits));
        prop_assert!(
            peak <= budget(wire.len()),
            "parse_frame of {} bytes allocated {} bytes",
            wire.len(),
            peak
        );
        check_stream(wire, &limits)?;
    }
    Ok(())
}

/// One edit of a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the byte at (position modulo length).
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    /// Replace a run of digits (a length) with another number.
    Length(usize, u64),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let framing = prop_oneof![
        Just(b'\r'),
        Just(b'\n'),
        Just(b'*'),
        Just(b'$'),
        Just(b'+'),
        Just(b'-'),
        Just(b'0'),
        Just(b'9'),
        Just(b' '),
        Just(b'"'),
        any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), framing.clone()).prop_map(|(p, b)| Mutation::Set(p, b)),
        (any::<usize>(), framing).prop_map(|(p, b)| Mutation::Insert(p, b)),
        any::<usize>().prop_map(Mutation::Delete),
        (
            any::<usize>(),
            prop_oneof![
                Just(0u64),
                Just(1u64 << 20),
                Just(1u64 << 31),
                Just(u64::MAX),
                any::<u64>(),
                0u64..64
            ]
        )
            .prop_map(|(p, n)| Mutation::Length(p, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(wire: &mut Vec<u8>, m: &Mutation) {
    if wire.is_empty() {
        return;
    }
    let at = |p: usize| p % wire.len();
    match *m {
        Mutation::Set(p, b) => {
            let i = at(p);
            wire[i] = b;
        }
        Mutation::Insert(p, b) => {
            let i = at(p);
            wire.insert(i, b);
        }
        Mutation::Delete(p) => {
            let i = at(p);
            wire.remove(i);
        }
        Mutation::Length(p, n) => {
            // The digits after the first `*` or `$` at or after p.
            let start = at(p);
            let Some(mark) = wire[start..]
                .iter()
                .position(|&b| b == b'*' || b == b'$')
                .map(|i| start + i + 1)
            else {
                return;
            };
            let end = wire[mark..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map_or(wire.len(), |i| mark + i);
            wire.splice(mark..end, n.to_string().into_bytes());
        }
        Mutation::Truncate(p) => {
            let i = at(p);
            wire.truncate(i);
        }
    }
}

fn command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let word = prop_oneof![
        Just(b"SET".to_vec()),
        Just(b"fleet".to_vec()),
        Just(b"POINT".to_vec()),
        Just(b"33.5".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..12),
    ];
    prop::collection::vec(word, 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Valid commands, pipelined, then edited: every reader, whole and at
    /// every split, agrees with itself and allocates within the budget.
    #[test]
    fn mutated_commands(
        cmds in prop::collection::vec(command(), 1..3),
        edits in prop::collection::vec(mutation(), 0..4),
        status in any::<bool>(),
    ) {
        let mut wire = Vec::new();
        for c in &cmds {
            encode_command(&mut wire, c);
        }
        if status {
            wire.extend_from_slice(b"+OFFSET 12\r\n");
        }
        for m in &edits {
            apply(&mut wire, m);
        }
        check_all(&wire)?;
    }

    /// Random bytes rich in framing characters.
    #[test]
    fn random_bytes(
        bytes in prop::collection::vec(
            prop_oneof![
                Just(b'*'), Just(b'$'), Just(b'+'), Just(b'-'), Just(b'\r'), Just(b'\n'),
                Just(b'0'), Just(b'1'), Just(b'9'), Just(b' '), Just(b'"'), any::<u8>()
            ],
            0..80,
        )
    ) {
        check_all(&bytes)?;
    }
}

/// Claimed sizes far beyond the bytes present, within generous caps: the
/// readers wait for the bytes rather than reserving room for them.
#[test]
fn claimed_sizes_allocate_nothing_in_advance() {
    let cases: &[&[u8]] = &[
        b"*1048576\r\n",
        b"*1048576\r\n$3\r\nSET\r\n",
        b"*2\r\n$536870912\r\n",
        b"*2\r\n$536870912\r\nabc",
        b"*1\r\n$99999999999999999999\r\n",
        b"*-1\r\n",
    ];
    for wire in cases {
        let (r, peak) = peak_of(|| parse(wire, &WIDE));
        assert!(
            peak <= budget(wire.len()),
            "{:?}: parse allocated {peak} bytes ({r:?})",
            String::from_utf8_lossy(wire)
        );
        let (r, peak) = peak_of(|| parse_frame(wire, &WIDE_FRAMES));
        assert!(
            peak <= budget(wire.len()),
            "{:?}: parse_frame allocated {peak} bytes ({r:?})",
            String::from_utf8_lossy(wire)
        );
        let mut bufs = ArgBufs::default();
        let (r, peak) = peak_of(|| parse_resume(wire, &WIDE, &mut bufs));
        assert!(
            peak <= budget(wire.len()),
            "{:?}: parse_resume allocated {peak} bytes ({r:?})",
            String::from_utf8_lossy(wire)
        );
    }
}
