//! Tests of `[[sinks]]`: each type's defaults and every option as loaded, every mistake
//! reported at once with the file, the sink and the field, and the shipped SIEM example.
//! What the sinks show (errors, `Debug`, `hubwatch check`) is in `sinks_shown_tests.rs`.

use super::*;
use crate::config::{load, ConfigErrors, Settings};
use crate::forward::elastic::BulkEncode;
use crate::forward::hec::{Endpoint, HecEvent, IndexerAck};
use crate::forward::http::ClientCert;
use crate::schema::Schemas;

#[path = "sinks_shown_tests.rs"]
mod shown;

/// Loads `text` as `c.toml` in `dir`; the file's name as errors give it, and the result.
fn load_text(dir: &Path, text: &str) -> (String, Result<Settings, ConfigErrors>) {
    let p = dir.join("c.toml");
    std::fs::write(&p, text).unwrap();
    (p.display().to_string(), load(&p, &Schemas::embedded()))
}

fn sink<'a>(s: &'a Settings, name: &str) -> &'a SinkSettings {
    s.sinks
        .iter()
        .find(|k| k.name() == name)
        .unwrap_or_else(|| panic!("no sink {name}"))
}

fn buffered<'a>(s: &'a Settings, name: &str) -> (&'a Delivery, &'a Buffered) {
    match sink(s, name) {
        SinkSettings::Buffered { delivery, kind, .. } => (delivery, kind),
        other => panic!("{name} is not buffered: {other:?}"),
    }
}

fn template(text: &str, lowercase: bool) -> Option<Template> {
    Some(Template::parse(text, lowercase).unwrap())
}

/// Asserts that `errors` holds exactly `want`, each as one whole message.
fn assert_errors(errors: &[String], want: &[String]) {
    let all = errors.join("\n");
    for w in want {
        assert_eq!(
            errors.iter().filter(|e| *e == w).count(),
            1,
            "want once: {w}\nall:\n{all}"
        );
    }
    assert_eq!(errors.len(), want.len(), "all:\n{all}");
}

