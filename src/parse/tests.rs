//! One test per body shape, quirk and reject reason.

use super::*;
use crate::time::{format_datetime, parse_datetime};

#[derive(Default)]
struct Collect {
    rows: Vec<Row>,
    rejects: Vec<(RejectReason, String, Vec<u8>)>,
    unknown: Vec<UnknownRow>,
}

impl ParseSink for Collect {
    fn row(&mut self, row: Row, _raw: &[u8]) {
        self.rows.push(row);
    }
    fn reject(&mut self, r: Reject<'_>) {
        self.rejects.push((r.reason, r.detail, r.raw.to_vec()));
    }
    fn unknown(&mut self, row: UnknownRow, _raw: &[u8]) {
        self.unknown.push(row);
    }
}

fn parser() -> Parser {
    let s = Schemas::embedded();
    let needs = Needs::all(&s);
    Parser::new(s, &needs, ParserLimits::default())
}

fn parse(body: &str) -> (Parser, Collect) {
    let mut p = parser();
    let mut c = Collect::default();
    p.parse_body(body.as_bytes(), None, &mut c);
    (p, c)
}

fn col<'a>(p: &Parser, row: &'a Row, name: &str) -> &'a Value {
    let t = &p.schemas().tables[row.table];
    &row.values[t
        .column(name)
        .unwrap_or_else(|| panic!("no column {name} in {}", t.name))]
}

const CLUSTER: &str = r#"{"time":"2024-03-01T10:00:00.1234567Z","resourceId":"/SUBSCRIPTIONS/AAAA-1/RESOURCEGROUPS/RG-1/PROVIDERS/MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/WS-1","category":"AmlComputeClusterEvent","operationName":"Microsoft.MachineLearningServices/workspaces/computes/write","properties":{"ClusterName":"gpu","TargetNodeCount":"4","CurrentNodeCount":2,"QuotaAllocated":100,"VmSize":"STANDARD_D1_V2"}}"#;

