//! hubwatch's own metrics, one struct per stage, registered once at start-up in a registry
//! that is passed around (no global statics). Names follow `hubwatch_<stage>_<name>_<unit>`;
//! a test pins the full list.

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

use crate::parse::{ParseStats, RejectReason, RepairKind};
use crate::window::QueryStats;

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn int_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

/// Parsing: what came in, what was rejected or repaired.
pub struct ParseMetrics {
    pub bodies: IntCounter,
    pub bytes: IntCounter,
    pub records: IntCounterVec,
    pub rejected: IntCounterVec,
    pub repairs: IntCounterVec,
    pub dead_letters: IntCounter,
}

/// The queries: rows absorbed, dropped by the window or the caps, series held.
pub struct QueryMetrics {
    pub rows: IntCounterVec,
    pub outside_window: IntCounterVec,
    pub late: IntCounterVec,
    pub series: IntGaugeVec,
    pub series_dropped: IntCounterVec,
    pub rows_evicted: IntCounterVec,
    pub pane_merges: IntCounterVec,
}

/// Sources: batches and acknowledgements.
pub struct SourceMetrics {
    pub events: IntCounterVec,
    pub batches_acked: IntCounterVec,
    pub batches_failed: IntCounterVec,
    pub checkpoint_commits: IntCounterVec,
    pub last_commit: GaugeVec,
}

/// Event Hubs AMQP sources, per partition (labels `source`, `partition`; errors also
/// `kind`: `disconnected`, `stolen`, `auth`, `other`). Cloned into each AMQP source, which
/// updates them itself.
#[derive(Clone)]
pub struct AmqpMetrics {
    pub events: IntCounterVec,
    pub bytes: IntCounterVec,
    pub processed_sequence_number: IntGaugeVec,
    pub last_enqueued_sequence_number: IntGaugeVec,
    pub lag_events: IntGaugeVec,
    pub lag_seconds: GaugeVec,
    pub reconnects: IntCounterVec,
    pub errors: IntCounterVec,
}

impl AmqpMetrics {
    fn new(r: &Registry) -> AmqpMetrics {
        let sp = &["source", "partition"];
        AmqpMetrics {
            events: counter_vec(
                r,
                "hubwatch_amqp_events_total",
                "Events received from Event Hubs, by partition.",
                sp,
            ),
            bytes: counter_vec(
                r,
                "hubwatch_amqp_bytes_total",
                "Body bytes received from Event Hubs, by partition.",
                sp,
            ),
            processed_sequence_number: int_gauge_vec(
                r,
                "hubwatch_amqp_processed_sequence_number",
                "Sequence number of the last event the whole pipeline acknowledged.",
                sp,
            ),
            last_enqueued_sequence_number: int_gauge_vec(
                r,
                "hubwatch_amqp_last_enqueued_sequence_number",
                "Sequence number of the last event enqueued in the partition (polled, or received).",
                sp,
            ),
            lag_events: int_gauge_vec(
                r,
                "hubwatch_amqp_lag_events",
                "Events enqueued in the partition and not yet acknowledged.",
                sp,
            ),
            lag_seconds: gauge_vec(
                r,
                "hubwatch_amqp_lag_seconds",
                "Age of the last acknowledged event while events wait behind it (0 when caught up).",
                sp,
            ),
            reconnects: counter_vec(
                r,
                "hubwatch_amqp_reconnects_total",
                "Receiver reopens after an error, by partition.",
                sp,
            ),
            errors: counter_vec(
                r,
                "hubwatch_amqp_errors_total",
                "Receive errors, by partition and kind (disconnected, stolen, auth, other).",
                &["source", "partition", "kind"],
            ),
        }
    }
}

