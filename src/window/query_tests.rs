//! Aggregate-state and window tests: every aggregation (nulls, merge of partial states),
//! sliding-window edges and expiry, pane coarsening, tumbling bins closed by the watermark,
//! the caps, and the operators after `summarize`. Clocks are explicit; expected values are
//! computed by hand.

use std::sync::Arc;

use super::agg::AggState;
use super::query::{QueryLimits, QueryState, ResultTable};
use crate::kql::check::compile;
use crate::kql::eval::Context;
use crate::kql::plan::{Aggregate, Plan, Stage};
use crate::parse::Row;
use crate::pipeline::{Engine, EngineOptions, QuerySpec};
use crate::schema::Schemas;
use crate::source::{Event, Position};
use crate::time::{parse_datetime, TICKS_PER_DAY, TICKS_PER_MINUTE};
use crate::value::Value;

const CLUSTER: &str = "AmlComputeClusterEvent";

fn dt(text: &str) -> i64 {
    parse_datetime(text).expect("a valid datetime").0
}

/// 2024-03-01T10:00:00Z, the start of every test's timeline.
fn t0() -> i64 {
    dt("2024-03-01T10:00:00Z")
}

fn min(n: i64) -> i64 {
    n * TICKS_PER_MINUTE
}

/// `t0 + n` minutes.
fn at(n: i64) -> i64 {
    t0() + min(n)
}

fn plan(query: &str) -> Arc<Plan> {
    Arc::new(compile(query, &Schemas::embedded()).unwrap_or_else(|d| panic!("{query}\n{d}")))
}

fn state(query: &str) -> QueryState {
    QueryState::new(plan(query), QueryLimits::default())
}

fn state_with(query: &str, limits: QueryLimits) -> QueryState {
    QueryState::new(plan(query), limits)
}

/// An AmlComputeClusterEvent row at `time` with the given columns set (others null).
fn row(time: i64, set: &[(&str, Value)]) -> Row {
    let schemas = Schemas::embedded();
    let table = schemas.table(CLUSTER).expect("known table");
    let t = &schemas.tables[table];
    let mut values = vec![Value::Null; t.columns.len()];
    values[t.time_column()] = Value::DateTime(time);
    for (name, v) in set {
        values[t.column(name).unwrap_or_else(|| panic!("no column {name}"))] = v.clone();
    }
    Row {
        table,
        time,
        values,
    }
}

/// A row of cluster `name` at `time`.
fn named(time: i64, name: &str) -> Row {
    row(time, &[("ClusterName", Value::str(name))])
}

fn s(text: &str) -> Value {
    Value::str(text)
}

fn n(v: i64) -> Value {
    Value::Long(v)
}

fn when(t: i64) -> Value {
    Value::DateTime(t)
}

fn rows(t: ResultTable) -> Vec<Vec<Value>> {
    t.rows
}

// ---- aggregate state -------------------------------------------------------------------

/// The aggregates of `AmlComputeClusterEvent | summarize <aggs>`.
fn aggregates(aggs: &str) -> Vec<Aggregate> {
    let p = plan(&format!("{CLUSTER} | summarize {aggs}"));
    match &p.stage {
        Stage::Summarize(s) => s.aggregates.clone(),
        other => panic!("{other:?}"),
    }
}

fn absorb(aggs: &[Aggregate], input: &[Row]) -> Vec<AggState> {
    let cx = Context { now: at(60) };
    let mut states: Vec<AggState> = aggs.iter().map(AggState::new).collect();
    for r in input {
        for (st, agg) in states.iter_mut().zip(aggs) {
            st.update(agg, &r.values, &cx);
        }
    }
    states
}

fn finish(aggs: &[Aggregate], states: &[AggState]) -> Vec<Value> {
    let mut out = Vec::new();
    for (st, agg) in states.iter().zip(aggs) {
        st.finish(agg, &mut out);
    }
    out
}

/// Seven rows with nulls in both columns:
///
/// | # | TargetNodeCount | ClusterName | CoreCount |
/// |---|-----------------|-------------|-----------|
/// | 0 | 3               | a           | 10        |
/// | 1 | null            | b           | 20        |
/// | 2 | 7               | c           | null      |
/// | 3 | 1               | a           | 5         |
/// | 4 | 7               | d           | 40        |
/// | 5 | null            | null        | 15        |
/// | 6 | 4               | a           | 30        |
fn sample() -> Vec<Row> {
    let data: [(Option<i64>, Option<&str>, Option<i64>); 7] = [
        (Some(3), Some("a"), Some(10)),
        (None, Some("b"), Some(20)),
        (Some(7), Some("c"), None),
        (Some(1), Some("a"), Some(5)),
        (Some(7), Some("d"), Some(40)),
        (None, None, Some(15)),
        (Some(4), Some("a"), Some(30)),
    ];
    data.iter()
        .enumerate()
        .map(|(i, (tnc, name, cores))| {
            row(
                at(i as i64),
                &[
                    ("TargetNodeCount", tnc.map(Value::Long).unwrap_or_default()),
                    ("ClusterName", name.map(Value::str).unwrap_or_default()),
                    ("CoreCount", cores.map(Value::Long).unwrap_or_default()),
                ],
            )
        })
        .collect()
}

