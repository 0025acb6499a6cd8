//! Tests of the configuration: every error at once with its place, unknown fields, files
//! and environment, each source kind's settings with secrets kept out of errors, and the
//! shipped examples.

use super::*;
use crate::config::{BlobAccess, StoreSettings};
use crate::source::amqp::{Auth, StartPosition};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn reports_every_error_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "c.toml",
        r#"[limits]
allowed_lateness = "soon"

[[queries]]
name = "bad-name"
kql = '''
AmlComputeClusterEvent
| where Foo > 1'''

[[queries]]
name = "ok"
kql = "AmlComputeClusterEvent | count"

[[queries]]
name = "ok"
kql = "AmlComputeClusterEvent | count"
"#,
    );
    let e = load(&p, &Schemas::embedded()).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("limits.allowed_lateness: 'soon'"), "{text}");
    assert!(text.contains("query 'bad-name': a name must"), "{text}");
    assert!(
        text.contains("c.toml:8:9: query 'bad-name': unknown column 'Foo'"),
        "{text}"
    );
    assert!(text.contains("query 'ok' is defined twice"), "{text}");
    assert_eq!(e.0.len(), 4, "{text}");
}

#[test]
fn unknown_fields_are_rejected_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "c.toml",
        "[export]\nlisten = \"x\"\nlisten_port = 1\n",
    );
    let e = load(&p, &Schemas::embedded()).unwrap_err();
    assert!(e.0[0].contains("c.toml:3:1"), "{}", e.0[0]);
    assert!(e.0[0].contains("listen_port"), "{}", e.0[0]);
}

#[test]
fn query_files_env_and_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "q.toml",
        "[[queries]]\nname = \"n\"\nkql = \"AmlComputeJobEvent | count\"\n",
    );
    std::env::set_var("HUBWATCH_TEST_DL", "dead.ndjson");
    let p = write(
        dir.path(),
        "c.toml",
        "query_files = [\"q.toml\"]\n[dead_letter]\npath = \"${HUBWATCH_TEST_DL}\"\n[[sources]]\ntype = \"file\"\nname = \"f\"\npaths = [\"in\"]\n",
    );
    let s = load(&p, &Schemas::embedded()).unwrap();
    assert_eq!(s.queries.len(), 1);
    assert_eq!(s.dead_letter.unwrap(), dir.path().join("dead.ndjson"));
    let SourceSettings::File { paths, .. } = &s.sources[0] else {
        panic!("a file source")
    };
    assert_eq!(paths[0], dir.path().join("in"));
}

