//! Three hubwatch replicas share one event hub (the in-process emulator, 8 partitions)
//! through ownership records in Azure Blob storage (Azurite), like the Azure SDKs' event
//! processors: each reads only the partitions it owns, and a partition's window state
//! follows it. Replicas are killed (SIGKILL) and restarted, stopped (SIGTERM) and restarted,
//! while the hub grows: once the stream is read, every replica's results equal one
//! uninterrupted run over the same events — nothing lost, nothing counted twice — its own
//! partitions live and the others' from their snapshots (global results); and the
//! partitions are balanced within one of each other after every change.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::azurite::Azurite;
use common::*;
use hubwatch::emulator::{Emulator, EmulatorConfig};
use hubwatch::rng::SplitMix64;
use serde_json::Value;

const HUB: &str = "shared";
const PARTITIONS: u32 = 8;
const CONTAINER: &str = "replicas";
const CLUSTERS: [&str; 3] = ["cpu-d2", "gpu-a100", "gpu-v100"];
/// Records per body: the stream is bodies of several records, as diagnostic settings send.
const RECORDS: usize = 10;
/// Bodies published before each stop (and half as many more at random).
const BURST: usize = 600;
const STOPS: usize = 25;
const TERMS: usize = 5;
const INTERVAL: Duration = Duration::from_millis(750);
const EXPIRY: Duration = Duration::from_secs(3);

/// Body `i`: RECORDS job events on cluster `CLUSTERS[i % 3]`, the last one failed for every
/// fourth body.
fn body(i: usize) -> Vec<u8> {
    let cluster = CLUSTERS[i % CLUSTERS.len()];
    let records: Vec<String> = (0..RECORDS)
        .map(|r| {
            let event = if r == RECORDS - 1 && i.is_multiple_of(4) {
                "JobFailed"
            } else {
                "JobRunning"
            };
            format!(
                r#"{{"time":"2024-05-20T10:00:00Z","category":"AmlComputeJobEvent","resourceId":"/x","properties":{{"JobName":"j{i}-{r}","ClusterName":"{cluster}","EventType":"{event}"}}}}"#
            )
        })
        .collect();
    format!(r#"{{"records":[{}]}}"#, records.join(",")).into_bytes()
}

/// One uninterrupted run's (records, failed) per cluster over bodies `0..n`.
fn oracle(n: usize) -> BTreeMap<String, (i64, i64)> {
    let mut m: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for i in 0..n {
        let e = m
            .entry(CLUSTERS[i % CLUSTERS.len()].to_string())
            .or_default();
        e.0 += RECORDS as i64;
        e.1 += (i % 4 == 0) as i64;
    }
    m
}

fn counts(svc: &Service) -> BTreeMap<String, (i64, i64)> {
    let (status, text) = svc.get("/api/v1/queries/jobs");
    assert_eq!(status, 200, "{text}");
    let rows: Value = serde_json::from_str(&text).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["ClusterName"].as_str().unwrap().to_string(),
                (r["n"].as_i64().unwrap(), r["failed"].as_i64().unwrap()),
            )
        })
        .collect()
}

fn owned(svc: &Service) -> i64 {
    let (_, t) = svc.get("/metrics");
    metric(&t, "hubwatch_ownership_partitions{source=\"eh\"}").unwrap_or(0.0) as i64
}

fn config(dir: &Path, replica: &str, hub_cs: &str) -> PathBuf {
    let path = dir.join(format!("{replica}.toml"));
    std::fs::write(
        &path,
        format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n\
             [checkpoint]\ninterval = \"200ms\"\n[checkpoint.blob]\nconnection_string = \"${{TEST_STORAGE_CS}}\"\ncontainer = \"{CONTAINER}\"\n\
             [[sources]]\ntype = \"amqp\"\nname = \"eh\"\nconnection_string = \"{hub_cs}\"\nstart = \"earliest\"\n\
             batch_max_wait = \"20ms\"\nbatch_max_events = 64\n\
             owner_id = \"{replica}\"\nownership_interval = \"750ms\"\nownership_expiry = \"3s\"\n\
             [[queries]]\nname = \"jobs\"\nkql = 'AmlComputeJobEvent | summarize n = count(), failed = countif(EventType == \"JobFailed\") by ClusterName'\n"
        ),
    )
    .unwrap();
    path
}

struct Replicas {
    configs: Vec<PathBuf>,
    running: Vec<Option<Service>>,
    env: Vec<(String, String)>,
}

impl Replicas {
    fn start(&mut self, i: usize) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.running[i] = Some(Service::start_with_env(&self.configs[i], &env));
    }

    fn live(&self) -> Vec<&Service> {
        self.running.iter().flatten().collect()
    }

    /// Waits until the live replicas own every partition between them, and returns how
    /// long that took.
    fn wait_owned(&self, limit: Duration) -> Duration {
        let started = Instant::now();
        wait_until("every partition owned", limit, || {
            self.live().iter().map(|s| owned(s)).sum::<i64>() == PARTITIONS as i64
        });
        started.elapsed()
    }

    /// Waits until the live replicas own every partition between them, each within one of
    /// the others, and returns how long that took.
    fn wait_balanced(&self, limit: Duration) -> Duration {
        let started = Instant::now();
        wait_until("the partitions balanced", limit, || {
            let owned: Vec<i64> = self.live().iter().map(|s| owned(s)).collect();
            owned.iter().sum::<i64>() == PARTITIONS as i64
                && owned.iter().max().unwrap() - owned.iter().min().unwrap() <= 1
        });
        started.elapsed()
    }
}

