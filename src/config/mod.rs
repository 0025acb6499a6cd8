//! Configuration in two stages: the serde tree below mirrors the TOML file (unknown fields
//! are errors, every field documented), and [`validate`] turns it into typed [`Settings`],
//! reporting every problem at once with its place.

mod env;
mod validate;

use serde::Deserialize;

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
    /// JSON file of acknowledged positions per source and partition.
    pub path: String,
    /// How often acknowledged positions are written (KQL timespan). Default `1s`.
    pub interval: Option<String>,
}

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
