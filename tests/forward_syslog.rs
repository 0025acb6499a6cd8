//! The syslog sink's encoders and transports against a real rsyslog: RFC 5424 over UDP
//! (with a message too large for a datagram), TLS with a self-signed certificate trusted
//! through `ca_file` (and refused without it), RFC 3164 over TCP, LEEF read back by a
//! reader written here, and RELP (rsyslog's imrelp): read back, and through an rsyslog
//! killed and restarted mid-stream. Rows are made by hand and go through the sink's disk buffer and
//! sender (`BufferedSink`) as the engine's would (tests/common/syslog.rs); every check reads
//! what rsyslog parsed (`%jsonmesg%`), field by field.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use hubwatch::forward::buffered::{BufferedSink, Delivery, Status};
use hubwatch::forward::http::{ClientCert, Tls};
use hubwatch::forward::syslog::{parts, Format, Framing, Protocol, Rfc, SyslogSettings};
use hubwatch::forward::Sink;
use hubwatch::telemetry::{Metrics, SinkMetrics};
use serde_json::Value as Json;

use common::rsyslog::{self_signed, Inputs, Rsyslog, TlsInput};
use common::syslog::{failed_job, send, settings, sink, Row};
use common::{free_port, wait_until};

const WAIT: Duration = Duration::from_secs(20);

/// RFC 5424's MSG of a message rsyslog parsed, or RFC 3164's content (rsyslog keeps the
/// space after the tag).
fn msg(m: &Json) -> &str {
    let text = m["msg"].as_str().unwrap();
    text.strip_prefix(' ').unwrap_or(text)
}

#[test]
fn rfc_5424_over_udp_arrives_field_by_field_and_a_message_too_large_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start_with(
        dir.path(),
        &Inputs {
            udp: Some(port),
            ..Default::default()
        },
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = SyslogSettings {
        protocol: Protocol::Udp,
        ..settings(format!("127.0.0.1:{port}"))
    };
    let mut sink = sink(&rt, &dir.path().join("buffer"), &s);
    let small = failed_job(7, "ana@contoso.com");
    // 60 KiB: more than RFC 5426's safe 2048 bytes, still one datagram, taken whole.
    let large = failed_job(8, &"x".repeat(60 << 10));
    let too_large = failed_job(9, &"y".repeat(70 << 10));
    send(&mut sink, &[&small, &too_large, &large]);

    let got = rsyslog.wait_for(2, WAIT);
    for (m, row) in got.iter().zip([&small, &large]) {
        assert_eq!(m["inputname"], "imudp");
        assert_eq!(m["protocol-version"], "1");
        assert_eq!(m["pri"], "131", "local0 (16) * 8 + error (3)");
        assert_eq!(m["timereported"], "2024-05-05T09:07:03.123456Z");
        assert_eq!(m["hostname"], "hw-test");
        assert_eq!(m["app-name"], "hubwatch");
        assert_eq!(m["procid"], "-");
        assert_eq!(m["msgid"], "failed-jobs");
        assert_eq!(
            m["structured-data"],
            format!(
                "[hubwatch@32473 source=\"eh\" partition=\"3\" offset=\"4096\" seq=\"{}\"]",
                row.position.sequence_number
            )
        );
        let body: Json = serde_json::from_str(msg(m)).unwrap();
        assert_eq!(body, row.value(), "the row arrived whole");
    }

    let dead = dir.path().join("buffer/dead-letter.ndjson");
    wait_until("the message too large was dead-lettered", WAIT, || {
        std::fs::read_to_string(&dead).is_ok_and(|t| t.lines().count() == 1)
    });
    let line: Json = serde_json::from_str(std::fs::read_to_string(&dead).unwrap().trim()).unwrap();
    assert_eq!(line["kind"], "too_large");
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains(&"y".repeat(70 << 10)),
        "whole, not cut"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rsyslog.messages().len(), 2, "nothing cut arrived");
}

