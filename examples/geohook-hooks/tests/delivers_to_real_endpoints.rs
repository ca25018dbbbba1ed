//! The outbox delivers to a real HTTP server, a real redis-server and the real tansu broker: in order per
//! hook, failing over, surviving an outage within the time-to-live, and recycling connections under load.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{wait_until, HttpSink, Kafka, Redis};
use geohook_hooks::{DeliveryConfig, Endpoint, Outbox, Payload, Pushed, QueueConfig, Scheme};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

fn payload(i: usize) -> Payload {
    Payload {
        key: format!("fleet-{i}").into(),
        body: format!("{{\"n\":{i}}}").into(),
    }
}

fn start(config: QueueConfig) -> (Arc<Outbox>, CancellationToken) {
    let outbox = Arc::new(Outbox::new(config).unwrap());
    let cancel = CancellationToken::new();
    let (o, c) = (Arc::clone(&outbox), cancel.clone());
    tokio::spawn(async move { o.run(c).await });
    (outbox, cancel)
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{{\"n\":{i}}}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scheme_receives_every_message_in_order() {
    let http = HttpSink::start().await;
    let redis = Redis::start(&["fences"]).await.unwrap();
    let kafka = Kafka::start(&["geo"]).await.unwrap();
    let (outbox, cancel) = start(QueueConfig::default());
    outbox.set_hook("h", Endpoint::parse_list(&http.url("hook")).unwrap());
    outbox.set_hook("r", Endpoint::parse_list(&redis.url("fences")).unwrap());
    outbox.set_hook("k", Endpoint::parse_list(&kafka.url("geo")).unwrap());
    for i in 0..50 {
        for hook in ["h", "r", "k"] {
            assert_eq!(outbox.push(hook, payload(i)), Pushed::Queued);
        }
    }
    wait_until("http", WAIT, || http.count() == 50).await;
    wait_until("redis", WAIT, || redis.payloads().len() == 50).await;
    assert_eq!(http.bodies(), expected(0..50));
    assert_eq!(redis.payloads(), expected(0..50));
    wait_until("kafka metrics", WAIT, || {
        outbox.metrics().scheme(Scheme::Kafka).deliveries == 50
    })
    .await;
    let records = kafka.records("geo").await.unwrap();
    assert_eq!(
        records.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        expected(0..50)
    );
    assert_eq!(records[7].0, "fleet-7");
    let m = outbox.metrics();
    for s in [Scheme::Http, Scheme::Redis, Scheme::Kafka] {
        assert_eq!(
            (m.scheme(s).deliveries, m.scheme(s).failures),
            (50, 0),
            "{s}"
        );
    }
    assert_eq!((m.queued_messages, m.queued_bytes, m.dropped()), (0, 0, 0));
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_endpoint_fails_over_to_the_next() {
    let http = HttpSink::start().await;
    let dead = format!("http://127.0.0.1:{}/x", common::free_port());
    let (outbox, cancel) = start(QueueConfig::default());
    outbox.set_hook(
        "h",
        Endpoint::parse_list(&format!("{dead},{}", http.url("ok"))).unwrap(),
    );
    for i in 0..5 {
        outbox.push("h", payload(i));
    }
    wait_until("failover delivery", WAIT, || http.count() == 5).await;
    assert_eq!(http.bodies(), expected(0..5));
    let m = outbox.metrics();
    assert_eq!(
        m.scheme(Scheme::Http).failures,
        5,
        "each message tried the dead endpoint first"
    );
    assert_eq!(m.scheme(Scheme::Http).retries, 0, "failover is not a retry");
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_drops_expired_messages_and_delivers_the_rest_once_in_order() {
    let port = common::free_port();
    // With dead letters off, as Tile38 does (`tests/dead_letters.rs` covers them on).
    let config = QueueConfig {
        max_dead_letters: 0,
        message_ttl: Duration::from_millis(1500),
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        ..Default::default()
    };
    let (outbox, cancel) = start(config);
    outbox.set_hook(
        "h",
        Endpoint::parse_list(&format!("http://127.0.0.1:{port}/x")).unwrap(),
    );
    let other = HttpSink::start().await;
    outbox.set_hook("other", Endpoint::parse_list(&other.url("y")).unwrap());
    for i in 0..5 {
        outbox.push("h", payload(i));
        outbox.push("other", payload(i));
    }
    // A failing head blocks only its own hook.
    wait_until("the healthy hook", WAIT, || other.count() == 5).await;
    assert_eq!(outbox.queued("h"), Some(5));
    wait_until("the first five to expire", WAIT, || {
        outbox.metrics().dropped_expired == 5
    })
    .await;
    assert!(
        outbox.metrics().scheme(Scheme::Http).retries >= 2,
        "the head was retried with back-off"
    );
    for i in 5..10 {
        outbox.push("h", payload(i));
    }
    let http = HttpSink::start_on(port).await.unwrap();
    wait_until("the last five", WAIT, || http.count() == 5).await;
    wait_until("an empty queue", WAIT, || {
        outbox.metrics().queued_messages == 0
    })
    .await;
    assert_eq!(
        http.bodies(),
        expected(5..10),
        "in order, exactly once, none of the expired ones"
    );
    assert_eq!(outbox.metrics().dropped_expired, 5);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_replaced_under_constant_load_and_nothing_is_lost() {
    let http = HttpSink::start().await;
    let redis = Redis::start(&["c"]).await.unwrap();
    let kafka = Kafka::start(&["t"]).await.unwrap();
    let config = QueueConfig {
        delivery: DeliveryConfig {
            max_connection_lifetime: Duration::from_millis(150),
            ..Default::default()
        },
        ..Default::default()
    };
    let (outbox, cancel) = start(config);
    outbox.set_hook("h", Endpoint::parse_list(&http.url("x")).unwrap());
    outbox.set_hook("r", Endpoint::parse_list(&redis.url("c")).unwrap());
    outbox.set_hook("k", Endpoint::parse_list(&kafka.url("t")).unwrap());
    // A steady stream: a message every 5 ms for about a second, never idle long enough to close.
    let n = 200;
    for i in 0..n {
        for hook in ["h", "r", "k"] {
            assert_eq!(outbox.push(hook, payload(i)), Pushed::Queued);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_until("http", WAIT, || http.count() == n).await;
    wait_until("redis", WAIT, || redis.payloads().len() == n).await;
    wait_until("kafka", WAIT, || {
        outbox.metrics().scheme(Scheme::Kafka).deliveries == n as u64
    })
    .await;
    assert_eq!(http.bodies(), expected(0..n));
    assert_eq!(redis.payloads(), expected(0..n));
    let kafka_values: Vec<String> = kafka
        .records("t")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(kafka_values, expected(0..n));
    let m = outbox.metrics();
    assert!(
        m.connection_recycles >= 6,
        "recycles: {}",
        m.connection_recycles
    );
    assert!(
        http.connections.lock().len() >= 3,
        "the sink saw new client connections"
    );
    assert_eq!(m.dropped(), 0);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_leaves_its_messages_to_the_next_run() {
    let port = common::free_port();
    let config = QueueConfig {
        retry_initial: Duration::from_millis(20),
        ..Default::default()
    };
    let outbox = Arc::new(Outbox::new(config).unwrap());
    outbox.set_hook(
        "h",
        Endpoint::parse_list(&format!("http://127.0.0.1:{port}/x")).unwrap(),
    );
    for i in 0..3 {
        outbox.push("h", payload(i));
    }
    let cancel = CancellationToken::new();
    let first = tokio::spawn({
        let (o, c) = (Arc::clone(&outbox), cancel.clone());
        async move { o.run(c).await }
    });
    wait_until("a failed attempt", WAIT, || {
        outbox.metrics().scheme(Scheme::Http).retries >= 1
    })
    .await;
    cancel.cancel();
    first.await.unwrap();
    assert_eq!(
        outbox.queued("h"),
        Some(3),
        "nothing lost when the runner stopped"
    );
    let http = HttpSink::start_on(port).await.unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn({
        let (o, c) = (Arc::clone(&outbox), cancel.clone());
        async move { o.run(c).await }
    });
    wait_until("delivery by the second run", WAIT, || http.count() == 3).await;
    assert_eq!(http.bodies(), expected(0..3));
    cancel.cancel();
}
