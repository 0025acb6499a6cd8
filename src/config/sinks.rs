//! `[[sinks]]`: where routed rows go. Each sink's table is checked field by field; every
//! problem names the sink and the field, and never a token, key or password.
//!
//! Every network sink shares two tables, as in Vector, and all but Kafka a third:
//!
//! ```toml
//! buffer = { dir = "buffers/siem", max_bytes = 268435456, when_full = "block" }
//! batch = { max_events = 500, max_bytes = 1048576, timeout = "200ms", max_in_flight = 4 }
//! tls = { verify = true, ca_file = "ca.pem" }
//! ```
//!
//! A sink's name is a folder's (its default buffer, `buffers/<name>`) and a metric label,
//! so it holds letters, digits, `_` and `-` only; no two sinks share a buffer folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::env::{Env, Scope};
use super::validate::set_span;
use crate::forward::buffered::{BufferedSink, Deliver, Delivery, Encode, WhenFull};
use crate::forward::http::{BodyFormat, Client, Tls};
use crate::forward::syslog::{Format, Framing, Protocol, Rfc, SyslogSettings};
use crate::forward::template::Template;
use crate::source::amqp::Redacted;
use crate::telemetry::{Metrics, SinkMetrics};

/// A destination for routed rows, as written in the configuration.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// NDJSON appended to a file, synced before a batch is acknowledged (for a collector
    /// that tails files, or for inspection).
    File {
        /// The name routes use: letters, digits, `_` and `-`.
        name: String,
        /// The file, relative to the configuration's folder; created if missing.
        path: String,
    },
    /// Syslog (RFC 5424 or 3164) over TCP, TLS or UDP; the row as JSON, CEF or LEEF.
    Syslog {
        name: String,
        /// The receiver, `host:port`.
        address: String,
        /// `tcp` (default), `tls`, `udp`, `relp` (acknowledged by the receiver) or
        /// `relp_tls` (RELP inside TLS).
        protocol: Option<String>,
        /// For TCP and TLS: `octet_counting` (RFC 6587, default) or `lf`.
        framing: Option<String>,
        /// `5424` (default) or `3164`.
        rfc: Option<String>,
        /// `json` (the row, default), `cef` or `leef`.
        format: Option<String>,
        /// Syslog facility, 0–23. Default 16 (`local0`).
        facility: Option<u8>,
        /// The HOSTNAME field. Default: this host's name.
        hostname: Option<String>,
        /// Extra CEF extension keys or LEEF attributes: `key = "Column"`.
        #[serde(default)]
        fields: BTreeMap<String, String>,
        /// With `format = "leef"`: the attribute delimiter, `tab` (default), one punctuation
        /// character, or LEEF's hex form (`x5E`).
        leef_delimiter: Option<String>,
        tls: Option<TlsConfig>,
        /// Connect and write timeout. Default 10s.
        timeout: Option<String>,
        buffer: Option<BufferConfig>,
        batch: Option<BatchConfig>,
    },
    /// Splunk HTTP Event Collector.
    SplunkHec {
        name: String,
        /// `https://splunk.example.com:8088`.
        endpoint: String,
        /// The HEC token; write `${SPLUNK_HEC_TOKEN}` to take it from the environment.
        token: String,
        /// `event` (default) or `raw`.
        api: Option<String>,
        /// Index, sourcetype and source: templates (`{table}`, `{route}`, `%Y`…); a route's
        /// own win. With `api = "raw"`: fixed text, one value per request, and routes' are
        /// not used. Default sourcetype `azure:{table}`, lowercase (raw: the token's own).
        index: Option<String>,
        sourcetype: Option<String>,
        source: Option<String>,
        /// The events' `host`. Default: none (Splunk's default for the token).
        host: Option<String>,
        /// `gzip` (default) or `none`.
        compression: Option<String>,
        /// Wait for Splunk's indexer acknowledgement of every batch. Default false.
        #[serde(default)]
        indexer_ack: bool,
        /// With `indexer_ack`: how long indexing may take before a batch is sent again.
        /// Default 120s.
        ack_timeout: Option<String>,
        tls: Option<TlsConfig>,
        /// Request timeout. Default 30s.
        timeout: Option<String>,
        buffer: Option<BufferConfig>,
        batch: Option<BatchConfig>,
    },
    /// Elasticsearch or OpenSearch `_bulk`.
    Elasticsearch {
        name: String,
        /// `https://es.example.com:9200`.
        endpoint: String,
        /// A data stream or index template. Default `logs-azure.{table}-default`.
        index: Option<String>,
        /// `Authorization: ApiKey …` (the encoded key); or `username` and `password`.
        api_key: Option<String>,
        username: Option<String>,
        password: Option<String>,
        /// Add Elastic Common Schema fields. Default false.
        #[serde(default)]
        ecs: bool,
        /// `gzip` (default) or `none`.
        compression: Option<String>,
        tls: Option<TlsConfig>,
        /// Request timeout. Default 30s.
        timeout: Option<String>,
        buffer: Option<BufferConfig>,
        batch: Option<BatchConfig>,
    },
    /// Any HTTP endpoint that takes NDJSON or a JSON array.
    Http {
        name: String,
        /// `https://collector.example.com/ingest`; a key in its query stays out of logs.
        url: String,
        /// `ndjson` (default) or `json_array`.
        format: Option<String>,
        /// Extra headers (`${ENV}` for keys).
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// `gzip` (default) or `none`.
        compression: Option<String>,
        tls: Option<TlsConfig>,
        /// Request timeout. Default 30s.
        timeout: Option<String>,
        buffer: Option<BufferConfig>,
        batch: Option<BatchConfig>,
    },
    /// A Kafka topic.
    Kafka {
        name: String,
        /// `host:port,host:port`.
        bootstrap_servers: String,
        /// A template (`{table}`, `{route}`).
        topic: String,
        /// The column whose value keys each record. Default: no key.
        key: Option<String>,
        /// librdkafka properties (`security.protocol`, `sasl.*`, `compression.type`, …).
        #[serde(default)]
        properties: BTreeMap<String, String>,
        /// How long a record may take to be acknowledged. Default 30s.
        timeout: Option<String>,
        buffer: Option<BufferConfig>,
        batch: Option<BatchConfig>,
    },
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Default `buffers/<sink name>` beside the configuration.
    pub dir: Option<String>,
    /// Default 268435456 (256 MiB); at least one 8 MiB segment (a smaller value is
    /// raised to it).
    pub max_bytes: Option<u64>,
    /// `block` (default) or `drop_newest`.
    pub when_full: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Default 500.
    pub max_events: Option<usize>,
    /// Default 1048576 (1 MiB).
    pub max_bytes: Option<usize>,
    /// How long a batch waits to fill up. Default 200ms.
    pub timeout: Option<String>,
    /// Batches delivered at once. Default 4 for the HTTP sinks, 1 for syslog and Kafka
    /// (whose order per partition it keeps).
    pub max_in_flight: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Check the receiver's certificate. Default true.
    pub verify: Option<bool>,
    /// PEM certificates to trust besides the system's, relative to the configuration's
    /// folder.
    pub ca_file: Option<String>,
    /// A client certificate (PEM) for a receiver that requires one, with `key_file`.
    pub cert_file: Option<String>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<String>,
}

