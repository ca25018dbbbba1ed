//! Lifecycle exit events (opt-in, `LIFECYCLE yes` or `CONFIG SET
//! hook-lifecycle yes`): an object inside a fence that is deleted (DEL,
//! PDEL), expires, is dropped (DROP) or flushed (FLUSHDB), and a hook that
//! expires while objects are inside it, end each stay with a Tile38-shaped
//! `"detect":"exit"` event carrying the group of its `enter`. They are
//! journaled like every hook event: a DEL acknowledged while the endpoint is
//! down, then a SIGKILL, still delivers its exit after the restart, and so
//! does a hook's expiry. An expiry needs no client write to carry its exits
//! to disk: a SIGKILL right after an object's or a hook's expiry is logged
//! loses none of them. A hook that opts out hears none. Only the leader
//! produces exits: a follower's hooks queue none and its channels publish
//! none, and a follower promoted to leader produces them from then on.
//! CONFIG REWRITE stores the `hook-*` settings, and a restart reads them
//! back.

#[path = "hooks_peers.rs"]
mod peers;
#[path = "replication_common.rs"]
mod repl;

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{resp, run, start, wait_until};
use peers::{cmd, free_port, sink_on, HttpSink};

const FLAGS: [&str; 2] = ["--hook-message-ttl-ms", "600000"];

/// `SETHOOK name url [options…] WITHIN key FENCE DETECT enter,exit [COMMANDS
/// set] BOUNDS 33 -112 33.1 -111.9`.
fn sethook(c: &mut redis::Connection, name: &str, url: &str, key: &str, options: &[&str]) {
    let mut args = vec!["SETHOOK", name, url];
    args.extend(options);
    args.extend([
        "WITHIN",
        key,
        "FENCE",
        "DETECT",
        "enter,exit",
        "COMMANDS",
        "set",
        "BOUNDS",
        "33",
        "-112",
        "33.1",
        "-111.9",
    ]);
    assert_eq!(cmd(c, &args), "1", "{args:?}");
}

/// The events of one hook, in arrival order.
fn of_hook(events: &[serde_json::Value], hook: &str) -> Vec<serde_json::Value> {
    events
        .iter()
        .filter(|e| e["hook"] == hook)
        .cloned()
        .collect()
}

/// `(command, detect, key, id)` of each event.
fn shape(events: &[serde_json::Value]) -> Vec<(String, String, String, String)> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    events
        .iter()
        .map(|e| (s(&e["command"]), s(&e["detect"]), s(&e["key"]), s(&e["id"])))
        .collect()
}

fn row(command: &str, detect: &str, key: &str, id: &str) -> (String, String, String, String) {
    (command.into(), detect.into(), key.into(), id.into())
}

/// Every exit body has Tile38's members of an exit in Tile38's order, then
/// the event id.
fn check_members(bodies: &[String]) {
    for body in bodies.iter().filter(|b| b.contains("\"detect\":\"exit\"")) {
        assert_eq!(
            peers::member_order(body),
            ["command", "group", "detect", "hook", "key", "time", "id", "object", "event_id"],
            "{body}"
        );
    }
}

/// Every exit carries the group of the enter of the same object before it,
/// the object, and an event id.
fn check_groups(events: &[serde_json::Value]) {
    for (n, e) in events.iter().enumerate() {
        assert!(e["event_id"].as_u64().is_some(), "{e}");
        if e["detect"] != "exit" {
            continue;
        }
        let enter = events[..n]
            .iter()
            .rev()
            .find(|p| p["detect"] == "enter" && p["id"] == e["id"] && p["key"] == e["key"])
            .unwrap_or_else(|| panic!("no enter before {e}"));
        assert_eq!(e["group"], enter["group"], "{e}");
        assert_eq!(e["object"]["type"], "Point", "{e}");
    }
}

