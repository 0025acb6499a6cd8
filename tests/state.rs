//! Window state through snapshots, at the engine: a partition's state restored from its
//! snapshot, with the source re-reading from an older commit, gives exactly the results of
//! an uninterrupted run; partitions merge to what one state over everything gives; a query
//! changed since the snapshot starts empty while the others restore; a corrupt or foreign
//! snapshot is refused with the reason.
//!
//! Queries: the default Azure ML pack and the golden queries (every store kind: totals,
//! sliding windows, tumbling bins, retained rows). Input: the golden fixture.

mod common;

use std::sync::Arc;

use common::*;
use hubwatch::kql::check::compile;
use hubwatch::pipeline::{Engine, EngineOptions, QuerySpec};
use hubwatch::rng::SplitMix64;
use hubwatch::schema::Schemas;
use hubwatch::source::{Event, Position};
use hubwatch::state::snapshot::Snapshot;
use hubwatch::state::StateError;
use hubwatch::value::Value;
use hubwatch::window::{QueryLimits, ResultTable};

fn specs() -> Vec<QuerySpec> {
    let schemas = Schemas::embedded();
    let mut specs = hubwatch::config::load(&repo().join("deploy/config/replay.toml"), &schemas)
        .expect("the replay config loads")
        .queries;
    for (name, kql) in golden_queries() {
        specs.push(spec(&name, &kql));
    }
    specs
}

fn spec(name: &str, kql: &str) -> QuerySpec {
    let plan = compile(kql, &Schemas::embedded()).expect("the query compiles");
    QuerySpec {
        name: Arc::from(name),
        description: String::new(),
        kql: kql.to_string(),
        plan: Arc::new(plan),
        limits: QueryLimits {
            max_rows: 100_000,
            ..QueryLimits::default()
        },
    }
}

fn engine(specs: &[QuerySpec]) -> Engine {
    Engine::new(
        Schemas::embedded(),
        specs.to_vec(),
        EngineOptions::default(),
    )
}

/// The fixture's bodies as events, dealt round-robin to `partitions` partitions (each
/// numbered 0, 1, … within its partition).
fn events(partitions: usize) -> Vec<Event> {
    let text = std::fs::read(fixture()).expect("the fixture");
    let mut next = vec![0i64; partitions];
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, line)| {
            let p = i % partitions;
            let seq = next[p];
            next[p] += 1;
            Event::new(
                line.to_vec(),
                Position {
                    partition: Arc::from(p.to_string().as_str()),
                    offset: seq * 100,
                    sequence_number: seq,
                    enqueued_time: None,
                },
            )
        })
        .collect()
}

fn results(e: &Engine) -> Vec<(String, ResultTable)> {
    e.results()
        .into_iter()
        .map(|(spec, table)| (spec.name.to_string(), table))
        .collect()
}

fn assert_same(what: &str, got: &[(String, ResultTable)], want: &[(String, ResultTable)]) {
    assert_eq!(got.len(), want.len());
    let with_rows = want.iter().filter(|(_, t)| !t.rows.is_empty()).count();
    assert!(
        with_rows * 3 >= want.len() * 2,
        "the check needs rows to compare: {with_rows} of {} queries have some",
        want.len()
    );
    for ((name, g), (_, w)) in got.iter().zip(want) {
        assert_eq!(
            g.rows.len(),
            w.rows.len(),
            "{what}: {name}: row count\n got {:?}\nwant {:?}",
            g.rows,
            w.rows
        );
        assert_eq!(g.rows, w.rows, "{what}: {name}");
    }
}

