//! The values and types of Log Analytics columns and KQL expressions.
//!
//! Datetimes and timespans are `i64` ticks of 100 ns (Log Analytics' precision). Strings are
//! `Arc<str>` because a value read once from a record is shared by group keys, retained rows
//! and query results without copying. `Dynamic` holds any JSON value (`Identity`,
//! `Properties_d`, `split()` results).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::time;

/// The scalar types of KQL. Log Analytics' `int` and `long` are both [`Type::Long`] here (all
/// arithmetic is 64-bit); `guid` columns are strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    Bool,
    Long,
    Real,
    String,
    DateTime,
    TimeSpan,
    Dynamic,
}

impl Type {
    /// The name used in `schemas/` and in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Type::Bool => "bool",
            Type::Long => "long",
            Type::Real => "real",
            Type::String => "string",
            Type::DateTime => "datetime",
            Type::TimeSpan => "timespan",
            Type::Dynamic => "dynamic",
        }
    }

    /// Parses a type name of a table definition (`int`, `guid`, ... included).
    pub fn from_schema_name(name: &str) -> Option<Type> {
        Some(match name {
            "bool" | "boolean" => Type::Bool,
            "int" | "long" => Type::Long,
            "real" | "double" | "decimal" => Type::Real,
            "string" | "guid" => Type::String,
            "datetime" | "date" => Type::DateTime,
            "timespan" | "time" => Type::TimeSpan,
            "dynamic" => Type::Dynamic,
            _ => return None,
        })
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, Type::Long | Type::Real)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Long(i64),
    Real(f64),
    DateTime(i64),
    TimeSpan(i64),
    Str(Arc<str>),
    Dynamic(Arc<serde_json::Value>),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Long(v) => Some(v as f64),
            Value::Real(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as written into JSON output: datetimes as `YYYY-MM-DDTHH:MM:SS.fffffffZ`,
    /// timespans as KQL `[d.]hh:mm:ss[.fffffff]`, non-finite reals as null.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Long(v) => J::from(*v),
            Value::Real(v) => serde_json::Number::from_f64(*v)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::DateTime(t) => J::String(time::format_datetime(*t)),
            Value::TimeSpan(t) => J::String(time::format_timespan(*t)),
            Value::Str(s) => J::String(s.to_string()),
            Value::Dynamic(d) => (**d).clone(),
        }
    }

    /// Text form used by `tostring()`, table output and labels.
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Long(v) => v.to_string(),
            Value::Real(v) => format_real(*v),
            Value::DateTime(t) => time::format_datetime(*t),
            Value::TimeSpan(t) => time::format_timespan(*t),
            Value::Str(s) => s.to_string(),
            Value::Dynamic(d) => match &**d {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            },
        }
    }

    /// Converts a JSON value into a KQL value without a declared type (dynamic access results,
    /// unknown-category columns): numbers become long or real, strings strings, objects and
    /// arrays stay dynamic.
    pub fn from_json(v: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match v {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Long(i),
                None => n.as_f64().map(Value::Real).unwrap_or(Value::Null),
            },
            J::String(s) => Value::str(s),
            other => Value::Dynamic(Arc::new(other.clone())),
        }
    }

    /// The type this value has (`Null` has none).
    pub fn type_of(&self) -> Option<Type> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => Type::Bool,
            Value::Long(_) => Type::Long,
            Value::Real(_) => Type::Real,
            Value::DateTime(_) => Type::DateTime,
            Value::TimeSpan(_) => Type::TimeSpan,
            Value::Str(_) => Type::String,
            Value::Dynamic(_) => Type::Dynamic,
        })
    }
}

/// Reals print like Kusto does: integral values without a fraction, others shortest round-trip.
pub fn format_real(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

// Group keys need Eq + Hash. Reals compare by bits (with -0.0 folded into 0.0) so that a key
// is always equal to itself; dynamic values compare by their JSON text.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Long(a), Value::Long(b)) => a == b,
            (Value::Real(a), Value::Real(b)) => real_bits(*a) == real_bits(*b),
            (Value::DateTime(a), Value::DateTime(b)) => a == b,
            (Value::TimeSpan(a), Value::TimeSpan(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Dynamic(a), Value::Dynamic(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

fn real_bits(v: f64) -> u64 {
    if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Value::Null => {}
            Value::Bool(b) => b.hash(state),
            Value::Long(v) | Value::DateTime(v) | Value::TimeSpan(v) => v.hash(state),
            Value::Real(v) => real_bits(*v).hash(state),
            Value::Str(s) => s.hash(state),
            Value::Dynamic(d) => d.to_string().hash(state),
        }
    }
}

/// Total order used to sort result rows: nulls first, then by type, then by value.
pub fn compare_for_sort(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Long(_) | Value::Real(_) => 2,
            Value::DateTime(_) => 3,
            Value::TimeSpan(_) => 4,
            Value::Str(_) => 5,
            Value::Dynamic(_) => 6,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Long(x), Value::Long(y)) => x.cmp(y),
        (Value::DateTime(x), Value::DateTime(y)) | (Value::TimeSpan(x), Value::TimeSpan(y)) => {
            x.cmp(y)
        }
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (x, y) if rank(x) == 2 && rank(y) == 2 => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::Dynamic(x), Value::Dynamic(y)) => x.to_string().cmp(&y.to_string()),
        _ => rank(a).cmp(&rank(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reals_print_like_kusto() {
        assert_eq!(format_real(2.0), "2");
        assert_eq!(format_real(2.5), "2.5");
        assert_eq!(format_real(-0.125), "-0.125");
    }

    #[test]
    fn keys_hash_and_compare_consistently() {
        use std::collections::HashSet;
        let mut set = HashSet::new();
        set.insert(Value::Real(0.0));
        assert!(set.contains(&Value::Real(-0.0)));
        assert!(set.contains(&Value::Real(0.0)));
        assert_ne!(Value::Long(1), Value::Real(1.0));
        assert_eq!(Value::str("a"), Value::str("a"));
    }

    #[test]
    fn json_output_forms() {
        assert_eq!(Value::Long(3).to_json(), serde_json::json!(3));
        assert_eq!(Value::Real(f64::NAN).to_json(), serde_json::Value::Null);
        assert_eq!(Value::Null.to_json(), serde_json::Value::Null);
    }
}
