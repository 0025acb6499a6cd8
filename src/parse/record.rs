//! One record → one row: the record's time, its table, and the typed values of the columns
//! a query reads, looked up as `schemas/` says (case-insensitively in `properties`, then at
//! the top level, unless a column names its own paths or is derived).

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::hash_map::{Entry, HashMap};
use std::sync::Arc;

use serde_json::value::RawValue;

use super::json::{self, Fields, RawKind};
use super::{ParseSink, Parser, RejectReason, RepairKind, Row, UnknownRow};
use crate::schema::{ColumnSource, Derive, Table};
use crate::time::{self, TimeForm};
use crate::value::{Type, Value};

/// The columns of one table that the loaded queries read, resolved once at start-up.
#[derive(Debug)]
pub(super) struct TablePlan {
    width: usize,
    columns: Vec<PlannedColumn>,
    /// Whether any planned column may come from `properties` (else it is never decoded).
    reads_properties: bool,
}

#[derive(Debug)]
struct PlannedColumn {
    index: usize,
    ty: Type,
    source: ColumnSource,
    /// The column name, for by-name lookups.
    name: Arc<str>,
}

impl TablePlan {
    pub(super) fn new(table: &Table, needed: &[bool]) -> TablePlan {
        let columns: Vec<PlannedColumn> = table
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| needed.get(*i).copied().unwrap_or(false))
            .map(|(index, c)| PlannedColumn {
                index,
                ty: c.ty,
                source: c.source.clone(),
                name: c.name.clone(),
            })
            .collect();
        let reads_properties = columns.iter().any(|c| match &c.source {
            ColumnSource::ByName => true,
            ColumnSource::Paths(paths) => paths
                .iter()
                .any(|p| p.first().is_some_and(|s| s == "properties")),
            ColumnSource::Derived(_) => false,
        });
        TablePlan {
            width: table.columns.len(),
            columns,
            reads_properties,
        }
    }
}

/// Fields that may carry the record's time, in the order they are tried.
const TIME_FIELDS: [&str; 5] = [
    "time",
    "timeStamp",
    "TimeGenerated",
    "EventTimeString",
    "EventTimestamp",
];

impl Parser {
    /// One record: a row, an unknown-category row, or a reject. A record in which a key
    /// that was read occurs twice with different values counts one `duplicate_key` repair
    /// (the last value was taken, see [`Fields::get_ci`]).
    pub(super) fn record_fields(
        &mut self,
        fields: &Fields<'_>,
        raw: &[u8],
        enqueued: Option<i64>,
        index: usize,
        sink: &mut dyn ParseSink,
    ) {
        if self.record(fields, raw, enqueued, index, sink) && fields.conflict.get() {
            self.stats.repair(RepairKind::DuplicateKey);
        }
    }

