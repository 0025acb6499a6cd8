//! The local-directory state store: one file per partition,
//! `<dir>/state/<source>/<partition>.snap`, names percent-encoded (a file source's
//! partitions are paths). Each save writes `<file>.<pid>.tmp`, syncs it, renames it over
//! the snapshot and syncs the directory, so a crash leaves the old snapshot or the new one,
//! never a torn one. A file that does not decode is reported and left as it is.
//!
//! I/O is synchronous, run on the blocking pool: a snapshot write is a file write plus
//! `fsync`, and pretending it is async would only hide that.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{Snapshot, StateError, StateStore};

/// Everything but letters, digits, `-` and `_` is encoded: no separators, no `.` (so no
/// name is `.` or `..`), and the same bytes on every file system.
const NAME: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');
const SUFFIX: &str = ".snap";

#[derive(Debug, Clone)]
pub struct LocalStateStore {
    /// `<dir>/state`.
    root: PathBuf,
}

impl LocalStateStore {
    /// A store under `dir` (created on the first save).
    pub fn new(dir: impl AsRef<Path>) -> LocalStateStore {
        LocalStateStore {
            root: dir.as_ref().join("state"),
        }
    }

    fn source_dir(&self, source: &str) -> PathBuf {
        self.root
            .join(utf8_percent_encode(source, NAME).to_string())
    }

    /// The file of one partition's snapshot.
    pub fn path(&self, source: &str, partition: &str) -> PathBuf {
        let mut name = utf8_percent_encode(partition, NAME).to_string();
        name.push_str(SUFFIX);
        self.source_dir(source).join(name)
    }
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        location: path.display().to_string(),
        op,
        source,
    }
}

fn list(dir: &Path) -> Result<Vec<String>, StateError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir, "listing")(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir, "listing"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue; // `.tmp` leftovers of a crash, and anything an operator put there
        };
        if let Ok(partition) = percent_decode_str(name).decode_utf8() {
            out.push(partition.into_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn read(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "reading")(e)),
    }
}

/// Writes each snapshot beside its target and renames it into place, then makes the
/// renames durable (one directory sync per source directory).
fn write_all(store: &LocalStateStore, snapshots: &[Snapshot]) -> Result<(), StateError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for s in snapshots {
        let dir = store.source_dir(&s.source);
        if !dirs.contains(&dir) {
            fs::create_dir_all(&dir).map_err(io_err(&dir, "creating the directory"))?;
            dirs.push(dir);
        }
        let path = store.path(&s.source, &s.partition);
        // A name of this process's own: replicas sharing the directory never write into
        // each other's temporary file.
        let mut tmp = path.clone().into_os_string();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err(&tmp, "creating the temporary file"))?;
        f.write_all(&s.bytes)
            .map_err(io_err(&tmp, "writing the temporary file"))?;
        // On disk before the rename makes it the snapshot; otherwise a crash could leave a
        // renamed but empty file.
        f.sync_all()
            .map_err(io_err(&tmp, "syncing the temporary file"))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io_err(&path, "renaming the temporary file"))?;
    }
    for dir in &dirs {
        sync_dir(dir).map_err(io_err(dir, "syncing the directory"))?;
    }
    if !dirs.is_empty() {
        // A new source directory's own entry must be durable too.
        sync_dir(&store.root).map_err(io_err(&store.root, "syncing the directory"))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Runs blocking file I/O on the blocking pool.
async fn blocking<T: Send + 'static>(
    what: String,
    f: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StateError::Io {
            location: what,
            op: "running the file task",
            source: io::Error::other(e.to_string()),
        }),
    }
}

#[async_trait]
impl StateStore for LocalStateStore {
    async fn partitions(&self, source: &str) -> Result<Vec<String>, StateError> {
        let dir = self.source_dir(source);
        blocking(dir.display().to_string(), move || list(&dir)).await
    }

    async fn load(&self, source: &str, partition: &str) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.path(source, partition);
        blocking(path.display().to_string(), move || read(&path)).await
    }

    async fn save(&self, snapshots: Arc<[Snapshot]>) -> Result<(), StateError> {
        if snapshots.is_empty() {
            return Ok(());
        }
        let store = self.clone();
        blocking(self.root.display().to_string(), move || {
            write_all(&store, &snapshots)
        })
        .await
    }

    fn location(&self, source: &str, partition: &str) -> String {
        self.path(source, partition).display().to_string()
    }

    async fn versions(&self, source: &str) -> Result<Vec<(String, String)>, StateError> {
        let store = self.clone();
        let source = source.to_string();
        let dir = self.source_dir(&source);
        blocking(dir.display().to_string(), move || {
            let mut out = Vec::new();
            for partition in list(&dir)? {
                let path = store.path(&source, &partition);
                // Renamed into place whole: a new snapshot is a new file, with its own
                // length and modification time.
                match fs::metadata(&path) {
                    Ok(m) => {
                        let modified = m
                            .modified()
                            .ok()
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .map_or(0, |d| d.as_nanos());
                        out.push((partition, format!("{}-{modified}", m.len())));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path, "reading the metadata of")(e)),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn peek(&self, source: &str, partition: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.load(source, partition).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(source: &str, partition: &str, bytes: &[u8]) -> Snapshot {
        Snapshot {
            source: Arc::from(source),
            partition: Arc::from(partition),
            bytes: bytes.to_vec(),
        }
    }

    #[tokio::test]
    async fn saves_load_and_list_with_any_partition_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::new(dir.path());
        assert!(store.partitions("s").await.unwrap().is_empty());
        assert_eq!(store.load("s", "0").await.unwrap(), None);
        let names = ["0", "/data/exports/a b.ndjson", "..", "topic/3"];
        let snaps: Vec<_> = names.iter().map(|n| snap("s", n, n.as_bytes())).collect();
        store.save(snaps.into()).await.unwrap();
        store
            .save(Arc::from([snap("other", "0", b"x")]))
            .await
            .unwrap();
        let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        want.sort();
        assert_eq!(store.partitions("s").await.unwrap(), want);
        for n in names {
            assert_eq!(store.load("s", n).await.unwrap().unwrap(), n.as_bytes());
            let path = store.path("s", n);
            assert!(path.starts_with(dir.path().join("state")), "{path:?}");
            assert_eq!(path.parent().unwrap(), dir.path().join("state").join("s"));
        }
        // A save replaces the partition's snapshot whole and leaves no temporary file.
        store
            .save(Arc::from([snap("s", "0", b"newer")]))
            .await
            .unwrap();
        assert_eq!(store.load("s", "0").await.unwrap().unwrap(), b"newer");
        let leftovers = fs::read_dir(dir.path().join("state/s"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[tokio::test]
    async fn an_unwritable_directory_is_a_retryable_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the state directory should be.
        fs::write(dir.path().join("state"), b"").unwrap();
        let store = LocalStateStore::new(dir.path());
        let err = store
            .save(Arc::from([snap("s", "0", b"x")]))
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("state"), "{err}");
    }
}
