//! The `query` and `check` commands: one query over files, or a configuration checked.
//!
//! `query` reads its input with the file source's line reader ([`Lines`]), so a line costs
//! at most `max_line_bytes` of memory however long it is, and says what it could not use:
//! [`Summary`] is what `main` prints on stderr and turns into the exit status.

use std::fmt::Write as _;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Buffered, SinkSettings};
use crate::forward::syslog;
use crate::kql::check::compile;
use crate::kql::plan::Stage;
use crate::parse::{ParseStats, RejectReason, RepairKind};
use crate::pipeline::{Engine, EngineOptions, QuerySpec};
use crate::schema::Schemas;
use crate::source::file::{Lines, DEFAULT_MAX_LINE_BYTES};
use crate::source::{Event, Position};
use crate::window::{QueryLimits, QueryStats, ResultTable};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Why `query` failed, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query does not compile (exit status 2).
    #[error("{0}")]
    Query(crate::kql::Diagnostics),
    #[error("{path}: {source}")]
    Input {
        path: String,
        source: std::io::Error,
    },
}

/// Runs `kql` over the bodies in `inputs` (one body per line; `-` is stdin) and returns the
/// result at the end of the input.
pub fn run_query(
    kql: &str,
    inputs: &[PathBuf],
    limits: QueryLimits,
    opts: EngineOptions,
) -> Result<(ResultTable, Engine), QueryError> {
    let schemas = Schemas::embedded();
    let plan = compile(kql, &schemas).map_err(QueryError::Query)?;
    let spec = QuerySpec {
        name: Arc::from("query"),
        description: String::new(),
        kql: kql.to_string(),
        plan: Arc::new(plan),
        limits,
    };
    let mut engine = Engine::new(schemas, vec![spec], opts);
    let inputs: Vec<PathBuf> = if inputs.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        inputs.to_vec()
    };
    for path in &inputs {
        let name = path.display().to_string();
        let err = |source| QueryError::Input {
            path: name.clone(),
            source,
        };
        let reader: Box<dyn Read> = if name == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(std::fs::File::open(path).map_err(err)?)
        };
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        let partition: Arc<str> = Arc::from(name.as_str());
        // The same reader as the file source: at most `max_line_bytes` of a line is held
        // (a longer one is rejected with its real size), and the line's buffer becomes the
        // event's body without a copy.
        let mut lines = Lines::new();
        let mut n = 0u64;
        while let Some(line) = lines
            .next(&mut reader, DEFAULT_MAX_LINE_BYTES, true)
            .map_err(err)?
        {
            let mut event = Event::new(
                line.body,
                Position {
                    partition: partition.clone(),
                    offset: line.offset,
                    sequence_number: line.number,
                    enqueued_time: None,
                },
            );
            event.cut_from = line.cut_from;
            engine.ingest("query", &event);
            n += 1;
            if n.is_multiple_of(1024) {
                let _ = engine.end_batch();
            }
        }
    }
    let _ = engine.end_batch();
    engine.finish();
    let result = engine.result("query").expect("the one query");
    Ok((result, engine))
}

/// What a `query` run could not use: rejected input, repairs, and rows its caps or its
/// tumbling bins dropped.
#[derive(Debug, Clone)]
pub struct Summary {
    pub parse: ParseStats,
    pub query: QueryStats,
    pub limits: QueryLimits,
    /// Rows the `max_rows` cap pushed out (not `take`'s own, which are the query's answer).
    pub rows_capped: u64,
    /// How far behind the clock a tumbling bin closes (ticks).
    pub allowed_lateness: i64,
    /// Rows a join made beyond its bound and left out.
    pub join_dropped: u64,
}

impl Summary {
    /// The counts of the engine's one query, after [`run_query`].
    pub fn of(engine: &Engine, opts: &EngineOptions) -> Summary {
        let spec = &engine.specs()[0];
        let query = engine.query_totals()[0].clone();
        // `take n` under the cap keeps n rows by design; otherwise what was pushed out is
        // missing from the result.
        let capped = match spec.plan.stage {
            Stage::Rows { limit } => limit.is_none_or(|l| l > spec.limits.max_rows),
            Stage::Summarize(_) => false,
        };
        Summary {
            parse: engine.parse_totals().clone(),
            rows_capped: if capped { query.rows_evicted } else { 0 },
            query,
            limits: spec.limits.clone(),
            allowed_lateness: opts.allowed_lateness,
            join_dropped: 0,
        }
    }

