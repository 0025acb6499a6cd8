//! hubwatch stopped mid-stream and started again restores its window state and resumes
//! after what that state holds: the results equal one uninterrupted run, with nothing lost
//! and nothing counted twice. Once with a single SIGKILL; then 25 times (20 SIGKILL,
//! 5 SIGTERM) at random moments on a four-partition hub that keeps growing, with a query
//! added half way (its history re-read, and skipped by the others), checked against an
//! oracle that recounts the generated events. Real processes: `hubwatch run` against the
//! in-process emulator.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use hubwatch::emulator::{Emulator, EmulatorConfig};
use hubwatch::rng::SplitMix64;
use serde_json::{json, Value};

const HUB: &str = "restart";

fn checkpointed(dir: &Path) -> i64 {
    let Ok(text) = std::fs::read_to_string(dir.join("checkpoints.json")) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["eh"]
        .as_object()
        .map(|parts| {
            parts
                .values()
                .map(|p| p["sequence_number"].as_i64().unwrap_or(-1) + 1)
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_killed_service_resumes_after_its_last_checkpoint() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emulator = rt
        .block_on(Emulator::start(EmulatorConfig::single_hub(HUB, 2)))
        .unwrap();
    let publish = |range: std::ops::Range<usize>| {
        for i in range {
            emulator.publish(HUB, None, job_body(i)).unwrap();
        }
    };
    publish(0..500);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hubwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n[checkpoint]\ndir = \".\"\ninterval = \"50ms\"\n\
             [[sources]]\ntype = \"amqp\"\nname = \"eh\"\nconnection_string = \"{}\"\nstart = \"earliest\"\nbatch_max_wait = \"20ms\"\nbatch_max_events = 16\n\
             [[queries]]\nname = \"jobs\"\nkql = \"AmlComputeJobEvent | summarize n = count()\"\n",
            emulator.connection_string(HUB)
        ),
    )
    .unwrap();

    let mut first = Service::start(&config);
    wait_until(
        "the first 500 events absorbed",
        Duration::from_secs(30),
        || jobs_count(&first) == 500,
    );
    wait_until("500 events checkpointed", Duration::from_secs(10), || {
        checkpointed(dir.path()) == 500
    });
    publish(500..800);
    wait_until("more events absorbed", Duration::from_secs(30), || {
        jobs_count(&first) >= 600
    });
    first.child.kill().unwrap(); // SIGKILL: no drain, no final commit
    first.child.wait().unwrap();
    let committed = checkpointed(dir.path());
    assert!((500..=800).contains(&committed), "checkpointed {committed}");
    publish(800..1000);

    // The new process restores the state that absorbed the committed events (and perhaps
    // a few more), resumes after what that state holds, and ends with the count of one
    // uninterrupted run.
    let second = Service::start(&config);
    wait_until("the rest absorbed", Duration::from_secs(30), || {
        jobs_count(&second) >= 1000
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        jobs_count(&second),
        1000,
        "no gap and no duplicate across the kill ({committed} committed)"
    );
    let (_, metrics) = second.get("/metrics");
    let read = metric(&metrics, "hubwatch_source_events_total{source=\"eh\"}").unwrap_or(0.0);
    // Snapshots lead commits: it read at most what followed the commit, and at least what
    // was published after the kill, which no state could hold.
    assert!(
        (200.0..=(1000 - committed) as f64).contains(&read),
        "the second process resumed after its state, at or past the commit: read {read}, {committed} committed"
    );
    drop(second);
    rt.block_on(emulator.shutdown());
}

/// The hub of the 25-stop test, and how many events it gets after the last stop.
const GROWING_HUB: &str = "growing";
const PARTITIONS: u32 = 4;
const TAIL: usize = 300;
/// The round from which the config has [`PER_TYPE`] too.
const PER_TYPE_FROM: usize = 12;

const CLUSTERS: [&str; 3] = ["cpu-d2", "gpu-a100", "gpu-v100"];
const EVENT_TYPES: [&str; 4] = ["JobSubmitted", "JobRunning", "JobSucceeded", "JobFailed"];

/// Job `i`'s cluster and event type: a fixed function of `i`, so the oracle can recount them.
fn job(i: usize) -> (&'static str, &'static str) {
    let r = SplitMix64(i as u64).next_u64();
    (
        CLUSTERS[(r % CLUSTERS.len() as u64) as usize],
        EVENT_TYPES[((r >> 32) % EVENT_TYPES.len() as u64) as usize],
    )
}

/// Job `i`'s event time in ticks (100 ns since the Unix epoch), one second apart as
/// `job_body`'s: four seconds apart in each partition.
fn job_ticks(i: usize) -> i64 {
    (1_700_000_000 + i as i64) * 10_000_000
}

/// A one-record `AmlComputeJobEvent` body for job `i`, with its cluster and event type.
fn job_event(i: usize) -> Vec<u8> {
    let (cluster, event_type) = job(i);
    let t = hubwatch::time::format_datetime(job_ticks(i));
    format!(
        r#"{{"records":[{{"time":"{t}","category":"AmlComputeJobEvent","resourceId":"/x","properties":{{"JobName":"j{i}","ClusterName":"{cluster}","EventType":"{event_type}"}}}}]}}"#
    )
    .into_bytes()
}

const PER_CLUSTER: &str = "AmlComputeJobEvent | summarize events = count(), failed = countif(EventType == \"JobFailed\"), ['last'] = max(TimeGenerated) by ClusterName";
const PER_BIN: &str =
    "AmlComputeJobEvent | summarize n = count() by EventType, bin(TimeGenerated, 5m)";
/// Added half way: its state is rebuilt from the oldest event the hub holds. (Not a
/// tumbling one: rows for bins the restored clock already closed would be late.)
const PER_TYPE: &str = "AmlComputeJobEvent | summarize events = count(), ['first'] = min(TimeGenerated), ['last'] = max(TimeGenerated) by EventType";
/// How long a bin stays open after its end, in the config and in the oracle. Restarts let
/// the partitions drift apart (after a restart one may read its backlog before another
/// starts); a partition behind the clock the others moved by more event time than this
/// would have its events dropped as late, which one evenly read run would not see. 25
/// minutes are 375 events of each partition, several runs' worth.
const LATENESS_MINUTES: i64 = 25;
const MINUTE: i64 = 60 * 10_000_000;

/// One uninterrupted run's answer to [`PER_CLUSTER`] over jobs `0..n`.
fn per_cluster_oracle(n: usize) -> Value {
    let mut by: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
    for i in 0..n {
        let (cluster, event_type) = job(i);
        let row = by.entry(cluster).or_default();
        row.0 += 1;
        row.1 += (event_type == "JobFailed") as i64;
        row.2 = row.2.max(job_ticks(i));
    }
    by.into_iter()
        .map(|(cluster, (events, failed, last))| {
            json!({
                "ClusterName": cluster,
                "events": events,
                "failed": failed,
                "last": hubwatch::time::format_datetime(last),
            })
        })
        .collect()
}

/// One uninterrupted run's answer to [`PER_BIN`] over jobs `0..n`: the closed bins, those
/// that ended at least the allowed lateness before the clock (the last job's time).
fn per_bin_oracle(n: usize) -> Value {
    const BIN: i64 = 5 * MINUTE;
    let watermark = job_ticks(n - 1) - LATENESS_MINUTES * MINUTE;
    let mut by: BTreeMap<(&str, i64), i64> = BTreeMap::new();
    for i in 0..n {
        let bin = job_ticks(i).div_euclid(BIN) * BIN;
        if bin + BIN <= watermark {
            *by.entry((job(i).1, bin)).or_default() += 1;
        }
    }
    by.into_iter()
        .map(|((event_type, bin), n)| {
            json!({
                "EventType": event_type,
                "TimeGenerated": hubwatch::time::format_datetime(bin),
                "n": n,
            })
        })
        .collect()
}

/// One uninterrupted run's answer to [`PER_TYPE`] over jobs `0..n`.
fn per_type_oracle(n: usize) -> Value {
    let mut by: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
    for i in 0..n {
        let row = by.entry(job(i).1).or_insert((0, i64::MAX, i64::MIN));
        *row = (row.0 + 1, row.1.min(job_ticks(i)), row.2.max(job_ticks(i)));
    }
    by.into_iter()
        .map(|(event_type, (events, first, last))| {
            json!({
                "EventType": event_type,
                "events": events,
                "first": hubwatch::time::format_datetime(first),
                "last": hubwatch::time::format_datetime(last),
            })
        })
        .collect()
}

fn growing_config(dir: &Path, connection_string: &str, per_type: bool) -> PathBuf {
    let config = dir.join("hubwatch.toml");
    let mut text = format!(
        "[export]\nlisten = \"127.0.0.1:0\"\n[limits]\nallowed_lateness = \"{LATENESS_MINUTES}m\"\n[checkpoint]\ndir = \".\"\ninterval = \"100ms\"\n\
         [[sources]]\ntype = \"amqp\"\nname = \"eh\"\nconnection_string = \"{connection_string}\"\nstart = \"earliest\"\nbatch_max_wait = \"20ms\"\nbatch_max_events = 16\n\
         [[queries]]\nname = \"jobs\"\nkql = \"AmlComputeJobEvent | summarize n = count()\"\n\
         [[queries]]\nname = \"per_cluster\"\nkql = '''{PER_CLUSTER}'''\n\
         [[queries]]\nname = \"per_bin\"\nkql = '{PER_BIN}'\n"
    );
    if per_type {
        text.push_str(&format!(
            "[[queries]]\nname = \"per_type\"\nkql = '''{PER_TYPE}'''\n"
        ));
    }
    std::fs::write(&config, text).unwrap();
    config
}

/// The hub as a producer sees it: jobs published in order, round robin over the partitions
/// (so each partition's event time moves at the same pace).
struct Producer<'a> {
    emulator: &'a Emulator,
    published: usize,
}

