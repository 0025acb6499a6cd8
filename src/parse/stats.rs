//! What the parser saw: rejects by reason, repairs by kind, records per table. Counted in
//! plain integers on the hot path and added to the Prometheus counters once per batch.

/// Why a body or a record was not turned into rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The body is not valid UTF-8.
    InvalidUtf8,
    /// The body is not valid JSON (or is truncated).
    InvalidJson,
    /// The body is larger than `limits.max_body_bytes`.
    BodyTooLarge,
    /// The body is empty or only white space.
    EmptyBody,
    /// Valid JSON of a shape that holds no records (`7`, `{"records": 5}`, `"text"`).
    WrongShape,
    /// An element of `records` that is not an object.
    RecordNotObject,
    /// A record with no parseable time and no enqueued time to fall back to.
    NoTime,
    /// An envelope with `records` more than once (`{"records":[…],"records":[…]}`): which
    /// array holds the body's records is ambiguous, so none is guessed.
    DuplicateKey,
}

impl RejectReason {
    pub const ALL: [RejectReason; 8] = [
        RejectReason::InvalidUtf8,
        RejectReason::InvalidJson,
        RejectReason::BodyTooLarge,
        RejectReason::EmptyBody,
        RejectReason::WrongShape,
        RejectReason::RecordNotObject,
        RejectReason::NoTime,
        RejectReason::DuplicateKey,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::BodyTooLarge => "body_too_large",
            RejectReason::EmptyBody => "empty_body",
            RejectReason::WrongShape => "wrong_shape",
            RejectReason::RecordNotObject => "record_not_object",
            RejectReason::NoTime => "no_time",
            RejectReason::DuplicateKey => "duplicate_key",
        }
    }

    /// Whether the whole body was rejected (as opposed to one record of it).
    pub fn is_body(self) -> bool {
        !matches!(self, RejectReason::RecordNotObject | RejectReason::NoTime)
    }
}

/// A quirk of real data that the parser repaired (the record was kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepairKind {
    /// `properties` was a JSON-encoded string and was decoded.
    PropertiesString,
    /// `properties` was pseudo-JSON with single quotes and was decoded after swapping quotes.
    PropertiesSingleQuotes,
    /// `properties` could not be decoded at all; its columns are null.
    PropertiesUnreadable,
    /// The time came from `timeStamp`, `TimeGenerated`, `EventTimeString`, … instead of `time`.
    TimeAlternateField,
    /// The time was in the US form `MM/DD/YYYY HH:MM:SS`.
    TimeUsFormat,
    /// The time had no zone and was taken as UTC.
    TimeNoZone,
    /// The record had no usable time; the event's enqueued time was used.
    TimeFromEnqueued,
    /// A number arrived as a string in a numeric column.
    NumberFromString,
    /// A value could not be converted to its column's type and became null.
    UncoercibleValue,
    /// An empty key (`"": …`) was dropped.
    EmptyKey,
    /// A record held a key it was read by more than once (ignoring ASCII case), with
    /// different values: the last one was used. Counted once per record.
    DuplicateKey,
}

impl RepairKind {
    pub const ALL: [RepairKind; 11] = [
        RepairKind::PropertiesString,
        RepairKind::PropertiesSingleQuotes,
        RepairKind::PropertiesUnreadable,
        RepairKind::TimeAlternateField,
        RepairKind::TimeUsFormat,
        RepairKind::TimeNoZone,
        RepairKind::TimeFromEnqueued,
        RepairKind::NumberFromString,
        RepairKind::UncoercibleValue,
        RepairKind::EmptyKey,
        RepairKind::DuplicateKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RepairKind::PropertiesString => "properties_string",
            RepairKind::PropertiesSingleQuotes => "properties_single_quotes",
            RepairKind::PropertiesUnreadable => "properties_unreadable",
            RepairKind::TimeAlternateField => "time_alternate_field",
            RepairKind::TimeUsFormat => "time_us_format",
            RepairKind::TimeNoZone => "time_no_zone",
            RepairKind::TimeFromEnqueued => "time_from_enqueued",
            RepairKind::NumberFromString => "number_from_string",
            RepairKind::UncoercibleValue => "uncoercible_value",
            RepairKind::EmptyKey => "empty_key",
            RepairKind::DuplicateKey => "duplicate_key",
        }
    }
}

/// Counts since the last [`ParseStats::take`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParseStats {
    pub bodies: u64,
    pub bytes: u64,
    pub rejected: [u64; RejectReason::ALL.len()],
    pub repairs: [u64; RepairKind::ALL.len()],
    /// Accepted records per table id.
    pub records: Vec<u64>,
    /// Accepted records of categories no table definition knows.
    pub unknown_records: u64,
}

impl ParseStats {
    pub fn reject(&mut self, r: RejectReason) {
        self.rejected[r as usize] += 1;
    }

    pub fn repair(&mut self, k: RepairKind) {
        self.repairs[k as usize] += 1;
    }

    pub fn rejected(&self, r: RejectReason) -> u64 {
        self.rejected[r as usize]
    }

    pub fn repaired(&self, k: RepairKind) -> u64 {
        self.repairs[k as usize]
    }

    pub fn record(&mut self, table: usize) {
        if self.records.len() <= table {
            self.records.resize(table + 1, 0);
        }
        self.records[table] += 1;
    }

    pub fn records_total(&self) -> u64 {
        self.records.iter().sum::<u64>() + self.unknown_records
    }

    /// Adds another set of counts to these.
    pub fn add(&mut self, other: &ParseStats) {
        self.bodies += other.bodies;
        self.bytes += other.bytes;
        for (a, b) in self.rejected.iter_mut().zip(&other.rejected) {
            *a += b;
        }
        for (a, b) in self.repairs.iter_mut().zip(&other.repairs) {
            *a += b;
        }
        if self.records.len() < other.records.len() {
            self.records.resize(other.records.len(), 0);
        }
        for (a, b) in self.records.iter_mut().zip(&other.records) {
            *a += b;
        }
        self.unknown_records += other.unknown_records;
    }

    /// Returns the counts and starts again from zero.
    pub fn take(&mut self) -> ParseStats {
        std::mem::take(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_order_matches_all() {
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, k) in RepairKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }
}
