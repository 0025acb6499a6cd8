//! File source tests: reading and positions, batching, acknowledgements and checkpoints,
//! resuming, follow mode, errors. Every wait is wrapped in a timeout.

use std::io::Write as _;
use std::path::Path;

use super::*;
use crate::checkpoint::{Checkpoint, FileCheckpointStore};
use crate::source::ledger::ForwardStats;
use crate::source::Position;

const BOUND: Duration = Duration::from_secs(10);

fn cfg(paths: Vec<PathBuf>) -> FileSourceConfig {
    let mut c = FileSourceConfig::new("s", paths);
    c.commit_interval = Duration::from_millis(10);
    c.poll_interval = Duration::from_millis(20);
    c.batch_max_wait = Duration::from_millis(20);
    c
}

fn store(dir: &Path) -> Arc<dyn CheckpointStore> {
    Arc::new(FileCheckpointStore::open(dir.join("cp.json")).unwrap())
}

fn key(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// One delivered event: body, position, and the index of its batch.
#[derive(Debug)]
struct Got {
    body: String,
    pos: Position,
    batch: usize,
}

/// Runs a non-follow source to its end, acknowledging batch `n` if `deliver(n)` (failing it
/// otherwise); returns the events and the source's final counters.
async fn collect(
    c: FileSourceConfig,
    store: Option<Arc<dyn CheckpointStore>>,
    deliver: impl Fn(usize) -> bool,
) -> (Vec<Got>, ForwardStats) {
    let (tx, mut rx) = mpsc::channel(2);
    let (_trigger, shutdown) = crate::shutdown::channel();
    let src = FileSource::new(c, store);
    let stats = src.stats();
    let task = tokio::spawn(Box::new(src).run(tx, shutdown));
    let mut got = Vec::new();
    let mut n = 0;
    while let Some(batch) = tokio::time::timeout(BOUND, rx.recv())
        .await
        .expect("a batch or the end in time")
    {
        for e in &batch.events {
            got.push(Got {
                body: String::from_utf8(e.body.clone()).unwrap(),
                pos: e.position.clone(),
                batch: n,
            });
        }
        if deliver(n) {
            batch.ack.ack();
        } else {
            batch.ack.fail();
        }
        n += 1;
    }
    tokio::time::timeout(BOUND, task)
        .await
        .expect("returns in time")
        .unwrap()
        .unwrap();
    (got, stats.snapshot())
}

fn bodies(got: &[Got]) -> Vec<&str> {
    got.iter().map(|g| g.body.as_str()).collect()
}

#[tokio::test]
async fn reads_the_files_of_a_directory_in_name_order_with_exact_positions() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("b.ndjson"), "b1\n\r\n\nb2").unwrap();
    std::fs::write(input.join("a.ndjson"), "a1\r\n\na2\n").unwrap();
    std::fs::create_dir(input.join("sub")).unwrap();
    std::fs::write(
        input.join("sub").join("c.ndjson"),
        "not read: not recursive\n",
    )
    .unwrap();

    let (got, stats) = collect(cfg(vec![input.clone()]), None, |_| true).await;
    let (a, b) = (key(&input.join("a.ndjson")), key(&input.join("b.ndjson")));
    let seen: Vec<(&str, &str, i64, i64)> = got
        .iter()
        .map(|g| {
            (
                g.body.as_str(),
                &*g.pos.partition,
                g.pos.offset,
                g.pos.sequence_number,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("a1", a.as_str(), 0, 0),
            // "a1\r\n" is 4 bytes, the empty line 1 byte.
            ("a2", a.as_str(), 5, 2),
            ("b1", b.as_str(), 0, 0),
            // "\r\n" (empty after the \r is stripped) and "\n" are skipped; the last line has
            // no newline and is still a body.
            ("b2", b.as_str(), 6, 3),
        ]
    );
    assert!(got.iter().all(|g| g.pos.enqueued_time.is_none()));
    assert_eq!(
        (stats.events, stats.batches, stats.batches_acked),
        (4, 1, 1)
    );
}

