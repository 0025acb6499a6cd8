//! The synchronous core of the pipeline: bodies in, query state updated, results out. The
//! `query` command drives it directly over files; the service drives it from one task that
//! owns it (no locks: scrapes and API calls are requests to that task).
//!
//! State is held per source partition ([`PartitionState`]): each partition's rows go to its
//! own share of every query's state, and results merge the shares. The clock stays global
//! (the largest record time of any partition), as Log Analytics has one `now()`; `clock.rs`
//! decides which record times may move it, so that one from the future cannot.

use std::sync::Arc;

use crate::checkpoint::Checkpoint;
use crate::kql::plan::Plan;
use crate::parse::{Needs, ParseSink, ParseStats, Parser, ParserLimits, Reject, Row, UnknownRow};
use crate::schema::Schemas;
use crate::source::{Event, Position};
use crate::state::snapshot::{self, QueryEntry, Snapshot, SnapshotError};
use crate::telemetry::Metrics;
use crate::window::sketch::hash64;
use crate::window::{Bins, QueryLimits, QueryState, QueryStats, ResultTable};

use super::dead_letter::DeadLetter;
use crate::forward::{Origin, RouteSpec, Sink};

/// A loaded query.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    pub name: Arc<str>,
    pub description: String,
    pub kql: String,
    pub plan: Arc<Plan>,
    pub limits: QueryLimits,
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub parser: ParserLimits,
    /// How far behind the clock the watermark trails (ticks): tumbling bins close this
    /// long after their end.
    pub allowed_lateness: i64,
    /// How far ahead of its event's arrival, and of the clock, a record's time may be and
    /// still move the clock (ticks; `clock.rs`).
    pub max_future: i64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            parser: ParserLimits::default(),
            allowed_lateness: 10 * crate::time::TICKS_PER_MINUTE,
            max_future: clock::DEFAULT_MAX_FUTURE,
        }
    }
}

pub mod clock;
mod decode;
mod peers;
#[cfg(test)]
mod results_tests;

pub use clock::{Ahead, AheadCounts, DEFAULT_MAX_FUTURE};
pub use decode::{decode_partition, Decoded, Decoder};

/// One source partition's share of every query's state, and the position it reflects.
///
/// State is kept per partition (as Kafka Streams keeps it per task) so that a partition can
/// move to another replica with its state, and so that a snapshot of it always reflects
/// exactly the events up to its positions; results merge the partitions' partials.
///
/// Each query has its own position in the partition: a query added since the snapshot
/// starts without one and absorbs what the source re-reads, while the restored queries skip
/// it. Usually they are all equal.
pub struct PartitionState {
    pub source: Arc<str>,
    pub partition: Arc<str>,
    /// The last event absorbed by any query (the snapshot's position).
    pub position: Option<Checkpoint>,
    /// Per query, the last event it absorbed.
    pub positions: Vec<Option<Checkpoint>>,
    /// The smallest of `positions` (`None` if any query has none): events at or before it
    /// are duplicates for every query.
    floor: Option<i64>,
    /// The largest time a record of this partition moved the clock to (records held
    /// ahead of the clock are not counted: `clock.rs`).
    pub clock: Option<i64>,
    /// A held record's time, waiting for a second record to confirm the jump (`clock.rs`).
    pub pending: Option<i64>,
    /// One per query, in the engine's query order.
    pub queries: Vec<QueryState>,
    /// Absorbed something since the last snapshot.
    pub dirty: bool,
}

impl PartitionState {
    fn update_floor(&mut self) {
        self.floor = if self.positions.is_empty() {
            // No queries (only routes): what the partition absorbed is what it forwarded.
            self.position.as_ref().map(|p| p.sequence_number)
        } else {
            self.positions.iter().try_fold(i64::MAX, |m, p| {
                p.as_ref().map(|p| m.min(p.sequence_number))
            })
        };
    }

    /// Where a source resumes this partition so that every query gets every event after
    /// its own position: strictly after the oldest of them, or `None` when some query has
    /// none (it needs the partition from its oldest event).
    pub fn resume_after(&self) -> Option<Checkpoint> {
        let mut oldest: Option<&Checkpoint> = None;
        for p in &self.positions {
            let p = p.as_ref()?;
            if oldest.is_none_or(|o| p.sequence_number < o.sequence_number) {
                oldest = Some(p);
            }
        }
        oldest.cloned()
    }
}

/// What restoring a partition's snapshot found.
#[derive(Debug)]
pub struct Restored {
    pub source: Arc<str>,
    pub partition: Arc<str>,
    pub position: Checkpoint,
    /// Where the source resumes so that every query gets what it lacks (`None`: from the
    /// partition's oldest event).
    pub resume_after: Option<Checkpoint>,
    /// Queries the snapshot held no state for (added or changed since): they start empty
    /// and absorb whatever the source reads of this partition from now on.
    pub started_empty: Vec<Arc<str>>,
}

