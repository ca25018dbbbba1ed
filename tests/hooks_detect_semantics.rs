//! Detect semantics through the real server (inside, outside, enter, exit,
//! cross), del, expiry and drop events, COMMANDS filtering, and the reply
//! shapes of SETHOOK, DELHOOK, PDELHOOK and HOOKS in RESP and JSON.

#[path = "hooks_peers.rs"]
mod peers;

use std::time::Duration;

use e2e::{run, run_json, start, wait_until};
use peers::{cmd, HttpSink};
use serde_json::json;

/// (command, detect or "", id or "") of each event of `hook`, in arrival order.
fn seen(events: &[serde_json::Value], hook: &str) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|e| e["hook"] == hook)
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            (s("command"), s("detect"), s("id"))
        })
        .collect()
}

fn t(c: &str, d: &str, id: &str) -> (String, String, String) {
    (c.into(), d.into(), id.into())
}

#[test]
fn every_detect_kind_and_del_expiry_and_drop_events() {
    let http = HttpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let url = http.url("all");
    let fence = [
        "WITHIN", "fleet", "FENCE", "BOUNDS", "33", "-112", "33.1", "-111.9",
    ];
    let mut all = vec!["SETHOOK", "all", url.as_str()];
    all.extend(fence);
    assert_eq!(cmd(&mut c, &all), "1");
    let mut dels = vec![
        "SETHOOK",
        "dels",
        url.as_str(),
        "WITHIN",
        "fleet",
        "FENCE",
        "COMMANDS",
        "del,drop",
    ];
    dels.extend(&fence[3..]);
    assert_eq!(cmd(&mut c, &dels), "1");

    let steps = [
        "SET fleet a POINT 32 -112",
        "SET fleet a POINT 33.05 -111.95",
        "SET fleet a POINT 33.06 -111.95",
        // An FSET that changes a value reports `inside`; one that changes
        // nothing is not written and reports nothing.
        "FSET fleet a speed 10",
        "FSET fleet a speed 10",
        "SET fleet a POINT 32 -112",
        "SET fleet a POINT 33.05 -113",
        "SET fleet a POINT 33.05 -111",
        "DEL fleet a",
        "SET fleet b EX 1 POINT 33.05 -111.95",
    ];
    let mut fsets = 0;
    for s in steps {
        let want = match s {
            "DEL fleet a" => "1",
            "FSET fleet a speed 10" => {
                fsets += 1;
                if fsets == 1 {
                    "1"
                } else {
                    "0"
                }
            }
            _ => "OK",
        };
        assert_eq!(run(&mut c, s), want, "{s}");
    }
    // b expires through the server's expiry task, which reports a del.
    let mut want = vec![
        t("set", "outside", "a"),
        t("set", "enter", "a"),
        t("set", "inside", "a"),
        t("set", "inside", "a"),
        t("fset", "inside", "a"),
        t("set", "exit", "a"),
        t("set", "outside", "a"),
        t("set", "outside", "a"),
        t("set", "cross", "a"),
        t("set", "outside", "a"),
        t("del", "", "a"),
        t("set", "enter", "b"),
        t("set", "inside", "b"),
        t("del", "", "b"),
    ];
    let events = http.wait_events(want.len() + 2);
    assert_eq!(seen(&events, "all"), want);
    assert_eq!(
        seen(&events, "dels"),
        [t("del", "", "a"), t("del", "", "b")]
    );
    let del = events.iter().find(|e| e["command"] == "del").unwrap();
    assert_eq!(
        del.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .len(),
        6,
        "del carries command, hook, key, id, time, event_id: {del}"
    );

    assert_eq!(run(&mut c, "SET fleet c POINT 1 1"), "OK");
    assert_eq!(run(&mut c, "DROP fleet"), "1");
    want.push(t("set", "outside", "c"));
    want.push(t("drop", "", ""));
    let events = http.wait_events(want.len() + 3);
    assert_eq!(seen(&events, "all"), want);
    assert_eq!(seen(&events, "dels").last().unwrap(), &t("drop", "", ""));
}

