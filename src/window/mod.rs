//! Event-time windows: aggregate state, sliding panes, tumbling bins closed by a watermark,
//! series state and cardinality caps. The KQL plan says *what* to compute; this module owns
//! *how long* state lives.

pub mod agg;
pub(crate) mod encode;
mod persist;
pub mod query;
mod series;
pub mod sketch;

pub use query::{Bins, QueryLimits, QueryState, QueryStats, ResultTable};

#[cfg(test)]
mod query_tests;
