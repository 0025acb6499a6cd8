//! Wires the pipeline from settings and owns the ordered drain on shutdown:
//! sources stop reading → the engine absorbs what is in flight, stores the window state
//! that absorbed it and acknowledges it → sources commit their positions → the admin
//! server stops. With a checkpoint directory, the window state is restored before any
//! source reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::ack::AckToken;
use crate::checkpoint::{CheckpointStore, OwnershipStore};
use crate::config::{Settings, SourceSettings};
use crate::export::http::{self, AdminState, Request};
use crate::pipeline::global::{Held, PeerUpdate, Refresher};
use crate::pipeline::StateCommitter;
use crate::pipeline::{DeadLetter, Engine, Forwarding};
use crate::schema::Schemas;
use crate::shutdown::Shutdown;
use crate::source::{Batch, SourceContext};
use crate::state::{Resume, StateError};
use crate::telemetry::Metrics;

/// Batches in flight between the sources and the engine. Small: a slow engine makes the
/// sources wait (and, for Event Hubs, stop granting credit) instead of buffering.
const BATCH_QUEUE: usize = 16;

/// A started service.
pub struct Running {
    /// Where the admin server listens (useful with port 0).
    pub admin_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    task: JoinHandle<anyhow::Result<()>>,
    inputs_done: tokio::sync::watch::Receiver<bool>,
    requests: mpsc::Sender<Request>,
}

