//! End-to-end acknowledgement: a batch's positions settle only after every consumer of the
//! batch is done with it.
//!
//! A source attaches an [`AckToken`] to each batch. Every consumer that must finish before
//! the position may be committed holds a clone and calls [`AckToken::ack`] when done. When the
//! last clone is gone, the source hears the outcome on its channel: delivered only if every
//! clone was acknowledged; a clone dropped without `ack()` (a consumer failed, panicked or was
//! cancelled) means "not delivered", and the position does not move past it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// What a source learns about one of its batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckOutcome {
    pub batch: u64,
    pub delivered: bool,
}

struct Inner {
    batch: u64,
    failed: AtomicBool,
    tx: mpsc::UnboundedSender<AckOutcome>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let delivered = !self.failed.load(Ordering::Acquire);
        // The source may have stopped listening (shutdown); then nothing is committed anyway.
        let _ = self.tx.send(AckOutcome {
            batch: self.batch,
            delivered,
        });
    }
}

pub struct AckToken {
    inner: Arc<Inner>,
    acked: bool,
}

impl AckToken {
    pub fn new(batch: u64, tx: mpsc::UnboundedSender<AckOutcome>) -> AckToken {
        AckToken {
            inner: Arc::new(Inner {
                batch,
                failed: AtomicBool::new(false),
                tx,
            }),
            acked: false,
        }
    }

    /// This consumer is done with the batch.
    pub fn ack(mut self) {
        self.acked = true;
    }

    /// This consumer could not deliver the batch.
    pub fn fail(self) {
        // Dropping unacknowledged marks the batch failed.
    }

    pub fn batch(&self) -> u64 {
        self.inner.batch
    }
}

impl Clone for AckToken {
    /// Another consumer that must acknowledge too.
    fn clone(&self) -> AckToken {
        AckToken {
            inner: self.inner.clone(),
            acked: false,
        }
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        if !self.acked {
            self.inner.failed.store(true, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for AckToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AckToken(batch {})", self.inner.batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_only_when_every_consumer_acks() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t = AckToken::new(1, tx.clone());
        let t2 = t.clone();
        t.ack();
        assert!(rx.try_recv().is_err(), "one consumer still holds the batch");
        t2.ack();
        assert_eq!(
            rx.try_recv().unwrap(),
            AckOutcome {
                batch: 1,
                delivered: true
            }
        );

        let t = AckToken::new(2, tx);
        let t2 = t.clone();
        t.ack();
        drop(t2);
        assert_eq!(
            rx.try_recv().unwrap(),
            AckOutcome {
                batch: 2,
                delivered: false
            }
        );
    }
}
