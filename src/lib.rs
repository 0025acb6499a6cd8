//! hubwatch: Azure Monitor exports on Event Hubs → Log Analytics rows → continuous KQL →
//! Prometheus metrics and query results.
//!
//! The folders follow the data:
//!
//! - [`source`]: where bodies come from (file replay, Event Hubs over AMQP, the Kafka
//!   endpoint), each batch carrying an [`ack`] token; positions go to [`checkpoint`] only
//!   once acknowledged.
//! - [`parse`]: bodies → records → typed Log Analytics rows, per the tables in [`schema`]
//!   (the JSON files under `schemas/`); rejects go to the dead-letter output.
//! - [`kql`]: the query language — lexer, parser, checker, compiled plan, evaluator.
//! - [`window`]: event-time windows, aggregate state, series caps.
//! - [`pipeline`]: the engine that ties parse and queries together, its state kept per
//!   source partition, and the commit point: a batch is acknowledged once the window state
//!   that absorbed it is stored.
//! - [`state`]: window-state snapshots (format, stores, where restored partitions resume),
//!   made of [`codec`]'s bytes.
//! - [`blob`]: an Azure Blob storage container (checkpoints, ownership, snapshots).
//! - [`forward`]: KQL routes that send rows on to sinks (SIEMs, files), acknowledged with
//!   the batch.
//! - [`export`]: the admin HTTP server — `/metrics`, the query API, health.
//! - [`config`], [`app`], [`shutdown`], [`telemetry`]: plumbing.

pub mod ack;
pub mod app;
pub mod bench;
pub mod blob;
pub mod checkpoint;
pub mod cli;
pub mod codec;
pub mod config;
pub mod deep_stack;
pub mod demo;
pub mod emulator;
pub mod export;
pub mod forward;
pub mod kql;
pub mod parse;
pub mod pipeline;
pub mod rng;
pub mod schema;
pub mod shutdown;
pub mod source;
pub mod state;
pub mod telemetry;
pub mod time;
pub mod value;
pub mod window;
