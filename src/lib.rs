//! hubwatch: Azure Monitor exports on Event Hubs → Log Analytics rows → continuous KQL →
//! Prometheus metrics and query results.

pub mod kql;
pub mod time;
pub mod window;
pub mod parse;
pub mod schema;
pub mod value;
