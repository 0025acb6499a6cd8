//! The Kafka source: Event Hubs' Kafka endpoint (or any Kafka-compatible cluster) through
//! librdkafka (`rdkafka`, bundled and built from source; no system package needed).
//!
//! One consumer per source, in a consumer group: replicas with the same `group_id` share the
//! topics' partitions, and librdkafka moves partitions between them (cooperatively by
//! default). At least once: offsets are committed only after the whole pipeline
//! acknowledged every event before them, every `commit_interval`, when a partition is
//! revoked (after the batches in flight are settled) and at shutdown.
//!
//! librdkafka's consumer is driven by polling, and it calls back (rebalances, statistics,
//! token refresh) from inside the poll. So the consumer lives on a thread of its own
//! (`reader.rs`), where a rebalance callback may block while it drains — waiting for the
//! pipeline's outcomes and committing — without holding up the async runtime.
//!
//! - `config.rs`: [`KafkaSourceConfig`], and the librdkafka properties it becomes.
//! - `context.rs`: the librdkafka callbacks: rebalances, statistics, errors, logs, tokens.
//! - `core.rs`: batching, outcomes, commits and per-partition state, shared by the loop and
//!   the callbacks.
//! - `reader.rs`: the consumer thread's loop, and [`KafkaSource`].

mod config;
mod context;
mod core;
mod reader;

pub use config::{
    is_secret_property, ClientProperties, Connection, KafkaSourceConfig, Security, StartOffset,
    EMULATOR_KAFKA_PORT, EVENT_HUBS_KAFKA_PORT,
};
pub use reader::KafkaSource;

/// Why a Kafka source stopped. None of these texts holds a password or key.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    /// librdkafka refused the settings.
    #[error("source '{source_name}': the Kafka client cannot be built: {detail}")]
    Client { source_name: String, detail: String },
    /// The brokers refused the credentials, or the group or topic is not authorized.
    #[error("source '{source_name}': {target} refused the credentials or access: {detail}")]
    Unauthorized {
        source_name: String,
        target: String,
        detail: String,
    },
    /// A failure the client cannot recover from.
    #[error("source '{source_name}': {target}: {detail}")]
    Fatal {
        source_name: String,
        target: String,
        detail: String,
    },
    #[error("source '{source_name}': the consumer thread panicked")]
    Panicked { source_name: String },
}
