//! KQL text through the lexer, parser and checker; a query that compiles then runs over a
//! slice of the AML sample (every table it holds, ingested as one partition), and its
//! results and exports are read. No text may panic any of it, and an error must point into
//! the text.

#![no_main]

use std::sync::{Arc, OnceLock};

use hubwatch::kql::check::compile;
use hubwatch::pipeline::{Engine, EngineOptions, QuerySpec};
use hubwatch::schema::Schemas;
use hubwatch::source::{Event, Position};
use hubwatch::window::QueryLimits;
use libfuzzer_sys::fuzz_target;

/// The first bodies of the sample: a few of every AML table.
fn bodies() -> &'static [Vec<u8>] {
    static BODIES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BODIES.get_or_init(|| {
        include_str!("../../tests/fixtures/aml/bodies.ndjson")
            .lines()
            .take(40)
            .map(|l| l.as_bytes().to_vec())
            .collect()
    })
}

fn schemas() -> Arc<Schemas> {
    static SCHEMAS: OnceLock<Arc<Schemas>> = OnceLock::new();
    SCHEMAS.get_or_init(Schemas::embedded).clone()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let schemas = schemas();
    let plan = match compile(text, &schemas) {
        Ok(plan) => plan,
        Err(diagnostics) => {
            for d in &diagnostics.items {
                assert!(
                    d.span.start <= d.span.end && d.span.end <= text.len(),
                    "{d:?} outside the text"
                );
            }
            return;
        }
    };
    let spec = QuerySpec {
        name: Arc::from("fuzz"),
        description: String::new(),
        kql: text.to_string(),
        plan: Arc::new(plan),
        limits: QueryLimits {
            max_series: 64,
            max_rows: 64,
            max_panes: 8,
        },
    };
    let mut engine = Engine::new(schemas, vec![spec], EngineOptions::default());
    let partition: Arc<str> = Arc::from("0");
    for (i, body) in bodies().iter().enumerate() {
        let event = Event::new(
            body.clone(),
            Position {
                partition: partition.clone(),
                offset: i as i64,
                sequence_number: i as i64,
                enqueued_time: None,
            },
        );
        engine.ingest("fuzz", &event);
    }
    let _ = engine.end_batch();
    let _ = engine.results();
    let _ = engine.exports();
});
