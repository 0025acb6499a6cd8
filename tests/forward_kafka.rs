//! The Kafka sink through the real binary, against a real broker process (tansu, installed
//! by scripts/setup-test-deps.sh), read back with an rdkafka consumer:
//!
//! - every row two routes select arrives once, on the topic its table names
//!   (`azure-{table}`: the case is kept, and Kafka and tansu take it), keyed by its
//!   `ClusterName`, valued with its row JSON and `_hubwatch` origin; a key's records share
//!   one partition, in the order the engine forwarded them;
//! - a broker that is not there when hubwatch starts, then comes, then is stopped and
//!   started again on the same port (tansu keeps its data in memory: it comes back empty,
//!   and no longer knows the sink's idempotent producer): the engine and its metrics go on
//!   while the rows wait in the buffer, and every row arrives once the broker is up;
//! - hubwatch killed with SIGKILL twice while it forwards, with a checkpoint directory:
//!   every row arrives at least once;
//! - refused SASL credentials: the failures say so, and the password is in no log line and
//!   no health detail, librdkafka's debug logs included.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::kafka::Tansu;
use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;

const JOBS: &str = "AmlComputeJobEvent | where EventType != 'JobRunning' | project TimeGenerated, ClusterName, JobName, EventType";
const CLUSTERS: &str = "AmlComputeClusterEvent";
/// The topic of each route's rows: `azure-{table}`.
const TOPICS: [(&str, &str); 2] = [
    ("jobs", "azure-AmlComputeJobEvent"),
    ("clusters", "azure-AmlComputeClusterEvent"),
];

/// A file source over `input` (`follow`: tailed, with a checkpoint directory), the two
/// routes to the sink `siem`.
fn write_config(dir: &Path, input: &Path, sink: &str, follow: bool) -> PathBuf {
    let text = format!(
        "[export]\nlisten = \"127.0.0.1:0\"\n{}\
         [[sources]]\ntype = \"file\"\nname = \"exports\"\npaths = [{:?}]\nfollow = {follow}\n\
         {sink}\n\
         [[routes]]\nname = \"jobs\"\nsinks = [\"siem\"]\nkql = \"{JOBS}\"\n\
         [[routes]]\nname = \"clusters\"\nsinks = [\"siem\"]\nkql = \"{CLUSTERS}\"\n",
        if follow {
            "[checkpoint]\ndir = \"cp\"\ninterval = \"100ms\"\n"
        } else {
            ""
        },
        input.display().to_string()
    );
    let path = dir.join("hubwatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn kafka_sink(bootstrap: &str, extra: &str) -> String {
    format!(
        "[[sinks]]\ntype = \"kafka\"\nname = \"siem\"\nbootstrap_servers = \"{bootstrap}\"\n\
         topic = \"azure-{{table}}\"\nkey = \"ClusterName\"\n{extra}"
    )
}

/// The rows the routes select, in the order the engine forwards them: what a file sink
/// receives from the same input.
fn expected_rows(input: &Path) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let sink = "[[sinks]]\ntype = \"file\"\nname = \"siem\"\npath = \"rows.ndjson\"";
    let mut svc = Service::start(&write_config(dir.path(), input, sink, false));
    svc.wait_for_line("all sources finished", Duration::from_secs(30));
    std::fs::read_to_string(dir.path().join("rows.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A row by its origin: (sequence number, the row without `_hubwatch`).
type RowId = (i64, String);

fn identity(row: &Value) -> RowId {
    let mut r = row.clone();
    let seq = r["_hubwatch"]["sequence_number"].as_i64().unwrap();
    r.as_object_mut().unwrap().remove("_hubwatch");
    (seq, r.to_string())
}

fn count<'a>(rows: impl IntoIterator<Item = &'a Value>) -> BTreeMap<RowId, i64> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(identity(r)).or_default() += 1;
    }
    m
}

/// The rows of `want` that `got` holds fewer times.
fn missing(want: &BTreeMap<RowId, i64>, got: &BTreeMap<RowId, i64>) -> Vec<RowId> {
    want.iter()
        .filter(|(k, n)| got.get(*k).copied().unwrap_or(0) < **n)
        .map(|(k, _)| k.clone())
        .collect()
}

fn topic_of(row: &Value) -> &'static str {
    let route = row["_hubwatch"]["route"].as_str().unwrap();
    TOPICS.iter().find(|(r, _)| *r == route).unwrap().1
}