#[tokio::test]
async fn batches_honour_their_limits_and_checkpoints_hold_each_files_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let (f1, f2) = (dir.path().join("one"), dir.path().join("two"));
    std::fs::write(
        &f1,
        (0..10).map(|i| format!("line{i}\n")).collect::<String>(),
    )
    .unwrap();
    std::fs::write(&f2, "x\nyy\n").unwrap();
    let cp = store(dir.path());

    let mut c = cfg(vec![f1.clone(), f2.clone()]);
    c.batch_max_events = 3;
    let (got, stats) = collect(c, Some(cp.clone()), |_| true).await;
    assert_eq!(got.len(), 12);
    let mut sizes = vec![0; got.last().unwrap().batch + 1];
    for g in &got {
        sizes[g.batch] += 1;
    }
    assert_eq!(sizes, [3, 3, 3, 3], "a batch may span files");
    assert!(stats.commits >= 1);
    assert_eq!(
        cp.load("s").await.unwrap().get(&key(&f1)).cloned(),
        Some(Checkpoint {
            offset: 54,
            sequence_number: 9
        })
    );
    assert_eq!(
        cp.load("s").await.unwrap().get(&key(&f2)).cloned(),
        Some(Checkpoint {
            offset: 2,
            sequence_number: 1
        })
    );

    // The byte limit: a batch closes before it would exceed it; a longer line goes alone.
    let f3 = dir.path().join("three");
    std::fs::write(&f3, "aaaa\nbbbb\ncccccccccccc\ndd\n").unwrap();
    let mut c = cfg(vec![f3]);
    c.batch_max_bytes = 8;
    let (got, _) = collect(c, None, |_| true).await;
    let batches: Vec<(usize, &str)> = got.iter().map(|g| (g.batch, g.body.as_str())).collect();
    assert_eq!(
        batches,
        [(0, "aaaa"), (0, "bbbb"), (1, "cccccccccccc"), (2, "dd")]
    );
}

#[tokio::test]
async fn a_restart_resumes_strictly_after_the_checkpointed_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in");
    std::fs::write(&file, "l0\n\nl2\nl3\n").unwrap();
    let cp = store(dir.path());

    let (first, _) = collect(cfg(vec![file.clone()]), Some(cp.clone()), |_| true).await;
    assert_eq!(bodies(&first), ["l0", "l2", "l3"]);
    append(&file, "l4\r\n\nl6\n");
    let (second, _) = collect(cfg(vec![file.clone()]), Some(cp.clone()), |_| true).await;
    let seen: Vec<(&str, i64, i64)> = second
        .iter()
        .map(|g| (g.body.as_str(), g.pos.offset, g.pos.sequence_number))
        .collect();
    assert_eq!(
        seen,
        [("l4", 10, 4), ("l6", 15, 6)],
        "no duplicate, no gap, numbering continues"
    );

    // A checkpoint in the middle (as a crash would leave it): the next line is the first.
    cp.save(
        "s",
        &[(
            key(&file),
            Checkpoint {
                offset: 3,
                sequence_number: 1,
            },
        )],
    )
    .await
    .unwrap();
    let (third, _) = collect(cfg(vec![file.clone()]), Some(cp.clone()), |_| true).await;
    assert_eq!(bodies(&third), ["l2", "l3", "l4", "l6"]);
    assert_eq!(third[0].pos.sequence_number, 2);
    assert_eq!(
        cp.load("s").await.unwrap().get(&key(&file)).cloned(),
        Some(Checkpoint {
            offset: 15,
            sequence_number: 6
        })
    );
}

#[tokio::test]
async fn an_undelivered_batch_stops_the_checkpoint_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in");
    std::fs::write(&file, "a\nb\nc\nd\n").unwrap();
    let cp = store(dir.path());
    let mut c = cfg(vec![file.clone()]);
    c.batch_max_events = 1;

    let (_, stats) = collect(c, Some(cp.clone()), |n| n != 2).await;
    assert_eq!((stats.batches_acked, stats.batches_failed), (3, 1));
    assert_eq!(
        cp.load("s").await.unwrap().get(&key(&file)).cloned(),
        Some(Checkpoint { offset: 2, sequence_number: 1 }),
        "batch 1 (line b) committed; batch 2 (line c) failed, so nothing past it, though d was acknowledged"
    );
    let (again, _) = collect(cfg(vec![file.clone()]), Some(cp), |_| true).await;
    assert_eq!(
        bodies(&again),
        ["c", "d"],
        "the undelivered line is read again"
    );
}

