//! The Kafka sink: each row one record on a topic, for SIEMs and pipelines fed from Kafka.
//!
//! - The producer is idempotent with `acks=all`: a delivery is done when every in-sync
//!   replica has the records (librdkafka's delivery reports), and librdkafka's own retries
//!   add no duplicates. A delivery hands all its records to librdkafka at once, which
//!   batches them per partition; the records of one partition keep their order
//!   (idempotence allows up to five requests in flight without reordering). A record
//!   that fails and is sent again (from the buffer, after a backoff) comes after the
//!   records of its partition that were taken meanwhile.
//! - The record's value is the row's JSON (or the original record); its key the value of
//!   a chosen column (e.g. `_ResourceId`, so that one resource's rows stay in one partition
//!   and in order), or none; its topic a [`super::template`] (`{table}`, `{route}`), in the
//!   case it renders (Kafka topic names are case-sensitive). Its headers say where it came
//!   from — `hubwatch.route`, and `hubwatch.source`, `hubwatch.partition`,
//!   `hubwatch.sequence_number` (or `hubwatch.query`, `hubwatch.bin` for a query's result
//!   row) — so that a consumer can tell an original record's origin, and route on it
//!   without parsing the value.
//! - A record the broker refuses for good (too large, invalid, a topic name Kafka does not
//!   allow) is dead-lettered; anything else is sent again after a backoff.
//! - A delivery that the cluster took nothing of, or a producer librdkafka declares
//!   fatally broken, makes the next delivery start with a new producer. The idempotent
//!   producer keeps its producer id across reconnects, and a cluster that lost its state
//!   (wiped, restored, a broker that keeps it in memory) may never accept that id again
//!   ("unknown producer id", "fenced") while a new producer starts clean; librdkafka's
//!   fatal errors require a new producer. The cost is a reconnect on an outage.
//! - Secrets: librdkafka's logs go through `tracing` here rather than straight to the
//!   `log` bridge, and the values of secret properties (`sasl.password`, `*secret*`, a key
//!   PEM) are scrubbed from them and from every error the sink reports. librdkafka
//!   redacts those in its own configuration dumps, and names no other value once the
//!   producer exists; creating it, it quotes the value of a property it does not know
//!   (a misspelled `sasl.pasword`), so that error is scrubbed of every value.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use super::buffered::{Deliver, Encode, Failure, Rejection, Report};
use super::template::Template;
use super::Routed;
use crate::source::amqp::scrub;

/// A record in the buffer: `topic len u16 | topic | key len u32 (u32::MAX: none) | key |
/// headers | value`. Bit 15 of the topic length says that headers are there (frames
/// buffered by versions without them lack it): `count u8`, then per header `name len u8 |
/// name | value len u16 | value`. Kafka topic names are at most 249 bytes.
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
        let topic = &self.scratch.as_bytes()[..self.scratch.len().min(TOPIC_LEN as usize)];
        out.extend_from_slice(&(topic.len() as u16 | WITH_HEADERS).to_le_bytes());
        out.extend_from_slice(topic);
        match self.key.as_deref().and_then(|k| row.column(k)) {
            Some(k) => {
                out.extend_from_slice(&(k.len() as u32).to_le_bytes());
                out.extend_from_slice(k.as_bytes());
            }
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
        let header = |out: &mut Vec<u8>, name: &str, value: &[u8]| {
            let value = &value[..value.len().min(u16::MAX as usize)];
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            out.extend_from_slice(value);
        };
        match row.origin {
            super::Origin::Record { source, position } => {
                out.push(4);
                header(out, "hubwatch.route", row.route.as_bytes());
                header(out, "hubwatch.source", source.as_bytes());
                header(out, "hubwatch.partition", position.partition.as_bytes());
                // The topic was copied out: its scratch holds the number (no allocation a row).
                self.scratch.clear();
                let _ = write!(self.scratch, "{}", position.sequence_number);
                header(out, "hubwatch.sequence_number", self.scratch.as_bytes());
            }
            super::Origin::Result { query, bin } => {
                out.push(3);
                header(out, "hubwatch.route", row.route.as_bytes());
                header(out, "hubwatch.query", query.as_bytes());
                let bin = crate::time::format_datetime(bin);
                header(out, "hubwatch.bin", bin.as_bytes());
            }
        }
        out.extend_from_slice(row.json);
    }
}

/// Bit 15 of a frame's topic length: headers follow the key.
const WITH_HEADERS: u16 = 0x8000;
/// The longest topic a frame holds.
const TOPIC_LEN: u16 = 0x7fff;

