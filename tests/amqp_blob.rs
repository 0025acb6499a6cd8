//! The AMQP source with its checkpoints and window state in Azure Blob storage (Azurite),
//! against the in-process emulator, through the real binary:
//!
//! - killed mid-stream (SIGKILL) and started again, it restores its window state from the
//!   container and resumes after it: the result equals one uninterrupted run;
//! - its checkpoints are the Azure SDKs' blobs: the official Python event processor, on the
//!   same consumer group and container, starts strictly after them and receives exactly
//!   the events hubwatch had not processed.

mod common;

use std::process::Command;
use std::time::Duration;

use common::azurite::Azurite;
use common::*;
use hubwatch::blob::BlobContainer;
use hubwatch::emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

const HUB: &str = "Blobbed";
const CONTAINER: &str = "hubwatch-state";

/// Where the SDKs' layout puts the checkpoints of `hub` (default consumer group) reached
/// through the connection string `hub_cs`: the namespace is the endpoint's authority, port
/// included, as the Python processor names it.
fn checkpoint_prefix(hub_cs: &str, hub: &str) -> String {
    let namespace = hub_cs
        .split("sb://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    format!("{namespace}/{}/$default/checkpoint/", hub.to_lowercase())
}

/// The events hubwatch's checkpoints say were processed, read from the SDK-layout blobs.
async fn checkpointed(container: &BlobContainer, prefix: &str) -> i64 {
    container
        .list(prefix)
        .await
        .unwrap()
        .iter()
        .map(|i| i.meta("sequencenumber").unwrap().parse::<i64>().unwrap() + 1)
        .sum()
}

#[test]
fn blob_checkpoints_and_state_survive_a_kill_and_the_python_processor_resumes_after_them() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emulator = rt
        .block_on(Emulator::start(EmulatorConfig::single_hub(HUB, 2)))
        .unwrap();
    let azurite = Azurite::start();
    let container = azurite.container(&rt, CONTAINER);
    let publish = |range: std::ops::Range<usize>| {
        for i in range {
            emulator.publish(HUB, None, job_body(i)).unwrap();
        }
    };
    let hub_cs = emulator.connection_string(HUB);
    let prefix = checkpoint_prefix(&hub_cs, HUB);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hubwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n\
             [checkpoint]\ninterval = \"50ms\"\n[checkpoint.blob]\nconnection_string = \"${{TEST_STORAGE_CS}}\"\ncontainer = \"{CONTAINER}\"\n\
             [[sources]]\ntype = \"amqp\"\nname = \"eh\"\nconnection_string = \"{hub_cs}\"\nstart = \"earliest\"\nbatch_max_wait = \"20ms\"\nbatch_max_events = 16\n\
             owner_id = \"replica-a\"\nownership_interval = \"1s\"\nownership_expiry = \"5s\"\n\
             [[queries]]\nname = \"jobs\"\nkql = \"AmlComputeJobEvent | summarize n = count()\"\n"
        ),
    )
    .unwrap();
    let env = [("TEST_STORAGE_CS", azurite.connection_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    publish(0..500);
    let mut first = Service::start_with_env(&config, &env);
    wait_until("500 absorbed", Duration::from_secs(30), || {
        jobs_count(&first) == 500
    });
    wait_until(
        "500 checkpointed in the SDK layout",
        Duration::from_secs(15),
        || rt.block_on(checkpointed(&container, &prefix)) == 500,
    );
    publish(500..800);
    wait_until("more absorbed", Duration::from_secs(30), || {
        jobs_count(&first) >= 600
    });
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let committed = rt.block_on(checkpointed(&container, &prefix));
    assert!((500..=800).contains(&committed), "checkpointed {committed}");
    let snapshots = rt.block_on(container.list("hubwatch/state/eh/")).unwrap();
    assert_eq!(snapshots.len(), 2, "one snapshot blob per partition");
    publish(800..1000);

    let mut second = Service::start_with_env(&config, &env);
    wait_until("the rest absorbed", Duration::from_secs(30), || {
        jobs_count(&second) >= 1000
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        jobs_count(&second),
        1000,
        "no gap, no duplicate ({committed} committed)"
    );
    let (_, metrics) = second.get("/metrics");
    assert_eq!(
        metric(&metrics, "hubwatch_state_restored_partitions_total"),
        Some(2.0)
    );
    second.terminate(Duration::from_secs(15));
    assert_eq!(rt.block_on(checkpointed(&container, &prefix)), 1000);

    // The official processor on the same group and container: it starts after hubwatch's
    // checkpoints and gets only what came after.
    publish(1000..1010);
    let out = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("tests/peers/processor.py"))
        .args([
            &hub_cs,
            HUB,
            &azurite.connection_string(),
            CONTAINER,
            "3",
            "0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut bodies: Vec<String> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"].as_str().unwrap().to_string())
        .collect();
    bodies.sort();
    let mut want: Vec<String> = (1000..1010)
        .map(|i| String::from_utf8(job_body(i)).unwrap())
        .collect();
    want.sort();
    assert!(
        bodies == want,
        "the Python processor resumed strictly after hubwatch's checkpoints: it got {} events, want the 10 published after ({:?}…)",
        bodies.len(),
        bodies.first()
    );
    rt.block_on(emulator.shutdown());
}

/// The other direction: the official Python processor consumed the hub and checkpointed
/// in the SDK layout; hubwatch, started on the same consumer group and container, takes
/// those checkpoints as the partitions' committed positions. Having no window state, it
/// reads the partitions again from their oldest events to build it (every query counts
/// the whole hub), and its checkpoints never move back below the Python processor's while
/// it does; they end at the last event.
#[test]
fn a_python_processors_checkpoints_are_kept_while_hubwatch_rebuilds_its_windows() {
    const HANDOVER: &str = "Handover";
    const CONTAINER: &str = "handover";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emulator = rt
        .block_on(Emulator::start(EmulatorConfig::single_hub(HANDOVER, 2)))
        .unwrap();
    let azurite = Azurite::start();
    let container = azurite.container(&rt, CONTAINER);
    let publish = |range: std::ops::Range<usize>| {
        for i in range {
            emulator
                .publish(HANDOVER, Some((i % 2) as u32), job_body(i))
                .unwrap();
        }
    };
    let hub_cs = emulator.connection_string(HANDOVER);
    let prefix = checkpoint_prefix(&hub_cs, HANDOVER);
    let sequence_numbers = |container: &BlobContainer| -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = rt
            .block_on(container.list(&prefix))
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i.name.rsplit('/').next().unwrap().to_string(),
                    i.meta("sequencenumber").unwrap().parse().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };

    // The Python processor reads the first 400 events and checkpoints each one.
    publish(0..400);
    let out = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("tests/peers/processor.py"))
        .args([
            &hub_cs,
            HANDOVER,
            &azurite.connection_string(),
            CONTAINER,
            "3",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python = sequence_numbers(&container);
    assert_eq!(
        python,
        vec![("0".into(), 199), ("1".into(), 199)],
        "Python's checkpoints"
    );
    publish(400..600);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hubwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n\
             [checkpoint]\ninterval = \"50ms\"\n[checkpoint.blob]\nconnection_string = \"${{TEST_STORAGE_CS}}\"\ncontainer = \"{CONTAINER}\"\n\
             [[sources]]\ntype = \"amqp\"\nname = \"eh\"\nconnection_string = \"{hub_cs}\"\nstart = \"latest\"\nbatch_max_wait = \"20ms\"\nbatch_max_events = 8\n\
             owner_id = \"hubwatch\"\nownership_interval = \"1s\"\nownership_expiry = \"5s\"\n\
             [[queries]]\nname = \"jobs\"\nkql = \"AmlComputeJobEvent | summarize n = count()\"\n"
        ),
    )
    .unwrap();
    let storage = azurite.connection_string();
    let svc = Service::start_with_env(&config, &[("TEST_STORAGE_CS", storage.as_str())]);
    let mut lowest = python.clone();
    wait_until("every event counted", Duration::from_secs(30), || {
        for (low, (_, seq)) in lowest.iter_mut().zip(sequence_numbers(&container)) {
            low.1 = low.1.min(seq);
        }
        jobs_count(&svc) == 600
    });
    wait_until("checkpoints at the end", Duration::from_secs(15), || {
        sequence_numbers(&container) == vec![("0".into(), 299), ("1".into(), 299)]
    });
    assert_eq!(
        lowest, python,
        "hubwatch never moved a checkpoint back below the Python processor's"
    );
    let (_, metrics) = svc.get("/metrics");
    assert_eq!(
        metric(&metrics, "hubwatch_source_events_total{source=\"eh\"}"),
        Some(600.0),
        "it read the partitions again from their oldest events to build the windows"
    );
    drop(svc);
    rt.block_on(emulator.shutdown());
}
