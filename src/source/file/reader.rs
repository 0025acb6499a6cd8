//! The file source's reading half: finds the inputs, resumes each file after its checkpoint,
//! splits lines, and assembles batches, on one dedicated thread.
//!
//! Why a plain thread with `std::fs` rather than tokio's file I/O: every tokio file read is a
//! hop to the blocking pool anyway, a line splitter over `BufRead` is simplest as straight-line
//! code, and a blocking read of standard input must not hold up runtime shutdown (tokio waits
//! for its blocking-pool tasks when the runtime is dropped; it does not wait for a thread of
//! our own). The thread owns everything it touches; it talks to the source's task only
//! through the bounded batch channel, whose `blocking_send` is the backpressure, and it stops
//! as soon as that channel closes or shutdown is signalled (checked at every batch, every end
//! of file, and every ≤ 50 ms while idle).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Metadata};
use std::io::{self, BufRead, BufReader, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::lines::Lines;
use super::{FileSourceConfig, FileSourceError};
use crate::ack::{AckOutcome, AckToken};
use crate::checkpoint::Checkpoint;
use crate::shutdown::Shutdown;
use crate::source::{Batch, Event, Position};
use crate::state::{Resume, Start};

/// Read buffer per open file. Only one file is open at a time per source (followed files are
/// closed at their end and re-opened when they grow), so this is also the source's total.
const READ_BUFFER: usize = 64 * 1024;
/// Lines read from one file before the others get a turn (follow mode), so one busy file
/// cannot starve the rest, and shutdown is noticed promptly.
const LINES_PER_TURN: usize = 4096;
/// Longest uninterrupted sleep: shutdown is noticed at least this often while idle.
const SLEEP_SLICE: Duration = Duration::from_millis(50);

/// What the reader tells the source's task.
pub(super) enum ReaderMsg {
    Batch(Batch),
    /// The reader is finished: the input ended (`Ok`) or could not be read.
    Done(Result<(), FileSourceError>),
}

/// Why reading stopped early.
enum Halt {
    /// Shutdown, or the source's task hung up: nothing to report.
    Stopped,
    Failed(FileSourceError),
}

impl From<FileSourceError> for Halt {
    fn from(e: FileSourceError) -> Halt {
        Halt::Failed(e)
    }
}

type Flow<T> = Result<T, Halt>;

fn io_error<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(io::Error) -> FileSourceError + 'a {
    move |source| FileSourceError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Starts the reader thread. It always ends by sending `Done` (unless the task hung up).
pub(super) fn spawn(reader: Reader) -> Result<(), FileSourceError> {
    std::thread::Builder::new()
        .name(format!("hubwatch-file-{}", reader.source))
        .spawn(move || {
            let mut reader = reader;
            let result = match reader.run() {
                Ok(()) | Err(Halt::Stopped) => Ok(()),
                Err(Halt::Failed(e)) => Err(e),
            };
            let _ = reader.tx.blocking_send(ReaderMsg::Done(result));
        })
        .map(drop)
        .map_err(FileSourceError::Spawn)
}

pub(super) struct Reader {
    cfg: FileSourceConfig,
    source: Arc<str>,
    /// The source's checkpoints, by partition, as loaded at start.
    checkpoints: HashMap<String, Checkpoint>,
    /// Where files with restored window state resume; those whose state must be rebuilt
    /// are read from their start.
    resume: Arc<Resume>,
    shutdown: Shutdown,
    tx: mpsc::Sender<ReaderMsg>,
    ack_tx: mpsc::UnboundedSender<AckOutcome>,
    cursors: Vec<Cursor>,
    /// Paths that have a cursor, so a file is never read twice.
    known: HashSet<PathBuf>,
    events: Vec<Event>,
    bytes: usize,
    /// When the first event of the partial batch was read.
    since: Option<Instant>,
    next_batch: u64,
}

impl Reader {
    pub(super) fn new(
        cfg: FileSourceConfig,
        checkpoints: HashMap<String, Checkpoint>,
        resume: Arc<Resume>,
        shutdown: Shutdown,
        tx: mpsc::Sender<ReaderMsg>,
        ack_tx: mpsc::UnboundedSender<AckOutcome>,
    ) -> Reader {
        Reader {
            source: Arc::from(cfg.name.as_str()),
            cfg,
            checkpoints,
            resume,
            shutdown,
            tx,
            ack_tx,
            cursors: Vec::new(),
            known: HashSet::new(),
            events: Vec::new(),
            bytes: 0,
            since: None,
            next_batch: 0,
        }
    }

    fn run(&mut self) -> Flow<()> {
        self.open_inputs()?;
        if self.cfg.follow {
            self.follow()
        } else {
            self.replay()
        }
    }

    fn stopped(&self) -> bool {
        self.shutdown.is_triggered() || self.tx.is_closed()
    }

    /// Expands the configured paths, checks that every input exists and is readable, and
    /// places each file after its checkpoint. Everything fails here, before reading starts.
    fn open_inputs(&mut self) -> Flow<()> {
        for path in self.cfg.paths.clone() {
            if path.as_os_str() == "-" {
                if self.known.insert(path) {
                    self.cursors.push(Cursor::stdin());
                }
                continue;
            }
            let meta = fs::metadata(&path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => FileSourceError::Missing { path: path.clone() },
                _ => io_error(&path, "reading its metadata")(e),
            })?;
            if meta.is_dir() {
                for file in list_dir(&path)? {
                    self.add_file(file, true)?;
                }
            } else {
                self.add_file(path, false)?;
            }
        }
        Ok(())
    }

    fn add_file(&mut self, path: PathBuf, from_dir: bool) -> Flow<()> {
        if !self.known.insert(path.clone()) {
            tracing::debug!(source = %self.source, path = %path.display(), "input listed twice; read once");
            return Ok(());
        }
        let mut cursor = Cursor::file(path.clone(), from_dir);
        let mut file = File::open(&path).map_err(io_error(&path, "opening"))?;
        let meta = file
            .metadata()
            .map_err(io_error(&path, "reading its metadata"))?;
        cursor.identity = identity(&meta);
        let own = self.checkpoints.get(&*cursor.partition).cloned();
        let checkpoint = match self
            .resume
            .start(&self.source, &cursor.partition, own.is_some())
        {
            Start::Own => own,
            // After what the window state holds (it may be ahead of the commit).
            Start::After(cp) => Some(cp),
            Start::Oldest => {
                tracing::info!(source = %self.source, partition = %cursor.partition,
                    "reading the file from its start to rebuild window state the checkpoint directory lacks");
                // Up to the file's own checkpoint, lines were read in an earlier run: their
                // rows were forwarded and their rejects dead-lettered before it was
                // committed. They rebuild windows only (`Event::replayed`), unless the file
                // no longer matches the checkpoint (replaced): then every line is new.
                if let Some(cp) = &own {
                    let same = check_resume(&mut file, meta.len(), cp)
                        .map_err(io_error(&path, "checking the checkpoint"))?;
                    if same.is_ok() {
                        cursor.replay_through = Some(cp.sequence_number);
                    }
                }
                None
            }
        };
        if let Some(cp) = checkpoint {
            match check_resume(&mut file, meta.len(), &cp)
                .map_err(io_error(&path, "checking the checkpoint"))?
            {
                Ok(()) => {
                    tracing::info!(source = %self.source, partition = %cursor.partition, line = cp.sequence_number,
                        "resuming after the checkpointed line");
                    cursor.resume_after(&cp);
                }
                Err(why) => {
                    tracing::warn!(source = %self.source, partition = %cursor.partition,
                        checkpoint_offset = cp.offset, file_len = meta.len(), "{why}; reading the file from the start");
                    cursor.rewound = true;
                }
            }
        }
        self.cursors.push(cursor);
        Ok(())
    }

    /// Without follow: every input once, in order, then the last partial batch.
    fn replay(&mut self) -> Flow<()> {
        for i in 0..self.cursors.len() {
            if self.stopped() {
                return Err(Halt::Stopped);
            }
            if !self.cursors[i].is_stdin() {
                self.cursors[i]
                    .open()
                    .map_err(io_error(self.cursors[i].path(), "opening"))?;
            }
            while let Some(event) = self.read_line(i, true)? {
                self.push(event)?;
            }
            self.cursors[i].reader = None;
        }
        self.flush()
    }

    /// With follow: poll every file for growth, truncation and replacement, and watched
    /// directories for new files, until shutdown.
    fn follow(&mut self) -> Flow<()> {
        let mut last_scan = Instant::now();
        loop {
            if self.stopped() {
                return Err(Halt::Stopped);
            }
            let mut progressed = false;
            let mut i = 0;
            while i < self.cursors.len() {
                match self.follow_turn(i)? {
                    Turn::Idle => i += 1,
                    Turn::Read => {
                        progressed = true;
                        i += 1;
                    }
                    Turn::Vanished => {
                        let gone = self.cursors.remove(i);
                        tracing::info!(source = %self.source, partition = %gone.partition, "file removed from its directory");
                        self.known.remove(gone.path());
                    }
                }
            }
            if self
                .since
                .is_some_and(|t| t.elapsed() >= self.cfg.batch_max_wait)
            {
                self.flush()?;
            }
            if last_scan.elapsed() >= self.cfg.poll_interval {
                last_scan = Instant::now();
                self.scan_dirs();
            }
            if !progressed {
                let mut nap = self.cfg.poll_interval;
                if let Some(t) = self.since {
                    nap = nap.min(self.cfg.batch_max_wait.saturating_sub(t.elapsed()));
                }
                self.sleep(nap)?;
            }
        }
    }

    /// One turn of one input in follow mode.
    fn follow_turn(&mut self, i: usize) -> Flow<Turn> {
        let c = &mut self.cursors[i];
        if c.is_stdin() {
            // Standard input cannot be polled: it is read to its end once (blocking), like cat.
            if c.done {
                return Ok(Turn::Idle);
            }
            while let Some(event) = self.read_line(i, true)? {
                self.push(event)?;
            }
            self.cursors[i].done = true;
            return Ok(Turn::Read);
        }
        if c.reader.is_none() {
            match c.poll(&self.source) {
                Poll::Unchanged => return Ok(Turn::Idle),
                Poll::Vanished => return Ok(Turn::Vanished),
                Poll::Grew => {
                    if let Err(e) = c.open() {
                        c.note_failure(&self.source, &e);
                        return Ok(Turn::Idle);
                    }
                }
            }
        }
        let before = self.cursors[i].pos();
        let mut read = 0;
        while read < LINES_PER_TURN {
            match self.read_line(i, false) {
                Ok(Some(event)) => {
                    read += 1;
                    self.push(event)?;
                }
                Ok(None) => {
                    // The end of what is there now: close, and re-open when it grows (bounds
                    // open files to one and notices replacement by path, like `tail -F`).
                    let c = &mut self.cursors[i];
                    c.reader = None;
                    c.failing = false;
                    break;
                }
                Err(Halt::Failed(FileSourceError::Io { source, .. })) => {
                    let c = &mut self.cursors[i];
                    c.note_failure(&self.source, &source);
                    c.reader = None;
                    break;
                }
                Err(halt) => return Err(halt),
            }
        }
        // Progress is bytes consumed, so a file that only looks changed cannot spin the loop.
        Ok(if self.cursors[i].pos() != before {
            Turn::Read
        } else {
            Turn::Idle
        })
    }

    /// Picks up files that appeared in watched directories since the last scan. New files are
    /// read from their start: they did not exist when checkpoints were loaded.
    fn scan_dirs(&mut self) {
        for dir in self.cfg.paths.clone() {
            if !fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let files = match list_dir(&dir) {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(source = %self.source, error = %e, "scanning a watched directory failed; retrying");
                    continue;
                }
            };
            for path in files {
                if self.known.insert(path.clone()) {
                    tracing::info!(source = %self.source, path = %path.display(), "new file in a watched directory");
                    self.cursors.push(Cursor::file(path, true));
                }
            }
        }
    }

    fn read_line(&mut self, i: usize, final_at_eof: bool) -> Flow<Option<Event>> {
        let max = self.cfg.max_line_bytes.max(1);
        let c = &mut self.cursors[i];
        match c.next_line(max, final_at_eof) {
            Ok(line) => Ok(line),
            Err(e) => Err(Halt::Failed(io_error(c.path(), "reading")(e))),
        }
    }

    fn push(&mut self, event: Event) -> Flow<()> {
        let len = event.body.len();
        if !self.events.is_empty() && self.bytes + len > self.cfg.batch_max_bytes {
            self.flush()?;
        }
        self.bytes += len;
        self.events.push(event);
        self.since.get_or_insert_with(Instant::now);
        if self.events.len() >= self.cfg.batch_max_events || self.bytes >= self.cfg.batch_max_bytes
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the partial batch to the source's task, waiting while the pipeline is full.
    fn flush(&mut self) -> Flow<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        if self.shutdown.is_triggered() {
            // On shutdown nothing more is sent; these lines are read again after a restart.
            return Err(Halt::Stopped);
        }
        let id = self.next_batch;
        self.next_batch += 1;
        let batch = Batch::new(
            self.source.clone(),
            std::mem::take(&mut self.events),
            AckToken::new(id, self.ack_tx.clone()),
        );
        self.bytes = 0;
        self.since = None;
        self.tx
            .blocking_send(ReaderMsg::Batch(batch))
            .map_err(|_| Halt::Stopped)
    }

    fn sleep(&self, total: Duration) -> Flow<()> {
        let until = Instant::now() + total;
        loop {
            if self.stopped() {
                return Err(Halt::Stopped);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(SLEEP_SLICE));
        }
    }
}

