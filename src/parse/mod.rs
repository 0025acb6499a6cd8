//! Bodies → records → Log Analytics rows.
//!
//! A body is whatever one Event Hubs event (or one line of a file) carries: an envelope
//! `{"records":[…]}`, a bare array of records (or of envelopes), a single record object, or
//! several JSON values one after another (Azure Storage export files, one record per line).
//! The shape is detected per body. Every record becomes a [`Row`] of the table its
//! `category` (or `metricName`, or activity-log category) selects, with the columns typed as
//! `schemas/` declares and filled only where a loaded query needs them.
//!
//! Bad input never panics and is never silently lost: a rejected body or record goes to the
//! [`ParseSink`] with its reason and raw bytes (the pipeline counts it and writes it to the
//! dead-letter output); a repaired quirk is counted in [`ParseStats`].

mod json;
mod record;
mod stats;

use std::sync::Arc;

use serde_json::value::RawValue;

pub use stats::{ParseStats, RejectReason, RepairKind};

use crate::schema::{Schemas, TableId};
use crate::value::Value;
use json::{Records, Top};

/// One record as a row of its table. `values[i]` is column `i` of the table definition;
/// columns no loaded query reads are left `Null`.
#[derive(Debug, Clone)]
pub struct Row {
    pub table: TableId,
    /// `TimeGenerated`, in ticks.
    pub time: i64,
    pub values: Vec<Value>,
}

/// A record whose category no table definition knows: its columns are whatever its
/// `properties` (and top-level fields) hold.
#[derive(Debug, Clone)]
pub struct UnknownRow {
    pub category: Arc<str>,
    pub time: i64,
    /// No two names equal ignoring ASCII case (a field in `properties` wins over the same
    /// name at the top level).
    pub columns: Vec<(Arc<str>, Value)>,
}

/// A body or record that was not turned into rows.
#[derive(Debug)]
pub struct Reject<'a> {
    pub reason: RejectReason,
    /// What was wrong and where (`line 1, column 17: expected value`, `record 3: a number, not an object`).
    pub detail: String,
    /// The rejected bytes: the whole body, or the one record; only the first part of a body
    /// the source cut short (then `raw.len() < bytes`).
    pub raw: &'a [u8],
    /// The size of what was rejected (body or record) as the source had it.
    pub bytes: u64,
    /// For a record's reject, its place in the body (1-based, in document order, counting
    /// every element of `records` and of bare arrays); `None` for a whole body.
    pub record: Option<usize>,
    /// This reject's place among its body's rejects (1-based). Parsing is deterministic, so
    /// the body's position and this number identify a reject across re-reads.
    pub ordinal: usize,
}

/// Where the parser delivers its results.
pub trait ParseSink {
    /// A row, with its record's bytes as they are in the body (the whole body for a body
    /// that is one record).
    fn row(&mut self, row: Row, raw: &[u8]);
    fn reject(&mut self, reject: Reject<'_>);
    /// Records of unknown categories; dropped (after counting) unless a consumer wants them.
    fn unknown(&mut self, _row: UnknownRow, _raw: &[u8]) {}
    /// Every accepted record's time, whatever its table (the event-time clock follows it).
    fn accepted(&mut self, _time: i64) {}
}

/// Which columns of which tables the loaded queries read.
#[derive(Debug, Clone)]
pub struct Needs {
    /// Per table: `None` if no query reads the table, else a flag per column.
    pub tables: Vec<Option<Vec<bool>>>,
    /// Build [`UnknownRow`]s (a forwarder wants every record).
    pub unknown: bool,
}

impl Needs {
    pub fn none(schemas: &Schemas) -> Needs {
        Needs {
            tables: vec![None; schemas.tables.len()],
            unknown: false,
        }
    }

    /// Every column of every table.
    pub fn all(schemas: &Schemas) -> Needs {
        Needs {
            tables: schemas
                .tables
                .iter()
                .map(|t| Some(vec![true; t.columns.len()]))
                .collect(),
            unknown: true,
        }
    }

    /// Marks one column as read.
    pub fn add(&mut self, schemas: &Schemas, table: TableId, column: usize) {
        let cols = self.tables[table]
            .get_or_insert_with(|| vec![false; schemas.tables[table].columns.len()]);
        cols[column] = true;
    }

