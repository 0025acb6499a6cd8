//! An in-memory, Event Hubs–compatible AMQP 1.0 broker on loopback, for the tests, the
//! demo and `hubwatch emulator`. The official SDKs (Rust, Python) talk to it as they talk to
//! the service: SASL ANONYMOUS/PLAIN (or no SASL, as Python's emulator mode does), CBS
//! `put-token` with SAS tokens checked against the configured keys, `$management` READ,
//! partition receivers with selector filters and epochs, senders with batches and
//! partition keys. Faults can be injected; counters say what happened.
//!
//! Layout (data flows top to bottom):
//! - [`config`]: namespace, keys, hubs, retention.
//! - `server` (TCP accept, connection and session loops) → `links` (what each
//!   attach becomes) → `nodes` (`$cbs`, `$management`), `deliver` (partition
//!   receivers), `ingest` (senders).
//! - `namespace` (hubs and routing) → `log` (one partition's events), `readers`
//!   (epoch rules); `filter`, `address`, `message`, `sas`, `hash` are pure helpers.
//! - `faults` (injection, counters), `error` (the service's conditions and status codes),
//!   `command` (`hubwatch emulator`).
//!
//! Client quirks it absorbs (fe2o3 0.16 in the Rust SDK, pyamqp in the Python SDK) are
//! documented where they are handled: `server` and `links` (pyamqp's positional frame
//! decoding), `ingest::SETTLE_PAUSE` and `links::DETACH_GRACE` (fe2o3 client races that only
//! a sub-millisecond loopback broker triggers).
//!
//! Shared state: the namespace (logs behind per-partition mutexes, receivers in one
//! registry) and the fault/counter handles are shared by every connection task; everything
//! else is owned by the task of its connection, session or link. Every task stops on
//! [`Emulator::shutdown`] (or when the `Emulator` is dropped).

mod address;
mod command;
pub mod config;
mod deliver;
mod error;
mod faults;
mod filter;
mod hash;
mod ingest;
pub mod jwt;
mod links;
mod log;
mod message;
mod namespace;
mod nodes;
mod readers;
pub mod sas;
mod server;
mod tcp;
mod tls;

/// What the emulator makes of the text and bytes a client sends, for the fuzz targets
/// (`fuzz/`): entity addresses, selector filters, and transferred messages (batches
/// unpacked, annotations read and stamped). Frames themselves are fe2o3-amqp's.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::address::parse as parse_address;
    pub use super::filter::parse as parse_filter;
    pub use super::message::{
        encoded_size, for_delivery, partition_key, unpack, AmqpMessage, BATCH_FORMAT,
    };
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use command::run_command;
pub use config::{EmulatorConfig, EntraConfig, HubConfig, Retention, SasKey, TlsConfig};
pub use error::EmulatorError;
pub use faults::{EmulatorStats, FaultHandle};
pub use filter::{OffsetValue, StartPosition};
pub use hash::partition_for_key;
pub use log::PartitionState;

use faults::Counters;
use namespace::Namespace;

/// How long [`Emulator::shutdown`] waits for connections to close before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A running emulator. Dropping it stops it too (without waiting).
pub struct Emulator {
    addr: SocketAddr,
    ctx: Arc<server::Ctx>,
    trigger: crate::shutdown::Trigger,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Validates `cfg`, binds, and starts serving in the background.
    pub async fn start(cfg: EmulatorConfig) -> anyhow::Result<Emulator> {
        cfg.validate()
            .map_err(|errs| anyhow::anyhow!("invalid emulator config: {}", errs.join("; ")))?;
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .map_err(|e| anyhow::anyhow!("emulator: cannot listen on {}: {e}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let tls = cfg.tls.as_ref().map(tls::acceptor).transpose()?;
        let ctx = Arc::new(server::Ctx {
            ns: Namespace::new(&cfg, addr.ip()),
            faults: FaultHandle::new(),
            counters: Counters::default(),
            tls,
        });
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(server::serve(listener, ctx.clone(), shutdown));
        let scheme = if ctx.tls.is_some() { "amqps" } else { "amqp" };
        tracing::info!(%addr, scheme, hubs = ?ctx.ns.hub_names(), "emulator listening");
        Ok(Emulator {
            addr,
            ctx,
            trigger,
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `Endpoint=sb://127.0.0.1:PORT;SharedAccessKeyName=..;SharedAccessKey=..;EntityPath=HUB;UseDevelopmentEmulator=true`
    /// with the first configured key. Over TLS the string names the namespace instead
    /// (`sb://<namespace>/`, no emulator flag, which would mean plain AMQP): point the
    /// client at [`Emulator::local_addr`] with its custom endpoint option.
    pub fn connection_string(&self, hub: &str) -> String {
        let key = &self.ctx.ns.keys[0];
        match self.ctx.tls {
            None => format!(
                "Endpoint=sb://{}/;SharedAccessKeyName={};SharedAccessKey={};EntityPath={hub};UseDevelopmentEmulator=true",
                self.addr, key.name, key.key
            ),
            Some(_) => format!(
                "Endpoint=sb://{}/;SharedAccessKeyName={};SharedAccessKey={};EntityPath={hub}",
                self.ctx.ns.host, key.name, key.key
            ),
        }
    }

    /// Whether clients must speak TLS (`[tls]` is configured).
    pub fn uses_tls(&self) -> bool {
        self.ctx.tls.is_some()
    }

    /// Publishes one event in-process, as a producer would: to `partition`, or round robin
    /// when `None`. Returns (partition, sequence number).
    pub fn publish(
        &self,
        hub: &str,
        partition: Option<u32>,
        body: Vec<u8>,
    ) -> anyhow::Result<(u32, i64)> {
        let hub = self.ctx.ns.hub(hub)?;
        let id = hub.route(partition, None)?;
        let message = message::data_message(body);
        let size = message::encoded_size(&message);
        let event = hub.append(id, message, size)?;
        Counters::bump(&self.ctx.counters.events_published, 1);
        Ok((id, event.sequence_number))
    }

    /// The partition's sequence numbers, last offset and last enqueued time; `None` for an
    /// unknown hub or partition.
    pub fn partition_state(&self, hub: &str, partition: u32) -> Option<PartitionState> {
        self.ctx.ns.hub(hub).ok()?.state(partition).ok()
    }

    pub fn faults(&self) -> FaultHandle {
        self.ctx.faults.clone()
    }

    pub fn stats(&self) -> EmulatorStats {
        self.ctx.counters.snapshot()
    }

    /// Stops accepting, closes every connection, and waits (bounded) for the tasks to end.
    pub async fn shutdown(mut self) {
        self.trigger.trigger();
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}
