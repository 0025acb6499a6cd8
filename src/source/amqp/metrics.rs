//! Per-partition statistics of an AMQP source, readable while it runs, and the Prometheus
//! series that mirror them.
//!
//! Every write goes through one method here that bumps the atomic *and* the Prometheus
//! child, so the two never drift. Atomics because three kinds of task write (partition
//! receivers: received counts; the source's task: acknowledged positions; the lag poller:
//! last enqueued numbers) and anyone may read; each value is independent, so `Relaxed`. The
//! partition map is behind a `std` mutex touched only when a partition is added and on a
//! snapshot, never on the event path (each task holds its own `Arc<PartitionMetrics>`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use prometheus::{Gauge, IntCounter, IntGauge};

use super::client::FailureKind;
use super::position::ticks;
use crate::telemetry::metrics::AmqpMetrics;
use crate::time::TICKS_PER_SECOND;

/// "Not known yet" in the `AtomicI64` fields.
const NONE: i64 = i64::MIN;

/// What a partition's receiver is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionState {
    Starting = 0,
    Receiving = 1,
    Reconnecting = 2,
    /// Another receiver took the partition over (owner level); this source left it.
    Stolen = 3,
    Stopped = 4,
}

impl PartitionState {
    fn from_u8(v: u8) -> PartitionState {
        match v {
            1 => PartitionState::Receiving,
            2 => PartitionState::Reconnecting,
            3 => PartitionState::Stolen,
            4 => PartitionState::Stopped,
            _ => PartitionState::Starting,
        }
    }
}

/// Errors by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    pub disconnected: u64,
    pub stolen: u64,
    pub auth: u64,
    pub other: u64,
}

/// A snapshot of one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionStats {
    pub partition: String,
    pub state: PartitionState,
    /// Events and body bytes received (handed to the pipeline).
    pub events: u64,
    pub bytes: u64,
    /// The last sequence number received.
    pub received_sequence_number: Option<i64>,
    /// The last sequence number the whole pipeline acknowledged.
    pub processed_sequence_number: Option<i64>,
    /// The partition's last enqueued sequence number (polled, or received if later).
    pub last_enqueued_sequence_number: Option<i64>,
    /// Enqueued and not yet acknowledged.
    pub lag_events: Option<i64>,
    /// How old the last acknowledged event is, while events wait behind it; 0 when caught
    /// up (an idle partition is not late).
    pub lag_seconds: Option<f64>,
    pub reconnects: u64,
    pub errors: ErrorCounts,
}

struct Prom {
    events: IntCounter,
    bytes: IntCounter,
    processed: IntGauge,
    last_enqueued: IntGauge,
    lag_events: IntGauge,
    lag_seconds: Gauge,
    reconnects: IntCounter,
    errors: [IntCounter; 4],
}

/// One partition's counters.
pub struct PartitionMetrics {
    partition: String,
    state: AtomicU8,
    events: AtomicU64,
    bytes: AtomicU64,
    received: AtomicI64,
    processed: AtomicI64,
    processed_enqueued: AtomicI64,
    /// The last sequence number before where this source started reading; stands in for
    /// "processed" until the first acknowledgement, so lag is known from the start.
    baseline: AtomicI64,
    /// Polled from the partition's properties.
    last_enqueued: AtomicI64,
    begin: AtomicI64,
    reconnects: AtomicU64,
    errors: [AtomicU64; 4],
    prom: Option<Prom>,
}

const KINDS: [&str; 4] = ["disconnected", "stolen", "auth", "other"];

fn kind_index(kind: FailureKind) -> usize {
    KINDS.iter().position(|k| *k == kind.label()).unwrap_or(3)
}

fn opt(v: i64) -> Option<i64> {
    (v != NONE).then_some(v)
}

impl PartitionMetrics {
    fn new(source: &str, partition: &str, prom: Option<&AmqpMetrics>) -> PartitionMetrics {
        let prom = prom.map(|m| {
            let l = &[source, partition];
            Prom {
                events: m.events.with_label_values(l),
                bytes: m.bytes.with_label_values(l),
                processed: m.processed_sequence_number.with_label_values(l),
                last_enqueued: m.last_enqueued_sequence_number.with_label_values(l),
                lag_events: m.lag_events.with_label_values(l),
                lag_seconds: m.lag_seconds.with_label_values(l),
                reconnects: m.reconnects.with_label_values(l),
                errors: KINDS.map(|k| m.errors.with_label_values(&[source, partition, k])),
            }
        });
        PartitionMetrics {
            partition: partition.to_string(),
            state: AtomicU8::new(PartitionState::Starting as u8),
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            received: AtomicI64::new(NONE),
            processed: AtomicI64::new(NONE),
            processed_enqueued: AtomicI64::new(NONE),
            baseline: AtomicI64::new(NONE),
            last_enqueued: AtomicI64::new(NONE),
            begin: AtomicI64::new(NONE),
            reconnects: AtomicU64::new(0),
            errors: Default::default(),
            prom,
        }
    }

