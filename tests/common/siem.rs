//! The SIEM sinks' test receiver (`tests/peers/siem_receiver.py`: Splunk HEC, the
//! Elasticsearch `_bulk` API and a generic HTTP endpoint on one loopback port; stdlib
//! Python) as a child process on a free port, with what it accepted read back from its
//! output files; killed on drop. Also a tiny HTTP/1.1 POST and a bounded runner for the
//! vendor-client peers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_port, http_get, repo, which};

pub struct SiemReceiver {
    child: Child,
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The directory of `hec.ndjson`, `es.ndjson`, `http.ndjson`, `requests.ndjson` and
    /// `acks.ndjson`.
    pub out: PathBuf,
}

impl Drop for SiemReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SiemReceiver {
    /// Starts the receiver writing to `dir`, with `args` such as `["--hec-token", "T"]`
    /// (see the receiver's usage), and waits (at most 10 s) until it listens. A port taken
    /// between choosing and binding it is retried with another.
    pub fn start(dir: &Path, args: &[&str]) -> SiemReceiver {
        for _ in 0..3 {
            if let Some(r) = Self::try_start(dir, free_port(), args) {
                return r;
            }
        }
        panic!("the SIEM receiver exited before listening, three times (see its stderr)");
    }

    /// Starts the receiver on `port` (one a sink already sends to).
    pub fn start_on(dir: &Path, port: u16, args: &[&str]) -> SiemReceiver {
        Self::try_start(dir, port, args).unwrap_or_else(|| {
            panic!("the SIEM receiver could not listen on {port} (see its stderr)")
        })
    }

    fn try_start(dir: &Path, port: u16, args: &[&str]) -> Option<SiemReceiver> {
        let python = which("python3");
        let script = repo().join("tests/peers/siem_receiver.py");
        {
            let mut child = Command::new(&python)
                .arg(&script)
                .args(["--port", &port.to_string(), "--out"])
                .arg(dir)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start the SIEM receiver");
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let receiver = SiemReceiver {
                child,
                addr: format!("127.0.0.1:{port}"),
                out: dir.to_path_buf(),
            };
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line == format!("listening {port}") => Some(receiver),
                Ok(line) => panic!("the SIEM receiver said {line:?} instead of 'listening {port}'"),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the SIEM receiver did not listen within 10 s")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None, // exited: the port was taken
            }
        }
    }

    /// The lines of `out/<name>.ndjson` so far, parsed: the whole ones (the receiver may
    /// be writing the last while it is read).
    pub fn records(&self, name: &str) -> Vec<Value> {
        super::json_lines(&self.out.join(format!("{name}.ndjson")))
    }

    /// HEC events accepted: `{"endpoint", "channel", "ackId", "event"}`.
    pub fn hec_events(&self) -> Vec<Value> {
        self.records("hec")
    }

    /// Elasticsearch bulk items accepted: `{"index", "op", "id", "doc"}`.
    pub fn es_docs(&self) -> Vec<Value> {
        self.records("es")
    }

    /// Generic HTTP documents accepted: `{"path", "headers", "doc"}`.
    pub fn http_docs(&self) -> Vec<Value> {
        self.records("http")
    }

    /// Every request answered (or dropped, status null): `{"method", "path", "headers", "status"}`.
    pub fn requests(&self) -> Vec<Value> {
        self.records("requests")
    }

    /// Replaces the receiver's faults with `json` (`{}` clears them).
    pub fn control(&self, json: &str) {
        let reply = http_post(
            &self.addr,
            "/_control",
            &[("Content-Type", "application/json")],
            json.as_bytes(),
        )
        .expect("POST /_control");
        assert_eq!(reply.status, 200, "POST /_control {json}: {}", reply.body);
    }

    /// The receiver's counters (`GET /_stats`).
    pub fn stats(&self) -> Value {
        let (status, body) = http_get(&self.addr, "/_stats").expect("GET /_stats");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON stats")
    }
}

/// An HTTP answer: status, the head (status line and headers) and the body.
pub struct HttpReply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpReply {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("a JSON body ({e}): {}", self.body))
    }
}

/// POSTs `body` to `path` on `addr` with `headers` (Content-Length is added), on a
/// connection of its own that the answer closes. A connection closed without an answer is
/// an error (`UnexpectedEof`).
pub fn http_post(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpReply> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    s.write_all(request.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    if raw.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok(HttpReply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// Runs a peer (a vendor client) to its end, at most `limit`, and returns the one JSON
/// document it prints; its failure, or its running past `limit`, fails the test with its
/// output.
pub fn run_json(mut cmd: Command, what: &str, limit: Duration) -> Value {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = r.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status {
        None => panic!("{what} ran past {limit:?}:\n{stdout}\n{stderr}"),
        Some(s) if !s.success() => panic!("{what} failed ({s}):\n{stdout}\n{stderr}"),
        Some(_) => serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!("{what} printed no single JSON document ({e}):\n{stdout}\n{stderr}")
        }),
    }
}

/// `data` as a gzip member of one stored (uncompressed) deflate block: what a
/// `Content-Encoding: gzip` body is, without a compressor (RFC 1952, RFC 1951 §3.2.4).
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    assert!(
        data.len() <= 0xffff,
        "one stored block holds at most 65535 bytes"
    );
    let len = data.len() as u16;
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]; // magic, deflate, no flags
    out.push(1); // final block, stored
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}