/// A sink, checked.
// Built once at start-up, a handful at most: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SinkSettings {
    File {
        name: String,
        path: PathBuf,
    },
    Buffered {
        name: String,
        delivery: Delivery,
        kind: Buffered,
    },
}

/// What a buffered sink sends, and to where.
#[derive(Debug, Clone)]
pub enum Buffered {
    Syslog(SyslogSettings),
    Hec {
        endpoint: String,
        token: Redacted,
        api: crate::forward::hec::Endpoint,
        index: Option<Template>,
        sourcetype: Option<Template>,
        source: Option<Template>,
        host: Option<String>,
        gzip: bool,
        ack: Option<crate::forward::hec::IndexerAck>,
        tls: Tls,
        timeout: Duration,
    },
    Elasticsearch {
        endpoint: String,
        index: Option<Template>,
        auth: Option<Redacted>,
        ecs: bool,
        gzip: bool,
        tls: Tls,
        timeout: Duration,
    },
    Http {
        url: Redacted,
        format: BodyFormat,
        headers: Vec<(String, Redacted)>,
        gzip: bool,
        tls: Tls,
        timeout: Duration,
    },
    Kafka {
        bootstrap_servers: String,
        topic: Template,
        key: Option<String>,
        properties: Vec<(String, Redacted)>,
        timeout: Duration,
    },
}

