//! Channels, pub/sub and live fences, as Tile38 clients use them: a channel
//! subscriber (RESP2 and RESP3, through redis-rs), a live fence (raw socket,
//! RESP2, RESP3 and JSON) and an HTTP hook on the same fence hear the same
//! events in the same order; channels survive a restart and a shrink;
//! PSUBSCRIBE patterns; DELCHAN stops delivery; a subscriber that does not
//! read is cut off at its output cap while the server goes on.

#[path = "hooks_peers.rs"]
mod peers;

use std::io::{BufRead, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use e2e::{resp, run, run_json, start, wait_until, Raw, Server};
use peers::{cmd, metric, HttpSink};
use redis::{PushKind, Value};

const FENCE: &[&str] = &[
    "WITHIN", "fleet", "FENCE", "BOUNDS", "33", "-112", "33.1", "-111.9",
];

/// One RESP value read from a raw socket, as far as these tests need.
#[derive(Debug, Clone, PartialEq)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(String),
    Null,
    /// An array (`*`), a push (`>`, flagged) or a map (`%`, flattened).
    Many(bool, Vec<Resp>),
}

fn read_resp(r: &mut impl BufRead) -> Resp {
    let mut line = String::new();
    r.read_line(&mut line).expect("read a reply line");
    assert!(line.ends_with("\r\n"), "cut reply: {line:?}");
    let (kind, rest) = line.trim_end().split_at(1);
    let n = || rest.parse::<i64>().expect("a length");
    match kind {
        "+" => Resp::Simple(rest.into()),
        "-" => Resp::Error(rest.into()),
        ":" => Resp::Int(n()),
        "_" => Resp::Null,
        "$" if n() < 0 => Resp::Null,
        "$" => {
            let mut b = vec![0; n() as usize + 2];
            r.read_exact(&mut b).expect("bulk body");
            b.truncate(b.len() - 2);
            Resp::Bulk(String::from_utf8(b).expect("utf-8"))
        }
        "*" | ">" | "%" => {
            let count = if kind == "%" { 2 * n() } else { n() };
            Resp::Many(kind == ">", (0..count).map(|_| read_resp(r)).collect())
        }
        other => panic!("unexpected reply type {other:?} in {line:?}"),
    }
}

/// Replies read as [`Resp`] values, for the push and map shapes these tests
/// tell apart.
trait Typed {
    fn ask_typed(&mut self, args: &[&str]) -> Resp;
    fn read_typed(&mut self) -> Resp;
}

impl Typed for Raw {
    fn ask_typed(&mut self, args: &[&str]) -> Resp {
        self.send(args);
        self.read_typed()
    }

    fn read_typed(&mut self) -> Resp {
        read_resp(&mut self.r)
    }
}