/// The record key the sink gives a row: its `ClusterName`, none when empty.
fn key_of(row: &Value) -> Option<String> {
    row["ClusterName"]
        .as_str()
        .filter(|k| !k.is_empty())
        .map(str::to_string)
}

/// The body lines of the fixture.
fn fixture_lines() -> Vec<String> {
    std::fs::read_to_string(fixture())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn create_topics(tansu: &Tansu, partitions: i32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (_, topic) in TOPICS {
        rt.block_on(tansu.create_topic(topic, partitions));
    }
}

struct Record {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<String>,
    /// The record's headers, by name.
    headers: BTreeMap<String, String>,
    value: Value,
}

/// Every record of the two topics, from the start of each partition: a consumer outside
/// any group (it assigns itself the partitions; nothing here needs a group).
struct Reader {
    consumer: BaseConsumer,
    records: Vec<Record>,
    /// The records by row ([`identity`]), kept as they come.
    counts: BTreeMap<RowId, i64>,
}

impl Reader {
    /// Waits (at most `limit`) for the topics to exist, as the sink's producer may be the
    /// one that creates them.
    fn new(bootstrap: &str, limit: Duration) -> Reader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "forward-kafka-test")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut assignment = TopicPartitionList::new();
        for (_, topic) in TOPICS {
            let mut partitions = 0;
            wait_until(&format!("topic {topic} exists"), limit, || {
                partitions = consumer
                    .fetch_metadata(Some(topic), Duration::from_secs(5))
                    .ok()
                    .and_then(|m| {
                        m.topics()
                            .iter()
                            .find(|t| t.name() == topic && t.error().is_none())
                            .map(|t| t.partitions().len())
                    })
                    .unwrap_or(0);
                partitions > 0
            });
            for p in 0..partitions as i32 {
                assignment
                    .add_partition_offset(topic, p, Offset::Beginning)
                    .unwrap();
            }
        }
        consumer.assign(&assignment).unwrap();
        Reader {
            consumer,
            records: Vec::new(),
            counts: BTreeMap::new(),
        }
    }

    fn poll(&mut self, wait: Duration) {
        let Some(m) = self.consumer.poll(wait) else {
            return;
        };
        let m = m.unwrap_or_else(|e| panic!("consuming: {e}"));
        let key = m.key().map(|k| String::from_utf8(k.to_vec()).unwrap());
        let value = serde_json::from_slice(m.payload().expect("a value")).unwrap_or_else(|e| {
            panic!(
                "a record's value is the row's JSON: {e}: {:?}",
                m.payload_view::<str>()
            )
        });
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let v = h.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                        (h.key.to_string(), v.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        *self.counts.entry(identity(&value)).or_default() += 1;
        self.records.push(Record {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key,
            headers,
            value,
        });
    }

    /// Reads until `done` holds of what was read; fails the test after `limit`.
    fn read_until(&mut self, what: &str, limit: Duration, done: impl Fn(&Reader) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?} ({} records read)",
                self.records.len()
            );
            self.poll(Duration::from_millis(100));
        }
    }

    /// Reads whatever else arrives within `wait` (duplicates, strays).
    fn settle(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            self.poll(Duration::from_millis(50));
        }
    }
}

fn metrics(svc: &Service) -> String {
    svc.get("/metrics").1
}

