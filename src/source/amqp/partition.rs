//! One partition's receiver: a task that owns its client (one AMQP connection), its
//! receiver and its position, gathers events into batches and hands them on; after any
//! error it drops the client and reopens strictly after the last event it handed on.
//!
//! Why a connection per partition rather than one shared: with the SDK's retries off (see
//! `client.rs`) a failed connection stays cached in its client until the client is dropped,
//! so recovery means a new client; per partition, one partition's failure never disturbs
//! another's stream. The namespace allows thousands of connections; a hub has ≤ 32
//! partitions (Standard).
//!
//! Liveness: every `lag_poll_interval` the reader reads its partition's properties on its
//! own connection (for the lag statistics). A call that hangs or finds the connection gone,
//! or events that waited at two probes in a row with nothing received in between, mean the
//! receiver is stuck — the SDK can hang in the attach's CBS exchange when the connection
//! closes at that moment — and the reader reconnects. Idle partitions are left alone:
//! nothing waits.
//!
//! Memory is bounded by the SDK's prefetch (link credit is only refilled as events are
//! taken from the receiver) plus one batch being gathered and one being sent: while the
//! source's channel is full, this task waits in `send` and stops taking events, so the
//! service stops delivering.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use azure_core_amqp::message::AmqpMessageBody;
use azure_core_amqp::AmqpValue;
use azure_messaging_eventhubs::models::{EventHubPartitionProperties, ReceivedEventData};
use azure_messaging_eventhubs::{ConsumerClient, OpenReceiverOptions};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::client::{Connector, Failure, FailureKind, CALL_TIMEOUT, CLOSE_TIMEOUT};
use super::config::{random_unit, AmqpSourceConfig};
use super::metrics::{PartitionMetrics, PartitionState};
use super::position::{check, ticks, OpenAt, Seen};
use crate::ack::{AckOutcome, AckToken};
use crate::shutdown::Shutdown;
use crate::source::{Batch, Event, Position};

/// Why a partition's task ended.
#[derive(Debug)]
pub enum End {
    /// Shutdown, or the source stopped taking batches.
    Stopped,
    /// Another receiver took the partition over (owner level).
    Stolen,
    /// Reconnecting cannot help (credentials refused, hub gone, position invalid).
    Fatal(Failure),
}

/// At shutdown, how long closing the connection may take (the source waits for its
/// readers a little longer).
pub const SHUTDOWN_CLOSE: Duration = Duration::from_secs(2);

/// What a session (one client, one receiver) ended with.
enum SessionEnd {
    Stopped,
    /// Before the receiver was open (connecting, authorizing, attaching).
    Failed(Failure),
    /// After the receiver was open and authorized.
    Lost(Failure),
}

/// Everything one partition's task needs.
pub struct PartitionReader {
    pub id: Arc<str>,
    pub source: Arc<str>,
    pub cfg: Arc<AmqpSourceConfig>,
    pub connector: Arc<Connector>,
    /// Where the next open starts: the checkpoint or the configured start until the first
    /// event is handed on, then strictly after the last one.
    pub open_at: OpenAt,
    pub out: mpsc::Sender<Batch>,
    pub acks: mpsc::UnboundedSender<AckOutcome>,
    pub batch_ids: Arc<AtomicU64>,
    pub metrics: Arc<PartitionMetrics>,
    pub shutdown: Shutdown,
}

impl PartitionReader {
    pub async fn run(mut self) -> (Arc<str>, End) {
        let mut attempt: u32 = 0;
        let end = loop {
            if self.shutdown.is_triggered() {
                break End::Stopped;
            }
            let handed_before = self.metrics.events();
            let (failure, was_open) = match self.session().await {
                SessionEnd::Stopped => break End::Stopped,
                SessionEnd::Failed(f) => (f, false),
                SessionEnd::Lost(f) => (f, true),
            };
            self.metrics.error(failure.kind);
            match failure.kind {
                FailureKind::Stolen => {
                    tracing::warn!(source = %self.source, partition = %self.id, detail = %failure.detail,
                        "another receiver took this partition over (owner level); this source stops reading it");
                    break End::Stolen;
                }
                // Authorization lost on an open link (a token expired or was revoked):
                // a new connection gets a fresh token, and a refusal then is fatal.
                FailureKind::Auth if was_open => {}
                k if k.is_fatal() => break End::Fatal(failure),
                _ => {}
            }
            // A session that handed events on was healthy: start the backoff over.
            if self.metrics.events() > handed_before {
                attempt = 0;
            }
            let delay = self.cfg.reconnect.delay(attempt, random_unit());
            attempt = attempt.saturating_add(1);
            tracing::warn!(source = %self.source, partition = %self.id, kind = failure.kind.label(),
                detail = %failure.detail, resume = ?self.open_at, retry_in = ?delay,
                "receiving failed; reconnecting");
            self.metrics.set_state(PartitionState::Reconnecting);
            tokio::select! {
                _ = self.shutdown.wait() => break End::Stopped,
                _ = tokio::time::sleep(delay) => {}
            }
            self.metrics.reconnect();
        };
        self.metrics.set_state(match end {
            End::Stolen => PartitionState::Stolen,
            _ => PartitionState::Stopped,
        });
        (self.id.clone(), end)
    }

