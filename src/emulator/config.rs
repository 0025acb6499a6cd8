//! The emulator's configuration: what namespace it pretends to be, which SAS rules it
//! accepts, which hubs (partitions, consumer groups, retention) exist. Built in code by tests
//! (`EmulatorConfig::single_hub`) or read from TOML by `hubwatch emulator --config FILE`;
//! [`EmulatorConfig::validate`] reports every problem at once before anything listens.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Hard ceilings, so that a typo in a config cannot make the emulator allocate without bound.
/// The real Event Hubs emulator allows 1–32 partitions and 1–20 consumer groups per hub.
pub const MAX_HUBS: usize = 64;
pub const MAX_PARTITIONS: u32 = 128;
pub const MAX_CONSUMER_GROUPS: usize = 64;
/// Count and size limits applied to a partition log whose config leaves them unset: the
/// logs live in memory, so "keep everything" has to mean "keep the last million events,
/// and at most 512 MiB of them".
pub const DEFAULT_MAX_EVENTS: u64 = 1_000_000;
pub const DEFAULT_MAX_BYTES: u64 = 512 * 1024 * 1024;
/// The consumer group every hub has, created whether or not the config names it.
pub const DEFAULT_CONSUMER_GROUP: &str = "$Default";

/// The whole emulator: one namespace, its keys and its hubs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorConfig {
    /// Address to listen on; tests and the demo keep the default loopback with an
    /// ephemeral port (`127.0.0.1:0`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Host name of the namespace, used in token audiences and connection strings
    /// (`localhost` by default). Audiences naming loopback addresses are accepted too.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// SAS rules (`SharedAccessKeyName` / `SharedAccessKey`) whose tokens are accepted.
    /// Default: one `RootManageSharedAccessKey` with a key made at start-up.
    #[serde(default = "default_keys")]
    pub keys: Vec<SasKey>,
    /// The event hubs.
    pub hubs: Vec<HubConfig>,
    /// Accept Microsoft Entra ID tokens (`$cbs` type `jwt`) signed with this key; off by
    /// default. See [`super::jwt`].
    #[serde(default)]
    pub entra: Option<EntraConfig>,
    /// Serve `amqps://` (TLS) with this certificate instead of plain AMQP; off by default.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// The emulator's TLS identity: PEM files of the certificate chain (leaf first) and of its
/// private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Entra ID tokens for tests: the HS256 key the test's token issuer signs with. `Debug`
/// never prints the key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraConfig {
    pub signing_key: String,
}

impl std::fmt::Debug for EntraConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraConfig")
            .field("signing_key", &"<redacted>")
            .finish()
    }
}

/// One SAS authorization rule. `Debug` never prints the key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SasKey {
    /// Rule name (`skn` in a token).
    pub name: String,
    /// The key text, used as-is (not base64-decoded) as the HMAC key, as Event Hubs does.
    pub key: String,
}

impl std::fmt::Debug for SasKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SasKey")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// One event hub.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// Hub name (the `EntityPath`); matched case-insensitively like the service does.
    pub name: String,
    /// Number of partitions, ids `0..partitions`.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Consumer groups; `$Default` is always added.
    #[serde(default)]
    pub consumer_groups: Vec<String>,
    /// What each partition log keeps.
    #[serde(default)]
    pub retention: Retention,
}

/// Retention of one partition log: the oldest events go once any limit is exceeded.
/// Unset count and size limits are [`DEFAULT_MAX_EVENTS`] and [`DEFAULT_MAX_BYTES`]; an
/// unset age means no age limit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Keep at most this many events (default [`DEFAULT_MAX_EVENTS`]).
    #[serde(default)]
    pub max_events: Option<u64>,
    /// Keep at most this many bytes of encoded messages (default [`DEFAULT_MAX_BYTES`]).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Drop events enqueued longer ago than this (`"1h"`, `"30m"`, …).
    #[serde(default, deserialize_with = "de_age")]
    pub max_age: Option<Duration>,
}

impl Retention {
    /// The event count limit actually applied.
    pub fn effective_max_events(&self) -> u64 {
        self.max_events.unwrap_or(DEFAULT_MAX_EVENTS)
    }

    /// The byte limit actually applied.
    pub fn effective_max_bytes(&self) -> u64 {
        self.max_bytes.unwrap_or(DEFAULT_MAX_BYTES)
    }
}

impl EmulatorConfig {
    /// One hub with `partitions` partitions, the default consumer group, the default key,
    /// on `127.0.0.1:0`.
    pub fn single_hub(name: &str, partitions: u32) -> Self {
        EmulatorConfig {
            listen: default_listen(),
            namespace: default_namespace(),
            keys: default_keys(),
            hubs: vec![HubConfig {
                name: name.to_string(),
                partitions,
                consumer_groups: vec![DEFAULT_CONSUMER_GROUP.to_string()],
                retention: Retention::default(),
            }],
            entra: None,
            tls: None,
        }
    }