/// A live fence on `FENCE`, in RESP2, RESP3 or JSON, past its first reply.
fn live(server: &Server, mode: &str) -> Raw {
    let mut c = Raw::open(server);
    let mut args = vec![
        "WITHIN", "fleet", "FENCE", "BOUNDS", "33", "-112", "33.1", "-111.9",
    ];
    match mode {
        "resp3" => {
            assert!(matches!(c.ask_typed(&["HELLO", "3"]), Resp::Many(false, _)));
            assert_eq!(c.ask_typed(&args), Resp::Simple("OK".into()));
        }
        "json" => {
            assert!(matches!(c.ask_typed(&["OUTPUT", "json"]), Resp::Bulk(_)));
            assert_eq!(
                c.ask_typed(&args),
                Resp::Bulk(r#"{"ok":true,"live":true}"#.into())
            );
        }
        _ => {
            // Tile38's words may come in any case and order before the area.
            args[2] = "fence";
            assert_eq!(c.ask_typed(&args), Resp::Simple("OK".into()));
        }
    }
    c
}

/// The members of an event that every receiver must agree on: the hook's
/// name and the delivery's own members (event_id) are left out.
fn essence(e: &serde_json::Value) -> String {
    format!(
        "{} {} {} {} {}",
        e["command"].as_str().unwrap_or(""),
        e["detect"].as_str().unwrap_or("-"),
        e["key"].as_str().unwrap_or(""),
        e["id"].as_str().unwrap_or(""),
        e.get("object").map(|o| o.to_string()).unwrap_or_default()
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// The events of a live connection, `n` of them.
fn live_events(c: &mut Raw, n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|_| match c.read_typed() {
            Resp::Bulk(b) => json(&b),
            other => panic!("expected an event, got {other:?}"),
        })
        .collect()
}

/// A RESP3 redis-rs connection whose pushes go to the returned receiver.
fn resp3(server: &Server) -> (redis::Connection, mpsc::Receiver<redis::PushInfo>) {
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{}/?protocol=resp3", server.port)).unwrap();
    let mut c = client
        .get_connection_with_timeout(Duration::from_secs(10))
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let (tx, rx) = mpsc::channel();
    c.set_push_sender(tx);
    (c, rx)
}

/// Collects `n` pushes of `kind`. The synchronous client reads only when it
/// sends, so it PINGs (which a RESP3 subscriber may do) until they are in.
fn pushes(
    c: &mut redis::Connection,
    rx: &mpsc::Receiver<redis::PushInfo>,
    kind: PushKind,
    n: usize,
) -> Vec<Vec<Value>> {
    let mut got = Vec::new();
    let done = wait_until(Duration::from_secs(20), || {
        let _: String = redis::cmd("PING").query(c).expect("PING while subscribed");
        got.extend(rx.try_iter().filter(|p| p.kind == kind).map(|p| p.data));
        got.len() >= n
    });
    assert!(done, "expected {n} {kind:?} pushes, got {got:?}");
    got
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

fn set(c: &mut redis::Connection, id: &str, lat: f64, lon: f64) {
    assert_eq!(run(c, &format!("SET fleet {id} POINT {lat} {lon}")), "OK");
}

#[test]
fn a_hook_a_channel_and_live_fences_hear_the_same_events_in_order() {
    let http = HttpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let url = http.url("e");
    let mut sethook = vec!["SETHOOK", "h", url.as_str()];
    sethook.extend(FENCE);
    assert_eq!(cmd(&mut c, &sethook), "1");
    let mut setchan = vec!["SETCHAN", "c"];
    setchan.extend(FENCE);
    assert_eq!(cmd(&mut c, &setchan), "1");
    assert_eq!(
        cmd(&mut c, &setchan),
        "0",
        "an identical channel is unchanged"
    );

    let mut sub2_conn = server.client();
    let mut sub2 = sub2_conn.as_pubsub();
    sub2.subscribe("c").unwrap();
    sub2.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let (mut sub3, rx3) = resp3(&server);
    sub3.subscribe_resp3("c").unwrap();
    let confirmed = pushes(&mut sub3, &rx3, PushKind::Subscribe, 1);
    assert_eq!(text(&confirmed[0][0]), "c");
    assert_eq!(confirmed[0][1], Value::Int(1));
    let mut live2 = live(&server, "resp2");
    let mut live3 = live(&server, "resp3");
    let mut live_json = live(&server, "json");

    // Outside, in, moving inside, out, a field change outside, deleted.
    set(&mut c, "t", 32.0, -112.5);
    set(&mut c, "t", 33.05, -111.95);
    set(&mut c, "t", 33.06, -111.95);
    set(&mut c, "t", 34.0, -111.95);
    assert_eq!(run(&mut c, "FSET fleet t speed 5"), "1");
    assert_eq!(run(&mut c, "DEL fleet t"), "1");
    let want: Vec<&str> = vec![
        "outside", "enter", "inside", "inside", "exit", "outside", "outside", "-",
    ];
    let n = want.len();

    let hook: Vec<serde_json::Value> = http.wait_events(n);
    let detects: Vec<&str> = hook
        .iter()
        .map(|e| e["detect"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(detects, want, "{hook:?}");
    assert_eq!(hook[6]["command"], "fset");
    assert_eq!(hook[7]["command"], "del");
    let expected: Vec<String> = hook.iter().map(essence).collect();

    let chan2: Vec<serde_json::Value> = (0..n)
        .map(|_| {
            let m = sub2.get_message().expect("a channel message");
            assert_eq!(m.get_channel_name(), "c");
            json(&m.get_payload::<String>().unwrap())
        })
        .collect();
    assert_eq!(chan2.iter().map(essence).collect::<Vec<_>>(), expected);
    assert!(chan2.iter().all(|e| e["hook"] == "c"), "{chan2:?}");
    assert!(chan2.iter().all(|e| e.get("event_id").is_none()));

    let chan3: Vec<serde_json::Value> = pushes(&mut sub3, &rx3, PushKind::Message, n)
        .iter()
        .map(|d| {
            assert_eq!(text(&d[0]), "c");
            json(&text(&d[1]))
        })
        .collect();
    assert_eq!(chan3.iter().map(essence).collect::<Vec<_>>(), expected);

    for (mode, l) in [
        ("resp2", &mut live2),
        ("resp3", &mut live3),
        ("json", &mut live_json),
    ] {
        let events = live_events(l, n);
        assert_eq!(
            events.iter().map(essence).collect::<Vec<_>>(),
            expected,
            "{mode}"
        );
        assert!(
            events.iter().all(|e| e.get("hook").is_none()),
            "a live fence has no hook name: {events:?}"
        );
    }

    // A live fence ends when its client sends anything; its fence goes with
    // it and the others go on.
    live2.send(&["QUIT"]);
    let mut rest = Vec::new();
    let _ = live2.r.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    set(&mut c, "u", 33.05, -111.95);
    let e = live_events(&mut live3, 2);
    assert_eq!(e[0]["detect"], "enter");
    assert_eq!(e[0]["id"], "u");
}

#[test]
fn psubscribe_patterns_and_delchan_stop_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    for name in ["fleet:north", "fleet:south", "other"] {
        let mut a = vec!["SETCHAN", name];
        a.extend([
            "WITHIN", "fleet", "FENCE", "DETECT", "enter", "BOUNDS", "33", "-112", "33.1", "-111.9",
        ]);
        assert_eq!(cmd(&mut c, &a), "1");
    }
    let mut sub_conn = server.client();
    let mut sub = sub_conn.as_pubsub();
    sub.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    sub.psubscribe("fleet:*").unwrap();
    set(&mut c, "t", 32.0, -112.5);
    set(&mut c, "t", 33.05, -111.95);
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = sub.get_message().unwrap();
        assert_eq!(m.get_pattern::<String>().unwrap(), "fleet:*");
        let e = json(&m.get_payload::<String>().unwrap());
        assert_eq!(e["detect"], "enter");
        assert_eq!(e["hook"].as_str(), Some(m.get_channel_name()));
        got.push(m.get_channel_name().to_owned());
    }
    // Messages of one write come in hook name order (Tile38's order).
    assert_eq!(got, ["fleet:north", "fleet:south"]);

    // DELCHAN: the channel is gone and hears nothing more. A PUBLISH after
    // the next write is the marker: whatever the write caused arrives
    // before it.
    assert_eq!(run(&mut c, "DELCHAN fleet:north"), "1");
    assert_eq!(run(&mut c, "DELCHAN fleet:north"), "0");
    assert_eq!(run(&mut c, "DELHOOK fleet:south"), "0", "not a hook");
    set(&mut c, "t", 32.0, -112.5);
    set(&mut c, "t", 33.05, -111.95);
    assert_eq!(run(&mut c, "PUBLISH fleet:marker done"), "1");
    let next: Vec<String> = (0..2)
        .map(|_| sub.get_message().unwrap().get_channel_name().to_owned())
        .collect();
    assert_eq!(next, ["fleet:south", "fleet:marker"]);
    assert_eq!(run(&mut c, "PDELCHAN fleet:*"), "1");
    assert_eq!(run(&mut c, "CHANS *").matches("other").count(), 2);

    // A subscribed RESP2 connection refuses other commands, in Tile38's words.
    let mut raw = Raw::open(&server);
    assert_eq!(
        raw.ask_typed(&["SUBSCRIBE", "a", "b"]),
        Resp::Many(
            false,
            vec![
                Resp::Bulk("subscribe".into()),
                Resp::Bulk("a".into()),
                Resp::Int(1)
            ]
        )
    );
    assert!(matches!(raw.read_typed(), Resp::Many(false, v) if v[2] == Resp::Int(2)));
    assert_eq!(
        raw.ask_typed(&["GET", "fleet", "t"]),
        Resp::Error(
            "ERR only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT allowed in this context".into()
        )
    );
    // With no subscription left it is an ordinary connection again.
    raw.send(&["UNSUBSCRIBE"]);
    for left in [1, 0] {
        assert!(matches!(raw.read_typed(), Resp::Many(false, v) if v[2] == Resp::Int(left)));
    }
    assert_eq!(raw.ask_typed(&["PING"]), Resp::Simple("PONG".into()));
}

#[test]
fn channels_survive_restart_and_shrink_with_their_json_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let mut a = vec!["SETCHAN", "keep", "META", "site", "north"];
    a.extend(FENCE);
    assert_eq!(cmd(&mut c, &a), "1");
    let mut b = vec!["SETCHAN", "later", "EX", "3600"];
    b.extend(FENCE);
    assert_eq!(cmd(&mut c, &b), "1");
    let mut clash = vec!["SETHOOK", "keep", "http://127.0.0.1:1/"];
    clash.extend(FENCE);
    assert!(
        cmd(&mut c, &clash).contains("hooks and channels cannot share the same name"),
        "{}",
        cmd(&mut c, &clash)
    );
    assert_eq!(run(&mut c, "HOOKS *"), "[]");
    let listing = |server: &Server| {
        let mut j = server.json_client();
        run_json(&mut j, "CHANS *")
    };
    let check = |v: serde_json::Value| {
        let chans = v["chans"].as_array().expect("chans").clone();
        let names: Vec<&str> = chans.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["keep", "later"], "{v}");
        assert_eq!(chans[0]["meta"]["site"], "north");
        assert_eq!(chans[0]["ttl"], -1);
        assert!(chans[1]["ttl"].as_i64().unwrap() > 3000);
        assert!(chans[0].get("endpoints").is_none(), "{v}");
        assert_eq!(chans[0]["command"][0], "WITHIN");
    };
    check(listing(&server));
    assert!(run(&mut c, "CHANS keep").contains("local://keep"));

    let server = server.restart().unwrap();
    check(listing(&server));
    let mut c = server.client();
    // A deleted object gives the shrink something to drop, and shows when
    // the new file is in place.
    set(&mut c, "gone", 1.0, 1.0);
    assert_eq!(run(&mut c, "DEL fleet gone"), "1");
    assert_eq!(run(&mut c, "AOFSHRINK"), "OK");
    assert!(wait_until(Duration::from_secs(30), || {
        let aof = std::fs::read(server.aof()).unwrap();
        let text = String::from_utf8_lossy(&aof).to_ascii_lowercase();
        !text.contains("$4\r\ngone")
    }));
    let text = String::from_utf8_lossy(&std::fs::read(server.aof()).unwrap()).to_ascii_lowercase();
    assert_eq!(text.matches("setchan").count(), 2, "{text}");
    let server = server.restart().unwrap();
    check(listing(&server));

    // A JSON subscriber gets Tile38's objects, and the channel still speaks.
    let mut sub = Raw::open(&server);
    assert!(matches!(sub.ask_typed(&["OUTPUT", "json"]), Resp::Bulk(_)));
    let Resp::Bulk(ok) = sub.ask_typed(&["SUBSCRIBE", "keep"]) else {
        panic!("expected a JSON confirmation")
    };
    let ok = json(&ok);
    assert_eq!(
        (&ok["ok"], &ok["command"], &ok["channel"], &ok["num"]),
        (
            &serde_json::json!(true),
            &serde_json::json!("subscribe"),
            &serde_json::json!("keep"),
            &serde_json::json!(1)
        )
    );
    let mut c = server.client();
    set(&mut c, "t", 33.05, -111.95);
    let Resp::Bulk(e) = sub.read_typed() else {
        panic!("expected an event")
    };
    let e = json(&e);
    assert_eq!(
        (&e["hook"], &e["detect"], &e["meta"]["site"]),
        (
            &serde_json::json!("keep"),
            &serde_json::json!("enter"),
            &serde_json::json!("north")
        )
    );
}

#[test]
fn a_subscriber_that_does_not_read_is_cut_off_at_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &[
            "--client-output-soft",
            "262144",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    )
    .unwrap();
    let mut c = server.client();
    let mut a = vec!["SETCHAN", "c"];
    a.extend(FENCE);
    assert_eq!(cmd(&mut c, &a), "1");
    // The slow one subscribes and then reads nothing; a reader alongside
    // takes everything.
    let mut slow = Raw::open(&server);
    assert!(matches!(
        slow.ask_typed(&["SUBSCRIBE", "c"]),
        Resp::Many(..)
    ));
    let mut fast = Raw::open(&server);
    assert!(matches!(
        fast.ask_typed(&["SUBSCRIBE", "c"]),
        Resp::Many(..)
    ));
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&received);
    let reader = std::thread::spawn(move || loop {
        match fast.read_typed() {
            Resp::Many(false, m) if m[2] == Resp::Bulk("end".into()) => {
                return counter.load(std::sync::atomic::Ordering::SeqCst);
            }
            Resp::Many(false, m) if m[0] == Resp::Bulk("message".into()) => {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            other => panic!("unexpected {other:?}"),
        }
    });
    // Each write of a new object inside the fence makes two events (enter,
    // inside) of about 2 KiB each (the object); a batch of 20 writes is about
    // 80 KiB, under the cap, and the next batch waits until the reader has
    // had the last, so a reader that keeps up is never cut off however the
    // machine schedules it. Write until the slow subscriber is counted as
    // cut off.
    let ring: Vec<String> = (0..60)
        .map(|i| {
            let a = i as f64 * std::f64::consts::TAU / 60.0;
            format!(
                "[{:.6},{:.6}]",
                -111.95 + 0.01 * a.cos(),
                33.05 + 0.01 * a.sin()
            )
        })
        .collect();
    let object = format!(
        r#"{{"type":"Polygon","coordinates":[[{},{}]]}}"#,
        ring.join(","),
        ring[0]
    );
    let mut writer = Raw::open(&server);
    let closed = "geohook_clients_closed_total{reason=\"pubsub_overflow\"}";
    let mut sent = 0;
    let cut = wait_until(Duration::from_secs(120), || {
        for _ in 0..10 {
            let mut batch = Vec::new();
            for i in 0..20 {
                let id = format!("t{}", sent + i);
                batch.extend(resp(&[
                    b"SET",
                    b"fleet",
                    id.as_bytes(),
                    b"OBJECT",
                    object.as_bytes(),
                ]));
            }
            writer.w.write_all(&batch).unwrap();
            for _ in 0..20 {
                assert_eq!(writer.read_typed(), Resp::Simple("OK".into()));
            }
            sent += 20;
            let n = 2 * sent;
            assert!(
                wait_until(Duration::from_secs(30), || received
                    .load(std::sync::atomic::Ordering::SeqCst)
                    >= n),
                "the reader is stuck at {received:?} of {n}"
            );
        }
        metric(&server.metrics_page(), closed) >= 1.0
    });
    assert!(cut, "never cut off after {sent} events");
    // The slow subscriber got a part and then the end of the stream.
    slow.w
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::new();
    slow.r.read_to_end(&mut got).expect("closed, not timed out");
    // The close may cut a message short; count the ones that began.
    let head = b"*3\r\n$7\r\nmessage\r\n";
    let part = got.windows(head.len()).filter(|w| w == head).count();
    assert!(part > 0 && part < 2 * sent, "{part} of {} events", 2 * sent);
    // The server goes on, and the reader had everything.
    assert_eq!(
        run(&mut c, "PUBLISH c end"),
        "1",
        "{}",
        server.metrics_page()
    );
    assert_eq!(reader.join().unwrap(), 2 * sent);
    assert_eq!(run(&mut c, "PING"), "PONG");
}

