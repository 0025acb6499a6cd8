//! The syslog sink: each row as one syslog message — an RFC 5424 or RFC 3164 header and a
//! payload (the row's JSON, CEF ([`super::cef`]) or LEEF ([`super::leef`])) — over TCP, TLS,
//! RELP or UDP, behind the sink's disk buffer. [`SyslogSettings`] says which; [`parts`] builds
//! the sink's encoder and transport from them.
//!
//! ```text
//! RFC 5424: <PRI>1 TIMESTAMP HOSTNAME hubwatch - ROUTE [hubwatch@32473 source=".." partition=".." offset=".." seq=".."] PAYLOAD
//! RFC 3164: <PRI>Mmm dd hh:mm:ss HOSTNAME hubwatch: PAYLOAD
//! ```
//!
//! - PRI: the configured facility (default 16, `local0`) and a severity from the row's
//!   `Level` (Critical 2, Error 3, Warning 4, Informational 6, Verbose 7; default 6).
//! - RFC 5424: TIMESTAMP is the row's `TimeGenerated` (UTC, microseconds); MSGID the route's
//!   name; the structured data (ID under the documentation enterprise number 32473) says
//!   where the row came from.
//! - RFC 3164, for receivers that know nothing newer: the timestamp is `TimeGenerated` in
//!   UTC to the second, with neither year nor zone (the format has none: a receiver not
//!   set to UTC files it under its own zone, and guesses the year). CEF's `rt` and LEEF's
//!   `devTime` carry the whole instant, so ArcSight and QRadar, which often take CEF and
//!   LEEF over RFC 3164, lose nothing. RFC 3164 caps a message at 1024 bytes; hubwatch does
//!   not cut — most receivers take more (rsyslog: `maxMessageSize`, 8 KiB by default).
//!
//! # Transports
//! - **TCP** (default): octet-counted (`LEN SP MSG`, RFC 6587 §3.4.1) or LF-terminated
//!   framing. Delivered means written to the connection: a receiver that dies with
//!   messages in its socket buffer loses them without the sender knowing (RFC 6587 has no
//!   acknowledgements; RELP adds them). What was written after the last acknowledged
//!   batch of the source is sent again after a restart.
//! - **TLS** (RFC 5425): TCP as above inside TLS 1.2/1.3 (rustls), the same framing. The
//!   receiver's certificate and name are checked against the system's trusted roots (the
//!   PEM bundle named by `SSL_CERT_FILE`, else the distribution's usual bundle) plus the
//!   certificates of `tls.ca_file`. **`tls.verify = false` turns every check off: anyone on
//!   the path can read and alter the stream. It exists for test receivers with throwaway
//!   certificates only; never set it in production — trust the test CA with `ca_file`.**
//! - **RELP** (the Reliable Event Logging Protocol: rsyslog's `imrelp`, and receivers built
//!   on librelp), plain TCP: no TLS (rsyslog's RELP over TLS is not supported), and
//!   `framing` and `tls` do not apply — RELP frames each message itself. Each message is a
//!   RELP `syslog` command, and **delivered means the receiver answered `200 OK` for that
//!   message**. A batch goes out pipelined, at most 128 messages unanswered.
//!   - A message the receiver refuses (any answer but 200) is sent again after a backoff,
//!     in a new session; it is never dead-lettered: RELP has no answer meaning "this
//!     message is bad for good", and what librelp refuses with (`500 command disabled`)
//!     is about the session, not the message.
//!   - A session lost before every answer came (the connection closed or reset, a
//!     `serverclose`, no answer within `timeout`) sends again, after a backoff, the
//!     messages that had none: the whole batch, counted as a failure, when none had one.
//!     So a message may arrive twice (the receiver took it, its answer was lost with the
//!     connection), but none is counted as delivered that the receiver did not answer for.
//!   - What an answer promises is the receiver's: rsyslog answers once the message is in
//!     its main queue, in memory unless configured otherwise, so an rsyslog killed before
//!     writing out what it answered for loses it; a disk-assisted (`queue.filename`) or
//!     `Direct` queue closes that gap.
//!   - A message longer than the receiver takes (imrelp's `maxDataSize`, by default
//!     rsyslog's `maxMessageSize`, 8 KiB) is cut by rsyslog (`oversizeMode="truncate"`,
//!     its default) or breaks the session every time it is sent (`"abort"`: the sink
//!     stalls on it), so raise the receiver's limit for large rows. One longer than a
//!     RELP frame can say (999,999,999 bytes) is dead-lettered.
//!   - Transaction numbers start at 1 in each session; a batch that would pass
//!     999,999,999 goes in a new session, since librelp does not take the 1 that the
//!     specification says comes next.
//!   - `timeout` bounds connecting with the `open` handshake, each write, and each wait
//!     for the next answer. Failure kinds: `connect`, `timeout`, `write`, `read`,
//!     `closed`, `relp_open` (the receiver refused the session), `relp_refused` (it
//!     refused every message of the batch), `relp_protocol` (it sent what RELP does not
//!     allow).
//! - **UDP** (RFC 5426): one datagram per message, no framing. UDP guarantees nothing:
//!   a datagram lost on the way, dropped by a full receive buffer or sent while the
//!   receiver is down is gone without a trace (only a refusal the host reports back, as
//!   on loopback, fails a send and is retried), datagrams may arrive out of order, and
//!   nothing is encrypted. Delivered means handed to the kernel. A message larger than
//!   one datagram can carry ([`MAX_DATAGRAM`], 65,507 bytes) is **refused, not cut**: it
//!   goes to the sink's dead-letter file whole, with the reason, because a cut CEF, LEEF
//!   or JSON payload would be misread by the SIEM. RFC 5426 recommends at most 2048 bytes
//!   to avoid IP fragmentation (one lost fragment loses the message), and receivers cut
//!   at their own limit (rsyslog: `maxMessageSize`); rows that large belong on TCP or TLS.
//!
//! The transports are in `syslog/transport.rs` and `syslog/relp.rs`. Nothing secret goes
//! into messages or logs: the settings hold no credentials, and errors name the address
//! and the reason only.

