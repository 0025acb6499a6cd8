//! The SIEM sinks' test receiver (`tests/peers/siem_receiver.py`) against the vendors' own
//! clients: Splunk's `splunk-logging` (npm, in tools/) for HTTP Event Collector and the
//! official `elasticsearch` Python client (in .venv) for the `_bulk` API, both installed by
//! `scripts/setup-test-deps.sh` (missing = failure, not skip). The receiver must record
//! field by field what each client sent, and each client must see success, or the errors
//! it is meant to see, as it would from the real server. The other tests pin the parts of
//! the receiver's contract that the sinks' tests lean on and no vendor client here uses:
//! HEC channels and indexer acks, gzip bodies, fault injection, --count-only.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::siem::{gzip_stored, http_post, run_json, HttpReply, SiemReceiver};
use common::{http_get, repo, which};
use serde_json::{json, Value};

const HEC_TOKEN: &str = "8f1c2b7e-0d4a-4e57-9b1e-3a6f0c2d9e11";
/// An API key as clients send it: base64 of `id:key`.
const ES_API_KEY: &str = "aHVid2F0Y2g6dGVzdC1rZXk=";
const CHANNEL: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
const NDJSON: (&str, &str) = ("Content-Type", "application/x-ndjson");

fn post(rx: &SiemReceiver, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpReply {
    http_post(&rx.addr, path, headers, body).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// Node with `splunk-logging` in tools/node_modules, running `tests/peers/hec_client.js`.
fn splunk_logging() -> Command {
    let lib = repo().join("tools/node_modules/splunk-logging/package.json");
    assert!(
        lib.exists(),
        "splunk-logging is not installed in tools/node_modules: run scripts/setup-test-deps.sh (the test command does)"
    );
    let mut cmd = Command::new(which("node"));
    cmd.arg(repo().join("tests/peers/hec_client.js"));
    cmd
}

/// `.venv/bin/python` with `elasticsearch`, running `tests/peers/es_client.py`.
fn elasticsearch_py() -> Command {
    let python: PathBuf = repo().join(".venv/bin/python");
    let has_client = python.exists()
        && Command::new(&python)
            .args(["-c", "import elasticsearch"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        has_client,
        "the elasticsearch client is not installed in .venv: run scripts/setup-test-deps.sh (the test command does)"
    );
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/peers/es_client.py"));
    cmd
}

fn sorted_keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

/// splunk-logging's batches (maxBatchCount 10) arrive whole, each event with the metadata
/// the library was given; a rejected event and a wrong token come back to the library as
/// Splunk's codes 6 and 4.
#[test]
fn splunk_logging_batches_arrive_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let rx = SiemReceiver::start(dir.path(), &["--hec-token", HEC_TOKEN]);
    let (n, batch) = (25u64, 10u64);
    let mut cmd = splunk_logging();
    cmd.arg(
        json!({"url": format!("http://{}", rx.addr), "token": HEC_TOKEN, "n": n, "batch": batch})
            .to_string(),
    );
    let report = run_json(
        cmd,
        "hec_client.js (splunk-logging)",
        Duration::from_secs(90),
    );
    let phases = &report["phases"];

    let ok = &phases["ok"];
    assert_eq!(ok["errors"], json!([]), "the library reported errors: {ok}");
    let responses = ok["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 3, "25 events in batches of 10: {ok}");
    for r in responses {
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["body"], json!({"text": "Success", "code": 0}));
    }

    // The library sends its batches concurrently, so they are found by the event's `i`.
    let events = rx.hec_events();
    let with_i = |i: u64| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["event"]["event"]["message"]["i"] == i)
            .collect()
    };
    let base_ms = report["base_ms"].as_u64().unwrap();
    for i in 0..n {
        let found = with_i(i);
        assert_eq!(found.len(), 1, "event {i} recorded once: {found:?}");
        let (record, e) = (found[0], &found[0]["event"]);
        assert_eq!(record["endpoint"], "/services/collector/event/1.0");
        assert!(
            record["channel"].is_null() && record["ackId"].is_null(),
            "{record}"
        );
        assert_eq!(
            sorted_keys(e),
            ["event", "host", "index", "source", "sourcetype", "time"],
            "no `fields`: the library cannot send them"
        );
        // The library writes a Date as a string of epoch seconds with three decimals.
        let ms = base_ms + i * 1001;
        assert_eq!(e["time"], format!("{}.{:03}", ms / 1000, ms % 1000));
        assert_eq!(e["host"], format!("host-{}", i % 3));
        assert_eq!(e["source"], "hubwatch-test");
        assert_eq!(e["sourcetype"], "azure:diagnostics");
        assert_eq!(e["index"], "hubwatch");
        assert_eq!(e["event"]["severity"], "info");
        assert_eq!(
            e["event"]["message"],
            json!({"i": i, "text": format!("row {i}"),
                   "nested": {"resource": "/subscriptions/x/rg/y", "level": 4},
                   "unicode": "caf\u{e9} \u{2713}"})
        );
    }

    // The poisoned batch: the event before it indexed, it and the one after not.
    let poison = &phases["poison"];
    assert_eq!(
        poison["errors"],
        json!([{"message": "Invalid data format", "code": 6}])
    );
    assert_eq!(poison["responses"][0]["status"], 400);
    assert_eq!(
        poison["responses"][0]["body"],
        json!({"text": "Invalid data format", "code": 6, "invalid-event-number": 1})
    );
    assert_eq!(
        with_i(1000).len(),
        1,
        "the event before the bad one is indexed"
    );
    assert!(with_i(1001).is_empty() && with_i(1002).is_empty());

    let wrong = &phases["wrong_token"];
    assert_eq!(
        wrong["errors"],
        json!([{"message": "Invalid token", "code": 4}])
    );
    assert_eq!(wrong["responses"][0]["status"], 403);
    assert_eq!(
        wrong["responses"][0]["body"],
        json!({"text": "Invalid token", "code": 4})
    );
    assert!(with_i(2000).is_empty());
    assert_eq!(events.len() as u64, n + 1);

    // What the library puts on the wire (a sink's receiver must take the same).
    let posts: Vec<Value> = rx
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/services/collector/event/1.0")
        .collect();
    assert_eq!(
        posts.len(),
        5,
        "3 batches, the poisoned one, the wrong token"
    );
    for p in &posts {
        let h = &p["headers"];
        assert_eq!(
            h["content-type"], "application/x-www-form-urlencoded",
            "{p}"
        );
        assert!(h["authorization"].as_str().unwrap().starts_with("Splunk "));
    }
    let stats = rx.stats();
    assert_eq!(stats["accepted"]["hec"], n + 1, "{stats}");
    assert_eq!(stats["requests"]["hec_event"], 5, "{stats}");
    assert_eq!(stats["auth_failures"], 1, "{stats}");
}

