//! The Kafka source against a real broker process (tansu, installed by
//! scripts/setup-test-deps.sh), through the real binary:
//!
//! - the golden fixture bodies give the independent oracle's answers;
//! - two replicas in one consumer group share the partitions; one is killed with SIGKILL
//!   while it holds acknowledged but uncommitted events, the stream goes on, and the other
//!   takes its partitions over from the last commit. Nothing is lost: the two replicas'
//!   results add up to a single process's run over the same topic plus exactly the events
//!   of the dead replica's uncommitted tail (read from its own metrics before the kill), and
//!   nothing else is duplicated.
//! - with a checkpoint directory the replicas share, a partition's window state follows it:
//!   a replica killed, restarted, and a third one joining move partitions back and forth,
//!   and once every partition is owned again the replicas' results add up exactly to the
//!   oracle's — nothing lost, nothing counted twice. With a directory per replica the same
//!   holds, because a new owner without the partition's state reads it again from its oldest
//!   event (or from its own older snapshot's position).
//! - a query added later, and a lost state directory, are rebuilt from the oldest retained
//!   event although the group's commits cover everything.
//! - with the state in Azure Blob storage (Azurite), every replica answers for every
//!   partition (global results) and equals one run through a kill, a restart and a join.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::kafka::{produce, Tansu};
use common::*;
use serde_json::Value;

const MESSAGE_TIME_MS: i64 = 1_716_206_400_000;

fn kafka_config(
    dir: &Path,
    file: &str,
    bootstrap: &str,
    topic: &str,
    group: &str,
    commit_interval: &str,
    queries: &[(String, String)],
) -> PathBuf {
    kafka_config_with(
        dir,
        file,
        bootstrap,
        topic,
        group,
        commit_interval,
        queries,
        "",
    )
}

#[allow(clippy::too_many_arguments)]
fn kafka_config_with(
    dir: &Path,
    file: &str,
    bootstrap: &str,
    topic: &str,
    group: &str,
    commit_interval: &str,
    queries: &[(String, String)],
    extra: &str,
) -> PathBuf {
    let mut config = format!(
        "[export]\nlisten = \"127.0.0.1:0\"\n[limits]\nmax_rows = 100000\n{extra}\
         [[sources]]\ntype = \"kafka\"\nname = \"k\"\nbootstrap_servers = \"{bootstrap}\"\n\
         topics = [\"{topic}\"]\ngroup_id = \"{group}\"\nstart = \"earliest\"\n\
         batch_max_wait = \"20ms\"\nsession_timeout = \"6s\"\ncommit_interval = \"{commit_interval}\"\n"
    );
    for (name, kql) in queries {
        config.push_str(&format!(
            "[[queries]]\nname = \"{name}\"\nkql = '''\n{kql}'''\n"
        ));
    }
    let path = dir.join(file);
    std::fs::write(&path, config).unwrap();
    path
}

