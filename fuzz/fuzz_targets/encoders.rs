//! The syslog sink's messages — RFC 5424 and RFC 3164 headers, CEF and LEEF payloads — for
//! rows with any values: no value may break a message or inject into it. Each message is
//! read back by a strict reader written here from the formats' rules (not from the
//! encoders): one line, header fields where they belong, and exactly the keys the encoder
//! may write, none that a value smuggled in.

#![no_main]

use std::sync::Arc;

use hubwatch::forward::cef::Cef;
use hubwatch::forward::leef::Leef;
use hubwatch::forward::syslog::{Rfc3164, Rfc5424};
use hubwatch::forward::{Known, Origin, RouteMeta, Routed};
use hubwatch::kql::plan::OutColumn;
use hubwatch::source::Position;
use hubwatch::value::{Type, Value};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Name {
    Level,
    OperationName,
    EventType,
    ResultType,
    ResourceId,
    Other(String),
}

impl Name {
    fn as_str(&self) -> &str {
        match self {
            Name::Level => "Level",
            Name::OperationName => "OperationName",
            Name::EventType => "EventType",
            Name::ResultType => "ResultType",
            Name::ResourceId => "_ResourceId",
            Name::Other(s) => s,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    table: String,
    route: String,
    hostname: String,
    source: String,
    partition: String,
    /// Seconds from year 1 (kept within what the parser accepts: years 1–9999).
    seconds: u64,
    result_row: bool,
    cells: Vec<(Name, Option<String>)>,
    fields: Vec<(String, String)>,
    delimiter: u8,
    json: String,
    facility: u8,
}

const CEF_FIXED: [&str; 9] = [
    "rt", "outcome", "cs1Label", "cs1", "cs2Label", "cs2", "cs3Label", "cs3", "msg",
];
const LEEF_FIXED: [&str; 10] = [
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

/// Ticks of 0001-01-01 relative to the Unix epoch, and the span up to 9999-12-31.
const YEAR_1: i64 = -62_135_596_800 * 10_000_000;
const SPAN_SECONDS: u64 = 315_537_897_599;

fuzz_target!(|input: Input| {
    let columns: Vec<OutColumn> = input
        .cells
        .iter()
        .map(|(n, _)| OutColumn {
            name: Arc::from(n.as_str()),
            ty: Type::String,
            is_key: false,
        })
        .collect();
    let values: Vec<Value> = input
        .cells
        .iter()
        .map(|(_, v)| v.as_deref().map_or(Value::Null, Value::str))
        .collect();
    let known = Known::of(&columns);
    let meta = RouteMeta::default();
    let position = Position {
        partition: Arc::from(input.partition.as_str()),
        offset: 7,
        sequence_number: 3,
        enqueued_time: None,
    };
    let time = YEAR_1 + (input.seconds % SPAN_SECONDS) as i64 * 10_000_000;
    let origin = if input.result_row {
        Origin::Result {
            query: &input.source,
            bin: time,
        }
    } else {
        Origin::Record {
            source: &input.source,
            position: &position,
        }
    };
    // The row's JSON as hubwatch writes it: JSON escapes every control character.
    let json = serde_json_string(&input.json);
    let row = Routed {
        json: json.as_bytes(),
        route: &input.route,
        origin,
        time,
        values: &values,
        columns: &columns,
        known: &known,
        meta: &meta,
        table: &input.table,
        ordinal: 0,
        original: false,
    };
    let facility = input.facility % 24;

    let mut out = Vec::new();
    Rfc5424 {
        facility,
        hostname: input.hostname.clone(),
    }
    .header(&row, &mut out);
    let rest = check_rfc5424(&out, input.result_row);
    assert!(
        rest.is_empty(),
        "RFC 5424 header ends after its structured data"
    );

    out.clear();
    Rfc3164 {
        facility,
        hostname: input.hostname.clone(),
    }
    .header(&row, &mut out);
    check_rfc3164(&out);

    let cef = Cef::new(input.fields.clone()).unwrap_or_default();
    out.clear();
    cef.encode(&row, &mut out);
    let allowed: Vec<&str> = CEF_FIXED
        .iter()
        .copied()
        .chain(input.fields.iter().map(|(k, _)| k.as_str()))
        .collect();
    check_cef(
        &out,
        &input.table,
        if Cef::new(input.fields.clone()).is_ok() {
            &allowed
        } else {
            &CEF_FIXED
        },
    );

    let delimiter = input.delimiter;
    if let Ok(leef) = Leef::new(input.fields.clone(), delimiter) {
        out.clear();
        leef.encode(&row, &mut out);
        let allowed: Vec<&str> = LEEF_FIXED
            .iter()
            .copied()
            .chain(input.fields.iter().map(|(k, _)| k.as_str()))
            .collect();
        check_leef(&out, delimiter, &allowed);
    }
});

fn serde_json_string(s: &str) -> String {
    let mut out = String::from("{\"v\":\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push_str("\"}");
    out
}

fn one_line(m: &[u8]) {
    assert!(
        !m.iter().any(|b| matches!(b, b'\n' | b'\r' | 0)),
        "a line break or NUL in {:?}",
        String::from_utf8_lossy(m)
    );
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ELEMENT] `: what follows.
fn check_rfc5424(m: &[u8], result_row: bool) -> &[u8] {
    one_line(m);
    let text = std::str::from_utf8(m).expect("RFC 5424 header is UTF-8");
    let close = text.find('>').expect("PRI closed");
    assert!(text.starts_with('<'));
    let pri: u16 = text[1..close].parse().expect("PRI is a number");
    assert!(pri <= 191);
    let mut fields = text[close + 1..].splitn(7, ' ');
    assert_eq!(fields.next(), Some("1"), "VERSION");
    for (name, max) in [
        ("TIMESTAMP", 32),
        ("HOSTNAME", 255),
        ("APP-NAME", 48),
        ("PROCID", 128),
        ("MSGID", 32),
    ] {
        let f = fields.next().unwrap_or_else(|| panic!("{name} missing"));
        assert!(!f.is_empty() && f.len() <= max, "{name} {f:?}");
        assert!(
            f.bytes().all(|b| (33..=126).contains(&b)),
            "{name} {f:?} not PRINTUSASCII"
        );
    }
    let sd = fields.next().expect("STRUCTURED-DATA");
    let sd = sd.as_bytes();
    assert_eq!(sd.first(), Some(&b'['));
    let id_end = sd
        .iter()
        .position(|b| *b == b' ')
        .expect("SD-ID then params");
    assert_eq!(&sd[1..id_end], b"hubwatch@32473");
    let mut i = id_end;
    let want: &[&[u8]] = if result_row {
        &[b"query", b"bin"]
    } else {
        &[b"source", b"partition", b"offset", b"seq"]
    };
    for name in want {
        assert_eq!(sd[i], b' ', "a space before each SD-PARAM");
        i += 1;
        assert!(
            sd[i..].starts_with(name),
            "SD-PARAM {:?} expected",
            String::from_utf8_lossy(name)
        );
        i += name.len();
        assert_eq!(&sd[i..i + 2], b"=\"");
        i += 2;
        loop {
            match sd[i] {
                b'\\' => {
                    assert!(
                        matches!(sd[i + 1], b'"' | b'\\' | b']'),
                        "a backslash escapes only \" \\ ]"
                    );
                    i += 2;
                }
                b'"' => {
                    i += 1;
                    break;
                }
                b']' => panic!("an unescaped ] inside a PARAM-VALUE"),
                _ => i += 1,
            }
        }
    }
    assert_eq!(
        &sd[i..i + 2],
        b"] ",
        "the SD-ELEMENT closes after its params"
    );
    &sd[i + 2..]
}

/// `<PRI>Mmm dd hh:mm:ss HOSTNAME hubwatch: `.
fn check_rfc3164(m: &[u8]) {
    one_line(m);
    let text = std::str::from_utf8(m).expect("RFC 3164 header is UTF-8");
    let close = text.find('>').expect("PRI closed");
    let rest = &text[close + 1..];
    assert_eq!(rest.as_bytes()[3], b' ', "Mmm then the day: {rest:?}");
    let host = rest[16..].split(' ').next().unwrap();
    assert!(
        !host.is_empty() && host.bytes().all(|b| (33..=126).contains(&b)),
        "HOSTNAME {host:?}"
    );
    assert!(
        rest[16 + host.len()..] == *" hubwatch: ",
        "TAG after HOSTNAME: {rest:?}"
    );
}

/// The message split at unescaped `sep` bytes (a backslash escapes the next byte), at most
/// `n` pieces (the last holds the rest, unsplit).
fn split_escaped(m: &[u8], sep: u8, n: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < m.len() && pieces.len() + 1 < n {
        match m[i] {
            b'\\' => i += 2,
            b if b == sep => {
                pieces.push(&m[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    pieces.push(&m[start.min(m.len())..]);
    pieces
}

fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 1 < field.len() {
            i += 1;
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// `CEF:0|Vendor|Product|Version|Class|Name|Severity|Extension`: seven header fields, then
/// `key=value` pairs where only a key is followed by an unescaped `=`.
fn check_cef(m: &[u8], table: &str, allowed: &[&str]) {
    one_line(m);
    let parts = split_escaped(m, b'|', 8);
    assert_eq!(
        parts.len(),
        8,
        "CEF has 7 header fields and an extension: {:?}",
        String::from_utf8_lossy(m)
    );
    assert_eq!(parts[0], b"CEF:0");
    assert_eq!(parts[1], b"Microsoft");
    let product: Vec<u8> = table
        .bytes()
        .map(|b| if b.is_ascii_control() { b' ' } else { b })
        .collect();
    assert_eq!(unescape(parts[2]), product, "the product is the table");
    let severity: u8 = std::str::from_utf8(parts[6])
        .unwrap()
        .parse()
        .expect("severity");
    assert!(severity <= 10);
    let ext = parts[7];
    // Every unescaped `=` ends a key: the bytes since the previous space (or the start).
    let mut keys = Vec::new();
    let (mut i, mut token) = (0, 0);
    while i < ext.len() {
        match ext[i] {
            b'\\' => i += 2,
            b'=' => {
                let key = std::str::from_utf8(&ext[token..i]).expect("a key is text");
                assert!(
                    allowed.contains(&key),
                    "extension key {key:?} was not written by the encoder: {:?}",
                    String::from_utf8_lossy(ext)
                );
                keys.push(key);
                i += 1;
            }
            b' ' => {
                i += 1;
                token = i;
            }
            _ => i += 1,
        }
    }
    assert_eq!(keys.first(), Some(&"rt"));
    assert_eq!(
        keys.iter().filter(|k| **k == "msg").count(),
        1,
        "one msg: {keys:?}"
    );
}

/// `LEEF:2.0|Vendor|Product|Version|EventID|Delimiter|attributes`: attributes split at the
/// delimiter, each `key=value` with a key the encoder writes.
fn check_leef(m: &[u8], delimiter: u8, allowed: &[&str]) {
    one_line(m);
    let parts = split_escaped(m, b'|', 7);
    assert_eq!(
        parts.len(),
        7,
        "LEEF has 6 header fields and attributes: {:?}",
        String::from_utf8_lossy(m)
    );
    assert_eq!(parts[0], b"LEEF:2.0");
    let spec = parts[5];
    assert!(
        spec == b"x09" && delimiter == b'\t' || spec == [delimiter],
        "delimiter field {spec:?}"
    );
    let mut keys = Vec::new();
    for attr in parts[6].split(|b| *b == delimiter) {
        let eq = attr.iter().position(|b| *b == b'=').unwrap_or_else(|| {
            panic!("attribute without '=': {:?}", String::from_utf8_lossy(attr))
        });
        let key = std::str::from_utf8(&attr[..eq]).expect("a key is text");
        assert!(
            allowed.contains(&key),
            "attribute key {key:?} was not written by the encoder"
        );
        assert!(
            !attr[eq + 1..]
                .iter()
                .any(|b| b.is_ascii_control() || *b == delimiter),
            "a control byte or the delimiter in the value of {key}"
        );
        keys.push(key);
    }
    assert_eq!(
        keys.iter().filter(|k| **k == "msg").count(),
        1,
        "one msg: {keys:?}"
    );
}