/// The official Python client's bulk helpers: creates into a data stream and a dated index
/// recorded as sent, a marked document and a duplicate id reported as the helper's errors,
/// a 503 retried by the transport and a 429 item by the helper, a wrong key refused.
#[test]
fn elasticsearch_client_bulk_arrives_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let rx = SiemReceiver::start(dir.path(), &["--es-api-key", ES_API_KEY]);
    let (n, chunk) = (30usize, 12usize);
    let mut cmd = elasticsearch_py();
    cmd.arg(
        json!({"url": format!("http://{}", rx.addr), "api_key": ES_API_KEY, "n": n, "chunk": chunk})
            .to_string(),
    );
    let report = run_json(cmd, "es_client.py (elasticsearch)", Duration::from_secs(90));
    assert_eq!(
        report["info"],
        json!({"number": "8.15.0", "build_flavor": "default"})
    );
    let docs = rx.es_docs();
    let recorded = |index: &Value, id: &str| -> Vec<&Value> {
        docs.iter()
            .filter(|d| d["index"] == *index && d["id"] == id)
            .collect()
    };

    // Data stream: every create accepted into a backing index, recorded in order.
    let stream_index = &report["stream_index"];
    let stream = &report["stream"];
    assert_eq!(stream["ok"], json!(vec![true; n]));
    let in_stream: Vec<&Value> = docs
        .iter()
        .filter(|d| d["index"] == *stream_index)
        .collect();
    assert_eq!(in_stream.len(), n);
    let items = stream["items"].as_array().unwrap();
    let sent = stream["sent"].as_array().unwrap();
    let backing = format!(".ds-{}-", stream_index.as_str().unwrap());
    for ((item, doc), rec) in items.iter().zip(sent).zip(&in_stream) {
        assert_eq!(item["status"], 201, "{item}");
        assert_eq!(item["result"], "created");
        assert!(
            item["_index"].as_str().unwrap().starts_with(&backing),
            "{item}"
        );
        assert_eq!(rec["op"], "create");
        assert_eq!(rec["id"], item["_id"], "the id the client was told");
        assert_eq!(rec["doc"], *doc);
    }

    // Dated index, ids given.
    let dated_index = &report["dated_index"];
    let dated = &report["dated"];
    assert_eq!(dated["success"], n);
    assert_eq!(dated["errors"], json!([]));
    for (i, doc) in dated["sent"].as_array().unwrap().iter().enumerate() {
        let found = recorded(dated_index, &format!("doc-{i}"));
        assert_eq!(
            found.len(),
            1,
            "doc-{i} recorded once (its duplicate is refused)"
        );
        assert_eq!(found[0]["op"], "create");
        assert_eq!(found[0]["doc"], *doc);
    }

    // Reject marker and duplicate id: the helper's error list, in order.
    let poison = &report["poison"];
    assert_eq!(poison["success"], 1, "{poison}");
    let errors = poison["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{poison}");
    let (marked, duplicate) = (&errors[0]["create"], &errors[1]["create"]);
    assert_eq!(marked["_id"], "poisoned");
    assert_eq!(marked["status"], 400);
    assert_eq!(marked["error"]["type"], "mapper_parsing_exception");
    assert_eq!(duplicate["_id"], "doc-0");
    assert_eq!(duplicate["status"], 409);
    assert_eq!(
        duplicate["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert_eq!(recorded(dated_index, "fresh").len(), 1);
    assert!(recorded(dated_index, "poisoned").is_empty());

    // Two 503s retried by the client's transport; a 429 item retried by streaming_bulk.
    assert_eq!(report["retry"], json!({"success": 1, "errors": []}));
    assert_eq!(recorded(dated_index, "after-503").len(), 1);
    assert_eq!(report["item_retry"]["ok"], json!([true]));
    assert_eq!(recorded(dated_index, "after-429").len(), 1);
    let stats = rx.stats();
    assert_eq!(stats["faults"]["status"], 2, "{stats}");
    assert_eq!(stats["faults"]["items"], 1, "{stats}");

    assert_eq!(
        report["wrong_key"],
        json!({"raised": "AuthenticationException", "status": 401, "type": "security_exception"})
    );

    // What the client puts on the wire.
    let bulks: Vec<Value> = rx
        .requests()
        .into_iter()
        .filter(|r| r["path"].as_str().unwrap().ends_with("_bulk"))
        .collect();
    assert!(
        bulks.len() >= 2 * n / chunk,
        "{} bulk requests",
        bulks.len()
    );
    for b in &bulks {
        let h = &b["headers"];
        assert_eq!(
            h["content-type"],
            "application/vnd.elasticsearch+x-ndjson; compatible-with=8"
        );
        assert_eq!(
            h["accept"],
            "application/vnd.elasticsearch+json; compatible-with=8"
        );
        assert_eq!(h["authorization"], format!("ApiKey {ES_API_KEY}"));
    }
    let refused: Vec<&Value> = bulks.iter().filter(|b| b["status"] == 503).collect();
    assert_eq!(refused.len(), 2);
}

/// HEC with indexer acks: a channel is required, ack ids count per channel from 0, an id
/// turns true after --ack-delay-ms and is forgotten once reported; gzip bodies, the
/// channel in the query string, /raw with metadata from the query string, indexed fields.
#[test]
fn hec_receiver_acks_channels_raw_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let rx = SiemReceiver::start(
        dir.path(),
        &[
            "--hec-token",
            HEC_TOKEN,
            "--hec-ack",
            "--ack-delay-ms",
            "300",
        ],
    );
    let auth = format!("Splunk {HEC_TOKEN}");
    let auth = ("Authorization", auth.as_str());
    let channel = ("X-Splunk-Request-Channel", CHANNEL);

    let r = post(
        &rx,
        "/services/collector/event",
        &[auth],
        br#"{"event":"x"}"#,
    );
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"text": "Data channel is missing", "code": 10}))
    );
    let r = post(
        &rx,
        "/services/collector/event",
        &[auth, ("X-Splunk-Request-Channel", "not-a-guid")],
        br#"{"event":"x"}"#,
    );
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"text": "Invalid data channel", "code": 11}))
    );
    let r = post(
        &rx,
        "/services/collector/event",
        &[channel],
        br#"{"event":"x"}"#,
    );
    assert_eq!(
        (r.status, r.json()),
        (401, json!({"text": "Token is required", "code": 2}))
    );

    let event = json!({"time": 1714564800.5, "host": "h", "source": "s", "sourcetype": "st",
                       "index": "i", "fields": {"region": "westeurope", "tags": ["a", "b"]},
                       "event": {"k": "v"}});
    let sent = Instant::now();
    let r = post(
        &rx,
        "/services/collector/event",
        &[auth, channel],
        event.to_string().as_bytes(),
    );
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"text": "Success", "code": 0, "ackId": 0}))
    );
    let gz = gzip_stored(b"{\"event\":\"one\"}\n{\"event\":\"two\",\"time\":\"1714564801.25\"}");
    let path = format!("/services/collector?channel={CHANNEL}");
    let r = post(&rx, &path, &[auth, ("Content-Encoding", "gzip")], &gz);
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"text": "Success", "code": 0, "ackId": 1}))
    );
    let path = format!("/services/collector/raw?channel={CHANNEL}&sourcetype=syslog&host=h2");
    let r = post(&rx, &path, &[auth], b"line one\nline two\n");
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"text": "Success", "code": 0, "ackId": 2}))
    );

    let ack_path = format!("/services/collector/ack?channel={CHANNEL}");
    let poll = |ids: &str| {
        post(
            &rx,
            &ack_path,
            &[auth],
            format!("{{\"acks\":{ids}}}").as_bytes(),
        )
        .json()
    };
    if sent.elapsed() < Duration::from_millis(250) {
        assert_eq!(
            poll("[0,1,2]"),
            json!({"acks": {"0": false, "1": false, "2": false}})
        );
    }
    std::thread::sleep(Duration::from_millis(350).saturating_sub(sent.elapsed()));
    assert_eq!(
        poll("[0,1,2,7]"),
        json!({"acks": {"0": true, "1": true, "2": true, "7": false}})
    );
    assert_eq!(
        poll("[0]"),
        json!({"acks": {"0": false}}),
        "reported once, then forgotten"
    );

    // Indexed fields are flat; the events before the bad one are indexed (without an ack).
    let r = post(
        &rx,
        "/services/collector/event",
        &[auth, channel],
        br#"{"event":"a"}{"event":"b","fields":{"nested":{"x":1}}}"#,
    );
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"text": "Error in handling indexed fields", "code": 15, "invalid-event-number": 1})
        )
    );

    let events = rx.hec_events();
    let want = [
        json!({"endpoint": "/services/collector/event", "channel": CHANNEL, "ackId": 0, "event": event}),
        json!({"endpoint": "/services/collector", "channel": CHANNEL, "ackId": 1, "event": {"event": "one"}}),
        json!({"endpoint": "/services/collector", "channel": CHANNEL, "ackId": 1,
               "event": {"event": "two", "time": "1714564801.25"}}),
        json!({"endpoint": "/services/collector/raw", "channel": CHANNEL, "ackId": 2,
               "event": {"event": "line one", "sourcetype": "syslog", "host": "h2"}}),
        json!({"endpoint": "/services/collector/raw", "channel": CHANNEL, "ackId": 2,
               "event": {"event": "line two", "sourcetype": "syslog", "host": "h2"}}),
        json!({"endpoint": "/services/collector/event", "channel": CHANNEL, "ackId": null, "event": {"event": "a"}}),
    ];
    assert_eq!(events, want);
    let acks = rx.records("acks");
    assert_eq!(acks.last().unwrap()["acks"], json!({"0": false}));
    let stats = rx.stats();
    assert_eq!(stats["acks_issued"], 3, "{stats}");
    assert_eq!(stats["acks_confirmed"], 3, "{stats}");
    assert_eq!(stats["gzip_requests"], 1, "{stats}");

    let (status, body) = http_get(&rx.addr, "/services/collector/health").unwrap();
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"text": "HEC is healthy", "code": 17}))
    );
}