#[test]
fn a_minimal_table_of_each_type_takes_the_documented_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let (_, s) = load_text(
        dir.path(),
        r#"
[[sinks]]
type = "file"
name = "f"
path = "rows.ndjson"

[[sinks]]
type = "syslog"
name = "sys"
address = "collector:514"

[[sinks]]
type = "splunk_hec"
name = "hec"
endpoint = "https://splunk:8088"
token = "00000000-0000-0000-0000-000000000000"

[[sinks]]
type = "elasticsearch"
name = "es"
endpoint = "https://es:9200"

[[sinks]]
type = "http"
name = "web"
url = "https://collector/ingest"

[[sinks]]
type = "kafka"
name = "k"
bootstrap_servers = "k1:9092"
topic = "azure-{table}"
"#,
    );
    let s = s.unwrap();
    assert!(
        matches!(sink(&s, "f"), SinkSettings::File { path, .. } if path == &dir.path().join("rows.ndjson"))
    );

    // The shared tables: buffers/<name> beside the configuration, 256 MiB, block; 500
    // events, 1 MiB, 200ms; 4 batches in flight for HTTP sinks, 1 for syslog and Kafka.
    for (name, in_flight) in [("sys", 1), ("hec", 4), ("es", 4), ("web", 4), ("k", 1)] {
        let (d, _) = buffered(&s, name);
        let buffers = dir.path().join("buffers").join(name);
        assert_eq!(d.buffer_dir, buffers, "{name}");
        assert_eq!(d.dead_letter, buffers.join("dead-letter.ndjson"), "{name}");
        assert_eq!(d.max_buffer_bytes, 268_435_456, "{name}");
        assert_eq!(d.when_full, WhenFull::Block, "{name}");
        assert_eq!(d.max_events, 500, "{name}");
        assert_eq!(d.max_bytes, 1_048_576, "{name}");
        assert_eq!(d.linger, Duration::from_millis(200), "{name}");
        assert_eq!(d.max_in_flight, in_flight, "{name}");
    }

    let Buffered::Syslog(sys) = buffered(&s, "sys").1 else {
        panic!("a syslog sink")
    };
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "hubwatch".into());
    assert_eq!(sys, &SyslogSettings::new("collector:514", host));

    let Buffered::Hec {
        endpoint,
        token,
        api,
        index,
        sourcetype,
        source,
        host,
        gzip,
        ack,
        tls,
        timeout,
    } = buffered(&s, "hec").1
    else {
        panic!("a HEC sink")
    };
    assert_eq!(endpoint, "https://splunk:8088");
    assert_eq!(token.expose(), "00000000-0000-0000-0000-000000000000");
    assert_eq!(*api, Endpoint::Event);
    assert_eq!((index, source, host), (&None, &None, &None));
    assert_eq!(*sourcetype, None);
    // Unset, the event endpoint's sourcetype is azure:{table}, lowercase.
    assert_eq!(
        HecEvent::new(None, sourcetype.clone(), None, None).sourcetype,
        template("azure:{table}", true).unwrap()
    );
    assert!(*gzip);
    assert_eq!(*ack, None);
    assert_eq!(tls, &Tls::default());
    assert!(tls.verify);
    assert_eq!(*timeout, Duration::from_secs(30));

    let Buffered::Elasticsearch {
        endpoint,
        index,
        auth,
        ecs,
        gzip,
        tls,
        timeout,
    } = buffered(&s, "es").1
    else {
        panic!("an Elasticsearch sink")
    };
    assert_eq!(endpoint, "https://es:9200");
    assert_eq!(
        BulkEncode::new(index.clone(), *ecs).index,
        template("logs-azure.{table}-default", true).unwrap()
    );
    assert!(auth.is_none() && !ecs && *gzip && tls.verify);
    assert_eq!(*timeout, Duration::from_secs(30));

    let Buffered::Http {
        url,
        format,
        headers,
        gzip,
        tls,
        timeout,
    } = buffered(&s, "web").1
    else {
        panic!("an HTTP sink")
    };
    assert_eq!(url.expose(), "https://collector/ingest");
    assert_eq!(*format, BodyFormat::Ndjson);
    assert!(headers.is_empty() && *gzip && tls.verify);
    assert_eq!(*timeout, Duration::from_secs(30));

    let Buffered::Kafka {
        bootstrap_servers,
        topic,
        key,
        properties,
        timeout,
    } = buffered(&s, "k").1
    else {
        panic!("a Kafka sink")
    };
    assert_eq!(bootstrap_servers, "k1:9092");
    assert_eq!(Some(topic.clone()), template("azure-{table}", false));
    assert!(key.is_none() && properties.is_empty());
    assert_eq!(*timeout, Duration::from_secs(30));
}