enum Turn {
    Idle,
    Read,
    Vanished,
}

enum Poll {
    Unchanged,
    Grew,
    Vanished,
}

/// Every regular file directly inside `dir` (symbolic links followed), sorted by name.
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, FileSourceError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir, "listing"))? {
        let path = entry.map_err(io_error(dir, "listing"))?.path();
        // Entries that vanish or cannot be inspected between listing and stat are skipped.
        if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Whether reading may resume at the checkpoint: the file must still hold the checkpointed
/// line (be longer than its offset) and the offset must start a line. Two cheap reads catch
/// a truncated or replaced file without hashing anything.
fn check_resume(
    file: &mut File,
    len: u64,
    cp: &Checkpoint,
) -> io::Result<Result<(), &'static str>> {
    if cp.offset < 0 || cp.sequence_number < 0 {
        return Ok(Err("the checkpoint is negative"));
    }
    let offset = cp.offset as u64;
    if len <= offset {
        return Ok(Err(
            "the file is shorter than its checkpoint (truncated or replaced)",
        ));
    }
    if offset > 0 {
        file.seek(SeekFrom::Start(offset - 1))?;
        let mut byte = [0u8; 1];
        file.read_exact(&mut byte)?;
        if byte[0] != b'\n' {
            return Ok(Err(
                "the checkpoint is not at the start of a line (file replaced)",
            ));
        }
    }
    Ok(Ok(()))
}