use std::io::Write;
use std::time::Duration;

use super::buffered::{Deliver, Encode};
use super::http::Tls;
use super::{Origin, Routed};

mod relp;
mod transport;

pub use relp::RelpDeliver;
pub use transport::{client_config, frame, TcpDeliver, UdpDeliver, MAX_DATAGRAM};

/// A syslog sink's settings, checked by [`SyslogSettings::problems`] and turned into the
/// sink's two halves by [`parts`].
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogSettings {
    /// `host:port` (`[v6]:port` for an IPv6 literal).
    pub address: String,
    pub protocol: Protocol,
    /// How messages are delimited on a TCP or TLS stream (UDP and RELP need none).
    pub framing: Framing,
    pub rfc: Rfc,
    pub format: Format,
    /// Syslog facility, 0–23 (16: `local0`).
    pub facility: u8,
    /// The HOSTNAME field.
    pub hostname: String,
    /// For `protocol = Tls` only.
    pub tls: Tls,
    /// Extra CEF extension keys or LEEF attributes, `(key, column name)`, appended after
    /// the fixed mapping; a column the row lacks, or holds null or empty, is left out.
    pub fields: Vec<(String, String)>,
    /// Between LEEF attributes (format `leef` only): a tab, or ASCII punctuation.
    pub leef_delimiter: u8,
    /// For connecting (with the TLS handshake, or RELP's `open`) and for each write; with
    /// RELP also for each wait for the receiver's next answer.
    pub timeout: Duration,
}

/// The transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Tls,
    /// RELP: each message acknowledged by the receiver.
    Relp,
    /// RELP inside TLS (rsyslog's `imrelp` with `tls="on"`).
    RelpTls,
}

impl Protocol {
    fn is_tls(self) -> bool {
        matches!(self, Protocol::Tls | Protocol::RelpTls)
    }

