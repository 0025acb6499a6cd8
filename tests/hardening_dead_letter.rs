//! The dead-letter file, through the public API (file source → engine → dead letter):
//!
//! - a line longer than the file source keeps is dead-lettered with its real size, and the
//!   line says that `raw` is only its first bytes;
//! - every dead letter carries a key that identifies it — (source, partition,
//!   sequence_number, ordinal) — so that the repeats an at-least-once restart may write can
//!   be dropped by a consumer;
//! - what a partition re-reads at or before the position its stored state reflects (a
//!   rebuild of a query added since), or before its source's checkpoint (`replayed`), is not
//!   written again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hubwatch::kql::check::compile;
use hubwatch::pipeline::{DeadLetter, Engine, EngineOptions, QuerySpec};
use hubwatch::schema::Schemas;
use hubwatch::source::file::{FileSource, FileSourceConfig};
use hubwatch::source::{Event, Position, Source};
use hubwatch::window::QueryLimits;
use serde_json::Value;

const GOOD: &str = r#"{"records":[{"time":"2024-03-01T10:00:00Z","category":"AmlComputeJobEvent","properties":{"JobName":"j","EventType":"JobRunning"}}]}"#;

fn spec(name: &str, kql: &str) -> QuerySpec {
    QuerySpec {
        name: Arc::from(name),
        description: String::new(),
        kql: kql.to_string(),
        plan: Arc::new(compile(kql, &Schemas::embedded()).expect("the query compiles")),
        limits: QueryLimits::default(),
    }
}

fn engine(specs: Vec<QuerySpec>, dead: &Path) -> Engine {
    Engine::new(Schemas::embedded(), specs, EngineOptions::default())
        .with_dead_letter(DeadLetter::open(dead).unwrap())
}

fn jobs() -> QuerySpec {
    spec(
        "jobs",
        "AmlComputeJobEvent | summarize n = count() by EventType",
    )
}

fn dead_letters(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// Every event of a non-following file source, in order.
async fn read_all(cfg: FileSourceConfig) -> Vec<(Arc<str>, Event)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let (_trigger, shutdown) = hubwatch::shutdown::channel();
    let task = tokio::spawn(Box::new(FileSource::new(cfg, None)).run(tx, shutdown));
    let mut out = Vec::new();
    while let Some(batch) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("the source delivers or ends")
    {
        for e in batch.events {
            out.push((batch.source.clone(), e));
        }
        batch.ack.ack();
    }
    task.await.unwrap().unwrap();
    out
}

#[tokio::test]
async fn a_line_longer_than_the_source_keeps_is_dead_lettered_with_its_real_size() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    // 1000 bytes of a valid envelope, whose first 200 alone are not JSON.
    let long = format!(
        r#"{{"records":[],"padding":"{}"}}"#,
        "x".repeat(1000 - r#"{"records":[],"padding":""}"#.len())
    );
    assert_eq!(long.len(), 1000);
    std::fs::write(&input, format!("{long}\n{GOOD}\n")).unwrap();
    let mut cfg = FileSourceConfig::new("files", vec![input.clone()]);
    cfg.max_line_bytes = 200;
    let dead = dir.path().join("dead.ndjson");
    let mut e = engine(vec![jobs()], &dead);
    for (source, event) in read_all(cfg).await {
        e.ingest(&source, &event);
    }
    e.end_batch().unwrap();

    let lines = dead_letters(&dead);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let d = &lines[0];
    assert_eq!(d["reason"], "body_too_large", "{d}");
    let detail = d["detail"].as_str().unwrap();
    assert!(
        detail.contains("body of 1000 bytes") && detail.contains("first 200 bytes"),
        "the real size, not the kept one: {detail}"
    );
    assert_eq!(d["bytes"], 1000, "{d}");
    assert_eq!(d["raw_truncated"], true, "{d}");
    assert_eq!(d["raw"], &long[..200], "the first max_line_bytes are kept");
    assert_eq!(d["sequence_number"], 0);
    assert_eq!(d["offset"], 0);
    // The line after it is read from its exact position.
    assert_eq!(e.parse_totals().records_total(), 1);
    // Parse counters count the real size.
    assert_eq!(e.parse_totals().bytes, 1000 + GOOD.len() as u64);
}

