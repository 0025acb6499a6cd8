//! The two request/response nodes: `$cbs` (`put-token`: SAS tokens checked and turned into
//! grants on the connection) and `$management` (READ of hub and partition properties).
//!
//! Each request link is served by one task, in order, because the Rust management client
//! takes the next message on its reply link as the answer. Replies go through a bounded
//! channel to the task owning the reply link (the link whose target is the request's
//! `reply-to`), with `correlation-id` set for the SDKs that match on it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::types::messaging::{AmqpValue, ApplicationProperties, Body, Message, Properties};
use fe2o3_amqp::types::primitives::{Array, OrderedMap, SimpleValue, Timestamp, Value};
use fe2o3_amqp::Sendable;
use tokio::sync::mpsc;

use super::faults::Counters;
use super::log::unix_ms;
use super::message::AmqpMessage;
use super::server::{Conn, Ctx};
use super::EmulatorError;
use super::{jwt, sas};

/// Replies queued per reply link; a client that stops reading stalls only its own node.
const REPLY_QUEUE: usize = 64;
/// How long a request waits for its reply link to be attached.
const REPLY_LINK_WAIT: Duration = Duration::from_secs(2);
/// AMQP's "no time" (year 1), which the SDKs map to `None`.
const CE_ZERO_MS: i64 = -62_135_596_800_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Cbs,
    Management,
}

impl Node {
    fn key(self) -> &'static str {
        match self {
            Node::Cbs => "$cbs",
            Node::Management => "$management",
        }
    }
}

/// Registers a reply link under its address (and as the node's default) and returns the
/// queue its task drains.
pub(crate) fn reply_route(
    conn: &Conn,
    reply_to: String,
    node_key: &str,
) -> mpsc::Receiver<AmqpMessage> {
    let (tx, rx) = mpsc::channel(REPLY_QUEUE);
    conn.set_reply_route(node_key.to_string(), tx.clone());
    conn.set_reply_route(reply_to, tx);
    rx
}

/// Sends queued replies on the reply link until the client detaches or the connection ends.
pub(crate) async fn pump_replies(
    mut sender: Sender,
    mut rx: mpsc::Receiver<AmqpMessage>,
    conn: Arc<Conn>,
) {
    let mut closed = conn.closed.clone();
    loop {
        let reply = tokio::select! {
            _ = closed.wait() => return,
            closing = super::links::detached(&mut sender) => return super::links::answer_detach(sender, closing).await,
            reply = rx.recv() => match reply { Some(r) => r, None => return },
        };
        // pyamqp compatibility 3: a batchable transfer encodes all 11 Transfer fields
        // (pyamqp reads the payload at a fixed index).
        let sendable = Sendable::builder().message(reply).settled(true).build();
        match sender.send_batchable(sendable).await {
            Ok(fut) => {
                let _ = fut.await;
            }
            Err(_) => return,
        }
    }
}

