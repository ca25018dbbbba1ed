//! Hooks are written to the append-only file: they survive a restart, a
//! SIGKILL and an AOFSHRINK; a hook whose EX passed is logged as deleted and
//! does not come back.

#[path = "hooks_peers.rs"]
mod peers;

use std::time::Duration;

use e2e::{run, start, wait_until};
use peers::{cmd, HttpSink};

#[test]
fn hooks_survive_restart_sigkill_and_shrink() {
    let http = HttpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let url = http.url("e");
    let hook = |name: &str, extra: &[&str]| {
        let mut a = vec!["SETHOOK", name, url.as_str(), "META", "m", name];
        a.extend(extra);
        a.extend([
            "WITHIN", "fleet", "FENCE", "DETECT", "enter", "BOUNDS", "33", "-112", "33.1", "-111.9",
        ]);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    for (name, extra) in [
        ("keep", &[][..]),
        ("later", &["EX", "3600"][..]),
        ("brief", &["EX", "0.5"][..]),
        ("gone", &[][..]),
    ] {
        let args = hook(name, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(cmd(&mut c, &args), "1");
    }
    assert_eq!(run(&mut c, "DELHOOK gone"), "1");
    assert!(wait_until(Duration::from_secs(10), || run(
        &mut c,
        "HOOKS brief"
    ) == "[]"));
    let listing = run(&mut c, "HOOKS *");
    assert!(listing.contains("keep") && listing.contains("later") && !listing.contains("brief"));
    let aof = std::fs::read(server.aof()).unwrap();
    let text = String::from_utf8_lossy(&aof);
    assert!(
        text.contains("delhook\r\n$5\r\nbrief"),
        "the expiry is logged"
    );

    // Each hook has its own queue, so two hooks' events may arrive in either
    // order. Delivery is at least once: an event delivered just before a
    // SIGKILL, whose delivery was not yet recorded in the hook journal, comes
    // again after the restart with the same `event_id`, and a receiver drops
    // it by that id, as this one does.
    let distinct = |http: &HttpSink| {
        let mut seen = std::collections::HashSet::new();
        http.events()
            .into_iter()
            .filter(|e| seen.insert(e["event_id"].as_u64().expect("event_id")))
            .collect::<Vec<_>>()
    };
    let events = |http: &HttpSink, n: usize| {
        assert!(
            wait_until(Duration::from_secs(15), || distinct(http).len() >= n),
            "expected {n} distinct events, got {:?}",
            http.bodies()
        );
        let mut v = distinct(http)
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["hook"].as_str().unwrap(),
                    e["id"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>();
        v.sort();
        v
    };
    // A clean restart.
    let server = server.restart().unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "HOOKS *"), listing);
    assert_eq!(run(&mut c, "SET fleet a POINT 33.05 -111.95"), "OK");
    assert_eq!(events(&http, 2), ["keep:a", "later:a"]);

    // AOFSHRINK writes the live hooks into the new file; then SIGKILL.
    assert_eq!(run(&mut c, "AOFSHRINK"), "OK");
    assert!(server.wait_log("aof shrink finished", Duration::from_secs(20)));
    let text = String::from_utf8_lossy(&std::fs::read(server.aof()).unwrap()).into_owned();
    assert!(
        !text.contains("gone") && !text.contains("brief"),
        "only live hooks: {text}"
    );
    let dir_path = server.dir.clone();
    server.kill9();
    let server = start(&dir_path, &[]).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "HOOKS *"), listing);
    assert_eq!(run(&mut c, "SET fleet b POINT 33.05 -111.95"), "OK");
    assert_eq!(events(&http, 4), ["keep:a", "keep:b", "later:a", "later:b"]);
}