    /// With what the result itself says was left out (a join's bound).
    pub fn with_result(mut self, result: &crate::window::query::ResultTable) -> Summary {
        self.join_dropped = result.join_dropped;
        self
    }

    pub fn rejected(&self) -> u64 {
        self.parse.rejected.iter().sum()
    }

    /// A cap dropped rows: the result is not the query's whole answer.
    pub fn incomplete(&self) -> bool {
        self.query.series_dropped > 0 || self.rows_capped > 0 || self.join_dropped > 0
    }

    /// Anything was left out: a cap's drops, rejected input, or rows too late for their bin.
    pub fn lost_anything(&self) -> bool {
        self.incomplete() || self.rejected() > 0 || self.query.late > 0
    }

    /// The lines printed on stderr (each ends with `\n`).
    pub fn render(&self) -> String {
        let p = &self.parse;
        let mut out = format!(
            "summary: {} bodies read, {} records accepted\n",
            p.bodies,
            p.records_total()
        );
        let list = |body: bool| -> Vec<String> {
            RejectReason::ALL
                .into_iter()
                .filter(|r| r.is_body() == body && p.rejected(*r) > 0)
                .map(|r| format!("{} {}", r.as_str(), p.rejected(r)))
                .collect()
        };
        let (bodies, records) = (list(true), list(false));
        if !bodies.is_empty() {
            let _ = writeln!(out, "  rejected bodies: {}", bodies.join(", "));
        }
        if !records.is_empty() {
            let _ = writeln!(out, "  rejected records: {}", records.join(", "));
        }
        let repairs: Vec<String> = RepairKind::ALL
            .into_iter()
            .filter(|k| p.repaired(*k) > 0)
            .map(|k| format!("{} {}", k.as_str(), p.repaired(k)))
            .collect();
        if !repairs.is_empty() {
            let _ = writeln!(out, "  repaired: {}", repairs.join(", "));
        }
        let q = &self.query;
        if q.series_dropped > 0 {
            let _ = writeln!(
                out,
                "  dropped: {} rows of groups beyond --max-series {} (per input file): those groups are missing from the result",
                q.series_dropped, self.limits.max_series
            );
        }
        if self.rows_capped > 0 {
            let _ = writeln!(
                out,
                "  dropped: {} rows beyond --max-rows {}: the result holds the most recent rows only",
                self.rows_capped, self.limits.max_rows
            );
        }
        if self.join_dropped > 0 {
            let _ = writeln!(
                out,
                "  dropped: {} rows a join made beyond its bound of {} (16 × --max-rows): the result is missing them",
                self.join_dropped,
                crate::window::query::join_bound(&self.limits)
            );
        }
        if q.late > 0 {
            let _ = writeln!(
                out,
                "  late: {} rows for bins already closed (more than {} behind the newest record): not counted",
                q.late,
                crate::time::format_timespan(self.allowed_lateness)
            );
        }
        if self.incomplete() {
            out.push_str("  the result is incomplete\n");
        }
        out
    }
}

/// What `check` says of each route, by name (a `union` compiles once per table):
/// `route jobs: 2 tables -> siem, soc` (`every record`, `, original records`), or
/// `route alerts: results of failures, each bin once -> siem`.
pub fn describe_routes(settings: &crate::config::Settings) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for r in &settings.routes {
        if !names.contains(&&*r.name) {
            names.push(&r.name);
        }
    }
    for name in names {
        let pieces: Vec<_> = settings
            .routes
            .iter()
            .filter(|r| &*r.name == name)
            .collect();
        let first = pieces[0];
        let what = match first.results {
            Some(q) => format!("results of {}, each bin once", settings.queries[q].name),
            None if pieces.iter().any(|r| r.unknown) => "every record".to_string(),
            None if pieces.len() == 1 => "1 table".to_string(),
            None => format!("{} tables", pieces.len()),
        };
        let output = if first.record {
            ", original records"
        } else {
            ""
        };
        let sinks: Vec<&str> = first
            .sinks
            .iter()
            .map(|&i| settings.sinks[i].name())
            .collect();
        out.push(format!(
            "route {name}: {what}{output} -> {}",
            sinks.join(", ")
        ));
    }
    out
}

