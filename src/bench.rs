//! `hubwatch bench`: the end-to-end replay benchmark. In one process, on the same bytes, it
//! measures (1) the service path — file source → engine with a query pack → acknowledgements
//! — and (2) the raw JSON parse floor (`serde_json::Value` per body), and prints the ratio,
//! MB/s, records/s and peak RSS. Ratios within one run are what to compare: these machines
//! are noisy.
//!
//! `--checkpoint` ([`run_checkpoint`]) measures instead what durable window state costs: the
//! same replay with a `[checkpoint]` directory (snapshot rounds every interval, each
//! acknowledging the batches it covers), against plain replays before and after it in the
//! same process, with the rounds and bytes stored. `--via amqp|kafka` compare a broker
//! source with file replay.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;

use crate::config::{CheckpointSettings, Settings, SourceSettings};

pub struct Report {
    pub bytes: u64,
    pub bodies: u64,
    pub records: u64,
    pub e2e_secs: f64,
    /// CPU seconds the end-to-end run used (all threads).
    pub e2e_cpu_secs: f64,
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
pub async fn run(settings: Settings, input: &Path, repeat: usize) -> anyhow::Result<Report> {
    let input = Input::write(input, repeat)?;
    let e2e = replay(settings, &input, None, "plain").await?;
    let rss_after_e2e_kib = peak_rss_kib();

    // The floor: read the same file and parse every line into a JSON value.
    let data = std::fs::read(&input.path)?;
    let started = Instant::now();
    let mut objects = 0u64;
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
            objects += v.is_object() as u64;
        }
    }
    let floor_secs = started.elapsed().as_secs_f64();
    std::hint::black_box(objects);
    Ok(Report {
        bytes: input.bytes,
        bodies: e2e.bodies,
        records: e2e.records,
        e2e_secs: e2e.secs,
        e2e_cpu_secs: e2e.cpu_secs,
        floor_secs,
        rss_after_e2e_kib,
        rss_peak_kib: peak_rss_kib(),
    })
}

/// The benchmark's input: the bodies repeated, in a directory of its own (removed on drop).
struct Input {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
    bytes: u64,
}

