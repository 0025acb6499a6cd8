//! A sink's disk buffer: what a network sink must deliver, kept on disk between the engine
//! (which appends each batch's lines and makes them durable before the batch is
//! acknowledged) and the sink's sender (which delivers them, in order, and lets go of what
//! the receiver acknowledged). A SIEM that is down then fills the buffer instead of stalling
//! the engine: windows and metrics go on, and positions are committed, because what they
//! covered is durable here. Vector's disk buffers follow the same model.
//!
//! Layout, in the sink's own directory: segment files `<n>.seg` (`n` rising, 20 digits),
//! each a run of frames `len u32 LE | bytes | crc32 u32 LE`, and `acked`, the position of the
//! first frame not yet delivered (`<segment> <offset>`, replaced atomically). A segment is
//! removed once everything in it is acknowledged; a torn frame at the end of the last
//! segment (a crash mid-write) is cut off when the buffer opens. A frame that fails its
//! checksum with more after it (a damaged disk or file) is reported to the sender, which
//! dead-letters it, and reading goes on after it — or, when its length was what was
//! damaged and nothing after it can be framed, at the next segment, the lost bytes
//! counted ([`Damage`]).
//!
//! Bounded: `max_bytes` over every segment. When full, `append` reports it, and the caller's
//! policy applies (`when_full = "block"`: the batch waits, reading pauses, nothing is lost).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const SEGMENT_BYTES: u64 = 8 << 20;
/// Appends are gathered this much before a write to the file (a frame is ~1 KB).
const WRITE_BUFFER: usize = 256 << 10;
const ACKED: &str = "acked";

/// Where a frame starts: its segment and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    pub segment: u64,
    pub offset: u64,
}

/// The writing side (the engine's thread).
pub struct BufferWriter {
    dir: PathBuf,
    max_bytes: u64,
    segment: u64,
    out: BufWriter<File>,
    /// Segments left behind since the last sync, still to be synced by the next one (a
    /// sync at each rotation would stall the engine every few megabytes).
    unsynced: Vec<File>,
    /// Bytes in the current segment (written, flushed or not).
    written: u64,
    /// Bytes of every segment on disk, acknowledged or not (minus removed segments).
    total: u64,
}

/// The buffer is full: nothing was written.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

fn seg_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.seg"))
}

/// The segment numbers on disk, in order.
pub fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut v: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// What reading a segment found: its good frames, each with the offset after it, and —
/// where a frame failed its checksum with more after it — that damage, ending the run.
#[derive(Debug, Default)]
pub struct SegmentRead {
    pub frames: Vec<(Vec<u8>, u64)>,
    pub damage: Option<Damage>,
}

/// A frame that failed its checksum with more after it in its segment (a disk that
/// flipped bits, a file edited). A torn last frame is not damage: it is what a crash
/// mid-write leaves, and the writer cuts it when it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Where the frame starts.
    pub offset: u64,
    /// Its bytes as they are (at most [`DAMAGE_KEPT`]).
    pub bytes: Vec<u8>,
    /// Where reading goes on: after it when the next frame reads well, else the segment's
    /// end (its length was what was damaged, and nothing after it can be framed).
    pub resume: u64,
    /// Bytes after the frame that could not be framed, and are lost with it.
    pub lost: u64,
}

/// The most of a damaged frame kept for the dead-letter file.
pub const DAMAGE_KEPT: usize = 64 << 10;

