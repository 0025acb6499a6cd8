//! The Kafka source's typed settings, and the librdkafka properties they become.
//!
//! [`KafkaSourceConfig::client_properties`] is a pure function of the settings, so what
//! hubwatch asks of librdkafka — the Event Hubs SASL settings above all, which no broker on
//! a test machine can check — is unit-tested here. Secrets stay in [`Redacted`] until that
//! moment, and the property list's `Debug` hides them again.

use std::fmt;
use std::time::Duration;

use crate::source::amqp::{ConnectionString, EntraKind, Redacted, SasAuth};

/// The Event Hubs Kafka endpoint listens on this port of the namespace host.
pub const EVENT_HUBS_KAFKA_PORT: u16 = 9093;
/// The Event Hubs emulator's Kafka port (SASL over plaintext).
pub const EMULATOR_KAFKA_PORT: u16 = 9092;

/// Everything the Kafka source needs. `Debug` never shows a password or connection string.
#[derive(Clone)]
pub struct KafkaSourceConfig {
    /// Source name, used in metrics, dead letters and logs.
    pub name: String,
    /// How to reach and authenticate to the brokers.
    pub connection: Connection,
    /// Topics (event hubs) to read; one consumer group rebalances them together.
    pub topics: Vec<String>,
    /// The Kafka consumer group. Replicas with the same group share the partitions.
    pub group_id: String,
    /// Where a partition without a committed offset starts.
    pub start: StartOffset,
    /// `partition.assignment.strategy`; default `cooperative-sticky`, so that a replica
    /// joining or leaving moves only the partitions that must move.
    pub assignment_strategy: String,
    /// Session timeout: how long a silent replica keeps its partitions (default 30 s, the
    /// Event Hubs recommendation).
    pub session_timeout: Duration,
    /// Events per batch at most (default 256).
    pub batch_max_events: usize,
    /// A partial batch is sent this long after its first event (default 200 ms).
    pub batch_max_wait: Duration,
    /// How often acknowledged offsets are committed (default 1 s; Event Hubs throttles
    /// commits above 4 per second and partition).
    pub commit_interval: Duration,
    /// Batches sent whose outcome has not arrived, at most (default 16384: acknowledgements
    /// wait for the next snapshot of the window state, seconds away); fetching pauses at the
    /// limit.
    pub max_outstanding_batches: usize,
    /// On shutdown and when partitions are revoked, how long to wait for the outcomes of
    /// batches in flight before committing (default 5 s).
    pub ack_wait: Duration,
    /// More librdkafka properties, applied last (they override hubwatch's).
    pub properties: Vec<(String, String)>,
}

impl KafkaSourceConfig {
    /// The defaults, on plaintext brokers: start at the earliest offset.
    pub fn new(
        name: impl Into<String>,
        bootstrap_servers: impl Into<String>,
        topics: Vec<String>,
        group_id: impl Into<String>,
    ) -> KafkaSourceConfig {
        KafkaSourceConfig {
            name: name.into(),
            connection: Connection::Kafka {
                bootstrap_servers: bootstrap_servers.into(),
                security: Security::Plaintext,
            },
            topics,
            group_id: group_id.into(),
            start: StartOffset::Earliest,
            assignment_strategy: "cooperative-sticky".to_string(),
            session_timeout: Duration::from_secs(30),
            batch_max_events: 256,
            batch_max_wait: Duration::from_millis(200),
            commit_interval: Duration::from_secs(1),
            max_outstanding_batches: 16_384,
            ack_wait: Duration::from_secs(5),
            properties: Vec::new(),
        }
    }

    /// The bootstrap servers, for messages (never a secret).
    pub fn target(&self) -> String {
        match &self.connection {
            Connection::Kafka {
                bootstrap_servers, ..
            } => bootstrap_servers.clone(),
            Connection::EventHubs(cs) => event_hubs_bootstrap(cs),
            Connection::EventHubsEntra { namespace, .. } => {
                format!("{namespace}:{EVENT_HUBS_KAFKA_PORT}")
            }
        }
    }

