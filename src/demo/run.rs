//! `hubwatch demo`: everything in one process — the Event Hubs emulator, the synthetic Azure
//! ML estate publishing `{"records":[…]}` bodies into it, and the real AMQP consumer feeding
//! the default query pack — with `/metrics` and the query API served, and a compact summary
//! printed every few seconds. Ctrl-C drains cleanly.

use std::time::Duration;

use anyhow::Context as _;

use super::workload::{Workload, WorkloadConfig};
use crate::config::{Settings, SourceSettings};
use crate::emulator::{Emulator, EmulatorConfig};
use crate::schema::Schemas;
use crate::source::amqp::{AmqpSourceConfig, StartPosition};
use crate::time::{TICKS_PER_HOUR, TICKS_PER_SECOND};
use crate::value::Value;
use crate::window::ResultTable;

const PACK: &str = include_str!("../../deploy/config/aml-queries.toml");
const HUB: &str = "insights-logs-aml";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Admin server address.
    pub listen: String,
    /// Event-time seconds simulated per wall-clock second.
    pub speed: u32,
    /// Partitions of the demo hub.
    pub partitions: u32,
    /// Seconds between summaries.
    pub summary_every: Duration,
    /// Stop after this long (tests); runs until Ctrl-C when `None`.
    pub run_for: Option<Duration>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            listen: "127.0.0.1:9393".into(),
            speed: 10,
            partitions: 4,
            summary_every: Duration::from_secs(5),
            run_for: None,
        }
    }
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let emulator = Emulator::start(EmulatorConfig::single_hub(HUB, opts.partitions))
        .await
        .context("starting the emulator")?;
    println!(
        "emulator: amqp://{} (hub {HUB}, {} partitions)",
        emulator.local_addr(),
        opts.partitions
    );

    let settings = settings(&opts, &emulator)?;
    let (trigger, shutdown) = crate::shutdown::channel();
    let running = crate::app::start(settings, shutdown.clone()).await?;
    println!(
        "hubwatch: http://{}/metrics  http://{}/api/v1/queries",
        running.admin_addr, running.admin_addr
    );

    // The estate starts two hours in the past, so every window has data from the first
    // summary on; then it runs `speed` times faster than the wall clock.
    let now = wall_clock_ticks();
    let mut workload = Workload::new(WorkloadConfig::default(), now - 2 * TICKS_PER_HOUR);
    let mut published = 0u64;
    for body in workload.step(2 * TICKS_PER_HOUR) {
        emulator.publish(HUB, None, body)?;
        published += 1;
    }

    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut summary = tokio::time::interval(opts.summary_every);
    summary.tick().await;
    let deadline = opts.run_for.map(|d| tokio::time::Instant::now() + d);
    let mut last_events = 0u64;
    let mut last_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for body in workload.step(opts.speed as i64 * TICKS_PER_SECOND / 10) {
                    emulator.publish(HUB, None, body)?;
                    published += 1;
                }
            }
            _ = summary.tick() => {
                let events: u64 = running.metrics.source.events.with_label_values(&["demo"]).get();
                let secs = last_at.elapsed().as_secs_f64().max(0.001);
                let rate = (events - last_events) as f64 / secs;
                last_events = events;
                last_at = tokio::time::Instant::now();
                let lag = published.saturating_sub(events);
                if let Some(results) = running.results().await {
                    print_summary(&results, rate, lag);
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
        }
    }
    println!("draining: stopping the consumer, committing positions …");
    trigger.trigger();
    running.wait().await?;
    emulator.shutdown().await;
    println!("done");
    Ok(())
}

fn settings(opts: &DemoOptions, emulator: &Emulator) -> anyhow::Result<Settings> {
    let dir = std::env::temp_dir().join(format!("hubwatch-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("aml-queries.toml"), PACK)?;
    let config = dir.join("demo.toml");
    std::fs::write(
        &config,
        format!(
            "query_files = [\"aml-queries.toml\"]\n[export]\nlisten = {:?}\n",
            opts.listen
        ),
    )?;
    let mut settings =
        crate::config::load(&config, &Schemas::embedded()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut source = AmqpSourceConfig::new("demo", HUB);
    source.connection_string = Some(emulator.connection_string(HUB));
    source.start = StartPosition::Earliest;
    settings.sources = vec![SourceSettings::Amqp(source)];
    settings.dead_letter = Some(dir.join("dead-letter.ndjson"));
    Ok(settings)
}

fn wall_clock_ticks() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_nanos() / 100) as i64
}

fn column(t: &ResultTable, name: &str) -> Option<usize> {
    t.columns.iter().position(|c| &*c.name == name)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn print_summary(results: &[(crate::pipeline::QuerySpec, ResultTable)], rate: f64, lag: u64) {
    let find = |n: &str| results.iter().find(|(s, _)| &*s.name == n).map(|(_, t)| t);
    let mut line = format!("{rate:>8.0} events/s  lag {lag:>5} events");
    if let Some(t) = find("aml_cluster_nodes") {
        if let (Some(ws), Some(run)) = (column(t, "Workspace"), column(t, "RunningNodes")) {
            let mut per_ws: Vec<(String, f64)> = Vec::new();
            for r in &t.rows {
                let w = r[ws].to_text();
                match per_ws.iter_mut().find(|(n, _)| *n == w) {
                    Some(e) => e.1 += num(&r[run]),
                    None => per_ws.push((w, num(&r[run]))),
                }
            }
            per_ws.sort_by(|a, b| b.1.total_cmp(&a.1));
            let top: Vec<String> = per_ws
                .iter()
                .take(3)
                .map(|(w, n)| format!("{w} {n:.0}"))
                .collect();
            line.push_str(&format!("  running nodes: {}", top.join(", ")));
        }
    }
    if let Some(t) = find("aml_job_failures_15m") {
        if let (Some(f), Some(n)) = (column(t, "failedJobs"), column(t, "finishedJobs")) {
            let failed: f64 = t.rows.iter().map(|r| num(&r[f])).sum();
            let finished: f64 = t.rows.iter().map(|r| num(&r[n])).sum();
            if finished > 0.0 {
                line.push_str(&format!(
                    "  failed jobs 15m: {:.0}/{:.0} ({:.0} %)",
                    failed,
                    finished,
                    100.0 * failed / finished
                ));
            }
        }
    }
    println!("{line}");
}
