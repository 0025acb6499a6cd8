//! Configuration in two stages: the serde tree below mirrors the TOML file (unknown fields
//! are errors, every field documented), and [`validate`] turns it into typed [`Settings`],
//! reporting every problem at once with its place.

mod amqp;
mod checkpoint;
mod env;
mod kafka;
mod sinks;
mod validate;

use serde::Deserialize;

pub use checkpoint::{BlobAccess, BlobSettings, CheckpointSettings, StoreSettings, Stores};
pub use sinks::{Buffered, SinkConfig, SinkSettings};
pub use validate::{load, load_text, ConfigErrors, Settings, SourceSettings};

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The admin HTTP server: `/metrics`, `/api/v1/queries`, `/healthz`, `/readyz`.
    #[serde(default)]
    pub export: ExportConfig,
    /// Bounds on input and state.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Where rejected bodies and records are written (NDJSON). Off when absent.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
    /// Where acknowledged positions are kept. Off when absent (every start reads from the
    /// beginning of its inputs).
    #[serde(default)]
    pub checkpoint: Option<CheckpointConfig>,
    /// Inputs.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Queries, inline.
    #[serde(default)]
    pub queries: Vec<QueryConfig>,
    /// More files of `[[queries]]`, relative to this file's folder (the default Azure ML
    /// pack is `aml-queries.toml`).
    #[serde(default)]
    pub query_files: Vec<String>,
    /// Where routed rows go.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// Which rows go to which sinks, in KQL.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// A route: the rows of a table that go to some sinks, or a query's results.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The route's name (in the forwarded rows and in metrics).
    pub name: String,
    /// A KQL pipeline over one table: `where`, `extend`, `project`, `project-away`.
    pub kql: Option<toml::Spanned<String>>,
    /// Instead of `kql`: a `[[queries]]` entry (`summarize … by bin(TimeGenerated, …)`)
    /// whose result rows go out as each tumbling bin closes.
    pub query: Option<String>,
    /// The sinks, by name.
    pub sinks: Vec<String>,
    /// For the sinks that have such fields (templates: `{table}`, `{route}`, `%Y`…):
    /// the Splunk index or Elasticsearch index / data stream,
    pub index: Option<String>,
    /// the Splunk sourcetype,
    pub sourcetype: Option<String>,
    /// the Splunk source.
    pub source: Option<String>,
    /// `omit` (the default) leaves null columns out of the row; `keep` writes them as
    /// `null`, as the Log Analytics query API does.
    pub nulls: Option<String>,
    /// What goes out: `row` (the Log Analytics row, the default) or `record` (the record
    /// as it was in the body, byte for byte; the KQL still selects which).
    pub output: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Address of the admin HTTP server. Default `0.0.0.0:9393`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Admin connections open at once. At the cap a new connection is still taken, and the
    /// one that has waited longest without a request in progress is closed to make room;
    /// when all are busy answering, new ones wait in the backlog. Default 256, but at most a
    /// quarter of the process's open-file limit (`ulimit -n`), so that scrapers can never
    /// take the descriptors ingestion and checkpoints need.
    pub max_connections: Option<usize>,
    /// A request's head (request line and headers) must arrive within this of its first
    /// byte, or the connection is closed (timespan). Default `10s`.
    pub header_read_timeout: Option<String>,
    /// A connection waiting this long for a request, or whose response has not moved for
    /// this long, is closed (timespan). Default `90s` (keeps a scraper's connection
    /// across a 1 m scrape interval).
    pub idle_timeout: Option<String>,
    /// At shutdown, requests in progress get this long to finish; then their connections
    /// are dropped (timespan). Connections waiting for a request close at once. Default `5s`.
    pub drain_timeout: Option<String>,
    /// A `/metrics` answer rendered less than this long ago is served again instead of
    /// asking the engine for a new copy (timespan, up to `1m`), and for four times as long as
    /// its render took if that is longer (about 3 s per render at 1 M series): renders then
    /// take at most a quarter of the engine's time however many scrape. `0s`: only that,
    /// and scrapes that arrive while a render runs share it. The query API shares only
    /// overlapping requests' answers. Default `0s`.
    pub metrics_max_age: Option<String>,
    /// Serve `/api/v1/queries` (every query's rows as JSON). Default true; `false` leaves
    /// `/metrics` and the probes only.
    pub query_api: Option<bool>,
    /// Serve HTTPS (exporter-toolkit's `tls_server_config`).
    pub tls: Option<ExportTls>,
    /// User → bcrypt hash (`htpasswd -nBC 10 USER`): every path but `/healthz` and
    /// `/readyz` then asks for basic authentication (exporter-toolkit's `basic_auth_users`).
    pub basic_auth_users: Option<std::collections::BTreeMap<String, String>>,
}

