//! The partition readers of an AMQP source, each stoppable on its own: all of them for one
//! replica that reads the whole event hub, or the ones this replica owns when replicas
//! share it (started as partitions are won, stopped as they are lost).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::{Id, JoinError, JoinSet};

use super::client::Connector;
use super::config::AmqpSourceConfig;
use super::metrics::AmqpSourceMetrics;
use super::partition::{End, PartitionReader};
use super::position::OpenAt;
use crate::ack::AckOutcome;
use crate::shutdown::Trigger;
use crate::source::Batch;

pub struct Readers {
    tasks: JoinSet<(Arc<str>, End)>,
    /// The running reader of each partition: its stop, and its task (a partition lost and
    /// won again has a new reader while the old one may still be ending).
    stops: HashMap<String, (Trigger, Id)>,
    source: Arc<str>,
    cfg: Arc<AmqpSourceConfig>,
    connector: Arc<Connector>,
    out: mpsc::Sender<Batch>,
    acks: mpsc::UnboundedSender<AckOutcome>,
    batch_ids: Arc<AtomicU64>,
    metrics: Arc<AmqpSourceMetrics>,
}

impl Readers {
    pub fn new(
        cfg: Arc<AmqpSourceConfig>,
        connector: Arc<Connector>,
        out: mpsc::Sender<Batch>,
        acks: mpsc::UnboundedSender<AckOutcome>,
        batch_ids: Arc<AtomicU64>,
        metrics: Arc<AmqpSourceMetrics>,
    ) -> Readers {
        Readers {
            tasks: JoinSet::new(),
            stops: HashMap::new(),
            source: Arc::from(cfg.name.as_str()),
            cfg,
            connector,
            out,
            acks,
            batch_ids,
            metrics,
        }
    }

    /// Starts reading a partition (if it is not being read).
    pub fn start(&mut self, id: &str, open_at: OpenAt) {
        if self.stops.contains_key(id) {
            return;
        }
        let (stop, shutdown) = crate::shutdown::channel();
        let reader = PartitionReader {
            id: Arc::from(id),
            source: self.source.clone(),
            cfg: self.cfg.clone(),
            connector: self.connector.clone(),
            open_at,
            out: self.out.clone(),
            acks: self.acks.clone(),
            batch_ids: self.batch_ids.clone(),
            metrics: self.metrics.partition(id),
            shutdown,
        };
        // On deep stacks: the SDK decodes each message by recursion (see `deep_stack`).
        let task = self
            .tasks
            .spawn_on(reader.run(), crate::deep_stack::handle())
            .id();
        self.stops.insert(id.to_string(), (stop, task));
    }

    /// Tells the reader of a partition this replica gave up to stop (it closes its
    /// connection in bounded time); the partition's series go with it.
    pub fn stop(&mut self, id: &str) {
        if let Some((stop, _)) = self.stops.remove(id) {
            stop.trigger();
        }
        self.metrics.forget(id);
    }

    pub fn stop_all(&mut self) {
        for (_, (stop, _)) in self.stops.drain() {
            stop.trigger();
        }
    }

    /// The next reader that ended (pending while none runs).
    pub async fn join_next(&mut self) -> Result<(Arc<str>, End), JoinError> {
        loop {
            match self.tasks.join_next_with_id().await {
                Some(Ok((task, (id, end)))) => {
                    if self.stops.get(&*id).is_some_and(|(_, t)| *t == task) {
                        self.stops.remove(&*id);
                    }
                    return Ok((id, end));
                }
                Some(Err(e)) => return Err(e),
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Whether no reader runs.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Waits (at most `grace`) for every reader to end, then aborts the rest.
    pub async fn finish(mut self, grace: std::time::Duration) {
        self.stop_all();
        if tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            self.tasks.abort_all();
        }
    }
}
