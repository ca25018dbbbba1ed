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

use std::sync::Arc;

use proptest::prelude::*;

use crate::aof::Aof;
use crate::cmd::ctx::{Ctx, Session};
use crate::cmd::dispatch::execute;
use crate::cmd::spec::{self, Cmd};
use crate::state::{shared_on, Core, Shared};
use geohook_resp::Reply;

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
            let reply = execute(&shared, &mut session, args);
            let mut out = Vec::new();
            reply.encode(&mut out);
            prop_assert!(out.len() <= MAX_REPLY, "{} bytes of reply", out.len());
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
        if spec::lookup(&crate::cmd::args::lower(&cmd[0])).is_some() {
            let _ = crate::replay::apply(&mut core, None, &cmd);
        }
        if cmd[0].eq_ignore_ascii_case(b"sethook") {
            let _ = crate::cmd::hooks::SetHook::parse(&core.db, &cmd, Ctx::new(false).now());
        }
    }
}
