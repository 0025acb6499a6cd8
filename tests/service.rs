//! The running service (`hubwatch run`) over the golden fixtures: the query API gives the
//! oracle's answers, `/metrics` exports them as gauges and passes `promtool check metrics`,
//! rejects land in the dead-letter file, and SIGTERM drains and exits 0.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn config(dir: &Path) -> std::path::PathBuf {
    let mut text = format!(
        "[export]\nlisten = \"127.0.0.1:0\"\n[limits]\nmax_rows = 100000\n[dead_letter]\npath = \"dead.ndjson\"\n[checkpoint]\ndir = \".\"\n[[sources]]\ntype = \"file\"\nname = \"golden\"\npaths = [{:?}]\n",
        fixture().display().to_string()
    );
    for (name, kql) in golden_queries() {
        text.push_str(&format!(
            "[[queries]]\nname = \"{name}\"\nkql = '''\n{kql}'''\n"
        ));
    }
    let p = dir.join("hubwatch.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn the_service_serves_the_oracles_answers_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::start(&config(dir.path()));
    assert_eq!(svc.get("/healthz").0, 200);
    svc.wait_for_line("all sources finished", Duration::from_secs(60));
    assert_eq!(svc.get("/readyz").0, 200);

    for (name, _) in golden_queries() {
        let (status, body) = svc.get(&format!("/api/v1/queries/{name}"));
        assert_eq!(status, 200, "{name}: {body}");
        let got: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_same_rows(&name, &got, &expected(&name));
    }
    assert_eq!(svc.get("/api/v1/queries/nope").0, 404);
    let (_, all) = svc.get("/api/v1/queries");
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 5);

    // The summarize query's gauges carry one label per `by` column and the oracle's values.
    let (status, metrics) = svc.get("/metrics");
    assert_eq!(status, 200);
    for row in expected("running_nodes_1d").as_array().unwrap() {
        let label = |k: &str| row[k].as_str().unwrap_or("").to_string();
        let series = format!(
            "running_nodes_1d_max_running_nodes{{workspace=\"{}\",cluster_name=\"{}\",cluster_type=\"{}\",vm_size=\"{}\",vm_priority=\"{}\"}}",
            label("Workspace"), label("ClusterName"), label("ClusterType"), label("VmSize"), label("VmPriority")
        );
        let line = metrics.lines().find(|l| l.starts_with(&series));
        match row["maxRunningNodes"].as_i64() {
            Some(v) => assert_eq!(line, Some(format!("{series} {v}").as_str()), "{series}"),
            None => assert_eq!(line, None, "null values are not exported: {series}"),
        }
    }
    assert!(
        metrics.contains("hubwatch_parse_rejected_total{reason=\"invalid_json\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("hubwatch_parse_rejected_total{reason=\"no_time\"} 2"));
    assert!(metrics.contains("hubwatch_parse_records_total{table=\"AmlComputeJobEvent\"} 1876"));
    assert!(metrics.contains("hubwatch_query_series{query=\"running_nodes_1d\"} 15"));

    // promtool, the real Prometheus linter, accepts the exposition.
    let promtool = which("promtool");
    let lint = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .output_with_stdin(metrics.as_bytes());
    assert!(lint.0.success(), "promtool check metrics: {}", lint.1);

    // Every reject is in the dead-letter file with its reason and raw bytes.
    let dead = std::fs::read_to_string(dir.path().join("dead.ndjson")).unwrap();
    let lines: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["reason"] == "invalid_json")
            .count(),
        3
    );
    assert!(lines
        .iter()
        .all(|l| l["raw"].is_string() && l["partition"].is_string()));

    // SIGTERM: drains, commits the last position, exits 0.
    let pid = svc.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = svc.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "hubwatch did not exit within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let cp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("checkpoints.json")).unwrap(),
    )
    .unwrap();
    let golden = &cp["golden"];
    let part = golden.as_object().unwrap().values().next().unwrap();
    let total_lines = std::fs::read_to_string(fixture()).unwrap().lines().count() as i64;
    assert_eq!(
        part["sequence_number"].as_i64(),
        Some(total_lines - 1),
        "the last line is committed"
    );
}
