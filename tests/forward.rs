//! Routes through the real binary: the rows a route forwards to a file sink are the rows
//! its KQL selects (counted against `hubwatch query` over the same input), each with where
//! it came from; killed mid-stream and started again, every row arrives at least once,
//! and a rebuild of window state (a query added) forwards nothing again.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

const ROUTE: &str = "AmlComputeJobEvent | where EventType != 'JobRunning' | project TimeGenerated, ClusterName, JobName, EventType";
const ORACLE: &str =
    "AmlComputeJobEvent | where EventType != 'JobRunning' | summarize n = count() by EventType";

fn config(dir: &Path, input: &Path, follow: bool, checkpoint: bool, extra_query: bool) -> PathBuf {
    let mut text = format!(
        "[export]\nlisten = \"127.0.0.1:0\"\n{}\
         [[sources]]\ntype = \"file\"\nname = \"exports\"\npaths = [{:?}]\nfollow = {follow}\n\
         [[sinks]]\ntype = \"file\"\nname = \"siem\"\npath = \"routed.ndjson\"\n\
         [[routes]]\nname = \"jobs\"\nsinks = [\"siem\"]\nkql = \"{ROUTE}\"\n\
         [[queries]]\nname = \"jobs\"\nkql = \"AmlComputeJobEvent | summarize n = count()\"\n",
        if checkpoint {
            "[checkpoint]\ndir = \"cp\"\ninterval = \"100ms\"\n"
        } else {
            ""
        },
        input.display().to_string()
    );
    if extra_query {
        text.push_str("[[queries]]\nname = \"per_type\"\nkql = \"AmlComputeJobEvent | summarize n = count() by EventType\"\n");
    }
    let path = dir.join("hubwatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The rows the file sink has written so far: whole lines only, since the test reads while
/// the sink may be in the middle of appending one.
fn routed(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("routed.ndjson")).unwrap_or_default();
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    whole
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// Per event type, the rows `hubwatch query` counts over the input.
fn oracle(input: &Path) -> BTreeMap<String, i64> {
    query_over("per event type", input, &[], ORACLE)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["EventType"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn per_type(rows: &[Value]) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r["EventType"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    m
}

#[test]
fn a_route_forwards_exactly_the_rows_its_kql_selects_with_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture();
    let mut svc = Service::start(&config(dir.path(), &input, false, false, false));
    svc.wait_for_line("all sources finished", Duration::from_secs(30));
    let rows = routed(dir.path());
    let want = oracle(&input);
    assert!(want.values().sum::<i64>() > 500, "{want:?}");
    assert_eq!(per_type(&rows), want);
    let (_, metrics) = svc.get("/metrics");
    assert_eq!(
        metric(&metrics, "hubwatch_forward_rows_total{route=\"jobs\"}"),
        Some(rows.len() as f64)
    );
    assert_eq!(
        metric(&metrics, "hubwatch_forward_sink_lines_total{sink=\"siem\"}"),
        Some(rows.len() as f64)
    );
    let first = &rows[0];
    let line = std::fs::read_to_string(dir.path().join("routed.ndjson")).unwrap();
    let line = line.lines().next().unwrap();
    let at: Vec<usize> = [
        "\"TimeGenerated\"",
        "\"ClusterName\"",
        "\"JobName\"",
        "\"EventType\"",
        "\"_hubwatch\"",
    ]
    .iter()
    .map(|k| line.find(k).unwrap_or_else(|| panic!("{k} in {line}")))
    .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "the route's columns, in order, then where the row came from: {line}"
    );
    assert!(first["TimeGenerated"].as_str().unwrap().ends_with('Z'));
    let meta = &first["_hubwatch"];
    assert_eq!(meta["route"], "jobs");
    assert_eq!(meta["source"], "exports");
    assert_eq!(meta["partition"], input.display().to_string());
    assert!(meta["sequence_number"].as_i64().is_some());
}

/// The fixture's bodies, written to a file a first part at a time: an input that grows.
struct Growing {
    path: PathBuf,
    lines: Vec<Vec<u8>>,
}

impl Growing {
    fn new(path: &Path) -> Growing {
        let all = std::fs::read(fixture()).unwrap();
        let lines = all
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        Growing {
            path: path.to_path_buf(),
            lines,
        }
    }

    /// The file holds the first `n` bodies.
    fn write_upto(&self, n: usize) {
        let mut text = Vec::new();
        for l in &self.lines[..n] {
            text.extend_from_slice(l);
            text.push(b'\n');
        }
        std::fs::write(&self.path, text).unwrap();
    }
}

#[test]
fn killed_and_restarted_every_row_arrives_and_a_rebuild_forwards_nothing_again() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bodies.ndjson");
    let growing = Growing::new(&input);
    let write_upto = |n: usize| growing.write_upto(n);
    let lines = &growing.lines;

    // The input grows while hubwatch is killed twice.
    write_upto(lines.len() / 3);
    let mut svc = Service::start(&config(dir.path(), &input, true, true, false));
    wait_until("rows forwarded", Duration::from_secs(30), || {
        !routed(dir.path()).is_empty()
    });
    svc.child.kill().unwrap();
    svc.child.wait().unwrap();
    write_upto(2 * lines.len() / 3);
    let mut svc = Service::start(&config(dir.path(), &input, true, true, false));
    std::thread::sleep(Duration::from_millis(300));
    svc.child.kill().unwrap();
    svc.child.wait().unwrap();
    write_upto(lines.len());

    // A query added: the file is read again from its start to build its windows; the
    // events the restored state already holds are not forwarded again.
    let mut svc = Service::start(&config(dir.path(), &input, true, true, true));
    let want = oracle(&input);
    let total: i64 = want.values().sum();
    wait_until("every row forwarded", Duration::from_secs(60), || {
        let got = per_type(&routed(dir.path()));
        want.iter().all(|(k, n)| got.get(k).is_some_and(|g| g >= n))
    });
    wait_until("the added query caught up", Duration::from_secs(30), || {
        let (_, body) = svc.get("/api/v1/queries/per_type");
        let rows: Value = serde_json::from_str(&body).unwrap_or_default();
        let rebuilt: i64 = rows
            .as_array()
            .map(|r| r.iter().map(|x| x["n"].as_i64().unwrap_or(0)).sum())
            .unwrap_or(0);
        rebuilt > 0 && rebuilt == jobs_count(&svc)
    });
    std::thread::sleep(Duration::from_millis(500));
    svc.terminate(Duration::from_secs(30));

    let rows = routed(dir.path());
    // One uninterrupted pass over the same input, for reference: every row of it (by where
    // it came from and what it holds, duplicates in the input included) arrives at least
    // as often.
    let reference_dir = tempfile::tempdir().unwrap();
    let mut one = Service::start(&config(reference_dir.path(), &input, false, false, false));
    one.wait_for_line("all sources finished", Duration::from_secs(30));
    let key = |r: &Value| {
        let mut r = r.clone();
        let seq = r["_hubwatch"]["sequence_number"].as_i64().unwrap();
        r.as_object_mut().unwrap().remove("_hubwatch");
        (seq, r.to_string())
    };
    let count = |rows: &[Value]| {
        let mut m: BTreeMap<(i64, String), i64> = BTreeMap::new();
        for r in rows {
            *m.entry(key(r)).or_default() += 1;
        }
        m
    };
    let (got, want_rows) = (count(&rows), count(&routed(reference_dir.path())));
    assert_eq!(want_rows.values().sum::<i64>(), total);
    let missing: Vec<_> = want_rows
        .iter()
        .filter(|(k, n)| got.get(*k).is_none_or(|g| g < *n))
        .collect();
    assert!(
        missing.is_empty(),
        "every row at least once; missing {missing:?}"
    );
    let duplicates = rows.len() as i64 - total;
    // Only what two kills left uncommitted can come twice: far less than a rebuild's
    // re-reading of the whole file would send.
    assert!(
        duplicates < total / 2,
        "{duplicates} duplicates of {total} rows: a rebuild must not forward again"
    );
    eprintln!("{total} rows forwarded, {duplicates} duplicates after two kills and a rebuild");
}

/// A syslog sink to rsyslog that is down when hubwatch starts: the engine goes on (every
/// query and route counts the whole input) while the rows wait in the sink's disk buffer;
/// once rsyslog listens, the sender delivers every one of them, each an RFC 5424 message
/// that rsyslog parses into its fields.
#[test]
fn a_syslog_receiver_that_is_down_stalls_nothing_and_gets_every_row_once_up() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture();
    let port = free_port();
    let config = dir.path().join("hubwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n\
             [[sources]]\ntype = \"file\"\nname = \"exports\"\npaths = [{:?}]\n\
             [[sinks]]\ntype = \"syslog\"\nname = \"rsyslog\"\naddress = \"127.0.0.1:{port}\"\nhostname = \"hw-test\"\n\
             [[routes]]\nname = \"jobs\"\nsinks = [\"rsyslog\"]\nkql = \"{ROUTE}\"\n\
             [[queries]]\nname = \"jobs\"\nkql = \"AmlComputeJobEvent | summarize n = count()\"\n",
            input.display().to_string()
        ),
    )
    .unwrap();
    let mut svc = Service::start(&config);
    svc.wait_for_line("all sources finished", Duration::from_secs(30));
    let want = oracle(&input);
    let total: i64 = want.values().sum();
    let (_, metrics) = svc.get("/metrics");
    assert_eq!(
        metric(&metrics, "hubwatch_forward_rows_total{route=\"jobs\"}"),
        Some(total as f64),
        "the route kept going with its receiver down"
    );
    assert!(jobs_count(&svc) > 0, "and so did the queries");
    let buffered = metric(
        &metrics,
        "hubwatch_forward_sink_buffer_bytes{sink=\"rsyslog\"}",
    );
    assert!(
        buffered.unwrap_or(0.0) > 0.0,
        "the rows wait in the buffer: {buffered:?}"
    );

    let rsyslog = common::rsyslog::Rsyslog::start(dir.path(), port);
    wait_until(
        "rsyslog received every row",
        Duration::from_secs(60),
        || rsyslog.lines().len() as i64 >= total,
    );
    std::thread::sleep(Duration::from_millis(300));
    let lines = rsyslog.lines();
    assert_eq!(lines.len() as i64, total, "each row once");
    let mut rows = Vec::new();
    for l in &lines {
        assert!(
            l.contains(
                " HOST=hw-test APP=hubwatch MSGID=jobs SD=[hubwatch@32473 source=\"exports\""
            ),
            "{l}"
        );
        assert!(l.starts_with("PRI=134 "), "local0.info: {l}");
        let msg = &l[l.find(" MSG=").unwrap() + 5..];
        rows.push(serde_json::from_str::<Value>(msg).unwrap_or_else(|e| panic!("{e}: {msg}")));
    }
    assert_eq!(per_type(&rows), want, "the rows, as the route selects them");
}

