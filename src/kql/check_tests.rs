//! Checker and evaluator tests: every scalar function and operator evaluated over a known row,
//! the errors (with their line and column), output column naming, and time-filter lifting.
//! Expected values are worked out by hand from Kusto's documented behaviour.

use std::sync::Arc;

use super::check::compile;
use super::eval::{eval, Context};
use super::plan::{Plan, RowOp, Stage, TableOp, Window};
use crate::schema::Schemas;
use crate::time::{parse_datetime, TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE};
use crate::value::{Type, Value};

const CLUSTER: &str = "AmlComputeClusterEvent";

/// The event-time clock of every evaluation: 2024-03-01T12:00:00Z.
fn now() -> i64 {
    dt("2024-03-01T12:00:00Z")
}

fn dt(text: &str) -> i64 {
    parse_datetime(text).expect("a valid datetime").0
}

fn plan(query: &str) -> Plan {
    compile(query, &Schemas::embedded()).unwrap_or_else(|d| panic!("{query}\n{d}"))
}

/// Every error of a query that must not compile: (line, column, message).
fn errors(query: &str) -> Vec<(usize, usize, String)> {
    let diags = match compile(query, &Schemas::embedded()) {
        Ok(_) => panic!("compiled, but should not: {query}"),
        Err(d) => d,
    };
    diags
        .items
        .iter()
        .map(|d| {
            let (line, col) = d.line_col(query);
            (line, col, d.message.clone())
        })
        .collect()
}

