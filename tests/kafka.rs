//! The Kafka source against librdkafka's in-process mock cluster (a real Kafka protocol
//! implementation inside librdkafka; plaintext only): the golden fixture bodies produced to
//! a 4-partition topic give the independent oracle's answers, `/metrics` carries the
//! per-partition Kafka series, offsets are committed on shutdown, and a restart in the same
//! group reads only what came after.
//!
//! One body is left out, as in tests/amqp_golden.rs: line 428's records have no usable time
//! and would take the message timestamp.

mod common;

use std::time::Duration;

use common::kafka::produce;
use common::*;
use rdkafka::mocking::MockCluster;

const TOPIC: &str = "golden";
const PARTITIONS: i32 = 4;
/// 2024-05-20T12:00:00Z: a message timestamp inside the fixture's day.
const MESSAGE_TIME_MS: i64 = 1_716_206_400_000;

fn config(
    dir: &std::path::Path,
    bootstrap: &str,
    queries: &[(String, String)],
) -> std::path::PathBuf {
    let mut config = format!(
        "[export]\nlisten = \"127.0.0.1:0\"\n[limits]\nmax_rows = 100000\n\
         [[sources]]\ntype = \"kafka\"\nname = \"k\"\nbootstrap_servers = \"{bootstrap}\"\n\
         topics = [\"{TOPIC}\"]\ngroup_id = \"hubwatch-test\"\nstart = \"earliest\"\n\
         batch_max_wait = \"20ms\"\nsession_timeout = \"6s\"\n"
    );
    for (name, kql) in queries {
        config.push_str(&format!(
            "[[queries]]\nname = \"{name}\"\nkql = '''\n{kql}'''\n"
        ));
    }
    let path = dir.join("hubwatch.toml");
    std::fs::write(&path, config).unwrap();
    path
}

async fn wait_absorbed(running: &hubwatch::app::Running, want: u64, limit: Duration) {
    let absorbed = running.metrics.source.events.with_label_values(&["k"]);
    tokio::time::timeout(limit, async {
        while absorbed.get() < want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{} of {want} events absorbed within {limit:?}",
            absorbed.get()
        )
    });
    // Nothing more arrives (no event twice).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(absorbed.get(), want, "each event exactly once");
}

/// Produces the bodies to the topic's partitions in turn, off the runtime's threads.
async fn produce_async(bootstrap: &str, bodies: &[Vec<u8>]) {
    let (b, bodies) = (bootstrap.to_string(), bodies.to_vec());
    tokio::task::spawn_blocking(move || produce(&b, TOPIC, PARTITIONS, &bodies, MESSAGE_TIME_MS))
        .await
        .unwrap();
}

/// The group's committed offset of each partition, read by a separate client.
fn committed_offsets(bootstrap: &str) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "hubwatch-test")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(TOPIC, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    let offsets = got
        .elements()
        .iter()
        .map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => o,
            other => panic!(
                "partition {} has no committed offset: {other:?}",
                e.partition()
            ),
        })
        .collect();
    // The list must go before the consumer (librdkafka's destroy waits for it).
    drop(got);
    offsets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_bodies_over_kafka_give_the_oracles_answers_and_a_restart_resumes() {
    hubwatch::telemetry::init_tracing("off");
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let bodies = streamed_bodies();
    produce_async(&bootstrap, &bodies).await;

    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &bootstrap, &golden_queries());
    let settings = hubwatch::config::load(&path, &hubwatch::schema::Schemas::embedded()).unwrap();
    let (trigger, shutdown) = hubwatch::shutdown::channel();
    let running = hubwatch::app::start(settings, shutdown).await.unwrap();
    wait_absorbed(&running, bodies.len() as u64, Duration::from_secs(60)).await;

    assert_streamed_golden_results(&running).await;

    let (status, metrics) = http_get(&running.admin_addr.to_string(), "/metrics").unwrap();
    assert_eq!(status, 200);
    let value = |series: &str| -> f64 {
        metric(&metrics, series).unwrap_or_else(|| panic!("no series {series} in\n{metrics}"))
    };
    assert_eq!(
        value("hubwatch_kafka_assigned_partitions{source=\"k\"}"),
        PARTITIONS as f64
    );
    let mut events = 0.0;
    for p in 0..PARTITIONS {
        let labels = format!("{{partition=\"{p}\",source=\"k\",topic=\"{TOPIC}\"}}");
        let n = value(&format!("hubwatch_kafka_events_total{labels}"));
        let expected_in_p = bodies.len().div_ceil(PARTITIONS as usize) as f64;
        assert!(
            (n - expected_in_p).abs() <= 1.0,
            "partition {p}: {n} events"
        );
        events += n;
    }
    assert_eq!(events, bodies.len() as f64);

    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .expect("drains in time")
        .unwrap();

    // The group's committed offsets cover every event (offsets start at 0 per partition).
    let committed = {
        let b = bootstrap.clone();
        tokio::task::spawn_blocking(move || committed_offsets(&b))
            .await
            .unwrap()
    };
    assert_eq!(
        committed.iter().sum::<i64>(),
        bodies.len() as i64,
        "{committed:?}"
    );

    // The same group again, after 40 more bodies: only those arrive.
    let more: Vec<Vec<u8>> = bodies[..40].to_vec();
    produce_async(&bootstrap, &more).await;
    let settings = hubwatch::config::load(&path, &hubwatch::schema::Schemas::embedded()).unwrap();
    let (trigger, shutdown) = hubwatch::shutdown::channel();
    let running = hubwatch::app::start(settings, shutdown).await.unwrap();
    wait_absorbed(&running, more.len() as u64, Duration::from_secs(60)).await;
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .expect("drains in time")
        .unwrap();
}
