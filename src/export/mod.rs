//! What leaves hubwatch: result formats, Prometheus exposition of query results, and the
//! admin HTTP server (`/metrics`, `/api/v1/queries`, `/healthz`, `/readyz`).
//!
//! The admin server shares the process with ingestion, so it is bounded: connections are
//! capped and timed out (`server.rs`), and answers are rendered once for all the clients
//! that ask at about the same time, away from the engine (`render.rs`). It can serve over
//! TLS, with client certificates (`tls.rs`), and ask for basic authentication (`auth.rs`).
//! Its settings are `[export]`'s ([`AdminSettings`]).

pub mod auth;
pub mod events;
pub mod format;
pub mod http;
pub mod prom;
pub mod render;
pub mod server;
pub mod tls;

use std::time::Duration;

/// The admin server's bounds, from `[export]` (validated in `config`).
#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    /// Connections open at once; `None`: [`AdminSettings::DEFAULT_MAX_CONNECTIONS`], at most
    /// a quarter of the open-file limit.
    pub max_connections: Option<usize>,
    /// A request's head must arrive within this of its first byte.
    pub header_read_timeout: Duration,
    /// A connection without a request (or whose response stopped moving) is closed after
    /// this.
    pub idle_timeout: Duration,
    /// At shutdown, requests in progress get this long; then their connections are dropped.
    pub drain_timeout: Duration,
    /// A `/metrics` render this young is served again instead of asking the engine.
    pub metrics_max_age: Duration,
    /// `[export.tls]`: serve HTTPS.
    pub tls: Option<tls::TlsSettings>,
    /// `[export.basic_auth_users]`: user and bcrypt hash; empty: no authentication.
    pub basic_auth_users: Vec<(String, String)>,
    /// Serve `/api/v1/queries` (the query results as JSON).
    pub query_api: bool,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            max_connections: None,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            drain_timeout: Duration::from_secs(5),
            metrics_max_age: Duration::ZERO,
            tls: None,
            basic_auth_users: Vec::new(),
            query_api: true,
        }
    }
}

impl AdminSettings {
    pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

    /// The bounds for the server, the cap resolved against this process's open-file limit.
    pub fn limits(&self) -> server::Limits {
        let files = open_files_limit();
        let quarter = files.map(|n| (n / 4).max(1) as usize);
        let max_connections = match self.max_connections {
            Some(n) => {
                if let (Some(q), Some(files)) = (quarter, files) {
                    if n > q {
                        tracing::warn!(
                            max_connections = n,
                            open_files_limit = files,
                            "[export] max_connections is more than a quarter of the open-file limit: admin connections could take the descriptors ingestion and checkpoints need"
                        );
                    }
                }
                n
            }
            None => quarter.map_or(Self::DEFAULT_MAX_CONNECTIONS, |q| {
                q.min(Self::DEFAULT_MAX_CONNECTIONS)
            }),
        };
        server::Limits {
            max_connections,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            drain_timeout: self.drain_timeout,
        }
    }
}

/// The soft limit on open files (RLIMIT_NOFILE), from `/proc/self/limits`; `None` where that
/// is not there or says `unlimited`.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&text)
}

fn parse_open_files(limits: &str) -> Option<u64> {
    // `Max open files            1024                 1048576              files`
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_read_from_proc() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            256                  4096                 files     \n";
        assert_eq!(parse_open_files(text), Some(256));
        let unlimited = text.replace("256 ", "unlimited ");
        assert_eq!(parse_open_files(&unlimited), None);
        if cfg!(target_os = "linux") {
            assert!(open_files_limit().is_some());
        }
    }

    #[test]
    fn the_default_cap_is_256_or_a_quarter_of_the_open_file_limit() {
        let cap = AdminSettings::default().limits().max_connections;
        match open_files_limit() {
            Some(n) => assert_eq!(cap, ((n / 4).max(1) as usize).min(256)),
            None => assert_eq!(cap, 256),
        }
        let given = AdminSettings {
            max_connections: Some(3),
            ..AdminSettings::default()
        };
        assert_eq!(given.limits().max_connections, 3);
    }
}
