//! The file sink: routed rows appended to a file as NDJSON, synced at the end of every batch
//! (so a batch is acknowledged only once its rows are on disk). For a collector that tails
//! files (Filebeat, the Splunk forwarder, Fluent Bit), or for inspection.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::Sink;

pub struct FileSink {
    name: String,
    path: PathBuf,
    out: BufWriter<File>,
    /// Lines flushed since the last sync.
    pending: usize,
}

impl FileSink {
    /// Opens (creating, appending to) the file. A line a killed process left torn is
    /// ended first, so that only it is lost to a reader (the rows it held are sent again,
    /// never having been acknowledged).
    pub fn open(name: &str, path: &Path) -> io::Result<FileSink> {
        let file = crate::pipeline::dead_letter::open_lines(path)?;
        Ok(FileSink {
            name: name.to_string(),
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 16, file),
            pending: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, row: &super::Routed<'_>) -> io::Result<()> {
        self.out.write_all(row.json)?;
        self.out.write_all(b"\n")?;
        self.pending += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn sync_job(&mut self) -> io::Result<Option<super::SyncJob>> {
        if self.pending == 0 {
            return Ok(None);
        }
        self.out.flush()?;
        let file = self.out.get_ref().try_clone()?;
        self.pending = 0;
        Ok(Some(Box::new(move || file.sync_data())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_ended_before_new_lines_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":").unwrap();
        drop(FileSink::open("f", &path).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":\n"
        );
        drop(FileSink::open("f", &path).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":\n",
            "a whole last line is left as it is"
        );
        let empty = dir.path().join("new.ndjson");
        drop(FileSink::open("f", &empty).unwrap());
        assert_eq!(std::fs::read(&empty).unwrap(), b"");
    }
}
