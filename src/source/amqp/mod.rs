//! The Event Hubs source over AMQP 1.0, on the official SDK (`azure_messaging_eventhubs`).
//!
//! Every partition is read by its own task, concurrently; batches go to the pipeline with
//! backpressure, acknowledged positions go to the checkpoint store, and after any error a
//! partition reconnects (capped exponential backoff with jitter) strictly after the last
//! event it handed on — so no event is skipped or delivered twice by a reconnect. The SDK's
//! own recovery is switched off because it re-attaches at the *original* start position.
//!
//! - `config.rs`: [`AmqpSourceConfig`] and its parts, [`Backoff`].
//! - `connection.rs`: connection strings (SAS key, signature, emulator), redaction.
//! - `client.rs`: opening SDK clients (SAS or Entra ID); classifying SDK errors.
//! - `position.rs`: where a receiver opens; replay and gap checks.
//! - `partition.rs`: one partition's reader task; batching.
//! - `progress.rs`: acknowledgements → tracker → commits.
//! - `metrics.rs`: per-partition statistics and their Prometheus series.
//! - `readers.rs`: the running partition readers, each stoppable on its own.
//! - `ownership.rs`: partitions claimed from other replicas through the checkpoint store's
//!   ownership records (with a blob store), like the Azure SDKs' event processors.
//! - `source.rs`: [`AmqpSource`]: discovery, the readers (all partitions, or the owned
//!   ones), forwarding, drain.

mod client;
mod config;
mod connection;
pub(crate) mod metrics;
mod ownership;
mod partition;
mod position;
pub(crate) mod progress;
mod readers;
mod renew;
mod source;

pub(crate) use client::entra_credential;
pub(crate) use config::random_unit;
pub use config::{AmqpSourceConfig, Auth, Backoff, EntraKind, OwnershipSettings, StartPosition};
pub use connection::{scrub, ConnectionString, ConnectionStringError, Redacted, SasAuth};
pub use metrics::{AmqpSourceMetrics, ErrorCounts, PartitionState, PartitionStats};
pub use source::AmqpSource;

use crate::checkpoint::{CheckpointError, CommitError};

/// Why an AMQP source stopped. None of these texts holds a key or a signature.
#[derive(Debug, thiserror::Error)]
pub enum AmqpSourceError {
    /// The configuration cannot work (caught before connecting).
    #[error("source '{source_name}': {message}")]
    Config {
        source_name: String,
        message: String,
    },
    /// The service refused the credentials (wrong key, expired signature, missing role).
    #[error("Event Hubs refused the credentials for {target}: {status}: {detail}")]
    Unauthorized {
        /// `<namespace>/<hub>`.
        target: String,
        /// E.g. `401 Unauthorized`.
        status: String,
        detail: String,
    },
    /// The event hub, consumer group or partition does not exist.
    #[error("{target}: not found: {detail}")]
    NotFound { target: String, detail: String },
    /// Any other failure that reconnecting cannot fix.
    #[error("{target}: {detail}")]
    Service { target: String, detail: String },
    #[error("loading the checkpoints: {0}")]
    Checkpoint(#[source] CheckpointError),
    #[error("committing positions: {0}")]
    Commit(#[from] CommitError),
}