    pub fn merge(&mut self, other: &Needs) {
        for (mine, theirs) in self.tables.iter_mut().zip(&other.tables) {
            if let Some(theirs) = theirs {
                let mine = mine.get_or_insert_with(|| vec![false; theirs.len()]);
                for (m, t) in mine.iter_mut().zip(theirs) {
                    *m |= *t;
                }
            }
        }
        self.unknown |= other.unknown;
    }
}

#[derive(Debug, Clone)]
pub struct ParserLimits {
    /// Bodies larger than this are rejected (`body_too_large`). Event Hubs caps events at
    /// 1 MB (Standard/Premium) or 20 MB (Dedicated); the default leaves room for the latter.
    pub max_body_bytes: usize,
}

impl Default for ParserLimits {
    fn default() -> Self {
        ParserLimits {
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Turns bodies into rows. One per pipeline task: it owns its counters.
pub struct Parser {
    schemas: Arc<Schemas>,
    plans: Vec<Option<record::TablePlan>>,
    want_unknown: bool,
    limits: ParserLimits,
    pub stats: ParseStats,
    /// Rejects of the body being parsed so far ([`Reject::ordinal`]).
    body_rejects: usize,
}

impl Parser {
    pub fn new(schemas: Arc<Schemas>, needs: &Needs, limits: ParserLimits) -> Parser {
        let plans = schemas
            .tables
            .iter()
            .zip(&needs.tables)
            .map(|(table, need)| {
                need.as_ref()
                    .map(|cols| record::TablePlan::new(table, cols))
            })
            .collect();
        let stats = ParseStats {
            records: vec![0; schemas.tables.len()],
            ..ParseStats::default()
        };
        Parser {
            schemas,
            plans,
            want_unknown: needs.unknown,
            limits,
            stats,
            body_rejects: 0,
        }
    }

    pub fn schemas(&self) -> &Arc<Schemas> {
        &self.schemas
    }

    /// Parses one body. `enqueued` is the event's enqueued time (ticks), the fallback for
    /// records without a usable time.
    pub fn parse_body(&mut self, body: &[u8], enqueued: Option<i64>, sink: &mut dyn ParseSink) {
        self.parse_event(body, None, enqueued, sink)
    }

    /// Parses one body of which the source may have kept only the first part: `cut_from` is
    /// then its real size (a file line longer than the source's `max_line_bytes`). A cut
    /// body is rejected as `body_too_large` with its real size, whatever the parser's own
    /// limit: what is missing cannot be parsed.
    pub fn parse_event(
        &mut self,
        body: &[u8],
        cut_from: Option<u64>,
        enqueued: Option<i64>,
        sink: &mut dyn ParseSink,
    ) {
        let size = cut_from.map_or(body.len() as u64, |n| n.max(body.len() as u64));
        self.body_rejects = 0;
        self.stats.bodies += 1;
        self.stats.bytes += size;
        if size > body.len() as u64 {
            let detail = format!(
                "body of {size} bytes was cut by the source to its first {} bytes (a line \
                 longer than max_line_bytes){}",
                body.len(),
                if size > self.limits.max_body_bytes as u64 {
                    format!(
                        "; larger than limits.max_body_bytes ({})",
                        self.limits.max_body_bytes
                    )
                } else {
                    String::new()
                }
            );
            return self.reject_cut(sink, detail, body, size);
        }
        if body.len() > self.limits.max_body_bytes {
            let detail = format!(
                "body of {} bytes is larger than limits.max_body_bytes ({})",
                body.len(),
                self.limits.max_body_bytes
            );
            return self.reject(sink, RejectReason::BodyTooLarge, detail, body);
        }
        let text = match std::str::from_utf8(body) {
            Ok(t) => t,
            Err(e) => {
                let detail = format!("invalid UTF-8 at byte {}", e.valid_up_to());
                return self.reject(sink, RejectReason::InvalidUtf8, detail, body);
            }
        };
        let text = text.trim_start_matches('\u{feff}').trim();
        if text.is_empty() {
            return self.reject(sink, RejectReason::EmptyBody, "empty body".into(), body);
        }
        // Read every top-level value before emitting any record, so that a body with a
        // syntax error anywhere is rejected whole rather than half-counted.
        let mut tops = Vec::with_capacity(1);
        for item in serde_json::Deserializer::from_str(text).into_iter::<Top>() {
            match item {
                Ok(top) => tops.push(top),
                Err(e) => {
                    let detail = format!(
                        "invalid JSON at line {}, column {}: {e}",
                        e.line(),
                        e.column()
                    );
                    return self.reject(sink, RejectReason::InvalidJson, detail, body);
                }
            }
        }
        let mut index = 0usize;
        for top in tops {
            self.top(top, body, enqueued, &mut index, sink);
        }
    }

    fn top(
        &mut self,
        top: Top<'_>,
        body: &[u8],
        enqueued: Option<i64>,
        index: &mut usize,
        sink: &mut dyn ParseSink,
    ) {
        match top {
            Top::Object {
                records: Some(Records::Array(records)),
                ..
            } => {
                for raw in records {
                    self.raw_record(raw, enqueued, index, sink);
                }
            }
            Top::Object {
                records: Some(Records::NotArray),
                ..
            } => self.reject(
                sink,
                RejectReason::WrongShape,
                "\"records\" is not an array".into(),
                body,
            ),
            Top::Object {
                records: Some(Records::Repeated(n)),
                ..
            } => self.reject(
                sink,
                RejectReason::DuplicateKey,
                format!(
                    "\"records\" appears {n} times in one object: which holds the records is \
                     ambiguous (JSON parsers keep only the last), so none is read"
                ),
                body,
            ),
            Top::Object {
                fields,
                records: None,
            } => {
                *index += 1;
                self.record_fields(&fields, body, enqueued, *index, sink)
            }
            Top::Array(items) => {
                for raw in items {
                    // An element may itself be an envelope (arrays of envelopes are seen from
                    // Functions batch triggers) or a record.
                    if json::kind(raw) == json::RawKind::Object {
                        if let Ok(
                            inner @ Top::Object {
                                records: Some(_), ..
                            },
                        ) = serde_json::from_str::<Top>(raw.get())
                        {
                            self.top(inner, raw.get().as_bytes(), enqueued, index, sink);
                            continue;
                        }
                    }
                    self.raw_record(raw, enqueued, index, sink);
                }
            }
            Top::Scalar => self.reject(
                sink,
                RejectReason::WrongShape,
                "a JSON scalar, not an object or array of records".into(),
                body,
            ),
        }
    }

    fn raw_record(
        &mut self,
        raw: &RawValue,
        enqueued: Option<i64>,
        index: &mut usize,
        sink: &mut dyn ParseSink,
    ) {
        *index += 1;
        let kind = json::kind(raw);
        if kind != json::RawKind::Object {
            let detail = format!("record {}: {:?}, not an object", index, kind).to_lowercase();
            return self.reject_record(
                sink,
                RejectReason::RecordNotObject,
                detail,
                raw.get().as_bytes(),
                *index,
            );
        }
        match serde_json::from_str::<json::Fields>(raw.get()) {
            Ok(fields) => self.record_fields(&fields, raw.get().as_bytes(), enqueued, *index, sink),
            // Unreachable in practice: the raw value was already validated as an object.
            Err(e) => self.reject_record(
                sink,
                RejectReason::InvalidJson,
                format!("record {index}: {e}"),
                raw.get().as_bytes(),
                *index,
            ),
        }
    }

    /// Rejects a whole body (or a whole envelope of an array of them).
    fn reject(
        &mut self,
        sink: &mut dyn ParseSink,
        reason: RejectReason,
        detail: String,
        raw: &[u8],
    ) {
        self.emit(sink, reason, detail, raw, raw.len() as u64, None);
    }

    /// Rejects a body the source cut short: `raw` is its first part, `bytes` its real size.
    fn reject_cut(&mut self, sink: &mut dyn ParseSink, detail: String, raw: &[u8], bytes: u64) {
        self.emit(sink, RejectReason::BodyTooLarge, detail, raw, bytes, None);
    }

    /// Rejects one record (`index`, 1-based) of a body; the body's other records still count.
    fn reject_record(
        &mut self,
        sink: &mut dyn ParseSink,
        reason: RejectReason,
        detail: String,
        raw: &[u8],
        index: usize,
    ) {
        self.emit(sink, reason, detail, raw, raw.len() as u64, Some(index));
    }

    /// Counts a reject and hands it to the sink, numbered within its body.
    fn emit(
        &mut self,
        sink: &mut dyn ParseSink,
        reason: RejectReason,
        detail: String,
        raw: &[u8],
        bytes: u64,
        record: Option<usize>,
    ) {
        self.stats.reject(reason);
        self.body_rejects += 1;
        sink.reject(Reject {
            reason,
            detail,
            raw,
            bytes,
            record,
            ordinal: self.body_rejects,
        });
    }
}

#[cfg(test)]
mod tests;