/// Kafka sources (labels `source`, and per partition `topic`, `partition`). Cloned into
/// each Kafka source, which updates them itself; a partition's series are removed when the
/// partition is revoked, so each replica shows only what it owns.
#[derive(Clone)]
pub struct KafkaMetrics {
    pub events: IntCounterVec,
    pub bytes: IntCounterVec,
    pub position: IntGaugeVec,
    pub committed_offset: IntGaugeVec,
    pub high_watermark: IntGaugeVec,
    pub lag_events: IntGaugeVec,
    pub lag_seconds: GaugeVec,
    pub assigned_partitions: IntGaugeVec,
    pub rebalances: IntCounterVec,
    pub commit_failures: IntCounterVec,
    pub errors: IntCounterVec,
}

impl KafkaMetrics {
    fn new(r: &Registry) -> KafkaMetrics {
        let stp = &["source", "topic", "partition"];
        KafkaMetrics {
            events: counter_vec(
                r,
                "hubwatch_kafka_events_total",
                "Events (Kafka messages) received, by topic and partition.",
                stp,
            ),
            bytes: counter_vec(
                r,
                "hubwatch_kafka_bytes_total",
                "Body bytes received, by topic and partition.",
                stp,
            ),
            position: int_gauge_vec(
                r,
                "hubwatch_kafka_position",
                "Offset after the last event handed to the pipeline (the next to read).",
                stp,
            ),
            committed_offset: int_gauge_vec(
                r,
                "hubwatch_kafka_committed_offset",
                "Offset committed to the group: every event before it was acknowledged by the whole pipeline.",
                stp,
            ),
            high_watermark: int_gauge_vec(
                r,
                "hubwatch_kafka_high_watermark",
                "Offset after the last event in the partition (from the client's statistics).",
                stp,
            ),
            lag_events: int_gauge_vec(
                r,
                "hubwatch_kafka_lag_events",
                "Events in the partition not yet handed to the pipeline (high watermark - position).",
                stp,
            ),
            lag_seconds: gauge_vec(
                r,
                "hubwatch_kafka_lag_seconds",
                "Age of the last event handed to the pipeline while events wait behind it (0 when caught up).",
                stp,
            ),
            assigned_partitions: int_gauge_vec(
                r,
                "hubwatch_kafka_assigned_partitions",
                "Partitions this replica owns in its consumer group.",
                &["source"],
            ),
            rebalances: counter_vec(
                r,
                "hubwatch_kafka_rebalances_total",
                "Consumer-group rebalances seen, by kind (assign, revoke, lost).",
                &["source", "kind"],
            ),
            commit_failures: counter_vec(
                r,
                "hubwatch_kafka_commit_failures_total",
                "Offset commits the group coordinator refused or that failed.",
                &["source"],
            ),
            errors: counter_vec(
                r,
                "hubwatch_kafka_errors_total",
                "Client errors, by kind (transport, auth, fatal, other).",
                &["source", "kind"],
            ),
        }
    }
}

/// Durable window state: snapshots written and restored.
pub struct StateMetrics {
    pub partitions: IntGauge,
    pub snapshots: IntCounter,
    pub snapshot_failures: IntCounter,
    pub snapshot_bytes: IntGauge,
    pub snapshot_seconds: Gauge,
    pub last_snapshot: Gauge,
    pub restored_partitions: IntCounter,
    pub restore_seconds: Gauge,
    pub duplicates: IntCounter,
    pub started_empty: IntCounterVec,
}