#[test]
fn three_replicas_killed_and_restarted_each_answer_as_one_run() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emulator = rt
        .block_on(Emulator::start(EmulatorConfig::single_hub(HUB, PARTITIONS)))
        .unwrap();
    let azurite = Azurite::start();
    azurite.container(&rt, CONTAINER);
    let hub_cs = emulator.connection_string(HUB);
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Replicas {
        configs: ["replica-a", "replica-b", "replica-c"]
            .iter()
            .map(|r| config(dir.path(), r, &hub_cs))
            .collect(),
        running: vec![None, None, None],
        env: vec![("TEST_STORAGE_CS".into(), azurite.connection_string())],
    };
    let mut published = 0usize;
    let mut publish = |n: usize| {
        for i in published..published + n {
            emulator
                .publish(HUB, Some((i % PARTITIONS as usize) as u32), body(i))
                .unwrap();
        }
        published += n;
        published
    };

    publish(2000);
    for i in 0..3 {
        replicas.start(i);
    }
    let took = replicas.wait_balanced(2 * EXPIRY);
    eprintln!("three replicas balanced {took:?} after start");

    // 25 stops of a random replica at random moments while the hub grows, 5 of them
    // SIGTERM (a rolling restart: the replica relinquishes its claims) and the rest SIGKILL
    // (its claims stand until they expire). The stopped replica starts again each time.
    let mut rng = SplitMix64(20261207);
    let mut stops: Vec<bool> = (0..STOPS).map(|i| i < TERMS).collect();
    for i in (1..stops.len()).rev() {
        stops.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let (mut worst_unowned, mut worst_balanced) = (Duration::ZERO, Duration::ZERO);
    let mut handovers = Vec::new();
    for (round, term) in stops.iter().enumerate() {
        publish(BURST + rng.below(BURST as u64 / 2) as usize);
        std::thread::sleep(Duration::from_millis(100 + rng.below(600)));
        let i = rng.below(3) as usize;
        let mut svc = replicas.running[i].take().unwrap();
        let stopped = Instant::now();
        if *term {
            svc.terminate(Duration::from_secs(30));
        } else {
            svc.child.kill().unwrap();
            svc.child.wait().unwrap();
        }
        drop(svc);
        // Its partitions are read again by the survivors: at once after a SIGTERM (at their
        // next cycle), and after a kill once its claims expire (the survivors run a cycle
        // when the first lapses; the slack is the claim and restore themselves).
        let limit = if *term {
            3 * INTERVAL
        } else {
            EXPIRY + INTERVAL / 2
        };
        let unowned = replicas.wait_owned(limit);
        let balanced = stopped.elapsed().max(replicas.wait_balanced(2 * EXPIRY));
        if *term {
            handovers.push(unowned);
        }
        worst_unowned = worst_unowned.max(if *term { Duration::ZERO } else { unowned });
        worst_balanced = worst_balanced.max(balanced);
        eprintln!(
            "round {round}: replica {i} {}; its partitions owned again after {unowned:?}, balanced after {balanced:?}",
            if *term { "stopped (SIGTERM)" } else { "killed" }
        );
        publish(BURST / 4);
        replicas.start(i);
        let took = replicas.wait_balanced(2 * EXPIRY);
        worst_balanced = worst_balanced.max(took);
    }
    handovers.sort();
    eprintln!(
        "after a kill, partitions unowned at most {worst_unowned:?} (expiry {EXPIRY:?}); \
         after SIGTERM, owned again within {handovers:?}; balanced within {worst_balanced:?} of any change"
    );
    // Every replica answers for the whole hub: its own partitions live, the others' from
    // their snapshots. Once the stream is read, each equals one uninterrupted run. First
    // every replica catches up; then one last burst measures how long each takes to show
    // it (the staleness of global results: the owners' snapshot interval, a refresh, and
    // the processing).
    let caught_up = oracle(publish(0));
    for (i, r) in replicas.live().iter().enumerate() {
        wait_until(
            &format!("replica {i} caught up"),
            Duration::from_secs(60),
            || counts(r) == caught_up,
        );
    }
    let total = publish(500);
    let want = oracle(total);
    let published_at = Instant::now();
    let mut staleness = Vec::new();
    for (i, r) in replicas.live().iter().enumerate() {
        wait_until(
            &format!("replica {i} answers for the whole stream"),
            Duration::from_secs(60),
            || counts(r) == want,
        );
        staleness.push(published_at.elapsed());
    }
    eprintln!("the last burst showed in every replica's global results after {staleness:?} (snapshot interval 200 ms)");
    // Each replica owns only its share, and counts the rest from copies.
    let shares: Vec<i64> = replicas.live().iter().map(|r| owned(r)).collect();
    assert_eq!(shares.iter().sum::<i64>(), PARTITIONS as i64, "{shares:?}");
    for r in replicas.live() {
        let (_, t) = r.get("/metrics");
        assert_eq!(
            metric(&t, "hubwatch_global_peer_partitions").unwrap() as i64 + owned(r),
            PARTITIONS as i64
        );
    }
    eprintln!(
        "{} kills and {TERMS} SIGTERMs over {total} bodies ({} records); shares {shares:?}; every replica equals one run",
        STOPS - TERMS,
        total * RECORDS
    );
    rt.block_on(emulator.shutdown());
}
