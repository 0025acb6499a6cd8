//! Helpers shared by the integration tests: the golden queries and answers, result
//! comparison, and a tiny HTTP client for the running service.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture() -> PathBuf {
    repo().join("tests/fixtures/aml/bodies.ndjson")
}

/// The entries of a query list in `tests/expected/` (`[{"name", "kql", ...}]`).
fn query_list(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("tests/expected").join(file)).expect(file);
    let v: Value = serde_json::from_str(&text).expect("a query list is JSON");
    v.as_array().expect("an array").clone()
}

fn text_of(q: &Value, key: &str) -> String {
    q[key].as_str().unwrap().to_string()
}

/// `(name, kql)` of the golden queries, from `tests/expected/queries.json`.
pub fn golden_queries() -> Vec<(String, String)> {
    query_list("queries.json")
        .iter()
        .map(|q| (text_of(q, "name"), text_of(q, "kql")))
        .collect()
}

/// The KQL-breadth queries (`tests/expected/breadth_queries.json`): name, KQL, and whether
/// their rows come in a defined order.
pub fn breadth_queries() -> Vec<(String, String, bool)> {
    query_list("breadth_queries.json")
        .iter()
        .map(|q| {
            (
                text_of(q, "name"),
                text_of(q, "kql"),
                q["ordered"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// `hubwatch query --format json` over the golden fixture: the rows it prints (it must
/// exit 0).
pub fn query_command(name: &str, kql: &str) -> Value {
    query_over(name, &fixture(), &[], kql)
}

/// `hubwatch query --format json [args] --input <input> <kql>`: the rows it prints (it
/// must exit 0).
pub fn query_over(name: &str, input: &Path, args: &[&str], kql: &str) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubwatch"))
        .args(["query", "--format", "json"])
        .args(args)
        .arg("--input")
        .arg(input)
        .arg(kql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Asserts two result arrays hold the same rows in the same order.
pub fn assert_same_rows_in_order(name: &str, got: &Value, want: &Value) {
    let rows = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("an array of rows")
            .iter()
            .map(|x| canonical(x).to_string())
            .collect()
    };
    assert_eq!(rows(got), rows(want), "{name}: rows or their order differ");
    assert!(
        !rows(want).is_empty(),
        "{name}: the expected answer is empty"
    );
}

pub fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(format!("tests/expected/{name}.json")))
        .expect("expected file");
    serde_json::from_str(&text).expect("expected JSON")
}

/// Reals are compared to 12 significant digits: the oracle sums in another order.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap();
            Value::String(format!("{:.12e}", x))
        }
        Value::Number(n) => Value::String(format!("{:.12e}", n.as_f64().unwrap())),
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        other => other.clone(),
    }
}

/// Asserts two result arrays hold the same rows (in any order), naming the differences.
pub fn assert_same_rows(name: &str, got: &Value, want: &Value) {
    let rows = |v: &Value| -> Vec<String> {
        let mut r: Vec<String> = v
            .as_array()
            .expect("an array of rows")
            .iter()
            .map(|x| canonical(x).to_string())
            .collect();
        r.sort();
        r
    };
    let (g, w) = (rows(got), rows(want));
    if g != w {
        let missing: Vec<&String> = w.iter().filter(|x| !g.contains(x)).take(5).collect();
        let extra: Vec<&String> = g.iter().filter(|x| !w.contains(x)).take(5).collect();
        panic!(
            "{name}: {} rows, expected {}\nmissing: {missing:#?}\nunexpected: {extra:#?}",
            g.len(),
            w.len()
        );
    }
    assert!(
        !w.is_empty() || name.is_empty(),
        "{name}: the expected answer is empty; the fixture should exercise it"
    );
}

/// GET `path` from `addr`; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
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

/// Kills the child if a test fails before it exits.
pub struct Service {
    pub child: Child,
    pub addr: String,
    pub lines: mpsc::Receiver<String>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    pub fn start(config: &Path) -> Service {
        Service::start_with_env(config, &[])
    }

    /// Like [`Service::start`], with these environment variables set for the process.
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Service {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubwatch"));
        cmd.args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        Service::spawn(cmd, None).0
    }

