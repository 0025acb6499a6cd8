//! The `query` and `check` commands: one query over files, or a configuration checked.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Buffered, SinkSettings};
use crate::forward::syslog;
use crate::kql::check::compile;
use crate::pipeline::{Engine, EngineOptions, QuerySpec};
use crate::schema::Schemas;
use crate::source::{Event, Position};
use crate::window::{QueryLimits, ResultTable};

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
        let mut line = Vec::new();
        let (mut offset, mut n) = (0i64, 0i64);
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(err)?;
            if read == 0 {
                break;
            }
            let body = trim_line(&line);
            if !body.is_empty() {
                let event = Event::new(
                    body.to_vec(),
                    Position {
                        partition: partition.clone(),
                        offset,
                        sequence_number: n,
                        enqueued_time: None,
                    },
                );
                engine.ingest("query", &event);
                if n % 1024 == 0 {
                    let _ = engine.end_batch();
                }
            }
            offset += read as i64;
            n += 1;
        }
    }
    let _ = engine.end_batch();
    engine.finish();
    let result = engine.result("query").expect("the one query");
    Ok((result, engine))
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
        end -= 1;
    }
    &line[..end]
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
