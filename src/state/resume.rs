//! Where a source resumes each partition once its window state is restored: strictly after
//! the oldest position any query's restored state reflects. Not after the source's own
//! commit: commits lag the snapshots by up to a round (a crash between the two would make
//! a rotated file look replaced, or skip what a rebuilding query still needs), and a
//! snapshot may exist before any commit did.
//!
//! Rebuilding window state the store does not hold: a snapshot may lack a query (added or
//! changed since it was written), or a partition may have a committed position but no
//! snapshot at all (the state directory was lost, or hubwatch ran before it kept state).
//! Resuming after the commit would leave those windows without everything before it, for
//! as long as the windows are long. Instead the source reads such a partition again from
//! the oldest event it still holds (a file from its start, an event hub from its
//! retention); the queries whose state was restored skip what they already absorbed (each
//! has its own position), and the others absorb the history.
//!
//! What the source still holds bounds what comes back: with an event hub's retention
//! shorter than a window, that window holds only the retained part until it has been
//! running as long as it is wide. Tumbling bins already closed by the watermark stay as
//! they are (their rows are late); sliding windows and totals refill completely.

use std::collections::HashMap;

use crate::checkpoint::Checkpoint;

/// Where to start reading a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// No window state involved: after the source's own checkpoint, else its configured
    /// start.
    Own,
    /// Strictly after this position: every query's restored state reflects it.
    After(Checkpoint),
    /// From the oldest event the source still holds: some window state must be rebuilt.
    Oldest,
}

/// Restored partitions: at start for the sources that read all of theirs (file, AMQP),
/// and as the engine's answer when a Kafka consumer is assigned partitions.
#[derive(Debug, Default)]
pub struct Resume {
    /// Whether window state is kept at all (a checkpoint directory is configured).
    enabled: bool,
    /// Per source and partition, where every restored query's state resumes (`None`: some
    /// query has no state).
    restored: HashMap<String, HashMap<String, Option<Checkpoint>>>,
}

impl Resume {
    /// With window state kept; `note` each restored partition.
    pub fn enabled() -> Resume {
        Resume {
            enabled: true,
            restored: HashMap::new(),
        }
    }

    pub fn note(&mut self, source: &str, partition: &str, after: Option<Checkpoint>) {
        self.restored
            .entry(source.to_string())
            .or_default()
            .insert(partition.to_string(), after);
    }

    /// Whether [`start`](Self::start) depends on the source having a checkpoint for this
    /// partition (window state is kept and none of it was restored), so a source that must
    /// ask for its checkpoints asks only when the answer matters.
    pub fn needs_checkpoint(&self, source: &str, partition: &str) -> bool {
        self.enabled
            && !self
                .restored
                .get(source)
                .is_some_and(|p| p.contains_key(partition))
    }

    /// Where a partition starts, given whether the source has a checkpoint for it.
    pub fn start(&self, source: &str, partition: &str, has_checkpoint: bool) -> Start {
        if !self.enabled {
            return Start::Own;
        }
        match self.restored.get(source).and_then(|p| p.get(partition)) {
            Some(Some(after)) => Start::After(after.clone()),
            Some(None) => Start::Oldest,
            None if has_checkpoint => Start::Oldest,
            None => Start::Own,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(seq: i64) -> Checkpoint {
        Checkpoint {
            offset: seq * 10,
            sequence_number: seq,
        }
    }

    #[test]
    fn restored_partitions_resume_after_their_state_and_missing_state_is_rebuilt() {
        let mut r = Resume::enabled();
        r.note("s", "complete", Some(cp(7)));
        r.note("s", "lacks-a-query", None);
        assert_eq!(r.start("s", "complete", true), Start::After(cp(7)));
        assert_eq!(
            r.start("s", "complete", false),
            Start::After(cp(7)),
            "a snapshot before any commit"
        );
        assert_eq!(r.start("s", "lacks-a-query", true), Start::Oldest);
        assert_eq!(
            r.start("s", "lost", true),
            Start::Oldest,
            "a commit without state"
        );
        assert_eq!(r.start("s", "new", false), Start::Own, "a first start");
        assert_eq!(r.start("other", "complete", false), Start::Own);
        assert!(!r.needs_checkpoint("s", "complete"));
        assert!(!r.needs_checkpoint("s", "lacks-a-query"));
        assert!(r.needs_checkpoint("s", "lost"));
        assert!(!Resume::default().needs_checkpoint("s", "lost"));
        assert_eq!(
            Resume::default().start("s", "lost", true),
            Start::Own,
            "no state kept"
        );
    }
}