/// A record read back from its buffer frame.
#[derive(Debug, PartialEq, Eq)]
struct Record<'a> {
    topic: &'a str,
    key: Option<&'a [u8]>,
    headers: Vec<(&'a str, &'a [u8])>,
    value: &'a [u8],
}

/// A record read back from its buffer frame (`None`: the frame is not one).
fn decode(frame: &[u8]) -> Option<Record<'_>> {
    let mut r = FrameReader(frame);
    let tlen = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
    let topic = std::str::from_utf8(r.take((tlen & TOPIC_LEN) as usize)?).ok()?;
    let klen = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
    let key = match klen {
        u32::MAX => None,
        n => Some(r.take(n as usize)?),
    };
    let mut headers = Vec::new();
    if tlen & WITH_HEADERS != 0 {
        for _ in 0..r.take(1)?[0] {
            let n = r.take(1)?[0] as usize;
            let name = std::str::from_utf8(r.take(n)?).ok()?;
            let n = u16::from_le_bytes(r.take(2)?.try_into().ok()?) as usize;
            headers.push((name, r.take(n)?));
        }
    }
    Some(Record {
        topic,
        key,
        headers,
        value: r.0,
    })
}

/// Takes a frame's fields from the front.
struct FrameReader<'a>(&'a [u8]);

impl<'a> FrameReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
}

/// What librdkafka said about the cluster as a whole (refused credentials, brokers down),
/// scrubbed, and when: a record's own error only says that it timed out.
#[derive(Default)]
struct ClusterErrors {
    last: Option<(Instant, String)>,
    /// Kept apart: "all brokers down" follows a refused login, and would hide it.
    auth: Option<(Instant, String)>,
}

/// The producer's librdkafka callbacks: its logs and cluster errors go to `tracing`,
/// scrubbed. (Shared with the deliverer through the `Arc`, since librdkafka owns the
/// context; a mutex because its callbacks run on librdkafka's threads.)
struct SinkContext {
    brokers: Arc<str>,
    secrets: Arc<[String]>,
    errors: Arc<Mutex<ClusterErrors>>,
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let message = scrub(message, &self.secrets);
        let brokers = &*self.brokers;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(brokers, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(brokers, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(brokers, fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(brokers, fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let text = scrub(&format!("{error}: {reason}"), &self.secrets);
        // librdkafka logs the same itself, and a failed delivery reports it.
        tracing::debug!(brokers = %self.brokers, error = %text, "the Kafka sink's producer reports an error");
        let auth = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SaslAuthenticationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed
            )
        );
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if auth {
            errors.auth = Some((Instant::now(), text.clone()));
        }
        errors.last = Some((Instant::now(), text));
    }
}

pub struct KafkaDeliver {
    producer: FutureProducer<SinkContext>,
    /// hubwatch's settings and the configured properties: a new producer is built from
    /// them.
    config: ClientConfig,
    /// The values of secret properties, scrubbed from the texts the sink reports.
    secrets: Arc<[String]>,
    errors: Arc<Mutex<ClusterErrors>>,
    brokers: Arc<str>,
    /// The next delivery starts with a new producer.
    renew: bool,
}

impl KafkaDeliver {
    /// `properties`: librdkafka settings besides the servers (security, SASL, compression),
    /// applied after hubwatch's own so that they win. `timeout`: how long a record may
    /// take to be acknowledged (`message.timeout.ms`).
    pub fn new(
        bootstrap_servers: &str,
        properties: &[(String, String)],
        timeout: Duration,
    ) -> Result<KafkaDeliver, String> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", timeout.as_millis().to_string());
        for (k, v) in properties {
            config.set(k, v);
        }
        let secrets: Arc<[String]> = properties
            .iter()
            .filter(|(k, _)| crate::source::kafka::is_secret_property(k))
            .map(|(_, v)| v.clone())
            .collect();
        let brokers: Arc<str> = bootstrap_servers.into();
        let errors = Arc::new(Mutex::new(ClusterErrors::default()));
        let producer = producer(&config, &brokers, &secrets, &errors).map_err(|e| {
            // Every value: a key librdkafka does not know is quoted with its value, and a
            // misspelled secret's key is such a key.
            let every: Vec<String> = properties.iter().map(|(_, v)| v.clone()).collect();
            let e = scrub(&e, &every);
            format!("creating the Kafka producer for {bootstrap_servers}: {e}")
        })?;
        Ok(KafkaDeliver {
            producer,
            config,
            secrets,
            errors,
            brokers,
            renew: false,
        })
    }

