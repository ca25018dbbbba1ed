//! What the Tile38 client libraries' own test suites (pyle38 and
//! @iwpnd/tile38-ts, run by `examples/geohook-server/compat/client-suites.sh`)
//! found wrong, each checked here on a leader with a follower through
//! redis-rs, in RESP and in Tile38's JSON output:
//!
//! - GeoJSON positions outside the lat/lon range are stored, as Tile38
//!   stores them unless `REQUIREVALID` is set (tile38-ts's SCAN tests set
//!   `[33.5123, -112.2693]`, a latitude of -112);
//! - SERVER and INFO in JSON carry exactly Tile38's keys (tile38-ts compares
//!   the whole object), and INFO's CPU times are whole seconds, as Tile38
//!   writes them (pyle38 reads them as integers);
//! - TTL truncates the time left as Tile38 does, so it reads 4 right after
//!   `EX 5`;
//! - stored GeoJSON comes back without the client's spacing, as Tile38
//!   writes it anew (pyle38's JSET RAW test reads the document's text);
//! - FLUSHDB removes the hooks and channels too, on the leader, on its
//!   follower and after a restart;
//! - a follower applies its leader's expiry `del` to an object already past
//!   due on its own clock, so its channel subscribers hear the expiry
//!   (tile38-ts's "should receive del geofence on follower").

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use e2e::{run, run_json, start, wait_until, Server};

/// A leader and a follower that follows it and has caught up.
fn pair(ldir: &std::path::Path, fdir: &std::path::Path, extra: &[&str]) -> (Server, Server) {
    let leader = start(ldir, extra).unwrap();
    let follower = start(fdir, extra).unwrap();
    let mut f = follower.client();
    assert_eq!(
        run(&mut f, &format!("FOLLOW 127.0.0.1 {}", leader.port)),
        "OK"
    );
    caught_up(&leader, &follower);
    (leader, follower)
}

/// Waits until the follower has the leader's offset and serves reads.
fn caught_up(leader: &Server, follower: &Server) {
    let ok = wait_until(Duration::from_secs(30), || {
        let mut f = follower.client();
        let offset = |s: &Server, c: &mut redis::Connection| s.stat(c, "repl_offset");
        offset(leader, &mut leader.client()) == offset(follower, &mut f)
            && run(&mut f, "HEALTHZ") == "OK"
    });
    assert!(ok, "follower did not catch up:\n{}", follower.log());
}

/// The keys of a JSON object member.
fn keys(v: &serde_json::Value, member: &str) -> BTreeSet<String> {
    v[member]
        .as_object()
        .unwrap_or_else(|| panic!("no object '{member}' in {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set_of(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The Feature tile38-ts's SCAN tests store: `[lon, lat]` with lat = -112.
const OUT_OF_RANGE: &str = r#"{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[33.5123,-112.2693]}}"#;

#[test]
fn geojson_positions_out_of_range_are_stored_as_tile38_stores_them() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, follower) = pair(ld.path(), fd.path(), &[]);
    let mut c = leader.client();
    let set = |c: &mut redis::Connection, id: &str, doc: &str| {
        e2e::render(
            redis::cmd("SET")
                .arg("fleet")
                .arg(id)
                .arg("FIELD")
                .arg("maxSpeed")
                .arg(120)
                .arg("OBJECT")
                .arg(doc)
                .query(c),
        )
    };
    assert_eq!(set(&mut c, "truck1", OUT_OF_RANGE), "OK");
    let line = r#"{"type":"LineString","coordinates":[[200,0],[0,95]]}"#;
    assert_eq!(set(&mut c, "truck2", line), "OK");
    // Malformed documents are still refused: only the range is relaxed.
    let open_ring = r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,2]]]}"#;
    assert!(set(&mut c, "bad", open_ring).starts_with("ERR:"));
    let nan = r#"{"type":"Point","coordinates":["x",1]}"#;
    assert!(set(&mut c, "bad", nan).starts_with("ERR:"));

    let mut j = leader.json_client();
    let got = run_json(&mut j, "GET fleet truck1");
    assert_eq!(
        got["object"]["geometry"]["coordinates"],
        serde_json::json!([33.5123, -112.2693]),
        "{got}"
    );
    let scan = run_json(&mut j, "SCAN fleet WHERE maxSpeed 120 120 IDS");
    assert_eq!(
        scan["ids"],
        serde_json::json!(["truck1", "truck2"]),
        "{scan}"
    );
    // Every stored position has a hash, as in Tile38 (tile38-ts's SCAN
    // HASHES test); one out of range is hashed at the nearest in range.
    let hashes = run_json(&mut j, "SCAN fleet HASHES 5");
    assert_eq!(hashes["hashes"][0]["id"], "truck1", "{hashes}");
    assert_eq!(hashes["hashes"][0]["hash"], "h8pb4", "{hashes}");

    caught_up(&leader, &follower);
    let mut fj = follower.json_client();
    let scan = run_json(&mut fj, "SCAN fleet IDS");
    assert_eq!(
        scan["ids"],
        serde_json::json!(["truck1", "truck2"]),
        "{scan}"
    );

    // A restart replays the stored documents under the same rule.
    let leader = leader.restart().unwrap();
    let mut j = leader.json_client();
    assert_eq!(run_json(&mut j, "SCAN fleet COUNT")["count"], 2);

    // `--require-valid` keeps Tile38's REQUIREVALID behaviour.
    let sd = tempfile::tempdir().unwrap();
    let strict = start(sd.path(), &["--require-valid"]).unwrap();
    let mut s = strict.client();
    let refused = set(&mut s, "truck1", OUT_OF_RANGE);
    assert!(refused.contains("out of range"), "{refused}");
    assert_eq!(run(&mut s, "SCAN fleet COUNT"), "0");
}

