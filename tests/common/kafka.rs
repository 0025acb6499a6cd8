//! Kafka test parts: a tansu broker process (installed by scripts/setup-test-deps.sh) and a
//! producer that writes bodies to chosen partitions.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use super::repo;

/// A tansu broker on a free loopback port, in memory; killed on drop.
pub struct Tansu {
    child: Child,
    pub bootstrap: String,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tansu {
    pub fn start() -> Tansu {
        Tansu::start_on(super::free_port())
    }

    /// A broker on a chosen port: one that clients wait for, or one stopped and started
    /// again on the same address (with an empty memory: topics and records are gone).
    pub fn start_on(port: u16) -> Tansu {
        Tansu::start_with(port, &[])
    }

    /// With more of tansu's broker options (`--authentication`: SASL required).
    pub fn start_with(port: u16, options: &[&str]) -> Tansu {
        let bin = repo().join(".venv/bin/tansu");
        assert!(
            bin.exists(),
            "tansu is not installed at {}: run scripts/setup-test-deps.sh (the test command does)",
            bin.display()
        );
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .args(options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let tansu = Tansu {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&tansu.bootstrap).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        tansu
    }

    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap();
        let created = tokio::time::timeout(
            Duration::from_secs(30),
            admin.create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            ),
        )
        .await
        .expect("create_topics answered")
        .expect("create_topics");
        for r in created {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }
}

/// Writes each body to partition `i % partitions` (so a partition's events keep their
/// order), with a fixed message timestamp, and waits until all are acknowledged.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    bodies: &[Vec<u8>],
    timestamp_ms: i64,
) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.max.bytes", "10000000")
        .set("batch.size", "1000000")
        .create()
        .unwrap();
    for (i, body) in bodies.iter().enumerate() {
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .payload(body.as_slice())
            .partition(i as i32 % partitions)
            .timestamp(timestamp_ms);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    // Queue full: let deliveries catch up.
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::error::RDKafkaErrorCode::QueueFull)
                        ),
                        "producing: {e}"
                    );
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("all produced");
}
