//! openraft's `RaftLogReader` and `RaftLogStorage` on [`LogStore`].

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader};

use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

use super::{atomic_file, bincode_bytes, bincode_value, LogReader, LogStore, Shared, VOTE_FILE};

/// `start..end` (end exclusive) of any range of indexes.
fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

fn read_err(e: std::io::Error) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Read, e)
}

impl Shared {
    fn try_get(&self, start: u64, end: u64) -> std::io::Result<Vec<Entry>> {
        self.read_entries(start, end, None)
    }

    fn limited_get(&self, start: u64, end: u64) -> std::io::Result<Vec<Entry>> {
        self.read_entries(start, end, Some(self.options.max_read_bytes))
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        self.shared.try_get(start, end).map_err(read_err)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.shared.limited_get(start, end).map_err(read_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        self.shared.try_get(start, end).map_err(read_err)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.shared.limited_get(start, end).map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let (last_purged_log_id, last_log_id) = self.shared.log_state();
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let err = |e| StorageError::from_io_error(ErrorSubject::Vote, ErrorVerb::Write, e);
        // Keep log and vote writes in order: earlier appends are durable first.
        self.shared.syncer.wait_synced();
        let bytes = bincode_bytes(vote).map_err(err)?;
        atomic_file::write(&self.shared.dir, VOTE_FILE, &bytes).map_err(err)?;
        tracing::debug!(vote = %vote, "saved vote");
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let err = |e| StorageError::from_io_error(ErrorSubject::Vote, ErrorVerb::Read, e);
        atomic_file::read(&self.shared.dir, VOTE_FILE)
            .and_then(|bytes| bytes.map(|b| bincode_value(&b)).transpose())
            .map_err(err)
    }

    // `save_committed` / `read_committed` keep openraft's defaults (not
    // persisted): each save would cost two fsyncs on every commit, more than
    // the append itself. Nothing is lost without it: the state machine keeps
    // its applied index, and after a restart entries past it are applied once
    // a leader commits again (a single node commits at its first election).

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.append_with(entries, move |result| callback.log_io_completed(result))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.truncate_from(log_id)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.purge_upto(log_id)
    }
}