#[test]
fn deletes_expiries_drops_flushes_and_a_hook_expiry_end_stays_with_exits() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &FLAGS).unwrap();
    let http = HttpSink::start();
    let url = http.url("/events");
    let mut c = server.client();
    // `h` opts in; `plain`, on the same fence, opts out (whatever the
    // default) and hears no exit.
    sethook(&mut c, "h", &url, "fleet", &["LIFECYCLE", "yes"]);
    sethook(&mut c, "plain", &url, "fleet", &["LIFECYCLE", "no"]);
    assert_eq!(
        run(&mut c, "CONFIG GET hook-lifecycle"),
        "[hook-lifecycle no]"
    );
    // `v` follows the server-wide default, switched on at run time.
    assert_eq!(run(&mut c, "CONFIG SET hook-lifecycle yes"), "OK");
    sethook(&mut c, "v", &url, "vans", &[]);
    // `x` opts in and expires with an object inside.
    sethook(&mut c, "x", &url, "fleet", &["LIFECYCLE", "yes", "EX", "2"]);
    assert!(run(&mut c, "SETHOOK bad http://127.0.0.1:1/ LIFECYCLE maybe WITHIN fleet FENCE BOUNDS 33 -112 33.1 -111.9").contains("invalid argument 'maybe'"));

    for id in ["a", "b1", "c", "f"] {
        assert_eq!(
            run(&mut c, &format!("SET fleet {id} POINT 33.05 -111.95")),
            "OK"
        );
    }
    assert_eq!(run(&mut c, "SET fleet out POINT 32 -112"), "OK");
    assert_eq!(run(&mut c, "SET vans v1 POINT 33.05 -111.95"), "OK");
    // Deleted, pattern-deleted, expired; an object outside fences ends no stay.
    assert_eq!(run(&mut c, "DEL fleet a"), "1");
    assert_eq!(run(&mut c, "PDEL fleet b*"), "1");
    assert_eq!(run(&mut c, "EXPIRE fleet c 0.2"), "1");
    assert_eq!(run(&mut c, "DEL fleet out"), "1");
    let gone = |c: &mut redis::Connection| run(c, "GET fleet c") == "nil";
    assert!(wait_until(Duration::from_secs(10), || gone(&mut c)));
    // The hook `x` expires with `f` inside it.
    assert!(wait_until(Duration::from_secs(10), || run(
        &mut c, "HOOKS x"
    ) == "[]"));
    assert!(wait_until(Duration::from_secs(10), || http
        .events()
        .iter()
        .any(|e| e["hook"] == "x" && e["detect"] == "exit")));
    assert_eq!(run(&mut c, "DROP vans"), "1");
    assert_eq!(run(&mut c, "FLUSHDB"), "OK");
    // FLUSHDB removes the hooks too, as Tile38's does: a write after it
    // sends nothing.
    assert_eq!(run(&mut c, "SET fleet f POINT 33.05 -111.95"), "OK");

    let h_want = vec![
        row("set", "enter", "fleet", "a"),
        row("set", "enter", "fleet", "b1"),
        row("set", "enter", "fleet", "c"),
        row("set", "enter", "fleet", "f"),
        row("del", "exit", "fleet", "a"),
        row("del", "exit", "fleet", "b1"),
        row("del", "exit", "fleet", "c"),
        row("flushdb", "exit", "fleet", "f"),
    ];
    let plain_want: Vec<_> = ["a", "b1", "c", "f"]
        .iter()
        .map(|id| row("set", "enter", "fleet", id))
        .collect();
    let v_want = vec![
        row("set", "enter", "vans", "v1"),
        row("drop", "exit", "vans", "v1"),
    ];
    let x_want = vec![
        row("set", "enter", "fleet", "a"),
        row("set", "enter", "fleet", "b1"),
        row("set", "enter", "fleet", "c"),
        row("set", "enter", "fleet", "f"),
        row("del", "exit", "fleet", "a"),
        row("del", "exit", "fleet", "b1"),
        row("del", "exit", "fleet", "c"),
        row("delhook", "exit", "fleet", "f"),
    ];
    let total = h_want.len() + plain_want.len() + v_want.len() + x_want.len();
    let events = http.wait_events(total);
    for (hook, want) in [
        ("h", h_want),
        ("plain", plain_want),
        ("v", v_want),
        ("x", x_want),
    ] {
        let got = of_hook(&events, hook);
        assert_eq!(shape(&got), want, "hook {hook}: {got:#?}");
        check_groups(&got);
    }
    assert_eq!(events.len(), total, "nothing else: {events:#?}");
    check_members(&http.bodies());
    drop(server);
}