#[test]
fn envelope_record_becomes_a_typed_row() {
    let (p, c) = parse(&format!(r#"{{"records":[{CLUSTER}]}}"#));
    assert!(c.rejects.is_empty(), "{:?}", c.rejects);
    let row = &c.rows[0];
    assert_eq!(
        &*p.schemas().tables[row.table].name,
        "AmlComputeClusterEvent"
    );
    assert_eq!(format_datetime(row.time), "2024-03-01T10:00:00.1234567Z");
    assert_eq!(col(&p, row, "ClusterName"), &Value::str("gpu"));
    assert_eq!(
        col(&p, row, "TargetNodeCount"),
        &Value::Long(4),
        "number in a string"
    );
    assert_eq!(col(&p, row, "CurrentNodeCount"), &Value::Long(2));
    assert_eq!(
        col(&p, row, "QuotaAllocated"),
        &Value::str("100"),
        "string column keeps numbers as text"
    );
    assert_eq!(
        col(&p, row, "_ResourceId"),
        &Value::str("/subscriptions/aaaa-1/resourcegroups/rg-1/providers/microsoft.machinelearningservices/workspaces/ws-1")
    );
    assert_eq!(col(&p, row, "_SubscriptionId"), &Value::str("aaaa-1"));
    assert_eq!(col(&p, row, "Type"), &Value::str("AmlComputeClusterEvent"));
    assert_eq!(
        col(&p, row, "OperationName"),
        &Value::str("Microsoft.MachineLearningServices/workspaces/computes/write")
    );
    assert_eq!(p.stats.repaired(RepairKind::NumberFromString), 1);
    assert_eq!(p.stats.records_total(), 1);
}

#[test]
fn bare_array_single_object_and_storage_lines() {
    let (_, c) = parse(&format!("[{CLUSTER},{CLUSTER}]"));
    assert_eq!(c.rows.len(), 2);
    let (_, c) = parse(CLUSTER);
    assert_eq!(c.rows.len(), 1);
    let (_, c) = parse(&format!("{CLUSTER}\n{CLUSTER}\n{CLUSTER}\n"));
    assert_eq!(
        c.rows.len(),
        3,
        "one record per line, as in storage exports"
    );
    let (_, c) = parse(&format!(
        r#"[{{"records":[{CLUSTER}]}},{{"records":[{CLUSTER}]}}]"#
    ));
    assert_eq!(c.rows.len(), 2, "array of envelopes");
}

#[test]
fn properties_as_json_string_and_case_insensitive_lookup() {
    let body = r#"{"time":"2024-03-01T10:00:00Z","resourceId":"/x","category":"amlcomputeclusterevent","properties":"{\"clustername\":\"cpu\",\"TARGETNODECOUNT\":3}"}"#;
    let (p, c) = parse(body);
    let row = &c.rows[0];
    assert_eq!(col(&p, row, "ClusterName"), &Value::str("cpu"));
    assert_eq!(col(&p, row, "TargetNodeCount"), &Value::Long(3));
    assert_eq!(p.stats.repaired(RepairKind::PropertiesString), 1);
}

#[test]
fn single_quoted_and_unreadable_properties_are_counted() {
    let body = r#"{"time":"2024-03-01T10:00:00Z","category":"AmlComputeClusterEvent","properties":"{'ClusterName':'q'}"}"#;
    let (p, c) = parse(body);
    assert_eq!(col(&p, &c.rows[0], "ClusterName"), &Value::str("q"));
    assert_eq!(p.stats.repaired(RepairKind::PropertiesSingleQuotes), 1);
    let body = r#"{"time":"2024-03-01T10:00:00Z","category":"AmlComputeClusterEvent","properties":"[ 227 B blob data ]"}"#;
    let (p, c) = parse(body);
    assert_eq!(c.rows.len(), 1, "the record is kept");
    assert_eq!(p.stats.repaired(RepairKind::PropertiesUnreadable), 1);
}

#[test]
fn top_level_fallback_and_extra_fields() {
    let body = r#"{"time":"2024-03-01T10:00:00Z","category":"AmlComputeClusterEvent","ClusterName":"top","Level":4,"durationMs":"16","":"","properties":{}}"#;
    let (p, c) = parse(body);
    let row = &c.rows[0];
    assert_eq!(col(&p, row, "ClusterName"), &Value::str("top"));
    assert_eq!(
        col(&p, row, "Level"),
        &Value::str("4"),
        "numeric Level in a string column"
    );
    assert_eq!(col(&p, row, "DurationMs"), &Value::Long(16));
    assert_eq!(p.stats.repaired(RepairKind::EmptyKey), 1);
}

#[test]
fn time_quirks() {
    let cases = [
        (
            r#""time":"2024-03-01T10:00:00.123456789Z""#,
            "2024-03-01T10:00:00.1234567Z",
            None,
        ),
        (
            r#""time":"2024-03-01T12:00:00+02:00""#,
            "2024-03-01T10:00:00.0000000Z",
            None,
        ),
        (
            r#""time":"03/01/2024 10:00:00""#,
            "2024-03-01T10:00:00.0000000Z",
            Some(RepairKind::TimeUsFormat),
        ),
        (
            r#""time":"2024-03-01T10:00:00""#,
            "2024-03-01T10:00:00.0000000Z",
            Some(RepairKind::TimeNoZone),
        ),
        (
            r#""timeStamp":"2024-03-01T10:00:00Z""#,
            "2024-03-01T10:00:00.0000000Z",
            Some(RepairKind::TimeAlternateField),
        ),
        (
            r#""time":"","TimeGenerated":"2024-03-01T10:00:00Z""#,
            "2024-03-01T10:00:00.0000000Z",
            Some(RepairKind::TimeAlternateField),
        ),
    ];
    for (field, want, repair) in cases {
        let (p, c) = parse(&format!(r#"{{{field},"category":"AmlComputeJobEvent"}}"#));
        assert_eq!(c.rows.len(), 1, "{field}");
        assert_eq!(format_datetime(c.rows[0].time), want, "{field}");
        if let Some(k) = repair {
            assert_eq!(p.stats.repaired(k), 1, "{field}");
        }
    }
}

#[test]
fn missing_time_falls_back_to_enqueued_time_or_is_rejected() {
    let body = br#"{"category":"AmlComputeJobEvent","time":"yesterday"}"#;
    let mut p = parser();
    let mut c = Collect::default();
    let enq = parse_datetime("2024-03-01T00:00:00Z").unwrap().0;
    p.parse_body(body, Some(enq), &mut c);
    assert_eq!(c.rows[0].time, enq);
    assert_eq!(p.stats.repaired(RepairKind::TimeFromEnqueued), 1);

    let (p, c) = parse(r#"{"records":[{"category":"AmlComputeJobEvent"}]}"#);
    assert!(c.rows.is_empty());
    assert_eq!(c.rejects[0].0, RejectReason::NoTime);
    assert!(c.rejects[0].1.contains("record 1"), "{}", c.rejects[0].1);
    assert_eq!(
        c.rejects[0].2, br#"{"category":"AmlComputeJobEvent"}"#,
        "the record's own bytes"
    );
    assert_eq!(p.stats.rejected(RejectReason::NoTime), 1);
}

#[test]
fn every_body_reject_reason() {
    let cases: [(&[u8], RejectReason); 7] = [
        (b"{\"records\":[", RejectReason::InvalidJson),
        (b"not json", RejectReason::InvalidJson),
        (
            b"{\"records\":[{\"time\":\"\xff\"}]}",
            RejectReason::InvalidUtf8,
        ),
        (b"   \n", RejectReason::EmptyBody),
        (b"42", RejectReason::WrongShape),
        (b"{\"records\":5}", RejectReason::WrongShape),
        (b"\"text\"", RejectReason::WrongShape),
    ];
    for (body, reason) in cases {
        let mut p = parser();
        let mut c = Collect::default();
        p.parse_body(body, None, &mut c);
        assert!(c.rows.is_empty());
        assert_eq!(c.rejects.len(), 1, "{:?}", String::from_utf8_lossy(body));
        assert_eq!(
            c.rejects[0].0,
            reason,
            "{:?}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(c.rejects[0].2, body, "the raw body goes to the dead letter");
        assert_eq!(p.stats.rejected(reason), 1);
    }
}

#[test]
fn invalid_json_says_where() {
    let (_, c) = parse("{\"records\":[\n{\"time\": }]}");
    assert!(
        c.rejects[0].1.contains("line 2, column"),
        "{}",
        c.rejects[0].1
    );
}

#[test]
fn a_broken_body_emits_no_record_at_all() {
    let (_, c) = parse(&format!("{CLUSTER}\n{{broken"));
    assert!(c.rows.is_empty(), "rejected whole, not half-counted");
    assert_eq!(c.rejects[0].0, RejectReason::InvalidJson);
}

#[test]
fn non_object_records_are_rejected_one_by_one() {
    let (p, c) = parse(&format!(r#"{{"records":[1,"x",null,{CLUSTER}]}}"#));
    assert_eq!(c.rows.len(), 1);
    assert_eq!(p.stats.rejected(RejectReason::RecordNotObject), 3);
    assert_eq!(c.rejects[1].2, br#""x""#);
}

#[test]
fn oversized_bodies_are_rejected() {
    let s = Schemas::embedded();
    let mut p = Parser::new(
        s.clone(),
        &Needs::all(&s),
        ParserLimits { max_body_bytes: 10 },
    );
    let mut c = Collect::default();
    p.parse_body(CLUSTER.as_bytes(), None, &mut c);
    assert_eq!(c.rejects[0].0, RejectReason::BodyTooLarge);
}

#[test]
fn metrics_activity_and_unknown_categories() {
    let metric = r#"{"count":2,"total":"0.217","minimum":0.042,"maximum":0.175,"average":0.1085,"resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/WS","time":"2023-04-18T09:03:00.0000000Z","metricName":"Active Nodes","timeGrain":"PT1M"}"#;
    let (p, c) = parse(metric);
    let row = &c.rows[0];
    assert_eq!(&*p.schemas().tables[row.table].name, "AzureMetrics");
    assert_eq!(col(&p, row, "MetricName"), &Value::str("Active Nodes"));
    assert_eq!(col(&p, row, "Total"), &Value::Real(0.217));
    assert_eq!(col(&p, row, "Count"), &Value::Real(2.0));
    assert_eq!(col(&p, row, "Resource"), &Value::str("WS"));
    assert_eq!(col(&p, row, "ResourceGroup"), &Value::str("RG"));

    let activity = r#"{"time":"2019-01-21T22:14:26.9792776Z","resourceId":"/subscriptions/s1/resourceGroups/G/providers/microsoft.support/supporttickets/1","operationName":"microsoft.support/supporttickets/write","category":"Write","resultType":"Success","identity":{"claims":{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":"admin@contoso.com","name":"John"}},"properties":"{\"statusCode\":\"Created\"}"}"#;
    let (p, c) = parse(activity);
    let row = &c.rows[0];
    assert_eq!(&*p.schemas().tables[row.table].name, "AzureActivity");
    assert_eq!(
        col(&p, row, "OperationNameValue"),
        &Value::str("microsoft.support/supporttickets/write")
    );
    assert_eq!(col(&p, row, "ActivityStatusValue"), &Value::str("Success"));
    assert_eq!(
        col(&p, row, "Caller"),
        &Value::str("admin@contoso.com"),
        "claim keys contain dots"
    );
    match col(&p, row, "Properties_d") {
        Value::Dynamic(d) => assert_eq!(d["statusCode"], "Created"),
        other => panic!("Properties_d: {other:?}"),
    }

    let (p, c) = parse(
        r#"{"time":"2024-01-01T00:00:00Z","category":"SomethingNew","properties":{"A":1,"B":"x"}}"#,
    );
    assert!(c.rows.is_empty());
    assert_eq!(p.stats.unknown_records, 1);
    assert_eq!(&*c.unknown[0].category, "SomethingNew");
    assert!(c.unknown[0]
        .columns
        .iter()
        .any(|(k, v)| &**k == "A" && *v == Value::Long(1)));
}

#[test]
fn only_needed_columns_are_filled() {
    let s = Schemas::embedded();
    let t = s.table("AmlComputeClusterEvent").unwrap();
    let mut needs = Needs::none(&s);
    let cn = s.tables[t].column("ClusterName").unwrap();
    needs.add(&s, t, cn);
    let mut p = Parser::new(s.clone(), &needs, ParserLimits::default());
    let mut c = Collect::default();
    p.parse_body(CLUSTER.as_bytes(), None, &mut c);
    let row = &c.rows[0];
    assert_eq!(row.values[cn], Value::str("gpu"));
    assert_eq!(
        row.values[s.tables[t].column("VmSize").unwrap()],
        Value::Null
    );
    // A table no query reads is counted but yields no row.
    p.parse_body(
        br#"{"time":"2024-01-01T00:00:00Z","category":"AmlComputeJobEvent"}"#,
        None,
        &mut c,
    );
    assert_eq!(c.rows.len(), 1);
    assert_eq!(p.stats.records_total(), 2);
}

#[test]
fn uncoercible_values_become_null_and_are_counted() {
    let body = r#"{"time":"2024-03-01T10:00:00Z","category":"AmlComputeClusterEvent","properties":{"TargetNodeCount":"many","CurrentNodeCount":2.5}}"#;
    let (p, c) = parse(body);
    assert_eq!(col(&p, &c.rows[0], "TargetNodeCount"), &Value::Null);
    assert_eq!(col(&p, &c.rows[0], "CurrentNodeCount"), &Value::Null);
    assert_eq!(p.stats.repaired(RepairKind::UncoercibleValue), 2);
}

#[test]
fn no_input_panics() {
    // Every prefix of a realistic body, plus byte noise, must be handled without a panic.
    let body = format!(r#"{{"records":[{CLUSTER},{CLUSTER}]}}"#);
    let mut p = parser();
    let mut c = Collect::default();
    for i in 0..body.len() {
        p.parse_body(&body.as_bytes()[..i], None, &mut c);
    }
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..2000 {
        let mut bytes = body.as_bytes().to_vec();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x as usize) % bytes.len();
            bytes[at] = (x >> 32) as u8;
        }
        p.parse_body(&bytes, None, &mut c);
    }
    assert!(p.stats.bodies > 2000);
}

/// A reject reason or repair kind by its label (the tests name them as the metrics do).
fn reason(label: &str) -> RejectReason {
    RejectReason::ALL
        .into_iter()
        .find(|r| r.as_str() == label)
        .unwrap_or_else(|| panic!("no reject reason {label}"))
}

fn repairs(p: &Parser, label: &str) -> u64 {
    let kind = RepairKind::ALL
        .into_iter()
        .find(|k| k.as_str() == label)
        .unwrap_or_else(|| panic!("no repair kind {label}"));
    p.stats.repaired(kind)
}

#[test]
fn a_repeated_records_key_rejects_the_body_whole() {
    let other = CLUSTER.replace("\"gpu\"", "\"cpu\"");
    for body in [
        format!(r#"{{"records":[{CLUSTER}],"records":[{other}]}}"#),
        format!(r#"{{"records":[{CLUSTER}],"Records":[{other}]}}"#),
        format!(r#"{{"Records":[{other}],"records":[{CLUSTER}]}}"#),
        format!(r#"{{"records":[{CLUSTER}],"records":5}}"#),
    ] {
        let (p, c) = parse(&body);
        assert!(c.rows.is_empty(), "no array is guessed: {body}");
        assert_eq!(c.rejects.len(), 1, "{body}");
        assert_eq!(c.rejects[0].0, reason("duplicate_key"), "{body}");
        assert!(c.rejects[0].1.contains("\"records\" appears 2 times"));
        assert_eq!(c.rejects[0].2, body.as_bytes(), "the whole body is kept");
        assert_eq!(p.stats.rejected(reason("duplicate_key")), 1);
        assert_eq!(p.stats.records_total(), 0);
    }
    // In an array of envelopes, only the ambiguous envelope is rejected.
    let (_, c) = parse(&format!(
        r#"[{{"records":[{CLUSTER}],"records":[{other}]}},{{"records":[{other}]}}]"#
    ));
    assert_eq!(c.rows.len(), 1);
    assert_eq!(c.rejects.len(), 1);
    assert_eq!(c.rejects[0].0, reason("duplicate_key"));
}

#[test]
fn a_repeated_column_takes_the_last_value_and_is_counted_once_per_record() {
    let body = r#"{"time":"2024-03-01T10:00:00Z","category":"AmlComputeClusterEvent","properties":{"ClusterName":"a","VmSize":"s","clustername":"b","VmSize":"s","TargetNodeCount":1,"TargetNodeCount":2}}"#;
    let (p, c) = parse(body);
    assert_eq!(c.rows.len(), 1);
    assert_eq!(
        col(&p, &c.rows[0], "ClusterName"),
        &Value::str("b"),
        "the last, as JSON.parse and the dynamic columns keep it"
    );
    assert_eq!(col(&p, &c.rows[0], "TargetNodeCount"), &Value::Long(2));
    assert_eq!(col(&p, &c.rows[0], "VmSize"), &Value::str("s"));
    assert_eq!(repairs(&p, "duplicate_key"), 1, "one per record");

    // The same value twice loses nothing: not counted.
    let body = r#"{"time":"2024-03-01T10:00:00Z","category":"AmlComputeClusterEvent","properties":{"ClusterName":"a","ClusterName":"a"}}"#;
    let (p, c) = parse(body);
    assert_eq!(col(&p, &c.rows[0], "ClusterName"), &Value::str("a"));
    assert_eq!(repairs(&p, "duplicate_key"), 0);

    // The record's time, too.
    let body = r#"{"time":"2024-03-01T10:00:00Z","time":"2024-03-02T10:00:00Z","category":"AmlComputeClusterEvent"}"#;
    let (p, c) = parse(body);
    assert_eq!(
        format_datetime(c.rows[0].time),
        "2024-03-02T10:00:00.0000000Z"
    );
    assert_eq!(repairs(&p, "duplicate_key"), 1);
}

#[test]
fn a_repeated_key_nobody_reads_is_not_counted() {
    let s = Schemas::embedded();
    let t = s.table("AmlComputeClusterEvent").unwrap();
    let mut needs = Needs::none(&s);
    needs.add(&s, t, s.tables[t].column("ClusterName").unwrap());
    let mut p = Parser::new(s, &needs, ParserLimits::default());
    let mut c = Collect::default();
    let body = br#"{"time":"2024-03-01T10:00:00Z","category":"AmlComputeClusterEvent","properties":{"ClusterName":"a","VmSize":"x","VmSize":"y"}}"#;
    p.parse_body(body, None, &mut c);
    assert_eq!(c.rows.len(), 1);
    assert_eq!(repairs(&p, "duplicate_key"), 0, "no query reads VmSize");
}

#[test]
fn repeated_keys_in_dynamic_and_unknown_category_records_are_counted() {
    // Properties_d is dynamic: serde_json keeps the last value; the loss is counted.
    let activity = r#"{"time":"2019-01-21T22:14:26Z","category":"Write","properties":{"statusCode":"Created","statusCode":"OK"}}"#;
    let (p, c) = parse(activity);
    match col(&p, &c.rows[0], "Properties_d") {
        Value::Dynamic(d) => assert_eq!(d["statusCode"], "OK"),
        other => panic!("Properties_d: {other:?}"),
    }
    assert_eq!(repairs(&p, "duplicate_key"), 1);

    // A record of an unknown category: one column per name (ignoring case), the last value.
    let (p, c) = parse(
        r#"{"time":"2024-01-01T00:00:00Z","category":"SomethingNew","properties":{"A":1,"a":2,"B":"x"}}"#,
    );
    let cols: Vec<(&str, &Value)> = c.unknown[0]
        .columns
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("a"))
        .map(|(k, v)| (&**k, v))
        .collect();
    assert_eq!(cols, [("A", &Value::Long(2))]);
    assert_eq!(repairs(&p, "duplicate_key"), 1);

    // A name in properties wins over the top level, as for known tables: not a repeat.
    let (p, c) = parse(
        r#"{"time":"2024-01-01T00:00:00Z","category":"SomethingNew","B":"top","properties":{"b":"props"}}"#,
    );
    let b: Vec<&Value> = c.unknown[0]
        .columns
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("b"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(b, [&Value::str("props")]);
    assert_eq!(repairs(&p, "duplicate_key"), 0);
}
