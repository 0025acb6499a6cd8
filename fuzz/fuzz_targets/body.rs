//! Event bodies as Event Hubs delivers them, through the parser every source uses: any bytes
//! must give rows, rejects and unknown-category rows (never a panic), and every reject must
//! say where its bytes are. The first byte picks whether the event has an enqueued time (the
//! parser's fallback for records without one) and whether the source cut the body short.

#![no_main]

use std::sync::{Arc, OnceLock};

use hubwatch::parse::{Needs, ParseSink, Parser, ParserLimits, Reject, Row, UnknownRow};
use hubwatch::schema::Schemas;
use libfuzzer_sys::fuzz_target;

struct Check<'a> {
    body: &'a [u8],
    rows: usize,
    rejects: usize,
    last_ordinal: usize,
}

impl ParseSink for Check<'_> {
    fn row(&mut self, _row: Row, raw: &[u8]) {
        assert!(
            raw.len() <= self.body.len(),
            "a record larger than its body"
        );
        self.rows += 1;
    }

    fn reject(&mut self, r: Reject<'_>) {
        assert!(
            r.raw.len() as u64 <= r.bytes,
            "raw beyond the reject's size"
        );
        assert!(!r.detail.is_empty(), "a reject without a reason");
        assert_eq!(
            r.ordinal,
            self.last_ordinal + 1,
            "rejects numbered in order"
        );
        self.last_ordinal = r.ordinal;
        self.rejects += 1;
    }

    fn unknown(&mut self, _row: UnknownRow, raw: &[u8]) {
        assert!(raw.len() <= self.body.len());
    }
}

fn parser() -> Parser {
    static SCHEMAS: OnceLock<Arc<Schemas>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(Schemas::embedded).clone();
    let mut needs = Needs::all(&schemas);
    needs.unknown = true;
    // Small enough that the fuzzer reaches the limit.
    let limits = ParserLimits {
        max_body_bytes: 4096,
    };
    Parser::new(schemas, &needs, limits)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let enqueued = (mode & 1 == 1).then_some(638_500_000_000_000_000i64);
    // Now and then the source's cut of an overlong line.
    let cut = (mode & 0x1e == 0x1e).then(|| body.len() as u64 + 100);
    let mut p = parser();
    let mut check = Check {
        body,
        rows: 0,
        rejects: 0,
        last_ordinal: 0,
    };
    p.parse_event(body, cut, enqueued, &mut check);
    let stats = p.stats.take();
    assert_eq!(
        stats.rejected.iter().sum::<u64>(),
        check.rejects as u64,
        "every reject counted once"
    );
});
