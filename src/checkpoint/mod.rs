//! Checkpoints: the acknowledged position of every partition of every source, so that a
//! restart resumes strictly after the last event the whole pipeline finished with.
//!
//! This module holds the contract — [`Checkpoint`], the [`CheckpointStore`] trait and its
//! error — and re-exports the pieces:
//!
//! - [`FileCheckpointStore`] (`file.rs`): one JSON file, rewritten atomically.
//! - [`BlobCheckpointStore`] (`blob.rs`): the Azure SDKs' blob layout, shared by replicas,
//!   with the partition ownership their load balancing claims.
//! - [`PositionTracker`] (`tracker.rs`): turns acknowledgement outcomes, which arrive in any
//!   order, into the positions that may be committed (never past an undelivered batch).
//!
//! Stores are async so that a blob store fits; the file store runs its small write plus
//! `fsync` on the blocking pool.

pub mod balance;
pub mod blob;
pub mod committer;
pub mod file;
pub mod tracker;

use std::collections::HashMap;
use std::path::PathBuf;

pub use blob::{BlobCheckpointStore, Claim, Owned};
pub use committer::{CommitError, Committer};
pub use file::FileCheckpointStore;
pub use tracker::PositionTracker;

/// The position of the LAST acknowledged event of a partition: a restart resumes strictly
/// after it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Event Hubs / Kafka offset, or the byte offset of a file line's first byte.
    pub offset: i64,
    /// Event Hubs sequence number, or the 0-based line number in a file.
    pub sequence_number: i64,
}

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store could not be read or written; trying again later may succeed.
    #[error("checkpoint file {}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        /// What was being done ("reading", "writing the temporary file", …).
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The stored checkpoints are not valid JSON of the expected shape. Not retryable: an
    /// operator must repair or remove the file (it is never overwritten while corrupt, so
    /// nothing is lost by looking at it first).
    #[error("checkpoint file {} is corrupt: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A remote store (a blob container) failed or refused the request.
    #[error("checkpoints {location}: {op}: {detail}")]
    Remote {
        location: String,
        op: &'static str,
        detail: String,
        /// `false` when the credentials were refused or lack access.
        retryable: bool,
    },
}

impl CheckpointError {
    /// Whether retrying the same operation later may succeed (callers retry periodic commits
    /// and give up on the rest).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CheckpointError::Io { .. }
                | CheckpointError::Remote {
                    retryable: true,
                    ..
                }
        )
    }
}

/// Where positions are kept: a local file now, the Azure SDKs' blob layout for replicas that
/// share an event hub. Implementations must be safe to share between sources: each source
/// saves only its own entries, and a save merges with what is already stored.
#[async_trait::async_trait]
pub trait CheckpointStore: Send + Sync + std::fmt::Debug {
    /// Every stored checkpoint of `source`, by partition.
    async fn load(&self, source: &str) -> Result<HashMap<String, Checkpoint>, CheckpointError>;

    /// Stores these partitions' checkpoints for `source`, keeping every other entry. Durable
    /// when it returns `Ok`.
    async fn save(
        &self,
        source: &str,
        updates: &[(String, Checkpoint)],
    ) -> Result<(), CheckpointError>;
}

/// Partition ownership that replicas claim from a shared store (the Azure SDKs' blob
/// records), so that each partition of an event hub is read by one replica at a time.
#[async_trait::async_trait]
pub trait OwnershipStore: Send + Sync + std::fmt::Debug {
    /// Every partition's ownership record of `source`, as the store has it now.
    async fn list_ownership(&self, source: &str) -> Result<Vec<Owned>, crate::blob::BlobError>;

    /// Claims, renews or (with an empty `owner`) relinquishes a partition, conditional on
    /// `version` (the record's listed or last claimed version) or on no record existing.
    async fn claim(
        &self,
        source: &str,
        partition: &str,
        owner: &str,
        version: Option<&str>,
    ) -> Result<Claim, crate::blob::BlobError>;
}
