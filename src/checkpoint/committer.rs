//! Writes settled positions to a checkpoint store, skipping partitions whose position has
//! not moved since the last write.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Checkpoint, CheckpointError, CheckpointStore};

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Store(#[from] CheckpointError),
}

pub struct Committer {
    store: Option<Arc<dyn CheckpointStore>>,
    source: String,
    committed: HashMap<String, Checkpoint>,
}

impl Committer {
    pub fn new(store: Option<Arc<dyn CheckpointStore>>, source: impl Into<String>) -> Committer {
        Committer {
            store,
            source: source.into(),
            committed: HashMap::new(),
        }
    }

    /// Stores the positions in `settled` that changed since the last successful write.
    /// Returns whether anything was written.
    pub async fn commit(
        &mut self,
        settled: Vec<(String, Checkpoint)>,
    ) -> Result<bool, CommitError> {
        let Some(store) = self.store.clone() else {
            return Ok(false);
        };
        let updates: Vec<(String, Checkpoint)> = settled
            .into_iter()
            .filter(|(p, cp)| self.committed.get(p) != Some(cp))
            .collect();
        if updates.is_empty() {
            return Ok(false);
        }
        store.save(&self.source, &updates).await?;
        self.committed.extend(updates);
        Ok(true)
    }
}
