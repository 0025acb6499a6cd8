//! Stage two of the configuration: typed settings, every query compiled against the
//! schemas, and all errors reported together with `file:line:column`.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::env::interpolate;
use super::{QueryConfig, QueryFile, RawConfig, SourceConfig};
use crate::kql::check::compile;
use crate::kql::diag::line_col;
use crate::parse::ParserLimits;
use crate::pipeline::{EngineOptions, QuerySpec};
use crate::schema::Schemas;
use crate::source::amqp::{AmqpSourceConfig, Auth, EntraKind, Redacted, StartPosition};
use crate::source::kafka::{Connection, KafkaSourceConfig, Security, StartOffset};
use crate::time;
use crate::window::QueryLimits;

/// Where checkpoints (positions and window state) live, and how often they are taken.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    pub dir: PathBuf,
    pub interval: Duration,
}

impl CheckpointSettings {
    /// The positions file inside the directory.
    pub fn positions(&self) -> PathBuf {
        self.dir.join("checkpoints.json")
    }

    /// The stores this configures: positions (`checkpoints.json`) and window state
    /// (`state/`), side by side in the directory, which is created if missing. A positions
    /// file that is not valid is an error here, before anything reads.
    pub fn open(
        &self,
    ) -> anyhow::Result<(
        std::sync::Arc<dyn crate::checkpoint::CheckpointStore>,
        std::sync::Arc<dyn crate::state::StateStore>,
    )> {
        use anyhow::Context as _;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating the checkpoint directory {}", self.dir.display()))?;
        let path = self.positions();
        let positions = crate::checkpoint::FileCheckpointStore::open(&path)
            .with_context(|| format!("opening the checkpoint store {}", path.display()))?;
        Ok((
            std::sync::Arc::new(positions),
            std::sync::Arc::new(crate::state::LocalStateStore::new(&self.dir)),
        ))
    }
}

/// Everything the service needs, checked.
#[derive(Debug)]
pub struct Settings {
    pub listen: String,
    pub engine: EngineOptions,
    pub dead_letter: Option<PathBuf>,
    pub checkpoint: Option<CheckpointSettings>,
    pub sources: Vec<SourceSettings>,
    pub queries: Vec<QuerySpec>,
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

