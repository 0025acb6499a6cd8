//! The local-file checkpoint store: one JSON file holding every source's partitions,
//!
//! ```json
//! {"<source>": {"<partition>": {"offset": 0, "sequence_number": 0, "updated": "<RFC 3339>"}}}
//! ```
//!
//! Every save re-reads the file, merges its updates in and replaces the file atomically
//! (write `<path>.tmp`, fsync, rename over `<path>`, fsync the directory), so a crash leaves
//! either the old or the new file, never a torn one. A missing file means "no checkpoints";
//! an empty one too (e.g. created by `touch`). A file that is not valid JSON of this shape is
//! an error naming the path, and is never overwritten.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::{Checkpoint, CheckpointError, CheckpointStore};
use crate::time::format_datetime;

/// One stored partition. Unknown fields are tolerated so that a newer hubwatch's file still
/// loads; `updated` is informational (for operators), hence optional on reading.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    offset: i64,
    sequence_number: i64,
    #[serde(default)]
    updated: String,
}

/// Source name → partition → entry. `BTreeMap`s so the file's order is stable and diffable.
type Document = BTreeMap<String, BTreeMap<String, Entry>>;

/// Cheap to clone: clones share the cache and its lock.
#[derive(Clone)]
pub struct FileCheckpointStore {
    path: PathBuf,
    /// The document as last read or written. A `std::sync::Mutex` because the store is shared
    /// by every source (`Arc<dyn CheckpointStore>`) and each save is a read-merge-write of the
    /// whole file: the lock makes those sequences one at a time, so two sources committing
    /// together cannot lose each other's entries. The critical section is synchronous file
    /// I/O with no `.await` inside (callers run saves on blocking threads), so an async mutex
    /// would buy nothing.
    cache: Arc<Mutex<Document>>,
}

