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
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        // A process killed while writing can leave half a line at the end: the next line
        // starts on a line of its own, so that only the torn one is lost to a reader (the
        // rows it held are sent again, not yet being acknowledged).
        if ends_mid_line(&mut file)? {
            file.write_all(b"\n")?;
        }
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

fn ends_mid_line(file: &mut File) -> io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
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
