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
//! | configured `fields` | `key=<column>` for each `(key, column)`, in order, after `msg` |
//!
//! Header fields escape `\` and `|` (control characters become spaces); extension values
//! escape `\`, `=` and line breaks, and the other control characters but tab become spaces.
//! A configured key is alphanumeric (CEF's rule for extension keys) and none of the fixed
//! ones above; a column the row lacks, or holds null or empty, adds nothing.

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
        out.push(if b.is_ascii_control() { b' ' } else { b });
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
            // CEF has no escape for the other control characters; a NUL ends the message for
            // receivers written in C. A tab is left as it is.
            b'\t' => out.push(b),
            _ if b.is_ascii_control() => out.push(b' '),
            _ => out.push(b),
        }
    }
}

/// The extension keys of the fixed mapping, which `fields` may not take again.
const FIXED_KEYS: [&str; 9] = [
    "rt", "outcome", "cs1Label", "cs1", "cs2Label", "cs2", "cs3Label", "cs3", "msg",
];

/// The CEF payload: the fixed mapping, then the configured `fields`.
#[derive(Debug, Clone, Default)]
pub struct Cef {
    fields: Vec<(String, String)>,
}

impl Cef {
    /// Checks the `(key, column)` pairs: every problem at once, each naming the key.
    pub fn new(fields: Vec<(String, String)>) -> Result<Cef, Vec<String>> {
        let mut problems = Vec::new();
        for (i, (key, column)) in fields.iter().enumerate() {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
                problems.push(format!(
                    "fields: CEF extension key {key:?} is not alphanumeric (A-Z, a-z, 0-9)"
                ));
            } else if FIXED_KEYS.contains(&key.as_str()) {
                problems.push(format!(
                    "fields: CEF extension key {key:?} is one hubwatch sets"
                ));
            } else if fields[..i].iter().any(|(k, _)| k == key) {
                problems.push(format!("fields: CEF extension key {key:?} is given twice"));
            }
            if column.is_empty() {
                problems.push(format!("fields: CEF extension key {key:?} names no column"));
            }
        }
        if problems.is_empty() {
            Ok(Cef { fields })
        } else {
            Err(problems)
        }
    }

    /// The CEF message of a row (without a syslog header).
    pub fn encode(&self, row: &Routed<'_>, out: &mut Vec<u8>) {
        encode(row, out);
        for (key, column) in &self.fields {
            if let Some(v) = row.column(column) {
                out.push(b' ');
                out.extend_from_slice(key.as_bytes());
                out.push(b'=');
                value(out, v.as_bytes());
            }
        }
    }
}

/// The CEF message of a row with the fixed mapping only (without a syslog header).
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
    let origin = row.origin.to_string();
    value(out, origin.as_bytes());
    out.extend_from_slice(b" msg=");
    value(out, row.json);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::syslog::tests::Row;

    fn job_row() -> Row {
        Row::new(
            "2024-05-20T10:00:00Z",
            &[
                (
                    "OperationName",
                    Some("Microsoft.MachineLearningServices/workspaces/jobs|write"),
                ),
                ("EventType", Some("JobFailed")),
                ("_ResourceId", Some("/subscriptions/s/ws=1")),
                ("ResultType", None),
                ("Level", Some("Error")),
                ("Caller", Some("ana@contoso.com\nx=1")),
                ("Empty", Some("")),
            ],
            "{\"a\":\"x=y\\\\z\"}",
        )
    }

    #[test]
    fn a_row_becomes_a_cef_event_with_its_fields_escaped() {
        let row = job_row();
        let mut out = Vec::new();
        encode(&row.routed(), &mut out);
        let text = String::from_utf8(out).unwrap();
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            text,
            format!(
                "CEF:0|Microsoft|AmlComputeJobEvent|hubwatch {version}|Microsoft.MachineLearningServices/workspaces/jobs\\|write|JobFailed|7|rt=1716199200000 cs1Label=ResourceId cs1=/subscriptions/s/ws\\=1 cs2Label=Route cs2=failed jobs cs3Label=Origin cs3=eh/a\"b]@7 msg={{\"a\":\"x\\=y\\\\\\\\z\"}}"
            )
        );
    }

    #[test]
    fn control_characters_never_reach_the_line() {
        // Found by fuzz/fuzz_targets/encoders.rs: a NUL or an escape sequence in a value
        // passed through, and a NUL ends the message for receivers written in C.
        let row = Row::new(
            "2024-05-20T10:00:00Z",
            &[
                ("OperationName", Some("op\u{0}\u{1b}[2J")),
                ("Caller", Some("a\u{0}b\tc\u{7f}")),
            ],
            "{}",
        );
        let cef = Cef::new(vec![("suser".into(), "Caller".into())]).unwrap();
        let mut out = Vec::new();
        cef.encode(&row.routed(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("|op  [2J|"), "{text}");
        assert!(text.ends_with(" suser=a b\tc "), "{text}");
        assert!(
            !text.bytes().any(|b| b.is_ascii_control() && b != b'\t'),
            "{text:?}"
        );
    }

    #[test]
    fn configured_fields_follow_the_fixed_mapping_escaped_and_only_when_present() {
        let fields = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, c)| (k.to_string(), c.to_string()))
                .collect::<Vec<_>>()
        };
        let cef = Cef::new(fields(&[
            ("suser", "Caller"),
            ("cs4", "Empty"),
            ("cs5", "NoSuchColumn"),
        ]))
        .unwrap();
        let row = job_row();
        let mut out = Vec::new();
        cef.encode(&row.routed(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("z\"} suser=ana@contoso.com\\nx\\=1"),
            "{text}"
        );
        let problems = Cef::new(fields(&[
            ("user name", "Caller"),
            ("msg", "Caller"),
            ("suser", "Caller"),
            ("suser", "Other"),
            ("cs4", ""),
            ("", "Caller"),
        ]))
        .unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(
            problems[0].contains("\"user name\" is not alphanumeric"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("\"msg\" is one hubwatch sets"),
            "{problems:?}"
        );
        assert!(
            problems[2].contains("\"suser\" is given twice"),
            "{problems:?}"
        );
        assert!(
            problems[3].contains("\"cs4\" names no column"),
            "{problems:?}"
        );
    }
}
