//! hubwatch killed with SIGKILL mid-stream and started again restores its window state and
//! resumes after the last committed event: the count equals one uninterrupted run, with
//! nothing lost and nothing counted twice. Real processes: `hubwatch run` against the
//! in-process emulator.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use hubwatch::emulator::{Emulator, EmulatorConfig};

const HUB: &str = "restart";

fn checkpointed(dir: &Path) -> i64 {
    let Ok(text) = std::fs::read_to_string(dir.join("checkpoints.json")) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["eh"]
        .as_object()
        .map(|parts| {
            parts
                .values()
                .map(|p| p["sequence_number"].as_i64().unwrap_or(-1) + 1)
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_killed_service_resumes_after_its_last_checkpoint() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emulator = rt
        .block_on(Emulator::start(EmulatorConfig::single_hub(HUB, 2)))
        .unwrap();
    let publish = |range: std::ops::Range<usize>| {
        for i in range {
            emulator.publish(HUB, None, job_body(i)).unwrap();
        }
    };
    publish(0..500);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hubwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n[checkpoint]\ndir = \".\"\ninterval = \"50ms\"\n\
             [[sources]]\ntype = \"amqp\"\nname = \"eh\"\nconnection_string = \"{}\"\nstart = \"earliest\"\nbatch_max_wait = \"20ms\"\nbatch_max_events = 16\n\
             [[queries]]\nname = \"jobs\"\nkql = \"AmlComputeJobEvent | summarize n = count()\"\n",
            emulator.connection_string(HUB)
        ),
    )
    .unwrap();

    let mut first = Service::start(&config);
    wait_until(
        "the first 500 events absorbed",
        Duration::from_secs(30),
        || jobs_count(&first) == 500,
    );
    wait_until("500 events checkpointed", Duration::from_secs(10), || {
        checkpointed(dir.path()) == 500
    });
    publish(500..800);
    wait_until("more events absorbed", Duration::from_secs(30), || {
        jobs_count(&first) >= 600
    });
    first.child.kill().unwrap(); // SIGKILL: no drain, no final commit
    first.child.wait().unwrap();
    let committed = checkpointed(dir.path());
    assert!((500..=800).contains(&committed), "checkpointed {committed}");
    publish(800..1000);

    // The new process restores the state that absorbed the committed events (and perhaps
    // a few more), re-reads from the commit, skips what its state already holds, and ends
    // with the count of one uninterrupted run.
    let second = Service::start(&config);
    wait_until("the rest absorbed", Duration::from_secs(30), || {
        jobs_count(&second) >= 1000
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        jobs_count(&second),
        1000,
        "no gap and no duplicate across the kill ({committed} committed)"
    );
    let (_, metrics) = second.get("/metrics");
    let read = metric(&metrics, "hubwatch_source_events_total{source=\"eh\"}").unwrap_or(0.0);
    assert!(
        read >= (1000 - committed) as f64,
        "the second process read from the commit on: {read}"
    );
    drop(second);
    rt.block_on(emulator.shutdown());
}
