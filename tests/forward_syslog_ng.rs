//! The syslog sink against a real syslog-ng (Debian's, unpacked beside rsyslog; see
//! tests/common/syslog_ng.rs), a second receiver besides rsyslog's (tests/forward_syslog.rs):
//! RFC 5424 over TCP with octet counting, over UDP and over TLS trusted through `ca_file`,
//! each message read back as syslog-ng parsed it — PRI, timestamp, host, app name, msgid,
//! the structured data parameter by parameter, and the message; and CEF, parsed back field
//! by field by a reader of its own (tests/common/syslog.rs). Rows are made by hand and go through the sink's disk
//! buffer and sender as the engine's would (tests/common/syslog.rs).

mod common;

use std::time::Duration;

use hubwatch::forward::buffered::Status;
use hubwatch::forward::http::{ClientCert, Tls};
use hubwatch::forward::syslog::{Format, Framing, Protocol, SyslogSettings};
use hubwatch::forward::Sink;
use serde_json::{json, Value as Json};

use common::syslog::{failed_job, read_cef, send, settings, sink, Row};
use common::syslog_ng::SyslogNg;

const WAIT: Duration = Duration::from_secs(20);

/// Checks the RFC 5424 header and structured data syslog-ng parsed from `row`'s message,
/// received on `input`, with the syslog severity `severity` (facility local0).
fn assert_header(m: &Json, row: &Row, input: &str, severity: (i64, &str)) {
    assert_eq!(m["input"], input, "{m}");
    assert_eq!(m["facility"], "local0", "{m}");
    assert_eq!(m["facility_num"], 16, "{m}");
    assert_eq!(m["severity_num"], severity.0, "{m}");
    assert_eq!(m["severity"], severity.1, "{m}");
    assert_eq!(m["pri"], 16 * 8 + severity.0, "{m}");
    // RFC 5424 carries six digits of the seven: syslog-ng reads all six.
    let micros = hubwatch::time::format_datetime(row.time / 10 * 10);
    assert_eq!(
        m["timestamp"],
        format!("{}+00:00", &micros[..micros.len() - 2]),
        "{m}"
    );
    assert_eq!(m["host"], "hw-test", "{m}");
    assert_eq!(m["app_name"], "hubwatch", "{m}");
    assert_eq!(m["procid"], "", "RFC 5424's nil PROCID: {m}");
    assert_eq!(m["msgid"], "failed-jobs", "the route: {m}");
    let seq = row.position.sequence_number.to_string();
    assert_eq!(
        m["sd"],
        json!({"hubwatch@32473": {"source": "eh", "partition": "3", "offset": "4096", "seq": seq}}),
        "{m}"
    );
    assert_eq!(
        m["structured_data"],
        format!("[hubwatch@32473 source=\"eh\" partition=\"3\" offset=\"4096\" seq=\"{seq}\"]"),
        "one element, its parameters in order: {m}"
    );
}

