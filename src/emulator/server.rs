//! The TCP side: the accept loop (bounded number of connections, refusal fault), the
//! protocol-header sniffing that lets a client start with or without SASL, and the
//! connection task that accepts sessions until the client, a fault or shutdown closes it.
//!
//! The four pyamqp (Python SDK) compatibility settings live where they apply: the Open
//! carries `properties` and the Begin `handle-max`/`properties` (here), so that no trailing
//! field is omitted; replies are sent as batchable transfers (`nodes`, `deliver`); and
//! receiving links settle first (`links`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fe2o3_amqp::acceptor::sasl_acceptor::SaslServerFrame;
use fe2o3_amqp::acceptor::{ConnectionAcceptor, SaslAcceptor, SessionAcceptor};
use fe2o3_amqp::types::definitions::{ConnectionError, Fields};
use fe2o3_amqp::types::primitives::{Array, Symbol, Value};
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslOutcome, SaslResponse};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::faults::{Counters, FaultHandle};
use super::message::AmqpMessage;
use super::namespace::Namespace;
use super::sas::Grant;
use super::tcp::QuickAck;
use super::EmulatorError;
use crate::shutdown::{self, Shutdown};

/// Open connections at most; more are closed at once (and counted as refused).
const MAX_CONNECTIONS: usize = 256;
/// Sessions per connection at most (the Rust SDK opens one per partition plus two).
const MAX_SESSIONS: usize = 256;
/// Tokens remembered per connection; a client renewing a token replaces it.
const MAX_GRANTS: usize = 256;
/// `$cbs`/`$management` reply links remembered per connection.
const MAX_REPLY_ROUTES: usize = 256;
/// A client has this long to send its protocol header and finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing a connection waits for the client's Close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Same as the service: 256 KiB frames.
const MAX_FRAME_SIZE: u32 = 262_144;

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub ns: Namespace,
    pub faults: FaultHandle,
    pub counters: Counters,
    /// With `[tls]`: every connection is TLS, then SASL.
    pub tls: Option<super::tls::Acceptor>,
}

/// One connection's own state, shared by its session and link tasks.
#[derive(Debug)]
pub(crate) struct Conn {
    pub id: u64,
    /// SAS grants from `put-token`; a SASL PLAIN login grants the whole namespace.
    grants: Mutex<Vec<Grant>>,
    /// Reply links of `$cbs`/`$management`, by their target address (the `reply-to` of
    /// requests), each a channel to the task that owns the link.
    replies: Mutex<HashMap<String, mpsc::Sender<AmqpMessage>>>,
    /// Fires when the connection ends, so that every link task stops with it.
    pub closed: Shutdown,
}

impl Conn {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_grant(&self, grant: Grant) {
        let mut grants = Self::lock(&self.grants);
        grants.retain(|g| g.scope != grant.scope);
        if grants.len() >= MAX_GRANTS {
            grants.remove(0);
        }
        grants.push(grant);
    }

    /// Ok if some unexpired token on this connection covers `path`.
    pub fn authorize(&self, path: &str) -> Result<(), EmulatorError> {
        let now = SystemTime::now();
        if Self::lock(&self.grants).iter().any(|g| g.covers(path, now)) {
            Ok(())
        } else {
            Err(EmulatorError::Unauthorized(format!(
                "Unauthorized access to '{path}': no valid token was put on $cbs for it on this \
                 connection."
            )))
        }
    }

    /// Registers a reply link. Routes whose link task has ended are dropped first; past
    /// [`MAX_REPLY_ROUTES`] live ones the new route is not kept (its requests then go to the
    /// node's default route).
    pub fn set_reply_route(&self, address: String, tx: mpsc::Sender<AmqpMessage>) {
        let mut routes = Self::lock(&self.replies);
        routes.retain(|_, r| !r.is_closed());
        if routes.len() < MAX_REPLY_ROUTES || routes.contains_key(&address) {
            routes.insert(address, tx);
        }
    }

