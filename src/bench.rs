//! `hubwatch bench`: the end-to-end replay benchmark. In one process, on the same bytes, it
//! measures (1) the service path — file source → engine with a query pack → acknowledgements
//! — and (2) the raw JSON parse floor (`serde_json::Value` per body), and prints the ratio,
//! MB/s, records/s and peak RSS. Ratios within one run are what to compare: these machines
//! are noisy.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;

use crate::config::{Settings, SourceSettings};

pub struct Report {
    pub bytes: u64,
    pub bodies: u64,
    pub records: u64,
    pub e2e_secs: f64,
    pub floor_secs: f64,
    pub rss_after_e2e_kib: u64,
    pub rss_peak_kib: u64,
}

impl Report {
    pub fn print(&self) {
        let mb = self.bytes as f64 / 1e6;
        let e2e = mb / self.e2e_secs;
        let floor = mb / self.floor_secs;
        println!(
            "input:        {:.1} MB, {} bodies, {} records",
            mb, self.bodies, self.records
        );
        println!(
            "end-to-end:   {:.2} s  {:.1} MB/s  {:.0} records/s",
            self.e2e_secs,
            e2e,
            self.records as f64 / self.e2e_secs
        );
        println!(
            "JSON floor:   {:.2} s  {:.1} MB/s  {:.0} records/s",
            self.floor_secs,
            floor,
            self.records as f64 / self.floor_secs
        );
        println!(
            "ratio:        {:.2}x of the floor (target >= 0.5x)",
            e2e / floor
        );
        println!(
            "peak RSS:     {} MiB after end-to-end, {} MiB overall",
            self.rss_after_e2e_kib / 1024,
            self.rss_peak_kib / 1024
        );
    }
}

/// Runs the benchmark on `input` repeated `repeat` times with the queries of `settings`.
pub async fn run(mut settings: Settings, input: &Path, repeat: usize) -> anyhow::Result<Report> {
    let original = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let dir = tempfile_dir()?;
    let path = dir.join("bench-input.ndjson");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for _ in 0..repeat {
            f.write_all(&original)?;
            if !original.ends_with(b"\n") {
                f.write_all(b"\n")?;
            }
        }
        f.flush()?;
    }
    let bytes = std::fs::metadata(&path)?.len();
    drop(original);

    settings.sources = vec![SourceSettings::File {
        name: "bench".into(),
        paths: vec![path.clone()],
        follow: false,
    }];
    settings.listen = "127.0.0.1:0".into();
    settings.dead_letter = Some(dir.join("dead-letter.ndjson"));
    settings.checkpoint = None;
    let (trigger, shutdown) = crate::shutdown::channel();
    let started = Instant::now();
    let mut running = crate::app::start(settings, shutdown).await?;
    running.inputs_done().await;
    let e2e_secs = started.elapsed().as_secs_f64();
    let metrics = running.metrics.clone();
    trigger.trigger();
    running.wait().await?;
    let rss_after_e2e_kib = peak_rss_kib();
    let records: u64 = metrics
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == "hubwatch_parse_records_total")
        .flat_map(|f| {
            f.get_metric()
                .iter()
                .map(|m| m.get_counter().get_value() as u64)
                .collect::<Vec<_>>()
        })
        .sum();
    let bodies = metrics.parse.bodies.get();

    // The floor: read the same file and parse every line into a JSON value.
    let data = std::fs::read(&path)?;
    let started = Instant::now();
    let mut objects = 0u64;
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
            objects += v.is_object() as u64;
        }
    }
    let floor_secs = started.elapsed().as_secs_f64();
    std::hint::black_box(objects);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Report {
        bytes,
        bodies,
        records,
        e2e_secs,
        floor_secs,
        rss_after_e2e_kib,
        rss_peak_kib: peak_rss_kib(),
    })
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("hubwatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Peak resident set size of this process (Linux `VmHWM`), in KiB; 0 elsewhere.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// What `bench --via amqp` measured.
pub struct AmqpReport {
    pub bytes: u64,
    pub events: u64,
    pub file_secs: f64,
    pub amqp_secs: f64,
}

impl AmqpReport {
    pub fn print(&self) {
        let mb = self.bytes as f64 / 1e6;
        println!("input:        {:.1} MB, {} events", mb, self.events);
        println!(
            "file replay:  {:.2} s  {:.1} MB/s  {:.0} events/s",
            self.file_secs,
            mb / self.file_secs,
            self.events as f64 / self.file_secs
        );
        println!(
            "AMQP:         {:.2} s  {:.1} MB/s  {:.0} events/s",
            self.amqp_secs,
            mb / self.amqp_secs,
            self.events as f64 / self.amqp_secs
        );
        println!(
            "ratio:        {:.2}x of file replay (target >= 0.7x)",
            self.file_secs / self.amqp_secs
        );
    }
}

/// Emulator → AMQP source → pipeline, against file replay of the same bodies in the same
/// run. The bodies are published into the emulator before the clock starts, so the figure
/// is the consumer's, not the producer's.
pub async fn run_amqp(
    settings: Settings,
    input: &Path,
    repeat: usize,
    partitions: u32,
) -> anyhow::Result<AmqpReport> {
    use crate::emulator::{Emulator, EmulatorConfig};
    use crate::source::amqp::{AmqpSourceConfig, StartPosition};

    let file = run(clone_settings(&settings)?, input, repeat).await?;
    let original = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let lines: Vec<&[u8]> = original
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let hub = "bench";
    let mut cfg = EmulatorConfig::single_hub(hub, partitions);
    cfg.listen = "127.0.0.1:0".into();
    let emulator = Emulator::start(cfg).await?;
    let mut events = 0u64;
    for _ in 0..repeat {
        for l in &lines {
            emulator.publish(hub, None, l.to_vec())?;
            events += 1;
        }
    }
    let mut s = clone_settings(&settings)?;
    let mut source = AmqpSourceConfig::new("bench", hub);
    source.connection_string = Some(emulator.connection_string(hub));
    source.start = StartPosition::Earliest;
    s.sources = vec![crate::config::SourceSettings::Amqp(source)];
    s.listen = "127.0.0.1:0".into();
    s.checkpoint = None;
    s.dead_letter = None;
    let (trigger, shutdown) = crate::shutdown::channel();
    let started = Instant::now();
    let running = crate::app::start(s, shutdown).await?;
    let counter = running.metrics.source.events.with_label_values(&["bench"]);
    let deadline = Instant::now() + std::time::Duration::from_secs(600);
    while counter.get() < events {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the AMQP source did not deliver every event within 10 minutes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let amqp_secs = started.elapsed().as_secs_f64();
    trigger.trigger();
    running.wait().await?;
    emulator.shutdown().await;
    Ok(AmqpReport {
        bytes: file.bytes,
        events,
        file_secs: file.e2e_secs,
        amqp_secs,
    })
}

/// Settings hold compiled queries; the benchmark runs them twice.
fn clone_settings(s: &Settings) -> anyhow::Result<Settings> {
    Ok(Settings {
        listen: s.listen.clone(),
        engine: s.engine.clone(),
        dead_letter: s.dead_letter.clone(),
        checkpoint: s.checkpoint.clone(),
        sources: s.sources.clone(),
        queries: s.queries.clone(),
    })
}
