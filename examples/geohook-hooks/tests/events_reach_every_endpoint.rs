//! Fence events from `on_change` reach a real HTTP server, a real redis-server subscriber and the real
//! tansu broker with the same JSON, and a hook whose first endpoint is dead fails over to the next.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{bounds_hook, point, wait_until, HttpSink, Kafka, Redis};
use geohook_hooks::{Change, Hooks, QueueConfig, Scheme};
use tokio_util::sync::CancellationToken;

const FENCE: [f64; 4] = [0.0, 0.0, 10.0, 10.0];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_reaches_http_redis_and_kafka() {
    let http = HttpSink::start().await;
    let redis = Redis::start(&["geofence"]).await.unwrap();
    let kafka = Kafka::start(&["geofence"]).await.unwrap();
    let dead = format!("http://127.0.0.1:{}/down", common::free_port());
    let hooks = Arc::new(Hooks::new(QueueConfig::default()).unwrap());
    let cancel = CancellationToken::new();
    tokio::spawn({
        let (h, c) = (Arc::clone(&hooks), cancel.clone());
        async move { h.run(c).await }
    });
    let now = SystemTime::now();
    for (name, url) in [
        ("h", http.url("h")),
        ("r", redis.url("geofence")),
        ("k", kafka.url("geofence")),
        ("f", format!("{dead},{}", http.url("f"))),
    ] {
        hooks
            .set_hook(
                bounds_hook(name, &url, "fleet", Some("enter,exit"), None, FENCE),
                now,
            )
            .unwrap();
    }
    let (a, b) = (point(20.0, 20.0), point(5.0, 5.0));
    assert_eq!(
        hooks.on_change(&Change::set("fleet", "truck", Some(&a), &b, None, now)),
        4
    );
    assert_eq!(
        hooks.on_change(&Change::set("fleet", "truck", Some(&b), &a, None, now)),
        4
    );

    wait_until("http and failover", Duration::from_secs(20), || {
        http.count() == 4
    })
    .await;
    wait_until("redis", Duration::from_secs(20), || {
        redis.payloads().len() == 2
    })
    .await;
    wait_until("kafka", Duration::from_secs(20), || {
        hooks.metrics().scheme(Scheme::Kafka).deliveries == 2
    })
    .await;
    let records = kafka.records("geofence").await.unwrap();
    assert_eq!(records.len(), 2);
    assert!(
        records.iter().all(|(key, _)| key == "fleet-truck"),
        "Kafka keys are <key>-<id>"
    );

    // Apart from the hook name and the group and event id (which are per hook), the four copies are
    // one event.
    let normalise = |s: &str, hook: &str| {
        let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
        assert_eq!(v["hook"], hook);
        v["hook"] = "_".into();
        v["group"] = "_".into();
        assert!(v["event_id"].is_u64(), "{v}");
        v["event_id"] = "_".into();
        v
    };
    let http_bodies = http.bodies();
    let of = |hook: &str| -> Vec<serde_json::Value> {
        http_bodies
            .iter()
            .filter(|b| b.contains(&format!("\"hook\":\"{hook}\"")))
            .map(|b| normalise(b, hook))
            .collect()
    };
    let want = of("h");
    assert_eq!(want.len(), 2);
    assert_eq!(want[0]["detect"], "enter");
    assert_eq!(want[1]["detect"], "exit");
    assert_eq!(
        want[0]["object"],
        serde_json::json!({"type": "Point", "coordinates": [5, 5]})
    );
    assert_eq!(of("f"), want, "failover delivered the same events in order");
    assert_eq!(
        redis
            .payloads()
            .iter()
            .map(|p| normalise(p, "r"))
            .collect::<Vec<_>>(),
        want
    );
    assert_eq!(
        records
            .iter()
            .map(|(_, v)| normalise(v, "k"))
            .collect::<Vec<_>>(),
        want
    );
    let m = hooks.metrics();
    assert_eq!(m.scheme(Scheme::Http).deliveries, 4);
    assert_eq!(
        m.scheme(Scheme::Http).failures,
        2,
        "the dead endpoint was tried once per event"
    );
    assert_eq!(m.dropped(), 0);
    cancel.cancel();
}