impl Input {
    fn write(input: &Path, repeat: usize) -> anyhow::Result<Input> {
        let original =
            std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
        let dir = tempfile_dir()?;
        let path = dir.join("bench-input.ndjson");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for _ in 0..repeat {
            f.write_all(&original)?;
            if !original.ends_with(b"\n") {
                f.write_all(b"\n")?;
            }
        }
        // On disk before any measurement: otherwise the first fsync of a checkpointed run
        // (ext4 orders data before the journal commit) waits for this file's writeback.
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        let bytes = std::fs::metadata(&path)?.len();
        Ok(Input { dir, path, bytes })
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one replay of the input through the service measured.
struct Replayed {
    secs: f64,
    /// CPU seconds of the process (all threads).
    cpu_secs: f64,
    bodies: u64,
    records: u64,
    /// Snapshot rounds the service stored, as sampled (see [`RoundSampler`]).
    rounds: u64,
    /// Their bytes.
    state_bytes: u64,
    /// Partition snapshots stored (`hubwatch_state_snapshots_total`).
    snapshots: u64,
    metrics: std::sync::Arc<crate::telemetry::Metrics>,
    /// When the engine had absorbed the whole input (before the sinks had delivered it).
    absorbed_secs: f64,
}

/// Replays `input` through the service (file source → engine → acknowledgements) until
/// the engine absorbed everything, with window state checkpointed into `checkpoint` when
/// given. `label` names this run's dead-letter file and checkpoint directory.
async fn replay(
    settings: Settings,
    input: &Input,
    checkpoint: Option<std::time::Duration>,
    label: &str,
) -> anyhow::Result<Replayed> {
    replay_until(settings, input, checkpoint, label, false).await
}

/// As [`replay`]; with `delivered`, timed until every buffered sink's receiver has
/// answered for every row it took, too.
async fn replay_until(
    mut settings: Settings,
    input: &Input,
    checkpoint: Option<std::time::Duration>,
    label: &str,
    delivered: bool,
) -> anyhow::Result<Replayed> {
    let buffered: Vec<String> = settings
        .sinks
        .iter()
        .filter(|k| matches!(k, crate::config::SinkSettings::Buffered { .. }))
        .map(|k| k.name().to_string())
        .collect();
    settings.sources = vec![SourceSettings::File {
        name: "bench".into(),
        paths: vec![input.path.clone()],
        follow: false,
    }];
    settings.listen = "127.0.0.1:0".into();
    settings.dead_letter = Some(input.dir.join(format!("dead-letter-{label}.ndjson")));
    settings.checkpoint = checkpoint.map(|interval| {
        CheckpointSettings::dir(input.dir.join(format!("checkpoint-{label}")), interval)
    });
    let (trigger, shutdown) = crate::shutdown::channel();
    let started = Instant::now();
    let cpu_before = cpu_secs();
    let mut running = crate::app::start(settings, shutdown).await?;
    let sampler = RoundSampler::start(running.metrics.clone());
    running.inputs_done().await;
    let absorbed_secs = started.elapsed().as_secs_f64();
    if delivered {
        wait_delivered(&running.metrics, &buffered).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_secs = cpu_secs() - cpu_before;
    let (rounds, state_bytes) = sampler.stop();
    let metrics = running.metrics.clone();
    trigger.trigger();
    running.wait().await?;
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
    Ok(Replayed {
        secs,
        cpu_secs,
        bodies: metrics.parse.bodies.get(),
        records,
        rounds,
        state_bytes,
        snapshots: metrics.state.snapshots.get(),
        metrics,
        absorbed_secs,
    })
}

/// Counts the snapshot rounds the service stores, and their bytes, from its state metrics:
/// each stored round sets `hubwatch_state_last_snapshot_timestamp_seconds` and
/// `hubwatch_state_snapshot_bytes` (that round's bytes). A thread samples them every
/// millisecond; rounds are seconds apart, except the last two at the end of the input,
/// which could fall within one sample (the report compares with the exact count of
/// partition snapshots stored).
struct RoundSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl RoundSampler {
    fn start(metrics: std::sync::Arc<crate::telemetry::Metrics>) -> RoundSampler {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut rounds, mut bytes, mut last) = (0u64, 0u64, 0.0f64);
            let mut sample = || {
                let at = metrics.state.last_snapshot.get();
                if at != last {
                    last = at;
                    rounds += 1;
                    bytes += metrics.state.snapshot_bytes.get().max(0) as u64;
                }
            };
            while !stopping.load(Ordering::Acquire) {
                sample();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            sample();
            (rounds, bytes)
        });
        RoundSampler { stop, thread }
    }

    /// Rounds seen and their bytes.
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread.join().unwrap_or((0, 0))
    }
}

/// One replay of `bench --checkpoint`.
pub struct CheckpointRun {
    /// The checkpoint interval; `None` for the plain replay without checkpoints.
    pub interval: Option<std::time::Duration>,
    pub secs: f64,
    pub cpu_secs: f64,
    /// Snapshot rounds stored, as sampled.
    pub rounds: u64,
    /// Partition snapshots stored (exact; the file source has one partition per file).
    pub snapshots: u64,
    /// Bytes of the sampled rounds' snapshots.
    pub state_bytes: u64,
    /// Peak RSS during this replay (reset before it, to what the process held then:
    /// `rss_start_kib`), when Linux allows the reset.
    pub rss_peak_kib: Option<u64>,
    pub rss_start_kib: u64,
}

/// What `bench --checkpoint` measured: plain replays before and after, checkpointed ones
/// between them, on the same input in the same process.
pub struct CheckpointReport {
    pub bytes: u64,
    pub bodies: u64,
    pub records: u64,
    /// In the order they ran.
    pub runs: Vec<CheckpointRun>,
}

