//! One partition's snapshot: its position and the state of every query that absorbed
//! exactly the events up to that position, as one self-checking unit of bytes. A store
//! keeps each unit whole (a file renamed into place, a blob uploaded in one request), so a
//! restore sees one snapshot or another, never a mix.
//!
//! Layout (integers little-endian; `str`, `bytes`, `uvar`, `ivar` as in [`codec`]):
//!
//! ```text
//! magic    8 bytes   "HUBWSNAP"
//! version  u32       FORMAT_VERSION; another version is refused, never guessed at
//! length   u64       payload bytes
//! crc32    u32       of version, length and payload (CRC-32/ISO-HDLC)
//! payload  source str, partition str,
//!          position: offset ivar, sequence number ivar,
//!          clock: option<ivar> (the largest time a record of the partition moved the
//!            event-time clock to),
//!          pending: option<ivar> (version 3 on: the time of a record held ahead of the
//!            clock, waiting for a second record to confirm the jump; see
//!            `pipeline/engine/clock.rs`),
//!          written: ivar (wall clock, 100 ns ticks; for operators),
//!          queries: uvar, then per query: name str, fingerprint u64,
//!            position: option<offset ivar, sequence number ivar> (the last event the
//!            query absorbed; usually the partition's),
//!            routed: option<ivar> (version 2 on: the start of the newest tumbling bin
//!            whose result rows were routed, and made durable in the sinks, before this
//!            snapshot was stored), state bytes
//! ```
//!
//! Version 2 is version 3 without `pending`, version 1 version 2 without `routed`; both are
//! still read (no pending jump; no bin routed).
//!
//! Each query's state is its own length-prefixed block, so a query that was removed or
//! changed since is skipped (and rebuilt) without being decoded.
//!
//! [`codec`]: crate::codec

use crate::checkpoint::Checkpoint;
use crate::window::QueryState;

use crate::codec::{Decode, Encode, Reader, Writer};

pub const MAGIC: &[u8; 8] = b"HUBWSNAP";
/// The state format this build writes and reads. Bump it on any change to the layout or to
/// what a query's state holds; older snapshots are then refused with the way out.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format version this build still reads.
pub const OLDEST_READ: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 4;

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a hubwatch state snapshot (it does not start with \"HUBWSNAP\")")]
    NotASnapshot,
    #[error("it is empty or cut short within its header ({found} bytes)")]
    Short { found: usize },
    #[error("it holds the state of {holds}")]
    Misplaced { holds: String },
    #[error("it has state format version {found}; this hubwatch reads versions {OLDEST_READ} to {FORMAT_VERSION}")]
    Incompatible { found: u32 },
    #[error("it is truncated: {found} bytes where the header promises {expected}")]
    Truncated { found: usize, expected: u64 },
    #[error("its checksum does not match (stored {stored:08x}, computed {computed:08x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("{0}")]
    Decode(#[from] crate::codec::DecodeError),
}

/// What a snapshot says about its partition.
#[derive(Debug)]
pub struct Decoded<'a> {
    pub source: &'a str,
    pub partition: &'a str,
    pub position: Checkpoint,
    pub clock: Option<i64>,
    /// The partition's pending clock jump (see the layout).
    pub pending: Option<i64>,
    pub written: i64,
    pub queries: Vec<QueryBlob<'a>>,
}

/// One query's entry in a decoded snapshot, its state still encoded.
#[derive(Debug)]
pub struct QueryBlob<'a> {
    pub name: &'a str,
    pub fingerprint: u64,
    pub position: Option<Checkpoint>,
    /// The newest bin routed (see the layout).
    pub routed: Option<i64>,
    pub state: &'a [u8],
}

/// One query's entry in a snapshot being written.
pub struct QueryEntry<'q> {
    pub name: &'q str,
    /// What identifies the query's KQL: a state is restored only into the same query.
    pub fingerprint: u64,
    pub position: Option<&'q Checkpoint>,
    /// The newest bin whose results were routed (and synced in the sinks).
    pub routed: Option<i64>,
    pub state: &'q QueryState,
}

