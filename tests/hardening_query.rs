//! `hubwatch query` says what it could not use, and its exit status says whether the result
//! is the whole answer:
//!
//! - rows a cap dropped (`--max-series`, `--max-rows`) make the result incomplete: a summary
//!   on stderr and exit status 3;
//! - rejected input is summed up on stderr with exit status 0 (the result is the answer over
//!   what could be read), or 3 with `--strict`;
//! - a clean input prints nothing on stderr;
//! - a line far longer than `max_line_bytes` costs no more memory than `run` spends on it.

use std::path::Path;
use std::process::{Command, Output};

fn cluster(name: &str) -> String {
    format!(
        r#"{{"records":[{{"time":"2024-03-01T10:00:00Z","category":"AmlComputeClusterEvent","properties":{{"ClusterName":"{name}"}}}}]}}"#
    )
}

fn query(input: &Path, args: &[&str], kql: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hubwatch"))
        .args(["query", "--format", "json", "--input"])
        .arg(input)
        .args(args)
        .arg(kql)
        .output()
        .expect("run hubwatch query")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn rows(out: &Output) -> usize {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON rows");
    v.as_array().unwrap().len()
}

#[test]
fn rows_dropped_by_a_cap_are_reported_and_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let lines: Vec<String> = (0..50).map(|i| cluster(&format!("c{i}"))).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();

    let by_cluster = "AmlComputeClusterEvent | summarize n = count() by ClusterName";
    let out = query(&input, &["--max-series", "10"], by_cluster);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(rows(&out), 10, "the result is still printed");
    assert!(err.contains("50 bodies read, 50 records accepted"), "{err}");
    assert!(
        err.contains("dropped: 40 rows of groups beyond --max-series 10"),
        "{err}"
    );
    assert!(err.contains("the result is incomplete"), "{err}");

    let out = query(
        &input,
        &["--max-rows", "5"],
        "AmlComputeClusterEvent | project ClusterName",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(rows(&out), 5);
    assert!(
        err.contains("dropped: 45 rows beyond --max-rows 5"),
        "{err}"
    );

    // `take` under the cap is the query's own answer, not a drop.
    let out = query(
        &input,
        &["--max-rows", "5"],
        "AmlComputeClusterEvent | project ClusterName | take 3",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(rows(&out), 3);
    assert_eq!(stderr(&out), "", "nothing was lost");

    // Under the caps: complete, silent.
    let out = query(&input, &[], by_cluster);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(rows(&out), 50);
    assert_eq!(stderr(&out), "");
}

#[test]
fn rejected_input_is_summed_up_and_fails_only_with_strict() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let a = cluster("a");
    let record = &a[12..a.len() - 2];
    let text = [
        a.clone(),
        "{broken".to_string(),
        format!(r#"{{"records":[{record}],"records":[{record}]}}"#),
        format!(r#"{{"records":[{record},7]}}"#),
    ]
    .join("\r\n");
    std::fs::write(&input, text).unwrap();
    let kql = "AmlComputeClusterEvent | summarize n = count() by ClusterName";

    let out = query(&input, &[], kql);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "the result is complete: {err}");
    assert_eq!(rows(&out), 1);
    assert!(err.contains("4 bodies read, 2 records accepted"), "{err}");
    assert!(
        err.contains("rejected bodies: invalid_json 1, duplicate_key 1"),
        "{err}"
    );
    assert!(
        err.contains("rejected records: record_not_object 1"),
        "{err}"
    );
    assert!(!err.contains("incomplete"), "{err}");

    let out = query(&input, &["--strict"], kql);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(rows(&out), 1, "the result is still printed");
}

/// The largest resident set of any child of this process that has been waited for.
#[cfg(target_os = "linux")]
fn children_peak_rss() -> u64 {
    // `struct rusage` on Linux (x86_64 and aarch64): two timevals, then 14 longs.
    #[repr(C)]
    struct Rusage {
        times: [i64; 4],
        maxrss_kib: i64,
        rest: [i64; 13],
    }
    extern "C" {
        fn getrusage(who: i32, usage: *mut Rusage) -> i32;
    }
    const RUSAGE_CHILDREN: i32 = -1;
    let mut usage = std::mem::MaybeUninit::<Rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given, whose layout is the C one above.
    let rc = unsafe { getrusage(RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: zeroed, then filled by the call that succeeded.
    let usage = unsafe { usage.assume_init() };
    usage.maxrss_kib as u64 * 1024
}

#[cfg(target_os = "linux")]
#[test]
fn a_150_mb_line_costs_at_most_max_line_bytes() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let chunk = vec![b'x'; 1 << 20];
    f.write_all(b"{\"records\":[],\"padding\":\"").unwrap();
    for _ in 0..150 {
        f.write_all(&chunk).unwrap();
    }
    f.write_all(b"\"}\n").unwrap();
    f.write_all(cluster("after").as_bytes()).unwrap();
    f.write_all(b"\n").unwrap();
    drop(f);

    let out = query(
        &input,
        &[],
        "AmlComputeClusterEvent | summarize n = count() by ClusterName",
    );
    let peak = children_peak_rss();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(rows(&out), 1, "the line after it counts");
    assert!(err.contains("rejected bodies: body_too_large 1"), "{err}");
    // 64 MiB of the line, a 1 MiB read buffer and the program itself; reading whole lines
    // and copying them took more than twice the line (320 MB for 150 MB).
    assert!(
        peak < 110 << 20,
        "peak resident set {} MiB for a 150 MiB line",
        peak >> 20
    );
}

/// A record an hour older than the newest one before it: by default every bin waits for the
/// whole input (the answer Log Analytics gives); with `--allowed-lateness 10m` it is late as
/// in the service, said on stderr, and `--strict` makes that exit 3.
#[test]
fn out_of_order_input_counts_in_its_bin_unless_a_lateness_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let at = |time: &str| {
        format!(
            r#"{{"records":[{{"time":"{time}","category":"AmlComputeClusterEvent","properties":{{"ClusterName":"c"}}}}]}}"#
        )
    };
    // The clock moves by less than `max_future` (1h) at a time, so no record is held.
    let lines = [
        at("2024-03-01T10:05:00Z"),
        at("2024-03-01T10:50:00Z"),
        at("2024-03-01T11:30:00Z"),
        at("2024-03-01T10:15:00Z"),
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let hourly = "AmlComputeClusterEvent | summarize n = count() by bin(TimeGenerated, 1h)";

    let out = query(&input, &["--strict"], hourly);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["n"], 3, "{v}");

    let out = query(&input, &["--allowed-lateness", "10m"], hourly);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["n"], 2, "{v}");
    assert!(
        err.contains("late: 1 rows for bins already closed (more than 00:10:00 behind"),
        "{err}"
    );

    let out = query(&input, &["--allowed-lateness", "10m", "--strict"], hourly);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    let out = query(&input, &["--allowed-lateness", "soon"], hourly);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("'soon' is not a timespan"),
        "{}",
        stderr(&out)
    );
}

/// A join whose key every row shares squares its sides: it stops at 16 × `--max-rows` rows,
/// and says what it left out.
#[test]
fn a_join_beyond_its_bound_is_reported_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let lines: Vec<String> = (0..50).map(|_| cluster("same")).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let kql =
        "AmlComputeClusterEvent | join kind=inner (AmlComputeClusterEvent) on ClusterName | count";
    let out = query(&input, &["--max-rows", "64"], kql);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Count"], 1024, "{v}");
    assert!(
        err.contains("dropped: 1476 rows a join made beyond its bound of 1024 (16 × --max-rows)"),
        "{err}"
    );
    let out = query(&input, &[], kql);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Count"], 2500, "{v}");
}
