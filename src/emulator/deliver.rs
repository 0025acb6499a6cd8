//! Partition receivers: check the attach (hub, consumer group, partition, selector filter,
//! epoch), then stream the partition log to the client — never beyond its link credit
//! (fe2o3's `send` waits for credit), waiting at the end of the log for new events, and
//! detaching with `amqp:link:stolen` when a newer epoch takes the partition.

use std::sync::Arc;

use fe2o3_amqp::link::{SendError, Sender};
use fe2o3_amqp::types::messaging::Body;
use fe2o3_amqp::types::performatives::Attach;
use fe2o3_amqp::types::primitives::{Symbol, Value};
use fe2o3_amqp::Sendable;

use super::faults::Counters;
use super::filter::{self, StartPosition};
use super::readers::ReaderGuard;
use super::server::{Conn, Ctx};
use super::EmulatorError;

/// Events copied out of the log per lock; sending them then waits on credit unlocked.
const CHUNK: usize = 64;
const SELECTOR_FILTER: &str = "apache.org:selector-filter:string";
/// Apache vendor code 0x468C, filter 4: what the SDKs put as the descriptor.
const SELECTOR_FILTER_CODE: u64 = 0x0000_468C_0000_0004;
const EPOCH: &str = "com.microsoft:epoch";
/// How often an idle receiver checks that its connection's token is still valid.
const TOKEN_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// A checked, registered receiver, ready to stream from `next`.
#[derive(Debug)]
pub(crate) struct Reader {
    hub: String,
    partition: u32,
    next: i64,
    guard: ReaderGuard,
    /// The entity path the connection's tokens must keep covering.
    auth_path: String,
}

/// Runs every check an attach must pass, registering the receiver (which may displace
/// older epochs) and resolving its start position.
pub(crate) fn prepare(
    attach: &Attach,
    hub: &str,
    group: &str,
    partition: &str,
    ctx: &Ctx,
) -> Result<Reader, EmulatorError> {
    let hub = ctx.ns.hub(hub)?;
    let group = hub.check_consumer_group(group)?;
    let id = hub.partition_id(partition)?;
    let position = selector(attach)?;
    let epoch = epoch(attach)?;
    let auth_path = format!("{}/ConsumerGroups/{group}/Partitions/{id}", hub.name);
    let key = (hub.name.to_ascii_lowercase(), group, id);
    let (guard, displaced) = ctx.ns.readers.register(key, &attach.name, epoch)?;
    Counters::bump(&ctx.counters.links_stolen, displaced);
    let next = hub.partition(id)?.lock().resolve(&position)?;
    tracing::debug!(hub = %hub.name, partition = id, ?position, ?epoch, next, "emulator: receiver attached");
    Ok(Reader {
        hub: hub.name.clone(),
        partition: id,
        next,
        guard,
        auth_path,
    })
}

/// The start position from the source's filter set (either descriptor form); a receiver
/// without one reads from the start.
fn selector(attach: &Attach) -> Result<StartPosition, EmulatorError> {
    let Some(filters) = attach.source.as_ref().and_then(|s| s.filter.as_ref()) else {
        return Ok(StartPosition::EARLIEST);
    };
    for (key, value) in filters.iter() {
        let expression = match value {
            Value::Described(d) => {
                let named = match &d.descriptor {
                    serde_amqp::descriptor::Descriptor::Name(s) => s.0 == SELECTOR_FILTER,
                    serde_amqp::descriptor::Descriptor::Code(c) => *c == SELECTOR_FILTER_CODE,
                };
                match (&d.value, named || key.0 == SELECTOR_FILTER) {
                    (Value::String(s), true) => Some(s),
                    _ => None,
                }
            }
            Value::String(s) if key.0 == SELECTOR_FILTER => Some(s),
            _ => None,
        };
        if let Some(expression) = expression {
            return filter::parse(expression);
        }
    }
    Ok(StartPosition::EARLIEST)
}

/// `com.microsoft:epoch` from the link properties; the service insists on a long.
fn epoch(attach: &Attach) -> Result<Option<i64>, EmulatorError> {
    let Some(value) = attach
        .properties
        .as_ref()
        .and_then(|p| p.get(&Symbol::from(EPOCH)))
    else {
        return Ok(None);
    };
    match value {
        Value::Long(v) => Ok(Some(*v)),
        Value::Int(v) => Ok(Some(i64::from(*v))),
        Value::Null => Ok(None),
        other => Err(EmulatorError::ArgumentError(format!(
            "{EPOCH} must be a long, not {other:?}"
        ))),
    }
}

/// Streams the partition until the client detaches, the connection ends, or the receiver
/// is displaced.
pub(crate) async fn run(mut sender: Sender, mut reader: Reader, ctx: Arc<Ctx>, conn: Arc<Conn>) {
    let mut closed = conn.closed.clone();
    let Ok(partition) = ctx
        .ns
        .hub(&reader.hub)
        .and_then(|h| h.partition(reader.partition))
    else {
        return;
    };
    let mut tail = partition.subscribe();
    loop {
        // Like the service, drop the link once no token on the connection covers it any
        // more (it expired and was not renewed on $cbs).
        if let Err(e) = conn.authorize(&reader.auth_path) {
            tracing::debug!(error = %e, "emulator: receiver's token expired");
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                sender.close_with_error(
                    EmulatorError::Unauthorized(format!(
                        "The token for '{}' expired; put a new one on $cbs before expiry.",
                        reader.auth_path
                    ))
                    .to_amqp(),
                ),
            )
            .await;
            return;
        }
        // Mark the tail seen *before* reading, so an append right after the read wakes us.
        tail.borrow_and_update();
        let events = partition.lock().read_from(reader.next, CHUNK);
        if events.is_empty() {
            tokio::select! {
                _ = closed.wait() => return,
                stolen = &mut reader.guard.stolen => return displace(sender, stolen).await,
                closing = super::links::detached(&mut sender) => return super::links::answer_detach(sender, closing).await,
                changed = tail.changed() => if changed.is_err() { return },
                // Idle links notice an expired token too.
                _ = tokio::time::sleep(TOKEN_CHECK) => {}
            }
            continue;
        }
        for event in events {
            if let Some(delay) = ctx.faults.delivery_delay() {
                tokio::select! {
                    _ = closed.wait() => return,
                    stolen = &mut reader.guard.stolen => return displace(sender, stolen).await,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            let sent = tokio::select! {
                _ = closed.wait() => return,
                stolen = &mut reader.guard.stolen => return displace(sender, stolen).await,
                sent = send(&mut sender, &event.delivery) => sent,
            };
            if let Err(e) = sent {
                tracing::debug!(error = %e, "emulator: receiver link ended");
                return;
            }
            reader.next = event.sequence_number + 1;
            Counters::bump(&ctx.counters.deliveries_sent, 1);
        }
    }
}

/// Sends one delivery; waits for link credit first. Batchable so that every Transfer field
/// is encoded (pyamqp compatibility 3).
async fn send(sender: &mut Sender, sendable: &Sendable<Body<Value>>) -> Result<(), SendError> {
    let settled = sender.send_batchable_ref(sendable).await?;
    settled.await.map(|_| ())
}

async fn displace(
    sender: Sender,
    stolen: Result<EmulatorError, tokio::sync::oneshot::error::RecvError>,
) {
    let err = stolen.unwrap_or_else(|_| {
        EmulatorError::LinkStolen("The receiver was displaced by a newer epoch.".into())
    });
    tracing::debug!(error = %err, "emulator: receiver displaced");
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        sender.close_with_error(err.to_amqp()),
    )
    .await;
}
