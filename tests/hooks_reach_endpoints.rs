//! Hook events from the real server reach a local HTTP server, a real
//! `redis-server` subscriber and a real Kafka-compatible broker (tansu), with
//! Tile38's JSON members in Tile38's order; META is copied into each event,
//! and a comma-separated endpoint list fails over to the next endpoint.

#[path = "hooks_peers.rs"]
mod peers;

use e2e::{run, start};
use peers::{cmd, free_port, HttpSink, KafkaPeer, RedisPeer};

/// The members of an event, in the order they appear in its JSON text.
fn member_order(body: &str) -> Vec<String> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(body).unwrap();
    let mut keys: Vec<(usize, String)> = v
        .keys()
        .map(|k| (body.find(&format!("\"{k}\":")).unwrap(), k.clone()))
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

#[test]
fn events_reach_http_redis_and_kafka_with_tile38_json() {
    let http = HttpSink::start();
    let redis = RedisPeer::start("geo").unwrap();
    let kafka = KafkaPeer::start("geo").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let fence = [
        "WITHIN",
        "fleet",
        "FENCE",
        "DETECT",
        "enter,exit",
        "BOUNDS",
        "33",
        "-112",
        "33.1",
        "-111.9",
    ];
    for (name, url) in [
        ("to-http", http.url("events")),
        ("to-redis", redis.url("geo")),
        ("to-kafka", kafka.url("geo")),
    ] {
        let mut args = vec!["SETHOOK", name, url.as_str(), "META", "site", "north"];
        args.extend(fence);
        assert_eq!(cmd(&mut c, &args), "1", "{name}");
    }
    assert_eq!(run(&mut c, "SET fleet truck1 POINT 32 -112"), "OK");
    assert_eq!(
        run(
            &mut c,
            "SET fleet truck1 FIELD speed 20 POINT 33.05 -111.95"
        ),
        "OK"
    );
    assert_eq!(run(&mut c, "SET fleet truck1 POINT 32 -112"), "OK");

    let http_events = http.wait_events(2);
    let redis_events = redis.wait_events(2);
    let kafka_records = kafka.wait_records("geo", 2);
    let check = |events: &[serde_json::Value], hook: &str| {
        assert_eq!(events.len(), 2, "{hook}: {events:?}");
        let (enter, exit) = (&events[0], &events[1]);
        assert_eq!(enter["command"], "set");
        assert_eq!(enter["detect"], "enter");
        assert_eq!(enter["hook"], hook);
        assert_eq!(enter["meta"], serde_json::json!({"site": "north"}));
        assert_eq!(enter["key"], "fleet");
        assert_eq!(enter["id"], "truck1");
        assert_eq!(
            enter["object"],
            serde_json::json!({"type": "Point", "coordinates": [-111.95, 33.05]})
        );
        assert_eq!(enter["fields"], serde_json::json!({"speed": 20}));
        assert_eq!(exit["detect"], "exit");
        // The exit belongs to the stay the enter opened.
        assert_eq!(enter["group"], exit["group"]);
        assert_eq!(enter["group"].as_str().unwrap().len(), 24);
        // RFC 3339 with nanoseconds.
        let t = enter["time"].as_str().unwrap();
        assert!(t.len() >= 30 && t.contains('T'), "{t}");
    };
    check(&http_events, "to-http");
    check(&redis_events, "to-redis");
    let kafka_events = peers::parse_all(
        &kafka_records
            .iter()
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>(),
    );
    check(&kafka_events, "to-kafka");
    // Kafka records are keyed <key>-<id>.
    assert!(
        kafka_records.iter().all(|(k, _)| k == "fleet-truck1"),
        "{kafka_records:?}"
    );
    assert_eq!(
        member_order(&http.bodies()[0]),
        [
            "command", "group", "detect", "hook", "meta", "key", "time", "id", "object", "fields",
            "event_id"
        ]
    );
}

#[test]
fn a_dead_first_endpoint_fails_over_to_the_next() {
    let http = HttpSink::start();
    let dead = format!("http://127.0.0.1:{}/nobody", free_port());
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let list = format!("{dead},{}", http.url("backup"));
    assert_eq!(
        cmd(
            &mut c,
            &[
                "SETHOOK", "fo", &list, "NEARBY", "fleet", "FENCE", "DETECT", "enter", "POINT",
                "33", "-112", "1000"
            ]
        ),
        "1"
    );
    for i in 0..5 {
        assert_eq!(
            run(&mut c, &format!("SET fleet t{i} POINT 33.001 -112.001")),
            "OK"
        );
    }
    let events = http.wait_events(5);
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["t0", "t1", "t2", "t3", "t4"], "in order, once each");
    assert!(events
        .iter()
        .all(|e| e["hook"] == "fo" && e["detect"] == "enter"));
}
