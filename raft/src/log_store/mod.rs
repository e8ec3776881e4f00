//! The Raft log: openraft's `RaftLogStorage` on segment files of its own,
//! made durable by a real `fdatasync` per batch (group commit).
//!
//! Why not sled: sled 0.34's `flush` calls `sync_file_range`, which does not
//! make data durable against power loss (its real `fsync` runs on a background
//! thread every 500 ms), and values over ~128 KiB go to blob files it never
//! fsyncs. Raft must not acknowledge an entry that a crash can take back, so the
//! log lives here, in plain files whose every acknowledged byte was fsynced.
//!
//! - **Segments** (`seg-<first_index:020>.log`, rolled at
//!   [`LogStoreOptions::segment_bytes`]): a header with magic and format
//!   version, then records `[u32 len][u32 crc32][bincode Entry]`
//!   (see [`segment`]). An in-memory index maps each log index to its segment
//!   and offset; entries are read back with positional reads, and the newest
//!   are kept in a bounded cache.
//! - **Recovery** on open: in the last segment, a record with a short read, a
//!   bad length or a crc mismatch that nothing valid follows is a torn write:
//!   the file is cut there (fsynced, with a warning). Any other bad record is
//!   corruption and the store refuses to open.
//! - **Durability**: `append` writes and indexes the records at once (readers
//!   see them), then queues its callback on the syncer thread, which does one
//!   `fdatasync` for everything pending and then completes all of it
//!   (see [`syncer`]). A failed fsync aborts the process. New segments, deleted
//!   segments and the small state files (`vote`, `committed`, `purged`, replaced
//!   atomically, see [`atomic_file`]) are fsynced together with their directory.
//! - **Truncate** waits until every pending append is durable and acknowledged,
//!   then cuts and fsyncs the log; **purge** records the purge point durably,
//!   then deletes segments that hold only purged entries.
//!
//! Must not depend on sled, tonic or anything of the server.

mod atomic_file;
mod cache;
mod fsync;
mod segment;
mod storage_impl;
mod syncer;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::{DefensiveError, ErrorSubject, ErrorVerb, Violation};

use crate::types::{Entry, LogId, StorageError};

use cache::EntryCache;
use fsync::fsync_dir;
use segment::{encode_record, Scanned, Segment};
use syncer::Syncer;

/// File holding the vote.
const VOTE_FILE: &str = "vote";
/// File holding the last committed log id (a hint for restart).
const COMMITTED_FILE: &str = "committed";
/// File holding the last purged log id.
const PURGED_FILE: &str = "purged";

/// Tunables of a [`LogStore`].
#[derive(Debug, Clone)]
pub struct LogStoreOptions {
    /// A segment is closed (fsynced) and a new one started once it holds this
    /// many bytes. Whole segments are the unit of purging.
    pub segment_bytes: u64,
    /// At most this many of the newest entries are kept decoded in memory.
    pub cache_entries: usize,
    /// At most this many encoded bytes of entries are kept in memory.
    pub cache_bytes: u64,
    /// `limited_get_log_entries` (what replication sends in one append)
    /// returns at most this many encoded bytes of entries (and at least one
    /// entry), so peer messages stay under the transport's size limit.
    pub max_read_bytes: u64,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            segment_bytes: 64 * 1024 * 1024,
            cache_entries: 4096,
            cache_bytes: 16 * 1024 * 1024,
            max_read_bytes: 2 * 1024 * 1024,
        }
    }
}

/// The Raft log store. See the [module documentation](self).
pub struct LogStore {
    shared: Arc<Shared>,
}

/// A cheap, cloneable reader of the log, for openraft's replication tasks.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

struct Shared {
    /// Declared first so it is dropped (and joined) before the segments close.
    syncer: Syncer,
    dir: PathBuf,
    options: LogStoreOptions,
    state: RwLock<State>,
}

/// The in-memory index of the log.
struct State {
    /// Segments by first index; the last one is the one appended to.
    segments: BTreeMap<u64, Segment>,
    /// Log id of the last record in the files (may be at or below `last_purged`).
    last_entry: Option<LogId>,
    /// Entries up to this one are purged (not readable, files may remain).
    last_purged: Option<LogId>,
    cache: EntryCache,
}