    /// The reply channel for `reply_to`, else (a client that names none) the only one for
    /// this node.
    pub fn reply_route(
        &self,
        reply_to: Option<&str>,
        node: &str,
    ) -> Option<mpsc::Sender<AmqpMessage>> {
        let routes = Self::lock(&self.replies);
        reply_to
            .and_then(|r| routes.get(r))
            .or_else(|| routes.get(node))
            .cloned()
    }
}

/// Accepts connections until shutdown, then waits (bounded) for them to close.
pub(crate) async fn serve(listener: TcpListener, ctx: Arc<Ctx>, mut shutdown: Shutdown) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let ids = AtomicU64::new(0);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "emulator: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let permit = match limit.clone().try_acquire_owned() {
                    Ok(p) if !ctx.faults.refusing_connections() => p,
                    _ => {
                        Counters::bump(&ctx.counters.connections_refused, 1);
                        tracing::debug!(%peer, "emulator: connection refused");
                        continue;
                    }
                };
                Counters::bump(&ctx.counters.connections_accepted, 1);
                let id = ids.fetch_add(1, Ordering::Relaxed);
                connections.spawn(run_connection(stream, id, ctx.clone(), shutdown.clone(), permit));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Connections watch the same shutdown signal and close themselves.
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(super::SHUTDOWN_GRACE, drain)
        .await
        .is_err()
    {
        connections.abort_all();
    }
}

