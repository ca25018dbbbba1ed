//! Fence events, end to end through a real HTTP server: detect semantics as Tile38 defines them, the
//! event JSON, del and drop, META, groups, fence state that empties, and hook expiry.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{bounds_hook, events_of, point, wait_until, HttpSink};
use geohook_db::Object;
use geohook_hooks::{Change, Hooks, QueueConfig, SetOutcome};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
const FENCE: [f64; 4] = [0.0, 0.0, 10.0, 10.0];

fn start() -> (Arc<Hooks>, CancellationToken) {
    let hooks = Arc::new(Hooks::new(QueueConfig::default()).unwrap());
    let cancel = CancellationToken::new();
    let (h, c) = (Arc::clone(&hooks), cancel.clone());
    tokio::spawn(async move { h.run(c).await });
    (hooks, cancel)
}

/// Moves one object through `path` and checks, per hook, the detect values each move produced.
async fn check(
    path: &[(f64, f64)],
    hooks_detect: &[(&str, Option<&str>)],
    expected: &[(&str, &[&[&str]])],
) {
    let sink = HttpSink::start().await;
    let (hooks, cancel) = start();
    for (name, detect) in hooks_detect {
        hooks
            .set_hook(
                bounds_hook(name, &sink.url(name), "fleet", *detect, None, FENCE),
                SystemTime::now(),
            )
            .unwrap();
    }
    let mut old: Option<Object> = None;
    let mut total = 0;
    for (lat, lon) in path {
        let new = point(*lat, *lon);
        total += hooks.on_change(&Change::set(
            "fleet",
            "truck",
            old.as_ref(),
            &new,
            None,
            SystemTime::now(),
        ));
        old = Some(new);
    }
    wait_until("all events", WAIT, || sink.count() == total).await;
    let bodies = sink.bodies();
    for (hook, per_move) in expected {
        let got: Vec<String> = events_of(&bodies, hook)
            .iter()
            .map(|v| v["detect"].as_str().unwrap().to_owned())
            .collect();
        let want: Vec<String> = per_move
            .iter()
            .flat_map(|m| m.iter().map(|s| s.to_string()))
            .collect();
        assert_eq!(got, want, "hook {hook}");
    }
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_semantics_are_tile38s() {
    // Outside, enter, inside, exit, a jump over the fence (cross), then a move that stays outside.
    let path = [
        (20.0, 20.0),
        (5.0, 5.0),
        (6.0, 6.0),
        (20.0, 20.0),
        (-5.0, 5.0),
        (-5.0, 50.0),
    ];
    let hooks = [
        ("all", None),
        ("ee", Some("enter,exit")),
        ("in", Some("inside")),
        ("out", Some("outside")),
        ("cross", Some("cross")),
    ];
    check(
        &path,
        &hooks,
        &[
            (
                "all",
                &[
                    &["outside"],
                    &["enter", "inside"],
                    &["inside"],
                    &["exit", "outside"],
                    &["cross", "outside"],
                    &["outside"],
                ],
            ),
            ("ee", &[&[], &["enter"], &[], &["exit"], &[], &[]]),
            // Without enter in DETECT an enter falls back to inside; without exit or cross, to outside.
            ("in", &[&[], &["inside"], &["inside"], &[], &[], &[]]),
            (
                "out",
                &[
                    &["outside"],
                    &[],
                    &[],
                    &["outside"],
                    &["outside"],
                    &["outside"],
                ],
            ),
            ("cross", &[&[], &[], &[], &[], &["cross"], &[]]),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_tile38s_json_and_fence_state_empties() {
    let sink = HttpSink::start().await;
    let (hooks, cancel) = start();
    let mut def = bounds_hook("h1", &sink.url("h1"), "fleet", None, None, FENCE);
    def.meta = vec![
        ("owner".into(), "ops \"east\"".into()),
        ("a".into(), "1".into()),
    ];
    assert_eq!(
        hooks.set_hook(def.clone(), SystemTime::now()).unwrap(),
        SetOutcome::Created
    );
    assert_eq!(
        hooks.set_hook(def.clone(), SystemTime::now()).unwrap(),
        SetOutcome::Unchanged
    );

    let mut db = geohook_db::Database::new();
    let now = SystemTime::now();
    db.set(
        "fleet",
        "truck",
        point(5.0, 5.0),
        &[
            ("speed", 20.0.into()),
            ("zero", 0.0.into()),
            ("driver", geohook_db::FieldValue::parse("ann \"b\"")),
            ("tags", geohook_db::FieldValue::parse("[1, 2]")),
        ],
        None,
        geohook_db::SetCondition::Always,
        0,
    )
    .unwrap();
    let item = db.get("fleet", "truck", 0).unwrap().clone();
    hooks.on_change(&Change::set(
        "fleet",
        "truck",
        None,
        item.object(),
        Some(item.fields()),
        now,
    ));
    assert_eq!(hooks.metrics().fence_groups, 1);
    let moved = point(6.0, 6.0);
    hooks.on_change(&Change::set(
        "fleet",
        "truck",
        Some(item.object()),
        &moved,
        None,
        now,
    ));
    hooks.on_change(&Change::del("fleet", "truck", &moved, now));
    assert_eq!(
        hooks.metrics().fence_groups,
        0,
        "a delete drops the object's fence state"
    );
    hooks.on_change(&Change::drop("fleet", now));
    wait_until("events", WAIT, || sink.count() == 5).await;
    // Each event ends with its id, after Tile38's members; ids rise in queue order.
    let (b, ids): (Vec<String>, Vec<u64>) = sink
        .bodies()
        .iter()
        .map(|body| {
            let at = body.rfind(r#","event_id":"#).expect("event_id last");
            let id: u64 = body[at + 12..body.len() - 1].parse().expect("numeric id");
            (format!("{}}}", &body[..at]), id)
        })
        .unzip();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let time = chrono::DateTime::<chrono::Local>::from(now)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, false);
    let meta = r#""meta":{"owner":"ops \"east\"","a":"1"}"#;
    let tail = format!(
        r#""hook":"h1",{meta},"key":"fleet","time":"{time}","id":"truck","object":{{"type":"Point","coordinates":[5,5]}},"fields":{{"driver":"ann \"b\"","speed":20,"tags":[1, 2]}}}}"#
    );
    assert!(
        b[0].starts_with(r#"{"command":"set","group":""#),
        "{}",
        b[0]
    );
    assert!(
        b[0].ends_with(&format!(r#"","detect":"enter",{tail}"#)),
        "{}",
        b[0]
    );
    assert!(
        b[1].ends_with(&format!(r#"","detect":"inside",{tail}"#)),
        "{}",
        b[1]
    );
    let v: Vec<serde_json::Value> = b.iter().map(|s| serde_json::from_str(s).unwrap()).collect();
    assert_eq!(v[0]["group"].as_str().unwrap().len(), 24);
    assert_eq!(v[0]["group"], v[1]["group"]);
    assert_eq!(v[2]["group"], v[0]["group"], "a stay keeps its group");
    assert_eq!(v[2]["detect"], "inside");
    assert!(v[2].get("fields").is_none(), "no fields given, none shown");
    assert_eq!(
        b[3],
        format!(
            r#"{{"command":"del","hook":"h1",{meta},"key":"fleet","id":"truck","time":"{time}"}}"#
        )
    );
    assert_eq!(
        b[4],
        format!(r#"{{"command":"drop","hook":"h1",{meta},"key":"fleet","time":"{time}"}}"#)
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_filter_and_fence_state_stays_bounded() {
    let sink = HttpSink::start().await;
    let (hooks, cancel) = start();
    hooks
        .set_hook(
            bounds_hook(
                "dels",
                &sink.url("d"),
                "fleet",
                Some("enter,exit"),
                Some("del"),
                FENCE,
            ),
            SystemTime::now(),
        )
        .unwrap();
    hooks
        .set_hook(
            bounds_hook(
                "sets",
                &sink.url("s"),
                "fleet",
                Some("enter,exit"),
                Some("set"),
                FENCE,
            ),
            SystemTime::now(),
        )
        .unwrap();
    let now = SystemTime::now();
    // A thousand vehicles drive in and out: state grows with the ones inside and returns to zero.
    for i in 0..1000 {
        let id = format!("v{i}");
        hooks.on_change(&Change::set(
            "fleet",
            &id,
            None,
            &point(5.0, 5.0),
            None,
            now,
        ));
    }
    assert_eq!(hooks.metrics().fence_groups, 2000);
    for i in 0..1000 {
        let id = format!("v{i}");
        let (a, b) = (point(5.0, 5.0), point(50.0, 50.0));
        if i % 2 == 0 {
            hooks.on_change(&Change::set("fleet", &id, Some(&a), &b, None, now));
        } else {
            hooks.on_change(&Change::del("fleet", &id, &a, now));
        }
    }
    assert_eq!(hooks.metrics().fence_groups, 0);
    wait_until("events", WAIT, || sink.count() == 1000 + 500 + 500).await;
    let b = sink.bodies();
    assert!(events_of(&b, "dels").iter().all(|v| v["command"] == "del"));
    assert_eq!(events_of(&b, "dels").len(), 500);
    assert!(events_of(&b, "sets").iter().all(|v| v["command"] == "set"));
    cancel.cancel();
}

#[tokio::test]
async fn hooks_expire_list_and_delete_by_pattern() {
    let hooks = Hooks::new(QueueConfig::default()).unwrap();
    let t0 = SystemTime::now();
    let mut def = bounds_hook("temp", "http://127.0.0.1:1/x", "fleet", None, None, FENCE);
    def.ex = Some(2.5);
    hooks.set_hook(def.clone(), t0).unwrap();
    hooks
        .set_hook(
            bounds_hook(
                "fleet:a",
                "http://127.0.0.1:1/x",
                "fleet",
                None,
                None,
                FENCE,
            ),
            t0,
        )
        .unwrap();
    hooks
        .set_hook(
            bounds_hook(
                "fleet:b",
                "http://127.0.0.1:1/x",
                "other",
                None,
                None,
                FENCE,
            ),
            t0,
        )
        .unwrap();
    let listed = hooks.list("*", t0 + Duration::from_secs(1));
    assert_eq!(
        listed
            .iter()
            .map(|h| h.def.name.as_str())
            .collect::<Vec<_>>(),
        ["fleet:a", "fleet:b", "temp"]
    );
    assert_eq!(listed[2].ttl, Some(1.5));
    assert_eq!(listed[0].ttl, None);
    assert_eq!(
        listed[2].def.to_command(listed[2].ttl),
        [
            "SETHOOK",
            "temp",
            "http://127.0.0.1:1/x",
            "EX",
            "1.5",
            "WITHIN",
            "fleet",
            "FENCE",
            "BOUNDS",
            "0",
            "0",
            "10",
            "10"
        ]
    );
    assert!(hooks.expire_due(t0 + Duration::from_secs(2)).is_empty());
    assert_eq!(
        hooks.expire_due(t0 + Duration::from_secs(3)),
        [geohook_hooks::Expired {
            name: "temp".into(),
            channel: false
        }]
    );
    assert!(hooks.get("temp", t0).is_none());
    // An expired hook hears nothing more.
    assert_eq!(
        hooks.on_change(&Change::set("other", "x", None, &point(5.0, 5.0), None, t0)),
        2
    );
    assert_eq!(hooks.pdel_hooks("fleet:*"), ["fleet:a", "fleet:b"]);
    assert!(hooks.is_empty());
    assert_eq!(
        hooks.on_change(&Change::set("fleet", "x", None, &point(5.0, 5.0), None, t0)),
        0
    );
    assert_eq!(hooks.metrics().hooks, 0);
    assert!(!hooks.del_hook("fleet:a"));
}

#[tokio::test]
async fn followers_keep_fence_state_but_queue_nothing() {
    let hooks = Hooks::new(QueueConfig::default()).unwrap();
    hooks
        .set_hook(
            bounds_hook(
                "h",
                "http://127.0.0.1:1/x",
                "fleet",
                Some("enter,exit"),
                None,
                FENCE,
            ),
            SystemTime::now(),
        )
        .unwrap();
    hooks.set_role(false);
    assert!(!hooks.is_leader());
    let now = SystemTime::now();
    assert_eq!(
        hooks.on_change(&Change::set(
            "fleet",
            "a",
            None,
            &point(5.0, 5.0),
            None,
            now
        )),
        1
    );
    assert_eq!(hooks.metrics().enqueued, 0);
    hooks.set_role(true);
    // Promoted: the object is known to be inside, so leaving is an exit.
    hooks.on_change(&Change::set(
        "fleet",
        "a",
        Some(&point(5.0, 5.0)),
        &point(50.0, 5.0),
        None,
        now,
    ));
    assert_eq!(hooks.metrics().enqueued, 1);
    assert_eq!(hooks.outbox().queued("h"), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fset_reports_inside_with_the_new_fields_and_obeys_commands() {
    let sink = HttpSink::start().await;
    let (hooks, cancel) = start();
    for (name, commands) in [
        ("all", None),
        ("sets", Some("set")),
        ("fsets", Some("fset")),
    ] {
        hooks
            .set_hook(
                bounds_hook(name, &sink.url(name), "fleet", None, commands, FENCE),
                SystemTime::now(),
            )
            .unwrap();
    }
    let mut db = geohook_db::Database::new();
    let now = SystemTime::now();
    let always = geohook_db::SetCondition::Always;
    db.set(
        "fleet",
        "in",
        point(5.0, 5.0),
        &[("speed", 1.0)],
        None,
        always,
        0,
    )
    .unwrap();
    db.set(
        "fleet",
        "out",
        point(50.0, 50.0),
        &[] as &[(&str, f64)],
        None,
        always,
        0,
    )
    .unwrap();
    let item = db.get("fleet", "in", 0).unwrap().clone();
    hooks.on_change(&Change::set(
        "fleet",
        "in",
        None,
        item.object(),
        Some(item.fields()),
        now,
    ));
    // Each hook: enter + inside for the SET (two events) unless it filters SET out.
    db.fset(
        "fleet",
        "in",
        &[("speed", geohook_db::FieldValue::parse("fast"))],
        false,
        0,
    )
    .unwrap();
    let item = db.get("fleet", "in", 0).unwrap().clone();
    hooks.on_change(&Change::fset(
        "fleet",
        "in",
        item.object(),
        item.fields(),
        now,
    ));
    let out = db.get("fleet", "out", 0).unwrap().clone();
    hooks.on_change(&Change::fset(
        "fleet",
        "out",
        out.object(),
        out.fields(),
        now,
    ));
    // all: enter, inside (set); inside, outside (fset). sets: enter, inside. fsets: inside, outside.
    wait_until("events", WAIT, || sink.count() == 8).await;
    let b = sink.bodies();
    let summary = |hook: &str| -> Vec<String> {
        events_of(&b, hook)
            .iter()
            .map(|v| format!("{} {} {}", v["command"], v["detect"], v["id"]).replace('"', ""))
            .collect()
    };
    assert_eq!(
        summary("all"),
        [
            "set enter in",
            "set inside in",
            "fset inside in",
            "fset outside out"
        ]
    );
    assert_eq!(summary("sets"), ["set enter in", "set inside in"]);
    assert_eq!(summary("fsets"), ["fset inside in", "fset outside out"]);
    let fset = &events_of(&b, "fsets")[0];
    assert_eq!(fset["fields"], serde_json::json!({"speed":"fast"}));
    let enter_group = &events_of(&b, "all")[0]["group"];
    assert_eq!(
        &events_of(&b, "all")[2]["group"],
        enter_group,
        "an FSET inside keeps the stay's group"
    );
    cancel.cancel();
}
