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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use azure_messaging_eventhubs::ConsumerClient;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use super::client::{Connector, Failure, CALL_TIMEOUT, CLOSE_TIMEOUT};
use super::config::{random_unit, AmqpSourceConfig};
use super::metrics::AmqpSourceMetrics;
use super::ownership::{Changes, Claims};
use super::partition::End;
use super::position::OpenAt;
use super::progress::AmqpProgress;
use super::readers::Readers;
use super::AmqpSourceError;
use crate::ack::{AckOutcome, AckToken};
use crate::checkpoint::{CheckpointStore, OwnershipStore};
use crate::shutdown::Shutdown;
use crate::source::forward::{CommitMetrics, Drive, ForwardSettings, Forwarder};
use crate::source::ledger::ForwardCounters;
use crate::source::{Batch, BoxFuture, Ownership, Source, SourceContext};
use crate::state::{Resume, Start};
use crate::telemetry::metrics::{AmqpMetrics, OwnershipMetrics};

/// After the outcomes are in, how long readers get to close their connections (each close
/// is bounded by `partition::SHUTDOWN_CLOSE`, which is shorter).
const READERS_GRACE: Duration = Duration::from_secs(3);
/// How long giving up the claims may take at shutdown.
const RELINQUISH_WAIT: Duration = Duration::from_secs(10);

