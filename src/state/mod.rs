//! Durable window state: a checkpoint is the positions of a partition *plus* the window
//! state that absorbed exactly those positions, so that a restart or a partition move
//! resumes with the results of an uninterrupted run.
//!
//! How the pieces meet (the engine's side is `pipeline/commit.rs`; the bytes are
//! [`crate::codec`]'s):
//!
//! 1. The engine keeps its state per source partition and knows, for each, the last event
//!    it absorbed (`pipeline/engine.rs`). Every checkpoint interval it encodes the
//!    partitions that changed into [`Snapshot`]s (`snapshot.rs`) and hands them to a
//!    [`StateStore`].
//! 2. Only once the store says they are durable are the batches they absorbed acknowledged:
//!    so a source commits a position only when the state that absorbed it is stored. The
//!    commit point moved from "absorbed" to "absorbed and snapshotted".
//! 3. After a crash, the engine restores each partition's snapshot before the source reads
//!    it; the source resumes after the snapshot's position (a Kafka consumer after the
//!    group's commit, at or before it), and the engine skips what its state already holds.
//!    Results equal an uninterrupted run.
//!
//! - [`snapshot`]: one partition's snapshot, self-checking (magic, version, CRC).
//! - [`resume`]: where a restored partition is read from, and which are read again to
//!   rebuild state the store lacks.
//! - [`local`]: the local-directory store (one file per partition, renamed into place).
//! - [`blob`]: the blob-container store replicas share (one blob per partition, writes
//!   fenced by ETag).

pub mod blob;
pub mod local;
pub mod resume;
pub mod snapshot;

use std::sync::Arc;

use async_trait::async_trait;

pub use blob::BlobStateStore;
pub use local::LocalStateStore;
pub use resume::{Resume, Start};
pub use snapshot::{Snapshot, SnapshotError, FORMAT_VERSION, OLDEST_READ};

/// Why window state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed; trying again later may succeed.
    #[error("window state {location}: {op}: {source}")]
    Io {
        location: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A snapshot that cannot be trusted. It is neither loaded nor overwritten.
    #[error(
        "window state {location} cannot be used: {source}. Nothing was loaded or overwritten; \
         move the file aside to start this partition's windows empty (hubwatch then refills them \
         from what the source still holds), or put back a good copy"
    )]
    Corrupt {
        location: String,
        #[source]
        source: SnapshotError,
    },
    /// A snapshot of another state format (another hubwatch version).
    #[error(
        "window state {location} has state format version {found}, and this hubwatch reads \
         versions {OLDEST_READ} to {FORMAT_VERSION}. Nothing was loaded or overwritten: run the hubwatch version \
         that wrote it, or move the state directory aside to rebuild the windows from what the \
         source still holds (the event hub's retention)"
    )]
    Incompatible { location: String, found: u32 },
    /// A snapshot found under another partition's name (copied or renamed by hand).
    #[error(
        "window state {location} holds the state of {holds}; it was not loaded: move it aside \
         or back where it belongs"
    )]
    Misplaced { location: String, holds: String },
    /// A remote store (a blob container) failed or refused the request.
    #[error("window state {location}: {op}: {detail}")]
    Remote {
        location: String,
        op: &'static str,
        detail: String,
        /// `false` when the credentials were refused or lack access.
        retryable: bool,
    },
    /// Another replica wrote this partition's state after this one last read or wrote it:
    /// the partition belongs to that replica now, and this replica's state of it is stale.
    #[error(
        "window state {location} was written by another replica since this one read it: \
         the partition has moved; this replica gives it up without overwriting the newer state"
    )]
    Fenced {
        location: String,
        source_name: String,
        partition: String,
    },
}

impl StateError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StateError::Io { .. }
                | StateError::Remote {
                    retryable: true,
                    ..
                }
        )
    }

    /// The error for a snapshot that did not decode.
    pub fn unreadable(location: String, e: SnapshotError) -> StateError {
        match e {
            SnapshotError::Incompatible { found } => StateError::Incompatible { location, found },
            SnapshotError::Misplaced { holds } => StateError::Misplaced { location, holds },
            source => StateError::Corrupt { location, source },
        }
    }
}

/// Where partitions' snapshots live: a local directory now, a blob container for replicas
/// that share an event hub's partitions. Snapshots are opaque bytes to a store; each must be
/// stored whole (a reader sees the old snapshot or the new one, never a mix).
#[async_trait]
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// The partitions of `source` that have a snapshot.
    async fn partitions(&self, source: &str) -> Result<Vec<String>, StateError>;

    /// One partition's snapshot, or `None` when there is none.
    async fn load(&self, source: &str, partition: &str) -> Result<Option<Vec<u8>>, StateError>;

    /// Stores these snapshots, each replacing its partition's previous one whole. All are
    /// durable when it returns `Ok`.
    /// Shared, so that a store can hand them to another thread or task without copying the
    /// bytes.
    async fn save(&self, snapshots: Arc<[Snapshot]>) -> Result<(), StateError>;

    /// Where a partition's snapshot lives, for messages.
    fn location(&self, source: &str, partition: &str) -> String;

    /// Every snapshot of `source` with a version that changes whenever it is replaced (an
    /// ETag; a file's length and modification time), to fetch only what changed.
    async fn versions(&self, source: &str) -> Result<Vec<(String, String)>, StateError>;

    /// Reads a snapshot without taking the partition (replicas' copies for global results):
    /// unlike [`load`](Self::load), it leaves the versions a later save is fenced by alone.
    async fn peek(&self, source: &str, partition: &str) -> Result<Option<Vec<u8>>, StateError>;
}