impl StateMetrics {
    fn new(r: &Registry) -> StateMetrics {
        StateMetrics {
            partitions: {
                let g = IntGauge::new(
                    "hubwatch_state_partitions",
                    "Source partitions whose window state this process holds.",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            },
            snapshots: counter(
                r,
                "hubwatch_state_snapshots_total",
                "Partition snapshots stored (a position with the window state that absorbed it).",
            ),
            snapshot_failures: counter(
                r,
                "hubwatch_state_snapshot_failures_total",
                "Snapshot rounds the store failed; positions wait until the next round succeeds.",
            ),
            snapshot_bytes: {
                let g = IntGauge::new(
                    "hubwatch_state_snapshot_bytes",
                    "Bytes stored by the last snapshot round (every partition that changed).",
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            },
            snapshot_seconds: gauge(
                r,
                "hubwatch_state_snapshot_seconds",
                "Duration of the last snapshot round: encoding (which holds the engine) and storing.",
            ),
            last_snapshot: gauge(
                r,
                "hubwatch_state_last_snapshot_timestamp_seconds",
                "When the last snapshot round was stored (Unix seconds).",
            ),
            restored_partitions: counter(
                r,
                "hubwatch_state_restored_partitions_total",
                "Partition snapshots restored.",
            ),
            restore_seconds: gauge(
                r,
                "hubwatch_state_restore_seconds",
                "Duration of the last restore (reading and decoding the snapshots).",
            ),
            duplicates: counter(
                r,
                "hubwatch_state_duplicate_events_total",
                "Events re-read after a restart that the restored state had already absorbed (skipped).",
            ),
            started_empty: counter_vec(
                r,
                "hubwatch_state_queries_started_empty_total",
                "Restored partitions with no state for a query (added or changed since the snapshot): it counts from the snapshot's position on.",
                &["query"],
            ),
        }
    }
}

/// Partition ownership among replicas (an AMQP source with a blob checkpoint store).
#[derive(Clone)]
pub struct OwnershipMetrics {
    pub partitions: IntGaugeVec,
    pub replicas: IntGaugeVec,
    pub changes: IntCounterVec,
    pub acquired: GaugeVec,
    pub failures: IntCounterVec,
}

impl OwnershipMetrics {
    fn new(r: &Registry) -> OwnershipMetrics {
        OwnershipMetrics {
            partitions: int_gauge_vec(
                r,
                "hubwatch_ownership_partitions",
                "Partitions this replica owns and reads.",
                &["source"],
            ),
            replicas: int_gauge_vec(
                r,
                "hubwatch_ownership_replicas",
                "Replicas with live claims on the event hub, this one included (at the last cycle).",
                &["source"],
            ),
            changes: counter_vec(
                r,
                "hubwatch_ownership_changes_total",
                "Ownership changes of this replica: claimed (free or expired), stolen (from an over-loaded replica), lost (taken by another), relinquished (at shutdown).",
                &["source", "change"],
            ),
            acquired: gauge_vec(
                r,
                "hubwatch_ownership_acquired_timestamp_seconds",
                "When this replica took each partition it owns (Unix seconds); ownership age is time() minus it.",
                &["source", "partition"],
            ),
            failures: counter_vec(
                r,
                "hubwatch_ownership_cycle_failures_total",
                "Ownership cycles (renew, list, claim) the store failed; claims stand until they expire.",
                &["source"],
            ),
        }
    }
}

/// Forwarding: rows routed, what the sinks took, and what their senders delivered.
#[derive(Clone)]
pub struct ForwardMetrics {
    pub rows: IntCounterVec,
    pub lines: IntCounterVec,
    pub failures: IntCounterVec,
    pub buffered: IntGaugeVec,
    pub sent: IntCounterVec,
    pub sent_bytes: IntCounterVec,
    pub requests: IntCounterVec,
    pub retries: IntCounterVec,
    pub delivery_failures: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub dropped: IntCounterVec,
    pub oldest_unacked: GaugeVec,
    pub request_seconds: HistogramVec,
}

/// One sink's series, resolved once (its sender updates them per delivery).
#[derive(Clone)]
pub struct SinkMetrics {
    pub sent: IntCounter,
    pub sent_bytes: IntCounter,
    pub requests: IntCounter,
    pub retries: IntCounter,
    pub oldest_unacked: Gauge,
    pub buffered: IntGauge,
    pub request_seconds: prometheus::Histogram,
    failures: IntCounterVec,
    dead_letters: IntCounterVec,
    dropped: IntCounterVec,
    sink: String,
}

impl SinkMetrics {
    pub fn of(m: &ForwardMetrics, sink: &str) -> SinkMetrics {
        let one = |v: &IntCounterVec| v.with_label_values(&[sink]);
        SinkMetrics {
            sent: one(&m.sent),
            sent_bytes: one(&m.sent_bytes),
            requests: one(&m.requests),
            retries: one(&m.retries),
            oldest_unacked: m.oldest_unacked.with_label_values(&[sink]),
            buffered: m.buffered.with_label_values(&[sink]),
            request_seconds: m.request_seconds.with_label_values(&[sink]),
            failures: m.delivery_failures.clone(),
            dead_letters: m.dead_letters.clone(),
            dropped: m.dropped.clone(),
            sink: sink.to_string(),
        }
    }

    /// A delivery attempt failed as a whole (`kind`: connect, timeout, status_503, …).
    pub fn failed(&self, kind: &str) {
        self.failures.with_label_values(&[&self.sink, kind]).inc();
    }

    /// The receiver refused a message for good; it went to the dead-letter file.
    pub fn dead_lettered(&self, reason: &str) {
        self.dead_letters
            .with_label_values(&[&self.sink, reason])
            .inc();
    }

    /// A message was dropped before the buffer (`when_full = "drop_newest"`).
    pub fn dropped(&self, reason: &str) {
        self.dropped.with_label_values(&[&self.sink, reason]).inc();
    }
}

impl ForwardMetrics {
    fn new(r: &Registry) -> ForwardMetrics {
        ForwardMetrics {
            rows: counter_vec(
                r,
                "hubwatch_forward_rows_total",
                "Rows a route selected and handed to its sinks.",
                &["route"],
            ),
            lines: counter_vec(
                r,
                "hubwatch_forward_sink_lines_total",
                "Lines a sink took and made durable.",
                &["sink"],
            ),
            failures: counter_vec(
                r,
                "hubwatch_forward_sink_failures_total",
                "Writes or flushes a sink failed (the batch is not acknowledged).",
                &["sink"],
            ),
            buffered: int_gauge_vec(
                r,
                "hubwatch_forward_sink_buffer_bytes",
                "Bytes in a sink's disk buffer not yet delivered (and their segments' rest).",
                &["sink"],
            ),
            sent: counter_vec(
                r,
                "hubwatch_forward_sink_sent_total",
                "Messages a sink's receiver acknowledged.",
                &["sink"],
            ),
            sent_bytes: counter_vec(
                r,
                "hubwatch_forward_sink_sent_bytes_total",
                "Bytes of the messages a sink's receiver acknowledged (before compression).",
                &["sink"],
            ),
            requests: counter_vec(
                r,
                "hubwatch_forward_sink_requests_total",
                "Deliveries a sink attempted (one HTTP request, or one write of a batch).",
                &["sink"],
            ),
            retries: counter_vec(
                r,
                "hubwatch_forward_sink_retries_total",
                "Deliveries attempted again after a transient failure (of the whole batch or of some messages).",
                &["sink"],
            ),
            delivery_failures: counter_vec(
                r,
                "hubwatch_forward_sink_delivery_failures_total",
                "Deliveries that failed as a whole, by kind (connect, timeout, status_429, status_503, ...); the messages stay buffered and are tried again.",
                &["sink", "kind"],
            ),
            dead_letters: counter_vec(
                r,
                "hubwatch_forward_sink_dead_letters_total",
                "Messages a sink's receiver refused for good, written to the sink's dead-letter file, by reason.",
                &["sink", "reason"],
            ),
            dropped: counter_vec(
                r,
                "hubwatch_forward_sink_dropped_total",
                "Messages dropped before a sink's buffer (when_full = \"drop_newest\"), by reason.",
                &["sink", "reason"],
            ),
            oldest_unacked: gauge_vec(
                r,
                "hubwatch_forward_sink_oldest_unacked_age_seconds",
                "Age of the oldest message in a sink's buffer that its receiver has not acknowledged (0 when none waits).",
                &["sink"],
            ),
            request_seconds: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "hubwatch_forward_sink_request_duration_seconds",
                        "Time a sink's delivery took, from sending to the receiver's answer.",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ]),
                    &["sink"],
                )
                .expect("valid metric");
                r.register(Box::new(h.clone())).expect("registered once");
                h
            },
        }
    }
}

