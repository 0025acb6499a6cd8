//! A real Prometheus server scrapes the running service: the default Azure ML pack's gauges
//! arrive in Prometheus with the values the query API shows. Needs `prometheus` (installed
//! by scripts/setup-test-deps.sh); the test fails loudly without it.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn prometheus_scrapes_the_aml_pack() {
    which("prometheus"); // fail before starting anything
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hubwatch.toml");
    std::fs::write(
        &config,
        format!(
            "query_files = [{:?}]\n[export]\nlisten = \"127.0.0.1:0\"\n[[sources]]\ntype = \"file\"\nname = \"sample\"\npaths = [{:?}]\n",
            repo().join("deploy/config/aml-queries.toml").display().to_string(),
            fixture().display().to_string()
        ),
    )
    .unwrap();
    let mut svc = Service::start(&config);
    svc.wait_for_line("all sources finished", Duration::from_secs(60));

    let prom = Prometheus::start(
        dir.path(),
        &format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: hubwatch\n    static_configs:\n      - targets: ['{}']\n", svc.addr),
    );

    // What hubwatch says, per (workspace, cluster).
    let (_, body) = svc.get("/api/v1/queries/aml_cluster_nodes");
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(
        rows.len() >= 3,
        "the pack sees the fixture's clusters: {body}"
    );

    // What Prometheus scraped (bounded wait: discovery takes a few seconds).
    let deadline = Instant::now() + Duration::from_secs(60);
    let result = loop {
        if let Some(r) = prom.query("aml_cluster_nodes_running_nodes") {
            if !r.is_empty() {
                break r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape hubwatch within 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let with_value: Vec<&serde_json::Value> =
        rows.iter().filter(|r| r["RunningNodes"].is_i64()).collect();
    assert_eq!(result.len(), with_value.len(), "{result:?}");
    for row in with_value {
        let sample = result
            .iter()
            .find(|s| {
                s["metric"]["workspace"] == row["Workspace"]
                    && s["metric"]["cluster_name"] == row["ClusterName"]
            })
            .unwrap_or_else(|| panic!("no series for {row}"));
        assert_eq!(
            sample["value"][1].as_str().unwrap(),
            row["RunningNodes"].as_i64().unwrap().to_string()
        );
        assert_eq!(sample["metric"]["job"], "hubwatch");
    }
}
