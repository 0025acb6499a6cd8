//! Which positions may be committed, given acknowledgement outcomes that arrive in any order.
//!
//! A source registers each batch, in the order it sends them, with the last position the
//! batch holds in each partition. Outcomes then arrive in any order. Per partition, the
//! committable position is the last position of the longest prefix of delivered batches: a
//! later batch delivered before an earlier one waits for it. A batch that was not delivered
//! blocks its partition for the rest of the run — the position never moves past it, so a
//! restart replays it — and that is logged once per partition.
//!
//! Owned by one task (the source's); no locks. Memory is bounded by the batches in flight:
//! entries leave when their prefix settles, and a blocked partition stores nothing more.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::Checkpoint;
use crate::ack::AckOutcome;
use crate::source::Position;

/// One batch's stake in one partition.
#[derive(Debug)]
struct Pending {
    batch: u64,
    last: Checkpoint,
    delivered: bool,
}

#[derive(Debug, Default)]
struct Partition {
    /// Registered and not yet settled, in registration order.
    pending: VecDeque<Pending>,
    /// The last position of the delivered prefix.
    settled: Option<Checkpoint>,
    /// A batch of this partition was not delivered.
    blocked: bool,
}

#[derive(Debug, Default)]
pub struct PositionTracker {
    partitions: HashMap<Arc<str>, Partition>,
    /// Batches registered whose outcome has not arrived, with the partitions they touch.
    outstanding: HashMap<u64, Vec<Arc<str>>>,
}

impl PositionTracker {
    pub fn new() -> PositionTracker {
        PositionTracker::default()
    }