/// Tile38's SERVER keys (`internal/server/stats.go`, as tile38-ts's
/// server test lists them).
const SERVER_KEYS: &[&str] = &[
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

/// Tile38's INFO lines on a leader with one follower.
const INFO_KEYS: &[&str] = &[
    "aof_current_rewrite_time_sec",
    "aof_enabled",
    "aof_last_rewrite_time_sec",
    "aof_rewrite_in_progress",
    "cluster_enabled",
    "connected_clients",
    "connected_slaves",
    "expired_keys",
    "redis_version",
    "role",
    "slave0",
    "tile38_version",
    "total_commands_processed",
    "total_connections_received",
    "total_messages_sent",
    "uptime_in_seconds",
    "used_cpu_sys",
    "used_cpu_sys_children",
    "used_cpu_user",
    "used_cpu_user_children",
    "used_memory",
];

#[test]
fn server_and_info_in_json_carry_exactly_tile38s_keys() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, follower) = pair(ld.path(), fd.path(), &[]);
    let mut c = leader.client();
    assert_eq!(run(&mut c, "SET fleet truck1 POINT 33 -112"), "OK");
    caught_up(&leader, &follower);

    let mut j = leader.json_client();
    let server = run_json(&mut j, "SERVER");
    assert_eq!(keys(&server, "stats"), set_of(SERVER_KEYS), "{server}");
    assert_eq!(server["stats"]["num_points"], 1);
    let mut fj = follower.json_client();
    let server = run_json(&mut fj, "SERVER");
    let mut follower_keys = set_of(SERVER_KEYS);
    follower_keys.extend(set_of(&["caught_up", "caught_up_once", "following"]));
    assert_eq!(keys(&server, "stats"), follower_keys, "{server}");
    assert_eq!(server["stats"]["caught_up"], true);
    assert_eq!(server["stats"]["caught_up_once"], true);

    let info = run_json(&mut j, "INFO");
    assert_eq!(keys(&info, "info"), set_of(INFO_KEYS), "{info}");
    assert_eq!(info["info"]["role"], "master");
    for k in [
        "used_cpu_sys",
        "used_cpu_user",
        "used_cpu_sys_children",
        "used_cpu_user_children",
    ] {
        assert!(info["info"][k].is_i64(), "{k} is a whole number: {info}");
    }
    let info = run_json(&mut fj, "INFO replication");
    assert_eq!(info["info"]["role"], "slave", "{info}");

    // RESP keeps this server's own figures beside Tile38's.
    let mut c = leader.client();
    let text = run(&mut c, "SERVER");
    for k in ["num_points", "repl_offset", "aof_offset", "memwatch_level"] {
        assert!(text.contains(k), "RESP SERVER has {k}: {text}");
    }
    let text = run(&mut c, "INFO");
    assert!(text.contains("aof_current_size:"), "{text}");
    assert!(text.contains("used_cpu_sys:"), "{text}");
    let cpu = text
        .split("\r\n")
        .find_map(|l| l.strip_prefix("used_cpu_user:"))
        .unwrap();
    assert!(cpu.ends_with(".00"), "whole seconds, two decimals: {cpu}");
}

