//! hubwatch's KQL checker against Microsoft's own: Kusto.Language (the npm package
//! `@kusto/language-service-next`, run by `tools/kusto-check/check.mjs`) parses and binds
//! every query of a corpus against the same table schemas, and the two must agree:
//!
//! - a query both accept has the same result columns, in order, with the same types;
//! - a query Kusto.Language refuses, hubwatch refuses too;
//! - a query Kusto.Language accepts and hubwatch refuses is a feature hubwatch lacks, and
//!   its message must say so ("unsupported …", "… is not supported").
//!
//! The corpus: the gallery queries Microsoft publishes for the AML tables, AzureActivity
//! and AzureMetrics (`tests/fixtures/gallery/`), the golden and breadth queries, and the
//! cases below (every operator hubwatch runs, and mistakes a user makes).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use hubwatch::kql::check::compile;
use hubwatch::schema::Schemas;
use serde_json::{json, Value};

const AML: &str = "AmlComputeClusterEvent";
const JOBS: &str = "AmlComputeJobEvent";

/// Queries beyond the gallery's: each operator and function family, and mistakes.
fn cases() -> Vec<(String, String)> {
    let q = |name: &str, kql: String| (name.to_string(), kql);
    vec![
        q("union_outer", format!("union {AML}, {JOBS} | summarize count() by ClusterName")),
        q("union_inner_withsource", format!("union kind=inner withsource=Src {AML}, {JOBS} | project Src, ClusterName, TimeGenerated")),
        q("union_pipe", format!("{AML} | union (AzureMetrics | where MetricName == 'x') | summarize n = count() by Resource")),
        q("join_inner", format!("{JOBS} | where EventType == 'JobSubmitted' | project JobId, Sub = TimeGenerated | join kind=inner ({JOBS} | where EventType == 'JobSucceeded' | project JobId, Done = TimeGenerated) on JobId")),
        q("join_default_same_names", format!("{JOBS} | project JobId, ClusterName | join ({JOBS} | project JobId, ClusterName, EventType) on JobId")),
        q("join_leftouter_left_right", format!("{JOBS} | join kind=leftouter ({AML} | project ClusterName, VmSize) on $left.ClusterName == $right.ClusterName | project JobId, VmSize")),
        q("join_rightanti", format!("{JOBS} | join kind=rightanti {AML} on ClusterName")),
        q("join_fullouter", format!("{JOBS} | project JobId, ClusterName | join kind=fullouter ({AML} | project ClusterName, VmSize) on ClusterName")),
        q("lookup", format!("{JOBS} | lookup ({AML} | summarize arg_max(TimeGenerated, VmSize) by ClusterName | project ClusterName, VmSize) on ClusterName")),
        q("let_tabular", format!("let failed = {JOBS} | where EventType == 'JobFailed'; failed | summarize count() by ClusterName")),
        q("let_table_alias", format!("let T = {AML}; T | take 3")),
        q("two_summarize", format!("{AML} | summarize n = count() by ClusterName, VmSize | summarize clusters = count(), events = sum(n) by VmSize")),
        q("parse_simple", format!("{AML} | parse _ResourceId with * '/workspaces/' Workspace | project Workspace")),
        q("parse_typed", format!("{AML} | parse VmSize with 'STANDARD_' Family '_' Cores:long * | project Family, Cores")),
        q("parse_regex", format!("{AML} | parse kind=regex flags=i _ResourceId with '.*?/RESOURCEGROUPS/' RG '/PROVIDERS/' Rest | project RG, Rest")),
        q("search_term", format!("{AML} | search 'gpu' | count")),
        q("where_star", format!("{AML} | where * contains 'gpu' | take 5")),
        q("top_render", format!("{AML} | summarize events = count() by ClusterName | top 3 by events | render barchart")),
        q("aggregates_in_expressions", format!("{JOBS} | summarize pct = round(100.0 * countif(EventType == 'JobFailed') / count(), 1) by ToolType")),
        q("functions", format!("{AML} | extend d = startofday(TimeGenerated), b = bin_at(TimeGenerated, 1h, datetime(2024-01-01)), s = strcat_array(split(VmSize, '_'), '-'), r = replace_string(VmSize, 'STANDARD', 'S') | project d, b, s, r")),
        q("calendar_functions", format!("{AML} | project startofweek(TimeGenerated), startofmonth(TimeGenerated, -1), endofday(TimeGenerated), getyear(TimeGenerated), datetime_part('month', TimeGenerated), dayofweek(TimeGenerated), datetime_add('day', 1, TimeGenerated), format_datetime(TimeGenerated, 'yyyy-MM-dd'), unixtime_seconds_todatetime(CoreCount)")),
        q("math_string_dynamic_functions", format!("{AML} | project sqrt(CoreCount), ceiling(CoreCount), pow(CoreCount, 2), log10(CoreCount), min_of(CoreCount, 4), substring(VmSize, 1, 3), indexof(VmSize, '_'), reverse(VmSize), array_length(split(VmSize, '_')), pack_array(VmSize, CoreCount), bag_pack('size', VmSize)")),
        q("spread_and_sets", format!("{AML} | summarize sd = stdev(TargetNodeCount), v = variancep(TargetNodeCount), names = make_set(ClusterName), any_size = take_any(VmSize) by ClusterType")),
        q("distinct_sort", format!("{AML} | distinct VmSize | sort by VmSize asc")),
        q("mv_expand", format!("{AML} | extend parts = split(VmSize, '_') | mv-expand with_itemindex=at parts to typeof(string) limit 8 | project VmSize, parts, at")),
        q("mv_expand_named", format!("{AML} | mv-expand p = split(VmSize, '_'), q = pack_array(1, 2) | project p, q")),
        q("bad_mv_expand_string", format!("{AML} | mv-expand VmSize")),
        q("take_then_expand", format!("{AML} | take 2 | mv-expand split(VmSize, '_') | summarize count()")),
        q("percentiles_and_bags", format!("{AML} | summarize percentiles(CoreCount, 50, 99.5), p = percentiles(TargetNodeCount, 10, 90), make_bag(Identity), sizes = make_bag(bag_pack(VmSize, CoreCount)) by ClusterName")),
        q("bad_make_bag", format!("{AML} | summarize make_bag(VmSize)")),
        q("let_functions", format!("let pct = (part: long, whole: long) {{ round(100.0 * part / whole, 1) }};\nlet recent = (etype: string, since: timespan = 5d) {{ {JOBS} | where TimeGenerated > ago(since) and EventType == etype }};\nrecent('JobFailed') | summarize n = count() by ClusterName | extend share = pct(n, 77)")),
        q("let_function_no_params", format!("let failures = () {{ {JOBS} | where EventType == 'JobFailed' }};\nfailures() | count")),
        q("bad_function_arity", format!("let f = (x: long) {{ x * 2 }};\n{AML} | extend y = f(1, 2)")),
        q("bad_unknown_tabular_function", format!("let recent = (n: timespan) {{ {JOBS} | where TimeGenerated > ago(n) }};\nrecnt(1d) | count")),
        // (`search` of every table is left out: Kusto.Language types a name two tables give
        // different types as the first one's, where its own `union` makes `Name_long` and
        // `Name_string`, as hubwatch does for both.)
        q("union_wildcard", "union withsource=T AmlCompute*Event | summarize count() by T".to_string()),
        q("search_in_tables", format!("search in ({AML}, {JOBS}) \"gpu\" | summarize count() by $table")),
        q("union_of_conflicting_types", "union AzureActivity, AmlComputeClusterEvent | take 1".to_string()),
        q("hashes", format!("{AML} | project hash(ClusterName), hash(TimeGenerated, 10), hash_xxhash64(VmSize)")),
        q("trims", format!("{AML} | project trim(' ', VmSize), trim_start('S', VmSize), trim_end(@'\\d', VmSize)")),
        q("derived_names_numbered", format!("{AML} | project CoreCount, sqrt(CoreCount), ceiling(CoreCount)")),
        q("derived_by_names_numbered", format!("{AML} | summarize count() by sqrt(CoreCount), CoreCount")),
        // Mistakes: both must refuse.
        q("bad_keyword_let", format!("let kind = 'JobFailed';\n{JOBS} | where EventType == kind")),
        q("bad_keyword_column", format!("{AML} | summarize first = min(TimeGenerated)")),
        q("keyword_in_brackets", format!("{AML} | summarize ['first'] = min(TimeGenerated)")),
        q("bad_same_name_twice", format!("{AML} | project a = CoreCount, a = VmSize")),
        q("bad_column_twice", format!("{AML} | project CoreCount, CoreCount")),
        q("bad_column", format!("{AML} | where ClusterNam == 'x'")),
        q("bad_table", "AmlComputeClusterEvents | take 1".to_string()),
        q("bad_function", format!("{AML} | summarize avrg(TargetNodeCount)")),
        q("bad_join_key", format!("{JOBS} | join ({AML}) on NoSuchKey")),
        q("bad_union_column", format!("union {AML}, {JOBS} | project NotAColumn")),
        q("bad_let_use", format!("let failed = {JOBS} | where EventType == 'JobFailed'; failes | count")),
        q("bad_parse_type", format!("{AML} | parse VmSize with 'A' x:number")),
        q("bad_string_math", format!("{AML} | extend x = ClusterName * 2")),
        q("bad_syntax", format!("{AML} | where")),
    ]
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus() -> Vec<(String, String)> {
    let mut all = Vec::new();
    let dir = root().join("tests/fixtures/gallery");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "kql"))
        .collect();
    files.sort();
    assert!(files.len() >= 50, "the gallery corpus is missing");
    for f in files {
        let name = format!("gallery/{}", f.file_stem().unwrap().to_string_lossy());
        all.push((name, std::fs::read_to_string(&f).unwrap()));
    }
    for file in ["queries.json", "breadth_queries.json"] {
        let text = std::fs::read_to_string(root().join("tests/expected").join(file)).unwrap();
        let list: Vec<Value> = serde_json::from_str(&text).unwrap();
        for q in list {
            all.push((
                format!("{file}/{}", q["name"].as_str().unwrap()),
                q["kql"].as_str().unwrap().to_string(),
            ));
        }
    }
    // The query packs hubwatch ships.
    let mut packs: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    packs.sort();
    for pack in packs {
        let doc: toml::Value = toml::from_str(&std::fs::read_to_string(&pack).unwrap()).unwrap();
        let queries = doc.get("queries").and_then(|q| q.as_array()).cloned();
        for q in queries.unwrap_or_default() {
            if let (Some(name), Some(kql)) = (q.get("name"), q.get("kql")) {
                all.push((
                    format!(
                        "{}/{}",
                        pack.file_name().unwrap().to_string_lossy(),
                        name.as_str().unwrap()
                    ),
                    kql.as_str().unwrap().to_string(),
                ));
            }
        }
    }
    all.extend(cases());
    all
}

