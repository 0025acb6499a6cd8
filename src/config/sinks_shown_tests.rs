//! What the sinks show: no token, key, password, header value or Kafka property in an
//! error or in the settings' `Debug`, given literally or through `${ENV}`; a variable that
//! is not set named with its field; and each sink as `hubwatch check` prints it.

use super::*;

// Secrets given literally and through the environment.
const LITERAL: [&str; 6] = [
    "hec-literal-7f3a",
    "es-literal-key-9c1d",
    "es-literal-password-2b8e",
    "header-literal-5e6f",
    "kafka-literal-4d2c",
    "url-literal-8a9b",
];
const FROM_ENV: [(&str, &str); 6] = [
    ("HW_SINKS_SECRET_HEC", "hec-env-1a2b"),
    ("HW_SINKS_SECRET_ES_KEY", "es-env-key-3c4d"),
    ("HW_SINKS_SECRET_ES_PASSWORD", "es-env-password-5e6f"),
    ("HW_SINKS_SECRET_HEADER", "header-env-7a8b"),
    ("HW_SINKS_SECRET_KAFKA", "kafka-env-9c0d"),
    ("HW_SINKS_SECRET_URL", "url-env-1e2f"),
];

fn assert_no_secret(what: &str, text: &str) {
    for s in LITERAL.iter().chain(FROM_ENV.iter().map(|(_, v)| v)) {
        assert!(!text.contains(s), "{what} shows {s}:\n{text}");
    }
}