#[test]
fn a_cef_syslog_sink_sends_events_rsyslog_receives_and_a_cef_reader_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture();
    let port = free_port();
    let rsyslog = common::rsyslog::Rsyslog::start(dir.path(), port);
    let config = dir.path().join("hubwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n\
             [[sources]]\ntype = \"file\"\nname = \"exports\"\npaths = [{:?}]\n\
             [[sinks]]\ntype = \"syslog\"\nname = \"arcsight\"\naddress = \"127.0.0.1:{port}\"\nformat = \"cef\"\n\
             [[routes]]\nname = \"failed\"\nsinks = [\"arcsight\"]\nkql = \"AmlComputeJobEvent | where EventType == 'JobFailed'\"\n",
            input.display().to_string()
        ),
    )
    .unwrap();
    let mut svc = Service::start(&config);
    svc.wait_for_line("all sources finished", Duration::from_secs(30));
    let want = oracle(&input)["JobFailed"];
    // A route without any query: the table is parsed for the route alone.
    wait_until(
        "rsyslog received the failed jobs",
        Duration::from_secs(30),
        || rsyslog.lines().len() as i64 >= want,
    );
    let lines = rsyslog.lines();
    assert_eq!(lines.len() as i64, want);
    let mut sequence_numbers = std::collections::BTreeSet::new();
    for l in &lines {
        let msg = &l[l.find(" MSG=").unwrap() + 5..];
        let (header, ext) = common::syslog::read_cef(msg);
        let ext: BTreeMap<String, String> = ext.into_iter().collect();
        assert_eq!(
            &header[..3],
            ["CEF:0", "Microsoft", "AmlComputeJobEvent"],
            "{msg}"
        );
        assert!(header[3].starts_with("hubwatch "), "{msg}");
        assert_eq!(header[5], "JobFailed", "the name is the event type: {msg}");
        assert!(
            ["3", "5", "7", "10", "1"].contains(&header[6].as_str()),
            "{msg}"
        );
        assert_eq!(ext["cs2Label"], "Route");
        assert_eq!(ext["cs2"], "failed");
        let row: Value = serde_json::from_str(&ext["msg"]).unwrap_or_else(|e| panic!("{e}: {msg}"));
        assert_eq!(row["EventType"], "JobFailed");
        let millis = hubwatch::time::parse_datetime(row["TimeGenerated"].as_str().unwrap())
            .unwrap()
            .0
            / 10_000;
        assert_eq!(ext["rt"], millis.to_string(), "rt is TimeGenerated in ms");
        sequence_numbers.insert(ext["cs3"].clone());
    }
    assert!(
        sequence_numbers
            .iter()
            .all(|o| o.starts_with("exports/") && o.contains('@')),
        "origins are source/partition@sequence number: {sequence_numbers:?}"
    );
    assert!(sequence_numbers.len() > 100, "rows from many bodies");
}