pub struct Engine {
    parser: Parser,
    specs: Vec<QuerySpec>,
    /// Query index → fingerprint of its KQL (what a snapshot must match to be restored).
    fingerprints: Vec<u64>,
    /// Sorted by (source, partition), so results merge in a stable order.
    parts: Vec<PartitionState>,
    /// Index into `parts` of the partition of the last event (consecutive events mostly
    /// share one).
    last_part: usize,
    /// Table id → the queries that read it: (query, input of its plan).
    by_table: Vec<Vec<(usize, usize)>>,
    clock: Option<i64>,
    lateness: i64,
    /// `limits.max_future` (`clock.rs`).
    max_future: i64,
    /// Records that did not move the clock, since the last batch and since start.
    ahead: AheadCounts,
    ahead_totals: AheadCounts,
    /// Refused records not yet logged, and when they last were (one line a minute at
    /// most: a skewed resource sends them all the time).
    refused_unlogged: u64,
    refused_logged: Option<std::time::Instant>,
    dead_letter: Option<DeadLetter>,
    metrics: Option<Arc<Metrics>>,
    table_names: Vec<Arc<str>>,
    /// A dead-letter write failed since the last batch; the batch must not be acknowledged.
    dead_letter_error: Option<std::io::Error>,
    /// Parse counts since start.
    totals: ParseStats,
    /// Query counts since start, per query.
    query_totals: Vec<QueryStats>,
    /// Events skipped because their partition's state had already absorbed them.
    duplicates: u64,
    /// Copies of partitions other replicas own (`peers.rs`), sorted like `parts`.
    peers: Vec<PartitionState>,
    /// Bumped whenever the set of partitions held changes.
    generation: u64,
    /// Routes and their sinks (`crate::forward`).
    forwarding: Forwarding,
    /// Table id → indexes of the routes that read it.
    routes_by_table: Vec<Vec<usize>>,
    /// A sink write failed since the last batch; the batch must not be acknowledged.
    forward_error: Option<std::io::Error>,
    /// Since the last batch: rows per route, lines per sink, failures per sink.
    forward_counts: ForwardCounts,
    /// Query index → indexes of the routes that send its results.
    results_routes: Vec<Vec<usize>>,
    /// Per query, the start of the newest tumbling bin whose result rows were routed
    /// ([`route_results`](Self::route_results)). Stored in every snapshot: a snapshot is
    /// stored only after the sinks synced what was routed before it, so any stored value
    /// is a bin every route has, and on restore the largest one found is where routing
    /// continues.
    routed: Vec<Option<i64>>,
}

#[derive(Default)]
struct ForwardCounts {
    rows: Vec<u64>,
    lines: Vec<u64>,
    failures: Vec<u64>,
    /// The row being formatted (reused: one allocation, not one per row).
    line: Vec<u8>,
}

/// What an engine forwards: routes, and the sinks they name (by index).
#[derive(Default)]
pub struct Forwarding {
    pub routes: Vec<RouteSpec>,
    pub sinks: Vec<Box<dyn Sink>>,
}

impl Engine {
    pub fn new(schemas: Arc<Schemas>, specs: Vec<QuerySpec>, opts: EngineOptions) -> Engine {
        Engine::with_forwarding(schemas, specs, Forwarding::default(), opts)
    }

    /// An engine that also sends the rows its routes select to their sinks.
    pub fn with_forwarding(
        schemas: Arc<Schemas>,
        specs: Vec<QuerySpec>,
        forwarding: Forwarding,
        opts: EngineOptions,
    ) -> Engine {
        let mut needs = Needs::none(&schemas);
        let mut by_table = vec![Vec::new(); schemas.tables.len()];
        for (i, spec) in specs.iter().enumerate() {
            for (at, input) in spec.plan.inputs.iter().enumerate() {
                by_table[input.table].push((i, at));
                for (col, read) in input.reads.iter().enumerate() {
                    if *read {
                        needs.add(&schemas, input.table, col);
                    }
                }
            }
        }
        let mut routes_by_table = vec![Vec::new(); schemas.tables.len()];
        let mut results_routes = vec![Vec::new(); specs.len()];
        needs.unknown |= forwarding.routes.iter().any(|r| r.unknown);
        for (i, route) in forwarding.routes.iter().enumerate() {
            if let Some(q) = route.results {
                // The query reads what it needs; the route takes its result rows.
                results_routes[q].push(i);
                continue;
            }
            for input in &route.plan.inputs {
                if !routes_by_table[input.table].contains(&i) {
                    routes_by_table[input.table].push(i);
                }
                for (col, read) in input.reads.iter().enumerate() {
                    if *read {
                        needs.add(&schemas, input.table, col);
                    }
                }
            }
        }
        let table_names = schemas.tables.iter().map(|t| t.name.clone()).collect();
        let fingerprints = specs.iter().map(|s| fingerprint(&s.kql)).collect();
        Engine {
            parser: Parser::new(schemas, &needs, opts.parser),
            query_totals: vec![QueryStats::default(); specs.len()],
            routed: vec![None; specs.len()],
            results_routes,
            specs,
            fingerprints,
            parts: Vec::new(),
            last_part: 0,
            by_table,
            clock: None,
            lateness: opts.allowed_lateness,
            max_future: opts.max_future,
            ahead: AheadCounts::default(),
            ahead_totals: AheadCounts::default(),
            refused_unlogged: 0,
            refused_logged: None,
            dead_letter: None,
            metrics: None,
            table_names,
            dead_letter_error: None,
            totals: ParseStats::default(),
            duplicates: 0,
            peers: Vec::new(),
            generation: 0,
            forward_counts: ForwardCounts {
                rows: vec![0; forwarding.routes.len()],
                lines: vec![0; forwarding.sinks.len()],
                failures: vec![0; forwarding.sinks.len()],
                line: Vec::with_capacity(4096),
            },
            forwarding,
            routes_by_table,
            forward_error: None,
        }
    }

