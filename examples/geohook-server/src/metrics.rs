//! Prometheus metrics, encoded by `prometheus-client` and served over HTTP by
//! a minimal hyper server on `--metrics-addr`.
//!
//! Counters and histograms are updated where the events happen; gauges that
//! mirror server state (file size, connections, allocator statistics) are
//! refreshed by a callback just before each scrape is encoded.

use std::convert::Infallible;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::cmd::spec::{Spec, TABLE};

mod tally;

pub(crate) use tally::Tally;
use tally::{CmdHistogram, Observed};

/// The label set of the per-command metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CmdLabel {
    /// The command's name in the command table, or `unknown` (so that peers
    /// cannot grow the label set without bound).
    cmd: &'static str,
}

/// The label set of `geohook_clients_closed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    /// Why the client was closed (a fixed word, never the peer's text).
    reason: &'static str,
}

/// The label set of refused commands.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabel {
    /// Why: `memwatch_soft` or `maxmemory`.
    reason: &'static str,
    /// The command's name in the command table.
    cmd: &'static str,
}

/// Every metric the server exports.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// `tile38_aof_size_bytes`.
    pub(crate) aof_size: Gauge,
    /// Logical write offset (bytes ever appended).
    pub(crate) aof_offset: Gauge,
    /// Completed shrinks, automatic and by hand.
    pub(crate) shrinks: Counter,
    /// Shrinks that failed.
    pub(crate) shrink_failures: Counter,
    /// Shrink durations in seconds.
    pub(crate) shrink_seconds: Histogram,
    /// Repairs made to the file at start (0 or 1 per process).
    pub(crate) repairs: Counter,
    /// Bytes removed by the repair at start.
    pub(crate) repaired_bytes: Gauge,
    /// memwatch level as a number (0 normal, rising with pressure).
    pub(crate) memwatch_level: Gauge,
    /// memwatch headroom in bytes below the limit.
    pub(crate) memwatch_headroom: Gauge,
    /// jemalloc `stats.allocated`.
    pub(crate) jemalloc_allocated: Gauge,
    /// jemalloc `stats.resident`.
    pub(crate) jemalloc_resident: Gauge,
    /// Open client connections.
    pub(crate) connected_clients: Gauge,
    /// Connections accepted since start.
    pub(crate) connections_received: Counter,
    /// Connections refused (protected mode or per-address cap).
    pub(crate) connections_rejected: Counter,
    /// Commands refused by admission, by reason and name.
    refusals: Family<RefusalLabel, Counter>,
    /// Heavy commands running now.
    pub(crate) heavy_in_use: Gauge,
    /// Heavy commands refused with BUSY, by name.
    heavy_rejected: Family<CmdLabel, Counter>,
    /// jemalloc purges asked for by memory pressure (not by GC).
    pub(crate) pressure_purges: Counter,
    /// jemalloc purges run by `autogc`.
    pub(crate) autogc_purges: Counter,
    /// Pipelined batches cut at `client-pipeline-max` commands, the rest
    /// run after other clients had their turn.
    pub(crate) pipeline_slices: Counter,
    /// Commands run, by name.
    commands: Family<CmdLabel, Counter>,
    /// Clients the server closed for exceeding a bound, by reason.
    clients_closed: Family<ReasonLabel, Counter>,
    /// Command latency in seconds, by name.
    command_seconds: Family<CmdLabel, CmdHistogram>,
    /// Objects removed by the background expiry task.
    pub(crate) expired: Counter,
    /// Number of objects in the database.
    pub(crate) objects: Gauge,
    /// Replication gauges, refreshed before each scrape.
    pub(crate) repl: ReplGauges,
    /// The counter and histogram of each command in the table, indexed by
    /// [`crate::cmd::spec::Cmd`] discriminant, created once so that
    /// recording a command does not allocate; the last slot is for names not
    /// in the table.
    per_command: Vec<(Counter, CmdHistogram)>,
    /// Commands run (INFO's `total_commands_processed`).
    pub(crate) commands_run: AtomicU64,
    /// Metrics of a part that starts after the registry was built (hooks),
    /// encoded on each scrape once [`Metrics::add_collector`] filled it.
    late: Arc<std::sync::OnceLock<Box<dyn Collector>>>,
}

/// Encodes the collector in the slot, if one was added.
#[derive(Debug)]
struct LateCollector(Arc<std::sync::OnceLock<Box<dyn Collector>>>);