    fn is_relp(self) -> bool {
        matches!(self, Protocol::Relp | Protocol::RelpTls)
    }
}

/// How messages are delimited on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// `LEN SP MSG` (RFC 6587 §3.4.1): any message content.
    #[default]
    OctetCounting,
    /// `MSG LF` (RFC 6587 §3.4.2): for receivers that know no other (a message must not hold
    /// a newline; JSON, CEF and LEEF as written here never do).
    Lf,
}

/// The syslog header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rfc {
    #[default]
    Rfc5424,
    Rfc3164,
}

/// The payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The row as one JSON object (see [`super::format`]).
    #[default]
    Json,
    /// ArcSight CEF ([`super::cef`]).
    Cef,
    /// IBM QRadar LEEF 2.0 ([`super::leef`]), tab-delimited.
    Leef,
}

impl SyslogSettings {
    /// Defaults for a receiver at `address`: TCP, octet-counted, RFC 5424, the row's JSON,
    /// facility `local0`, TLS verified, a 10 s timeout.
    pub fn new(address: impl Into<String>, hostname: impl Into<String>) -> SyslogSettings {
        SyslogSettings {
            address: address.into(),
            protocol: Protocol::default(),
            framing: Framing::default(),
            rfc: Rfc::default(),
            format: Format::default(),
            facility: 16,
            hostname: hostname.into(),
            tls: Tls::default(),
            fields: Vec::new(),
            leef_delimiter: super::leef::TAB,
            timeout: Duration::from_secs(10),
        }
    }

    /// Everything wrong with the settings, each naming its field (empty: none). Reads no
    /// file: a `tls.ca_file` that cannot be read fails in [`parts`].
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = host_and_port(&self.address) {
            problems.push(format!("address: {e}"));
        }
        if self.facility > 23 {
            problems.push(format!(
                "facility: {} is not a syslog facility (0–23)",
                self.facility
            ));
        }
        if self.timeout.is_zero() {
            problems.push("timeout: must be more than zero".to_string());
        }
        if !self.protocol.is_tls() && self.tls != Tls::default() {
            problems.push("tls: applies to protocol \"tls\" or \"relp_tls\" only".to_string());
        }
        if self.protocol.is_relp() && self.framing != Framing::default() {
            problems.push(
                "framing: does not apply to RELP (RELP frames each message itself)".to_string(),
            );
        }
        if self.format != Format::Leef && self.leef_delimiter != super::leef::TAB {
            problems.push("leef_delimiter: applies to format \"leef\" only".to_string());
        }
        if let Err(e) = self.payload() {
            problems.extend(e);
        }
        problems
    }

    fn payload(&self) -> Result<Payload, Vec<String>> {
        Ok(match self.format {
            Format::Json if !self.fields.is_empty() => {
                return Err(vec![
                    "fields: apply to format \"cef\" or \"leef\" (the JSON row holds every column)"
                        .to_string(),
                ])
            }
            Format::Json => Payload::Json,
            Format::Cef => Payload::Cef(super::cef::Cef::new(self.fields.clone())?),
            Format::Leef => Payload::Leef(super::leef::Leef::new(
                self.fields.clone(),
                self.leef_delimiter,
            )?),
        })
    }
}