    /// [`record_fields`](Self::record_fields); `false` when the record was rejected.
    fn record(
        &mut self,
        fields: &Fields<'_>,
        raw: &[u8],
        enqueued: Option<i64>,
        index: usize,
        sink: &mut dyn ParseSink,
    ) -> bool {
        if fields.empty_keys > 0 {
            self.stats.repairs[RepairKind::EmptyKey as usize] += fields.empty_keys as u64;
        }
        let time = match self.record_time(fields) {
            Some(t) => t,
            None => match enqueued {
                Some(t) => {
                    self.stats.repair(RepairKind::TimeFromEnqueued);
                    t
                }
                None => {
                    let detail = format!(
                        "record {index}: no parseable time (looked for {}) and no enqueued time to fall back to",
                        TIME_FIELDS.join(", ")
                    );
                    self.reject_record(sink, RejectReason::NoTime, detail, raw, index);
                    return false;
                }
            },
        };
        sink.accepted(time);
        let table = self.route(fields);
        let Some(table) = table else {
            self.stats.unknown_records += 1;
            if self.want_unknown {
                sink.unknown(unknown_row(fields, time), raw);
            }
            return true;
        };
        self.stats.record(table);
        let Some(plan) = &self.plans[table] else {
            return true;
        };

        // `properties` may be an object, a JSON-encoded string, or (rarely) single-quoted
        // pseudo-JSON; the decoded text must outlive the borrowed fields that point into it.
        let decoded: String;
        let mut props: Option<Fields<'_>> = None;
        if plan.reads_properties {
            if let Some(p) = fields.get_ci("properties") {
                match json::kind(p) {
                    RawKind::Object => props = serde_json::from_str(p.get()).ok(),
                    RawKind::String => {
                        let text = json::raw_str(p).map(Cow::into_owned).unwrap_or_default();
                        decoded = if serde_json::from_str::<Fields>(&text).is_ok() {
                            self.stats.repair(RepairKind::PropertiesString);
                            text
                        } else if text.trim_start().starts_with('{') && text.contains('\'') {
                            self.stats.repair(RepairKind::PropertiesSingleQuotes);
                            text.replace('\'', "\"")
                        } else {
                            text
                        };
                        props = serde_json::from_str(&decoded).ok();
                        if props.is_none() {
                            self.stats.repair(RepairKind::PropertiesUnreadable);
                        }
                    }
                    RawKind::Null => {}
                    _ => self.stats.repair(RepairKind::PropertiesUnreadable),
                }
            }
        }

        let mut values = vec![Value::Null; plan.width];
        let resource_id = fields.get_ci("resourceId").and_then(json::raw_str);
        for col in &plan.columns {
            let value = match &col.source {
                ColumnSource::Derived(d) => derive(
                    *d,
                    time,
                    &self.schemas.tables[table],
                    fields,
                    resource_id.as_deref(),
                ),
                ColumnSource::ByName => {
                    let raw = props
                        .as_ref()
                        .and_then(|p| p.get_ci(&col.name))
                        .or_else(|| fields.get_ci(&col.name));
                    raw.map(|r| coerce(r, col.ty, &mut self.stats, &fields.conflict))
                        .unwrap_or(Value::Null)
                }
                ColumnSource::Paths(paths) => paths
                    .iter()
                    .find_map(|path| lookup_path(path, fields, props.as_ref()))
                    .map(|raw| coerce(raw, col.ty, &mut self.stats, &fields.conflict))
                    .unwrap_or(Value::Null),
            };
            values[col.index] = value;
        }
        if let Some(p) = &props {
            fields.absorb_conflict(p);
        }
        sink.row(
            Row {
                table,
                time,
                values,
            },
            raw,
        );
        true
    }

    /// The record's time, from the first time field that parses.
    fn record_time(&mut self, fields: &Fields<'_>) -> Option<i64> {
        for (i, name) in TIME_FIELDS.iter().enumerate() {
            let Some(raw) = fields.get_ci(name) else {
                continue;
            };
            let Some(text) = json::raw_str(raw) else {
                continue;
            };
            let Some((ticks, form)) = time::parse_datetime(&text) else {
                continue;
            };
            if i > 0 {
                self.stats.repair(RepairKind::TimeAlternateField);
            }
            match form {
                TimeForm::UsFormat => self.stats.repair(RepairKind::TimeUsFormat),
                TimeForm::NoZone => self.stats.repair(RepairKind::TimeNoZone),
                TimeForm::Rfc3339 | TimeForm::DateOnly => {}
            }
            return Some(ticks);
        }
        None
    }

    /// The table of a record: platform metrics by `metricName`, logs by `category`, and rows
    /// of a Log Analytics data export by `Type`.
    fn route(&self, fields: &Fields<'_>) -> Option<usize> {
        if fields.get_ci("metricName").is_some() {
            return self.schemas.metric_table();
        }
        if let Some(cat) = fields.get_ci("category").and_then(json::raw_str) {
            return self.schemas.table_for_category(&cat);
        }
        let ty = fields.get_ci("Type").and_then(json::raw_str)?;
        self.schemas.table(&ty)
    }
}

/// Follows a dot path (lower-cased segments) from the record's top level; `properties` as the
/// first segment means the decoded properties.
fn lookup_path<'a>(
    path: &[String],
    fields: &Fields<'a>,
    props: Option<&Fields<'a>>,
) -> Option<&'a RawValue> {
    let (first, rest) = path.split_first()?;
    if first == "properties" {
        return match rest.split_first() {
            None => fields.get_ci("properties"),
            Some((second, tail)) => descend(props?.get_ci(second)?, tail, fields),
        };
    }
    descend(fields.get_ci(first)?, rest, fields)
}