/// Reads up to `max` frames of a segment from `offset`; stops at the end, at a torn last
/// frame or unwritten (zero) tail, or at damage.
pub fn read_frames(path: &Path, offset: u64, max: usize) -> io::Result<SegmentRead> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(offset))?;
    // Three reads a frame: buffered, they are a few system calls a batch, not per frame.
    let mut f = io::BufReader::with_capacity(1 << 16, f);
    let mut out = SegmentRead::default();
    let mut at = offset;
    while out.frames.len() < max && at + 8 <= len {
        let mut head = [0u8; 4];
        f.read_exact(&mut head)?;
        let n = u32::from_le_bytes(head) as u64;
        if n == 0 {
            // No frame is empty: zeros are a file's unwritten tail after a power loss.
            break;
        }
        if at + 8 + n > len {
            break;
        }
        let mut bytes = vec![0u8; n as usize];
        f.read_exact(&mut bytes)?;
        let mut crc = [0u8; 4];
        f.read_exact(&mut crc)?;
        if crc32fast::hash(&bytes) != u32::from_le_bytes(crc) {
            let next = at + 8 + n;
            if next == len {
                break; // the last frame, torn
            }
            let resume = if frame_at(path, next, len)? {
                next
            } else {
                len
            };
            bytes.truncate(DAMAGE_KEPT);
            out.damage = Some(Damage {
                offset: at,
                bytes,
                resume,
                lost: resume - next,
            });
            break;
        }
        at += 8 + n;
        out.frames.push((bytes, at));
    }
    Ok(out)
}

/// Whether a frame that passes its checksum starts at `at` of a segment `len` bytes long.
fn frame_at(path: &Path, at: u64, len: u64) -> io::Result<bool> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(at))?;
    let mut head = [0u8; 4];
    f.read_exact(&mut head)?;
    let n = u32::from_le_bytes(head) as u64;
    if n == 0 || at + 8 + n > len {
        return Ok(false);
    }
    let mut bytes = vec![0u8; n as usize];
    f.read_exact(&mut bytes)?;
    let mut crc = [0u8; 4];
    f.read_exact(&mut crc)?;
    Ok(crc32fast::hash(&bytes) == u32::from_le_bytes(crc))
}

/// The stored acknowledgement; `None` when there is none yet — or when it cannot be read
/// (damaged, edited): then delivery starts again at the oldest segment, which sends some
/// messages twice but loses none, and the log says so.
fn read_acked(dir: &Path) -> io::Result<Option<Cursor>> {
    let path = dir.join(ACKED);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u64>());
            match (parts.next(), parts.next()) {
                (Some(Ok(segment)), Some(Ok(offset))) => Ok(Some(Cursor { segment, offset })),
                _ => {
                    tracing::error!(file = %path.display(), "the sink's acknowledgement file is not '<segment> <offset>': delivery starts again at the oldest buffered message (some are sent twice)");
                    Ok(None)
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The length of a segment's whole frames (what a crash may have torn is after it).
/// Damage is stepped over, as the reader steps over it (and reports it).
fn whole_length(path: &Path) -> io::Result<u64> {
    let mut at = 0;
    loop {
        let read = read_frames(path, at, 1024)?;
        match (read.frames.last(), read.damage) {
            (_, Some(d)) if d.lost == 0 => at = d.resume,
            (_, Some(d)) => return Ok(d.offset),
            (Some((_, next)), None) => at = *next,
            (None, None) => return Ok(at),
        }
    }
}

impl BufferWriter {
    /// Opens the buffer in `dir` (created if missing), cutting a torn frame off the last
    /// segment, and continues in a new segment.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<BufferWriter> {
        fs::create_dir_all(dir)?;
        let segs = segments(dir)?;
        let mut total = 0;
        for n in &segs {
            total += fs::metadata(seg_path(dir, *n))?.len();
        }
        if let Some(last) = segs.last() {
            let path = seg_path(dir, *last);
            let whole = whole_length(&path)?;
            let len = fs::metadata(&path)?.len();
            if whole < len {
                OpenOptions::new().write(true).open(&path)?.set_len(whole)?;
                total -= len - whole;
            }
        }
        // After every segment on disk, and after the acknowledged one (segments removed by
        // hand must not make new ones sort before what the reader resumes at).
        let after_acked = read_acked(dir)?.map_or(0, |a| a.segment + 1);
        let segment = segs.last().map_or(0, |n| n + 1).max(after_acked);
        let out = BufWriter::with_capacity(WRITE_BUFFER, File::create(seg_path(dir, segment))?);
        Ok(BufferWriter {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(SEGMENT_BYTES),
            segment,
            out,
            unsynced: Vec::new(),
            written: 0,
            total,
        })
    }

    /// Appends one frame; `Err(Full)` when it would go beyond `max_bytes`.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<Result<(), Full>> {
        let size = 8 + bytes.len() as u64;
        // Move on to a new segment first, even when full: the one left behind can then be
        // removed once delivered (the newest never is), which is what makes room.
        if self.written + size > SEGMENT_BYTES && self.written > 0 {
            self.rotate()?;
        }
        if self.total + size > self.max_bytes {
            return Ok(Err(Full));
        }
        self.out.write_all(&(bytes.len() as u32).to_le_bytes())?;
        self.out.write_all(bytes)?;
        self.out.write_all(&crc32fast::hash(bytes).to_le_bytes())?;
        self.written += size;
        self.total += size;
        Ok(Ok(()))
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.flush()?;
        self.segment += 1;
        let next = BufWriter::with_capacity(
            WRITE_BUFFER,
            File::create(seg_path(&self.dir, self.segment))?,
        );
        let left = std::mem::replace(&mut self.out, next);
        self.unsynced
            .push(left.into_inner().map_err(|e| e.into_error())?);
        self.written = 0;
        Ok(())
    }

    /// Hands everything appended to the operating system (readable by the sender from
    /// then on); returns where those frames end.
    pub fn flush(&mut self) -> io::Result<Cursor> {
        self.out.flush()?;
        Ok(Cursor {
            segment: self.segment,
            offset: self.written,
        })
    }

    /// Makes everything flushed durable, as a job for any thread: the segments left since
    /// the last sync, then (a second handle of) the current one, flushed.
    pub fn sync_job(&mut self) -> io::Result<impl FnOnce() -> io::Result<()> + Send> {
        self.out.flush()?;
        let current = self.out.get_ref().try_clone()?;
        let left = std::mem::take(&mut self.unsynced);
        Ok(move || {
            for f in &left {
                f.sync_data()?;
            }
            current.sync_data()
        })
    }

    /// Bytes on disk, delivered or not (the sender's removals lower it: `released`).
    pub fn bytes(&self) -> u64 {
        self.total
    }

    /// The sender removed segments of this many bytes.
    pub fn released(&mut self, bytes: u64) {
        self.total = self.total.saturating_sub(bytes);
    }
}

