//! The dead-letter path: with the endpoint down past the time-to-live,
//! every event becomes a dead letter (listed by HOOKDLQ, counted by hook and
//! reason, nothing dropped), the dead letters survive a SIGKILL, and
//! REDELIVER delivers them, in order, once the endpoint is back.

#[path = "hooks_peers.rs"]
mod peers;

use std::time::Duration;

use e2e::{run, run_json, start, wait_until};
use peers::{free_port, metric, scrape, sethook_enter, HttpSink};

const FLAGS: [&str; 4] = [
    "--hook-message-ttl-ms",
    "1000",
    "--metrics-addr",
    "127.0.0.1:0",
];

/// (object id, reason, event id) of each dead letter of `h`, oldest first.
fn dead_letters(c: &mut redis::Connection) -> Vec<(String, String, u64)> {
    let v = run_json(c, "HOOKDLQ h");
    assert_eq!(v["ok"], true, "{v}");
    v["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["event"]["event_id"], d["event_id"], "{d}");
            (
                d["event"]["id"].as_str().unwrap().to_owned(),
                d["reason"].as_str().unwrap().to_owned(),
                d["event_id"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn events_past_their_ttl_are_dead_letters_that_survive_sigkill_and_are_redelivered() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/events");
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &FLAGS).unwrap();
    let mut c = server.client();
    sethook_enter(&mut c, "h", &url);
    let ids: Vec<String> = (0..20).map(|i| format!("o{i}")).collect();
    for id in &ids {
        assert_eq!(
            run(&mut c, &format!("SET fleet {id} POINT 33.001 -112.001")),
            "OK"
        );
    }
    let mut j = server.json_client();
    assert!(wait_until(Duration::from_secs(30), || dead_letters(&mut j)
        .len()
        == ids.len()));
    let dead = dead_letters(&mut j);
    assert_eq!(
        dead.iter().map(|d| d.0.clone()).collect::<Vec<_>>(),
        ids,
        "every event, in order"
    );
    assert!(dead.iter().all(|d| d.1 == "expired"));
    let page = scrape(&server);
    assert_eq!(
        metric(
            &page,
            "geohook_hook_dead_letters_total{hook=\"h\",reason=\"expired\"}"
        ),
        20.0,
        "{page}"
    );
    assert_eq!(metric(&page, "geohook_hook_dead_letters_held"), 20.0);
    assert_eq!(metric(&page, "geohook_hook_queued_messages"), 0.0);
    for reason in [
        "expired",
        "overflow",
        "removed",
        "retries",
        "dead_letter_bound",
    ] {
        assert_eq!(
            metric(
                &page,
                &format!("geohook_hook_dropped_total{{reason=\"{reason}\"}}")
            ),
            0.0,
            "nothing dropped ({reason})"
        );
    }
    assert!(run(&mut c, "HOOKDLQ nope").contains("hook not found"));

    // The dead letters are in the journal: a SIGKILL does not lose them.
    server.kill9();
    let server = start(dir.path(), &FLAGS).unwrap();
    let mut j = server.json_client();
    assert_eq!(dead_letters(&mut j), dead);

    // The endpoint is back; REDELIVER sends them, oldest first.
    let http = HttpSink::start_on(port).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "REDELIVER h"), "20");
    let events = http.wait_events(20);
    let got: Vec<(String, u64)> = events
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["event_id"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = dead.iter().map(|d| (d.0.clone(), d.2)).collect();
    assert_eq!(got, want, "each once, in order, with its event id");
    assert!(dead_letters(&mut j).is_empty());
    assert_eq!(run(&mut c, "REDELIVER h"), "0");
    let page = scrape(&server);
    assert_eq!(metric(&page, "geohook_hook_redelivered_total"), 20.0);
    assert_eq!(metric(&page, "geohook_hook_dead_letters_held"), 0.0);
}