/// The sink's encoder and transport, for [`super::buffered::BufferedSink::start`]. Fails
/// with every [`SyslogSettings::problems`] at once, or when the TLS trust cannot be loaded.
/// Connects nothing: the sender connects on its first delivery (and again after a failure).
pub fn parts(s: &SyslogSettings) -> std::io::Result<(Box<dyn Encode>, Box<dyn Deliver>)> {
    let problems = s.problems();
    if !problems.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            problems.join("; "),
        ));
    }
    let payload = s
        .payload()
        .map_err(|e| std::io::Error::other(e.join("; ")))?;
    let header = match s.rfc {
        Rfc::Rfc5424 => Header::Rfc5424(Rfc5424 {
            facility: s.facility,
            hostname: s.hostname.clone(),
        }),
        Rfc::Rfc3164 => Header::Rfc3164(Rfc3164 {
            facility: s.facility,
            hostname: s.hostname.clone(),
        }),
    };
    let encode = Box::new(Message { header, payload });
    let deliver: Box<dyn Deliver> = match s.protocol {
        Protocol::Tcp => Box::new(TcpDeliver::new(s.address.clone(), s.framing, s.timeout)),
        Protocol::Tls => Box::new(TcpDeliver::tls(
            s.address.clone(),
            s.framing,
            s.timeout,
            &s.tls,
        )?),
        Protocol::Udp => Box::new(UdpDeliver::new(s.address.clone(), s.timeout)),
        Protocol::Relp => Box::new(RelpDeliver::new(s.address.clone(), s.timeout)),
        Protocol::RelpTls => Box::new(RelpDeliver::tls(s.address.clone(), s.timeout, &s.tls)?),
    };
    Ok((encode, deliver))
}

/// The host and port of `host:port` or `[v6]:port`.
fn host_and_port(address: &str) -> Result<(&str, u16), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} is not host:port"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(':') && !address.starts_with('[') {
        return Err(format!(
            "{address:?} is not host:port (an IPv6 host goes in brackets)"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host, p)),
        _ => Err(format!("{address:?} has no port (1–65535)")),
    }
}

/// The syslog severity of a Log Analytics `Level`.
pub fn severity(level: Option<&str>) -> u8 {
    match super::Level::of(level) {
        super::Level::Critical => 2,
        super::Level::Error => 3,
        super::Level::Warning => 4,
        super::Level::Informational => 6,
        super::Level::Verbose => 7,
    }
}

fn pri(out: &mut Vec<u8>, facility: u8, row: &Routed<'_>) {
    let pri = u16::from(facility) * 8 + u16::from(severity(row.level().as_deref()));
    let _ = write!(out, "<{pri}>");
}

/// A PARAM-VALUE of structured data: `"`, `\` and `]` escaped (RFC 5424 §6.3.3), control
/// characters (which have no escape there, and a line break would end the message) as spaces.
fn sd_value(out: &mut Vec<u8>, v: &str) {
    for b in v.bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(if b.is_ascii_control() { b' ' } else { b });
    }
}

/// A header field: printable ASCII without spaces, at most `max` bytes, `-` when empty.
fn header_field(out: &mut Vec<u8>, v: &str, max: usize) {
    let start = out.len();
    out.extend(v.bytes().filter(|b| (33..=126).contains(b)).take(max));
    if out.len() == start {
        out.push(b'-');
    }
}

/// The RFC 5424 header.
pub struct Rfc5424 {
    pub facility: u8,
    pub hostname: String,
}

impl Rfc5424 {
    /// Everything before MSG, the space after the structured data included.
    pub fn header(&self, row: &Routed<'_>, out: &mut Vec<u8>) {
        pri(out, self.facility, row);
        out.extend_from_slice(b"1 ");
        // RFC 3339 with at most 6 fraction digits (RFC 5424 §6.2.3).
        let start = out.len();
        crate::time::push_datetime(out, row.time);
        // `…SS.fffffffZ` → `…SS.ffffffZ`.
        if let Some(dot) = out[start..].iter().position(|b| *b == b'.') {
            let digits = out.len() - (start + dot + 1) - 1;
            if digits > 6 {
                out.truncate(start + dot + 1 + 6);
                out.push(b'Z');
            }
        }
        out.push(b' ');
        header_field(out, &self.hostname, 255);
        out.extend_from_slice(b" hubwatch - ");
        header_field(out, row.route, 32);
        match row.origin {
            Origin::Record { source, position } => {
                out.extend_from_slice(b" [hubwatch@32473 source=\"");
                sd_value(out, source);
                out.extend_from_slice(b"\" partition=\"");
                sd_value(out, &position.partition);
                let _ = write!(
                    out,
                    "\" offset=\"{}\" seq=\"{}\"] ",
                    position.offset, position.sequence_number
                );
            }
            Origin::Result { query, bin } => {
                out.extend_from_slice(b" [hubwatch@32473 query=\"");
                sd_value(out, query);
                out.extend_from_slice(b"\" bin=\"");
                sd_value(out, &crate::time::format_datetime(bin));
                out.extend_from_slice(b"\"] ");
            }
        }
    }
}

