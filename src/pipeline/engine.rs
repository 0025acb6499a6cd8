//! The synchronous core of the pipeline: bodies in, query state updated, results out. The
//! `query` command drives it directly over files; the service drives it from one task that
//! owns it (no locks: scrapes and API calls are requests to that task).

use std::sync::Arc;

use crate::kql::plan::Plan;
use crate::parse::{Needs, ParseSink, ParseStats, Parser, ParserLimits, Reject, Row};
use crate::schema::Schemas;
use crate::source::{Event, Position};
use crate::telemetry::Metrics;
use crate::window::{QueryLimits, QueryState, QueryStats, ResultTable};

use super::dead_letter::DeadLetter;

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
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            parser: ParserLimits::default(),
            allowed_lateness: 10 * crate::time::TICKS_PER_MINUTE,
        }
    }
}

pub struct RunningQuery {
    pub spec: QuerySpec,
    pub state: QueryState,
    reported: QueryStats,
}

pub struct Engine {
    parser: Parser,
    queries: Vec<RunningQuery>,
    /// Table id → indexes of the queries that read it.
    by_table: Vec<Vec<usize>>,
    clock: Option<i64>,
    lateness: i64,
    dead_letter: Option<DeadLetter>,
    metrics: Option<Arc<Metrics>>,
    table_names: Vec<Arc<str>>,
    /// A dead-letter write failed since the last batch; the batch must not be acknowledged.
    dead_letter_error: Option<std::io::Error>,
    /// Parse counts since start.
    totals: ParseStats,
}

impl Engine {
    pub fn new(schemas: Arc<Schemas>, specs: Vec<QuerySpec>, opts: EngineOptions) -> Engine {
        let mut needs = Needs::none(&schemas);
        let mut by_table = vec![Vec::new(); schemas.tables.len()];
        for (i, spec) in specs.iter().enumerate() {
            by_table[spec.plan.table].push(i);
            for (col, read) in spec.plan.reads.iter().enumerate() {
                if *read {
                    needs.add(&schemas, spec.plan.table, col);
                }
            }
        }
        let table_names = schemas.tables.iter().map(|t| t.name.clone()).collect();
        let queries = specs
            .into_iter()
            .map(|spec| {
                let state = QueryState::new(spec.plan.clone(), spec.limits.clone());
                RunningQuery {
                    spec,
                    state,
                    reported: QueryStats::default(),
                }
            })
            .collect();
        Engine {
            parser: Parser::new(schemas, &needs, opts.parser),
            queries,
            by_table,
            clock: None,
            lateness: opts.allowed_lateness,
            dead_letter: None,
            metrics: None,
            table_names,
            dead_letter_error: None,
            totals: ParseStats::default(),
        }
    }

    pub fn with_dead_letter(mut self, dl: DeadLetter) -> Engine {
        self.dead_letter = Some(dl);
        self
    }

    pub fn with_metrics(mut self, m: Arc<Metrics>) -> Engine {
        self.metrics = Some(m);
        self
    }

    pub fn queries(&self) -> &[RunningQuery] {
        &self.queries
    }

    pub fn parser(&self) -> &Parser {
        &self.parser
    }

    /// What the parser counted since start (up to the last `end_batch`).
    pub fn parse_totals(&self) -> &ParseStats {
        &self.totals
    }

    /// The event-time clock: the largest record time seen.
    pub fn clock(&self) -> Option<i64> {
        self.clock
    }

    pub fn watermark(&self) -> Option<i64> {
        self.clock.map(|c| c.saturating_sub(self.lateness))
    }

    /// Parses one event and feeds its rows to the queries that read their tables.
    pub fn ingest(&mut self, source: &str, event: &Event) {
        let mut route = Route {
            queries: &mut self.queries,
            by_table: &self.by_table,
            clock: &mut self.clock,
            lateness: self.lateness,
            dead_letter: self.dead_letter.as_mut(),
            dead_letter_error: &mut self.dead_letter_error,
            source,
            position: &event.position,
        };
        self.parser
            .parse_body(&event.body, event.position.enqueued_time, &mut route);
    }

