//! Window state snapshots at scale, and what keeping state per partition costs.
//!
//! - `totals_<n>`: `summarize count(), sum(x), max(x) by Workspace, ClusterName` over
//!   `AmlComputeClusterEvent`, with n series in one partition: `snapshot` (the engine encodes
//!   the partition after one more event marked it changed), `restore` (a fresh engine
//!   installs that snapshot), `save` (the local-directory store writes it: temporary file,
//!   fsync, rename, directory fsync). The snapshot's size is printed at set-up.
//! - `sliding_<n>`: the same three for `where TimeGenerated > ago(1d) | summarize count()
//!   by …`, each series holding a few panes.
//! - `partitions_<p>`: the default query pack (`deploy/config/replay.toml`) over 10,000
//!   synthetic cluster series, events dealt round-robin to p partitions: `exports` (what a
//!   `/metrics` scrape asks the engine for). Set-up prints the memory proxies: series summed
//!   over partitions and snapshot bytes. `fixture_partitions_<p>`: the same over the golden
//!   fixture.
//!
//! Every figure comes from the real paths: bodies are JSON parsed by the engine, queries
//! compiled from KQL. Compare figures within one run; these machines are noisy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use hubwatch::kql::check::compile;
use hubwatch::pipeline::{Engine, EngineOptions, QuerySpec};
use hubwatch::rng::SplitMix64;
use hubwatch::schema::Schemas;
use hubwatch::source::{Event, Position};
use hubwatch::state::{LocalStateStore, Snapshot, StateStore};
use hubwatch::window::QueryLimits;

const SOURCE: &str = "bench";
/// Records per body, as Azure Monitor batches them.
const RECORDS_PER_BODY: usize = 100;
/// Bodies between `end_batch` calls (the service ends a batch every 256 events or so).
const BODIES_PER_BATCH: usize = 16;

const TOTALS: &str = r#"AmlComputeClusterEvent
| summarize events = count(), sumTargetNodes = sum(TargetNodeCount), maxTargetNodes = max(TargetNodeCount)
    by Workspace = tostring(split(_ResourceId, "/")[8]), ClusterName"#;

const SLIDING: &str = r#"AmlComputeClusterEvent
| where TimeGenerated > ago(1d)
| summarize events = count() by Workspace = tostring(split(_ResourceId, "/")[8]), ClusterName"#;

fn limits() -> QueryLimits {
    QueryLimits {
        max_series: 2_000_000,
        ..QueryLimits::default()
    }
}

fn spec(name: &str, kql: &str) -> QuerySpec {
    let plan = compile(kql, &Schemas::embedded()).expect("the bench query compiles");
    QuerySpec {
        name: Arc::from(name),
        description: String::new(),
        kql: kql.to_string(),
        plan: Arc::new(plan),
        limits: limits(),
    }
}

/// The default pack, with a series cap that no partition reaches (checked at set-up).
fn pack() -> Vec<QuerySpec> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    hubwatch::config::load(
        &root.join("deploy/config/replay.toml"),
        &Schemas::embedded(),
    )
    .expect("the replay config loads")
    .queries
    .into_iter()
    .map(|mut s| {
        s.limits = limits();
        s
    })
    .collect()
}

fn engine(specs: &[QuerySpec]) -> Engine {
    Engine::new(
        Schemas::embedded(),
        specs.to_vec(),
        EngineOptions::default(),
    )
}

