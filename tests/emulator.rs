//! Fidelity tests of the Event Hubs emulator against the official clients: the Rust SDK
//! (`azure_messaging_eventhubs`, in-process) and the Python SDK (`azure-eventhub` 5.15.1,
//! from `.venv`, installed by `scripts/setup-test-deps.sh`; missing = failure, not skip).
//! Everything binds loopback only.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use azure_messaging_eventhubs::models::EventData;
use azure_messaging_eventhubs::{
    ConsumerClient, EventDataBatchOptions, EventReceiver, OpenReceiverOptions, ProducerClient,
    RetryOptions, SendEventOptions, StartLocation, StartPosition,
};
use futures_util::StreamExt;
use hubwatch::emulator::{partition_for_key, Emulator, EmulatorConfig};

const HUB: &str = "insights-logs";
const WAIT: Duration = Duration::from_secs(20);

/// Every log line of the `hubwatch` crate, for the "key never logged" check. One global
/// subscriber per test binary; tests share it, which only adds lines.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                std::env::var("EMULATOR_TEST_LOG").unwrap_or_else(|_| "hubwatch=debug".into()),
            )
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        if std::env::var_os("EMULATOR_TEST_LOG").is_some() {
            std::io::stderr().write_all(data)?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn emulator(partitions: u32) -> Emulator {
    captured_logs();
    Emulator::start(EmulatorConfig::single_hub(HUB, partitions))
        .await
        .expect("emulator starts")
}

fn endpoint(emu: &Emulator) -> String {
    format!("amqp://{}/", emu.local_addr())
}

fn no_retries() -> RetryOptions {
    RetryOptions {
        max_retries: 0,
        ..Default::default()
    }
}

/// A producer as applications configure it (default retries: fe2o3 0.16 clients race
/// against their own link teardown now and then and recover by reconnecting).
async fn producer(emu: &Emulator, cs: &str) -> azure_messaging_eventhubs::Result<ProducerClient> {
    ProducerClient::builder()
        .with_custom_endpoint(endpoint(emu))
        .open_with_connection_string(cs, None)
        .await
}

async fn consumer(emu: &Emulator) -> ConsumerClient {
    ConsumerClient::builder()
        .with_custom_endpoint(endpoint(emu))
        .open_with_connection_string(&emu.connection_string(HUB), None)
        .await
        .expect("consumer opens")
}

fn from(location: StartLocation, inclusive: bool) -> Option<OpenReceiverOptions> {
    Some(OpenReceiverOptions {
        start_position: Some(StartPosition {
            location,
            inclusive,
        }),
        ..Default::default()
    })
}

/// The next `n` events of a receiver as (sequence number, body).
async fn take(receiver: &EventReceiver, n: usize) -> Vec<(i64, String)> {
    let stream = receiver.stream_events();
    let events = tokio::time::timeout(WAIT, stream.take(n).collect::<Vec<_>>())
        .await
        .expect("events arrive in time");
    events
        .into_iter()
        .map(|e| {
            let e = e.expect("an event, not an error");
            let body = e.event_data().body().expect("a body");
            (
                e.sequence_number().expect("a sequence number"),
                String::from_utf8(body.to_vec()).unwrap(),
            )
        })
        .collect()
}

/// Awaits `fut` for at most [`WAIT`], naming the step if it hangs.
async fn step<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {WAIT:?}"),
    }
}

fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn numbered(first: i64, bodies: &[String]) -> Vec<(i64, String)> {
    bodies
        .iter()
        .enumerate()
        .map(|(i, b)| (first + i as i64, b.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_sdk_produces_reads_properties_and_consumes() {
    let emu = emulator(2).await;
    let cs = emu.connection_string(HUB);
    let p = step("open producer", producer(&emu, &cs))
        .await
        .expect("producer opens");

    // To the hub, single: round robin starts at partition 0.
    step("send to hub", p.send_event(EventData::from("hub-0"), None))
        .await
        .expect("send to hub");
    // To partition 1, single.
    let to_p1 = Some(SendEventOptions {
        partition_id: Some("1".into()),
    });
    step(
        "send to partition 1",
        p.send_event(EventData::from("p1-0"), to_p1),
    )
    .await
    .expect("send to partition 1");
    // A batch to partition 0.
    let options = EventDataBatchOptions {
        partition_id: Some("0".into()),
        ..Default::default()
    };
    let batch = step("batch for 0", p.create_batch(Some(options)))
        .await
        .unwrap();
    for b in bodies("b0", 5) {
        assert!(batch.try_add_event_data(b.as_str(), None).unwrap());
    }
    step("batch to partition 0", p.send_batch(batch, None))
        .await
        .expect("batch to partition 0");
    // A batch to the hub goes to one partition as a whole (round robin: partition 1).
    let batch = step("batch for hub", p.create_batch(None)).await.unwrap();
    for b in bodies("rr", 2) {
        assert!(batch.try_add_event_data(b.as_str(), None).unwrap());
    }
    step("batch to hub", p.send_batch(batch, None))
        .await
        .expect("batch to hub");
    // A batch with a partition key lands where the key hashes.
    let keyed = partition_for_key("tenant-42", 2);
    let options = EventDataBatchOptions {
        partition_key: Some("tenant-42".into()),
        ..Default::default()
    };
    let batch = step("keyed batch", p.create_batch(Some(options)))
        .await
        .unwrap();
    for b in bodies("key", 3) {
        assert!(batch.try_add_event_data(b.as_str(), None).unwrap());
    }
    step("send keyed batch", p.send_batch(batch, None))
        .await
        .expect("keyed batch");

    let mut p0: Vec<String> = vec!["hub-0".into()];
    p0.extend(bodies("b0", 5));
    let mut p1: Vec<String> = vec!["p1-0".into()];
    p1.extend(bodies("rr", 2));
    if keyed == 0 {
        p0.extend(bodies("key", 3))
    } else {
        p1.extend(bodies("key", 3))
    }

    let props = step("hub properties", p.get_eventhub_properties())
        .await
        .expect("hub properties");
    assert_eq!(props.name, HUB);
    assert_eq!(props.partition_ids, vec!["0".to_string(), "1".to_string()]);
    assert!(props.created_on.is_some());
    let pp = step("partition properties", p.get_partition_properties("0"))
        .await
        .expect("partition properties");
    assert_eq!((pp.id.as_str(), pp.eventhub.as_str()), ("0", HUB));
    assert_eq!(pp.beginning_sequence_number, 0);
    assert_eq!(pp.last_enqueued_sequence_number, p0.len() as i64 - 1);
    assert!(!pp.is_empty);
    let state = emu.partition_state(HUB, 0).unwrap();
    assert_eq!(pp.last_enqueued_offset, state.last_offset);
    assert_eq!(pp.last_enqueued_time_utc, state.last_enqueued_time);

    let c = step("open consumer", consumer(&emu)).await;
    let cp = step(
        "consumer partition properties",
        c.get_partition_properties("1"),
    )
    .await
    .expect("consumer partition properties");
    assert_eq!(cp.last_enqueued_sequence_number, p1.len() as i64 - 1);

    // Earliest, then exclusive and inclusive sequence numbers.
    let open = |id: &str, location, inclusive| {
        c.open_receiver_on_partition(id.to_string(), from(location, inclusive))
    };
    let r = step("open earliest 0", open("0", StartLocation::Earliest, false))
        .await
        .unwrap();
    assert_eq!(take(&r, p0.len()).await, numbered(0, &p0));
    step("close", r.close()).await.unwrap();
    let r = step("open earliest 1", open("1", StartLocation::Earliest, false))
        .await
        .unwrap();
    assert_eq!(take(&r, p1.len()).await, numbered(0, &p1));
    step("close", r.close()).await.unwrap();
    let r = step(
        "open > 2",
        open("0", StartLocation::SequenceNumber(2), false),
    )
    .await
    .unwrap();
    assert_eq!(take(&r, p0.len() - 3).await, numbered(3, &p0[3..]));
    step("close", r.close()).await.unwrap();
    let r = step(
        "open >= 2",
        open("0", StartLocation::SequenceNumber(2), true),
    )
    .await
    .unwrap();
    assert_eq!(take(&r, p0.len() - 2).await, numbered(2, &p0[2..]));

    // Waiting at the end of the log: a new event wakes the receiver.
    let (part, seq) = emu.publish(HUB, Some(0), b"late".to_vec()).unwrap();
    assert_eq!((part, seq), (0, p0.len() as i64));
    assert_eq!(take(&r, 1).await, vec![(seq, "late".to_string())]);
    step("close", r.close()).await.unwrap();

    // Offsets and enqueued times as the SDK parsed them match the emulator's log.
    let offset = StartLocation::Offset(state.last_offset.clone());
    let r = step("open at offset", open("0", offset, true))
        .await
        .unwrap();
    let stream = r.stream_events();
    let first = step("first event", stream.take(1).collect::<Vec<_>>()).await;
    let first = first.into_iter().next().unwrap().unwrap();
    assert_eq!(first.offset().as_deref(), Some(state.last_offset.as_str()));
    assert_eq!(first.sequence_number(), Some(state.last_sequence_number));
    assert_eq!(first.enqueued_time(), state.last_enqueued_time);

    let stats = emu.stats();
    assert!(stats.cbs_tokens_accepted >= 2, "{stats:?}");
    assert_eq!(stats.events_published, (p0.len() + p1.len() + 1) as u64);
    emu.shutdown().await;
}
