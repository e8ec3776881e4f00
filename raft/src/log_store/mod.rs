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
//!   (`segment.rs`). An in-memory index maps each log index to its segment
//!   and offset; entries are read back with positional reads, and the newest
//!   are kept in a bounded cache.
//! - **Recovery** on open: in the last segment, a record with a short read, a
//!   bad length or a crc mismatch that nothing valid follows is a torn write:
//!   the file is cut there (fsynced, with a warning). Zeros from a record's
//!   place to the end of the last segment are its reserve (below), not a tear.
//!   Any other bad record is corruption and the store refuses to open.
//! - **Reserve**: the last segment's file is kept up to 1 MiB longer than its
//!   records, so an append does not change the file's size and its
//!   `fdatasync` need not write the inode as well; the roll cuts it off.
//! - **Durability**: `append` writes and indexes the records at once (readers
//!   see them), then queues its callback on the syncer thread, which does one
//!   `fdatasync` for everything pending and then completes all of it
//!   (`syncer.rs`). A failed fsync aborts the process. New segments, deleted
//!   segments and the small state files (`vote`, `purged`, replaced
//!   atomically, `atomic_file.rs`) are fsynced together with their directory.
//! - **Ordering**: `truncate` and `save_vote` first wait until every pending
//!   append is durable and acknowledged, so no callback claims truncated
//!   entries and log and vote reach the disk in the order they were made.
//!   **Purge** records the purge point durably, then deletes segments that
//!   hold only purged entries; appends at or below it are ignored.
//! - **Cost** (see `examples/log_durability.rs`): one append of one entry is
//!   one `fdatasync` plus a thread handoff; appends that arrive while an fsync
//!   runs share the next one. A state file save is two fsyncs (file and
//!   directory), which is why the committed index is not persisted (openraft's
//!   default): it would cost that on every commit.
//!
//! Not safe for two processes on one directory: the directory is not locked.
//!
//! Must not depend on sled, tonic or anything of the server.

pub(crate) mod atomic_file;
mod cache;
mod fsync;
mod index;
#[cfg(test)]
mod model_tests;
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
use index::{Batch, LogIndex};
use segment::{encode_record, Scanned, Segment};
use syncer::Syncer;

/// File holding the vote.
const VOTE_FILE: &str = "vote";
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
    state: RwLock<LogIndex>,
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
        let mut state = LogIndex {
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
                st.roll(&shared.dir, &shared.syncer, index).map_err(io)?;
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
        st.truncate_from(&shared.dir, &shared.syncer, log_id.index)
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        tracing::info!(from_index = log_id.index, last = ?st.last_entry.map(|id| id.index), "truncated raft log");
        Ok(())
    }

    /// Marks entries up to `log_id` purged (durably), then deletes segments
    /// holding nothing else. Purging past the end is fine (the log then
    /// continues at `log_id.index + 1`); purging below the start of a log that
    /// starts after `log_id.index + 1` is refused, as it would leave a hole.
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
        let first = shared.read().first_present_index();
        if let Some(first) = first.filter(|f| *f > log_id.index + 1) {
            // The log would claim entries between the purge point and its
            // start that never existed; open refuses such a log as one that
            // lost a segment. Raft never asks this (a log starts at its
            // beginning or right after a purge).
            return Err(DefensiveError::new(
                ErrorSubject::Log(log_id),
                Violation::LogIndexNotFound {
                    want: log_id.index + 1,
                    got: Some(first),
                },
            )
            .into());
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
    fn read(&self) -> RwLockReadGuard<'_, LogIndex> {
        self.state
            .read()
            .expect("invariant: nothing panics while holding the log index lock")
    }

    fn write(&self) -> RwLockWriteGuard<'_, LogIndex> {
        self.state
            .write()
            .expect("invariant: nothing panics while holding the log index lock")
    }

    /// `(last_purged, last_log_id)` as openraft's `get_log_state` wants them.
    fn log_state(&self) -> (Option<LogId>, Option<LogId>) {
        let st = self.read();
        (st.last_purged, st.logical_last())
    }

    /// Entries present in `start..end`, in order; see [`LogIndex::read_entries`].
    fn read_entries(&self, start: u64, end: u64, max_bytes: Option<u64>) -> io::Result<Vec<Entry>> {
        self.read().read_entries(start, end, max_bytes)
    }
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
