//! Tile38's fence options on hooks, channels and live fences, on a leader
//! and on its follower (whose channels and live fences hear its own
//! matching of replicated writes): `ROAM key pattern meters` with and
//! without `NODWELL` (Tile38's own roaming test data and expected messages,
//! `tests/fence_roaming_test.go`), `MATCH`, `WHERE` (field ranges and
//! expressions) and `WHEREIN` on fences, `NOFIELDS`, and `DISTANCE` on a
//! WITHIN fence; the outputs `IDS`, `POINTS`, `BOUNDS`, `HASHES` and `COUNT`
//! on fences, `ROAM … SCAN` and the bare roam event of an FSET. Live fences
//! are read in RESP2 and in JSON output.

#[path = "hooks_peers.rs"]
mod peers;

use std::time::Duration;

use e2e::{run, start, wait_until, Raw, Server};
use peers::{cmd, HttpSink};

/// A live fence on `server`: `json` switches the connection to JSON output
/// first.
fn live(server: &Server, json: bool, fence: &[&str]) -> Raw {
    let mut c = Raw::open(server);
    if json {
        assert!(c.ask(&["OUTPUT", "json"]).contains("\"ok\":true"));
        assert_eq!(c.ask(fence), r#"{"ok":true,"live":true}"#);
    } else {
        assert_eq!(c.ask(fence), "+OK");
    }
    c
}

/// An event without the members that Tile38's own tests remove as
/// non-deterministic or specific to the receiver (`cleanMessage`), and the
/// delivery's own `event_id`, in compact form.
fn clean(body: &str) -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let m = v.as_object_mut().expect("an event object");
    for k in ["group", "time", "hook", "event_id"] {
        m.remove(k);
    }
    v.to_string()
}

/// A leader with the hooks and channels of `setup`, and a follower that has
/// received its channels.
fn pair(ldir: &tempfile::TempDir, fdir: &tempfile::TempDir, setup: &[&[&str]]) -> (Server, Server) {
    let leader = start(ldir.path(), &[]).unwrap();
    let follower = start(fdir.path(), &[]).unwrap();
    let mut l = leader.client();
    for c in setup {
        assert_eq!(cmd(&mut l, c), "1", "{c:?}");
    }
    let mut f = follower.client();
    assert_eq!(
        run(&mut f, &format!("FOLLOW 127.0.0.1 {}", leader.port)),
        "OK"
    );
    let n = setup.iter().filter(|c| c[0] == "SETCHAN").count();
    assert!(
        wait_until(Duration::from_secs(30), || run(&mut f, "CHANS *")
            .matches("local://")
            .count()
            == n),
        "the channels reach the follower"
    );
    (leader, follower)
}

/// Tile38's roaming test data: two cars driving towards each other on one
/// street, each position set in turn (car1 then car2).
fn roaming_data() -> Vec<(&'static str, f64, f64)> {
    let car1 = [
        -111.93669319152832,
        -111.93051338195801,
        -111.92416191101074,
        -111.91789627075195,
        -111.9111156463623,
        -111.90510749816895,
        -111.89746856689453,
    ];
    let car2 = [
        -111.89746856689453,
        -111.90519332885742,
        -111.91154479980467,
        -111.91781044006346,
        -111.92416191101074,
        -111.93059921264648,
        -111.93660736083984,
    ];
    let lat = 33.414750027566235;
    car1.iter()
        .zip(car2)
        .flat_map(|(a, b)| [("car1", lat, *a), ("car2", lat, b)])
        .collect()
}

