//! A `kafka` source's settings from its TOML table: the Event Hubs endpoint or any Kafka
//! cluster, every field checked, every problem reported with its field, and no secret in
//! any message.

use std::time::Duration;

use super::env::Scope;
use super::validate::{entra_kind, set_span};
use super::SourceConfig;
use crate::source::amqp::{EntraKind, Redacted};
use crate::source::kafka::{Connection, KafkaSourceConfig, Security, StartOffset};

/// A `kafka` source's settings; every problem goes to `error(field, message)`, and a
/// `${VAR}` that cannot be expanded to `env` (with its place). A field whose variable is
/// missing counts as given but unknown: nothing else is said about it.
pub(super) fn kafka_source(
    s: &SourceConfig,
    env: &Scope<'_>,
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
    // `${ENV}` in every text field; errors name the field, never its value. Checks of
    // what is given look at the file (`…_given`), not at what could be expanded.
    let connection_given = connection_string.is_some();
    let connection_string = env.opt("connection_string", connection_string);
    let namespace_given = fully_qualified_namespace.is_some();
    let namespace = env.opt("fully_qualified_namespace", fully_qualified_namespace);
    let client_id = env.opt("client_id", client_id);
    let servers_given = bootstrap_servers.is_some();
    let servers = env.opt("bootstrap_servers", bootstrap_servers);
    let protocol = env.opt("security_protocol", security_protocol);
    let mechanism = env.opt("sasl_mechanism", sasl_mechanism);
    let username = env.opt("sasl_username", sasl_username);
    let password = env.opt("sasl_password", sasl_password);
    let ca = env.opt("ssl_ca_location", ssl_ca_location);
    let strategy = env.opt("assignment_strategy", assignment_strategy);
    let group = env.text(&["group_id"], group_id);
    let topic_list: Vec<String> = topics
        .iter()
        .enumerate()
        .filter_map(|(i, t)| env.text(&["topics", &i.to_string()], t))
        .collect();
    let mut props = Vec::new();
    for (k, v) in properties {
        if let Some(v) = env.text(&["properties", k], v) {
            props.push((k.clone(), v));
        }
    }

    let group_unknown = group.is_none();
    let mut cfg = KafkaSourceConfig::new(name.clone(), "", topic_list, group.unwrap_or_default());
    if topics.is_empty() {
        error("topics", "name at least one event hub (topic)".into());
    }
    if cfg.group_id.is_empty() && !group_unknown {
        error("group_id", "must not be empty".into());
    }
    let plain_only = [
        ("security_protocol", security_protocol.is_some()),
        ("sasl_mechanism", sasl_mechanism.is_some()),
        ("sasl_username", sasl_username.is_some()),
        ("sasl_password", sasl_password.is_some()),
    ];
    let chosen = [connection_given, namespace_given, servers_given];
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
                if sasl_username.is_none() || sasl_password.is_none() {
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
    if !servers_given {
        for (field, set) in plain_only {
            if set {
                error(field, "is only used with bootstrap_servers".into());
            }
        }
    }
    if auth.is_some() && !namespace_given {
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