    /// Registers a batch with its events' positions, in the order the batch holds them (the
    /// last position seen per partition is the one that settles). Batches must be registered
    /// in the order they are sent. A batch without positions is not tracked.
    pub fn register<'a>(&mut self, batch: u64, positions: impl IntoIterator<Item = &'a Position>) {
        // Few partitions per batch (usually one): a small vector beats a map here.
        let mut last: Vec<(Arc<str>, Checkpoint)> = Vec::new();
        for p in positions {
            let cp = Checkpoint {
                offset: p.offset,
                sequence_number: p.sequence_number,
            };
            match last.iter_mut().find(|(name, _)| *name == p.partition) {
                Some(entry) => entry.1 = cp,
                None => last.push((p.partition.clone(), cp)),
            }
        }
        if last.is_empty() {
            return;
        }
        let mut names = Vec::with_capacity(last.len());
        for (name, cp) in last {
            let part = self.partitions.entry(name.clone()).or_default();
            if !part.blocked {
                part.pending.push_back(Pending {
                    batch,
                    last: cp,
                    delivered: false,
                });
            }
            names.push(name);
        }
        self.outstanding.insert(batch, names);
    }

    /// Records a batch's outcome. Returns `false` for a batch that was never registered (e.g.
    /// one dropped before it was sent), which is ignored.
    pub fn resolve(&mut self, outcome: &AckOutcome) -> bool {
        let Some(names) = self.outstanding.remove(&outcome.batch) else {
            return false;
        };
        for name in names {
            let Some(part) = self.partitions.get_mut(&name) else {
                continue;
            };
            if part.blocked || !part.pending.iter().any(|p| p.batch == outcome.batch) {
                // Blocked, or the batch's stake was forgotten with its partition.
                continue;
            }
            if !outcome.delivered {
                part.blocked = true;
                // Nothing after the failed batch may ever settle: forget it all now.
                part.pending.clear();
                tracing::warn!(
                    partition = %name,
                    batch = outcome.batch,
                    settled = ?part.settled,
                    "a batch was not delivered; this partition's checkpoint stays before it until restart"
                );
                continue;
            }
            if let Some(p) = part.pending.iter_mut().find(|p| p.batch == outcome.batch) {
                p.delivered = true;
            }
            while part.pending.front().is_some_and(|p| p.delivered) {
                if let Some(p) = part.pending.pop_front() {
                    part.settled = Some(p.last);
                }
            }
        }
        true
    }

    /// Per partition (sorted by name), the last position of the longest prefix of delivered
    /// batches. Partitions with nothing settled yet are left out.
    pub fn committable(&self) -> Vec<(String, Checkpoint)> {
        let mut v: Vec<(String, Checkpoint)> = self
            .partitions
            .iter()
            .filter_map(|(name, part)| part.settled.clone().map(|cp| (name.to_string(), cp)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Whether batches of this partition wait for their outcome.
    pub fn has_pending(&self, partition: &str) -> bool {
        self.partitions
            .get(partition)
            .is_some_and(|p| !p.pending.is_empty())
    }

    /// Drops everything known about a partition this source no longer owns (a Kafka
    /// rebalance moved it away). Outcomes still to come for its batches are ignored; if the
    /// partition comes back, it starts afresh, unblocked.
    pub fn forget(&mut self, partition: &str) {
        self.partitions.remove(partition);
    }

    /// Batches registered whose outcome has not arrived yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Whether an undelivered batch stopped this partition's position.
    pub fn is_blocked(&self, partition: &str) -> bool {
        self.partitions.get(partition).is_some_and(|p| p.blocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(partition: &str, offset: i64, seq: i64) -> Position {
        Position {
            partition: Arc::from(partition),
            offset,
            sequence_number: seq,
            enqueued_time: None,
        }
    }

    fn ok(batch: u64) -> AckOutcome {
        AckOutcome {
            batch,
            delivered: true,
        }
    }

    fn failed(batch: u64) -> AckOutcome {
        AckOutcome {
            batch,
            delivered: false,
        }
    }

    fn cp(offset: i64, sequence_number: i64) -> Checkpoint {
        Checkpoint {
            offset,
            sequence_number,
        }
    }

    #[test]
    fn out_of_order_acks_settle_the_delivered_prefix() {
        let mut t = PositionTracker::new();
        t.register(1, &[pos("p", 0, 0), pos("p", 10, 1)]);
        t.register(2, &[pos("p", 20, 2)]);
        t.register(3, &[pos("p", 30, 3), pos("p", 40, 4)]);
        assert_eq!(t.outstanding(), 3);

        assert!(t.resolve(&ok(3)));
        assert!(t.resolve(&ok(2)));
        assert!(t.committable().is_empty(), "batch 1 is still outstanding");
        assert!(t.resolve(&ok(1)));
        assert_eq!(t.committable(), vec![("p".to_string(), cp(40, 4))]);
        assert_eq!(t.outstanding(), 0);

        t.register(4, &[pos("p", 50, 5)]);
        assert_eq!(
            t.committable(),
            vec![("p".to_string(), cp(40, 4))],
            "settled stays until 4 is delivered"
        );
        t.resolve(&ok(4));
        assert_eq!(t.committable(), vec![("p".to_string(), cp(50, 5))]);
    }

    #[test]
    fn a_failed_batch_blocks_its_partition_for_good() {
        let mut t = PositionTracker::new();
        t.register(1, &[pos("p", 0, 0)]);
        t.register(2, &[pos("p", 10, 1)]);
        t.register(3, &[pos("p", 20, 2)]);
        t.resolve(&ok(1));
        t.resolve(&failed(2));
        t.resolve(&ok(3));
        assert!(t.is_blocked("p"));
        assert_eq!(t.committable(), vec![("p".to_string(), cp(0, 0))]);

        // Later batches never move it either, and are not kept.
        t.register(4, &[pos("p", 30, 3)]);
        t.resolve(&ok(4));
        assert_eq!(t.committable(), vec![("p".to_string(), cp(0, 0))]);
        assert!(t.partitions["p"].pending.is_empty());
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn a_forgotten_partition_ignores_late_outcomes_and_starts_afresh() {
        let mut t = PositionTracker::new();
        t.register(1, &[pos("p", 0, 0)]);
        t.register(2, &[pos("p", 10, 1), pos("q", 0, 0)]);
        t.resolve(&failed(1));
        assert!(t.is_blocked("p"));
        assert!(t.has_pending("q"));
        t.forget("p");
        assert!(!t.is_blocked("p"));
        assert!(!t.has_pending("p"));
        // p comes back before batch 2's outcome arrives; that outcome, even a failure,
        // touches only q.
        t.register(3, &[pos("p", 20, 2)]);
        assert!(t.resolve(&failed(2)));
        assert!(!t.is_blocked("p"));
        assert!(t.is_blocked("q"));
        assert!(t.committable().is_empty());
        assert!(t.has_pending("p"));
        t.resolve(&ok(3));
        assert!(!t.has_pending("p"));
        assert_eq!(t.committable(), vec![("p".to_string(), cp(20, 2))]);
    }

    #[test]
    fn a_failure_before_anything_settled_commits_nothing() {
        let mut t = PositionTracker::new();
        t.register(1, &[pos("p", 0, 0)]);
        t.register(2, &[pos("p", 10, 1)]);
        t.resolve(&ok(2));
        t.resolve(&failed(1));
        assert!(t.committable().is_empty());
    }

    #[test]
    fn multiple_partitions_in_one_batch() {
        let mut t = PositionTracker::new();
        t.register(1, &[pos("a", 0, 0), pos("b", 0, 0), pos("a", 7, 1)]);
        t.register(2, &[pos("b", 5, 1), pos("c", 0, 0)]);
        t.register(3, &[pos("a", 9, 2), pos("c", 3, 1)]);

        t.resolve(&ok(2));
        // b's batch 1 is not delivered yet; c's first batch is 2.
        assert_eq!(t.committable(), vec![("c".to_string(), cp(0, 0))]);
        t.resolve(&ok(1));
        assert_eq!(
            t.committable(),
            vec![
                ("a".to_string(), cp(7, 1)),
                ("b".to_string(), cp(5, 1)),
                ("c".to_string(), cp(0, 0))
            ]
        );
        // A failed batch spanning a and c blocks both, but not b.
        t.register(4, &[pos("b", 9, 2)]);
        t.resolve(&failed(3));
        t.resolve(&ok(4));
        assert!(t.is_blocked("a") && t.is_blocked("c") && !t.is_blocked("b"));
        assert_eq!(
            t.committable(),
            vec![
                ("a".to_string(), cp(7, 1)),
                ("b".to_string(), cp(9, 2)),
                ("c".to_string(), cp(0, 0))
            ]
        );
    }

    #[test]
    fn unknown_and_repeated_outcomes_are_ignored() {
        let mut t = PositionTracker::new();
        assert!(!t.resolve(&ok(9)));
        t.register(1, &[pos("p", 0, 0)]);
        t.register(2, std::iter::empty());
        assert_eq!(t.outstanding(), 1, "an empty batch is not tracked");
        assert!(t.resolve(&ok(1)));
        assert!(
            !t.resolve(&failed(1)),
            "a second outcome for the same batch changes nothing"
        );
        assert!(!t.is_blocked("p"));
        assert_eq!(t.committable(), vec![("p".to_string(), cp(0, 0))]);
    }
}
