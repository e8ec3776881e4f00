//! The in-memory index of the log: which segment and offset holds each
//! entry, the purge point, the cache of the newest entries; and the file
//! operations that keep the index and the segments in step (write, roll,
//! truncate, remove purged segments).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::types::{Entry, LogId};

use super::cache::EntryCache;
use super::fsync::fsync_dir;
use super::segment::Segment;
use super::syncer::Syncer;

/// The in-memory index of the log.
pub(super) struct LogIndex {
    /// Segments by first index; the last one is the one appended to.
    pub segments: BTreeMap<u64, Segment>,
    /// Log id of the last record in the files (may be at or below `last_purged`).
    pub last_entry: Option<LogId>,
    /// Entries up to this one are purged (not readable, files may remain).
    pub last_purged: Option<LogId>,
    /// The newest entries, decoded.
    pub cache: EntryCache,
}

/// Records encoded but not yet written.
#[derive(Default)]
pub(super) struct Batch {
    /// The encoded records, back to back.
    pub buf: Vec<u8>,
    /// Payload length of each record in `buf`.
    pub lens: Vec<u32>,
    /// The entries, for the cache once written.
    pub entries: Vec<Entry>,
}

/// A byte budget that always lets the first entry through.
struct Budget {
    left: u64,
    taken_any: bool,
}

impl Budget {
    fn take(&mut self, len: u32) -> bool {
        let len = u64::from(len);
        if self.taken_any && len > self.left {
            return false;
        }
        self.left = self.left.saturating_sub(len);
        self.taken_any = true;
        true
    }
}

impl LogIndex {
    /// The last log id: of the last entry, or the purge point when that is later.
    pub fn logical_last(&self) -> Option<LogId> {
        match (self.last_entry, self.last_purged) {
            (Some(e), Some(p)) if e.index > p.index => Some(e),
            (e, p) => p.or(e),
        }
    }

    /// Lowest index that may be read.
    pub fn first_live_index(&self) -> u64 {
        let purged_next = self.last_purged.map_or(0, |p| p.index + 1);
        purged_next.max(self.first_present_index().unwrap_or(0))
    }

    /// Index of the first record in the files, purged or not.
    pub fn first_present_index(&self) -> Option<u64> {
        self.segments
            .values()
            .find(|s| !s.records.is_empty())
            .map(|s| s.first_index)
    }

    pub fn segment_for(&self, index: u64) -> Option<&Segment> {
        self.segments
            .range(..=index)
            .next_back()
            .map(|(_, s)| s)
            .filter(|s| s.pos(index).is_some())
    }

    pub fn active_file(&self) -> Option<(Arc<std::fs::File>, PathBuf)> {
        self.segments
            .values()
            .next_back()
            .map(|s| (Arc::clone(&s.file), s.path.clone()))
    }

    /// Writes `batch` into the active segment and indexes it.
    pub fn write_batch(&mut self, batch: &mut Batch) -> io::Result<()> {
        if batch.entries.is_empty() {
            return Ok(());
        }
        let seg = self
            .segments
            .values_mut()
            .next_back()
            .expect("invariant: a segment exists once entries are encoded");
        seg.write_records(&batch.buf, &batch.lens)?;
        for (entry, len) in batch.entries.drain(..).zip(batch.lens.drain(..)) {
            self.last_entry = Some(entry.log_id);
            self.cache.push(entry, len);
        }
        batch.buf.clear();
        Ok(())
    }

    /// Starts a new segment for entries from `index` on. The current one is
    /// sealed first, cut to its records and fsynced (or removed, when it
    /// holds nothing), so the new one never exists beside a reserve.
    pub fn roll(&mut self, dir: &Path, syncer: &Syncer, index: u64) -> io::Result<()> {
        if let Some((&first, active)) = self.segments.iter_mut().next_back() {
            if active.records.is_empty() {
                fs::remove_file(&active.path)?;
                self.segments.remove(&first);
            } else {
                active.seal()?;
            }
        }
        let seg = Segment::create(dir, index)?;
        self.segments.insert(index, seg);
        syncer.set_active(self.active_file());
        self.remove_purged_segments(dir)
    }