#[test]
fn an_exit_acknowledged_before_a_sigkill_arrives_after_the_restart() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/events");
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on `port` yet: every event waits in the journal.
    let server = start(dir.path(), &FLAGS).unwrap();
    let mut c = server.client();
    sethook(&mut c, "h", &url, "fleet", &["LIFECYCLE", "yes"]);
    sethook(&mut c, "x", &url, "fleet", &["LIFECYCLE", "yes", "EX", "1"]);
    assert_eq!(run(&mut c, "SET fleet a POINT 33.05 -111.95"), "OK");
    // `x` expires with `a` inside; its exit reaches the journal.
    assert!(wait_until(Duration::from_secs(10), || run(
        &mut c, "HOOKS x"
    ) == "[]"));
    let journal = dir.path().join("hooks.journal");
    assert!(wait_until(Duration::from_secs(10), || std::fs::read(
        &journal
    )
    .unwrap_or_default()
    .windows(9)
    .any(|w| w == b"\"delhook\"")));
    // The DEL is acknowledged; its exit has not been delivered (nothing
    // listens), and the server dies.
    assert_eq!(run(&mut c, "DEL fleet a"), "1");
    server.kill9();

    let server = start(dir.path(), &FLAGS).unwrap();
    let mut c = server.client();
    let http = sink_on(port);
    // The option came back with the hook from the log.
    assert_eq!(run(&mut c, "SET fleet b POINT 33.05 -111.95"), "OK");
    assert_eq!(run(&mut c, "DEL fleet b"), "1");
    let events = http.wait_events(6);
    let h = of_hook(&events, "h");
    assert_eq!(
        shape(&h),
        vec![
            row("set", "enter", "fleet", "a"),
            row("del", "exit", "fleet", "a"),
            row("set", "enter", "fleet", "b"),
            row("del", "exit", "fleet", "b"),
        ],
        "{events:#?}"
    );
    check_groups(&h);
    let x = of_hook(&events, "x");
    assert_eq!(
        shape(&x),
        vec![
            row("set", "enter", "fleet", "a"),
            row("delhook", "exit", "fleet", "a"),
        ],
        "{events:#?}"
    );
    check_groups(&x);
    check_members(&http.bodies());
    drop(server);
}

