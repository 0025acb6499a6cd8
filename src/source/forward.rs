//! The asynchronous driver of the acknowledgement [`Ledger`], for the sources that run on
//! the runtime (file, AMQP): batches go to the pipeline one at a time; outcomes settle them
//! in any order; the delivered prefix of every partition is committed to the checkpoint
//! store every `commit_interval` and once more at the end.
//!
//! A source keeps its own loop for its own input (a reader thread's channel, partition
//! readers) and `select!`s on [`Forwarder::drive`] beside it, which does one piece of this
//! work per call: settle an outcome, commit on the tick, or hand the held batch to the
//! pipeline once it has room. The source offers a batch only while [`wants`] says so. At
//! the end, [`finish`] stops forwarding, waits for what the pipeline holds (bounded) and
//! commits.
//!
//! Registration and outcomes happen in the same task, so an outcome never arrives before
//! its batch is registered. (The Kafka source drives the same ledger on its consumer
//! thread and commits to its consumer group.)
//!
//! [`wants`]: Forwarder::wants
//! [`finish`]: Forwarder::finish

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::ledger::{ForwardCounters, Ledger, Progress};
use super::Batch;
use crate::ack::AckOutcome;
use crate::checkpoint::{Checkpoint, CheckpointStore, CommitError, Committer};

/// A source's commit series: `hubwatch_source_checkpoint_commits_total` and
/// `hubwatch_source_last_commit_timestamp_seconds`.
#[derive(Clone)]
pub struct CommitMetrics {
    pub count: IntCounter,
    pub last: prometheus::Gauge,
}

/// How a source's acknowledgements are handled.
pub struct ForwardSettings {
    /// The source's name (checkpoints, logs).
    pub source: String,
    pub store: Option<Arc<dyn CheckpointStore>>,
    pub commit_interval: Duration,
    pub max_outstanding_batches: usize,
    /// How long the end waits for outcomes: in total after shutdown; at the end of the
    /// input, until this long passes without one (a slow pipeline still making progress is
    /// waited for).
    pub ack_wait: Duration,
    /// Partitions whose positions are never committed (standard input cannot be re-read).
    pub uncommitted: Option<&'static str>,
    /// Counts successful commits and times the last.
    pub commits: Option<CommitMetrics>,
}

/// What one [`Forwarder::drive`] call did.
#[derive(Debug, PartialEq, Eq)]
pub enum Drive {
    /// Settled an outcome, committed, or sent the held batch.
    Progress,
    /// The pipeline stopped taking batches: the source should stop.
    Closed,
}

pub struct Forwarder {
    settings: ForwardSettings,
    out: Option<mpsc::Sender<Batch>>,
    acks: mpsc::UnboundedReceiver<AckOutcome>,
    ledger: Ledger,
    /// `None` while a commit runs in `committing`: a commit is a task of its own, so that
    /// `drive` stays cancel-safe (a commit awaited inside it would be dropped half-way
    /// whenever the source's `select!` took another branch, and with a remote store it
    /// would never finish).
    committer: Option<Committer>,
    committing: Option<JoinHandle<(Committer, Result<bool, CommitError>)>>,
    tick: Interval,
    /// Per partition, the sequence number of the checkpoint the store held when reading
    /// began (`seed`): positions at or before it are never committed, so a checkpoint never
    /// moves backwards while a partition is read again to rebuild window state.
    floor: std::collections::HashMap<String, i64>,
}

impl Forwarder {
    /// `acks` is the receiving end of the channel the source's batches' tokens report to.
    pub fn new(
        settings: ForwardSettings,
        out: mpsc::Sender<Batch>,
        acks: mpsc::UnboundedReceiver<AckOutcome>,
        progress: Box<dyn Progress>,
        counters: Arc<ForwardCounters>,
    ) -> Forwarder {
        let every = settings.commit_interval.max(Duration::from_millis(1));
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Forwarder {
            committer: Some(Committer::new(
                settings.store.clone(),
                settings.source.clone(),
            )),
            committing: None,
            floor: Default::default(),
            ledger: Ledger::new(settings.max_outstanding_batches, progress, counters),
            settings,
            out: Some(out),
            acks,
            tick,
        }
    }

    /// Whether the source may offer a batch now.
    pub fn wants(&self) -> bool {
        self.ledger.wants()
    }