/// HEC's refusals, each with Splunk's status, text and code; the events before an invalid
/// one are indexed, the rest are not.
#[test]
fn hec_receiver_refuses_like_splunk() {
    let dir = tempfile::tempdir().unwrap();
    let rx = SiemReceiver::start(dir.path(), &["--hec-token", HEC_TOKEN]);
    let splunk = format!("Splunk {HEC_TOKEN}");
    let basic = format!(
        "Basic {}",
        "eDo4ZjFjMmI3ZS0wZDRhLTRlNTctOWIxZS0zYTZmMGMyZDllMTE="
    ); // x:<token>
    let cases: [(&str, &str, u16, Value); 11] = [
        (
            splunk.as_str(),
            "  \n ",
            400,
            json!({"text": "No data", "code": 5}),
        ),
        (
            splunk.as_str(),
            r#"[{"event":"x"}]"#,
            400,
            json!({"text": "Invalid data format", "code": 6, "invalid-event-number": 0}),
        ),
        (
            splunk.as_str(),
            r#"{"event":"a"}{"event":"b""#,
            400,
            json!({"text": "Invalid data format", "code": 6, "invalid-event-number": 1}),
        ),
        (
            splunk.as_str(),
            r#"{"event":"a","time":"noon"}"#,
            400,
            json!({"text": "Invalid data format", "code": 6, "invalid-event-number": 0}),
        ),
        (
            splunk.as_str(),
            r#"{"event":"a"} {"host":"h"}"#,
            400,
            json!({"text": "Event field is required", "code": 12, "invalid-event-number": 1}),
        ),
        (
            splunk.as_str(),
            r#"{"event":null}"#,
            400,
            json!({"text": "Event field is required", "code": 12, "invalid-event-number": 0}),
        ),
        (
            splunk.as_str(),
            r#"{"event":"a"}{"event":"  "}"#,
            400,
            json!({"text": "Event field cannot be blank", "code": 13, "invalid-event-number": 1}),
        ),
        (
            "Bearer nope",
            r#"{"event":"a"}"#,
            401,
            json!({"text": "Invalid authorization", "code": 3}),
        ),
        (
            "Splunk nope",
            r#"{"event":"a"}"#,
            403,
            json!({"text": "Invalid token", "code": 4}),
        ),
        (
            basic.as_str(),
            r#"{"event":"basic","time":1714564800}"#,
            200,
            json!({"text": "Success", "code": 0}),
        ),
        (
            splunk.as_str(),
            "{\"event\":{\"n\":1}}\n\n{\"event\":\"b\",\"time\":\"1714564800.25\"}\r\n",
            200,
            json!({"text": "Success", "code": 0}),
        ),
    ];
    for (auth, body, status, answer) in cases {
        let r = post(
            &rx,
            "/services/collector/event",
            &[("Authorization", auth)],
            body.as_bytes(),
        );
        assert_eq!((r.status, r.json()), (status, answer), "{auth} {body:?}");
    }
    let events: Vec<Value> = rx.hec_events().iter().map(|e| e["event"].clone()).collect();
    assert_eq!(
        events,
        [
            json!({"event": "a"}), // before the unreadable one
            json!({"event": "a"}), // before the one without "event"
            json!({"event": "a"}), // before the blank one
            json!({"event": "basic", "time": 1714564800}),
            json!({"event": {"n": 1}}),
            json!({"event": "b", "time": "1714564800.25"}),
        ]
    );
}