/// Answers requests on one `$cbs` or `$management` request link, in order.
pub(crate) async fn serve_requests(
    mut receiver: Receiver,
    node: Node,
    ctx: Arc<Ctx>,
    conn: Arc<Conn>,
) {
    let mut closed = conn.closed.clone();
    loop {
        let delivery = tokio::select! {
            _ = closed.wait() => return,
            d = receiver.recv::<Body<Value>>() => match d { Ok(d) => d, Err(_) => return },
        };
        // Same race as producer sends (see `ingest::SETTLE_PAUSE`).
        super::ingest::settle_pause().await;
        let _ = receiver.accept(&delivery).await;
        let request = delivery.into_message();
        let outcome = match node {
            Node::Cbs => put_token(&request, &ctx, &conn),
            Node::Management => read(&request, &ctx, &conn),
        };
        let props = request.properties.as_ref();
        let reply = response(props.and_then(|p| p.message_id.clone()), outcome, node);
        let reply_to = props.and_then(|p| p.reply_to.clone());
        let mut waited = Duration::ZERO;
        let route = loop {
            if let Some(r) = conn.reply_route(reply_to.as_deref(), node.key()) {
                break Some(r);
            }
            if waited >= REPLY_LINK_WAIT {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        };
        match route {
            Some(tx) if tx.send(reply).await.is_ok() => {}
            _ => tracing::debug!(
                conn = conn.id,
                ?reply_to,
                "emulator: no reply link; response dropped"
            ),
        }
        // Clients often drop their request links right after the answer (see
        // `links::DETACH_GRACE`): let their End arrive before reading the detach.
        tokio::select! {
            _ = closed.wait() => return,
            _ = tokio::time::sleep(super::links::DETACH_GRACE) => {}
        }
    }
}

/// What a request produced: (status code, description, body), or an error.
type Outcome = Result<(i32, &'static str, Value), EmulatorError>;

/// The reply to a request. `$management` failures also carry `error-condition`; `$cbs`
/// ones do not, like the service's: pyamqp drops the status code of a CBS reply that has
/// one, and would then report "Status code: None" instead of 401.
fn response(
    correlation: Option<fe2o3_amqp::types::messaging::MessageId>,
    outcome: Outcome,
    node: Node,
) -> AmqpMessage {
    let mut app = ApplicationProperties::default();
    let body = match outcome {
        Ok((code, description, body)) => {
            app.insert("status-code".into(), SimpleValue::Int(code));
            app.insert(
                "status-description".into(),
                SimpleValue::String(description.into()),
            );
            body
        }
        Err(e) => {
            app.insert("status-code".into(), SimpleValue::Int(e.status_code()));
            app.insert(
                "status-description".into(),
                SimpleValue::String(e.to_string()),
            );
            if node == Node::Management {
                app.insert(
                    "error-condition".into(),
                    SimpleValue::Symbol(e.condition_symbol().into()),
                );
            }
            Value::Null
        }
    };
    Message::builder()
        .properties(Properties {
            correlation_id: correlation,
            ..Default::default()
        })
        .application_properties(app)
        .body(Body::Value(AmqpValue(body)))
        .build()
}

fn app_string(message: &AmqpMessage, key: &str) -> Option<String> {
    match message.application_properties.as_ref()?.get(key)? {
        SimpleValue::String(s) => Some(s.clone()),
        SimpleValue::Symbol(s) => Some(s.0.clone()),
        _ => None,
    }
}

fn put_token(request: &AmqpMessage, ctx: &Ctx, conn: &Conn) -> Outcome {
    let op = app_string(request, "operation").unwrap_or_default();
    if op != "put-token" {
        return Err(EmulatorError::ArgumentError(format!(
            "unsupported $cbs operation {op:?}"
        )));
    }
    let audience = app_string(request, "name").unwrap_or_default();
    let kind = app_string(request, "type").unwrap_or_default();
    let token = match &request.body {
        Body::Value(AmqpValue(Value::String(t))) => t.as_str(),
        _ => "",
    };
    let result = match (kind.as_str(), &ctx.ns.entra) {
        ("servicebus.windows.net:sastoken", _) => sas::validate(
            token,
            &audience,
            &ctx.ns.keys,
            &ctx.ns.hosts,
            SystemTime::now(),
        )
        .map_err(|e| EmulatorError::Unauthorized(format!("InvalidSignature: {e}"))),
        ("jwt", Some(entra)) => jwt::validate(
            token,
            &audience,
            &entra.signing_key,
            &ctx.ns.hosts,
            SystemTime::now(),
        )
        .map_err(|e| EmulatorError::Unauthorized(format!("InvalidToken: {e}"))),
        ("jwt", None) => Err(EmulatorError::Unauthorized(
            "Entra ID tokens are not accepted by this emulator (its configuration has no \
             [entra] signing_key); use a SAS token"
                .into(),
        )),
        _ => Err(EmulatorError::Unauthorized(format!(
            "token type {kind:?} is not supported by the emulator; use a SAS token"
        ))),
    };
    match result {
        Ok(grant) => {
            Counters::bump(&ctx.counters.cbs_tokens_accepted, 1);
            tracing::debug!(conn = conn.id, %audience, scope = %grant.scope, "emulator: token accepted");
            conn.add_grant(grant);
            Ok((202, "Accepted", Value::Null))
        }
        Err(e) => {
            Counters::bump(&ctx.counters.cbs_tokens_refused, 1);
            // The error names the rule at most, never the key or the token.
            tracing::info!(conn = conn.id, %audience, error = %e, "emulator: token refused");
            Err(e)
        }
    }
}

fn read(request: &AmqpMessage, ctx: &Ctx, conn: &Conn) -> Outcome {
    if ctx.faults.server_busy() {
        return Err(EmulatorError::ServerBusy(
            "The server is busy (fault injection).".into(),
        ));
    }
    let op = app_string(request, "operation").unwrap_or_default();
    if op != "READ" {
        return Err(EmulatorError::ArgumentError(format!(
            "unsupported $management operation {op:?}"
        )));
    }
    let name = app_string(request, "name").unwrap_or_default();
    let hub = ctx.ns.hub(&name)?;
    // Either a token put on $cbs, or the `security_token` both SDKs attach to requests.
    let authorized = conn.authorize(&hub.name).or_else(|e| {
        let token = app_string(request, "security_token").ok_or(e.clone())?;
        let audience = format!("sb://{}/{}", ctx.ns.host, hub.name);
        sas::validate(
            &token,
            &audience,
            &ctx.ns.keys,
            &ctx.ns.hosts,
            SystemTime::now(),
        )
        .map(|_| ())
        .map_err(|_| e)
    });
    authorized?;
    let mut map = OrderedMap::new();
    let mut put = |k: &str, v: Value| {
        map.insert(Value::String(k.to_string()), v);
    };
    let kind = app_string(request, "type").unwrap_or_default();
    match kind.as_str() {
        "com.microsoft:eventhub" => {
            let ids = (0..hub.partition_count())
                .map(|i| Value::String(i.to_string()))
                .collect();
            put("name", Value::String(hub.name.clone()));
            put("type", Value::String(kind.clone()));
            put(
                "created_at",
                Value::Timestamp(Timestamp::from_milliseconds(unix_ms(hub.created_at))),
            );
            put("partition_count", Value::Int(hub.partition_count() as i32));
            put("partition_ids", Value::Array(Array(ids)));
        }
        "com.microsoft:partition" => {
            let text = app_string(request, "partition").unwrap_or_default();
            let id = hub.partition_id(&text)?;
            let s = hub.state(id)?;
            let ms = s.last_enqueued_time.map_or(CE_ZERO_MS, unix_ms);
            put("name", Value::String(hub.name.clone()));
            put("partition", Value::String(id.to_string()));
            put("type", Value::String(kind.clone()));
            put(
                "begin_sequence_number",
                Value::Long(s.beginning_sequence_number),
            );
            put(
                "last_enqueued_sequence_number",
                Value::Long(s.last_sequence_number),
            );
            put("last_enqueued_offset", Value::String(s.last_offset));
            put(
                "last_enqueued_time_utc",
                Value::Timestamp(Timestamp::from_milliseconds(ms)),
            );
            put("is_partition_empty", Value::Bool(s.is_empty));
            put(
                "runtime_info_retrieval_time_utc",
                Value::Timestamp(Timestamp::from_milliseconds(unix_ms(SystemTime::now()))),
            );
            // Geo-replication epochs: always 0 here; the Rust SDK requires the key.
            put("last_enqueued_sequence_number_epoch", Value::Long(0));
            put("begin_sequence_number_epoch", Value::Long(0));
        }
        other => {
            return Err(EmulatorError::ArgumentError(format!(
                "unknown entity type {other:?}"
            )))
        }
    }
    Ok((200, "OK", Value::Map(map)))
}
