//! A Prometheus exporter for memwatch's [`Metrics`] through
//! prometheus-client. A [`Collector`] reads [`Watcher::metrics`] at each
//! scrape, so the figures are the watcher's own at that moment and no task
//! copies them around between scrapes. `/metrics` is served by axum.
//!
//! ```sh
//! MEMWATCH_THRESHOLD=80% MEMWATCH_SOFT_THRESHOLD=70% \
//!     cargo run -p memwatch --example prometheus_exporter &
//! curl -s http://127.0.0.1:9090/metrics | grep memwatch_
//! ```
//!
//! `tests/prometheus_exporter.rs` scrapes [`registry`] over a source whose
//! figure the test sets and checks every family.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use memwatch::{CancellationToken, Config, Metrics, Watcher, EXIT_CODE_MEMORY_PRESSURE};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Exposes a watcher's [`Metrics`] as `memwatch_*` families.
#[derive(Debug)]
pub(crate) struct MemwatchCollector {
    watcher: Watcher,
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: impl EncodeCounterValue,
) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for MemwatchCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let m: Metrics = self.watcher.metrics();
        let e = &mut e;
        gauge(
            e,
            "memwatch_level",
            "0 normal, 1 elevated (shed load), 2 critical (fired)",
            m.level as i64,
        )?;
        gauge(
            e,
            "memwatch_fired",
            "1 once the watchdog has fired",
            u64::from(m.fired),
        )?;
        gauge(
            e,
            "memwatch_degraded",
            "1 when the requested signal fell back (see the start-up log)",
            u64::from(m.degraded.is_some()),
        )?;
        gauge(
            e,
            "memwatch_threshold_bytes",
            "Firing level",
            m.threshold_bytes,
        )?;
        gauge(
            e,
            "memwatch_poll_interval_seconds",
            "Time between samples",
            m.poll_interval.as_secs_f64(),
        )?;
        // Families without a value are left out rather than reported as 0,
        // which would read as "no memory used" or "no headroom".
        if let Some(sample) = m.last_sample {
            gauge(
                e,
                "memwatch_used_bytes",
                "The watched figure at the last sample",
                sample.used,
            )?;
        }
        if let Some(soft) = m.soft_bytes {
            gauge(e, "memwatch_soft_bytes", "Soft level (load shedding)", soft)?;
        }
        if let Some(limit) = m.effective_limit {
            gauge(
                e,
                "memwatch_effective_limit_bytes",
                "Smallest of the configured, cgroup and physical limits",
                limit,
            )?;
        }
        if let Some(headroom) = m.headroom_bytes {
            gauge(
                e,
                "memwatch_headroom_bytes",
                "Bytes left below the threshold",
                headroom,
            )?;
        }
        if let Some(rate) = m.growth_bytes_per_sec {
            gauge(
                e,
                "memwatch_growth_bytes_per_second",
                "Sustained growth rate (with a shutdown budget)",
                rate,
            )?;
        }
        counter(e, "memwatch_samples", "Full samples taken", m.samples)?;
        counter(
            e,
            "memwatch_estimates",
            "Ticks answered by the cheap upper bound",
            m.estimates,
        )?;
        counter(
            e,
            "memwatch_event_checks",
            "Checks made at once on a cgroup event",
            m.event_checks,
        )?;
        counter(
            e,
            "memwatch_sample_errors",
            "Samples that failed",
            m.sample_errors,
        )?;
        counter(
            e,
            "memwatch_purges",
            "jemalloc purges before firing",
            m.purges,
        )?;
        counter(
            e,
            "memwatch_heap_profiles",
            "Heap profiles written",
            m.heap_profiles,
        )?;
        Ok(())
    }
}

/// A registry holding the watcher's families.
pub(crate) fn registry(watcher: Watcher) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(MemwatchCollector { watcher }));
    registry
}

/// The registry in the text exposition format.
pub(crate) fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

// An example's `main` is what a server author copies; the tests include
// this file for `registry` and `scrape` alone.
#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let token = CancellationToken::new();
    let mut config = Config::from_env()?;
    if config.threshold.is_none() {
        // Keep the example useful without any variable set.
        config.threshold = Some(memwatch::Threshold::Fraction(0.8));
        config.soft = Some(memwatch::Threshold::Fraction(0.7));
    }
    let watcher = Watcher::new(config, token.clone())?.expect("a threshold is set");
    let handle = watcher.spawn()?;
    let registry = Arc::new(registry(watcher.clone()));

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
        println!("metrics on http://{}/metrics", listener.local_addr()?);
        let stop = token.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.cancel();
            }
        });
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        scrape(&registry),
                    )
                }
            }),
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .await
    })?;
    runtime.shutdown_timeout(Duration::from_secs(5));
    token.cancel();
    handle.join();
    if watcher.fired() {
        std::process::exit(EXIT_CODE_MEMORY_PRESSURE);
    }
    Ok(())
}
