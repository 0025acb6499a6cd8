//! The acknowledgement ledger every source keeps: the one batch waiting for room in the
//! pipeline, the batches sent and awaiting their outcome (registered with the
//! [`PositionTracker`] in sending order), and what may be committed. Synchronous and owned
//! by one driver: [`Forwarder`](super::forward::Forwarder) drives it on the runtime for the
//! file and AMQP sources (committing to a checkpoint store); the Kafka source drives it on
//! its consumer thread, where librdkafka's callbacks also need it (committing to the
//! consumer group). Both get the same rules:
//!
//! - a batch is registered only when it is handed to the pipeline, so one dropped before
//!   that is never committed and is read again;
//! - at most `max_outstanding_batches` await their outcome, which bounds the batches in
//!   memory and the tracker (the source stops reading while [`wants`](Ledger::wants) is
//!   false);
//! - outcomes settle in any order; a partition commits only the delivered prefix of what
//!   it sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Batch, Event};
use crate::ack::AckOutcome;
use crate::checkpoint::{Checkpoint, PositionTracker};

/// Counters readable while a source runs (atomics: the source's driver writes, anyone
/// reads; relaxed, each is independent).
#[derive(Debug, Default)]
pub struct ForwardCounters {
    pub events: AtomicU64,
    pub batches: AtomicU64,
    pub batches_acked: AtomicU64,
    pub batches_failed: AtomicU64,
    pub commits: AtomicU64,
}

/// A snapshot of [`ForwardCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Events sent to the pipeline.
    pub events: u64,
    /// Batches sent to the pipeline.
    pub batches: u64,
    /// Batches every consumer acknowledged.
    pub batches_acked: u64,
    /// Batches some consumer did not deliver.
    pub batches_failed: u64,
    /// Successful commits.
    pub commits: u64,
}

