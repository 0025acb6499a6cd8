//! What a live series costs in memory, and that the series cap bounds it.
//!
//! A counting allocator measures the bytes the engine holds (live allocations, not RSS,
//! which the allocator's own caching blurs), before and after feeding it:
//!
//! - `sliding`: `where TimeGenerated > ago(1d) | summarize count() by Workspace,
//!   ClusterName` over n distinct series, each seen twice, six hours apart (two panes), all
//!   within the window: bytes per live series, everything included (the key, its strings,
//!   the panes and their aggregate states, the hash table).
//! - `sliding-unique`: the same with a cluster name per series (as a job id would be), so
//!   that the second column's strings never repeat.
//! - `capped`: the same query with `max_series` = 1 M fed 10 M distinct series: memory
//!   stays that of 1 M, and the 9 M beyond the cap are counted as dropped.
//!
//! Every figure comes from the real path: JSON bodies parsed by the engine, the query
//! compiled from KQL.
//!
//!     cargo bench --bench series_memory              # 100 k, 1 M (twice); 10 M against the cap
//!     cargo bench --bench series_memory -- 250000    # one size

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hubwatch::kql::check::compile;
use hubwatch::pipeline::{Engine, EngineOptions, QuerySpec};
use hubwatch::schema::Schemas;
use hubwatch::source::{Event, Position};
use hubwatch::window::QueryLimits;

/// The system allocator, counting the bytes it has handed out and not taken back.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const SLIDING: &str = r#"AmlComputeClusterEvent
| where TimeGenerated > ago(1d)
| summarize events = count() by Workspace = tostring(split(_ResourceId, "/")[8]), ClusterName"#;

const RECORDS_PER_BODY: usize = 100;

fn engine(max_series: usize) -> Engine {
    let plan = compile(SLIDING, &Schemas::embedded()).expect("the query compiles");
    let spec = QuerySpec {
        name: Arc::from("sliding"),
        description: String::new(),
        kql: SLIDING.to_string(),
        plan: Arc::new(plan),
        limits: QueryLimits {
            max_series,
            ..QueryLimits::default()
        },
    };
    Engine::new(Schemas::embedded(), vec![spec], EngineOptions::default())
}

/// Which values the second key column takes.
#[derive(Clone, Copy)]
enum Clusters {
    /// A hundred names, each in every workspace (key strings repeat).
    Shared,
    /// A name per series, as a job id would be (they never repeat).
    Unique,
}

/// Series `s` (workspace `s / 100`, cluster `s % 100` or `s`) at `secs` after
/// 2024-05-10T00:00Z.
fn record(out: &mut String, s: usize, secs: usize, clusters: Clusters) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        concat!(
            r#"{{"time":"2024-05-10T{:02}:{:02}:{:02}Z","#,
            r#""resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/WS-{:06}","#,
            r#""category":"AmlComputeClusterEvent","properties":{{"ClusterName":"cluster-{:02}"}}}}"#
        ),
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        s / 100,
        match clusters {
            Clusters::Shared => s % 100,
            Clusters::Unique => s,
        },
    );
}

/// Feeds every series `0..n` once at each of `times` (seconds into the day), in bodies of
/// 100 records; the time moves on by a second every 10,000 series, so the clock advances.
fn feed(engine: &mut Engine, n: usize, times: &[usize], clusters: Clusters) {
    let partition: Arc<str> = Arc::from("0");
    let mut seq = 0i64;
    for &t in times {
        let mut s = 0;
        while s < n {
            let mut body = String::from("{\"records\":[");
            for i in s..(s + RECORDS_PER_BODY).min(n) {
                if i > s {
                    body.push(',');
                }
                record(&mut body, i, t + i / 10_000, clusters);
            }
            body.push_str("]}");
            s += RECORDS_PER_BODY;
            let event = Event::new(
                body.into_bytes(),
                Position {
                    partition: partition.clone(),
                    offset: seq,
                    sequence_number: seq,
                    enqueued_time: None,
                },
            );
            seq += 1;
            engine.ingest("bench", &event);
            if seq % 16 == 0 {
                engine.end_batch().expect("no dead-letter file");
            }
        }
    }
    engine.end_batch().expect("no dead-letter file");
}

fn series(engine: &Engine) -> (u64, u64) {
    let m = &engine.query_totals()[0];
    let held: usize = engine.series_held()[0];
    (held as u64, m.series_dropped)
}

fn sliding(n: usize, clusters: Clusters) {
    let before = live();
    let mut e = engine(n.max(1));
    let empty = live();
    let started = Instant::now();
    feed(&mut e, n, &[3600, 6 * 3600 + 3600], clusters);
    let held = live() - empty;
    let (series, dropped) = series(&e);
    assert_eq!((series, dropped), (n as u64, 0), "every series held");
    let name = match clusters {
        Clusters::Shared => "sliding",
        Clusters::Unique => "sliding-unique",
    };
    println!(
        "{name}/{n}: {series} series, {:.1} MB held, {:.0} B per series (engine alone {} kB); fed in {:.1} s",
        held as f64 / 1e6,
        held as f64 / n as f64,
        (empty - before) / 1000,
        started.elapsed().as_secs_f64()
    );
}

fn capped(n: usize, cap: usize) {
    let mut e = engine(cap);
    let empty = live();
    let started = Instant::now();
    feed(&mut e, n, &[3600], Clusters::Shared);
    let held = live() - empty;
    let (series, dropped) = series(&e);
    assert_eq!(series, cap as u64, "the cap is full");
    assert_eq!(
        dropped,
        (n - cap) as u64,
        "every series beyond the cap counted"
    );
    println!(
        "capped/{n} (max_series {cap}): {series} series held, {dropped} dropped and counted, {:.1} MB held ({:.0} B per held series); fed in {:.1} s",
        held as f64 / 1e6,
        held as f64 / cap as f64,
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a number picks one size.
    let sizes: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    if !sizes.is_empty() {
        for n in sizes {
            sliding(n, Clusters::Shared);
        }
        return;
    }
    for n in [100_000, 1_000_000] {
        sliding(n, Clusters::Shared);
    }
    sliding(1_000_000, Clusters::Unique);
    capped(10_000_000, 1_000_000);
}