    /// Takes a batch to forward (only when [`wants`](Self::wants) said so). Events at or
    /// before their partition's floor (the checkpoint found when reading began) are marked
    /// replayed: they rebuild windows and are not forwarded to sinks again. An event its
    /// source marked replayed (a file read from its start, up to its own checkpoint)
    /// raises the floor to itself, so that the checkpoint does not move back while it is
    /// read again; an event that starts its partition over (a replaced file) clears it.
    pub fn offer(&mut self, mut batch: Batch) {
        for e in &mut batch.events {
            let (partition, seq) = (&*e.position.partition, e.position.sequence_number);
            if e.rewound {
                self.floor.remove(partition);
            }
            // Most events: no floor anywhere, and not replayed; no lookup for them.
            if self.floor.is_empty() && !e.replayed {
                continue;
            }
            match self.floor.get_mut(partition) {
                Some(floor) if seq <= *floor => e.replayed = true,
                Some(floor) if e.replayed => *floor = seq,
                None if e.replayed => {
                    self.floor.insert(partition.to_string(), seq);
                }
                _ => {}
            }
        }
        self.ledger.offer(batch);
    }

    /// A partition left this source (another replica owns it now): its events held here
    /// are dropped, and its positions are never committed from here again (late outcomes
    /// of its batches are ignored).
    pub fn forget(&mut self, partition: &str) {
        self.ledger
            .retain_held(|e| &*e.position.partition != partition);
        self.ledger.forget(partition);
        self.floor.remove(partition);
    }

    /// The checkpoints the store holds for partitions about to be read: a position at or
    /// before one of them is not committed (a rebuild reads a partition again from its
    /// oldest event; its checkpoint stays where it was until reading passes it).
    pub fn seed(&mut self, checkpoints: &std::collections::HashMap<String, Checkpoint>) {
        for (partition, cp) in checkpoints {
            self.floor.insert(partition.clone(), cp.sequence_number);
        }
    }

    /// What may be committed now: the settled positions past each partition's floor.
    fn committable(&mut self) -> Vec<(String, Checkpoint)> {
        let mut settled = self.ledger.committable(self.settings.uncommitted);
        settled.retain(|(p, cp)| {
            self.floor
                .get(p)
                .is_none_or(|floor| cp.sequence_number > *floor)
        });
        settled
    }

    /// Sends a batch that carries only an ownership change, once the pipeline has room,
    /// after every batch sent so far (a batch held and not sent is dropped first: its events
    /// were never registered and are read again). Not registered: its outcome is the
    /// caller's. Returns whether the pipeline took it.
    pub async fn send_change(&mut self, change: Batch) -> bool {
        debug_assert!(change.events.is_empty(), "a change carries no events");
        self.ledger.drop_held();
        match &self.out {
            Some(out) => out.send(change).await.is_ok(),
            None => false,
        }
    }

    /// Batches sent whose outcome has not arrived.
    pub fn outstanding(&self) -> usize {
        self.ledger.outstanding()
    }

    /// Does one piece of the shared work; cancel-safe, for `select!`.
    pub async fn drive(&mut self) -> Drive {
        let out = self.out.clone();
        let committing = self.committing.is_some();
        tokio::select! {
            biased;
            Some(outcome) = self.acks.recv() => {
                self.ledger.settle(&outcome);
                Drive::Progress
            }
            done = commit_done(&mut self.committing), if committing => {
                self.committed(done);
                Drive::Progress
            }
            _ = self.tick.tick(), if !committing => {
                self.start_commit();
                Drive::Progress
            }
            permit = reserve(out.as_ref()), if self.ledger.holds() => match permit {
                Some(permit) => {
                    self.ledger.send(permit);
                    Drive::Progress
                }
                None => {
                    tracing::warn!(source = %self.settings.source, "the pipeline stopped taking batches; stopping");
                    Drive::Closed
                }
            },
        }
    }

    /// The end: stops forwarding (a batch held and never sent was never registered, so it
    /// is read again after a restart), lets the pipeline know the input ended, waits for the
    /// outcomes of what it holds, and commits. `stopping` says whether shutdown was
    /// signalled (the wait is then bounded in total) or the input ended.
    pub async fn finish(mut self, stopping: bool) -> Result<(), CommitError> {
        self.ledger.drop_held();
        self.out = None;
        let wait = self.settings.ack_wait;
        let mut deadline = Instant::now() + wait;
        while self.ledger.outstanding() > 0 {
            let committing = self.committing.is_some();
            tokio::select! {
                biased;
                outcome = self.acks.recv() => match outcome {
                    Some(outcome) => {
                        self.ledger.settle(&outcome);
                        if !stopping {
                            deadline = Instant::now() + wait;
                        }
                    }
                    // Every token is gone, so every outcome has arrived.
                    None => break,
                },
                done = commit_done(&mut self.committing), if committing => self.committed(done),
                _ = self.tick.tick(), if !committing => self.start_commit(),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(source = %self.settings.source, outstanding = self.ledger.outstanding(),
                        "gave up waiting for acknowledgements; those batches will be read again after a restart");
                    break;
                }
            }
        }
        if self.committing.is_some() {
            let done = commit_done(&mut self.committing).await;
            self.committed(done);
        }
        let Some(mut committer) = self.committer.take() else {
            return Ok(());
        };
        let settled = self.committable();
        if committer.commit(settled).await? {
            self.count_commit();
        }
        Ok(())
    }

    /// Starts storing the positions that settled since the last commit.
    fn start_commit(&mut self) {
        let Some(mut committer) = self.committer.take() else {
            return;
        };
        let settled = self.committable();
        self.committing = Some(tokio::spawn(async move {
            let result = committer.commit(settled).await;
            (committer, result)
        }));
    }

    /// A periodic commit ended: a failure is logged and the next tick tries again.
    fn committed(&mut self, done: (Committer, Result<bool, CommitError>)) {
        let (committer, result) = done;
        self.committer = Some(committer);
        match result {
            Ok(true) => self.count_commit(),
            Ok(false) => {}
            Err(e) => tracing::warn!(source = %self.settings.source, error = %e,
                "committing positions failed; retrying at the next interval"),
        }
    }

    fn count_commit(&self) {
        self.ledger.committed();
        if let Some(c) = &self.settings.commits {
            c.count.inc();
            c.last
                .set(crate::time::now_ticks() as f64 / crate::time::TICKS_PER_SECOND as f64);
        }
    }
}