#[test]
fn a_followers_subscribers_and_live_fences_hear_its_own_matching() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = start(ldir.path(), &[]).unwrap();
    let follower = start(fdir.path(), &[]).unwrap();
    let mut l = leader.client();
    let mut a = vec!["SETCHAN", "c"];
    a.extend(FENCE);
    assert_eq!(cmd(&mut l, &a), "1");
    let mut f = follower.client();
    assert_eq!(
        run(&mut f, &format!("FOLLOW 127.0.0.1 {}", leader.port)),
        "OK"
    );
    assert!(
        wait_until(Duration::from_secs(30), || run(&mut f, "CHANS *")
            .contains("local://c")),
        "the channel reaches the follower"
    );
    // The channel arrives inside the full sync, before it ends: subscribe
    // once the sync is over and the follower streams.
    assert!(
        wait_until(Duration::from_secs(60), || follower
            .stat(&mut f, "caught_up")
            == "true"),
        "the follower never caught up:\n{}",
        follower.log()
    );
    assert!(cmd(&mut f, &a).contains("not the leader"));
    let mut sub_conn = follower.client();
    let mut sub = sub_conn.as_pubsub();
    sub.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    sub.subscribe("c").unwrap();
    let mut live_f = live(&follower, "resp2");
    set(&mut l, "t", 32.0, -112.5);
    set(&mut l, "t", 33.05, -111.95);
    let want = ["outside", "enter", "inside"];
    let heard: Vec<String> = (0..3)
        .map(|_| {
            let m = sub.get_message().unwrap();
            json(&m.get_payload::<String>().unwrap())["detect"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(heard, want);
    let live: Vec<String> = live_events(&mut live_f, 3)
        .iter()
        .map(|e| e["detect"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(live, want);
}