    pub fn with_dead_letter(mut self, dl: DeadLetter) -> Engine {
        self.dead_letter = Some(dl);
        self
    }

    pub fn with_metrics(mut self, m: Arc<Metrics>) -> Engine {
        // Every reason from 0, so that increase() sees the first one.
        for why in Ahead::ALL {
            m.future_records.with_label_values(&[why.as_str()]);
        }
        self.metrics = Some(m);
        self
    }

    pub fn specs(&self) -> &[QuerySpec] {
        &self.specs
    }

    /// What decodes snapshots against this engine's queries, on another thread.
    pub fn decoder(&self) -> Decoder {
        Decoder::new(self.specs.clone(), self.fingerprints.clone())
    }

    /// The state of every partition held, sorted by (source, partition).
    pub fn partitions(&self) -> &[PartitionState] {
        &self.parts
    }

    /// Changes whenever a partition comes or goes (to republish [`held`](Self::held)).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The partitions held, as (source, partition).
    pub fn held(&self) -> std::collections::BTreeSet<(String, String)> {
        self.parts
            .iter()
            .map(|p| (p.source.to_string(), p.partition.to_string()))
            .collect()
    }

    pub fn parser(&self) -> &Parser {
        &self.parser
    }

    /// What the parser counted since start (up to the last `end_batch`).
    pub fn parse_totals(&self) -> &ParseStats {
        &self.totals
    }

    /// What each query counted since start (up to the last `end_batch`), in query order.
    pub fn query_totals(&self) -> &[QueryStats] {
        &self.query_totals
    }

    /// Series (or retained rows) each query holds now, summed over the partitions, in query
    /// order (what `hubwatch_query_series` exports).
    pub fn series_held(&self) -> Vec<usize> {
        (0..self.specs.len())
            .map(|i| self.parts.iter().map(|p| p.queries[i].series()).sum())
            .collect()
    }

    /// Events skipped since start because their partition's state already held them.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// The event-time clock: the largest record time seen, of those allowed to move it
    /// (`clock.rs`).
    pub fn clock(&self) -> Option<i64> {
        self.clock
    }

    /// Records that did not move the clock when they arrived, since start (up to the last
    /// `end_batch`), by reason.
    pub fn ahead_totals(&self) -> AheadCounts {
        self.ahead_totals
    }

    pub fn watermark(&self) -> Option<i64> {
        self.clock.map(|c| c.saturating_sub(self.lateness))
    }

    /// The index of a partition's state, created empty when new.
    fn part_index(&mut self, source: &str, partition: &Arc<str>) -> usize {
        if let Some(p) = self.parts.get(self.last_part) {
            if &*p.source == source && p.partition == *partition {
                return self.last_part;
            }
        }
        let at = match self.find(source, partition) {
            Ok(i) => i,
            Err(i) => {
                let queries = self
                    .specs
                    .iter()
                    .map(|s| QueryState::new(s.plan.clone(), s.limits.clone()))
                    .collect();
                self.generation += 1;
                self.parts.insert(
                    i,
                    PartitionState {
                        source: Arc::from(source),
                        partition: partition.clone(),
                        position: None,
                        positions: vec![None; self.specs.len()],
                        floor: None,
                        clock: None,
                        pending: None,
                        queries,
                        dirty: false,
                    },
                );
                i
            }
        };
        self.last_part = at;
        at
    }

    fn find(&self, source: &str, partition: &str) -> Result<usize, usize> {
        self.parts
            .binary_search_by(|p| (&*p.source, &*p.partition).cmp(&(source, partition)))
    }

