//! The Event Hubs AMQP source against the in-process emulator: every event exactly once with
//! its exact position, resume strictly after a checkpoint, exactly once through repeated
//! connection drops, and a clear, secret-free error for a wrong key. Every wait is bounded.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::with_signature;
use hubwatch::checkpoint::{CheckpointStore, FileCheckpointStore};
use hubwatch::emulator::{Emulator, EmulatorConfig};
use hubwatch::shutdown::{self, Trigger};
use hubwatch::source::amqp::{AmqpSource, AmqpSourceConfig, AmqpSourceMetrics, StartPosition};
use hubwatch::source::{Batch, Event, Source};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const HUB: &str = "hub";

fn config(emulator: &Emulator) -> AmqpSourceConfig {
    let mut cfg = AmqpSourceConfig::with_connection_string(
        "eh",
        emulator.connection_string(HUB),
        HUB,
        StartPosition::Earliest,
    );
    cfg.batch_max_wait = Duration::from_millis(50);
    cfg.commit_interval = Duration::from_millis(100);
    cfg.lag_poll_interval = Duration::from_millis(500);
    cfg.reconnect.initial = Duration::from_millis(50);
    cfg.reconnect.max = Duration::from_millis(500);
    cfg
}

struct Running {
    trigger: Trigger,
    task: JoinHandle<anyhow::Result<()>>,
    batches: mpsc::Receiver<Batch>,
    metrics: Arc<AmqpSourceMetrics>,
}

fn start(cfg: AmqpSourceConfig, store: Option<Arc<dyn CheckpointStore>>) -> Running {
    // Silent unless RUST_LOG asks (e.g. RUST_LOG=hubwatch::source=info).
    hubwatch::telemetry::init_tracing("off");
    let source = AmqpSource::new(cfg, store);
    let metrics = source.metrics();
    let (trigger, shutdown) = shutdown::channel();
    let (tx, batches) = mpsc::channel(4);
    let task = tokio::spawn(Box::new(source).run(tx, shutdown));
    Running {
        trigger,
        task,
        batches,
        metrics,
    }
}

impl Running {
    /// Takes (and acknowledges) batches until `n` events came, or `within` passes.
    async fn take(&mut self, n: usize, within: Duration) -> Vec<Event> {
        let mut got = Vec::new();
        let _ = timeout(within, async {
            while got.len() < n {
                let Some(batch) = self.batches.recv().await else {
                    break;
                };
                got.extend(batch.events);
                batch.ack.ack();
            }
        })
        .await;
        got
    }

    /// Takes whatever arrives within `within` (for "nothing more comes").
    async fn take_for(&mut self, within: Duration) -> Vec<Event> {
        self.take(usize::MAX, within).await
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.trigger.trigger();
        let Running {
            task, mut batches, ..
        } = self;
        // Keep acknowledging whatever is still in flight while the source drains.
        let drain = tokio::spawn(async move {
            while let Some(b) = batches.recv().await {
                b.ack.ack();
            }
        });
        let result = timeout(Duration::from_secs(20), task)
            .await
            .expect("the source stops within its bound")
            .expect("the source task does not panic");
        let _ = timeout(Duration::from_secs(5), drain).await;
        result
    }
}

fn body(i: usize) -> Vec<u8> {
    format!("{{\"records\":[{{\"n\":{i}}}]}}").into_bytes()
}

/// Publishes `range` round robin; returns (partition, sequence number) → body index.
fn publish(emulator: &Emulator, range: std::ops::Range<usize>) -> HashMap<(String, i64), usize> {
    range
        .map(|i| {
            let (p, seq) = emulator.publish(HUB, None, body(i)).unwrap();
            ((p.to_string(), seq), i)
        })
        .collect()
}

