//! The five Azure ML documentation queries, verbatim, over the golden fixtures: the answers
//! must equal the independent Python oracle's (`tests/fixtures/gen_fixtures.py`), through
//! the library, the `query` command, and (in `tests/service.rs`) the running service.

mod common;

use std::process::Command;

use common::*;
use hubwatch::export::format;
use hubwatch::parse::{RejectReason, RepairKind};
use hubwatch::pipeline::EngineOptions;
use hubwatch::window::QueryLimits;

fn limits() -> QueryLimits {
    QueryLimits {
        max_series: 100_000,
        max_rows: 100_000,
        ..QueryLimits::default()
    }
}

#[test]
fn documentation_queries_give_the_oracles_answers() {
    let queries = golden_queries();
    assert_eq!(queries.len(), 5);
    for (name, kql) in queries {
        let (result, _) =
            hubwatch::cli::run_query(&kql, &[fixture()], limits(), EngineOptions::default())
                .unwrap();
        let got: serde_json::Value = serde_json::from_str(&format::json(&result)).unwrap();
        assert_same_rows(&name, &got, &expected(&name));
    }
}

#[test]
fn input_is_counted_like_the_oracle_counts_it() {
    let stats = expected("input_stats");
    // Rows without a projection read every column, so every repair shows.
    let kql = "AmlComputeClusterEvent | take 1";
    let (_, engine) =
        hubwatch::cli::run_query(kql, &[fixture()], limits(), EngineOptions::default()).unwrap();
    let clock = hubwatch::time::format_datetime(engine.clock().unwrap());
    assert_eq!(clock, stats["clock"].as_str().unwrap());
    let t = engine.parse_totals();
    assert_eq!(t.bodies, stats["bodies"].as_u64().unwrap());
    for (reason, n) in stats["bodies_rejected"]
        .as_object()
        .unwrap()
        .iter()
        .chain(stats["records_rejected"].as_object().unwrap())
    {
        let r = RejectReason::ALL
            .into_iter()
            .find(|r| r.as_str() == reason)
            .unwrap_or_else(|| panic!("reason {reason}"));
        assert_eq!(t.rejected(r), n.as_u64().unwrap(), "{reason}");
    }
    let total_rejected: u64 = RejectReason::ALL.iter().map(|r| t.rejected(*r)).sum();
    assert_eq!(total_rejected, 10, "no other rejects");
    let schemas = hubwatch::schema::Schemas::embedded();
    for (table, n) in stats["records_accepted"].as_object().unwrap() {
        let id = schemas.table(table).unwrap();
        assert_eq!(t.records[id], n.as_u64().unwrap(), "{table}");
    }
    assert_eq!(
        t.unknown_records,
        stats["records_unknown_category"].as_u64().unwrap()
    );
    assert_eq!(
        t.records_total(),
        stats["records_accepted_total"].as_u64().unwrap()
    );
    // The fixture carries every quirk the parser repairs (single quotes only as a whole
    // body, which is rejected as invalid JSON instead).
    for kind in [
        RepairKind::PropertiesString,
        RepairKind::TimeAlternateField,
        RepairKind::TimeUsFormat,
        RepairKind::NumberFromString,
        RepairKind::EmptyKey,
    ] {
        assert!(
            t.repaired(kind) > 0,
            "no {} repair in the fixture",
            kind.as_str()
        );
    }
}

#[test]
fn the_query_command_prints_json_and_exits_0() {
    for (name, kql) in golden_queries() {
        assert_same_rows(&name, &query_command(&name, &kql), &expected(&name));
    }
}

#[test]
fn a_bad_query_exits_2_pointing_at_line_and_column() {
    let exe = env!("CARGO_BIN_EXE_hubwatch");
    let out = Command::new(exe)
        .args(["query", "--input"])
        .arg(fixture())
        .arg("AmlComputeClusterEvent\n| where ClusterNme == \"x\"\n| summarize avg(VmSize)")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2, column 9: unknown column 'ClusterNme'"),
        "{err}"
    );
    assert!(
        err.contains("line 3, column 17: avg() needs a number or timespan, got string"),
        "{err}"
    );
}

#[test]
fn csv_and_table_formats() {
    let exe = env!("CARGO_BIN_EXE_hubwatch");
    let kql = "AmlComputeJobEvent | where JobName == \"automl_a9940991-dedb-4262-9763-2fd08b79d8fb_setup\" | project TimeGenerated, EventType";
    let out = Command::new(exe)
        .args(["query", "--format", "csv", "-i"])
        .arg(fixture())
        .arg(kql)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("TimeGenerated,EventType"));
    assert_eq!(
        lines.count(),
        expected("job_by_name").as_array().unwrap().len()
    );
    let out = Command::new(exe)
        .args(["query", "-i"])
        .arg(fixture())
        .arg(kql)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("TimeGenerated"), "{text}");
    assert!(text.trim_end().ends_with("rows)"), "{text}");
}
