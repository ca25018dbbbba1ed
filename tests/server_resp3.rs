//! RESP3: a client that opens with `HELLO 3` (as today's redis-py and
//! redis-rs do when asked for RESP3) gets RESP3 for the rest of the
//! connection: maps for field/value replies, `_` for null, the rest as in
//! RESP2; RESP2 stays the default. Driven by redis-rs in RESP3 mode and by
//! raw bytes.

use e2e::{exchange, resp, start};
use redis::Value;

fn resp3_client(port: u16, password: Option<&str>) -> redis::RedisResult<redis::Connection> {
    let auth = password
        .map(|p| format!("default:{p}@"))
        .unwrap_or_default();
    let c = redis::Client::open(format!("redis://{auth}127.0.0.1:{port}/?protocol=resp3"))?;
    c.get_connection_with_timeout(std::time::Duration::from_secs(10))
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        Value::Okay => "OK".into(),
        other => format!("{other:?}"),
    }
}

/// A map reply as (key, value) texts.
fn map(v: Value) -> Vec<(String, String)> {
    let Value::Map(pairs) = v else {
        panic!("expected a RESP3 map, got {v:?}")
    };
    pairs.iter().map(|(k, v)| (text(k), text(v))).collect()
}

#[test]
fn a_resp3_client_works_and_gets_maps_and_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = resp3_client(server.port, None).expect("HELLO 3 is accepted");
    let q = |c: &mut redis::Connection, line: &str| -> Value {
        e2e::cmd_of(line)
            .query(c)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    assert_eq!(
        text(&q(&mut c, "SET fleet truck1 FIELD speed 9 POINT 33 -115")),
        "OK"
    );
    assert_eq!(
        text(&q(&mut c, "GET fleet truck1")),
        r#"{"type":"Point","coordinates":[-115,33]}"#
    );
    assert_eq!(q(&mut c, "GET fleet nobody"), Value::Nil);
    let Value::Array(page) = q(&mut c, "NEARBY fleet IDS POINT 33 -115 1000") else {
        panic!("expected an array")
    };
    assert_eq!(text(&page[0]), "0");
    assert_eq!(
        page[1],
        Value::Array(vec![Value::BulkString(b"truck1".to_vec())])
    );
    let config = map(q(&mut c, "CONFIG GET protected-mode"));
    assert_eq!(config, vec![("protected-mode".into(), "yes".into())]);
    let server_stats = map(q(&mut c, "SERVER"));
    assert!(server_stats
        .iter()
        .any(|(k, v)| k == "num_objects" && v == "1"));
    let Value::Array(stats) = q(&mut c, "STATS fleet nokey") else {
        panic!("expected an array")
    };
    assert_eq!(
        map(stats[0].clone()),
        vec![
            (
                "in_memory_size".into(),
                map_value(&stats[0], "in_memory_size")
            ),
            ("num_objects".into(), "1".into()),
            ("num_points".into(), "1".into()),
            ("num_strings".into(), "0".into()),
        ]
    );
    assert_eq!(stats[1], Value::Nil);
    let hello = map(q(&mut c, "HELLO"));
    assert!(hello.contains(&("proto".into(), "3".into())), "{hello:?}");
    assert!(
        hello.contains(&("role".into(), "master".into())),
        "{hello:?}"
    );
    assert_eq!(text(&q(&mut c, "CLIENT SETNAME tracker")), "OK");
    assert_eq!(text(&q(&mut c, "CLIENT GETNAME")), "tracker");

    // A RESP2 client beside it is unchanged: maps are flat arrays.
    let mut c2 = server.client();
    let flat: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("protected-mode")
        .query(&mut c2)
        .unwrap();
    assert_eq!(flat, ["protected-mode", "yes"]);
}

fn map_value(v: &Value, key: &str) -> String {
    let Value::Map(pairs) = v else { panic!() };
    pairs
        .iter()
        .find(|(k, _)| text(k) == key)
        .map(|(_, v)| text(v))
        .unwrap()
}

#[test]
fn hello_negotiates_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--requirepass", "s3cret"]).unwrap();
    let mut s = server.raw();
    // Without AUTH, HELLO refuses and the connection stays RESP2.
    let (out, _) = exchange(&mut s, &resp(&[b"HELLO", b"3"]), 10);
    assert!(
        out.starts_with(b"-NOAUTH HELLO must be called"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let (out, _) = exchange(
        &mut s,
        &resp(&[b"HELLO", b"3", b"AUTH", b"default", b"wrong"]),
        10,
    );
    assert_eq!(out, b"-WRONGPASS invalid password\r\n");
    let (out, _) = exchange(&mut s, &resp(&[b"HELLO", b"4"]), 10);
    assert_eq!(out, b"-NOPROTO unsupported protocol version\r\n");
    let (out, _) = exchange(&mut s, &resp(&[b"GET", b"k", b"i"]), 10);
    assert!(out.starts_with(b"-NOAUTH"), "still unauthenticated");
    // HELLO 3 with AUTH and SETNAME: authenticated, RESP3 from its own reply on.
    let (out, _) = exchange(
        &mut s,
        &resp(&[
            b"HELLO", b"3", b"AUTH", b"default", b"s3cret", b"SETNAME", b"app",
        ]),
        60,
    );
    assert!(
        out.starts_with(b"%7\r\n$6\r\nserver\r\n"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let (out, _) = exchange(&mut s, &resp(&[b"GET", b"k", b"i"]), 3);
    assert_eq!(out, b"_\r\n");
    let (out, _) = exchange(&mut s, &resp(&[b"CLIENT", b"GETNAME"]), 9);
    assert_eq!(out, b"$3\r\napp\r\n");
    // HELLO 2 goes back to RESP2.
    let (out, _) = exchange(&mut s, &resp(&[b"HELLO", b"2"]), 60);
    assert!(
        out.starts_with(b"*14\r\n"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let (out, _) = exchange(&mut s, &resp(&[b"GET", b"k", b"i"]), 5);
    assert_eq!(out, b"$-1\r\n");
    // A RESP3 client library with the password in its URL connects.
    let mut c = resp3_client(server.port, Some("s3cret")).expect("HELLO 3 AUTH");
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    assert!(resp3_client(server.port, Some("nope")).is_err());
}