/// The delivering side: reads what is durable, in order, from the first unacknowledged
/// frame; `ack` moves past what the receiver took and removes finished segments.
pub struct BufferReader {
    dir: PathBuf,
    /// The first frame not acknowledged.
    at: Cursor,
    /// The first frame not yet read (batches in flight lie between).
    read: Cursor,
    /// Damage found since the last [`take_damage`](Self::take_damage), each once.
    damage: Vec<(u64, Damage)>,
    /// Where the last damage reported was (damage before it was reported already).
    damage_seen: Option<Cursor>,
}

impl BufferReader {
    /// Starts at the stored acknowledgement, or at the oldest segment.
    pub fn open(dir: &Path) -> io::Result<BufferReader> {
        fs::create_dir_all(dir)?;
        let at = match read_acked(dir)? {
            Some(at) => at,
            None => Cursor {
                segment: segments(dir)?.first().copied().unwrap_or(0),
                offset: 0,
            },
        };
        Ok(BufferReader {
            dir: dir.to_path_buf(),
            at,
            read: at,
            damage: Vec::new(),
            damage_seen: None,
        })
    }

    /// Up to `max` frames and about `max_bytes` (at least one frame) after those read
    /// before, not beyond `durable`, with the cursor after each.
    pub fn next(
        &mut self,
        durable: Cursor,
        max: usize,
        max_bytes: usize,
    ) -> io::Result<Vec<(Vec<u8>, Cursor)>> {
        let (frames, damage) = self.peek(durable, max, max_bytes)?;
        if let Some((_, c)) = frames.last() {
            self.read = *c;
        }
        for (segment, d) in damage {
            let at = Cursor {
                segment,
                offset: d.offset,
            };
            // Past it from now on; reported once, however often it is read again.
            self.read = self.read.max(Cursor {
                segment,
                offset: d.resume,
            });
            if self.damage_seen.is_none_or(|seen| at > seen) {
                self.damage_seen = Some(at);
                self.damage.push((segment, d));
            }
        }
        Ok(frames)
    }