    let env = |what: &str, v: &str, errors: &mut Vec<String>| -> String {
        interpolate(v).unwrap_or_else(|e| {
            errors.push(format!("{file}: {what}: {e}"));
            String::new()
        })
    };
    let listen = env("export.listen", &raw.export.listen, &mut errors);
    let dead_letter = raw
        .dead_letter
        .as_ref()
        .map(|d| dir.join(env("dead_letter.path", &d.path, &mut errors)));
    let checkpoint = raw.checkpoint.as_ref().map(|c| {
        let every = ts(
            "checkpoint.interval",
            &c.interval,
            5 * time::TICKS_PER_SECOND,
            &mut errors,
        );
        CheckpointSettings {
            dir: dir.join(env("checkpoint.dir", &c.dir, &mut errors)),
            interval: Duration::from_nanos((every.max(1) * 100) as u64),
        }
    });
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
                        let p = env(&format!("sources[{i}].paths[{j}]"), p, &mut errors);
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
                let settings = match s {
                    SourceConfig::Amqp { .. } => SourceSettings::Amqp(amqp_source(s, &mut error)),
                    _ => SourceSettings::Kafka(kafka_source(s, &mut error)),
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
    for qf in &raw.query_files {
        let p = dir.join(env("query_files", qf, &mut errors));
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
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Settings {
        listen,
        engine: EngineOptions {
            parser,
            allowed_lateness: lateness,
        },
        dead_letter,
        checkpoint,
        sources,
        queries,
    })
}

/// An `amqp` source's settings; every problem goes to `error(field, message)`.
fn amqp_source(s: &SourceConfig, error: &mut dyn FnMut(&str, String)) -> AmqpSourceConfig {
    let SourceConfig::Amqp {
        name,
        connection_string,
        fully_qualified_namespace,
        custom_endpoint,
        event_hub,
        consumer_group,
        auth,
        client_id,
        start,
        owner_level,
        prefetch,
        batch_max_events,
        batch_max_wait,
        reconnect_initial,
        reconnect_max,
        lag_poll_interval,
    } = s
    else {
        unreachable!("called for amqp sources only")
    };
    let mut cfg = AmqpSourceConfig::new(name.clone(), String::new());
    // `${ENV}` in every text field. Errors name the variable, never its value (the
    // connection string's is the secret).
    let mut env = |what: &str, v: &Option<String>| -> Option<String> {
        v.as_ref()
            .and_then(|t| interpolate(t).map_err(|e| error(what, e)).ok())
    };
    cfg.connection_string = env("connection_string", connection_string);
    let fully_qualified_namespace = env("fully_qualified_namespace", fully_qualified_namespace);
    let event_hub = env("event_hub", event_hub);
    let consumer_group = env("consumer_group", consumer_group);
    let client_id = env("client_id", client_id);
    cfg.custom_endpoint = env("custom_endpoint", custom_endpoint);
    if let Some(endpoint) = &cfg.custom_endpoint {
        if let Err(e) = check_endpoint(endpoint) {
            error("custom_endpoint", e);
        }
    }
    let parsed = cfg.connection_string.as_ref().and_then(|c| {
        c.parse::<crate::source::amqp::ConnectionString>()
            .map_err(|e| error("connection_string", e.to_string()))
            .ok()
    });
    cfg.fully_qualified_namespace = fully_qualified_namespace.clone();
    cfg.auth = match (auth.as_deref(), connection_string.is_some()) {
        (None, true) | (Some("connection_string"), _) => Auth::ConnectionString,
        (None, false) => Auth::Entra {
            kind: EntraKind::Default,
            client_id: None,
        },
        (Some(k), _) => {
            let kind = entra_kind(k).unwrap_or_else(|| {
                error("auth", format!("'{k}' is not one of connection_string, workload_identity, managed_identity, client_secret, azure_cli, default"));
                EntraKind::Default
            });
            Auth::Entra {
                kind,
                client_id: client_id.clone(),
            }
        }
    };
    match (
        &cfg.auth,
        connection_string.is_some(),
        fully_qualified_namespace.is_some(),
    ) {
        (Auth::ConnectionString, false, _) => error(
            "connection_string",
            "is required with auth = \"connection_string\"".into(),
        ),
        (Auth::Entra { .. }, _, false) => error(
            "fully_qualified_namespace",
            "is required with Entra ID auth".into(),
        ),
        (Auth::Entra { .. }, true, _) => error(
            "connection_string",
            "is not used with Entra ID auth; remove it or set auth = \"connection_string\"".into(),
        ),
        _ => {}
    }
    let entity = parsed.as_ref().and_then(|p| p.entity_path.clone());
    cfg.event_hub = match (event_hub, entity) {
        (Some(h), Some(e)) if h != e => {
            error(
                "event_hub",
                format!("'{h}' differs from the connection string's EntityPath '{e}'"),
            );
            h
        }
        (Some(h), _) => h,
        (None, Some(e)) => e,
        (None, None) => {
            error(
                "event_hub",
                "is required (the connection string has no EntityPath)".into(),
            );
            String::new()
        }
    };
    if let Some(g) = consumer_group {
        cfg.consumer_group = g;
    }
    match parse_start(start) {
        Some(p) => cfg.start = p,
        None => error(
            "start",
            format!("'{start}' is not earliest, latest, sequence_number:<n> or enqueued_time:<RFC 3339>"),
        ),
    }
    cfg.owner_level = *owner_level;
    if let Some(p) = prefetch {
        cfg.prefetch = *p;
    }
    if let Some(n) = batch_max_events {
        cfg.batch_max_events = (*n).max(1);
    }
    let mut span = |what: &str, v: &Option<String>, d: &mut Duration| set_span(what, v, d, error);
    span("batch_max_wait", batch_max_wait, &mut cfg.batch_max_wait);
    span(
        "reconnect_initial",
        reconnect_initial,
        &mut cfg.reconnect.initial,
    );
    span("reconnect_max", reconnect_max, &mut cfg.reconnect.max);
    span(
        "lag_poll_interval",
        lag_poll_interval,
        &mut cfg.lag_poll_interval,
    );
    cfg
}

/// A custom endpoint must be an AMQP URL with a host; plain `amqp://` would send the token in
/// the clear, so only a loopback emulator may use it. Errors do not echo the URL, which
/// may hold credentials.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let url = azure_core::http::Url::parse(endpoint).map_err(|e| format!("is not a URL ({e})"))?;
    let Some(host) = url.host_str() else {
        return Err("has no host".to_string());
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "amqps" => Ok(()),
        "amqp" if loopback => Ok(()),
        "amqp" => Err(format!(
            "amqp://{host} would send tokens unencrypted; use amqps:// (plain amqp:// is for an emulator on loopback)"
        )),
        scheme => Err(format!(
            "the scheme is {scheme}; use amqps://host[:port] (or amqp:// for an emulator on loopback)"
        )),
    }
}