#[tokio::test]
async fn a_file_that_no_longer_matches_its_checkpoint_is_read_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in");
    std::fs::write(&file, "x\ny\n").unwrap();
    let cp = store(dir.path());

    // Shorter than the checkpoint (truncated).
    cp.save(
        "s",
        &[(
            key(&file),
            Checkpoint {
                offset: 100,
                sequence_number: 50,
            },
        )],
    )
    .await
    .unwrap();
    let (got, _) = collect(cfg(vec![file.clone()]), Some(cp.clone()), |_| true).await;
    assert_eq!(bodies(&got), ["x", "y"]);
    assert_eq!(got[0].pos.sequence_number, 0);

    // Long enough, but the offset is not a line start (replaced).
    std::fs::write(&file, "xxxxxx\nz\n").unwrap();
    cp.save(
        "s",
        &[(
            key(&file),
            Checkpoint {
                offset: 2,
                sequence_number: 1,
            },
        )],
    )
    .await
    .unwrap();
    let (got, _) = collect(cfg(vec![file.clone()]), Some(cp.clone()), |_| true).await;
    assert_eq!(bodies(&got), ["xxxxxx", "z"]);
}

#[tokio::test]
async fn follow_mode_delivers_appended_lines_and_new_files_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("logs");
    std::fs::create_dir(&watched).unwrap();
    let file = watched.join("a");
    std::fs::write(&file, "first\n").unwrap();
    let cp = store(dir.path());
    let mut c = cfg(vec![watched.clone()]);
    c.follow = true;
    let (tx, mut rx) = mpsc::channel(2);
    let (trigger, shutdown) = crate::shutdown::channel();
    let src = FileSource::new(c, Some(cp.clone()));
    let stats = src.stats();
    let task = tokio::spawn(Box::new(src).run(tx, shutdown));

    let mut got: Vec<(String, i64)> = Vec::new();
    let take = |b: Batch, got: &mut Vec<(String, i64)>| {
        got.extend(b.events.iter().map(|e| {
            (
                String::from_utf8(e.body.clone()).unwrap(),
                e.position.offset,
            )
        }));
        b.ack.ack();
    };
    let b = tokio::time::timeout(BOUND, rx.recv())
        .await
        .unwrap()
        .unwrap();
    take(b, &mut got);

    append(&file, "second\npart");
    std::fs::write(watched.join("b"), "other\n").unwrap();
    while got.len() < 3 {
        let b = tokio::time::timeout(BOUND, rx.recv())
            .await
            .expect("appended lines arrive")
            .unwrap();
        take(b, &mut got);
    }
    append(&file, "ial\n");
    while got.len() < 4 {
        let b = tokio::time::timeout(BOUND, rx.recv())
            .await
            .expect("the completed line arrives")
            .unwrap();
        take(b, &mut got);
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("first".into(), 0),
            ("other".into(), 0),
            ("partial".into(), 13),
            ("second".into(), 6)
        ],
        "a partial last line waits for its newline"
    );

    // Truncation: read again from the start.
    std::fs::write(&file, "new\n").unwrap();
    let b = tokio::time::timeout(BOUND, rx.recv())
        .await
        .expect("the rewritten file is read")
        .unwrap();
    assert_eq!(b.events[0].body, b"new");
    assert_eq!(
        (
            b.events[0].position.offset,
            b.events[0].position.sequence_number
        ),
        (0, 0)
    );
    b.ack.ack();

    trigger.trigger();
    let started = std::time::Instant::now();
    tokio::time::timeout(BOUND, task)
        .await
        .expect("stops in time")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no outstanding batch: no waiting"
    );
    assert_eq!(
        cp.load("s").await.unwrap().get(&key(&file)).cloned(),
        Some(Checkpoint {
            offset: 0,
            sequence_number: 0
        })
    );
    assert_eq!(
        cp.load("s")
            .await
            .unwrap()
            .get(&key(&watched.join("b")))
            .cloned(),
        Some(Checkpoint {
            offset: 0,
            sequence_number: 0
        })
    );
    assert_eq!(stats.snapshot().events, 5);
}

