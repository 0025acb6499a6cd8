//! Helpers shared by the integration tests: the golden queries and answers, result
//! comparison, and a tiny HTTP client for the running service.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture() -> PathBuf {
    repo().join("tests/fixtures/aml/bodies.ndjson")
}

/// `(name, kql)` of the golden queries, from `tests/expected/queries.json`.
pub fn golden_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("tests/expected/queries.json")).expect("queries.json");
    let v: Value = serde_json::from_str(&text).expect("queries.json is JSON");
    v.as_array()
        .expect("an array")
        .iter()
        .map(|q| (q["name"].as_str().unwrap().to_string(), q["kql"].as_str().unwrap().to_string()))
        .collect()
}

pub fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(format!("tests/expected/{name}.json"))).expect("expected file");
    serde_json::from_str(&text).expect("expected JSON")
}

/// Reals are compared to 12 significant digits: the oracle sums in another order.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap();
            Value::String(format!("{:.12e}", x))
        }
        Value::Number(n) => Value::String(format!("{:.12e}", n.as_f64().unwrap())),
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), canonical(v))).collect()),
        other => other.clone(),
    }
}

/// Asserts two result arrays hold the same rows (in any order), naming the differences.
pub fn assert_same_rows(name: &str, got: &Value, want: &Value) {
    let rows = |v: &Value| -> Vec<String> {
        let mut r: Vec<String> = v.as_array().expect("an array of rows").iter().map(|x| canonical(x).to_string()).collect();
        r.sort();
        r
    };
    let (g, w) = (rows(got), rows(want));
    if g != w {
        let missing: Vec<&String> = w.iter().filter(|x| !g.contains(x)).take(5).collect();
        let extra: Vec<&String> = g.iter().filter(|x| !w.contains(x)).take(5).collect();
        panic!("{name}: {} rows, expected {}\nmissing: {missing:#?}\nunexpected: {extra:#?}", g.len(), w.len());
    }
    assert!(!w.is_empty() || name.is_empty(), "{name}: the expected answer is empty; the fixture should exercise it");
}

/// GET `path` from `addr`; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}
