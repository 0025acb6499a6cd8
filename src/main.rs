//! The `hubwatch` command: parse flags, set up tracing, run a command, map errors to exit
//! codes. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hubwatch::cli::{self, Format};
use hubwatch::export::format;
use hubwatch::pipeline::EngineOptions;
use hubwatch::window::QueryLimits;

#[derive(Parser)]
#[command(
    name = "hubwatch",
    version,
    about = "Azure Monitor exports on Event Hubs → KQL over event-time windows → Prometheus"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one KQL query over files of bodies (one per line; `-` is stdin) and print the
    /// result when the input ends. Whatever was rejected or dropped is summed up on stderr.
    /// Exit status: 0 the result is complete, 1 the input cannot be read, 2 the query does
    /// not compile, 3 a cap dropped rows (the result is incomplete) or, with --strict,
    /// anything was rejected or too late for its bin.
    Query {
        /// Input file (repeatable); standard input when none.
        #[arg(long = "input", short = 'i')]
        inputs: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Series cap.
        #[arg(long, default_value_t = 100_000)]
        max_series: usize,
        /// Rows kept by a query without summarize.
        #[arg(long, default_value_t = 100_000)]
        max_rows: usize,
        /// Exit with status 3 when anything of the input was rejected or arrived too late
        /// for its bin, not only when a cap dropped rows.
        #[arg(long)]
        strict: bool,
        /// How far behind the newest record a record may arrive and still count in its
        /// `bin(TimeGenerated, …)` (e.g. `10m`, as the service's default). By default the
        /// whole input: the result is printed when it ends, so every bin waits for all of
        /// it, and out-of-order files give Log Analytics' answer.
        #[arg(long, value_parser = parse_lateness)]
        allowed_lateness: Option<i64>,
        /// The query.
        kql: String,
    },
    /// Check a configuration: every error is printed; exit status 2 if there is any.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the service until SIGTERM or Ctrl-C.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the Event Hubs–compatible emulator (plain AMQP, in memory) until Ctrl-C; prints
    /// its address and a connection string per hub.
    Emulator {
        /// Emulator configuration (TOML: listen, namespace, keys, hubs).
        #[arg(long)]
        config: PathBuf,
    },
    /// Everything in one process: the Event Hubs emulator, a synthetic Azure ML estate
    /// publishing into it, and the AMQP consumer with the default query pack.
    Demo {
        /// Admin server address (/metrics, /api/v1/queries).
        #[arg(long, default_value = "127.0.0.1:9393")]
        listen: String,
        /// Event-time seconds simulated per wall-clock second while the estate catches up
        /// with the wall clock (about ten minutes); then it follows the wall clock.
        #[arg(long, default_value_t = 10)]
        speed: u32,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
        /// Keep the demo's temporary folder (its configuration and dead-letter file) on
        /// exit; it is removed by default.
        #[arg(long)]
        keep_temp: bool,
    },
    /// End-to-end replay benchmark: the service path against the raw JSON parse floor, on
    /// the same bytes in the same run.
    Bench {
        /// Queries (and limits) from this configuration; its sources are replaced.
        #[arg(long, default_value = "deploy/config/replay.toml")]
        config: PathBuf,
        /// Bodies, one per line.
        #[arg(long, default_value = "tests/fixtures/aml/bodies.ndjson")]
        input: PathBuf,
        /// How many times the input is repeated.
        #[arg(long, default_value_t = 20)]
        repeat: usize,
        /// `file` (against the JSON floor), `amqp` (emulator → AMQP source) or `kafka`
        /// (broker → Kafka source); the last two against file replay of the same bodies.
        #[arg(long, default_value = "file")]
        via: String,
        /// With `--via kafka`: a running broker (`host:port`) instead of librdkafka's
        /// in-process mock cluster.
        #[arg(long)]
        brokers: Option<String>,
        /// With `--via file`: file replay with a checkpoint directory (intervals 1 s and
        /// 5 s) against plain file replay, instead of against the JSON floor.
        #[arg(long)]
        checkpoint: bool,
        /// With `--via file`: replay with the configuration's routes and sinks, timed
        /// until every receiver has taken every row, against replay without them.
        #[arg(long)]
        forward: bool,
    },
}