    /// Ends a batch: windows advance, the dead letters are made durable and the counters
    /// reported. An error means the batch must not be acknowledged.
    pub fn end_batch(&mut self) -> std::io::Result<()> {
        if let Some(clock) = self.clock {
            let wm = clock.saturating_sub(self.lateness);
            for q in &mut self.queries {
                q.state.advance(clock, wm);
            }
        }
        if let Some(dl) = &mut self.dead_letter {
            if let Err(e) = dl.flush() {
                self.dead_letter_error.get_or_insert(e);
            }
        }
        let stats = self.parser.stats.take();
        self.totals.add(&stats);
        if let Some(m) = &self.metrics {
            m.add_parse(&stats, &self.table_names);
            if let Some(dl) = &self.dead_letter {
                let written = dl.written;
                let before = m.parse.dead_letters.get();
                if written > before {
                    m.parse.dead_letters.inc_by(written - before);
                }
            }
            for q in &mut self.queries {
                m.add_query(&q.spec.name, &q.state.stats, &q.reported, q.state.series());
                q.reported = q.state.stats.clone();
            }
            if let Some(c) = self.clock {
                m.clock.set(c as f64 / crate::time::TICKS_PER_SECOND as f64);
                m.watermark.set(
                    c.saturating_sub(self.lateness) as f64 / crate::time::TICKS_PER_SECOND as f64,
                );
            }
        }
        match self.dead_letter_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// End of input: closes every open bin.
    pub fn finish(&mut self) {
        for q in &mut self.queries {
            q.state.flush();
        }
    }

    pub fn result(&self, name: &str) -> Option<ResultTable> {
        let clock = self.clock.unwrap_or(0);
        self.queries
            .iter()
            .find(|q| &*q.spec.name == name)
            .map(|q| q.state.result(clock))
    }

    /// Every query's result as metrics export it.
    pub fn exports(&self) -> Vec<(QuerySpec, ResultTable)> {
        let clock = self.clock.unwrap_or(0);
        self.queries
            .iter()
            .map(|q| (q.spec.clone(), q.state.export(clock)))
            .collect()
    }

    /// Every query's result.
    pub fn results(&self) -> Vec<(QuerySpec, ResultTable)> {
        let clock = self.clock.unwrap_or(0);
        self.queries
            .iter()
            .map(|q| (q.spec.clone(), q.state.result(clock)))
            .collect()
    }
}

/// Routes the parser's output for one event.
struct Route<'a> {
    queries: &'a mut [RunningQuery],
    by_table: &'a [Vec<usize>],
    clock: &'a mut Option<i64>,
    lateness: i64,
    dead_letter: Option<&'a mut DeadLetter>,
    dead_letter_error: &'a mut Option<std::io::Error>,
    source: &'a str,
    position: &'a Position,
}

impl ParseSink for Route<'_> {
    fn accepted(&mut self, time: i64) {
        *self.clock = Some(self.clock.map_or(time, |c| c.max(time)));
    }

    fn row(&mut self, row: Row) {
        let clock = self.clock.unwrap_or(row.time);
        let wm = clock.saturating_sub(self.lateness);
        for &i in &self.by_table[row.table] {
            self.queries[i].state.ingest(&row, clock, wm);
        }
    }

    fn reject(&mut self, r: Reject<'_>) {
        tracing::debug!(source = self.source, partition = &*self.position.partition, offset = self.position.offset, reason = r.reason.as_str(), detail = %r.detail, "rejected");
        if let Some(dl) = self.dead_letter.as_deref_mut() {
            if let Err(e) = dl.write(r.reason, &r.detail, self.source, self.position, r.raw) {
                self.dead_letter_error.get_or_insert(e);
            }
        }
    }
}