#[test]
fn every_documented_option_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("HW_SINKS_RT_TOKEN", "rt-token");
    std::env::set_var("HW_SINKS_RT_PASSWORD", "rt-password");
    std::env::set_var("HW_SINKS_RT_SPOOL", "spool");
    let (_, s) = load_text(
        dir.path(),
        r#"
[[sinks]]
type = "file"
name = "f"
path = "${HW_SINKS_RT_SPOOL}/rows.ndjson"

[[sinks]]
type = "syslog"
name = "sys"
address = "[::1]:6514"
protocol = "tls"
framing = "lf"
rfc = "3164"
format = "leef"
facility = 4
hostname = "hw-1"
fields = { usrName = "Caller", src = "CallerIpAddress" }
leef_delimiter = "x5E"
tls = { verify = false, ca_file = "ca/test.pem", cert_file = "tls/hw.pem", key_file = "tls/hw.key" }
timeout = "3s"
buffer = { dir = "${HW_SINKS_RT_SPOOL}/sys", max_bytes = 16777216, when_full = "drop_newest" }
batch = { max_events = 10, max_bytes = 2048, timeout = "50ms", max_in_flight = 2 }

[[sinks]]
type = "syslog"
name = "udp"
address = "collector:514"
protocol = "udp"
format = "cef"

[[sinks]]
type = "syslog"
name = "relp"
address = "collector:2514"
protocol = "relp"

[[sinks]]
type = "splunk_hec"
name = "raw"
endpoint = "https://splunk:8088"
token = "${HW_SINKS_RT_TOKEN}"
api = "raw"
index = "Azure"
sourcetype = "azure:activity"
source = "hubwatch"
host = "hw-1"
compression = "none"
indexer_ack = true
ack_timeout = "30s"
tls = { ca_file = "splunk-ca.pem" }
timeout = "5s"
batch = { max_in_flight = 8 }

[[sinks]]
type = "splunk_hec"
name = "event"
endpoint = "http://127.0.0.1:8088"
token = "literal-token"
api = "event"
index = "azure-{route}"
sourcetype = "azure:{table}:%Y"
source = "{source}"
compression = "gzip"

[[sinks]]
type = "elasticsearch"
name = "es"
endpoint = "https://es:9200"
index = "hubwatch-{table}-%Y.%m.%d"
username = "elastic"
password = "${HW_SINKS_RT_PASSWORD}"
ecs = true
compression = "none"
tls = { verify = false }
timeout = "10s"

[[sinks]]
type = "elasticsearch"
name = "es_key"
endpoint = "https://es:9200"
api_key = "a2V5OnNlY3JldA=="
compression = "gzip"

[[sinks]]
type = "http"
name = "web"
url = "https://collector:8443/ingest?code=${HW_SINKS_RT_TOKEN}"
format = "json_array"
headers = { Authorization = "Bearer ${HW_SINKS_RT_TOKEN}", X-Tenant = "t1" }
compression = "none"
tls = { ca_file = "/etc/ca.pem" }
timeout = "1m"

[[sinks]]
type = "kafka"
name = "k"
bootstrap_servers = "k1:9093,k2:9093"
topic = "azure.{route}"
key = "_ResourceId"
properties = { "security.protocol" = "SASL_SSL", "sasl.password" = "${HW_SINKS_RT_PASSWORD}" }
timeout = "15s"
buffer = { when_full = "block" }
batch = { max_events = 100 }
"#,
    );
    let s = s.unwrap();
    let d = dir.path();
    assert!(
        matches!(sink(&s, "f"), SinkSettings::File { path, .. } if path == &d.join("spool/rows.ndjson"))
    );

    let (delivery, Buffered::Syslog(sys)) = buffered(&s, "sys") else {
        panic!("a syslog sink")
    };
    assert_eq!(
        sys,
        &SyslogSettings {
            address: "[::1]:6514".into(),
            protocol: Protocol::Tls,
            framing: Framing::Lf,
            rfc: Rfc::Rfc3164,
            format: Format::Leef,
            facility: 4,
            hostname: "hw-1".into(),
            tls: Tls {
                verify: false,
                ca_file: Some(d.join("ca/test.pem")),
                client: Some(ClientCert {
                    cert_file: d.join("tls/hw.pem"),
                    key_file: d.join("tls/hw.key"),
                }),
            },
            // A table's keys in order.
            fields: vec![
                ("src".into(), "CallerIpAddress".into()),
                ("usrName".into(), "Caller".into()),
            ],
            leef_delimiter: b'^',
            timeout: Duration::from_secs(3),
        }
    );
    let mut want = Delivery::new(d.join("spool/sys"));
    want.max_buffer_bytes = 16 << 20;
    want.when_full = WhenFull::DropNewest;
    want.max_events = 10;
    want.max_bytes = 2048;
    want.linger = Duration::from_millis(50);
    want.max_in_flight = 2;
    assert_eq!(delivery, &want);
    let Buffered::Syslog(udp) = buffered(&s, "udp").1 else {
        panic!("a syslog sink")
    };
    assert_eq!((udp.protocol, udp.format), (Protocol::Udp, Format::Cef));
    let Buffered::Syslog(relp) = buffered(&s, "relp").1 else {
        panic!("a syslog sink")
    };
    assert_eq!(relp.protocol, Protocol::Relp);

    let (delivery, raw) = buffered(&s, "raw");
    assert_eq!(delivery.max_in_flight, 8);
    let Buffered::Hec {
        endpoint,
        token,
        api,
        index,
        sourcetype,
        source,
        host,
        gzip,
        ack,
        tls,
        timeout,
    } = raw
    else {
        panic!("a HEC sink")
    };
    assert_eq!(endpoint, "https://splunk:8088");
    assert_eq!(token.expose(), "rt-token");
    assert_eq!(*api, Endpoint::Raw);
    assert_eq!(*index, template("Azure", true));
    assert_eq!(
        index.as_ref().unwrap().fixed_text(),
        "azure",
        "index names are lowercase"
    );
    assert_eq!(*sourcetype, template("azure:activity", false));
    assert_eq!(*source, template("hubwatch", false));
    assert_eq!(host.as_deref(), Some("hw-1"));
    assert!(!gzip);
    assert_eq!(
        *ack,
        Some(IndexerAck {
            timeout: Duration::from_secs(30)
        })
    );
    assert_eq!(
        tls,
        &Tls {
            verify: true,
            ca_file: Some(d.join("splunk-ca.pem")),
            client: None,
        }
    );
    assert_eq!(*timeout, Duration::from_secs(5));
    let Buffered::Hec {
        token,
        api,
        index,
        sourcetype,
        source,
        gzip,
        ..
    } = buffered(&s, "event").1
    else {
        panic!("a HEC sink")
    };
    assert_eq!(token.expose(), "literal-token");
    assert_eq!(*api, Endpoint::Event);
    assert_eq!(*index, template("azure-{route}", true));
    assert_eq!(*sourcetype, template("azure:{table}:%Y", false));
    assert_eq!(*source, template("{source}", false));
    assert!(*gzip);

    let Buffered::Elasticsearch {
        index,
        auth,
        ecs,
        gzip,
        tls,
        timeout,
        ..
    } = buffered(&s, "es").1
    else {
        panic!("an Elasticsearch sink")
    };
    assert_eq!(*index, template("hubwatch-{table}-%Y.%m.%d", true));
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("elastic:rt-password");
    assert_eq!(auth.as_ref().unwrap().expose(), format!("Basic {basic}"));
    assert!(*ecs && !gzip && !tls.verify);
    assert_eq!(*timeout, Duration::from_secs(10));
    let Buffered::Elasticsearch { auth, gzip, .. } = buffered(&s, "es_key").1 else {
        panic!("an Elasticsearch sink")
    };
    assert_eq!(auth.as_ref().unwrap().expose(), "ApiKey a2V5OnNlY3JldA==");
    assert!(*gzip);

    let Buffered::Http {
        url,
        format,
        headers,
        gzip,
        tls,
        timeout,
    } = buffered(&s, "web").1
    else {
        panic!("an HTTP sink")
    };
    assert_eq!(url.expose(), "https://collector:8443/ingest?code=rt-token");
    assert_eq!(*format, BodyFormat::JsonArray);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(
        headers,
        [("Authorization", "Bearer rt-token"), ("X-Tenant", "t1")]
    );
    assert!(!gzip);
    assert_eq!(tls.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
    assert_eq!(*timeout, Duration::from_secs(60));

    let (delivery, kafka) = buffered(&s, "k");
    assert_eq!((delivery.max_events, delivery.max_in_flight), (100, 1));
    assert_eq!(delivery.when_full, WhenFull::Block);
    let Buffered::Kafka {
        bootstrap_servers,
        topic,
        key,
        properties,
        timeout,
    } = kafka
    else {
        panic!("a Kafka sink")
    };
    assert_eq!(bootstrap_servers, "k1:9093,k2:9093");
    assert_eq!(Some(topic.clone()), template("azure.{route}", false));
    assert_eq!(key.as_deref(), Some("_ResourceId"));
    let properties: Vec<(&str, &str)> = properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(
        properties,
        [
            ("sasl.password", "rt-password"),
            ("security.protocol", "SASL_SSL")
        ]
    );
    assert_eq!(*timeout, Duration::from_secs(15));
}

