//! A route: which rows of a table are forwarded, and to which sinks. Written in KQL and
//! compiled by the query compiler; a route keeps the row-at-a-time part of a pipeline only
//! (a `summarize`, `take` or `sort` would need the whole stream).

use std::sync::Arc;

use crate::kql::check::glob;
use crate::kql::eval::Context;
use crate::kql::plan::{Plan, Stage};
use crate::parse::Row;
use crate::value::Value;

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: Arc<str>,
    pub kql: String,
    pub plan: Arc<Plan>,
    /// Indexes of the sinks (in the configuration's order) the rows go to.
    pub sinks: Vec<usize>,
    /// The output columns as JSON keys, escaped once ([`super::format::keys`]).
    pub keys: Arc<[Vec<u8>]>,
    /// Where the output has the columns sink formats pick.
    pub known: Known,
    /// The route's settings for the sinks that have such fields.
    pub meta: RouteMeta,
    /// Null columns go out as `null` (else they are left out).
    pub nulls: bool,
    /// The original record goes out, byte for byte, instead of the Log Analytics row.
    pub record: bool,
    /// Records of categories no table knows go out too (a `*` route): as their fields
    /// (`properties` flattened), or as the record.
    pub unknown: bool,
    /// The route sends the result rows of this query (an index into the engine's queries)
    /// as its tumbling bins close, instead of rows of a table; `plan` is the query's.
    pub results: Option<usize>,
}

/// What a route sets for the sinks that have such fields; unset, the sink's own apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMeta {
    /// Splunk index; Elasticsearch index or data stream (lowercased).
    pub index: Option<super::template::Template>,
    /// Splunk sourcetype.
    pub sourcetype: Option<super::template::Template>,
    /// Splunk source.
    pub source: Option<super::template::Template>,
}

/// Where a route's output has the Log Analytics columns that sink formats pick (syslog
/// severity, CEF fields), found once per route instead of by name for every row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    pub level: Option<usize>,
    pub operation: Option<usize>,
    pub event_type: Option<usize>,
    pub resource_id: Option<usize>,
    pub result_type: Option<usize>,
}

impl Known {
    pub fn of(columns: &[crate::kql::plan::OutColumn]) -> Known {
        let at = |name: &str| columns.iter().position(|c| &*c.name == name);
        Known {
            level: at("Level"),
            operation: at("OperationName"),
            event_type: at("EventType"),
            resource_id: at("_ResourceId"),
            result_type: at("ResultType"),
        }
    }
}

/// Why a compiled KQL pipeline cannot be a route, if it cannot.
pub fn check_route(plan: &Plan) -> Result<(), String> {
    match &plan.stage {
        Stage::Summarize(_) => {
            return Err(
                "a route forwards rows one by one: put the `summarize` in a [[queries]] entry and route its results with `query = \"<its name>\"`".to_string(),
            )
        }
        Stage::Rows { limit: Some(_) } => {
            return Err("a route forwards every matching row: remove `take` / `limit`".to_string())
        }
        Stage::Rows { limit: None } => {}
    }
    if !plan.post.is_empty() {
        return Err(
            "a route forwards rows one by one: `sort`, `top`, `take` and `count` need the whole stream"
                .to_string(),
        );
    }
    if plan.inputs.len() > 1 || plan.sides() > 1 {
        return Err(
            "a route reads one table at a time: list the tables in a `union` at its start"
                .to_string(),
        );
    }
    let expands = |i: &crate::kql::plan::Input| {
        i.pre
            .iter()
            .any(|op| matches!(op, crate::kql::plan::RowOp::MvExpand(_)))
    };
    if plan.inputs.iter().any(expands) {
        return Err("a route forwards each record once: remove `mv-expand`".to_string());
    }
    Ok(())
}

/// Why a query's results cannot be routed, if they cannot: only tumbling bins close, so
/// only `summarize … by bin(TimeGenerated, …)` has rows that are final at a moment.
pub fn check_results_route(plan: &Plan) -> Result<(), String> {
    match &plan.stage {
        Stage::Summarize(s) if s.bin.is_some() => Ok(()),
        Stage::Summarize(_) => Err(
            "its result never closes (no `by bin(TimeGenerated, …)`): only tumbling bins are routed, once each, as they close".to_string(),
        ),
        Stage::Rows { .. } => Err(
            "it has no `summarize`: route its rows with a route's own `kql` instead".to_string(),
        ),
    }
}

impl RouteSpec {
    pub fn new(
        name: &str,
        kql: &str,
        plan: impl Into<Arc<Plan>>,
        sinks: Vec<usize>,
        meta: RouteMeta,
    ) -> RouteSpec {
        let plan = plan.into();
        let keys = super::format::keys(&plan.output).into();
        let known = Known::of(&plan.output);
        RouteSpec {
            name: Arc::from(name),
            kql: kql.to_string(),
            plan,
            sinks,
            keys,
            known,
            meta,
            nulls: false,
            record: false,
            unknown: false,
            results: None,
        }
    }

    /// A route of a query's results: `plan` is the query's (`summarize … by
    /// bin(TimeGenerated, …)`, see [`check_results_route`]), `query` its index.
    pub fn results(
        name: &str,
        query: usize,
        plan: Arc<Plan>,
        sinks: Vec<usize>,
        meta: RouteMeta,
    ) -> RouteSpec {
        RouteSpec {
            results: Some(query),
            ..RouteSpec::new(name, "", plan, sinks, meta)
        }
    }

