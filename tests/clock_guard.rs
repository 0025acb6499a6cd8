//! The event-time clock's guard (`src/pipeline/engine/clock.rs`), at the engine, over the
//! golden corpus: a record from the future never moves the clock, so the oracle's answers
//! stand with one present; a record just inside `limits.max_future` moves it and one a tick
//! beyond does not; a replay of old data through a hub (enqueued times far ahead of the data,
//! records without a time taking them) keeps the clock with the data; and a partition
//! restored while a clock jump waits judges what follows as an uninterrupted run does.

mod common;

use std::sync::Arc;

use common::*;
use hubwatch::export::format;
use hubwatch::kql::check::compile;
use hubwatch::pipeline::engine::Ahead;
use hubwatch::pipeline::{Engine, EngineOptions, QuerySpec};
use hubwatch::schema::Schemas;
use hubwatch::source::{Event, Position};
use hubwatch::state::snapshot::Snapshot;
use hubwatch::telemetry::Metrics;
use hubwatch::time::{
    format_datetime, parse_datetime, TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE,
};
use hubwatch::window::QueryLimits;

/// The golden corpus's clock (`tests/expected/input_stats.json`).
fn golden_clock() -> i64 {
    let stats = expected("input_stats");
    parse_datetime(stats["clock"].as_str().unwrap()).unwrap().0
}

fn specs() -> Vec<QuerySpec> {
    golden_queries()
        .into_iter()
        .map(|(name, kql)| QuerySpec {
            name: Arc::from(name.as_str()),
            description: String::new(),
            plan: Arc::new(compile(&kql, &Schemas::embedded()).expect("compiles")),
            kql,
            limits: QueryLimits {
                max_series: 100_000,
                max_rows: 100_000,
                ..QueryLimits::default()
            },
        })
        .collect()
}

fn engine() -> (Engine, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let e = Engine::new(Schemas::embedded(), specs(), EngineOptions::default())
        .with_metrics(metrics.clone());
    (e, metrics)
}

/// The golden corpus's bodies, in order.
fn corpus() -> Vec<Vec<u8>> {
    std::fs::read(fixture())
        .expect("the golden fixture")
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn clock_fixture(name: &str) -> Vec<u8> {
    let text = std::fs::read(repo().join("tests/fixtures/clock").join(name)).expect("fixture");
    text.strip_suffix(b"\n").unwrap_or(&text).to_vec()
}

/// The corpus with `extra` inserted in its middle, where a clock moved by it would judge
/// the whole second half.
fn corpus_with(extra: &[u8]) -> Vec<Vec<u8>> {
    let mut bodies = corpus();
    let middle = bodies.len() / 2;
    bodies.insert(middle, extra.to_vec());
    bodies
}

/// A body with one `AmlComputeJobEvent` at `time`.
fn job_at(time: i64) -> Vec<u8> {
    format!(
        r#"{{"records":[{{"time":"{}","resourceId":"/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/MLWS-PROD","category":"AmlComputeJobEvent","properties":{{"ClusterId":"c","EventType":"JobFailed","JobName":"ahead"}}}}]}}"#,
        format_datetime(time)
    )
    .into_bytes()
}

/// The bodies as events dealt round-robin to `partitions` partitions, each arriving at
/// `enqueued` (none: a file).
fn events(bodies: &[Vec<u8>], partitions: usize, enqueued: Option<i64>) -> Vec<Event> {
    let mut next = vec![0i64; partitions];
    bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let p = i % partitions;
            let seq = next[p];
            next[p] += 1;
            Event::new(
                body.clone(),
                Position {
                    partition: Arc::from(p.to_string().as_str()),
                    offset: seq * 100,
                    sequence_number: seq,
                    enqueued_time: enqueued,
                },
            )
        })
        .collect()
}

fn feed(e: &mut Engine, events: &[Event]) {
    for (i, ev) in events.iter().enumerate() {
        e.ingest("eh", ev);
        if i % 16 == 15 {
            e.end_batch().unwrap();
        }
    }
    e.end_batch().unwrap();
}

/// Every golden query's answer equals the oracle's.
fn assert_golden_answers(e: &Engine, what: &str) {
    for (name, _) in golden_queries() {
        let got = format::json_rows(&e.result(&name).expect("a golden query"));
        assert_same_rows(&format!("{what}: {name}"), &got, &expected(&name));
    }
}

fn counted(m: &Metrics, why: Ahead) -> u64 {
    m.future_records.with_label_values(&[why.as_str()]).get()
}