#[test]
fn amqp_sources_take_their_settings_and_keep_the_key_out_of_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var(
        "HUBWATCH_TEST_EH",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0a2V5;EntityPath=insights",
    );
    let p = write(
        dir.path(),
        "c.toml",
        r#"[[sources]]
type = "amqp"
name = "eh"
connection_string = "${HUBWATCH_TEST_EH}"
consumer_group = "hubwatch"
start = "enqueued_time:2024-05-01T00:00:00Z"
owner_level = 0
prefetch = 500
batch_max_wait = "50ms"
reconnect_max = "10s"
lag_poll_interval = "1m"

[[sources]]
type = "amqp"
name = "entra"
fully_qualified_namespace = "ns.servicebus.windows.net"
custom_endpoint = "amqps://eh-private.example.internal:5671"
event_hub = "insights"
auth = "workload_identity"
start = "latest"
"#,
    );
    let s = load(&p, &Schemas::embedded()).unwrap();
    let SourceSettings::Amqp(a) = &s.sources[0] else {
        panic!("an amqp source")
    };
    assert_eq!(a.event_hub, "insights", "from EntityPath");
    assert_eq!(a.consumer_group, "hubwatch");
    assert_eq!(a.auth, Auth::ConnectionString);
    assert_eq!(
        a.start,
        StartPosition::EnqueuedTime(time::parse_datetime("2024-05-01T00:00:00Z").unwrap().0)
    );
    assert_eq!((a.owner_level, a.prefetch), (Some(0), 500));
    assert_eq!(a.batch_max_wait, Duration::from_millis(50));
    assert_eq!(a.reconnect.max, Duration::from_secs(10));
    assert_eq!(a.lag_poll_interval, Duration::from_secs(60));
    assert!(
        !format!("{s:?}").contains("c2VjcmV0a2V5"),
        "settings Debug redacts"
    );
    let SourceSettings::Amqp(b) = &s.sources[1] else {
        panic!("an amqp source")
    };
    assert_eq!(b.start, StartPosition::Latest);
    assert_eq!(
        b.custom_endpoint.as_deref(),
        Some("amqps://eh-private.example.internal:5671")
    );
    assert!(matches!(
        b.auth,
        Auth::Entra {
            kind: EntraKind::WorkloadIdentity,
            ..
        }
    ));

    let p = write(
        dir.path(),
        "bad.toml",
        r#"[[sources]]
type = "amqp"
name = "eh"
connection_string = "${HUBWATCH_TEST_EH}"
event_hub = "other"
start = "yesterday"
auth = "password"
batch_max_wait = "soon"
custom_endpoint = "https://eh.example"
"#,
    );
    let e = load(&p, &Schemas::embedded()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(
            "event_hub: 'other' differs from the connection string's EntityPath 'insights'"
        ),
        "{text}"
    );
    assert!(text.contains("start: 'yesterday'"), "{text}");
    assert!(text.contains("auth: 'password'"), "{text}");
    assert!(text.contains("batch_max_wait: 'soon'"), "{text}");
    assert!(
        text.contains("custom_endpoint: the scheme is https; use amqps://host[:port]"),
        "{text}"
    );
    for (endpoint, ok) in [
        ("amqps://eh.internal:5671", true),
        ("amqp://127.0.0.1:5672", true),
        ("amqp://localhost", true),
        ("amqp://[::1]:5672", true),
        ("amqp://eh.internal:5672", false),
        ("amqp://user:pw@10.0.0.4", false),
        ("not a url", false),
    ] {
        let checked = super::super::amqp::check_endpoint(endpoint);
        assert_eq!(checked.is_ok(), ok, "{endpoint}: {checked:?}");
        assert!(!format!("{checked:?}").contains("pw"), "{checked:?}");
    }
    assert!(!text.contains("c2VjcmV0a2V5"), "{text}");

    let p = write(
        dir.path(),
        "missing.toml",
        "[[sources]]\ntype = \"amqp\"\nname = \"eh\"\nevent_hub = \"h\"\nconnection_string = \"Endpoint=sb://x/;SharedAccessKey=k3yk3y\"\n",
    );
    let text = load(&p, &Schemas::embedded()).unwrap_err().to_string();
    assert!(text.contains("missing field `start`"), "{text}");
    let p = write(
        dir.path(),
        "unknown.toml",
        "[[sources]]\ntype = \"amqp\"\nname = \"eh\"\nstart = \"latest\"\npartitions = 4\n",
    );
    let text = load(&p, &Schemas::embedded()).unwrap_err().to_string();
    assert!(text.contains("unknown field `partitions`"), "{text}");
    let p = write(
        dir.path(),
        "nokey.toml",
        "[[sources]]\ntype = \"amqp\"\nname = \"eh\"\nevent_hub = \"h\"\nstart = \"earliest\"\nconnection_string = \"Endpoint=sb://x/;SharedAccessKey=k3yk3y\"\n",
    );
    let text = load(&p, &Schemas::embedded()).unwrap_err().to_string();
    assert!(text.contains("connection_string: neither"), "{text}");
    assert!(!text.contains("k3yk3y"), "{text}");
}

