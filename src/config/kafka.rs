//! A `kafka` source's settings from its TOML table: the Event Hubs endpoint or any Kafka
//! cluster, every field checked, every problem reported with its field, and no secret in
//! any message.

use std::time::Duration;

use super::env::interpolate;
use super::validate::{entra_kind, set_span};
use super::SourceConfig;
use crate::source::amqp::{EntraKind, Redacted};
use crate::source::kafka::{Connection, KafkaSourceConfig, Security, StartOffset};

/// A `kafka` source's settings; every problem goes to `error(field, message)`.
pub(super) fn kafka_source(
    s: &SourceConfig,
    error: &mut dyn FnMut(&str, String),
) -> KafkaSourceConfig {
    let SourceConfig::Kafka {
        name,
        topics,
        group_id,
        start,
        connection_string,
        fully_qualified_namespace,
        auth,
        client_id,
        bootstrap_servers,
        security_protocol,
        sasl_mechanism,
        sasl_username,
        sasl_password,
        ssl_ca_location,
        assignment_strategy,
        session_timeout,
        batch_max_events,
        batch_max_wait,
        commit_interval,
        properties,
    } = s
    else {
        unreachable!("called for kafka sources only")
    };
    // `${ENV}` in every text field; errors name the field, never its value.
    let mut env = |what: &str, v: &Option<String>| -> Option<String> {
        v.as_ref()
            .and_then(|t| interpolate(t).map_err(|e| error(what, e)).ok())
    };
    let connection_string = env("connection_string", connection_string);
    let namespace = env("fully_qualified_namespace", fully_qualified_namespace);
    let client_id = env("client_id", client_id);
    let servers = env("bootstrap_servers", bootstrap_servers);
    let protocol = env("security_protocol", security_protocol);
    let mechanism = env("sasl_mechanism", sasl_mechanism);
    let username = env("sasl_username", sasl_username);
    let password = env("sasl_password", sasl_password);
    let ca = env("ssl_ca_location", ssl_ca_location);
    let strategy = env("assignment_strategy", assignment_strategy);
    let group = env("group_id", &Some(group_id.clone())).unwrap_or_default();
    let topics: Vec<String> = topics
        .iter()
        .filter_map(|t| env("topics", &Some(t.clone())))
        .collect();
    let mut props = Vec::new();
    for (k, v) in properties {
        if let Some(v) = env(&format!("properties.{k}"), &Some(v.clone())) {
            props.push((k.clone(), v));
        }
    }

    let mut cfg = KafkaSourceConfig::new(name.clone(), "", topics, group);
    if cfg.topics.is_empty() {
        error("topics", "name at least one event hub (topic)".into());
    }
    if cfg.group_id.is_empty() {
        error("group_id", "must not be empty".into());
    }
    let plain_only = [
        ("security_protocol", protocol.is_some()),
        ("sasl_mechanism", mechanism.is_some()),
        ("sasl_username", username.is_some()),
        ("sasl_password", password.is_some()),
    ];
    let chosen = [
        connection_string.is_some(),
        namespace.is_some(),
        servers.is_some(),
    ];
    if chosen.iter().filter(|c| **c).count() != 1 {
        error(
            "connection",
            "set exactly one of connection_string (Event Hubs), fully_qualified_namespace \
             (Event Hubs with Entra ID) or bootstrap_servers (any Kafka cluster)"
                .into(),
        );
    }
    if let Some(cs) = &connection_string {
        match Connection::event_hubs(cs) {
            Ok(c) => cfg.connection = c,
            Err(e) => error("connection_string", e),
        }
    } else if let Some(ns) = &namespace {
        let kind = match auth.as_deref() {
            None => EntraKind::Default,
            Some(k) => entra_kind(k).unwrap_or_else(|| {
                error("auth", format!("'{k}' is not one of workload_identity, managed_identity, client_secret, azure_cli, default"));
                EntraKind::Default
            }),
        };
        cfg.connection = Connection::EventHubsEntra {
            namespace: ns.clone(),
            kind,
            client_id: client_id.clone(),
        };
    } else if let Some(servers) = &servers {
        let tls = matches!(protocol.as_deref(), Some("ssl" | "sasl_ssl"));
        let security = match protocol.as_deref().unwrap_or("plaintext") {
            "plaintext" => Security::Plaintext,
            "ssl" => Security::Ssl {
                ca_location: ca.clone(),
            },
            "sasl_plaintext" | "sasl_ssl" => {
                let mechanism = mechanism.clone().unwrap_or_else(|| "PLAIN".to_string());
                if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism.as_str()) {
                    error(
                        "sasl_mechanism",
                        format!("'{mechanism}' is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
                    );
                }
                if username.is_none() || password.is_none() {
                    error(
                        "sasl_username",
                        "sasl_username and sasl_password are required with SASL".into(),
                    );
                }
                Security::Sasl {
                    mechanism,
                    username: username.clone().unwrap_or_default(),
                    password: Redacted::new(password.clone().unwrap_or_default()),
                    tls,
                    ca_location: ca.clone(),
                }
            }
            other => {
                error(
                    "security_protocol",
                    format!("'{other}' is not plaintext, ssl, sasl_plaintext or sasl_ssl"),
                );
                Security::Plaintext
            }
        };
        cfg.connection = Connection::Kafka {
            bootstrap_servers: servers.clone(),
            security,
        };
    }
    if servers.is_none() {
        for (field, set) in plain_only {
            if set {
                error(field, "is only used with bootstrap_servers".into());
            }
        }
    }
    if auth.is_some() && namespace.is_none() {
        error("auth", "is only used with fully_qualified_namespace".into());
    }
    cfg.start = match start.trim().to_ascii_lowercase().as_str() {
        "earliest" => StartOffset::Earliest,
        "latest" => StartOffset::Latest,
        other => {
            error(
                "start",
                format!("'{other}' is not earliest or latest (a group's committed offsets take precedence)"),
            );
            StartOffset::Earliest
        }
    };
    if let Some(a) = strategy {
        cfg.assignment_strategy = a;
    }
    if let Some(n) = batch_max_events {
        cfg.batch_max_events = (*n).max(1);
    }
    let mut span = |what: &str, v: &Option<String>, d: &mut Duration| set_span(what, v, d, error);
    span("session_timeout", session_timeout, &mut cfg.session_timeout);
    span("batch_max_wait", batch_max_wait, &mut cfg.batch_max_wait);
    span("commit_interval", commit_interval, &mut cfg.commit_interval);
    cfg.properties = props;
    cfg
}
