use hubwatch::emulator::{Emulator, EmulatorConfig};
use hubwatch::shutdown;
use hubwatch::source::amqp::{AmqpSource, AmqpSourceConfig, StartPosition};
use hubwatch::source::Source;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput() {
    let parts = 4;
    let n = 100_000usize;
    let emulator = Emulator::start(EmulatorConfig::single_hub("hub", parts))
        .await
        .unwrap();
    let body = vec![b'x'; 1000];
    for _ in 0..n {
        emulator.publish("hub", None, body.clone()).unwrap();
    }
    let cfg = AmqpSourceConfig::with_connection_string(
        "eh",
        emulator.connection_string("hub"),
        "hub",
        StartPosition::Earliest,
    );
    let source = AmqpSource::new(cfg, None);
    let (trigger, sd) = shutdown::channel();
    let (tx, mut rx) = mpsc::channel(16);
    let t = Instant::now();
    let task = tokio::spawn(Box::new(source).run(tx, sd));
    let mut got = 0;
    let mut first = None;
    while got < n {
        let b = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if first.is_none() {
            first = Some(t.elapsed());
        }
        got += b.events.len();
        b.ack.ack();
    }
    let el = t.elapsed();
    eprintln!("{n} events of 1000 B over {parts} partitions in {el:?} (first batch after {first:?}): {:.0} events/s", n as f64 / (el - first.unwrap()).as_secs_f64());
    trigger.trigger();
    drop(rx);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