#[test]
fn kafka_sources_take_their_settings_and_keep_secrets_out_of_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var(
        "HUBWATCH_TEST_KAFKA_EH",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0a2V5",
    );
    std::env::set_var("HUBWATCH_TEST_KAFKA_PW", "scr4mpassw0rd");
    let p = write(
        dir.path(),
        "k.toml",
        r#"[[sources]]
type = "kafka"
name = "eh"
connection_string = "${HUBWATCH_TEST_KAFKA_EH}"
topics = ["insights-logs-amlcomputeclusterevent", "insights-logs-amlcomputejobevent"]
group_id = "hubwatch"
start = "earliest"
session_timeout = "10s"
commit_interval = "5s"
batch_max_events = 64

[[sources]]
type = "kafka"
name = "onprem"
bootstrap_servers = "k1:9092,k2:9092"
security_protocol = "sasl_ssl"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "svc"
sasl_password = "${HUBWATCH_TEST_KAFKA_PW}"
topics = ["logs"]
group_id = "g"
start = "latest"
properties = { "fetch.max.bytes" = "1048576" }

[[sources]]
type = "kafka"
name = "entra"
fully_qualified_namespace = "ns.servicebus.windows.net"
auth = "workload_identity"
topics = ["insights"]
group_id = "g"
start = "earliest"
"#,
    );
    let s = load(&p, &Schemas::embedded()).unwrap();
    let SourceSettings::Kafka(a) = &s.sources[0] else {
        panic!("a kafka source")
    };
    let props = a.client_properties();
    assert_eq!(
        props.get("bootstrap.servers"),
        Some("ns.servicebus.windows.net:9093")
    );
    assert_eq!(props.get("sasl.username"), Some("$ConnectionString"));
    assert_eq!(a.topics.len(), 2);
    assert_eq!(a.session_timeout, Duration::from_secs(10));
    assert_eq!(a.commit_interval, Duration::from_secs(5));
    assert_eq!(a.batch_max_events, 64);
    let SourceSettings::Kafka(b) = &s.sources[1] else {
        panic!("a kafka source")
    };
    let props = b.client_properties();
    assert_eq!(props.get("security.protocol"), Some("SASL_SSL"));
    assert_eq!(props.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
    assert_eq!(props.get("sasl.password"), Some("scr4mpassw0rd"));
    assert_eq!(props.get("auto.offset.reset"), Some("latest"));
    assert_eq!(props.get("fetch.max.bytes"), Some("1048576"));
    let SourceSettings::Kafka(c) = &s.sources[2] else {
        panic!("a kafka source")
    };
    assert_eq!(
        c.client_properties().get("sasl.mechanism"),
        Some("OAUTHBEARER")
    );
    let shown = format!("{s:?}");
    assert!(!shown.contains("c2VjcmV0a2V5"), "{shown}");
    assert!(!shown.contains("scr4mpassw0rd"), "{shown}");

    let p = write(
        dir.path(),
        "bad.toml",
        r#"[[sources]]
type = "kafka"
name = "eh"
connection_string = "${HUBWATCH_TEST_KAFKA_EH}"
bootstrap_servers = "x:9092"
sasl_password = "${HUBWATCH_TEST_KAFKA_PW}"
topics = []
group_id = "g"
start = "yesterday"
batch_max_wait = "soon"
"#,
    );
    let text = load(&p, &Schemas::embedded()).unwrap_err().to_string();
    assert!(text.contains("connection: set exactly one of"), "{text}");
    assert!(text.contains("topics: name at least one"), "{text}");
    assert!(text.contains("start: 'yesterday'"), "{text}");
    assert!(text.contains("batch_max_wait: 'soon'"), "{text}");
    assert!(!text.contains("c2VjcmV0a2V5"), "{text}");
    assert!(!text.contains("scr4mpassw0rd"), "{text}");

    let p = write(
        dir.path(),
        "sas.toml",
        "[[sources]]\ntype = \"kafka\"\nname = \"eh\"\ntopics = [\"t\"]\ngroup_id = \"g\"\nstart = \"earliest\"\nconnection_string = \"Endpoint=sb://ns/;SharedAccessSignature=SharedAccessSignature sr=a&sig=s3cr3tsig&se=1&skn=k\"\n",
    );
    let text = load(&p, &Schemas::embedded()).unwrap_err().to_string();
    assert!(
        text.contains("does not accept a SharedAccessSignature"),
        "{text}"
    );
    assert!(!text.contains("s3cr3tsig"), "{text}");
}

