//! Idle and slow admin clients cannot starve the process of file descriptors. Under an
//! open-file limit of 256 (`prlimit`), 400 idle connections and 100 slowloris clients
//! (a header byte every half second, never the blank line) come at once: the connection cap
//! (a quarter of the limit by default) keeps descriptors bounded, `/healthz` keeps answering
//! on fresh connections, ingestion and checkpoint commits go on without "Too many open
//! files", and the idle connections are closed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const NOFILE: u32 = 256;

fn config(dir: &Path, input: &Path) -> PathBuf {
    let text = format!(
        "[export]\nlisten = \"127.0.0.1:0\"\nidle_timeout = \"3s\"\nheader_read_timeout = \"2s\"\n\
         [checkpoint]\ndir = \"cp\"\ninterval = \"200ms\"\n\
         [[sources]]\ntype = \"file\"\nname = \"stream\"\npaths = [{:?}]\nfollow = true\n\
         [[queries]]\nname = \"jobs\"\nkql = \"AmlComputeJobEvent | summarize n = count()\"\n",
        input.display().to_string()
    );
    let p = dir.join("hubwatch.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `hubwatch run` under `prlimit --nofile=N:N`, as [`Service::start`] starts it otherwise.
fn start_limited(config: &Path) -> (Service, String) {
    let mut cmd = Command::new(which("prlimit"));
    cmd.arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg(env!("CARGO_BIN_EXE_hubwatch"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info");
    // The debug lines of closed connections are many: counted, not echoed.
    Service::spawn(cmd, Some("admin connection closed"))
}

/// The position committed for the stream (-1: none yet).
fn committed(dir: &Path) -> i64 {
    std::fs::read_to_string(dir.join("cp/checkpoints.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|cp| {
            cp["stream"]
                .as_object()?
                .values()
                .next()?
                .get("sequence_number")?
                .as_i64()
        })
        .unwrap_or(-1)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// GET `path` on a fresh connection with a deadline; the status and how long it took.
fn timed_get(addr: &str, path: &str, limit: Duration) -> (u16, Duration) {
    let started = Instant::now();
    let status = (|| -> std::io::Result<u16> {
        let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), limit)?;
        s.set_read_timeout(Some(limit))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0))
    })()
    .unwrap_or(0);
    (status, started.elapsed())
}

/// Whether the server has closed `s` (end of stream or reset), waiting at most `limit`.
fn is_closed(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn idle_and_slowloris_clients_under_a_low_fd_limit_do_not_stop_health_ingestion_or_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.ndjson");
    std::fs::write(&input, b"").unwrap();
    let (mut svc, listening) = start_limited(&config(dir.path(), &input));
    let pid = svc.child.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(&format!(" {NOFILE} "))),
        "{limits}"
    );
    // The default cap: a quarter of the limit.
    assert!(listening.contains("max_connections=64"), "{listening}");

    // The stream grows all along: 50 bodies a second.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, input) = (stop.clone(), input.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&input)
                    .unwrap();
                f.write_all(&job_body(i)).unwrap();
                f.write_all(b"\n").unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    wait_until("the first bodies absorbed", Duration::from_secs(30), || {
        jobs_count(&svc) > 0 && committed(dir.path()) >= 0
    });

    // 400 idle connections, then 100 slowloris clients.
    let addr: std::net::SocketAddr = svc.addr.parse().unwrap();
    let mut idle: Vec<TcpStream> = (0..400)
        .map(|i| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| {
                panic!(
                    "idle connection {i}: {e} (the server no longer accepts: out of descriptors?)"
                )
            })
        })
        .collect();
    let slow = {
        let (stop, addr) = (stop.clone(), svc.addr.clone());
        std::thread::spawn(move || {
            let mut socks: Vec<Option<TcpStream>> = (0..100)
                .map(|_| {
                    let mut s = TcpStream::connect(&addr).ok()?;
                    s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").ok()?;
                    Some(s)
                })
                .collect();
            let mut cut_off = 0;
            while !stop.load(Ordering::Relaxed) {
                for s in socks.iter_mut() {
                    if let Some(sock) = s {
                        if sock.write_all(b"a").is_err() {
                            *s = None;
                            cut_off += 1;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            cut_off
        })
    };

    // For 8 s: /healthz answers on a fresh connection every time, the count and the
    // committed position move on, and the process stays well under its limit.
    let (count0, position0) = (jobs_count(&svc), committed(dir.path()));
    let started = Instant::now();
    let (mut worst, mut most_fds, mut probes) = (Duration::ZERO, 0, 0);
    while started.elapsed() < Duration::from_secs(8) {
        let (status, took) = timed_get(&svc.addr, "/healthz", Duration::from_secs(3));
        assert_eq!(
            status,
            200,
            "/healthz after {took:?}, {:?} into the flood",
            started.elapsed()
        );
        worst = worst.max(took);
        most_fds = most_fds.max(open_fds(pid));
        probes += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let (count1, position1) = (jobs_count(&svc), committed(dir.path()));
    eprintln!(
        "{probes} probes, slowest {worst:?}; at most {most_fds} descriptors open; jobs {count0} -> {count1}; committed {position0} -> {position1}"
    );
    assert!(worst < Duration::from_secs(2), "slowest /healthz {worst:?}");
    assert!(most_fds < 128, "{most_fds} descriptors open (cap 64)");
    assert!(
        count1 >= count0 + 200,
        "ingestion stalled: {count0} -> {count1}"
    );
    assert!(
        position1 >= position0 + 200,
        "checkpoints stalled: {position0} -> {position1}"
    );

    // Every idle connection has been closed by the server (made room for others, or idle
    // for 3 s), and the slowloris clients were cut off.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, s) in idle.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            is_closed(s, left.max(Duration::from_millis(10))),
            "idle connection {i} is still open"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let cut_off = slow.join().unwrap();
    writer.join().unwrap();
    assert!(
        cut_off >= 90,
        "{cut_off} of 100 slowloris clients were cut off"
    );

    // Idle connections are closed after idle_timeout (3 s) when nothing needs their room.
    let mut quiet: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(&svc.addr).unwrap())
        .collect();
    let started = Instant::now();
    for s in quiet.iter_mut() {
        assert!(
            is_closed(s, Duration::from_secs(8)),
            "an idle connection outlived idle_timeout"
        );
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(2500), "closed after {took:?}");

    let (_, metrics) = svc.get("/metrics");
    let closed = |reason: &str| {
        metric(
            &metrics,
            &format!("hubwatch_admin_connections_closed_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0)
    };
    eprintln!(
        "closed: idle {} header {} evicted {}",
        closed("idle_timeout"),
        closed("header_timeout"),
        closed("evicted")
    );
    assert!(
        closed("idle_timeout") + closed("evicted") >= 400.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "hubwatch_state_snapshot_failures_total"),
        Some(0.0)
    );
    assert_eq!(
        metric(&metrics, "hubwatch_admin_accept_errors_total"),
        Some(0.0)
    );
    let took = svc.terminate(Duration::from_secs(10));
    eprintln!("exited {took:?} after SIGTERM");
    let log: Vec<String> = svc.lines.try_iter().collect();
    let bad: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("Too many open files") || l.contains("ERROR") || l.contains("WARN"))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}
