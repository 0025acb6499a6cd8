//! The commit point: batches the engine absorbed are acknowledged only once a snapshot of
//! the state that absorbed them is stored. Until then their sources cannot commit the
//! positions, so a crash re-reads them, and the restored state (which does not hold them)
//! absorbs them again: nothing is counted twice and nothing is lost.
//!
//! Owned by the engine's loop: it hands over each absorbed batch's token ([`hold`]), starts
//! a round when one is due ([`start`]: the engine encodes the partitions that changed, the
//! store writes them on the runtime while the engine goes on), and settles the round when
//! the store answers ([`settled`]). A failed round keeps its batches held and marks its
//! partitions changed, so the next round writes them again; meanwhile the sources' limits
//! on batches in flight stop the reading, so a store that stays down stalls ingestion
//! instead of losing anything.
//!
//! [`hold`]: StateCommitter::hold
//! [`start`]: StateCommitter::start
//! [`settled`]: StateCommitter::settled

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::engine::Restored;
use super::Engine;
use crate::ack::AckToken;
use crate::source::Ownership;
use crate::state::{Resume, Snapshot, StateError, StateStore};
use crate::telemetry::Metrics;

/// What a round's save reports back.
pub struct Saved {
    snapshots: Arc<[Snapshot]>,
    held: Vec<(Arc<str>, AckToken)>,
    started: Instant,
    result: Result<(), StateError>,
    /// A sink could not make the round's rows durable (nothing was stored then).
    sync_error: Option<std::io::Error>,
}

pub struct StateCommitter {
    store: Arc<dyn StateStore>,
    every: Duration,
    /// When the last round started.
    last: Instant,
    /// Batches absorbed since the last round started, with their source's name.
    held: Vec<(Arc<str>, AckToken)>,
    saving: Option<JoinHandle<Saved>>,
    metrics: Arc<Metrics>,
    /// A failure that retrying cannot fix (refused credentials, another replica writing
    /// these partitions): the service must stop.
    fatal: Option<StateError>,
    /// Tells the sources of partitions whose state another replica wrote (`Fenced`): a
    /// source that shares its partitions gives such a partition up and claims it afresh,
    /// restoring the newer state.
    fenced: tokio::sync::broadcast::Sender<(String, String)>,
}

impl StateCommitter {
    pub fn new(store: Arc<dyn StateStore>, every: Duration, metrics: Arc<Metrics>) -> Self {
        StateCommitter {
            store,
            every,
            last: Instant::now(),
            held: Vec::new(),
            saving: None,
            metrics,
            fatal: None,
            fenced: tokio::sync::broadcast::channel(64).0,
        }
    }

    /// Where sources hear of partitions whose stored state another replica wrote.
    pub fn fenced(&self) -> tokio::sync::broadcast::Sender<(String, String)> {
        self.fenced.clone()
    }

    /// A batch the engine absorbed: acknowledged once a round that covers it is stored.
    pub fn hold(&mut self, source: Arc<str>, ack: AckToken) {
        self.held.push((source, ack));
    }

    /// When the next round is due: `None` while one is saving or nothing waits.
    pub fn due(&self) -> Option<Instant> {
        if self.saving.is_some() || self.held.is_empty() {
            return None;
        }
        Some(self.last + self.every)
    }

    pub fn is_saving(&self) -> bool {
        self.saving.is_some()
    }

    /// Starts a round: the engine hands the sinks' flushed rows over for syncing and
    /// encodes what changed (this holds the engine, so it is measured); then, on the
    /// runtime while the engine goes on, the sinks sync what the held batches routed (one
    /// sync for the round, on a blocking thread) and only then the store writes the
    /// snapshots — so a stored snapshot never covers rows a sink could still lose. A sink
    /// that cannot sync stops the service ([`take_fatal`](Self::take_fatal)) with the
    /// held batches unacknowledged: after a failed fsync the kernel may have dropped the
    /// rows, and no retry can tell.
    pub fn start(&mut self, engine: &mut Engine) -> std::io::Result<()> {
        let jobs = engine.sync_jobs()?;
        let started = Instant::now();
        self.last = started;
        let snapshots: Arc<[Snapshot]> = engine.snapshot().into();
        let held = std::mem::take(&mut self.held);
        let store = self.store.clone();
        self.saving = Some(tokio::spawn(async move {
            let synced = if jobs.is_empty() {
                Ok(())
            } else {
                tokio::task::spawn_blocking(move || jobs.into_iter().try_for_each(|job| job()))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
            };
            let (result, sync_error) = match synced {
                Ok(()) => (store.save(snapshots.clone()).await, None),
                Err(e) => (Ok(()), Some(e)),
            };
            Saved {
                snapshots,
                held,
                started,
                result,
                sync_error,
            }
        }));
        Ok(())
    }