    /// The damage found since the last call, with the segment of each: frames that failed
    /// their checksum, stepped over (and what could not be framed after them), to be
    /// dead-lettered and counted by the caller.
    pub fn take_damage(&mut self) -> Vec<(u64, Damage)> {
        std::mem::take(&mut self.damage)
    }

    /// Puts `frames` (the last ones read) back, to be read again.
    pub fn unread(&mut self, frames: &[(Vec<u8>, Cursor)]) {
        if let Some((first, c)) = frames.first() {
            // The cursor after the first frame, less its length: where it started.
            let start = c.offset - 8 - first.len() as u64;
            self.read = Cursor {
                segment: c.segment,
                offset: start,
            };
        }
    }

    /// Frames after those read (see [`next`](Self::next)), and the damage stepped over
    /// on the way (with its segment).
    #[allow(clippy::type_complexity)]
    fn peek(
        &self,
        durable: Cursor,
        max: usize,
        max_bytes: usize,
    ) -> io::Result<(Vec<(Vec<u8>, Cursor)>, Vec<(u64, Damage)>)> {
        let mut out = Vec::new();
        let mut damage = Vec::new();
        let mut bytes = 0;
        let first = self.read.segment;
        for seg in segments(&self.dir)?.into_iter().filter(|s| *s >= first) {
            if seg > durable.segment || out.len() >= max {
                break;
            }
            let mut from = if seg == self.read.segment {
                self.read.offset
            } else {
                0
            };
            loop {
                let read = read_frames(&seg_path(&self.dir, seg), from, max - out.len())?;
                for (frame, next) in read.frames {
                    if seg == durable.segment && next > durable.offset {
                        return Ok((out, damage));
                    }
                    bytes += frame.len();
                    if bytes > max_bytes && !out.is_empty() {
                        return Ok((out, damage));
                    }
                    out.push((
                        frame,
                        Cursor {
                            segment: seg,
                            offset: next,
                        },
                    ));
                }
                match read.damage {
                    // Only what is durable: the writer may still be extending this segment.
                    Some(d) if seg < durable.segment || d.resume <= durable.offset => {
                        from = d.resume;
                        damage.push((seg, d));
                        if out.len() >= max {
                            return Ok((out, damage));
                        }
                    }
                    _ => break,
                }
            }
        }
        Ok((out, damage))
    }