/// Follows `rest` into `current`; a repeated key met on the way is noted on `record`.
fn descend<'a>(
    current: &'a RawValue,
    rest: &[String],
    record: &Fields<'_>,
) -> Option<&'a RawValue> {
    if rest.is_empty() {
        return Some(current);
    }
    if json::kind(current) != RawKind::Object {
        return None;
    }
    let inner: Fields<'a> = serde_json::from_str(current.get()).ok()?;
    // Claim names contain dots (`http://schemas.xmlsoap.org/.../upn`): the rest of the path
    // as one key is tried before splitting it.
    if rest.len() > 1 {
        if let Some(v) = inner.get_ci(&rest.join(".")) {
            record.absorb_conflict(&inner);
            return Some(v);
        }
    }
    let next = inner.get_ci(&rest[0]);
    record.absorb_conflict(&inner);
    descend(next?, &rest[1..], record)
}

/// Converts a raw JSON value to a column's type, leniently: numbers in strings become
/// numbers in numeric columns, numbers become their text in string columns. A `dynamic`
/// value with a repeated key keeps its last value and sets `conflict`.
pub(crate) fn coerce(
    raw: &RawValue,
    ty: Type,
    stats: &mut super::ParseStats,
    conflict: &Cell<bool>,
) -> Value {
    let kind = json::kind(raw);
    if kind == RawKind::Null {
        return Value::Null;
    }
    let text = raw.get();
    let value = match ty {
        Type::String => match kind {
            RawKind::String => json::raw_str(raw).map(|s| Value::Str(Arc::from(&*s))),
            _ => Some(Value::Str(Arc::from(text))),
        },
        Type::Long => match kind {
            RawKind::Number => number_to_long(text),
            RawKind::String => {
                let s = json::raw_str(raw);
                let v = s.as_deref().and_then(|s| number_to_long(s.trim()));
                if v.is_some() {
                    stats.repair(RepairKind::NumberFromString);
                }
                v
            }
            RawKind::Bool => Some(Value::Long((text == "true") as i64)),
            _ => None,
        },
        Type::Real => match kind {
            RawKind::Number => text.parse::<f64>().ok().map(Value::Real),
            RawKind::String => {
                let v = json::raw_str(raw)
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .map(Value::Real);
                if v.is_some() {
                    stats.repair(RepairKind::NumberFromString);
                }
                v
            }
            _ => None,
        },
        Type::Bool => match kind {
            RawKind::Bool => Some(Value::Bool(text == "true")),
            RawKind::Number => text.parse::<f64>().ok().map(|v| Value::Bool(v != 0.0)),
            RawKind::String => match json::raw_str(raw).as_deref().map(str::trim) {
                Some(s) if s.eq_ignore_ascii_case("true") => Some(Value::Bool(true)),
                Some(s) if s.eq_ignore_ascii_case("false") => Some(Value::Bool(false)),
                _ => None,
            },
            _ => None,
        },
        Type::DateTime => match kind {
            RawKind::String => json::raw_str(raw)
                .and_then(|s| time::parse_datetime(&s))
                .map(|(t, _)| Value::DateTime(t)),
            _ => None,
        },
        Type::TimeSpan => match kind {
            RawKind::String => json::raw_str(raw)
                .and_then(|s| time::parse_timespan(&s))
                .map(Value::TimeSpan),
            _ => None,
        },
        Type::Dynamic => {
            let v = json::value(text, conflict);
            // A JSON-encoded object or array in a string (`"properties": "{…}"`) is decoded.
            let v = match v {
                Some(serde_json::Value::String(s)) if s.trim_start().starts_with(['{', '[']) => {
                    Some(json::value(&s, conflict).unwrap_or(serde_json::Value::String(s)))
                }
                other => other,
            };
            v.map(|v| Value::Dynamic(Arc::new(v)))
        }
    };
    value.unwrap_or_else(|| {
        stats.repair(RepairKind::UncoercibleValue);
        Value::Null
    })
}

