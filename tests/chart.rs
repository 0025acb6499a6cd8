//! The Helm chart (deploy/helm/hubwatch), checked offline with real tools: the Helm SDK
//! lints and renders it with several value sets, kubernetes-validate checks every manifest
//! against the supported Kubernetes versions, this build's `hubwatch check` reads the
//! configuration the chart renders, and promtool the PrometheusRule
//! (tests/helm/check_chart.py says what else). Needs the .venv packages and promtool that
//! scripts/setup-test-deps.sh installs; fails loudly without them.

mod common;

use common::*;

#[test]
fn the_chart_renders_valid_manifests_and_configuration() {
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-test-deps.sh",
        python.display()
    );
    let promtool = which("promtool");
    let out = std::process::Command::new(&python)
        .arg(repo().join("tests/helm/check_chart.py"))
        .arg(env!("CARGO_BIN_EXE_hubwatch"))
        .arg(&promtool)
        .current_dir(repo())
        .output()
        .expect("run tests/helm/check_chart.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Helm logs each symbolic link it follows (the chart's files/ point at deploy/): noise.
    let stderr: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains("found symbolic link"))
        .collect::<Vec<_>>()
        .join("\n");
    println!("{stdout}");
    assert!(
        out.status.success(),
        "chart checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("chart OK:"), "{stdout}");
}