/// `output = "record"`: the route's KQL selects, and what goes out is each record exactly
/// as it was in its body.
#[test]
fn a_record_route_forwards_each_selected_record_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture();
    let config = dir.path().join("hubwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n\
             [[sources]]\ntype = \"file\"\nname = \"exports\"\npaths = [{:?}]\n\
             [[sinks]]\ntype = \"file\"\nname = \"raw\"\npath = \"records.ndjson\"\n\
             [[routes]]\nname = \"failed\"\nsinks = [\"raw\"]\noutput = \"record\"\n\
             kql = \"AmlComputeJobEvent | where EventType == 'JobFailed'\"\n",
            input.display().to_string()
        ),
    )
    .unwrap();
    let mut svc = Service::start(&config);
    svc.wait_for_line("all sources finished", Duration::from_secs(30));
    let text = std::fs::read_to_string(dir.path().join("records.ndjson")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let want = oracle(&input)["JobFailed"];
    assert_eq!(lines.len() as i64, want);
    let bodies = std::fs::read_to_string(&input).unwrap();
    for l in &lines {
        assert!(
            bodies.contains(l),
            "each line is a record as it was in its body: {l}"
        );
        let record: Value = serde_json::from_str(l).unwrap();
        assert!(record.get("_hubwatch").is_none(), "nothing added: {l}");
        assert!(
            record["category"]
                .as_str()
                .is_some_and(|c| c.eq_ignore_ascii_case("AmlComputeJobEvent")),
            "as Azure wrote it, in whatever case: {l}"
        );
        // (`properties` is an object or, as Azure sometimes sends it, a JSON string.)
        assert!(l.to_ascii_lowercase().contains("jobfailed"), "{l}");
    }
}

