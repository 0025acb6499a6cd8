//! Stage two of the configuration: typed settings, every query compiled against the
//! schemas, and all errors reported together with `file:line:column`.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::checkpoint::CheckpointSettings;
use super::env::Env;
use super::{QueryConfig, QueryFile, RawConfig, SourceConfig};
use crate::forward::RouteSpec;
use crate::kql::check::compile;
use crate::kql::diag::line_col;
use crate::parse::ParserLimits;
use crate::pipeline::{EngineOptions, QuerySpec};
use crate::schema::Schemas;
use crate::source::amqp::{AmqpSourceConfig, EntraKind};
use crate::source::kafka::KafkaSourceConfig;
use crate::time;
use crate::window::QueryLimits;

/// Everything the service needs, checked.
#[derive(Debug)]
pub struct Settings {
    pub listen: String,
    /// The admin server's bounds (`[export]` besides `listen`).
    pub export: crate::export::AdminSettings,
    pub engine: EngineOptions,
    pub dead_letter: Option<PathBuf>,
    pub checkpoint: Option<CheckpointSettings>,
    pub sources: Vec<SourceSettings>,
    pub queries: Vec<QuerySpec>,
    pub sinks: Vec<super::SinkSettings>,
    pub routes: Vec<RouteSpec>,
}

// Built once at start-up, a handful at most: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SourceSettings {
    File {
        name: String,
        paths: Vec<PathBuf>,
        follow: bool,
    },
    Amqp(AmqpSourceConfig),
    Kafka(KafkaSourceConfig),
}

/// Every problem found in the configuration.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} error{} in the configuration:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads, parses and validates the configuration file at `path`.
pub fn load(path: &Path, schemas: &Schemas) -> Result<Settings, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![format!("{}: {e}", path.display())]))?;
    load_text(path, &text, schemas)
}