/// Every aggregation function, over [`sample`].
const EVERY_AGGREGATE: &str = "count(), countif(TargetNodeCount > 3), \
    sum(TargetNodeCount), sumif(TargetNodeCount, ClusterName == \"a\"), \
    sum(todouble(TargetNodeCount)), avg(TargetNodeCount), \
    avgif(TargetNodeCount, ClusterName == \"a\"), avgif(TargetNodeCount, ClusterName == \"b\"), \
    min(TargetNodeCount), max(TargetNodeCount), min(ClusterName), max(ClusterName), \
    dcount(ClusterName), dcount(TargetNodeCount), \
    arg_max(TargetNodeCount, ClusterName), arg_min(TargetNodeCount, ClusterName), \
    arg_max(CoreCount, TargetNodeCount, ClusterName), \
    percentile(TargetNodeCount, 0), percentile(TargetNodeCount, 20), \
    percentile(TargetNodeCount, 21), percentile(TargetNodeCount, 50), \
    percentile(TargetNodeCount, 95), percentile(todouble(TargetNodeCount), 100), \
    take_any(ClusterName), dcountif(ClusterName, TargetNodeCount > 3), \
    stdev(TargetNodeCount), stdevp(TargetNodeCount), variance(TargetNodeCount), \
    variancep(TargetNodeCount), make_set(ClusterName), make_list(TargetNodeCount, 3)";