/// `*` takes every record — every table's rows, and the records of categories no table
/// knows, as their fields — and `union` runs one pipeline over several tables (with
/// wildcards, as KQL has them).
#[test]
fn star_and_union_routes_take_every_table_and_unknown_categories() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bodies.ndjson");
    // And one record of 100,000 fields: each is a column (a field named like the time
    // column is not), in time linear in their number.
    let wide: Vec<String> = (0..100_000).map(|i| format!(r#""f{i}":{i}"#)).collect();
    std::fs::write(
        &input,
        format!(
            "{}{}{}\n{}{}{}\n",
            r#"{"records":[{"time":"2024-05-20T10:00:00Z","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/W","category":"AmlComputeJobEvent","operationName":"x","level":"Error","properties":{"ClusterName":"gpu","EventType":"JobFailed"}},"#,
            r#"{"time":"2024-05-20T10:00:01Z","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG","category":"Administrative","operationName":"MICROSOFT.RESOURCES/DEPLOYMENTS/WRITE","level":"Informational","resultType":"Success"},"#,
            r#"{"time":"2024-05-20T10:00:02Z","resourceId":"/SUBSCRIPTIONS/S/X","category":"BrandNewCategory","level":"Warning","properties":{"Widget":"w1","Count":3}}]}"#,
            r#"{"records":[{"time":"2024-05-20T10:00:03Z","category":"Wide","properties":{"timeGenerated":"no","#,
            wide.join(","),
            "}}]}"
        ),
    )
    .unwrap();
    let config = dir.path().join("hubwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n\
             [[sources]]\ntype = \"file\"\nname = \"exports\"\npaths = [{:?}]\n\
             [[sinks]]\ntype = \"file\"\nname = \"all\"\npath = \"all.ndjson\"\n\
             [[sinks]]\ntype = \"file\"\nname = \"raw\"\npath = \"raw.ndjson\"\n\
             [[sinks]]\ntype = \"file\"\nname = \"some\"\npath = \"some.ndjson\"\n\
             [[routes]]\nname = \"every\"\nsinks = [\"all\"]\nkql = \"*\"\n\
             [[routes]]\nname = \"every_record\"\nsinks = [\"raw\"]\noutput = \"record\"\nkql = \"union *\"\n\
             [[routes]]\nname = \"some\"\nsinks = [\"some\"]\nkql = \"union AmlCompute*, AzureActivity | project TimeGenerated, Level, OperationName\"\n",
            input.display().to_string()
        ),
    )
    .unwrap();
    let mut svc = Service::start(&config);
    svc.wait_for_line("all sources finished", Duration::from_secs(30));
    let read = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = read("all.ndjson");
    assert_eq!(all.len(), 4);
    let wide = all[3].as_object().unwrap();
    assert_eq!(wide["TimeGenerated"], "2024-05-20T10:00:03.0000000Z");
    assert_eq!(
        (wide["f0"].clone(), wide["f99999"].clone()),
        (0.into(), 99_999.into())
    );
    assert!(!wide.contains_key("timeGenerated"));
    let all = &all[..3];
    assert_eq!(all[0]["Type"], "AmlComputeJobEvent");
    assert_eq!(all[1]["Type"], "AzureActivity");
    let unknown = &all[2];
    assert_eq!(unknown["TimeGenerated"], "2024-05-20T10:00:02.0000000Z");
    assert_eq!(unknown["category"], "BrandNewCategory");
    assert_eq!(unknown["Widget"], "w1", "properties flattened: {unknown}");
    assert_eq!(unknown["Count"], 3);
    assert_eq!(unknown["_hubwatch"]["route"], "every");
    let raw = std::fs::read_to_string(dir.path().join("raw.ndjson")).unwrap();
    let body = std::fs::read_to_string(&input).unwrap();
    assert_eq!(raw.lines().count(), 4);
    assert!(raw.lines().all(|l| body.contains(l)), "{raw}");
    let some = read("some.ndjson");
    assert_eq!(some.len(), 2, "{some:?}");
    assert!(
        some.iter().all(|r| r.as_object().unwrap().len() == 4),
        "{some:?}"
    );
    let (_, metrics) = svc.get("/metrics");
    assert_eq!(
        metric(&metrics, "hubwatch_forward_rows_total{route=\"every\"}"),
        Some(4.0)
    );
}

