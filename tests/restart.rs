//! Window state survives crashes: a file source following a growing stream, killed with
//! SIGKILL 20 times and stopped with SIGTERM 5 times at random moments, and finally run to
//! the end of its input, gives for every query exactly what `hubwatch query` gives over the
//! same bytes in one pass; and its dead-letter file holds every reject of one uninterrupted
//! run at least once (positions let a reader drop the repeats). A query added later, and a
//! lost state directory, are rebuilt by reading the input again.
//!
//! Real processes throughout: `hubwatch run` with `[checkpoint]`, and `hubwatch query` as
//! the oracle. Queries: the default Azure ML pack and the golden queries (totals, sliding
//! windows, tumbling bins, latest values, retained rows).

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hubwatch::rng::SplitMix64;

/// The AML pack (by file) and the golden queries (inline), with caps as `hubwatch query`'s.
fn config(dir: &Path, input: &Path, follow: bool) -> PathBuf {
    let mut text = format!(
        "query_files = [{pack:?}]\n\
         [export]\nlisten = \"127.0.0.1:0\"\n\
         [limits]\nmax_rows = 100000\nmax_series = 100000\n\
         [dead_letter]\npath = \"dead.ndjson\"\n\
         [checkpoint]\ndir = \"cp\"\ninterval = \"100ms\"\n\
         [[sources]]\ntype = \"file\"\nname = \"stream\"\npaths = [{input:?}]\nfollow = {follow}\n",
        pack = repo()
            .join("deploy/config/aml-queries.toml")
            .display()
            .to_string(),
        input = input.display().to_string(),
    );
    for (name, kql) in golden_queries() {
        text.push_str(&format!(
            "[[queries]]\nname = \"{name}\"\nkql = '''\n{kql}'''\n"
        ));
    }
    // Tumbling bins, which must stay open in the stored state until the watermark closes them.
    text.push_str(
        "[[queries]]\nname = \"jobs_hourly\"\nkql = \"AmlComputeJobEvent | summarize n = count() by bin(TimeGenerated, 1h), EventType\"\n",
    );
    let p = dir.join("hubwatch.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Every query's name and KQL, as the service loaded them.
fn queries(svc: &Service) -> Vec<(String, String)> {
    let (status, body) = svc.get("/api/v1/queries");
    assert_eq!(status, 200, "{body}");
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap().to_string(),
                q["kql"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `hubwatch query` over the whole input: one pass, no restarts, its bins closed by the
/// service's default lateness as the service's are.
fn oracle(input: &Path, kql: &str) -> serde_json::Value {
    query_over(kql, input, &["--allowed-lateness", "10m"], kql)
}

/// The rejects in a dead-letter file, by where they came from and why (a torn line of a
/// killed process is not a reject; its batch was read again and written in full).
fn rejects(path: &Path) -> (BTreeSet<(i64, String, String)>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut set = BTreeSet::new();
    let mut lines = 0;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        lines += 1;
        set.insert((
            v["sequence_number"].as_i64().unwrap(),
            v["reason"].as_str().unwrap().to_string(),
            v["detail"].as_str().unwrap().to_string(),
        ));
    }
    (set, lines)
}

fn sigterm(svc: &mut Service) {
    svc.terminate(Duration::from_secs(30));
}

#[test]
fn killed_and_restarted_25_times_the_results_equal_one_uninterrupted_pass() {
    let lines = fixture_lines();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.ndjson");
    std::fs::write(&input, b"").unwrap();
    let following = config(dir.path(), &input, true);
    let mut rng = SplitMix64(20261207);
    let mut appended = 0usize;
    let append = |from: usize, to: usize| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&input)
            .unwrap();
        for l in &lines[from..to] {
            writeln!(f, "{l}").unwrap();
        }
    };

    // 25 stops at random moments while the stream grows: 5 of them SIGTERM, the rest
    // SIGKILL (no drain, no last snapshot, no last commit).
    let mut stops: Vec<bool> = (0..25).map(|i| i < 5).collect();
    for i in (1..stops.len()).rev() {
        stops.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for (round, term) in stops.iter().enumerate() {
        let mut svc = Service::start(&following);
        // The stream grows while it runs, by this round's share in a few appends at random
        // moments, and it is stopped at a random moment among them.
        let share = (round + 1) * (lines.len() - 1) / stops.len();
        let run = Duration::from_millis(150 + rng.below(600));
        let started = Instant::now();
        while started.elapsed() < run {
            let to = (appended + 1 + rng.below(12) as usize).min(share);
            append(appended, to);
            appended = to;
            std::thread::sleep(Duration::from_millis(rng.below(80)));
        }
        if *term {
            sigterm(&mut svc);
        } else {
            svc.child.kill().unwrap();
            svc.child.wait().unwrap();
        }
        eprintln!(
            "round {round}: stopped ({}) with {appended} of {} lines written",
            if *term { "SIGTERM" } else { "SIGKILL" },
            lines.len()
        );
    }
    append(appended, lines.len());

    // The last run reads to the end of the input (closing every bin, as `hubwatch query`
    // does at its end) and keeps serving.
    let finite = config(dir.path(), &input, false);
    let mut svc = Service::start(&finite);
    svc.wait_for_line("all sources finished", Duration::from_secs(120));
    let compared = assert_oracle(
        &svc,
        &input,
        "after 25 stops, the rows differ from one pass",
    );
    assert!(compared > 100, "the comparison covered {compared} rows");
    let (_, metrics) = svc.get("/metrics");
    let restored = metric(&metrics, "hubwatch_state_restored_partitions_total").unwrap();
    assert_eq!(restored, 1.0, "the last run restored the stream's state");
    drop(svc);

    // One uninterrupted run over the same bytes: its rejects are the reference.
    let clean = tempfile::tempdir().unwrap();
    let mut reference = Service::start(&config(clean.path(), &input, false));
    reference.wait_for_line("all sources finished", Duration::from_secs(120));
    drop(reference);
    let (want, _) = rejects(&clean.path().join("dead.ndjson"));
    let (got, written) = rejects(&dir.path().join("dead.ndjson"));
    assert!(!want.is_empty(), "the fixture has rejects");
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "rejects lost across the stops: {missing:?}"
    );
    assert!(
        got.is_subset(&want) && got.len() == want.len(),
        "no reject was invented"
    );
    eprintln!("dead letters: {written} lines for {} rejects", want.len());
}

fn fixture_lines() -> Vec<String> {
    std::fs::read_to_string(fixture())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every query of a finished run equals `hubwatch query` over the input.
fn assert_oracle(svc: &Service, input: &Path, what: &str) -> usize {
    let mut compared = 0;
    for (name, kql) in queries(svc) {
        let (status, body) = svc.get(&format!("/api/v1/queries/{name}"));
        assert_eq!(status, 200, "{name}: {body}");
        let got: serde_json::Value = serde_json::from_str(&body).unwrap();
        let want = oracle(input, &kql);
        assert_eq!(got, want, "{what}: {name}");
        compared += want.as_array().map_or(0, Vec::len);
    }
    compared
}

#[test]
fn a_query_added_later_and_a_lost_state_directory_are_rebuilt_from_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.ndjson");
    std::fs::copy(fixture(), &input).unwrap();
    let text = |extra: &str| {
        format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n[limits]\nmax_rows = 100000\nmax_series = 100000\n\
             [checkpoint]\ndir = \"cp\"\ninterval = \"100ms\"\n\
             [[sources]]\ntype = \"file\"\nname = \"stream\"\npaths = [{:?}]\n\
             [[queries]]\nname = \"jobs\"\nkql = \"AmlComputeJobEvent | summarize n = count(), failed = countif(EventType == 'JobFailed') by ClusterName\"\n{extra}",
            input.display().to_string()
        )
    };
    let config = dir.path().join("hubwatch.toml");

    // A first run reads everything and keeps its positions and state.
    std::fs::write(&config, text("")).unwrap();
    let mut first = Service::start(&config);
    first.wait_for_line("all sources finished", Duration::from_secs(60));
    assert_oracle(&first, &input, "first run");
    drop(first);

    // A query added since: the file is read again from its start for it, while the
    // restored query skips what it already holds.
    let added = "[[queries]]\nname = \"nodes\"\nkql = \"AmlComputeClusterEvent | where TimeGenerated > ago(1d) | summarize max(TargetNodeCount) by ClusterName\"\n";
    std::fs::write(&config, text(added)).unwrap();
    let mut second = Service::start(&config);
    second.wait_for_line("all sources finished", Duration::from_secs(60));
    let compared = assert_oracle(&second, &input, "with a query added");
    assert!(compared > 10, "{compared} rows compared");
    let (_, metrics) = second.get("/metrics");
    assert_eq!(
        metric(
            &metrics,
            "hubwatch_state_queries_started_empty_total{query=\"nodes\"}"
        ),
        Some(1.0)
    );
    assert!(
        metric(&metrics, "hubwatch_state_duplicate_events_total").unwrap() == 0.0,
        "no event was a duplicate for every query: the new one took them all"
    );
    drop(second);

    // The state directory is lost while the positions survive: read again from the start.
    std::fs::remove_dir_all(dir.path().join("cp/state")).unwrap();
    let mut third = Service::start(&config);
    third.wait_for_line("all sources finished", Duration::from_secs(60));
    assert_oracle(&third, &input, "after losing the state directory");
    let (_, metrics) = third.get("/metrics");
    assert_eq!(
        metric(&metrics, "hubwatch_state_restored_partitions_total"),
        Some(0.0)
    );
}

