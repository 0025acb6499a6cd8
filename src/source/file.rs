//! The file source: bodies one per line, from files, directories (every regular file, by
//! name, not recursive) or standard input (`-`), optionally following files as they grow.
//! Positions are the byte offset and the 0-based number of each line (empty lines count but
//! are not bodies); acknowledged positions go to the checkpoint store, and a restart resumes
//! strictly after the last one.
//!
//! Two owners, one channel between them:
//!
//! - the reader thread (`file/reader.rs`) owns the files: it splits lines and builds batches;
//! - the source's task (here) owns the acknowledgement side: it forwards each batch to the
//!   pipeline, registering it with the [`PositionTracker`] first, takes the outcomes, and
//!   commits settled positions every `commit_interval` and once at the end.
//!
//! Because registration and outcomes happen in the same task, an outcome can never arrive
//! before its batch is registered. Memory is bounded: the reader→task channel holds one
//! batch, the pipeline's channel is the caller's (bounded), and the task stops taking batches
//! while `max_outstanding_batches` await their outcome.

mod reader;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Batch, BoxFuture, Source};
use crate::ack::AckOutcome;
use crate::checkpoint::{
    CheckpointError, CheckpointStore, CommitError, Committer, PositionTracker,
};
use crate::shutdown::Shutdown;
use reader::{Reader, ReaderMsg};

#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    /// Source name, used in checkpoints, metrics and dead letters.
    pub name: String,
    /// Files, directories (every regular file inside, sorted by name, non-recursive), or `-`
    /// for standard input. Each file is a partition named by its path as given or found.
    pub paths: Vec<PathBuf>,
    /// Keep reading as files grow (like `tail -F`): new files in a watched directory are
    /// picked up; a file that shrinks or is replaced is read again from its start. Standard
    /// input is read to its end once. Runs until shutdown.
    pub follow: bool,
    /// How often followed files are checked for growth (default 250 ms).
    pub poll_interval: Duration,
    /// Events per batch at most (default 256).
    pub batch_max_events: usize,
    /// Body bytes per batch at most (default 4 MiB); a single larger line is a batch alone.
    pub batch_max_bytes: usize,
    /// In follow mode, a partial batch is sent after this long (default 200 ms). Without
    /// follow, files are read at disk speed and only the last batch is partial.
    pub batch_max_wait: Duration,
    /// Bytes buffered per line (default 64 MiB). A longer line is still delivered, cut to
    /// this many bytes (the rest is skipped, positions stay exact), and the parser rejects it
    /// as too large; this bounds memory against a file without newlines.
    pub max_line_bytes: usize,
    /// How often acknowledged positions are committed (default 1 s).
    pub commit_interval: Duration,
    /// Batches sent whose outcome has not arrived yet, at most (default 16384: acknowledgements
    /// wait for the next snapshot of the window state, seconds away); reading pauses at the
    /// limit. Bounds the position tracker.
    pub max_outstanding_batches: usize,
    /// At the end, how long to wait for outcomes of batches in flight before committing
    /// (default 5 s): after shutdown, this long in total; at the end of the input, until
    /// this long passes without any outcome (a slow pipeline that still makes progress is
    /// waited for).
    pub ack_wait: Duration,
}

impl FileSourceConfig {
    /// A configuration with the defaults.
    pub fn new(name: impl Into<String>, paths: Vec<PathBuf>) -> FileSourceConfig {
        FileSourceConfig {
            name: name.into(),
            paths,
            follow: false,
            poll_interval: Duration::from_millis(250),
            batch_max_events: 256,
            batch_max_bytes: 4 << 20,
            batch_max_wait: Duration::from_millis(200),
            max_line_bytes: 64 << 20,
            commit_interval: Duration::from_secs(1),
            max_outstanding_batches: 16_384,
            ack_wait: Duration::from_secs(5),
        }
    }
}

/// Why the file source stopped.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("input {}: no such file or directory", path.display())]
    Missing { path: PathBuf },
    #[error("input {}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the checkpoint of {partition}: {source}")]
    Checkpoint {
        partition: String,
        #[source]
        source: CheckpointError,
    },
    #[error("committing positions: {0}")]
    Commit(#[from] CommitError),
    #[error("starting the file reader thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the file reader thread stopped unexpectedly")]
    ReaderLost,
}