#[test]
fn ttl_truncates_the_time_left_as_tile38_does() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, follower) = pair(ld.path(), fd.path(), &[]);
    // One pipeline, so that SET and TTL run within the same millisecond:
    // the deadline is kept to the millisecond, and a TTL counted from that
    // same millisecond would read the full 5.
    let mut raw = leader.raw();
    let mut batch = e2e::resp(&[
        b"SET", b"fleet", b"truck1", b"EX", b"5", b"POINT", b"1", b"1",
    ]);
    batch.extend(e2e::resp(&[b"TTL", b"fleet", b"truck1"]));
    batch.extend(e2e::resp(&[b"OUTPUT", b"json"]));
    batch.extend(e2e::resp(&[b"TTL", b"fleet", b"truck1"]));
    raw.write_all(&batch).unwrap();
    let mut out = String::new();
    // The replies may come in several reads; each read waits at most 2 s.
    let got_all = wait_until(Duration::from_secs(30), || {
        let (more, _) = e2e::exchange(&mut raw, b"", 1);
        out.push_str(&String::from_utf8_lossy(&more));
        out.contains("\"ttl\"")
    });
    assert!(got_all, "{out:?}");
    assert!(out.starts_with("+OK\r\n:4\r\n"), "{out:?}");
    assert!(out.contains(r#""ttl":4,"#), "{out:?}");

    // EXPIRE counts the same way, and PERSIST clears it.
    let mut j = leader.json_client();
    assert_eq!(run_json(&mut j, "EXPIRE fleet truck1 54")["ok"], true);
    let ttl = run_json(&mut j, "TTL fleet truck1")["ttl"]
        .as_i64()
        .unwrap();
    assert!((50..54).contains(&ttl), "{ttl}");
    caught_up(&leader, &follower);
    let mut fj = follower.json_client();
    let ttl = run_json(&mut fj, "TTL fleet truck1")["ttl"]
        .as_i64()
        .unwrap();
    assert!((0..54).contains(&ttl), "{ttl}");
    assert_eq!(run_json(&mut j, "PERSIST fleet truck1")["ok"], true);
    assert_eq!(run_json(&mut j, "TTL fleet truck1")["ttl"], -1);
}

#[test]
fn flushdb_removes_hooks_and_channels_on_leader_follower_and_restart() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, follower) = pair(ld.path(), fd.path(), &[]);
    let mut c = leader.client();
    let count = |j: &mut redis::Connection, what: &str| -> usize {
        let v = run_json(j, &format!("{} *", what.to_uppercase()));
        v[what].as_array().unwrap_or_else(|| panic!("{v}")).len()
    };
    assert_eq!(run(&mut c, "SET fleet truck1 POINT 33 -112"), "OK");
    assert_eq!(
        run(
            &mut c,
            "SETHOOK warehouse http://127.0.0.1:1/hook NEARBY fleet FENCE POINT 33 -112 500"
        ),
        "1"
    );
    assert_eq!(
        run(&mut c, "SETCHAN depot NEARBY fleet FENCE POINT 33 -112 500"),
        "1"
    );
    let mut j = leader.json_client();
    assert_eq!(count(&mut j, "hooks"), 1);
    assert_eq!(count(&mut j, "chans"), 1);
    caught_up(&leader, &follower);
    let mut fj = follower.json_client();
    assert_eq!(count(&mut fj, "hooks"), 1);
    assert_eq!(count(&mut fj, "chans"), 1);

    assert_eq!(run(&mut c, "FLUSHDB"), "OK");
    assert_eq!(count(&mut j, "hooks"), 0);
    assert_eq!(count(&mut j, "chans"), 0);
    assert_eq!(run(&mut c, "KEYS *"), "[]");
    caught_up(&leader, &follower);
    let mut fj = follower.json_client();
    assert_eq!(count(&mut fj, "hooks"), 0, "the follower's hooks");
    assert_eq!(count(&mut fj, "chans"), 0, "the follower's channels");

    // The log replays FLUSHDB with the same effect.
    let leader = leader.restart().unwrap();
    let mut j = leader.json_client();
    assert_eq!(count(&mut j, "hooks"), 0, "after a restart");
    assert_eq!(count(&mut j, "chans"), 0, "after a restart");
    // New hooks after the flush survive it.
    let mut c = leader.client();
    assert_eq!(
        run(&mut c, "SETCHAN depot NEARBY fleet FENCE POINT 33 -112 500"),
        "1"
    );
    let leader = leader.restart().unwrap();
    let mut j = leader.json_client();
    assert_eq!(count(&mut j, "chans"), 1);
}

