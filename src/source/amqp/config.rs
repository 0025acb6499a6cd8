//! The AMQP source's typed settings (built by `config::validate` from TOML, or by tests),
//! with their defaults, and the reconnect backoff they configure.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Everything the AMQP source needs. `Debug` never shows the connection string.
#[derive(Clone)]
pub struct AmqpSourceConfig {
    /// Source name, used in checkpoints, metrics and dead letters.
    pub name: String,
    /// An Event Hubs connection string (with `auth = ConnectionString`).
    pub connection_string: Option<String>,
    /// `<ns>.servicebus.windows.net` (with Entra ID auth).
    pub fully_qualified_namespace: Option<String>,
    /// Where to connect instead of the namespace's own address (`amqps://host[:port]`;
    /// `amqp://` only for an emulator), as the SDKs' custom endpoint address: a private
    /// endpoint's or proxy's name. Token audiences still name the namespace.
    pub custom_endpoint: Option<String>,
    /// The event hub to read.
    pub event_hub: String,
    /// Default `$Default`.
    pub consumer_group: String,
    pub auth: Auth,
    /// Where to start a partition that has no checkpoint. Always explicit: the SDK's own
    /// default (Latest) would silently skip what is retained.
    pub start: StartPosition,
    /// Owner level (epoch) of the receivers. With one set, a receiver with an equal or
    /// higher level takes the partition over; this source then stops that partition.
    pub owner_level: Option<i64>,
    /// Link credit per partition (default 300): what the SDK buffers ahead of the pipeline.
    pub prefetch: u32,
    /// Events per batch at most (default 256).
    pub batch_max_events: usize,
    /// A partial batch is sent this long after its first event (default 200 ms).
    pub batch_max_wait: Duration,
    /// Delay between reconnect attempts of a partition (or of the management client).
    pub reconnect: Backoff,
    /// How often each partition's last enqueued sequence number is read, for the lag
    /// metrics and to notice a stuck receiver (events wait, none arrived for this long):
    /// default 30 s (the service allows 50 such reads per second per namespace).
    pub lag_poll_interval: Duration,
    /// How often acknowledged positions are committed (default 1 s).
    pub commit_interval: Duration,
    /// Batches sent whose outcome has not arrived, at most (default 16384: acknowledgements
    /// wait for the next snapshot of the window state, seconds away); receiving pauses at the
    /// limit, and so does the service's delivery once the prefetch is used up.
    pub max_outstanding_batches: usize,
    /// At shutdown, how long to wait for the outcomes of batches in flight (default 5 s).
    pub ack_wait: Duration,
    /// How replicas share the partitions when the checkpoint store keeps ownership.
    pub ownership: OwnershipSettings,
}

/// Partition ownership among replicas (with a blob checkpoint store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipSettings {
    /// This replica's id in the ownership records.
    pub owner_id: String,
    /// How often claims are renewed and the partitions rebalanced.
    pub interval: Duration,
    /// A claim not renewed for this long is free to take.
    pub expiry: Duration,
}

impl Default for OwnershipSettings {
    /// The host name (a pod's name) with a random suffix, so that two processes on one host
    /// never share an id; renewed every 10 s, expiring after 60 s (the Go and Rust
    /// processors' defaults).
    fn default() -> OwnershipSettings {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "hubwatch".to_string());
        let suffix = (random_unit() * f64::from(u32::MAX)) as u32;
        OwnershipSettings {
            owner_id: format!("{host}-{suffix:08x}"),
            interval: Duration::from_secs(10),
            expiry: Duration::from_secs(60),
        }
    }
}

impl AmqpSourceConfig {
    /// A configuration with the defaults: connection-string auth (set `connection_string`),
    /// consumer group `$Default`, start at the earliest retained event.
    pub fn new(name: impl Into<String>, event_hub: impl Into<String>) -> AmqpSourceConfig {
        AmqpSourceConfig {
            name: name.into(),
            connection_string: None,
            fully_qualified_namespace: None,
            custom_endpoint: None,
            event_hub: event_hub.into(),
            consumer_group: "$Default".to_string(),
            auth: Auth::ConnectionString,
            start: StartPosition::Earliest,
            owner_level: None,
            prefetch: 300,
            batch_max_events: 256,
            batch_max_wait: Duration::from_millis(200),
            reconnect: Backoff::default(),
            lag_poll_interval: Duration::from_secs(30),
            commit_interval: Duration::from_secs(1),
            max_outstanding_batches: 16_384,
            ack_wait: Duration::from_secs(5),
            ownership: OwnershipSettings::default(),
        }
    }

    /// The defaults, authenticating with `connection_string`.
    pub fn with_connection_string(
        name: impl Into<String>,
        connection_string: impl Into<String>,
        event_hub: impl Into<String>,
        start: StartPosition,
    ) -> AmqpSourceConfig {
        AmqpSourceConfig {
            connection_string: Some(connection_string.into()),
            start,
            ..AmqpSourceConfig::new(name, event_hub)
        }
    }

    /// The defaults, authenticating with Entra ID.
    pub fn with_entra(
        name: impl Into<String>,
        fully_qualified_namespace: impl Into<String>,
        event_hub: impl Into<String>,
        kind: EntraKind,
        start: StartPosition,
    ) -> AmqpSourceConfig {
        AmqpSourceConfig {
            fully_qualified_namespace: Some(fully_qualified_namespace.into()),
            auth: Auth::Entra {
                kind,
                client_id: None,
            },
            start,
            ..AmqpSourceConfig::new(name, event_hub)
        }
    }
}