    /// Parses one event and feeds its rows to the queries that read their tables, in the
    /// state of the event's partition. A query whose state already absorbed the event (at or
    /// before its position) skips it, unless the event starts its partition over.
    pub fn ingest(&mut self, source: &str, event: &Event) {
        let i = self.part_index(source, &event.position.partition);
        let part = &mut self.parts[i];
        let seq = event.position.sequence_number;
        if event.rewound {
            part.positions.iter_mut().for_each(|p| *p = None);
            part.floor = None;
            // Other content: nothing it held says where this one's stream is.
            part.pending = None;
        } else if part.floor.is_some_and(|f| seq <= f) {
            self.duplicates += 1;
            return;
        }
        // Usually every query is at the same position; only after a query was added does
        // the event go to some of them.
        let behind_of = |p: &Option<Checkpoint>| p.as_ref().is_none_or(|p| p.sequence_number < seq);
        let behind: Option<Vec<bool>> = if part
            .positions
            .iter()
            .all(|p| p.as_ref().map(|p| p.sequence_number) == part.floor)
        {
            None
        } else {
            Some(part.positions.iter().map(behind_of).collect())
        };
        // New to this partition (not re-read to rebuild a query's windows), and not covered
        // by the source's checkpoint: forwarded. Anything else updates windows only.
        let forward = !event.replayed
            && (event.rewound
                || part
                    .position
                    .as_ref()
                    .is_none_or(|p| p.sequence_number < seq));
        let here = Checkpoint {
            offset: event.position.offset,
            sequence_number: seq,
        };
        for p in &mut part.positions {
            if behind_of(p) {
                *p = Some(here.clone());
            }
        }
        if part
            .position
            .as_ref()
            .is_none_or(|p| p.sequence_number < seq || event.rewound)
        {
            part.position = Some(here);
        }
        part.update_floor();
        part.dirty = true;
        let mut route = Route {
            queries: &mut part.queries,
            only: behind.as_deref(),
            by_table: &self.by_table,
            guard: clock::Guard::new(
                &mut self.clock,
                &mut part.clock,
                &mut part.pending,
                event.position.enqueued_time,
                self.max_future,
                &mut self.ahead,
            ),
            verdict: clock::Verdict::Now,
            lateness: self.lateness,
            // Dead letters, like forwarded rows, only for events new to the partition: one
            // at or before the position its stored state reflects, or its source's
            // checkpoint, was read in an earlier run, and its dead letters were on disk
            // before that position was stored (`end_batch` syncs them first).
            dead_letter: if forward {
                self.dead_letter.as_mut()
            } else {
                None
            },
            dead_letter_error: &mut self.dead_letter_error,
            source,
            position: &event.position,
            forward: forward.then_some(Forward {
                forwarding: &mut self.forwarding,
                routes_by_table: &self.routes_by_table,
                tables: &self.table_names,
                error: &mut self.forward_error,
                counts: &mut self.forward_counts,
                ordinal: 0,
            }),
        };
        self.parser.parse_event(
            &event.body,
            event.cut_from,
            event.position.enqueued_time,
            &mut route,
        );
    }

    /// Snapshots of the partitions that absorbed something since the last call (each with
    /// the state of every query and the positions it reflects), which are then clean.
    pub fn snapshot(&mut self) -> Vec<Snapshot> {
        let written = crate::time::now_ticks();
        let mut out = Vec::new();
        for part in &mut self.parts {
            if !part.dirty {
                continue;
            }
            let Some(position) = &part.position else {
                continue;
            };
            let queries = self
                .specs
                .iter()
                .zip(&self.fingerprints)
                .zip(&self.routed)
                .zip(part.positions.iter().zip(&part.queries))
                .map(|(((spec, fp), routed), (pos, q))| QueryEntry {
                    name: &spec.name,
                    fingerprint: *fp,
                    position: pos.as_ref(),
                    routed: *routed,
                    state: q,
                });
            let bytes = snapshot::encode(
                &part.source,
                &part.partition,
                position,
                snapshot::PartClock {
                    clock: part.clock,
                    pending: part.pending,
                },
                written,
                queries,
            );
            part.dirty = false;
            out.push(Snapshot {
                source: part.source.clone(),
                partition: part.partition.clone(),
                bytes,
            });
        }
        out
    }

    /// After a failed save: these partitions are written again by the next snapshot.
    pub fn unsaved(&mut self, snapshots: &[Snapshot]) {
        for s in snapshots {
            if let Ok(i) = self.find(&s.source, &s.partition) {
                self.parts[i].dirty = true;
            }
        }
    }

