//! Scale-out: two replicas, each reading half of the bodies (as two members of one consumer
//! group each own half of the partitions), are scraped by a real Prometheus that loads
//! deploy/prometheus/hubwatch-aml-rules.yml. Every recording rule must give, for every
//! group, exactly what one process reading all the bodies exports. The rules' promtool unit
//! tests run here too. Needs `prometheus` and `promtool` (scripts/setup-test-deps.sh); the
//! tests fail loudly without them.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hubwatch::demo::workload::{Workload, WorkloadConfig};
use hubwatch::time::{parse_datetime, TICKS_PER_MINUTE};

const RULES: &str = "deploy/prometheus/hubwatch-aml-rules.yml";
const RULE_TESTS: &str = "deploy/prometheus/hubwatch-aml-rules.test.yml";

/// Minutes of synthetic event time: all of it lies inside the pack's shortest window (15 m)
/// on every replica's clock, so window edges cannot make the replicas differ from the
/// single process.
const MINUTES: i64 = 8;

type Labels = BTreeMap<String, String>;
/// Gauge name → its series (labels → value).
type Gauges = BTreeMap<String, BTreeMap<Labels, f64>>;

/// The synthetic Azure ML estate of the demo, without late or broken bodies (so that every
/// body counts on whichever replica reads it).
fn bodies() -> Vec<Vec<u8>> {
    let start = parse_datetime("2026-01-01T00:00:00Z").unwrap().0;
    let config = WorkloadConfig {
        late_share: 0.0,
        broken_share: 0.0,
        ..WorkloadConfig::default()
    };
    Workload::new(config, start).step(MINUTES * TICKS_PER_MINUTE)
}

/// Checks what exact combining presumes of the input: every record inside the shortest
/// window on any replica's clock, and no two records of a latest-value group (cluster; workspace metric) with the same
/// time — with a tie, a single process keeps the first record it read, the rules the
/// greater value.
fn assert_combinable(bodies: &[Vec<u8>]) {
    let mut times: HashMap<(String, String, String), BTreeSet<String>> = HashMap::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut records = 0;
    for body in bodies {
        assert!(!body.contains(&b'\n'), "one body per line");
        let v: serde_json::Value = serde_json::from_slice(body).expect("a JSON body");
        for r in v["records"].as_array().expect("an envelope") {
            records += 1;
            let time = r["time"].as_str().expect("a time").to_string();
            let t = parse_datetime(&time).expect("a valid time").0;
            (first, last) = (first.min(t), last.max(t));
            let id = r["resourceId"].as_str().unwrap().to_lowercase();
            let workspace = id.split('/').nth(8).unwrap_or("").to_string();
            let props = match &r["properties"] {
                serde_json::Value::String(s) => serde_json::from_str(s).unwrap(),
                other => other.clone(),
            };
            let key = if r["category"] == "AmlComputeClusterEvent" {
                let cluster = props["ClusterName"].as_str().unwrap().to_string();
                ("cluster".to_string(), workspace, cluster)
            } else if let Some(metric) = r["metricName"].as_str() {
                ("metric".to_string(), workspace, metric.to_string())
            } else {
                continue;
            };
            let fresh = times.entry(key.clone()).or_default().insert(time.clone());
            assert!(fresh, "two records of {key:?} at {time}: a tie");
        }
    }
    assert!(records > 1000, "{records} records");
    // The pack's shortest window is 15 minutes.
    assert!(
        last - first < 15 * TICKS_PER_MINUTE,
        "records span {} minutes: some would leave a window",
        (last - first) / TICKS_PER_MINUTE
    );
}

/// The names of the default pack's queries.
fn pack_queries() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("deploy/config/aml-queries.toml")).unwrap();
    let pack: toml::Value = toml::from_str(&text).expect("the pack is TOML");
    pack["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap().to_string())
        .collect()
}

fn write_lines(path: &Path, bodies: &[&Vec<u8>]) {
    let mut text = Vec::new();
    for b in bodies {
        text.extend_from_slice(b);
        text.push(b'\n');
    }
    std::fs::write(path, text).unwrap();
}

/// Starts `hubwatch run` with the default pack over one file and waits until it has read
/// it all.
fn replica(dir: &Path, name: &str, input: &Path) -> Service {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "query_files = [{:?}]\n[export]\nlisten = \"127.0.0.1:0\"\n[[sources]]\ntype = \"file\"\nname = {name:?}\npaths = [{:?}]\n",
            repo().join("deploy/config/aml-queries.toml").display().to_string(),
            input.display().to_string()
        ),
    )
    .unwrap();
    let mut svc = Service::start(&config);
    svc.wait_for_line("all sources finished", Duration::from_secs(60));
    svc
}

