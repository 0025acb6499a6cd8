//! The syslog sink as the engine holds it, fed hand-made rows: shared by the tests against
//! rsyslog (tests/forward_syslog.rs) and syslog-ng (tests/forward_syslog_ng.rs). Rows go
//! through the sink's disk buffer and sender ([`BufferedSink`]) as the engine's would.

use std::path::Path;
use std::sync::Arc;

use hubwatch::forward::buffered::{BufferedSink, Delivery};
use hubwatch::forward::syslog::{parts, SyslogSettings};
use hubwatch::forward::{Known, Origin, RouteMeta, Routed, Sink};
use hubwatch::kql::plan::OutColumn;
use hubwatch::source::Position;
use hubwatch::value::{Type, Value};
use serde_json::{json, Value as Json};

/// A hand-made Log Analytics row: string columns, and its JSON as the format writes it.
pub struct Row {
    pub position: Position,
    pub columns: Vec<OutColumn>,
    pub values: Vec<Value>,
    pub known: Known,
    pub meta: RouteMeta,
    pub json: Vec<u8>,
    pub time: i64,
}

impl Row {
    pub fn new(time: &str, sequence_number: i64, cells: &[(&str, &str)]) -> Row {
        let mut columns = vec![OutColumn {
            name: Arc::from("TimeGenerated"),
            ty: Type::DateTime,
            is_key: false,
        }];
        let t = hubwatch::time::parse_datetime(time).unwrap().0;
        let mut values = vec![Value::DateTime(t)];
        let mut object = serde_json::Map::new();
        object.insert(
            "TimeGenerated".into(),
            json!(hubwatch::time::format_datetime(t)),
        );
        for (name, v) in cells {
            columns.push(OutColumn {
                name: Arc::from(*name),
                ty: Type::String,
                is_key: false,
            });
            values.push(Value::str(v));
            object.insert(name.to_string(), json!(v));
        }
        Row {
            position: Position {
                partition: Arc::from("3"),
                offset: 4096,
                sequence_number,
                enqueued_time: None,
            },
            known: Known::of(&columns),
            columns,
            values,
            meta: RouteMeta::default(),
            json: Json::Object(object).to_string().into_bytes(),
            time: t,
        }
    }

    pub fn routed(&self) -> Routed<'_> {
        Routed {
            json: &self.json,
            route: "failed-jobs",
            origin: Origin::Record {
                source: "eh",
                position: &self.position,
            },
            time: self.time,
            values: &self.values,
            columns: &self.columns,
            known: &self.known,
            meta: &self.meta,
            table: "AmlComputeJobEvent",
            ordinal: 0,
            original: false,
        }
    }

    pub fn value(&self) -> Json {
        serde_json::from_slice(&self.json).unwrap()
    }
}

/// A failed job's row (`Level` Error, `ResultType`, `_ResourceId`, an `OperationName` with a
/// `|`) whose `Caller` is `caller`, at sequence number `sequence_number`.
pub fn failed_job(sequence_number: i64, caller: &str) -> Row {
    Row::new(
        "2024-05-05T09:07:03.1234567Z",
        sequence_number,
        &[
            (
                "OperationName",
                "Microsoft.MachineLearningServices/workspaces/jobs|write",
            ),
            ("EventType", "JobFailed"),
            ("Level", "Error"),
            ("ResultType", "Failed"),
            (
                "_ResourceId",
                "/subscriptions/s/resourceGroups/rg/providers/ws=1",
            ),
            ("Caller", caller),
        ],
    )
}

/// The sink the engine would hold, on `rt`, buffering in `dir`.
pub fn sink(rt: &tokio::runtime::Runtime, dir: &Path, s: &SyslogSettings) -> BufferedSink {
    let _in = rt.enter();
    let (encode, deliver) = parts(s).unwrap();
    BufferedSink::start(
        "siem",
        Delivery::new(dir.to_path_buf()),
        encode,
        deliver,
        None,
    )
    .unwrap()
}

/// Writes `rows` to the sink and makes them durable (the sender delivers them after).
pub fn send(sink: &mut BufferedSink, rows: &[&Row]) {
    for r in rows {
        sink.write(&r.routed()).unwrap();
    }
    sink.flush().unwrap();
}

/// The sink's defaults (RFC 5424 over TCP, octet counting, JSON) to `address`, hostname
/// `hw-test`.
pub fn settings(address: String) -> SyslogSettings {
    SyslogSettings::new(address, "hw-test")
}

/// A CEF reader of its own: the seven `|`-terminated header fields (`\` escaping the next
/// character), then the extension's `key=value` pairs in order, a key being the word before
/// an unescaped `=` and its value everything up to the space before the next key (`\=`,
/// `\\`, `\n` and `\r` unescaped).
pub fn read_cef(text: &str) -> (Vec<String>, Vec<(String, String)>) {
    let mut header = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars();
    while header.len() < 7 {
        match chars.next() {
            Some('\\') => field.extend(chars.next()),
            Some('|') => header.push(std::mem::take(&mut field)),
            Some(c) => field.push(c),
            None => panic!("a CEF header has 7 fields: {text}"),
        }
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut token = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => token.push(match chars.next() {
                Some('n') => '\n',
                Some('r') => '\r',
                Some(e) => e,
                None => panic!("a lone \\ at the end: {text}"),
            }),
            '=' => {
                let (value, key) = token.rsplit_once(' ').unwrap_or(("", &token));
                assert!(
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()),
                    "{key:?} is no CEF key: {text}"
                );
                if let Some(last) = pairs.last_mut() {
                    last.1 = value.to_string();
                }
                pairs.push((key.to_string(), String::new()));
                token.clear();
            }
            c => token.push(c),
        }
    }
    pairs
        .last_mut()
        .unwrap_or_else(|| panic!("no extension: {text}"))
        .1 = token;
    (header, pairs)
}