/// The message's JSON payload, parsed.
fn payload(m: &Json) -> Json {
    let text = m["message"].as_str().unwrap();
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn rfc_5424_over_tcp_with_octet_counting_is_parsed_field_by_field_with_each_levels_severity() {
    let dir = tempfile::tempdir().unwrap();
    let syslog_ng = SyslogNg::start(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = SyslogSettings {
        protocol: Protocol::Tcp,
        framing: Framing::OctetCounting,
        ..settings(format!("127.0.0.1:{}", syslog_ng.tcp))
    };
    let mut sink = sink(&rt, &dir.path().join("buffer"), &s);
    let at = "2024-05-05T09:07:03.1234567Z";
    let rows = [
        failed_job(7, "ana@contoso.com"),
        Row::new(at, 8, &[("Level", "Critical")]),
        Row::new(at, 9, &[("Level", "warning")]),
        Row::new(at, 10, &[("Level", "Informational")]),
        Row::new(at, 11, &[("Level", "Verbose")]),
        Row::new(at, 12, &[("Caller", "no level: informational")]),
    ];
    let severities = [
        (3, "err"),
        (2, "crit"),
        (4, "warning"),
        (6, "info"),
        (7, "debug"),
        (6, "info"),
    ];
    send(&mut sink, &rows.iter().collect::<Vec<_>>());

    let got = syslog_ng.wait_for(rows.len(), WAIT);
    assert_eq!(got.len(), rows.len(), "each once");
    for ((m, row), severity) in got.iter().zip(&rows).zip(severities) {
        assert_header(m, row, "s_tcp", severity);
        assert_eq!(payload(m), row.value(), "the row arrived whole");
    }
    let first = payload(&got[0]);
    assert_eq!(
        first["OperationName"],
        "Microsoft.MachineLearningServices/workspaces/jobs|write"
    );
    assert_eq!(first["TimeGenerated"], "2024-05-05T09:07:03.1234567Z");
}

#[test]
fn rfc_5424_over_udp_arrives_whole_a_message_a_datagram() {
    let dir = tempfile::tempdir().unwrap();
    let syslog_ng = SyslogNg::start(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = SyslogSettings {
        protocol: Protocol::Udp,
        ..settings(format!("127.0.0.1:{}", syslog_ng.udp))
    };
    let mut sink = sink(&rt, &dir.path().join("buffer"), &s);
    let small = failed_job(7, "ana@contoso.com");
    // 60 KiB: more than RFC 5426's safe 2048 bytes, still one datagram.
    let large = failed_job(8, &"x".repeat(60 << 10));
    send(&mut sink, &[&small, &large]);

    let got = syslog_ng.wait_for(2, WAIT);
    for (m, row) in got.iter().zip([&small, &large]) {
        assert_header(m, row, "s_udp", (3, "err"));
        assert_eq!(payload(m), row.value(), "the row arrived whole");
    }
    assert_eq!(payload(&got[1])["Caller"].as_str().unwrap().len(), 60 << 10);
}

#[test]
fn rfc_5424_over_tls_to_a_self_signed_syslog_ng_is_trusted_through_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let syslog_ng = SyslogNg::start(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = SyslogSettings {
        protocol: Protocol::Tls,
        tls: Tls {
            verify: true,
            ca_file: Some(syslog_ng.cert.clone()),
            client: None,
        },
        ..settings(format!("localhost:{}", syslog_ng.tls))
    };
    let mut sink = sink(&rt, &dir.path().join("buffer"), &s);
    // A payload with quotes, `]` and a backslash: RFC 5424's MSG takes any text.
    let rows = [
        failed_job(7, "ana@contoso.com"),
        failed_job(8, "bob \"admin\" ]\\"),
    ];
    send(&mut sink, &[&rows[0], &rows[1]]);

    let got = syslog_ng.wait_for(2, WAIT);
    for (m, row) in got.iter().zip(&rows) {
        assert_header(m, row, "s_tls", (3, "err"));
        assert_eq!(payload(m), row.value(), "the row arrived whole");
    }
}

/// A receiver that requires a client certificate: the sink presents the one its
/// `tls.cert_file` and `tls.key_file` name, and syslog-ng checks it against its CA file;
/// without one, the handshake fails and nothing arrives.
#[test]
fn mutual_tls_presents_the_configured_client_certificate_and_without_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let syslog_ng = SyslogNg::start(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let with = |client| SyslogSettings {
        protocol: Protocol::Tls,
        tls: Tls {
            verify: true,
            ca_file: Some(syslog_ng.cert.clone()),
            client,
        },
        ..settings(format!("localhost:{}", syslog_ng.mtls))
    };
    let mut anonymous = sink(&rt, &dir.path().join("anonymous"), &with(None));
    send(&mut anonymous, &[&failed_job(1, "mallory")]);
    let health = anonymous.health().unwrap();
    common::wait_until("the client without a certificate was refused", WAIT, || {
        matches!(health.status(), Status::Failing { .. })
    });
    let Status::Failing { error, .. } = health.status() else {
        unreachable!()
    };
    assert!(error.contains("after the handshake"), "{error}");

    let client = ClientCert {
        cert_file: syslog_ng.client_cert.clone(),
        key_file: syslog_ng.client_key.clone(),
    };
    let mut sink = sink(&rt, &dir.path().join("client"), &with(Some(client)));
    let row = failed_job(7, "ana@contoso.com");
    send(&mut sink, &[&row]);
    let got = syslog_ng.wait_for(1, WAIT);
    assert_header(&got[0], &row, "s_mtls", (3, "err"));
    assert_eq!(
        got[0]["peer_cn"], "localhost",
        "the certificate presented: {}",
        got[0]
    );
    assert_eq!(payload(&got[0]), row.value());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        syslog_ng.messages().len(),
        1,
        "the anonymous sink sent nothing"
    );
}

#[test]
fn cef_is_parsed_back_field_by_field_from_what_syslog_ng_received() {
    let dir = tempfile::tempdir().unwrap();
    let syslog_ng = SyslogNg::start(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = SyslogSettings {
        format: Format::Cef,
        fields: vec![
            ("suser".into(), "Caller".into()),
            ("src".into(), "CallerIpAddress".into()),
        ],
        ..settings(format!("127.0.0.1:{}", syslog_ng.tcp))
    };
    let mut sink = sink(&rt, &dir.path().join("buffer"), &s);
    // A value with what CEF escapes (`=`, `\`, a line break) and spaces.
    let rows = [
        failed_job(7, "ana@contoso.com"),
        failed_job(8, "bob=admin \\ x\ny"),
    ];
    send(&mut sink, &[&rows[0], &rows[1]]);

    let got = syslog_ng.wait_for(2, WAIT);
    for (m, row) in got.iter().zip(&rows) {
        assert_header(m, row, "s_tcp", (3, "err"));
        let text = m["message"].as_str().unwrap();
        let (header, ext) = read_cef(text);
        assert_eq!(
            header[..3],
            ["CEF:0", "Microsoft", "AmlComputeJobEvent"],
            "{text}"
        );
        assert_eq!(
            header[3],
            format!("hubwatch {}", env!("CARGO_PKG_VERSION")),
            "{text}"
        );
        assert_eq!(
            header[4], "Microsoft.MachineLearningServices/workspaces/jobs|write",
            "the operation, its | escaped and read back: {text}"
        );
        assert_eq!(header[5], "JobFailed", "the event type: {text}");
        assert_eq!(header[6], "7", "Error: {text}");
        let keys: Vec<&str> = ext.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rt", "outcome", "cs1Label", "cs1", "cs2Label", "cs2", "cs3Label", "cs3", "msg",
                "suser"
            ],
            "each key once, in the documented order; src's column is missing: {text}"
        );
        let get = |k: &str| ext.iter().find(|(key, _)| key == k).unwrap().1.as_str();
        assert_eq!(
            get("rt"),
            (row.time / 10_000).to_string(),
            "TimeGenerated in ms"
        );
        assert_eq!(get("outcome"), "Failed");
        assert_eq!(get("cs1Label"), "ResourceId");
        assert_eq!(
            get("cs1"),
            "/subscriptions/s/resourceGroups/rg/providers/ws=1"
        );
        assert_eq!(get("cs2Label"), "Route");
        assert_eq!(get("cs2"), "failed-jobs");
        assert_eq!(get("cs3Label"), "Origin");
        assert_eq!(get("cs3"), format!("eh/3@{}", row.position.sequence_number));
        let body: Json = serde_json::from_str(get("msg")).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(body, row.value(), "the row's JSON arrived whole: {text}");
        assert_eq!(get("suser"), row.value()["Caller"], "{text}");
    }
}