impl SinkSettings {
    pub fn name(&self) -> &str {
        match self {
            SinkSettings::File { name, .. } | SinkSettings::Buffered { name, .. } => name,
        }
    }

    /// Opens the sink (a buffered one starts its sender on the current runtime).
    pub fn open(
        &self,
        metrics: Option<&Metrics>,
    ) -> std::io::Result<Box<dyn crate::forward::Sink>> {
        let (name, delivery, kind) = match self {
            SinkSettings::File { name, path } => {
                return Ok(Box::new(crate::forward::FileSink::open(name, path)?))
            }
            SinkSettings::Buffered {
                name,
                delivery,
                kind,
            } => (name, delivery, kind),
        };
        let (encode, deliver) = kind.parts(name)?;
        let mut deliverers = vec![deliver];
        for _ in 1..delivery.max_in_flight {
            deliverers.push(kind.parts(name)?.1);
        }
        Ok(Box::new(BufferedSink::start_concurrent(
            name,
            delivery.clone(),
            encode,
            deliverers,
            metrics.map(|m| SinkMetrics::of(&m.forward, name)),
        )?))
    }
}

impl Buffered {
    /// Syslog and Kafka keep a partition's order with one batch in flight; HTTP receivers
    /// index by time, and take several.
    fn default_in_flight(&self) -> usize {
        match self {
            Buffered::Syslog(_) | Buffered::Kafka { .. } => 1,
            Buffered::Hec { .. } | Buffered::Elasticsearch { .. } | Buffered::Http { .. } => 4,
        }
    }

    /// The sink's encoder and transport.
    fn parts(&self, name: &str) -> std::io::Result<(Box<dyn Encode>, Box<dyn Deliver>)> {
        use crate::forward::{elastic, hec, http, kafka};
        Ok(match self {
            Buffered::Syslog(s) => crate::forward::syslog::parts(s)?,
            Buffered::Hec {
                endpoint,
                token,
                api,
                index,
                sourcetype,
                source,
                host,
                gzip,
                ack,
                tls,
                timeout,
            } => {
                let client = Client::new(endpoint, tls, *timeout, *gzip)?;
                let encode: Box<dyn Encode> = match api {
                    hec::Endpoint::Event => Box::new(hec::HecEvent::new(
                        index.clone(),
                        sourcetype.clone(),
                        source.clone(),
                        host.clone(),
                    )),
                    hec::Endpoint::Raw => Box::new(http::RowJson),
                };
                // The raw endpoint's fields are fixed (checked at load): render them once.
                let fixed = |t: &Option<Template>| t.as_ref().map(Template::fixed_text);
                let mut query = Vec::new();
                for (k, v) in [
                    ("index", fixed(index)),
                    ("sourcetype", fixed(sourcetype)),
                    ("source", fixed(source)),
                    ("host", host.clone()),
                ] {
                    if let Some(v) = v {
                        query.push((k, v));
                    }
                }
                let deliver = hec::HecDeliver::new(
                    client,
                    endpoint,
                    *api,
                    &query,
                    token.expose(),
                    ack.clone(),
                );
                (encode, Box::new(deliver))
            }
            Buffered::Elasticsearch {
                endpoint,
                index,
                auth,
                ecs,
                gzip,
                tls,
                timeout,
            } => {
                let client = Client::new(endpoint, tls, *timeout, *gzip)?;
                (
                    Box::new(elastic::BulkEncode::new(index.clone(), *ecs)),
                    Box::new(elastic::BulkDeliver::new(
                        client,
                        endpoint,
                        auth.as_ref().map(|a| a.expose().to_string()),
                    )),
                )
            }
            Buffered::Http {
                url,
                format,
                headers,
                gzip,
                tls,
                timeout,
            } => {
                let client = Client::new(url.expose(), tls, *timeout, *gzip)?;
                let headers = headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_string()))
                    .collect();
                (
                    Box::new(http::RowJson),
                    Box::new(http::HttpDeliver::new(
                        client,
                        url.expose().to_string(),
                        *format,
                        headers,
                    )),
                )
            }
            Buffered::Kafka {
                bootstrap_servers,
                topic,
                key,
                properties,
                timeout,
            } => {
                let props: Vec<(String, String)> = properties
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_string()))
                    .collect();
                let deliver = kafka::KafkaDeliver::new(bootstrap_servers, &props, *timeout)
                    .map_err(|e| std::io::Error::other(format!("sink '{name}': {e}")))?;
                (
                    Box::new(kafka::RecordEncode::new(topic.clone(), key.clone())),
                    Box::new(deliver),
                )
            }
        })
    }
}

