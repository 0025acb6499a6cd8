//! Bodies out of a byte stream, one per line: the one line reader of hubwatch, shared by the
//! file source (`reader.rs`) and the `query` command, so that both cut, count and position
//! lines the same way.
//!
//! Memory is bounded whatever the input: at most `max_line_bytes` of a line are kept. A
//! longer line is still delivered, cut to its first `max_line_bytes`, while the rest is
//! skipped and counted, so positions stay exact and the line says how long it really was
//! ([`Line::cut_from`]); the parser rejects it as `body_too_large` with that size.

use std::io::{self, BufRead};

/// Bytes of a line kept at most, unless configured otherwise (64 MiB: above the parser's
/// default `max_body_bytes`, 32 MiB, so a line the parser could take is never cut).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;

/// One non-empty line.
#[derive(Debug)]
pub struct Line {
    /// The line without its `\n` (nor the `\r` before it), or its first `max_line_bytes`.
    pub body: Vec<u8>,
    /// Byte offset of the line's first byte.
    pub offset: i64,
    /// 0-based number of the line (empty lines count).
    pub number: i64,
    /// The line's real length (without `\n`) when `body` holds only its first bytes.
    pub cut_from: Option<u64>,
}

/// Where splitting stands in one stream; the reader itself is the caller's (a followed file
/// is closed and re-opened between calls).
#[derive(Debug, Default)]
pub struct Lines {
    /// Bytes consumed.
    pos: u64,
    /// Offset of the current line's first byte.
    line_start: u64,
    /// Number of the current line (every line counts, empty ones too).
    line_no: i64,
    /// The current line, at most `max_line_bytes`.
    line: Vec<u8>,
    /// Bytes of the current line seen so far, kept or not, without the `\n`.
    line_seen: u64,
    /// The current line is the checkpointed one: consume it without emitting it.
    discard: bool,
}

impl Lines {
    pub fn new() -> Lines {
        Lines::default()
    }

    /// Bytes consumed so far.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Continue at the line starting at `offset`, numbered `number`, which is consumed
    /// without being emitted (the checkpointed line).
    pub fn resume_after(&mut self, offset: u64, number: i64) {
        self.pos = offset;
        self.line_start = offset;
        self.line_no = number;
        self.discard = true;
    }

    /// From the start of the stream again.
    pub fn restart(&mut self) {
        *self = Lines::default();
    }

    /// The next non-empty line, or `None` at the end of the data there is now. At the end, a
    /// last line without `\n` is a line if `final_at_eof` (the input is complete); otherwise
    /// it stays buffered until its `\n` arrives.
    pub fn next(
        &mut self,
        reader: &mut dyn BufRead,
        max_line: usize,
        final_at_eof: bool,
    ) -> io::Result<Option<Line>> {
        let max_line = max_line.max(1);
        loop {
            let buf = match reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                if final_at_eof && (self.line_seen > 0 || self.discard) {
                    if let Some(line) = self.finish_line() {
                        return Ok(Some(line));
                    }
                }
                return Ok(None);
            }
            let (len, newline) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            // Only `max_line` bytes are kept; the rest is counted in `line_seen` and skipped.
            if !self.discard {
                let keep = len.min(max_line.saturating_sub(self.line.len()));
                self.line.extend_from_slice(&buf[..keep]);
            }
            self.line_seen += len as u64;
            let used = len + usize::from(newline);
            reader.consume(used);
            self.pos += used as u64;
            if newline {
                if let Some(line) = self.finish_line() {
                    return Ok(Some(line));
                }
            }
        }
    }

    /// Ends the current line: a line, or `None` for an empty or skipped one.
    fn finish_line(&mut self) -> Option<Line> {
        let offset = self.line_start as i64;
        let number = self.line_no;
        self.line_start = self.pos;
        self.line_no += 1;
        let seen = std::mem::replace(&mut self.line_seen, 0);
        let mut body = std::mem::take(&mut self.line);
        if std::mem::replace(&mut self.discard, false) {
            return None;
        }
        let cut = seen > body.len() as u64;
        if !cut && body.last() == Some(&b'\r') {
            body.pop();
        }
        if body.is_empty() {
            return None;
        }
        Some(Line {
            body,
            offset,
            number,
            cut_from: cut.then_some(seen),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], max: usize, buffer: usize) -> Vec<Line> {
        let mut reader = io::BufReader::with_capacity(buffer, input);
        let mut lines = Lines::new();
        let mut out = Vec::new();
        while let Some(l) = lines.next(&mut reader, max, true).unwrap() {
            out.push(l);
        }
        out
    }

    #[test]
    fn a_cut_line_keeps_its_first_bytes_and_knows_its_real_length() {
        // Small read buffers, so that the long line spans many of them.
        let input = b"0123456789abcdef\r\n\nok\r\nlast";
        let lines = all(input, 4, 3);
        let seen: Vec<(&[u8], i64, i64, Option<u64>)> = lines
            .iter()
            .map(|l| (&l.body[..], l.offset, l.number, l.cut_from))
            .collect();
        assert_eq!(
            seen,
            [
                (&b"0123"[..], 0, 0, Some(17)),
                (&b"ok"[..], 19, 2, None),
                (&b"last"[..], 23, 3, None),
            ]
        );
    }

    #[test]
    fn resuming_skips_the_checkpointed_line() {
        let input = b"a\nbb\nccc\n";
        let mut reader = io::BufReader::new(&input[2..]);
        let mut lines = Lines::new();
        lines.resume_after(2, 1);
        let l = lines.next(&mut reader, 64, true).unwrap().unwrap();
        assert_eq!((&l.body[..], l.offset, l.number), (&b"ccc"[..], 5, 2));
        assert_eq!(lines.pos(), 9);
    }
}