#[test]
fn secrets_stay_out_of_errors_debug_and_check() {
    for (k, v) in FROM_ENV {
        std::env::set_var(k, v);
    }
    let dir = tempfile::tempdir().unwrap();
    let [hec, es_key, es_pw, header, kafka, url] = LITERAL;
    // Each secret once literally, once from the environment.
    let good = format!(
        r#"
[[sinks]]
type = "splunk_hec"
name = "hec"
endpoint = "https://splunk:8088"
token = "{hec}"

[[sinks]]
type = "splunk_hec"
name = "hec_env"
endpoint = "https://splunk:8088"
token = "${{HW_SINKS_SECRET_HEC}}"

[[sinks]]
type = "elasticsearch"
name = "es_key"
endpoint = "https://es:9200"
api_key = "{es_key}"

[[sinks]]
type = "elasticsearch"
name = "es_key_env"
endpoint = "https://es:9200"
api_key = "${{HW_SINKS_SECRET_ES_KEY}}"

[[sinks]]
type = "elasticsearch"
name = "es_basic"
endpoint = "https://es:9200"
username = "elastic"
password = "{es_pw}"

[[sinks]]
type = "elasticsearch"
name = "es_basic_env"
endpoint = "https://es:9200"
username = "elastic"
password = "${{HW_SINKS_SECRET_ES_PASSWORD}}"

[[sinks]]
type = "http"
name = "web"
url = "https://hw:{url}@collector/ingest?key={url}"
headers = {{ Authorization = "Bearer {header}", X-Key = "${{HW_SINKS_SECRET_HEADER}}" }}

[[sinks]]
type = "http"
name = "web_env"
url = "https://collector/ingest?key=${{HW_SINKS_SECRET_URL}}"

[[sinks]]
type = "kafka"
name = "k"
bootstrap_servers = "k1:9093"
topic = "azure"
properties = {{ "sasl.password" = "{kafka}", "ssl.key.password" = "${{HW_SINKS_SECRET_KAFKA}}" }}
"#
    );
    let (_, s) = load_text(dir.path(), &good);
    let s = s.unwrap();
    // Loaded, and shown nowhere.
    let Buffered::Hec { token, .. } = buffered(&s, "hec_env").1 else {
        panic!("a HEC sink")
    };
    assert_eq!(token.expose(), "hec-env-1a2b");
    assert_no_secret("Debug of the settings", &format!("{s:?}"));
    assert_no_secret("Debug of the sinks", &format!("{:#?}", s.sinks));
    // Nor the passwords as the Authorization header carries them.
    use base64::Engine as _;
    for pw in [es_pw, "es-env-password-5e6f"] {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("elastic:{pw}"));
        assert!(!format!("{s:?}").contains(&basic), "{s:?}");
    }
    let check: Vec<String> = s.sinks.iter().map(crate::cli::describe_sink).collect();
    assert_no_secret("check", &check.join("\n"));
    assert!(
        check.contains(&"sink web: http -> https://collector/ingest (ndjson)".to_string()),
        "{check:?}"
    );

    // The same secrets beside mistakes in every sink: the errors name fields only.
    let bad = good
        .replace("https://splunk:8088", "splunk:8088")
        .replace(
            "https://es:9200\"\n",
            "https://es:9200\"\ntimeout = \"soon\"\n",
        )
        .replace("https://hw:", "ftp://hw:")
        .replace("https://collector/ingest?key=$", "collector?key=$")
        .replace("topic = \"azure\"", "topic = \"{azure}\"")
        + &format!(
            r#"
[[sinks]]
type = "elasticsearch"
name = "both"
endpoint = "https://es:9200"
api_key = "{es_key}"
username = "elastic"
password = "${{HW_SINKS_SECRET_ES_PASSWORD}}"

[[sinks]]
type = "splunk_hec"
name = "missing"
endpoint = "https://splunk:8088"
token = "{hec}${{HW_SINKS_SECRET_UNSET}}"
"#
        );
    let (f, s) = load_text(dir.path(), &bad);
    let e = s.unwrap_err();
    let text = e.to_string();
    assert_no_secret("errors", &text);
    for name in ["hec", "hec_env"] {
        assert!(
            text.contains(&format!(
                "{f}: sink '{name}': endpoint: must start with http:// or https://"
            )),
            "{text}"
        );
    }
    for name in ["es_key", "es_key_env", "es_basic", "es_basic_env"] {
        assert!(
            text.contains(&format!("{f}: sink '{name}': timeout: 'soon'")),
            "{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "{f}: sink 'both': api_key: give either api_key, or username and password"
        )),
        "{text}"
    );
    // At the `${`, after the literal part of the token (which is not shown).
    let line = 1 + bad
        .lines()
        .position(|l| l.contains("HW_SINKS_SECRET_UNSET"))
        .unwrap();
    let col = "token = \"".len() + hec.len() + 1;
    assert!(
        text.contains(&format!(
            "{f}:{line}:{col}: sink 'missing': token: environment variable HW_SINKS_SECRET_UNSET is not set"
        )),
        "{text}"
    );
    assert_eq!(e.0.len(), 11, "{text}");
}