#[test]
fn hook_commands_reply_like_tile38() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).unwrap();
    let mut c = server.client();
    let line = "SETHOOK h1 http://127.0.0.1:9999/a META k v NEARBY fleet FENCE DETECT enter POINT 33 -112 500";
    assert_eq!(run(&mut c, line), "1");
    assert_eq!(run(&mut c, line), "0", "an identical hook is unchanged");
    assert_eq!(
        run(&mut c, &line.replace("500", "600")),
        "1",
        "a changed hook"
    );
    assert_eq!(
        run(&mut c, "SETHOOK h2 redis://127.0.0.1:9999/ch,kafka://127.0.0.1:9998/t WITHIN fleet FENCE BOUNDS 1 2 3 4"),
        "1"
    );
    assert_eq!(
        run(&mut c, "HOOKS *"),
        "[[h1 fleet [http://127.0.0.1:9999/a] [NEARBY fleet FENCE DETECT enter POINT 33 -112 600] [k v]] \
         [h2 fleet [redis://127.0.0.1:9999/ch kafka://127.0.0.1:9998/t] [WITHIN fleet FENCE BOUNDS 1 2 3 4] []]]"
    );
    assert_eq!(run(&mut c, "HOOKS x*"), "[]");
    assert_eq!(
        run(
            &mut c,
            "SETHOOK h3 http://127.0.0.1:9999/a WITHIN fleet BOUNDS 1 2 3 4"
        ),
        "ERR:missing FENCE argument"
    );
    assert_eq!(
        run(
            &mut c,
            "SETHOOK h3 gopher://x/a WITHIN fleet FENCE BOUNDS 1 2 3 4"
        ),
        "ERR:invalid argument 'gopher://x/a'"
    );
    assert_eq!(
        run(
            &mut c,
            "SETHOOK h3 http://x/a WITHIN fleet FENCE DETECT roam BOUNDS 1 2 3 4"
        ),
        "ERR:invalid argument 'roam'"
    );
    assert_eq!(
        run(&mut c, "SETHOOK h3"),
        "ERR:wrong number of arguments for 'sethook' command"
    );

    let mut j = server.json_client();
    assert_eq!(
        run_json(&mut j, "HOOKS h1"),
        json!({"ok": true, "hooks": [{
            "name": "h1", "key": "fleet", "ttl": -1,
            "endpoints": ["http://127.0.0.1:9999/a"],
            "command": ["NEARBY", "fleet", "FENCE", "DETECT", "enter", "POINT", "33", "-112", "600"],
            "meta": {"k": "v"}
        }]})
    );
    assert_eq!(
        run_json(
            &mut j,
            "SETHOOK h4 http://127.0.0.1:9999/a EX 60 WITHIN fleet FENCE BOUNDS 1 2 3 4"
        ),
        json!({"ok": true})
    );
    let ttl = run_json(&mut j, "HOOKS h4")["hooks"][0]["ttl"]
        .as_i64()
        .unwrap();
    assert!((1..=60).contains(&ttl), "{ttl}");
    assert_eq!(run_json(&mut j, "DELHOOK h4"), json!({"ok": true}));
    assert_eq!(run(&mut c, "DELHOOK h4"), "0");
    assert_eq!(run(&mut c, "DELHOOK h2"), "1");
    assert_eq!(
        run(
            &mut c,
            "SETHOOK x1 http://a/b WITHIN k FENCE BOUNDS 1 2 3 4"
        ),
        "1"
    );
    assert_eq!(
        run(
            &mut c,
            "SETHOOK x2 http://a/b WITHIN k FENCE BOUNDS 1 2 3 4"
        ),
        "1"
    );
    assert_eq!(run(&mut c, "PDELHOOK x*"), "2");
    assert_eq!(run(&mut c, "PDELHOOK x*"), "0");
    assert_eq!(run(&mut c, "HOOKS *").matches("fleet FENCE").count(), 1);
    // A hook with EX goes away by itself.
    assert_eq!(
        run(
            &mut c,
            "SETHOOK brief http://a/b EX 0.2 WITHIN k FENCE BOUNDS 1 2 3 4"
        ),
        "1"
    );
    assert!(wait_until(Duration::from_secs(10), || run(
        &mut c,
        "HOOKS brief"
    ) == "[]"));
}