/// `[export.tls]`: the names are exporter-toolkit's. Paths are relative to the
/// configuration file and may use `${VAR}`; the files are loaded again when they change.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExportTls {
    /// The server's certificate chain (PEM), leaf first.
    pub cert_file: Option<String>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<String>,
    /// CA certificates (PEM) client certificates must chain to.
    pub client_ca_file: Option<String>,
    /// `NoClientCert` (default), `VerifyClientCertIfGiven` or `RequireAndVerifyClientCert`.
    pub client_auth_type: Option<String>,
    /// `TLS12` (default) or `TLS13`.
    pub min_version: Option<String>,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            listen: default_listen(),
            max_connections: None,
            header_read_timeout: None,
            idle_timeout: None,
            drain_timeout: None,
            metrics_max_age: None,
            query_api: None,
            tls: None,
            basic_auth_users: None,
        }
    }
}

impl ExportConfig {
    /// The admin server's typed settings (`listen` is read with the other `${VAR}`s).
    pub fn settings(&self, file: &str, errors: &mut Vec<String>) -> crate::export::AdminSettings {
        let mut s = crate::export::AdminSettings::default();
        let mut error = |what: &str, e: String| errors.push(format!("{file}: export.{what}: {e}"));
        if self.max_connections == Some(0) {
            error("max_connections", "must be at least 1".into());
        } else {
            s.max_connections = self.max_connections;
        }
        let defaults = s.clone();
        let (h, i, d, r) = (
            &mut s.header_read_timeout,
            &mut s.idle_timeout,
            &mut s.drain_timeout,
            &mut s.metrics_max_age,
        );
        validate::set_span(
            "header_read_timeout",
            &self.header_read_timeout,
            h,
            &mut error,
        );
        validate::set_span("idle_timeout", &self.idle_timeout, i, &mut error);
        validate::set_span("drain_timeout", &self.drain_timeout, d, &mut error);
        validate::set_span("metrics_max_age", &self.metrics_max_age, r, &mut error);
        if h.is_zero() {
            error("header_read_timeout", "must be longer than 0".into());
            *h = defaults.header_read_timeout;
        }
        if i.is_zero() {
            error("idle_timeout", "must be longer than 0".into());
            *i = defaults.idle_timeout;
        }
        if s.metrics_max_age > std::time::Duration::from_secs(60) {
            error(
                "metrics_max_age",
                "must be at most 1m (metrics older than a scrape interval mislead)".into(),
            );
            s.metrics_max_age = defaults.metrics_max_age;
        }
        s.query_api = self.query_api.unwrap_or(true);
        s
    }
}

impl ExportConfig {
    /// `basic_auth_users`, checked; `expand` reads a value's `${VAR}`s (a hash can come from
    /// a Secret's environment variable; a hash itself has no `${`).
    pub fn users(
        &self,
        file: &str,
        expand: impl Fn(&str, &str) -> Option<String>,
        errors: &mut Vec<String>,
    ) -> Vec<(String, String)> {
        let mut users = Vec::new();
        for (user, value) in self.basic_auth_users.iter().flatten() {
            let error = |e: String| format!("{file}: export.basic_auth_users: user {user:?}: {e}");
            let Some(hash) = expand(user, value) else {
                continue;
            };
            // The hash is never quoted: it is as good as a password to anyone with time.
            if user.is_empty() || user.contains(':') {
                errors.push(error("must be non-empty and without ':'".into()));
            } else if hash.parse::<bcrypt::HashParts>().is_err() {
                errors.push(error(format!(
                    "the value is not a bcrypt hash (make one with `htpasswd -nBC 10 {user}`)"
                )));
            } else {
                users.push((user.clone(), hash));
            }
        }
        users
    }
}

