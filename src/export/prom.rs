//! Query results as Prometheus gauges: a `summarize` query named `N` exports each numeric
//! result column `C` as `N_<snake_case(C)>`, with one label per `by` column. Datetimes and
//! timespans are exported in seconds, bools as 0/1; null values are left out.

use std::fmt::Write as _;

use crate::pipeline::QuerySpec;
use crate::value::{Type, Value};
use crate::window::ResultTable;

/// `avgRunningNodes` → `avg_running_nodes`, `ClusterName` → `cluster_name`,
/// `HTTPRequest` → `http_request`, `count_` → `count`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1);
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    let collapsed: Vec<&str> = out.split('_').filter(|s| !s.is_empty()).collect();
    let s = collapsed.join("_");
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{s}")
    } else {
        s
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn sample(v: &Value) -> Option<f64> {
    match v {
        Value::Long(x) => Some(*x as f64),
        Value::Real(x) => Some(*x),
        Value::Bool(b) => Some(*b as i64 as f64),
        Value::DateTime(t) | Value::TimeSpan(t) => {
            Some(*t as f64 / crate::time::TICKS_PER_SECOND as f64)
        }
        _ => None,
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        crate::value::format_real(v)
    }
}

/// Appends the gauges of one query's (export) result.
pub fn render_query(out: &mut String, spec: &QuerySpec, table: &ResultTable) {
    // Queries without `summarize` hold rows (for the API and, later, forwarding), not series.
    if !matches!(spec.plan.stage, crate::kql::plan::Stage::Summarize(_)) {
        return;
    }
    let labels: Vec<(usize, String)> = table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_key && c.ty != Type::DateTime)
        .map(|(i, c)| (i, snake_case(&c.name)))
        .collect();
    for (i, col) in table.columns.iter().enumerate() {
        if col.is_key
            || !matches!(
                col.ty,
                Type::Long | Type::Real | Type::Bool | Type::DateTime | Type::TimeSpan
            )
        {
            continue;
        }
        let metric = format!("{}_{}", spec.name, snake_case(&col.name));
        let unit = match col.ty {
            Type::DateTime => " (Unix seconds)",
            Type::TimeSpan => " (seconds)",
            _ => "",
        };
        let help = if spec.description.is_empty() {
            format!("Column {} of query {}{unit}.", col.name, spec.name)
        } else {
            format!("{} — column {}{unit}.", spec.description, col.name)
        };
        let _ = writeln!(out, "# HELP {metric} {}", escape_help(&help));
        let _ = writeln!(out, "# TYPE {metric} gauge");
        for row in &table.rows {
            let Some(v) = row.get(i).and_then(sample) else {
                continue;
            };
            out.push_str(&metric);
            if !labels.is_empty() {
                out.push('{');
                for (k, (li, lname)) in labels.iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    let text = row.get(*li).map(Value::to_text).unwrap_or_default();
                    let _ = write!(out, "{lname}=\"{}\"", escape_label(&text));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_names() {
        assert_eq!(snake_case("avgRunningNodes"), "avg_running_nodes");
        assert_eq!(snake_case("ClusterName"), "cluster_name");
        assert_eq!(snake_case("Workspace"), "workspace");
        assert_eq!(snake_case("HTTPRequest"), "http_request");
        assert_eq!(snake_case("count_"), "count");
        assert_eq!(snake_case("_ResourceId"), "resource_id");
        assert_eq!(snake_case("percentile_X_95"), "percentile_x_95");
        assert_eq!(snake_case("VmSize"), "vm_size");
        assert_eq!(snake_case("node2Count"), "node2_count");
    }
}