/// The BSD syslog header (RFC 3164 §4.1): `<PRI>Mmm dd hh:mm:ss HOSTNAME hubwatch: `.
pub struct Rfc3164 {
    pub facility: u8,
    pub hostname: String,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Rfc3164 {
    /// Everything before the message content, the space after the tag included.
    pub fn header(&self, row: &Routed<'_>, out: &mut Vec<u8>) {
        use crate::time::{TICKS_PER_DAY, TICKS_PER_SECOND};
        pri(out, self.facility, row);
        let (_, month, day) = crate::time::civil_from_days(row.time.div_euclid(TICKS_PER_DAY));
        let secs = row.time.rem_euclid(TICKS_PER_DAY) / TICKS_PER_SECOND;
        // The day is space-padded ("May  5"), as RFC 3164 §4.1.2 asks.
        out.extend_from_slice(
            format!(
                "{} {day:>2} {:02}:{:02}:{:02} ",
                MONTHS[month as usize - 1],
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            )
            .as_bytes(),
        );
        header_field(out, &self.hostname, 255);
        out.extend_from_slice(b" hubwatch: ");
    }
}

enum Header {
    Rfc5424(Rfc5424),
    Rfc3164(Rfc3164),
}

enum Payload {
    Json,
    Cef(super::cef::Cef),
    Leef(super::leef::Leef),
}

/// A syslog message: one of the headers and one of the payloads.
struct Message {
    header: Header,
    payload: Payload,
}

impl Encode for Message {
    fn encode(&mut self, row: &Routed<'_>, out: &mut Vec<u8>) {
        match &self.header {
            Header::Rfc5424(h) => h.header(row, out),
            Header::Rfc3164(h) => h.header(row, out),
        }
        match &self.payload {
            Payload::Json => out.extend_from_slice(row.json),
            Payload::Cef(cef) => cef.encode(row, out),
            Payload::Leef(leef) => leef.encode(row, out),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kql::plan::OutColumn;
    use crate::source::Position;
    use crate::value::{Type, Value};
    use std::sync::Arc;

    /// The pieces a test [`Routed`] borrows.
    pub(crate) struct Row {
        pub position: Position,
        pub columns: Vec<OutColumn>,
        pub values: Vec<Value>,
        pub known: crate::forward::Known,
        pub meta: crate::forward::RouteMeta,
        pub json: Vec<u8>,
        pub time: i64,
    }

    impl Row {
        /// A row of string columns at `time` (RFC 3339), from partition `"a\"b]"`.
        pub(crate) fn new(time: &str, cells: &[(&str, Option<&str>)], json: &str) -> Row {
            let columns: Vec<OutColumn> = cells
                .iter()
                .map(|(n, _)| OutColumn {
                    name: Arc::from(*n),
                    ty: Type::String,
                    is_key: false,
                })
                .collect();
            Row {
                position: Position {
                    partition: Arc::from("a\"b]"),
                    offset: 42,
                    sequence_number: 7,
                    enqueued_time: None,
                },
                known: crate::forward::Known::of(&columns),
                columns,
                values: cells
                    .iter()
                    .map(|(_, v)| v.map_or(Value::Null, Value::str))
                    .collect(),
                meta: Default::default(),
                json: json.as_bytes().to_vec(),
                time: crate::time::parse_datetime(time).unwrap().0,
            }
        }

        pub(crate) fn routed(&self) -> Routed<'_> {
            Routed {
                json: &self.json,
                route: "failed jobs",
                origin: crate::forward::Origin::Record {
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
    }

    fn encode(s: &SyslogSettings, row: &Row) -> String {
        let (mut encode, _) = parts(s).unwrap();
        let mut out = Vec::new();
        encode.encode(&row.routed(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn a_row_becomes_an_rfc_5424_message_with_its_origin_as_structured_data() {
        let row = Row::new(
            "2024-05-20T10:00:03.1234567Z",
            &[("Level", Some("Warning"))],
            r#"{"Level":"Warning"}"#,
        );
        assert_eq!(
            encode(&SyslogSettings::new("127.0.0.1:514", "pod-1"), &row),
            r#"<132>1 2024-05-20T10:00:03.123456Z pod-1 hubwatch - failedjobs [hubwatch@32473 source="eh" partition="a\"b\]" offset="42" seq="7"] {"Level":"Warning"}"#
        );
        assert_eq!(severity(Some("Error")), 3);
        assert_eq!(severity(None), 6);
    }

    #[tokio::test]
    async fn rfc_3164_has_a_bsd_header_in_utc_with_a_space_padded_day() {
        let row = Row::new(
            "2024-05-05T09:07:03.9Z",
            &[("Level", Some("Error"))],
            r#"{"a":1}"#,
        );
        let s = SyslogSettings {
            rfc: Rfc::Rfc3164,
            facility: 4,
            ..SyslogSettings::new("127.0.0.1:514", "pod 1")
        };
        assert_eq!(
            encode(&s, &row),
            r#"<35>May  5 09:07:03 pod1 hubwatch: {"a":1}"#
        );
        let row = Row::new("2023-12-31T23:59:59Z", &[], "{}");
        assert_eq!(encode(&s, &row), "<38>Dec 31 23:59:59 pod1 hubwatch: {}");
        let s = SyslogSettings {
            format: Format::Cef,
            ..s
        };
        assert!(encode(&s, &row).starts_with("<38>Dec 31 23:59:59 pod1 hubwatch: CEF:0|Microsoft|"));
    }

    #[test]
    fn a_line_break_in_structured_data_cannot_end_the_message() {
        // Found by fuzz/fuzz_targets/encoders.rs: a source name with a line break or a NUL
        // went into a PARAM-VALUE as it was.
        let row = Row::new("2024-05-20T10:00:00Z", &[], "{}");
        let mut routed = row.routed();
        routed.origin = Origin::Record {
            source: "e\nh\u{0}",
            position: &row.position,
        };
        let mut out = Vec::new();
        Rfc5424 {
            facility: 1,
            hostname: "pod1".into(),
        }
        .header(&routed, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("[hubwatch@32473 source=\"e h \" partition=\"a\\\"b\\]\""),
            "{text}"
        );
    }

    #[test]
    fn settings_report_every_problem_at_once() {
        let s = SyslogSettings {
            address: "receiver".into(),
            facility: 24,
            fields: vec![("bad key".into(), "C".into())],
            tls: Tls {
                verify: false,
                ca_file: None,
                client: None,
            },
            timeout: Duration::ZERO,
            ..SyslogSettings::new("", "h")
        };
        let p = s.problems();
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(
            p[0].starts_with("address:") && p[1].starts_with("facility:"),
            "{p:?}"
        );
        assert!(p.iter().any(|p| p.starts_with("fields:")), "{p:?}");
        assert!(parts(&s).is_err());
        let relp = SyslogSettings {
            protocol: Protocol::Relp,
            framing: Framing::Lf,
            tls: Tls {
                verify: true,
                ca_file: Some("ca.pem".into()),
                client: None,
            },
            ..SyslogSettings::new("host:2514", "h")
        };
        assert_eq!(
            relp.problems(),
            [
                "tls: applies to protocol \"tls\" or \"relp_tls\" only",
                "framing: does not apply to RELP (RELP frames each message itself)"
            ]
        );
        for good in ["host:514", "[::1]:6514", "10.0.0.1:1"] {
            assert!(host_and_port(good).is_ok(), "{good}");
        }
        for bad in ["::1:514", "host:0", "host", ":514", "host:x"] {
            assert!(host_and_port(bad).is_err(), "{bad}");
        }
    }
}