    /// Deletes segments (other than the active one) holding only purged entries.
    pub fn remove_purged_segments(&mut self, dir: &Path) -> io::Result<()> {
        let purged = self.last_purged.map(|p| p.index);
        let active = self.segments.keys().next_back().copied();
        let doomed: Vec<u64> = self
            .segments
            .iter()
            .filter(|(first, seg)| {
                Some(**first) != active
                    && match seg.last_index() {
                        None => true,
                        Some(last) => purged.is_some_and(|p| last <= p),
                    }
            })
            .map(|(first, _)| *first)
            .collect();
        for first in &doomed {
            if let Some(seg) = self.segments.remove(first) {
                tracing::debug!(segment = %seg.path.display(), "removing purged log segment");
                fs::remove_file(&seg.path)?;
            }
        }
        if !doomed.is_empty() {
            fsync_dir(dir)?;
        }
        Ok(())
    }

    /// On open: segments with records must follow each other without holes,
    /// and start no later than just after the purge point.
    pub fn check_contiguous(&self, dir: &Path) -> io::Result<()> {
        let mut prev: Option<&Segment> = None;
        for seg in self.segments.values().filter(|s| !s.records.is_empty()) {
            if let Some(prev) = prev {
                if prev.next_index() != seg.first_index {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "raft log in {}: segment {} ends before index {} but the next segment starts at {}: entries are missing",
                            dir.display(),
                            prev.path.display(),
                            prev.next_index(),
                            seg.first_index
                        ),
                    ));
                }
            } else if let Some(p) = self.last_purged {
                if seg.first_index > p.index + 1 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "raft log in {}: purged up to {} but the first segment starts at {}: entries are missing",
                            dir.display(),
                            p.index,
                            seg.first_index
                        ),
                    ));
                }
            }
            prev = Some(seg);
        }
        Ok(())
    }

    /// Removes entries `index..` durably: whole segments from the back (each
    /// deletion fsynced, so a crash leaves a prefix), then cuts the one holding
    /// `index`.
    pub fn truncate_from(&mut self, dir: &Path, syncer: &Syncer, index: u64) -> io::Result<()> {
        while let Some(entry) = self.segments.last_entry() {
            if *entry.key() < index {
                break;
            }
            let seg = entry.remove();
            fs::remove_file(&seg.path)?;
            fsync_dir(dir)?;
        }
        for seg in self.segments.values_mut() {
            if seg.pos(index).is_some() {
                seg.truncate_from(index)?;
            }
        }
        self.cache.truncate_from(index);
        self.last_entry = match self.segments.values().rev().find(|s| !s.records.is_empty()) {
            None => None,
            Some(seg) => {
                let last = seg
                    .last_index()
                    .expect("invariant: the segment has records");
                match self.cache.get(last) {
                    Some((entry, _)) => Some(entry.log_id),
                    None => Some(seg.read_log_id(last)?),
                }
            }
        };
        syncer.set_active(self.active_file());
        Ok(())
    }

    /// Entries present in `start..end`, in order; with `max_bytes`, stops
    /// before exceeding that many encoded bytes (but returns at least one).
    pub fn read_entries(
        &self,
        start: u64,
        end: u64,
        max_bytes: Option<u64>,
    ) -> io::Result<Vec<Entry>> {
        let Some(last) = self.last_entry else {
            return Ok(Vec::new());
        };
        let lo = start.max(self.first_live_index());
        let hi = end.min(last.index + 1);
        let mut out = Vec::new();
        let mut budget = Budget {
            left: max_bytes.unwrap_or(u64::MAX),
            taken_any: false,
        };
        let cache_first = self.cache.first_index().unwrap_or(u64::MAX);
        let mut i = lo;
        while i < hi && i < cache_first {
            let seg = self.segment_for(i).ok_or_else(|| missing(i))?;
            let seg_last = seg.last_index().ok_or_else(|| missing(i))?;
            let upto = (hi - 1).min(seg_last).min(cache_first - 1);
            let mut to = i;
            while to <= upto && budget.take(seg.pos(to).map_or(0, |p| p.len)) {
                to += 1;
            }
            if to > i {
                out.extend(seg.read_entries(i, to - 1)?);
            }
            if to <= upto {
                return Ok(out);
            }
            i = to;
        }
        while i < hi {
            let (entry, len) = self.cache.get(i).ok_or_else(|| missing(i))?;
            if !budget.take(*len) {
                break;
            }
            out.push(entry.clone());
            i += 1;
        }
        Ok(out)
    }
}

fn missing(index: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("invariant violated: log entry {index} is not indexed"),
    )
}
