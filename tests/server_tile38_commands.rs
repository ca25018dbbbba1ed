//! Tile38's command surface, part A: JSET/JGET/JDEL, RENAME/RENAMENX,
//! FEXISTS, PING/ECHO, TIMEOUT, QUIT, READONLY, CLIENT (LIST and KILL
//! too), SERVER [EXT], INFO
//! and CONFIG, checked against a leader with a follower through redis-rs in
//! RESP2, RESP3 and Tile38's JSON output, with the reply shapes of Tile38's
//! own tests (`tests/json_test.go`, `tests/timeout_test.go`, ...). Reads are
//! checked again on the follower once it has caught up, which also shows
//! that the new writes are logged and replicated.

use std::io::{Read, Write};
use std::time::Duration;

use e2e::{run, run_json, start, wait_until, Server};
use serde_json::json;

/// A leader on a fixed port and a follower that follows it.
fn pair(ldir: &std::path::Path, fdir: &std::path::Path) -> (Server, Server) {
    let port = e2e::free_port();
    let port_s = port.to_string();
    let leader = start(ldir, &["--port", &port_s, "--appendfsync", "always"]).unwrap();
    let follower = start(fdir, &["--appendfsync", "always"]).unwrap();
    let mut f = follower.client();
    assert_eq!(run(&mut f, &format!("FOLLOW 127.0.0.1 {port}")), "OK");
    (leader, follower)
}

fn offset(server: &Server) -> String {
    server.stat(&mut server.client(), "repl_offset")
}

/// Waits until the follower has the leader's offset and serves reads.
fn caught_up(leader: &Server, follower: &Server) {
    let ok = wait_until(Duration::from_secs(30), || {
        let mut f = follower.client();
        offset(leader) == offset(follower) && run(&mut f, "PING") == "PONG" && {
            follower.stat(&mut f, "caught_up") == "true"
        }
    });
    assert!(ok, "follower did not catch up:\n{}", follower.log());
}

fn resp3(server: &Server) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{}/?protocol=resp3", server.port))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(10))
        .unwrap()
}

