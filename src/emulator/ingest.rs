//! Producer links: each transfer (one event, or a batch envelope of many) is routed to one
//! partition — the link's own, else by partition key, else round robin, as the service
//! keeps a batch together — stored, and accepted; or rejected with the service's condition
//! (`com.microsoft:server-busy` under the fault, `argument-error` for a malformed batch).

use std::sync::Arc;

use fe2o3_amqp::link::Receiver;
use fe2o3_amqp::types::messaging::Body;
use fe2o3_amqp::types::primitives::Value;

use super::faults::Counters;
use super::message;
use super::server::{Conn, Ctx};
use super::EmulatorError;

/// Where a producer link sends.
#[derive(Debug)]
pub(crate) struct Target {
    hub: String,
    partition: Option<u32>,
}

pub(crate) fn prepare(
    hub: &str,
    partition: Option<&str>,
    ctx: &Ctx,
) -> Result<Target, EmulatorError> {
    let hub = ctx.ns.hub(hub)?;
    let partition = partition.map(|p| hub.partition_id(p)).transpose()?;
    Ok(Target {
        hub: hub.name.clone(),
        partition,
    })
}

pub(crate) async fn run(mut receiver: Receiver, target: Target, ctx: Arc<Ctx>, conn: Arc<Conn>) {
    let mut closed = conn.closed.clone();
    loop {
        let delivery = tokio::select! {
            _ = closed.wait() => return,
            d = receiver.recv::<Body<Value>>() => match d {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(error = %e, "emulator: sender link ended");
                    return;
                }
            },
        };
        let format = *delivery.message_format();
        let (info, envelope) = delivery.into_parts();
        let stored = store(format, envelope, &target, &ctx);
        settle_pause().await;
        let disposed = match stored {
            Ok(()) => receiver.accept(info).await,
            Err(e) => {
                tracing::debug!(error = %e, "emulator: send rejected");
                receiver.reject(info, e.to_amqp()).await
            }
        };
        if disposed.is_err() {
            return;
        }
    }
}

/// How long the outcome of a transfer is held back. fe2o3 0.16 clients (the Rust SDK)
/// register a delivery as unsettled only *after* writing its transfer; an outcome that
/// arrives before that is dropped and the send never completes. A loopback broker answers
/// within microseconds, the service never does, so the emulator waits a little.
pub(crate) const SETTLE_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

pub(crate) async fn settle_pause() {
    tokio::time::sleep(SETTLE_PAUSE).await;
}

fn store(
    format: Option<u32>,
    envelope: message::AmqpMessage,
    target: &Target,
    ctx: &Ctx,
) -> Result<(), EmulatorError> {
    if ctx.faults.server_busy() {
        return Err(EmulatorError::ServerBusy(
            "The request was terminated because the entity is being throttled (fault \
             injection). Please wait 4 seconds and try again."
                .into(),
        ));
    }
    let events = message::unpack(format, envelope)?;
    let Some(first) = events.first() else {
        return Ok(());
    };
    let hub = ctx.ns.hub(&target.hub)?;
    let key = message::partition_key(first);
    let partition = hub.route(target.partition, key.as_deref())?;
    let count = events.len() as u64;
    for event in events {
        let size = message::encoded_size(&event);
        hub.append(partition, event, size)?;
    }
    Counters::bump(&ctx.counters.events_published, count);
    Ok(())
}