#[test]
fn a_missing_variable_is_one_error_naming_the_field_and_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (f, s) = load_text(
        dir.path(),
        r#"
[[sinks]]
type = "splunk_hec"
name = "hec"
endpoint = "${HW_SINKS_UNSET_URL}"
token = "${HW_SINKS_UNSET_TOKEN}"
index = "${HW_SINKS_UNSET_INDEX}"

[[sinks]]
type = "elasticsearch"
name = "es"
endpoint = "https://es:9200"
username = "${HW_SINKS_UNSET_USER}"
password = "${HW_SINKS_UNSET_PASSWORD}"

[[sinks]]
type = "syslog"
name = "sys"
address = "${HW_SINKS_UNSET_ADDRESS}"
format = "cef"
fields = { suser = "${HW_SINKS_UNSET_COLUMN}" }
buffer = { dir = "${HW_SINKS_UNSET_DIR}" }

[[sinks]]
type = "http"
name = "web"
url = "https://collector/ingest"
headers = { X-Key = "${HW_SINKS_UNSET_HEADER}" }

[[sinks]]
type = "kafka"
name = "k"
bootstrap_servers = "${HW_SINKS_UNSET_SERVERS}"
topic = "azure"
properties = { "sasl.password" = "${HW_SINKS_UNSET_KAFKA}" }

[[sinks]]
type = "file"
name = "f"
path = "${HW_SINKS_UNSET_PATH}"
"#,
    );
    // Each at the line and column of its `${`, in the order of the file.
    let unset = |at: &str, sink: &str, field: &str, var: &str| {
        format!("{f}:{at}: sink '{sink}': {field}: environment variable {var} is not set")
    };
    let want = [
        unset("5:13", "hec", "endpoint", "HW_SINKS_UNSET_URL"),
        unset("6:10", "hec", "token", "HW_SINKS_UNSET_TOKEN"),
        unset("7:10", "hec", "index", "HW_SINKS_UNSET_INDEX"),
        unset("13:13", "es", "username", "HW_SINKS_UNSET_USER"),
        unset("14:13", "es", "password", "HW_SINKS_UNSET_PASSWORD"),
        unset("19:12", "sys", "address", "HW_SINKS_UNSET_ADDRESS"),
        unset("21:21", "sys", "fields.suser", "HW_SINKS_UNSET_COLUMN"),
        unset("22:19", "sys", "buffer.dir", "HW_SINKS_UNSET_DIR"),
        unset("28:22", "web", "headers.X-Key", "HW_SINKS_UNSET_HEADER"),
        unset("33:22", "k", "bootstrap_servers", "HW_SINKS_UNSET_SERVERS"),
        unset(
            "35:35",
            "k",
            "properties.sasl.password",
            "HW_SINKS_UNSET_KAFKA",
        ),
        unset("40:9", "f", "path", "HW_SINKS_UNSET_PATH"),
    ];
    let errors = s.unwrap_err().0;
    assert_errors(&errors, &want);
    assert_eq!(errors, want, "in the order of the file");
}

#[test]
fn check_shows_each_sink_with_its_type_and_target() {
    let dir = tempfile::tempdir().unwrap();
    let (_, s) = load_text(
        dir.path(),
        r#"
[[sinks]]
type = "file"
name = "f"
path = "rows.ndjson"

[[sinks]]
type = "splunk_hec"
name = "siem"
endpoint = "https://splunk:8088"
token = "t"
indexer_ack = true

[[sinks]]
type = "splunk_hec"
name = "raw"
endpoint = "https://splunk:8088/"
token = "t"
api = "raw"
tls = { verify = false }

[[sinks]]
type = "syslog"
name = "soc"
address = "collector:6514"
protocol = "tls"
format = "cef"

[[sinks]]
type = "syslog"
name = "qradar"
address = "qradar:514"
protocol = "udp"
rfc = "3164"
format = "leef"

[[sinks]]
type = "elasticsearch"
name = "es"
endpoint = "https://es:9200"
api_key = "k"
ecs = true

[[sinks]]
type = "elasticsearch"
name = "os"
endpoint = "http://opensearch:9200"

[[sinks]]
type = "http"
name = "web"
url = "https://collector/ingest?key=k"
format = "json_array"

[[sinks]]
type = "kafka"
name = "k"
bootstrap_servers = "k1:9092,k2:9092"
topic = "azure"
"#,
    );
    let lines: Vec<String> = s
        .unwrap()
        .sinks
        .iter()
        .map(crate::cli::describe_sink)
        .collect();
    let rows = dir.path().join("rows.ndjson");
    assert_eq!(
        lines,
        [
            format!("sink f: file -> {}", rows.display()),
            "sink siem: splunk_hec -> https://splunk:8088 (event, indexer ack)".into(),
            "sink raw: splunk_hec -> https://splunk:8088/ (raw, TLS NOT VERIFIED)".into(),
            "sink soc: syslog -> collector:6514 (tls, rfc 5424, cef)".into(),
            "sink qradar: syslog -> qradar:514 (udp, rfc 3164, leef)".into(),
            "sink es: elasticsearch -> https://es:9200 (api key, ecs)".into(),
            "sink os: elasticsearch -> http://opensearch:9200 (no auth)".into(),
            "sink web: http -> https://collector/ingest (json_array)".into(),
            "sink k: kafka -> k1:9092,k2:9092".into(),
        ]
    );
}