/// One `AmlComputeClusterEvent` record of series `s` (workspace `s / 100`, cluster
/// `s % 100`), `secs` after 2024-05-10T00:00:00Z (less than a day), shaped like the
/// fixture's.
fn record(out: &mut String, s: usize, secs: i64, nodes: u64) {
    use std::fmt::Write as _;
    let (h, m, sec) = (secs / 3600, secs / 60 % 60, secs % 60);
    let _ = write!(
        out,
        concat!(
            r#"{{"time":"2024-05-10T{:02}:{:02}:{:02}.0000000Z","#,
            r#""resourceId":"/SUBSCRIPTIONS/3F2504E0-4F89-41D3-9A0C-0305E82C3301/RESOURCEGROUPS/RG-ML-PROD/PROVIDERS/MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/MLWS-{:05}","#,
            r#""category":"AmlComputeClusterEvent","#,
            r#""operationName":"Microsoft.MachineLearningServices/workspaces/AmlComputeClusterEvent/Write","#,
            r#""level":"Informational","properties":{{"ClusterName":"cluster-{:03}","#,
            r#""ClusterType":"AmlCompute","VmSize":"STANDARD_NC6","VmPriority":"Dedicated","#,
            r#""EventType":"ResizeCompleted","AllocationState":"Steady","#,
            r#""CurrentNodeCount":{n},"TargetNodeCount":{n},"RunningNodeCount":{n},"#,
            r#""IdleNodeCount":0,"LeavingNodeCount":0,"PreparingNodeCount":0,"UnusableNodeCount":0,"#,
            r#""QuotaAllocated":"48","QuotaUtilized":"{q}","PreemptedNodeCount":"0"}}}}"#
        ),
        h,
        m,
        sec,
        s / 100,
        s % 100,
        n = nodes,
        q = nodes * 6,
    );
}

/// Feeds synthetic bodies to an engine, keeping each partition's sequence numbers.
struct Feeder {
    next: Vec<i64>,
    /// Bodies ingested since the last `end_batch`.
    unbatched: usize,
    records: u64,
}

impl Feeder {
    fn new(partitions: usize) -> Feeder {
        Feeder {
            next: vec![0; partitions],
            unbatched: 0,
            records: 0,
        }
    }

    fn ingest(&mut self, engine: &mut Engine, partition: usize, body: String, records: usize) {
        let seq = self.next[partition];
        self.next[partition] += 1;
        let event = Event::new(
            body.into_bytes(),
            Position {
                partition: Arc::from(partition.to_string().as_str()),
                offset: seq * 100,
                sequence_number: seq,
                enqueued_time: None,
            },
        );
        engine.ingest(SOURCE, &event);
        self.records += records as u64;
        self.unbatched += 1;
        if self.unbatched == BODIES_PER_BATCH {
            self.end_batch(engine);
        }
    }

    fn end_batch(&mut self, engine: &mut Engine) {
        engine.end_batch().expect("no dead-letter file");
        self.unbatched = 0;
    }

