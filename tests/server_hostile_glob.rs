//! Issue 15, MATCH globs: a pattern built to make a backtracking matcher
//! take `len(id) × len(pattern)` steps (`*a*a*a…b` against a long run of
//! `a`) is matched in one pass, patterns past the cap are refused, and other
//! clients are served while such searches run.

use std::io::Write;
use std::time::Duration;

use e2e::{exchange, resp, run, start};

#[test]
fn hostile_match_patterns_are_capped_and_linear_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    // A 200 KB id.
    let id = "a".repeat(200_000);
    let r: String = redis::cmd("SET")
        .arg("fleet")
        .arg(&id)
        .arg("POINT")
        .arg(1)
        .arg(2)
        .query(&mut c)
        .unwrap();
    assert_eq!(r, "OK");
    assert_eq!(run(&mut c, "SET fleet b POINT 1 2"), "OK");

    // Past the cap (100 KB, as in the report): refused for every command
    // that takes a pattern, and nothing is removed.
    let huge = "*a".repeat(50_000) + "b";
    for cmd in [
        vec!["SCAN", "fleet", "MATCH", huge.as_str(), "IDS"],
        vec![
            "NEARBY",
            "fleet",
            "MATCH",
            huge.as_str(),
            "IDS",
            "POINT",
            "1",
            "2",
            "1000",
        ],
        vec![
            "WITHIN",
            "fleet",
            "MATCH",
            huge.as_str(),
            "IDS",
            "BOUNDS",
            "0",
            "0",
            "3",
            "3",
        ],
        vec![
            "INTERSECTS",
            "fleet",
            "MATCH",
            huge.as_str(),
            "IDS",
            "BOUNDS",
            "0",
            "0",
            "3",
            "3",
        ],
        vec!["KEYS", huge.as_str()],
        vec!["PDEL", "fleet", huge.as_str()],
    ] {
        let mut q = redis::cmd(cmd[0]);
        for a in &cmd[1..] {
            q.arg(*a);
        }
        let r = e2e::render(q.query::<redis::Value>(&mut c));
        assert_eq!(r, "ERR:pattern too long (over 1024 bytes)", "{}", cmd[0]);
    }
    assert_eq!(run(&mut c, "SCAN fleet COUNT"), "2");

    // At the cap: two clients each pipeline searches that cost a
    // backtracking matcher 200,000 × 1,024 steps per match.
    let at_cap = "*a".repeat(511) + "bb";
    assert_eq!(at_cap.len(), 1024);
    let search = resp(&[b"SCAN", b"fleet", b"MATCH", at_cap.as_bytes(), b"IDS"]);
    let mut attackers: Vec<_> = (0..2).map(|_| server.raw()).collect();
    for a in &mut attackers {
        a.write_all(&search.repeat(5)).unwrap();
    }
    // A third client is served meanwhile (the deadline is the client's
    // 30 s read timeout, only there so that a hang fails the test).
    let mut other = server.client();
    assert_eq!(run(&mut other, "PING"), "PONG");
    assert_eq!(run(&mut other, "SCAN fleet MATCH b IDS"), "[0 [b]]");
    // Each search is answered, and correctly: no id ends in "bb".
    let one = b"*2\r\n:0\r\n*0\r\n";
    for a in &mut attackers {
        a.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let (got, _) = exchange(a, b"", one.len() * 5);
        assert_eq!(got, one.repeat(5));
    }
    // And a pattern at the cap that does match.
    let matching = "*a".repeat(511) + "*a";
    let r: redis::Value = redis::cmd("SCAN")
        .arg("fleet")
        .arg("MATCH")
        .arg(&matching)
        .arg("COUNT")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, redis::Value::Int(1));
    // CONFIG GET takes Redis globs and matches them the same way.
    let r = e2e::render(
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("*a".repeat(400) + "[x]")
            .query::<redis::Value>(&mut c),
    );
    assert_eq!(r, "[]");
}
