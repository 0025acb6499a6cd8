//! The state of a Kafka source, shared by the consumer thread's loop and librdkafka's
//! callbacks (which run on that same thread, inside `poll`): the batch being gathered, the
//! acknowledgement [`Ledger`] every source keeps (the batch waiting for room in the
//! pipeline, the batches awaiting their outcome), and the partitions this replica owns with
//! their offsets and metrics.
//!
//! Offsets: Kafka's offset is the position; on Event Hubs it equals the sequence number, so
//! a [`Position`] carries it in both fields. What is committed is the offset *after* the
//! last acknowledged event (Kafka's convention: the next to read).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::IntCounter;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::ack::{AckOutcome, AckToken};
use crate::source::ledger::{Ledger, NoProgress};
use crate::source::{Batch, Event, Ownership, Position};
use crate::state::Resume;
use crate::telemetry::metrics::KafkaMetrics;
use crate::time::TICKS_PER_MILLISECOND;

/// A partition this replica owns.
struct Owned {
    topic: Arc<str>,
    partition: i32,
    /// `topic/partition`: the tracker's and the pipeline's name for it.
    key: Arc<str>,
    /// The partition number as a label value.
    label: String,
    /// The offset after the last event handed to the pipeline.
    position: Option<i64>,
    /// The broker timestamp (ms) of that event.
    last_timestamp_ms: Option<i64>,
    committed: Option<i64>,
    high_watermark: Option<i64>,
    events: IntCounter,
    bytes: IntCounter,
}

pub(super) struct Limits {
    pub batch_max_events: usize,
    pub batch_max_wait: Duration,
    pub max_outstanding_batches: usize,
}

pub(super) struct Core {
    source: Arc<str>,
    limits: Limits,
    /// `None` once the source stops forwarding.
    out: Option<mpsc::Sender<Batch>>,
    ack_tx: mpsc::UnboundedSender<AckOutcome>,
    ack_rx: mpsc::UnboundedReceiver<AckOutcome>,
    ledger: Ledger,
    next_batch: u64,
    building: Vec<Event>,
    building_since: Option<Instant>,
    owned: Vec<Owned>,
    /// Bumped whenever the owned set changes (the loop re-applies a pause).
    pub generation: u64,
    prom: KafkaMetrics,
}

impl Core {
    pub fn new(
        source: Arc<str>,
        limits: Limits,
        out: mpsc::Sender<Batch>,
        prom: KafkaMetrics,
    ) -> Core {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let ledger = Ledger::new(
            limits.max_outstanding_batches,
            Box::new(NoProgress),
            Arc::default(),
        );
        prom.assigned_partitions
            .with_label_values(&[&*source])
            .set(0);
        Core {
            source,
            limits,
            out: Some(out),
            ack_tx,
            ack_rx,
            ledger,
            next_batch: 0,
            building: Vec::new(),
            building_since: None,
            owned: Vec::new(),
            generation: 0,
            prom,
        }
    }

    fn find(&self, topic: &str, partition: i32) -> Option<usize> {
        self.owned
            .iter()
            .position(|o| o.partition == partition && &*o.topic == topic)
    }

    fn own(&mut self, topic: &str, partition: i32) -> usize {
        if let Some(i) = self.find(topic, partition) {
            return i;
        }
        let label = partition.to_string();
        let values = [&*self.source, topic, label.as_str()];
        let owned = Owned {
            topic: Arc::from(topic),
            partition,
            key: Arc::from(format!("{topic}/{partition}")),
            events: self.prom.events.with_label_values(&values),
            bytes: self.prom.bytes.with_label_values(&values),
            label,
            position: None,
            last_timestamp_ms: None,
            committed: None,
            high_watermark: None,
        };
        self.owned.push(owned);
        self.generation += 1;
        self.prom
            .assigned_partitions
            .with_label_values(&[&*self.source])
            .set(self.owned.len() as i64);
        self.owned.len() - 1
    }

    /// The partitions owned now.
    pub fn assignment(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for o in &self.owned {
            tpl.add_partition(&o.topic, o.partition);
        }
        tpl
    }