impl CheckpointReport {
    /// Mean wall and CPU seconds of the plain replays: the baseline.
    pub fn baseline(&self) -> (f64, f64) {
        let plain: Vec<&CheckpointRun> =
            self.runs.iter().filter(|r| r.interval.is_none()).collect();
        let n = plain.len().max(1) as f64;
        (
            plain.iter().map(|r| r.secs).sum::<f64>() / n,
            plain.iter().map(|r| r.cpu_secs).sum::<f64>() / n,
        )
    }

    pub fn print(&self) {
        let mb = self.bytes as f64 / 1e6;
        let (base, base_cpu) = self.baseline();
        println!(
            "input:        {:.1} MB, {} bodies, {} records (one file: one partition)",
            mb, self.bodies, self.records
        );
        for r in &self.runs {
            let what = match r.interval {
                None => "plain".to_string(),
                Some(i) => format!("checkpoint {}s", i.as_secs_f64()),
            };
            let rss = r.rss_peak_kib.map_or("n/a".to_string(), |k| {
                format!("{} MiB (from {} MiB)", k / 1024, r.rss_start_kib / 1024)
            });
            println!(
                "{:<15} {:.2} s  {:.1} MB/s  {:.2}x of plain  CPU {:.2} s {:.2}x  rounds {} \
                 (snapshots {}), {:.1} kB state written, peak RSS {rss}",
                format!("{what}:"),
                r.secs,
                mb / r.secs,
                base / r.secs,
                r.cpu_secs,
                base_cpu / r.cpu_secs,
                r.rounds,
                r.snapshots,
                r.state_bytes as f64 / 1e3,
            );
        }
        println!(
            "ratio:        throughput (wall, then CPU seconds of all threads) against the mean \
             of the plain replays, {base:.2} s and CPU {base_cpu:.2} s (target >= 0.8x)"
        );
        for r in &self.runs {
            if let Some(i) = r.interval.filter(|i| base < 3.0 * i.as_secs_f64()) {
                println!(
                    "note:         the replay lasts {base:.2} s, under three {0}s intervals: \
                     the checkpoint {0}s figure is mostly the final round at the end of the \
                     input; a larger --repeat spans more rounds",
                    i.as_secs_f64(),
                );
            }
            if r.rounds != r.snapshots && r.interval.is_some() {
                println!(
                    "note:         {} rounds sampled but {} snapshots stored: some rounds \
                     settled within a millisecond; bytes count the sampled ones",
                    r.rounds, r.snapshots
                );
            }
        }
    }
}

/// The replay without checkpoints, then with a checkpoint directory at each of
/// `intervals`, then without again, on the same input in this process: a checkpoint's cost
/// is its throughput against the plain replays around it.
pub async fn run_checkpoint(
    settings: Settings,
    input: &Path,
    repeat: usize,
    intervals: &[std::time::Duration],
) -> anyhow::Result<CheckpointReport> {
    let input = Input::write(input, repeat)?;
    let mut plan = vec![None];
    plan.extend(intervals.iter().copied().map(Some));
    plan.push(None);
    let mut runs = Vec::new();
    let (mut bodies, mut records) = (0, 0);
    for (i, interval) in plan.into_iter().enumerate() {
        let reset = reset_peak_rss();
        let rss_start_kib = rss_kib();
        let r = replay(clone_settings(&settings)?, &input, interval, &i.to_string()).await?;
        (bodies, records) = (r.bodies, r.records);
        runs.push(CheckpointRun {
            interval,
            secs: r.secs,
            cpu_secs: r.cpu_secs,
            rounds: r.rounds,
            snapshots: r.snapshots,
            state_bytes: r.state_bytes,
            rss_peak_kib: reset.then(peak_rss_kib),
            rss_start_kib,
        });
    }
    Ok(CheckpointReport {
        bytes: input.bytes,
        bodies,
        records,
        runs,
    })
}