#[test]
fn tls_to_a_self_signed_receiver_is_trusted_through_ca_file_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let port = free_port();
    let rsyslog = Rsyslog::start_with(
        dir.path(),
        &Inputs {
            tls: Some(TlsInput {
                port,
                cert: cert.clone(),
                key,
            }),
            ..Default::default()
        },
    );
    let rt = tokio::runtime::Runtime::new().unwrap();

    // The system's roots alone do not know the receiver: nothing goes out, the sink says why.
    let untrusted = SyslogSettings {
        protocol: Protocol::Tls,
        ..settings(format!("127.0.0.1:{port}"))
    };
    let mut refused = sink(&rt, &dir.path().join("refused"), &untrusted);
    send(&mut refused, &[&failed_job(1, "mallory")]);
    let health = refused.health().unwrap();
    wait_until("the untrusted receiver was refused", WAIT, || {
        matches!(health.status(), Status::Failing { .. })
    });
    let Status::Failing { error, .. } = health.status() else {
        unreachable!()
    };
    assert!(error.contains("certificate"), "{error}");

    let trusted = SyslogSettings {
        protocol: Protocol::Tls,
        format: Format::Cef,
        fields: vec![("suser".into(), "Caller".into())],
        tls: Tls {
            verify: true,
            ca_file: Some(cert),
            client: None,
        },
        ..settings(format!("localhost:{port}"))
    };
    let mut sink = sink(&rt, &dir.path().join("trusted"), &trusted);
    let rows = [failed_job(7, "ana@contoso.com"), failed_job(8, "bob=admin")];
    send(&mut sink, &[&rows[0], &rows[1]]);
    let got = rsyslog.wait_for(2, WAIT);
    for (m, row) in got.iter().zip(&rows) {
        assert_eq!(m["inputname"], "imtcp");
        assert_eq!(m["pri"], "131");
        assert_eq!(m["hostname"], "hw-test");
        assert_eq!(m["msgid"], "failed-jobs");
        let cef = msg(m);
        assert!(
            cef.starts_with("CEF:0|Microsoft|AmlComputeJobEvent|hubwatch "),
            "{cef}"
        );
        assert!(
            cef.contains("|Microsoft.MachineLearningServices/workspaces/jobs\\|write|JobFailed|7|"),
            "{cef}"
        );
        let caller = row.value()["Caller"].as_str().unwrap().replace('=', "\\=");
        assert!(cef.ends_with(&format!(" suser={caller}")), "{cef}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rsyslog.messages().len(), 2, "the refused sink sent nothing");
}

#[test]
fn rfc_3164_over_tcp_is_parsed_back_by_rsyslog() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start_with(
        dir.path(),
        &Inputs {
            tcp: Some(port),
            ..Default::default()
        },
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = SyslogSettings {
        rfc: Rfc::Rfc3164,
        framing: Framing::Lf,
        facility: 4,
        ..settings(format!("127.0.0.1:{port}"))
    };
    let mut sink = sink(&rt, &dir.path().join("buffer"), &s);
    let row = failed_job(7, "ana@contoso.com");
    let verbose = Row::new("2024-12-31T23:59:59Z", 8, &[("Level", "Verbose")]);
    send(&mut sink, &[&row, &verbose]);
    let got = rsyslog.wait_for(2, WAIT);
    for (m, (row, pri, when)) in got.iter().zip([
        (&row, "35", "-05-05T09:07:03+00:00"),
        (&verbose, "39", "-12-31T23:59:59+00:00"),
    ]) {
        assert_eq!(m["protocol-version"], "0", "read as RFC 3164: {m}");
        assert_eq!(m["pri"], pri, "auth (4) * 8 + the level's severity");
        // No year in RFC 3164: rsyslog supplies one.
        assert!(m["timereported"].as_str().unwrap().ends_with(when), "{m}");
        assert_eq!(m["hostname"], "hw-test");
        assert_eq!(m["syslogtag"], "hubwatch:");
        assert_eq!(m["programname"], "hubwatch");
        let body: Json = serde_json::from_str(msg(m)).unwrap();
        assert_eq!(body, row.value());
    }
}

/// A LEEF reader of its own: the header's six `|`-terminated fields (`\` escaping the next
/// character), the delimiter they declare (one character, or hex as `x09` / `0x09`, tab if
/// empty), then `key=value` attributes split at the first `=`.
fn read_leef(text: &str) -> (Vec<String>, Vec<(String, String)>) {
    let mut header = Vec::new();
    let mut field = String::new();
    let mut chars = text.char_indices();
    let mut rest = "";
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => field.extend(chars.next().map(|(_, n)| n)),
            '|' => {
                header.push(std::mem::take(&mut field));
                if header.len() == 6 {
                    rest = &text[i + 1..];
                    break;
                }
            }
            c => field.push(c),
        }
    }
    assert_eq!(header.len(), 6, "a LEEF 2.0 header: {text}");
    let d = &header[5];
    let hex = d.strip_prefix("0x").or_else(|| d.strip_prefix('x'));
    let delimiter = match hex {
        Some(h) if !h.is_empty() => char::from(u8::from_str_radix(h, 16).unwrap()),
        _ if d.is_empty() => '\t',
        _ => d.chars().next().unwrap(),
    };
    let attrs = rest
        .split(delimiter)
        .map(|a| {
            let (k, v) = a
                .split_once('=')
                .unwrap_or_else(|| panic!("{a:?} in {text}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    (header, attrs)
}

#[test]
fn leef_over_rfc_3164_is_read_back_attribute_by_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start_with(
        dir.path(),
        &Inputs {
            tcp: Some(port),
            ..Default::default()
        },
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = SyslogSettings {
        rfc: Rfc::Rfc3164,
        format: Format::Leef,
        fields: vec![
            ("usrName".into(), "Caller".into()),
            ("src".into(), "CallerIpAddress".into()),
        ],
        ..settings(format!("127.0.0.1:{port}"))
    };
    let mut sink = sink(&rt, &dir.path().join("buffer"), &s);
    // A tab in a value cannot be escaped in LEEF: it arrives as a space.
    let row = failed_job(7, "ana\tbob=x");
    send(&mut sink, &[&row]);
    let got = rsyslog.wait_for(1, WAIT);
    let m = &got[0];
    assert_eq!(m["pri"], "131");
    assert_eq!(m["syslogtag"], "hubwatch:");
    let (header, attrs) = read_leef(msg(m));
    assert_eq!(header[0], "LEEF:2.0");
    assert_eq!(header[1], "Microsoft");
    assert_eq!(header[2], "Azure Monitor");
    assert!(header[3].starts_with("hubwatch "), "{header:?}");
    assert_eq!(
        header[4],
        "Microsoft.MachineLearningServices/workspaces/jobs|write"
    );
    assert_eq!(header[5], "x09");
    let keys: Vec<&str> = attrs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "devTime",
            "devTimeFormat",
            "sev",
            "cat",
            "eventType",
            "resource",
            "result",
            "route",
            "origin",
            "msg",
            "usrName"
        ],
        "each key once, in the documented order; src's column is missing"
    );
    let attr = |k: &str| attrs.iter().find(|(key, _)| key == k).unwrap().1.as_str();
    assert_eq!(attr("devTimeFormat"), "yyyy-MM-dd'T'HH:mm:ss.SSSZ");
    assert_eq!(attr("devTime"), "2024-05-05T09:07:03.123+0000");
    let dev_time = attr("devTime").replace("+0000", "Z");
    assert_eq!(
        hubwatch::time::parse_datetime(&dev_time).unwrap().0,
        row.time / 10_000 * 10_000,
        "devTime is TimeGenerated to the millisecond"
    );
    assert_eq!(attr("sev"), "7");
    assert_eq!(attr("cat"), "AmlComputeJobEvent");
    assert_eq!(attr("eventType"), "JobFailed");
    assert_eq!(
        attr("resource"),
        "/subscriptions/s/resourceGroups/rg/providers/ws=1"
    );
    assert_eq!(attr("result"), "Failed");
    assert_eq!(attr("route"), "failed-jobs");
    assert_eq!(attr("origin"), "eh/3@7");
    assert_eq!(attr("usrName"), "ana bob=x");
    let body: Json = serde_json::from_str(attr("msg")).unwrap();
    assert_eq!(
        body,
        row.value(),
        "the row's JSON, tab and all, arrived whole"
    );
    assert_eq!(body["Caller"], "ana\tbob=x");
}

/// The `seq` of each message an rsyslog wrote to `out` (the row's sequence number, from
/// the structured data), in the order written.
fn seqs(out: &Path) -> Vec<i64> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let m: Json = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let sd = m["structured-data"].as_str().unwrap();
            let (_, rest) = sd.split_once("seq=\"").unwrap();
            rest.split('"').next().unwrap().parse().unwrap()
        })
        .collect()
}