    /// The row this route forwards for `row`, if it matches (the clock is `now()` for the
    /// route's expressions and the edge of a `TimeGenerated > ago(…)` filter).
    pub fn select<'a>(&self, row: &'a Row, clock: i64) -> Option<std::borrow::Cow<'a, [Value]>> {
        let input = self.plan.inputs.iter().find(|i| i.table == row.table)?;
        if let Some(w) = self.plan.window {
            if !w.contains(row.time, clock) {
                return None;
            }
        }
        let cx = Context { now: clock };
        crate::window::query::apply_pre(&input.pre, &row.values, &cx)
    }
}

/// A route's KQL, one pipeline per table: `union` (with `*` wildcards in table names, as
/// KQL has them) runs the same pipeline over each table, and `*` alone takes every record —
/// every table's rows and the records of categories no table knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub pieces: Vec<Piece>,
    /// Records of unknown categories go too (`*`).
    pub unknown: bool,
}

/// One table's pipeline: `table` then the route's pipeline as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub kql: String,
    /// The length of the table's name (and the space after it) at the start of `kql`.
    table_len: usize,
    /// Where the pipeline (`| …`) starts in the route's KQL.
    pipe_at: usize,
    /// Where the table list starts in the route's KQL.
    list_at: usize,
}

impl Piece {
    /// Where an offset into [`Piece::kql`] is in the route's KQL (for error positions).
    pub fn origin(&self, at: usize) -> usize {
        if at < self.table_len {
            self.list_at
        } else {
            self.pipe_at + (at - self.table_len)
        }
    }
}

/// Expands `union …` and `*`; any other KQL is one piece, as written.
pub fn expand(kql: &str, schemas: &crate::schema::Schemas) -> Result<Expansion, String> {
    let start = kql.len() - kql.trim_start().len();
    let body = &kql[start..];
    let one = |kql: &str| Expansion {
        pieces: vec![Piece {
            kql: kql.to_string(),
            table_len: 0,
            pipe_at: 0,
            list_at: 0,
        }],
        unknown: false,
    };
    let after_star = body.strip_prefix('*').map(str::trim_start);
    let (list_at, list_end, every) =
        if after_star.is_some_and(|r| r.is_empty() || r.starts_with('|')) {
            (start, start + 1, true)
        } else if let Some(rest) = body.strip_prefix("union") {
            if !rest.starts_with(|c: char| c.is_whitespace()) {
                return Ok(one(kql));
            }
            let list_at = start + 5;
            let end = kql[list_at..].find('|').map_or(kql.len(), |i| list_at + i);
            let list = kql[list_at..end].trim();
            if list == "*" {
                (list_at, end, true)
            } else {
                (list_at, end, false)
            }
        } else {
            return Ok(one(kql));
        };
    let pipeline = &kql[list_end..];
    let all: Vec<&str> = schemas.tables.iter().map(|t| &*t.name).collect();
    if every {
        if !pipeline.trim().is_empty() {
            return Err(
                "a route over every record (`*`) takes no pipeline: its tables have different columns; name them with `union T1, T2 | …`"
                    .to_string(),
            );
        }
        let pieces = all
            .iter()
            .map(|t| Piece {
                kql: t.to_string(),
                table_len: t.len(),
                pipe_at: list_end,
                list_at,
            })
            .collect();
        return Ok(Expansion {
            pieces,
            unknown: true,
        });
    }
    let mut pieces: Vec<Piece> = Vec::new();
    for name in kql[list_at..list_end].split(',').map(str::trim) {
        if name.is_empty() {
            return Err("`union` needs table names separated by commas".to_string());
        }
        let matches: Vec<&str> = if name.contains('*') {
            all.iter().copied().filter(|t| glob(name, t)).collect()
        } else {
            vec![name]
        };
        if matches.is_empty() {
            return Err(format!("`union {name}`: no table's name matches"));
        }
        for t in matches {
            if pieces.iter().any(|p| p.kql[..p.table_len].trim_end() == t) {
                continue;
            }
            pieces.push(Piece {
                kql: format!("{t} {pipeline}"),
                table_len: t.len() + 1,
                pipe_at: list_end,
                list_at,
            });
        }
    }
    Ok(Expansion {
        pieces,
        unknown: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_runs_the_pipeline_over_each_table_and_star_takes_every_record() {
        let s = crate::schema::Schemas::embedded();
        let e = expand(
            "union AmlComputeJobEvent, AmlRun* | where Level == 'Error'",
            &s,
        )
        .unwrap();
        let kqls: Vec<&str> = e.pieces.iter().map(|p| p.kql.as_str()).collect();
        assert_eq!(
            kqls,
            [
                "AmlComputeJobEvent | where Level == 'Error'",
                "AmlRunEvent | where Level == 'Error'",
                "AmlRunStatusChangedEvent | where Level == 'Error'",
            ]
        );
        assert!(!e.unknown);
        // An error in the pipeline points into the route's own text.
        let p = &e.pieces[1];
        let at = p.kql.find("Level").unwrap();
        let route = "union AmlComputeJobEvent, AmlRun* | where Level == 'Error'";
        assert_eq!(&route[p.origin(at)..p.origin(at) + 5], "Level");

        let every = expand("*", &s).unwrap();
        assert!(every.unknown);
        assert_eq!(every.pieces.len(), s.tables.len());
        assert!(expand("union *", &s).unwrap().unknown);
        assert!(expand("* | where Level == 'Error'", &s)
            .unwrap_err()
            .contains("takes no pipeline"));
        assert!(expand("union Nothing*", &s)
            .unwrap_err()
            .contains("no table"));
        assert_eq!(
            expand("AzureActivity | where x", &s).unwrap().pieces[0].kql,
            "AzureActivity | where x"
        );
        assert!(glob("Aml*Event", "AmlComputeJobEvent"));
        assert!(!glob("Aml*Event", "AmlComputeCpuGpuUtilization"));
        assert!(glob("*", "AzureActivity"));
    }
}