fn error(query: &str) -> (usize, usize, String) {
    let mut all = errors(query);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

/// A row of `table`: every column null except the ones given.
fn row_of(table: &str, set: &[(&str, Value)]) -> Vec<Value> {
    let schemas = Schemas::embedded();
    let t = &schemas.tables[schemas.table(table).expect("known table")];
    let mut row = vec![Value::Null; t.columns.len()];
    for (name, v) in set {
        row[t.column(name).unwrap_or_else(|| panic!("no column {name}"))] = v.clone();
    }
    row
}

/// The AmlComputeClusterEvent row the scalar tests read (CurrentNodeCount is null).
fn cluster_row() -> Vec<Value> {
    row_of(
        CLUSTER,
        &[
            ("ClusterName", Value::str("GpuCluster")),
            ("TargetNodeCount", Value::Long(4)),
            ("VmSize", Value::str("STANDARD_NC6")),
            (
                "TimeGenerated",
                Value::DateTime(now() - 5 * TICKS_PER_MINUTE),
            ),
            (
                "_ResourceId",
                Value::str("/subscriptions/s1/resourcegroups/rg/providers/p/workspaces/ws1"),
            ),
        ],
    )
}

/// Compiles `table | project x = <expr>` and evaluates `x` over `row` at [`now`].
fn eval_in(table: &str, row: &[Value], expr: &str) -> (Value, Type) {
    let p = plan(&format!("{table} | project x = {expr}"));
    let RowOp::Project(exprs) = &p.inputs[0].pre[0] else {
        panic!("expected a projection: {:?}", p.inputs[0].pre)
    };
    let cx = Context { now: now() };
    (eval(&exprs[0], row, &cx), p.output[0].ty)
}

/// `expr` over [`cluster_row`].
fn v(expr: &str) -> Value {
    eval_in(CLUSTER, &cluster_row(), expr).0
}

/// The checked type of `expr` over AmlComputeClusterEvent.
fn ty(expr: &str) -> Type {
    eval_in(CLUSTER, &cluster_row(), expr).1
}

fn s(text: &str) -> Value {
    Value::str(text)
}

fn json(text: &str) -> Value {
    Value::Dynamic(Arc::new(serde_json::from_str(text).expect("valid JSON")))
}

const T: Value = Value::Bool(true);
const F: Value = Value::Bool(false);
const NULL: Value = Value::Null;

// ---- scalar functions ------------------------------------------------------------------

#[test]
fn conversions_to_string_and_numbers() {
    assert_eq!(v("tostring(123)"), s("123"));
    assert_eq!(v("tostring(1.5)"), s("1.5"));
    assert_eq!(v("tostring(true)"), s("true"));
    assert_eq!(v("tostring(5m)"), s("00:05:00"));
    assert_eq!(
        v("tostring(datetime(2024-03-01T10:00:00Z))"),
        s("2024-03-01T10:00:00.0000000Z")
    );
    assert_eq!(
        v("tostring(CurrentNodeCount)"),
        s(""),
        "null → empty string"
    );
    assert_eq!(ty("tostring(1)"), Type::String);

    assert_eq!(v("toint(\"42\")"), Value::Long(42));
    assert_eq!(v("toint(\" 42 \")"), Value::Long(42));
    assert_eq!(v("toint(4.7)"), Value::Long(4), "truncates");
    assert_eq!(v("toint(-4.7)"), Value::Long(-4), "towards zero");
    assert_eq!(v("toint(true)"), Value::Long(1));
    assert_eq!(v("toint(\"abc\")"), NULL);
    assert_eq!(v("toint(CurrentNodeCount)"), NULL);
    assert_eq!(v("tolong(\"-9000000000\")"), Value::Long(-9_000_000_000));
    assert_eq!(ty("toint(\"1\")"), Type::Long);

    assert_eq!(v("todouble(\"2.5\")"), Value::Real(2.5));
    assert_eq!(v("todouble(3)"), Value::Real(3.0));
    assert_eq!(v("toreal(false)"), Value::Real(0.0));
    assert_eq!(v("todouble(\"x\")"), NULL);
    assert_eq!(ty("todouble(3)"), Type::Real);
}

#[test]
fn conversions_to_bool_datetime_timespan() {
    assert_eq!(v("tobool(\"true\")"), T);
    assert_eq!(v("tobool(\"FALSE\")"), F);
    assert_eq!(v("tobool(1)"), T);
    assert_eq!(v("tobool(0)"), F);
    assert_eq!(v("tobool(\"yes\")"), NULL);
    assert_eq!(ty("tobool(1)"), Type::Bool);

    assert_eq!(
        v("todatetime(\"2024-03-01T10:00:00Z\")"),
        Value::DateTime(dt("2024-03-01T10:00:00Z"))
    );
    assert_eq!(
        v("todatetime(TimeGenerated)"),
        Value::DateTime(now() - 5 * TICKS_PER_MINUTE)
    );
    assert_eq!(v("todatetime(\"not a time\")"), NULL);
    assert_eq!(ty("todatetime(\"x\")"), Type::DateTime);

    assert_eq!(
        v("totimespan(\"00:05:00\")"),
        Value::TimeSpan(5 * TICKS_PER_MINUTE)
    );
    assert_eq!(
        v("totimespan(\"1.02:00:00\")"),
        Value::TimeSpan(TICKS_PER_DAY + 2 * TICKS_PER_HOUR)
    );
    assert_eq!(v("totimespan(90s)"), Value::TimeSpan(90 * 10_000_000));
    assert_eq!(v("totimespan(\"soon\")"), NULL);
    assert_eq!(ty("totimespan(\"1h\")"), Type::TimeSpan);
}

#[test]
fn split_whole_indexed_and_three_argument_forms() {
    assert_eq!(v("split(\"a/b/c\", \"/\")"), json(r#"["a","b","c"]"#));
    assert_eq!(ty("split(\"a/b/c\", \"/\")"), Type::Dynamic);
    assert_eq!(v("split(\"a/b/c\", \"/\")[0]"), s("a"));
    assert_eq!(v("split(\"a/b/c\", \"/\")[-1]"), s("c"));
    assert_eq!(v("split(\"a/b/c\", \"/\")[-3]"), s("a"));
    assert_eq!(v("split(\"a/b/c\", \"/\")[3]"), NULL, "out of range");
    assert_eq!(v("split(\"a/b/c\", \"/\")[-4]"), NULL, "out of range");
    assert_eq!(v("split(\"a/b/c\", \"/\", 1)"), json(r#"["b"]"#));
    assert_eq!(
        v("split(\"a/b/c\", \"/\", 7)"),
        json("[]"),
        "out of range: empty"
    );
    assert_eq!(v("split(\"abc\", \"/\")"), json(r#"["abc"]"#));
    assert_eq!(v("split(\"a//b\", \"/\")"), json(r#"["a","","b"]"#));
    // The workspace name out of a resource ID, as the Azure ML sample queries do it.
    assert_eq!(v("tostring(split(_ResourceId, \"/\")[8])"), s("ws1"));
}

#[test]
fn string_functions() {
    assert_eq!(v("strcat(\"a\", 1, \"b\", 2.5)"), s("a1b2.5"));
    assert_eq!(
        v("strcat(ClusterName, \"-\", CurrentNodeCount)"),
        s("GpuCluster-")
    );
    assert_eq!(v("tolower(\"AbC\")"), s("abc"));
    assert_eq!(v("toupper(\"straße ä\")"), s("STRASSE Ä"));
    assert_eq!(v("toupper(VmSize)"), s("STANDARD_NC6"));
    assert_eq!(
        v("strlen(\"héllo\")"),
        Value::Long(5),
        "characters, not bytes"
    );
    assert_eq!(v("strlen(\"\")"), Value::Long(0));
    assert_eq!(ty("strlen(\"\")"), Type::Long);
}

#[test]
fn emptiness_and_null_tests() {
    assert_eq!(v("isempty(\"\")"), T);
    assert_eq!(v("isempty(ClusterName)"), F);
    assert_eq!(
        v("isempty(ClusterType)"),
        T,
        "a missing string column is empty"
    );
    assert_eq!(v("isempty(CurrentNodeCount)"), T);
    assert_eq!(v("isempty(0)"), F);
    assert_eq!(v("isnotempty(\"x\")"), T);
    assert_eq!(v("isnotempty(\"\")"), F);
    assert_eq!(v("isnull(CurrentNodeCount)"), T);
    assert_eq!(v("isnull(long(null))"), T);
    assert_eq!(v("isnull(TargetNodeCount)"), F);
    assert_eq!(v("isnull(\"\")"), F);
    assert_eq!(v("isnotnull(TargetNodeCount)"), T);
    assert_eq!(v("isnotnull(CurrentNodeCount)"), F);
    assert_eq!(ty("isnull(1)"), Type::Bool);
}

#[test]
fn conditionals_and_not() {
    assert_eq!(v("iif(TargetNodeCount > 2, \"big\", \"small\")"), s("big"));
    assert_eq!(
        v("iif(TargetNodeCount > 9, \"big\", \"small\")"),
        s("small")
    );
    assert_eq!(
        v("iif(CurrentNodeCount > 2, 1, 2)"),
        Value::Long(2),
        "null → else"
    );
    assert_eq!(v("iff(true, 1, 2)"), Value::Long(1));
    assert_eq!(v("case(false, \"a\", true, \"b\", \"c\")"), s("b"));
    assert_eq!(
        v("case(TargetNodeCount == 4, \"four\", \"other\")"),
        s("four")
    );
    assert_eq!(v("case(false, \"a\", bool(null), \"b\", \"c\")"), s("c"));
    assert_eq!(v("not(true)"), F);
    assert_eq!(v("not(TargetNodeCount > 9)"), T);
    assert_eq!(v("not(bool(null))"), NULL);
    assert_eq!(ty("case(false, 1, 2)"), Type::Long);
}

#[test]
fn clock_functions_and_bin() {
    assert_eq!(v("now()"), Value::DateTime(now()));
    assert_eq!(v("ago(1h)"), Value::DateTime(now() - TICKS_PER_HOUR));
    assert_eq!(v("ago(-1d)"), Value::DateTime(now() + TICKS_PER_DAY));
    assert_eq!(
        v("now() - 30m"),
        Value::DateTime(now() - 30 * TICKS_PER_MINUTE)
    );
    assert_eq!(
        v("bin(datetime(2024-03-01T10:07:59Z), 5m)"),
        Value::DateTime(dt("2024-03-01T10:05:00Z"))
    );
    assert_eq!(
        v("bin(datetime(2024-03-01T10:07:59Z), 1d)"),
        Value::DateTime(dt("2024-03-01T00:00:00Z"))
    );
    assert_eq!(
        v("bin(TimeGenerated, 1h)"),
        Value::DateTime(dt("2024-03-01T11:00:00Z"))
    );
    assert_eq!(v("bin(7m, 5m)"), Value::TimeSpan(5 * TICKS_PER_MINUTE));
    assert_eq!(v("bin(17, 5)"), Value::Long(15));
    assert_eq!(v("bin(-3, 5)"), Value::Long(-5), "floor, not truncation");
    assert_eq!(v("bin(7.5, 2)"), Value::Real(6.0));
    assert_eq!(v("bin(7, 2.5)"), Value::Real(5.0));
    assert_eq!(v("bin(CurrentNodeCount, 5)"), NULL);
    assert_eq!(v("floor(17, 5)"), Value::Long(15));
    assert_eq!(ty("bin(TimeGenerated, 1h)"), Type::DateTime);
}

#[test]
fn numeric_functions() {
    assert_eq!(v("abs(-3)"), Value::Long(3));
    assert_eq!(v("abs(-2.5)"), Value::Real(2.5));
    assert_eq!(v("abs(-5m)"), Value::TimeSpan(5 * TICKS_PER_MINUTE));
    assert_eq!(v("abs(CurrentNodeCount)"), NULL);
    assert_eq!(ty("abs(-3)"), Type::Long);

    assert_eq!(v("round(2.5)"), Value::Real(3.0));
    assert_eq!(v("round(-2.5)"), Value::Real(-3.0), "half away from zero");
    assert_eq!(v("round(2.567, 2)"), Value::Real(2.57));
    assert_eq!(v("round(1234.5, -2)"), Value::Real(1200.0));
    assert_eq!(ty("round(2.5)"), Type::Real);
    // A whole number stays a whole number, and its type says so.
    assert_eq!(v("round(7)"), Value::Long(7));
    assert_eq!(ty("round(7)"), Type::Long);
    assert_eq!(v("round(1250, -2)"), Value::Long(1300));
    assert_eq!(v("round(-1250, -2)"), Value::Long(-1300));

    assert_eq!(
        v("coalesce(CurrentNodeCount, TargetNodeCount, 9)"),
        Value::Long(4)
    );
    assert_eq!(v("coalesce(long(null), long(null))"), NULL);
    assert_eq!(
        v("coalesce(\"\", ClusterType, \"x\")"),
        s("x"),
        "empty strings skipped"
    );
    assert_eq!(ty("coalesce(CurrentNodeCount, 1)"), Type::Long);
}

#[test]
fn dynamic_member_and_index_access() {
    let row = row_of(
        "AzureActivity",
        &[(
            "Properties_d",
            json(r#"{"a":{"b":5},"k":"v","arr":[1,2,3],"statusCode":"Created","n":null}"#),
        )],
    );
    let d = |expr: &str| eval_in("AzureActivity", &row, expr).0;
    assert_eq!(d("Properties_d.a.b"), Value::Long(5));
    assert_eq!(d("Properties_d[\"k\"]"), s("v"));
    assert_eq!(d("Properties_d[\"a\"][\"b\"]"), Value::Long(5));
    assert_eq!(d("Properties_d.a"), json(r#"{"b":5}"#));
    assert_eq!(d("Properties_d.arr[-1]"), Value::Long(3));
    assert_eq!(d("Properties_d.arr[1]"), Value::Long(2));
    assert_eq!(d("Properties_d.arr[3]"), NULL);
    assert_eq!(d("Properties_d.missing"), NULL);
    assert_eq!(d("Properties_d.missing.deeper"), NULL);
    assert_eq!(d("Properties_d.n"), NULL);
    assert_eq!(d("Properties_d.k.x"), NULL, "member of a string");
    assert_eq!(d("Properties_d.a.b + 1"), Value::Long(6));
    assert_eq!(d("Properties_d.a.b == 5"), T);
    assert_eq!(d("Properties_d.statusCode == \"Created\""), T);
    assert_eq!(d("tostring(Properties_d.a)"), s(r#"{"b":5}"#));
    assert_eq!(
        eval_in("AzureActivity", &row, "Properties_d.a.b").1,
        Type::Dynamic
    );

    // A dynamic column of a resource-log table (the common `Identity`).
    let row = row_of(
        "AmlComputeInstanceEvent",
        &[("Identity", json(r#"{"claims":{"upn":"a@b.c"}}"#))],
    );
    let (got, _) = eval_in("AmlComputeInstanceEvent", &row, "Identity.claims.upn");
    assert_eq!(got, s("a@b.c"));
    let (got, _) = eval_in(
        "AmlComputeInstanceEvent",
        &row,
        "Identity[\"claims\"][\"upn\"]",
    );
    assert_eq!(got, s("a@b.c"));
}

// ---- operators -------------------------------------------------------------------------

#[test]
fn arithmetic_on_numbers() {
    assert_eq!(v("1 + 2"), Value::Long(3));
    assert_eq!(v("1 + 2.5"), Value::Real(3.5));
    assert_eq!(v("TargetNodeCount * 3 - 2"), Value::Long(10));
    assert_eq!(v("7 / 2"), Value::Long(3), "integer division");
    assert_eq!(v("-7 / 2"), Value::Long(-3), "truncates towards zero");
    assert_eq!(v("7 % 3"), Value::Long(1));
    assert_eq!(v("7.0 / 2"), Value::Real(3.5));
    assert_eq!(v("7 / 0"), NULL, "division by zero");
    assert_eq!(v("7 % 0"), NULL);
    assert_eq!(v("TargetNodeCount + CurrentNodeCount"), NULL);
    assert_eq!(v("-TargetNodeCount"), Value::Long(-4));
    assert_eq!(ty("7 / 2"), Type::Long);
    assert_eq!(ty("7 / 2.0"), Type::Real);
}

#[test]
fn arithmetic_on_datetimes_and_timespans() {
    let ten = dt("2024-03-01T10:00:00Z");
    assert_eq!(
        v("datetime(2024-03-01T10:00:00Z) + 1h"),
        Value::DateTime(ten + TICKS_PER_HOUR)
    );
    assert_eq!(
        v("1h + datetime(2024-03-01T10:00:00Z)"),
        Value::DateTime(ten + TICKS_PER_HOUR)
    );
    assert_eq!(
        v("datetime(2024-03-01T10:00:00Z) - 30m"),
        Value::DateTime(ten - 30 * TICKS_PER_MINUTE)
    );
    assert_eq!(
        v("now() - datetime(2024-03-01T10:00:00Z)"),
        Value::TimeSpan(2 * TICKS_PER_HOUR)
    );
    assert_eq!(
        v("now() - TimeGenerated"),
        Value::TimeSpan(5 * TICKS_PER_MINUTE)
    );
    assert_eq!(v("1h + 30m"), Value::TimeSpan(90 * TICKS_PER_MINUTE));
    assert_eq!(v("1h * 2"), Value::TimeSpan(2 * TICKS_PER_HOUR));
    assert_eq!(v("1h / 2"), Value::TimeSpan(30 * TICKS_PER_MINUTE));
    assert_eq!(v("1h / 30m"), Value::Real(2.0));
    assert_eq!(v("1h / 0"), NULL);
    assert_eq!(v("1h / 0s"), NULL);
    assert_eq!(ty("now() - TimeGenerated"), Type::TimeSpan);
    assert_eq!(ty("TimeGenerated + 1h"), Type::DateTime);
}

#[test]
fn comparisons() {
    assert_eq!(v("1 < 2"), T);
    assert_eq!(v("2 <= 2"), T);
    assert_eq!(v("2 > 2"), F);
    assert_eq!(v("2 >= 2"), T);
    assert_eq!(v("1 == 1.0"), T);
    assert_eq!(v("4 != TargetNodeCount"), F);
    assert_eq!(v("\"a\" < \"b\""), T);
    assert_eq!(v("\"a\" == \"A\""), F, "== is case-sensitive");
    assert_eq!(v("TimeGenerated < now()"), T);
    assert_eq!(v("5m > 1m"), T);
}

#[test]
fn comparisons_with_null() {
    // Kusto: null == value is false, null != value is true, null == null is null; ordering
    // a null gives null (and `where` drops the row).
    assert_eq!(v("CurrentNodeCount == 1"), F);
    assert_eq!(v("CurrentNodeCount != 1"), T);
    assert_eq!(v("1 == CurrentNodeCount"), F);
    assert_eq!(v("CurrentNodeCount == long(null)"), NULL);
    assert_eq!(v("CurrentNodeCount != long(null)"), NULL);
    assert_eq!(v("CurrentNodeCount < 1"), NULL);
    assert_eq!(v("CurrentNodeCount >= 1"), NULL);
    // Strings have no null in Kusto: a missing string column is the empty string.
    assert_eq!(v("ClusterType == \"\""), T);
    assert_eq!(v("ClusterType != \"\""), F);
    assert_eq!(v("ClusterType != \"gpu\""), T);
    assert_eq!(v("ClusterType == \"gpu\""), F);
}

#[test]
fn case_insensitive_equality() {
    assert_eq!(v("ClusterName =~ \"gpucluster\""), T);
    assert_eq!(v("ClusterName =~ \"gpu\""), F);
    assert_eq!(v("ClusterName !~ \"GPUCLUSTER\""), F);
    assert_eq!(v("ClusterName !~ \"cpu\""), T);
    assert_eq!(v("\"Ä\" =~ \"ä\""), T);
    assert_eq!(v("CurrentNodeCount =~ \"1\""), NULL);
}

#[test]
fn in_and_not_in() {
    assert_eq!(v("TargetNodeCount in (1, 4)"), T);
    assert_eq!(v("TargetNodeCount in (1, 2)"), F);
    assert_eq!(v("TargetNodeCount !in (1, 2)"), T);
    assert_eq!(v("TargetNodeCount in (\"4\")"), T, "numeric string literal");
    assert_eq!(v("ClusterName in (\"gpucluster\", \"x\")"), F);
    assert_eq!(v("ClusterName in~ (\"gpucluster\", \"x\")"), T);
    assert_eq!(v("ClusterName !in~ (\"GPUCLUSTER\")"), F);
    assert_eq!(v("ClusterName !in (\"gpucluster\")"), T);
    assert_eq!(v("CurrentNodeCount in (1)"), F);
    assert_eq!(v("CurrentNodeCount !in (1)"), T);
}

#[test]
fn between_and_not_between() {
    assert_eq!(v("TargetNodeCount between (1 .. 4)"), T, "inclusive");
    assert_eq!(v("TargetNodeCount between (5 .. 9)"), F);
    assert_eq!(v("TargetNodeCount !between (5 .. 9)"), T);
    assert_eq!(v("TargetNodeCount !between (4 .. 9)"), F);
    assert_eq!(v("2.5 between (2 .. 3)"), T);
    assert_eq!(v("TimeGenerated between (ago(10m) .. now())"), T);
    assert_eq!(v("TimeGenerated between (ago(2m) .. now())"), F);
    assert_eq!(v("CurrentNodeCount between (1 .. 4)"), NULL);
}

#[test]
fn string_operators() {
    let text = row_of(
        CLUSTER,
        &[("ClusterErrorCodes", s("Job failed: Disk full"))],
    );
    let m = |expr: &str| eval_in(CLUSTER, &text, expr).0;
    assert_eq!(m("ClusterErrorCodes has \"FAILED\""), T);
    assert_eq!(m("ClusterErrorCodes has \"fail\""), F, "whole terms only");
    assert_eq!(m("ClusterErrorCodes !has \"fail\""), T);
    assert_eq!(m("ClusterErrorCodes has_cs \"failed\""), T);
    assert_eq!(m("ClusterErrorCodes has_cs \"FAILED\""), F);
    assert_eq!(m("ClusterErrorCodes !has_cs \"FAILED\""), T);
    assert_eq!(m("ClusterErrorCodes contains \"ILED: d\""), T);
    assert_eq!(m("ClusterErrorCodes contains_cs \"disk\""), F);
    assert_eq!(m("ClusterErrorCodes !contains \"cpu\""), T);
    assert_eq!(m("ClusterErrorCodes !contains_cs \"Disk\""), F);
    assert_eq!(m("ClusterErrorCodes startswith \"job\""), T);
    assert_eq!(m("ClusterErrorCodes startswith_cs \"job\""), F);
    assert_eq!(m("ClusterErrorCodes !startswith \"disk\""), T);
    assert_eq!(m("ClusterErrorCodes endswith \"FULL\""), T);
    assert_eq!(m("ClusterErrorCodes endswith_cs \"FULL\""), F);
    assert_eq!(m("ClusterErrorCodes !endswith_cs \"full\""), F);
    // A null (missing) string matches nothing; the negated forms hold.
    assert_eq!(m("ClusterName contains \"x\""), F);
    assert_eq!(m("ClusterName !contains \"x\""), T);
}

#[test]
fn and_or_three_valued() {
    let b = "bool(null)";
    assert_eq!(v(&format!("{b} and false")), F);
    assert_eq!(v(&format!("false and {b}")), F);
    assert_eq!(v(&format!("{b} and true")), NULL);
    assert_eq!(v(&format!("true and {b}")), NULL);
    assert_eq!(v(&format!("{b} or true")), T);
    assert_eq!(v(&format!("true or {b}")), T);
    assert_eq!(v(&format!("{b} or false")), NULL);
    assert_eq!(v(&format!("false or {b}")), NULL);
    assert_eq!(v("true and true"), T);
    assert_eq!(v("false or false"), F);
    assert_eq!(v("CurrentNodeCount > 1 or TargetNodeCount == 4"), T);
}

#[test]
fn numeric_string_literal_compares_with_an_int_column() {
    let q = "AmlOnlineEndpointTrafficLog | where ResponseCode != \"200\"";
    let p = plan(q);
    let RowOp::Filter(pred) = &p.inputs[0].pre[0] else {
        panic!("{:?}", p.inputs[0].pre)
    };
    let cx = Context { now: now() };
    let at = |code: Value| {
        eval(
            pred,
            &row_of("AmlOnlineEndpointTrafficLog", &[("ResponseCode", code)]),
            &cx,
        )
    };
    assert_eq!(at(Value::Long(500)), T);
    assert_eq!(at(Value::Long(200)), F);
    assert!(
        plan("AmlOnlineEndpointTrafficLog | where \"404\" == ResponseCode").inputs[0]
            .pre
            .len()
            == 1
    );
    assert!(
        plan("AmlOnlineEndpointTrafficLog | where ResponseCode in (\"200\", \"201\")").inputs[0]
            .pre
            .len()
            == 1
    );

    let q = "AmlComputeClusterEvent | where ClusterName > 5";
    assert_eq!(
        error(q),
        (1, 32, "cannot compare string with long".to_string())
    );
}

// ---- errors ----------------------------------------------------------------------------

#[test]
fn unknown_table_with_case_hint() {
    assert_eq!(
        error("amlcomputeclusterevent\n| count"),
        (
            1,
            1,
            "unknown table 'amlcomputeclusterevent' (did you mean 'AmlComputeClusterEvent'? \
             table names are case-sensitive)"
                .to_string()
        )
    );
    let (line, col, msg) = error("NoSuchTable | count");
    assert_eq!((line, col), (1, 1));
    assert!(
        msg.starts_with("unknown table 'NoSuchTable' (add a definition"),
        "{msg}"
    );
}

#[test]
fn unknown_column_with_case_hint() {
    assert_eq!(
        error("AmlComputeClusterEvent\n| where clustername == \"x\""),
        (
            2,
            9,
            "unknown column 'clustername' (did you mean 'ClusterName'? column names are \
             case-sensitive)"
                .to_string()
        )
    );
    assert_eq!(
        error("AmlComputeClusterEvent\n| project Nope"),
        (2, 11, "unknown column 'Nope'".to_string())
    );
}

#[test]
fn type_errors_point_at_the_expression() {
    assert_eq!(
        error("AmlComputeClusterEvent\n| extend x = ClusterName + 1"),
        (2, 14, "cannot apply '+' to string and long".to_string())
    );
    assert_eq!(
        error("AmlComputeClusterEvent\n| summarize avg(ClusterName)"),
        (
            2,
            17,
            "avg() needs a number or timespan, got string".to_string()
        )
    );
    assert_eq!(
        error("AmlComputeClusterEvent\n| where TargetNodeCount"),
        (
            2,
            9,
            "a 'where' predicate must be a bool, got long".to_string()
        )
    );
    assert_eq!(
        error("AmlComputeClusterEvent | where TimeGenerated > 5m"),
        (1, 32, "cannot compare datetime with timespan".to_string())
    );
}

#[test]
fn misplaced_unknown_and_misapplied_functions() {
    assert_eq!(
        error("AmlComputeClusterEvent\n| extend c = count()"),
        (
            2,
            14,
            "aggregation function 'count' is only allowed in 'summarize'".to_string()
        )
    );
    assert_eq!(
        error("AmlComputeClusterEvent | extend x = foo(1)"),
        (1, 37, "unknown function 'foo'".to_string())
    );
    assert_eq!(
        error("AmlComputeClusterEvent | extend x = strlen()"),
        (1, 37, "strlen() takes 1 argument(s), got 0".to_string())
    );
    assert_eq!(
        error("AmlComputeClusterEvent | extend x = split(\"a\")"),
        (1, 37, "split() takes 2 to 3 argument(s), got 1".to_string())
    );
    assert_eq!(
        error("AmlComputeClusterEvent | summarize count(ClusterName)"),
        (1, 36, "count() takes 0 argument(s), got 1".to_string())
    );
    // A second summarize runs on the first one's result.
    let p = plan("AmlComputeClusterEvent\n| summarize n = count() by ClusterName\n| summarize clusters = count(), events = sum(n)");
    assert!(matches!(&p.stage, Stage::Summarize(_)));
    assert!(matches!(&p.post[..], [TableOp::Summarize(s)] if s.bin.is_none()));
    let names: Vec<&str> = p.output.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["clusters", "events"]);
}

#[test]
fn every_error_of_a_query_is_reported_together() {
    let q = "AmlComputeClusterEvent\n\
             | where clustername == \"x\" and TargetNodeCount + \"a\" > 1\n\
             | extend y = nosuch(1), z = VmSize * 2\n\
             | summarize avg(ClusterName), count() by Missing";
    let got = errors(q);
    let places: Vec<(usize, usize)> = got.iter().map(|(l, c, _)| (*l, *c)).collect();
    assert_eq!(
        places,
        vec![(2, 9), (2, 32), (3, 14), (3, 29), (4, 42), (4, 17)],
        "{got:#?}"
    );
    assert!(got[0].2.starts_with("unknown column 'clustername'"));
    assert_eq!(got[1].2, "cannot apply '+' to long and string");
    assert_eq!(got[2].2, "unknown function 'nosuch'");
    assert_eq!(got[3].2, "cannot apply '*' to string and long");
    assert_eq!(got[4].2, "unknown column 'Missing'");
    assert_eq!(got[5].2, "avg() needs a number or timespan, got string");
}

// ---- column naming ---------------------------------------------------------------------

fn names(query: &str) -> Vec<String> {
    plan(query)
        .column_names()
        .iter()
        .map(|n| n.to_string())
        .collect()
}

#[test]
fn aggregate_columns_are_named_like_kusto() {
    assert_eq!(
        names(
            "AmlComputeClusterEvent | summarize count(), sum(TargetNodeCount), \
             avg(TargetNodeCount), dcount(ClusterName), percentile(TargetNodeCount, 95), \
             min(CoreCount), max(CoreCount), countif(CoreCount > 1), \
             sumif(CoreCount, true), avgif(CoreCount, true) by VmSize"
        ),
        [
            "VmSize",
            "count_",
            "sum_TargetNodeCount",
            "avg_TargetNodeCount",
            "dcount_ClusterName",
            "percentile_TargetNodeCount_95",
            "min_CoreCount",
            "max_CoreCount",
            "countif_",
            "sumif_CoreCount",
            "avgif_CoreCount",
        ]
    );
    assert_eq!(
        names("AmlComputeClusterEvent | summarize percentile(CoreCount, 99.9)"),
        ["percentile_CoreCount_99_9"]
    );
    assert_eq!(
        names("AmlComputeClusterEvent | summarize n = count(), total = sum(CoreCount)"),
        ["n", "total"]
    );
}

#[test]
fn by_columns_come_first_and_bins_keep_the_column_name() {
    assert_eq!(
        names("AmlComputeClusterEvent | summarize count() by ClusterName, VmSize"),
        ["ClusterName", "VmSize", "count_"]
    );
    assert_eq!(
        names(
            "AmlComputeClusterEvent | summarize max(CoreCount) by bin(TimeGenerated, 1h), \
             ClusterName"
        ),
        ["TimeGenerated", "ClusterName", "max_CoreCount"]
    );
    assert_eq!(
        names("AmlComputeClusterEvent | summarize count() by Workspace = tostring(split(_ResourceId, \"/\")[8])"),
        ["Workspace", "count_"]
    );
    // As Kusto.Language names them (tests/kusto_language.rs checks many more).
    assert_eq!(
        names("AmlComputeClusterEvent | summarize count() by tolower(ClusterName)"),
        ["Column1", "count_"]
    );
    assert_eq!(
        names("AmlComputeClusterEvent | summarize count() by strlen(ClusterName)"),
        ["strlen_ClusterName", "count_"]
    );
    assert_eq!(
        names("AmlComputeClusterEvent | summarize round(sum(CoreCount), 1), todouble(count()), take_any(VmSize)"),
        ["sum_CoreCount", "count_", "VmSize"]
    );
    assert_eq!(
        names("AmlComputeClusterEvent | project split(_ResourceId, '/')[8], split(_ResourceId, '/')[-1], round(CoreCount)"),
        ["_ResourceId_8", "_ResourceId_", "CoreCount"]
    );
    assert_eq!(names("AmlComputeClusterEvent | count"), ["Count"]);
}

#[test]
fn arg_max_star_expands_to_the_other_columns() {
    let p = plan("AmlComputeClusterEvent | summarize arg_max(TimeGenerated, *) by ClusterName");
    let schemas = Schemas::embedded();
    let table = &schemas.tables[schemas.table(CLUSTER).unwrap()];
    let mut want = vec!["ClusterName".to_string(), "TimeGenerated".to_string()];
    want.extend(
        table
            .columns
            .iter()
            .map(|c| c.name.to_string())
            .filter(|n| n != "ClusterName" && n != "TimeGenerated"),
    );
    let got: Vec<String> = p.column_names().iter().map(|n| n.to_string()).collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), table.columns.len(), "every column exactly once");

    assert_eq!(
        names("AmlComputeClusterEvent | summarize arg_min(CoreCount, VmSize, ClusterName)"),
        ["CoreCount", "VmSize", "ClusterName"]
    );
}

#[test]
fn unnamed_and_duplicate_columns() {
    assert_eq!(
        names("AmlComputeClusterEvent | project ClusterName, strcat(VmSize, 'x'), CoreCount + 1"),
        ["ClusterName", "Column1", "Column2"]
    );
    assert_eq!(
        names("AmlComputeClusterEvent | project tolower(VmSize), Identity.x"),
        ["Column1", "Identity_x"]
    );
    assert_eq!(
        names(
            "AmlComputeClusterEvent | summarize count(), count(), sum(CoreCount), sum(CoreCount)"
        ),
        ["count_", "count_1", "sum_CoreCount", "sum_CoreCount1"]
    );
    assert_eq!(
        names("AmlComputeClusterEvent | summarize count() by count_ = ClusterName"),
        ["count_", "count_1"]
    );
    let p = plan("AmlComputeClusterEvent | extend strlen(VmSize) | project strlen_VmSize");
    assert_eq!(p.output[0].ty, Type::Long);
}

// ---- time-filter lifting ---------------------------------------------------------------

fn window(query: &str) -> (Option<Window>, usize) {
    let p = plan(query);
    (p.window, p.inputs[0].pre.len())
}

const HOUR_GT: Option<Window> = Some(Window {
    length: TICKS_PER_HOUR,
    inclusive: false,
});
const HOUR_GE: Option<Window> = Some(Window {
    length: TICKS_PER_HOUR,
    inclusive: true,
});

#[test]
fn time_filters_become_the_window() {
    let q = |w: &str| format!("AmlComputeClusterEvent | where {w} | summarize count()");
    assert_eq!(window(&q("TimeGenerated > ago(1h)")), (HOUR_GT, 0));
    assert_eq!(window(&q("TimeGenerated >= ago(1h)")), (HOUR_GE, 0));
    assert_eq!(window(&q("ago(1h) < TimeGenerated")), (HOUR_GT, 0));
    assert_eq!(window(&q("ago(1h) <= TimeGenerated")), (HOUR_GE, 0));
    assert_eq!(
        window(&q("TimeGenerated between (ago(1h) .. now())")),
        (HOUR_GE, 0)
    );
    // Two filters: the narrower wins.
    assert_eq!(
        window("AmlComputeClusterEvent | where TimeGenerated > ago(2h) | where TimeGenerated > ago(1h)"),
        (HOUR_GT, 0)
    );
}

#[test]
fn the_rest_of_a_conjunction_stays_a_filter() {
    let p =
        plan("AmlComputeClusterEvent | where TimeGenerated > ago(1h) and ClusterName == \"gpu\"");
    assert_eq!(p.window, HOUR_GT);
    assert_eq!(p.inputs[0].pre.len(), 1);
    let RowOp::Filter(pred) = &p.inputs[0].pre[0] else {
        panic!("{:?}", p.inputs[0].pre)
    };
    let cx = Context { now: now() };
    let gpu = row_of(CLUSTER, &[("ClusterName", s("gpu"))]);
    let cpu = row_of(CLUSTER, &[("ClusterName", s("cpu"))]);
    assert_eq!(eval(pred, &gpu, &cx), T);
    assert_eq!(eval(pred, &cpu, &cx), F);
}

#[test]
fn time_filters_that_are_not_windows_stay_predicates() {
    let q = |w: &str| format!("AmlComputeClusterEvent | {w}");
    // A rewritten TimeGenerated is no longer the event time.
    assert_eq!(
        window(&q(
            "extend TimeGenerated = TimeGenerated - 1h | where TimeGenerated > ago(1h)"
        )),
        (None, 2)
    );
    // A disjunction is not a window.
    assert_eq!(
        window(&q("where TimeGenerated > ago(1h) or ClusterName == \"x\"")),
        (None, 1)
    );
    // Older than an hour: the opposite of a window, in either spelling.
    assert_eq!(window(&q("where TimeGenerated < ago(1h)")), (None, 1));
    assert_eq!(window(&q("where ago(1h) > TimeGenerated")), (None, 1));
    assert_eq!(window(&q("where ago(1h) >= TimeGenerated")), (None, 1));
    assert_eq!(
        window(&q("where TimeGenerated !between (ago(1h) .. now())")),
        (None, 1)
    );
    // After summarize, TimeGenerated is a result column, filtered when read.
    let p = plan(
        "AmlComputeClusterEvent | summarize count() by bin(TimeGenerated, 5m) \
         | where TimeGenerated > ago(1h)",
    );
    assert_eq!(p.window, None);
    assert!(matches!(p.post[..], [TableOp::Filter(_)]), "{:?}", p.post);
}

#[test]
fn older_than_filter_keeps_only_old_rows() {
    // `ago(1h) > TimeGenerated` is `TimeGenerated < ago(1h)`.
    let p = plan("AmlComputeClusterEvent | where ago(1h) > TimeGenerated");
    let RowOp::Filter(pred) = &p.inputs[0].pre[0] else {
        panic!("{:?}", p.inputs[0].pre)
    };
    let cx = Context { now: now() };
    let at = |t: i64| {
        eval(
            pred,
            &row_of(CLUSTER, &[("TimeGenerated", Value::DateTime(t))]),
            &cx,
        )
    };
    assert_eq!(at(now() - 2 * TICKS_PER_HOUR), T);
    assert_eq!(at(now() - 5 * TICKS_PER_MINUTE), F);
}

#[test]
fn bin_of_the_event_time_is_a_tumbling_key() {
    let p = plan(
        "AmlComputeClusterEvent | where TimeGenerated > ago(1h) \
         | summarize count() by ClusterName, bin(TimeGenerated, 5m)",
    );
    let Stage::Summarize(s) = &p.stage else {
        panic!("{:?}", p.stage)
    };
    assert_eq!(s.bin, Some((1, 5 * TICKS_PER_MINUTE)));
    assert_eq!(p.window, HOUR_GT);
    assert!(p.output[1].is_key && p.output[0].is_key && !p.output[2].is_key);

    let p = plan("AmlComputeClusterEvent | summarize count() by bin(CoreCount, 5)");
    let Stage::Summarize(s) = &p.stage else {
        panic!("{:?}", p.stage)
    };
    assert_eq!(s.bin, None, "a numeric bin is an ordinary key");
}

#[test]
fn now_minus_a_timespan_is_a_window_too() {
    let schemas = Schemas::embedded();
    let plan = compile(
        "AmlComputeJobEvent | where TimeGenerated > now() - 1h | count",
        &schemas,
    )
    .unwrap();
    assert_eq!(
        plan.window.map(|w| (w.length, w.inclusive)),
        Some((crate::time::TICKS_PER_HOUR, false))
    );
    assert!(
        plan.inputs[0].pre.is_empty(),
        "lifted, not a per-row predicate"
    );
}

#[test]
fn mixed_numeric_branches_take_the_checked_type() {
    let schemas = Schemas::embedded();
    let plan = compile(
        "AmlComputeJobEvent | extend x = iif(true, 1, 2.5), y = case(false, 1.5, 7)",
        &schemas,
    )
    .unwrap();
    let crate::kql::plan::RowOp::Extend(items) = &plan.inputs[0].pre[0] else {
        panic!("extend")
    };
    let cx = crate::kql::eval::Context { now: 0 };
    assert_eq!(
        crate::kql::eval::eval(&items[0].1, &[], &cx),
        crate::value::Value::Real(1.0)
    );
    assert_eq!(
        crate::kql::eval::eval(&items[1].1, &[], &cx),
        crate::value::Value::Real(7.0)
    );
}

#[test]
fn sort_top_rename_and_render_compile_to_result_operators() {
    let p = plan(&format!(
        "{CLUSTER} | summarize n = count() by ClusterName | top 2 by n | project-rename Cluster = ClusterName | render piechart"
    ));
    assert!(matches!(
        &p.post[..],
        [TableOp::Sort(keys), TableOp::Take(2)] if keys.len() == 1 && keys[0].desc && !keys[0].nulls_first
    ));
    let names: Vec<&str> = p.output.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["Cluster", "n"]);
    assert_eq!(p.render.as_deref(), Some("piechart"));
    // On raw rows a sort orders what the query retains; what follows works on the result.
    let p = plan(&format!(
        "{CLUSTER} | where TimeGenerated > ago(1h) | sort by TimeGenerated asc | where ClusterName == 'a' | take 3"
    ));
    assert!(matches!(&p.stage, Stage::Rows { limit: None }));
    assert!(matches!(
        &p.post[..],
        [TableOp::Sort(k), TableOp::Filter(_), TableOp::Take(3)] if !k[0].desc && k[0].nulls_first
    ));
    assert!(
        p.window.is_some(),
        "the time filter before the sort is still the window"
    );
}

#[test]
fn sort_top_rename_and_render_mistakes_are_named() {
    assert_eq!(
        error(&format!("{CLUSTER} | render spaghettichart")),
        (1, 33, "unknown chart 'spaghettichart' (known: anomalychart, areachart, barchart, card, columnchart, graph, ladderchart, linechart, piechart, pivotchart, plotly, scatterchart, stackedareachart, table, timechart, timepivot, treemap)".to_string())
    );
    assert_eq!(
        error(&format!(
            "{CLUSTER} | project-rename A = ClusterName, A = VmSize"
        ))
        .2,
        "'project-rename' makes two columns named 'A'"
    );
    assert_eq!(
        error(&format!("{CLUSTER} | project-rename A = ClusterNam")).2,
        "unknown column 'ClusterNam' (did you mean 'ClusterName'?)"
    );
    assert_eq!(
        error(&format!("{CLUSTER} | top -1 by ClusterName")).2,
        "'top' needs a non-negative whole number"
    );
    assert_eq!(
        error(&format!("{CLUSTER} | sort by Nope")).2,
        "unknown column 'Nope'"
    );
    assert_eq!(
        error(&format!("{CLUSTER} | top 5 by TimeGenerated | summarize count()")).2,
        "'summarize' after 'sort' or 'top' is not supported: sort its result instead (move the sort after it)"
    );
}

#[test]
fn typos_get_the_nearest_name_as_a_suggestion() {
    let msg = |q: &str| error(q).2;
    assert_eq!(
        msg("AmlComputeClustrEvent | take 1"),
        "unknown table 'AmlComputeClustrEvent' (did you mean 'AmlComputeClusterEvent'?)"
    );
    assert_eq!(
        msg(&format!("{CLUSTER} | where ClustreName == 'a'")),
        "unknown column 'ClustreName' (did you mean 'ClusterName'?)"
    );
    assert_eq!(
        msg(&format!("{CLUSTER} | extend s = tostrin(VmSize)")),
        "unknown function 'tostrin' (did you mean 'tostring'?)"
    );
    assert_eq!(
        msg(&format!("{CLUSTER} | summarize dcont(ClusterName)")),
        "unknown aggregation function 'dcont' (did you mean 'dcount'?)"
    );
    // Too far from anything: no guess.
    assert_eq!(
        msg(&format!("{CLUSTER} | where Zebra == 1")),
        "unknown column 'Zebra'"
    );
    assert_eq!(
        msg("Nothing | take 1"),
        "unknown table 'Nothing' (add a definition under schemas/tables/ to query it)"
    );
}

#[test]
fn let_statements_are_inlined_and_a_let_window_is_a_window() {
    let with_lets = plan(&format!(
        "let window = 1d;\nlet since = ago(window); // each sees those before it\nlet top_n = 2;\n\
         {CLUSTER} | where TimeGenerated > since | summarize n = count() by ClusterName | top top_n by n"
    ));
    let plain = plan(&format!(
        "{CLUSTER} | where TimeGenerated > ago(1d) | summarize n = count() by ClusterName | top 2 by n"
    ));
    assert_eq!(with_lets.window, plain.window);
    assert_eq!(with_lets.window.map(|w| w.length), Some(TICKS_PER_DAY));
    assert!(matches!(
        &with_lets.post[..],
        [TableOp::Sort(_), TableOp::Take(2)]
    ));
    // A later let of the same name wins.
    let p = plan(&format!("let n = 1; let n = 5; {CLUSTER} | take n"));
    assert!(matches!(&p.stage, Stage::Rows { limit: Some(5) }));
}

#[test]
fn let_names_that_clash_or_explode_are_refused() {
    assert_eq!(
        error(&format!("let ClusterName = 'a'; {CLUSTER} | take 1")),
        (
            1,
            5,
            "'let' name 'ClusterName' is also a column of AmlComputeClusterEvent: rename it"
                .to_string()
        )
    );
    assert_eq!(
        error(&format!("let x = 1; {CLUSTER} | extend x = 2")).2,
        "'x' names a 'let' and a column: rename one of them"
    );
    // Each let doubles the one before: a9 has 2^10 - 1 nodes, past the 1,000 of a query.
    let mut q = String::from("let a0 = 1;");
    for i in 1..=12 {
        q.push_str(&format!(" let a{i} = a{} + a{};", i - 1, i - 1));
    }
    q.push_str(&format!(" {CLUSTER} | where a12 > 0"));
    assert_eq!(error(&q).2, "'let' a9 expands to too large an expression");
}

#[test]
fn distinct_on_rows_is_a_summarize_by_and_on_a_result_keeps_the_first() {
    let p = plan(&format!("{CLUSTER} | distinct ClusterName, VmSize"));
    match &p.stage {
        Stage::Summarize(s) => assert_eq!((s.keys.len(), s.aggregates.len()), (2, 0)),
        other => panic!("{other:?}"),
    }
    let names: Vec<&str> = p.output.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["ClusterName", "VmSize"]);
    let p = plan(&format!(
        "{CLUSTER} | summarize n = count() by ClusterName, VmSize | distinct VmSize"
    ));
    assert!(matches!(
        &p.post[..],
        [TableOp::Project(_), TableOp::Distinct]
    ));
    assert_eq!(p.output.len(), 1);
    assert_eq!(
        error(&format!("{CLUSTER} | distinct VmSiz")).2,
        "unknown column 'VmSiz' (did you mean 'VmSize'?)"
    );
}

#[test]
fn aggregates_inside_expressions_are_computed_on_the_result() {
    let p = plan(&format!(
        "{CLUSTER} | summarize n = count(), share = 100.0 * countif(VmPriority == 'LowPriority') / count(), max(TargetNodeCount) by ClusterName"
    ));
    let names: Vec<(&str, Type)> = p.output.iter().map(|c| (&*c.name, c.ty)).collect();
    assert_eq!(
        names,
        [
            ("ClusterName", Type::String),
            ("n", Type::Long),
            ("share", Type::Real),
            ("max_TargetNodeCount", Type::Long)
        ]
    );
    match &p.stage {
        Stage::Summarize(s) => assert_eq!(s.aggregates.len(), 4, "two hidden for share"),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&p.post[..], [TableOp::Extend(e), TableOp::Project(cols)] if e.len() == 1 && cols.len() == 4)
    );
    let msg = error(&format!("{CLUSTER} | summarize x = 1 + 2")).2;
    assert!(
        msg.starts_with("expected an aggregation function (count, countif, sum,")
            && msg.ends_with("), or an expression of them"),
        "{msg}"
    );
    assert_eq!(
        error(&format!(
            "{CLUSTER} | summarize x = 1 + arg_max(TargetNodeCount, ClusterName)"
        ))
        .2,
        "arg_max() and arg_min() cannot be part of an expression"
    );
}

#[test]
fn json_day_and_string_functions_of_the_gallery() {
    // parse_json: JSON text parsed; not JSON kept as a string; a dynamic as it is.
    assert_eq!(v(r#"parse_json('{"a": [1, 2]}').a[1]"#), Value::Long(2));
    assert_eq!(v("todynamic('not json')"), json(r#""not json""#));
    assert_eq!(v("parse_json(dynamic({\"k\": 1}))"), json(r#"{"k": 1}"#));
    assert_eq!(v("parse_json(CurrentNodeCount)"), Value::Null);
    assert_eq!(ty("parsejson('1')"), Type::Dynamic);
    // todecimal: a real (hubwatch has no decimal type).
    assert_eq!(v("todecimal('2.5')"), Value::Real(2.5));
    // startofday: midnight UTC of the day, before the epoch too.
    assert_eq!(
        v("startofday(TimeGenerated)"),
        Value::DateTime(dt("2024-03-01T00:00:00Z"))
    );
    assert_eq!(
        v("startofday(datetime(1969-12-31T23:59:59Z))"),
        Value::DateTime(dt("1969-12-31T00:00:00Z"))
    );
    assert_eq!(v("startofday(todatetime(CurrentNodeCount))"), Value::Null);
    // replace_string: every occurrence; an empty lookup changes nothing.
    assert_eq!(v("replace_string(VmSize, '_', '-')"), s("STANDARD-NC6"));
    assert_eq!(v("replace_string('aaa', 'aa', 'b')"), s("ba"));
    assert_eq!(v("replace_string('abc', '', 'x')"), s("abc"));
    // strcat_array: elements joined, strings unquoted.
    assert_eq!(
        v(r#"strcat_array(dynamic(["a", 1, null, "b"]), "/")"#),
        s("a/1//b")
    );
    assert_eq!(
        v("strcat_array(split(_ResourceId, '/'), '.')"),
        s(".subscriptions.s1.resourcegroups.rg.providers.p.workspaces.ws1")
    );
    assert_eq!(
        error(&format!("{CLUSTER} | extend d = startofday(ClusterName)")).2,
        "startofday() needs a datetime here, got string"
    );
}

#[test]
fn has_any_and_has_all_match_whole_terms_ignoring_case() {
    assert_eq!(v("VmSize has_any ('nc12', 'NC6')"), T);
    assert_eq!(v("VmSize has_any ('NC', 'gpu')"), Value::Bool(false));
    assert_eq!(v("VmSize has_all ('standard', 'nc6')"), T);
    assert_eq!(v("VmSize has_all ('standard', 'nc12')"), Value::Bool(false));
    assert_eq!(ty("ClusterName has_any ('a')"), Type::Bool);
}

#[test]
fn extract_and_matches_regex_use_re2_patterns() {
    assert_eq!(v(r#"extract("NC([0-9]+)", 1, VmSize)"#), s("6"));
    assert_eq!(v(r#"extract("NC[0-9]+", 0, VmSize)"#), s("NC6"));
    assert_eq!(v(r#"extract("ND([0-9]+)", 1, VmSize)"#), Value::Null);
    assert_eq!(
        v(r#"extract("workspaces/([^/]+)", 1, _ResourceId)"#),
        s("ws1")
    );
    assert_eq!(v(r#"VmSize matches regex "^STANDARD_N[CD][0-9]+$""#), T);
    assert_eq!(v(r#"VmSize matches regex "(?i)^standard_nc6$""#), T);
    assert_eq!(v(r#"ClusterName matches regex "^cpu""#), Value::Bool(false));
    assert_eq!(ty(r#"extract("a", 0, VmSize)"#), Type::String);
    assert_eq!(
        error(&format!(
            r#"{CLUSTER} | where VmSize matches regex ClusterName"#
        ))
        .2,
        "'matches regex' needs its pattern as a string literal"
    );
    assert!(error(&format!(
        r#"{CLUSTER} | where VmSize matches regex "(unclosed""#
    ))
    .2
    .starts_with("invalid regular expression: "));
    assert_eq!(
        error(&format!(
            r#"{CLUSTER} | extend x = extract("(a)", 2, VmSize)"#
        ))
        .2,
        "extract()'s group must be a whole number from 0 to 1"
    );
}

#[test]
fn project_reorder_puts_columns_first_and_as_names_nothing() {
    let p = plan(&format!(
        "{CLUSTER} | summarize n = count() by ClusterName, VmSize | project-reorder n, VmSize | as Counts"
    ));
    let names: Vec<&str> = p.output.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["n", "VmSize", "ClusterName"]);
    // On raw rows the time column stays the window's.
    let p = plan(&format!(
        "{CLUSTER} | where TimeGenerated > ago(1h) | project-reorder ClusterName, TimeGenerated"
    ));
    assert_eq!(&*p.output[0].name, "ClusterName");
    assert_eq!(&*p.output[1].name, "TimeGenerated");
    assert!(p.window.is_some());
    assert_eq!(
        error(&format!("{CLUSTER} | project-reorder ClusterNme")).2,
        "unknown column 'ClusterNme' (did you mean 'ClusterName'?)"
    );
}

#[test]
fn datetime_diff_and_bin_at_as_kusto_documents_them() {
    // The examples of Kusto's datetime_diff() page.
    for (period, a, b, want) in [
        ("year", "2017-01-01", "2000-12-31", 17),
        ("quarter", "2017-07-01", "2017-03-30", 2),
        ("month", "2017-01-01", "2015-12-30", 13),
        ("week", "2017-10-29 00:00", "2017-09-30 23:59", 5),
        ("day", "2017-10-29 00:00", "2017-09-30 23:59", 29),
        ("hour", "2017-10-31 01:00", "2017-10-30 23:59", 2),
        ("minute", "2017-10-30 23:05:01", "2017-10-30 23:00:59", 5),
        (
            "second",
            "2017-10-30 23:00:10.100",
            "2017-10-30 23:00:00.900",
            10,
        ),
        (
            "millisecond",
            "2017-10-30 23:00:00.200100",
            "2017-10-30 23:00:00.100900",
            100,
        ),
        (
            "microsecond",
            "2017-10-30 23:00:00.1009001",
            "2017-10-30 23:00:00.1008009",
            100,
        ),
        (
            "nanosecond",
            "2017-10-30 23:00:00.0000000",
            "2017-10-30 23:00:00.0000007",
            -700,
        ),
    ] {
        assert_eq!(
            v(&format!(
                "datetime_diff('{period}', datetime({a}), datetime({b}))"
            )),
            Value::Long(want),
            "{period}"
        );
    }
    // bin_at: bins anchored at the fixed point (Kusto's examples).
    assert_eq!(v("bin_at(6.5, 2.5, 7)"), Value::Real(4.5));
    assert_eq!(
        v("bin_at(time(1h), 1d, 12h)"),
        Value::TimeSpan(-12 * TICKS_PER_HOUR)
    );
    assert_eq!(
        v("bin_at(datetime(2017-05-15 10:20:00.0), 1d, datetime(1970-01-01 12:00:00.0))"),
        Value::DateTime(dt("2017-05-14T12:00:00Z"))
    );
    assert_eq!(
        v("bin_at(datetime(2017-05-17 10:20:00.0), 7d, datetime(2017-06-04 00:00:00.0))"),
        Value::DateTime(dt("2017-05-14T00:00:00Z"))
    );
    assert_eq!(v("bin_at(7, 3, 1)"), Value::Long(7));
    assert_eq!(
        error(&format!("{CLUSTER} | extend d = datetime_diff('fortnight', TimeGenerated, now())")).2,
        "datetime_diff() needs its period as a string literal, one of year, quarter, month, week, day, hour, minute, second, millisecond, microsecond, nanosecond"
    );
}

#[test]
fn calendar_math_string_and_dynamic_functions_of_the_samples() {
    // The row's TimeGenerated is 2024-03-01T11:55:00Z, a Friday.
    assert_eq!(
        v("startofweek(TimeGenerated)"),
        Value::DateTime(dt("2024-02-25T00:00:00Z"))
    );
    assert_eq!(
        v("startofmonth(TimeGenerated, -1)"),
        Value::DateTime(dt("2024-02-01T00:00:00Z"))
    );
    assert_eq!(
        v("endofday(TimeGenerated)"),
        Value::DateTime(dt("2024-03-01T23:59:59.9999999Z"))
    );
    assert_eq!(
        v("startofday(TimeGenerated, 1)"),
        Value::DateTime(dt("2024-03-02T00:00:00Z"))
    );
    assert_eq!(v("getyear(TimeGenerated)"), Value::Long(2024));
    assert_eq!(v("datetime_part('Month', TimeGenerated)"), Value::Long(3));
    assert_eq!(v("hourofday(TimeGenerated)"), Value::Long(11));
    assert_eq!(v("dayofweek(TimeGenerated)"), v("5d"));
    assert_eq!(
        v("datetime_add('month', -1, TimeGenerated)"),
        Value::DateTime(dt("2024-02-01T11:55:00Z"))
    );
    assert_eq!(
        v("format_datetime(TimeGenerated, 'yyyy-MM-dd HH:mm')"),
        s("2024-03-01 11:55")
    );
    assert_eq!(
        v("unixtime_seconds_todatetime(86400)"),
        Value::DateTime(dt("1970-01-02T00:00:00Z"))
    );
    assert_eq!(ty("getmonth(TimeGenerated)"), Type::Long);
    assert_eq!(
        error(&format!("{CLUSTER} | extend x = datetime_part('fortnight', TimeGenerated)")).2,
        "datetime_part() needs its part as a string literal, one of year, quarter, month, week_of_year, day, dayofyear, hour, minute, second, millisecond, microsecond, nanosecond"
    );
    // Math: a real, null when not a number; ceiling keeps a whole number whole.
    assert_eq!(v("sqrt(16)"), Value::Real(4.0));
    assert_eq!(v("sqrt(-1)"), Value::Null);
    assert_eq!(v("ceiling(1.2)"), Value::Real(2.0));
    assert_eq!(v("ceiling(7)"), Value::Long(7));
    assert_eq!(v("pow(2, 10)"), Value::Real(1024.0));
    assert_eq!(v("log10(1000)"), Value::Real(3.0));
    assert_eq!(v("min_of(3, long(null), 1)"), Value::Long(1));
    assert_eq!(v("max_of('a', 'c', 'b')"), s("c"));
    // Strings: characters, not bytes.
    assert_eq!(v("substring('héllo', 1, 3)"), s("éll"));
    assert_eq!(v("substring('abc', 5)"), s(""));
    assert_eq!(v("indexof('héllo', 'l')"), Value::Long(2));
    assert_eq!(v("indexof('abc', 'x')"), Value::Long(-1));
    assert_eq!(v("indexof('abcabc', 'a', 1)"), Value::Long(3));
    assert_eq!(v("reverse('abc')"), s("cba"));
    // Dynamic: arrays and bags built and measured.
    assert_eq!(v("array_length(split('a/b/c', '/'))"), Value::Long(3));
    assert_eq!(v("array_length('not an array')"), Value::Null);
    assert_eq!(v("pack_array(1, 'x')"), json(r#"[1, "x"]"#));
    assert_eq!(
        v("bag_pack('k', 1, 'v', 'x')"),
        json(r#"{"k": 1, "v": "x"}"#)
    );
    assert_eq!(
        error(&format!("{CLUSTER} | extend x = bag_pack('k', 1, 'v')")).2,
        "bag_pack() takes key/value pairs"
    );
}

#[test]
fn let_functions_are_put_in_place_of_their_calls() {
    let p = plan(&format!(
        "let twice = (x: long) {{ x * 2 }};\nlet recent = (since: timespan = 1h) {{ {CLUSTER} | where TimeGenerated > ago(since) }};\nrecent() | extend t = twice(TargetNodeCount) | project t"
    ));
    // The default argument made a sliding window, as `ago(1h)` written out does.
    assert_eq!(p.window.map(|w| w.length), Some(TICKS_PER_HOUR));
    assert_eq!(p.output[0].ty, Type::Long);
    assert_eq!(
        error(&format!(
            "let twice = (x: long) {{ x * 2 }};\n{CLUSTER} | extend y = twice(1, 2)"
        ))
        .2,
        "'twice' takes 1 argument(s), got 2"
    );
    assert_eq!(
        error(&format!("let recent = (n: timespan) {{ {CLUSTER} | where TimeGenerated > ago(n) }};\nrecnt(1d) | count")).2,
        "unknown function 'recnt' (did you mean 'recent'?)"
    );
    assert_eq!(
        error("let twice = (x: long) { x * 2 };\ntwice(1) | count").2,
        "'twice' returns a value, not a table"
    );
    assert_eq!(
        error(&format!(
            "let recent = () {{ {CLUSTER} }};\n{CLUSTER} | extend y = recent()"
        ))
        .2,
        "'recent' returns a table, not a value"
    );
}

#[test]
fn search_reads_every_table_and_a_union_splits_a_name_of_two_types() {
    let schemas = Schemas::embedded();
    let p = plan("search \"gpu\" | summarize count() by $table");
    assert_eq!(p.inputs.len(), schemas.tables.len(), "every table is read");
    let p = plan(&format!("search in ({CLUSTER}, AzureMetrics) \"gpu\""));
    assert_eq!(p.inputs.len(), 2);
    assert_eq!(&*p.output[0].name, "$table");
    // DurationMs is a long in common.json and a string in AmlRunStatusChangedEvent.
    let names: Vec<String> = plan(&format!("union {CLUSTER}, AmlRunStatusChangedEvent"))
        .output
        .iter()
        .map(|c| c.name.to_string())
        .filter(|n| n.starts_with("DurationMs"))
        .collect();
    assert_eq!(names, ["DurationMs_long", "DurationMs_string"]);
    assert_eq!(
        error(&format!(
            "union {CLUSTER}, AmlRunStatusChangedEvent | project DurationMs"
        ))
        .2,
        "unknown column 'DurationMs': the union has one column per type of it, 'DurationMs_long', 'DurationMs_string'"
    );
}

#[test]
fn trim_removes_the_matches_at_either_end() {
    assert_eq!(v(r"trim(@'[\s_]', '__ a b _ ')"), s("a b"));
    assert_eq!(v("trim_start('S', VmSize)"), s("TANDARD_NC6"));
    assert_eq!(v(r"trim_end(@'\d', VmSize)"), s("STANDARD_NC"));
    assert_eq!(v("trim('x', 'xxx')"), s(""));
    assert_eq!(v("trim('--', 'a--b')"), s("a--b"));
    assert_eq!(
        error(&format!("{CLUSTER} | extend t = trim(VmSize, 'x')")).2,
        "trim() needs its regular expression as a string literal"
    );
}

#[test]
fn regular_expressions_cannot_swallow_what_hubwatch_puts_around_them() {
    // Found by the fuzzer: an open `[` in one literal reached into the next one.
    assert_eq!(
        error(&format!("{CLUSTER} | parse kind=regex VmSize with \"[a\" x \"]\" y")).2,
        "'[a' in the pattern of 'parse' is not a valid regular expression: error: unclosed character class"
    );
    assert_eq!(
        error(&format!(
            "{CLUSTER} | parse kind=regex VmSize with \"(?x)#\" x"
        ))
        .2,
        "the pattern of 'parse' is not a valid regular expression: error: unclosed group"
    );
    assert_eq!(
        error(&format!("{CLUSTER} | extend t = trim('(?x)#', VmSize)")).2,
        "invalid regular expression: error: unclosed group"
    );
}

#[test]
fn hash_gives_kustos_documented_values() {
    assert_eq!(v("hash('World')"), Value::Long(1_846_988_464_401_551_951));
    assert_eq!(v("hash('World', 100)"), Value::Long(51));
    assert_eq!(
        v("hash_xxhash64(datetime(2015-01-01))"),
        Value::Long(1_380_966_698_541_616_202)
    );
    assert_eq!(v("hash('')"), Value::Long(-1_205_034_819_632_174_695));
    assert_eq!(
        error(&format!("{CLUSTER} | extend h = hash(CoreCount)")).2,
        "hash() needs a string or a datetime here, got long"
    );
}

#[test]
fn keywords_are_names_only_in_brackets() {
    assert_eq!(
        error(&format!("let kind = 1;\n{CLUSTER} | take 1")).2,
        "'kind' is a KQL keyword: write ['kind'] to use it as a name"
    );
    assert_eq!(
        error(&format!("{CLUSTER} | summarize first = min(TimeGenerated)")).2,
        "'first' is a KQL keyword: write ['first'] to use it as a name"
    );
    let p = plan(&format!(
        "{CLUSTER} | summarize ['first'] = min(TimeGenerated)"
    ));
    assert_eq!(&*p.output[0].name, "first");
    // Words Kusto does not reserve stay names.
    plan(&format!(
        "let count = 1; {CLUSTER} | extend step = count, order = 2"
    ));
}

#[test]
fn union_legs_may_name_tables_by_pattern() {
    let schemas = Schemas::embedded();
    let tables = |q: &str| -> Vec<String> {
        plan(q)
            .inputs
            .iter()
            .map(|i| schemas.tables[i.table].name.to_string())
            .collect()
    };
    assert_eq!(
        tables("union AmlCompute*Event"),
        [
            "AmlComputeClusterEvent",
            "AmlComputeClusterNodeEvent",
            "AmlComputeInstanceEvent",
            "AmlComputeJobEvent"
        ]
    );
    assert_eq!(tables("union *").len(), schemas.tables.len());
    assert_eq!(tables("union Azure*, AmlRunEvent").len(), 3);
    assert_eq!(error("union Nope* | count").2, "no table matches 'Nope*'");
}
