//! The HTTP sinks through the real binary, against the test receiver that the vendors'
//! own clients were checked against (tests/siem_receivers.rs): Splunk HEC with indexer
//! acknowledgement, Elasticsearch `_bulk`, and a generic NDJSON endpoint. Each meets the
//! faults a real receiver has — down at start, 503s, connections closed mid-request, one
//! record refused, items throttled, hubwatch killed while forwarding — and every row the
//! route selects arrives at least once or is dead-lettered with the receiver's reason.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::siem::SiemReceiver;
use common::*;
use serde_json::Value;

const ROUTE: &str = "AmlComputeJobEvent | where EventType != 'JobRunning' | project TimeGenerated, ClusterName, JobName, EventType";

fn write_config(dir: &Path, input: &Path, sink: &str, checkpoint: bool) -> PathBuf {
    let text = format!(
        "[export]\nlisten = \"127.0.0.1:0\"\n{}\
         [[sources]]\ntype = \"file\"\nname = \"exports\"\npaths = [{:?}]\nfollow = {checkpoint}\n\
         {sink}\n\
         [[routes]]\nname = \"jobs\"\nsinks = [\"siem\"]\nindex = \"aml-{{table}}\"\nkql = \"{ROUTE}\"\n\
         [[queries]]\nname = \"jobs\"\nkql = \"AmlComputeJobEvent | summarize n = count()\"\n",
        if checkpoint {
            "[checkpoint]\ndir = \"cp\"\ninterval = \"100ms\"\n"
        } else {
            ""
        },
        input.display().to_string()
    );
    let path = dir.join("hubwatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The rows the route selects, by their origin (`sequence number`, and the row): what a
/// file sink receives from the same input.
fn expected_rows(input: &Path) -> BTreeMap<(i64, String), i64> {
    let dir = tempfile::tempdir().unwrap();
    let sink = "[[sinks]]\ntype = \"file\"\nname = \"siem\"\npath = \"rows.ndjson\"";
    let mut svc = Service::start(&write_config(dir.path(), input, sink, false));
    svc.wait_for_line("all sources finished", Duration::from_secs(30));
    let rows: Vec<Value> = std::fs::read_to_string(dir.path().join("rows.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    count(&rows)
}

fn key(row: &Value) -> (i64, String) {
    let mut r = row.clone();
    let seq = r["_hubwatch"]["sequence_number"].as_i64().unwrap();
    r.as_object_mut().unwrap().remove("_hubwatch");
    (seq, r.to_string())
}

fn count(rows: &[Value]) -> BTreeMap<(i64, String), i64> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(key(r)).or_default() += 1;
    }
    m
}

/// The sink's dead letters so far: the whole lines (one may be being written).
fn dead_letters(dir: &Path) -> Vec<Value> {
    json_lines(&dir.join("buffers/siem/dead-letter.ndjson"))
}

/// A marker held by the rows of one event (its sequence number in `_hubwatch`).
fn marker_of(want: &BTreeMap<(i64, String), i64>) -> (String, i64) {
    let seq = want.keys().nth(want.len() / 2).unwrap().0;
    (format!("\"sequence_number\":{seq}}}"), seq)
}

#[test]
fn splunk_hec_with_indexer_ack_gets_every_row_through_an_outage_503s_and_a_refused_record() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture();
    let want = expected_rows(&input);
    let total: i64 = want.values().sum();
    let (marker, poisoned_seq) = marker_of(&want);

    // hubwatch starts while the receiver is not there yet: the engine and its metrics go
    // on, the rows wait in the buffer.
    let port = free_port();
    let sink = format!(
        "[[sinks]]\ntype = \"splunk_hec\"\nname = \"siem\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
         token = \"${{HW_TEST_HEC_TOKEN}}\"\nindexer_ack = true\nack_timeout = \"20s\"\n\
         batch = {{ max_events = 50 }}"
    );
    let token = "00000000-1111-2222-3333-444444444444";
    let mut svc = Service::start_with_env(
        &write_config(dir.path(), &input, &sink, false),
        &[("HW_TEST_HEC_TOKEN", token)],
    );
    svc.wait_for_line("all sources finished", Duration::from_secs(30));
    let (_, metrics) = svc.get("/metrics");
    assert_eq!(
        metric(&metrics, "hubwatch_forward_rows_total{route=\"jobs\"}"),
        Some(total as f64),
        "the route went on with its receiver down"
    );
    assert!(
        metric(
            &metrics,
            "hubwatch_forward_sink_buffer_bytes{sink=\"siem\"}"
        )
        .unwrap_or(0.0)
            > 0.0
    );
    let (_, verbose) = svc.get("/readyz?verbose");
    assert!(verbose.contains("sink siem: failing"), "{verbose}");
    assert!(!verbose.contains(token), "no secret in the health details");

    // The receiver comes up answering 503 three times, then drops two connections
    // mid-request, and refuses the events of one source event for good.
    let rx_dir = dir.path().join("rx");
    std::fs::create_dir_all(&rx_dir).unwrap();
    let rx = SiemReceiver::start_on(
        &rx_dir,
        port,
        &["--hec-token", token, "--hec-ack", "--ack-delay-ms", "300"],
    );
    rx.control(&format!(
        r#"{{"status":503,"count":3,"close":2,"reject_marker":{}}}"#,
        serde_json::to_string(&marker).unwrap()
    ));
    let delivered_or_refused = || {
        let mut seen: BTreeSet<(i64, String)> = rx
            .hec_events()
            .iter()
            .map(|e| key(&e["event"]["event"]))
            .collect();
        for d in dead_letters(dir.path()) {
            let e: Value = serde_json::from_str(d["message"].as_str().unwrap()).unwrap();
            seen.insert(key(&e["event"]));
        }
        want.keys().all(|k| seen.contains(k))
    };
    wait_until(
        "every row delivered or refused",
        Duration::from_secs(90),
        delivered_or_refused,
    );
    wait_until(
        "the sink has nothing left to deliver",
        Duration::from_secs(30),
        || {
            let (_, m) = svc.get("/metrics");
            metric(
                &m,
                "hubwatch_forward_sink_oldest_unacked_age_seconds{sink=\"siem\"}",
            ) == Some(0.0)
        },
    );

    let events = rx.hec_events();
    let rows: Vec<Value> = events.iter().map(|e| e["event"]["event"].clone()).collect();
    let dead = dead_letters(dir.path());
    assert!(!dead.is_empty(), "the marked rows were refused");
    for d in &dead {
        assert_eq!(d["sink"], "siem");
        assert_eq!(d["kind"], "hec_code_6", "{d}");
        let event: Value = serde_json::from_str(d["message"].as_str().unwrap()).unwrap();
        assert_eq!(
            event["event"]["_hubwatch"]["sequence_number"], poisoned_seq,
            "only rows holding the marker are dead-lettered: {d}"
        );
    }
    let got = count(&rows);
    let refused = count(
        &dead
            .iter()
            .map(|d| {
                serde_json::from_str::<Value>(d["message"].as_str().unwrap()).unwrap()["event"]
                    .clone()
            })
            .collect::<Vec<_>>(),
    );
    let missing: Vec<_> = want
        .iter()
        .filter(|(k, n)| {
            got.get(*k).copied().unwrap_or(0) + refused.get(*k).copied().unwrap_or(0) < **n
        })
        .collect();
    assert!(
        missing.is_empty(),
        "every row delivered or dead-lettered; missing {missing:?}"
    );
    assert!(
        got.keys().all(|k| k.0 != poisoned_seq),
        "no marked row was taken"
    );
    // HEC's fields: time is TimeGenerated, the sourcetype names the table, the index is
    // the route's.
    for e in &events {
        let event = &e["event"];
        let t = hubwatch::time::parse_datetime(event["event"]["TimeGenerated"].as_str().unwrap())
            .unwrap()
            .0;
        let secs = event["time"].as_f64().unwrap();
        assert!((secs * 1000.0 - (t / 10_000) as f64).abs() < 1.0, "{event}");
        assert_eq!(event["sourcetype"], "azure:amlcomputejobevent");
        assert_eq!(event["index"], "aml-amlcomputejobevent");
        assert_eq!(
            e["channel"].as_str().map(str::len),
            Some(36),
            "on a channel: {e}"
        );
    }
    // With indexer acknowledgement, every row is in a request Splunk acknowledged (the
    // rows taken before the refused one, unconfirmed, were sent again).
    let acked = count(
        &events
            .iter()
            .filter(|e| e["ackId"].as_u64().is_some())
            .map(|e| e["event"]["event"].clone())
            .collect::<Vec<_>>(),
    );
    let unacked: Vec<_> = want
        .keys()
        .filter(|k| k.0 != poisoned_seq && !acked.contains_key(*k))
        .collect();
    assert!(unacked.is_empty(), "rows never acknowledged: {unacked:?}");
    let (_, metrics) = svc.get("/metrics");
    let m = |s: &str| metric(&metrics, s).unwrap_or(0.0);
    assert!(
        m("hubwatch_forward_sink_delivery_failures_total{kind=\"status_503\",sink=\"siem\"}")
            >= 3.0,
        "{metrics}"
    );
    assert!(
        m("hubwatch_forward_sink_delivery_failures_total{kind=\"connect\",sink=\"siem\"}") >= 1.0
    );
    assert_eq!(
        m("hubwatch_forward_sink_dead_letters_total{reason=\"hec_code_6\",sink=\"siem\"}"),
        dead.len() as f64
    );
    assert!(
        m("hubwatch_forward_sink_sent_total{sink=\"siem\"}")
            >= (total as usize - dead.len()) as f64
    );
    let stats = rx.stats();
    assert!(
        stats.to_string().contains("ack"),
        "the sink polled for acks: {stats}"
    );
    let (_, verbose) = svc.get("/readyz?verbose");
    assert!(verbose.contains("sink siem: ok"), "{verbose}");
    eprintln!(
        "{total} rows: {} HEC events ({} duplicates), {} dead-lettered",
        events.len(),
        events.len() as i64 + dead.len() as i64 - total,
        dead.len()
    );
}

#[test]
fn elasticsearch_bulk_keeps_one_document_per_row_through_throttling_a_mapping_error_and_kills() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bodies.ndjson");
    std::fs::copy(fixture(), &input).unwrap();
    let want = expected_rows(&input);
    let total: i64 = want.values().sum();
    let (marker, poisoned_seq) = marker_of(&want);

    let rx_dir = dir.path().join("rx");
    std::fs::create_dir_all(&rx_dir).unwrap();
    let rx = SiemReceiver::start(&rx_dir, &["--es-api-key", "a2V5OnNlY3JldA=="]);
    rx.control(&format!(
        r#"{{"item_status":429,"item_count":40,"delay_ms":60,"reject_marker":{}}}"#,
        serde_json::to_string(&marker).unwrap()
    ));
    let sink = format!(
        "[[sinks]]\ntype = \"elasticsearch\"\nname = \"siem\"\nendpoint = \"http://{}\"\n\
         api_key = \"${{HW_TEST_ES_KEY}}\"\necs = true\nbatch = {{ max_events = 40 }}",
        rx.addr
    );
    let config = write_config(dir.path(), &input, &sink, true);
    let env = [("HW_TEST_ES_KEY", "a2V5OnNlY3JldA==")];
    // Killed twice while forwarding: the batches after the last commit are sent again.
    for wait in [300, 700] {
        let mut svc = Service::start_with_env(&config, &env);
        std::thread::sleep(Duration::from_millis(wait));
        svc.child.kill().unwrap();
        svc.child.wait().unwrap();
    }
    let svc = Service::start_with_env(&config, &env);
    wait_until(
        "every row indexed or refused",
        Duration::from_secs(90),
        || {
            let ids: BTreeSet<String> = rx
                .es_docs()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_string())
                .collect();
            ids.len() as i64 + dead_letters(dir.path()).len() as i64 >= total
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let docs = rx.es_docs();
    let ids: BTreeSet<&str> = docs.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.len(),
        docs.len(),
        "a resent row meets its document: no duplicates"
    );
    let dead = dead_letters(dir.path());
    assert!(!dead.is_empty());
    for d in &dead {
        assert_eq!(d["kind"], "mapper_parsing_exception", "{d}");
        assert!(d["message"].as_str().unwrap().contains(&marker));
    }
    let rows: Vec<Value> = docs
        .iter()
        .map(|d| {
            let mut doc = d["doc"].clone();
            let o = doc.as_object_mut().unwrap();
            for ecs in ["@timestamp", "ecs", "cloud", "event", "log", "azure"] {
                o.remove(ecs);
            }
            doc
        })
        .collect();
    let got = count(&rows);
    for (k, n) in &want {
        if k.0 == poisoned_seq {
            assert!(!got.contains_key(k), "a refused row is not indexed");
        } else {
            assert_eq!(got.get(k), Some(n), "every other row exactly once: {k:?}");
        }
    }
    let d = &docs[0];
    assert_eq!(d["index"], "aml-amlcomputejobevent");
    assert_eq!(d["op"], "create");
    assert_eq!(d["doc"]["event"]["dataset"], "azure.amlcomputejobevent");
    assert_eq!(d["doc"]["cloud"]["provider"], "azure");
    assert_eq!(d["doc"]["@timestamp"], d["doc"]["TimeGenerated"]);
    let stats = rx.stats();
    assert_eq!(
        stats["faults"]["items"], 40,
        "40 items were throttled (and, every row being in, sent again): {stats}"
    );
    let (_, metrics) = svc.get("/metrics");
    assert!(metric(&metrics, "hubwatch_forward_sink_sent_total{sink=\"siem\"}").is_some());
    eprintln!(
        "{total} rows: {} documents, {} dead-lettered, {} item errors (409s of rows sent again among them) after two kills",
        docs.len(),
        dead.len(),
        stats["es_item_errors"]
    );
}

