//! Lua scripting against the real binary: the cases of Tile38's own
//! scripts tests in RESP2 and in JSON, EVALRO refusing writes, EVALSHA and
//! NOSCRIPT, the script cache's cap, a script's writes surviving a restart
//! and reaching a follower, and an endless script stopped by the time limit
//! while another client is served.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::{free_port, render, run, start, wait_until};
use serde_json::{json, Value};

/// A command from its arguments (scripts hold spaces, so no line split).
fn cmd(parts: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(parts[0]);
    for p in &parts[1..] {
        c.arg(*p);
    }
    c
}

/// The reply rendered as Tile38's tests print it.
fn q(conn: &mut redis::Connection, parts: &[&str]) -> String {
    render(cmd(parts).query::<redis::Value>(conn))
}

/// The JSON reply without `elapsed`.
fn qj(conn: &mut redis::Connection, parts: &[&str]) -> Value {
    let text: String = cmd(parts)
        .query(conn)
        .unwrap_or_else(|e| panic!("{parts:?}: {e}"));
    let mut v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    v.as_object_mut().unwrap().remove("elapsed");
    v
}

const SHA_2_PLUS_2: &str = "2dd1b44209ecb49617af05caf0491390a03c1cc4";

/// One case: the command, its RESP2 reply as rendered, its JSON `result`.
type Case<'a> = (&'a [&'a str], &'a str, Value);