fn every_expected() -> Vec<Value> {
    vec![
        n(7),                   // count(): every row, nulls included
        n(3),                   // countif: 7, 7, 4
        n(22),                  // sum: 3 + 7 + 1 + 7 + 4
        n(8),                   // sumif a: 3 + 1 + 4
        Value::Real(22.0),      // sum of reals
        Value::Real(4.4),       // avg: 22 / 5, nulls not counted
        Value::Real(8.0 / 3.0), // avgif a
        Value::Null,            // avgif b: only nulls
        n(1),                   // min
        n(7),                   // max
        s("a"),                 // min(ClusterName)
        s("d"),                 // max(ClusterName)
        n(4),                   // dcount(ClusterName): a b c d
        n(4),                   // dcount(TargetNodeCount): 3 7 1 4
        n(7),                   // arg_max: the first row with the maximum wins
        s("c"),                 //   ... its ClusterName
        n(1),                   // arg_min
        s("a"),                 //   ... its ClusterName
        n(40),                  // arg_max(CoreCount, ...)
        n(7),                   //   ... TargetNodeCount
        s("d"),                 //   ... ClusterName
        n(1),                   // p0: sorted 1 3 4 7 7, rank 1
        n(1),                   // p20: rank ceil(1.0) = 1
        n(3),                   // p21: rank ceil(1.05) = 2
        n(4),                   // p50: rank ceil(2.5) = 3
        n(7),                   // p95: rank ceil(4.75) = 5
        Value::Real(7.0),       // p100 of reals
        s("a"),                 // take_any: any value of the group (the least)
        n(3),                   // dcountif: c, d, a have a row above 3
        // 3 7 1 7 4: mean 4.4, squared deviations sum to 27.2.
        Value::Real(6.8f64.sqrt()),         // stdev: 27.2 / 4
        Value::Real(5.44f64.sqrt()),        // stdevp: 27.2 / 5
        Value::Real(6.8),                   // variance
        Value::Real(5.44),                  // variancep
        dynamic(r#"["a", "b", "c", "d"]"#), // make_set: first seen first, nulls left out
        dynamic("[3, 7, 1]"),               // make_list(…, 3): the first three values
    ]
}

fn dynamic(text: &str) -> Value {
    Value::Dynamic(Arc::new(serde_json::from_str(text).unwrap()))
}

/// Reals to 12 significant digits: states merged in another order add in another order.
fn rounded(values: Vec<Value>) -> Vec<Value> {
    values
        .into_iter()
        .map(|v| match v {
            Value::Real(x) => Value::Str(Arc::from(format!("{x:.12e}"))),
            other => other,
        })
        .collect()
}

#[test]
fn every_aggregate_over_rows_with_nulls() {
    let aggs = aggregates(EVERY_AGGREGATE);
    let got = finish(&aggs, &absorb(&aggs, &sample()));
    assert_eq!(rounded(got), rounded(every_expected()));
}

#[test]
fn merged_partial_states_equal_one_state_over_everything() {
    let aggs = aggregates(EVERY_AGGREGATE);
    let input = sample();
    let whole = finish(&aggs, &absorb(&aggs, &input));
    for cut in 0..=input.len() {
        let mut left = absorb(&aggs, &input[..cut]);
        let right = absorb(&aggs, &input[cut..]);
        for ((l, r), agg) in left.iter_mut().zip(&right).zip(&aggs) {
            l.merge(r, agg.func);
        }
        assert_eq!(
            rounded(finish(&aggs, &left)),
            rounded(whole.clone()),
            "split at {cut}"
        );
    }
}

#[test]
fn aggregates_of_no_rows() {
    let aggs = aggregates(EVERY_AGGREGATE);
    let got = finish(&aggs, &absorb(&aggs, &[]));
    // Counts, sums and dcounts are zero; everything else (arg_* with its carried columns,
    // percentiles) is null.
    let mut want = vec![n(0), n(0), n(0), n(0), Value::Real(0.0)];
    want.extend(vec![Value::Null; 7]); // avg, avgif ×2, min ×2, max ×2
    want.extend([n(0), n(0)]);
    want.extend(vec![Value::Null; 13]);
    want.extend([Value::Null, n(0)]); // take_any, dcountif
    want.extend(vec![Value::Null; 4]); // stdev, stdevp, variance, variancep
    want.extend([dynamic("[]"), dynamic("[]")]); // make_set, make_list
    assert_eq!(got, want);
}

#[test]
fn percentile_is_the_nearest_rank_element() {
    let aggs = aggregates(
        "percentile(TargetNodeCount, 0), percentile(TargetNodeCount, 25), \
         percentile(TargetNodeCount, 50), percentile(TargetNodeCount, 75), \
         percentile(TargetNodeCount, 76), percentile(TargetNodeCount, 100)",
    );
    let input: Vec<Row> = [4, 1, 3, 2]
        .iter()
        .map(|v| row(t0(), &[("TargetNodeCount", n(*v))]))
        .collect();
    assert_eq!(
        finish(&aggs, &absorb(&aggs, &input)),
        vec![n(1), n(1), n(2), n(3), n(4), n(4)]
    );
}

#[test]
fn dcount_is_exact_on_small_sets() {
    let aggs = aggregates("dcount(ClusterName), dcount(CoreCount)");
    let input: Vec<Row> = (0..40)
        .map(|i| {
            row(
                t0(),
                &[
                    ("ClusterName", Value::str(&format!("c{}", i % 13))),
                    ("CoreCount", n(i % 7)),
                ],
            )
        })
        .collect();
    assert_eq!(finish(&aggs, &absorb(&aggs, &input)), vec![n(13), n(7)]);
}

#[test]
fn sum_and_avg_of_timespans_stay_timespans() {
    let aggs = aggregates("sum(now() - TimeGenerated), avg(now() - TimeGenerated)");
    // now() is at(60): ages 60, 50 and 40 minutes.
    let input = [row(at(0), &[]), row(at(10), &[]), row(at(20), &[])];
    assert_eq!(
        finish(&aggs, &absorb(&aggs, &input)),
        vec![Value::TimeSpan(min(150)), Value::TimeSpan(min(50))]
    );
}

// ---- sliding windows -------------------------------------------------------------------

const LAST_10M: &str =
    "AmlComputeClusterEvent | where TimeGenerated > ago(10m) | summarize count() by ClusterName";

#[test]
fn sliding_edge_is_exclusive_with_greater_than() {
    let mut q = state(LAST_10M);
    let clock = at(30);
    q.ingest(&named(clock - min(10), "gpu"), clock, clock);
    assert_eq!(q.stats.outside_window, 1, "exactly at clock - 10m: outside");
    q.ingest(&named(clock - min(10) + 1, "gpu"), clock, clock);
    assert_eq!(q.stats.matched, 1, "one tick later: inside");
    assert_eq!(rows(q.result(clock)), vec![vec![s("gpu"), n(1)]]);

    // One tick later the row is exactly at the edge and leaves.
    q.advance(clock + 1, clock + 1);
    assert!(rows(q.result(clock + 1)).is_empty());
    assert_eq!(q.series(), 0);
}

#[test]
fn sliding_edge_is_inclusive_with_greater_or_equal() {
    let mut q = state(
        "AmlComputeClusterEvent | where TimeGenerated >= ago(10m) | summarize count() by ClusterName",
    );
    let clock = at(30);
    q.ingest(&named(clock - min(10), "gpu"), clock, clock);
    assert_eq!(q.stats.outside_window, 0);
    assert_eq!(rows(q.result(clock)), vec![vec![s("gpu"), n(1)]]);
    q.advance(clock + 1, clock + 1);
    assert!(rows(q.result(clock + 1)).is_empty());
}

#[test]
fn rows_leave_the_window_as_the_clock_advances() {
    let mut q = state(LAST_10M);
    for m in [20, 22, 25, 29] {
        q.ingest(&named(at(m), "gpu"), at(m), at(m));
    }
    let count_at = |q: &QueryState, m: i64| rows(q.result(at(m)));
    assert_eq!(count_at(&q, 29), vec![vec![s("gpu"), n(4)]]);
    // At 30 the edge is 20: the row at 20 is out.
    q.advance(at(30), at(30));
    assert_eq!(count_at(&q, 30), vec![vec![s("gpu"), n(3)]]);
    q.advance(at(35), at(35));
    assert_eq!(count_at(&q, 35), vec![vec![s("gpu"), n(1)]]);
    q.advance(at(39), at(39));
    assert!(count_at(&q, 39).is_empty());
    // Reading at a later clock without advancing judges the window by that clock too.
    let mut q = state(LAST_10M);
    q.ingest(&named(at(20), "gpu"), at(20), at(20));
    assert!(count_at(&q, 30).is_empty());
}

#[test]
fn out_of_order_rows_inside_the_window_count() {
    let mut q = state(LAST_10M);
    let clock = at(30);
    for m in [29, 25, 27, 21] {
        q.ingest(&named(at(m), "gpu"), clock, clock);
    }
    assert_eq!(rows(q.result(clock)), vec![vec![s("gpu"), n(4)]]);
    // Later, one arrives behind the others but still inside the window.
    q.advance(at(32), at(32));
    q.ingest(&named(at(23), "gpu"), at(32), at(32));
    // At 32 the edge is 22: 21 is gone, 23 25 27 29 remain.
    assert_eq!(rows(q.result(at(32))), vec![vec![s("gpu"), n(4)]]);
    assert_eq!(q.stats.outside_window, 0);
}

#[test]
fn a_row_older_than_the_window_is_never_counted() {
    let mut q = state(LAST_10M);
    let clock = at(30);
    q.ingest(&named(at(19), "old"), clock, clock);
    q.ingest(&named(at(29), "new"), clock, clock);
    assert_eq!(q.stats.outside_window, 1);
    assert_eq!(q.stats.rows_in, 2);
    assert_eq!(q.stats.matched, 1);
    assert_eq!(rows(q.result(clock)), vec![vec![s("new"), n(1)]]);
    q.advance(at(31), at(31));
    assert_eq!(rows(q.result(at(31))), vec![vec![s("new"), n(1)]]);
}

#[test]
fn a_series_that_empties_is_removed() {
    let mut q = state(LAST_10M);
    q.ingest(&named(at(21), "gpu"), at(21), at(21));
    q.ingest(&named(at(29), "cpu"), at(29), at(29));
    assert_eq!(q.series(), 2);
    q.advance(at(31), at(31));
    assert_eq!(q.series(), 1);
    assert_eq!(rows(q.result(at(31))), vec![vec![s("cpu"), n(1)]]);
    // The freed slot can be taken by a new series.
    q.ingest(&named(at(31), "gpu"), at(31), at(31));
    assert_eq!(q.series(), 2);
    q.advance(at(45), at(45));
    assert_eq!(q.series(), 0);
}

#[test]
fn coarsened_panes_still_count_everything_in_the_window() {
    let mut q = state_with(
        "AmlComputeClusterEvent | where TimeGenerated > ago(1h) \
         | summarize count(), sum(TargetNodeCount), max(TargetNodeCount) by ClusterName",
        QueryLimits {
            max_panes: 4,
            ..QueryLimits::default()
        },
    );
    // 20 distinct minutes, out of order, values 1..=20.
    let clock = at(20);
    for i in (1..=20).rev().step_by(2).chain((1..=20).step_by(2)) {
        let r = row(
            at(i),
            &[("ClusterName", s("gpu")), ("TargetNodeCount", n(i))],
        );
        q.ingest(&r, clock, clock);
    }
    assert!(q.stats.pane_merges > 0);
    assert_eq!(
        rows(q.result(clock)),
        vec![vec![s("gpu"), n(20), n(210), n(20)]]
    );
    q.advance(at(100), at(100));
    assert_eq!(q.series(), 0, "everything left the window");
}

// ---- tumbling bins ---------------------------------------------------------------------

const BINS_5M: &str = "AmlComputeClusterEvent | summarize count() by bin(TimeGenerated, 5m)";

#[test]
fn a_bin_closes_when_the_watermark_reaches_its_end() {
    let mut q = state(BINS_5M);
    q.ingest(&named(at(1), "a"), at(1), at(0));
    q.ingest(&named(at(3), "a"), at(3), at(2));
    q.ingest(&named(at(6), "a"), at(6), at(5) - 1);
    q.advance(at(6), at(5) - 1);
    assert!(rows(q.result(at(6))).is_empty(), "bin 10:00 still open");
    assert!(rows(q.export(at(6))).is_empty());

    q.advance(at(6), at(5));
    assert_eq!(rows(q.result(at(6))), vec![vec![when(at(0)), n(2)]]);
    assert_eq!(rows(q.export(at(6))), vec![vec![when(at(0)), n(2)]]);

    // A row for the closed bin is late and not counted.
    q.ingest(&named(at(2), "a"), at(6), at(5));
    assert_eq!(q.stats.late, 1);
    q.ingest(&named(at(7), "a"), at(7), at(6));
    q.advance(at(11), at(10));
    assert_eq!(
        rows(q.result(at(11))),
        vec![vec![when(at(0)), n(2)], vec![when(at(5)), n(2)]]
    );
    assert_eq!(
        rows(q.export(at(11))),
        vec![vec![when(at(5)), n(2)]],
        "metrics show the last closed bin"
    );

    // End of input closes the open bin.
    q.ingest(&named(at(12), "a"), at(12), at(11));
    q.flush();
    assert_eq!(
        rows(q.result(at(12))),
        vec![
            vec![when(at(0)), n(2)],
            vec![when(at(5)), n(2)],
            vec![when(at(10)), n(1)]
        ]
    );
    assert_eq!(q.stats.matched, 5);
}

#[test]
fn bins_with_other_keys_put_the_bin_in_its_place() {
    let mut q =
        state("AmlComputeClusterEvent | summarize count() by ClusterName, bin(TimeGenerated, 5m)");
    for (m, name) in [(1, "b"), (2, "a"), (3, "b"), (6, "a")] {
        q.ingest(&named(at(m), name), at(m), at(0));
    }
    q.flush();
    assert_eq!(
        rows(q.result(at(6))),
        vec![
            vec![s("a"), when(at(0)), n(1)],
            vec![s("b"), when(at(0)), n(2)],
            vec![s("a"), when(at(5)), n(1)],
        ]
    );
}

#[test]
fn bins_leave_the_result_with_the_window() {
    let mut q = state(
        "AmlComputeClusterEvent | where TimeGenerated > ago(15m) \
         | summarize count() by bin(TimeGenerated, 5m)",
    );
    for m in [1, 6, 11] {
        q.ingest(&named(at(m), "a"), at(m), at(m) - min(1));
    }
    q.advance(at(16), at(15));
    // Edge 10:01: bin 10:00 still overlaps the window.
    assert_eq!(
        rows(q.result(at(16))),
        vec![
            vec![when(at(0)), n(1)],
            vec![when(at(5)), n(1)],
            vec![when(at(10)), n(1)]
        ]
    );
    assert_eq!(q.series(), 3);
    // Edge 10:05: bin 10:00 (up to 10:04:59.9999999) has left.
    q.advance(at(20), at(20));
    assert_eq!(
        rows(q.result(at(20))),
        vec![vec![when(at(5)), n(1)], vec![when(at(10)), n(1)]]
    );
    assert_eq!(q.series(), 2);
}

// ---- caps ------------------------------------------------------------------------------

#[test]
fn series_beyond_the_cap_are_dropped_and_existing_ones_still_update() {
    let mut q = state_with(
        "AmlComputeClusterEvent | summarize count() by ClusterName",
        QueryLimits {
            max_series: 2,
            ..QueryLimits::default()
        },
    );
    for (m, name) in [(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "c"), (6, "b")] {
        q.ingest(&named(at(m), name), at(m), at(m));
    }
    assert_eq!(q.stats.series_dropped, 2);
    assert_eq!(q.stats.matched, 4);
    assert_eq!(q.series(), 2);
    assert_eq!(
        rows(q.result(at(6))),
        vec![vec![s("a"), n(2)], vec![s("b"), n(2)]]
    );
}

#[test]
fn closed_bins_make_room_for_new_ones_under_the_series_cap() {
    let mut q = state_with(
        BINS_5M,
        QueryLimits {
            max_series: 2,
            ..QueryLimits::default()
        },
    );
    for m in [1, 6, 11, 16] {
        q.ingest(&named(at(m), "a"), at(m), at(m) - min(1));
        q.advance(at(m + 4), at(m + 4));
    }
    assert_eq!(q.stats.series_dropped, 0);
    assert_eq!(q.series(), 2);
    assert_eq!(
        rows(q.result(at(20))),
        vec![vec![when(at(10)), n(1)], vec![when(at(15)), n(1)]]
    );
}

#[test]
fn retained_rows_keep_the_most_recent() {
    let mut q = state_with(
        "AmlComputeClusterEvent | project ClusterName",
        QueryLimits {
            max_rows: 3,
            ..QueryLimits::default()
        },
    );
    for (m, name) in [(1, "a"), (5, "e"), (2, "b"), (4, "d"), (3, "c")] {
        q.ingest(&named(at(m), name), at(5), at(5));
    }
    assert_eq!(q.stats.rows_evicted, 2);
    assert_eq!(q.stats.matched, 5);
    assert_eq!(q.series(), 3);
    assert_eq!(
        rows(q.result(at(5))),
        vec![vec![s("c")], vec![s("d")], vec![s("e")]]
    );

    let mut q = state("AmlComputeClusterEvent | project ClusterName | take 2");
    for (m, name) in [(1, "a"), (3, "c"), (2, "b")] {
        q.ingest(&named(at(m), name), at(3), at(3));
    }
    assert_eq!(q.stats.rows_evicted, 1);
    assert_eq!(rows(q.result(at(3))), vec![vec![s("b")], vec![s("c")]]);
}

#[test]
fn retained_rows_leave_with_the_window() {
    let mut q =
        state("AmlComputeClusterEvent | where TimeGenerated > ago(10m) | project ClusterName");
    q.ingest(&named(at(1), "a"), at(1), at(1));
    q.ingest(&named(at(8), "b"), at(8), at(8));
    q.advance(at(11), at(11));
    assert_eq!(rows(q.result(at(11))), vec![vec![s("b")]]);
    assert_eq!(q.series(), 1);
}

// ---- after summarize, and without a time filter ----------------------------------------

#[test]
fn operators_after_summarize_apply_to_the_result() {
    let query = |post: &str| {
        let mut q = state(&format!(
            "AmlComputeClusterEvent | summarize n = count() by ClusterName {post}"
        ));
        for (m, name) in [(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "c"), (6, "c")] {
            q.ingest(&named(at(m), name), at(m), at(m));
        }
        rows(q.result(at(6)))
    };
    assert_eq!(
        query("| extend twice = n * 2 | where twice > 2 | project ClusterName, twice"),
        vec![vec![s("a"), n(4)], vec![s("c"), n(6)]]
    );
    assert_eq!(query("| take 1"), vec![vec![s("a"), n(2)]]);
    assert_eq!(query("| count"), vec![vec![n(3)]]);
    assert_eq!(query("| where n > 5 | count"), vec![vec![n(0)]]);
}

#[test]
fn without_a_time_filter_everything_since_start_counts() {
    let mut q = state("AmlComputeClusterEvent | summarize count() by ClusterName");
    q.ingest(&named(at(0) - 30 * TICKS_PER_DAY, "a"), at(0), at(0));
    q.ingest(&named(at(0), "a"), at(0), at(0));
    q.advance(at(0) + 365 * TICKS_PER_DAY, at(0) + 365 * TICKS_PER_DAY);
    assert_eq!(
        rows(q.result(at(0) + 365 * TICKS_PER_DAY)),
        vec![vec![s("a"), n(2)]]
    );
    assert_eq!(q.stats.outside_window, 0);
}

#[test]
fn end_to_end_through_the_engine() {
    let kql = "AmlComputeClusterEvent | where TimeGenerated > ago(1h) \
               | summarize max(TargetNodeCount), count() by ClusterName";
    let spec = QuerySpec {
        name: Arc::from("q"),
        description: String::new(),
        kql: kql.to_string(),
        plan: plan(kql),
        limits: QueryLimits::default(),
    };
    let mut engine = Engine::new(Schemas::embedded(), vec![spec], EngineOptions::default());
    let body = |time: &str, cluster: &str, target: i64| {
        format!(
            r#"{{"records":[{{"time":"{time}","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/W","category":"AmlComputeClusterEvent","properties":{{"ClusterName":"{cluster}","TargetNodeCount":{target}}}}}]}}"#
        )
    };
    let bodies = [
        body("2024-03-01T10:00:00Z", "gpu", 4),
        body("2024-03-01T10:30:00Z", "gpu", 2),
        body("2024-03-01T10:40:00Z", "cpu", 8),
        body("2024-03-01T11:10:00Z", "gpu", 1),
    ];
    for (i, b) in bodies.iter().enumerate() {
        let event = Event::new(
            b.clone().into_bytes(),
            Position {
                partition: Arc::from("0"),
                offset: i as i64,
                sequence_number: i as i64,
                enqueued_time: None,
            },
        );
        engine.ingest("test", &event);
    }
    engine.end_batch().expect("no dead letters to flush");
    // Clock 11:10, window after 10:10: the 10:00 row has left.
    let result = engine.result("q").expect("the query");
    assert_eq!(
        result.rows,
        vec![vec![s("cpu"), n(8), n(1)], vec![s("gpu"), n(2), n(2)]]
    );
}

#[test]
fn count_without_by_over_nothing_is_one_row_of_zero() {
    let schemas = crate::schema::Schemas::embedded();
    for kql in ["AmlComputeJobEvent | count", "AmlComputeJobEvent | where TimeGenerated > ago(1h) | summarize n = count(), s = sum(toint(1))"] {
        let plan = std::sync::Arc::new(crate::kql::check::compile(kql, &schemas).unwrap());
        let q = QueryState::new(plan, QueryLimits::default());
        let r = q.result(0);
        assert_eq!(r.rows.len(), 1, "{kql}");
        assert_eq!(r.rows[0][0], Value::Long(0), "{kql}");
    }
}

// ---- rows ahead of the clock (held by the clock's guard) -------------------------------

#[test]
fn a_row_ahead_of_the_clock_waits_in_its_place_until_the_clock_gets_there() {
    // The clock reads 30 (the watermark 20); a row at 90 (held: it did not move the clock)
    // arrives.
    let (clock, ahead) = (at(30), at(90));
    let feed = |query: &str| {
        let mut q = state(query);
        q.ingest(&named(at(25), "gpu"), clock, at(20));
        q.ingest(&named(ahead, "gpu"), clock, at(20));
        q
    };

    // A sliding window shows it only once the clock reaches it, then as any other row.
    let mut q = feed(LAST_10M);
    assert_eq!(q.stats.outside_window, 0, "absorbed, not dropped");
    assert_eq!(rows(q.result(clock)), vec![vec![s("gpu"), n(1)]]);
    assert_eq!(rows(q.result(ahead - 1)), Vec::<Vec<Value>>::new());
    q.advance(ahead, ahead);
    assert_eq!(rows(q.result(ahead)), vec![vec![s("gpu"), n(1)]]);

    // Retained rows, with a window or without one, likewise.
    for query in [
        "AmlComputeClusterEvent | where TimeGenerated > ago(10m) | project TimeGenerated",
        "AmlComputeClusterEvent | project TimeGenerated",
    ] {
        let q = feed(query);
        let shown = |c: i64| rows(q.result(c)).len();
        assert_eq!(shown(clock), 1, "{query}");
        assert_eq!(
            shown(ahead),
            if query.contains("ago") { 1 } else { 2 },
            "{query}"
        );
    }

    // A tumbling bin holds it, open until the watermark passes the bin's end.
    let mut q =
        feed("AmlComputeClusterEvent | summarize count() by ClusterName, bin(TimeGenerated, 10m)");
    q.advance(clock, clock);
    assert_eq!(q.closed_bins(None).collect::<Vec<_>>(), vec![at(20)]);
    q.advance(at(100), at(100));
    assert_eq!(q.closed_bins(None).collect::<Vec<_>>(), vec![at(20), ahead]);

    // A total since start has no time to wait for: it counts the row at once.
    let q = feed("AmlComputeClusterEvent | summarize count() by ClusterName");
    assert_eq!(rows(q.result(clock)), vec![vec![s("gpu"), n(2)]]);
}

#[test]
fn sliding_series_leave_when_their_last_pane_does_though_most_batches_visit_none() {
    // `advance` skips the series while the oldest pane is inside the window; each series
    // still leaves exactly when its newest pane does, as a visit on every batch had it.
    let mut q = state(&format!(
        "{CLUSTER} | where TimeGenerated > ago(1h) | summarize n = count() by ClusterName"
    ));
    q.ingest(&named(at(0), "a"), at(0), at(0));
    q.ingest(&named(at(30), "b"), at(30), at(30));
    q.ingest(&named(at(50), "a"), at(50), at(50));
    for clock in [at(31), at(55), at(59)] {
        q.advance(clock, clock);
        assert_eq!(q.series(), 2, "at minute {}", (clock - t0()) / min(1));
    }
    // a's first pane leaves at 60, a itself at 110; b at 90.
    q.advance(at(61), at(61));
    assert_eq!(q.series(), 2);
    q.advance(at(91), at(91));
    assert_eq!(q.series(), 1, "b left");
    // A series that arrives later takes part in the bound as well.
    q.ingest(&named(at(80), "c"), at(91), at(91));
    q.advance(at(105), at(105));
    assert_eq!(q.series(), 2, "a (pane of minute 50) and c");
    q.advance(at(111), at(111));
    assert_eq!(q.series(), 1, "a left");
    q.advance(at(141), at(141));
    assert_eq!(q.series(), 0, "c left");
}

#[test]
fn aggregate_states_and_panes_stay_small() {
    // Every pane of every series holds a state per aggregate: what a live series costs
    // (benches/series_memory.rs) grows with these.
    assert!(
        std::mem::size_of::<AggState>() <= 32,
        "{}",
        std::mem::size_of::<AggState>()
    );
    // One state inline (most queries have one aggregate), else a boxed slice.
    assert!(std::mem::size_of::<super::agg::States>() <= 32);
    assert!(std::mem::size_of::<super::query::Pane>() <= 48);
}

#[test]
fn a_spread_state_survives_a_snapshot_and_one_value_spreads_nowhere() {
    use crate::codec::{Decode, Encode, Reader, Writer};
    let aggs = aggregates("stdev(TargetNodeCount)");
    let one = absorb(&aggs, &sample()[..1]);
    assert_eq!(finish(&aggs, &one), vec![Value::Real(0.0)]);
    let all = absorb(&aggs, &sample());
    let mut w = Writer::new();
    all[0].encode(&mut w);
    let bytes = w.into_inner();
    let back = AggState::decode(&mut Reader::new(&bytes)).unwrap();
    assert_eq!(finish(&aggs, &[back]), finish(&aggs, &all));
}

#[test]
fn a_collect_state_survives_a_snapshot_and_sizes_are_bounded() {
    use crate::codec::{Decode, Encode, Reader, Writer};
    let aggs = aggregates("make_set(ClusterName, 2)");
    let all = absorb(&aggs, &sample());
    assert_eq!(finish(&aggs, &all), vec![dynamic(r#"["a", "b"]"#)]);
    let mut w = Writer::new();
    all[0].encode(&mut w);
    let bytes = w.into_inner();
    let back = AggState::decode(&mut Reader::new(&bytes)).unwrap();
    assert_eq!(finish(&aggs, &[back]), finish(&aggs, &all));
    for bad in ["make_set(ClusterName, 0)", "make_list(ClusterName, 65537)"] {
        let err = compile(
            &format!("{CLUSTER} | summarize {bad}"),
            &Schemas::embedded(),
        )
        .expect_err("refused")
        .to_string();
        assert!(
            err.contains("size must be a whole number from 1 to 65536"),
            "{err}"
        );
    }
}

// ---- joins ------------------------------------------------------------------------------

/// Left rows (VmSize "L") and right rows (VmSize "R") of one table, each offered to both of
/// the plan's inputs as the engine does: keys a, b, b, null on the left; b, c, b, null on
/// the right (CoreCount tells them apart).
fn joined(kind: &str) -> Vec<Vec<Value>> {
    let kql = format!(
        "{CLUSTER} | where VmSize == 'L' | project ClusterName, L = CoreCount \
         | join kind={kind} ({CLUSTER} | where VmSize == 'R' | project ClusterName, R = CoreCount) on ClusterName"
    );
    let mut q = state(&kql);
    assert_eq!(q.plan().inputs.len(), 2);
    let side = |name: Option<&str>, size: &str, cores: i64, m: i64| {
        let name = name.map_or(Value::Null, s);
        row(
            at(m),
            &[
                ("ClusterName", name),
                ("VmSize", s(size)),
                ("CoreCount", n(cores)),
            ],
        )
    };
    let input = [
        side(Some("a"), "L", 1, 1),
        side(Some("b"), "R", 10, 2),
        side(Some("b"), "L", 2, 3),
        side(Some("c"), "R", 20, 4),
        side(Some("b"), "L", 3, 5),
        side(Some("b"), "R", 11, 6),
        side(None, "L", 4, 7),
        side(None, "R", 30, 8),
    ];
    for r in &input {
        for i in 0..2 {
            q.ingest_from(r, i, r.time, r.time);
        }
    }
    let mut out = rows(q.result(at(8)));
    out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    out
}

#[test]
fn join_kinds_follow_kusto() {
    let null = Value::Null;
    let both = |l: Option<(&str, i64)>, r: Option<(&str, i64)>| -> Vec<Value> {
        let (lk, lv) = l.map_or((null.clone(), null.clone()), |(k, v)| (s(k), n(v)));
        let (rk, rv) = r.map_or((null.clone(), null.clone()), |(k, v)| (s(k), n(v)));
        vec![lk, lv, rk, rv]
    };
    let sorted = |mut v: Vec<Vec<Value>>| {
        v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        v
    };
    let matched = vec![
        both(Some(("b", 2)), Some(("b", 10))),
        both(Some(("b", 2)), Some(("b", 11))),
        both(Some(("b", 3)), Some(("b", 10))),
        both(Some(("b", 3)), Some(("b", 11))),
    ];
    assert_eq!(joined("inner"), sorted(matched.clone()));
    // innerunique (the default): one left row per key, the first to arrive.
    assert_eq!(joined("innerunique"), sorted(matched[..2].to_vec()));
    // A null key matches nothing, not even another null.
    let mut left_outer = matched.clone();
    left_outer.push(both(Some(("a", 1)), None));
    left_outer.push(vec![null.clone(), n(4), null.clone(), null.clone()]);
    assert_eq!(joined("leftouter"), sorted(left_outer.clone()));
    let mut right_outer = matched.clone();
    right_outer.push(both(None, Some(("c", 20))));
    right_outer.push(vec![null.clone(), null.clone(), null.clone(), n(30)]);
    assert_eq!(joined("rightouter"), sorted(right_outer.clone()));
    let mut full = left_outer;
    full.extend(right_outer.into_iter().skip(4));
    assert_eq!(joined("fullouter"), sorted(full));
    assert_eq!(
        joined("leftsemi"),
        sorted(vec![vec![s("b"), n(2)], vec![s("b"), n(3)]])
    );
    assert_eq!(
        joined("leftanti"),
        sorted(vec![vec![s("a"), n(1)], vec![null.clone(), n(4)]])
    );
    assert_eq!(
        joined("rightsemi"),
        sorted(vec![vec![s("b"), n(10)], vec![s("b"), n(11)]])
    );
    assert_eq!(
        joined("rightanti"),
        sorted(vec![vec![s("c"), n(20)], vec![null, n(30)]])
    );
}

#[test]
fn a_join_side_keeps_its_rows_for_its_own_window() {
    // The right side keeps 10 minutes of rows, the left side everything.
    let kql = format!(
        "{CLUSTER} | where VmSize == 'L' | project ClusterName, L = CoreCount \
         | join kind=leftouter ({CLUSTER} | where TimeGenerated > ago(10m) and VmSize == 'R' \
         | project ClusterName, R = CoreCount) on ClusterName"
    );
    let mut q = state(&kql);
    let r = |m: i64, size: &str, cores: i64| {
        row(
            at(m),
            &[
                ("ClusterName", s("x")),
                ("VmSize", s(size)),
                ("CoreCount", n(cores)),
            ],
        )
    };
    for x in [r(0, "L", 1), r(1, "R", 10)] {
        for i in 0..2 {
            q.ingest_from(&x, i, x.time, x.time);
        }
    }
    assert_eq!(rows(q.result(at(5))), [vec![s("x"), n(1), s("x"), n(10)]]);
    q.advance(at(12), at(12));
    assert_eq!(
        rows(q.result(at(12))),
        [vec![s("x"), n(1), Value::Null, Value::Null]]
    );
    assert_eq!(q.series(), 1, "the right row left with its window");
}

#[test]
fn a_join_state_round_trips_through_a_snapshot() {
    use crate::codec::{Reader, Writer};
    let kql = format!(
        "{CLUSTER} | project ClusterName, L = CoreCount \
         | join kind=inner ({CLUSTER} | summarize R = max(CoreCount) by ClusterName) on ClusterName"
    );
    let mut q = state(&kql);
    for (m, name, cores) in [(1, "a", 1), (2, "a", 5), (3, "b", 2)] {
        let x = row(at(m), &[("ClusterName", s(name)), ("CoreCount", n(cores))]);
        for i in 0..2 {
            q.ingest_from(&x, i, x.time, x.time);
        }
    }
    let mut w = Writer::new();
    q.encode(&mut w);
    let bytes = w.into_inner();
    let mut r = Reader::new(&bytes);
    let back = QueryState::decode(plan(&kql), QueryLimits::default(), &mut r).unwrap();
    r.expect_end().unwrap();
    let want = vec![
        vec![s("a"), n(1), s("a"), n(5)],
        vec![s("a"), n(5), s("a"), n(5)],
        vec![s("b"), n(2), s("b"), n(2)],
    ];
    assert_eq!(rows(q.result(at(3))), want);
    assert_eq!(rows(back.result(at(3))), want);
}

// ---- top on rows ------------------------------------------------------------------------

/// `top N by` straight on rows keeps only the rows that can still be in the top, and
/// answers, at every step, as the same query keeping every row of its window does
/// (`sort … | take N`); in and out of order, with ties, through a snapshot.
#[test]
fn top_on_rows_prunes_what_can_no_longer_be_in_it() {
    use crate::codec::{Reader, Writer};
    let keep_all = QueryLimits {
        max_rows: 100_000,
        ..QueryLimits::default()
    };
    let window = format!("{CLUSTER} | where TimeGenerated > ago(30m) | project TimeGenerated, ClusterName, CoreCount");
    let mut top = state_with(
        &format!("{window} | top 3 by CoreCount desc, ClusterName asc"),
        keep_all.clone(),
    );
    let mut all = state_with(
        &format!("{window} | sort by CoreCount desc, ClusterName asc | take 3"),
        keep_all.clone(),
    );
    assert!(top.plan().top.is_some() && all.plan().top.is_none());
    let mut rng = crate::rng::SplitMix64(7);
    let mut clock = at(0);
    let mut most = 0;
    for i in 0..3000 {
        // Mostly in order, a tenth up to 10 minutes late; few distinct values: many ties.
        let late = if rng.below(10) == 0 {
            min(rng.below(10) as i64)
        } else {
            0
        };
        clock += TICKS_PER_MINUTE / 4;
        let r = row(
            clock - late,
            &[
                ("ClusterName", s(&format!("c{}", rng.below(5)))),
                ("CoreCount", n(rng.below(40) as i64)),
            ],
        );
        top.ingest(&r, clock, clock);
        all.ingest(&r, clock, clock);
        if i % 7 == 0 {
            top.advance(clock, clock);
            all.advance(clock, clock);
        }
        assert_eq!(rows(top.result(clock)), rows(all.result(clock)), "row {i}");
        most = most.max(top.series());
    }
    assert!(all.series() > 100, "the window holds {} rows", all.series());
    assert!(
        most < 40,
        "the top kept up to {most} rows of {}",
        all.series()
    );

    let mut w = Writer::new();
    top.encode(&mut w);
    let bytes = w.into_inner();
    let mut r = Reader::new(&bytes);
    let back = QueryState::decode(top.plan().clone(), keep_all, &mut r).unwrap();
    assert_eq!(rows(back.result(clock)), rows(all.result(clock)));
    assert!(back.series() <= top.series());
}
