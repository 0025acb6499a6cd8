//! Checkpoints and partition ownership in a blob container, in the layout and metadata the
//! Azure SDKs' event processors use, so that hubwatch and the official processors (and
//! tools that read the layout, such as KEDA's Event Hubs scaler) understand each other:
//!
//! ```text
//! <namespace>/<event hub>/<consumer group>/checkpoint/<partition>   offset, sequencenumber
//! <namespace>/<event hub>/<consumer group>/ownership/<partition>    ownerid
//! ```
//!
//! Blobs are empty; everything is in their metadata. The three prefix segments are
//! lowercased, as the .NET, Python and JavaScript SDKs write them (Go and Java keep the
//! case; their users spell the names in lowercase to share state). Checkpoints are
//! last-writer-wins; ownership claims are conditional on the version the claimer listed
//! (`If-Match`), or on no blob existing (`If-None-Match: *`), so of two replicas claiming
//! the same partition exactly one wins. A source that is not an event hub (a file) keeps
//! its checkpoints under hubwatch's own prefix, in the same metadata.

use std::collections::HashMap;

use async_trait::async_trait;
use futures_util::future::join_all;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{Checkpoint, CheckpointError, CheckpointStore, OwnershipStore};
use crate::blob::{BlobContainer, BlobError, BlobItem, BlobProps, Condition};

const NAME: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// The metadata keys (lowercase, as the storage service requires).
pub const OFFSET: &str = "offset";
pub const SEQUENCE_NUMBER: &str = "sequencenumber";
pub const OWNER_ID: &str = "ownerid";

/// A partition's ownership as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub partition: String,
    /// The owner's id; empty when relinquished.
    pub owner: String,
    /// The blob's version (the next claim's condition) and last change (the heartbeat,
    /// on the service's clock).
    pub props: BlobProps,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Claimed (or renewed): the new version.
    Won(BlobProps),
    /// Another replica changed the blob since it was listed.
    Lost,
}

#[derive(Debug, Clone)]
pub struct BlobCheckpointStore {
    container: BlobContainer,
    /// Per source name, the prefix of its `checkpoint/` and `ownership/` blobs.
    prefixes: HashMap<String, String>,
    /// The prefix of sources not listed (`<prefix>/checkpoint/<source>/…`).
    own: String,
}

impl BlobCheckpointStore {
    /// `event_hubs` maps each event-hub source to its namespace, hub and consumer group;
    /// other sources' checkpoints go under `own_prefix`.
    pub fn new(
        container: BlobContainer,
        event_hubs: &[(String, String, String, String)],
        own_prefix: &str,
    ) -> BlobCheckpointStore {
        let prefixes = event_hubs
            .iter()
            .map(|(source, namespace, hub, group)| {
                (source.clone(), sdk_prefix(namespace, hub, group))
            })
            .collect();
        BlobCheckpointStore {
            container,
            prefixes,
            own: own_prefix.trim_matches('/').to_string(),
        }
    }

    fn prefix(&self, source: &str) -> String {
        match self.prefixes.get(source) {
            Some(p) => p.clone(),
            None => format!("{}/{}", self.own, utf8_percent_encode(source, NAME)),
        }
    }

    fn checkpoints(&self, source: &str) -> String {
        format!("{}/checkpoint/", self.prefix(source))
    }

    fn ownerships(&self, source: &str) -> String {
        format!("{}/ownership/", self.prefix(source))
    }

    fn checkpoint_error(&self, op: &'static str, e: BlobError) -> CheckpointError {
        CheckpointError::Remote {
            location: self.container.url().to_string(),
            op,
            detail: e.to_string(),
            retryable: !e.is_unauthorized(),
        }
    }

    /// The blob a partition's checkpoint lives in, for messages.
    pub fn checkpoint_location(&self, source: &str, partition: &str) -> String {
        self.container
            .location(&format!("{}{partition}", self.checkpoints(source)))
    }
}

/// `<namespace>/<hub>/<group>`, lowercased as the .NET, Python and JavaScript SDKs write it.
pub fn sdk_prefix(namespace: &str, hub: &str, group: &str) -> String {
    format!("{namespace}/{hub}/{group}").to_lowercase()
}