    /// The librdkafka properties of the consumer, in the order they are set.
    pub fn client_properties(&self) -> ClientProperties {
        let mut p = ClientProperties::default();
        p.set("group.id", &self.group_id);
        p.set("client.id", format!("hubwatch-{}", self.name));
        // At least once: hubwatch stores and commits offsets itself, only after the whole
        // pipeline acknowledged the events before them.
        p.set("enable.auto.commit", "false");
        p.set("enable.auto.offset.store", "false");
        p.set("auto.offset.reset", self.start.reset());
        p.set("partition.assignment.strategy", &self.assignment_strategy);
        p.set(
            "session.timeout.ms",
            self.session_timeout.as_millis().to_string(),
        );
        // The Event Hubs recommendations (reference §2.4): Azure closes idle connections
        // after 240 s, so keep sockets alive and refresh metadata before that.
        p.set("socket.keepalive.enable", "true");
        p.set("metadata.max.age.ms", "180000");
        p.set("heartbeat.interval.ms", "3000");
        p.set("max.poll.interval.ms", "300000");
        // Per-partition high watermarks for the lag metrics come from the statistics.
        p.set("statistics.interval.ms", "5000");
        match &self.connection {
            Connection::Kafka {
                bootstrap_servers,
                security,
            } => {
                p.set("bootstrap.servers", bootstrap_servers);
                security.apply(&mut p);
            }
            Connection::EventHubs(cs) => {
                p.set("bootstrap.servers", event_hubs_bootstrap(cs));
                p.set(
                    "security.protocol",
                    if cs.use_development_emulator {
                        "SASL_PLAINTEXT"
                    } else {
                        "SASL_SSL"
                    },
                );
                p.set("sasl.mechanism", "PLAIN");
                p.set("sasl.username", "$ConnectionString");
                p.set_secret("sasl.password", cs.expose());
            }
            Connection::EventHubsEntra { namespace, .. } => {
                p.set(
                    "bootstrap.servers",
                    format!("{namespace}:{EVENT_HUBS_KAFKA_PORT}"),
                );
                p.set("security.protocol", "SASL_SSL");
                p.set("sasl.mechanism", "OAUTHBEARER");
            }
        }
        for (k, v) in &self.properties {
            if is_secret_property(k) {
                p.set_secret(k, v);
            } else {
                p.set(k, v);
            }
        }
        p
    }

    /// The secret texts the settings hold, to scrub from librdkafka's messages.
    pub fn secrets(&self) -> Vec<String> {
        let mut v = Vec::new();
        match &self.connection {
            Connection::EventHubs(cs) => {
                v.push(cs.expose().to_string());
                v.extend(cs.secrets());
            }
            Connection::Kafka { security, .. } => {
                if let Some(pw) = security.password() {
                    v.push(pw.expose().to_string());
                }
            }
            Connection::EventHubsEntra { .. } => {}
        }
        v.extend(
            self.properties
                .iter()
                .filter(|(k, _)| is_secret_property(k))
                .map(|(_, s)| s.clone()),
        );
        v
    }
}

impl fmt::Debug for KafkaSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_property(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaSourceConfig")
            .field("name", &self.name)
            .field("connection", &self.connection)
            .field("topics", &self.topics)
            .field("group_id", &self.group_id)
            .field("start", &self.start)
            .field("assignment_strategy", &self.assignment_strategy)
            .field("session_timeout", &self.session_timeout)
            .field("batch_max_events", &self.batch_max_events)
            .field("batch_max_wait", &self.batch_max_wait)
            .field("commit_interval", &self.commit_interval)
            .field("max_outstanding_batches", &self.max_outstanding_batches)
            .field("ack_wait", &self.ack_wait)
            .field("properties", &properties)
            .finish()
    }
}

fn event_hubs_bootstrap(cs: &ConnectionString) -> String {
    let port = if cs.use_development_emulator {
        EMULATOR_KAFKA_PORT
    } else {
        EVENT_HUBS_KAFKA_PORT
    };
    format!("{}:{port}", cs.namespace)
}

/// Properties whose values must never be shown.
/// A librdkafka property whose value is a secret (never logged or shown).
pub fn is_secret_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.ends_with(".key.pem")
        || k == "sasl.oauthbearer.config"
}

/// How to reach the brokers.
#[derive(Clone, Debug)]
pub enum Connection {
    /// The Event Hubs Kafka endpoint of a connection string's namespace:
    /// `<ns>:9093`, SASL_SSL, PLAIN, user `$ConnectionString`, password the string.
    /// The emulator's string (`UseDevelopmentEmulator=true`) gives `<host>:9092` over
    /// SASL_PLAINTEXT.
    EventHubs(ConnectionString),
    /// The Event Hubs Kafka endpoint with Microsoft Entra ID tokens (OAUTHBEARER, scope
    /// `https://<namespace>/.default`), refreshed by librdkafka before they expire.
    EventHubsEntra {
        namespace: String,
        kind: EntraKind,
        client_id: Option<String>,
    },
    /// Any Kafka-compatible cluster.
    Kafka {
        bootstrap_servers: String,
        security: Security,
    },
}

