//! The AMQP source's own task: finds the partitions, starts one reader task per partition,
//! forwards their batches to the pipeline through the shared [`Forwarder`] (registering
//! each first, settling outcomes, committing), and drains on shutdown.
//!
//! Who owns what: each reader owns its connection and position (`partition.rs`); this task
//! owns the acknowledgement side (the [`Forwarder`], with [`AmqpProgress`] publishing each
//! partition's processed position).
//! They talk through one bounded channel (readers → this task, one slot per partition: a
//! reader gathers its next batch while its last one waits for the pipeline, and no more),
//! the unbounded outcome channel of the [`crate::ack`] contract, and the shared statistics.
//!
//! Ending: on shutdown, or when a reader reports what reconnecting cannot fix (credentials
//! refused, hub gone), the readers are told to stop, the outcomes of what the pipeline
//! holds are awaited (at most `ack_wait`), positions are committed, and `run` returns —
//! with the reader's error in the second case, so the service exits non-zero.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use azure_messaging_eventhubs::ConsumerClient;
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::client::{Connector, Failure, CALL_TIMEOUT, CLOSE_TIMEOUT};
use super::config::{random_unit, AmqpSourceConfig};
use super::metrics::AmqpSourceMetrics;
use super::partition::{End, PartitionReader};
use super::position::OpenAt;
use super::progress::AmqpProgress;
use super::AmqpSourceError;
use crate::ack::AckOutcome;
use crate::checkpoint::CheckpointStore;
use crate::shutdown::Shutdown;
use crate::source::forward::{Drive, ForwardSettings, Forwarder};
use crate::source::ledger::ForwardCounters;
use crate::source::{Batch, BoxFuture, Source, SourceContext};
use crate::state::{Resume, Start};
use crate::telemetry::metrics::AmqpMetrics;

/// After the outcomes are in, how long readers get to close their connections (each close
/// is bounded by `partition::SHUTDOWN_CLOSE`, which is shorter).
const READERS_GRACE: Duration = Duration::from_secs(3);

pub struct AmqpSource {
    cfg: AmqpSourceConfig,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    metrics: Arc<AmqpSourceMetrics>,
    counters: Arc<ForwardCounters>,
    commits: Option<IntCounter>,
    resume: Arc<Resume>,
}

impl AmqpSource {
    pub fn new(cfg: AmqpSourceConfig, checkpoints: Option<Arc<dyn CheckpointStore>>) -> AmqpSource {
        let metrics = Arc::new(AmqpSourceMetrics::new(&cfg.name, None));
        AmqpSource {
            cfg,
            checkpoints,
            metrics,
            counters: Arc::default(),
            commits: None,
            resume: Arc::default(),
        }
    }

    /// The configured AMQP source, committing to the service's checkpoints, with its
    /// Prometheus series.
    pub fn build(cfg: &AmqpSourceConfig, cx: &SourceContext) -> AmqpSource {
        let mut cfg = cfg.clone();
        (cfg.commit_interval, cfg.ack_wait) = cx.commit_timing(cfg.commit_interval, cfg.ack_wait);
        let commits = cx.commit_counter(&cfg.name);
        let mut source =
            AmqpSource::new(cfg, cx.checkpoints.clone()).with_prometheus(cx.metrics.amqp.clone());
        source.commits = Some(commits);
        source.resume = cx.resume.clone();
        source
    }

    /// Mirrors the statistics into these Prometheus series. Call before [`Self::metrics`].
    pub fn with_prometheus(mut self, prom: AmqpMetrics) -> AmqpSource {
        self.metrics = Arc::new(AmqpSourceMetrics::new(&self.cfg.name, Some(prom)));
        self
    }

    /// The live per-partition statistics; take this before `run` consumes the source.
    pub fn metrics(&self) -> Arc<AmqpSourceMetrics> {
        self.metrics.clone()
    }
}

impl Source for AmqpSource {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn run(
        self: Box<Self>,
        out: mpsc::Sender<Batch>,
        shutdown: Shutdown,
    ) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move { run(*self, out, shutdown).await.map_err(anyhow::Error::from) })
    }
}