fn q3(c: &mut redis::Connection, line: &str) -> redis::Value {
    e2e::cmd_of(line)
        .query(c)
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// Runs `JSET key id path value [flag]` with a value that may hold spaces.
fn jset(c: &mut redis::Connection, key: &str, id: &str, path: &str, value: &str) -> String {
    e2e::render(
        redis::cmd("JSET")
            .arg(key)
            .arg(id)
            .arg(path)
            .arg(value)
            .query(c),
    )
}

#[test]
fn json_documents_follow_tile38s_tests_in_every_output_and_replicate() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, follower) = pair(ld.path(), fd.path());
    let mut c = leader.client();

    // json_JSET_basic_test.
    assert_eq!(run(&mut c, "JSET mykey myid1 hello world"), "OK");
    assert_eq!(run(&mut c, "JGET mykey myid1"), r#"{"hello":"world"}"#);
    assert_eq!(run(&mut c, "JSET mykey myid1 hello planet"), "OK");
    assert_eq!(run(&mut c, "JGET mykey myid1"), r#"{"hello":"planet"}"#);
    assert_eq!(run(&mut c, "JSET mykey myid1 user.name.last tom"), "OK");
    assert_eq!(run(&mut c, "JSET mykey myid1 user.name.first andrew"), "OK");
    let doc = r#"{"hello":"planet","user":{"name":{"last":"tom","first":"andrew"}}}"#;
    assert_eq!(run(&mut c, "JGET mykey myid1"), doc);
    assert_eq!(run(&mut c, "JDEL mykey myid1 user.name.last"), "1");
    let doc = r#"{"hello":"planet","user":{"name":{"first":"andrew"}}}"#;
    assert_eq!(run(&mut c, "JGET mykey myid1"), doc);
    assert_eq!(run(&mut c, "JDEL mykey myid1 user.name.last"), "0");
    assert_eq!(run(&mut c, "JGET mykey myid1"), doc);
    assert_eq!(run(&mut c, "JDEL mykey2 myid1 user.name.last"), "0");

    // json_JSET_geojson_test, on a point: the edit goes through SET OBJECT.
    assert_eq!(run(&mut c, "SET geo myid1 POINT 33 -115"), "OK");
    assert_eq!(
        run(&mut c, "JGET geo myid1"),
        r#"{"type":"Point","coordinates":[-115,33]}"#
    );
    assert_eq!(run(&mut c, "JSET geo myid1 coordinates.1 44"), "OK");
    assert_eq!(
        run(&mut c, "JGET geo myid1"),
        r#"{"type":"Point","coordinates":[-115,44]}"#
    );
    assert_eq!(run(&mut c, "JGET geo myid1 type"), "Point");
    assert_eq!(
        run(&mut c, "NEARBY geo IDS POINT 44 -115 10"),
        "[0 [myid1]]",
        "the point moved in the spatial index"
    );
    assert!(run(&mut c, "JDEL geo myid1 type").starts_with("ERR:"));
    // Tags appended with -1 build an array.
    for tag in ["southwest", "united states", "hot"] {
        assert_eq!(jset(&mut c, "tags", "t", "properties.tags.-1", tag), "OK");
    }
    assert_eq!(
        run(&mut c, "JGET tags t"),
        r#"{"properties":{"tags":["southwest","united states","hot"]}}"#
    );
    assert_eq!(run(&mut c, "JGET tags t properties.tags.#"), "3");

    // json_JSET_number_test.
    for (value, doc) in [
        ("0", r#"{"hello":0}"#),
        ("0123", r#"{"hello":"0123"}"#),
        ("3.14", r#"{"hello":3.14}"#),
        ("1.0e10", r#"{"hello":1.0e10}"#),
    ] {
        assert_eq!(run(&mut c, &format!("JSET num id hello {value}")), "OK");
        assert_eq!(run(&mut c, "JGET num id"), doc);
    }
    assert_eq!(run(&mut c, "JGET num id hello"), "10000000000");
    assert_eq!(run(&mut c, "JGET num id hello RAW"), "1.0e10");

    // RAW and STR.
    assert_eq!(run(&mut c, "JSET flags id a 5 STR"), "OK");
    assert_eq!(run(&mut c, r#"JSET flags id b {"x":[1,2]} RAW"#), "OK");
    assert_eq!(run(&mut c, "JGET flags id"), r#"{"a":"5","b":{"x":[1,2]}}"#);
    assert_eq!(run(&mut c, "JGET flags id a RAW"), r#""5""#);
    assert_eq!(run(&mut c, "JGET flags id b.x.1"), "2");
    assert_eq!(run(&mut c, "JGET flags id nope"), "nil");
    assert_eq!(run(&mut c, "JGET nokey id"), "nil");
    assert_eq!(
        run(&mut c, "JSET flags id c {oops RAW"),
        "ERR:invalid argument '{oops'"
    );
    assert_eq!(
        run(&mut c, "JSET flags id c 1 BOTH"),
        "ERR:invalid argument 'BOTH'"
    );
    assert!(run(&mut c, "JSET flags id a.* 1").starts_with("ERR:"));
    // A peer's path cannot make the server pad an array or nest a document
    // without bound.
    assert_eq!(
        run(&mut c, "JSET flags id pad.100000000 1"),
        "ERR:array index '100000000' is too far past the end"
    );
    let deep = vec!["k"; 129].join(".");
    assert_eq!(
        run(&mut c, &format!("JSET flags id {deep} 1")),
        "ERR:path has more than 128 keys"
    );
    assert_eq!(
        run(&mut c, "JGET flags id"),
        r#"{"a":"5","b":{"x":[1,2]}}"#,
        "refused edits change nothing"
    );

    // JSON output.
    let mut j = leader.json_client();
    assert_eq!(
        run_json(&mut j, "JGET mykey myid1"),
        json!({"ok":true,"value":doc})
    );
    assert_eq!(
        run_json(&mut j, "JGET mykey myid1 user.name.first"),
        json!({"ok":true,"value":"andrew"})
    );
    assert_eq!(
        run_json(&mut j, "JGET mykey myid1 nope"),
        json!({"ok":true})
    );
    assert_eq!(
        run_json(&mut j, "JGET nokey myid1"),
        json!({"ok":false,"err":"key not found"})
    );
    assert_eq!(
        run_json(&mut j, "JGET mykey nobody"),
        json!({"ok":false,"err":"id not found"})
    );
    assert_eq!(
        run_json(&mut j, "JSET mykey myid2 a.b 1"),
        json!({"ok":true})
    );
    assert_eq!(run_json(&mut j, "JDEL mykey myid2 a.b"), json!({"ok":true}));
    assert_eq!(
        run_json(&mut j, "JDEL mykey myid2 a.b"),
        json!({"ok":false,"err":"path not found"})
    );
    assert_eq!(
        run_json(&mut j, "JDEL nokey myid2 a.b"),
        json!({"ok":false,"err":"key not found"})
    );

    // RESP3.
    let mut c3 = resp3(&leader);
    assert_eq!(
        q3(&mut c3, "JGET mykey myid1"),
        redis::Value::BulkString(doc.as_bytes().to_vec())
    );
    assert_eq!(q3(&mut c3, "JGET mykey nobody"), redis::Value::Nil);
    assert_eq!(q3(&mut c3, "JDEL mykey myid1 nope"), redis::Value::Int(0));

    // The follower has every edit, and refuses writes.
    caught_up(&leader, &follower);
    let mut f = follower.client();
    assert_eq!(run(&mut f, "JGET mykey myid1"), doc);
    assert_eq!(
        run(&mut f, "JGET geo myid1"),
        r#"{"type":"Point","coordinates":[-115,44]}"#
    );
    assert_eq!(run(&mut f, "JGET num id hello RAW"), "1.0e10");
    assert_eq!(run(&mut f, "JGET mykey myid2"), r#"{"a":{}}"#);
    assert_eq!(run(&mut f, "JSET mykey myid1 a b"), "ERR:not the leader");
    assert_eq!(run(&mut f, "JDEL mykey myid1 hello"), "ERR:not the leader");
    let mut fj = follower.json_client();
    assert_eq!(
        run_json(&mut fj, "JGET flags id b.x"),
        json!({"ok":true,"value":"[1,2]"})
    );

    // And so does a restart, which replays the log.
    let leader = leader.restart().unwrap();
    let mut c = leader.client();
    assert_eq!(run(&mut c, "JGET mykey myid1"), doc);
    assert_eq!(run(&mut c, "JGET num id hello RAW"), "1.0e10");
}

#[test]
fn rename_fexists_and_the_connection_commands() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, follower) = pair(ld.path(), fd.path());
    let mut c = leader.client();
    assert_eq!(run(&mut c, "SET fleet a FIELD speed 5 POINT 1 1"), "OK");
    assert_eq!(run(&mut c, "SET fleet b EX 100 POINT 2 2"), "OK");
    assert_eq!(run(&mut c, "SET fleet s STRING hello"), "OK");

    // RENAME moves objects with their fields and deadlines.
    assert_eq!(run(&mut c, "RENAME fleet trucks"), "OK");
    assert_eq!(run(&mut c, "GET fleet a"), "nil");
    assert_eq!(run(&mut c, "FGET trucks a speed"), "5");
    let ttl: i64 = run(&mut c, "TTL trucks b").parse().unwrap();
    assert!((90..=100).contains(&ttl), "{ttl}");
    assert_eq!(run(&mut c, "GET trucks s"), "hello");
    assert_eq!(
        run(&mut c, "NEARBY trucks IDS POINT 1 1 10"),
        "[0 [a]]",
        "the moved point is indexed"
    );
    assert_eq!(run(&mut c, "RENAME nokey other"), "ERR:key not found");
    // RENAMENX answers 1 when it moved and 0 when the new key exists.
    assert_eq!(run(&mut c, "RENAMENX trucks vans"), "1");
    assert_eq!(run(&mut c, "SET taken x POINT 3 3"), "OK");
    assert_eq!(run(&mut c, "RENAMENX vans taken"), "0");
    assert_eq!(run(&mut c, "SCAN taken IDS"), "[0 [x]]");
    // RENAME replaces an existing key.
    assert_eq!(run(&mut c, "SET old z POINT 4 4"), "OK");
    assert_eq!(run(&mut c, "RENAME old taken"), "OK");
    assert_eq!(run(&mut c, "SCAN taken IDS"), "[0 [z]]");
    // A key a hook watches, under either name, is refused.
    assert_eq!(
        run(
            &mut c,
            "SETHOOK h http://127.0.0.1:1/ NEARBY watched FENCE POINT 1 1 10"
        ),
        "1"
    );
    assert_eq!(run(&mut c, "SET watched w POINT 1 1"), "OK");
    assert_eq!(run(&mut c, "RENAME watched w2"), "ERR:key has hooks set");
    assert_eq!(run(&mut c, "RENAME taken watched"), "ERR:key has hooks set");
    assert_eq!(run(&mut c, "SCAN taken IDS"), "[0 [z]]");
    let mut j = leader.json_client();
    assert_eq!(run_json(&mut j, "RENAME taken spare"), json!({"ok":true}));
    assert_eq!(run_json(&mut j, "RENAMENX spare vans"), json!({"ok":true}));
    assert_eq!(
        run_json(&mut j, "RENAME nokey x"),
        json!({"ok":false,"err":"key not found"})
    );

    // FEXISTS: Tile38's boolean, an integer in RESP.
    assert_eq!(run(&mut c, "FEXISTS vans a speed"), "1");
    assert_eq!(run(&mut c, "FEXISTS vans a weight"), "0");
    assert_eq!(run(&mut c, "FEXISTS vans nobody speed"), "ERR:id not found");
    assert_eq!(run(&mut c, "FEXISTS nokey a speed"), "ERR:key not found");
    assert_eq!(
        run_json(&mut j, "FEXISTS vans a speed"),
        json!({"ok":true,"exists":true})
    );
    assert_eq!(
        run_json(&mut j, "FEXISTS vans a weight"),
        json!({"ok":true,"exists":false})
    );
    let mut c3 = resp3(&leader);
    assert_eq!(q3(&mut c3, "FEXISTS vans a speed"), redis::Value::Int(1));

    // The follower got every rename.
    caught_up(&leader, &follower);
    let mut f = follower.client();
    assert_eq!(run(&mut f, "FGET vans a speed"), "5");
    assert_eq!(run(&mut f, "SCAN spare IDS"), "[0 [z]]");
    assert_eq!(run(&mut f, "GET trucks a"), "nil");
    assert_eq!(run(&mut f, "FEXISTS vans a speed"), "1");
    assert_eq!(run(&mut f, "RENAME vans x"), "ERR:not the leader");

    // The rest of the surface in RESP3: the same values, maps for
    // field/value replies.
    use redis::Value as V;
    assert_eq!(q3(&mut c3, "PING"), V::SimpleString("PONG".into()));
    assert_eq!(q3(&mut c3, "RENAME spare spare2"), V::Okay);
    assert_eq!(q3(&mut c3, "RENAMENX spare2 spare"), V::Int(1));
    assert_eq!(q3(&mut c3, "JSET docs d a 1"), V::Okay);
    assert_eq!(q3(&mut c3, "JDEL docs d a"), V::Int(1));
    assert_eq!(
        e2e::render(e2e::cmd_of("TIMEOUT 0 SCAN vans IDS").query(&mut c3)),
        "ERR:timeout"
    );
    assert_eq!(q3(&mut c3, "READONLY no"), V::Okay);
    let V::Map(config) = q3(&mut c3, "CONFIG GET keepalive") else {
        panic!("CONFIG GET is a map in RESP3")
    };
    assert_eq!(
        config,
        vec![(
            V::BulkString(b"keepalive".to_vec()),
            V::BulkString(b"300".to_vec())
        )]
    );
    let V::Map(ext) = q3(&mut c3, "SERVER EXT") else {
        panic!("SERVER EXT is a map in RESP3")
    };
    assert!(ext
        .iter()
        .any(|(k, v)| *k == V::BulkString(b"tile38_type".to_vec())
            && *v == V::BulkString(b"leader".to_vec())));
    let V::BulkString(list) = q3(&mut c3, "CLIENT LIST") else {
        panic!("CLIENT LIST is text")
    };
    assert!(String::from_utf8(list).unwrap().contains("id="));
    let V::BulkString(info) = q3(&mut c3, "INFO cluster") else {
        panic!("INFO is text")
    };
    assert_eq!(info, b"# Cluster\r\ncluster_enabled:0\r\n");

    // PING and ECHO, as Tile38 answers them.
    assert_eq!(run(&mut c, "PING"), "PONG");
    assert_eq!(run(&mut c, "PING hi"), "hi");
    assert_eq!(run(&mut c, "ECHO hi"), "hi");
    assert_eq!(run(&mut c, "ECHO"), "PONG");
    assert_eq!(run_json(&mut j, "PING"), json!({"ok":true,"ping":"pong"}));
    assert_eq!(run_json(&mut j, "PING hi"), json!({"ok":true,"ping":"hi"}));
    assert_eq!(run_json(&mut j, "ECHO hi"), json!({"ok":true,"echo":"hi"}));
    assert_eq!(
        q3(&mut c3, "ECHO hi"),
        redis::Value::BulkString(b"hi".to_vec())
    );
    assert_eq!(run(&mut f, "ECHO hi"), "hi");

    // TIMEOUT: writes refused, reads run under the deadline.
    assert_eq!(
        run(&mut c, "TIMEOUT 1 SET vans q POINT 1 1"),
        "ERR:timeout not supported for 'set'"
    );
    assert_eq!(run(&mut c, "TIMEOUT 30 FGET vans a speed"), "5");
    assert_eq!(run(&mut c, "TIMEOUT 0 SCAN vans IDS"), "ERR:timeout");
    assert_eq!(
        run(&mut c, "TIMEOUT x SCAN vans"),
        "ERR:invalid argument 'x'"
    );
    assert_eq!(
        run(&mut c, "TIMEOUT -1 SCAN vans"),
        "ERR:invalid argument '-1'"
    );
    assert_eq!(
        run(&mut c, "TIMEOUT 1"),
        "ERR:wrong number of arguments for 'timeout' command"
    );
    assert_eq!(
        run_json(&mut j, "TIMEOUT 0 SCAN vans IDS"),
        json!({"ok":false,"err":"timeout"})
    );
    assert_eq!(run(&mut f, "TIMEOUT 30 SCAN vans IDS"), "[0 [a b s]]");

    // READONLY yes|no.
    assert_eq!(run(&mut c, "READONLY yes"), "OK");
    assert_eq!(run(&mut c, "SET vans q POINT 1 1"), "ERR:read only");
    assert_eq!(run(&mut c, "JSET vans q a 1"), "ERR:read only");
    assert_eq!(run_json(&mut j, "READONLY no"), json!({"ok":true}));
    assert_eq!(
        run(&mut c, "READONLY maybe"),
        "ERR:invalid argument 'maybe'"
    );
    assert_eq!(run(&mut c, "SET vans q POINT 1 1"), "OK");

    // CLIENT ID, SETNAME and GETNAME are kept.
    assert_eq!(run(&mut c, "CLIENT SETNAME worker"), "OK");
    assert_eq!(run(&mut c, "CLIENT GETNAME"), "worker");
    assert!(run(&mut c, "CLIENT ID").parse::<u64>().is_ok());

    // CLIENT LIST shows every connection as Tile38 does; CLIENT KILL closes
    // one by id, by `ADDR addr` or by a bare address.
    let line_of = |c: &mut redis::Connection, id: &str| -> String {
        run(c, "CLIENT LIST")
            .lines()
            .find(|l| l.starts_with(&format!("id={id} ")))
            .map(str::to_string)
            .unwrap_or_default()
    };
    let addr_in = |line: &str| -> String {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix("addr="))
            .unwrap_or_default()
            .to_string()
    };
    let victims: Vec<(redis::Connection, String)> = (0..3)
        .map(|i| {
            let mut v = leader.client();
            assert_eq!(run(&mut v, &format!("CLIENT SETNAME victim{i}")), "OK");
            let id = run(&mut v, "CLIENT ID");
            (v, id)
        })
        .collect();
    let line = line_of(&mut c, &victims[0].1);
    assert!(
        line.contains(" name=victim0 age=") && line.contains(" idle="),
        "{line}"
    );
    assert!(addr_in(&line).starts_with("127.0.0.1:"), "{line}");
    let listed = run_json(&mut j, "CLIENT LIST");
    let entry = listed["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == json!(victims[1].1.parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("{listed}"))
        .clone();
    assert_eq!(entry["name"], json!("victim1"));
    assert!(entry["age"].is_i64() && entry["idle"].is_i64(), "{entry}");
    let addr1 = addr_in(&line_of(&mut c, &victims[1].1));
    let addr2 = addr_in(&line_of(&mut c, &victims[2].1));
    assert_eq!(entry["addr"], json!(addr1));
    assert_eq!(
        run(&mut c, &format!("CLIENT KILL ID {}", victims[0].1)),
        "OK"
    );
    assert_eq!(run(&mut c, &format!("CLIENT KILL ADDR {addr1}")), "OK");
    assert_eq!(
        run_json(&mut j, &format!("CLIENT KILL {addr2}")),
        json!({"ok":true})
    );
    for (mut v, id) in victims {
        assert!(
            wait_until(Duration::from_secs(10), || {
                redis::cmd("PING").query::<String>(&mut v).is_err()
            }),
            "connection {id} was not closed"
        );
        assert!(
            wait_until(Duration::from_secs(10), || line_of(&mut c, &id).is_empty()),
            "connection {id} is still listed"
        );
    }
    assert_eq!(
        run(&mut c, "CLIENT KILL ID 999999999"),
        "ERR:No such client"
    );
    assert_eq!(run(&mut c, "CLIENT KILL 10.9.9.9:1"), "ERR:No such client");
    assert_eq!(
        run(&mut c, "CLIENT NOPE"),
        "ERR:Syntax error, try CLIENT (LIST | KILL | GETNAME | SETNAME | ID)"
    );
    assert_eq!(run(&mut c, "PING"), "PONG", "the killer is still connected");

    // QUIT: +OK in RESP; in JSON the connection closes without a reply.
    let mut raw = leader.raw();
    raw.write_all(b"OUTPUT json\r\nQUIT\r\n").unwrap();
    let mut got = Vec::new();
    raw.read_to_end(&mut got).unwrap();
    let text = String::from_utf8(got).unwrap();
    assert!(text.starts_with('$'), "{text}");
    assert_eq!(text.matches("\"ok\":true").count(), 1, "{text:?}");
    let mut raw = leader.raw();
    raw.write_all(b"QUIT\r\n").unwrap();
    let mut got = Vec::new();
    raw.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"+OK\r\n");
}

/// The value of `key` in a flat RESP array of pairs.
fn field(pairs: &[String], key: &str) -> Option<String> {
    pairs.chunks(2).find(|p| p[0] == key).map(|p| p[1].clone())
}

/// Every key Tile38's SERVER gives on a leader.
const BASIC: &[&str] = &[
    "aof_size",
    "avg_item_size",
    "cpus",
    "heap_released",
    "heap_size",
    "http_transport",
    "id",
    "in_memory_size",
    "max_heap_size",
    "mem_alloc",
    "num_collections",
    "num_hooks",
    "num_objects",
    "num_points",
    "num_strings",
    "pending_events",
    "pid",
    "pointer_size",
    "read_only",
    "threads",
    "version",
];

/// Every key Tile38's SERVER EXT gives.
const EXT: &[&str] = &[
    "go_goroutines",
    "go_threads",
    "go_version",
    "alloc_bytes",
    "alloc_bytes_total",
    "sys_cpus",
    "sys_bytes",
    "lookups_total",
    "mallocs_total",
    "frees_total",
    "heap_alloc_bytes",
    "heap_sys_bytes",
    "heap_idle_bytes",
    "heap_inuse_bytes",
    "heap_released_bytes",
    "heap_objects",
    "stack_inuse_bytes",
    "stack_sys_bytes",
    "mspan_inuse_bytes",
    "mspan_sys_bytes",
    "mcache_inuse_bytes",
    "mcache_sys_bytes",
    "buck_hash_sys_bytes",
    "gc_sys_bytes",
    "other_sys_bytes",
    "next_gc_bytes",
    "last_gc_time_seconds",
    "gc_cpu_fraction",
    "tile38_id",
    "tile38_pid",
    "tile38_version",
    "tile38_max_heap_size",
    "tile38_type",
    "tile38_read_only",
    "tile38_pointer_size",
    "tile38_uptime_in_seconds",
    "tile38_connected_clients",
    "tile38_cluster_enabled",
    "tile38_aof_enabled",
    "tile38_aof_rewrite_in_progress",
    "tile38_aof_last_rewrite_time_sec",
    "tile38_aof_current_rewrite_time_sec",
    "tile38_aof_size",
    "tile38_http_transport",
    "tile38_total_connections_received",
    "tile38_total_commands_processed",
    "tile38_total_messages_sent",
    "tile38_expired_keys",
    "tile38_connected_slaves",
    "tile38_num_points",
    "tile38_num_objects",
    "tile38_num_strings",
    "tile38_num_collections",
    "tile38_num_hooks",
    "tile38_num_hook_groups",
    "tile38_num_object_groups",
    "tile38_avg_point_size",
    "tile38_in_memory_size",
];

#[test]
fn server_info_and_config_carry_tile38s_keys_and_types() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, follower) = pair(ld.path(), fd.path());
    let mut c = leader.client();
    assert_eq!(run(&mut c, "SET fleet a POINT 1 1"), "OK");
    assert_eq!(run(&mut c, "SET fleet s STRING x"), "OK");
    caught_up(&leader, &follower);

    // SERVER: a flat array sorted by key, values as text.
    let pairs: Vec<String> = redis::cmd("SERVER").query(&mut c).unwrap();
    let keys: Vec<&String> = pairs.iter().step_by(2).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    for k in BASIC {
        assert!(field(&pairs, k).is_some(), "SERVER has no {k}");
    }
    assert_eq!(field(&pairs, "num_objects").as_deref(), Some("2"));
    assert_eq!(field(&pairs, "num_strings").as_deref(), Some("1"));
    assert_eq!(field(&pairs, "read_only").as_deref(), Some("false"));
    assert_eq!(field(&pairs, "pointer_size").as_deref(), Some("8"));
    assert_eq!(field(&pairs, "following"), None, "only a follower follows");
    // JSON: the same keys, typed.
    let mut j = leader.json_client();
    let s = run_json(&mut j, "SERVER");
    let stats = &s["stats"];
    assert!(stats["num_points"].is_u64(), "{s}");
    assert!(stats["cpus"].as_u64().unwrap() >= 1, "{s}");
    assert!(stats["threads"].as_f64().unwrap() >= 1.0, "{s}");
    assert!(stats["heap_size"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(stats["read_only"], json!(false));
    assert_eq!(stats["http_transport"], json!(false));
    assert!(
        stats["version"].is_string() && stats["id"].is_string(),
        "{s}"
    );
    // The follower says whom it follows.
    let mut fj = follower.json_client();
    let fs = run_json(&mut fj, "SERVER");
    assert_eq!(
        fs["stats"]["following"],
        json!(format!("127.0.0.1:{}", leader.port))
    );
    assert_eq!(fs["stats"]["caught_up"], json!(true));
    assert_eq!(fs["stats"]["caught_up_once"], json!(true));
    assert_eq!(fs["stats"]["num_objects"], json!(2));

    // SERVER EXT: every field Tile38 returns.
    let ext: Vec<String> = redis::cmd("SERVER").arg("EXT").query(&mut c).unwrap();
    for k in EXT {
        assert!(field(&ext, k).is_some(), "SERVER EXT has no {k}");
    }
    assert_eq!(field(&ext, "tile38_type").as_deref(), Some("leader"));
    assert_eq!(field(&ext, "tile38_connected_slaves").as_deref(), Some("1"));
    let fe = run_json(&mut fj, "SERVER EXT");
    assert_eq!(fe["stats"]["tile38_type"], json!("follower"));
    assert_eq!(fe["stats"]["tile38_aof_enabled"], json!(true));
    assert!(
        fe["stats"]["heap_alloc_bytes"].as_u64().unwrap() > 0,
        "{fe}"
    );
    assert_eq!(run(&mut c, "SERVER FAST"), "ERR:invalid argument 'FAST'");
    // RESP3: a map.
    let mut c3 = resp3(&leader);
    let redis::Value::Map(m) = q3(&mut c3, "SERVER") else {
        panic!("SERVER is a map in RESP3")
    };
    assert!(m
        .iter()
        .any(|(k, _)| *k == redis::Value::BulkString(b"num_hooks".to_vec())));

    // INFO: Tile38's sections and lines.
    let info = run(&mut c, "INFO");
    for line in [
        "# Server\r\n",
        "redis_version:",
        "# Clients\r\nconnected_clients:",
        "# Replication\r\nrole:master\r\nslave0:ip=127.0.0.1,port=",
        ",state=online\r\nconnected_slaves:1\r\n",
        "# CPU\r\nused_cpu_sys:",
        "used_cpu_user:",
        "# Cluster\r\ncluster_enabled:0\r\n",
        "aof_enabled:1\r\n",
        "total_connections_received:",
    ] {
        assert!(info.contains(line), "{line:?} not in {info}");
    }
    let repl = run(&mut c, "INFO replication");
    assert!(repl.starts_with("# Replication\r\n"), "{repl}");
    assert!(!repl.contains("# Server"), "{repl}");
    let ji = run_json(&mut j, "INFO");
    assert_eq!(ji["info"]["connected_slaves"], json!(1));
    assert_eq!(ji["info"]["cluster_enabled"], json!(0));
    assert_eq!(ji["info"]["role"], json!("master"));
    assert!(ji["info"]["used_cpu_user"].is_number(), "{ji}");
    assert!(ji["info"]["uptime_in_seconds"].is_i64(), "{ji}");
    // A follower is a slave of its leader, with its priority once set.
    let mut f = follower.client();
    assert_eq!(run(&mut f, "CONFIG SET replica-priority 7"), "OK");
    let finfo = run_json(&mut fj, "INFO replication");
    assert_eq!(finfo["info"]["role"], json!("slave"));
    assert_eq!(finfo["info"]["master_host"], json!("127.0.0.1"));
    assert_eq!(finfo["info"]["master_port"], json!(leader.port));
    assert_eq!(finfo["info"]["slave_priority"], json!(7));
    assert!(finfo["info"]["slave_repl_offset"].is_i64(), "{finfo}");

    // CONFIG: Tile38's properties, validated, and kept by REWRITE.
    assert_eq!(run(&mut c, "CONFIG GET keepalive"), "[keepalive 300]");
    assert_eq!(run(&mut c, "CONFIG SET keepalive 60"), "OK");
    assert_eq!(
        run(&mut c, "CONFIG SET keepalive soon"),
        "ERR:Invalid argument 'soon' for CONFIG SET 'keepalive'"
    );
    assert_eq!(run(&mut c, "CONFIG SET autogc 30"), "OK");
    assert_eq!(
        run(&mut c, r#"CONFIG SET logconfig {"level":"info"}"#),
        "OK"
    );
    assert!(run(&mut c, "CONFIG SET logconfig [1]").starts_with("ERR:Invalid argument"));
    assert!(run(&mut c, "CONFIG SET replica-priority -1").starts_with("ERR:Invalid argument"));
    assert_eq!(run(&mut c, "CONFIG SET maxmemory 1gb"), "OK");
    assert_eq!(
        run(&mut c, "CONFIG SET follow_host 10.0.0.1"),
        "ERR:CONFIG parameter 'follow_host' is read-only, use FOLLOW"
    );
    assert_eq!(
        run(&mut c, "CONFIG SET nope 1"),
        "ERR:Unsupported CONFIG parameter: nope"
    );
    assert_eq!(
        run(&mut f, "CONFIG GET follow_*"),
        format!("[follow_host 127.0.0.1 follow_port {}]", leader.port)
    );
    assert_eq!(
        run_json(&mut j, "CONFIG GET keepalive"),
        json!({"ok":true,"properties":{"keepalive":"60"}})
    );
    assert_eq!(run(&mut c, "CONFIG REWRITE"), "OK");
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ld.path().join("config")).unwrap()).unwrap();
    assert_eq!(file["keepalive"], json!(60));
    assert_eq!(file["autogc"], json!(30));
    let leader = leader.restart().unwrap();
    let mut c = leader.client();
    assert_eq!(run(&mut c, "CONFIG GET keepalive"), "[keepalive 60]");
    assert_eq!(
        run(&mut c, "CONFIG GET logconfig"),
        r#"[logconfig {"level":"info"}]"#
    );
}