    /// A message from the consumer: joins the batch being gathered.
    pub fn push(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        payload: &[u8],
        now: Instant,
    ) {
        let i = self.own(topic, partition);
        let o = &mut self.owned[i];
        // Below the group's commit: read again to rebuild windows (see `seed_commits`).
        let replayed = o.committed.is_some_and(|c| offset < c);
        o.position = Some(offset + 1);
        o.last_timestamp_ms = timestamp_ms.or(o.last_timestamp_ms);
        o.events.inc();
        o.bytes.inc_by(payload.len() as u64);
        if self.building.is_empty() {
            self.building_since = Some(now);
        }
        let mut event = Event::new(
            payload.to_vec(),
            Position {
                partition: o.key.clone(),
                offset,
                sequence_number: offset,
                enqueued_time: timestamp_ms.map(|ms| ms.saturating_mul(TICKS_PER_MILLISECOND)),
            },
        );
        event.replayed = replayed;
        self.building.push(event);
    }

    /// The group's commits for partitions just assigned (`topic/partition` → the offset
    /// after the last event handled), known before any of their events is read. An event
    /// before its commit was forwarded and dead-lettered before the commit was made: read
    /// again (a rebuild from the oldest event) it is marked replayed and updates windows
    /// only. Nothing is committed at or behind it either (see `commit`).
    pub fn seed_commits(&mut self, commits: &[(String, i64)]) {
        for (key, offset) in commits {
            if let Some(o) = self.owned.iter_mut().find(|o| &*o.key == key.as_str()) {
                if o.committed.is_none_or(|c| c < *offset) {
                    o.committed = Some(*offset);
                    self.prom
                        .committed_offset
                        .with_label_values(&[&*self.source, &o.topic, &o.label])
                        .set(*offset);
                }
            }
        }
    }

    /// Settles the outcomes that arrived.
    pub fn drain_acks(&mut self) {
        while let Ok(outcome) = self.ack_rx.try_recv() {
            self.ledger.settle(&outcome);
        }
    }

    /// Moves a due batch to `ready` and forwards it if the pipeline has room. Returns
    /// whether the source is held back (a batch waits for room, or too many are in flight),
    /// and then fetching should pause.
    pub fn forward(&mut self, now: Instant) -> bool {
        let due = self.building.len() >= self.limits.batch_max_events
            || self
                .building_since
                .is_some_and(|t| now.duration_since(t) >= self.limits.batch_max_wait);
        if due && self.ledger.wants() {
            if let Some(batch) = self.take_building() {
                self.ledger.offer(batch);
            }
        }
        if let (Some(out), true) = (&self.out, self.ledger.holds()) {
            if let Ok(permit) = out.try_reserve() {
                self.ledger.send(permit);
            }
        }
        self.ledger.holds()
            || self.ledger.full()
            || self.building.len() >= self.limits.batch_max_events
    }

    fn take_building(&mut self) -> Option<Batch> {
        if self.building.is_empty() {
            return None;
        }
        self.building_since = None;
        let id = self.next_batch;
        self.next_batch += 1;
        Some(Batch::new(
            self.source.clone(),
            std::mem::take(&mut self.building),
            AckToken::new(id, self.ack_tx.clone()),
        ))
    }

    /// How long the loop may wait in `poll` before a partial batch is due.
    pub fn poll_wait(&self, now: Instant, idle: Duration) -> Duration {
        match self.building_since {
            Some(t) => (t + self.limits.batch_max_wait)
                .saturating_duration_since(now)
                .min(idle),
            None => idle,
        }
    }

