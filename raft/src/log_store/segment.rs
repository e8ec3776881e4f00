//! One segment file of the Raft log: its on-disk format, the scan that rebuilds
//! its index on open (with torn-tail recovery), positional reads and writes.
//!
//! A segment is named `seg-<first_index:020>.log` and holds the entries
//! `first_index, first_index + 1, …` back to back:
//!
//! ```text
//! header  = magic "RCONFLOG" (8) | format version u32 LE | reserved u32 (0)
//! record  = payload len u32 LE | crc32(payload) u32 LE | payload
//! payload = bincode 1 of openraft's Entry<TypeConfig> (starts with its LogId)
//! ```
//!
//! Segments other than the last were fsynced when the log rolled past them, so
//! a bad record there is corruption. In the last segment a bad record is a torn
//! write when nothing valid follows it; then the file is cut there.
//!
//! The file is kept up to [`RESERVE_BYTES`] longer than its records (zeros,
//! unallocated): an append that extends a file makes its `fdatasync` write the
//! file's new size (its inode) as well, an append inside it does not (a
//! 402-byte record here, in isolation: p50 120–220 → 80–130 µs). In the last segment,
//! zeros from where the next record would start to the end of the file are the
//! end of the records. A segment is cut to its records, durably, before the log
//! rolls past it, so a sealed segment has no reserve.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::types::{Entry, LogId};

use super::fsync::{fsync_dir, sync_data_or_abort};

/// First bytes of every segment file.
pub(super) const SEGMENT_MAGIC: [u8; 8] = *b"RCONFLOG";
/// Format version written into every segment header.
pub(super) const SEGMENT_FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header.
pub(super) const HEADER_LEN: u64 = 16;
/// Bytes of a record header (length + crc).
pub(super) const RECORD_HEADER_LEN: u64 = 8;
/// Largest payload a record may carry. Larger lengths found on disk are garbage.
pub(super) const MAX_RECORD_BYTES: u32 = 256 * 1024 * 1024;
/// How far the file is extended past a write that reaches its end, so that the
/// next appends land inside it (one size change per this many bytes appended).
pub(super) const RESERVE_BYTES: u64 = 1024 * 1024;

/// Where one record sits in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RecordPos {
    /// Offset of the record header.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
}

impl RecordPos {
    /// Offset just past the record.
    pub fn end(&self) -> u64 {
        self.offset + RECORD_HEADER_LEN + u64::from(self.len)
    }
}

/// An open segment and the index of its records.
#[derive(Debug)]
pub(super) struct Segment {
    /// Index of the first entry this segment holds (or will hold, when empty).
    pub first_index: u64,
    /// Path of the file.
    pub path: PathBuf,
    /// Kept open for positional reads and writes; shared with the syncer.
    pub file: Arc<File>,
    /// Record `i` holds entry `first_index + i`.
    pub records: Vec<RecordPos>,
    /// Bytes of header and records: where the next record goes.
    pub size: u64,
    /// Length of the file: `size` plus the zeros reserved for appends.
    pub len: u64,
}

/// What scanning a segment found.
#[derive(Debug)]
pub(super) enum Scanned {
    /// The segment and the log id of its last record, if any.
    Segment(Segment, Option<LogId>),
    /// The last segment's header was torn (its creation was interrupted); the
    /// file was removed.
    Removed,
}

/// `seg-<first_index:020>.log`.
pub(super) fn file_name(first_index: u64) -> String {
    format!("seg-{first_index:020}.log")
}

/// The first index encoded in a segment file name, if it is one.
pub(super) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn header_bytes() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    h
}