    /// Installs a partition's snapshot, replacing whatever is held of that partition. A
    /// query the snapshot holds no state for (by name and KQL fingerprint) starts empty.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<Restored, SnapshotError> {
        self.restore_as(bytes, None)
    }

    /// Like [`restore`](Self::restore), refusing (before installing anything) a snapshot of
    /// another partition than `expected` (source, partition).
    pub fn restore_as(
        &mut self,
        bytes: &[u8],
        expected: Option<(&str, &str)>,
    ) -> Result<Restored, SnapshotError> {
        let Decoded {
            mut part,
            restored,
            routed,
            ..
        } = decode_partition(&self.specs, &self.fingerprints, bytes, expected)?;
        for (mine, stored) in self.routed.iter_mut().zip(routed) {
            *mine = (*mine).max(stored);
        }
        self.absorb_clock(part.clock);
        self.advance_to_clock(&mut part);
        // The live state supersedes any copy of it from the store.
        self.drop_peer(&part.source, &part.partition);
        match self.find(&part.source, &part.partition) {
            Ok(i) => self.parts[i] = part,
            Err(i) => self.parts.insert(i, part),
        }
        self.last_part = 0;
        self.generation += 1;
        Ok(restored)
    }

    /// Moves the clock forward to a partition's (restored, or another replica's).
    fn absorb_clock(&mut self, clock: Option<i64>) {
        if let Some(c) = clock {
            self.clock = Some(self.clock.map_or(c, |mine| mine.max(c)));
        }
    }

    /// Advances a partition's windows to the engine's clock.
    fn advance_to_clock(&self, part: &mut PartitionState) {
        if let Some(clock) = self.clock {
            let wm = clock.saturating_sub(self.lateness);
            for q in &mut part.queries {
                q.advance(clock, wm);
            }
        }
    }

    /// Forgets a partition's state (it moved to another replica, which restores it there).
    pub fn release(&mut self, source: &str, partition: &str) -> bool {
        match self.find(source, partition) {
            Ok(i) => {
                self.parts.remove(i);
                self.generation += 1;
                self.last_part = 0;
                true
            }
            Err(_) => false,
        }
    }

    /// Ends a batch: windows advance, the dead letters are made durable and the counters
    /// reported. An error means the batch must not be acknowledged.
    pub fn end_batch(&mut self) -> std::io::Result<()> {
        if let Some(clock) = self.clock {
            let wm = clock.saturating_sub(self.lateness);
            for part in &mut self.parts {
                for q in &mut part.queries {
                    q.advance(clock, wm);
                }
            }
        }
        self.advance_peers();
        self.route_results();
        if let Some(dl) = &mut self.dead_letter {
            if let Err(e) = dl.flush() {
                self.dead_letter_error.get_or_insert(e);
            }
        }
        // The batch's routed rows go to the operating system (a network sink's sender may
        // deliver them); they are synced before the batch is acknowledged (`sync_sinks`).
        for (i, sink) in self.forwarding.sinks.iter_mut().enumerate() {
            if let Err(e) = sink.flush() {
                self.forward_counts.failures[i] += 1;
                let e = std::io::Error::new(e.kind(), format!("sink '{}': {e}", sink.name()));
                self.forward_error.get_or_insert(e);
            }
        }
        if let Some(m) = &self.metrics {
            let c = &mut self.forward_counts;
            for (route, n) in self.forwarding.routes.iter().zip(&mut c.rows) {
                m.forward
                    .rows
                    .with_label_values(&[&route.name])
                    .inc_by(std::mem::take(n));
            }
            for (i, sink) in self.forwarding.sinks.iter().enumerate() {
                let f = &m.forward;
                f.lines
                    .with_label_values(&[sink.name()])
                    .inc_by(std::mem::take(&mut c.lines[i]));
                f.failures
                    .with_label_values(&[sink.name()])
                    .inc_by(std::mem::take(&mut c.failures[i]));
                if let Some(b) = sink.buffered_bytes() {
                    f.buffered.with_label_values(&[sink.name()]).set(b as i64);
                }
            }
        }
        let stats = self.parser.stats.take();
        self.totals.add(&stats);
        let ahead = std::mem::take(&mut self.ahead);
        self.ahead_totals.add(&ahead);
        self.refused_unlogged += ahead.get(Ahead::Arrival);
        if self.refused_unlogged > 0
            && self
                .refused_logged
                .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60))
        {
            tracing::warn!(
                records = std::mem::take(&mut self.refused_unlogged),
                max_future = %crate::time::format_timespan(self.max_future),
                "records dated more than max_future after their event arrived were kept out of the windows (a clock-skewed resource or a corrupt time; routes still forward them)"
            );
            self.refused_logged = Some(std::time::Instant::now());
        }
        let mut deltas = vec![QueryStats::default(); self.specs.len()];
        for part in &mut self.parts {
            for (delta, q) in deltas.iter_mut().zip(&mut part.queries) {
                delta.add(&std::mem::take(&mut q.stats));
            }
        }
        for (total, delta) in self.query_totals.iter_mut().zip(&deltas) {
            total.add(delta);
        }
        if let Some(m) = &self.metrics {
            m.add_parse(&stats, &self.table_names);
            if let Some(dl) = &self.dead_letter {
                let written = dl.written;
                let before = m.parse.dead_letters.get();
                if written > before {
                    m.parse.dead_letters.inc_by(written - before);
                }
            }
            let held = self.series_held();
            for ((spec, delta), series) in self.specs.iter().zip(&deltas).zip(held) {
                m.add_query(&spec.name, delta, series);
            }
            for why in Ahead::ALL {
                let n = ahead.get(why);
                if n > 0 {
                    m.future_records
                        .with_label_values(&[why.as_str()])
                        .inc_by(n);
                }
            }
            if let Some(c) = self.clock {
                m.clock.set(c as f64 / crate::time::TICKS_PER_SECOND as f64);
                m.watermark.set(
                    c.saturating_sub(self.lateness) as f64 / crate::time::TICKS_PER_SECOND as f64,
                );
            }
        }
        match self
            .dead_letter_error
            .take()
            .or_else(|| self.forward_error.take())
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Makes every sink's flushed rows durable: before the batches that produced them are
    /// acknowledged.
    pub fn sync_sinks(&mut self) -> std::io::Result<()> {
        self.sync_jobs()?.into_iter().try_for_each(|job| job())
    }

    /// [`sync_sinks`](Self::sync_sinks) as jobs for another thread (an error names its
    /// sink): a commit round runs them before it stores the snapshot, while the engine
    /// goes on.
    pub fn sync_jobs(&mut self) -> std::io::Result<Vec<crate::forward::SyncJob>> {
        let mut jobs: Vec<crate::forward::SyncJob> = Vec::new();
        for (i, sink) in self.forwarding.sinks.iter_mut().enumerate() {
            match sink.sync_job() {
                Ok(Some(job)) => {
                    let name = sink.name().to_string();
                    jobs.push(Box::new(move || {
                        job().map_err(|e| {
                            std::io::Error::new(e.kind(), format!("sink '{name}': syncing: {e}"))
                        })
                    }));
                }
                Ok(None) => {}
                Err(e) => {
                    self.forward_counts.failures[i] += 1;
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("sink '{}': syncing: {e}", sink.name()),
                    ));
                }
            }
        }
        Ok(jobs)
    }

    /// End of input: closes every open bin, for the results served from now on. Not a
    /// change to snapshot: were the input to grow and the service to start again, those
    /// bins must still be open.
    pub fn finish(&mut self) {
        for part in &mut self.parts {
            for q in &mut part.queries {
                q.flush();
            }
        }
    }

    /// One query's result over every partition: this replica's own, and the copies of the
    /// others' (those it does not hold itself).
    fn merged(&self, i: usize, bins: Bins) -> ResultTable {
        let spec = &self.specs[i];
        let parts: Vec<&QueryState> = if self.peers.is_empty() {
            self.parts.iter().map(|p| &p.queries[i]).collect()
        } else {
            // In (source, partition) order, as one process holding them all would merge
            // them (rows tied in time come out in the same order on every replica).
            let mut all: Vec<&PartitionState> = self.parts.iter().collect();
            all.extend(
                self.peers
                    .iter()
                    .filter(|p| self.find(&p.source, &p.partition).is_err()),
            );
            all.sort_by(|a, b| (&a.source, &a.partition).cmp(&(&b.source, &b.partition)));
            all.into_iter().map(|p| &p.queries[i]).collect()
        };
        QueryState::merged(
            &spec.plan,
            &spec.limits,
            &parts,
            self.clock.unwrap_or(0),
            bins,
        )
    }

    pub fn result(&self, name: &str) -> Option<ResultTable> {
        let i = self.specs.iter().position(|s| &*s.name == name)?;
        Some(self.merged(i, Bins::All))
    }

    /// Every query's result as metrics export it.
    pub fn exports(&self) -> Vec<(QuerySpec, ResultTable)> {
        (0..self.specs.len())
            .map(|i| (self.specs[i].clone(), self.merged(i, Bins::Last)))
            .collect()
    }

    /// Every query's result.
    pub fn results(&self) -> Vec<(QuerySpec, ResultTable)> {
        (0..self.specs.len())
            .map(|i| (self.specs[i].clone(), self.merged(i, Bins::All)))
            .collect()
    }

    /// Per query, the start of the newest bin whose results were routed.
    pub fn routed(&self) -> &[Option<i64>] {
        &self.routed
    }

    /// Whether this replica routes query results: it holds the lowest partition it knows
    /// of, its own or another replica's copy. One replica does, so that a SIEM gets each
    /// bin once and not once per replica; the bin's rows are the global result (every
    /// replica's partitions merged). Without global results each replica knows only its
    /// own partitions, and each routes the result of those.
    pub fn routes_results(&self) -> bool {
        let Some(first) = self.parts.first() else {
            return false;
        };
        self.peers
            .first()
            .is_none_or(|p| (&*first.source, &*first.partition) < (&*p.source, &*p.partition))
    }

    /// Sends the result rows of every tumbling bin that closed since the last call to the
    /// routes that name its query (in `end_batch`, before the sinks flush). The rows of a
    /// bin are its merged result, after the query's operators that follow `summarize` (a
    /// `where` there makes an alert feed); each row's ordinal is its place in the bin.
    fn route_results(&mut self) {
        if self.results_routes.iter().all(Vec::is_empty) || !self.routes_results() {
            return;
        }
        for q in 0..self.specs.len() {
            if self.results_routes[q].is_empty() {
                continue;
            }
            let after = self.routed[q];
            let closed: std::collections::BTreeSet<i64> = self
                .parts
                .iter()
                .chain(&self.peers)
                .flat_map(|p| p.queries[q].closed_bins(after))
                .collect();
            let Some(&newest) = closed.last() else {
                continue;
            };
            for &bin in &closed {
                let result = self.merged(q, Bins::At(bin));
                let Forwarding { routes, sinks } = &mut self.forwarding;
                for (ordinal, row) in result.rows.iter().enumerate() {
                    for &r in &self.results_routes[q] {
                        let route = &routes[r];
                        let out = Out {
                            values: row,
                            keys: &route.keys,
                            columns: &result.columns,
                            known: &route.known,
                            table: &self.specs[q].name,
                            time: bin,
                            raw: b"",
                            ordinal: ordinal as u32,
                            origin: Origin::Result {
                                query: &self.specs[q].name,
                                bin,
                            },
                        };
                        send(
                            route,
                            r,
                            &out,
                            sinks,
                            &mut self.forward_counts,
                            &mut self.forward_error,
                        );
                    }
                }
            }
            self.routed[q] = Some(newest);
            // The lowest partition's next snapshot carries the new value even if nothing
            // else changed in it.
            self.parts[0].dirty = true;
        }
    }
}