/// The same, with reals equal to 1e-9 relative: partials summed per partition and then
/// merged round differently from one running sum.
fn assert_close(what: &str, got: &[(String, ResultTable)], want: &[(String, ResultTable)]) {
    for ((name, g), (_, w)) in got.iter().zip(want) {
        assert_eq!(g.rows.len(), w.rows.len(), "{what}: {name}: row count");
        for (gr, wr) in g.rows.iter().zip(&w.rows) {
            for (a, b) in gr.iter().zip(wr) {
                let same = match (a, b) {
                    (Value::Real(x), Value::Real(y)) => {
                        (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
                    }
                    _ => a == b,
                };
                assert!(
                    same,
                    "{what}: {name}: {a:?} != {b:?}\n got {gr:?}\nwant {wr:?}"
                );
            }
        }
    }
}

fn feed(e: &mut Engine, events: &[Event]) {
    for (i, ev) in events.iter().enumerate() {
        e.ingest("eh", ev);
        if i % 16 == 15 {
            e.end_batch().expect("no dead-letter file");
        }
    }
    e.end_batch().expect("no dead-letter file");
}

#[test]
fn restored_snapshots_with_re_read_events_give_the_uninterrupted_results() {
    let specs = specs();
    let all = events(3);
    let mut whole = engine(&specs);
    feed(&mut whole, &all);
    whole.finish();
    let want = results(&whole);

    // Snapshot now and then, and crash now and then: a fresh engine restores the snapshots,
    // the events absorbed after them are lost with the process, and the source re-reads
    // from a point at or before the last round (what was read but not yet committed),
    // which the restored state must skip.
    let mut rng = SplitMix64(7);
    let mut stored: Vec<Snapshot> = Vec::new();
    let mut e = engine(&specs);
    let (mut read, mut snapshotted) = (0usize, 0usize);
    let mut restarts = 0;
    let mut duplicates = 0;
    while read < all.len() {
        let step = 1 + rng.below(all.len() as u64 / 20) as usize;
        let upto = (read + step).min(all.len());
        feed(&mut e, &all[read..upto]);
        read = upto;
        if rng.chance(0.5) {
            // Keep the newest snapshot of each partition that changed.
            for s in e.snapshot() {
                stored.retain(|o| o.partition != s.partition);
                stored.push(s);
            }
            snapshotted = read;
        }
        if read < all.len() && rng.chance(0.5) {
            duplicates += e.duplicates();
            let mut fresh = engine(&specs);
            for s in &stored {
                let r = fresh.restore(&s.bytes).expect("our own snapshot restores");
                assert!(r.started_empty.is_empty(), "{:?}", r.started_empty);
            }
            e = fresh;
            read = snapshotted - rng.below(snapshotted.min(60) as u64 + 1) as usize;
            restarts += 1;
        }
    }
    e.finish();
    duplicates += e.duplicates();
    assert!(restarts > 10, "only {restarts} restarts");
    assert_same("restored", &results(&e), &want);
    assert!(
        duplicates > 100,
        "the re-read events were skipped: {duplicates}"
    );
}

#[test]
fn partitions_merge_to_the_result_of_one_state_over_everything() {
    let specs = specs();
    let mut one = engine(&specs);
    feed(&mut one, &events(1));
    one.finish();
    let mut many = engine(&specs);
    feed(&mut many, &events(4));
    many.finish();
    assert_eq!(many.partitions().len(), 4);
    assert_close("4 partitions vs 1", &results(&many), &results(&one));
}

#[test]
fn a_query_changed_since_the_snapshot_starts_empty_and_the_others_restore() {
    let kql = "AmlComputeJobEvent | summarize n = count() by EventType";
    let before = vec![
        spec("kept", kql),
        spec("changed", kql),
        spec("removed", kql),
    ];
    let all = events(1);
    let mut e = engine(&before);
    feed(&mut e, &all[..500]);
    let snap = e.snapshot().pop().expect("one partition");

    let changed =
        "AmlComputeJobEvent | where EventType != 'x' | summarize n = count() by EventType";
    // Layout and comments do not change a query's identity.
    let relaid =
        "AmlComputeJobEvent\n| summarize   n=count()   by EventType // per type".to_string();
    let after = vec![
        spec("kept", &relaid),
        spec("changed", changed),
        spec("added", kql),
    ];
    let mut restored = engine(&after);
    let r = restored.restore(&snap.bytes).unwrap();
    assert_eq!(r.position.sequence_number, 499);
    let empty: Vec<&str> = r.started_empty.iter().map(|s| &**s).collect();
    assert_eq!(empty, ["changed", "added"]);
    // The source re-reads from the start: the restored query skips what it holds, the new
    // ones take everything.
    feed(&mut restored, &all);
    let mut whole = engine(&after);
    feed(&mut whole, &all);
    assert_same("after a change", &results(&restored), &results(&whole));
}

#[test]
fn corrupt_truncated_and_foreign_snapshots_are_refused_with_the_reason() {
    let specs = specs();
    let mut e = engine(&specs);
    feed(&mut e, &events(1)[..200]);
    let good = e.snapshot().pop().expect("a snapshot").bytes;
    let refused = |bytes: &[u8]| -> String {
        let err = engine(&specs).restore(bytes).expect_err("refused");
        StateError::unreadable("p.snap".into(), err).to_string()
    };

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    let msg = refused(&flipped);
    assert!(
        msg.contains("checksum") && msg.contains("p.snap") && msg.contains("move the file aside"),
        "{msg}"
    );

    let msg = refused(&good[..good.len() - 7]);
    assert!(msg.contains("truncated"), "{msg}");

    // Another format version, checksummed as that version would be.
    let newer = as_format_version(&good, 99);
    let msg = refused(&newer);
    assert!(
        msg.contains("format version 99")
            && msg.contains(&format!(
                "reads versions {} to {}",
                hubwatch::state::OLDEST_READ,
                hubwatch::state::FORMAT_VERSION
            )),
        "{msg}"
    );
    assert!(msg.contains("retention"), "the way out: {msg}");

    let msg = refused(b"{\"s\": {}, \"t\": {\"p\": 1}}");
    assert!(msg.contains("not a hubwatch state snapshot"), "{msg}");
    let msg = refused(b"");
    assert!(msg.contains("empty or cut short"), "{msg}");
    // A flipped bit in the version field is corruption, not another version.
    let mut flipped_version = good.clone();
    flipped_version[8] ^= 0x02;
    let msg = refused(&flipped_version);
    assert!(msg.contains("checksum"), "{msg}");

    // Every single-byte corruption and every truncation is an error or a faithful restore,
    // never a panic.
    let mut rng = SplitMix64(3);
    for _ in 0..300 {
        let mut b = good.clone();
        let at = rng.below(b.len() as u64) as usize;
        b[at] = rng.next_u64() as u8;
        assert!(
            b == good || engine(&specs).restore(&b).is_err(),
            "a changed byte at {at} was not noticed"
        );
    }
    for cut in (0..good.len()).step_by(97) {
        assert!(engine(&specs).restore(&good[..cut]).is_err());
    }
}

/// Global results: two replicas each read half of the partitions and hold copies of the
/// other's from its snapshots (decoded as the refresher decodes them); each then answers as
/// one engine that read everything.
#[test]
fn replicas_with_copies_of_each_others_partitions_answer_as_one_engine() {
    let specs = specs();
    let all = events(4);
    let mut whole = engine(&specs);
    feed(&mut whole, &all);
    let want = results(&whole);

    let half = |keep: [&str; 2]| -> Vec<Event> {
        all.iter()
            .filter(|e| keep.contains(&&*e.position.partition))
            .map(|e| Event::new(e.body.clone(), e.position.clone()))
            .collect()
    };
    let mut a = engine(&specs);
    feed(&mut a, &half(["0", "1"]));
    let mut b = engine(&specs);
    feed(&mut b, &half(["2", "3"]));
    let (from_a, from_b) = (a.snapshot(), b.snapshot());
    let differing = |e: &Engine| {
        results(e)
            .iter()
            .zip(&want)
            .filter(|((_, g), (_, w))| g.rows != w.rows)
            .count()
    };
    assert!(
        differing(&a) * 2 > want.len(),
        "alone, a replica answers for its half only"
    );
    for (replica, others) in [(&mut a, &from_b), (&mut b, &from_a)] {
        let decoder = replica.decoder();
        for s in others.iter() {
            let d = decoder
                .decode(&s.bytes, Some((&s.source, &s.partition)))
                .expect("a replica's snapshot decodes");
            replica.install_peer(d.part);
        }
        replica.end_batch().unwrap();
        assert_eq!(replica.partitions().len(), 2);
        assert_eq!(replica.peers().len(), 2);
    }
    assert_close("replica A with B's copies", &results(&a), &want);
    assert_close("replica B with A's copies", &results(&b), &want);

    // A partition a replica takes over supersedes its copy.
    let d = a.decoder().decode(&from_b[0].bytes, None).expect("decodes");
    assert!(a.drop_peer(&d.part.source, &d.part.partition));
    a.restore(&from_b[0].bytes).unwrap();
    assert_eq!((a.partitions().len(), a.peers().len()), (3, 1));
    assert_close("after taking a partition over", &results(&a), &want);
}
