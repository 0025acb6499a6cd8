//! LEEF 2.0 (IBM QRadar's Log Event Extended Format) as the syslog sink's payload, with a
//! fixed mapping from the Log Analytics row that mirrors CEF's ([`super::cef`]):
//!
//! ```text
//! LEEF:2.0|Microsoft|Azure Monitor|hubwatch <version>|<OperationName or table>|x09|devTime=<..><TAB>devTimeFormat=<..><TAB>sev=<..><TAB>cat=<table> ... msg=<row JSON>
//! ```
//!
//! | LEEF | from |
//! |---|---|
//! | Vendor | `Microsoft` |
//! | Product | `Azure Monitor` |
//! | Version | `hubwatch <version>` |
//! | EventID | `OperationName`, else the table (at most 255 bytes) |
//! | Delimiter | `x09` (a tab, in LEEF 2.0's hex form) |
//! | `devTime` | `TimeGenerated` in UTC, to the millisecond: `2024-05-20T10:00:03.123+0000` |
//! | `devTimeFormat` | `yyyy-MM-dd'T'HH:mm:ss.SSSZ` (Java's pattern for the above) |
//! | `sev` | `Level`: Critical 10, Error 7, Warning 5, Informational 3, Verbose 1 (default 3) |
//! | `cat` | the row's table (`AmlComputeJobEvent`, `AzureActivity`, …) |
//! | `eventType` | `EventType` |
//! | `resource` | `_ResourceId` |
//! | `result` | `ResultType` |
//! | `route` | the route |
//! | `origin` | `source/partition@sequence number` |
//! | `msg` | the whole row as JSON |
//! | configured `fields` | `key=<column>` for each `(key, column)`, in order, after `msg` |
//!
//! Unlike CEF, the product is one name for every table: QRadar knows a log source by
//! vendor and product, and maps an event to a QID by EventID and `cat` — here the
//! operation and the table — so one product keeps one log source type and one QID map.
//! Attributes whose column the row lacks, or holds null or empty, are left out.
//!
//! Escaping: header fields escape `\` and `|` with a backslash (as CEF does and LEEF
//! readers accept). LEEF has no escape for attribute values — a value simply must not
//! hold the delimiter — so the delimiter, line breaks and every other control character
//! in a value become a space; `=` stays (readers split an attribute at its first `=`). The
//! row's JSON in `msg` never holds a raw tab or line break (JSON escapes them), so with the
//! tab delimiter it arrives whole. A relay in between must pass tabs through (rsyslog
//! writes them as `#011` unless `parser.escapeControlCharacterTab="off"`).
//!
//! A configured key must not be empty, hold `=`, `|`, the delimiter, spaces or control
//! characters, or repeat a key above: QRadar reads one value per key. LEEF's predefined
//! keys (`usrName`, `src`, `dst`, …) are welcome — they are the ones QRadar normalizes.

use super::Routed;

/// The default delimiter.
pub const TAB: u8 = b'\t';

/// A delimiter as configured: `tab`, one character, or LEEF's hex form (`x09`, `x5E`).
pub fn parse_delimiter(text: &str) -> Result<u8, String> {
    let hex = text
        .strip_prefix(['x', 'X'])
        .filter(|h| h.len() == 2)
        .and_then(|h| u8::from_str_radix(h, 16).ok());
    let d = match (text, hex) {
        ("tab", _) => TAB,
        (_, Some(b)) => b,
        (t, None) if t.len() == 1 => t.as_bytes()[0],
        _ => {
            return Err(format!(
                "{text:?} is not \"tab\", one character or xHH (LEEF's hex form)"
            ))
        }
    };
    if usable_delimiter(d) {
        Ok(d)
    } else {
        Err(format!(
            "{text:?} is neither a tab nor ASCII punctuation other than = | \\"
        ))
    }
}

/// The attribute keys of the fixed mapping, which `fields` may not take again.
const FIXED_KEYS: [&str; 10] = [
    "devTime",
    "devTimeFormat",
    "sev",
    "cat",
    "eventType",
    "resource",
    "result",
    "route",
    "origin",
    "msg",
];

/// The Java date pattern of `devTime`.
pub const DEV_TIME_FORMAT: &str = "yyyy-MM-dd'T'HH:mm:ss.SSSZ";