/// [`load`] of `text`, as if read from `path` (whose folder relative paths start from).
pub fn load_text(path: &Path, text: &str, schemas: &Schemas) -> Result<Settings, ConfigErrors> {
    let text = text.to_string();
    let raw: RawConfig =
        toml::from_str(&text).map_err(|e| ConfigErrors(vec![toml_error(path, &text, &e)]))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut errors = Vec::new();
    let file = path.display().to_string();

    let ts = |what: &str, v: &Option<String>, default: i64, errors: &mut Vec<String>| -> i64 {
        match v {
            None => default,
            Some(s) => match time::parse_timespan(s) {
                Some(t) if t >= 0 => t,
                _ => {
                    errors.push(format!(
                        "{file}: {what}: '{s}' is not a timespan (e.g. 30s, 10m, 1h)"
                    ));
                    default
                }
            },
        }
    };
    let lateness = ts(
        "limits.allowed_lateness",
        &raw.limits.allowed_lateness,
        10 * time::TICKS_PER_MINUTE,
        &mut errors,
    );
    let max_future = ts(
        "limits.max_future",
        &raw.limits.max_future,
        crate::pipeline::engine::DEFAULT_MAX_FUTURE,
        &mut errors,
    );
    if max_future == 0 {
        // 0 would hold every record later than the clock until a second one confirmed it,
        // and refuse any stamped a tick after its event arrived.
        errors.push(format!(
            "{file}: limits.max_future: must be longer than 0 (e.g. 1h)"
        ));
    }
    let defaults = QueryLimits::default();
    let base_limits = QueryLimits {
        max_series: raw.limits.max_series.unwrap_or(defaults.max_series),
        max_rows: raw.limits.max_rows.unwrap_or(defaults.max_rows),
        max_panes: raw.limits.max_panes.unwrap_or(defaults.max_panes).max(2),
    };
    let mut parser = ParserLimits::default();
    if let Some(b) = raw.limits.max_body_bytes {
        parser.max_body_bytes = b;
    }

    // `${VAR}` errors are kept apart, with their places, and listed first.
    let env = Env::new(&file, &text);
    let top = env.scope(&[], "");
    let listen = top
        .text(&["export", "listen"], &raw.export.listen)
        .unwrap_or_default();
    let mut export = raw.export.settings(&file, &mut errors);
    export.basic_auth_users = raw.export.users(
        &file,
        |user, v| top.text(&["export", "basic_auth_users", user], v),
        &mut errors,
    );
    if let Some(tls) = &raw.export.tls {
        let path = |key: &str, v: &str| Some(dir.join(top.text(&["export", "tls", key], v)?));
        export.tls = tls.settings(&file, path, &mut errors);
    }
    let dead_letter = raw.dead_letter.as_ref().map(|d| {
        dir.join(
            top.text(&["dead_letter", "path"], &d.path)
                .unwrap_or_default(),
        )
    });
    let checkpoint = raw
        .checkpoint
        .as_ref()
        .map(|c| super::checkpoint::checkpoint_settings(c, &dir, &file, &env, &mut errors));
    let mut sources = Vec::new();
    let mut source_names = HashSet::new();
    for (i, s) in raw.sources.iter().enumerate() {
        match s {
            SourceConfig::File {
                name,
                paths,
                follow,
            } => {
                if !source_names.insert(name.clone()) {
                    errors.push(format!(
                        "{file}: sources[{i}]: a source named '{name}' already exists"
                    ));
                }
                if paths.is_empty() {
                    errors.push(format!("{file}: sources[{i}] '{name}': paths is empty"));
                }
                let paths = paths
                    .iter()
                    .enumerate()
                    .map(|(j, p)| {
                        let key = ["sources", &i.to_string(), "paths", &j.to_string()];
                        let p = top.text(&key, p).unwrap_or_default();
                        if p == "-" {
                            PathBuf::from("-")
                        } else {
                            dir.join(p)
                        }
                    })
                    .collect();
                sources.push(SourceSettings::File {
                    name: name.clone(),
                    paths,
                    follow: *follow,
                });
            }
            SourceConfig::Amqp { name, .. } | SourceConfig::Kafka { name, .. } => {
                if !source_names.insert(name.clone()) {
                    errors.push(format!(
                        "{file}: sources[{i}]: a source named '{name}' already exists"
                    ));
                }
                let before = errors.len();
                let mut error = |what: &str, e: String| {
                    errors.push(format!("{file}: sources[{i}] '{name}': {what}: {e}"))
                };
                let scope = env.scope(
                    &["sources", &i.to_string()],
                    format!("sources[{i}] '{name}': "),
                );
                let settings = match s {
                    SourceConfig::Amqp { .. } => {
                        SourceSettings::Amqp(super::amqp::amqp_source(s, &scope, &mut error))
                    }
                    _ => SourceSettings::Kafka(super::kafka::kafka_source(s, &scope, &mut error)),
                };
                if errors.len() == before {
                    sources.push(settings);
                }
            }
        }
    }

    // Queries: inline ones, then each query file (with its own name in error messages).
    let mut all: Vec<(String, String, QueryConfig)> = raw
        .queries
        .into_iter()
        .map(|q| (file.clone(), text.clone(), q))
        .collect();
    for (j, qf) in raw.query_files.iter().enumerate() {
        // A name that could not be expanded was reported; there is nothing to read.
        let Some(qf) = top.text(&["query_files", &j.to_string()], qf) else {
            continue;
        };
        let p = dir.join(qf);
        let name = p.display().to_string();
        match std::fs::read_to_string(&p) {
            Err(e) => errors.push(format!("{file}: query_files: {name}: {e}")),
            Ok(t) => match toml::from_str::<QueryFile>(&t) {
                Err(e) => errors.push(toml_error(&p, &t, &e)),
                Ok(f) => all.extend(f.queries.into_iter().map(|q| (name.clone(), t.clone(), q))),
            },
        }
    }
    let mut queries = Vec::new();
    let mut names = HashSet::new();
    for (qfile, qtext, q) in all {
        if !valid_name(&q.name) {
            errors.push(format!(
                "{qfile}: query '{}': a name must start with a letter or '_' and hold only letters, digits and '_' (it prefixes metric names)",
                q.name
            ));
        }
        if !names.insert(q.name.clone()) {
            errors.push(format!("{qfile}: query '{}' is defined twice", q.name));
        }
        let limits = QueryLimits {
            max_series: q.max_series.unwrap_or(base_limits.max_series),
            max_rows: q.max_rows.unwrap_or(base_limits.max_rows),
            max_panes: base_limits.max_panes,
        };
        match compile(q.kql.get_ref(), schemas) {
            Ok(plan) => queries.push(QuerySpec {
                name: Arc::from(q.name.as_str()),
                description: q.description.clone(),
                kql: q.kql.get_ref().clone(),
                plan: Arc::new(plan),
                limits,
            }),
            Err(diags) => {
                let content_start = string_content_start(&qtext, q.kql.span().start);
                for d in &diags.items {
                    let (line, col) = line_col(&qtext, content_start + d.span.start);
                    errors.push(format!(
                        "{qfile}:{line}:{col}: query '{}': {}",
                        q.name, d.message
                    ));
                }
            }
        }
    }
    // Sinks, then the routes that name them.
    let sinks = super::sinks::sink_settings(&raw.sinks, &dir, &file, &env, &mut errors);
    let mut routes: Vec<RouteSpec> = Vec::new();
    for (ri, r) in raw.routes.iter().enumerate() {
        let scope = env.scope(
            &["routes", &ri.to_string()],
            format!("route '{}': ", r.name),
        );
        if !valid_name(&r.name) {
            errors.push(format!(
                "{file}: route '{}': a name must start with a letter or '_' and hold only letters, digits and '_'",
                r.name
            ));
        }
        if routes.iter().any(|o| *o.name == *r.name) {
            errors.push(format!("{file}: route '{}' is defined twice", r.name));
        }
        if r.sinks.is_empty() {
            errors.push(format!(
                "{file}: route '{}': name at least one sink",
                r.name
            ));
        }
        let mut indexes = Vec::new();
        for s in &r.sinks {
            match sinks.iter().position(|k| k.name() == s) {
                Some(i) => indexes.push(i),
                None => errors.push(format!(
                    "{file}: route '{}': no sink is named '{s}' (define it under [[sinks]])",
                    r.name
                )),
            }
        }
        let mut template = |field: &str, v: &Option<String>, lowercase: bool| {
            let text = scope.opt(field, v)?;
            crate::forward::template::Template::parse(&text, lowercase)
                .map_err(|e| errors.push(format!("{file}: route '{}': {field}: {e}", r.name)))
                .ok()
        };
        let meta = crate::forward::RouteMeta {
            index: template("index", &r.index, true),
            sourcetype: template("sourcetype", &r.sourcetype, false),
            source: template("source", &r.source, false),
        };
        let nulls = match r.nulls.as_deref() {
            None | Some("omit") => false,
            Some("keep") => true,
            Some(other) => {
                errors.push(format!(
                    "{file}: route '{}': nulls: '{other}' is not one of omit, keep",
                    r.name
                ));
                false
            }
        };
        let record = match r.output.as_deref() {
            None | Some("row") => false,
            Some("record") => true,
            Some(other) => {
                errors.push(format!(
                    "{file}: route '{}': output: '{other}' is not one of row, record",
                    r.name
                ));
                false
            }
        };
        if record && r.nulls.is_some() {
            errors.push(format!(
                "{file}: route '{}': nulls: applies to output = \"row\" only (a record goes out as it came)",
                r.name
            ));
        }
        let kql = match (&r.kql, &r.query) {
            (Some(kql), None) => kql,
            (None, Some(name)) => {
                if record {
                    errors.push(format!(
                        "{file}: route '{}': output = \"record\": a query's result rows have no record",
                        r.name
                    ));
                }
                match queries.iter().position(|q| *q.name == **name) {
                    Some(q) => match crate::forward::route::check_results_route(&queries[q].plan) {
                        Ok(()) => {
                            let mut route = RouteSpec::results(
                                &r.name,
                                q,
                                queries[q].plan.clone(),
                                indexes,
                                meta,
                            );
                            route.nulls = nulls;
                            routes.push(route);
                        }
                        Err(e) => errors.push(format!(
                            "{file}: route '{}': query '{name}' cannot be routed: {e}",
                            r.name
                        )),
                    },
                    // A query that failed to compile was reported already.
                    None if names.contains(name) => {}
                    None => errors.push(format!(
                        "{file}: route '{}': no query is named '{name}' (define it under [[queries]])",
                        r.name
                    )),
                }
                continue;
            }
            (Some(_), Some(_)) => {
                errors.push(format!(
                    "{file}: route '{}': give either `kql` (rows of tables) or `query` (a query's results), not both",
                    r.name
                ));
                continue;
            }
            (None, None) => {
                errors.push(format!(
                    "{file}: route '{}': give `kql` (the rows of which tables) or `query` (a query's results)",
                    r.name
                ));
                continue;
            }
        };
        let content_start = string_content_start(&text, kql.span().start);
        // `union` and `*`: the pipeline once per table.
        let expansion = match crate::forward::route::expand(kql.get_ref(), schemas) {
            Ok(e) => e,
            Err(e) => {
                let (line, col) = line_col(&text, content_start);
                errors.push(format!("{file}:{line}:{col}: route '{}': {e}", r.name));
                continue;
            }
        };
        for piece in &expansion.pieces {
            match compile(&piece.kql, schemas) {
                Ok(plan) => match crate::forward::check_route(&plan) {
                    Ok(()) => {
                        let mut route = RouteSpec::new(
                            &r.name,
                            kql.get_ref(),
                            plan,
                            indexes.clone(),
                            meta.clone(),
                        );
                        route.nulls = nulls;
                        route.record = record;
                        routes.push(route)
                    }
                    Err(e) => {
                        let (line, col) = line_col(&text, content_start);
                        errors.push(format!("{file}:{line}:{col}: route '{}': {e}", r.name));
                    }
                },
                Err(diags) => {
                    for d in &diags.items {
                        let at = content_start + piece.origin(d.span.start);
                        let (line, col) = line_col(&text, at);
                        let table = if expansion.pieces.len() > 1 {
                            format!(
                                " (over {})",
                                piece.kql[..piece.kql.find(' ').unwrap_or(piece.kql.len())].trim()
                            )
                        } else {
                            String::new()
                        };
                        errors.push(format!(
                            "{file}:{line}:{col}: route '{}'{table}: {}",
                            r.name, d.message
                        ));
                    }
                }
            }
        }
        // One of the route's pipelines also takes records of categories no table knows.
        if expansion.unknown {
            if let Some(last) = routes.last_mut().filter(|l| *l.name == *r.name) {
                last.unknown = true;
            }
        }
    }
    let mut all = env.take_errors();
    all.extend(errors);
    if !all.is_empty() {
        return Err(ConfigErrors(all));
    }
    Ok(Settings {
        listen,
        export,
        engine: EngineOptions {
            parser,
            allowed_lateness: lateness,
            max_future,
        },
        dead_letter,
        checkpoint,
        sources,
        queries,
        sinks,
        routes,
    })
}

