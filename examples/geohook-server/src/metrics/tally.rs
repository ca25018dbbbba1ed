//! Per-command counts and latencies, gathered by a connection and added to
//! the shared metrics once per pipelined batch.
//!
//! Every runtime worker records into the same counter and latency histogram
//! of a command, so with one update per command their cache lines (and the
//! histogram's lock) move between cores on every command. A connection
//! instead keeps what its commands recorded in a [`Tally`] and adds it to
//! the shared metrics before the batch's replies go out: a batch of one
//! command costs what it did, and a batch of many of the same command takes
//! the shared lock once.

use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Finite latency buckets: 10 µs times powers of 4, up to 2.6 s.
const FINITE: usize = 10;
/// The finite buckets and `+Inf`.
const BUCKETS: usize = FINITE + 1;

/// The buckets' upper bounds in seconds, the last `+Inf` (encoded as
/// prometheus-client encodes its own histograms' last bucket).
fn bounds() -> &'static [f64; BUCKETS] {
    static BOUNDS: LazyLock<[f64; BUCKETS]> = LazyLock::new(|| {
        let mut b = [f64::INFINITY; BUCKETS];
        for (slot, v) in b
            .iter_mut()
            .zip(exponential_buckets(0.00001, 4.0, FINITE as u16))
        {
            *slot = v;
        }
        b
    });
    &BOUNDS
}

/// Observations of one command: a sum, a count and a count per bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Observed {
    sum: f64,
    count: u64,
    buckets: [u64; BUCKETS],
}

impl Observed {
    pub(crate) fn observe(&mut self, seconds: f64) {
        self.sum += seconds;
        self.count += 1;
        // A NaN (never a duration) lands in `+Inf`, as prometheus-client
        // puts it.
        let i = bounds()
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(FINITE);
        self.buckets[i] += 1;
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    fn add(&mut self, o: &Observed) {
        self.sum += o.sum;
        self.count += o.count;
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
    }
}

/// A command's latency histogram, shared by every connection: the buckets
/// of prometheus-client's `Histogram` with `exponential_buckets(1e-5, 4,
/// 10)`, encoded the same way, which also takes a batch of observations
/// under one lock.
#[derive(Debug, Clone, Default)]
pub(crate) struct CmdHistogram(Arc<Mutex<Observed>>);

impl CmdHistogram {
    /// Adds a batch of observations.
    pub(crate) fn add(&self, o: &Observed) {
        self.0.lock().add(o);
    }
}

impl TypedMetric for CmdHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for CmdHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let o = *self.0.lock();
        let mut buckets = [(0.0, 0); BUCKETS];
        for ((slot, &b), n) in buckets.iter_mut().zip(bounds()).zip(o.buckets) {
            *slot = (b, n);
        }
        encoder.encode_histogram::<NoLabelSet>(o.sum, o.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// What a connection's commands recorded since its last flush: the run of
/// one command (by its slot in the metrics' per-command table), so that a
/// batch of the same command is one run and a different command flushes
/// the run before it.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    run: Option<(usize, Observed)>,
}

impl Tally {
    /// Records one command in `slot` that took `seconds`; a run of another
    /// slot is handed to `flush` first.
    pub(crate) fn record(
        &mut self,
        slot: usize,
        seconds: f64,
        flush: impl FnOnce(usize, &Observed),
    ) {
        if let Some((s, o)) = &self.run {
            if *s != slot {
                flush(*s, o);
                self.run = None;
            }
        }
        self.run
            .get_or_insert_with(|| (slot, Observed::default()))
            .1
            .observe(seconds);
    }

    /// Takes the run recorded so far, if any.
    pub(crate) fn take(&mut self) -> Option<(usize, Observed)> {
        self.run.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    fn text(r: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, r).unwrap();
        s
    }

    #[test]
    fn a_batch_encodes_as_prometheus_clients_histogram_of_the_same_observations() {
        let values = [0.0, 3e-6, 1e-5, 2e-5, 0.0009, 0.5, 2.7, 1e9];
        let theirs = Histogram::new(exponential_buckets(0.00001, 4.0, 10));
        let ours = CmdHistogram::default();
        let mut batch = Observed::default();
        for v in values {
            theirs.observe(v);
            batch.observe(v);
        }
        ours.add(&batch);
        let (mut a, mut b) = (Registry::default(), Registry::default());
        a.register("lat", "latency", theirs);
        b.register("lat", "latency", ours);
        assert_eq!(text(&a), text(&b));
    }

    #[test]
    fn a_run_of_one_command_is_flushed_only_when_another_comes() {
        let mut t = Tally::default();
        let mut flushed = Vec::new();
        for slot in [3, 3, 3, 5, 3] {
            t.record(slot, 1e-4, |s, o| flushed.push((s, o.count)));
        }
        assert_eq!(flushed, [(3, 3), (5, 1)]);
        let (slot, o) = t.take().unwrap();
        assert_eq!((slot, o.count), (3, 1));
        assert!(t.take().is_none());
    }
}