    /// Starts `cmd` (a hubwatch `run`, perhaps under a wrapper) and waits for its admin
    /// server; stderr lines are echoed, except those containing `mute`. Also returns the
    /// "admin server listening" line.
    pub fn spawn(mut cmd: Command, mute: Option<&'static str>) -> (Service, String) {
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start hubwatch");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if mute.is_none_or(|m| !line.contains(m)) {
                    eprintln!("[hubwatch] {line}");
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut svc = Service {
            child,
            addr: String::new(),
            lines: rx,
        };
        let line = svc.wait_for_line("admin server listening", Duration::from_secs(30));
        let at = line.find("admin_addr=").expect("address in the log line") + "admin_addr=".len();
        svc.addr = line[at..].split_whitespace().next().unwrap().to_string();
        (svc, line)
    }

    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("hubwatch did not log '{needle}' within {limit:?}"),
            }
        }
    }

    /// Sends SIGTERM and waits (at most `limit`) for a clean exit; returns how long the
    /// drain took.
    pub fn terminate(&mut self, limit: Duration) -> Duration {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "SIGTERM drains and exits 0: {status}");
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "no exit within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }
}

/// A component the test needs: its absence fails the test loudly (the test command installs it).
/// Runs `promtool ARGS` from the repository's root and fails with its output unless it
/// succeeds.
pub fn promtool(args: &[&str]) {
    let out = std::process::Command::new(which("promtool"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn which(name: &str) -> String {
    let found = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run scripts/setup-test-deps.sh (the test command does)"
            )
        });
    found.display().to_string()
}