/// The identity of a file behind its path (device and inode), to tell "grew" from "replaced".
#[cfg(unix)]
fn identity(meta: &Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_meta: &Metadata) -> Option<(u64, u64)> {
    None
}

/// One input and where reading stands in it.
struct Cursor {
    partition: Arc<str>,
    /// `None` for standard input.
    path: Option<PathBuf>,
    /// Found in a directory: forgotten when it disappears (a file named in the configuration
    /// is waited for instead).
    from_dir: bool,
    reader: Option<Box<dyn BufRead + Send>>,
    identity: Option<(u64, u64)>,
    /// Where splitting stands: bytes consumed, the current line.
    lines: Lines,
    /// Reading started over (truncated or replaced): the next event says so, so that the
    /// window state does not take the new lines for ones it already absorbed.
    rewound: bool,
    /// Read from the start to rebuild window state: lines up to this number are marked
    /// replayed (read before the checkpoint was committed). Cleared when the file starts over.
    replay_through: Option<i64>,
    /// Standard input reached its end.
    done: bool,
    /// A read failed and was logged; cleared by the next success (one log per outage).
    failing: bool,
    /// The file's disappearance was logged.
    missing_logged: bool,
}

impl Cursor {
    fn stdin() -> Cursor {
        let mut c = Cursor::new(Arc::from("-"), None, false);
        c.reader = Some(Box::new(BufReader::with_capacity(READ_BUFFER, io::stdin())));
        c
    }