/// Sets `d` from an optional timespan field (`200ms`, `30s`), or reports why it cannot.
fn set_span(what: &str, v: &Option<String>, d: &mut Duration, error: &mut dyn FnMut(&str, String)) {
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

fn entra_kind(k: &str) -> Option<EntraKind> {
    Some(match k {
        "workload_identity" => EntraKind::WorkloadIdentity,
        "managed_identity" => EntraKind::ManagedIdentity,
        "client_secret" => EntraKind::ClientSecret,
        "azure_cli" => EntraKind::AzureCli,
        "default" => EntraKind::Default,
        _ => return None,
    })
}

/// A `kafka` source's settings; every problem goes to `error(field, message)`.
fn kafka_source(s: &SourceConfig, error: &mut dyn FnMut(&str, String)) -> KafkaSourceConfig {
    let SourceConfig::Kafka {
        name,
        topics,
        group_id,
        start,
        connection_string,
        fully_qualified_namespace,
        auth,
        client_id,
        bootstrap_servers,
        security_protocol,
        sasl_mechanism,
        sasl_username,
        sasl_password,
        ssl_ca_location,
        assignment_strategy,
        session_timeout,
        batch_max_events,
        batch_max_wait,
        commit_interval,
        properties,
    } = s
    else {
        unreachable!("called for kafka sources only")
    };
    // `${ENV}` in every text field; errors name the field, never its value.
    let mut env = |what: &str, v: &Option<String>| -> Option<String> {
        v.as_ref()
            .and_then(|t| interpolate(t).map_err(|e| error(what, e)).ok())
    };
    let connection_string = env("connection_string", connection_string);
    let namespace = env("fully_qualified_namespace", fully_qualified_namespace);
    let client_id = env("client_id", client_id);
    let servers = env("bootstrap_servers", bootstrap_servers);
    let protocol = env("security_protocol", security_protocol);
    let mechanism = env("sasl_mechanism", sasl_mechanism);
    let username = env("sasl_username", sasl_username);
    let password = env("sasl_password", sasl_password);
    let ca = env("ssl_ca_location", ssl_ca_location);
    let strategy = env("assignment_strategy", assignment_strategy);
    let group = env("group_id", &Some(group_id.clone())).unwrap_or_default();
    let topics: Vec<String> = topics
        .iter()
        .filter_map(|t| env("topics", &Some(t.clone())))
        .collect();
    let mut props = Vec::new();
    for (k, v) in properties {
        if let Some(v) = env(&format!("properties.{k}"), &Some(v.clone())) {
            props.push((k.clone(), v));
        }
    }

    let mut cfg = KafkaSourceConfig::new(name.clone(), "", topics, group);
    if cfg.topics.is_empty() {
        error("topics", "name at least one event hub (topic)".into());
    }
    if cfg.group_id.is_empty() {
        error("group_id", "must not be empty".into());
    }
    let plain_only = [
        ("security_protocol", protocol.is_some()),
        ("sasl_mechanism", mechanism.is_some()),
        ("sasl_username", username.is_some()),
        ("sasl_password", password.is_some()),
    ];
    let chosen = [
        connection_string.is_some(),
        namespace.is_some(),
        servers.is_some(),
    ];
    if chosen.iter().filter(|c| **c).count() != 1 {
        error(
            "connection",
            "set exactly one of connection_string (Event Hubs), fully_qualified_namespace \
             (Event Hubs with Entra ID) or bootstrap_servers (any Kafka cluster)"
                .into(),
        );
    }
    if let Some(cs) = &connection_string {
        match Connection::event_hubs(cs) {
            Ok(c) => cfg.connection = c,
            Err(e) => error("connection_string", e),
        }
    } else if let Some(ns) = &namespace {
        let kind = match auth.as_deref() {
            None => EntraKind::Default,
            Some(k) => entra_kind(k).unwrap_or_else(|| {
                error("auth", format!("'{k}' is not one of workload_identity, managed_identity, client_secret, azure_cli, default"));
                EntraKind::Default
            }),
        };
        cfg.connection = Connection::EventHubsEntra {
            namespace: ns.clone(),
            kind,
            client_id: client_id.clone(),
        };
    } else if let Some(servers) = &servers {
        let tls = matches!(protocol.as_deref(), Some("ssl" | "sasl_ssl"));
        let security = match protocol.as_deref().unwrap_or("plaintext") {
            "plaintext" => Security::Plaintext,
            "ssl" => Security::Ssl {
                ca_location: ca.clone(),
            },
            "sasl_plaintext" | "sasl_ssl" => {
                let mechanism = mechanism.clone().unwrap_or_else(|| "PLAIN".to_string());
                if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism.as_str()) {
                    error(
                        "sasl_mechanism",
                        format!("'{mechanism}' is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
                    );
                }
                if username.is_none() || password.is_none() {
                    error(
                        "sasl_username",
                        "sasl_username and sasl_password are required with SASL".into(),
                    );
                }
                Security::Sasl {
                    mechanism,
                    username: username.clone().unwrap_or_default(),
                    password: Redacted::new(password.clone().unwrap_or_default()),
                    tls,
                    ca_location: ca.clone(),
                }
            }
            other => {
                error(
                    "security_protocol",
                    format!("'{other}' is not plaintext, ssl, sasl_plaintext or sasl_ssl"),
                );
                Security::Plaintext
            }
        };
        cfg.connection = Connection::Kafka {
            bootstrap_servers: servers.clone(),
            security,
        };
    }
    if servers.is_none() {
        for (field, set) in plain_only {
            if set {
                error(field, "is only used with bootstrap_servers".into());
            }
        }
    }
    if auth.is_some() && namespace.is_none() {
        error("auth", "is only used with fully_qualified_namespace".into());
    }
    cfg.start = match start.trim().to_ascii_lowercase().as_str() {
        "earliest" => StartOffset::Earliest,
        "latest" => StartOffset::Latest,
        other => {
            error(
                "start",
                format!("'{other}' is not earliest or latest (a group's committed offsets take precedence)"),
            );
            StartOffset::Earliest
        }
    };
    if let Some(a) = strategy {
        cfg.assignment_strategy = a;
    }
    if let Some(n) = batch_max_events {
        cfg.batch_max_events = (*n).max(1);
    }
    let mut span = |what: &str, v: &Option<String>, d: &mut Duration| set_span(what, v, d, error);
    span("session_timeout", session_timeout, &mut cfg.session_timeout);
    span("batch_max_wait", batch_max_wait, &mut cfg.batch_max_wait);
    span("commit_interval", commit_interval, &mut cfg.commit_interval);
    cfg.properties = props;
    cfg
}

/// `earliest`, `latest`, `sequence_number:<n>`, `enqueued_time:<RFC 3339>`.
fn parse_start(s: &str) -> Option<StartPosition> {
    let s = s.trim();
    match s.to_ascii_lowercase().as_str() {
        "earliest" => return Some(StartPosition::Earliest),
        "latest" => return Some(StartPosition::Latest),
        _ => {}
    }
    let (kind, value) = s.split_once(':')?;
    match kind.trim().to_ascii_lowercase().as_str() {
        "sequence_number" => value.trim().parse().ok().map(StartPosition::SequenceNumber),
        "enqueued_time" => {
            time::parse_datetime(value.trim()).map(|(t, _)| StartPosition::EnqueuedTime(t))
        }
        _ => None,
    }
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
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reports_every_error_with_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "c.toml",
            r#"[limits]
allowed_lateness = "soon"

[[queries]]
name = "bad-name"
kql = '''
AmlComputeClusterEvent
| where Foo > 1'''

[[queries]]
name = "ok"
kql = "AmlComputeClusterEvent | count"

[[queries]]
name = "ok"
kql = "AmlComputeClusterEvent | count"
"#,
        );
        let e = load(&p, &Schemas::embedded()).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("limits.allowed_lateness: 'soon'"), "{text}");
        assert!(text.contains("query 'bad-name': a name must"), "{text}");
        assert!(
            text.contains("c.toml:8:9: query 'bad-name': unknown column 'Foo'"),
            "{text}"
        );
        assert!(text.contains("query 'ok' is defined twice"), "{text}");
        assert_eq!(e.0.len(), 4, "{text}");
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "c.toml",
            "[export]\nlisten = \"x\"\nlisten_port = 1\n",
        );
        let e = load(&p, &Schemas::embedded()).unwrap_err();
        assert!(e.0[0].contains("c.toml:3:1"), "{}", e.0[0]);
        assert!(e.0[0].contains("listen_port"), "{}", e.0[0]);
    }

    #[test]
    fn query_files_env_and_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "q.toml",
            "[[queries]]\nname = \"n\"\nkql = \"AmlComputeJobEvent | count\"\n",
        );
        std::env::set_var("HUBWATCH_TEST_DL", "dead.ndjson");
        let p = write(
            dir.path(),
            "c.toml",
            "query_files = [\"q.toml\"]\n[dead_letter]\npath = \"${HUBWATCH_TEST_DL}\"\n[[sources]]\ntype = \"file\"\nname = \"f\"\npaths = [\"in\"]\n",
        );
        let s = load(&p, &Schemas::embedded()).unwrap();
        assert_eq!(s.queries.len(), 1);
        assert_eq!(s.dead_letter.unwrap(), dir.path().join("dead.ndjson"));
        let SourceSettings::File { paths, .. } = &s.sources[0] else {
            panic!("a file source")
        };
        assert_eq!(paths[0], dir.path().join("in"));
    }

    #[test]
    fn amqp_sources_take_their_settings_and_keep_the_key_out_of_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var(
            "HUBWATCH_TEST_EH",
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0a2V5;EntityPath=insights",
        );
        let p = write(
            dir.path(),
            "c.toml",
            r#"[[sources]]
type = "amqp"
name = "eh"
connection_string = "${HUBWATCH_TEST_EH}"
consumer_group = "hubwatch"
start = "enqueued_time:2024-05-01T00:00:00Z"
owner_level = 0
prefetch = 500
batch_max_wait = "50ms"
reconnect_max = "10s"
lag_poll_interval = "1m"

[[sources]]
type = "amqp"
name = "entra"
fully_qualified_namespace = "ns.servicebus.windows.net"
custom_endpoint = "amqps://eh-private.example.internal:5671"
event_hub = "insights"
auth = "workload_identity"
start = "latest"
"#,
        );
        let s = load(&p, &Schemas::embedded()).unwrap();
        let SourceSettings::Amqp(a) = &s.sources[0] else {
            panic!("an amqp source")
        };
        assert_eq!(a.event_hub, "insights", "from EntityPath");
        assert_eq!(a.consumer_group, "hubwatch");
        assert_eq!(a.auth, Auth::ConnectionString);
        assert_eq!(
            a.start,
            StartPosition::EnqueuedTime(time::parse_datetime("2024-05-01T00:00:00Z").unwrap().0)
        );
        assert_eq!((a.owner_level, a.prefetch), (Some(0), 500));
        assert_eq!(a.batch_max_wait, Duration::from_millis(50));
        assert_eq!(a.reconnect.max, Duration::from_secs(10));
        assert_eq!(a.lag_poll_interval, Duration::from_secs(60));
        assert!(
            !format!("{s:?}").contains("c2VjcmV0a2V5"),
            "settings Debug redacts"
        );
        let SourceSettings::Amqp(b) = &s.sources[1] else {
            panic!("an amqp source")
        };
        assert_eq!(b.start, StartPosition::Latest);
        assert_eq!(
            b.custom_endpoint.as_deref(),
            Some("amqps://eh-private.example.internal:5671")
        );
        assert!(matches!(
            b.auth,
            Auth::Entra {
                kind: EntraKind::WorkloadIdentity,
                ..
            }
        ));

        let p = write(
            dir.path(),
            "bad.toml",
            r#"[[sources]]
type = "amqp"
name = "eh"
connection_string = "${HUBWATCH_TEST_EH}"
event_hub = "other"
start = "yesterday"
auth = "password"
batch_max_wait = "soon"
custom_endpoint = "https://eh.example"
"#,
        );
        let e = load(&p, &Schemas::embedded()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(
                "event_hub: 'other' differs from the connection string's EntityPath 'insights'"
            ),
            "{text}"
        );
        assert!(text.contains("start: 'yesterday'"), "{text}");
        assert!(text.contains("auth: 'password'"), "{text}");
        assert!(text.contains("batch_max_wait: 'soon'"), "{text}");
        assert!(
            text.contains("custom_endpoint: the scheme is https; use amqps://host[:port]"),
            "{text}"
        );
        for (endpoint, ok) in [
            ("amqps://eh.internal:5671", true),
            ("amqp://127.0.0.1:5672", true),
            ("amqp://localhost", true),
            ("amqp://[::1]:5672", true),
            ("amqp://eh.internal:5672", false),
            ("amqp://user:pw@10.0.0.4", false),
            ("not a url", false),
        ] {
            let checked = check_endpoint(endpoint);
            assert_eq!(checked.is_ok(), ok, "{endpoint}: {checked:?}");
            assert!(!format!("{checked:?}").contains("pw"), "{checked:?}");
        }
        assert!(!text.contains("c2VjcmV0a2V5"), "{text}");

        let p = write(
            dir.path(),
            "missing.toml",
            "[[sources]]\ntype = \"amqp\"\nname = \"eh\"\nevent_hub = \"h\"\nconnection_string = \"Endpoint=sb://x/;SharedAccessKey=k3yk3y\"\n",
        );
        let text = load(&p, &Schemas::embedded()).unwrap_err().to_string();
        assert!(text.contains("missing field `start`"), "{text}");
        let p = write(
            dir.path(),
            "unknown.toml",
            "[[sources]]\ntype = \"amqp\"\nname = \"eh\"\nstart = \"latest\"\npartitions = 4\n",
        );
        let text = load(&p, &Schemas::embedded()).unwrap_err().to_string();
        assert!(text.contains("unknown field `partitions`"), "{text}");
        let p = write(
            dir.path(),
            "nokey.toml",
            "[[sources]]\ntype = \"amqp\"\nname = \"eh\"\nevent_hub = \"h\"\nstart = \"earliest\"\nconnection_string = \"Endpoint=sb://x/;SharedAccessKey=k3yk3y\"\n",
        );
        let text = load(&p, &Schemas::embedded()).unwrap_err().to_string();
        assert!(text.contains("connection_string: neither"), "{text}");
        assert!(!text.contains("k3yk3y"), "{text}");
    }

    #[test]
    fn kafka_sources_take_their_settings_and_keep_secrets_out_of_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var(
            "HUBWATCH_TEST_KAFKA_EH",
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0a2V5",
        );
        std::env::set_var("HUBWATCH_TEST_KAFKA_PW", "scr4mpassw0rd");
        let p = write(
            dir.path(),
            "k.toml",
            r#"[[sources]]
type = "kafka"
name = "eh"
connection_string = "${HUBWATCH_TEST_KAFKA_EH}"
topics = ["insights-logs-amlcomputeclusterevent", "insights-logs-amlcomputejobevent"]
group_id = "hubwatch"
start = "earliest"
session_timeout = "10s"
commit_interval = "5s"
batch_max_events = 64

[[sources]]
type = "kafka"
name = "onprem"
bootstrap_servers = "k1:9092,k2:9092"
security_protocol = "sasl_ssl"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "svc"
sasl_password = "${HUBWATCH_TEST_KAFKA_PW}"
topics = ["logs"]
group_id = "g"
start = "latest"
properties = { "fetch.max.bytes" = "1048576" }

[[sources]]
type = "kafka"
name = "entra"
fully_qualified_namespace = "ns.servicebus.windows.net"
auth = "workload_identity"
topics = ["insights"]
group_id = "g"
start = "earliest"
"#,
        );
        let s = load(&p, &Schemas::embedded()).unwrap();
        let SourceSettings::Kafka(a) = &s.sources[0] else {
            panic!("a kafka source")
        };
        let props = a.client_properties();
        assert_eq!(
            props.get("bootstrap.servers"),
            Some("ns.servicebus.windows.net:9093")
        );
        assert_eq!(props.get("sasl.username"), Some("$ConnectionString"));
        assert_eq!(a.topics.len(), 2);
        assert_eq!(a.session_timeout, Duration::from_secs(10));
        assert_eq!(a.commit_interval, Duration::from_secs(5));
        assert_eq!(a.batch_max_events, 64);
        let SourceSettings::Kafka(b) = &s.sources[1] else {
            panic!("a kafka source")
        };
        let props = b.client_properties();
        assert_eq!(props.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(props.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(props.get("sasl.password"), Some("scr4mpassw0rd"));
        assert_eq!(props.get("auto.offset.reset"), Some("latest"));
        assert_eq!(props.get("fetch.max.bytes"), Some("1048576"));
        let SourceSettings::Kafka(c) = &s.sources[2] else {
            panic!("a kafka source")
        };
        assert_eq!(
            c.client_properties().get("sasl.mechanism"),
            Some("OAUTHBEARER")
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("c2VjcmV0a2V5"), "{shown}");
        assert!(!shown.contains("scr4mpassw0rd"), "{shown}");

        let p = write(
            dir.path(),
            "bad.toml",
            r#"[[sources]]
type = "kafka"
name = "eh"
connection_string = "${HUBWATCH_TEST_KAFKA_EH}"
bootstrap_servers = "x:9092"
sasl_password = "${HUBWATCH_TEST_KAFKA_PW}"
topics = []
group_id = "g"
start = "yesterday"
batch_max_wait = "soon"
"#,
        );
        let text = load(&p, &Schemas::embedded()).unwrap_err().to_string();
        assert!(text.contains("connection: set exactly one of"), "{text}");
        assert!(text.contains("topics: name at least one"), "{text}");
        assert!(text.contains("start: 'yesterday'"), "{text}");
        assert!(text.contains("batch_max_wait: 'soon'"), "{text}");
        assert!(!text.contains("c2VjcmV0a2V5"), "{text}");
        assert!(!text.contains("scr4mpassw0rd"), "{text}");

        let p = write(
            dir.path(),
            "sas.toml",
            "[[sources]]\ntype = \"kafka\"\nname = \"eh\"\ntopics = [\"t\"]\ngroup_id = \"g\"\nstart = \"earliest\"\nconnection_string = \"Endpoint=sb://ns/;SharedAccessSignature=SharedAccessSignature sr=a&sig=s3cr3tsig&se=1&skn=k\"\n",
        );
        let text = load(&p, &Schemas::embedded()).unwrap_err().to_string();
        assert!(
            text.contains("does not accept a SharedAccessSignature"),
            "{text}"
        );
        assert!(!text.contains("s3cr3tsig"), "{text}");
    }

    /// A shipped example configuration, with its connection string in the environment.
    fn load_example(name: &str) -> Settings {
        std::env::set_var(
            "EVENTHUB_CONNECTION_STRING",
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=l;SharedAccessKey=k;EntityPath=insights",
        );
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/config")
            .join(name);
        load(&p, &Schemas::embedded()).unwrap()
    }

    #[test]
    fn the_kafka_example_config_loads() {
        let s = load_example("eventhubs-kafka.toml");
        let SourceSettings::Kafka(k) = &s.sources[0] else {
            panic!("a kafka source")
        };
        assert_eq!(k.topics.len(), 4);
        assert_eq!(k.group_id, "hubwatch");
        assert_eq!(
            k.client_properties().get("bootstrap.servers"),
            Some("ns.servicebus.windows.net:9093")
        );
    }

    #[test]
    fn the_event_hubs_example_config_loads() {
        let s = load_example("eventhubs.toml");
        let SourceSettings::Amqp(a) = &s.sources[0] else {
            panic!("an amqp source")
        };
        assert_eq!(
            (a.event_hub.as_str(), a.consumer_group.as_str()),
            ("insights", "$Default")
        );
    }
}
