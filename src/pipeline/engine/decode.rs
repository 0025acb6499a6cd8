//! A partition's snapshot decoded into its state, against the queries the engine runs:
//! for restoring a partition this replica takes, and (off the engine's thread) for the
//! copies of partitions other replicas own.

use std::sync::Arc;

use super::{PartitionState, QuerySpec, Restored};
use crate::codec::Reader;
use crate::state::snapshot::{self, SnapshotError};
use crate::window::QueryState;

/// A decoded snapshot.
pub struct Decoded {
    pub part: PartitionState,
    pub restored: Restored,
    /// When the snapshot was written (ticks, the writer's wall clock).
    pub written: i64,
    /// Per query (in the engine's order), the newest bin whose results were routed, as the
    /// snapshot has it.
    pub routed: Vec<Option<i64>>,
}

/// Decodes one partition's snapshot. A query the snapshot holds no state for (by name and
/// KQL fingerprint) starts empty; `expected` (source, partition) refuses a snapshot of
/// another partition before anything is decoded.
pub fn decode_partition(
    specs: &[QuerySpec],
    fingerprints: &[u64],
    bytes: &[u8],
    expected: Option<(&str, &str)>,
) -> Result<Decoded, SnapshotError> {
    let d = snapshot::decode(bytes)?;
    if let Some((source, partition)) = expected {
        if d.source != source || d.partition != partition {
            return Err(SnapshotError::Misplaced {
                holds: format!("{}/{}", d.source, d.partition),
            });
        }
    }
    let mut queries = Vec::with_capacity(specs.len());
    let mut positions = Vec::with_capacity(specs.len());
    let mut started_empty = Vec::new();
    let mut routed = Vec::with_capacity(specs.len());
    for (spec, fp) in specs.iter().zip(fingerprints) {
        let found = d
            .queries
            .iter()
            .find(|q| q.name == &*spec.name && q.fingerprint == *fp);
        match found {
            Some(q) => {
                let mut r = Reader::new(q.state);
                let state = QueryState::decode(spec.plan.clone(), spec.limits.clone(), &mut r)?;
                r.expect_end()?;
                queries.push(state);
                positions.push(q.position.clone());
                routed.push(q.routed);
            }
            None => {
                queries.push(QueryState::new(spec.plan.clone(), spec.limits.clone()));
                positions.push(None);
                routed.push(None);
                started_empty.push(spec.name.clone());
            }
        }
    }
    let source: Arc<str> = Arc::from(d.source);
    let partition: Arc<str> = Arc::from(d.partition);
    let mut part = PartitionState {
        source: source.clone(),
        partition: partition.clone(),
        position: Some(d.position.clone()),
        positions,
        floor: None,
        clock: d.clock,
        pending: d.pending,
        queries,
        dirty: false,
    };
    part.update_floor();
    let resume_after = part.resume_after();
    Ok(Decoded {
        part,
        restored: Restored {
            source,
            partition,
            position: d.position,
            resume_after,
            started_empty,
        },
        written: d.written,
        routed,
    })
}

/// What decodes snapshots for an engine, off its thread (cheap to clone: the plans are
/// shared).
#[derive(Clone)]
pub struct Decoder {
    specs: Vec<QuerySpec>,
    fingerprints: Vec<u64>,
}

impl Decoder {
    pub(super) fn new(specs: Vec<QuerySpec>, fingerprints: Vec<u64>) -> Decoder {
        Decoder {
            specs,
            fingerprints,
        }
    }

    pub fn decode(
        &self,
        bytes: &[u8],
        expected: Option<(&str, &str)>,
    ) -> Result<Decoded, SnapshotError> {
        decode_partition(&self.specs, &self.fingerprints, bytes, expected)
    }
}