impl Running {
    /// Every query's current result (asks the engine task, like the query API does).
    pub async fn results(&self) -> Option<http::Snapshot> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.requests.send(Request::Results(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Resolves once every source has finished and the engine absorbed everything (finite
    /// inputs only; follow-mode sources end only at shutdown).
    pub async fn inputs_done(&mut self) {
        let _ = self.inputs_done.wait_for(|done| *done).await;
    }

    /// Waits until the service has drained after shutdown.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("the service task panicked")?
    }
}

/// Starts everything; returns once the admin server is bound.
pub async fn start(settings: Settings, outer: Shutdown) -> anyhow::Result<Running> {
    // The service stops on the caller's signal, or when a source fails: a source that
    // cannot go on (e.g. Event Hubs refused the credentials) ends the service with its
    // error, so the process exits non-zero instead of serving stale results.
    let (stop, shutdown) = crate::shutdown::channel();
    let stop = Arc::new(stop);
    let forward = {
        let (stop, mut outer) = (stop.clone(), outer);
        tokio::spawn(async move {
            outer.wait().await;
            stop.trigger();
        })
    };
    let schemas = Schemas::embedded();
    let metrics = Arc::new(Metrics::new());
    // Routes send the rows they select to their sinks, flushed with every batch.
    let mut sinks = Vec::new();
    for s in &settings.sinks {
        sinks.push(
            s.open(Some(&metrics))
                .with_context(|| format!("opening the sink '{}'", s.name()))?,
        );
    }
    let sink_health: Vec<_> = sinks
        .iter()
        .filter_map(|s| Some((s.name().to_string(), s.health()?)))
        .collect();
    let forwarding = Forwarding {
        routes: settings.routes.clone(),
        sinks,
    };
    let mut engine = Engine::with_forwarding(
        schemas,
        settings.queries.clone(),
        forwarding,
        settings.engine.clone(),
    )
    .with_metrics(metrics.clone());
    if let Some(path) = &settings.dead_letter {
        let dl = DeadLetter::open(path)
            .with_context(|| format!("opening the dead-letter file {}", path.display()))?;
        engine = engine.with_dead_letter(dl);
    }
    // Positions and window state live side by side: a position is committed only once the
    // state that absorbed it is stored (`pipeline::commit`).
    let mut checkpoints: Option<Arc<dyn CheckpointStore>> = None;
    let mut ownership: Option<Arc<dyn OwnershipStore>> = None;
    let mut refresher: Option<Refresher> = None;
    let mut commit = None;
    let mut resume = Resume::default();
    if let Some(cp) = &settings.checkpoint {
        let stores = cp.open(&settings.sources)?;
        checkpoints = Some(stores.positions);
        ownership = stores.ownership;
        if cp.global_results {
            refresher = Some(Refresher {
                store: stores.state.clone(),
                sources: settings
                    .sources
                    .iter()
                    .map(|s| s.name().to_string())
                    .collect(),
                decoder: engine.decoder(),
                interval: cp.interval,
                metrics: metrics.global.clone(),
            });
        }
        let c = StateCommitter::new(stores.state, cp.interval, metrics.clone());
        resume = restore(
            &mut engine,
            &c,
            &settings.sources,
            ownership.is_some(),
            &metrics,
        )
        .await?;
        commit = Some(c);
    }

    // Before binding: a certificate that cannot be served stops the start, with its reason.
    let tls = settings
        .export
        .tls
        .clone()
        .map(crate::export::tls::Reloading::load)
        .transpose()?
        .map(Arc::new);
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding the admin server to {}", settings.listen))?;
    let admin_addr = listener.local_addr()?;
    let (req_tx, req_rx) = mpsc::channel::<Request>(64);
    let ready = Arc::new(AtomicBool::new(false));
    let admin = AdminState::new(
        req_tx.clone(),
        metrics.clone(),
        ready.clone(),
        sink_health,
        &settings.export,
    )
    .context("registering the admin server's metrics")?;
    // Bounded: capped connections, header and idle timeouts, and a drain of at most
    // `drain_timeout` once shutdown begins (it runs beside the pipeline's drain, so a client
    // cannot hold the exit).
    let limits = settings.export.limits();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = tokio::spawn(http::serve(
        listener,
        admin,
        limits.clone(),
        tls,
        shutdown.clone(),
    ));
    let paths = if settings.export.query_api {
        "/metrics, /api/v1/queries, /healthz, /readyz"
    } else {
        "/metrics, /healthz, /readyz; query API off"
    };
    tracing::info!(
        %admin_addr,
        scheme,
        basic_auth = !settings.export.basic_auth_users.is_empty(),
        max_connections = limits.max_connections,
        "admin server listening ({paths})"
    );

    let (batch_tx, batch_rx) = mpsc::channel::<Batch>(BATCH_QUEUE);
    let cx = SourceContext {
        checkpoints: checkpoints.clone(),
        commit_interval: settings.checkpoint.as_ref().map(|c| c.interval),
        resume: Arc::new(resume),
        ownership,
        fenced: commit.as_ref().map(|c| c.fenced()),
        metrics: metrics.clone(),
    };
    let mut sources = Vec::new();
    for s in &settings.sources {
        let source = s.build(&cx);
        let name = source.name().to_string();
        let run = source.run(batch_tx.clone(), shutdown.clone());
        let stop = stop.clone();
        let task = tokio::spawn(async move {
            let result = run.await;
            if result.is_err() {
                stop.trigger();
            }
            result
        });
        sources.push((name, task));
    }
    drop(batch_tx);
    // Global results: the other replicas' partitions, copied from their snapshots. Ready
    // once the first copies are in, so that a replica behind a load balancer never answers
    // for its own partitions alone.
    let peers = match refresher {
        Some(refresher) => {
            let (held_tx, held_rx) = tokio::sync::watch::channel(Held::default());
            let (peer_tx, peer_rx) = mpsc::channel(4);
            let (refreshed_tx, mut refreshed_rx) = tokio::sync::watch::channel(0u64);
            tokio::spawn(refresher.run(held_rx, peer_tx, refreshed_tx, shutdown.clone()));
            let ready = ready.clone();
            tokio::spawn(async move {
                if refreshed_rx.wait_for(|n| *n > 0).await.is_ok() {
                    ready.store(true, Ordering::Release);
                }
            });
            Some((peer_rx, held_tx))
        }
        None => {
            ready.store(true, Ordering::Release);
            None
        }
    };

    let loop_metrics = metrics.clone();
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    // The engine parses and evaluates: CPU-bound work that would hold a runtime worker for
    // a whole batch. It gets a thread of its own, so the workers stay free for the sources'
    // network I/O and the admin server. (`engine_loop` drives the runtime's timers and the
    // store's I/O through this handle; it ends before the runtime does, since `run` waits
    // for it.)
    let (engine_tx, engine_rx) = tokio::sync::oneshot::channel();
    let handle = tokio::runtime::Handle::current();
    let engine_shutdown = shutdown.clone();
    let stop_on_panic = StopOnPanic(stop.clone());
    std::thread::Builder::new()
        .name("hubwatch-engine".into())
        .spawn(move || {
            // A panicking engine stops the sources too, so the service ends with the error
            // instead of idling without an engine.
            let stop_on_error = stop_on_panic.0.clone();
            let _stop_on_panic = stop_on_panic;
            let io = EngineIo {
                batches: batch_rx,
                requests: req_rx,
                peers,
                shutdown: engine_shutdown,
                inputs_done: done_tx,
            };
            let result = handle.block_on(engine_loop(engine, commit, io, loop_metrics));
            if result.is_err() {
                // Without an engine nothing can be absorbed: end the service with its error.
                stop_on_error.trigger();
            }
            let _ = engine_tx.send(result);
        })
        .context("starting the engine thread")?;
    let task = tokio::spawn(async move {
        let engine_result = engine_rx
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the engine thread panicked")));
        let mut result = engine_result;
        for (name, task) in sources {
            match task.await {
                Ok(Ok(())) => tracing::info!(source = %name, "source finished"),
                Ok(Err(e)) => {
                    tracing::error!(source = %name, error = %format!("{e:#}"), "source failed");
                    if result.is_ok() {
                        result = Err(e.context(format!("source '{name}'")));
                    }
                }
                Err(e) => {
                    if result.is_ok() {
                        result = Err(anyhow::anyhow!("source '{name}' panicked: {e}"));
                    }
                }
            }
        }
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "admin server error"),
            Err(e) => tracing::warn!(error = %e, "admin server task failed"),
        }
        forward.abort();
        result
    });
    Ok(Running {
        admin_addr,
        metrics,
        task,
        inputs_done: done_rx,
        requests: req_tx,
    })
}