    /// Waits (at most `limit`) for room in the pipeline or for an outcome, whichever comes
    /// first, and takes it. Called from the consumer thread, never from the runtime.
    pub fn wait_for_room(&mut self, handle: &Handle, limit: Duration) {
        let Core {
            out,
            ack_rx,
            ledger,
            ..
        } = self;
        handle.block_on(async {
            let holds = ledger.holds();
            let reserve = async {
                match (out.as_ref(), holds) {
                    (Some(out), true) => out.reserve().await.ok(),
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(permit) = reserve => ledger.send(permit),
                Some(outcome) = ack_rx.recv() => ledger.settle(&outcome),
                _ = tokio::time::sleep(limit) => {}
            }
        });
    }

    /// The pipeline is gone (the engine stopped).
    pub fn pipeline_closed(&self) -> bool {
        self.out.as_ref().is_none_or(|o| o.is_closed())
    }

    /// Stops forwarding: what was gathered and not sent is dropped (it was never
    /// registered, so its offsets are not committed and it is read again).
    pub fn stop_forwarding(&mut self) {
        self.out = None;
        self.ledger.drop_held();
        self.building.clear();
        self.building_since = None;
    }

    /// Waits until no batch of these partitions (all, with `None`) is in flight, or the
    /// deadline passes. Returns whether everything settled.
    pub fn settle(
        &mut self,
        handle: &Handle,
        keys: Option<&[Arc<str>]>,
        deadline: Instant,
    ) -> bool {
        loop {
            self.drain_acks();
            let waiting = match keys {
                Some(keys) => keys.iter().any(|k| self.ledger.has_pending(k)),
                None => self.ledger.outstanding() > 0,
            };
            if !waiting {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let rx = &mut self.ack_rx;
            let got = handle.block_on(async { tokio::time::timeout(left, rx.recv()).await });
            match got {
                Ok(Some(outcome)) => self.ledger.settle(&outcome),
                // Every token is gone and the channel cannot close while we hold a sender;
                // a timeout ends the wait.
                Ok(None) | Err(_) => return false,
            }
        }
    }

    /// Commits, synchronously, the offset after the acknowledged prefix of every owned
    /// partition (of `only`, if given) that moved since its last commit. Returns the
    /// number of partitions committed, or the error text.
    pub fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        only: Option<&[Arc<str>]>,
    ) -> Result<usize, String> {
        let settled = self.ledger.committable(None);
        let mut tpl = TopicPartitionList::new();
        let mut moved = Vec::new();
        for (key, cp) in settled {
            if only.is_some_and(|keys| !keys.iter().any(|k| **k == *key)) {
                continue;
            }
            let Some(i) = self.owned.iter().position(|o| *o.key == *key) else {
                continue;
            };
            let next = cp.offset + 1;
            if self.owned[i].committed.is_some_and(|c| c >= next) {
                continue;
            }
            let o = &self.owned[i];
            if let Err(e) = tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(next)) {
                return Err(e.to_string());
            }
            moved.push((i, next));
        }
        if moved.is_empty() {
            return Ok(0);
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                for (i, next) in &moved {
                    let o = &mut self.owned[*i];
                    o.committed = Some(*next);
                    self.prom
                        .committed_offset
                        .with_label_values(&[&*self.source, &*o.topic, &o.label])
                        .set(*next);
                }
                self.ledger.committed();
                Ok(moved.len())
            }
            Err(e) => {
                self.prom
                    .commit_failures
                    .with_label_values(&[&*self.source])
                    .inc();
                Err(e.to_string())
            }
        }
    }

    /// Partitions assigned to this replica (all of them, or the increment).
    pub fn assign(&mut self, tpl: &TopicPartitionList) {
        for e in tpl.elements() {
            self.own(e.topic(), e.partition());
        }
    }

    /// Sends a change of the partitions this replica reads in line with its batches, and
    /// waits (at most `limit`) until the engine carried it out: an acquired partition's
    /// state is restored before any of its events is sent, a released one's is stored
    /// before its offsets are committed. Outcomes of other batches that arrive meanwhile are
    /// settled as usual. Returns whether the engine did it in time.
    pub fn change_ownership(
        &mut self,
        handle: &Handle,
        change: Ownership,
        limit: Duration,
    ) -> bool {
        let Some(out) = self.out.clone() else {
            return false;
        };
        let id = self.next_batch;
        self.next_batch += 1;
        let batch = Batch::change(
            self.source.clone(),
            change,
            AckToken::new(id, self.ack_tx.clone()),
        );
        let Core { ack_rx, ledger, .. } = self;
        handle.block_on(async {
            let done = async {
                if out.send(batch).await.is_err() {
                    return false;
                }
                while let Some(outcome) = ack_rx.recv().await {
                    if outcome.batch == id {
                        return outcome.delivered;
                    }
                    ledger.settle(&outcome);
                }
                false
            };
            tokio::time::timeout(limit, done).await.unwrap_or(false)
        })
    }

    /// Acquires these partitions through the engine (their window state restored) and
    /// returns where each must be read from, or `None` if the engine did not answer in time.
    pub fn acquire(
        &mut self,
        handle: &Handle,
        keys: Vec<Arc<str>>,
        limit: Duration,
    ) -> Option<Resume> {
        let (change, mut answer) = Ownership::acquire(keys);
        if !self.change_ownership(handle, change, limit) {
            return None;
        }
        // Answered before the change's batch was acknowledged.
        answer.try_recv().ok()
    }

    /// The keys of these partitions that are owned.
    pub fn keys_of(&self, tpl: &TopicPartitionList) -> Vec<Arc<str>> {
        tpl.elements()
            .iter()
            .filter_map(|e| self.find(e.topic(), e.partition()))
            .map(|i| self.owned[i].key.clone())
            .collect()
    }

    /// Events of these partitions that were gathered but not sent are dropped: the
    /// partitions' next owner reads them from the committed offset.
    pub fn drop_unsent(&mut self, keys: &[Arc<str>]) {
        let gone = |e: &Event| keys.contains(&e.position.partition);
        self.building.retain(|e| !gone(e));
        if self.building.is_empty() {
            self.building_since = None;
        }
        self.ledger.retain_held(|e| !gone(e));
    }

    /// Forgets partitions that left this replica, and their series.
    pub fn release(&mut self, keys: &[Arc<str>]) {
        for key in keys {
            self.ledger.forget(key);
            if let Some(i) = self.owned.iter().position(|o| o.key == *key) {
                let o = self.owned.swap_remove(i);
                let values = [&*self.source, &*o.topic, o.label.as_str()];
                let p = &self.prom;
                for v in [&p.events, &p.bytes] {
                    let _ = v.remove_label_values(&values);
                }
                for v in [
                    &p.position,
                    &p.committed_offset,
                    &p.high_watermark,
                    &p.lag_events,
                ] {
                    let _ = v.remove_label_values(&values);
                }
                let _ = p.lag_seconds.remove_label_values(&values);
            }
        }
        self.generation += 1;
        self.prom
            .assigned_partitions
            .with_label_values(&[&*self.source])
            .set(self.owned.len() as i64);
    }

    /// From the client's statistics: the high watermark, and the group's committed offset
    /// as fetched at assignment (until this replica commits one itself).
    pub fn set_statistics(&mut self, topic: &str, partition: i32, hi: i64, committed: i64) {
        if let Some(i) = self.find(topic, partition) {
            let o = &mut self.owned[i];
            if hi >= 0 {
                o.high_watermark = Some(hi);
            }
            if committed >= 0 && o.committed.is_none() {
                o.committed = Some(committed);
                self.prom
                    .committed_offset
                    .with_label_values(&[&*self.source, &*o.topic, &o.label])
                    .set(committed);
            }
        }
    }

    /// Publishes each owned partition's position and lag.
    pub fn refresh_metrics(&self) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        for o in &self.owned {
            let values = [&*self.source, &*o.topic, o.label.as_str()];
            if let Some(p) = o.position {
                self.prom.position.with_label_values(&values).set(p);
            }
            if let Some(hi) = o.high_watermark {
                self.prom.high_watermark.with_label_values(&values).set(hi);
            }
            let waiting = match (o.high_watermark, o.position) {
                (Some(hi), Some(p)) => Some((hi - p).max(0)),
                (Some(hi), None) => o.committed.map(|c| (hi - c).max(0)),
                _ => None,
            };
            if let Some(w) = waiting {
                self.prom.lag_events.with_label_values(&values).set(w);
                let age = match (w > 0, o.last_timestamp_ms) {
                    (true, Some(ts)) => ((now_ms - ts).max(0)) as f64 / 1000.0,
                    _ => 0.0,
                };
                self.prom.lag_seconds.with_label_values(&values).set(age);
            }
        }
    }

    /// A one-line summary for debug logs.
    pub fn describe(&self) -> String {
        format!(
            "events={:?} building={} ready={} outstanding={} offsets={:?}",
            self.owned
                .iter()
                .map(|o| o.events.get())
                .collect::<Vec<_>>(),
            self.building.len(),
            self.ledger.held_events(),
            self.ledger.outstanding(),
            self.offsets()
        )
    }

    /// Per owned partition: (key, position, committed), for tests and logs.
    pub fn offsets(&self) -> Vec<(String, Option<i64>, Option<i64>)> {
        let mut v: Vec<_> = self
            .owned
            .iter()
            .map(|o| (o.key.to_string(), o.position, o.committed))
            .collect();
        v.sort();
        v
    }
}
