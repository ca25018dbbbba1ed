//! Fences take `SPARSE n` and `CLIPBY rect` as Tile38 reads them, with the
//! search's parser: SPARSE is checked and then changes nothing (a fence
//! tests each written object alone), and CLIPBY cuts the fence's area as it
//! cuts a search's. A hook, a channel and a live fence hear an object inside
//! the cut area and nothing of one inside the area but outside the cut; a
//! NEARBY circle is left whole; a cut that leaves nothing matches nothing.
//! Hooks and channels keep their cut after a restart, also when the area was
//! `GET key id` and that object has since changed and been deleted: the log
//! names the object as it was, before the cut, and the replay cuts it once;
//! a follower gets the same fence.

#[path = "hooks_peers.rs"]
mod peers;

use std::time::Duration;

use e2e::{run, run_json, start, wait_until, Raw, Server};
use peers::{cmd, HttpSink};

/// The fence's area, and the south-west quarter it is cut to.
const AREA: &[&str] = &["BOUNDS", "33", "-112", "33.1", "-111.9"];
const CLIP: &[&str] = &["CLIPBY", "BOUNDS", "33", "-112", "33.05", "-111.95"];
/// `AREA` as a stored object, for a `GET key id` area.
const ZONE: &str = r#"{"type":"Polygon","coordinates":[[[-112,33],[-111.9,33],[-111.9,33.1],[-112,33.1],[-112,33]]]}"#;

/// Inside the cut area.
const IN: (f64, f64) = (33.02, -111.98);
/// Inside the area but outside the cut (north-east quarter).
const OUT: (f64, f64) = (33.08, -111.92);

fn words(parts: &[&[&str]]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .map(|s| s.to_string())
        .collect()
}

fn send(c: &mut redis::Connection, args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cmd(c, &args)
}

fn set(c: &mut redis::Connection, id: &str, (lat, lon): (f64, f64)) {
    assert_eq!(run(c, &format!("SET fleet {id} POINT {lat} {lon}")), "OK");
}

/// Sets the hooks and channels every round listens to.
fn define(c: &mut redis::Connection, url: &str) {
    let enter: &[&str] = &["FENCE", "DETECT", "enter"];
    for def in [
        words(&[
            &["SETHOOK", "h", url, "WITHIN", "fleet"],
            enter,
            &["SPARSE", "3"],
            AREA,
            CLIP,
        ]),
        words(&[&["SETCHAN", "c", "INTERSECTS", "fleet"], enter, AREA, CLIP]),
        // The area cut to nothing.
        words(&[
            &["SETCHAN", "e", "WITHIN", "fleet"],
            enter,
            AREA,
            &["CLIPBY", "BOUNDS", "40", "40", "41", "41"],
        ]),
        words(&[
            &["SETCHAN", "g", "WITHIN", "fleet"],
            enter,
            &["SPARSE", "2", "GET", "zones", "z1"],
            CLIP,
        ]),
        // A circle is left whole: OUT (about 4 km from the centre) is in it.
        words(&[
            &["SETCHAN", "n", "NEARBY", "fleet"],
            enter,
            &["POINT", "33.05", "-111.95", "20000"],
            CLIP,
        ]),
    ] {
        assert_eq!(send(c, &def), "1", "{def:?}");
    }
}

/// Sets OUT and then IN under ids of this round and returns what the
/// channels said, as `channel:id`, up to a marker published on `e` after
/// the writes (whatever the writes caused arrives before it).
fn round(server: &Server, r: &str) -> Vec<String> {
    let mut c = server.client();
    let mut sub_conn = server.client();
    let mut sub = sub_conn.as_pubsub();
    sub.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    for ch in ["c", "e", "g", "n"] {
        sub.subscribe(ch).unwrap();
    }
    set(&mut c, &format!("out{r}"), OUT);
    set(&mut c, &format!("in{r}"), IN);
    assert_eq!(run(&mut c, "PUBLISH e marker"), "1");
    let mut heard = Vec::new();
    loop {
        let m = sub.get_message().unwrap();
        let body: String = m.get_payload().unwrap();
        if body == "marker" {
            return heard;
        }
        let e: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(e["detect"], "enter", "{e}");
        heard.push(format!(
            "{}:{}",
            m.get_channel_name(),
            e["id"].as_str().unwrap()
        ));
    }
}

