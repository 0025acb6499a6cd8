//! The syslog sink: each row as an RFC 5424 message over TCP, octet-counted (RFC 6587) or
//! LF-terminated, behind the sink's disk buffer.
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME hubwatch - ROUTE [hubwatch@32473 source=".." partition=".." offset=".." seq=".."] {the row as JSON}
//! ```
//!
//! - PRI: the configured facility (default 16, `local0`) and a severity from the row's
//!   `Level` (Critical 2, Error 3, Warning 4, Informational 6, Verbose 7; default 6).
//! - TIMESTAMP: the row's `TimeGenerated`; MSGID: the route's name; the structured data
//!   (ID under the documentation enterprise number 32473) says where the row came from.
//!
//! Delivery over TCP means written to the connection: a receiver that dies with messages in
//! its socket buffer loses them without the sender knowing (RFC 6587 has no
//! acknowledgements; RELP would add them). What was written after the last acknowledged
//! batch of the source is sent again after a restart.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::buffered::{Deliver, Encode};
use super::Routed;

/// How messages are delimited on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `LEN SP MSG` (RFC 6587 §3.4.1): any message content.
    OctetCounting,
    /// `MSG LF` (RFC 6587 §3.4.2): for receivers that know no other (a message must not hold
    /// a newline; JSON never does).
    Lf,
}

pub struct Rfc5424 {
    pub facility: u8,
    pub hostname: String,
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

/// A PARAM-VALUE of structured data: `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn sd_value(out: &mut Vec<u8>, v: &str) {
    for b in v.bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// An RFC 5424 header field: printable ASCII without spaces, at most `max` bytes, `-` when
/// empty.
fn header_field(out: &mut Vec<u8>, v: &str, max: usize) {
    let clean: Vec<u8> = v
        .bytes()
        .filter(|b| (33..=126).contains(b))
        .take(max)
        .collect();
    if clean.is_empty() {
        out.push(b'-');
    } else {
        out.extend_from_slice(&clean);
    }
}

impl Encode for Rfc5424 {
    fn encode(&mut self, row: &Routed<'_>, out: &mut Vec<u8>) {
        let pri = u16::from(self.facility) * 8 + u16::from(severity(row.level().as_deref()));
        out.extend_from_slice(format!("<{pri}>1 ").as_bytes());
        // RFC 3339 with at most 6 fraction digits (RFC 5424 §6.2.3).
        let ts = crate::time::format_datetime(row.time);
        let ts = match ts.strip_suffix('Z').and_then(|t| t.split_once('.')) {
            Some((whole, frac)) => format!("{whole}.{}Z", &frac[..frac.len().min(6)]),
            None => ts,
        };
        out.extend_from_slice(ts.as_bytes());
        out.push(b' ');
        header_field(out, &self.hostname, 255);
        out.extend_from_slice(b" hubwatch - ");
        header_field(out, row.route, 32);
        out.extend_from_slice(b" [hubwatch@32473 source=\"");
        sd_value(out, row.source);
        out.extend_from_slice(b"\" partition=\"");
        sd_value(out, &row.position.partition);
        out.extend_from_slice(
            format!(
                "\" offset=\"{}\" seq=\"{}\"] ",
                row.position.offset, row.position.sequence_number
            )
            .as_bytes(),
        );
        out.extend_from_slice(row.json);
    }
}

/// Writes messages to a TCP connection, opened (and reopened after a failure) as needed.
pub struct TcpDeliver {
    pub address: String,
    pub framing: Framing,
    pub timeout: Duration,
    stream: Option<TcpStream>,
}

impl TcpDeliver {
    pub fn new(address: String, framing: Framing, timeout: Duration) -> TcpDeliver {
        TcpDeliver {
            address,
            framing,
            timeout,
            stream: None,
        }
    }
}

#[async_trait::async_trait]
impl Deliver for TcpDeliver {
    async fn deliver(&mut self, messages: &[Vec<u8>]) -> Result<(), String> {
        if self.stream.is_none() {
            let connect = TcpStream::connect(&self.address);
            let stream = tokio::time::timeout(self.timeout, connect)
                .await
                .map_err(|_| {
                    format!(
                        "connecting to {}: no answer within {:?}",
                        self.address, self.timeout
                    )
                })?
                .map_err(|e| format!("connecting to {}: {e}", self.address))?;
            let _ = stream.set_nodelay(true);
            self.stream = Some(stream);
        }
        let mut bytes = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
        for m in messages {
            match self.framing {
                Framing::OctetCounting => {
                    bytes.extend_from_slice(format!("{} ", m.len()).as_bytes());
                    bytes.extend_from_slice(m);
                }
                Framing::Lf => {
                    bytes.extend_from_slice(m);
                    bytes.push(b'\n');
                }
            }
        }
        let stream = self.stream.as_mut().expect("connected above");
        let written = tokio::time::timeout(self.timeout, async {
            stream.write_all(&bytes).await?;
            stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.stream = None;
                Err(format!("writing to {}: {e}", self.address))
            }
            Err(_) => {
                self.stream = None;
                Err(format!(
                    "writing to {}: stalled for {:?}",
                    self.address, self.timeout
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Position;
    use std::sync::Arc;

    #[test]
    fn a_row_becomes_an_rfc_5424_message_with_its_origin_as_structured_data() {
        let t = crate::time::parse_datetime("2024-05-20T10:00:03.1234567Z")
            .unwrap()
            .0;
        let position = Position {
            partition: Arc::from("a\"b]"),
            offset: 42,
            sequence_number: 7,
            enqueued_time: None,
        };
        let columns = [crate::kql::plan::OutColumn {
            name: Arc::from("Level"),
            ty: crate::value::Type::String,
            is_key: false,
        }];
        let values = [crate::value::Value::str("Warning")];
        let known = crate::forward::Known::of(&columns);
        let row = Routed {
            json: br#"{"Level":"Warning"}"#,
            route: "failed jobs",
            source: "eh",
            position: &position,
            time: t,
            values: &values,
            known: &known,
            table: "AzureActivity",
        };
        let mut out = Vec::new();
        Rfc5424 {
            facility: 16,
            hostname: "pod-1".into(),
        }
        .encode(&row, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"<132>1 2024-05-20T10:00:03.123456Z pod-1 hubwatch - failedjobs [hubwatch@32473 source="eh" partition="a\"b\]" offset="42" seq="7"] {"Level":"Warning"}"#
        );
        assert_eq!(severity(Some("Error")), 3);
        assert_eq!(severity(None), 6);
    }
}
