//! A bounded cache of the newest log entries.
//!
//! Replication reads what was just appended; keeping the tail of the log in
//! memory saves a read and a decode per entry. The cache always holds a
//! contiguous run ending at the last appended entry, and is bounded both in
//! entries and in (encoded) bytes.

use std::collections::VecDeque;

use crate::types::Entry;

/// The newest entries, contiguous, bounded.
#[derive(Debug)]
pub(super) struct EntryCache {
    /// `(entry, encoded payload bytes)`, oldest first.
    entries: VecDeque<(Entry, u32)>,
    bytes: u64,
    max_entries: usize,
    max_bytes: u64,
}

impl EntryCache {
    pub fn new(max_entries: usize, max_bytes: u64) -> Self {
        EntryCache {
            entries: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// Index of the oldest cached entry.
    pub fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    /// Adds the entry just appended (its index follows the newest cached one).
    pub fn push(&mut self, entry: Entry, bytes: u32) {
        if let Some((last, _)) = self.entries.back() {
            if last.log_id.index + 1 != entry.log_id.index {
                self.clear();
            }
        }
        self.bytes += u64::from(bytes);
        self.entries.push_back((entry, bytes));
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            match self.entries.pop_front() {
                Some((_, b)) => self.bytes -= u64::from(b),
                None => break,
            }
        }
    }

    /// The cached entry at `index` and its encoded size.
    pub fn get(&self, index: u64) -> Option<&(Entry, u32)> {
        let first = self.first_index()?;
        let i = usize::try_from(index.checked_sub(first)?).ok()?;
        self.entries.get(i)
    }

    /// Drops entries `index..`.
    pub fn truncate_from(&mut self, index: u64) {
        while let Some((e, b)) = self.entries.back() {
            if e.log_id.index < index {
                break;
            }
            self.bytes -= u64::from(*b);
            self.entries.pop_back();
        }
    }

    /// Drops entries `..=index`.
    pub fn purge_upto(&mut self, index: u64) {
        while let Some((e, b)) = self.entries.front() {
            if e.log_id.index > index {
                break;
            }
            self.bytes -= u64::from(*b);
            self.entries.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}