/// Tile38's expected roaming messages (`roamingTestData`), as cleaned.
const ROAMING: [&str; 4] = [
    r#"{"command":"set","detect":"roam","key":"cars","id":"car1","object":{"type":"Point","coordinates":[-111.91789627075195,33.414750027566235]},"nearby":{"key":"cars","id":"car2","object":{"type":"Point","coordinates":[-111.91154479980467,33.414750027566235]},"meters":589.512}}"#,
    r#"{"command":"set","detect":"roam","key":"cars","id":"car2","object":{"type":"Point","coordinates":[-111.91781044006346,33.414750027566235]},"nearby":{"key":"cars","id":"car1","object":{"type":"Point","coordinates":[-111.91789627075195,33.414750027566235]},"meters":7.966}}"#,
    r#"{"command":"set","detect":"roam","key":"cars","id":"car1","object":{"type":"Point","coordinates":[-111.9111156463623,33.414750027566235]},"nearby":{"key":"cars","id":"car2","object":{"type":"Point","coordinates":[-111.91781044006346,33.414750027566235]},"meters":621.377}}"#,
    r#"{"command":"set","detect":"roam","key":"cars","id":"car2","object":{"type":"Point","coordinates":[-111.92416191101074,33.414750027566235]},"faraway":{"key":"cars","id":"car1","object":{"type":"Point","coordinates":[-111.9111156463623,33.414750027566235]},"meters":1210.89}}"#,
];

/// Compares each message with Tile38's, member for member (serde_json
/// sorts members, so the order is compared apart, on the raw text).
fn assert_roaming(got: &[String], want: &[&str], who: &str) {
    let canon = |s: &str| clean(s);
    let got_c: Vec<String> = got.iter().map(|s| canon(s)).collect();
    let want_c: Vec<String> = want.iter().map(|s| canon(s)).collect();
    assert_eq!(got_c, want_c, "{who}");
    for (g, w) in got.iter().zip(want) {
        // Tile38's member order: command, group, detect, [hook], key, time,
        // id, object, then nearby or faraway.
        let order = [
            "\"command\"",
            "\"detect\"",
            "\"key\"",
            "\"id\"",
            "\"object\"",
        ];
        let at: Vec<usize> = order.iter().map(|k| g.find(k).expect(k)).collect();
        assert!(at.windows(2).all(|p| p[0] < p[1]), "{who}: order of {g}");
        let tail = if w.contains("\"nearby\"") {
            "\"nearby\""
        } else {
            "\"faraway\""
        };
        assert!(g.find(tail) > g.find("\"object\""), "{who}: {g}");
    }
}