/// The LEEF payload: the fixed mapping, then the configured `fields`.
#[derive(Debug, Clone)]
pub struct Leef {
    fields: Vec<(String, String)>,
    delimiter: u8,
}

impl Leef {
    /// Checks the `(key, column)` pairs and the delimiter (a tab, or ASCII punctuation other
    /// than `=`, `|` and `\`): every problem at once.
    pub fn new(fields: Vec<(String, String)>, delimiter: u8) -> Result<Leef, Vec<String>> {
        let mut problems = Vec::new();
        if !usable_delimiter(delimiter) {
            problems.push(format!(
                "LEEF delimiter {:?} is neither a tab nor punctuation other than = | \\",
                char::from(delimiter)
            ));
        }
        for (i, (key, column)) in fields.iter().enumerate() {
            let bad = |b: u8| {
                b == b'='
                    || b == b'|'
                    || b == delimiter
                    || b.is_ascii_whitespace()
                    || b.is_ascii_control()
            };
            if key.is_empty() || key.bytes().any(bad) {
                problems.push(format!(
                    "fields: LEEF key {key:?} is empty or holds '=', '|', the delimiter, a space or a control character"
                ));
            } else if FIXED_KEYS.contains(&key.as_str()) {
                problems.push(format!("fields: LEEF key {key:?} is one hubwatch sets"));
            } else if fields[..i].iter().any(|(k, _)| k == key) {
                problems.push(format!("fields: LEEF key {key:?} is given twice"));
            }
            if column.is_empty() {
                problems.push(format!("fields: LEEF key {key:?} names no column"));
            }
        }
        if problems.is_empty() {
            Ok(Leef { fields, delimiter })
        } else {
            Err(problems)
        }
    }

    /// The LEEF message of a row (without a syslog header).
    pub fn encode(&self, row: &Routed<'_>, out: &mut Vec<u8>) {
        let known = row.known;
        out.extend_from_slice(
            concat!(
                "LEEF:2.0|Microsoft|Azure Monitor|hubwatch ",
                env!("CARGO_PKG_VERSION"),
                "|"
            )
            .as_bytes(),
        );
        let operation = row.field(known.operation);
        header(out, cut(operation.as_deref().unwrap_or(row.table), 255));
        out.push(b'|');
        if self.delimiter == TAB {
            out.extend_from_slice(b"x09");
        } else {
            out.push(self.delimiter);
        }
        out.push(b'|');

        let ts = crate::time::format_datetime(row.time);
        // `YYYY-MM-DDTHH:MM:SS.fff` of `…fffffffZ`, then the zone as `Z` wants it.
        let ms = ts.get(..23).unwrap_or(&ts);
        let mut first = true;
        let mut attr = |out: &mut Vec<u8>, key: &str, v: &str| {
            if !std::mem::take(&mut first) {
                out.push(self.delimiter);
            }
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            value(out, v.as_bytes(), self.delimiter);
        };
        attr(out, "devTime", &format!("{ms}+0000"));
        attr(out, "devTimeFormat", DEV_TIME_FORMAT);
        attr(
            out,
            "sev",
            &super::cef::severity(row.level().as_deref()).to_string(),
        );
        attr(out, "cat", row.table);
        for (key, at) in [
            ("eventType", known.event_type),
            ("resource", known.resource_id),
            ("result", known.result_type),
        ] {
            if let Some(v) = row.field(at) {
                attr(out, key, &v);
            }
        }
        attr(out, "route", row.route);
        let origin = row.origin.to_string();
        attr(out, "origin", &origin);
        attr(out, "msg", &String::from_utf8_lossy(row.json));
        for (key, column) in &self.fields {
            if let Some(v) = row.column(column) {
                attr(out, key, &v);
            }
        }
    }
}

/// A tab, or ASCII punctuation that is not `=`, `|` or `\`.
fn usable_delimiter(d: u8) -> bool {
    d == TAB || d.is_ascii_punctuation() && !matches!(d, b'=' | b'|' | b'\\')
}

/// At most `max` bytes of `v`, cut at a character boundary.
fn cut(v: &str, max: usize) -> &str {
    let mut end = v.len().min(max);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    &v[..end]
}

