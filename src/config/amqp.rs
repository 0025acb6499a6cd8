//! An `amqp` source's settings from its TOML table: every field checked, every problem
//! reported with its field, and no secret in any message.

use std::time::Duration;

use super::env::Scope;
use super::validate::{entra_kind, set_span};
use super::SourceConfig;
use crate::source::amqp::{AmqpSourceConfig, Auth, EntraKind, StartPosition};
use crate::time;

/// An `amqp` source's settings; every problem goes to `error(field, message)`, and a
/// `${VAR}` that cannot be expanded to `env` (with its place). A field whose variable is
/// missing counts as given but unknown: nothing else is said about it.
pub(super) fn amqp_source(
    s: &SourceConfig,
    env: &Scope<'_>,
    error: &mut dyn FnMut(&str, String),
) -> AmqpSourceConfig {
    let SourceConfig::Amqp {
        name,
        connection_string,
        fully_qualified_namespace,
        custom_endpoint,
        event_hub,
        consumer_group,
        auth,
        client_id,
        start,
        owner_level,
        prefetch,
        batch_max_events,
        batch_max_wait,
        reconnect_initial,
        reconnect_max,
        lag_poll_interval,
        owner_id,
        ownership_interval,
        ownership_expiry,
    } = s
    else {
        unreachable!("called for amqp sources only")
    };
    let mut cfg = AmqpSourceConfig::new(name.clone(), String::new());
    // `${ENV}` in every text field. Errors name the variable, never its value (the
    // connection string's is the secret).
    cfg.connection_string = env.opt("connection_string", connection_string);
    let namespace_given = fully_qualified_namespace.is_some();
    let fully_qualified_namespace = env.opt("fully_qualified_namespace", fully_qualified_namespace);
    let event_hub_given = event_hub.is_some();
    let event_hub = env.opt("event_hub", event_hub);
    let consumer_group = env.opt("consumer_group", consumer_group);
    let client_id = env.opt("client_id", client_id);
    cfg.custom_endpoint = env.opt("custom_endpoint", custom_endpoint);
    if let Some(endpoint) = &cfg.custom_endpoint {
        if let Err(e) = check_endpoint(endpoint) {
            error("custom_endpoint", e);
        }
    }
    let parsed = cfg.connection_string.as_ref().and_then(|c| {
        c.parse::<crate::source::amqp::ConnectionString>()
            .map_err(|e| error("connection_string", e.to_string()))
            .ok()
    });
    // Given, but its variable is missing or it does not parse (both reported): whether it
    // names the hub is unknown.
    let connection_unknown = connection_string.is_some() && parsed.is_none();
    cfg.fully_qualified_namespace = fully_qualified_namespace.clone();
    cfg.auth = match (auth.as_deref(), connection_string.is_some()) {
        (None, true) | (Some("connection_string"), _) => Auth::ConnectionString,
        (None, false) => Auth::Entra {
            kind: EntraKind::Default,
            client_id: None,
        },
        (Some(k), _) => {
            let kind = entra_kind(k).unwrap_or_else(|| {
                error("auth", format!("'{k}' is not one of connection_string, workload_identity, managed_identity, client_secret, azure_cli, default"));
                EntraKind::Default
            });
            Auth::Entra {
                kind,
                client_id: client_id.clone(),
            }
        }
    };
    match (&cfg.auth, connection_string.is_some(), namespace_given) {
        (Auth::ConnectionString, false, _) => error(
            "connection_string",
            "is required with auth = \"connection_string\"".into(),
        ),
        (Auth::Entra { .. }, _, false) => error(
            "fully_qualified_namespace",
            "is required with Entra ID auth".into(),
        ),
        (Auth::Entra { .. }, true, _) => error(
            "connection_string",
            "is not used with Entra ID auth; remove it or set auth = \"connection_string\"".into(),
        ),
        _ => {}
    }
    let entity = parsed.as_ref().and_then(|p| p.entity_path.clone());
    cfg.event_hub = match (event_hub, entity) {
        (Some(h), Some(e)) if h != e => {
            error(
                "event_hub",
                format!("'{h}' differs from the connection string's EntityPath '{e}'"),
            );
            h
        }
        (Some(h), _) => h,
        (None, Some(e)) => e,
        // The hub may be in the string, or is the missing variable: said already.
        (None, None) if connection_unknown || event_hub_given => String::new(),
        (None, None) => {
            error(
                "event_hub",
                "is required (the connection string has no EntityPath)".into(),
            );
            String::new()
        }
    };
    if let Some(g) = consumer_group {
        cfg.consumer_group = g;
    }
    match parse_start(start) {
        Some(p) => cfg.start = p,
        None => error(
            "start",
            format!("'{start}' is not earliest, latest, sequence_number:<n> or enqueued_time:<RFC 3339>"),
        ),
    }
    cfg.owner_level = *owner_level;
    if let Some(p) = prefetch {
        cfg.prefetch = *p;
    }
    if let Some(n) = batch_max_events {
        cfg.batch_max_events = (*n).max(1);
    }
    let mut span = |what: &str, v: &Option<String>, d: &mut Duration| set_span(what, v, d, error);
    span("batch_max_wait", batch_max_wait, &mut cfg.batch_max_wait);
    span(
        "reconnect_initial",
        reconnect_initial,
        &mut cfg.reconnect.initial,
    );
    span("reconnect_max", reconnect_max, &mut cfg.reconnect.max);
    span(
        "lag_poll_interval",
        lag_poll_interval,
        &mut cfg.lag_poll_interval,
    );
    span(
        "ownership_interval",
        ownership_interval,
        &mut cfg.ownership.interval,
    );
    span(
        "ownership_expiry",
        ownership_expiry,
        &mut cfg.ownership.expiry,
    );
    if cfg.ownership.interval.is_zero() {
        error("ownership_interval", "must be longer than 0".into());
    }
    if cfg.ownership.expiry < cfg.ownership.interval * 3 {
        error(
            "ownership_expiry",
            format!(
                "{:?} is less than 3 times ownership_interval ({:?}): live replicas would lose their partitions to each other",
                cfg.ownership.expiry, cfg.ownership.interval
            ),
        );
    }
    // `${POD_NAME:-}` outside Kubernetes expands to nothing: the default id.
    if let Some(id) = env.opt("owner_id", owner_id) {
        if !id.trim().is_empty() {
            cfg.ownership.owner_id = id.trim().to_string();
        }
    }
    cfg
}