/// `[[sinks]]` into settings; problems go to `errors` as `file: sink 'name': field: …`,
/// and a `${VAR}` that cannot be expanded to `env` (with its place).
pub(super) fn sink_settings(
    raw: &[SinkConfig],
    base: &Path,
    file: &str,
    env: &Env,
    errors: &mut Vec<String>,
) -> Vec<SinkSettings> {
    let mut sinks: Vec<SinkSettings> = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let name = sink_name(s);
        let twice = sinks.iter().any(|k| k.name() == name);
        if twice {
            errors.push(format!("{file}: sink '{name}' is defined twice"));
        }
        let mut c = Check {
            errors: &mut *errors,
            prefix: format!("{file}: sink '{name}'"),
            env: env.scope(&["sinks", &i.to_string()], format!("sink '{name}': ")),
        };
        if !valid_sink_name(name) {
            c.error(
                "name",
                "letters, digits, '_' and '-' only (it names the sink's buffer folder and labels its metrics)",
            );
        }
        let sink = one_sink(s, name, base, &mut c);
        // Two buffers in one folder would read and delete each other's segments. (A name
        // given twice is reported above: its default folders are the same.)
        if let (false, Some(dir)) = (twice, buffer_dir(&sink)) {
            if let Some(other) = sinks.iter().find(|k| buffer_dir(k) == Some(dir)) {
                c.error(
                    "buffer.dir",
                    format!(
                        "sink '{}' buffers in the same folder (each sink needs its own)",
                        other.name()
                    ),
                );
            }
        }
        sinks.push(sink);
    }
    sinks
}

fn buffer_dir(s: &SinkSettings) -> Option<&Path> {
    match s {
        SinkSettings::Buffered { delivery, .. } => Some(&delivery.buffer_dir),
        SinkSettings::File { .. } => None,
    }
}

fn valid_sink_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn sink_name(s: &SinkConfig) -> &str {
    match s {
        SinkConfig::File { name, .. }
        | SinkConfig::Syslog { name, .. }
        | SinkConfig::SplunkHec { name, .. }
        | SinkConfig::Elasticsearch { name, .. }
        | SinkConfig::Http { name, .. }
        | SinkConfig::Kafka { name, .. } => name,
    }
}

/// Collects one sink's problems.
struct Check<'a> {
    errors: &'a mut Vec<String>,
    prefix: String,
    env: Scope<'a>,
}