    /// `sweeps` events per series (sweep k at `k * step_secs`; each sweep visits the series
    /// in a shuffled order), in bodies of [`RECORDS_PER_BODY`] records dealt round-robin to
    /// the partitions.
    fn sweeps(&mut self, engine: &mut Engine, series: usize, sweeps: usize, step_secs: i64) {
        let mut rng = SplitMix64(0x5eed);
        let mut order: Vec<usize> = (0..series).collect();
        let mut body = 0usize;
        for k in 0..sweeps {
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            for chunk in order.chunks(RECORDS_PER_BODY) {
                let mut text = String::with_capacity(chunk.len() * 700 + 16);
                text.push_str(r#"{"records":["#);
                for (j, &s) in chunk.iter().enumerate() {
                    if j > 0 {
                        text.push(',');
                    }
                    record(&mut text, s, k as i64 * step_secs, 1 + (s + k) as u64 % 16);
                }
                text.push_str("]}");
                let p = body % self.next.len();
                self.ingest(engine, p, text, chunk.len());
                body += 1;
            }
        }
        self.end_batch(engine);
    }

    /// One more event for series 0 in every partition: each becomes changed.
    fn touch(&mut self, engine: &mut Engine, secs: i64) {
        for p in 0..self.next.len() {
            let mut text = String::from(r#"{"records":["#);
            record(&mut text, 0, secs, 3);
            text.push_str("]}");
            self.ingest(engine, p, text, 1);
        }
        self.end_batch(engine);
    }
}

fn series_held(engine: &Engine) -> usize {
    engine
        .partitions()
        .iter()
        .flat_map(|p| &p.queries)
        .map(|q| q.series())
        .sum()
}

fn assert_nothing_dropped(engine: &Engine, what: &str) {
    for (spec, stats) in engine.specs().iter().zip(engine.query_totals()) {
        assert_eq!(
            stats.series_dropped, 0,
            "{what}: {} dropped series: the figures would understate the state",
            spec.name
        );
    }
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

/// Encode, restore and save of one partition holding `series` series of `kql`, each
/// series fed `sweeps` events `step_secs` apart.
fn snapshot_group(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    kql: &str,
    series: usize,
    sweeps: usize,
    step_secs: i64,
) {
    let started = Instant::now();
    let specs = vec![spec(name, kql)];
    let mut e = engine(&specs);
    let mut feed = Feeder::new(1);
    feed.sweeps(&mut e, series, sweeps, step_secs);
    assert_nothing_dropped(&e, name);
    assert_eq!(series_held(&e), series, "{name}: series held after set-up");
    let last = (sweeps as i64 - 1) * step_secs;
    let snaps = e.snapshot();
    let bytes: usize = snaps.iter().map(|s| s.bytes.len()).sum();
    let group = format!("{name}_{series}");
    eprintln!(
        "{group}: {} records, {series} series, snapshot {bytes} bytes ({:.1} MB, {:.1} B/series); set-up {:.1} s",
        feed.records,
        mb(bytes),
        bytes as f64 / series as f64,
        started.elapsed().as_secs_f64()
    );

    let mut g = c.benchmark_group(&group);
    if series >= 100_000 {
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(10));
    }
    g.throughput(Throughput::Elements(series as u64));
    g.bench_function("snapshot", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                feed.touch(&mut e, last);
                let t = Instant::now();
                let s = e.snapshot();
                total += t.elapsed();
                assert_eq!(s.len(), 1, "the touched partition is snapshotted");
                drop(s);
            }
            total
        })
    });
    let encoded = &snaps[0].bytes;
    g.bench_function("restore", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut fresh = engine(&specs);
                let t = Instant::now();
                fresh.restore(encoded).expect("the snapshot restores");
                total += t.elapsed();
                drop(fresh);
            }
            total
        })
    });
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = LocalStateStore::new(dir.path());
    let shared: Arc<[Snapshot]> = snaps.clone().into();
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("save", |b| {
        b.iter_custom(|iters| save_n(rt, &store, &shared, iters))
    });
    g.finish();
}

fn save_n(
    rt: &tokio::runtime::Runtime,
    store: &LocalStateStore,
    snaps: &Arc<[Snapshot]>,
    iters: u64,
) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        rt.block_on(store.save(snaps.clone()))
            .expect("the snapshot is stored");
    }
    t.elapsed()
}

fn snapshots(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    for series in [10_000, 1_000_000] {
        snapshot_group(c, &rt, "totals", TOTALS, series, 1, 60);
    }
    // Four panes per series, 15 minutes apart, all inside the day.
    snapshot_group(c, &rt, "sliding", SLIDING, 10_000, 4, 15 * 60);
}

/// The fixture's bodies as events dealt round-robin to `partitions` partitions.
fn fixture_engine(specs: &[QuerySpec], partitions: usize) -> Engine {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read(root.join("tests/fixtures/aml/bodies.ndjson")).expect("the fixture");
    let mut e = engine(specs);
    let mut next = vec![0i64; partitions];
    for (i, line) in text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let p = i % partitions;
        let seq = next[p];
        next[p] += 1;
        let event = Event::new(
            line.to_vec(),
            Position {
                partition: Arc::from(p.to_string().as_str()),
                offset: seq * 100,
                sequence_number: seq,
                enqueued_time: None,
            },
        );
        e.ingest(SOURCE, &event);
        if i % BODIES_PER_BATCH == BODIES_PER_BATCH - 1 {
            e.end_batch().expect("no dead-letter file");
        }
    }
    e.end_batch().expect("no dead-letter file");
    e
}