impl ExportTls {
    /// The checked settings; `None` (with errors) when incomplete. `path` expands `${VAR}`s
    /// and resolves a path against the configuration file's folder.
    pub fn settings(
        &self,
        file: &str,
        path: impl Fn(&str, &str) -> Option<std::path::PathBuf>,
        errors: &mut Vec<String>,
    ) -> Option<crate::export::tls::TlsSettings> {
        use crate::export::tls::{ClientAuth, TlsSettings};
        let n = errors.len();
        let mut error =
            |what: &str, e: String| errors.push(format!("{file}: export.tls.{what}: {e}"));
        let mut required = |key: &str, v: &Option<String>| match v {
            Some(v) => path(key, v),
            None => {
                error(key, "required with [export.tls]".into());
                None
            }
        };
        let cert_file = required("cert_file", &self.cert_file);
        let key_file = required("key_file", &self.key_file);
        let client_ca_file = self
            .client_ca_file
            .as_ref()
            .and_then(|v| path("client_ca_file", v));
        let client_auth = match self
            .client_auth_type
            .as_deref()
            .map(str::parse::<ClientAuth>)
        {
            None => ClientAuth::NoClientCert,
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                error("client_auth_type", e);
                ClientAuth::NoClientCert
            }
        };
        if client_auth != ClientAuth::NoClientCert && self.client_ca_file.is_none() {
            error(
                "client_ca_file",
                "required when client_auth_type checks client certificates".into(),
            );
        }
        let tls13_only = match self.min_version.as_deref() {
            None | Some("TLS12") => false,
            Some("TLS13") => true,
            Some(v) => {
                error(
                    "min_version",
                    format!("{v:?}: TLS12 or TLS13 (older versions are not offered)"),
                );
                false
            }
        };
        if errors.len() > n {
            return None;
        }
        Some(TlsSettings {
            cert_file: cert_file?,
            key_file: key_file?,
            client_ca_file,
            client_auth,
            tls13_only,
        })
    }
}