#[test]
fn an_http_sink_posts_gzipped_ndjson_with_headers_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture();
    let want = expected_rows(&input);
    let total: i64 = want.values().sum();
    let rx_dir = dir.path().join("rx");
    std::fs::create_dir_all(&rx_dir).unwrap();
    let rx = SiemReceiver::start(&rx_dir, &[]);
    rx.control(r#"{"close":2,"delay_ms":20}"#);
    let sink = format!(
        "[[sinks]]\ntype = \"http\"\nname = \"siem\"\nurl = \"http://{}/http/logs\"\n\
         headers = {{ \"X-Api-Key\" = \"${{HW_TEST_HTTP_KEY}}\" }}\nbatch = {{ max_events = 100 }}",
        rx.addr
    );
    let mut svc = Service::start_with_env(
        &write_config(dir.path(), &input, &sink, false),
        &[("HW_TEST_HTTP_KEY", "k-123")],
    );
    svc.wait_for_line("all sources finished", Duration::from_secs(30));
    wait_until("every row posted", Duration::from_secs(60), || {
        rx.http_docs().len() as i64 >= total
    });
    let docs = rx.http_docs();
    let rows: Vec<Value> = docs.iter().map(|d| d["doc"].clone()).collect();
    let got = count(&rows);
    for (k, n) in &want {
        assert!(got.get(k).is_some_and(|g| g >= n), "{k:?}");
    }
    assert_eq!(docs[0]["headers"]["x-api-key"], "k-123", "{}", docs[0]);
    let stats = rx.stats();
    assert!(stats["gzip_requests"].as_u64().unwrap_or(0) > 0, "{stats}");
}