/// Global results: copies of the partitions other replicas own.
#[derive(Clone)]
pub struct GlobalMetrics {
    pub peer_partitions: IntGauge,
    pub peer_bytes: IntGauge,
    pub refreshes: IntCounter,
    pub refresh_failures: IntCounter,
    pub last_refresh: Gauge,
    pub peer_age: Gauge,
}

impl GlobalMetrics {
    fn new(r: &Registry) -> GlobalMetrics {
        let int_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("registered once");
            g
        };
        GlobalMetrics {
            peer_partitions: int_gauge(
                "hubwatch_global_peer_partitions",
                "Partitions other replicas own whose state this replica holds a copy of, for global results.",
            ),
            peer_bytes: int_gauge(
                "hubwatch_global_peer_snapshot_bytes",
                "Bytes of the snapshots those copies were decoded from (their memory grows with them).",
            ),
            refreshes: counter(
                r,
                "hubwatch_global_refreshes_total",
                "Refreshes of the copies (a listing of the snapshots, and a download of each changed one).",
            ),
            refresh_failures: counter(
                r,
                "hubwatch_global_refresh_failures_total",
                "Refreshes that failed; the copies stay as they were until the next one.",
            ),
            last_refresh: gauge(
                r,
                "hubwatch_global_last_refresh_timestamp_seconds",
                "When the copies were last refreshed (Unix seconds).",
            ),
            peer_age: gauge(
                r,
                "hubwatch_global_peer_snapshot_age_seconds",
                "At the last refresh, the age of the oldest snapshot a copy comes from: a bound on how far global results lag the other replicas, for partitions that are receiving events.",
            ),
        }
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub parse: ParseMetrics,
    pub query: QueryMetrics,
    pub source: SourceMetrics,
    pub amqp: AmqpMetrics,
    pub kafka: KafkaMetrics,
    pub state: StateMetrics,
    pub ownership: OwnershipMetrics,
    pub global: GlobalMetrics,
    pub forward: ForwardMetrics,
    pub clock: Gauge,
    pub watermark: Gauge,
    /// Records that did not move the clock when they arrived, by `reason`
    /// (`ahead_of_arrival`, `ahead_of_clock`: `pipeline/engine/clock.rs`, which
    /// pre-registers both).
    pub future_records: IntCounterVec,
    pub up: IntGauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let parse = ParseMetrics {
            bodies: counter(
                &r,
                "hubwatch_parse_bodies_total",
                "Bodies (events, file lines) read.",
            ),
            bytes: counter(&r, "hubwatch_parse_bytes_total", "Bytes of bodies read."),
            records: counter_vec(
                &r,
                "hubwatch_parse_records_total",
                "Records accepted, by Log Analytics table.",
                &["table"],
            ),
            rejected: counter_vec(
                &r,
                "hubwatch_parse_rejected_total",
                "Bodies and records rejected, by reason.",
                &["reason"],
            ),
            repairs: counter_vec(
                &r,
                "hubwatch_parse_repairs_total",
                "Quirks of real data repaired, by kind.",
                &["kind"],
            ),
            dead_letters: counter(
                &r,
                "hubwatch_parse_dead_letters_total",
                "Rejected bodies and records written to the dead-letter file.",
            ),
        };
        for reason in RejectReason::ALL {
            parse.rejected.with_label_values(&[reason.as_str()]);
        }
        for kind in RepairKind::ALL {
            parse.repairs.with_label_values(&[kind.as_str()]);
        }
        let query = QueryMetrics {
            rows: counter_vec(
                &r,
                "hubwatch_query_rows_total",
                "Rows that passed a query's filters and were absorbed.",
                &["query"],
            ),
            outside_window: counter_vec(
                &r,
                "hubwatch_query_outside_window_total",
                "Rows older than a query's sliding window when they arrived.",
                &["query"],
            ),
            late: counter_vec(
                &r,
                "hubwatch_query_late_total",
                "Rows for a tumbling bin already closed by the watermark.",
                &["query"],
            ),
            series: int_gauge_vec(
                &r,
                "hubwatch_query_series",
                "Series (or retained rows) a query holds.",
                &["query"],
            ),
            series_dropped: counter_vec(
                &r,
                "hubwatch_query_series_dropped_total",
                "Rows dropped because their series would exceed the query's series cap.",
                &["query"],
            ),
            rows_evicted: counter_vec(
                &r,
                "hubwatch_query_rows_evicted_total",
                "Retained rows pushed out by newer ones (max_rows or take).",
                &["query"],
            ),
            pane_merges: counter_vec(
                &r,
                "hubwatch_query_pane_merges_total",
                "Times a series' sliding-window panes were coarsened to stay within max_panes.",
                &["query"],
            ),
        };
        let source = SourceMetrics {
            events: counter_vec(
                &r,
                "hubwatch_source_events_total",
                "Events read, by source.",
                &["source"],
            ),
            batches_acked: counter_vec(
                &r,
                "hubwatch_source_batches_acked_total",
                "Batches acknowledged by every consumer.",
                &["source"],
            ),
            batches_failed: counter_vec(
                &r,
                "hubwatch_source_batches_failed_total",
                "Batches a consumer could not deliver (positions not committed past them).",
                &["source"],
            ),
            checkpoint_commits: counter_vec(
                &r,
                "hubwatch_source_checkpoint_commits_total",
                "Checkpoint writes, by source.",
                &["source"],
            ),
            last_commit: gauge_vec(
                &r,
                "hubwatch_source_last_commit_timestamp_seconds",
                "When the source last committed positions (Unix seconds; time() minus it is the checkpoint age).",
                &["source"],
            ),
        };
        // The standard process_* metrics, read at scrape time.
        r.register(Box::new(super::process::ProcessCollector::new()))
            .expect("registered once");
        let amqp = AmqpMetrics::new(&r);
        let kafka = KafkaMetrics::new(&r);
        let state = StateMetrics::new(&r);
        Metrics {
            ownership: OwnershipMetrics::new(&r),
            global: GlobalMetrics::new(&r),
            forward: ForwardMetrics::new(&r),
            state,
            parse,
            query,
            source,
            amqp,
            kafka,
            clock: gauge(
                &r,
                "hubwatch_event_time_clock_seconds",
                "The event-time clock: the largest record time seen (Unix seconds).",
            ),
            watermark: gauge(
                &r,
                "hubwatch_event_time_watermark_seconds",
                "The watermark: clock minus allowed lateness (Unix seconds).",
            ),
            future_records: counter_vec(
                &r,
                "hubwatch_event_time_future_records_total",
                "Records dated more than limits.max_future ahead that did not move the clock, by reason: ahead_of_arrival (after their event's enqueued time: kept out of the windows), ahead_of_clock (ahead of the clock: held until it gets there).",
                &["reason"],
            ),
            up: {
                let g =
                    IntGauge::new("hubwatch_up", "1 while hubwatch runs.").expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                g.set(1);
                g
            },
            registry: r,
        }
    }

    /// Adds a batch's parse counts.
    pub fn add_parse(&self, s: &ParseStats, table_names: &[std::sync::Arc<str>]) {
        self.parse.bodies.inc_by(s.bodies);
        self.parse.bytes.inc_by(s.bytes);
        for (i, n) in s.records.iter().enumerate() {
            if *n > 0 {
                self.parse
                    .records
                    .with_label_values(&[&table_names[i]])
                    .inc_by(*n);
            }
        }
        if s.unknown_records > 0 {
            self.parse
                .records
                .with_label_values(&["(unknown category)"])
                .inc_by(s.unknown_records);
        }
        for r in RejectReason::ALL {
            let n = s.rejected(r);
            if n > 0 {
                self.parse
                    .rejected
                    .with_label_values(&[r.as_str()])
                    .inc_by(n);
            }
        }
        for k in RepairKind::ALL {
            let n = s.repaired(k);
            if n > 0 {
                self.parse
                    .repairs
                    .with_label_values(&[k.as_str()])
                    .inc_by(n);
            }
        }
    }

    /// Adds what a query counted since `before`.
    /// Adds what a query counted since the last call, and sets the series it holds (summed
    /// over partitions).
    pub fn add_query(&self, name: &str, delta: &QueryStats, series: usize) {
        let l = &[name];
        let q = &self.query;
        for (counter, n) in [
            (&q.rows, delta.matched),
            (&q.outside_window, delta.outside_window),
            (&q.late, delta.late),
            (&q.series_dropped, delta.series_dropped),
            (&q.rows_evicted, delta.rows_evicted),
            (&q.pane_merges, delta.pane_merges),
        ] {
            if n > 0 {
                counter.with_label_values(l).inc_by(n);
            }
        }
        self.query.series.with_label_values(l).set(series as i64);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metric_names_are_pinned() {
        let m = Metrics::new();
        m.query.rows.with_label_values(&["q"]);
        m.query.outside_window.with_label_values(&["q"]);
        m.query.late.with_label_values(&["q"]);
        m.query.series.with_label_values(&["q"]);
        m.query.series_dropped.with_label_values(&["q"]);
        m.query.rows_evicted.with_label_values(&["q"]);
        m.query.pane_merges.with_label_values(&["q"]);
        m.parse.records.with_label_values(&["T"]);
        for v in [
            &m.source.events,
            &m.source.batches_acked,
            &m.source.batches_failed,
            &m.source.checkpoint_commits,
        ] {
            v.with_label_values(&["s"]);
        }
        m.source.last_commit.with_label_values(&["s"]);
        let a = &m.amqp;
        for v in [&a.events, &a.bytes, &a.reconnects] {
            v.with_label_values(&["s", "0"]);
        }
        for v in [
            &a.processed_sequence_number,
            &a.last_enqueued_sequence_number,
            &a.lag_events,
        ] {
            v.with_label_values(&["s", "0"]);
        }
        a.lag_seconds.with_label_values(&["s", "0"]);
        a.errors.with_label_values(&["s", "0", "auth"]);
        let k = &m.kafka;
        for v in [&k.events, &k.bytes] {
            v.with_label_values(&["s", "t", "0"]);
        }
        for v in [
            &k.position,
            &k.committed_offset,
            &k.high_watermark,
            &k.lag_events,
        ] {
            v.with_label_values(&["s", "t", "0"]);
        }
        k.lag_seconds.with_label_values(&["s", "t", "0"]);
        k.assigned_partitions.with_label_values(&["s"]);
        k.rebalances.with_label_values(&["s", "assign"]);
        k.commit_failures.with_label_values(&["s"]);
        k.errors.with_label_values(&["s", "transport"]);
        m.state.started_empty.with_label_values(&["q"]);
        m.forward.rows.with_label_values(&["r"]);
        for v in [&m.forward.lines, &m.forward.failures] {
            v.with_label_values(&["s"]);
        }
        m.forward.buffered.with_label_values(&["s"]);
        let sink = SinkMetrics::of(&m.forward, "s");
        sink.failed("connect");
        sink.dead_lettered("status_400");
        sink.dropped("buffer_full");
        let o = &m.ownership;
        for v in [&o.partitions, &o.replicas] {
            v.with_label_values(&["s"]);
        }
        o.changes.with_label_values(&["s", "claimed"]);
        o.acquired.with_label_values(&["s", "0"]);
        o.failures.with_label_values(&["s"]);
        m.future_records.with_label_values(&["ahead_of_clock"]);
        let mut names: Vec<String> = m
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        names.sort();
        // Where /proc is there: the standard process metrics (telemetry/process.rs).
        let process: &[&str] = if cfg!(target_os = "linux") {
            &[
                "process_cpu_seconds_total",
                "process_max_fds",
                "process_open_fds",
                "process_resident_memory_bytes",
                "process_start_time_seconds",
                "process_virtual_memory_bytes",
            ]
        } else {
            &[]
        };
        assert_eq!(
            names,
            [
                "hubwatch_amqp_bytes_total",
                "hubwatch_amqp_errors_total",
                "hubwatch_amqp_events_total",
                "hubwatch_amqp_lag_events",
                "hubwatch_amqp_lag_seconds",
                "hubwatch_amqp_last_enqueued_sequence_number",
                "hubwatch_amqp_processed_sequence_number",
                "hubwatch_amqp_reconnects_total",
                "hubwatch_event_time_clock_seconds",
                "hubwatch_event_time_future_records_total",
                "hubwatch_event_time_watermark_seconds",
                "hubwatch_forward_rows_total",
                "hubwatch_forward_sink_buffer_bytes",
                "hubwatch_forward_sink_dead_letters_total",
                "hubwatch_forward_sink_delivery_failures_total",
                "hubwatch_forward_sink_dropped_total",
                "hubwatch_forward_sink_failures_total",
                "hubwatch_forward_sink_lines_total",
                "hubwatch_forward_sink_oldest_unacked_age_seconds",
                "hubwatch_forward_sink_request_duration_seconds",
                "hubwatch_forward_sink_requests_total",
                "hubwatch_forward_sink_retries_total",
                "hubwatch_forward_sink_sent_bytes_total",
                "hubwatch_forward_sink_sent_total",
                "hubwatch_global_last_refresh_timestamp_seconds",
                "hubwatch_global_peer_partitions",
                "hubwatch_global_peer_snapshot_age_seconds",
                "hubwatch_global_peer_snapshot_bytes",
                "hubwatch_global_refresh_failures_total",
                "hubwatch_global_refreshes_total",
                "hubwatch_kafka_assigned_partitions",
                "hubwatch_kafka_bytes_total",
                "hubwatch_kafka_commit_failures_total",
                "hubwatch_kafka_committed_offset",
                "hubwatch_kafka_errors_total",
                "hubwatch_kafka_events_total",
                "hubwatch_kafka_high_watermark",
                "hubwatch_kafka_lag_events",
                "hubwatch_kafka_lag_seconds",
                "hubwatch_kafka_position",
                "hubwatch_kafka_rebalances_total",
                "hubwatch_ownership_acquired_timestamp_seconds",
                "hubwatch_ownership_changes_total",
                "hubwatch_ownership_cycle_failures_total",
                "hubwatch_ownership_partitions",
                "hubwatch_ownership_replicas",
                "hubwatch_parse_bodies_total",
                "hubwatch_parse_bytes_total",
                "hubwatch_parse_dead_letters_total",
                "hubwatch_parse_records_total",
                "hubwatch_parse_rejected_total",
                "hubwatch_parse_repairs_total",
                "hubwatch_query_late_total",
                "hubwatch_query_outside_window_total",
                "hubwatch_query_pane_merges_total",
                "hubwatch_query_rows_evicted_total",
                "hubwatch_query_rows_total",
                "hubwatch_query_series",
                "hubwatch_query_series_dropped_total",
                "hubwatch_source_batches_acked_total",
                "hubwatch_source_batches_failed_total",
                "hubwatch_source_checkpoint_commits_total",
                "hubwatch_source_events_total",
                "hubwatch_source_last_commit_timestamp_seconds",
                "hubwatch_state_duplicate_events_total",
                "hubwatch_state_last_snapshot_timestamp_seconds",
                "hubwatch_state_partitions",
                "hubwatch_state_queries_started_empty_total",
                "hubwatch_state_restore_seconds",
                "hubwatch_state_restored_partitions_total",
                "hubwatch_state_snapshot_bytes",
                "hubwatch_state_snapshot_failures_total",
                "hubwatch_state_snapshot_seconds",
                "hubwatch_state_snapshots_total",
                "hubwatch_up",
            ]
            .iter()
            .chain(process)
            .copied()
            .collect::<Vec<&str>>()
        );
    }
}
