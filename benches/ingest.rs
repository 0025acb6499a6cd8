//! Query ingestion (records/s) for the default Azure ML query pack: parse + every query of
//! the pack, over the golden fixture bodies.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hubwatch::pipeline::{Engine, EngineOptions};
use hubwatch::schema::Schemas;
use hubwatch::source::{Event, Position};

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schemas = Schemas::embedded();
    let settings = hubwatch::config::load(&root.join("deploy/config/replay.toml"), &schemas)
        .expect("replay config");
    let text = std::fs::read(root.join("tests/fixtures/aml/bodies.ndjson")).unwrap();
    let events: Vec<Event> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            Event::new(
                l.to_vec(),
                Position {
                    partition: "p".into(),
                    offset: i as i64,
                    sequence_number: i as i64,
                    enqueued_time: None,
                },
            )
        })
        .collect();
    // Count the records once, for the throughput figure.
    let mut probe = Engine::new(
        schemas.clone(),
        settings.queries.clone(),
        settings.engine.clone(),
    );
    for e in &events {
        probe.ingest("bench", e);
    }
    probe.end_batch().unwrap();
    let records = probe.parse_totals().records_total();

    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(records));
    g.bench_function("aml_pack", |b| {
        b.iter(|| {
            let mut engine = Engine::new(
                schemas.clone(),
                settings.queries.clone(),
                EngineOptions::default(),
            );
            for (i, e) in events.iter().enumerate() {
                engine.ingest("bench", e);
                if i % 256 == 255 {
                    engine.end_batch().unwrap();
                }
            }
            engine.end_batch().unwrap();
            engine.clock()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
