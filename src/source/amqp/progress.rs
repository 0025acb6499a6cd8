//! The acknowledgement side of an AMQP source, owned by the source's task: batches are
//! registered with the [`PositionTracker`] as they are forwarded, outcomes settle them, the
//! delivered prefix of each partition is committed to the checkpoint store, and the
//! "processed" statistics (sequence number, and the enqueued time that lag in seconds is
//! measured from) follow what settled.
//!
//! Registration and outcomes happen in the same task, so an outcome never arrives before
//! its batch is registered. Memory is bounded by the batches in flight (the source stops
//! forwarding at `max_outstanding_batches`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::metrics::AmqpSourceMetrics;
use super::AmqpSourceError;
use crate::ack::AckOutcome;
use crate::checkpoint::{CheckpointStore, Committer, PositionTracker};
use crate::source::Batch;

pub struct Progress {
    source: String,
    tracker: PositionTracker,
    /// Writes settled positions (only those that moved).
    committer: Committer,
    /// Per partition, the last (sequence number, enqueued time) of each batch in flight,
    /// in order: what settles tells which enqueued time is now "processed".
    in_flight: HashMap<Arc<str>, VecDeque<(i64, Option<i64>)>>,
    /// The processed sequence number last published per partition.
    published: HashMap<String, i64>,
    metrics: Arc<AmqpSourceMetrics>,
}

impl Progress {
    pub fn new(
        source: &str,
        store: Option<Arc<dyn CheckpointStore>>,
        metrics: Arc<AmqpSourceMetrics>,
    ) -> Progress {
        Progress {
            source: source.to_string(),
            committer: Committer::new(store, source),
            tracker: PositionTracker::new(),
            in_flight: HashMap::new(),
            published: HashMap::new(),
            metrics,
        }
    }

    /// Call just before the batch is forwarded (batches of a partition in sending order).
    pub fn register(&mut self, batch: &Batch) {
        self.tracker
            .register(batch.ack.batch(), batch.events.iter().map(|e| &e.position));
        if let Some(last) = batch.events.last() {
            let p = &last.position;
            if !self.tracker.is_blocked(&p.partition) {
                self.in_flight
                    .entry(p.partition.clone())
                    .or_default()
                    .push_back((p.sequence_number, p.enqueued_time));
            }
        }
    }

    pub fn settle(&mut self, outcome: &AckOutcome) {
        self.tracker.resolve(outcome);
    }

    pub fn outstanding(&self) -> usize {
        self.tracker.outstanding()
    }

    /// Publishes each partition's processed position (and its enqueued time) to the
    /// statistics.
    pub fn publish(&mut self) {
        for (partition, cp) in self.tracker.committable() {
            if self.published.get(&partition) == Some(&cp.sequence_number) {
                continue;
            }
            let key: Arc<str> = Arc::from(partition.as_str());
            let mut enqueued = None;
            if let Some(q) = self.in_flight.get_mut(&key) {
                if self.tracker.is_blocked(&partition) {
                    q.clear();
                }
                while q.front().is_some_and(|(seq, _)| *seq <= cp.sequence_number) {
                    enqueued = q.pop_front().and_then(|(_, t)| t);
                }
            }
            self.metrics
                .partition(&partition)
                .processed(cp.sequence_number, enqueued);
            self.published.insert(partition, cp.sequence_number);
        }
    }

    /// Waits, at most `wait` in total, for the outcomes of batches in flight.
    pub async fn wait_for_outcomes(
        &mut self,
        acks: &mut mpsc::UnboundedReceiver<AckOutcome>,
        wait: Duration,
    ) {
        let deadline = Instant::now() + wait;
        while self.tracker.outstanding() > 0 {
            tokio::select! {
                outcome = acks.recv() => match outcome {
                    Some(o) => self.settle(&o),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(source = %self.source, outstanding = self.tracker.outstanding(),
                        "gave up waiting for acknowledgements; those events will be read again after a restart");
                    break;
                }
            }
        }
    }

    /// A periodic commit: a failure is logged and the next tick tries again.
    pub async fn commit_or_log(&mut self) {
        if let Err(e) = self.commit().await {
            tracing::warn!(source = %self.source, error = %e,
                "committing positions failed; retrying at the next interval");
        }
    }

    /// Stores the positions that settled since the last commit (partition name = partition
    /// id), and publishes them.
    pub async fn commit(&mut self) -> Result<(), AmqpSourceError> {
        self.publish();
        match self.committer.commit(self.tracker.committable()).await {
            Ok(written) => {
                if written {
                    self.metrics.committed();
                }
                Ok(())
            }
            Err(e) => Err(AmqpSourceError::Commit(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::AckToken;
    use crate::checkpoint::FileCheckpointStore;
    use crate::source::{Event, Position};

    fn batch(
        id: u64,
        partition: &str,
        seqs: &[i64],
        tx: &mpsc::UnboundedSender<AckOutcome>,
    ) -> Batch {
        Batch {
            ownership: None,
            source: Arc::from("eh"),
            events: seqs
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
                .collect(),
            ack: AckToken::new(id, tx.clone()),
        }
    }

    #[tokio::test]
    async fn commits_the_delivered_prefix_per_partition() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileCheckpointStore::open(dir.path().join("cp.json")).unwrap());
        let metrics = Arc::new(AmqpSourceMetrics::new("eh", None));
        let mut p = Progress::new("eh", Some(store.clone()), metrics.clone());
        let (tx, mut rx) = mpsc::unbounded_channel();

        let b1 = batch(1, "0", &[0, 1], &tx);
        let b2 = batch(2, "0", &[2, 3], &tx);
        let b3 = batch(3, "1", &[7], &tx);
        for b in [&b1, &b2, &b3] {
            p.register(b);
        }
        // Batch 2 and 3 are done before 1: partition 0 waits for 1.
        b2.ack.ack();
        b3.ack.ack();
        while let Ok(o) = rx.try_recv() {
            p.settle(&o);
        }
        p.commit().await.unwrap();
        assert_eq!(store.load("eh", "0").unwrap(), None);
        assert_eq!(store.load("eh", "1").unwrap().unwrap().sequence_number, 7);

        b1.ack.ack();
        p.settle(&rx.try_recv().unwrap());
        p.commit().await.unwrap();
        let cp = store.load("eh", "0").unwrap().unwrap();
        assert_eq!((cp.offset, cp.sequence_number), (30, 3));
        assert_eq!(p.outstanding(), 0);

        let stats = metrics.snapshot();
        assert_eq!(stats[0].processed_sequence_number, Some(3));
        assert_eq!(stats[1].processed_sequence_number, Some(7));
        assert_eq!(metrics.commits(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_outcomes_is_bounded() {
        let metrics = Arc::new(AmqpSourceMetrics::new("eh", None));
        let mut p = Progress::new("eh", None, metrics);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let held = batch(1, "0", &[0], &tx);
        p.register(&held);
        let started = Instant::now();
        p.wait_for_outcomes(&mut rx, Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(p.outstanding(), 1);
    }
}