/// Kusto.Language's verdicts, one per query, from one Node process.
fn kusto(queries: &[(String, String)]) -> Vec<Value> {
    let tool = root().join("tools/kusto-check");
    assert!(
        tool.join("node_modules/@kusto/language-service-next").is_dir(),
        "Kusto.Language is not installed: run scripts/setup-test-deps.sh (it runs tools/kusto-check/setup.sh)"
    );
    let input: Vec<Value> = queries
        .iter()
        .map(|(name, kql)| json!({"name": name, "query": kql}))
        .collect();
    let mut child = Command::new("node")
        .arg(tool.join("check.mjs"))
        .arg("--schemas")
        .arg(root().join("schemas/tables"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (Node 20 is on every machine)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kusto-check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdicts.len(), queries.len());
    verdicts
}

/// Kusto's type names as hubwatch's: hubwatch keeps `int` columns as `long`.
fn kusto_type(t: &str) -> &str {
    match t {
        "int" => "long",
        "guid" => "string",
        "decimal" => "real",
        other => other,
    }
}

fn is_unsupported(message: &str) -> bool {
    message.contains("unsupported") || message.contains("not supported")
}

#[test]
fn hubwatch_accepts_what_kusto_language_accepts_with_the_same_columns() {
    let schemas = Schemas::embedded();
    let queries = corpus();
    let verdicts = kusto(&queries);
    let mut problems = Vec::new();
    let (mut agree, mut both_refuse, mut lacking) = (0, 0, Vec::new());
    let (mut gallery, mut gallery_loaded) = (0, 0);
    for ((name, kql), kusto) in queries.iter().zip(&verdicts) {
        let ours = compile(kql, &schemas);
        let kusto_ok = kusto["ok"].as_bool().unwrap();
        if name.starts_with("gallery/") {
            gallery += 1;
            gallery_loaded += usize::from(ours.is_ok() && kusto_ok);
        }
        match (kusto_ok, &ours) {
            (true, Ok(plan)) => {
                let theirs: Vec<(String, String)> = kusto["columns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap().to_string(),
                            kusto_type(c["type"].as_str().unwrap()).to_string(),
                        )
                    })
                    .collect();
                let mine: Vec<(String, String)> = plan
                    .output
                    .iter()
                    .map(|c| (c.name.to_string(), c.ty.name().to_string()))
                    .collect();
                if mine == theirs {
                    agree += 1;
                } else {
                    problems.push(format!(
                        "{name}: columns differ\n  hubwatch:       {mine:?}\n  Kusto.Language: {theirs:?}"
                    ));
                }
            }
            (true, Err(d)) => {
                if d.items.iter().any(|i| is_unsupported(&i.message)) {
                    lacking.push(format!("{name}: {}", d.items[0].message));
                } else {
                    problems.push(format!(
                        "{name}: Kusto.Language accepts it, hubwatch refuses it without saying it is unsupported:\n{d}"
                    ));
                }
            }
            (false, Ok(_)) => problems.push(format!(
                "{name}: hubwatch accepts it, Kusto.Language refuses it: {}",
                kusto["errors"]
            )),
            (false, Err(_)) => both_refuse += 1,
        }
    }
    eprintln!(
        "{} queries: {agree} accepted by both with the same columns, {both_refuse} refused by both, {} not supported by hubwatch; gallery: {gallery_loaded} of {gallery} load",
        queries.len(),
        lacking.len()
    );
    for l in &lacking {
        eprintln!("  not supported: {l}");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every mistake in `cases` is refused by both, not by one only.
    assert!(both_refuse >= 8, "{both_refuse} refused by both");
    // The gallery figure of issue 14; the one query left names a column
    // (AmlRegistryWriteEventsLog.OperationType) that the table's reference does not have.
    assert!(
        gallery_loaded >= 49,
        "{gallery_loaded} of {gallery} gallery queries load"
    );
}

#[test]
fn the_kusto_check_tool_refuses_what_it_should() {
    // The tool itself, on a query it must refuse and one it must accept: a broken installation
    // that accepted everything would make the comparison above worthless.
    let verdicts = kusto(&[
        (
            "ok".into(),
            format!("{AML} | summarize count() by ClusterName"),
        ),
        ("bad".into(), format!("{AML} | where NoSuchColumn == 1")),
    ]);
    assert_eq!(verdicts[0]["ok"], true);
    assert_eq!(
        verdicts[0]["columns"],
        json!([{"name": "ClusterName", "type": "string"}, {"name": "count_", "type": "long"}])
    );
    assert_eq!(verdicts[1]["ok"], false);
}