/// A sink over RELP to `port`, its `sent` counter, and its health.
fn relp_sink(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    port: u16,
    tune: impl FnOnce(&mut Delivery),
) -> (BufferedSink, prometheus::IntCounter) {
    let s = SyslogSettings {
        protocol: Protocol::Relp,
        timeout: Duration::from_secs(5),
        ..settings(format!("127.0.0.1:{port}"))
    };
    counted_sink(rt, dir, &s, tune)
}

/// A sink with `s`, and its counter of messages delivered.
fn counted_sink(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    s: &SyslogSettings,
    tune: impl FnOnce(&mut Delivery),
) -> (BufferedSink, prometheus::IntCounter) {
    let metrics = Metrics::new();
    let sink_metrics = SinkMetrics::of(&metrics.forward, "siem");
    let sent = sink_metrics.sent.clone();
    let _in = rt.enter();
    let (encode, deliver) = parts(s).unwrap();
    let mut delivery = Delivery::new(dir.to_path_buf());
    tune(&mut delivery);
    let sink = BufferedSink::start("siem", delivery, encode, deliver, Some(sink_metrics)).unwrap();
    (sink, sent)
}

#[test]
fn rfc_5424_over_relp_arrives_field_by_field_and_is_counted_once_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start_with(
        dir.path(),
        &Inputs {
            relp: Some(port),
            ..Default::default()
        },
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut sink, sent) = relp_sink(&rt, &dir.path().join("buffer"), port, |_| {});
    let small = failed_job(7, "ana@contoso.com");
    // 100 KiB, under the receiver's 128 KiB: one RELP frame, taken whole.
    let large = failed_job(8, &"x".repeat(100 << 10));
    send(&mut sink, &[&small, &large]);

    let got = rsyslog.wait_for(2, WAIT);
    for (m, row) in got.iter().zip([&small, &large]) {
        assert_eq!(m["inputname"], "imrelp");
        assert_eq!(m["protocol-version"], "1");
        assert_eq!(m["pri"], "131", "local0 (16) * 8 + error (3)");
        assert_eq!(m["timereported"], "2024-05-05T09:07:03.123456Z");
        assert_eq!(m["hostname"], "hw-test");
        assert_eq!(m["app-name"], "hubwatch");
        assert_eq!(m["procid"], "-");
        assert_eq!(m["msgid"], "failed-jobs");
        assert_eq!(
            m["structured-data"],
            format!(
                "[hubwatch@32473 source=\"eh\" partition=\"3\" offset=\"4096\" seq=\"{}\"]",
                row.position.sequence_number
            )
        );
        let body: Json = serde_json::from_str(msg(m)).unwrap();
        assert_eq!(body, row.value(), "the row arrived whole");
    }
    wait_until("both were counted as delivered", WAIT, || sent.get() == 2);
    assert_eq!(sink.health().unwrap().status(), Status::Ok);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rsyslog.messages().len(), 2, "each once");
}

