//! What the AMQP source adds to the shared acknowledgement loop
//! ([`crate::source::forward`]): as positions settle, each partition's "processed" statistics
//! (sequence number, and the enqueued time that lag in seconds is measured from) follow.
//!
//! Memory is bounded by the batches in flight: one entry per batch, dropped as it settles.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::metrics::AmqpSourceMetrics;
use crate::checkpoint::{Checkpoint, PositionTracker};
use crate::source::ledger::Progress;
use crate::source::Batch;

pub struct AmqpProgress {
    /// Per partition, the last (sequence number, enqueued time) of each batch in flight,
    /// in order: what settles tells which enqueued time is now "processed".
    in_flight: HashMap<Arc<str>, VecDeque<(i64, Option<i64>)>>,
    /// The processed sequence number last published per partition.
    published: HashMap<String, i64>,
    metrics: Arc<AmqpSourceMetrics>,
}

impl AmqpProgress {
    pub fn new(metrics: Arc<AmqpSourceMetrics>) -> AmqpProgress {
        AmqpProgress {
            in_flight: HashMap::new(),
            published: HashMap::new(),
            metrics,
        }
    }
}

impl Progress for AmqpProgress {
    fn registered(&mut self, batch: &Batch, tracker: &PositionTracker) {
        if let Some(last) = batch.events.last() {
            let p = &last.position;
            if !tracker.is_blocked(&p.partition) {
                self.in_flight
                    .entry(p.partition.clone())
                    .or_default()
                    .push_back((p.sequence_number, p.enqueued_time));
            }
        }
    }

    /// Publishes each partition's processed position (and its enqueued time).
    fn settled(&mut self, settled: &[(String, Checkpoint)], tracker: &PositionTracker) {
        for (partition, cp) in settled {
            if self.published.get(partition) == Some(&cp.sequence_number) {
                continue;
            }
            let key: Arc<str> = Arc::from(partition.as_str());
            let mut enqueued = None;
            if let Some(q) = self.in_flight.get_mut(&key) {
                if tracker.is_blocked(partition) {
                    q.clear();
                }
                while q.front().is_some_and(|(seq, _)| *seq <= cp.sequence_number) {
                    enqueued = q.pop_front().and_then(|(_, t)| t);
                }
            }
            self.metrics
                .partition(partition)
                .processed(cp.sequence_number, enqueued);
            self.published.insert(partition.clone(), cp.sequence_number);
        }
    }
}
