//! One session's task: every incoming attach is read *before* it is accepted, routed by
//! address and role to what it is for (a `$cbs`/`$management` request or reply link, a
//! partition receiver, a sender), checked (entity exists, token covers it, epoch rules), and
//! then accepted with the settle modes that entity needs — or accepted and at once detached
//! with the service's error, which is how AMQP refuses a link.

use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp::acceptor::{
    LinkAcceptor, LinkEndpoint, ListenerSessionHandle, SupportedReceiverSettleModes,
    SupportedSenderSettleModes,
};
use fe2o3_amqp::types::definitions::{ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp::types::messaging::{Source, Target, TargetArchetype};
use fe2o3_amqp::types::performatives::Attach;
use tokio::task::JoinSet;

use super::address::{self, Entity};
use super::server::{Conn, Ctx};
use super::{deliver, ingest, nodes, EmulatorError};

/// Links per session at most (the Begin advertises handle-max 255).
const MAX_LINKS: usize = 255;
/// Largest message a producer may send (the service's publication limit).
pub const MAX_MESSAGE_SIZE: u64 = 1024 * 1024;
/// How long a remote detach of an idle link goes unanswered. fe2o3 0.16 clients (the Rust
/// SDK) drop links and end the session in one go (Detach, Detach, End without waiting); a
/// Detach answered before their End makes them end the session with `unattached-handle`
/// and then close the whole connection when the emulator's End arrives ("Session is not
/// found"). Presumably the service, reading the three frames together, only ends the
/// session (the SDK works against it); waiting this long before reacting to a detach has
/// that effect here.
pub(crate) const DETACH_GRACE: Duration = Duration::from_millis(20);

/// Resolves when the client detaches `sender`, reacting only after [`DETACH_GRACE`], with
/// whether the client closed the link (rather than only detaching it).
pub(crate) async fn detached(sender: &mut fe2o3_amqp::link::Sender) -> bool {
    use fe2o3_amqp::link::DetachError;
    tokio::time::sleep(DETACH_GRACE).await;
    !matches!(
        sender.on_detach().await,
        DetachError::DetachedByRemote | DetachError::RemoteDetachedWithError(_)
    )
}

/// Answers a client's detach of `sender` in kind (AMQP 1.0 §2.6.6). The SDKs detach their
/// receivers without closing them; a closing answer would make fe2o3 clients try to
/// re-attach and close, fail, and log an error on every clean shutdown.
pub(crate) async fn answer_detach(sender: fe2o3_amqp::link::Sender, closing: bool) {
    if closing {
        // Dropping a link the client closed answers with a closing detach.
        drop(sender);
    } else {
        let _ = tokio::time::timeout(END_TIMEOUT, sender.detach()).await;
    }
}

/// How long ending a session waits for the client's End.
const END_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn run_session(
    mut session: ListenerSessionHandle,
    ctx: Arc<Ctx>,
    conn: Arc<Conn>,
) {
    let mut closed = conn.closed.clone();
    let mut links = JoinSet::new();
    loop {
        tokio::select! {
            _ = closed.wait() => break,
            attach = session.next_incoming_attach() => {
                let Some(attach) = attach else { break };
                if links.len() >= MAX_LINKS {
                    let err = EmulatorError::ResourceLimitExceeded(format!("at most {MAX_LINKS} links per session"));
                    refuse(attach, &mut session, err).await;
                    continue;
                }
                route(attach, &mut session, &ctx, &conn, &mut links).await;
            }
            Some(_) = links.join_next(), if !links.is_empty() => {}
        }
    }
    let drain = async { while links.join_next().await.is_some() {} };
    if tokio::time::timeout(END_TIMEOUT, drain).await.is_err() {
        links.abort_all();
    }
    if !session.is_ended() {
        let _ = tokio::time::timeout(END_TIMEOUT, session.end()).await;
    }
}

/// The address a link is for: the source of a link the client receives on, the target of
/// one it sends on.
fn link_address(attach: &Attach) -> Option<String> {
    match attach.role {
        Role::Receiver => attach.source.as_ref()?.address.clone(),
        Role::Sender => match attach.target.as_deref()? {
            TargetArchetype::Target(t) => t.address.clone(),
            #[allow(unreachable_patterns)]
            _ => None,
        },
    }
}

async fn route(
    attach: Attach,
    session: &mut ListenerSessionHandle,
    ctx: &Arc<Ctx>,
    conn: &Arc<Conn>,
    links: &mut JoinSet<()>,
) {
    let address = link_address(&attach).unwrap_or_default();
    let entity = match address::parse(&address) {
        Ok(e) => e,
        Err(e) => return refuse(attach, session, e).await,
    };
    tracing::debug!(conn = conn.id, link = %attach.name, ?entity, role = ?attach.role, "emulator: attach");
    match (&entity, attach.role.clone()) {
        (Entity::Cbs | Entity::Management, Role::Sender) => {
            let node = if entity == Entity::Cbs {
                nodes::Node::Cbs
            } else {
                nodes::Node::Management
            };
            match receiving().accept_incoming_attach(attach, session).await {
                Ok(LinkEndpoint::Receiver(r)) => {
                    links.spawn(nodes::serve_requests(r, node, ctx.clone(), conn.clone()));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "emulator: attach failed"),
            }
        }
        (Entity::Cbs | Entity::Management, Role::Receiver) => {
            // The client's reply address is the target of its receiving link.
            let reply_to = match attach.target.as_deref() {
                Some(TargetArchetype::Target(t)) => t.address.clone(),
                #[allow(unreachable_patterns)]
                _ => None,
            }
            .unwrap_or_else(|| address.clone());
            match replying().accept_incoming_attach(attach, session).await {
                Ok(LinkEndpoint::Sender(s)) => {
                    let node_key = if entity == Entity::Cbs {
                        "$cbs"
                    } else {
                        "$management"
                    };
                    let rx = nodes::reply_route(conn, reply_to, node_key);
                    links.spawn(nodes::pump_replies(s, rx, conn.clone()));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "emulator: attach failed"),
            }
        }
        (
            Entity::PartitionReceive {
                hub,
                group,
                partition,
            },
            Role::Receiver,
        ) => {
            let checked = conn
                .authorize(&entity.auth_path().unwrap_or_default())
                .and_then(|()| deliver::prepare(&attach, hub, group, partition, ctx));
            match checked {
                Ok(reader) => match settled_sending()
                    .accept_incoming_attach(attach, session)
                    .await
                {
                    Ok(LinkEndpoint::Sender(s)) => {
                        links.spawn(deliver::run(s, reader, ctx.clone(), conn.clone()));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "emulator: attach failed"),
                },
                Err(e) => refuse(attach, session, e).await,
            }
        }
        (Entity::Hub { hub } | Entity::PartitionSend { hub, .. }, Role::Sender) => {
            let partition = match &entity {
                Entity::PartitionSend { partition, .. } => Some(partition.as_str()),
                _ => None,
            };
            let checked = conn
                .authorize(&entity.auth_path().unwrap_or_default())
                .and_then(|()| ingest::prepare(hub, partition, ctx));
            match checked {
                Ok(target) => match receiving().accept_incoming_attach(attach, session).await {
                    Ok(LinkEndpoint::Receiver(r)) => {
                        links.spawn(ingest::run(r, target, ctx.clone(), conn.clone()));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "emulator: attach failed"),
                },
                Err(e) => refuse(attach, session, e).await,
            }
        }
        _ => {
            let err = EmulatorError::NotFound(format!(
                "The messaging entity '{address}' does not support this link direction."
            ));
            refuse(attach, session, err).await
        }
    }
}

/// Completes the attach and detaches at once with `err` (AMQP 1.0 §2.6.3).
pub(crate) async fn refuse(
    attach: Attach,
    session: &mut ListenerSessionHandle,
    err: EmulatorError,
) {
    tracing::debug!(link = %attach.name, error = %err, "emulator: link refused");
    match replying().accept_incoming_attach(attach, session).await {
        Ok(LinkEndpoint::Sender(s)) => {
            let _ = tokio::time::timeout(END_TIMEOUT, s.close_with_error(err.to_amqp())).await;
        }
        Ok(LinkEndpoint::Receiver(r)) => {
            let _ = tokio::time::timeout(END_TIMEOUT, r.close_with_error(err.to_amqp())).await;
        }
        Err(_) => {}
    }
}

/// The acceptor type every constructor below returns.
type Acceptor = LinkAcceptor<fn(Source) -> Option<Source>, fn(Target) -> Option<Target>>;

/// pyamqp compatibility 5: with `properties` set, every Attach field is encoded; pyamqp
/// reads the attach response by index up to `properties` (13) and fails on a shorter list.
fn link_properties() -> fe2o3_amqp::types::definitions::Fields {
    super::server::fields(&[("product", "hubwatch-emulator")])
}

/// Links the emulator receives on (requests, events). pyamqp compatibility 4: settle
/// first — pyamqp waits forever on a disposition that leaves `settled` unset.
fn receiving() -> Acceptor {
    LinkAcceptor::builder()
        .properties(link_properties())
        .supported_receiver_settle_modes(SupportedReceiverSettleModes::First)
        .fallback_receiver_settle_mode(ReceiverSettleMode::First)
        .max_message_size(MAX_MESSAGE_SIZE)
        .build()
}

/// `$cbs`/`$management` reply links, and refused links: whatever settle mode the client
/// asks for.
fn replying() -> Acceptor {
    LinkAcceptor::builder()
        .properties(link_properties())
        .build()
}

/// Partition receivers: deliveries are pre-settled, as the service sends them.
fn settled_sending() -> Acceptor {
    LinkAcceptor::builder()
        .properties(link_properties())
        .supported_sender_settle_modes(SupportedSenderSettleModes::Settled)
        .fallback_sender_settle_mode(SenderSettleMode::Settled)
        .build()
}