/// What identifies a query's state: its KQL as tokens (whitespace, comments and layout do
/// not matter; any other change does), hashed with the stable [`hash64`].
pub fn fingerprint(kql: &str) -> u64 {
    let (tokens, _) = crate::kql::lexer::lex(kql);
    let mut text = String::with_capacity(kql.len());
    for t in &tokens {
        if let Some(s) = kql.get(t.span.start..t.span.end) {
            text.push_str(s);
            text.push('\u{1f}');
        }
    }
    hash64(text.as_bytes())
}

/// Routes the parser's output for one event.
struct Route<'a> {
    queries: &'a mut [QueryState],
    /// When only some queries take this event: which.
    only: Option<&'a [bool]>,
    by_table: &'a [Vec<(usize, usize)>],
    /// Moves the clock, or not (`clock.rs`).
    guard: clock::Guard<'a>,
    /// What the guard made of the current record's time.
    verdict: clock::Verdict,
    lateness: i64,
    dead_letter: Option<&'a mut DeadLetter>,
    dead_letter_error: &'a mut Option<std::io::Error>,
    source: &'a str,
    position: &'a Position,
    /// The routes, when this event is to be forwarded.
    forward: Option<Forward<'a>>,
}

struct Forward<'a> {
    forwarding: &'a mut Forwarding,
    routes_by_table: &'a [Vec<usize>],
    /// Table id → name.
    tables: &'a [Arc<str>],
    error: &'a mut Option<std::io::Error>,
    counts: &'a mut ForwardCounts,
    /// The row's place among the event's rows.
    ordinal: u32,
}