#[test]
fn every_mistake_is_one_error_naming_the_file_the_sink_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (f, s) = load_text(
        dir.path(),
        r#"
[[sinks]]
type = "splunk_hec"
name = "hec"
endpoint = "splunk:8088"
token = "t"
api = "hec"
ack_timeout = "30s"
batch = { max_in_flight = 0 }

[[sinks]]
type = "splunk_hec"
name = "raw"
endpoint = "https://"
token = ""
api = "raw"
sourcetype = "azure:{table}"
index = "azure-%Y"
indexer_ack = true
ack_timeout = "0s"

[[sinks]]
type = "elasticsearch"
name = "es"
endpoint = "ftp://es:9200"
index = "logs-{tabel}"
compression = "zstd"
timeout = "soon"

[[sinks]]
type = "elasticsearch"
name = "es2"
endpoint = "https://es:9200"
api_key = "k"
username = "u"
password = "p"
timeout = "0s"

[[sinks]]
type = "elasticsearch"
name = "es3"
endpoint = "https://es:9200"
username = "u"

[[sinks]]
type = "http"
name = "web"
url = "https://collector/ingest"
format = "xml"
batch = { max_bytes = 0, timeout = "later" }

[[sinks]]
type = "http"
name = "web"
url = "https://collector/other"
buffer = { dir = "spool/web2" }

[[sinks]]
type = "syslog"
name = "sys"
address = "collector"
protocol = "tcpx"
framing = "newline"
rfc = "5425"
format = "gelf"
facility = 30
buffer = { when_full = "drop_oldest" }

[[sinks]]
type = "syslog"
name = "sys2"
address = "collector:514"
tls = { verify = false, cert_file = "client.pem" }
fields = { suser = "Caller" }
leef_delimiter = ";"

[[sinks]]
type = "syslog"
name = "sys3"
address = "collector:514"
format = "leef"
leef_delimiter = "ab"

[[sinks]]
type = "kafka"
name = "k"
bootstrap_servers = ""
topic = "azure-{tables}"
batch = { max_events = 0 }

[[sinks]]
type = "kafka"
name = "k2"
bootstrap_servers = "k1:9092"
topic = "t"
buffer = { dir = "spool/web2" }

[[sinks]]
type = "file"
name = "bad name"
path = "x.ndjson"

[[routes]]
name = "r1"
sinks = ["hec", "nowhere"]
kql = "AmlComputeJobEvent"

[[routes]]
name = "r2"
sinks = ["es"]
index = "x-{bad}"
sourcetype = "azure:%H"
source = "{route}"
kql = "AmlComputeJobEvent"
"#,
    );
    let e = s.unwrap_err();
    let sink = |name: &str, rest: &str| format!("{f}: sink '{name}': {rest}");
    let want = [
        sink("hec", "endpoint: must start with http:// or https://"),
        sink("hec", "api: 'hec' is not one of event, raw"),
        sink("hec", "ack_timeout: applies with indexer_ack = true only"),
        sink("hec", "batch.max_in_flight: must be at least 1"),
        sink("raw", "endpoint: is not a URL (empty host)"),
        sink(
            "raw",
            "token: is empty (set it, e.g. token = \"${SPLUNK_HEC_TOKEN}\")",
        ),
        sink(
            "raw",
            "index: the raw endpoint takes one value per request: no {fields} or %dates",
        ),
        sink(
            "raw",
            "sourcetype: the raw endpoint takes one value per request: no {fields} or %dates",
        ),
        sink("raw", "ack_timeout: must be more than zero"),
        sink("es", "endpoint: must start with http:// or https://"),
        sink(
            "es",
            "index: 'logs-{tabel}': unknown field {tabel} (use {table}, {route} or {source})",
        ),
        sink("es", "compression: 'zstd' is not one of gzip, none"),
        sink("es", "timeout: 'soon' is not a timespan (e.g. 200ms, 30s)"),
        sink(
            "es2",
            "api_key: give either api_key, or username and password",
        ),
        sink("es2", "timeout: must be more than zero"),
        sink("es3", "password: missing (username needs a password)"),
        sink("web", "format: 'xml' is not one of ndjson, json_array"),
        sink("web", "batch.max_bytes: must be at least 1"),
        sink(
            "web",
            "batch.timeout: 'later' is not a timespan (e.g. 200ms, 30s)",
        ),
        format!("{f}: sink 'web' is defined twice"),
        sink("sys", "protocol: 'tcpx' is not one of tcp, tls, udp, relp, relp_tls"),
        sink("sys", "framing: 'newline' is not one of octet_counting, lf"),
        sink("sys", "rfc: '5425' is not one of 5424, 3164"),
        sink("sys", "format: 'gelf' is not one of json, cef, leef"),
        sink("sys", "address: \"collector\" is not host:port"),
        sink("sys", "facility: 30 is not a syslog facility (0–23)"),
        sink(
            "sys",
            "buffer.when_full: 'drop_oldest' is not one of block, drop_newest",
        ),
        sink("sys2", "tls.key_file: missing (cert_file needs its key)"),
        sink("sys2", "tls: applies to protocol \"tls\" or \"relp_tls\" only"),
        sink(
            "sys2",
            "fields: apply to format \"cef\" or \"leef\" (the JSON row holds every column)",
        ),
        sink("sys2", "leef_delimiter: applies to format \"leef\" only"),
        sink(
            "sys3",
            "leef_delimiter: \"ab\" is not \"tab\", one character or xHH (LEEF's hex form)",
        ),
        sink("k", "bootstrap_servers: is empty (host:port,host:port)"),
        sink(
            "k",
            "topic: 'azure-{tables}': unknown field {tables} (use {table}, {route} or {source})",
        ),
        sink("k", "batch.max_events: must be at least 1"),
        sink(
            "k2",
            "buffer.dir: sink 'web' buffers in the same folder (each sink needs its own)",
        ),
        sink(
            "bad name",
            "name: letters, digits, '_' and '-' only (it names the sink's buffer folder and labels its metrics)",
        ),
        format!("{f}: route 'r1': no sink is named 'nowhere' (define it under [[sinks]])"),
        format!(
            "{f}: route 'r2': index: 'x-{{bad}}': unknown field {{bad}} (use {{table}}, {{route}} or {{source}})"
        ),
        format!(
            "{f}: route 'r2': sourcetype: 'azure:%H': unknown date field after '%' (use %Y, %m, %d or %%)"
        ),
    ];
    assert_errors(&e.0, &want);
    assert!(
        e.to_string()
            .starts_with(&format!("{} errors in the configuration:", want.len())),
        "{e}"
    );
}

