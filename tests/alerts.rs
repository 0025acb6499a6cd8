//! The Prometheus alert pack, deploy/prometheus/hubwatch-alerts.yml: promtool accepts it
//! and its unit tests pass; every alert carries what the person paged needs (a severity, a
//! summary, a description, a runbook link) and has a firing and a silent case in the unit
//! tests; and every runbook link lands on a section of README.md.
//!
//! Needs `promtool` and a Python with PyYAML (scripts/setup-test-deps.sh installs both;
//! the project has no YAML crate, so Python turns the YAML into JSON). The tests fail
//! loudly without them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

use common::*;

const ALERTS: &str = "deploy/prometheus/hubwatch-alerts.yml";
const ALERT_TESTS: &str = "deploy/prometheus/hubwatch-alerts.test.yml";
const RUNBOOKS: &str = "https://github.com/hubwatch/hubwatch/blob/main/README.md#";
const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

#[test]
fn the_alerts_pass_promtool_check_and_their_unit_tests() {
    promtool(&["check", "rules", "--lint=all", "--lint-fatal", ALERTS]);
    promtool(&["test", "rules", ALERT_TESTS]);
}

#[test]
fn every_alert_is_annotated_and_has_a_firing_and_a_silent_test() {
    let alerts = alerts();
    assert!(alerts.len() >= 20, "the pack: {:?}", alerts.keys());

    let mut problems = Vec::new();
    for (name, rule) in &alerts {
        let severity = rule["labels"]["severity"].as_str().unwrap_or("");
        if !SEVERITIES.contains(&severity) {
            problems.push(format!(
                "{name}: severity {severity:?}, not one of {SEVERITIES:?}"
            ));
        }
        for key in ["summary", "description"] {
            if rule["annotations"][key]
                .as_str()
                .unwrap_or("")
                .trim()
                .is_empty()
            {
                problems.push(format!("{name}: no {key} annotation"));
            }
        }
        let want = format!("{RUNBOOKS}{}", runbook_anchor(name));
        let url = rule["annotations"]["runbook_url"].as_str().unwrap_or("");
        if url != want {
            problems.push(format!("{name}: runbook_url {url:?}, expected {want:?}"));
        }
    }

    // What the unit tests expect of each alert: (alert, fires) pairs.
    let tests = yaml_as_json(ALERT_TESTS);
    let mut cases: BTreeSet<(String, bool)> = BTreeSet::new();
    for test in tests["tests"].as_array().expect("tests: a list") {
        for case in test["alert_rule_test"].as_array().into_iter().flatten() {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            let fires = case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
            if !alerts.contains_key(&name) {
                // promtool would pass a silent case for a name that does not exist.
                problems.push(format!(
                    "{ALERT_TESTS}: a case for {name}, which is no alert"
                ));
            }
            cases.insert((name, fires));
        }
    }
    for name in alerts.keys() {
        if !cases.contains(&(name.clone(), true)) {
            problems.push(format!("{name}: no unit test where it fires"));
        }
        if !cases.contains(&(name.clone(), false)) {
            problems.push(format!("{name}: no unit test where it stays silent"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Until the "Alerts and runbooks" section is in README.md (one `### Runbook: <Alert>`
/// heading per alert), this fails and names the missing sections.
#[test]
fn every_runbook_link_lands_on_a_readme_section() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let anchors = github_anchors(&readme);
    let missing: Vec<String> = alerts()
        .keys()
        .filter(|name| !anchors.contains(&runbook_anchor(name)))
        .map(|name| format!("### Runbook: {name}  (#{})", runbook_anchor(name)))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md lacks the runbook sections the alerts link to:\n{}",
        missing.join("\n")
    );
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    let text = "# hubwatch\n## Scale-out: several replicas\n### Runbook: HubwatchNotIngesting\n\
                ```sh\n# not a heading\n```\n## Metrics\n## Metrics\n";
    let anchors = github_anchors(text);
    for a in [
        "hubwatch",
        "scale-out-several-replicas",
        "runbook-hubwatchnotingesting",
        "metrics",
        "metrics-1",
    ] {
        assert!(anchors.contains(a), "{a} in {anchors:?}");
    }
    assert!(!anchors.contains("not-a-heading"), "{anchors:?}");
}

/// The anchor of the heading `### Runbook: <name>`.
fn runbook_anchor(name: &str) -> String {
    format!("runbook-{}", name.to_lowercase())
}

/// The alerting rules by name (a name used twice fails).
fn alerts() -> BTreeMap<String, Value> {
    let rules = yaml_as_json(ALERTS);
    let mut alerts = BTreeMap::new();
    for group in rules["groups"].as_array().expect("groups: a list") {
        for rule in group["rules"].as_array().expect("rules: a list") {
            let name = rule["alert"]
                .as_str()
                .expect("only alerting rules")
                .to_string();
            assert!(
                alerts.insert(name.clone(), rule.clone()).is_none(),
                "{name} is defined twice"
            );
        }
    }
    alerts
}

/// The anchors GitHub gives a Markdown file's headings: lower case, punctuation other than
/// `-` and `_` dropped, spaces as `-`, and `-1`, `-2`, ... for repeats. Fenced code blocks
/// hold no headings.
fn github_anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if fenced || !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug: String = line[hashes..]
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        anchors.insert(if *n == 0 { slug } else { format!("{slug}-{n}") });
        *n += 1;
    }
    anchors
}

/// A YAML file of the repository as JSON, through Python's PyYAML: the venv's Python
/// (scripts/setup-test-deps.sh installs PyYAML there), else the system's.
fn yaml_as_json(path: &str) -> Value {
    const TO_JSON: &str =
        "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)";
    let venv = repo().join(".venv/bin/python");
    let mut tried = Vec::new();
    for python in [venv.display().to_string(), "python3".to_string()] {
        match Command::new(&python)
            .args(["-c", TO_JSON, path])
            .current_dir(repo())
            .output()
        {
            Ok(out) if out.status.success() => {
                return serde_json::from_slice(&out.stdout)
                    .unwrap_or_else(|e| panic!("{path} as JSON: {e}"));
            }
            Ok(out) => tried.push(format!(
                "{python}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => tried.push(format!("{python}: {e}")),
        }
    }
    panic!(
        "no Python with PyYAML to read {path}: run scripts/setup-test-deps.sh (the test command does)\n{}",
        tried.join("\n")
    );
}
