//! The Splunk HTTP Event Collector sink.
//!
//! - **`event` endpoint** (`/services/collector/event`, the default): each row one HEC
//!   event, `{"time":…,"host":…,"source":…,"sourcetype":…,"index":…,"event":{the row}}`,
//!   batched by concatenation as HEC takes them. `time` is `TimeGenerated` in epoch seconds
//!   with milliseconds; index, sourcetype and source come from the route, else the sink
//!   (templates: [`super::template`]); the default sourcetype is `azure:<table>`
//!   (lowercase), one per Log Analytics table, for Splunk apps to key on.
//! - A route with `output = "record"` sends the original record as `event`, and where it
//!   came from as indexed `fields` (`hubwatch_route`, `hubwatch_source`,
//!   `hubwatch_partition`, `hubwatch_sequence_number`).
//! - **`raw` endpoint** (`/services/collector/raw`): the rows as lines; index, sourcetype,
//!   source and host are the sink's, as query parameters (Splunk finds the time itself).
//! - **Answers**: 200 is taken. A 400 that names its `invalid-event-number` took the
//!   events before it (HEC works through a request in order): that one is dead-lettered
//!   and the rest sent again (with indexer acknowledgement, those before it too: nothing
//!   confirms they were indexed). 429, 5xx and code 9 (busy) are retried with backoff, and so
//!   are 401/403 (a token to fix, not data to drop).
//! - **Indexer acknowledgement** (`indexer_ack = true`, for a token with acknowledgement
//!   on): every request carries the sink's channel; a 200's `ackId` is polled on
//!   `/services/collector/ack` until Splunk says the events are indexed, and only then is
//!   the batch done. An ack that does not come within `ack_timeout` sends the batch again
//!   (duplicates, never a loss).

use std::io::Write;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::buffered::{Deliver, Encode, Failure, Rejection, Report};
use super::format::push_str;
use super::http::{self, Client};
use super::template::Template;
use super::{Origin, Routed};

/// Builds each row's HEC event.
pub struct HecEvent {
    pub index: Option<Template>,
    pub sourcetype: Template,
    pub source: Option<Template>,
    pub host: Option<String>,
    scratch: String,
}

impl HecEvent {
    pub fn new(
        index: Option<Template>,
        sourcetype: Option<Template>,
        source: Option<Template>,
        host: Option<String>,
    ) -> HecEvent {
        HecEvent {
            index,
            sourcetype: sourcetype.unwrap_or_else(|| {
                Template::parse("azure:{table}", true).expect("a valid template")
            }),
            source,
            host,
            scratch: String::new(),
        }
    }

    fn field(out: &mut Vec<u8>, key: &str, value: &str) {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        push_str(out, value);
    }
}

/// A route's own setting (a template parsed when the route was checked) or the sink's.
fn pick<'a>(route: &'a Option<Template>, sink: &'a Option<Template>) -> Option<&'a Template> {
    route.as_ref().or(sink.as_ref())
}

impl Encode for HecEvent {
    fn encode(&mut self, row: &Routed<'_>, out: &mut Vec<u8>) {
        let millis = row.time.div_euclid(10_000);
        let _ = write!(
            out,
            "{{\"time\":{}.{:03}",
            millis.div_euclid(1000),
            millis.rem_euclid(1000)
        );
        if let Some(h) = &self.host {
            Self::field(out, "host", h);
        }
        let meta = row.meta;
        for (key, route, sink) in [
            ("source", &meta.source, &self.source),
            ("index", &meta.index, &self.index),
        ] {
            if let Some(t) = pick(route, sink) {
                self.scratch.clear();
                t.render(row, &mut self.scratch);
                Self::field(out, key, &self.scratch);
            }
        }
        let sourcetype = meta.sourcetype.as_ref().unwrap_or(&self.sourcetype);
        self.scratch.clear();
        sourcetype.render(row, &mut self.scratch);
        Self::field(out, "sourcetype", &self.scratch);
        if let (true, Origin::Record { source, position }) = (row.original, row.origin) {
            // The record has no origin of its own: it goes as indexed fields.
            out.extend_from_slice(b",\"fields\":{\"hubwatch_route\":");
            push_str(out, row.route);
            out.extend_from_slice(b",\"hubwatch_source\":");
            push_str(out, source);
            out.extend_from_slice(b",\"hubwatch_partition\":");
            push_str(out, &position.partition);
            out.extend_from_slice(
                format!(
                    ",\"hubwatch_sequence_number\":\"{}\"}}",
                    position.sequence_number
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(b",\"event\":");
        out.extend_from_slice(row.json);
        out.push(b'}');
    }
}

/// The raw endpoint's message: the row's JSON line.
pub use super::http::RowJson as HecRaw;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Event,
    Raw,
}

/// Indexer acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexerAck {
    /// How long Splunk may take to index a batch before it is sent again.
    pub timeout: Duration,
}

pub struct HecDeliver {
    client: Client,
    endpoint: Endpoint,
    /// The endpoint's URL (with the raw endpoint's query).
    url: String,
    ack_url: String,
    headers: Vec<(String, String)>,
    ack: Option<IndexerAck>,
}

/// HEC's answer body.
#[derive(Debug, Deserialize)]
struct HecAnswer {
    #[serde(default)]
    text: String,
    #[serde(default)]
    code: Option<i64>,
    #[serde(rename = "invalid-event-number")]
    invalid_event_number: Option<usize>,
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct AckAnswer {
    acks: std::collections::HashMap<String, bool>,
}

impl HecDeliver {
    /// `base`: `https://splunk:8088` (the collector paths are added). `query`: the raw
    /// endpoint's fixed fields.
    pub fn new(
        client: Client,
        base: &str,
        endpoint: Endpoint,
        query: &[(&str, String)],
        token: &str,
        ack: Option<IndexerAck>,
    ) -> HecDeliver {
        let base = base.trim_end_matches('/');
        let mut url = match endpoint {
            Endpoint::Event => format!("{base}/services/collector/event"),
            Endpoint::Raw => format!("{base}/services/collector/raw"),
        };
        let channel = new_channel();
        if endpoint == Endpoint::Raw {
            let mut sep = '?';
            for (k, v) in query.iter().chain([&("channel", channel.clone())]) {
                url.push(sep);
                sep = '&';
                url.push_str(k);
                url.push('=');
                url.extend(percent_encoding::utf8_percent_encode(
                    v,
                    percent_encoding::NON_ALPHANUMERIC,
                ));
            }
        }
        HecDeliver {
            client,
            endpoint,
            url,
            ack_url: format!("{base}/services/collector/ack"),
            headers: vec![
                ("Authorization".into(), format!("Splunk {token}")),
                ("X-Splunk-Request-Channel".into(), channel),
                ("Content-Type".into(), "application/json".into()),
            ],
            ack,
        }
    }

