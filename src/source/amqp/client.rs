//! Opening SDK clients, and making sense of the SDK's errors.
//!
//! Every client is opened with the SDK's own retries **off** (`max_retries = 0`): its
//! recovery re-attaches a receiver with the filter it was first opened with, i.e. at the
//! original start position (protocol notes §1.12), which would replay or skip events. With
//! retries off, every error reaches us; the caller then drops the whole client (whose cached
//! connection may be dead — the SDK only clears it during its own recovery) and opens a new
//! one after a backoff, positioned strictly after the last event it handed on.
//!
//! [`Failure`] is the one view of an SDK error the rest of the source uses: a kind that
//! decides what happens next (and labels the error metric) and a detail text scrubbed of
//! every secret the connector knows.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core_amqp::error::{AmqpErrorCondition, AmqpErrorKind};
use azure_core_amqp::AmqpError;
use azure_messaging_eventhubs::error::ErrorKind as SdkErrorKind;
use azure_messaging_eventhubs::{ConsumerClient, EventHubsError, RetryOptions};

use super::renew::RenewingCredential;

use super::config::{AmqpSourceConfig, Auth, EntraKind};
use super::connection::{scrub, ConnectionString};
use super::AmqpSourceError;

/// Opening a connection and a management call get this long. The SDK (or fe2o3 under it)
/// can wait forever on a connection that was closed at an unlucky moment (seen with the
/// emulator dropping connections during CBS), so every such call is bounded.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Closing a client gets this long; then it is dropped.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What kind of failure, which decides what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The connection, session or link went away: reconnect.
    Disconnected,
    /// Another receiver with an equal or higher owner level took the partition: stop it.
    Stolen,
    /// The credentials were refused (401/403, or no token could be had): stop the source.
    Auth,
    /// The hub, consumer group or partition does not exist: stop the source.
    NotFound,
    /// The start position is outside the partition (e.g. a checkpoint of a hub that was
    /// re-created): stop the source rather than guess.
    InvalidPosition,
    /// Anything else: reconnect.
    Other,
}

impl FailureKind {
    /// The `kind` label of the error metric.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Disconnected => "disconnected",
            FailureKind::Stolen => "stolen",
            FailureKind::Auth => "auth",
            FailureKind::NotFound | FailureKind::InvalidPosition | FailureKind::Other => "other",
        }
    }

    /// Whether the whole source must stop (reconnecting cannot help).
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            FailureKind::Auth | FailureKind::NotFound | FailureKind::InvalidPosition
        )
    }
}

/// An SDK error, classified and scrubbed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    /// The HTTP-style status, when the service gave one (CBS and management replies).
    pub status: Option<u16>,
    /// The error text with every known secret replaced by `<redacted>`.
    pub detail: String,
}

impl Failure {
    /// Turns a fatal failure into the error that ends `run()`.
    pub fn into_error(self, target: &str) -> AmqpSourceError {
        match self.kind {
            FailureKind::Auth => AmqpSourceError::Unauthorized {
                target: target.to_string(),
                status: status_text(self.status.unwrap_or(401)),
                detail: self.detail,
            },
            FailureKind::NotFound => AmqpSourceError::NotFound {
                target: target.to_string(),
                detail: self.detail,
            },
            _ => AmqpSourceError::Service {
                target: target.to_string(),
                detail: self.detail,
            },
        }
    }
}

fn status_text(code: u16) -> String {
    match code {
        401 => "401 Unauthorized".to_string(),
        403 => "403 Forbidden".to_string(),
        c => c.to_string(),
    }
}

/// Opens clients for one source. Cheap to share: the Entra credential (and its token
/// cache) is built once.
pub struct Connector {
    namespace: String,
    event_hub: String,
    consumer_group: String,
    custom_endpoint: Option<String>,
    how: How,
    secrets: Vec<String>,
}

enum How {
    ConnectionString(ConnectionString),
    Entra(Arc<dyn TokenCredential>),
}