/// HEC's raw endpoint with `output = "record"` and indexer acknowledgement: each selected
/// record as it was in its body, one a line, with the sink's fixed sourcetype and index
/// as query parameters, each request on the sink's channel and confirmed by an ack poll.
#[test]
fn splunk_hec_raw_takes_the_original_records_as_lines_with_indexer_ack() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture();
    let want: i64 = expected_rows(&input).values().sum();
    let rx_dir = dir.path().join("rx");
    std::fs::create_dir_all(&rx_dir).unwrap();
    let rx = SiemReceiver::start(
        &rx_dir,
        &[
            "--hec-token",
            "raw-token",
            "--hec-ack",
            "--ack-delay-ms",
            "200",
        ],
    );
    let config = dir.path().join("hubwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n\
             [[sources]]\ntype = \"file\"\nname = \"exports\"\npaths = [{:?}]\n\
             [[sinks]]\ntype = \"splunk_hec\"\nname = \"siem\"\nendpoint = \"http://{}\"\n\
             token = \"raw-token\"\napi = \"raw\"\nsourcetype = \"mscs:azure:eventhub\"\nindex = \"azure\"\n\
             indexer_ack = true\n\
             [[routes]]\nname = \"jobs\"\nsinks = [\"siem\"]\noutput = \"record\"\nkql = \"{ROUTE}\"\n",
            input.display().to_string(),
            rx.addr
        ),
    )
    .unwrap();
    let mut svc = Service::start(&config);
    svc.wait_for_line("all sources finished", Duration::from_secs(30));
    wait_until("every record posted", Duration::from_secs(60), || {
        rx.hec_events().len() as i64 >= want
    });
    let events = rx.hec_events();
    assert_eq!(events.len() as i64, want);
    let bodies = std::fs::read_to_string(&input).unwrap();
    for e in &events {
        assert_eq!(e["endpoint"], "/services/collector/raw", "{e}");
        let line = e["event"]["event"].as_str().unwrap();
        assert!(bodies.contains(line), "the record as it was: {line}");
        assert_eq!(e["event"]["sourcetype"], "mscs:azure:eventhub");
        assert_eq!(e["event"]["index"], "azure");
        assert!(e["ackId"].as_u64().is_some(), "acknowledged: {e}");
        assert_eq!(e["channel"].as_str().map(str::len), Some(36), "{e}");
    }
    // A batch counts as sent once its ack poll says it is indexed.
    wait_until("every record confirmed", Duration::from_secs(30), || {
        let (_, metrics) = svc.get("/metrics");
        metric(&metrics, "hubwatch_forward_sink_sent_total{sink=\"siem\"}") == Some(want as f64)
    });
    let polls = rx.stats()["requests"]["hec_ack"].as_u64().unwrap_or(0);
    assert!(
        polls >= 1,
        "the sink polled /services/collector/ack: {}",
        rx.stats()
    );
}