/// Unescapes a label value of the text format.
fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses `{k="v",...}` (without the braces).
fn parse_labels(text: &str) -> Labels {
    let mut labels = Labels::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        // The value ends at the first quote not escaped by a backslash.
        let bytes = after.as_bytes();
        let mut end = 0;
        while end < bytes.len() && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\')) {
            end += 1;
        }
        labels.insert(
            name.trim_start_matches(',').trim().to_string(),
            unescape(&after[..end]),
        );
        rest = after.get(end + 1..).unwrap_or("");
    }
    labels
}

/// The gauges in a `/metrics` text whose names start with `prefix`; a gauge with a `# TYPE`
/// line and no samples (every value null) is present with no series.
fn gauges(metrics: &str, prefix: &str) -> Gauges {
    let mut out = Gauges::new();
    for line in metrics.lines() {
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let name = decl.split_whitespace().next().unwrap();
            if name.starts_with(prefix) {
                out.entry(name.to_string()).or_default();
            }
            continue;
        }
        if line.starts_with('#') || !line.starts_with(prefix) {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, parse_labels(l.strip_suffix('}').unwrap())),
            None => (series, Labels::new()),
        };
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        out.entry(name.to_string())
            .or_default()
            .insert(labels, value);
    }
    out
}

/// The sum of a counter's series in a `/metrics` text.
fn counter_total(metrics: &str, name: &str) -> f64 {
    gauges(metrics, name)
        .get(name)
        .map(|s| s.values().sum())
        .unwrap_or(0.0)
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Compares one rule's result with the single process's gauge; None when they agree.
fn difference(
    rule: &str,
    got: &[serde_json::Value],
    want: &BTreeMap<Labels, f64>,
) -> Option<String> {
    let mut got_series = BTreeMap::new();
    for s in got {
        let mut labels: Labels = serde_json::from_value(s["metric"].clone()).unwrap();
        labels.remove("__name__");
        let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        got_series.insert(labels, value);
    }
    let mut problems = Vec::new();
    for (labels, w) in want {
        match got_series.get(labels) {
            Some(g) if same(*g, *w) => {}
            Some(g) => problems.push(format!("{labels:?}: {g}, single process {w}")),
            None => problems.push(format!("{labels:?}: missing, single process {w}")),
        }
    }
    for (labels, g) in &got_series {
        if !want.contains_key(labels) {
            problems.push(format!("{labels:?}: {g}, single process exports nothing"));
        }
    }
    (!problems.is_empty()).then(|| format!("{rule}: {}", problems.join("; ")))
}

#[test]
fn recording_rules_combine_two_replicas_into_the_single_process_answer() {
    which("prometheus"); // fail before starting anything
    let promtool = which("promtool");
    let dir = tempfile::tempdir().unwrap();

    // The same bodies, split as partitions would split them, and whole.
    let bodies = bodies();
    assert_combinable(&bodies);
    let half = |parity: usize| -> Vec<&Vec<u8>> {
        bodies
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == parity)
            .map(|(_, b)| b)
            .collect()
    };
    write_lines(&dir.path().join("a.ndjson"), &half(0));
    write_lines(&dir.path().join("b.ndjson"), &half(1));
    write_lines(
        &dir.path().join("all.ndjson"),
        &bodies.iter().collect::<Vec<_>>(),
    );

    let replica_a = replica(dir.path(), "a", &dir.path().join("a.ndjson"));
    let replica_b = replica(dir.path(), "b", &dir.path().join("b.ndjson"));
    let single = replica(dir.path(), "single", &dir.path().join("all.ndjson"));
    let metrics = |s: &Service| {
        let (status, text) = s.get("/metrics");
        assert_eq!(status, 200);
        text
    };
    let (text_a, text_b, text_single) =
        (metrics(&replica_a), metrics(&replica_b), metrics(&single));

    // The pack's names pass the Prometheus linter.
    let lint = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .output_with_stdin(text_single.as_bytes());
    assert!(lint.0.success(), "promtool check metrics: {}", lint.1);

    // The halves are a partition of the input, and nothing fell outside a window.
    for table in [
        "AmlComputeClusterEvent",
        "AmlComputeJobEvent",
        "AmlRunStatusChangedEvent",
        "AzureMetrics",
    ] {
        let name = "hubwatch_parse_records_total";
        let count = |text: &str| {
            gauges(text, name)
                .get(name)
                .and_then(|s| s.iter().find(|(l, _)| l["table"] == table).map(|(_, v)| *v))
                .unwrap_or(0.0)
        };
        let (ca, cb, cs) = (count(&text_a), count(&text_b), count(&text_single));
        assert!(ca > 0.0 && cb > 0.0, "{table}: {ca} + {cb}");
        assert_eq!(ca + cb, cs, "{table}");
    }
    for text in [&text_a, &text_b, &text_single] {
        assert_eq!(counter_total(text, "hubwatch_parse_rejected_total"), 0.0);
        assert_eq!(
            counter_total(text, "hubwatch_query_outside_window_total"),
            0.0
        );
        assert_eq!(
            counter_total(text, "hubwatch_query_series_dropped_total"),
            0.0
        );
    }

    let want = gauges(&text_single, "aml_");
    let (part_a, part_b) = (gauges(&text_a, "aml_"), gauges(&text_b, "aml_"));
    for (name, series) in &want {
        assert!(
            !series.is_empty(),
            "{name}: the input should give it values"
        );
    }
    // Neither replica alone has the answer of any query: combining is exercised.
    for query in pack_queries() {
        let columns: Vec<(&String, &BTreeMap<Labels, f64>)> = want
            .iter()
            .filter(|(g, _)| g.starts_with(&format!("{query}_")))
            .collect();
        assert!(!columns.is_empty(), "{query} exports nothing");
        for (replica, part) in [("a", &part_a), ("b", &part_b)] {
            let differs = columns
                .iter()
                .any(|(g, series)| part.get(*g) != Some(*series));
            assert!(
                differs,
                "replica {replica} alone already exports {query}'s answer"
            );
        }
    }

    // A real Prometheus scrapes both replicas (not the single process) and evaluates the
    // rules every second.
    let prom = Prometheus::start(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {:?}\nscrape_configs:\n  - job_name: hubwatch\n    static_configs:\n      - targets: ['{}', '{}']\n",
            repo().join(RULES).display().to_string(),
            replica_a.addr,
            replica_b.addr
        ),
    );

    // Every exported gauge has its rule, and every rule is a gauge's.
    let groups = prom.api("/api/v1/rules").expect("the rules API answers");
    let rules: Vec<serde_json::Value> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect();
    let names: BTreeSet<String> = rules
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    let expected_names: BTreeSet<String> = want
        .keys()
        .map(|g| format!("hubwatch:{g}:combined"))
        .collect();
    assert_eq!(names, expected_names, "one rule per exported gauge");
    assert_eq!(rules.len(), names.len(), "no rule twice");

    // Bounded wait until both targets are scraped and the rules evaluated over them; then
    // every rule equals the single process, group by group.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let up = prom.query("sum(up)").and_then(|r| {
            r.first()
                .map(|s| s["value"][1].as_str().unwrap_or("").to_string())
        });
        let mut problems = Vec::new();
        if up.as_deref() != Some("2") {
            problems.push(format!("targets up: {up:?}"));
        } else {
            for (gauge, series) in &want {
                let rule = format!("hubwatch:{gauge}:combined");
                match prom.query(&rule) {
                    Some(got) => problems.extend(difference(&rule, &got, series)),
                    None => problems.push(format!("{rule}: no answer")),
                }
            }
        }
        if problems.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 90 s, the combined rules differ from the single process:\n{}\nprometheus log:\n{}",
            problems.join("\n"),
            prom.log()
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // The input tells the rules from the naive combinations they replace.
    for (naive, gauge) in [
        (
            "max by (workspace, cluster_name) (aml_cluster_nodes_running_nodes)",
            "aml_cluster_nodes_running_nodes",
        ),
        (
            "avg by (workspace, cluster_name) (aml_cluster_target_nodes_1h_avg_target_nodes)",
            "aml_cluster_target_nodes_1h_avg_target_nodes",
        ),
        (
            "avg by (workspace, cluster_name) (aml_job_failures_15m_failed_ratio)",
            "aml_job_failures_15m_failed_ratio",
        ),
        (
            "max by (workspace, metric_name) (aml_workspace_metrics_total_value)",
            "aml_workspace_metrics_total_value",
        ),
    ] {
        let got = prom.query(naive).expect("Prometheus answers");
        assert!(
            difference(naive, &got, &want[gauge]).is_some(),
            "{naive} gives the single process's {gauge} too: the input does not exercise its rule"
        );
    }

    // And the rules evaluated without errors.
    let groups = prom.api("/api/v1/rules").expect("the rules API answers");
    for g in groups["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "{r}");
        }
    }
}

#[test]
fn the_rules_pass_promtool_check_and_their_unit_tests() {
    promtool(&["check", "rules", RULES]);
    promtool(&["test", "rules", RULE_TESTS]);
}
