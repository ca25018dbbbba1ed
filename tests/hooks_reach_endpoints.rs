//! Hook events from the real server reach a local HTTP server, a real
//! `redis-server` subscriber and a real Kafka-compatible broker (tansu), with
//! Tile38's JSON members in Tile38's order; META is copied into each event,
//! and a comma-separated endpoint list fails over to the next endpoint.

#[path = "hooks_peers.rs"]
mod peers;

use e2e::{run, start};
use peers::{
    free_port, member_order, sethook_enter, sethooks_and_cross_the_fence, HttpSink, KafkaPeer,
    RedisPeer,
};

#[test]
fn events_reach_http_redis_and_kafka_with_tile38_json() {
    let http = HttpSink::start();
    let redis = RedisPeer::start("geo").unwrap();
    let kafka = KafkaPeer::start("geo").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    sethooks_and_cross_the_fence(
        &mut c,
        &[
            ("to-http", http.url("events")),
            ("to-redis", redis.url("geo")),
            ("to-kafka", kafka.url("geo")),
        ],
    );

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
    sethook_enter(&mut c, "fo", &list);
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