    /// Waits for the round in flight (pending forever when there is none, for `select!`).
    pub async fn saved(&mut self) -> Saved {
        match self.saving.as_mut() {
            Some(task) => {
                let joined = task.await;
                self.saving = None;
                joined.unwrap_or_else(|e| Saved {
                    snapshots: Arc::from([]),
                    held: Vec::new(),
                    started: Instant::now(),
                    result: Err(StateError::Io {
                        location: "the snapshot task".to_string(),
                        op: "saving",
                        source: std::io::Error::other(e.to_string()),
                    }),
                    sync_error: None,
                })
            }
            None => std::future::pending().await,
        }
    }

    /// Settles a round: its batches are acknowledged, or on failure held for the next round
    /// (which writes its partitions again). Returns whether it was stored.
    pub fn settled(&mut self, saved: Saved, engine: &mut Engine) -> bool {
        if let Some(e) = saved.sync_error {
            tracing::error!(error = %e, "a sink could not make its rows durable; the batches since the last round stay unacknowledged and the service stops");
            self.fatal.get_or_insert(StateError::Io {
                location: "a sink's buffer".to_string(),
                op: "syncing",
                source: e,
            });
            self.keep_held(saved.held, &saved.snapshots, engine);
            return false;
        }
        let m = &self.metrics.state;
        match saved.result {
            Ok(()) => {
                let bytes: usize = saved.snapshots.iter().map(|s| s.bytes.len()).sum();
                m.snapshots.inc_by(saved.snapshots.len() as u64);
                m.snapshot_bytes.set(bytes as i64);
                m.snapshot_seconds
                    .set(saved.started.elapsed().as_secs_f64());
                m.last_snapshot
                    .set(crate::time::now_ticks() as f64 / crate::time::TICKS_PER_SECOND as f64);
                for (source, ack) in saved.held {
                    ack.ack();
                    self.metrics
                        .source
                        .batches_acked
                        .with_label_values(&[&source])
                        .inc();
                }
                true
            }
            Err(e) => {
                m.snapshot_failures.inc();
                if let StateError::Fenced {
                    source_name,
                    partition,
                    ..
                } = &e
                {
                    // Another replica owns the partition now and has stored newer state:
                    // this replica's is stale. It is dropped (the source gives the
                    // partition up when it notices the move); the others are written again
                    // at the next round.
                    tracing::warn!(error = %e, "window state of a partition that moved was dropped");
                    engine.release(source_name, partition);
                    let _ = self.fenced.send((source_name.clone(), partition.clone()));
                } else if e.is_retryable() {
                    tracing::warn!(error = %e, partitions = saved.snapshots.len(),
                        "storing window state failed; positions wait for the next round");
                } else {
                    tracing::error!(error = %e, "storing window state failed for good");
                    self.fatal.get_or_insert(e);
                }
                self.keep_held(saved.held, &saved.snapshots, engine);
                false
            }
        }
    }

    /// After a round that stored nothing: its batches wait for the next round, before the
    /// ones held since, and its partitions are written again.
    fn keep_held(
        &mut self,
        mut held: Vec<(Arc<str>, AckToken)>,
        snapshots: &[Snapshot],
        engine: &mut Engine,
    ) {
        engine.unsaved(snapshots);
        held.append(&mut self.held);
        self.held = held;
    }

    /// A failure retrying cannot fix, once: the caller stops the service with it. The
    /// batches it held are never acknowledged, so their positions are not committed.
    pub fn take_fatal(&mut self) -> Option<StateError> {
        self.fatal.take()
    }

    /// A round now: waits for the one in flight, then stores everything that changed and
    /// acknowledges every held batch. Returns whether it was stored; if not, the batches
    /// stay held for the next round (and are read again after a restart if none comes).
    pub async fn flush(&mut self, engine: &mut Engine) -> bool {
        if self.saving.is_some() {
            let saved = self.saved().await;
            self.settled(saved, engine);
        }
        if self.held.is_empty() && engine.partitions().iter().all(|p| !p.dirty) {
            return true;
        }
        if let Err(e) = self.start(engine) {
            tracing::error!(error = %e, "a sink could not make its rows durable; the batches since the last round stay unacknowledged");
            return false;
        }
        let saved = self.saved().await;
        self.settled(saved, engine)
    }

