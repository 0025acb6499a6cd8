//! The file source: bodies one per line, from files, directories (every regular file, by
//! name, not recursive) or standard input (`-`), optionally following files as they grow.
//! Positions are the byte offset and the 0-based number of each line (empty lines count but
//! are not bodies); acknowledged positions go to the checkpoint store, and a restart resumes
//! strictly after the last one.
//!
//! Two owners, one channel between them:
//!
//! - the reader thread (`file/reader.rs`) owns the files: it splits lines and builds batches;
//! - the source's task (here) owns the acknowledgement side, the [`Forwarder`] every source
//!   shares: each batch is registered before it goes to the pipeline, outcomes settle, and
//!   settled positions are committed every `commit_interval` and once at the end.
//!
//! Memory is bounded: the reader→task channel holds one batch, the pipeline's channel is the
//! caller's (bounded), and the task stops taking batches while `max_outstanding_batches`
//! await their outcome.

mod lines;
mod reader;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::forward::{CommitMetrics, Drive, ForwardSettings, Forwarder};
use super::ledger::{ForwardCounters, NoProgress};
use super::{Batch, BoxFuture, Source, SourceContext};
use crate::ack::AckOutcome;
use crate::checkpoint::{CheckpointError, CheckpointStore, CommitError};
use crate::shutdown::Shutdown;
use crate::state::Resume;
pub use lines::{Line, Lines, DEFAULT_MAX_LINE_BYTES};
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
    /// this many bytes (the rest is skipped but counted, positions stay exact), and the
    /// parser rejects it as `body_too_large` with its real size; this bounds memory against
    /// a file without newlines.
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
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
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
    #[error("loading the checkpoints: {0}")]
    Checkpoint(#[source] CheckpointError),
    #[error("committing positions: {0}")]
    Commit(#[from] CommitError),
    #[error("starting the file reader thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the file reader thread stopped unexpectedly")]
    ReaderLost,
}

pub struct FileSource {
    cfg: FileSourceConfig,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    stats: Arc<ForwardCounters>,
    commits: Option<CommitMetrics>,
    resume: Arc<Resume>,
}

impl FileSource {
    pub fn new(cfg: FileSourceConfig, checkpoints: Option<Arc<dyn CheckpointStore>>) -> FileSource {
        FileSource {
            cfg,
            checkpoints,
            stats: Arc::default(),
            commits: None,
            resume: Arc::default(),
        }
    }

    /// The configured file source, committing to the service's checkpoints.
    pub fn build(name: &str, paths: &[PathBuf], follow: bool, cx: &SourceContext) -> FileSource {
        let mut cfg = FileSourceConfig::new(name, paths.to_vec());
        cfg.follow = follow;
        (cfg.commit_interval, cfg.ack_wait) = cx.commit_timing(cfg.commit_interval, cfg.ack_wait);
        let mut source = FileSource::new(cfg, cx.checkpoints.clone());
        source.commits = Some(cx.commit_metrics(name));
        source.resume = cx.resume.clone();
        source
    }

    /// The live counters; take this before `run` consumes the source.
    pub fn stats(&self) -> Arc<ForwardCounters> {
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

async fn run(
    src: FileSource,
    out: mpsc::Sender<Batch>,
    mut shutdown: Shutdown,
) -> Result<(), FileSourceError> {
    let FileSource {
        cfg,
        checkpoints,
        stats,
        commits,
        resume,
    } = src;
    let loaded = match &checkpoints {
        Some(store) => store
            .load(&cfg.name)
            .await
            .map_err(FileSourceError::Checkpoint)?,
        None => HashMap::new(),
    };
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<AckOutcome>();
    // Capacity 1: the reader works at most one batch ahead of what the pipeline accepted.
    let (batch_tx, mut batch_rx) = mpsc::channel::<ReaderMsg>(1);
    reader::spawn(Reader::new(
        cfg.clone(),
        loaded,
        resume,
        shutdown.clone(),
        batch_tx,
        ack_tx,
    ))?;
    let mut fwd = Forwarder::new(
        ForwardSettings {
            source: cfg.name.clone(),
            store: checkpoints,
            commit_interval: cfg.commit_interval,
            max_outstanding_batches: cfg.max_outstanding_batches,
            ack_wait: cfg.ack_wait,
            // Standard input (`-`) has no position worth keeping: it cannot be re-read.
            uncommitted: Some("-"),
            commits,
        },
        out,
        ack_rx,
        Box::new(NoProgress),
        stats,
    );

    let mut finished: Option<Result<(), FileSourceError>> = None;
    let stopping = loop {
        if finished.is_some() && fwd.wants() {
            // The reader is done and everything it read was sent.
            break false;
        }
        let take = finished.is_none() && fwd.wants();
        tokio::select! {
            biased;
            _ = shutdown.wait() => break true,
            step = fwd.drive() => if step == Drive::Closed {
                break true;
            },
            msg = batch_rx.recv(), if take => match msg {
                Some(ReaderMsg::Batch(batch)) => fwd.offer(batch),
                Some(ReaderMsg::Done(result)) => finished = Some(result),
                None => finished = Some(Err(FileSourceError::ReaderLost)),
            },
        }
    };

    // Stop the reader (its next send fails), then let the forwarder finish: what was never
    // sent is dropped (never registered, so its outcome is ignored), the pipeline hears that
    // the input ended, and what it holds is awaited and committed.
    drop(batch_rx);
    let committed = fwd.finish(stopping).await.map_err(FileSourceError::from);
    match finished {
        Some(Err(e)) => Err(e),
        _ => committed,
    }
}

#[cfg(test)]
mod tests;
