//! The operators Log Analytics users add to their queries (`let` values, tables and
//! functions, `sort`/`order by`, `top`, `distinct`, `project-rename`, `render`, `union`, the
//! join kinds, `lookup`, `parse`, `mv-expand`, `* contains`, a second `summarize`, and the
//! functions and aggregations of the samples), verbatim over the golden fixtures: the
//! answers, in their order where it is defined, equal the independent Python oracle's
//! (`breadth_answers` in `tests/fixtures/gen_fixtures.py`), through the library, the `query`
//! command and the running service; and the gallery's queries of the AML tables give what
//! Log Analytics gives.

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

/// The gallery's queries of the AML tables, verbatim (`tests/fixtures/gallery/`), give what
/// Log Analytics would give on the fixture (`gallery_answers` in the oracle): the same rows,
/// or for `limit 100` of more rows, 100 of them.
#[test]
fn gallery_queries_of_the_aml_tables_give_log_analytics_answers() {
    let limits = QueryLimits {
        max_series: 100_000,
        max_rows: 100_000,
        ..QueryLimits::default()
    };
    let dir = repo().join("tests/expected/gallery");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let want: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let kql =
            std::fs::read_to_string(repo().join(format!("tests/fixtures/gallery/{name}.kql")))
                .unwrap();
        // As the query command runs it: every bin waits for the whole input.
        let opts = EngineOptions {
            allowed_lateness: i64::MAX,
            ..EngineOptions::default()
        };
        let (result, _) = hubwatch::cli::run_query(&kql, &[fixture()], limits.clone(), opts)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let library: Value = serde_json::from_str(&format::json(&result)).unwrap();
        for got in [library, query_command(&name, &kql)] {
            match (want.get("rows"), want.get("any_of")) {
                (Some(rows), _) if rows.as_array().unwrap().is_empty() => {
                    assert_eq!(got, Value::Array(vec![]), "{name}: rows where none are due")
                }
                (Some(rows), _) => assert_same_rows(&name, &got, rows),
                (None, Some(all)) => {
                    let count = want["count"].as_u64().unwrap() as usize;
                    let got = got.as_array().unwrap();
                    assert_eq!(got.len(), count, "{name}: 'limit' rows");
                    let mut pool: Vec<String> = all
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| canonical(r).to_string())
                        .collect();
                    for row in got {
                        let row = canonical(row).to_string();
                        let at = pool.iter().position(|x| *x == row).unwrap_or_else(|| {
                            panic!("{name}: {row} is none of the matching rows")
                        });
                        pool.swap_remove(at);
                    }
                }
                _ => panic!("{name}: an expected answer of neither kind"),
            }
        }
        checked += 1;
    }
    assert_eq!(
        checked, 6,
        "one answer per gallery query of the AML tables with rows here"
    );
}