fn clock_text(e: &Engine) -> String {
    e.clock().map(format_datetime).unwrap_or_default()
}

#[test]
fn a_record_in_2099_is_counted_and_the_golden_answers_stand() {
    let (mut e, m) = engine();
    feed(
        &mut e,
        &events(&corpus_with(&clock_fixture("future_2099.ndjson")), 1, None),
    );
    e.finish();
    assert_eq!(e.clock(), Some(golden_clock()), "{}", clock_text(&e));
    assert_golden_answers(&e, "with a record in 2099");
    assert_eq!(counted(&m, Ahead::Arrival), 1, "the record is counted");
    assert_eq!(e.ahead_totals().get(Ahead::Arrival), 1);
    // Both reasons are exported from the start (so that increase() sees the first).
    let names: Vec<String> = m
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == "hubwatch_event_time_future_records_total")
        .flat_map(|f| {
            f.get_metric()
                .iter()
                .map(|s| s.get_label()[0].value().to_string())
        })
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // Nothing else changed: what was held, and every answer, as without the record.
    let (mut plain, pm) = engine();
    feed(&mut plain, &events(&corpus(), 1, None));
    plain.finish();
    assert_eq!(counted(&pm, Ahead::Arrival), 0);
    assert_eq!(counted(&pm, Ahead::Clock), counted(&m, Ahead::Clock));
}

#[test]
fn a_record_at_most_max_future_ahead_moves_the_clock_and_one_a_tick_further_waits() {
    let clock = golden_clock();
    // Appended after the corpus: exactly max_future (1 h) after the clock moves it.
    let (mut e, m) = engine();
    let mut bodies = corpus();
    bodies.push(job_at(clock + TICKS_PER_HOUR));
    feed(&mut e, &events(&bodies, 1, None));
    assert_eq!(
        e.clock(),
        Some(clock + TICKS_PER_HOUR),
        "{}",
        clock_text(&e)
    );
    assert_eq!(counted(&m, Ahead::Clock), counted_in_corpus());

    // One tick further it is held: the clock stays, the answers stand, and it is counted.
    let (mut e, m) = engine();
    let mut bodies = corpus();
    bodies.push(job_at(clock + TICKS_PER_HOUR + 1));
    feed(&mut e, &events(&bodies, 1, None));
    e.finish();
    assert_eq!(e.clock(), Some(clock), "{}", clock_text(&e));
    assert_golden_answers(&e, "with a record a tick beyond max_future");
    assert_eq!(counted(&m, Ahead::Clock), counted_in_corpus() + 1);

    // A second record, as far ahead, confirms the jump: the stream moved on.
    bodies.push(job_at(clock + TICKS_PER_HOUR + 2));
    let (mut e, _) = engine();
    feed(&mut e, &events(&bodies, 1, None));
    assert_eq!(
        e.clock(),
        Some(clock + TICKS_PER_HOUR + 2),
        "{}",
        clock_text(&e)
    );
}

/// Records the golden corpus itself holds for a while (legitimately early ones, such as its
/// data-export duplicate 63 h ahead of the bodies around it).
fn counted_in_corpus() -> u64 {
    let (mut e, m) = engine();
    feed(&mut e, &events(&corpus(), 1, None));
    counted(&m, Ahead::Clock)
}

#[test]
fn live_a_record_inside_the_bound_of_its_arrival_counts_and_one_beyond_is_refused() {
    // Events enqueued at `now`: a publisher's clock a little fast is believed, one more than
    // max_future fast is not, even as the very first record.
    let now = golden_clock();
    let all = events(
        &[
            job_at(now + TICKS_PER_HOUR + 1),
            job_at(now - 5 * TICKS_PER_MINUTE),
            job_at(now + 30 * TICKS_PER_MINUTE),
        ],
        1,
        Some(now),
    );
    let (mut e, m) = engine();
    e.ingest("eh", &all[0]);
    assert_eq!(e.clock(), None, "refused: it does not start the clock");
    feed(&mut e, &all[1..]);
    assert_eq!(
        e.clock(),
        Some(now + 30 * TICKS_PER_MINUTE),
        "{}",
        clock_text(&e)
    );
    assert_eq!(counted(&m, Ahead::Arrival), 1);
    assert_eq!(counted(&m, Ahead::Clock), 0);
    let jobs = e.result("jobs_failed_5d").unwrap().rows.len();
    assert_eq!(jobs, 2, "the refused JobFailed is in no window");
}