impl Collector for LateCollector {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self.0.get() {
            Some(c) => c.encode(encoder),
            None => Ok(()),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Builds and registers every metric.
    pub(crate) fn new() -> Metrics {
        let mut r = Registry::default();
        let commands: Family<CmdLabel, Counter> = Family::default();
        let command_seconds: Family<CmdLabel, CmdHistogram> = Family::default();
        let pair = |cmd: &'static str| {
            let label = CmdLabel { cmd };
            (
                commands.get_or_create(&label).clone(),
                command_seconds.get_or_create(&label).clone(),
            )
        };
        let slots = TABLE.iter().map(|s| s.cmd as usize + 1).max().unwrap_or(0);
        // The last slot is `unknown`'s.
        let mut per_command = vec![pair("unknown"); slots + 1];
        for s in TABLE {
            per_command[s.cmd as usize] = pair(s.name);
        }
        let m = Metrics {
            aof_size: Gauge::default(),
            aof_offset: Gauge::default(),
            shrinks: Counter::default(),
            shrink_failures: Counter::default(),
            shrink_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            repairs: Counter::default(),
            repaired_bytes: Gauge::default(),
            memwatch_level: Gauge::default(),
            memwatch_headroom: Gauge::default(),
            jemalloc_allocated: Gauge::default(),
            jemalloc_resident: Gauge::default(),
            connected_clients: Gauge::default(),
            connections_received: Counter::default(),
            connections_rejected: Counter::default(),
            refusals: Family::default(),
            pressure_purges: Counter::default(),
            autogc_purges: Counter::default(),
            pipeline_slices: Counter::default(),
            heavy_in_use: Gauge::default(),
            heavy_rejected: Family::default(),
            commands,
            clients_closed: Family::default(),
            command_seconds,
            expired: Counter::default(),
            objects: Gauge::default(),
            repl: ReplGauges::default(),
            registry: Registry::default(),
            per_command,
            commands_run: AtomicU64::new(0),
            late: Arc::default(),
        };
        r.register_collector(Box::new(LateCollector(m.late.clone())));
        m.repl.register(&mut r);
        r.register(
            "tile38_aof_size_bytes",
            "Size of the append-only file",
            m.aof_size.clone(),
        );
        r.register(
            "geohook_aof_offset_bytes",
            "Logical write offset (bytes ever appended)",
            m.aof_offset.clone(),
        );
        r.register(
            "geohook_aof_shrinks",
            "Completed append-only file shrinks",
            m.shrinks.clone(),
        );
        r.register(
            "geohook_aof_shrink_failures",
            "Failed append-only file shrinks",
            m.shrink_failures.clone(),
        );
        r.register(
            "geohook_aof_shrink_duration_seconds",
            "Duration of shrinks",
            m.shrink_seconds.clone(),
        );
        r.register(
            "geohook_aof_repairs",
            "Repairs of the append-only file at start",
            m.repairs.clone(),
        );
        r.register(
            "geohook_aof_repaired_bytes",
            "Bytes cut from the append-only file at start",
            m.repaired_bytes.clone(),
        );
        r.register(
            "geohook_memwatch_level",
            "memwatch level: 0 normal, 1 elevated, 2 fired, -1 off",
            m.memwatch_level.clone(),
        );
        r.register(
            "geohook_memwatch_headroom_bytes",
            "memwatch headroom below the limit",
            m.memwatch_headroom.clone(),
        );
        r.register(
            "geohook_jemalloc_allocated_bytes",
            "jemalloc stats.allocated",
            m.jemalloc_allocated.clone(),
        );
        r.register(
            "geohook_jemalloc_resident_bytes",
            "jemalloc stats.resident",
            m.jemalloc_resident.clone(),
        );
        r.register(
            "tile38_connected_clients",
            "Open client connections",
            m.connected_clients.clone(),
        );
        r.register(
            "tile38_connections_received",
            "Connections accepted",
            m.connections_received.clone(),
        );
        r.register(
            "geohook_connections_rejected",
            "Connections refused",
            m.connections_rejected.clone(),
        );
        r.register("geohook_commands", "Commands run", m.commands.clone());
        r.register(
            "geohook_clients_closed",
            "Clients closed for exceeding a bound (output_stall, request_timeout, idle, pubsub_overflow)",
            m.clients_closed.clone(),
        );
        r.register(
            "geohook_refused_commands",
            "Commands refused by admission, by reason and command",
            m.refusals.clone(),
        );
        r.register(
            "geohook_heavy_in_use",
            "Heavy commands running in the bounded pool",
            m.heavy_in_use.clone(),
        );
        r.register(
            "geohook_heavy_rejected",
            "Heavy commands refused with BUSY because the pool was full",
            m.heavy_rejected.clone(),
        );
        r.register(
            "geohook_pressure_purges",
            "jemalloc purges of dirty pages asked for by memory pressure",
            m.pressure_purges.clone(),
        );
        r.register(
            "geohook_autogc_purges",
            "jemalloc purges of dirty pages run by the autogc property",
            m.autogc_purges.clone(),
        );
        r.register(
            "geohook_pipeline_slices",
            "Pipelined batches cut at client-pipeline-max commands so that other clients get a turn",
            m.pipeline_slices.clone(),
        );
        r.register(
            "geohook_cmd_duration_seconds",
            "Command latency",
            m.command_seconds.clone(),
        );
        r.register(
            "tile38_expired_keys",
            "Objects removed by expiry",
            m.expired.clone(),
        );
        r.register(
            "geohook_objects",
            "Objects in the database",
            m.objects.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// Adds the one late collector (the hooks' metrics); a second call is
    /// ignored.
    pub(crate) fn add_collector(&self, c: Box<dyn Collector>) {
        let _ = self.late.set(c);
    }

    /// Counts one client closed for exceeding a bound, by `reason`.
    pub(crate) fn client_closed(&self, reason: &'static str) {
        self.clients_closed
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Records one command run at once: its row of the command table, or
    /// `None` for a name the table does not have. Not counted in
    /// `commands_run`.
    pub(crate) fn command(&self, spec: Option<&Spec>, seconds: f64) {
        let mut o = Observed::default();
        o.observe(seconds);
        self.add(self.slot(spec), &o);
    }

    /// Records one command run by a connection in its tally, which
    /// [`Metrics::flush`] adds to the shared metrics (and to
    /// `commands_run`).
    pub(crate) fn tally(&self, tally: &mut Tally, spec: Option<&Spec>, seconds: f64) {
        tally.record(self.slot(spec), seconds, |slot, o| self.add_run(slot, o));
    }

    /// Adds what a connection's tally recorded since its last flush.
    pub(crate) fn flush(&self, tally: &mut Tally) {
        if let Some((slot, o)) = tally.take() {
            self.add_run(slot, &o);
        }
    }

    /// Adds a tally's run, counted in `commands_run` too.
    fn add_run(&self, slot: usize, o: &Observed) {
        self.add(slot, o);
        self.commands_run.fetch_add(o.count(), Ordering::Relaxed);
    }

    /// The slot of a command's metrics: its row's, or the last for `None`.
    fn slot(&self, spec: Option<&Spec>) -> usize {
        spec.map_or(self.per_command.len() - 1, |s| s.cmd as usize)
    }

    fn add(&self, slot: usize, o: &Observed) {
        let (count, latency) = &self.per_command[slot];
        count.inc_by(o.count());
        latency.add(o);
    }

    /// Counts one command refused by admission.
    pub(crate) fn refused(&self, reason: crate::admission::Pressure, spec: &Spec) {
        self.refusals
            .get_or_create(&RefusalLabel {
                reason: reason.as_str(),
                cmd: spec.name,
            })
            .inc();
    }

    /// Counts one heavy command refused with BUSY.
    pub(crate) fn heavy_rejected(&self, spec: &Spec) {
        self.heavy_rejected
            .get_or_create(&CmdLabel { cmd: spec.name })
            .inc();
    }

    /// Encodes the registry in the OpenMetrics text format.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Prometheus gauges for replication, mirrored from the replication status before each
/// scrape (the counters live in `geohook-repl`, so they are exported as
/// gauges that only grow within one process).
#[derive(Debug, Default)]
pub(crate) struct ReplGauges {
    /// 1 on a leader, 0 on a follower.
    pub(crate) leader: prometheus_client::metrics::gauge::Gauge,
    /// This node's replication offset.
    pub(crate) offset: prometheus_client::metrics::gauge::Gauge,
    /// Bytes behind the leader (a follower), or of the furthest follower
    /// (a leader).
    pub(crate) lag_bytes: prometheus_client::metrics::gauge::Gauge,
    /// How long a follower has been behind, in seconds.
    pub(crate) lag_seconds:
        prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Full syncs served (leader) or received (follower).
    pub(crate) full_syncs: prometheus_client::metrics::gauge::Gauge,
    /// Partial resyncs served (leader) or received (follower).
    pub(crate) partial_syncs: prometheus_client::metrics::gauge::Gauge,
    /// PSYNCs refused with `-BUSY` at the full-sync bound (leader).
    pub(crate) full_sync_busy: prometheus_client::metrics::gauge::Gauge,
    /// Followers streaming from this leader.
    pub(crate) connected_followers: prometheus_client::metrics::gauge::Gauge,
}

impl ReplGauges {
    /// Adds the gauges to the registry.
    pub(crate) fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "geohook_repl_leader",
            "1 when this node leads, 0 when it follows",
            self.leader.clone(),
        );
        r.register(
            "geohook_repl_offset_bytes",
            "Replication offset",
            self.offset.clone(),
        );
        r.register(
            "geohook_repl_lag_bytes",
            "Bytes a follower is behind its leader (on a leader: the furthest follower)",
            self.lag_bytes.clone(),
        );
        r.register(
            "geohook_repl_lag_seconds",
            "How long a follower has been behind its leader",
            self.lag_seconds.clone(),
        );
        r.register(
            "geohook_repl_full_syncs",
            "Full syncs served (leader) or received (follower) since start",
            self.full_syncs.clone(),
        );
        r.register(
            "geohook_repl_partial_resyncs",
            "Partial resyncs served (leader) or received (follower) since start",
            self.partial_syncs.clone(),
        );
        r.register(
            "geohook_repl_full_sync_busy",
            "PSYNCs refused with -BUSY because --max-full-syncs snapshots were being sent, since start",
            self.full_sync_busy.clone(),
        );
        r.register(
            "geohook_repl_connected_followers",
            "Followers streaming from this leader",
            self.connected_followers.clone(),
        );
    }
}

/// jemalloc's statistics through memwatch's reader (MIBs resolved once).
fn jemalloc() -> Option<&'static memwatch::JemallocReader> {
    static READER: std::sync::OnceLock<Option<memwatch::JemallocReader>> =
        std::sync::OnceLock::new();
    READER
        .get_or_init(|| memwatch::JemallocReader::new().ok())
        .as_ref()
}

/// Reads jemalloc's allocated and resident byte counts, refreshing its
/// statistics epoch first.
pub(crate) fn jemalloc_stats() -> Option<(u64, u64)> {
    let s = jemalloc()?.read().ok()?;
    Some((s.allocated, s.resident))
}

/// Sets a gauge from an unsigned value, saturating.
pub(crate) fn set_gauge(g: &Gauge<i64, AtomicI64>, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

/// Bounds on the metrics endpoint's connections, so that idle or slow
/// scrapers cannot hold the process's file descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndpointLimits {
    /// Most connections open at once; more are closed as they arrive.
    ///
    /// Default: 16.
    pub(crate) max_conns: usize,
    /// How long one connection may stay open, whatever it does.
    ///
    /// Default: 10 s.
    pub(crate) timeout: std::time::Duration,
}

impl Default for EndpointLimits {
    fn default() -> Self {
        EndpointLimits {
            max_conns: 16,
            timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// Serves `/metrics` (and `/` as a pointer to it) until `cancel` fires.
/// `refresh` runs before each scrape to update the state gauges. At most
/// `limits.max_conns` connections are open at once, each for at most
/// `limits.timeout`; accept errors are retried with exponential back-off.
///
/// # Errors
///
/// None today; the result leaves room for fatal listener errors.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    refresh: Arc<dyn Fn() + Send + Sync>,
    cancel: CancellationToken,
    limits: EndpointLimits,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics endpoint up");
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_conns));
    let mut backoff = crate::backoff::Backoff::default();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => { backoff.succeeded(); s }
                Err(e) => {
                    let wait = backoff.failed();
                    if backoff.should_log() {
                        tracing::warn!(error = %e, retry_in = ?wait, "metrics accept failed");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = cancel.cancelled() => return Ok(()),
                    }
                    continue;
                }
            },
            () = cancel.cancelled() => return Ok(()),
        };
        // Over the cap, the connection is closed at once (dropped).
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let metrics = metrics.clone();
        let refresh = refresh.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                let refresh = refresh.clone();
                async move {
                    let resp = match req.uri().path() {
                        "/metrics" => {
                            refresh();
                            Response::builder()
                                .header(
                                    "content-type",
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                )
                                .body(Full::new(Bytes::from(metrics.encode())))
                        }
                        "/" => Response::builder().body(Full::new(Bytes::from_static(
                            b"<html><body><a href=\"/metrics\">/metrics</a></body></html>",
                        ))),
                        _ => Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"not found\n"))),
                    };
                    Ok::<_, Infallible>(resp.expect("static response parts are valid"))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
            tokio::select! {
                r = conn => if let Err(e) = r { tracing::debug!(error = %e, "metrics connection ended"); },
                () = tokio::time::sleep(limits.timeout) => {}
                () = cancel.cancelled() => {}
            }
        });
    }
}

/// Asks jemalloc to return the unused dirty pages of every arena to the
/// operating system now (the GC command).
pub(crate) fn purge_jemalloc() {
    if let Some(Err(error)) = jemalloc().map(memwatch::JemallocReader::purge) {
        tracing::warn!(%error, "jemalloc purge failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_in_the_table_has_its_own_label() {
        let m = Metrics::new();
        for s in TABLE {
            m.command(Some(s), 0.001);
        }
        m.command(None, 0.001);
        let page = m.encode();
        for s in TABLE {
            let line = format!("geohook_commands_total{{cmd=\"{}\"}} 1", s.name);
            assert!(page.contains(&line), "{line} missing");
        }
        // Only the one name outside the table was counted as unknown.
        assert!(page.contains("geohook_commands_total{cmd=\"unknown\"} 1"));
    }
}