impl FileCheckpointStore {
    /// Opens the store at `path`, reading it once so that a corrupt file is reported at
    /// start-up rather than at the first commit. The file need not exist.
    pub fn open(path: impl Into<PathBuf>) -> Result<FileCheckpointStore, CheckpointError> {
        let path = path.into();
        let doc = read_document(&path)?;
        Ok(FileCheckpointStore {
            path,
            cache: Arc::new(Mutex::new(doc)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Document> {
        // A panic while the lock was held cannot have left a torn file (the rename is atomic)
        // and the cache is only replaced after a successful write, so a poisoned lock still
        // guards consistent data.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for FileCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCheckpointStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileCheckpointStore {
    /// From the copy read at `open` (or written since): loads happen at start-up, and
    /// re-reading the file for them would be wasted I/O.
    pub fn load_sync(&self, source: &str) -> HashMap<String, Checkpoint> {
        let doc = self.lock();
        doc.get(source)
            .map(|partitions| {
                partitions
                    .iter()
                    .map(|(p, e)| {
                        (
                            p.clone(),
                            Checkpoint {
                                offset: e.offset,
                                sequence_number: e.sequence_number,
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn save_sync(
        &self,
        source: &str,
        updates: &[(String, Checkpoint)],
    ) -> Result<(), CheckpointError> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut cache = self.lock();
        // Merge with the file as it is now, not with the cache: an operator may have edited
        // or removed entries of other sources since we opened it.
        let mut doc = read_document(&self.path)?;
        let updated = now_rfc3339();
        let partitions = doc.entry(source.to_string()).or_default();
        for (partition, cp) in updates {
            partitions.insert(
                partition.clone(),
                Entry {
                    offset: cp.offset,
                    sequence_number: cp.sequence_number,
                    updated: updated.clone(),
                },
            );
        }
        write_atomically(&self.path, &doc)?;
        *cache = doc;
        Ok(())
    }
}

#[async_trait::async_trait]
impl CheckpointStore for FileCheckpointStore {
    async fn load(&self, source: &str) -> Result<HashMap<String, Checkpoint>, CheckpointError> {
        Ok(self.load_sync(source))
    }

    /// The write and its `fsync` run on the blocking pool, off the runtime's workers.
    async fn save(
        &self,
        source: &str,
        updates: &[(String, Checkpoint)],
    ) -> Result<(), CheckpointError> {
        let (me, source, updates) = (self.clone(), source.to_string(), updates.to_vec());
        match tokio::task::spawn_blocking(move || me.save_sync(&source, &updates)).await {
            Ok(r) => r,
            Err(e) => Err(CheckpointError::Io {
                path: self.path.clone(),
                op: "running the write",
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }
}

fn read_document(path: &Path) -> Result<Document, CheckpointError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Document::new()),
        Err(e) => {
            return Err(CheckpointError::Io {
                path: path.to_path_buf(),
                op: "reading",
                source: e,
            })
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Document::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        source: e,
    })
}

/// `<path>.tmp`: beside the target, so the rename stays within one file system (and so is
/// atomic).
fn tmp_path(path: &Path) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn write_atomically(path: &Path, doc: &Document) -> Result<(), CheckpointError> {
    let io_err = |op: &'static str| {
        move |e: io::Error| CheckpointError::Io {
            path: path.to_path_buf(),
            op,
            source: e,
        }
    };
    let mut json = serde_json::to_vec_pretty(doc).map_err(|e| {
        // Serializing maps of strings and integers cannot fail; report it as I/O if it ever does.
        CheckpointError::Io {
            path: path.to_path_buf(),
            op: "encoding",
            source: io::Error::other(e),
        }
    })?;
    json.push(b'\n');

    let tmp = tmp_path(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err("creating the temporary file"))?;
    f.write_all(&json)
        .map_err(io_err("writing the temporary file"))?;
    // The data must be on disk before the rename makes it the checkpoint file; otherwise a
    // crash could leave a renamed but empty file.
    f.sync_all().map_err(io_err("syncing the temporary file"))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err("renaming the temporary file"))?;
    sync_dir(path).map_err(io_err("syncing the directory"))?;
    Ok(())
}

/// Makes the rename itself durable. Directories cannot be opened for syncing on Windows,
/// where the rename is durable enough for our purpose.
fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The wall clock in RFC 3339 (`…T…Z`, seven fraction digits, as KQL prints datetimes).
fn now_rfc3339() -> String {
    format_datetime(crate::time::now_ticks())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(offset: i64, sequence_number: i64) -> Checkpoint {
        Checkpoint {
            offset,
            sequence_number,
        }
    }

    #[test]
    fn missing_file_means_no_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCheckpointStore::open(dir.path().join("cp.json")).unwrap();
        assert_eq!(store.load_sync("s").get("p").cloned(), None);
    }

    #[test]
    fn save_then_load_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        let store = FileCheckpointStore::open(&path).unwrap();
        store
            .save_sync("s", &[("a".into(), cp(10, 1)), ("b".into(), cp(20, 2))])
            .unwrap();
        assert_eq!(store.load_sync("s").get("a").cloned(), Some(cp(10, 1)));
        assert!(
            !tmp_path(&path).exists(),
            "the temporary file is renamed away"
        );

        let reopened = FileCheckpointStore::open(&path).unwrap();
        assert_eq!(reopened.load_sync("s").get("b").cloned(), Some(cp(20, 2)));
        assert_eq!(reopened.load_sync("other").get("b").cloned(), None);

        let v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let updated = v["s"]["a"]["updated"].as_str().unwrap();
        assert!(
            crate::time::parse_datetime(updated).is_some(),
            "updated is RFC 3339: {updated}"
        );
        assert_eq!(v["s"]["a"]["offset"], 10);
        assert_eq!(v["s"]["a"]["sequence_number"], 1);
    }

    #[test]
    fn saves_merge_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        // Another writer (a second store, standing for an operator or another process).
        let other = FileCheckpointStore::open(&path).unwrap();
        let store = FileCheckpointStore::open(&path).unwrap();
        other.save_sync("t", &[("x".into(), cp(5, 5))]).unwrap();
        store.save_sync("s", &[("a".into(), cp(1, 1))]).unwrap();
        store.save_sync("s", &[("b".into(), cp(2, 2))]).unwrap();
        store.save_sync("s", &[("a".into(), cp(3, 3))]).unwrap();

        let reopened = FileCheckpointStore::open(&path).unwrap();
        assert_eq!(reopened.load_sync("t").get("x").cloned(), Some(cp(5, 5)));
        assert_eq!(reopened.load_sync("s").get("a").cloned(), Some(cp(3, 3)));
        assert_eq!(reopened.load_sync("s").get("b").cloned(), Some(cp(2, 2)));
    }

    #[test]
    fn corrupt_file_is_an_error_naming_the_path_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.json");
        fs::write(&path, b"{\"s\": [").unwrap();
        let err = FileCheckpointStore::open(&path).unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }));
        assert!(!err.is_retryable());
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );

        // Corrupted after opening: the save fails and leaves the file as it was.
        fs::write(&path, b"").unwrap();
        let store = FileCheckpointStore::open(&path).unwrap();
        fs::write(&path, b"[1, 2]").unwrap();
        let err = store.save_sync("s", &[("a".into(), cp(1, 1))]).unwrap_err();
        assert!(err.to_string().contains("cp.json"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"[1, 2]");
    }

    #[test]
    fn unreadable_path_is_a_retryable_io_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be.
        let err = FileCheckpointStore::open(dir.path()).unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
    }
}
