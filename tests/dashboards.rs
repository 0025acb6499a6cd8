//! The Grafana dashboards (deploy/grafana/*.json) against a real Prometheus: every query of
//! every panel, its template variables filled in, must return data from hubwatch.
//!
//! The stack gives every metric a panel uses: hubwatch with the default Azure ML pack over
//! Event Hubs AMQP (the in-process emulator, fed the demo's synthetic estate: its last two
//! hours at once, then live with the clock), with blob checkpoints, window
//! state and partition ownership in Azurite, a capped query (series dropped), and routes to
//! Splunk HEC and an HTTP endpoint (the SIEM test receiver, which refuses a few requests
//! now and then: retries and failed deliveries); and a second hubwatch reading a Kafka
//! topic on tansu (Kafka lag and assignments). One Prometheus scrapes both every second.
//! Needs `prometheus`, Azurite, tansu and python3 (scripts/setup-test-deps.sh); fails loudly
//! without them.
//!
//! With HUBWATCH_DASHBOARDS_HOLD=<seconds> the stack keeps running that long after the
//! checks and prints Prometheus's address, for scripts/render-dashboards.py.
//!
//! No JSON Schema of Grafana's dashboard model is published on npm or PyPI; Grafana
//! publishes it as TypeScript types (`@grafana/schema`, generated from its CUE schema). So
//! each dashboard is type-checked as a literal of that `Dashboard` type by the TypeScript
//! compiler (unknown fields and wrong types fail), and what types cannot say is checked
//! here: ids, grid positions, datasources, targets, variables.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::azurite::Azurite;
use common::kafka::Tansu;
use common::siem::SiemReceiver;
use common::*;
use hubwatch::demo::workload::{Workload, WorkloadConfig};
use hubwatch::emulator::{Emulator, EmulatorConfig};
use hubwatch::time::{TICKS_PER_HOUR, TICKS_PER_SECOND};
use serde_json::Value;

const DASHBOARDS: [&str; 2] = [
    "deploy/grafana/azure-ml-overview.json",
    "deploy/grafana/hubwatch-operations.json",
];
const HUB: &str = "insights-logs-aml";
const TOPIC: &str = "aml-diagnostics";
const CONTAINER: &str = "hubwatch";
const HEC_TOKEN: &str = "00000000-1111-2222-3333-444444444444";
/// What Grafana puts for `$__rate_interval` with a 1 s scrape interval is about 4 s; the
/// dashboards are meant for the usual 15–60 s, so a realistic window is used.
const RATE_INTERVAL: &str = "30s";

/// A panel query, with where it is.
struct Query {
    dashboard: String,
    panel: String,
    ref_id: String,
    expr: String,
}

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The variable names a text references: `$name`, `${name}`, `${name:format}`, `[[name]]`.
fn references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let ident = |from: usize| -> String {
        text[from..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, c) in text.char_indices() {
        if c == '$' {
            let name = if b.get(i + 1) == Some(&b'{') {
                ident(i + 2)
            } else {
                ident(i + 1)
            };
            assert!(!name.is_empty(), "a lone '$' in {text:?}");
            out.push(name);
        } else if c == '[' && b.get(i + 1) == Some(&b'[') {
            out.push(ident(i + 2));
        }
    }
    out
}

/// `text` with every variable as the test evaluates it: a dashboard variable matches
/// everything (`.*`, as "All" does with allValue `.*`), Grafana's interval variables a
/// realistic window.
fn substitute(text: &str, variables: &BTreeSet<String>) -> String {
    let mut out = text
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("${__rate_interval}", RATE_INTERVAL)
        .replace("$__interval", "15s")
        .replace("$__range", "1h");
    for v in variables {
        out = out
            .replace(&format!("${{{v}}}"), ".*")
            .replace(&format!("${v}"), ".*");
    }
    assert!(!out.contains('$'), "a variable left in {out:?}");
    out
}