/// A row as a route sends it: its values, the columns they are, and where it came from.
struct Out<'a> {
    values: &'a [crate::value::Value],
    keys: &'a [Vec<u8>],
    columns: &'a [crate::kql::plan::OutColumn],
    known: &'a crate::forward::Known,
    table: &'a str,
    time: i64,
    /// The record's bytes in the body (none for a result row).
    raw: &'a [u8],
    ordinal: u32,
    origin: Origin<'a>,
}

impl Forward<'_> {
    fn row(&mut self, row: &Row, raw: &[u8], clock: i64, source: &str, position: &Position) {
        let ordinal = self.ordinal;
        self.ordinal += 1;
        let Forwarding { routes, sinks } = &mut *self.forwarding;
        for &i in &self.routes_by_table[row.table] {
            let route = &routes[i];
            let Some(values) = route.select(row, clock) else {
                continue;
            };
            let out = Out {
                values: &values,
                keys: &route.keys,
                columns: &route.plan.output,
                known: &route.known,
                table: &self.tables[row.table],
                time: row.time,
                raw,
                ordinal,
                origin: Origin::Record { source, position },
            };
            send(route, i, &out, sinks, self.counts, self.error);
        }
    }

    /// A record of a category no table knows, for the `*` routes: its fields (top level
    /// and `properties`, after `TimeGenerated`) as the row, or the record itself.
    fn unknown(&mut self, row: &UnknownRow, raw: &[u8], source: &str, position: &Position) {
        let ordinal = self.ordinal;
        self.ordinal += 1;
        let Forwarding { routes, sinks } = &mut *self.forwarding;
        if !routes.iter().any(|r| r.unknown) {
            return;
        }
        let mut columns = vec![crate::kql::plan::OutColumn {
            name: Arc::from("TimeGenerated"),
            ty: crate::value::Type::DateTime,
            is_key: false,
        }];
        let mut values = vec![crate::value::Value::DateTime(row.time)];
        // The row's names are unique ignoring case already; only `TimeGenerated` is taken.
        // (A scan of the columns so far would cost a record of n fields n² comparisons.)
        for (name, v) in &row.columns {
            if name.eq_ignore_ascii_case("TimeGenerated") {
                continue;
            }
            columns.push(crate::kql::plan::OutColumn {
                name: name.clone(),
                ty: v.type_of().unwrap_or(crate::value::Type::Dynamic),
                is_key: false,
            });
            values.push(v.clone());
        }
        let keys = crate::forward::format::keys(&columns);
        let known = crate::forward::Known::of(&columns);
        let out = Out {
            values: &values,
            keys: &keys,
            columns: &columns,
            known: &known,
            table: &row.category,
            time: row.time,
            raw,
            ordinal,
            origin: Origin::Record { source, position },
        };
        for (i, route) in routes.iter().enumerate().filter(|(_, r)| r.unknown) {
            send(route, i, &out, sinks, self.counts, self.error);
        }
    }
}