/// Stops the service when dropped during a panic.
struct StopOnPanic(Arc<crate::shutdown::Trigger>);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.trigger();
        }
    }
}

/// Restores the window state of every partition of the sources that read all of their
/// partitions (files, and the AMQP source: one replica reads the whole event hub), before
/// any of them reads. A Kafka source's partitions are restored as the group assigns them.
async fn restore(
    engine: &mut Engine,
    commit: &StateCommitter,
    sources: &[SourceSettings],
    shared: bool,
    metrics: &Metrics,
) -> Result<Resume, StateError> {
    let started = std::time::Instant::now();
    let mut resume = Resume::enabled();
    let mut restored = 0usize;
    for s in sources {
        let name = match s {
            SourceSettings::File { name, .. } => name.as_str(),
            // Replicas sharing a blob container claim partitions first, and restore each as
            // they win it.
            SourceSettings::Amqp(_) if shared => continue,
            SourceSettings::Amqp(cfg) => cfg.name.as_str(),
            SourceSettings::Kafka(_) => continue,
        };
        for r in commit.restore_all(engine, name).await? {
            resume.note(name, &r.partition, r.resume_after.clone());
            restored += 1;
        }
    }
    metrics
        .state
        .restore_seconds
        .set(started.elapsed().as_secs_f64());
    if restored > 0 {
        tracing::info!(
            partitions = restored,
            seconds = started.elapsed().as_secs_f64(),
            "window state restored"
        );
    }
    Ok(resume)
}

/// The engine's owner: absorbs batches, answers the admin server, snapshots its state (with
/// a checkpoint store), and stops once shutdown is signalled and every source has hung up
/// (so nothing in flight is lost).
/// What the engine's loop takes in and tells.
struct EngineIo {
    batches: mpsc::Receiver<Batch>,
    requests: mpsc::Receiver<Request>,
    /// With global results: copies of other replicas' partitions in, the partitions held
    /// here out.
    peers: Option<(mpsc::Receiver<PeerUpdate>, tokio::sync::watch::Sender<Held>)>,
    shutdown: Shutdown,
    inputs_done: tokio::sync::watch::Sender<bool>,
}