/// The result of the commit in flight (awaiting a `JoinHandle` by reference is
/// cancel-safe). A commit task that panicked panics the source, as the commit would have
/// inline.
async fn commit_done(
    committing: &mut Option<JoinHandle<(Committer, Result<bool, CommitError>)>>,
) -> (Committer, Result<bool, CommitError>) {
    let Some(task) = committing.as_mut() else {
        return std::future::pending().await;
    };
    let joined = task.await;
    *committing = None;
    match joined {
        Ok(done) => done,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Room for one batch, or `None` once the pipeline is gone (or the forwarder stopped).
async fn reserve(out: Option<&mpsc::Sender<Batch>>) -> Option<mpsc::Permit<'_, Batch>> {
    match out {
        Some(out) => out.reserve().await.ok(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::AckToken;
    use crate::checkpoint::FileCheckpointStore;
    use crate::source::amqp::metrics::AmqpSourceMetrics;
    use crate::source::amqp::progress::AmqpProgress;
    use crate::source::ledger::NoProgress;
    use crate::source::{Event, Position};

    fn batch(
        id: u64,
        partition: &str,
        seqs: &[i64],
        tx: &mpsc::UnboundedSender<AckOutcome>,
    ) -> Batch {
        let events = seqs
            .iter()
            .map(|s| {
                Event::new(
                    b"{}".to_vec(),
                    Position {
                        partition: Arc::from(partition),
                        offset: s * 10,
                        sequence_number: *s,
                        enqueued_time: Some(1000 + s),
                    },
                )
            })
            .collect();
        Batch::new(Arc::from("eh"), events, AckToken::new(id, tx.clone()))
    }

    fn settings(
        store: Option<Arc<dyn CheckpointStore>>,
        max_outstanding: usize,
    ) -> ForwardSettings {
        ForwardSettings {
            source: "eh".into(),
            store,
            commit_interval: Duration::from_secs(1),
            max_outstanding_batches: max_outstanding,
            ack_wait: Duration::from_secs(5),
            uncommitted: None,
            commits: None,
        }
    }

    /// Offers a batch and drives until the pipeline has it.
    async fn send(fwd: &mut Forwarder, rx: &mut mpsc::Receiver<Batch>, b: Batch) -> Batch {
        assert!(fwd.wants());
        fwd.offer(b);
        loop {
            assert_eq!(fwd.drive().await, Drive::Progress);
            if let Ok(b) = rx.try_recv() {
                return b;
            }
        }
    }

    /// A forwarder over a checkpoint file in `dir`: it, its store and counters, the
    /// pipeline's end, and the sender of acknowledgements.
    #[allow(clippy::type_complexity)]
    fn with_store(
        dir: &std::path::Path,
        progress: Box<dyn Progress>,
    ) -> (
        Forwarder,
        Arc<FileCheckpointStore>,
        Arc<ForwardCounters>,
        mpsc::Receiver<Batch>,
        mpsc::UnboundedSender<AckOutcome>,
    ) {
        let store = Arc::new(FileCheckpointStore::open(dir.join("cp.json")).unwrap());
        let counters = Arc::new(ForwardCounters::default());
        let (out, rx) = mpsc::channel(8);
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let fwd = Forwarder::new(
            settings(Some(store.clone()), 10),
            out,
            ack_rx,
            progress,
            counters.clone(),
        );
        (fwd, store, counters, rx, ack_tx)
    }

    #[tokio::test(start_paused = true)]
    async fn commits_the_delivered_prefix_per_partition_and_publishes_progress() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(AmqpSourceMetrics::new("eh", None));
        let (mut fwd, store, counters, mut rx, ack_tx) =
            with_store(dir.path(), Box::new(AmqpProgress::new(metrics.clone())));
        let b1 = send(&mut fwd, &mut rx, batch(1, "0", &[0, 1], &ack_tx)).await;
        let b2 = send(&mut fwd, &mut rx, batch(2, "0", &[2, 3], &ack_tx)).await;
        let b3 = send(&mut fwd, &mut rx, batch(3, "1", &[7], &ack_tx)).await;
        assert_eq!(fwd.outstanding(), 3);

        // Batches 2 and 3 are done before 1: partition 0 waits for 1. A tick commits.
        b2.ack.ack();
        b3.ack.ack();
        while fwd.outstanding() > 1 {
            fwd.drive().await;
        }
        while counters.snapshot().commits < 1 {
            fwd.drive().await;
        }
        let stored = store.load_sync("eh");
        assert_eq!(stored.get("0"), None);
        assert_eq!(stored["1"].sequence_number, 7);

        b1.ack.ack();
        while counters.snapshot().commits < 2 {
            fwd.drive().await;
        }
        let stored = store.load_sync("eh");
        assert_eq!((stored["0"].offset, stored["0"].sequence_number), (30, 3));
        let stats = metrics.snapshot();
        assert_eq!(stats[0].processed_sequence_number, Some(3));
        assert_eq!(stats[1].processed_sequence_number, Some(7));
        let s = counters.snapshot();
        assert_eq!(
            (s.events, s.batches, s.batches_acked, s.commits),
            (5, 3, 3, 2)
        );
        fwd.finish(true).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_max_outstanding_batches_and_a_bounded_end() {
        let counters = Arc::new(ForwardCounters::default());
        let (out, mut rx) = mpsc::channel(8);
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let mut fwd = Forwarder::new(
            settings(None, 2),
            out,
            ack_rx,
            Box::new(NoProgress),
            counters.clone(),
        );
        let b1 = send(&mut fwd, &mut rx, batch(1, "0", &[0], &ack_tx)).await;
        let _b2 = send(&mut fwd, &mut rx, batch(2, "0", &[1], &ack_tx)).await;
        assert!(!fwd.wants(), "two batches await their outcome");
        drop(b1); // not delivered
        fwd.drive().await;
        assert!(fwd.wants());
        assert_eq!(counters.snapshot().batches_failed, 1);

        // The end waits at most `ack_wait` for batch 2, which the pipeline never settles.
        let started = Instant::now();
        fwd.finish(true).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn events_read_again_before_the_checkpoint_do_not_move_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut fwd, store, counters, mut rx, ack_tx) =
            with_store(dir.path(), Box::new(NoProgress));
        // A file read from its start whose checkpoint was at line 5: lines up to 5 come
        // marked replayed by the reader.
        let mut again = batch(1, "0", &[1, 2, 3], &ack_tx);
        again.events.iter_mut().for_each(|e| e.replayed = true);
        let again = send(&mut fwd, &mut rx, again).await;
        again.ack.ack();
        let mut commits = counters.snapshot().commits;
        for _ in 0..5 {
            fwd.drive().await;
        }
        assert_eq!(
            store.load_sync("eh").get("0"),
            None,
            "nothing behind line 5"
        );

        let mut rest = batch(2, "0", &[4, 5, 6, 7], &ack_tx);
        rest.events[..2].iter_mut().for_each(|e| e.replayed = true);
        let rest = send(&mut fwd, &mut rx, rest).await;
        rest.ack.ack();
        while counters.snapshot().commits == commits {
            fwd.drive().await;
        }
        assert_eq!(store.load_sync("eh")["0"].sequence_number, 7, "past it");

        // The file replaced: it starts over, and its first lines are committed again.
        let mut over = batch(3, "0", &[1, 2], &ack_tx);
        over.events[0].rewound = true;
        let over = send(&mut fwd, &mut rx, over).await;
        assert!(over.events.iter().all(|e| !e.replayed));
        over.ack.ack();
        commits = counters.snapshot().commits;
        while counters.snapshot().commits == commits {
            fwd.drive().await;
        }
        assert_eq!(store.load_sync("eh")["0"].sequence_number, 2);
        fwd.finish(true).await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_pipeline_stops_the_source() {
        let (out, rx) = mpsc::channel(1);
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let mut fwd = Forwarder::new(
            settings(None, 2),
            out,
            ack_rx,
            Box::new(NoProgress),
            Arc::default(),
        );
        drop(rx);
        fwd.offer(batch(1, "0", &[0], &ack_tx));
        assert_eq!(fwd.drive().await, Drive::Closed);
    }
}