fn default_listen() -> String {
    "0.0.0.0:9393".to_string()
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Bodies larger than this are rejected (`body_too_large`). Default 32 MiB.
    pub max_body_bytes: Option<usize>,
    /// How long after a tumbling bin's end it stays open for late records (KQL timespan,
    /// e.g. `10m`). Azure delivers logs 3–10 minutes late. Default `10m`.
    pub allowed_lateness: Option<String>,
    /// Default series cap per query. Default 10000.
    pub max_series: Option<usize>,
    /// Default retained rows per query without `summarize`. Default 1000.
    pub max_rows: Option<usize>,
    /// Panes per series of a sliding window before neighbours merge. Default 512.
    pub max_panes: Option<usize>,
    /// How far ahead a record's time may be and still move the event-time clock (KQL
    /// timespan, more than 0). A record more than this after its event arrived (the enqueued
    /// time; the wall clock for files) is kept out of the windows; one more than this ahead
    /// of the clock is held, and moves it only once a second record confirms the jump. Both
    /// are counted in `hubwatch_event_time_future_records_total`. Default `1h`.
    pub max_future: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// NDJSON file, appended to.
    pub path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// A local directory (one replica, or replicas sharing a volume): `checkpoints.json`
    /// (acknowledged positions per source and partition) and `state/` (each partition's
    /// window state, with the position it reflects). Created if missing. Give `dir` or
    /// `[checkpoint.blob]`.
    pub dir: Option<String>,
    /// How often window state is snapshotted and positions committed (KQL timespan). A
    /// position is committed only once the state that absorbed it is stored. Default `5s`.
    pub interval: Option<String>,
    /// An Azure Blob storage container the replicas share: checkpoints and partition
    /// ownership in the Azure SDKs' layout, window state beside them.
    pub blob: Option<BlobConfig>,
    /// Serve global results: every replica reads the other replicas' snapshots and answers
    /// for every partition, not only its own. Default: true with `[checkpoint.blob]`,
    /// false with a `dir` (set it where replicas share the directory).
    pub global_results: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobConfig {
    /// A storage account connection string (`…;AccountName=…;AccountKey=…`), with
    /// `container`. Write `${VARIABLE}` and keep the key in the environment.
    pub connection_string: Option<String>,
    /// The container's name, with `connection_string`.
    pub container: Option<String>,
    /// Instead: the container's URL, `https://<account>.blob.core.windows.net/<container>`,
    /// with a SAS query (`?sv=…&sig=…`), or with `auth`.
    pub container_url: Option<String>,
    /// With `container_url` and no SAS: an Entra ID credential, `workload_identity`,
    /// `managed_identity`, `client_secret`, `azure_cli` or `default`. It needs the
    /// "Storage Blob Data Contributor" role on the container.
    pub auth: Option<String>,
    /// The client id of a user-assigned managed identity (or of the workload identity).
    pub client_id: Option<String>,
    /// The prefix of hubwatch's own blobs (window state; checkpoints of sources other than
    /// event hubs). Default `hubwatch`.
    pub prefix: Option<String>,
    /// How long one request may take (KQL timespan). Default `30s`.
    pub timeout: Option<String>,
}

// Read once at start-up: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Files of bodies, one per line (also directories, and `-` for standard input).
    File {
        /// Name used in checkpoints, metrics and dead letters.
        name: String,
        /// Files, directories or `-`.
        paths: Vec<String>,
        /// Keep reading as files grow. Default false: stop at the end of the input.
        #[serde(default)]
        follow: bool,
    },
    /// An Event Hubs event hub over AMQP 1.0: every partition, concurrently; positions are
    /// committed to `[checkpoint]` (every `checkpoint.interval`).
    Amqp {
        /// Name used in checkpoints, metrics and dead letters.
        name: String,
        /// `Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…`
        /// (or `SharedAccessSignature=…`; the emulator's has `UseDevelopmentEmulator=true`).
        /// Write `${VARIABLE}` and keep the key in the environment.
        connection_string: Option<String>,
        /// `<ns>.servicebus.windows.net`, for Entra ID auth (instead of a connection string).
        fully_qualified_namespace: Option<String>,
        /// Connect here instead of the namespace's address (`amqps://host[:port]`, e.g. a
        /// private endpoint or proxy; `amqp://` for an emulator). Audiences still name the
        /// namespace.
        custom_endpoint: Option<String>,
        /// The event hub. Default: the connection string's `EntityPath`.
        event_hub: Option<String>,
        /// Default `$Default`.
        consumer_group: Option<String>,
        /// `connection_string` (the default with a connection string), or an Entra ID
        /// credential: `workload_identity`, `managed_identity`, `client_secret`, `azure_cli`,
        /// `default` (the default without one).
        auth: Option<String>,
        /// Client id of a user-assigned managed identity (or of the workload identity).
        client_id: Option<String>,
        /// Where a partition without a checkpoint starts (required): `earliest`, `latest`,
        /// `sequence_number:<n>` or `enqueued_time:<RFC 3339>`.
        start: String,
        /// Owner level (epoch) of the receivers: an equal or higher one elsewhere takes a
        /// partition over, and this source then leaves it. Default: none.
        owner_level: Option<i64>,
        /// Events buffered ahead per partition (link credit). Default 300.
        prefetch: Option<u32>,
        /// Events per batch at most. Default 256.
        batch_max_events: Option<usize>,
        /// A partial batch is sent this long after its first event (timespan). Default `200ms`.
        batch_max_wait: Option<String>,
        /// First reconnect delay (timespan); doubles per failure, with jitter. Default `200ms`.
        reconnect_initial: Option<String>,
        /// Longest reconnect delay (timespan). Default `30s`.
        reconnect_max: Option<String>,
        /// How often each partition's last enqueued sequence number is read for the lag
        /// metrics (timespan). Default `30s`.
        lag_poll_interval: Option<String>,
        /// With `[checkpoint.blob]`, replicas share the partitions through ownership records:
        /// this replica's id in them. Default (also when empty): the host name (the pod's)
        /// and a random suffix.
        /// Give a stable one (e.g. a StatefulSet pod's name) to have a restarted replica
        /// take its partitions back at once.
        owner_id: Option<String>,
        /// How often ownership is renewed and rebalanced (timespan). Default `10s`.
        ownership_interval: Option<String>,
        /// A claim not renewed for this long is free to take (timespan; at least 3 times
        /// `ownership_interval`). Default `60s`.
        ownership_expiry: Option<String>,
    },
    /// Event hubs through the Event Hubs Kafka endpoint, or topics of any Kafka-compatible
    /// cluster, in a consumer group: replicas with the same `group_id` share the partitions.
    /// Offsets are committed to the group (not to `[checkpoint]`), only once acknowledged.
    Kafka {
        /// Name used in metrics, dead letters and logs.
        name: String,
        /// Event hubs (topics) to read.
        topics: Vec<String>,
        /// The Kafka consumer group (on Event Hubs: namespace-wide, created on first use).
        group_id: String,
        /// Where a partition without a committed offset starts (required): `earliest` or
        /// `latest`.
        start: String,
        /// An Event Hubs connection string (key based; `${VARIABLE}`): the endpoint becomes
        /// `<namespace>:9093` with SASL_SSL PLAIN `$ConnectionString`.
        connection_string: Option<String>,
        /// `<ns>.servicebus.windows.net`, for Entra ID (OAUTHBEARER).
        fully_qualified_namespace: Option<String>,
        /// With `fully_qualified_namespace`: `workload_identity`, `managed_identity`,
        /// `client_secret`, `azure_cli` or `default` (the default).
        auth: Option<String>,
        /// Client id of a user-assigned managed identity (or of the workload identity).
        client_id: Option<String>,
        /// Any other Kafka cluster: `host:port,…`.
        bootstrap_servers: Option<String>,
        /// With `bootstrap_servers`: `plaintext` (default), `ssl`, `sasl_plaintext`, `sasl_ssl`.
        security_protocol: Option<String>,
        /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
        sasl_mechanism: Option<String>,
        sasl_username: Option<String>,
        /// Write `${VARIABLE}`.
        sasl_password: Option<String>,
        /// A CA bundle (PEM) for TLS instead of the system's.
        ssl_ca_location: Option<String>,
        /// `cooperative-sticky` (default), `range` or `roundrobin`.
        assignment_strategy: Option<String>,
        /// How long a silent replica keeps its partitions (timespan). Default `30s`.
        session_timeout: Option<String>,
        /// Events per batch at most. Default 256.
        batch_max_events: Option<usize>,
        /// A partial batch is sent this long after its first event (timespan). Default `200ms`.
        batch_max_wait: Option<String>,
        /// How often acknowledged offsets are committed (timespan). Default `1s`.
        commit_interval: Option<String>,
        /// More librdkafka properties (strings), applied last.
        #[serde(default)]
        properties: std::collections::BTreeMap<String, String>,
    },
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// The query's name: the prefix of its metrics and its path in the query API.
    pub name: String,
    /// What the query shows (the metrics' HELP text).
    #[serde(default)]
    pub description: String,
    /// The KQL text.
    pub kql: toml::Spanned<String>,
    /// Series cap of this query (default `limits.max_series`).
    pub max_series: Option<usize>,
    /// Retained rows of this query (default `limits.max_rows`).
    pub max_rows: Option<usize>,
}

