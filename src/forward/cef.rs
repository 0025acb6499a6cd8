//! CEF (ArcSight Common Event Format, read by ArcSight, Microsoft Sentinel, QRadar and most
//! SIEMs) as the syslog sink's payload, with a fixed mapping from the Log Analytics row:
//!
//! ```text
//! CEF:0|Microsoft|<table>|hubwatch <version>|<OperationName or table>|<EventType, OperationName or table>|<severity>|rt=<ms> ... msg=<row JSON>
//! ```
//!
//! | CEF | from |
//! |---|---|
//! | Device Vendor | `Microsoft` |
//! | Device Product | the row's table (`AmlComputeJobEvent`, `AzureActivity`, …) |
//! | Device Event Class ID | `OperationName`, else the table |
//! | Name | `EventType`, else `OperationName`, else the table |
//! | Severity | `Level`: Critical 10, Error 7, Warning 5, Informational 3, Verbose 1 (default 3) |
//! | `rt` | `TimeGenerated`, epoch milliseconds |
//! | `outcome` | `ResultType` |
//! | `cs1` / `cs1Label=ResourceId` | `_ResourceId` |
//! | `cs2` / `cs2Label=Route` | the route |
//! | `cs3` / `cs3Label=Origin` | `source/partition@sequence number` |
//! | `msg` | the whole row as JSON |
//!
//! Header fields escape `\` and `|`; extension values escape `\`, `=` and line breaks.

use super::buffered::Encode;
use super::syslog::Rfc5424;
use super::Routed;

/// The CEF severity (0–10) of a Log Analytics `Level`.
pub fn severity(level: Option<&str>) -> u8 {
    match super::Level::of(level) {
        super::Level::Critical => 10,
        super::Level::Error => 7,
        super::Level::Warning => 5,
        super::Level::Informational => 3,
        super::Level::Verbose => 1,
    }
}

fn header(out: &mut Vec<u8>, v: &str) {
    for b in v.bytes() {
        if matches!(b, b'\\' | b'|') {
            out.push(b'\\');
        }
        out.push(if b == b'\n' || b == b'\r' { b' ' } else { b });
    }
}

fn value(out: &mut Vec<u8>, v: &[u8]) {
    for &b in v {
        match b {
            b'\\' | b'=' => {
                out.push(b'\\');
                out.push(b);
            }
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// The CEF message of a row (without a syslog header).
pub fn encode(row: &Routed<'_>, out: &mut Vec<u8>) {
    let known = row.known;
    let operation = row.field(known.operation);
    let name = row.field(known.event_type).or_else(|| operation.clone());
    out.extend_from_slice(b"CEF:0|Microsoft|");
    header(out, row.table);
    out.extend_from_slice(concat!("|hubwatch ", env!("CARGO_PKG_VERSION"), "|").as_bytes());
    header(out, operation.as_deref().unwrap_or(row.table));
    out.push(b'|');
    header(out, name.as_deref().unwrap_or(row.table));
    out.extend_from_slice(format!("|{}|", severity(row.level().as_deref())).as_bytes());
    let ms = row.time.div_euclid(crate::time::TICKS_PER_MILLISECOND);
    out.extend_from_slice(format!("rt={ms}").as_bytes());
    if let Some(result) = row.field(known.result_type) {
        out.extend_from_slice(b" outcome=");
        value(out, result.as_bytes());
    }
    if let Some(id) = row.field(known.resource_id) {
        out.extend_from_slice(b" cs1Label=ResourceId cs1=");
        value(out, id.as_bytes());
    }
    out.extend_from_slice(b" cs2Label=Route cs2=");
    value(out, row.route.as_bytes());
    out.extend_from_slice(b" cs3Label=Origin cs3=");
    let origin = format!(
        "{}/{}@{}",
        row.source, row.position.partition, row.position.sequence_number
    );
    value(out, origin.as_bytes());
    out.extend_from_slice(b" msg=");
    value(out, row.json);
}

/// RFC 5424 with a CEF message.
pub struct SyslogCef(pub Rfc5424);

impl Encode for SyslogCef {
    fn encode(&mut self, row: &Routed<'_>, out: &mut Vec<u8>) {
        let mut cef = Vec::with_capacity(row.json.len() + 256);
        encode(row, &mut cef);
        let as_payload = Routed { json: &cef, ..*row };
        self.0.encode(&as_payload, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kql::plan::OutColumn;
    use crate::source::Position;
    use crate::value::{Type, Value};
    use std::sync::Arc;

    #[test]
    fn a_row_becomes_a_cef_event_with_its_fields_escaped() {
        let col = |n: &str| OutColumn {
            name: Arc::from(n),
            ty: Type::String,
            is_key: false,
        };
        let columns = vec![
            col("OperationName"),
            col("EventType"),
            col("_ResourceId"),
            col("ResultType"),
            col("Level"),
        ];
        let values = vec![
            Value::str("Microsoft.MachineLearningServices/workspaces/jobs|write"),
            Value::str("JobFailed"),
            Value::str("/subscriptions/s/ws=1"),
            Value::Null,
            Value::str("Error"),
        ];
        let known = crate::forward::Known::of(&columns);
        let position = Position {
            partition: Arc::from("2"),
            offset: 0,
            sequence_number: 9,
            enqueued_time: None,
        };
        let t = crate::time::parse_datetime("2024-05-20T10:00:00Z")
            .unwrap()
            .0;
        let row = Routed {
            json: b"{\"a\":\"x=y\\\\z\"}",
            route: "failed",
            source: "eh",
            position: &position,
            time: t,
            values: &values,
            known: &known,
            table: "AmlComputeJobEvent",
        };
        let mut out = Vec::new();
        encode(&row, &mut out);
        let text = String::from_utf8(out).unwrap();
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            text,
            format!(
                "CEF:0|Microsoft|AmlComputeJobEvent|hubwatch {version}|Microsoft.MachineLearningServices/workspaces/jobs\\|write|JobFailed|7|rt=1716199200000 cs1Label=ResourceId cs1=/subscriptions/s/ws\\=1 cs2Label=Route cs2=failed cs3Label=Origin cs3=eh/2@9 msg={{\"a\":\"x\\=y\\\\\\\\z\"}}"
            )
        );
    }
}
