//! Rebuilding window state the store does not hold. A snapshot may lack a query (added or
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

/// Which partitions' history the sources read again.
#[derive(Debug, Default)]
pub struct Rebuild {
    /// Whether window state is kept at all (a checkpoint directory is configured).
    enabled: bool,
    /// Per source, the partitions restored from a snapshot, and whether the snapshot held
    /// every query's state.
    restored: HashMap<String, HashMap<String, bool>>,
}

impl Rebuild {
    /// With window state kept; `note` each restored partition.
    pub fn enabled() -> Rebuild {
        Rebuild {
            enabled: true,
            restored: HashMap::new(),
        }
    }

    pub fn note(&mut self, source: &str, partition: &str, complete: bool) {
        self.restored
            .entry(source.to_string())
            .or_default()
            .insert(partition.to_string(), complete);
    }

    /// Whether this partition is read again from its oldest event: its snapshot lacks a
    /// query, or it has a committed position but no snapshot.
    pub fn needed(&self, source: &str, partition: &str, has_checkpoint: bool) -> bool {
        if !self.enabled {
            return false;
        }
        match self.restored.get(source).and_then(|p| p.get(partition)) {
            Some(complete) => !complete,
            None => has_checkpoint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_read_again_when_its_state_is_incomplete_or_missing() {
        let mut r = Rebuild::enabled();
        r.note("s", "complete", true);
        r.note("s", "lacks-a-query", false);
        assert!(!r.needed("s", "complete", true));
        assert!(r.needed("s", "lacks-a-query", true));
        assert!(r.needed("s", "lacks-a-query", false));
        assert!(r.needed("s", "lost", true), "a commit without state");
        assert!(
            !r.needed("s", "new", false),
            "a first start reads from the configured start"
        );
        assert!(!r.needed("other", "complete", false));
        assert!(
            !Rebuild::default().needed("s", "lost", true),
            "no state kept, nothing to rebuild"
        );
    }
}