/// Checks one dashboard's model and returns its panel queries and its variables' queries.
fn check_model(path: &str) -> (Vec<Query>, Vec<String>) {
    let d = load(path);
    let title = d["title"].as_str().expect("a title").to_string();
    let uid = d["uid"].as_str().expect("a fixed uid");
    assert!(
        !uid.is_empty() && uid.len() <= 40 && uid.starts_with("hubwatch-"),
        "{path}: uid {uid:?}"
    );
    assert!(
        d["schemaVersion"].as_i64().unwrap() >= 39,
        "{path}: schemaVersion"
    );
    assert!(
        d["id"].is_null(),
        "{path}: an import carries no database id"
    );
    assert!(
        d["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "hubwatch"),
        "{path}: tag hubwatch"
    );

    // Variables: a datasource variable of type prometheus, then label_values queries on it.
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .unwrap_or_else(|| panic!("{path}: a datasource variable"));
    assert_eq!(ds["name"], "datasource", "{path}");
    assert_eq!(ds["query"], "prometheus", "{path}");
    let names: BTreeSet<String> = vars
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), vars.len(), "{path}: variable names are unique");
    let datasource = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let mut variable_queries = Vec::new();
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let name = v["name"].as_str().unwrap();
        assert_eq!(v["datasource"], datasource, "{path}: variable {name}");
        let q = v["query"]["query"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: variable {name} has a query"));
        assert!(
            v["multi"] == true && v["includeAll"] == true && v["allValue"] == ".*",
            "{path}: variable {name} is multi-value with All"
        );
        // Variables may refer only to those defined before them.
        let earlier: Vec<&str> = vars
            .iter()
            .take_while(|w| w["name"] != name)
            .map(|w| w["name"].as_str().unwrap())
            .collect();
        for r in references(q) {
            assert!(
                earlier.contains(&r.as_str()),
                "{path}: variable {name} refers to ${r}, not defined before it"
            );
        }
        variable_queries.push(q.to_string());
    }

    // Panels: unique ids, on the 24-column grid without overlapping, each with the
    // datasource variable and targets with unique refIds; rows are layout only.
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut cells: Vec<(String, i64, i64, i64, i64)> = Vec::new();
    let mut queries = Vec::new();
    let all_panels: Vec<&Value> = panels
        .iter()
        .flat_map(|p| std::iter::once(p).chain(p["panels"].as_array().into_iter().flatten()))
        .collect();
    for p in all_panels {
        let ptitle = p["title"].as_str().expect("a panel title").to_string();
        let id = p["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("{path}: {ptitle}: an id"));
        assert!(ids.insert(id), "{path}: panel id {id} twice ({ptitle})");
        let g = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
            g[k].as_i64()
                .unwrap_or_else(|| panic!("{path}: {ptitle}: gridPos.{k}"))
        });
        assert!(
            x >= 0 && w > 0 && h > 0 && x + w <= 24 && y >= 0,
            "{path}: {ptitle}: gridPos {g}"
        );
        for (other, ox, oy, ow, oh) in &cells {
            let apart = x + w <= *ox || *ox + ow <= x || y + h <= *oy || *oy + oh <= y;
            assert!(apart, "{path}: {ptitle} overlaps {other}");
        }
        cells.push((ptitle.clone(), x, y, w, h));
        if p["type"] == "row" {
            continue;
        }
        assert!(p["type"].is_string(), "{path}: {ptitle}: a type");
        assert_eq!(p["datasource"], datasource, "{path}: {ptitle}");
        for text in [&p["title"], &p["description"]] {
            for r in references(text.as_str().unwrap_or("")) {
                assert!(
                    names.contains(&r),
                    "{path}: {ptitle}: ${r} is not a variable"
                );
            }
        }
        let targets = p["targets"]
            .as_array()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| panic!("{path}: {ptitle}: targets"));
        let mut refs = BTreeSet::new();
        for t in targets {
            let ref_id = t["refId"]
                .as_str()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| panic!("{path}: {ptitle}: a target without refId"));
            assert!(
                refs.insert(ref_id),
                "{path}: {ptitle}: refId {ref_id} twice"
            );
            assert_eq!(t["datasource"], datasource, "{path}: {ptitle} {ref_id}");
            let expr = t["expr"]
                .as_str()
                .filter(|e| !e.trim().is_empty())
                .unwrap_or_else(|| panic!("{path}: {ptitle} {ref_id}: an expr"));
            for text in [expr, t["legendFormat"].as_str().unwrap_or("")] {
                for r in references(text) {
                    assert!(
                        r.starts_with("__") || names.contains(&r),
                        "{path}: {ptitle} {ref_id}: ${r} is not a variable"
                    );
                }
            }
            queries.push(Query {
                dashboard: title.clone(),
                panel: ptitle.clone(),
                ref_id: ref_id.to_string(),
                expr: substitute(expr, &names),
            });
        }
        // A table's transformations name the targets' value columns by refId.
        if let Some(ts) = p["transformations"].as_array() {
            for t in ts {
                if let Some(rename) = t["options"]["renameByName"].as_object() {
                    for field in rename.keys() {
                        if let Some(r) = field.strip_prefix("Value #") {
                            assert!(refs.contains(r), "{path}: {ptitle}: renames {field}");
                        }
                    }
                }
            }
        }
    }
    let variable_queries = variable_queries
        .iter()
        .map(|q| substitute(q, &names))
        .collect();
    (queries, variable_queries)
}

