//! The lines sinks receive: the Log Analytics row as a JSON object in the route's column
//! order, and where it came from.

use std::io::Write;

use super::Origin;
use crate::kql::plan::OutColumn;
use crate::value::Value;

/// A route's column names as JSON keys (`"Name":`), escaped once.
pub fn keys(columns: &[OutColumn]) -> Vec<Vec<u8>> {
    columns
        .iter()
        .map(|c| {
            let mut k = Vec::with_capacity(c.name.len() + 3);
            push_str(&mut k, &c.name);
            k.push(b':');
            k
        })
        .collect()
}

/// `{"TimeGenerated":"…",…,"_hubwatch":{"route":…,"source":…,"partition":…,"offset":…,
/// "sequence_number":…,"enqueued_time":…}}` (no enqueued time for a file), or for a
/// result row `"_hubwatch":{"route":…,"query":…,"bin":"…"}`. Written
/// straight into `out` — no intermediate JSON values: a route may forward every record.
/// Null columns are left out unless `nulls` (a Log Analytics row of a diagnostic table is
/// mostly nulls: leaving them out halves the bytes a SIEM stores and this costs).
pub fn row_json(
    out: &mut Vec<u8>,
    keys: &[Vec<u8>],
    row: &[Value],
    nulls: bool,
    route: &str,
    origin: &Origin<'_>,
) {
    out.push(b'{');
    for (key, v) in keys.iter().zip(row) {
        if !nulls && matches!(v, Value::Null) {
            continue;
        }
        out.extend_from_slice(key);
        push_value(out, v);
        out.push(b',');
    }
    out.extend_from_slice(b"\"_hubwatch\":{\"route\":");
    push_str(out, route);
    let (source, position) = match *origin {
        Origin::Record { source, position } => (source, position),
        Origin::Result { query, bin } => {
            out.extend_from_slice(b",\"query\":");
            push_str(out, query);
            out.extend_from_slice(b",\"bin\":");
            push_str(out, &crate::time::format_datetime(bin));
            out.extend_from_slice(b"}}");
            return;
        }
    };
    out.extend_from_slice(b",\"source\":");
    push_str(out, source);
    out.extend_from_slice(b",\"partition\":");
    push_str(out, &position.partition);
    let _ = write!(
        out,
        ",\"offset\":{},\"sequence_number\":{}",
        position.offset, position.sequence_number
    );
    if let Some(t) = position.enqueued_time {
        out.extend_from_slice(b",\"enqueued_time\":");
        push_datetime(out, t);
    }
    out.extend_from_slice(b"}}");
}

/// A record as it was in the body, byte for byte — except that line breaks between its
/// tokens (a pretty-printed body; JSON strings cannot hold raw ones) become spaces, and
/// whitespace around it goes, so that it stays one line for the line-based sinks.
pub fn record_line(out: &mut Vec<u8>, raw: &[u8]) {
    let raw = raw.trim_ascii();
    out.extend(
        raw.iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
}

/// A datetime as a JSON string (its text needs no escaping).
fn push_datetime(out: &mut Vec<u8>, t: i64) {
    out.push(b'"');
    crate::time::push_datetime(out, t);
    out.push(b'"');
}

/// A JSON string, escaped.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A value as the query API writes it ([`Value::to_json`]), without building it.
fn push_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Long(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::Real(x) if x.is_finite() => {
            let _ = serde_json::to_writer(&mut *out, x);
        }
        Value::Real(_) => out.extend_from_slice(b"null"),
        Value::DateTime(t) => push_datetime(out, *t),
        Value::TimeSpan(t) => push_str(out, &crate::time::format_timespan(*t)),
        Value::Str(s) => push_str(out, s),
        Value::Dynamic(d) => {
            let _ = serde_json::to_writer(&mut *out, &**d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Position;
    use crate::value::Type;
    use std::sync::Arc;

    #[test]
    fn a_row_is_one_json_object_in_column_order_with_its_origin() {
        let columns = vec![
            OutColumn {
                name: Arc::from("TimeGenerated"),
                ty: Type::DateTime,
                is_key: false,
            },
            OutColumn {
                name: Arc::from("ClusterName"),
                ty: Type::String,
                is_key: false,
            },
            OutColumn {
                name: Arc::from("Nodes"),
                ty: Type::Long,
                is_key: false,
            },
        ];
        let t = crate::time::parse_datetime("2024-05-20T10:00:00Z")
            .unwrap()
            .0;
        let row = vec![Value::DateTime(t), Value::str("gpu \"a\""), Value::Null];
        let position = Position {
            partition: Arc::from("3"),
            offset: 4096,
            sequence_number: 17,
            enqueued_time: Some(t),
        };
        let origin = Origin::Record {
            source: "eh",
            position: &position,
        };
        let mut out = Vec::new();
        row_json(&mut out, &keys(&columns), &row, true, "siem", &origin);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(r#"{"TimeGenerated":"2024-05-20T10:00:00.0000000Z","ClusterName":"gpu \"a\"","Nodes":null,"_hubwatch":"#),
            "{text}"
        );
        let mut without = Vec::new();
        row_json(&mut without, &keys(&columns), &row, false, "siem", &origin);
        let without = String::from_utf8(without).unwrap();
        assert!(
            without.starts_with(r#"{"TimeGenerated":"2024-05-20T10:00:00.0000000Z","ClusterName":"gpu \"a\"","_hubwatch":"#),
            "{without}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["_hubwatch"]["sequence_number"], 17);
        assert_eq!(v["_hubwatch"]["partition"], "3");
        assert_eq!(
            v["_hubwatch"]["enqueued_time"],
            "2024-05-20T10:00:00.0000000Z"
        );

        let mut result = Vec::new();
        let origin = Origin::Result {
            query: "failed_jobs",
            bin: t,
        };
        row_json(&mut result, &keys(&columns), &row, false, "alerts", &origin);
        let v: serde_json::Value = serde_json::from_slice(&result).unwrap();
        assert_eq!(
            v["_hubwatch"],
            serde_json::json!({"route": "alerts", "query": "failed_jobs", "bin": "2024-05-20T10:00:00.0000000Z"})
        );
    }
}
