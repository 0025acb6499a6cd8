//! Query results routed as their tumbling bins close: each bin once, its rows the merged
//! result of every partition, one replica routing, and a restore continuing where the
//! stored state says routing was.

use std::sync::{Arc, Mutex};

use serde_json::Value as Json;

use super::{Engine, EngineOptions, Forwarding, QuerySpec};
use crate::forward::{RouteMeta, RouteSpec, Routed, Sink};
use crate::schema::Schemas;
use crate::source::{Event, Position};
use crate::time::TICKS_PER_MINUTE;
use crate::window::QueryLimits;

const KQL: &str = "AmlComputeClusterEvent \
    | summarize nodes = max(TargetNodeCount), n = count() by bin(TimeGenerated, 5m), ClusterName \
    | where nodes > 0";

/// What a sink received: each row's JSON.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Json>>>);

impl Capture {
    fn take(&self) -> Vec<Json> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

impl Sink for Capture {
    fn name(&self) -> &str {
        "capture"
    }
    fn write(&mut self, row: &Routed<'_>) -> std::io::Result<()> {
        let mut v: Json = serde_json::from_slice(row.json).unwrap();
        v["_id"] = Json::from(row.id());
        self.0.lock().unwrap().push(v);
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn sync_job(&mut self) -> std::io::Result<Option<crate::forward::SyncJob>> {
        Ok(None)
    }
}

fn engine(capture: &Capture) -> Engine {
    let schemas = Schemas::embedded();
    let plan = Arc::new(crate::kql::check::compile(KQL, &schemas).unwrap());
    let spec = QuerySpec {
        name: Arc::from("clusters"),
        description: String::new(),
        kql: KQL.to_string(),
        plan: plan.clone(),
        limits: QueryLimits::default(),
    };
    let route = RouteSpec::results("alerts", 0, plan, vec![0], RouteMeta::default());
    let forwarding = Forwarding {
        routes: vec![route],
        sinks: vec![Box::new(capture.clone())],
    };
    let opts = EngineOptions {
        allowed_lateness: TICKS_PER_MINUTE,
        ..EngineOptions::default()
    };
    Engine::with_forwarding(schemas, vec![spec], forwarding, opts)
}

/// One cluster event at `time` (minutes after 10:00) in `partition`, sequence `seq`.
fn event(partition: &str, seq: i64, minute: i64, cluster: &str, nodes: i64) -> Event {
    let body = format!(
        r#"{{"records":[{{"time":"2024-03-01T{:02}:{:02}:00Z","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/W","category":"AmlComputeClusterEvent","properties":{{"ClusterName":"{cluster}","TargetNodeCount":{nodes}}}}}]}}"#,
        10 + minute / 60,
        minute % 60
    );
    Event::new(
        body.into_bytes(),
        Position {
            partition: Arc::from(partition),
            offset: seq,
            sequence_number: seq,
            enqueued_time: None,
        },
    )
}

/// (bin, cluster, nodes, n) of each routed row, in the order routed.
fn rows(got: &[Json]) -> Vec<(String, String, i64, i64)> {
    got.iter()
        .map(|r| {
            assert_eq!(r["_hubwatch"]["route"], "alerts", "{r}");
            assert_eq!(r["_hubwatch"]["query"], "clusters", "{r}");
            assert_eq!(r["_hubwatch"]["bin"], r["TimeGenerated"], "{r}");
            (
                r["TimeGenerated"].as_str().unwrap()[11..16].to_string(),
                r["ClusterName"].as_str().unwrap().to_string(),
                r["nodes"].as_i64().unwrap(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn row(bin: &str, cluster: &str, nodes: i64, n: i64) -> (String, String, i64, i64) {
    (bin.to_string(), cluster.to_string(), nodes, n)
}

#[test]
fn each_bin_goes_out_once_as_it_closes_merged_over_partitions_and_filtered() {
    let capture = Capture::default();
    let mut e = engine(&capture);
    e.ingest("eh", &event("0", 1, 0, "gpu", 4));
    e.ingest("eh", &event("1", 1, 1, "gpu", 6));
    e.ingest("eh", &event("1", 2, 2, "cpu", 2));
    e.ingest("eh", &event("1", 3, 3, "idle", 0));
    e.end_batch().unwrap();
    assert!(capture.take().is_empty(), "10:00–10:05 is still open");

    // Clock 10:07, watermark 10:06: the first bin closes; `where nodes > 0` drops idle.
    e.ingest("eh", &event("0", 2, 7, "gpu", 1));
    e.end_batch().unwrap();
    let got = capture.take();
    assert_eq!(
        rows(&got),
        vec![row("10:00", "cpu", 2, 1), row("10:00", "gpu", 6, 2)]
    );
    assert_eq!(
        got[0]["_id"],
        "alerts:clusters:2024-03-01T10:00:00.0000000Z:0"
    );
    assert_eq!(
        got[1]["_id"],
        "alerts:clusters:2024-03-01T10:00:00.0000000Z:1"
    );
    e.end_batch().unwrap();
    assert!(capture.take().is_empty(), "a bin goes out once");

    // Two bins close at once (10:05 and 10:10), oldest first.
    e.ingest("eh", &event("1", 4, 11, "cpu", 3));
    e.ingest("eh", &event("0", 3, 21, "gpu", 2));
    e.end_batch().unwrap();
    assert_eq!(
        rows(&capture.take()),
        vec![row("10:05", "gpu", 1, 1), row("10:10", "cpu", 3, 1)]
    );
    assert_eq!(
        e.routed()[0],
        crate::time::parse_datetime("2024-03-01T10:10:00Z").map(|t| t.0)
    );
}

#[test]
fn a_restore_continues_after_the_last_bin_its_snapshot_says_was_routed() {
    let capture = Capture::default();
    let mut e = engine(&capture);
    e.ingest("eh", &event("0", 1, 0, "gpu", 4));
    e.ingest("eh", &event("1", 1, 1, "cpu", 2));
    e.end_batch().unwrap();
    // A snapshot before the bin closes: a restart from it routes the bin (again).
    let before = e.snapshot();
    e.ingest("eh", &event("1", 2, 7, "cpu", 5));
    e.end_batch().unwrap();
    assert_eq!(
        rows(&capture.take()),
        vec![row("10:00", "cpu", 2, 1), row("10:00", "gpu", 4, 1)]
    );
    let after = e.snapshot();
    assert_eq!(
        after.len(),
        2,
        "partition 0 is written too: it carries the routed bin"
    );

    // Restored from the snapshots stored after routing: nothing again, then the next bin.
    let capture2 = Capture::default();
    let mut e2 = engine(&capture2);
    for s in &after {
        e2.restore(&s.bytes).unwrap();
    }
    assert_eq!(e2.routed(), e.routed());
    e2.end_batch().unwrap();
    assert!(capture2.take().is_empty());
    e2.ingest("eh", &event("0", 2, 12, "gpu", 1));
    e2.end_batch().unwrap();
    assert_eq!(rows(&capture2.take()), vec![row("10:05", "cpu", 5, 1)]);

    // Restored from the snapshots before: the first bin is routed again (at least once),
    // with the same rows.
    let capture3 = Capture::default();
    let mut e3 = engine(&capture3);
    for s in &before {
        e3.restore(&s.bytes).unwrap();
    }
    assert_eq!(e3.routed()[0], None);
    e3.ingest("eh", &event("1", 2, 7, "cpu", 5));
    e3.end_batch().unwrap();
    assert_eq!(
        rows(&capture3.take()),
        vec![row("10:00", "cpu", 2, 1), row("10:00", "gpu", 4, 1)]
    );
}

#[test]
fn with_global_results_only_the_holder_of_the_lowest_partition_routes_and_a_move_continues() {
    let (ca, cb) = (Capture::default(), Capture::default());
    let (mut a, mut b) = (engine(&ca), engine(&cb));
    a.ingest("eh", &event("0", 1, 0, "gpu", 4));
    b.ingest("eh", &event("1", 1, 1, "gpu", 6));
    a.end_batch().unwrap();
    b.end_batch().unwrap();
    let exchange = |a: &mut Engine, b: &mut Engine| {
        for s in a.snapshot() {
            b.install_peer(b.decoder().decode(&s.bytes, None).unwrap().part);
        }
        for s in b.snapshot() {
            a.install_peer(a.decoder().decode(&s.bytes, None).unwrap().part);
        }
    };
    exchange(&mut a, &mut b);
    assert!(a.routes_results() && !b.routes_results());

    b.ingest("eh", &event("1", 2, 7, "cpu", 1));
    b.end_batch().unwrap();
    exchange(&mut a, &mut b);
    a.end_batch().unwrap();
    assert!(cb.take().is_empty(), "B holds partition 1 only: A routes");
    assert_eq!(
        rows(&ca.take()),
        vec![row("10:00", "gpu", 6, 2)],
        "the global bin"
    );
    let stored = a.snapshot();

    // Partition 0 moves to B, with the state that says 10:00 went out.
    b.drop_peer("eh", "0");
    for s in &stored {
        b.restore(&s.bytes).unwrap();
    }
    assert!(a.release("eh", "0"));
    assert!(b.routes_results());
    b.ingest("eh", &event("0", 2, 13, "gpu", 3));
    b.end_batch().unwrap();
    assert_eq!(rows(&cb.take()), vec![row("10:05", "cpu", 1, 1)]);
}