    /// One client and one receiver, until an error or shutdown. The client is closed (in
    /// bounded time) whatever happens.
    async fn session(&mut self) -> SessionEnd {
        let mut shutdown = self.shutdown.clone();
        let opened = tokio::select! {
            _ = shutdown.wait() => return SessionEnd::Stopped,
            r = tokio::time::timeout(CALL_TIMEOUT, self.connector.open()) => r,
        };
        let client = match opened {
            Ok(Ok(c)) => c,
            Ok(Err(f)) => return SessionEnd::Failed(f),
            Err(_) => return SessionEnd::Failed(timed_out("opening the connection", CALL_TIMEOUT)),
        };
        let end = self.receive(&client).await;
        let id = self.id.clone();
        let within = match end {
            SessionEnd::Stopped => SHUTDOWN_CLOSE,
            _ => CLOSE_TIMEOUT,
        };
        let close = async move {
            match tokio::time::timeout(within, client.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(partition = %id, error = %e, "closing the connection failed")
                }
                Err(_) => {
                    tracing::debug!(partition = %id, "closing the connection timed out; dropped")
                }
            }
        };
        match end {
            // At shutdown the close is part of the drain (bounded): the service sees the
            // link go at once, and the process does not exit under a half-closed link.
            SessionEnd::Stopped => close.await,
            // After a failure the close itself may hang, and the next connection need not
            // wait for it.
            SessionEnd::Failed(_) | SessionEnd::Lost(_) => {
                tokio::spawn(close);
            }
        }
        end
    }

    async fn receive(&mut self, client: &ConsumerClient) -> SessionEnd {
        let mut shutdown = self.shutdown.clone();
        if self.open_at == OpenAt::Latest {
            let probed = tokio::select! {
                _ = shutdown.wait() => return SessionEnd::Stopped,
                r = self.properties(client, CALL_TIMEOUT) => r,
            };
            match probed {
                Ok(p) => {
                    self.open_at =
                        OpenAt::resolve_latest(p.last_enqueued_sequence_number, p.is_empty);
                }
                Err(f) => return SessionEnd::Failed(f),
            }
        }
        if let Some(before) = self.open_at.before() {
            self.metrics.baseline(before);
        }
        let options = OpenReceiverOptions {
            owner_level: self.cfg.owner_level,
            prefetch: Some(self.cfg.prefetch.max(1)),
            start_position: Some(self.open_at.to_sdk()),
            receive_timeout: None,
        };
        let receiver = match client
            .open_receiver_on_partition(self.id.to_string(), Some(options))
            .await
        {
            Ok(r) => r,
            Err(e) => return SessionEnd::Failed(self.connector.failure(&e)),
        };
        tracing::info!(source = %self.source, partition = %self.id, from = ?self.open_at, "receiving");
        self.metrics.set_state(PartitionState::Receiving);
        let mut stream = std::pin::pin!(receiver.stream_events());
        let max = self.cfg.batch_max_events.max(1);
        let mut gathered: Vec<ReceivedEventData> = Vec::with_capacity(max);
        // The partition's properties are read every poll interval, on this connection: for
        // the lag statistics, and to notice a receiver that gets nothing although events
        // wait (a link that hung when its connection broke at an unlucky moment).
        let every = self.cfg.lag_poll_interval.max(Duration::from_millis(100));
        let mut probe = tokio::time::interval_at(Instant::now() + every, every);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_progress = Instant::now();
        let mut suspect_since: Option<Instant> = None;
        // Whether the service has shown it accepts this session's token (it delivered
        // events, or answered a probe). The SDK authorizes the receiver lazily, so an
        // attach alone proves nothing.
        let mut authorized = false;
        let lost = |f: Failure, authorized: bool| match authorized {
            true => SessionEnd::Lost(f),
            false => SessionEnd::Failed(f),
        };
        loop {
            let ended = tokio::select! {
                _ = shutdown.wait() => return SessionEnd::Stopped,
                _ = probe.tick() => {
                    match self.probe(client, last_progress, &mut suspect_since, every).await {
                        Ok(answered) => authorized |= answered,
                        Err(f) => return lost(f, authorized),
                    }
                    continue;
                }
                g = gather(&mut stream, max, self.cfg.batch_max_wait, &mut gathered) => g,
            };
            last_progress = Instant::now();
            authorized |= !gathered.is_empty();
            let batch = match self.to_batch(&mut gathered) {
                Ok(b) => b,
                Err(f) => return lost(f, authorized),
            };
            if let Some(batch) = batch {
                let last = batch.events.last().map(|e| e.position.sequence_number);
                let bytes: usize = batch.events.iter().map(|e| e.body.len()).sum();
                let n = batch.events.len() as u64;
                tokio::select! {
                    _ = shutdown.wait() => return SessionEnd::Stopped,
                    sent = self.out.send(batch) => if sent.is_err() {
                        return SessionEnd::Stopped;
                    },
                }
                // Waiting for the pipeline is not the receiver stalling.
                last_progress = Instant::now();
                if let Some(last) = last {
                    // Handed on: every reopen now starts strictly after it.
                    self.open_at = OpenAt::After(last);
                    self.metrics.received(n, bytes as u64, last);
                }
            }
            match ended {
                None => {}
                Some(Err(e)) => return lost(self.connector.failure(&e), authorized),
                Some(Ok(())) => {
                    return lost(
                        Failure {
                            kind: FailureKind::Other,
                            status: None,
                            detail: "the receiver's stream ended".to_string(),
                        },
                        authorized,
                    )
                }
            }
        }
    }

    /// The partition's properties (bounded in time), recorded in the statistics.
    async fn properties(
        &self,
        client: &ConsumerClient,
        within: Duration,
    ) -> Result<EventHubPartitionProperties, Failure> {
        match tokio::time::timeout(within, client.get_partition_properties(&self.id)).await {
            Ok(Ok(p)) => {
                self.metrics
                    .enqueued(p.beginning_sequence_number, p.last_enqueued_sequence_number);
                Ok(p)
            }
            Ok(Err(e)) => Err(self.connector.failure(&e)),
            Err(_) => Err(timed_out("reading the partition's properties", within)),
        }
    }

    /// Reads the partition's properties; fails when the connection looks dead (the call
    /// hangs, or fails as disconnected), or when events have waited since the previous
    /// probe (`suspect_since`) and nothing arrived in between. Other errors of the call are
    /// logged only: receiving may still work. Ok(true) when the service answered.
    async fn probe(
        &self,
        client: &ConsumerClient,
        last_progress: Instant,
        suspect_since: &mut Option<Instant>,
        every: Duration,
    ) -> Result<bool, Failure> {
        // A healthy call takes milliseconds; one that takes a poll interval is stuck behind
        // a hung CBS exchange, like the receiver probably is.
        let within = every.clamp(Duration::from_secs(2), CALL_TIMEOUT);
        let p = match self.properties(client, within).await {
            Ok(p) => p,
            Err(f) if f.kind == FailureKind::Other => {
                tracing::debug!(partition = %self.id, detail = %f.detail, "reading the partition's properties failed");
                return Ok(false);
            }
            Err(f) => return Err(f),
        };
        let waiting = self.open_at.waiting(
            p.beginning_sequence_number,
            p.last_enqueued_sequence_number,
            p.is_empty,
        );
        if stalled(waiting, last_progress, suspect_since, Instant::now()) {
            return Err(Failure {
                kind: FailureKind::Disconnected,
                status: None,
                detail: format!(
                    "the receiver got nothing for {:?} although {waiting} events wait",
                    last_progress.elapsed()
                ),
            });
        }
        Ok(true)
    }

    /// Turns gathered SDK events into a batch, dropping replays of events already handed on
    /// and logging gaps. `None` when nothing is left.
    fn to_batch(&self, gathered: &mut Vec<ReceivedEventData>) -> Result<Option<Batch>, Failure> {
        let mut events = Vec::with_capacity(gathered.len());
        // Before the first event of this batch, `open_at` says what comes next.
        let mut last: Option<i64> = None;
        for ev in gathered.drain(..) {
            let Some(seq) = ev.sequence_number() else {
                return Err(Failure {
                    kind: FailureKind::Other,
                    status: None,
                    detail: "an event without x-opt-sequence-number".to_string(),
                });
            };
            match check(seq, last, self.open_at) {
                Seen::Duplicate => {
                    tracing::debug!(partition = %self.id, seq, "dropped a replayed event");
                    continue;
                }
                Seen::Gap { missing } => {
                    tracing::warn!(source = %self.source, partition = %self.id, seq, missing,
                        "events are missing before this one (expired from the hub's retention?)");
                }
                Seen::Next => {}
            }
            last = Some(seq);
            let offset = ev
                .offset()
                .as_deref()
                .and_then(|o| o.parse::<i64>().ok())
                .unwrap_or(-1);
            events.push(Event::new(
                body_of(&ev.raw_amqp_message().body),
                Position {
                    partition: self.id.clone(),
                    offset,
                    sequence_number: seq,
                    enqueued_time: ev.enqueued_time().map(ticks),
                },
            ));
        }
        if events.is_empty() {
            return Ok(None);
        }
        let id = self.batch_ids.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Batch::new(
            self.source.clone(),
            events,
            AckToken::new(id, self.acks.clone()),
        )))
    }
}