async fn engine_loop(
    mut engine: Engine,
    mut commit: Option<StateCommitter>,
    io: EngineIo,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let EngineIo {
        mut batches,
        mut requests,
        peers,
        mut shutdown,
        inputs_done,
    } = io;
    let mut sources_open = true;
    let (mut peer_updates, held) = match peers {
        Some((rx, held)) => (Some(rx), Some(held)),
        None => (None, None),
    };
    let mut published = u64::MAX;
    loop {
        // The refresher skips the partitions held here (their copies would be dropped).
        if let Some(held) = &held {
            if engine.generation() != published {
                published = engine.generation();
                let _ = held.send(Arc::new(engine.held()));
            }
        }
        let due = commit.as_ref().and_then(|c| c.due());
        let saving = commit.as_ref().is_some_and(|c| c.is_saving());
        tokio::select! {
            biased;
            Some(req) = requests.recv() => answer(&engine, req),
            saved = async { commit.as_mut().expect("saving").saved().await }, if saving => {
                if let Some(c) = commit.as_mut() {
                    c.settled(saved, &mut engine);
                    if let Some(e) = c.take_fatal() {
                        return Err(anyhow::Error::new(e).context("storing window state"));
                    }
                }
            }
            Some(update) = next_peer_update(&mut peer_updates) => match update {
                PeerUpdate::Install(part) => engine.install_peer(*part),
                PeerUpdate::Drop { source, partition } => {
                    engine.drop_peer(&source, &partition);
                }
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                if let Some(c) = commit.as_mut() {
                    c.start(&mut engine).context("syncing the sinks")?;
                }
            }
            batch = batches.recv(), if sources_open => match batch {
                Some(mut batch) => match batch.ownership.take() {
                    None => absorb(&mut engine, batch, &metrics, commit.as_mut())?,
                    Some(mut change) => {
                        // Without a store, partitions keep their state where they were
                        // counted (the replica goes on exporting it), and are read from
                        // the source's own positions.
                        let done = match commit.as_mut() {
                            Some(c) => c
                                .change(&mut engine, &batch.source, &mut change)
                                .await
                                .with_context(|| format!("source '{}': {change:?}", batch.source))?,
                            None => {
                                change.answer(Resume::default());
                                true
                            }
                        };
                        if done {
                            batch.ack.ack();
                        } else {
                            batch.ack.fail();
                        }
                    }
                },
                None => {
                    // Every source has finished (or drained after shutdown). At the end of
                    // the input every bin closes; at shutdown they stay open, as they are in
                    // the snapshot a restart continues from.
                    sources_open = false;
                    if let Some(c) = commit.as_mut() {
                        c.drain(&mut engine).await;
                    }
                    if !shutdown.is_triggered() {
                        engine.finish();
                    }
                    let _ = inputs_done.send(true);
                    tracing::info!("all sources finished; results stay served until shutdown");
                }
            },
            _ = shutdown.wait(), if !sources_open => break,
        }
        if !sources_open && shutdown.is_triggered() {
            break;
        }
    }
    Ok(())
}

async fn next_peer_update(rx: &mut Option<mpsc::Receiver<PeerUpdate>>) -> Option<PeerUpdate> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Absorbs a batch. A dead-letter file that cannot be written stops the service: the batch's
/// rejects might be lost, and its events, though absorbed, are not acknowledged, so they are
/// read again after a restart (no snapshot can cover them any more).
fn absorb(
    engine: &mut Engine,
    batch: Batch,
    metrics: &Metrics,
    commit: Option<&mut StateCommitter>,
) -> anyhow::Result<()> {
    let source = batch.source.clone();
    let duplicates = engine.duplicates();
    for event in &batch.events {
        engine.ingest(&source, event);
    }
    metrics
        .source
        .events
        .with_label_values(&[&source])
        .inc_by(batch.events.len() as u64);
    metrics
        .state
        .duplicates
        .inc_by(engine.duplicates() - duplicates);
    metrics
        .state
        .partitions
        .set(engine.partitions().len() as i64);
    match engine.end_batch() {
        // Acknowledged once the state that absorbed it is stored, or now without a store.
        Ok(()) => {
            match commit {
                Some(c) => c.hold(source, batch.ack),
                None => {
                    // Without a store a batch is acknowledged now: its rows must be
                    // durable first.
                    if let Err(e) = engine.sync_sinks() {
                        batch.ack.fail();
                        return Err(anyhow::anyhow!(
                            "{e}; stopping (the batch was not acknowledged)"
                        ));
                    }
                    acked(batch.ack, &source, metrics)
                }
            }
            Ok(())
        }
        Err(e) => {
            batch.ack.fail();
            metrics
                .source
                .batches_failed
                .with_label_values(&[&source])
                .inc();
            Err(anyhow::anyhow!(
                "writing the dead-letter file or a sink failed: {e}; stopping (the batch was not acknowledged and is read again after a restart)"
            ))
        }
    }
}

fn acked(ack: AckToken, source: &str, metrics: &Metrics) {
    ack.ack();
    metrics
        .source
        .batches_acked
        .with_label_values(&[source])
        .inc();
}

fn answer(engine: &Engine, req: Request) {
    match req {
        Request::Exports(tx) => {
            let _ = tx.send(engine.exports());
        }
        Request::Results(tx) => {
            let _ = tx.send(engine.results());
        }
    }
}

/// Runs the service until Ctrl-C / SIGTERM and the drain are done.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let (trigger, shutdown) = crate::shutdown::channel();
    let running = start(settings, shutdown).await?;
    let signal = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: stopping sources, draining, committing positions");
        trigger.trigger();
    });
    let result = running.wait().await;
    signal.abort();
    result
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