/// A shipped example configuration, with its connection string in the environment.
fn load_example(name: &str) -> Settings {
    std::env::set_var(
        "EVENTHUB_CONNECTION_STRING",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=l;SharedAccessKey=k;EntityPath=insights",
    );
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/config")
        .join(name);
    load(&p, &Schemas::embedded()).unwrap()
}

#[test]
fn the_kafka_example_config_loads() {
    let s = load_example("eventhubs-kafka.toml");
    let SourceSettings::Kafka(k) = &s.sources[0] else {
        panic!("a kafka source")
    };
    assert_eq!(k.topics.len(), 4);
    assert_eq!(k.group_id, "hubwatch");
    assert_eq!(
        k.client_properties().get("bootstrap.servers"),
        Some("ns.servicebus.windows.net:9093")
    );
}

#[test]
fn the_event_hubs_example_config_loads() {
    let s = load_example("eventhubs.toml");
    let SourceSettings::Amqp(a) = &s.sources[0] else {
        panic!("an amqp source")
    };
    assert_eq!(
        (a.event_hub.as_str(), a.consumer_group.as_str()),
        ("insights", "$Default")
    );
}

#[test]
fn the_replicas_example_config_loads() {
    std::env::set_var(
        "AZURE_STORAGE_CONNECTION_STRING",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
    );
    std::env::set_var("POD_NAME", "hubwatch-1");
    let s = load_example("eventhubs-replicas.toml");
    let SourceSettings::Amqp(a) = &s.sources[0] else {
        panic!("an amqp source")
    };
    assert_eq!(a.ownership.owner_id, "hubwatch-1");
    assert_eq!(a.ownership.expiry, Duration::from_secs(60));
    let cp = s.checkpoint.unwrap();
    assert!(cp.global_results);
    let StoreSettings::Blob(b) = &cp.store else {
        panic!("a blob store")
    };
    assert_eq!(
        b.container().unwrap().url(),
        "https://acct.blob.core.windows.net/hubwatch"
    );
}