    /// A new producer in place of the current one, which holds none of the sink's records
    /// (every one of them was settled).
    fn renew(&mut self) -> Result<(), Failure> {
        let fresh = producer(&self.config, &self.brokers, &self.secrets, &self.errors)
            .map_err(|e| Failure::new("config", format!("a new Kafka producer: {e}")))?;
        let old = std::mem::replace(&mut self.producer, fresh);
        // Destroying a producer joins its threads: not on the runtime's.
        tokio::task::spawn_blocking(move || drop(old));
        tracing::info!(brokers = %self.brokers, "the Kafka sink starts a new producer");
        Ok(())
    }

    /// A record that did not make it: refused for good (dead-lettered), or to send again.
    fn settle(&mut self, index: usize, e: KafkaError, report: &mut Report) -> Option<KafkaError> {
        if permanent(&e) {
            report.rejected.push(Rejection {
                index,
                reason: format!(
                    "{:?}",
                    e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail)
                ),
                detail: scrub(
                    &format!("{} refused the record: {e}", self.brokers),
                    &self.secrets,
                ),
            });
            return None;
        }
        if needs_new_producer(&e) {
            self.renew = true;
        }
        report.retry.push(index);
        Some(e)
    }

    /// A delivery that failed as a whole, with what the cluster said meanwhile.
    fn failure(&self, e: &KafkaError, since: Instant) -> Failure {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        let recent = |x: &Option<(Instant, String)>| {
            x.as_ref()
                .filter(|(at, _)| *at >= since)
                .map(|(_, t)| t.clone())
        };
        let (auth, last) = (recent(&errors.auth), recent(&errors.last));
        let kind = match e.rdkafka_error_code() {
            _ if auth.is_some() => "auth",
            Some(RDKafkaErrorCode::MessageTimedOut) => "timeout",
            _ => "produce",
        };
        let mut detail = format!("producing to {}: {e}", self.brokers);
        if let Some(cluster) = auth.or(last) {
            detail.push_str(&format!(" (the cluster: {cluster})"));
        }
        Failure::new(kind, scrub(&detail, &self.secrets))
    }
}

fn producer(
    config: &ClientConfig,
    brokers: &Arc<str>,
    secrets: &Arc<[String]>,
    errors: &Arc<Mutex<ClusterErrors>>,
) -> Result<FutureProducer<SinkContext>, String> {
    let context = SinkContext {
        brokers: brokers.clone(),
        secrets: secrets.clone(),
        errors: errors.clone(),
    };
    config
        .create_with_context(context)
        .map_err(|e| scrub(&e.to_string(), secrets))
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
                | RDKafkaErrorCode::InvalidTopic
        )
    )
}

/// The producer's identity is refused, or librdkafka gave up on it: only a new producer
/// gets on.
fn needs_new_producer(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
        )
    )
}