/// Records encoded but not yet written.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    lens: Vec<u32>,
    entries: Vec<Entry>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir` with default options.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        Self::open_with(dir, LogStoreOptions::default())
    }

    /// Opens (or creates) the log in `dir`: scans the segments, cuts a torn
    /// tail, refuses a corrupted log.
    pub fn open_with(dir: &Path, options: LogStoreOptions) -> io::Result<LogStore> {
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsync_dir(parent)?;
            }
        }
        let mut found = Vec::new();
        for dirent in fs::read_dir(dir)? {
            let dirent = dirent?;
            let name = dirent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(atomic_file::TMP_SUFFIX) {
                // An atomic write that did not reach its rename.
                fs::remove_file(dirent.path())?;
            } else if let Some(first) = segment::parse_file_name(name) {
                found.push((first, dirent.path()));
            }
        }
        found.sort();
        let last_purged = read_log_id_file(dir, PURGED_FILE)?.flatten();

        let mut segments = BTreeMap::new();
        let mut last_entry = None;
        let count = found.len();
        for (i, (first, path)) in found.into_iter().enumerate() {
            match Segment::open(&path, first, i + 1 == count)? {
                Scanned::Segment(seg, last) => {
                    last_entry = last.or(last_entry);
                    segments.insert(first, seg);
                }
                Scanned::Removed => {}
            }
        }
        let mut state = State {
            segments,
            last_entry,
            last_purged,
            cache: EntryCache::new(options.cache_entries, options.cache_bytes),
        };
        // Finish a purge (or an interrupted roll) that did not delete everything.
        state.remove_purged_segments(dir)?;
        state.check_contiguous(dir)?;

        let syncer = Syncer::start(state.active_file())?;
        tracing::info!(
            dir = %dir.display(),
            segments = state.segments.len(),
            last_purged = ?state.last_purged.map(|id| id.index),
            last_index = ?state.last_entry.map(|id| id.index),
            "opened raft log"
        );
        Ok(LogStore {
            shared: Arc::new(Shared {
                syncer,
                dir: dir.to_path_buf(),
                options,
                state: RwLock::new(state),
            }),
        })
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// How many group-commit fsyncs the syncer has done: with concurrent or
    /// quick appends, fewer than the number of appends.
    pub fn fsync_count(&self) -> u64 {
        self.shared.syncer.fsyncs()
    }

    /// A reader sharing this log.
    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Appends `entries` and calls `done` once they are durable. When this
    /// returns, the entries are readable. `RaftLogStorage::append` is this
    /// with openraft's callback.
    ///
    /// The entries must continue the log (the first entry of an empty log may
    /// have any index; after a purge the log continues at the purge point + 1).
    /// Entries at or below the purge point are ignored: they are applied and
    /// in a snapshot already.
    #[allow(
        clippy::result_large_err,
        reason = "openraft's StorageError, what the trait methods return anyway"
    )]
    pub fn append_with<I, F>(&mut self, entries: I, done: F) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry>,
        F: FnOnce(io::Result<()>) + Send + 'static,
    {
        let shared = &*self.shared;
        let mut st = shared.write();
        let mut prev = st.logical_last();
        let mut batch = Batch::default();
        for entry in entries {
            let index = entry.log_id.index;
            if st.last_purged.is_some_and(|p| index <= p.index) {
                // Already covered by the purge point (applied and in a snapshot).
                tracing::debug!(index, "ignoring append of an already purged entry");
                continue;
            }
            if let Some(prev) = prev.filter(|p| p.index + 1 != index) {
                return Err(DefensiveError::new(
                    ErrorSubject::Logs,
                    Violation::LogsNonConsecutive {
                        prev: Some(prev),
                        next: entry.log_id,
                    },
                )
                .into());
            }
            prev = Some(entry.log_id);
            let roll = match st.segments.values().next_back() {
                None => true,
                Some(seg) => {
                    let pending = batch.lens.len() as u64;
                    let has_records = !seg.records.is_empty() || pending > 0;
                    let full = seg.size + batch.buf.len() as u64 >= shared.options.segment_bytes;
                    seg.next_index() + pending != index || (has_records && full)
                }
            };
            let log_id = entry.log_id;
            let io = move |e| write_err(log_id, e);
            if roll {
                st.write_batch(&mut batch).map_err(io)?;
                st.roll(shared, index).map_err(io)?;
            }
            let len = encode_record(&entry, &mut batch.buf).map_err(io)?;
            batch.lens.push(len);
            batch.entries.push(entry);
        }
        st.write_batch(&mut batch)
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        drop(st);
        shared.syncer.submit(Box::new(done));
        Ok(())
    }

    /// Removes entries from `log_id.index` on, durably, after every pending
    /// append is durable and acknowledged.
    #[allow(
        clippy::result_large_err,
        reason = "openraft's StorageError, what the trait methods return anyway"
    )]
    pub fn truncate_from(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let shared = &*self.shared;
        shared.syncer.wait_synced();
        let mut st = shared.write();
        st.truncate_from(shared, log_id.index)
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        tracing::info!(from_index = log_id.index, last = ?st.last_entry.map(|id| id.index), "truncated raft log");
        Ok(())
    }

    /// Marks entries up to `log_id` purged (durably), then deletes segments
    /// holding nothing else.
    #[allow(
        clippy::result_large_err,
        reason = "openraft's StorageError, what the trait methods return anyway"
    )]
    pub fn purge_upto(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let shared = &*self.shared;
        let err = |e| StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Delete, e);
        if shared
            .read()
            .last_purged
            .is_some_and(|p| p.index >= log_id.index)
        {
            return Ok(());
        }
        let bytes = bincode_bytes(&Some(log_id)).map_err(err)?;
        atomic_file::write(&shared.dir, PURGED_FILE, &bytes).map_err(err)?;
        let mut st = shared.write();
        st.last_purged = Some(log_id);
        st.cache.purge_upto(log_id.index);
        st.remove_purged_segments(&shared.dir).map_err(err)?;
        tracing::debug!(
            upto = log_id.index,
            segments = st.segments.len(),
            "purged raft log"
        );
        Ok(())
    }

    #[cfg(test)]
    fn syncer(&self) -> &Syncer {
        &self.shared.syncer
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .expect("invariant: nothing panics while holding the log index lock")
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .expect("invariant: nothing panics while holding the log index lock")
    }

    /// `(last_purged, last_log_id)` as openraft's `get_log_state` wants them.
    fn log_state(&self) -> (Option<LogId>, Option<LogId>) {
        let st = self.read();
        (st.last_purged, st.logical_last())
    }

    /// Entries present in `start..end`, in order; with `max_bytes`, stops
    /// before exceeding that many encoded bytes (but returns at least one).
    fn read_entries(&self, start: u64, end: u64, max_bytes: Option<u64>) -> io::Result<Vec<Entry>> {
        let st = self.read();
        let Some(last) = st.last_entry else {
            return Ok(Vec::new());
        };
        let lo = start.max(st.first_live_index());
        let hi = end.min(last.index + 1);
        let mut out = Vec::new();
        let mut budget = Budget {
            left: max_bytes.unwrap_or(u64::MAX),
            taken_any: false,
        };
        let cache_first = st.cache.first_index().unwrap_or(u64::MAX);
        let mut i = lo;
        while i < hi && i < cache_first {
            let seg = st.segment_for(i).ok_or_else(|| missing(i))?;
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
            let (entry, len) = st.cache.get(i).ok_or_else(|| missing(i))?;
            if !budget.take(*len) {
                break;
            }
            out.push(entry.clone());
            i += 1;
        }
        Ok(out)
    }
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

impl State {
    /// The last log id: of the last entry, or the purge point when that is later.
    fn logical_last(&self) -> Option<LogId> {
        match (self.last_entry, self.last_purged) {
            (Some(e), Some(p)) if e.index > p.index => Some(e),
            (e, p) => p.or(e),
        }
    }

    /// Lowest index that may be read.
    fn first_live_index(&self) -> u64 {
        let purged_next = self.last_purged.map_or(0, |p| p.index + 1);
        let first_present = self
            .segments
            .values()
            .find(|s| !s.records.is_empty())
            .map_or(0, |s| s.first_index);
        purged_next.max(first_present)
    }

    fn segment_for(&self, index: u64) -> Option<&Segment> {
        self.segments
            .range(..=index)
            .next_back()
            .map(|(_, s)| s)
            .filter(|s| s.pos(index).is_some())
    }

    fn active_file(&self) -> Option<(Arc<std::fs::File>, PathBuf)> {
        self.segments
            .values()
            .next_back()
            .map(|s| (Arc::clone(&s.file), s.path.clone()))
    }

    /// Writes `batch` into the active segment and indexes it.
    fn write_batch(&mut self, batch: &mut Batch) -> io::Result<()> {
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
    /// fsynced first (or removed, when it holds nothing).
    fn roll(&mut self, shared: &Shared, index: u64) -> io::Result<()> {
        if let Some((&first, active)) = self.segments.iter().next_back() {
            if active.records.is_empty() {
                fs::remove_file(&active.path)?;
                self.segments.remove(&first);
            } else {
                fsync::sync_data_or_abort(&active.file, &active.path);
            }
        }
        let seg = Segment::create(&shared.dir, index)?;
        self.segments.insert(index, seg);
        shared.syncer.set_active(self.active_file());
        self.remove_purged_segments(&shared.dir)
    }

    /// Deletes segments (other than the active one) holding only purged entries.
    fn remove_purged_segments(&mut self, dir: &Path) -> io::Result<()> {
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
    fn check_contiguous(&self, dir: &Path) -> io::Result<()> {
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
    fn truncate_from(&mut self, shared: &Shared, index: u64) -> io::Result<()> {
        while let Some(entry) = self.segments.last_entry() {
            if *entry.key() < index {
                break;
            }
            let seg = entry.remove();
            fs::remove_file(&seg.path)?;
            fsync_dir(&shared.dir)?;
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
        shared.syncer.set_active(self.active_file());
        Ok(())
    }
}

fn missing(index: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("invariant violated: log entry {index} is not indexed"),
    )
}

fn write_err(log_id: LogId, e: io::Error) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Log(log_id), ErrorVerb::Write, e)
}

fn bincode_bytes<T: serde::Serialize>(value: &T) -> io::Result<Vec<u8>> {
    bincode::serialize(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn bincode_value<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    bincode::deserialize(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads a state file holding an `Option<LogId>`; `None` when absent.
fn read_log_id_file(dir: &Path, name: &str) -> io::Result<Option<Option<LogId>>> {
    atomic_file::read(dir, name)?
        .map(|bytes| bincode_value(&bytes))
        .transpose()
}
