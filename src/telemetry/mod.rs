//! Telemetry: tracing set-up and hubwatch's own metrics.

pub mod metrics;
mod process;

pub use metrics::{Metrics, SinkMetrics};

/// Crates whose INFO lines repeat what hubwatch logs itself, in their own words: the Azure
/// SDK opens and closes a connection per partition and per reconnect and logs each with
/// an `amqps://` URL even for a plain `amqp://` emulator; the AMQP stack logs every link.
/// (librdkafka's lines stay: they are few, and say why a broker connection dropped.)
/// hubwatch's own lines (`receiving source=… partition=… from=…`, `event hub found`, its
/// errors) say what an operator needs, so by default these crates speak from WARN up.
/// `RUST_LOG` replaces the whole default, e.g. `RUST_LOG=info,azure_messaging_eventhubs=debug`.
const QUIET_CRATES: [&str; 7] = [
    "azure_core",
    "azure_core_amqp",
    "azure_identity",
    "azure_messaging_eventhubs",
    "typespec_client_core",
    "fe2o3_amqp",
    "serde_amqp",
];

/// Logs to stderr. `RUST_LOG`, when set, filters; otherwise `default_level` does, with the
/// [`QUIET_CRATES`] held at WARN when it is more verbose than that. Secrets never reach a
/// log line: configuration values are logged only through their redacting `Debug`.
pub fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter(default_level)));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// `info` → `info,azure_core=warn,…`; `warn`, `error`, `off` (and anything that is not a
/// plain level) stay as they are, so that no crate is made louder than the default.
fn default_filter(default_level: &str) -> String {
    use tracing_subscriber::filter::LevelFilter;
    match default_level.trim().parse::<LevelFilter>() {
        Ok(level) if level > LevelFilter::WARN => {
            let mut filter = default_level.trim().to_string();
            for c in QUIET_CRATES {
                filter.push_str(&format!(",{c}=warn"));
            }
            filter
        }
        _ => default_level.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_crates_are_held_at_warn_below_a_verbose_default_only() {
        let f = default_filter("info");
        assert!(f.starts_with("info,"), "{f}");
        for c in QUIET_CRATES {
            assert!(f.contains(&format!(",{c}=warn")), "{f}");
        }
        let _ = tracing_subscriber::EnvFilter::try_new(&f).expect("a valid filter");
        assert_eq!(
            default_filter("off"),
            "off",
            "tests that silence all stay silent"
        );
        assert_eq!(default_filter("warn"), "warn");
        assert_eq!(default_filter("hubwatch=debug"), "hubwatch=debug");
    }
}
