//! Sources: where bodies come from. Every source (file replay, Event Hubs over AMQP, the
//! Kafka endpoint) has the same shape: config → `build()` → `run(out, shutdown)`,
//! sending [`Batch`]es of bodies with their positions and an acknowledgement token, and
//! committing a position (to the checkpoint store, or a Kafka group) only once the
//! pipeline acknowledged it. The rules of that are in one place, `ledger.rs`, which
//! `forward.rs` drives on the runtime and the Kafka source on its consumer thread.

pub mod amqp;
pub mod file;
pub mod forward;
pub mod kafka;
pub mod ledger;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::ack::AckToken;
use crate::checkpoint::CheckpointStore;
use crate::config::SourceSettings;
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;

/// Where an event sits in its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Event Hubs partition id, Kafka partition, or a file path.
    pub partition: Arc<str>,
    /// Event Hubs offset, Kafka offset, or the byte offset of a file line.
    pub offset: i64,
    /// Event Hubs sequence number, or the line number of a file.
    pub sequence_number: i64,
    /// When the broker accepted the event (ticks); files have none.
    pub enqueued_time: Option<i64>,
}

#[derive(Debug)]
pub struct Event {
    pub body: Vec<u8>,
    pub position: Position,
    /// The first event of a partition that starts over (a file truncated or replaced):
    /// positions before it belong to other content, so nothing before it is a duplicate.
    pub rewound: bool,
    /// At or before the source's checkpoint when it started reading the partition: read
    /// again to rebuild window state, already forwarded in an earlier run, so it updates
    /// windows only.
    pub replayed: bool,
    /// The body's real size when the source kept only its first bytes (a file line longer
    /// than `max_line_bytes`): the parser rejects it with this size.
    pub cut_from: Option<u64>,
}

impl Event {
    pub fn new(body: Vec<u8>, position: Position) -> Event {
        Event {
            body,
            position,
            rewound: false,
            replayed: false,
            cut_from: None,
        }
    }
}

/// A group of events handed to the pipeline together.
#[derive(Debug)]
pub struct Batch {
    /// The source's configured name.
    pub source: Arc<str>,
    pub events: Vec<Event>,
    /// Acknowledge once every event is absorbed.
    pub ack: AckToken,
    /// A change in the partitions this source reads, carried out before the events (a
    /// batch that carries one usually has none). In line with the batches, so that the
    /// engine sees it after everything sent before it.
    pub ownership: Option<Ownership>,
}

impl Batch {
    pub fn new(source: Arc<str>, events: Vec<Event>, ack: AckToken) -> Batch {
        Batch {
            source,
            events,
            ack,
            ownership: None,
        }
    }

    /// A batch that carries only a change of the partitions a source reads.
    pub fn change(source: Arc<str>, change: Ownership, ack: AckToken) -> Batch {
        Batch {
            ownership: Some(change),
            ..Batch::new(source, Vec::new(), ack)
        }
    }
}

/// Partitions that come to or leave a source that shares its input with other replicas (a
/// Kafka consumer group). The batch that carries a change is acknowledged once the engine
/// carried it out.
#[derive(Debug)]
pub enum Ownership {
    /// These partitions are now this replica's: restore their window state before their
    /// first event, and answer where each must be read from (`resume`) so that every query
    /// gets what its state lacks.
    Acquire {
        partitions: Vec<Arc<str>>,
        resume: Option<tokio::sync::oneshot::Sender<crate::state::Resume>>,
    },
    /// These partitions go to another replica: store their window state now, then forget
    /// it (the next owner restores it).
    Release(Vec<Arc<str>>),
    /// These partitions were taken without a revocation (this replica was cut off): forget
    /// their state without storing it, since the next owner may already have written newer.
    Discard(Vec<Arc<str>>),
}

impl Ownership {
    /// Acquiring these partitions; the answer arrives on the receiver once the change is
    /// carried out (before its batch is acknowledged).
    pub fn acquire(
        partitions: Vec<Arc<str>>,
    ) -> (
        Ownership,
        tokio::sync::oneshot::Receiver<crate::state::Resume>,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let change = Ownership::Acquire {
            partitions,
            resume: Some(tx),
        };
        (change, rx)
    }

    /// Answers an acquisition with where its partitions resume (nothing for the others).
    pub fn answer(&mut self, found: crate::state::Resume) {
        if let Ownership::Acquire { resume, .. } = self {
            if let Some(tx) = resume.take() {
                // The source may have given up waiting; it then stops anyway.
                let _ = tx.send(found);
            }
        }
    }
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A running source: sends batches until its input ends or shutdown is signalled.
pub trait Source: Send {
    fn name(&self) -> &str;
    fn run(
        self: Box<Self>,
        out: mpsc::Sender<Batch>,
        shutdown: Shutdown,
    ) -> BoxFuture<anyhow::Result<()>>;
}

/// What a source takes from the service when it builds itself.
pub struct SourceContext {
    /// Where acknowledged positions are committed (sources that keep their own).
    pub checkpoints: Option<Arc<dyn CheckpointStore>>,
    /// With checkpoints on: how often a source commits (the snapshot interval).
    pub commit_interval: Option<Duration>,
    /// Where partitions with restored window state resume, and which are read again from
    /// their oldest event to rebuild state the store lacks.
    pub resume: Arc<crate::state::Resume>,
    /// Where replicas claim partitions (a shared blob container): an AMQP source then reads
    /// only the partitions it wins, restoring each one's window state as it does.
    pub ownership: Option<Arc<dyn crate::checkpoint::OwnershipStore>>,
    /// Partitions whose stored state another replica wrote since this one read it, as
    /// (source, partition): their state here was dropped.
    pub fenced: Option<tokio::sync::broadcast::Sender<(String, String)>>,
    pub metrics: Arc<Metrics>,
}

impl SourceContext {
    /// A source's commit interval and final wait for outcomes, given its own defaults. With
    /// checkpoints on, it commits at the snapshot interval, and since acknowledgements wait
    /// for the engine's next snapshot round, its end waits at least two rounds and a write.
    pub fn commit_timing(&self, interval: Duration, ack_wait: Duration) -> (Duration, Duration) {
        match self.commit_interval {
            Some(every) => (every, ack_wait.max(every * 2 + Duration::from_secs(5))),
            None => (interval, ack_wait),
        }
    }

    /// The series of a source's successful commits.
    pub fn commit_metrics(&self, source: &str) -> forward::CommitMetrics {
        let s = &self.metrics.source;
        forward::CommitMetrics {
            count: s.checkpoint_commits.with_label_values(&[source]),
            last: s.last_commit.with_label_values(&[source]),
        }
    }
}

impl SourceSettings {
    /// The source's configured name.
    pub fn name(&self) -> &str {
        match self {
            SourceSettings::File { name, .. } => name,
            SourceSettings::Amqp(cfg) => &cfg.name,
            SourceSettings::Kafka(cfg) => &cfg.name,
        }
    }

    /// The configured source, ready to `run`: each kind builds itself beside its code.
    pub fn build(&self, cx: &SourceContext) -> Box<dyn Source> {
        match self {
            SourceSettings::File {
                name,
                paths,
                follow,
            } => Box::new(file::FileSource::build(name, paths, *follow, cx)),
            SourceSettings::Amqp(cfg) => Box::new(amqp::AmqpSource::build(cfg, cx)),
            SourceSettings::Kafka(cfg) => Box::new(kafka::KafkaSource::build(cfg, cx)),
        }
    }
}
