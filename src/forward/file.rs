//! The file sink: routed rows appended to a file as NDJSON, synced at the end of every batch
//! (so a batch is acknowledged only once its rows are on disk). For a collector that tails
//! files (Filebeat, the Splunk forwarder, Fluent Bit), or for inspection.

use std::fs::{File, OpenOptions};
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
    /// Opens (creating, appending to) the file.
    pub fn open(name: &str, path: &Path) -> io::Result<FileSink> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
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

    fn sync(&mut self) -> io::Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        self.pending = 0;
        Ok(())
    }
}
