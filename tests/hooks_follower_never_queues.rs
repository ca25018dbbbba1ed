//! A follower never queues hook events, from the moment FOLLOW is answered:
//! the leader delivers them, and a follower that also did would send every
//! event twice, under ids of its own series that a receiver cannot match.
//! The switch used to wait for the next 100 ms housekeeping tick, and writes
//! streamed in that window were queued on the follower too.

use std::time::{Duration, Instant};

use e2e::{metric_value, run, start, wait_until};

#[test]
fn writes_streamed_right_after_follow_are_queued_on_the_leader_only() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let metrics = ["--metrics-addr", "127.0.0.1:0"];
    let leader = start(ldir.path(), &metrics).unwrap();
    let follower = start(fdir.path(), &metrics).unwrap();
    let mut l = leader.client();
    // Nobody listens on port 1: the events stay queued on the leader.
    assert_eq!(
        run(
            &mut l,
            "SETHOOK h http://127.0.0.1:1/ NEARBY fleet FENCE POINT 33 -112 100000"
        ),
        "1"
    );

    let mut f = follower.client();
    assert_eq!(
        run(&mut f, &format!("FOLLOW 127.0.0.1 {}", leader.port)),
        "OK"
    );
    // Writes from the moment FOLLOW is answered, for half a second, each
    // one an event (every SET of a new id enters the fence).
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(500) {
        assert_eq!(run(&mut l, &format!("SET fleet t{n} POINT 33 -112")), "OK");
        n += 1;
    }
    let synced = wait_until(Duration::from_secs(60), || {
        run(&mut f, &format!("GET fleet t{}", n - 1)) != "nil"
    });
    assert!(
        synced,
        "the follower never got the writes:\n{}",
        follower.log()
    );

    let queued = |s: &e2e::Server| {
        metric_value(&s.metrics_page(), "geohook_hook_enqueued_total").unwrap_or(-1.0)
    };
    assert!(
        wait_until(Duration::from_secs(30), || queued(&leader) >= f64::from(n)),
        "the leader queued {} of {n} events",
        queued(&leader)
    );
    assert_eq!(
        queued(&follower),
        0.0,
        "the follower queued events of {n} replicated writes:\n{}",
        follower.log()
    );
}