fn header(out: &mut Vec<u8>, v: &str) {
    for b in v.bytes() {
        if matches!(b, b'\\' | b'|') {
            out.push(b'\\');
        }
        out.push(if b.is_ascii_control() { b' ' } else { b });
    }
}

fn value(out: &mut Vec<u8>, v: &[u8], delimiter: u8) {
    for &b in v {
        out.push(if b == delimiter || b.is_ascii_control() {
            b' '
        } else {
            b
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::syslog::tests::Row;

    fn row() -> Row {
        Row::new(
            "2024-05-20T10:00:03.1234567Z",
            &[
                ("OperationName", Some("jobs|write\\x")),
                ("EventType", None),
                ("_ResourceId", Some("/subscriptions/s/ws=1")),
                ("ResultType", Some("Failed\tfor\r\ngood")),
                ("Level", Some("Critical")),
                ("Caller", Some("ana^bob")),
                ("CallerIpAddress", Some("10.0.0.1")),
            ],
            "{\"a\":\"t\\tb\"}",
        )
    }

    fn encode(leef: &Leef, row: &Row) -> String {
        let mut out = Vec::new();
        leef.encode(&row.routed(), &mut out);
        String::from_utf8(out).unwrap()
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, c)| (k.to_string(), c.to_string()))
            .collect()
    }

    #[test]
    fn a_row_becomes_a_tab_delimited_leef_2_event_with_values_kept_whole_of_the_delimiter() {
        let leef = Leef::new(
            fields(&[
                ("usrName", "Caller"),
                ("src", "CallerIpAddress"),
                ("dst", "Nope"),
            ]),
            TAB,
        )
        .unwrap();
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            encode(&leef, &row()),
            format!(
                "LEEF:2.0|Microsoft|Azure Monitor|hubwatch {version}|jobs\\|write\\\\x|x09|\
                 devTime=2024-05-20T10:00:03.123+0000\tdevTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSZ\t\
                 sev=10\tcat=AmlComputeJobEvent\tresource=/subscriptions/s/ws=1\t\
                 result=Failed for  good\troute=failed jobs\torigin=eh/a\"b]@7\t\
                 msg={{\"a\":\"t\\tb\"}}\tusrName=ana^bob\tsrc=10.0.0.1"
            )
        );
    }

    #[test]
    fn a_declared_delimiter_is_written_as_itself_and_kept_out_of_values() {
        let leef = Leef::new(fields(&[("usrName", "Caller")]), b'^').unwrap();
        let text = encode(&leef, &row());
        assert!(text.contains("|jobs\\|write\\\\x|^|devTime="), "{text}");
        assert!(text.ends_with("^usrName=ana bob"), "{text}");
        assert!(text.contains("^sev=10^cat=AmlComputeJobEvent^"), "{text}");
    }

    #[test]
    fn a_configured_delimiter_is_a_tab_a_character_or_its_hex_form() {
        assert_eq!(parse_delimiter("tab"), Ok(TAB));
        assert_eq!(parse_delimiter("x09"), Ok(TAB));
        assert_eq!(parse_delimiter("^"), Ok(b'^'));
        assert_eq!(parse_delimiter("x5E"), Ok(b'^'));
        for bad in ["", "ab", "=", "|", "\\", "a", "x41", "x0a", "xZZ"] {
            assert!(parse_delimiter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_and_delimiters_are_checked() {
        let problems = Leef::new(
            fields(&[
                ("a=b", "C"),
                ("a\tb", "C"),
                ("sev", "C"),
                ("usrName", "C"),
                ("usrName", "D"),
                ("x", ""),
            ]),
            TAB,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(
            problems[2].contains("\"sev\" is one hubwatch sets"),
            "{problems:?}"
        );
        assert!(problems[3].contains("given twice"), "{problems:?}");
        assert!(Leef::new(vec![], b'=').is_err());
        assert!(Leef::new(vec![], b'a').is_err());
        assert!(Leef::new(fields(&[("a^b", "C")]), b'^').is_err());
        assert!(Leef::new(fields(&[("a^b", "C")]), TAB).is_ok());
    }

    #[test]
    fn the_event_id_is_cut_at_255_bytes_on_a_character_boundary() {
        assert_eq!(cut("ééé", 3), "é");
        assert_eq!(cut("abc", 255), "abc");
    }
}