/// What `check` says of a sink: its name, type and target, and how it sends — never a
/// token, key, password, header value or URL query:
/// `sink siem: splunk_hec -> https://splunk:8088 (event, indexer ack)`.
pub fn describe_sink(sink: &SinkSettings) -> String {
    let (name, kind) = match sink {
        SinkSettings::File { name, path } => {
            return format!("sink {name}: file -> {}", path.display())
        }
        SinkSettings::Buffered { name, kind, .. } => (name, kind),
    };
    let tls_notes = |tls: &crate::forward::http::Tls| {
        [
            tls.client.is_some().then_some("client cert"),
            (!tls.verify).then_some("TLS NOT VERIFIED"),
        ]
        .into_iter()
        .flatten()
    };
    let (kind, target, notes): (&str, String, Vec<&str>) = match kind {
        Buffered::Syslog(s) => {
            let protocol = match s.protocol {
                syslog::Protocol::Tcp => "tcp",
                syslog::Protocol::Tls => "tls",
                syslog::Protocol::Udp => "udp",
                syslog::Protocol::Relp => "relp",
                syslog::Protocol::RelpTls => "relp_tls",
            };
            let rfc = match s.rfc {
                syslog::Rfc::Rfc5424 => "rfc 5424",
                syslog::Rfc::Rfc3164 => "rfc 3164",
            };
            let format = match s.format {
                syslog::Format::Json => "json",
                syslog::Format::Cef => "cef",
                syslog::Format::Leef => "leef",
            };
            let mut notes = vec![protocol, rfc, format];
            if matches!(
                s.protocol,
                syslog::Protocol::Tls | syslog::Protocol::RelpTls
            ) {
                notes.extend(tls_notes(&s.tls));
            }
            ("syslog", s.address.clone(), notes)
        }
        Buffered::Hec {
            endpoint,
            api,
            ack,
            tls,
            ..
        } => {
            let mut notes = vec![match api {
                crate::forward::hec::Endpoint::Event => "event",
                crate::forward::hec::Endpoint::Raw => "raw",
            }];
            notes.extend(ack.as_ref().map(|_| "indexer ack"));
            notes.extend(tls_notes(tls));
            (
                "splunk_hec",
                crate::forward::http::shown_url(endpoint),
                notes,
            )
        }
        Buffered::Elasticsearch {
            endpoint,
            auth,
            ecs,
            tls,
            ..
        } => {
            // The scheme of the Authorization header, never its credentials.
            let mut notes = vec![match auth.as_ref().map(|a| a.expose()) {
                Some(a) if a.starts_with("ApiKey ") => "api key",
                Some(_) => "basic auth",
                None => "no auth",
            }];
            notes.extend(ecs.then_some("ecs"));
            notes.extend(tls_notes(tls));
            (
                "elasticsearch",
                crate::forward::http::shown_url(endpoint),
                notes,
            )
        }
        Buffered::Http {
            url, format, tls, ..
        } => {
            let mut notes = vec![match format {
                crate::forward::http::BodyFormat::Ndjson => "ndjson",
                crate::forward::http::BodyFormat::JsonArray => "json_array",
            }];
            notes.extend(tls_notes(tls));
            ("http", crate::forward::http::shown_url(url.expose()), notes)
        }
        Buffered::Kafka {
            bootstrap_servers, ..
        } => ("kafka", bootstrap_servers.clone(), Vec::new()),
    };
    let mut line = format!("sink {name}: {kind} -> {target}");
    if !notes.is_empty() {
        line.push_str(&format!(" ({})", notes.join(", ")));
    }
    line
}