/// Counters readable while the source runs (shared with whoever holds [`FileSource::stats`];
/// atomics because the reader is another task, relaxed because each is independent).
#[derive(Debug, Default)]
pub struct FileSourceCounters {
    pub events: AtomicU64,
    pub batches: AtomicU64,
    pub batches_acked: AtomicU64,
    pub batches_failed: AtomicU64,
    pub commits: AtomicU64,
}

/// A snapshot of [`FileSourceCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileSourceStats {
    /// Events sent to the pipeline.
    pub events: u64,
    /// Batches sent to the pipeline.
    pub batches: u64,
    /// Batches every consumer acknowledged.
    pub batches_acked: u64,
    /// Batches some consumer did not deliver.
    pub batches_failed: u64,
    /// Successful checkpoint writes.
    pub commits: u64,
}

impl FileSourceCounters {
    pub fn snapshot(&self) -> FileSourceStats {
        FileSourceStats {
            events: self.events.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            batches_acked: self.batches_acked.load(Ordering::Relaxed),
            batches_failed: self.batches_failed.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

pub struct FileSource {
    cfg: FileSourceConfig,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    stats: Arc<FileSourceCounters>,
}

impl FileSource {
    pub fn new(cfg: FileSourceConfig, checkpoints: Option<Arc<dyn CheckpointStore>>) -> FileSource {
        FileSource {
            cfg,
            checkpoints,
            stats: Arc::default(),
        }
    }

    /// The live counters; take this before `run` consumes the source.
    pub fn stats(&self) -> Arc<FileSourceCounters> {
        self.stats.clone()
    }
}

impl Source for FileSource {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn run(
        self: Box<Self>,
        out: mpsc::Sender<Batch>,
        shutdown: Shutdown,
    ) -> BoxFuture<anyhow::Result<()>> {
        Box::pin(async move { run(*self, out, shutdown).await.map_err(anyhow::Error::from) })
    }
}

/// Why the forwarding loop ended.
#[derive(PartialEq)]
enum End {
    /// The reader finished (input ended, or an error) and everything it read was sent.
    Input,
    /// Shutdown was signalled, or the pipeline stopped taking batches.
    Stop,
}

async fn run(
    src: FileSource,
    out: mpsc::Sender<Batch>,
    mut shutdown: Shutdown,
) -> Result<(), FileSourceError> {
    let FileSource {
        cfg,
        checkpoints,
        stats,
    } = src;
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<AckOutcome>();
    // Capacity 1: the reader works at most one batch ahead of what the pipeline accepted.
    let (batch_tx, mut batch_rx) = mpsc::channel::<ReaderMsg>(1);
    reader::spawn(Reader::new(
        cfg.clone(),
        checkpoints.clone(),
        shutdown.clone(),
        batch_tx,
        ack_tx,
    ))?;

    let mut acks = Acks {
        source: cfg.name.clone(),
        committer: Committer::new(checkpoints, cfg.name.clone()),
        tracker: PositionTracker::new(),
        stats,
    };
    let every = cfg.commit_interval.max(Duration::from_millis(1));
    let mut commit_tick = tokio::time::interval_at(Instant::now() + every, every);
    commit_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let max_outstanding = cfg.max_outstanding_batches.max(1);

    // A batch taken from the reader, waiting for room in the pipeline.
    let mut held: Option<Batch> = None;
    let mut finished: Option<Result<(), FileSourceError>> = None;
    let end = loop {
        if finished.is_some() && held.is_none() {
            break End::Input;
        }
        let take =
            held.is_none() && finished.is_none() && acks.tracker.outstanding() < max_outstanding;
        tokio::select! {
            biased;
            _ = shutdown.wait() => break End::Stop,
            Some(outcome) = ack_rx.recv() => acks.settle(&outcome),
            _ = commit_tick.tick() => acks.commit_or_log().await,
            permit = out.reserve(), if held.is_some() => match (permit, held.take()) {
                (Ok(permit), Some(batch)) => {
                    acks.tracker.register(batch.ack.batch(), batch.events.iter().map(|e| &e.position));
                    FileSourceCounters::add(&acks.stats.events, batch.events.len() as u64);
                    FileSourceCounters::add(&acks.stats.batches, 1);
                    permit.send(batch);
                }
                _ => {
                    tracing::warn!(source = %cfg.name, "the pipeline stopped taking batches; stopping");
                    break End::Stop;
                }
            },
            msg = batch_rx.recv(), if take => match msg {
                Some(ReaderMsg::Batch(batch)) => held = Some(batch),
                Some(ReaderMsg::Done(result)) => finished = Some(result),
                None => finished = Some(Err(FileSourceError::ReaderLost)),
            },
        }
    };

    // Stop the reader (its next send fails), drop what was never sent (never registered, so
    // its outcome is ignored), and tell the pipeline the input ended, so that it can finish
    // and acknowledge what it holds.
    drop(batch_rx);
    drop(held);
    drop(out);
    acks.wait_for_outcomes(
        &mut ack_rx,
        &mut commit_tick,
        &mut shutdown,
        end == End::Stop,
        cfg.ack_wait,
    )
    .await;
    let committed = acks.commit().await;
    match finished {
        Some(Err(e)) => Err(e),
        _ => committed,
    }
}

/// The acknowledgement side: the tracker and what was committed, owned by the source's task.
struct Acks {
    source: String,
    tracker: PositionTracker,
    /// Writes settled positions (only those that moved).
    committer: Committer,
    stats: Arc<FileSourceCounters>,
}

impl Acks {
    fn settle(&mut self, outcome: &AckOutcome) {
        if self.tracker.resolve(outcome) {
            let counter = if outcome.delivered {
                &self.stats.batches_acked
            } else {
                &self.stats.batches_failed
            };
            FileSourceCounters::add(counter, 1);
        }
    }

    /// Waits for the outcomes of batches in flight: at most `wait` in total once `stopping`
    /// (shutdown), or until `wait` passes without an outcome at the end of the input.
    async fn wait_for_outcomes(
        &mut self,
        ack_rx: &mut mpsc::UnboundedReceiver<AckOutcome>,
        commit_tick: &mut tokio::time::Interval,
        shutdown: &mut Shutdown,
        mut stopping: bool,
        wait: Duration,
    ) {
        let mut deadline = Instant::now() + wait;
        while self.tracker.outstanding() > 0 {
            tokio::select! {
                biased;
                outcome = ack_rx.recv() => match outcome {
                    Some(outcome) => {
                        self.settle(&outcome);
                        if !stopping {
                            deadline = Instant::now() + wait;
                        }
                    }
                    // Every token is gone, so every outcome has arrived.
                    None => break,
                },
                _ = shutdown.wait(), if !stopping => stopping = true,
                _ = commit_tick.tick() => self.commit_or_log().await,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(source = %self.source, outstanding = self.tracker.outstanding(),
                        "gave up waiting for acknowledgements; those batches will be read again after a restart");
                    break;
                }
            }
        }
    }

    /// A periodic commit: a failure is logged and the next tick tries again.
    async fn commit_or_log(&mut self) {
        if let Err(e) = self.commit().await {
            tracing::warn!(source = %self.source, error = %e, "committing positions failed; retrying at the next interval");
        }
    }

    /// Stores the positions that settled since the last commit. Standard input (`-`) has no
    /// position worth keeping: it cannot be re-read.
    async fn commit(&mut self) -> Result<(), FileSourceError> {
        // Standard input (`-`) has no position worth keeping: it cannot be re-read.
        let settled = self
            .tracker
            .committable()
            .into_iter()
            .filter(|(p, _)| p != "-")
            .collect();
        match self.committer.commit(settled).await {
            Ok(written) => {
                if written {
                    FileSourceCounters::add(&self.stats.commits, 1);
                }
                Ok(())
            }
            Err(e) => Err(FileSourceError::Commit(e)),
        }
    }
}

#[cfg(test)]
mod tests;