impl ForwardCounters {
    pub fn snapshot(&self) -> ForwardStats {
        ForwardStats {
            events: self.events.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            batches_acked: self.batches_acked.load(Ordering::Relaxed),
            batches_failed: self.batches_failed.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }

    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a source adds to the ledger: its own view of progress (the AMQP source publishes
/// each partition's processed sequence number and lag from it).
pub trait Progress: Send {
    /// A batch is about to go to the pipeline (batches of a partition in sending order).
    fn registered(&mut self, _batch: &Batch, _tracker: &PositionTracker) {}
    /// These positions are settled (everything up to them delivered), before a commit.
    fn settled(&mut self, _settled: &[(String, Checkpoint)], _tracker: &PositionTracker) {}
}

/// No extra bookkeeping.
pub struct NoProgress;
impl Progress for NoProgress {}

pub struct Ledger {
    tracker: PositionTracker,
    /// Offered, waiting for room in the pipeline; not registered, so never committed.
    held: Option<Batch>,
    max_outstanding: usize,
    progress: Box<dyn Progress>,
    counters: Arc<ForwardCounters>,
}

impl Ledger {
    pub fn new(
        max_outstanding: usize,
        progress: Box<dyn Progress>,
        counters: Arc<ForwardCounters>,
    ) -> Ledger {
        Ledger {
            tracker: PositionTracker::new(),
            held: None,
            max_outstanding: max_outstanding.max(1),
            progress,
            counters,
        }
    }

    /// Whether the source may offer a batch now: nothing held, and fewer than
    /// `max_outstanding` awaiting their outcome.
    pub fn wants(&self) -> bool {
        self.held.is_none() && !self.full()
    }

    /// Whether `max_outstanding` batches await their outcome.
    pub fn full(&self) -> bool {
        self.tracker.outstanding() >= self.max_outstanding
    }

    /// Takes a batch to hand on (only when [`wants`](Self::wants) said so).
    pub fn offer(&mut self, batch: Batch) {
        debug_assert!(self.held.is_none(), "offered while a batch is held");
        self.held = Some(batch);
    }

    /// Whether a batch waits for room in the pipeline.
    pub fn holds(&self) -> bool {
        self.held.is_some()
    }

    /// Events held, for logs.
    pub fn held_events(&self) -> usize {
        self.held.as_ref().map_or(0, |b| b.events.len())
    }

    /// Hands the held batch to the pipeline through `permit`, registered first.
    pub fn send(&mut self, permit: mpsc::Permit<'_, Batch>) {
        let Some(batch) = self.held.take() else {
            return;
        };
        self.tracker
            .register(batch.ack.batch(), batch.events.iter().map(|e| &e.position));
        self.progress.registered(&batch, &self.tracker);
        ForwardCounters::add(&self.counters.events, batch.events.len() as u64);
        ForwardCounters::add(&self.counters.batches, 1);
        permit.send(batch);
    }

    /// Drops the held batch (the source stops: it is read again later).
    pub fn drop_held(&mut self) {
        self.held = None;
    }

    /// Keeps only these events of the held batch (partitions that left this replica are
    /// read by their next owner); a batch emptied by it is dropped (one that carries an
    /// ownership change and no events is kept).
    pub fn retain_held(&mut self, keep: impl Fn(&Event) -> bool) {
        if let Some(batch) = &mut self.held {
            let had = batch.events.len();
            batch.events.retain(|e| keep(e));
            if had > 0 && batch.events.is_empty() {
                self.held = None;
            }
        }
    }

    /// An outcome arrived.
    pub fn settle(&mut self, outcome: &AckOutcome) {
        if self.tracker.resolve(outcome) {
            let counter = if outcome.delivered {
                &self.counters.batches_acked
            } else {
                &self.counters.batches_failed
            };
            ForwardCounters::add(counter, 1);
        }
    }

    /// Batches sent whose outcome has not arrived.
    pub fn outstanding(&self) -> usize {
        self.tracker.outstanding()
    }

    /// Whether batches of this partition await their outcome.
    pub fn has_pending(&self, partition: &str) -> bool {
        self.tracker.has_pending(partition)
    }

    /// Forgets a partition that left this source (its late outcomes are ignored).
    pub fn forget(&mut self, partition: &str) {
        self.tracker.forget(partition);
    }

    /// Per partition (sorted by name), the last position of the delivered prefix, except
    /// `uncommitted` (a partition that cannot be read again); the source's progress hears
    /// of them first.
    pub fn committable(&mut self, uncommitted: Option<&str>) -> Vec<(String, Checkpoint)> {
        let settled: Vec<(String, Checkpoint)> = self
            .tracker
            .committable()
            .into_iter()
            .filter(|(p, _)| Some(p.as_str()) != uncommitted)
            .collect();
        self.progress.settled(&settled, &self.tracker);
        settled
    }

    /// A commit succeeded.
    pub fn committed(&self) {
        ForwardCounters::add(&self.counters.commits, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::AckToken;
    use crate::source::Position;

    fn batch(id: u64, events: &[(&str, i64)], tx: &mpsc::UnboundedSender<AckOutcome>) -> Batch {
        let events = events
            .iter()
            .map(|(p, s)| {
                Event::new(
                    Vec::new(),
                    Position {
                        partition: Arc::from(*p),
                        offset: *s,
                        sequence_number: *s,
                        enqueued_time: None,
                    },
                )
            })
            .collect();
        Batch::new(Arc::from("s"), events, AckToken::new(id, tx.clone()))
    }

    #[test]
    fn held_batches_shrink_with_their_partitions_and_only_sent_ones_commit() {
        let (tx, mut acks) = mpsc::unbounded_channel();
        let (out, mut pipeline) = mpsc::channel(4);
        let counters = Arc::new(ForwardCounters::default());
        let mut ledger = Ledger::new(1, Box::new(NoProgress), counters.clone());

        ledger.offer(batch(1, &[("a", 0), ("b", 0), ("a", 1)], &tx));
        ledger.retain_held(|e| &*e.position.partition != "b");
        assert_eq!(ledger.held_events(), 2, "b's event left with b");
        ledger.send(out.try_reserve().unwrap());
        let sent = pipeline.try_recv().unwrap();
        assert!(
            ledger.full() && !ledger.wants(),
            "one batch may await its outcome"
        );

        ledger.offer(batch(2, &[("b", 5)], &tx));
        ledger.retain_held(|e| &*e.position.partition != "b");
        assert!(
            !ledger.holds(),
            "an emptied batch is dropped, never registered"
        );

        // The dropped batch reports "not delivered" (it was never registered: ignored).
        sent.ack.ack();
        while let Ok(outcome) = acks.try_recv() {
            ledger.settle(&outcome);
        }
        assert!(ledger.wants());
        let committable = ledger.committable(None);
        assert_eq!(committable.len(), 1);
        assert_eq!(committable[0].0, "a");
        assert_eq!(committable[0].1.sequence_number, 1);
        assert!(ledger.committable(Some("a")).is_empty());
        let s = counters.snapshot();
        assert_eq!(
            (s.events, s.batches, s.batches_acked, s.batches_failed),
            (2, 1, 1, 0)
        );
    }
}