/// An event's body as the pipeline gets it. Event Hubs producers send one data section;
/// several are joined (the SDK's own `EventData` would drop such a body), and a string or
/// binary value body is taken as its bytes. Anything else is an empty body, which the
/// parser rejects and counts. Read from the raw message: one copy, not the SDK's two.
fn body_of(body: &AmqpMessageBody) -> Vec<u8> {
    match body {
        AmqpMessageBody::Binary(sections) => match sections.as_slice() {
            [one] => one.clone(),
            many => many.concat(),
        },
        AmqpMessageBody::Value(AmqpValue::String(s)) => s.as_bytes().to_vec(),
        AmqpMessageBody::Value(AmqpValue::Binary(b)) => b.clone(),
        _ => Vec::new(),
    }
}

fn timed_out(what: &str, after: Duration) -> Failure {
    Failure {
        kind: FailureKind::Disconnected,
        status: None,
        detail: format!("{what} timed out after {after:?}"),
    }
}

/// Whether a receiver is stuck: events wait now and already waited at the previous probe
/// (`suspect_since`), and nothing arrived since then (`last_progress`). Updates the suspicion.
fn stalled(
    waiting: i64,
    last_progress: Instant,
    suspect_since: &mut Option<Instant>,
    now: Instant,
) -> bool {
    if waiting <= 0 {
        *suspect_since = None;
        return false;
    }
    match *suspect_since {
        Some(since) if last_progress <= since => true,
        _ => {
            *suspect_since = Some(now);
            false
        }
    }
}