/// A custom endpoint must be an AMQP URL with a host; plain `amqp://` would send the token in
/// the clear, so only a loopback emulator may use it. Errors do not echo the URL, which
/// may hold credentials.
pub(super) fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let url = azure_core::http::Url::parse(endpoint).map_err(|e| format!("is not a URL ({e})"))?;
    let Some(host) = url.host_str() else {
        return Err("has no host".to_string());
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "amqps" => Ok(()),
        "amqp" if loopback => Ok(()),
        "amqp" => Err(format!(
            "amqp://{host} would send tokens unencrypted; use amqps:// (plain amqp:// is for an emulator on loopback)"
        )),
        scheme => Err(format!(
            "the scheme is {scheme}; use amqps://host[:port] (or amqp:// for an emulator on loopback)"
        )),
    }
}

/// `earliest`, `latest`, `sequence_number:<n>`, `enqueued_time:<RFC 3339>`.
fn parse_start(s: &str) -> Option<StartPosition> {
    let s = s.trim();
    match s.to_ascii_lowercase().as_str() {
        "earliest" => return Some(StartPosition::Earliest),
        "latest" => return Some(StartPosition::Latest),
        _ => {}
    }
    let (kind, value) = s.split_once(':')?;
    match kind.trim().to_ascii_lowercase().as_str() {
        "sequence_number" => value.trim().parse().ok().map(StartPosition::SequenceNumber),
        "enqueued_time" => {
            time::parse_datetime(value.trim()).map(|(t, _)| StartPosition::EnqueuedTime(t))
        }
        _ => None,
    }
}
