//! The prometheus-client exporter example, scraped: every family reflects
//! `Watcher::metrics()` at the moment of the scrape, and families without a
//! value are absent rather than zero.

mod common;
#[path = "../examples/prometheus_exporter.rs"]
mod example;

use common::settable_watcher;
use memwatch::{Config, Threshold};

/// The value of the sample line `name` (no labels), if present.
fn value<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
}

#[test]
fn scrapes_follow_the_watcher() {
    let (watcher, used) = settable_watcher(Config {
        threshold: Some(Threshold::Bytes(1000)),
        soft: Some(Threshold::Bytes(600)),
        ..Default::default()
    });
    let registry = example::registry(watcher.clone());

    // Before the first sample: no figure to report, counters at zero.
    let text = example::scrape(&registry);
    assert_eq!(value(&text, "memwatch_used_bytes"), None, "{text}");
    assert_eq!(value(&text, "memwatch_headroom_bytes"), None, "{text}");
    assert_eq!(value(&text, "memwatch_samples_total"), Some("0"), "{text}");
    assert_eq!(value(&text, "memwatch_level"), Some("0"), "{text}");
    assert!(text.contains("# TYPE memwatch_samples counter"), "{text}");
    assert!(text.contains("# TYPE memwatch_level gauge"), "{text}");

    used.set(700);
    watcher.check().unwrap();
    let text = example::scrape(&registry);
    for (name, expected) in [
        ("memwatch_level", "1"),
        ("memwatch_fired", "0"),
        ("memwatch_degraded", "0"),
        ("memwatch_used_bytes", "700"),
        ("memwatch_headroom_bytes", "300"),
        ("memwatch_threshold_bytes", "1000"),
        ("memwatch_soft_bytes", "600"),
        ("memwatch_samples_total", "1"),
        ("memwatch_heap_profiles_total", "0"),
    ] {
        assert_eq!(value(&text, name), Some(expected), "{name} in\n{text}");
    }
    let interval: f64 = value(&text, "memwatch_poll_interval_seconds")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(interval, 1.0);
    // No limit was given to this watcher.
    assert_eq!(
        value(&text, "memwatch_effective_limit_bytes"),
        None,
        "{text}"
    );

    used.set(2000);
    assert!(watcher.check().unwrap().fired_now);
    let text = example::scrape(&registry);
    assert_eq!(value(&text, "memwatch_level"), Some("2"), "{text}");
    assert_eq!(value(&text, "memwatch_fired"), Some("1"), "{text}");
    assert_eq!(value(&text, "memwatch_headroom_bytes"), Some("0"), "{text}");
    assert_eq!(value(&text, "memwatch_used_bytes"), Some("2000"), "{text}");
}
