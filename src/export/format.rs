//! Result tables as text: JSON (the query API and `--format json`), CSV and an aligned table.
//! JSON objects keep the result's column order; datetimes are `YYYY-MM-DDTHH:MM:SS.fffffffZ`.

use crate::value::Value;
use crate::window::ResultTable;

/// `[{"col": value, ...}, ...]`, keys in column order.
pub fn json(t: &ResultTable) -> String {
    let mut out = String::from("[");
    for (i, row) in t.rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        for (j, (col, v)) in t.columns.iter().zip(row).enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(&*col.name).unwrap_or_default());
            out.push(':');
            out.push_str(&serde_json::to_string(&v.to_json()).unwrap_or_else(|_| "null".into()));
        }
        out.push('}');
    }
    out.push(']');
    out
}

/// The rows as JSON values (for embedding in larger documents).
pub fn json_rows(t: &ResultTable) -> serde_json::Value {
    serde_json::from_str(&json(t)).unwrap_or(serde_json::Value::Null)
}

pub fn csv(t: &ResultTable) -> String {
    let mut out = String::new();
    let header: Vec<String> = t.columns.iter().map(|c| csv_field(&c.name)).collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for row in &t.rows {
        let fields: Vec<String> = row.iter().map(|v| csv_field(&cell(v))).collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Dynamic(d) => d.to_string(),
        other => other.to_text(),
    }
}

/// An aligned text table, as a terminal shows it.
pub fn table(t: &ResultTable) -> String {
    let cells: Vec<Vec<String>> = t
        .rows
        .iter()
        .map(|r| r.iter().map(cell).collect())
        .collect();
    let mut widths: Vec<usize> = t.columns.iter().map(|c| c.name.chars().count()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |vals: Vec<&str>| -> String {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = line(t.columns.iter().map(|c| &*c.name).collect());
    out.push('\n');
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out.push_str(&format!(
        "({} row{})\n",
        t.rows.len(),
        if t.rows.len() == 1 { "" } else { "s" }
    ));
    out
}