/// RELP inside TLS to rsyslog's imrelp, which checks the client certificate hubwatch
/// presents (`certvalid`) as hubwatch checks rsyslog's through `ca_file`: every message
/// acknowledged, each once.
#[test]
fn rfc_5424_over_relp_inside_mutual_tls_is_acknowledged_by_rsyslog() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let port = free_port();
    let rsyslog = Rsyslog::start_with(
        dir.path(),
        &Inputs {
            relp_tls: Some(TlsInput {
                port,
                cert: cert.clone(),
                key: key.clone(),
            }),
            ..Default::default()
        },
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = SyslogSettings {
        protocol: Protocol::RelpTls,
        timeout: Duration::from_secs(5),
        tls: Tls {
            verify: true,
            ca_file: Some(cert.clone()),
            client: Some(ClientCert {
                cert_file: cert,
                key_file: key,
            }),
        },
        ..settings(format!("localhost:{port}"))
    };
    let (mut sink, sent) = counted_sink(&rt, &dir.path().join("buffer"), &s, |_| {});
    let rows = [failed_job(7, "ana@contoso.com"), failed_job(8, "bob")];
    send(&mut sink, &[&rows[0], &rows[1]]);
    let got = rsyslog.wait_for(2, WAIT);
    for (m, row) in got.iter().zip(&rows) {
        assert_eq!(m["inputname"], "imrelp");
        assert_eq!(m["msgid"], "failed-jobs");
        let body: Json = serde_json::from_str(msg(m)).unwrap();
        assert_eq!(body, row.value(), "the row arrived whole");
    }
    wait_until("both acknowledged", WAIT, || sent.get() == 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rsyslog.messages().len(), 2, "each once");
}