    /// Polls until Splunk has indexed `id`: 250 ms, doubling to 2 s, within the timeout.
    async fn await_ack(&self, id: u64, timeout: Duration) -> Result<(), Failure> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(250);
        let body = format!("{{\"acks\":[{id}]}}").into_bytes();
        loop {
            tokio::time::sleep(wait.min(timeout.saturating_sub(started.elapsed()))).await;
            // A poll that fails is polled again (until the timeout): sending the batch
            // again because of it would index it twice.
            let acked = match self
                .client
                .post(&self.ack_url, &self.headers, body.clone())
                .await
            {
                Ok(answer) if answer.status == 200 => {
                    serde_json::from_slice::<AckAnswer>(&answer.body)
                        .ok()
                        .and_then(|a| a.acks.get(&id.to_string()).copied())
                        .unwrap_or(false)
                }
                Ok(answer) => {
                    tracing::warn!(receiver = %self.client.receiver, status = answer.status, "polling for an indexer acknowledgement failed; polling again");
                    false
                }
                Err(f) => {
                    tracing::warn!(receiver = %self.client.receiver, error = %f.detail, "polling for an indexer acknowledgement failed; polling again");
                    false
                }
            };
            if acked {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(Failure::new(
                    "ack_timeout",
                    format!(
                        "{} did not acknowledge indexing ackId {id} within {timeout:?}; the batch is sent again",
                        self.client.receiver
                    ),
                ));
            }
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }
}

#[async_trait::async_trait]
impl Deliver for HecDeliver {
    async fn deliver(&mut self, messages: &[&[u8]]) -> Result<Report, Failure> {
        let mut body = Vec::with_capacity(messages.iter().map(|m| m.len() + 1).sum());
        for m in messages {
            body.extend_from_slice(m);
            body.push(b'\n');
        }
        let answer = self.client.post(&self.url, &self.headers, body).await?;
        let receiver = &self.client.receiver;
        let hec: Option<HecAnswer> = serde_json::from_slice(&answer.body).ok();
        match answer.status {
            200 => {
                // Anything but HEC's own success (`"code":0`) — a proxy's page, say — is
                // not a delivery.
                let Some(hec) = hec.filter(|h| h.code == Some(0)) else {
                    return Err(Failure::new(
                        "answer",
                        format!(
                            "{receiver} answered 200 with what is not HEC's success: {}",
                            answer.text()
                        ),
                    ));
                };
                if let Some(ack) = &self.ack {
                    match hec.ack_id {
                        Some(id) => self.await_ack(id, ack.timeout).await?,
                        // Sending the batch again would only index it again: it counts as
                        // delivered, unconfirmed, and the log says why.
                        None => tracing::warn!(
                            receiver = %receiver,
                            "indexer_ack is on but Splunk answered without an ackId (is acknowledgement on for the token?): the batch counts as delivered unconfirmed"
                        ),
                    }
                }
                Ok(Report::default())
            }
            400 => {
                let hec = hec.unwrap_or(HecAnswer {
                    text: answer.text(),
                    code: None,
                    invalid_event_number: None,
                    ack_id: None,
                });
                match hec.invalid_event_number {
                    // Events before the invalid one were taken, the rest not read. With
                    // indexer acknowledgement, those before it come with no ackId to
                    // confirm them: they are sent again too (duplicates, never a loss).
                    Some(k) if self.endpoint == Endpoint::Event && k < messages.len() => {
                        let first = if self.ack.is_some() { 0 } else { k };
                        Ok(Report {
                            rejected: vec![Rejection {
                                index: k,
                                reason: format!("hec_code_{}", hec.code.unwrap_or(-1)),
                                detail: format!("{receiver} refused event {k}: {}", hec.text),
                            }],
                            retry: (first..messages.len()).filter(|i| *i != k).collect(),
                            throttled: false,
                        })
                    }
                    _ => http::refused(&answer, receiver, messages.len()),
                }
            }
            _ => http::answered(&answer, receiver, messages.len()),
        }
    }
}

/// A channel id: a random GUID (version 4 layout).
fn new_channel() -> String {
    let mut b = [0u8; 16];
    for chunk in b.chunks_mut(4) {
        let r = (crate::source::amqp::random_unit() * f64::from(u32::MAX)) as u32;
        chunk.copy_from_slice(&r.to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_is_a_version_4_guid() {
        let c = new_channel();
        assert_eq!(c.len(), 36);
        assert_eq!(&c[14..15], "4");
        assert!(matches!(&c[19..20], "8" | "9" | "a" | "b"), "{c}");
        assert_ne!(c, new_channel());
    }
}
