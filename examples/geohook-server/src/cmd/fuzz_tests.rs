//! Fuzzing the command layer on stable: random argument vectors for every
//! row of the command table, through the dispatcher as a client sends them,
//! through the replay path as a damaged file would hand them over, and
//! through the hook parser (the unit-test state has no hook engine, so the
//! dispatcher alone would stop SETHOOK early). Nothing may panic, every
//! refusal is a clean error reply, and no reply grows past the output cap.
//!
//! Arguments are drawn from the words the parsers look for (options, shapes,
//! numbers at their edges, JSON fragments) mixed with random bytes, so that
//! most cases get past the first keyword and into the value parsers.
//!
//! Allocation is bounded too: a counting allocator (this test binary's
//! global allocator, counting per thread so that tests running in parallel
//! do not see each other's memory) measures the peak a command allocates
//! while it runs and its reply is encoded, which must stay within a budget
//! in proportion to the command's bytes (`ALLOC_PER_BYTE`, `ALLOC_BASE`):
//! a number in a request (`LIMIT 1000000`, `COUNT`, a cursor) must never
//! become a reservation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use proptest::prelude::*;

use crate::aof::Aof;
use crate::cmd::ctx::{Ctx, Session};
use crate::cmd::dispatch::execute;
use crate::cmd::spec::{self, Cmd};
use crate::state::{shared_on, Core, Shared};
use geohook_resp::Reply;

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
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc_zeroed(layout) }
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

/// Bytes allocated at the peak of `f` on this thread, above what was live
/// when it began.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

/// What a command may allocate per byte of its arguments: the copies a
/// parser keeps (the id, the GeoJSON text and its parsed geometry), the
/// logged record and the reply that quotes them.
const ALLOC_PER_BYTE: usize = 64;

/// What any command may allocate whatever its size: a reply over the
/// seeded state of four objects, the log's record buffer, a search's small
/// heaps and the command's own vectors.
const ALLOC_BASE: usize = 256 << 10;

/// The allocation budget of one command of `args`.
fn alloc_budget(args: &[Vec<u8>]) -> usize {
    let bytes: usize = args.iter().map(|a| a.len() + 16).sum();
    ALLOC_BASE + ALLOC_PER_BYTE * bytes
}

/// The budget can fail: the counter sees a command's reservations (a
/// vector reserved from a number in the request would show here).
#[test]
fn the_allocation_counter_sees_what_a_command_reserves() {
    let (v, peak) = peak_of(|| Vec::<u64>::with_capacity(1 << 20));
    assert!(peak >= 8 << 20, "{peak}");
    drop(v);
    let args: Vec<Vec<u8>> = vec![b"scan".to_vec(), b"fleet".to_vec()];
    assert!(alloc_budget(&args) < 8 << 20);
}

/// Words every parser of the table knows, plus values at the edges of what
/// they accept.
const WORDS: &[&str] = &[
    "fleet",
    "truck",
    "x",
    "*",
    "?",
    "[",
    "\\",
    "POINT",
    "BOUNDS",
    "OBJECT",
    "STRING",
    "HASH",
    "FIELD",
    "EX",
    "PX",
    "PXAT",
    "NX",
    "XX",
    "MATCH",
    "LIMIT",
    "CURSOR",
    "WHERE",
    "WHEREIN",
    "NOFIELDS",
    "IDS",
    "COUNT",
    "POINTS",
    "OBJECTS",
    "HASHES",
    "BOUNDS",
    "FENCE",
    "DETECT",
    "enter,exit,inside,outside,cross",
    "COMMANDS",
    "set,del",
    "GET",
    "CIRCLE",
    "TILE",
    "QUADKEY",
    "SECTOR",
    "AREA",
    "DISTANCE",
    "ASC",
    "DESC",
    "SPARSE",
    "CLIP",
    "BUFFER",
    "speed",
    "0",
    "1",
    "-1",
    "2",
    "90",
    "-90",
    "180",
    "-181",
    "1e308",
    "1e309",
    "-0",
    "NaN",
    "inf",
    "-inf",
    "0.5",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "4294967296",
    "",
    " ",
    "http://127.0.0.1:1/x",
    "kafka://h:1/t",
    "{}",
    "[]",
    "null",
    "{\"type\":\"Point\",\"coordinates\":[1,2]}",
    "{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1,0],[1,1],[0,0]]]}",
    "{\"type\":\"LineString\",\"coordinates\":[]}",
    "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\"}]}",
    "{\"type\":\"MultiPoint\",\"coordinates\":[[1e309,1]]}",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "json",
    "resp",
    "yes",
    "no",
    "maxmemory",
    "requirepass",
    "ROLE",
    "no one",
    "ALL",
    "ACK",
];