/// Sets `d` from an optional timespan field (`200ms`, `30s`), or reports why it cannot.
pub(super) fn set_span(
    what: &str,
    v: &Option<String>,
    d: &mut Duration,
    error: &mut dyn FnMut(&str, String),
) {
    if let Some(text) = v {
        match time::parse_timespan(text) {
            Some(t) if t >= 0 => *d = Duration::from_nanos((t * 100) as u64),
            _ => error(
                what,
                format!("'{text}' is not a timespan (e.g. 200ms, 30s)"),
            ),
        }
    }
}

pub(super) fn entra_kind(k: &str) -> Option<EntraKind> {
    Some(match k {
        "workload_identity" => EntraKind::WorkloadIdentity,
        "managed_identity" => EntraKind::ManagedIdentity,
        "client_secret" => EntraKind::ClientSecret,
        "azure_cli" => EntraKind::AzureCli,
        "default" => EntraKind::Default,
        _ => return None,
    })
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Byte offset where a TOML string's content starts (after its quotes, and after the
/// newline that directly follows opening triple quotes), so that KQL positions map to file
/// positions. Exact for literal strings, which have no escapes.
fn string_content_start(text: &str, value_start: usize) -> usize {
    let rest = &text[value_start.min(text.len())..];
    let quote = if rest.starts_with("'''") || rest.starts_with("\"\"\"") {
        3
    } else {
        1
    };
    let mut at = value_start + quote;
    let after = &text[at.min(text.len())..];
    if quote == 3 {
        if after.starts_with("\r\n") {
            at += 2;
        } else if after.starts_with('\n') {
            at += 1;
        }
    }
    at
}

fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            format!("{}:{line}:{col}: {}", path.display(), e.message())
        }
        None => format!("{}: {}", path.display(), e.message()),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