/// Waits, reading the log every millisecond, until it holds `record`, so
/// that the caller can kill the server right after an expiry is logged.
fn wait_logged(aof: &Path, record: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read(aof)
        .unwrap_or_default()
        .windows(record.len())
        .any(|w| w == record)
    {
        assert!(
            Instant::now() < deadline,
            "never logged: {:?}",
            String::from_utf8_lossy(record)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn expiry_exits_reach_the_journal_before_the_expiry_is_logged_and_survive_a_sigkill_right_after() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/events");
    let dir = tempfile::tempdir().unwrap();
    let flags = [FLAGS[0], FLAGS[1], "--appendfsync", "always"];
    // Nothing listens on `port`: every event waits in the journal.
    let mut server = start(dir.path(), &flags).unwrap();
    let mut c = server.client();
    sethook(&mut c, "h", &url, "fleet", &["LIFECYCLE", "yes"]);
    // Three objects expire inside the fence, each expiry followed at once by
    // a SIGKILL: no client write comes between to carry the exit to disk.
    for n in 0..3 {
        let id = format!("e{n}");
        let mut c = server.client();
        assert_eq!(
            run(
                &mut c,
                &format!("SET fleet {id} EX 0.3 POINT 33.05 -111.95")
            ),
            "OK"
        );
        wait_logged(&server.aof(), &resp(&[b"del", b"fleet", id.as_bytes()]));
        server.kill9();
        server = start(dir.path(), &flags).unwrap();
    }
    // A hook expires with an object inside, and the server dies at once.
    let mut c = server.client();
    sethook(&mut c, "x", &url, "fleet", &["LIFECYCLE", "yes", "EX", "1"]);
    assert_eq!(run(&mut c, "SET fleet k POINT 33.05 -111.95"), "OK");
    wait_logged(&server.aof(), &resp(&[b"delhook", b"x"]));
    server.kill9();

    let server = start(dir.path(), &flags).unwrap();
    let http = sink_on(port);
    let events = http.wait_events(9);
    let h = of_hook(&events, "h");
    let mut want = Vec::new();
    for n in 0..3 {
        let id = format!("e{n}");
        want.push(row("set", "enter", "fleet", &id));
        want.push(row("del", "exit", "fleet", &id));
    }
    want.push(row("set", "enter", "fleet", "k"));
    assert_eq!(shape(&h), want, "{events:#?}");
    check_groups(&h);
    let x = of_hook(&events, "x");
    assert_eq!(
        shape(&x),
        vec![
            row("set", "enter", "fleet", "k"),
            row("delhook", "exit", "fleet", "k"),
        ],
        "{events:#?}"
    );
    check_groups(&x);
    check_members(&http.bodies());
    drop(server);
}

#[test]
fn config_rewrite_keeps_the_hook_settings_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &FLAGS).unwrap();
    let mut c = server.client();
    for (name, value) in [
        ("hook-lifecycle", "yes"),
        ("hook-message-ttl", "12.5"),
        ("hook-retries", "7"),
        ("hook-timeout", "3"),
        // Raised above the flag's 5 s maximum: the stored pair must be
        // applied in an order that passes the min <= max check.
        ("hook-backoff-max", "60"),
        ("hook-backoff-min", "20"),
    ] {
        assert_eq!(run(&mut c, &format!("CONFIG SET {name} {value}")), "OK");
    }
    assert!(run(&mut c, "CONFIG SET hook-lifecycle perhaps").contains("invalid value"));
    let before = run(&mut c, "CONFIG GET hook-*");
    assert_eq!(
        before,
        "[hook-backoff-max 60 hook-backoff-min 20 hook-lifecycle yes hook-message-ttl 12.5 hook-retries 7 hook-timeout 3]"
    );
    // Unsaved, a restart forgets them; saved, it keeps them.
    let server = server.restart().unwrap();
    let mut c = server.client();
    assert!(run(&mut c, "CONFIG GET hook-lifecycle").contains("no"));
    for (name, value) in [
        ("hook-lifecycle", "yes"),
        ("hook-message-ttl", "12.5"),
        ("hook-retries", "7"),
        ("hook-timeout", "3"),
        ("hook-backoff-max", "60"),
        ("hook-backoff-min", "20"),
    ] {
        assert_eq!(run(&mut c, &format!("CONFIG SET {name} {value}")), "OK");
    }
    assert_eq!(run(&mut c, "CONFIG REWRITE"), "OK");
    let text = std::fs::read_to_string(dir.path().join("config")).unwrap();
    assert!(text.contains("\"hook-lifecycle\": \"yes\""), "{text}");
    server.kill9();
    let server = start(dir.path(), &FLAGS).unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "CONFIG GET hook-*"), before);
    // A later rewrite of another property keeps them.
    assert_eq!(run(&mut c, "CONFIG SET keepalive 100"), "OK");
    assert_eq!(run(&mut c, "CONFIG REWRITE"), "OK");
    let server = server.restart().unwrap();
    let mut c = server.client();
    assert_eq!(run(&mut c, "CONFIG GET hook-*"), before);
    assert_eq!(run(&mut c, "CONFIG GET keepalive"), "[keepalive 100]");
    // A stored value the server refuses stops the start with its name.
    std::fs::write(
        dir.path().join("config"),
        text.replace("\"hook-retries\": \"7\"", "\"hook-retries\": \"many\""),
    )
    .unwrap();
    drop(server);
    match e2e::try_start(dir.path(), &FLAGS, &[]).unwrap() {
        e2e::Started::Up(_) => panic!("started with a bad stored hook-retries"),
        e2e::Started::Exited(_, log) => assert!(log.contains("hook-retries"), "{log}"),
    }
}

/// `(command, detect, id)` of a channel message.
type Heard = (String, String, String);

/// Reads channel messages up to the first `detect` of `id`; returns them all.
fn heard_until(sub: &mut redis::PubSub<'_>, detect: &str, id: &str) -> Vec<Heard> {
    let mut heard = Vec::new();
    loop {
        let m = sub.get_message().expect("a channel message");
        let e: serde_json::Value =
            serde_json::from_str(&m.get_payload::<String>().unwrap()).unwrap();
        let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
        heard.push((s(&e["command"]), s(&e["detect"]), s(&e["id"])));
        if e["id"] == id && e["detect"] == detect {
            return heard;
        }
    }
}

/// The ids of the exits among `heard`.
fn exits(heard: &[Heard]) -> Vec<String> {
    heard
        .iter()
        .filter(|(_, detect, _)| detect == "exit")
        .map(|(_, _, id)| id.clone())
        .collect()
}