fn corruption(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Appends one record for `entry` to `out`; returns the payload length.
pub(super) fn encode_record(entry: &Entry, out: &mut Vec<u8>) -> io::Result<u32> {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN as usize]);
    bincode::serialize_into(&mut *out, entry)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let payload_len = out.len() - start - RECORD_HEADER_LEN as usize;
    let len = match u32::try_from(payload_len) {
        Ok(len) if len <= MAX_RECORD_BYTES => len,
        _ => {
            out.truncate(start);
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "log entry {} is {payload_len} bytes, more than the {MAX_RECORD_BYTES} a record may hold",
                    entry.log_id
                ),
            ));
        }
    };
    let crc = crc32fast::hash(&out[start + RECORD_HEADER_LEN as usize..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(len)
}

/// Where each record of a segment file starts, then where the records end
/// (its reserve of zeros, if any, starts there): the walk stops at a record
/// header whose length is 0, or at the end of the file.
#[cfg(test)]
pub(super) fn record_offsets(path: &Path) -> Vec<u64> {
    let buf = fs::read(path).expect("read segment");
    let mut offsets = Vec::new();
    let mut pos = HEADER_LEN as usize;
    while pos + RECORD_HEADER_LEN as usize <= buf.len() {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4 bytes"));
        if len == 0 {
            break;
        }
        offsets.push(pos as u64);
        pos += RECORD_HEADER_LEN as usize + len as usize;
    }
    offsets.push(pos.min(buf.len()) as u64);
    offsets
}

/// Where the records of a segment file end (see [`record_offsets`]).
#[cfg(test)]
pub(super) fn records_end(path: &Path) -> u64 {
    *record_offsets(path).last().expect("at least the end")
}

/// Decodes a payload whose crc was already checked.
pub(super) fn decode_entry(payload: &[u8]) -> io::Result<Entry> {
    bincode::deserialize(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Decodes only the log id at the start of a payload.
fn decode_log_id(payload: &[u8]) -> io::Result<LogId> {
    bincode::deserialize(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Why a record could not be read.
#[derive(Debug, Clone, Copy)]
enum BadRecord {
    ShortHeader,
    BadLength(u32),
    ShortPayload,
    CrcMismatch,
}

impl BadRecord {
    fn describe(self) -> String {
        match self {
            BadRecord::ShortHeader => "short record header".to_string(),
            BadRecord::BadLength(len) => format!("bad record length {len}"),
            BadRecord::ShortPayload => "short payload".to_string(),
            BadRecord::CrcMismatch => "crc mismatch".to_string(),
        }
    }
}

/// Parses the record at `pos` of `buf`: its payload length, or why it is bad.
fn parse_record(buf: &[u8], pos: usize) -> Result<(u32, &[u8]), BadRecord> {
    let rest = &buf[pos..];
    if rest.len() < RECORD_HEADER_LEN as usize {
        return Err(BadRecord::ShortHeader);
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 || len > MAX_RECORD_BYTES {
        return Err(BadRecord::BadLength(len));
    }
    let payload = rest
        .get(RECORD_HEADER_LEN as usize..RECORD_HEADER_LEN as usize + len as usize)
        .ok_or(BadRecord::ShortPayload)?;
    if crc32fast::hash(payload) != crc {
        return Err(BadRecord::CrcMismatch);
    }
    Ok((len, payload))
}

/// Looks for a valid record of an entry with index `>= min_index` anywhere in
/// `buf[from..]`: if one exists, a bad record before it is not a torn tail.
fn find_valid_record(buf: &[u8], from: usize, min_index: u64) -> Option<(usize, u64)> {
    // A record needs its header plus a log id (three u64) at least.
    let min_record = RECORD_HEADER_LEN as usize + 24;
    // A record starts with its non-zero length: none starts after the last
    // non-zero byte (the reserve's zeros need no look).
    let last_non_zero = buf.iter().rposition(|&b| b != 0)?;
    let mut pos = from;
    while pos <= last_non_zero && pos + min_record <= buf.len() {
        // Cheap filter first: a plausible index right after the record header,
        // then the crc over the whole payload.
        let payload_start = pos + RECORD_HEADER_LEN as usize;
        if let Ok(id) = decode_log_id(&buf[payload_start..]) {
            let max_index = min_index.saturating_add((buf.len() - pos) as u64);
            if (min_index..=max_index).contains(&id.index) && parse_record(buf, pos).is_ok() {
                return Some((pos, id.index));
            }
        }
        pos += 1;
    }
    None
}

impl Segment {
    /// Creates a new empty segment for entries from `first_index` on: writes the
    /// header, fsyncs the file and the directory.
    pub fn create(dir: &Path, first_index: u64) -> io::Result<Segment> {
        let path = dir.join(file_name(first_index));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all(&header_bytes())?;
        sync_data_or_abort(&file, &path);
        fsync_dir(dir)?;
        tracing::debug!(segment = %path.display(), first_index, "created log segment");
        Ok(Segment {
            first_index,
            path,
            file: Arc::new(file),
            records: Vec::new(),
            size: HEADER_LEN,
            len: HEADER_LEN,
        })
    }

    /// Opens an existing segment and indexes its records. In the last segment
    /// a bad record with nothing valid after it is a torn write: the file is cut
    /// there (and fsynced) with a warning. Any other bad record is an error.
    pub fn open(path: &Path, first_index: u64, is_last: bool) -> io::Result<Scanned> {
        let buf = fs::read(path)?;
        let name = path.display();
        let header_ok = buf.len() >= HEADER_LEN as usize && buf[..8] == SEGMENT_MAGIC;
        if !header_ok {
            // A crash while creating the segment (before its header was
            // fsynced) leaves a short or zeroed header and no records.
            let torn_creation = buf.len() <= HEADER_LEN as usize;
            if is_last && torn_creation {
                tracing::warn!(segment = %name, bytes = buf.len(), "removing log segment with a torn header (interrupted creation)");
                fs::remove_file(path)?;
                if let Some(dir) = path.parent() {
                    fsync_dir(dir)?;
                }
                return Ok(Scanned::Removed);
            }
            return Err(corruption(format!(
                "log segment {name}: bad header (not a raftconf log segment, or corrupted)"
            )));
        }
        let version = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if version != SEGMENT_FORMAT_VERSION {
            return Err(corruption(format!(
                "log segment {name}: format version {version}, this build reads version {SEGMENT_FORMAT_VERSION}"
            )));
        }

        let mut records = Vec::new();
        let mut last = None;
        let mut len = buf.len() as u64;
        let mut pos = HEADER_LEN as usize;
        while pos < buf.len() {
            let expected = first_index + records.len() as u64;
            match parse_record(&buf, pos) {
                Ok((len, payload)) => {
                    let id = decode_log_id(payload).map_err(|e| {
                        corruption(format!(
                            "log segment {name}: record at offset {pos} has a valid crc but cannot be decoded: {e}"
                        ))
                    })?;
                    if id.index != expected {
                        return Err(corruption(format!(
                            "log segment {name}: record at offset {pos} holds index {}, expected {expected}",
                            id.index
                        )));
                    }
                    records.push(RecordPos {
                        offset: pos as u64,
                        len,
                    });
                    last = Some(id);
                    pos += RECORD_HEADER_LEN as usize + len as usize;
                }
                Err(_) if is_last && buf[pos..].iter().all(|&b| b == 0) => {
                    // The reserve past the last record (or a record whose
                    // write never reached the disk, so was never acknowledged).
                    break;
                }
                Err(bad) => {
                    if !is_last {
                        return Err(corruption(format!(
                            "log segment {name}: {} at offset {pos} (index {expected}) in a segment that was fsynced; refusing to open a corrupted log",
                            bad.describe()
                        )));
                    }
                    if let Some((at, index)) = find_valid_record(&buf, pos + 1, expected) {
                        return Err(corruption(format!(
                            "log segment {name}: {} at offset {pos} (index {expected}), but a valid record (index {index}) follows at offset {at}: \
                             corruption, not a torn write; refusing to open",
                            bad.describe()
                        )));
                    }
                    tracing::warn!(
                        segment = %name,
                        offset = pos,
                        dropped_bytes = buf.len() - pos,
                        first_dropped_index = expected,
                        reason = %bad.describe(),
                        "torn write at the tail of the log: truncating"
                    );
                    let file = OpenOptions::new().write(true).open(path)?;
                    file.set_len(pos as u64)?;
                    sync_data_or_abort(&file, path);
                    len = pos as u64;
                    break;
                }
            }
        }
        let size = pos.min(buf.len()) as u64;
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Scanned::Segment(
            Segment {
                first_index,
                path: path.to_path_buf(),
                file: Arc::new(file),
                records,
                size,
                len,
            },
            last,
        ))
    }

    /// Index of the last record, if any.
    pub fn last_index(&self) -> Option<u64> {
        (!self.records.is_empty()).then(|| self.first_index + self.records.len() as u64 - 1)
    }

    /// Index the next record appended here must have.
    pub fn next_index(&self) -> u64 {
        self.first_index + self.records.len() as u64
    }

    /// Where entry `index` is, if this segment holds it.
    pub fn pos(&self, index: u64) -> Option<RecordPos> {
        let i = usize::try_from(index.checked_sub(self.first_index)?).ok()?;
        self.records.get(i).copied()
    }

    /// Writes already-encoded records after the last one and indexes them.
    /// `lens` are the payload lengths of the records in `buf`, in order.
    pub fn write_records(&mut self, buf: &[u8], lens: &[u32]) -> io::Result<()> {
        let end = self.size + buf.len() as u64;
        if end > self.len {
            // Reserve room for the appends after this one (see the module
            // docs). The zeros read as the end of the records until written.
            // Only a saving: without it the write extends the file itself.
            let reserved = end + RESERVE_BYTES;
            match self.file.set_len(reserved) {
                Ok(()) => self.len = reserved,
                Err(e) => {
                    tracing::warn!(segment = %self.path.display(), error = %e, "could not reserve room for appends")
                }
            }
        }
        if let Err(e) = self.file.write_all_at(buf, self.size) {
            // Do not leave a partial record behind what the index knows.
            match self.file.set_len(self.size) {
                Ok(()) => self.len = self.size,
                Err(cut) => {
                    tracing::error!(segment = %self.path.display(), error = %cut, "could not cut a failed write")
                }
            }
            return Err(e);
        }
        let mut offset = self.size;
        for &len in lens {
            self.records.push(RecordPos { offset, len });
            offset += RECORD_HEADER_LEN + u64::from(len);
        }
        debug_assert_eq!(offset, self.size + buf.len() as u64);
        self.size = offset;
        Ok(())
    }

    /// Reads and decodes entries `from..=to` (all in this segment) with one
    /// positional read.
    pub fn read_entries(&self, from: u64, to: u64) -> io::Result<Vec<Entry>> {
        let (Some(first), Some(last)) = (self.pos(from), self.pos(to)) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "log segment {}: entries {from}..={to} not indexed",
                    self.path.display()
                ),
            ));
        };
        let mut buf = vec![0u8; (last.end() - first.offset) as usize];
        self.file.read_exact_at(&mut buf, first.offset)?;
        let mut out = Vec::with_capacity((to - from + 1) as usize);
        for index in from..=to {
            let rec = self
                .pos(index)
                .expect("invariant: every index in from..=to is indexed");
            let at = (rec.offset - first.offset) as usize;
            let (_, payload) = parse_record(&buf, at).map_err(|bad| {
                corruption(format!(
                    "log segment {}: {} reading index {index} at offset {}",
                    self.path.display(),
                    bad.describe(),
                    rec.offset
                ))
            })?;
            let entry = decode_entry(payload)?;
            if entry.log_id.index != index {
                return Err(corruption(format!(
                    "log segment {}: offset {} holds index {}, expected {index}",
                    self.path.display(),
                    rec.offset,
                    entry.log_id.index
                )));
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// Reads the log id of entry `index`.
    pub fn read_log_id(&self, index: u64) -> io::Result<LogId> {
        let mut entries = self.read_entries(index, index)?;
        entries
            .pop()
            .map(|e| e.log_id)
            .ok_or_else(|| corruption(format!("no entry at index {index}")))
    }

    /// Removes entries `index..` from this segment: cuts the file and fsyncs it.
    /// `index` must be above `first_index` (whole segments are deleted instead).
    pub fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        let Some(rec) = self.pos(index) else {
            return Ok(());
        };
        self.file.set_len(rec.offset)?;
        sync_data_or_abort(&self.file, &self.path);
        self.records.truncate((index - self.first_index) as usize);
        self.size = rec.offset;
        self.len = rec.offset;
        Ok(())
    }

    /// Makes the segment durable as it will stay once the log has rolled past
    /// it: cut to its records (without the reserve) and fsynced.
    pub fn seal(&mut self) -> io::Result<()> {
        if self.len != self.size {
            self.file.set_len(self.size)?;
            self.len = self.size;
        }
        sync_data_or_abort(&self.file, &self.path);
        Ok(())
    }
}
