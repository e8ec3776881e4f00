//! Group commit: one thread makes appended records durable.
//!
//! `append` writes its records into the active segment (page cache), then
//! hands its completion here with the next write sequence number. The syncer
//! thread takes everything pending, reads the current write sequence and the
//! active segment, does ONE `fdatasync`, and completes every completion it took.
//! A completion is therefore only run by an fsync that started after its write;
//! completions that arrive while an fsync is running share the next one.
//!
//! Writes to earlier segments need no fsync here: a segment is fsynced before
//! the log rolls to the next one.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, ThreadId};

use super::fsync::sync_data_or_abort;

/// Runs once the write it was submitted after is durable.
pub(super) type Completion = Box<dyn FnOnce(io::Result<()>) + Send + 'static>;

struct Pending {
    /// Sequence number of the write this completion waits for.
    seq: u64,
    done: Completion,
}

struct SyncState {
    /// Sequence number of the last submitted write.
    write_seq: u64,
    /// Every write up to this sequence number is durable and its completion ran.
    synced_seq: u64,
    /// The segment being appended to, and its path (for logs).
    active: Option<(Arc<File>, PathBuf)>,
    pending: Vec<Pending>,
    shutdown: bool,
    /// Tests hold the syncer to make group commit deterministic.
    #[cfg(test)]
    paused: bool,
}

struct Shared {
    state: Mutex<SyncState>,
    /// Signals the syncer: work arrived or shutdown.
    work: Condvar,
    /// Signals waiters: `synced_seq` advanced.
    done: Condvar,
    /// fsyncs done by the syncer (one per group commit).
    fsyncs: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state
            .lock()
            .expect("invariant: nothing panics while holding the syncer lock")
    }
}

/// Handle to the syncer thread; stops and joins it on drop (after it has
/// completed everything submitted).
pub(super) struct Syncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
}

impl Syncer {
    /// Starts the syncer thread.
    pub fn start(active: Option<(Arc<File>, PathBuf)>) -> io::Result<Syncer> {
        let shared = Arc::new(Shared {
            state: Mutex::new(SyncState {
                write_seq: 0,
                synced_seq: 0,
                active,
                pending: Vec::new(),
                shutdown: false,
                #[cfg(test)]
                paused: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            fsyncs: AtomicU64::new(0),
        });
        let for_thread = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("raft-log-syncer".to_string())
            .spawn(move || run(&for_thread))?;
        let thread_id = thread.thread().id();
        Ok(Syncer {
            shared,
            thread: Some(thread),
            thread_id,
        })
    }

    /// Records that a write was made and queues `done` to run once it is durable.
    pub fn submit(&self, done: Completion) {
        let mut st = self.shared.lock();
        st.write_seq += 1;
        let seq = st.write_seq;
        st.pending.push(Pending { seq, done });
        drop(st);
        self.shared.work.notify_one();
    }

    /// Sets the file later writes go to. Writes to the previous one must
    /// already be durable.
    pub fn set_active(&self, active: Option<(Arc<File>, PathBuf)>) {
        self.shared.lock().active = active;
    }

    /// Waits until every write submitted so far is durable and its completion
    /// has run.
    pub fn wait_synced(&self) {
        let mut st = self.shared.lock();
        let target = st.write_seq;
        while st.synced_seq < target {
            st = self
                .shared
                .done
                .wait(st)
                .expect("invariant: nothing panics while holding the syncer lock");
        }
    }

    /// fsyncs done by the syncer so far.
    pub fn fsyncs(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Holds (`true`) or releases (`false`) the syncer, for tests.
    #[cfg(test)]
    pub fn set_paused(&self, paused: bool) {
        self.shared.lock().paused = paused;
        self.shared.work.notify_one();
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_one();
        // A completion that drops the last handle runs on the syncer thread itself.
        if thread::current().id() != self.thread_id {
            if let Some(thread) = self.thread.take() {
                if thread.join().is_err() {
                    tracing::error!("raft log syncer thread panicked");
                }
            }
        }
    }
}

fn run(shared: &Shared) {
    loop {
        let mut st = shared.lock();
        loop {
            #[cfg(test)]
            let paused = st.paused && !st.shutdown;
            #[cfg(not(test))]
            let paused = false;
            if !paused && (!st.pending.is_empty() || st.shutdown) {
                break;
            }
            st = shared
                .work
                .wait(st)
                .expect("invariant: nothing panics while holding the syncer lock");
        }
        if st.pending.is_empty() {
            // Shutdown with nothing left to complete.
            return;
        }
        let target = st.write_seq;
        let batch = std::mem::take(&mut st.pending);
        let active = st.active.clone();
        drop(st);

        debug_assert!(batch.iter().all(|p| p.seq <= target));
        if let Some((file, path)) = &active {
            sync_data_or_abort(file, path);
            shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        tracing::trace!(writes = batch.len(), up_to_seq = target, "group commit");
        for pending in batch {
            (pending.done)(Ok(()));
        }

        let mut st = shared.lock();
        st.synced_seq = st.synced_seq.max(target);
        drop(st);
        shared.done.notify_all();
    }
}