/// The non-empty lines of `input`: one body each.
fn bodies(input: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let original = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    Ok(original
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("hubwatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// CPU seconds (user + system) this process has used so far, from `/proc/self/stat`
/// (Linux reports them in USER_HZ = 100 ticks per second); 0 elsewhere.
pub fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is parenthesised and may hold spaces.
            let rest = &s[s.rfind(')')? + 2..];
            let mut f = rest.split_whitespace().skip(11);
            let user: f64 = f.next()?.parse().ok()?;
            let system: f64 = f.next()?.parse().ok()?;
            Some((user + system) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Resets the peak resident set size to the current one (Linux: `5` into
/// `/proc/self/clear_refs`); whether it could.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident set size of this process (Linux `VmHWM`), in KiB; 0 elsewhere.
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// Resident set size of this process now (Linux `VmRSS`), in KiB; 0 elsewhere.
fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// A `/proc/self/status` field in KiB; 0 where there is none.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// What `bench --via amqp|kafka` measured.
pub struct ViaReport {
    /// `AMQP` or `Kafka`.
    pub via: &'static str,
    pub bytes: u64,
    pub events: u64,
    pub file_secs: f64,
    pub via_secs: f64,
    /// CPU seconds of each run, all threads (for AMQP this includes the in-process
    /// emulator serving the events).
    pub file_cpu_secs: f64,
    pub via_cpu_secs: f64,
}

impl ViaReport {
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
            "{:<13} {:.2} s  {:.1} MB/s  {:.0} events/s",
            format!("{}:", self.via),
            self.via_secs,
            mb / self.via_secs,
            self.events as f64 / self.via_secs
        );
        println!(
            "CPU:          file replay {:.2} s, {} {:.2} s (all threads; cores: {})",
            self.file_cpu_secs,
            self.via,
            self.via_cpu_secs,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!(
            "ratio:        {:.2}x of file replay (target >= 0.7x)",
            self.file_secs / self.via_secs
        );
        println!(
            "peak RSS:     {:.1} MiB (the whole process: both runs, and the bodies held to publish)",
            peak_rss_kib() as f64 / 1024.0
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
) -> anyhow::Result<ViaReport> {
    use crate::emulator::{Emulator, EmulatorConfig};
    use crate::source::amqp::{AmqpSourceConfig, StartPosition};

    let file = run(clone_settings(&settings)?, input, repeat).await?;
    let lines = bodies(input)?;
    let hub = "bench";
    let mut cfg = EmulatorConfig::single_hub(hub, partitions);
    cfg.listen = "127.0.0.1:0".into();
    let emulator = Emulator::start(cfg).await?;
    let mut events = 0u64;
    for _ in 0..repeat {
        for l in &lines {
            emulator.publish(hub, None, l.clone())?;
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
    let run = consume_all(s, events).await?;
    println!(
        "AMQP: the first event was absorbed {:.2} s after the start (connections, \
         authorization, partition discovery); the figures below include that",
        run.first_secs
    );
    emulator.shutdown().await;
    Ok(ViaReport {
        via: "AMQP",
        bytes: file.bytes,
        events,
        file_secs: file.e2e_secs,
        via_secs: run.secs,
        file_cpu_secs: file.e2e_cpu_secs,
        via_cpu_secs: run.cpu_secs,
    })
}

/// What `consume_all` measured, from the service's start.
struct Consumed {
    /// Until the first event was absorbed.
    first_secs: f64,
    /// Until the last.
    secs: f64,
    /// CPU seconds of the process (all threads) until the last.
    cpu_secs: f64,
}

/// Runs the service on `settings` (one source named `bench`) until it has absorbed
/// `events`.
async fn consume_all(settings: Settings, events: u64) -> anyhow::Result<Consumed> {
    let (trigger, shutdown) = crate::shutdown::channel();
    let started = Instant::now();
    let cpu_before = cpu_secs();
    let running = crate::app::start(settings, shutdown).await?;
    let counter = running.metrics.source.events.with_label_values(&["bench"]);
    let deadline = Instant::now() + std::time::Duration::from_secs(600);
    let mut first = None;
    while counter.get() < events {
        if first.is_none() && counter.get() > 0 {
            first = Some(started.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the source delivered {} of {events} events within 10 minutes",
            counter.get()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_secs = cpu_secs() - cpu_before;
    trigger.trigger();
    running.wait().await?;
    Ok(Consumed {
        first_secs: first.unwrap_or(secs),
        secs,
        cpu_secs,
    })
}

/// Broker → Kafka source → pipeline, against file replay of the same bodies in the same
/// run. The broker is `brokers` (a running cluster; the topic `hubwatch-bench` is created
/// if missing) or, without it, librdkafka's in-process mock cluster. The bodies are produced
/// before the clock starts, so the figure is the consumer's.
pub async fn run_kafka(
    settings: Settings,
    input: &Path,
    repeat: usize,
    partitions: i32,
    brokers: Option<String>,
) -> anyhow::Result<ViaReport> {
    use crate::source::kafka::KafkaSourceConfig;
    use rdkafka::mocking::MockCluster;

    let file = run(clone_settings(&settings)?, input, repeat).await?;
    let lines = bodies(input)?;
    let input_len: usize = lines.iter().map(|l| l.len() + 1).sum();
    let topic = "hubwatch-bench";
    // The mock keeps only the last 5 MB of each partition (librdkafka's rdkafka_mock.c):
    // spread the bodies so that none is cut.
    let partitions = match brokers {
        Some(_) => partitions,
        None => partitions.max((input_len as i64 * repeat as i64 / (4 << 20) + 1) as i32),
    };
    let mock;
    let bootstrap = match brokers {
        Some(b) => {
            create_topic(&b, topic, partitions).await?;
            b
        }
        None => {
            println!(
                "Kafka: on librdkafka's in-process mock cluster, a test broker that serves \
                 fetches slowly; for a throughput figure run scripts/bench-kafka.sh \
                 (a real broker process)"
            );
            mock = MockCluster::new(1).context("starting librdkafka's mock cluster")?;
            mock.create_topic(topic, partitions, 1)
                .context("creating the bench topic")?;
            mock.bootstrap_servers()
        }
    };
    let b = bootstrap.clone();
    let events =
        tokio::task::spawn_blocking(move || produce(&b, topic, partitions, &lines, repeat))
            .await??;

    let mut s = clone_settings(&settings)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let group = format!("hubwatch-bench-{}-{nanos}", std::process::id());
    let mut source = KafkaSourceConfig::new("bench", bootstrap, vec![topic.to_string()], group);
    // One member: a short session makes the broker settle the group sooner.
    source.session_timeout = std::time::Duration::from_secs(6);
    s.sources = vec![crate::config::SourceSettings::Kafka(source)];
    s.listen = "127.0.0.1:0".into();
    s.checkpoint = None;
    s.dead_letter = None;
    let run = consume_all(s, events).await?;
    println!(
        "Kafka: the group join took {:.2} s (to the first event absorbed); the figures \
         below are from the first event to the last",
        run.first_secs
    );
    Ok(ViaReport {
        via: "Kafka",
        bytes: file.bytes,
        events,
        file_secs: file.e2e_secs,
        via_secs: run.secs - run.first_secs,
        file_cpu_secs: file.e2e_cpu_secs,
        via_cpu_secs: run.cpu_secs,
    })
}

async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::error::RDKafkaErrorCode;

    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let results = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ),
    )
    .await
    .context("creating the bench topic: no answer within 30 s")??;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => anyhow::bail!("creating topic {t}: {e}"),
        }
    }
    Ok(())
}

/// Produces every line `repeat` times, spread over the partitions; returns the count.
fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    lines: &[Vec<u8>],
    repeat: usize,
) -> anyhow::Result<u64> {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("batch.size", "65536")
        .set("message.max.bytes", "10000000")
        .create()?;
    let mut n = 0u64;
    for _ in 0..repeat {
        for line in lines {
            let mut record = BaseRecord::<(), [u8]>::to(topic)
                .payload(line.as_slice())
                .partition((n % partitions.max(1) as u64) as i32);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, r))
                        if e.rdkafka_error_code()
                            == Some(rdkafka::error::RDKafkaErrorCode::QueueFull) =>
                    {
                        record = r;
                        producer.poll(std::time::Duration::from_millis(5));
                    }
                    Err((e, _)) => anyhow::bail!("producing to {topic}: {e}"),
                }
            }
            n += 1;
        }
    }
    producer
        .flush(std::time::Duration::from_secs(120))
        .context("flushing the bench events")?;
    Ok(n)
}

/// Settings hold compiled queries; the benchmark runs them twice.
fn clone_settings(s: &Settings) -> anyhow::Result<Settings> {
    Ok(Settings {
        listen: s.listen.clone(),
        export: s.export.clone(),
        engine: s.engine.clone(),
        dead_letter: s.dead_letter.clone(),
        checkpoint: s.checkpoint.clone(),
        sources: s.sources.clone(),
        queries: s.queries.clone(),
        sinks: s.sinks.clone(),
        routes: s.routes.clone(),
    })
}

/// Forwarding against none: the input replayed with the configuration's queries alone,
/// then with its routes and sinks too, timed until every sink's receiver has taken every
/// row (or refused it), in one process.
pub struct ForwardReport {
    pub bytes: u64,
    pub records: u64,
    pub plain_secs: f64,
    pub plain_cpu_secs: f64,
    pub forward_secs: f64,
    pub forward_cpu_secs: f64,
    /// When the engine had absorbed the input, in the forwarding run.
    pub forward_absorbed_secs: f64,
    /// Rows routed.
    pub rows: u64,
    /// Per sink: (name, messages its receiver took, their bytes).
    pub sinks: Vec<(String, u64, u64)>,
    pub rss_plain_kib: u64,
    pub rss_peak_kib: u64,
}

impl ForwardReport {
    pub fn print(&self) {
        let mb = self.bytes as f64 / 1e6;
        println!(
            "input:        {mb:.1} MB, {} records, {} rows routed",
            self.records, self.rows
        );
        println!(
            "no routes:    {:.2} s  {:.1} MB/s  {:.0} records/s  (CPU {:.2} s)",
            self.plain_secs,
            mb / self.plain_secs,
            self.records as f64 / self.plain_secs,
            self.plain_cpu_secs
        );
        println!(
            "forwarding:   {:.2} s  {:.1} MB/s  {:.0} records/s  (CPU {:.2} s), until delivered; absorbed at {:.2} s",
            self.forward_secs,
            mb / self.forward_secs,
            self.records as f64 / self.forward_secs,
            self.forward_cpu_secs,
            self.forward_absorbed_secs
        );
        for (name, sent, bytes) in &self.sinks {
            println!(
                "  sink {name}: {sent} messages, {:.1} MB delivered",
                *bytes as f64 / 1e6
            );
        }
        println!(
            "ratio:        {:.2}x of replay without routes (target >= 0.5x)",
            self.plain_secs / self.forward_secs
        );
        println!(
            "peak RSS:     {} MiB without routes, {} MiB overall",
            self.rss_plain_kib / 1024,
            self.rss_peak_kib / 1024
        );
    }
}

pub async fn run_forward(
    settings: Settings,
    input: &Path,
    repeat: usize,
) -> anyhow::Result<ForwardReport> {
    anyhow::ensure!(
        !settings.routes.is_empty(),
        "--forward compares replay with the configuration's routes against none: the configuration has no [[routes]]"
    );
    let input = Input::write(input, repeat)?;
    let mut plain = clone_settings(&settings)?;
    plain.routes.clear();
    plain.sinks.clear();
    // As deployed: with a checkpoint store, so sinks sync once per snapshot round (without
    // one, every batch is acknowledged alone, each after a sync of every sink).
    let interval = settings
        .checkpoint
        .as_ref()
        .map_or(crate::config::CheckpointSettings::DEFAULT_INTERVAL, |c| {
            c.interval
        });
    let p = replay(plain, &input, Some(interval), "plain").await?;
    let rss_plain_kib = peak_rss_kib();

    // The sinks keep their buffers and files in the benchmark's directory.
    let mut s = clone_settings(&settings)?;
    for sink in &mut s.sinks {
        match sink {
            crate::config::SinkSettings::File { name, path } => {
                *path = input.dir.join(format!("sink-{name}.ndjson"));
            }
            crate::config::SinkSettings::Buffered { name, delivery, .. } => {
                delivery.buffer_dir = input.dir.join(format!("buffer-{name}"));
                delivery.dead_letter = input.dir.join(format!("dead-letter-{name}.ndjson"));
            }
        }
    }
    let names: Vec<String> = s.sinks.iter().map(|k| k.name().to_string()).collect();
    let f = replay_until(s, &input, Some(interval), "forward", true).await?;
    let m = &f.metrics;
    // A `union` route is one spec per table under one name: each name once.
    let mut route_names: Vec<&str> = settings.routes.iter().map(|r| &*r.name).collect();
    route_names.sort_unstable();
    route_names.dedup();
    let rows: u64 = route_names
        .iter()
        .map(|r| m.forward.rows.with_label_values(&[r]).get())
        .sum();
    let sinks = names
        .iter()
        .map(|n| {
            if file_sink(n, &settings) {
                (
                    n.clone(),
                    counter(m, "hubwatch_forward_sink_lines_total", n),
                    0,
                )
            } else {
                (
                    n.clone(),
                    counter(m, "hubwatch_forward_sink_sent_total", n),
                    counter(m, "hubwatch_forward_sink_sent_bytes_total", n),
                )
            }
        })
        .collect();
    Ok(ForwardReport {
        bytes: input.bytes,
        records: p.records,
        plain_secs: p.secs,
        plain_cpu_secs: p.cpu_secs,
        forward_secs: f.secs,
        forward_cpu_secs: f.cpu_secs,
        forward_absorbed_secs: f.absorbed_secs,
        rows,
        sinks,
        rss_plain_kib,
        rss_peak_kib: peak_rss_kib(),
    })
}

/// A sink's series of a counter.
fn counter(m: &crate::telemetry::Metrics, name: &str, sink: &str) -> u64 {
    m.registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().to_vec())
        .filter(|x| x.get_label().iter().any(|l| l.value() == sink))
        .map(|x| x.get_counter().get_value() as u64)
        .sum()
}

/// Waits until every buffered sink's receiver has taken, or refused, every row the sink
/// took (bounded: 10 minutes).
async fn wait_delivered(m: &crate::telemetry::Metrics, sinks: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(600);
    while sinks.iter().any(|n| {
        let done = counter(m, "hubwatch_forward_sink_sent_total", n)
            + counter(m, "hubwatch_forward_sink_dead_letters_total", n)
            + counter(m, "hubwatch_forward_sink_dropped_total", n);
        done < counter(m, "hubwatch_forward_sink_lines_total", n)
    }) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the sinks did not deliver everything within 10 minutes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Ok(())
}

fn file_sink(name: &str, settings: &Settings) -> bool {
    settings
        .sinks
        .iter()
        .any(|s| s.name() == name && matches!(s, crate::config::SinkSettings::File { .. }))
}