fn event(partition: &str, seq: i64, body: &str) -> Event {
    Event::new(
        body.as_bytes().to_vec(),
        Position {
            partition: Arc::from(partition),
            offset: seq * 100,
            sequence_number: seq,
            enqueued_time: None,
        },
    )
}

/// A partition's bodies: every other one with rejects (two bad records, or a broken body).
fn bodies(n: i64) -> Vec<Event> {
    (0..n)
        .map(|seq| match seq % 4 {
            1 => event(
                "0",
                seq,
                &format!(r#"{{"records":[1,{},"x"]}}"#, &GOOD[12..GOOD.len() - 2]),
            ),
            3 => event("0", seq, "{broken"),
            _ => event("0", seq, GOOD),
        })
        .collect()
}

/// (partition, sequence_number, ordinal) of every dead letter, with how often it was written.
fn keys(path: &Path) -> BTreeMap<(String, i64, i64), usize> {
    let mut seen = BTreeMap::new();
    for d in dead_letters(path) {
        let key = (
            d["partition"].as_str().unwrap().to_string(),
            d["sequence_number"].as_i64().unwrap(),
            d["ordinal"]
                .as_i64()
                .expect("every dead letter has its ordinal"),
        );
        *seen.entry(key).or_default() += 1;
    }
    seen
}

#[test]
fn each_reject_of_a_body_has_a_position_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.ndjson");
    let mut e = engine(vec![jobs()], &dead);
    for ev in bodies(4) {
        e.ingest("hub", &ev);
    }
    // Two identical envelopes, each rejected whole, in one body.
    e.ingest("hub", &event("0", 4, r#"[{"records":5},{"records":5}]"#));
    e.end_batch().unwrap();
    let lines = dead_letters(&dead);
    // source/sequence_number/ordinal, record, reason
    let got: Vec<String> = lines
        .iter()
        .map(|d| {
            format!(
                "{}/{}/{} {} {}",
                d["source"].as_str().unwrap(),
                d["sequence_number"],
                d["ordinal"],
                d["record"],
                d["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "hub/1/1 1 record_not_object",
            "hub/1/2 3 record_not_object",
            "hub/3/1 null invalid_json",
            "hub/4/1 null wrong_shape",
            "hub/4/2 null wrong_shape",
        ],
        "two rejects of one body differ by their ordinal: {lines:?}"
    );
}

#[test]
fn a_rebuild_re_reads_without_writing_dead_letters_again() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.ndjson");
    let all = bodies(12);

    // First run: events 0..8, stored; then 8..12 absorbed but never stored (a crash).
    let mut first = engine(vec![jobs()], &dead);
    for ev in &all[..8] {
        first.ingest("hub", ev);
    }
    first.end_batch().unwrap();
    let stored = first.snapshot();
    assert_eq!(stored.len(), 1);
    for ev in &all[8..] {
        first.ingest("hub", ev);
    }
    first.end_batch().unwrap();
    drop(first);
    let before = keys(&dead);
    assert_eq!(before.len(), 9, "3 rejects in every 4 bodies: {before:?}");

    // Second run, with a query added since: the snapshot restores `jobs`, the new query has
    // no state, so the partition is read again from its oldest event.
    let added = spec(
        "failed",
        "AmlComputeJobEvent | where EventType == 'JobFailed' | count",
    );
    let mut second = engine(vec![jobs(), added], &dead);
    let restored = second.restore(&stored[0].bytes).unwrap();
    assert_eq!(&*restored.started_empty[0], "failed");
    for ev in &all {
        second.ingest("hub", ev);
    }
    second.end_batch().unwrap();

    let after = keys(&dead);
    assert_eq!(after.len(), 9, "no reject invented or lost");
    for (key, n) in &after {
        let want = if key.1 < 8 { 1 } else { 2 };
        assert_eq!(
            *n, want,
            "{key:?}: at or before the stored position, written once; after it, at least \
             once (the crash lost the position, not the line), under the same position"
        );
    }

    // An event at or before its source's checkpoint (`replayed`) is not written again
    // either, even with no state to compare with.
    let mut third = engine(vec![jobs()], &dead);
    let mut again = bodies(4).pop().unwrap();
    again.replayed = true;
    third.ingest("hub", &again);
    third.end_batch().unwrap();
    assert_eq!(keys(&dead), after);
    assert_eq!(
        third.parse_totals().rejected.iter().sum::<u64>(),
        1,
        "still counted as read"
    );
}
