//! The hooks' Prometheus metrics: a collector that encodes a snapshot of
//! the engine's counters on each scrape.

use std::sync::Arc;

use geohook_hooks::Scheme;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::hooks::engine::HookEngine;

/// Encodes a snapshot of the hooks' counters on each scrape.
#[derive(Debug)]
pub(crate) struct HookCollector(pub(crate) Arc<HookEngine>);

fn gauge(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn labelled(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (l, v) in values {
        let set = [(label, *l)];
        ConstCounter::new(*v).encode(m.encode_family(&set)?)?;
    }
    Ok(())
}

impl Collector for HookCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> std::fmt::Result {
        let m = self.0.hooks.metrics();
        let e = &mut enc;
        gauge(e, "geohook_hooks", "Hooks defined", m.hooks)?;
        gauge(
            e,
            "geohook_hook_fence_groups",
            "Objects inside a hook's fence (live fence groups)",
            m.fence_groups,
        )?;
        gauge(
            e,
            "geohook_hook_queued_messages",
            "Events waiting for delivery",
            m.queued_messages,
        )?;
        gauge(
            e,
            "geohook_hook_queued_bytes",
            "Bytes of events waiting for delivery",
            m.queued_bytes,
        )?;
        counter(
            e,
            "geohook_hook_events",
            "Events produced by writes",
            m.events,
        )?;
        counter(
            e,
            "geohook_hook_enqueued",
            "Events accepted into a hook queue",
            m.enqueued,
        )?;
        labelled(
            e,
            "geohook_hook_dropped",
            "Events dropped before delivery, by reason",
            "reason",
            &[
                ("expired", m.dropped_expired),
                ("overflow", m.dropped_overflow),
                ("removed", m.dropped_removed),
                ("retries", m.dropped_retries),
                ("dead_letter_bound", m.dead_letters_evicted),
            ],
        )?;
        let outbox = self.0.hooks.outbox();
        gauge(
            e,
            "geohook_hook_dead_letters_held",
            "Dead letters held (HOOKDLQ), across all hooks",
            outbox.dead_letter_count(),
        )?;
        {
            let mut made = e.encode_descriptor(
                "geohook_hook_dead_letters",
                "Events that became dead letters since start, by hook and reason",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (hook, reason, n) in outbox.dead_letter_counts() {
                let labels = [("hook", &*hook), ("reason", reason.as_str())];
                ConstCounter::new(n).encode(made.encode_family(&labels)?)?;
            }
        }
        let unlabelled: Vec<(&str, u64)> = outbox
            .dead_letter_counts_unlabelled()
            .into_iter()
            .map(|(reason, n)| (reason.as_str(), n))
            .collect();
        labelled(
            e,
            "geohook_hook_dead_letters_unlabelled",
            "Events that became dead letters since start, by reason, of the hooks past --hook-metrics-max-hooks",
            "reason",
            &unlabelled,
        )?;
        counter(
            e,
            "geohook_hook_redelivered",
            "Dead letters queued again by REDELIVER",
            m.redelivered,
        )?;
        if let Some((journal, _)) = self.0.journal() {
            gauge(
                e,
                "geohook_hook_journal_bytes",
                "Size of the hook journal, buffered records included",
                journal.len(),
            )?;
        }
        counter(
            e,
            "geohook_hook_connections_opened",
            "Endpoint connections and HTTP clients opened",
            m.connections_opened,
        )?;
        counter(
            e,
            "geohook_hook_connection_recycles",
            "Endpoint connections replaced at their maximum lifetime",
            m.connection_recycles,
        )?;
        counter(
            e,
            "geohook_hook_idle_closes",
            "Endpoint connections closed after idling",
            m.idle_closes,
        )?;
        let per = |f: fn(&geohook_hooks::SchemeMetrics) -> u64| -> Vec<(&'static str, u64)> {
            Scheme::ALL
                .iter()
                .map(|s| (s.as_str(), f(m.scheme(*s))))
                .collect()
        };
        labelled(
            e,
            "geohook_hook_deliveries",
            "Events accepted by an endpoint, by scheme",
            "scheme",
            &per(|s| s.deliveries),
        )?;
        labelled(
            e,
            "geohook_hook_failures",
            "Failed send attempts, by scheme",
            "scheme",
            &per(|s| s.failures),
        )?;
        labelled(
            e,
            "geohook_hook_retries",
            "Events scheduled for another attempt, by scheme",
            "scheme",
            &per(|s| s.retries),
        )?;
        Ok(())
    }
}