/// Gathers up to `max` items into `out`: waits for the first, then takes more until `max`
/// or until `max_wait` has passed since the first. Returns `None` when the batch is done,
/// `Some(Err)` on an error and `Some(Ok(()))` when the stream ended; in both of those,
/// `out` holds what came before. Cancel-safe: an item is either in `out` or still in the
/// stream, so a cancelled call can simply be made again.
pub async fn gather<S, T, E>(
    stream: &mut S,
    max: usize,
    max_wait: Duration,
    out: &mut Vec<T>,
) -> Option<Result<(), E>>
where
    S: Stream<Item = Result<T, E>> + Unpin,
{
    // Resumed with a partial batch (the previous call was cancelled): it may wait one more
    // `max_wait`, no longer.
    let mut deadline: Option<Instant> = (!out.is_empty()).then(|| Instant::now() + max_wait);
    while out.len() < max {
        let item = match deadline {
            None => stream.next().await,
            Some(d) => match tokio::time::timeout_at(d, stream.next()).await {
                Ok(item) => item,
                Err(_) => break,
            },
        };
        match item {
            Some(Ok(x)) => {
                out.push(x);
                deadline.get_or_insert_with(|| Instant::now() + max_wait);
            }
            Some(Err(e)) => return Some(Err(e)),
            None => return Some(Ok(())),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    #[test]
    fn bodies_come_from_every_data_section_or_a_text_value() {
        let one = AmqpMessageBody::Binary(vec![br#"{"records":[]}"#.to_vec()]);
        assert_eq!(body_of(&one), br#"{"records":[]}"#);
        let split = AmqpMessageBody::Binary(vec![br#"{"records""#.to_vec(), b":[]}".to_vec()]);
        assert_eq!(body_of(&split), br#"{"records":[]}"#);
        let text = AmqpMessageBody::Value(AmqpValue::String("{}".into()));
        assert_eq!(body_of(&text), b"{}");
        let binary = AmqpMessageBody::Value(AmqpValue::Binary(b"{}".to_vec()));
        assert_eq!(body_of(&binary), b"{}");
        // What no parser can read arrives empty, and is rejected and counted downstream.
        assert!(body_of(&AmqpMessageBody::Value(AmqpValue::Long(7))).is_empty());
        assert!(body_of(&AmqpMessageBody::Empty).is_empty());
    }

    #[tokio::test]
    async fn gather_stops_at_the_size_limit() {
        let mut s = stream::iter((0..10).map(Ok::<i32, ()>));
        let mut out = Vec::new();
        assert_eq!(
            gather(&mut s, 4, Duration::from_secs(60), &mut out).await,
            None
        );
        assert_eq!(out, [0, 1, 2, 3]);
        out.clear();
        assert_eq!(
            gather(&mut s, 4, Duration::from_secs(60), &mut out).await,
            None
        );
        assert_eq!(out, [4, 5, 6, 7]);
        out.clear();
        assert_eq!(
            gather(&mut s, 4, Duration::from_secs(60), &mut out).await,
            Some(Ok(())),
            "the end, with what came before it"
        );
        assert_eq!(out, [8, 9]);
    }

    #[tokio::test]
    async fn gather_reports_an_error_after_what_came_before() {
        let mut s = stream::iter(vec![Ok(1), Ok(2), Err("boom"), Ok(3)]);
        let mut out = Vec::new();
        assert_eq!(
            gather(&mut s, 10, Duration::from_secs(60), &mut out).await,
            Some(Err("boom"))
        );
        assert_eq!(out, [1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_goes_out_after_max_wait() {
        let (tx, rx) = mpsc::unbounded_channel::<Result<i32, ()>>();
        let mut s = tokio_stream_from(rx);
        tx.send(Ok(1)).unwrap();
        tx.send(Ok(2)).unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        assert_eq!(
            gather(&mut s, 10, Duration::from_millis(200), &mut out).await,
            None
        );
        assert_eq!(out, [1, 2]);
        assert_eq!(started.elapsed(), Duration::from_millis(200));

        // An idle stream: gather waits for the first item however long it takes.
        out.clear();
        let waiting = gather(&mut s, 10, Duration::from_millis(200), &mut out);
        let sender = async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            tx.send(Ok(3)).unwrap();
        };
        let (got, ()) = tokio::join!(waiting, sender);
        assert_eq!(got, None);
        assert_eq!(out, [3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_partial_batch_still_goes_out_in_time() {
        let mut s = stream::pending::<Result<i32, ()>>();
        let mut out = vec![1];
        let started = Instant::now();
        assert_eq!(
            gather(&mut s, 10, Duration::from_millis(200), &mut out).await,
            None
        );
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        assert_eq!(out, [1]);
    }

    #[test]
    fn a_receiver_is_stuck_only_if_events_waited_through_a_whole_probe_interval() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut suspect = None;
        // Idle: nothing waits, never stuck.
        assert!(!stalled(0, t0, &mut suspect, at(1000)));
        assert_eq!(suspect, None);
        // An event just arrived in the hub: suspicious, not stuck yet.
        assert!(!stalled(1, t0, &mut suspect, at(2000)));
        assert_eq!(suspect, Some(at(2000)));
        // It was received in between: still events waiting (a stream), but progress.
        assert!(!stalled(5, at(2500), &mut suspect, at(3000)));
        assert_eq!(suspect, Some(at(3000)));
        // Nothing since the previous probe while events wait: stuck.
        assert!(stalled(9, at(2500), &mut suspect, at(4000)));
        // Caught up: suspicion cleared.
        assert!(!stalled(0, at(2500), &mut suspect, at(5000)));
        assert_eq!(suspect, None);
    }

    fn tokio_stream_from<T>(mut rx: mpsc::UnboundedReceiver<T>) -> impl Stream<Item = T> + Unpin {
        Box::pin(stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