/// `query`'s exit status when its result is not the whole answer (see `Command::Query`).
const INCOMPLETE: u8 = 3;

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn load(config: &std::path::Path) -> Result<hubwatch::config::Settings, ExitCode> {
    hubwatch::config::load(config, &hubwatch::schema::Schemas::embedded()).map_err(|e| {
        eprint!("{e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hubwatch::telemetry::init_tracing("info");
    match cli.command {
        Command::Query {
            inputs,
            format: fmt,
            max_series,
            max_rows,
            strict,
            allowed_lateness,
            kql,
        } => {
            let limits = QueryLimits {
                max_series,
                max_rows,
                ..QueryLimits::default()
            };
            let opts = EngineOptions {
                allowed_lateness: allowed_lateness.unwrap_or(i64::MAX),
                ..EngineOptions::default()
            };
            match cli::run_query(&kql, &inputs, limits, opts.clone()) {
                Ok((result, engine)) => {
                    let text = match fmt {
                        Format::Json => format::json(&result) + "\n",
                        Format::Csv => format::csv(&result),
                        Format::Table => format::table(&result),
                    };
                    print!("{text}");
                    let summary = cli::Summary::of(&engine, &opts).with_result(&result);
                    if summary.lost_anything() {
                        eprint!("{}", summary.render());
                    }
                    if summary.incomplete() || (strict && summary.lost_anything()) {
                        ExitCode::from(INCOMPLETE)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(cli::QueryError::Query(d)) => {
                    eprintln!("error: the query does not compile:\n{d}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Check { config } => match load(&config) {
            Ok(s) => {
                println!(
                    "{}: OK ({} queries, {} sources, {} routes, {} sinks)",
                    config.display(),
                    s.queries.len(),
                    s.sources.len(),
                    cli::describe_routes(&s).len(),
                    s.sinks.len()
                );
                for sink in &s.sinks {
                    println!("{}", cli::describe_sink(sink));
                }
                for route in cli::describe_routes(&s) {
                    println!("{route}");
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { config } => {
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let result = runtime()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(hubwatch::app::run(settings)));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Emulator { config } => {
            let cfg = match hubwatch::emulator::EmulatorConfig::from_toml_file(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(2);
                }
            };
            // Deep stacks: fe2o3 decodes every published message by recursion.
            let result = hubwatch::deep_stack::builder("hubwatch-emulator")
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    // Spawned, so that the stored events are dropped on a deep stack too.
                    let emulator = rt.spawn(hubwatch::emulator::run_command(cfg));
                    rt.block_on(emulator)?
                });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Demo {
            listen,
            speed,
            seconds,
            keep_temp,
        } => {
            let opts = hubwatch::demo::DemoOptions {
                listen,
                speed: speed.max(1),
                run_for: seconds.map(std::time::Duration::from_secs),
                keep_temp,
                ..hubwatch::demo::DemoOptions::default()
            };
            match runtime()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(hubwatch::demo::run(opts)))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Bench {
            config,
            input,
            repeat,
            via,
            brokers,
            checkpoint,
            forward,
        } => {
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            };
            let result = match via.as_str() {
                "file" if checkpoint => rt
                    .block_on(hubwatch::bench::run_checkpoint(
                        settings,
                        &input,
                        repeat,
                        &[Duration::from_secs(1), Duration::from_secs(5)],
                    ))
                    .map(|r| r.print()),
                _ if checkpoint => Err(anyhow::anyhow!(
                    "--checkpoint measures file replay: leave out --via {via}"
                )),
                "file" if forward => rt
                    .block_on(hubwatch::bench::run_forward(settings, &input, repeat))
                    .map(|r| r.print()),
                _ if forward => Err(anyhow::anyhow!(
                    "--forward measures file replay: leave out --via {via}"
                )),
                "file" => rt
                    .block_on(hubwatch::bench::run(settings, &input, repeat))
                    .map(|r| r.print()),
                "amqp" => rt
                    .block_on(hubwatch::bench::run_amqp(settings, &input, repeat, 4))
                    .map(|r| r.print()),
                "kafka" => rt
                    .block_on(hubwatch::bench::run_kafka(
                        settings, &input, repeat, 4, brokers,
                    ))
                    .map(|r| r.print()),
                other => Err(anyhow::anyhow!(
                    "--via {other}: expected 'file', 'amqp' or 'kafka'"
                )),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `--allowed-lateness`: a KQL timespan (`10m`, `1h`).
fn parse_lateness(text: &str) -> Result<i64, String> {
    match hubwatch::time::parse_timespan(text) {
        Some(t) if t >= 0 => Ok(t),
        _ => Err(format!("'{text}' is not a timespan (e.g. 10m, 1h, 2d)")),
    }
}
