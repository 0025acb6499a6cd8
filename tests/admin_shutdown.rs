//! The admin server never holds the process: a client that sent half a request (no blank
//! line after its headers) does not keep `hubwatch run` from exiting on SIGTERM, and such a
//! client is cut off after `header_read_timeout` anyway.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

fn config(dir: &Path, export: &str) -> PathBuf {
    let text = format!(
        "[export]\nlisten = \"127.0.0.1:0\"\n{export}\
         [checkpoint]\ndir = \".\"\n\
         [[sources]]\ntype = \"file\"\nname = \"golden\"\npaths = [{:?}]\n\
         [[queries]]\nname = \"jobs\"\nkql = \"AmlComputeJobEvent | summarize n = count()\"\n",
        fixture().display().to_string()
    );
    let p = dir.join("hubwatch.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Connects and sends a request without the blank line that ends its head.
fn half_request(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    s
}

/// Reads until the server closes the connection; how long that took (fails after `limit`).
fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return started.elapsed(),
            Err(e) => panic!("the connection is still open after {limit:?}: {e}"),
        }
    }
}

#[test]
fn sigterm_exits_promptly_while_a_client_holds_half_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::start(&config(dir.path(), ""));
    svc.wait_for_line("all sources finished", Duration::from_secs(60));
    let mut held = half_request(&svc.addr);
    // And one in the middle of its first line.
    let mut partial = TcpStream::connect(&svc.addr).unwrap();
    partial.write_all(b"GET /metr").unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // Well within the default header timeout (10 s): the drain closes waiting connections
    // at once instead of waiting for them.
    let took = svc.terminate(Duration::from_secs(4));
    eprintln!("exited {took:?} after SIGTERM");
    closed_within(&mut held, Duration::from_secs(1));
    closed_within(&mut partial, Duration::from_secs(1));
    // The drain still committed the input.
    let cp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("checkpoints.json")).unwrap(),
    )
    .unwrap();
    assert!(
        cp["golden"].as_object().is_some_and(|p| !p.is_empty()),
        "{cp}"
    );
}

#[test]
fn a_half_sent_request_is_cut_off_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&config(dir.path(), "header_read_timeout = \"1s\"\n"));
    let mut held = half_request(&svc.addr);
    let took = closed_within(&mut held, Duration::from_secs(5));
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    // The server goes on serving.
    assert_eq!(svc.get("/healthz").0, 200);
    let (_, metrics) = svc.get("/metrics");
    assert_eq!(
        metric(
            &metrics,
            "hubwatch_admin_connections_closed_total{reason=\"header_timeout\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}