#[test]
fn exits_come_from_the_leader_only_and_after_a_promotion_from_the_new_leader() {
    let flags = [FLAGS[0], FLAGS[1], "--metrics-addr", "127.0.0.1:0"];
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = start(ldir.path(), &flags).unwrap();
    let follower = start(fdir.path(), &flags).unwrap();
    let http = HttpSink::start();
    let url = http.url("/events");
    let mut l = leader.client();
    sethook(&mut l, "h", &url, "fleet", &["LIFECYCLE", "yes"]);
    let chan =
        "SETCHAN c LIFECYCLE yes WITHIN fleet FENCE DETECT enter,exit BOUNDS 33 -112 33.1 -111.9";
    assert_eq!(run(&mut l, chan), "1");
    let mut f = follower.client();
    assert_eq!(
        run(&mut f, &format!("FOLLOW 127.0.0.1 {}", leader.port)),
        "OK"
    );
    assert!(
        repl::caught_up(&leader, &follower, Duration::from_secs(60)),
        "the follower never caught up:\n{}",
        follower.log()
    );
    // The channel's subscribers, one on each node.
    let (mut lsub_conn, mut fsub_conn) = (leader.client(), follower.client());
    let (mut lsub, mut fsub) = (lsub_conn.as_pubsub(), fsub_conn.as_pubsub());
    for sub in [&mut lsub, &mut fsub] {
        sub.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        sub.subscribe("c").unwrap();
    }

    for id in ["a", "b", "c"] {
        assert_eq!(
            run(&mut l, &format!("SET fleet {id} POINT 33.05 -111.95")),
            "OK"
        );
    }
    assert_eq!(run(&mut l, "SET fleet d EX 0.5 POINT 33.05 -111.95"), "OK");
    assert_eq!(run(&mut l, "DEL fleet a"), "1");
    // `d` expires on the leader, whose `del` streams to the follower.
    wait_logged(&leader.aof(), &resp(&[b"del", b"fleet", b"d"]));
    assert_eq!(run(&mut l, "SET fleet m POINT 33.05 -111.95"), "OK");
    assert!(repl::caught_up(&leader, &follower, Duration::from_secs(60)));

    // The hook hears each exit once: the follower queued nothing.
    let events = http.wait_events(7);
    let want: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| row("set", "enter", "fleet", id))
        .chain([
            row("del", "exit", "fleet", "a"),
            row("del", "exit", "fleet", "d"),
            row("set", "enter", "fleet", "m"),
        ])
        .collect();
    assert_eq!(shape(&events), want, "{events:#?}");
    check_groups(&events);
    let enqueued = |s: &e2e::Server| {
        e2e::metric_value(&s.metrics_page(), "geohook_hook_enqueued_total").unwrap_or(-1.0)
    };
    assert_eq!(enqueued(&follower), 0.0);
    assert_eq!(enqueued(&leader), 7.0);
    // The leader's subscriber hears the exits; the follower's, matching the
    // same writes itself, hears the enters and no exit.
    let on_leader = heard_until(&mut lsub, "enter", "m");
    assert_eq!(exits(&on_leader), ["a", "d"], "{on_leader:?}");
    let on_follower = heard_until(&mut fsub, "enter", "m");
    assert!(exits(&on_follower).is_empty(), "{on_follower:?}");
    assert_eq!(
        on_follower.iter().filter(|(_, d, _)| d == "enter").count(),
        5,
        "{on_follower:?}"
    );

    // Promoted, the follower produces exits from the stays it kept while
    // following; the old leader is gone. (The exit of `b` carries the group
    // the follower's own matching gave the stay, not the old leader's, as
    // after any restart.)
    assert_eq!(run(&mut f, "FOLLOW no one"), "OK");
    leader.kill9();
    assert_eq!(run(&mut f, "DEL fleet b"), "1");
    assert_eq!(run(&mut f, "SET fleet e EX 0.5 POINT 33.05 -111.95"), "OK");
    wait_logged(&follower.aof(), &resp(&[b"del", b"fleet", b"e"]));
    let events = http.wait_events(10);
    assert_eq!(
        shape(&events[7..]),
        vec![
            row("del", "exit", "fleet", "b"),
            row("set", "enter", "fleet", "e"),
            row("del", "exit", "fleet", "e"),
        ],
        "{events:#?}"
    );
    check_groups(&events[8..]);
    assert_eq!(enqueued(&follower), 3.0);
    let on_new_leader = heard_until(&mut fsub, "exit", "e");
    assert_eq!(exits(&on_new_leader), ["b", "e"], "{on_new_leader:?}");
    drop(follower);
}
