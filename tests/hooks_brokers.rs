//! Hook events reach the brokers users run, started for real on free
//! ports: Debian's `mosquitto` (MQTT), `nats-server` (NATS) and
//! `rabbitmq-server` (AMQP), with Tile38's JSON members in Tile38's order and
//! the `event_id` member. An endpoint whose broker goes down and comes back
//! on the same port gets every event the server journaled meanwhile, at least
//! once and in order.

#[path = "hooks_peers.rs"]
mod peers;

#[path = "common/peers_brokers.rs"]
mod brokers;

use std::collections::HashSet;
use std::time::Duration;

use brokers::{AmqpPeer, KafkaPartitionsPeer, MqttPeer, NatsPeer};
use e2e::{run, start, wait_until};
use peers::{
    cmd, first_seen, member_order, metric, scrape, sethook_enter, sethooks_and_cross_the_fence,
    ENTER_EXIT_FENCE,
};

const FLAGS: [&str; 4] = [
    "--hook-message-ttl-ms",
    "600000",
    "--metrics-addr",
    "127.0.0.1:0",
];

/// Checks one enter and one exit event of `hook` as Tile38 writes them.
fn check_enter_exit(events: &[serde_json::Value], bodies: &[String], hook: &str) {
    assert_eq!(events.len(), 2, "{hook}: {events:?}");
    let (enter, exit) = (&events[0], &events[1]);
    assert_eq!(enter["command"], "set", "{hook}");
    assert_eq!(enter["detect"], "enter", "{hook}");
    assert_eq!(exit["detect"], "exit", "{hook}");
    assert_eq!(enter["hook"], hook);
    assert_eq!(enter["meta"], serde_json::json!({"site": "north"}));
    assert_eq!(
        (&enter["key"], &enter["id"]),
        (&"fleet".into(), &"truck1".into())
    );
    assert_eq!(
        enter["object"],
        serde_json::json!({"type": "Point", "coordinates": [-111.95, 33.05]})
    );
    assert_eq!(enter["group"], exit["group"], "{hook}");
    let (a, b) = (enter["event_id"].as_u64(), exit["event_id"].as_u64());
    assert!(a.is_some() && a < b, "{hook}: event ids {a:?} {b:?}");
    assert_eq!(
        member_order(&bodies[0]),
        [
            "command", "group", "detect", "hook", "meta", "key", "time", "id", "object", "fields",
            "event_id"
        ],
        "{hook}"
    );
}

#[test]
fn events_reach_mqtt_nats_and_amqp_with_tile38_json() {
    let mqtt = MqttPeer::start("geo/fleet").unwrap();
    let nats = NatsPeer::start("geo.fleet").unwrap();
    let amqp = AmqpPeer::start("geo").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &FLAGS).unwrap();
    let mut c = server.client();
    sethooks_and_cross_the_fence(
        &mut c,
        &[
            ("to-mqtt", mqtt.url("?qos=1")),
            ("to-nats", nats.url("")),
            ("to-amqp", amqp.url("")),
        ],
    );

    check_enter_exit(&mqtt.wait_events(2), &mqtt.received.bodies(), "to-mqtt");
    check_enter_exit(&nats.wait_events(2), &nats.received.bodies(), "to-nats");
    check_enter_exit(&amqp.wait_events(2), &amqp.received.bodies(), "to-amqp");
    let page = scrape(&server);
    for scheme in ["mqtt", "nats", "amqp"] {
        let delivered = metric(
            &page,
            &format!("geohook_hook_deliveries_total{{scheme=\"{scheme}\"}}"),
        );
        assert_eq!(delivered, 2.0, "{scheme}: {page}");
    }
}

/// A broker under test: its endpoint URL, and ways to take it down, bring it
/// back and read what its subscriber received.
trait Down {
    fn url(&self) -> String;
    fn stop(&mut self);
    fn restart(&mut self);
    fn events(&self) -> Vec<serde_json::Value>;
}

/// Sends 20 enter events to a hook on `broker`, takes the broker down, sends
/// 30 more (acknowledged, so journaled), waits until the server has seen a
/// delivery fail, brings the broker back on the same port, and checks that
/// all 50 arrive, in order, each at least once.
fn survives_an_outage(scheme: &str, broker: &mut dyn Down) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &FLAGS).unwrap();
    let mut c = server.client();
    let url = broker.url();
    sethook_enter(&mut c, "h", &url);
    let ids: Vec<String> = (0..50).map(|i| format!("o{i}")).collect();
    let set = |c: &mut redis::Connection, id: &str| {
        assert_eq!(
            run(c, &format!("SET fleet {id} POINT 33.001 -112.001")),
            "OK"
        );
    };
    for id in &ids[..20] {
        set(&mut c, id);
    }
    let distinct = |b: &dyn Down| first_seen(&b.events()).0.len();
    assert!(
        wait_until(Duration::from_secs(30), || distinct(broker) >= 20),
        "{scheme}: the first 20 events never arrived: {:?}",
        broker.events()
    );
    broker.stop();
    for id in &ids[20..] {
        set(&mut c, id);
    }
    let failures = format!("geohook_hook_failures_total{{scheme=\"{scheme}\"}}");
    assert!(
        wait_until(Duration::from_secs(30), || metric(
            &scrape(&server),
            &failures
        ) > 0.0),
        "{scheme}: no delivery failed while the broker was down"
    );
    broker.restart();
    assert!(
        wait_until(Duration::from_secs(90), || distinct(broker) >= 50),
        "{scheme}: after the restart only {} of 50 events arrived",
        distinct(broker)
    );
    let events = broker.events();
    let (order, dups) = first_seen(&events);
    assert_eq!(order, ids, "{scheme}: every event, in order");
    assert!(events
        .iter()
        .all(|e| e["hook"] == "h" && e["detect"] == "enter"));
    println!("{scheme}: 50 of 50 delivered across a broker restart, {dups} duplicates");
    drop(server);
}