/// Formats `out` for route `i` (or takes its record) and hands it to the route's sinks.
fn send(
    route: &crate::forward::RouteSpec,
    i: usize,
    out: &Out<'_>,
    sinks: &mut [Box<dyn crate::forward::Sink>],
    counts: &mut ForwardCounts,
    error: &mut Option<std::io::Error>,
) {
    let line = &mut counts.line;
    line.clear();
    if route.record {
        crate::forward::format::record_line(line, out.raw);
    } else {
        crate::forward::format::row_json(
            line,
            out.keys,
            out.values,
            route.nulls,
            &route.name,
            &out.origin,
        );
    }
    counts.rows[i] += 1;
    let routed = crate::forward::Routed {
        json: line,
        route: &route.name,
        origin: out.origin,
        time: out.time,
        values: out.values,
        columns: out.columns,
        known: out.known,
        meta: &route.meta,
        table: out.table,
        ordinal: out.ordinal,
        original: route.record,
    };
    for &s in &route.sinks {
        match sinks[s].write(&routed) {
            Ok(()) => counts.lines[s] += 1,
            Err(e) => {
                counts.failures[s] += 1;
                error.get_or_insert(e);
            }
        }
    }
}

impl ParseSink for Route<'_> {
    fn unknown(&mut self, row: UnknownRow, raw: &[u8]) {
        if let Some(f) = &mut self.forward {
            f.unknown(&row, raw, self.source, self.position);
        }
    }

    fn accepted(&mut self, time: i64) {
        self.verdict = self.guard.judge(time);
        if self.verdict != clock::Verdict::Now {
            tracing::debug!(source = self.source, partition = &*self.position.partition, offset = self.position.offset, time = %crate::time::format_datetime(time), verdict = ?self.verdict, "record ahead of the clock");
        }
    }

    fn row(&mut self, row: Row, raw: &[u8]) {
        let clock = self.guard.clock.unwrap_or(row.time);
        let wm = clock.saturating_sub(self.lateness);
        // A refused record stays out of the windows; a held one goes to its place in them.
        if self.verdict != clock::Verdict::Refused {
            for &(i, input) in &self.by_table[row.table] {
                if self.only.is_none_or(|only| only[i]) {
                    self.queries[i].ingest_from(&row, input, clock, wm);
                }
            }
        }
        if let Some(f) = &mut self.forward {
            f.row(&row, raw, clock, self.source, self.position);
        }
    }

    fn reject(&mut self, r: Reject<'_>) {
        tracing::debug!(source = self.source, partition = &*self.position.partition, offset = self.position.offset, reason = r.reason.as_str(), detail = %r.detail, "rejected");
        if let Some(dl) = self.dead_letter.as_deref_mut() {
            if let Err(e) = dl.write(&r, self.source, self.position) {
                self.dead_letter_error.get_or_insert(e);
            }
        }
    }
}