/// Runs the `openssl` tool (test certificates); fails the test with its stderr otherwise.
#[allow(dead_code)]
pub fn openssl(args: &[&str]) {
    let out = Command::new(which("openssl"))
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A path as an argument for [`openssl`].
#[allow(dead_code)]
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

pub trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> (std::process::ExitStatus, String);
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> (std::process::ExitStatus, String) {
        use std::io::Write;
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status,
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

pub mod azurite;
pub mod kafka;
pub mod rsyslog;
pub mod siem;
pub mod syslog;
pub mod syslog_ng;

/// The fixture line whose records have no usable time: over Event Hubs they would take the
/// event's enqueued time (today), which moves the clock and empties every window, so the
/// streaming tests leave it out.
pub const LEFT_OUT_LINE: usize = 428;
/// The one valid record of that line, taken out of the expected answers.
const LEFT_OUT_TIME: &str = "2024-05-20T06:41:17.2468013Z";

/// The golden bodies without [`LEFT_OUT_LINE`], as published to a stream.
pub fn streamed_bodies() -> Vec<Vec<u8>> {
    std::fs::read_to_string(fixture())
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(i, line)| i + 1 != LEFT_OUT_LINE && !line.is_empty())
        .map(|(_, line)| line.as_bytes().to_vec())
        .collect()
}

/// Every golden query of a running service gives the oracle's answer over
/// [`streamed_bodies`].
pub async fn assert_streamed_golden_results(running: &hubwatch::app::Running) {
    let results = running.results().await.expect("results");
    for (name, _) in golden_queries() {
        let (_, table) = results.iter().find(|(s, _)| *s.name == name).unwrap();
        let got: Value = serde_json::from_str(&hubwatch::export::format::json(table)).unwrap();
        assert_same_rows(&name, &got, &expected_streamed(&name));
    }
}

/// The value of the first `/metrics` line that starts with `series` (labels included).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The oracle's answer to a golden query over [`streamed_bodies`].
pub fn expected_streamed(name: &str) -> Value {
    let mut want = expected(name);
    let rows = want.as_array_mut().unwrap();
    if let Some(i) = rows
        .iter()
        .position(|r| r["TimeGenerated"] == LEFT_OUT_TIME && r["EventType"] == "JobSucceeded")
    {
        rows.remove(i);
    }
    want
}

/// Kills a child process when dropped, so a failing test leaves nothing running.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Prometheus server on a free loopback port, its data and log in `dir`; killed on
/// drop. Absent `prometheus` fails the test (see `which`).
pub struct Prometheus {
    _child: Kill,
    pub addr: String,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus with `config` (the text of prometheus.yml) and waits until it is
    /// ready (it has loaded the configuration and any rule files).
    pub fn start(dir: &Path, config: &str) -> Prometheus {
        let prometheus = which("prometheus");
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.join("prometheus.log");
        let port = free_port();
        let mut child = Kill(
            Command::new(prometheus)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("prometheus-data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start prometheus"),
        );
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http_get(&addr, "/-/ready") {
                break;
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!(
                    "prometheus exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "prometheus was not ready within 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Prometheus {
            _child: child,
            addr,
            log,
        }
    }

    /// The `data` of a successful API answer at `path`, or None (not yet, or an error).
    pub fn api(&self, path: &str) -> Option<Value> {
        let (status, body) = http_get(&self.addr, path).ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && v["status"] == "success").then(|| v["data"].clone())
    }

    /// The samples of the instant query `expr`, evaluated now.
    pub fn query(&self, expr: &str) -> Option<Vec<Value>> {
        let expr = percent_encoding::utf8_percent_encode(expr, percent_encoding::NON_ALPHANUMERIC);
        let data = self.api(&format!("/api/v1/query?query={expr}"))?;
        data["result"].as_array().cloned()
    }

    /// The last lines of Prometheus's own log, for failure messages.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Polls `done` until it holds; fails the test after `limit`.
/// The whole lines of a file another process is writing (it may be writing the last);
/// none when the file is not there yet.
pub fn whole_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text[..text.rfind('\n').map_or(0, |i| i + 1)]
        .lines()
        .map(str::to_string)
        .collect()
}

/// Each whole line of `path` as JSON (a line that is not fails the test, naming it).
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    whole_lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// Reads `get` until it holds at least `n` items, at most `limit`; then returns them. The
/// failure shows what was read and `context()` (a receiver's log).
pub fn wait_for_items<T: std::fmt::Debug>(
    what: &str,
    n: usize,
    limit: Duration,
    mut get: impl FnMut() -> Vec<T>,
    context: impl Fn() -> String,
) -> Vec<T> {
    let deadline = Instant::now() + limit;
    loop {
        let got = get();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {n} within {limit:?}: {got:#?}\n{}",
            got.len(),
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A one-record `AmlComputeJobEvent` body for job `i`, one second of event time apart.
pub fn job_body(i: usize) -> Vec<u8> {
    let t = hubwatch::time::format_datetime(1_700_000_000 * 10_000_000 + i as i64 * 10_000_000);
    format!(r#"{{"records":[{{"time":"{t}","category":"AmlComputeJobEvent","resourceId":"/x","properties":{{"JobName":"j{i}"}}}}]}}"#).into_bytes()
}

/// The `n` of a query `jobs` defined as `AmlComputeJobEvent | summarize n = count()`.
pub fn jobs_count(svc: &Service) -> i64 {
    let (status, text) = svc.get("/api/v1/queries/jobs");
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v[0]["n"].as_i64().unwrap_or(0)
}

/// The value of `name` in a connection string (`Name=value;…`).
pub fn cs_field(cs: &str, name: &str) -> String {
    cs.split(';')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{name} in the connection string"))
        .to_string()
}

/// The emulator's connection string for `hub` with a pre-formed SAS, valid for `secs` more
/// seconds, instead of the key.
pub fn with_signature(emulator: &hubwatch::emulator::Emulator, hub: &str, secs: u64) -> String {
    let cs = emulator.connection_string(hub);
    let endpoint = cs_field(&cs, "Endpoint");
    let host = endpoint.trim_start_matches("sb://").trim_end_matches('/');
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs;
    let token = hubwatch::emulator::sas::sign(
        &format!("amqps://{host}/{hub}"),
        &cs_field(&cs, "SharedAccessKeyName"),
        &cs_field(&cs, "SharedAccessKey"),
        expiry,
    );
    format!(
        "Endpoint={endpoint};SharedAccessSignature={token};EntityPath={hub};UseDevelopmentEmulator=true"
    )
}

/// A window-state snapshot rewritten as format `version`, checksummed as that version would
/// be (the header layout is the same in every version: magic, version, length, CRC-32 over
/// version, length and payload).
pub fn as_format_version(snapshot: &[u8], version: u32) -> Vec<u8> {
    let mut b = snapshot.to_vec();
    b[8..12].copy_from_slice(&version.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&b[8..20]);
    h.update(&b[24..]);
    let crc = h.finalize();
    b[20..24].copy_from_slice(&crc.to_le_bytes());
    b
}