/// Sum of every sample of a metric family.
fn metric_sum(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Per `partition` label, the value of a per-partition Kafka metric.
fn per_partition(text: &str, family: &str) -> BTreeMap<i32, i64> {
    let mut m = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
    {
        let at = l.find("partition=\"").unwrap() + "partition=\"".len();
        let p: i32 = l[at..].split('"').next().unwrap().parse().unwrap();
        m.insert(
            p,
            l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as i64,
        );
    }
    m
}

fn absorbed(svc: &Service) -> u64 {
    let (_, text) = svc.get("/metrics");
    metric(&text, "hubwatch_source_events_total{source=\"k\"}").unwrap_or(0.0) as u64
}

fn query_rows(svc: &Service, name: &str) -> Value {
    let (status, body) = svc.get(&format!("/api/v1/queries/{name}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_bodies_through_a_broker_process_give_the_oracles_answers() {
    let tansu = Tansu::start();
    tansu.create_topic("golden", 4).await;
    let bodies = streamed_bodies();
    let b = tansu.bootstrap.clone();
    let n = bodies.len() as u64;
    tokio::task::spawn_blocking(move || produce(&b, "golden", 4, &bodies, MESSAGE_TIME_MS))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let queries = golden_queries();
    let path = kafka_config(
        dir.path(),
        "h.toml",
        &tansu.bootstrap,
        "golden",
        "golden-g",
        "1s",
        &queries,
    );
    let mut svc = tokio::task::spawn_blocking(move || Service::start(&path))
        .await
        .unwrap();
    tokio::task::block_in_place(|| {
        wait_until(
            "all golden events absorbed",
            Duration::from_secs(90),
            || absorbed(&svc) >= n,
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(absorbed(&svc), n, "each event exactly once");
        for (name, _) in &queries {
            let got = query_rows(&svc, name);
            assert_same_rows(name, &got, &expected_streamed(name));
        }
        // SIGTERM drains and commits: the group's offsets then cover everything.
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &svc.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        svc.wait_for_line("final offsets committed", Duration::from_secs(30));
        let status = svc.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    });
}

const PARTITIONS: i32 = 4;
const CLUSTERS: usize = 5;

/// Body `i`: one AmlComputeJobEvent on cluster `c{i % 5}`, failed for every third body
/// (times within a few minutes, so no window question arises).
fn job_body(i: usize) -> Vec<u8> {
    let event = if i.is_multiple_of(3) {
        "JobFailed"
    } else {
        "JobSucceeded"
    };
    format!(
        r#"{{"records":[{{"time":"2024-05-20T10:{:02}:{:02}.{:03}Z","resourceId":"/SUBSCRIPTIONS/0C1D2E3F-4A5B-4C6D-8E7F-901A2B3C4D5E/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/WS","category":"AmlComputeJobEvent","operationName":"Microsoft.MachineLearningServices/workspaces/AmlComputeJobEvent/Write","level":"Informational","properties":{{"ClusterName":"c{}","JobId":"job-{i}","EventType":"{event}"}}}}]}}"#,
        (i / 1000) % 60,
        (i / 10) % 60,
        i % 1000,
        i % CLUSTERS,
    )
    .into_bytes()
}

fn job_query() -> Vec<(String, String)> {
    vec![(
        "jobs".to_string(),
        "AmlComputeJobEvent\n| summarize events = count(), failed = countif(EventType == \"JobFailed\") by ClusterName\n"
            .to_string(),
    )]
}

/// Per cluster: (events, failed).
fn job_counts(rows: &Value) -> BTreeMap<String, (i64, i64)> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["ClusterName"].as_str().unwrap().to_string(),
                (r["events"].as_i64().unwrap(), r["failed"].as_i64().unwrap()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_stream_loses_nothing_and_duplicates_only_its_uncommitted_tail() {
    let tansu = Tansu::start();
    tansu.create_topic("jobs", PARTITIONS).await;
    let bootstrap = tansu.bootstrap.clone();
    let first = 2000usize;
    let second = 1000usize;
    let all: Vec<Vec<u8>> = (0..first + second).map(job_body).collect();
    let (b, head) = (bootstrap.clone(), all[..first].to_vec());
    tokio::task::spawn_blocking(move || produce(&b, "jobs", PARTITIONS, &head, MESSAGE_TIME_MS))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let q = job_query();
    // Replica A never commits on its own (only when partitions leave it), so it surely holds
    // an uncommitted tail when it is killed; B commits every 500 ms.
    let a_cfg = kafka_config(dir.path(), "a.toml", &bootstrap, "jobs", "pair", "1h", &q);
    let b_cfg = kafka_config(
        dir.path(),
        "b.toml",
        &bootstrap,
        "jobs",
        "pair",
        "500ms",
        &q,
    );
    let single_cfg = kafka_config(dir.path(), "s.toml", &bootstrap, "jobs", "single", "1s", &q);

    tokio::task::block_in_place(|| {
        let mut a = Service::start(&a_cfg);
        wait_until("replica A reads", Duration::from_secs(60), || {
            absorbed(&a) > 0
        });
        let b = Service::start(&b_cfg);
        // Both own partitions, and together they have read the first part exactly once.
        wait_until(
            "both replicas own partitions and read everything",
            Duration::from_secs(90),
            || {
                let (_, ta) = a.get("/metrics");
                let (_, tb) = b.get("/metrics");
                let owns = |t: &str| {
                    metric(t, "hubwatch_kafka_assigned_partitions{source=\"k\"}").unwrap_or(0.0)
                };
                let read = |t: &str| {
                    metric(t, "hubwatch_source_events_total{source=\"k\"}").unwrap_or(0.0)
                };
                owns(&ta) > 0.0
                    && owns(&tb) > 0.0
                    && owns(&ta) + owns(&tb) == PARTITIONS as f64
                    && read(&ta) + read(&tb) >= first as f64
            },
        );
        // Settle: A's statistics stop moving.
        std::thread::sleep(Duration::from_millis(1500));
        let (_, ta) = a.get("/metrics");
        let a_rows = query_rows(&a, "jobs");
        let (_, ta2) = a.get("/metrics");
        assert_eq!(
            metric(&ta, "hubwatch_source_events_total{source=\"k\"}"),
            metric(&ta2, "hubwatch_source_events_total{source=\"k\"}"),
            "replica A is quiet while its results are read"
        );
        let positions = per_partition(&ta, "hubwatch_kafka_position");
        let committed = per_partition(&ta, "hubwatch_kafka_committed_offset");
        // The uncommitted tail: per partition A owns, [committed, position).
        let mut tail: Vec<(i32, i64, i64)> = Vec::new();
        for (p, pos) in &positions {
            let from = committed.get(p).copied().unwrap_or(0);
            if *pos > from {
                tail.push((*p, from, *pos));
            }
        }
        let tail_events: i64 = tail.iter().map(|(_, f, t)| t - f).sum();
        assert!(
            tail_events > 0,
            "A holds an uncommitted tail: {positions:?} {committed:?}"
        );
        assert_eq!(
            metric_sum(&ta, "hubwatch_source_events_total"),
            job_counts(&a_rows).values().map(|c| c.0).sum::<i64>() as f64
        );

        // Kill A; the stream goes on.
        a.child.kill().unwrap();
        a.child.wait().unwrap();
        let (bb, tail_bodies) = (bootstrap.clone(), all[first..].to_vec());
        produce(&bb, "jobs", PARTITIONS, &tail_bodies, MESSAGE_TIME_MS);

        // B takes A's partitions over after the session timeout and reads to the end.
        let a_phase1: i64 = job_counts(&a_rows).values().map(|c| c.0).sum();
        let want_b = (first + second) as i64 - a_phase1 + tail_events;
        wait_until(
            "replica B takes over and reads to the end",
            Duration::from_secs(90),
            || absorbed(&b) as i64 >= want_b,
        );
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            absorbed(&b) as i64,
            want_b,
            "B reads A's tail once more and nothing else twice"
        );
        let (_, tb) = b.get("/metrics");
        assert_eq!(
            metric(&tb, "hubwatch_kafka_assigned_partitions{source=\"k\"}"),
            Some(PARTITIONS as f64)
        );
        let b_rows = query_rows(&b, "jobs");

        // A single process over the same topic, from the start.
        let single = Service::start(&single_cfg);
        let n = (first + second) as u64;
        wait_until(
            "the single process reads everything",
            Duration::from_secs(90),
            || absorbed(&single) >= n,
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(absorbed(&single), n);
        let single_counts = job_counts(&query_rows(&single, "jobs"));

        // The oracle: counts straight from the generator.
        let mut oracle: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for i in 0..first + second {
            let e = oracle.entry(format!("c{}", i % CLUSTERS)).or_default();
            e.0 += 1;
            e.1 += (i % 3 == 0) as i64;
        }
        assert_eq!(single_counts, oracle, "the single run is right");

        // The duplicates: the bodies at A's uncommitted offsets. Body i went to partition
        // i % P as that partition's (i / P)-th message.
        let mut dup: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for (p, from, to) in &tail {
            for offset in *from..*to {
                let i = (offset * PARTITIONS as i64 + *p as i64) as usize;
                let e = dup.entry(format!("c{}", i % CLUSTERS)).or_default();
                e.0 += 1;
                e.1 += i.is_multiple_of(3) as i64;
            }
        }
        let a_counts = job_counts(&a_rows);
        let b_counts = job_counts(&b_rows);
        for (cluster, (events, failed)) in &single_counts {
            let a = a_counts.get(cluster).copied().unwrap_or_default();
            let b = b_counts.get(cluster).copied().unwrap_or_default();
            let d = dup.get(cluster).copied().unwrap_or_default();
            assert_eq!(
                (a.0 + b.0, a.1 + b.1),
                (events + d.0, failed + d.1),
                "cluster {cluster}: A {a:?} + B {b:?} = single ({events}, {failed}) + uncommitted tail {d:?}"
            );
        }
        eprintln!(
            "replica A: {a_phase1} events, uncommitted tail {tail_events} ({tail:?}); replica B: {want_b} events; single: {n}"
        );
    });
}

/// Per cluster, (events, failed) of bodies `0..n` as the generator made them.
fn oracle_counts(n: usize) -> BTreeMap<String, (i64, i64)> {
    let mut oracle: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for i in 0..n {
        let e = oracle.entry(format!("c{}", i % CLUSTERS)).or_default();
        e.0 += 1;
        e.1 += (i % 3 == 0) as i64;
    }
    oracle
}

/// The replicas' partial counts added up.
fn combined(replicas: &[&Service]) -> BTreeMap<String, (i64, i64)> {
    let mut sum: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in replicas {
        for (cluster, (e, f)) in job_counts(&query_rows(r, "jobs")) {
            let s = sum.entry(cluster).or_default();
            s.0 += e;
            s.1 += f;
        }
    }
    sum
}

fn owned(svc: &Service) -> f64 {
    let (_, t) = svc.get("/metrics");
    metric(&t, "hubwatch_kafka_assigned_partitions{source=\"k\"}").unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_shared_checkpoint_directory_window_state_follows_its_partition() {
    partitions_move_back_and_forth(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_directory_per_replica_a_moved_partition_is_rebuilt_by_its_new_owner() {
    partitions_move_back_and_forth(false).await;
}

/// Two replicas share a topic's partitions; one is killed, comes back and a third joins, so
/// partitions move back and forth. With a `shared` state directory a partition's state
/// follows it; with one per replica, its new owner has no snapshot of it (or an old one) and
/// reads it again from the oldest event (or from that snapshot's position). Either way, once
/// every partition is owned again the replicas add up to one uninterrupted run.
async fn partitions_move_back_and_forth(shared: bool) {
    let tansu = Tansu::start();
    tansu.create_topic("moves", PARTITIONS).await;
    let bootstrap = tansu.bootstrap.clone();
    let all: Vec<Vec<u8>> = (0..4000).map(job_body).collect();
    let produce_range = |range: std::ops::Range<usize>| {
        produce(
            &bootstrap,
            "moves",
            PARTITIONS,
            &all[range],
            MESSAGE_TIME_MS,
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let q = job_query();
    let cfg = |name: &str| {
        let state = if shared {
            "shared".to_string()
        } else {
            format!("state-{name}")
        };
        let checkpoint = format!(
            "[checkpoint]\ndir = {:?}\ninterval = \"200ms\"\n",
            dir.path().join(state).display().to_string()
        );
        kafka_config_with(
            dir.path(),
            name,
            &bootstrap,
            "moves",
            "movers",
            "300ms",
            &q,
            &checkpoint,
        )
    };
    let (a_cfg, b_cfg, c_cfg) = (cfg("a.toml"), cfg("b.toml"), cfg("c.toml"));

    tokio::task::block_in_place(|| {
        produce_range(0..1500);
        let mut a = Service::start(&a_cfg);
        let b = Service::start(&b_cfg);
        wait_until(
            "A and B share the partitions and read the first 1500",
            Duration::from_secs(90),
            || {
                owned(&a) > 0.0
                    && owned(&b) > 0.0
                    && combined(&[&a, &b]).values().map(|c| c.0).sum::<i64>() == 1500
            },
        );

        // A dies having committed offsets (so a new owner starting from them without A's
        // state would miss the events before them) and holding state at or after its
        // commits. B takes its partitions: with that state, skipping what it holds; or,
        // without it, reading them again from their oldest event.
        wait_until("A committed offsets", Duration::from_secs(30), || {
            let (_, t) = a.get("/metrics");
            metric_sum(&t, "hubwatch_kafka_committed_offset") > 0.0
        });
        a.child.kill().unwrap();
        a.child.wait().unwrap();
        produce_range(1500..2500);
        wait_until(
            "B owns every partition and has read 2500",
            Duration::from_secs(90),
            || {
                owned(&b) == PARTITIONS as f64
                    && combined(&[&b]).values().map(|c| c.0).sum::<i64>() >= 2500
            },
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            combined(&[&b]),
            oracle_counts(2500),
            "B alone holds everything, once"
        );

        // A comes back and C joins: partitions move from B to them, with their state.
        let a = Service::start(&a_cfg);
        let c = Service::start(&c_cfg);
        produce_range(2500..4000);
        wait_until(
            "A, B and C share the partitions and have read 4000",
            Duration::from_secs(120),
            || {
                owned(&a) + owned(&b) + owned(&c) == PARTITIONS as f64
                    && [&a, &b, &c].iter().filter(|r| owned(r) > 0.0).count() >= 2
                    && combined(&[&a, &b, &c]).values().map(|c| c.0).sum::<i64>() >= 4000
            },
        );
        std::thread::sleep(Duration::from_millis(1000));
        let got = combined(&[&a, &b, &c]);
        assert_eq!(
            got,
            oracle_counts(4000),
            "after the moves, the replicas add up to one run"
        );
        let restored = |r: &Service| {
            let (_, t) = r.get("/metrics");
            metric(&t, "hubwatch_state_restored_partitions_total").unwrap_or(0.0)
        };
        if shared {
            assert!(
                restored(&b) >= 1.0,
                "B restored the partitions it took from A"
            );
            assert!(
                restored(&a) + restored(&c) >= 1.0,
                "partitions moved back with their state"
            );
        } else {
            assert_eq!(
                restored(&b),
                0.0,
                "B never had a snapshot of A's partitions: it rebuilt them"
            );
        }
        eprintln!("owned: A {} B {} C {}", owned(&a), owned(&b), owned(&c));
    });
}

/// Per cluster, the `failed` column of the `failures` query.
fn failure_counts(svc: &Service) -> BTreeMap<String, i64> {
    query_rows(svc, "failures")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["ClusterName"].as_str().unwrap().to_string(),
                r["failed"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn oracle_failures(n: usize) -> BTreeMap<String, i64> {
    oracle_counts(n)
        .into_iter()
        .filter(|(_, (_, f))| *f > 0)
        .map(|(c, (_, f))| (c, f))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_state_the_store_lacks_is_rebuilt_from_the_oldest_retained_event() {
    let tansu = Tansu::start();
    tansu.create_topic("rebuild", PARTITIONS).await;
    let bootstrap = tansu.bootstrap.clone();
    let all: Vec<Vec<u8>> = (0..3000).map(job_body).collect();
    let produce_range = |range: std::ops::Range<usize>| {
        produce(
            &bootstrap,
            "rebuild",
            PARTITIONS,
            &all[range],
            MESSAGE_TIME_MS,
        )
    };
    // One broken body per partition, dead-lettered once: a rebuild re-reads them, and they
    // lie before the group's commit, so they are not written again.
    let broken: Vec<Vec<u8>> = (0..PARTITIONS)
        .map(|p| format!("{{\"records\": [broken {p}").into_bytes())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let dead = dir.path().join("dead-letter.ndjson");
    let checkpoint = format!(
        "[checkpoint]\ndir = {:?}\ninterval = \"200ms\"\n[dead_letter]\npath = {:?}\n",
        state.display().to_string(),
        dead.display().to_string()
    );
    let dead_letters = || json_lines(&dead).len();
    let jobs = job_query();
    let mut both = jobs.clone();
    both.push((
        "failures".to_string(),
        "AmlComputeJobEvent\n| where EventType == \"JobFailed\"\n| summarize failed = count() by ClusterName\n"
            .to_string(),
    ));
    let cfg = |name: &str, queries: &[(String, String)]| {
        kafka_config_with(
            dir.path(),
            name,
            &bootstrap,
            "rebuild",
            "rebuilders",
            "300ms",
            queries,
            &checkpoint,
        )
    };
    let (first_cfg, second_cfg) = (cfg("first.toml", &jobs), cfg("second.toml", &both));
    let total = |svc: &Service| combined(&[svc]).values().map(|c| c.0).sum::<i64>();
    let committed = |svc: &Service| {
        let (_, t) = svc.get("/metrics");
        metric_sum(&t, "hubwatch_kafka_committed_offset") as i64
    };

    tokio::task::block_in_place(|| {
        // One query reads the first 1500 events and the group commits all of them.
        produce_range(0..1500);
        produce(&bootstrap, "rebuild", PARTITIONS, &broken, MESSAGE_TIME_MS);
        let mut svc = Service::start(&first_cfg);
        wait_until(
            "the first run read and committed 1504",
            Duration::from_secs(90),
            || total(&svc) == 1500 && committed(&svc) == 1504,
        );
        assert_eq!(dead_letters(), 4);
        svc.terminate(Duration::from_secs(30));

        // A query is added. The group's commit covers everything, yet the new query counts
        // the events before it: its partitions are read again from the oldest retained
        // event, and the old query skips what its restored state already holds.
        let mut svc = Service::start(&second_cfg);
        produce_range(1500..2500);
        wait_until(
            "the added query rebuilt its windows",
            Duration::from_secs(90),
            || total(&svc) >= 2500 && failure_counts(&svc) == oracle_failures(2500),
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            combined(&[&svc]),
            oracle_counts(2500),
            "nothing twice for the restored query"
        );
        assert_eq!(failure_counts(&svc), oracle_failures(2500));
        let (_, t) = svc.get("/metrics");
        assert_eq!(
            metric(
                &t,
                "hubwatch_state_queries_started_empty_total{query=\"failures\"}"
            ),
            Some(PARTITIONS as f64),
            "the added query started empty on every partition"
        );
        assert_eq!(
            metric(
                &t,
                "hubwatch_state_queries_started_empty_total{query=\"jobs\"}"
            ),
            None
        );
        wait_until(
            "the second run committed 2504",
            Duration::from_secs(30),
            || committed(&svc) == 2504,
        );
        assert_eq!(
            dead_letters(),
            4,
            "the restored query's position covers them"
        );
        svc.terminate(Duration::from_secs(30));

        // The state directory is lost while the group's commits remain: every partition is
        // read again from its oldest event instead of from the commit with empty windows.
        std::fs::remove_dir_all(&state).unwrap();
        let svc = Service::start(&second_cfg);
        produce_range(2500..3000);
        wait_until(
            "both queries rebuilt from the oldest retained event",
            Duration::from_secs(90),
            || total(&svc) >= 3000 && failure_counts(&svc) == oracle_failures(3000),
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(combined(&[&svc]), oracle_counts(3000));
        assert_eq!(failure_counts(&svc), oracle_failures(3000));
        assert_eq!(
            dead_letters(),
            4,
            "read again before the group's commit: windows only, no second dead letter"
        );
    });
}

/// Kafka replicas with their window state in Azure Blob storage (Azurite): a partition's
/// state follows it through the container, and every replica answers for every partition
/// (global results: its own partitions live, the others' from their snapshots). Through a
/// kill, a restart and a third replica joining, each replica equals one uninterrupted run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_state_in_blob_storage_every_replica_answers_for_every_partition() {
    let tansu = Tansu::start();
    tansu.create_topic("global", PARTITIONS).await;
    let bootstrap = tansu.bootstrap.clone();
    let all: Vec<Vec<u8>> = (0..4000).map(job_body).collect();
    let produce_range = |range: std::ops::Range<usize>| {
        produce(
            &bootstrap,
            "global",
            PARTITIONS,
            &all[range],
            MESSAGE_TIME_MS,
        )
    };
    let azurite = common::azurite::Azurite::start();
    let cs: hubwatch::blob::StorageConnectionString = azurite.connection_string().parse().unwrap();
    hubwatch::blob::BlobContainer::from_connection_string(
        &cs,
        "kafka-state",
        Duration::from_secs(10),
    )
    .unwrap()
    .create_if_missing()
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let q = job_query();
    let blob = "[checkpoint]\ninterval = \"200ms\"\n[checkpoint.blob]\nconnection_string = \"${TEST_STORAGE_CS}\"\ncontainer = \"kafka-state\"\n";
    let cfg = |name: &str| {
        kafka_config_with(
            dir.path(),
            name,
            &bootstrap,
            "global",
            "globals",
            "300ms",
            &q,
            blob,
        )
    };
    let (a_cfg, b_cfg, c_cfg) = (cfg("a.toml"), cfg("b.toml"), cfg("c.toml"));
    let storage = azurite.connection_string();
    let env = [("TEST_STORAGE_CS", storage.as_str())];

    tokio::task::block_in_place(|| {
        produce_range(0..1500);
        let mut a = Service::start_with_env(&a_cfg, &env);
        let b = Service::start_with_env(&b_cfg, &env);
        wait_until(
            "A and B share the partitions and each answers for all 1500",
            Duration::from_secs(90),
            || {
                owned(&a) > 0.0
                    && owned(&b) > 0.0
                    && combined(&[&a]) == oracle_counts(1500)
                    && combined(&[&b]) == oracle_counts(1500)
            },
        );
        wait_until("A committed offsets", Duration::from_secs(30), || {
            let (_, t) = a.get("/metrics");
            metric_sum(&t, "hubwatch_kafka_committed_offset") > 0.0
        });
        a.child.kill().unwrap();
        a.child.wait().unwrap();
        produce_range(1500..2500);
        wait_until(
            "B owns every partition and answers for 2500",
            Duration::from_secs(90),
            || owned(&b) == PARTITIONS as f64 && combined(&[&b]) == oracle_counts(2500),
        );

        let a = Service::start_with_env(&a_cfg, &env);
        let c = Service::start_with_env(&c_cfg, &env);
        produce_range(2500..4000);
        wait_until(
            "A, B and C share the partitions and each answers for 4000",
            Duration::from_secs(120),
            || {
                owned(&a) + owned(&b) + owned(&c) == PARTITIONS as f64
                    && [&a, &b, &c].iter().filter(|r| owned(r) > 0.0).count() >= 2
                    && [&a, &b, &c]
                        .iter()
                        .all(|r| combined(&[r]) == oracle_counts(4000))
            },
        );
        std::thread::sleep(Duration::from_millis(1000));
        for r in [&a, &b, &c] {
            assert_eq!(
                combined(&[r]),
                oracle_counts(4000),
                "every replica equals one run"
            );
        }
        eprintln!("owned: A {} B {} C {}", owned(&a), owned(&b), owned(&c));
    });
}