impl Down for MqttPeer {
    fn url(&self) -> String {
        MqttPeer::url(self, "?qos=1")
    }
    // SIGKILL: the events sent while it is down are the server's to keep.
    fn stop(&mut self) {
        self.kill_broker();
    }
    fn restart(&mut self) {
        self.restart_broker().unwrap();
    }
    fn events(&self) -> Vec<serde_json::Value> {
        self.received.events()
    }
}

impl Down for NatsPeer {
    // Core NATS has no acknowledgement, so what a restart must not lose goes
    // through JetStream, whose stream the test reads back.
    fn url(&self) -> String {
        NatsPeer::url(self, "?jetstream=true")
    }
    fn stop(&mut self) {
        self.stop_broker();
    }
    fn restart(&mut self) {
        self.restart_broker().unwrap();
    }
    fn events(&self) -> Vec<serde_json::Value> {
        peers::parse_all(&self.stream_bodies().unwrap_or_default())
    }
}

impl Down for AmqpPeer {
    // Persistent messages in the durable queue, so that the broker keeps
    // across its restart what it confirmed.
    fn url(&self) -> String {
        AmqpPeer::url(self, "?delivery_mode=2")
    }
    // SIGKILL, as for MQTT (NATS is stopped with SIGTERM: JetStream may
    // still hold acknowledged messages in memory that a kill would lose,
    // and the test reads them back from its stream).
    fn stop(&mut self) {
        self.kill_broker();
    }
    fn restart(&mut self) {
        self.restart_broker().unwrap();
    }
    fn events(&self) -> Vec<serde_json::Value> {
        self.received.events()
    }
}

#[test]
fn an_mqtt_broker_that_restarts_gets_every_journaled_event_in_order() {
    survives_an_outage("mqtt", &mut MqttPeer::start("geo/outage").unwrap());
}

#[test]
fn a_nats_server_that_restarts_gets_every_journaled_event_in_order() {
    survives_an_outage("nats", &mut NatsPeer::start("geo.outage").unwrap());
}

#[test]
fn an_amqp_broker_that_restarts_gets_every_journaled_event_in_order() {
    survives_an_outage("amqp", &mut AmqpPeer::start("outage").unwrap());
}

/// Kafka's default partitioner (murmur2 of the key, sign bit cleared, modulo
/// 4) for the keys `fleet-o0` to `fleet-o11`, worked out apart from the server
/// with a transcription of Kafka's Java `Utils.murmur2`.
const PARTITION_OF: [i32; 12] = [2, 2, 1, 0, 0, 2, 0, 0, 2, 1, 0, 3];

#[test]
fn kafka_records_go_to_the_partition_of_their_key() {
    let kafka = KafkaPartitionsPeer::start("geo", 4).unwrap();
    assert_eq!(kafka.partition_count("geo").unwrap(), 4);
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &FLAGS).unwrap();
    let mut c = server.client();
    let url = kafka.url("geo");
    let mut args = vec!["SETHOOK", "k", url.as_str()];
    args.extend(ENTER_EXIT_FENCE);
    assert_eq!(cmd(&mut c, &args), "1");
    // Each object enters and then exits, so every key has two records whose
    // order its partition must keep.
    for i in 0..12 {
        assert_eq!(
            run(&mut c, &format!("SET fleet o{i} POINT 33.05 -111.95")),
            "OK"
        );
    }
    for i in 0..12 {
        assert_eq!(run(&mut c, &format!("SET fleet o{i} POINT 32 -112")), "OK");
    }
    let mut records = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            records = kafka.records("geo", 4).unwrap_or_default();
            records.len() >= 24
        }),
        "expected 24 records, got {records:?}"
    );
    assert_eq!(records.len(), 24, "{records:?}");
    for (i, partition) in PARTITION_OF.into_iter().enumerate() {
        let key = format!("fleet-o{i}");
        let mine: Vec<&(i32, String, String)> = records.iter().filter(|r| r.1 == key).collect();
        assert_eq!(mine.len(), 2, "{key}: {records:?}");
        assert!(
            mine.iter().all(|r| r.0 == partition),
            "{key} belongs in partition {partition}: {mine:?}"
        );
        let detects: Vec<serde_json::Value> = mine
            .iter()
            .map(|r| serde_json::from_str::<serde_json::Value>(&r.2).unwrap()["detect"].clone())
            .collect();
        assert_eq!(
            detects,
            ["enter", "exit"],
            "{key}: in order within its partition"
        );
    }
}