/// The ids the hook has delivered, once it has delivered `n` events.
fn hook_ids(http: &HttpSink, n: usize) -> Vec<String> {
    http.wait_events(n)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn hooks_and_channels_keep_their_cut_after_a_restart() {
    let http = HttpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    assert_eq!(
        send(&mut c, &words(&[&["SET", "zones", "z1", "OBJECT", ZONE]])),
        "OK"
    );
    define(&mut c, &http.url("e"));
    let want = |r: &str| {
        [
            format!("n:out{r}"),
            format!("c:in{r}"),
            format!("g:in{r}"),
            format!("n:in{r}"),
        ]
    };
    assert_eq!(round(&server, "1"), want("1"));
    // The hook's queue is in write order: an event for OUT would come first.
    assert_eq!(hook_ids(&http, 1), ["in1"]);

    // HOOKS and CHANS show the fence as it was sent, but for the GET area,
    // which is shown as the object it named, before the cut.
    let hooks = run(&mut c, "HOOKS *");
    assert!(
        hooks.contains(
            "[WITHIN fleet FENCE DETECT enter SPARSE 3 BOUNDS 33 -112 33.1 -111.9 \
             CLIPBY BOUNDS 33 -112 33.05 -111.95]"
        ),
        "{hooks}"
    );
    let chans = |server: &Server| {
        let mut j = server.json_client();
        run_json(&mut j, "CHANS g")["chans"][0]["command"].clone()
    };
    let g = chans(&server);
    let g: Vec<&str> = g
        .as_array()
        .expect("a command")
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(
        g[..7],
        ["WITHIN", "fleet", "FENCE", "DETECT", "enter", "SPARSE", "2"]
    );
    assert_eq!(g[7], "OBJECT");
    let zone: serde_json::Value = serde_json::from_str(g[8]).unwrap();
    assert_eq!(
        zone,
        serde_json::from_str::<serde_json::Value>(ZONE).unwrap()
    );
    assert_eq!(g[9..], *CLIP);
    let listed = (hooks, chans(&server), run(&mut c, "CHANS *"));

    // The object the GET area named moves away and is deleted: the channel
    // keeps the shape it had, cut once.
    assert_eq!(run(&mut c, "SET zones z1 POINT 10 10"), "OK");
    assert_eq!(run(&mut c, "DEL zones z1"), "1");
    let server = server.restart().unwrap();
    let mut c = server.client();
    assert_eq!(
        (
            run(&mut c, "HOOKS *"),
            chans(&server),
            run(&mut c, "CHANS *")
        ),
        listed
    );
    assert_eq!(round(&server, "2"), want("2"));
    assert_eq!(hook_ids(&http, 2), ["in1", "in2"]);
}

#[test]
fn a_live_fence_hears_only_its_cut_area_in_resp_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let fence = words(&[
        &[
            "WITHIN",
            "fleet",
            "FENCE",
            "DETECT",
            "enter,exit",
            "SPARSE",
            "1",
        ],
        AREA,
        CLIP,
    ]);
    let mut resp2 = Raw::open(&server);
    assert_eq!(resp2.ask(&fence), "+OK");
    let mut json = Raw::open(&server);
    assert!(json.ask(&words(&[&["OUTPUT", "json"]])).contains("true"));
    assert_eq!(json.ask(&fence), r#"{"ok":true,"live":true}"#);
    set(&mut c, "out", OUT);
    set(&mut c, "in", IN);
    set(&mut c, "in", OUT);
    for (mode, l) in [("resp", &mut resp2), ("json", &mut json)] {
        let got: Vec<String> = (0..2)
            .map(|_| {
                let e: serde_json::Value = serde_json::from_str(&l.read()).unwrap();
                format!(
                    "{} {}",
                    e["detect"].as_str().unwrap(),
                    e["id"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(got, ["enter in", "exit in"], "{mode}");
    }

    // What the search refuses, the fence refuses in the same words; the JSON
    // connection gets them as Tile38's error object.
    let mut json = Raw::open(&server);
    assert!(json.ask(&words(&[&["OUTPUT", "json"]])).contains("true"));
    for (extra, tail, err) in [
        (
            &[][..],
            &["CLIPBY", "CIRCLE", "33", "-112", "100"][..],
            "invalid argument 'cannot clipby circle'",
        ),
        (
            &[],
            &["CLIPBY", "GET", "zones", "z1"],
            "invalid argument 'cannot clipby get'",
        ),
        (
            &[],
            &["CLIPBY"],
            "wrong number of arguments for 'setchan' command",
        ),
        (&["SPARSE", "0"], &[], "invalid argument '0'"),
        (&["SPARSE", "17"], &[], "invalid argument '17'"),
        (
            &["SPARSE", "1", "SPARSE", "2"],
            &[],
            "duplicate argument 'SPARSE'",
        ),
    ] {
        let def = words(&[
            &["SETCHAN", "x", "WITHIN", "fleet", "FENCE"],
            extra,
            AREA,
            tail,
        ]);
        assert_eq!(send(&mut c, &def), format!("ERR:{err}"), "{def:?}");
        let live = words(&[&["WITHIN", "fleet", "FENCE"], extra, AREA, tail]);
        let reply: serde_json::Value = serde_json::from_str(&json.ask(&live)).unwrap();
        let live_err = err.replace("'setchan'", "'fence'");
        assert_eq!(
            (&reply["ok"], reply["err"].as_str()),
            (&serde_json::json!(false), Some(live_err.as_str())),
            "{live:?}"
        );
    }
    assert_eq!(run(&mut c, "CHANS *"), "[]");
    assert!(wait_until(Duration::from_secs(5), || run(&mut c, "PING") == "PONG"));
}

#[test]
fn a_follower_gets_the_cut_fence_and_hears_only_the_cut_area() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = start(ldir.path(), &[]).unwrap();
    let follower = start(fdir.path(), &[]).unwrap();
    let mut l = leader.client();
    assert_eq!(
        send(&mut l, &words(&[&["SET", "zones", "z1", "OBJECT", ZONE]])),
        "OK"
    );
    let def = words(&[
        &[
            "SETCHAN", "g", "WITHIN", "fleet", "FENCE", "DETECT", "enter",
        ],
        &["SPARSE", "2", "GET", "zones", "z1"],
        CLIP,
    ]);
    assert_eq!(send(&mut l, &def), "1");
    // The zone is gone before the follower syncs: it gets the fence as
    // logged, the zone's shape then, cut once.
    assert_eq!(run(&mut l, "DEL zones z1"), "1");
    let mut f = follower.client();
    assert_eq!(
        run(&mut f, &format!("FOLLOW 127.0.0.1 {}", leader.port)),
        "OK"
    );
    assert!(
        wait_until(Duration::from_secs(60), || follower
            .stat(&mut f, "caught_up")
            == "true"),
        "the follower never caught up:\n{}",
        follower.log()
    );
    assert_eq!(run(&mut f, "CHANS *"), run(&mut l, "CHANS *"));
    let mut sub_conn = follower.client();
    let mut sub = sub_conn.as_pubsub();
    sub.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    sub.subscribe("g").unwrap();
    set(&mut l, "out", OUT);
    set(&mut l, "in", IN);
    let body: String = sub.get_message().unwrap().get_payload().unwrap();
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&e["detect"], &e["id"]),
        (&serde_json::json!("enter"), &serde_json::json!("in"))
    );
}

/// A POINT area takes a radius on NEARBY only, as in Tile38: on WITHIN the
/// word after the point is the next option, so CLIPBY follows it, and a
/// number there is refused.
#[test]
fn a_within_fence_on_a_point_takes_clipby_and_no_radius() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    assert_eq!(
        run(
            &mut c,
            "SETCHAN p WITHIN fleet FENCE POINT 33.01 -111.99 CLIPBY BOUNDS 33 -112 33.05 -111.95"
        ),
        "1"
    );
    let err = run(
        &mut c,
        "SETCHAN r WITHIN fleet FENCE POINT 33.01 -111.99 100",
    );
    assert!(err.starts_with("ERR"), "{err}");
    assert_eq!(
        run(
            &mut c,
            "SETCHAN n NEARBY fleet FENCE POINT 33.01 -111.99 100"
        ),
        "1"
    );
}

/// LIMIT on a fence is taken and checked, as the search's parser takes it
/// in Tile38, and limits nothing; CURSOR, and LIMIT with SPARSE, are refused
/// with Tile38's messages.
#[test]
fn fences_take_limit_and_refuse_cursor_as_tile38() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    assert_eq!(
        run(
            &mut c,
            "SETCHAN a NEARBY fleet LIMIT 5 FENCE POINT 33 -112 1000"
        ),
        "1"
    );
    for (line, want) in [
        (
            "SETCHAN b NEARBY fleet LIMIT 0 FENCE POINT 33 -112 1000",
            "ERR:invalid argument '0'",
        ),
        (
            "SETCHAN b NEARBY fleet LIMIT 1 LIMIT 2 FENCE POINT 33 -112 1000",
            "ERR:duplicate argument 'LIMIT'",
        ),
        (
            "SETCHAN b NEARBY fleet CURSOR 1 FENCE POINT 33 -112 1000",
            "ERR:CURSOR is not allowed when FENCE is specified",
        ),
        (
            "SETCHAN b NEARBY fleet SPARSE 2 LIMIT 5 FENCE POINT 33 -112 1000",
            "ERR:LIMIT is not allowed when SPARSE is specified",
        ),
    ] {
        assert_eq!(run(&mut c, line), want, "{line}");
    }
    // The LIMIT limits nothing: two objects entering are both heard.
    let mut sub = server.client();
    let mut ps = sub.as_pubsub();
    ps.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    ps.subscribe("a").unwrap();
    for id in ["p1", "p2"] {
        assert_eq!(run(&mut c, &format!("SET fleet {id} POINT 33 -112")), "OK");
    }
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let msg = ps.get_message().unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
        if v["detect"] == "enter" {
            heard.push(v["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(heard, ["p1", "p2"]);
}
