//! A poison event on the hub: an AMQP value nested 20,000 levels deep (40 kB), published
//! by the official SDK between ordinary events. serde_amqp decodes such a value by
//! recursion, so on a thread's usual 2 MiB stack it aborts the process — the emulator that
//! takes the publication, and `hubwatch run` that reads it, after every restart, since
//! the checkpoint never passes it. Both run their AMQP decoding on deep stacks
//! (`hubwatch::deep_stack`): the emulator stores the event, hubwatch rejects it as a body
//! it cannot read, dead-letters it with its position, counts every other event, and
//! commits past it.

mod common;

use std::path::Path;
use std::time::Duration;

use azure_core_amqp::{AmqpDescribed, AmqpMessage, AmqpValue};
use azure_messaging_eventhubs::{ProducerClient, SendMessageOptions};
use common::*;
use hubwatch::emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

const HUB: &str = "poison";
const DEPTH: usize = 20_000;

/// A value that is a described value, whose value is one, and so on [`DEPTH`] times; built
/// (and later dropped) without recursion in this code, encoded by the SDK on the caller's
/// stack.
fn nested() -> AmqpValue {
    let mut value = AmqpValue::Null;
    for _ in 0..DEPTH {
        value = AmqpValue::Described(Box::new(AmqpDescribed::new(0x44u64, value)));
    }
    value
}

fn checkpointed(dir: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(dir.join("checkpoints.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["eh"]["0"]["sequence_number"].as_i64()
}

#[test]
fn a_deeply_nested_event_is_dead_lettered_and_read_past() {
    // The emulator runs here, on the same deep stacks as `hubwatch emulator`.
    let rt = hubwatch::deep_stack::builder("poison-test")
        .build()
        .unwrap();
    let emulator = rt
        .block_on(Emulator::start(EmulatorConfig::single_hub(HUB, 1)))
        .unwrap();
    for i in 0..50 {
        emulator.publish(HUB, Some(0), job_body(i)).unwrap();
    }
    let cs = emulator.connection_string(HUB);
    let endpoint = format!("amqp://{}/", emulator.local_addr());
    // Spawned: `block_on` would run it on this thread's ordinary stack.
    let producer_cs = cs.clone();
    let send = rt.spawn(async move {
        let producer = ProducerClient::builder()
            .with_custom_endpoint(endpoint)
            .open_with_connection_string(&producer_cs, None)
            .await
            .expect("the producer opens");
        let to_0 = SendMessageOptions {
            partition_id: Some("0".into()),
        };
        producer
            .send_message(AmqpMessage::from(nested()), Some(to_0))
            .await
            .expect("the emulator takes the nested event");
        producer.close().await.unwrap();
    });
    rt.block_on(send).unwrap();
    let (_, poison_at) = emulator.publish(HUB, Some(0), job_body(50)).unwrap();
    assert_eq!(
        poison_at, 51,
        "the nested event is stored, as sequence number 50"
    );
    for i in 51..100 {
        emulator.publish(HUB, Some(0), job_body(i)).unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hubwatch.toml");
    let dead = dir.path().join("dead-letter.ndjson");
    std::fs::write(
        &config,
        format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n[checkpoint]\ndir = \".\"\ninterval = \"50ms\"\n\
             [dead_letter]\npath = \"{}\"\n\
             [[sources]]\ntype = \"amqp\"\nname = \"eh\"\nconnection_string = \"{cs}\"\nstart = \"earliest\"\nbatch_max_wait = \"20ms\"\n\
             [[queries]]\nname = \"jobs\"\nkql = \"AmlComputeJobEvent | summarize n = count()\"\n",
            dead.display()
        ),
    )
    .unwrap();
    let mut svc = Service::start(&config);
    wait_until(
        "all 100 ordinary events counted",
        Duration::from_secs(60),
        || {
            assert!(
                svc.child.try_wait().unwrap().is_none(),
                "hubwatch died reading the nested event"
            );
            jobs_count(&svc) == 100
        },
    );
    wait_until(
        "the checkpoint past the last event",
        Duration::from_secs(10),
        || checkpointed(dir.path()) == Some(100),
    );
    let (_, metrics) = svc.get("/metrics");
    assert_eq!(
        metric(
            &metrics,
            "hubwatch_parse_rejected_total{reason=\"empty_body\"}"
        ),
        Some(1.0),
        "the nested event is rejected as a body hubwatch cannot read"
    );
    let letters = json_lines(&dead);
    assert_eq!(letters.len(), 1, "one dead letter: {letters:?}");
    assert_eq!(letters[0]["reason"], "empty_body", "{}", letters[0]);
    assert_eq!(letters[0]["sequence_number"], 50, "{}", letters[0]);
    svc.terminate(Duration::from_secs(20));
    // Spawned too: the stored events are dropped (by recursion) where the emulator ends.
    rt.block_on(rt.spawn(emulator.shutdown())).unwrap();
}
