//! [`KafkaSource`] and its consumer thread.
//!
//! The loop, each turn: settle the outcomes that arrived, commit if `commit_interval`
//! passed, forward a due batch if the pipeline has room, then poll librdkafka for the next
//! message (which also runs the callbacks: rebalances, statistics, errors, tokens). While
//! the pipeline has no room or too many batches are in flight, the owned partitions are
//! paused — librdkafka stops fetching, the group keeps its members — and the thread waits
//! for room or an outcome instead; nothing is buffered beyond one batch.
//!
//! On shutdown: unsent events are dropped (never registered, so read again later), the
//! outcomes of what the pipeline holds are awaited (at most `ack_wait`), offsets are
//! committed, and closing the consumer leaves the group — its revoke callback commits
//! nothing new and releases the partitions at once, so the group rebalances without waiting
//! for the session timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::config::{Connection, KafkaSourceConfig};
use super::context::{HubContext, TokenSource};
use super::core::{Core, Limits};
use super::KafkaSourceError;
use crate::shutdown::Shutdown;
use crate::source::{Batch, BoxFuture, Source, SourceContext};
use crate::telemetry::metrics::KafkaMetrics;

/// The longest `poll` when nothing is being gathered (bounds the shutdown latency).
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How long one wait for room in the pipeline lasts before callbacks are served again.
const HELD_WAIT: Duration = Duration::from_millis(20);
/// How often positions and lag are published.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

pub struct KafkaSource {
    cfg: KafkaSourceConfig,
    prom: KafkaMetrics,
}

impl KafkaSource {
    /// The configured Kafka source. Its offsets are committed to the consumer group, not to
    /// the service's checkpoints; its window state follows its partitions through the
    /// engine.
    pub fn build(cfg: &KafkaSourceConfig, cx: &SourceContext) -> KafkaSource {
        KafkaSource::new(cfg.clone(), cx.metrics.kafka.clone())
    }

    /// A source that reports into these series (`Metrics::kafka`).
    pub fn new(cfg: KafkaSourceConfig, prom: KafkaMetrics) -> KafkaSource {
        KafkaSource { cfg, prom }
    }
}

impl Source for KafkaSource {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn run(
        self: Box<Self>,
        out: mpsc::Sender<Batch>,
        shutdown: Shutdown,
    ) -> BoxFuture<anyhow::Result<()>> {
        let KafkaSource { cfg, prom } = *self;
        let name = cfg.name.clone();
        let handle = Handle::current();
        let (done_tx, done_rx) = oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("kafka-{name}"))
            .spawn(move || {
                let _ = done_tx.send(consume(cfg, prom, out, shutdown, handle));
            });
        Box::pin(async move {
            if let Err(e) = spawned {
                anyhow::bail!("source '{name}': starting the consumer thread: {e}");
            }
            match done_rx.await {
                Ok(result) => result.map_err(anyhow::Error::from),
                Err(_) => Err(KafkaSourceError::Panicked { source_name: name }.into()),
            }
        })
    }
}