/// Prints the memory proxies of an engine (which it snapshots: every partition is changed
/// after set-up), against `base` (those of one partition), benches its `exports`, and
/// returns the proxies: series summed over partitions and snapshot bytes.
fn exports_bench(
    c: &mut Criterion,
    group: &str,
    mut e: Engine,
    base: Option<(usize, usize)>,
) -> (usize, usize) {
    assert_nothing_dropped(&e, group);
    let series = series_held(&e);
    let snaps = e.snapshot();
    assert_eq!(
        snaps.len(),
        e.partitions().len(),
        "every partition is snapshotted"
    );
    let bytes: usize = snaps.iter().map(|s| s.bytes.len()).sum();
    drop(snaps);
    let rows: usize = e.exports().iter().map(|(_, t)| t.rows.len()).sum();
    let (base_series, base_bytes) = base.unwrap_or((series, bytes));
    eprintln!(
        "{group}: {} partitions, {series} series summed over partitions ({:.2}x of 1 partition), \
         snapshots {bytes} bytes ({:.2} MB, {:.2}x of 1 partition), {rows} exported rows",
        e.partitions().len(),
        series as f64 / base_series as f64,
        mb(bytes),
        bytes as f64 / base_bytes as f64,
    );
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_function("exports", |b| b.iter(|| e.exports()));
    g.finish();
    (series, bytes)
}

fn partitions(c: &mut Criterion) {
    let specs = pack();
    let mut base = None;
    for p in [1, 4, 32] {
        let started = Instant::now();
        let mut e = engine(&specs);
        let mut feed = Feeder::new(p);
        // 10,000 clusters, 16 events each, a minute apart (inside every window of the pack).
        feed.sweeps(&mut e, 10_000, 16, 60);
        eprintln!(
            "partitions_{p}: {} records; set-up {:.1} s",
            feed.records,
            started.elapsed().as_secs_f64()
        );
        let proxies = exports_bench(c, &format!("partitions_{p}"), e, base);
        base.get_or_insert(proxies);
    }
    let mut base = None;
    for p in [1, 4, 32] {
        let e = fixture_engine(&specs, p);
        let proxies = exports_bench(c, &format!("fixture_partitions_{p}"), e, base);
        base.get_or_insert(proxies);
    }
}

/// Global results: a replica owning a third of `p` partitions and holding copies of the
/// rest, decoded from their snapshots as the refresher decodes them. Its exports merge as
/// many partitions as one engine holding them all (so they cost the same); a refresh that
/// finds every copy changed decodes all of them (off the engine's thread).
fn global(c: &mut Criterion) {
    let specs = pack();
    for p in [8, 32] {
        let mut all = engine(&specs);
        let mut feed = Feeder::new(p);
        feed.sweeps(&mut all, 10_000, 16, 60);
        let snaps = all.snapshot();
        let bytes: usize = snaps.iter().map(|s| s.bytes.len()).sum();
        let mut replica = engine(&specs);
        let decoder = replica.decoder();
        let started = Instant::now();
        let mut copies = Vec::new();
        for (i, s) in snaps.iter().enumerate() {
            if i % 3 == 0 {
                replica.restore(&s.bytes).expect("restores");
            } else {
                copies.push(decoder.decode(&s.bytes, None).expect("decodes").part);
            }
        }
        let decode = started.elapsed();
        for part in copies {
            replica.install_peer(part);
        }
        eprintln!(
            "global_{p}: {} own partitions + {} copies (10,000 clusters over {p} partitions); \
             snapshots {:.1} MB; restoring and decoding all of them {:.2} s",
            replica.partitions().len(),
            replica.peers().len(),
            mb(bytes),
            decode.as_secs_f64()
        );
        let (mine, theirs) = (replica.exports(), all.exports());
        for ((spec, got), (_, want)) in mine.iter().zip(&theirs) {
            assert_eq!(
                got.rows.len(),
                want.rows.len(),
                "{}: global rows",
                spec.name
            );
        }
        let rows: usize = mine.iter().map(|(_, t)| t.rows.len()).sum();
        let mut g = c.benchmark_group(format!("global_{p}"));
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_function("exports_global", |b| b.iter(|| replica.exports()));
        g.bench_function("exports_one_engine", |b| b.iter(|| all.exports()));
        g.finish();
    }
}

criterion_group!(benches, snapshots, partitions, global);
criterion_main!(benches);
