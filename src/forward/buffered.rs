//! A network sink's two halves around its disk buffer ([`super::buffer`]): the engine's
//! side ([`BufferedSink`]) turns each row into the sink's message and appends it, and makes
//! the batch durable at `flush`; the sender task delivers what is durable, in order and in
//! batches, to the receiver ([`Deliver`]), and lets go of what the receiver acknowledged.
//!
//! - A receiver that is down stops only the sender: the engine goes on (and so do the
//!   metrics, and the commits, since what they cover is durable in the buffer) until the
//!   buffer is full. Then `when_full` decides: `block` (the default) makes `write` wait for
//!   room — reading pauses, nothing is lost; `drop_newest` drops the row and counts it.
//! - Transient failures (no connection, a timeout, 429, 5xx) are retried with capped
//!   exponential backoff and jitter, the whole batch or just the messages the receiver
//!   asked for again ([`Report::retry`]).
//! - A message the receiver refuses for good ([`Report::rejected`]: a 400 for one event, a
//!   mapping error) goes to the sink's dead-letter file with the receiver's reason, and the
//!   stream goes on.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::buffer::{BufferReader, BufferWriter, Cursor};
use super::{Routed, Sink};
use crate::telemetry::SinkMetrics;

/// How a sink turns a row into its message (one frame of the buffer).
pub trait Encode: Send {
    fn encode(&mut self, row: &Routed<'_>, out: &mut Vec<u8>);
}

/// What the receiver made of a delivery it answered. The default: it took every message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Messages refused for good (by index into the delivered slice): dead-lettered.
    pub rejected: Vec<Rejection>,
    /// Messages to send again (refused for now: an item's 429, or those a receiver did not
    /// get to after a refused one). Every other message was taken.
    pub retry: Vec<usize>,
    /// The receiver asked to slow down (429s among the items): the retry waits a backoff
    /// even though some messages were taken.
    pub throttled: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Rejection {
    pub index: usize,
    /// A short, stable reason for the metric label (`status_400`, `mapper_parsing_exception`).
    pub reason: String,
    /// What the receiver said.
    pub detail: String,
}

/// A delivery that failed as a whole; every message is sent again after a backoff.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    /// For the metric label: `connect`, `timeout`, `write`, `status_503`, ….
    pub kind: String,
    pub detail: String,
    /// The receiver refused the batch for good without saying which message it minds:
    /// they are sent one at a time, so that only the one at fault is dead-lettered.
    pub split: bool,
}

impl Failure {
    pub fn new(kind: impl Into<String>, detail: impl Into<String>) -> Failure {
        Failure {
            kind: kind.into(),
            detail: detail.into(),
            split: false,
        }
    }
}

/// How the sender hands messages to the receiver.
#[async_trait::async_trait]
pub trait Deliver: Send + 'static {
    async fn deliver(&mut self, messages: &[&[u8]]) -> Result<Report, Failure>;
}

/// What to do with a row when the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room: the batch is not done, reading pauses, nothing is lost.
    Block,
    /// Drop the row, counted (`hubwatch_forward_sink_dropped_total{reason="buffer_full"}`).
    DropNewest,
}

/// A sink's buffering and batching.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub buffer_dir: PathBuf,
    pub max_buffer_bytes: u64,
    pub when_full: WhenFull,
    /// Messages per delivery, at most.
    pub max_events: usize,
    /// Bytes of messages per delivery, at most (one message larger than this goes alone).
    pub max_bytes: usize,
    /// How long a delivery waits to fill up once its first message is durable.
    pub linger: Duration,
    /// Batches delivered at once (each by its own deliverer); the buffer is acknowledged
    /// in order all the same.
    pub max_in_flight: usize,
    /// Where refused messages go, one JSON line each.
    pub dead_letter: PathBuf,
}

impl Delivery {
    /// Defaults for a sink buffering in `buffer_dir`.
    pub fn new(buffer_dir: PathBuf) -> Delivery {
        Delivery {
            dead_letter: buffer_dir.join("dead-letter.ndjson"),
            buffer_dir,
            max_buffer_bytes: 256 << 20,
            when_full: WhenFull::Block,
            max_events: 500,
            max_bytes: 1 << 20,
            linger: Duration::from_millis(200),
            max_in_flight: 1,
        }
    }
}

