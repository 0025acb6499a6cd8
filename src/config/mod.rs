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
pub use validate::{load, ConfigErrors, Settings, SourceSettings};

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
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            listen: default_listen(),
        }
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
