//! File source: reading, batching, acknowledgements, checkpoints, follow mode.

use super::*;
use crate::checkpoint::FileCheckpointStore;

fn cfg(name: &str, paths: Vec<PathBuf>) -> FileSourceConfig {
    let mut c = FileSourceConfig::new(name, paths);
    c.commit_interval = Duration::from_millis(0);
    c.poll_interval = Duration::from_millis(20);
    c.batch_max_wait = Duration::from_millis(20);
    c
}

/// Runs a source to its end, acknowledging every batch (or not, per `deliver`), and returns
/// the events it sent.
async fn collect(
    c: FileSourceConfig,
    store: Option<Arc<dyn CheckpointStore>>,
    deliver: impl Fn(u64) -> bool + Send + 'static,
) -> Vec<(Vec<u8>, Position, u64)> {
    let (tx, mut rx) = mpsc::channel(4);
    let (_trigger, shutdown) = crate::shutdown::channel();
    let src = Box::new(FileSource::new(c, store));
    let task = tokio::spawn(src.run(tx, shutdown));
    let mut out = Vec::new();
    let mut n = 0;
    while let Some(batch) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("bounded")
    {
        for e in &batch.events {
            out.push((e.body.clone(), e.position.clone(), n));
        }
        if deliver(n) {
            batch.ack.ack();
        } else {
            batch.ack.fail();
        }
        n += 1;
    }
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn reads_a_directory_in_name_order_skipping_empty_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.ndjson"), "b1\r\n\nb2").unwrap();
    std::fs::write(dir.path().join("a.ndjson"), "a1\na2\n").unwrap();
    let events = collect(cfg("s", vec![dir.path().to_path_buf()]), None, |_| true).await;
    let bodies: Vec<&[u8]> = events.iter().map(|e| e.0.as_slice()).collect();
    assert_eq!(bodies, [&b"a1"[..], b"a2", b"b1", b"b2"]);
    let b2 = &events[3].1;
    assert_eq!(
        (b2.offset, b2.sequence_number),
        (5, 2),
        "b2 starts at byte 5, line 2"
    );
    assert!(b2.partition.ends_with("b.ndjson"));
}

#[tokio::test]
async fn batches_respect_their_limits_and_checkpoints_hold_the_last_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.ndjson");
    let text: String = (0..10).map(|i| format!("line{i}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let store: Arc<dyn CheckpointStore> =
        Arc::new(FileCheckpointStore::open(dir.path().join("cp.json")).unwrap());
    let mut c = cfg("s", vec![file.clone()]);
    c.batch_max_events = 3;
    let events = collect(c, Some(store.clone()), |_| true).await;
    assert_eq!(events.len(), 10);
    assert_eq!(
        events.iter().map(|e| e.2).max(),
        Some(3),
        "4 batches of at most 3"
    );
    let cp = store
        .load("s", &file.display().to_string())
        .unwrap()
        .unwrap();
    assert_eq!(cp.sequence_number, 9);
    assert_eq!(cp.offset, 9 * 6);

    // A restart resumes strictly after the checkpoint: nothing is read again.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all_sync(b"line10\n");
    let again = collect(cfg("s", vec![file.clone()]), Some(store.clone()), |_| true).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].0, b"line10");
    assert_eq!(again[0].1.sequence_number, 10);
}

#[tokio::test]
async fn an_undelivered_batch_stops_the_checkpoint_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.ndjson");
    std::fs::write(&file, "a\nb\nc\nd\n").unwrap();
    let store: Arc<dyn CheckpointStore> =
        Arc::new(FileCheckpointStore::open(dir.path().join("cp.json")).unwrap());
    let mut c = cfg("s", vec![file.clone()]);
    c.batch_max_events = 1;
    collect(c, Some(store.clone()), |n| n != 2).await;
    let cp = store
        .load("s", &file.display().to_string())
        .unwrap()
        .unwrap();
    assert_eq!(
        cp.sequence_number, 1,
        "batch 2 (line 2) failed: the position stays at line 1"
    );
    let again = collect(cfg("s", vec![file.clone()]), Some(store), |_| true).await;
    let bodies: Vec<&[u8]> = again.iter().map(|e| e.0.as_slice()).collect();
    assert_eq!(
        bodies,
        [&b"c"[..], b"d"],
        "the undelivered line is read again"
    );
}

#[tokio::test]
async fn a_file_shorter_than_its_checkpoint_is_read_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.ndjson");
    std::fs::write(&file, "x\n").unwrap();
    let store: Arc<dyn CheckpointStore> =
        Arc::new(FileCheckpointStore::open(dir.path().join("cp.json")).unwrap());
    store
        .save(
            "s",
            &[(
                file.display().to_string(),
                Checkpoint {
                    offset: 100,
                    sequence_number: 50,
                },
            )],
        )
        .unwrap();
    let events = collect(cfg("s", vec![file]), Some(store), |_| true).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1.sequence_number, 0);
}

#[tokio::test]
async fn follow_mode_delivers_appended_lines_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.ndjson");
    std::fs::write(&file, "first\n").unwrap();
    let mut c = cfg("s", vec![dir.path().to_path_buf()]);
    c.follow = true;
    let (tx, mut rx) = mpsc::channel(4);
    let (trigger, shutdown) = crate::shutdown::channel();
    let task = tokio::spawn(Box::new(FileSource::new(c, None)).run(tx, shutdown));
    let mut got = Vec::new();
    let b = recv(&mut rx).await;
    got.extend(b.events.iter().map(|e| e.body.clone()));
    b.ack.ack();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all_sync(b"second\npart");
    std::fs::write(dir.path().join("new.ndjson"), "other\n").unwrap();
    while got.len() < 3 {
        let b = recv(&mut rx).await;
        got.extend(b.events.iter().map(|e| e.body.clone()));
        b.ack.ack();
    }
    got.sort();
    assert_eq!(
        got,
        [b"first".to_vec(), b"other".to_vec(), b"second".to_vec()],
        "the partial last line waits"
    );
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops within 10 s")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_missing_input_is_an_error_naming_it() {
    let (tx, _rx) = mpsc::channel(1);
    let (_t, shutdown) = crate::shutdown::channel();
    let err = Box::new(FileSource::new(
        cfg("s", vec!["/no/such/file".into()]),
        None,
    ))
    .run(tx, shutdown)
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("/no/such/file"), "{err:#}");
}

#[tokio::test]
async fn overlong_lines_are_cut_but_positions_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.ndjson");
    std::fs::write(&file, "0123456789\nok\n").unwrap();
    let mut c = cfg("s", vec![file]);
    c.max_line_bytes = 4;
    let events = collect(c, None, |_| true).await;
    assert_eq!(events[0].0, b"0123");
    assert_eq!(events[1].0, b"ok");
    assert_eq!(events[1].1.offset, 11);
}

trait WriteAllSync {
    fn write_all_sync(self, b: &[u8]);
}

impl WriteAllSync for std::fs::File {
    fn write_all_sync(mut self, b: &[u8]) {
        use std::io::Write;
        self.write_all(b).unwrap();
        self.sync_all().unwrap();
    }
}

async fn recv(rx: &mut mpsc::Receiver<Batch>) -> Batch {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("bounded")
        .expect("open")
}