#[test]
fn an_input_that_grows_after_its_end_and_a_rotated_file_give_one_pass_results() {
    let lines = fixture_lines();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.ndjson");
    let oracle_input = dir.path().join("everything.ndjson");
    let write = |path: &Path, ls: &[String], append: bool| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(path)
            .unwrap();
        let mut text = String::new();
        for l in ls {
            text.push_str(l);
            text.push('\n');
        }
        f.write_all(text.as_bytes()).unwrap();
    };
    let half = lines.len() / 2;

    // A finite run ends with its last bins open in the stored state (closed only for
    // serving); the input then grows, and a second run counts the new rows in those bins.
    write(&input, &lines[..half], false);
    let mut first = Service::start(&config(dir.path(), &input, false));
    first.wait_for_line("all sources finished", Duration::from_secs(60));
    drop(first);
    write(&input, &lines[half..], true);
    let mut second = Service::start(&config(dir.path(), &input, false));
    second.wait_for_line("all sources finished", Duration::from_secs(60));
    assert_oracle(&second, &input, "grown after its end");
    drop(second);

    // copytruncate: the file starts over with other content while hubwatch follows it; it
    // is killed once that content is in a snapshot (its commit may lag); the restart must
    // neither take the new lines for the old ones nor count them twice.
    let mut follower = Service::start(&config(dir.path(), &input, true));
    let rotated = &lines[..100];
    write(&input, rotated, false);
    std::thread::sleep(Duration::from_millis(1500));
    follower.child.kill().unwrap();
    follower.child.wait().unwrap();
    let mut last = Service::start(&config(dir.path(), &input, false));
    last.wait_for_line("all sources finished", Duration::from_secs(60));
    write(&oracle_input, &lines, false);
    write(&oracle_input, rotated, true);
    assert_oracle(&last, &oracle_input, "after a rotation and a kill");
}