#[test]
fn checkpoints_go_to_a_directory_or_a_blob_container_and_secrets_stay_out_of_errors() {
    let dir = tempfile::tempdir().unwrap();
    let query = "[[queries]]\nname = \"n\"\nkql = \"AmlComputeClusterEvent | count\"\n";
    let load_text = |text: &str| {
        load(
            &write(dir.path(), "c.toml", &format!("{text}{query}")),
            &Schemas::embedded(),
        )
    };

    let s = load_text("[checkpoint]\ndir = \"cp\"\ninterval = \"2s\"\n").unwrap();
    let cp = s.checkpoint.unwrap();
    assert_eq!(cp.interval, Duration::from_secs(2));
    assert!(matches!(&cp.store, StoreSettings::Dir(d) if d == &dir.path().join("cp")));

    let key = "c2VjcmV0LWtleS10ZXh0LXRoYXQtc2hvdWxkLW5vdC1zaG93";
    std::env::set_var("HUBWATCH_TEST_STORAGE_CS", format!(
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key};EndpointSuffix=core.windows.net"
    ));
    let s = load_text(
        "[checkpoint]\n[checkpoint.blob]\nconnection_string = \"${HUBWATCH_TEST_STORAGE_CS}\"\ncontainer = \"checkpoints\"\n",
    )
    .unwrap();
    let cp = s.checkpoint.unwrap();
    let StoreSettings::Blob(b) = &cp.store else {
        panic!("{cp:?}")
    };
    assert_eq!(b.prefix, "hubwatch");
    assert_eq!(b.timeout, Duration::from_secs(30));
    assert_eq!(cp.interval, Duration::from_secs(5));
    assert!(!format!("{cp:?}").contains(key), "{cp:?}");
    assert_eq!(
        b.container().unwrap().url(),
        "https://acct.blob.core.windows.net/checkpoints"
    );

    let sig = "c2lnbmF0dXJlLXRoYXQtbXVzdC1ub3Qtc2hvdw";
    let s = load_text(&format!(
        "[checkpoint]\n[checkpoint.blob]\ncontainer_url = \"https://acct.blob.core.windows.net/c1?sv=2021&sig={sig}\"\nprefix = \"/hw/\"\n"
    ))
    .unwrap();
    let cp = s.checkpoint.unwrap();
    assert!(!format!("{cp:?}").contains(sig), "{cp:?}");
    let StoreSettings::Blob(b) = &cp.store else {
        panic!()
    };
    assert_eq!(b.prefix, "hw");
    assert!(matches!(&b.access, BlobAccess::Url { entra: None, .. }));
    let s = load_text(
        "[checkpoint]\n[checkpoint.blob]\ncontainer_url = \"https://acct.blob.core.windows.net/c1\"\nauth = \"workload_identity\"\n",
    )
    .unwrap();
    let StoreSettings::Blob(b) = &s.checkpoint.unwrap().store else {
        panic!()
    };
    assert!(matches!(
        &b.access,
        BlobAccess::Url {
            entra: Some((EntraKind::WorkloadIdentity, None)),
            ..
        }
    ));

    // Every mistake at once, none quoting a secret.
    let e = load_text(&format!(
        "[checkpoint]\ndir = \"x\"\ninterval = \"often\"\n[checkpoint.blob]\nconnection_string = \"AccountName=a;AccountKey={key}\"\ncontainer = \"Bad_Name\"\nauth = \"managed_identity\"\n"
    ))
    .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("checkpoint.interval: 'often'"), "{text}");
    assert!(text.contains("not both"), "{text}");
    assert!(
        text.contains("checkpoint.blob.container: 'Bad_Name'"),
        "{text}"
    );
    assert!(text.contains("checkpoint.blob.auth"), "{text}");
    assert!(!text.contains(key), "{text}");
    let e = load_text("[checkpoint]\n").unwrap_err();
    assert!(e.to_string().contains("checkpoint.dir: missing"), "{e}");
    let e = load_text(&format!(
        "[checkpoint]\n[checkpoint.blob]\ncontainer_url = \"ftp://x/c?sig={sig}\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("not an http(s) URL"), "{e}");
    assert!(!e.to_string().contains(sig), "{e}");
}

#[test]
fn routes_take_row_pipelines_to_named_sinks_and_every_mistake_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "c.toml",
        r#"[[sinks]]
type = "file"
name = "siem"
path = "out/routed.ndjson"

[[routes]]
name = "failed"
sinks = ["siem"]
kql = "AmlComputeJobEvent | where EventType == 'JobFailed' | project TimeGenerated, ClusterName"

[[routes]]
name = "counted"
sinks = ["siem"]
kql = "AmlComputeJobEvent | summarize n = count()"

[[routes]]
name = "few"
sinks = ["nowhere"]
kql = "AmlComputeJobEvent | take 5"

[[routes]]
name = "bad"
sinks = []
kql = '''
AmlComputeJobEvent
| where Nope > 1'''
"#,
    );
    let e = load(&p, &Schemas::embedded()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("route 'counted': a route forwards rows one by one: put the `summarize` in a [[queries]] entry and route its results with `query = \"<its name>\"`"),
        "{text}"
    );
    assert!(
        text.contains("route 'few': no sink is named 'nowhere'"),
        "{text}"
    );
    assert!(
        text.contains("route 'few': a route forwards every matching row"),
        "{text}"
    );
    assert!(
        text.contains("route 'bad': name at least one sink"),
        "{text}"
    );
    assert!(
        text.contains("c.toml:26:9: route 'bad': unknown column 'Nope'"),
        "{text}"
    );
    assert_eq!(e.0.len(), 5, "{text}");

    let ok = write(
        dir.path(),
        "ok.toml",
        "[[sinks]]\ntype = \"file\"\nname = \"siem\"\npath = \"out/routed.ndjson\"\n\
         [[routes]]\nname = \"failed\"\nsinks = [\"siem\"]\nkql = \"AmlComputeJobEvent | where EventType == 'JobFailed'\"\n",
    );
    let s = load(&ok, &Schemas::embedded()).unwrap();
    assert_eq!(s.routes.len(), 1);
    assert_eq!(s.routes[0].sinks, vec![0]);
    assert!(
        matches!(&s.sinks[0], crate::config::SinkSettings::File { path, .. } if path == &dir.path().join("out/routed.ndjson"))
    );
}