async fn run_connection(
    stream: TcpStream,
    id: u64,
    ctx: Arc<Ctx>,
    mut shutdown: Shutdown,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    // Over TLS every Event Hubs client authenticates with SASL; in plain AMQP the header
    // tells (Python in emulator mode skips SASL).
    let sasl = match &ctx.tls {
        Some(_) => true,
        None => match tokio::time::timeout(HANDSHAKE_TIMEOUT, uses_sasl(&stream)).await {
            Ok(Ok(sasl)) => sasl,
            _ => return,
        },
    };
    let plain_login = Arc::new(Mutex::new(false));
    let open_properties = fields(&[("product", "hubwatch-emulator")]);
    let builder = ConnectionAcceptor::builder()
        .container_id(format!("hubwatch-emulator-{id}"))
        .max_frame_size(MAX_FRAME_SIZE)
        // pyamqp compatibility 1: with properties set, every Open field is encoded.
        .properties(open_properties);
    let accepted = if sasl {
        let acceptor = builder
            .sasl_acceptor(EventHubsSasl {
                keys: Arc::new(
                    ctx.ns
                        .keys
                        .iter()
                        .map(|k| (k.name.clone(), k.key.clone()))
                        .collect(),
                ),
                plain_login: plain_login.clone(),
            })
            .build();
        match &ctx.tls {
            Some(tls) => tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                let secured = tls.0.accept(QuickAck(stream)).await.map_err(|e| {
                    tracing::debug!(id, error = %e, "emulator: TLS handshake failed");
                });
                match secured {
                    Ok(s) => Some(acceptor.accept(s).await),
                    Err(()) => None,
                }
            })
            .await
            .ok()
            .flatten()
            .ok_or(()),
            None => tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(QuickAck(stream)))
                .await
                .map_err(|_| ()),
        }
    } else {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, builder.build().accept(QuickAck(stream)))
            .await
            .map_err(|_| ())
    };
    let mut connection = match accepted {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(id, error = %e, "emulator: handshake failed");
            return;
        }
        Err(()) => return,
    };

    let (closed_trigger, closed) = shutdown::channel();
    let conn = Arc::new(Conn {
        id,
        grants: Mutex::new(Vec::new()),
        replies: Mutex::new(HashMap::new()),
        closed,
    });
    if *Conn::lock(&plain_login) {
        conn.add_grant(Grant {
            scope: String::new(),
            expires_at: SystemTime::now() + Duration::from_secs(365 * 24 * 3600),
        });
    }
    tracing::debug!(id, sasl, "emulator: connection open");

    let mut drops = ctx.faults.subscribe_drops();
    let mut sessions = JoinSet::new();
    let mut close_error = None;
    loop {
        tokio::select! {
            _ = shutdown.wait() => {
                tracing::debug!(id, "emulator: closing the connection for shutdown");
                break;
            }
            Ok(()) = drops.changed() => {
                Counters::bump(&ctx.counters.connections_dropped, 1);
                close_error = Some(fe2o3_amqp::types::definitions::Error::new(
                    ConnectionError::ConnectionForced,
                    Some("The connection was closed by the emulator (fault injection).".to_string()),
                    None,
                ));
                break;
            }
            incoming = connection.next_incoming_session() => {
                let Some(incoming) = incoming else {
                    tracing::debug!(id, "emulator: the connection ended");
                    break;
                };
                if sessions.len() >= MAX_SESSIONS {
                    tracing::warn!(id, "emulator: too many sessions; closing the connection");
                    break;
                }
                // pyamqp compatibility 2: Begin with handle-max and properties set.
                let acceptor = SessionAcceptor::builder()
                    .handle_max(255u32)
                    .properties(fields(&[("product", "hubwatch-emulator")]))
                    .build();
                match acceptor.accept_incoming_session(incoming, &mut connection).await {
                    Ok(session) => {
                        sessions.spawn(super::links::run_session(session, ctx.clone(), conn.clone()));
                    }
                    Err(e) => {
                        tracing::debug!(id, error = %e, "emulator: begin failed");
                        break;
                    }
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    closed_trigger.trigger();
    let drain = async { while sessions.join_next().await.is_some() {} };
    if tokio::time::timeout(CLOSE_TIMEOUT, drain).await.is_err() {
        sessions.abort_all();
    }
    if !connection.is_closed() {
        let close = async {
            match close_error {
                Some(e) => connection.close_with_error(e).await,
                None => connection.close().await,
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    }
    tracing::debug!(id, "emulator: connection closed");
}

/// Peeks at the client's protocol header: `AMQP 3 1 0 0` is SASL, `AMQP 0 1 0 0` plain AMQP
/// (Python in emulator mode skips SASL).
async fn uses_sasl(stream: &TcpStream) -> std::io::Result<bool> {
    let mut header = [0u8; 8];
    loop {
        let n = stream.peek(&mut header).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if n >= 5 {
            return Ok(header[4] == 3);
        }
        // Fewer bytes than the protocol id: wait for the rest instead of spinning.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) fn fields(pairs: &[(&str, &str)]) -> Fields {
    let mut f = Fields::default();
    for (k, v) in pairs {
        f.insert(Symbol::from(*k), Value::String(v.to_string()));
    }
    f
}

/// SASL as Event Hubs offers it: ANONYMOUS (authorization then comes from CBS) and PLAIN
/// with a SAS rule name and key, which authorizes the whole namespace.
#[derive(Debug, Clone)]
struct EventHubsSasl {
    keys: Arc<Vec<(String, String)>>,
    /// Shared with the connection task, which reads it once the handshake is done.
    plain_login: Arc<Mutex<bool>>,
}

impl SaslAcceptor for EventHubsSasl {
    fn mechanisms(&self) -> Array<Symbol> {
        Array::from(vec![Symbol::from("ANONYMOUS"), Symbol::from("PLAIN")])
    }

    fn on_init(&mut self, init: SaslInit) -> SaslServerFrame {
        let code = match init.mechanism.0.as_str() {
            "ANONYMOUS" => SaslCode::Ok,
            "PLAIN" => {
                let response = init
                    .initial_response
                    .map(|b| b.into_vec())
                    .unwrap_or_default();
                let mut parts = response.split(|b| *b == 0);
                let (_authz, user, pass) = (parts.next(), parts.next(), parts.next());
                let ok = self.keys.iter().any(|(name, key)| {
                    user == Some(name.as_bytes()) && pass == Some(key.as_bytes())
                });
                *Conn::lock(&self.plain_login) = ok;
                if ok {
                    SaslCode::Ok
                } else {
                    SaslCode::Auth
                }
            }
            _ => SaslCode::Auth,
        };
        SaslServerFrame::Outcome(SaslOutcome {
            code,
            additional_data: None,
        })
    }

    fn on_response(&mut self, _response: SaslResponse) -> SaslServerFrame {
        // Neither mechanism has a challenge round.
        SaslServerFrame::Outcome(SaslOutcome {
            code: SaslCode::Auth,
            additional_data: None,
        })
    }
}
