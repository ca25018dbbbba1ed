//! Issue 15, numbers from a client: a huge, negative or out-of-range number
//! never turns into an overflowed deadline, offset or count. Huge TTLs
//! saturate (the object stays, TTL stays positive or "none"), and every
//! such deadline survives a restart and an AOFSHRINK.

use e2e::{run, start};

#[test]
fn huge_ttls_keep_the_object_and_survive_restart_and_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "SET fleet a POINT 1 2"), "OK");
    // A float that overflows i64 milliseconds many times over.
    assert_eq!(run(&mut c, "EXPIRE fleet a 1e300"), "1");
    assert_eq!(run(&mut c, "SET fleet b EX 1e30 POINT 1 2"), "OK");
    assert_eq!(
        run(&mut c, "SET fleet c PXAT 9223372036854775806 POINT 1 2"),
        "OK"
    );
    assert_eq!(run(&mut c, "SET fleet d EX 9.2e15 POINT 1 2"), "OK");
    assert_eq!(
        run(
            &mut c,
            "SETHOOK h http://127.0.0.1:9/x EX 1e30 NEARBY fleet FENCE POINT 1 2 100"
        ),
        "1"
    );
    let check = |c: &mut redis::Connection, when: &str| {
        for id in ["a", "b", "c", "d"] {
            assert_eq!(run(c, &format!("EXISTS fleet {id}")), "1", "{id} {when}");
            let ttl: i64 = run(c, &format!("TTL fleet {id}")).parse().unwrap();
            assert!(ttl == -1 || ttl > 1_000_000_000, "{id} {when}: TTL {ttl}");
        }
        let hooks = run(c, "HOOKS *");
        assert!(hooks.contains("[h "), "{when}: {hooks}");
    };
    check(&mut c, "at once");
    let server = server.restart().unwrap();
    let mut c = server.client();
    check(&mut c, "after restart");
    assert_eq!(run(&mut c, "AOFSHRINK"), "OK");
    assert!(e2e::wait_until(std::time::Duration::from_secs(30), || {
        server.stat(&mut c, "aof_rewrites") != "0"
    }));
    let server = server.restart().unwrap();
    let mut c = server.client();
    check(&mut c, "after shrink and restart");
}

#[test]
fn extreme_deadlines_counts_and_offsets_get_an_answer_or_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "SET fleet a POINT 1 2"), "OK");
    assert_eq!(run(&mut c, "SET fleet b POINT 1 2"), "OK");
    // Numbers beyond what the server stores are refused, not wrapped.
    for (line, want) in [
        (
            "PEXPIREAT fleet a 99999999999999999999",
            "ERR:invalid argument '99999999999999999999'",
        ),
        (
            "SET fleet x PXAT 1e3 POINT 1 2",
            "ERR:invalid argument '1e3'",
        ),
        ("SET fleet x EX nan POINT 1 2", "ERR:invalid argument 'nan'"),
        ("SET fleet x EX inf POINT 1 2", "ERR:invalid argument 'inf'"),
        ("EXPIRE fleet a -inf", "ERR:invalid argument '-inf'"),
        ("SCAN fleet LIMIT -1 IDS", "ERR:invalid argument '-1'"),
        ("SCAN fleet CURSOR -1 IDS", "ERR:invalid argument '-1'"),
        (
            "SCAN fleet LIMIT 99999999999999999999 IDS",
            "ERR:invalid argument '99999999999999999999'",
        ),
    ] {
        assert_eq!(run(&mut c, line), want, "{line}");
    }
    // The largest values that parse are served.
    assert_eq!(
        run(&mut c, "SCAN fleet LIMIT 18446744073709551615 IDS"),
        "[0 [a b]]"
    );
    assert_eq!(
        run(&mut c, "SCAN fleet CURSOR 18446744073709551615 IDS"),
        "[0 []]"
    );
    assert_eq!(
        run(&mut c, "SCAN fleet CURSOR 1 LIMIT 18446744073709551615 IDS"),
        "[0 [b]]"
    );
    assert_eq!(run(&mut c, "PEXPIREAT fleet a 9223372036854775807"), "1");
    assert_eq!(run(&mut c, "EXISTS fleet a"), "1");
    // A deadline in the past (the most negative one included) removes the
    // object, as Redis does; a negative EX does the same.
    assert_eq!(run(&mut c, "PEXPIREAT fleet a -9223372036854775808"), "1");
    assert_eq!(run(&mut c, "EXISTS fleet a"), "0");
    assert_eq!(run(&mut c, "EXPIRE fleet b -1e300"), "1");
    assert_eq!(run(&mut c, "EXISTS fleet b"), "0");
    // The server is still whole, and a restart replays every logged deadline.
    let server = server.restart().unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "SCAN fleet IDS"), "[0 []]");
}