    /// Events received so far.
    pub fn events(&self) -> u64 {
        self.events.load(Relaxed)
    }

    pub fn set_state(&self, s: PartitionState) {
        self.state.store(s as u8, Relaxed);
    }

    /// A batch handed to the pipeline: its size and its last sequence number.
    pub fn received(&self, events: u64, bytes: u64, last_sequence_number: i64) {
        self.events.fetch_add(events, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
        self.received.fetch_max(last_sequence_number, Relaxed);
        if let Some(p) = &self.prom {
            p.events.inc_by(events);
            p.bytes.inc_by(bytes);
        }
    }

    /// What the pipeline acknowledged, with the enqueued time of that event (ticks).
    pub fn processed(&self, sequence_number: i64, enqueued: Option<i64>) {
        self.processed.store(sequence_number, Relaxed);
        self.processed_enqueued
            .store(enqueued.unwrap_or(NONE), Relaxed);
        if let Some(p) = &self.prom {
            p.processed.set(sequence_number);
        }
    }

    /// The last sequence number before where reading starts (lag baseline).
    pub fn baseline(&self, sequence_number: i64) {
        let _ = self
            .baseline
            .compare_exchange(NONE, sequence_number, Relaxed, Relaxed);
    }

    /// From the partition's properties.
    pub fn enqueued(&self, begin_sequence_number: i64, last_sequence_number: i64) {
        self.begin.store(begin_sequence_number, Relaxed);
        self.last_enqueued.store(last_sequence_number, Relaxed);
    }

    pub fn reconnect(&self) {
        self.reconnects.fetch_add(1, Relaxed);
        if let Some(p) = &self.prom {
            p.reconnects.inc();
        }
    }

    pub fn error(&self, kind: FailureKind) {
        let i = kind_index(kind);
        self.errors[i].fetch_add(1, Relaxed);
        if let Some(p) = &self.prom {
            p.errors[i].inc();
        }
    }

    /// The snapshot, with lags computed as of `now`.
    pub fn stats(&self, now: SystemTime) -> PartitionStats {
        let received = opt(self.received.load(Relaxed));
        let processed = opt(self.processed.load(Relaxed));
        let last_enqueued = match (opt(self.last_enqueued.load(Relaxed)), received) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let done = processed
            .or_else(|| opt(self.baseline.load(Relaxed)))
            .or_else(|| opt(self.begin.load(Relaxed)).map(|b| b - 1));
        let lag_events = match (last_enqueued, done) {
            (Some(l), Some(d)) => Some((l - d).max(0)),
            _ => None,
        };
        let lag_seconds = match (lag_events, opt(self.processed_enqueued.load(Relaxed))) {
            (Some(0), _) => Some(0.0),
            (Some(_), Some(t)) => Some((ticks(now) - t).max(0) as f64 / TICKS_PER_SECOND as f64),
            _ => None,
        };
        let e = |i: usize| self.errors[i].load(Relaxed);
        PartitionStats {
            partition: self.partition.clone(),
            state: PartitionState::from_u8(self.state.load(Relaxed)),
            events: self.events.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            received_sequence_number: received,
            processed_sequence_number: processed,
            last_enqueued_sequence_number: last_enqueued,
            lag_events,
            lag_seconds,
            reconnects: self.reconnects.load(Relaxed),
            errors: ErrorCounts {
                disconnected: e(0),
                stolen: e(1),
                auth: e(2),
                other: e(3),
            },
        }
    }

    /// Brings the Prometheus gauges up to date (called on the commit tick and after a poll).
    fn refresh(&self, now: SystemTime) {
        let Some(p) = &self.prom else { return };
        let s = self.stats(now);
        if let Some(v) = s.last_enqueued_sequence_number {
            p.last_enqueued.set(v);
        }
        if let Some(v) = s.lag_events {
            p.lag_events.set(v);
        }
        if let Some(v) = s.lag_seconds {
            p.lag_seconds.set(v);
        }
    }
}

/// The statistics of one AMQP source: one `PartitionMetrics` per partition, added as
/// partitions are discovered.
pub struct AmqpSourceMetrics {
    source: String,
    prom: Option<AmqpMetrics>,
    partitions: Mutex<BTreeMap<String, Arc<PartitionMetrics>>>,
}

impl AmqpSourceMetrics {
    pub fn new(source: &str, prom: Option<AmqpMetrics>) -> AmqpSourceMetrics {
        AmqpSourceMetrics {
            source: source.to_string(),
            prom,
            partitions: Mutex::new(BTreeMap::new()),
        }
    }