/// A partition's snapshot, ready for a store.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub source: std::sync::Arc<str>,
    pub partition: std::sync::Arc<str>,
    pub bytes: Vec<u8>,
}

/// The partition's event-time clock as its snapshot keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartClock {
    /// The largest time a record of the partition moved the clock to.
    pub clock: Option<i64>,
    /// A held record's time waiting to be confirmed.
    pub pending: Option<i64>,
}

/// Encodes one partition: its position, clock, and each query's entry.
pub fn encode<'q>(
    source: &str,
    partition: &str,
    position: &Checkpoint,
    clock: PartClock,
    written: i64,
    queries: impl ExactSizeIterator<Item = QueryEntry<'q>>,
) -> Vec<u8> {
    encode_version(
        FORMAT_VERSION,
        source,
        partition,
        position,
        clock,
        written,
        queries,
    )
}

/// [`encode`] in an older layout (tests of reading what an older build wrote).
fn encode_version<'q>(
    version: u32,
    source: &str,
    partition: &str,
    position: &Checkpoint,
    clock: PartClock,
    written: i64,
    queries: impl ExactSizeIterator<Item = QueryEntry<'q>>,
) -> Vec<u8> {
    let mut w = Writer::with_capacity(4096);
    for _ in 0..HEADER {
        w.put_u8(0);
    }
    w.put_str(source);
    w.put_str(partition);
    w.put_ivar(position.offset);
    w.put_ivar(position.sequence_number);
    clock.clock.encode(&mut w);
    if version >= 3 {
        clock.pending.encode(&mut w);
    }
    w.put_ivar(written);
    w.put_uvar(queries.len() as u64);
    for q in queries {
        w.put_str(q.name);
        w.put_u64(q.fingerprint);
        match q.position {
            Some(p) => {
                w.put_u8(1);
                w.put_ivar(p.offset);
                w.put_ivar(p.sequence_number);
            }
            None => w.put_u8(0),
        }
        if version >= 2 {
            q.routed.encode(&mut w);
        }
        let mut state = Writer::new();
        q.state.encode(&mut state);
        w.put_bytes(&state.into_inner());
    }
    let mut bytes = w.into_inner();
    let payload_len = (bytes.len() - HEADER) as u64;
    bytes[0..8].copy_from_slice(MAGIC);
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    bytes[12..20].copy_from_slice(&payload_len.to_le_bytes());
    let crc = checksum(&bytes[8..20], &bytes[HEADER..]);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Checks and reads a snapshot's header and directory; the queries' states stay encoded.
pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>, SnapshotError> {
    // The header keeps this layout in every format version, so that a snapshot of any
    // version is checked before its version is believed: a flipped bit reads as corrupt,
    // not as "another version".
    if bytes.len() < HEADER {
        if bytes.len() < 8 && MAGIC.starts_with(bytes) {
            return Err(SnapshotError::Short { found: bytes.len() });
        }
        if bytes.len() < 8 || &bytes[0..8] != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        return Err(SnapshotError::Short { found: bytes.len() });
    }
    if &bytes[0..8] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let stored = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(SnapshotError::Truncated {
            found: bytes.len(),
            expected: len.saturating_add(HEADER as u64),
        });
    }
    let computed = checksum(&bytes[8..20], payload);
    if computed != stored {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if !(OLDEST_READ..=FORMAT_VERSION).contains(&version) {
        return Err(SnapshotError::Incompatible { found: version });
    }
    let mut r = Reader::new(payload);
    let source = r.get_str()?;
    let partition = r.get_str()?;
    let position = Checkpoint {
        offset: r.get_ivar()?,
        sequence_number: r.get_ivar()?,
    };
    let clock = Option::<i64>::decode(&mut r)?;
    let pending = if version >= 3 {
        Option::<i64>::decode(&mut r)?
    } else {
        None
    };
    let written = r.get_ivar()?;
    let n = r.get_len(10)?;
    let mut queries = Vec::with_capacity(n);
    for _ in 0..n {
        queries.push(QueryBlob {
            name: r.get_str()?,
            fingerprint: r.get_u64()?,
            position: decode_position(&mut r)?,
            routed: if version >= 2 {
                Option::<i64>::decode(&mut r)?
            } else {
                None
            },
            state: r.get_bytes()?,
        });
    }
    r.expect_end()?;
    Ok(Decoded {
        source,
        partition,
        position,
        clock,
        pending,
        written,
        queries,
    })
}

fn decode_position(r: &mut Reader<'_>) -> Result<Option<Checkpoint>, crate::codec::DecodeError> {
    let at = r.position();
    match r.get_u8()? {
        0 => Ok(None),
        1 => Ok(Some(Checkpoint {
            offset: r.get_ivar()?,
            sequence_number: r.get_ivar()?,
        })),
        b => Err(r.invalid(at, format!("position tag {b}, not 0 or 1"))),
    }
}

/// CRC-32 of the version and length fields and the payload.
fn checksum(version_and_length: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(version_and_length);
    h.update(payload);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{QueryLimits, QueryState};

    fn state() -> QueryState {
        let schemas = crate::schema::Schemas::embedded();
        let plan = crate::kql::check::compile(
            "AmlComputeJobEvent | summarize count() by bin(TimeGenerated, 5m)",
            &schemas,
        )
        .unwrap();
        QueryState::new(std::sync::Arc::new(plan), QueryLimits::default())
    }

    fn write(version: u32, routed: Option<i64>, q: &QueryState) -> Vec<u8> {
        let at = Checkpoint {
            offset: 10,
            sequence_number: 3,
        };
        let entry = QueryEntry {
            name: "q",
            fingerprint: 7,
            position: Some(&at),
            routed,
            state: q,
        };
        let clock = PartClock {
            clock: Some(5),
            pending: Some(9),
        };
        encode_version(version, "s", "0", &at, clock, 1, std::iter::once(entry))
    }

    #[test]
    fn the_pending_clock_jump_is_kept_and_a_version_2_snapshot_still_reads_without_one() {
        let q = state();
        let now = write(FORMAT_VERSION, Some(-42), &q);
        let d = decode(&now).unwrap();
        assert_eq!((d.clock, d.pending), (Some(5), Some(9)));
        let v2 = write(2, Some(-42), &q);
        assert_eq!(
            v2.len() + 2,
            now.len(),
            "v2 lacks the option's tag and value"
        );
        let d2 = decode(&v2).unwrap();
        assert_eq!((d2.clock, d2.pending), (Some(5), None));
        assert_eq!(d2.queries[0].routed, Some(-42));
        assert_eq!(d2.queries[0].state, d.queries[0].state);
    }

    #[test]
    fn the_routed_bin_is_kept_and_a_version_1_snapshot_still_reads_without_one() {
        let q = state();
        let now = write(2, Some(-42), &q);
        let d = decode(&now).unwrap();
        assert_eq!(d.queries[0].routed, Some(-42));
        assert_eq!(d.queries[0].position.as_ref().unwrap().sequence_number, 3);

        let old = write(1, Some(-42), &q);
        assert_eq!(
            old.len() + 2,
            now.len(),
            "v1 lacks the option's tag and value"
        );
        let d1 = decode(&old).unwrap();
        assert_eq!(d1.queries[0].routed, None, "version 1 has no routed bin");
        assert_eq!(d1.queries[0].state, d.queries[0].state);
        assert_eq!(d1.clock, Some(5));

        let future = write(FORMAT_VERSION + 1, None, &q);
        assert!(matches!(
            decode(&future),
            Err(SnapshotError::Incompatible { found }) if found == FORMAT_VERSION + 1
        ));
    }
}
