//! A network sink's two halves around its disk buffer ([`super::buffer`]): the engine's
//! side ([`BufferedSink`]) turns each row into the sink's message and appends it, and makes
//! the batch durable at `flush`; the sender task delivers what is durable, in order, to the
//! receiver ([`Deliver`]), retrying with capped exponential backoff and jitter, and lets go
//! of what was delivered. A receiver that is down therefore stops only the sender: the
//! engine goes on (and so do the metrics) until the buffer is full; then `write` waits for
//! room (`when_full = "block"`: reading pauses, nothing is lost).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::buffer::{BufferReader, BufferWriter, Cursor};
use super::{Routed, Sink};

/// Messages delivered per attempt, at most.
const BATCH: usize = 500;

/// How a sink turns a row into its message (one frame of the buffer).
pub trait Encode: Send {
    fn encode(&mut self, row: &Routed<'_>, out: &mut Vec<u8>);
}

/// How the sender hands messages to the receiver. `Ok` means the receiver has them (as far
/// as the protocol can say).
#[async_trait::async_trait]
pub trait Deliver: Send + 'static {
    async fn deliver(&mut self, messages: &[Vec<u8>]) -> Result<(), String>;
}

pub struct BufferedSink {
    name: String,
    encode: Box<dyn Encode>,
    buffer: BufferWriter,
    /// Bytes the sender removed since the writer last looked.
    released: Arc<AtomicU64>,
    durable: watch::Sender<Cursor>,
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
    /// Opens the buffer in `dir` and starts the sender on the current runtime.
    pub fn start(
        name: &str,
        dir: &Path,
        max_bytes: u64,
        encode: Box<dyn Encode>,
        deliver: Box<dyn Deliver>,
    ) -> std::io::Result<BufferedSink> {
        let mut buffer = BufferWriter::open(dir, max_bytes)?;
        let reader = BufferReader::open(dir)?;
        let released = Arc::new(AtomicU64::new(0));
        // Everything on disk from an earlier run is durable already: up to the start of the
        // segment this run writes.
        let (durable, durable_rx) = watch::channel(buffer.flush()?);
        tokio::spawn(send(
            name.to_string(),
            dir.to_path_buf(),
            reader,
            durable_rx,
            deliver,
            released.clone(),
        ));
        Ok(BufferedSink {
            name: name.to_string(),
            encode,
            buffer,
            released,
            durable,
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
        let started = std::time::Instant::now();
        loop {
            self.buffer
                .released(self.released.swap(0, Ordering::AcqRel));
            match self.buffer.append(&self.scratch)? {
                Ok(()) => {
                    self.pending = true;
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
        Some(
            self.buffer
                .bytes()
                .saturating_sub(self.released.load(Ordering::Acquire)),
        )
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

    fn sync(&mut self) -> std::io::Result<()> {
        if std::mem::take(&mut self.unsynced) {
            self.buffer.sync()?;
        }
        Ok(())
    }
}

/// The sender: delivers what is durable, in order; on failure waits (200 ms doubling to
/// 30 s, with jitter) and tries the same messages again.
async fn send(
    name: String,
    dir: PathBuf,
    mut reader: BufferReader,
    mut durable: watch::Receiver<Cursor>,
    mut deliver: Box<dyn Deliver>,
    released: Arc<AtomicU64>,
) {
    let mut attempt = 0u32;
    loop {
        let upto = *durable.borrow_and_update();
        let frames = match reader.next(upto, BATCH) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(sink = %name, dir = %dir.display(), error = %e, "reading the sink's buffer failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if frames.is_empty() {
            if durable.changed().await.is_err() {
                return; // the engine is gone
            }
            continue;
        }
        let messages: Vec<Vec<u8>> = frames.iter().map(|(m, _)| m.clone()).collect();
        match deliver.deliver(&messages).await {
            Ok(()) => {
                attempt = 0;
                let to = frames.last().map(|(_, c)| *c).unwrap_or_default();
                match reader.ack(to) {
                    Ok(removed) => {
                        released.fetch_add(removed, Ordering::AcqRel);
                    }
                    Err(e) => {
                        tracing::error!(sink = %name, error = %e, "storing the sink's acknowledgement failed")
                    }
                }
            }
            Err(e) => {
                let delay = backoff(attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(sink = %name, error = %e, retry_in = ?delay, "delivering failed; the messages stay buffered");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(200).saturating_mul(1 << attempt.min(8));
    base.min(Duration::from_secs(30))
        .mul_f64(0.5 + crate::source::amqp::random_unit() * 0.5)
}
