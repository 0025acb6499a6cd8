//! Telemetry: tracing set-up and hubwatch's own metrics.

pub mod metrics;

pub use metrics::{Metrics, SinkMetrics};

/// Logs to stderr; `RUST_LOG` (or `--log-level`) filters. Secrets never reach a log line:
/// configuration values are logged only through their redacting `Debug`.
pub fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