#[test]
fn roam_fences_send_tile38s_nearby_and_faraway_messages_on_leader_and_follower() {
    let http = HttpSink::start();
    let url = http.url("roam");
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let roam = ["NEARBY", "cars", "FENCE", "ROAM", "cars", "*", "1000"];
    let nodwell = [
        "NEARBY", "cars", "FENCE", "NODWELL", "ROAM", "cars", "car*", "1000",
    ];
    let mut sethook = vec!["SETHOOK", "carshook", url.as_str()];
    sethook.extend(roam);
    let mut setchan = vec!["SETCHAN", "carschan"];
    setchan.extend(roam);
    let (leader, follower) = pair(&ldir, &fdir, &[&setchan]);
    let mut l = leader.client();
    // The HTTP hook runs on a server of its own: a follower's hooks send
    // nothing, and this keeps the endpoint's count about the hook alone.
    let hdir = tempfile::tempdir().unwrap();
    let solo = start(hdir.path(), &[]).unwrap();
    let mut h = solo.client();
    assert_eq!(cmd(&mut h, &sethook), "1");
    // HOOKS lists the fence as written.
    assert!(run(&mut h, "HOOKS *").contains("ROAM"));

    let mut live_leader = live(&leader, false, &roam);
    let mut live_nodwell = live(&leader, true, &nodwell);
    let mut live_follower = live(&follower, true, &roam);
    let mut sub_conn = follower.client();
    let mut sub = sub_conn.as_pubsub();
    sub.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    sub.psubscribe("carschan").unwrap();

    for (id, lat, lon) in roaming_data() {
        for c in [&mut l, &mut h] {
            assert_eq!(run(c, &format!("SET cars {id} POINT {lat} {lon}")), "OK");
        }
    }
    let read = |c: &mut Raw, n: usize| -> Vec<String> { (0..n).map(|_| c.read()).collect() };
    assert_roaming(&read(&mut live_leader, 4), &ROAMING, "leader live, RESP2");
    assert_roaming(
        &read(&mut live_follower, 4),
        &ROAMING,
        "follower live, JSON",
    );
    let channel: Vec<String> = (0..4)
        .map(|_| sub.get_message().unwrap().get_payload::<String>().unwrap())
        .collect();
    assert_roaming(&channel, &ROAMING, "follower channel");
    // An endpoint may get an event again after a timed-out attempt; the
    // receiver drops repeats by event_id.
    let unique = |bodies: Vec<String>| -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        bodies
            .into_iter()
            .filter(|b| {
                let v: serde_json::Value = serde_json::from_str(b).unwrap();
                seen.insert(v["event_id"].as_u64().expect("an event id"))
            })
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(60), || unique(http.bodies()).len() >= 4),
        "{:?}",
        http.bodies()
    );
    let hook = unique(http.bodies());
    assert_roaming(&hook, &ROAMING, &format!("hook: {:?}", http.bodies()));
    assert!(
        hook.iter().all(|e| e.contains(r#""hook":"carshook""#)),
        "{hook:?}"
    );
    // NODWELL: a car already near the other before its move is not
    // reported again, so only the first meeting and the parting remain.
    assert_roaming(
        &read(&mut live_nodwell, 2),
        &[ROAMING[0], ROAMING[3]],
        "leader live NODWELL",
    );

    // A delete reaches the roam fences as Tile38's del message.
    assert_eq!(run(&mut l, "DEL cars car1"), "1");
    assert_eq!(run(&mut h, "DEL cars car1"), "1");
    for c in [&mut live_leader, &mut live_follower] {
        let del: serde_json::Value = serde_json::from_str(&clean(&c.read())).unwrap();
        assert_eq!(
            del,
            serde_json::json!({"command": "del", "key": "cars", "id": "car1"})
        );
    }
    assert!(
        wait_until(Duration::from_secs(60), || unique(http.bodies()).len() == 5),
        "the delete reaches the hook: {:?}",
        http.bodies()
    );
    // What a roam fence does not do is refused clearly.
    let refused = cmd(
        &mut l,
        &[
            "SETCHAN", "x", "NEARBY", "cars", "FENCE", "ROAM", "cars", "*", "10", "SCAN",
        ],
    );
    assert!(refused.starts_with("ERR"), "{refused}");
    let refused = cmd(
        &mut l,
        &[
            "SETCHAN", "x", "WITHIN", "cars", "FENCE", "ROAM", "cars", "*", "10",
        ],
    );
    assert!(refused.starts_with("ERR"), "{refused}");
}

const AREA: [&str; 5] = ["BOUNDS", "33", "-112", "33.1", "-111.9"];

#[test]
fn match_where_wherein_nofields_and_distance_filter_fence_events() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let chan = |name: &'static str, opts: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["SETCHAN", name, "WITHIN", "fleet"];
        v.extend(opts);
        v.extend(["FENCE", "DETECT", "enter,exit,inside"]);
        v.extend(AREA);
        v
    };
    let fast = chan("fast", &["MATCH", "truck*", "WHERE", "speed", "50", "+inf"]);
    let expr = chan("expr", &["WHERE", "speed > 50 && kind == 'truck'"]);
    let within = chan("wherein", &["WHEREIN", "kind", "2", "truck", "van"]);
    let (leader, follower) = pair(&ldir, &fdir, &[&fast, &expr, &within]);
    let mut l = leader.client();

    let mut dist_fence: Vec<&str> = vec!["WITHIN", "fleet", "DISTANCE", "NOFIELDS", "FENCE"];
    dist_fence.extend(AREA);
    let mut live_dist = live(&leader, false, &dist_fence);
    let mut subs = Vec::new();
    for server in [&leader, &follower] {
        let conn = server.client();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        subs.push(conn);
    }
    let mut pubsubs: Vec<_> = subs.iter_mut().map(|c| c.as_pubsub()).collect();
    for p in &mut pubsubs {
        p.subscribe(&["fast", "expr", "wherein"]).unwrap();
    }

    // A car is never a truck*; a slow truck fails WHERE; both are inside
    // the area. Then the truck speeds up (an FSET inside: "inside" with no
    // enter, as Tile38 says for fset), slows down (exit while inside the
    // area), speeds up and leaves.
    let writes = [
        "SET fleet car1 FIELD speed 90 FIELD kind car POINT 33.05 -111.95",
        "SET fleet truck1 FIELD speed 30 FIELD kind truck POINT 33.05 -111.95",
        "FSET fleet truck1 speed 60",
        "SET fleet truck1 POINT 33.06 -111.95",
        "FSET fleet truck1 speed 40",
        "FSET fleet truck1 speed 70",
        "SET fleet truck1 POINT 34 -111.95",
    ];
    for w in writes {
        let r = run(&mut l, w);
        assert!(r == "OK" || r == "1", "{w}: {r}");
    }
    // (channel, command, detect, id) of each message, in order.
    let want_fast = [
        ("fast", "fset", "inside", "truck1"),
        ("fast", "set", "inside", "truck1"),
        ("fast", "fset", "exit", "truck1"),
        ("fast", "fset", "inside", "truck1"),
        ("fast", "set", "exit", "truck1"),
    ];
    // WHEREIN kind truck,van: car1 never; truck1 from its first SET (an
    // enter is also an inside, as Tile38 sends both when DETECT has both).
    let want_in = [
        ("wherein", "set", "enter", "truck1"),
        ("wherein", "set", "inside", "truck1"),
        ("wherein", "fset", "inside", "truck1"),
        ("wherein", "set", "inside", "truck1"),
        ("wherein", "fset", "inside", "truck1"),
        ("wherein", "fset", "inside", "truck1"),
        ("wherein", "set", "exit", "truck1"),
    ];
    for (n, p) in pubsubs.iter_mut().enumerate() {
        let mut got: Vec<(String, String, String, String)> = Vec::new();
        for _ in 0..(want_fast.len() * 2 + want_in.len()) {
            let m = p.get_message().unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&m.get_payload::<String>().unwrap()).unwrap();
            got.push((
                m.get_channel_name().to_owned(),
                v["command"].as_str().unwrap().to_owned(),
                v["detect"].as_str().unwrap().to_owned(),
                v["id"].as_str().unwrap().to_owned(),
            ));
        }
        for (chan, want) in [
            ("fast", &want_fast[..]),
            ("expr", &want_fast[..]),
            ("wherein", &want_in[..]),
        ] {
            let mine: Vec<(&str, &str, &str)> = got
                .iter()
                .filter(|g| g.0 == chan)
                .map(|g| (g.1.as_str(), g.2.as_str(), g.3.as_str()))
                .collect();
            let want: Vec<(&str, &str, &str)> = want.iter().map(|w| (w.1, w.2, w.3)).collect();
            assert_eq!(mine, want, "{chan} on node {n}");
        }
    }

    // DISTANCE on a WITHIN fence: meters from the area's centre, after the
    // object; NOFIELDS: no fields, and FSETs send nothing.
    let first = clean(&live_dist.read());
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["detect"], "enter");
    assert_eq!(v["id"], "car1");
    assert!(v.get("fields").is_none(), "{first}");
    let d = v["distance"].as_f64().expect("distance");
    assert!(d.abs() < 1.0, "car1 is at the centre: {first}");
    // Every enter is followed by its inside (DETECT is not given); the
    // three FSETs between the truck's second and third SET send nothing.
    let rest: Vec<serde_json::Value> = (0..4)
        .map(|_| serde_json::from_str(&live_dist.read()).unwrap())
        .collect();
    let seen: Vec<(&str, &str, &str)> = rest
        .iter()
        .map(|v| {
            (
                v["command"].as_str().unwrap(),
                v["detect"].as_str().unwrap(),
                v["id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("set", "inside", "car1"),
            ("set", "enter", "truck1"),
            ("set", "inside", "truck1"),
            ("set", "inside", "truck1"),
        ]
    );
    assert!(rest[3]["distance"].as_f64().unwrap() > 1000.0);
    let last: serde_json::Value = serde_json::from_str(&live_dist.read()).unwrap();
    assert_eq!(
        (last["command"].as_str(), last["detect"].as_str()),
        (Some("set"), Some("exit"))
    );

    // Bad filters are refused with Tile38's errors, before anything is set.
    let bad = cmd(&mut l, &chan("bad", &["WHERE", "speed > > 5"]));
    assert!(bad.contains("invalid expression"), "{bad}");
    let bad = cmd(&mut l, &chan("bad", &["WHEREIN", "kind", "9", "a"]));
    assert!(bad.starts_with("ERR"), "{bad}");
    assert!(!run(&mut l, "CHANS *").contains("bad"));
}

/// `total` messages read from `p`, cleaned and grouped by channel.
fn by_channel(
    p: &mut redis::PubSub<'_>,
    total: usize,
) -> std::collections::BTreeMap<String, Vec<serde_json::Value>> {
    let mut got: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    for _ in 0..total {
        let m = p.get_message().unwrap();
        let body = clean(&m.get_payload::<String>().unwrap());
        got.entry(m.get_channel_name().to_owned())
            .or_default()
            .push(serde_json::from_str(&body).unwrap());
    }
    got
}

#[test]
fn fence_outputs_shape_the_events_as_tile38s_scan_writer_does() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let chan = |name: &'static str, output: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec![
            "SETCHAN", name, "WITHIN", "fleet", "FENCE", "DETECT", "enter",
        ];
        v.extend(output);
        v.extend(AREA);
        v
    };
    let ids = chan("ids", &["IDS"]);
    let points = chan("points", &["POINTS"]);
    // BOUNDS then a number is the area; BOUNDS then BOUNDS is the output.
    let bounds = chan("bounds", &["BOUNDS"]);
    let hashes = chan("hashes", &["HASHES", "5"]);
    let count = chan("count", &["COUNT"]);
    let (leader, follower) = pair(&ldir, &fdir, &[&ids, &points, &bounds, &hashes, &count]);
    let mut l = leader.client();

    // The same outputs reach a hook and a live fence.
    let http = HttpSink::start();
    let url = http.url("ids");
    let mut hook = vec![
        "SETHOOK",
        "idshook",
        url.as_str(),
        "WITHIN",
        "fleet",
        "FENCE",
    ];
    hook.extend(["DETECT", "enter", "IDS"]);
    hook.extend(AREA);
    assert_eq!(cmd(&mut l, &hook), "1");
    let mut live_points = live(
        &follower,
        true,
        &[
            "NEARBY", "fleet", "FENCE", "DETECT", "enter", "POINTS", "POINT", "33.05", "-111.95",
            "1000",
        ],
    );
    let mut subs: Vec<redis::Connection> = [&leader, &follower]
        .iter()
        .map(|s| {
            let c = s.client();
            c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            c
        })
        .collect();
    let mut pubsubs: Vec<_> = subs.iter_mut().map(|c| c.as_pubsub()).collect();
    for p in &mut pubsubs {
        p.subscribe(&["ids", "points", "bounds", "hashes", "count"])
            .unwrap();
    }

    assert_eq!(
        run(
            &mut l,
            "SET fleet truck1 FIELD speed 50 POINT 33.05 -111.95"
        ),
        "OK"
    );
    let hash = run(&mut l, "GET fleet truck1 HASH 5");
    assert_eq!(hash.len(), 5, "{hash}");
    assert_eq!(run(&mut l, "DEL fleet truck1"), "1");

    let set = |extra: serde_json::Value| {
        let mut v = serde_json::json!({
            "command": "set", "detect": "enter", "key": "fleet", "id": "truck1",
        });
        if let serde_json::Value::Object(m) = extra {
            v.as_object_mut().unwrap().extend(m);
        }
        v
    };
    let fields = serde_json::json!({"speed": 50});
    let del = serde_json::json!({"command": "del", "key": "fleet", "id": "truck1"});
    let want: std::collections::BTreeMap<String, Vec<serde_json::Value>> = [
        ("ids", vec![set(serde_json::json!({})), del.clone()]),
        (
            "points",
            vec![
                set(serde_json::json!({"point": {"lat": 33.05, "lon": -111.95}, "fields": fields})),
                del.clone(),
            ],
        ),
        (
            "bounds",
            vec![
                set(serde_json::json!({
                    "bounds": {"sw": {"lat": 33.05, "lon": -111.95}, "ne": {"lat": 33.05, "lon": -111.95}},
                    "fields": fields,
                })),
                del.clone(),
            ],
        ),
        (
            "hashes",
            vec![
                set(serde_json::json!({"hash": hash, "fields": fields})),
                del.clone(),
            ],
        ),
        // COUNT writes nothing per object: only the delete is sent.
        ("count", vec![del.clone()]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (n, p) in pubsubs.iter_mut().enumerate() {
        assert_eq!(by_channel(p, 9), want, "channels on node {n}");
    }
    let first: serde_json::Value = serde_json::from_str(&clean(&live_points.read())).unwrap();
    assert_eq!(
        first,
        set(serde_json::json!({"point": {"lat": 33.05, "lon": -111.95}, "fields": fields})),
        "follower live fence"
    );
    assert!(
        wait_until(Duration::from_secs(60), || http.events().len() >= 2),
        "{:?}",
        http.bodies()
    );
    let hook: Vec<serde_json::Value> = http
        .bodies()
        .iter()
        .take(2)
        .map(|b| serde_json::from_str(&clean(b)).unwrap())
        .collect();
    assert_eq!(hook, want["ids"], "hook");
}

#[test]
fn roam_scan_lists_each_neighbours_objects_and_fset_sends_the_bare_roam_event() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fence = [
        "NEARBY", "cars", "FENCE", "ROAM", "people", "p*", "1000", "SCAN", ":*",
    ];
    let mut setchan = vec!["SETCHAN", "scan"];
    setchan.extend(fence);
    let (leader, follower) = pair(&ldir, &fdir, &[&setchan]);
    let mut l = leader.client();
    let mut live_leader = live(&leader, false, &fence);
    let mut sub_conn = follower.client();
    sub_conn
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut sub = sub_conn.as_pubsub();
    sub.subscribe("scan").unwrap();
    // p1's things are far away, so they are listed but never neighbours;
    // p10's id starts like them but does not match `p1:*`.
    for w in [
        "SET people p1 POINT 33.5 -111.5",
        "SET people p1:phone POINT 40.5 -100.5",
        "SET people p1:watch POINT 41.5 -100.5",
        "SET people p10 POINT 42.5 -100.5",
        "SET cars car1 POINT 33.501 -111.5",
        "FSET cars car1 speed 10",
    ] {
        let r = run(&mut l, w);
        assert!(r == "OK" || r == "1", "{w}: {r}");
    }
    let point =
        |lat: f64, lon: f64| serde_json::json!({"type": "Point", "coordinates": [lon, lat]});
    let nearby = serde_json::json!({
        "command": "set", "detect": "roam", "key": "cars", "id": "car1",
        "object": point(33.501, -111.5),
        "nearby": {
            "key": "people", "id": "p1", "object": point(33.5, -111.5),
            "scan": [
                {"id": "p1", "self": true, "object": point(33.5, -111.5)},
                {"id": "p1:phone", "object": point(40.5, -100.5)},
                {"id": "p1:watch", "object": point(41.5, -100.5)},
            ],
        },
    });
    let fset = serde_json::json!({
        "command": "fset", "detect": "roam", "key": "cars", "id": "car1",
        "object": point(33.501, -111.5), "fields": {"speed": 10},
    });
    let mut follower_msgs = Vec::new();
    for _ in 0..2 {
        follower_msgs.push(sub.get_message().unwrap().get_payload::<String>().unwrap());
    }
    let leader_msgs: Vec<String> = (0..2).map(|_| live_leader.read()).collect();
    for (who, msgs) in [
        ("leader live", leader_msgs),
        ("follower channel", follower_msgs),
    ] {
        let mut first: serde_json::Value = serde_json::from_str(&clean(&msgs[0])).unwrap();
        // 111 m between the two positions, to the millimetre.
        let meters = first["nearby"]
            .as_object_mut()
            .unwrap()
            .remove("meters")
            .and_then(|m| m.as_f64())
            .expect("meters");
        assert!((110.0..112.0).contains(&meters), "{who}: {meters}");
        assert_eq!(first, nearby, "{who}");
        let second: serde_json::Value = serde_json::from_str(&clean(&msgs[1])).unwrap();
        assert_eq!(second, fset, "{who}");
        // The scan list follows the neighbour's meters, as Tile38 writes it
        // (the channel is named "scan" too, so the member is found by its
        // bracket).
        assert!(
            msgs[0].find("\"meters\"").is_some()
                && msgs[0].find("\"meters\"") < msgs[0].find("\"scan\":["),
            "{who}"
        );
    }
}