async fn run(
    src: AmqpSource,
    out: mpsc::Sender<Batch>,
    mut shutdown: Shutdown,
) -> Result<(), AmqpSourceError> {
    let AmqpSource {
        cfg,
        checkpoints,
        metrics,
        counters,
        commits,
        resume,
    } = src;
    let cfg = Arc::new(cfg);
    let connector = Arc::new(Connector::new(&cfg)?);
    let target = connector.target();
    let Some(ids) = discover(&connector, &cfg, shutdown.clone()).await? else {
        return Ok(());
    };
    tracing::info!(source = %cfg.name, %target, partitions = ids.len(), "event hub found");

    let loaded = match &checkpoints {
        Some(store) => store
            .load(&cfg.name)
            .await
            .map_err(AmqpSourceError::Checkpoint)?,
        None => Default::default(),
    };
    let starts: Vec<OpenAt> = ids
        .iter()
        .map(|id| {
            let cp = loaded.get(id);
            match resume.start(&cfg.name, id, cp.is_some()) {
                Start::Own => OpenAt::initial(cp, cfg.start),
                // After what the window state holds (it may be ahead of the commit, and
                // exist before any commit did).
                Start::After(cp) => OpenAt::After(cp.sequence_number),
                // The queries whose state was restored skip what they hold; the others
                // take everything the hub still retains.
                Start::Oldest => {
                    tracing::info!(source = %cfg.name, partition = %id,
                        "reading the partition from its oldest retained event to rebuild window state the checkpoint directory lacks");
                    OpenAt::Earliest
                }
            }
        })
        .collect();

    // The readers stop on this, which fires on shutdown or on a fatal error.
    let (stop, stop_rx) = crate::shutdown::channel();
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(ids.len().max(1));
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<AckOutcome>();
    let batch_ids = Arc::new(AtomicU64::new(0));
    let source_name: Arc<str> = Arc::from(cfg.name.as_str());
    let mut readers = JoinSet::new();
    for (id, open_at) in ids.iter().zip(starts) {
        let reader = PartitionReader {
            id: Arc::from(id.as_str()),
            source: source_name.clone(),
            cfg: cfg.clone(),
            connector: connector.clone(),
            open_at,
            out: batch_tx.clone(),
            acks: ack_tx.clone(),
            batch_ids: batch_ids.clone(),
            metrics: metrics.partition(id),
            shutdown: stop_rx.clone(),
        };
        readers.spawn(reader.run());
    }
    drop(batch_tx);
    drop(ack_tx);
    drop(stop_rx);

    let mut fwd = Forwarder::new(
        ForwardSettings {
            source: cfg.name.clone(),
            store: checkpoints,
            commit_interval: cfg.commit_interval,
            max_outstanding_batches: cfg.max_outstanding_batches,
            ack_wait: cfg.ack_wait,
            uncommitted: None,
            commits,
        },
        out,
        ack_rx,
        Box::new(AmqpProgress::new(metrics.clone())),
        counters,
    );
    let mut refresh = tokio::time::interval(cfg.commit_interval.max(Duration::from_millis(1)));
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut readers_open = true;
    let mut fatal: Option<AmqpSourceError> = None;
    loop {
        let take = readers_open && fwd.wants();
        tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            step = fwd.drive() => if step == Drive::Closed {
                break;
            },
            _ = refresh.tick() => metrics.refresh(),
            batch = batch_rx.recv(), if take => match batch {
                Some(batch) => fwd.offer(batch),
                None => readers_open = false,
            },
            Some(joined) = readers.join_next() => match joined {
                Ok((id, End::Fatal(failure))) => {
                    tracing::error!(source = %cfg.name, partition = %id, kind = failure.kind.label(),
                        detail = %failure.detail, "cannot go on reading; stopping the source");
                    fatal = Some(failure.into_error(&target));
                    break;
                }
                Ok((id, End::Stolen)) if readers.is_empty() => {
                    tracing::warn!(source = %cfg.name, partition = %id,
                        "every partition is owned by another receiver now; idle until shutdown");
                }
                Ok(_) => {}
                Err(e) => {
                    fatal = Some(AmqpSourceError::Service {
                        target: target.clone(),
                        detail: format!("a partition reader failed: {e}"),
                    });
                    break;
                }
            },
        }
    }

    // Stop the readers; what was gathered and never forwarded was never registered, so its
    // outcome is ignored and it is read again after a restart. Then the forwarder lets the
    // pipeline know the input ended, waits for what it holds, and commits.
    stop.trigger();
    drop(batch_rx);
    let committed = fwd.finish(true).await.map_err(AmqpSourceError::from);
    metrics.refresh();
    if tokio::time::timeout(READERS_GRACE, async {
        while readers.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        readers.abort_all();
    }
    match fatal {
        Some(e) => Err(e),
        None => committed,
    }
}

/// Reads the partition ids, retrying with backoff what a retry may fix. `None` on shutdown.
async fn discover(
    connector: &Connector,
    cfg: &AmqpSourceConfig,
    mut shutdown: Shutdown,
) -> Result<Option<Vec<String>>, AmqpSourceError> {
    let target = connector.target();
    let mut attempt = 0u32;
    loop {
        let tried = tokio::select! {
            _ = shutdown.wait() => return Ok(None),
            r = tokio::time::timeout(CALL_TIMEOUT, read_partitions(connector)) => r,
        };
        let failure = match tried {
            Ok(Ok(ids)) if !ids.is_empty() => return Ok(Some(ids)),
            Ok(Ok(_)) => {
                return Err(AmqpSourceError::Service {
                    target,
                    detail: "the event hub reports no partitions".to_string(),
                })
            }
            Ok(Err(f)) if f.kind.is_fatal() => return Err(f.into_error(&target)),
            Ok(Err(f)) => f.detail,
            Err(_) => format!("no answer within {CALL_TIMEOUT:?}"),
        };
        let delay = cfg.reconnect.delay(attempt, random_unit());
        attempt = attempt.saturating_add(1);
        tracing::warn!(source = %cfg.name, %target, detail = %failure, retry_in = ?delay,
            "reading the event hub's partitions failed; retrying");
        tokio::select! {
            _ = shutdown.wait() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

async fn read_partitions(connector: &Connector) -> Result<Vec<String>, Failure> {
    let client = connector.open().await?;
    let read = client.get_eventhub_properties().await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, close(client)).await;
    match read {
        Ok(props) => Ok(props.partition_ids),
        Err(e) => Err(connector.failure(&e)),
    }
}

async fn close(client: ConsumerClient) {
    if let Err(e) = client.close().await {
        tracing::debug!(error = %e, "closing the discovery connection failed");
    }
}
