//! The blob state store: one blob per partition, `<prefix>/state/<source>/<partition>`
//! (names percent-encoded as in the local store), in the container that also holds the
//! checkpoints and partition ownership. Replicas share it, so a partition's state follows
//! the partition to whichever replica takes it.
//!
//! **Fencing.** Every write is conditional on the version this replica last saw of that
//! blob (`If-Match` its ETag, or `If-None-Match: *` where it saw none). A replica that lost
//! a partition while stalled — its successor restored the snapshot and has written since —
//! is refused (`412`/`409`) instead of overwriting the newer state with an older one: the
//! save fails with [`StateError::Fenced`] and the partition must be given up. An upload is
//! one `Put Blob`, replaced whole, so a reader sees the old snapshot or the new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{Snapshot, StateError, StateStore};
use crate::blob::{BlobContainer, BlobError, Condition};

/// As in the local store: letters, digits, `-` and `_` are kept, the rest encoded.
const NAME: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');
/// Snapshot uploads in flight at once.
const PARALLEL: usize = 8;

/// Per (source, partition), the last version seen of its blob (`None`: seen absent).
type Seen = HashMap<(String, String), Option<String>>;

#[derive(Debug, Clone)]
pub struct BlobStateStore {
    container: BlobContainer,
    /// `<prefix>/state/`.
    root: String,
    /// The version of each partition's blob this replica last read or wrote: `None` where
    /// it found none. Absent: never looked (the next write requires that none exists).
    seen: Arc<Mutex<Seen>>,
}

impl BlobStateStore {
    pub fn new(container: BlobContainer, prefix: &str) -> BlobStateStore {
        let prefix = prefix.trim_matches('/');
        BlobStateStore {
            container,
            root: format!("{prefix}/state/"),
            seen: Arc::default(),
        }
    }

    fn source_prefix(&self, source: &str) -> String {
        format!("{}{}/", self.root, utf8_percent_encode(source, NAME))
    }

    /// The blob of one partition's snapshot.
    pub fn name(&self, source: &str, partition: &str) -> String {
        format!(
            "{}{}",
            self.source_prefix(source),
            utf8_percent_encode(partition, NAME)
        )
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn write(&self, s: &Snapshot) -> Result<(), StateError> {
        let key = (s.source.to_string(), s.partition.to_string());
        let name = self.name(&s.source, &s.partition);
        let condition = match self.seen().get(&key) {
            Some(Some(etag)) => Condition::Matches(etag.clone()),
            _ => Condition::Absent,
        };
        match self
            .container
            .put(&name, s.bytes.clone(), &[], &condition)
            .await
        {
            Ok(props) => {
                self.seen().insert(key, Some(props.etag));
                Ok(())
            }
            Err(e) if e.is_conflict() => Err(StateError::Fenced {
                location: self.container.location(&name),
                source_name: s.source.to_string(),
                partition: s.partition.to_string(),
            }),
            Err(e) => Err(remote(self, "writing", e)),
        }
    }
}

fn remote(store: &BlobStateStore, op: &'static str, e: BlobError) -> StateError {
    StateError::Remote {
        location: store.container.url().to_string(),
        op,
        detail: e.to_string(),
        retryable: !e.is_unauthorized(),
    }
}

#[async_trait]
impl StateStore for BlobStateStore {
    async fn partitions(&self, source: &str) -> Result<Vec<String>, StateError> {
        let versions = self.versions(source).await?;
        Ok(versions.into_iter().map(|(p, _)| p).collect())
    }

    async fn load(&self, source: &str, partition: &str) -> Result<Option<Vec<u8>>, StateError> {
        let name = self.name(source, partition);
        let got = self
            .container
            .get(&name)
            .await
            .map_err(|e| remote(self, "reading", e))?;
        let key = (source.to_string(), partition.to_string());
        match got {
            Some((bytes, props)) => {
                self.seen().insert(key, Some(props.etag));
                Ok(Some(bytes))
            }
            None => {
                self.seen().insert(key, None);
                Ok(None)
            }
        }
    }

    async fn save(&self, snapshots: Arc<[Snapshot]>) -> Result<(), StateError> {
        let results: Vec<Result<(), StateError>> = stream::iter(0..snapshots.len())
            .map(|i| {
                let (store, snapshots) = (self.clone(), snapshots.clone());
                async move { store.write(&snapshots[i]).await }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        // A fenced partition matters more than a transient failure of another.
        let mut first = None;
        for r in results {
            match r {
                Ok(()) => {}
                Err(e @ StateError::Fenced { .. }) => return Err(e),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn location(&self, source: &str, partition: &str) -> String {
        self.container.location(&self.name(source, partition))
    }

    async fn versions(&self, source: &str) -> Result<Vec<(String, String)>, StateError> {
        let prefix = self.source_prefix(source);
        let items = self
            .container
            .list(&prefix)
            .await
            .map_err(|e| remote(self, "listing", e))?;
        let mut out: Vec<(String, String)> = items
            .into_iter()
            .filter_map(|i| {
                let rest = i.name.strip_prefix(&prefix)?;
                if rest.contains('/') {
                    return None;
                }
                let partition = percent_decode_str(rest).decode_utf8().ok()?.into_owned();
                Some((partition, i.props.etag))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    async fn peek(&self, source: &str, partition: &str) -> Result<Option<Vec<u8>>, StateError> {
        let got = self
            .container
            .get(&self.name(source, partition))
            .await
            .map_err(|e| remote(self, "reading", e))?;
        Ok(got.map(|(bytes, _)| bytes))
    }
}