const RESULTS: &str =
    "AmlComputeJobEvent | summarize n = count() by bin(TimeGenerated, 5m), EventType";

fn results_config(dir: &Path, input: &Path, follow: bool) -> PathBuf {
    let text = format!(
        "[export]\nlisten = \"127.0.0.1:0\"\n\
         [checkpoint]\ndir = \"cp\"\ninterval = \"100ms\"\n\
         [[sources]]\ntype = \"file\"\nname = \"exports\"\npaths = [{:?}]\nfollow = {follow}\n\
         [[sinks]]\ntype = \"file\"\nname = \"siem\"\npath = \"results.ndjson\"\n\
         [[queries]]\nname = \"job_events\"\nkql = \"{RESULTS}\"\n\
         [[routes]]\nname = \"alerts\"\nsinks = [\"siem\"]\nquery = \"job_events\"\n",
        input.display().to_string()
    );
    let path = dir.join("hubwatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Routed result rows as (bin, event type) → every `n` received for it.
fn results(dir: &Path) -> BTreeMap<(String, String), Vec<i64>> {
    let mut m: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    // A line torn by a kill is skipped (its rows were not acknowledged, and are routed
    // again).
    let mut torn = 0;
    for line in whole_lines(&dir.join("results.ndjson")) {
        let Ok(r) = serde_json::from_str::<Value>(&line) else {
            torn += 1;
            continue;
        };
        assert_eq!(r["_hubwatch"]["query"], "job_events", "{r}");
        assert_eq!(r["_hubwatch"]["bin"], r["TimeGenerated"], "{r}");
        let key = (
            r["TimeGenerated"].as_str().unwrap().to_string(),
            r["EventType"].as_str().unwrap().to_string(),
        );
        m.entry(key).or_default().push(r["n"].as_i64().unwrap());
    }
    assert!(torn <= 2, "{torn} torn lines: at most one per kill");
    m
}

/// A route of a `summarize` query's results: each tumbling bin goes out once, when the
/// watermark closes it, with the rows `hubwatch query` computes for it. Killed twice while
/// the input grows, the bins routed are exactly those of an uninterrupted run, with the
/// same counts: the state that says which bins went out is restored with the windows.
#[test]
fn routed_results_are_each_closed_bin_once_and_kills_change_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bodies.ndjson");
    let growing = Growing::new(&input);
    let write_upto = |n: usize| growing.write_upto(n);
    let lines = &growing.lines;
    write_upto(lines.len());

    // One uninterrupted run over the whole input.
    let reference_dir = tempfile::tempdir().unwrap();
    let mut one = Service::start(&results_config(reference_dir.path(), &input, false));
    one.wait_for_line("all sources finished", Duration::from_secs(30));
    let (_, metrics) = one.get("/metrics");
    one.terminate(Duration::from_secs(30));
    let want = results(reference_dir.path());
    assert!(
        want.values().all(|n| n.len() == 1),
        "each bin's row once in one run"
    );
    assert_eq!(
        metric(&metrics, "hubwatch_forward_rows_total{route=\"alerts\"}"),
        Some(want.len() as f64)
    );
    // Against `hubwatch query` over the same input, its bins closed by the service's
    // lateness (and every bin at the end of the input): the routed bins are those the
    // watermark closed, with its counts.
    let every = query_over("results", &input, &["--allowed-lateness", "10m"], RESULTS);
    let oracle: BTreeMap<(String, String), i64> = every
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let key = (
                r["TimeGenerated"].as_str().unwrap().to_string(),
                r["EventType"].as_str().unwrap().to_string(),
            );
            (key, r["n"].as_i64().unwrap())
        })
        .collect();
    // A bin is routed once the watermark passes its end.
    let watermark = metric(&metrics, "hubwatch_event_time_watermark_seconds").unwrap();
    let closed = |bin: &str| {
        let start = chrono_seconds(bin);
        start + 300.0 <= watermark
    };
    assert!(want.len() > 1000, "{} of {} rows", want.len(), oracle.len());
    for (key, n) in &want {
        assert_eq!(oracle.get(key), Some(&n[0]), "{key:?}");
    }
    let routed_as_closed: Vec<_> = oracle.keys().filter(|(b, _)| closed(b)).collect();
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        routed_as_closed,
        "exactly the bins the watermark closed"
    );

    // Killed twice as the input grows: first once a snapshot stored after the last routed
    // row says it went out (nothing may come again), then at a moment of no note (what
    // was routed after the last snapshot may come again, nothing more).
    let lines_routed = || whole_lines(&dir.path().join("results.ndjson")).len();
    write_upto(lines.len() / 3);
    let mut svc = Service::start(&results_config(dir.path(), &input, true));
    let snapshot_at = |svc: &Service| {
        let (_, text) = svc.get("/metrics");
        metric(&text, "hubwatch_state_last_snapshot_timestamp_seconds").unwrap_or(0.0)
    };
    // The rows are written, then synced, then the snapshot stored: one stored after the
    // file last changed covers every row in it.
    let written_at = || {
        let m = std::fs::metadata(dir.path().join("results.ndjson")).ok()?;
        let at = m
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some(at.as_secs_f64())
    };
    wait_until(
        "the first third routed and stored",
        Duration::from_secs(30),
        || lines_routed() > 0 && written_at().is_some_and(|w| snapshot_at(&svc) >= w),
    );
    svc.child.kill().unwrap();
    svc.child.wait().unwrap();
    let after_first = lines_routed();
    let first_run: Vec<(String, String)> = results(dir.path()).into_keys().collect();
    write_upto(2 * lines.len() / 3);
    let mut svc = Service::start(&results_config(dir.path(), &input, true));
    std::thread::sleep(Duration::from_millis(400));
    svc.child.kill().unwrap();
    svc.child.wait().unwrap();
    let by_second = lines_routed() - after_first;
    write_upto(lines.len());
    let mut svc = Service::start(&results_config(dir.path(), &input, true));
    wait_until("every bin routed", Duration::from_secs(60), || {
        results(dir.path()).len() >= want.len()
    });
    std::thread::sleep(Duration::from_millis(500));
    svc.terminate(Duration::from_secs(30));

    let got = results(dir.path());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same bins and series"
    );
    let mut again = 0;
    for (key, ns) in &got {
        assert!(
            ns.iter().all(|n| *n == want[key][0]),
            "{key:?}: {ns:?}, uninterrupted {:?}",
            want[key]
        );
        again += ns.len() - 1;
    }
    // Only rows routed after the last stored snapshot before a kill can come twice: none
    // of the first run's, at most what the second routed.
    for key in &first_run {
        assert_eq!(
            got[key].len(),
            1,
            "{key:?} was stored as routed, and came again"
        );
    }
    assert!(
        again <= by_second,
        "{again} repeats; the second run routed {by_second} rows"
    );
    eprintln!(
        "{} result rows, {again} repeated after two kills",
        want.len()
    );
}

/// Seconds since the epoch of a `YYYY-MM-DDTHH:MM:SS…Z` time.
fn chrono_seconds(text: &str) -> f64 {
    hubwatch::time::parse_datetime(text).unwrap().0 as f64 / hubwatch::time::TICKS_PER_SECOND as f64
}