fn consume(
    cfg: KafkaSourceConfig,
    prom: KafkaMetrics,
    out: mpsc::Sender<Batch>,
    shutdown: Shutdown,
    handle: Handle,
) -> Result<(), KafkaSourceError> {
    let source: Arc<str> = Arc::from(cfg.name.as_str());
    let target = cfg.target();
    let client_error = |detail: String| KafkaSourceError::Client {
        source_name: cfg.name.clone(),
        detail,
    };
    let token = match &cfg.connection {
        Connection::EventHubsEntra {
            namespace,
            kind,
            client_id,
        } => Some(TokenSource {
            credential: crate::source::amqp::entra_credential(*kind, client_id.clone())
                .map_err(|e| client_error(format!("Entra ID credential: {e}")))?,
            scope: format!("https://{namespace}/.default"),
        }),
        _ => None,
    };
    let core = Core::new(
        source.clone(),
        Limits {
            batch_max_events: cfg.batch_max_events.max(1),
            batch_max_wait: cfg.batch_max_wait,
            max_outstanding_batches: cfg.max_outstanding_batches.max(1),
        },
        out,
        prom.clone(),
    );
    let ctx = HubContext::new(
        core,
        source.clone(),
        target.clone(),
        cfg.secrets(),
        prom,
        handle,
        cfg.ack_wait,
        token,
    );
    let mut client = ClientConfig::new();
    for (k, v) in cfg.client_properties().expose() {
        client.set(k, v);
    }
    client.set_log_level(RDKafkaLogLevel::Warning);
    let consumer: BaseConsumer<HubContext> = client
        .create_with_context(ctx)
        .map_err(|e| client_error(scrub_all(&e.to_string(), &cfg)))?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| client_error(format!("subscribing to {topics:?}: {e}")))?;
    tracing::info!(source = %source, %target, topics = ?cfg.topics, group = %cfg.group_id,
        "Kafka consumer started");

    let ctx = consumer.context().clone();
    let handle = ctx.handle().clone();
    let mut paused: Option<u64> = None;
    let mut last_commit = Instant::now();
    let mut last_refresh = Instant::now();
    loop {
        if shutdown.is_triggered() || ctx.is_fatal() {
            break;
        }
        let now = Instant::now();
        let (held, wait, generation, closed) = {
            let mut core = ctx.core();
            core.drain_acks();
            if now.duration_since(last_commit) >= cfg.commit_interval {
                last_commit = now;
                if let Err(e) = core.commit(&consumer, None) {
                    tracing::warn!(source = %source, error = %ctx.scrub(&e),
                        "committing offsets failed; retried at the next interval");
                }
            }
            if now.duration_since(last_refresh) >= REFRESH_EVERY {
                last_refresh = now;
                core.refresh_metrics();
                tracing::debug!(source = %source, state = %core.describe(), paused = ?paused, "consumer state");
            }
            let held = core.forward(now);
            (
                held,
                core.poll_wait(now, IDLE_POLL),
                core.generation,
                core.pipeline_closed(),
            )
        };
        if closed {
            tracing::warn!(source = %source, "the pipeline stopped taking batches; stopping");
            break;
        }
        // Pause while held back; re-pause when the owned set changed (new partitions
        // arrive unpaused).
        let want = held.then_some(generation);
        if want != paused {
            let tpl = ctx.core().assignment();
            let r = if held {
                consumer.pause(&tpl)
            } else {
                consumer.resume(&tpl)
            };
            if let Err(e) = r {
                tracing::debug!(source = %source, error = %e, held, "pause/resume");
            }
            paused = want;
        }
        let polled = if held {
            ctx.core().wait_for_room(&handle, HELD_WAIT);
            consumer.poll(Duration::ZERO)
        } else {
            consumer.poll(wait)
        };
        match polled {
            Some(Ok(m)) => {
                let ts = m.timestamp().to_millis();
                ctx.core().push(
                    m.topic(),
                    m.partition(),
                    m.offset(),
                    ts,
                    m.payload().unwrap_or(&[]),
                    Instant::now(),
                );
            }
            Some(Err(e)) => ctx.record_error(&e, "consuming"),
            None => {}
        }
    }

    // Drain: stop forwarding, wait for what the pipeline holds, commit.
    {
        let mut core = ctx.core();
        core.stop_forwarding();
        if !core.settle(&handle, None, Instant::now() + cfg.ack_wait) {
            tracing::warn!(source = %source, wait = ?cfg.ack_wait,
                "batches were still in the pipeline at shutdown; they are read again at the next start");
        }
        match core.commit(&consumer, None) {
            Ok(n) => tracing::info!(source = %source, partitions = n, offsets = ?core.offsets(),
                "final offsets committed"),
            Err(e) => tracing::warn!(source = %source, error = %ctx.scrub(&e),
                "the final commit failed; the next owner re-reads from the last commit"),
        }
        core.refresh_metrics();
    }
    // Leaves the group (the revoke callback releases the partitions).
    drop(consumer);
    match ctx.take_fatal() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn scrub_all(text: &str, cfg: &KafkaSourceConfig) -> String {
    crate::source::amqp::scrub(text, &cfg.secrets())
}