fn arg() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::sample::select(WORDS).prop_map(|w| w.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..24),
        1 => (-1000i64..1000).prop_map(|n| n.to_string().into_bytes()),
        1 => any::<f64>().prop_map(|f| f.to_string().into_bytes()),
    ]
}

/// A command: a row of the table (name in random case) and its arguments.
fn command() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let rows: Vec<&'static str> = spec::TABLE
        .iter()
        // A follower's PSYNC turns the connection into a replication link
        // and is served by the connection loop, not the dispatcher.
        .filter(|s| s.cmd != Cmd::Psync)
        .map(|s| s.name)
        .collect();
    (
        prop::sample::select(rows),
        any::<bool>(),
        prop::collection::vec(arg(), 0..14),
    )
        .prop_map(|(name, upper, rest)| {
            let name = if upper {
                name.to_ascii_uppercase()
            } else {
                name.to_owned()
            };
            let mut args = vec![name.into_bytes()];
            args.extend(rest);
            args
        })
}

/// A state with a few objects of every shape, so that reads and GET areas
/// find something.
fn seeded(dir: &std::path::Path) -> Arc<Shared> {
    let shared = Arc::new(shared_on(&dir.join("a.aof")));
    for line in [
        "SET fleet truck FIELD speed 3 POINT 33 -115",
        "SET fleet x BOUNDS 0 0 1 1",
        "SET fleet s STRING hello",
        "SET zone x OBJECT {\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1,0],[1,1],[0,0]]]}",
    ] {
        let args: Vec<Vec<u8>> = line.split(' ').map(|a| a.as_bytes().to_vec()).collect();
        assert_eq!(
            execute(&shared, &mut Session::new(true), &args),
            Reply::ok()
        );
    }
    shared
}

/// Largest reply a case may produce: the output cap's order of magnitude for
/// a state of four objects.
const MAX_REPLY: usize = 1 << 20;

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_commands_get_replies_not_panics(cmds in prop::collection::vec(command(), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        let shared = seeded(dir.path());
        let mut session = Session::new(true);
        for args in &cmds {
            let ((reply, out), peak) = peak_of(|| {
                let reply = execute(&shared, &mut session, args);
                let mut out = Vec::new();
                reply.encode(&mut out);
                (reply, out)
            });
            prop_assert!(out.len() <= MAX_REPLY, "{} bytes of reply", out.len());
            let budget = alloc_budget(args);
            prop_assert!(
                peak <= budget,
                "{:?} allocated {} bytes at its peak, budget {}",
                String::from_utf8_lossy(&args.concat()), peak, budget
            );
            if let Reply::Error(_) = &reply {
                // A clean error is one line on the wire, whatever bytes of
                // the request it quotes.
                let body = &out[..out.len() - 2];
                prop_assert!(out.starts_with(b"-") && out.ends_with(b"\r\n"), "{out:?}");
                prop_assert!(!body.contains(&b'\n') && !body.contains(&b'\r'), "{out:?}");
            }
            // The session is reset between commands as the connection does.
            if session.quit {
                session = Session::new(true);
            }
        }
        // Every write that was accepted was logged in a form the replay path
        // reads back to the same state.
        shared.flush_aof().unwrap();
        let bytes = std::fs::read(dir.path().join("a.aof")).unwrap();
        let mut copy = Core {
            db: geohook_db::Database::new(),
            aof: Aof::open(&dir.path().join("b.aof")).unwrap(),
            loading: true,
        };
        crate::replay::load(&dir.path().join("a.aof"), &bytes, &mut copy, None)
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let now = Ctx::new(false).now();
        prop_assert_eq!(
            copy.db.canonical_dump(now),
            shared.core.read().db.canonical_dump(now)
        );
    }

    /// A write as a damaged (but well-framed) file could hold it: the replay
    /// path answers with an error or applies it, and never panics.
    #[test]
    fn random_records_replay_or_fail_cleanly(cmd in command()) {
        let dir = tempfile::tempdir().unwrap();
        let shared = seeded(dir.path());
        let mut core = shared.core.write();
        core.loading = true;
        if spec::lookup_sent(&cmd[0]).is_some() {
            let _ = crate::replay::apply(&mut core, None, &cmd);
        }
        if cmd[0].eq_ignore_ascii_case(b"sethook") {
            let _ = crate::cmd::hooks::SetHook::parse(&core.db, &cmd, Ctx::new(false).now());
        }
    }
}
