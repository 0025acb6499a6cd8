//! Global results: copies of the partitions other replicas own, taken from the snapshots
//! they store, merged with this replica's own partitions when results are read. So every
//! replica answers for the whole event hub, as one process reading all of it would, with
//! the other replicas' partitions as fresh as their last snapshot.
//!
//! A copy is read-only: events never go to it, and it is never snapshotted. It is replaced
//! when a newer snapshot of its partition arrives, dropped when this replica takes the
//! partition (the live state supersedes it), and its clock moves this engine's clock as a
//! single process's clock would move (the largest record time of any partition), so bins
//! close on every replica at the same event time.

use super::{Engine, PartitionState};

impl Engine {
    /// Installs (or replaces) the copy of a partition another replica owns. Ignored while
    /// this replica holds the partition itself.
    pub fn install_peer(&mut self, mut part: PartitionState) {
        if self.find(&part.source, &part.partition).is_ok() {
            return;
        }
        self.absorb_clock(part.clock);
        self.advance_to_clock(&mut part);
        match self.find_peer(&part.source, &part.partition) {
            Ok(i) => self.peers[i] = part,
            Err(i) => self.peers.insert(i, part),
        }
    }

    /// Drops the copy of a partition (its snapshot is gone, or this replica took it).
    pub fn drop_peer(&mut self, source: &str, partition: &str) -> bool {
        match self.find_peer(source, partition) {
            Ok(i) => {
                self.peers.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// The copies of other replicas' partitions, sorted by (source, partition).
    pub fn peers(&self) -> &[PartitionState] {
        &self.peers
    }

    fn find_peer(&self, source: &str, partition: &str) -> Result<usize, usize> {
        self.peers
            .binary_search_by(|p| (&*p.source, &*p.partition).cmp(&(source, partition)))
    }

    /// Advances the copies' windows with the clock (in `end_batch`), as the own partitions'.
    pub(super) fn advance_peers(&mut self) {
        if let Some(clock) = self.clock {
            let wm = clock.saturating_sub(self.lateness);
            for part in &mut self.peers {
                for q in &mut part.queries {
                    q.advance(clock, wm);
                }
            }
        }
    }
}
