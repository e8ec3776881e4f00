//! Where every task of a run sends its history events: one monotonic clock,
//! one writer (JSON lines on disk, and the events kept for the checkers).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::history::{Event, HistoryWriter};

/// A cheap handle to the run's history.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    tx: mpsc::UnboundedSender<Event>,
    next_op: Arc<AtomicU64>,
}

impl Recorder {
    /// Starts the writer of `path`. Await the handle after every `Recorder`
    /// clone is dropped: it returns the events in the order written.
    pub fn create(
        path: &Path,
    ) -> std::io::Result<(Recorder, JoinHandle<std::io::Result<Vec<Event>>>)> {
        let mut writer = HistoryWriter::create(path)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let task = tokio::spawn(async move {
            let mut events = Vec::new();
            while let Some(event) = rx.recv().await {
                writer.write(&event)?;
                events.push(event);
                if rx.is_empty() {
                    // Keep the file current for anyone watching a long run.
                    writer.flush()?;
                }
            }
            writer.flush()?;
            Ok(events)
        });
        let recorder = Recorder {
            start: Instant::now(),
            tx,
            next_op: Arc::new(AtomicU64::new(1)),
        };
        Ok((recorder, task))
    }

    /// Nanoseconds since the run started (the history's clock).
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A fresh operation id.
    pub fn op_id(&self) -> u64 {
        self.next_op.fetch_add(1, Ordering::Relaxed)
    }

    /// Appends an event (dropped silently once the writer is gone, which
    /// happens only after the run).
    pub fn record(&self, event: Event) {
        let _ = self.tx.send(event);
    }
}
