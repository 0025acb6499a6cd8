//! The file source: bodies one per line, from files, directories (every regular file, by
//! name) or standard input, optionally following files as they grow. Positions are the byte
//! offset and the 0-based number of each line; acknowledged positions go to the checkpoint
//! store, and a restart resumes strictly after the last one.
//!
//! One task owns everything here (readers, the position tracker, the commit schedule), so
//! there is no shared mutable state. Reading uses tokio's async file I/O: a follow-mode
//! source sleeps between polls without holding a thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

use super::{Batch, BoxFuture, Event, Position, Source};
use crate::ack::{AckOutcome, AckToken};
use crate::checkpoint::{Checkpoint, CheckpointStore, PositionTracker};
use crate::shutdown::Shutdown;

#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    /// Used in checkpoints, metrics and dead letters.
    pub name: String,
    /// Files, directories (regular files inside, by name, not recursive) or `-` (stdin).
    pub paths: Vec<PathBuf>,
    /// Keep reading as files grow, and pick up new files in watched directories.
    pub follow: bool,
    pub poll_interval: Duration,
    pub batch_max_events: usize,
    pub batch_max_bytes: usize,
    /// In follow mode, a partial batch is sent after this long.
    pub batch_max_wait: Duration,
    /// Bytes of one line kept; the rest is skipped (the parser rejects such a body as too
    /// large anyway, and an unbounded line must not exhaust memory).
    pub max_line_bytes: usize,
    /// How often acknowledged positions are written.
    pub commit_interval: Duration,
}

impl FileSourceConfig {
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
        }
    }
}

/// Counters readable while the source runs.
#[derive(Debug, Default)]
pub struct FileSourceStats {
    pub events: AtomicU64,
    pub batches: AtomicU64,
    pub commits: AtomicU64,
}

pub struct FileSource {
    cfg: FileSourceConfig,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    stats: Arc<FileSourceStats>,
}