/// How a sink's sender is doing, for `/readyz?verbose` and the logs.
#[derive(Debug, Default)]
pub struct Health {
    /// Unix ms of the last delivery the receiver took (0: none yet).
    last_ok_ms: AtomicU64,
    /// Unix ms since when deliveries fail (0: they don't).
    failing_since_ms: AtomicU64,
    last_error: Mutex<String>,
    /// Unix ms when the oldest message not yet acknowledged became durable (0: none).
    oldest_unacked_ms: AtomicU64,
}

/// A sink's health as `/readyz?verbose` shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Nothing has failed since the last success.
    Ok,
    /// Deliveries fail (for this long), with the last error.
    Failing { for_secs: f64, error: String },
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Health {
    pub fn status(&self) -> Status {
        match self.failing_since_ms.load(Ordering::Acquire) {
            0 => Status::Ok,
            since => Status::Failing {
                for_secs: unix_ms().saturating_sub(since) as f64 / 1000.0,
                error: self
                    .last_error
                    .lock()
                    .map(|e| e.clone())
                    .unwrap_or_default(),
            },
        }
    }

    /// Age of the oldest message waiting for the receiver, in seconds.
    pub fn oldest_unacked_secs(&self) -> f64 {
        match self.oldest_unacked_ms.load(Ordering::Acquire) {
            0 => 0.0,
            t => unix_ms().saturating_sub(t) as f64 / 1000.0,
        }
    }

    fn ok(&self) {
        self.last_ok_ms.store(unix_ms(), Ordering::Release);
        self.failing_since_ms.store(0, Ordering::Release);
    }

    fn failed(&self, error: &str) {
        let _ = self.failing_since_ms.compare_exchange(
            0,
            unix_ms(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if let Ok(mut e) = self.last_error.lock() {
            error.clone_into(&mut e);
        }
    }
}

pub struct BufferedSink {
    name: String,
    encode: Box<dyn Encode>,
    buffer: BufferWriter,
    when_full: WhenFull,
    /// Bytes the sender removed since the writer last looked.
    released: Arc<AtomicU64>,
    /// Bytes on disk not yet removed (the gauge; the writer adds, the sender removes).
    on_disk: Arc<AtomicU64>,
    durable: watch::Sender<Cursor>,
    health: Arc<Health>,
    metrics: Option<SinkMetrics>,
    scratch: Vec<u8>,
    /// Appended since the last flush.
    pending: bool,
    /// Flushed since the last sync.
    unsynced: bool,
}

/// The buffer is full and stays full this long: the write fails (the batch is not
/// acknowledged, and the service stops rather than wait forever on a receiver that never
/// comes back).
const FULL_WAIT: Duration = Duration::from_secs(600);

impl BufferedSink {
    /// Opens the buffer and starts the sender on the current runtime, one batch in flight.
    pub fn start(
        name: &str,
        delivery: Delivery,
        encode: Box<dyn Encode>,
        deliver: Box<dyn Deliver>,
        metrics: Option<SinkMetrics>,
    ) -> std::io::Result<BufferedSink> {
        Self::start_concurrent(name, delivery, encode, vec![deliver], metrics)
    }

    /// As [`BufferedSink::start`], with one batch in flight per deliverer.
    pub fn start_concurrent(
        name: &str,
        delivery: Delivery,
        encode: Box<dyn Encode>,
        deliverers: Vec<Box<dyn Deliver>>,
        metrics: Option<SinkMetrics>,
    ) -> std::io::Result<BufferedSink> {
        assert!(!deliverers.is_empty(), "a sink needs a deliverer");
        let dir = &delivery.buffer_dir;
        let mut buffer = BufferWriter::open(dir, delivery.max_buffer_bytes)?;
        let reader = BufferReader::open(dir)?;
        let released = Arc::new(AtomicU64::new(0));
        let health = Arc::new(Health::default());
        let on_disk = Arc::new(AtomicU64::new(buffer.bytes()));
        // Everything on disk from an earlier run is durable already: up to the start of the
        // segment this run writes.
        let (durable, durable_rx) = watch::channel(buffer.flush()?);
        let sender = Sender {
            name: name.to_string(),
            reader,
            durable: durable_rx,
            idle: deliverers,
            released: released.clone(),
            on_disk: on_disk.clone(),
            shared: Arc::new(Flights {
                name: name.to_string(),
                health: health.clone(),
                metrics: metrics.clone(),
                dead_letter: delivery.dead_letter.clone(),
                dead: Mutex::new(None),
            }),
            waiting: VecDeque::new(),
            delivery: delivery.clone(),
        };
        tokio::spawn(sender.run());
        Ok(BufferedSink {
            name: name.to_string(),
            encode,
            buffer,
            when_full: delivery.when_full,
            released,
            on_disk,
            durable,
            health,
            metrics,
            scratch: Vec::with_capacity(1024),
            pending: false,
            unsynced: false,
        })
    }
}

impl Sink for BufferedSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, row: &Routed<'_>) -> std::io::Result<()> {
        self.scratch.clear();
        self.encode.encode(row, &mut self.scratch);
        let started = Instant::now();
        loop {
            self.buffer
                .released(self.released.swap(0, Ordering::AcqRel));
            match self.buffer.append(&self.scratch)? {
                Ok(()) => {
                    self.pending = true;
                    self.on_disk
                        .fetch_add(8 + self.scratch.len() as u64, Ordering::AcqRel);
                    return Ok(());
                }
                Err(_full) if self.when_full == WhenFull::DropNewest => {
                    if let Some(m) = &self.metrics {
                        m.dropped("buffer_full");
                    }
                    return Ok(());
                }
                Err(_full) => {
                    if started.elapsed() > FULL_WAIT {
                        return Err(std::io::Error::other(format!(
                            "the buffer of sink '{}' stayed full for {FULL_WAIT:?}: its receiver takes nothing",
                            self.name
                        )));
                    }
                    // What is appended must become visible to the sender to be delivered
                    // and make room.
                    let _ = self.durable.send(self.buffer.flush()?);
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn buffered_bytes(&self) -> Option<u64> {
        if let Some(m) = &self.metrics {
            m.oldest_unacked.set(self.health.oldest_unacked_secs());
        }
        Some(self.on_disk.load(Ordering::Acquire))
    }

    fn health(&self) -> Option<Arc<Health>> {
        Some(self.health.clone())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending {
            return Ok(());
        }
        let cursor = self.buffer.flush()?;
        self.pending = false;
        self.unsynced = true;
        let _ = self.durable.send(cursor);
        Ok(())
    }

    fn sync_job(&mut self) -> std::io::Result<Option<super::SyncJob>> {
        if !std::mem::take(&mut self.unsynced) {
            return Ok(None);
        }
        Ok(Some(Box::new(self.buffer.sync_job()?)))
    }
}

/// The sender task: reads what is durable, in order, and hands each batch to a free
/// deliverer (one batch in flight per deliverer); acknowledges the buffer in order, as
/// the oldest batch in flight is done.
struct Sender {
    name: String,
    reader: BufferReader,
    durable: watch::Receiver<Cursor>,
    /// Deliverers not busy with a batch.
    idle: Vec<Box<dyn Deliver>>,
    released: Arc<AtomicU64>,
    on_disk: Arc<AtomicU64>,
    shared: Arc<Flights>,
    /// Where each flush the sender saw ended, and when it saw it: the age of the oldest
    /// message not yet acknowledged.
    waiting: VecDeque<(Cursor, u64)>,
    delivery: Delivery,
}

/// What the batches in flight share.
struct Flights {
    name: String,
    health: Arc<Health>,
    metrics: Option<SinkMetrics>,
    dead_letter: PathBuf,
    dead: Mutex<Option<std::fs::File>>,
}

type Flight = tokio::task::JoinHandle<Box<dyn Deliver>>;

impl Sender {
    async fn run(mut self) {
        let mut seen = Cursor::default();
        let mut in_flight: VecDeque<(Cursor, Flight)> = VecDeque::new();
        // The engine dropped its side (shutdown): deliver what is in flight, then stop.
        let mut engine_gone = false;
        loop {
            let upto = *self.durable.borrow_and_update();
            if upto > seen {
                self.waiting.push_back((upto, unix_ms()));
                seen = upto;
            }
            self.publish_age();
            // Another batch, if a deliverer is free and something durable is unread.
            let mut frames = Vec::new();
            if !self.idle.is_empty() {
                let d = &self.delivery;
                frames = match self.reader.next(upto, d.max_events, d.max_bytes) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::error!(sink = %self.name, dir = %d.buffer_dir.display(), error = %e, "reading the sink's buffer failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                for (segment, damage) in self.reader.take_damage() {
                    self.shared.damaged(segment, &damage);
                }
            }
            if !frames.is_empty() {
                // A small batch waits a little for more (the source's next batch is often
                // milliseconds behind), unless others are in flight already.
                let d = &self.delivery;
                let bytes: usize = frames.iter().map(|(m, _)| m.len()).sum();
                let oldest = self.waiting.front().map_or(0, |w| w.1);
                let linger_left = Duration::from_millis(
                    (oldest + d.linger.as_millis() as u64).saturating_sub(unix_ms()),
                );
                if in_flight.is_empty()
                    && frames.len() < d.max_events
                    && bytes < d.max_bytes
                    && !linger_left.is_zero()
                {
                    if let Ok(Ok(())) =
                        tokio::time::timeout(linger_left, self.durable.changed()).await
                    {
                        self.reader.unread(&frames);
                        continue; // more arrived: read a fuller batch
                    }
                }
                let to = frames.last().map(|(_, c)| *c).unwrap_or_default();
                let deliver = self.idle.pop().expect("checked above");
                let shared = self.shared.clone();
                let flight = tokio::spawn(async move {
                    let messages: Vec<Vec<u8>> = frames.into_iter().map(|(m, _)| m).collect();
                    shared.deliver_all(deliver, messages).await
                });
                in_flight.push_back((to, flight));
                continue;
            }
            // Nothing more to send now: wait for the oldest batch, or for more to send.
            let Some((to, front)) = in_flight.front_mut() else {
                // Nothing in flight and nothing unread: everything durable is delivered
                // (an earlier run's segments end before the mark this run started at),
                // and a segment the writer has left since its last frame went can go.
                if !self.waiting.is_empty() {
                    self.waiting.clear();
                    self.publish_age();
                }
                match self.reader.tidy() {
                    Ok(0) => {}
                    Ok(removed) => self.released_bytes(removed),
                    Err(e) => {
                        tracing::warn!(sink = %self.name, error = %e, "removing delivered segments of the sink's buffer failed")
                    }
                }
                if self.durable.changed().await.is_err() {
                    return; // the engine is gone
                }
                continue;
            };
            let to = *to;
            tokio::select! {
                done = front => {
                    in_flight.pop_front();
                    match done {
                        Ok(deliver) => self.idle.push(deliver),
                        Err(e) => {
                            // A panic in a deliverer: the batch is not acknowledged; the
                            // sink stops delivering rather than skip it.
                            tracing::error!(sink = %self.name, error = %e, "a delivery task failed; the sink stops delivering until restarted");
                            self.shared
                                .health
                                .failed(&format!("the sender stopped: {e}; restart hubwatch"));
                            return;
                        }
                    }
                    self.acknowledge(to);
                }
                changed = self.durable.changed(), if !self.idle.is_empty() && !engine_gone => {
                    engine_gone = changed.is_err();
                }
            }
        }
    }

    /// The receiver has everything before `to`: the buffer lets go of it.
    fn acknowledge(&mut self, to: Cursor) {
        match self.reader.ack(to) {
            Ok(removed) => self.released_bytes(removed),
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "storing the sink's acknowledgement failed")
            }
        }
        while self.waiting.front().is_some_and(|w| w.0 <= to) {
            self.waiting.pop_front();
        }
        self.publish_age();
    }

    /// Segments of `removed` bytes are gone: the writer may use the room.
    fn released_bytes(&self, removed: u64) {
        self.released.fetch_add(removed, Ordering::AcqRel);
        let left = self
            .on_disk
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(removed))
            })
            .map_or(0, |b| b.saturating_sub(removed));
        if let Some(m) = &self.shared.metrics {
            m.buffered.set(left as i64);
        }
    }

    fn publish_age(&self) {
        let oldest = self.waiting.front().map_or(0, |w| w.1);
        let health = &self.shared.health;
        health.oldest_unacked_ms.store(oldest, Ordering::Release);
        if let Some(m) = &self.shared.metrics {
            m.oldest_unacked.set(health.oldest_unacked_secs());
        }
    }
}