    /// The receiver took everything before `to`: it is stored as acknowledged, and the
    /// segments before `to`'s are removed. Returns the bytes removed.
    pub fn ack(&mut self, to: Cursor) -> io::Result<u64> {
        self.at = to;
        self.read = self.read.max(to);
        // Room first: removing what was delivered needs no space and frees some, so a full
        // disk cannot keep the buffer from draining. A crash before the acknowledgement is
        // stored resumes at the next segment still there: nothing undelivered is skipped.
        let removed = self.tidy()?;
        let tmp = self.dir.join(format!("{ACKED}.tmp"));
        let stored = (|| {
            fs::write(&tmp, format!("{} {}", to.segment, to.offset))?;
            File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, self.dir.join(ACKED))
        })();
        if let Err(e) = stored {
            // Delivery goes on from memory; after a restart what followed the last stored
            // acknowledgement is sent again.
            tracing::warn!(dir = %self.dir.display(), error = %e, "storing the sink's acknowledgement failed");
        }
        Ok(removed)
    }

    /// Removes the segments everything of which is acknowledged (the newest stays: the
    /// writer may still append to it). Returns the bytes removed; a segment that cannot be
    /// removed now is left for the next time.
    pub fn tidy(&mut self) -> io::Result<u64> {
        let to = self.at;
        let mut removed = 0;
        let segs = segments(&self.dir)?;
        let newest = segs.last().copied().unwrap_or(0);
        for seg in segs {
            let path = seg_path(&self.dir, seg);
            let Ok(len) = fs::metadata(&path).map(|m| m.len()) else {
                continue;
            };
            // Before the acknowledged one, or the acknowledged one read to its end once
            // the writer has moved on to a later segment (nothing more comes into it).
            let done = seg < to.segment || (seg == to.segment && to.offset >= len && seg < newest);
            if done {
                match fs::remove_file(&path) {
                    Ok(()) => removed += len,
                    Err(e) => {
                        tracing::warn!(segment = %path.display(), error = %e, "removing a delivered segment of the sink's buffer failed; tried again later")
                    }
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(frames: &[(Vec<u8>, Cursor)]) -> Vec<String> {
        frames
            .iter()
            .map(|(b, _)| String::from_utf8(b.clone()).unwrap())
            .collect()
    }

    #[test]
    fn frames_come_back_in_order_only_once_durable_and_acks_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BufferWriter::open(dir.path(), 64 << 20).unwrap();
        for i in 0..5 {
            w.append(format!("line {i}").as_bytes()).unwrap().unwrap();
        }
        let durable = w.flush().unwrap();
        w.append(b"not yet durable").unwrap().unwrap();
        let mut r = BufferReader::open(dir.path()).unwrap();
        let got = r.next(durable, 100, usize::MAX).unwrap();
        assert_eq!(
            lines(&got),
            ["line 0", "line 1", "line 2", "line 3", "line 4"]
        );
        r.ack(got[2].1).unwrap();
        // A restart of the sender resumes after what was acknowledged.
        let mut r = BufferReader::open(dir.path()).unwrap();
        let durable = w.flush().unwrap();
        assert_eq!(
            lines(&r.next(durable, 100, usize::MAX).unwrap()),
            ["line 3", "line 4", "not yet durable"]
        );
    }

    #[test]
    fn a_torn_tail_is_cut_and_full_segments_are_removed_once_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut w = BufferWriter::open(dir.path(), 64 << 20).unwrap();
            w.append(b"kept").unwrap().unwrap();
            w.flush().unwrap();
        }
        // A crash mid-frame: half a frame at the end of the segment.
        let seg = seg_path(dir.path(), 0);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, b'x']).unwrap();
        drop(f);
        let mut w = BufferWriter::open(dir.path(), 64 << 20).unwrap();
        assert_eq!(fs::metadata(&seg).unwrap().len(), 4 + 4 + 4);
        w.append(b"after").unwrap().unwrap();
        let durable = w.flush().unwrap();
        let mut r = BufferReader::open(dir.path()).unwrap();
        let got = r.next(durable, 10, usize::MAX).unwrap();
        assert_eq!(lines(&got), ["kept", "after"]);
        let removed = r.ack(got[1].1).unwrap();
        assert_eq!(removed, 12, "segment 0 is done and removed");
        w.released(removed);
        assert_eq!(segments(dir.path()).unwrap(), vec![1]);
    }

    #[test]
    fn a_damaged_frame_is_stepped_over_and_reported_once_and_a_damaged_length_loses_only_its_segments_rest(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BufferWriter::open(dir.path(), 64 << 20).unwrap();
        for m in ["one", "two", "three", "four"] {
            w.append(m.as_bytes()).unwrap().unwrap();
        }
        let durable = w.flush().unwrap();
        drop(w);
        // A bit flipped in "two"'s bytes (frame 2 starts at 4 + 3 + 4 = 11; its bytes at 15).
        let seg = seg_path(dir.path(), 0);
        let mut bytes = fs::read(&seg).unwrap();
        bytes[15] ^= 0x20;
        fs::write(&seg, &bytes).unwrap();
        let mut r = BufferReader::open(dir.path()).unwrap();
        let got = r.next(durable, 10, usize::MAX).unwrap();
        assert_eq!(lines(&got), ["one", "three", "four"]);
        let damage = r.take_damage();
        assert_eq!(damage.len(), 1);
        let (segment, d) = &damage[0];
        assert_eq!((*segment, d.offset, d.lost), (0, 11, 0));
        assert_eq!(d.bytes, b"Two");
        // Read again (a batch put back): the damage is not reported twice.
        r.unread(&got);
        assert_eq!(
            lines(&r.next(durable, 10, usize::MAX).unwrap()),
            ["one", "three", "four"]
        );
        assert!(r.take_damage().is_empty());
        // The writer reopening keeps the frames after the damage.
        let len = fs::metadata(&seg).unwrap().len();
        drop(BufferWriter::open(dir.path(), 64 << 20).unwrap());
        assert_eq!(fs::metadata(&seg).unwrap().len(), len);

        // A damaged length: what follows in the segment cannot be framed.
        let dir = tempfile::tempdir().unwrap();
        let mut w = BufferWriter::open(dir.path(), 64 << 20).unwrap();
        for m in ["one", "two", "three"] {
            w.append(m.as_bytes()).unwrap().unwrap();
        }
        w.rotate().unwrap();
        w.append(b"next segment").unwrap().unwrap();
        let durable = w.flush().unwrap();
        let seg = seg_path(dir.path(), 0);
        let mut bytes = fs::read(&seg).unwrap();
        bytes[11] = 2; // "two" claims 2 bytes
        fs::write(&seg, &bytes).unwrap();
        let mut r = BufferReader::open(dir.path()).unwrap();
        let got = r.next(durable, 10, usize::MAX).unwrap();
        assert_eq!(lines(&got), ["one", "next segment"]);
        let damage = r.take_damage();
        assert_eq!(damage.len(), 1);
        let d = &damage[0].1;
        assert_eq!(d.offset, 11);
        assert_eq!(
            d.lost,
            bytes.len() as u64 - (11 + 8 + 2),
            "the rest of segment 0"
        );
    }

    #[test]
    fn a_damaged_acknowledgement_resends_rather_than_loses_and_removed_segments_hide_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BufferWriter::open(dir.path(), 64 << 20).unwrap();
        w.append(b"one").unwrap().unwrap();
        w.append(b"two").unwrap().unwrap();
        let durable = w.flush().unwrap();
        drop(w);
        fs::write(dir.path().join(ACKED), "garbage").unwrap();
        let mut r = BufferReader::open(dir.path()).unwrap();
        assert_eq!(
            lines(&r.next(durable, 10, usize::MAX).unwrap()),
            ["one", "two"],
            "from the oldest message"
        );
        // Segments removed by hand, the acknowledgement kept: new ones sort after it.
        r.ack(durable).unwrap();
        for n in segments(dir.path()).unwrap() {
            fs::remove_file(seg_path(dir.path(), n)).unwrap();
        }
        let mut w = BufferWriter::open(dir.path(), 64 << 20).unwrap();
        w.append(b"three").unwrap().unwrap();
        let durable = w.flush().unwrap();
        let mut r = BufferReader::open(dir.path()).unwrap();
        assert_eq!(lines(&r.next(durable, 10, usize::MAX).unwrap()), ["three"]);
    }

    #[test]
    fn a_full_buffer_refuses_and_accepts_again_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BufferWriter::open(dir.path(), 2 * SEGMENT_BYTES).unwrap();
        let big = vec![b'x'; 1 << 20];
        let mut appended = 0;
        while w.append(&big).unwrap().is_ok() {
            appended += 1;
        }
        assert_eq!(
            appended, 15,
            "two 8 MiB segments hold fifteen 1 MiB frames and their headers"
        );
        assert_eq!(w.append(&big).unwrap(), Err(Full));
        let durable = w.flush().unwrap();
        let mut r = BufferReader::open(dir.path()).unwrap();
        let got = r.next(durable, 100, usize::MAX).unwrap();
        assert_eq!(got.len(), 15);
        // Everything of the first segment delivered: it is removed, and there is room again.
        let last_of_first = got.iter().rev().find(|(_, c)| c.segment == 0).unwrap().1;
        let removed = r.ack(last_of_first).unwrap();
        assert!(removed > 7 << 20, "{removed}");
        w.released(removed);
        w.append(&big).unwrap().unwrap();
        assert_eq!(segments(dir.path()).unwrap().first(), Some(&1));
    }
}