#[tokio::test]
async fn shutdown_waits_a_bounded_time_for_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in");
    std::fs::write(&file, "a\nb\n").unwrap();
    let cp = store(dir.path());
    let mut c = cfg(vec![file.clone()]);
    c.follow = true;
    c.batch_max_events = 1;
    c.ack_wait = Duration::from_millis(300);
    let (tx, mut rx) = mpsc::channel(2);
    let (trigger, shutdown) = crate::shutdown::channel();
    let task = tokio::spawn(Box::new(FileSource::new(c, Some(cp.clone()))).run(tx, shutdown));
    let first = tokio::time::timeout(BOUND, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(BOUND, rx.recv())
        .await
        .unwrap()
        .unwrap();
    first.ack.ack();
    // `second` is held: never acknowledged before the source gives up.
    trigger.trigger();
    let started = std::time::Instant::now();
    tokio::time::timeout(BOUND, task)
        .await
        .expect("stops in time")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        cp.load("s").await.unwrap().get(&key(&file)).cloned(),
        Some(Checkpoint {
            offset: 0,
            sequence_number: 0
        })
    );
    drop(second);
}

#[tokio::test]
async fn a_missing_input_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-file");
    let (tx, _rx) = mpsc::channel(1);
    let (_t, shutdown) = crate::shutdown::channel();
    let run = Box::new(FileSource::new(cfg(vec![missing.clone()]), None)).run(tx, shutdown);
    let err = tokio::time::timeout(BOUND, run).await.unwrap().unwrap_err();
    assert!(format!("{err:#}").contains(&key(&missing)), "{err:#}");
    assert!(matches!(
        err.downcast_ref::<FileSourceError>(),
        Some(FileSourceError::Missing { .. })
    ));
}

#[tokio::test]
async fn overlong_lines_are_cut_but_positions_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in");
    std::fs::write(&file, "0123456789\r\nok\n").unwrap();
    let mut c = cfg(vec![file]);
    c.max_line_bytes = 4;
    let (got, _) = collect(c, None, |_| true).await;
    let seen: Vec<(&str, i64, i64)> = got
        .iter()
        .map(|g| (g.body.as_str(), g.pos.offset, g.pos.sequence_number))
        .collect();
    assert_eq!(seen, [("0123", 0, 0), ("ok", 12, 1)]);
}

/// Every event of a non-follow source that rebuilds window state (`Resume` enabled, no
/// snapshot restored), as (body, replayed).
async fn rebuild(c: FileSourceConfig, store: Arc<dyn CheckpointStore>) -> Vec<(String, bool)> {
    let (tx, mut rx) = mpsc::channel(2);
    let (_trigger, shutdown) = crate::shutdown::channel();
    let mut src = FileSource::new(c, Some(store));
    src.resume = Arc::new(Resume::enabled());
    let task = tokio::spawn(Box::new(src).run(tx, shutdown));
    let mut got = Vec::new();
    while let Some(batch) = tokio::time::timeout(BOUND, rx.recv())
        .await
        .expect("a batch or the end in time")
    {
        for e in &batch.events {
            got.push((String::from_utf8(e.body.clone()).unwrap(), e.replayed));
        }
        batch.ack.ack();
    }
    tokio::time::timeout(BOUND, task)
        .await
        .expect("returns in time")
        .unwrap()
        .unwrap();
    got
}

#[tokio::test]
async fn a_rebuild_from_the_start_marks_the_lines_its_checkpoint_covers_as_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in");
    std::fs::write(&file, "a\nb\nc\nd\n").unwrap();
    let cp = store(dir.path());
    let at_b = Checkpoint {
        offset: 2,
        sequence_number: 1,
    };
    cp.save("s", &[(key(&file), at_b.clone())]).await.unwrap();

    // The checkpoint directory has no window state: the file is read from its start, and
    // what the checkpoint covers was forwarded and dead-lettered in an earlier run.
    let got = rebuild(cfg(vec![file.clone()]), cp.clone()).await;
    let want = [("a", true), ("b", true), ("c", false), ("d", false)];
    assert_eq!(got, want.map(|(b, r)| (b.to_string(), r)));

    // A file that no longer matches its checkpoint is new throughout.
    std::fs::write(&file, "xxxxxx\nz\n").unwrap();
    cp.save("s", &[(key(&file), at_b)]).await.unwrap();
    let got = rebuild(cfg(vec![file.clone()]), cp).await;
    let want = [("xxxxxx", false), ("z", false)];
    assert_eq!(got, want.map(|(b, r)| (b.to_string(), r)));
}