#[test]
fn a_corrupt_or_foreign_snapshot_stops_the_start_with_its_path_and_is_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.ndjson");
    std::fs::copy(fixture(), &input).unwrap();
    let config = config(dir.path(), &input, false);
    let mut first = Service::start(&config);
    first.wait_for_line("all sources finished", Duration::from_secs(60));
    drop(first);
    let state = std::fs::read_dir(dir.path().join("cp/state/stream"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .expect("the stream's snapshot");
    let good = std::fs::read(&state).unwrap();

    let refused = |bytes: &[u8]| -> String {
        std::fs::write(&state, bytes).unwrap();
        // Bounded: a snapshot it wrongly accepts would have it serve until stopped.
        let mut child = Command::new(env!("CARGO_BIN_EXE_hubwatch"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run hubwatch");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("started with an unusable snapshot (still running after 30 s)");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "started with an unusable snapshot");
        assert_eq!(
            std::fs::read(&state).unwrap(),
            bytes,
            "the snapshot was left as it was"
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let err = refused(&flipped);
    assert!(
        err.contains(&state.display().to_string())
            && err.contains("checksum")
            && err.contains("move the file aside"),
        "{err}"
    );
    let next = hubwatch::state::FORMAT_VERSION + 1;
    let newer = as_format_version(&good, next);
    let err = refused(&newer);
    assert!(
        err.contains(&format!("has state format version {next}")) && err.contains("retention"),
        "{err}"
    );

    // Put back, it starts again.
    std::fs::write(&state, &good).unwrap();
    let mut again = Service::start(&config);
    again.wait_for_line("all sources finished", Duration::from_secs(60));
}