/// The `[[queries]]` files named by `query_files`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryFile {
    #[serde(default)]
    pub queries: Vec<QueryConfig>,
}

#[cfg(test)]
mod export_tests {
    use super::ExportConfig;
    use crate::export::AdminSettings;
    use std::time::Duration;

    fn settings(toml_text: &str) -> (AdminSettings, Vec<String>) {
        let c: ExportConfig = toml::from_str(toml_text).unwrap();
        let mut errors = Vec::new();
        (c.settings("f.toml", &mut errors), errors)
    }

    #[test]
    fn export_bounds_default_and_parse() {
        let (s, errors) = settings("");
        assert!(errors.is_empty());
        assert_eq!(s, AdminSettings::default());
        let (s, errors) = settings(
            "max_connections = 32\nheader_read_timeout = \"3s\"\nidle_timeout = \"2m\"\ndrain_timeout = \"0s\"\nmetrics_max_age = \"500ms\"\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.max_connections, Some(32));
        assert_eq!(s.header_read_timeout, Duration::from_secs(3));
        assert_eq!(s.idle_timeout, Duration::from_secs(120));
        assert_eq!(s.drain_timeout, Duration::ZERO);
        assert_eq!(s.metrics_max_age, Duration::from_millis(500));
    }

    #[test]
    fn every_bad_export_bound_is_reported_at_once() {
        let (s, errors) = settings(
            "max_connections = 0\nheader_read_timeout = \"0s\"\nidle_timeout = \"soon\"\nmetrics_max_age = \"5m\"\n",
        );
        assert_eq!(
            errors,
            [
                "f.toml: export.max_connections: must be at least 1",
                "f.toml: export.idle_timeout: 'soon' is not a timespan (e.g. 200ms, 30s)",
                "f.toml: export.header_read_timeout: must be longer than 0",
                "f.toml: export.metrics_max_age: must be at most 1m (metrics older than a scrape interval mislead)",
            ]
        );
        // The defaults stand in, so that the rest of the check goes on.
        assert_eq!(s, AdminSettings::default());
        assert!(toml::from_str::<ExportConfig>("max_conections = 3").is_err());
    }

    #[test]
    fn tls_and_users_are_checked_and_hashes_never_quoted() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let (s, _) = settings("query_api = false\n");
        assert!(!s.query_api);
        let c: ExportConfig = toml::from_str(&format!(
            "[basic_auth_users]\nprometheus = {hash:?}\n\"a:b\" = {hash:?}\nbob = \"$2y$10$not-a-hash\"\nenv = \"${{H}}\"\n"
        ))
        .unwrap();
        let mut errors = Vec::new();
        let users = c.users("f.toml", |_, v| Some(v.replace("${H}", &hash)), &mut errors);
        assert_eq!(
            users,
            [
                ("env".to_string(), hash.clone()),
                ("prometheus".to_string(), hash)
            ]
        );
        assert_eq!(
            errors,
            [
                "f.toml: export.basic_auth_users: user \"a:b\": must be non-empty and without ':'",
                "f.toml: export.basic_auth_users: user \"bob\": the value is not a bcrypt hash (make one with `htpasswd -nBC 10 bob`)",
            ]
        );
        let tls = |text: &str| {
            let c: super::ExportTls = toml::from_str(text).unwrap();
            let mut errors = Vec::new();
            let dir = std::path::Path::new("/etc/hubwatch");
            let got = c.settings("f.toml", |_, v| Some(dir.join(v)), &mut errors);
            (got, errors)
        };
        let (got, errors) =
            tls("cert_file = \"tls.crt\"\nkey_file = \"/k\"\nmin_version = \"TLS13\"\n");
        assert!(errors.is_empty(), "{errors:?}");
        let got = got.unwrap();
        assert_eq!(got.cert_file, std::path::Path::new("/etc/hubwatch/tls.crt"));
        assert_eq!(got.key_file, std::path::Path::new("/k"));
        assert!(got.tls13_only);
        let (got, errors) = tls(
            "cert_file = \"c\"\nclient_auth_type = \"RequireAnyClientCert\"\nmin_version = \"TLS11\"\n",
        );
        assert!(got.is_none());
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(
            errors[0],
            "f.toml: export.tls.key_file: required with [export.tls]"
        );
        assert!(
            errors[1].contains("RequireAnyClientCert is not supported"),
            "{errors:?}"
        );
        assert!(
            errors[2].contains("\"TLS11\": TLS12 or TLS13"),
            "{errors:?}"
        );
        let (_, errors) = tls("cert_file = \"c\"\nkey_file = \"k\"\nclient_auth_type = \"RequireAndVerifyClientCert\"\n");
        assert_eq!(
            errors,
            ["f.toml: export.tls.client_ca_file: required when client_auth_type checks client certificates"]
        );
    }
}
