//! The operators Log Analytics users add to their queries (`let`, `sort`/`order by`,
//! `top`, `distinct`, `project-rename`, `render`), verbatim over the golden fixtures: the answers, in their
//! order, equal the independent Python oracle's (`breadth_answers` in
//! `tests/fixtures/gen_fixtures.py`), through the library, the `query` command and the
//! running service.

mod common;

use std::time::Duration;

use common::*;
use hubwatch::export::format;
use hubwatch::pipeline::EngineOptions;
use hubwatch::window::QueryLimits;
use serde_json::Value;

fn compare(name: &str, ordered: bool, got: &Value) {
    if ordered {
        assert_same_rows_in_order(name, got, &expected(name));
    } else {
        assert_same_rows(name, got, &expected(name));
    }
}

#[test]
fn through_the_library_and_the_query_command() {
    let limits = QueryLimits {
        max_series: 100_000,
        max_rows: 100_000,
        ..QueryLimits::default()
    };
    for (name, kql, ordered) in breadth_queries() {
        let (result, _) =
            hubwatch::cli::run_query(&kql, &[fixture()], limits.clone(), EngineOptions::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got: Value = serde_json::from_str(&format::json(&result)).unwrap();
        compare(&name, ordered, &got);

        compare(&name, ordered, &query_command(&name, &kql));
    }
}

#[test]
fn through_the_running_service_with_the_chart_as_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[export]\nlisten = \"127.0.0.1:0\"\n[limits]\nmax_rows = 100000\n\
         [[sources]]\ntype = \"file\"\nname = \"golden\"\npaths = [{:?}]\n",
        fixture().display().to_string()
    );
    for (name, kql, _) in breadth_queries() {
        text.push_str(&format!(
            "[[queries]]\nname = \"{name}\"\nkql = '''\n{kql}'''\n"
        ));
    }
    let config = dir.path().join("hubwatch.toml");
    std::fs::write(&config, text).unwrap();
    let mut svc = Service::start(&config);
    svc.wait_for_line("all sources finished", Duration::from_secs(60));
    for (name, _, ordered) in breadth_queries() {
        let (status, body) = svc.get(&format!("/api/v1/queries/{name}"));
        assert_eq!(status, 200, "{name}: {body}");
        compare(&name, ordered, &serde_json::from_str(&body).unwrap());
    }
    let (_, all) = svc.get("/api/v1/queries");
    let all: Value = serde_json::from_str(&all).unwrap();
    let render: Vec<(&str, &Value)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (q["name"].as_str().unwrap(), &q["render"]))
        .collect();
    assert!(
        render.contains(&("top_clusters_8d", &Value::from("barchart"))),
        "{render:?}"
    );
    assert!(
        render.contains(&("recent_failures_5d", &Value::Null)),
        "{render:?}"
    );
    // Every query is exported too (a `distinct` has no value column: no gauge, no error).
    let (status, metrics) = svc.get("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("top_clusters_8d_events{"), "{metrics}");
    svc.terminate(Duration::from_secs(20));
}
