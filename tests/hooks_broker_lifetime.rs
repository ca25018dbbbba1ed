//! The maximum connection lifetime applies to the broker endpoints too: a
//! server whose only hook publishes to `mosquitto`, `nats-server` or
//! `rabbitmq-server` under constant load for about 2.5 s, with a 300 ms
//! lifetime, replaces its broker connection while it is busy (counted in
//! `geohook_hook_connection_recycles_total`, which in this server can only
//! count that endpoint's connections) and every event arrives, in order.

#[path = "common/peers_brokers.rs"]
mod brokers;
#[path = "hooks_peers.rs"]
mod peers;

use std::time::{Duration, Instant};

use brokers::{AmqpPeer, MqttPeer, NatsPeer};
use e2e::{run, start, wait_until};
use peers::{first_seen, metric, scrape, sethook_enter};

fn recycled_without_loss(scheme: &str, url: &str, events: &dyn Fn() -> Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            "--hook-max-connection-lifetime-ms",
            "300",
            "--hook-message-ttl-ms",
            "600000",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    )
    .unwrap();
    let mut c = server.client();
    sethook_enter(&mut c, "h", url);
    // Constant traffic: the reaper (once a second) must replace a connection
    // that is busy the whole time.
    let mut n = 0;
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        for _ in 0..5 {
            assert_eq!(
                run(&mut c, &format!("SET fleet t{n} POINT 33.001 -112.001")),
                "OK"
            );
            n += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let want: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    assert!(
        wait_until(Duration::from_secs(60), || first_seen(&events()).0.len()
            >= n),
        "{scheme}: {} of {n} events arrived",
        first_seen(&events()).0.len()
    );
    let (order, dups) = first_seen(&events());
    assert_eq!(order, want, "{scheme}: every event, in order");
    let page = scrape(&server);
    assert!(
        metric(&page, "geohook_hook_connection_recycles_total") >= 2.0,
        "{scheme}: {page}"
    );
    assert!(
        metric(&page, "geohook_hook_connections_opened_total") >= 3.0,
        "{scheme}: {page}"
    );
    println!(
        "{scheme}: {n} events over {} connections ({} recycled), {dups} duplicates",
        metric(&page, "geohook_hook_connections_opened_total"),
        metric(&page, "geohook_hook_connection_recycles_total")
    );
    drop(server);
}

#[test]
fn an_mqtt_connection_is_replaced_after_its_lifetime_without_loss() {
    let peer = MqttPeer::start("geo/lifetime").unwrap();
    recycled_without_loss("mqtt", &peer.url("?qos=1"), &|| peer.received.events());
}

#[test]
fn a_nats_connection_is_replaced_after_its_lifetime_without_loss() {
    let peer = NatsPeer::start("geo.lifetime").unwrap();
    recycled_without_loss("nats", &peer.url(""), &|| peer.received.events());
}

#[test]
fn an_amqp_connection_is_replaced_after_its_lifetime_without_loss() {
    let peer = AmqpPeer::start("lifetime").unwrap();
    recycled_without_loss("amqp", &peer.url(""), &|| peer.received.events());
}
