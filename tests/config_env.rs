//! `hubwatch check` with `${VAR}`s that are not set, as a newcomer meets it: each missing
//! variable once, at `file:line:column`, naming the key and the variable, and no error that
//! only follows from it; never a value. Exit status 2.

use std::process::Command;

const CONFIG: &str = r#"[[sources]]
type = "amqp"
name = "insights"
connection_string = "${HW_CHECK_UNSET_EVENTHUB}"
start = "earliest"

[[sinks]]
type = "splunk_hec"
name = "splunk"
endpoint = "https://splunk.example.com:8088"
token = "${HW_CHECK_SET_TOKEN}"

[[sinks]]
type = "elasticsearch"
name = "elastic"
endpoint = "https://es.example.com:9200"
api_key = "${HW_CHECK_UNSET_ES}"
"#;

#[test]
fn check_names_each_missing_variable_with_its_place_and_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hubwatch.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hubwatch"))
        .args(["check", "--config"])
        .arg(&config)
        .env_remove("HW_CHECK_UNSET_EVENTHUB")
        .env_remove("HW_CHECK_UNSET_ES")
        .env("HW_CHECK_SET_TOKEN", "hec-token-value-4f1a")
        .env_remove("RUST_LOG")
        .output()
        .expect("run hubwatch check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let f = config.display();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "2 errors in the configuration:\n\
             {f}:4:22: sources[0] 'insights': connection_string: environment variable HW_CHECK_UNSET_EVENTHUB is not set\n\
             {f}:17:12: sink 'elastic': api_key: environment variable HW_CHECK_UNSET_ES is not set\n"
        )
    );
    assert!(!stderr.contains("hec-token-value-4f1a"));
    assert!(out.stdout.is_empty());
}