impl FileSource {
    pub fn new(cfg: FileSourceConfig, checkpoints: Option<Arc<dyn CheckpointStore>>) -> FileSource {
        FileSource {
            cfg,
            checkpoints,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<FileSourceStats> {
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
        Box::pin(async move { Runner::new(*self, out, shutdown).run().await })
    }
}

/// One input being read.
struct Input {
    partition: Arc<str>,
    reader: Option<Box<dyn AsyncBufRead + Unpin + Send + Sync>>,
    path: Option<PathBuf>,
    /// Byte offset of the next line's first byte.
    offset: i64,
    /// Number of the next line.
    line: i64,
    /// Bytes of a line not yet ended by `\n` (follow mode waits for the rest).
    partial: Vec<u8>,
    /// Bytes of the partial line beyond `max_line_bytes`, skipped.
    skipped: usize,
    eof: bool,
}

struct Runner {
    cfg: FileSourceConfig,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    stats: Arc<FileSourceStats>,
    out: mpsc::Sender<Batch>,
    shutdown: Shutdown,
    source: Arc<str>,
    inputs: Vec<Input>,
    known: HashMap<PathBuf, ()>,
    tracker: PositionTracker,
    ack_tx: mpsc::UnboundedSender<AckOutcome>,
    ack_rx: mpsc::UnboundedReceiver<AckOutcome>,
    next_batch: u64,
    pending: Vec<Event>,
    pending_bytes: usize,
    pending_since: Option<Instant>,
    committed: HashMap<String, Checkpoint>,
    last_commit: Instant,
}

impl Runner {
    fn new(src: FileSource, out: mpsc::Sender<Batch>, shutdown: Shutdown) -> Runner {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        Runner {
            source: Arc::from(src.cfg.name.as_str()),
            cfg: src.cfg,
            checkpoints: src.checkpoints,
            stats: src.stats,
            out,
            shutdown,
            inputs: Vec::new(),
            known: HashMap::new(),
            tracker: PositionTracker::new(),
            ack_tx,
            ack_rx,
            next_batch: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            pending_since: None,
            committed: HashMap::new(),
            last_commit: Instant::now(),
        }
    }

    async fn run(mut self) -> anyhow::Result<()> {
        self.discover(true).await?;
        loop {
            if self.shutdown.is_triggered() {
                break;
            }
            let progressed = self.read_available().await?;
            self.settle_acks().await;
            let all_eof = self.inputs.iter().all(|i| i.eof);
            if !self.cfg.follow && all_eof {
                break;
            }
            if !progressed {
                if self
                    .pending_since
                    .is_some_and(|t| t.elapsed() >= self.cfg.batch_max_wait)
                {
                    self.send().await;
                }
                let mut sd = self.shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                    _ = sd.wait() => break,
                }
                self.discover(false).await?;
                self.check_truncation().await;
                for i in &mut self.inputs {
                    if i.path.is_some() {
                        i.eof = false;
                    }
                }
            }
        }
        if !self.shutdown.is_triggered() {
            self.send().await;
        }
        self.pending.clear();
        self.drain().await;
        Ok(())
    }

    /// Opens the inputs named by the configuration (and, after the first call, new files in
    /// watched directories).
    async fn discover(&mut self, first: bool) -> anyhow::Result<()> {
        let mut found = Vec::new();
        for p in self.cfg.paths.clone() {
            if p.as_os_str() == "-" {
                if first {
                    found.push(p);
                }
                continue;
            }
            let meta = match tokio::fs::metadata(&p).await {
                Ok(m) => m,
                Err(e) if !first => {
                    tracing::debug!(path = %p.display(), error = %e, "input not readable now");
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("input {}", p.display())),
            };
            if meta.is_dir() {
                let mut entries = tokio::fs::read_dir(&p)
                    .await
                    .with_context(|| format!("listing {}", p.display()))?;
                let mut files = Vec::new();
                while let Some(e) = entries.next_entry().await? {
                    if e.file_type().await.map(|t| t.is_file()).unwrap_or(false) {
                        files.push(e.path());
                    }
                }
                files.sort();
                found.extend(files);
            } else {
                found.push(p);
            }
        }
        for path in found {
            if self.known.insert(path.clone(), ()).is_some() {
                continue;
            }
            let input = self.open(&path).await?;
            self.inputs.push(input);
        }
        Ok(())
    }

    async fn open(&self, path: &Path) -> anyhow::Result<Input> {
        let name = path.display().to_string();
        let partition: Arc<str> = Arc::from(name.as_str());
        if name == "-" {
            return Ok(Input {
                partition,
                reader: Some(Box::new(BufReader::with_capacity(
                    1 << 20,
                    tokio::io::stdin(),
                ))),
                path: None,
                offset: 0,
                line: 0,
                partial: Vec::new(),
                skipped: 0,
                eof: false,
            });
        }
        let mut file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {name}"))?;
        let len = file.metadata().await.map(|m| m.len() as i64).unwrap_or(0);
        let checkpoint = match &self.checkpoints {
            Some(store) => {
                let store = store.clone();
                let (source, part) = (self.source.to_string(), name.clone());
                tokio::task::spawn_blocking(move || store.load(&source, &part)).await??
            }
            None => None,
        };
        let mut input = Input {
            partition,
            reader: None,
            path: Some(path.to_path_buf()),
            offset: 0,
            line: 0,
            partial: Vec::new(),
            skipped: 0,
            eof: false,
        };
        match checkpoint {
            Some(cp) if cp.offset < len => {
                file.seek(std::io::SeekFrom::Start(cp.offset as u64))
                    .await?;
                let mut reader = BufReader::with_capacity(1 << 20, file);
                // Skip the checkpointed line itself: resume strictly after it.
                let mut skip = Vec::new();
                let n = reader.read_until(b'\n', &mut skip).await?;
                input.offset = cp.offset + n as i64;
                input.line = cp.sequence_number + 1;
                input.reader = Some(Box::new(reader));
                tracing::info!(source = %self.source, partition = %name, line = input.line, "resuming after the checkpoint");
            }
            Some(cp) => {
                tracing::warn!(source = %self.source, partition = %name, checkpoint_offset = cp.offset, file_len = len,
                    "the file is shorter than its checkpoint (replaced or truncated); reading it from the start");
                input.reader = Some(Box::new(BufReader::with_capacity(1 << 20, file)));
            }
            None => input.reader = Some(Box::new(BufReader::with_capacity(1 << 20, file))),
        }
        Ok(input)
    }

    /// A followed file that shrank below what was read was replaced or truncated: start over.
    async fn check_truncation(&mut self) {
        for i in 0..self.inputs.len() {
            let Some(path) = self.inputs[i].path.clone() else {
                continue;
            };
            let Ok(meta) = tokio::fs::metadata(&path).await else {
                continue;
            };
            if (meta.len() as i64) < self.inputs[i].offset {
                tracing::warn!(partition = %self.inputs[i].partition, "the file shrank; reading it again from the start");
                if let Ok(file) = tokio::fs::File::open(&path).await {
                    let inp = &mut self.inputs[i];
                    inp.reader = Some(Box::new(BufReader::with_capacity(1 << 20, file)));
                    inp.offset = 0;
                    inp.line = 0;
                    inp.partial.clear();
                    inp.skipped = 0;
                }
            }
        }
    }

    /// Reads every complete line available now, sending full batches. Returns whether any
    /// line was read.
    async fn read_available(&mut self) -> anyhow::Result<bool> {
        let mut progressed = false;
        for idx in 0..self.inputs.len() {
            while !self.inputs[idx].eof {
                if self.shutdown.is_triggered() {
                    return Ok(progressed);
                }
                let (complete, consumed) = {
                    let max = self.cfg.max_line_bytes;
                    let input = &mut self.inputs[idx];
                    let Some(reader) = input.reader.as_mut() else {
                        input.eof = true;
                        break;
                    };
                    read_line_capped(reader.as_mut(), &mut input.partial, &mut input.skipped, max)
                        .await
                        .with_context(|| format!("reading {}", input.partition))?
                };
                let input = &mut self.inputs[idx];
                if consumed == 0 {
                    // End of what is there now. Without follow, a last line without `\n`
                    // is still a body.
                    input.eof = true;
                    if !self.cfg.follow || input.path.is_none() {
                        if !input.partial.is_empty() {
                            self.emit(idx).await;
                            progressed = true;
                        }
                    }
                    break;
                }
                if complete {
                    self.emit(idx).await;
                    progressed = true;
                }
            }
        }
        Ok(progressed)
    }

    /// Turns the input's buffered line into an event (empty lines are not bodies).
    async fn emit(&mut self, idx: usize) {
        let input = &mut self.inputs[idx];
        let mut body = std::mem::take(&mut input.partial);
        let len = body.len() + input.skipped;
        let had_newline = body.last() == Some(&b'\n');
        while matches!(body.last(), Some(b'\n' | b'\r')) {
            body.pop();
        }
        let position = Position {
            partition: input.partition.clone(),
            offset: input.offset,
            sequence_number: input.line,
            enqueued_time: None,
        };
        input.offset += len as i64;
        input.line += 1;
        input.skipped = 0;
        let _ = had_newline;
        if body.is_empty() {
            return;
        }
        self.pending_bytes += body.len();
        self.pending.push(Event { body, position });
        self.pending_since.get_or_insert_with(Instant::now);
        if self.pending.len() >= self.cfg.batch_max_events
            || self.pending_bytes >= self.cfg.batch_max_bytes
        {
            self.send().await;
        }
    }

    /// Sends the pending events as one batch (waiting while the pipeline is busy).
    async fn send(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.pending_since = None;
        let id = self.next_batch;
        self.next_batch += 1;
        self.tracker
            .register(id, events.iter().map(|e| &e.position));
        let n = events.len() as u64;
        let batch = Batch {
            source: self.source.clone(),
            events,
            ack: AckToken::new(id, self.ack_tx.clone()),
        };
        let mut sd = self.shutdown.clone();
        tokio::select! {
            sent = self.out.send(batch) => {
                if sent.is_ok() {
                    self.stats.events.fetch_add(n, Ordering::Relaxed);
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Not sent: its token is dropped unacknowledged, so its positions never commit.
            _ = sd.wait() => {}
        }
        self.settle_acks().await;
    }

    /// Takes the outcomes that arrived and commits when the interval has passed.
    async fn settle_acks(&mut self) {
        while let Ok(outcome) = self.ack_rx.try_recv() {
            self.tracker.resolve(&outcome);
        }
        if self.last_commit.elapsed() >= self.cfg.commit_interval {
            self.commit().await;
        }
    }

    /// Waits (bounded) for the outcomes of batches in flight, then commits.
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.tracker.outstanding() > 0 {
            match tokio::time::timeout_at(deadline, self.ack_rx.recv()).await {
                Ok(Some(outcome)) => {
                    self.tracker.resolve(&outcome);
                }
                _ => {
                    tracing::warn!(source = %self.source, outstanding = self.tracker.outstanding(),
                        "batches still unacknowledged at the end; their positions are not committed");
                    break;
                }
            }
        }
        self.commit().await;
    }

    async fn commit(&mut self) {
        self.last_commit = Instant::now();
        let Some(store) = self.checkpoints.clone() else {
            return;
        };
        let updates: Vec<(String, Checkpoint)> = self
            .tracker
            .committable()
            .into_iter()
            .filter(|(p, cp)| self.committed.get(p) != Some(cp))
            .collect();
        if updates.is_empty() {
            return;
        }
        let source = self.source.to_string();
        let to_save = updates.clone();
        match tokio::task::spawn_blocking(move || store.save(&source, &to_save)).await {
            Ok(Ok(())) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.committed.extend(updates);
            }
            Ok(Err(e)) => {
                tracing::warn!(source = %self.source, error = %e, "committing positions failed; will retry")
            }
            Err(e) => tracing::warn!(source = %self.source, error = %e, "the commit task failed"),
        }
    }
}

/// Reads up to and including the next `\n` into `buf`, keeping at most `max` bytes (the
/// rest of an overlong line is counted in `skipped`). Returns (line complete, bytes consumed).
async fn read_line_capped(
    reader: &mut (dyn AsyncBufRead + Unpin + Send + Sync),
    buf: &mut Vec<u8>,
    skipped: &mut usize,
    max: usize,
) -> std::io::Result<(bool, usize)> {
    let mut consumed = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok((false, consumed));
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = max.saturating_sub(buf.len());
        let keep = chunk.len().min(room);
        buf.extend_from_slice(&chunk[..keep]);
        *skipped += chunk.len() - keep;
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if done {
            return Ok((true, consumed));
        }
    }
}

#[cfg(test)]
mod tests;