/// `4`, `4.0`, `"4"` → 4; `4.5` is not a whole number and does not fit a long column.
fn number_to_long(s: &str) -> Option<Value> {
    if let Ok(v) = s.parse::<i64>() {
        return Some(Value::Long(v));
    }
    let f = s.parse::<f64>().ok()?;
    (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(Value::Long(f as i64))
}

fn derive(
    d: Derive,
    time: i64,
    table: &Table,
    fields: &Fields<'_>,
    resource_id: Option<&str>,
) -> Value {
    let segment_after = |name: &str| -> Option<Value> {
        let id = resource_id?;
        let mut parts = id.split('/');
        parts.find(|p| p.eq_ignore_ascii_case(name))?;
        parts.next().filter(|s| !s.is_empty()).map(Value::str)
    };
    match d {
        Derive::Time => Value::DateTime(time),
        Derive::Table => Value::Str(table.name.clone()),
        Derive::ResourceId => resource_id
            .map(|r| Value::str(&r.to_ascii_lowercase()))
            .unwrap_or_default(),
        Derive::ResourceIdRaw => resource_id.map(Value::str).unwrap_or_default(),
        Derive::SubscriptionId => segment_after("subscriptions")
            .map(|v| Value::str(&v.to_text().to_ascii_lowercase()))
            .unwrap_or_default(),
        Derive::ResourceGroup => segment_after("resourcegroups")
            .map(|v| Value::str(&v.to_text().to_ascii_uppercase()))
            .unwrap_or_default(),
        Derive::ResourceProvider => segment_after("providers")
            .map(|v| Value::str(&v.to_text().to_ascii_uppercase()))
            .unwrap_or_default(),
        Derive::ResourceName => resource_id
            .and_then(|r| r.trim_end_matches('/').rsplit('/').next())
            .filter(|s| !s.is_empty())
            .map(|s| Value::str(&s.to_ascii_uppercase()))
            .unwrap_or_default(),
        Derive::Category => fields
            .get_ci("category")
            .and_then(json::raw_str)
            .map(|s| Value::str(&s))
            .unwrap_or_default(),
        Derive::TenantId => fields
            .get_ci("tenantId")
            .and_then(json::raw_str)
            .map(|s| Value::str(&s))
            .unwrap_or_default(),
    }
}

/// The columns of a record of an unknown category: its top-level fields and its properties.
/// One column per name (ignoring ASCII case): a name in `properties` wins over the same name
/// at the top level, as for known tables' columns; a name repeated within one of the two
/// keeps its last value, as [`Fields::get_ci`] reads it, and different values set the
/// record's conflict.
fn unknown_row(fields: &Fields<'_>, time: i64) -> UnknownRow {
    let category: Arc<str> = fields
        .get_ci("category")
        .and_then(json::raw_str)
        .map(|s| Arc::from(&*s))
        .unwrap_or_else(|| Arc::from(""));
    let mut columns: Vec<(Arc<str>, Value)> = Vec::new();
    // Lower-cased name → (index in `columns`, from `properties`): a map, not a scan, so
    // that an object of a million keys costs a million lookups, not a million squared.
    let mut seen: HashMap<String, (usize, bool)> = HashMap::new();
    let mut push = |name: &str, raw: &RawValue, in_props: bool| {
        let v = json::value(raw.get(), &fields.conflict)
            .map(|v| Value::from_json(&v))
            .unwrap_or_default();
        match seen.entry(name.to_ascii_lowercase()) {
            Entry::Occupied(mut at) => {
                let (i, was_in_props) = *at.get();
                let old = &mut columns[i].1;
                if in_props == was_in_props {
                    if *old != v {
                        fields.conflict.set(true);
                    }
                    *old = v;
                } else if in_props {
                    *old = v;
                    at.insert((i, true));
                }
            }
            Entry::Vacant(at) => {
                at.insert((columns.len(), in_props));
                columns.push((Arc::from(name), v));
            }
        }
    };
    for (k, v) in &fields.items {
        if k.0.eq_ignore_ascii_case("properties") {
            let text = match json::kind(v) {
                RawKind::String => json::raw_str(v).map(Cow::into_owned),
                RawKind::Object => Some(v.get().to_owned()),
                _ => None,
            };
            if let Some(props) = text
                .as_deref()
                .and_then(|t| serde_json::from_str::<Fields>(t).ok())
            {
                for (pk, pv) in &props.items {
                    push(&pk.0, pv, true);
                }
            }
        } else {
            push(&k.0, v, false);
        }
    }
    UnknownRow {
        category,
        time,
        columns,
    }
}