impl AmqpSourceConfig {
    /// The namespace that names this hub's checkpoints and ownership in a blob container:
    /// the fully qualified namespace, or the connection string's endpoint host, with its
    /// port when the endpoint gives one (an emulator's), as the Python and JavaScript
    /// processors name it.
    pub fn checkpoint_namespace(&self) -> Option<String> {
        if let Some(ns) = &self.fully_qualified_namespace {
            return Some(ns.clone());
        }
        let cs: super::ConnectionString = self.connection_string.as_deref()?.parse().ok()?;
        Some(match cs.port {
            Some(port) => format!("{}:{port}", cs.namespace),
            None => cs.namespace,
        })
    }
}

impl fmt::Debug for AmqpSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpSourceConfig")
            .field("name", &self.name)
            .field(
                "connection_string",
                &self.connection_string.as_ref().map(|_| "<redacted>"),
            )
            .field("fully_qualified_namespace", &self.fully_qualified_namespace)
            .field("event_hub", &self.event_hub)
            .field("consumer_group", &self.consumer_group)
            .field("auth", &self.auth)
            .field("start", &self.start)
            .field("owner_level", &self.owner_level)
            .field("prefetch", &self.prefetch)
            .field("batch_max_events", &self.batch_max_events)
            .field("batch_max_wait", &self.batch_max_wait)
            .field("reconnect", &self.reconnect)
            .field("lag_poll_interval", &self.lag_poll_interval)
            .field("commit_interval", &self.commit_interval)
            .finish_non_exhaustive()
    }
}

/// How the source proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// The SAS key or signature in `connection_string`.
    ConnectionString,
    /// A Microsoft Entra ID token for `https://eventhubs.azure.net/.default`.
    Entra {
        kind: EntraKind,
        /// The client id of a user-assigned managed identity, or the workload identity's
        /// client id when it is not in `AZURE_CLIENT_ID`.
        client_id: Option<String>,
    },
}

/// Which Entra ID credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntraKind {
    /// AKS workload identity (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_FEDERATED_TOKEN_FILE`).
    WorkloadIdentity,
    /// The VM's, App Service's or Arc machine's managed identity.
    ManagedIdentity,
    /// A service principal's secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_SECRET`).
    ClientSecret,
    /// The signed-in `az` CLI user (development).
    AzureCli,
    /// The first that applies: workload identity when `AZURE_FEDERATED_TOKEN_FILE` is set,
    /// a client secret when `AZURE_CLIENT_SECRET` is set, else the managed identity.
    Default,
}

/// Where a partition without a checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest retained event.
    Earliest,
    /// Only events enqueued after the source first opens the partition. Resolved once to
    /// a sequence number, so a reconnect before the first event loses nothing.
    Latest,
    /// Events enqueued at or after this time (100-ns ticks since the Unix epoch).
    EnqueuedTime(i64),
    /// Events from this sequence number on (inclusive).
    SequenceNumber(i64),
}

/// Capped exponential backoff: attempt `n` waits `min(max, initial·2ⁿ)`, and with jitter a
/// random time between half that and that, so that partitions (and replicas) that lost the
/// same connection do not reconnect in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Default 200 ms.
    pub initial: Duration,
    /// Default 30 s.
    pub max: Duration,
    /// Default on.
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            jitter: true,
        }
    }
}

impl Backoff {
    /// The delay before reconnect attempt `attempt` (0-based), with `unit` in [0, 1) as the
    /// random draw (see `random_unit`).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let max = self.max.max(self.initial);
        let exp = self
            .initial
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(max)
            .min(max);
        if self.jitter {
            exp.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
        } else {
            exp
        }
    }
}

/// A random number in [0, 1) for jitter. Not cryptographic: the standard library's
/// randomly keyed hasher over a counter is plenty to spread reconnects, and avoids a
/// dependency.
pub fn random_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_within_its_bounds() {
        let b = Backoff::default();
        let plain = Backoff { jitter: false, ..b };
        assert_eq!(plain.delay(0, 0.7), Duration::from_millis(200));
        assert_eq!(plain.delay(1, 0.7), Duration::from_millis(400));
        assert_eq!(plain.delay(5, 0.7), Duration::from_millis(6400));
        assert_eq!(plain.delay(8, 0.7), Duration::from_secs(30), "capped");
        assert_eq!(plain.delay(u32::MAX, 0.7), Duration::from_secs(30));

        for attempt in [0, 1, 3, 7, 8, 40, u32::MAX] {
            let full = plain.delay(attempt, 0.0);
            for _ in 0..200 {
                let d = b.delay(attempt, random_unit());
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
                assert!(d >= Duration::from_millis(100) && d <= Duration::from_secs(30));
            }
        }
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(100, 1.0), Duration::from_secs(30));
    }

    #[test]
    fn random_units_are_in_range_and_vary() {
        let v: Vec<f64> = (0..100).map(|_| random_unit()).collect();
        assert!(v.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(v.iter().any(|u| *u < 0.5) && v.iter().any(|u| *u >= 0.5));
    }

    #[test]
    fn debug_hides_the_connection_string() {
        let cfg = AmqpSourceConfig::with_connection_string(
            "eh",
            "Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=topsecret",
            "hub",
            StartPosition::Earliest,
        );
        let dbg = format!("{cfg:?}");
        assert!(
            !dbg.contains("topsecret") && dbg.contains("<redacted>"),
            "{dbg}"
        );
    }
}