impl Connector {
    /// Checks the configuration and builds the credential. Errors are configuration errors.
    pub fn new(cfg: &AmqpSourceConfig) -> Result<Connector, AmqpSourceError> {
        let config_error = |message: String| AmqpSourceError::Config {
            source_name: cfg.name.clone(),
            message,
        };
        if cfg.event_hub.is_empty() {
            return Err(config_error("event_hub is empty".to_string()));
        }
        match &cfg.auth {
            Auth::ConnectionString => {
                let text = cfg.connection_string.as_deref().ok_or_else(|| {
                    config_error(
                        "auth is connection_string but no connection_string is given".into(),
                    )
                })?;
                let cs: ConnectionString = text
                    .parse()
                    .map_err(|e| config_error(format!("connection_string: {e}")))?;
                if let Some(path) = &cs.entity_path {
                    if *path != cfg.event_hub {
                        return Err(config_error(format!(
                            "the connection string's EntityPath '{path}' is not event_hub '{}'",
                            cfg.event_hub
                        )));
                    }
                }
                Ok(Connector {
                    namespace: cs.namespace.clone(),
                    event_hub: cfg.event_hub.clone(),
                    consumer_group: cfg.consumer_group.clone(),
                    custom_endpoint: cfg.custom_endpoint.clone().or_else(|| cs.custom_endpoint()),
                    secrets: cs.secrets(),
                    how: How::ConnectionString(cs),
                })
            }
            Auth::Entra { kind, client_id } => {
                let namespace = cfg.fully_qualified_namespace.clone().ok_or_else(|| {
                    config_error("Entra ID auth needs fully_qualified_namespace".into())
                })?;
                let (kind, client_id) = (*kind, client_id.clone());
                let credential: Arc<dyn TokenCredential> =
                    RenewingCredential::new(move || entra_credential(kind, client_id.clone()))
                        .map_err(|e| {
                            config_error(format!("building the Entra ID credential: {e}"))
                        })?;
                Ok(Connector {
                    namespace,
                    event_hub: cfg.event_hub.clone(),
                    consumer_group: cfg.consumer_group.clone(),
                    custom_endpoint: cfg.custom_endpoint.clone(),
                    secrets: Vec::new(),
                    how: How::Entra(credential),
                })
            }
        }
    }

    /// `<namespace>/<hub>`, for messages.
    pub fn target(&self) -> String {
        format!("{}/{}", self.namespace, self.event_hub)
    }

    /// Opens a client (one AMQP connection) with the SDK's retries off.
    pub async fn open(&self) -> Result<ConsumerClient, Failure> {
        let retry = RetryOptions {
            max_retries: 0,
            ..Default::default()
        };
        let mut builder = ConsumerClient::builder()
            .with_application_id("hubwatch".to_string())
            .with_consumer_group(self.consumer_group.clone())
            .with_retry_options(retry);
        if let Some(endpoint) = &self.custom_endpoint {
            builder = builder.with_custom_endpoint(endpoint.clone());
        }
        let opened = match &self.how {
            How::ConnectionString(cs) => {
                builder
                    .open_with_connection_string(cs.expose(), Some(&self.event_hub))
                    .await
            }
            How::Entra(credential) => {
                builder
                    .open(&self.namespace, self.event_hub.clone(), credential.clone())
                    .await
            }
        };
        opened.map_err(|e| self.failure(&e))
    }

    /// Classifies an SDK error and scrubs its text.
    pub fn failure(&self, e: &EventHubsError) -> Failure {
        let (kind, status) = classify(e);
        Failure {
            kind,
            status,
            detail: scrub(&chain_text(e), &self.secrets),
        }
    }
}

pub(crate) fn entra_credential(
    kind: EntraKind,
    client_id: Option<String>,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    use azure_identity::*;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let kind = match kind {
        EntraKind::Default if env("AZURE_FEDERATED_TOKEN_FILE").is_some() => {
            EntraKind::WorkloadIdentity
        }
        EntraKind::Default if env("AZURE_CLIENT_SECRET").is_some() => EntraKind::ClientSecret,
        EntraKind::Default => EntraKind::ManagedIdentity,
        k => k,
    };
    Ok(match kind {
        EntraKind::WorkloadIdentity => {
            WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                client_id,
                ..Default::default()
            }))?
        }
        EntraKind::ManagedIdentity => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.map(UserAssignedId::ClientId),
                ..Default::default()
            }))?
        }
        EntraKind::ClientSecret => {
            let missing = |name: &str| {
                azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    format!("environment variable {name} is not set"),
                )
            };
            let tenant = env("AZURE_TENANT_ID").ok_or_else(|| missing("AZURE_TENANT_ID"))?;
            let client = client_id
                .or_else(|| env("AZURE_CLIENT_ID"))
                .ok_or_else(|| missing("AZURE_CLIENT_ID"))?;
            let secret =
                env("AZURE_CLIENT_SECRET").ok_or_else(|| missing("AZURE_CLIENT_SECRET"))?;
            ClientSecretCredential::new(&tenant, client, Secret::new(secret), None)?
        }
        EntraKind::AzureCli | EntraKind::Default => AzureCliCredential::new(None)?,
    })
}

