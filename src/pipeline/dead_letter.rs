//! The dead-letter output: every rejected body or record as one NDJSON line with its reason,
//! what was wrong, where it came from, and its raw bytes, so nothing is silently lost.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;

use crate::parse::RejectReason;
use crate::source::Position;

#[derive(Serialize)]
struct Line<'a> {
    reason: &'static str,
    detail: &'a str,
    source: &'a str,
    partition: &'a str,
    offset: i64,
    sequence_number: i64,
    /// The raw bytes as text when they are valid UTF-8 …
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    /// … else base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_base64: Option<String>,
}

pub struct DeadLetter {
    path: PathBuf,
    out: BufWriter<File>,
    pub written: u64,
}

impl DeadLetter {
    /// Appends to `path` (created if missing).
    pub fn open(path: &Path) -> std::io::Result<DeadLetter> {
        Ok(DeadLetter {
            path: path.to_path_buf(),
            out: BufWriter::new(open_lines(path)?),
            written: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(
        &mut self,
        reason: RejectReason,
        detail: &str,
        source: &str,
        pos: &Position,
        raw: &[u8],
    ) -> std::io::Result<()> {
        let (raw_text, raw_base64) = match std::str::from_utf8(raw) {
            Ok(t) => (Some(t), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(raw)),
            ),
        };
        let line = Line {
            reason: reason.as_str(),
            detail,
            source,
            partition: &pos.partition,
            offset: pos.offset,
            sequence_number: pos.sequence_number,
            raw: raw_text,
            raw_base64,
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    /// Makes the lines durable; called before a batch is acknowledged.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}

/// Opens a file of NDJSON lines to append to (created, with its folder, if missing).
pub fn open_lines(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    // A process killed while writing may have left half a line. End it, so that the next
    // line stays whole: what the torn one held was never acknowledged, so it is written
    // again in full.
    if ends_torn(&mut file)? {
        file.write_all(b"\n")?;
    }
    Ok(file)
}

fn ends_torn(file: &mut File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_torn_last_line_is_ended_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        std::fs::write(&path, b"{\"reason\":\"invalid_json\"}\n{\"reason\":\"inv").unwrap();
        let mut dl = DeadLetter::open(&path).unwrap();
        let pos = Position {
            partition: Arc::from("p"),
            offset: 7,
            sequence_number: 1,
            enqueued_time: None,
        };
        dl.write(RejectReason::EmptyBody, "empty", "s", &pos, b" ")
            .unwrap();
        dl.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[1], "{\"reason\":\"inv");
        let last: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(last["offset"], 7);
        // A whole file is appended to as it is.
        drop(dl);
        let before = std::fs::read(&path).unwrap();
        DeadLetter::open(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