    /// Reads a TOML file (unknown fields are errors) and validates it.
    pub fn from_toml_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let cfg: EmulatorConfig =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        cfg.validate()
            .map_err(|errs| anyhow::anyhow!("{}:\n  {}", path.display(), errs.join("\n  ")))?;
        Ok(cfg)
    }

    /// Every problem at once, one line each, naming the field.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.keys.is_empty() {
            errors.push("keys: at least one SAS key is needed".to_string());
        }
        for (i, k) in self.keys.iter().enumerate() {
            if k.name.is_empty() || k.key.is_empty() {
                errors.push(format!("keys[{i}]: name and key must not be empty"));
            }
        }
        if self
            .entra
            .as_ref()
            .is_some_and(|e| e.signing_key.is_empty())
        {
            errors.push("entra.signing_key must not be empty".to_string());
        }
        if self.hubs.is_empty() {
            errors.push("hubs: at least one hub is needed".to_string());
        }
        if self.hubs.len() > MAX_HUBS {
            errors.push(format!("hubs: at most {MAX_HUBS} hubs"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, h) in self.hubs.iter().enumerate() {
            let valid_name = !h.name.is_empty()
                && h.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid_name {
                errors.push(format!(
                    "hubs[{i}].name: {:?} is not a hub name (letters, digits, - _ .)",
                    h.name
                ));
            }
            if !seen.insert(h.name.to_ascii_lowercase()) {
                errors.push(format!("hubs[{i}].name: {:?} appears twice", h.name));
            }
            if h.partitions == 0 || h.partitions > MAX_PARTITIONS {
                errors.push(format!(
                    "hubs[{i}].partitions: {} is outside 1..={MAX_PARTITIONS}",
                    h.partitions
                ));
            }
            if h.consumer_groups.len() > MAX_CONSUMER_GROUPS {
                errors.push(format!(
                    "hubs[{i}].consumer_groups: at most {MAX_CONSUMER_GROUPS}"
                ));
            }
            if h.consumer_groups
                .iter()
                .any(|g| g.is_empty() || g.contains('/'))
            {
                errors.push(format!(
                    "hubs[{i}].consumer_groups: names must be non-empty and contain no '/'"
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:0".to_string()
}

fn default_namespace() -> String {
    "localhost".to_string()
}

fn default_partitions() -> u32 {
    2
}

/// One `RootManageSharedAccessKey` with a key that differs from run to run: it is derived
/// from the clock and the process id, which is enough to keep two emulators on one machine
/// from accepting each other's tokens (this is a test broker, not a secret store).
fn default_keys() -> Vec<SasKey> {
    use sha2::{Digest, Sha256};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let digest = Sha256::new()
        .chain_update(nanos.to_le_bytes())
        .chain_update(std::process::id().to_le_bytes())
        .chain_update(n.to_le_bytes())
        .finalize();
    use base64::Engine;
    vec![SasKey {
        name: "RootManageSharedAccessKey".to_string(),
        key: base64::engine::general_purpose::STANDARD.encode(digest),
    }]
}

fn de_age<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| {
        crate::time::parse_timespan(&t)
            .filter(|ticks| *ticks > 0)
            .map(|ticks| Duration::from_nanos(ticks as u64 * 100))
            .ok_or_else(|| serde::de::Error::custom(format!("{t:?} is not a positive timespan")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_defaults_and_retention() {
        let cfg: EmulatorConfig = toml::from_str(
            r#"
            [[hubs]]
            name = "insights-logs"
            partitions = 4
            consumer_groups = ["hubwatch"]
            retention = { max_events = 10, max_age = "1h" }
            "#,
        )
        .unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:0");
        assert_eq!(cfg.keys.len(), 1);
        assert_eq!(
            cfg.hubs[0].retention.max_age,
            Some(Duration::from_secs(3600))
        );
        assert!(cfg.validate().is_ok());
        assert!(!format!("{:?}", cfg.keys[0]).contains(&cfg.keys[0].key));
        assert!(cfg.entra.is_none(), "Entra ID tokens are off by default");
    }

    #[test]
    fn entra_takes_a_signing_key_never_printed() {
        let cfg: EmulatorConfig = toml::from_str(
            "[entra]\nsigning_key = \"k-secret\"\n[[hubs]]\nname = \"h\"\npartitions = 1",
        )
        .unwrap();
        assert_eq!(cfg.entra.as_ref().unwrap().signing_key, "k-secret");
        assert!(!format!("{cfg:?}").contains("k-secret"));
        let empty: EmulatorConfig =
            toml::from_str("[entra]\nsigning_key = \"\"\n[[hubs]]\nname = \"h\"\npartitions = 1")
                .unwrap();
        assert_eq!(
            empty.validate(),
            Err(vec!["entra.signing_key must not be empty".to_string()])
        );
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let cfg: EmulatorConfig =
            toml::from_str(include_str!("../../deploy/config/emulator.toml")).unwrap();
        assert_eq!(cfg.validate(), Ok(()));
        assert_eq!(cfg.keys[0].key, "SAS_KEY_VALUE");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        assert!(toml::from_str::<EmulatorConfig>("hubs = []\nport = 1").is_err());
        let cfg: EmulatorConfig =
            toml::from_str("[[hubs]]\nname = \"a/b\"\npartitions = 0").unwrap();
        let errs = cfg.validate().unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
    }
}
