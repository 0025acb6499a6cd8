//! `hubwatch demo` as the README runs it, for a few seconds: it says where its dead letters
//! go and that some bodies are broken on purpose, its console is not flooded by the Azure
//! SDK's INFO lines, its event time does not run ahead of the wall clock, and its temporary
//! folder is gone on exit unless `--keep-temp`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Run {
    stdout: Vec<String>,
    stderr: String,
    /// `hubwatch_event_time_clock_seconds` while it ran, and the wall clock then.
    clock: Option<(f64, f64)>,
}

fn demo(tmp: &Path, extra: &[&str]) -> Run {
    let mut child = common::Kill(
        Command::new(env!("CARGO_BIN_EXE_hubwatch"))
            .args(["demo", "--listen", "127.0.0.1:0", "--seconds", "6"])
            .args(extra)
            .env("TMPDIR", tmp)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hubwatch demo"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("[demo] {line}");
            let _ = tx.send(line);
        }
    });
    let stderr = child.0.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });

    let mut stdout = Vec::new();
    let mut clock = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        // The first summary: the backfill is in; read the clock once.
        if clock.is_none() && line.contains("events/s") {
            let addr = stdout
                .iter()
                .find_map(|l: &String| l.strip_prefix("hubwatch: http://"))
                .and_then(|l| l.split('/').next())
                .expect("the admin address")
                .to_string();
            let (_, text) = common::http_get(&addr, "/metrics").unwrap();
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            clock = common::metric(&text, "hubwatch_event_time_clock_seconds").map(|c| (c, wall));
        }
        stdout.push(line);
    }
    let status = child.0.wait().unwrap();
    reader.join().unwrap();
    let stderr = errors.join().unwrap();
    assert!(status.success(), "{status}\n{stderr}");
    Run {
        stdout,
        stderr,
        clock,
    }
}

fn line<'a>(run: &'a Run, prefix: &str) -> &'a str {
    run.stdout
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line '{prefix}…' in {:#?}", run.stdout))
}

#[test]
fn the_demo_says_where_dead_letters_go_stays_quiet_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let run = demo(tmp.path(), &[]);

    let dl = line(&run, "dead letters: ");
    let path = dl["dead letters: ".len()..].split(' ').next().unwrap();
    let folder = Path::new(path).parent().unwrap();
    assert!(folder.starts_with(tmp.path()), "{dl}");
    assert!(path.ends_with("dead-letter.ndjson"), "{dl}");
    assert!(dl.contains("broken on purpose"), "{dl}");
    assert!(dl.contains("hubwatch_parse_rejected_total"), "{dl}");
    assert!(
        dl.contains("removed on exit (--keep-temp keeps it)"),
        "{dl}"
    );
    assert!(!folder.exists(), "{} is left behind", folder.display());
    assert!(line(&run, "done; removed ").ends_with(&folder.display().to_string()));

    assert!(line(&run, "event time: ").contains("then in step with it"));
    let (clock, wall) = run.clock.expect("the event-time clock in /metrics");
    // Records carry up to a second of jitter past the estate's clock.
    assert!(
        clock <= wall + 1.0,
        "event time {clock} is ahead of the wall clock {wall}"
    );
    assert!(
        clock > wall - 2.0 * 3600.0,
        "event time {clock} is far behind {wall}"
    );

    // hubwatch's own lines stay; the SDK's INFO lines (amqps:// against amqp://) do not.
    assert!(
        run.stderr.contains("receiving source=demo"),
        "{}",
        run.stderr
    );
    for noise in [
        "azure_messaging_eventhubs",
        "azure_core_amqp",
        "fe2o3_amqp",
        "amqps://",
    ] {
        assert!(!run.stderr.contains(noise), "{noise} in:\n{}", run.stderr);
    }
}

#[test]
fn keep_temp_keeps_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let run = demo(tmp.path(), &["--keep-temp", "--speed", "1"]);
    let dl = line(&run, "dead letters: ");
    assert!(dl.ends_with("is kept on exit"), "{dl}");
    let path = dl["dead letters: ".len()..].split(' ').next().unwrap();
    let folder = Path::new(path).parent().unwrap();
    assert!(folder.join("demo.toml").exists(), "{}", folder.display());
    assert!(line(&run, "done; dead letters kept in ").ends_with(path));
    assert!(line(&run, "event time: ").contains("in step with the wall clock"));
}
