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
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(DeadLetter {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
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