impl Check<'_> {
    fn error(&mut self, field: &str, e: impl std::fmt::Display) {
        self.errors.push(format!("{}: {field}: {e}", self.prefix));
    }

    /// `${ENV}` filled in; the error names the field, the variable and its place, never a
    /// value. `None` once reported, so that no second error follows from the same mistake.
    /// `field` is a dotted key (`tls.ca_file`); see [`Check::text_at`] for keys with dots.
    fn text(&mut self, field: &str, v: &str) -> Option<String> {
        self.env.text(&field.split('.').collect::<Vec<_>>(), v)
    }

    /// [`Check::text`] of the key path `key` (`["properties", "sasl.password"]`).
    fn text_at(&mut self, key: &[&str], v: &str) -> Option<String> {
        self.env.text(key, v)
    }

    fn opt(&mut self, field: &str, v: &Option<String>) -> Option<String> {
        self.text(field, v.as_ref()?)
    }

    fn span(&mut self, field: &str, v: &Option<String>, default: Duration) -> Duration {
        let mut d = default;
        let mut err = |w: &str, e: String| self.error(w, e);
        set_span(field, v, &mut d, &mut err);
        d
    }

    /// A request or acknowledgement timeout: zero would fail (or, for Kafka, never end)
    /// every delivery.
    fn timeout(&mut self, field: &str, v: &Option<String>, default: Duration) -> Duration {
        let d = self.span(field, v, default);
        if d.is_zero() {
            self.error(field, "must be more than zero");
            return default;
        }
        d
    }

    fn template(&mut self, field: &str, v: &Option<String>, lowercase: bool) -> Option<Template> {
        let text = self.opt(field, v)?;
        Template::parse(&text, lowercase)
            .map_err(|e| self.error(field, e))
            .ok()
    }

    /// One of `allowed`, or the first (the default) when unset.
    fn choice<'v>(&mut self, field: &str, v: &'v Option<String>, allowed: &[&'v str]) -> &'v str {
        match v.as_deref() {
            None => allowed[0],
            Some(x) if allowed.contains(&x) => x,
            Some(x) => {
                self.error(field, format!("'{x}' is not one of {}", allowed.join(", ")));
                allowed[0]
            }
        }
    }

    fn gzip(&mut self, v: &Option<String>) -> bool {
        self.choice("compression", v, &["gzip", "none"]) == "gzip"
    }

    /// An `http(s)://` URL. Errors never quote it: a query may hold a key.
    /// HEC and Elasticsearch take their credentials in fields of their own, which stay
    /// secret; a `user:pass@` in the endpoint would not.
    fn no_credentials(&mut self, endpoint: &str) {
        let authority = endpoint
            .split_once("://")
            .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
        if authority.contains('@') {
            self.error(
                "endpoint",
                "holds credentials: give them as token, api_key, or username and password",
            );
        }
    }

    fn url(&mut self, field: &str, v: &str) -> String {
        let Some(u) = self.text(field, v) else {
            return String::new();
        };
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            self.error(field, "must start with http:// or https://");
        } else if let Err(e) = reqwest::Url::parse(&u) {
            self.error(field, format!("is not a URL ({e})"));
        }
        u
    }

    fn tls(&mut self, t: &Option<TlsConfig>, base: &Path) -> Tls {
        let t = match t {
            Some(t) => t,
            None => return Tls::default(),
        };
        let cert = self.opt("tls.cert_file", &t.cert_file);
        let key = self.opt("tls.key_file", &t.key_file);
        let client = match (cert, key) {
            (Some(c), Some(k)) => Some(crate::forward::http::ClientCert {
                cert_file: base.join(c),
                key_file: base.join(k),
            }),
            (None, None) => None,
            // Given, but its variable is missing: reported.
            _ if t.cert_file.is_some() && t.key_file.is_some() => None,
            (Some(_), None) => {
                self.error("tls.key_file", "missing (cert_file needs its key)");
                None
            }
            (None, Some(_)) => {
                self.error("tls.cert_file", "missing (key_file needs its certificate)");
                None
            }
        };
        Tls {
            verify: t.verify.unwrap_or(true),
            ca_file: self.opt("tls.ca_file", &t.ca_file).map(|f| base.join(f)),
            client,
        }
    }

    fn delivery(
        &mut self,
        name: &str,
        buffer: &Option<BufferConfig>,
        batch: &Option<BatchConfig>,
        base: &Path,
        in_flight: usize,
    ) -> Delivery {
        let buffer_default = BufferConfig::default();
        let b = buffer.as_ref().unwrap_or(&buffer_default);
        let dir = match self.opt("buffer.dir", &b.dir) {
            Some(d) => base.join(d),
            None => base.join("buffers").join(name),
        };
        let mut d = Delivery::new(dir);
        if let Some(m) = b.max_bytes {
            d.max_buffer_bytes = m;
        }
        d.when_full = match self.choice("buffer.when_full", &b.when_full, &["block", "drop_newest"])
        {
            "drop_newest" => WhenFull::DropNewest,
            _ => WhenFull::Block,
        };
        let batch_default = BatchConfig::default();
        let t = batch.as_ref().unwrap_or(&batch_default);
        if let Some(n) = t.max_events {
            if n == 0 {
                self.error("batch.max_events", "must be at least 1");
            }
            d.max_events = n.max(1);
        }
        if let Some(n) = t.max_bytes {
            if n == 0 {
                self.error("batch.max_bytes", "must be at least 1");
            }
            d.max_bytes = n.max(1);
        }
        d.linger = self.span("batch.timeout", &t.timeout, d.linger);
        d.max_in_flight = match t.max_in_flight {
            Some(0) => {
                self.error("batch.max_in_flight", "must be at least 1");
                1
            }
            Some(n) => n,
            None => in_flight,
        };
        d
    }
}

