//! The dead-letter output: every rejected body or record as one NDJSON line with its reason,
//! what was wrong, where it came from, and its raw bytes, so nothing is silently lost.
//!
//! At least once: a line is written when its event is first read, and made durable before
//! the event's position is stored, so a crash between the two writes it again when the
//! event is read again. Its key — (`source`, `partition`, `sequence_number`, `ordinal`) —
//! is the same each time, so a consumer can drop the repeats. What a partition re-reads
//! at or before a stored position (a rebuild of its windows) is not written again: the
//! engine hands this file only the rejects of events new to their partition.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;

use crate::parse::Reject;
use crate::source::Position;

#[derive(Serialize)]
struct Line<'a> {
    reason: &'static str,
    detail: &'a str,
    source: &'a str,
    partition: &'a str,
    offset: i64,
    sequence_number: i64,
    /// This reject's place among its event's rejects (1-based): with the position, what
    /// identifies the line when a restart writes it again.
    ordinal: usize,
    /// A record's place in its body (1-based); absent for a whole body.
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<usize>,
    /// The size of the rejected body or record as the source had it.
    bytes: u64,
    /// `raw` holds only the first bytes (a line longer than the file source's
    /// `max_line_bytes`, which is all that was read of it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    raw_truncated: bool,
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

    /// Appends one reject of the event at `pos` of `source` (buffered: see [`flush`](Self::flush)).
    pub fn write(&mut self, r: &Reject<'_>, source: &str, pos: &Position) -> std::io::Result<()> {
        let raw = r.raw;
        // A cut body may end inside a UTF-8 sequence: it is text up to there.
        let text = match std::str::from_utf8(raw) {
            Ok(t) => Ok(t),
            Err(e) if r.bytes > raw.len() as u64 && e.error_len().is_none() => {
                Ok(std::str::from_utf8(&raw[..e.valid_up_to()]).unwrap_or_default())
            }
            Err(e) => Err(e),
        };
        let (raw_text, raw_base64) = match text {
            Ok(t) => (Some(t), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(raw)),
            ),
        };
        let line = Line {
            reason: r.reason.as_str(),
            detail: &r.detail,
            source,
            partition: &pos.partition,
            offset: pos.offset,
            sequence_number: pos.sequence_number,
            ordinal: r.ordinal,
            record: r.record,
            bytes: r.bytes,
            raw_truncated: r.bytes > raw.len() as u64,
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
    use crate::parse::RejectReason;
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
        let r = Reject {
            reason: RejectReason::EmptyBody,
            detail: "empty".into(),
            raw: b" ",
            bytes: 1,
            record: None,
            ordinal: 1,
        };
        dl.write(&r, "s", &pos).unwrap();
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

    #[test]
    fn a_cut_body_says_so_and_keeps_whole_characters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        let mut dl = DeadLetter::open(&path).unwrap();
        let pos = Position {
            partition: Arc::from("f"),
            offset: 0,
            sequence_number: 0,
            enqueued_time: None,
        };
        let text = "aé".as_bytes();
        let reject = |raw: &'static [u8], bytes: u64| Reject {
            reason: RejectReason::BodyTooLarge,
            detail: "cut".into(),
            raw,
            bytes,
            record: None,
            ordinal: 1,
        };
        // Cut inside `é`: the text up to it.
        dl.write(&reject(&text[..2], 100), "s", &pos).unwrap();
        // Not cut, not UTF-8: base64 of all of it.
        dl.write(&reject(&text[..2], 2), "s", &pos).unwrap();
        dl.flush().unwrap();
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["raw"], "a");
        assert_eq!(lines[0]["raw_truncated"], true);
        assert_eq!(lines[0]["bytes"], 100);
        assert_eq!(lines[1]["raw_base64"], "YcM=");
        assert!(lines[1].get("raw_truncated").is_none());
    }
}