impl Flights {
    /// Delivers one batch until the receiver has taken or refused every message;
    /// transient failures wait (200 ms doubling to 30 s, with jitter) and try again.
    /// Returns the deliverer, free for the next batch.
    async fn deliver_all(
        &self,
        mut deliver: Box<dyn Deliver>,
        frames: Vec<Vec<u8>>,
    ) -> Box<dyn Deliver> {
        let mut todo: Vec<usize> = (0..frames.len()).collect();
        let mut attempt = 0u32;
        // After a batch refused as a whole: one message a delivery, to find the culprit.
        let mut alone = false;
        loop {
            let n = if alone { 1 } else { todo.len() };
            let messages: Vec<&[u8]> = todo[..n].iter().map(|&i| &frames[i][..]).collect();
            let started = Instant::now();
            let outcome = deliver.deliver(&messages).await;
            if let Some(m) = &self.metrics {
                m.requests.inc();
                m.request_seconds.observe(started.elapsed().as_secs_f64());
            }
            let mut pause = true;
            match outcome {
                Ok(report) => {
                    self.health.ok();
                    let taken: Vec<usize> = (0..n)
                        .filter(|j| {
                            !report.retry.contains(j)
                                && !report.rejected.iter().any(|r| r.index == *j)
                        })
                        .collect();
                    if let Some(m) = &self.metrics {
                        m.sent.inc_by(taken.len() as u64);
                        m.sent_bytes
                            .inc_by(taken.iter().map(|&j| messages[j].len() as u64).sum());
                    }
                    // Refused records are acknowledged only once in the dead-letter file:
                    // a file that cannot be written holds the sink, it does not drop them.
                    let mut wait = Duration::from_secs(1);
                    while !report.rejected.is_empty()
                        && !self.dead_letter(&report.rejected, &messages)
                    {
                        self.health
                            .failed("the sink's dead-letter file cannot be written");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(30));
                    }
                    let progress = !taken.is_empty() || !report.rejected.is_empty();
                    // The record at fault is found: back to whole batches.
                    if alone && !report.rejected.is_empty() {
                        alone = false;
                    }
                    // What the receiver wants again, then what this delivery did not hold.
                    let rest: Vec<usize> = report
                        .retry
                        .iter()
                        .filter_map(|&j| todo.get(j).copied())
                        .chain(todo[n..].iter().copied())
                        .collect();
                    todo = rest;
                    if todo.is_empty() {
                        return deliver;
                    }
                    if progress && !report.throttled {
                        attempt = 0;
                        pause = false;
                    } else {
                        tracing::warn!(sink = %self.name, messages = todo.len(), "the receiver asked for some messages again");
                    }
                }
                Err(f) => {
                    self.health.failed(&f.detail);
                    if let Some(m) = &self.metrics {
                        m.failed(&f.kind);
                    }
                    if f.split && n > 1 {
                        alone = true;
                        pause = false;
                    }
                    tracing::warn!(sink = %self.name, kind = %f.kind, error = %f.detail, "delivering failed; the messages stay buffered");
                }
            }
            if pause {
                if let Some(m) = &self.metrics {
                    m.retries.inc();
                }
                let delay = backoff(attempt);
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// A frame of the buffer that failed its checksum: it goes to the dead-letter file as
    /// it is (it cannot be trusted to be what was written, so it is not delivered), with
    /// what could not be framed after it, and both are counted.
    fn damaged(&self, segment: u64, d: &super::buffer::Damage) {
        let path = &self.dead_letter;
        tracing::error!(sink = %self.name, segment, offset = d.offset, lost_bytes = d.lost, file = %path.display(), "a message in the sink's buffer fails its checksum (the disk or the file was damaged): it goes to the dead-letter file instead of the receiver");
        let line = serde_json::json!({
            "reason": "buffer_corrupt",
            "sink": self.name,
            "detail": format!(
                "segment {segment}, offset {}: checksum mismatch; {} bytes after it could not be read",
                d.offset, d.lost
            ),
            "message": String::from_utf8_lossy(&d.bytes),
        });
        let mut text = line.to_string().into_bytes();
        text.push(b'\n');
        if let Err(e) = self.append_dead(&text) {
            tracing::error!(sink = %self.name, file = %path.display(), error = %e, "writing the damaged message to the dead-letter file failed");
        }
        if let Some(m) = &self.metrics {
            m.dead_lettered("buffer_corrupt");
            if d.lost > 0 {
                m.dropped("buffer_corrupt");
            }
        }
    }

    /// Appends `lines` to the dead-letter file and syncs it.
    fn append_dead(&self, lines: &[u8]) -> std::io::Result<()> {
        let mut dead = self.dead.lock().unwrap_or_else(|p| p.into_inner());
        let written = (|| {
            if dead.is_none() {
                *dead = Some(crate::pipeline::dead_letter::open_lines(&self.dead_letter)?);
            }
            let f = dead.as_mut().expect("opened above");
            f.write_all(lines)?;
            f.sync_data()
        })();
        if written.is_err() {
            *dead = None;
        }
        written
    }

    /// Writes refused messages to the dead-letter file, synced before the delivery is
    /// acknowledged; `false` when it cannot be written (the caller waits and tries again).
    fn dead_letter(&self, rejected: &[Rejection], messages: &[&[u8]]) -> bool {
        let path = &self.dead_letter;
        let mut lines = Vec::new();
        for r in rejected {
            let Some(message) = messages.get(r.index) else {
                continue;
            };
            tracing::warn!(sink = %self.name, reason = %r.reason, detail = %r.detail, file = %path.display(), "the receiver refused a message; it goes to the dead-letter file");
            let line = serde_json::json!({
                "reason": "sink_rejected",
                "sink": self.name,
                "kind": r.reason,
                "detail": r.detail,
                "message": String::from_utf8_lossy(message),
            });
            lines.extend_from_slice(line.to_string().as_bytes());
            lines.push(b'\n');
        }
        match self.append_dead(&lines) {
            Ok(()) => {
                if let Some(m) = &self.metrics {
                    for r in rejected {
                        m.dead_lettered(&r.reason);
                    }
                }
                true
            }
            Err(e) => {
                tracing::error!(sink = %self.name, file = %path.display(), error = %e, "writing the sink's dead-letter file failed; the sink waits and tries again");
                false
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(200).saturating_mul(1 << attempt.min(8));
    base.min(Duration::from_secs(30))
        .mul_f64(0.5 + crate::source::amqp::random_unit() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    /// A receiver that refuses any message holding "POISON" — the whole request when it
    /// has more than one message, as an HTTP 400 does — fails the first delivery outright,
    /// and records what it took.
    struct Picky {
        took: Arc<StdMutex<Vec<String>>>,
        calls: usize,
    }

    #[async_trait::async_trait]
    impl Deliver for Picky {
        async fn deliver(&mut self, messages: &[&[u8]]) -> Result<Report, Failure> {
            self.calls += 1;
            if self.calls == 1 {
                return Err(Failure::new("connect", "connection refused"));
            }
            let texts: Vec<String> = messages
                .iter()
                .map(|m| String::from_utf8(m.to_vec()).unwrap())
                .collect();
            if let Some(i) = texts.iter().position(|t| t.contains("POISON")) {
                if messages.len() > 1 {
                    return Err(Failure {
                        kind: "status_400".into(),
                        detail: "bad batch".into(),
                        split: true,
                    });
                }
                return Ok(Report {
                    rejected: vec![Rejection {
                        index: i,
                        reason: "status_400".into(),
                        detail: "field [x] cannot be parsed".into(),
                    }],
                    ..Report::default()
                });
            }
            self.took.lock().unwrap().extend(texts);
            Ok(Report::default())
        }
    }

    struct Plain;

    fn gather(m: &crate::telemetry::Metrics) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&m.registry.gather(), &mut buf)
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    impl Encode for Plain {
        fn encode(&mut self, row: &Routed<'_>, out: &mut Vec<u8>) {
            out.extend_from_slice(row.json);
        }
    }

    fn write(sink: &mut BufferedSink, text: &str) {
        let position = crate::source::Position {
            partition: "0".into(),
            offset: 0,
            sequence_number: 0,
            enqueued_time: None,
        };
        let row = Routed {
            json: text.as_bytes(),
            route: "r",
            origin: crate::forward::Origin::Record {
                source: "s",
                position: &position,
            },
            time: 0,
            values: &[],
            columns: &[],
            known: &Default::default(),
            meta: &Default::default(),
            table: "T",
            ordinal: 0,
            original: false,
        };
        sink.write(&row).unwrap();
    }

    /// A sink delivering to [`Picky`], after `texts` were written to it and it delivered
    /// three messages (within 10 s).
    struct PickySink {
        sink: BufferedSink,
        took: Arc<StdMutex<Vec<String>>>,
        delivery: Delivery,
        metrics: crate::telemetry::Metrics,
    }

    impl PickySink {
        async fn start(mut delivery: Delivery, texts: &[&str]) -> PickySink {
            let took = Arc::new(StdMutex::new(Vec::new()));
            delivery.linger = Duration::ZERO;
            let metrics = crate::telemetry::Metrics::new();
            let mut sink = BufferedSink::start(
                "siem",
                delivery.clone(),
                Box::new(Plain),
                Box::new(Picky {
                    took: took.clone(),
                    calls: 0,
                }),
                Some(SinkMetrics::of(&metrics.forward, "siem")),
            )
            .unwrap();
            for t in texts {
                write(&mut sink, t);
            }
            sink.flush().unwrap();
            if let Some(job) = sink.sync_job().unwrap() {
                job().unwrap();
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while took.lock().unwrap().len() < 3 {
                assert!(
                    Instant::now() < deadline,
                    "took only {:?}",
                    took.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            PickySink {
                sink,
                took,
                delivery,
                metrics,
            }
        }
    }

    /// A message damaged on disk is dead-lettered as it is, counted, and stepped over: the
    /// ones around it are delivered.
    #[tokio::test]
    async fn a_message_damaged_in_the_buffer_is_dead_lettered_and_the_rest_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let buf = dir.path().join("buf");
        {
            let mut w = super::super::buffer::BufferWriter::open(&buf, 64 << 20).unwrap();
            for m in ["a", "bb", "c"] {
                w.append(m.as_bytes()).unwrap().unwrap();
            }
            w.flush().unwrap();
        }
        let seg = buf.join(format!("{:020}.seg", 0));
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[4 + 1 + 4 + 4] ^= 0x01; // "bb" -> "cb"
        std::fs::write(&seg, &bytes).unwrap();

        let picky = PickySink::start(Delivery::new(buf), &["d"]).await;
        let (took, delivery, metrics) = (&picky.took, &picky.delivery, &picky.metrics);
        assert_eq!(*took.lock().unwrap(), ["a", "c", "d"]);
        let dead = std::fs::read_to_string(&delivery.dead_letter).unwrap();
        let line: serde_json::Value = serde_json::from_str(dead.trim()).unwrap();
        assert_eq!(line["reason"], "buffer_corrupt");
        assert_eq!(line["message"], "cb", "as it is on disk");
        assert!(
            line["detail"]
                .as_str()
                .unwrap()
                .contains("segment 0, offset 9"),
            "{line}"
        );
        let text = gather(metrics);
        let series =
            r#"hubwatch_forward_sink_dead_letters_total{reason="buffer_corrupt",sink="siem"} 1"#;
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }

    #[tokio::test]
    async fn a_refused_batch_is_split_and_only_the_record_at_fault_is_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let picky = PickySink::start(
            Delivery::new(dir.path().join("buf")),
            &["a", "b", "POISON c", "d"],
        )
        .await;
        let (took, delivery, metrics, sink) =
            (&picky.took, &picky.delivery, &picky.metrics, &picky.sink);
        assert_eq!(
            *took.lock().unwrap(),
            ["a", "b", "d"],
            "in order, each once"
        );
        let dead = std::fs::read_to_string(&delivery.dead_letter).unwrap();
        let line: serde_json::Value = serde_json::from_str(dead.trim()).unwrap();
        assert_eq!(line["sink"], "siem");
        assert_eq!(line["kind"], "status_400");
        assert_eq!(line["message"], "POISON c");
        assert_eq!(line["detail"], "field [x] cannot be parsed");
        let text = gather(metrics);
        for series in [
            r#"hubwatch_forward_sink_sent_total{sink="siem"} 3"#,
            r#"hubwatch_forward_sink_dead_letters_total{reason="status_400",sink="siem"} 1"#,
            r#"hubwatch_forward_sink_delivery_failures_total{kind="connect",sink="siem"} 1"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
        assert_eq!(sink.health().unwrap().status(), Status::Ok);
    }

    /// The smallest buffer (one segment) keeps flowing: the writer moves to a new segment
    /// before it reports full, and the sender removes the delivered one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_smallest_buffer_keeps_flowing_through_many_times_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut delivery = Delivery::new(dir.path().join("buf"));
        delivery.max_buffer_bytes = 0; // raised to one segment (8 MiB)
        delivery.linger = Duration::ZERO;
        struct Count(Arc<AtomicU64>);
        #[async_trait::async_trait]
        impl Deliver for Count {
            async fn deliver(&mut self, m: &[&[u8]]) -> Result<Report, Failure> {
                self.0.fetch_add(m.len() as u64, Ordering::AcqRel);
                Ok(Report::default())
            }
        }
        let got = Arc::new(AtomicU64::new(0));
        let mut sink = BufferedSink::start(
            "siem",
            delivery,
            Box::new(Plain),
            Box::new(Count(got.clone())),
            None,
        )
        .unwrap();
        let row = "x".repeat(1 << 20);
        let handle = tokio::task::spawn_blocking(move || {
            for _ in 0..40 {
                write(&mut sink, &row);
                sink.flush().unwrap();
            }
            sink
        });
        let sink = tokio::time::timeout(Duration::from_secs(60), handle)
            .await
            .expect("40 MiB through an 8 MiB buffer within a minute")
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.load(Ordering::Acquire) < 40 {
            assert!(
                Instant::now() < deadline,
                "{} of 40 delivered",
                got.load(Ordering::Acquire)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(sink.buffered_bytes().unwrap() <= 16 << 20);
    }

    #[tokio::test]
    async fn a_full_buffer_drops_the_newest_rows_when_told_to_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut delivery = Delivery::new(dir.path().join("buf"));
        delivery.max_buffer_bytes = 0; // raised to one segment (8 MiB)
        delivery.when_full = WhenFull::DropNewest;
        struct Down;
        #[async_trait::async_trait]
        impl Deliver for Down {
            async fn deliver(&mut self, _: &[&[u8]]) -> Result<Report, Failure> {
                Err(Failure::new("connect", "down"))
            }
        }
        let metrics = crate::telemetry::Metrics::new();
        let mut sink = BufferedSink::start(
            "siem",
            delivery,
            Box::new(Plain),
            Box::new(Down),
            Some(SinkMetrics::of(&metrics.forward, "siem")),
        )
        .unwrap();
        let big = "x".repeat(1 << 20);
        for _ in 0..10 {
            write(&mut sink, &big);
        }
        let text = gather(&metrics);
        assert!(
            text.contains(
                r#"hubwatch_forward_sink_dropped_total{reason="buffer_full",sink="siem"} 3"#
            ),
            "{text}"
        );
    }
}