#[test]
fn a_route_may_name_a_binned_query_whose_results_go_out_and_other_uses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sinks = "[[sinks]]\ntype = \"file\"\nname = \"siem\"\npath = \"routed.ndjson\"\n";
    let queries = r#"
[[queries]]
name = "failures"
kql = "AmlComputeJobEvent | where EventType == 'JobFailed' | summarize n = count() by bin(TimeGenerated, 5m), ClusterName | where n > 2"
[[queries]]
name = "total"
kql = "AmlComputeJobEvent | summarize n = count() by ClusterName"
[[queries]]
name = "recent"
kql = "AmlComputeJobEvent | where TimeGenerated > ago(1h) | project ClusterName"
[[queries]]
name = "broken"
kql = "AmlComputeJobEvent | summarize n = count() by bin(Nope, 5m)"
"#;
    let p = write(
        dir.path(),
        "c.toml",
        &format!(
            r#"{sinks}{queries}
[[routes]]
name = "alerts"
sinks = ["siem"]
query = "failures"
sourcetype = "hubwatch:alert"
nulls = "keep"

[[routes]]
name = "totals"
sinks = ["siem"]
query = "total"

[[routes]]
name = "rows"
sinks = ["siem"]
query = "recent"

[[routes]]
name = "missing"
sinks = ["siem"]
query = "nope"

[[routes]]
name = "after_broken"
sinks = ["siem"]
query = "broken"

[[routes]]
name = "both"
sinks = ["siem"]
query = "failures"
kql = "AmlComputeJobEvent"

[[routes]]
name = "neither"
sinks = ["siem"]

[[routes]]
name = "records"
sinks = ["siem"]
query = "failures"
output = "record"
"#
        ),
    );
    let e = load(&p, &Schemas::embedded()).unwrap_err();
    let text = e.to_string();
    for want in [
        "route 'totals': query 'total' cannot be routed: its result never closes",
        "route 'rows': query 'recent' cannot be routed: it has no `summarize`",
        "route 'missing': no query is named 'nope' (define it under [[queries]])",
        "route 'both': give either `kql` (rows of tables) or `query` (a query's results), not both",
        "route 'neither': give `kql` (the rows of which tables) or `query`",
        "route 'records': output = \"record\": a query's result rows have no record",
        "query 'broken': unknown column 'Nope'",
    ] {
        assert!(text.contains(want), "{want}\nnot in\n{text}");
    }
    assert_eq!(
        e.0.len(),
        7,
        "the broken query is reported once, not again by its route: {text}"
    );

    let ok = write(
        dir.path(),
        "ok.toml",
        &format!(
            "{sinks}{}\n[[routes]]\nname = \"alerts\"\nsinks = [\"siem\"]\nquery = \"failures\"\nsourcetype = \"hubwatch:alert\"\nnulls = \"keep\"\n",
            &queries[..queries.find("[[queries]]\nname = \"total\"").unwrap()]
        ),
    );
    let s = load(&ok, &Schemas::embedded()).unwrap();
    assert_eq!(s.routes.len(), 1);
    let r = &s.routes[0];
    assert_eq!(r.results, Some(0));
    assert!(r.nulls);
    assert!(r.meta.sourcetype.is_some());
    assert_eq!(
        r.plan.output.iter().map(|c| &*c.name).collect::<Vec<_>>(),
        ["TimeGenerated", "ClusterName", "n"]
    );
}