/// The sum of a family's samples whose labels hold `labels`.
fn sum(text: &str, family: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const SINK: &str = "sink=\"siem\"";

fn routed(text: &str) -> f64 {
    sum(text, "hubwatch_forward_rows_total", "route=")
}

fn sent(text: &str) -> f64 {
    sum(text, "hubwatch_forward_sink_sent_total", SINK)
}

fn buffered(text: &str) -> f64 {
    sum(text, "hubwatch_forward_sink_buffer_bytes", SINK)
}

fn timeouts(text: &str) -> f64 {
    sum(
        text,
        "hubwatch_forward_sink_delivery_failures_total",
        "kind=\"timeout\",sink=\"siem\"",
    )
}

fn assert_no_dead_letters(dir: &Path, text: &str) {
    assert_eq!(
        sum(text, "hubwatch_forward_sink_dead_letters_total", SINK),
        0.0,
        "no dead letters:\n{text}"
    );
    let file = dir.join("buffers/siem/dead-letter.ndjson");
    let dead = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(dead.is_empty(), "{}: {dead}", file.display());
}

#[test]
fn every_routed_row_arrives_once_on_its_tables_topic_keyed_and_in_order_per_key() {
    let tansu = Tansu::start();
    create_topics(&tansu, 4);
    let input = fixture();
    let rows = expected_rows(&input);
    let want = count(&rows);
    let total = rows.len();
    assert!(total > 1000, "the fixture exercises the sink: {total} rows");

    let dir = tempfile::tempdir().unwrap();
    let sink = kafka_sink(&tansu.bootstrap, "batch = { max_events = 100 }");
    let started = Instant::now();
    let mut svc = Service::start(&write_config(dir.path(), &input, &sink, false));
    svc.wait_for_line("all sources finished", Duration::from_secs(30));
    let mut reader = Reader::new(&tansu.bootstrap, Duration::from_secs(10));
    reader.read_until("every row on the topics", Duration::from_secs(60), |r| {
        r.records.len() >= total
    });
    let took = started.elapsed();
    reader.settle(Duration::from_millis(500));

    // Each row once: the idempotent producer adds no duplicates on its own.
    let got = reader.counts.clone();
    assert_eq!(missing(&want, &got), Vec::<RowId>::new(), "rows missing");
    assert_eq!(reader.records.len(), total, "no duplicates, nothing else");
    // Topic, key and value (with its origin) from the row.
    for r in &reader.records {
        assert_eq!(r.topic, topic_of(&r.value), "{}", r.value);
        assert_eq!(r.key, key_of(&r.value), "{}", r.value);
        let origin = &r.value["_hubwatch"];
        assert_eq!(origin["source"], "exports");
        assert!(origin["sequence_number"].is_i64(), "{}", r.value);
        // The origin again as headers, for a consumer that does not parse the value.
        let h = |name: &str| r.headers.get(name).map(String::as_str);
        assert_eq!(
            h("hubwatch.route"),
            origin["route"].as_str(),
            "{:?}",
            r.headers
        );
        assert_eq!(h("hubwatch.source"), Some("exports"));
        assert_eq!(h("hubwatch.partition"), origin["partition"].as_str());
        assert_eq!(
            h("hubwatch.sequence_number"),
            Some(origin["sequence_number"].to_string().as_str())
        );
    }
    let topics: BTreeSet<&str> = reader.records.iter().map(|r| r.topic.as_str()).collect();
    assert_eq!(topics.len(), 2, "both tables forwarded: {topics:?}");

    // A key's records: one partition, in the order the engine forwarded the rows.
    let mut placed: Vec<&Record> = reader.records.iter().filter(|r| r.key.is_some()).collect();
    placed.sort_by_key(|r| (r.partition, r.offset));
    let mut got_order: BTreeMap<(String, String), Vec<RowId>> = BTreeMap::new();
    let mut partitions: BTreeMap<(String, String), BTreeSet<i32>> = BTreeMap::new();
    for r in placed {
        let at = (r.topic.clone(), r.key.clone().unwrap());
        got_order
            .entry(at.clone())
            .or_default()
            .push(identity(&r.value));
        partitions.entry(at).or_default().insert(r.partition);
    }
    let mut want_order: BTreeMap<(String, String), Vec<RowId>> = BTreeMap::new();
    for row in &rows {
        if let Some(k) = key_of(row) {
            want_order
                .entry((topic_of(row).to_string(), k))
                .or_default()
                .push(identity(row));
        }
    }
    assert_eq!(
        got_order.keys().collect::<Vec<_>>(),
        want_order.keys().collect::<Vec<_>>()
    );
    for ((topic, key), order) in &got_order {
        let p = &partitions[&(topic.clone(), key.clone())];
        assert_eq!(p.len(), 1, "{topic} key {key}: one partition, not {p:?}");
        assert!(
            *order == want_order[&(topic.clone(), key.clone())],
            "{topic} key {key}: the records are not in the order the rows were forwarded"
        );
    }
    let mut used = BTreeMap::<&str, BTreeSet<i32>>::new();
    for ((topic, _), p) in &partitions {
        used.entry(topic).or_default().extend(p);
    }
    for (topic, p) in &used {
        assert!(
            p.len() > 1,
            "the keys spread over the partitions of {topic}: {p:?}"
        );
    }

    let text = metrics(&svc);
    assert_eq!(routed(&text), total as f64, "{text}");
    wait_until(
        "the sink counts every record sent",
        Duration::from_secs(10),
        || sent(&metrics(&svc)) == total as f64,
    );
    assert_no_dead_letters(dir.path(), &text);
    let (_, verbose) = svc.get("/readyz?verbose");
    assert!(verbose.contains("sink siem: ok"), "{verbose}");
    eprintln!(
        "{total} rows on 2 topics × 4 partitions in {took:?} (hubwatch start to the last record read); partitions used: {used:?}"
    );
}

#[test]
fn rows_wait_while_the_broker_is_down_or_restarted_empty_and_all_arrive_once_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let lines = fixture_lines();
    let half = lines.len() / 2;
    let first = dir.path().join("first.ndjson");
    write_lines(&first, &lines[..half]);
    let want_first = count(&expected_rows(&first));
    let want = count(&expected_rows(&fixture()));
    let total_first: i64 = want_first.values().sum();
    let total: i64 = want.values().sum();
    assert!(
        missing(&want_first, &want).is_empty(),
        "the first half's rows are rows of the whole"
    );

    // hubwatch starts while the broker is not there yet: the engine and its metrics go
    // on, the rows wait in the buffer. The file is followed, and grows later.
    let input = dir.path().join("bodies.ndjson");
    write_lines(&input, &lines[..half]);
    let port = free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let sink = kafka_sink(&bootstrap, "timeout = \"2s\"\nbatch = { max_events = 200 }");
    let svc = Service::start(&write_config(dir.path(), &input, &sink, true));
    wait_until(
        "the routes took the first half with the broker down",
        Duration::from_secs(30),
        || routed(&metrics(&svc)) == total_first as f64,
    );
    wait_until(
        "a delivery failed (timed out)",
        Duration::from_secs(30),
        || timeouts(&metrics(&svc)) >= 1.0,
    );
    let text = metrics(&svc);
    assert!(buffered(&text) > 0.0, "{text}");
    assert_eq!(sent(&text), 0.0, "{text}");
    let (_, verbose) = svc.get("/readyz?verbose");
    assert!(verbose.contains("sink siem: failing"), "{verbose}");
    assert!(verbose.contains("timed out"), "{verbose}");

    // The broker comes: the first half arrives.
    let came = Instant::now();
    let tansu = Tansu::start_on(port);
    let mut before = Reader::new(&bootstrap, Duration::from_secs(60));
    before.read_until(
        "the first half, once the broker is up",
        Duration::from_secs(60),
        |r| r.records.len() as i64 >= total_first,
    );
    eprintln!(
        "{total_first} rows arrived {:?} after the broker came",
        came.elapsed()
    );
    wait_until("the sink counts them sent", Duration::from_secs(10), || {
        sent(&metrics(&svc)) >= total_first as f64
    });
    let got_before = before.counts.clone();
    let read_before = before.records.len();
    assert!(
        missing(&want_first, &got_before).is_empty(),
        "the first half arrived"
    );

    // The broker stops; the rest of the input comes meanwhile and waits in the buffer.
    let timed_out_before = timeouts(&metrics(&svc));
    drop(before);
    drop(tansu);
    let mut text = std::fs::read_to_string(&input).unwrap();
    for l in &lines[half..] {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    wait_until(
        "the routes took the rest with the broker down",
        Duration::from_secs(30),
        || routed(&metrics(&svc)) == total as f64,
    );
    wait_until(
        "a delivery failed against no broker",
        Duration::from_secs(30),
        || timeouts(&metrics(&svc)) > timed_out_before,
    );
    let text = metrics(&svc);
    assert!(buffered(&text) > 0.0, "{text}");
    let (_, verbose) = svc.get("/readyz?verbose");
    assert!(verbose.contains("sink siem: failing"), "{verbose}");

    // It starts again on the same port, empty: it no longer knows the sink's producer.
    let came = Instant::now();
    let tansu = Tansu::start_on(port);
    let mut after = Reader::new(&bootstrap, Duration::from_secs(60));
    after.read_until(
        "the rest, once the broker is up again",
        Duration::from_secs(90),
        |r| r.records.len() as i64 + total_first >= total,
    );
    eprintln!(
        "{} rows arrived {:?} after the broker came back",
        total - total_first,
        came.elapsed()
    );
    after.settle(Duration::from_millis(500));
    let mut got = got_before;
    for (k, n) in after.counts {
        *got.entry(k).or_default() += n;
    }
    let lost = missing(&want, &got);
    assert!(lost.is_empty(), "every row arrived; missing {lost:?}");
    let text = metrics(&svc);
    assert!(sent(&text) >= total as f64, "{text}");
    assert_no_dead_letters(dir.path(), &text);
    let (_, verbose) = svc.get("/readyz?verbose");
    assert!(verbose.contains("sink siem: ok"), "{verbose}");
    let duplicates = (read_before + after.records.len()) as i64 - total;
    eprintln!("{total} rows, {duplicates} duplicates");
    drop(tansu);
}

#[test]
fn killed_while_forwarding_every_row_arrives_at_least_once() {
    let tansu = Tansu::start();
    create_topics(&tansu, 4);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bodies.ndjson");
    std::fs::copy(fixture(), &input).unwrap();
    let want = count(&expected_rows(&input));
    let total: i64 = want.values().sum();
    // Slow deliveries (small batches, each lingering 100 ms in librdkafka) so that the
    // kills land mid-forwarding.
    let sink = kafka_sink(
        &tansu.bootstrap,
        "properties = { \"linger.ms\" = \"100\" }\nbatch = { max_events = 20 }",
    );
    let config = write_config(dir.path(), &input, &sink, true);
    let mut reader = Reader::new(&tansu.bootstrap, Duration::from_secs(10));
    for share in [5, 2] {
        let mut svc = Service::start(&config);
        let at = reader.records.len() as i64 + total / share;
        reader.read_until("forwarding under way", Duration::from_secs(60), |r| {
            r.records.len() as i64 >= at
        });
        svc.child.kill().unwrap();
        svc.child.wait().unwrap();
        let distinct = reader.counts.len();
        eprintln!(
            "killed with {} records read ({distinct} distinct rows of {})",
            reader.records.len(),
            want.len()
        );
        assert!(distinct < want.len(), "killed mid-forwarding");
    }
    let svc = Service::start(&config);
    reader.read_until("every row after two kills", Duration::from_secs(120), |r| {
        missing(&want, &r.counts).is_empty()
    });
    reader.settle(Duration::from_millis(500));
    // The last run sent what the kills left in the buffer, and then nothing waits: the
    // oldest-undelivered age falls back to 0.
    wait_until(
        "the last run sends what the kills left in the buffer",
        Duration::from_secs(30),
        || {
            let m = metrics(&svc);
            sent(&m) > 0.0
                && sum(&m, "hubwatch_forward_sink_oldest_unacked_age_seconds", SINK) == 0.0
        },
    );
    assert_no_dead_letters(dir.path(), &metrics(&svc));
    for r in &reader.records {
        assert_eq!(r.key, key_of(&r.value));
        assert_eq!(r.topic, topic_of(&r.value));
    }
    eprintln!(
        "{total} rows: {} records after two kills ({} duplicates)",
        reader.records.len(),
        reader.records.len() as i64 - total
    );
}

#[test]
fn refused_credentials_are_reported_and_the_password_is_never_printed() {
    let port = free_port();
    let _tansu = Tansu::start_with(port, &["--authentication"]);
    let dir = tempfile::tempdir().unwrap();
    let password = "Kafka-S3cret-pa55word";
    let sink = kafka_sink(
        &format!("127.0.0.1:{port}"),
        "timeout = \"2s\"\n\
         properties = { \"security.protocol\" = \"SASL_PLAINTEXT\", \"sasl.mechanism\" = \"SCRAM-SHA-512\", \
         \"sasl.username\" = \"hubwatch\", \"sasl.password\" = \"${HW_TEST_KAFKA_PASSWORD}\", \
         \"debug\" = \"security,broker,conf\" }",
    );
    let mut svc = Service::start_with_env(
        &write_config(dir.path(), &fixture(), &sink, false),
        &[
            ("HW_TEST_KAFKA_PASSWORD", password),
            ("RUST_LOG", "info,hubwatch::forward::kafka=debug"),
        ],
    );
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        while let Ok(l) = svc.lines.try_recv() {
            lines.push(l);
        }
        let failures = sum(
            &metrics(&svc),
            "hubwatch_forward_sink_delivery_failures_total",
            "kind=\"auth\",sink=\"siem\"",
        );
        if failures >= 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery failed for refused credentials within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, verbose) = svc.get("/readyz?verbose");
    assert!(verbose.contains("sink siem: failing"), "{verbose}");
    assert!(verbose.contains("SASL authentication error"), "{verbose}");
    assert!(!verbose.contains(password), "{verbose}");
    svc.child.kill().unwrap();
    svc.child.wait().unwrap();
    while let Ok(l) = svc.lines.recv_timeout(Duration::from_secs(1)) {
        lines.push(l);
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("librdkafka") && l.contains("SASL")),
        "librdkafka's debug logs were read"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("the Kafka sink starts a new producer")),
        "a new producer logged its configuration too"
    );
    let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(password)).collect();
    assert!(leaks.is_empty(), "the password was printed: {leaks:#?}");
    eprintln!("{} log lines, none with the password", lines.len());
}