pub struct AmqpSource {
    cfg: AmqpSourceConfig,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    metrics: Arc<AmqpSourceMetrics>,
    counters: Arc<ForwardCounters>,
    commits: Option<CommitMetrics>,
    resume: Arc<Resume>,
    /// With a shared store: where replicas claim partitions, and the series of it.
    ownership: Option<(Arc<dyn OwnershipStore>, OwnershipMetrics)>,
    /// Partitions whose stored state another replica wrote (their state here was dropped).
    fenced: Option<broadcast::Receiver<(String, String)>>,
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
            ownership: None,
            fenced: None,
        }
    }

    /// The configured AMQP source, committing to the service's checkpoints, with its
    /// Prometheus series.
    pub fn build(cfg: &AmqpSourceConfig, cx: &SourceContext) -> AmqpSource {
        let mut cfg = cfg.clone();
        (cfg.commit_interval, cfg.ack_wait) = cx.commit_timing(cfg.commit_interval, cfg.ack_wait);
        let commits = cx.commit_metrics(&cfg.name);
        let mut source =
            AmqpSource::new(cfg, cx.checkpoints.clone()).with_prometheus(cx.metrics.amqp.clone());
        source.commits = Some(commits);
        source.resume = cx.resume.clone();
        source.ownership = cx
            .ownership
            .clone()
            .map(|store| (store, cx.metrics.ownership.clone()));
        source.fenced = cx.fenced.as_ref().map(|f| f.subscribe());
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
        ownership,
        mut fenced,
    } = src;
    let mut cfg = cfg;
    if ownership.is_some() && cfg.owner_level.is_none() {
        // As the SDKs' processors do: a replica that claims a partition displaces the
        // receiver of its previous owner at once, instead of both reading it until the
        // previous owner notices at its next cycle.
        cfg.owner_level = Some(0);
    }
    let cfg = Arc::new(cfg);
    let connector = Arc::new(Connector::new(&cfg)?);
    let target = connector.target();
    let Some(ids) = discover(&connector, &cfg, shutdown.clone()).await? else {
        return Ok(());
    };
    tracing::info!(source = %cfg.name, %target, partitions = ids.len(), "event hub found");

    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(ids.len().max(1));
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<AckOutcome>();
    let batch_ids = Arc::new(AtomicU64::new(0));
    let source_name: Arc<str> = Arc::from(cfg.name.as_str());
    let mut readers = Readers::new(
        cfg.clone(),
        connector.clone(),
        batch_tx,
        ack_tx.clone(),
        batch_ids.clone(),
        metrics.clone(),
    );
    let mut fwd = Forwarder::new(
        ForwardSettings {
            source: cfg.name.clone(),
            store: checkpoints.clone(),
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

    // Shared with other replicas: partitions are read as they are won (`Shared`); alone:
    // every partition, from where its restored state or checkpoint says.
    let (mut shared, mut claims) = match (&ownership, &checkpoints) {
        (Some((store, prom)), Some(_)) => {
            let (shared, claims) = Shared::start(
                store.clone(),
                &cfg,
                ids.clone(),
                source_name.clone(),
                ack_tx.clone(),
                batch_ids.clone(),
                prom.clone(),
            );
            (Some(shared), Some(claims))
        }
        _ => {
            let loaded = load_checkpoints(&checkpoints, &cfg.name).await?;
            fwd.seed(&loaded);
            for id in &ids {
                readers.start(id, open_at(&cfg, &resume, id, loaded.get(id)));
            }
            (None, None)
        }
    };
    let mut acquiring = Acquiring::new();
    drop(ack_tx);

    let mut refresh = tokio::time::interval(cfg.commit_interval.max(Duration::from_millis(1)));
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut fatal: Option<AmqpSourceError> = None;
    loop {
        // Ownership changes go to the pipeline before any batch that follows them.
        if let Some(sh) = shared.as_mut() {
            if fwd.wants() {
                if let Some(change) = sh.changes.pop_front() {
                    fwd.offer(change);
                }
            }
        }
        let take = fwd.wants();
        tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            step = fwd.drive() => if step == Drive::Closed {
                break;
            },
            _ = refresh.tick() => metrics.refresh(),
            Some(changes) = recv_changes(&mut claims) => {
                if let Some(sh) = shared.as_mut() {
                    for p in changes.lost {
                        sh.give_up(&p, &mut readers, &mut fwd);
                    }
                    if let Some(answer) = sh.acquire(changes.won) {
                        acquiring.push_back(answer);
                    }
                }
            }
            answer = answered(&mut acquiring) => {
                let Some(sh) = shared.as_mut() else { continue };
                let Some((partitions, resume)) = answer else {
                    // The engine did not answer: it is stopping.
                    break;
                };
                let loaded = load_checkpoints(&checkpoints, &cfg.name).await?;
                for p in partitions {
                    if sh.owned.contains(&p) {
                        if let Some(cp) = loaded.get(&p) {
                            fwd.seed(&std::collections::HashMap::from([(p.clone(), cp.clone())]));
                        }
                        readers.start(&p, open_at(&cfg, &resume, &p, loaded.get(&p)));
                    }
                }
            }
            Some((source, partition)) = next_fenced(&mut fenced), if shared.is_some() => {
                // Another replica wrote this partition's state since this one read it: give
                // it up; if the claim is still this replica's, the next cycle takes it back
                // and restores the newer state.
                if source == cfg.name {
                    if let Some(sh) = shared.as_mut() {
                        sh.give_up(&partition, &mut readers, &mut fwd);
                    }
                }
            }
            batch = batch_rx.recv(), if take => match batch {
                // A batch of a partition given up since is dropped: never registered, its
                // events are read by the partition's next owner.
                Some(batch) if shared.as_ref().is_some_and(|sh| !sh.owns_batch(&batch)) => {}
                Some(batch) => fwd.offer(batch),
                None => unreachable!("the readers' sender lives as long as the loop"),
            },
            joined = readers.join_next() => match joined {
                Ok((id, End::Fatal(failure))) => {
                    tracing::error!(source = %cfg.name, partition = %id, kind = failure.kind.label(),
                        detail = %failure.detail, "cannot go on reading; stopping the source");
                    fatal = Some(failure.into_error(&target));
                    break;
                }
                Ok((id, End::Stolen)) => match shared.as_mut() {
                    // Another replica's receiver displaced this one: it owns the partition.
                    Some(sh) => sh.give_up(&id, &mut readers, &mut fwd),
                    None if readers.is_empty() => tracing::warn!(source = %cfg.name, partition = %id,
                        "every partition is owned by another receiver now; idle until shutdown"),
                    None => {}
                },
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
    // pipeline know the input ended, waits for what it holds (each acknowledgement means
    // the window state that absorbed it is stored), and commits. Only then are the claims
    // given up, so that the next owner finds the state and positions this replica reached.
    readers.stop_all();
    drop(batch_rx);
    if let Some(sh) = shared.as_mut() {
        // Shared: the engine stores the owned partitions' state with everything sent so
        // far and forgets them, so nothing of them is written after the claims are given
        // up (a late write would be refused, and cost the next owner its first snapshot).
        sh.release_all(&mut fwd, cfg.ack_wait).await;
    }
    let committed = fwd.finish(true).await.map_err(AmqpSourceError::from);
    metrics.refresh();
    if let Some(sh) = shared {
        sh.relinquish().await;
    }
    readers.finish(READERS_GRACE).await;
    match fatal {
        Some(e) => Err(e),
        None => committed,
    }
}

/// Where a partition's reader opens: after what its restored window state holds, from the
/// oldest event where state must be rebuilt, or after its checkpoint (else the configured
/// start) where no state is involved.
fn open_at(
    cfg: &AmqpSourceConfig,
    resume: &Resume,
    id: &str,
    checkpoint: Option<&crate::checkpoint::Checkpoint>,
) -> OpenAt {
    match resume.start(&cfg.name, id, checkpoint.is_some()) {
        Start::Own => OpenAt::initial(checkpoint, cfg.start),
        // After what the window state holds (it may be ahead of the commit, and exist before
        // any commit did).
        Start::After(cp) => OpenAt::After(cp.sequence_number),
        // The queries whose state was restored skip what they hold; the others take
        // everything the hub still retains.
        Start::Oldest => {
            tracing::info!(source = %cfg.name, partition = %id,
                "reading the partition from its oldest retained event to rebuild window state the store lacks");
            OpenAt::Earliest
        }
    }
}

async fn load_checkpoints(
    store: &Option<Arc<dyn CheckpointStore>>,
    source: &str,
) -> Result<std::collections::HashMap<String, crate::checkpoint::Checkpoint>, AmqpSourceError> {
    match store {
        Some(store) => store
            .load(source)
            .await
            .map_err(AmqpSourceError::Checkpoint),
        None => Ok(Default::default()),
    }
}

/// The next fenced partition (pending without a receiver; missed notices are skipped).
async fn next_fenced(
    fenced: &mut Option<broadcast::Receiver<(String, String)>>,
) -> Option<(String, String)> {
    let Some(rx) = fenced else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(p) => return Some(p),
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        }
    }
}

/// Acquisitions the engine has not answered yet, oldest first.
type Acquiring = std::collections::VecDeque<(Vec<String>, oneshot::Receiver<Resume>)>;

async fn recv_changes(claims: &mut Option<mpsc::Receiver<Changes>>) -> Option<Changes> {
    match claims {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The engine's answer to the oldest acquisition in flight (`None`: it will not answer).
async fn answered(acquiring: &mut Acquiring) -> Option<(Vec<String>, Resume)> {
    let Some((_, rx)) = acquiring.front_mut() else {
        return std::future::pending().await;
    };
    let answer = rx.await.ok();
    let (partitions, _) = acquiring.pop_front()?;
    answer.map(|resume| (partitions, resume))
}

/// The side of a source that shares its event hub with other replicas: the ownership task
/// and what is in flight between it, the pipeline and the readers.
struct Shared {
    /// Tells the ownership task about partitions lost to another receiver, and to give
    /// everything up at the end.
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
    /// Partitions this replica owns (won, not lost).
    owned: std::collections::HashSet<String>,
    /// Ownership changes for the pipeline, in order.
    changes: std::collections::VecDeque<Batch>,
    source: Arc<str>,
    acks: mpsc::UnboundedSender<AckOutcome>,
    batch_ids: Arc<AtomicU64>,
}

enum Command {
    Lose(String),
    Relinquish(oneshot::Sender<()>),
}

impl Shared {
    fn start(
        store: Arc<dyn OwnershipStore>,
        cfg: &AmqpSourceConfig,
        ids: Vec<String>,
        source: Arc<str>,
        acks: mpsc::UnboundedSender<AckOutcome>,
        batch_ids: Arc<AtomicU64>,
        metrics: OwnershipMetrics,
    ) -> (Shared, mpsc::Receiver<Changes>) {
        let claims = Claims::new(store, &cfg.name, cfg.ownership.clone(), ids, metrics);
        tracing::info!(source = %cfg.name, owner = claims.owner_id(),
            interval = ?cfg.ownership.interval, expiry = ?cfg.ownership.expiry,
            "sharing the event hub's partitions with other replicas");
        let (changes_tx, changes_rx) = mpsc::channel(16);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(ownership_task(claims, changes_tx, commands_rx));
        let shared = Shared {
            commands,
            task,
            owned: Default::default(),
            changes: Default::default(),
            source,
            acks,
            batch_ids,
        };
        (shared, changes_rx)
    }

    fn owns_batch(&self, batch: &Batch) -> bool {
        batch
            .events
            .first()
            .is_none_or(|e| self.owned.contains(&*e.position.partition))
    }

    /// A change whose outcome goes to `acks`.
    fn change_to(&self, change: Ownership, acks: mpsc::UnboundedSender<AckOutcome>) -> Batch {
        let id = self.batch_ids.fetch_add(1, Ordering::Relaxed);
        Batch::change(self.source.clone(), change, AckToken::new(id, acks))
    }

    /// A change whose outcome goes with the batches' (nobody waits for it).
    fn change(&self, change: Ownership) -> Batch {
        self.change_to(change, self.acks.clone())
    }

    /// Won partitions: the engine restores their state first; their readers start once it
    /// answers (on the returned receiver) where each resumes.
    fn acquire(&mut self, won: Vec<String>) -> Option<(Vec<String>, oneshot::Receiver<Resume>)> {
        if won.is_empty() {
            return None;
        }
        self.owned.extend(won.iter().cloned());
        let (change, answer) =
            Ownership::acquire(won.iter().map(|p| Arc::from(p.as_str())).collect());
        self.changes.push_back(self.change(change));
        Some((won, answer))
    }

    /// A partition another replica owns now: its reader stops, what was gathered of it is
    /// dropped, its positions are no longer committed from here, and its window state is
    /// dropped without being stored (the new owner restored it and may have written newer).
    fn give_up(&mut self, partition: &str, readers: &mut Readers, fwd: &mut Forwarder) {
        readers.stop(partition);
        fwd.forget(partition);
        if self.owned.remove(partition) {
            let _ = self.commands.send(Command::Lose(partition.to_string()));
            let change = Ownership::Discard(vec![Arc::from(partition)]);
            self.changes.push_back(self.change(change));
        }
    }

    /// At the end: the engine stores the owned partitions' state and forgets it (waiting at
    /// most `wait` for it).
    async fn release_all(&mut self, fwd: &mut Forwarder, wait: Duration) {
        if self.owned.is_empty() {
            return;
        }
        let partitions: Vec<Arc<str>> = self.owned.iter().map(|p| Arc::from(p.as_str())).collect();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let batch = self.change_to(Ownership::Release(partitions), tx);
        let stored = fwd.send_change(batch).await
            && tokio::time::timeout(wait, rx.recv())
                .await
                .ok()
                .flatten()
                .is_some_and(|o| o.delivered);
        if !stored {
            tracing::warn!(source = %self.source,
                "the owned partitions' last state was not stored before giving them up; their next owners start from the previous snapshot");
        }
    }

    /// At the end: every claim is given up (bounded in time).
    async fn relinquish(self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Relinquish(done)).is_ok() {
            let _ = tokio::time::timeout(RELINQUISH_WAIT, wait).await;
        }
        self.task.abort();
    }
}

/// The ownership task: a cycle every interval (with jitter), reporting changes.
async fn ownership_task(
    mut claims: Claims,
    changes: mpsc::Sender<Changes>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                match claims.cycle().await {
                    Ok(c) if c.won.is_empty() && c.lost.is_empty() => {}
                    Ok(c) => {
                        if changes.send(c).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e,
                        "ownership cycle failed; claims stand until they expire, retried at the next cycle"),
                }
                next = tokio::time::Instant::now() + claims.next_delay();
            }
            command = commands.recv() => match command {
                Some(Command::Lose(p)) => claims.lose(&p),
                Some(Command::Relinquish(done)) => {
                    claims.relinquish_all().await;
                    let _ = done.send(());
                    return;
                }
                None => return,
            },
        }
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