    /// The partition's counters, created on first use.
    pub(super) fn partition(&self, id: &str) -> Arc<PartitionMetrics> {
        let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(PartitionMetrics::new(&self.source, id, self.prom.as_ref()))
            })
            .clone()
    }

    /// A partition another replica owns now: its series leave with it (as a Kafka
    /// partition's do at a revoke). Kept, its lag would keep growing from the last event
    /// this replica acknowledged, as if the partition were stuck. If it comes back, its
    /// counters start again from zero, which `rate()` reads as a reset.
    pub(super) fn forget(&self, id: &str) {
        let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
        if let Some(m) = &self.prom {
            let l = &[self.source.as_str(), id];
            let _ = m.events.remove_label_values(l);
            let _ = m.bytes.remove_label_values(l);
            let _ = m.processed_sequence_number.remove_label_values(l);
            let _ = m.last_enqueued_sequence_number.remove_label_values(l);
            let _ = m.lag_events.remove_label_values(l);
            let _ = m.lag_seconds.remove_label_values(l);
            let _ = m.reconnects.remove_label_values(l);
            for k in KINDS {
                let _ = m.errors.remove_label_values(&[self.source.as_str(), id, k]);
            }
        }
    }

    /// Every partition, sorted by id, with lags as of now.
    pub fn snapshot(&self) -> Vec<PartitionStats> {
        let now = SystemTime::now();
        self.all().iter().map(|p| p.stats(now)).collect()
    }

    /// Brings every partition's Prometheus gauges up to date.
    pub fn refresh(&self) {
        let now = SystemTime::now();
        for p in self.all() {
            p.refresh(now);
        }
    }

    fn all(&self) -> Vec<Arc<PartitionMetrics>> {
        let map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lag_follows_what_was_enqueued_and_acknowledged() {
        let prom = crate::telemetry::Metrics::new().amqp.clone();
        let m = AmqpSourceMetrics::new("s", Some(prom.clone()));
        let p = m.partition("0");
        assert_eq!(m.snapshot()[0].lag_events, None, "nothing known yet");

        p.enqueued(0, 99);
        assert_eq!(m.snapshot()[0].lag_events, Some(100), "from the beginning");
        p.baseline(49);
        assert_eq!(
            m.snapshot()[0].lag_events,
            Some(50),
            "from the start position"
        );

        let t0 = SystemTime::now() - Duration::from_secs(10);
        p.received(10, 1000, 59);
        p.processed(59, Some(ticks(t0)));
        let s = &m.snapshot()[0];
        assert_eq!(s.lag_events, Some(40));
        assert!(s.lag_seconds.unwrap() >= 10.0, "{s:?}");
        assert_eq!((s.events, s.bytes), (10, 1000));

        // Received past the last poll: the received number is the better bound.
        p.received(50, 5000, 120);
        p.processed(120, Some(ticks(SystemTime::now())));
        let s = &m.snapshot()[0];
        assert_eq!(s.last_enqueued_sequence_number, Some(120));
        assert_eq!((s.lag_events, s.lag_seconds), (Some(0), Some(0.0)));

        p.error(FailureKind::Stolen);
        p.error(FailureKind::NotFound);
        p.reconnect();
        m.refresh();
        let s = &m.snapshot()[0];
        assert_eq!(s.errors.stolen, 1);
        assert_eq!(s.errors.other, 1);
        assert_eq!(s.reconnects, 1);
        assert_eq!(prom.events.with_label_values(&["s", "0"]).get(), 60);
        assert_eq!(
            prom.processed_sequence_number
                .with_label_values(&["s", "0"])
                .get(),
            120
        );
        assert_eq!(
            prom.errors.with_label_values(&["s", "0", "stolen"]).get(),
            1
        );
        assert_eq!(prom.lag_events.with_label_values(&["s", "0"]).get(), 0);
    }

    #[test]
    fn a_forgotten_partition_leaves_no_series_behind() {
        let metrics = crate::telemetry::Metrics::new();
        let m = AmqpSourceMetrics::new("s", Some(metrics.amqp.clone()));
        for id in ["0", "1"] {
            let p = m.partition(id);
            p.enqueued(0, 99);
            p.received(10, 1000, 9);
            p.processed(9, Some(ticks(SystemTime::now() - Duration::from_secs(60))));
            p.error(FailureKind::Stolen);
        }
        m.refresh();
        let series = |partition: &str| {
            metrics
                .registry
                .gather()
                .iter()
                .filter(|f| f.name().starts_with("hubwatch_amqp_"))
                .flat_map(|f| f.get_metric().iter())
                .filter(|s| {
                    s.get_label()
                        .iter()
                        .any(|l| l.name() == "partition" && l.value() == partition)
                })
                .count()
        };
        assert!(series("1") >= 8, "every series of a read partition");

        m.forget("1");
        m.refresh();
        assert_eq!(series("1"), 0, "a lost partition's lag must not linger");
        assert!(series("0") >= 8, "the partitions still read keep theirs");
        assert_eq!(m.snapshot().len(), 1);
        // Taken back later: it starts again.
        m.partition("1").received(1, 10, 100);
        assert_eq!(m.snapshot()[1].events, 1);
    }
}
