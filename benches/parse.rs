//! Parser throughput (MB/s) on the golden fixture bodies, against the raw JSON floor
//! (`serde_json::Value` per body) measured on the same bytes.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hubwatch::parse::{Needs, ParseSink, Parser, ParserLimits, Reject, Row};
use hubwatch::schema::Schemas;

struct Count(u64);
impl ParseSink for Count {
    fn row(&mut self, _: Row, _: &[u8]) {
        self.0 += 1;
    }
    fn reject(&mut self, _: Reject<'_>) {}
}

fn bodies() -> Vec<Vec<u8>> {
    let text = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/aml/bodies.ndjson"
    ))
    .unwrap();
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn bench(c: &mut Criterion) {
    let bodies = bodies();
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    let schemas = Schemas::embedded();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("serde_json_value_floor", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for body in &bodies {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
                    n += v.is_object() as usize;
                }
            }
            n
        })
    });
    for (name, needs) in [
        ("all_columns", Needs::all(&schemas)),
        ("time_only", Needs::none(&schemas)),
    ] {
        let mut parser = Parser::new(schemas.clone(), &needs, ParserLimits::default());
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut sink = Count(0);
                for body in &bodies {
                    parser.parse_body(body, None, &mut sink);
                }
                sink.0
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
