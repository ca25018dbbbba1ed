//! Retry policy per hook (SETHOOK TTL, RETRIES, TIMEOUT, BACKOFF) and
//! server-wide (CONFIG SET hook-*): a hook limited to two attempts turns
//! failures into `retries` dead letters while a hook on the server-wide
//! policy keeps waiting; a server-wide TTL set at run time expires the
//! events queued after it; the hook's policy is logged, so it survives an
//! AOFSHRINK and a SIGKILL.

#[path = "hooks_peers.rs"]
mod peers;

use std::time::Duration;

use e2e::{run, run_json, start, wait_until};
use peers::{cmd, free_port, metric, scrape};

const FLAGS: [&str; 4] = [
    "--hook-message-ttl-ms",
    "600000",
    "--metrics-addr",
    "127.0.0.1:0",
];

fn sethook(c: &mut redis::Connection, name: &str, url: &str, key: &str, opts: &[&str]) -> String {
    let mut a = vec!["SETHOOK", name, url];
    a.extend(opts);
    a.extend([
        "NEARBY", key, "FENCE", "DETECT", "enter", "POINT", "33", "-112", "1000",
    ]);
    cmd(c, &a)
}

fn dead(j: &mut redis::Connection, hook: &str) -> Vec<(String, String)> {
    let v = run_json(j, &format!("HOOKDLQ {hook}"));
    v["dead_letters"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|d| {
            (
                d["event"]["id"].as_str().unwrap().to_owned(),
                d["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn hook_and_server_wide_retry_policies_apply_and_survive_shrink_and_sigkill() {
    // Nothing listens here: every attempt fails.
    let url = format!("http://127.0.0.1:{}/events", free_port());
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &FLAGS).unwrap();
    let mut c = server.client();
    let limited = [
        "RETRIES", "2", "BACKOFF", "0.01", "0.05", "TIMEOUT", "1", "TTL", "0",
    ];
    assert_eq!(sethook(&mut c, "a", &url, "fleet", &limited), "1");
    assert_eq!(
        sethook(&mut c, "a", &url, "fleet", &limited),
        "0",
        "identical"
    );
    assert_eq!(sethook(&mut c, "b", &url, "fleet", &[]), "1");
    assert_eq!(sethook(&mut c, "c", &url, "cars", &[]), "1");
    assert!(sethook(&mut c, "x", &url, "fleet", &["RETRIES", "-1"]).contains("invalid argument"));
    assert!(
        sethook(&mut c, "x", &url, "fleet", &["BACKOFF", "2", "1"]).contains("retry_max"),
        "a minimum back-off above the maximum is refused"
    );
    for i in 0..3 {
        assert_eq!(
            run(&mut c, &format!("SET fleet o{i} POINT 33.001 -112.001")),
            "OK"
        );
    }
    let mut j = server.json_client();
    let want: Vec<(String, String)> = (0..3)
        .map(|i| (format!("o{i}"), "retries".into()))
        .collect();
    assert!(wait_until(Duration::from_secs(20), || dead(&mut j, "a") == want));
    // Hook b follows the server-wide policy: no attempt limit, a 600 s TTL.
    assert!(dead(&mut j, "b").is_empty());
    let page = scrape(&server);
    assert_eq!(
        metric(
            &page,
            "geohook_hook_dead_letters_total{hook=\"a\",reason=\"retries\"}"
        ),
        3.0
    );
    assert_eq!(metric(&page, "geohook_hook_queued_messages"), 3.0, "b's");

    // Server-wide, at run time.
    assert_eq!(run(&mut c, "CONFIG SET hook-message-ttl 0.3"), "OK");
    assert_eq!(run(&mut c, "CONFIG SET hook-backoff-max 0.1"), "OK");
    assert!(run(&mut c, "CONFIG SET hook-backoff-min 5").contains("retry_max"));
    assert!(run(&mut c, "CONFIG SET hook-retries x").contains("invalid value"));
    let got = run(&mut c, "CONFIG GET hook-*");
    for want in [
        "hook-message-ttl",
        "0.3",
        "hook-backoff-max",
        "0.1",
        "hook-retries",
    ] {
        assert!(got.contains(want), "{got}");
    }
    assert_eq!(run(&mut c, "SET cars k POINT 33.001 -112.001"), "OK");
    assert!(wait_until(Duration::from_secs(20), || dead(&mut j, "c")
        == [("k".to_string(), "expired".to_string())]));

    // The hook's own policy is in the log, through a shrink and a SIGKILL.
    assert_eq!(run(&mut c, "AOFSHRINK"), "OK");
    assert!(server.wait_log("aof shrink finished", Duration::from_secs(20)));
    let aof = String::from_utf8_lossy(&std::fs::read(server.aof()).unwrap()).into_owned();
    assert!(aof.contains("retries\r\n$1\r\n2\r\n"), "{aof}");
    server.kill9();
    let server = start(dir.path(), &FLAGS).unwrap();
    let mut c = server.client();
    let mut j = server.json_client();
    assert_eq!(dead(&mut j, "a"), want, "dead letters kept");
    assert_eq!(run(&mut c, "SET fleet o3 POINT 33.001 -112.001"), "OK");
    let mut more = want.clone();
    more.push(("o3".into(), "retries".into()));
    assert!(wait_until(Duration::from_secs(20), || dead(&mut j, "a") == more));
    // The run-time setting is not stored: the flag's TTL is back.
    assert!(run(&mut c, "CONFIG GET hook-message-ttl").contains("600"));
}
