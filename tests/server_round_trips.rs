//! Every command through a real Redis client, in RESP and in Tile38's JSON
//! output mode, with Tile38's reply shapes (cases follow Tile38's own tests).

use e2e::{run, run_json, start};
use serde_json::json;

/// Runs `(command, expected RESP rendering)` pairs in order on one connection.
fn check_resp(conn: &mut redis::Connection, cases: &[(&str, &str)]) {
    for (cmd, want) in cases {
        assert_eq!(run(conn, cmd), *want, "RESP: {cmd}");
    }
}

/// Runs `(command, expected JSON without elapsed)` pairs in order.
fn check_json(conn: &mut redis::Connection, cases: &[(&str, serde_json::Value)]) {
    for (cmd, want) in cases {
        assert_eq!(run_json(conn, cmd), *want, "JSON: {cmd}");
    }
}

#[test]
fn resp_and_json_replies_match_tile38() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    check_resp(
        &mut c,
        &[
            ("PING", "PONG"),
            ("PING hi", "hi"),
            ("ECHO hello", "hello"),
            ("HEALTHZ", "OK"),
            ("HEALTHZ arg", "ERR:wrong number of arguments for 'healthz' command"),
            ("OUTPUT", "resp"),
            ("OUTPUT yaml", "ERR:invalid argument 'yaml'"),
            // SET and GET in every form.
            ("SET mykey myid POINT 33 -115", "OK"),
            ("GET mykey myid POINT", "[33 -115]"),
            ("GET mykey myid BOUNDS", "[[33 -115] [33 -115]]"),
            ("GET mykey myid OBJECT", r#"{"type":"Point","coordinates":[-115,33]}"#),
            ("GET mykey myid", r#"{"type":"Point","coordinates":[-115,33]}"#),
            ("GET mykey myid HASH 7", "9my5xp7"),
            ("GET mykey myid hash 13", "ERR:invalid argument '13'"),
            ("DEL mykey myid", "1"),
            ("GET mykey myid", "nil"),
            ("SET mykey myid BOUNDS 33 -115 33 -115", "OK"),
            (
                "GET mykey myid OBJECT",
                r#"{"type":"Polygon","coordinates":[[[-115,33],[-115,33],[-115,33],[-115,33],[-115,33]]]}"#,
            ),
            ("SET mykey myid FIELD f1 33 FIELD a2 44.5 HASH 9my5xp7", "OK"),
            ("GET mykey myid WITHFIELDS HASH 7", "[9my5xp7 [a2 44.5 f1 33]]"),
            ("SET mykey myid2 point 33 -112 55", "OK"),
            ("GET mykey myid2 point", "[33 -112 55]"),
            ("SET mykey str1 STRING value", "OK"),
            ("GET mykey str1", "value"),
            ("SET mykey geo1 OBJECT {\"type\":\"LineString\",\"coordinates\":[[-115,33],[-114,34]]}", "OK"),
            ("GET mykey geo1 BOUNDS", "[[33 -115] [34 -114]]"),
            ("SET", "ERR:wrong number of arguments for 'set' command"),
            ("SET mykey myid EX yyy POINT 1 2", "ERR:invalid argument 'yyy'"),
            ("SET mykey myid FIELD z 1 POINT 1 2", "ERR:invalid argument 'z'"),
            ("SET mykey myid nx xx POINT 1 2", "ERR:invalid argument 'xx'"),
            // Tile38 accepts coordinates out of range unless REQUIREVALID
            // is set (server_search_options.rs checks the strict mode).
            ("SET mykey myid POINT 91 0", "OK"),
            ("SET mykey myid POINT abc 0", "ERR:invalid argument 'abc'"),
            // NX / XX.
            ("SET nxkey myid XX HASH 9my5xp7", "nil"),
            ("SET nxkey myid NX HASH 9my5xp7", "OK"),
            ("SET nxkey myid NX HASH 9my5xp7", "nil"),
            ("SET nxkey myid XX POINT 1 2", "OK"),
            // DEL, PDEL, DROP, EXISTS.
            ("DEL nxkey nope ERRON404", "ERR:id not found"),
            ("DEL nxkey myid invalid-arg", "ERR:invalid argument 'invalid-arg'"),
            ("EXISTS nxkey myid", "1"),
            ("DEL nxkey myid", "1"),
            ("DEL nxkey myid", "0"),
            ("EXISTS nxkey myid", "0"),
            ("DEL nxkey myid ERRON404", "ERR:key not found"),
            ("SET pk truck1 POINT 1 1", "OK"),
            ("SET pk truck2 POINT 1 1", "OK"),
            ("SET pk car1 POINT 1 1", "OK"),
            ("PDEL pk truck*", "2"),
            ("SCAN pk IDS", "[0 [car1]]"),
            ("DROP pk", "1"),
            ("DROP pk", "0"),
            ("DROP", "ERR:wrong number of arguments for 'drop' command"),
            // KEYS.
            ("SET mykey11 a POINT 1 1", "OK"),
            ("SET mykey22 a POINT 1 1", "OK"),
            ("SET mykey31 a POINT 1 1", "OK"),
            ("KEYS mykey*1", "[mykey11 mykey31]"),
            ("KEYS nothing", "[]"),
            // TTL, EXPIRE, PERSIST.
            ("SET ttlkey myid STRING value", "OK"),
            ("TTL ttlkey myid", "-1"),
            ("EXPIRE ttlkey myid 100", "1"),
            ("PERSIST ttlkey myid", "1"),
            ("PERSIST ttlkey myid", "0"),
            ("TTL ttlkey myid", "-1"),
            ("TTL ttlkey2 myid", "-2"),
            ("EXPIRE ttlkey2 myid 1", "0"),
            ("PERSIST ttlkey2 myid", "0"),
            ("SET ttlkey exid EX 50 POINT 1 1", "OK"),
            // FSET / FGET.
            ("SET fkey myid HASH 9my5xp7", "OK"),
            ("FSET fkey myid f1 105.6", "1"),
            ("GET fkey myid WITHFIELDS HASH 7", "[9my5xp7 [f1 105.6]]"),
            ("FSET fkey myid f1 1.1 f2 2.2", "2"),
            ("FGET fkey myid f2", "2.2"),
            ("FGET fkey myid nope", "0"),
            ("FSET fkey2 myid a 1", "ERR:key not found"),
            ("FSET fkey2 myid XX a 1", "0"),
            // String and JSON field values (Tile38 1.30 and later).
            ("SET mykey sf field hello world field hiya 55 point 33 -112", "OK"),
            ("GET mykey sf hash 1", "9"),
            ("GET mykey sf withfields point", "[[33 -112] [hello world hiya 55]]"),
            (r#"FSET mykey sf hello there doc {"a":[1,2]}"#, "2"),
            ("FGET mykey sf hello", "there"),
            ("FGET mykey sf doc", r#"{"a":[1,2]}"#),
            ("FSET mykey sf hello there", "0"),
            ("SCAN mykey MATCH sf WHERE hello a z IDS", "[0 [sf]]"),
            ("SCAN mykey MATCH sf WHERE hello u z IDS", "[0 []]"),
            ("SCAN mykey MATCH sf WHERE hiya 50 60 IDS", "[0 [sf]]"),
            ("SCAN mykey MATCH sf WHERE hiya a z IDS", "[0 []]"),

            // STATS.
            ("STATS nokey", "[nil]"),
            // READONLY.
            ("READONLY yes", "OK"),
            ("SET mykey myid POINT 10 10", "ERR:read only"),
            ("READONLY no", "OK"),
            ("READONLY maybe", "ERR:invalid argument 'maybe'"),
            // Unknown commands and arity.
            ("FOO bar", "ERR:unknown command 'FOO'"),
            ("GET mykey", "ERR:wrong number of arguments for 'get' command"),
            ("GC", "OK"),
            ("AUTH x", "ERR:AUTH <password> called without any password configured"),
        ],
    );
    // Searches: Tile38's KNN, cursor, circle and MATCH cases.
    check_resp(
        &mut c,
        &[
            ("SET knn 1 FIELD foo 5.5 POINT 5 5", "OK"),
            ("SET knn 2 FIELD foo 19.19 POINT 19 19", "OK"),
            ("SET knn 3 FIELD foo 12.19 POINT 12 19", "OK"),
            ("SET knn 4 FIELD foo 1 POINT -5 5", "OK"),
            ("SET knn 5 FIELD foo 13.21 POINT 33 21", "OK"),
            ("SET knn 6 FIELD foo 2 POINT 52 13", "OK"),
            ("NEARBY knn LIMIT 10 IDS POINT 20 20", "[0 [2 3 5 1 4 6]]"),
            (
                "NEARBY knn LIMIT 10 IDS POINT 20 20 4000000",
                "[0 [2 3 5 1 4 6]]",
            ),
            (
                "NEARBY knn LIMIT 2 POINTS POINT 20 20",
                "[2 [[2 [19 19] [foo 19.19]] [3 [12 19] [foo 12.19]]]]",
            ),
            (
                "NEARBY knn CURSOR 2 LIMIT 1 POINTS POINT 20 20",
                "[3 [[5 [33 21] [foo 13.21]]]]",
            ),
            (
                "NEARBY knn LIMIT 10 NOFIELDS POINTS POINT 20 20 1500000",
                "[0 [[2 [19 19]] [3 [12 19]] [5 [33 21]]]]",
            ),
            ("NEARBY knn COUNT POINT 20 20 1500000", "3"),
            ("WITHIN knn COUNT CIRCLE 19 19 1000", "1"),
            ("INTERSECTS knn IDS CIRCLE 52 13 10", "[0 [6]]"),
            (
                "INTERSECTS knn NOFIELDS HASHES 5 POINT 5 5",
                "[0 [[1 s0gs3]]]",
            ),
            (
                "WITHIN knn NOFIELDS BOUNDS GET knn 1",
                "[0 [[1 [[5 5] [5 5]]]]]",
            ),
            ("WITHIN knn IDS HASH s0", "[0 [1]]"),
            ("SET fleet truck1 POINT 33 -112", "OK"),
            ("SET fleet truck2 POINT 33 -112", "OK"),
            ("SET fleet luck1 POINT 33 -112", "OK"),
            ("SET fleet luck2 POINT 33 -112", "OK"),
            ("SET fleet train1 POINT 33 -112", "OK"),
            ("SCAN fleet IDS", "[0 [luck1 luck2 train1 truck1 truck2]]"),
            ("SCAN fleet MATCH truck* IDS", "[0 [truck1 truck2]]"),
            ("SCAN fleet LIMIT 2 IDS", "[2 [luck1 luck2]]"),
            ("SCAN fleet CURSOR 2 LIMIT 2 IDS", "[4 [train1 truck1]]"),
            ("SCAN fleet DESC LIMIT 1 IDS", "[1 [truck2]]"),
            ("SCAN fleet COUNT", "5"),
            ("SCAN fleet MATCH train* POINTS", "[0 [[train1 [33 -112]]]]"),
            (
                "SCAN fleet MATCH train* OBJECTS",
                r#"[0 [[train1 {"type":"Point","coordinates":[-112,33]}]]]"#,
            ),
            ("NEARBY knn DISTANCE IDS POINT 52 13 100", "[0 [[6 0]]]"),
        ],
    );
    // WITHIN and INTERSECTS return R-tree order, which Tile38's tests also
    // compare ignoring order.
    for (cmd, want) in [
        ("WITHIN knn IDS BOUNDS 0 0 20 20", "1 2 3"),
        ("INTERSECTS knn IDS OBJECT {\"type\":\"Polygon\",\"coordinates\":[[[0,0],[20,0],[20,20],[0,20],[0,0]]]}", "1 2 3"),
        ("WITHIN knn IDS WHERE foo 10 20 BOUNDS -90 -180 90 180", "2 3 5"),
        ("INTERSECTS fleet IDS BOUNDS 33 -113 34 -112", "luck1 luck2 train1 truck1 truck2"),
    ] {
        let got = run(&mut c, cmd);
        let inner = got.strip_prefix("[0 [").and_then(|g| g.strip_suffix("]]")).unwrap_or_else(|| panic!("{cmd}: {got}"));
        let mut ids: Vec<&str> = inner.split(' ').collect();
        ids.sort_unstable();
        assert_eq!(ids.join(" "), want, "{cmd}");
    }
    // Whole seconds left, truncated: 49 or 50 depending on the clock tick.
    let ttl = run(&mut c, "TTL ttlkey exid");
    assert!(ttl == "49" || ttl == "50", "{ttl}");
    let stats = run(&mut c, "STATS fleet nokey");
    assert!(stats.starts_with("[[in_memory_size "), "{stats}");
    assert!(
        stats.contains("num_objects 5 num_points 5 num_strings 0]"),
        "{stats}"
    );
    assert!(stats.ends_with(" nil]"), "{stats}");
    assert!(run(&mut c, "SERVER").contains("num_collections"));
    assert!(run(&mut c, "INFO").contains("# Persistence"));
    assert!(run(&mut c, "INFO persistence").contains("aof_current_size:"));
    assert_eq!(run(&mut c, "CONFIG GET requirepass"), "[requirepass ]");
    assert_eq!(run(&mut c, "CONFIG SET aofshrink-min-size 256mb"), "OK");
    assert_eq!(
        run(&mut c, "CONFIG GET aofshrink-min-size"),
        "[aofshrink-min-size 268435456]"
    );
    assert_eq!(
        run(&mut c, "CONFIG SET nope 1"),
        "ERR:Unsupported CONFIG parameter: nope"
    );
    assert_eq!(
        run(&mut c, "CONFIG SET aofshrink-min-size lots"),
        "ERR:Invalid argument 'lots' for CONFIG SET 'aofshrink-min-size'"
    );
    assert_eq!(run(&mut c, "CONFIG REWRITE"), "OK");
    let file = std::fs::read_to_string(dir.path().join("config")).unwrap();
    assert!(file.contains("\"aofshrink-min-size\": 268435456"), "{file}");
    assert_eq!(run(&mut c, "CONFIG SET aofshrink-min-size 0"), "OK");
    assert_eq!(run(&mut c, "AOFSHRINK"), "OK");
    assert_eq!(run(&mut c, "FLUSHDB"), "OK");
    assert_eq!(run(&mut c, "KEYS *"), "[]");
    assert_eq!(run(&mut c, "QUIT"), "OK");
}

#[test]
fn string_fields_unset_with_the_empty_string_and_survive_a_shrink_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let set = |c: &mut redis::Connection, args: &[&str]| -> String {
        e2e::render(redis::cmd("SET").arg(args).query(c))
    };
    // Values with spaces, quotes, CR LF and a JSON document, through RESP
    // bulk strings as any client sends them.
    let odd = "two words, \"quoted\"\r\nand a new line";
    assert_eq!(
        set(
            &mut c,
            &[
                "k",
                "a",
                "FIELD",
                "note",
                odd,
                "FIELD",
                "doc",
                r#"{"x":[1,"y"]}"#,
                "FIELD",
                "n",
                "7",
                "POINT",
                "33",
                "-112"
            ]
        ),
        "OK"
    );
    assert_eq!(
        set(
            &mut c,
            &[
                "k",
                "b",
                "FIELD",
                "note",
                "to be removed",
                "POINT",
                "33",
                "-111"
            ]
        ),
        "OK"
    );
    let fset = redis::cmd("FSET")
        .arg(&["k", "b", "note", ""])
        .query(&mut c);
    assert_eq!(e2e::render(fset), "1", "the empty string unsets the field");
    assert_eq!(run(&mut c, "GET k b WITHFIELDS POINT"), "[33 -111]");
    let before = e2e::dump(&mut c);
    let fields = |c: &mut redis::Connection| {
        let v: Vec<redis::Value> = redis::cmd("GET")
            .arg(&["k", "a", "WITHFIELDS", "POINT"])
            .query(c)
            .unwrap();
        e2e::render(Ok(v[1].clone()))
    };
    let want = format!("[doc {{\"x\":[1,\"y\"]}} n 7 note {odd}]");
    assert_eq!(fields(&mut c), want);

    // The shrink writes every field back as text; a restart replays it.
    assert_eq!(run(&mut c, "AOFSHRINK"), "OK");
    assert!(
        e2e::wait_until(std::time::Duration::from_secs(30), || server
            .stat(&mut c, "aof_rewrites")
            .parse::<u64>()
            .is_ok_and(|n| n >= 1)),
        "the shrink did not finish"
    );
    drop(c);
    let server = server.restart().unwrap();
    let mut c = server.client();
    assert_eq!(e2e::dump(&mut c), before);
    assert_eq!(fields(&mut c), want);
}

#[test]
fn json_output_mode_has_tile38_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut j = server.json_client();
    check_json(
        &mut j,
        &[
            ("OUTPUT", json!({"ok":true,"output":"json"})),
            ("PING", json!({"ok":true,"ping":"pong"})),
            ("HEALTHZ", json!({"ok":true})),
            (
                "SET mykey myid FIELD hiya 55 POINT 33 -112",
                json!({"ok":true}),
            ),
            (
                "GET mykey myid POINT",
                json!({"ok":true,"point":{"lat":33,"lon":-112}}),
            ),
            (
                "GET mykey myid BOUNDS",
                json!({"ok":true,"bounds":{"sw":{"lat":33,"lon":-112},"ne":{"lat":33,"lon":-112}}}),
            ),
            (
                "GET mykey myid WITHFIELDS",
                json!({"ok":true,"object":{"type":"Point","coordinates":[-112,33]},"fields":{"hiya":55}}),
            ),
            ("GET mykey myid HASH 7", json!({"ok":true,"hash":"9tb7erk"})),
            ("GET mykey2 myid", json!({"ok":false,"err":"key not found"})),
            ("GET mykey myid2", json!({"ok":false,"err":"id not found"})),
            ("SET mykey myid2 POINT 33 -112 55", json!({"ok":true})),
            (
                "GET mykey myid2 POINT",
                json!({"ok":true,"point":{"lat":33,"lon":-112,"z":55}}),
            ),
            (
                "SET mykey myid2 NX POINT 1 1",
                json!({"ok":false,"err":"id already exists"}),
            ),
            (
                "SET mykey nope XX POINT 1 1",
                json!({"ok":false,"err":"id not found"}),
            ),
            (
                "SET truck1 a FIELD speed 0 POINT 33 -112",
                json!({"ok":true}),
            ),
            (
                "SET mykey sf field hello world field hiya 55 point 33 -112",
                json!({"ok":true}),
            ),
            (
                "GET mykey sf withfields",
                json!({"ok":true,"object":{"type":"Point","coordinates":[-112,33]},"fields":{"hello":"world","hiya":55}}),
            ),
            (r#"FSET mykey sf doc {"a":[1,2]}"#, json!({"ok":true})),
            ("FGET mykey sf hello", json!({"ok":true,"value":"world"})),
            ("FGET mykey sf doc", json!({"ok":true,"value":{"a":[1,2]}})),
            (
                "SCAN mykey MATCH sf POINTS",
                json!({"ok":true,"fields":["doc","hello","hiya"],"points":[{"id":"sf","point":{"lat":33,"lon":-112},"fields":[{"a":[1,2]},"world",55]}],"count":1,"cursor":0}),
            ),
            (
                "GET truck1 a WITHFIELDS",
                json!({"ok":true,"object":{"type":"Point","coordinates":[-112,33]}}),
            ),
            ("KEYS *", json!({"ok":true,"keys":["mykey","truck1"]})),
            ("EXISTS mykey myid", json!({"ok":true,"exists":true})),
            ("EXISTS mykey none", json!({"ok":true,"exists":false})),
            (
                "SET wherein id1 FIELD test 2 POINT 33 -112",
                json!({"ok":true}),
            ),
            (
                "SCAN wherein OBJECTS",
                json!({"ok":true,"fields":["test"],"objects":[{"id":"id1","object":{"type":"Point","coordinates":[-112,33]},"fields":[2]}],"count":1,"cursor":0}),
            ),
            (
                "SCAN wherein IDS",
                json!({"ok":true,"ids":["id1"],"count":1,"cursor":0}),
            ),
            (
                "SCAN wherein COUNT",
                json!({"ok":true,"count":1,"cursor":0}),
            ),
            (
                "NEARBY wherein NOFIELDS POINTS POINT 33 -112",
                json!({"ok":true,"points":[{"id":"id1","point":{"lat":33,"lon":-112}}],"count":1,"cursor":0}),
            ),
            (
                "WITHIN wherein NOFIELDS BOUNDS BOUNDS 32 -113 34 -111",
                json!({"ok":true,"bounds":[{"id":"id1","bounds":{"sw":{"lat":33,"lon":-112},"ne":{"lat":33,"lon":-112}}}],"count":1,"cursor":0}),
            ),
            (
                "INTERSECTS wherein NOFIELDS HASHES 3 CIRCLE 33 -112 10",
                json!({"ok":true,"hashes":[{"id":"id1","hash":"9tb"}],"count":1,"cursor":0}),
            ),
            (
                "NEARBY wherein DISTANCE IDS POINT 33 -112",
                json!({"ok":true,"ids":[{"id":"id1","distance":0}],"count":1,"cursor":0}),
            ),
            ("FSET wherein id1 test 5", json!({"ok":true})),
            ("FGET wherein id1 test", json!({"ok":true,"value":5})),
            (
                "FSET nokey id1 test 5",
                json!({"ok":false,"err":"key not found"}),
            ),
            ("EXPIRE wherein id1 10", json!({"ok":true})),
            ("PERSIST wherein id1", json!({"ok":true})),
            ("TTL wherein id1", json!({"ok":true,"ttl":-1})),
            ("TTL wherein none", json!({"ok":false,"err":"id not found"})),
            (
                "EXPIRE wherein none 1",
                json!({"ok":false,"err":"id not found"}),
            ),
            (
                "PERSIST nokey none",
                json!({"ok":false,"err":"key not found"}),
            ),
            ("STATS nokey", json!({"ok":true,"stats":[null]})),
            ("DEL wherein id1", json!({"ok":true})),
            (
                "DEL wherein id1 ERRON404",
                json!({"ok":false,"err":"key not found"}),
            ),
            ("PDEL mykey my*", json!({"ok":true})),
            ("DROP truck1", json!({"ok":true})),
            ("READONLY yes", json!({"ok":true})),
            ("SET a b POINT 1 1", json!({"ok":false,"err":"read only"})),
            ("READONLY no", json!({"ok":true})),
            ("CONFIG SET protected-mode no", json!({"ok":true})),
            (
                "CONFIG GET protected-mode",
                json!({"ok":true,"properties":{"protected-mode":"no"}}),
            ),
            ("CONFIG REWRITE", json!({"ok":true})),
            ("AOFSHRINK", json!({"ok":true})),
            ("GC", json!({"ok":true})),
            ("FLUSHDB", json!({"ok":true})),
            ("KEYS *", json!({"ok":true,"keys":[]})),
            (
                "SET",
                json!({"ok":false,"err":"wrong number of arguments for 'set' command"}),
            ),
            ("FOO", json!({"ok":false,"err":"unknown command 'FOO'"})),
            ("SET bk a POINT 33 -112", json!({"ok":true})),
            ("SET bk b BOUNDS 30 -115 31 -114", json!({"ok":true})),
            (
                "BOUNDS bk",
                json!({"ok":true,"bounds":{"type":"Polygon","coordinates":[[[-115,30],[-112,30],[-112,33],[-115,33],[-115,30]]]}}),
            ),
            ("BOUNDS nokey", json!({"ok":false,"err":"key not found"})),
            (
                "AUTH x",
                json!({"ok":false,"err":"AUTH <password> called without any password configured"}),
            ),
        ],
    );
    // BOUNDS in RESP: [[minlon minlat] [maxlon maxlat]], as Tile38 replies.
    assert_eq!(
        run(&mut server.client(), "BOUNDS bk"),
        "[[-115 30] [-112 33]]"
    );
    assert_eq!(
        run_json(&mut j, "SET t id EX 10 POINT 1 1"),
        json!({"ok":true})
    );
    let ttl = run_json(&mut j, "TTL t id")["ttl"].as_i64().unwrap();
    assert!(ttl == 9 || ttl == 10, "{ttl}");
    let server_json = run_json(&mut j, "SERVER");
    assert_eq!(server_json["ok"], true);
    assert!(server_json["stats"]["aof_size"].is_u64(), "{server_json}");
    let info = run_json(&mut j, "INFO");
    assert_eq!(info["info"]["aof_enabled"], 1, "{info}");
    let back: String = redis::cmd("OUTPUT").arg("resp").query(&mut j).unwrap();
    assert_eq!(back, "OK");
    assert_eq!(e2e::run(&mut j, "PING"), "PONG");

    // QUIT in JSON mode closes the connection without a reply, as Tile38's.
    let mut q = server.json_client();
    assert!(
        redis::cmd("QUIT").query::<String>(&mut q).is_err(),
        "closed without a reply"
    );
}

#[test]
fn config_rewrite_persists_settings_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "CONFIG SET aofshrink-min-size 1gb"), "OK");
    assert_eq!(run(&mut c, "CONFIG SET aofshrink-percentage 50"), "OK");
    assert_eq!(run(&mut c, "CONFIG SET aofshrink-min-size 2gb"), "OK");
    assert_eq!(run(&mut c, "CONFIG SET aofshrink-max-rate 32mb"), "OK");
    assert!(run(&mut c, "CONFIG SET aofshrink-max-rate fast").contains("Invalid argument"));
    assert_eq!(run(&mut c, "CONFIG REWRITE"), "OK");
    // Set after the rewrite: not persisted.
    assert_eq!(run(&mut c, "CONFIG SET aofshrink-percentage 75"), "OK");
    drop(c);
    let server = server.restart().unwrap();
    let mut c = server.client();
    assert_eq!(
        run(&mut c, "CONFIG GET aofshrink-*"),
        "[aofshrink-max-rate 33554432 aofshrink-min-size 2147483648 aofshrink-percentage 50]"
    );
    // A flag overrides the file at start.
    drop(c);
    server.kill9();
    let server = start(dir.path(), &["--aofshrink-min-size", "10mb"]).unwrap();
    assert_eq!(
        run(&mut server.client(), "CONFIG GET aofshrink-min-size"),
        "[aofshrink-min-size 10485760]"
    );
}