#[test]
fn a_replay_through_a_hub_keeps_the_clock_with_the_data() {
    // Old exports published into a hub long after: every event's enqueued time is far ahead
    // of its records. The corpus's two records without a time (line 428) take it — the
    // fallback that moved the clock to the replay's day — and one record 17 days ahead of
    // the data (but not of its arrival) is added.
    let arrival = golden_clock() + 400 * TICKS_PER_DAY;
    let bodies = corpus_with(&clock_fixture("ahead_17d.ndjson"));
    let (mut e, m) = engine();
    let all = events(&bodies, 4, Some(arrival));
    let mut moves = 0;
    let mut last = None;
    for (i, ev) in all.iter().enumerate() {
        e.ingest("eh", ev);
        if e.clock() != last {
            assert!(e.clock() > last, "the clock never goes back");
            assert!(
                e.clock() <= Some(golden_clock()),
                "the clock left the data at event {i}: {}",
                clock_text(&e)
            );
            moves += 1;
            last = e.clock();
        }
        if i % 16 == 15 {
            e.end_batch().unwrap();
        }
    }
    e.end_batch().unwrap();
    e.finish();
    assert!(moves > 300, "the data moved the clock {moves} times");
    assert_eq!(e.clock(), Some(golden_clock()), "{}", clock_text(&e));
    assert_golden_answers(&e, "replayed through a hub");
    assert_eq!(counted(&m, Ahead::Arrival), 0);
    // The 17-day record and the two that took the enqueued time wait, among others.
    assert!(
        counted(&m, Ahead::Clock) >= 3,
        "{}",
        counted(&m, Ahead::Clock)
    );
    let parse = e.parse_totals();
    assert!(
        parse.repaired(hubwatch::parse::RepairKind::TimeFromEnqueued) >= 2,
        "the corpus's records without a time took the enqueued time"
    );
}

/// Snapshots of the partitions that changed, replacing older ones.
fn keep(stored: &mut Vec<Snapshot>, new: Vec<Snapshot>) {
    for s in new {
        stored.retain(|o| o.partition != s.partition);
        stored.push(s);
    }
}

#[test]
fn a_partition_restored_while_a_jump_waits_judges_the_rest_as_an_uninterrupted_run() {
    // Every fourth body of the corpus, plus the 17-day record, in two partitions: a sparse
    // stream whose bodies are hours apart, so that jumps wait for a second record all along.
    // A restart after every few events (the snapshot taken just before it) must follow the
    // uninterrupted clock event by event.
    let sparse: Vec<Vec<u8>> = corpus().into_iter().step_by(4).collect();
    let mut bodies = sparse;
    bodies.insert(40, clock_fixture("ahead_17d.ndjson"));
    let all = events(&bodies, 2, None);
    let (mut whole, _) = engine();
    let mut path = Vec::with_capacity(all.len());
    let mut waiting = 0;
    for ev in &all {
        whole.ingest("eh", ev);
        path.push(whole.clock());
        waiting += whole
            .partitions()
            .iter()
            .filter(|p| p.pending.is_some())
            .count();
    }
    whole.end_batch().unwrap();
    whole.finish();
    assert!(waiting > 30, "jumps waited at {waiting} events only");

    let (mut e, _) = engine();
    let mut stored = Vec::new();
    let mut restarts_waiting = 0;
    for (i, ev) in all.iter().enumerate() {
        if i > 0 && i % 3 == 0 {
            e.end_batch().unwrap();
            keep(&mut stored, e.snapshot());
            restarts_waiting += e
                .partitions()
                .iter()
                .filter(|p| p.pending.is_some())
                .count();
            let (mut fresh, _) = engine();
            for s in &stored {
                fresh.restore(&s.bytes).expect("our own snapshot restores");
            }
            assert_eq!(fresh.clock(), e.clock(), "restored at event {i}");
            e = fresh;
        }
        e.ingest("eh", ev);
        assert_eq!(
            e.clock().map(format_datetime),
            path[i].map(format_datetime),
            "the clock after event {i} (restarted every 3 events)"
        );
    }
    e.end_batch().unwrap();
    e.finish();
    assert!(
        restarts_waiting > 10,
        "{restarts_waiting} restarts with a jump waiting"
    );
    for (name, _) in golden_queries() {
        assert_eq!(
            e.result(&name).unwrap().rows,
            whole.result(&name).unwrap().rows,
            "{name}"
        );
    }
}