/// A checkpoint from its metadata. The sequence number decides where reading resumes; an
/// offset that is not a number (geo-replicated namespaces write other forms) is kept as −1.
fn checkpoint_of(item: &BlobItem) -> Option<Checkpoint> {
    let sequence_number = item.meta(SEQUENCE_NUMBER)?.trim().parse().ok()?;
    let offset = item
        .meta(OFFSET)
        .and_then(|o| o.trim().parse().ok())
        .unwrap_or(-1);
    Some(Checkpoint {
        offset,
        sequence_number,
    })
}

#[async_trait]
impl OwnershipStore for BlobCheckpointStore {
    /// Every partition's ownership of `source`, as the service has it now.
    async fn list_ownership(&self, source: &str) -> Result<Vec<Owned>, BlobError> {
        let prefix = self.ownerships(source);
        let items = self.container.list(&prefix).await?;
        Ok(items
            .into_iter()
            .filter_map(|item| {
                let partition = item.name.strip_prefix(&prefix)?.to_string();
                let owner = item.meta(OWNER_ID).unwrap_or_default().to_string();
                Some(Owned {
                    partition,
                    owner,
                    props: item.props,
                })
            })
            .collect())
    }

    /// Claims (or renews, or with an empty `owner` relinquishes) a partition: conditional
    /// on `version` (the listed or last claimed ETag), or on no ownership blob existing.
    async fn claim(
        &self,
        source: &str,
        partition: &str,
        owner: &str,
        version: Option<&str>,
    ) -> Result<Claim, BlobError> {
        let name = format!("{}{partition}", self.ownerships(source));
        let metadata = [(OWNER_ID, owner)];
        let result = match version {
            Some(etag) => {
                let condition = Condition::Matches(etag.to_string());
                match self
                    .container
                    .set_metadata(&name, &metadata, &condition)
                    .await
                {
                    // Deleted under us: as the .NET processor does, claim it afresh.
                    Err(e) if e.is_not_found() => {
                        self.container
                            .put(&name, Vec::new(), &metadata, &Condition::Absent)
                            .await
                    }
                    r => r,
                }
            }
            None => {
                self.container
                    .put(&name, Vec::new(), &metadata, &Condition::Absent)
                    .await
            }
        };
        match result {
            Ok(props) => Ok(Claim::Won(props)),
            Err(e) if e.is_conflict() || e.is_not_found() => Ok(Claim::Lost),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl CheckpointStore for BlobCheckpointStore {
    async fn load(&self, source: &str) -> Result<HashMap<String, Checkpoint>, CheckpointError> {
        let prefix = self.checkpoints(source);
        let items = self
            .container
            .list(&prefix)
            .await
            .map_err(|e| self.checkpoint_error("listing", e))?;
        let mut out = HashMap::new();
        for item in &items {
            let Some(partition) = item.name.strip_prefix(&prefix) else {
                continue;
            };
            match checkpoint_of(item) {
                Some(cp) => {
                    out.insert(partition.to_string(), cp);
                }
                // .NET writes "" as a placeholder; such a blob holds no position yet.
                None => tracing::warn!(blob = %self.container.location(&item.name),
                    "a checkpoint blob without a numeric sequencenumber; that partition starts as if it had none"),
            }
        }
        Ok(out)
    }

    async fn save(
        &self,
        source: &str,
        updates: &[(String, Checkpoint)],
    ) -> Result<(), CheckpointError> {
        let prefix = self.checkpoints(source);
        let writes = updates.iter().map(|(partition, cp)| {
            let name = format!("{prefix}{partition}");
            let (offset, seq) = (cp.offset.to_string(), cp.sequence_number.to_string());
            async move {
                // Both keys always: setting metadata replaces all of it.
                let metadata = [(OFFSET, offset.as_str()), (SEQUENCE_NUMBER, seq.as_str())];
                match self
                    .container
                    .set_metadata(&name, &metadata, &Condition::None)
                    .await
                {
                    Err(e) if e.is_not_found() => self
                        .container
                        .put(&name, Vec::new(), &metadata, &Condition::None)
                        .await
                        .map(|_| ()),
                    r => r.map(|_| ()),
                }
            }
        });
        for r in join_all(writes).await {
            r.map_err(|e| self.checkpoint_error("writing", e))?;
        }
        Ok(())
    }
}