/// A HEC endpoint over HTTPS that requires a client certificate (mutual TLS): the sink
/// with `tls.cert_file` and `tls.key_file` delivers every row; the one without is refused
/// at every attempt, and keeps its rows, counting the failures.
#[test]
fn splunk_hec_over_mutual_tls_takes_rows_only_from_the_sink_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture();
    let want: i64 = expected_rows(&input).values().sum();
    let (server_dir, client_dir) = (dir.path().join("server"), dir.path().join("client"));
    std::fs::create_dir_all(&server_dir).unwrap();
    std::fs::create_dir_all(&client_dir).unwrap();
    let (cert, key) = common::rsyslog::self_signed(&server_dir);
    let (client_cert, client_key) = common::rsyslog::self_signed(&client_dir);
    let rx_dir = dir.path().join("rx");
    std::fs::create_dir_all(&rx_dir).unwrap();
    let path = |p: &Path| p.display().to_string();
    let rx = SiemReceiver::start(
        &rx_dir,
        &[
            "--hec-token",
            "mtls-token",
            "--tls-cert",
            &path(&cert),
            "--tls-key",
            &path(&key),
            "--tls-client-ca",
            &path(&client_cert),
        ],
    );
    let port = rx.addr.rsplit(':').next().unwrap();
    let sink = |name: &str, client: &str| {
        format!(
            "[[sinks]]\ntype = \"splunk_hec\"\nname = \"{name}\"\nendpoint = \"https://localhost:{port}\"\n\
             token = \"mtls-token\"\nindex = \"{name}\"\ntls = {{ ca_file = {:?}{client} }}\n",
            path(&cert)
        )
    };
    let config = dir.path().join("hubwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n\
             [[sources]]\ntype = \"file\"\nname = \"exports\"\npaths = [{:?}]\n{}{}\
             [[routes]]\nname = \"jobs\"\nsinks = [\"mtls\", \"anon\"]\nkql = \"{ROUTE}\"\n",
            input.display().to_string(),
            sink(
                "mtls",
                &format!(
                    ", cert_file = {:?}, key_file = {:?}",
                    path(&client_cert),
                    path(&client_key)
                )
            ),
            sink("anon", ""),
        ),
    )
    .unwrap();
    let mut svc = Service::start(&config);
    svc.wait_for_line("all sources finished", Duration::from_secs(30));
    wait_until("every row over mutual TLS", Duration::from_secs(60), || {
        rx.hec_events().len() as i64 >= want
    });
    let failures = |svc: &Service| {
        let (_, metrics) = svc.get("/metrics");
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("hubwatch_forward_sink_delivery_failures_total")
                    && l.contains("sink=\"anon\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    wait_until(
        "the sink without a certificate refused twice",
        Duration::from_secs(30),
        || failures(&svc) >= 2.0,
    );
    let events = rx.hec_events();
    assert_eq!(events.len() as i64, want, "each row once, from one sink");
    assert!(
        events.iter().all(|e| e["event"]["index"] == "mtls"),
        "nothing from the sink without a certificate"
    );
    let (_, verbose) = svc.get("/readyz?verbose");
    assert!(verbose.contains("sink mtls: ok"), "{verbose}");
    assert!(verbose.contains("sink anon: failing"), "{verbose}");
}