#[test]
fn unknown_keys_types_and_missing_fields_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let hec =
        "[[sinks]]\ntype = \"splunk_hec\"\nname = \"hec\"\nendpoint = \"https://splunk:8088\"\n";
    for (extra, want) in [
        ("token = \"t\"\ntokn = \"t\"\n", "unknown field `tokn`"),
        (
            "token = \"t\"\nbuffer = { size = 1 }\n",
            "unknown field `size`, expected one of `dir`, `max_bytes`, `when_full`",
        ),
        (
            "token = \"t\"\nbatch = { linger = \"1s\" }\n",
            "unknown field `linger`",
        ),
        (
            "token = \"t\"\ntls = { insecure = true }\n",
            "unknown field `insecure`, expected one of `verify`, `ca_file`, `cert_file`, `key_file`",
        ),
        (
            "token = \"t\"\nframing = \"lf\"\n",
            "unknown field `framing`",
        ),
        ("", "missing field `token`"),
    ] {
        let (f, s) = load_text(dir.path(), &format!("{hec}{extra}"));
        let e = s.unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert!(e.0[0].starts_with(&format!("{f}:")), "{e}");
        assert!(e.0[0].contains(want), "{want}: {e}");
    }
    let (_, s) = load_text(
        dir.path(),
        "[[sinks]]\ntype = \"splunk\"\nname = \"s\"\nendpoint = \"https://x\"\n",
    );
    let e = s.unwrap_err().to_string();
    assert!(e.contains("unknown variant `splunk`"), "{e}");
    assert!(e.contains("`splunk_hec`"), "{e}");
}