#[test]
fn the_dashboards_are_valid_grafana_models() {
    let mut panels = 0;
    let mut uids = BTreeSet::new();
    for path in DASHBOARDS {
        let (queries, variables) = check_model(path);
        assert!(queries.len() >= 20, "{path}: {} queries", queries.len());
        assert!(!variables.is_empty(), "{path}: variables");
        panels += queries
            .iter()
            .map(|q| &q.panel)
            .collect::<BTreeSet<_>>()
            .len();
        assert!(uids.insert(load(path)["uid"].as_str().unwrap().to_string()));
    }
    assert!(panels >= 40, "{panels} panels");
}

/// Grafana's own schema: each dashboard as a literal of `@grafana/schema`'s `Dashboard`
/// type, compiled with `tsc --strict` (installed in tools/ by scripts/setup-test-deps.sh).
/// Its string enums (`FieldColorModeId`, …) are read as the unions of their values, which
/// is what a JSON file can hold.
#[test]
fn the_dashboards_type_check_against_grafanas_published_schema() {
    let tools = repo().join("tools");
    let tsc = tools.join("node_modules/.bin/tsc");
    assert!(
        tsc.exists()
            && tools
                .join("node_modules/@grafana/schema/package.json")
                .exists(),
        "typescript and @grafana/schema are missing from tools/: run scripts/setup-test-deps.sh"
    );
    // Inside tools/, so that the files resolve @grafana/schema from tools/node_modules.
    let dir = tempfile::Builder::new()
        .prefix(".dashboards-")
        .tempdir_in(&tools)
        .unwrap();
    let mut files = Vec::new();
    for path in DASHBOARDS {
        let json = std::fs::read_to_string(repo().join(path)).unwrap();
        let name = Path::new(path)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let file = dir.path().join(format!("{name}.ts"));
        std::fs::write(
            &file,
            format!(
                "import type {{ Dashboard }} from \"@grafana/schema/dist/types/raw/dashboard/x/types.gen\";\n\
                 type Json<T> = T extends string ? `${{T}}` : T extends number | boolean | null | undefined ? T\n\
                 \x20 : T extends readonly (infer U)[] ? Json<U>[] : T extends object ? {{ [K in keyof T]: Json<T[K]> }} : T;\n\
                 // What Grafana's export for sharing adds around the model.\n\
                 type Export = {{ __inputs?: unknown[]; __requires?: {{ type: string; id: string; name: string; version: string }}[] }};\n\
                 export const dashboard: Json<Dashboard> & Export = {json};\n"
            ),
        )
        .unwrap();
        files.push(file);
    }
    let out = std::process::Command::new(&tsc)
        .args([
            "--noEmit",
            "--strict",
            "--skipLibCheck",
            "--target",
            "es2020",
            "--moduleResolution",
            "node",
        ])
        .args(&files)
        .output()
        .expect("run tsc");
    assert!(
        out.status.success(),
        "the dashboards do not fit Grafana's Dashboard type:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn substitution_and_references_cover_grafanas_forms() {
    assert_eq!(
        references("a{x=~\"$instance\", y=~\"${source:regex}\"}[$__rate_interval] [[old]]"),
        ["instance", "source", "__rate_interval", "old"]
    );
    let vars: BTreeSet<String> = ["workspace".to_string()].into();
    assert_eq!(
        substitute("rate(m{w=~\"$workspace\"}[$__rate_interval])", &vars),
        "rate(m{w=~\".*\"}[30s])"
    );
}

/// GET `path` from Prometheus: the `data` of a success, or the error it answered.
fn prometheus_get(addr: &str, path: &str) -> Result<Value, String> {
    let (status, body) = http_get(addr, path).map_err(|e| format!("GET {path}: {e}"))?;
    let v: Value = serde_json::from_str(&body).map_err(|_| format!("{status}: {body}"))?;
    if status == 200 && v["status"] == "success" {
        Ok(v["data"].clone())
    } else {
        Err(format!("{status} {}: {}", v["errorType"], v["error"]))
    }
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// None when the query answers at least one finite sample; else what it answered.
fn lacks_data(addr: &str, expr: &str) -> Option<String> {
    match prometheus_get(addr, &format!("/api/v1/query?query={}", encode(expr))) {
        Err(e) => Some(format!("error: {e}")),
        Ok(data) => {
            let result = data["result"].as_array().cloned().unwrap_or_default();
            let finite = result.iter().any(|s| {
                s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(f64::is_finite)
            });
            (!finite).then(|| format!("{} series, none finite: {result:?}", result.len()))
        }
    }
}

/// `label_values(metric{…}, label)` through the labels API, as Grafana asks it.
fn label_values(addr: &str, query: &str) -> Result<Vec<String>, String> {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .ok_or_else(|| format!("not label_values(…): {query}"))?;
    let (selector, label) = inner.rsplit_once(',').unwrap();
    let data = prometheus_get(
        addr,
        &format!(
            "/api/v1/label/{}/values?match[]={}",
            label.trim(),
            encode(selector.trim())
        ),
    )?;
    Ok(serde_json::from_value(data).unwrap())
}

/// hubwatch with the default pack over the emulator's hub, blob state and ownership, a
/// capped query and two routes to the SIEM receiver.
fn amqp_config(dir: &Path, hub_cs: &str, receiver: &str) -> std::path::PathBuf {
    let text = format!(
        r#"query_files = [{pack:?}]
[export]
listen = "127.0.0.1:0"
[checkpoint]
interval = "1s"
[checkpoint.blob]
connection_string = "${{TEST_STORAGE_CS}}"
container = "{CONTAINER}"
[[sources]]
type = "amqp"
name = "aml"
connection_string = "{hub_cs}"
start = "earliest"
lag_poll_interval = "1s"
owner_id = "replica-a"
ownership_interval = "1s"
ownership_expiry = "5s"
[[queries]]
name = "cluster_events_capped"
description = "Cluster events per workspace and cluster, capped below the estate's 18 clusters: shows the series cap at work"
max_series = 4
kql = '''
AmlComputeClusterEvent
| summarize events = count() by Workspace = tostring(split(_ResourceId, "/")[8]), ClusterName
'''
[[sinks]]
type = "splunk_hec"
name = "splunk"
endpoint = "http://{receiver}"
token = "${{HW_TEST_HEC_TOKEN}}"
batch = {{ max_events = 50, timeout = "200ms" }}
[[sinks]]
type = "http"
name = "webhook"
url = "http://{receiver}/http/aml"
batch = {{ max_events = 100, timeout = "200ms" }}
[[routes]]
name = "failed_jobs"
sinks = ["splunk"]
kql = "AmlComputeJobEvent | where EventType == 'JobFailed'"
[[routes]]
name = "cluster_events"
sinks = ["webhook"]
kql = "AmlComputeClusterEvent | project TimeGenerated, ClusterName, CurrentNodeCount, TargetNodeCount"
"#,
        pack = repo()
            .join("deploy/config/aml-queries.toml")
            .display()
            .to_string(),
    );
    let path = dir.join("amqp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A second hubwatch on a Kafka topic, with a query of its own (the Azure ML dashboard
/// stays the first one's).
fn kafka_config(dir: &Path, bootstrap: &str) -> std::path::PathBuf {
    let text = format!(
        r#"[export]
listen = "127.0.0.1:0"
[[sources]]
type = "kafka"
name = "kafka"
bootstrap_servers = "{bootstrap}"
topics = ["{TOPIC}"]
group_id = "hubwatch-dashboards"
start = "earliest"
batch_max_wait = "20ms"
session_timeout = "6s"
commit_interval = "1s"
properties = {{ "statistics.interval.ms" = "1000" }}
[[queries]]
name = "kafka_job_events"
kql = '''
AmlComputeJobEvent
| where TimeGenerated > ago(1h)
| summarize events = count() by EventType
'''
"#
    );
    let path = dir.join("kafka.toml");
    std::fs::write(&path, text).unwrap();
    path
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn now_ticks() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (d.as_nanos() / 100) as i64
}

#[test]
fn every_panel_query_returns_data_from_a_real_prometheus() {
    which("prometheus"); // fail before starting anything
    which("python3");
    let started = Instant::now();
    let mut queries = Vec::new();
    let mut variable_queries = Vec::new();
    for path in DASHBOARDS {
        let (q, v) = check_model(path);
        queries.extend(q);
        variable_queries.extend(v);
    }

    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let azurite = Azurite::start();
    azurite.container(&rt, CONTAINER);
    let tansu = Tansu::start();
    rt.block_on(tansu.create_topic(TOPIC, 2));
    let emulator = rt
        .block_on(Emulator::start(EmulatorConfig::single_hub(HUB, 4)))
        .unwrap();
    let rx_dir = dir.path().join("receiver");
    std::fs::create_dir_all(&rx_dir).unwrap();
    let receiver = SiemReceiver::start(&rx_dir, &["--hec-token", HEC_TOKEN, "--count-only"]);

    // The demo's estate, the last two hours of it, as `hubwatch demo` publishes it at its
    // start; the Kafka side gets an estate of its own.
    let start = now_ticks() - 2 * TICKS_PER_HOUR;
    let mut estate = Workload::new(WorkloadConfig::default(), start);
    for body in estate.step(2 * TICKS_PER_HOUR) {
        emulator.publish(HUB, None, body).unwrap();
    }
    let mut kafka_estate = Workload::new(
        WorkloadConfig {
            seed: 11,
            subscriptions: 1,
            ..WorkloadConfig::default()
        },
        now_ticks() - TICKS_PER_HOUR,
    );
    common::kafka::produce(
        &tansu.bootstrap,
        TOPIC,
        2,
        &kafka_estate.step(TICKS_PER_HOUR),
        now_ticks() / 10_000,
    );

    let storage = azurite.connection_string();
    let amqp = Service::start_with_env(
        &amqp_config(dir.path(), &emulator.connection_string(HUB), &receiver.addr),
        &[
            ("TEST_STORAGE_CS", storage.as_str()),
            ("HW_TEST_HEC_TOKEN", HEC_TOKEN),
        ],
    );
    let kafka = Service::start(&kafka_config(dir.path(), &tansu.bootstrap));
    let prom = Prometheus::start(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: hubwatch\n    static_configs:\n      - targets: ['{}', '{}']\n",
            amqp.addr, kafka.addr
        ),
    );
    let stack_up = started.elapsed();

    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // However the checks end (a failed assertion included), the traffic stops, so
        // that the scope can join its thread.
        let _stop = StopOnDrop(&stop);
        // Live traffic, in step with the clock (so that ages are real); and now and then a
        // few requests the receiver refuses (503), which the sinks retry.
        scope.spawn(|| {
            let producer: rdkafka::producer::ThreadedProducer<_> =
                rdkafka::config::ClientConfig::new()
                    .set("bootstrap.servers", &tansu.bootstrap)
                    .set("linger.ms", "5")
                    .create_with_context(rdkafka::producer::DefaultProducerContext)
                    .unwrap();
            let mut tick = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Whole seconds: the estate moves in one-second ticks.
                let due =
                    |w: &Workload| (now_ticks() - w.now()) / TICKS_PER_SECOND * TICKS_PER_SECOND;
                for body in estate.step(due(&estate)) {
                    emulator.publish(HUB, None, body).unwrap();
                }
                let bodies = kafka_estate.step(due(&kafka_estate));
                for (i, body) in bodies.iter().enumerate() {
                    let record = rdkafka::producer::BaseRecord::<(), [u8]>::to(TOPIC)
                        .payload(body.as_slice())
                        .partition((i % 2) as i32);
                    let _ = producer.send(record);
                }
                if tick % 150 == 20 {
                    receiver.control(r#"{"status": 503, "count": 3}"#);
                }
                tick += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(5));
        });

        // Every query of every panel, until each has data (bounded).
        let limit = Duration::from_secs(180);
        let deadline = Instant::now() + limit;
        let mut missing: BTreeMap<String, String>;
        loop {
            missing = BTreeMap::new();
            for q in &queries {
                if let Some(why) = lacks_data(&prom.addr, &q.expr) {
                    assert!(
                        !why.starts_with("error: 400"),
                        "{} / {} / {}: Prometheus refuses {}: {why}",
                        q.dashboard,
                        q.panel,
                        q.ref_id,
                        q.expr
                    );
                    missing.insert(
                        format!("{} / {} / {}: {}", q.dashboard, q.panel, q.ref_id, q.expr),
                        why,
                    );
                }
            }
            for v in &variable_queries {
                match label_values(&prom.addr, v) {
                    Ok(values) if !values.is_empty() => {}
                    other => {
                        missing.insert(format!("variable: {v}"), format!("{other:?}"));
                    }
                }
            }
            if missing.is_empty() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let all_data = started.elapsed();
        let report: Vec<String> = missing
            .iter()
            .map(|(k, v)| format!("{k}\n    {v}"))
            .collect();
        if missing.is_empty() {
            eprintln!(
                "dashboards: {} panel queries and {} variables answered; stack up in {:.1} s, every query with data {:.1} s after the start",
                queries.len(),
                variable_queries.len(),
                stack_up.as_secs_f64(),
                all_data.as_secs_f64()
            );
            if let Some(hold) = std::env::var("HUBWATCH_DASHBOARDS_HOLD")
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                eprintln!(
                    "dashboards: holding the stack {hold} s; Prometheus at http://{}",
                    prom.addr
                );
                std::thread::sleep(Duration::from_secs(hold));
            }
        }
        assert!(
            missing.is_empty(),
            "{} of {} queries without data within {limit:?}:\n{}\n{}",
            missing.len(),
            queries.len() + variable_queries.len(),
            report.join("\n"),
            prom.log()
        );
    });
    drop(amqp);
    drop(kafka);
    rt.block_on(emulator.shutdown());
}
