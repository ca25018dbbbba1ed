//! Hook events survive a crash: the events a server queued for an endpoint
//! that is down are in its hook journal, so after a SIGKILL and a restart
//! they are delivered once the endpoint is back. Under a SIGKILL loop with
//! the HTTP endpoint going down and coming back and a Kafka endpoint up,
//! every event of an acknowledged SET arrives at least once, in order per
//! hook; duplicates (redeliveries of events whose `done` a kill cut off) are
//! counted and printed.

#[path = "hooks_peers.rs"]
mod peers;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use e2e::{run, start, wait_until};
use parking_lot::Mutex;
use peers::{
    first_seen, free_port, parse_all, sethook_enter, sink_on, write_until_kill9, HttpSink,
    KafkaPeer,
};

const FLAGS: [&str; 2] = ["--hook-message-ttl-ms", "600000"];

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

#[test]
fn three_hundred_events_queued_at_a_sigkill_arrive_after_restart() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/events");
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &FLAGS).unwrap();
    let mut c = server.client();
    sethook_enter(&mut c, "h", &url);
    let ids: Vec<String> = (0..300).map(|i| format!("o{i}")).collect();
    for id in &ids {
        assert_eq!(
            run(&mut c, &format!("SET fleet {id} POINT 33.001 -112.001")),
            "OK"
        );
    }
    server.kill9();
    assert!(dir.path().join("hooks.journal").exists());

    let server = start(dir.path(), &FLAGS).unwrap();
    assert!(
        server.wait_log(
            "hook journal: events queued again events=300",
            Duration::from_secs(10)
        ),
        "{}",
        server.log()
    );
    let http = sink_on(port);
    let events = http.wait_events(300);
    let (order, dups) = first_seen(&events);
    assert_eq!(order, ids, "all 300, in order");
    assert!(events
        .iter()
        .all(|e| e["hook"] == "h" && e["detect"] == "enter"));
    println!("restart: 300 of 300 delivered, {dups} duplicates");
    drop(server);
}

#[test]
fn acknowledged_events_survive_a_sigkill_loop_with_http_going_down_and_kafka() {
    let cycles = 20;
    let port = free_port();
    let http_url = format!("http://127.0.0.1:{port}/events");
    let kafka = KafkaPeer::start("geo").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    // Stopped sinks are kept: a request that reached one before it stopped
    // was answered 200 and counts as delivered.
    let mut stopped: Vec<HttpSink> = Vec::new();
    let mut http: Option<HttpSink> = None;
    let mut rng = rand::rng();
    for cycle in 0..cycles {
        let s = start(dir.path(), &FLAGS).unwrap();
        if cycle == 0 {
            let mut c = s.client();
            sethook_enter(&mut c, "h", &http_url);
            sethook_enter(&mut c, "k", &kafka.url("geo"));
        }
        // The HTTP endpoint goes down and comes back every few cycles.
        match (cycle % 4 < 2, http.is_some()) {
            (true, false) => http = Some(sink_on(port)),
            (false, true) => {
                let sink = http.take().unwrap();
                sink.stop();
                stopped.push(sink);
            }
            _ => {}
        }
        write_until_kill9(s, cycle, &acked, &mut rng);
    }
    // Everything back up.
    let s = start(dir.path(), &FLAGS).unwrap();
    let http = http.unwrap_or_else(|| sink_on(port));
    let acked = acked.lock().clone();
    assert!(acked.len() > cycles, "the writer wrote in most cycles");
    let all_http = || {
        let mut all: Vec<String> = stopped.iter().flat_map(HttpSink::bodies).collect();
        all.extend(http.bodies());
        parse_all(&all)
    };
    let delivered = |events: &[serde_json::Value]| {
        let (order, _) = first_seen(events);
        let got: HashSet<&String> = order.iter().collect();
        acked.iter().all(|id| got.contains(id))
    };
    let ok = wait_until(Duration::from_secs(120), || delivered(&all_http()));
    let (order, http_dups) = first_seen(&all_http());
    let got: HashSet<&String> = order.iter().collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !got.contains(id)).collect();
    assert!(
        ok,
        "http: missing {missing:?} of {} acknowledged events",
        acked.len()
    );
    assert_in_order("http", &order, &acked);
    let mut records = Vec::new();
    let ok = wait_until(Duration::from_secs(120), || {
        records = kafka.records("geo").unwrap_or_default();
        delivered(&parse_all(
            &records.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        ))
    });
    let kafka_events = parse_all(&records.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
    let (korder, kafka_dups) = first_seen(&kafka_events);
    assert!(
        ok,
        "kafka: {} of {} acknowledged events",
        korder.len(),
        acked.len()
    );
    assert_in_order("kafka", &korder, &acked);
    for (k, v) in &records {
        let e: serde_json::Value = serde_json::from_str(v).unwrap();
        assert_eq!(k, &format!("fleet-{}", e["id"].as_str().unwrap()));
    }
    println!(
        "sigkill loop: {cycles} cycles, {} acknowledged SETs; every one delivered; \
         duplicates: http {http_dups}, kafka {kafka_dups}",
        acked.len()
    );
    drop(s);
}

#[test]
fn without_the_journal_nothing_is_written_and_the_flag_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--hook-journal", "no"]).unwrap();
    let mut c = server.client();
    sethook_enter(&mut c, "h", &format!("http://127.0.0.1:{}/e", free_port()));
    assert_eq!(run(&mut c, "SET fleet a POINT 33.001 -112.001"), "OK");
    server.kill9();
    assert!(!dir.path().join("hooks.journal").exists());
    assert!(e2e::start(dir.path(), &["--hook-journal", "maybe"]).is_err());
}
