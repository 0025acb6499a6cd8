//! A route: which rows of a table are forwarded, and to which sinks. Written in KQL and
//! compiled by the query compiler; a route keeps the row-at-a-time part of a pipeline only
//! (a `summarize`, `take` or `sort` would need the whole stream).

use std::sync::Arc;

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
                "a route forwards rows one by one: `summarize` is for [[queries]]".to_string(),
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
    Ok(())
}

impl RouteSpec {
    pub fn new(name: &str, kql: &str, plan: Plan, sinks: Vec<usize>, meta: RouteMeta) -> RouteSpec {
        let keys = super::format::keys(&plan.output).into();
        let known = Known::of(&plan.output);
        RouteSpec {
            name: Arc::from(name),
            kql: kql.to_string(),
            plan: Arc::new(plan),
            sinks,
            keys,
            known,
            meta,
            nulls: false,
            record: false,
        }
    }

    /// The row this route forwards for `row`, if it matches (the clock is `now()` for the
    /// route's expressions and the edge of a `TimeGenerated > ago(…)` filter).
    pub fn select<'a>(&self, row: &'a Row, clock: i64) -> Option<std::borrow::Cow<'a, [Value]>> {
        if row.table != self.plan.table {
            return None;
        }
        if let Some(w) = self.plan.window {
            if !w.contains(row.time, clock) {
                return None;
            }
        }
        let cx = Context { now: clock };
        crate::window::query::apply_pre(&self.plan.pre, &row.values, &cx)
    }
}
