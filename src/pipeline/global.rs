//! The task that keeps global results fresh: every interval it lists the snapshots of each
//! source in the shared state store, downloads those that changed of partitions this
//! replica does not hold, decodes them (off the engine's thread) and hands them to the
//! engine as copies (`engine/peers.rs`); a partition whose snapshot disappeared has its
//! copy dropped.
//!
//! What a copy lags behind: its owner stores a snapshot every checkpoint interval (of a
//! partition that received events), and this task fetches it within one refresh interval,
//! so global results trail the owner's live ones by about two intervals at most. The age of
//! the oldest copy's snapshot is exported; for a partition that receives nothing it grows
//! without the copy being stale.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::engine::{Decoder, PartitionState};
use crate::shutdown::Shutdown;
use crate::state::{StateError, StateStore};
use crate::telemetry::metrics::GlobalMetrics;
use crate::time::{now_ticks, TICKS_PER_SECOND};

/// A change for the engine's copies.
pub enum PeerUpdate {
    Install(Box<PartitionState>),
    Drop { source: String, partition: String },
}

/// The partitions the engine holds itself, as (source, partition).
pub type Held = Arc<BTreeSet<(String, String)>>;

pub struct Refresher {
    pub store: Arc<dyn StateStore>,
    pub sources: Vec<String>,
    pub decoder: Decoder,
    pub interval: Duration,
    pub metrics: GlobalMetrics,
}

/// What is known of one copy.
struct Copy {
    version: String,
    written: i64,
    bytes: usize,
}

impl Refresher {
    /// Runs until shutdown or until the engine stops taking updates. `refreshed` is set
    /// after each successful refresh (readiness waits for the first).
    pub async fn run(
        self,
        mut held: watch::Receiver<Held>,
        out: mpsc::Sender<PeerUpdate>,
        refreshed: watch::Sender<u64>,
        mut shutdown: Shutdown,
    ) {
        let mut copies: HashMap<(String, String), Copy> = HashMap::new();
        let mut rounds = 0u64;
        loop {
            let mine = held.borrow_and_update().clone();
            match self.refresh(&mine, &mut copies, &out).await {
                Ok(true) => {
                    rounds += 1;
                    let _ = refreshed.send(rounds);
                    self.publish(&copies);
                }
                Ok(false) => return,
                Err(e) => {
                    self.metrics.refresh_failures.inc();
                    tracing::warn!(error = %e,
                        "refreshing the other replicas' partitions failed; global results keep the copies they have");
                }
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// One refresh. `Ok(false)`: the engine is gone.
    async fn refresh(
        &self,
        mine: &BTreeSet<(String, String)>,
        copies: &mut HashMap<(String, String), Copy>,
        out: &mpsc::Sender<PeerUpdate>,
    ) -> Result<bool, StateError> {
        let mut seen = BTreeSet::new();
        for source in &self.sources {
            for (partition, version) in self.store.versions(source).await? {
                let key = (source.clone(), partition);
                seen.insert(key.clone());
                if mine.contains(&key) {
                    // Held live: a copy of it would only be dropped. Forget its version,
                    // so that it is fetched again once it leaves this replica.
                    copies.remove(&key);
                    continue;
                }
                if copies.get(&key).is_some_and(|c| c.version == version) {
                    continue;
                }
                let Some(bytes) = self.store.peek(&key.0, &key.1).await? else {
                    continue;
                };
                let size = bytes.len();
                let decoder = self.decoder.clone();
                let expected = key.clone();
                let decoded = tokio::task::spawn_blocking(move || {
                    decoder.decode(&bytes, Some((&expected.0, &expected.1)))
                })
                .await;
                let decoded = match decoded {
                    Ok(Ok(d)) => d,
                    Ok(Err(e)) => {
                        // Another replica's business to fix; this one serves without it.
                        tracing::warn!(source = %key.0, partition = %key.1, error = %e,
                            "a snapshot of another replica's partition cannot be used; global results leave it out");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "decoding a snapshot failed");
                        continue;
                    }
                };
                let written = decoded.written;
                if out
                    .send(PeerUpdate::Install(Box::new(decoded.part)))
                    .await
                    .is_err()
                {
                    return Ok(false);
                }
                copies.insert(
                    key,
                    Copy {
                        version,
                        written,
                        bytes: size,
                    },
                );
            }
        }
        let gone: Vec<(String, String)> = copies
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for (source, partition) in gone {
            copies.remove(&(source.clone(), partition.clone()));
            if out
                .send(PeerUpdate::Drop { source, partition })
                .await
                .is_err()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn publish(&self, copies: &HashMap<(String, String), Copy>) {
        let m = &self.metrics;
        m.refreshes.inc();
        let now = now_ticks();
        m.last_refresh.set(now as f64 / TICKS_PER_SECOND as f64);
        m.peer_partitions.set(copies.len() as i64);
        m.peer_bytes
            .set(copies.values().map(|c| c.bytes).sum::<usize>() as i64);
        let oldest = copies.values().map(|c| c.written).min();
        m.peer_age
            .set(oldest.map_or(0.0, |w| (now - w).max(0) as f64 / TICKS_PER_SECOND as f64));
    }
}
