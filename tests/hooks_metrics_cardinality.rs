//! The hooks' metrics page stays bounded with many hooks: dead letters are
//! counted by hook (`geohook_hook_dead_letters_total{hook,reason}`) only for
//! the first `--hook-metrics-max-hooks` hooks (100 by default) that make
//! one; every later hook's are counted together by reason in
//! `geohook_hook_dead_letters_unlabelled_total{reason}`. The labelled hooks
//! stay the same from one scrape to the next, so each series is a counter
//! that never goes down, and the two families add up to every dead letter.

#[path = "hooks_peers.rs"]
mod peers;

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::{run, start, wait_until};
use peers::{metric, scrape, sethook_enter};

const HOOKS: usize = 250;
const CAP: usize = 100;

/// The hook-labelled dead-letter samples of a metrics page: `(hook, count)`.
fn labelled(page: &str) -> Vec<(String, f64)> {
    page.lines()
        .filter_map(|l| l.strip_prefix("geohook_hook_dead_letters_total{"))
        .map(|rest| {
            let hook = rest
                .split("hook=\"")
                .nth(1)
                .and_then(|h| h.split('"').next())
                .expect("a hook label");
            let value = rest.rsplit(' ').next().unwrap().parse().unwrap();
            (hook.to_owned(), value)
        })
        .collect()
}

#[test]
fn dead_letters_are_labelled_by_hook_for_the_first_hooks_only_and_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--hook-message-ttl-ms",
        "300",
        "--metrics-addr",
        "127.0.0.1:0",
    ];
    let server = start(dir.path(), &flags).unwrap();
    let mut c = server.client();
    // Nothing listens on port 1: every event becomes a dead letter.
    for i in 0..HOOKS {
        sethook_enter(&mut c, &format!("h{i:03}"), "http://127.0.0.1:1/");
    }
    let held = |want: usize| {
        wait_until(Duration::from_secs(60), || {
            metric(&scrape(&server), "geohook_hook_dead_letters_held") == want as f64
        })
    };
    // One write enters every hook's fence: one dead letter per hook.
    assert_eq!(run(&mut c, "SET fleet a POINT 33 -112"), "OK");
    assert!(held(HOOKS), "{}", scrape(&server));
    let page = scrape(&server);
    let first = labelled(&page);
    assert_eq!(first.len(), CAP, "{page}");
    assert!(first.iter().all(|(_, n)| *n == 1.0), "{first:?}");
    let unlabelled = |page: &str, reason: &str| {
        metric(
            page,
            &format!("geohook_hook_dead_letters_unlabelled_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(unlabelled(&page, "expired"), (HOOKS - CAP) as f64, "{page}");
    assert_eq!(unlabelled(&page, "retries"), 0.0, "{page}");

    // A second round: the same hooks keep their labels, and the counts add up.
    assert_eq!(run(&mut c, "SET fleet b POINT 33 -112"), "OK");
    assert!(held(2 * HOOKS), "{}", scrape(&server));
    let page = scrape(&server);
    let second = labelled(&page);
    let names = |v: &[(String, f64)]| v.iter().map(|(h, _)| h.clone()).collect::<BTreeSet<_>>();
    assert_eq!(names(&second), names(&first));
    assert!(second.iter().all(|(_, n)| *n == 2.0), "{second:?}");
    assert_eq!(unlabelled(&page, "expired"), 2.0 * (HOOKS - CAP) as f64);
    let total: f64 = second.iter().map(|(_, n)| n).sum::<f64>() + unlabelled(&page, "expired");
    assert_eq!(total, 2.0 * HOOKS as f64);
    let series = page
        .lines()
        .filter(|l| l.starts_with("geohook_hook_dead_letters"))
        .count();
    assert!(series <= CAP + 3, "{series} dead-letter samples:\n{page}");
}