/// Each fault of POST /_control, on each API, with the API's own error shapes; nothing a
/// fault refuses is recorded.
#[test]
fn receiver_faults_answer_like_each_api() {
    let dir = tempfile::tempdir().unwrap();
    let rx = SiemReceiver::start(dir.path(), &["--hec-token", HEC_TOKEN]);
    let auth = format!("Splunk {HEC_TOKEN}");
    let hec = |body: &str| {
        post(
            &rx,
            "/services/collector/event",
            &[("Authorization", auth.as_str())],
            body.as_bytes(),
        )
    };
    let bulk = |body: &str| post(&rx, "/_bulk", &[NDJSON], body.as_bytes());
    let generic = |body: &str| post(&rx, "/http/siem", &[NDJSON], body.as_bytes());
    let one_create = "{\"create\":{\"_index\":\"hw\"}}\n{\"a\":1}\n";

    rx.control(r#"{"status": 503, "count": 3, "retry_after": 2}"#);
    let r = hec(r#"{"event":"refused"}"#);
    assert_eq!(
        (r.status, r.json()),
        (503, json!({"text": "Server is busy", "code": 9}))
    );
    assert_eq!(r.header("Retry-After"), Some("2"));
    let r = bulk(one_create);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("X-Elastic-Product"), Some("Elasticsearch"));
    assert_eq!(r.json()["error"]["type"], "unavailable_shards_exception");
    assert_eq!(r.json()["status"], 503);
    assert_eq!(generic("{\"a\":1}\n").status, 503);
    assert_eq!(
        hec(r#"{"event":"after the faults"}"#).status,
        200,
        "three, then none"
    );

    rx.control(r#"{"close": 1}"#);
    assert!(
        http_post(&rx.addr, "/http/siem", &[NDJSON], b"{\"a\":2}\n").is_err(),
        "read, then the connection closed without an answer"
    );
    assert_eq!(generic("{\"a\":3}\n").status, 200);

    rx.control(r#"{"delay_ms": 300}"#);
    let started = Instant::now();
    assert_eq!(generic("{\"a\":4}\n").status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    rx.control(r#"{"reject_marker": "POISON"}"#);
    let r = hec(r#"{"event":"kept"} {"event":"POISON"} {"event":"after"}"#);
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"text": "Invalid data format", "code": 6, "invalid-event-number": 1})
        )
    );
    let r = bulk("{\"create\":{\"_index\":\"hw\",\"_id\":\"p\"}}\n{\"a\":\"POISON\"}\n{\"create\":{\"_index\":\"hw\",\"_id\":\"q\"}}\n{\"a\":5}\n");
    let v = r.json();
    assert_eq!(r.status, 200);
    assert_eq!(v["errors"], true);
    assert_eq!(v["items"][0]["create"]["status"], 400);
    assert_eq!(
        v["items"][0]["create"]["error"]["type"],
        "mapper_parsing_exception"
    );
    assert_eq!(v["items"][1]["create"]["status"], 201);
    assert_eq!(generic("{\"a\":\"POISON\"}\n").status, 400);

    rx.control(r#"{"item_status": 429, "item_count": 1}"#);
    let v = bulk(&one_create.repeat(2)).json();
    assert_eq!(v["items"][0]["create"]["status"], 429);
    assert_eq!(
        v["items"][0]["create"]["error"]["type"],
        "es_rejected_execution_exception"
    );
    assert_eq!(v["items"][1]["create"]["status"], 201);

    rx.control("{}");
    assert_eq!(hec(r#"{"event":"POISON is fine now"}"#).status, 200);

    let hec_texts: Vec<Value> = rx
        .hec_events()
        .iter()
        .map(|e| e["event"]["event"].clone())
        .collect();
    assert_eq!(
        hec_texts,
        [
            json!("after the faults"),
            json!("kept"),
            json!("POISON is fine now")
        ]
    );
    let http_docs: Vec<Value> = rx
        .http_docs()
        .iter()
        .map(|d| d["doc"]["a"].clone())
        .collect();
    assert_eq!(http_docs, [json!(3), json!(4)]);
    let es_ids: Vec<Value> = rx.es_docs().iter().map(|d| d["id"].clone()).collect();
    assert_eq!(es_ids.len(), 2, "q and the second create: {es_ids:?}");
    assert_eq!(es_ids[0], "q");
    let dropped = rx
        .requests()
        .into_iter()
        .filter(|r| r["status"].is_null())
        .count();
    assert_eq!(dropped, 1, "the closed request is logged with status null");
    let stats = rx.stats();
    assert_eq!(
        stats["faults"],
        json!({"status": 3, "close": 1, "delayed": 1, "items": 1})
    );
    let r = post(&rx, "/_control", &[], br#"{"stauts": 503}"#);
    assert_eq!(r.status, 400, "an unknown fault key is refused: {}", r.body);
}

/// The Elasticsearch and generic HTTP contracts the sinks' tests lean on: whole-request
/// errors, item errors, Basic auth, gzip, filter_path; generic NDJSON and JSON arrays
/// recorded with the x- headers and Authorization.
#[test]
fn es_and_http_receivers_refuse_and_record_like_the_apis() {
    let dir = tempfile::tempdir().unwrap();
    let rx = SiemReceiver::start(dir.path(), &["--es-basic", "elastic:changeme"]);
    let basic = ("Authorization", "Basic ZWxhc3RpYzpjaGFuZ2VtZQ==");

    let r = post(
        &rx,
        "/_bulk",
        &[NDJSON],
        b"{\"create\":{\"_index\":\"hw\"}}\n{}\n",
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "security_exception");
    assert_eq!(r.header("X-Elastic-Product"), Some("Elasticsearch"));

    let bad = [
        (
            "{\"create\":{\"_index\":\"hw\"}}\n{}",
            "illegal_argument_exception",
        ), // no final newline
        (
            "{\"create\":{\"_index\":\"hw\"}}\n",
            "illegal_argument_exception",
        ), // no source line
        (
            "{\"upsert\":{\"_index\":\"hw\"}}\n{}\n",
            "illegal_argument_exception",
        ),
        ("[1,2]\n", "illegal_argument_exception"),
        (
            "{\"create\":{}}\n{}\n",
            "action_request_validation_exception",
        ), // no index
        ("", "action_request_validation_exception"),
    ];
    for (body, kind) in bad {
        let r = post(&rx, "/_bulk", &[NDJSON, basic], body.as_bytes());
        assert_eq!(r.status, 400, "{body:?}: {}", r.body);
        assert_eq!(r.json()["error"]["type"], kind, "{body:?}");
        assert_eq!(r.json()["error"]["root_cause"][0]["type"], kind);
    }
    let r = post(
        &rx,
        "/_bulk",
        &[("Content-Type", "text/plain"), basic],
        b"{\"create\":{\"_index\":\"hw\"}}\n{}\n",
    );
    assert_eq!(r.status, 406);

    let body = "{\"create\":{\"_index\":\"Upper\"}}\n{}\n\
                {\"create\":{\"_index\":\"_under\"}}\n{}\n\
                {\"index\":{\"_id\":\"1\"}}\n{\"v\":1}\n\
                {\"index\":{\"_id\":\"1\"}}\n{\"v\":2}\n\
                {\"delete\":{\"_id\":\"1\"}}\n\
                {\"delete\":{\"_id\":\"1\"}}\n\
                {\"create\":{\"_index\":\"logs-azure-default\"}}\n{\"no\":\"timestamp\"}\n";
    let gz = gzip_stored(body.as_bytes());
    let r = post(
        &rx,
        "/hw/_bulk?filter_path=errors,items.*.status,items.*.result,items.*.error.type",
        &[
            (
                "Content-Type",
                "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
            ),
            ("Content-Encoding", "gzip"),
            basic,
        ],
        &gz,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"errors": true, "items": [
            {"create": {"status": 400, "error": {"type": "invalid_index_name_exception"}}},
            {"create": {"status": 400, "error": {"type": "invalid_index_name_exception"}}},
            {"index": {"status": 201, "result": "created"}},
            {"index": {"status": 200, "result": "updated"}},
            {"delete": {"status": 200, "result": "deleted"}},
            {"delete": {"status": 404, "result": "not_found"}},
            {"create": {"status": 400, "error": {"type": "document_parsing_exception"}}},
        ]})
    );
    let ops: Vec<(Value, Value, Value)> = rx
        .es_docs()
        .iter()
        .map(|d| (d["index"].clone(), d["op"].clone(), d["doc"].clone()))
        .collect();
    assert_eq!(
        ops,
        [
            (json!("hw"), json!("index"), json!({"v": 1})),
            (json!("hw"), json!("index"), json!({"v": 2})),
            (json!("hw"), json!("delete"), Value::Null),
        ]
    );

    let r = post(
        &rx,
        "/http/siem/a?x=1",
        &[NDJSON, ("X-Tenant", "t1"), ("Authorization", "Bearer abc")],
        b"{\"a\":1}\n\n{\"a\":2}\n",
    );
    assert_eq!((r.status, r.json()), (200, json!({})));
    let r = post(
        &rx,
        "/http/siem/b",
        &[("Content-Type", "application/json")],
        br#"[{"b":1},{"b":2}]"#,
    );
    assert_eq!((r.status, r.json()), (200, json!({})));
    assert_eq!(
        post(
            &rx,
            "/http/siem/b",
            &[("Content-Type", "application/json")],
            b"[{"
        )
        .status,
        400
    );
    assert_eq!(
        post(
            &rx,
            "/http/siem/b",
            &[("Content-Type", "text/plain")],
            b"{}"
        )
        .status,
        415
    );
    assert_eq!(
        rx.http_docs(),
        [
            json!({"path": "/http/siem/a?x=1", "headers": {"x-tenant": "t1", "authorization": "Bearer abc"}, "doc": {"a": 1}}),
            json!({"path": "/http/siem/a?x=1", "headers": {"x-tenant": "t1", "authorization": "Bearer abc"}, "doc": {"a": 2}}),
            json!({"path": "/http/siem/b", "headers": {}, "doc": {"b": 1}}),
            json!({"path": "/http/siem/b", "headers": {}, "doc": {"b": 2}}),
        ]
    );
}

/// --count-only answers as usual and counts, but writes no file.
#[test]
fn count_only_counts_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let rx = SiemReceiver::start(dir.path(), &["--count-only", "--hec-token", HEC_TOKEN]);
    let auth = format!("Splunk {HEC_TOKEN}");
    let r = post(
        &rx,
        "/services/collector/event",
        &[("Authorization", auth.as_str())],
        br#"{"event":1}{"event":2}{"event":3}"#,
    );
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"text": "Success", "code": 0}))
    );
    let r = post(&rx, "/_bulk", &[NDJSON], b"{\"create\":{\"_index\":\"hw\",\"_id\":\"a\"}}\n{}\n{\"create\":{\"_index\":\"hw\",\"_id\":\"a\"}}\n{}\n");
    let v = r.json();
    assert_eq!(v["items"][0]["create"]["status"], 201);
    assert_eq!(v["items"][1]["create"]["status"], 409);
    assert_eq!(
        post(&rx, "/http/x", &[NDJSON], b"{}\n{}\n{}\n{}\n").status,
        200
    );
    let stats = rx.stats();
    assert_eq!(stats["accepted"], json!({"hec": 3, "es": 1, "http": 4}));
    assert_eq!(stats["es_item_errors"], 1);
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(files.is_empty(), "nothing written: {files:?}");
}