impl Connection {
    /// Event Hubs through a connection string. A shared access signature cannot work: the
    /// Kafka endpoint takes only keys.
    pub fn event_hubs(connection_string: &str) -> Result<Connection, String> {
        let cs: ConnectionString = connection_string.parse().map_err(|e| format!("{e}"))?;
        if let SasAuth::Signature(_) = cs.auth {
            return Err(
                "the Event Hubs Kafka endpoint does not accept a SharedAccessSignature; \
                 use a connection string with SharedAccessKeyName and SharedAccessKey, or Entra ID"
                    .to_string(),
            );
        }
        Ok(Connection::EventHubs(cs))
    }
}

/// Security of a plain Kafka connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Security {
    Plaintext,
    /// TLS, with an optional CA bundle (PEM file) instead of the system's.
    Ssl {
        ca_location: Option<String>,
    },
    /// SASL (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), over TLS or not.
    Sasl {
        mechanism: String,
        username: String,
        password: Redacted,
        tls: bool,
        ca_location: Option<String>,
    },
}

impl Security {
    fn apply(&self, p: &mut ClientProperties) {
        match self {
            Security::Plaintext => p.set("security.protocol", "PLAINTEXT"),
            Security::Ssl { ca_location } => {
                p.set("security.protocol", "SSL");
                if let Some(ca) = ca_location {
                    p.set("ssl.ca.location", ca);
                }
            }
            Security::Sasl {
                mechanism,
                username,
                password,
                tls,
                ca_location,
            } => {
                p.set(
                    "security.protocol",
                    if *tls { "SASL_SSL" } else { "SASL_PLAINTEXT" },
                );
                p.set("sasl.mechanism", mechanism);
                p.set("sasl.username", username);
                p.set_secret("sasl.password", password.expose());
                if let Some(ca) = ca_location {
                    p.set("ssl.ca.location", ca);
                }
            }
        }
    }

    fn password(&self) -> Option<&Redacted> {
        match self {
            Security::Sasl { password, .. } => Some(password),
            _ => None,
        }
    }
}

/// Where a partition without a committed offset starts (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    Earliest,
    Latest,
}

impl StartOffset {
    fn reset(self) -> &'static str {
        match self {
            StartOffset::Earliest => "earliest",
            StartOffset::Latest => "latest",
        }
    }
}

/// librdkafka properties in the order they are set; a later value replaces an earlier one.
/// `Debug` shows secret values as `<redacted>`.
#[derive(Default, Clone)]
pub struct ClientProperties {
    entries: Vec<(String, Redacted, bool)>,
}

impl ClientProperties {
    fn set(&mut self, key: &str, value: impl Into<String>) {
        self.put(key, value.into(), false);
    }

    fn set_secret(&mut self, key: &str, value: &str) {
        self.put(key, value.to_string(), true);
    }

    fn put(&mut self, key: &str, value: String, secret: bool) {
        match self.entries.iter_mut().find(|(k, _, _)| k == key) {
            Some(e) => *e = (key.to_string(), Redacted::new(value), secret),
            None => self
                .entries
                .push((key.to_string(), Redacted::new(value), secret)),
        }
    }

    /// The value of a property (secrets included: for building the client and for tests).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, _)| v.expose())
    }

    /// Every (key, value), secrets included.
    pub fn expose(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(k, v, _)| (k.as_str(), v.expose()))
    }
}

impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v, secret) in &self.entries {
            if *secret {
                m.entry(k, &"<redacted>");
            } else {
                m.entry(k, &v.expose());
            }
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS10ZXh0PT0=";

    fn event_hubs(cs: &str) -> KafkaSourceConfig {
        let mut cfg = KafkaSourceConfig::new("eh", "", vec!["aml-logs".into()], "hubwatch");
        cfg.connection = Connection::event_hubs(cs).unwrap();
        cfg
    }

    #[test]
    fn a_connection_string_becomes_the_event_hubs_sasl_settings() {
        let cs = format!(
            "Endpoint=sb://contoso-ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey={KEY}"
        );
        let p = event_hubs(&cs).client_properties();
        assert_eq!(
            p.get("bootstrap.servers"),
            Some("contoso-ns.servicebus.windows.net:9093")
        );
        assert_eq!(p.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(p.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(p.get("sasl.username"), Some("$ConnectionString"));
        assert_eq!(p.get("sasl.password"), Some(cs.as_str()));
        // The Event Hubs client recommendations.
        assert_eq!(p.get("socket.keepalive.enable"), Some("true"));
        assert_eq!(p.get("metadata.max.age.ms"), Some("180000"));
        assert_eq!(p.get("session.timeout.ms"), Some("30000"));
        assert_eq!(p.get("heartbeat.interval.ms"), Some("3000"));
        assert_eq!(p.get("max.poll.interval.ms"), Some("300000"));
        // At least once.
        assert_eq!(p.get("enable.auto.commit"), Some("false"));
        assert_eq!(p.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(p.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(p.get("group.id"), Some("hubwatch"));
        assert_eq!(
            p.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
    }

    #[test]
    fn an_entity_path_does_not_change_the_endpoint_and_the_emulator_is_plaintext() {
        let cs = format!(
            "Endpoint=sb://contoso-ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey={KEY};EntityPath=aml-logs"
        );
        let p = event_hubs(&cs).client_properties();
        assert_eq!(
            p.get("bootstrap.servers"),
            Some("contoso-ns.servicebus.windows.net:9093")
        );
        assert_eq!(p.get("sasl.password"), Some(cs.as_str()));

        let emu = format!(
            "Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey={KEY};UseDevelopmentEmulator=true"
        );
        let p = event_hubs(&emu).client_properties();
        assert_eq!(p.get("bootstrap.servers"), Some("localhost:9092"));
        assert_eq!(p.get("security.protocol"), Some("SASL_PLAINTEXT"));
        assert_eq!(p.get("sasl.mechanism"), Some("PLAIN"));
    }

    #[test]
    fn a_shared_access_signature_is_refused_with_the_reason() {
        let e = Connection::event_hubs(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=x&sig=s1gn4ture&se=1&skn=k",
        )
        .unwrap_err();
        assert!(e.contains("does not accept a SharedAccessSignature"), "{e}");
        assert!(!e.contains("s1gn4ture"), "{e}");
    }

    #[test]
    fn entra_id_is_oauthbearer_over_tls() {
        let mut cfg = KafkaSourceConfig::new("eh", "", vec!["t".into()], "g");
        cfg.connection = Connection::EventHubsEntra {
            namespace: "contoso-ns.servicebus.windows.net".into(),
            kind: EntraKind::WorkloadIdentity,
            client_id: None,
        };
        let p = cfg.client_properties();
        assert_eq!(
            p.get("bootstrap.servers"),
            Some("contoso-ns.servicebus.windows.net:9093")
        );
        assert_eq!(p.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(p.get("sasl.mechanism"), Some("OAUTHBEARER"));
        assert_eq!(p.get("sasl.password"), None);
    }

    #[test]
    fn plain_kafka_security_and_overrides() {
        let mut cfg = KafkaSourceConfig::new("k", "b1:9092,b2:9092", vec!["t".into()], "g");
        cfg.connection = Connection::Kafka {
            bootstrap_servers: "b1:9092,b2:9092".into(),
            security: Security::Sasl {
                mechanism: "SCRAM-SHA-512".into(),
                username: "svc".into(),
                password: Redacted::new("hunter2hunter2"),
                tls: true,
                ca_location: Some("/etc/ca.pem".into()),
            },
        };
        cfg.start = StartOffset::Latest;
        cfg.properties = vec![
            ("session.timeout.ms".into(), "6000".into()),
            ("ssl.key.password".into(), "k3ypassw0rd".into()),
        ];
        let p = cfg.client_properties();
        assert_eq!(p.get("bootstrap.servers"), Some("b1:9092,b2:9092"));
        assert_eq!(p.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(p.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(p.get("ssl.ca.location"), Some("/etc/ca.pem"));
        assert_eq!(p.get("auto.offset.reset"), Some("latest"));
        assert_eq!(
            p.get("session.timeout.ms"),
            Some("6000"),
            "user properties come last"
        );
        let shown = format!("{p:?} {cfg:?}");
        assert!(!shown.contains("hunter2hunter2"), "{shown}");
        assert!(!shown.contains("k3ypassw0rd"), "{shown}");
        assert!(cfg.secrets().contains(&"hunter2hunter2".to_string()));
        assert!(cfg.secrets().contains(&"k3ypassw0rd".to_string()));
    }

    #[test]
    fn debug_never_shows_the_connection_string_key() {
        let cs = format!(
            "Endpoint=sb://contoso-ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey={KEY}"
        );
        let cfg = event_hubs(&cs);
        let shown = format!("{:?} {:?}", cfg, cfg.client_properties());
        assert!(!shown.contains(KEY), "{shown}");
        assert!(shown.contains("$ConnectionString"), "{shown}");
        assert!(cfg.secrets().iter().any(|s| s == KEY));
    }
}