    /// The partition is the path as given or as found in its directory.
    fn file(path: PathBuf, from_dir: bool) -> Cursor {
        Cursor::new(
            Arc::from(path.to_string_lossy().as_ref()),
            Some(path),
            from_dir,
        )
    }

    fn new(partition: Arc<str>, path: Option<PathBuf>, from_dir: bool) -> Cursor {
        Cursor {
            partition,
            path,
            from_dir,
            reader: None,
            identity: None,
            lines: Lines::new(),
            replay_through: None,
            rewound: false,
            done: false,
            failing: false,
            missing_logged: false,
        }
    }

    fn is_stdin(&self) -> bool {
        self.path.is_none()
    }

    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new("-"))
    }

    /// Continue at the checkpointed line, which is consumed without being emitted.
    fn resume_after(&mut self, cp: &Checkpoint) {
        self.lines
            .resume_after(cp.offset as u64, cp.sequence_number);
    }

    /// Bytes consumed.
    fn pos(&self) -> u64 {
        self.lines.pos()
    }

    fn restart(&mut self) {
        self.lines.restart();
        self.rewound = true;
        self.replay_through = None;
    }

    /// Opens the file at the position reached, starting over if it was truncated or
    /// replaced since.
    fn open(&mut self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let id = identity(&meta);
        if self.identity.is_some() && id != self.identity {
            tracing::info!(partition = %self.partition, "the file was replaced; reading the new one from its start");
            self.restart();
        } else if meta.len() < self.pos() {
            tracing::warn!(partition = %self.partition, was = self.pos(), now = meta.len(),
                "the file shrank; reading it again from the start");
            self.restart();
        }
        self.identity = id;
        file.seek(SeekFrom::Start(self.pos()))?;
        self.reader = Some(Box::new(BufReader::with_capacity(READ_BUFFER, file)));
        Ok(())
    }

    /// Whether a closed, followed file has anything new (grown, shrunk or replaced).
    fn poll(&mut self, source: &str) -> Poll {
        let Some(path) = &self.path else {
            return Poll::Unchanged;
        };
        match fs::metadata(path) {
            Ok(meta) => {
                self.missing_logged = false;
                let changed = meta.len() != self.pos()
                    || (self.identity.is_some() && identity(&meta) != self.identity);
                if changed {
                    Poll::Grew
                } else {
                    Poll::Unchanged
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.from_dir => Poll::Vanished,
            Err(e) => {
                if !self.missing_logged {
                    self.missing_logged = true;
                    tracing::warn!(source, partition = %self.partition, error = %e, "followed file is not there; waiting for it");
                }
                Poll::Unchanged
            }
        }
    }

    fn note_failure(&mut self, source: &str, e: &io::Error) {
        if !self.failing {
            self.failing = true;
            tracing::warn!(source, partition = %self.partition, error = %e, "reading a followed file failed; retrying at the next poll");
        }
    }

    /// The next non-empty line as an event, or `None` at the end of the data there is now
    /// (see [`Lines::next`]). A line over `max_line` is delivered cut, saying its real size.
    fn next_line(&mut self, max_line: usize, final_at_eof: bool) -> io::Result<Option<Event>> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(None);
        };
        let Some(line) = self.lines.next(&mut **reader, max_line, final_at_eof)? else {
            return Ok(None);
        };
        if let Some(bytes) = line.cut_from {
            tracing::warn!(partition = %self.partition, line = line.number, bytes, kept = line.body.len(),
                "line longer than max_line_bytes: delivered cut short, to be rejected with its real size");
        }
        let position = Position {
            partition: self.partition.clone(),
            offset: line.offset,
            sequence_number: line.number,
            enqueued_time: None,
        };
        let mut event = Event::new(line.body, position);
        event.cut_from = line.cut_from;
        event.rewound = std::mem::take(&mut self.rewound);
        event.replayed = self.replay_through.is_some_and(|n| line.number <= n);
        Ok(Some(event))
    }
}