#[async_trait::async_trait]
impl Deliver for KafkaDeliver {
    async fn deliver(&mut self, messages: &[&[u8]]) -> Result<Report, Failure> {
        if std::mem::take(&mut self.renew) {
            self.renew().inspect_err(|_| self.renew = true)?;
        }
        let started = Instant::now();
        let mut report = Report::default();
        let mut failed: Option<KafkaError> = None;
        // Every record goes to librdkafka's queue before any is awaited, so that it
        // batches them (awaiting each in turn would send one record per `linger.ms`).
        let mut pending = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let Some(Record {
                topic,
                key,
                headers,
                value,
            }) = decode(m)
            else {
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
            if !headers.is_empty() {
                let mut h = OwnedHeaders::new_with_capacity(headers.len());
                for (name, value) in headers {
                    h = h.insert(Header {
                        key: name,
                        value: Some(value),
                    });
                }
                record = record.headers(h);
            }
            let queued = loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => break Ok(delivery),
                    // The queue frees up as deliveries complete or time out (within
                    // `timeout`).
                    Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((e, _)) => break Err(e),
                }
            };
            match queued {
                Ok(delivery) => pending.push((i, delivery)),
                Err(e) => {
                    let e = self.settle(i, e, &mut report);
                    failed = failed.or(e);
                }
            }
        }
        for (i, delivery) in pending {
            let outcome = match delivery.await {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => e,
                // The producer dropped the report: not delivered, as far as we know.
                Err(_) => KafkaError::Canceled,
            };
            let e = self.settle(i, outcome, &mut report);
            failed = failed.or(e);
        }
        if self.producer.client().fatal_error().is_some() {
            self.renew = true;
        }
        // Nothing taken and nothing refused: the cluster is unreachable, refuses us, or
        // lost our producer.
        if let Some(e) = failed.filter(|_| report.retry.len() == messages.len()) {
            self.renew = true;
            return Err(self.failure(&e, started));
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
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    #[test]
    fn a_record_frame_reads_back_with_and_without_a_key_and_headers() {
        // As versions without headers buffered them.
        let mut f = Vec::new();
        f.extend_from_slice(&5u16.to_le_bytes());
        f.extend_from_slice(b"azure");
        f.extend_from_slice(&2u32.to_le_bytes());
        f.extend_from_slice(b"id{\"a\":1}");
        let record = |topic, key, headers, value| Record {
            topic,
            key,
            headers,
            value,
        };
        assert_eq!(
            decode(&f),
            Some(record("azure", Some(&b"id"[..]), vec![], &b"{\"a\":1}"[..]))
        );
        let mut g = Vec::new();
        g.extend_from_slice(&1u16.to_le_bytes());
        g.extend_from_slice(b"t");
        g.extend_from_slice(&u32::MAX.to_le_bytes());
        g.extend_from_slice(b"{}");
        assert_eq!(decode(&g), Some(record("t", None, vec![], &b"{}"[..])));
        assert_eq!(decode(&g[..3]), None);

        // As this version encodes a row.
        let test_row =
            crate::forward::syslog::tests::Row::new("2024-05-20T10:00:00Z", &[], "{\"x\":1}");
        let row = test_row.routed();
        let mut enc = RecordEncode::new(Template::parse("azure-{table}", false).unwrap(), None);
        let mut frame = Vec::new();
        enc.encode(&row, &mut frame);
        assert_eq!(
            decode(&frame),
            Some(record(
                "azure-AmlComputeJobEvent",
                None,
                vec![
                    ("hubwatch.route", &b"failed jobs"[..]),
                    ("hubwatch.source", b"eh"),
                    ("hubwatch.partition", b"a\"b]"),
                    ("hubwatch.sequence_number", b"7"),
                ],
                &b"{\"x\":1}"[..]
            ))
        );
        for cut in 0..frame.len() - 7 {
            assert!(
                decode(&frame[..cut]).is_none_or(|r| r.value.len() < 7),
                "a cut frame is not read as whole"
            );
        }
    }

    fn frame(topic: &str, key: &str, value: &str) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        f.extend_from_slice(topic.as_bytes());
        f.extend_from_slice(&(key.len() as u32).to_le_bytes());
        f.extend_from_slice(key.as_bytes());
        f.extend_from_slice(value.as_bytes());
        f
    }

    #[test]
    fn a_misspelled_secret_property_is_scrubbed_from_the_creation_error() {
        // librdkafka names an unknown property with its value.
        let secret = "hunter2-Passw0rd";
        let props = [("sasl.pasword".to_string(), secret.to_string())];
        let Err(e) = KafkaDeliver::new("127.0.0.1:9", &props, Duration::from_secs(1)) else {
            panic!("an unknown property is refused");
        };
        assert!(e.contains("sasl.pasword"), "{e}");
        assert!(!e.contains(secret), "{e}");
    }

    #[tokio::test]
    async fn a_delivery_hands_its_records_to_librdkafka_at_once() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("t", 3, 1).unwrap();
        // A long linger: records awaited one by one would take 40 of them.
        let props = [("linger.ms".to_string(), "250".to_string())];
        let mut d =
            KafkaDeliver::new(&mock.bootstrap_servers(), &props, Duration::from_secs(10)).unwrap();
        let frames: Vec<Vec<u8>> = (0..40)
            .map(|i| frame("t", &format!("k{}", i % 4), &format!("{{\"i\":{i}}}")))
            .collect();
        let messages: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
        let started = Instant::now();
        let report = d.deliver(&messages).await.unwrap();
        assert_eq!(report, Report::default(), "every record taken");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?} for 40 records",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_producer_the_cluster_refuses_is_replaced_for_the_next_delivery() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("t", 1, 1).unwrap();
        let mut d =
            KafkaDeliver::new(&mock.bootstrap_servers(), &[], Duration::from_secs(3)).unwrap();
        let frames = [frame("t", "k", "{}")];
        let messages: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
        d.deliver(&messages).await.unwrap();
        // The cluster no longer knows the producer (it lost its state, say).
        mock.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED; 20],
        );
        let failure = d.deliver(&messages).await.unwrap_err();
        assert!(d.renew, "{failure:?}");
        mock.clear_request_errors(RDKafkaApiKey::Produce);
        assert_eq!(d.deliver(&messages).await.unwrap(), Report::default());
        assert!(!d.renew);
    }
}
