//! The Kafka sink: each row one record on a topic, for SIEMs and pipelines fed from Kafka.
//!
//! - The producer is idempotent with `acks=all`: a delivery is done when every in-sync
//!   replica has the records (librdkafka's delivery reports), and librdkafka's own retries
//!   add no duplicates. Records of one partition keep their order (idempotence allows up
//!   to five requests in flight without reordering).
//! - The record's value is the row's JSON; its key the value of a chosen column (e.g.
//!   `_ResourceId`, so that one resource's rows stay in one partition and in order), or
//!   none; its topic a [`super::template`] (`{table}`, `{route}`).
//! - A record the broker refuses for good (too large, invalid) is dead-lettered; anything
//!   else is sent again after a backoff.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use super::buffered::{Deliver, Encode, Failure, Rejection, Report};
use super::template::Template;
use super::Routed;

/// A record in the buffer: `topic len u16 | topic | key len u32 (u32::MAX: none) | key |
/// value`.
pub struct RecordEncode {
    pub topic: Template,
    /// The column whose value keys the record.
    pub key: Option<String>,
    scratch: String,
}

impl RecordEncode {
    pub fn new(topic: Template, key: Option<String>) -> RecordEncode {
        RecordEncode {
            topic,
            key,
            scratch: String::new(),
        }
    }
}

impl Encode for RecordEncode {
    fn encode(&mut self, row: &Routed<'_>, out: &mut Vec<u8>) {
        self.scratch.clear();
        self.topic.render(row, &mut self.scratch);
        let topic = &self.scratch.as_bytes()[..self.scratch.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        out.extend_from_slice(topic);
        match self.key.as_deref().and_then(|k| row.column(k)) {
            Some(k) => {
                out.extend_from_slice(&(k.len() as u32).to_le_bytes());
                out.extend_from_slice(k.as_bytes());
            }
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
        out.extend_from_slice(row.json);
    }
}

/// A record read back from its buffer frame.
type Record<'a> = (&'a str, Option<&'a [u8]>, &'a [u8]);

/// A record read back from its buffer frame: (topic, key, value).
fn decode(frame: &[u8]) -> Option<Record<'_>> {
    let tlen = u16::from_le_bytes(frame.get(..2)?.try_into().ok()?) as usize;
    let topic = std::str::from_utf8(frame.get(2..2 + tlen)?).ok()?;
    let at = 2 + tlen;
    let klen = u32::from_le_bytes(frame.get(at..at + 4)?.try_into().ok()?);
    let at = at + 4;
    if klen == u32::MAX {
        return Some((topic, None, frame.get(at..)?));
    }
    let end = at + klen as usize;
    Some((topic, Some(frame.get(at..end)?), frame.get(end..)?))
}

pub struct KafkaDeliver {
    producer: FutureProducer,
    timeout: Duration,
    brokers: String,
}

impl KafkaDeliver {
    /// `properties`: librdkafka settings besides the servers (security, SASL, compression),
    /// applied after hubwatch's own so that they win.
    pub fn new(
        bootstrap_servers: &str,
        properties: &[(String, String)],
        timeout: Duration,
    ) -> Result<KafkaDeliver, String> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", timeout.as_millis().to_string());
        for (k, v) in properties {
            c.set(k, v);
        }
        let producer: FutureProducer = c.create().map_err(|e| {
            format!(
                "creating the Kafka producer for {bootstrap_servers}: {}",
                scrub(&e, properties)
            )
        })?;
        Ok(KafkaDeliver {
            producer,
            timeout,
            brokers: bootstrap_servers.to_string(),
        })
    }
}

/// An error's text without any property value that could be a secret.
fn scrub(e: &KafkaError, properties: &[(String, String)]) -> String {
    let mut text = e.to_string();
    for (_, v) in properties {
        if v.len() >= 4 {
            text = text.replace(v.as_str(), "***");
        }
    }
    text
}

/// Refused for good: sending it again would fail the same way. (An authorization error is
/// not: an operator grants the ACL, and the records wait in the buffer.)
fn permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

#[async_trait::async_trait]
impl Deliver for KafkaDeliver {
    async fn deliver(&mut self, messages: &[&[u8]]) -> Result<Report, Failure> {
        let mut report = Report::default();
        let mut pending = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let Some((topic, key, value)) = decode(m) else {
                report.rejected.push(Rejection {
                    index: i,
                    reason: "corrupt_frame".into(),
                    detail: "a buffered record could not be read back".into(),
                });
                continue;
            };
            let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(value);
            if let Some(k) = key {
                record = record.key(k);
            }
            // The producer's queue bounds what is in flight: wait for room.
            let future = self.producer.send(record, self.timeout);
            pending.push((i, future));
        }
        let mut failed: Option<Failure> = None;
        for (i, future) in pending {
            match future.await {
                Ok(_) => {}
                Err((e, _)) if permanent(&e) => report.rejected.push(Rejection {
                    index: i,
                    reason: format!(
                        "{:?}",
                        e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail)
                    ),
                    detail: format!("{} refused the record: {e}", self.brokers),
                }),
                Err((e, _)) => {
                    report.retry.push(i);
                    failed.get_or_insert_with(|| {
                        Failure::new("produce", format!("producing to {}: {e}", self.brokers))
                    });
                }
            }
        }
        // Nothing taken and nothing refused: the cluster is unreachable or failing.
        if report.retry.len() == messages.len() {
            return Err(failed.expect("set with the first retry"));
        }
        report.throttled = !report.retry.is_empty();
        Ok(report)
    }
}

impl Drop for KafkaDeliver {
    fn drop(&mut self) {
        let _ = self.producer.flush(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_frame_reads_back_with_and_without_a_key() {
        let mut f = Vec::new();
        f.extend_from_slice(&5u16.to_le_bytes());
        f.extend_from_slice(b"azure");
        f.extend_from_slice(&2u32.to_le_bytes());
        f.extend_from_slice(b"id{\"a\":1}");
        assert_eq!(
            decode(&f),
            Some(("azure", Some(&b"id"[..]), &b"{\"a\":1}"[..]))
        );
        let mut g = Vec::new();
        g.extend_from_slice(&1u16.to_le_bytes());
        g.extend_from_slice(b"t");
        g.extend_from_slice(&u32::MAX.to_le_bytes());
        g.extend_from_slice(b"{}");
        assert_eq!(decode(&g), Some(("t", None, &b"{}"[..])));
        assert_eq!(decode(&g[..3]), None);
    }
}
