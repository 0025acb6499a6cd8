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

/// Appends a label value, escaped (`\\`, `"`, newline), without a copy when it needs none.
fn push_label(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn push_label_value(out: &mut String, v: &Value) {
    match v {
        Value::Str(s) => push_label(out, s),
        Value::Null => {}
        other => push_label(out, &other.to_text()),
    }
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

/// Appends a sample value as `value::format_real` writes it (integers without a fraction),
/// with Prometheus' spellings of NaN and the infinities.
fn push_number(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Appends the gauges of one query's (export) result. Called for every scrape over every
/// series: it writes straight into `out`, with no allocation per sample.
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
                    out.push_str(lname);
                    out.push_str("=\"");
                    if let Some(v) = row.get(*li) {
                        push_label_value(out, v);
                    }
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            push_number(out, v);
            out.push('\n');
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

    #[test]
    fn labels_are_escaped_and_numbers_written_as_before() {
        let mut out = String::new();
        push_label(&mut out, "plain");
        push_label(&mut out, "a\\b\"c\nd");
        assert_eq!(out, "plaina\\\\b\\\"c\\nd");
        for v in [
            0.0,
            3.0,
            -7.0,
            0.25,
            1e15,
            1e20,
            1.5e-7,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let mut out = String::new();
            push_number(&mut out, v);
            let want = if v.is_nan() {
                "NaN".to_string()
            } else if v.is_infinite() {
                if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
            } else {
                crate::value::format_real(v)
            };
            assert_eq!(out, want);
        }
    }
}
