//! What leaves hubwatch: result formats, Prometheus exposition of query results, and the
//! admin HTTP server (`/metrics`, `/api/v1/queries`, `/healthz`, `/readyz`).

pub mod format;
pub mod http;
pub mod prom;