/// Each event's (partition, sequence number), checking none repeats.
fn positions(events: &[Event]) -> BTreeMap<(String, i64), &Event> {
    let mut seen = BTreeMap::new();
    for e in events {
        let key = (e.position.partition.to_string(), e.position.sequence_number);
        assert!(
            seen.insert(key.clone(), e).is_none(),
            "{key:?} delivered twice"
        );
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_with_its_exact_position() {
    let emulator = Emulator::start(EmulatorConfig::single_hub(HUB, 2))
        .await
        .unwrap();
    let published = publish(&emulator, 0..300);
    let mut src = start(config(&emulator), None);
    let events = src.take(300, Duration::from_secs(30)).await;
    assert_eq!(events.len(), 300, "all events within 30 s");
    let seen = positions(&events);
    assert_eq!(seen.len(), 300);
    for (key, e) in &seen {
        let i = published
            .get(key)
            .unwrap_or_else(|| panic!("{key:?} was never published"));
        assert_eq!(e.body, body(*i), "{key:?}");
        assert!(e.position.enqueued_time.is_some(), "{key:?}");
        assert!(e.position.offset >= 0, "{key:?}");
    }
    // In order within each partition, from 0 with no gap.
    for p in ["0", "1"] {
        let seqs: Vec<i64> = events
            .iter()
            .filter(|e| &*e.position.partition == p)
            .map(|e| e.position.sequence_number)
            .collect();
        assert_eq!(seqs, (0..150).collect::<Vec<_>>(), "partition {p}");
    }
    assert!(src.take_for(Duration::from_millis(500)).await.is_empty());

    // The statistics caught up: processed = last, no lag.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = src.metrics.snapshot();
    assert_eq!(stats.len(), 2);
    for s in &stats {
        assert_eq!(s.events, 150, "{s:?}");
        assert_eq!(s.processed_sequence_number, Some(149), "{s:?}");
        assert_eq!(s.lag_events, Some(0), "{s:?}");
    }
    src.stop().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_strictly_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoints.json");
    let store: Arc<dyn CheckpointStore> = Arc::new(FileCheckpointStore::open(&path).unwrap());
    let emulator = Emulator::start(EmulatorConfig::single_hub(HUB, 2))
        .await
        .unwrap();

    publish(&emulator, 0..100);
    let mut first = start(config(&emulator), Some(store.clone()));
    let events = first.take(100, Duration::from_secs(30)).await;
    assert_eq!(positions(&events).len(), 100);
    first.stop().await.unwrap();
    for p in ["0", "1"] {
        let cp = store
            .load("eh")
            .await
            .unwrap()
            .remove(p)
            .expect("committed at shutdown");
        assert_eq!(cp.sequence_number, 49, "partition {p}");
    }

    let published = publish(&emulator, 100..160);
    let mut second = start(config(&emulator), Some(store.clone()));
    let events = second.take(60, Duration::from_secs(30)).await;
    let seen = positions(&events);
    assert_eq!(seen.len(), 60);
    for key in seen.keys() {
        assert!(
            published.contains_key(key),
            "{key:?} was read before the restart"
        );
        assert!(key.1 >= 50, "{key:?}");
    }
    assert!(second.take_for(Duration::from_millis(500)).await.is_empty());
    second.stop().await.unwrap();
    for p in ["0", "1"] {
        assert_eq!(store.load("eh").await.unwrap()[p].sequence_number, 79);
    }
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_lose_and_repeat_nothing() {
    const TOTAL: usize = 2000;
    let emulator = Arc::new(
        Emulator::start(EmulatorConfig::single_hub(HUB, 2))
            .await
            .unwrap(),
    );
    let mut src = start(config(&emulator), None);
    // Once receiving, publish in a stream while every connection is dropped ten times.
    publish(&emulator, 0..100);
    let mut events = src.take(100, Duration::from_secs(30)).await;
    assert_eq!(events.len(), 100);
    let producer = {
        let emulator = emulator.clone();
        tokio::spawn(async move {
            for chunk in 2..40 {
                for i in chunk * 50..(chunk + 1) * 50 {
                    emulator.publish(HUB, None, body(i)).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let faults = emulator.faults();
    let chaos = tokio::spawn(async move {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            faults.drop_all_connections();
        }
    });

    events.extend(src.take(TOTAL - 100, Duration::from_secs(90)).await);
    timeout(Duration::from_secs(10), producer)
        .await
        .unwrap()
        .unwrap();
    timeout(Duration::from_secs(10), chaos)
        .await
        .unwrap()
        .unwrap();
    let extra = src.take_for(Duration::from_secs(1)).await;
    assert!(
        extra.is_empty(),
        "{} events beyond the {TOTAL} published",
        extra.len()
    );

    let mut per_partition: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for e in &events {
        per_partition
            .entry(e.position.partition.to_string())
            .or_default()
            .push(e.position.sequence_number);
    }
    for (p, seqs) in &per_partition {
        let expected: Vec<i64> = (0..(TOTAL / 2) as i64).collect();
        assert_eq!(
            seqs, &expected,
            "partition {p}: every sequence number once, in order"
        );
    }
    // Not every drop meets a live receiver (one may be between connections), but many do.
    let stats = src.metrics.snapshot();
    let reconnects: u64 = stats.iter().map(|s| s.reconnects).sum();
    let errors: u64 = stats
        .iter()
        .map(|s| s.errors.disconnected + s.errors.other)
        .sum();
    assert!(reconnects >= 3, "reconnects {reconnects}");
    assert!(
        errors >= reconnects,
        "errors {errors}, reconnects {reconnects}"
    );
    assert!(emulator.stats().connections_dropped >= 3);
    src.stop().await.unwrap();
    if let Ok(e) = Arc::try_unwrap(emulator) {
        e.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_ends_run_with_a_clear_error_and_no_secret() {
    let emulator = Emulator::start(EmulatorConfig::single_hub(HUB, 2))
        .await
        .unwrap();
    let good = emulator.connection_string(HUB);
    let wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5PT0=";
    let bad: String = good
        .split(';')
        .map(|kv| {
            if kv.to_ascii_lowercase().starts_with("sharedaccesskey=") {
                format!("SharedAccessKey={wrong_key}")
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(";");
    let mut cfg = config(&emulator);
    cfg.connection_string = Some(bad);
    let src = start(cfg, None);
    let result = timeout(Duration::from_secs(30), src.task)
        .await
        .expect("run() gives up on refused credentials instead of retrying")
        .unwrap();
    let err = format!(
        "{:#}",
        result.expect_err("refused credentials are an error")
    );
    assert!(
        err.contains("401") && err.to_ascii_lowercase().contains("unauthorized"),
        "{err}"
    );
    assert!(
        err.starts_with("Event Hubs refused the credentials for"),
        "{err}"
    );
    assert!(!err.contains(wrong_key), "{err}");
    assert!(!err.contains(wrong_key.trim_end_matches('=')), "{err}");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_reads_only_what_comes_after_the_start() {
    let emulator = Emulator::start(EmulatorConfig::single_hub(HUB, 2))
        .await
        .unwrap();
    publish(&emulator, 0..40);
    let mut cfg = config(&emulator);
    cfg.start = StartPosition::Latest;
    let mut src = start(cfg, None);
    // Wait until both partitions resolved "latest" (their lag baseline is known).
    timeout(Duration::from_secs(20), async {
        while src
            .metrics
            .snapshot()
            .iter()
            .filter(|s| s.lag_events == Some(0))
            .count()
            < 2
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both partitions start");
    let published = publish(&emulator, 40..60);
    let events = src.take(20, Duration::from_secs(20)).await;
    let seen = positions(&events);
    assert_eq!(seen.len(), 20);
    assert!(
        seen.keys().all(|k| published.contains_key(k)),
        "{:?}",
        seen.keys()
    );
    assert!(src.take_for(Duration::from_millis(300)).await.is_empty());
    src.stop().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_partition_is_left_to_the_higher_owner_level() {
    let emulator = Emulator::start(EmulatorConfig::single_hub(HUB, 2))
        .await
        .unwrap();
    publish(&emulator, 0..20);
    let mut low = config(&emulator);
    low.owner_level = Some(1);
    let mut first = start(low, None);
    assert_eq!(first.take(20, Duration::from_secs(20)).await.len(), 20);

    let mut high = config(&emulator);
    high.owner_level = Some(2);
    let mut second = start(high, None);
    assert_eq!(second.take(20, Duration::from_secs(20)).await.len(), 20);

    // The first source noticed, stopped both partitions and does not fight back.
    timeout(Duration::from_secs(20), async {
        while first
            .metrics
            .snapshot()
            .iter()
            .any(|s| s.errors.stolen == 0)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both partitions of the first source are stolen");
    let published = publish(&emulator, 20..40);
    let events = second.take(20, Duration::from_secs(20)).await;
    assert!(positions(&events).keys().all(|k| published.contains_key(k)));
    assert!(first.take_for(Duration::from_millis(500)).await.is_empty());
    for s in first.metrics.snapshot() {
        assert_eq!(
            s.state,
            hubwatch::source::amqp::PartitionState::Stolen,
            "{s:?}"
        );
        assert_eq!(s.reconnects, 0, "{s:?}");
        assert_eq!(s.errors.stolen, 1, "{s:?}");
    }
    assert!(
        !first.task.is_finished(),
        "a source whose partitions were taken keeps running"
    );
    first.stop().await.unwrap();
    second.stop().await.unwrap();
    emulator.shutdown().await;
}

/// The service with an `amqp` source from a TOML file.
async fn service(
    dir: &std::path::Path,
    connection_string: &str,
) -> (hubwatch::app::Running, Trigger) {
    let text = format!(
        "[export]\nlisten = \"127.0.0.1:0\"\n[checkpoint]\ndir = \".\"\ninterval = \"100ms\"\n\
         [[sources]]\ntype = \"amqp\"\nname = \"eh\"\nconnection_string = \"{connection_string}\"\n\
         start = \"earliest\"\nbatch_max_wait = \"20ms\"\nlag_poll_interval = \"200ms\"\n"
    );
    let path = dir.join("hubwatch.toml");
    std::fs::write(&path, text).unwrap();
    let settings = hubwatch::config::load(&path, &hubwatch::schema::Schemas::embedded()).unwrap();
    let (trigger, shutdown) = shutdown::channel();
    (
        hubwatch::app::start(settings, shutdown).await.unwrap(),
        trigger,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_exports_partition_metrics_and_commits() {
    let emulator = Emulator::start(EmulatorConfig::single_hub(HUB, 2))
        .await
        .unwrap();
    publish(&emulator, 0..50);
    let dir = tempfile::tempdir().unwrap();
    let (running, trigger) = service(dir.path(), &emulator.connection_string(HUB)).await;
    let m = running.metrics.clone();
    let events = |p: &str| m.amqp.events.with_label_values(&["eh", p]).get();
    timeout(Duration::from_secs(20), async {
        while events("0") + events("1") < 50
            || m.source.checkpoint_commits.with_label_values(&["eh"]).get() == 0
            || m.amqp
                .processed_sequence_number
                .with_label_values(&["eh", "1"])
                .get()
                != 24
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("events counted, processed and committed");
    assert_eq!((events("0"), events("1")), (25, 25));
    assert_eq!(m.amqp.lag_events.with_label_values(&["eh", "0"]).get(), 0);
    assert_eq!(m.source.events.with_label_values(&["eh"]).get(), 50);
    // Read the file afresh each time: a store reads it once, when opened.
    let committed = || {
        FileCheckpointStore::open(dir.path().join("checkpoints.json"))
            .unwrap()
            .load_sync("eh")
            .get("0")
            .map(|c| c.sequence_number)
    };
    timeout(Duration::from_secs(5), async {
        while committed() != Some(24) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("partition 0 committed at 24");
    trigger.trigger();
    timeout(Duration::from_secs(20), running.wait())
        .await
        .expect("the service drains")
        .unwrap();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_fails_when_the_key_is_refused() {
    let emulator = Emulator::start(EmulatorConfig::single_hub(HUB, 2))
        .await
        .unwrap();
    let bad = emulator
        .connection_string(HUB)
        .replace("SharedAccessKey=", "SharedAccessKey=AAAAnotthekey");
    let dir = tempfile::tempdir().unwrap();
    // Nobody triggers shutdown: the failing source stops the service by itself.
    let (running, _trigger) = service(dir.path(), &bad).await;
    let err = timeout(Duration::from_secs(30), running.wait())
        .await
        .expect("the service stops")
        .expect_err("with an error");
    let text = format!("{err:#}");
    assert!(
        text.contains("source 'eh'") && text.contains("401"),
        "{text}"
    );
    assert!(!text.contains("AAAAnotthekey"), "{text}");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_event_hub_is_an_error_not_a_retry_loop() {
    let emulator = Emulator::start(EmulatorConfig::single_hub(HUB, 2))
        .await
        .unwrap();
    let mut cfg = config(&emulator);
    cfg.connection_string = Some(
        emulator
            .connection_string(HUB)
            .replace(";EntityPath=hub", ""),
    );
    cfg.event_hub = "nope".to_string();
    let src = start(cfg, None);
    let result = timeout(Duration::from_secs(30), src.task)
        .await
        .expect("run() gives up")
        .unwrap();
    let err = format!("{:#}", result.expect_err("an unknown hub is an error"));
    assert!(err.contains("/nope: not found"), "{err}");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preformed_signature_works_too() {
    let emulator = Emulator::start(EmulatorConfig::single_hub(HUB, 2))
        .await
        .unwrap();
    let mut cfg = config(&emulator);
    cfg.connection_string = Some(with_signature(&emulator, HUB, 3600));
    publish(&emulator, 0..10);
    let mut src = start(cfg, None);
    assert_eq!(
        positions(&src.take(10, Duration::from_secs(20)).await).len(),
        10
    );
    src.stop().await.unwrap();
    emulator.shutdown().await;
}

/// A pre-formed SAS cannot be renewed: when it expires the service drops the links. The
/// source reconnects once per partition (a lost authorization may be a token a new
/// connection renews), is refused with the same token, and stops with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_signature_drops_the_links_and_ends_run_with_a_clear_error() {
    let emulator = Emulator::start(EmulatorConfig::single_hub(HUB, 2))
        .await
        .unwrap();
    let mut cfg = config(&emulator);
    cfg.connection_string = Some(with_signature(&emulator, HUB, 3));
    publish(&emulator, 0..10);
    let mut src = start(cfg, None);
    assert_eq!(
        positions(&src.take(10, Duration::from_secs(2)).await).len(),
        10,
        "read while the signature is valid"
    );
    let Running {
        task,
        mut batches,
        metrics,
        trigger: _trigger,
    } = src;
    let drain = tokio::spawn(async move {
        while let Some(b) = batches.recv().await {
            b.ack.ack();
        }
    });
    let result = timeout(Duration::from_secs(30), task)
        .await
        .expect("run() ends once the expired signature is refused")
        .unwrap();
    let err = format!(
        "{:#}",
        result.expect_err("an expired signature is an error")
    );
    assert!(
        err.starts_with("Event Hubs refused the credentials for") && err.contains("401"),
        "{err}"
    );
    assert!(err.to_ascii_lowercase().contains("expired"), "{err}");
    let reconnects: u64 = metrics.snapshot().iter().map(|p| p.reconnects).sum();
    assert!(
        reconnects >= 1,
        "a link dropped for authorization is retried on a new connection before giving up"
    );
    let _ = timeout(Duration::from_secs(5), drain).await;
    emulator.shutdown().await;
}