#[test]
fn the_siem_example_config_loads() {
    std::env::set_var(
        "EVENTHUB_CONNECTION_STRING",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=l;SharedAccessKey=k;EntityPath=insights",
    );
    std::env::set_var("SPLUNK_HEC_TOKEN", "11111111-2222-3333-4444-555555555555");
    std::env::set_var("ELASTICSEARCH_API_KEY", "ZXhhbXBsZTprZXk=");
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config/siem.toml");
    let s = load(&p, &Schemas::embedded()).unwrap_or_else(|e| panic!("{e}"));
    let shown: Vec<String> = s.sinks.iter().map(crate::cli::describe_sink).collect();
    assert_eq!(
        shown,
        [
            "sink splunk: splunk_hec -> https://splunk.example.com:8088 (event, indexer ack)",
            "sink soc: syslog -> siem-collector.example.com:6514 (tls, rfc 5424, cef)",
            "sink elastic: elasticsearch -> https://elasticsearch.example.com:9200 (api key, ecs)",
        ]
    );
    let Buffered::Hec { token, .. } = buffered(&s, "splunk").1 else {
        panic!("a HEC sink")
    };
    assert_eq!(token.expose(), "11111111-2222-3333-4444-555555555555");
    let debug = format!("{s:?}");
    assert!(!debug.contains("11111111-2222"), "{debug}");
    assert!(!debug.contains("ZXhhbXBsZTprZXk="), "{debug}");

    assert_eq!(
        crate::cli::describe_routes(&s),
        [
            "route failed_jobs: 1 table -> splunk",
            "route failed_runs: 1 table -> splunk",
            "route activity: 1 table -> soc",
            &format!(
                "route aml: {} tables -> elastic",
                s.routes.iter().filter(|r| &*r.name == "aml").count()
            ),
            "route failure_alerts: results of failures_per_cluster, each bin once -> splunk",
        ]
    );
    // Failed jobs and an alert feed to Splunk, the Activity log to syslog, every Azure ML
    // table to Elasticsearch.
    let to = |sink: &str| -> Vec<String> {
        let i = s.sinks.iter().position(|k| k.name() == sink).unwrap();
        let mut tables: Vec<String> = s
            .routes
            .iter()
            .filter(|r| r.sinks.contains(&i))
            .map(|r| match r.results {
                Some(q) => format!("results of {}", s.queries[q].name),
                None => Schemas::embedded().tables[r.plan.inputs[0].table]
                    .name
                    .to_string(),
            })
            .collect();
        tables.sort();
        tables
    };
    assert_eq!(
        to("splunk"),
        [
            "AmlComputeJobEvent",
            "AmlRunStatusChangedEvent",
            "results of failures_per_cluster"
        ]
    );
    assert_eq!(to("soc"), ["AzureActivity"]);
    let mut aml: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/tables"))
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .trim_end_matches(".json")
                    .to_string()
            })
            .filter(|t| t.starts_with("Aml"))
            .collect();
    aml.sort();
    assert_eq!(to("elastic"), aml);
}

#[test]
fn a_topic_kafka_would_refuse_and_credentials_in_an_endpoint_are_caught_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let (f, s) = load_text(
        dir.path(),
        r#"
[[sinks]]
type = "kafka"
name = "k"
bootstrap_servers = "k1:9092"
topic = "azure logs/{table}"

[[sinks]]
type = "kafka"
name = "ok"
bootstrap_servers = "k1:9092"
topic = "azure.{route}-{table}"

[[sinks]]
type = "elasticsearch"
name = "es"
endpoint = "https://elastic:S3cret@es:9200"
"#,
    );
    let errors = s.unwrap_err().0;
    assert_eq!(
        errors,
        [
            format!("{f}: sink 'k': topic: ' ' cannot be in a Kafka topic's name (letters, digits, '.', '_', '-')"),
            format!("{f}: sink 'es': endpoint: holds credentials: give them as token, api_key, or username and password"),
        ]
    );
    assert!(!errors.iter().any(|e| e.contains("S3cret")));
}