/// The error and its causes, joined, as one line.
fn chain_text(e: &EventHubsError) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    for _ in 0..16 {
        let Some(c) = cause else { break };
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// The kind of an SDK error (and its status, if any): the first node of the cause chain
/// that says something definite wins; the text is the fallback for errors the SDK flattens.
fn classify(e: &EventHubsError) -> (FailureKind, Option<u16>) {
    if matches!(e.kind, SdkErrorKind::ConsumerDisconnected(_)) {
        return (FailureKind::Stolen, None);
    }
    let mut node: Option<&(dyn std::error::Error + 'static)> = match &e.kind {
        SdkErrorKind::AmqpError(a) => Some(a),
        SdkErrorKind::AzureCore(c) => Some(c),
        _ => None,
    };
    for _ in 0..16 {
        let Some(n) = node else { break };
        if let Some(a) = n.downcast_ref::<AmqpError>() {
            if let Some(found) = classify_amqp(a) {
                return found;
            }
        } else if let Some(c) = n.downcast_ref::<azure_core::Error>() {
            match c.kind() {
                azure_core::error::ErrorKind::Credential => return (FailureKind::Auth, None),
                azure_core::error::ErrorKind::HttpResponse { status, .. } => {
                    let code = u16::from(*status);
                    if code == 401 || code == 403 {
                        return (FailureKind::Auth, Some(code));
                    }
                }
                azure_core::error::ErrorKind::Io | azure_core::error::ErrorKind::Connection => {
                    return (FailureKind::Disconnected, None)
                }
                _ => {}
            }
        } else if n.downcast_ref::<std::io::Error>().is_some() {
            return (FailureKind::Disconnected, None);
        }
        node = n.source();
    }
    let text = chain_text(e).to_ascii_lowercase();
    if text.contains("amqp:link:stolen") || text.contains("linkstolen") {
        (FailureKind::Stolen, None)
    } else if text.contains("unauthorized") {
        (FailureKind::Auth, Some(401))
    } else {
        (FailureKind::Other, None)
    }
}

fn classify_amqp(a: &AmqpError) -> Option<(FailureKind, Option<u16>)> {
    Some(match a.kind() {
        AmqpErrorKind::ManagementStatusCode(status, _) => {
            let code = u16::from(*status);
            let kind = match code {
                401 | 403 => FailureKind::Auth,
                404 => FailureKind::NotFound,
                _ => FailureKind::Other,
            };
            (kind, Some(code))
        }
        AmqpErrorKind::AmqpDescribedError(d) => (
            match d.condition {
                AmqpErrorCondition::UnauthorizedAccess => FailureKind::Auth,
                AmqpErrorCondition::LinkStolen => FailureKind::Stolen,
                AmqpErrorCondition::NotFound => FailureKind::NotFound,
                AmqpErrorCondition::ArgumentOutOfRangeError => FailureKind::InvalidPosition,
                AmqpErrorCondition::ConnectionForced | AmqpErrorCondition::LinkDetachForced => {
                    FailureKind::Disconnected
                }
                _ => FailureKind::Other,
            },
            None,
        ),
        AmqpErrorKind::ConnectionClosedByRemote(_)
        | AmqpErrorKind::ConnectionDetachedByRemote(_)
        | AmqpErrorKind::ConnectionDropped(_)
        | AmqpErrorKind::SessionClosedByRemote(_)
        | AmqpErrorKind::SessionDetachedByRemote(_)
        | AmqpErrorKind::LinkClosedByRemote(_)
        | AmqpErrorKind::LinkDetachedByRemote(_)
        | AmqpErrorKind::LinkStateError(_)
        | AmqpErrorKind::DetachError(_)
        | AmqpErrorKind::FramingError(_)
        | AmqpErrorKind::IdleTimeoutElapsed(_) => {
            // A remote detach may carry the reason (e.g. link stolen) deeper in the chain.
            let deeper = std::error::Error::source(a).and_then(|s| {
                let t = s.to_string().to_ascii_lowercase();
                if t.contains("amqp:link:stolen") || t.contains("linkstolen") {
                    Some(FailureKind::Stolen)
                } else if t.contains("unauthorized") {
                    Some(FailureKind::Auth)
                } else {
                    None
                }
            });
            (deeper.unwrap_or(FailureKind::Disconnected), None)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core_amqp::{AmqpDescribedError, AmqpOrderedMap};

    fn described(condition: AmqpErrorCondition) -> EventHubsError {
        EventHubsError::from(AmqpError::from(AmqpErrorKind::AmqpDescribedError(
            AmqpDescribedError::new(condition, Some("why".into()), AmqpOrderedMap::new()),
        )))
    }

    #[test]
    fn errors_are_classified_through_their_wrappers() {
        let unauthorized =
            EventHubsError::from(AmqpError::from(AmqpErrorKind::ManagementStatusCode(
                azure_core::http::StatusCode::Unauthorized,
                Some("InvalidSignature".into()),
            )));
        assert_eq!(classify(&unauthorized), (FailureKind::Auth, Some(401)));

        // The SDK wraps attach and CBS errors in azure_core::Error.
        let wrapped = EventHubsError::from(AmqpError::from(azure_core::Error::with_error(
            azure_core::error::ErrorKind::Other,
            AmqpError::from(AmqpErrorKind::ManagementStatusCode(
                azure_core::http::StatusCode::NotFound,
                None,
            )),
            "Failed to ensure receiver",
        )));
        assert_eq!(classify(&wrapped), (FailureKind::NotFound, Some(404)));

        assert_eq!(
            classify(&described(AmqpErrorCondition::LinkStolen)).0,
            FailureKind::Stolen
        );
        assert_eq!(
            classify(&EventHubsError::from(SdkErrorKind::ConsumerDisconnected(
                None
            )))
            .0,
            FailureKind::Stolen
        );
        assert_eq!(
            classify(&described(AmqpErrorCondition::UnauthorizedAccess)).0,
            FailureKind::Auth
        );
        assert_eq!(
            classify(&described(AmqpErrorCondition::ConnectionForced)).0,
            FailureKind::Disconnected
        );
        let dropped = EventHubsError::from(AmqpError::from(AmqpErrorKind::ConnectionDropped(
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        )));
        assert_eq!(classify(&dropped).0, FailureKind::Disconnected);
        let credential = EventHubsError::from(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            "no token",
        ));
        assert_eq!(classify(&credential).0, FailureKind::Auth);
        assert_eq!(
            classify(&described(AmqpErrorCondition::InternalError)).0,
            FailureKind::Other
        );
    }

    #[test]
    fn kinds_label_the_metric_and_decide_fatality() {
        assert_eq!(FailureKind::Disconnected.label(), "disconnected");
        assert_eq!(FailureKind::NotFound.label(), "other");
        assert!(FailureKind::Auth.is_fatal() && FailureKind::NotFound.is_fatal());
        assert!(!FailureKind::Disconnected.is_fatal() && !FailureKind::Stolen.is_fatal());
    }

    #[test]
    fn failures_are_scrubbed_and_auth_errors_read_well() {
        let mut cfg = AmqpSourceConfig::with_connection_string(
            "eh",
            "Endpoint=sb://ns.example/;SharedAccessKeyName=R;SharedAccessKey=sup3rs3cretkey",
            "hub",
            super::super::StartPosition::Earliest,
        );
        let c = Connector::new(&cfg).unwrap();
        let e = EventHubsError::from(AmqpError::from(AmqpErrorKind::ManagementStatusCode(
            azure_core::http::StatusCode::Unauthorized,
            Some("bad key sup3rs3cretkey".into()),
        )));
        let f = c.failure(&e);
        assert_eq!(f.kind, FailureKind::Auth);
        assert!(!f.detail.contains("sup3rs3cretkey"), "{}", f.detail);
        let msg = f.into_error(&c.target()).to_string();
        assert!(
            msg.starts_with("Event Hubs refused the credentials for ns.example/hub: 401"),
            "{msg}"
        );
        assert!(!msg.contains("sup3rs3cretkey"), "{msg}");

        cfg.event_hub = "other".into();
        cfg.connection_string = Some(
            "Endpoint=sb://ns.example/;SharedAccessKeyName=R;SharedAccessKey=k3y;EntityPath=hub"
                .into(),
        );
        let e = Connector::new(&cfg).err().unwrap().to_string();
        assert!(e.contains("EntityPath 'hub'") && !e.contains("k3y"), "{e}");
    }
}