#[test]
fn a_union_route_compiles_per_table_and_an_error_names_the_table_and_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "u.toml",
        r#"[[sinks]]
type = "file"
name = "siem"
path = "out/routed.ndjson"

[[routes]]
name = "errors"
sinks = ["siem"]
kql = "union AmlComputeJobEvent, AzureActivity | where ClusterName != ''"

[[routes]]
name = "none"
sinks = ["siem"]
kql = "union Nothing*"

[[routes]]
name = "every"
sinks = ["siem"]
kql = "* | where Level == 'Error'"
"#,
    );
    let text = load(&p, &Schemas::embedded()).unwrap_err().to_string();
    // AzureActivity has no ClusterName; AmlComputeJobEvent compiles.
    assert!(
        text.contains(
            "u.toml:9:56: route 'errors' (over AzureActivity): unknown column 'ClusterName'"
        ),
        "{text}"
    );
    assert!(!text.contains("over AmlComputeJobEvent"), "{text}");
    assert!(
        text.contains("route 'none': `union Nothing*`: no table's name matches"),
        "{text}"
    );
    assert!(
        text.contains("route 'every': a route over every record (`*`) takes no pipeline"),
        "{text}"
    );

    let ok = write(
        dir.path(),
        "ok.toml",
        "[[sinks]]\ntype = \"file\"\nname = \"siem\"\npath = \"out/routed.ndjson\"\n\
         [[routes]]\nname = \"aml\"\nsinks = [\"siem\"]\nkql = \"union Aml*\"\n\
         [[routes]]\nname = \"every\"\nsinks = [\"siem\"]\nkql = \"*\"\noutput = \"record\"\n",
    );
    let s = load(&ok, &Schemas::embedded()).unwrap();
    assert_eq!(
        crate::cli::describe_routes(&s),
        [
            "route aml: 20 tables -> siem",
            "route every: every record, original records -> siem"
        ]
    );
    let aml = s.routes.iter().filter(|r| &*r.name == "aml").count();
    assert_eq!(aml, 20, "one pipeline per Aml* table");
    assert!(s.routes.iter().filter(|r| &*r.name == "every").count() > aml);
    assert_eq!(
        s.routes.iter().filter(|r| r.unknown).count(),
        1,
        "one of them takes unknown categories"
    );
    assert!(s.routes.iter().all(|r| &*r.name != "aml" || !r.unknown));
}