fn one_sink(s: &SinkConfig, name: &str, base: &Path, c: &mut Check<'_>) -> SinkSettings {
    let buffered = |c: &mut Check<'_>, buffer, batch, kind: Buffered| SinkSettings::Buffered {
        name: name.to_string(),
        delivery: c.delivery(name, buffer, batch, base, kind.default_in_flight()),
        kind,
    };
    match s {
        SinkConfig::File { path, .. } => SinkSettings::File {
            name: name.to_string(),
            path: base.join(c.text("path", path).unwrap_or_default()),
        },
        SinkConfig::Syslog {
            address,
            protocol,
            framing,
            rfc,
            format,
            facility,
            hostname,
            fields,
            leef_delimiter,
            tls,
            timeout,
            buffer,
            batch,
            ..
        } => {
            let address = c.text("address", address);
            let unset = address.is_none();
            let address = address.unwrap_or_default();
            let protocols = ["tcp", "tls", "udp", "relp", "relp_tls"];
            let protocol = match c.choice("protocol", protocol, &protocols) {
                "tls" => Protocol::Tls,
                "udp" => Protocol::Udp,
                "relp" => Protocol::Relp,
                "relp_tls" => Protocol::RelpTls,
                _ => Protocol::Tcp,
            };
            let framing = match c.choice("framing", framing, &["octet_counting", "lf"]) {
                "lf" => Framing::Lf,
                _ => Framing::OctetCounting,
            };
            let rfc = match c.choice("rfc", rfc, &["5424", "3164"]) {
                "3164" => Rfc::Rfc3164,
                _ => Rfc::Rfc5424,
            };
            let format = match c.choice("format", format, &["json", "cef", "leef"]) {
                "cef" => Format::Cef,
                "leef" => Format::Leef,
                _ => Format::Json,
            };
            let facility = facility.unwrap_or(16);
            let hostname = match hostname {
                Some(h) => c.text("hostname", h).unwrap_or_default(),
                None => std::env::var("HOSTNAME").unwrap_or_else(|_| "hubwatch".into()),
            };
            let fields = fields
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), c.text_at(&["fields", k], v)?)))
                .collect();
            let leef_delimiter = match leef_delimiter {
                None => crate::forward::leef::TAB,
                Some(d) => crate::forward::leef::parse_delimiter(d).unwrap_or_else(|e| {
                    c.error("leef_delimiter", e);
                    crate::forward::leef::TAB
                }),
            };
            let settings = SyslogSettings {
                address,
                protocol,
                framing,
                rfc,
                format,
                facility,
                hostname,
                tls: c.tls(tls, base),
                fields,
                leef_delimiter,
                timeout: c.span("timeout", timeout, Duration::from_secs(10)),
            };
            for p in settings.problems() {
                // An address whose variable is unset is reported already, not also as empty.
                if !(unset && p.starts_with("address:")) {
                    c.errors.push(format!("{}: {p}", c.prefix));
                }
            }
            buffered(c, buffer, batch, Buffered::Syslog(settings))
        }
        SinkConfig::SplunkHec {
            endpoint,
            token,
            api,
            index,
            sourcetype,
            source,
            host,
            compression,
            indexer_ack,
            ack_timeout,
            tls,
            timeout,
            buffer,
            batch,
            ..
        } => {
            let endpoint = c.url("endpoint", endpoint);
            c.no_credentials(&endpoint);
            let token = c.text("token", token);
            if token.as_deref() == Some("") {
                c.error(
                    "token",
                    "is empty (set it, e.g. token = \"${SPLUNK_HEC_TOKEN}\")",
                );
            }
            let token = Redacted::new(token.unwrap_or_default());
            let api = match c.choice("api", api, &["event", "raw"]) {
                "raw" => crate::forward::hec::Endpoint::Raw,
                _ => crate::forward::hec::Endpoint::Event,
            };
            let index = c.template("index", index, true);
            let sourcetype = c.template("sourcetype", sourcetype, false);
            let source = c.template("source", source, false);
            if api == crate::forward::hec::Endpoint::Raw {
                for (field, t) in [
                    ("index", &index),
                    ("sourcetype", &sourcetype),
                    ("source", &source),
                ] {
                    if t.as_ref().is_some_and(|t| !t.is_fixed()) {
                        c.error(
                            field,
                            "the raw endpoint takes one value per request: no {fields} or %dates",
                        );
                    }
                }
            }
            let ack = if *indexer_ack {
                Some(crate::forward::hec::IndexerAck {
                    timeout: c.timeout("ack_timeout", ack_timeout, Duration::from_secs(120)),
                })
            } else {
                if ack_timeout.is_some() {
                    c.error("ack_timeout", "applies with indexer_ack = true only");
                }
                None
            };
            let kind = Buffered::Hec {
                endpoint,
                token,
                api,
                index,
                sourcetype,
                source,
                host: c.opt("host", host),
                gzip: c.gzip(compression),
                ack,
                tls: c.tls(tls, base),
                timeout: c.timeout("timeout", timeout, Duration::from_secs(30)),
            };
            buffered(c, buffer, batch, kind)
        }
        SinkConfig::Elasticsearch {
            endpoint,
            index,
            api_key,
            username,
            password,
            ecs,
            compression,
            tls,
            timeout,
            buffer,
            batch,
            ..
        } => {
            let endpoint = c.url("endpoint", endpoint);
            c.no_credentials(&endpoint);
            // Which were given decides; a value whose variable is unset is reported already.
            let given = (api_key.is_some(), username.is_some(), password.is_some());
            let api_key = c.opt("api_key", api_key);
            let user = c.opt("username", username);
            let password = c.opt("password", password);
            let auth = match given {
                (true, false, false) => api_key.map(|k| format!("ApiKey {k}")),
                (false, true, true) => user.zip(password).map(|(u, p)| {
                    use base64::Engine as _;
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                    )
                }),
                (false, false, false) => None,
                (true, _, _) => {
                    c.error("api_key", "give either api_key, or username and password");
                    None
                }
                (false, true, false) => {
                    c.error("password", "missing (username needs a password)");
                    None
                }
                (false, false, true) => {
                    c.error("username", "missing (password needs a username)");
                    None
                }
            };
            let kind = Buffered::Elasticsearch {
                endpoint,
                index: c.template("index", index, true),
                auth: auth.map(Redacted::new),
                ecs: *ecs,
                gzip: c.gzip(compression),
                tls: c.tls(tls, base),
                timeout: c.timeout("timeout", timeout, Duration::from_secs(30)),
            };
            buffered(c, buffer, batch, kind)
        }
        SinkConfig::Http {
            url,
            format,
            headers,
            compression,
            tls,
            timeout,
            buffer,
            batch,
            ..
        } => {
            let url = Redacted::new(c.url("url", url));
            let format = match c.choice("format", format, &["ndjson", "json_array"]) {
                "json_array" => BodyFormat::JsonArray,
                _ => BodyFormat::Ndjson,
            };
            let headers = headers
                .iter()
                .filter_map(|(k, v)| {
                    let v = c.text_at(&["headers", k], v)?;
                    Some((k.clone(), Redacted::new(v)))
                })
                .collect();
            let kind = Buffered::Http {
                url,
                format,
                headers,
                gzip: c.gzip(compression),
                tls: c.tls(tls, base),
                timeout: c.timeout("timeout", timeout, Duration::from_secs(30)),
            };
            buffered(c, buffer, batch, kind)
        }
        SinkConfig::Kafka {
            bootstrap_servers,
            topic,
            key,
            properties,
            timeout,
            buffer,
            batch,
            ..
        } => {
            let servers = c.text("bootstrap_servers", bootstrap_servers);
            if servers.as_deref() == Some("") {
                c.error("bootstrap_servers", "is empty (host:port,host:port)");
            }
            let servers = servers.unwrap_or_default();
            let topic = c
                .template("topic", &Some(topic.clone()), false)
                .unwrap_or_else(|| Template::parse("hubwatch", false).expect("a valid template"));
            // Kafka takes letters, digits, `.`, `_` and `-` in a topic's name (what the
            // fields fill in — table, route and source names — are such already): a name
            // the broker refuses would send every record to the dead-letter file.
            let fixed = topic.fixed_text();
            if let Some(bad) = fixed
                .chars()
                .find(|ch| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')))
            {
                c.error(
                    "topic",
                    format!("{bad:?} cannot be in a Kafka topic's name (letters, digits, '.', '_', '-')"),
                );
            }
            let properties = properties
                .iter()
                .filter_map(|(k, v)| {
                    let v = c.text_at(&["properties", k], v)?;
                    Some((k.clone(), Redacted::new(v)))
                })
                .collect();
            let kind = Buffered::Kafka {
                bootstrap_servers: servers,
                topic,
                key: c.opt("key", key),
                properties,
                timeout: c.timeout("timeout", timeout, Duration::from_secs(30)),
            };
            buffered(c, buffer, batch, kind)
        }
    }
}

#[cfg(test)]
#[path = "sinks_tests.rs"]
mod tests;
