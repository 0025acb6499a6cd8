//! `hubwatch demo`: everything in one process — the Event Hubs emulator, the synthetic Azure
//! ML estate publishing `{"records":[…]}` bodies into it, and the real AMQP consumer feeding
//! the default query pack — with `/metrics` and the query API served, and a compact summary
//! printed every few seconds. Ctrl-C drains cleanly.
//!
//! Event time never runs ahead of the wall clock: the estate starts in the past, publishes
//! its first two hours at once (so every window has data from the first summary on), fast-
//! forwards at `speed` until it meets the wall clock, and follows the wall clock from there.
//! Its files (configuration, dead letters) live in a temporary folder removed on exit.

use std::path::{Path, PathBuf};
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
/// History published at once, before the live part.
const BACKFILL: i64 = 2 * TICKS_PER_HOUR;
/// About how long (wall time) the live part runs at `speed` before it meets the wall clock.
const FAST_FORWARD_SECONDS: i64 = 600;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Admin server address.
    pub listen: String,
    /// Event-time seconds simulated per wall-clock second while the estate catches up with
    /// the wall clock (about ten minutes); then it follows the wall clock.
    pub speed: u32,
    /// Partitions of the demo hub.
    pub partitions: u32,
    /// Seconds between summaries.
    pub summary_every: Duration,
    /// Stop after this long (tests); runs until Ctrl-C when `None`.
    pub run_for: Option<Duration>,
    /// Keep the temporary folder (configuration, dead letters) on exit.
    pub keep_temp: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            listen: "127.0.0.1:9393".into(),
            speed: 10,
            partitions: 4,
            summary_every: Duration::from_secs(5),
            run_for: None,
            keep_temp: false,
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

    // Dropped last: removes the folder once the service has closed its files.
    let temp = TempDir::create(opts.keep_temp)?;
    let workload_config = WorkloadConfig::default();
    let settings = settings(&opts, &emulator, temp.path())?;
    println!(
        "dead letters: {} — about {:.1} % of the bodies are broken on purpose, to show \
         hubwatch_parse_rejected_total and the dead-letter file; {} is {}",
        temp.path().join(DEAD_LETTERS).display(),
        workload_config.broken_share * 100.0,
        temp.path().display(),
        if opts.keep_temp {
            "kept on exit"
        } else {
            "removed on exit (--keep-temp keeps it)"
        }
    );
    let (trigger, shutdown) = crate::shutdown::channel();
    let running = crate::app::start(settings, shutdown.clone()).await?;
    println!(
        "hubwatch: http://{}/metrics  http://{}/api/v1/queries",
        running.admin_addr, running.admin_addr
    );

    let clock = EventClock::new(wall_clock_ticks(), opts.speed);
    println!("{}", clock.describe());
    let mut workload = Workload::new(workload_config, clock.live_start - BACKFILL);
    let mut published = 0u64;
    for body in workload.step(BACKFILL) {
        emulator.publish(HUB, None, body)?;
        published += 1;
    }

    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut summary = tokio::time::interval(opts.summary_every);
    summary.tick().await;
    let started = tokio::time::Instant::now();
    let deadline = opts.run_for.map(|d| started + d);
    let mut last_events = 0u64;
    let mut last_at = started;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let target = clock.at(started.elapsed(), wall_clock_ticks());
                if target > workload.now() {
                    for body in workload.step(target - workload.now()) {
                        emulator.publish(HUB, None, body)?;
                        published += 1;
                    }
                }
            }
            _ = summary.tick() => {
                let events: u64 = running.metrics.source.events.with_label_values(&["demo"]).get();
                let secs = last_at.elapsed().as_secs_f64().max(0.001);
                let rate = (events - last_events) as f64 / secs;
                last_events = events;
                last_at = tokio::time::Instant::now();
                let lag = published.saturating_sub(events);
                let rejected = running.metrics.parse.dead_letters.get();
                if let Some(results) = running.results().await {
                    print_summary(&results, rate, lag, rejected);
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
    let (dir, kept) = (temp.path().to_path_buf(), opts.keep_temp);
    drop(temp);
    if kept {
        println!(
            "done; dead letters kept in {}",
            dir.join(DEAD_LETTERS).display()
        );
    } else {
        println!("done; removed {}", dir.display());
    }
    Ok(())
}

const DEAD_LETTERS: &str = "dead-letter.ndjson";

/// The demo's folder in the system's temporary directory: its configuration and its
/// dead-letter file. Removed when dropped, unless kept — also when the demo fails.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    fn create(keep: bool) -> anyhow::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("hubwatch-demo-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir { path, keep })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Where the estate's event time is: `speed` times the wall time elapsed since it went
/// live, from `live_start` (behind the wall clock by as much as that gains in
/// [`FAST_FORWARD_SECONDS`]), and never past the wall clock.
struct EventClock {
    live_start: i64,
    speed: i64,
}

impl EventClock {
    fn new(wall_now: i64, speed: u32) -> EventClock {
        let speed = i64::from(speed.max(1));
        EventClock {
            live_start: wall_now - (speed - 1) * FAST_FORWARD_SECONDS * TICKS_PER_SECOND,
            speed,
        }
    }

    /// The event time `elapsed` (wall time) after going live, with the wall clock at `wall_now`.
    fn at(&self, elapsed: Duration, wall_now: i64) -> i64 {
        let gained = (elapsed.as_nanos() / 100) as i64 * self.speed;
        (self.live_start + gained).min(wall_now)
    }

    /// One line for the console: where event time starts and how it moves.
    fn describe(&self) -> String {
        let behind = |ticks: i64| {
            let minutes = ticks / (60 * TICKS_PER_SECOND);
            if minutes % 60 == 0 {
                format!("{} h", minutes / 60)
            } else {
                format!("{} h {:02} min", minutes / 60, minutes % 60)
            }
        };
        let backfill = behind(BACKFILL);
        if self.speed == 1 {
            return format!(
                "event time: the last {backfill} published at once, then in step with the wall clock"
            );
        }
        format!(
            "event time: {backfill} of history published at once, ending {} behind the wall clock; \
             then {}x until it meets the wall clock (in about {} min), then in step with it",
            behind((self.speed - 1) * FAST_FORWARD_SECONDS * TICKS_PER_SECOND),
            self.speed,
            FAST_FORWARD_SECONDS / 60
        )
    }
}

fn settings(opts: &DemoOptions, emulator: &Emulator, dir: &Path) -> anyhow::Result<Settings> {
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
    settings.dead_letter = Some(dir.join(DEAD_LETTERS));
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

fn print_summary(
    results: &[(crate::pipeline::QuerySpec, ResultTable)],
    rate: f64,
    lag: u64,
    rejected: u64,
) {
    let find = |n: &str| results.iter().find(|(s, _)| &*s.name == n).map(|(_, t)| t);
    let mut line = format!("{rate:>8.0} events/s  lag {lag:>5} events  rejected {rejected:>3}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_fast_forwards_to_the_wall_clock_and_never_passes_it() {
        let wall = 1_000_000 * TICKS_PER_SECOND;
        let clock = EventClock::new(wall, 10);
        // 9 × 600 s behind: ten minutes at 10× gain it back.
        assert_eq!(clock.live_start, wall - 5400 * TICKS_PER_SECOND);
        let secs = |s: u64| Duration::from_secs(s);
        let at = |s: u64| clock.at(secs(s), wall + s as i64 * TICKS_PER_SECOND);
        assert_eq!(at(0), clock.live_start);
        assert_eq!(at(60), clock.live_start + 600 * TICKS_PER_SECOND, "10x");
        assert!(at(599) < wall + 599 * TICKS_PER_SECOND);
        for s in [600, 601, 3600, 86_400] {
            assert_eq!(
                at(s),
                wall + s as i64 * TICKS_PER_SECOND,
                "in step after {s} s"
            );
        }
        assert!(
            clock.describe().contains("1 h 30 min behind"),
            "{}",
            clock.describe()
        );

        let real_time = EventClock::new(wall, 1);
        assert_eq!(real_time.live_start, wall);
        assert_eq!(
            real_time.at(secs(5), wall + 5 * TICKS_PER_SECOND),
            wall + 5 * TICKS_PER_SECOND
        );
        assert!(real_time.describe().contains("in step with the wall clock"));
    }

    #[test]
    fn the_temporary_folder_goes_unless_kept() {
        let t = TempDir {
            path: std::env::temp_dir().join(format!("hubwatch-demo-test-{}", std::process::id())),
            keep: false,
        };
        std::fs::create_dir_all(t.path()).unwrap();
        std::fs::write(t.path().join(DEAD_LETTERS), "{}\n").unwrap();
        let path = t.path().to_path_buf();
        drop(t);
        assert!(!path.exists());
        let kept = TempDir {
            path: path.clone(),
            keep: true,
        };
        std::fs::create_dir_all(kept.path()).unwrap();
        drop(kept);
        assert!(path.exists());
        std::fs::remove_dir_all(&path).unwrap();
    }
}