    /// The last round, at the drain.
    pub async fn drain(&mut self, engine: &mut Engine) {
        if !self.flush(engine).await {
            tracing::error!("the last window state could not be stored; the batches since the previous snapshot will be read again after a restart");
            self.held.clear();
        }
    }

    /// Restores one partition's snapshot, if the store has one. A snapshot that cannot be
    /// used is an error: starting that partition empty would serve wrong results for as long
    /// as its windows are long. Returns what was restored.
    pub async fn restore(
        &self,
        engine: &mut Engine,
        source: &str,
        partition: &str,
    ) -> Result<Option<Restored>, StateError> {
        let location = self.store.location(source, partition);
        let Some(bytes) = self.store.load(source, partition).await? else {
            return Ok(None);
        };
        let r = engine
            .restore_as(&bytes, Some((source, partition)))
            .map_err(|e| StateError::unreadable(location.clone(), e))?;
        tracing::info!(
            source,
            partition,
            sequence_number = r.position.sequence_number,
            "window state restored"
        );
        for q in &r.started_empty {
            self.metrics
                .state
                .started_empty
                .with_label_values(&[q])
                .inc();
            tracing::warn!(source, partition, query = %q,
                "no window state for this query (added or changed since the snapshot): it is rebuilt from what the source still holds where the source can read it again");
        }
        self.metrics.state.restored_partitions.inc();
        self.metrics
            .state
            .partitions
            .set(engine.partitions().len() as i64);
        Ok(Some(r))
    }

    /// Every partition of `source` the store has a snapshot of (for sources that read all
    /// of their partitions: files, and one replica of an event hub over AMQP).
    pub async fn restore_all(
        &self,
        engine: &mut Engine,
        source: &str,
    ) -> Result<Vec<Restored>, StateError> {
        let mut restored = Vec::new();
        for partition in self.store.partitions(source).await? {
            restored.extend(self.restore(engine, source, &partition).await?);
        }
        Ok(restored)
    }

    /// Carries out a change of the partitions a source reads. Acquired partitions are
    /// restored, and the source is answered where each resumes; released ones are stored
    /// (with every batch held so far) and forgotten; discarded ones are forgotten without
    /// storing. Returns whether the change is complete: `false` when released partitions
    /// could not be stored (their next owner starts from the previous snapshot and re-reads
    /// from the commit that matches it).
    pub async fn change(
        &mut self,
        engine: &mut Engine,
        source: &str,
        change: &mut Ownership,
    ) -> Result<bool, StateError> {
        match change {
            Ownership::Acquire { partitions, .. } => {
                let started = std::time::Instant::now();
                let mut found = Resume::enabled();
                for p in partitions.iter() {
                    if let Some(r) = self.restore(engine, source, p).await? {
                        found.note(source, p, r.resume_after);
                    }
                }
                self.metrics
                    .state
                    .restore_seconds
                    .set(started.elapsed().as_secs_f64());
                change.answer(found);
            }
            Ownership::Release(partitions) => {
                let stored = self.flush(engine).await;
                for p in partitions {
                    engine.release(source, p);
                }
                if !stored {
                    return Ok(false);
                }
            }
            Ownership::Discard(partitions) => {
                for p in partitions {
                    engine.release(source, p);
                }
            }
        }
        self.metrics
            .state
            .partitions
            .set(engine.partitions().len() as i64);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::kql::check::compile;
    use crate::pipeline::{EngineOptions, QuerySpec};
    use crate::schema::Schemas;
    use crate::source::{Event, Position};
    use crate::state::{LocalStateStore, Start};
    use crate::window::QueryLimits;

    fn spec(name: &str, kql: &str) -> QuerySpec {
        QuerySpec {
            name: Arc::from(name),
            description: String::new(),
            kql: kql.to_string(),
            plan: Arc::new(compile(kql, &Schemas::embedded()).unwrap()),
            limits: QueryLimits::default(),
        }
    }

    fn engine(specs: Vec<QuerySpec>) -> Engine {
        Engine::new(Schemas::embedded(), specs, EngineOptions::default())
    }

    const JOBS: &str = "AmlComputeJobEvent | summarize n = count() by ClusterName";
    const FAILED: &str =
        "AmlComputeJobEvent | where EventType == 'JobFailed' | summarize n = count()";

    fn acquire(partitions: &[&str]) -> (Ownership, tokio::sync::oneshot::Receiver<Resume>) {
        Ownership::acquire(partitions.iter().map(|p| Arc::from(*p)).collect())
    }

    #[tokio::test]
    async fn an_acquisition_is_answered_where_each_partition_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::new(LocalStateStore::new(dir.path()));
        let metrics = Arc::new(Metrics::new());
        let body = br#"{"records":[{"time":"2024-05-20T10:00:00Z","category":"AmlComputeJobEvent","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/WS","properties":{"ClusterName":"c","EventType":"JobFailed"}}]}"#;

        // A replica absorbs events 0..=4 of partition t/0 with one query and stores them.
        let mut first = engine(vec![spec("jobs", JOBS)]);
        let mut c = StateCommitter::new(store.clone(), Duration::from_secs(1), metrics.clone());
        for seq in 0..5 {
            let position = Position {
                partition: Arc::from("t/0"),
                offset: seq,
                sequence_number: seq,
                enqueued_time: None,
            };
            first.ingest("k", &Event::new(body.to_vec(), position));
        }
        first.end_batch().unwrap();
        assert!(c.flush(&mut first).await);

        // The same queries: t/0 resumes after event 4; t/1 has no snapshot.
        let mut same = engine(vec![spec("jobs", JOBS)]);
        let (mut change, answer) = acquire(&["t/0", "t/1"]);
        assert!(c.change(&mut same, "k", &mut change).await.unwrap());
        let resume = answer.await.unwrap();
        let after = Checkpoint {
            offset: 4,
            sequence_number: 4,
        };
        assert_eq!(resume.start("k", "t/0", true), Start::After(after));
        assert!(!resume.needs_checkpoint("k", "t/0"));
        assert!(resume.needs_checkpoint("k", "t/1"));
        assert_eq!(resume.start("k", "t/1", true), Start::Oldest);
        assert_eq!(resume.start("k", "t/1", false), Start::Own);

        // A query added since: t/0 is read again from its oldest event.
        let mut grown = engine(vec![spec("jobs", JOBS), spec("failed", FAILED)]);
        let (mut change, answer) = acquire(&["t/0"]);
        assert!(c.change(&mut grown, "k", &mut change).await.unwrap());
        assert_eq!(answer.await.unwrap().start("k", "t/0", true), Start::Oldest);
    }

