//! Messages that outlive their time-to-live or use up their attempts become dead letters: held
//! (bounded), counted by hook and reason, kept across a restart by the journal, and delivered in
//! order by `redeliver` once the endpoint is back. Hooks can carry their own retry policy.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{wait_until, HttpSink};
use geohook_hooks::{
    DeadReason, Endpoint, Journal, Outbox, Payload, Pushed, QueueConfig, RetryPolicy, Scheme,
};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

fn payload(i: usize) -> Payload {
    Payload {
        key: format!("fleet-{i}").into(),
        body: format!("{{\"n\":{i}}}").into(),
    }
}

fn expected(ids: impl IntoIterator<Item = usize>) -> Vec<String> {
    ids.into_iter().map(|i| format!("{{\"n\":{i}}}")).collect()
}

fn start(config: QueueConfig) -> (Arc<Outbox>, CancellationToken) {
    let outbox = Arc::new(Outbox::new(config).unwrap());
    let cancel = CancellationToken::new();
    let (o, c) = (Arc::clone(&outbox), cancel.clone());
    tokio::spawn(async move { o.run(c).await });
    (outbox, cancel)
}

fn fast(ttl_ms: u64) -> QueueConfig {
    QueueConfig {
        message_ttl: Duration::from_millis(ttl_ms),
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_become_dead_letters_that_survive_a_restart_and_are_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hooks.journal");
    let sink = HttpSink::start().await;
    sink.status.store(503, Ordering::SeqCst);
    let (outbox, cancel) = start(fast(300));
    outbox.set_hook("h", Endpoint::parse_list(&sink.url("h")).unwrap());
    let opened = Journal::open(&path).unwrap();
    outbox
        .attach_journal(opened.journal, opened.pending, opened.next_id)
        .unwrap();
    let ids: Vec<u64> = (0..5)
        .map(|i| {
            let id = outbox.next_id();
            assert_eq!(outbox.push_event("h", id, payload(i)), Pushed::Queued);
            id
        })
        .collect();
    wait_until("five dead letters", WAIT, || {
        outbox.dead_letters("h").unwrap().len() == 5
    })
    .await;
    let dead = outbox.dead_letters("h").unwrap();
    assert_eq!(dead.iter().map(|d| d.id).collect::<Vec<_>>(), ids);
    assert!(dead.iter().all(|d| d.reason == DeadReason::Expired));
    assert_eq!(dead[2].payload, payload(2));
    assert_eq!(outbox.queued("h"), Some(0));
    assert_eq!(
        outbox
            .dead_letter_counts()
            .iter()
            .map(|(h, r, n)| (h.to_string(), *r, *n))
            .collect::<Vec<_>>(),
        [("h".to_string(), DeadReason::Expired, 5)]
    );
    assert_eq!(outbox.metrics().dropped(), 0, "nothing was dropped");

    // The journal holds them as dead letters: a server started on a copy of it has them too.
    outbox.flush_journal(true).unwrap();
    let copy = dir.path().join("copy.journal");
    std::fs::copy(&path, &copy).unwrap();
    let restarted = Outbox::new(fast(300)).unwrap();
    restarted.set_hook("h", Endpoint::parse_list(&sink.url("h")).unwrap());
    let opened = Journal::open(&copy).unwrap();
    assert_eq!(
        restarted
            .attach_journal(opened.journal, opened.pending, opened.next_id)
            .unwrap(),
        0,
        "nothing queued, five dead letters"
    );
    assert_eq!(restarted.dead_letters("h").unwrap(), dead);
    assert_eq!(restarted.dead_letter_count(), 5);

    // The endpoint is back: new messages flow; REDELIVER sends the dead letters, oldest first.
    sink.status.store(200, Ordering::SeqCst);
    for i in 5..7 {
        assert_eq!(outbox.push("h", payload(i)), Pushed::Queued);
    }
    wait_until("the new ones", WAIT, || sink.count() == 2).await;
    assert_eq!(outbox.redeliver("h").unwrap(), Some(5));
    assert_eq!(outbox.redeliver("nope").unwrap(), None);
    wait_until("the dead letters", WAIT, || sink.count() == 7).await;
    assert_eq!(sink.bodies(), expected([5, 6, 0, 1, 2, 3, 4]));
    assert!(outbox.dead_letters("h").unwrap().is_empty());
    let m = outbox.metrics();
    assert_eq!((m.redelivered, m.queued_messages), (5, 0));
    assert_eq!(outbox.dead_letter_count(), 0);
    wait_until("done records", WAIT, || {
        outbox.journal().unwrap().pending() == 0
    })
    .await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_policy_limits_attempts_and_the_dead_letter_bound_keeps_the_newest() {
    let sink = HttpSink::start().await;
    sink.status.store(500, Ordering::SeqCst);
    // No time-to-live: without a limit on attempts, messages would wait for ever.
    let config = QueueConfig {
        max_dead_letters: 3,
        ..fast(0)
    };
    let (outbox, cancel) = start(config);
    outbox.set_hook("limited", Endpoint::parse_list(&sink.url("a")).unwrap());
    outbox.set_hook("patient", Endpoint::parse_list(&sink.url("b")).unwrap());
    let policy = RetryPolicy {
        max_attempts: 2,
        ..outbox.default_policy()
    };
    assert!(outbox.set_hook_policy("limited", Some(policy)).unwrap());
    assert!(!outbox.set_hook_policy("nope", Some(policy)).unwrap());
    assert!(outbox
        .set_hook_policy(
            "limited",
            Some(RetryPolicy {
                timeout: Duration::ZERO,
                ..policy
            })
        )
        .is_err());
    assert_eq!(outbox.hook_policy("limited"), Some(policy));
    for i in 0..5 {
        outbox.push("limited", payload(i));
        outbox.push("patient", payload(i));
    }
    wait_until("the bound reached", WAIT, || {
        outbox.metrics().dead_letters_evicted == 2
    })
    .await;
    let dead = outbox.dead_letters("limited").unwrap();
    assert_eq!(
        dead.iter().map(|d| d.payload.clone()).collect::<Vec<_>>(),
        (2..5).map(payload).collect::<Vec<_>>(),
        "the newest three are kept"
    );
    assert!(dead.iter().all(|d| d.reason == DeadReason::Retries));
    assert!(outbox.metrics().scheme(Scheme::Http).failures >= 10);
    // The other hook keeps retrying its head: no TTL, no attempt limit.
    assert_eq!(outbox.queued("patient"), Some(5));
    assert!(outbox.dead_letters("patient").unwrap().is_empty());
    // Deleting a hook discards its dead letters, counted.
    assert!(outbox.remove_hook("limited"));
    assert_eq!(outbox.dead_letter_count(), 0);
    assert_eq!(outbox.metrics().dropped_removed, 3);
    cancel.cancel();
}