/// A variable that is not set: one error per value, at the line and column of its `${`,
/// naming the key and the variable (never a value), listed first in the order of the file;
/// and nothing else said about the field (no "event_hub is required", no "set exactly one
/// of connection_string …", no "give connection_string and container"), while unrelated
/// mistakes in the same tables are still reported.
#[test]
fn a_missing_variable_is_one_error_at_its_place_and_brings_no_knock_on_error() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("HUBWATCH_TEST_SET_SECRET", "s3cret-value-5d1e");
    let p = write(
        dir.path(),
        "c.toml",
        r#"query_files = ["${HUBWATCH_TEST_UNSET_QF}.toml"]
[export]
listen = "${HUBWATCH_TEST_UNSET_LISTEN:-127.0.0.1:9393}"
[dead_letter]
path = "${HUBWATCH_TEST_UNSET_DL}/dead.ndjson"

[checkpoint]
[checkpoint.blob]
connection_string = "${HUBWATCH_TEST_UNSET_STORAGE}"
container = "${HUBWATCH_TEST_UNSET_CONTAINER}"

[[sources]]
type = "amqp"
name = "eh"
connection_string = "${HUBWATCH_TEST_SET_SECRET};${HUBWATCH_TEST_UNSET_EH}"
start = "earliest"

[[sources]]
type = "amqp"
name = "entra"
fully_qualified_namespace = "${HUBWATCH_TEST_UNSET_NS}"
auth = "workload_identity"
event_hub = "${HUBWATCH_TEST_UNSET_HUB}"
start = "soon"

[[sources]]
type = "kafka"
name = "k"
topics = ["a", "${HUBWATCH_TEST_UNSET_TOPIC}"]
group_id = "${HUBWATCH_TEST_UNSET_GROUP}"
bootstrap_servers = "${HUBWATCH_TEST_UNSET_SERVERS}"
security_protocol = "sasl_ssl"
sasl_username = "u"
sasl_password = "${HUBWATCH_TEST_UNSET_PASSWORD}"
start = "earliest"

[[sources]]
type = "kafka"
name = "k2"
topics = ["a"]
group_id = "g"
connection_string = "${HUBWATCH_TEST_UNSET_EH}"
start = "earliest"
"#,
    );
    let e = load(&p, &Schemas::embedded()).unwrap_err();
    let f = p.display().to_string();
    let unset = |at: &str, key: &str, var: &str| {
        format!("{f}:{at}: {key}: environment variable HUBWATCH_TEST_UNSET_{var} is not set")
    };
    assert_eq!(
        e.0,
        [
            unset("1:17", "query_files[0]", "QF"),
            unset("5:9", "dead_letter.path", "DL"),
            unset("9:22", "checkpoint.blob.connection_string", "STORAGE"),
            unset("10:14", "checkpoint.blob.container", "CONTAINER"),
            unset("15:50", "sources[0] 'eh': connection_string", "EH"),
            unset("21:30", "sources[1] 'entra': fully_qualified_namespace", "NS"),
            unset("23:14", "sources[1] 'entra': event_hub", "HUB"),
            unset("29:17", "sources[2] 'k': topics[1]", "TOPIC"),
            unset("30:13", "sources[2] 'k': group_id", "GROUP"),
            unset("31:22", "sources[2] 'k': bootstrap_servers", "SERVERS"),
            unset("34:18", "sources[2] 'k': sasl_password", "PASSWORD"),
            unset("42:22", "sources[3] 'k2': connection_string", "EH"),
            // Unrelated to the variables: still said.
            format!("{f}: sources[1] 'entra': start: 'soon' is not earliest, latest, sequence_number:<n> or enqueued_time:<RFC 3339>"),
        ],
        "{e}"
    );
    assert!(!e.to_string().contains("s3cret-value-5d1e"), "{e}");
}

#[test]
fn max_future_is_a_timespan_longer_than_0_and_1h_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let max_future = |limits: &str| {
        let p = write(dir.path(), "c.toml", &format!("[limits]\n{limits}\n"));
        load(&p, &Schemas::embedded()).map(|s| s.engine.max_future)
    };
    assert_eq!(max_future("").unwrap(), time::TICKS_PER_HOUR);
    assert_eq!(
        max_future("max_future = \"90m\"").unwrap(),
        90 * time::TICKS_PER_MINUTE
    );
    assert_eq!(
        max_future("max_future = \"2d\"").unwrap(),
        2 * time::TICKS_PER_DAY
    );
    let text = max_future("max_future = \"0s\"").unwrap_err().to_string();
    assert!(
        text.contains("limits.max_future: must be longer than 0"),
        "{text}"
    );
    let text = max_future("max_future = \"later\"")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("limits.max_future: 'later' is not a timespan"),
        "{text}"
    );
    // A number is not taken as seconds: the place is shown.
    let text = max_future("max_future = 3600").unwrap_err().to_string();
    assert!(text.contains("c.toml:2:14: invalid type"), "{text}");
}