    /// A store another replica has written to since: every save of partition "1" is
    /// refused.
    #[derive(Debug)]
    struct Moved;

    #[async_trait::async_trait]
    impl StateStore for Moved {
        async fn partitions(&self, _: &str) -> Result<Vec<String>, StateError> {
            Ok(Vec::new())
        }
        async fn load(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, StateError> {
            Ok(None)
        }
        async fn save(&self, snapshots: Arc<[Snapshot]>) -> Result<(), StateError> {
            match snapshots.iter().find(|s| &*s.partition == "1") {
                Some(s) => Err(StateError::Fenced {
                    location: "blob".into(),
                    source_name: s.source.to_string(),
                    partition: s.partition.to_string(),
                }),
                None => Ok(()),
            }
        }
        fn location(&self, _: &str, _: &str) -> String {
            "blob".into()
        }
        async fn versions(&self, _: &str) -> Result<Vec<(String, String)>, StateError> {
            Ok(Vec::new())
        }
        async fn peek(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, StateError> {
            Ok(None)
        }
    }

    /// A sink whose sync happens in its job, on another thread: `synced` says it ran; with
    /// `fail` it fails.
    struct SyncSpy {
        synced: Arc<std::sync::atomic::AtomicBool>,
        fail: bool,
        pending: bool,
    }

    impl crate::forward::Sink for SyncSpy {
        fn name(&self) -> &str {
            "spy"
        }
        fn write(&mut self, _: &crate::forward::Routed<'_>) -> std::io::Result<()> {
            self.pending = true;
            Ok(())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        fn sync_job(&mut self) -> std::io::Result<Option<crate::forward::SyncJob>> {
            if !std::mem::take(&mut self.pending) {
                return Ok(None);
            }
            let (synced, fail) = (self.synced.clone(), self.fail);
            let engine_thread = std::thread::current().id();
            Ok(Some(Box::new(move || {
                assert_ne!(
                    std::thread::current().id(),
                    engine_thread,
                    "off the engine's thread"
                );
                if fail {
                    return Err(std::io::Error::other("disk gone"));
                }
                synced.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })))
        }
    }

    /// A store that notes, at each save, whether the sink had synced.
    #[derive(Debug, Default)]
    struct Noting {
        synced: Arc<std::sync::atomic::AtomicBool>,
        saves: std::sync::Mutex<Vec<bool>>,
    }

    #[async_trait::async_trait]
    impl StateStore for Noting {
        async fn partitions(&self, _: &str) -> Result<Vec<String>, StateError> {
            Ok(Vec::new())
        }
        async fn load(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, StateError> {
            Ok(None)
        }
        async fn save(&self, _: Arc<[Snapshot]>) -> Result<(), StateError> {
            let synced = self.synced.load(std::sync::atomic::Ordering::SeqCst);
            self.saves.lock().unwrap().push(synced);
            Ok(())
        }
        fn location(&self, _: &str, _: &str) -> String {
            "noting".into()
        }
        async fn versions(&self, _: &str) -> Result<Vec<(String, String)>, StateError> {
            Ok(Vec::new())
        }
        async fn peek(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, StateError> {
            Ok(None)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sinks_sync_off_the_engine_thread_before_the_snapshot_is_stored_and_a_failed_sync_stops(
    ) {
        for fail in [false, true] {
            let store = Arc::new(Noting::default());
            let spy = SyncSpy {
                synced: store.synced.clone(),
                fail,
                pending: false,
            };
            let schemas = Schemas::embedded();
            let plan = compile("AmlComputeJobEvent", &schemas).unwrap();
            let route = crate::forward::RouteSpec::new(
                "all",
                "AmlComputeJobEvent",
                plan,
                vec![0],
                Default::default(),
            );
            let forwarding = crate::pipeline::engine::Forwarding {
                routes: vec![route],
                sinks: vec![Box::new(spy)],
            };
            let mut engine = Engine::with_forwarding(
                schemas,
                vec![spec("jobs", JOBS)],
                forwarding,
                EngineOptions::default(),
            );
            let mut c = StateCommitter::new(
                store.clone(),
                Duration::from_secs(1),
                Arc::new(Metrics::new()),
            );
            let body = br#"{"records":[{"time":"2024-05-20T10:00:00Z","category":"AmlComputeJobEvent","resourceId":"/x","properties":{"ClusterName":"c"}}]}"#;
            let position = Position {
                partition: Arc::from("0"),
                offset: 0,
                sequence_number: 0,
                enqueued_time: None,
            };
            engine.ingest("eh", &Event::new(body.to_vec(), position));
            engine.end_batch().unwrap();
            let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
            c.hold(Arc::from("eh"), AckToken::new(1, tx));
            let stored = c.flush(&mut engine).await;
            if fail {
                assert!(!stored, "nothing is stored after a failed sync");
                assert!(store.saves.lock().unwrap().is_empty());
                let fatal = c
                    .take_fatal()
                    .expect("a failed sync stops the service")
                    .to_string();
                assert!(
                    fatal.contains("sink 'spy'") && fatal.contains("disk gone"),
                    "{fatal}"
                );
                assert!(
                    outcomes.try_recv().is_err(),
                    "the batch stays unacknowledged"
                );
            } else {
                assert!(stored);
                assert_eq!(*store.saves.lock().unwrap(), [true], "synced, then stored");
                assert!(c.take_fatal().is_none());
            }
        }
    }

    #[tokio::test]
    async fn a_fenced_partition_is_dropped_and_its_source_told_while_the_others_are_stored() {
        let kql = "AmlComputeJobEvent | summarize n = count()";
        let spec = QuerySpec {
            name: Arc::from("n"),
            description: String::new(),
            kql: kql.to_string(),
            plan: Arc::new(crate::kql::check::compile(kql, &Schemas::embedded()).unwrap()),
            limits: QueryLimits::default(),
        };
        let mut engine = Engine::new(Schemas::embedded(), vec![spec], EngineOptions::default());
        let mut c = StateCommitter::new(
            Arc::new(Moved),
            Duration::from_secs(1),
            Arc::new(Metrics::new()),
        );
        let mut told = c.fenced().subscribe();
        let body = br#"{"records":[{"time":"2024-05-20T10:00:00Z","category":"AmlComputeJobEvent","resourceId":"/x","properties":{}}]}"#;
        for p in ["0", "1"] {
            let position = Position {
                partition: Arc::from(p),
                offset: 0,
                sequence_number: 0,
                enqueued_time: None,
            };
            engine.ingest("eh", &Event::new(body.to_vec(), position));
        }
        engine.end_batch().unwrap();
        assert!(!c.flush(&mut engine).await, "the round failed");
        assert!(c.take_fatal().is_none(), "a move is not fatal");
        assert_eq!(
            told.try_recv().unwrap(),
            ("eh".to_string(), "1".to_string())
        );
        let held: Vec<&str> = engine.partitions().iter().map(|p| &*p.partition).collect();
        assert_eq!(held, ["0"], "the moved partition's stale state is gone");
        assert!(
            c.flush(&mut engine).await,
            "the others are stored at the next round"
        );
    }
}