fn check(conn: &mut redis::Connection, jconn: &mut redis::Connection, cases: &[Case<'_>]) {
    for (parts, want, result) in cases {
        assert_eq!(q(conn, parts), *want, "{parts:?}");
        let got = qj(jconn, parts);
        let want_json = match result {
            Value::Null if want.starts_with("ERR:") => got.clone(),
            r => json!({"ok": true, "result": r}),
        };
        assert_eq!(got, want_json, "{parts:?} in JSON");
    }
}

#[test]
fn tile38s_script_tests_in_resp_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let mut j = server.json_client();

    // Mirrors Tile38's scripts_BASIC_test.
    check(
        &mut c,
        &mut j,
        &[
            (&["EVAL", "return 2 + 2", "0"], "4", json!(4)),
            (
                &["SCRIPT", "LOAD", "return 2 + 2"],
                SHA_2_PLUS_2,
                json!(SHA_2_PLUS_2),
            ),
            (
                &["SCRIPT", "EXISTS", SHA_2_PLUS_2, "no_script"],
                "[1 0]",
                json!([1, 0]),
            ),
            (&["EVALSHA", SHA_2_PLUS_2, "0"], "4", json!(4)),
        ],
    );
    assert_eq!(q(&mut c, &["SCRIPT", "FLUSH"]), "OK");
    assert_eq!(qj(&mut j, &["SCRIPT", "FLUSH"]), json!({"ok": true}));
    check(
        &mut c,
        &mut j,
        &[
            (
                &["SCRIPT", "EXISTS", SHA_2_PLUS_2, "no_script"],
                "[0 0]",
                json!([0, 0]),
            ),
            (
                &["EVAL", "return KEYS[1] .. ' only'", "1", "key1"],
                "key1 only",
                json!("key1 only"),
            ),
            (
                &["EVAL", "return KEYS[1] .. ' and ' .. ARGV[1]", "1", "key1", "arg1"],
                "key1 and arg1",
                json!("key1 and arg1"),
            ),
            (
                &["EVAL", "return ARGV[1] .. ' and ' .. ARGV[2]", "0", "arg1", "arg2"],
                "arg1 and arg2",
                json!("arg1 and arg2"),
            ),
            (
                &["EVAL", "return tile38.sha1hex('asdf')", "0"],
                "3da541559918a808c2402bba5012f6c60b27661c",
                json!("3da541559918a808c2402bba5012f6c60b27661c"),
            ),
            // JSON keeps the fraction: Tile38 floors numbers for RESP only.
            (
                &[
                    "EVAL",
                    "return math.floor(tile38.distance_to(37.7341129, -122.4408378, 37.733, -122.43))",
                    "0",
                ],
                "961",
                json!(961),
            ),
        ],
    );

    // Tile38's own distance case: RESP floors the number, JSON keeps it.
    let dist = "return tile38.distance_to(37.7341129, -122.4408378, 37.733, -122.43)";
    assert_eq!(q(&mut c, &["EVAL", dist, "0"]), "961");
    let meters = qj(&mut j, &["EVAL", dist, "0"])["result"].as_f64().unwrap();
    assert!((961.0..962.0).contains(&meters), "{meters}");

    // Mirrors Tile38's scripts_ATOMIC_test; the SETs here go to keys the
    // JSON pass then reads back.
    let get = "return tile38.call('get', KEYS[1], ARGV[1])";
    let set = "return tile38.call('set', KEYS[1], ARGV[1], 'point', 33, -115)";
    let get_point = "return tile38.call('get', KEYS[1], ARGV[1], ARGV[2])";
    assert_eq!(q(&mut c, &["EVAL", get, "1", "mykey", "myid"]), "nil");
    assert_eq!(q(&mut c, &["EVAL", set, "1", "mykey", "myid1"]), "OK");
    assert_eq!(
        q(&mut c, &["EVAL", get_point, "1", "mykey", "myid1", "point"]),
        "[33 -115]"
    );
    assert_eq!(
        qj(&mut j, &["EVAL", get, "1", "mykey", "myid"]),
        json!({"ok": true, "result": false})
    );
    assert_eq!(
        qj(&mut j, &["EVAL", set, "1", "jkey", "myid1"]),
        json!({"ok": true, "result": {"ok": "OK"}})
    );
    assert_eq!(
        qj(&mut j, &["EVAL", get_point, "1", "jkey", "myid1", "point"]),
        json!({"ok": true, "result": ["33", "-115"]})
    );

    // Mirrors Tile38's scripts_READONLY_test.
    assert_eq!(q(&mut c, &["EVALRO", get, "1", "rokey", "myid"]), "nil");
    // Tile38 expects a message holding "ERR read only": the script's
    // error is `ERR read only` (a tail call, as here, names no line).
    assert_eq!(
        q(&mut c, &["EVALRO", set, "1", "rokey", "myid1"]),
        "ERR:read only"
    );
    let jrefused = qj(&mut j, &["EVALRO", set, "1", "rokey", "myid1"]);
    assert_eq!(jrefused["ok"], json!(false), "{jrefused}");
    assert!(
        jrefused["err"].as_str().unwrap().contains("ERR read only"),
        "{jrefused}"
    );
    let pset = set.replace("call", "pcall");
    assert_eq!(
        q(&mut c, &["EVALRO", &pset, "1", "rokey", "myid1"]),
        "ERR:read only"
    );
    assert_eq!(
        qj(&mut j, &["EVALRO", &pset, "1", "rokey", "myid1"]),
        json!({"ok": true, "result": {"err": "read only"}})
    );
    assert_eq!(run(&mut c, "SET rokey myid1 POINT 33 -115"), "OK");
    assert_eq!(
        q(
            &mut c,
            &["EVALRO", get_point, "1", "rokey", "myid1", "point"]
        ),
        "[33 -115]"
    );
    assert_eq!(run(&mut c, "EXISTS rokey myid1"), "1");
    // The refused write left nothing behind.
    assert_eq!(run(&mut c, "KEYS rokey*"), "[rokey]");

    // Mirrors Tile38's scripts_NONATOMIC_test.
    assert_eq!(q(&mut c, &["EVALNA", get, "1", "nakey", "myid"]), "nil");
    assert_eq!(q(&mut c, &["EVALNA", set, "1", "nakey", "myid1"]), "OK");
    assert_eq!(
        q(
            &mut c,
            &["EVALNA", get_point, "1", "nakey", "myid1", "point"]
        ),
        "[33 -115]"
    );

    // Mirrors Tile38's scripts_VULN_test.
    for name in [
        "io",
        "file",
        "os.execute",
        "os.getenv",
        "loadfile",
        "package",
    ] {
        let src = format!("return {name}");
        assert_eq!(q(&mut c, &["EVAL", &src, "0"]), "nil", "{name}");
        assert_eq!(
            qj(&mut j, &["EVAL", &src, "0"]),
            json!({"ok": true, "result": null}),
            "{name}"
        );
    }
    assert_eq!(
        q(&mut c, &["EVAL", "return os.clock", "0"]),
        "ERR:Unsupported lua type: function"
    );
    assert_eq!(
        q(&mut c, &["EVAL", "return tonumber(ARGV[1])", "0", "38"]),
        "38"
    );
    assert_eq!(
        qj(&mut j, &["EVAL", "return tonumber(ARGV[1])", "0", "38"]),
        json!({"ok": true, "result": 38})
    );
}