impl Producer<'_> {
    /// Publishes the jobs up to `to` (exclusive).
    fn publish_to(&mut self, to: usize) {
        for i in self.published..to {
            let partition = (i % PARTITIONS as usize) as u32;
            self.emulator
                .publish(GROWING_HUB, Some(partition), job_event(i))
                .unwrap();
            self.published = i + 1;
        }
    }
}

fn rows(svc: &Service, query: &str) -> Value {
    let (status, body) = svc.get(&format!("/api/v1/queries/{query}"));
    assert_eq!(status, 200, "{query}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// What one run did, from its `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
struct RunCounts {
    /// Events read from the hub.
    read: f64,
    /// Events skipped as already held by every query's restored state.
    duplicates: f64,
    /// Rows of [`PER_BIN`] dropped for a bin already closed.
    late: f64,
}

impl RunCounts {
    fn of(svc: &Service) -> RunCounts {
        let (_, metrics) = svc.get("/metrics");
        let value = |series: &str| metric(&metrics, series).unwrap_or(0.0);
        RunCounts {
            read: value("hubwatch_source_events_total{source=\"eh\"}"),
            duplicates: value("hubwatch_state_duplicate_events_total"),
            late: value("hubwatch_query_late_total{query=\"per_bin\"}"),
        }
    }

    fn add(&mut self, run: RunCounts) {
        self.read += run.read;
        self.duplicates += run.duplicates;
        self.late += run.late;
    }
}

/// Whether every partition has delivered events to this run: its receiver is attached and
/// reading. A run stopped before that (a slow start, a short run) would leave a partition
/// where it was while the others move on, and runs of that kind in a row drift them apart.
fn every_partition_read(svc: &Service) -> bool {
    let (_, metrics) = svc.get("/metrics");
    (0..PARTITIONS).all(|p| {
        let series = format!("hubwatch_amqp_events_total{{partition=\"{p}\",source=\"eh\"}}");
        metric(&metrics, &series).is_some_and(|n| n > 0.0)
    })
}

/// Whether every partition's last event is acknowledged: absorbed, and in a stored snapshot.
fn acknowledged_to_the_end(svc: &Service, emulator: &Emulator) -> bool {
    let (_, metrics) = svc.get("/metrics");
    (0..PARTITIONS).all(|p| {
        let last = emulator.partition_state(GROWING_HUB, p).unwrap();
        let series =
            format!("hubwatch_amqp_processed_sequence_number{{partition=\"{p}\",source=\"eh\"}}");
        metric(&metrics, &series) == Some(last.last_sequence_number as f64)
    })
}

/// SIGTERM drains (last snapshot, last commit) and exits 0 within a bound.
fn sigterm(svc: &mut Service) -> Duration {
    svc.terminate(Duration::from_secs(10))
}

#[test]
fn stopped_25_times_while_the_hub_grows_the_results_equal_one_uninterrupted_run() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emulator = rt
        .block_on(Emulator::start(EmulatorConfig::single_hub(
            GROWING_HUB,
            PARTITIONS,
        )))
        .unwrap();
    let mut producer = Producer {
        emulator: &emulator,
        published: 0,
    };
    let dir = tempfile::tempdir().unwrap();
    let cs = emulator.connection_string(GROWING_HUB);
    let mut rng = SplitMix64(20261208);

    // 25 stops at random moments while the hub grows: 5 of them SIGTERM, the rest SIGKILL
    // (no drain, no last snapshot, no last commit).
    let mut stops: Vec<bool> = (0..25).map(|i| i < 5).collect();
    for i in (1..stops.len()).rev() {
        stops.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut runs = RunCounts::default();
    for (round, term) in stops.iter().enumerate() {
        // From PER_TYPE_FROM on, a query more: its partitions are read again from the oldest
        // event, and the restored queries skip what they hold (until it has caught up, which
        // a stop may interrupt: the next run resumes where the new query's state is).
        let config = growing_config(dir.path(), &cs, round >= PER_TYPE_FROM);
        // The hub grows while hubwatch is down (at least one event for each partition), and
        // then, once every partition is being read, in small bursts at random moments; the
        // stop lands right after a burst, with batches being absorbed and snapshots pending.
        producer.publish_to(producer.published + PARTITIONS as usize + rng.below(30) as usize);
        let mut svc = Service::start(&config);
        wait_until("every partition read", Duration::from_secs(30), || {
            every_partition_read(&svc)
        });
        let run = Duration::from_millis(150 + rng.below(500));
        let started = Instant::now();
        while started.elapsed() < run {
            producer.publish_to(producer.published + 1 + rng.below(8) as usize);
            std::thread::sleep(Duration::from_millis(rng.below(30)));
        }
        let counts = RunCounts::of(&svc);
        runs.add(counts);
        let how = if *term {
            format!("SIGTERM, drained in {:?}", sigterm(&mut svc))
        } else {
            svc.child.kill().unwrap();
            svc.child.wait().unwrap();
            "SIGKILL".to_string()
        };
        eprintln!(
            "round {round}: stopped ({how}) with {} events published; {counts:?}",
            producer.published
        );
    }
    // A short tail, so that the last run's backlog spans less event time than the allowed
    // lateness: no partition's events can be late for another's clock, as in one run.
    let total = producer.published + TAIL;
    producer.publish_to(total);

    // The last run restores the state, reads the rest, and answers as one uninterrupted
    // run over the whole hub.
    let svc = Service::start(&growing_config(dir.path(), &cs, true));
    wait_until("every event acknowledged", Duration::from_secs(60), || {
        acknowledged_to_the_end(&svc, &emulator)
    });
    assert_eq!(
        jobs_count(&svc),
        total as i64,
        "no gap and no duplicate across 25 stops"
    );
    assert_same_rows(
        "per_cluster",
        &rows(&svc, "per_cluster"),
        &per_cluster_oracle(total),
    );
    assert_same_rows("per_type", &rows(&svc, "per_type"), &per_type_oracle(total));
    let last = RunCounts::of(&svc);
    runs.add(last);
    assert_eq!(
        runs.late, 0.0,
        "rows dropped as late: the partitions drifted apart by more than the allowed lateness"
    );
    assert_same_rows("per_bin", &rows(&svc, "per_bin"), &per_bin_oracle(total));
    let (_, metrics) = svc.get("/metrics");
    let restored = metric(&metrics, "hubwatch_state_restored_partitions_total").unwrap_or(0.0);
    assert_eq!(
        restored, PARTITIONS as f64,
        "the last run restored every partition's state"
    );
    assert!(
        last.read < total as f64,
        "the last run resumed where its state was instead of reading all over: {last:?}"
    );
    // Events were read more than once, and the exact answers above say every query skipped
    // what it already held. A stop alone re-reads nothing (a restored partition resumes
    // after what its state holds, so `duplicates` stays 0): the added query's history is
    // what is read twice.
    assert!(
        runs.read > total as f64,
        "events re-read across the runs: {runs:?} for {total} events"
    );
    eprintln!("across the runs: {runs:?} for {total} events");
    drop(svc);
    rt.block_on(emulator.shutdown());
}
