//! Scrapes are cheap for the engine: requests that arrive together share one render (one
//! copy of the results from the engine, one text), `/metrics` and the query API answer
//! `Accept-Encoding: gzip` with the same content gzipped, and memory does not grow with the
//! number of scrapers. Renders are counted from hubwatch's debug log (`/metrics` itself
//! may answer from a render it reuses).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// 50,000 series: `summarize n = count() by JobName` over that many jobs.
const SERIES: usize = 50_000;

fn bodies(path: &Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for chunk in 0..SERIES / 100 {
        let records: Vec<String> = (chunk * 100..(chunk + 1) * 100)
            .map(|i| {
                let t = hubwatch::time::format_datetime(
                    1_700_000_000 * 10_000_000 + (i as i64 / 1000) * 10_000_000,
                );
                format!(r#"{{"time":"{t}","category":"AmlComputeJobEvent","resourceId":"/x","properties":{{"JobName":"job-{i:06}"}}}}"#)
            })
            .collect();
        writeln!(f, r#"{{"records":[{}]}}"#, records.join(",")).unwrap();
    }
}

fn config(dir: &Path) -> PathBuf {
    let input = dir.join("input.ndjson");
    bodies(&input);
    // max age 0: only requests that arrive while a render runs share it.
    let text = format!(
        "[export]\nlisten = \"127.0.0.1:0\"\nmetrics_max_age = \"0s\"\n\
         [limits]\nmax_series = 100000\n\
         [[sources]]\ntype = \"file\"\nname = \"jobs\"\npaths = [{:?}]\n\
         [[queries]]\nname = \"big\"\nkql = \"AmlComputeJobEvent | summarize n = count() by JobName\"\n",
        input.display().to_string()
    );
    let p = dir.join("hubwatch.toml");
    std::fs::write(&p, text).unwrap();
    p
}

struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The body as text, gunzipped if it came gzipped.
    fn text(&self) -> String {
        if self.header("content-encoding").as_deref() == Some("gzip") {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&self.body[..])
                .read_to_string(&mut text)
                .unwrap();
            text
        } else {
            String::from_utf8(self.body.clone()).unwrap()
        }
    }
}

fn get(addr: &str, path: &str, gzip: bool) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let accept = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Answer {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    }
}

/// The lines of the query's gauges (hubwatch's own metrics change between renders).
fn query_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("big_n")).collect()
}

/// The durations of the renders of `what` (`metrics`, `queries`) logged since the last call
/// (hubwatch logs each at debug level when it finishes, before any answer that uses it).
fn renders(svc: &Service, what: &str) -> Vec<f64> {
    std::thread::sleep(Duration::from_millis(300));
    let needle = format!("admin render what=\"{what}\" seconds=");
    svc.lines
        .try_iter()
        .filter_map(|l| {
            let at = l.find(&needle)? + needle.len();
            l[at..].split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// Waits until a render of `what` taking `took` is no longer reused (4 times its duration).
fn past_reuse(took: &[f64]) {
    let longest = took.iter().copied().fold(0.0, f64::max);
    std::thread::sleep(Duration::from_secs_f64(4.0 * longest + 0.5));
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// `n` GETs at once, each on its own connection (every other one asking for gzip).
fn concurrent(addr: &str, path: &str, n: usize) -> Vec<Answer> {
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (addr, path) = (addr.to_string(), path.to_string());
            std::thread::spawn(move || get(&addr, &path, i % 2 == 1))
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn concurrent_scrapes_share_renders_and_gzip_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::start_with_env(
        &config(dir.path()),
        &[("RUST_LOG", "info,hubwatch::export::events=debug")],
    );
    svc.wait_for_line("all sources finished", Duration::from_secs(300));
    let pid = svc.child.id();

    // Plain and gzip: the same gauges; gzip much smaller, and said so.
    let plain = get(&svc.addr, "/metrics", false);
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    let plain_text = plain.text();
    let gauges = query_lines(&plain_text);
    assert_eq!(gauges.len(), SERIES, "{}", &plain_text[..2000]);
    assert!(gauges.contains(&"big_n{job_name=\"job-000042\"} 1"));
    let zipped = get(&svc.addr, "/metrics", true);
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(
        zipped.header("vary").map(|v| v.to_ascii_lowercase()),
        Some("accept-encoding".into())
    );
    let zipped_text = zipped.text();
    assert_eq!(query_lines(&zipped_text), gauges);
    eprintln!(
        "/metrics: {} bytes, gzipped {} bytes",
        plain.body.len(),
        zipped.body.len()
    );
    assert!(zipped.body.len() * 5 < plain.body.len());

    // 100 scrapers at once: one or two renders, not 100; every answer whole.
    past_reuse(&renders(&svc, "metrics"));
    let rss_before = rss_kib(pid);
    let answers = concurrent(&svc.addr, "/metrics", 100);
    let during = renders(&svc, "metrics");
    let rss_after = rss_kib(pid);
    for a in &answers {
        assert_eq!(a.status, 200);
        assert_eq!(query_lines(&a.text()).len(), SERIES);
    }
    eprintln!(
        "100 concurrent scrapes: {} renders ({during:?} s); RSS {} -> {} MiB",
        during.len(),
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        (1..=5).contains(&during.len()),
        "{} renders for 100 concurrent scrapes",
        during.len()
    );
    // One render's copy and text are a few MB here; 100 of them would be hundreds.
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {} to {} MiB",
        rss_before / 1024,
        rss_after / 1024
    );

    // The query API likewise: shared copies, gzip on request.
    renders(&svc, "queries");
    let answers = concurrent(&svc.addr, "/api/v1/queries/big", 50);
    let during = renders(&svc, "queries").len();
    for a in &answers {
        assert_eq!(a.status, 200);
        let rows: serde_json::Value = serde_json::from_str(&a.text()).unwrap();
        assert_eq!(rows.as_array().unwrap().len(), SERIES);
    }
    assert!(answers
        .iter()
        .any(|a| a.header("content-encoding").as_deref() == Some("gzip")));
    eprintln!("50 concurrent query API calls: {during} renders");
    assert!(
        (1..=10).contains(&during),
        "{during} renders for 50 concurrent calls"
    );
    let list = get(&svc.addr, "/api/v1/queries", true);
    let list: serde_json::Value = serde_json::from_str(&list.text()).unwrap();
    assert_eq!(list[0]["name"], "big");
    assert_eq!(list[0]["rows"].as_array().unwrap().len(), SERIES);
}