#[test]
fn evalsha_noscript_arguments_and_the_cache_cap() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--script-cache-max", "2"]).unwrap();
    let mut c = server.client();
    let mut j = server.json_client();
    assert_eq!(
        q(&mut c, &["EVALSHA", SHA_2_PLUS_2, "0"]),
        "ERR:NOSCRIPT sha not found"
    );
    assert_eq!(
        qj(&mut j, &["EVALROSHA", SHA_2_PLUS_2, "0"]),
        json!({"ok": false, "err": "NOSCRIPT sha not found"})
    );
    assert_eq!(q(&mut c, &["EVAL", "return 2 + 2", "0"]), "4");
    // EVAL cached the script, as in Tile38.
    assert_eq!(q(&mut c, &["EVALNASHA", SHA_2_PLUS_2, "0"]), "4");
    assert_eq!(q(&mut c, &["SCRIPT", "LOAD", "return 1"]).len(), 40);
    let full = q(&mut c, &["SCRIPT", "LOAD", "return 3"]);
    assert!(full.contains("script cache is full (2 scripts)"), "{full}");
    let full = q(&mut c, &["EVAL", "return 3", "0"]);
    assert!(full.contains("script cache is full"), "{full}");
    // Cached scripts still run by EVAL.
    assert_eq!(q(&mut c, &["EVAL", "return 1", "0"]), "1");
    assert_eq!(q(&mut c, &["SCRIPT", "FLUSH"]), "OK");
    assert_eq!(q(&mut c, &["EVAL", "return 3", "0"]), "3");

    for (parts, want) in [
        (&["EVAL", "return 1", "-1"][..], "ERR:invalid argument '-1'"),
        (
            &["EVAL", "return 1", "3", "a"],
            "ERR:wrong number of arguments for 'eval' command",
        ),
        (
            &["EVAL", "return 1", "99999999999999999999999"],
            "ERR:invalid argument '99999999999999999999999'",
        ),
        (
            &["EVAL", "return 1"],
            "ERR:wrong number of arguments for 'eval' command",
        ),
        (
            &[
                "EVAL",
                "return tile38.call('config', 'get', 'maxmemory')",
                "0",
            ],
            "ERR:command not supported in scripts",
        ),
    ] {
        assert_eq!(q(&mut c, parts), want, "{parts:?}");
    }
    let syntax = q(&mut c, &["EVAL", "return +", "0"]);
    assert!(syntax.starts_with("ERR:f_"), "{syntax}");
    assert_eq!(q(&mut c, &["SCRIPT", "FLUSH"]), "OK");

    // Tile38's json module.
    let enc = "return json.encode({name = ARGV[1], list = {1, 2}})";
    assert_eq!(
        q(&mut c, &["EVAL", enc, "0", "x"]),
        r#"{"list":[1,2],"name":"x"}"#
    );
    let dec = "return json.decode(ARGV[1]).a[2]";
    assert_eq!(q(&mut c, &["EVAL", dec, "0", r#"{"a":[5,6]}"#]), "6");
    // Under TIMEOUT a script stops at the deadline with Tile38's error.
    assert_eq!(q(&mut c, &["SCRIPT", "FLUSH"]), "OK");
    assert_eq!(
        q(
            &mut c,
            &["TIMEOUT", "0.2", "EVALRO", "while true do end", "0"]
        ),
        "ERR:timeout"
    );
}

#[test]
fn a_scripts_writes_survive_a_restart_and_reach_a_follower() {
    let ldir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_s = port.to_string();
    let leader = start(ldir.path(), &["--port", &port_s, "--appendfsync", "always"]).unwrap();
    let mut lc = leader.client();
    let two_sets = "tile38.call('set', KEYS[1], 'a', 'point', 33, -115) \
                    tile38.call('set', KEYS[1], 'b', 'point', 34, -116) \
                    return tile38.call('scan', KEYS[1], 'ids')";
    assert_eq!(q(&mut lc, &["EVAL", two_sets, "1", "fleet"]), "[0 [a b]]");
    // A script that fails after a write keeps the write, as in Redis.
    let fails = "tile38.call('set', KEYS[1], 'c', 'point', 35, -117) error('stop here')";
    let err = q(&mut lc, &["EVAL", fails, "1", "fleet"]);
    assert!(err.contains("stop here"), "{err}");

    let leader = leader.restart().unwrap();
    let mut lc = leader.client();
    assert_eq!(run(&mut lc, "SCAN fleet IDS"), "[0 [a b c]]");
    let log = String::from_utf8_lossy(&std::fs::read(leader.aof()).unwrap()).to_lowercase();
    assert!(!log.contains("eval"), "scripts are logged by their effects");

    let fdir = tempfile::tempdir().unwrap();
    let follower = start(fdir.path(), &["--appendfsync", "always"]).unwrap();
    let mut fc = follower.client();
    assert_eq!(run(&mut fc, &format!("FOLLOW 127.0.0.1 {port}")), "OK");
    let scan = "return tile38.call('scan', KEYS[1], 'ids')";
    assert!(
        wait_until(Duration::from_secs(20), || q(
            &mut fc,
            &["EVALRO", scan, "1", "fleet"]
        ) == "[0 [a b c]]"),
        "{}",
        follower.log()
    );
    // A write made by a script after the follower joined reaches it too.
    let one_set = "return tile38.call('set', KEYS[1], 'd', 'point', 36, -118)";
    assert_eq!(q(&mut lc, &["EVAL", one_set, "1", "fleet"]), "OK");
    assert!(wait_until(Duration::from_secs(20), || {
        run(&mut fc, "SCAN fleet IDS") == "[0 [a b c d]]"
    }));
    // The follower refuses EVAL and EVALSHA whole, reads or not, as
    // Tile38 does (they take the write lock); EVALRO and EVALNA run, and
    // EVALNA's writes are refused one by one.
    let err = q(&mut fc, &["EVAL", one_set, "1", "fleet"]);
    assert_eq!(err, "ERR:not the leader");
    assert_eq!(
        q(&mut fc, &["EVAL", scan, "1", "fleet"]),
        "ERR:not the leader"
    );
    let sha = q(&mut lc, &["SCRIPT", "LOAD", scan]);
    assert_eq!(
        q(&mut fc, &["EVALSHA", &sha, "1", "fleet"]),
        "ERR:not the leader"
    );
    assert_eq!(q(&mut fc, &["EVALRO", scan, "1", "fleet"]), "[0 [a b c d]]");
    assert_eq!(q(&mut fc, &["EVALNA", scan, "1", "fleet"]), "[0 [a b c d]]");
    let err = q(&mut fc, &["EVALNA", one_set, "1", "fleet"]);
    assert!(err.contains("not the leader"), "{err}");
    let mut fj = follower.json_client();
    let refused = qj(&mut fj, &["EVAL", scan, "1", "fleet"]);
    assert_eq!(refused["ok"], json!(false), "{refused}");
    assert_eq!(refused["err"], json!("not the leader"), "{refused}");

    // READONLY refuses EVAL whole too, and EVALRO still runs.
    assert_eq!(run(&mut lc, "READONLY yes"), "OK");
    assert_eq!(q(&mut lc, &["EVAL", scan, "1", "fleet"]), "ERR:read only");
    assert_eq!(q(&mut lc, &["EVALRO", scan, "1", "fleet"]), "[0 [a b c d]]");
    assert_eq!(run(&mut lc, "READONLY no"), "OK");
}

#[test]
fn an_endless_script_is_stopped_by_the_time_limit_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--script-time-limit-ms", "5000"]).unwrap();
    let mut c = server.client();
    // A channel on the script's first write tells this test, without
    // taking the database lock the script holds, that the script runs.
    assert_eq!(
        run(&mut c, "SETCHAN fence NEARBY k FENCE POINT 1 1 1000"),
        "1"
    );
    let mut sub = server.client();
    let mut ps = sub.as_pubsub();
    ps.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    ps.subscribe("fence").unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let worker = {
        let mut c2 = server.client();
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let src = "tile38.call('set', 'k', 'before', 'point', 1, 1) while true do end";
            let r = q(&mut c2, &["EVAL", src, "0"]);
            done.store(true, Ordering::SeqCst);
            r
        })
    };
    let event: String = ps.get_message().unwrap().get_payload().unwrap();
    assert!(event.contains("\"id\":\"before\""), "{event}");
    // The script is now in its loop, holding the write lock; a client's
    // PING is still answered, long before the time limit ends the script.
    assert_eq!(run(&mut c, "PING"), "PONG");
    assert!(
        !done.load(Ordering::SeqCst),
        "the script ended before PING was answered"
    );
    let reply = worker.join().unwrap();
    assert!(
        reply.contains("time limit of 5s") && reply.contains("writes it made before are kept"),
        "{reply}"
    );
    // Its write before the loop stays, and the server goes on.
    assert_eq!(run(&mut c, "EXISTS k before"), "1");
    let mut j = server.json_client();
    let v = qj(&mut j, &["EVAL", "while true do end", "0"]);
    assert_eq!(v["ok"], json!(false), "{v}");
}