#[test]
fn relp_through_an_rsyslog_killed_mid_stream_counts_only_what_it_acknowledged_and_loses_nothing() {
    const ROWS: i64 = 5000;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let inputs = Inputs {
        relp: Some(port),
        ..Default::default()
    };
    // Its main queue is Direct (see `start_with`): it writes a message before answering.
    let first = Rsyslog::start_with(&dir.path().join("first"), &inputs);
    let first_out = first.out.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut sink, sent) = relp_sink(&rt, &dir.path().join("buffer"), port, |d| {
        // Many small batches, so that the kill lands in the middle of the stream.
        d.max_events = 50;
        d.linger = Duration::from_millis(5);
    });
    let health = sink.health().unwrap();
    // Rows `from..to`, made durable every `flush_every` rows and at the end.
    let mut write = |from: i64, to: i64, flush_every: i64| {
        for i in from..to {
            sink.write(&failed_job(i, "ana@contoso.com").routed())
                .unwrap();
            if i % flush_every == flush_every - 1 {
                sink.flush().unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        sink.flush().unwrap();
    };

    write(0, 500, 20);
    wait_until("rsyslog took the start of the stream", WAIT, || {
        seqs(&first_out).len() >= 300
    });
    // 3,500 rows durable at once, and rsyslog killed (SIGKILL) while they go out: once its
    // file has doubled (some 500 rows more), with batches in flight.
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let half = size(&first_out);
    write(500, 4000, i64::MAX);
    let deadline = std::time::Instant::now() + WAIT;
    while size(&first_out) < 2 * half {
        assert!(std::time::Instant::now() < deadline, "rsyslog took no more");
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(first);
    wait_until("the sink noticed", WAIT, || {
        matches!(health.status(), Status::Failing { .. })
    });
    // Counted first, read second: an answer rsyslog sent is for a message it had written.
    let counted = sent.get();
    let first_seqs = seqs(&first_out);
    let first_distinct: BTreeSet<i64> = first_seqs.iter().copied().collect();
    assert_eq!(
        first_distinct.len(),
        first_seqs.len(),
        "each once, until the kill"
    );
    assert!(
        counted <= first_distinct.len() as u64,
        "counted {counted} as delivered, but the killed rsyslog wrote only {}",
        first_distinct.len()
    );
    assert!(
        first_distinct.len() < 4000,
        "the kill came after everything was delivered: nothing tested"
    );
    let Status::Failing { error, .. } = health.status() else {
        unreachable!()
    };
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");

    // Down for a moment while rows keep coming; then back on the same port.
    write(4000, 4500, 20);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sent.get(),
        counted,
        "nothing counted while no receiver is up"
    );
    let second = Rsyslog::start_with(&dir.path().join("second"), &inputs);
    write(4500, ROWS, 20);

    wait_until(
        "every row was counted as delivered",
        Duration::from_secs(60),
        || sent.get() == ROWS as u64,
    );
    let second_seqs = seqs(&second.out);
    let mut all: Vec<i64> = first_seqs.iter().chain(&second_seqs).copied().collect();
    let written = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all,
        (0..ROWS).collect::<Vec<_>>(),
        "every row arrived at least once"
    );
    // What arrived twice is exactly what the killed rsyslog wrote without its answer
    // reaching the sink: sent again, as it must be; nothing it acknowledged was.
    let twice = second_seqs
        .iter()
        .filter(|s| first_distinct.contains(s))
        .count();
    assert_eq!(
        written - ROWS as usize,
        twice,
        "duplicates only across the kill"
    );
    assert_eq!(twice as u64, first_distinct.len() as u64 - counted);
    assert_eq!(health.status(), Status::Ok);
    eprintln!(
        "RELP through a kill: {counted} counted before it, {} written by the killed rsyslog, {twice} written twice",
        first_distinct.len(),
    );
}