#[test]
fn a_followers_subscribers_hear_the_leaders_expiry() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, follower) = pair(ld.path(), fd.path(), &[]);
    let mut c = leader.client();
    assert_eq!(
        run(
            &mut c,
            "SETCHAN parking NEARBY fleet FENCE DETECT inside POINT 52.55 13.43 100"
        ),
        "1"
    );
    caught_up(&leader, &follower);
    let mut sub_conn = follower.client();
    let mut sub = sub_conn.as_pubsub();
    sub.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    sub.subscribe("parking").unwrap();
    assert_eq!(run(&mut c, "SET fleet truck1 EX 1 POINT 52.55 13.43"), "OK");
    let mut commands = Vec::new();
    while !commands.iter().any(|c| c == "del") {
        let m = sub
            .get_message()
            .expect("an event within the read deadline");
        let event: serde_json::Value =
            serde_json::from_str(&m.get_payload::<String>().unwrap()).unwrap();
        assert_eq!(event["id"], "truck1", "{event}");
        commands.push(event["command"].as_str().unwrap().to_owned());
    }
    assert_eq!(commands, ["set", "del"]);
    // The object is gone from the follower's memory, not only hidden.
    let mut f = follower.client();
    assert_eq!(run(&mut f, "STATS fleet"), "[nil]");
}

#[test]
fn geojson_comes_back_compact_as_tile38_writes_it() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (leader, follower) = pair(ld.path(), fd.path(), &[]);
    let mut c = leader.client();
    // pyle38 sends Python's json.dumps, with a space after ',' and ':'.
    let spaced = "{\"type\": \"LineString\", \"coordinates\": [[0, 0], [1, 1]]}";
    let set: String = redis::cmd("SET")
        .arg("linestring")
        .arg("1")
        .arg("OBJECT")
        .arg(spaced)
        .query(&mut c)
        .unwrap();
    assert_eq!(set, "OK");
    let compact = r#"{"type":"LineString","coordinates":[[0,0],[1,1]]}"#;
    assert_eq!(run(&mut c, "GET linestring 1"), compact);
    let jset = e2e::render(
        redis::cmd("JSET")
            .arg("linestring")
            .arg("1")
            .arg("coordinates.-1")
            .arg("[2,2]")
            .arg("RAW")
            .query(&mut c),
    );
    assert_eq!(jset, "OK");
    let appended = r#"{"type":"LineString","coordinates":[[0,0],[1,1],[2,2]]}"#;
    assert_eq!(run(&mut c, "JGET linestring 1"), appended);
    // Spaces inside strings are data and stay.
    let feature = r#"{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {"name": "a b \" c"}}"#;
    let set: String = redis::cmd("SET")
        .arg("named")
        .arg("1")
        .arg("OBJECT")
        .arg(feature)
        .query(&mut c)
        .unwrap();
    assert_eq!(set, "OK");
    let want = r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[1,2]},"properties":{"name":"a b \" c"}}"#;
    assert_eq!(run(&mut c, "GET named 1"), want);
    caught_up(&leader, &follower);
    let mut f = follower.client();
    assert_eq!(run(&mut f, "JGET linestring 1"), appended);
    assert_eq!(run(&mut f, "GET named 1"), want);
}