/// `acked` appears in `order` as a subsequence: every acknowledged SET's
/// event arrived, in the order the SETs were acknowledged. Events of SETs cut
/// off by a kill before their reply may appear too.
fn assert_in_order(what: &str, order: &[String], acked: &[String]) {
    let mut it = order.iter();
    for (n, id) in acked.iter().enumerate() {
        assert!(
            it.any(|o| o == id),
            "{what}: acknowledged event {n} ({id}) missing or out of order"
        );
    }
}

/// Waits until every acknowledged id is among the first-seen ids of
/// `events()`, then checks the order and returns the duplicate count.
fn all_delivered(
    what: &str,
    acked: &[String],
    events: impl Fn() -> Vec<serde_json::Value>,
) -> usize {
    let complete = |evs: &[serde_json::Value]| {
        let (order, _) = first_seen(evs);
        let got: HashSet<&String> = order.iter().collect();
        acked.iter().all(|id| got.contains(id))
    };
    let ok = wait_until(Duration::from_secs(180), || complete(&events()));
    let (order, dups) = first_seen(&events());
    let got: HashSet<&String> = order.iter().collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !got.contains(id)).collect();
    assert!(
        ok,
        "{what}: missing {} of {} acknowledged events: {missing:?}",
        missing.len(),
        acked.len()
    );
    assert_in_order(what, &order, acked);
    dups
}

#[test]
fn acknowledged_events_survive_a_sigkill_loop_with_http_and_mqtt_going_down_and_kafka() {
    use std::sync::Arc;

    use parking_lot::Mutex;
    use peers::{free_port, parse_all, sink_on, write_until_kill9, HttpSink, KafkaPeer};

    let cycles = 20;
    let port = free_port();
    let http_url = format!("http://127.0.0.1:{port}/events");
    let kafka = KafkaPeer::start("geo").unwrap();
    let mut mqtt = MqttPeer::start("geo/loop").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    // Stopped sinks are kept: a request that reached one before it stopped
    // was answered 200 and counts as delivered.
    let mut stopped: Vec<HttpSink> = Vec::new();
    let mut http: Option<HttpSink> = None;
    let mut mqtt_up = true;
    let mut rng = rand::rng();
    for cycle in 0..cycles {
        let s = start(dir.path(), &FLAGS).unwrap();
        if cycle == 0 {
            let mut c = s.client();
            for (name, url) in [
                ("h", http_url.clone()),
                ("k", kafka.url("geo")),
                ("m", mqtt.url("?qos=1")),
            ] {
                sethook_enter(&mut c, name, &url);
            }
        }
        // HTTP goes down and comes back every few cycles; the MQTT broker
        // does the same out of phase with it; Kafka (tansu keeps its log in
        // memory) stays up.
        match (cycle % 4 < 2, http.is_some()) {
            (true, false) => http = Some(sink_on(port)),
            (false, true) => {
                let sink = http.take().unwrap();
                sink.stop();
                stopped.push(sink);
            }
            _ => {}
        }
        match ((cycle + 1) % 4 < 2, mqtt_up) {
            (true, false) => {
                mqtt.restart_broker().unwrap();
                mqtt_up = true;
            }
            (false, true) => {
                mqtt.stop_broker();
                mqtt_up = false;
            }
            _ => {}
        }
        write_until_kill9(s, cycle, &acked, &mut rng);
    }
    // Everything back up.
    let s = start(dir.path(), &FLAGS).unwrap();
    let http = http.unwrap_or_else(|| sink_on(port));
    if !mqtt_up {
        mqtt.restart_broker().unwrap();
    }
    let acked = acked.lock().clone();
    assert!(acked.len() > cycles, "the writer wrote in most cycles");
    let http_dups = all_delivered("http", &acked, || {
        let mut all: Vec<String> = stopped.iter().flat_map(HttpSink::bodies).collect();
        all.extend(http.bodies());
        parse_all(&all)
    });
    let kafka_dups = all_delivered("kafka", &acked, || {
        let records = kafka.records("geo").unwrap_or_default();
        parse_all(&records.into_iter().map(|(_, v)| v).collect::<Vec<_>>())
    });
    let mqtt_dups = all_delivered("mqtt", &acked, || mqtt.received.events());
    println!(
        "sigkill loop: {cycles} cycles, {} acknowledged SETs; every one delivered; \
         duplicates: http {http_dups}, kafka {kafka_dups}, mqtt {mqtt_dups}",
        acked.len()
    );
    drop(s);
}
